"""AdamS under ``torch.distributed``: sharded checkpoints and per-process memory.

:class:`adams.AdamS` needs no wrapper under ``DistributedDataParallel`` or FSDP2
(``torch.distributed.fsdp.fully_shard``): its state is per coordinate, so each process keeps and
updates the momentum of the shard it holds. This module adds what a training loop needs around it:

* :func:`save_checkpoint` / :func:`load_checkpoint`: model and optimizer through
  ``torch.distributed.checkpoint`` (DCP), one file per process, loadable on any number of processes
  (a checkpoint saved by 2 processes loads into 1, or into 4, and back). Saving is atomic: the
  checkpoint appears under its name only once every process has written its part, with the
  SHA-256 of each file. Loading never runs pickled code (DCP's ``.metadata`` through a restricted
  unpickler, non-tensor entries with ``torch.load(..., weights_only=True)``) and is all or nothing:
  a damaged, foreign or mismatched checkpoint raises :class:`CheckpointError` with the model and
  optimizer unchanged.
* :func:`read_checkpoint`: the whole checkpoint as plain tensors in one process, with no model or
  optimizer built (what the smoothness probes read), through the same checks;
* :func:`state_bytes_per_rank`: the optimizer-state bytes each process holds.

All of it works in one process without ``torch.distributed`` initialized, so the same code saves
on a cluster and resumes on a laptop.

>>> import tempfile, torch, adams
>>> from adams.distributed import save_checkpoint, load_checkpoint
>>> model = torch.nn.Linear(3, 2)
>>> opt = adams.AdamS(model.parameters(), lr=0.1)
>>> model(torch.ones(4, 3)).sum().backward(); opt.step()
>>> path = tempfile.mkdtemp() + "/step-1"
>>> save_checkpoint(path, model, opt, extra={"step": 1}).name
'step-1'
>>> twin = torch.nn.Linear(3, 2)
>>> twin_opt = adams.AdamS(twin.parameters(), lr=0.1)
>>> load_checkpoint(path, twin, twin_opt)
{'step': 1}
>>> torch.equal(twin.weight, model.weight), torch.equal(twin_opt.state[twin.weight]["exp_avg"],
...                                                     opt.state[model.weight]["exp_avg"])
(True, True)
"""
from __future__ import annotations

import math
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping

import torch
import torch.distributed as dist

from adams._checkpoint_files import (CHECKSUMS, CheckpointError, read_metadata, safe_load_planner, safe_reader,
                                     verify_checksums, write_checksums)
from adams.memory import state_bytes
from adams.optimizer import AdamS

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "read_metadata", "state_bytes_per_rank",
           "CheckpointError", "CHECKSUMS"]

_EXTRA_TYPES = (bool, int, float)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _barrier() -> None:
    if _distributed():
        dist.barrier()


