"""The run cache: staging, a manifest of SHA-256 digests, and verification before a result is returned.

Results live in ``cache_dir/<TrainConfig.key()>/``: ``result.json``, the checkpoints, and
``manifest.json``, the SHA-256 of each of those files. A run is trained in a hidden staging
directory next to it and renamed into place once the manifest is written, so an interrupted run
leaves no directory that looks like a cached one. Before a cached run is returned its files are
checked against the manifest and ``result.json`` against the schema of :class:`TrainResult` and the
configuration asked for. **A damaged cached run (no manifest, unreadable JSON, a missing file, a
digest that differs) is trained again, with a** :class:`CachedRunWarning` **that names the file and
what was wrong**; a run cached before the manifest existed is retrained this way too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence


from analysis.report import atomic_write_text, is_fresh
from analysis.training.config import (EVAL_KEYS, HISTORY_KEYS, MANIFEST_FILE, MANIFEST_FORMAT, NOISE_TRACK_KEYS,
                                      RESULT_FILE, TRACK_KEYS, TrainConfig, TrainResult, config_record)


# ---------------------------------------------------------------------------------------------
# the cache: staging, manifest, verification


class CachedRunWarning(RuntimeWarning):
    """A cached training run was damaged (or had no manifest) and is trained again."""


class DamagedRun(Exception):
    """What is wrong with a cached run; :func:`cached_run` turns it into a warning."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()  # a run's files are a few megabytes


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


@contextlib.contextmanager
def staging_dir(cache: Path, key: str) -> Iterator[Path]:
    """A hidden directory in ``cache`` to write a run into; on any error it is removed, together
    with the directories made for it."""
    made = _missing_dirs(cache)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=cache))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for path in made:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if still empty
        raise


def write_run(staging: Path, result: TrainResult) -> None:
    """``result.json``, then the manifest of digests of it and of every checkpoint, written last."""
    atomic_write_text(staging / RESULT_FILE, json.dumps(result.to_dict(), default=float) + "\n")
    names = [RESULT_FILE] + [Path(c).name for c in result.checkpoints]
    manifest = {"format": MANIFEST_FORMAT, "files": {name: _sha256(staging / name) for name in names}}
    atomic_write_text(staging / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")


def publish(staging: Path, run_dir: Path, attempts: int = 5) -> None:
    """Rename the finished run to ``run_dir``, moving any previous run there aside and deleting it."""
    for _ in range(attempts):
        if run_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.old-", dir=run_dir.parent))
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                run_dir.rename(old / "run")
            shutil.rmtree(old, ignore_errors=True)
        try:
            staging.rename(run_dir)
            return
        except OSError:  # another process published the same run in between: try again
            if not run_dir.exists():
                raise
    raise OSError(f"could not move the finished run {staging} to {run_dir}")


def cached_run(config: TrainConfig, run_dir: Path) -> TrainResult | None:
    """The verified cached result of ``config``, or None: not cached, asked to be recomputed
    (``ADAMS_RECOMPUTE``), or damaged (with a :class:`CachedRunWarning` that says why)."""
    if not run_dir.exists():
        return None
    written = run_dir / MANIFEST_FILE if (run_dir / MANIFEST_FILE).exists() else run_dir / RESULT_FILE
    if written.exists() and not is_fresh(written):
        return None
    try:
        return read_verified(config, run_dir)
    except DamagedRun as err:
        warnings.warn(f"cached training run {run_dir} is damaged: {err}; training it again", CachedRunWarning,
                      stacklevel=3)
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DamagedRun(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DamagedRun(f"{path.name} is not readable JSON ({type(err).__name__}: {str(err)[:200]})") from None


def _read_manifest(run_dir: Path) -> dict[str, str]:
    """The manifest's file digests, checked for form: plain file names, hexadecimal SHA-256s."""
    if not (run_dir / MANIFEST_FILE).exists():
        raise DamagedRun(f"{MANIFEST_FILE} is missing (the run is incomplete or was cached before digests "
                          f"were kept)")
    manifest = _read_json(run_dir / MANIFEST_FILE)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and isinstance(files, dict)
            and RESULT_FILE in files):
        raise DamagedRun(f"{MANIFEST_FILE} is not a {MANIFEST_FORMAT} manifest listing {RESULT_FILE}")
    for name, digest in files.items():
        if Path(name).name != name or name in (".", "..", MANIFEST_FILE):
            raise DamagedRun(f"{MANIFEST_FILE} lists {name!r}, which is not a file of the run")
        if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= set("0123456789abcdef")):
            raise DamagedRun(f"{MANIFEST_FILE} gives {name} the digest {digest!r}, not a SHA-256")
    return files


