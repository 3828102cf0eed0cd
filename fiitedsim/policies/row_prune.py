"""`row-prune`: the FIITED machinery at row granularity (DESIGN.md section 4).

The in-training row-pruning method the FIITED paper compares against: a row
holds all K chunks or none, and a row's utility is the sum of its chunks'
utilities (docs/semantics.md "Row pruning (row-prune)"). Everything else is
FIITED's: the same engine state, per-chunk utility updates, importance
records, VHPI indices and paged pools, round and snapshot placement and
metrics. This module therefore only has its own `access` (whole-row
admission), `select_rows` and `pruning_round`, and imports the rest from
`fiited.py`. It follows `RowPruneModel` in `fiitedsim/reference.py` step by
step.

The round finds its cut like FIITED's `select_keep`: a radix histogram over
the bit patterns of U (non-negative doubles order like their bits), here
weighted by each row's chunk count, then an exact sort of the one bucket
holding the cut.
"""
from __future__ import annotations

import numba
import numpy as np

from .. import store
from ..engine import DONE, GAP, NEED_INDEX, NEED_PAGES, NEED_ROWS
from ..store import (
    DENIED_FULL,
    DENIED_THRESHOLD,
    F_GAMMA,
    F_MAX_LOAD,
    GAP_DONE,
    GAP_ROUND,
    GAP_SNAPSHOT,
    HAVE_PREV,
    IX_BUMP,
    IX_CAP_MAX,
    P_INTERVAL,
    P_KMAX,
    P_LIFO,
    P_REPORT_EVERY,
    PREV_STEP,
    Q_HWM,
    Q_LIVE,
    Q_MAPPED,
    Q_SPP,
    R_D,
    R_KEY,
    R_LAST,
    ROUNDS,
    ROW_BITS,
    T_K,
    T_POOL,
    TRACKED,
    inline,
)
from .fiited import (
    INF,
    LOOKAHEAD,
    Fiited,
    decay,
    e_bits,
    importance_record,
    observe,
    prefetch_ahead,
    prefetch_index_buckets,
    set_dim,
    take_snapshot,
    update_utilities,
)

ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)  # a cut no U bit pattern exceeds: keep nothing
LOW_48 = np.uint64((1 << 48) - 1)


@inline
def row_sum(row_u, tid, k_row):
    """u[0] + u[1] + ... + u[K-1] in k order from 0.0 (semantics.md: U before its decay)."""
    total = 0.0
    for k in range(k_row):
        total += row_u[tid, k]
    return total


# ============================================================================
# An access: FIITED's hit status, searches and utility update; whole-row admission
# ============================================================================

@inline
def access(st, t, r, s, grad, gi, slots):
    """An access (reference `RowPruneModel`): FIITED's steps (1) and (2), then (3) admits the whole row or
    nothing."""
    sc, ip, tabs, rows, row_u = st.sc, st.ip, st.tabs, st.rows, st.row_u
    ix, ix_meta, row_pos = st.ix, st.ix_meta, st.row_pos
    pools, page_live, page_free_bits, lifo, slot_stamp = (st.pools, st.page_live, st.page_free_bits, st.lifo,
                                                          st.slot_stamp)
    kmax = ip[P_KMAX]
    tid = store.track_row(st.trk, rows, row_u, st.dim_hist, tabs, sc, ip, t, r, s)
    k_row = tabs[t, T_K]
    d = rows[tid, R_D]  # 0 or K
    observe(st, tid, t, r, d, k_row)              # (1) hit status and searches, as FIITED
    update_utilities(st, tid, s, k_row, grad, gi)  # (2) utilities, as FIITED
    # (3) admission of a row with nothing resident; U needs no decay (last = s)
    if d > 0:
        return
    pool = tabs[t, T_POOL]
    if row_sum(row_u, tid, k_row) < st.pool_theta[pool]:
        sc[DENIED_THRESHOLD] += 1
        return
    spp = pools[pool, Q_SPP]
    free_on_mapped = pools[pool, Q_MAPPED] * spp - pools[pool, Q_LIVE]
    mappable = max(0, store.page_cap(sc, ip, pools, pool) - pools[pool, Q_MAPPED])
    if free_on_mapped + mappable * spp < k_row:
        sc[DENIED_FULL] += 1
        return
    for k in range(k_row):  # all K slots first (cannot fail after the count), then the K inserts
        slots[k] = store.alloc_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, ip, pool)
    for k in range(k_row):
        store.index_insert(ix, ix_meta, sc, ip, st.fp[F_MAX_LOAD], t * kmax + k, r, slots[k], tid, row_pos, k)
    set_dim(rows, st.dim_hist, tid, k_row)


# ============================================================================
# Pruning round
# ============================================================================

