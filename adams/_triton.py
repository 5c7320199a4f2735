"""The fused AdamS step on GPUs: one Triton kernel launch per dtype for all tensors of a step.

:func:`triton_adams_` does what :func:`adams._fused.fused_adams_` does on CPU, on CUDA tensors:
each element of ``w``, ``g`` and ``m`` is read once and ``w`` and ``m`` are written once, for
float32, bfloat16 and float16 (arithmetic in float32) and float64 (in float64), with decoupled
weight decay, both bias-correction forms and ``maximize``. The step counters stay where they are
(``state["step"]``, float32 one-element tensors, on the GPU for a capturable step): the kernel
reads them and one ``torch._foreach_add_`` increments them, so a step never waits for the GPU.
``skip_nonfinite=True`` is the non-finite guard without a host synchronisation: a flag computed on
the device (no NaN or infinity in any gradient) masks every write and the counters' increment.

The kernel (:mod:`adams._triton_kernel`) is the same source on a GPU and under Triton's
interpreter, which runs it on CPU tensors when ``TRITON_INTERPRET=1`` is set before it is first
used; that is how the parity tests run on machines without a GPU. :func:`triton_available` says
whether a device can take it and why not.
"""
from __future__ import annotations

import functools
import math
import os
from typing import Sequence

import torch
from torch import Tensor

from adams._hyper import Hyper

__all__ = ["triton_available", "triton_adams_", "TritonUnavailable", "BLOCK"]

#: elements per program: a GPU's blocks, and larger ones for the interpreter, where each program
#: costs Python work
BLOCK = {"cuda": 2048, "cpu": 8192}
_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class TritonUnavailable(RuntimeError):
    """Triton cannot run the step here (not installed, no GPU, interpreter not enabled)."""


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def _kernel():
    """The jitted kernel and triton.language, imported on first use (Triton reads
    ``TRITON_INTERPRET`` at that moment)."""
    try:
        import triton.language as tl

        from adams._triton_kernel import adams_step_kernel
    except ImportError as err:
        raise TritonUnavailable(f"Triton is not installed (pip install 'adams-lab[triton]'): {err}") from None
    return adams_step_kernel, tl


def triton_available(device: str | torch.device = "cuda") -> tuple[bool, str]:
    """Whether the Triton step can run on ``device``, and if not, why."""
    device = torch.device(device)
    try:
        import triton  # noqa: F401
    except ImportError as err:
        return False, f"Triton is not installed (pip install 'adams-lab[triton]'): {err}"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        return True, "CUDA"
    if device.type == "cpu":
        if _interpreting():
            return True, "Triton's interpreter (TRITON_INTERPRET=1)"
        return False, "CPU tensors run only under Triton's interpreter: set TRITON_INTERPRET=1 before first use"
    return False, f"Triton does not run on {device.type}"


def _coefficients(hyper: Hyper, device: torch.device) -> Tensor:
    """lr, log(beta1), beta1, 1 - beta1, beta2, 1 - beta2, eps, 1 - lr wd, in float64 on ``device``.
    From the host through pinned memory, without waiting for the device."""
    b1 = hyper.beta1
    values = [hyper.lr, math.log(b1) if b1 > 0 else -math.inf, b1, 1.0 - b1,
              hyper.beta2, 1.0 - hyper.beta2, hyper.eps, 1.0 - hyper.lr * hyper.weight_decay]
    host = torch.tensor(values, dtype=torch.float64, pin_memory=device.type == "cuda")
    return host.to(device, non_blocking=True)


def _layout(params: Sequence[Tensor], grads, exp_avgs, counter_addresses: Sequence[int], block: int):
    """The kernel's tables: per tensor (w, g, m, counter addresses, size); per program (tensor, start)."""
    rows, tensor_of, start_of = [], [], []
    for i, (p, g, m, s) in enumerate(zip(params, grads, exp_avgs, counter_addresses)):
        n = p.numel()
        rows.append([p.data_ptr(), g.data_ptr(), m.data_ptr(), s, n])
        starts = range(0, n, block)
        tensor_of.extend([i] * len(starts))
        start_of.extend(starts)
    return rows, tensor_of, start_of


def _check(params, grads, exp_avgs, state_steps) -> tuple[torch.device, torch.dtype]:
    if not (len(params) == len(grads) == len(exp_avgs) == len(state_steps)):
        raise ValueError(f"params, grads, exp_avgs and state_steps must have the same length, got {len(params)}, "
                         f"{len(grads)}, {len(exp_avgs)}, {len(state_steps)}")
    device, dtype = params[0].device, params[0].dtype
    if dtype not in _DTYPES:
        raise ValueError(f"param 0 has dtype {dtype}; the Triton step takes {', '.join(map(str, _DTYPES))}")
    for i, (p, g, m, s) in enumerate(zip(params, grads, exp_avgs, state_steps)):
        for name, t in (("param", p), ("grad", g), ("exp_avg", m)):
            if type(t) not in (Tensor, torch.nn.Parameter):
                raise ValueError(f"{name} {i} is a {type(t).__name__}; the Triton step takes plain tensors")
            if t.dtype != dtype or t.device != device:
                raise ValueError(f"{name} {i} is {t.dtype} on {t.device}; param 0 is {dtype} on {device}")
            if t.shape != p.shape:
                raise ValueError(f"{name} {i} has shape {tuple(t.shape)}, param {i} {tuple(p.shape)}")
            if not t.is_contiguous():
                raise ValueError(f"{name} {i} is not contiguous")
        if not (isinstance(s, Tensor) and s.dtype == torch.float32 and s.numel() == 1
                and s.device in (device, torch.device("cpu"))):
            what = f"{s.dtype} {tuple(s.shape)} on {s.device}" if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(f"state_steps {i} must be a float32 one-element tensor on {device} or the CPU, got {what}")
    return device, dtype


