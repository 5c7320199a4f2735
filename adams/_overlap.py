"""Which tensors of an update share memory: byte ranges, not start addresses.

An in-place step writes every parameter and momentum and reads every gradient. If a written
tensor shares a byte with any other tensor of the step, the result depends on the order in which
elements are visited (and, in the threaded kernel, on timing). Two tensors can overlap without
starting at the same address (``s[1:]`` and ``s[:-1]``), and without sharing a torch storage
(``torch.from_numpy`` of two overlapping NumPy views), so the check compares the byte ranges the
tensors span. Gradients may overlap one another: they are only read.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor

__all__ = ["byte_range", "first_overlap", "describe_pair"]



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


def _extents(tensors: Sequence[Tensor], contiguous: bool) -> tuple[np.ndarray, np.ndarray]:
    """Start and end addresses (bytes) of every tensor, as int64 arrays."""
    n = len(tensors)
    if contiguous:  # the usual case, in a few C-level passes
        starts = np.fromiter(map(Tensor.data_ptr, tensors), np.int64, n)
        sizes = (np.fromiter(map(Tensor.numel, tensors), np.int64, n)
                 * np.fromiter(map(Tensor.element_size, tensors), np.int64, n))
        return starts, starts + sizes
    pairs = np.array(list(map(byte_range, tensors)), dtype=np.int64).reshape(n, 2)
    return pairs[:, 0], pairs[:, 1]


def first_overlap(written: Sequence[Tensor], read: Sequence[Tensor]) -> tuple[int, int] | None:
    """A pair ``(i, j)`` of overlapping tensors, ``i`` a written one, or ``None`` if the memory of
    the step is disjoint.

    Indices count ``written`` first, then ``read``; pairs of two read tensors are allowed. A
    written tensor that overlaps itself (a zero stride from ``expand``) is reported as ``(i, i)``.
    The ranges are sorted by start and swept once, keeping the furthest end of a written range and
    of a read range seen so far: a range that starts before the first, or a written range that
    starts before the second, overlaps an earlier one. O(n log n), vectorized; the culprits are
    named by the same sweep in Python, which only runs when there is one.
    """
    tensors = [*written, *read]
    contiguous = all(map(Tensor.is_contiguous, tensors))
    if not contiguous:  # only a non-contiguous tensor can overlap itself
        for i, t in enumerate(written):
            if any(stride == 0 and size > 1 for size, stride in zip(t.shape, t.stride())):
                return i, i
    if len(tensors) < 2:
        return None
    starts, ends = _extents(tensors, contiguous)
    order = np.flatnonzero(ends > starts)  # an empty tensor touches no memory
    order = order[np.argsort(starts[order], kind="stable")]
    start, end, is_written = starts[order], ends[order], order < len(written)
    reach_written = np.maximum.accumulate(np.where(is_written, end, -1))
    reach_read = np.maximum.accumulate(np.where(is_written, -1, end))
    clash = (start[1:] < reach_written[:-1]) | (is_written[1:] & (start[1:] < reach_read[:-1]))
    if not clash.any():
        return None
    return _sweep(zip(start.tolist(), end.tolist(), order.tolist()), len(written))


def _sweep(ranges, n_written: int) -> tuple[int, int] | None:
    """The sweep of :func:`first_overlap`, naming the first overlapping pair."""
    w_end, w_at, r_end, r_at = -1, -1, -1, -1
    for start, end, k in ranges:
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

