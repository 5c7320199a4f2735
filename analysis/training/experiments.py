"""The training experiments of the notebooks, defined once: configurations, seeds and statistics.

Every notebook of the training track (``training_*.py``) takes its runs from here, so that two
notebooks asking for the same configuration share one cached run (:func:`analysis.training.train`
caches by configuration hash) and the numbers in ``paper_repro.md`` agree across notebooks.

Scale: a 0.11M-parameter GPT (2 layers, width 64, 2 heads, context 64) on character-level Shakespeare,
400 steps of 32 sequences (0.8M characters, about 0.2 epochs), 10-20 s a run on one core: small
enough that every optimizer gets its own learning rate from a sweep over seeds. Quick mode
(``ADAMS_QUICK=1``): one layer of width 32, 40 steps of 8 sequences of 32 characters.

The experiments, in the order the notebooks use them:

* :func:`lr_sweeps`: each optimizer's learning-rate sweep (three seeds, bracketed);
* :func:`headline`: AdamS's and AdamW's best rates re-checked at :func:`horizon_config` (four times
  the tokens), then every optimizer at its rate over :func:`headline_seeds` (five);
* :func:`beta_sweeps`: a local sweep per (optimizer, betas) at :func:`betas_config`;
* :func:`batch_sweeps`, :func:`equal_steps_runs`, :func:`noise_runs` and :func:`checkpoint_noise`:
  rates tuned per batch size, equal tokens and equal steps, and the measured gradient noise.

Each verdict rule a notebook applies lives here or in :mod:`analysis.report.claims`, with a test that
makes it return each of its verdicts.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

import time

import torch

from analysis.training import corpus
from analysis.report.runs import STARTED_WALL
from analysis.report import quick_mode
from analysis.training import TrainConfig, TrainResult, build, default_cache_dir, lm_loss, run_many, sample_batch
from analysis.training.loop import TRACK_BATCH_SEED
from analysis.training.sweep import Sweep, lr_grid, replicate_seeds, sweep_lrs
from analysis.report.claims import (all_of, equivalence_verdict, inferiority_verdict, noninferiority_verdict,
                                   superiority_verdict)

__all__ = ["base_config", "seeds", "cached_seconds", "ADAPTIVE", "COMPARED", "SGD_LRS", "BETA_PAIRS", "summary", "paired_gap",
           "runs", "interleaved_step_times", "ratio_ci", "loss_spike", "log_correlation", "ratio_summary",
           "SWEEP_CENTERS", "PARITY_MARGIN", "sweep_seeds", "lr_sweeps", "inherit_verdict", "HORIZON_FACTOR",
           "horizon_config", "headline_seeds", "horizon_rechecks", "headline_runs", "final_losses",
           "paired_verdicts", "betas_config", "beta_sweeps", "beta_reversals", "BATCH_SIZES", "batch_config",
           "batch_sweeps", "throughput_verdict", "headline", "equal_steps_runs", "noise_runs", "checkpoint_noise", "REGIME_SHARE", "batch_regime_verdict",
           "TRACK_EVERY", "tracked_runs", "track_correlation", "seed_correlation_verdict", "TRACK_SPLIT",
           "TRACK_WINDOW", "track_windows", "window_correlation", "momentum_smoothness_verdict", "MOMENTUM_FACTOR",
           "momentum_noise_verdict", "track_momentum_noise", "DENOMINATOR_FACTOR", "denominator_trajectory",
           "denominator_verdict", "state_parts", "saving_verdict"]

ADAPTIVE = ("adams", "adamw", "adam-mini", "adapm", "adapm-mini")
COMPARED = ("adams", "adamw", "sgdm", "adam-mini", "adapm", "adapm-mini")
#: SGD with momentum does not share the adaptive methods' learning rate; it gets the best of these
SGD_LRS = (0.03, 0.1, 0.3)
#: (beta1, beta2) pairs of the betas experiment: the paper's, AdamW's usual beta2, beta1 = beta2, and
#: one pair in the summary's "(> 0.95, > 0.98)" region
BETA_PAIRS = ((0.9, 0.95), (0.9, 0.99), (0.95, 0.95), (0.98, 0.99), (0.9, 0.999))
#: where each optimizer's learning-rate sweep is centred: a factor-2 grid of five rates around it,
#: extended by :func:`analysis.training.sweep.sweep_lr` until the best rate is bracketed
SWEEP_CENTERS = {"adams": 3e-3, "adamw": 3e-3, "adam-mini": 3e-3, "adapm": 3e-3, "adapm-mini": 3e-3, "sgdm": 0.1}
#: the loss difference (nats per character) below which two runs count as the same, fixed before any
#: sweep ran: about 1% of the final losses here
PARITY_MARGIN = 0.02
#: the headline comparison trains this many times the sweeps' tokens (the same batch, more steps)
HORIZON_FACTOR = 4


#: optimizer-state keys of first moments and of second moments, across the compared optimizers (AdaPM's
#: keys start with "momentum" or "second_moment", one per block of a parameter)
_FIRST = ("exp_avg", "momentum_buffer", "m", "momentum")
_SECOND = ("exp_avg_sq", "max_exp_avg_sq", "v", "vmean", "second_moment")


def saving_verdict(saving: float, at_least: float) -> str:
    """A memory claim's verdict from an exact byte count: ``"holds"`` if the share saved against the
    baseline (``1 - ours / baseline``) is at least ``at_least``, else ``"does not hold"``.

    >>> saving_verdict(0.905, 0.90), saving_verdict(0.452, 0.90)
    ('holds', 'does not hold')
    """
    if not (math.isfinite(saving) and saving <= 1 and 0 < at_least <= 1):
        raise ValueError(f"saving_verdict: a share saved <= 1 and a threshold in (0, 1] are needed, got {saving!r}, "
                         f"{at_least!r}")
    return "holds" if saving >= at_least else "does not hold"


def state_parts(config: TrainConfig, vocab: int | None = None) -> dict[str, int]:
    """Bytes of ``config``'s optimizer state after one step, split into ``momentum``,
    ``second_moment`` and ``other`` (step counters) by state key. The sizes do not depend on the
    gradient's values, so one step with gradients of ones suffices; nothing is trained. ``vocab``:
    the corpus's, unless given."""
    import adams

    model, optimizer = build(config, corpus.load().vocab_size if vocab is None else vocab)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    parts = {"momentum": 0, "second_moment": 0, "other": 0}
    for key, size in adams.state_bytes(optimizer, by_key=True).items():
        base = key.split(".")[0]
        part = "momentum" if base in _FIRST else "second_moment" if base in _SECOND else "other"
        parts[part] += size
    return parts


