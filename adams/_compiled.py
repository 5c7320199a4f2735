"""The AdamS step compiled by ``torch.compile``: the single-pass path where the Triton kernel cannot run.

:func:`compiled_adams_` takes the same arguments as :func:`adams._triton.triton_adams_` and computes
the same function in the same order of operations (the arithmetic of :mod:`adams._triton_kernel`
written with tensor operations). ``torch.compile`` fuses each tensor's update into one kernel that
reads ``w``, ``g`` and ``m`` once and writes ``w`` and ``m`` once: Triton code on CUDA (so it needs
Triton there too), C++ on CPU, and whatever Inductor generates on other devices. It is the fallback
for devices Triton does not serve and a second, independently generated single-pass kernel to
measure against ours (``benchmarks/gpu_check.py``).

The step counters and the scalars stay tensors on the device (the counters are read by the compiled
code, not by the host), so a step never waits for the device and a learning-rate schedule does not
recompile. One compilation per dtype (and one more for tensors of one element); shapes are dynamic, and
the flags are tensors.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import Tensor

from adams._hyper import Hyper

__all__ = ["compiled_adams_", "compiled_available"]

def _step(w: Tensor, g: Tensor, m: Tensor, counter: Tensor, coef: Tensor, flags: Tensor, take: Tensor) -> None:
    """One tensor's step in place (1-D views); the order of operations is that of the Triton kernel.

    The flags are tensors, not Python values, so that they do not multiply the compilations:
    ``flags`` holds the gradient's sign (-1 when maximizing) and 1 or 0 for bias correction, ``take``
    is 0 when the guard refuses the step.
    """
    compute = torch.float64 if w.dtype == torch.float64 else torch.float32
    t = counter.to(torch.float64) + 1.0  # this step, counted from 1
    c = 1.0 - flags[1] * torch.exp(t * coef[1])  # 1 - beta1^t, or 1 without bias correction
    inv_c = (1.0 / c).to(compute)
    lr, b1, omb1, b2, omb2, eps, decay = (coef[k].to(compute) for k in (0, 2, 3, 4, 5, 6, 7))
    w32, m32 = w.to(compute), m.to(compute)
    g32 = g.to(compute) * flags[0].to(compute)  # -g when maximizing
    mh = m32 * inv_c  # m_prev / c
    nu = b2 * (mh * mh) + omb2 * (g32 * g32)  # from m_prev, not m_t
    m_new = b1 * m32 + omb1 * g32  # m_t
    w_new = decay * w32 - lr * (m_new * inv_c) / (torch.sqrt(nu) + eps)  # eps outside the square root
    keep = take == 0  # the guard: the old values when the step is not taken
    m.copy_(torch.where(keep, m32, m_new))
    w.copy_(torch.where(keep, w32, w_new))


@functools.cache
def _compiled():
    return torch.compile(_step, dynamic=True, fullgraph=True)


def compiled_available(device: str | torch.device = "cpu") -> tuple[bool, str]:
    """Whether ``torch.compile`` can be asked to build the step for ``device``, and if not, why. A
    build can still fail when first run (no C++ compiler, no Triton on CUDA); that error is raised."""
    device = torch.device(device)
    if device.type == "meta":
        return False, "meta tensors hold no numbers"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "torch.compile generates Triton code on CUDA, and Triton is not installed"
    return True, f"torch.compile ({device.type})"


def compiled_adams_(
    params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor], state_steps: Sequence[Tensor],
    *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, bias_correction: bool = True,
    maximize: bool = False, skip_nonfinite: bool = False,
) -> Tensor | None:
    """One AdamS step in place on tensors of one device, counters incremented; the arguments, the
    checks and the returned flag are those of :func:`adams._triton.triton_adams_`."""
    from adams._triton import _check, _coefficients, finish_step, nonfinite_flag

    if not params:
        return None
    hyper = Hyper(lr, beta1, beta2, eps, weight_decay, bias_correction, maximize)  # checked when made
    device, _ = _check(params, grads, exp_avgs, state_steps)
    ok, reason = compiled_available(device)
    if not ok:
        raise RuntimeError(f"the compiled step cannot run on {device}: {reason}")
    coef = _coefficients(hyper, device)
    staged = [c.to(device, non_blocking=True) if c.device != device else c for c in state_steps]
    flags = torch.tensor([-1.0 if hyper.maximize else 1.0, 1.0 if hyper.bias_correction else 0.0],
                         dtype=torch.float64).to(device, non_blocking=True)
    take = nonfinite_flag(grads, device) if skip_nonfinite else None
    step = _compiled()
    always = torch.ones((), dtype=torch.int32, device=device) if take is None else take
    with torch.no_grad():
        for p, g, m, counter in zip(params, grads, exp_avgs, staged):
            if p.numel():
                step(p.view(-1), g.view(-1), m.view(-1), counter.reshape(()), coef, flags, always)
    return finish_step(params, exp_avgs, state_steps, take, device)
