# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # AdamS's guarantees: the bounded step, the first step, the memory
#
# The `adams_from_scratch` notebook takes the AdamS update apart and runs it on a toy valley. This
# one checks the facts that follow from the update itself, each measured on the real optimizer.
#
# **Claims checked here** (rows 11-13 of `paper_repro.md`; the memory measured here, on small models
# with `adams.state_bytes`, is part of row 1, which `training_memory` completes after training):
#
# 11. *Bounded step.* With $\epsilon = 0$ every coordinate moves by at most
#    $\eta\sqrt{\beta_1^2/\beta_2 + (1-\beta_1)^2/(1-\beta_2)}$ per step (paper-text form), and a
#    worst-case gradient sequence reaches that bound, at each of four (beta1, beta2) pairs.
# 12. *$\beta_2$ close to $\beta_1$.* The bound is smallest, exactly 1, at $\beta_2 = \beta_1$; it is
#    1.03 at AdamS's $\beta_2 = 0.95$ but 3.29 at AdamW's usual 0.999.
# 13. *First step.* With bias correction (the default and the authors' code) the first step is
#    $\eta/\sqrt{1-\beta_2} \approx 4.47\,\eta$, without it $(1-\beta_1)\eta/\sqrt{1-\beta_2}$,
#    and AdamW's is about $\eta$.
#
# **Learning goals.** After working through it you should be able to
#
# * explain why the step is bounded, derive the constant with Cauchy-Schwarz, and use it to pick
#   $\beta_2$;
# * predict the size of the first step of AdamS, AdamW and SGD, and say why warmup matters more
#   for AdamS;
# * count optimizer-state bytes for a model and compare optimizers.
#
# The notebook runs as a plain script: `python -m analysis.figures adams_step_and_memory`
# (add `--quick` for the few-second version).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import sympy as sp

import adams
from analysis import memory as memory_lib
from analysis.report import command_for, quick_mode, save_figure, save_results
from analysis.stationary import derivations
from analysis.stationary.derivations import step_bound_squared

NAME = "adams_step_and_memory"
COMMAND = command_for(NAME)
QUICK = quick_mode()
F64 = torch.float64  # section 1 runs in float64; sections 2-3 use float32, as in training
BETAS = (0.9, 0.95)
COLORS = {"AdamS": "tab:red", "AdamW": "tab:blue", "SGD + momentum": "tab:green"}
np.set_printoptions(precision=4, suppress=True)
print(f"quick mode: {QUICK}")

# %% [markdown]
# ## 1. Why the step is bounded, and why $\beta_2$ must stay near $\beta_1$
#
# Take the paper-text form with $\epsilon = 0$ and write the new momentum as an inner product:
#
# $$
# m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t
#     = \underbrace{\Big(\tfrac{\beta_1}{\sqrt{\beta_2}},\ \tfrac{1-\beta_1}{\sqrt{1-\beta_2}}\Big)}_{a}
#       \cdot
#       \underbrace{\Big(\sqrt{\beta_2}\, m_{t-1},\ \sqrt{1-\beta_2}\, g_t\Big)}_{b}.
# $$
#
# Since $\|b\|^2 = \beta_2 m_{t-1}^2 + (1-\beta_2) g_t^2 = \nu_t$, Cauchy-Schwarz gives
# $|m_t| \le \|a\|\,\sqrt{\nu_t}$, so every coordinate moves by at most
#
# $$
# \eta\, C(\beta_1, \beta_2), \qquad C = \sqrt{\frac{\beta_1^2}{\beta_2} + \frac{(1-\beta_1)^2}{1-\beta_2}} ,
# $$
#
# no matter how large or wild the gradients are. Equality needs $b \parallel a$, i.e.
# $g_t = r\, m_{t-1}$ with $r = \beta_2 (1-\beta_1) / (\beta_1 (1-\beta_2))$ ($r \approx 2.1$ at
# (0.9, 0.95)): a gradient pointing the same way as the momentum and about twice as large. Repeating
# that every step makes the gradients grow geometrically, which is the worst-case sequence below.
# Minimizing $C$ over $\beta_2$ gives
# $\beta_2/(1-\beta_2) = \beta_1/(1-\beta_1)$, that is $\beta_2 = \beta_1$ and $C = 1$.
# The default form has the same argument with $m_{t-1}/c_t$ in place of $m_{t-1}$; its constant at
# step $t \ge 2$ has $(1-\beta_2)c_t^2$ in the second denominator and tends to $C$ as $t$ grows.

