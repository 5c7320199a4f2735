r"""Synthetic objectives whose (L0, L1) frontier is known in closed form, and their noisy gradients.

Every problem works on a batch of points ``x`` of shape ``(n, d)`` (one row per independent run) and
knows its Hessian spectral norm, its frontier :math:`L_0^*(L_1) = \sup_x (\|\nabla^2 f\| -
L_1\|\nabla f\|)^+` (``inf`` where no finite L0 works) and the largest gradient norm on a sublevel
set (the M of fixed-step GD's bound). Derivations, with :math:`s = \|\nabla f(x)\|`:

- :class:`Quadratic`, :math:`f = \frac12\sum_i \lambda_i x_i^2`: :math:`\|\nabla^2 f\| = \lambda_{\max}`,
  attained at x = 0 where s = 0, so :math:`L_0^*(L_1) = \lambda_{\max}` for every L1 (L-smooth).
  On :math:`\{f \le c\}`, :math:`\max\|\nabla f\| = \sqrt{2c\lambda_{\max}}`.
- :class:`Quartic`, :math:`f = \frac c4\|x\|^4`: :math:`\nabla f = c\|x\|^2 x`, :math:`s = c\|x\|^3`,
  :math:`\nabla^2 f = c(\|x\|^2 I + 2xx^\top)` with norm :math:`3c\|x\|^2 = 3c^{1/3}s^{2/3}`. Maximizing
  :math:`3c^{1/3}s^{2/3} - L_1 s` over s (at :math:`s = 8c/L_1^3`) gives :math:`L_0^* = 4c/L_1^2`: finite
  for every L1 > 0 and infinite at L1 = 0, so f is (L0, L1)-smooth but not L-smooth, and its
  minimum is degenerate (GD slows down polynomially near it).
- :class:`Cosh`, :math:`f = \sum_i (\cosh(a x_i) - 1)/a^2`: :math:`\partial_i f = \sinh(a x_i)/a`,
  :math:`\|\nabla^2 f\| = \max_i\cosh(a x_i) = \sqrt{1 + a^2\max_i(\partial_i f)^2} \le \sqrt{1 + a^2 s^2}`,
  with equality when one coordinate carries the gradient. :math:`\sqrt{1 + a^2s^2} - L_1 s` is
  decreasing when :math:`L_1 \ge a` (maximum 1 at s = 0) and unbounded when :math:`L_1 < a`, so
  :math:`L_0^* = 1` for :math:`L_1 \ge a`, ``inf`` below: exponential growth, not L-smooth. On
  :math:`\{f \le c\}` the convex function :math:`\sum\cosh^2` is largest at a vertex where one
  coordinate takes all the slack: :math:`M^2 = ((1 + a^2c)^2 - 1)/a^2`.
- :class:`Cauchy` (nonconvex; the Cauchy loss), :math:`f = \sum_i \log(1 + x_i^2)`: :math:`f_i'' =
  2(1 - x_i^2)/(1 + x_i^2)^2` has absolute value at most 2, attained at x = 0 where s = 0, so
  :math:`L_0^*(L_1) = 2` for every L1. Every :math:`|\partial_i f| \le 1`, so M = sqrt(d) bounds the
  gradient everywhere (a bound, not the maximum on a sublevel set).

- :class:`PseudoHuber`, :math:`f = s(\sqrt{\delta^2 + \|x\|^2} - \delta)`: with :math:`\rho =
  \sqrt{\delta^2 + \|x\|^2}`, :math:`\nabla f = s x/\rho` (norm below s), and
  :math:`\nabla^2 f = (s/\rho)(I - xx^\top/\rho^2)` with norm :math:`s/\rho = (s/\delta)\sqrt{1 - (\|\nabla
  f\|/s)^2}` (the tangential eigenvalue; in d = 1 only the radial one, :math:`s\delta^2/\rho^3`,
  which is smaller). Both decrease with the gradient norm, so :math:`L_0^*(L_1) = s/\delta` for every L1.
  This is the shape of the worst case for gradient methods: a long ramp whose gradient norm s stays
  just above eps, so that every step gains only about eta s^2.

Noise: :func:`oracle` returns :math:`g = \nabla f(x) + \sigma\xi` with :math:`E\|\sigma\xi\|^2 = \sigma^2`,
either Gaussian (:math:`\xi \sim N(0, I/d)`) or bounded (:math:`\xi` uniform on the unit sphere, so
:math:`\|g - \nabla f\| = \sigma` exactly), the assumption of the bounds that need a.s. bounded noise.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Problem", "Quadratic", "Quartic", "Cosh", "Cauchy", "PseudoHuber", "oracle", "NOISES"]

NOISES = ("gaussian", "bounded")


def _points(x, d: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"points must have shape (n, {d}) or ({d},), got {x.shape}")
    return x


def _l1(l1) -> np.ndarray:
    l1 = np.asarray(l1, dtype=float)
    if np.any(np.isnan(l1)) or np.any(l1 < 0):
        raise ValueError("L1 must be >= 0")
    return l1


class Problem(ABC):
    """Base class: ``value``, ``grad``, ``hessian_norm`` on (n, d) arrays; ``frontier``; ``f_star``."""

    name = "problem"
    d: int
    f_star = 0.0
    l_smooth = False  # True when L0*(0) is finite
    convex = True

    @abstractmethod
    def value(self, x) -> np.ndarray:
        """f at each row of x: shape (n,)."""

    @abstractmethod
    def grad(self, x) -> np.ndarray:
        """grad f at each row of x: shape (n, d)."""

    @abstractmethod
    def hessian_norm(self, x) -> np.ndarray:
        """Spectral norm of the Hessian at each row of x: shape (n,)."""

    @abstractmethod
    def frontier(self, l1) -> np.ndarray:
        """L0*(L1) for each value in l1 (``inf`` where no finite L0 works)."""

    @abstractmethod
    def max_grad_norm(self, level: float) -> float:
        """The largest ||grad f|| on {f <= level} (or a stated upper bound)."""

    def pair(self, l1: float | None = None) -> tuple[float, float]:
        """A valid (L0, L1) on the frontier; ``l1`` defaults to the problem's natural choice."""
        l1 = self.default_l1() if l1 is None else float(l1)
        L0 = float(self.frontier(l1))
        if not math.isfinite(L0):
            raise ValueError(f"{self.name}: no finite L0 goes with L1 = {l1}")
        return L0, l1

    def default_l1(self) -> float:
        return 0.0

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class Quadratic(Problem):
    """f = 1/2 sum_i lambda_i x_i^2 with the given eigenvalues (all >= 0)."""

    eigenvalues: tuple[float, ...] = (1.0,)
    name = "quadratic"
    l_smooth = True

    def __post_init__(self):
        lam = np.asarray(self.eigenvalues, dtype=float)
        if lam.ndim != 1 or lam.size == 0 or np.any(~np.isfinite(lam)) or np.any(lam < 0):
            raise ValueError("eigenvalues must be a non-empty list of finite numbers >= 0")

    @property
    def d(self) -> int:
        return len(self.eigenvalues)

    def _lam(self) -> np.ndarray:
        return np.asarray(self.eigenvalues, dtype=float)

    def value(self, x):
        x = _points(x, self.d)
        return 0.5 * (self._lam() * x**2).sum(axis=1)

    def grad(self, x):
        return self._lam() * _points(x, self.d)

    def hessian_norm(self, x):
        return np.full(_points(x, self.d).shape[0], self._lam().max())

    def frontier(self, l1):
        return np.full_like(_l1(l1), self._lam().max(), dtype=float)

    def max_grad_norm(self, level):
        return math.sqrt(2.0 * max(float(level), 0.0) * self._lam().max())

    def describe(self):
        return f"quadratic, d = {self.d}, eigenvalues {min(self.eigenvalues):g} to {max(self.eigenvalues):g}"


