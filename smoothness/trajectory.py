"""Probe a whole trajectory of checkpoints into one table, resumably and atomically.

:func:`probe_trajectory` loads each checkpoint (:func:`smoothness.checkpoints.load_checkpoint`, so
``weights_only=True`` and every check there), pairs it with the next one for the step
finite difference and the directional curvature, runs :func:`smoothness.probes.probe_point`, and
returns a ``pandas.DataFrame`` with one row per (checkpoint, block). The settings that define the
objective and the probes (mode, dtype, seed, batches, gammas, tolerance) are columns of every row.

Checkpoints are probed in the order of their stored training steps, or, where some store none, of
the numbers in their paths (:func:`trajectory_order`). Every checkpoint is validated before the
first probe; then they are streamed, read again one at a time as they are probed, so that at
most two (a checkpoint and the next) are held in memory. With ``out=`` the table is rewritten atomically after every checkpoint (a
temporary file, then :func:`os.replace`), so a crash leaves the previous complete file; a rerun with
the same settings skips the (checkpoint, next checkpoint) pairs the file already has.

Each row identifies its checkpoint and the next one by file, not by the path as typed: the resolved
absolute path, the size in bytes and the modification time in nanoseconds (columns
``checkpoint_resolved``, ``checkpoint_size``, ``checkpoint_mtime_ns`` and the same with
``next_checkpoint_``). A rerun through a relative path, an absolute one or a symlink recognises a
checkpoint it has probed; a file that changed on disk since is refused, never taken as done.

One process writes a table at a time: ``out`` is guarded by a lock file ``<out>.lock``, created
atomically and holding the writer's pid, removed when the writer finishes or fails. The output path
is checked before anything is loaded or probed.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import re
import stat
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from smoothness.checkpoints import load_checkpoint, weights_file
from smoothness.objective import DEFAULT_ENGINE, Objective, resolve_device
from smoothness.probes import interior_gammas, probe_point

__all__ = ["probe_trajectory", "read_table", "write_table", "check_output_path", "table_lock",
           "file_identity", "TableError", "TableLockedError", "SETTINGS", "IDENTITY_COLUMNS", "COLUMNS", "columns_help"]

SETTINGS = ("mode", "dtype", "seed", "n_batches", "gammas", "tol", "blocks")  # must match to resume
IDENTITY = ("resolved", "size", "mtime_ns")  # what makes a checkpoint file the same file
IDENTITY_COLUMNS = tuple(f"{which}_{part}" for which in ("checkpoint", "next_checkpoint") for part in IDENTITY)
#: every column of a probe table, with what it holds (shown by ``python -m smoothness probe --help``)
COLUMNS = {
    "checkpoint": "the checkpoint probed, as given",
    "next_checkpoint": "the next checkpoint of the trajectory (empty for the last)",
    "checkpoint_resolved": "the checkpoint's resolved path (with size and mtime: how a rerun recognises it)",
    "checkpoint_size": "size in bytes of the checkpoint's weights file",
    "checkpoint_mtime_ns": "modification time (ns) of the checkpoint's weights file",
    "next_checkpoint_resolved": "the same three for the next checkpoint",
    "next_checkpoint_size": "",
    "next_checkpoint_mtime_ns": "",
    "step": "training step: stored in the checkpoint, else the number in its name",
    "hvp_method": "how Hessian-vector products were taken (the engine)",
    "mode": "eval or train: the model's mode while probing",
    "dtype": "the dtype the probes computed in",
    "seed": "seed of dropout inside f and of the Lanczos start",
    "n_batches": "number of evaluation batches f averages over",
    "gammas": "interior points of the step where the finite difference is taken",
    "tol": "relative accuracy asked of the spectral norm",
    "blocks": "how the model was cut into blocks: tensor, layer or none",
    "device": "where the probes ran (cpu, cuda:0, ...)",
    "seconds": "time spent probing this checkpoint",
    "block": "the block of the row: 'all' for the whole model, else a tensor or layer name",
    "n_params": "parameters in the block",
    "grad_norm": "|grad f(w_t)| over all evaluation batches together",
    "n_noise_batches": "batches behind the noise estimates (0: not estimated, fewer than 3 batches)",
    "grad_norm_unbiased": "sqrt of the unbiased |grad f|^2 (0 where the estimate is negative)",
    "grad_sq_unbiased": "unbiased estimate of |grad f|^2: |mean|^2 - tr(Sigma_hat)/K",
    "grad_sq_unbiased_se": "its jackknife standard error",
    "noise_trace": "tr(Sigma) of one evaluation batch's gradient",
    "noise_trace_se": "its jackknife standard error",
    "one_batch_grad_norm": "the gradient norm one evaluation batch shows (noise included)",
    "loss": "f(w_t)",
    "momentum_norm": "|m_t| from the optimizer state (empty if the checkpoint has none)",
    "step_length": "|w_{t+1} - w_t| (the block's part)",
    "fd_smoothness": "max over gammas of |grad f(w_t + gamma d) - grad f(w_t)| / |gamma d|",
    "curvature": "d' H d / |d|^2 along the update d (per block with --block-curvature)",
    "hessian_norm": "Hessian spectral norm max |eigenvalue| (per block with --block-hessian)",
    "hessian_eigenvalue": "the signed eigenvalue of largest magnitude",
    "hessian_converged": "whether Lanczos reached the tolerance",
    "hessian_residual": "Lanczos residual of the eigenpair",
    "hessian_n_hvp": "Hessian-vector products the spectral norm took",
    "hessian_warm_start": "whether Lanczos started from the previous checkpoint's eigenvector",
}


def columns_help() -> str:
    """The table's columns, one line each, for ``--help``."""
    width = max(map(len, COLUMNS))
    return "\n".join(f"  {name:<{width}}  {text}" for name, text in COLUMNS.items() if text)