# %%
def bound_constant(beta1, beta2):
    """C(beta1, beta2) written out, to compare with the package's adams.step_bound."""
    return np.sqrt(beta1**2 / beta2 + (1 - beta1) ** 2 / (1 - beta2))


beta1 = 0.9
beta2_grid = 1 - np.logspace(-4, np.log10(0.5), 400)[::-1]  # 0.5 ... 0.9999, dense near 1
C_grid = np.array([adams.step_bound(beta1, b2) for b2 in beta2_grid])
assert np.allclose(C_grid, np.maximum(bound_constant(beta1, beta2_grid), (1 - beta1) / np.sqrt(1 - beta2_grid)))
C_095, C_0999 = adams.step_bound(0.9, 0.95), adams.step_bound(0.9, 0.999)
print(f"C(0.9, 0.95) = {C_095:.4f}   C(0.9, 0.999) = {C_0999:.4f}   C(0.9, 0.9) = {adams.step_bound(0.9, 0.9):.4f}")

# The step as a function of x = g_t / m_{t-1}: |beta1 + (1 - beta1) x| / sqrt(beta2 + (1 - beta2) x^2).
x_ratio = np.linspace(-10, 10, 200_001)
step_of_x = np.abs(0.9 + 0.1 * x_ratio) / np.sqrt(0.95 + 0.05 * x_ratio**2)
near_cap = x_ratio[step_of_x >= 0.99 * C_095]
print(f"at (0.9, 0.95) the step is maximal at g/m = {x_ratio[step_of_x.argmax()]:.3f} and within 1% of C "
      f"for every g/m in [{near_cap.min():.2f}, {near_cap.max():.2f}]")


def worst_case_steps(beta1, beta2, steps, bias_correction):
    """Run adams.AdamS (eps = 0, lr = 1) on the gradient sequence that makes b parallel to a.

    Returns |step| / lr per step. g_1 = 1; afterwards g_t = r_t m_{t-1} / c_t with
    r_t = beta2 (1 - beta1) / (c_t beta1 (1 - beta2)) (c_t = 1 in the paper-text form).
    """
    w = torch.nn.Parameter(torch.zeros(1, dtype=F64))
    opt = adams.AdamS([w], lr=1.0, betas=(beta1, beta2), eps=0.0, weight_decay=0.0,
                      bias_correction=bias_correction)
    sizes = []
    for t in range(1, steps + 1):
        c = 1 - beta1**t if bias_correction else 1.0
        if t == 1:
            g = torch.ones(1, dtype=F64)
        else:
            m_prev = opt.state[w]["exp_avg"]
            g = beta2 * (1 - beta1) / (c * beta1 * (1 - beta2)) * m_prev / c
        before = w.detach().clone()
        w.grad = g.clone()
        opt.step()
        sizes.append(float((w.detach() - before).abs()))
    return np.array(sizes)


def random_steps(beta1, beta2, steps, seeds, bias_correction=False):
    """|step| / lr of adams.AdamS (eps = 0) under heavy-tailed random gradients.

    Returns two arrays of shape (seeds, steps): the largest and the median step over 256 coordinates.
    """
    largest, typical = [], []
    for seed in seeds:
        gen = np.random.default_rng(1000 + seed)
        g_all = gen.standard_t(df=2, size=(steps, 256)) + gen.normal(size=256)  # 256 coordinates
        w = torch.nn.Parameter(torch.zeros(256, dtype=F64))
        opt = adams.AdamS([w], lr=1.0, betas=(beta1, beta2), eps=0.0, weight_decay=0.0,
                          bias_correction=bias_correction)
        sizes = []
        for g in g_all:
            before = w.detach().clone()
            w.grad = torch.from_numpy(g)
            opt.step()
            sizes.append((w.detach() - before).abs().numpy())
        sizes = np.array(sizes)
        largest.append(sizes.max(axis=1))
        typical.append(np.median(sizes, axis=1))
    return np.array(largest), np.array(typical)


