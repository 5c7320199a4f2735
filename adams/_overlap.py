"""Which tensors of an update share memory: byte ranges, not start addresses.

An in-place step writes every parameter and momentum and reads every gradient. If a written
tensor shares a byte with any other tensor of the step, the result depends on the order in which
elements are visited (and, in the threaded kernel, on timing). Two tensors can overlap without
starting at the same address (``s[1:]`` and ``s[:-1]``), and without sharing a torch storage
(``torch.from_numpy`` of two overlapping NumPy views), so the check compares the byte ranges the
tensors span. Gradients may overlap one another: they are only read.
"""
from __future__ import annotations

from operator import attrgetter
from typing import Sequence

from torch import Tensor

__all__ = ["byte_range", "first_overlap", "describe_pair"]

_nbytes = attrgetter("nbytes")


def byte_range(t: Tensor) -> tuple[int, int]:
    """The bytes ``[start, end)`` that tensor ``t`` can touch (empty for an empty tensor).

    For a non-contiguous tensor this is the span from its first to its last element, which also
    covers the gaps between them: two interleaved views (the even and the odd columns of a matrix)
    count as overlapping, a conservative answer.
    """
    start, n = t.data_ptr(), t.numel()
    if n == 0:
        return start, start
    if t.is_contiguous():
        return start, start + t.nbytes
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return start, start + span * t.element_size()


def _ranges(tensors: Sequence[Tensor]) -> list[tuple[int, int, int]]:
    """``(start, end, index)`` of every tensor, sorted by start."""
    if all(map(Tensor.is_contiguous, tensors)):  # the usual case, in a few C-level passes
        starts = list(map(Tensor.data_ptr, tensors))
        ends = map(int.__add__, starts, map(_nbytes, tensors))
    else:
        starts, ends = zip(*map(byte_range, tensors)) if tensors else ((), ())
    return sorted(zip(starts, ends, range(len(tensors))))


def first_overlap(written: Sequence[Tensor], read: Sequence[Tensor]) -> tuple[int, int] | None:
    """A pair ``(i, j)`` of overlapping tensors, ``i`` a written one, or ``None`` if the memory of
    the step is disjoint.

    Indices count ``written`` first, then ``read``; pairs of two read tensors are allowed. A
    written tensor that overlaps itself (a zero stride from ``expand``) is reported as ``(i, i)``.
    One sort of the ranges: O(n log n).
    """
    if not all(map(Tensor.is_contiguous, written)):  # only a non-contiguous tensor can overlap itself
        for i, t in enumerate(written):
            if 0 in t.stride() and t.numel() > 1:
                return i, i
    n_written = len(written)
    # sweep by start: the written range reaching furthest so far, and the read range likewise
    w_end, w_at, r_end, r_at = -1, -1, -1, -1
    for start, end, k in _ranges([*written, *read]):
        if end == start:  # an empty tensor touches no memory
            continue
        if start < w_end:
            return w_at, k
        if k < n_written:
            if start < r_end:
                return k, r_at
            if end > w_end:
                w_end, w_at = end, k
        elif end > r_end:
            r_end, r_at = end, k
    return None


def describe_pair(i: int, j: int, names: Sequence[str]) -> str:
    """A sentence for :func:`first_overlap`'s answer, with ``names[k]`` naming tensor ``k``."""
    if i == j:
        return f"{names[i]} overlaps itself (a zero stride, as from expand); materialize it first"
    return f"{names[j]} shares memory with {names[i]}, which this step writes"

