"""The single-pass AdamS step on CPU: ``_kernel.c`` compiled on first use and called through ctypes.

:func:`fused_adams_` computes the update of :mod:`adams.functional` (ADAMS.md §1) in one pass over
memory: each element of ``w``, ``g`` and ``m`` is read once and ``w`` and ``m`` are written once,
20 bytes per float32 parameter. float32 and float64 compute in their own precision; bfloat16 and
float16 compute in float32 and round to their storage type once, to nearest even.

Build. The system C compiler (``$CC``, else ``gcc``, else ``cc``) compiles ``_kernel.c`` with
``-O3 -fno-math-errno -ffp-contract=off -march=native -fopenmp``: every operation is rounded as
IEEE prescribes (no ``-ffast-math``, no fused multiply-add contraction), so the result does not
depend on the vector width or on how the elements are split between threads. If the build fails
(or does not load) with OpenMP, then with ``-march=native``, it is retried without them.

Cache. The shared object is cached in ``$ADAMS_KERNEL_CACHE`` (default
``~/.cache/adams-lab/kernels``) under a hash of the source, the flags, the compiler's version and
the target it resolves ``-march=native`` to. It is compiled to a temporary file, moved with
:func:`os.replace` to a name that contains its SHA-256, and a small index file (replaced the same
way) records that name and digest: a reader never sees a half-written file, two processes
building at once each load a complete one, and a damaged file is rebuilt.

Step counters. ``torch.optim`` keeps each parameter's step count as a float32 0-d tensor. Given
``state_steps``, the kernel reads those counters, computes each tensor's own :math:`c_t`, and
increments them itself (after the update, and only if every argument was valid), so the optimizer
needs no extra dispatch to count steps.

Validation. Every argument is checked in Python before the kernel runs (:func:`prepare`): plain
dense contiguous CPU tensors of one dtype, matching shapes, no two written tensors at one address.
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
"""
from __future__ import annotations

import array
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["fused_available", "fused_adams_", "prepare", "run", "Rejected", "BuildError"]

SOURCE = Path(__file__).with_name("_kernel.c")
ABI_VERSION = 2  # must equal ADAMS_ABI_VERSION in _kernel.c
BASE_FLAGS = ("-O3", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared", "-pthread")
OPTIONAL_FLAGS = ("-march=native", "-fopenmp")  # dropped if the build fails with them
# Threads are used only if each gets at least this many elements. With OpenMP a second thread paid
# off from about 64k float32 elements per call on the development VM; waking a pool worker takes
# tens of microseconds, so the pool needs more.
GRAIN = {"openmp": 32768, "pthreads": 131072}
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}


@dataclass
class Kernel:
    """A loaded build of ``_kernel.c``."""

    lib: ctypes.CDLL
    path: Path
    flags: tuple[str, ...]
    compiled: bool  # True if this load ran the compiler, False if it reused the cache
    threading: str  # "openmp" or "pthreads"
    notes: list[str] = field(default_factory=list)  # failed attempts before this build


class BuildError(RuntimeError):
    pass


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "adams-lab" / "kernels"
    return Path(os.environ.get("ADAMS_KERNEL_CACHE") or default)


def find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return name
    return None


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)


@functools.lru_cache(maxsize=None)
def _target_description(cc: str, flags: tuple[str, ...]) -> str:
    """The compiler's version and the target options the flags resolve to (``-march=native`` differs
    between machines that share a home directory)."""
    version = _run([cc, "--version"]).stdout
    probe = _run([cc, *flags, "-###", "-x", "c", "-c", os.devnull, "-o", os.devnull]).stderr
    # the target options the driver hands to the compiler proper (-march=, -m..., cache sizes)
    words = [w.strip('"') for line in probe.splitlines() if "cc1" in line for w in line.split()]
    target = [w for w in words if w.startswith(("-m", "l1-", "l2-"))]
    return "\n".join([version, " ".join(target), platform.machine(), platform.system(), sys.platform])


