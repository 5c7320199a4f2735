"""Hostile input to the Monte Carlo simulator: every bad argument is named, and a run too large for
the machine (too many chains, a burn-in that never ends, a grid too large) is refused with its
estimated cost before anything is allocated.

New names are looked up on the module, not imported, so that each test fails on its own when a
check is missing.
"""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from analysis.stationary import simulation as sim_mod
from analysis import stationary as st

GRID = dict(mu=1.0, sigma=1.0, beta1=0.9, beta2=0.95)


def traced_peak(fn) -> tuple[int, object]:
    """Peak bytes traced while ``fn`` runs, and what it returned or raised."""
    tracemalloc.start()
    try:
        try:
            outcome = fn()
        except Exception as err:  # noqa: BLE001 - the caller inspects it
            outcome = err
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def unlimited_plan(**kwargs):
    """The cost of a run with every limit switched off (planning allocates no chains)."""
    return sim_mod.plan(**{**GRID, **kwargs}, max_memory=math.inf, max_work=math.inf, max_steps=math.inf)


# ---------------------------------------------------------------- runs too large to start


@pytest.mark.parametrize("chains,keyword", [(2 * 10**7, "max_work="), (10**9, "max_memory=")])
def test_huge_chains_are_refused_with_the_estimate_before_allocating(chains, keyword):
    """2e7 chains is ~6e9 chain-steps (a minute and a half); 1e9 chains needs ~160 GiB."""
    peak, err = traced_peak(lambda: st.simulate(**GRID, chains=chains, seed=0))
    assert isinstance(err, ValueError), f"simulate(chains={chains}) was not refused: {err!r}"
    assert type(err).__name__ == "SimulationTooLarge"
    cost = unlimited_plan(chains=chains)
    message = str(err)
    assert keyword in message
    assert f"{cost.memory:,} bytes" in message and f"{cost.work:.3g} chain-steps" in message
    assert peak < 2**20, f"{peak:,} bytes were allocated before the refusal"


def test_a_burn_in_past_the_limit_names_beta2_and_the_burn_in():
    """beta2 = 0.99999999 asks for ~1.8e9 steps per chain; with 2 chains the work alone looks small."""
    for chains in (10_000, 2):
        burn = st.burn_in(0.9, 0.99999999, chains)
        with pytest.raises(ValueError, match="max_steps=") as info:
            st.simulate(1.0, 1.0, 0.9, 0.99999999, chains=chains, seed=0)
        message = str(info.value)
        assert "beta2" in message and "burn-in" in message and f"{burn:,}" in message
        assert burn > 10**9


def test_explicit_steps_past_the_limit_are_refused():
    with pytest.raises(ValueError, match=r"steps=1,000,001.*max_steps="):
        st.simulate(**GRID, chains=2, steps=10**6 + 1, seed=0)


def test_a_grid_too_large_is_refused_before_it_is_built():
    """1e5 x 1e5 grid points: broadcasting them flat would take 80 GB per array."""
    mu, beta1 = np.zeros((10**5, 1)), np.linspace(0.1, 0.9, 10**5)[None, :]
    peak, err = traced_peak(lambda: st.simulate(mu, 1.0, beta1, 0.95, chains=2, seed=0))
    assert isinstance(err, ValueError) and "max_memory=" in str(err) and "(100000, 100000)" in str(err), repr(err)
    assert peak < 2**20


def test_raising_a_limit_lets_the_refused_run_through():
    """The limits are inclusive: a run is refused exactly when its estimate passes the keyword's value."""
    kwargs = dict(**GRID, chains=3000, steps=5, seed=0)
    cost = unlimited_plan(chains=3000, steps=5)
    for keyword, value in (("max_work", cost.work), ("max_memory", cost.memory), ("max_steps", 5)):
        with pytest.raises(ValueError, match=f"{keyword}="):
            st.simulate(**kwargs, **{keyword: value - 1})
        assert st.simulate(**kwargs, **{keyword: value})["E_m"].value.shape == ()


# ---------------------------------------------------------------- the estimates themselves

