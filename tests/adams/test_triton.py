"""The Triton kernel (adams/_triton_kernel.py) against the equations, the loop path and the NumPy reference.

Without a GPU the kernel runs under Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``,
set here before the kernel is first imported); with one, on the GPU. Tolerances are those of the
CPU kernel's tests (``test_fused.py``): 1e-12 of the size of the terms in float64, 1e-6 in float32,
16-bit results within one unit in the last place of float32 arithmetic rounded once.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # read by Triton when the kernel module is first imported
pytest.importorskip("triton", reason="the Triton kernel comes with the [triton] extra")

from adams import _triton  # noqa: E402
from adams.functional import adams as functional_adams  # noqa: E402
from adams.reference import adams_step as numpy_step  # noqa: E402
from test_fused import HYPER, assert_within, bits, reference_step, ulp_distance  # noqa: E402

SHAPES = [(), (0,), (7,), (33, 17), (20_000,)]  # the last one spans 3 programs of the interpreter
STEPS = 50
LONG = ["default", "paper-text", "maximize", "strong-decay"]


def make_state(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ws = [torch.randn(s, generator=gen, dtype=torch.float64).to(DEVICE, dtype) for s in SHAPES]
    return ws, [torch.zeros(s, dtype=dtype, device=DEVICE) for s in SHAPES]


def counters(values=None):
    return [torch.tensor(float(v), dtype=torch.float32, device=DEVICE) for v in (values or [0] * len(SHAPES))]


def gradients(t, dtype, seed=0):
    """Seeded gradients with a drifting mean and exact zeros at every fifth element."""
    gen = torch.Generator().manual_seed(seed * 100_003 + t)
    out = []
    for s in SHAPES:
        g = torch.randn(s, generator=gen, dtype=torch.float64) + 0.3 * np.sin(t / 7.0)
        if g.numel() > 3:
            g.view(-1)[::5] = 0.0
        out.append(g.to(DEVICE, dtype))
    return out


def check_float32_every_step(step_fn, name="default", steps=STEPS):
    """Each step within 1e-6 of the float64 equations from the same float32 state, and equal to the
    readable loop path (``impl="forloop"``) to within 1e-6 of the terms."""
    hyper = HYPER[name]
    ws, ms = make_state(torch.float32)
    steps_t = counters()
    for t in range(1, steps + 1):
        gs = gradients(t, torch.float32)
        before = [(w.double(), m.double()) for w, m in zip(ws, ms)]
        loop_w, loop_m = [w.clone() for w in ws], [m.clone() for m in ms]
        functional_adams(loop_w, gs, loop_m, counters([t - 1] * len(SHAPES)), impl="forloop", **hyper)
        step_fn(ws, gs, ms, steps_t, **hyper)
        for i, ((w0, m0), g) in enumerate(zip(before, gs)):
            want_w, want_m, w_size, m_size = reference_step(w0, g.double(), m0, step=t, **hyper)
            assert_within(ws[i].cpu(), want_w.cpu(), w_size.cpu(), 1e-6, f"w, shape {SHAPES[i]}, step {t}")
            assert_within(ms[i].cpu(), want_m.cpu(), m_size.cpu(), 1e-6, f"m, shape {SHAPES[i]}, step {t}")
            assert_within(ws[i].cpu(), loop_w[i].cpu(), w_size.cpu(), 1e-6, f"w vs loop, shape {SHAPES[i]}, step {t}")
    assert all(float(s) == steps for s in steps_t)


@pytest.mark.parametrize("name", LONG)
def test_float32_matches_the_equations_and_the_loop_path_every_step(name):
    check_float32_every_step(_triton.triton_adams_, name)


@pytest.mark.parametrize("name", LONG)
def test_float64_matches_the_numpy_reference_over_50_steps(name):
    """float64 state evolved by the kernel and by adams.reference independently, 50 steps, 1e-12."""
    hyper = HYPER[name]
    ws, ms = make_state(torch.float64)
    ref = [(w.cpu().numpy().copy(), m.cpu().numpy().copy()) for w, m in zip(ws, ms)]
    scale = [np.abs(w) for w, _ in ref]
    steps_t = counters()
    for t in range(1, STEPS + 1):
        gs = gradients(t, torch.float64)
        _triton.triton_adams_(ws, gs, ms, steps_t, **hyper)
        for i, g in enumerate(gs):
            g_np = g.cpu().numpy() * (-1.0 if hyper["maximize"] else 1.0)
            w_np, m_np, _ = numpy_step(ref[i][0], g_np, ref[i][1], t, lr=hyper["lr"], beta1=hyper["beta1"], beta2=hyper["beta2"],
                                       eps=hyper["eps"], weight_decay=hyper["weight_decay"],
                                       bias_correction=hyper["bias_correction"])
            _, _, w_size, m_size = reference_step(torch.as_tensor(ref[i][0]), torch.as_tensor(g_np),
                                                  torch.as_tensor(ref[i][1]), step=t, **{**hyper, "maximize": False})
            ref[i] = (w_np, m_np)
            scale[i] = np.maximum(scale[i], w_size.numpy())
            assert_within(ws[i].cpu(), torch.as_tensor(w_np), torch.as_tensor(scale[i]), 1e-12,
                          f"w, shape {SHAPES[i]}, step {t}")
            assert_within(ms[i].cpu(), torch.as_tensor(m_np), m_size + 1e-300, 1e-12, f"m, shape {SHAPES[i]}, step {t}")


@pytest.mark.parametrize("dtype, name", [(torch.bfloat16, "default"), (torch.float16, "maximize")])
def test_16bit_is_float32_arithmetic_rounded_once(dtype, name):
    hyper = HYPER[name]
    ws, ms = make_state(dtype)
    steps_t = counters()
    for t in range(1, 21):
        gs = gradients(t, dtype)
        before = [(w.float().cpu(), g.float().cpu(), m.float().cpu()) for w, g, m in zip(ws, gs, ms)]
        _triton.triton_adams_(ws, gs, ms, steps_t, **hyper)
        for (w0, g0, m0), w, m in zip(before, ws, ms):
            w_nat, m_nat, w_size, m_size = reference_step(w0, g0, m0, step=t, **hyper)  # in float32
            for got, want, size in ((w.cpu(), w_nat.to(dtype), w_size), (m.cpu(), m_nat.to(dtype), m_size)):
                close = ulp_distance(got, want) <= 1
                cancelled = (got.float() - want.float()).abs() <= 8 * 2.0**-24 * size
                assert bool((close | cancelled).all()), f"{dtype}, step {t}"


def test_each_tensor_takes_its_own_step_count():
    hyper = HYPER["default"]
    ws, ms = make_state(torch.float64, seed=2)
    ms = [torch.randn(m.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(DEVICE)
          for m in ms]
    counts = [0, 5, 9, 40, 7]
    steps_t = counters(counts)
    gs = gradients(1, torch.float64)
    want = [reference_step(w.cpu(), g.cpu(), m.cpu(), step=c + 1, **hyper)[:2] for w, g, m, c in zip(ws, gs, ms, counts)]
    _triton.triton_adams_(ws, gs, ms, steps_t, **hyper)
    for (w_want, m_want), w, m in zip(want, ws, ms):
        torch.testing.assert_close(w.cpu(), w_want, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(m.cpu(), m_want, rtol=1e-13, atol=1e-15)
    assert [float(s) for s in steps_t] == [c + 1 for c in counts]


def test_the_guard_skips_a_step_with_a_nonfinite_gradient_without_writing():
    hyper = HYPER["default"]
    ws, ms = make_state(torch.float32)
    steps_t = counters()
    gs = gradients(1, torch.float32)
    taken = _triton.triton_adams_(ws, gs, ms, steps_t, skip_nonfinite=True, **hyper)
    assert int(taken) == 1 and all(float(s) == 1 for s in steps_t)
    for bad in (float("nan"), float("inf")):
        before = [t.clone() for t in ws + ms]
        gs = gradients(2, torch.float32)
        gs[4][17] = bad
        taken = _triton.triton_adams_(ws, gs, ms, steps_t, skip_nonfinite=True, **hyper)
        assert int(taken) == 0 and all(float(s) == 1 for s in steps_t)
        assert all(torch.equal(bits(a), bits(b)) for a, b in zip(before, ws + ms))


def test_bad_tensors_are_named_and_nothing_is_written():
    ws, ms = make_state(torch.float32)
    gs = gradients(1, torch.float32)
    before = [t.clone() for t in ws + ms]
    cases = [
        ((ws, gs[:-1] + [gs[-1].double()], ms, counters()), "grad 4 is torch.float64"),
        ((ws, gs[:3] + [gs[3].t()] + gs[4:], ms, counters()), "grad 3 has shape"),
        ((ws, gs, ms, counters()[:-1]), "same length"),
        ((ws, gs, ms, counters()[:-1] + [torch.zeros((), dtype=torch.int64, device=DEVICE)]),
         "state_steps 4 must be a float32"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            _triton.triton_adams_(*args, **HYPER["default"])
    assert all(torch.equal(bits(a), bits(b)) for a, b in zip(before, ws + ms))


def test_availability_is_reported_with_the_reason(monkeypatch):
    assert _triton.triton_available(DEVICE)[0]
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    ok, reason = _triton.triton_available("cpu")
    assert not ok and "TRITON_INTERPRET=1" in reason
    assert not _triton.triton_available("meta")[0]


@pytest.mark.parametrize("mutation", [
    ("nu = b2 * (mh * mh) + omb2 * (g * g)", "nu = b2 * (mh * mh) + omb2 * (g * g) * 1.00001"),  # a coefficient
    ("m_new = b1 * m + omb1 * g", "m_new = b1 * m + omb1 * g + 1e-7"),  # a bias in the momentum
    ("    mh = m * inv_c", "    mh = m"),  # bias correction dropped from the denominator
])
def test_a_perturbed_kernel_fails_the_parity_check(mutation, tmp_path, monkeypatch):
    """The power of the parity check: the same source with one small change must fail it."""
    source = (importlib.util.find_spec("adams._triton_kernel").origin)
    text = open(source).read()
    old, new = mutation
    assert text.count(old) == 1
    path = tmp_path / "perturbed_kernel.py"
    path.write_text(text.replace(old, new))
    spec = importlib.util.spec_from_file_location("perturbed_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, tl = _triton._kernel()
    monkeypatch.setattr(_triton, "_kernel", lambda: (module.adams_step_kernel, tl))
    with pytest.raises(AssertionError):
        check_float32_every_step(_triton.triton_adams_, steps=5)


def test_the_optimizer_takes_the_triton_path_where_it_is_the_fused_one(monkeypatch):
    """adams.AdamS picks the Triton kernel by default where there is no compiled CPU kernel and
    Triton runs (on a GPU; here, the interpreter), and its steps equal the foreach path's."""
    import adams
    from adams import _fused

    if DEVICE == "cpu":
        monkeypatch.setattr(_fused, "kernel_or_none", lambda: None)  # as on a GPU: the C kernel does not apply
    from adams import functional

    calls = []
    original = functional.triton_adams_
    monkeypatch.setattr(functional, "triton_adams_", lambda *a, **k: calls.append(len(a[0])) or original(*a, **k))
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(DEVICE)
              for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    triton_opt = adams.AdamS(models[0].parameters(), lr=1e-2, weight_decay=0.1)
    foreach_opt = adams.AdamS(models[1].parameters(), lr=1e-2, weight_decay=0.1, foreach=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        x, y = torch.randn(32, 6, generator=gen).to(DEVICE), torch.randint(0, 3, (32,), generator=gen).to(DEVICE)
        for model, opt in zip(models, (triton_opt, foreach_opt)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert calls == [4] * 50  # one call a step for the group's four tensors
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(triton_opt.state[next(models[0].parameters())]["step"]) == 50


@pytest.mark.parametrize("skip_nonfinite", [False, True])
def test_counters_staged_from_the_cpu_give_the_same_step(skip_nonfinite):
    """torch.optim keeps counters on the CPU: their values are copied to the device for the kernel
    and the CPU counters incremented (forced here with stage_counters=True on CPU tensors)."""
    hyper = HYPER["default"]
    results = []
    for stage in (False, True):
        ws, ms = make_state(torch.float32, seed=4)
        steps_t = counters([0, 5, 9, 40, 7])
        for t in range(1, 4):
            _triton.triton_adams_(ws, gradients(t, torch.float32), ms, steps_t, stage_counters=stage,
                                  skip_nonfinite=skip_nonfinite, **hyper)
        results.append((ws + ms, [float(s) for s in steps_t]))
    assert all(torch.equal(bits(a), bits(b)) for a, b in zip(results[0][0], results[1][0]))
    assert results[0][1] == results[1][1] == [3.0, 8.0, 12.0, 43.0, 10.0]
