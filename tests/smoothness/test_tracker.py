"""The training-time smoothness tracker against a quadratic, where every record is known."""
from __future__ import annotations

import math

import pytest
import torch

from smoothness.tracker import TRACK_KEYS, StepSmoothnessTracker


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