@numba.njit(cache=True)
def select_rows(st, pool, n_keep, now):
    """The keep set of `pool`: the longest prefix of its rows in (U desc, t asc, r asc) whose chunk
    total is at most n_keep.

    Returns (theta, cut_bits, cut_key, keep_all); unless keep_all, a row is kept when its U bits
    exceed cut_bits, or equal them with packed (t, r) key <= cut_key.
    """
    rows, row_u, tabs, powtab, gamma = st.rows, st.row_u, st.tabs, st.powtab, st.fp[F_GAMMA]
    n_rows = st.sc[TRACKED]
    # pass A: chunks tracked, and the chunk count per top-16-bit bucket of U
    hist = np.zeros(1 << 16, np.int64)
    total = 0
    min_u = INF
    for tid in range(n_rows):
        t = rows[tid, R_KEY] >> ROW_BITS
        if tabs[t, T_POOL] != pool:
            continue
        u = row_sum(row_u, tid, tabs[t, T_K]) * decay(powtab, gamma, now - rows[tid, R_LAST])
        hist[np.float64(u).view(np.uint64) >> np.uint64(48)] += tabs[t, T_K]
        total += tabs[t, T_K]
        min_u = min(min_u, u)
    if n_keep == 0:
        return INF, ALL_ONES, np.int64(-1), False
    if total <= n_keep:  # everything fits; theta as FIITED: 0.0 below N, else the last (smallest) U
        return (0.0 if total < n_keep else min_u), ALL_ONES, np.int64(-1), True
    # the bucket where the running chunk total first exceeds n_keep; all rows above it fit
    above = 0
    bucket = (1 << 16) - 1
    while above + hist[bucket] <= n_keep:
        above += hist[bucket]
        bucket -= 1
    # pass B: that bucket's rows, and the last-ranked row above it
    cand_bits = np.empty(hist[bucket], np.uint64)  # hist counts chunks, so this is room enough
    cand_keys = np.empty(hist[bucket], np.int64)
    cand_k = np.empty(hist[bucket], np.int64)
    c = 0
    last_above_bits, last_above_key = ALL_ONES, np.int64(-1)
    for tid in range(n_rows):
        key = rows[tid, R_KEY]
        t = key >> ROW_BITS
        if tabs[t, T_POOL] != pool:
            continue
        bits = e_bits(row_sum(row_u, tid, tabs[t, T_K]), decay(powtab, gamma, now - rows[tid, R_LAST]))
        top = bits >> np.uint64(48)
        if top == np.uint64(bucket):
            cand_bits[c] = bits
            cand_keys[c] = key
            cand_k[c] = tabs[t, T_K]
            c += 1
        elif top > np.uint64(bucket) and (bits < last_above_bits
                                          or (bits == last_above_bits and key > last_above_key)):
            last_above_bits, last_above_key = bits, key
    # the bucket's rows in rank order: by key, then stably by U bits descending
    order = np.argsort(cand_keys[:c], kind="mergesort")
    order = order[np.argsort(ALL_ONES - cand_bits[:c][order], kind="mergesort")]
    used = above
    last = -1
    for q in range(c):
        if used + cand_k[order[q]] > n_keep:
            break  # the first row that does not fit ends the keep set
        used += cand_k[order[q]]
        last = order[q]
    if last >= 0:
        return np.uint64(cand_bits[last]).view(np.float64), cand_bits[last], cand_keys[last], False
    if above > 0:  # the cut falls just above this bucket
        return (np.uint64(last_above_bits).view(np.float64), (np.uint64(bucket) << np.uint64(48)) | LOW_48,
                np.int64(-1), False)
    return INF, ALL_ONES, np.int64(-1), False  # not even the first row fits


