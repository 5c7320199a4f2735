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
# # AdamS's denominator against Adam's second moment under gradient noise
#
# AdamS divides the momentum by $\sqrt{V_t}$ with $V_t = \beta_2 m_{t-1}^2 + (1-\beta_2) g_t^2$, where
# Adam divides by $\sqrt{S_t}$ with $S_t = \beta_2 S_{t-1} + (1-\beta_2) g_t^2$. The paper argues
# from one coordinate with gradients $g_t = \mu + \sigma\xi_t$, $\xi_t \sim N(0, 1)$ i.i.d.: $\mu/\sigma$
# is the coordinate's signal-to-noise ratio, and a larger batch means a larger $\mu/\sigma$.
#
# **Claims checked here** (rows of `paper_repro.md`):
#
# 31. *In the large-batch regime $E[V_\infty] \approx E[S_\infty]$*, so AdamS normalizes like Adam.
# 32. *The variance difference between $V_\infty$ and $S_\infty$ is smallest near $\beta \approx 0.95$.*
#
# Two notebooks go on from here: `stationary_steps` (the normalized steps $m/\sqrt{V}$ and
# $m/\sqrt{S}$ that a practitioner feels) and `stationary_noise_models` (heavy-tailed and
# time-correlated noise).
#
# **Learning goals:** derive stationary moments from fixed points of moment recursions (sympy);
# check a closed form with Monte Carlo *within standard errors*; read where a qualitative claim
# holds on a map over $(\beta, \mu/\sigma)$ instead of at one point.
#
# The closed forms come from `analysis.stationary.derivations` (sympy), their NumPy versions from
# `analysis.stationary`, the simulation from `analysis.stationary.simulation` (one seeded generator per block
# of chains, burn-in chosen from $\beta$; see the module docstrings).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import sympy as sp
from matplotlib.colors import TwoSlopeNorm
from scipy.optimize import brentq
from scipy.stats import norm

from analysis.stationary import derivations as d
from analysis import stationary as st
from analysis.report import command_for, format_pm, quick_mode, save_figure, save_results

NAME = "stationary_statistics"
COMMAND = command_for(NAME)
QUICK = quick_mode()
SEED = 20250521
CHAINS = 2_000 if QUICK else 10_000
N_GRID = 8 if QUICK else 30
PAPER_BETAS = (0.9, 0.95)
sns.set_theme(style="whitegrid", context="notebook")
print(f"quick mode: {QUICK}; {CHAINS} chains per grid point; {N_GRID} x {N_GRID} standard grid")

# %% [markdown]
# ## 1. The closed forms, derived
#
# Two facts do all the work (see `analysis/stationary/derivations.py`): $m_{t-1}$ and $S_{t-1}$ depend only on
# past gradients, so they are independent of $g_t$; and in the stationary law each moment is a fixed
# point of its own recursion. Solving those fixed points order by order gives (noise with
# $E\xi^3 = \gamma$, $E\xi^4 = \kappa$; Gaussian: $\gamma = 0, \kappa = 3$):

# %%
derived = d.stationary()
for key in ("E_m", "Var_m", "E_S", "Var_S", "E_V", "Var_m2", "Var_g2"):
    print(f"{key:>7} = {derived[key]}")
print("  Var_V = beta2**2 * Var_m2 + (1 - beta2)**2 * Var_g2     (m_{t-1} independent of g_t)")
gauss = {k: sp.factor(v.subs(d.GAUSSIAN)) for k, v in derived.items()}
print("\nGaussian noise:")
for key in ("Var_S", "E_V", "Var_V"):
    print(f"{key:>7} = {gauss[key]}")
limits = d.ratio_limits()
print("\nLimits of the ratios (Gaussian):")
for key, expr in limits.items():
    print(f"{key:>16}: {expr}")

