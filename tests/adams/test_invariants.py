"""Closed forms pinned by hand, and the invariants the update must keep."""
import math

import numpy as np
import pytest
import torch

import adams
from adams.reference import AdamSReference, adams_step

PATHS = [dict(foreach=False, fused=False), dict(foreach=True), dict(fused=True)]
PATH_IDS = ["forloop", "foreach", "fused"]


def test_first_two_steps_by_hand():
    """beta=(0.5, 0.75), lr=0.1, lam=0.2, eps=0, bias correction on; g1 = 2, g2 = -1, w0 = 1."""
    lr, b1, b2, lam = 0.1, 0.5, 0.75, 0.2
    # t = 1: c = 0.5; nu = 0.25 * 4 = 1; m = 1; w = 0.98 - 0.1 * (1 / 0.5) / 1 = 0.78
    # t = 2: c = 0.75; nu = 0.75 * (1/0.75)^2 + 0.25 * 1 = 4/3 + 1/4 = 19/12; m = 0.5 - 0.5 = 0
    #        w = 0.78 * 0.98 - 0 = 0.7644
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = adams.AdamS([w], lr=lr, betas=(b1, b2), eps=0.0, weight_decay=lam)
    w.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    assert w.item() == pytest.approx(0.78, rel=1e-15)
    assert opt.state[w]["exp_avg"].item() == 1.0
    w.grad = torch.tensor([-1.0], dtype=torch.float64)
    opt.step()
    assert w.item() == pytest.approx(0.7644, rel=1e-15)
    # and the reference gives nu_2 = 19/12 from m_1 / c_2 (not m_2, not c_1)
    _, _, nu = adams_step(np.array([0.78]), np.array([-1.0]), np.array([1.0]), 2,
                            lr=lr, beta1=b1, beta2=b2, eps=0.0, weight_decay=lam)
    assert nu[0] == pytest.approx(19 / 12, rel=1e-15)


def test_paper_text_form_by_hand():
    """Same numbers without bias correction: t=1: nu = 1, m = 1, w = 0.98 - 0.1 = 0.88."""
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = adams.AdamS([w], lr=0.1, betas=(0.5, 0.75), eps=0.0, weight_decay=0.2, bias_correction=False)
    w.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    assert w.item() == pytest.approx(0.88, rel=1e-15)


def test_denominator_uses_previous_momentum():
    """Using m_t in place of m_{t-1} is a different method: the two must give different steps."""
    ref = AdamSReference(lr=1.0, eps=0.0, weight_decay=0.0, bias_correction=False)
    w = ref.step(np.zeros(1), np.array([1.0]))
    m_prev = ref.m.copy()
    w2 = ref.step(w, np.array([3.0]))
    m_new = 0.9 * m_prev + 0.1 * 3.0
    with_prev = m_new / np.sqrt(0.95 * m_prev**2 + 0.05 * 9.0)
    with_new = m_new / np.sqrt(0.95 * m_new**2 + 0.05 * 9.0)
    np.testing.assert_allclose(w - w2, with_prev, rtol=1e-14)
    assert abs(with_prev - with_new)[0] > 1e-2


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_scale_invariance_at_eps_zero(path):
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(50, generator=gen, dtype=torch.float64) for _ in range(30)]
    finals = []
    for scale in (1.0, 1e-3, 37.0):
        w = torch.nn.Parameter(torch.ones(50, dtype=torch.float64))
        opt = adams.AdamS([w], lr=1e-2, eps=0.0, weight_decay=0.1, **path)
        for g in grads:
            w.grad = scale * g
            opt.step()
        finals.append(w.detach().clone())
    for other in finals[1:]:
        torch.testing.assert_close(other, finals[0], rtol=1e-12, atol=0)


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_step_never_exceeds_the_bound(path, bias_correction):
    """Random heavy-tailed gradient sequences: |update| / lr <= step_bound at every step."""
    gen = torch.Generator().manual_seed(1)
    betas = (0.9, 0.95)
    w = torch.nn.Parameter(torch.zeros(2000, dtype=torch.float64))
    opt = adams.AdamS([w], lr=1.0, betas=betas, eps=0.0, weight_decay=0.0,
                      bias_correction=bias_correction, **path)
    worst = 0.0
    for t in range(1, 41):
        scale = torch.exp(3 * torch.randn(2000, generator=gen, dtype=torch.float64))
        w.grad = scale * torch.randn(2000, generator=gen, dtype=torch.float64)
        before = w.detach().clone()
        opt.step()
        ratio = (w.detach() - before).abs().max().item()
        bound = adams.step_bound(*betas, bias_correction=bias_correction, step=t)
        assert ratio <= bound * (1 + 1e-12), (t, ratio, bound)
        worst = max(worst, ratio / bound)
    assert worst > 0.9  # heavy tails get close to the bound: the check has teeth


