"""Train the small GPT on the Shakespeare corpus with any registered optimizer, and record everything.

:func:`train` runs one configuration (:class:`TrainConfig`): the model of :mod:`analysis.gpt` on
character-level Shakespeare (:mod:`analysis.corpus`), with

* the nanoGPT recipe the paper's authors used: linear warmup then cosine decay to ``min_lr_ratio``
  of the peak, gradient clipping at ``clip`` (global norm; ``None`` for none), decoupled weight
  decay on tensors with two or more dimensions only (:func:`adams.make_optimizer`);
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

A :class:`TrainConfig` checks every field when it is made (type, range, and the optimizer's
keyword arguments against what the registry entry accepts), so a bad configuration fails before
anything is trained or written.

**The cache.** Results live in ``cache_dir/<hash of the configuration and the package version>/``:
``result.json``, the checkpoints, and ``manifest.json``, the SHA-256 of each of those files. A run
is trained in a hidden staging directory next to it and renamed into place once the manifest is
written, so an interrupted run leaves no directory that looks like a cached one. Before a cached
run is returned its files are checked against the manifest and ``result.json`` against the schema
of :class:`TrainResult` and the configuration asked for. **A damaged cached run (no manifest,
unreadable JSON, a missing file, a digest that differs) is trained again, with a**
:class:`CachedRunWarning` **that names the file and what was wrong**; a run cached before the
manifest existed is retrained this way too. ``ADAMS_RECOMPUTE=1``
(``python -m analysis.figures --recompute``) trains again. :func:`run_many` trains several
configurations in parallel processes (one torch thread each).

A run whose loss becomes non-finite stops there and is recorded as ``diverged`` (with the step),
which is how the beta-sensitivity experiment finds instability.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import numbers
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import adams
from analysis import corpus as corpus_mod
from analysis.gpt import GPT, GPTConfig
from analysis.results import atomic_write_text, cache_root, is_fresh

__all__ = ["TrainConfig", "TrainResult", "CachedRunWarning", "train", "run_many", "build", "init_model",
           "optimizer_for", "sample_batch", "lm_loss", "evaluate", "momentum_norm", "default_cache_dir"]

#: optimizer-state keys of a first moment, full-size or partial (AdaPM's row means), for momentum_norm
FIRST_MOMENT_KEYS = (*adams.checkpoints.MOMENTUM_KEYS, "m", "row_exp_avg")
VAL_SEQUENCES = 32  # per validation batch
RESULT_FILE = "result.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "adams-lab/train-run/1"
HISTORY_KEYS = ("step", "lr", "train_loss", "grad_norm", "momentum_norm", "update_norm", "tokens_per_s")
EVAL_KEYS = ("step", "val_loss")

# ---------------------------------------------------------------------------------------------
# the configuration and its checks

#: integer fields and their smallest allowed value
INT_FIELDS = {"steps": 1, "warmup": 0, "batch_size": 1, "block": 1, "layers": 1, "heads": 1, "width": 1,
              "log_every": 1, "eval_every": 1, "eval_batches": 1, "save_every": 0, "seed": 0}
MAX_SEED = 2**64 - 1  # the largest seed torch.manual_seed takes
#: the hyperparameters every registry entry takes; TrainConfig has a field for each
SHARED_HYPERPARAMETERS = ("lr", "betas", "eps", "weight_decay")


def _as_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as a plain int in [low, high] (bools refused), or an error naming the field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"TrainConfig.{name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"TrainConfig.{name} must be an int {allowed}, got {value}")
    return value


def _as_float(name: str, value: Any, allowed: str, ok) -> float:
    """``value`` as a finite plain float with ``ok(value)`` true, or an error saying ``allowed``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"TrainConfig.{name} must be a number {allowed}, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and ok(number)):
        raise ValueError(f"TrainConfig.{name} must be a finite number {allowed}, got {value!r}")
    return number