WC_STEPS = 25
STEP_PAIRS = ((0.9, 0.95), (0.9, 0.99), (0.95, 0.95), (0.9, 0.999))
RANDOM_STEPS = 100 if QUICK else 400
RANDOM_SEEDS = range(3) if QUICK else range(10)
sym_bound = step_bound_squared()[0]  # C^2 derived in sympy (analysis.stationary.derivations)
step_table = []
for b1, b2 in STEP_PAIRS:
    C = adams.step_bound(b1, b2)
    sizes = worst_case_steps(b1, b2, WC_STEPS, bias_correction=False)
    largest, median = random_steps(b1, b2, RANDOM_STEPS, RANDOM_SEEDS)
    symbolic = float(sp.sqrt(sym_bound.subs({derivations.beta1: b1, derivations.beta2: b2})))
    step_table.append({"betas": (b1, b2), "bound": C, "sympy": symbolic, "worst_case": sizes,
                       "attained": float(sizes[1:].max()), "largest_random": float(largest.max()),
                       "median_random": float(np.median(median)), "random_max_per_seed": largest.max(axis=1)})
    if (b1, b2) == (0.9, 0.95):
        random_095, random_095_median = largest, median  # drawn in the figure
    print(f"betas ({b1}, {b2}): bound {C:.6f} (sympy {symbolic:.6f}), worst case {sizes[1:].max():.6f} "
          f"(relative gap {abs(sizes[1:] - C).max() / C:.1e}), largest random {largest.max():.6f}")
attained_ok = all(abs(r["sympy"] - r["bound"]) <= 1e-12 * r["bound"]
                  and np.allclose(r["worst_case"][1:], r["bound"], rtol=1e-12)
                  and np.all(r["worst_case"] <= r["bound"] * (1 + 1e-12)) for r in step_table)
never_above = all(r["largest_random"] <= r["bound"] * (1 + 1e-12) for r in step_table)
worst = {b2: r["worst_case"] for r in step_table for b1, b2 in [r["betas"]] if b1 == 0.9}
worst_bc = worst_case_steps(0.9, 0.95, WC_STEPS, bias_correction=True)
bound_bc = np.array([adams.step_bound(0.9, 0.95, bias_correction=True, step=t) for t in range(1, WC_STEPS + 1)])
bias_corrected_ok = bool(np.all(worst_bc <= bound_bc * (1 + 1e-12)) and np.allclose(worst_bc, bound_bc, rtol=1e-12))
print(f"every pair attained and never exceeded: {attained_ok and never_above}; bias-corrected form: {bias_corrected_ok}")

# %% [markdown]
# The cap is not a rare event: random gradients reach within a hair of it, because any gradient
# between about 1.4 and 2.9 times the momentum (same sign) gives a step within 1% of $C$. What the
# worst-case sequence adds is reaching it *every* step. With $\beta_2 = 0.999$ the same situation
# gives steps of $3.29\,\eta$: the learning rate no longer says how far a coordinate can move.

# %% [markdown]
# ## 2. The first step, measured
#
# At $t = 1$, $m_0 = 0$ so $\nu_1 = (1-\beta_2) g_1^2$ and every coordinate moves by the same amount,
# independent of its gradient: $\eta/\sqrt{1-\beta_2}$ in the default form (4.47 $\eta$ at
# $\beta_2 = 0.95$), $(1-\beta_1)\eta/\sqrt{1-\beta_2}$ (0.447 $\eta$) in the paper-text form. AdamW
# moves by $\eta\,|g|/(|g| + \epsilon) \approx \eta$. SGD moves by $\eta |g|$, so its first step spans
# as many orders of magnitude as the gradients do. A learning-rate warmup hides the factor 4.47;
# without one, AdamS's first steps are much larger than AdamW's at the same lr.
#
# We measure it with one real step of each optimizer (float32, default eps = 1e-8) on 4096
# coordinates whose gradients range over six orders of magnitude.

