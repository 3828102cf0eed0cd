"""An access and an importance record (DESIGN.md section 2, "An access"): the reference's
`FiitedModel.access` ((1) `observe`, (2) `update_utilities`, (3) `admit`) and `importance`, with the
same names and in the same order of steps.

The granularity is a parameter of the state (`Param.WHOLE_ROWS`), as `RowPruneModel` is a subclass of
`FiitedModel` that overrides `admit`: `admit` is `admit_chunks` (FIITED) or `admit_row` (row-prune).
Decay factors gamma ** float64(n) come from a table filled with the same pow call
(`state.fill_powtab`), falling back to pow for long gaps, so results equal the reference's bit for bit.
"""
from __future__ import annotations

import numpy as np

from ..metrics import Count, add_hits
from . import store
from .hashmap import inline
from .store import FParam, Param, PoolCol, Tab

INF = np.inf
# What the record loop's prefetch stages (loop.py) work out ahead of an access, kept in st.ahead per lookup
# i % 64 (AHEAD_MASK + 1 > loop.TRACKER_AHEAD):
AHEAD_MASK = 63
A_KEY_HASH, A_TID, A_ROW_HASH = 0, 1, 2  # splitmix64 of its key, a guess of its tracked-row id, splitmix64 of its row


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
    add_hits(cnt, 1, d > 0, d, k_row, d == k_row, d * c, k_row * c)
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
