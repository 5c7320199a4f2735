r"""Inequalities for (L0, L1)-smooth functions, and iteration bounds with exact constants.

Everything here is proved in the docstrings below from one assumption, and
:mod:`analysis.bounds.derivations` derives the two integrals with sympy (the tests compare the two).
The two lemmas are known: the exponential (Gronwall) form of (L0, L1)-smoothness and the descent
inequality that follows from it appear in Chen et al. (ICML 2023, "Generalized-smooth nonconvex
optimization is as efficient as smooth nonconvex optimization") and in Vankov et al. (2024); they are
proved again below so that the module stands alone. The three iteration bounds are derived here with
every constant written out (not quoted from a paper, whose constants are usually hidden in O(.)), so a
simulation must never cross them (``tests/analysis/bounds/test_bounds.py`` checks that on many random cases).

**Assumption.** f is twice differentiable, bounded below by f*, and
:math:`\|\nabla^2 f(x)\| \le L_0 + L_1 \|\nabla f(x)\|` for every x (spectral norm; Zhang, He, Sra,
Jadbabaie, ICLR 2020).

**Lemma 1 (segment).** For x, y with :math:`r = \|y - x\|` and :math:`G = \|\nabla f(x)\|`,

.. math:: \|\nabla f(y) - \nabla f(x)\| \le (L_0 + L_1 G)\,\frac{e^{L_1 r} - 1}{L_1}.

*Proof.* On :math:`z(s) = x + s(y - x)` let :math:`u(s) = L_0 + L_1\|\nabla f(z(s))\|`. Then
:math:`u'(s) \le L_1 \|\nabla^2 f(z(s))(y - x)\| \le L_1 r\, u(s)`, so
:math:`u(s) \le u(0) e^{L_1 r s}` (Gronwall), and
:math:`\|\nabla f(z(s)) - \nabla f(x)\| \le \int_0^s r\,u(\tau)\,d\tau = u(0)(e^{L_1 r s} - 1)/L_1`.
It is attained by :math:`f(x) = e^x` (L0 = 0, L1 = 1) with y > x.

**Lemma 2 (descent).** With :math:`d = y - x`,

.. math:: f(y) \le f(x) + \langle\nabla f(x), d\rangle + (L_0 + L_1 G)\, r^2 \varphi(L_1 r),
   \qquad \varphi(u) = \frac{e^u - 1 - u}{u^2},\ \varphi(0) = \tfrac12 .

*Proof.* :math:`f(y) - f(x) - \langle\nabla f(x), d\rangle = \int_0^1 \langle \nabla f(z(s)) - \nabla
f(x), d\rangle ds`; bound the integrand by r times Lemma 1 at s and integrate. :math:`\varphi` is
increasing, so any bound on :math:`L_1 r` bounds :math:`\varphi`.

**Theorems (deterministic; the measure is the first t with** :math:`\|\nabla f(x_t)\| \le \varepsilon`).
Let :math:`\Delta \ge f(x_0) - f^*` and :math:`G_t = \|\nabla f(x_t)\|`. While :math:`G_t > \varepsilon`
every step below lowers f by more than a fixed amount D, so :math:`T_\varepsilon \le \Delta / D`.

- *Clipped GD*, :math:`x_{t+1} = x_t - \min(\eta, \gamma/G_t)\nabla f(x_t)` (steps of length at most
  :math:`\gamma`). With :math:`\kappa = 1 - (\eta L_0 + L_1\gamma)\varphi(L_1\gamma) > 0`, each step
  lowers f by at least :math:`\kappa\min(\eta G_t^2, \gamma G_t)`: unclipped, Lemma 2 with
  :math:`r = \eta G \le \gamma` gives :math:`\eta G^2 (1 - \eta(L_0 + L_1 G)\varphi(L_1 \eta G))` and
  :math:`\eta(L_0 + L_1G) \le \eta L_0 + L_1\gamma`; clipped, :math:`r = \gamma`, :math:`G > \gamma/\eta`,
  so :math:`\gamma G(1 - (L_0\gamma/G + L_1\gamma)\varphi(L_1\gamma))` with :math:`L_0\gamma/G < \eta L_0`.
  Hence :math:`T_\varepsilon \le \Delta / (\kappa \min(\eta\varepsilon^2, \gamma\varepsilon))`. With the
  default :math:`\eta = 1/(2L_0)`, :math:`\gamma = 1/(2L_1)`: :math:`\kappa = 7 - 4\sqrt e \approx 0.405`
  and :math:`T_\varepsilon \le \Delta\max(2L_0/\varepsilon^2,\ 2L_1/\varepsilon)/\kappa`, the order
  :math:`L_0\Delta\varepsilon^{-2} + L_1\Delta\varepsilon^{-1}` of the improved analyses.
- *Normalized GD*, :math:`x_{t+1} = x_t - \eta\nabla f(x_t)/G_t`: Lemma 2 with :math:`r = \eta` gives a
  decrease of :math:`\eta G(1 - L_1\eta\varphi(L_1\eta)) - L_0\eta^2\varphi(L_1\eta)`, increasing in G,
  so :math:`D = \eta\varepsilon(1 - L_1\eta\varphi) - L_0\eta^2\varphi` (the bound is void if D <= 0).
  Default :math:`\eta = \varepsilon / (2(L_0 + L_1\varepsilon))`.
- *GD with a fixed step* :math:`\eta`, when :math:`\|\nabla f\| \le M` on the sublevel set
  :math:`\{f \le f(x_0)\}`: with :math:`\kappa = 1 - \eta(L_0 + L_1 M)\varphi(L_1\eta M) > 0` each step
  lowers f by :math:`\kappa\eta G^2` and so stays in the sublevel set; :math:`D = \kappa\eta\varepsilon^2`.
  Default :math:`\eta = 1/(2(L_0 + L_1 M))`.

>>> round(float(descent_factor(1.0)), 6)  # phi(1) = e - 2
0.718282
>>> round(clipped_gd_iterations(L0=1.0, L1=1.0, delta=1.0, eps=0.1), 1)  # 2 L0 / eps^2 / kappa
493.7
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "descent_factor", "segment_bound", "descent_remainder", "clipped_gd_kappa", "clipped_gd_iterations",
    "normalized_gd_decrease", "normalized_gd_iterations", "gd_kappa", "gd_iterations", "safe_step",
    "default_steps",
]


def _nonneg(name: str, value) -> np.ndarray:
    value = np.asarray(value, dtype=float)
    if np.any(np.isnan(value)) or np.any(value < 0):
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _positive(name: str, value) -> np.ndarray:
    value = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(value)) or np.any(value <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def descent_factor(u) -> np.ndarray:
    """phi(u) = (e^u - 1 - u) / u^2, with phi(0) = 1/2 (a series below u = 1e-3 avoids cancellation)."""
    u = _nonneg("u", u)
    small = u < 1e-3
    safe = np.where(small, 1.0, u)
    exact = np.expm1(safe) - safe
    with np.errstate(over="ignore", invalid="ignore"):
        exact = exact / safe**2
    return np.where(small, 0.5 + u / 6 + u**2 / 24, exact)


def segment_bound(L0, L1, grad_norm, r) -> np.ndarray:
    """Lemma 1: the largest ||grad f(y) - grad f(x)|| for ||y - x|| = r, (L0 + L1 G)(e^{L1 r} - 1)/L1."""
    L0, L1, G, r = (_nonneg(n, v) for n, v in (("L0", L0), ("L1", L1), ("grad_norm", grad_norm), ("r", r)))
    growth = np.where(L1 > 0, np.expm1(L1 * r) / np.where(L1 > 0, L1, 1.0), r)  # -> r as L1 -> 0
    return (L0 + L1 * G) * growth


def descent_remainder(L0, L1, grad_norm, r) -> np.ndarray:
    """Lemma 2: the largest f(y) - f(x) - <grad f(x), y - x> for ||y - x|| = r."""
    L0, L1, G, r = (_nonneg(n, v) for n, v in (("L0", L0), ("L1", L1), ("grad_norm", grad_norm), ("r", r)))
    return (L0 + L1 * G) * r**2 * descent_factor(L1 * r)


def clipped_gd_kappa(L0, L1, eta, gamma) -> np.ndarray:
    """kappa = 1 - (eta L0 + L1 gamma) phi(L1 gamma): the fraction of the first-order decrease kept."""
    L0, L1 = _nonneg("L0", L0), _nonneg("L1", L1)
    eta, gamma = _positive("eta", eta), _positive("gamma", gamma)
    return 1.0 - (eta * L0 + L1 * gamma) * descent_factor(L1 * gamma)


def default_steps(L0: float, L1: float, *, eps: float | None = None, M: float | None = None) -> dict:
    """The step sizes the theorems above use by default, for one (L0, L1) pair.

    ``clip_threshold`` is the gradient norm above which clipped GD clips (gamma / eta). ``eps`` is
    needed for normalized GD's step and ``M`` for fixed-step GD's.
    """
    L0, L1 = float(_positive("L0", L0)), float(_nonneg("L1", L1))
    eta = 1.0 / (2.0 * L0)
    gamma = 1.0 / (2.0 * L1) if L1 > 0 else math.inf
    out = {"clipped_eta": eta, "clipped_gamma": gamma, "clip_threshold": gamma / eta}
    if eps is not None:
        out["normalized_eta"] = float(eps) / (2.0 * (L0 + L1 * float(eps)))
    if M is not None:
        out["gd_eta"] = 1.0 / (2.0 * (L0 + L1 * float(M)))
    return out


def clipped_gd_iterations(L0, L1, delta, eps, *, eta=None, gamma=None) -> float:
    """Clipped GD's exact bound on the first t with ||grad f(x_t)|| <= eps (``inf`` if kappa <= 0).

    ``eta`` and ``gamma`` default to 1/(2 L0) and 1/(2 L1); with L1 = 0 the steps are never clipped
    and the bound is that of GD on an L0-smooth function, Delta / (kappa eta eps^2) with kappa = 1/2.
    """
    steps = default_steps(L0, L1)
    eta = steps["clipped_eta"] if eta is None else eta
    gamma = steps["clipped_gamma"] if gamma is None else gamma
    delta, eps = float(_nonneg("delta", delta)), float(_positive("eps", eps))
    if math.isinf(gamma):
        kappa = 1.0 - eta * L0 * 0.5
        per_step = eta * eps**2
    else:
        kappa = float(clipped_gd_kappa(L0, L1, eta, gamma))
        per_step = min(eta * eps**2, gamma * eps)
    return delta / (kappa * per_step) if kappa > 0 else math.inf


def normalized_gd_decrease(L0, L1, eta, grad_norm) -> np.ndarray:
    """Lemma 2 for one normalized step of length eta: a lower bound on f(x_t) - f(x_{t+1})."""
    L0, L1, eta = _nonneg("L0", L0), _nonneg("L1", L1), _positive("eta", eta)
    G = _nonneg("grad_norm", grad_norm)
    phi = descent_factor(L1 * eta)
    return eta * G * (1.0 - L1 * eta * phi) - L0 * eta**2 * phi


def normalized_gd_iterations(L0, L1, delta, eps, *, eta=None) -> float:
    """Normalized GD's exact bound on the first t with ||grad f(x_t)|| <= eps (``inf`` if void)."""
    eps = float(_positive("eps", eps))
    eta = default_steps(L0, L1, eps=eps)["normalized_eta"] if eta is None else eta
    if L1 * eta * float(descent_factor(L1 * eta)) >= 1.0:
        return math.inf  # the decrease no longer grows with the gradient norm
    D = float(normalized_gd_decrease(L0, L1, eta, eps))
    return float(_nonneg("delta", delta)) / D if D > 0 else math.inf


