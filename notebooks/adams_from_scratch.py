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
# # AdamS from scratch
#
# AdamS (Zhang, Wang & Chen, arXiv 2505.16363) is Adam with one buffer removed: the denominator
# that Adam builds from a running average of squared gradients is built from the momentum itself.
# This notebook takes the update apart, runs it next to AdamW and SGD with momentum on a toy
# problem, and checks one fact about it; `adams_step_and_memory` goes on to the bounded step, the
# first step and the memory.
#
# **Claim checked here** (a row of `paper_repro.md`):
#
# 14. *Scale invariance.* With $\epsilon = 0$ the update is unchanged when every gradient is
#     multiplied by the same $c > 0$.
#
# **Learning goals.** After working through it you should be able to
#
# * write the AdamS update from memory, in both forms, and say which momentum the denominator uses;
# * check an optimizer against a one-line-per-equation reference;
# * read a side-by-side run of three optimizers: what the learning rate means for each, and what
#   gradient noise does to each denominator.
#
# The notebook runs as a plain script: `python -m analysis.figures adams_from_scratch`
# (add `--quick` for the few-second version).

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch

import adams
from adams.reference import AdamSReference, adams_step
from analysis.report import command_for, quick_mode, save_figure, save_results

NAME = "adams_from_scratch"
COMMAND = command_for(NAME)
QUICK = quick_mode()
F64 = torch.float64
np.set_printoptions(precision=4, suppress=True)
print(f"quick mode: {QUICK}")

# %% [markdown]
# ## 1. The update, line by line
#
# Steps are counted from $t = 1$, $m_0 = 0$, $c_t = 1 - \beta_1^t$. The default form:
#
# $$
# \begin{aligned}
# w &\leftarrow (1 - \eta\lambda)\, w && \text{decoupled weight decay, first}\\
# \nu_t &= \beta_2\,(m_{t-1}/c_t)^2 + (1-\beta_2)\, g_t^2 && \text{the \emph{previous} momentum}\\
# m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t\\
# w &\leftarrow w - \eta\, \frac{m_t/c_t}{\sqrt{\nu_t} + \epsilon} && \epsilon \text{ outside the root}
# \end{aligned}
# $$
#
# The paper prints the same update with every $c_t$ replaced by 1 (`bias_correction=False`).
# Compare Adam: it keeps a second buffer $v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$ and divides by
# $\sqrt{v_t}$. AdamS has no such buffer: $\nu_t$ is rebuilt each step from $m_{t-1}$ and $g_t$ and
# then thrown away. The package's teaching reference is one line per equation:

# %%
print(inspect.getsource(adams_step))

# %% [markdown]
# Three steps on one coordinate, both forms, by calling the reference directly. Watch the first
# row: $m_0 = 0$, so $\nu_1 = (1-\beta_2) g_1^2$ and the step is $|g_1| / \sqrt{(1-\beta_2) g_1^2}$
# times $\eta$ (default form) or $(1-\beta_1)$ times that (paper-text form), whatever $g_1$ is.

# %%
LR, BETAS = 0.1, (0.9, 0.95)
g_demo = np.array([2.0, -1.0, 0.5])
for bias_correction in (True, False):
    print(f"bias_correction={bias_correction}")
    print("  t     g_t    m_{t-1}     nu_t      m_t    step/lr")
    w, m = np.array(0.0), np.array(0.0)
    for t, g in enumerate(g_demo, start=1):
        w_new, m_new, nu = adams_step(
            w, g, m, t, lr=LR, beta1=BETAS[0], beta2=BETAS[1], eps=0.0,
            weight_decay=0.0, bias_correction=bias_correction,
        )
        print(f"  {t}  {g:6.2f}  {float(m):8.4f}  {float(nu):8.4f}  {float(m_new):7.4f}  {float(w - w_new) / LR:8.4f}")
        w, m = w_new, m_new

# %% [markdown]
# The NumPy reference is what the torch optimizer is tested against. A quick check here: feed both
# the same 50 random gradients (with weight decay on) and compare the parameters and the momentum.

