"""The three torch paths and the NumPy reference compute the same function.

Every path is fed the same seeded gradients for 60 steps; parameters *and* momentum are compared
after every step. float64 to 1e-12 relative, float32 to 1e-6.
"""
import numpy as np
import pytest
import torch

import adams
from adams.reference import adams_step

SHAPES = [(), (1,), (7,), (33, 17), (4, 3, 5), (1023,)]
PATHS = {"forloop": dict(foreach=False, fused=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
STEPS = 60


def _gradients(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # a drifting mean plus noise, with a few exact zeros: the gradient a run actually sees
    out = []
    for t in range(STEPS):
        step = []
        for shape in SHAPES:
            g = torch.randn(shape, generator=gen, dtype=torch.float64) + 0.3 * np.sin(t / 7)
            if g.numel() > 3 and t > 0:  # at t = 1 a zero gradient with eps = 0 is 0/0
                g.view(-1)[::5] = 0.0
            step.append(g.to(dtype))
        out.append(step)
    return out


def _initial(dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for shape in SHAPES]


HYPER = [
    dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, bias_correction=True),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, bias_correction=False),
    dict(lr=1e-2, betas=(0.9, 0.95), eps=0.0, weight_decay=1e-2, bias_correction=True, maximize=True),
]


def _run_torch(path, hyper, dtype):
    params = [torch.nn.Parameter(w) for w in _initial(dtype)]
    frozen = torch.nn.Parameter(torch.ones(3, dtype=dtype))  # never gets a gradient
    opt = adams.AdamS(params + [frozen], **hyper, **PATHS[path])
    history = []
    for grads in _gradients(dtype):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        history.append(
            [(p.detach().clone(), opt.state[p]["exp_avg"].clone()) for p in params]
        )
    assert frozen not in opt.state and torch.equal(frozen.detach(), torch.ones(3, dtype=dtype))
    return history


def _run_reference(hyper):
    hyper = dict(hyper)
    beta1, beta2 = hyper.pop("betas")
    sign = -1.0 if hyper.pop("maximize", False) else 1.0
    ws = [w.numpy() for w in _initial(torch.float64)]
    ms = [np.zeros_like(w) for w in ws]
    history = []
    for t, grads in enumerate(_gradients(torch.float64), start=1):
        new = [adams_step(w, sign * g.numpy(), m, t, beta1=beta1, beta2=beta2, **hyper)
               for w, g, m in zip(ws, grads, ms)]
        ws = [n[0] for n in new]
        ms = [n[1] for n in new]
        history.append(list(zip(ws, ms)))
    return history


@pytest.mark.parametrize("hyper", HYPER, ids=["default", "paper-text", "maximize-eps0"])
@pytest.mark.parametrize("path", list(PATHS))
def test_float64_matches_numpy_reference(path, hyper):
    got = _run_torch(path, hyper, torch.float64)
    want = _run_reference(hyper)
    for step, (g_step, w_step) in enumerate(zip(got, want), start=1):
        for (w, m), (w_ref, m_ref) in zip(g_step, w_step):
            np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-12, atol=1e-14, err_msg=f"w at step {step}")
            np.testing.assert_allclose(m.numpy(), m_ref, rtol=1e-12, atol=1e-14, err_msg=f"m at step {step}")


@pytest.mark.parametrize("hyper", HYPER, ids=["default", "paper-text", "maximize-eps0"])
@pytest.mark.parametrize("path", ["foreach", "fused"])
def test_float32_paths_match_forloop(path, hyper):
    got = _run_torch(path, hyper, torch.float32)
    want = _run_torch("forloop", hyper, torch.float32)
    flat = lambda pairs, i: torch.cat([pair[i].reshape(-1) for pair in pairs])  # noqa: E731
    for step, (g_step, w_step) in enumerate(zip(got, want), start=1):
        _assert_rel(flat(g_step, 0), flat(w_step, 0), 1e-6, f"w at step {step}")
        _assert_rel(flat(g_step, 1), flat(w_step, 1), 1e-6, f"m at step {step}")


def _assert_rel(got, want, tol, msg):
    """|got - want| <= tol * max|want| elementwise, over all parameters together: relative error
    on the scale of the whole vector (a coordinate near zero after cancellation has no meaningful
    relative error of its own)."""
    scale = want.abs().max().item() if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale, msg=msg)


@pytest.mark.parametrize("path", list(PATHS))
def test_float32_close_to_float64_reference(path):
    """float32 arithmetic stays within float32 round-off of the exact (float64) trajectory."""
    hyper = HYPER[0]
    got = _run_torch(path, hyper, torch.float32)[-1]
    want = _run_reference(hyper)[-1]
    for (w, _), (w_ref, _) in zip(got, want):
        np.testing.assert_allclose(w.double().numpy(), w_ref, rtol=2e-5, atol=2e-6)


def test_fused_kernel_is_available_here():
    from adams._fused import fused_available

    ok, reason = fused_available()
    assert ok, reason


def test_default_path_is_fused_on_cpu():
    w = torch.nn.Parameter(torch.zeros(4))
    w.grad = torch.ones(4)
    opt = adams.AdamS([w])
    assert opt._impl(opt.param_groups[0]) == "fused"
    assert opt._impl(opt.param_groups[0] | {"fused": False}) == "foreach"
    assert opt._impl(opt.param_groups[0] | {"fused": False, "foreach": False}) == "forloop"


def test_fused_falls_back_with_reason_on_noncontiguous_grad():
    w = torch.nn.Parameter(torch.zeros(4, 3))
    w.grad = torch.ones(3, 4).t()
    opt = adams.AdamS([w], fused=True)
    with pytest.warns(UserWarning, match="grad 0 is not contiguous"):
        opt.step()
    ref = adams.AdamS([torch.nn.Parameter(torch.zeros(4, 3))], foreach=False, fused=False)
    ref.param_groups[0]["params"][0].grad = torch.ones(4, 3)
    ref.step()
    torch.testing.assert_close(w.detach(), ref.param_groups[0]["params"][0].detach())


def test_foreach_and_fused_together_is_an_error():
    with pytest.raises(ValueError, match="foreach and fused"):
        adams.AdamS([torch.nn.Parameter(torch.zeros(1))], foreach=True, fused=True)
