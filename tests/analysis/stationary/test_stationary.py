"""Closed forms of analysis.stationary against the sympy derivation, and their limits."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import adams
from analysis.stationary import closed_forms
from analysis.stationary import derivations as d
from analysis import stationary as st

BETAS = [(0.5, 0.5), (0.9, 0.95), (0.9, 0.999), (0.95, 0.9), (0.99, 0.99), (0.0, 0.9)]


@pytest.fixture(scope="module")
def derived():
    return d.stationary()


def numeric(expr, **values):
    subs = {getattr(d, k): v for k, v in values.items()}
    return float(expr.subs(subs))


@pytest.mark.parametrize("key", ["E_m", "Var_m", "E_V", "Var_V", "E_S", "Var_S"])
def test_written_out_forms_equal_the_derivation_symbolically(derived, key):
    written = closed_forms._closed_forms(d.mu, d.sigma, d.beta1, d.beta2, d.gamma, d.kappa)[key]
    assert sp.simplify(written - derived[key]) == 0


def test_variance_of_V_splits_into_momentum_and_gradient_parts(derived):
    parts = d.beta2**2 * derived["Var_m2"] + (1 - d.beta2) ** 2 * derived["Var_g2"]
    assert sp.simplify(parts - derived["Var_V"]) == 0


def test_gaussian_textbook_values(derived):
    """The module docstring's forms: Var[m] = a sigma^2, Var[S] = (1-b2)/(1+b2) (4 mu^2 s^2 + 2 s^4)."""
    g = {k: v.subs(d.GAUSSIAN) for k, v in derived.items()}
    a = (1 - d.beta1) / (1 + d.beta1)
    assert sp.simplify(g["Var_m"] - a * d.sigma**2) == 0
    assert sp.simplify(g["Var_S"] - (1 - d.beta2) / (1 + d.beta2) * (4 * d.mu**2 * d.sigma**2 + 2 * d.sigma**4)) == 0
    assert sp.simplify(g["E_V"] - (d.mu**2 + d.sigma**2 * (d.beta2 * a + 1 - d.beta2))) == 0


@pytest.mark.parametrize("beta1,beta2", BETAS)
def test_numeric_moments_match_derivation_at_points(derived, beta1, beta2):
    mus = np.array([-3.0, 0.0, 0.01, 1.0, 100.0])
    out = st.moments(mus, 2.0, beta1, beta2, skewness=0.3, kurtosis=4.5)
    for key in out:
        expected = [numeric(derived[key], mu=m, sigma=2.0, beta1=beta1, beta2=beta2, gamma=0.3, kappa=4.5) for m in mus]
        np.testing.assert_allclose(out[key], expected, rtol=1e-11, atol=1e-12)


def test_moments_broadcast_like_the_inputs():
    out = st.moments(np.ones((3, 1)), 1.0, np.full((1, 4), 0.9), 0.95)
    assert all(v.shape == (3, 4) for v in out.values())
    assert set(out) >= {"E_V", "Var_V", "E_S", "Var_S"}


def test_ratio_limits_match_sympy_and_the_extremes_of_moments():
    lim = d.ratio_limits()
    for beta1, beta2 in BETAS:
        num = st.ratio_limits(beta1, beta2)
        for key, expr in lim.items():
            assert float(num[key]) == pytest.approx(numeric(expr, beta1=beta1, beta2=beta2), rel=1e-12)
        big, small = st.moments(1e5, 1.0, beta1, beta2), st.moments(1e-5, 1.0, beta1, beta2)
        assert big["E_V"] / big["E_S"] == pytest.approx(num["E_large_batch"], rel=1e-8)
        assert big["Var_V"] / big["Var_S"] == pytest.approx(num["Var_large_batch"], rel=1e-8)
        assert small["E_V"] / small["E_S"] == pytest.approx(num["E_noise"], rel=1e-8)
        assert small["Var_V"] / small["Var_S"] == pytest.approx(num["Var_noise"], rel=1e-8)


def test_large_batch_variances_agree_exactly_when_beta2_equals_beta1():
    beta = np.linspace(0.05, 0.999, 50)
    np.testing.assert_allclose(st.ratio_limits(beta, beta)["Var_large_batch"], 1.0, rtol=1e-12)


