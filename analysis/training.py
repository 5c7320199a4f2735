"""Train the small GPT on the Shakespeare corpus with any registered optimizer, and record everything.

:func:`train` runs one configuration (:class:`TrainConfig`): the model of :mod:`analysis.gpt` on
character-level Shakespeare (:mod:`analysis.corpus`), with

* the nanoGPT recipe the paper's authors used: linear warmup then cosine decay to ``min_lr_ratio``
  of the peak, gradient clipping at ``clip`` (global norm), decoupled weight decay on tensors with
  two or more dimensions only (:func:`adams.make_optimizer`);
* determinism for a seed: the initialization comes from a forked torch RNG seeded with ``seed``, the
  batches from ``np.random.default_rng(seed)``; the global RNGs are left as they were. Reruns on the
  same thread count give identical numbers;
* a record every ``log_every`` steps: training loss, gradient norm (before clipping), momentum norm
  (the optimizer's first-moment buffer, whatever it is called), update norm ``|w_{t+1} - w_t|``,
  learning rate, tokens per second; validation loss every ``eval_every`` steps on a fixed set of
  ``eval_batches`` validation batches of 32 windows (independent of the training batch size);
  optimizer-state bytes (:func:`adams.state_bytes`);
* checkpoints ``{"model", "optimizer", "step"}`` every ``save_every`` steps, readable by
  :func:`smoothness.load_checkpoint` and ``python -m smoothness probe``.

Results are cached in ``cache_dir/<hash of the configuration and the package version>/``
(``result.json`` plus the checkpoints), so a rerun of an experiment only trains what changed;
``ADAMS_RECOMPUTE=1`` (``python -m analysis.figures --recompute``) trains again.
:func:`run_many` trains several configurations in parallel processes (one torch thread each).
A run whose loss becomes non-finite stops there and is recorded as ``diverged`` (with the step),
which is how the beta-sensitivity experiment finds instability.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import adams
from analysis import corpus as corpus_mod
from analysis.gpt import GPT, GPTConfig
from analysis.results import atomic_write_text, cache_root, is_fresh

__all__ = ["TrainConfig", "TrainResult", "train", "run_many", "build", "init_model", "make_optimizer", "sample_batch",
           "lm_loss", "evaluate", "momentum_norm", "default_cache_dir"]

MOMENTUM_KEYS = ("exp_avg", "momentum_buffer", "m", "row_exp_avg")
VAL_SEQUENCES = 32  # per validation batch


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adams"
    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    steps: int = 400
    warmup: int = 40
    min_lr_ratio: float = 0.1
    batch_size: int = 32
    block: int = 64
    layers: int = 3
    heads: int = 3
    width: int = 96
    clip: float = 1.0
    log_every: int = 10
    eval_every: int = 50
    eval_batches: int = 8
    save_every: int = 0
    seed: int = 0
    optimizer_kwargs: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.optimizer not in adams.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; registered: {', '.join(adams.OPTIMIZERS)}")
        for name in ("steps", "batch_size", "block", "layers", "heads", "width", "log_every", "eval_every",
                     "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup <= self.steps:
            raise ValueError(f"warmup must lie in [0, steps], got {self.warmup}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of ``dataclasses.asdict`` after a JSON round trip (lists back to tuples)."""
        d = dict(d)
        d["betas"] = tuple(d["betas"])
        d["optimizer_kwargs"] = tuple(tuple(kv) for kv in d.get("optimizer_kwargs", ()))
        return cls(**d)

    def model_config(self, vocab: int) -> GPTConfig:
        return GPTConfig(vocab=vocab, block=self.block, layers=self.layers, heads=self.heads, width=self.width)

    def key(self) -> str:
        """Hash of the configuration and the package version: the cache directory's name."""
        payload = json.dumps({"config": dataclasses.asdict(self), "version": adams.__version__,
                              "corpus": corpus_mod.SHA256}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def lr_at(self, step: int) -> float:
        """Warmup (linear from lr/warmup) then cosine decay to min_lr_ratio * lr at the last step."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainResult:
    config: dict
    history: dict[str, list]  # per logged step
    evals: dict[str, list]  # per evaluation
    final_val_loss: float
    diverged: bool
    diverged_at: int | None
    state_bytes: int
    param_bytes: int
    tokens_per_s: float
    seconds: float
    checkpoints: list[str]
    n_params: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_cache_dir() -> Path:
    return cache_root()


def momentum_norm(optimizer: torch.optim.Optimizer) -> float:
    """Global norm of the optimizer's first-moment buffers (NaN if it keeps none yet)."""
    total, found = 0.0, False
    for state in optimizer.state.values():
        for key in MOMENTUM_KEYS:
            if key in state and torch.is_tensor(state[key]):
                total += float(state[key].double().pow(2).sum())
                found = True
                break
    return math.sqrt(total) if found else float("nan")


def sample_batch(data: np.ndarray, rng: np.random.Generator, batch_size: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``block + 1`` tokens: inputs and next-token targets."""
    starts = rng.integers(0, data.size - block - 1, size=batch_size)
    idx = starts[:, None] + np.arange(block + 1)[None, :]
    chunk = torch.from_numpy(data[idx].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-character cross entropy (nats)."""
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def init_model(config: TrainConfig, vocab: int) -> torch.nn.Module:
    """The model, initialized from ``config.seed`` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return GPT(config.model_config(vocab))


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``config``'s optimizer over ``model``'s parameters (create it after any wrapping, such as FSDP2's
    ``fully_shard``, that replaces the parameters)."""
    extra = dict(config.optimizer_kwargs)
    if config.optimizer == "adam-mini":
        extra.setdefault("model_dim", config.width)
        extra.setdefault("n_heads", config.heads)
    return adams.make_optimizer(config.optimizer, model.named_parameters(), lr=config.lr, betas=config.betas,
                                eps=config.eps, weight_decay=config.weight_decay, **extra)


def build(config: TrainConfig, vocab: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model (:func:`init_model`) and its optimizer (:func:`make_optimizer`)."""
    model = init_model(config, vocab)
    return model, make_optimizer(config, model)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    loss = sum(float(lm_loss(model, x, y)) for x, y in batches) / len(batches)
    model.train()
    return loss


def validation_batches(config: TrainConfig, data: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation set: ``eval_batches`` x 32 windows of ``block`` characters, the same for every
    optimizer, seed and training batch size."""
    rng = np.random.default_rng(12345)
    return [sample_batch(data, rng, VAL_SEQUENCES, config.block) for _ in range(config.eval_batches)]


def train(config: TrainConfig, *, cache_dir: str | os.PathLike | None = None, progress: bool | None = None,
          recompute: bool = False) -> TrainResult:
    """Train one configuration, or read its cached result (see the module docstring)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    run_dir = cache / config.key()
    result_path = run_dir / "result.json"
    if is_fresh(result_path) and not recompute:
        return TrainResult(**json.loads(result_path.read_text()))
    run_dir.mkdir(parents=True, exist_ok=True)

    data = corpus_mod.load()
    model, optimizer = build(config, data.vocab_size)
    rng = np.random.default_rng(config.seed)
    val = validation_batches(config, data.val)
    params = [p for p in model.parameters() if p.requires_grad]
    history = {k: [] for k in ("step", "lr", "train_loss", "grad_norm", "momentum_norm", "update_norm",
                               "tokens_per_s")}
    evals = {"step": [], "val_loss": []}
    checkpoints, diverged_at = [], None
    tokens, train_seconds = 0, 0.0

    def save(step: int) -> None:
        path = run_dir / f"step_{step:06d}.pt"
        tmp = path.with_suffix(".pt.tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
        tmp.replace(path)
        checkpoints.append(str(path))

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
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        x, y = sample_batch(data.train, rng, config.batch_size, config.block)
        t0 = time.perf_counter()
        loss = lm_loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.clip if config.clip else float("inf")))
        log = step % config.log_every == 0 or step == config.steps - 1
        before = [p.detach().clone() for p in params] if log else None
        optimizer.step()
        dt = time.perf_counter() - t0
        train_seconds += dt
        tokens += x.numel()
        if not math.isfinite(loss.item()) or not math.isfinite(grad_norm):
            diverged_at = step
            break
        if log:
            update = math.sqrt(sum(float((p.detach() - b).double().pow(2).sum()) for p, b in zip(params, before)))
            for k, v in (("step", step), ("lr", config.lr_at(step)), ("train_loss", loss.item()),
                         ("grad_norm", grad_norm), ("momentum_norm", momentum_norm(optimizer)),
                         ("update_norm", update), ("tokens_per_s", x.numel() / dt)):
                history[k].append(v)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    diverged = diverged_at is not None or not all(math.isfinite(v) for v in evals["val_loss"])
    result = TrainResult(
        config=json.loads(json.dumps(dataclasses.asdict(config))), history=history, evals=evals,
        final_val_loss=evals["val_loss"][-1] if not diverged else float("nan"), diverged=diverged,
        diverged_at=diverged_at, state_bytes=adams.state_bytes(optimizer), param_bytes=adams.param_bytes(params),
        tokens_per_s=tokens / train_seconds if train_seconds else float("nan"),
        seconds=time.perf_counter() - start_all, checkpoints=checkpoints,
        n_params=sum(p.numel() for p in params))
    atomic_write_text(result_path, json.dumps(result.to_dict(), default=float) + "\n")
    return result


def _train_in_subprocess(config: TrainConfig, cache_dir: str | os.PathLike | None, recompute: bool) -> TrainResult:
    """Train in a fresh interpreter with one torch thread; the cache carries the result back.

    A fresh ``python -c`` rather than multiprocessing: spawn would re-run the caller's main script (a
    notebook), and fork is unsafe once torch's thread pool exists.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if recompute or not is_fresh(cache / config.key() / "result.json"):
        payload = json.dumps({"config": dataclasses.asdict(config), "cache_dir": str(cache), "recompute": recompute})
        code = "import sys; from analysis.training import _worker_main; _worker_main(sys.stdin.read())"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", code], input=payload, text=True, capture_output=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"training {config} failed:\n{done.stderr[-3000:]}")
    return train(config, cache_dir=cache, progress=False)


def _worker_main(payload: str) -> None:
    spec = json.loads(payload)
    torch.set_num_threads(1)
    train(TrainConfig.from_dict(spec["config"]), cache_dir=spec["cache_dir"], progress=False,
          recompute=spec["recompute"])


def run_many(configs: Sequence[TrainConfig], *, workers: int | None = None, cache_dir: str | os.PathLike | None = None,
             progress: bool | None = None, recompute: bool = False) -> list[TrainResult]:
    """Train several configurations, ``workers`` at a time (default: the number of cores), each in its
    own process with one torch thread (``workers=1``: one after another in this process, also with
    one thread); results in input order. Cached results are read, not retrained."""
    configs = list(configs)
    workers = max(1, workers or min(len(configs), os.cpu_count() or 1))
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
