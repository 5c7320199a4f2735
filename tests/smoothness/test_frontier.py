"""The sample (L0, L1) frontier on functions whose frontier is known in closed form."""
from __future__ import annotations

import numpy as np
import pytest

from smoothness.frontier import choose_pair, frontier, frontier_band, trend_line

L1 = np.linspace(0.05, 3.0, 60)


def x4_points(R=3.0, n=20001):
    """f = x^4 on [-R, R]: |f''| = 12 x^2, |f'| = 4 |x|^3."""
    x = np.linspace(-R, R, n)
    return 12 * x**2, 4 * np.abs(x) ** 3


def x4_frontier(l1, R=3.0):
    """sup_{|x|<=R} (12 x^2 - 4 L1 |x|^3)^+: 16/L1^2 at |x| = 2/L1 if that is inside, else at |x| = R."""
    inside = 2 / l1 <= R
    return np.where(inside, 16 / l1**2, np.maximum(12 * R**2 - 4 * l1 * R**3, 0))


def test_x4_frontier_matches_the_closed_form():
    L, G = x4_points()
    sample = frontier(L, G, L1)
    exact = x4_frontier(L1)
    assert np.all(sample <= exact * (1 + 1e-12))  # the sample frontier never exceeds the true one
    np.testing.assert_allclose(sample, exact, rtol=1e-3)  # and reaches it on a fine grid


def test_exp_is_not_L_smooth_and_its_frontier_shows_it():
    """f = e^x on [a, b]: f'' = f' = e^x, so L0*(L1) = (1 - L1) e^b for L1 < 1 and 0 from L1 = 1 on."""
    for b in (1.0, 3.0, 6.0):
        x = np.linspace(-2, b, 5001)
        sample = frontier(np.exp(x), np.exp(x), L1)
        np.testing.assert_allclose(sample, np.maximum(1 - L1, 0) * np.exp(b), rtol=1e-9, atol=1e-12)
    # the L0 needed at L1 = 0 (plain L-smoothness) grows without bound with the domain
    assert frontier(np.exp([6.0]), np.exp([6.0]), [0.0])[0] > 400


def test_L_smooth_function_has_a_flat_frontier():
    """f = log cosh x: f'' = sech^2 x <= 1 with equality at x = 0, where f' = 0: L0*(L1) = 1 for all L1."""
    x = np.linspace(-5, 5, 2001)
    sample = frontier(1 / np.cosh(x) ** 2, np.abs(np.tanh(x)), L1)
    np.testing.assert_allclose(sample, 1.0)


def test_frontier_is_convex_and_non_increasing():
    rng = np.random.default_rng(0)
    G = rng.lognormal(size=300)
    L = 2 + G**1.5 * rng.uniform(0.5, 1.5, 300)
    l1 = np.linspace(0, 10, 201)
    f = frontier(L, G, l1)
    assert np.all(np.diff(f) <= 1e-12)
    assert np.all(np.diff(f, 2) >= -1e-9)


def test_quantile_frontier_lies_below_the_max_and_band_brackets_it():
    rng = np.random.default_rng(1)
    G = rng.lognormal(size=400)
    L = 1 + 3 * G * rng.uniform(0.5, 1.5, 400)
    q = frontier(L, G, L1, quantile=0.9)
    assert np.all(q <= frontier(L, G, L1))
    low, high = frontier_band(L, G, L1, quantile=0.9, n_boot=300, seed=2)
    assert np.all(low <= q + 1e-12) and np.all(q <= high + 1e-12) and np.all(low < high)
    again = frontier_band(L, G, L1, quantile=0.9, n_boot=300, seed=2)
    np.testing.assert_array_equal(low, again[0])


def test_choose_pair_minimizes_the_bound_along_the_frontier():
    L, G = x4_points()
    bound = lambda l0, l1: l0 + 40 * l1  # noqa: E731  (16/L1^2 + 40 L1 is smallest at L1 = (32/40)^(1/3))
    l0, l1, value = choose_pair(L, G, bound, np.linspace(0.7, 3.0, 2301))
    assert l1 == pytest.approx((32 / 40) ** (1 / 3), abs=2e-3)
    assert l0 == pytest.approx(16 / l1**2, rel=1e-3) and value == pytest.approx(l0 + 40 * l1)


def test_trend_line_recovers_a_power_law_and_is_not_a_bound():
    rng = np.random.default_rng(3)
    G = rng.lognormal(size=500)
    L = 2.0 * G**0.7 * np.exp(rng.normal(scale=0.2, size=500))
    slope, intercept = trend_line(L, G)
    assert slope == pytest.approx(0.7, abs=0.03) and intercept == pytest.approx(np.log(2.0), abs=0.03)
    above = L > np.exp(intercept) * G**slope
    assert 0.3 < above.mean() < 0.7  # about half of the points lie above a trend line


@pytest.mark.parametrize(
    "args,message",
    [
        (([1.0, 2.0], [1.0], [0.0]), "same length"),
        (([np.nan], [1.0], [0.0]), "no point"),
        (([1.0], [-1.0], [0.0]), ">= 0"),
        (([1.0], [1.0], [-0.5]), "l1"),
    ],
)
def test_bad_input_is_named(args, message):
    with pytest.raises(ValueError, match=message):
        frontier(*args)
