r"""The probes at one point of a trajectory, globally and per block.

At weights :math:`w_t` with the next iterate :math:`w_{t+1}` (update :math:`d = w_{t+1} - w_t`):

* gradient norm :math:`\|\nabla f(w_t)\|` and, if known, the momentum norm :math:`\|m_t\|`; with three
  or more evaluation batches (independent random minibatches of one size), also the unbiased
  estimate of the population gradient's norm, the minibatch noise trace with standard errors, and
  the norm a single batch shows (:mod:`smoothness.noise`; the same gradients, no extra cost);
* the step finite difference of Zhang et al. (2020),
  :math:`\hat L_t = \max_\gamma \|\nabla f(w_t + \gamma d) - \nabla f(w_t)\| / \|\gamma d\|` over a grid
  of interior points :math:`\gamma`, with the same evaluation batches at both ends: it costs one
  gradient per gamma plus the gradient at :math:`w_t` (shared with the gradient norm). Over a step of
  length r it may exceed :math:`L_0 + L_1\|\nabla f(w_t)\|` by up to :math:`(e^{L_1 r} - 1)/(L_1 r)`;
* the directional curvature :math:`d^\top \nabla^2 f\, d / \|d\|^2` (one Hessian-vector product);
* the Hessian spectral norm (:mod:`smoothness.hessian`).

Per block B (a parameter tensor, or the tensors of one layer) the same quantities use the block's
part: :math:`\|\nabla_B f\|`, :math:`\|\Delta \nabla_B f\| / \|\gamma d_B\|` (free: the same gradients),
:math:`d_B^\top H_{BB} d_B / \|d_B\|^2` and :math:`\|H_{BB}\|`, the diagonal block of the Hessian
(one product or one Lanczos run per block, so they are opt-in).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from smoothness.hessian import directional_curvature, spectral_norm
from smoothness.noise import estimate_from_gram, gram
from smoothness.objective import DEFAULT_ENGINE, Objective, Params

__all__ = ["blocks", "interior_gammas", "probe_point", "GLOBAL", "NOISE_COLUMNS", "NOISE_MIN_BATCHES"]

GLOBAL = "all"  # the block name of whole-model quantities
#: the fewest evaluation batches from which the gradient-noise columns are estimated (the jackknife
#: leaves one out of at least three)
NOISE_MIN_BATCHES = 3
NOISE_COLUMNS = ("grad_norm_unbiased", "grad_sq_unbiased", "grad_sq_unbiased_se", "noise_trace", "noise_trace_se",
                 "one_batch_grad_norm")


def interior_gammas(n: int) -> tuple[float, ...]:
    """Zhang et al.'s grid {1/(n+1), ..., n/(n+1)}."""
    if n < 1:
        raise ValueError(f"need at least one interior point, got n={n}")
    return tuple(k / (n + 1) for k in range(1, n + 1))


def blocks(names: Sequence[str], by: str | None) -> dict[str, list[str]]:
    """Group parameter names: ``"tensor"`` (one block each), ``"layer"`` (by owning module), or None."""
    if by is None:
        return {}
    if by == "tensor":
        return {n: [n] for n in names}
    if by == "layer":
        out: dict[str, list[str]] = {}
        for n in names:
            out.setdefault(n.rsplit(".", 1)[0] if "." in n else n, []).append(n)
        return out
    raise ValueError(f"blocks must be 'tensor', 'layer' or None, got {by!r}")


def _sq(p: Mapping[str, torch.Tensor], names: Iterable[str]) -> float:
    return sum(float((p[n].double() ** 2).sum()) for n in names)