def _as_betas(value: Any) -> tuple[float, float]:
    """A pair (beta1, beta2), each in [0, 1)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise TypeError(f"TrainConfig.betas must be a pair (beta1, beta2) of numbers in [0, 1), got {value!r}")
    return tuple(_as_float(f"betas[{i}]", b, "in [0, 1)", lambda x: 0 <= x < 1) for i, b in enumerate(value))


def _as_kwarg_value(name: str, value: Any) -> Any:
    """A keyword argument's value that survives the JSON round trip of the cache and the workers:
    None, a bool, an int, a finite float, a string, or a list or tuple of those (kept as a tuple)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_kwarg_value(name, v) for v in value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    raise TypeError(f"TrainConfig.optimizer_kwargs[{name!r}] must be None, a bool, an int, a finite float, a "
                    f"string or a list of those, got {value!r} ({type(value).__name__})")


def _as_kwargs(value: Any) -> tuple[tuple[str, Any], ...]:
    """A dict, or (name, value) pairs, as pairs sorted by name (so that the order does not change the key)."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        pairs = [tuple(p) for p in value]
    else:
        raise TypeError(f"TrainConfig.optimizer_kwargs must be a dict of keyword arguments (or (name, value) "
                        f"pairs), got {value!r}")
    names = [k for k, _ in pairs]
    if not all(isinstance(k, str) for k in names):
        raise TypeError(f"TrainConfig.optimizer_kwargs: keyword names must be strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"TrainConfig.optimizer_kwargs names a keyword twice: {names!r}")
    for k in names:
        if k in SHARED_HYPERPARAMETERS:
            raise ValueError(f"TrainConfig.optimizer_kwargs must not set {k!r}: set TrainConfig.{k} instead")
    return tuple(sorted((k, _as_kwarg_value(k, v)) for k, v in pairs))


def _keyword_names(fn) -> set[str]:
    """Names ``fn`` (a function or a class) takes by keyword, after its first parameter (the parameters)."""
    parameters = list(inspect.signature(fn).parameters.values())[1:]
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _probe_model(width: int) -> torch.nn.Module:
    """A few tiny parameters named like the GPT's (a matrix and vectors), to build an optimizer over
    (made under a forked RNG: the global one is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        return torch.nn.ModuleDict({"wte": torch.nn.Embedding(2, width), "ln_f": torch.nn.LayerNorm(width)})


@functools.lru_cache(maxsize=None)
def _optimizer_keywords(name: str) -> frozenset[str]:
    """The extra keyword arguments the registry entry ``name`` accepts: its own keyword parameters
    and, when it passes ``**extra`` on, those of the optimizer class it builds (found by building
    one over :func:`_probe_model`). The shared hyperparameters are fields of :class:`TrainConfig`."""
    entry = adams.OPTIMIZERS[name]
    accepted = _keyword_names(entry)
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(entry).parameters.values()):
        extra = {"model_dim": 8, "n_heads": 1} if name == "adam-mini" else {}
        built = adams.make_optimizer(name, _probe_model(8).named_parameters(), **extra)
        accepted |= _keyword_names(type(built)) - _keyword_names(entry)
    return frozenset(accepted - set(SHARED_HYPERPARAMETERS))


def _check_optimizer_kwargs(config: "TrainConfig") -> None:
    """Every keyword is one the optimizer accepts, and the optimizer accepts the values: it is built
    once, with the configuration's hyperparameters, over :func:`_probe_model`."""
    if not config.optimizer_kwargs:
        return
    accepted = _optimizer_keywords(config.optimizer)
    for k, _ in config.optimizer_kwargs:
        if k not in accepted:
            raise ValueError(f"TrainConfig.optimizer_kwargs: optimizer {config.optimizer!r} takes no keyword {k!r}; "
                             f"it accepts {', '.join(sorted(accepted)) or 'none'}")
    try:
        optimizer_for(config, _probe_model(config.width))
    except (TypeError, ValueError, RuntimeError) as err:
        kind = TypeError if isinstance(err, TypeError) else ValueError
        raise kind(f"TrainConfig.optimizer_kwargs {dict(config.optimizer_kwargs)!r} are refused by optimizer "
                   f"{config.optimizer!r}: {err}") from err


