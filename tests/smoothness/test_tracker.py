"""The training-time smoothness tracker against a quadratic, where every record is known."""
from __future__ import annotations

import math

import pytest
import torch

import numpy as np

from smoothness.noise import estimate_from_gram
from smoothness.tracker import NOISE_TRACK_KEYS, TRACK_KEYS, StepSmoothnessTracker


def test_on_a_quadratic_the_tracker_records_the_curvature_along_each_step():
    torch.manual_seed(0)
    a = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=0.05, momentum=0.9)
    tracker = StepSmoothnessTracker(lambda batch: 0.5 * w @ batch @ w, a, every=2,
                                    momentum_norm=lambda: float(opt.state[w]["momentum_buffer"].norm()))
    expected = []
    for step in range(10):
        due = tracker.due(step)
        if due:
            tracker.before([w])
            w_before, g_before = w.detach().clone(), (a @ w).detach()
        opt.zero_grad()
        (0.5 * w @ a @ w).backward()
        opt.step()
        if due:
            tracker.after([w], step)
            d = w.detach() - w_before
            expected.append((step, float((a @ d).norm() / d.norm()), float(g_before.norm()), float(d.norm())))
    assert tracker.records["step"] == [0, 2, 4, 6, 8]
    for i, (step, fd, g, length) in enumerate(expected):
        assert tracker.records["fd_smoothness"][i] == pytest.approx(fd)
        assert 1.0 <= tracker.records["fd_smoothness"][i] <= 9.0  # between the extreme eigenvalues
        assert tracker.records["grad_norm"][i] == pytest.approx(g)
        assert tracker.records["step_length"][i] == pytest.approx(length)
    assert all(m > 0 for m in tracker.records["momentum_norm"])
    assert set(tracker.records) == set(TRACK_KEYS)


def test_the_tracker_refuses_bad_use():
    with pytest.raises(ValueError, match="every"):
        StepSmoothnessTracker(lambda b: b, None, every=0)
    tracker = StepSmoothnessTracker(lambda b: b, None, every=1)
    with pytest.raises(RuntimeError, match="without a matching before"):
        tracker.after([], 0)


def test_a_zero_step_records_nan_not_a_division_error():
    w = torch.nn.Parameter(torch.ones(2))
    tracker = StepSmoothnessTracker(lambda batch: (w * batch).sum(), torch.ones(2), every=1)
    tracker.before([w])
    tracker.after([w], 0)
    assert math.isnan(tracker.records["fd_smoothness"][0]) and math.isnan(tracker.records["momentum_norm"][0])


def _noisy_quadratic(n_examples: int, seed: int):
    """0.5 (w - x)^T A (w - x) averaged over examples x ~ N(mu, diag(s^2)): per-example gradients
    A (w - x), so |grad f|^2 = |A (w - mu)|^2 and one example's noise trace is sum (a s)^2."""
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    mu, s = torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    x = mu + s * torch.randn(n_examples, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))
    loss = lambda batch: 0.5 * (((w - batch) ** 2) * a).sum(dim=1).mean()  # noqa: E731
    true_sq = float(((a * (w.detach() - mu)) ** 2).sum())
    example_trace = float(((a * s) ** 2).sum())
    return w, x, loss, true_sq, example_trace


def test_split_records_the_unbiased_gradient_norm_and_the_batch_noise_trace():
    # one point: the records are the estimator of smoothness.noise on the parts' gradients, exactly
    w, x, loss, _, _ = _noisy_quadratic(12, seed=0)
    tracker = StepSmoothnessTracker(loss, x, every=1, split=4)
    tracker.before([w])
    with torch.no_grad():
        w -= 0.1
    tracker.after([w], 0)
    w0 = w.detach() + 0.1
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    grads = np.stack([(a * (w0 - x[3 * i:3 * i + 3].mean(dim=0))).numpy() for i in range(4)])
    expected = estimate_from_gram(grads @ grads.T)
    assert tracker.records["grad_sq_unbiased"][0] == pytest.approx(expected.sq_norm, rel=1e-12)
    assert tracker.records["noise_trace"][0] == pytest.approx(expected.noise_trace / 4, rel=1e-12)
    assert tracker.records["grad_norm"][0] == pytest.approx(float(np.linalg.norm(grads.mean(axis=0))), rel=1e-12)
    assert set(tracker.records) == set(TRACK_KEYS + NOISE_TRACK_KEYS)


