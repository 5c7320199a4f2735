"""Files written whole or not at all, and the names they may have.

Every file is written atomically (a temporary file in the same directory, then :func:`os.replace`),
so a crash leaves either the old file or the new one.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_target", "atomic_write_bytes", "atomic_write_text", "write_report", "check_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[str]:
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
    with atomic_target(path) as tmp:
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


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith((".png", ".pdf", ".json")):
        raise ValueError(
            f"output name must be a plain file stem such as 'adams_from_scratch', got {name!r}"
        )
    return name