def gd_kappa(L0, L1, eta, M) -> np.ndarray:
    """kappa = 1 - eta (L0 + L1 M) phi(L1 eta M) for GD with a fixed step on {||grad f|| <= M}."""
    L0, L1, M = _nonneg("L0", L0), _nonneg("L1", L1), _nonneg("M", M)
    eta = _positive("eta", eta)
    return 1.0 - eta * (L0 + L1 * M) * descent_factor(L1 * eta * M)


def gd_iterations(L0, L1, delta, eps, M, *, eta=None) -> float:
    """Fixed-step GD's exact bound on the first t with ||grad f(x_t)|| <= eps (``inf`` if kappa <= 0).

    ``M`` bounds ||grad f|| on the initial sublevel set (for the problems of :mod:`analysis.bounds.problems`,
    ``problem.max_grad_norm(f(x0))``).
    """
    eta = default_steps(L0, L1, M=M)["gd_eta"] if eta is None else eta
    kappa = float(gd_kappa(L0, L1, eta, M))
    eps = float(_positive("eps", eps))
    return float(_nonneg("delta", delta)) / (kappa * eta * eps**2) if kappa > 0 else math.inf


def safe_step(L0, L1, grad_norm) -> np.ndarray:
    """1 / (L0 + L1 ||grad f||): a gradient step h of at most this size lowers f.

    Its length hG is at most 1/L1, so Lemma 2 bounds the remainder by (e - 2) h G^2 and the step
    keeps at least 3 - e (28%) of its first-order decrease h G^2.
    """
    L0, L1, G = _nonneg("L0", L0), _nonneg("L1", L1), _nonneg("grad_norm", grad_norm)
    return 1.0 / (L0 + L1 * G)
