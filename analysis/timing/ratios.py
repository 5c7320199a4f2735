"""Ratios of paired timings, with their spread.

Benchmarks here time several methods round-robin, one step each per round, so round ``r`` of
method A and round ``r`` of method B saw the same state of a shared, noisy machine. The ratio of
paired rounds cancels slow drifts that the ratio of two medians does not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PairedRatio", "paired_ratio"]


@dataclass(frozen=True)
class PairedRatio:
    """Summary of the per-round ratios a/b."""

    median: float  # median over rounds of a_r / b_r
    q1: float  # first and third quartiles of a_r / b_r
    q3: float
    ci_low: float  # bootstrap 95% confidence interval of the median ratio
    ci_high: float
    rounds: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.median:.3f} (95% CI {self.ci_low:.3f}-{self.ci_high:.3f}, "
                f"IQR {self.q1:.3f}-{self.q3:.3f}, {self.rounds} rounds)")


def paired_ratio(a, b, *, seed: int = 0, n_boot: int = 2000) -> PairedRatio:
    """Median of ``a[r] / b[r]`` over rounds, its quartiles and a percentile-bootstrap 95% CI.

    >>> r = paired_ratio([2.0, 4.0, 6.0], [4.0, 8.0, 12.0])
    >>> r.median, r.ci_low, r.ci_high
    (0.5, 0.5, 0.5)
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length, non-empty 1-d sequences, got shapes {a.shape}, {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(b > 0)):
        raise ValueError("timings must be finite and the denominators positive")
    ratios = a / b
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, ratios.size, size=(n_boot, ratios.size))
    medians = np.median(ratios[picks], axis=1)
    q1, median, q3 = np.quantile(ratios, [0.25, 0.5, 0.75])
    low, high = np.quantile(medians, [0.025, 0.975])
    return PairedRatio(float(median), float(q1), float(q3), float(low), float(high), int(ratios.size))