def _clean_fields(config: "TrainConfig") -> dict[str, Any]:
    """Every field checked and converted to a plain Python value (the first bad one raises)."""
    if not isinstance(config.optimizer, str):
        raise TypeError(f"TrainConfig.optimizer must be a registered name (str), got {config.optimizer!r}")
    if config.optimizer not in adams.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; registered: {', '.join(adams.OPTIMIZERS)}")
    clean = {name: _as_int(name, getattr(config, name), low, MAX_SEED if name == "seed" else None)
             for name, low in INT_FIELDS.items()}
    clean["lr"] = _as_float("lr", config.lr, "> 0", lambda x: x > 0)
    clean["betas"] = _as_betas(config.betas)
    clean["eps"] = _as_float("eps", config.eps, ">= 0", lambda x: x >= 0)
    clean["weight_decay"] = _as_float("weight_decay", config.weight_decay, ">= 0", lambda x: x >= 0)
    clean["min_lr_ratio"] = _as_float("min_lr_ratio", config.min_lr_ratio, "in [0, 1]", lambda x: 0 <= x <= 1)
    if config.clip is not None:
        clean["clip"] = _as_float("clip", config.clip, "> 0 (None turns clipping off)", lambda x: x > 0)
    clean["optimizer_kwargs"] = _as_kwargs(config.optimizer_kwargs)
    return clean


MAX_VOCAB = 256  # characters: an upper bound on the corpus vocabulary, for the size check below
MAX_PARAMETERS = 10**9  # a model past this is a mistake on the CPU machines this trainer is for


