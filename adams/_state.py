"""What an AdamS optimizer may hold, checked: group hyperparameters and a state dict to load.

:func:`validate_group` runs when a group is added and again at every step (a value set on
``param_groups`` later is refused before anything is written); :func:`checked_state_dict` runs
before :meth:`adams.AdamS.load_state_dict` changes anything, and also converts an Adam or AdamW
state on request.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping

import torch
from torch import Tensor

from adams import functional as F

__all__ = ["scalar", "validate_group", "checked_state_dict"]


def scalar(value: float | Tensor, name: str) -> float:
    if type(value) is float:  # the usual case, before the slower checks
        return value
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number or a 1-element tensor, got shape {tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def validate_group(group: dict) -> F.Hyper:
    """Check a parameter group's hyperparameters; return them as the functional core takes them.

    Runs when a group is added and again at every step, so a value set on ``param_groups`` later
    (a NaN learning rate, a string) is refused before anything is written.
    """
    missing = [k for k in REQUIRED_KEYS if k not in group]
    if missing:
        raise ValueError(f"the parameter group has no {', '.join(missing)}")
    betas = group["betas"]
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"Invalid betas: betas={betas!r} (must be a pair (beta1, beta2))")
    hyper = F.Hyper(  # checked when made
        lr=scalar(group["lr"], "lr"), beta1=scalar(betas[0], "betas[0]"), beta2=scalar(betas[1], "betas[1]"),
        eps=scalar(group["eps"], "eps"), weight_decay=scalar(group["weight_decay"], "weight_decay"),
        bias_correction=group["bias_correction"], maximize=group["maximize"],
    )
    for name in ("foreach", "fused"):
        if group[name] not in (None, True, False):
            raise TypeError(f"{name} must be None, True or False, got {type(group[name]).__name__} {group[name]!r}")
    return hyper


#: what every AdamS parameter group holds; OPTIONAL_KEYS are filled in from this optimizer when a
#: saved group (from an older version) lacks them
REQUIRED_KEYS = ("lr", "betas", "eps", "weight_decay", "bias_correction", "maximize", "foreach", "fused")
OPTIONAL_KEYS = ("bias_correction", "maximize", "foreach", "fused")
MAX_STEP = 2**53  # a step counter past this is not a whole number in float64

_OWN_STATE = frozenset(("step", "exp_avg"))
_ADAM_STATE = frozenset(("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"))
_FOREIGN_GROUP_KEYS = ("amsgrad", "capturable", "differentiable", "decoupled_weight_decay", "momentum",
                       "dampening", "nesterov")
_NOT_ADAM_GROUP_KEYS = ("momentum", "dampening", "nesterov", "lr_decay", "initial_accumulator_value", "alpha",
                        "centered", "momentum_decay", "lambd")


def checked_state_dict(optimizer: torch.optim.Optimizer, state_dict, *, convert: bool) -> dict:
    """``state_dict`` ready for ``torch.optim.Optimizer.load_state_dict``, or a ``ValueError``.

    With ``convert=True`` an Adam/AdamW state becomes an AdamS state (see :meth:`adams.AdamS.load_state_dict`).
    """
    if not (isinstance(state_dict, Mapping) and {"state", "param_groups"} <= set(state_dict)):
        raise ValueError("AdamS.load_state_dict: expected a dict with 'state' and 'param_groups' "
                         f"(from optimizer.state_dict()), got {type(state_dict).__name__}")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if not (isinstance(saved_groups, (list, tuple)) and isinstance(saved_state, Mapping)
            and all(isinstance(g, Mapping) and "params" in g for g in saved_groups)):
        raise ValueError("AdamS.load_state_dict: 'param_groups' must be a list of dicts with 'params' and "
                         "'state' a dict")
    if len(saved_groups) != len(optimizer.param_groups) or any(
            len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, optimizer.param_groups)):
        raise ValueError("AdamS.load_state_dict: the saved state has "
                         f"{[len(g['params']) for g in saved_groups]} parameters per group, this optimizer "
                         f"{[len(g['params']) for g in optimizer.param_groups]}")
    groups = []
    for index, (saved, current) in enumerate(zip(saved_groups, optimizer.param_groups)):
        foreign = [k for k in _FOREIGN_GROUP_KEYS if k in saved]
        not_adam = [k for k in _NOT_ADAM_GROUP_KEYS if k in saved]
        if convert and not_adam:
            raise ValueError(f"AdamS.load_state_dict: parameter group {index} has {not_adam}: convert=True takes "
                             "an Adam or AdamW state, not this optimizer's")
        if convert:  # this optimizer's hyperparameters, the saved parameter ids
            saved = {**{k: v for k, v in current.items() if k != "params"},
                     **{k: saved[k] for k in ("params", "param_names") if k in saved}}
        elif foreign:
            raise ValueError(f"AdamS.load_state_dict: parameter group {index} has {foreign}, options of "
                             "another optimizer (AdamW's state?); pass convert=True to take its momentum "
                             "and keep AdamS's hyperparameters")
        saved = {**{k: current[k] for k in OPTIONAL_KEYS if k not in saved}, **saved}
        try:
            validate_group(saved)
        except (TypeError, ValueError) as err:
            raise type(err)(f"AdamS.load_state_dict: parameter group {index}: {err}") from None
        groups.append(saved)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state, counters = {}, {}
    for key, p in zip([k for g in saved_groups for k in g["params"]], params):
        if key not in saved_state:
            continue
        entry = saved_state[key]
        where = f"AdamS.load_state_dict: the state of parameter {key} (shape {tuple(p.shape)})"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} is a {type(entry).__name__}, not a dict")
        keys = set(entry)
        if keys and convert:
            if not keys <= _ADAM_STATE:
                raise ValueError(f"{where} holds {sorted(keys - _ADAM_STATE)}: convert=True takes an Adam or "
                                 "AdamW state (step, exp_avg, exp_avg_sq)")
            entry = {k: entry[k] for k in _OWN_STATE if k in entry}
            keys = set(entry)
        if keys and keys != _OWN_STATE:
            extra, missing = sorted(keys - _OWN_STATE), sorted(_OWN_STATE - keys)
            hint = ("; it looks like AdamW's or Adam's state: pass convert=True to take its momentum"
                    if "exp_avg_sq" in extra else "")
            raise ValueError(f"{where} holds {sorted(keys)}: AdamS keeps 'step' and 'exp_avg'"
                             + (f", and {extra} are not its own" if extra else "")
                             + (f", and {missing} are missing" if missing else "") + hint)
        if keys:
            _check_entry(where, entry, p)
            if isinstance(entry["step"], Tensor):  # one counter per parameter, or it counts twice
                other = counters.setdefault(id(entry["step"]), key)
                if other != key:
                    raise ValueError(f"{where}: its step counter is the same tensor as parameter {other}'s")
        state[key] = entry
    return {**state_dict, "state": state, "param_groups": groups}


def _check_entry(where: str, entry: Mapping, p: Tensor) -> None:
    exp_avg, step = entry["exp_avg"], entry["step"]
    if not isinstance(exp_avg, Tensor):
        raise ValueError(f"{where}: exp_avg is a {type(exp_avg).__name__}, not a tensor")
    if exp_avg.layout != torch.strided:
        raise ValueError(f"{where}: exp_avg has layout {exp_avg.layout}; AdamS keeps a dense momentum")
    if exp_avg.shape != p.shape:
        raise ValueError(f"{where}: exp_avg has shape {tuple(exp_avg.shape)}, not the parameter's")
    if any(stride == 0 and size > 1 for size, stride in zip(exp_avg.shape, exp_avg.stride())):
        raise ValueError(f"{where}: exp_avg is expanded (a zero stride), so its elements share memory")
    if not (exp_avg.is_floating_point() or exp_avg.is_complex()) or exp_avg.is_complex() != p.is_complex():
        raise ValueError(f"{where}: exp_avg has dtype {exp_avg.dtype}, but the parameter has {p.dtype}")
    if isinstance(step, Tensor):
        if step.numel() != 1 or step.is_complex():
            raise ValueError(f"{where}: step is a {step.dtype} tensor of shape {tuple(step.shape)}, not one real number")
        step = step.detach().reshape(()).to("cpu", torch.float64).item()
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not (
            0 <= step < MAX_STEP and step == int(step)):
        raise ValueError(f"{where}: step is {step!r}, not a whole number in [0, 2**53)")
