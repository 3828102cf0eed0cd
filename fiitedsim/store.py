"""VHPI storage as Numba kernels over flat arrays (DESIGN.md section 3).

Three structures, each a set of plain functions over arrays of the engine
state (`fiitedsim.engine.State`, a namedtuple so kernels stay cacheable):

* the row tracker: (table, row) -> dense tracked-row id, an open-addressing
  map that is *implementation* memory, not part of the modelled footprint;
* the hash indices ("virtually hashed", 3.1): one linear-probing table per
  (table, chunk position), keys are row ids, values physical slot addresses;
* the physical pools ("physically indexed", 3.2): pages of chunk slots with
  the lowest-address (default) or LIFO allocation rule.

All index regions live in one flat key/value array pair. A region is
`capacity` entries long; doubling writes the new region at the bump pointer
(scanning the old one from slot 0 upward, as DESIGN 3.1 says) and abandons the
old one. The Python driver compacts and enlarges the flat arrays between
kernel calls, so the kernels never reallocate them.

Scalars that kernels update live in `st.sc` (int64) at the indices below.
"""
from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

# ---- indices into st.sc (mutable int64 scalars) ----------------------------
LOOKUPS, ROW_HITS, CHUNK_HITS, CHUNKS_REQUESTED, FULL_HITS = 0, 1, 2, 3, 4
ALLOCATIONS, FREES, REHASHES, DENIED_FULL, DENIED_THRESHOLD = 5, 6, 7, 8, 9
SEARCHES, PROBES, MAX_PROBE, ROUNDS, TRACKED = 10, 11, 12, 13, 14
IX_BUMP, IX_CAP_TOTAL, IX_COUNT_TOTAL, IX_CAP_MAX, META_BYTES = 15, 16, 17, 18, 19
PAYLOAD_PEAK, INDEX_PEAK, TOTAL_PEAK, PREV_STEP, HAVE_PREV = 20, 21, 22, 23, 24
SNAP_N, LIVE_TOTAL, MAPPED_TOTAL, STAMP = 25, 26, 27, 28
N_SC = 29

# ---- indices into st.ip (int64 parameters, read-only in kernels) -----------
P_INTERVAL, P_REPORT_EVERY, P_PAGE_BYTES, P_BUDGET, P_COVERS_ALL = 0, 1, 2, 3, 4
P_LIFO, P_HAS_GRAD, P_HAS_LOG, P_COUNT_ACCESSES, P_ENTRY_BYTES = 5, 6, 7, 8, 9
P_KMAX, P_NPOOLS, P_DENSE_TOTAL, P_TOTAL_ROWS, P_ROW_GRAIN = 10, 11, 12, 13, 14
N_IP = 15

ROW_BITS = 40
ROW_MASK = (1 << ROW_BITS) - 1
EMPTY = 0  # keys are stored as row + 1 so that 0 marks an empty bucket

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, inline="always")
def splitmix64(x):
    """The standard splitmix64 finaliser of DESIGN 3.1 (arithmetic mod 2**64)."""
    z = np.uint64(x)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def home_bucket(row, capacity):
    return np.int64(splitmix64(row) & np.uint64(capacity - 1))


@numba.njit(cache=True, inline="always")
def packed_row_key(t, r):
    """(table, row) as one int64: table in bits 40.., row in bits 0..39."""
    return (np.int64(t) << ROW_BITS) | np.int64(r)


# ============================================================================
# Row tracker (implementation memory: not part of the modelled footprint)
# ============================================================================

@numba.njit(cache=True, inline="always")
def tracker_find(st, key):
    """Tracked-row id of packed key, or -1."""
    trk_keys, trk_vals = st.trk_keys, st.trk_vals
    mask = trk_keys.size - 1
    b = np.int64(splitmix64(key) & np.uint64(mask))
    while True:
        k = trk_keys[b]
        if k == EMPTY:
            return -1
        if k == key + 1:
            return trk_vals[b]
        b = (b + 1) & mask