# %%
FIRST_LR = 1e-3
gen = np.random.default_rng(7)
g_first = torch.from_numpy(
    (10.0 ** gen.uniform(-3, 3, 4096)) * gen.choice([-1.0, 1.0], 4096)
).float()
FIRST_STEP_OPTIMIZERS = {
    "AdamS (bias corr.)": lambda p: adams.AdamS(p, lr=FIRST_LR, betas=BETAS, weight_decay=0.0),
    "AdamS (paper text)": lambda p: adams.AdamS(p, lr=FIRST_LR, betas=BETAS, weight_decay=0.0,
                                                bias_correction=False),
    "AdamW": lambda p: torch.optim.AdamW(p, lr=FIRST_LR, betas=BETAS, weight_decay=0.0),
    "SGD + momentum": lambda p: torch.optim.SGD(p, lr=FIRST_LR, momentum=0.9),
}
first_predicted = {
    "AdamS (bias corr.)": adams.first_step_size(1.0, *BETAS, bias_correction=True),
    "AdamS (paper text)": adams.first_step_size(1.0, *BETAS, bias_correction=False),
    "AdamW": 1.0,
}
first_measured = {}
for name, make in FIRST_STEP_OPTIMIZERS.items():
    p = torch.nn.Parameter(torch.zeros(4096, dtype=torch.float32))
    opt = make([p])
    p.grad = g_first.clone()
    opt.step()
    ratio = p.detach().abs().double().numpy() / FIRST_LR
    first_measured[name] = ratio
    expected = first_predicted.get(name)
    print(f"{name:19s} |step| / lr: min {ratio.min():.5g}  median {np.median(ratio):.5g}  max {ratio.max():.5g}"
          + (f"   predicted {expected:.5g}" if expected else "   (= |g|)"))
    if expected:
        assert np.allclose(ratio, expected, rtol=1e-4)
print(f"default form / AdamW: {np.median(first_measured['AdamS (bias corr.)']) / np.median(first_measured['AdamW']):.3f}")

# %% [markdown]
# ## 3. Memory: what the optimizer keeps between steps
#
# AdamW keeps `exp_avg` and `exp_avg_sq` per parameter; AdamS keeps only `exp_avg`; SGD with
# momentum keeps `momentum_buffer`. AdamS and AdamW also store a scalar step counter per parameter
# tensor (4 bytes each). We build small float32 models of several widths, take one step with each
# optimizer (state is created lazily on the first step), and read `adams.state_bytes`.

# %%
MEMORY_OPTIMIZERS = memory_lib.MEMORY_OPTIMIZERS
WIDTHS = [32, 128] if QUICK else [32, 64, 128, 256, 512]
memory = memory_lib.state_by_width(WIDTHS)  # the models and the one step: analysis.memory

print(f"{'width':>5} {'params':>9} {'AdamS':>10} {'AdamW':>10} {'SGD+mom':>10} {'AdamS/AdamW':>12} {'AdamS-SGD':>10}")
ratios, buffer_ratios, extra = [], [], []
for width, row in memory.items():
    total = {name: sum(row[name].values()) for name in MEMORY_OPTIMIZERS}
    buffers = {name: sum(v for k, v in row[name].items() if k != "step") for name in MEMORY_OPTIMIZERS}
    ratios.append(total["AdamS"] / total["AdamW"])
    buffer_ratios.append(buffers["AdamS"] / buffers["AdamW"])
    extra.append(total["AdamS"] - total["SGD + momentum"])
    print(f"{width:>5} {row['params']:>9} {total['AdamS']:>10} {total['AdamW']:>10} "
          f"{total['SGD + momentum']:>10} {ratios[-1]:>12.6f} {extra[-1]:>10}")
    assert buffers["AdamS"] == buffers["SGD + momentum"] == 4 * row["params"]
    assert buffer_ratios[-1] == 0.5
    assert extra[-1] == 4 * row["tensors"]  # one float32 step counter per tensor

# %% [markdown]
# Per parameter, AdamS holds 4 bytes of state, AdamW 8, SGD with momentum 4; the only difference
# between AdamS and SGD is the step counter, a few bytes per tensor.
#
# ## 4. The facts in one figure

# %%
fig, axes = plt.subplots(2, 2, figsize=(13, 10), constrained_layout=True)