def loss_spike(history: dict) -> float:
    """Largest rise of the logged training loss above its running minimum,
    max over t of (loss_t - min_{s < t} loss_s); 0 for a loss that never goes back up.

    >>> loss_spike({"train_loss": [4.0, 3.0, 3.5, 2.0, 2.1]})
    0.5
    """
    loss = np.asarray(history["train_loss"], dtype=float)
    if loss.size < 2:
        return 0.0
    running_min = np.minimum.accumulate(loss)
    return float(max(0.0, np.max(loss[1:] - running_min[:-1])))


def base_config(quick: bool, **changes) -> TrainConfig:
    """The shared recipe: lr 3e-3 (peak), betas (0.9, 0.95), weight decay 0.1, warmup 10%, cosine to 10%,
    clipping at 1.0."""
    if quick:
        config = TrainConfig(steps=40, warmup=4, batch_size=8, block=32, layers=1, heads=2, width=32, log_every=5,
                             eval_every=10, eval_batches=4)
    else:
        config = TrainConfig(layers=2, width=64, heads=2)
    return dataclasses.replace(config, **changes)


def seeds(quick: bool) -> tuple[int, ...]:
    return (0, 1) if quick else (0, 1, 2)


def runs(configs: Sequence[TrainConfig], **kwargs) -> list[TrainResult]:
    """:func:`analysis.training.run_many` with the notebooks' defaults: two processes, or in this process
    in quick mode (where starting a process would cost more than a run); an ``executor=`` replaces both."""
    if kwargs.get("executor") is None:
        kwargs["workers"] = kwargs.get("workers") or (1 if quick_mode() else 2)
    return run_many(configs, **kwargs)


def cached_seconds(results: Iterable[TrainResult]) -> float:
    """Training time of the runs among ``results`` that this process read from the cache (trained by an
    earlier process), for :func:`analysis.report.save_results`'s ``cached_s``: a notebook whose runs
    were cached finishes in seconds, and its record should still say what the result cost."""
    started = STARTED_WALL
    total = 0.0
    for r in {id(r): r for r in results}.values():
        path = default_cache_dir() / TrainConfig.from_dict(r.config).key() / "result.json"
        if path.exists() and path.stat().st_mtime < started:
            total += r.seconds
    return total


def summary(values: Iterable[float], confidence: float = 0.95) -> dict:
    """Mean, standard deviation, standard error and Student-t confidence interval over seeds.

    >>> s = summary([2.0, 2.2, 2.4])
    >>> round(s["mean"], 3), round(s["se"], 4), [round(v, 3) for v in s["ci"]]
    (2.2, 0.1155, [1.703, 2.697])
    """
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        raise ValueError("no values to summarize")
    finite = x[np.isfinite(x)]
    n = finite.size
    mean = float(finite.mean()) if n else float("nan")
    sd = float(finite.std(ddof=1)) if n > 1 else float("nan")
    se = sd / np.sqrt(n) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * se) if n > 1 else float("nan")
    return {"n": int(n), "n_failed": int(x.size - n), "mean": mean, "sd": sd, "se": float(se),
            "ci": [mean - half, mean + half], "values": x.tolist()}


def paired_gap(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """``a - b`` paired by seed (same data order and initialization): :func:`summary` of the differences."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    return summary(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), confidence)


def interleaved_step_times(configs: dict[str, TrainConfig], rounds: int, warmup: int, seed: int = 0) -> dict[str, dict]:
    """Wall time of full training steps (forward, backward, clipping, optimizer step), interleaved,
    and of the optimizer step within each.

    Each name gets its own model and optimizer from its configuration; every round times one step of
    each in turn on the same batch, in an order shuffled every round (seeded), so that load on a
    shared machine and cache effects hit all of them alike. The first ``warmup`` rounds are not
    recorded. Returns ``{name: {"step": [...], "optimizer": [...]}}``
    in seconds. Uses the caller's torch thread setting.
    """
    data = corpus.load()
    built = {name: build(c, data.vocab_size) for name, c in configs.items()}
    first = next(iter(configs.values()))
    rng = np.random.default_rng(seed)
    times: dict[str, dict] = {name: {"step": [], "optimizer": []} for name in configs}
    for k in range(rounds + warmup):
        x, y = sample_batch(data.train, rng, first.batch_size, first.block)
        order = list(built)
        rng.shuffle(order)
        for name in order:
            model, optimizer = built[name]
            start = time.perf_counter()
            loss = lm_loss(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), configs[name].clip if configs[name].clip is not None else float("inf"))
            before_step = time.perf_counter()
            optimizer.step()
            end = time.perf_counter()
            if k >= warmup:
                times[name]["step"].append(end - start)
                times[name]["optimizer"].append(end - before_step)
    return times


def throughput_verdict(heavy_ci: Sequence[float], gpt_ci: Sequence[float], heavy_share: float,
                       min_share: float = 0.2) -> str:
    """Row 53, "throughput gains of 0-36% depending on scale, from reduced memory pressure".

    ``heavy_ci`` and ``gpt_ci`` are 95% intervals of AdamS's speed relative to AdamW (tokens per
    second, AdamS / AdamW) on a model where the optimizer step is a large share of the step
    (``heavy_share``, measured for AdamW) and on the training track's GPT. If the optimizer's share
    is below ``min_share`` the setting cannot show a gain: "not testable here". Otherwise "holds at
    our scale" if AdamS is faster on the heavy model (interval above 1) and not slower on the GPT
    (interval reaching 1); "does not hold" if it is not faster on the heavy model (interval at or
    below 1) or slower on the GPT (interval below 1); "inconclusive" otherwise.

    >>> throughput_verdict((1.10, 1.20), (0.99, 1.02), 0.4), throughput_verdict((0.95, 1.0), (0.99, 1.02), 0.4)
    ('holds at our scale', 'does not hold')
    """
    (hlo, hhi), (glo, ghi) = (tuple(float(x) for x in ci) for ci in (heavy_ci, gpt_ci))
    if not all(np.isfinite(v) for v in (hlo, hhi, glo, ghi, heavy_share)) or hlo > hhi or glo > ghi:
        raise ValueError(f"throughput_verdict: finite intervals (lo <= hi) and share, got {heavy_ci}, {gpt_ci}, "
                         f"{heavy_share}")
    if heavy_share < min_share:
        return "not testable here"
    if hhi <= 1.0 or ghi < 1.0:
        return "does not hold"
    if hlo > 1.0:
        return "holds at our scale"
    return "inconclusive"


def ratio_ci(numerator: Sequence[float], denominator: Sequence[float], *, seed: int = 0, n_boot: int = 2000,
             confidence: float = 0.95) -> list[float]:
    """Bootstrap interval of median(numerator) / median(denominator), resampling paired rounds together."""
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if a.size != b.size or a.size == 0:
        raise ValueError(f"need paired, non-empty samples, got {a.size} and {b.size}")
    idx = np.random.default_rng(seed).integers(0, a.size, (n_boot, a.size))
    r = np.median(a[idx], axis=1) / np.median(b[idx], axis=1)
    return [float(np.quantile(r, (1 - confidence) / 2)), float(np.quantile(r, (1 + confidence) / 2))]


def log_correlation(x: Sequence[float], y: Sequence[float], *, seed: int = 0, n_boot: int = 2000,
                    confidence: float = 0.95) -> dict:
    """Pearson correlation of log x and log y over the finite positive pairs, with a bootstrap interval."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[keep]), np.log(y[keep])
    if lx.size < 3:
        raise ValueError(f"need at least 3 positive pairs, got {lx.size}")
    idx = np.random.default_rng(seed).integers(0, lx.size, (n_boot, lx.size))
    boot = np.array([np.corrcoef(lx[i], ly[i])[0, 1] for i in idx])
    boot = boot[np.isfinite(boot)]
    return {"n": int(lx.size), "r": float(np.corrcoef(lx, ly)[0, 1]),
            "ci": [float(np.quantile(boot, (1 - confidence) / 2)), float(np.quantile(boot, (1 + confidence) / 2))]}


