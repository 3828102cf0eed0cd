"""FIITED: per-chunk utilities, pruning rounds and threshold admission (DESIGN.md section 2).

The kernels follow DESIGN.md and `fiitedsim/reference.py` step by step, with
the same names: `access` (hit status, probe searches, utility update,
admission), `importance_record`, `pruning_round`, and `run`, which walks the
merged record stream and stops at each gap between records that needs a round
or a snapshot, for `handle_gap` (see docs/engine.md for why). Two speed
measures keep results bit-identical to the reference:

* decay factors gamma ** float64(n) come from a table filled with the same
  pow call (`engine.fill_powtab`), falling back to pow for long gaps;
* e = min_j (u_j * f) is computed as (min_j u_j) * f, equal because rounding
  is monotonic; a round selects the N-th largest e by a radix histogram over
  the bit patterns of e (non-negative floats order like their bits) instead of
  sorting every tracked chunk.
"""
from __future__ import annotations

import numba
import numpy as np

from .. import store
from ..config import check_budget_workable
from ..engine import COUNTER_COLUMNS, DONE, GAP, NEED_INDEX, NEED_PAGES, NEED_ROWS, EngineState, snapshot_columns
from ..memory import check_engine_memory
from ..prefetch import prefetch
from ..store import (
    CHUNK_HITS,
    CHUNKS_REQUESTED,
    DENIED_FULL,
    DENIED_THRESHOLD,
    DIM_HITS,
    DIMS_REQUESTED,
    F_GAMMA,
    F_MAX_LOAD,
    FULL_HITS,
    GAP_DONE,
    GAP_ROUND,
    GAP_SNAPSHOT,
    HAVE_PREV,
    IX_BUMP,
    IX_CAP_MAX,
    IX_CAP_TOTAL,
    IX_COUNT_TOTAL,
    LIVE_TOTAL,
    LOOKUPS,
    MAPPED_TOTAL,
    MAX_PROBE,
    META_BYTES,
    P_COUNT_ACCESSES,
    P_ENTRY_BYTES,
    P_HAS_GRAD,
    P_HAS_LOG,
    P_INTERVAL,
    P_KMAX,
    P_LIFO,
    P_PAGE_BYTES,
    P_REPORT_EVERY,
    P_TOTAL_ROWS,
    PREV_STEP,
    PROBES,
    Q_HWM,
    Q_MAPPED,
    Q_SPP,
    R_D,
    R_KEY,
    R_LAST,
    ROUNDS,
    ROW_BITS,
    ROW_HITS,
    ROW_MASK,
    SEARCHES,
    SNAP_N,
    T_C,
    T_K,
    T_POOL,
    TRACKED,
    inline,
)
from .base import Policy, PolicyResult, finish_summary, snapshot_values, snapshots_frame

INF = np.inf
LOOKAHEAD = 16  # lookups ahead whose tracker bucket is prefetched; their row state at half that distance
NEAR = 3        # lookups ahead whose absent chunks' index home buckets are prefetched
TIE_K_SHIFT = 56  # tie key (k, t, r): k in bits 56.., t in 40..55, r in 0..39


@inline
def decay(powtab, gamma, gap):
    """gamma ** float64(gap), from the table when it covers the gap."""
    if gap < powtab.size:
        return powtab[gap]
    return gamma ** np.float64(gap)


@inline
def set_dim(rows, dim_hist, tid, d):
    dim_hist[rows[tid, R_D]] -= 1
    dim_hist[d] += 1
    rows[tid, R_D] = d


# ============================================================================
# An access (DESIGN 2, "An access"): hit status, utilities, admission
# ============================================================================

@inline
def observe(st, tid, t, r, d, k_row):
    """Step (1) of an access: hit status from the resident prefix d before anything changes (DESIGN 5),
    and the searches of k = 0 .. min(d, K-1): the resident prefix and the first absent chunk (DESIGN 3.1).
    A resident chunk's probe length follows from its cached bucket; only the absent one walks the index."""
    sc, ix, ix_meta, row_pos = st.sc, st.ix, st.ix_meta, st.row_pos
    kmax = st.ip[P_KMAX]
    sc[LOOKUPS] += 1
    sc[ROW_HITS] += d > 0
    sc[CHUNK_HITS] += d
    sc[CHUNKS_REQUESTED] += k_row
    sc[FULL_HITS] += d == k_row
    sc[DIM_HITS] += d * st.tabs[t, T_C]
    sc[DIMS_REQUESTED] += k_row * st.tabs[t, T_C]
    h = store.splitmix64(r)
    for k in range(min(d, k_row - 1) + 1):
        if k < d:
            probes = store.resident_probes(ix_meta, t * kmax + k, h, np.int64(row_pos[tid, k]))
        else:
            _, probes = store.index_search_hashed(ix, ix_meta, t * kmax + k, r, h)
        sc[SEARCHES] += 1
        sc[PROBES] += probes
        sc[MAX_PROBE] = max(sc[MAX_PROBE], probes)


