"""VHPI storage as Numba kernels over flat arrays (DESIGN.md section 3).

Three structures, each a set of small functions over plain arrays:

* the row tracker: (table, row) -> dense tracked-row id (`tid`), a map of
  `hashmap.py` that is *implementation* memory, not part of the modelled
  footprint; each tracked row has one *record* (below);
* the hash indices ("virtually hashed", 3.1): one linear-probing table per
  (table, chunk position), each a map of `hashmap.py`; keys are row ids, values
  physical slot addresses;
* the physical pools ("physically indexed", 3.2): pages of chunk slots with
  the lowest-address (default) or LIFO allocation rule.

Functions here take arrays, not the engine's state tuple: Numba passes a
tuple of arrays through nested calls with a reference-count update per
field, which cost ~200 ns per lookup. Arrays with named columns
(`pools[p, PoolCol.HWM]`) keep the argument lists short.

**Records.** Everything a lookup reads about its row sits in one record of
`RecordLayout.words` int64 words, 128-byte aligned (`engine.aligned_zeros`):
the K utilities (float64, through a float64 view `rec_u` of the same memory)
first, then the packed key, the last update step, the resident prefix d and
the K index buckets of the resident chunks (int32, through an int32 view
`rec_p`). At K = 8 that is exactly two cache lines: line 0 the utilities,
line 1 the rest. The slot of each resident chunk is only needed when it is
freed, so it lives apart, in `row_slot[tid, k]`.

**Index entries** are one int64 each: the low 32 bits of splitmix64(row) in
the high half, tid + 1 in the low half (0 = empty). The hash bits give an
entry's home bucket (capacities are at most 2**31), so rehashing and
backward-shift deletion never read the rows; tid finds the record whose
cached bucket must follow a moved entry. A search needs no key compare: a
lookup searches its resident chunks (their bucket is cached: the probe length
is the cyclic distance from the home bucket plus one, no index access) and
the first absent chunk, whose row is in no entry of that index, so the
search ends at the first empty bucket; an insert takes that bucket.

All index regions live in one flat array `ix`; a region is `capacity`
entries long; doubling writes the new region (scanning the old one from slot
0 upward, as DESIGN 3.1 says) into a free region of that size left by an
earlier doubling, or at the bump pointer, and frees the old one. The Python
driver compacts and enlarges the flat arrays between kernel calls
(`engine.EngineState.grow`), so kernels never reallocate.
"""
from __future__ import annotations

from enum import IntEnum

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from ..metrics import Count
from . import hashmap
from .hashmap import EMPTY, ROW_BITS, ROW_MASK, entry_value, inline, packed_row_key, splitmix64  # noqa: F401


class Scalar(IntEnum):
    """st.sc: the store's mutable int64 scalars (the policy's counts are in `metrics.Count`)."""

    TRACKED = 0          # tracked rows (their ids are 0 .. TRACKED-1)
    IX_BUMP = 1          # next free entry of the flat index array
    IX_CAP_TOTAL = 2     # sum of index capacities (index bytes / entry bytes)
    IX_COUNT_TOTAL = 3   # index entries in use
    IX_CAP_MAX = 4       # largest index capacity
    META_BYTES = 5       # modelled metadata bytes of the tracked rows
    LIVE_TOTAL = 6       # resident chunks
    MAPPED_TOTAL = 7     # mapped pages
    STAMP = 8            # LIFO push counter
    ROUND_ROOM = 9       # the most candidates a round's cut bucket has had (the scratch for them is this big)


class Param(IntEnum):
    """st.ip: int64 parameters (read-only in kernels)."""

    INTERVAL = 0
    REPORT_EVERY = 1
    PAGE_BYTES = 2
    BUDGET = 3
    COVERS_ALL = 4
    LIFO = 5
    HAS_GRAD = 6
    HAS_LOG = 7
    COUNT_ACCESSES = 8
    ENTRY_BYTES = 9
    KMAX = 10
    NPOOLS = 11
    DENSE_TOTAL = 12
    TOTAL_ROWS = 13
    WHOLE_ROWS = 14     # granularity: 0 = FIITED (any prefix of a row's chunks), 1 = row-prune (all or none)
    R_KEY = 15          # record columns (RecordLayout): packed key, last step and d (int64 words) ...
    R_LAST = 16
    R_D = 17
    R_POS = 18          # ... and the index bucket of chunk 0 (int32 column of rec_p)
    ROUND_BLOCKS = 19   # blocks of tracked rows a round's ranking passes split into (one per thread) ...
    ROUND_BLOCK_MIN = 20  # ... each of at least this many rows


