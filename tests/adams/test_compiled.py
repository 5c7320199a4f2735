"""The step compiled by torch.compile (adams/_compiled.py): the parity checks of the Triton kernel.

On this machine Inductor builds it as C++ for CPU tensors; on a GPU as Triton code. Compiling takes
a few seconds per dtype and flag combination, once per process.
"""
from __future__ import annotations

import pytest
import torch

from adams import _compiled
from single_pass import (DEVICE, HYPER, LONG, check_16bit_rounded_once, check_each_tensor_takes_its_own_step_count,
                         check_float32_every_step, check_float64_against_numpy,
                         check_the_guard_skips_a_nonfinite_step_without_writing)

if not _compiled.compiled_available(DEVICE)[0]:
    pytest.skip(f"torch.compile cannot build for {DEVICE}: {_compiled.compiled_available(DEVICE)[1]}",
                allow_module_level=True)


@pytest.mark.parametrize("name", LONG)
def test_float32_matches_the_equations_and_the_loop_path_every_step(name):
    check_float32_every_step(_compiled.compiled_adams_, name)


@pytest.mark.parametrize("name", ["default", "maximize"])
def test_float64_matches_the_numpy_reference_over_50_steps(name):
    check_float64_against_numpy(_compiled.compiled_adams_, name)


def test_16bit_is_float32_arithmetic_rounded_once():
    check_16bit_rounded_once(_compiled.compiled_adams_, torch.bfloat16, "default")


def test_each_tensor_takes_its_own_step_count():
    check_each_tensor_takes_its_own_step_count(_compiled.compiled_adams_)


def test_the_guard_skips_a_step_with_a_nonfinite_gradient_without_writing():
    check_the_guard_skips_a_nonfinite_step_without_writing(_compiled.compiled_adams_)


def test_a_perturbed_step_fails_the_parity_check(monkeypatch):
    """The power of the check: the same step with a coefficient off by 1e-5 must fail it."""
    from adams import _triton  # the compiled step takes its scalars from the Triton module's builder

    original = _triton._coefficients

    def perturbed(hyper, device):
        coef = original(hyper, device).clone()
        coef[5] *= 1.00001  # 1 - beta2
        return coef

    monkeypatch.setattr(_triton, "_coefficients", perturbed)
    with pytest.raises(AssertionError):
        check_float32_every_step(_compiled.compiled_adams_, steps=5)


def test_the_functional_core_dispatches_to_it():
    from adams.functional import adams as functional_adams

    gen = torch.Generator().manual_seed(0)
    w = [torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen).to(DEVICE)]
    w[0] = w[0].to(DEVICE)
    g = [torch.randn_like(t) for t in w]
    m = [torch.zeros_like(t) for t in w]
    a = ([t.clone() for t in w], [t.clone() for t in m], [torch.zeros((), device=DEVICE) for _ in w])
    b = ([t.clone() for t in w], [t.clone() for t in m], [torch.zeros((), device=DEVICE) for _ in w])
    for (ws, ms, steps), impl in zip((a, b), ("compiled", "forloop")):
        for _ in range(3):
            functional_adams(ws, g, ms, steps, impl=impl, **HYPER["default"])
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    assert [float(s) for s in a[2]] == [3.0, 3.0]


@pytest.mark.parametrize("triton_runs, fused, want", [
    (True, None, "triton"), (True, True, "triton"),
    (False, True, "compiled"),  # asked for a single pass where Triton cannot run: torch.compile
    (False, None, None),  # not asked for: the foreach path, which needs no compiler
])
def test_the_optimizer_falls_back_to_the_compiled_step_where_triton_cannot_run(monkeypatch, triton_runs, fused, want):
    """The rule adams.AdamS follows on an accelerator (meta tensors stand in for one: only the device
    matters), with Triton's and torch.compile's availability set."""
    import warnings

    from adams import _triton
    from adams.optimizer import _single_pass

    monkeypatch.setattr(_triton, "triton_available", lambda device: (triton_runs, "Triton is not installed"))
    monkeypatch.setattr(_compiled, "compiled_available", lambda device: (True, "torch.compile"))
    params = [torch.empty(3, device="meta")]
    group = {"foreach": None, "fused": fused}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _single_pass(group, params, "foreach") == want
    assert [str(w.message) for w in caught if "torch.compile" in str(w.message)] == (
        ["AdamS: the Triton kernel cannot run on meta (Triton is not installed); using the step compiled by "
         "torch.compile"] if want == "compiled" else [])
    assert _single_pass({"foreach": True, "fused": None}, params, "foreach") is None
    assert _single_pass({"foreach": False, "fused": False}, params, "forloop") is None
