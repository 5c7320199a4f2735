"""Hessian trace and spectral density (curvlinops' estimators on our products) against dense answers."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.stats
import torch

from smoothness import Objective
from smoothness.hessian import dense_hessian, flatten
from test_smoothness_probes import Scalar, layernorm_problem, quadratic_loss

pytest.importorskip("curvlinops")
from smoothness.spectrum import hessian_operator, hessian_trace, spectral_density  # noqa: E402

N = 200


def t_bound(se: float, df: int) -> float:
    """How far an estimate with standard error ``se`` (estimated with ``df`` degrees of freedom) may
    lie from the truth before the test fails: Student's t quantile for a false alarm of 1e-5."""
    return float(scipy.stats.t.ppf(1 - 0.5e-5, df)) * se


def hutchinson_sd(H: torch.Tensor, products: int) -> float:
    """The exact standard deviation of Hutchinson's estimate with Rademacher vectors:
    sqrt(2 (|H|_F^2 - sum_i H_ii^2) / products)."""
    return float(torch.sqrt(2 * ((H**2).sum() - (torch.diagonal(H) ** 2).sum()) / products))


@pytest.fixture(scope="module")
def two_clusters():
    """A quadratic whose Hessian has 180 eigenvalues in [0, 1) and 20 in [50, 51): a few large ones
    dominate, as in trained networks."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(N, N, generator=g, dtype=torch.float64))
    eigenvalues = torch.cat([torch.rand(180, generator=g, dtype=torch.float64),
                             50 + torch.rand(20, generator=g, dtype=torch.float64)])
    H = Q @ torch.diag(eigenvalues) @ Q.T
    return Objective(Scalar(torch.ones(N)), quadratic_loss(H), None), eigenvalues.numpy(), H


def test_our_operator_in_curvlinops_form_is_the_dense_hessian_on_a_layernorm_model():
    model, loss_fn, batch = layernorm_problem()
    objective = Objective(model, loss_fn, batch)
    w = objective.weights()
    H = dense_hessian(objective, w)
    X = torch.randn(H.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for engine in ("graph", "jvp"):
        op = hessian_operator(objective, w, engine)
        torch.testing.assert_close(op @ X, H @ X, rtol=1e-10, atol=1e-12)
        assert op.n_hvp == 3 and op.shape == H.shape
        np.testing.assert_allclose(op.to_scipy(np.float64) @ X[:, 0].numpy(), (H @ X[:, 0]).numpy(), rtol=1e-10)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_the_trace_estimate_lies_within_its_standard_errors_of_the_exact_trace(two_clusters, method):
    objective, eigenvalues, H = two_clusters
    estimate = hessian_trace(objective, objective.weights(), method=method, num_matvecs=60, groups=10, seed=3)
    assert estimate.n_hvp == 600 and len(estimate.estimates) == 10 and estimate.se > 0
    error = abs(estimate.value - eigenvalues.sum())
    if method == "hutchinson":  # its spread is known exactly: 5 standard deviations
        assert error < 5 * hutchinson_sd(H, 600)
        assert 0.3 < estimate.se / hutchinson_sd(H, 600) < 3  # and the 10 groups estimate it (chi, 9 df)
    else:
        assert error < t_bound(estimate.se, 9)


def test_hutch_plus_plus_has_the_smaller_error_when_a_few_eigenvalues_dominate(two_clusters):
    objective, eigenvalues, H = two_clusters
    w = objective.weights()
    plain = hessian_trace(objective, w, method="hutchinson", num_matvecs=90, groups=10, seed=4)
    plus = hessian_trace(objective, w, method="hutch++", num_matvecs=90, groups=10, seed=4)
    # 30 products sketch a space holding the top 20 directions, whose part of the trace is then
    # taken exactly: what is left is the small cluster's spread (measured over seeds 0-3: standard
    # errors 13 to 63 times smaller than Hutchinson's)
    assert plus.se < plain.se / 5


def test_the_trace_of_a_layernorm_models_hessian_matches_the_dense_one():
    model, loss_fn, batch = layernorm_problem()
    objective = Objective(model, loss_fn, batch)
    w = objective.weights()
    H = dense_hessian(objective, w)
    n = flatten(w).numel()
    estimate = hessian_trace(objective, w, method="hutchinson", num_matvecs=n // 2, groups=8, seed=0)
    assert abs(estimate.value - float(torch.trace(H))) < 5 * hutchinson_sd(H, 8 * (n // 2))


def test_the_density_puts_each_clusters_mass_and_the_mean_where_the_eigenvalues_are(two_clusters):
    objective, eigenvalues, H = two_clusters
    density = spectral_density(objective, objective.weights(), ncv=40, repeats=16, seed=0)
    low, high = density.boundaries
    assert low == pytest.approx(eigenvalues.min(), abs=0.02 * eigenvalues.max())
    assert high == pytest.approx(eigenvalues.max(), rel=0.02)
    total, _ = density.mass()
    assert total == pytest.approx(1.0, abs=1e-6)  # the Gaussian bumps lie inside the grid's margin
    for lo, hi in ((-np.inf, 25.0), (25.0, np.inf)):
        mass, se = density.mass(lo, hi)
        expected = float(np.mean((eigenvalues >= lo) & (eigenvalues <= hi)))
        assert se > 0 and abs(mass - expected) < t_bound(se, 15)
    mean, se = density.moment(1)
    assert abs(mean - eigenvalues.mean()) < t_bound(se, 15)
    assert density.n_hvp >= 16 * 40 and density.density.shape == density.grid.shape == density.se.shape


def test_estimates_are_reproducible_from_their_seed_and_leave_the_global_rng_alone(two_clusters):
    objective, _, _ = two_clusters
    w = objective.weights()
    state = torch.random.get_rng_state()
    first = hessian_trace(objective, w, num_matvecs=30, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert hessian_trace(objective, w, num_matvecs=30, seed=7).estimates == first.estimates
    assert hessian_trace(objective, w, num_matvecs=30, seed=8).estimates != first.estimates
    a = spectral_density(objective, w, ncv=20, repeats=2, seed=1)
    b = spectral_density(objective, w, ncv=20, repeats=2, seed=1)
    np.testing.assert_array_equal(a.density, b.density)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_bad_arguments_are_named(two_clusters):
    objective, _, _ = two_clusters
    w = objective.weights()
    with pytest.raises(ValueError, match="method must be one of"):
        hessian_trace(objective, w, method="xtrace")
    with pytest.raises(ValueError, match="multiple of 3"):
        hessian_trace(objective, w, num_matvecs=31)
    with pytest.raises(ValueError, match="below the block's 200 weights"):
        hessian_trace(objective, w, num_matvecs=201, method="hutchinson")
    with pytest.raises(ValueError, match="groups must be an int >= 2"):
        hessian_trace(objective, w, groups=1)
    with pytest.raises(ValueError, match="fewer than the block's 200 weights"):
        spectral_density(objective, w, ncv=200)
    with pytest.raises(ValueError, match="smallest < largest"):
        spectral_density(objective, w, boundaries=(1.0, 1.0))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        hessian_trace(objective, w, seed=-1)


def test_without_the_extra_the_error_says_what_to_install(two_clusters, monkeypatch):
    import smoothness.spectrum as spectrum

    objective, _, _ = two_clusters
    monkeypatch.setitem(sys.modules, "curvlinops", None)
    spectrum._operator_class.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install 'adams-lab\[curvature\]'"):
            hessian_trace(objective, objective.weights())
    finally:
        spectrum._operator_class.cache_clear()
