"""FIITED: per-chunk utilities, pruning rounds and threshold admission (DESIGN.md section 2), and
`row-prune`, the same machinery at row granularity (DESIGN.md section 4).

The kernels follow DESIGN.md and `fiitedsim/reference.py` step by step, with
the same names: `access` is the reference's `FiitedModel.access` ((1)
`observe`: hit status and probe searches, (2) `update_utilities`, (3)
`admit`), `importance_record` its `importance`, `pruning_round` its `round`.
The granularity is a parameter of the state (`Param.WHOLE_ROWS`), as
`RowPruneModel` is a subclass of `FiitedModel` that overrides `admit` and the
ranking of `round`: `admit` is `admit_chunks` or `admit_row`, and a round
ranks with `select_keep` or `select_rows`. There is one record loop, `run`,
which walks the merged record stream and stops at each gap between records
that needs a round or a snapshot, for `handle_gap` (see docs/engine.md for
why), for both policies. Two speed measures keep results bit-identical to the
reference:

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

from .. import metrics, store
from ..config import check_budget_workable, resolve_layout
from ..engine import DONE, GAP, NEED_INDEX, NEED_PAGES, NEED_ROWS, EngineState, Loop
from ..memory import check_engine_memory
from ..metrics import Count, FloatGauge, IntGauge
from ..prefetch import prefetch, prefetch2
from ..store import ROW_BITS, ROW_MASK, FParam, Ix, Param, PoolCol, Scalar, Tab, inline
from .base import ChunkRanges, Policy, PolicyResult

INF = np.inf
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)  # a cut no e or U bit pattern exceeds: keep nothing
LOW_48 = np.uint64((1 << 48) - 1)
TIE_K_SHIFT = 56  # tie key (k, t, r): k in bits 56.., t in 40..55, r in 0..39
# The record loop's prefetch schedule, in lookups ahead (docs/engine.md): the tracker bucket, then the
# record (its tracker bucket has arrived), then the index home buckets of the chunks the lookup will
# search and may insert (its record has arrived).
TRACKER_AHEAD = 32
RECORD_AHEAD = 16
INDEX_AHEAD = 4
AHEAD_MASK = 63        # st.ahead keeps, per lookup i % 64 (TRACKER_AHEAD < 64), what the stages worked out:
A_KEY_HASH, A_TID, A_ROW_HASH = 0, 1, 2  # splitmix64 of its key, a guess of its tracked-row id, splitmix64 of its row
FREE_AHEAD = 16        # rows ahead whose records a round's free loop prefetches (index entries at half)
FREE_RING = 16         # kept prefixes the free loop works out ahead (a ring of FREE_RING > FREE_AHEAD // 2)
assert TRACKER_AHEAD <= AHEAD_MASK and FREE_AHEAD // 2 < FREE_RING
CANDIDATE_AHEAD = 32   # rows ahead whose records a round's second ranking pass prefetches
IX_LINE = 8            # index entries (8 bytes) per cache line


@inline
def decay(powtab, gamma, gap):
    """gamma ** float64(gap), from the table when it covers the gap."""
    if gap < powtab.size:
        return powtab[gap]
    return gamma ** np.float64(gap)


@inline
def set_dim(rec, r_d, dim_hist, tid, d):
    dim_hist[rec[tid, r_d]] -= 1
    dim_hist[d] += 1
    rec[tid, r_d] = d


# ============================================================================
# An access (DESIGN 2, "An access"): reference `FiitedModel.access`
# ============================================================================

@inline
def observe(st, tid, t, d, k_row, h):
    """Step (1) of an access: hit status from the resident prefix d before anything changes (DESIGN 5),
    and the searches of k = 0 .. min(d, K-1): the resident prefix and the first absent chunk (DESIGN 3.1).
    A resident chunk's probe length follows from its cached bucket; only the absent one walks the index.
    h = splitmix64(row). (Sums are formed in locals and stored once: a store to an array makes Numba
    reload every array value read after it, docs/engine.md.)"""
    cnt, ix, ix_meta, rec_p = st.cnt, st.ix, st.ix_meta, st.rec_p
    ip = st.ip
    i0, r_pos, c = t * ip[Param.KMAX], ip[Param.R_POS], st.tabs[t, Tab.C]
    searches = min(d, k_row - 1) + 1
    probes = longest = 0
    for k in range(searches):
        if k < d:
            p = store.resident_probes(ix_meta, i0 + k, h, np.int64(rec_p[tid, r_pos + k]))
        else:
            p = store.absent_probes(ix, ix_meta, i0 + k, h)
        probes += p
        longest = max(longest, p)
    cnt[Count.LOOKUPS] += 1
    cnt[Count.ROW_HITS] += d > 0
    cnt[Count.CHUNK_HITS] += d
    cnt[Count.CHUNKS_REQUESTED] += k_row
    cnt[Count.FULL_HITS] += d == k_row
    cnt[Count.DIM_HITS] += d * c
    cnt[Count.DIMS_REQUESTED] += k_row * c
    cnt[Count.SEARCHES] += searches
    cnt[Count.PROBES] += probes
    cnt[Count.MAX_PROBE] = max(cnt[Count.MAX_PROBE], longest)


@inline
def update_utilities(st, tid, s, k_row, grad, gi):
    """Step (2) of an access: u = u * gamma ** (s - last) + x[k] (DESIGN 2)."""
    ip, rec, rec_u, wpos = st.ip, st.rec, st.rec_u, st.wpos
    r_last = ip[Param.R_LAST]
    f = decay(st.powtab, st.fp[FParam.GAMMA], s - rec[tid, r_last])
    if ip[Param.HAS_LOG]:  # x[k] = w_k with --count-accesses, else 0 (an access only decays)
        counts = ip[Param.COUNT_ACCESSES] != 0
        for k in range(k_row):
            x = wpos[k] if counts else 0.0
            rec_u[tid, k] = rec_u[tid, k] * f + x
    elif ip[Param.HAS_GRAD]:  # x[k] = g_k * w_k
        for k in range(k_row):
            rec_u[tid, k] = rec_u[tid, k] * f + np.float64(grad[gi, k]) * wpos[k]
    else:  # g_k = 1.0
        for k in range(k_row):
            rec_u[tid, k] = rec_u[tid, k] * f + 1.0 * wpos[k]
    rec[tid, r_last] = s


@inline
def admit_chunks(st, tid, t, d, k_row, h):
    """Step (3), FIITED (reference `FiitedModel.admit`): for k = d, d+1, ...: e[k] = min over j <= k of u[j]
    (decayed to s by step (2)); below theta -> denied_threshold, no slot -> denied_full, else admitted."""
    if d >= k_row:
        return  # nothing absent
    sc, cnt, ip, rec_u = st.sc, st.cnt, st.ip, st.rec_u
    pool = st.tabs[t, Tab.POOL]
    theta = st.pool_theta[pool]
    i0, r_pos = t * ip[Param.KMAX], ip[Param.R_POS]
    e = INF
    for k in range(d):
        e = min(e, rec_u[tid, k])
    new_d = d
    for k in range(d, k_row):
        e = min(e, rec_u[tid, k])
        if e < theta:
            cnt[Count.DENIED_THRESHOLD] += 1
            break
        slot = store.alloc_slot(st.pools, st.page_live, st.page_free_bits, st.lifo, st.slot_stamp, sc, cnt, ip, pool)
        if slot < 0:
            cnt[Count.DENIED_FULL] += 1
            break
        st.row_slot[tid, k] = slot
        store.index_insert(st.ix, st.ix_meta, st.ix_free, sc, cnt, ip, st.fp[FParam.MAX_LOAD], i0 + k, h, tid,
                           st.rec_p, r_pos + k)
        new_d = k + 1
    if new_d != d:
        set_dim(st.rec, ip[Param.R_D], st.dim_hist, tid, new_d)


@inline
def row_sum(rec_u, tid, k_row):
    """u[0] + u[1] + ... + u[K-1] in k order from 0.0 (semantics.md "Row pruning": U before its decay)."""
    total = 0.0
    for k in range(k_row):
        total += rec_u[tid, k]
    return total


@inline
def admit_row(st, tid, t, d, k_row, h):
    """Step (3), row-prune (reference `RowPruneModel.admit`): a row with nothing resident is admitted whole
    (U = the sum of its utilities, which need no decay: last = s) or not at all."""
    if d > 0:
        return  # d == K: the row is already whole
    sc, cnt, ip, pools = st.sc, st.cnt, st.ip, st.pools
    pool = st.tabs[t, Tab.POOL]
    if row_sum(st.rec_u, tid, k_row) < st.pool_theta[pool]:
        cnt[Count.DENIED_THRESHOLD] += 1
        return
    spp = pools[pool, PoolCol.SPP]
    free_on_mapped = pools[pool, PoolCol.MAPPED] * spp - pools[pool, PoolCol.LIVE]
    mappable = max(0, store.page_cap(sc, ip, pools, pool) - pools[pool, PoolCol.MAPPED])
    if free_on_mapped + mappable * spp < k_row:
        cnt[Count.DENIED_FULL] += 1
        return
    for k in range(k_row):  # all K slots first (cannot fail after the count), then the K inserts
        st.row_slot[tid, k] = store.alloc_slot(pools, st.page_live, st.page_free_bits, st.lifo, st.slot_stamp, sc,
                                               cnt, ip, pool)
    i0, r_pos = t * ip[Param.KMAX], ip[Param.R_POS]
    for k in range(k_row):
        store.index_insert(st.ix, st.ix_meta, st.ix_free, sc, cnt, ip, st.fp[FParam.MAX_LOAD], i0 + k, h, tid,
                           st.rec_p, r_pos + k)
    set_dim(st.rec, ip[Param.R_D], st.dim_hist, tid, k_row)


@inline
def admit(st, tid, t, d, k_row, h):
    """Step (3) of an access: admission, at the policy's granularity."""
    if st.ip[Param.WHOLE_ROWS]:
        admit_row(st, tid, t, d, k_row, h)
    else:
        admit_chunks(st, tid, t, d, k_row, h)


