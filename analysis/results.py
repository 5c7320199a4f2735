"""What a notebook calls to save its outputs: figures, the numbers behind them, and its claims.

A notebook ends with::

    save_figure(fig, "adams_from_scratch")              # figures/adams_from_scratch.{png,pdf}
    save_results("adams_from_scratch", numbers, claims)  # figures/adams_from_scratch.json

The environment decides where and how big:

* ``ADAMS_QUICK=1`` asks for the small version (seconds, what CI runs); see :func:`quick_mode`.
* ``ADAMS_FIGURES_DIR`` redirects every output (default ``<repo>/figures``); see :func:`output_dir`.

The JSON is written so that a rerun with the same seeds gives the same bytes, apart from the
``runtime_s`` and ``hardware`` fields: keys are sorted, floats are rounded to
:data:`FLOAT_DIGITS` significant digits, and nothing else depends on the clock. Every file is
written atomically (a temporary file in the same directory, then :func:`os.replace`), so a crash
leaves either the old file or the new one.

A claim is a dict with exactly the fields of :data:`CLAIM_FIELDS`; :func:`validate_claim` says
which field is missing or bad. ``analysis.repro`` turns the claims of every JSON into
``paper_repro.md``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "CLAIM_FIELDS",
    "FLOAT_DIGITS",
    "RESULTS_SCHEMA",
    "VERDICTS",
    "atomic_write_bytes",
    "cache_root",
    "cached",
    "is_fresh",
    "atomic_write_text",
    "write_report",
    "command_for",
    "format_pm",
    "hardware",
    "output_dir",
    "quick_mode",
    "save_figure",
    "save_results",
    "to_json",
    "validate_claim",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_SCHEMA = "adams-lab/results/1"  # marks a JSON as written by save_results
FLOAT_DIGITS = 10  # significant digits kept for every float in the JSON
FIGURE_DPI = 200  # sharp on a projected slide, small enough for a repository

VERDICTS = ("holds", "holds at our scale", "does not hold", "not testable here")
CLAIM_FIELDS = {
    "id": str,  # stable slug, unique across all notebooks
    "order": int,  # sort key in paper_repro.md
    "claim": str,  # the paper's statement, in our words
    "paper_value": str,  # what the paper says or reports
    "measured": str,  # our number, with its spread
    "command": str,  # the command that reproduces it
    "verdict": str,  # one of VERDICTS
    "note": str,  # why, and the caveats
}
_EMPTY_ALLOWED = {"note"}
_SLUG = re.compile(r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _process_age() -> float:
    """Seconds since this process started (Linux); 0 where /proc is unavailable."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


_STARTED = time.perf_counter() - _process_age()  # runtime_s counts from the interpreter's start
_STARTED_WALL = time.time() - _process_age()  # wall-clock start, for cache freshness


def quick_mode() -> bool:
    """True when ``ADAMS_QUICK`` is set to ``1`` (or ``true``/``yes``): run the small version."""
    return os.environ.get("ADAMS_QUICK", "").strip().lower() in {"1", "true", "yes"}


def _recompute_since() -> float | None:
    """Cached results written before this time are stale (None: every cached result is good).

    ``ADAMS_RECOMPUTE=1`` asks for fresh results; ``python -m analysis.figures --recompute`` sets
    ``ADAMS_RECOMPUTE_SINCE`` to its start, so that one run of every notebook recomputes each cached
    result once and notebooks later in the run reuse what earlier ones just computed.
    """
    since = os.environ.get("ADAMS_RECOMPUTE_SINCE", "").strip()
    if since:
        return float(since)
    if os.environ.get("ADAMS_RECOMPUTE", "").strip().lower() in {"1", "true", "yes"}:
        os.environ["ADAMS_RECOMPUTE_SINCE"] = repr(_STARTED_WALL)  # child processes agree on it
        return _STARTED_WALL
    return None


def is_fresh(path: str | os.PathLike) -> bool:
    """True if the cached result at ``path`` exists and was not asked to be recomputed."""
    path = Path(path)
    if not path.exists():
        return False
    since = _recompute_since()
    return since is None or path.stat().st_mtime >= since


def cache_root() -> Path:
    """Where cached intermediate results live: ``$ADAMS_CACHE`` or ``<repo>/runs/train``."""
    return Path(os.environ.get("ADAMS_CACHE") or REPO_ROOT / "runs" / "train")