def _check_consistency(config: "TrainConfig") -> None:
    """Fields that constrain each other."""
    if not config.warmup <= config.steps:
        raise ValueError(f"TrainConfig.warmup must lie in [0, steps] = [0, {config.steps}], got {config.warmup}")
    if config.width % config.heads:
        raise ValueError(f"width {config.width} is not divisible by heads {config.heads}")
    n = config.layers * 12 * config.width**2 + (MAX_VOCAB + config.block) * config.width
    if n > MAX_PARAMETERS:
        raise ValueError(f"TrainConfig describes a model of about {n:.3g} parameters (layers {config.layers}, width "
                         f"{config.width}, block {config.block}), past MAX_PARAMETERS = {MAX_PARAMETERS:.0e}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Checked when made: ints are ints (not bools), floats finite, ``lr > 0``,
    ``0 <= min_lr_ratio <= 1``, ``clip`` None or > 0, ``betas`` a pair in [0, 1), ``eps`` and
    ``weight_decay`` >= 0, ``seed`` a non-negative int, sizes and step counts >= 1 (``warmup`` in
    [0, steps], ``save_every`` >= 0 with 0 for no checkpoints), ``width`` divisible by ``heads``,
    ``optimizer`` registered in :data:`adams.OPTIMIZERS` and ``optimizer_kwargs`` (a dict, stored
    as sorted pairs) keywords that optimizer accepts, with values it accepts. That a window of
    ``block + 1`` characters fits in the corpus is checked by :func:`train`, which loads it."""
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
    clip: float | None = 1.0
    log_every: int = 10
    eval_every: int = 50
    eval_batches: int = 8
    save_every: int = 0
    seed: int = 0
    optimizer_kwargs: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self):
        for name, value in _clean_fields(self).items():
            object.__setattr__(self, name, value)
        _check_consistency(self)
        _check_optimizer_kwargs(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of ``dataclasses.asdict`` after a JSON round trip (lists back to tuples), checked
        like any other configuration; an unknown field is an error."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a TrainConfig is made from a dict, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {', '.join(sorted(map(str, unknown)))}")
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


# ---------------------------------------------------------------------------------------------
# the model, the optimizer, the data


def momentum_norm(optimizer: torch.optim.Optimizer) -> float:
    """Global norm of the optimizer's first-moment buffers (NaN if it keeps none yet)."""
    total, found = 0.0, False
    for state in optimizer.state.values():
        for key in FIRST_MOMENT_KEYS:
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


def optimizer_for(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``config``'s optimizer over ``model``'s parameters (create it after any wrapping, such as FSDP2's
    ``fully_shard``, that replaces the parameters)."""
    extra = dict(config.optimizer_kwargs)
    if config.optimizer == "adam-mini":
        extra.setdefault("model_dim", config.width)
        extra.setdefault("n_heads", config.heads)
    return adams.make_optimizer(config.optimizer, model.named_parameters(), lr=config.lr, betas=config.betas,
                                eps=config.eps, weight_decay=config.weight_decay, **extra)


def build(config: TrainConfig, vocab: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model (:func:`init_model`) and its optimizer (:func:`optimizer_for`)."""
    model = init_model(config, vocab)
    return model, optimizer_for(config, model)


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


def _check_block_fits(config: TrainConfig, corpus: corpus_mod.Corpus) -> None:
    """A window of ``block + 1`` characters must fit in the training and the validation text."""
    shortest = min(corpus.train.size, corpus.val.size)
    if config.block + 1 >= shortest:
        raise ValueError(f"TrainConfig.block must be < {shortest - 1} (the validation text has {corpus.val.size} "
                         f"characters), got {config.block}")


# ---------------------------------------------------------------------------------------------
# one run


def _run(config: TrainConfig, data: corpus_mod.Corpus, write_dir: Path, run_dir: Path,
         progress: bool | None) -> TrainResult:
    """Train ``config``; checkpoints are written to ``write_dir`` and recorded under ``run_dir``,
    where they will be once the run is complete."""
    model, optimizer = build(config, data.vocab_size)
    rng = np.random.default_rng(config.seed)
    val = validation_batches(config, data.val)
    params = [p for p in model.parameters() if p.requires_grad]
    history = {k: [] for k in HISTORY_KEYS}
    evals = {k: [] for k in EVAL_KEYS}
    checkpoints, diverged_at = [], None
    tokens, train_seconds = 0, 0.0
    max_norm = config.clip if config.clip is not None else float("inf")

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
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        x, y = sample_batch(data.train, rng, config.batch_size, config.block)
        t0 = time.perf_counter()
        loss = lm_loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
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
    return TrainResult(
        config=_config_record(config), history=history, evals=evals,
        final_val_loss=evals["val_loss"][-1] if not diverged else float("nan"), diverged=diverged,
        diverged_at=diverged_at, state_bytes=adams.state_bytes(optimizer), param_bytes=adams.param_bytes(params),
        tokens_per_s=tokens / train_seconds if train_seconds else float("nan"),
        seconds=time.perf_counter() - start_all, checkpoints=checkpoints,
        n_params=sum(p.numel() for p in params))


def _config_record(config: TrainConfig) -> dict:
    """The configuration as ``result.json`` stores it (after a JSON round trip)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


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
        cached = _cached_run(config, run_dir)
        if cached is not None:
            return cached
    data = corpus_mod.load()
    _check_block_fits(config, data)
    with _staging_dir(cache, run_dir.name) as staging:
        result = _run(config, data, staging, run_dir, progress)
        _write_run(staging, result)
        _publish(staging, run_dir)
    return result


# ---------------------------------------------------------------------------------------------
# the cache: staging, manifest, verification


class CachedRunWarning(RuntimeWarning):
    """A cached training run was damaged (or had no manifest) and is trained again."""


class _DamagedRun(Exception):
    """What is wrong with a cached run; :func:`_cached_run` turns it into a warning."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()  # a run's files are a few megabytes


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


@contextlib.contextmanager
def _staging_dir(cache: Path, key: str) -> Iterator[Path]:
    """A hidden directory in ``cache`` to write a run into; on any error it is removed, together
    with the directories made for it."""
    made = _missing_dirs(cache)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=cache))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for path in made:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if still empty
        raise


