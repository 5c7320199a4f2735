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
# # Post-training with a verifiable reward: AdamS, AdamW and SGD under GRPO
#
# The paper claims AdamS works for post-training too: in DeepSeek-R1-Zero-style reinforcement
# learning it reports AdamS with beta2 = 0.95 matching AdamW with beta2 = 0.999. Recent work finds
# that even plain SGD matches AdamW in RL with verifiable rewards, so "AdamS matches AdamW" means
# something only next to a control that could fail: SGD with momentum runs beside them.
#
# **The task.** Three-digit addition written as characters, `"482+37="`, answered by `"519"` and a
# newline. The reward is exact: 1 if the characters before the model's first newline are the sum,
# else 0 (`analysis.training.rl.reward`). One operand pair in ten (chosen by a hash) is held out:
# never trained on, and the success rate is measured on 512 of them, writing the most likely
# character each time.
#
# **The recipe.** A 0.1M-parameter GPT is pre-trained with supervision on the answers until it is
# mediocre (it solves some held-out sums and fails many), and that checkpoint is post-trained with
# GRPO: for each of 16 prompts, 8 answers are sampled; each answer's advantage is its reward
# standardized within its group, $A_i = (r_i - \bar r)/(s_r + 10^{-6})$; two updates on the same
# samples follow the clipped ratio objective averaged over an answer's characters,
# $\min(\rho A, \mathrm{clip}(\rho, 0.8, 1.2) A)$ with $\rho = \pi_\theta/\pi_{\text{old}}$, minus
# 0.01 times a per-character estimate of the KL divergence to the pre-trained model. The loop is in
# `analysis.training.rl`, about a hundred lines.
#
# **Claims checked here** (rows of `paper_repro.md`):
#
# 80. *AdamS (0.9, 0.95) matches AdamW (0.9, 0.999) in RL post-training*, each at its own tuned rate.
# 81. *beta2 = 0.95 rather than 0.999 for AdamS in RL*.
# 82. *The SGD control falls short of AdamW* (if it does not, row 80 says little about AdamS).
#
# **Learning goals:** write a verifiable reward and a GRPO objective; see why group-normalized
# advantages need groups whose rewards differ; compare optimizers in RL at their own learning
# rates, over seeds, against a control.
#
# **Scale and its limits.** A character-level GPT of 0.1M parameters, 200 RL steps, 5 seeds per setup;
# a task of exact answers, not reasoning chains. Nothing here reaches the paper's scale.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy import stats

from analysis.report import claims as rules
from analysis.report import command_for, quick_mode, save_figure, save_results
from analysis.training import rl

NAME = "training_rl"
COMMAND = command_for(NAME)
QUICK = quick_mode()
torch.set_num_threads(1)
WORKERS = 1 if QUICK else 2
print(f"quick mode: {QUICK}")

# %% [markdown]
# ## 1. The task and its reward

# %%
examples = [(482, 37, "519\n"), (482, 37, "519"), (482, 37, "0519\n"), (999, 999, "1998\n"), (5, 5, "10\n7")]
for a, b, text in examples:
    print(f"{a}+{b}= {text!r:>10} -> reward {rl.reward(a, b, rl.encode(text))}")
pairs = rl.prompts(np.random.default_rng(0), 3, held_out=False)
print("prompts as the model sees them:", [rl.decode(row) for row in rl.TASK.prompt_ids(pairs).tolist()])

# %% [markdown]
# ## 2. Pre-training to a mediocre start

# %%
pre = rl.pretrain_config(QUICK)
state, pre_record = rl.pretrained(pre)
start_success = rl.start_success(pre, rl.rl_config(QUICK, "sgdm", 1.0, 0).eval_prompts)
print(f"pre-trained {pre.steps} steps: greedy success {pre_record['success'][-1]:.3f} on the validation pairs, "
      f"{start_success:.3f} on the test pairs")
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(pre_record["step"], pre_record["success"], "o-", ms=3)
ax.set(xlabel="supervised step", ylabel="held-out success (greedy, validation pairs)",
       title="pre-training, stopped while the model is mediocre")
fig.tight_layout()
save_figure(fig, f"{NAME}_pretrain")

