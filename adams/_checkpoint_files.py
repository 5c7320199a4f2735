"""The files of a sharded checkpoint, read without trusting them.

``torch.distributed.checkpoint`` (DCP) writes one ``.distcp`` file per process and a ``.metadata``
pickle, and its reader unpickles ``.metadata`` without restriction and the non-tensor entries with
``weights_only=False``: a planted file runs code. Here:

* :func:`write_checksums` / :func:`verify_checksums`: the SHA-256 of every file, recorded when a
  checkpoint is saved and compared before anything is loaded (a flipped byte is found, not loaded);
* :func:`read_metadata`: ``.metadata`` through an unpickler that admits only DCP's metadata
  classes, then checked (every storage entry a file of the checkpoint, inside its size);
* :func:`safe_reader` and :func:`safe_load_planner`: DCP's reader and planner with these checks,
  non-tensor entries read with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import torch

from adams.checkpoints import CheckpointError

__all__ = ["CheckpointError", "CHECKSUMS", "write_checksums", "verify_checksums", "read_metadata", "safe_reader",
           "safe_load_planner"]


CHECKSUMS = "checksums.json"


def _digest(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(directory: Path) -> None:
    """Record the SHA-256 of every file DCP wrote, so that a damaged file is found before loading."""
    files = {f.name: _digest(f) for f in sorted(directory.iterdir()) if f.is_file() and f.name != CHECKSUMS}
    (directory / CHECKSUMS).write_text(json.dumps({"sha256": files}, indent=1, sort_keys=True))


def verify_checksums(path: Path, *, required: bool = True) -> None:
    """Compare every file of the checkpoint with the SHA-256 digests recorded when it was saved.

    A checkpoint without ``checksums.json`` (saved by an older version of this package, or copied
    without it) is refused unless ``required=False``; then only the metadata checks stand between
    a damaged file and the model. Files must be regular files inside the checkpoint: a symbolic
    link could point anywhere.
    """
    record = path / CHECKSUMS
    if not record.exists() and not record.is_symlink():
        if required:
            raise CheckpointError(f"{path} has no {CHECKSUMS}, so its files cannot be verified (saved by an older "
                                  "version, or copied without it); pass verify=False to load it unverified")
        return
    if record.is_symlink() or not record.is_file():
        raise CheckpointError(f"{record} is not a regular file; nothing was loaded")
    try:
        digests = json.loads(record.read_text())["sha256"]
        if not (isinstance(digests, dict) and all(isinstance(v, str) for v in digests.values())):
            raise ValueError("not a mapping of file names to digests")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{record} is damaged ({type(err).__name__}: {str(err)[:200]}); nothing was loaded") from None
    for name, digest in sorted(digests.items()):
        file = path / name
        if not _plain_name(name) or file.is_symlink() or not file.is_file():
            raise CheckpointError(f"{path}: {name!r} is listed in {CHECKSUMS} but is not a regular file of the "
                                  "checkpoint; nothing was loaded")
        if _digest(file) != digest:
            raise CheckpointError(f"{file} is damaged: its SHA-256 differs from the one recorded when it was "
                                  "saved; nothing was loaded")
    unlisted = sorted(f.name for f in path.iterdir() if f.name not in digests and f.name != CHECKSUMS)
    if unlisted:
        raise CheckpointError(f"{path} holds files not written with it: {', '.join(unlisted)}; nothing was loaded")


# What a DCP ``.metadata`` pickle may name: its own dataclasses, tensor sizes, dtypes and layouts,
# paths. Everything else (``os.system``, ``builtins.eval``, any other callable) is refused.
_METADATA_GLOBALS = frozenset({
    *(("torch.distributed.checkpoint.metadata", name) for name in (
        "Metadata", "StorageMeta", "TensorProperties", "_MEM_FORMAT_ENCODING", "BytesStorageMetadata",
        "MetadataIndex", "TensorStorageMetadata", "ChunkStorageMetadata")),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.serialization", "_get_layout"),
    ("torch", "Size"),
    ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"),
})


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata and nothing else: a global outside :data:`_METADATA_GLOBALS` (and
    torch's dtypes) raises before it is looked up, so no pickled code can run."""

    def find_class(self, module: str, name: str):
        if (module, name) in _METADATA_GLOBALS or (
                module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which checkpoint metadata never holds")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it holds a persistent reference, which checkpoint metadata never holds")


