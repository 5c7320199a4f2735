"""Paired timing ratios."""
import numpy as np
import pytest

from analysis.timing.ratios import paired_ratio


def test_paired_ratio_cancels_a_shared_drift():
    """Round r of both methods is slowed by the same factor: the paired ratio stays exact."""
    drift = np.linspace(1.0, 3.0, 40)
    r = paired_ratio(0.7 * drift, drift)
    assert r.median == pytest.approx(0.7) and r.q1 == pytest.approx(0.7) and r.q3 == pytest.approx(0.7)
    assert r.ci_low == pytest.approx(0.7) and r.ci_high == pytest.approx(0.7)
    # the ratio of medians would be exact here too, but the spread of either method alone is not
    assert np.std(drift) > 0.5


def test_paired_ratio_ci_covers_the_truth_and_is_seeded():
    rng = np.random.default_rng(3)
    b = rng.uniform(5, 6, size=200)
    a = 0.8 * b * rng.lognormal(0, 0.05, size=200)
    r = paired_ratio(a, b, seed=1)
    assert r.ci_low < 0.8 < r.ci_high
    assert r.ci_high - r.ci_low < 0.05
    assert paired_ratio(a, b, seed=1) == r


@pytest.mark.parametrize(
    "a, b, match",
    [([1.0, 2.0], [1.0], "equal-length"), ([], [], "non-empty"), ([1.0], [0.0], "positive"),
     ([np.nan], [1.0], "finite")],
)
def test_paired_ratio_rejects_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_ratio(a, b)