# %% [markdown]
# ## 3. Each setup at its own learning rate
#
# A factor-3 grid of four rates per setup, two seeds each (seeds 100 and 101, used for nothing
# else), scored by the mean final success (the mean of the last three evaluations) on 512 held-out
# *validation* pairs, disjoint from the test pairs that judge the rows; extended while the best
# rate sits at an end of the grid.
#
# **The rules, before the numbers.** Five fresh seeds (0-4) per setup at its best rate; differences
# of final success paired by seed (a diverged run counts as 0), Student-t 95% intervals, and a margin
# of 0.05 (absolute success rate) fixed before any run:
#
# * Row 80 (`rl.parity_verdict`): AdamS (0.9, 0.95) minus AdamW (0.9, 0.999) inside [-0.05, 0.05]:
#   **holds at our scale**; wholly outside: **does not hold**; else **inconclusive**.
# * Row 81 (`rl.beta2_verdict`): AdamS (0.9, 0.999) minus AdamS (0.9, 0.95) below 0.05 (0.95 is no
#   worse by more than the margin): **holds at our scale**; above it: **does not hold**; else
#   **inconclusive**.
# * Row 82 (`rl.control_verdict`): AdamW (0.9, 0.999) minus SGD above 0.05: **holds at our scale**
#   (the control falls short, so parity of AdamS with AdamW is informative); below it: **does not
#   hold**; else **inconclusive**.
# * A power check first (`rl.power_check`): the pre-trained model without any update must fall short
#   of AdamW by more than the margin. If it does not, these rules would pass an optimizer that did
#   nothing, and all three rows are **not testable here**.

# %%
sweeps = rl.sweep(QUICK, pre, workers=WORKERS)
print(pd.DataFrame([{"setup": rl.LABELS[s], "rates": ", ".join(f"{lr:.2g}" for lr in w["lrs"]),
                     "scores": ", ".join(f"{v:.3f}" for v in w["scores"]), "best": w["best"],
                     "bracketed": w["bracketed"]} for s, w in sweeps.items()]).to_string(index=False))
sweep_signals = [(s, lr, u) for s, w in sweeps.items() for lr, us in zip(w["lrs"], w["instability"]) for u in us]
print(f"instability over the {len(sweep_signals)} sweep runs: "
      + ", ".join(f"{sum(bool(u[k]) for _, _, u in sweep_signals)} {k}" for k in ("collapse", "kl_blowup", "diverged"))
      + "; collapses at " + (", ".join(sorted({f"{rl.LABELS[s]} lr {lr:.2g}" for s, lr, u in sweep_signals
                                               if u["collapse"]})) or "no rate"))