@pytest.mark.parametrize("betas", [(0.9, 0.95), (0.9, 0.999), (0.5, 0.6), (0.95, 0.9)])
def test_step_bound_is_attained(betas):
    """g_2 chosen so that (sqrt(b2) m_1, sqrt(1-b2) g_2) is parallel to (b1/sqrt(b2), (1-b1)/sqrt(1-b2))."""
    b1, b2 = betas
    ref = AdamSReference(lr=1.0, betas=betas, eps=0.0, weight_decay=0.0, bias_correction=False)
    w = ref.step(np.zeros(1), np.array([1.0]))
    m1 = ref.m[0]
    g2 = m1 * b2 * (1 - b1) / (b1 * (1 - b2))
    w2 = ref.step(w, np.array([g2]))
    assert abs(w2 - w)[0] == pytest.approx(adams.step_bound(b1, b2), rel=1e-12)


def test_coordinate_permutation_commutes_with_the_step():
    gen = torch.Generator().manual_seed(2)
    perm = torch.randperm(64, generator=gen)
    w = torch.nn.Parameter(torch.randn(64, generator=gen))
    wp = torch.nn.Parameter(w.detach()[perm].clone())
    opt, optp = adams.AdamS([w]), adams.AdamS([wp])
    for _ in range(10):
        g = torch.randn(64, generator=gen)
        w.grad, wp.grad = g, g[perm].clone()
        opt.step()
        optp.step()
    assert torch.equal(w.detach()[perm], wp.detach())


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_zero_learning_rate_does_nothing_to_parameters(path):
    w = torch.nn.Parameter(torch.randn(10))
    before = w.detach().clone()
    opt = adams.AdamS([w], lr=0.0, weight_decay=0.5, **path)
    for _ in range(5):
        w.grad = torch.randn(10)
        opt.step()
    assert torch.equal(w.detach(), before)
    assert opt.state[w]["exp_avg"].abs().sum() > 0  # the momentum still accumulates


def test_first_step_sizes():
    for bias_correction, expected in ((True, 1 / math.sqrt(0.05)), (False, 0.1 / math.sqrt(0.05))):
        w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        opt = adams.AdamS([w], lr=1e-3, eps=0.0, weight_decay=0.0, bias_correction=bias_correction)
        w.grad = torch.tensor([1e-6, -5.0, 300.0], dtype=torch.float64)
        opt.step()
        torch.testing.assert_close(w.detach().abs(), torch.full((3,), 1e-3 * expected, dtype=torch.float64))
        assert adams.first_step_size(1e-3, 0.9, 0.95, bias_correction=bias_correction) == pytest.approx(
            1e-3 * expected, rel=1e-14)


def test_step_bound_edge_cases_and_errors():
    assert adams.step_bound(0.9, 0.0) == math.inf
    assert adams.step_bound(0.0, 0.0) == 1.0
    assert adams.step_bound(0.9, 0.95, step=1) == pytest.approx(0.1 / math.sqrt(0.05))
    # bias-corrected bound decreases to the paper-text constant
    later = [adams.step_bound(0.9, 0.95, bias_correction=True, step=t) for t in (2, 10, 1000)]
    assert later[0] > later[1] > later[2] == pytest.approx(adams.step_bound(0.9, 0.95, step=5), rel=1e-12)
    with pytest.raises(ValueError, match="beta2"):
        adams.step_bound(0.9, 1.0)
    with pytest.raises(ValueError, match="step"):
        adams.step_bound(0.9, 0.95, step=0)