# %%
rng = np.random.default_rng(0)
grads = rng.standard_normal((50, 5)) * np.logspace(-2, 2, 5)  # coordinates of very different scale
for bias_correction in (True, False):
    settings = dict(lr=1e-2, betas=BETAS, eps=1e-8, weight_decay=0.1, bias_correction=bias_correction)
    ref = AdamSReference(**settings)
    w_ref = np.ones(5)
    p = torch.nn.Parameter(torch.ones(5, dtype=F64))
    opt = adams.AdamS([p], **settings)
    for g in grads:
        w_ref = ref.step(w_ref, g)
        p.grad = torch.from_numpy(g)
        opt.step()
    gap_w = np.abs(p.detach().numpy() - w_ref).max()
    gap_m = np.abs(opt.state[p]["exp_avg"].numpy() - ref.m).max()
    print(f"bias_correction={bias_correction}: max |w_torch - w_ref| = {gap_w:.1e}, max |m_torch - m_ref| = {gap_m:.1e}")
    assert gap_w < 1e-12 and gap_m < 1e-12

# %% [markdown]
# ## 2. A toy valley: AdamS, AdamW and SGD with momentum side by side
#
# $f(x, y) = (1 - x)^2 + 5\,(y - x^2)^2$ is a curved valley (a gentle Rosenbrock) with its minimum
# at $(1, 1)$. All three optimizers are the real torch ones: `adams.AdamS`, `torch.optim.AdamW`,
# `torch.optim.SGD(momentum=0.9)`. AdamS and AdamW share every hyperparameter (lr, betas, no weight
# decay), which is how the paper proposes to use AdamS: swap the class, keep the recipe. SGD needs
# its own learning rate because its step scales with the gradient.
#
# The noisy variant adds Gaussian noise of standard deviation $\sigma$ to every gradient. The noise
# comes from a seeded `numpy.random.Generator`, and every optimizer sees the same noise sequence
# for a given seed.

# %%
START = np.array([-1.5, 2.0])
MINIMUM = np.array([1.0, 1.0])
ADAM_LR, SGD_LR, NOISE_SD = 0.02, 0.004, 2.0
STEPS = 150 if QUICK else 600
SEEDS = [0, 1] if QUICK else [0, 1, 2, 3, 4]


def valley(w):
    x, y = w[0], w[1]
    return (1 - x) ** 2 + 5 * (y - x**2) ** 2


OPTIMIZERS = {
    "AdamS": lambda params: adams.AdamS(params, lr=ADAM_LR, betas=BETAS, weight_decay=0.0),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=ADAM_LR, betas=BETAS, weight_decay=0.0),
    "SGD + momentum": lambda params: torch.optim.SGD(params, lr=SGD_LR, momentum=0.9),
}
COLORS = {"AdamS": "tab:red", "AdamW": "tab:blue", "SGD + momentum": "tab:green"}


def run(make_optimizer, steps, noise_sd=0.0, seed=0, loss_scale=1.0):
    """Optimize the valley; return the path (steps + 1, 2) and the noise-free loss at each point."""
    noise = np.random.default_rng(seed)
    w = torch.nn.Parameter(torch.tensor(START))
    opt = make_optimizer([w])
    path = [w.detach().numpy().copy()]
    for _ in range(steps):
        opt.zero_grad()
        (loss_scale * valley(w)).backward()
        if noise_sd:
            w.grad += loss_scale * torch.from_numpy(noise_sd * noise.standard_normal(2))
        opt.step()
        path.append(w.detach().numpy().copy())
    path = np.array(path)
    return path, valley(path.T)


clean = {name: run(make, STEPS) for name, make in OPTIMIZERS.items()}
noisy = {name: [run(make, STEPS, NOISE_SD, seed) for seed in SEEDS] for name, make in OPTIMIZERS.items()}

tail = STEPS // 5  # summarize the last 20% of steps: with a constant lr the adaptive methods hover
toy_numbers = {}
for name in OPTIMIZERS:
    clean_path, clean_loss = clean[name]
    noisy_tail = np.array([losses[-tail:].mean() for _, losses in noisy[name]])
    toy_numbers[name] = {
        "first_step_length": np.linalg.norm(clean_path[1] - START),
        "clean_tail_loss": clean_loss[-tail:].mean(),
        "clean_tail_step_length": np.median(np.linalg.norm(np.diff(clean_path[-tail:], axis=0), axis=1)),
        "noisy_tail_loss_per_seed": noisy_tail,
        "noisy_tail_loss_median": np.median(noisy_tail),
    }
    r = toy_numbers[name]
    print(f"{name:15s} first step {r['first_step_length']:.4f}   exact: tail loss {r['clean_tail_loss']:.1e}, "
          f"tail step {r['clean_tail_step_length']:.1e}   noisy: tail loss median {np.median(noisy_tail):.1e} "
          f"(range {noisy_tail.min():.1e} to {noisy_tail.max():.1e}, {len(SEEDS)} seeds)")