@inline
def access(st, t, r, s, grad, gi, seen):
    """An access (DESIGN 2, reference `FiitedModel.access`). `seen` is the row's slot in st.ahead, where
    the prefetch stages left the hash of its key, a guess of its tracked-row id and the hash of its row."""
    ahead = st.ahead
    tid = store.track_row_hashed(st.trk, st.rec, st.rec_u, st.dim_hist, st.tabs, st.sc, st.cnt, st.ip, t,
                                 store.packed_row_key(t, r), s, np.uint64(ahead[seen, A_KEY_HASH]),
                                 ahead[seen, A_TID])
    k_row = st.tabs[t, Tab.K]
    d = st.rec[tid, st.ip[Param.R_D]]
    h = np.uint64(ahead[seen, A_ROW_HASH])         # splitmix64(r)
    observe(st, tid, t, d, k_row, h)               # (1) hit status and searches
    update_utilities(st, tid, s, k_row, grad, gi)  # (2) utilities
    admit(st, tid, t, d, k_row, h)                 # (3) admission


@inline
def importance_record(st, t, r, k, value, s):
    """Importance-log record (DESIGN 1.3/2, reference `importance`): decay the row to s, then add v * w_k.
    Never admits."""
    rec, rec_u, ip = st.rec, st.rec_u, st.ip
    tid = store.track_row(st.trk, rec, rec_u, st.dim_hist, st.tabs, st.sc, st.cnt, ip, t, r, s)
    r_last = ip[Param.R_LAST]
    f = decay(st.powtab, st.fp[FParam.GAMMA], s - rec[tid, r_last])
    for j in range(st.tabs[t, Tab.K]):
        rec_u[tid, j] = rec_u[tid, j] * f
    rec[tid, r_last] = s
    rec_u[tid, k] = rec_u[tid, k] + np.float64(value) * st.wpos[k]