def ratio_summary(numerator: Sequence[float], denominator: Sequence[float], *, seed: int = 0,
                  n_boot: int = 2000) -> dict:
    """Median, mean (bootstrap 95% interval) and 10-90% range of numerator / denominator over finite pairs."""
    r = np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float)
    r = r[np.isfinite(r) & (r > 0)]
    if r.size == 0:
        raise ValueError("no finite positive ratios")
    boot = np.random.default_rng(seed).choice(r, (n_boot, r.size)).mean(axis=1)
    return {"n": int(r.size), "median": float(np.median(r)), "mean": float(r.mean()),
            "mean_ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
            "q10": float(np.quantile(r, 0.1)), "q90": float(np.quantile(r, 0.9))}


def sweep_seeds(quick: bool) -> tuple[tuple[int, int], ...]:
    """The sweeps' replicates, ``(seed, data_seed)`` pairs: 3 (2 in quick mode)."""
    return replicate_seeds(2 if quick else 3)


def lr_sweeps(quick: bool, optimizers: Sequence[str] = COMPARED, **run_kwargs) -> dict[str, Sweep]:
    """The learning-rate sweep of each optimizer on :func:`base_config` (cached run by run, so every
    notebook that asks gets the same sweeps): a factor-2 grid of five rates around
    :data:`SWEEP_CENTERS` (three in quick mode), :func:`sweep_seeds`, up to three extensions."""
    unknown = [name for name in optimizers if name not in SWEEP_CENTERS]
    if unknown:
        raise ValueError(f"lr_sweeps: no sweep centre for {unknown}; known: {', '.join(SWEEP_CENTERS)}")
    span = 1 if quick else 2
    specs = {name: (base_config(quick, optimizer=name), lr_grid(SWEEP_CENTERS[name], below=span, above=span))
             for name in optimizers}
    return sweep_lrs(specs, sweep_seeds(quick), lambda configs: runs(configs, **run_kwargs), max_extensions=3)


def horizon_config(quick: bool, **changes) -> TrainConfig:
    """:func:`base_config` trained :data:`HORIZON_FACTOR` times longer (same batch, warmup scaled
    alike, evaluated half as often): the horizon of the headline comparison."""
    base = base_config(quick)
    longer = dataclasses.replace(base, steps=base.steps * HORIZON_FACTOR, warmup=base.warmup * HORIZON_FACTOR,
                                 eval_every=base.eval_every * 2)
    return dataclasses.replace(longer, **changes)


def headline_seeds(quick: bool) -> tuple[tuple[int, int], ...]:
    """The headline comparison's replicates: 5 ``(seed, data_seed)`` pairs (2 in quick mode), none of
    them a sweep's, so that the runs that chose a learning rate are not the runs that judge it."""
    n_sweep = len(sweep_seeds(quick))
    return tuple((n_sweep + s, n_sweep + d) for s, d in replicate_seeds(2 if quick else 5))


def horizon_rechecks(quick: bool, sweeps: dict[str, Sweep], optimizers: Sequence[str] = ADAPTIVE,
                     **run_kwargs) -> dict[str, Sweep]:
    """Each optimizer's best rate from its sweep, checked again at the headline's horizon: the rate and
    its two grid neighbours (a factor 2 either side), on the sweeps' seeds, extended (at most twice)
    until the best rate is bracketed. The best rate can move with the horizon. All train together."""
    specs = {name: (horizon_config(quick, optimizer=name), lr_grid(sweeps[name].best.lr, below=1, above=1))
             for name in optimizers}
    return sweep_lrs(specs, sweep_seeds(quick), lambda configs: runs(configs, **run_kwargs), max_extensions=2)


def headline_runs(quick: bool, lrs: dict[str, float], **run_kwargs) -> dict[str, list[TrainResult]]:
    """Every optimizer of ``lrs`` at its rate on :func:`horizon_config`, one run per
    :func:`headline_seeds` pair (the same initialization and data order for every optimizer at a
    pair, so that gaps are paired)."""
    seeds = headline_seeds(quick)
    configs = [horizon_config(quick, optimizer=name, lr=lr, seed=s, data_seed=d)
               for name, lr in lrs.items() for s, d in seeds]
    results = runs(configs, **run_kwargs)
    return {name: list(results[i * len(seeds):(i + 1) * len(seeds)]) for i, name in enumerate(lrs)}