class FParam(IntEnum):
    """st.fp: float64 parameters."""

    GAMMA = 0
    MAX_LOAD = 1


class Tab(IntEnum):
    """Columns of tabs[t, :]."""

    K = 0      # chunks per row
    POOL = 1   # pool of the table
    META = 2   # modelled metadata bytes per tracked row
    C = 3      # dimensions per chunk


class Rec(IntEnum):
    """Words of a record after its K utilities (`rec[tid, R + Rec.X]` with R = RecordLayout.meta)."""

    KEY = 0    # packed (table, row)
    LAST = 1   # last utility update step
    D = 2      # resident prefix length
    POS = 3    # first of the int32 index buckets (in int32 units: rec_p[tid, 2 * (R + POS) + k])


class RecordLayout:
    """Where each field of a tracked row's record is, for K_max chunks per row (see the module docstring)."""

    def __init__(self, k_max: int):
        self.meta = k_max                                   # word of KEY: right after the K utilities
        self.key, self.last, self.d = self.meta + Rec.KEY, self.meta + Rec.LAST, self.meta + Rec.D
        self.pos = 2 * (self.meta + Rec.POS)                # int32 column of bucket 0
        words = self.meta + Rec.POS + (k_max + 1) // 2
        #: record size in int64 words: one 64-byte line if it fits, else whole 128-byte pairs of lines
        self.words = 8 if words <= 8 else -(-words // 16) * 16


class Ix(IntEnum):
    """Columns of ix_meta[i, :], one row per index (table, chunk position)."""

    OFF = 0    # first entry of its region in the flat array
    CAP = 1    # capacity
    COUNT = 2  # entries in use


class PoolCol(IntEnum):
    """Columns of pools[p, :]."""

    SPP = 0            # slots per page
    DENSE = 1          # dense bytes of the pool's tables
    HWM = 2            # pages ever mapped (high-water mark of page numbers)
    MAPPED = 3
    LIVE = 4
    HINT_FREE = 5      # no page below this one has a free slot
    HINT_UNMAPPED = 6  # no page below this one is unmapped
    LIFO_TOP = 7


UNMAPPED = -1                                      # page_live[p, page] of a page that is not mapped

#: tracked-row ids must fit the low half of an entry with room for + 1
MAX_TRACKED = (1 << 32) - 2


# ============================================================================
# Memory accounting
# ============================================================================

@inline
def note_peaks(sc, cnt, ip, transient_index_entries):
    """Raise the peaks; `transient_index_entries` is the extra capacity held during a rehash."""
    payload = sc[Scalar.MAPPED_TOTAL] * ip[Param.PAGE_BYTES]
    index = (sc[Scalar.IX_CAP_TOTAL] + transient_index_entries) * ip[Param.ENTRY_BYTES]
    cnt[Count.PAYLOAD_PEAK] = max(cnt[Count.PAYLOAD_PEAK], payload)
    cnt[Count.INDEX_PEAK] = max(cnt[Count.INDEX_PEAK], index)
    cnt[Count.TOTAL_PEAK] = max(cnt[Count.TOTAL_PEAK], payload + index + sc[Scalar.META_BYTES])


@numba.njit(cache=True)
def muldiv(a, b, c):
    """floor(a * b / c) exactly for 0 <= a, b < 2**63, 0 < c < 2**63 (128-bit product)."""
    ua, ub, uc = np.uint64(a), np.uint64(b), np.uint64(c)
    m32 = np.uint64(0xFFFFFFFF)
    a0, a1 = ua & m32, ua >> np.uint64(32)
    b0, b1 = ub & m32, ub >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & m32) + (p10 & m32)
    lo = (p00 & m32) | (mid << np.uint64(32))
    hi = p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))
    q = np.uint64(0)
    rem = np.uint64(0)
    for i in range(127, -1, -1):  # long division of hi:lo by c, one bit at a time
        top = rem >> np.uint64(63)
        rem = rem << np.uint64(1)
        if i >= 64:
            rem |= (hi >> np.uint64(i - 64)) & np.uint64(1)
        else:
            rem |= (lo >> np.uint64(i)) & np.uint64(1)
        if top != 0 or rem >= uc:
            rem -= uc
            if i < 64:
                q |= np.uint64(1) << np.uint64(i)
    return np.int64(q)


