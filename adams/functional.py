r"""The AdamS update as plain tensor functions.

Symbols follow the paper (arXiv 2505.16363) and ``docs/algorithm.md`` §1: ``w`` parameters, ``g`` gradient,
``m`` momentum (the only state), ``step`` the step count :math:`t`, counted from 1 (the value *after*
this step's increment), :math:`c_t = 1 - \beta_1^t` the bias-correction factor (1 in the paper-text
form). One step, per coordinate:

.. math::

    w &\leftarrow (1 - \eta\lambda)\, w \\
    \nu_t &= \beta_2\, (m_{t-1}/c_t)^2 + (1 - \beta_2)\, g_t^2 \\
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t \\
    w &\leftarrow w - \eta\, (m_t / c_t) / (\sqrt{\nu_t} + \epsilon)

The same function is implemented here, in :mod:`adams._fused` and in :mod:`adams._triton`:

* :func:`adams_update` — pure (returns new tensors, mutates nothing); the readable version, also
  usable under ``torch.func``. :func:`adams_tensor_` applies it to one tensor in place (the for-loop
  path of the optimizer).
* :func:`adams_foreach_` — the same arithmetic on lists of tensors with ``torch._foreach_*`` kernels.
* :func:`fused_adams_` (from :mod:`adams._fused`) — one pass over memory in a compiled CPU kernel,
  which also increments the step counters; :func:`fused_available` says whether it can be built
  here and why not.
* ``impl="triton"`` (:mod:`adams._triton`) — the same single pass on GPUs, one Triton launch per
  device and dtype (on CPU tensors only under Triton's interpreter, as the tests run it).
* ``impl="compiled"`` (:mod:`adams._compiled`) — the Triton kernel's arithmetic written as tensor
  operations and fused by ``torch.compile``, one kernel per tensor: the fallback for devices the
  Triton kernel does not serve.

:func:`adams` is the entry point the optimizer calls: it replaces distributed tensors (``DTensor``, as
FSDP2 makes them) by the shards this process holds, views complex tensors as real pairs, groups
tensors and dispatches to one of them. The update is per coordinate, so each process updates
its own shards with no communication, and every path, the fused kernel included, runs on them.
"""
from __future__ import annotations

import math
from collections import defaultdict
from operator import attrgetter
from typing import Literal, Sequence

import torch
from torch import Tensor

from adams import _fused
from adams._fused import fused_adams_, fused_available
from adams._triton import triton_adams_, triton_available
from adams._compiled import compiled_adams_, compiled_available
from adams._hyper import Hyper, check_hyperparameters
from adams._overlap import describe_pair, first_overlap

__all__ = ["Hyper", "adams", "adams_update", "adams_tensor_", "adams_foreach_", "bias_correction_factor", "local_shards",
           "local_tensors", "check_hyperparameters", "check_tensors", "check_layout", "check_overlap", "check_steps",
           "fused_calls", "run_fused", "fused_adams_", "fused_available", "triton_adams_", "triton_available",
           "compiled_adams_", "compiled_available"]

Impl = Literal["forloop", "foreach", "fused", "triton", "compiled"]

# 16-bit parameters are updated with float32 arithmetic and rounded once when written back.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def bias_correction_factor(beta1: float, step: int, bias_correction: bool = True) -> float:
    r""":math:`c_t = 1 - \beta_1^t` for step ``t`` (counted from 1), or 1 in the paper-text form."""
    if step < 1:
        raise ValueError(f"step is counted from 1, got step={step}")
    return 1.0 - beta1**step if bias_correction else 1.0


def adams_update(
    w: Tensor,
    g: Tensor,
    m: Tensor,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    bias_correction: bool = True,
    maximize: bool = False,
) -> tuple[Tensor, Tensor]:
    """One AdamS step, without side effects: returns ``(w_new, m_new)``.

    ``m`` is the momentum *before* this step (:math:`m_{t-1}`) and ``step`` is :math:`t`.
    """
    if maximize:
        g = -g
    c = bias_correction_factor(beta1, step, bias_correction)  # c_t = 1 - beta1^t
    w = w * (1.0 - lr * weight_decay)  # w <- (1 - lr*lambda) w, decoupled decay first
    nu = beta2 * (m / c) ** 2 + (1.0 - beta2) * g * g  # nu_t from m_{t-1}, not m_t
    m = beta1 * m + (1.0 - beta1) * g  # m_t
    w = w - lr * (m / c) / (nu.sqrt() + eps)  # eps outside the square root
    return w, m


