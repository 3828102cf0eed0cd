"""Hash categorical feature values to embedding rows, the same way on every run and every platform.

Used by the Criteo importer (and meant for any other reader of raw
categorical data, such as a trainer, so that a value lands on the same row
everywhere). Python's `hash()` is salted per process and polars' hashes may
change between versions, so neither is usable. The rule, for the value's
bytes `v` (UTF-8 as they appear in the file) in categorical field `f`
(0-based: Criteo's C1 is field 0) and a table of `rows` rows:

    h   = FNV-1a 64(v)                                  (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
    z   = h + (f + 1) * 0x9E3779B97F4A7C15   mod 2**64  (a per-field seed: equal values of two fields differ)
    row = 1 + splitmix64(z) mod (rows - 1)             (splitmix64: the finaliser of DESIGN 3.1)

A missing value (empty field or null) gets the reserved row 0, which no
present value hashes to; this mirrors DLRM's Criteo preprocessing, where a
missing categorical becomes the value 0, so missing values are one (hot) row,
not skipped lookups.
"""
from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..engine.hashmap import splitmix64
from ..errors import InputError

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MISSING_ROW = 0


@numba.njit(cache=True)
def _rows_of_strings(offsets, data, missing, field, rows):
    """Row of every string given by Arrow `offsets` into the byte buffer `data` (see the module docstring)."""
    n = offsets.size - 1
    out = np.empty(n, np.int64)
    seed = np.uint64(field + 1) * GOLDEN
    span = np.uint64(rows - 1)
    for i in range(n):
        start, end = offsets[i], offsets[i + 1]
        if missing[i] or start == end:
            out[i] = MISSING_ROW
            continue
        h = FNV_OFFSET
        for p in range(start, end):
            h = (h ^ np.uint64(data[p])) * FNV_PRIME
        out[i] = 1 + np.int64(splitmix64(h + seed) % span)
    return out


def hash_rows(values: pa.Array, field: int, rows: int) -> np.ndarray:
    """int64 rows in [0, rows) of a string column: missing -> 0, a present value -> 1 + hash mod (rows - 1)."""
    if rows < 2:
        raise InputError(f"--rows must be at least 2 (row 0 is reserved for missing values), got {rows}")
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)):
        values = values.cast(pa.large_binary() if pa.types.is_binary(values.type) else pa.large_string())
    n = len(values)
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[values.offset:values.offset + n + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    missing = pc.is_null(values).to_numpy(zero_copy_only=False)
    return _rows_of_strings(offsets, data, missing, np.int64(field), np.int64(rows))


def hash_value(value: str | bytes | None, field: int, rows: int) -> int:
    """The row of one value (for tools and tests; `hash_rows` is the vectorised form)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    return int(hash_rows(pa.array([value], pa.large_binary()), field, rows)[0])
