"""The kernels that turn a batch's gradient norms into the replay's zero-padded float32 [n, K_max] matrix.

A trace holds gradient norms in one of two layouts (docs/formats.md, "Gradient norms"): a list column
`grad_norm` (what earlier versions wrote, and what users may write), or split columns `grad_norm_0` ..
`grad_norm_{J-1}` (what `TraceWriter` writes). `trace.py` checks lengths and nulls and words the errors; these
kernels make the one pass over the values that copies them and finds the first value that is not finite and
>= 0, with the GIL released so that Parquet decoding can go on meanwhile.
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


#: Rows per block of `gather_columns`: a block of the matrix (BLOCK x K_max float32) stays in the L1 cache while
#: the columns are copied into it one after the other.
BLOCK = 512


@numba.njit(cache=True, nogil=True)
def gather_columns(cols, want, out) -> int:
    """out[i, c] = cols[c][i] for c < want[i], 0 past it; the flat index i * K_max + c of the first of those
    values that is NaN, infinite or negative, or -1. `cols` is a tuple of equal-length arrays, copied block by
    block of rows (indexing the tuple per value would cost more than the copy)."""
    n, width = out.shape
    j = len(cols)
    bad = -1
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        out[lo:hi, j:] = 0
        for c in range(j):
            col = cols[c]
            for i in range(lo, hi):
                v = col[i]
                if c >= want[i]:
                    v = 0
                elif not v >= 0 or v == np.inf:
                    p = i * width + c
                    bad = p if bad < 0 or p < bad else bad
                out[i, c] = v
        if bad >= 0:
            return bad
    return -1
