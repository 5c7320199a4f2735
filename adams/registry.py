"""One registry of the optimizers the package compares: ``make_optimizer(name, named_params, **hp)``.

=============  ===================================================================================
``adams``      :class:`adams.AdamS` (this package)
``adamw``      :class:`torch.optim.AdamW`
``sgdm``       :class:`torch.optim.SGD` with momentum (default 0.9; ``betas[0]`` is used if given)
``adam-mini``  ``adam_mini.Adam_mini``, the authors' PyPI package ``adam-mini`` (not re-implemented);
               needs ``model_dim`` and ``n_heads`` and parameter names it recognizes; under FSDP2,
               ``n_heads`` must divide over the shards (checked, with a clear error)
``adapm``      :class:`adams.adapm.AdaPM`, *our reconstruction* of AdaPM (no code was released):
               momentum by block role, Adam's second moment
``adapm-mini`` the same with Adam-mini's second moment (``second_moment="mini"``): the
               configuration of AdaPM's 95% figure; needs ``n_heads``
=============  ===================================================================================

Every entry takes the same hyperparameter names (``lr``, ``betas``, ``eps``, ``weight_decay``) and
the same parameters: ``(name, tensor)`` pairs, as ``model.named_parameters()`` gives them (Adam-mini
partitions by name). Weight decay goes to tensors with two or more dimensions only (the nanoGPT
recipe the paper's authors used); biases and norm weights get none. Adam-mini applies its own
name-based rule, which gives the same split for names like ours (``ln``/``norm``/``bias`` exempt).

>>> import torch, adams
>>> model = torch.nn.Linear(4, 2)
>>> opt = adams.make_optimizer("adams", model.named_parameters(), lr=1e-3)
>>> [(g["weight_decay"], len(g["params"])) for g in opt.param_groups]
[(0.01, 1), (0.0, 1)]
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from adams.adapm import AdaPM
from adams.optimizer import AdamS

__all__ = ["make_optimizer", "OPTIMIZERS", "LABELS"]

NamedParams = Iterable[tuple[str, torch.nn.Parameter]]

#: how each entry is named in tables and figures
LABELS = {"adams": "AdamS", "adamw": "AdamW", "sgdm": "SGD with momentum", "adam-mini": "Adam-mini",
          "adapm": "AdaPM (reconstruction)", "adapm-mini": "AdaPM + Adam-mini v (reconstruction)"}
#: bumped when an entry's algorithm changes, so that runs cached under the old one are not read as the
#: new one's (analysis.training keys its cache with it). adapm 2: momentum by block role (1 was a
#: uniform row-mean momentum on every matrix).
REVISIONS = {"adapm": 2}
DEFAULT_WEIGHT_DECAY = 1e-2


def _groups(named: list[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    # (name, tensor) pairs, so that the optimizer's state_dict records "param_names" and a checkpoint's
    # momentum can be matched to the model by name (the groups reorder the parameters)
    decay = [(n, p) for n, p in named if p.dim() >= 2]
    rest = [(n, p) for n, p in named if p.dim() < 2]
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0})
            if g["params"]]


def _adams(named, lr, betas, eps, weight_decay, **extra):
    return AdamS(_groups(named, weight_decay), lr=lr, betas=betas, eps=eps, **extra)


def _adamw(named, lr, betas, eps, weight_decay, **extra):
    return torch.optim.AdamW(_groups(named, weight_decay), lr=lr, betas=betas, eps=eps, **extra)


def _sgdm(named, lr, betas, eps, weight_decay, momentum=None, **extra):
    # SGD's weight decay is coupled (added to the gradient); it is what torch.optim.SGD offers
    return torch.optim.SGD(_groups(named, weight_decay), lr=lr, momentum=betas[0] if momentum is None else momentum,
                           **extra)


def _adam_mini(named, lr, betas, eps, weight_decay, model_dim=None, n_heads=None, **extra):
    try:
        from adam_mini import Adam_mini
    except ImportError as err:  # pragma: no cover - the [analysis] extra installs it
        raise ImportError("the 'adam-mini' entry needs the authors' package: pip install adam-mini") from err
    if model_dim is None or n_heads is None:
        raise TypeError("adam-mini needs model_dim= (the transformer width) and n_heads= (attention heads), "
                        "which it uses to split query and key matrices by head")
    _check_adam_mini_shards(named, n_heads)
    return Adam_mini(named, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, dim=model_dim,
                     n_heads=n_heads, verbose=False, **extra)


def _dim0_shards(p: torch.Tensor) -> int:
    """Into how many pieces a DTensor's first dimension is cut (1 for a plain tensor)."""
    placements, mesh = getattr(p, "placements", None), getattr(p, "device_mesh", None)
    if placements is None or mesh is None:
        return 1
    pieces = 1
    for i, placement in enumerate(placements):
        if placement.is_shard(0):
            pieces *= mesh.size(i)
    return pieces


