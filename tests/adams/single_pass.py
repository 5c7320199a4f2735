"""Parity checks shared by the single-pass paths of the step (the Triton kernel, the compiled step).

Each check takes the path's step function, with the signature of
:func:`adams._triton.triton_adams_`. Tensors live on the GPU where there is one, else on the CPU.
Tolerances are those of the CPU kernel's tests (``test_fused.py``): 1e-12 of the size of the terms in
float64, 1e-6 in float32, 16-bit results within one unit in the last place of float32 arithmetic
rounded once.
"""
from __future__ import annotations

import numpy as np
import torch

from adams.functional import adams as functional_adams
from adams.reference import adams_step as numpy_step
from test_fused import HYPER, assert_within, bits, reference_step, ulp_distance

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
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


def check_float64_against_numpy(step_fn, name):
    """float64 state evolved by the step and by adams.reference independently, 50 steps, 1e-12."""
    hyper = HYPER[name]
    ws, ms = make_state(torch.float64)
    ref = [(w.cpu().numpy().copy(), m.cpu().numpy().copy()) for w, m in zip(ws, ms)]
    scale = [np.abs(w) for w, _ in ref]
    steps_t = counters()
    for t in range(1, STEPS + 1):
        gs = gradients(t, torch.float64)
        step_fn(ws, gs, ms, steps_t, **hyper)
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


def check_16bit_rounded_once(step_fn, dtype, name):
    """16-bit tensors: float32 arithmetic, rounded once when stored."""
    hyper = HYPER[name]
    ws, ms = make_state(dtype)
    steps_t = counters()
    for t in range(1, 21):
        gs = gradients(t, dtype)
        before = [(w.float().cpu(), g.float().cpu(), m.float().cpu()) for w, g, m in zip(ws, gs, ms)]
        step_fn(ws, gs, ms, steps_t, **hyper)
        for (w0, g0, m0), w, m in zip(before, ws, ms):
            w_nat, m_nat, w_size, m_size = reference_step(w0, g0, m0, step=t, **hyper)  # in float32
            for got, want, size in ((w.cpu(), w_nat.to(dtype), w_size), (m.cpu(), m_nat.to(dtype), m_size)):
                close = ulp_distance(got, want) <= 1
                cancelled = (got.float() - want.float()).abs() <= 8 * 2.0**-24 * size
                assert bool((close | cancelled).all()), f"{dtype}, step {t}"


def check_each_tensor_takes_its_own_step_count(step_fn):
    hyper = HYPER["default"]
    ws, ms = make_state(torch.float64, seed=2)
    ms = [torch.randn(m.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(DEVICE)
          for m in ms]
    counts = [0, 5, 9, 40, 7]
    steps_t = counters(counts)
    gs = gradients(1, torch.float64)
    want = [reference_step(w.cpu(), g.cpu(), m.cpu(), step=c + 1, **hyper)[:2] for w, g, m, c in zip(ws, gs, ms, counts)]
    step_fn(ws, gs, ms, steps_t, **hyper)
    for (w_want, m_want), w, m in zip(want, ws, ms):
        torch.testing.assert_close(w.cpu(), w_want, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(m.cpu(), m_want, rtol=1e-13, atol=1e-15)
    assert [float(s) for s in steps_t] == [c + 1 for c in counts]


def check_the_guard_skips_a_nonfinite_step_without_writing(step_fn):
    hyper = HYPER["default"]
    ws, ms = make_state(torch.float32)
    steps_t = counters()
    gs = gradients(1, torch.float32)
    taken = step_fn(ws, gs, ms, steps_t, skip_nonfinite=True, **hyper)
    assert int(taken) == 1 and all(float(s) == 1 for s in steps_t)
    for bad in (float("nan"), float("inf")):
        before = [t.clone() for t in ws + ms]
        gs = gradients(2, torch.float32)
        gs[4][17] = bad
        taken = step_fn(ws, gs, ms, steps_t, skip_nonfinite=True, **hyper)
        assert int(taken) == 0 and all(float(s) == 1 for s in steps_t)
        assert all(torch.equal(bits(a), bits(b)) for a, b in zip(before, ws + ms))
