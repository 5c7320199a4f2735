r"""Hessian trace and spectral density, by curvlinops' estimators on the probes' own products.

What PyHessian users ask for beside the top eigenvalue, the trace :math:`\operatorname{tr} H` and
the spectral density :math:`p(\lambda) = \frac1n \sum_i \delta(\lambda - \lambda_i)`, comes from
``curvlinops`` (``pip install 'adams-lab[curvature]'``), a well-kept library of curvature linear
operators, rather than from code of ours. Its estimators are applied to *our* Hessian-vector
product (:meth:`smoothness.objective.Objective.hvp_operator`), wrapped as a curvlinops linear
operator by :func:`hessian_operator`; curvlinops' own Hessian operator is not used, because its
product is wrong on models with an affine ``nn.LayerNorm`` under torch 2.13
(``benchmarks/smoothness_probe.py`` measures by how much).

* :func:`hessian_trace`: Hutchinson's estimator or Hutch++ (Meyer et al., 2020), in ``groups``
  independent estimates whose mean is the estimate and whose spread gives its standard error.
* :func:`spectral_density`: stochastic Lanczos quadrature (Papyan, 2020, algorithm 2), averaged
  over ``repeats`` independent runs, with a pointwise standard error across them. The spectrum's
  ends, which set the grid, come from ARPACK with a seeded start.

curvlinops draws its random vectors from torch's global generators; here every draw happens inside
:func:`smoothness.objective.seeded_rng` (every generator forked, seeded from ``seed``), so results
are reproducible and the caller's global RNG state is left as it was.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.integrate import trapezoid
from scipy.sparse.linalg import eigsh

from smoothness.objective import DEFAULT_ENGINE, Objective, Params, seeded_rng

__all__ = ["hessian_operator", "hessian_trace", "spectral_density", "TraceEstimate", "SpectralDensity",
           "TRACE_METHODS"]

TRACE_METHODS = ("hutchinson", "hutch++")
EXTRA = "adams-lab[curvature]"


def _curvlinops():
    try:
        import curvlinops
        from curvlinops._torch_base import PyTorchLinearOperator
    except ImportError as err:
        raise ImportError(f"the Hessian trace and spectral density need curvlinops: pip install '{EXTRA}' "
                          f"(curvlinops-for-pytorch); {err}") from None
    return curvlinops, PyTorchLinearOperator


@functools.cache
def _operator_class():
    _, base = _curvlinops()

    class HessianProducts(base):
        """H(w) of an :class:`Objective` as a curvlinops operator, one product per column."""

        SELF_ADJOINT = True

        def __init__(self, objective: Objective, w: Params, engine: str):
            shapes = [tuple(t.shape) for t in w.values()]
            super().__init__(shapes, shapes)
            self.names = list(w)
            self._product = objective.hvp_operator(w, engine)
            first = next(iter(w.values()))
            self._device, self._dtype = first.device, first.dtype
            self.n_hvp = 0

        @property
        def device(self) -> torch.device:
            return self._device

        @property
        def dtype(self) -> torch.dtype:
            return self._dtype

        def _matmat(self, X: list[torch.Tensor]) -> list[torch.Tensor]:
            columns = []
            for k in range(X[0].shape[-1]):
                hv = self._product({n: x[..., k] for n, x in zip(self.names, X)})
                columns.append([hv[n] for n in self.names])
                self.n_hvp += 1
            return [torch.stack([c[i] for c in columns], dim=-1) for i in range(len(self.names))]

    return HessianProducts


def hessian_operator(objective: Objective, w: Params, engine: str = DEFAULT_ENGINE):
    """The Hessian of ``objective`` at ``w`` (the block of the names in ``w``) as a curvlinops
    ``PyTorchLinearOperator``: ``op @ X`` takes one Hessian-vector product per column of ``X``
    (counted in ``op.n_hvp``); ``op.to_scipy()`` gives a scipy ``LinearOperator``."""
    if not w:
        raise ValueError("w holds no parameters")
    return _operator_class()(objective, w, engine)


def _seeds(seed: int, n: int) -> list[int]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(n, dtype=np.uint64) % (2**63)]


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class TraceEstimate:
    """An estimate of tr H from ``groups`` independent estimates of ``n_hvp / groups`` products each."""

    value: float
    se: float  # standard error: the spread of the group estimates / sqrt(groups)
    groups: int
    n_hvp: int
    method: str
    estimates: tuple[float, ...]  # the independent group estimates


def hessian_trace(
    objective: Objective, w: Params, *, num_matvecs: int = 30, groups: int = 5, method: str = "hutch++",
    distribution: str = "rademacher", seed: int = 0, engine: str = DEFAULT_ENGINE,
) -> TraceEstimate:
    """tr of the Hessian (block) at ``w``: the mean of ``groups`` independent estimates by
    curvlinops' ``hutchpp_trace`` (``method="hutch++"``) or ``hutchinson_trace``, each from
    ``num_matvecs`` products (for Hutch++ a multiple of 3), and its standard error.

    Hutch++ spends a third of its products finding the largest eigen-directions and takes their
    part of the trace exactly, so it wins when a few eigenvalues dominate, as they do in Hessians
    of trained networks. Each estimator needs fewer products than the block has weights (with as
    many, the trace is exact from the dense Hessian)."""
    curvlinops, _ = _curvlinops()
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")
    num_matvecs = _positive_int("num_matvecs", num_matvecs)
    groups = _positive_int("groups", groups, 2)
    n = sum(t.numel() for t in w.values())
    if num_matvecs >= n:
        raise ValueError(f"num_matvecs={num_matvecs} must be below the block's {n} weights (with n products "
                         "the trace is exact: use smoothness.hessian.dense_hessian)")
    if method == "hutch++" and num_matvecs % 3:
        raise ValueError(f"Hutch++ splits its products in three: num_matvecs must be a multiple of 3, got {num_matvecs}")
    estimator = curvlinops.hutchpp_trace if method == "hutch++" else curvlinops.hutchinson_trace
    op = hessian_operator(objective, w, engine)
    estimates = []
    for s in _seeds(seed, groups):
        with seeded_rng(s):
            estimates.append(float(estimator(op, num_matvecs, distribution=distribution)))
    values = np.array(estimates)
    return TraceEstimate(float(values.mean()), float(values.std(ddof=1) / np.sqrt(groups)), groups, op.n_hvp,
                         method, tuple(estimates))


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    """p(lambda) on a grid: the mean over ``repeats`` Lanczos quadratures and its pointwise spread."""

    grid: np.ndarray
    density: np.ndarray
    se: np.ndarray  # standard error of the mean density at each grid point
    boundaries: tuple[float, float]  # the estimated smallest and largest eigenvalue
    ncv: int
    repeats: int
    n_hvp: int
    densities: np.ndarray = field(repr=False)  # (repeats, points): one density per Lanczos run

    def mass(self, low: float = -np.inf, high: float = np.inf) -> tuple[float, float]:
        """The fraction of eigenvalues in [low, high] by the trapezoid rule, and its standard error
        (across the repeats)."""
        inside = (self.grid >= low) & (self.grid <= high)
        if inside.sum() < 2:
            return 0.0, 0.0
        per_repeat = trapezoid(self.densities[:, inside], self.grid[inside], axis=1)
        return float(per_repeat.mean()), float(per_repeat.std(ddof=1) / np.sqrt(self.repeats))

    def moment(self, k: int = 1) -> tuple[float, float]:
        """The k-th moment of the density (k = 1: about tr H / n) and its standard error."""
        per_repeat = trapezoid(self.densities * self.grid ** k, self.grid, axis=1)
        return float(per_repeat.mean()), float(per_repeat.std(ddof=1) / np.sqrt(self.repeats))


def spectral_density(
    objective: Objective, w: Params, *, ncv: int = 64, repeats: int = 8, num_points: int = 1024,
    kappa: float = 3.0, margin: float = 0.05, boundaries: tuple[float, float] | None = None,
    boundaries_tol: float = 1e-2, seed: int = 0, engine: str = DEFAULT_ENGINE,
) -> SpectralDensity:
    """The Hessian's spectral density at ``w`` by curvlinops' ``lanczos_approximate_spectrum``:
    ``repeats`` runs of ``ncv`` Lanczos steps from random starts, each a Gaussian-smoothed
    quadrature (width set by ``kappa``, as in Papyan 2020), averaged. ``boundaries`` (smallest,
    largest eigenvalue) are estimated by ARPACK to ``boundaries_tol`` if not given. Costs
    ``repeats * ncv`` products plus those of the boundaries."""
    curvlinops, _ = _curvlinops()
    from curvlinops.papyan2020traces.spectrum import lanczos_approximate_spectrum

    repeats = _positive_int("repeats", repeats, 2)
    ncv = _positive_int("ncv", ncv, 2)
    num_points = _positive_int("num_points", num_points, 2)
    n = sum(t.numel() for t in w.values())
    if ncv >= n:
        raise ValueError(f"ncv={ncv} Lanczos vectors must be fewer than the block's {n} weights")
    op = hessian_operator(objective, w, engine)
    seeds = _seeds(seed, repeats + 1)
    if boundaries is None:
        v0 = np.random.default_rng(seeds[-1]).standard_normal(n)
        low, high = eigsh(op.to_scipy(np.float64), k=2, which="BE", tol=boundaries_tol, v0=v0,
                          return_eigenvectors=False)
        boundaries = (float(low), float(high))
    low, high = (float(b) for b in boundaries)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"boundaries must be finite with smallest < largest, got {boundaries!r}")
    densities, grid = [], None
    for s in seeds[:repeats]:
        with seeded_rng(s):
            grid, density = lanczos_approximate_spectrum(op, ncv, num_points=num_points, num_repeats=1, kappa=kappa,
                                                         boundaries=(low, high), margin=margin)
        densities.append(density.double().cpu().numpy())
    densities = np.stack(densities)
    return SpectralDensity(grid.double().cpu().numpy(), densities.mean(0),
                           densities.std(0, ddof=1) / np.sqrt(repeats), (low, high), ncv, repeats, op.n_hvp,
                           densities)