def _index_path(directory: Path, cc: str, flags: tuple[str, ...], source: bytes) -> Path:
    """The small file naming the build for this source, these flags, this compiler and target."""
    described = _target_description(cc, flags).encode()
    key = _digest(b"\0".join([source, " ".join(flags).encode(), described]))
    return directory / f"adams_kernel_{key[:24]}.txt"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_verified(index: Path) -> tuple[ctypes.CDLL, Path] | None:
    """Load the build an index file names, if its SHA-256 matches and it reports our ABI version.

    A build file is named after its own digest and never rewritten, and the index is replaced
    atomically, so a reader always sees a matching pair unless a file was damaged.
    """
    try:
        name, recorded = index.read_text().split()
        path = index.with_name(name)
        if recorded != _digest(path.read_bytes()):
            return None
        lib = ctypes.CDLL(str(path))
        if lib.adams_abi_version() != ABI_VERSION:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return lib, path


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _compile(cc: str, flags: Sequence[str], index: Path) -> tuple[ctypes.CDLL, Path]:
    """Compile into a temporary file, move it to a name holding its digest, then point the index at it."""
    fd, tmp = tempfile.mkstemp(dir=index.parent, prefix=index.stem + ".", suffix=".so.tmp")
    os.close(fd)
    try:
        proc = _run([cc, *flags, str(SOURCE), "-o", tmp, "-lm"])
        if proc.returncode != 0:
            raise BuildError(f"{cc} {' '.join(flags)} failed: {proc.stderr.strip()[-2000:]}")
        digest = _digest(Path(tmp).read_bytes())
        path = index.with_name(f"{index.stem}_{digest[:16]}.so")
        os.replace(tmp, path)
        _write_atomic(index, f"{path.name} {digest}\n".encode())
    finally:
        Path(tmp).unlink(missing_ok=True)
    loaded = _load_verified(index)
    if loaded is None:  # another process replaced the index meanwhile: load our own file
        try:
            loaded = ctypes.CDLL(str(path)), path
        except OSError as exc:  # e.g. an OpenMP runtime that lacks a symbol: try other flags
            raise BuildError(f"{path.name} was built with {' '.join(flags)} but does not load: {exc}")
    return loaded


def _flag_sets(extra: Sequence[str]) -> list[tuple[str, ...]]:
    """Flag sets to try, best first: all optional flags, without OpenMP, without -march, neither."""
    sets = []
    for drop in ((), ("-fopenmp",), ("-march=native",), OPTIONAL_FLAGS):
        sets.append(BASE_FLAGS + tuple(f for f in OPTIONAL_FLAGS if f not in drop) + tuple(extra))
    return sets


def load(directory: Path | None = None, extra_flags: Sequence[str] = ()) -> Kernel:
    """Load the kernel from the cache, compiling it if needed. Raises :class:`BuildError`."""
    if sys.platform.startswith("win"):
        raise BuildError("Windows is not supported (the kernel is built with a gcc-style compiler)")
    cc = find_compiler()
    if cc is None:
        raise BuildError("no C compiler found (set $CC, or install gcc)")
    directory = Path(directory) if directory is not None else cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    source = SOURCE.read_bytes()

    candidates = _flag_sets(extra_flags)
    for flags in candidates:  # a cached build of any flag set, best first
        loaded = _load_verified(_index_path(directory, cc, flags, source))
        if loaded is not None:
            return _kernel(*loaded, flags, compiled=False, notes=[])
    notes = []
    for flags in candidates:
        try:
            loaded = _compile(cc, flags, _index_path(directory, cc, flags, source))
        except BuildError as exc:
            notes.append(str(exc))
            continue
        return _kernel(*loaded, flags, compiled=True, notes=notes)
    raise BuildError("could not compile the AdamS kernel: " + " | ".join(notes))


def _kernel(lib: ctypes.CDLL, path: Path, flags, compiled: bool, notes: list[str]) -> Kernel:
    lib.adams_step.restype = ctypes.c_int
    lib.adams_step.argtypes = [
        ctypes.c_int, ctypes.c_int64,  # dtype code, number of arrays
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,  # w, g, m tables; sizes
        ctypes.c_void_p, ctypes.c_double,  # table of step counters (or NULL); the step if NULL
        ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_double,  # lr .. wd
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64,  # bias correction, maximize, threads, chunk
    ]
    lib.adams_widen.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.adams_narrow.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.adams_f16_path.restype = ctypes.c_char_p
    lib.adams_threading.restype = ctypes.c_char_p
    return Kernel(lib, path, tuple(flags), compiled, lib.adams_threading().decode(), notes)


_lock = threading.Lock()
_state: dict = {}


def _default_kernel() -> Kernel:
    """The process-wide kernel, built once; a failure is remembered and re-raised."""
    with _lock:
        if "kernel" not in _state and "error" not in _state:
            try:
                _state["kernel"] = load()
            except Exception as exc:  # noqa: BLE001 - reported through fused_available
                _state["error"] = f"{type(exc).__name__}: {exc}"
    if "error" in _state:
        raise BuildError(_state["error"])
    return _state["kernel"]


def kernel_or_none() -> Kernel | None:
    """The process-wide kernel, or ``None`` if it cannot be built here (cheap after the first call)."""
    kernel = _state.get("kernel")
    if kernel is None and "error" not in _state:
        try:
            kernel = _default_kernel()
        except BuildError:
            return None
    return kernel


