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
# # What an AdamS step costs
#
# The paper presents AdamS as matching the memory and compute footprint of SGD with momentum. The
# optimizer step is memory-bound: per float32 parameter a single pass of AdamS reads w, g, m and
# writes w, m (20 bytes), like SGD with momentum, while AdamW also reads and writes its second
# moment v (28 bytes). So a single-pass AdamS step can take about 20/28 = 0.71 of a single-pass
# AdamW step.
#
# **Claims checked here** (rows of `paper_repro.md`):
#
# 2. *Step time vs SGD with momentum.* The fused AdamS step takes at most 1.1x the time of
#    `torch.optim.SGD(momentum=0.9, foreach=True)`.
# 3. *Step time vs AdamW.* The fused AdamS step is cheaper than `torch.optim.AdamW(fused=True)`,
#    roughly in the 5/7 proportion of the bytes each moves. This package's own speed goal is
#    0.75x at most (the 5/7 ratio with a little slack); the row says whether this run met it.
#
# **Learning goals:** read a step time against the memory-bandwidth floor; compare timings that
# were measured side by side (paired rounds), not in separate runs.
#
# Everything is timed in one process by `analysis.timing.steptime` (also run by `make bench`): every
# optimizer steps the same parameters with the same seeded gradients, round-robin, one step each
# per round, after a warm-up. Ratios are medians of per-round ratios with a bootstrap 95% CI.

# %%
import matplotlib.pyplot as plt
import numpy as np

import adams
from analysis.timing import steptime
from analysis.timing.ratios import paired_ratio
from analysis.report import cached, command_for, hardware, quick_mode, save_figure, save_results

NAME = "optimizer_cost"
QUICK = quick_mode()
if QUICK:  # small sets, few rounds: checks that the pipeline runs, not the hardware
    SETS = {
        "flat_1M": steptime.flat_shapes(1_000_000, 40),
        "gpt_small": [s for _, s in steptime.gpt_shapes(vocab=4096, d_model=128, block=64, layers=2)],
    }
    ROUNDS = dict(reps=5, warmup=1)
else:
    SETS = steptime.default_sets()
    ROUNDS = {}
# timings differ from run to run: they are measured once per machine and kept (cached) until
# `python -m analysis.figures --recompute` measures again, so that a rerun changes no number
result = cached("optimizer_cost_steptime",
                {"sets": SETS, "quick": QUICK, **ROUNDS, "machine": hardware(), "version": adams.__version__},
                lambda: steptime.run(quick=QUICK, sets=SETS, **ROUNDS))
print(steptime.format_table(result))

# %% [markdown]
# ## Paired ratios
#
# Round r of the fused AdamS step is divided by round r of the comparison, which ran moments
# before or after it on the same machine state. The targets (`analysis.timing.steptime.TARGETS`): fused
# AdamS at most 0.75x AdamW fused and at most 1.1x SGD with momentum; the foreach path faster than
# AdamW's foreach path.

# %%
ratios = steptime.paired_ratios(result)
print(steptime.format_targets(result))

# %% [markdown]
# ## Figure: each step against its memory-traffic floor
#
# Bars are median step times (whiskers: interquartile range over rounds); the black tick is the
# time a single pass over the optimizer's bytes would take at the bandwidth of a plain copy. The
# floor is an estimate (a copy and an optimizer step stress memory differently, and the 10M set
# partly fits in a 32 MB last-level cache), so a single-pass step can land a little below it.