@inline
def update_utilities(st, tid, s, k_row, grad, gi):
    """Step (2) of an access: u = u * gamma ** (s - last) + x[k] (DESIGN 2)."""
    ip, rows, row_u, wpos = st.ip, st.rows, st.row_u, st.wpos
    f = decay(st.powtab, st.fp[F_GAMMA], s - rows[tid, R_LAST])
    for k in range(k_row):
        if ip[P_HAS_LOG]:
            x = wpos[k] if ip[P_COUNT_ACCESSES] else 0.0
        elif ip[P_HAS_GRAD]:
            x = np.float64(grad[gi, k]) * wpos[k]
        else:
            x = 1.0 * wpos[k]
        row_u[tid, k] = row_u[tid, k] * f + x
    rows[tid, R_LAST] = s


@inline
def access(st, t, r, s, grad, gi):
    sc, ip, tabs, rows, row_u = st.sc, st.ip, st.tabs, st.rows, st.row_u
    ix, ix_meta, row_pos = st.ix, st.ix_meta, st.row_pos
    pools, page_live, page_free_bits, lifo, slot_stamp = (st.pools, st.page_live, st.page_free_bits, st.lifo,
                                                          st.slot_stamp)
    kmax = ip[P_KMAX]
    tid = store.track_row(st.trk, rows, row_u, st.dim_hist, tabs, sc, ip, t, r, s)
    k_row = tabs[t, T_K]
    d = rows[tid, R_D]
    observe(st, tid, t, r, d, k_row)              # (1) hit status and searches
    update_utilities(st, tid, s, k_row, grad, gi)  # (2) utilities
    # (3) admission of k = d, d+1, ...: e[k] = min over j <= k of u[j] (already decayed to s)
    pool = tabs[t, T_POOL]
    theta = st.pool_theta[pool]
    e = INF
    for k in range(k_row):
        e = min(e, row_u[tid, k])
        if k < d:
            continue
        if e < theta:
            sc[DENIED_THRESHOLD] += 1
            break
        slot = store.alloc_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, ip, pool)
        if slot < 0:
            sc[DENIED_FULL] += 1
            break
        store.index_insert(ix, ix_meta, sc, ip, st.fp[F_MAX_LOAD], t * kmax + k, r, slot, tid, row_pos, k)
        set_dim(rows, st.dim_hist, tid, k + 1)


@inline
def importance_record(st, t, r, k, value, s):
    """Importance-log record (DESIGN 1.3/2): decay the row to s, then add v * w_k. Never admits."""
    rows, row_u = st.rows, st.row_u
    tid = store.track_row(st.trk, rows, row_u, st.dim_hist, st.tabs, st.sc, st.ip, t, r, s)
    f = decay(st.powtab, st.fp[F_GAMMA], s - rows[tid, R_LAST])
    for j in range(st.tabs[t, T_K]):
        row_u[tid, j] = row_u[tid, j] * f
    rows[tid, R_LAST] = s
    row_u[tid, k] = row_u[tid, k] + np.float64(value) * st.wpos[k]


# ============================================================================
# Pruning round (DESIGN 2, "Pruning rounds")
# ============================================================================

@inline
def e_bits(m, f):
    """Bit pattern of e = m * f; for e >= 0 the bits order like the values."""
    return np.float64(m * f).view(np.uint64)


@inline
def tie_key(t, r, k):
    return (np.int64(k) << TIE_K_SHIFT) | (np.int64(t) << ROW_BITS) | np.int64(r)