def fused_available() -> tuple[bool, str]:
    """``(True, description)`` if the compiled kernel can be used here, else ``(False, reason)``."""
    try:
        k = _default_kernel()
    except Exception as exc:  # noqa: BLE001 - this function never raises
        return False, str(exc)
    return True, f"{k.path} (built with {' '.join(k.flags)}; threads: {k.threading})"


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


def _pointers(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor]):
    """Validate the three lists; return ``(dtype, w, g, m, numel)`` with raw addresses and sizes.

    Raises :class:`Rejected` naming the first offending tensor. Two tensors that the kernel writes
    (a parameter or a momentum), or a written tensor and a gradient, must not start at the same
    address: threads would race on them.
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
    numel = list(map(Tensor.numel, params))
    if 0 in numel:  # empty tensors may share any address: they are never touched
        keep = [i for i, n in enumerate(numel) if n]
        written, read = [w[i] for i in keep] + [m[i] for i in keep], [g[i] for i in keep]
    else:
        written, read = w + m, g
    unique = set(written)
    if len(unique) != len(written) or not unique.isdisjoint(read):
        raise Rejected(_aliasing(w, g, m, numel))
    return dtype, w, g, m, numel


def _aliasing(w, g, m, numel) -> str:
    """Name the first pair of tensors that share memory (see :func:`_pointers`)."""
    written: dict[int, str] = {}
    for i, (a, b, c, n) in enumerate(zip(w, g, m, numel)):
        if not n:
            continue
        if a == b or b == c or a == c:
            return f"param {i}, grad {i} and exp_avg {i} must not share memory"
        for address, name in ((a, f"param {i}"), (c, f"exp_avg {i}")):
            if address in written:
                return f"{name} shares memory with {written[address]}, an earlier tensor of this call"
            written[address] = name
    for i, (b, n) in enumerate(zip(g, numel)):
        if n and b in written:
            return f"grad {i} shares memory with {written[b]}, which this call writes"
    return "tensors share memory"


def _step_pointers(state_steps: Sequence[Tensor], count: int) -> list[int]:
    """Addresses of the float32 step counters, one distinct 1-element CPU tensor per array."""
    if len(state_steps) != count:
        raise Rejected(f"state_steps has {len(state_steps)} counters for {count} tensors")
    try:  # a one-element tensor is contiguous whatever its strides
        ok = (set(map(type, state_steps)) <= _PLAIN and set(map(_dtype, state_steps)) <= {torch.float32}
              and all(map(_is_cpu, state_steps)) and set(map(Tensor.numel, state_steps)) <= {1})
    except (AttributeError, RuntimeError, TypeError):
        ok = False
    if not ok:
        for i, t in enumerate(state_steps):
            if not (type(t) in _PLAIN and t.dtype == torch.float32 and t.is_cpu and t.numel() == 1
                    and t.layout == torch.strided):
                what = type(t).__name__ if not isinstance(t, Tensor) else f"{t.dtype} {tuple(t.shape)} on {t.device}"
                raise Rejected(f"state_steps {i} must be a float32 CPU tensor of one element, got {what}")
    addresses = list(map(Tensor.data_ptr, state_steps))
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
            state_steps: Sequence[Tensor] | None = None) -> Prepared:
    """Check one call's arguments (see :func:`fused_adams_`); raise :class:`Rejected` if unusable."""
    if (step is None) == (state_steps is None):
        raise Rejected("give exactly one of step (an int from 1) and state_steps (counters to increment)")
    if step is not None and (isinstance(step, bool) or int(step) != step or step < 1):
        raise Rejected(f"step is counted from 1, got step={step!r}")
    dtype, w, g, m, numel = _pointers(params, grads, exp_avgs)
    steps = _step_pointers(state_steps, len(w)) if state_steps is not None else []
    return Prepared(dtype, len(w), sum(numel), array.array("q", w + g + m + numel + steps),
                    int(step or 0), [*params, *exp_avgs])


def run(kernel: Kernel, call: Prepared, *, lr: float, beta1: float, beta2: float, eps: float,
        weight_decay: float, bias_correction: bool, maximize: bool, threads: int | None = None,
        chunk: int | None = None) -> None:
    """Dispatch a :class:`Prepared` call to ``kernel``.

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
        float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
        int(bool(bias_correction)), int(bool(maximize)), int(threads), int(chunk),
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
    run(kernel, call, threads=threads, chunk=chunk, **hyper)


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
    kernel = _default_kernel()
    call = prepare(params, grads, exp_avgs, step=step, state_steps=state_steps)
    run(kernel, call, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
        bias_correction=bias_correction, maximize=maximize)