ax = axes[0, 0]
ax.plot(beta2_grid, C_grid, color="tab:red", lw=2)
for b2 in (0.9, 0.95, 0.999):
    ax.plot(b2, adams.step_bound(0.9, b2), "ko", ms=6, zorder=3)
ax.annotate("β2 = β1 = 0.9\nC = 1 (the minimum)", (0.9, 1.0), xytext=(0.55, 0.35),
            arrowprops=dict(arrowstyle="->"), fontsize=10)
ax.annotate(f"β2 = 0.95 (AdamS)\nC = {C_095:.3f}", (0.95, C_095), xytext=(0.62, 2.3),
            arrowprops=dict(arrowstyle="->"), fontsize=10)
ax.annotate(f"β2 = 0.999 (AdamW's usual)\nC = {C_0999:.2f}", (0.999, C_0999), xytext=(0.85, 4.3),
            arrowprops=dict(arrowstyle="->"), fontsize=10)
ax.set_xscale("logit")
beta2_ticks = [0.5, 0.9, 0.95, 0.99, 0.999, 0.9999]
ax.set_xticks(beta2_ticks, [f"{b:g}" for b in beta2_ticks])
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.grid(alpha=0.3)
ax.set(xlabel=r"$\beta_2$ (logit scale)", ylabel="largest |step| / lr   (ε = 0)", ylim=(0, 5.5),
       title=r"(a) step bound C, paper-text form, $\beta_1 = 0.9$")

ax = axes[0, 1]
t_axis = np.arange(1, WC_STEPS + 1)
for b2, color in ((0.999, "tab:purple"), (0.95, "tab:red")):
    ax.plot(t_axis, worst[b2], "o-", color=color, ms=4, label=f"worst case, β2 = {b2}")
    ax.axhline(adams.step_bound(0.9, b2), color=color, ls=":", lw=1.2)
ax.plot(t_axis, worst_bc, "s-", color="tab:orange", ms=4, label="worst case, β2 = 0.95, bias-corrected")
ax.plot(t_axis, bound_bc, ":", color="tab:orange", lw=1.2)
ax.plot(t_axis, random_095[:, :WC_STEPS].max(axis=0), "-", color="0.6", lw=5, alpha=0.6, zorder=1,
        label=f"random heavy-tailed g, β2 = 0.95: largest\nover {len(RANDOM_SEEDS)} seeds × 256 coordinates")
ax.plot(t_axis, np.median(random_095_median[:, :WC_STEPS], axis=0), "--", color="0.3", lw=1.5,
        label="random heavy-tailed g: median coordinate")
ax.set(xlabel="step t", ylabel="|step| / lr   (ε = 0)", ylim=(0, 6.6), xlim=(0.5, WC_STEPS + 0.5),
       title="(b) gradient sequences against their bound (dotted)")
ax.grid(alpha=0.3)
ax.legend(fontsize=9, loc="upper right")

ax = axes[1, 0]
names = list(first_measured)
positions = np.arange(len(names))
med = np.array([np.median(first_measured[n]) for n in names])
lo = med - np.array([first_measured[n].min() for n in names])
hi = np.array([first_measured[n].max() for n in names]) - med
ax.bar(positions, med, color=["tab:red", "salmon", "tab:blue", "tab:green"], alpha=0.85, width=0.6)
ax.errorbar(positions, med, yerr=[lo, hi], fmt="none", ecolor="k", capsize=6, lw=1.2)
for x, n in zip(positions, names):
    if n == "SGD + momentum":
        ax.text(x, 1.5e3, "= |g|\n(1e-3 to 1e3)", ha="center", va="bottom", fontsize=10)
    else:
        ax.text(x, med[x] * 1.3, f"{med[x]:.3g}", ha="center", va="bottom", fontsize=11)
ax.set_yscale("log")
ax.set_xticks(positions, [n.replace(" (", "\n(").replace(" + ", "\n+ ") for n in names])
ax.set(ylabel="|first step| / lr", ylim=(3e-4, 3e4),
       title="(c) first step of each optimizer\n(bar: median over 4096 coordinates, whisker: min to max)")

