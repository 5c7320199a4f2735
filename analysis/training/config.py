"""One training run's configuration, checked field by field, and the record of its result.

A :class:`TrainConfig` checks every field when it is made (type, range, and the optimizer's
keyword arguments against what the registry entry accepts), so a bad configuration fails before
anything is trained or written. :meth:`TrainConfig.key` names the run's cache directory.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

import adams
from analysis.training import corpus as corpus_mod
from analysis.training.gpt import GPTConfig
from smoothness.tracker import NOISE_TRACK_KEYS, TRACK_KEYS
from analysis.report import cache_root


RESULT_FILE = "result.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "adams-lab/train-run/1"
HISTORY_KEYS = ("step", "lr", "train_loss", "grad_norm", "momentum_norm", "update_norm", "tokens_per_s")
EVAL_KEYS = ("step", "val_loss")

# ---------------------------------------------------------------------------------------------
# the configuration and its checks

#: integer fields and their smallest allowed value
INT_FIELDS = {"steps": 1, "warmup": 0, "batch_size": 1, "block": 1, "layers": 1, "heads": 1, "width": 1,
              "log_every": 1, "eval_every": 1, "eval_batches": 1, "save_every": 0, "seed": 0, "track_every": 0,
              "track_split": 1, "track_seed": 0}
#: fields added after runs were cached: left out of the stored record (and so of the cache key) while
#: they hold these defaults, so that every run cached before them keeps its key
LATE_FIELDS = {"track_every": 0, "track_split": 1, "track_seed": 4242, "device": "cpu"}
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
        extra = {"adam-mini": {"model_dim": 8, "n_heads": 1}, "adapm-mini": {"n_heads": 1}}.get(name, {})
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
    if config.data_seed is not None:
        clean["data_seed"] = _as_int("data_seed", config.data_seed, 0, MAX_SEED)
    clean["optimizer_kwargs"] = _as_kwargs(config.optimizer_kwargs)
    clean["device"] = _as_device(config.device)
    return clean


def _as_device(value: Any) -> str:
    """A device name as torch spells it (``"cuda"`` stays ``"cuda"``, ``"cuda:1"`` keeps its index)."""
    if not isinstance(value, (str, torch.device)):
        raise TypeError(f"TrainConfig.device must be a device name such as 'cpu' or 'cuda', got {value!r}")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(f"TrainConfig.device: {value!r} is not a device name (try 'cpu', 'cuda' or 'cuda:1')") from None
    return str(device)


MAX_VOCAB = 256  # characters: an upper bound on the corpus vocabulary, for the size check below
MAX_PARAMETERS = 10**9  # a model past this is a mistake on the CPU machines this trainer is for


def _check_consistency(config: "TrainConfig") -> None:
    """Fields that constrain each other."""
    if not config.warmup <= config.steps:
        raise ValueError(f"TrainConfig.warmup must lie in [0, steps] = [0, {config.steps}], got {config.warmup}")
    if config.track_split == 2 or config.batch_size % config.track_split:
        raise ValueError(f"TrainConfig.track_split must be 1 or an int >= 3 that divides batch_size "
                         f"({config.batch_size}), got {config.track_split}")
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
    ``weight_decay`` >= 0, ``seed`` (the initialization's, and the data order's unless
    ``data_seed`` is given) a non-negative int, sizes and step counts >= 1 (``warmup`` in
    [0, steps], ``save_every`` >= 0 with 0 for no checkpoints), ``width`` divisible by ``heads``,
    ``optimizer`` registered in :data:`adams.OPTIMIZERS` and ``optimizer_kwargs`` (a dict, stored
    as sorted pairs) keywords that optimizer accepts, with values it accepts. That a window of
    ``block + 1`` characters fits in the corpus is checked by :func:`train`, which loads it.
    ``track_every`` > 0 records the step finite difference on a fixed batch every that many steps
    (:class:`smoothness.tracker.StepSmoothnessTracker`, into :attr:`TrainResult.track`); with
    ``track_split`` = K >= 3 it also records the unbiased gradient norm and the noise trace of that
    batch from K equal parts of it (``batch_size`` must be divisible by K); ``track_seed`` draws the
    fixed batch (from the training text, apart from the run's own batches)."""
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
    data_seed: int | None = None
    optimizer_kwargs: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    track_every: int = 0
    track_split: int = 1
    track_seed: int = 4242
    device: str = "cpu"  # where the model, its batches and the optimizer state live: "cpu", "cuda", "cuda:1"

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

    @property
    def batch_seed(self) -> int:
        """The seed of the order of training batches: ``data_seed``, or ``seed`` when that is None
        (then one seed sets both the initialization and the data order)."""
        return self.seed if self.data_seed is None else self.data_seed

    def model_config(self, vocab: int) -> GPTConfig:
        return GPTConfig(vocab=vocab, block=self.block, layers=self.layers, heads=self.heads, width=self.width)

    def key(self) -> str:
        """Hash of the configuration, the package version and the optimizer's revision
        (``adams.registry.REVISIONS``): the cache directory's name."""
        record = {"config": config_record(self), "version": adams.__version__, "corpus": corpus_mod.SHA256}
        if self.optimizer in adams.registry.REVISIONS:  # an entry whose algorithm changed: not its old runs
            record["optimizer_revision"] = adams.registry.REVISIONS[self.optimizer]
        payload = json.dumps(record, sort_keys=True, default=str)
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
    track: dict[str, list] = field(default_factory=dict)  # per tracked step (TRACK_KEYS); empty if untracked

    def to_dict(self) -> dict:
        """The fields as ``result.json`` stores them; an empty ``track`` is left out (the record of
        a run cached before tracking existed)."""
        d = dataclasses.asdict(self)
        if not d["track"]:
            del d["track"]
        return d


def default_cache_dir() -> Path:
    return cache_root()


def config_record(config: TrainConfig) -> dict:
    """The configuration as ``result.json`` stores it (after a JSON round trip), without the
    :data:`LATE_FIELDS` that hold their defaults."""
    record = json.loads(json.dumps(dataclasses.asdict(config)))
    for name, default in LATE_FIELDS.items():
        if record[name] == default:
            del record[name]
    return record


def optimizer_for(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``config``'s optimizer over ``model``'s parameters (create it after any wrapping, such as FSDP2's
    ``fully_shard``, that replaces the parameters)."""
    extra = dict(config.optimizer_kwargs)
    if config.optimizer == "adam-mini":
        extra.setdefault("model_dim", config.width)
    if config.optimizer in ("adam-mini", "adapm-mini"):
        extra.setdefault("n_heads", config.heads)
    return adams.make_optimizer(config.optimizer, model.named_parameters(), lr=config.lr, betas=config.betas,
                                eps=config.eps, weight_decay=config.weight_decay, **extra)
