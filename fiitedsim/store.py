"""VHPI storage as Numba kernels over flat arrays (DESIGN.md section 3).

Three structures, each a set of small functions over plain arrays:

* the row tracker: (table, row) -> dense tracked-row id, an open-addressing
  map that is *implementation* memory, not part of the modelled footprint;
* the hash indices ("virtually hashed", 3.1): one linear-probing table per
  (table, chunk position); keys are row ids, values physical slot addresses;
* the physical pools ("physically indexed", 3.2): pages of chunk slots with
  the lowest-address (default) or LIFO allocation rule.

Functions here take arrays, not the engine's state tuple: Numba passes a
tuple of arrays through nested calls with a reference-count update per
field, which cost ~200 ns per lookup. Arrays with named columns (`rows[tid,
LAST]`, `pools[p, HWM]`) keep the argument lists short.

All index regions live in one flat array `ix` of (key, slot, tid) entries,
so an insert or delete touches one cache line, not several. `tid`, the
tracked-row id of the entry, lets the engine keep `row_pos[tid, k]`: the
bucket of each resident chunk in its index. Linear probing never moves an
entry on insert, and backward-shift deletion and rehashing update `row_pos`
of the entries they move, so the probe length of a search for a resident
chunk is the cyclic distance from its home bucket to `row_pos` plus one,
with no index access; only the search for the first absent chunk walks the
index. A region is `capacity`
entries long; doubling writes the new region at the bump pointer
(scanning the old one from slot 0 upward, as DESIGN 3.1 says) and abandons the
old one. The Python driver compacts and enlarges the flat arrays between
kernel calls (`engine.EngineState.grow`), so kernels never reallocate.
"""
from __future__ import annotations

from enum import IntEnum

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from .metrics import Count


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


class Row(IntEnum):
    """Columns of rows[tid, :]."""

    KEY = 0    # packed (table, row)
    LAST = 1   # last utility update step
    D = 2      # resident prefix length


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


class Entry(IntEnum):
    """Columns of ix[entry, :]: row + 1 (0 = empty), slot, tracked-row id."""

    KEY = 0
    SLOT = 1
    TID = 2


IX_COLS = len(Entry)
UNMAPPED = -1                                      # page_live[p, page] of a page that is not mapped

ROW_BITS = 40
ROW_MASK = (1 << ROW_BITS) - 1
EMPTY = 0  # keys are stored as row + 1 so that 0 marks an empty bucket

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
inline = numba.njit(cache=True, inline="always")


@inline
def splitmix64(x):
    """The standard splitmix64 finaliser of DESIGN 3.1 (arithmetic mod 2**64)."""
    z = np.uint64(x)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@inline
def home_bucket(row, capacity):
    return np.int64(splitmix64(row) & np.uint64(capacity - 1))


@inline
def packed_row_key(t, r):
    """(table, row) as one int64: table in bits 40.., row in bits 0..39."""
    return (np.int64(t) << ROW_BITS) | np.int64(r)


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
# Row tracker (implementation memory: not part of the modelled footprint)
# ============================================================================

@inline
def tracker_find(trk, key):
    """Tracked-row id of packed key, or -1. trk[b] = (key + 1, tid), 0 = empty."""
    mask = trk.shape[0] - 1
    b = np.int64(splitmix64(key) & np.uint64(mask))
    while True:
        k = trk[b, 0]
        if k == EMPTY:
            return -1
        if k == key + 1:
            return trk[b, 1]
        b = (b + 1) & mask


@inline
def track_row(trk, rows, row_u, dim_hist, tabs, sc, cnt, ip, t, r, s):
    """Tracked-row id of (t, r); a row first seen at step s starts with u = 0, last = s (DESIGN 2).

    The caller has checked capacity. A new row adds its table's metadata bytes.
    """
    key = packed_row_key(t, r)
    tid = tracker_find(trk, key)
    if tid >= 0:
        return tid
    mask = trk.shape[0] - 1
    b = np.int64(splitmix64(key) & np.uint64(mask))
    while trk[b, 0] != EMPTY:
        b = (b + 1) & mask
    tid = sc[Scalar.TRACKED]
    trk[b, 0] = key + 1
    trk[b, 1] = tid
    rows[tid, Row.KEY] = key
    rows[tid, Row.LAST] = s
    rows[tid, Row.D] = 0
    row_u[tid, :] = 0.0
    sc[Scalar.TRACKED] = tid + 1
    dim_hist[0] += 1
    sc[Scalar.META_BYTES] += tabs[t, Tab.META]
    note_peaks(sc, cnt, ip, 0)
    return tid


@numba.njit(cache=True)
def tracker_rebuild(old, new):
    """Move all tracker entries into a larger (zeroed) table."""
    mask = new.shape[0] - 1
    for i in range(old.shape[0]):
        if old[i, 0] != EMPTY:
            b = np.int64(splitmix64(old[i, 0] - 1) & np.uint64(mask))
            while new[b, 0] != EMPTY:
                b = (b + 1) & mask
            new[b, 0] = old[i, 0]
            new[b, 1] = old[i, 1]


# ============================================================================
# Hash index, one per (table, chunk position): DESIGN 3.1
# ============================================================================

@inline
def index_search(ix, ix_meta, i, row):
    """Bucket of `row` in index i (or the empty bucket ending the probe) and the probe length."""
    return index_search_hashed(ix, ix_meta, i, row, splitmix64(row))