SMALL_RUNS = {
    "one pair, four points": dict(mu=np.linspace(0, 2, 4), beta2=0.95, chains=50_000),
    "equal betas, kept samples": dict(mu=np.linspace(0, 2, 4), beta2=0.9, chains=50_000, keep_samples=True),
    "two pairs, Student-t": dict(mu=np.linspace(0, 2, 8)[None, :], beta2=np.array([[0.6], [0.95]]), chains=20_000,
                                 noise=st.StudentT(5)),
    "many points, two chains": dict(mu=np.linspace(0, 2, 20_000), beta2=0.95, chains=2),
}


@pytest.mark.parametrize("run", SMALL_RUNS.values(), ids=SMALL_RUNS.keys())
def test_the_memory_estimate_is_within_a_factor_2_of_the_traced_peak(run):
    kwargs = {**GRID, **run, "steps": 10, "seed": 1}
    estimate = sim_mod.plan(**kwargs).memory
    peak, result = traced_peak(lambda: st.simulate(**kwargs))
    assert not isinstance(result, Exception), repr(result)
    assert estimate / 2 <= peak <= 2 * estimate, f"estimate {estimate:,} bytes, traced peak {peak:,} bytes"


def test_work_is_chain_steps_summed_over_the_beta_pairs():
    """The noise is advanced once per (beta1, beta2) pair, whatever the number of mu/sigma values."""
    one = unlimited_plan(chains=20_000)
    assert one.work >= 20_000 * one.steps[0]
    assert unlimited_plan(mu=np.linspace(0, 1, 50), chains=20_000).work == one.work
    two = unlimited_plan(beta1=np.array([0.9, 0.5]), beta2=np.array([0.95, 0.6]), chains=20_000)
    other = unlimited_plan(beta1=0.5, beta2=0.6, chains=20_000)
    assert two.work == one.work + other.work


def test_every_existing_caller_fits_the_default_limits_with_margin():
    """The notebook and the benchmark at full size (not only ADAMS_QUICK=1), and the largest test runs."""
    beta, snr = st.standard_grid(30, 30)
    calls = [
        dict(mu=snr[None, :], beta1=beta[:, None], beta2=beta[:, None], chains=10_000),  # the standard grid
        dict(mu=np.logspace(-2, 2, 13)[None, :], beta1=0.9, beta2=np.array([0.9, 0.95, 0.98, 0.99, 0.999])[:, None],
             chains=10_000),
        dict(mu=[0.1, 1.0, 10.0], chains=100_000, keep_samples=True),
        dict(mu=np.logspace(-2, 2, 13), chains=10_000, noise=st.AR1(0.9)),
        dict(mu=[0.0, 0.5, 2.0], beta1=np.array([[0.9], [0.95], [0.5]]), beta2=np.array([[0.95], [0.95], [0.9]]),
             chains=40_000, noise=st.StudentT(12)),
    ]
    for call in calls:
        cost = unlimited_plan(**{"sigma": 1.0, **call})
        assert cost.work * 4 <= sim_mod.MAX_WORK and cost.memory * 4 <= sim_mod.MAX_MEMORY
        assert max(cost.steps) * 4 <= sim_mod.MAX_STEPS


# ---------------------------------------------------------------- bad arguments, each named

BAD_ARGUMENTS = [
    (dict(mu=[]), "mu is empty"),
    (dict(sigma=[]), "sigma is empty"),
    (dict(beta2=np.array([])), "beta2 is empty"),
    (dict(mu="1.0"), "mu must be a real number"),
    (dict(mu=[1j]), "mu must be a real number"),
    (dict(mu=np.inf), "mu must be finite"),
    (dict(sigma=np.nan), "sigma must be finite"),
    (dict(sigma=-1.0), "sigma must be > 0"),
    (dict(beta1=1.0), "beta1 must lie in"),
    (dict(beta2=np.nan), "beta2 must be finite"),
    (dict(beta2=-0.5), "beta2 must lie in"),
    (dict(chains=2.5), "chains must be an integer"),
    (dict(chains=math.inf), "chains must be an integer"),
    (dict(chains=np.nan), "chains must be an integer"),
    (dict(chains="100"), "chains must be an integer"),
    (dict(chains=True), "chains must be an integer"),
    (dict(steps=1.5), "steps must be an integer"),
    (dict(steps=-3), "steps must be an integer"),
    (dict(seed=None), "seed must be an integer"),
    (dict(seed=-1), "seed must be an integer"),
    (dict(seed=0.5), "seed must be an integer"),
    (dict(quantiles=0.5), "quantiles must be a sequence"),
    (dict(quantiles=(np.nan,)), "quantile levels"),
    (dict(tol=np.nan), "tol must lie in"),
    (dict(tol=1.5), "tol must lie in"),
    (dict(keep_samples="no"), "keep_samples"),
    (dict(workers=0), "workers must be an integer"),
    (dict(progress="yes"), "progress"),
    (dict(noise="gaussian"), "noise must be a noise model"),
    (dict(max_memory=np.nan), "max_memory must be a positive number"),
    (dict(max_work=0), "max_work must be a positive number"),
    (dict(max_steps=-1), "max_steps must be a positive number"),
]


