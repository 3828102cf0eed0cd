"""The checks of a trace batch that make one pass over its values (source.py words the errors).

Each answers "is everything allowed?" fast, with SIMD reductions; a compiled pass (the GIL released, so
that Parquet decoding goes on meanwhile) runs only where padding needs a per-record K or a value fails, and
source.py's numpy code then finds and names the first offence.

A trace's `grad_norm` is a list column (what earlier versions wrote, and what users may write) or packed
(fixed-size binary of K_max float32, what `TraceWriter` writes; docs/formats.md, "Gradient norms").
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def first_bad(values) -> int:
    """The index of the first value that is NaN, infinite or negative, or -1."""
    for p in range(values.shape[0]):
        v = values[p]
        if not v >= 0 or v == np.inf:
            return p
    return -1


@numba.njit(cache=True, nogil=True)
def first_bad_padded(matrix, want) -> int:
    """The flat index i * J + c of the first value of the [n, J] `matrix` that is NaN, infinite or negative
    (c < want[i]) or not 0 (c >= want[i], padding), or -1."""
    n, j = matrix.shape
    for i in range(n):
        k = want[i]
        for c in range(j):
            v = matrix[i, c]
            if (not v >= 0 or v == np.inf) if c < k else v != 0:
                return i * j + c
    return -1


def first_bad_norm(matrix: np.ndarray, want: np.ndarray) -> int:
    """`first_bad_padded`, answered by a minimum and a maximum (NaN spreads to both) when no record is padded."""
    n, j = matrix.shape
    if n == 0:
        return -1
    if (want == j).all() and matrix.min() >= 0 and matrix.max() < np.inf:
        return -1
    return first_bad_padded(matrix, want)


def first_bad_value(values: np.ndarray) -> int:
    """`first_bad`, answered by a minimum and a maximum when every value is allowed."""
    if values.size == 0 or (values.min() >= 0 and values.max() < np.inf):
        return -1
    return first_bad(values)


def rows_in_bounds(table: np.ndarray, row: np.ndarray, rows: np.ndarray) -> bool:
    """Whether every table index is in 0..len(rows)-1 and every row in 0..rows[table]-1: SIMD reductions, and
    a gather only when some row is not below every table's size (numpy: a kernel's load from Numba's cache
    costs a fresh process more than all the batches' checks)."""
    if not len(table):
        return True
    if table.min() < 0 or table.max() >= len(rows) or row.min() < 0:
        return False
    return bool(row.max() < rows.min() or (row < rows[table]).all())


def steps_in_order(step: np.ndarray, previous: int | None) -> bool:
    """Whether `step` is >= 0 and non-decreasing, also from `previous` (two SIMD passes)."""
    first = int(step[0])
    return first >= 0 and (previous is None or first >= previous) and bool((step[1:] >= step[:-1]).all())
