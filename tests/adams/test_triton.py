"""The Triton kernel (adams/_triton_kernel.py) against the equations, the loop path and the NumPy reference.

Without a GPU the kernel runs under Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``,
set here before the kernel is first imported); with one, on the GPU. The checks and their
tolerances are in ``single_pass.py``, shared with the compiled step's tests.
"""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from single_pass import (DEVICE, HYPER, LONG, bits, check_16bit_rounded_once,  # noqa: E402
                         check_each_tensor_takes_its_own_step_count, check_float32_every_step,
                         check_float64_against_numpy, check_the_guard_skips_a_nonfinite_step_without_writing,
                         counters, gradients, make_state)

if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # read by Triton when the kernel module is first imported
pytest.importorskip("triton", reason="the Triton kernel comes with the [triton] extra")

from adams import _triton  # noqa: E402


@pytest.mark.parametrize("name", LONG)
def test_float32_matches_the_equations_and_the_loop_path_every_step(name):
    check_float32_every_step(_triton.triton_adams_, name)


@pytest.mark.parametrize("name", LONG)
def test_float64_matches_the_numpy_reference_over_50_steps(name):
    check_float64_against_numpy(_triton.triton_adams_, name)


@pytest.mark.parametrize("dtype, name", [(torch.bfloat16, "default"), (torch.float16, "maximize")])
def test_16bit_is_float32_arithmetic_rounded_once(dtype, name):
    check_16bit_rounded_once(_triton.triton_adams_, dtype, name)


def test_each_tensor_takes_its_own_step_count():
    check_each_tensor_takes_its_own_step_count(_triton.triton_adams_)


def test_the_guard_skips_a_step_with_a_nonfinite_gradient_without_writing():
    check_the_guard_skips_a_nonfinite_step_without_writing(_triton.triton_adams_)


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