def test_split_estimates_are_unbiased_over_fresh_batches():
    # over 400 fresh batches of 16 examples in 4 parts: the mean estimate of |grad f|^2 and of the
    # 16-example batch's noise trace lie within 4 standard errors of the truth, while the one-batch
    # |g|^2 overstates |grad f|^2 by the noise trace
    est, trace, one = [], [], []
    for seed in range(400):
        w, x, loss, true_sq, example_trace = _noisy_quadratic(16, seed)
        tracker = StepSmoothnessTracker(loss, x, every=1, split=4)
        tracker.before([w])
        tracker.after([w], 0)
        est.append(tracker.records["grad_sq_unbiased"][0])
        trace.append(tracker.records["noise_trace"][0])
        one.append(tracker.records["grad_norm"][0] ** 2)
    for values, truth in ((est, true_sq), (trace, example_trace / 16), (one, true_sq + example_trace / 16)):
        values = np.asarray(values)
        assert abs(values.mean() - truth) < 4 * values.std(ddof=1) / np.sqrt(values.size), (values.mean(), truth)
    assert np.mean(one) - true_sq > 3 * np.std(one, ddof=1) / np.sqrt(len(one))  # the bias the estimate removes


def test_split_refuses_batches_it_cannot_cut():
    w = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="split must be 1 or an int >= 3"):
        StepSmoothnessTracker(lambda b: (w * b).sum(), torch.ones(6, 2), every=1, split=2)
    with pytest.raises(ValueError, match="divisible by 4"):
        StepSmoothnessTracker(lambda b: (w * b).sum(), torch.ones(6, 2), every=1, split=4)
    with pytest.raises(TypeError, match="tensor or a tuple of tensors"):
        StepSmoothnessTracker(lambda b: (w * b).sum(), {"x": torch.ones(6, 2)}, every=1, split=3)


def test_split_finite_difference_is_unbiased_for_the_objective_not_the_batch():
    # per-example curvatures a_i vary, so a batch's Hessian is the objective's plus noise: over fresh
    # batches the unbiased estimate of |H dw|^2 / |dw|^2 averages to the objective's, while the
    # batch's own squared finite difference overstates it
    mean_a = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    dw = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    truth = float(((mean_a * dw) ** 2).sum() / (dw**2).sum())
    est, batch_fd = [], []
    for seed in range(400):
        g = torch.Generator().manual_seed(seed)
        a = mean_a * (0.2 + 1.6 * torch.rand(16, 3, generator=g, dtype=torch.float64))  # mean mean_a
        x = torch.randn(16, 3, generator=g, dtype=torch.float64)
        w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        loss = lambda batch: 0.5 * (batch[1] * (w - batch[0]) ** 2).sum(dim=1).mean()  # noqa: E731
        tracker = StepSmoothnessTracker(loss, (x, a), every=1, split=4)
        tracker.before([w])
        with torch.no_grad():
            w += dw
        tracker.after([w], 0)
        est.append(tracker.records["fd_sq_unbiased"][0])
        batch_fd.append(tracker.records["fd_smoothness"][0] ** 2)
    est, batch_fd = np.asarray(est), np.asarray(batch_fd)
    assert abs(est.mean() - truth) < 4 * est.std(ddof=1) / np.sqrt(est.size), (est.mean(), truth)
    assert batch_fd.mean() - truth > 3 * batch_fd.std(ddof=1) / np.sqrt(batch_fd.size)
