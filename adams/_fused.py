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
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["fused_available", "fused_adams_"]

SOURCE = Path(__file__).with_name("_kernel.c")
ABI_VERSION = 1  # must equal ADAMS_ABI_VERSION in _kernel.c
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
        ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_double,
        ctypes.c_double, ctypes.c_int, ctypes.c_int, ctypes.c_int64,
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


def fused_available() -> tuple[bool, str]:
    """``(True, description)`` if the compiled kernel can be used here, else ``(False, reason)``."""
    try:
        k = _default_kernel()
    except Exception as exc:  # noqa: BLE001 - this function never raises
        return False, str(exc)
    return True, f"{k.path} (built with {' '.join(k.flags)}; threads: {k.threading})"


NAMES = ("param", "grad", "exp_avg")


def _problem(t, dtype: torch.dtype) -> str:
    """Why tensor ``t`` cannot be passed to the kernel in a call whose dtype is ``dtype``."""
    if not isinstance(t, Tensor):
        return f"is a {type(t).__name__}, not a tensor"
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
    return "is a lazily negated view (torch._neg_view); materialize it first"


def _pointers(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor]):
    """Validate the three lists; return ``(dtype, w, g, m, numel)`` with raw addresses and sizes.

    The checks run on every step, so the common case is one chained condition per parameter;
    :func:`_problem` works out what failed only when something did.
    """
    if not (len(params) == len(grads) == len(exp_avgs)):
        raise ValueError(
            f"params, grads and exp_avgs must have the same length, got {len(params)}, "
            f"{len(grads)}, {len(exp_avgs)}"
        )
    dtype = getattr(params[0], "dtype", None) if len(params) else None
    if dtype is not None and dtype not in DTYPE_CODES:
        raise ValueError(f"param 0 {_problem(params[0], dtype)}")
    w, g, m, numel, written = [], [], [], [], set()
    strided = torch.strided
    for i in range(len(params)):
        p, gi, mi = params[i], grads[i], exp_avgs[i]
        try:
            ok = (p.dtype is dtype and gi.dtype is dtype and mi.dtype is dtype
                  and p.layout is strided and gi.layout is strided and mi.layout is strided
                  and p.is_cpu and gi.is_cpu and mi.is_cpu
                  and p.is_contiguous() and gi.is_contiguous() and mi.is_contiguous()
                  and not (p.is_neg() or gi.is_neg() or mi.is_neg())
                  and gi.shape == p.shape and mi.shape == p.shape)
        except (AttributeError, RuntimeError, TypeError):
            ok = False
        if not ok:
            for name, t in zip(NAMES, (p, gi, mi)):
                if not isinstance(t, Tensor) or t.dtype != dtype or t.layout != strided or not t.is_cpu \
                        or not t.is_contiguous() or t.is_neg():
                    raise ValueError(f"{name} {i} {_problem(t, dtype)}")
            bad = "grad" if gi.shape != p.shape else "exp_avg"
            shape = tuple((gi if bad == "grad" else mi).shape)
            raise ValueError(f"{bad} {i} has shape {shape} but param {i} has shape {tuple(p.shape)}")
        a, b, c, n = p.data_ptr(), gi.data_ptr(), mi.data_ptr(), p.numel()
        if n:
            if a == b or b == c or a == c:
                raise ValueError(f"param {i}, grad {i} and exp_avg {i} must not share memory")
            if a in written or c in written:
                raise ValueError(f"param {i} or exp_avg {i} shares memory with an earlier tensor of this call")
            written.add(a)
            written.add(c)
        w.append(a), g.append(b), m.append(c), numel.append(n)
    return dtype, w, g, m, numel


def chunk_size(total: int, threads: int) -> int:
    """One contiguous chunk per thread, rounded up to a multiple of 64 elements (so that, for
    aligned tensors, two threads never write to the same cache line)."""
    per_thread = -(-total // max(threads, 1))  # ceil(total / threads)
    return -(-per_thread // 64) * 64


def step_(
    kernel: Kernel, params, grads, exp_avgs, *, step: int, lr: float, beta1: float, beta2: float,
    eps: float, weight_decay: float, bias_correction: bool, maximize: bool,
    threads: int | None = None, chunk: int | None = None,
) -> None:
    """:func:`fused_adams_` with an explicit kernel, and optionally thread count and chunk size.

    ``threads=None`` takes ``torch.get_num_threads()`` threads but none with fewer than
    :data:`GRAIN` elements; a number is used as given. ``chunk=None`` gives each thread one chunk
    (:func:`chunk_size`). Any choice gives the same bits (the tests check it).
    """
    dtype, w, g, m, numel = _pointers(params, grads, exp_avgs)
    if isinstance(step, bool) or int(step) != step or step < 1:
        raise ValueError(f"step is counted from 1, got step={step!r}")
    if dtype is None:  # no tensors
        return
    c = 1.0 - beta1 ** int(step) if bias_correction else 1.0  # c_t = 1 - beta1^t
    if c == 0.0:
        raise ValueError(f"bias correction 1 - beta1**step is 0 (beta1={beta1}, step={step})")
    n, total = len(w), sum(numel)
    if threads is None:
        threads = max(1, min(torch.get_num_threads(), total // GRAIN[kernel.threading]))
    if chunk is None:
        chunk = chunk_size(total, threads)
    table = array.array("q", w + g + m + numel)  # one buffer: the addresses, then the sizes
    base, row = table.buffer_info()[0], 8 * n
    status = kernel.lib.adams_step(
        DTYPE_CODES[dtype], n, base, base + row, base + 2 * row, base + 3 * row,
        float(lr), float(beta1), float(beta2), float(eps), float(weight_decay), 1.0 / c,
        int(bool(maximize)), int(threads), int(chunk),
    )
    if status != 0:
        raise RuntimeError(f"adams_step returned {status}")
    # the memory was written behind autograd's back: record the in-place change
    torch.autograd.graph.increment_version(list(params) + list(exp_avgs))


def fused_adams_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    *,
    step: int,
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
    ``step`` is :math:`t`, counted from 1; ``exp_avgs`` hold :math:`m_{t-1}` on entry and
    :math:`m_t` on return. Raises :class:`BuildError` if the kernel cannot be built.
    """
    step_(
        _default_kernel(), params, grads, exp_avgs, step=step, lr=lr, beta1=beta1, beta2=beta2,
        eps=eps, weight_decay=weight_decay, bias_correction=bias_correction, maximize=maximize,
    )
