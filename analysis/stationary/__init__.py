"""The stationary statistics of AdamS's denominator V and Adam's second moment S (``docs/algorithm.md`` §2).

One coordinate under gradient noise ``g_t = mu + sigma xi_t``:

* :mod:`~analysis.stationary.derivations`: the means and variances derived in sympy;
* :mod:`~analysis.stationary.closed_forms`: the same written out (``moments``, ``transient``, the
  limits, the equalizing beta2, the step bounds), checked against the derivation;
* :mod:`~analysis.stationary.simulation`: a seeded, vectorized Monte Carlo with standard errors,
  which refuses runs past its memory and work limits before allocating;
* :mod:`~analysis.stationary.noise`: the noise models (Gaussian, Student-t, AR(1)); a new one goes here.

The names below are the ones a notebook or a user needs: ``from analysis import stationary as st``.
"""
from analysis.stationary.closed_forms import (adam_step_bound, adams_step_bound, agreement_from, equalizing_beta2,
                                              moments, ratio_limits, standard_grid, transient)
from analysis.stationary.noise import AR1, Gaussian, StudentT
from analysis.stationary.simulation import Estimate, Simulation, SimulationTooLarge, burn_in, plan, simulate

__all__ = [
    "moments", "transient", "ratio_limits", "equalizing_beta2", "adams_step_bound", "adam_step_bound",
    "standard_grid", "agreement_from", "simulate", "plan", "burn_in", "Estimate", "Simulation", "SimulationTooLarge",
    "Gaussian", "StudentT", "AR1",
]