def headline(quick: bool, **run_kwargs) -> dict:
    """The headline comparison end to end (cached run by run): ``sweeps`` (:func:`lr_sweeps`),
    ``rechecks`` (:func:`horizon_rechecks` for the adaptive methods), ``lrs`` (each optimizer's rate:
    the re-checked one where there is one, else its sweep's best, which is SGD with momentum's) and
    ``results`` (:func:`headline_runs`, on seeds no sweep used)."""
    sweeps = lr_sweeps(quick, **run_kwargs)
    rechecks = horizon_rechecks(quick, sweeps, **run_kwargs)
    lrs = {name: (rechecks[name] if name in rechecks else sweeps[name]).best.lr for name in COMPARED}
    return {"sweeps": sweeps, "rechecks": rechecks, "lrs": lrs, "results": headline_runs(quick, lrs, **run_kwargs)}


def final_losses(results: Sequence[TrainResult]) -> list[float]:
    """Final validation loss of each run, nan where it diverged."""
    return [float(r.final_val_loss) if not r.diverged and np.isfinite(r.final_val_loss) else float("nan")
            for r in results]


def paired_verdicts(a: Sequence[float], b: Sequence[float], margin: float = PARITY_MARGIN) -> dict:
    """Optimizer A against B from final losses paired by seed (nan where a run diverged): the gap
    A - B with its 95% interval and three verdicts, each a rule of :mod:`analysis.report.claims`:
    ``same`` (equivalence: the interval inside [-margin, margin]), ``better`` (superiority: the
    interval below 0; "does not hold" also when it lies above -margin) and ``no_worse``
    (non-inferiority: the interval below margin).

    A divergence decides "same" ("does not hold": one optimizer is unstable where the other is not).
    If only A diverged (on any seed), A is neither better nor no worse. If only B diverged, A is
    better and no worse unless the seeds where both finished say otherwise: with two or more such
    seeds, a verdict other than "holds" on them makes the verdict "inconclusive". If both diverged
    somewhere, everything is "inconclusive". The gap is over the seeds where both finished.

    >>> v = paired_verdicts([2.00, 2.01, 2.02], [2.10, 2.12, 2.11])
    >>> v["same"], v["better"], v["no_worse"]
    ('does not hold', 'holds at our scale', 'holds at our scale')
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"paired_verdicts: two paired lists of at least 2 losses, got shapes {a.shape} and {b.shape}")
    a_failed, b_failed = ~np.isfinite(a), ~np.isfinite(b)
    both = ~(a_failed | b_failed)
    gap = paired_gap(a[both], b[both]) if both.sum() >= 2 else None
    on_finished = None if gap is None else {
        "same": equivalence_verdict(gap["ci"], margin), "better": superiority_verdict(gap["ci"], margin),
        "no_worse": noninferiority_verdict(gap["ci"], margin)}
    out = {"diverged": [int(a_failed.sum()), int(b_failed.sum())], "margin": margin, "gap": gap}
    if a_failed.any() and b_failed.any():
        return {**out, "same": "inconclusive", "better": "inconclusive", "no_worse": "inconclusive"}
    if a_failed.any():
        return {**out, "same": "does not hold", "better": "does not hold", "no_worse": "does not hold"}
    if b_failed.any():
        held = "holds at our scale"

        def unless_finished_disagree(key):
            return held if on_finished is None or on_finished[key] == held else "inconclusive"
        return {**out, "same": "does not hold", "better": unless_finished_disagree("better"),
                "no_worse": unless_finished_disagree("no_worse")}
    return {**out, **on_finished}


def inherit_verdict(inherited: Sequence[float], own: Sequence[float], margin: float = PARITY_MARGIN, *,
                    bracketed: bool = True) -> dict:
    """Does AdamS lose less than ``margin`` by taking AdamW's best learning rate instead of its own?

    ``inherited`` and ``own`` are final losses paired by seed (nan where a run diverged). A divergence
    at the inherited rate is "does not hold"; otherwise the paired gap inherited - own and its 95%
    interval go to :func:`analysis.report.claims.noninferiority_verdict` with ``margin``. If either
    sweep left its optimum unbracketed (``bracketed=False``) a best rate is only a grid edge, and the
    verdict is "inconclusive" whatever the gap. ``own`` is the best of several rates measured on the
    same seeds, so it is biased low: the bias favours "does not hold" and matters only near the margin.

    >>> inherit_verdict([2.005, 2.012, 2.003], [2.00, 2.01, 2.00])["verdict"]
    'holds at our scale'
    >>> inherit_verdict([float("nan"), 2.02, 2.00], [2.00, 2.01, 2.00])["verdict"]
    'does not hold'
    """
    inherited, own = np.asarray(inherited, dtype=float), np.asarray(own, dtype=float)
    if inherited.shape != own.shape or inherited.ndim != 1 or inherited.size < 2:
        raise ValueError(f"inherit_verdict: two paired lists of at least 2 losses, got shapes {inherited.shape} "
                         f"and {own.shape}")
    if not np.all(np.isfinite(own)):
        raise ValueError("inherit_verdict: a run at the optimizer's own best rate diverged, so it is not its best")
    if not np.all(np.isfinite(inherited)):
        verdict = "does not hold" if bracketed else "inconclusive"
        return {"verdict": verdict, "diverged": int(np.sum(~np.isfinite(inherited))), "gap": None}
    gap = paired_gap(inherited, own)
    verdict = noninferiority_verdict(gap["ci"], margin) if bracketed else "inconclusive"
    return {"verdict": verdict, "diverged": 0, "gap": gap}


# ---------------------------------------------------------------------------------------------
# betas at tuned learning rates


def betas_config(quick: bool, **changes) -> TrainConfig:
    """The betas experiment's runs: :func:`base_config` at half its steps (200), so that every
    (optimizer, betas) pair can have a local learning-rate sweep over three seeds."""
    base = base_config(quick)
    if not quick:
        base = dataclasses.replace(base, steps=base.steps // 2, warmup=base.warmup // 2)
    return dataclasses.replace(base, **changes)


def beta_sweeps(quick: bool, sweeps: dict[str, Sweep], optimizers: Sequence[str] = ("adams", "adamw"),
                **run_kwargs) -> dict[tuple[str, tuple[float, float]], Sweep]:
    """Each (optimizer, betas) of :data:`BETA_PAIRS` gets its own best rate: three rates a factor 2
    apart around the optimizer's best rate in its (0.9, 0.95) sweep, on :func:`betas_config`, the
    sweeps' seeds, extended (at most twice) until bracketed. All pairs train together."""
    specs = {(name, b): (betas_config(quick, optimizer=name, betas=b), lr_grid(sweeps[name].best.lr, below=1, above=1))
             for name in optimizers for b in BETA_PAIRS}
    return sweep_lrs(specs, sweep_seeds(quick), lambda configs: runs(configs, **run_kwargs), max_extensions=2)


