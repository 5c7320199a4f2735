"""The training experiments of the notebooks, defined once: configurations, seeds and statistics.

Every notebook of the training track (``training_*.py``) takes its runs from here, so that two
notebooks asking for the same configuration share one cached run (:func:`analysis.training.train`
caches by configuration hash) and the numbers in ``paper_repro.md`` agree across notebooks.

Scale: a 0.11M-parameter GPT (2 layers, width 64, 2 heads, context 64) on character-level Shakespeare,
400 steps of 32 sequences (0.8M characters, about 0.2 epochs), about 15 s a run on one core: small
enough that every optimizer gets its own learning rate from a sweep over seeds. Quick mode
(``ADAMS_QUICK=1``): one layer of width 32, 40 steps of 8 sequences of 32 characters.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

import time

import torch

from analysis.training import corpus
from analysis.report.runs import STARTED_WALL
from analysis.report import quick_mode
from analysis.training import TrainConfig, TrainResult, build, default_cache_dir, lm_loss, run_many, sample_batch
from analysis.training.sweep import Sweep, lr_grid, replicate_seeds, sweep_lr
from analysis.report.claims import noninferiority_verdict

__all__ = ["base_config", "seeds", "cached_seconds", "ADAPTIVE", "COMPARED", "SGD_LRS", "BETA_PAIRS", "summary", "paired_gap",
           "runs", "interleaved_step_times", "ratio_ci", "loss_spike", "log_correlation", "ratio_summary",
           "SWEEP_CENTERS", "PARITY_MARGIN", "sweep_seeds", "lr_sweeps", "inherit_verdict"]

ADAPTIVE = ("adams", "adamw", "adam-mini", "adapm")
COMPARED = ("adams", "adamw", "sgdm", "adam-mini", "adapm")
#: SGD with momentum does not share the adaptive methods' learning rate; it gets the best of these
SGD_LRS = (0.03, 0.1, 0.3)
BETA_PAIRS = ((0.9, 0.95), (0.9, 0.99), (0.95, 0.95), (0.95, 0.98), (0.9, 0.999))
#: where each optimizer's learning-rate sweep is centred: a factor-2 grid of five rates around it,
#: extended by :func:`analysis.training.sweep.sweep_lr` until the best rate is bracketed
SWEEP_CENTERS = {"adams": 3e-3, "adamw": 3e-3, "adam-mini": 3e-3, "adapm": 3e-3, "sgdm": 0.1}
#: the loss difference (nats per character) below which two runs count as the same, fixed before any
#: sweep ran: about 1% of the final losses here
PARITY_MARGIN = 0.02


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


def interleaved_step_times(configs: dict[str, TrainConfig], rounds: int, warmup: int, seed: int = 0) -> dict[str, list]:
    """Wall time of full training steps (forward, backward, clipping, optimizer step), interleaved.

    Each name gets its own model and optimizer from its configuration; every round times one step of
    each in turn on the same batch, so that load on a shared machine hits all of them alike. The
    first ``warmup`` rounds are not recorded. Uses the caller's torch thread setting.
    """
    data = corpus.load()
    built = {name: build(c, data.vocab_size) for name, c in configs.items()}
    first = next(iter(configs.values()))
    rng = np.random.default_rng(seed)
    times: dict[str, list] = {name: [] for name in configs}
    for k in range(rounds + warmup):
        x, y = sample_batch(data.train, rng, first.batch_size, first.block)
        for name, (model, optimizer) in built.items():
            start = time.perf_counter()
            loss = lm_loss(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), configs[name].clip if configs[name].clip is not None else float("inf"))
            optimizer.step()
            if k >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


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
    out = {}
    for name in optimizers:
        base = base_config(quick, optimizer=name)
        out[name] = sweep_lr(base, lr_grid(SWEEP_CENTERS[name], below=span, above=span), sweep_seeds(quick),
                             lambda configs: runs(configs, **run_kwargs), max_extensions=3)
    return out


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