ax = axes[1, 1]
widths = list(memory)
params = np.array([memory[w]["params"] for w in widths])
styles = {"AdamW": dict(lw=2.5, marker="o"), "AdamS": dict(lw=6, marker="o", ms=10, alpha=0.45),
          "SGD + momentum": dict(lw=2, marker="x", ms=8, ls="--")}
for name in MEMORY_OPTIMIZERS:
    per_param = np.array([sum(memory[w][name].values()) for w in widths]) / params
    ax.plot(params, per_param, color=COLORS[name], label=name, **styles[name])
ax.text(params[0], 4.4, "AdamS and SGD + momentum: 4 bytes/param\n(+ 4 bytes per tensor for AdamS's step counter)",
        fontsize=10, va="bottom")
ax.text(params[0], 8.4, "AdamW: 8 bytes/param (two buffers)", fontsize=10, va="bottom")
ax.set_xscale("log")
ax.set(xlabel="model parameters (log scale)", ylabel="optimizer state, bytes per parameter (float32)",
       ylim=(0, 10), title="(d) optimizer state, measured with adams.state_bytes")
ax.legend(loc="lower right")
fig.suptitle("AdamS: bounded step, first step and memory", fontsize=14)
save_figure(fig, NAME)
plt.close(fig)


# %% [markdown]
# ## Exercises
#
# 1. For $\beta_1 = 0.9$, which $\beta_2$ makes the step bound $C(\beta_1, \beta_2)$ smallest, and
#    what is the smallest value? Derive it by hand, then check numerically with `adams.step_bound`.
# 2. GPT-2 small has 124,439,808 parameters. In float32, how many MiB of optimizer state does
#    AdamS save compared with AdamW (ignore the step counters)? Use the bytes per parameter you
#    measured in section 3.
#
# Answers (computed, then checked):

# %%
# 1. The minimum of C over beta2 is at beta2 = beta1, where C = sqrt(beta1 + (1 - beta1)) = 1.
fine_grid = np.linspace(0.5, 0.9999, 1_000_001)
best_beta2 = float(fine_grid[np.argmin(bound_constant(0.9, fine_grid))])
best_C = adams.step_bound(0.9, best_beta2)
print(f"1. argmin over beta2: {best_beta2:.6f}, minimum C = {best_C:.8f}")
assert abs(best_beta2 - 0.9) < 1e-5 and abs(best_C - 1.0) < 1e-9

# 2. Bytes per parameter of state from the measurement above (buffers only).
w0 = WIDTHS[0]
bytes_per_param = {name: sum(v for k, v in memory[w0][name].items() if k != "step") / memory[w0]["params"]
                   for name in MEMORY_OPTIMIZERS}
gpt2_params = 124_439_808
saved_mib = (bytes_per_param["AdamW"] - bytes_per_param["AdamS"]) * gpt2_params / 2**20
print(f"2. bytes/param: {bytes_per_param}; AdamS saves {saved_mib:.1f} MiB on GPT-2 small")
assert bytes_per_param == {"AdamS": 4.0, "AdamW": 8.0, "SGD + momentum": 4.0}
assert abs(saved_mib - 474.7) < 0.1

# ## Results for `paper_repro.md`

