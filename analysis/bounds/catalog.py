r"""Convergence bounds as functions of their constants, each with its source and its status.

``BOUNDS`` maps a key to a :class:`Bound`: the iteration count T as a function of (L0, L1, Delta,
sigma, eps, M), its citation, its setting (deterministic or stochastic, and the noise it assumes),
the stationarity measure it controls (``MEASURES``), whether it is an upper or a lower bound, and
whether its constants are **exact** or **order-only**.

- *Exact*: the three bounds proved in :mod:`analysis.bounds.l0l1` (clipped, normalized and fixed-step GD
  under (L0, L1)-smoothness). A run of the method with the bound's step sizes must need at most T
  iterations; ``tests/analysis/bounds/test_bounds.py`` checks this on many random cases.
- *Order-only*: the literature bounds (as summarized in ``docs/algorithm.md`` §4), and
  AdamS's own rate :math:`\tilde O(T^{-1/4})` from the paper, whose theorem's constants are not
  available to us. Their ``iterations`` evaluates the O(.) expression with every hidden constant set
  to 1: use it for shapes and exponents (``eps_exponent``), never as a number to lie under.

Stationarity measures differ between papers. :func:`implies` says when a guarantee in one measure
gives one in another at the same eps (and why), and :func:`convert` refuses the conversions that
are not valid.

The AdamS step bound itself (the supremum of :math:`|m_t|/\sqrt{\nu_t}` at :math:`\epsilon = 0`)
is :func:`adams.step_bound`; :func:`step_bound_attainer` gives a gradient sequence that attains it,
so it is a supremum and not only an upper bound.

>>> import adams
>>> round(adams.step_bound(0.9, 0.95), 4)
1.026
>>> BOUNDS["adams-2025"].constants, BOUNDS["adams-2025"].eps_exponent
('order-only', 4.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from analysis.bounds.l0l1 import (  # noqa: F401  (re-exported through analysis.bounds)
    clipped_gd_iterations, default_steps, descent_factor, descent_remainder, gd_iterations,
    normalized_gd_iterations, safe_step, segment_bound,
)

__all__ = [
    "Bound", "BOUNDS", "RELATED", "MEASURES", "implies", "convert", "step_bound_attainer",
    "segment_bound", "descent_remainder", "descent_factor", "clipped_gd_iterations", "normalized_gd_iterations",
    "gd_iterations", "safe_step", "default_steps", "recommend",
]

MEASURES = {
    "min_norm": "min over t < T of ||grad f(x_t)|| <= eps (deterministic methods)",
    "min_expected_norm": "min over t < T of E||grad f(x_t)|| <= eps",
    "avg_expected_norm": "(1/T) sum over t < T of E||grad f(x_t)|| <= eps",
    "avg_sq_norm": "(1/T) sum over t < T of E||grad f(x_t)||^2 <= eps^2",
    "avg_sq_norm_whp": "with probability >= 1 - delta, (1/T) sum over t < T of ||grad f(x_t)||^2 <= eps^2",
    "output_expected_norm": "E||grad f(x_out)|| <= eps for the algorithm's output (lower bounds)",
}

# Valid implications between measures at the same eps, with the reason; the last two need a
# deterministic method. A high-probability bound converts to no expectation measure: the rare bad
# event can carry an unbounded expectation.
_IMPLIES = {
    ("avg_sq_norm", "avg_expected_norm"): "E||g|| <= sqrt(E||g||^2) and a mean is at most the root mean square",
    ("avg_expected_norm", "min_expected_norm"): "a minimum is at most the mean",
}
_DETERMINISTIC = {
    ("min_norm", "min_expected_norm"): "for a deterministic method E||grad f(x_t)|| = ||grad f(x_t)||",
    ("min_expected_norm", "min_norm"): "for a deterministic method E||grad f(x_t)|| = ||grad f(x_t)||",
}


def implies(stronger: str, weaker: str, *, deterministic: bool = False) -> str | None:
    """The reason a guarantee in measure ``stronger`` gives one in ``weaker`` at the same eps, or None.

    >>> implies("avg_sq_norm", "min_expected_norm")
    'E||g|| <= sqrt(E||g||^2) and a mean is at most the root mean square; then a minimum is at most the mean'
    >>> implies("min_expected_norm", "avg_sq_norm") is None
    True
    """
    for name in (stronger, weaker):
        if name not in MEASURES:
            raise ValueError(f"unknown measure {name!r}; known: {', '.join(MEASURES)}")
    if stronger == weaker:
        return "the same measure"
    edges = {**_IMPLIES, **(_DETERMINISTIC if deterministic else {})}
    reasons = {stronger: []}
    todo = [stronger]
    while todo:  # breadth-first over the implication graph
        node = todo.pop(0)
        for (a, b), why in edges.items():
            if a == node and b not in reasons:
                reasons[b] = reasons[node] + [why]
                todo.append(b)
    return "; then ".join(reasons[weaker]) if weaker in reasons else None


def convert(iterations: float, source: str, target: str, *, deterministic: bool = False) -> float:
    """A bound T in measure ``source`` as a bound in measure ``target`` (same eps), or a clear error."""
    if implies(source, target, deterministic=deterministic) is None:
        raise ValueError(f"a bound on {source!r} ({MEASURES[source]}) gives no bound on {target!r} "
                         f"({MEASURES[target]}) at the same eps")
    return iterations


@dataclass(frozen=True)
class Bound:
    """One convergence bound. ``iterations(**constants)`` returns T (``inf`` when void)."""

    key: str
    method: str
    citation: str
    setting: str  # "deterministic" or "stochastic"
    noise: str  # the noise assumption ("none" when deterministic)
    measure: str  # a key of MEASURES
    constants: str  # "exact" or "order-only"
    kind: str  # "upper" or "lower"
    eps_exponent: float  # T grows like eps^-eps_exponent as eps -> 0
    iterations: Callable[..., float]
    needs: tuple[str, ...]
    note: str = ""
    steps: Callable[..., dict] | None = field(default=None, repr=False)

    def __call__(self, **constants) -> float:
        missing = [k for k in self.needs if k not in constants]
        if missing:
            raise ValueError(f"{self.key} needs {', '.join(missing)} (it uses {', '.join(self.needs)})")
        return float(self.iterations(**{k: constants[k] for k in self.needs}))


def _log_plus(x: float) -> float:
    return max(math.log(x), 1.0) if x > 0 else 1.0


def _bounds() -> dict[str, Bound]:
    det, sto = "deterministic", "stochastic"
    exact = ("this package, proved in analysis.bounds.l0l1 from Lemmas 1-2 (the exponential form of Chen et al., "
             "ICML 2023, and Vankov et al. 2024)")
    items = [
        Bound("ours-clipped-gd", "clipped GD", exact, det, "none", "min_norm", "exact", "upper", 2.0,
              lambda L0, L1, delta, eps: clipped_gd_iterations(L0, L1, delta, eps), ("L0", "L1", "delta", "eps"),
              "eta = 1/(2 L0), steps no longer than gamma = 1/(2 L1)",
              steps=lambda L0, L1: default_steps(L0, L1)),
        Bound("ours-normalized-gd", "normalized GD", exact, det, "none", "min_norm", "exact", "upper", 2.0,
              lambda L0, L1, delta, eps: normalized_gd_iterations(L0, L1, delta, eps), ("L0", "L1", "delta", "eps"),
              "step length eta = eps / (2 (L0 + L1 eps)); depends on eps",
              steps=lambda L0, L1, eps: default_steps(L0, L1, eps=eps)),
        Bound("ours-gd", "GD, fixed step", exact, det, "none", "min_norm", "exact", "upper", 2.0,
              lambda L0, L1, delta, eps, M: gd_iterations(L0, L1, delta, eps, M), ("L0", "L1", "delta", "eps", "M"),
              "eta = 1/(2 (L0 + L1 M)), M the largest gradient norm on {f <= f(x0)}",
              steps=lambda L0, L1, M: default_steps(L0, L1, M=M)),
        Bound("zhang-2020-clipped-gd", "clipped GD",
              "Zhang, He, Sra, Jadbabaie, ICLR 2020 (arXiv 1905.11881), clipped GD theorem", det, "none",
              "min_norm", "order-only", "upper", 2.0,
              lambda L0, L1, delta, eps: L0 * delta / eps**2 + L1**2 * delta / L0, ("L0", "L1", "delta", "eps"),
              "O(L0 Delta eps^-2 + L1^2 Delta / L0) with eta_c = 1/(10 L0), gamma = min(1/eta_c, 1/(10 L1 eta_c))"),
        Bound("zhang-2020-gd-upper", "GD, fixed step", "Zhang, He, Sra, Jadbabaie, ICLR 2020", det, "none",
              "min_norm", "order-only", "upper", 2.0,
              lambda L0, L1, delta, eps, M: (M * L1 + L0) * delta / eps**2, ("L0", "L1", "delta", "eps", "M"),
              "O((M L1 + L0) Delta eps^-2) with step 1/(2 (M L1 + L0))"),
        Bound("zhang-2020-gd-lower", "GD, fixed step", "Zhang, He, Sra, Jadbabaie, ICLR 2020", det, "none",
              "min_norm", "order-only", "lower", 2.0,
              lambda L0, L1, delta, eps, M: (L1 * M / _log_plus(M) + L0) * delta / eps**2,
              ("L0", "L1", "delta", "eps", "M"),
              "Omega((L1 M / log M + L0) Delta eps^-2): some (L0, L1)-smooth f forces fixed-step GD to need this many"),
        Bound("koloskova-2023-clipped-gd", "clipped GD",
              "Koloskova, Hendrikx, Stich, ICML 2023; Vankov et al. 2024 (normalized GD)", det, "none",
              "min_norm", "order-only", "upper", 2.0,
              lambda L0, L1, delta, eps: L0 * delta / eps**2 + L1 * delta / eps, ("L0", "L1", "delta", "eps"),
              "O(L0 Delta eps^-2 + L1 Delta eps^-1); the same order holds for normalized GD. Attribution and "
              "assumptions as our sources summarize them; not checked against the papers from here"),
        Bound("zhang-2020b-clipped-sgdm", "clipped SGD with momentum",
              "Zhang, Jin, Fang, Wang, NeurIPS 2020", sto, "almost surely bounded", "avg_expected_norm",
              "order-only", "upper", 4.0,
              lambda L0, delta, sigma, eps: delta * L0 * sigma**2 / eps**4, ("L0", "delta", "sigma", "eps"),
              "leading term O(Delta L0 sigma^2 eps^-4); measure as we read it from the summary"),
        Bound("li-2023-adam", "Adam", "Li, Rakhlin, Jadbabaie, NeurIPS 2023", sto, "almost surely bounded",
              "avg_sq_norm_whp", "order-only", "upper", 4.0,
              lambda eps: eps**-4.0, ("eps",),
              "(rho, L0, L_rho)-smoothness, rho < 2; O(eps^-4) with eta and 1 - beta1 of order eps^2, no "
              "condition on beta2, O(lambda^-2) in Adam's epsilon; other constants omitted"),
        Bound("arjevani-2023-lower", "any stochastic first-order method", "Arjevani et al., Math. Program. 2023",
              sto, "bounded variance", "output_expected_norm", "order-only", "lower", 4.0,
              lambda L0, delta, sigma, eps: delta * L0 * sigma**2 / eps**4, ("L0", "delta", "sigma", "eps"),
              "Omega(Delta L sigma^2 eps^-4) on L-smooth functions, so on the (L0, L1) class with L = L0"),
        Bound("adams-2025", "AdamS", "Zhang, Wang, Chen, EMNLP 2025 (arXiv 2505.16363)", sto,
              "\"weak noise assumptions\" (the paper's words; the exact form is not in our sources)",
              "avg_expected_norm", "order-only", "upper", 4.0,
              lambda eps: eps**-4.0, ("eps",),
              "rate O~(T^-1/4) in gradient norm under (L0, L1)-smoothness (\"relaxed smoothness\") and the paper's "
              "noise assumption, called optimal (it matches the Omega(eps^-4) lower bound), i.e. T = O~(eps^-4). The "
              "theorem's constants, its conditions on beta1 and beta2, its step-size schedule and the exact "
              "stationarity measure are not available to us (the measure here is our reading of the rate)"),
    ]
    return {b.key: b for b in items}


BOUNDS: dict[str, Bound] = _bounds()

#: analyses the package cites but cannot turn into a bound here (their rates or constants are not in
#: our sources): citation -> what they show
RELATED = {
    "Wang et al., Provable adaptivity of Adam under non-uniform smoothness, KDD 2024":
        "Adam's convergence under (L0, L1)-smoothness without bounded gradients; Bohan Wang is an AdamS author. "
        "Rate and conditions not in our sources.",
    "Chen et al., Generalized-smooth nonconvex optimization is as efficient as smooth nonconvex optimization, "
    "ICML 2023":
        "the exponential form of (L0, L1)-smoothness (Lemmas 1-2 of analysis.bounds.l0l1) and methods that "
        "match smooth rates",
    "Vankov et al., 2024": "improved analyses of clipped and normalized GD; the exponential lemmas",
    "Cooper, NeurIPS 2024 OPT workshop":
        "feed-forward networks of depth >= 2 with squared or cross-entropy loss are not (L0, L1)-smooth globally: "
        "measurements along a trajectory are local",
}


def step_bound_attainer(beta1: float, beta2: float, g1: float = 1.0) -> np.ndarray:
    """Gradients (g_1, g_2) for which the paper-text form's step 2 equals :func:`adams.step_bound`.

    Equality in Cauchy-Schwarz needs m_1 / g_2 = beta1 (1 - beta2) / (beta2 (1 - beta1)); with
    m_1 = (1 - beta1) g_1 that fixes g_2 = beta2 g_1 (1 - beta1)^2 / (beta1 (1 - beta2)).
    """
    if not (0 < beta1 < 1 and 0 < beta2 < 1):
        raise ValueError(f"the step bound is attained for 0 < beta1, beta2 < 1, got ({beta1}, {beta2})")
    return np.array([g1, beta2 * g1 * (1 - beta1) ** 2 / (beta1 * (1 - beta2))])


def recommend(L0: float, L1: float, eps: float, delta: float) -> dict:
    """What the exact clipped-GD theorem recommends for a pair (L0, L1): step, clipping, iterations.

    ``step`` is eta = 1/(2 L0); ``clip_threshold`` the gradient norm above which a step is clipped
    (gamma / eta = L0 / L1); ``max_step_length`` gamma = 1/(2 L1); ``iterations`` the bound at eps.
    """
    steps = default_steps(L0, L1)
    return {"L0": float(L0), "L1": float(L1), "step": steps["clipped_eta"],
            "clip_threshold": steps["clip_threshold"], "max_step_length": steps["clipped_gamma"],
            "iterations": clipped_gd_iterations(L0, L1, delta, eps)}