@numba.njit(cache=True)
def pruning_round(st, now):
    """Per pool: keep the rows `select_rows` chooses, free every other resident row, unmap empty pages."""
    sc, ip, tabs, rows, row_u, dim_hist = st.sc, st.ip, st.tabs, st.rows, st.row_u, st.dim_hist
    pools, page_live, page_free_bits, lifo, slot_stamp = (st.pools, st.page_live, st.page_free_bits, st.lifo,
                                                          st.slot_stamp)
    powtab, gamma = st.powtab, st.fp[F_GAMMA]
    sc[ROUNDS] += 1
    kmax = ip[P_KMAX]
    n_rows = sc[TRACKED]
    for pool in range(pools.shape[0]):
        n_keep = store.page_cap(sc, ip, pools, pool) * pools[pool, Q_SPP]
        theta, cut_bits, cut_key, keep_all = select_rows(st, pool, n_keep, now)
        st.pool_theta[pool] = theta
        if keep_all:
            continue
        free_rows = np.empty(n_rows, np.int64)
        n_free = 0
        for tid in range(n_rows):
            key = rows[tid, R_KEY]
            t = key >> ROW_BITS
            if rows[tid, R_D] == 0 or tabs[t, T_POOL] != pool:
                continue
            bits = e_bits(row_sum(row_u, tid, tabs[t, T_K]), decay(powtab, gamma, now - rows[tid, R_LAST]))
            if not (bits > cut_bits or (bits == cut_bits and key <= cut_key)):
                free_rows[n_free] = tid
                n_free += 1
        # (t, r, k) order; as in FIITED's round only LIFO depends on the order of the frees
        order = np.arange(n_free)
        if ip[P_LIFO]:
            order = np.argsort(rows[free_rows[:n_free], R_KEY], kind="mergesort")
        for q in range(n_free):
            if q + LOOKAHEAD < n_free:
                prefetch_index_buckets(st, rows, free_rows[order[q + LOOKAHEAD]], 0)
            tid = free_rows[order[q]]
            t = rows[tid, R_KEY] >> ROW_BITS
            for k in range(rows[tid, R_D]):
                slot = store.index_delete(st.ix, st.ix_meta, sc, t * kmax + k, np.int64(st.row_pos[tid, k]),
                                          st.row_pos, k)
                store.free_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, ip, pool, slot)
            set_dim(rows, dim_hist, tid, 0)
    store.unmap_empty_pages(pools, page_live, sc)


# ============================================================================
# The record loop: a copy of `fiited.run` / `fiited.handle_gap` with this module's `access` and
# `pruning_round` (keep the two in step). One shared loop would have to take the access kernel as an
# argument or close over it, and Numba (0.68) then never reuses its on-disk cache for the loop (checked:
# a cache miss at every start), so every replay would begin by recompiling it.
# ============================================================================

@numba.njit(cache=True, nogil=True, _nrt=False)
def run(st, lk_step, lk_table, lk_row, lk_grad, im_step, im_table, im_row, im_chunk, im_value, i, j, slots):
    """Process the merged records from lookup i and importance record j on; stop early to grow.

    `slots` is scratch room for the K slot addresses of one admission (this loop cannot allocate).
    """
    sc, ip, tabs = st.sc, st.ip, st.tabs
    n_lk, n_im = lk_step.size, im_step.size
    kmax = ip[P_KMAX]
    interval, report_every = ip[P_INTERVAL], ip[P_REPORT_EVERY]
    while i < n_lk or j < n_im:
        is_lookup = i < n_lk and (j >= n_im or lk_step[i] <= im_step[j])
        s = lk_step[i] if is_lookup else im_step[j]
        t = lk_table[i] if is_lookup else im_table[j]
        if sc[TRACKED] + 1 > st.rows.shape[0] or 2 * (sc[TRACKED] + 1) > st.trk.shape[0]:
            return NEED_ROWS, i, j
        if is_lookup:
            if sc[IX_BUMP] + 2 * kmax * sc[IX_CAP_MAX] > st.ix.shape[0]:
                return NEED_INDEX, i, j
            if st.pools[tabs[t, T_POOL], Q_HWM] + tabs[t, T_K] >= st.page_live.shape[1]:
                return NEED_PAGES, i, j
        if sc[HAVE_PREV] and not sc[GAP_DONE]:
            prev = sc[PREV_STEP]
            sc[GAP_ROUND] = s // interval > prev // interval
            sc[GAP_SNAPSHOT] = s // report_every > prev // report_every
            if sc[GAP_ROUND] or sc[GAP_SNAPSHOT]:
                return GAP, i, j
        if is_lookup:
            prefetch_ahead(st, lk_table, lk_row, i)
            access(st, t, lk_row[i], s, lk_grad, i, slots)
            i += 1
        else:
            importance_record(st, t, im_row[j], im_chunk[j], im_value[j], s)
            j += 1
        sc[PREV_STEP] = s
        sc[HAVE_PREV] = 1
        sc[GAP_DONE] = 0
    return DONE, i, j


@numba.njit(cache=True, nogil=True)
def handle_gap(st):
    """The gap `run` stopped at: the round (if due) at now = the last record's step, then the snapshot."""
    sc = st.sc
    if sc[GAP_ROUND]:
        pruning_round(st, sc[PREV_STEP])
    if sc[GAP_SNAPSHOT]:
        take_snapshot(st, sc[PREV_STEP])
    sc[GAP_DONE] = 1


# ============================================================================
# Python driver: Fiited's, with this module's kernels
# ============================================================================

class RowPrune(Fiited):
    """Row-granularity pruning (whole rows in or out) over the same VHPI storage as FIITED."""

    name = "row-prune"
    run_kernel = staticmethod(run)
    gap_kernel = staticmethod(handle_gap)

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self._slots = np.zeros(self.engine.k_max, np.int64)

    def kernel_scratch(self) -> tuple:
        return (self._slots,)