def test_equalizing_beta2_matches_sympy_and_equalizes():
    expr = d.equalizing_beta2()
    snr = np.array([0.0, 0.01, 0.5, 1.0, 3.0, 100.0])
    for beta1 in (0.5, 0.9, 0.95, 0.99):
        for kurtosis in (3.0, 4.5):
            b2 = st.equalizing_beta2(snr, beta1, kurtosis=kurtosis)
            expected = [numeric(expr, mu=r, sigma=1.0, beta1=beta1, gamma=0.0, kappa=kurtosis) for r in snr]
            np.testing.assert_allclose(b2, expected, rtol=1e-12)
            out = st.moments(snr, 1.0, beta1, b2, kurtosis=kurtosis)
            np.testing.assert_allclose(out["Var_V"], out["Var_S"], rtol=1e-10)
            # above the root AdamS's denominator fluctuates more, below it less
            above, below = st.moments(snr, 1.0, beta1, b2 + 1e-3 * (1 - b2)), st.moments(snr, 1.0, beta1, 0.9 * b2)
            assert np.all(above["Var_V"] > above["Var_S"]) and np.all(below["Var_V"] < below["Var_S"])


def test_equalizing_beta2_limits():
    beta1 = np.linspace(0.1, 0.99, 20)
    a = (1 - beta1) / (1 + beta1)
    np.testing.assert_allclose(st.equalizing_beta2(1e6, beta1), beta1, rtol=1e-9)
    np.testing.assert_allclose(st.equalizing_beta2(0.0, beta1), (1 - a**2) / (1 + a**2), rtol=1e-12)
    curve = st.equalizing_beta2(np.logspace(-3, 3, 200), 0.9)
    assert np.all(np.diff(curve) < 0), "the equalizing beta2 falls from (1-a^2)/(1+a^2) to beta1 as mu/sigma grows"


def test_step_bound_derivation_agrees_with_adams_and_is_attained():
    bound_sq, x_star = d.step_bound_squared()
    for beta1, beta2 in [(0.9, 0.95), (0.9, 0.999), (0.5, 0.7), (0.95, 0.9)]:
        c = numeric(sp.sqrt(bound_sq), beta1=beta1, beta2=beta2)
        assert c == pytest.approx(adams.step_bound(beta1, beta2), rel=1e-12)
        assert c == pytest.approx(float(st.adams_step_bound(beta1, beta2)), rel=1e-12)
        x = numeric(x_star, beta1=beta1, beta2=beta2)  # m_{t-1} / g_t that attains it
        assert abs(beta1 * x + 1 - beta1) / np.sqrt(beta2 * x * x + 1 - beta2) == pytest.approx(c, rel=1e-12)


def test_adam_step_bound_is_the_cauchy_schwarz_constant_and_approached():
    beta1, beta2 = 0.9, 0.95
    k = np.arange(4000)
    g = (beta1 / beta2) ** k  # the extremal history: g_{t-k} proportional to (beta1/beta2)^k
    m = (1 - beta1) * np.sum(beta1**k * g)
    S = (1 - beta2) * np.sum(beta2**k * g * g)
    assert m / np.sqrt(S) == pytest.approx(float(st.adam_step_bound(beta1, beta2)), rel=1e-10)
    assert np.isinf(st.adam_step_bound(0.99, 0.95))  # beta1^2 > beta2: unbounded


@pytest.mark.parametrize("bias_correction", [False, True])
def test_transient_recursion_matches_sympy_closed_forms(bias_correction):
    tr = d.transient()
    mu, sigma, beta1, beta2, steps = 0.7, 1.3, 0.9, 0.95, 25
    out = st.transient(mu, sigma, beta1, beta2, steps, bias_correction=bias_correction)
    for i in range(steps):
        t = i + 1
        c1, c2 = (1 - beta1**t, 1 - beta2**t) if bias_correction else (1.0, 1.0)
        vals = dict(mu=mu, sigma=sigma, beta1=beta1, beta2=beta2, t=t)
        assert out["E_m"][i] == pytest.approx(numeric(tr["E_m"], **vals) / c1, rel=1e-12)
        assert out["Var_m"][i] == pytest.approx(numeric(tr["Var_m"], **vals) / c1**2, rel=1e-12)
        assert out["E_S"][i] == pytest.approx(numeric(tr["E_S"], **vals) / c2, rel=1e-12)
        if not bias_correction:
            assert out["E_V"][i] == pytest.approx(numeric(tr["E_V"], **vals), rel=1e-12)