def beta_reversals(at_shared: dict, at_tuned: dict, margin: float = 0.0) -> list[tuple]:
    """Pairs of betas whose order flips between one shared learning rate and each at its own best one.

    ``at_shared`` and ``at_tuned`` map a betas pair to its score (mean final loss, inf if diverged).
    Returns ``(a, b)`` for each flip: ``a`` better than ``b`` by more than ``margin`` at the shared
    rate and worse by more than ``margin`` at the tuned ones (with margin 0, any strict flip; ties
    are never flips).

    >>> beta_reversals({"x": 2.0, "y": 2.1, "z": 2.2}, {"x": 2.0, "y": 1.9, "z": 2.3})
    [('x', 'y')]
    >>> beta_reversals({"x": 2.0, "y": 2.1, "z": 2.2}, {"x": 2.0, "y": 1.9, "z": 2.3}, margin=0.15)
    []
    """
    if set(at_shared) != set(at_tuned):
        raise ValueError(f"beta_reversals: the two tables name different pairs: {sorted(at_shared)} and "
                         f"{sorted(at_tuned)}")
    names = list(at_shared)
    return [(a, b) for a in names for b in names
            if at_shared[b] - at_shared[a] > margin and at_tuned[a] - at_tuned[b] > margin]


# ---------------------------------------------------------------------------------------------
# batch size: tuned learning rates, equal tokens and equal steps, measured gradient noise

#: batch sizes of the batch-size experiment; the middle one is :func:`base_config`'s
BATCH_SIZES = {False: (8, 32, 128), True: (4, 8, 16)}
#: the share of coordinates with measured mu/sigma > 3 (where E[V]/E[S] > 0.9 at betas (0.9, 0.95))
#: from which a batch size counts as in the large-batch regime
REGIME_SHARE = 0.25