def adams_tensor_(param: Tensor, grad: Tensor, exp_avg: Tensor, *, step: int, hyper: Hyper) -> None:
    """Apply :func:`adams_update` to one tensor in place (the readable for-loop path)."""
    if param.dtype in _LOW_PRECISION:
        w_new, m_new = adams_update(
            param.float(), grad.float(), exp_avg.float(), step=step, **hyper.as_kwargs()
        )
    else:
        w_new, m_new = adams_update(param, grad, exp_avg, step=step, **hyper.as_kwargs())
    param.copy_(w_new)
    exp_avg.copy_(m_new)


# The foreach path works through the tensors in cache-sized batches of flat slices: each of its
# eight foreach kernels then re-reads data that is still in cache instead of streaming the whole
# model from memory eight times, and the temporary for nu stays small. Sizes in elements.
_SLICE = 1 << 17
_BATCH = 1 << 19


def _batches(params, grads, exp_avgs):
    """Yield lists of ``(w, g, m)`` views, each list holding about ``_BATCH`` elements."""
    batch, size = [], 0
    for p, g, m in zip(params, grads, exp_avgs):
        if p.numel() > _SLICE and p.is_contiguous() and g.is_contiguous() and m.is_contiguous():
            pieces = zip(*(t.view(-1).split(_SLICE) for t in (p, g, m)))
        else:
            pieces = [(p, g, m)]
        for piece in pieces:
            batch.append(piece)
            size += piece[0].numel()
            if size >= _BATCH:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def adams_foreach_(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *, step: int,
                   hyper: Hyper) -> None:
    """The update on lists of tensors that share a device, a dtype and a step count."""
    c = bias_correction_factor(hyper.beta1, step, hyper.bias_correction)
    for batch in _batches(params, grads, exp_avgs):
        w, g, m = (list(x) for x in zip(*batch))
        _foreach_batch_(w, g, m, c=c, hyper=hyper)


def _foreach_batch_(w, g, m, *, c: float, hyper: Hyper) -> None:
    lr, beta1, beta2, eps, weight_decay = hyper.lr, hyper.beta1, hyper.beta2, hyper.eps, hyper.weight_decay
    low = w[0].dtype in _LOW_PRECISION
    if low:  # compute in float32 copies, write back (rounding once) at the end
        params, exp_avgs = w, m
        w, g, m = ([t.float() for t in ts] for ts in (w, g, m))
    if hyper.maximize:
        g = torch._foreach_neg(g)
    if lr * weight_decay != 0.0:
        torch._foreach_mul_(w, 1.0 - lr * weight_decay)  # w <- (1 - lr*lambda) w
    # nu_t = beta2 (m_{t-1}/c)^2 + (1-beta2) g^2 = (1-beta2) * u  with  u = g g + k m m,
    # k = beta2 / ((1-beta2) c^2). Then with s = sqrt(1-beta2):
    #   (lr/c) m_t / (sqrt(nu_t) + eps) = (lr/(c s)) m_t / (sqrt(u) + eps/s),
    # which saves one pass over memory (the identity is tested in tests/adams/test_functional.py).
    s = math.sqrt(1.0 - beta2)
    u = torch._foreach_mul(g, g)
    torch._foreach_addcmul_(u, m, m, value=beta2 / ((1.0 - beta2) * c * c))
    torch._foreach_sqrt_(u)
    torch._foreach_add_(u, eps / s)
    torch._foreach_mul_(m, beta1)  # m_t = beta1 m_{t-1} + (1-beta1) g
    torch._foreach_add_(m, g, alpha=1.0 - beta1)
    torch._foreach_addcdiv_(w, m, u, value=-lr / (c * s))  # w <- w - (lr/c) m_t / (sqrt(nu_t) + eps)
    if low:
        torch._foreach_copy_(params, w)
        torch._foreach_copy_(exp_avgs, m)


