"""Statistics and configurations shared by the training notebooks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.training import experiments as ex


def test_summary_matches_scipy_t_interval_and_counts_failures():
    x = [2.1, 2.3, 2.2, 2.6]
    s = ex.summary(x + [float("nan")])
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(x), scale=stats.sem(x))
    assert s["n"] == 4 and s["n_failed"] == 1
    assert s["ci"] == pytest.approx([lo, hi])
    with pytest.raises(ValueError, match="no values"):
        ex.summary([])


def test_paired_gap_removes_the_shared_seed_effect():
    seed_effect = np.array([0.0, 0.5, -0.4, 0.9])
    gap = ex.paired_gap(2.0 + seed_effect, 2.1 + seed_effect)
    assert gap["mean"] == pytest.approx(-0.1) and gap["sd"] == pytest.approx(0.0, abs=1e-12)
    unpaired = ex.summary(2.0 + seed_effect)
    assert unpaired["se"] > 0.1  # the seeds alone would swamp a 0.1 difference
    with pytest.raises(ValueError, match="differ in length"):
        ex.paired_gap([1.0], [1.0, 2.0])


def test_ratio_ci_covers_the_true_ratio_and_is_seeded():
    rng = np.random.default_rng(0)
    a = 2.0 * rng.lognormal(0, 0.1, 200)
    b = rng.lognormal(0, 0.1, 200)
    ci = ex.ratio_ci(a, b, seed=1)
    assert ci[0] < 2.0 < ci[1] and ci == ex.ratio_ci(a, b, seed=1)
    with pytest.raises(ValueError, match="paired"):
        ex.ratio_ci(a, b[:10])


def test_log_correlation_and_ratio_summary():
    x = np.exp(np.linspace(0, 2, 12))
    perfect = ex.log_correlation(x, 3 * x**2)
    assert perfect["r"] == pytest.approx(1.0) and perfect["ci"][0] == pytest.approx(1.0)
    assert ex.log_correlation(x, 1 / x)["r"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 3"):
        ex.log_correlation([1.0, 2.0], [1.0, 2.0])
    r = ex.ratio_summary([1.0, 2.0, float("nan"), 4.0], [1.0, 1.0, 1.0, 1.0])
    assert r["n"] == 3 and r["median"] == 2.0 and math.isclose(r["mean"], 7 / 3)


def test_loss_spike():
    assert ex.loss_spike({"train_loss": [3.0, 2.0, 1.0]}) == 0.0
    assert ex.loss_spike({"train_loss": [3.0, 2.0, 2.8, 1.0, 1.5]}) == pytest.approx(0.8)


def test_quick_and_full_configs():
    quick, full = ex.base_config(True), ex.base_config(False)
    assert quick.steps < full.steps and quick.width < full.width
    assert ex.base_config(False, optimizer="adamw").optimizer == "adamw"
    assert len(ex.seeds(False)) >= 3 and ex.BETA_PAIRS[0] == (0.9, 0.95)


@pytest.mark.parametrize("inherited, own, verdict", [
    ([2.005, 2.012, 2.003], [2.000, 2.010, 2.000], "holds at our scale"),  # loses ~0.003, CI below the margin
    ([2.060, 2.071, 2.065], [2.000, 2.010, 2.000], "does not hold"),       # loses ~0.06, CI above the margin
    ([2.000, 2.060, 2.003], [2.000, 2.010, 2.000], "inconclusive"),        # too noisy to decide with 3 seeds
    ([float("nan"), 2.01, 2.00], [2.000, 2.010, 2.000], "does not hold"),  # diverged at the inherited rate
])
def test_inherit_verdict_returns_each_of_its_verdicts(inherited, own, verdict):
    out = ex.inherit_verdict(inherited, own)
    assert out["verdict"] == verdict
    assert (out["gap"] is None) == (verdict == "does not hold" and out["diverged"] > 0)


def test_inherit_verdict_is_inconclusive_when_a_sweep_is_not_bracketed():
    out = ex.inherit_verdict([2.060, 2.071, 2.065], [2.000, 2.010, 2.000], bracketed=False)
    assert out["verdict"] == "inconclusive" and out["gap"]["mean"] > 0.05


def test_inherit_verdict_refuses_a_best_rate_that_diverged_and_unpaired_lists():
    with pytest.raises(ValueError, match="own best rate diverged"):
        ex.inherit_verdict([2.0, 2.0], [2.0, float("nan")])
    with pytest.raises(ValueError, match="paired"):
        ex.inherit_verdict([2.0, 2.0, 2.0], [2.0, 2.0])


def test_lr_sweeps_use_the_stated_centres_and_refuse_unknown_optimizers():
    with pytest.raises(ValueError, match="no sweep centre"):
        ex.lr_sweeps(True, optimizers=["lion"])
    assert set(ex.SWEEP_CENTERS) == set(ex.COMPARED)