def _plain_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def read_metadata(path: str | os.PathLike):
    """The checkpoint's DCP metadata, read with a restricted unpickler and checked.

    Raises :class:`CheckpointError` if ``.metadata`` is missing, truncated, not a pickle, names
    anything but metadata classes, or points at data outside the checkpoint directory.
    """
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (BytesStorageMetadata, Metadata, MetadataIndex,
                                                       TensorStorageMetadata)

    path = Path(path)
    file = path / ".metadata"
    if file.is_symlink():
        raise CheckpointError(f"{file} is a symbolic link; a checkpoint's files must be its own")
    if not file.is_file():
        hint = " (an interrupted save left a .partial directory)" if path.with_name(path.name + ".partial").exists() else ""
        raise CheckpointError(f"{path} is not a complete checkpoint: no .metadata file{hint}")
    try:
        with open(file, "rb") as handle:
            metadata = _MetadataUnpickler(handle).load()
    except Exception as err:  # noqa: BLE001 - every failure of a damaged file is reported alike
        raise CheckpointError(f"{file} is not checkpoint metadata and was not loaded: "
                              f"{type(err).__name__}: {err}") from None
    problem = None
    if not isinstance(metadata, Metadata):
        problem = f"it holds a {type(metadata).__name__}, not DCP Metadata"
    elif not (isinstance(metadata.state_dict_metadata, dict) and all(
            isinstance(k, str) and isinstance(v, (TensorStorageMetadata, BytesStorageMetadata))
            for k, v in metadata.state_dict_metadata.items())):
        problem = "its entries are not tensor or byte descriptions"
    elif not isinstance(metadata.storage_data, dict):
        problem = "it has no storage table"
    else:
        for index, info in metadata.storage_data.items():
            if not (isinstance(index, MetadataIndex) and isinstance(info, _StorageInfo)):
                problem = "its storage table holds objects of the wrong kind"
            elif (not _plain_name(info.relative_path) or (path / info.relative_path).is_symlink()
                  or not (path / info.relative_path).is_file()):
                problem = f"entry {index.fqn!r} points at {info.relative_path!r}, not a file of the checkpoint"
            elif not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (info.offset, info.length)):
                problem = f"entry {index.fqn!r} has offset {info.offset!r} and length {info.length!r}"
            elif info.offset + info.length > (path / info.relative_path).stat().st_size:
                problem = f"entry {index.fqn!r} reaches past the end of {info.relative_path}"
            if problem:
                break
    if problem:
        raise CheckpointError(f"{file} is not valid checkpoint metadata ({problem}); nothing was loaded")
    return metadata


def safe_reader(path: Path):
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class SafeReader(FileSystemReader):
        """DCP's file reader with :func:`read_metadata` in place of its unrestricted ``pickle.load``."""

        def read_metadata(self, *args, **kwargs):
            metadata = read_metadata(path)
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(str(path))


def safe_load_planner():
    from torch.distributed.checkpoint import DefaultLoadPlanner

    class SafeLoadPlanner(DefaultLoadPlanner):
        """DCP's default planner, but non-tensor entries are read with ``weights_only=True``."""

        def load_bytes(self, read_item, value: io.BytesIO) -> None:
            try:
                obj = torch.load(value, weights_only=True)
            except Exception as err:  # the unpickler refuses anything but plain data
                fqn = read_item.dest_index.fqn
                refused = next((line for line in str(err).splitlines() if "Unsupported global" in line), None)
                if refused is None:  # not a refusal: the bytes themselves are damaged
                    raise CheckpointError(f"entry {fqn!r} of the checkpoint cannot be read (damaged: "
                                          f"{type(err).__name__}: {str(err).strip()[:200]})") from None
                raise CheckpointError(
                    f"entry {fqn!r} of the checkpoint is not plain data and was not "
                    f"loaded (torch.load with weights_only=True refused it: {refused.strip()})") from None
            plain = io.BytesIO()
            torch.save(obj, plain)  # plain data only: safe for the default planner to read back
            plain.seek(0)
            super().load_bytes(read_item, plain)

    return SafeLoadPlanner()