def _write_run(staging: Path, result: TrainResult) -> None:
    """``result.json``, then the manifest of digests of it and of every checkpoint, written last."""
    atomic_write_text(staging / RESULT_FILE, json.dumps(result.to_dict(), default=float) + "\n")
    names = [RESULT_FILE] + [Path(c).name for c in result.checkpoints]
    manifest = {"format": MANIFEST_FORMAT, "files": {name: _sha256(staging / name) for name in names}}
    atomic_write_text(staging / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")


def _publish(staging: Path, run_dir: Path, attempts: int = 5) -> None:
    """Rename the finished run to ``run_dir``, moving any previous run there aside and deleting it."""
    for _ in range(attempts):
        if run_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.old-", dir=run_dir.parent))
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                run_dir.rename(old / "run")
            shutil.rmtree(old, ignore_errors=True)
        try:
            staging.rename(run_dir)
            return
        except OSError:  # another process published the same run in between: try again
            if not run_dir.exists():
                raise
    raise OSError(f"could not move the finished run {staging} to {run_dir}")


def _cached_run(config: TrainConfig, run_dir: Path) -> TrainResult | None:
    """The verified cached result of ``config``, or None: not cached, asked to be recomputed
    (``ADAMS_RECOMPUTE``), or damaged (with a :class:`CachedRunWarning` that says why)."""
    if not run_dir.exists():
        return None
    written = run_dir / MANIFEST_FILE if (run_dir / MANIFEST_FILE).exists() else run_dir / RESULT_FILE
    if written.exists() and not is_fresh(written):
        return None
    try:
        return _read_verified(config, run_dir)
    except _DamagedRun as err:
        warnings.warn(f"cached training run {run_dir} is damaged: {err}; training it again", CachedRunWarning,
                      stacklevel=3)
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _DamagedRun(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise _DamagedRun(f"{path.name} is not readable JSON ({type(err).__name__}: {str(err)[:200]})") from None


def _read_manifest(run_dir: Path) -> dict[str, str]:
    """The manifest's file digests, checked for form: plain file names, hexadecimal SHA-256s."""
    if not (run_dir / MANIFEST_FILE).exists():
        raise _DamagedRun(f"{MANIFEST_FILE} is missing (the run is incomplete or was cached before digests "
                          f"were kept)")
    manifest = _read_json(run_dir / MANIFEST_FILE)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and isinstance(files, dict)
            and RESULT_FILE in files):
        raise _DamagedRun(f"{MANIFEST_FILE} is not a {MANIFEST_FORMAT} manifest listing {RESULT_FILE}")
    for name, digest in files.items():
        if Path(name).name != name or name in (".", "..", MANIFEST_FILE):
            raise _DamagedRun(f"{MANIFEST_FILE} lists {name!r}, which is not a file of the run")
        if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= set("0123456789abcdef")):
            raise _DamagedRun(f"{MANIFEST_FILE} gives {name} the digest {digest!r}, not a SHA-256")
    return files