_dtype = attrgetter("dtype")
_PLAIN = frozenset((Tensor, torch.nn.Parameter))
_COMPLEX = frozenset((torch.complex32, torch.complex64, torch.complex128))


def _as_real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def local_shards(
    params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Replace each distributed tensor (``torch.distributed.tensor.DTensor``) by its local shard.

    Plain tensors pass through. A parameter that is a DTensor needs a DTensor gradient and
    momentum; a gradient laid out differently from its parameter (another mesh or placements, say
    ``Partial`` after a tensor-parallel layer) is first redistributed to the parameter's layout,
    which communicates. A momentum laid out differently is an error, since it is updated in place.
    The shards share memory with the DTensors, so writing them updates the DTensors.
    """
    types = set(map(type, params)) | set(map(type, grads)) | set(map(type, exp_avgs))
    if types <= _PLAIN:
        return list(params), list(grads), list(exp_avgs)
    from torch.distributed.tensor import DTensor

    shards: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    with torch.no_grad():  # to_local then returns the local tensor itself, not an autograd view
        for i, (p, g, m) in enumerate(zip(params, grads, exp_avgs)):
            distributed = [isinstance(t, DTensor) for t in (p, g, m)]
            if not any(distributed):
                for out, t in zip(shards, (p, g, m)):
                    out.append(t)
                continue
            if not all(distributed):
                kinds = ", ".join(f"{name} is {'a DTensor' if d else 'a plain tensor'}"
                                  for name, d in zip(("param", "grad", "exp_avg"), distributed))
                raise ValueError(f"tensor {i}: {kinds}; all three must be DTensors or all plain tensors")
            if any(pl.is_partial() for pl in p.placements):
                raise ValueError(f"param {i} has a Partial placement {p.placements}; a parameter must be "
                                 "sharded or replicated")
            if g.device_mesh != p.device_mesh or g.placements != p.placements:
                g = g.redistribute(p.device_mesh, p.placements)
            if m.device_mesh != p.device_mesh or m.placements != p.placements:
                raise ValueError(f"exp_avg {i} has placements {m.placements} but param {i} has {p.placements} "
                                 "(or another device mesh); the momentum must be laid out as its parameter")
            for out, t in zip(shards, (p, g, m)):
                out.append(t.to_local())
    return shards


_shape, _device = attrgetter("shape"), attrgetter("device")


def _tensor_problem(i: int, p, g, m) -> str | None:
    """Why the ``i``-th (param, grad, exp_avg) triple cannot take a step, or ``None``."""
    for name, t in (("param", p), ("grad", g), ("exp_avg", m)):
        if not isinstance(t, Tensor):
            return f"{name} {i} is a {type(t).__name__}, not a tensor"
    for name, t in (("grad", g), ("exp_avg", m)):
        if t.shape != p.shape:
            return f"{name} {i} has shape {tuple(t.shape)} but param {i} has shape {tuple(p.shape)}"
        if t.dtype != p.dtype:
            return f"{name} {i} has dtype {t.dtype} but param {i} has {p.dtype}"
        if t.device != p.device:
            return f"{name} {i} is on {t.device} but param {i} is on {p.device}"
    if not p.is_floating_point():
        return f"param {i} has dtype {p.dtype}; only floating-point (or complex) parameters can be updated"
    return None


def check_tensors(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor]) -> None:
    """Raise ``ValueError`` naming the first problem that would stop a step part-way through:
    :func:`check_layout` and :func:`check_overlap`. Give the tensors as :func:`adams` updates them
    (local shards, complex as real pairs)."""
    check_layout(params, grads, exp_avgs)
    check_overlap(params, grads, exp_avgs)


def check_layout(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor]) -> None:
    """Every gradient and momentum is a tensor of its parameter's shape, dtype and device, and the
    parameters are floating-point; else ``ValueError`` naming the first that is not."""
    if not (len(params) == len(grads) == len(exp_avgs)):
        raise ValueError(f"params, grads and exp_avgs must have the same length, got {len(params)}, "
                         f"{len(grads)}, {len(exp_avgs)}")
    try:  # the usual case in a few C-level passes; the loop below names the culprit
        shapes, dtypes, devices = (list(map(f, params)) for f in (_shape, _dtype, _device))
        fine = (all(list(map(f, ts)) == ref for ts in (grads, exp_avgs)
                    for f, ref in ((_shape, shapes), (_dtype, dtypes), (_device, devices)))
                and all(map(Tensor.is_floating_point, params)))
    except (AttributeError, TypeError):
        fine = False
    if not fine:
        for i, triple in enumerate(zip(params, grads, exp_avgs)):
            problem = _tensor_problem(i, *triple)
            if problem:
                raise ValueError(problem)


def check_overlap(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor]) -> None:
    """No tensor the step writes (a parameter or a momentum) shares memory with another tensor of
    the step (byte ranges, :mod:`adams._overlap`), else ``ValueError`` naming the pair: overlapping
    tensors give results that depend on the order of the updates, and so differ between paths."""
    overlap = first_overlap([*params, *exp_avgs], grads)
    if overlap is not None:
        n = len(params)
        names = [f"{kind} {k}" for kind in ("param", "exp_avg", "grad") for k in range(n)]
        raise ValueError(describe_pair(*overlap, names))


def check_steps(state_steps: Sequence[Tensor]) -> list[int]:
    """The step counters as ints, after checking each is a one-element tensor holding a whole
    number >= 0 (raises ``ValueError`` naming the first that is not). Nothing is changed."""
    if not state_steps:
        return []
    if len(set(map(id, state_steps))) != len(state_steps):
        seen: dict[int, int] = {}
        i, j = next((seen[id(t)], k) for k, t in enumerate(state_steps) if seen.setdefault(id(t), k) != k)
        raise ValueError(f"step counters {i} and {j} are one tensor: it would be counted twice per step")
    try:  # the usual case: 0-d float32 CPU counters, read in one stack
        counts = torch.stack(list(state_steps)).tolist()
        usable = all(map(_is_number, counts))
    except (RuntimeError, TypeError):
        usable = False
    if not usable:
        for i, t in enumerate(state_steps):
            if not (isinstance(t, Tensor) and t.numel() == 1):
                what = f"shape {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"step counter {i} must be a one-element tensor (torch.optim's state['step']), "
                                 f"got {what}")
        counts = torch.stack([t.detach().reshape(()).to("cpu", torch.float64) for t in state_steps]).tolist()
    for i, c in enumerate(counts):
        if not (math.isfinite(c) and c >= 0 and c == int(c)):
            raise ValueError(f"step counter {i} must hold a whole number >= 0, got {c}")
    return list(map(int, counts))


def _is_number(x) -> bool:
    return isinstance(x, (int, float))


def local_tensors(
    params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """The tensors as the update sees them: local shards of ``DTensor`` s, complex as real pairs."""
    params, grads, exp_avgs = local_shards(params, grads, exp_avgs)
    if not set(map(_dtype, params)).isdisjoint(_COMPLEX):
        params, grads, exp_avgs = ([_as_real(t) for t in ts] for ts in (params, grads, exp_avgs))
    return params, grads, exp_avgs


def adams(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    state_steps: Sequence[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    bias_correction: bool = True,
    maximize: bool = False,
    impl: Impl = "foreach",
) -> None:
    """Update ``params``, ``exp_avgs`` and the step counters ``state_steps`` in place.

    ``state_steps[i]`` is tensor ``i``'s counter of steps taken so far (a one-element tensor, as
    ``state["step"]`` in ``torch.optim``); it is incremented first, so a fresh counter of 0 makes
    this step :math:`t = 1`. The fused path reads and increments float32 CPU counters inside the
    kernel; the other paths with one ``torch._foreach_add_``.

    All or nothing: the hyperparameters (:func:`check_hyperparameters`), the tensors
    (:func:`check_tensors`) and the counters (:func:`check_steps`) are checked before anything is
    written, and a problem raises ``ValueError`` (or ``TypeError``) with every tensor unchanged.

    Distributed tensors (``DTensor``) are updated through their local shards (:func:`local_shards`).
    Complex tensors are updated as pairs of real numbers (``torch.view_as_real``), so the
    denominator is formed per real and per imaginary part, as in ``torch.optim.AdamW``.
    """
    if not (len(params) == len(grads) == len(exp_avgs) == len(state_steps)):
        raise ValueError(
            "params, grads, exp_avgs and state_steps must have the same length, got "
            f"{len(params)}, {len(grads)}, {len(exp_avgs)}, {len(state_steps)}"
        )
    if impl not in ("forloop", "foreach", "fused", "triton", "compiled"):
        raise ValueError(f"impl must be 'forloop', 'foreach', 'fused', 'triton' or 'compiled', got {impl!r}")
    hyper = Hyper(lr, beta1, beta2, eps, weight_decay, bias_correction, maximize)  # checked when made
    params, grads, exp_avgs = local_tensors(params, grads, exp_avgs)
    check_tensors(params, grads, exp_avgs)
    counts = check_steps(state_steps)
    apply_checked(params, grads, exp_avgs, state_steps, impl=impl, hyper=hyper, counts=counts)


def fused_calls(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                state_steps: Sequence[Tensor], *, overlap_checked: bool = False) -> list[_fused.Prepared]:
    """The fused kernel's calls for these tensors (one per dtype), each checked by
    :func:`adams._fused.prepare`; :class:`adams._fused.Rejected` (a ``ValueError``) if the kernel
    cannot take them. Nothing is written: a caller may check every group and then fall back."""
    if len(set(map(_dtype, params))) <= 1:  # the usual case: one kernel call
        groups = [(params, grads, exp_avgs, state_steps)]
    else:  # one call per dtype
        by_dtype: dict[torch.dtype, list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            by_dtype[p.dtype].append(i)
        groups = [[[ts[i] for i in index] for ts in (params, grads, exp_avgs, state_steps)]
                  for index in by_dtype.values()]
    return [_fused.prepare(p, g, m, state_steps=s, overlap_checked=overlap_checked) for p, g, m, s in groups]


def run_fused(calls: Sequence[_fused.Prepared], hyper: Hyper) -> None:
    """Run checked kernel calls (:func:`fused_calls`); the kernel increments the step counters."""
    kernel = _fused.default_kernel()
    for call in calls:
        _fused.run(kernel, call, hyper)


def apply_checked(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                  state_steps: Sequence[Tensor], *, impl: Impl, hyper: Hyper, counts: Sequence[int]) -> None:
    """The update of :func:`adams` on tensors that have passed its checks (local, real views).

    ``counts`` are the step counters' values as :func:`check_steps` read them (the steps taken so
    far); the fused kernel reads the counters itself. The fused path may still raise
    :class:`adams._fused.Rejected` for tensors the kernel cannot take (not contiguous, on another
    device), before anything is written.
    """
    if impl == "fused":
        run_fused(fused_calls(params, grads, exp_avgs, state_steps, overlap_checked=True), hyper)
        return
    if impl in ("triton", "compiled"):  # per (device, dtype); these increment the counters themselves
        single_pass = triton_adams_ if impl == "triton" else compiled_adams_
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            groups[(p.device, p.dtype)].append(i)
        for index in groups.values():
            single_pass(*([ts[i] for i in index] for ts in (params, grads, exp_avgs, state_steps)),
                        **hyper.as_kwargs())
        return

    steps = [t + 1 for t in counts]
    torch._foreach_add_(list(state_steps), 1.0)
    if impl == "forloop":
        for p, g, m, t in zip(params, grads, exp_avgs, steps):
            adams_tensor_(p, g, m, step=t, hyper=hyper)
        return
    buckets: dict[tuple, list[tuple[Tensor, Tensor, Tensor]]] = defaultdict(list)
    for p, g, m, t in zip(params, grads, exp_avgs, steps):
        buckets[(p.device, p.dtype, t)].append((p, g, m))
    for (_, _, t), bucket in buckets.items():
        ps, gs, ms = (list(x) for x in zip(*bucket))
        adams_foreach_(ps, gs, ms, step=t, hyper=hyper)