# %% [markdown]
# Read the limits: in the large-batch limit the means agree for every $\beta$, and the variances
# agree when $\beta_2 = \beta_1$ (the large-batch variance ratio is $(\beta_2^2 a + (1-\beta_2)^2)
# (1+\beta_2)/(1-\beta_2)$ with $a = (1-\beta_1)/(1+\beta_1)$, which is 1 at $\beta_2 = \beta_1$). In the
# noise-dominated limit $E[V]/E[S] = \beta_2 a + 1 - \beta_2$: at $(0.9, 0.95)$ that is 0.10, so
# AdamS's denominator is ten times smaller than Adam's.
#
# ## 2. The map over $(\beta, \mu/\sigma)$, closed form and Monte Carlo
#
# The standard grid: $\beta_1 = \beta_2 = \beta$ with $1-\beta$ log-spaced from 0.5 to 0.001, and
# $\mu/\sigma$ log-spaced from 0.01 to 100, $\sigma = 1$.

# %%
beta, snr = st.standard_grid(N_GRID, N_GRID)
MU, B = snr[None, :], beta[:, None]
exact = st.moments(MU, 1.0, B, B)
exact_ratio = {"E_ratio": exact["E_V"] / exact["E_S"], "Var_ratio": exact["Var_V"] / exact["Var_S"]}
start = time.perf_counter()
grid_sim = st.simulate(MU, 1.0, B, B, chains=CHAINS, seed=SEED)
grid_seconds = time.perf_counter() - start
z_scores = {k: grid_sim[k].z({**exact, **exact_ratio}[k]) for k in ("E_V", "Var_V", "E_S", "Var_S", "E_ratio", "Var_ratio")}
all_z = np.concatenate([z.ravel() for z in z_scores.values()])
calibration = {
    "n": int(all_z.size),
    "max_abs_z": float(np.abs(all_z).max()),
    "frac_above_2": float(np.mean(np.abs(all_z) > 2)), "expected_above_2": float(2 * norm.sf(2)),
    "frac_above_3": float(np.mean(np.abs(all_z) > 3)), "expected_above_3": float(2 * norm.sf(3)),
}
print(f"Monte Carlo on {beta.size} x {snr.size} points x {CHAINS} chains: {grid_seconds:.1f} s "
      f"({int(grid_sim.steps.min())} to {int(grid_sim.steps.max())} steps per chain)")
print(f"|z| against the closed forms over {calibration['n']} estimates: max {calibration['max_abs_z']:.2f}; "
      f"above 2: {calibration['frac_above_2']:.2%} (N(0,1): {calibration['expected_above_2']:.2%}); "
      f"above 3: {calibration['frac_above_3']:.2%} (N(0,1): {calibration['expected_above_3']:.2%})")

# %%
LINE_BETA2 = (0.9, 0.95, 0.98, 0.99, 0.999)
line_snr = np.logspace(-2, 2, 7 if QUICK else 13)
fine_snr = np.logspace(-2, 2, 400)
line_sim = st.simulate(line_snr[None, :], 1.0, PAPER_BETAS[0], np.array(LINE_BETA2)[:, None], chains=CHAINS, seed=SEED)
line_exact = st.moments(fine_snr[None, :], 1.0, PAPER_BETAS[0], np.array(LINE_BETA2)[:, None])