# %%
first_text = {n: f"{first_measured[n].min():.4f} to {first_measured[n].max():.4f}" for n in first_predicted}
claims = [
    {
        "id": "bounded-step-constant",
        "order": 11,
        "claim": (
            "With eps = 0 each coordinate's step |m_t|/sqrt(nu_t) (paper-text form) is at most "
            "sqrt(beta1^2/beta2 + (1-beta1)^2/(1-beta2)), and a worst-case gradient sequence attains it."
        ),
        "paper_value": "bounded update (follows from the update rule by Cauchy-Schwarz); 1.026 at betas (0.9, 0.95)",
        "measured": (
            "; ".join(f"({r['betas'][0]}, {r['betas'][1]}): bound {r['bound']:.4f}, worst-case sequence "
                      f"{r['attained']:.4f}, largest random {r['largest_random']:.4f}" for r in step_table)
            + f". Worst case equal to the bound (and to sympy's) to 1e-12 from step 2 on; heavy-tailed random "
            f"gradients ({len(RANDOM_SEEDS)} seeds x {RANDOM_STEPS} steps x 256 coords a pair), median coordinate "
            f"{step_table[0]['median_random']:.3f} at (0.9, 0.95); no step above the bound"
        ),
        "command": COMMAND,
        "verdict": "holds" if attained_ok and never_above and bias_corrected_ok else "does not hold",
        "note": (
            "Verdict rule: holds if at every pair the worst-case sequence reaches the closed form (and sympy's "
            "derivation) to 1e-12 and no step, worst case or random, exceeds it; does not hold otherwise. "
            "Measured on adams.AdamS in float64 with eps = 0, lr = 1, no weight decay. The worst case is "
            "g_t = r m_{t-1} with r = beta2(1-beta1)/(beta1(1-beta2)) at every step (geometrically growing "
            "gradients). Random gradients also come within a hair of the bound, since any g_t between about "
            "1.4 and 2.9 times m_{t-1} gives a step within 1% of it: the bound is a real cap, not a rare "
            "extreme. The default "
            "(bias-corrected) form has a step-dependent constant, also attained (tested at (0.9, 0.95)); "
            "its largest value is the first step."
        ),
    },
    {
        "id": "bounded-step-beta2-near-beta1",
        "order": 12,
        "claim": (
            "The step bound is smallest (exactly 1) at beta2 = beta1; it is 1.03 at beta2 = 0.95 but 3.29 at "
            "AdamW's usual 0.999, so beta2 should stay close to beta1."
        ),
        "paper_value": "AdamS is run with betas (0.9, 0.95), not AdamW's common (0.9, 0.999)",
        "measured": (
            f"C(0.9, 0.95) = {C_095:.4f}, C(0.9, 0.999) = {C_0999:.4f}; numerical argmin over beta2 = "
            f"{best_beta2:.6f} with C = {best_C:.6f} (closed form, no spread)"
        ),
        "command": COMMAND,
        "verdict": "holds",
        "note": (
            "A property of the update rule (adams.step_bound, checked against the formula written out in "
            "the notebook and against the worst-case runs). A bound on the step is not a statement about "
            "final loss: whether beta2 = 0.999 trains worse is for the training notebooks."
        ),
    },
    {
        "id": "first-step-size",
        "order": 13,
        "claim": (
            "At t = 1 AdamS moves every coordinate by lr/sqrt(1-beta2) (4.47 lr at beta2 = 0.95) with bias "
            "correction and by (1-beta1) lr/sqrt(1-beta2) (0.447 lr) without; AdamW moves by about lr."
        ),
        "paper_value": (
            "not stated in the paper; follows from the update (bias correction as in the released code)"
        ),
        "measured": (
            f"|step|/lr over 4096 coords with |g| from 1e-3 to 1e3 (float32): AdamS bias-corrected "
            f"{first_text['AdamS (bias corr.)']}, paper-text {first_text['AdamS (paper text)']}, AdamW "
            f"{first_text['AdamW']}; SGD-momentum {first_measured['SGD + momentum'].min():.2g} to "
            f"{first_measured['SGD + momentum'].max():.2g}"
        ),
        "command": COMMAND,
        "verdict": "holds",
        "note": (
            "One real step of each optimizer, lr = 1e-3, betas (0.9, 0.95), default eps = 1e-8, no weight "
            "decay. The spread is over coordinates (float32 rounding and eps). With the same lr and no "
            "warmup, the default AdamS's first step is 4.47 times AdamW's; warmup hides the factor."
        ),
    },
]
numbers = {
    "step_bound": {
        "beta1": 0.9,
        "C_at_0.95": C_095,
        "C_at_0.999": C_0999,
        "argmin_beta2": best_beta2,
        "min_C": best_C,
        "pairs": step_table,
        "worst_case_0.95_bias_corrected": worst_bc,
        "bound_0.95_bias_corrected": bound_bc,
    },
    "first_step": {
        "lr": FIRST_LR,
        "predicted_over_lr": first_predicted,
        "measured_over_lr": {n: {"min": v.min(), "median": np.median(v), "max": v.max()}
                             for n, v in first_measured.items()},
    },
    "memory": {str(w): row for w, row in memory.items()},
    "gpt2_small_saved_mib": saved_mib,
}
print(save_results(NAME, numbers, claims))