def _check_digests(run_dir: Path, files: dict[str, str]) -> None:
    for name, expected in files.items():
        path = run_dir / name
        if not path.is_file():
            raise _DamagedRun(f"{name} is missing")
        actual = _sha256(path)
        if actual != expected:
            raise _DamagedRun(f"{name} has SHA-256 {actual}, the manifest recorded {expected}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_table(d: dict, name: str, keys: Sequence[str]) -> None:
    """A dict of equally long lists of numbers under exactly ``keys``; its ``step`` column ints."""
    if not (isinstance(d.get(name), dict) and set(d[name]) == set(keys)):
        raise _DamagedRun(f"{RESULT_FILE}: {name} must be a dict with the keys {', '.join(keys)}")
    columns = d[name]
    if not all(isinstance(v, list) and all(_is_number(x) for x in v) for v in columns.values()):
        raise _DamagedRun(f"{RESULT_FILE}: every {name} column must be a list of numbers")
    if len({len(v) for v in columns.values()}) != 1 or not all(isinstance(s, int) for s in columns["step"]):
        raise _DamagedRun(f"{RESULT_FILE}: {name} columns differ in length or its steps are not ints")


def _check_result(d: Any, config: TrainConfig, checkpoint_names: set[str]) -> None:
    """``result.json`` has the fields of :class:`TrainResult` with their types, records ``config``,
    and lists exactly the checkpoints of the manifest."""
    fields = {f.name for f in dataclasses.fields(TrainResult)}
    if not isinstance(d, dict) or set(d) != fields:
        got = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise _DamagedRun(f"{RESULT_FILE} must hold the fields {', '.join(sorted(fields))}, got {got}")
    if d["config"] != _config_record(config):
        raise _DamagedRun(f"{RESULT_FILE} records another configuration than the one asked for")
    _check_table(d, "history", HISTORY_KEYS)
    _check_table(d, "evals", EVAL_KEYS)
    for name in ("final_val_loss", "tokens_per_s", "seconds"):
        if not _is_number(d[name]):
            raise _DamagedRun(f"{RESULT_FILE}: {name} must be a number, got {d[name]!r}")
    for name in ("state_bytes", "param_bytes", "n_params"):
        if not (isinstance(d[name], int) and not isinstance(d[name], bool) and d[name] >= 0):
            raise _DamagedRun(f"{RESULT_FILE}: {name} must be a non-negative int, got {d[name]!r}")
    if not isinstance(d["diverged"], bool) or not (d["diverged_at"] is None or type(d["diverged_at"]) is int):
        raise _DamagedRun(f"{RESULT_FILE}: diverged must be a bool and diverged_at an int or null")
    checkpoints = d["checkpoints"]
    if not (isinstance(checkpoints, list) and all(isinstance(c, str) for c in checkpoints)):
        raise _DamagedRun(f"{RESULT_FILE}: checkpoints must be a list of paths")
    names = [Path(c).name for c in checkpoints]
    if len(set(names)) != len(names) or set(names) != checkpoint_names:
        raise _DamagedRun(f"{RESULT_FILE} lists the checkpoints {names}, the manifest {sorted(checkpoint_names)}")


def _read_verified(config: TrainConfig, run_dir: Path) -> TrainResult:
    """The cached result after every check; checkpoint paths point into ``run_dir``."""
    files = _read_manifest(run_dir)
    _check_digests(run_dir, files)
    d = _read_json(run_dir / RESULT_FILE)
    _check_result(d, config, set(files) - {RESULT_FILE})
    d["checkpoints"] = [str(run_dir / Path(c).name) for c in d["checkpoints"]]
    return TrainResult(**d)


# ---------------------------------------------------------------------------------------------
# several runs


def _train_in_subprocess(config: TrainConfig, cache_dir: str | os.PathLike | None, recompute: bool) -> TrainResult:
    """Train in a fresh interpreter with one torch thread; the cache carries the result back.

    A fresh ``python -c`` rather than multiprocessing: spawn would re-run the caller's main script (a
    notebook), and fork is unsafe once torch's thread pool exists.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    run_dir = cache / config.key()
    cached = None if recompute else _cached_run(config, run_dir)
    if cached is not None:
        return cached
    # this process decided that the run is to be trained: the worker trains without looking again
    payload = json.dumps({"config": dataclasses.asdict(config), "cache_dir": str(cache), "recompute": True})
    code = "import sys; from analysis.training import _worker_main; _worker_main(sys.stdin.read())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], input=payload, text=True, capture_output=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"training {config} failed:\n{done.stderr[-3000:]}")
    try:
        return _read_verified(config, run_dir)
    except _DamagedRun as err:
        raise RuntimeError(f"training {config} in a worker process left no valid run in {run_dir}: {err}") from None


def _worker_main(payload: str) -> None:
    spec = json.loads(payload)
    torch.set_num_threads(1)
    train(TrainConfig.from_dict(spec["config"]), cache_dir=spec["cache_dir"], progress=False,
          recompute=spec["recompute"])


def _check_run_many_arguments(configs: list, workers: Any) -> None:
    for i, c in enumerate(configs):
        if not isinstance(c, TrainConfig):
            raise TypeError(f"run_many: configs[{i}] must be a TrainConfig, got {type(c).__name__}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"run_many: workers must be None or an int >= 1, got {workers!r}")


def run_many(configs: Sequence[TrainConfig], *, workers: int | None = None, cache_dir: str | os.PathLike | None = None,
             progress: bool | None = None, recompute: bool = False) -> list[TrainResult]:
    """Train several configurations, ``workers`` at a time (default: the number of cores), each in its
    own process with one torch thread (``workers=1``: one after another in this process, also with
    one thread); results in input order. Cached results are read, not retrained. Every
    configuration and argument is checked before any run starts."""
    configs = list(configs)
    _check_run_many_arguments(configs, workers)
    for c in configs[:1]:  # the shared arguments, once
        _check_train_arguments(c, cache_dir, progress, recompute)
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