@numba.njit(cache=True, inline="always")
def tracker_add(st, t, r, s):
    """Track a row first seen at step s: u = 0, last = s, d = 0 (DESIGN 2).

    The caller has checked capacity. Metadata bytes grow by the table's
    per-row cost; the peak total is updated.
    """
    trk_keys, sc, trk_vals, row_key, row_u = st.trk_keys, st.sc, st.trk_vals, st.row_key, st.row_u
    row_last, row_d, dim_hist, tab_meta = st.row_last, st.row_d, st.dim_hist, st.tab_meta
    key = packed_row_key(t, r)
    mask = trk_keys.size - 1
    b = np.int64(splitmix64(key) & np.uint64(mask))
    while trk_keys[b] != EMPTY:
        b = (b + 1) & mask
    tid = sc[TRACKED]
    trk_keys[b] = key + 1
    trk_vals[b] = tid
    row_key[tid] = key
    for k in range(row_u.shape[1]):
        row_u[tid, k] = 0.0
    row_last[tid] = s
    row_d[tid] = 0
    sc[TRACKED] = tid + 1
    dim_hist[0] += 1
    sc[META_BYTES] += tab_meta[t]
    note_peaks(st, 0)
    return tid


@numba.njit(cache=True, inline="always")
def tracker_row(st, t, r, s):
    """Tracked-row id of (t, r), tracking it first if it is new."""
    tid = tracker_find(st, packed_row_key(t, r))
    if tid < 0:
        tid = tracker_add(st, t, r, s)
    return tid


@numba.njit(cache=True)
def tracker_rebuild(keys_old, vals_old, keys_new, vals_new):
    """Move all tracker entries into a larger (zeroed) table."""
    mask = keys_new.size - 1
    for i in range(keys_old.size):
        k = keys_old[i]
        if k != EMPTY:
            b = np.int64(splitmix64(k - 1) & np.uint64(mask))
            while keys_new[b] != EMPTY:
                b = (b + 1) & mask
            keys_new[b] = k
            vals_new[b] = vals_old[i]


# ============================================================================
# Memory accounting
# ============================================================================

@numba.njit(cache=True, inline="always")
def payload_bytes(st):
    sc, ip = st.sc, st.ip
    return sc[MAPPED_TOTAL] * ip[P_PAGE_BYTES]


@numba.njit(cache=True, inline="always")
def index_bytes(st):
    sc, ip = st.sc, st.ip
    return sc[IX_CAP_TOTAL] * ip[P_ENTRY_BYTES]


@numba.njit(cache=True, inline="always")
def note_peaks(st, transient_index_entries):
    """Raise the peaks; `transient_index_entries` is the extra capacity held during a rehash."""
    sc, ip = st.sc, st.ip
    payload = payload_bytes(st)
    index = (sc[IX_CAP_TOTAL] + transient_index_entries) * ip[P_ENTRY_BYTES]
    if payload > sc[PAYLOAD_PEAK]:
        sc[PAYLOAD_PEAK] = payload
    if index > sc[INDEX_PEAK]:
        sc[INDEX_PEAK] = index
    total = payload + index + sc[META_BYTES]
    if total > sc[TOTAL_PEAK]:
        sc[TOTAL_PEAK] = total


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
    # long division of hi:lo by c, one bit at a time
    q = np.uint64(0)
    rem = np.uint64(0)
    for i in range(127, -1, -1):
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


@numba.njit(cache=True, inline="always")
def page_cap(st, pool):
    """Pages pool `pool` may map now (docs/semantics.md "Budget")."""
    ip, sc, pool_dense = st.ip, st.sc, st.pool_dense
    avail = ip[P_BUDGET]
    if ip[P_COVERS_ALL]:
        avail -= index_bytes(st) + sc[META_BYTES]
        if avail < 0:
            avail = 0
    if ip[P_NPOOLS] > 1:
        avail = muldiv(avail, pool_dense[pool], ip[P_DENSE_TOTAL])
    return avail // ip[P_PAGE_BYTES]


# ============================================================================
# Hash index, one per (table, chunk position): DESIGN 3.1
# ============================================================================

