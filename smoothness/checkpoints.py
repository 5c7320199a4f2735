"""Load training checkpoints for the probes, safely, or say exactly what is wrong with them.

Formats:

* ``torch.save(model.state_dict(), path)``;
* ``torch.save({"model": state_dict, "optimizer": optimizer.state_dict(), "step": 123, ...}, path)``
  (``optimizer`` and ``step`` optional; other plain entries go to :attr:`Checkpoint.meta`);
* safetensors files (``.safetensors``): the model's tensors under their names, optionally the
  momentum of parameter ``name`` under ``"optimizer.exp_avg.<name>"``, and the training step as
  ``"step"`` in the header metadata;
* Hugging Face ``Trainer`` checkpoint folders (``checkpoint-N/``: ``model.safetensors`` or its
  shards, ``optimizer.pt``, ``trainer_state.json``; the ``hf`` extra is not needed to read them);
* sharded ``torch.distributed.checkpoint`` folders written by :func:`adams.distributed.save_checkpoint`
  (``examples/train_fsdp.py``), read whole in one process with its checks
  (:func:`adams.distributed.read_checkpoint`); the step is the saved extra ``step``. A folder
  without recorded digests is read with a warning that its files cannot be verified.

Torch files are read with ``torch.load(..., weights_only=True)``: pickled code is refused, never run.
Keys may carry a leading ``module.`` (DistributedDataParallel) or ``_orig_mod.`` (``torch.compile``)
prefix; it is stripped. Every tensor is checked against ``model.state_dict()``: missing or
unexpected names, wrong shapes, non-floating values where the model has floats, and NaN or inf
values each raise :class:`CheckpointError`, whose message starts with the file's path.

Momentum comes from the optimizer state: ``exp_avg`` (Adam, AdamW, AdamS) or ``momentum_buffer``
(SGD). Optimizer entries are matched to parameter names through the ``param_names`` that PyTorch
stores when the optimizer was built from ``model.named_parameters()``; without them, the order of
``model.named_parameters()`` is assumed and checked shape by shape. In every format each momentum
buffer must belong to a parameter, have its shape and hold finite floating-point values; a malformed
optimizer entry (``state``, ``param_groups``, a buffer that is not a tensor) is named in the error.
"""
from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from adams.checkpoints import MODEL, MOMENTUM_KEYS, OPTIMIZER, STEP, CheckpointError

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "momentum_by_name"]

PREFIXES = ("module.", "_orig_mod.")
SAFETENSORS_MOMENTUM = "optimizer.exp_avg."


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    model_state: dict[str, torch.Tensor]
    momentum: dict[str, torch.Tensor] | None
    step: int | None
    meta: dict = field(default_factory=dict)


