"""The functional core on its own: the pure update, the foreach rewrite and its batching."""
import math

import numpy as np
import pytest
import torch

from adams import functional as F
from adams.reference import adams_step as reference_update

HYPER = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


def test_foreach_denominator_identity():
    """(lr/c) m / (sqrt(nu) + eps) == (lr/(c s)) m / (sqrt(g^2 + k m_prev^2) + eps/s)."""
    gen = np.random.default_rng(0)
    for beta2 in (0.0, 0.5, 0.95, 0.999):
        m_prev, g, m = gen.normal(size=(3, 1000))
        c, lr, eps = 0.3, 0.1, 1e-3
        nu = beta2 * (m_prev / c) ** 2 + (1 - beta2) * g**2
        s = math.sqrt(1 - beta2)
        k = beta2 / ((1 - beta2) * c * c)
        lhs = (lr / c) * m / (np.sqrt(nu) + eps)
        rhs = (lr / (c * s)) * m / (np.sqrt(g * g + k * m_prev * m_prev) + eps / s)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_pure_update_mutates_nothing_and_matches_reference():
    gen = torch.Generator().manual_seed(0)
    w, g, m = (torch.randn(10, generator=gen, dtype=torch.float64) for _ in range(3))
    copies = [t.clone() for t in (w, g, m)]
    w_new, m_new = F.adams_update(w, g, m, step=3, **HYPER)
    for t, c in zip((w, g, m), copies):
        assert torch.equal(t, c)
    w_ref, m_ref, _ = reference_update(w.numpy(), g.numpy(), m.numpy(), 3, **HYPER)
    np.testing.assert_allclose(w_new.numpy(), w_ref, rtol=1e-14)
    np.testing.assert_allclose(m_new.numpy(), m_ref, rtol=1e-14)


def test_pure_update_composes_with_torch_func():
    """The pure form differentiates: d w_new / d w at lr*lambda = 0.1*0.1 is 1 - 0.01."""
    w, g, m = torch.ones(3, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64), torch.zeros(
        3, dtype=torch.float64)
    jac = torch.func.jacrev(lambda w_: F.adams_update(w_, g, m, step=1, **{**HYPER, "lr": 0.1})[0])(w)
    torch.testing.assert_close(jac, torch.eye(3, dtype=torch.float64) * (1 - 0.01))


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_large_and_noncontiguous_tensors_in_batches(impl):
    """Tensors larger than a slice and a batch, next to small and non-contiguous ones."""
    gen = torch.Generator().manual_seed(1)
    shapes = [(3 * F._SLICE + 17,), (F._BATCH + 5,), (5,), ()]
    ws = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    ws.append(torch.randn(40, 30, generator=gen, dtype=torch.float64).t())  # non-contiguous
    ms = [torch.zeros_like(w) for w in ws]
    ws_ref = [w.clone() for w in ws]
    ms_ref = [m.clone() for m in ms]
    counters, counters_ref = ([torch.tensor(0.0) for _ in ws] for _ in range(2))
    for step in range(1, 6):
        gs = [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in ws]
        if impl == "fused":
            gs[-1] = gs[-1].contiguous()
            ws[-1], ms[-1] = ws[-1].contiguous(), ms[-1].contiguous()
        F.adams(ws, gs, ms, counters, **HYPER, impl=impl)
        F.adams(ws_ref, gs, ms_ref, counters_ref, **HYPER, impl="forloop")
        for a, b in zip(ws + ms, ws_ref + ms_ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        assert [c.item() for c in counters] == [c.item() for c in counters_ref] == [step] * len(ws)


@pytest.mark.parametrize("impl", ["forloop", "foreach", "fused"])
def test_mixed_steps_and_dtypes_are_grouped(impl):
    """Tensors at different steps and of different dtypes in one call: each gets its own c_t."""
    dtypes = [torch.float32, torch.float64, torch.float32, torch.float64]
    before = [0.0, 6.0, 2.0, 0.0]  # steps taken so far
    ws = [torch.full((4,), 1.0 + i, dtype=d) for i, d in enumerate(dtypes)]
    gs = [torch.full((4,), 0.5 - i, dtype=d) for i, d in enumerate(dtypes)]
    ms = [torch.full((4,), 0.1 * i, dtype=d) for i, d in enumerate(dtypes)]
    want = [F.adams_update(w, g, m, step=int(t) + 1, **HYPER) for w, g, m, t in zip(ws, gs, ms, before)]
    counters = [torch.tensor(t) for t in before]
    F.adams(ws, gs, ms, counters, **HYPER, impl=impl)
    assert [c.item() for c in counters] == [t + 1 for t in before]
    for w, m, (w_want, m_want) in zip(ws, ms, want):
        torch.testing.assert_close(w, w_want, rtol=1e-6 if w.dtype == torch.float32 else 1e-14, atol=0)
        torch.testing.assert_close(m, m_want, rtol=1e-6 if w.dtype == torch.float32 else 1e-14, atol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        F.adams([torch.ones(1)], [], [], [], **HYPER)
    with pytest.raises(ValueError, match="impl"):
        F.adams([torch.ones(1)], [torch.ones(1)], [torch.ones(1)], [torch.tensor(0.0)], **HYPER, impl="magic")
    with pytest.raises(ValueError, match="must be a one-element tensor"):
        F.adams([torch.ones(1)], [torch.ones(1)], [torch.ones(1)], [1], **HYPER, impl="foreach")
    with pytest.raises(ValueError, match="must hold a whole number"):
        F.adams([torch.ones(1)], [torch.ones(1)], [torch.ones(1)], [torch.tensor(0.5)], **HYPER)
    with pytest.raises(ValueError, match="counted from 1"):
        F.bias_correction_factor(0.9, 0)


def test_a_rejected_fused_call_writes_nothing_in_any_dtype_group():
    """The float64 group's gradient is not contiguous: the fused call is refused as a whole, so the
    float32 group, checked and runnable on its own, must not have been updated either."""
    from adams._fused import Rejected

    a, ga, ma = torch.ones(4), torch.ones(4), torch.zeros(4)
    b = torch.ones(3, 2, dtype=torch.float64)
    gb = torch.ones(2, 3, dtype=torch.float64).t()
    mb = torch.zeros(3, 2, dtype=torch.float64)
    counters = [torch.tensor(0.0), torch.tensor(0.0)]
    with pytest.raises(Rejected, match="grad 0 is not contiguous"):
        F.adams([a, b], [ga, gb], [ma, mb], counters, **HYPER, impl="fused")
    assert torch.equal(a, torch.ones(4)) and torch.equal(ma, torch.zeros(4))
    assert torch.equal(b, torch.ones(3, 2, dtype=torch.float64))
    assert [c.item() for c in counters] == [0.0, 0.0]


@pytest.mark.parametrize("bad", [-1.0, 0.5, float("nan"), float("inf")])
def test_a_bad_step_counter_changes_no_counter(bad):
    counters = [torch.tensor(3.0), torch.tensor(bad)]
    with pytest.raises(ValueError, match="must hold a whole number"):
        F.adams([torch.ones(2), torch.ones(2)], [torch.ones(2)] * 2, [torch.zeros(2), torch.zeros(2)],
                counters, **HYPER, impl="foreach")
    assert counters[0].item() == 3.0
    torch.testing.assert_close(counters[1], torch.tensor(bad), rtol=0, atol=0, equal_nan=True)
