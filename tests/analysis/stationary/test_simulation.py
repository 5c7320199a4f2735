"""Monte Carlo (analysis.stationary.simulation) against the closed forms, a plain loop, and itself."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import stationary as st
from analysis.stationary.simulation import block_rngs, reference_chain

PAIRS = np.array([(0.5, 0.5), (0.9, 0.9), (0.9, 0.95), (0.9, 0.99), (0.95, 0.95), (0.99, 0.99), (0.8, 0.999)])
SNR = np.array([0.01, 0.3, 1.0, 3.0, 100.0])
KEYS = ["E_m", "Var_m", "E_V", "Var_V", "E_S", "Var_S"]


def with_ratios(exact):
    return {**exact, "E_ratio": exact["E_V"] / exact["E_S"], "Var_ratio": exact["Var_V"] / exact["Var_S"]}


def grid(pairs=PAIRS, snr=SNR):
    return snr[None, :], 1.0, pairs[:, :1], pairs[:, 1:]


@pytest.fixture(scope="module")
def gaussian_run():
    mu, sigma, beta1, beta2 = grid()
    return st.simulate(mu, sigma, beta1, beta2, chains=20_000, seed=2024), with_ratios(st.moments(mu, sigma, beta1, beta2))


@pytest.mark.parametrize("key", KEYS + ["E_ratio", "Var_ratio"])
def test_monte_carlo_within_4_standard_errors_of_closed_forms(gaussian_run, key):
    sim, exact = gaussian_run
    z = sim[key].z(exact[key])
    worst = np.unravel_index(np.argmax(np.abs(z)), z.shape)
    assert np.all(np.abs(z) < 4), (f"{key}: z = {z[worst]:.2f} at (beta1, beta2) = {PAIRS[worst[0]]}, "
                                   f"mu/sigma = {SNR[worst[1]]}")


def test_the_check_rejects_the_denominator_built_from_m_t():
    """Using m_t instead of m_{t-1} in V leaves E[V] unchanged but not Var[V]: the 4-SE check sees it."""
    beta1, beta2, n, steps = 0.9, 0.95, 20_000, 400
    rng = np.random.default_rng(7)
    snr = np.array([0.01, 1.0])
    m = np.zeros((2, n))
    for _ in range(steps):
        g = snr[:, None] + rng.standard_normal(n)
        m = beta1 * m + (1 - beta1) * g
    wrong_V = beta2 * m**2 + (1 - beta2) * g**2
    exact = st.moments(snr, 1.0, beta1, beta2)
    var = wrong_V.var(axis=1, ddof=1)
    se = np.sqrt(((wrong_V - wrong_V.mean(axis=1, keepdims=True)) ** 4).mean(axis=1) - var**2) / np.sqrt(n)
    assert np.max(np.abs(var - exact["Var_V"]) / se) > 4


def test_simulator_equals_the_plain_recursion_on_the_same_noise():
    mus, beta1, beta2, chains, steps, seed = np.array([0.0, 0.5, 20.0]), 0.9, 0.95, 40, 150, 11
    sim = st.simulate(mus, 1.5, beta1, beta2, chains=chains, steps=steps, seed=seed, keep_samples=True)
    ((n, rng),) = block_rngs(seed, beta1, beta2, chains)
    xi = np.stack([rng.standard_normal(n) for _ in range(steps)])
    for i, mu in enumerate(mus):
        for c in range(0, chains, 7):
            _, m, V, S = reference_chain(mu, 1.5, beta1, beta2, xi[:, c])
            np.testing.assert_allclose([sim.samples[k][i, c] for k in "mVS"], [m, V, S], rtol=1e-11, atol=1e-13)


def test_reruns_are_identical_and_independent_of_threads_and_of_other_grid_points():
    kwargs = dict(chains=9000, seed=5)  # two blocks
    a = st.simulate([0.1, 1.0], 1.0, 0.9, 0.95, workers=1, **kwargs)
    b = st.simulate([0.1, 1.0], 1.0, 0.9, 0.95, workers=2, **kwargs)
    c = st.simulate(np.array([[0.1, 1.0]]), 1.0, np.array([[0.9], [0.5]]), np.array([[0.95], [0.6]]), **kwargs)
    for key in a:
        np.testing.assert_array_equal(a[key].value, b[key].value)
        np.testing.assert_array_equal(a[key].value, c[key].value[0])
    d = st.simulate([0.1, 1.0], 1.0, 0.9, 0.95, chains=9000, seed=6)
    assert not np.array_equal(a["E_V"].value, d["E_V"].value)


def test_normalized_steps_never_exceed_their_bounds():
    pairs = np.array([(0.9, 0.95), (0.9, 0.999), (0.95, 0.9), (0.5, 0.3)])
    mu, sigma, beta1, beta2 = grid(pairs, np.array([0.0, 0.1, 1.0, 10.0]))
    for noise in (st.Gaussian(), st.StudentT(2.5), st.AR1(0.9)):
        sim = st.simulate(mu, sigma, beta1, beta2, chains=4000, seed=3, noise=noise)
        assert np.all(sim.max_abs_step["adams_step"] <= st.adams_step_bound(beta1, beta2) * (1 + 1e-12))
        assert np.all(sim.max_abs_step["adam_step"] <= st.adam_step_bound(beta1, beta2) * (1 + 1e-12))


def test_heavy_tailed_noise_matches_the_four_moment_closed_form():
    """Student-t with 12 dof has kurtosis 3.75 (and 8 finite moments, so the SEs of variances exist)."""
    noise = st.StudentT(12)
    pairs = np.array([(0.9, 0.95), (0.95, 0.95), (0.5, 0.9)])
    mu, sigma, beta1, beta2 = grid(pairs, np.array([0.0, 0.5, 2.0]))
    sim = st.simulate(mu, sigma, beta1, beta2, chains=40_000, seed=8, noise=noise)
    exact = st.moments(mu, sigma, beta1, beta2, kurtosis=noise.kurtosis)
    gaussian = st.moments(mu, sigma, beta1, beta2)
    for key in KEYS:
        assert np.all(np.abs(sim[key].z(exact[key])) < 4), key
    assert np.max(np.abs(sim["Var_S"].z(gaussian["Var_S"]))) > 4  # the Gaussian form is wrong here


def test_ar1_noise_keeps_E_S_and_inflates_the_momentum_variance():
    """With lag-k correlation rho^k, Var[m] = a sigma^2 (1 + rho beta1)/(1 - rho beta1) (sum the
    covariances of the EMA weights); E[S] = mu^2 + sigma^2 still, since every xi_t has variance 1."""
    rho, beta1, beta2, snr = 0.6, 0.9, 0.95, np.array([0.0, 1.0, 5.0])
    sim = st.simulate(snr, 1.0, beta1, beta2, chains=40_000, seed=9, noise=st.AR1(rho))
    a = (1 - beta1) / (1 + beta1)
    var_m = a * (1 + rho * beta1) / (1 - rho * beta1)
    assert np.all(np.abs(sim["Var_m"].z(var_m)) < 4)
    assert np.all(np.abs(sim["E_V"].z(beta2 * (snr**2 + var_m) + (1 - beta2) * (snr**2 + 1))) < 4)
    assert np.all(np.abs(sim["E_S"].z(snr**2 + 1)) < 4)


def test_quantile_standard_errors_cover_the_truth():
    """m_{t-1} is exactly Gaussian: its 0.05 and 0.95 quantiles are known; the steps' medians are sane."""
    sim = st.simulate([0.0], 1.0, 0.9, 0.9, chains=20_000, seed=4, keep_samples=True)
    assert sim["adams_step_q0.5"].value[0] == pytest.approx(0.0, abs=4 * sim["adams_step_q0.5"].se[0])
    assert sim["adams_step_q0.95"].value[0] > 0 > sim["adams_step_q0.05"].value[0]
    assert np.all(sim["adams_step_q0.99"].se > 0)


def test_burn_in_puts_the_bias_below_the_floor():
    for beta1, beta2 in [(0.9, 0.95), (0.999, 0.999), (0.5, 0.99), (0.0, 0.9)]:
        n = 10_000
        b = st.burn_in(beta1, beta2, n)
        assert beta2**b <= 0.01 * np.sqrt(2 * (1 - beta2) / ((1 + beta2) * n))
        assert st.burn_in(beta1, beta2, 100 * n) > b  # more chains, smaller SE, longer burn-in
    assert st.burn_in(0.9, 0.95, 10_000, memory=0.999) > st.burn_in(0.9, 0.95, 10_000)  # slow noise


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(chains=1), "chains"),
        (dict(steps=0), "steps"),
        (dict(quantiles=(0.5, 1.0)), "quantile"),
    ],
)
def test_bad_simulation_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        st.simulate(1.0, 1.0, 0.9, 0.95, **kwargs)


def test_bad_noise_parameters_are_named():
    with pytest.raises(ValueError, match="dof"):
        st.StudentT(2)
    with pytest.raises(ValueError, match="rho"):
        st.AR1(1.0)