@numba.njit(cache=True)
def select_keep(st, pool, n_keep, now):
    """Find the keep set of the first n_keep chunks of `pool` in (e desc, k asc, t asc, r asc).

    Returns (theta, cut_bits, cut_key, keep_all): a chunk is kept when its e
    bits exceed cut_bits, or equal them with tie key <= cut_key.
    """
    rows, row_u, tabs, powtab, gamma = st.rows, st.row_u, st.tabs, st.powtab, st.fp[F_GAMMA]
    n_rows = st.sc[TRACKED]
    # pass A: how many chunks, and a histogram of the top 16 bits of e
    hist = np.zeros(1 << 16, np.int64)
    total = 0
    min_e = INF
    for tid in range(n_rows):
        t = rows[tid, R_KEY] >> ROW_BITS
        if tabs[t, T_POOL] != pool:
            continue
        f = decay(powtab, gamma, now - rows[tid, R_LAST])
        m = INF
        for k in range(tabs[t, T_K]):
            m = min(m, row_u[tid, k])
            hist[e_bits(m, f) >> np.uint64(48)] += 1
        total += tabs[t, T_K]
        min_e = min(min_e, m * f)
    if n_keep == 0:
        return INF, np.uint64(0), np.int64(-1), False
    if total <= n_keep:
        return (0.0 if total < n_keep else min_e), np.uint64(0), np.int64(0), True
    # the bucket holding the n_keep-th largest e
    above = 0
    bucket = (1 << 16) - 1
    while above + hist[bucket] < n_keep:
        above += hist[bucket]
        bucket -= 1
    # pass B: candidates of that bucket, with their tie keys
    cand_bits = np.empty(hist[bucket], np.uint64)
    cand_keys = np.empty(hist[bucket], np.int64)
    c = 0
    for tid in range(n_rows):
        t = rows[tid, R_KEY] >> ROW_BITS
        if tabs[t, T_POOL] != pool:
            continue
        f = decay(powtab, gamma, now - rows[tid, R_LAST])
        r = rows[tid, R_KEY] & ROW_MASK
        m = INF
        for k in range(tabs[t, T_K]):
            m = min(m, row_u[tid, k])
            bits = e_bits(m, f)
            if (bits >> np.uint64(48)) == np.uint64(bucket):
                cand_bits[c] = bits
                cand_keys[c] = tie_key(t, r, k)
                c += 1
    need = n_keep - above  # 1 <= need <= candidates
    cut_bits = np.sort(cand_bits)[c - need]
    greater = 0
    for q in range(c):
        greater += cand_bits[q] > cut_bits
    tied_keys = np.sort(cand_keys[cand_bits == cut_bits])
    cut_key = tied_keys[need - greater - 1]  # the tied chunks kept are the first in (k, t, r) order
    return np.uint64(cut_bits).view(np.float64), cut_bits, cut_key, False


@inline
def prefetch_index_buckets(st, rows, tid, k_from):
    """Prefetch the index entries of row tid's chunks k_from .. d-1 (their buckets are cached in row_pos)."""
    t = rows[tid, R_KEY] >> ROW_BITS
    for k in range(k_from, rows[tid, R_D]):
        prefetch(st.ix, st.ix_meta[t * st.ip[P_KMAX] + k, store.X_OFF] + np.int64(st.row_pos[tid, k]))


