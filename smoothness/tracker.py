r"""Smoothness measured while training, every k steps, the way Zhang et al. (2020) traced it.

Probing saved checkpoints (:mod:`smoothness.trajectory`) gives one point per checkpoint; a
trajectory with a hundred points needs a hundred checkpoints. :class:`StepSmoothnessTracker` is
called by a training loop instead: at every ``every``-th step it takes the gradient of a fixed batch
at the weights before the update, :math:`g(w_t)`, and after it, :math:`g(w_{t+1})`, and records

* the step finite difference :math:`\|g(w_{t+1}) - g(w_t)\| / \|w_{t+1} - w_t\|` (a local smoothness
  along the update actually taken),
* the gradient norm :math:`\|g(w_t)\|` on that batch, the update's length, and the momentum norm
  (if the loop can say what it is).

The fixed batch makes the two gradients differ only through the weights, not through minibatch
noise. Two gradients of the batch per tracked step are the whole cost; the training run itself is
unchanged (the tracker reads the weights and never writes them, and draws no random numbers).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

__all__ = ["StepSmoothnessTracker", "TRACK_KEYS"]

TRACK_KEYS = ("step", "fd_smoothness", "grad_norm", "step_length", "momentum_norm")


class StepSmoothnessTracker:
    """``due(step)``, then ``before(params)`` before the update and ``after(params, step)`` after it.

    ``loss_fn(batch)`` returns the scalar loss of the model (whose parameters are ``params``) on a
    batch; ``momentum_norm()``, if given, returns the optimizer's momentum norm after the update.
    ``records`` holds one list per name of :data:`TRACK_KEYS`.
    """

    def __init__(self, loss_fn: Callable[[Any], torch.Tensor], batch: Any, every: int,
                 momentum_norm: Callable[[], float] | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"StepSmoothnessTracker: every must be an int >= 1, got {every!r}")
        self.loss_fn, self.batch, self.every, self.momentum_norm = loss_fn, batch, every, momentum_norm
        self.records: dict[str, list] = {k: [] for k in TRACK_KEYS}
        self._pending: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def _grad(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with torch.enable_grad():
            loss = self.loss_fn(self.batch)
            grads = torch.autograd.grad(loss, list(params), allow_unused=True)
        return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]

    def before(self, params: Sequence[torch.Tensor]) -> None:
        """The weights and the batch's gradient before the update."""
        self._pending = ([p.detach().clone() for p in params], self._grad(params))

    def after(self, params: Sequence[torch.Tensor], step: int) -> None:
        """The batch's gradient after the update, and one record."""
        if self._pending is None:
            raise RuntimeError("StepSmoothnessTracker.after without a matching before()")
        w0, g0 = self._pending
        self._pending = None
        g1 = self._grad(params)
        dw = math.sqrt(sum(float((p.detach() - w).double().pow(2).sum()) for p, w in zip(params, w0)))
        dg = math.sqrt(sum(float((b - a).double().pow(2).sum()) for a, b in zip(g0, g1)))
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in g0))
        for key, value in (("step", int(step)), ("fd_smoothness", dg / dw if dw > 0 else float("nan")),
                           ("grad_norm", norm), ("step_length", dw),
                           ("momentum_norm", float(self.momentum_norm()) if self.momentum_norm else float("nan"))):
            self.records[key].append(value)