@dataclass(frozen=True)
class Quartic(Problem):
    """f = (c/4) ||x||^4 in d dimensions."""

    d: int = 10
    c: float = 1.0
    name = "quartic"

    def __post_init__(self):
        if int(self.d) != self.d or self.d < 1 or not (math.isfinite(self.c) and self.c > 0):
            raise ValueError(f"Quartic needs an integer d >= 1 and c > 0, got d={self.d}, c={self.c}")

    def value(self, x):
        x = _points(x, self.d)
        return 0.25 * self.c * (x**2).sum(axis=1) ** 2

    def grad(self, x):
        x = _points(x, self.d)
        return self.c * (x**2).sum(axis=1, keepdims=True) * x

    def hessian_norm(self, x):
        return 3.0 * self.c * (_points(x, self.d) ** 2).sum(axis=1)

    def frontier(self, l1):
        l1 = _l1(l1)
        with np.errstate(divide="ignore"):
            return np.where(l1 > 0, 4.0 * self.c / np.where(l1 > 0, l1, 1.0) ** 2, np.inf)

    def max_grad_norm(self, level):
        radius = (4.0 * max(float(level), 0.0) / self.c) ** 0.25
        return self.c * radius**3

    def default_l1(self):
        return 1.0

    def describe(self):
        return f"quartic (c/4)||x||^4, c = {self.c:g}, d = {self.d}"


