"""A pruning round (DESIGN.md section 2, "Pruning rounds"): the reference's `round`, steps 1-4 per pool.

Ranking every tracked chunk is two passes over the tracked rows (`rank_histogram`, `rank_candidates`), run
in parallel blocks; `select_keep` (FIITED) or `select_rows` (row-prune) finds the exact cut among the
candidates; `free_unkept` frees, in DESIGN order, the chunks outside the keep set. e = min_j (u_j * f) is
computed as (min_j u_j) * f, equal because rounding is monotonic, and the N-th largest e is selected by a
radix histogram over the bit patterns of e (non-negative floats order like their bits) instead of sorting
every tracked chunk. docs/engine.md, "A round", has the measurements.
"""
from __future__ import annotations

import numba
import numpy as np

from ..metrics import Count
from . import store
from .access import INF, decay, row_sum, set_dim
from .hashmap import inline
from .prefetch import prefetch, prefetch2
from .store import ROW_BITS, ROW_MASK, FParam, Ix, Param, PoolCol, Scalar, Tab

ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)  # a cut no e or U bit pattern exceeds: keep nothing
LOW_48 = np.uint64((1 << 48) - 1)
TIE_K_SHIFT = 56  # tie key (k, t, r): k in bits 56.., t in 40..55, r in 0..39
FREE_AHEAD = 16        # rows ahead whose records a round's free loop prefetches (index entries at half)
FREE_RING = 16         # kept prefixes the free loop works out ahead (a ring of FREE_RING > FREE_AHEAD // 2)
assert FREE_AHEAD // 2 < FREE_RING
CANDIDATE_AHEAD = 32   # rows ahead whose records a round's second ranking pass prefetches
IX_LINE = 8            # index entries (8 bytes) per cache line


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