def test_transient_known_values_and_stationary_limit():
    mu, sigma, beta1, beta2 = 0.5, 1.0, 0.9, 0.95
    hat = st.transient(mu, sigma, beta1, beta2, 3000, bias_correction=True)
    np.testing.assert_allclose(hat["E_S"], mu**2 + sigma**2, rtol=1e-12)  # Adam's correction is exact
    assert hat["E_V"][0] == pytest.approx((1 - beta2) * (mu**2 + sigma**2))  # m_0 = 0: AdamS's first step
    raw = st.transient(mu, sigma, beta1, beta2, 3000)
    stationary = st.moments(mu, sigma, beta1, beta2)
    for key in stationary:
        assert raw[key][-1] == pytest.approx(float(stationary[key]), rel=1e-9)
        assert hat[key][-1] == pytest.approx(float(stationary[key]), rel=1e-9)


def test_standard_grid_spans_the_issue_ranges():
    beta, snr = st.standard_grid()
    assert len(beta) >= 30 and len(snr) >= 30
    assert snr[0] == pytest.approx(0.01) and snr[-1] == pytest.approx(100.0)
    assert beta.min() == pytest.approx(0.5) and beta.max() == pytest.approx(0.999)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(mu=1.0, sigma=0.0, beta1=0.9, beta2=0.9), "sigma"),
        (dict(mu=1.0, sigma=1.0, beta1=1.0, beta2=0.9), "beta1"),
        (dict(mu=1.0, sigma=1.0, beta1=0.9, beta2=-0.1), "beta2"),
        (dict(mu=np.nan, sigma=1.0, beta1=0.9, beta2=0.9), "mu"),
        (dict(mu=np.ones(3), sigma=np.ones(2), beta1=0.9, beta2=0.9), "broadcast"),
        (dict(mu=1.0, sigma=1.0, beta1=0.9, beta2=0.9, kurtosis=0.5), "kurtosis"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        st.moments(**kwargs)


def test_agreement_from_is_the_point_after_the_last_one_outside_the_band():
    snr = np.array([0.1, 1.0, 2.0, 5.0, 10.0])
    ratio = np.array([0.5, 0.96, 0.90, 0.97, 0.999])  # dips out of the 5% band again at 2.0
    assert st.agreement_from(snr, ratio, 0.05) == 5.0
    assert st.agreement_from(snr, ratio, 0.11) == 1.0
    assert st.agreement_from(snr, ratio, 0.6) == 0.1  # the whole curve is inside


def test_agreement_from_on_the_closed_form_matches_solving_by_hand():
    # E[V]/E[S] = (r^2 + c)/(r^2 + 1) >= 0.95  <=>  r >= sqrt((0.95 - c)/0.05)
    snr = np.logspace(-2, 2, 4001)
    out = st.moments(snr, 1.0, 0.9, 0.95)
    c = float(st.ratio_limits(0.9, 0.95)["E_noise"])
    by_hand = np.sqrt((0.95 - c) / 0.05)
    found = st.agreement_from(snr, out["E_V"] / out["E_S"], 0.05)
    assert by_hand <= found <= by_hand * snr[1] / snr[0]  # the first grid point at or above the root


@pytest.mark.parametrize("snr, ratio, level, message", [
    ([0.1, 1.0], [0.5, 0.5], 0.05, "does not come within"),
    ([1.0, 0.1], [1.0, 1.0], 0.05, "increasing"),
    ([0.1, 1.0], [1.0, np.nan], 0.05, "finite"),
    ([0.1, 1.0], [1.0], 0.05, "one length"),
    ([0.1, 1.0], [1.0, 1.0], 0.0, "positive"),
])
def test_agreement_from_refuses_curves_it_cannot_answer(snr, ratio, level, message):
    with pytest.raises(ValueError, match=message):
        st.agreement_from(np.array(snr), np.array(ratio), level)


def test_estimate_at_returns_one_point_as_floats():
    est = st.Estimate(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[0.1, 0.2], [0.3, 0.4]]))
    assert est.at((1, 0)) == (3.0, 0.3)
    assert st.Estimate(np.array([5.0, 6.0]), np.array([0.5, 0.6])).at(-1) == (6.0, 0.6)
    value, se = est.at((0, 1))
    assert (value, se) == (2.0, 0.2) and type(value) is float and type(se) is float
