"""Compile ``_kernel.c`` on first use, cache the shared object, and load it through ctypes.

Build. The system C compiler (``$CC``, else ``gcc``, else ``cc``) compiles ``_kernel.c`` with
``-O3 -fno-math-errno -ffp-contract=off -march=native -fopenmp``: every operation is rounded as
IEEE prescribes (no ``-ffast-math``, no fused multiply-add contraction), so the result does not
depend on the vector width or on how the elements are split between threads. If the build fails
(or does not load) with OpenMP, then with ``-march=native``, it is retried without them.

Cache. The shared object is cached in ``$ADAMS_KERNEL_CACHE`` (default
``~/.cache/adams-lab/kernels``, created with mode 700; a directory that another user owns or can
write is refused, and so is a cached file of that kind, since loading a shared object runs its
code) under a hash of the source, the flags, the compiler's version and
the target it resolves ``-march=native`` to. It is compiled to a temporary file, moved with
:func:`os.replace` to a name that contains its SHA-256, and a small index file (replaced the same
way) records that name and digest: a reader never sees a half-written file, two processes
building at once each load a complete one, and a damaged file is rebuilt.

:func:`kernel_or_none` and :func:`fused_available` give the process-wide kernel (built once; a
failure is remembered); :func:`load` builds one into a given directory (the tests use it for
variant builds). The calling side is :mod:`adams._fused`.
"""
from __future__ import annotations

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

__all__ = ["BuildError", "Kernel", "default_kernel", "fused_available", "kernel_or_none", "load"]

SOURCE = Path(__file__).with_name("_kernel.c")
ABI_VERSION = 2  # must equal ADAMS_ABI_VERSION in _kernel.c
BASE_FLAGS = ("-O3", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared", "-pthread")
OPTIONAL_FLAGS = ("-march=native", "-fopenmp")  # dropped if the build fails with them


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


def _unsafe(path: Path) -> str | None:
    """Why another user could change what ``path`` holds (so it must not be loaded), or None."""
    if os.name != "posix":
        return None
    st = path.stat()
    if st.st_uid != os.getuid():
        return f"{path} belongs to user id {st.st_uid}, not to this user ({os.getuid()})"
    if st.st_mode & 0o022:
        return f"{path} can be written by other users (mode {st.st_mode & 0o777:o})"
    return None


def _private_directory(directory: Path) -> None:
    """Create the cache directory for this user alone (mode 700), or check that an existing one is
    safe: a shared library loaded from a directory another user can write runs that user's code."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = _unsafe(directory)
    if problem:
        raise BuildError(f"refusing the kernel cache {directory}: {problem}. Set $ADAMS_KERNEL_CACHE to a "
                         "directory of your own, or remove the write permission of others (chmod go-w)")


def _load_verified(index: Path) -> tuple[ctypes.CDLL, Path] | None:
    """Load the build an index file names, if its SHA-256 matches and it reports our ABI version.

    A build file is named after its own digest and never rewritten, and the index is replaced
    atomically, so a reader always sees a matching pair unless a file was damaged. Files that
    another user owns or can write are not loaded (they are rebuilt).
    """
    try:
        if _unsafe(index):
            return None
        name, recorded = index.read_text().split()
        path = index.with_name(name)
        if _unsafe(path) or recorded != _digest(path.read_bytes()):
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
    _private_directory(directory)
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


def default_kernel() -> Kernel:
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
            kernel = default_kernel()
        except BuildError:
            return None
    return kernel


def fused_available() -> tuple[bool, str]:
    """``(True, description)`` if the compiled kernel can be used here, else ``(False, reason)``."""
    try:
        k = default_kernel()
    except Exception as exc:  # noqa: BLE001 - this function never raises
        return False, str(exc)
    return True, f"{k.path} (built with {' '.join(k.flags)}; threads: {k.threading})"
