"""The single-pass AdamS step on CPU: check the tensors, then call ``_kernel.c`` through ctypes.

:func:`fused_adams_` computes the update of :mod:`adams.functional` (``docs/algorithm.md`` §1) in one pass over
memory: each element of ``w``, ``g`` and ``m`` is read once and ``w`` and ``m`` are written once,
20 bytes per float32 parameter. float32 and float64 compute in their own precision; bfloat16 and
float16 compute in float32 and round to their storage type once, to nearest even.

Step counters. ``torch.optim`` keeps each parameter's step count as a float32 0-d tensor. Given
``state_steps``, the kernel reads those counters, computes each tensor's own :math:`c_t`, and
increments them itself (after the update, and only if every argument was valid), so the optimizer
needs no extra dispatch to count steps.

Validation. Every argument is checked in Python before the kernel runs (:func:`prepare`): plain
dense contiguous CPU tensors of one dtype, matching shapes, no written tensor sharing memory with
another tensor of the call.
A failed check raises :class:`Rejected` (a ``ValueError``) and writes nothing, which lets the
optimizer fall back to the foreach path. The checks are a few C-level passes over the lists; on
the development VM they, with the optimizer's bookkeeping, are most of the gap between the
"adams_kernel" and "adams_fused" rows of the step-time benchmark: right after a step has streamed
the whole model through memory, every tensor's metadata is out of cache.

Threads. One call cuts the concatenation of all its tensors into one contiguous chunk per thread,
``min(torch.get_num_threads(), elements // GRAIN)`` threads, in a single dispatch however many
tensors there are. Built with OpenMP, the kernel binds to the OpenMP runtime torch has already
loaded (``libgomp.so.1``, found by soname), so a step runs on torch's own worker threads, which are
usually still spinning after the backward pass. Without OpenMP it falls back to a small pthread pool
in the kernel (workers sleep between calls and claim chunks as they wake; the caller never waits
for one that has not started). Measured on the 2-core development VM, 10M float32 parameters in 40
tensors, interleaved with torch ops as in a training loop: 6.1 ms with OpenMP, 7.8-8.2 ms with
the pool, whose worker competes for a core with torch's spinning OpenMP thread (run alone, both
take 5.2-5.8 ms). ctypes releases the GIL for the duration of the call.

The kernel is built and loaded by :mod:`adams._build`.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from operator import attrgetter
from typing import Sequence

import torch
from torch import Tensor

from adams._hyper import Hyper
from adams._overlap import describe_pair, first_overlap
from adams._build import BuildError, Kernel, default_kernel, fused_available, kernel_or_none

__all__ = ["fused_available", "fused_adams_", "kernel_or_none", "prepare", "run", "Rejected", "BuildError"]

# Threads are used only if each gets at least this many elements. With OpenMP a second thread paid
# off from about 64k float32 elements per call on the development VM; waking a pool worker takes
# tens of microseconds, so the pool needs more.
GRAIN = {"openmp": 32768, "pthreads": 131072}
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}

NAMES = ("param", "grad", "exp_avg")
_dtype, _is_cpu, _shape = (attrgetter(a) for a in ("dtype", "is_cpu", "shape"))
_PLAIN = frozenset((Tensor, torch.nn.Parameter))


def _problem(t, dtype: torch.dtype) -> str | None:
    """Why tensor ``t`` cannot be passed to the kernel in a call whose dtype is ``dtype`` (or None)."""
    if not isinstance(t, Tensor):
        return f"is a {type(t).__name__}, not a tensor"
    if type(t) not in _PLAIN:
        return f"is a {type(t).__name__}, a tensor subclass (such as DTensor); only plain tensors are supported"
    if t.layout != torch.strided:
        return f"has layout {t.layout}; only dense tensors are supported"
    if t.device.type != "cpu":
        return f"is on {t.device}; the fused kernel is CPU-only"
    if t.is_complex():
        return f"is complex ({t.dtype}); pass torch.view_as_real views"
    if t.dtype not in DTYPE_CODES:
        return f"has unsupported dtype {t.dtype} (supported: float32, float64, bfloat16, float16)"
    if t.dtype != dtype:
        return f"has dtype {t.dtype} but param 0 has {dtype}; all tensors of one call must share a dtype"
    if not t.is_contiguous():
        return "is not contiguous"
    if t.is_neg():
        return "is a lazily negated view (torch._neg_view); materialize it first"
    return None


class Rejected(ValueError):
    """The kernel cannot take these arguments; raised before anything is written."""


def _all_plain(tensors: Sequence, dtype: torch.dtype) -> bool:
    """True if every tensor is a plain (not a subclass), dense, contiguous CPU tensor of ``dtype``.

    This runs on every step, so it is a handful of C-level passes (``map`` over unbound tensor
    methods) rather than a Python loop; :func:`_problem` names the culprit when it is False.
    """
    try:
        # a sparse tensor is not contiguous, and other layouts raise here
        return (set(map(type, tensors)) <= _PLAIN and set(map(_dtype, tensors)) == {dtype}
                and all(map(_is_cpu, tensors)) and all(map(Tensor.is_contiguous, tensors))
                and not any(map(Tensor.is_neg, tensors)))
    except (AttributeError, RuntimeError, TypeError):  # not a tensor, or a sparse one
        return False


def _explain(params, grads, exp_avgs, dtype: torch.dtype) -> str:
    """The first problem in three lists that failed :func:`_all_plain` or the shape check."""
    for i, triple in enumerate(zip(params, grads, exp_avgs)):
        for name, t in zip(NAMES, triple):
            problem = _problem(t, dtype)
            if problem:
                return f"{name} {i} {problem}"
        p, g, m = triple
        if g.shape != p.shape or m.shape != p.shape:
            bad, t = ("grad", g) if g.shape != p.shape else ("exp_avg", m)
            return f"{bad} {i} has shape {tuple(t.shape)} but param {i} has shape {tuple(p.shape)}"
    return "unknown problem"


def _pointers(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor], overlap: bool = True):
    """Validate the three lists; return ``(dtype, w, g, m, numel)`` with raw addresses and sizes.

    Raises :class:`Rejected` naming the first offending tensor. A tensor that the kernel writes (a
    parameter or a momentum) must share no byte with any other tensor of the call (byte ranges are
    compared, :mod:`adams._overlap`): threads would race on it, and the result would depend on the
    order of the elements.
    """
    if not (len(params) == len(grads) == len(exp_avgs)):
        raise Rejected(
            f"params, grads and exp_avgs must have the same length, got {len(params)}, "
            f"{len(grads)}, {len(exp_avgs)}"
        )
    if not len(params):
        return None, [], [], [], []
    dtype = getattr(params[0], "dtype", None)
    if dtype not in DTYPE_CODES or type(params[0]) not in _PLAIN:
        raise Rejected(f"param 0 {_problem(params[0], dtype)}")
    shapes = list(map(_shape, params))
    if not (_all_plain((*params, *grads, *exp_avgs), dtype)
            and list(map(_shape, grads)) == shapes and list(map(_shape, exp_avgs)) == shapes):
        raise Rejected(_explain(params, grads, exp_avgs, dtype))
    try:
        w, g, m = (list(map(Tensor.data_ptr, ts)) for ts in (params, grads, exp_avgs))
    except RuntimeError as exc:  # a layout without storage (e.g. mkldnn)
        raise Rejected(f"{_explain(params, grads, exp_avgs, dtype)}: {exc}") from None
    pair = first_overlap([*params, *exp_avgs], grads) if overlap else None
    if pair is not None:
        raise Rejected(_aliasing(*pair, len(params)))
    return dtype, w, g, m, list(map(Tensor.numel, params))


def _aliasing(i: int, j: int, count: int) -> str:
    """Name a pair of tensors that share memory (indices as in :func:`adams._overlap.first_overlap`)."""
    names = ([f"param {k}" for k in range(count)] + [f"exp_avg {k}" for k in range(count)]
             + [f"grad {k}" for k in range(count)])
    return describe_pair(i, j, names)


def _step_pointers(state_steps: Sequence[Tensor], count: int) -> list[int]:
    """Addresses of the float32 step counters, one distinct 1-element CPU tensor per array."""
    if len(state_steps) != count:
        raise Rejected(f"state_steps has {len(state_steps)} counters for {count} tensors")
    try:  # a one-element tensor is contiguous whatever its strides; a subclass fails data_ptr below
        ok = (set(map(_dtype, state_steps)) <= {torch.float32} and all(map(_is_cpu, state_steps))
              and set(map(Tensor.numel, state_steps)) <= {1})
        addresses = list(map(Tensor.data_ptr, state_steps)) if ok else []
    except (AttributeError, RuntimeError, TypeError):
        ok = False
    if not ok:
        for i, t in enumerate(state_steps):
            if not (type(t) in _PLAIN and t.dtype == torch.float32 and t.is_cpu and t.numel() == 1
                    and t.layout == torch.strided):
                what = type(t).__name__ if not isinstance(t, Tensor) else f"{t.dtype} {tuple(t.shape)} on {t.device}"
                raise Rejected(f"state_steps {i} must be a float32 CPU tensor of one element, got {what}")
        raise Rejected("state_steps must be plain tensors with storage")
    if len(set(addresses)) != len(addresses):
        raise Rejected("state_steps must be distinct tensors: a shared counter would be incremented twice")
    return addresses


STATUS = {
    -1: "unknown dtype code",
    -2: "out of memory",
    -3: "too many chunks (2^32 or more)",
    -4: "a step counter in state_steps is not a whole number >= 0",
    -5: "bias correction 1 - beta1**step is 0",
}


def chunk_size(total: int, threads: int) -> int:
    """One contiguous chunk per thread, rounded up to a multiple of 64 elements (so that, for
    aligned tensors, two threads never write to the same cache line)."""
    per_thread = -(-total // max(threads, 1))  # ceil(total / threads)
    return -(-per_thread // 64) * 64


@dataclass
class Prepared:
    """Validated arguments of one kernel call: the tensors' addresses in one buffer."""

    dtype: torch.dtype | None  # None: no tensors, nothing to do
    count: int
    total: int  # elements over all tensors
    table: array.array  # w, g, m addresses, sizes, then the step counters' addresses if any
    step: int  # the shared step, or 0 when the counters in the table are used
    written: list[Tensor]  # params and exp_avgs, whose version counters are bumped


