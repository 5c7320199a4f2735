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

With ``split=K`` (K >= 3) both gradients are taken as the mean of the gradients of K equal parts of
the batch (the same gradients, when the loss is a mean over examples; K smaller backward passes in
place of one), and the parts' Gram matrices give the unbiased estimates of :mod:`smoothness.noise`
for the objective f rather than for the fixed batch's own loss f_B:

* :math:`\|\nabla f(w_t)\|^2` (``grad_sq_unbiased``, with its jackknife standard error) and the noise
  trace :math:`\operatorname{tr}\Sigma_B` of a gradient over a batch of the fixed batch's size (one
  part's noise trace divided by K): ``grad_norm`` overstates :math:`\|\nabla f\|` by that noise;
* :math:`\|\nabla f(w_{t+1}) - \nabla f(w_t)\|^2 / \|w_{t+1} - w_t\|^2` (``fd_sq_unbiased``), from the
  parts' gradient differences: ``fd_smoothness`` is the finite difference of f_B, whose Hessian
  carries the batch's own sampling noise.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from smoothness.noise import estimate_from_gram

__all__ = ["StepSmoothnessTracker", "TRACK_KEYS", "NOISE_TRACK_KEYS"]

TRACK_KEYS = ("step", "fd_smoothness", "grad_norm", "step_length", "momentum_norm")
#: recorded as well with ``split`` >= 3: the unbiased |grad f|^2 and tr(Sigma_B) of the fixed batch's size
NOISE_TRACK_KEYS = ("grad_sq_unbiased", "grad_sq_unbiased_se", "noise_trace", "fd_sq_unbiased")


class StepSmoothnessTracker:
    """``due(step)``, then ``before(params)`` before the update and ``after(params, step)`` after it.

    ``loss_fn(batch)`` returns the scalar loss of the model (whose parameters are ``params``) on a
    batch; ``momentum_norm()``, if given, returns the optimizer's momentum norm after the update.
    ``records`` holds one list per name of :data:`TRACK_KEYS` (and of :data:`NOISE_TRACK_KEYS` with
    ``split`` >= 3, for which ``batch`` must be a tensor or a tuple of tensors whose first dimension,
    divisible by ``split``, indexes examples, and the loss a mean over examples).
    """

    def __init__(self, loss_fn: Callable[[Any], torch.Tensor], batch: Any, every: int,
                 momentum_norm: Callable[[], float] | None = None, split: int = 1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"StepSmoothnessTracker: every must be an int >= 1, got {every!r}")
        if isinstance(split, bool) or not isinstance(split, int) or split < 1 or split == 2:
            raise ValueError(f"StepSmoothnessTracker: split must be 1 or an int >= 3 (the noise estimate needs "
                             f"three parts), got {split!r}")
        self.loss_fn, self.batch, self.every, self.momentum_norm = loss_fn, batch, every, momentum_norm
        self.parts = _split(batch, split) if split > 1 else None
        self.records: dict[str, list] = {k: [] for k in TRACK_KEYS + (NOISE_TRACK_KEYS if self.parts else ())}
        self._pending: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._noise: dict | None = None
        self._part_grads: list[list[torch.Tensor]] | None = None

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def _grad(self, params: Sequence[torch.Tensor], batch: Any = None) -> list[torch.Tensor]:
        with torch.enable_grad():
            loss = self.loss_fn(self.batch if batch is None else batch)
            grads = torch.autograd.grad(loss, list(params), allow_unused=True)
        return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]

    def before(self, params: Sequence[torch.Tensor]) -> None:
        """The weights and the batch's gradient before the update."""
        if self.parts is None:
            self._pending = ([p.detach().clone() for p in params], self._grad(params))
            return
        grads = [self._grad(params, part) for part in self.parts]
        flat = torch.stack([torch.cat([g.reshape(-1).double() for g in gs]) for gs in grads])
        k = len(grads)
        estimate = estimate_from_gram((flat @ flat.T).cpu().numpy())
        self._noise = {"grad_sq_unbiased": estimate.sq_norm, "grad_sq_unbiased_se": estimate.sq_norm_se,
                       "noise_trace": estimate.noise_trace / k}
        self._part_grads = grads
        self._pending = ([p.detach().clone() for p in params], _mean(grads))

    def after(self, params: Sequence[torch.Tensor], step: int) -> None:
        """The batch's gradient after the update, and one record."""
        if self._pending is None:
            raise RuntimeError("StepSmoothnessTracker.after without a matching before()")
        w0, g0 = self._pending
        self._pending = None
        dw = math.sqrt(sum(float((p.detach() - w).double().pow(2).sum()) for p, w in zip(params, w0)))
        if self._part_grads is None:
            g1 = self._grad(params)
        else:
            after = [self._grad(params, part) for part in self.parts]
            g1 = _mean(after)
            diffs = torch.stack([torch.cat([(b - a).reshape(-1).double() for a, b in zip(g_before, g_after)])
                                 for g_before, g_after in zip(self._part_grads, after)])
            fd_sq = estimate_from_gram((diffs @ diffs.T).cpu().numpy()).sq_norm
            self._noise["fd_sq_unbiased"] = fd_sq / dw**2 if dw > 0 else float("nan")
            self._part_grads = None
        dg = math.sqrt(sum(float((b - a).double().pow(2).sum()) for a, b in zip(g0, g1)))
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in g0))
        for key, value in (("step", int(step)), ("fd_smoothness", dg / dw if dw > 0 else float("nan")),
                           ("grad_norm", norm), ("step_length", dw),
                           ("momentum_norm", float(self.momentum_norm()) if self.momentum_norm else float("nan"))):
            self.records[key].append(value)
        if self._noise is not None:
            for key, value in self._noise.items():
                self.records[key].append(value)
            self._noise = None


def _mean(grads: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Parameter by parameter, the mean of the parts' gradients."""
    return [torch.stack([gs[i] for gs in grads]).mean(dim=0) for i in range(len(grads[0]))]


def _split(batch: Any, k: int) -> list:
    """``batch`` (a tensor or a tuple of tensors) cut into ``k`` equal parts along the first dimension."""
    tensors = (batch,) if isinstance(batch, torch.Tensor) else tuple(batch) if isinstance(batch, (tuple, list)) else None
    if not tensors or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in tensors):
        raise TypeError("StepSmoothnessTracker: with split > 1 the batch must be a tensor or a tuple of tensors")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors) or n % k:
        raise ValueError(f"StepSmoothnessTracker: split={k} needs every tensor of the batch to have the same first "
                         f"dimension, divisible by {k}; got {[tuple(t.shape) for t in tensors]}")
    parts = [tuple(t[i * (n // k):(i + 1) * (n // k)] for t in tensors) for i in range(k)]
    return [p[0] for p in parts] if isinstance(batch, torch.Tensor) else parts
