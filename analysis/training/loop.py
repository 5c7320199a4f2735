"""The training loop: :func:`train` one configuration (or read it from the cache), :func:`run_many` in parallel.

A run whose loss becomes non-finite stops there and is recorded as ``diverged`` (with the step),
which is how the beta-sensitivity experiment finds instability. :func:`run_many` trains several
configurations in parallel processes (one torch thread each), or hands them to an executor: any
object with ``concurrent.futures.Executor``'s ``submit`` (a ``ProcessPoolExecutor``, or
``submitit.AutoExecutor`` to send the runs to Slurm), whose jobs write into the same cache
directory. ``ADAMS_RECOMPUTE=1`` (``python -m analysis.figures --recompute``) trains again.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

import adams
from analysis.training import corpus as corpus_mod
from analysis.training.cache import DamagedRun, cached_run, publish, read_verified, staging_dir, write_run
from analysis.training.config import EVAL_KEYS, HISTORY_KEYS, TrainConfig, TrainResult, config_record, default_cache_dir
from analysis.training.recipe import (build, check_block_fits, evaluate, lm_loss, momentum_norm, sample_batch, to_device,
                                      train_step, training_device, validation_batches)
from smoothness.tracker import StepSmoothnessTracker

#: the seed of the fixed training batch a tracked run measures its step finite difference on, unless
#: its configuration names another (``TrainConfig.track_seed``)
TRACK_BATCH_SEED = 4242


# ---------------------------------------------------------------------------------------------
# one run


def _run(config: TrainConfig, data: corpus_mod.Corpus, write_dir: Path, run_dir: Path,
         progress: bool | None) -> TrainResult:
    """Train ``config``; checkpoints are written to ``write_dir`` and recorded under ``run_dir``,
    where they will be once the run is complete."""
    model, optimizer = build(config, data.vocab_size)
    rng = np.random.default_rng(config.batch_seed)
    val = [to_device(b, config.device) for b in validation_batches(config, data.val)]
    params = [p for p in model.parameters() if p.requires_grad]
    history = {k: [] for k in HISTORY_KEYS}
    evals = {k: [] for k in EVAL_KEYS}
    checkpoints, diverged_at = [], None
    tokens, train_seconds = 0, 0.0
    tracker = None
    if config.track_every:  # a fixed training batch of its own seed: the data order is not touched
        fixed = to_device(sample_batch(data.train, np.random.default_rng(config.track_seed), config.batch_size,
                                       config.block), config.device)
        tracker = StepSmoothnessTracker(lambda batch: lm_loss(model, *batch), fixed, config.track_every,
                                        momentum_norm=lambda: momentum_norm(optimizer), split=config.track_split)

    def save(step: int) -> None:
        name = f"step_{step:06d}.pt"
        torch.save(adams.checkpoints.training_checkpoint(model, optimizer, step), write_dir / name)
        checkpoints.append(str(run_dir / name))

    start_all = time.perf_counter()
    bar = tqdm(range(config.steps + 1), disable=None if progress is None else not progress,
               desc=f"{config.optimizer} seed {config.seed}", unit="step", leave=False)
    for step in bar:
        if step % config.eval_every == 0 or step == config.steps:
            evals["step"].append(step)
            evals["val_loss"].append(evaluate(model, val))
        if config.save_every and (step % config.save_every == 0 or step == config.steps):
            save(step)
        if step == config.steps:
            break
        x, y = to_device(sample_batch(data.train, rng, config.batch_size, config.block), config.device)
        log = step % config.log_every == 0 or step == config.steps - 1
        tracked = tracker is not None and tracker.due(step)
        if tracked:
            tracker.before(params)
        t0 = time.perf_counter()
        loss, grad_norm, before = train_step(model, optimizer, params, config, step, x, y,
                                             before_update=(lambda: [p.detach().clone() for p in params]) if log else None)
        dt = time.perf_counter() - t0
        train_seconds += dt
        tokens += x.numel()
        if not math.isfinite(loss.item()) or not math.isfinite(grad_norm):
            diverged_at = step
            break
        if tracked:
            tracker.after(params, step)
        if log:
            update = math.sqrt(sum(float((p.detach() - b).double().pow(2).sum()) for p, b in zip(params, before)))
            for k, v in (("step", step), ("lr", config.lr_at(step)), ("train_loss", loss.item()),
                         ("grad_norm", grad_norm), ("momentum_norm", momentum_norm(optimizer)),
                         ("update_norm", update), ("tokens_per_s", x.numel() / dt)):
                history[k].append(v)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    diverged = diverged_at is not None or not all(math.isfinite(v) for v in evals["val_loss"])
    return TrainResult(
        config=config_record(config), history=history, evals=evals,
        final_val_loss=evals["val_loss"][-1] if not diverged else float("nan"), diverged=diverged,
        diverged_at=diverged_at, state_bytes=adams.state_bytes(optimizer), param_bytes=adams.param_bytes(params),
        tokens_per_s=tokens / train_seconds if train_seconds else float("nan"),
        seconds=time.perf_counter() - start_all, checkpoints=checkpoints,
        n_params=sum(p.numel() for p in params), track=tracker.records if tracker is not None else {})


def _check_device(config: TrainConfig) -> None:
    """Refuse a device a run cannot train on: ``meta`` (shapes only) or CUDA on a machine without it."""
    training_device(config.device, "train: TrainConfig.device")


def _check_train_arguments(config: Any, cache_dir: Any, progress: Any, recompute: Any) -> Path:
    """The cache directory :func:`train` uses, after checking its arguments."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: config must be a TrainConfig, got {type(config).__name__}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"train: cache_dir must be a path or None, got {cache_dir!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"train: progress must be True, False or None, got {progress!r}")
    if not isinstance(recompute, bool):
        raise TypeError(f"train: recompute must be True or False, got {recompute!r}")
    _check_device(config)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cache.exists() and not cache.is_dir():
        raise ValueError(f"train: cache_dir {cache} exists and is not a directory")
    return cache