@inline
def page_cap(sc, ip, pools, pool):
    """Pages pool `pool` may map now (docs/semantics.md "Budget")."""
    avail = ip[Param.BUDGET]
    if ip[Param.COVERS_ALL]:
        avail = max(0, avail - sc[Scalar.IX_CAP_TOTAL] * ip[Param.ENTRY_BYTES] - sc[Scalar.META_BYTES])
    if ip[Param.NPOOLS] > 1:
        avail = muldiv(avail, pools[pool, PoolCol.DENSE], ip[Param.DENSE_TOTAL])
    return avail // ip[Param.PAGE_BYTES]


# ============================================================================
# Row tracker (implementation memory: not part of the modelled footprint), a map of hashmap.py:
# trk[b] = the entry of splitmix64(key) holding tid; the record's key confirms a match of the hash bits (the
# record is read next anyway).
# ============================================================================

@inline
def tracker_find(trk, rec, r_key, key):
    """Tracked-row id of packed key, or -1."""
    return tracker_find_hashed(trk, rec, r_key, key, splitmix64(key))


@inline
def tracker_find_hashed(trk, rec, r_key, key, h):
    """`tracker_find` with h = splitmix64(key) computed by the caller."""
    return hashmap.find(trk, 0, trk.shape[0] - 1, h, rec, r_key, key)


@inline
def tracker_peek_hashed(trk, h):
    """The first tracked-row id whose hash bits match h = splitmix64(key), or -1: a guess for prefetching only
    (it reads no record)."""
    return hashmap.peek(trk, 0, trk.shape[0] - 1, h)


@inline
def track_row(trk, rec, rec_u, dim_hist, tabs, sc, cnt, ip, t, r, s):
    """Tracked-row id of (t, r); a row first seen at step s starts with u = 0, last = s (DESIGN 2).

    The caller has checked capacity. A new row adds its table's metadata bytes.
    """
    key = packed_row_key(t, r)
    return track_row_hashed(trk, rec, rec_u, dim_hist, tabs, sc, cnt, ip, t, key, s, splitmix64(key), -1)


@inline
def track_row_hashed(trk, rec, rec_u, dim_hist, tabs, sc, cnt, ip, t, key, s, h, guess):
    """`track_row` of packed key with h = splitmix64(key), trying tracked-row id `guess` first (a guess the
    record confirms saves the tracker probe; -1: none)."""
    r_key = ip[Param.R_KEY]
    if 0 <= guess < sc[Scalar.TRACKED] and rec[guess, r_key] == key:
        return guess
    tid = tracker_find_hashed(trk, rec, r_key, key, h)
    if tid >= 0:
        return tid
    tid = sc[Scalar.TRACKED]
    hashmap.insert(trk, 0, trk.shape[0] - 1, h, tid)
    for k in range(tabs[t, Tab.K]):
        rec_u[tid, k] = 0.0
    rec[tid, r_key] = key
    rec[tid, ip[Param.R_LAST]] = s
    rec[tid, ip[Param.R_D]] = 0
    sc[Scalar.TRACKED] = tid + 1
    dim_hist[0] += 1
    sc[Scalar.META_BYTES] += tabs[t, Tab.META]
    note_peaks(sc, cnt, ip, 0)
    return tid


@numba.njit(cache=True)
def tracker_rebuild(new, rec, r_key, n):
    """Insert tracked rows 0 .. n-1 into an empty (larger) tracker, reading their keys from the records."""
    mask = new.shape[0] - 1
    for tid in range(n):
        hashmap.insert(new, 0, mask, splitmix64(rec[tid, r_key]), tid)


# ============================================================================
# Hash index, one per (table, chunk position): DESIGN 3.1
# Index i is a map of hashmap.py in the region ix[off : off + capacity] of the flat array: the entry of
# splitmix64(row) holding tid. rec_p[tid, pcol] is the bucket of the row's entry in the index of its chunk
# (pcol = R_POS + k).
# ============================================================================

