"""One open-addressing hash map of int64 entries, used by every map of rows in fiitedsim: the engine's row
tracker and hash indices (store.py), the row caches (`policies/rowcache.py`) and the row sets and counts
(rowset.py).

An **entry** is one int64: the low 32 bits of the key's hash (splitmix64, DESIGN 3.1) in its high half, and
a value + 1 in its low half (a tracked-row id, a cache item, a slot of a key array); 0 is an empty bucket.
Capacities are powers of two, and a key's **home** bucket is its hash & (capacity - 1). Probing is linear;
deletion moves later entries of the cluster back (backward shift), so there are no tombstones. The map does
not store keys: a match of the hash bits is confirmed by the user, who keeps the key of each value anyway
(the tracker in the record, a row cache in its item, a row set in its key array) and reads it next. As long
as a capacity is at most 2**32 an entry's home follows from its hash bits, so rehashing and deletion never
read keys.

A map may be one region of a larger array (the hash indices share one flat array): every function takes the
array, the region's offset `off` and its `mask` (capacity - 1). These are `inline` functions over plain
arrays (docs/engine.md says why).
"""
from __future__ import annotations

import numba
import numpy as np

#: A Numba function inlined into its callers at the IR level (kernels call these once per lookup).
inline = numba.njit(cache=True, inline="always")

LOW32 = np.uint64(0xFFFFFFFF)
EMPTY = 0  # an empty bucket; entries hold value + 1 in their low half
#: a (table, row) key: table in bits ROW_BITS.., row in bits 0..ROW_BITS-1 (`packed_row_key`)
ROW_BITS = 40
ROW_MASK = (1 << ROW_BITS) - 1
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@inline
def splitmix64(x):
    """The standard splitmix64 finaliser of DESIGN 3.1 (arithmetic mod 2**64)."""
    z = np.uint64(x)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@inline
def packed_row_key(t, r):
    """(table, row) as one int64: table in bits 40.., row in bits 0..39."""
    return (np.int64(t) << ROW_BITS) | np.int64(r)


@inline
def home(h, mask):
    """The home bucket of hash h."""
    return np.int64(h & np.uint64(mask))


@inline
def entry(h, value):
    """The entry of a key whose hash is h, holding `value` (>= 0)."""
    return np.int64(((h & LOW32) << np.uint64(32)) | np.uint64(value + 1))


@inline
def entry_value(e):
    return np.int64(np.uint64(e) & LOW32) - 1


@inline
def entry_home(e, mask):
    """The home bucket of entry e (capacity at most 2**32)."""
    return np.int64((np.uint64(e) >> np.uint64(32)) & np.uint64(mask))


@inline
def next_match(m, off, mask, h, b):
    """From bucket b on, the first bucket whose entry has the hash bits of h, or -1 where an empty bucket ends
    the search. The caller confirms the key of the entry's value, and searches on from the next bucket if it
    is another key's."""
    tag = h & LOW32
    while True:
        e = m[off + b]
        if e == EMPTY:
            return -1
        if np.uint64(e) >> np.uint64(32) == tag:
            return b
        b = (b + 1) & mask


@inline
def find(m, off, mask, h, keys, col, key):
    """The value of `key` (whose hash is h), or -1: the first entry with its hash bits whose value v has
    keys[v, col] == key (the user's store of keys: the tracker's records, a cache's items, a set's keys)."""
    b = next_match(m, off, mask, h, home(h, mask))
    while b >= 0:
        v = entry_value(m[off + b])
        if keys[v, col] == key:
            return v
        b = next_match(m, off, mask, h, (b + 1) & mask)
    return -1


@inline
def peek(m, off, mask, h):
    """The value of the first entry with the hash bits of h, or -1: a guess for prefetching only (it reads no
    key)."""
    b = next_match(m, off, mask, h, home(h, mask))
    return entry_value(m[off + b]) if b >= 0 else -1


@inline
def first_empty(m, off, mask, b):
    """The first empty bucket at or after b (cyclically) and the probe length to it."""
    probes = 1
    while m[off + b] != EMPTY:
        b = (b + 1) & mask
        probes += 1
    return b, probes


@inline
def place(m, off, mask, e):
    """Put entry e into the first empty bucket from its home (the caller keeps a free bucket); its bucket."""
    b, _ = first_empty(m, off, mask, entry_home(e, mask))
    m[off + b] = e
    return b


@inline
def insert(m, off, mask, h, value):
    """Insert a key known to be absent, whose hash is h, with `value`; its bucket."""
    b, _ = first_empty(m, off, mask, home(h, mask))
    m[off + b] = entry(h, value)
    return b


@inline
def next_shift(m, off, mask, hole, j):
    """Backward-shift deletion, one move at a time: after bucket j, the first bucket of the cluster whose entry
    must move into `hole` (its home lies cyclically outside (hole, j]), or -1 where an empty bucket ends the
    cluster. The caller moves that entry into the hole (`m[off + hole] = m[off + j]`, noting where it went
    if it keeps buckets), makes j the hole and calls again from j; at -1 it empties the hole (`remove`)."""
    while True:
        j = (j + 1) & mask
        e = m[off + j]
        if e == EMPTY:
            return -1
        h = entry_home(e, mask)
        stays = (hole < h <= j) if hole <= j else (h > hole or h <= j)
        if not stays:
            return j


@inline
def remove(m, off, mask, hole):
    """Remove the entry at bucket `hole` by backward shift: the map is left as if it had never been inserted."""
    j = next_shift(m, off, mask, hole, hole)
    while j >= 0:
        m[off + hole] = m[off + j]
        hole = j
        j = next_shift(m, off, mask, hole, hole)
    m[off + hole] = EMPTY


@numba.njit(cache=True)
def rebuild(old, new):
    """Place every entry of map `old` into the empty (larger) map `new`, scanning `old` from bucket 0 up."""
    mask = new.shape[0] - 1
    for b in range(old.shape[0]):
        if old[b] != EMPTY:
            place(new, 0, mask, old[b])