def beta_axis(ax, ticks=(0.5, 0.9, 0.95, 0.99, 0.999), label=r"$\beta_1 = \beta_2 = \beta$"):
    """y axis in 1 - beta on a log scale (so 0.99 and 0.999 are apart), labelled with beta."""
    ax.set_yscale("log")
    ax.invert_yaxis()
    ax.set_yticks([1 - t for t in ticks], [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylabel(label)


def edges(x):
    """Cell edges for log-spaced centres."""
    lx = np.log(x)
    mid = (lx[1:] + lx[:-1]) / 2
    return np.exp(np.concatenate([[2 * lx[0] - mid[0]], mid, [2 * lx[-1] - mid[-1]]]))


fig, axes = plt.subplots(2, 2, figsize=(13, 10))
for ax, key, title, levels in (
    (axes[0, 0], "E_ratio", r"$E[V_\infty] / E[S_\infty]$ (closed form)", [0.2, 0.5, 0.9, 0.95, 0.99]),
    (axes[0, 1], "Var_ratio", r"$\mathrm{Var}[V_\infty] / \mathrm{Var}[S_\infty]$ (closed form)", [0.2, 0.5, 0.9, 0.99]),
):
    fine_beta = 1 - np.logspace(np.log10(0.5), -3, 200)
    fine = st.moments(fine_snr[None, :], 1.0, fine_beta[:, None], fine_beta[:, None])
    ratio = fine[key.replace("_ratio", "_V")] / fine[key.replace("_ratio", "_S")]
    mesh = ax.pcolormesh(edges(fine_snr), edges(1 - fine_beta), np.log10(ratio), cmap="RdBu_r",
                         norm=TwoSlopeNorm(0.0, vmin=min(-1.0, np.log10(ratio).min()), vmax=1.0), shading="flat",
                         rasterized=True)
    contours = ax.contour(fine_snr, 1 - fine_beta, ratio, levels=levels, colors="k", linewidths=0.8)
    ax.clabel(contours, fmt=lambda v: f"{v:g}", fontsize=8)
    ax.axhline(0.05, color="0.3", ls=":", lw=1)
    ax.set_xscale("log")
    beta_axis(ax)
    ax.set_xlabel(r"signal-to-noise ratio $\mu/\sigma$ (large batch $\rightarrow$)")
    ax.set_title(title)
    bar = fig.colorbar(mesh, ax=ax)
    bar.set_label(r"$\log_{10}$ ratio (blue: AdamS's is smaller)")
colors = sns.color_palette("viridis", len(LINE_BETA2))
for ax, key, label in ((axes[1, 0], "E", r"$E[V_\infty] / E[S_\infty]$"),
                       (axes[1, 1], "Var", r"$\mathrm{Var}[V_\infty] / \mathrm{Var}[S_\infty]$")):
    for i, (b2, color) in enumerate(zip(LINE_BETA2, colors)):
        ax.plot(fine_snr, line_exact[f"{key}_V"][i] / line_exact[f"{key}_S"][i], color=color,
                label=rf"$\beta_2$ = {b2:g} (closed form)")
        est = line_sim[f"{key}_ratio"]
        ax.errorbar(line_snr, est.value[i], yerr=1.96 * est.se[i], fmt="o", ms=4, color=color, capsize=2)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"signal-to-noise ratio $\mu/\sigma$")
    ax.set_ylabel(label)
    ax.set_title(rf"$\beta_1$ = {PAPER_BETAS[0]}: lines closed form, dots Monte Carlo (95% CI)")
axes[1, 0].legend(fontsize=8, loc="lower right")
fig.suptitle(f"AdamS's denominator V vs Adam's second moment S, Gaussian noise ({CHAINS} chains per point)")
fig.tight_layout()
save_figure(fig, NAME)

# %% [markdown]
# ## 3. Which $\beta_2$ equalizes the variances, the approach to stationarity, and a calibration check
#
# Setting $\mathrm{Var}[V] = \mathrm{Var}[S]$ gives
# $\beta_2^\star = (\mathrm{Var}[g^2] - \mathrm{Var}[m^2]) / (\mathrm{Var}[g^2] + \mathrm{Var}[m^2])$.
# Above $\beta_2^\star$ AdamS's denominator fluctuates more than Adam's, below it less. Transient means
# come from the exact moment recursions from $m_0 = S_0 = 0$, with and without the optimizers' bias
# correction (this package's AdamS divides $m_{t-1}$ by $c_t = 1 - \beta_1^t$).

# %%
eq_snr = np.logspace(-2, 2, 400)
EQ_BETA1 = (0.8, 0.9, 0.95, 0.99)
equalizing = {b1: st.equalizing_beta2(eq_snr, b1) for b1 in EQ_BETA1}
snr_at_095 = brentq(lambda x: float(st.equalizing_beta2(x, PAPER_BETAS[0])) - PAPER_BETAS[1], 1e-3, 1e3)
band = eq_snr[(equalizing[0.9] >= 0.93) & (equalizing[0.9] <= 0.97)]
print(f"beta1 = 0.9: beta2* = {float(st.equalizing_beta2(0.0, 0.9)):.4f} at mu/sigma -> 0, "
      f"{float(st.equalizing_beta2(1e9, 0.9)):.4f} at mu/sigma -> oo; beta2* = 0.95 at mu/sigma = {snr_at_095:.3f}; "
      f"beta2* in [0.93, 0.97] for mu/sigma in [{band.min():.2f}, {band.max():.2f}]")

T = 60
TRANSIENT_SNR = (0.1, 1.0, 10.0)
transient = {bc: st.transient(np.array(TRANSIENT_SNR), 1.0, *PAPER_BETAS, T, bias_correction=bc)
             for bc in (False, True)}

fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
ax = axes[0]
for b1, color in zip(EQ_BETA1, sns.color_palette("rocket", len(EQ_BETA1))):
    ax.plot(eq_snr, 1 - equalizing[b1], color=color, label=rf"$\beta_1$ = {b1:g}")
    ax.axhline(1 - b1, color=color, ls=":", lw=0.8)
ax.axhline(1 - PAPER_BETAS[1], color="k", ls="--", lw=1, label=r"$\beta_2$ = 0.95")
ax.plot([snr_at_095], [1 - PAPER_BETAS[1]], "ko")
ax.set_xscale("log")
beta_axis(ax, ticks=(0.8, 0.9, 0.95, 0.99, 0.999), label=r"$\beta_2^\star$ with Var[V] = Var[S]")
ax.set_xlabel(r"$\mu/\sigma$")
ax.set_title(r"Variance-equalizing $\beta_2$ (dotted: its large-batch limit $\beta_1$)")
ax.legend(fontsize=8)

ax = axes[1]
t = np.arange(1, T + 1)
for r, color in zip(TRANSIENT_SNR, sns.color_palette("mako", len(TRANSIENT_SNR))):
    i = TRANSIENT_SNR.index(r)
    for bc, ls in ((False, "-"), (True, "--")):
        ax.plot(t, transient[bc]["E_V"][i] / transient[bc]["E_S"][i], ls=ls, color=color,
                label=f"mu/sigma = {r:g}" + (", bias-corrected" if bc else ", raw"))
ax.axhline(1 - PAPER_BETAS[1], color="0.5", lw=0.8, ls=":")
ax.set_yscale("log")
ax.set_xlabel("step t")
ax.set_ylabel(r"$E[V_t] / E[S_t]$")
ax.set_title(f"Approach to stationarity at betas {PAPER_BETAS}\n(dotted: 1 - beta2, the bias-corrected ratio at t = 1)")
ax.legend(fontsize=7, ncol=2)

ax = axes[2]
grid_z = np.linspace(-5, 5, 400)
ax.hist(all_z, bins=np.linspace(-5, 5, 41), density=True, color="tab:blue", alpha=0.6, label=f"{all_z.size} z-scores")
ax.plot(grid_z, norm.pdf(grid_z), "k", label="N(0, 1)")
ax.set_xlabel("(Monte Carlo - closed form) / standard error")
ax.set_ylabel("density")
ax.set_title(f"Calibration on the standard grid: max |z| = {calibration['max_abs_z']:.2f}")
ax.legend(fontsize=8)
fig.tight_layout()
save_figure(fig, f"{NAME}_beta2")

# %% [markdown]
# ## 4. Findings in words
#
# The cell below prints each statement with the numbers this run measured; the same sentences go to
# `paper_repro.md`.

# %%
fine_exact = st.moments(fine_snr, 1.0, *PAPER_BETAS)
ratio_fine = fine_exact["E_V"] / fine_exact["E_S"]
within5, within1 = st.agreement_from(fine_snr, ratio_fine, 0.05), st.agreement_from(fine_snr, ratio_fine, 0.01)
noise_limit = float(st.ratio_limits(*PAPER_BETAS)["E_noise"])
# worst case over the standard grid's betas: the mu/sigma from which every beta is within 5%
worst5 = max(st.agreement_from(fine_snr, (lambda o: o["E_V"] / o["E_S"])(st.moments(fine_snr, 1.0, b, b)), 0.05)
             for b in beta)
at_1 = st.moments(1.0, 1.0, *PAPER_BETAS)
mc_i = {r: int(np.argmin(np.abs(line_snr - r))) for r in (0.01, 1.0, 100.0)}
row = LINE_BETA2.index(PAPER_BETAS[1])
finding_mean = (
    f"At betas {PAPER_BETAS} E[V]/E[S] = (r^2 + c)/(r^2 + 1) with r = mu/sigma and c = {noise_limit:.4f}: "
    f"within 5% of 1 for mu/sigma >= {within5:.2f} and within 1% for >= {within1:.2f} "
    f"(every beta1 = beta2 on the grid: within 5% from mu/sigma >= {worst5:.2f}); "
    f"{float(at_1['E_V'] / at_1['E_S']):.3f} at mu/sigma = 1 and {noise_limit:.3f} in the noise-dominated limit. "
    f"Monte Carlo ({CHAINS} chains, +- 1 SE): {format_pm(*line_sim['E_ratio'].at((row, mc_i[100.0])))} at "
    f"mu/sigma = 100, {format_pm(*line_sim['E_ratio'].at((row, mc_i[1.0])))} at 1, "
    f"{format_pm(*line_sim['E_ratio'].at((row, mc_i[0.01])))} at 0.01."
)
var_limits = st.ratio_limits(beta, beta)
band_fraction = float(np.log(band.max() / band.min()) / np.log(eq_snr[-1] / eq_snr[0]))
finding_var = (
    f"With beta1 = 0.9 the beta2 that equalizes Var[V] and Var[S] falls from "
    f"{float(st.equalizing_beta2(0.0, 0.9)):.4f} (mu/sigma -> 0) to {float(st.equalizing_beta2(1e9, 0.9)):.4f} "
    f"(mu/sigma -> oo); it equals 0.95 at mu/sigma = {snr_at_095:.2f} and lies in [0.93, 0.97] only for mu/sigma in "
    f"[{band.min():.2f}, {band.max():.2f}] ({band_fraction:.0%} of the log range 0.01-100). With beta1 = beta2 = beta "
    f"the large-batch variance ratio is 1 for every beta (max deviation {np.abs(var_limits['Var_large_batch'] - 1).max():.1e}), "
    f"while in the noise-dominated limit it falls monotonically from {var_limits['Var_noise'][0]:.3f} at beta = "
    f"{beta[0]:.3f} to {var_limits['Var_noise'][-1]:.4f} at beta = {beta[-1]:.3f} "
    f"({float(st.ratio_limits(0.95, 0.95)['Var_noise']):.3f} at 0.95): no beta near 0.95 is singled out. "
    f"At betas {PAPER_BETAS}, Var[V]/Var[S] = {float(at_1['Var_V'] / at_1['Var_S']):.3f} at mu/sigma = 1 "
    f"(Monte Carlo {format_pm(*line_sim['Var_ratio'].at((row, mc_i[1.0])))})."
)
for text in (finding_mean, finding_var):
    print("-", text, "\n")

# %% [markdown]
# ## Exercises
#
# 1. Show from the closed forms that $E[V_\infty]/E[S_\infty] = (r^2 + c)/(r^2 + 1)$ with
#    $r = \mu/\sigma$ and $c = \beta_2 (1-\beta_1)/(1+\beta_1) + 1 - \beta_2$. From which $\mu/\sigma$ on
#    is the ratio within 5% of 1 at betas (0.9, 0.95)? Solve by hand, then compare with the curve.
# 2. Prove with sympy that with $\beta_1 = \beta_2$ the large-batch variance ratio is exactly 1.
# 3. At betas (0.9, 0.95), at which $\mu/\sigma$ are $\mathrm{Var}[V_\infty]$ and $\mathrm{Var}[S_\infty]$
#    equal? Check that `analysis.stationary.moments` agrees there.
#
# Answers (computed, then checked):

# %%
# 1. (r^2 + c)/(r^2 + 1) >= 0.95  <=>  r^2 >= (0.95 - c)/0.05.
c = PAPER_BETAS[1] * (1 - PAPER_BETAS[0]) / (1 + PAPER_BETAS[0]) + 1 - PAPER_BETAS[1]
r_by_hand = float(np.sqrt((0.95 - c) / 0.05))
print(f"1. c = {c:.4f}; by hand mu/sigma >= {r_by_hand:.4f}; from the curve: {within5:.4f}")
assert abs(c - noise_limit) < 1e-12
assert abs(r_by_hand - within5) / r_by_hand < 0.02  # the curve is sampled on a grid of 400 points

# 2. Substitute beta2 = beta1 in the large-batch limit and simplify.
same_beta = sp.simplify(limits["Var_large_batch"].subs(d.beta2, d.beta1))
print(f"2. Var_large_batch at beta2 = beta1 simplifies to {same_beta}")
assert same_beta == 1

# 3. Solve Var_V = Var_S for mu/sigma at fixed betas.
r_equal = brentq(lambda x: float((lambda o: o["Var_V"] - o["Var_S"])(st.moments(x, 1.0, *PAPER_BETAS))), 1e-3, 1e3)
print(f"3. Var[V] = Var[S] at mu/sigma = {r_equal:.4f} (the equalizing-beta2 curve gave {snr_at_095:.4f})")
assert abs(r_equal - snr_at_095) < 1e-8

# %% [markdown]
# ## Results for `paper_repro.md`

# %%
mc_note = (f"Monte Carlo: {CHAINS} independent chains per grid point, seed {SEED}, burn-in from beta so that the start's "
           f"bias is below 1% of a standard error (analysis.stationary.simulation.burn_in); against the closed forms on the "
           f"{beta.size} x {snr.size} standard grid, max |z| = {calibration['max_abs_z']:.2f} over {calibration['n']} "
           f"estimates, {calibration['frac_above_2']:.1%} beyond 2 SE ({calibration['expected_above_2']:.1%} expected "
           f"for a standard normal).")
claims = [
    {
        "id": "stationary-mean-large-batch",
        "order": 31,
        "claim": "In the large-batch regime (mu/sigma >> 1) AdamS's denominator has the same stationary mean as "
                 "Adam's second moment, E[V_inf] ~ E[S_inf].",
        "paper_value": "E[V_inf] ~ E[S_inf] when the batch is large, so momentum can serve as the normalizer",
        "measured": finding_mean,
        "command": COMMAND,
        "verdict": "holds" if worst5 <= 10 and calibration["max_abs_z"] < 5 else "does not hold",
        "note": "Closed forms derived in sympy (analysis/stationary/derivations.py) for g = mu + sigma xi, xi i.i.d. N(0,1). "
                "Verdict rule: holds if, for every beta1 = beta2 on the grid, E[V]/E[S] is within 5% of 1 from "
                "mu/sigma = 10 on, and the Monte Carlo agrees with the closed forms (max |z| < 5). The statement "
                "is true for large mu/sigma only: below mu/sigma ~ 1 AdamS's denominator is several times smaller "
                "than Adam's, down to the factor c in the noise-dominated limit. " + mc_note,
    },
    {
        "id": "stationary-variance-near-095",
        "order": 32,
        "claim": "The variance difference between AdamS's denominator and Adam's second moment is smallest near "
                 "beta ~ 0.95.",
        "paper_value": "variance differences are smallest near beta ~ 0.95",
        "measured": finding_var,
        "command": COMMAND,
        # stated without a mu/sigma, so it holds only if 0.95 is near the equalizing beta2 over most of the range
        "verdict": "holds" if band_fraction >= 0.5 else "does not hold",
        "note": "Verdict rule: the claim counts as holding if the equalizing beta2 (beta1 = 0.9) lies within "
                "[0.93, 0.97] over at least half of the log range of mu/sigma from 0.01 to 100. It holds only in "
                "a band of moderate signal-to-noise; at large batch the equalizing beta2 is beta1 itself, and "
                "with beta1 = beta2 the variance ratio depends on beta only in the noise regime, monotonically. "
                + mc_note,
    },
]
numbers = {
    # the grid's wall time is printed above, not stored: it changes from run to run (benchmarks/stationary.py
    # measures the simulator's speed)
    "seed": SEED, "chains": CHAINS, "standard_grid": {"beta": beta, "snr": snr, "steps": grid_sim.steps},
    "closed_form": {k: v for k, v in {**exact, **exact_ratio}.items()},
    "monte_carlo": {k: {"value": grid_sim[k].value, "se": grid_sim[k].se} for k in z_scores},
    "calibration": calibration,
    "lines": {"beta1": PAPER_BETAS[0], "beta2": LINE_BETA2, "snr": line_snr,
              **{k: {"value": line_sim[k].value, "se": line_sim[k].se} for k in ("E_ratio", "Var_ratio")}},
    "equalizing_beta2": {"snr": eq_snr[::20], **{str(b1): equalizing[b1][::20] for b1 in EQ_BETA1},
                         "snr_at_0.95": snr_at_095, "band_0.93_0.97": [band.min(), band.max()]},
    "thresholds": {"within_5pct": within5, "within_1pct": within1, "noise_limit": noise_limit, "worst_beta_5pct": worst5},
}
print(save_results(NAME, numbers, claims))
