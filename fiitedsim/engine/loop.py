"""The record loop of `fiited` and `row-prune`: `run` walks the merged stream of lookups and importance
records, an access (access.py) or an importance record at a time, prefetching later lookups in three stages,
and stops at each gap between records that needs a pruning round (round.py) or a snapshot, for
`handle_gap`; and the snapshots. One `run`/`handle_gap` pair serves both granularities: a loop that takes or
closes over the access kernel is never reused from Numba's on-disk cache (checked with Numba 0.68), so the
choice is a branch on a parameter inside one loop (docs/engine.md).
"""
from __future__ import annotations

import numba
import numpy as np

from .. import metrics
from ..metrics import FloatGauge, IntGauge
from . import store
from .access import A_KEY_HASH, A_ROW_HASH, A_TID, AHEAD_MASK, INF, access, decay, importance_record
from .hashmap import inline
from .prefetch import prefetch, prefetch2
from .round import pruning_round
from .state import DONE, GAP, NEED_INDEX, NEED_PAGES, NEED_ROWS, Loop
from .store import FParam, Ix, Param, PoolCol, Scalar, Tab

# The record loop's prefetch schedule, in lookups ahead (docs/engine.md): the tracker bucket, then the
# record (its tracker bucket has arrived), then the index home buckets of the chunks the lookup will
# search and may insert (its record has arrived).
TRACKER_AHEAD = 32
RECORD_AHEAD = 16
INDEX_AHEAD = 4
assert TRACKER_AHEAD <= AHEAD_MASK


# ============================================================================
# The merged record stream, walked by every policy's record loop (this one, `policies/static.py`,
# `policies/rowcache.py`): lookups and importance records in step order, a lookup first on equal steps
# (DESIGN 1.4); a snapshot (and a round) is due in the gap between two records whose steps fall in different
# periods.
# ============================================================================

@inline
def next_is_lookup(lk_step, im_step, i, j):
    """Whether the next record of the stream, from lookup i and importance record j on, is lookup i."""
    return i < lk_step.size and (j >= im_step.size or lk_step[i] <= im_step[j])


@inline
def crosses(prev, s, every):
    """Whether the gap from step prev to step s crosses a multiple of `every` (floor(s/every) > floor(prev/every))."""
    return s // every > prev // every


@numba.njit(cache=True)
def take_snapshot(st, step):
    """A row of the time series, labelled `step` (metrics.write_snapshot)."""
    n = st.ctl[Loop.SNAP_N]
    snapshot_row(st, step, st.snap_i, st.snap_f, n)
    st.ctl[Loop.SNAP_N] = n + 1


@numba.njit(cache=True)
def snapshot_row(st, step, ints, floats, n):
    """Row n of `ints`/`floats`: the counters, this engine's gauges and its dimension histogram now."""
    sc, pools = st.sc, st.pools
    gi = np.zeros(metrics.N_INT_GAUGES, np.int64)
    gf = np.zeros(metrics.N_FLOAT_GAUGES, np.float64)
    payload = sc[Scalar.MAPPED_TOTAL] * st.ip[Param.PAGE_BYTES]
    index = sc[Scalar.IX_CAP_TOTAL] * st.ip[Param.ENTRY_BYTES]
    meta = sc[Scalar.META_BYTES]
    mapped_slots = 0
    for pool in range(pools.shape[0]):
        mapped_slots += pools[pool, PoolCol.MAPPED] * pools[pool, PoolCol.SPP]
    gi[IntGauge.PAYLOAD_BYTES] = payload
    gi[IntGauge.INDEX_BYTES] = index
    gi[IntGauge.META_BYTES] = meta
    gi[IntGauge.TOTAL_BYTES] = payload + index + meta
    gi[IntGauge.MAPPED_PAGES] = sc[Scalar.MAPPED_TOTAL]
    gi[IntGauge.LIVE_CHUNKS] = sc[Scalar.LIVE_TOTAL]
    gi[IntGauge.TRACKED_ROWS] = sc[Scalar.TRACKED]
    gf[FloatGauge.FRAGMENTATION] = 1.0 - sc[Scalar.LIVE_TOTAL] / mapped_slots if mapped_slots > 0 else 0.0
    gf[FloatGauge.THETA] = st.pool_theta.min()
    gf[FloatGauge.INDEX_LOAD_FACTOR] = (sc[Scalar.IX_COUNT_TOTAL] / sc[Scalar.IX_CAP_TOTAL]
                                        if sc[Scalar.IX_CAP_TOTAL] > 0 else 0.0)
    metrics.write_snapshot(ints, floats, n, step, st.cnt, gi, gf, st.dim_hist,
                           st.ip[Param.TOTAL_ROWS] - sc[Scalar.TRACKED])


