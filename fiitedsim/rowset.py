"""Open-addressing maps keyed by packed (table, row): bookkeeping memory, not the modelled footprint.

Three users share one structure: the census of the rows a trace touches
(`replay`'s touched-row figures and `inspect`'s distinct rows), the lookup
counts per row that `mde` sizes its rows from, and the owner of each bucket
that `hash` needs to recognise collisions. Keys are `packed_row_key(t, r) +
1` (0 marks an empty bucket), one int64 value per key, linear probing at a
load of at most 1/2, doubled by the Python side before a batch could pass
it: 16 bytes per key (plus 16 per lookup of the batch in flight).
"""
from __future__ import annotations

import numba
import numpy as np

from .store import ROW_BITS, ROW_MASK, packed_row_key, splitmix64

inline = numba.njit(cache=True, inline="always")


@inline
def find_bucket(keys, key):
    """The bucket holding `key` (packed key + 1), or the empty bucket where it would go."""
    mask = keys.shape[0] - 1
    b = np.int64(splitmix64(key) & np.uint64(mask))
    while keys[b] != 0 and keys[b] != key:
        b = (b + 1) & mask
    return b


@numba.njit(cache=True)
def _count(keys, values, table, row, per_table):
    """values[key] += 1 for every lookup; per_table[t] counts the keys of table t seen for the first time."""
    added = 0
    for i in range(table.shape[0]):
        key = packed_row_key(table[i], row[i]) + 1
        b = find_bucket(keys, key)
        if keys[b] == 0:
            keys[b] = key
            per_table[table[i]] += 1
            added += 1
        values[b] += 1
    return added


@numba.njit(cache=True)
def _get(keys, values, table, row, default, out):
    for i in range(table.shape[0]):
        b = find_bucket(keys, packed_row_key(table[i], row[i]) + 1)
        out[i] = values[b] if keys[b] != 0 else default


@numba.njit(cache=True)
def _put(keys, values, table, row, value):
    added = 0
    for i in range(table.shape[0]):
        key = packed_row_key(table[i], row[i]) + 1
        b = find_bucket(keys, key)
        added += keys[b] == 0
        keys[b] = key
        values[b] = value[i]
    return added


@numba.njit(cache=True)
def _rehash(old_keys, old_values, keys, values):
    for i in range(old_keys.shape[0]):
        if old_keys[i] != 0:
            b = find_bucket(keys, old_keys[i])
            keys[b] = old_keys[i]
            values[b] = old_values[i]