@pytest.mark.parametrize("bad,message", BAD_ARGUMENTS, ids=[str(b) for b, _ in BAD_ARGUMENTS])
def test_a_bad_simulation_argument_is_named_before_any_chain_runs(bad, message):
    with pytest.raises(ValueError, match=message):
        st.simulate(**{**GRID, "chains": 100, "seed": 0, **bad})


class ForeverNoise:
    """A home-made noise model whose lag-one correlation is out of range."""

    memory = 1.0
    label = "broken"

    def stream(self, rng, n):
        return lambda out: rng.standard_normal(out=out)


BAD_NOISE = [
    ("Gaussian skewness NaN", lambda: st.Gaussian(skewness=math.nan), "skewness"),
    ("Gaussian kurtosis 4", lambda: st.Gaussian(kurtosis=4.0), "kurtosis"),
    ("Gaussian memory 0.5", lambda: st.Gaussian(memory=0.5), "memory"),
    ("Student-t skewness NaN", lambda: st.StudentT(5, skewness=math.nan), "skewness"),
    ("Student-t memory 0.3", lambda: st.StudentT(5, memory=0.3), "memory"),
    ("Student-t dof NaN", lambda: st.StudentT(math.nan), "dof"),
    ("Student-t dof string", lambda: st.StudentT("5"), "dof"),
    ("AR1 rho NaN", lambda: st.AR1(math.nan), "rho"),
    ("AR1 rho -0.2", lambda: st.AR1(-0.2), "rho"),
    ("AR1 of AR1", lambda: st.AR1(0.5, innovations=st.AR1(0.5)), "innovations"),
    ("home-made memory 1", lambda: st.simulate(**GRID, chains=100, seed=0, noise=ForeverNoise()), "noise.memory"),
    ("burn_in memory 1", lambda: st.burn_in(0.9, 0.95, 10_000, memory=1.0), "memory"),
    ("burn_in chains 2.5", lambda: st.burn_in(0.9, 0.95, 2.5), "chains"),
]


@pytest.mark.parametrize("make,message", [case[1:] for case in BAD_NOISE], ids=[case[0] for case in BAD_NOISE])
def test_a_bad_noise_parameter_is_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("moment", ["skewness", "kurtosis"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_noise_moments_are_refused_by_the_closed_forms(moment, value):
    """skewness = NaN used to slip past the kurtosis check and come back as NaN variances."""
    for fn in (lambda **kw: st.moments(1.0, 1.0, 0.9, 0.95, **kw), lambda **kw: st.equalizing_beta2(1.0, 0.9, **kw),
               lambda **kw: st.transient(1.0, 1.0, 0.9, 0.95, 3, **kw)):
        with pytest.raises(ValueError, match=moment):
            fn(**{moment: value})


# ---- after review: huge integers, many quantile levels, magnitudes whose powers overflow ----

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(chains=10**400), sim_mod.SimulationTooLarge, "past any run"),
    (dict(quantiles=[0.5] * 1000), ValueError, "at most 100 quantile levels"),
])
def test_counts_past_any_machine_and_many_quantiles_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        sim_mod.simulate(1.0, 1.0, 0.9, 0.95, **kwargs)


@pytest.mark.parametrize("mu, sigma, name", [(1e308, 1.0, "mu"), (1.0, 1e40, "sigma")])
def test_magnitudes_whose_fourth_powers_overflow_are_refused(mu, sigma, name):
    with pytest.raises(ValueError, match=f"{name} must lie within"):
        sim_mod.simulate(mu, sigma, 0.9, 0.95, chains=100)