@inline
def stage_far(st, lk_table, lk_row, q):
    """Prefetch stage 1 of lookup q: hash its key, keep the hash, prefetch its tracker bucket."""
    trk = st.trk
    h = store.splitmix64(store.packed_row_key(lk_table[q], lk_row[q]))
    st.ahead[q & AHEAD_MASK, A_KEY_HASH] = np.int64(h)
    prefetch(trk, np.int64(h & np.uint64(trk.shape[0] - 1)))


@inline
def stage_mid(st, q):
    """Stage 2 of lookup q (its tracker bucket has arrived): guess its tracked-row id, keep the guess,
    prefetch its record (both lines)."""
    slot = q & AHEAD_MASK
    tid = store.tracker_peek_hashed(st.trk, np.uint64(st.ahead[slot, A_KEY_HASH]))
    st.ahead[slot, A_TID] = tid
    if tid >= 0:
        prefetch(st.rec, tid)
        prefetch2(st.rec, tid, st.ip[Param.R_KEY])


@inline
def stage_near(st, lk_step, lk_table, lk_row, lk_grad, q):
    """Stage 3 of lookup q (its record has arrived): hash its row, keep the hash, and prefetch the index
    home buckets of its first absent chunk d (the one search that reads the index, and the first insert)
    and of the later chunks whose prefix-min utility after this lookup's update passes theta (the inserts
    admission will make, unless pages run out or a lookup in between changes the row), and the line of
    its slots."""
    ip, slot = st.ip, q & AHEAD_MASK
    t, r = lk_table[q], lk_row[q]
    h = store.splitmix64(r)
    st.ahead[slot, A_ROW_HASH] = np.int64(h)
    tid = st.ahead[slot, A_TID]
    if 0 <= tid < st.sc[Scalar.TRACKED]:
        d = st.rec[tid, ip[Param.R_D]]
    else:
        tid, d = -1, 0
    k_row = st.tabs[t, Tab.K]
    if d < k_row:
        i0 = t * ip[Param.KMAX]
        theta = st.pool_theta[st.tabs[t, Tab.POOL]]
        f = 0.0  # a row not tracked yet starts at u = 0
        if tid >= 0:
            f = decay(st.powtab, st.fp[FParam.GAMMA], lk_step[q] - st.rec[tid, ip[Param.R_LAST]])
        has_log, has_grad, counts = ip[Param.HAS_LOG], ip[Param.HAS_GRAD], ip[Param.COUNT_ACCESSES]
        m = INF
        for k in range(k_row):  # e[k] after the update, as `update_utilities` and `admit_chunks` will find it
            if has_log:
                x = st.wpos[k] if counts else 0.0
            elif has_grad:
                x = np.float64(lk_grad[q, k]) * st.wpos[k]
            else:
                x = st.wpos[k]
            m = min(m, (st.rec_u[tid, k] * f if tid >= 0 else 0.0) + x)
            if k < d:
                continue
            if k > d and m < theta:
                break
            meta = st.ix_meta[i0 + k]
            prefetch(st.ix, meta[Ix.OFF] + np.int64(h & np.uint64(meta[Ix.CAP] - 1)))
        if tid >= 0:
            prefetch2(st.row_slot, tid, d)


@inline
def prefetch_ahead(st, lk_step, lk_table, lk_row, lk_grad, i):
    """Start the cache misses of later lookups in three stages (docs/engine.md): lookup i + TRACKER_AHEAD
    `stage_far`, i + RECORD_AHEAD `stage_mid`, i + INDEX_AHEAD `stage_near`. What each stage works out
    is kept in st.ahead for the next stage and the access (a guess the access confirms)."""
    n = lk_row.size
    if i + TRACKER_AHEAD < n:
        stage_far(st, lk_table, lk_row, i + TRACKER_AHEAD)
    if i + RECORD_AHEAD < n:
        stage_mid(st, i + RECORD_AHEAD)
    if i + INDEX_AHEAD < n:
        stage_near(st, lk_step, lk_table, lk_row, lk_grad, i + INDEX_AHEAD)
    new = st.sc[Scalar.TRACKED] + 1  # the record and slots a row seen for the first time soon will take
    if new < st.rec.shape[0]:
        prefetch(st.rec, new)
        prefetch2(st.rec, new, st.ip[Param.R_KEY])
        prefetch(st.row_slot, new)


