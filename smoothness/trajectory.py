"""Probe a whole trajectory of checkpoints into one table, resumably and atomically.

:func:`probe_trajectory` loads each checkpoint (:func:`smoothness.checkpoints.load_checkpoint`, so
``weights_only=True`` and every check there), pairs it with the next one for the step
finite difference and the directional curvature, runs :func:`smoothness.probes.probe_point`, and
returns a ``pandas.DataFrame`` with one row per (checkpoint, block). The settings that define the
objective and the probes (mode, dtype, seed, batches, gammas, tolerance) are columns of every row.

Checkpoints are probed in the order given, unless every one records a training step, in which case
they are sorted by step. With ``out=`` the table is rewritten atomically after every checkpoint (a
temporary file, then :func:`os.replace`), so a crash leaves the previous complete file; a rerun with
the same settings skips the (checkpoint, next checkpoint) pairs the file already has.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from smoothness.checkpoints import load_checkpoint
from smoothness.objective import Objective
from smoothness.probes import interior_gammas, probe_point

__all__ = ["probe_trajectory", "read_table", "write_table", "SETTINGS"]

SETTINGS = ("mode", "dtype", "seed", "n_batches", "gammas", "tol", "blocks")  # must match to resume


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``table`` as CSV atomically: the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            table.to_csv(handle, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a probe table, or say what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file")
    try:
        table = pd.read_csv(path, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a probe table ({err})") from None
    missing = {"checkpoint", "block", "grad_norm"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: not a probe table, missing columns {sorted(missing)}")
    return table


def probe_trajectory(
    model_factory: Callable[[], torch.nn.Module], loss_fn, batches: Any, checkpoints: Sequence[str | os.PathLike], *,
    gammas: Sequence[float] = interior_gammas(3), blocks: str | None = "tensor", hessian: bool = True,
    block_hessian: bool = False, block_curvature: bool = False, mode: str = "eval", dtype: torch.dtype | None = None,
    seed: int = 0, tol: float = 1e-3, max_hvp: int = 2000, out: str | os.PathLike | None = None,
    progress: bool | None = None, hvp_engine: str = "jvp",
) -> pd.DataFrame:
    """Probe every checkpoint; see the module docstring. ``batches`` is one batch or a list of them."""
    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise ValueError("no checkpoints given")
    model = model_factory()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model_factory must return a torch.nn.Module, got {type(model).__name__}")
    loaded = [load_checkpoint(p, model) for p in paths]  # validate all before probing any
    if all(c.step is not None for c in loaded):
        loaded.sort(key=lambda c: c.step)
    objective = Objective(model, loss_fn, batches, mode=mode, dtype=dtype, seed=seed)
    settings = {**{k: v for k, v in objective.describe().items() if k in SETTINGS},
                "gammas": json.dumps([round(g, 12) for g in gammas]), "tol": tol, "blocks": blocks or "none"}

    done = pd.DataFrame()
    if out is not None and Path(out).exists():
        done = read_table(out)
        for key, value in settings.items():
            if key in done and len(done) and not (done[key].astype(str) == str(value)).all():
                raise ValueError(f"{out}: has rows probed with {key} = {done[key].iloc[0]!r}, not {value!r}; "
                                 f"write to a new file or use the same settings")
    seen = set(zip(done["checkpoint"], done["next_checkpoint"].fillna(""))) if len(done) else set()

    rows = [done] if len(done) else []
    todo = [(i, c) for i, c in enumerate(loaded)
            if (str(c.path), str(loaded[i + 1].path) if i + 1 < len(loaded) else "") not in seen]
    for i, ckpt in tqdm(todo, disable=None if progress is None else not progress, desc="probing checkpoints",
                        unit="ckpt"):
        start = time.perf_counter()
        nxt = loaded[i + 1] if i + 1 < len(loaded) else None
        w_next = objective.load(nxt.model_state) if nxt is not None else None
        w = objective.load(ckpt.model_state)
        momentum = ({n: m.to(objective.dtype) for n, m in ckpt.momentum.items()} if ckpt.momentum else None)
        point = probe_point(objective, w, w_next=w_next, momentum=momentum, gammas=gammas, by=blocks,
                            hessian=hessian, block_hessian=block_hessian, block_curvature=block_curvature,
                            tol=tol, max_hvp=max_hvp, seed=seed, hvp_engine=hvp_engine)
        meta = {"checkpoint": str(ckpt.path), "next_checkpoint": str(nxt.path) if nxt else "",
                "step": ckpt.step,
                "hvp_method": objective.hvp_method if hvp_engine == "jvp" else "double backward (one graph)", **settings,
                "seconds": round(time.perf_counter() - start, 3)}
        rows.append(pd.DataFrame([{**meta, **r} for r in point]))
        table = pd.concat(rows, ignore_index=True)
        if out is not None:
            write_table(table, out)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
