"""16-bit, complex and non-finite inputs."""
import pytest
import torch

import adams

PATHS = [dict(foreach=False, fused=False), dict(foreach=True), dict(fused=True)]
PATH_IDS = ["forloop", "foreach", "fused"]


def _grads(n, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen) + 0.5 for _ in range(steps)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_half_precision_updates_in_float32_and_rounds_once(dtype, path):
    """Each step equals: upcast the stored 16-bit w and m, do the float32 step, round once."""
    n = 4097
    w = torch.nn.Parameter(torch.linspace(-2, 2, n).to(dtype))
    opt = adams.AdamS([w], lr=1e-2, weight_decay=0.1, **path)
    for t, g in enumerate(_grads(n, 20), start=1):
        w_before = w.detach().float()
        m_before = opt.state[w]["exp_avg"].float() if w in opt.state else torch.zeros(n)
        w.grad = g.to(dtype)
        opt.step()
        w32, m32 = adams.functional.adams_update(
            w_before, w.grad.float(), m_before, step=t, lr=1e-2, beta1=0.9, beta2=0.95,
            eps=1e-8, weight_decay=0.1,
        )
        assert w.dtype == dtype and opt.state[w]["exp_avg"].dtype == dtype
        # float32 paths may differ in the last float32 bits, which can flip a 16-bit rounding:
        # allow one 16-bit ulp of the operands' scale (a result that cancels to near zero has no
        # relative accuracy of its own), on at most 1% of coordinates; exact agreement elsewhere.
        w_scale = w_before.abs() + 1e-2 * adams.step_bound(0.9, 0.95, bias_correction=True)
        m_scale = m_before.abs() + w.grad.float().abs()
        for got, want, scale in ((w.detach(), w32, w_scale), (opt.state[w]["exp_avg"], m32, m_scale)):
            rounded = want.to(dtype)
            ulp = torch.finfo(dtype).eps * (want.abs() + scale)
            assert ((got.float() - rounded.float()).abs() <= ulp).all()
            assert (got == rounded).float().mean() >= 0.99


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_half_precision_first_step_moves_every_coordinate(dtype, path):
    w = torch.nn.Parameter(torch.ones(1000, dtype=dtype))
    opt = adams.AdamS([w], lr=1e-2, weight_decay=0.0, **path)
    w.grad = torch.randn(1000, generator=torch.Generator().manual_seed(0)).to(dtype)
    opt.step()
    assert (w.detach() != 1).all()  # no coordinate's update silently disappears


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_complex_parameters_are_real_pairs(path):
    gen = torch.Generator().manual_seed(0)
    z = torch.nn.Parameter(torch.randn(6, dtype=torch.complex64, generator=gen))
    r = torch.nn.Parameter(torch.view_as_real(z.detach()).clone())
    opt_z = adams.AdamS([z], lr=1e-2, **path)
    opt_r = adams.AdamS([r], lr=1e-2, **path)
    for _ in range(15):
        gz = torch.randn(6, dtype=torch.complex64, generator=gen)
        z.grad, r.grad = gz, torch.view_as_real(gz).clone()
        opt_z.step()
        opt_r.step()
    assert torch.equal(torch.view_as_real(z.detach()), r.detach())
    assert opt_z.state[z]["exp_avg"].is_complex()


def _snapshot(opt, params):
    return [p.detach().clone() for p in params], {
        id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in params if p in opt.state
    }


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_nonfinite_guard_leaves_everything_untouched(mode, bad):
    a, b = torch.nn.Parameter(torch.ones(5)), torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))
    opt = adams.AdamS([a, b], nonfinite=mode)
    a.grad, b.grad = torch.ones(5), torch.ones(3, dtype=torch.complex64)
    opt.step()
    before = _snapshot(opt, [a, b])
    a.grad = torch.ones(5)
    b.grad = torch.tensor([1, complex(0, bad), 1], dtype=torch.complex64)  # the bad value is in b
    if mode == "raise":
        with pytest.raises(FloatingPointError, match="NaN or inf"):
            opt.step()
    else:
        opt.step()
        assert opt.skipped_steps == 1
    after = _snapshot(opt, [a, b])
    for x, y in zip(before[0], after[0]):
        assert torch.equal(x, y)  # no parameter moved, not even a (whose gradient was fine)
    for key in before[1]:
        for name in before[1][key]:
            assert torch.equal(before[1][key][name], after[1][key][name])
    # the next finite step proceeds normally
    b.grad = torch.ones(3, dtype=torch.complex64)
    opt.step()
    assert opt.state[a]["step"].item() == 2 and torch.isfinite(a).all()


def test_nonfinite_guard_on_first_step_creates_no_state():
    a = torch.nn.Parameter(torch.ones(5))
    opt = adams.AdamS([a], nonfinite="skip")
    a.grad = torch.full((5,), float("nan"))
    opt.step()
    assert len(opt.state) == 0 and torch.equal(a.detach(), torch.ones(5))


def test_without_guard_a_nan_poisons_the_momentum():
    """Why the guard exists: by default (as in torch.optim) one NaN stays in m for good."""
    a = torch.nn.Parameter(torch.ones(2))
    opt = adams.AdamS([a])
    a.grad = torch.tensor([float("nan"), 1.0])
    opt.step()
    for _ in range(3):
        a.grad = torch.ones(2)
        opt.step()
    assert torch.isnan(opt.state[a]["exp_avg"][0]) and torch.isfinite(opt.state[a]["exp_avg"][1])