@numba.njit(cache=True)
def pruning_round(st, now):
    """Rank, keep the first N chunks of each pool, free the rest in (t, r, k) order, unmap empty pages."""
    sc, ip, tabs, rows, row_u, dim_hist = st.sc, st.ip, st.tabs, st.rows, st.row_u, st.dim_hist
    pools, page_live, page_free_bits, lifo, slot_stamp = (st.pools, st.page_live, st.page_free_bits, st.lifo,
                                                          st.slot_stamp)
    powtab, gamma = st.powtab, st.fp[F_GAMMA]
    sc[ROUNDS] += 1
    kmax = ip[P_KMAX]
    n_rows = sc[TRACKED]
    for pool in range(pools.shape[0]):
        n_keep = store.page_cap(sc, ip, pools, pool) * pools[pool, Q_SPP]
        theta, cut_bits, cut_key, keep_all = select_keep(st, pool, n_keep, now)
        st.pool_theta[pool] = theta
        if keep_all:
            continue
        # rows whose resident prefix is longer than their kept prefix
        free_rows = np.empty(1024, np.int64)
        free_keep = np.empty(1024, np.int64)
        n_free = 0
        for tid in range(n_rows):
            d = rows[tid, R_D]
            if d == 0:
                continue
            t = rows[tid, R_KEY] >> ROW_BITS
            if tabs[t, T_POOL] != pool:
                continue
            r = rows[tid, R_KEY] & ROW_MASK
            f = decay(powtab, gamma, now - rows[tid, R_LAST])
            m = INF
            kept = 0
            if n_keep > 0:
                for k in range(d):
                    m = min(m, row_u[tid, k])
                    bits = e_bits(m, f)
                    if bits > cut_bits or (bits == cut_bits and tie_key(t, r, k) <= cut_key):
                        kept = k + 1
                    else:
                        break
            if kept < d:
                if n_free == free_rows.size:
                    free_rows = np.concatenate((free_rows, np.empty(n_free, np.int64)))
                    free_keep = np.concatenate((free_keep, np.empty(n_free, np.int64)))
                free_rows[n_free] = tid
                free_keep[n_free] = kept
                n_free += 1
        # (t, r, k) order. With the lowest-address allocator the result does not depend on the
        # order (the free set is a set, and backward-shift deletion leaves an index as if the key
        # had never been inserted: Knuth's Algorithm R), so only LIFO pays for the sort.
        order = np.arange(n_free)
        if ip[P_LIFO]:
            order = np.argsort(rows[free_rows[:n_free], R_KEY], kind="mergesort")
        for q in range(n_free):
            if q + LOOKAHEAD < n_free:  # start the index-bucket misses of a row further down the list
                prefetch_index_buckets(st, rows, free_rows[order[q + LOOKAHEAD]], free_keep[order[q + LOOKAHEAD]])
            tid = free_rows[order[q]]
            kept = free_keep[order[q]]
            t = rows[tid, R_KEY] >> ROW_BITS
            for k in range(kept, rows[tid, R_D]):
                slot = store.index_delete(st.ix, st.ix_meta, sc, t * kmax + k, np.int64(st.row_pos[tid, k]),
                                          st.row_pos, k)
                store.free_slot(pools, page_live, page_free_bits, lifo, slot_stamp, sc, ip, pool, slot)
            set_dim(rows, dim_hist, tid, kept)
    store.unmap_empty_pages(pools, page_live, sc)


# ============================================================================
# Snapshots and the record loop
# ============================================================================

@numba.njit(cache=True)
def take_snapshot(st, step):
    fill_snapshot_row(st, step, st.snap[st.sc[SNAP_N]])
    st.sc[SNAP_N] += 1


@numba.njit(cache=True)
def fill_snapshot_row(st, step, row):
    """One row of the time series (engine.snapshot_columns): step, counters, gauges, dimension histogram."""
    sc, pools = st.sc, st.pools
    row[0] = step
    n_counters = st.counter_sc.size
    for c in range(n_counters):
        row[1 + c] = sc[st.counter_sc[c]]
    g = 1 + n_counters
    payload = sc[MAPPED_TOTAL] * st.ip[P_PAGE_BYTES]
    index = sc[IX_CAP_TOTAL] * st.ip[P_ENTRY_BYTES]
    meta = sc[META_BYTES]
    mapped_slots = 0
    for pool in range(pools.shape[0]):
        mapped_slots += pools[pool, Q_MAPPED] * pools[pool, Q_SPP]
    row[g + 0] = payload
    row[g + 1] = index
    row[g + 2] = meta
    row[g + 3] = payload + index + meta
    row[g + 4] = sc[MAPPED_TOTAL]
    row[g + 5] = sc[LIVE_TOTAL]
    row[g + 6] = sc[TRACKED]
    # the row is int64 (exact steps and counters); the three ratios are stored as their float64 bits
    row[g + 7] = np.float64(1.0 - sc[LIVE_TOTAL] / mapped_slots if mapped_slots > 0 else 0.0).view(np.int64)
    row[g + 8] = np.float64(st.pool_theta.min()).view(np.int64)
    row[g + 9] = np.float64(sc[IX_COUNT_TOTAL] / sc[IX_CAP_TOTAL] if sc[IX_CAP_TOTAL] > 0 else 0.0).view(np.int64)
    for d in range(st.dim_hist.size):
        row[g + 10 + d] = st.dim_hist[d]
    row[g + 10] += st.ip[P_TOTAL_ROWS] - sc[TRACKED]


