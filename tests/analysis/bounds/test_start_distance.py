"""Row 61's test: iteration counts against the initial gradient norm, and the rule that judges them."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.bounds import experiments as bx
_SEPARATED = {"gd": {"ci": [3.4, 3.9]}, "clipped": {"ci": [0.8, 1.1]}, "normalized": {"ci": [0.9, 1.1]}}


@pytest.mark.parametrize("fits, verdict", [
    ({**_SEPARATED, "adams": {"ci": [0.9, 1.1]}}, "holds at our scale"),      # grows like the distance
    ({**_SEPARATED, "adams": {"ci": [3.0, 3.6]}}, "does not hold"),           # grows like GD
    ({**_SEPARATED, "adams": {"ci": [1.5, 2.5]}}, "inconclusive"),
    ({**_SEPARATED, "gd": {"ci": [1.5, 3.0]}, "adams": {"ci": [0.9, 1.1]}}, "not testable here"),   # GD not separated
    ({**_SEPARATED, "clipped": {"ci": [2.5, 3.0]}, "adams": {"ci": [0.9, 1.1]}}, "not testable here"),
    ({**_SEPARATED, "adams": {"ci": [float("nan"), float("nan")]}}, "inconclusive"),
])
def test_start_distance_verdict_returns_each_of_its_verdicts(fits, verdict):
    assert bx.start_distance_verdict(fits) == verdict


def test_start_distance_study_separates_fixed_steps_from_bounded_steps():
    # small and fast: GD's count grows with the initial gradient norm, clipped GD's barely does
    out = bx.start_distance_study(("gd", "clipped"), (2.0, 4.0, 6.0), np.logspace(-3, 0, 7), seeds=4, n_boot=50,
                                  d=4)
    gd, clipped = out["fits"]["gd"], out["fits"]["clipped"]
    assert gd["slope"] > 2.5 and clipped["slope"] < 1.5 and gd["ci"][0] > clipped["ci"][1]
    assert out["fits_grad"]["gd"]["slope"] > 0.7 and out["fits_grad"]["clipped"]["slope"] < 0.4
    assert out["grad0"] == sorted(out["grad0"]) and len(gd["T"]) == 3
    again = bx.start_distance_study(("gd",), (2.0, 4.0, 6.0), np.logspace(-3, 0, 7), seeds=4, n_boot=50, d=4)
    assert again["fits"]["gd"] == gd  # seeded: the same numbers


def test_exponent_fit_against_another_quantity_needs_one_positive_value_per_entry():
    from analysis.bounds.simulations import exponent_fit

    t = np.arange(200.0)[:, None, None]
    curves = [np.repeat(np.repeat(np.exp(-t / k), 2, axis=1), 3, axis=2) for k in (10.0, 20.0, 40.0)]
    fit = exponent_fit(curves, [0.01] * 3, "min_expected_norm", against=[1.0, 2.0, 4.0], n_boot=20)
    assert fit["slope"] == pytest.approx(1.0, abs=0.05) and fit["x"] == pytest.approx([1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="one positive value per eps"):
        exponent_fit(curves, [0.01] * 3, "min_expected_norm", against=[1.0, -2.0, 4.0])