def cached(name: str, key: dict, compute) -> Any:
    """``compute()``, or its stored result for this ``key`` (a JSON-able dict saying what was measured).

    The result is stored as JSON (``cache_root()/measurements/<name>-<hash of key>.json``) and is
    always returned as read back from it, so the first run and every rerun use the same numbers. For
    measurements that vary from run to run (timings), this is what lets ``make figures`` be rerun
    without changing a number; ``ADAMS_RECOMPUTE=1`` measures again.
    """
    _check_name(name)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_root() / "measurements" / f"{name}-{digest}.json"
    if not is_fresh(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"key": key, "result": compute()}
        atomic_write_text(path, json.dumps(payload, default=_json_default, allow_nan=True) + "\n")
    return json.loads(path.read_text(encoding="utf-8"))["result"]


def _json_default(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in a cached result")


def output_dir() -> Path:
    """Directory for figures and JSON: ``$ADAMS_FIGURES_DIR`` or ``<repo>/figures``; created if missing."""
    path = Path(os.environ.get("ADAMS_FIGURES_DIR") or REPO_ROOT / "figures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def command_for(notebook_name: str) -> str:
    """The command that reruns one notebook through the driver."""
    return f"python -m analysis.figures {notebook_name}"


# ---------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success give it ``path``'s name with os.replace.

    The new file gets the old file's permissions, or the usual ones for a new file (0666 minus the
    umask), not mkstemp's private 0600. On any error the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and os.replace."""
    path = Path(path)
    with _atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8, ``\\n`` line endings)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_report(path: str | os.PathLike, result: Any) -> Path:
    """A benchmark's JSON report: parent directories created, written atomically, path printed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return path


# ---------------------------------------------------------------------------------------------
# figures


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith((".png", ".pdf", ".json")):
        raise ValueError(
            f"output name must be a plain file stem such as 'adams_from_scratch', got {name!r}"
        )
    return name


def save_figure(fig, name: str) -> list[Path]:
    """Save a matplotlib figure as ``<name>.png`` (200 dpi) and ``<name>.pdf`` in :func:`output_dir`.

    Metadata that carries the date or software version is dropped so that reruns give equal files.
    Returns the two paths.
    """
    _check_name(name)
    out = output_dir()
    written = []
    for fmt, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        path = out / f"{name}.{fmt}"
        with _atomic_target(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=FIGURE_DPI, bbox_inches="tight", metadata=metadata)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# claims and numbers


def validate_claim(claim: Any, where: str = "claim") -> dict:
    """Check one claim dict and return it; raise ``ValueError`` naming the missing or bad field."""
    if not isinstance(claim, dict):
        raise ValueError(f"{where}: a claim must be a dict, got {type(claim).__name__}")
    label = f"{where} {claim.get('id')!r}" if isinstance(claim.get("id"), str) else where
    missing = [k for k in CLAIM_FIELDS if k not in claim]
    if missing:
        raise ValueError(f"{label}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(claim) - set(CLAIM_FIELDS))
    if unknown:
        raise ValueError(
            f"{label}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(CLAIM_FIELDS)}"
        )
    for key, kind in CLAIM_FIELDS.items():
        value = claim[key]
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{label}: field 'order' must be an int, got {value!r}")
        elif not isinstance(value, str):
            raise ValueError(f"{label}: field {key!r} must be a str, got {type(value).__name__}")
        elif not value.strip() and key not in _EMPTY_ALLOWED:
            raise ValueError(f"{label}: field {key!r} is empty")
    if not _SLUG.match(claim["id"]):
        raise ValueError(
            f"{label}: field 'id' must be a lowercase slug like 'state-memory-half', got {claim['id']!r}"
        )
    if claim["verdict"] not in VERDICTS:
        raise ValueError(
            f"{label}: field 'verdict' is {claim['verdict']!r}; use one of {', '.join(map(repr, VERDICTS))}"
        )
    return claim


def to_json(value: Any, path: str = "numbers") -> Any:
    """Convert ``value`` to plain JSON types with floats rounded to :data:`FLOAT_DIGITS` digits.

    NumPy and torch scalars and arrays become numbers and lists; tuples become lists; non-finite
    floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no such numbers).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return float(f"{value:.{FLOAT_DIGITS}g}")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"{path}: keys must be str or int, got {k!r}")
            out[str(k)] = to_json(v, f"{path}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_json(value.tolist(), path)
    if hasattr(value, "item"):
        return to_json(value.item(), path)
    raise TypeError(f"{path}: cannot store {type(value).__name__} in JSON")


def format_pm(value: float, se: float, digits: int = 2) -> str:
    """``value +- se`` with the standard error to ``digits`` significant digits and the value to match.

    >>> format_pm(0.99991234, 0.0000412), format_pm(3.2, 0.0213), format_pm(12.0, 0.0)
    ('0.999912 +- 0.000041', '3.200 +- 0.021', '12 +- 0')
    """
    if not (math.isfinite(value) and math.isfinite(se)) or se < 0:
        raise ValueError(f"cannot format {value} +- {se}")
    if se == 0:
        return f"{value:g} +- 0"
    decimals = max(0, digits - 1 - math.floor(math.log10(se)))
    return f"{value:.{decimals}f} +- {se:.{decimals}f}"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware() -> dict:
    """The machine a result came from: CPU model, usable cores, torch and Python versions."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    try:
        import torch

        torch_version = torch.__version__
        threads = torch.get_num_threads()
    except ImportError:
        torch_version, threads = "not installed", 0
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "torch": torch_version,
        "torch_threads": threads,
        "python": platform.python_version(),
    }


def save_results(
    notebook_name: str,
    numbers: dict,
    claims: list[dict],
    *,
    runtime_s: float | None = None,
    cached_s: float | None = None,
) -> Path:
    """Write ``<notebook_name>.json`` to :func:`output_dir`, atomically and deterministically.

    ``numbers`` holds whatever is behind the figures (arrays are fine); ``claims`` is a list of
    claim dicts (see :data:`CLAIM_FIELDS`). ``runtime_s`` defaults to the time since the
    interpreter started (since this module was imported where ``/proc`` is unavailable).
    ``cached_s`` is the compute time of cached intermediate results the numbers rest on (training
    runs read from the cache, say), so that a fast rerun does not hide what the result cost.

    The run time and hardware recorded are those of the run that produced the numbers: if the file
    already holds the same numbers and claims from a run in the same mode on the same kind of
    machine, its run time, cached time and hardware are kept, so a rerun with the same seeds leaves
    the file, and ``paper_repro.md``, byte for byte as they were. A run asked to recompute
    (``ADAMS_RECOMPUTE=1``, ``--recompute``) measures everything again, its run time included.
    """
    _check_name(notebook_name)
    if not isinstance(numbers, dict):
        raise TypeError(f"numbers must be a dict, got {type(numbers).__name__}")
    if not isinstance(claims, (list, tuple)):
        raise TypeError(f"claims must be a list of dicts, got {type(claims).__name__}")
    seen: set[str] = set()
    for i, claim in enumerate(claims):
        validate_claim(claim, where=f"{notebook_name}: claim #{i}")
        if claim["id"] in seen:
            raise ValueError(f"{notebook_name}: claim id {claim['id']!r} appears twice")
        seen.add(claim["id"])
    if runtime_s is None:
        runtime_s = time.perf_counter() - _STARTED
    document = {
        "schema": RESULTS_SCHEMA,
        "notebook": notebook_name,
        "quick": quick_mode(),
        "numbers": to_json(numbers),
        "claims": to_json(sorted((dict(c) for c in claims), key=lambda c: (c["order"], c["id"]))),
        "hardware": hardware(),
        "runtime_s": round(float(runtime_s), 2),
    }
    if cached_s is not None:
        document["cached_s"] = round(float(cached_s), 1)
    path = output_dir() / f"{notebook_name}.json"
    previous = _previous(path)
    if previous is not None and _recompute_since() is None and _same_result(previous, document):
        for key in ("runtime_s", "cached_s", "hardware"):
            document.pop(key, None)
            if key in previous:
                document[key] = previous[key]
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def _previous(path: Path) -> dict | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("schema") == RESULTS_SCHEMA else None


def _same_result(previous: dict, document: dict) -> bool:
    """The same numbers and claims, in the same mode, on the same kind of machine."""
    same_machine = all((previous.get("hardware") or {}).get(k) == document["hardware"].get(k)
                       for k in ("cpu", "cores", "torch"))
    return same_machine and all(previous.get(k) == document[k] for k in ("notebook", "quick", "numbers", "claims"))