@inline
def prime_ahead(st, lk_step, lk_table, lk_row, lk_grad, i):
    """Run the stages the loop has not run for lookups i .. i + TRACKER_AHEAD - 1 (at the start of a call)."""
    n = lk_row.size
    for q in range(i, min(i + TRACKER_AHEAD, n)):
        stage_far(st, lk_table, lk_row, q)
    for q in range(i, min(i + RECORD_AHEAD, n)):
        stage_mid(st, q)
    for q in range(i, min(i + INDEX_AHEAD, n)):
        stage_near(st, lk_step, lk_table, lk_row, lk_grad, q)


# Everything a record needs is inlined into `run`, which allocates nothing; compiling it without
# reference counting (Numba's `_nrt=False`) removes an incref/decref pair per array per inlined
# call, measured at ~140 ns of a ~175 ns lookup. Rounds and snapshots are separate functions
# compiled normally, since they allocate.
@numba.njit(cache=True, nogil=True, _nrt=False)
def run(st, lk_step, lk_table, lk_row, lk_grad, im_step, im_table, im_row, im_chunk, im_value, i, j):
    """Process the merged records from lookup i and importance record j on; stop early to grow."""
    sc, ctl, ip, tabs = st.sc, st.ctl, st.ip, st.tabs
    n_lk, n_im = lk_step.size, im_step.size
    kmax = ip[Param.KMAX]
    interval, report_every = ip[Param.INTERVAL], ip[Param.REPORT_EVERY]
    prime_ahead(st, lk_step, lk_table, lk_row, lk_grad, i)
    while i < n_lk or j < n_im:
        is_lookup = next_is_lookup(lk_step, im_step, i, j)
        s = lk_step[i] if is_lookup else im_step[j]
        t = lk_table[i] if is_lookup else im_table[j]
        # capacity checks first, so that stopping here leaves nothing half done
        if sc[Scalar.TRACKED] + 1 > st.rec.shape[0] or 2 * (sc[Scalar.TRACKED] + 1) > st.trk.shape[0]:
            return NEED_ROWS, i, j
        if is_lookup:
            if sc[Scalar.IX_BUMP] + 2 * kmax * sc[Scalar.IX_CAP_MAX] > st.ix.shape[0]:
                return NEED_INDEX, i, j
            if st.pools[tabs[t, Tab.POOL], PoolCol.HWM] + tabs[t, Tab.K] >= st.page_live.shape[1]:
                return NEED_PAGES, i, j
        prev = ctl[Loop.PREV_STEP]
        if s != prev and ctl[Loop.HAVE_PREV] and not ctl[Loop.GAP_DONE]:  # (equal steps are never a gap)
            ctl[Loop.GAP_ROUND] = crosses(prev, s, interval)
            ctl[Loop.GAP_SNAPSHOT] = crosses(prev, s, report_every)
            if ctl[Loop.GAP_ROUND] or ctl[Loop.GAP_SNAPSHOT]:
                return GAP, i, j
        if is_lookup:
            prefetch_ahead(st, lk_step, lk_table, lk_row, lk_grad, i)
            access(st, t, lk_row[i], s, lk_grad, i, i & AHEAD_MASK)
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


@numba.njit(cache=True)
def resident_prefix(trk, rec, ip, table, row, out):
    """out[i] = the resident prefix d of (table[i], row[i]) now; 0 for a row never seen. Reads only."""
    r_key, r_d = ip[Param.R_KEY], ip[Param.R_D]
    for i in range(row.size):
        tid = store.tracker_find(trk, rec, r_key, store.packed_row_key(table[i], row[i]))
        out[i] = rec[tid, r_d] if tid >= 0 else 0


@numba.njit(cache=True)
def final_snapshot(st):
    if st.ctl[Loop.HAVE_PREV]:
        take_snapshot(st, st.ctl[Loop.PREV_STEP])