@inline
def prefetch_ahead(st, lk_table, lk_row, i):
    """Start the cache misses of later lookups in three stages: the tracker bucket of lookup
    i + LOOKAHEAD, the row state of lookup i + LOOKAHEAD/2 (its tracker bucket has arrived), and
    the home buckets of the absent chunks of lookup i + NEAR (its row state has arrived): the search
    of the first absent chunk is the only one that reads the index, and admission inserts from there.)"""
    n = lk_row.size
    far = i + LOOKAHEAD
    if far < n:
        key = store.packed_row_key(lk_table[far], lk_row[far])
        prefetch(st.trk, np.int64(store.splitmix64(key) & np.uint64(st.trk.shape[0] - 1)))
    mid = i + LOOKAHEAD // 2
    if mid < n:
        tid = store.tracker_find(st.trk, store.packed_row_key(lk_table[mid], lk_row[mid]))
        if tid >= 0:
            prefetch(st.rows, tid)
            prefetch(st.row_u, tid)
            prefetch(st.row_pos, tid)
    near = i + NEAR
    if near < n:
        t, r = lk_table[near], lk_row[near]
        tid = store.tracker_find(st.trk, store.packed_row_key(t, r))
        d = st.rows[tid, R_D] if tid >= 0 else 0
        h = store.splitmix64(r)
        for k in range(d, st.tabs[t, T_K]):  # the search of chunk d, and the inserts if d, d+1, ... are admitted
            meta = st.ix_meta[t * st.ip[P_KMAX] + k]
            prefetch(st.ix, meta[store.X_OFF] + np.int64(h & np.uint64(meta[store.X_CAP] - 1)))


# Everything a record needs is inlined into `run`, which allocates nothing; compiling it without
# reference counting (Numba's `_nrt=False`) removes an incref/decref pair per array per inlined
# call, measured at ~140 ns of a ~175 ns lookup. Rounds and snapshots are separate functions
# compiled normally, since they allocate.
@numba.njit(cache=True, nogil=True, _nrt=False)
def run(st, lk_step, lk_table, lk_row, lk_grad, im_step, im_table, im_row, im_chunk, im_value, i, j):
    """Process the merged records from lookup i and importance record j on; stop early to grow."""
    sc, ip, tabs = st.sc, st.ip, st.tabs
    n_lk, n_im = lk_step.size, im_step.size
    kmax = ip[P_KMAX]
    interval, report_every = ip[P_INTERVAL], ip[P_REPORT_EVERY]
    while i < n_lk or j < n_im:
        is_lookup = i < n_lk and (j >= n_im or lk_step[i] <= im_step[j])
        s = lk_step[i] if is_lookup else im_step[j]
        t = lk_table[i] if is_lookup else im_table[j]
        # capacity checks first, so that stopping here leaves nothing half done
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
            access(st, t, lk_row[i], s, lk_grad, i)
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


@numba.njit(cache=True)
def resident_prefix(trk, rows, table, row, out):
    """out[i] = the resident prefix d of (table[i], row[i]) now; 0 for a row never seen. Reads only."""
    for i in range(row.size):
        tid = store.tracker_find(trk, store.packed_row_key(table[i], row[i]))
        out[i] = rows[tid, R_D] if tid >= 0 else 0


@numba.njit(cache=True)
def final_snapshot(st):
    if st.sc[HAVE_PREV]:
        take_snapshot(st, st.sc[PREV_STEP])


# ============================================================================
# Python driver
# ============================================================================