INTEGER_COLUMNS = tuple(c for c in IDENTITY_COLUMNS if not c.endswith("_resolved"))


class TableError(ValueError):
    """A probe table that cannot be read, resumed or written; the message names the file."""


class TableLockedError(TableError):
    """Another process holds the table's lock file."""


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """The resolved absolute path, size and mtime (ns) of a checkpoint (of its weights file, for a
    Hugging Face folder): equal for every path to the same checkpoint."""
    resolved = Path(path).resolve()
    stat = weights_file(resolved).stat()
    return {"resolved": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _path_number(path: Path) -> int | None:
    """The last run of digits in a checkpoint's name (``checkpoint-120`` -> 120), None if it has none."""
    found = re.findall(r"\d+", path.name)
    return int(found[-1]) if found else None


def trajectory_order(loaded: Sequence, paths: Sequence[Path]) -> list[int]:
    """The order in which to probe ``loaded`` checkpoints (each with a ``step`` attribute): by stored
    step when every checkpoint stores one; otherwise by the number in each path, numerically (with a
    warning), never by the order the paths came in (a shell glob puts ``checkpoint-100`` before
    ``checkpoint-20``); in the given order, with a warning, only if some path has no number."""
    steps = [c.step for c in loaded]
    if all(s is not None for s in steps):
        if len(set(steps)) != len(steps):
            warnings.warn("two checkpoints store the same step; they are kept in the order given", stacklevel=3)
        return sorted(range(len(loaded)), key=lambda i: steps[i])
    numbers = [_path_number(Path(p)) for p in paths]
    if all(n is not None for n in numbers) and len(set(numbers)) == len(numbers):
        warnings.warn("some checkpoints store no training step: ordered by the number in each path "
                      f"({', '.join(str(n) for n in sorted(numbers))}), which the table records as the step",
                      stacklevel=3)
        return sorted(range(len(loaded)), key=lambda i: numbers[i])
    warnings.warn("some checkpoints store no training step and their paths carry no distinct numbers: probed in "
                  "the order given, which the table cannot check", stacklevel=3)
    return list(range(len(loaded)))


def check_output_path(path: str | os.PathLike, what: str = "output file") -> Path:
    """Raise :class:`TableError` unless ``path`` can be written: not a folder, not read-only, and its
    folder either exists and is writable or can be created under a writable one."""
    path = Path(path)
    if path.is_dir():
        raise TableError(f"{path}: the {what} is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise TableError(f"{path}: the {what} exists and is not writable")
    ancestor = path.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise TableError(f"{path}: cannot write the {what}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise TableError(f"{path}: cannot write the {what}: the folder {ancestor} is not writable")
    return path


def _lock_holder(lock: Path) -> str:
    """Who holds ``lock``, as far as its content tells, for the error message."""
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return "another process"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"process {pid}, which is no longer running (a stale lock)"
    except PermissionError:
        pass
    return f"process {pid}"


@contextlib.contextmanager
def table_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<path>.lock`` (created with O_CREAT | O_EXCL, holding our pid) while the block runs."""
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise TableLockedError(f"{lock}: {path} is being written by {_lock_holder(lock)}; wait for it to finish, "
                               f"or, if no other probe is running, delete {lock} (left by a killed run) "
                               f"and rerun") from None
    except OSError as err:
        raise TableError(f"{path}: cannot write next to it: creating {lock} failed ({err.strerror})") from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``table`` as CSV atomically: the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            table.to_csv(handle, index=False)
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644)  # not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_complete(path: Path) -> None:
    """Every row has the header's number of fields and the file ends with a newline (as written)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TableError(f"{path}: not a probe table (not UTF-8 text: {err.reason})") from None
    if not text.strip():
        raise TableError(f"{path}: not a probe table (the file is empty)")
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
        for row_number, row in enumerate(reader, start=1):
            if len(row) != len(header):
                raise TableError(f"{path}: row {row_number} (line {reader.line_num}) has {len(row)} fields, the "
                                 f"header {len(header)}: the file is truncated or corrupt")
    except csv.Error as err:
        raise TableError(f"{path}: not a probe table (line {reader.line_num}: {err})") from None
    if not text.endswith("\n"):
        raise TableError(f"{path}: the last row (line {reader.line_num}) ends without a newline: the file was cut "
                         f"off while being written")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a probe table, or say what is wrong with it (missing, truncated, not a probe table)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such results file")
    if not path.is_file():
        raise TableError(f"{path}: not a file")
    _check_complete(path)
    dtypes = {**{c: "Int64" for c in INTEGER_COLUMNS}, "checkpoint_resolved": str, "next_checkpoint_resolved": str}
    try:
        table = pd.read_csv(path, keep_default_na=True, dtype=dtypes)
    except (ValueError, TypeError) as err:  # pandas' ParserError is a ValueError
        raise TableError(f"{path}: not a probe table ({str(err).splitlines()[0]})") from None
    missing = {"checkpoint", "block", "grad_norm"} - set(table.columns)
    if missing:
        raise TableError(f"{path}: not a probe table, missing columns {sorted(missing)}")
    return table


def _key(values: Sequence[Any]) -> tuple[str, ...]:
    """A row's (checkpoint, next checkpoint) identity as strings; a missing value is ''."""
    return tuple("" if pd.isna(v) else str(v) for v in values)


def _row_identity(identity: dict | None, which: str) -> dict[str, Any]:
    return {f"{which}_{part}": (identity or {}).get(part, "" if part == "resolved" else None) for part in IDENTITY}


def _check_unchanged(out: Path, done: pd.DataFrame, current: dict[str, dict]) -> None:
    """No row of ``done`` describes a file of ``current`` (by resolved path) that has changed since."""
    for which in ("checkpoint", "next_checkpoint"):
        for values in done[[f"{which}_{part}" for part in IDENTITY]].drop_duplicates().itertuples(index=False):
            resolved, size, mtime_ns = _key(values)
            now = current.get(resolved)
            if now is not None and (str(now["size"]), str(now["mtime_ns"])) != (size, mtime_ns):
                raise TableError(f"{out}: has rows for {resolved} probed when it had {size} bytes and mtime_ns "
                                 f"{mtime_ns}; it has changed since ({now['size']} bytes, mtime_ns "
                                 f"{now['mtime_ns']}): write to a new file or remove those rows")


def _resume(out: Path, settings: dict, current: dict[str, dict]) -> tuple[pd.DataFrame, set]:
    """The rows ``out`` already has and their (checkpoint, next) identity keys, after checking that
    they were probed with ``settings`` from the checkpoint files as they are now."""
    if not out.exists():
        return pd.DataFrame(), set()
    done = read_table(out)
    if not len(done):
        return pd.DataFrame(), set()
    for key, value in settings.items():
        if key in done and not (done[key].astype(str) == str(value)).all():
            raise TableError(f"{out}: has rows probed with {key} = {done[key].iloc[0]!r}, not {value!r}; "
                             f"write to a new file or use the same settings")
    absent = [c for c in IDENTITY_COLUMNS if c not in done]
    if absent:
        raise TableError(f"{out}: lacks the checkpoint identity columns {absent} (written by an older version), so "
                         f"the checkpoints it holds cannot be recognised; write to a new file")
    _check_unchanged(out, done, current)
    return done, {_key(values) for values in done[list(IDENTITY_COLUMNS)].itertuples(index=False)}


def _check_distinct(paths: Sequence[Path]) -> None:
    """No checkpoint file is given twice (under two spellings or through a symlink)."""
    first: dict[Path, Path] = {}
    for path in paths:
        resolved = path.resolve()
        if resolved in first:
            raise ValueError(f"{path}: the same checkpoint file as {first[resolved]}, given twice")
        first[resolved] = path


@dataclasses.dataclass(frozen=True)
class _Entry:
    """A checkpoint of the trajectory, once validated: where it is, its step and its file identity.
    Its tensors are read again when it is probed, so that at most two checkpoints are held at once."""

    path: Path
    step: int | None
    identity: dict


def probe_trajectory(
    model_factory: Callable[[], torch.nn.Module], loss_fn, batches: Any, checkpoints: Sequence[str | os.PathLike], *,
    gammas: Sequence[float] = interior_gammas(3), blocks: str | None = "tensor", hessian: bool = True,
    block_hessian: bool = False, block_curvature: bool = False, mode: str = "eval", dtype: torch.dtype | None = None,
    seed: int = 0, tol: float = 1e-3, max_hvp: int = 2000, out: str | os.PathLike | None = None,
    progress: bool | None = None, hvp_engine: str = DEFAULT_ENGINE, momentum: bool = True,
    device: str | torch.device | None = None, warm_start: bool = False,
) -> pd.DataFrame:
    """Probe every checkpoint; see the module docstring. ``batches`` is one batch or a list of them;
    ``momentum=False`` leaves optimizer states unread (no momentum norm); ``device`` is where the
    model, the batches and the products live (``"cuda"``; default: where the factory builds the model).
    ``warm_start=True`` starts each spectral norm's Lanczos from the eigenvector found at the
    checkpoint probed before (column ``hessian_warm_start``; see
    :func:`smoothness.hessian.spectral_norm` for why half a random vector is mixed in). Off by
    default: each row is then independent of the others, and on a GPT trained with AdamS a warm
    start saved only 2% of the products at ``tol=1e-3`` (``benchmarks/smoothness_probe.py``),
    because from a random start Lanczos with 8 vectors already meets the tolerance at its first or
    second check for most blocks.

    Every checkpoint is read and validated first (a damaged last checkpoint fails now, not after
    hours of probing), then read again when it is probed: at most two are in memory at any time."""
    if isinstance(model_factory, torch.nn.Module):
        raise TypeError("probe_trajectory takes a factory that builds the model, not the model: pass "
                        "lambda: MyModel(...) (each checkpoint is loaded into a fresh copy)")
    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise ValueError("no checkpoints given")
    _check_distinct(paths)
    if out is not None:
        out = check_output_path(out, "probe table").resolve()  # a symlink: lock and write its target
    resolve_device(device)  # a device this machine lacks is refused before anything is read
    with table_lock(out) if out is not None else contextlib.nullcontext():
        model = model_factory()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model_factory must return a torch.nn.Module, got {type(model).__name__}")
        entries = []
        for p in tqdm(paths, disable=None if progress is None else not progress, delay=2, leave=False,
                      desc="checking checkpoints", unit="ckpt"):
            entries.append(_Entry(p, load_checkpoint(p, model, momentum=momentum).step, file_identity(p)))
        order = trajectory_order(entries, paths)
        if not all(e.step is not None for e in entries) and all(_path_number(p) is not None for p in paths):
            entries = [dataclasses.replace(e, step=_path_number(e.path)) if e.step is None else e for e in entries]
        entries = [entries[i] for i in order]
        objective = Objective(model, loss_fn, batches, mode=mode, dtype=dtype, seed=seed, device=device)
        settings = {**{k: v for k, v in objective.describe().items() if k in SETTINGS},
                    "gammas": json.dumps([round(g, 12) for g in gammas]), "tol": tol, "blocks": blocks or "none"}
        run = dict(gammas=gammas, by=blocks, hessian=hessian, block_hessian=block_hessian,
                   block_curvature=block_curvature, tol=tol, max_hvp=max_hvp, seed=seed, hvp_engine=hvp_engine,
                   warm_start={} if warm_start else None, progress=progress)
        held = _Held(lambda path: load_checkpoint(path, model, momentum=momentum))
        done, seen = pd.DataFrame(), set()
        if out is not None:
            done, seen = _resume(out, settings, {e.identity["resolved"]: e.identity for e in entries})
        return _probe_all(objective, entries, held, settings, run, progress, out=out, done=done, seen=seen)


class _Held:
    """The checkpoints being probed, read on demand: asked for a pair, it lets go of every other."""

    def __init__(self, load: Callable[[Path], Any]):
        self.load, self.held = load, {}

    def pair(self, path: Path, next_path: Path | None):
        keep = [path] + ([next_path] if next_path is not None else [])  # a list: read in trajectory order
        self.held = {p: c for p, c in self.held.items() if p in keep}
        for p in keep:
            if p not in self.held:
                self.held[p] = self.load(p)
        return self.held[path], self.held.get(next_path)


def _probe_all(objective: Objective, entries: list[_Entry], held: _Held, settings: dict, run: dict,
               progress: bool | None, *, out: Path | None, done: pd.DataFrame, seen: set) -> pd.DataFrame:
    """Probe each (checkpoint, next checkpoint) pair not in ``seen``, appending to ``done`` (and ``out``).

    A row of ``done`` for a checkpoint of this trajectory that is paired with another next checkpoint
    than now (the old last checkpoint, before checkpoints were added after it) is stale: it is
    dropped, with a warning, and the pair is probed again. Rows of checkpoints not given now are kept."""
    todo, current = [], set()
    for i, entry in enumerate(entries):
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        identity = {**_row_identity(entry.identity, "checkpoint"),
                    **_row_identity(nxt.identity if nxt else None, "next_checkpoint")}
        key = _key([identity[c] for c in IDENTITY_COLUMNS])
        current.add(key)
        if key not in seen:
            todo.append((entry, nxt, identity))
    if len(done):
        given = {e.identity["resolved"] for e in entries}
        keys = [_key(values) for values in done[list(IDENTITY_COLUMNS)].itertuples(index=False)]
        stale = [k not in current and r in given for k, r in zip(keys, done["checkpoint_resolved"])]
        if any(stale):
            warnings.warn(f"{sum(stale)} rows of the table paired a checkpoint given now with another next checkpoint "
                          "than now (checkpoints were added or removed): they are replaced", stacklevel=3)
            done = done[[not s for s in stale]].reset_index(drop=True)
    rows = [done] if len(done) else []
    for entry, nxt, identity in tqdm(todo, disable=None if progress is None else not progress,
                                     desc="probing checkpoints", unit="ckpt"):
        start = time.perf_counter()
        ckpt, next_ckpt = held.pair(entry.path, nxt.path if nxt else None)
        w_next = objective.load(next_ckpt.model_state) if next_ckpt is not None else None
        w = objective.load(ckpt.model_state)
        momentum = ({n: m.to(objective.device, objective.dtype) for n, m in ckpt.momentum.items()}
                    if ckpt.momentum else None)
        point = probe_point(objective, w, w_next=w_next, momentum=momentum, **run)
        meta = {"checkpoint": str(entry.path), "next_checkpoint": str(nxt.path) if nxt else "", **identity,
                "step": entry.step,
                "hvp_method": objective.engine_method(run["hvp_engine"]),
                **settings, "device": str(objective.device), "seconds": round(time.perf_counter() - start, 3)}
        rows.append(pd.DataFrame([{**meta, **r} for r in point]).astype({c: "Int64" for c in INTEGER_COLUMNS}))
        if out is not None:
            write_table(pd.concat(rows, ignore_index=True), out)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
