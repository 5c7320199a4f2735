"""Convergence bounds under (L0, L1)-smoothness, and simulations that must never cross them (``docs/algorithm.md`` §4).

* :mod:`~analysis.bounds.catalog`: every bound with its source, setting, stationarity measure and
  whether its constants are exact or order-only; conversions between measures. A new bound from
  the literature is an entry here.
* :mod:`~analysis.bounds.l0l1`: the exact iteration bounds this package proves (clipped, normalized
  and fixed-step GD), from the lemmas derived in sympy in :mod:`~analysis.bounds.derivations`.
* :mod:`~analysis.bounds.problems`: functions whose (L0, L1) frontier is known in closed form; a new
  test problem goes here.
* :mod:`~analysis.bounds.simulations`: optimizers run on those problems, vectorized over seeds;
  :mod:`~analysis.bounds.experiments`: the experiments of the ``bounds_vs_simulation`` notebook.

The names below are the catalog's and the exact bounds': ``from analysis import bounds as B``.
"""
from analysis.bounds.catalog import (BOUNDS, MEASURES, RELATED, Bound, clipped_gd_iterations, convert, default_steps,
                                     descent_factor, descent_remainder, gd_iterations, implies,
                                     normalized_gd_iterations, recommend, safe_step, segment_bound,
                                     step_bound_attainer)

__all__ = [
    "Bound", "BOUNDS", "RELATED", "MEASURES", "implies", "convert", "step_bound_attainer",
    "segment_bound", "descent_remainder", "descent_factor", "clipped_gd_iterations", "normalized_gd_iterations",
    "gd_iterations", "safe_step", "default_steps", "recommend",
]
