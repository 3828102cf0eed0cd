"""Maps and sets of (table, row): bookkeeping memory, not the modelled footprint.

Three users share `RowMap`: the census of the rows a trace touches (`replay`'s touched-row figures and
`inspect`'s distinct rows), the lookup counts per row that `mde` sizes its rows from, and the owner of each
bucket that `hash` and `qr` need to recognise collisions (`SharedRows`). A RowMap is a map of hashmap.py from
`packed_row_key(t, r)` to a slot of its dense arrays `kv[slot] = (key, value)`, slots given in order of first
appearance, at a load of at most 1/2, doubled by the Python side before a batch could pass it: 32-64 bytes per
key (plus as much per lookup of the batch in flight, room reserved before it is counted).
"""
from __future__ import annotations

import numba
import numpy as np

from . import hashmap
from .hashmap import ROW_BITS, ROW_MASK, packed_row_key, splitmix64

KEY, VALUE = 0, 1  # the columns of RowMap.kv


@hashmap.inline
def slot_of(m, kv, size, key):
    """The slot of `key` in kv, added at slot `size` (value 0) when absent: (slot, 1 if added else 0)."""
    mask = m.shape[0] - 1
    h = splitmix64(key)
    slot = hashmap.find(m, 0, mask, h, kv, KEY, key)
    if slot >= 0:
        return slot, 0
    hashmap.insert(m, 0, mask, h, size)
    kv[size, KEY] = key
    kv[size, VALUE] = 0
    return size, 1


@numba.njit(cache=True)
def _count(m, kv, size, table, row, per_table):
    """values[key] += 1 for every lookup; per_table[t] counts the keys of table t seen for the first time."""
    added = 0
    for i in range(table.shape[0]):
        slot, new = slot_of(m, kv, size + added, packed_row_key(table[i], row[i]))
        per_table[table[i]] += new
        added += new
        kv[slot, VALUE] += 1
    return added


@numba.njit(cache=True)
def _get(m, kv, table, row, default, out):
    mask = m.shape[0] - 1
    for i in range(table.shape[0]):
        key = packed_row_key(table[i], row[i])
        slot = hashmap.find(m, 0, mask, splitmix64(key), kv, KEY, key)
        out[i] = kv[slot, VALUE] if slot >= 0 else default


@numba.njit(cache=True)
def _put(m, kv, size, table, row, value):
    added = 0
    for i in range(table.shape[0]):
        slot, new = slot_of(m, kv, size + added, packed_row_key(table[i], row[i]))
        added += new
        kv[slot, VALUE] = value[i]
    return added


class RowMap:
    """An int64 value per distinct (table, row); `size` keys, `per_table[t]` of them in table t."""

    def __init__(self, ntab: int, capacity: int = 1 << 10):
        self.map = np.zeros(capacity, np.int64)
        self.kv = np.zeros((capacity // 2, 2), np.int64)
        self.size = 0
        self.per_table = np.zeros(ntab, np.int64)

    def reserve(self, new_keys: int) -> None:
        """Room for `new_keys` more keys at a load of at most 1/2 (doubling, then rehashing)."""
        need = 2 * (self.size + new_keys)
        if need > self.map.size:
            n = 1 << (need - 1).bit_length()
            grown = np.zeros(n, np.int64)
            hashmap.rebuild(self.map, grown)
            kv = np.zeros((n // 2, 2), np.int64)
            kv[:self.size] = self.kv[:self.size]
            self.map, self.kv = grown, kv

    def count(self, table: np.ndarray, row: np.ndarray) -> None:
        """Add one lookup of each (table[i], row[i]): its value counts lookups."""
        self.reserve(table.shape[0])
        self.size += _count(self.map, self.kv, self.size, table, row, self.per_table)

    def put(self, table: np.ndarray, row: np.ndarray, value: np.ndarray) -> None:
        """Set the value of each (table[i], row[i]) (per_table is not kept by `put`)."""
        self.reserve(table.shape[0])
        self.size += _put(self.map, self.kv, self.size, np.ascontiguousarray(table, np.int64),
                          np.ascontiguousarray(row, np.int64), np.ascontiguousarray(value, np.int64))

    def get(self, table: np.ndarray, row: np.ndarray, default: int = 0) -> np.ndarray:
        """The value of each (table[i], row[i]), `default` for keys never added."""
        out = np.empty(row.shape[0], np.int64)
        _get(self.map, self.kv, table, row, default, out)
        return out

    def items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(table, row, value) of every key, in ascending (table, row) order."""
        packed, values = self.kv[:self.size, KEY], self.kv[:self.size, VALUE]
        order = np.argsort(packed, kind="stable")
        packed, values = packed[order], values[order]
        return (packed >> ROW_BITS).astype(np.int64), packed & ROW_MASK, values


@numba.njit(cache=True)
def _observe_shared(m, kv, size, table, row, stored, shared):
    """shared[i] = 1 if stored row `stored[i]` of table[i] has served another row seen so far (a negative stored
    row is no shared storage: 0); returns the stored rows used for the first time.

    The value of a stored row is the first row it served as row + 1, negated once a second row has joined it.
    """
    added = 0
    for i in range(row.size):
        shared[i] = 0
        if stored[i] < 0:
            continue
        r = row[i]
        slot, new = slot_of(m, kv, size + added, packed_row_key(table[i], stored[i]))
        owner = kv[slot, VALUE]
        if new:
            kv[slot, VALUE] = r + 1
            added += 1
        elif owner != r + 1:  # another row owns it, or this row owns it and another has joined
            shared[i] = 1
            if owner > 0:
                kv[slot, VALUE] = -owner
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
        self.owners.size += _observe_shared(self.owners.map, self.owners.kv, self.owners.size,
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
    `RowMap` (32-64 bytes per distinct row).
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
