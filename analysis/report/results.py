"""What a notebook calls to save its outputs: figures, the numbers behind them, and its claims.

A notebook ends with::

    save_figure(fig, "adams_from_scratch")              # figures/adams_from_scratch.{png,pdf}
    save_results("adams_from_scratch", numbers, claims)  # figures/adams_from_scratch.json

The JSON is written so that a rerun with the same seeds gives the same bytes, apart from the
``runtime_s`` and ``hardware`` fields: keys are sorted, floats are rounded to
:data:`FLOAT_DIGITS` significant digits, and nothing else depends on the clock.
:mod:`analysis.report.repro` turns the claims of every JSON into ``paper_repro.md``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from analysis.report.claims import validate_claim
from analysis.report.files import atomic_target, atomic_write_text, check_name
from analysis.timing.machine import hardware
from analysis.report.runs import STARTED, output_dir, quick_mode, recompute_since

__all__ = ["RESULTS_SCHEMA", "FLOAT_DIGITS", "FIGURE_DPI", "to_json", "save_figure", "save_results"]

RESULTS_SCHEMA = "adams-lab/results/1"  # marks a JSON as written by save_results
FLOAT_DIGITS = 10  # significant digits kept for every float in the JSON
FIGURE_DPI = 200  # sharp on a projected slide, small enough for a repository

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


def save_figure(fig, name: str) -> list[Path]:
    """Save a matplotlib figure as ``<name>.png`` (200 dpi) and ``<name>.pdf`` in :func:`output_dir`.

    Metadata that carries the date or software version is dropped so that reruns give equal files.
    Returns the two paths.
    """
    check_name(name)
    out = output_dir()
    written = []
    for fmt, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        path = out / f"{name}.{fmt}"
        with atomic_target(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=FIGURE_DPI, bbox_inches="tight", metadata=metadata)
        written.append(path)
    return written


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
    check_name(notebook_name)
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
        runtime_s = time.perf_counter() - STARTED
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
    if previous is not None and recompute_since() is None and _same_result(previous, document):
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
