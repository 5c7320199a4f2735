r"""Stationary statistics of AdamS's denominator V and Adam's second moment S, in closed form.

One coordinate with gradients :math:`g_t = \mu + \sigma\xi_t` (i.i.d. standardized noise, Gaussian by
default; ``docs/algorithm.md`` §2):

.. math::

    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
    S_t = \beta_2 S_{t-1} + (1-\beta_2) g_t^2, \quad
    V_t = \beta_2 m_{t-1}^2 + (1-\beta_2) g_t^2 .

With :math:`a = (1-\beta_1)/(1+\beta_1)` and :math:`r = \mu/\sigma`, Gaussian noise gives

.. math::

    E[m] = \mu,\quad \mathrm{Var}[m] = a\sigma^2,\quad
    E[S] = \mu^2 + \sigma^2,\quad \mathrm{Var}[S] = \tfrac{1-\beta_2}{1+\beta_2}(4\mu^2\sigma^2 + 2\sigma^4),

    E[V] = \mu^2 + \sigma^2\,(\beta_2 a + 1 - \beta_2),\quad
    \mathrm{Var}[V] = \beta_2^2 (4\mu^2 a\sigma^2 + 2a^2\sigma^4) + (1-\beta_2)^2 (4\mu^2\sigma^2 + 2\sigma^4).

These functions are written out by hand with plain arithmetic (so that they also accept sympy
symbols) and ``tests/analysis/stationary/test_stationary.py`` checks them symbolically against the derivation in
:mod:`analysis.stationary.derivations`. The Monte Carlo is :mod:`analysis.stationary.simulation`.

>>> out = moments(mu=1.0, sigma=1.0, beta1=0.9, beta2=0.95)
>>> round(float(out["E_V"] / out["E_S"]), 4), round(float(out["Var_V"] / out["Var_S"]), 4)
(0.55, 1.365)
"""
from __future__ import annotations

from typing import Any

import numpy as np

import adams
from analysis.stationary._grid import check_grid

__all__ = ["moments", "transient", "ratio_limits", "equalizing_beta2", "adams_step_bound", "adam_step_bound",
           "standard_grid", "agreement_from"]


def _closed_forms(mu, sigma, beta1, beta2, skewness=0, kurtosis=3) -> dict[str, Any]:
    """Stationary means and variances; plain arithmetic only (works on arrays and on sympy symbols)."""
    a = (1 - beta1) / (1 + beta1)
    u2 = a * sigma**2  # E[(m - mu)^2]: sum of squared EMA weights, times sigma^2
    u3 = skewness * sigma**3 * (1 - beta1) ** 3 / (1 - beta1**3)  # third cumulants add
    u4 = 3 * u2**2 + (kurtosis - 3) * sigma**4 * (1 - beta1) ** 4 / (1 - beta1**4)  # so do fourth
    E_g2 = mu**2 + sigma**2
    # Var[g^2] and Var[m^2] expanded around the mean, so no mu^4 terms cancel numerically.
    Var_g2 = 4 * mu**2 * sigma**2 + 4 * skewness * mu * sigma**3 + (kurtosis - 1) * sigma**4
    Var_m2 = 4 * mu**2 * u2 + 4 * mu * u3 + u4 - u2**2
    return {
        "E_m": mu + 0 * a,
        "Var_m": u2,
        "E_S": E_g2 + 0 * beta2,
        "Var_S": (1 - beta2) / (1 + beta2) * Var_g2,  # sum of squared EMA weights of g_t^2
        "E_V": beta2 * (mu**2 + u2) + (1 - beta2) * E_g2,
        "Var_V": beta2**2 * Var_m2 + (1 - beta2) ** 2 * Var_g2,  # m_{t-1} independent of g_t
    }


def _check(mu, sigma, beta1, beta2, skewness=0.0, kurtosis=3.0):
    """:func:`check_grid`, after checking that the noise's moments are finite real numbers."""
    for name, value in (("skewness", skewness), ("kurtosis", kurtosis)):
        real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not (real and np.isfinite(value)):
            raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return check_grid(mu, sigma, beta1, beta2, skewness, kurtosis)


def moments(mu, sigma, beta1, beta2, *, skewness: float = 0.0, kurtosis: float = 3.0) -> dict[str, np.ndarray]:
    """Stationary E and Var of m, V (AdamS) and S (Adam), broadcast over the inputs.

    Keys: ``E_m``, ``Var_m``, ``E_V``, ``Var_V``, ``E_S``, ``Var_S``. ``skewness`` and ``kurtosis``
    are E[xi^3] and E[xi^4] of the standardized noise (Gaussian: 0 and 3); the forms hold for any
    i.i.d. noise with these moments (Student-t with nu > 4 degrees of freedom: 3 + 6/(nu - 4)).
    """
    mu, sigma, beta1, beta2 = _check(mu, sigma, beta1, beta2, skewness, kurtosis)
    return {k: np.asarray(v, dtype=float) for k, v in _closed_forms(mu, sigma, beta1, beta2, skewness, kurtosis).items()}