class Fiited(Policy):
    """FIITED dimension pruning over VHPI storage."""

    name = "fiited"
    #: the record loop and gap handler of this policy (row-prune, which shares this driver, has its own)
    run_kernel = staticmethod(run)
    gap_kernel = staticmethod(handle_gap)

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.engine = EngineState(tables, cfg, has_grad, has_log)
        k_max = self.engine.k_max
        self._no_grad = np.zeros((1, k_max), np.float32)

    @classmethod
    def check_budget(cls, tables, cfg) -> None:
        check_engine_memory(tables, cfg)  # the start-up arrays (--index-initial, --page-bytes) must fit
        check_budget_workable(tables, cfg)

    def kernel_scratch(self) -> tuple:
        """Extra arguments of `run_kernel` after (i, j): scratch arrays, since the loop cannot allocate."""
        return ()

    def consume(self, batch) -> None:
        steps_max = 0
        if batch.step.size:
            steps_max = int(batch.step[-1])
        if batch.imp_step.size:
            steps_max = max(steps_max, int(batch.imp_step[-1]))
        self.engine.ensure_steps(steps_max)
        grad = batch.grad if (batch.grad is not None and self.engine.st.ip[store.P_HAS_GRAD]) else self._no_grad
        i = j = 0
        while True:
            status, i, j = self.run_kernel(self.engine.st, batch.step, batch.table, batch.row, grad, batch.imp_step,
                                           batch.imp_table, batch.imp_row, batch.imp_chunk, batch.imp_value, i, j,
                                           *self.kernel_scratch())
            if status == DONE:
                return
            if status == GAP:
                if self.engine.st.sc[SNAP_N] == self.engine.st.snap.shape[0]:
                    self.engine.flush_snapshots()
                self.gap_kernel(self.engine.st)
            else:
                self.engine.grow(status)

    def gap_due(self, step: int) -> tuple[bool, bool]:
        """(round, snapshot): what `run` would handle in the gap before a record of `step` (DESIGN 2)."""
        sc, ip = self.engine.st.sc, self.engine.st.ip
        if not sc[HAVE_PREV] or sc[GAP_DONE]:
            return False, False
        prev = int(sc[PREV_STEP])
        return (step // int(ip[P_INTERVAL]) > prev // int(ip[P_INTERVAL]),
                step // int(ip[P_REPORT_EVERY]) > prev // int(ip[P_REPORT_EVERY]))

    def close_gap(self, step: int) -> bool:
        """Handle now the gap `run` would stop at before the first record of `step`; return whether a round ran.

        The trainer needs a round's frees before it reads the rows of `step`, while replay
        runs the round when that step's first record arrives: both happen between the last
        consumed record and `step`, at now = the last record's step, so the results agree.
        Marking the gap done lets the records of `step` then pass it without a second round.
        """
        round_due, snapshot_due = self.gap_due(step)
        if not (round_due or snapshot_due):
            return False
        st = self.engine.st
        st.sc[GAP_ROUND], st.sc[GAP_SNAPSHOT] = round_due, snapshot_due
        if st.sc[SNAP_N] == st.snap.shape[0]:
            self.engine.flush_snapshots()
        self.gap_kernel(st)
        return round_due

    def resident_chunks(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Resident prefix d in chunks (int32) of each (table, row) lookup now, without changing any state."""
        out = np.empty(row.size, np.int32)
        resident_prefix(self.engine.st.trk, self.engine.st.rows, np.ascontiguousarray(table, np.int64),
                        np.ascontiguousarray(row, np.int64), out)
        return out

    def resident_dims(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Resident dimensions (d * C, int32) of each (table, row) lookup now, without changing any state."""
        return self.resident_chunks(table, row) * self.engine.st.tabs[np.asarray(table, np.int64), store.T_C].astype(
            np.int32)

    def finish(self) -> PolicyResult:
        eng = self.engine
        if eng.st.sc[SNAP_N] >= eng.st.snap.shape[0]:
            eng.flush_snapshots()
        final_snapshot(eng.st)
        rows = eng.snapshot_table()
        columns = snapshot_columns(eng.k_max)
        return PolicyResult(summary=self.summary(), snapshots=snapshots_frame(rows, columns))

    def summary(self) -> dict:
        """Final values are those of a snapshot row taken now; peaks and probe maxima come from the counters."""
        sc = self.engine.st.sc
        columns = snapshot_columns(self.engine.k_max)
        values = np.zeros(len(columns), np.int64)
        fill_snapshot_row(self.engine.st, sc[PREV_STEP], values)
        now = snapshot_values(values, columns)
        counts = {key: int(now[key]) for key in COUNTER_COLUMNS}
        counts.update(
            payload_bytes_peak=int(sc[store.PAYLOAD_PEAK]), payload_bytes_final=int(now["payload_bytes"]),
            index_bytes_peak=int(sc[store.INDEX_PEAK]), index_bytes_final=int(now["index_bytes"]),
            meta_bytes_final=int(now["meta_bytes"]), total_bytes_peak=int(sc[store.TOTAL_PEAK]),
            total_bytes_final=int(now["total_bytes"]), mapped_pages_final=int(now["mapped_pages"]),
            live_chunks_final=int(now["live_chunks"]), fragmentation_final=now["fragmentation"],
            theta_final=now["theta"], max_probe_length=int(sc[MAX_PROBE]), tracked_rows=int(now["tracked_rows"]),
            dim_hist_final=[int(now[f"dim_{d}"]) for d in range(self.engine.k_max + 1)],
            index_load_factor_final=now["index_load_factor"],
        )
        return finish_summary(counts)