def probe_point(
    objective: Objective, w: Params, *, w_next: Params | None = None, momentum: Mapping[str, torch.Tensor] | None = None,
    gammas: Sequence[float] = interior_gammas(3), by: str | None = None, hessian: bool = True,
    block_hessian: bool = False, block_curvature: bool = False, tol: float = 1e-3, max_hvp: int = 2000,
    seed: int = 0, hvp_engine: str = DEFAULT_ENGINE, warm_start: dict[str, np.ndarray] | None = None,
    progress: bool | None = None,
) -> list[dict]:
    """All probes at ``w``; one dict per block (``block = "all"`` first). Missing values are NaN.

    ``hvp_engine`` is how Hessian-vector products are taken (:meth:`Objective.hvp_operator`):
    ``"graph"`` (double backward through one stored gradient graph, the faster on CPU, at the
    memory cost of that graph) or ``"jvp"`` (forward-over-reverse, recomputed per product).

    ``warm_start`` carries the spectral norms' eigenvectors along a trajectory: a dict from block
    name to the top eigenvector found at the previous point, used as that block's Lanczos start
    (:func:`smoothness.hessian.spectral_norm`) and replaced by this point's if its run converged. Pass the same dict to
    consecutive points; ``{}`` at the first. ``progress`` is passed to the eigensolver's bar.
    """
    if any(not 0 < g <= 1 for g in gammas):
        raise ValueError(f"gammas must lie in (0, 1], got {tuple(gammas)}")
    names = list(w)
    groups = {GLOBAL: names, **blocks(names, by)}
    nan = float("nan")
    k = len(objective.batches)
    if k >= NOISE_MIN_BATCHES:  # the per-batch gradients give f's gradient (their mean) and its noise
        per_batch = objective.batch_grads(w)
        g0 = {n: sum(g[n] for g in per_batch) / k for n in names}
    else:
        per_batch, g0 = None, objective.grad(w)
    rows = {b: {"block": b, "n_params": sum(w[n].numel() for n in ns), "grad_norm": math.sqrt(_sq(g0, ns)),
                "n_noise_batches": k} for b, ns in groups.items()}
    for b, ns in groups.items():
        if per_batch is None:
            rows[b].update({c: nan for c in NOISE_COLUMNS})
        else:
            estimate = estimate_from_gram(gram(per_batch, ns)).as_dict()
            rows[b].update({c: estimate[c] for c in NOISE_COLUMNS})
    rows[GLOBAL]["loss"] = objective.loss(w)
    for b, ns in groups.items():
        have = momentum is not None and all(n in momentum for n in ns)
        rows[b]["momentum_norm"] = math.sqrt(_sq(momentum, ns)) if have else nan

    if w_next is not None:
        d = {n: w_next[n] - w[n] for n in names}
        best = {b: nan for b in groups}
        for gamma in gammas:
            g = objective.grad({n: w[n] + gamma * d[n] for n in names})
            diff = {n: g[n] - g0[n] for n in names}
            for b, ns in groups.items():
                step = gamma * math.sqrt(_sq(d, ns))
                if step > 0:
                    ratio = math.sqrt(_sq(diff, ns)) / step
                    best[b] = ratio if math.isnan(best[b]) else max(best[b], ratio)
        for b, ns in groups.items():
            rows[b]["step_length"] = math.sqrt(_sq(d, ns))
            rows[b]["fd_smoothness"] = best[b]
        rows[GLOBAL]["curvature"] = directional_curvature(objective, w, d, engine=hvp_engine)
        for b, ns in groups.items():
            if b != GLOBAL:
                rows[b]["curvature"] = (directional_curvature(objective, {n: w[n] for n in ns}, {n: d[n] for n in ns},
                                                              engine=hvp_engine) if block_curvature else nan)
    else:
        for b in groups:
            rows[b].update(step_length=nan, fd_smoothness=nan, curvature=nan)

    for b, ns in groups.items():
        if (b == GLOBAL and hessian) or (b != GLOBAL and block_hessian):
            start = warm_start.get(b) if warm_start is not None else None
            result = spectral_norm(objective, {n: w[n] for n in ns}, tol=tol, max_hvp=max_hvp, seed=seed,
                                   engine=hvp_engine, start=start, progress=progress)
            if warm_start is not None and result.vector is not None and result.converged:
                warm_start[b] = result.vector
            rows[b].update(hessian_norm=result.value, hessian_eigenvalue=result.eigenvalue,
                           hessian_converged=result.converged, hessian_residual=result.residual,
                           hessian_n_hvp=result.n_hvp, hessian_warm_start=result.warm_start)
        else:
            rows[b].update(hessian_norm=nan, hessian_eigenvalue=nan, hessian_converged=False,
                           hessian_residual=nan, hessian_n_hvp=0, hessian_warm_start=False)
    for b in groups:
        rows[b].setdefault("loss", nan)
    return list(rows.values())