class RowMap:
    """An int64 value per distinct (table, row); `size` keys, `per_table[t]` of them in table t."""

    def __init__(self, ntab: int, capacity: int = 1 << 10):
        self.keys = np.zeros(capacity, np.int64)
        self.values = np.zeros(capacity, np.int64)
        self.size = 0
        self.per_table = np.zeros(ntab, np.int64)

    def reserve(self, new_keys: int) -> None:
        """Room for `new_keys` more keys at a load of at most 1/2 (doubling, then rehashing)."""
        need = 2 * (self.size + new_keys)
        if need > self.keys.size:
            n = 1 << (need - 1).bit_length()
            keys, values = np.zeros(n, np.int64), np.zeros(n, np.int64)
            _rehash(self.keys, self.values, keys, values)
            self.keys, self.values = keys, values

    def count(self, table: np.ndarray, row: np.ndarray) -> None:
        """Add one lookup of each (table[i], row[i]): its value counts lookups."""
        self.reserve(table.shape[0])
        self.size += _count(self.keys, self.values, table, row, self.per_table)

    def put(self, table: np.ndarray, row: np.ndarray, value: np.ndarray) -> None:
        """Set the value of each (table[i], row[i]) (per_table is not kept by `put`)."""
        self.reserve(table.shape[0])
        self.size += _put(self.keys, self.values, np.ascontiguousarray(table, np.int64),
                          np.ascontiguousarray(row, np.int64), np.ascontiguousarray(value, np.int64))

    def get(self, table: np.ndarray, row: np.ndarray, default: int = 0) -> np.ndarray:
        """The value of each (table[i], row[i]), `default` for keys never added."""
        out = np.empty(row.shape[0], np.int64)
        _get(self.keys, self.values, table, row, default, out)
        return out

    def items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(table, row, value) of every key, in ascending (table, row) order."""
        used = np.flatnonzero(self.keys)
        packed = self.keys[used] - 1
        order = np.argsort(packed, kind="stable")
        packed, values = packed[order], self.values[used][order]
        return (packed >> ROW_BITS).astype(np.int64), packed & ROW_MASK, values


@numba.njit(cache=True)
def _observe_shared(keys, owners, table, row, stored, shared):
    """shared[i] = 1 if stored row `stored[i]` of table[i] has served another row seen so far (a negative stored
    row is no shared storage: 0); returns the stored rows used for the first time.

    owners holds the first row served by each stored row as row + 1, negated once a second row has joined it.
    """
    added = 0
    for i in range(row.size):
        shared[i] = 0
        if stored[i] < 0:
            continue
        r = row[i]
        key = packed_row_key(table[i], stored[i]) + 1
        b = find_bucket(keys, key)
        if keys[b] == 0:
            keys[b] = key
            owners[b] = r + 1
            added += 1
        elif owners[b] != r + 1:  # another row owns it, or this row owns it and another has joined
            shared[i] = 1
            if owners[b] > 0 and owners[b] != r + 1:
                owners[b] = -owners[b]
    return added


class SharedRows:
    """Stored rows that several rows read (`hash` buckets, `qr`'s quotient and remainder rows): per lookup, whether
    the row it reads has served another row seen so far (earlier lookups, and earlier ones of its own batch).
    Bookkeeping of the simulation, like the engine's row tracker: one map entry per stored row used."""

    def __init__(self, ntab: int):
        self.owners = RowMap(ntab)

    def observe(self, table: np.ndarray, row: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """1 for each lookup whose stored row (`stored`, -1: not shared storage) served another row, else 0."""
        shared = np.empty(row.size, np.int64)
        self.owners.reserve(row.size)
        self.owners.size += _observe_shared(self.owners.keys, self.owners.values,
                                            np.ascontiguousarray(table, np.int64), np.ascontiguousarray(row, np.int64),
                                            np.ascontiguousarray(stored, np.int64), shared)
        return shared


#: Tables with at most this many rows in all keep one bit per row (64 MiB at most, and only the pages
#: touched become resident); larger ones a RowMap of the rows seen.
BITMAP_MAX_ROWS = 1 << 29


@numba.njit(cache=True)
def _mark(bits, offsets, table, row, per_table):
    for i in range(table.shape[0]):
        g = offsets[table[i]] + row[i]
        word, bit = g >> 6, np.uint64(1) << np.uint64(g & 63)
        if not bits[word] & bit:
            bits[word] |= bit
            per_table[table[i]] += 1


class TouchedRows:
    """The distinct (table, row) pairs looked up, counted per table (`per_table`, `size`).

    A bit per row of every table while that is small (`BITMAP_MAX_ROWS`), so
    counting costs a few bytes per row of the tables and no hashing; else a
    `RowMap` (16-32 bytes per distinct row).
    """

    def __init__(self, table_rows: list[int]):
        self.per_table = np.zeros(len(table_rows), np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(table_rows)[:-1])).astype(np.int64)
        total = int(sum(table_rows))
        self.bits = np.zeros((total + 63) // 64, np.uint64) if total <= BITMAP_MAX_ROWS else None
        self.map = None if self.bits is not None else RowMap(len(table_rows))

    def add(self, table: np.ndarray, row: np.ndarray) -> None:
        if self.bits is not None:
            _mark(self.bits, self.offsets, table, row, self.per_table)
        else:
            self.map.count(table, row)
            self.per_table[:] = self.map.per_table

    @property
    def size(self) -> int:
        return int(self.per_table.sum())
