"""Curvature from Hessian-vector products: the spectral norm (largest |eigenvalue|) and d^T H d / |d|^2.

The spectral norm is what (L0, L1)-smoothness bounds, and it is max |lambda|, not the largest
algebraic eigenvalue: a dominant negative eigenvalue counts (``../shared/docs/ADAMS.md`` section 3).
:func:`spectral_norm` asks scipy's ARPACK Lanczos (``eigsh``, ``which="LM"``) for it, on a
``LinearOperator`` whose matvec is one Hessian-vector product. ARPACK's ``tol`` is the relative
accuracy of the eigenvalue; the result reports whether it converged, the residual
|H v - lambda v| / |lambda| of the returned vector, and how many products it used. Lanczos reaches a
given accuracy in far fewer products than power iteration when the top eigenvalues are close.

Tiny problems (fewer than :data:`DENSE_BELOW` weights) are solved exactly from the dense Hessian
built column by column, since ARPACK needs more than a few dimensions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from smoothness.objective import Objective, Params

__all__ = ["SpectralNorm", "spectral_norm", "hessian_spectral_norm", "directional_curvature",
           "flatten", "unflatten"]

DENSE_BELOW = 16


def flatten(p: Params) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in p.values()])


def unflatten(vec: torch.Tensor, like: Params) -> Params:
    out, start = {}, 0
    for name, t in like.items():
        out[name] = vec[start:start + t.numel()].view_as(t)
        start += t.numel()
    return out


@dataclass(frozen=True)
class SpectralNorm:
    """max |eigenvalue| of the Hessian (block) and how it was obtained."""

    value: float  # |lambda|
    eigenvalue: float  # signed lambda with the largest magnitude
    converged: bool
    residual: float  # |H v - lambda v| / |lambda| for the returned unit vector v
    n_hvp: int
    tol: float
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def spectral_norm(
    objective: Objective, w: Params, *, tol: float = 1e-3, max_hvp: int = 2000, seed: int = 0,
) -> SpectralNorm:
    """Largest-magnitude Hessian eigenvalue of ``objective`` at ``w`` (the block of the names in ``w``)."""
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    n = sum(t.numel() for t in w.values())
    dtype = next(iter(w.values())).dtype
    count = [0]

    def matvec(x: np.ndarray) -> np.ndarray:
        count[0] += 1
        v = unflatten(torch.as_tensor(np.asarray(x, dtype=np.float64).ravel()).to(dtype), w)
        return flatten(objective.hvp(w, v)).double().numpy()

    if n < DENSE_BELOW:
        H = np.stack([matvec(e) for e in np.eye(n)], axis=1)
        evals, evecs = np.linalg.eigh((H + H.T) / 2)
        i = int(np.argmax(np.abs(evals)))
        lam, vec, converged = float(evals[i]), evecs[:, i], True
    else:
        op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        v0 = np.random.default_rng(seed).standard_normal(n)
        try:
            evals, evecs = eigsh(op, k=1, which="LM", tol=tol, v0=v0, maxiter=max(1, max_hvp // 20))
            lam, vec, converged = float(evals[0]), evecs[:, 0], True
        except ArpackNoConvergence as err:
            if len(err.eigenvalues) == 0:
                return SpectralNorm(float("nan"), float("nan"), False, float("nan"), count[0], tol, objective.hvp_method)
            lam, vec, converged = float(err.eigenvalues[0]), err.eigenvectors[:, 0], False
    n_used = count[0]
    hv = matvec(vec)  # one more product to report the residual honestly
    residual = float(np.linalg.norm(hv - lam * vec) / max(abs(lam), np.finfo(float).tiny))
    return SpectralNorm(abs(lam), lam, converged, residual, n_used + 1, tol, objective.hvp_method)


def hessian_spectral_norm(
    model: torch.nn.Module, loss_fn, batch: Any, *, params=None, mode: str = "eval",
    dtype: torch.dtype | None = None, tol: float = 1e-3, max_hvp: int = 2000, seed: int = 0,
) -> SpectralNorm:
    """Spectral norm of the Hessian of ``loss_fn(model, batch)`` at the model's current weights.

    ``params`` (parameter names) restricts it to that diagonal block; ``batch`` may be a list of
    batches (f is their mean). See :class:`smoothness.objective.Objective` for mode, dtype and seed.
    """
    objective = Objective(model, loss_fn, batch, mode=mode, dtype=dtype, seed=seed, params=params)
    return spectral_norm(objective, objective.weights(), tol=tol, max_hvp=max_hvp, seed=seed)


def directional_curvature(objective: Objective, w: Params, d: Params) -> float:
    """d^T H d / |d|^2 at ``w`` (one Hessian-vector product); NaN for d = 0."""
    dd = sum(float((t * t).sum()) for t in d.values())
    if dd == 0:
        return float("nan")
    hd = objective.hvp(w, d)
    return sum(float((d[n] * hd[n]).sum()) for n in d) / dd