# %% [markdown]
# Things to look for in the figure:
#
# * AdamS's first step (the dot after the start) is longer than AdamW's at the same learning rate;
#   exercise 2 predicts its length, and `adams_step_and_memory` measures the factor.
# * Both adaptive methods move at a speed set by the learning rate rather than by the gradient, so
#   they cross the flat floor of the valley at the same pace as its steep walls. SGD is fast on the
#   walls and slow on the floor.
# * Near the minimum, with a constant learning rate, AdamS keeps taking larger steps than AdamW
#   (see the printed tail step lengths). When the gradient flips sign from one step to the next, the
#   momentum is small; AdamW's denominator $\sqrt{v_t}$ still remembers $|g|$ and keeps the step
#   small, while AdamS's $\nu_t$ is built from the small $m_{t-1}^2$ plus only $(1-\beta_2) g_t^2$,
#   so its step stays near $\eta$. In real training a decaying learning rate takes care of this;
#   on the toy it shows up as a plateau.
# * With noisy gradients AdamW starts slower: its $v_t$ averages the noise's square,
#   $E[g^2] = \mu^2 + \sigma^2$, while AdamS's $m_{t-1}^2$ holds only the part of the noise that
#   survives the momentum average. The stationary-statistics notebook measures when the two
#   denominators agree.
#
# Noisy loss curves are smoothed with a moving average (window in the panel title) before taking
# the median and range over seeds.

# %%
def moving_average(values, window):
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


WINDOW = 10 if QUICK else 25
xs, ys = np.meshgrid(np.linspace(-2.0, 2.0, 300), np.linspace(-1.0, 3.5, 300))
zs = valley(np.stack([xs, ys]))
levels = np.logspace(-2, 2.2, 14)

fig, axes = plt.subplots(2, 2, figsize=(13, 10.5), constrained_layout=True)
for ax, title, paths in (
    (axes[0, 0], "(a) exact gradients: paths (dot: after step 1)", {n: clean[n] for n in OPTIMIZERS}),
    (axes[0, 1], f"(b) noisy gradients (σ = {NOISE_SD:g}, seed {SEEDS[0]}): paths (dot: after step 1)",
     {n: noisy[n][0] for n in OPTIMIZERS}),
):
    ax.contour(xs, ys, zs, levels=levels, colors="0.75", linewidths=0.7)
    for name, (path, _) in paths.items():
        ax.plot(path[:, 0], path[:, 1], "-", color=COLORS[name], lw=1.4, label=name, alpha=0.9)
        ax.plot(path[1, 0], path[1, 1], "o", color=COLORS[name], ms=6)  # after the first step
    ax.plot(*START, "ks", ms=7, label="start")
    ax.plot(*MINIMUM, "k*", ms=13, label="minimum (1, 1)")
    ax.set(title=title, xlabel="x", ylabel="y", xlim=(-2, 2), ylim=(-1, 3.5))
    ax.legend(loc="upper right", fontsize=10)

steps_axis = np.arange(STEPS + 1)
ax = axes[1, 0]
for name in OPTIMIZERS:
    ax.semilogy(steps_axis, clean[name][1], color=COLORS[name], lw=1.4, label=name)
ax.set(title="(c) exact gradients: loss", xlabel="step", ylabel="f(x, y)",
       ylim=(max(1e-8, 0.3 * min(c[1].min() for c in clean.values())), 30))
ax.legend(fontsize=10, loc="upper right")

ax = axes[1, 1]
smooth_axis = steps_axis[WINDOW - 1:]
for name in OPTIMIZERS:
    curves = np.array([moving_average(losses, WINDOW) for _, losses in noisy[name]])
    ax.semilogy(smooth_axis, np.median(curves, axis=0), color=COLORS[name], lw=1.6, label=f"{name} (median)")
    ax.fill_between(smooth_axis, curves.min(axis=0), curves.max(axis=0), color=COLORS[name], alpha=0.18)