@inline
def absent_probes(ix, ix_meta, i, h):
    """Probe length of a search of index i for a row whose hash is h and which index i does not hold:
    it ends at the first empty bucket from the home bucket."""
    mask = ix_meta[i, Ix.CAP] - 1
    _, probes = hashmap.first_empty(ix, ix_meta[i, Ix.OFF], mask, hashmap.home(h, mask))
    return probes


@inline
def resident_probes(ix_meta, i, h, pos):
    """Probe length of a search of index i that finds its key at bucket `pos` (h = splitmix64(row)).

    Linear probing examines home, home + 1, ..., pos, and the key is always
    found before any empty bucket (no entry between home and pos is ever
    emptied without shifting the key back), so no index access is needed.
    """
    mask = ix_meta[i, Ix.CAP] - 1
    return ((pos - hashmap.home(h, mask)) & mask) + 1


@inline
def region_take(ix, ix_free, sc, cap):
    """Offset of a region of `cap` entries: a free one of that size, else at the bump pointer."""
    c = trailing_zeros(np.uint64(cap))  # capacities are powers of two
    off = ix_free[c]
    if off >= 0:
        ix_free[c] = ix[off]  # the link to the next free region of this size
        return off
    off = sc[Scalar.IX_BUMP]
    sc[Scalar.IX_BUMP] = off + cap
    return off


@inline
def region_free(ix, ix_free, off, cap):
    c = trailing_zeros(np.uint64(cap))
    ix[off] = ix_free[c]
    ix_free[c] = off


@inline
def index_rehash(ix, ix_meta, ix_free, sc, cnt, ip, i, rec_p, pcol):
    """Double index i: reinsert scanning the old array from slot 0 upward (a counted rehash), moving each
    entry's cached bucket (rec_p[tid, pcol])."""
    old_off, old_cap = ix_meta[i, Ix.OFF], ix_meta[i, Ix.CAP]
    new_cap = 2 * old_cap
    new_off = region_take(ix, ix_free, sc, new_cap)
    ix[new_off:new_off + new_cap] = EMPTY
    mask = new_cap - 1
    for j in range(old_cap):
        e = ix[old_off + j]
        if e != EMPTY:
            rec_p[entry_value(e), pcol] = hashmap.place(ix, new_off, mask, e)
    note_peaks(sc, cnt, ip, new_cap)  # old and new are both held during the move
    region_free(ix, ix_free, old_off, old_cap)
    ix_meta[i, Ix.OFF] = new_off
    ix_meta[i, Ix.CAP] = new_cap
    sc[Scalar.IX_CAP_TOTAL] += old_cap
    sc[Scalar.IX_CAP_MAX] = max(sc[Scalar.IX_CAP_MAX], new_cap)
    cnt[Count.REHASHES] += 1


@inline
def index_insert(ix, ix_meta, ix_free, sc, cnt, ip, max_load, i, h, tid, rec_p, pcol):
    """Insert tracked row tid (h = splitmix64(row)) into index i, which does not hold it, doubling first if
    (count + 1) > max_load * capacity; record the bucket in rec_p[tid, pcol]."""
    if (ix_meta[i, Ix.COUNT] + 1) > max_load * ix_meta[i, Ix.CAP]:
        index_rehash(ix, ix_meta, ix_free, sc, cnt, ip, i, rec_p, pcol)
    rec_p[tid, pcol] = hashmap.insert(ix, ix_meta[i, Ix.OFF], ix_meta[i, Ix.CAP] - 1, h, tid)
    ix_meta[i, Ix.COUNT] += 1
    sc[Scalar.IX_COUNT_TOTAL] += 1


@inline
def index_delete(ix, ix_meta, sc, i, hole, rec_p, pcol):
    """Remove the entry at bucket `hole` of index i by backward shift (no tombstones), keeping the cached
    bucket (rec_p[tid, pcol]) of the entries it moves."""
    index_remove(ix, ix_meta, i, hole, rec_p, pcol)
    sc[Scalar.IX_COUNT_TOTAL] -= 1