def transient(
    mu, sigma, beta1, beta2, steps: int, *, bias_correction: bool = False,
    skewness: float = 0.0, kurtosis: float = 3.0,
) -> dict[str, np.ndarray]:
    """E and Var of m_t, V_t, S_t for t = 1..steps from m_0 = S_0 = 0, by the exact moment recursions.

    Returns arrays of shape ``broadcast(inputs) + (steps,)``. The raw moments M_k(t) = E[m_t^k]
    follow M_k(t) = sum_j C(k, j) beta1^j (1 - beta1)^(k-j) M_j(t-1) E[g^(k-j)] (g_t independent of
    m_{t-1}); likewise for S_t with the moments of g^2. With ``bias_correction`` the optimizers'
    estimates are used: m_t / c_t and V_t = beta2 (m_{t-1} / c_t)^2 + (1 - beta2) g_t^2 with
    c_t = 1 - beta1^t (this package's AdamS), and S_t / (1 - beta2^t) (Adam).
    """
    mu, sigma, beta1, beta2 = _check(mu, sigma, beta1, beta2, skewness, kurtosis)
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    steps = int(steps)
    G = [np.ones_like(mu), mu, mu**2 + sigma**2, mu**3 + 3 * mu * sigma**2 + skewness * sigma**3,
         mu**4 + 6 * mu**2 * sigma**2 + 4 * skewness * mu * sigma**3 + kurtosis * sigma**4]
    binom = [[1], [1, 1], [1, 2, 1], [1, 3, 3, 1], [1, 4, 6, 4, 1]]
    M = [np.ones_like(mu)] + [np.zeros_like(mu)] * 4  # raw moments of m_{t-1}, starting at m_0 = 0
    S1, S2 = np.zeros_like(mu), np.zeros_like(mu)  # E[S_{t-1}], E[S_{t-1}^2]
    out = {k: np.empty(mu.shape + (steps,)) for k in ("E_m", "Var_m", "E_V", "Var_V", "E_S", "Var_S")}
    for i in range(steps):
        t = i + 1
        c1 = 1 - beta1**t if bias_correction else 1.0
        c2 = 1 - beta2**t if bias_correction else 1.0
        # V_t uses m_{t-1} (divided by c_t in the bias-corrected form) and the fresh g_t.
        E_V = beta2 * M[2] / c1**2 + (1 - beta2) * G[2]
        E_V2 = beta2**2 * M[4] / c1**4 + 2 * beta2 * (1 - beta2) * M[2] / c1**2 * G[2] + (1 - beta2) ** 2 * G[4]
        M = [sum(binom[k][j] * beta1**j * (1 - beta1) ** (k - j) * M[j] * G[k - j] for j in range(k + 1))
             for k in range(5)]
        S1, S2 = (beta2 * S1 + (1 - beta2) * G[2],
                  beta2**2 * S2 + 2 * beta2 * (1 - beta2) * S1 * G[2] + (1 - beta2) ** 2 * G[4])
        out["E_m"][..., i] = M[1] / c1
        out["Var_m"][..., i] = (M[2] - M[1] ** 2) / c1**2
        out["E_V"][..., i] = E_V
        out["Var_V"][..., i] = E_V2 - E_V**2
        out["E_S"][..., i] = S1 / c2
        out["Var_S"][..., i] = (S2 - S1**2) / c2**2
    return out


def ratio_limits(beta1, beta2) -> dict[str, np.ndarray]:
    """E[V]/E[S] and Var[V]/Var[S] (Gaussian noise) in the large-batch (mu/sigma -> oo) and
    noise-dominated (mu/sigma -> 0) limits; keys ``E_large_batch``, ``E_noise``, ``Var_large_batch``,
    ``Var_noise``.

    Large batch: the means agree (ratio 1), and the variances agree exactly when beta2 = beta1.
    Noise-dominated: E[V]/E[S] = beta2 a + 1 - beta2 with a = (1 - beta1)/(1 + beta1), well below 1.

    >>> {k: round(float(v), 4) for k, v in ratio_limits(0.9, 0.9).items()}
    {'E_large_batch': 1.0, 'E_noise': 0.1474, 'Var_large_batch': 1.0, 'Var_noise': 0.2326}
    """
    _, _, beta1, beta2 = _check(0.0, 1.0, beta1, beta2)
    a = (1 - beta1) / (1 + beta1)
    widen = (1 + beta2) / (1 - beta2)  # 1 / (sum of squared EMA weights of S)
    return {
        "E_large_batch": np.ones_like(a),
        "E_noise": beta2 * a + 1 - beta2,
        "Var_large_batch": (beta2**2 * a + (1 - beta2) ** 2) * widen,
        "Var_noise": (beta2**2 * a**2 + (1 - beta2) ** 2) * widen,
    }