def batch_config(quick: bool, batch_size: int, *, equal: str = "tokens", **changes) -> TrainConfig:
    """:func:`base_config` at ``batch_size`` with the same training tokens (``equal="tokens"``: steps
    scaled by base batch / batch, evaluations and logs about as often in tokens, rounded down to whole
    steps) or the same steps (``equal="steps"``); warmup stays 10% of the steps."""
    base = base_config(quick)
    if equal == "tokens":
        steps = base.steps * base.batch_size // batch_size
        if steps * batch_size != base.steps * base.batch_size:
            raise ValueError(f"batch_config: batch {batch_size} does not divide the base run's "
                             f"{base.steps * base.batch_size} sequences")
        every = max(1, base.eval_every * base.batch_size // batch_size)
        log = max(1, base.log_every * base.batch_size // batch_size)
    elif equal == "steps":
        steps, every, log = base.steps, base.eval_every, base.log_every
    else:
        raise ValueError(f"batch_config: equal must be 'tokens' or 'steps', got {equal!r}")
    config = dataclasses.replace(base, batch_size=batch_size, steps=steps, warmup=steps // 10, eval_every=every,
                                 log_every=log)
    return dataclasses.replace(config, **changes)


def batch_sweeps(quick: bool, sweeps: dict[str, Sweep], optimizers: Sequence[str] = ("adams", "adamw"),
                 **run_kwargs) -> dict[tuple[str, int], Sweep]:
    """Each optimizer's learning rate at every batch size of :data:`BATCH_SIZES`, at equal tokens.
    The base batch size's is its sweep from ``sweeps``; the others get three rates a factor 2 apart
    around the square-root rule, best rate x sqrt(B / base batch), extended (at most twice) until
    bracketed."""
    base = base_config(quick)
    specs = {(name, b): (batch_config(quick, b, optimizer=name),
                         lr_grid(sweeps[name].best.lr * math.sqrt(b / base.batch_size), below=1, above=1))
             for name in optimizers for b in BATCH_SIZES[quick] if b != base.batch_size}
    out = sweep_lrs(specs, sweep_seeds(quick), lambda configs: runs(configs, **run_kwargs), max_extensions=2)
    out.update({(name, base.batch_size): sweeps[name] for name in optimizers})
    return out


def equal_steps_runs(quick: bool, lrs: dict[tuple[str, int], float], **run_kwargs) -> dict[tuple[str, int], list]:
    """The runs at equal steps: each (optimizer, batch size) of ``lrs`` at its rate on
    ``batch_config(equal="steps")``, one run per sweep seed (the base batch size's are its sweep runs)."""
    keys = list(lrs)
    seeds = sweep_seeds(quick)
    configs = [batch_config(quick, b, equal="steps", optimizer=name, lr=lrs[name, b], seed=s, data_seed=d)
               for name, b in keys for s, d in seeds]
    results = runs(configs, **run_kwargs)
    return {key: list(results[i * len(seeds):(i + 1) * len(seeds)]) for i, key in enumerate(keys)}


def noise_runs(quick: bool, lrs: dict[tuple[str, int], float], checkpoints: int = 4,
               **run_kwargs) -> dict[tuple[str, int], TrainResult]:
    """One run per (optimizer, batch size) of ``lrs`` at equal tokens and its rate, first sweep seed,
    saving ``checkpoints`` checkpoints evenly along training (for :func:`checkpoint_noise`)."""
    keys = list(lrs)
    seed, data_seed = sweep_seeds(quick)[0]
    configs = []
    for name, b in keys:
        config = batch_config(quick, b, optimizer=name, lr=lrs[name, b], seed=seed, data_seed=data_seed)
        configs.append(dataclasses.replace(config, save_every=max(1, config.steps // checkpoints)))
    return dict(zip(keys, runs(configs, **run_kwargs)))


def _checkpointed_models(result: TrainResult, config: TrainConfig, data, caller: str):
    """For each checkpoint of ``result``: its path, the checked checkpoint, and a fresh model holding
    its weights (``load_checkpoint`` reads and checks; it leaves the model it is given alone)."""
    from analysis.training.gpt import GPT
    from smoothness.checkpoints import load_checkpoint

    if not result.checkpoints:
        raise ValueError(f"{caller}: the run saved no checkpoints (train it with save_every > 0)")
    for path in result.checkpoints:
        model = GPT(config.model_config(data.vocab_size))
        checkpoint = load_checkpoint(path, model)
        model.load_state_dict(checkpoint.model_state)
        yield path, checkpoint, model


def checkpoint_noise(result: TrainResult, *, k: int = 16, seed: int = 0) -> list[dict]:
    """At each checkpoint of ``result``, ``k`` independent minibatch gradients of the run's batch size
    on training text, summarized by :func:`analysis.training.noise.snr_summary` at the run's betas."""
    from analysis.training.noise import minibatch_gradients, snr_summary

    config = TrainConfig.from_dict(result.config)
    data = corpus.load()
    out = []
    for i, (path, checkpoint, model) in enumerate(_checkpointed_models(result, config, data, "checkpoint_noise")):
        step = checkpoint.step
        grads = minibatch_gradients(model, data.train, batch_size=config.batch_size, block=config.block, k=k,
                                    seed=seed + i)
        out.append({"step": step, **snr_summary(grads, config.betas)})
    return out


def batch_regime_verdict(shares: dict[int, float], same: dict[int, Sequence[str]], share: float = REGIME_SHARE) -> dict:
    """Row 55: AdamS and AdamW agree in the large-batch regime.

    ``shares`` maps a batch size to its measured share of coordinates with mu/sigma > 3 (at least
    ``share`` puts it in the regime); ``same`` maps a batch size to its equivalence verdicts (AdamS -
    AdamW within the margin, at equal tokens and at equal steps). If no batch size is in the regime
    the claim is "not testable here"; otherwise the verdict is :func:`analysis.report.claims.all_of`
    the equivalence verdicts at the largest batch size in the regime.

    >>> batch_regime_verdict({32: 0.01, 128: 0.02}, {32: ["does not hold"], 128: ["inconclusive"]})["verdict"]
    'not testable here'
    >>> batch_regime_verdict({32: 0.01, 128: 0.4}, {32: ["does not hold"], 128: ["holds at our scale"]})["verdict"]
    'holds at our scale'
    """
    if set(shares) != set(same):
        raise ValueError(f"batch_regime_verdict: shares and verdicts name different batch sizes: {sorted(shares)} "
                         f"and {sorted(same)}")
    in_regime = sorted(b for b, s in shares.items() if s >= share)
    if not in_regime:
        return {"verdict": "not testable here", "batch_size": None, "in_regime": []}
    b = in_regime[-1]
    return {"verdict": all_of(*same[b]), "batch_size": b, "in_regime": in_regime}


# ---------------------------------------------------------------------------------------------
# dense smoothness trajectories

#: steps between two tracked points of a dense trajectory (100 points over the base run's 400 steps)
TRACK_EVERY = {False: 4, True: 2}


#: the fixed batch of a tracked run is cut into this many parts for the unbiased gradient norm
TRACK_SPLIT = 4
#: consecutive tracked points averaged into one window before correlating with the unbiased norm
TRACK_WINDOW = 5


def tracked_runs(quick: bool, lrs: dict[str, float], **run_kwargs) -> dict[str, list[TrainResult]]:
    """Each optimizer of ``lrs`` at its rate on :func:`base_config`, one run per sweep seed, with the
    step finite difference, the gradient and momentum norms, and the unbiased gradient norm and noise
    trace (from :data:`TRACK_SPLIT` parts of the fixed batch) tracked every :data:`TRACK_EVERY` steps
    (``TrainResult.track``); model and optimizer state are saved ten times a run (four in quick mode).
    Each seed draws its own fixed batch, so that the spread over seeds includes the batch's sampling
    error."""
    seeds = sweep_seeds(quick)
    base = base_config(quick)
    configs = [base_config(quick, optimizer=name, lr=lr, seed=s, data_seed=d, track_every=TRACK_EVERY[quick],
                           track_split=TRACK_SPLIT, track_seed=TRACK_BATCH_SEED + s,
                           save_every=max(1, base.steps // (4 if quick else 10)))
               for name, lr in lrs.items() for s, d in seeds]
    results = runs(configs, **run_kwargs)
    return {name: list(results[i * len(seeds):(i + 1) * len(seeds)]) for i, name in enumerate(lrs)}


def track_correlation(track: dict, x: str = "grad_norm", y: str = "fd_smoothness", skip: float = 0.0) -> float:
    """Pearson correlation of log ``x`` and log ``y`` over a run's tracked points, leaving out the
    first ``skip`` share of training (by step)."""
    steps = np.asarray(track["step"], dtype=float)
    a, b = np.asarray(track[x], dtype=float), np.asarray(track[y], dtype=float)
    keep = (steps >= skip * (steps.max() + 1)) & np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if keep.sum() < 3:
        raise ValueError(f"track_correlation: fewer than 3 usable points after skipping {skip:.0%}")
    return float(np.corrcoef(np.log(a[keep]), np.log(b[keep]))[0, 1])


def seed_correlation_verdict(full: Sequence[float], trimmed: Sequence[float]) -> dict:
    """Row 42 for one optimizer: per-seed correlations over the whole run (``full``) and without its
    first 5% (``trimmed``). With the Student-t 95% interval of the mean correlation over seeds for
    each: "holds at our scale" if both intervals lie above 0; "does not hold" if either lies at or
    below 0; "inconclusive" otherwise (so that no single point, such as the first checkpoint, and no
    single seed decides).

    >>> seed_correlation_verdict([0.6, 0.7, 0.65], [0.5, 0.6, 0.55])["verdict"]
    'holds at our scale'
    >>> seed_correlation_verdict([0.6, 0.7, 0.65], [-0.3, -0.2, -0.25])["verdict"]
    'does not hold'
    """
    out = {"full": summary(full), "trimmed": summary(trimmed)}
    if out["full"]["n"] < 2 or out["trimmed"]["n"] < 2:
        raise ValueError("seed_correlation_verdict: at least two seeds with a finite correlation each")
    lows = [out[k]["ci"][0] for k in ("full", "trimmed")]
    highs = [out[k]["ci"][1] for k in ("full", "trimmed")]
    if any(h <= 0 for h in highs):
        verdict = "does not hold"
    elif all(lo > 0 for lo in lows):
        verdict = "holds at our scale"
    else:
        verdict = "inconclusive"
    return {**out, "verdict": verdict}


def _after(track: dict, skip: float) -> np.ndarray:
    steps = np.asarray(track["step"], dtype=float)
    return steps >= skip * (steps.max() + 1)


def track_windows(track: dict, window: int = TRACK_WINDOW, skip: float = 0.0) -> dict[str, np.ndarray]:
    """A tracked run's points after the first ``skip`` share of training, averaged over windows of
    ``window`` consecutive points (an incomplete last window is left out): the mean step finite
    difference of the fixed batch's loss, and the root mean square of the one-batch gradient norm
    and of the momentum norm; the unbiased gradient norm and finite difference of the objective are
    the roots of the window's mean unbiased squares (each point's estimate is unbiased and noisy,
    their mean less so; NaN where that mean is not positive)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"track_windows: window must be an int >= 1, got {window!r}")
    if "grad_sq_unbiased" not in track:
        raise ValueError("track_windows: the run tracked no unbiased gradient norm (train it with track_split >= 3)")
    keep = _after(track, skip)
    n = int(keep.sum()) // window * window
    if n < 3 * window:
        raise ValueError(f"track_windows: fewer than 3 windows of {window} points after skipping {skip:.0%}")

    def grouped(key: str, power: int = 1) -> np.ndarray:
        return (np.asarray(track[key], dtype=float)[keep][:n] ** power).reshape(-1, window).mean(axis=1)

    g2, fd2 = grouped("grad_sq_unbiased"), grouped("fd_sq_unbiased")
    return {"step": grouped("step"), "fd_smoothness": grouped("fd_smoothness"),
            "fd_smoothness_unbiased": np.where(fd2 > 0, np.sqrt(np.maximum(fd2, 0.0)), np.nan),
            "grad_norm": np.sqrt(grouped("grad_norm", 2)), "momentum_norm": np.sqrt(grouped("momentum_norm", 2)),
            "grad_norm_unbiased": np.where(g2 > 0, np.sqrt(np.maximum(g2, 0.0)), np.nan),
            "noise_trace": grouped("noise_trace")}


def window_correlation(track: dict, x: str, y: str = "fd_smoothness", skip: float = 0.0,
                       window: int = TRACK_WINDOW) -> float:
    """Pearson correlation of log ``x`` and log ``y`` over :func:`track_windows` (windows where either
    is not positive are left out; at least 3 must remain)."""
    w = track_windows(track, window, skip)
    a, b = w[x], w[y]
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if ok.sum() < 3:
        raise ValueError(f"window_correlation: fewer than 3 usable windows for {x} and {y}")
    return float(np.corrcoef(np.log(a[ok]), np.log(b[ok]))[0, 1])


def momentum_smoothness_verdict(with_momentum: Sequence[float], with_gradient: Sequence[float],
                                margin: float = 0.1) -> dict:
    """Row 43 for one optimizer: local smoothness is governed by the momentum's norm as by the
    gradient's. Per seed, the log-log correlation of the step finite difference with |m|
    (``with_momentum``) and with the unbiased |grad f| (``with_gradient``), on the same windows.
    With Student-t 95% intervals over seeds: "holds at our scale" if the correlation with |m| lies
    above 0 and the paired difference (|m| minus |grad f|) above -``margin``; "does not hold" if the
    correlation with |m| lies at or below 0 or the difference below -``margin``; "inconclusive"
    otherwise.

    >>> momentum_smoothness_verdict([0.6, 0.65, 0.62], [0.6, 0.66, 0.6])["verdict"]
    'holds at our scale'
    >>> momentum_smoothness_verdict([0.1, 0.15, 0.12], [0.6, 0.66, 0.6])["verdict"]
    'does not hold'
    """
    m, g = np.asarray(with_momentum, dtype=float), np.asarray(with_gradient, dtype=float)
    if m.shape != g.shape or m.ndim != 1 or m.size < 2 or not (np.all(np.isfinite(m)) and np.all(np.isfinite(g))):
        raise ValueError("momentum_smoothness_verdict: two equal-length lists of at least two finite correlations")
    out = {"momentum": summary(m), "gradient": summary(g), "difference": summary(m - g)}
    lo_m, hi_m = out["momentum"]["ci"]
    lo_d, hi_d = out["difference"]["ci"]
    if hi_m <= 0 or hi_d < -margin:
        verdict = "does not hold"
    elif lo_m > 0 and lo_d > -margin:
        verdict = "holds at our scale"
    else:
        verdict = "inconclusive"
    return {**out, "margin": margin, "verdict": verdict}


#: rows 41 and 43: the momentum's size agrees with the noise model if measured / predicted lies
#: within this factor of 1
MOMENTUM_FACTOR = 1.5


def momentum_noise_verdict(ratios: Sequence[float], factor: float = MOMENTUM_FACTOR,
                           ci: Sequence[float] | None = None) -> dict:
    """The momentum's size against the noise model (:func:`analysis.training.noise.momentum_noise_ratio`'s
    ``ratio``, measured over predicted), one value per seed: the Student-t 95% interval of the mean
    log ratio over seeds (or a given interval ``ci`` of it, e.g. a bootstrap over one run's
    checkpoints) against [-log ``factor``, log ``factor``]: inside, "holds at our scale"; wholly
    outside, "does not hold"; else "inconclusive" (:func:`analysis.report.claims.equivalence_verdict`).

    >>> momentum_noise_verdict([0.95, 1.05, 1.0])["verdict"], momentum_noise_verdict([0.3, 0.32, 0.35])["verdict"]
    ('holds at our scale', 'does not hold')
    """
    logs = np.log(np.asarray(ratios, dtype=float))
    if logs.ndim != 1 or logs.size == 0 or not np.all(np.isfinite(logs)):
        raise ValueError("momentum_noise_verdict: need positive finite ratios")
    s = summary(logs) if logs.size > 1 else {"mean": float(logs[0]), "ci": [float("nan")] * 2}
    interval = list(ci) if ci is not None else s["ci"]
    interval = [float(np.log(v)) for v in interval] if ci is not None else interval
    if not np.all(np.isfinite(interval)):
        raise ValueError("momentum_noise_verdict: one value needs its interval (ci=)")
    return {"mean_ratio": float(np.exp(s["mean"])), "ci_ratio": [float(np.exp(v)) for v in interval],
            "factor": factor, "verdict": equivalence_verdict(interval, math.log(factor))}


def track_momentum_noise(track: dict, beta1: float, skip: float = 0.05, clip: float = 1.0) -> dict:
    """:func:`analysis.training.noise.momentum_noise_ratio` over a tracked run's points after the first
    ``skip`` share of training (the tracked noise trace is that of the training batch: the fixed
    batch has the training batch's size), with the one-batch ratio |m| / |g_B| beside it, and the
    ratio over only the points whose one-batch gradient norm is below ``clip`` (``unclipped``: where
    clipping at that norm cannot have shrunk the gradients the momentum averages, NaN if none)."""
    from analysis.training.noise import momentum_noise_ratio

    keep = _after(track, skip)
    col = {k: np.asarray(track[k], dtype=float)[keep] for k in ("momentum_norm", "grad_norm", "grad_sq_unbiased",
                                                               "noise_trace")}
    out = momentum_noise_ratio(col["momentum_norm"] ** 2, col["grad_sq_unbiased"], col["noise_trace"], beta1)
    out["one_batch"] = float(np.sqrt((col["momentum_norm"] ** 2).sum() / (col["grad_norm"] ** 2).sum()))
    calm = col["grad_norm"] < clip
    out["unclipped"] = (momentum_noise_ratio(col["momentum_norm"][calm] ** 2, col["grad_sq_unbiased"][calm],
                                             col["noise_trace"][calm], beta1)["ratio"] if calm.any() else float("nan"))
    out["n_unclipped"] = int(calm.sum())
    return out


def denominator_trajectory(result: TrainResult, *, k: int = 16, seed: int = 0, skip: float = 0.1) -> list[dict]:
    """:func:`analysis.training.noise.denominator_check` at each checkpoint of an Adam(W) run after the
    first ``skip`` share of training (the moments need a few windows of beta2 to settle), from ``k``
    minibatch gradients of the run's batch size at the checkpoint's weights (drawn from the stream
    ``1000 * seed + i`` at the i-th checkpoint, so that no two runs or checkpoints share batches).
    The checkpoint's m and v are bias-corrected for its step, as the update uses them."""
    from analysis.training.noise import denominator_check, minibatch_gradients
    from smoothness.checkpoints import OPTIMIZER, momentum_by_name

    config = TrainConfig.from_dict(result.config)
    if config.optimizer not in ("adamw", "adam"):
        raise ValueError(f"denominator_trajectory: needs an Adam or AdamW run (its second moment), got {config.optimizer!r}")
    data = corpus.load()
    out = []
    for i, (path, checkpoint, model) in enumerate(_checkpointed_models(result, config, data, "denominator_trajectory")):
        if checkpoint.step is None or checkpoint.step < skip * config.steps or checkpoint.step == 0:
            continue
        optimizer_state = torch.load(path, map_location="cpu", weights_only=True)[OPTIMIZER]
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        moments = [momentum_by_name(optimizer_state, model, path, keys=(key,)) for key in ("exp_avg", "exp_avg_sq")]
        flat = [np.concatenate([m[n].reshape(-1).double().numpy() for n in names]) for m in moments]
        grads = minibatch_gradients(model, data.train, batch_size=config.batch_size, block=config.block, k=k,
                                    seed=1000 * seed + i)
        # the moments as the update uses them: bias-corrected for the steps taken (AdamS's V divides m
        # by the same 1 - beta1^t)
        (b1, b2), t = config.betas, checkpoint.step
        m, v = flat[0] / (1 - b1**t), flat[1] / (1 - b2**t)
        out.append({"step": t, **denominator_check(m, v, grads, config.betas)})
    if not out:
        raise ValueError(f"denominator_trajectory: no checkpoint after the first {skip:.0%} of training")
    return out


#: the real E[V]/E[S] agrees with the stationary closed form if measured / predicted lies within
#: this factor of 1
DENOMINATOR_FACTOR = 1.25


def denominator_verdict(per_seed: Sequence[Sequence[dict]], factor: float = DENOMINATOR_FACTOR) -> dict:
    """Per seed, the mean over checkpoints of log(measured / predicted) whole-model E[V]/E[S]
    (:func:`denominator_trajectory`); over seeds, the Student-t 95% interval of its mean against
    [-log ``factor``, log ``factor``] (:func:`analysis.report.claims.equivalence_verdict`).

    >>> ok = [[{"measured": 0.5, "predicted": 0.52}], [{"measured": 0.49, "predicted": 0.5}], [{"measured": 0.51, "predicted": 0.5}]]
    >>> denominator_verdict(ok)["verdict"]
    'holds at our scale'
    >>> denominator_verdict([[{"measured": 0.2, "predicted": 0.5}]] * 2 + [[{"measured": 0.22, "predicted": 0.5}]])["verdict"]
    'does not hold'
    """
    logs = [float(np.mean([np.log(c["measured"] / c["predicted"]) for c in run])) for run in per_seed]
    if len(logs) < 2 or not np.all(np.isfinite(logs)):
        raise ValueError("denominator_verdict: at least two seeds with finite ratios")
    s = summary(logs)
    return {"per_seed": [float(np.exp(v)) for v in logs], "mean_ratio": float(np.exp(s["mean"])),
            "ci_ratio": [float(np.exp(v)) for v in s["ci"]], "factor": factor,
            "verdict": equivalence_verdict(s["ci"], math.log(factor))}