def _check_digests(run_dir: Path, files: dict[str, str]) -> None:
    for name, expected in files.items():
        path = run_dir / name
        if not path.is_file():
            raise DamagedRun(f"{name} is missing")
        actual = _sha256(path)
        if actual != expected:
            raise DamagedRun(f"{name} has SHA-256 {actual}, the manifest recorded {expected}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_table(d: dict, name: str, keys: Sequence[str]) -> None:
    """A dict of equally long lists of numbers under exactly ``keys``; its ``step`` column ints."""
    if not (isinstance(d.get(name), dict) and set(d[name]) == set(keys)):
        raise DamagedRun(f"{RESULT_FILE}: {name} must be a dict with the keys {', '.join(keys)}")
    columns = d[name]
    if not all(isinstance(v, list) and all(_is_number(x) for x in v) for v in columns.values()):
        raise DamagedRun(f"{RESULT_FILE}: every {name} column must be a list of numbers")
    if len({len(v) for v in columns.values()}) != 1 or not all(isinstance(s, int) for s in columns["step"]):
        raise DamagedRun(f"{RESULT_FILE}: {name} columns differ in length or its steps are not ints")


def _check_result(d: Any, config: TrainConfig, checkpoint_names: set[str]) -> None:
    """``result.json`` has the fields of :class:`TrainResult` with their types, records ``config``,
    and lists exactly the checkpoints of the manifest."""
    fields = {f.name for f in dataclasses.fields(TrainResult)}
    if isinstance(d, dict) and "track" not in d and config.track_every == 0:
        fields.discard("track")  # an untracked run's record has no track (as before tracking existed)
    if not isinstance(d, dict) or set(d) != fields:
        got = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise DamagedRun(f"{RESULT_FILE} must hold the fields {', '.join(sorted(fields))}, got {got}")
    if d["config"] != config_record(config):
        raise DamagedRun(f"{RESULT_FILE} records another configuration than the one asked for")
    _check_table(d, "history", HISTORY_KEYS)
    _check_table(d, "evals", EVAL_KEYS)
    if "track" in d:
        _check_table(d, "track", TRACK_KEYS + (NOISE_TRACK_KEYS if config.track_split > 1 else ()))
    for name in ("final_val_loss", "tokens_per_s", "seconds"):
        if not _is_number(d[name]):
            raise DamagedRun(f"{RESULT_FILE}: {name} must be a number, got {d[name]!r}")
    for name in ("state_bytes", "param_bytes", "n_params"):
        if not (isinstance(d[name], int) and not isinstance(d[name], bool) and d[name] >= 0):
            raise DamagedRun(f"{RESULT_FILE}: {name} must be a non-negative int, got {d[name]!r}")
    if not isinstance(d["diverged"], bool) or not (d["diverged_at"] is None or type(d["diverged_at"]) is int):
        raise DamagedRun(f"{RESULT_FILE}: diverged must be a bool and diverged_at an int or null")
    checkpoints = d["checkpoints"]
    if not (isinstance(checkpoints, list) and all(isinstance(c, str) for c in checkpoints)):
        raise DamagedRun(f"{RESULT_FILE}: checkpoints must be a list of paths")
    names = [Path(c).name for c in checkpoints]
    if len(set(names)) != len(names) or set(names) != checkpoint_names:
        raise DamagedRun(f"{RESULT_FILE} lists the checkpoints {names}, the manifest {sorted(checkpoint_names)}")


def read_verified(config: TrainConfig, run_dir: Path) -> TrainResult:
    """The cached result after every check; checkpoint paths point into ``run_dir``."""
    files = _read_manifest(run_dir)
    _check_digests(run_dir, files)
    d = _read_json(run_dir / RESULT_FILE)
    _check_result(d, config, set(files) - {RESULT_FILE})
    d["checkpoints"] = [str(run_dir / Path(c).name) for c in d["checkpoints"]]
    return TrainResult(**d)