def equalizing_beta2(snr, beta1, *, skewness: float = 0.0, kurtosis: float = 3.0) -> np.ndarray:
    """The beta2 at which Var[V] = Var[S], as a function of mu/sigma and beta1.

    Writing Var[V] = beta2^2 Var[m^2] + (1 - beta2)^2 Var[g^2] and Var[S] = (1 - beta2)/(1 + beta2)
    Var[g^2], the equation reduces to beta2 = (Var[g^2] - Var[m^2]) / (Var[g^2] + Var[m^2]).
    Above this beta2 AdamS's denominator fluctuates more than Adam's, below it less. It tends to
    beta1 for large mu/sigma and to (1 - a^2)/(1 + a^2), a = (1 - beta1)/(1 + beta1), for small.

    >>> round(float(equalizing_beta2(1e6, 0.9)), 6), round(float(equalizing_beta2(0.0, 0.9)), 4)
    (0.9, 0.9945)
    """
    mu, sigma, beta1, _ = _check(snr, 1.0, beta1, 0.0, skewness, kurtosis)
    a = (1 - beta1) / (1 + beta1)
    u2, u3 = a, skewness * (1 - beta1) ** 3 / (1 - beta1**3)
    u4 = 3 * a**2 + (kurtosis - 3) * (1 - beta1) ** 4 / (1 - beta1**4)
    var_m2 = 4 * mu**2 * u2 + 4 * mu * u3 + u4 - u2**2
    var_g2 = 4 * mu**2 + 4 * skewness * mu + kurtosis - 1
    return (var_g2 - var_m2) / (var_g2 + var_m2)


def adams_step_bound(beta1, beta2) -> np.ndarray:
    """sup |m_t| / sqrt(V_t) at eps = 0 (any gradients), elementwise over arrays of betas:
    :func:`adams.step_bound` (paper-text form), the one place the constant is computed."""
    _, _, beta1, beta2 = _check(0.0, 1.0, beta1, beta2)
    return np.vectorize(adams.step_bound, otypes=[float])(beta1, beta2)


def adam_step_bound(beta1, beta2) -> np.ndarray:
    """sup |m_t| / sqrt(S_t) at eps = 0 over all gradient histories (finite only if beta1^2 < beta2).

    m_t = (1 - beta1) sum_k beta1^k g_{t-k} and S_t = (1 - beta2) sum_k beta2^k g_{t-k}^2, so by
    Cauchy-Schwarz |m_t| <= (1 - beta1) sqrt(sum_k beta1^(2k) / beta2^k) sqrt(S_t / (1 - beta2)),
    i.e. the bound (1 - beta1) / sqrt((1 - beta2)(1 - beta1^2/beta2)), approached by a long history.
    """
    _, _, beta1, beta2 = _check(0.0, 1.0, beta1, beta2)
    gap = 1 - beta1**2 / np.where(beta2 > 0, beta2, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gap > 0, (1 - beta1) / np.sqrt((1 - beta2) * np.abs(gap)), np.inf)


def standard_grid(n_beta: int = 30, n_snr: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """The grid used by the notebook and the benchmark: beta with 1 - beta log-spaced from 0.5 to
    0.001 (beta from 0.5 to 0.999), and mu/sigma log-spaced from 0.01 to 100."""
    beta = 1 - np.logspace(np.log10(0.5), -3, n_beta)
    snr = np.logspace(-2, 2, n_snr)
    return beta, snr


def agreement_from(snr, ratio, level: float) -> float:
    """The smallest mu/sigma of a sampled curve from which ``ratio`` stays within ``level`` of 1.

    ``snr`` is increasing and ``ratio`` is sampled on it; the answer is a point of ``snr`` (the one
    after the last point outside the band), so it is as fine as the sampling. Returns ``snr[0]`` when
    the whole curve is inside the band and raises if its last point is outside (no such mu/sigma).

    >>> agreement_from(np.array([0.1, 1.0, 10.0]), np.array([0.5, 0.97, 0.999]), 0.05)
    1.0
    """
    snr, ratio = np.asarray(snr, dtype=float), np.asarray(ratio, dtype=float)
    if snr.ndim != 1 or snr.shape != ratio.shape or snr.size == 0:
        raise ValueError(f"snr and ratio must be 1-D arrays of one length, got shapes {snr.shape} and {ratio.shape}")
    if not (np.all(np.isfinite(snr)) and np.all(np.isfinite(ratio))) or np.any(np.diff(snr) <= 0):
        raise ValueError("snr must be finite and increasing and ratio finite")
    if not (np.isfinite(level) and level > 0):
        raise ValueError(f"level must be a positive number, got {level!r}")
    outside = np.flatnonzero(np.abs(ratio - 1) > level)
    if outside.size == 0:
        return float(snr[0])
    if outside[-1] == snr.size - 1:
        raise ValueError(f"the ratio is still {ratio[-1]:g} at the last mu/sigma ({snr[-1]:g}): it does not "
                         f"come within {level:g} of 1 on this curve")
    return float(snr[outside[-1] + 1])