@inline
def index_search_hashed(ix, ix_meta, i, row, h):
    """`index_search` with h = splitmix64(row) computed by the caller (once for all K indices of a row)."""
    off, cap = ix_meta[i, Ix.OFF], ix_meta[i, Ix.CAP]
    mask = cap - 1
    b = np.int64(h & np.uint64(mask))
    probes = 1
    while True:
        key = ix[off + b, Entry.KEY]
        if key == EMPTY or key == row + 1:
            return b, probes
        b = (b + 1) & mask
        probes += 1


@inline
def resident_probes(ix_meta, i, h, pos):
    """Probe length of a search of index i that finds its key at bucket `pos` (h = splitmix64(row)).

    Linear probing examines home, home + 1, ..., pos, and the key is always
    found before any empty bucket (no entry between home and pos is ever
    emptied without shifting the key back), so no index access is needed.
    """
    mask = ix_meta[i, Ix.CAP] - 1
    return ((pos - np.int64(h & np.uint64(mask))) & mask) + 1


@inline
def index_rehash(ix, ix_meta, sc, cnt, ip, i, row_pos, k):
    """Double index i (chunk position k): reinsert scanning the old array from slot 0 upward (a counted rehash)."""
    old_off, old_cap = ix_meta[i, Ix.OFF], ix_meta[i, Ix.CAP]
    new_cap = 2 * old_cap
    new_off = sc[Scalar.IX_BUMP]
    ix[new_off:new_off + new_cap, Entry.KEY] = EMPTY
    mask = new_cap - 1
    for j in range(old_cap):
        key = ix[old_off + j, Entry.KEY]
        if key != EMPTY:
            b = home_bucket(key - 1, new_cap)
            while ix[new_off + b, Entry.KEY] != EMPTY:
                b = (b + 1) & mask
            ix[new_off + b, Entry.KEY] = key
            ix[new_off + b, Entry.SLOT] = ix[old_off + j, Entry.SLOT]
            tid = ix[old_off + j, Entry.TID]
            ix[new_off + b, Entry.TID] = tid
            row_pos[tid, k] = b
    note_peaks(sc, cnt, ip, new_cap)  # old and new are both held during the move
    ix_meta[i, Ix.OFF] = new_off
    ix_meta[i, Ix.CAP] = new_cap
    sc[Scalar.IX_BUMP] = new_off + new_cap
    sc[Scalar.IX_CAP_TOTAL] += old_cap
    sc[Scalar.IX_CAP_MAX] = max(sc[Scalar.IX_CAP_MAX], new_cap)
    cnt[Count.REHASHES] += 1


@inline
def index_insert(ix, ix_meta, sc, cnt, ip, max_load, i, row, slot, tid, row_pos, k):
    """Insert row -> slot into index i (chunk position k of tracked row tid), doubling first if
    (count + 1) > max_load * capacity; record the bucket in row_pos[tid, k]."""
    if (ix_meta[i, Ix.COUNT] + 1) > max_load * ix_meta[i, Ix.CAP]:
        index_rehash(ix, ix_meta, sc, cnt, ip, i, row_pos, k)
    b, _ = index_search(ix, ix_meta, i, row)
    e = ix_meta[i, Ix.OFF] + b
    ix[e, Entry.KEY] = row + 1
    ix[e, Entry.SLOT] = slot
    ix[e, Entry.TID] = tid
    row_pos[tid, k] = b
    ix_meta[i, Ix.COUNT] += 1
    sc[Scalar.IX_COUNT_TOTAL] += 1


@inline
def index_delete(ix, ix_meta, sc, i, hole, row_pos, k):
    """Remove the entry at bucket `hole` of index i (chunk position k) by backward shift (no
    tombstones), keeping row_pos of the entries it moves; return the removed entry's slot."""
    off, cap = ix_meta[i, Ix.OFF], ix_meta[i, Ix.CAP]
    mask = cap - 1
    slot = ix[off + hole, Entry.SLOT]
    j = hole
    while True:
        j = (j + 1) & mask
        key = ix[off + j, Entry.KEY]
        if key == EMPTY:
            break
        h = home_bucket(key - 1, cap)
        # the entry at j stays unless its home lies cyclically outside (hole, j]
        stays = (hole < h <= j) if hole <= j else (h > hole or h <= j)
        if not stays:
            tid = ix[off + j, Entry.TID]
            ix[off + hole, Entry.KEY] = key
            ix[off + hole, Entry.SLOT] = ix[off + j, Entry.SLOT]
            ix[off + hole, Entry.TID] = tid
            row_pos[tid, k] = hole
            hole = j
    ix[off + hole, Entry.KEY] = EMPTY
    ix_meta[i, Ix.COUNT] -= 1
    sc[Scalar.IX_COUNT_TOTAL] -= 1
    return slot


# ============================================================================
# Physical pools of pages of slots: DESIGN 3.2
# pools[p, :] per-pool scalars; page_live[p, page] live slots (UNMAPPED = -1);
# page_free_bits[p, page, w] free-slot bitmap; lifo[p, j] = (slot, stamp) stack.
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
    for w in range(page_free_bits.shape[2]):
        bits = page_free_bits[pool, page, w]
        if bits != 0:
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
    spp = pools[pool, PoolCol.SPP]
    page, s = slot // spp, slot % spp
    page_free_bits[pool, page, s // 64] |= np.uint64(1) << np.uint64(s % 64)
    page_live[pool, page] -= 1
    pools[pool, PoolCol.LIVE] -= 1
    sc[Scalar.LIVE_TOTAL] -= 1
    cnt[Count.FREES] += 1
    pools[pool, PoolCol.HINT_FREE] = min(pools[pool, PoolCol.HINT_FREE], page)
    if ip[Param.LIFO]:
        lifo_push(pools, page_live, page_free_bits, lifo, slot_stamp, sc, pool, slot)


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
