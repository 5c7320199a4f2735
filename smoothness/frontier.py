r"""Fitting (L0, L1) pairs to measured local smoothness: the sample frontier and how to read it.

A function is (L0, L1)-smooth when :math:`\|\nabla^2 f(x)\| \le L_0 + L_1 \|\nabla f(x)\|` everywhere
(Zhang, He, Sra, Jadbabaie, ICLR 2020). There is no single smallest pair: for each L1 the smallest
valid L0 is :math:`L_0^*(L_1) = \sup_x (\|\nabla^2 f(x)\| - L_1\|\nabla f(x)\|)^+`, a convex,
non-increasing function of L1 (a supremum of affine functions of L1, clipped at 0). Along a
trajectory only finitely many points are seen, so :func:`frontier` returns the *sample* frontier:
the max over the measured points (a lower bound of the true one), or a high quantile instead of the
max (``quantile=0.95``: robust to a few outlying points, but no longer a bound even on the sample).

:func:`frontier_band` gives bootstrap percentile bands (resampling the points). For the max, every
bootstrap value is at most the full-sample value, so the band only shows how much the frontier
depends on the few points that attain it. :func:`choose_pair` picks one pair by minimizing a bound
expression over the frontier; :func:`trend_line` fits log L = a + b log |grad f| by least squares
*for display only*: a trend through the cloud, not an upper bound.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["frontier", "frontier_band", "choose_pair", "trend_line", "MIN_BOOT"]

MIN_BOOT = 1  # bootstrap resamples that frontier_band needs at least


def _points(local_smoothness, grad_norm) -> tuple[np.ndarray, np.ndarray]:
    L = np.asarray(local_smoothness, dtype=float).ravel()
    G = np.asarray(grad_norm, dtype=float).ravel()
    if L.shape != G.shape:
        raise ValueError(f"local_smoothness and grad_norm must have the same length, got {L.size} and {G.size}")
    keep = np.isfinite(L) & np.isfinite(G)
    if not keep.any():
        raise ValueError("no point has both a finite local smoothness and a finite gradient norm")
    if np.any(G[keep] < 0):
        raise ValueError("gradient norms must be >= 0")
    return L[keep], G[keep]


def _l1_grid(l1) -> np.ndarray:
    l1 = np.atleast_1d(np.asarray(l1, dtype=float))
    if np.any(~np.isfinite(l1)) or np.any(l1 < 0):
        raise ValueError("l1 values must be finite and >= 0")
    return l1


def frontier(local_smoothness, grad_norm, l1, *, quantile: float | None = None) -> np.ndarray:
    """L0*(L1) = max over points of (L_hat - L1 |grad f|)^+ for each value in ``l1``.

    With ``quantile`` the max is replaced by that quantile of the points' L_hat - L1 |grad f|.

    >>> frontier([2.0, 5.0], [0.0, 3.0], [0.0, 1.0, 2.0])
    array([5., 2., 2.])
    """
    L, G = _points(local_smoothness, grad_norm)
    l1 = _l1_grid(l1)
    gaps = L[None, :] - l1[:, None] * G[None, :]
    if quantile is None:
        value = gaps.max(axis=1)
    else:
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
        value = np.quantile(gaps, quantile, axis=1)
    return np.maximum(value, 0.0)


def frontier_band(
    local_smoothness, grad_norm, l1, *, quantile: float | None = None, n_boot: int = 1000,
    level: float = 0.9, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap percentile band (``level``, two-sided) of the sample frontier, resampling points.

    ``n_boot`` must be an integer of at least :data:`MIN_BOOT` (the percentiles need one resample).
    """
    L, G = _points(local_smoothness, grad_norm)
    l1 = _l1_grid(l1)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < MIN_BOOT:
        raise ValueError(f"n_boot must be an integer >= {MIN_BOOT}, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, l1.size))
    for b in range(n_boot):
        idx = rng.integers(0, L.size, L.size)
        draws[b] = frontier(L[idx], G[idx], l1, quantile=quantile)
    alpha = (1 - level) / 2
    return np.quantile(draws, alpha, axis=0), np.quantile(draws, 1 - alpha, axis=0)


def choose_pair(
    local_smoothness, grad_norm, bound: Callable[[float, float], float], l1, *, quantile: float | None = None,
) -> tuple[float, float, float]:
    """The (L0, L1) on the sample frontier that minimizes ``bound(L0, L1)`` over the grid ``l1``.

    Returns (L0, L1, bound value). Example bound: the clipped-GD iteration count
    ``lambda l0, l1: l0 / eps**2 + l1**2 / l0`` (up to constants).
    """
    l1 = _l1_grid(l1)
    l0 = frontier(local_smoothness, grad_norm, l1, quantile=quantile)
    values = np.array([bound(float(a), float(b)) for a, b in zip(l0, l1)], dtype=float)
    if not np.any(np.isfinite(values)):
        raise ValueError("the bound is not finite at any point of the frontier")
    i = int(np.nanargmin(np.where(np.isfinite(values), values, np.nan)))
    return float(l0[i]), float(l1[i]), float(values[i])


def trend_line(local_smoothness, grad_norm) -> tuple[float, float]:
    """Least-squares line log L_hat = intercept + slope log |grad f| (positive points only).

    For display: it runs through the middle of the cloud, so about half of the points lie above
    it. It is not an upper bound and not an (L0, L1) pair. Returns (slope, intercept).
    """
    L, G = _points(local_smoothness, grad_norm)
    keep = (L > 0) & (G > 0)
    if keep.sum() < 2:
        raise ValueError("a trend line needs at least two points with positive L_hat and gradient norm")
    slope, intercept = np.polyfit(np.log(G[keep]), np.log(L[keep]), 1)
    return float(slope), float(intercept)