def train(config: TrainConfig, *, cache_dir: str | os.PathLike | None = None, progress: bool | None = None,
          recompute: bool = False) -> TrainResult:
    """Train one configuration, or read its verified cached result (see the module docstring).

    A damaged cached run is trained again with a :class:`CachedRunWarning`. Nothing is written
    before the arguments and the configuration are checked, and a run that fails leaves nothing
    behind in ``cache_dir``.
    """
    cache = _check_train_arguments(config, cache_dir, progress, recompute)
    run_dir = cache / config.key()
    if not recompute:
        cached = cached_run(config, run_dir)
        if cached is not None:
            return cached
    data = corpus_mod.load()
    check_block_fits(config, data)
    with staging_dir(cache, run_dir.name) as staging:
        result = _run(config, data, staging, run_dir, progress)
        write_run(staging, result)
        publish(staging, run_dir)
    return result


# ---------------------------------------------------------------------------------------------
# several runs


def _train_in_subprocess(config: TrainConfig, cache_dir: str | os.PathLike | None, recompute: bool) -> TrainResult:
    """Train in a fresh interpreter with one torch thread; the cache carries the result back.

    A fresh ``python -c`` rather than multiprocessing: spawn would re-run the caller's main script (a
    notebook), and fork is unsafe once torch's thread pool exists.
    """
    _check_device(config)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    run_dir = cache / config.key()
    cached = None if recompute else cached_run(config, run_dir)
    if cached is not None:
        return cached
    # this process decided that the run is to be trained: the worker trains without looking again
    payload = json.dumps({"config": dataclasses.asdict(config), "cache_dir": str(cache), "recompute": True})
    code = "import sys; from analysis.training.loop import _worker_main; _worker_main(sys.stdin.read())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], input=payload, text=True, capture_output=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"training {config} failed:\n{done.stderr[-3000:]}")
    try:
        return read_verified(config, run_dir)
    except DamagedRun as err:
        raise RuntimeError(f"training {config} in a worker process left no valid run in {run_dir}: {err}") from None


def _worker_main(payload: str) -> None:
    spec = json.loads(payload)
    torch.set_num_threads(1)
    train(TrainConfig.from_dict(spec["config"]), cache_dir=spec["cache_dir"], progress=False,
          recompute=spec["recompute"])


