"""Measure optimizer-state memory instead of asserting it."""
from __future__ import annotations

from collections import Counter

import torch

__all__ = ["state_bytes", "param_bytes"]


def _tensor_bytes(t: torch.Tensor) -> int:
    local = getattr(t, "_local_tensor", None)  # a DTensor counts what this rank holds
    if local is not None:
        t = local
    return t.numel() * t.element_size()


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def state_bytes(optimizer: torch.optim.Optimizer, *, by_key: bool = False) -> int | dict[str, int]:
    """Bytes held by the tensors in ``optimizer.state`` (any ``torch.optim.Optimizer``).

    With ``by_key=True`` returns a mapping from state key (``"exp_avg"``, ``"step"``, ...) to bytes,
    so buffers can be told apart from step counters. Tensors nested one level in lists or dicts (as
    some optimizers keep them) are counted too; Python numbers are not tensors and count as 0.

    >>> import torch, adams
    >>> w = torch.nn.Parameter(torch.zeros(1000))
    >>> opt = adams.AdamS([w])
    >>> w.grad = torch.ones(1000); opt.step()
    >>> state_bytes(opt, by_key=True)["exp_avg"]
    4000
    """
    totals: Counter[str] = Counter()
    for param_state in optimizer.state.values():
        for key, value in param_state.items():
            for t in _tensors(value):
                totals[str(key)] += _tensor_bytes(t)
    if by_key:
        return dict(totals)
    return sum(totals.values())


def param_bytes(params) -> int:
    """Bytes of a collection of parameters (or of an optimizer's parameters)."""
    if isinstance(params, torch.optim.Optimizer):
        params = [p for group in params.param_groups for p in group["params"]]
    return sum(_tensor_bytes(p) for p in params)