@numba.njit(cache=True, inline="always")
def index_search(st, i, row):
    """Bucket of `row` in index i (or the empty bucket ending the probe) and the probe length."""
    ix_off, ix_cap, ix_keys = st.ix_off, st.ix_cap, st.ix_keys
    off = ix_off[i]
    mask = ix_cap[i] - 1
    b = home_bucket(row, ix_cap[i])
    probes = 1
    while True:
        key = ix_keys[off + b]
        if key == EMPTY or key == row + 1:
            return b, probes
        b = (b + 1) & mask
        probes += 1


@numba.njit(cache=True, inline="always")
def index_rehash(st, i):
    """Double index i: reinsert scanning the old array from slot 0 upward (a counted rehash)."""
    ix_off, ix_cap, sc, ix_keys, ix_vals = st.ix_off, st.ix_cap, st.sc, st.ix_keys, st.ix_vals
    old_off, old_cap = ix_off[i], ix_cap[i]
    new_cap = 2 * old_cap
    new_off = sc[IX_BUMP]
    ix_keys[new_off:new_off + new_cap] = EMPTY
    mask = new_cap - 1
    for j in range(old_cap):
        key = ix_keys[old_off + j]
        if key != EMPTY:
            b = home_bucket(key - 1, new_cap)
            while ix_keys[new_off + b] != EMPTY:
                b = (b + 1) & mask
            ix_keys[new_off + b] = key
            ix_vals[new_off + b] = ix_vals[old_off + j]
    note_peaks(st, new_cap)  # old + new are both held during the move
    ix_off[i] = new_off
    ix_cap[i] = new_cap
    sc[IX_BUMP] = new_off + new_cap
    sc[IX_CAP_TOTAL] += old_cap
    if new_cap > sc[IX_CAP_MAX]:
        sc[IX_CAP_MAX] = new_cap
    sc[REHASHES] += 1


@numba.njit(cache=True, inline="always")
def index_insert(st, i, row, slot):
    """Insert row -> slot into index i, doubling first if (count + 1) > max_load * capacity."""
    ix_count, max_load, ix_cap, ix_keys, ix_off = st.ix_count, st.max_load, st.ix_cap, st.ix_keys, st.ix_off
    ix_vals, sc = st.ix_vals, st.sc
    if (ix_count[i] + 1) > max_load * ix_cap[i]:
        index_rehash(st, i)
    b, _ = index_search(st, i, row)
    ix_keys[ix_off[i] + b] = row + 1
    ix_vals[ix_off[i] + b] = slot
    ix_count[i] += 1
    sc[IX_COUNT_TOTAL] += 1


@numba.njit(cache=True, inline="always")
def index_delete(st, i, row):
    """Remove `row` from index i by backward shift (no tombstones); returns its slot."""
    ix_off, ix_cap, ix_vals, ix_keys, ix_count = st.ix_off, st.ix_cap, st.ix_vals, st.ix_keys, st.ix_count
    sc = st.sc
    off, cap = ix_off[i], ix_cap[i]
    mask = cap - 1
    hole, _ = index_search(st, i, row)
    slot = ix_vals[off + hole]
    j = hole
    while True:
        j = (j + 1) & mask
        key = ix_keys[off + j]
        if key == EMPTY:
            break
        h = home_bucket(key - 1, cap)
        # the entry at j may move into the hole unless its home lies cyclically in (hole, j]
        if hole <= j:
            stays = hole < h <= j
        else:
            stays = h > hole or h <= j
        if not stays:
            ix_keys[off + hole] = key
            ix_vals[off + hole] = ix_vals[off + j]
            hole = j
    ix_keys[off + hole] = EMPTY
    ix_count[i] -= 1
    sc[IX_COUNT_TOTAL] -= 1
    return slot


# ============================================================================
# Physical pools of pages of slots: DESIGN 3.2
# ============================================================================

