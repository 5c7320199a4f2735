"""Curvature from Hessian-vector products: the spectral norm (largest |eigenvalue|) and d^T H d / |d|^2.

The spectral norm is what (L0, L1)-smoothness bounds, and it is max |lambda|, not the largest
algebraic eigenvalue: a dominant negative eigenvalue counts (``docs/algorithm.md`` §3).
:func:`spectral_norm` asks scipy's ARPACK Lanczos (``eigsh``, ``which="LM"``) for it, on a
``LinearOperator`` whose matvec is one Hessian-vector product. ARPACK's ``tol`` is the relative
accuracy of the eigenvalue; the result reports whether it converged, the residual
|H v - lambda v| / |lambda| of the returned vector, and how many products it used. Lanczos reaches a
given accuracy in far fewer products than power iteration when the top eigenvalues are close; when
the top one stands well apart, both need a couple of dozen (``benchmarks/smoothness_probe.py``).

Tiny problems (fewer than :data:`DENSE_BELOW` weights) are solved exactly from the dense Hessian
built column by column, since ARPACK needs more than a few dimensions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from smoothness.objective import DEFAULT_ENGINE, Objective, Params

__all__ = ["SpectralNorm", "spectral_norm", "hessian_spectral_norm", "directional_curvature", "dense_hessian",
           "flatten", "unflatten"]

DENSE_BELOW = 16
#: the norm of the seeded random vector added to a warm start of unit norm: with 0.1, a start on
#: the eigenvector of a top eigenvalue that another overtook (2.0 under 2.1, n = 1000) stopped on
#: 2.0 as converged for 6 of 20 seeds at tol=1e-3; with 0.5, for none (as from random starts)
WARM_START_NOISE = 0.5


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
    warm_start: bool = False  # whether Lanczos started from a given vector (``start``)
    #: the unit eigenvector (float32), to warm-start the next checkpoint; not part of :meth:`as_dict`
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "vector"}


def spectral_norm(
    objective: Objective, w: Params, *, tol: float = 1e-3, max_hvp: int = 2000, seed: int = 0,
    engine: str = DEFAULT_ENGINE, ncv: int = 8, start: np.ndarray | None = None, progress: bool | None = None,
) -> SpectralNorm:
    """Largest-magnitude Hessian eigenvalue of ``objective`` at ``w`` (the block of the names in ``w``).

    ``engine`` picks how products are taken (:meth:`Objective.hvp_operator`: ``"graph"`` or
    ``"jvp"``); ``ncv`` is the number of Lanczos vectors ARPACK keeps, which is also the number of
    products before its first convergence check (small values check sooner; 8 needs about half the
    products of ARPACK's default 20 at ``tol=1e-3``; fewer let a warm start stop on the wrong
    eigenvalue: 4 left some blocks of a trained GPT 4% off).

    ``start`` warm-starts Lanczos: a vector of the block's size, usually the ``vector`` of the result
    at the previous checkpoint of a trajectory, whose Hessian is close. The start is that vector
    plus a seeded random one of :data:`WARM_START_NOISE` times its norm. The random part is what
    keeps a warm start honest: Lanczos asked for one eigenvalue stops at the first Ritz value that
    meets ``tol``, and a start leaning on the eigenvector of what was the top eigenvalue stops on
    it after the top has moved to another (measured: 5% low, reported as converged, with a random
    part of 0.1). With 0.5 none of those runs went wrong, and none saved products either, so warm
    starts are opt-in; ``benchmarks/smoothness_probe.py`` measures them on a trajectory. ``progress`` shows a bar of the products taken
    (None: only on a terminal, and only once a solve has run for a few seconds).
    """
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    if isinstance(ncv, bool) or not isinstance(ncv, int) or ncv < 3:
        raise ValueError(f"ncv must be an int >= 3 (ARPACK keeps more vectors than the one it returns), got {ncv!r}")
    n = sum(t.numel() for t in w.values())
    dtype, device = next(iter(w.values())).dtype, next(iter(w.values())).device
    product = objective.hvp_operator(w, engine)
    bar = tqdm(disable=None if progress is None else not progress, delay=5, leave=False, unit="HVP",
               desc=f"Lanczos, {n:,} weights")
    count = [0]

    def matvec(x: np.ndarray) -> np.ndarray:
        count[0] += 1
        bar.update()
        v = unflatten(torch.as_tensor(np.asarray(x, dtype=np.float64).ravel()).to(device, dtype), w)
        return flatten(product(v)).double().cpu().numpy()

    v0 = _start_vector(n, seed, start)  # checks start's size on either path
    warm = start is not None and n >= DENSE_BELOW  # the dense path has no start
    with bar:
        if n < DENSE_BELOW:
            H = np.stack([matvec(e) for e in np.eye(n)], axis=1)
            evals, evecs = np.linalg.eigh((H + H.T) / 2)
            i = int(np.argmax(np.abs(evals)))
            lam, vec, converged = float(evals[i]), evecs[:, i], True
        else:
            op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
            try:
                # ARPACK's BLAS threads spin between calls and steal the cores the products run on
                # (measured: 1.5x slower per product on 2 cores), so ARPACK gets one thread.
                with threadpool_limits(limits=1, user_api="blas"):
                    evals, evecs = eigsh(op, k=1, which="LM", tol=tol, v0=v0, ncv=min(ncv, n - 1),
                                         maxiter=max(1, max_hvp // max(1, ncv - 1)))
                lam, vec, converged = float(evals[0]), evecs[:, 0], True
            except ArpackNoConvergence as err:
                if len(err.eigenvalues) == 0:
                    return SpectralNorm(float("nan"), float("nan"), False, float("nan"), count[0], tol,
                                        objective.engine_method(engine), warm)
                lam, vec, converged = float(err.eigenvalues[0]), err.eigenvectors[:, 0], False
        n_used = count[0]
        hv = matvec(vec)  # one more product to report the residual honestly
    residual = float(np.linalg.norm(hv - lam * vec) / max(abs(lam), np.finfo(float).tiny))
    method = objective.engine_method(engine)
    # float32 is plenty for a start vector and halves what a trajectory keeps between checkpoints
    return SpectralNorm(abs(lam), lam, converged, residual, n_used + 1, tol, method, warm, vec.astype(np.float32))


def _start_vector(n: int, seed: int, start: np.ndarray | None) -> np.ndarray:
    """Lanczos's start: seeded Gaussian, or ``start`` with a little of it mixed in."""
    noise = np.random.default_rng(seed).standard_normal(n)
    if start is None:
        return noise
    start = np.asarray(start, dtype=np.float64).ravel()
    if start.shape != (n,):
        raise ValueError(f"start has {start.size} entries, the block has {n} weights")
    norm = np.linalg.norm(start)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("start must be a finite, non-zero vector")
    return start / norm + WARM_START_NOISE * noise / np.linalg.norm(noise)