# ============================================================================
# Pruning round (DESIGN 2, "Pruning rounds"): reference `round`
# ============================================================================

@inline
def e_bits(m, f):
    """Bit pattern of e = m * f; for e >= 0 the bits order like the values."""
    return np.float64(m * f).view(np.uint64)


@inline
def tie_key(t, r, k):
    return (np.int64(k) << TIE_K_SHIFT) | (np.int64(t) << ROW_BITS) | np.int64(r)


# The rank summary of a tracked row, written by `rank_histogram` for `rank_candidates` (st.rank[tid]):
# the top 16 bits of e of its first chunk (of U for row-prune) in bits 48.., of its last chunk in 32..47,
# whether it is in the pool ranked (bit 17) and has resident chunks (bit 16), and the top 16 bits of e of
# its last resident chunk in bits 0..15. e falls with k, so its chunks' buckets run from the first to the last.
IN_POOL = np.uint64(1 << 17)
HAS_D = np.uint64(1 << 16)
TOP16 = np.uint64(0xFFFF)
NO_BUCKET = 1 << 16  # a bucket above every e: every resident row is listed, none is a candidate


@inline
def top16(bits):
    return np.int64(bits >> np.uint64(48))


@numba.njit(cache=True, nogil=True, parallel=True)
def rank_histogram(rec, rec_u, tabs, powtab, gamma, r_key, r_last, r_d, whole_rows, pool, now, n_rows, hist,
                   totals, mins, rank):
    """Pass A of a round, over len(totals) blocks of tracked rows in parallel: block b counts, in hist[b],
    the tracked chunks of `pool` by the top 16 bits of e (row-prune: each row's K chunks at the bucket of U),
    its chunk total in totals[b], the smallest e (U) in mins[b], and each row's rank summary."""
    nb = totals.size
    for b in numba.prange(nb):
        h = hist[b]
        total = 0
        low = INF
        for tid in range(b * n_rows // nb, (b + 1) * n_rows // nb):
            t = rec[tid, r_key] >> ROW_BITS
            if tabs[t, Tab.POOL] != pool:
                rank[tid] = 0
                continue
            k_row, d = tabs[t, Tab.K], rec[tid, r_d]
            f = decay(powtab, gamma, now - rec[tid, r_last])
            if whole_rows:
                u = row_sum(rec_u, tid, k_row) * f
                first = last = last_resident = top16(e_bits(u, 1.0))
                h[first] += k_row
                low = min(low, u)
            else:
                m = INF
                first = last = last_resident = 0
                for k in range(k_row):  # no branches: a run-length count here mispredicted (docs/engine.md)
                    m = min(m, rec_u[tid, k])
                    top = top16(e_bits(m, f))
                    h[top] += 1
                    first = top if k == 0 else first
                    last_resident = top if k == d - 1 else last_resident
                    last = top
                low = min(low, m * f)
            total += k_row
            rank[tid] = ((np.uint64(first) << np.uint64(48)) | (np.uint64(last) << np.uint64(32)) | IN_POOL
                         | (HAS_D if d > 0 else np.uint64(0)) | (np.uint64(last_resident) & TOP16))
        totals[b] = total
        mins[b] = low


@inline
def reads_record(sm, bucket, above_bucket):
    """Whether `rank_candidates` reads the record of a row with rank summary sm: it has a chunk in `bucket`
    (its chunks' buckets run from `first` down to `last`), or (row-prune) it sits in `above_bucket`."""
    first, last = np.int64(sm >> np.uint64(48)), np.int64((sm >> np.uint64(32)) & TOP16)
    return (sm & IN_POOL) != 0 and ((last <= bucket <= first) or first == above_bucket)


@numba.njit(cache=True, nogil=True, parallel=True)
def rank_candidates(rec, rec_u, tabs, powtab, gamma, r_key, r_last, whole_rows, now, n_rows, bucket, above_bucket,
                    rank, cand_bits, cand_keys, cand_k, cand_end, list_end, above_bits, above_keys):
    """Pass B of a round, over the same blocks as `rank_histogram`, reading rank summaries (8 bytes a row)
    and the records of the rows that need it. Block b writes from cand_end[b] on the candidates of
    `bucket` (FIITED: chunks, with their (k, t, r) tie keys; row-prune: rows, with their (t, r) keys and K)
    and moves cand_end[b] past them; writes over rank[] from its first row on the rows with a resident chunk
    at or below `bucket` (they may lose chunks), in tid order, ending at list_end[b]; and, for row-prune,
    keeps the last-ranked row above `bucket`, which is in `above_bucket`, the lowest non-empty bucket above
    it (smallest U bits, then largest key), in above_*[b]."""
    nb = cand_end.size
    for b in numba.prange(nb):
        c = cand_end[b]
        lo, hi = b * n_rows // nb, (b + 1) * n_rows // nb
        n = lo  # the block's list overwrites rank summaries already read (n <= tid)
        a_bits, a_key = ALL_ONES, np.int64(-1)
        for tid in range(lo, hi):
            ahead = tid + CANDIDATE_AHEAD
            if ahead < hi and reads_record(rank[ahead], bucket, above_bucket):
                prefetch(rec, ahead)
                prefetch2(rec, ahead, r_key)
            sm = rank[tid]
            if reads_record(sm, bucket, above_bucket):
                key = rec[tid, r_key]
                t = key >> ROW_BITS
                f = decay(powtab, gamma, now - rec[tid, r_last])
                if whole_rows:
                    bits = e_bits(row_sum(rec_u, tid, tabs[t, Tab.K]), f)
                    if top16(bits) == bucket:
                        cand_bits[c] = bits
                        cand_keys[c] = key
                        cand_k[c] = tabs[t, Tab.K]
                        c += 1
                    elif bits < a_bits or (bits == a_bits and key > a_key):
                        a_bits, a_key = bits, key
                else:
                    r = key & ROW_MASK
                    m = INF
                    for k in range(tabs[t, Tab.K]):
                        m = min(m, rec_u[tid, k])
                        bits = e_bits(m, f)
                        if top16(bits) == bucket:
                            cand_bits[c] = bits
                            cand_keys[c] = tie_key(t, r, k)
                            c += 1
            rank[n] = tid  # listed when it has a resident chunk at or below `bucket` (no branch: n <= tid)
            n += np.int64((sm & HAS_D) != 0) & np.int64(np.int64(sm & TOP16) <= bucket)
        cand_end[b] = c
        list_end[b] = n
        above_bits[b], above_keys[b] = a_bits, a_key


@numba.njit(cache=True, nogil=True)
def select_keep(cand_bits, cand_keys, need, hist):
    """FIITED (reference `round`, steps 2-3): the cut among the candidates of the bucket holding the
    N-th largest e, `need` of which are kept: ranking is (e desc, k asc, t asc, r asc), so the kept ones
    are the largest bits and, among equal bits, the first tie keys. Returns (theta, cut_bits, cut_key): a
    chunk is kept when its e bits exceed cut_bits, or equal them with tie key <= cut_key.

    The candidates share the top 16 bits; a second radix histogram over the next 16 finds the one
    sub-bucket holding the cut, and only that is sorted (a bucket held up to 270,000 candidates on the
    benchmark trace)."""
    hist[:] = 0  # scratch of 2**16 counts
    for q in range(cand_bits.size):
        hist[(cand_bits[q] >> np.uint64(32)) & TOP16] += 1
    above = 0
    sub = (1 << 16) - 1
    while above + hist[sub] < need:
        above += hist[sub]
        sub -= 1
    bits = np.empty(hist[sub], np.uint64)
    keys = np.empty(hist[sub], np.int64)
    c = 0
    for q in range(cand_bits.size):
        if np.int64((cand_bits[q] >> np.uint64(32)) & TOP16) == sub:
            bits[c], keys[c] = cand_bits[q], cand_keys[q]
            c += 1
    need -= above  # 1 <= need <= c
    cut_bits = np.sort(bits)[c - need]
    greater = 0
    for q in range(c):
        greater += bits[q] > cut_bits
    tied_keys = np.sort(keys[bits == cut_bits])
    cut_key = tied_keys[need - greater - 1]  # the tied chunks kept are the first in (k, t, r) order
    return np.uint64(cut_bits).view(np.float64), cut_bits, cut_key


@numba.njit(cache=True, nogil=True)
def select_rows(cand_bits, cand_keys, cand_k, above, n_keep, bucket, above_bits):
    """row-prune (reference `RowPruneModel.round`): the keep set is the longest prefix of the rows in
    (U desc, t asc, r asc) whose chunk total is at most n_keep; `above` chunks (rows) rank above the
    bucket's candidates, the last of them with U bits `above_bits`. Returns (theta, cut_bits, cut_key): a
    row is kept when its U bits exceed cut_bits, or equal them with packed (t, r) key <= cut_key."""
    c = cand_bits.size
    # the bucket's rows in rank order: by key, then stably by U bits descending
    order = np.argsort(cand_keys, kind="mergesort")
    order = order[np.argsort(ALL_ONES - cand_bits[order], kind="mergesort")]
    used = above
    last = -1
    for q in range(c):
        if used + cand_k[order[q]] > n_keep:
            break  # the first row that does not fit ends the keep set
        used += cand_k[order[q]]
        last = order[q]
    if last >= 0:
        return np.uint64(cand_bits[last]).view(np.float64), cand_bits[last], cand_keys[last]
    if above > 0:  # the cut falls just above this bucket
        return (np.uint64(above_bits).view(np.float64), (np.uint64(bucket) << np.uint64(48)) | LOW_48,
                np.int64(-1))
    return INF, ALL_ONES, np.int64(-1)  # not even the first row fits


@inline
def kept_prefix(rec, rec_u, tabs, whole_rows, r_key, tid, t, d, f, cut_bits, cut_key):
    """How many of row tid's d resident chunks the keep set holds (a prefix: `select_keep`/`select_rows`)."""
    key = rec[tid, r_key]
    if whole_rows:
        bits = e_bits(row_sum(rec_u, tid, tabs[t, Tab.K]), f)
        return d if bits > cut_bits or (bits == cut_bits and key <= cut_key) else 0
    r = key & ROW_MASK
    m = INF
    for k in range(d):
        m = min(m, rec_u[tid, k])
        bits = e_bits(m, f)
        if not (bits > cut_bits or (bits == cut_bits and tie_key(t, r, k) <= cut_key)):
            return k
    return d


@numba.njit(cache=True, nogil=True, _nrt=False)
def free_unkept(st, pool, now, cut_bits, cut_key, rows, ring):
    """Step 4 of a round: free each listed row's resident chunks outside the keep set, rows in the given
    order, chunks k ascending (index entry, then slot). Prefetches the records of rows FREE_AHEAD ahead,
    and FREE_AHEAD/2 ahead (their records have arrived) works out how much they keep (into `ring`, FREE_RING
    entries) and prefetches the index entries and slots of the chunks they lose."""
    sc, cnt, ip, tabs, rec, rec_u, rec_p = st.sc, st.cnt, st.ip, st.tabs, st.rec, st.rec_u, st.rec_p
    r_key, r_last, r_d, r_pos = ip[Param.R_KEY], ip[Param.R_LAST], ip[Param.R_D], ip[Param.R_POS]
    whole_rows, kmax = ip[Param.WHOLE_ROWS], ip[Param.KMAX]
    powtab, gamma = st.powtab, st.fp[FParam.GAMMA]
    n = rows.size
    half = FREE_AHEAD // 2
    freed, low_page = 0, st.pools[pool, PoolCol.HINT_FREE]
    spp, is_lifo = st.pools[pool, PoolCol.SPP], ip[Param.LIFO] != 0
    for q in range(-half, n):
        far = q + FREE_AHEAD
        if far < n:
            prefetch(rec, rows[far])
            prefetch2(rec, rows[far], r_key)
        near = q + half
        if near < n:
            tid = rows[near]
            t, d = rec[tid, r_key] >> ROW_BITS, rec[tid, r_d]
            kept = kept_prefix(rec, rec_u, tabs, whole_rows, r_key, tid, t, d,
                               decay(powtab, gamma, now - rec[tid, r_last]), cut_bits, cut_key)
            ring[near % FREE_RING] = kept
            for k in range(kept, d):  # the entry's line and the next: a backward shift walks on past the entry
                off, mask = st.ix_meta[t * kmax + k, Ix.OFF], st.ix_meta[t * kmax + k, Ix.CAP] - 1
                hole = np.int64(rec_p[tid, r_pos + k])
                prefetch(st.ix, off + hole)
                prefetch(st.ix, off + ((hole + IX_LINE) & mask))
            if kept < d:
                prefetch2(st.row_slot, tid, kept)
        if q < 0:
            continue
        tid = rows[q]
        kept, d = ring[q % FREE_RING], rec[tid, r_d]
        if kept == d:
            continue  # a row listed because a chunk sits in the cut's bucket, which keeps all of them
        t = rec[tid, r_key] >> ROW_BITS
        for k in range(kept, d):
            store.index_remove(st.ix, st.ix_meta, t * kmax + k, np.int64(rec_p[tid, r_pos + k]), rec_p, r_pos + k)
            page = store.release_slot(st.pools, st.page_live, st.page_free_bits, st.lifo, st.slot_stamp, sc, pool,
                                      np.int64(st.row_slot[tid, k]), spp, is_lifo)
            low_page = min(low_page, page)
        freed += d - kept
        set_dim(rec, r_d, st.dim_hist, tid, kept)
    # the counts of the frees, stored once (a store makes Numba reload every array value read after it)
    sc[Scalar.IX_COUNT_TOTAL] -= freed
    st.pools[pool, PoolCol.LIVE] -= freed
    sc[Scalar.LIVE_TOTAL] -= freed
    cnt[Count.FREES] += freed
    st.pools[pool, PoolCol.HINT_FREE] = min(st.pools[pool, PoolCol.HINT_FREE], low_page)


@numba.njit(cache=True, nogil=True)
def pruning_round(st, now):
    """DESIGN 2 "Pruning rounds" (reference `round`), per pool:
    1. N = the chunk slots the budget allows;
    2. rank every tracked chunk (row-prune: row) by a radix histogram of the bits of e (U) in parallel
       (`rank_histogram`), then sort only the bucket holding the cut (`rank_candidates`, `select_keep` or
       `select_rows`); the same second pass lists the rows that may lose chunks;
    3. theta: the e (U) of the last kept; 0.0 if everything fits below N; +inf if N = 0;
    4. free every resident chunk outside the keep set in (t, r, k) order (`free_unkept`), then unmap the
       pages left empty.
    Results do not depend on the number of threads: the histograms are exact counts summed in block order,
    the candidates are sorted, and the rows to free are listed in tid order."""
    sc, cnt, ip, rec, pools, rank = st.sc, st.cnt, st.ip, st.rec, st.pools, st.rank
    r_key, r_last, r_d = ip[Param.R_KEY], ip[Param.R_LAST], ip[Param.R_D]
    whole_rows = ip[Param.WHOLE_ROWS] != 0
    gamma = st.fp[FParam.GAMMA]
    cnt[Count.ROUNDS] += 1
    n_rows = sc[Scalar.TRACKED]
    nb = max(1, min(ip[Param.ROUND_BLOCKS], n_rows // ip[Param.ROUND_BLOCK_MIN]))  # blocks of the parallel passes
    # scratch kept from round to round (fresh memory costs a page clearing, docs/engine.md)
    hist = st.round_hist[:nb] if st.round_hist.shape[0] >= nb else np.zeros((nb, 1 << 16), np.int64)
    totals = np.zeros(nb, np.int64)
    mins = np.zeros(nb, np.float64)
    ring = np.zeros(FREE_RING, np.int64)
    for pool in range(pools.shape[0]):
        n_keep = store.page_cap(sc, ip, pools, pool) * pools[pool, PoolCol.SPP]  # 1.
        hist[:] = 0
        rank_histogram(rec, st.rec_u, st.tabs, st.powtab, gamma, r_key, r_last, r_d, whole_rows, pool, now,
                       n_rows, hist, totals, mins, rank)  # 2.
        total = totals[:nb].sum()
        if n_keep > 0 and total <= n_keep:  # everything fits (row-prune: theta as FIITED's)
            st.pool_theta[pool] = 0.0 if total < n_keep else mins[:nb].min()  # 3.
            continue
        # the bucket holding the cut: FIITED the N-th largest e; row-prune where the running chunk total
        # first exceeds N (all rows above it fit)
        above = 0
        bucket = NO_BUCKET
        if n_keep > 0:
            bucket = (1 << 16) - 1
            while True:
                in_bucket = 0
                for b in range(nb):
                    in_bucket += hist[b, bucket]
                if above + in_bucket > n_keep or (not whole_rows and above + in_bucket == n_keep):
                    break
                above += in_bucket
                bucket -= 1
        above_bucket = -1  # row-prune: the lowest non-empty bucket above the cut's, where the last row above is
        if whole_rows and bucket < NO_BUCKET:
            for q in range(bucket + 1, 1 << 16):
                for b in range(nb):
                    if hist[b, q] > 0:
                        above_bucket = q
                if above_bucket >= 0:
                    break
        cand_end = np.zeros(nb, np.int64)
        room = 0
        if bucket < NO_BUCKET:
            for b in range(nb):
                cand_end[b] = room
                room += hist[b, bucket]  # row-prune: chunks, so room enough for the rows
        cand_start = cand_end.copy()
        sc[Scalar.ROUND_ROOM] = max(sc[Scalar.ROUND_ROOM], room)  # the driver enlarges the scratch to this
        if room <= st.cand_bits.size:
            cand_bits, cand_keys, cand_k = st.cand_bits, st.cand_keys, st.cand_k
        else:
            cand_bits, cand_keys, cand_k = (np.empty(room, np.uint64), np.empty(room, np.int64),
                                            np.empty(room, np.int64))
        list_end = np.zeros(nb, np.int64)
        above_bits = np.empty(nb, np.uint64)
        above_keys = np.empty(nb, np.int64)
        rank_candidates(rec, st.rec_u, st.tabs, st.powtab, gamma, r_key, r_last, whole_rows, now, n_rows,
                        bucket, above_bucket, rank, cand_bits, cand_keys, cand_k, cand_end, list_end, above_bits,
                        above_keys)
        if n_keep == 0:  # 3. keep nothing: no e (U) bit pattern exceeds ALL_ONES
            theta, cut_bits, cut_key = INF, ALL_ONES, np.int64(-1)
        else:
            c = 0  # the blocks' candidates, one after another
            for b in range(nb):
                for q in range(cand_start[b], cand_end[b]):
                    cand_bits[c], cand_keys[c] = cand_bits[q], cand_keys[q]
                    if whole_rows:
                        cand_k[c] = cand_k[q]
                    c += 1
            if whole_rows:
                a_bits, a_key = ALL_ONES, np.int64(-1)  # the last-ranked row above the bucket, over the blocks
                for b in range(nb):
                    if above_bits[b] < a_bits or (above_bits[b] == a_bits and above_keys[b] > a_key):
                        a_bits, a_key = above_bits[b], above_keys[b]
                theta, cut_bits, cut_key = select_rows(cand_bits[:c], cand_keys[:c], cand_k[:c], above, n_keep,
                                                       bucket, a_bits)
            else:
                theta, cut_bits, cut_key = select_keep(cand_bits[:c], cand_keys[:c], n_keep - above, hist[0])
        st.pool_theta[pool] = theta
        n = 0  # the blocks' lists of rows that may lose chunks, one after another: tid order
        for b in range(nb):
            for q in range(b * n_rows // nb, list_end[b]):
                rank[n] = rank[q]
                n += 1
        rows = rank[:n].view(np.int64)
        if ip[Param.LIFO]:  # (t, r, k) order. With the lowest-address allocator the result does not depend
            # on the order (the free set is a set, and backward-shift deletion leaves an index as if the key
            # had never been inserted: Knuth's Algorithm R), so only LIFO pays for the sort.
            rows = rows[np.argsort(rec[rows, r_key], kind="mergesort")]
        free_unkept(st, pool, now, cut_bits, cut_key, rows, ring)  # 4.
    store.unmap_empty_pages(pools, st.page_live, sc)


# ============================================================================
# Snapshots and the record loop
# ============================================================================

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
        is_lookup = i < n_lk and (j >= n_im or lk_step[i] <= im_step[j])
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
            ctl[Loop.GAP_ROUND] = s // interval > prev // interval
            ctl[Loop.GAP_SNAPSHOT] = s // report_every > prev // report_every
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


# ============================================================================
# Python driver
# ============================================================================

class Fiited(Policy):
    """FIITED dimension pruning over VHPI storage."""

    name = "fiited"
    #: granularity: a row holds any prefix of its chunks (FIITED) or all or none (row-prune)
    whole_rows = False
    has_rounds = True
    #: the record loop and gap handler (one pair for both granularities)
    run_kernel = staticmethod(run)
    gap_kernel = staticmethod(handle_gap)

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, resolve_layout(tables, cfg), has_grad, has_log)  # the run's page size and indices
        cfg = self.cfg
        self.engine = EngineState(tables, cfg, has_grad, has_log, whole_rows=self.whole_rows)
        k_max = self.engine.k_max
        self._no_grad = np.zeros((1, k_max), np.float32)

    @classmethod
    def check_budget(cls, tables, cfg, vocabulary: bool = False) -> None:
        cfg = resolve_layout(tables, cfg)
        check_engine_memory(tables, cfg)  # the start-up arrays (--index-initial, --page-bytes) must fit
        check_budget_workable(tables, cfg)

    def consume(self, batch) -> None:
        steps_max = 0
        if batch.step.size:
            steps_max = int(batch.step[-1])
        if batch.imp_step.size:
            steps_max = max(steps_max, int(batch.imp_step[-1]))
        self.engine.ensure_steps(steps_max)
        grad = batch.grad if (batch.grad is not None and self.engine.st.ip[store.Param.HAS_GRAD]) else self._no_grad
        self.engine.populate_ahead()
        i = j = 0
        while True:
            status, i, j = self.run_kernel(self.engine.st, batch.step, batch.table, batch.row, grad, batch.imp_step,
                                           batch.imp_table, batch.imp_row, batch.imp_chunk, batch.imp_value, i, j)
            if status == DONE:
                return
            if status == GAP:
                self.engine.snapshot_room()
                self.gap_kernel(self.engine.st)
                self.engine.round_scratch()
            else:
                self.engine.grow(status)
                self.engine.populate_ahead()

    def gap_due(self, step: int) -> tuple[bool, bool]:
        """(round, snapshot): what `run` would handle in the gap before a record of `step` (DESIGN 2)."""
        ctl, ip = self.engine.st.ctl, self.engine.st.ip
        if not ctl[Loop.HAVE_PREV] or ctl[Loop.GAP_DONE]:
            return False, False
        prev = int(ctl[Loop.PREV_STEP])
        return (step // int(ip[Param.INTERVAL]) > prev // int(ip[Param.INTERVAL]),
                step // int(ip[Param.REPORT_EVERY]) > prev // int(ip[Param.REPORT_EVERY]))

    def close_gap(self, step: int) -> ChunkRanges | None:
        """Handle now the gap `run` would stop at before the first record of `step`; return the chunks its
        round freed (None when no round ran).

        The trainer needs a round's frees before it reads the rows of `step`, while replay
        runs the round when that step's first record arrives: both happen between the last
        consumed record and `step`, at now = the last record's step, so the results agree.
        Marking the gap done lets the records of `step` then pass it without a second round.
        Rounds only free, so the freed chunks are each tracked row's prefix before minus after.
        """
        round_due, snapshot_due = self.gap_due(step)
        if not (round_due or snapshot_due):
            return None
        st = self.engine.st
        st.ctl[Loop.GAP_ROUND], st.ctl[Loop.GAP_SNAPSHOT] = round_due, snapshot_due
        self.engine.snapshot_room()
        if not round_due:
            self.gap_kernel(st)
            return None
        keys, before = self.engine.prefixes()
        self.gap_kernel(st)
        self.engine.round_scratch()
        _, after = self.engine.prefixes(len(keys))
        shrunk = np.flatnonzero(after < before)
        keys = keys[shrunk]
        return ChunkRanges(keys >> ROW_BITS, keys & ROW_MASK, after[shrunk], before[shrunk])

    @property
    def rounds(self) -> int:
        return int(self.engine.st.cnt[Count.ROUNDS])

    def resident_chunks(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Resident prefix d in chunks (int32) of each (table, row) lookup now, without changing any state."""
        out = np.empty(row.size, np.int32)
        st = self.engine.st
        resident_prefix(st.trk, st.rec, st.ip, np.ascontiguousarray(table, np.int64),
                        np.ascontiguousarray(row, np.int64), out)
        return out

    def resident_dims(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Resident dimensions (d * C, int32) of each (table, row) lookup now, without changing any state."""
        return self.resident_chunks(table, row) * self.engine.st.tabs[np.asarray(table, np.int64), Tab.C].astype(
            np.int32)

    def finish(self) -> PolicyResult:
        eng = self.engine
        eng.snapshot_room()
        final_snapshot(eng.st)
        eng.flush_snapshots()
        return PolicyResult(summary=self.summary(), snapshots=eng.series.frame())

    def summary(self) -> dict:
        """The summary now: a snapshot row taken now, with the peaks and the longest probe (metrics.summary)."""
        st = self.engine.st
        ints = np.zeros((1, st.snap_i.shape[1]), np.int64)
        floats = np.zeros((1, st.snap_f.shape[1]), np.float64)
        snapshot_row(st, st.ctl[Loop.PREV_STEP], ints, floats, 0)
        return metrics.summary(ints[0], floats[0], st.cnt, self.engine.k_max)