# %%
ORDER = ["sgd_foreach", "adams_fused", "adamw_fused", "adams_foreach", "adamw_foreach", "adams_forloop"]
LABELS = {
    "sgd_foreach": "SGD + momentum\n(foreach)", "adams_fused": "AdamS\n(fused)",
    "adamw_fused": "AdamW\n(fused)", "adams_foreach": "AdamS\n(foreach)",
    "adamw_foreach": "AdamW\n(foreach)", "adams_forloop": "AdamS\n(for-loop)",
}
COLORS = {"sgd": "tab:green", "adams": "tab:red", "adamw": "tab:blue"}
fig, axes = plt.subplots(1, len(result["sets"]), figsize=(13, 5.2), squeeze=False)
for ax, (set_name, timing) in zip(axes[0], result["sets"].items()):
    opt = timing["optimizers"]
    y = np.arange(len(ORDER))
    med = np.array([opt[k]["median_ms"] for k in ORDER])
    q1 = np.array([opt[k]["q1_ms"] for k in ORDER])
    q3 = np.array([opt[k]["q3_ms"] for k in ORDER])
    colors = [COLORS[k.split("_")[0]] for k in ORDER]
    ax.barh(y, med, xerr=[med - q1, q3 - med], color=colors, alpha=0.8, capsize=3,
            error_kw=dict(lw=1, ecolor="0.2"))
    ax.scatter([opt[k]["floor_ms"] for k in ORDER], y, marker="|", s=500, linewidths=2.5,
               color="black", zorder=3, label="memory-traffic floor (single pass at copy bandwidth)")
    for yi, m, hi in zip(y, med, q3):
        ax.text(hi * 1.15, yi, f"{m:.1f} ms", va="center", fontsize=9)
    ax.set_xscale("log")
    ax.set_yticks(y, [LABELS[k] for k in ORDER], fontsize=9)
    ax.set_ylim(len(ORDER) - 0.4, -1.6)  # top to bottom, with room for the legend above the bars
    ax.set_xlim(0.6 * min(med.min(), min(opt[k]["floor_ms"] for k in ORDER)), q3.max() * 6)
    ax.set_xlabel("time of one optimizer step (ms, log scale)")
    n = timing["num_params"] / 1e6
    ax.set_title(f"{set_name}: {n:.1f}M fp32 params in {timing['num_tensors']} tensors\n"
                 f"copy bandwidth {timing['copy']['bandwidth_gbs']:.0f} GB/s")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
meta = result["meta"]
fig.suptitle(f"One optimizer step: median and interquartile range of {meta['reps']} interleaved rounds "
             f"({meta['cpu']}, {meta['threads']} threads, torch {meta['torch']})")
fig.tight_layout()
save_figure(fig, NAME)


# %% [markdown]
# ## Claims

# %%
checks = steptime.check_targets(result)


def _target_met(key: str) -> bool:
    return all(c.met for c in checks if c.key == key)


def _measured(key: str) -> str:
    parts = [f"{s}: {ratios[s][key]}" for s in ratios]
    return f"{key} (paired ratio of step times): " + "; ".join(parts)


SGD, ADAMW, FOREACH = "adams_fused/sgd_foreach", "adams_fused/adamw_fused", "adams_foreach/adamw_foreach"
kernel_ratios = {s: paired_ratio(t["optimizers"]["adams_kernel"]["times_ms"], t["optimizers"]["adamw_fused"]["times_ms"])
                 for s, t in result["sets"].items()}
hardware_note = (f"{meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}; "
                 f"{meta['reps']} rounds after {meta['warmup']} warm-up. ")
