"""The unbiased gradient-norm estimate: on a quadratic with known gradient and noise, in the probes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smoothness import Objective, probe_point
from smoothness.noise import estimate_from_gram, grad_norm_estimate


def quadratic_grads(rng, w, mu, sigma, k):
    """Gradients of 0.5 |w - xi|^2 at w for K draws of xi ~ N(mu, sigma^2 I): w - xi."""
    return w - (mu + sigma * rng.normal(size=(k, w.size)))


def test_estimates_are_unbiased_and_their_standard_errors_match_the_spread():
    rng = np.random.default_rng(0)
    p, k, sigma = 50, 8, 0.7
    w, mu = rng.normal(size=p), rng.normal(size=p)
    true_sq, true_trace = float(np.sum((w - mu) ** 2)), p * sigma**2
    draws = [grad_norm_estimate(quadratic_grads(rng, w, mu, sigma, k)) for _ in range(4000)]
    sq = np.array([d.sq_norm for d in draws])
    noise = np.array([d.noise_trace for d in draws])
    assert abs(sq.mean() - true_sq) < 4 * sq.std() / math.sqrt(sq.size)
    assert abs(noise.mean() - true_trace) < 4 * noise.std() / math.sqrt(noise.size)
    # the one-batch norm is biased up by the noise trace; the estimate is not
    one = np.array([d.one_batch_norm ** 2 for d in draws])
    assert one.mean() - true_sq == pytest.approx(true_trace, rel=0.1)
    # the jackknife standard error tracks the spread over repetitions (its mean within 20%)
    assert np.mean([d.sq_norm_se for d in draws]) == pytest.approx(sq.std(), rel=0.2)
    assert np.mean([d.noise_trace_se for d in draws]) == pytest.approx(noise.std(), rel=0.2)


def test_pure_noise_can_give_a_negative_square_and_a_zero_norm():
    rng = np.random.default_rng(1)
    est = [grad_norm_estimate(quadratic_grads(rng, np.zeros(20), np.zeros(20), 1.0, 4)) for _ in range(50)]
    assert any(e.sq_norm < 0 for e in est)
    assert all(e.norm == 0.0 for e in est if e.sq_norm < 0)


def test_the_gram_matrix_is_checked():
    with pytest.raises(ValueError, match="K >= 3"):
        estimate_from_gram(np.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        estimate_from_gram(np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


class Shift(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(p, dtype=torch.float64))
        self.v = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))


def half_square(model, xi):
    return 0.5 * ((model.w - xi[:-3]) ** 2).sum() + 0.5 * ((model.v - xi[-3:]) ** 2).sum()


def test_probe_point_reports_the_estimate_beside_the_one_batch_norm():
    rng = np.random.default_rng(2)
    model = Shift(10)
    xis = [torch.tensor(rng.normal(0.5, 1.0, 13)) for _ in range(6)]
    objective = Objective(model, half_square, xis, dtype=torch.float64)
    w = objective.weights()
    rows = {r["block"]: r for r in probe_point(objective, w, hessian=False, by="tensor")}
    grads = -np.stack([x.numpy() for x in xis])  # w = 0: the gradient of each batch is -xi
    direct = grad_norm_estimate(grads)
    assert rows["all"]["grad_sq_unbiased"] == pytest.approx(direct.sq_norm)
    assert rows["all"]["noise_trace_se"] == pytest.approx(direct.noise_trace_se)
    assert rows["all"]["one_batch_grad_norm"] == pytest.approx(np.linalg.norm(grads[0]))
    assert rows["all"]["grad_norm"] == pytest.approx(np.linalg.norm(grads.mean(axis=0)))  # f is the batches' mean
    assert rows["v"]["grad_sq_unbiased"] == pytest.approx(grad_norm_estimate(grads[:, -3:]).sq_norm)
    assert rows["all"]["n_noise_batches"] == 6
    one = {r["block"]: r for r in probe_point(Objective(model, half_square, xis[:2], dtype=torch.float64), w,
                                              hessian=False)}
    assert math.isnan(one["all"]["grad_sq_unbiased"]) and one["all"]["n_noise_batches"] == 2


def test_the_command_line_summary_reports_both_norms_or_says_why_not():
    import pandas as pd

    from smoothness.cli import noise_line

    table = pd.DataFrame({"block": ["all", "all", "w"], "n_noise_batches": [4, 4, 4],
                          "one_batch_grad_norm": [3.0, 5.0, 1.0], "grad_norm": [2.0, 2.0, 1.0],
                          "grad_norm_unbiased": [1.0, 1.5, 0.5], "grad_sq_unbiased": [1.0, 2.25, 0.25],
                          "noise_trace": [8.0, 10.0, 1.0]})
    line = noise_line(table)
    assert "one batch 4," in line and "mean of the 4 batches 2," in line and "unbiased estimate 1.25" in line
    assert "noise trace 9" in line
    assert "not estimated" in noise_line(table.assign(grad_sq_unbiased=float("nan")))