def prepare(params, grads, exp_avgs, *, step: int | None = None,
            state_steps: Sequence[Tensor] | None = None, overlap_checked: bool = False) -> Prepared:
    """Check one call's arguments (see :func:`fused_adams_`); raise :class:`Rejected` if unusable.

    ``overlap_checked=True`` skips the memory-overlap check, for a caller that has made it over
    these tensors already (:func:`adams.functional.check_tensors`)."""
    if (step is None) == (state_steps is None):
        raise Rejected("give exactly one of step (an int from 1) and state_steps (counters to increment)")
    if step is not None and (isinstance(step, bool) or int(step) != step or step < 1):
        raise Rejected(f"step is counted from 1, got step={step!r}")
    dtype, w, g, m, numel = _pointers(params, grads, exp_avgs, overlap=not overlap_checked)
    steps = _step_pointers(state_steps, len(w)) if state_steps is not None else []
    return Prepared(dtype, len(w), sum(numel), array.array("q", w + g + m + numel + steps),
                    int(step or 0), [*params, *exp_avgs])


def run(kernel: Kernel, call: Prepared, hyper: Hyper, *, threads: int | None = None,
        chunk: int | None = None) -> None:
    """Dispatch a :class:`Prepared` call to ``kernel`` with the hyperparameters ``hyper``.

    ``threads=None`` takes ``torch.get_num_threads()`` threads but none with fewer than
    :data:`GRAIN` elements; a number is used as given. ``chunk=None`` gives each thread one chunk
    (:func:`chunk_size`). Any choice gives the same bits (the tests check it).
    """
    if call.dtype is None:
        return
    if threads is None:
        threads = max(1, min(torch.get_num_threads(), call.total // GRAIN[kernel.threading]))
    if chunk is None:
        chunk = chunk_size(call.total, threads)
    base, row = call.table.buffer_info()[0], 8 * call.count
    status = kernel.lib.adams_step(
        DTYPE_CODES[call.dtype], call.count, base, base + row, base + 2 * row, base + 3 * row,
        None if call.step else base + 4 * row, float(call.step),
        float(hyper.lr), float(hyper.beta1), float(hyper.beta2), float(hyper.eps), float(hyper.weight_decay),
        int(hyper.bias_correction), int(hyper.maximize), int(threads), int(chunk),
    )
    if status != 0:
        error = Rejected if status in (-4, -5) else RuntimeError
        raise error(f"adams_step returned {status}: {STATUS.get(status, 'unknown status')}; nothing was written")
    # the memory was written behind autograd's back: record the in-place change
    torch.autograd.graph.increment_version(call.written)


def step_(
    kernel: Kernel, params, grads, exp_avgs, *, step: int | None = None,
    state_steps: Sequence[Tensor] | None = None, threads: int | None = None,
    chunk: int | None = None, **hyper,
) -> None:
    """:func:`fused_adams_` with an explicit kernel, and optionally thread count and chunk size
    (see :func:`run`)."""
    call = prepare(params, grads, exp_avgs, step=step, state_steps=state_steps)
    run(kernel, call, Hyper(**hyper), threads=threads, chunk=chunk)


def fused_adams_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    *,
    step: int | None = None,
    state_steps: Sequence[Tensor] | None = None,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    bias_correction: bool,
    maximize: bool,
) -> None:
    """One AdamS step on lists of CPU tensors, in place (``params`` and ``exp_avgs`` are written).

    All tensors share one dtype (float32, float64, bfloat16 or float16), are dense and contiguous,
    and ``grads[i]``, ``exp_avgs[i]`` have the shape of ``params[i]``; otherwise ``ValueError``.
    ``exp_avgs`` hold :math:`m_{t-1}` on entry and :math:`m_t` on return.

    The step count comes either from ``step`` (:math:`t`, counted from 1, shared by all tensors) or
    from ``state_steps``: one float32 counter per tensor, holding the number of steps taken so far,
    which the kernel increments (as ``torch.optim`` optimizers do with ``state["step"]``), so that
    tensor ``i`` takes step ``state_steps[i] + 1``. Invalid arguments raise :class:`Rejected` (a
    ``ValueError``) before anything is written; :class:`BuildError` if the kernel cannot be built.
    """
    kernel = default_kernel()
    call = prepare(params, grads, exp_avgs, step=step, state_steps=state_steps)
    run(kernel, call, Hyper(lr, beta1, beta2, eps, weight_decay, bias_correction, maximize))