claims = [
    {
        "id": "step-time-vs-sgd-momentum",
        "order": 2,
        "claim": "An AdamS step costs about as much as an SGD-with-momentum step (fused AdamS "
                 "at most 1.1x SGD-momentum foreach).",
        "paper_value": "AdamS matches the memory and compute footprint of SGD with momentum",
        "measured": _measured(SGD),
        "command": command_for(NAME),
        "verdict": "holds" if _target_met(SGD) else "does not hold",
        "note": hardware_note + "Both move 20 bytes per parameter in one pass; torch's SGD "
                "foreach makes two passes over the momentum. Medians of paired per-round ratios; "
                "CI from 2000 bootstrap resamples of the rounds. Timings vary between runs on a "
                "shared machine.",
    },
    {
        "id": "step-time-vs-adamw",
        "order": 3,
        "claim": "An AdamS step is cheaper than an AdamW step, roughly in proportion to the memory "
                 "each moves (20 vs 28 bytes per float32 parameter: 5/7 = 0.71).",
        "paper_value": "no second-moment buffer, so less memory and compute than AdamW "
                       "(the 0.71x traffic ratio is our arithmetic, not a number in the paper)",
        "measured": _measured(ADAMW) + "; this package's goal of at most 0.75 on both sets: "
                    + ("met" if _target_met(ADAMW) else "not met in this run"),
        "command": command_for(NAME),
        # cheaper on every set: the whole 95% CI of the paired ratio lies below 1
        "verdict": "holds" if all(ratios[s][ADAMW].ci_high < 1 for s in ratios) else "does not hold",
        "note": hardware_note + "Fused AdamS is our C kernel (adams/_kernel.c); AdamW fused "
                "is torch's. Fraction of the traffic floor reached: " + "; ".join(
                    f"{s}: AdamS {t['optimizers']['adams_fused']['fraction_of_floor']:.2f}, "
                    f"AdamW {t['optimizers']['adamw_fused']['fraction_of_floor']:.2f}"
                    for s, t in result["sets"].items()) + ". The kernel alone (adams_kernel, no optimizer "
                "bookkeeping) against AdamW fused: " + "; ".join(
                    f"{s}: {kernel_ratios[s].median:.3f}" for s in kernel_ratios) + "; the difference is "
                "the optimizer's Python bookkeeping (state lookup and argument checks), which runs with "
                "cold caches right after a step has streamed the model through memory. "
                + ("With a ratio this close to 0.75 (within its CI) the goal can be met in one run and "
                   "missed in the next. " if any(ratios[s][ADAMW].ci_low <= 0.75 <= ratios[s][ADAMW].ci_high
                                                for s in ratios) else "")
                + "Our foreach path against torch's foreach "
                "AdamW: " + "; ".join(f"{s}: {ratios[s][FOREACH].median:.2f}x" for s in ratios) + ".",
    },
]
numbers = {"steptime": result, "ratios": {s: {k: r.as_dict() for k, r in v.items()} for s, v in ratios.items()}}
print(save_results(NAME, numbers, claims))

# %% [markdown]
# ## Exercises
#
# 1. The traffic model counts the bytes one step must move per float32 parameter. Which counts does
#    it use for fused AdamS and fused AdamW, and what step-time ratio would a step that runs exactly
#    at the memory floor give? (Answer: 20 and 28 bytes, so 5/7 = 0.714.)
# 2. Recompute the fused AdamS step's effective bandwidth (bytes moved per second) from the number
#    of parameters, the bytes per parameter and the median time, and check it against the table.
# 3. A bfloat16 model with bfloat16 momentum moves 10 bytes per parameter in an AdamS step. At the
#    measured copy bandwidth, what is its floor relative to the float32 floor? (Answer: one half.)
#
# Answers (computed, then checked):

# %%
for set_name, timing in result["sets"].items():
    opt = timing["optimizers"]
    bytes_s, bytes_w = opt["adams_fused"]["bytes_per_param"], opt["adamw_fused"]["bytes_per_param"]
    assert (bytes_s, bytes_w) == (20, 28)
    at_floor = opt["adams_fused"]["floor_ms"] / opt["adamw_fused"]["floor_ms"]
    assert abs(at_floor - 5 / 7) < 1e-12
    gbs = timing["num_params"] * bytes_s / (opt["adams_fused"]["median_ms"] * 1e-3) / 1e9
    assert abs(gbs - opt["adams_fused"]["effective_gbs"]) <= 1e-9 * gbs
    bf16_floor = timing["num_params"] * 10 / (timing["copy"]["bandwidth_gbs"] * 1e9) * 1e3
    assert abs(bf16_floor / opt["adams_fused"]["floor_ms"] - 0.5) < 1e-12
    print(f"{set_name}: floor ratio {at_floor:.3f}, measured ratio {opt['adams_fused']['ratio_to_adamw_fused']:.3f}; "
          f"AdamS moves {gbs:.1f} GB/s; a bf16 step's floor is {bf16_floor:.2f} ms")