def triton_adams_(
    params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor], state_steps: Sequence[Tensor],
    *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, bias_correction: bool = True,
    maximize: bool = False, skip_nonfinite: bool = False, stage_counters: bool | None = None,
) -> Tensor | None:
    """One AdamS step in place on tensors of one device and dtype, counters incremented.

    ``state_steps[i]`` holds the steps tensor ``i`` has taken (float32, one element, on the
    tensors' device, or on the CPU as ``torch.optim`` keeps them: their values are then staged to the
    device without waiting, and incremented on the CPU; ``stage_counters=True`` stages counters
    that are already on the device, which the tests use to run that path on CPU tensors). With
    ``skip_nonfinite=True`` nothing is written when any gradient holds a NaN
    or an infinity, and the returned 0-d int32 device tensor is 1 if the step was taken (read it
    when convenient: reading it waits for the device). Raises ``ValueError`` for unusable tensors
    and :class:`TritonUnavailable` where Triton cannot run, before anything is written."""
    if not params:
        return None
    hyper = Hyper(lr, beta1, beta2, eps, weight_decay, bias_correction, maximize)  # checked when made
    device, dtype = _check(params, grads, exp_avgs, state_steps)
    ok, reason = triton_available(device)
    if not ok:
        raise TritonUnavailable(reason)
    kernel, tl = _kernel()
    block = BLOCK["cuda" if device.type == "cuda" else "cpu"]
    pin = device.type == "cuda"
    if stage_counters is None:
        stage_counters = any(c.device != device for c in state_steps)
    if stage_counters:  # one float32 array of the counts on the device
        staged = torch.stack([c.reshape(()) for c in state_steps])
        staged = (staged.pin_memory() if pin and staged.is_cpu else staged).to(device, non_blocking=True).clone()
        addresses = [staged.data_ptr() + 4 * i for i in range(len(state_steps))]
    else:
        addresses = [c.data_ptr() for c in state_steps]
    rows, tensor_of, start_of = _layout(params, grads, exp_avgs, addresses, block)
    if not tensor_of:  # only empty tensors: count the step, nothing to update
        torch._foreach_add_(list(state_steps), 1.0)
        return torch.ones((), dtype=torch.int32, device=device) if skip_nonfinite else None
    table, tensor_of, start_of = (torch.tensor(x, dtype=torch.int64, pin_memory=pin).to(device, non_blocking=True)
                                  for x in (rows, tensor_of, start_of))
    take = None
    if skip_nonfinite:
        take = nonfinite_flag(grads, device)
    store = getattr(tl, _DTYPES[dtype])
    compute = tl.float64 if dtype == torch.float64 else tl.float32
    kernel[(len(start_of),)](
        table, tensor_of, start_of, _coefficients(hyper, device), take if take is not None else table,
        STORE=store, COMPUTE=compute, BIAS_CORRECTION=bool(hyper.bias_correction), MAXIMIZE=bool(hyper.maximize),
        GUARDED=take is not None, BLOCK=block,
    )
    return finish_step(params, exp_avgs, state_steps, take, device)


def nonfinite_flag(grads: Sequence[Tensor], device: torch.device) -> Tensor:
    """0-d int32 on ``device``: 1 when no gradient holds a NaN or an infinity (computed there, not read)."""
    norms = torch._foreach_norm([g for g in grads if g.numel()], math.inf)  # finite max |g| <=> no NaN, no inf
    if not norms:
        return torch.ones((), dtype=torch.int32, device=device)
    return torch.isfinite(torch.stack(norms)).all().to(torch.int32)


def finish_step(params, exp_avgs, state_steps, take: Tensor | None, device: torch.device) -> Tensor | None:
    """After a single-pass step: count it (by the flag ``take`` when guarded), mark the tensors as
    modified for autograd, and return the flag."""
    if take is None:
        torch._foreach_add_(list(state_steps), 1.0)
    elif all(c.device == device for c in state_steps):
        torch._foreach_add_(list(state_steps), take.to(torch.float32))
    elif bool(take):  # counters on the CPU: this reads the flag, which waits for the device
        torch._foreach_add_(list(state_steps), 1.0)
    torch.autograd.graph.increment_version([*params, *exp_avgs])
    return take
