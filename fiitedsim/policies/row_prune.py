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
from ..engine import DONE, GAP, NEED_INDEX, NEED_PAGES, NEED_ROWS, Loop
from ..metrics import Count
from ..store import ROW_BITS, FParam, Param, PoolCol, Row, Scalar, Tab, inline
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
    sc, cnt, ip, tabs, rows, row_u = st.sc, st.cnt, st.ip, st.tabs, st.rows, st.row_u
    ix, ix_meta, row_pos = st.ix, st.ix_meta, st.row_pos
    pools, page_live, page_free_bits, lifo, slot_stamp = (st.pools, st.page_live, st.page_free_bits, st.lifo,
                                                          st.slot_stamp)
    kmax = ip[Param.KMAX]
    tid = store.track_row(st.trk, rows, row_u, st.dim_hist, tabs, sc, cnt, ip, t, r, s)
    k_row = tabs[t, Tab.K]
    d = rows[tid, Row.D]  # 0 or K
    observe(st, tid, t, r, d, k_row)              # (1) hit status and searches, as FIITED
    update_utilities(st, tid, s, k_row, grad, gi)  # (2) utilities, as FIITED
    # (3) admission of a row with nothing resident; U needs no decay (last = s)
    if d > 0:
        return
    pool = tabs[t, Tab.POOL]
    if row_sum(row_u, tid, k_row) < st.pool_theta[pool]:
        cnt[Count.DENIED_THRESHOLD] += 1
        return
    spp = pools[pool, PoolCol.SPP]
    free_on_mapped = pools[pool, PoolCol.MAPPED] * spp - pools[pool, PoolCol.LIVE]
    mappable = max(0, store.page_cap(sc, ip, pools, pool) - pools[pool, PoolCol.MAPPED])
    if free_on_mapped + mappable * spp < k_row:
        cnt[Count.DENIED_FULL] += 1
        return
    for k in range(k_row):  # all K slots first (cannot fail after the count), then the K inserts
        slots[k] = store.alloc_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, cnt, ip, pool)
    for k in range(k_row):
        store.index_insert(ix, ix_meta, sc, cnt, ip, st.fp[FParam.MAX_LOAD], t * kmax + k, r, slots[k], tid, row_pos, k)
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
    rows, row_u, tabs, powtab, gamma = st.rows, st.row_u, st.tabs, st.powtab, st.fp[FParam.GAMMA]
    n_rows = st.sc[Scalar.TRACKED]
    # pass A: chunks tracked, and the chunk count per top-16-bit bucket of U
    hist = np.zeros(1 << 16, np.int64)
    total = 0
    min_u = INF
    for tid in range(n_rows):
        t = rows[tid, Row.KEY] >> ROW_BITS
        if tabs[t, Tab.POOL] != pool:
            continue
        u = row_sum(row_u, tid, tabs[t, Tab.K]) * decay(powtab, gamma, now - rows[tid, Row.LAST])
        hist[np.float64(u).view(np.uint64) >> np.uint64(48)] += tabs[t, Tab.K]
        total += tabs[t, Tab.K]
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
        key = rows[tid, Row.KEY]
        t = key >> ROW_BITS
        if tabs[t, Tab.POOL] != pool:
            continue
        bits = e_bits(row_sum(row_u, tid, tabs[t, Tab.K]), decay(powtab, gamma, now - rows[tid, Row.LAST]))
        top = bits >> np.uint64(48)
        if top == np.uint64(bucket):
            cand_bits[c] = bits
            cand_keys[c] = key
            cand_k[c] = tabs[t, Tab.K]
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
    sc, cnt, ip, tabs, rows, row_u, dim_hist = st.sc, st.cnt, st.ip, st.tabs, st.rows, st.row_u, st.dim_hist
    pools, page_live, page_free_bits, lifo, slot_stamp = (st.pools, st.page_live, st.page_free_bits, st.lifo,
                                                          st.slot_stamp)
    powtab, gamma = st.powtab, st.fp[FParam.GAMMA]
    cnt[Count.ROUNDS] += 1
    kmax = ip[Param.KMAX]
    n_rows = sc[Scalar.TRACKED]
    for pool in range(pools.shape[0]):
        n_keep = store.page_cap(sc, ip, pools, pool) * pools[pool, PoolCol.SPP]
        theta, cut_bits, cut_key, keep_all = select_rows(st, pool, n_keep, now)
        st.pool_theta[pool] = theta
        if keep_all:
            continue
        free_rows = np.empty(n_rows, np.int64)
        n_free = 0
        for tid in range(n_rows):
            key = rows[tid, Row.KEY]
            t = key >> ROW_BITS
            if rows[tid, Row.D] == 0 or tabs[t, Tab.POOL] != pool:
                continue
            bits = e_bits(row_sum(row_u, tid, tabs[t, Tab.K]), decay(powtab, gamma, now - rows[tid, Row.LAST]))
            if not (bits > cut_bits or (bits == cut_bits and key <= cut_key)):
                free_rows[n_free] = tid
                n_free += 1
        # (t, r, k) order; as in FIITED's round only LIFO depends on the order of the frees
        order = np.arange(n_free)
        if ip[Param.LIFO]:
            order = np.argsort(rows[free_rows[:n_free], Row.KEY], kind="mergesort")
        for q in range(n_free):
            if q + LOOKAHEAD < n_free:
                prefetch_index_buckets(st, rows, free_rows[order[q + LOOKAHEAD]], 0)
            tid = free_rows[order[q]]
            t = rows[tid, Row.KEY] >> ROW_BITS
            for k in range(rows[tid, Row.D]):
                slot = store.index_delete(st.ix, st.ix_meta, sc, t * kmax + k, np.int64(st.row_pos[tid, k]),
                                          st.row_pos, k)
                store.free_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, cnt, ip, pool, slot)
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
    sc, ctl, ip, tabs = st.sc, st.ctl, st.ip, st.tabs
    n_lk, n_im = lk_step.size, im_step.size
    kmax = ip[Param.KMAX]
    interval, report_every = ip[Param.INTERVAL], ip[Param.REPORT_EVERY]
    while i < n_lk or j < n_im:
        is_lookup = i < n_lk and (j >= n_im or lk_step[i] <= im_step[j])
        s = lk_step[i] if is_lookup else im_step[j]
        t = lk_table[i] if is_lookup else im_table[j]
        if sc[Scalar.TRACKED] + 1 > st.rows.shape[0] or 2 * (sc[Scalar.TRACKED] + 1) > st.trk.shape[0]:
            return NEED_ROWS, i, j
        if is_lookup:
            if sc[Scalar.IX_BUMP] + 2 * kmax * sc[Scalar.IX_CAP_MAX] > st.ix.shape[0]:
                return NEED_INDEX, i, j
            if st.pools[tabs[t, Tab.POOL], PoolCol.HWM] + tabs[t, Tab.K] >= st.page_live.shape[1]:
                return NEED_PAGES, i, j
        if ctl[Loop.HAVE_PREV] and not ctl[Loop.GAP_DONE]:
            prev = ctl[Loop.PREV_STEP]
            ctl[Loop.GAP_ROUND] = s // interval > prev // interval
            ctl[Loop.GAP_SNAPSHOT] = s // report_every > prev // report_every
            if ctl[Loop.GAP_ROUND] or ctl[Loop.GAP_SNAPSHOT]:
                return GAP, i, j
        if is_lookup:
            prefetch_ahead(st, lk_table, lk_row, i)
            access(st, t, lk_row[i], s, lk_grad, i, slots)
            i += 1
        else:
            importance_record(st, t, im_row[j], im_chunk[j], im_value[j], s)
            j += 1
        ctl[Loop.PREV_STEP] = s
        ctl[Loop.HAVE_PREV] = 1
        ctl[Loop.GAP_DONE] = 0
    return DONE, i, j


@numba.njit(cache=True, nogil=True)
def handle_gap(st):
    """The gap `run` stopped at: the round (if due) at now = the last record's step, then the snapshot."""
    ctl = st.ctl
    if ctl[Loop.GAP_ROUND]:
        pruning_round(st, ctl[Loop.PREV_STEP])
    if ctl[Loop.GAP_SNAPSHOT]:
        take_snapshot(st, ctl[Loop.PREV_STEP])
    ctl[Loop.GAP_DONE] = 1


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