def hessian_spectral_norm(
    model: torch.nn.Module, loss_fn, batch: Any, *, params=None, mode: str = "eval",
    dtype: torch.dtype | None = None, tol: float = 1e-3, max_hvp: int = 2000, seed: int = 0,
    engine: str = DEFAULT_ENGINE, device: str | torch.device | None = None, progress: bool | None = None,
) -> SpectralNorm:
    """Spectral norm of the Hessian of ``loss_fn(model, batch)`` at the model's current weights.

    ``params`` (parameter names) restricts it to that diagonal block; ``batch`` may be a list of
    batches (f is their mean). See :class:`smoothness.objective.Objective` for mode, dtype and seed.
    """
    objective = Objective(model, loss_fn, batch, mode=mode, dtype=dtype, seed=seed, params=params, device=device)
    return spectral_norm(objective, objective.weights(), tol=tol, max_hvp=max_hvp, seed=seed, engine=engine,
                         progress=progress)


def directional_curvature(objective: Objective, w: Params, d: Params, *, engine: str = DEFAULT_ENGINE) -> float:
    """d^T H d / |d|^2 at ``w`` (one Hessian-vector product, taken by ``engine``); NaN for d = 0."""
    dd = sum(float((t * t).sum()) for t in d.values())
    if dd == 0:
        return float("nan")
    hd = objective.hvp_operator(w, engine)(d)
    return sum(float((d[n] * hd[n]).sum()) for n in d) / dd


def dense_hessian(objective: Objective, w: Params) -> torch.Tensor:
    """The full Hessian of ``objective`` at ``w`` as an n x n tensor, in the order of ``flatten(w)``.

    Row by row by double backward: the gradient is built once with ``create_graph=True`` and row i
    is the gradient of its i-th entry. n backward passes and n^2 entries, so for checking the
    matrix-free probes on small models only. Not ``torch.func.hessian``: its forward-over-reverse
    Hessian is wrong for models with an affine ``nn.LayerNorm`` (entries of the LayerNorm weight
    off by several per cent under torch 2.13; ``tests/smoothness/test_smoothness_probes.py`` checks
    this function against finite differences on such a model).
    """
    leaves = {n: t.detach().requires_grad_(True) for n, t in w.items()}
    with torch.enable_grad():
        loss = sum(objective._call(leaves, b) for b in objective.batches) / len(objective.batches)
        g = flatten(dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), create_graph=True))))
        rows = []
        for i in range(g.numel()):
            parts = torch.autograd.grad(g[i], list(leaves.values()), retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(p if p is not None else torch.zeros_like(t)).reshape(-1)
                                   for p, t in zip(parts, leaves.values())]))
    return torch.stack(rows).detach()