@inline
def index_remove(ix, ix_meta, i, hole, rec_p, pcol):
    """`index_delete` but for sc[IX_COUNT_TOTAL], which the caller lowers (a round's free loop, once)."""
    off, mask = ix_meta[i, Ix.OFF], ix_meta[i, Ix.CAP] - 1
    j = hashmap.next_shift(ix, off, mask, hole, hole)
    while j >= 0:  # hashmap.remove, keeping the cached bucket of each entry it moves
        e = ix[off + j]
        ix[off + hole] = e
        rec_p[entry_value(e), pcol] = hole
        hole = j
        j = hashmap.next_shift(ix, off, mask, hole, hole)
    ix[off + hole] = EMPTY
    ix_meta[i, Ix.COUNT] -= 1


# ============================================================================
# Physical pools of pages of slots: DESIGN 3.2
# pools[p, :] per-pool scalars; page_live[p, page] live slots (UNMAPPED = -1);
# page_free_bits[p, page, w] free-slot bitmap, and in its last word the lowest word that may have a free bit;
# lifo[p, j] = (slot, stamp) stack.
# ============================================================================

@inline
def is_free(page_free_bits, pool, page, s):
    return (page_free_bits[pool, page, s // 64] >> np.uint64(s % 64)) & np.uint64(1) != 0


@inline
def lifo_entry_valid(pools, page_live, page_free_bits, slot_stamp, pool, slot, stamp):
    """A stack entry is live while its slot is free, on a mapped page, and not pushed again since."""
    spp = pools[pool, PoolCol.SPP]
    page = slot // spp
    return (page_live[pool, page] != UNMAPPED and slot_stamp[pool, slot] == stamp
            and is_free(page_free_bits, pool, page, slot % spp))


@inline
def lifo_push(pools, page_live, page_free_bits, lifo, slot_stamp, sc, pool, slot):
    top = pools[pool, PoolCol.LIFO_TOP]
    if top == lifo.shape[1]:  # full of stale entries: drop them, keeping the order of the live ones
        top = 0
        for j in range(lifo.shape[1]):
            if lifo_entry_valid(pools, page_live, page_free_bits, slot_stamp, pool, lifo[pool, j, 0],
                                lifo[pool, j, 1]):
                lifo[pool, top, 0] = lifo[pool, j, 0]
                lifo[pool, top, 1] = lifo[pool, j, 1]
                top += 1
    sc[Scalar.STAMP] += 1
    slot_stamp[pool, slot] = sc[Scalar.STAMP]
    lifo[pool, top, 0] = slot
    lifo[pool, top, 1] = sc[Scalar.STAMP]
    pools[pool, PoolCol.LIFO_TOP] = top + 1


@inline
def map_page(pools, page_live, page_free_bits, lifo, slot_stamp, sc, cnt, ip, pool):
    """Map the lowest unmapped page number of `pool` with all slots free; return it."""
    p = pools[pool, PoolCol.HINT_UNMAPPED]
    while page_live[pool, p] != UNMAPPED:
        p += 1
    page_live[pool, p] = 0
    spp = pools[pool, PoolCol.SPP]
    for w in range((spp + 63) // 64):
        n = min(64, spp - 64 * w)
        page_free_bits[pool, p, w] = ~np.uint64(0) if n == 64 else (np.uint64(1) << np.uint64(n)) - np.uint64(1)
    page_free_bits[pool, p, page_free_bits.shape[2] - 1] = 0  # the word hint
    pools[pool, PoolCol.HINT_UNMAPPED] = p + 1
    pools[pool, PoolCol.HWM] = max(pools[pool, PoolCol.HWM], p + 1)
    pools[pool, PoolCol.HINT_FREE] = min(pools[pool, PoolCol.HINT_FREE], p)
    pools[pool, PoolCol.MAPPED] += 1
    sc[Scalar.MAPPED_TOTAL] += 1
    if ip[Param.LIFO]:
        for s in range(spp - 1, -1, -1):  # slot 0 ends on top of the stack
            lifo_push(pools, page_live, page_free_bits, lifo, slot_stamp, sc, pool, p * spp + s)
    note_peaks(sc, cnt, ip, 0)
    return p


@inline
def take_slot(pools, page_live, page_free_bits, sc, cnt, pool, page, s):
    page_free_bits[pool, page, s // 64] &= ~(np.uint64(1) << np.uint64(s % 64))
    page_live[pool, page] += 1
    pools[pool, PoolCol.LIVE] += 1
    sc[Scalar.LIVE_TOTAL] += 1
    cnt[Count.ALLOCATIONS] += 1
    return page * pools[pool, PoolCol.SPP] + s


@inline
def lowest_free_in_page(page_free_bits, pool, page):
    """The lowest free slot of a page with one, scanning from its word hint (no free bit below it)."""
    hint = page_free_bits.shape[2] - 1
    for w in range(np.int64(page_free_bits[pool, page, hint]), hint):
        bits = page_free_bits[pool, page, w]
        if bits != 0:
            page_free_bits[pool, page, hint] = w
            return 64 * w + trailing_zeros(bits)
    return -1


@inline
def alloc_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, cnt, ip, pool):
    """A slot address in `pool`, or -1 when the budget allows no more pages.

    `lowest`: the free slot with the lowest address; `lifo`: the most recently
    freed one. Either way a page is mapped only when all mapped pages are full.
    """
    spp = pools[pool, PoolCol.SPP]
    if ip[Param.LIFO]:
        while pools[pool, PoolCol.LIFO_TOP] > 0:
            top = pools[pool, PoolCol.LIFO_TOP] - 1
            pools[pool, PoolCol.LIFO_TOP] = top
            slot = lifo[pool, top, 0]
            if lifo_entry_valid(pools, page_live, page_free_bits, slot_stamp, pool, slot, lifo[pool, top, 1]):
                return take_slot(pools, page_live, page_free_bits, sc, cnt, pool, slot // spp, slot % spp)
    else:
        p = pools[pool, PoolCol.HINT_FREE]
        hwm = pools[pool, PoolCol.HWM]
        while p < hwm and (page_live[pool, p] == UNMAPPED or page_live[pool, p] == spp):
            p += 1
        pools[pool, PoolCol.HINT_FREE] = p
        if p < hwm:
            return take_slot(pools, page_live, page_free_bits, sc, cnt, pool, p,
                             lowest_free_in_page(page_free_bits, pool, p))
    if pools[pool, PoolCol.MAPPED] >= page_cap(sc, ip, pools, pool):
        return -1
    p = map_page(pools, page_live, page_free_bits, lifo, slot_stamp, sc, cnt, ip, pool)
    if ip[Param.LIFO]:  # the new page's slot 0 is on top of the stack
        pools[pool, PoolCol.LIFO_TOP] -= 1
    return take_slot(pools, page_live, page_free_bits, sc, cnt, pool, p, 0)


@inline
def free_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, cnt, ip, pool, slot):
    page = release_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, pool, slot, pools[pool, PoolCol.SPP],
                        ip[Param.LIFO] != 0)
    pools[pool, PoolCol.LIVE] -= 1
    sc[Scalar.LIVE_TOTAL] -= 1
    cnt[Count.FREES] += 1
    pools[pool, PoolCol.HINT_FREE] = min(pools[pool, PoolCol.HINT_FREE], page)


@inline
def release_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, pool, slot, spp, is_lifo):
    """`free_slot` but for the pool's and the store's counts and the pool's free-page hint, which the caller
    updates (a round's free loop, once); returns the slot's page. spp = pools[pool, SPP], is_lifo = the
    allocator is LIFO (read once by the caller)."""
    page, s = slot // spp, slot % spp
    page_free_bits[pool, page, s // 64] |= np.uint64(1) << np.uint64(s % 64)
    hint = page_free_bits.shape[2] - 1
    page_free_bits[pool, page, hint] = min(page_free_bits[pool, page, hint], np.uint64(s // 64))
    page_live[pool, page] -= 1
    if is_lifo:
        lifo_push(pools, page_live, page_free_bits, lifo, slot_stamp, sc, pool, slot)
    return page


@numba.njit(cache=True)
def unmap_empty_pages(pools, page_live, sc):
    """Unmap every mapped page with no live slot, lowest first (end of a round)."""
    for pool in range(pools.shape[0]):
        for p in range(pools[pool, PoolCol.HWM]):
            if page_live[pool, p] == 0:
                page_live[pool, p] = UNMAPPED
                pools[pool, PoolCol.MAPPED] -= 1
                sc[Scalar.MAPPED_TOTAL] -= 1
                pools[pool, PoolCol.HINT_UNMAPPED] = min(pools[pool, PoolCol.HINT_UNMAPPED], p)