ax.set(title=f"(d) noisy gradients: loss, {WINDOW}-step moving average\n(line: median, band: range over "
             f"{len(SEEDS)} noise seeds)", xlabel="step", ylabel="f(x, y)")
ax.legend(fontsize=10, loc="upper right")
fig.suptitle(f"Toy valley f = (1-x)² + 5(y-x²)². AdamS and AdamW: lr {ADAM_LR:g}, betas {BETAS}, no weight "
             f"decay; SGD: lr {SGD_LR:g}, momentum 0.9", fontsize=13)
save_figure(fig, NAME)
plt.close(fig)


# %% [markdown]
# ## Exercises
#
# 1. Multiply the valley's loss by 1000 (so every gradient is 1000 times larger) and run AdamS with
#    $\epsilon = 0$ on the noisy valley. How far does the path move from the original one? What
#    would happen to SGD with the same learning rate?
# 2. From the update in section 1, predict the length of the first step of AdamS (default form) and
#    of AdamW on the valley, from the start $(-1.5, 2)$ at learning rate 0.02. Why does it not
#    depend on the gradient there?
#
# Answers (computed, then checked):

# %%
# 1. With eps = 0, scaling every gradient by k > 0 scales m by k and nu by k^2: the step is unchanged.
make_eps0 = lambda params: adams.AdamS(params, lr=ADAM_LR, betas=BETAS, eps=0.0, weight_decay=0.0)
path_1, _ = run(make_eps0, STEPS, NOISE_SD, seed=0)
path_1000, _ = run(make_eps0, STEPS, NOISE_SD, seed=0, loss_scale=1000.0)
scale_gap = np.abs(path_1 - path_1000).max()
with np.errstate(over="ignore", invalid="ignore"):  # the SGD loss overflows: that is the point
    sgd_path, _ = run(OPTIMIZERS["SGD + momentum"], 5, loss_scale=1000.0)
print(f"1. max distance between the paths: {scale_gap:.1e}; "
      f"SGD at the same lr after 5 steps sits at {np.abs(sgd_path[-1]).max():.1e} from the origin (diverged)")
assert scale_gap < 1e-9
assert np.abs(sgd_path[-1]).max() > 1e3

# 2. m_0 = 0, so nu_1 = (1 - beta2) g^2 and each coordinate moves by lr |g| / sqrt((1 - beta2) g^2) =
#    lr / sqrt(1 - beta2) (AdamW: lr |g| / |g| = lr), up to eps; both coordinates move, so the length is sqrt(2) times that.
predicted = {"AdamS": np.sqrt(2) * ADAM_LR / np.sqrt(1 - BETAS[1]), "AdamW": np.sqrt(2) * ADAM_LR}
for name, length in predicted.items():
    print(f"2. {name}: predicted {length:.6f}, measured {toy_numbers[name]['first_step_length']:.6f}")
    assert abs(toy_numbers[name]["first_step_length"] / length - 1) < 1e-6  # eps = 1e-8 against |g| of order 10

# %% [markdown]
# ## Results for `paper_repro.md`

# %%
claims = [
    {
        "id": "gradient-scale-invariance",
        "order": 14,
        "claim": "With eps = 0 the AdamS update is unchanged when every gradient is multiplied by c > 0.",
        "paper_value": "follows from the update rule (m scales by c, nu by c^2)",
        "measured": (
            f"noisy toy valley, loss x1000, {STEPS} steps: max path difference {scale_gap:.1e}"
        ),
        "command": COMMAND,
        "verdict": "holds",
        "note": "Exercise 1 of the notebook; float64, eps = 0. With eps > 0 it holds only while |g| >> eps.",
    },
]
numbers = {
    "toy_valley": {
        "function": "(1-x)^2 + 5(y-x^2)^2",
        "start": START,
        "steps": STEPS,
        "seeds": list(SEEDS),
        "noise_sd": NOISE_SD,
        "adam_lr": ADAM_LR,
        "sgd_lr": SGD_LR,
        "betas": BETAS,
        "results": toy_numbers,
    },
    "first_step_length_predicted": predicted,
    "scale_invariance_gap": scale_gap,
}
print(save_results(NAME, numbers, claims))