def _check_adam_mini_shards(named, n_heads: int) -> None:
    """Adam-mini views each query and key weight as (heads, -1) rows; under FSDP2 (DTensor
    parameters cut along their first dimension) that view exists only if every shard holds whole
    heads. Measured with the package's 1.1.1 on 2 processes: 2 heads train as in one process, 3
    heads fail inside ``step`` with a DTensor sharding-propagation error. Fail early instead."""
    for name, p in named:
        pieces = _dim0_shards(p)
        if pieces > 1 and n_heads % pieces:
            raise ValueError(
                f"adam-mini cannot run on this sharding: it splits query and key weights by attention head, and "
                f"{n_heads} heads do not divide over the {pieces} shards that each weight's first dimension is "
                f"cut into. Use a number of FSDP2 processes that divides n_heads, or another optimizer.")


def _adapm(named, lr, betas, eps, weight_decay, **extra):
    return AdaPM(_groups(named, weight_decay), lr=lr, betas=betas, eps=eps, **extra)


def _adapm_mini(named, lr, betas, eps, weight_decay, n_heads=None, **extra):
    if n_heads is None:
        raise TypeError("adapm-mini needs n_heads= (attention heads): its second moment splits query and key "
                        "matrices by head, as Adam-mini does")
    return AdaPM(_groups(named, weight_decay), lr=lr, betas=betas, eps=eps, second_moment="mini", n_heads=n_heads,
                 **extra)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adams": _adams, "adamw": _adamw, "sgdm": _sgdm, "adam-mini": _adam_mini, "adapm": _adapm,
    "adapm-mini": _adapm_mini}


def make_optimizer(name: str, params_or_named_params: NamedParams | torch.nn.Module, *, lr: float = 1e-3,
                   betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                   weight_decay: float = DEFAULT_WEIGHT_DECAY, **extra: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered as ``name`` (see the module docstring).

    ``params_or_named_params`` is ``model.named_parameters()`` (or the model itself); plain
    parameters without names are accepted by every entry except ``adam-mini`` and the AdaPM entries,
    which assign blocks by name, and are then named by position. Frozen parameters (``requires_grad=False``) are left out. Extra keyword arguments
    go to the optimizer (``bias_correction=`` for AdamS, ``model_dim=``/``n_heads=`` for Adam-mini,
    ``n_heads=`` for ``adapm-mini``, ``rank=``/``roles=``/``momentum=`` for both AdaPM entries).
    """
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; registered: {', '.join(OPTIMIZERS)}")
    if isinstance(params_or_named_params, torch.nn.Module):
        params_or_named_params = params_or_named_params.named_parameters()
    items = list(params_or_named_params)
    if not items:
        raise ValueError("no parameters given")
    if all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in items):
        named = items
    elif all(isinstance(i, torch.Tensor) for i in items):
        if key in ("adam-mini", "adapm", "adapm-mini"):
            raise TypeError(f"{key} partitions parameters by name: pass model.named_parameters()")
        named = [(f"param_{k}", p) for k, p in enumerate(items)]
    else:
        raise TypeError("pass model.named_parameters() (name, tensor) pairs or a list of tensors")
    named = [(n, p) for n, p in named if p.requires_grad]
    return OPTIMIZERS[key](named, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, **extra)
