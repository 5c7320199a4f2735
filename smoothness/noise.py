r"""The gradient's norm without the noise of a minibatch: an unbiased estimate from K gradients.

A minibatch gradient :math:`g = \nabla f + \xi` carries noise of trace :math:`\operatorname{tr}\Sigma`
(the sum of every coordinate's variance), so its squared norm overstates the objective's:
:math:`E\|g\|^2 = \|\nabla f\|^2 + \operatorname{tr}\Sigma`. With K independent minibatch gradients
:math:`g_1, \dots, g_K` (same batch size), mean :math:`\bar g` and sample covariance
:math:`\hat\Sigma`,

.. math::

    \widehat{\|\nabla f\|^2} = \|\bar g\|^2 - \operatorname{tr}\hat\Sigma / K
      = \frac{1}{K(K-1)} \sum_{i \ne j} g_i^\top g_j, \qquad
    \widehat{\operatorname{tr}\Sigma} = \operatorname{tr}\hat\Sigma
      = \frac{1}{K-1} \sum_i \|g_i - \bar g\|^2

are both unbiased (the first is a U-statistic: a mean of products of independent pairs), for any
noise distribution with finite variance. Both are functions of the K x K Gram matrix
:math:`G_{ij} = g_i^\top g_j` alone, so blocks of parameters cost one small matrix each, and their
standard errors come from the jackknife (leave one gradient out, in closed form from G). The first
can be negative when the noise dominates; its square root is reported as 0 then, with the squared
estimate and its standard error kept as they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = ["GradNormEstimate", "estimate_from_gram", "gram", "grad_norm_estimate"]


@dataclass(frozen=True)
class GradNormEstimate:
    """Unbiased estimates from ``k`` minibatch gradients, with jackknife standard errors."""

    k: int
    sq_norm: float  # unbiased estimate of |grad f|^2 (can be negative)
    sq_norm_se: float
    noise_trace: float  # unbiased estimate of tr(Sigma) of one minibatch gradient
    noise_trace_se: float
    one_batch_norm: float  # |g_1|, the norm a single minibatch shows

    @property
    def norm(self) -> float:
        """sqrt(max(sq_norm, 0)): the estimated |grad f| (0 when the noise swamps it)."""
        return math.sqrt(max(self.sq_norm, 0.0))

    def as_dict(self) -> dict:
        return {"grad_norm_unbiased": self.norm, "grad_sq_unbiased": self.sq_norm,
                "grad_sq_unbiased_se": self.sq_norm_se, "noise_trace": self.noise_trace,
                "noise_trace_se": self.noise_trace_se, "one_batch_grad_norm": self.one_batch_norm,
                "n_noise_batches": self.k}


def _jackknife_se(leave_one_out: np.ndarray) -> float:
    k = leave_one_out.size
    return float(math.sqrt((k - 1) / k * np.sum((leave_one_out - leave_one_out.mean()) ** 2)))


def estimate_from_gram(g: np.ndarray) -> GradNormEstimate:
    """The estimates of the module docstring from a K x K Gram matrix of K >= 3 gradients."""
    g = np.asarray(g, dtype=float)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] < 3:
        raise ValueError(f"need the K x K Gram matrix of K >= 3 gradients (the jackknife leaves one out of at "
                         f"least 3), got shape {g.shape}")
    if not np.all(np.isfinite(g)) or not np.allclose(g, g.T, rtol=1e-10, atol=0):
        raise ValueError("the Gram matrix must be finite and symmetric")
    k = g.shape[0]
    total, trace = g.sum(), np.trace(g)
    rows, diag = g.sum(axis=1), np.diag(g)
    sq = (total - trace) / (k * (k - 1))
    noise = (trace - total / k) / (k - 1)
    sq_loo = (total - trace - 2 * (rows - diag)) / ((k - 1) * (k - 2))
    total_loo, trace_loo = total - 2 * rows + diag, trace - diag
    noise_loo = (trace_loo - total_loo / (k - 1)) / (k - 2)
    return GradNormEstimate(k=k, sq_norm=float(sq), sq_norm_se=_jackknife_se(sq_loo), noise_trace=float(noise),
                            noise_trace_se=_jackknife_se(noise_loo), one_batch_norm=float(math.sqrt(max(diag[0], 0.0))))


def gram(grads: Sequence[dict[str, torch.Tensor]], names: Sequence[str] | None = None) -> np.ndarray:
    """G_ij = g_i . g_j over the parameters ``names`` (all of the first gradient's by default),
    accumulated in float64."""
    if not grads:
        raise ValueError("no gradients given")
    names = list(grads[0]) if names is None else list(names)
    flat = torch.stack([torch.cat([g[n].reshape(-1).double() for n in names]) for g in grads])
    return (flat @ flat.T).cpu().numpy()


def grad_norm_estimate(grads: Sequence[dict[str, torch.Tensor]] | np.ndarray,
                       names: Sequence[str] | None = None) -> GradNormEstimate:
    """Unbiased |grad f|^2 and tr(Sigma) from K >= 3 independent minibatch gradients, given as dicts
    ``name -> tensor`` (over ``names``) or as a (K, n) array."""
    if isinstance(grads, np.ndarray):
        flat = np.asarray(grads, dtype=float)
        if flat.ndim != 2:
            raise ValueError(f"need a (K, n) array of gradients, got shape {flat.shape}")
        return estimate_from_gram(flat @ flat.T)
    return estimate_from_gram(gram(grads, names))
