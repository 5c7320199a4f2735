"""What a run of the notebooks is: quick or full, where its outputs and caches go, what is fresh.

* ``ADAMS_QUICK=1`` asks for the small version (seconds, what CI runs): :func:`quick_mode`.
* ``ADAMS_FIGURES_DIR`` redirects every output (default ``<repo>/figures``): :func:`output_dir`.
* ``ADAMS_CACHE`` moves the cache of training runs and measurements (default ``<repo>/runs/train``):
  :func:`cache_root`; :func:`cached` keeps a measurement that varies between runs (a timing), so a
  rerun changes no number; ``ADAMS_RECOMPUTE=1`` (``python -m analysis.figures --recompute``)
  computes every cached result again, once per run (:func:`is_fresh`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from analysis.report.files import atomic_write_text, check_name

__all__ = ["REPO_ROOT", "STARTED", "STARTED_WALL", "quick_mode", "recompute_since", "is_fresh", "cache_root", "cached", "output_dir",
           "command_for"]

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

def _process_age() -> float:
    """Seconds since this process started (Linux); 0 where /proc is unavailable."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


STARTED = time.perf_counter() - _process_age()  # runtime_s counts from the interpreter's start
STARTED_WALL = time.time() - _process_age()  # wall-clock start, for cache freshness


def quick_mode() -> bool:
    """True when ``ADAMS_QUICK`` is set to ``1`` (or ``true``/``yes``): run the small version."""
    return os.environ.get("ADAMS_QUICK", "").strip().lower() in {"1", "true", "yes"}


def recompute_since() -> float | None:
    """Cached results written before this time are stale (None: every cached result is good).

    ``ADAMS_RECOMPUTE=1`` asks for fresh results; ``python -m analysis.figures --recompute`` sets
    ``ADAMS_RECOMPUTE_SINCE`` to its start, so that one run of every notebook recomputes each cached
    result once and notebooks later in the run reuse what earlier ones just computed.
    """
    since = os.environ.get("ADAMS_RECOMPUTE_SINCE", "").strip()
    if since:
        return float(since)
    if os.environ.get("ADAMS_RECOMPUTE", "").strip().lower() in {"1", "true", "yes"}:
        os.environ["ADAMS_RECOMPUTE_SINCE"] = repr(STARTED_WALL)  # child processes agree on it
        return STARTED_WALL
    return None


def is_fresh(path: str | os.PathLike) -> bool:
    """True if the cached result at ``path`` exists and was not asked to be recomputed."""
    path = Path(path)
    if not path.exists():
        return False
    since = recompute_since()
    return since is None or path.stat().st_mtime >= since


def cache_root() -> Path:
    """Where cached intermediate results live: ``$ADAMS_CACHE`` or ``<repo>/runs/train``."""
    return Path(os.environ.get("ADAMS_CACHE") or REPO_ROOT / "runs" / "train")


def cached_path(name: str, key: dict) -> Path:
    """Where :func:`cached` stores the result for ``name`` and ``key`` (whether or not it is there yet)."""
    check_name(name)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_root() / "measurements" / f"{name}-{digest}.json"


def cached(name: str, key: dict, compute) -> Any:
    """``compute()``, or its stored result for this ``key`` (a JSON-able dict saying what was measured).

    The result is stored as JSON (``cache_root()/measurements/<name>-<hash of key>.json``) and is
    always returned as read back from it, so the first run and every rerun use the same numbers. For
    measurements that vary from run to run (timings), this is what lets ``make figures`` be rerun
    without changing a number; ``ADAMS_RECOMPUTE=1`` measures again.
    """
    path = cached_path(name, key)
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