@dataclass(frozen=True)
class Cosh(Problem):
    """f = sum_i (cosh(a x_i) - 1) / a^2 in d dimensions."""

    d: int = 10
    a: float = 1.0
    name = "cosh"

    def __post_init__(self):
        if int(self.d) != self.d or self.d < 1 or not (math.isfinite(self.a) and self.a > 0):
            raise ValueError(f"Cosh needs an integer d >= 1 and a > 0, got d={self.d}, a={self.a}")

    def value(self, x):
        x = _points(x, self.d)
        return ((np.cosh(self.a * x) - 1.0) / self.a**2).sum(axis=1)

    def grad(self, x):
        return np.sinh(self.a * _points(x, self.d)) / self.a

    def hessian_norm(self, x):
        return np.cosh(self.a * _points(x, self.d)).max(axis=1)

    def frontier(self, l1):
        l1 = _l1(l1)
        return np.where(l1 >= self.a, 1.0, np.inf)

    def max_grad_norm(self, level):
        top = 1.0 + self.a**2 * max(float(level), 0.0)  # cosh of the one coordinate that takes the slack
        return math.sqrt(top**2 - 1.0) / self.a

    def default_l1(self):
        return self.a

    def describe(self):
        return f"cosh, a = {self.a:g}, d = {self.d}"


@dataclass(frozen=True)
class Cauchy(Problem):
    """f = sum_i log(1 + x_i^2): nonconvex, L-smooth with L = 2, gradients bounded by sqrt(d)."""

    d: int = 10
    name = "cauchy"
    l_smooth = True
    convex = False

    def value(self, x):
        return np.log1p(_points(x, self.d) ** 2).sum(axis=1)

    def grad(self, x):
        x = _points(x, self.d)
        return 2.0 * x / (1.0 + x**2)

    def hessian_norm(self, x):
        x = _points(x, self.d)
        return np.abs(2.0 * (1.0 - x**2) / (1.0 + x**2) ** 2).max(axis=1)

    def frontier(self, l1):
        return np.full_like(_l1(l1), 2.0, dtype=float)

    def max_grad_norm(self, level):
        return math.sqrt(self.d)

    def describe(self):
        return f"sum log(1 + x_i^2), d = {self.d}"


@dataclass(frozen=True)
class PseudoHuber(Problem):
    """f = s (sqrt(delta^2 + ||x||^2) - delta): a ramp of slope s with a rounded bottom of width delta."""

    d: int = 10
    s: float = 1.0
    delta: float = 1.0
    name = "pseudo-huber"
    l_smooth = True

    def __post_init__(self):
        if int(self.d) != self.d or self.d < 1 or not (self.s > 0 and self.delta > 0):
            raise ValueError(f"PseudoHuber needs an integer d >= 1, s > 0 and delta > 0, got {self}")

    def _rho(self, x):
        return np.sqrt(self.delta**2 + (x**2).sum(axis=1, keepdims=True))

    def value(self, x):
        x = _points(x, self.d)
        return self.s * (self._rho(x)[:, 0] - self.delta)

    def grad(self, x):
        x = _points(x, self.d)
        return self.s * x / self._rho(x)

    def hessian_norm(self, x):
        x = _points(x, self.d)
        rho = self._rho(x)[:, 0]
        return self.s / rho if self.d > 1 else self.s * self.delta**2 / rho**3

    def frontier(self, l1):
        return np.full_like(_l1(l1), self.s / self.delta, dtype=float)

    def max_grad_norm(self, level):
        rho = self.delta + max(float(level), 0.0) / self.s
        return self.s * math.sqrt(max(rho**2 - self.delta**2, 0.0)) / rho

    def start(self, gap: float, n: int = 1) -> np.ndarray:
        """n copies of a point with f - f* = gap, on the first axis."""
        rho = self.delta + gap / self.s
        x = np.zeros((n, self.d))
        x[:, 0] = math.sqrt(rho**2 - self.delta**2)
        return x

    def describe(self):
        return f"pseudo-Huber ramp, slope {self.s:g}, width {self.delta:g}, d = {self.d}"


def oracle(problem: Problem, sigma: float, noise: str = "gaussian") -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """A stochastic gradient ``g(x, rng) = grad f(x) + sigma xi`` with E||sigma xi||^2 = sigma^2."""
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    d = problem.d

    def gradient(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = problem.grad(x)
        if sigma == 0:
            return g
        xi = rng.standard_normal(g.shape)
        if noise == "gaussian":
            return g + sigma * xi / math.sqrt(d)
        return g + sigma * xi / np.linalg.norm(xi, axis=1, keepdims=True)  # uniform on the sphere

    return gradient