@numba.njit(cache=True, inline="always")
def map_page(st, pool):
    """Map the lowest unmapped page number of `pool`; return it."""
    pool_hint_unmapped, page_mapped, page_live = st.pool_hint_unmapped, st.page_mapped, st.page_live
    pool_spp, page_free_bits, pool_hwm = st.pool_spp, st.page_free_bits, st.pool_hwm
    pool_hint_free, pool_mapped, sc, ip = st.pool_hint_free, st.pool_mapped, st.sc, st.ip
    p = pool_hint_unmapped[pool]
    while page_mapped[pool, p]:
        p += 1
    page_mapped[pool, p] = 1
    page_live[pool, p] = 0
    spp = pool_spp[pool]
    words = (spp + 63) // 64
    for w in range(words):
        bits = min(64, spp - 64 * w)
        page_free_bits[pool, p, w] = ~np.uint64(0) if bits == 64 else (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    pool_hint_unmapped[pool] = p + 1
    if p + 1 > pool_hwm[pool]:
        pool_hwm[pool] = p + 1
    if p < pool_hint_free[pool]:
        pool_hint_free[pool] = p
    pool_mapped[pool] += 1
    sc[MAPPED_TOTAL] += 1
    if ip[P_LIFO]:
        for slot in range(spp - 1, -1, -1):  # slot 0 ends on top of the stack
            lifo_push(st, pool, p * spp + slot)
    note_peaks(st, 0)
    return p


@numba.njit(cache=True, inline="always")
def take_slot(st, pool, page, slot_in_page):
    pool_spp, page_free_bits, page_live = st.pool_spp, st.page_free_bits, st.page_live
    pool_live, sc = st.pool_live, st.sc
    spp = pool_spp[pool]
    w, bit = slot_in_page // 64, slot_in_page % 64
    page_free_bits[pool, page, w] &= ~(np.uint64(1) << np.uint64(bit))
    page_live[pool, page] += 1
    pool_live[pool] += 1
    sc[LIVE_TOTAL] += 1
    sc[ALLOCATIONS] += 1
    return page * spp + slot_in_page


@numba.njit(cache=True, inline="always")
def lowest_free_in_page(st, pool, page):
    pool_spp, page_free_bits = st.pool_spp, st.page_free_bits
    words = (pool_spp[pool] + 63) // 64
    for w in range(words):
        bits = page_free_bits[pool, page, w]
        if bits != 0:
            return 64 * w + trailing_zeros(bits)
    return -1


@numba.njit(cache=True, inline="always")
def alloc_lowest(st, pool):
    """The free slot with the lowest address; map a page only when all mapped pages are full."""
    pool_spp, pool_hint_free, pool_hwm = st.pool_spp, st.pool_hint_free, st.pool_hwm
    page_mapped, page_live, pool_mapped = st.page_mapped, st.page_live, st.pool_mapped
    spp = pool_spp[pool]
    p = pool_hint_free[pool]
    hwm = pool_hwm[pool]
    while p < hwm and (page_mapped[pool, p] == 0 or page_live[pool, p] == spp):
        p += 1
    pool_hint_free[pool] = p
    if p < hwm:
        return take_slot(st, pool, p, lowest_free_in_page(st, pool, p))
    if pool_mapped[pool] >= page_cap(st, pool):
        return -1
    p = map_page(st, pool)
    return take_slot(st, pool, p, 0)


@numba.njit(cache=True, inline="always")
def lifo_push(st, pool, slot):
    lifo_top, lifo_slot, sc, slot_stamp = st.lifo_top, st.lifo_slot, st.sc, st.slot_stamp
    lifo_stamp = st.lifo_stamp
    top = lifo_top[pool]
    if top == lifo_slot.shape[1]:
        lifo_compact(st, pool)
        top = lifo_top[pool]
    sc[STAMP] += 1
    slot_stamp[pool, slot] = sc[STAMP]
    lifo_slot[pool, top] = slot
    lifo_stamp[pool, top] = sc[STAMP]
    lifo_top[pool] = top + 1


@numba.njit(cache=True, inline="always")
def lifo_entry_valid(st, pool, slot, stamp):
    """A stack entry is live while its slot is free, on a mapped page, and not pushed again since."""
    pool_spp, page_mapped, slot_stamp = st.pool_spp, st.page_mapped, st.slot_stamp
    page_free_bits = st.page_free_bits
    spp = pool_spp[pool]
    page, s = slot // spp, slot % spp
    if page_mapped[pool, page] == 0 or slot_stamp[pool, slot] != stamp:
        return False
    return (page_free_bits[pool, page, s // 64] >> np.uint64(s % 64)) & np.uint64(1) != 0


@numba.njit(cache=True, inline="always")
def lifo_compact(st, pool):
    """Drop stale stack entries, keeping the order of the live ones."""
    lifo_top, lifo_slot, lifo_stamp = st.lifo_top, st.lifo_slot, st.lifo_stamp
    out = 0
    for j in range(lifo_top[pool]):
        slot, stamp = lifo_slot[pool, j], lifo_stamp[pool, j]
        if lifo_entry_valid(st, pool, slot, stamp):
            lifo_slot[pool, out] = slot
            lifo_stamp[pool, out] = stamp
            out += 1
    lifo_top[pool] = out


@numba.njit(cache=True, inline="always")
def alloc_lifo(st, pool):
    """The most recently freed slot among mapped pages (docs/semantics.md "Allocator")."""
    pool_spp, lifo_top, lifo_slot, lifo_stamp = st.pool_spp, st.lifo_top, st.lifo_slot, st.lifo_stamp
    pool_mapped = st.pool_mapped
    spp = pool_spp[pool]
    while lifo_top[pool] > 0:
        top = lifo_top[pool] - 1
        slot, stamp = lifo_slot[pool, top], lifo_stamp[pool, top]
        lifo_top[pool] = top
        if lifo_entry_valid(st, pool, slot, stamp):
            return take_slot(st, pool, slot // spp, slot % spp)
    if pool_mapped[pool] >= page_cap(st, pool):
        return -1
    map_page(st, pool)  # pushes the new page's slots with slot 0 on top
    top = lifo_top[pool] - 1
    lifo_top[pool] = top
    slot = lifo_slot[pool, top]
    return take_slot(st, pool, slot // spp, slot % spp)


@numba.njit(cache=True, inline="always")
def alloc_slot(st, pool):
    """A slot address in `pool`, or -1 when the budget allows no more pages."""
    ip = st.ip
    if ip[P_LIFO]:
        return alloc_lifo(st, pool)
    return alloc_lowest(st, pool)


@numba.njit(cache=True, inline="always")
def free_slot(st, pool, slot):
    pool_spp, page_free_bits, page_live = st.pool_spp, st.page_free_bits, st.page_live
    pool_live, sc, pool_hint_free, ip = st.pool_live, st.sc, st.pool_hint_free, st.ip
    spp = pool_spp[pool]
    page, s = slot // spp, slot % spp
    page_free_bits[pool, page, s // 64] |= np.uint64(1) << np.uint64(s % 64)
    page_live[pool, page] -= 1
    pool_live[pool] -= 1
    sc[LIVE_TOTAL] -= 1
    sc[FREES] += 1
    if page < pool_hint_free[pool]:
        pool_hint_free[pool] = page
    if ip[P_LIFO]:
        lifo_push(st, pool, slot)


@numba.njit(cache=True)
def unmap_empty_pages(st):
    """Unmap every mapped page with no live slot, lowest first (end of a round)."""
    pool_spp, pool_hwm, page_mapped, page_live = st.pool_spp, st.pool_hwm, st.page_mapped, st.page_live
    pool_mapped, sc, pool_hint_unmapped = st.pool_mapped, st.sc, st.pool_hint_unmapped
    for pool in range(pool_spp.size):
        for p in range(pool_hwm[pool]):
            if page_mapped[pool, p] and page_live[pool, p] == 0:
                page_mapped[pool, p] = 0
                pool_mapped[pool] -= 1
                sc[MAPPED_TOTAL] -= 1
                if p < pool_hint_unmapped[pool]:
                    pool_hint_unmapped[pool] = p