def train_job(config: dict, cache_dir: str, recompute: bool = False) -> str:
    """One run as an executor's job: train ``config`` (a :class:`TrainConfig` as a dict) with one
    torch thread into ``cache_dir``, which the submitting process reads; returns the run's key.

    A plain module-level function of plain arguments, so that a process pool or a Slurm job
    (submitit) can pickle it and run it in another interpreter.
    """
    run = TrainConfig.from_dict(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(run, cache_dir=cache_dir, progress=False, recompute=recompute)
    finally:
        torch.set_num_threads(threads)  # an executor may run the job in the caller's own process
    return run.key()


def _check_run_many_arguments(configs: list, workers: Any, executor: Any) -> None:
    for i, c in enumerate(configs):
        if not isinstance(c, TrainConfig):
            raise TypeError(f"run_many: configs[{i}] must be a TrainConfig, got {type(c).__name__}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"run_many: workers must be None or an int >= 1, got {workers!r}")
    if executor is not None:
        if workers is not None:
            raise ValueError("run_many: give workers (local processes) or executor, not both")
        if not callable(getattr(executor, "submit", None)):
            raise TypeError(f"run_many: executor must have a submit(fn, *args) method like "
                            f"concurrent.futures.Executor or submitit's executors, got {executor!r}")


def _run_on_executor(configs: list[TrainConfig], executor: Any, cache: Path, progress: bool | None,
                     recompute: bool) -> list[TrainResult]:
    """Submit every configuration that the cache does not hold (each key once) and read the results
    from the cache when their jobs end; a failed job raises with its configuration named."""
    results: list[TrainResult | None] = [None] * len(configs)
    jobs: dict[str, Any] = {}
    for i, config in enumerate(configs):
        key = config.key()
        cached = None if recompute else cached_run(config, cache / key)
        if cached is not None:
            results[i] = cached
        elif key not in jobs:
            jobs[key] = executor.submit(train_job, dataclasses.asdict(config), str(cache), recompute)
    for key, job in tqdm(jobs.items(), disable=None if progress is None else not progress, desc="training runs",
                         unit="run"):
        try:
            job.result()
        except Exception as err:
            config = next(c for c in configs if c.key() == key)
            raise RuntimeError(f"run_many: the job training {config} failed: {type(err).__name__}: {err}") from err
    for i, config in enumerate(configs):
        if results[i] is None:
            try:
                results[i] = read_verified(config, cache / config.key())
            except DamagedRun as err:
                raise RuntimeError(f"run_many: the job for {config} ended but left no valid run in "
                                   f"{cache / config.key()} (is the cache on a file system the jobs share?): "
                                   f"{err}") from None
    return results  # type: ignore[return-value]


def run_many(configs: Sequence[TrainConfig], *, workers: int | None = None, executor: Any = None,
             cache_dir: str | os.PathLike | None = None, progress: bool | None = None,
             recompute: bool = False) -> list[TrainResult]:
    """Train several configurations, ``workers`` at a time (default: the number of cores), each in its
    own process with one torch thread (``workers=1``: one after another in this process, also with
    one thread); results in input order. Cached results are read, not retrained. Every
    configuration and argument is checked before any run starts.

    With ``executor`` (instead of ``workers``) each run that is not cached becomes one job,
    ``executor.submit(train_job, ...)``: submitit's ``AutoExecutor`` / ``LocalExecutor`` (Slurm, or
    fresh local processes), or a ``concurrent.futures.ProcessPoolExecutor``. A process pool forks by
    default on Linux, which is unsafe once this process has run torch code; give it
    ``mp_context=multiprocessing.get_context("forkserver")`` and call it from a script guarded by
    ``if __name__ == "__main__":``. The jobs write into ``cache_dir``, which must be on a file system
    they share with this process; submitting the same sweep again submits only the runs that are not
    finished.
    """
    configs = list(configs)
    _check_run_many_arguments(configs, workers, executor)
    for c in configs[:1]:  # the shared arguments, once
        _check_train_arguments(c, cache_dir, progress, recompute)
    if executor is not None:
        cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).resolve()  # jobs may start elsewhere
        return _run_on_executor(configs, executor, cache, progress, recompute)
    workers = workers or max(1, min(len(configs), os.cpu_count() or 1))
    if workers == 1:  # in this process (no start-up cost), with one thread like the workers
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [train(c, cache_dir=cache_dir, progress=False, recompute=recompute)
                    for c in tqdm(configs, disable=None if progress is None else not progress, desc="training runs",
                                  unit="run")]
        finally:
            torch.set_num_threads(threads)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_train_in_subprocess, c, cache_dir, recompute) for c in configs]
        for _ in tqdm(as_completed(futures), total=len(futures), disable=None if progress is None else not progress,
                      desc="training runs", unit="run"):
            pass
        return [f.result() for f in futures]