# %%
runs = rl.headline(QUICK, pre, {s: w["best"] for s, w in sweeps.items()}, workers=WORKERS)
final = {s: [rl.final_success(r) for r in rs] for s, rs in runs.items()}
unstable = {s: [rl.instability(r) for r in rs] for s, rs in runs.items()}
table = pd.DataFrame([{
    "setup": rl.LABELS[s], "lr": sweeps[s]["best"], "final success": np.nan_to_num(final[s], nan=0.0).mean(),
    "SE": np.nan_to_num(final[s], nan=0.0).std(ddof=1) / np.sqrt(len(final[s])),
    "collapses": sum(u["collapse"] for u in unstable[s]), "KL blow-ups": sum(u["kl_blowup"] for u in unstable[s]),
    "grad spikes": sum(u["grad_spikes"] for u in unstable[s]), "diverged": sum(u["diverged"] for u in unstable[s]),
} for s in runs])
print(f"start (pre-trained): {start_success:.3f}")
print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1.6, 1]})
for s, rs in runs.items():
    calm = [r for r in rs if not r["diverged"]]
    if not calm:
        continue
    steps = np.asarray(calm[0]["eval_step"])
    curves = np.array([r["success"] for r in calm])
    mean, se = curves.mean(axis=0), curves.std(axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0
    axes[0].plot(steps, mean, "-", label=f"{rl.LABELS[s]} (lr {sweeps[s]['best']:.2g})")
    axes[0].fill_between(steps, mean - se, mean + se, alpha=0.2)
axes[0].axhline(start_success, color="gray", lw=0.8, ls=":", label="pre-trained")
axes[0].set(xlabel="GRPO step", ylabel="held-out success (greedy)",
            title=f"mean over {len(next(iter(runs.values())))} seeds (band: one standard error)")
axes[0].legend(fontsize=8)
for i, s in enumerate(runs):
    values = np.nan_to_num(final[s], nan=0.0)
    axes[1].scatter(np.full(len(values), i) + np.linspace(-0.12, 0.12, len(values)), values, s=16, alpha=0.7)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    axes[1].errorbar(i + 0.3, values.mean(), yerr=half, fmt="o", color="k", ms=4, capsize=3)
axes[1].set_xticks(range(len(runs)), [rl.LABELS[s].replace(" with momentum", "-m").replace(" (", "\n(") for s in runs],
                   fontsize=8)
axes[1].axhline(start_success, color="gray", lw=0.8, ls=":")
axes[1].set(ylabel="final success (mean of the last 3 evaluations)", title="per seed, mean and 95% t-interval")
fig.tight_layout()
save_figure(fig, NAME)

# %% [markdown]
# ## Results for `paper_repro.md`

# %%
power = rl.power_check(start_success, final["adamw-0.999"])
row80 = rl.parity_verdict(final["adams-0.95"], final["adamw-0.999"])
row81 = rl.beta2_verdict(final["adams-0.95"], final["adams-0.999"])
row82 = rl.control_verdict(final["sgdm"], final["adamw-0.999"])
print(f"power: AdamW minus the pre-trained model {power['mean']:+.3f} [{power['ci'][0]:+.3f}, {power['ci'][1]:+.3f}] "
      f"-> {'testable' if power['testable'] else 'not testable here'}")
for name, v in (("80", row80), ("81", row81), ("82", row82)):
    print(f"row {name}: {v['mean']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}] -> rule: {v['verdict']}; reported: "
          f"{rl.gated(v['verdict'], power)}")


def success(s: str) -> str:
    values = np.nan_to_num(final[s], nan=0.0)
    return f"{rl.LABELS[s]} at lr {sweeps[s]['best']:.2g}: {values.mean():.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}"


setup_text = (f"addition, a {sum(v.numel() for v in state.values()):,}-parameter GPT pre-trained to {start_success:.2f} "
              f"held-out success, GRPO {rl.rl_config(QUICK, 'sgdm', 1.0, 0).steps} steps, "
              f"{len(final['sgdm'])} seeds a setup at its own tuned rate; final held-out success (SE): ")
NOTE = (f"Margin {rl.MARGIN} (absolute success rate), fixed before any run; differences paired by seed with "
        "Student-t 95% intervals; a diverged run counts as success 0. Every learning rate from a factor-3 sweep "
        "over two seeds that the comparison does not reuse, scored on validation pairs disjoint from the test "
        "pairs. Power check: the pre-trained model without any update falls short of AdamW by "
        f"{power['mean']:+.3f} [{power['ci'][0]:+.3f}, {power['ci'][1]:+.3f}]; unless that interval lies above the "
        f"margin, a rule with this margin would pass an optimizer that learned nothing, and the row is not testable "
        f"here (the rule alone says: {{rule}}). 'Held out' is per written pair: b+a of a held-out a+b is mostly in "
        "training.")
claims = [{
    "id": "adams-matches-adamw-rl",
    "order": 80,
    "claim": "AdamS (beta2 = 0.95) matches AdamW (beta2 = 0.999) in RL post-training with a verifiable reward.",
    "paper_value": "AdamS matches AdamW in DeepSeek-R1-Zero-style RL (AdamS beta2 0.95, AdamW 0.999)",
    "measured": setup_text + f"{success('adams-0.95')}; {success('adamw-0.999')}; AdamS minus AdamW "
                f"{row80['mean']:+.3f} [{row80['ci'][0]:+.3f}, {row80['ci'][1]:+.3f}]. Instability over the "
                f"{sum(len(u) for u in unstable.values())} runs at the tuned rates: "
                + ", ".join(f"{sum(sum(bool(u[k]) for u in us) for us in unstable.values())} {label}"
                            for k, label in (("collapse", "collapses"), ("kl_blowup", "KL blow-ups"),
                                             ("grad_spikes", "runs with gradient spikes"), ("diverged", "divergences")))
                + f"; over the {len(sweep_signals)} sweep runs: "
                + ", ".join(f"{sum(bool(u[k]) for _, _, u in sweep_signals)} {label}"
                            for k, label in (("collapse", "collapses"), ("kl_blowup", "KL blow-ups"),
                                             ("diverged", "divergences"))),
    "command": COMMAND,
    "verdict": rl.gated(row80["verdict"], power),
    "note": ("Verdict rule (stated before the numbers): the interval inside [-margin, margin] holds, wholly outside "
             "does not hold, else inconclusive. " + NOTE.format(rule=row80["verdict"]) + " Read with row 82: parity "
             "means little if the SGD control matches too."),
}, {
    "id": "adams-beta2-in-rl",
    "order": 81,
    "claim": "For AdamS in RL post-training, beta2 = 0.95 is no worse than 0.999.",
    "paper_value": "AdamS runs RL with beta2 = 0.95",
    "measured": setup_text + f"{success('adams-0.95')}; {success('adams-0.999')}; 0.999 minus 0.95 "
                f"{row81['mean']:+.3f} [{row81['ci'][0]:+.3f}, {row81['ci'][1]:+.3f}]",
    "command": COMMAND,
    "verdict": rl.gated(row81["verdict"], power),
    "note": ("Verdict rule (stated before the numbers): 0.95 holds if AdamS with 0.999 is better by less than the "
             "margin (interval below it), does not hold if better by more (interval above it). "
             + NOTE.format(rule=row81["verdict"])),
}, {
    "id": "sgd-control-rl",
    "order": 82,
    "claim": "In the same RL post-training, SGD with momentum (the control) falls short of AdamW, so that AdamS "
             "matching AdamW is informative.",
    "paper_value": "not in the paper (a control: Mukherjee et al. 2026 find SGD matching AdamW in RL with verifiable rewards)",
    "measured": setup_text + f"{success('sgdm')}; {success('adamw-0.999')}; AdamW minus SGD "
                f"{row82['mean']:+.3f} [{row82['ci'][0]:+.3f}, {row82['ci'][1]:+.3f}]",
    "command": COMMAND,
    "verdict": rl.gated(row82["verdict"], power),
    "note": ("Verdict rule (stated before the numbers): holds if AdamW is better by more than the margin (interval "
             "above it), does not hold if the interval lies below the margin. " + NOTE.format(rule=row82["verdict"])),
}]
numbers = {"pretrain": {"config": pre.key(), "record": pre_record}, "sweeps": sweeps, "final": final,
           "instability": unstable, "power": power, "verdicts": {"80": row80, "81": row81, "82": row82},
           "curves": {s: [{"eval_step": r["eval_step"], "success": r["success"], "reward": r["reward"]} for r in rs]
                      for s, rs in runs.items()}}
print(save_results(NAME, numbers, claims, cached_s=rl.cached_seconds()))

# %% [markdown]
# ## Exercises
#
# 1. A group of four answers gets rewards (1, 0, 0, 0). What are the four advantages, and what is the
#    advantage of every answer in a group that all succeed?
# 2. On the first of the two updates the policy is still the sampling policy, so every ratio is 1
#    and the clip never acts. Show that the GRPO loss's gradient is then minus the advantage-weighted
#    mean of the answers' per-character log-probability gradients (without the KL term), and check it
#    on a tiny batch.
#
# Answers (computed, then checked):

# %%
adv = rl.group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), 4)
assert torch.allclose(adv[:4], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-4) and torch.all(adv[4:] == 0)
print(f"1. advantages {adv[:4].tolist()}; a group that all succeed: {adv[4:].tolist()} (no signal)")
w = torch.randn(2, 3, requires_grad=True, generator=torch.Generator().manual_seed(0))
logp = torch.log_softmax(w, dim=-1)
mask, a = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]), torch.tensor([0.7, -0.7])
loss, _ = rl.grpo_loss(logp, logp.detach(), None, a, mask)
g_loss = torch.autograd.grad(loss, w, retain_graph=True)[0]
direct = -((a[:, None] * logp * mask).sum(dim=1) / mask.sum(dim=1)).mean()
g_direct = torch.autograd.grad(direct, w)[0]
assert torch.allclose(g_loss, g_direct, atol=1e-7)
print(f"2. largest difference between the two gradients: {float((g_loss - g_direct).abs().max()):.1e}")