def _strip(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        for prefix in PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _few(names) -> str:
    names = sorted(names)
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _check_finite(where: str, what: str, name: str, t: torch.Tensor) -> None:
    if t.is_floating_point() or t.is_complex():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise CheckpointError(f"{where}{what} {name!r} has {bad} non-finite (NaN or inf) values")


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused: the file holds pickled objects or code that weights_only loading "
                              f"does not allow ({str(err).splitlines()[0]})") from None
    except Exception as err:  # noqa: BLE001 - a damaged file fails in many ways inside torch.load
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint (truncated or corrupt?): "
                              f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def _read_safetensors(path: Path) -> tuple[dict, int | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot be read as safetensors (truncated or corrupt?): {err}") from None
    step = metadata.get("step")
    try:
        return tensors, int(step) if step is not None else None
    except ValueError:
        raise CheckpointError(f"{path}: metadata 'step' is not an integer: {step!r}") from None


def _strip_name(name: str) -> str:
    return next(iter(_strip({name: None})))


def _optimizer_parameters(optimizer_state: Any, where: str) -> tuple[Mapping, list[tuple[Any, str | None]]]:
    """The optimizer's ``state`` and its (parameter id, saved name or None) pairs, after checking their structure."""
    if not isinstance(optimizer_state, Mapping) or "state" not in optimizer_state or "param_groups" not in optimizer_state:
        raise CheckpointError(f"{where}the 'optimizer' entry is not an optimizer state_dict")
    state, groups = optimizer_state["state"], optimizer_state["param_groups"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where}optimizer entry 'state' is of type {type(state).__name__}, not a dict")
    if not isinstance(groups, (list, tuple)):
        raise CheckpointError(f"{where}optimizer entry 'param_groups' is of type {type(groups).__name__}, not a list")
    pairs = []
    for g, group in enumerate(groups):
        ids = group.get("params") if isinstance(group, Mapping) else None
        if not isinstance(ids, (list, tuple)):
            raise CheckpointError(f"{where}optimizer entry 'param_groups[{g}]' has no list of 'params'")
        names = group.get("param_names")
        if names is None:
            names = [None] * len(ids)
        elif (not isinstance(names, (list, tuple)) or len(names) != len(ids)
              or not all(isinstance(n, str) for n in names)):
            raise CheckpointError(f"{where}optimizer entry 'param_groups[{g}]['param_names']' is not a list of "
                                  f"{len(ids)} names, one for each of its 'params'")
        pairs.extend(zip(ids, [n if n is None else _strip_name(n) for n in names]))
    return state, pairs


def _momentum_buffer(state: Mapping, pid: Any, name: str, where: str,
                     keys: Sequence[str] = MOMENTUM_KEYS) -> torch.Tensor | None:
    """The momentum tensor (the first of ``keys`` it has) the optimizer keeps for one parameter, None
    if it keeps none."""
    entry = state.get(pid, {})
    if not isinstance(entry, Mapping):
        raise CheckpointError(f"{where}optimizer entry 'state[{pid!r}]' (parameter {name!r}) is of "
                              f"type {type(entry).__name__}, not a dict of buffers")
    key = next((k for k in keys if entry.get(k) is not None), None)
    if key is None:
        return None
    if not isinstance(entry[key], torch.Tensor):
        raise CheckpointError(f"{where}optimizer entry 'state[{pid!r}][{key!r}]' (parameter {name!r}) is of "
                              f"type {type(entry[key]).__name__}, not a tensor")
    return entry[key]


def momentum_by_name(optimizer_state: Mapping, model: torch.nn.Module, path=None, *,
                     keys: Sequence[str] = MOMENTUM_KEYS) -> dict[str, torch.Tensor] | None:
    """Momentum buffers of an optimizer ``state_dict`` by parameter name (None if it keeps none);
    another per-parameter buffer with ``keys`` (``("exp_avg_sq",)`` for Adam's second moment).

    Every entry on the way is checked: a malformed ``state`` or ``param_groups`` raises
    :class:`CheckpointError` naming the entry; so does a buffer whose shape is not its parameter's.
    """
    where = f"{path}: " if path is not None else ""
    state, pairs = _optimizer_parameters(optimizer_state, where)
    params = dict(model.named_parameters())
    by_order = any(name is None for _, name in pairs)
    if by_order:
        if len(pairs) != len(params):
            raise CheckpointError(f"{where}the optimizer holds {len(pairs)} parameters and the model {len(params)}; "
                                  f"its order cannot be matched to the model's names (build the optimizer from "
                                  f"model.named_parameters() so that the names are saved){NO_MOMENTUM_HINT}")
        if len(optimizer_state["param_groups"]) > 1:
            # unnamed parameters in several groups (weight decay on and off, say) are regrouped, not in
            # the model's order: pairing them by position could match buffers of equal shape wrongly
            raise CheckpointError(f"{where}the optimizer keeps unnamed parameters in "
                                  f"{len(optimizer_state['param_groups'])} groups: their order cannot be matched to "
                                  f"the model's by position (build the optimizer from model.named_parameters() so that "
                                  f"the names are saved){NO_MOMENTUM_HINT}")
        pairs = [(pid, name) for (pid, _), name in zip(pairs, params)]
    out = {}
    for pid, name in pairs:
        buffer = _momentum_buffer(state, pid, name, where, keys)
        if buffer is None:
            continue
        if by_order and buffer.shape != params[name].shape:
            raise CheckpointError(f"{where}optimizer momentum for {name!r} has shape {tuple(buffer.shape)}, "
                                  f"model: {tuple(params[name].shape)}; the optimizer's parameter order cannot be "
                                  f"matched to the model (build the optimizer from model.named_parameters())"
                                  f"{NO_MOMENTUM_HINT}")
        out[name] = buffer
    _check_momentum(where, out, model)
    return out or None


def _check_momentum(where: str, momentum: Mapping[str, Any], model: torch.nn.Module) -> None:
    """Each momentum buffer belongs to a parameter, has its shape, is floating point and finite."""
    params = dict(model.named_parameters())
    for name, buffer in momentum.items():
        if name not in params:
            raise CheckpointError(f"{where}momentum for {name!r}, which is not a parameter of the model")
        if not isinstance(buffer, torch.Tensor):
            raise CheckpointError(f"{where}momentum for {name!r} is a {type(buffer).__name__}, not a tensor")
        if buffer.shape != params[name].shape:
            raise CheckpointError(f"{where}momentum for {name!r} has shape {tuple(buffer.shape)}, "
                                  f"the parameter has shape {tuple(params[name].shape)}")
        if not buffer.is_floating_point():
            raise CheckpointError(f"{where}momentum for {name!r} has dtype {buffer.dtype}, not floating point")
        _check_finite(where, "momentum", name, buffer)


#: appended to the errors of momentum that cannot be matched to the parameters
NO_MOMENTUM_HINT = "; to probe without momentum, pass --no-momentum (momentum=False)"

#: the file that marks a sharded ``torch.distributed.checkpoint`` folder
DCP_METADATA = ".metadata"

#: the files of a Hugging Face ``Trainer`` checkpoint folder that the probes read
HF_WEIGHTS, HF_INDEX, HF_BIN = "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"
HF_OPTIMIZER, HF_TRAINER_STATE = "optimizer.pt", "trainer_state.json"


def weights_file(path: str | os.PathLike) -> Path:
    """The file that identifies a checkpoint: the file itself, a Hugging Face folder's weights
    (``model.safetensors``, its sharded index, or ``pytorch_model.bin``), or a sharded
    checkpoint's ``.metadata``."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / DCP_METADATA).is_file():
        return path / DCP_METADATA
    for name in (HF_WEIGHTS, HF_INDEX, HF_BIN):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"{path}: a folder without {HF_WEIGHTS}, {HF_INDEX}, {HF_BIN} or {DCP_METADATA}: neither a "
                          "Hugging Face checkpoint folder nor a sharded torch.distributed.checkpoint (give a "
                          "checkpoint file, or the folder the Trainer or adams.distributed.save_checkpoint wrote)")


def _read_hf_folder(path: Path, model: torch.nn.Module, read_momentum: bool = True) -> tuple[dict, dict | None, int | None]:
    """Weights, momentum (from ``optimizer.pt``, if present) and step (``trainer_state.json``'s
    ``global_step``, if present) of a Hugging Face checkpoint folder."""
    weights = weights_file(path)
    if weights.name == HF_INDEX:
        try:
            index = json.loads(weights.read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{weights}: not a safetensors index with a 'weight_map' ({err})") from None
        state: dict = {}
        for shard in shards:
            if not (path / shard).is_file():
                raise CheckpointError(f"{weights}: lists the shard {shard}, which is not in {path}")
            state.update(_read_safetensors(path / shard)[0])
    elif weights.name == HF_WEIGHTS:
        state = _read_safetensors(weights)[0]
    else:
        state = _read_torch(weights)
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{weights}: expected a state_dict, got {type(state).__name__}")
    step = None
    if (path / HF_TRAINER_STATE).is_file():
        try:
            step = json.loads((path / HF_TRAINER_STATE).read_text(encoding="utf-8")).get("global_step")
        except ValueError as err:
            raise CheckpointError(f"{path / HF_TRAINER_STATE}: not JSON ({err})") from None
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise CheckpointError(f"{path / HF_TRAINER_STATE}: 'global_step' must be an integer, got {step!r}")
    momentum = None
    if read_momentum and (path / HF_OPTIMIZER).is_file():
        momentum = momentum_by_name(_read_torch(path / HF_OPTIMIZER), model, path / HF_OPTIMIZER)
    return dict(state), momentum, step


def _read_dcp_folder(path: Path, model: torch.nn.Module, read_momentum: bool = True) -> tuple[dict, dict | None, int | None]:
    """Weights, momentum (``exp_avg`` or ``momentum_buffer`` of each parameter) and the saved extra
    ``step`` of a sharded checkpoint written by :func:`adams.distributed.save_checkpoint`."""
    from adams.distributed import CHECKSUMS, read_checkpoint

    verify = (path / CHECKSUMS).exists()
    if not verify:
        warnings.warn(f"{path}: no {CHECKSUMS}, so its files cannot be verified against the digests recorded when "
                      "it was saved; read with the metadata checks only", stacklevel=4)
    state, optimizer_state, extra = read_checkpoint(path, verify=verify)
    step = extra.get(STEP)
    if step is not None:
        if not float(step).is_integer():
            raise CheckpointError(f"{path}: the saved 'step' is not an integer: {step!r}")
        step = int(step)
    momentum = None
    if read_momentum:
        momentum = {}
        for name, buffers in _strip(optimizer_state).items():
            key = next((k for k in MOMENTUM_KEYS if k in buffers), None)
            if key is not None:
                momentum[name] = buffers[key]
        momentum = momentum or None  # checked against the model with the weights, by _validated
    return state, momentum, step


def _restore_tied(state: dict, model: torch.nn.Module) -> dict:
    """Entries the file leaves out because the model ties them to another (an output layer sharing the
    input embedding, which safetensors stores once), filled in from the entry they share storage with."""
    expected = model.state_dict()
    by_storage: dict[tuple, list[str]] = {}
    for name, t in expected.items():
        if t.numel():
            by_storage.setdefault((t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)), []).append(name)
    out = dict(state)
    for names in by_storage.values():
        present = [n for n in names if n in out]
        for name in names:
            if name not in out and present:
                out[name] = out[present[0]]
    return out


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *, momentum: bool = True) -> Checkpoint:
    """Read and validate one checkpoint against ``model`` (which is not modified): a ``torch.save``
    file, a ``.safetensors`` file, or a Hugging Face ``Trainer`` checkpoint folder (weights, with
    tied entries restored through the model; momentum from ``optimizer.pt``; the step from
    ``trainer_state.json``). ``momentum=False`` leaves the optimizer state unread (the checkpoint's
    ``momentum`` is then None), for optimizer states that cannot be matched to the parameters.
    A sharded checkpoint folder of :func:`adams.distributed.save_checkpoint` is read whole."""
    path = Path(path)
    read_momentum = momentum
    if path.is_dir():
        read = _read_dcp_folder if (path / DCP_METADATA).is_file() else _read_hf_folder
        state, found, step = read(path, model, read_momentum)
        return _validated(path, _restore_tied(_strip(state), model), found, step, {}, model)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    momentum, step, meta = None, None, {}
    if path.suffix == ".safetensors":
        tensors, step = _read_safetensors(path)
        momentum = {k[len(SAFETENSORS_MOMENTUM):]: v for k, v in tensors.items() if k.startswith(SAFETENSORS_MOMENTUM)}
        state = {k: v for k, v in tensors.items() if not k.startswith(SAFETENSORS_MOMENTUM)}
        momentum = (_strip(momentum) or None) if read_momentum else None
    else:
        content = _read_torch(path)
        if not isinstance(content, Mapping):
            raise CheckpointError(f"{path}: expected a state_dict or a dict with a 'model' entry, got {type(content).__name__}")
        if MODEL in content and isinstance(content[MODEL], Mapping):
            state = content[MODEL]
            if content.get(OPTIMIZER) is not None and read_momentum:
                momentum = momentum_by_name(content[OPTIMIZER], model, path)
            step = content.get(STEP)
            if step is not None and not isinstance(step, int):
                raise CheckpointError(f"{path}: 'step' must be an integer, got {step!r}")
            meta = {k: v for k, v in content.items() if k not in (MODEL, OPTIMIZER, STEP)
                    and isinstance(v, (int, float, str, bool))}
        else:
            state = content
    return _validated(path, _restore_tied(_strip(state), model), momentum, step, meta, model)


def _validated(path: Path, state: dict, momentum, step, meta: dict, model: torch.nn.Module) -> Checkpoint:
    """The checkpoint, once its weights fit ``model`` key by key, shape by shape, and are finite."""
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        parts = ([f"missing keys: {_few(missing)}"] if missing else []) + \
                ([f"unexpected keys: {_few(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"{path}: does not fit the model ({'; '.join(parts)})")
    for name, want in expected.items():
        got = state[name]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{path}: {name!r} is a {type(got).__name__}, not a tensor")
        if got.shape != want.shape:
            raise CheckpointError(f"{path}: wrong shape for {name!r}: model {tuple(want.shape)}, file {tuple(got.shape)}")
        if want.is_floating_point() and not got.is_floating_point():
            raise CheckpointError(f"{path}: {name!r} has dtype {got.dtype}, the model expects floating point")
        _check_finite(f"{path}: ", "tensor", name, got)
    if momentum is not None:
        _check_momentum(f"{path}: ", momentum, model)
    return Checkpoint(path=path, model_state=dict(state), momentum=momentum, step=step, meta=meta)
