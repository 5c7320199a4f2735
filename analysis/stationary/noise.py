"""Standardized gradient-noise models xi_t (mean 0, variance 1) for the stationary simulations.

The paper's model is i.i.d. Gaussian noise. The other two test how far its conclusions carry:

* :class:`StudentT`: i.i.d. heavy-tailed noise, a Student-t with ``dof`` degrees of freedom scaled
  to unit variance (needs dof > 2). Its kurtosis 3 + 6/(dof - 4) is finite only for dof > 4, which is
  where the closed forms of :mod:`analysis.stationary` (which need four moments) still apply.
* :class:`AR1`: time-correlated noise xi_t = rho xi_{t-1} + sqrt(1 - rho^2) eta_t with unit-variance
  innovations eta (Gaussian by default), started from a draw of eta so that its variance is 1 at
  every step. Not covered by the closed forms, which assume independence over time.

A noise model hands out a *stream* for a block of chains: ``draw = noise.stream(rng, n)``, then
each ``draw(out)`` fills ``out`` (length n) with the next xi_t of every chain.

Every model checks its parameters when it is made, and :func:`check_noise` checks any object handed
to the simulator as a noise model, so a bad parameter is named before a simulation starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

__all__ = ["Noise", "Gaussian", "StudentT", "AR1", "check_noise"]

Stream = Callable[[np.ndarray], None]


class Noise(Protocol):
    memory: float  # correlation between consecutive draws (0 for i.i.d. noise)

    @property
    def label(self) -> str: ...

    def stream(self, rng: np.random.Generator, n: int) -> Stream: ...


def _real(name: str, value) -> float:
    """``value`` as a float if it is a real number (not a bool, a string or an array), else a named error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _require(name: str, value, wanted: float, model: str) -> None:
    """A moment the model fixes (e.g. a Gaussian's kurtosis) may only be given its own value."""
    if _real(name, value) != wanted:
        raise ValueError(f"{model} noise has {name} {wanted:g} by construction, got {name}={value!r}")


def check_noise(noise) -> None:
    """Check that ``noise`` can drive the simulator: a ``stream`` method and a ``memory`` in [0, 1)."""
    if not callable(getattr(noise, "stream", None)):
        raise ValueError(f"noise must be a noise model with a stream(rng, n) method, such as Gaussian(), "
                         f"StudentT(dof) or AR1(rho); got {noise!r}")
    memory = _real("noise.memory", getattr(noise, "memory", None))
    if not (math.isfinite(memory) and 0 <= memory < 1):
        raise ValueError(f"noise.memory (the lag-one correlation) must lie in [0, 1), got {memory}")


@dataclass(frozen=True)
class Gaussian:
    """xi ~ N(0, 1), i.i.d. (the paper's model)."""

    memory: float = 0.0
    skewness: float = 0.0
    kurtosis: float = 3.0

    def __post_init__(self):
        _require("memory", self.memory, 0.0, "Gaussian")
        _require("skewness", self.skewness, 0.0, "Gaussian")
        _require("kurtosis", self.kurtosis, 3.0, "Gaussian")

    @property
    def label(self) -> str:
        return "Gaussian"

    def stream(self, rng: np.random.Generator, n: int) -> Stream:
        return lambda out: rng.standard_normal(out=out)


@dataclass(frozen=True)
class StudentT:
    """xi = T sqrt((dof - 2)/dof) with T ~ Student-t(dof), i.i.d.; unit variance for dof > 2."""

    dof: float
    memory: float = 0.0
    skewness: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(_real("dof", self.dof)) and self.dof > 2):
            raise ValueError(f"Student-t noise needs dof > 2 for a finite variance, got dof={self.dof}")
        _require("memory", self.memory, 0.0, "Student-t")
        _require("skewness", self.skewness, 0.0, "Student-t")

    @property
    def kurtosis(self) -> float:
        return 3 + 6 / (self.dof - 4) if self.dof > 4 else math.inf

    @property
    def label(self) -> str:
        return f"Student-t, {self.dof:g} dof"

    def stream(self, rng: np.random.Generator, n: int) -> Stream:
        scale = math.sqrt((self.dof - 2) / self.dof)

        def draw(out: np.ndarray) -> None:
            np.multiply(rng.standard_t(self.dof, size=n), scale, out=out)

        return draw


@dataclass(frozen=True)
class AR1:
    """xi_t = rho xi_{t-1} + sqrt(1 - rho^2) eta_t; lag-k correlation rho^k, unit variance."""

    rho: float
    innovations: Gaussian | StudentT = Gaussian()

    def __post_init__(self):
        if not (math.isfinite(_real("rho", self.rho)) and 0 <= self.rho < 1):
            raise ValueError(f"AR(1) noise needs 0 <= rho < 1, got rho={self.rho}")
        if not isinstance(self.innovations, (Gaussian, StudentT)):
            raise ValueError(f"AR(1) innovations must be Gaussian() or StudentT(dof), got {self.innovations!r}")

    @property
    def memory(self) -> float:
        return self.rho

    @property
    def label(self) -> str:
        return f"AR(1), rho={self.rho:g}, {self.innovations.label} innovations"

    def stream(self, rng: np.random.Generator, n: int) -> Stream:
        eta = self.innovations.stream(rng, n)
        prev = np.empty(n)
        eta(prev)  # xi_0: unit variance (exactly stationary for Gaussian innovations)
        shrink, kick = self.rho, math.sqrt(1 - self.rho**2)

        def draw(out: np.ndarray) -> None:
            eta(out)
            out *= kick
            np.multiply(prev, shrink, out=prev)
            out += prev
            prev[...] = out

        return draw