@contextmanager
def _quiet_single_process():
    """DCP warns that it assumes one process when torch.distributed is not initialized: so do we."""
    with warnings.catch_warnings():
        if not _distributed():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _fill_state(optimizer: torch.optim.Optimizer) -> None:
    """Give every AdamS parameter its state (``step`` 0, zero momentum) if it has none yet.

    DCP needs a state entry for every parameter, and makes missing ones by taking a step with zero
    gradients and learning rate 0; for AdamS that records step 1 instead of 0, and with ``eps=0`` it
    writes 0/0 = NaN into the parameters. This is the state AdamS would create at its first step.
    """
    if not isinstance(optimizer, AdamS):
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    _fill_state(optimizer)
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optim": optim_state}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    *, extra: Mapping[str, bool | int | float | torch.Tensor] | None = None,
                    overwrite: bool = False) -> Path:
    """Save ``model`` and ``optimizer`` (sharded or not) to the directory ``path``; every process calls it.

    ``extra`` holds small named values to restore with them (the step, a data-loader position):
    numbers or tensors. The files are written to ``<path>.partial`` and renamed to ``path`` once
    every process has finished, so an interrupted save leaves no checkpoint that looks complete.
    An existing ``path`` raises ``FileExistsError`` unless ``overwrite=True``. All processes must
    see the same file system.
    """
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    extra = dict(extra or {})
    for key, value in extra.items():
        if not isinstance(value, (*_EXTRA_TYPES, torch.Tensor)):
            raise TypeError(f"extra[{key!r}] is a {type(value).__name__}; only numbers and tensors are saved")
    if path.exists() and not overwrite:
        raise FileExistsError(f"checkpoint {path} exists; pass overwrite=True to replace it")
    partial = path.with_name(path.name + ".partial")
    if _rank() == 0 and partial.exists():
        shutil.rmtree(partial)  # left by an interrupted save
    _barrier()
    state = _state(model, optimizer)
    state["extra"] = {k: torch.as_tensor(v) for k, v in extra.items()}
    with _quiet_single_process():
        dcp.save(state, checkpoint_id=str(partial))
    _barrier()
    if _rank() == 0:
        write_checksums(partial)
        if path.exists():
            shutil.rmtree(path)
        os.replace(partial, path)
    _barrier()
    return path


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, *, verify: bool = True) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` and ``optimizer``, in place.

    Every process calls it, with the model already wrapped (or not) as it will train: the saved
    shards are redistributed to the current layout and number of processes. Returns ``extra`` as
    saved (tensors of one element as Python numbers).

    All or nothing. Before anything is read into place: the files are compared with the SHA-256
    digests recorded when they were saved, and ``.metadata`` is unpickled by a restricted
    unpickler that admits only DCP's metadata classes (:func:`read_metadata`), so a planted object
    runs no code. The entries are then read into a staging copy of the model and optimizer state
    (non-tensor entries with ``torch.load(..., weights_only=True)``), the optimizer's
    hyperparameters are checked, and only then copied into ``model`` and ``optimizer``. Any problem
    raises :class:`CheckpointError` with the model and optimizer as they were. Staging holds a
    second copy of this process's shard of the state while loading.

    A checkpoint without recorded digests (``checksums.json``) is refused unless ``verify=False``.
    The ``extra`` values are small by design: an entry of more than :data:`MAX_EXTRA_ELEMENTS`
    elements is refused before anything is allocated for it.
    """
    from torch.utils._pytree import tree_map

    path = Path(path)
    saved = read_metadata(path).state_dict_metadata
    verify_checksums(path, required=verify)
    extra_keys = _extra_keys(path, saved)
    if optimizer is not None and not any(k.startswith("optim.") for k in saved):
        raise CheckpointError(f"{path} holds no optimizer state; pass optimizer=None to load the model only")
    # parameters without state now: loading (DCP for any optimizer, _fill_state for AdamS) gives
    # them some, which a failed load must take back
    groups = optimizer.param_groups if optimizer is not None else []
    stateless = [p for g in groups for p in g["params"] if not optimizer.state.get(p)]
    try:
        live = _state(model, optimizer)
        unexpected = sorted({k[len("model."):] for k in saved if k.startswith("model.")} - set(live["model"]))
        if unexpected:
            raise CheckpointError(f"{path} holds parameters or buffers this model does not have: "
                                  f"{', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        staged = tree_map(lambda x: x.detach().clone() if isinstance(x, torch.Tensor) else x, live)
        staged["extra"] = {k: torch.empty(saved[f"extra.{k}"].size, dtype=saved[f"extra.{k}"].properties.dtype)
                           for k in extra_keys}
        _dcp_load(staged, path, "cannot load {path} into this model and optimizer", "; nothing was loaded")
        if optimizer is not None:
            _check_staged_optimizer(path, staged["optim"], optimizer)
    except BaseException:
        for p in stateless:  # the optimizer as it was: no state made up for the load
            optimizer.state.pop(p, None)
        raise
    _apply(model, optimizer, staged)
    return {k: (v.item() if v.numel() == 1 else v) for k, v in staged["extra"].items()}


def _dcp_load(state: dict, path: Path, what: str, suffix: str = "") -> None:
    """``dcp.load`` into ``state`` through the safe reader and planner; every failure becomes one
    :class:`CheckpointError` (our own checks' message kept), ``what`` formatted with ``path``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        with _quiet_single_process():
            dcp.load(state, storage_reader=safe_reader(path), planner=safe_load_planner())
    except CheckpointException as err:  # a BaseException, holding each failed process's exception
        causes = [exc for exc, _ in err.failures.values()]
        ours = next((c for c in causes if isinstance(c, CheckpointError)), None)
        if ours is not None:
            raise CheckpointError(f"{ours}{suffix}") from None
        raise CheckpointError(f"{what.format(path=path)}: {type(causes[0]).__name__}: {causes[0]}{suffix}") from None
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{what.format(path=path)}: {type(err).__name__}: {err}{suffix}") from err


def read_checkpoint(path: str | os.PathLike, *, verify: bool = True
                    ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]], dict]:
    """A checkpoint written by :func:`save_checkpoint`, whole, as plain CPU tensors: ``(model,
    optimizer_state, extra)``.

    ``model`` maps parameter and buffer names to full (unsharded) tensors, ``optimizer_state`` maps
    parameter names to their per-parameter buffers (``{"exp_avg": ..., "step": ...}``), ``extra``
    holds the saved extras as in :func:`load_checkpoint`. No model or optimizer is needed: this is
    how a checkpoint saved by any number of processes is read by one that only wants the numbers.
    The same checks as :func:`load_checkpoint` run first (digests unless ``verify=False``, metadata
    through the restricted unpickler); hyperparameters (non-tensor entries) are not read.
    """
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    path = Path(path)
    saved = read_metadata(path).state_dict_metadata
    verify_checksums(path, required=verify)
    _extra_keys(path, saved)
    flat = {key: torch.empty(entry.size, dtype=entry.properties.dtype) for key, entry in saved.items()
            if isinstance(entry, TensorStorageMetadata) and key.startswith(("model.", "optim.state.", "extra."))}
    if not any(k.startswith("model.") for k in flat):
        raise CheckpointError(f"{path} holds no model entries: not a checkpoint written by save_checkpoint")
    _dcp_load(flat, path, "cannot read {path}")
    model = {k[len("model."):]: v for k, v in flat.items() if k.startswith("model.")}
    optimizer_state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if key.startswith("optim.state."):
            name, buffer = key[len("optim.state."):].rsplit(".", 1)
            optimizer_state.setdefault(name, {})[buffer] = value
    extra = {k[len("extra."):]: (v.item() if v.numel() == 1 else v) for k, v in flat.items() if k.startswith("extra.")}
    return model, optimizer_state, extra


#: the most elements an ``extra`` entry may have (extras are numbers and small tensors)
MAX_EXTRA_ELEMENTS = 1 << 20


def _extra_keys(path: Path, saved: dict) -> list[str]:
    """The names of the ``extra`` entries, each checked to be a small tensor before it is allocated."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    keys = sorted(k.split(".", 1)[1] for k in saved if k.startswith("extra."))
    for key in keys:
        entry = saved[f"extra.{key}"]
        if not isinstance(entry, TensorStorageMetadata):
            raise CheckpointError(f"{path}: extra entry {key!r} is not a tensor; nothing was loaded")
        if math.prod(entry.size) > MAX_EXTRA_ELEMENTS:
            raise CheckpointError(f"{path}: extra entry {key!r} has shape {tuple(entry.size)}, more than the "
                                  f"{MAX_EXTRA_ELEMENTS} elements an extra value may have; nothing was loaded")
    return keys


def _check_staged_optimizer(path: Path, optim_state: dict, optimizer: torch.optim.Optimizer) -> None:
    """The loaded hyperparameters and step counters of an AdamS optimizer, checked before use."""
    if not isinstance(optimizer, AdamS):
        return
    from adams.functional import check_steps
    from adams._state import validate_group

    try:
        for index, (group, current) in enumerate(zip(optim_state["param_groups"], optimizer.param_groups)):
            try:
                validate_group({**{k: v for k, v in current.items() if k != "params"}, **group})
            except (TypeError, ValueError) as err:
                raise ValueError(f"parameter group {index}: {err}") from None
        check_steps([s["step"] for s in optim_state["state"].values()])
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} holds an optimizer state AdamS cannot use ({err}); nothing was loaded") from None


def _apply(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, staged: dict) -> None:
    """Copy a checked staging state into the model and optimizer."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_state_dict

    if optimizer is None:
        set_model_state_dict(model, staged["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=staged["model"], optim_state_dict=staged["optim"])


def state_bytes_per_rank(optimizer: torch.optim.Optimizer, group: dist.ProcessGroup | None = None) -> list[int]:
    """:func:`adams.state_bytes` of every process of ``group`` (all processes call it), by rank.

    Under FSDP2 each process counts the shards it holds. Without ``torch.distributed`` initialized,
    a list of one number.
    """
    mine = int(state_bytes(optimizer))
    if not _distributed():
        return [mine]
    gathered: list[int | None] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, mine, group=group)
    return [int(b) for b in gathered]
