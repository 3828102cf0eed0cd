"""Full-dimension row caches (`lru`, `lfu`, DESIGN 4): shared data structures, record loop and driver.

A row cache holds whole rows (all K chunks) of every table in one capacity of
bytes. A lookup of a cached row is a hit (d = K); a miss inserts the row,
evicting victims until it fits; a row larger than the whole capacity is never
inserted. This is libCacheSim's `cache_get_base` with object size = row bytes,
so on unit-size rows `lru` reproduces libCacheSim's LRU miss ratio exactly and
`lfu` its LFU (tests/test_row_caches.py checks both).

The eviction order is one structure for both policies, as in libCacheSim's
LFU.c: a list of *frequency buckets* in ascending frequency, each holding a
doubly-linked list of rows in the order they entered it. The victim is always
the head of the first bucket.
  * `lfu`: a hit moves the row to the tail of the bucket of frequency f + 1
    (created next to its bucket if missing); an inserted row joins the
    frequency-1 bucket. So the victim has the least frequency, and among equal
    frequencies it reached that frequency first, i.e. it is the least recently
    used. Frequencies are of the row's current stay in the cache (an evicted
    row comes back with frequency 1), as in libCacheSim.
  * `lru`: a hit moves the row to the tail of its own bucket and frequencies
    never grow, so there is a single bucket: the plain LRU list.

Everything lives in flat int64 arrays, so kernels compile with `_nrt=False`
(see docs/engine.md): an open-addressing hash map from packed (table, row) to
a node (one int64 per bucket: hash bits and node id, the node's key confirming
a match), item nodes (key, prev, next, bucket) and bucket nodes (freq, prev,
next, first item, last item). Nodes and buckets are recycled through free
lists. The arrays are implementation memory, not the modelled footprint, and
grow by doubling between kernel calls (the kernel returns NEED_GROW first), so
state stays proportional to the rows cached (DESIGN 1.3).
"""
from __future__ import annotations

from enum import IntEnum

import numba
import numpy as np

from .. import metrics
from ..engine import aligned_zeros
from ..metrics import Count, IntGauge, Series
from ..prefetch import prefetch
from ..store import EMPTY, ROW_BITS, packed_row_key, splitmix64
from .base import Policy, PolicyResult

inline = numba.njit(cache=True, inline="always")

LRU, LFU = 0, 1
DONE, NEED_GROW = 0, 1
NIL = -1
LOOKAHEAD = 16  # lookups ahead whose map bucket is prefetched; their item node at half that distance


class Sc(IntEnum):
    """sc: the cache's state scalars and loop control (its counts are a metrics.Count array, cnt)."""

    USED = 0         # bytes of the capacity in use
    CACHED = 1       # cached rows
    PAYLOAD = 2      # payload bytes of the cached rows
    LIVE = 3         # chunks of the cached rows
    PREV = 4         # step of the last record
    HAVE_PREV = 5
    FREE_ITEM = 6    # free lists and high-water marks of item and bucket nodes
    ITEM_HWM = 7
    FREE_BUCKET = 8
    BUCKET_HWM = 9
    SNAP_N = 10      # snapshot rows in the buffer


USED, CACHED, PAYLOAD, LIVE, PREV, HAVE_PREV, FREE_ITEM, ITEM_HWM, FREE_BUCKET, BUCKET_HWM, SNAP_N = Sc
# ip: parameters
P_CAPACITY, P_KIND, P_REPORT_EVERY, P_ENTRY_BYTES, P_META_BYTES, P_TOTAL_ROWS = range(6)
N_IP = 6
# tabs[t]: K, payload bytes of one row, bytes one cached row takes from the capacity, D
T_K, T_ROW_BYTES, T_OBJ_BYTES, T_D = range(4)
# items[x]: one cached row
I_KEY, I_PREV, I_NEXT, I_BUCKET = range(4)
# buckets[b]: one frequency; bucket 0 is the sentinel of the circular bucket list
B_FREQ, B_PREV, B_NEXT, B_FIRST, B_LAST = range(5)
# hmap[b]: (low 32 bits of splitmix64(key)) << 32 | (item + 1), 0 = empty; home = splitmix64(key) & mask.
# The hash bits give each entry's home (for deletion and rebuilding) and filter the probe; the item's key
# confirms a match (a hit reads the item next anyway).
LOW32 = np.uint64(0xFFFFFFFF)


# ============================================================================
# Hash map: packed (table, row) -> item, linear probing, backward-shift deletion, one int64 per bucket
# ============================================================================

@inline
def map_home(key, mask):
    return np.int64(splitmix64(key) & np.uint64(mask))


@inline
def entry_item(e):
    return np.int64(np.uint64(e) & LOW32) - 1


@inline
def map_find(hmap, items, key):
    """Item of `key`, or NIL."""
    mask = hmap.shape[0] - 1
    h = splitmix64(key)
    lo = h & LOW32
    b = np.int64(h & np.uint64(mask))
    while True:
        e = hmap[b]
        if e == EMPTY:
            return NIL
        if np.uint64(e) >> np.uint64(32) == lo:
            x = entry_item(e)
            if items[x, I_KEY] == key:
                return x
        b = (b + 1) & mask


@inline
def map_peek(hmap, key):
    """The first item whose hash bits match `key`, or NIL: a guess for prefetching only (reads no item)."""
    mask = hmap.shape[0] - 1
    h = splitmix64(key)
    lo = h & LOW32
    b = np.int64(h & np.uint64(mask))
    while True:
        e = hmap[b]
        if e == EMPTY:
            return NIL
        if np.uint64(e) >> np.uint64(32) == lo:
            return entry_item(e)
        b = (b + 1) & mask


@inline
def map_place(hmap, e):
    """Put entry e at the first empty bucket from its home (the caller keeps the load at most 1/2)."""
    mask = hmap.shape[0] - 1
    b = np.int64((np.uint64(e) >> np.uint64(32)) & np.uint64(mask))
    while hmap[b] != EMPTY:
        b = (b + 1) & mask
    hmap[b] = e


@inline
def map_insert(hmap, key, item):
    """Insert a key known to be absent."""
    map_place(hmap, np.int64(((splitmix64(key) & LOW32) << np.uint64(32)) | np.uint64(item + 1)))


@inline
def map_delete(hmap, key, item):
    """Remove the entry of `item` (whose key is `key`); entries after it move back so no tombstone is needed."""
    mask = hmap.shape[0] - 1
    i = map_home(key, mask)
    while entry_item(hmap[i]) != item:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        e = hmap[j]
        if e == EMPTY:
            break
        h = np.int64((np.uint64(e) >> np.uint64(32)) & np.uint64(mask))
        if (j > i and (h <= i or h > j)) or (j < i and (h <= i and h > j)):  # h not cyclically in (i, j]
            hmap[i] = e
            i = j
    hmap[i] = EMPTY


@numba.njit(cache=True)
def map_rebuild(old, new):
    for b in range(old.shape[0]):
        if old[b] != EMPTY:
            map_place(new, old[b])


# ============================================================================
# Item lists inside a bucket, and the bucket list
# ============================================================================

@inline
def take_node(nodes, next_col, sc, free_at, hwm_at):
    """A node id from a free list (chained through `next_col`, head in sc[free_at]), else a fresh one."""
    x = sc[free_at]
    if x != NIL:
        sc[free_at] = nodes[x, next_col]
    else:
        x = sc[hwm_at]
        sc[hwm_at] = x + 1
    return x


@inline
def give_node(nodes, next_col, sc, free_at, x):
    nodes[x, next_col] = sc[free_at]
    sc[free_at] = x


@inline
def item_append(items, buckets, b, x):
    """Put item x at the tail of bucket b."""
    last = buckets[b, B_LAST]
    items[x, I_PREV] = last
    items[x, I_NEXT] = NIL
    items[x, I_BUCKET] = b
    if last == NIL:
        buckets[b, B_FIRST] = x
    else:
        items[last, I_NEXT] = x
    buckets[b, B_LAST] = x


@inline
def item_unlink(items, buckets, b, x):
    prev, nxt = items[x, I_PREV], items[x, I_NEXT]
    if prev == NIL:
        buckets[b, B_FIRST] = nxt
    else:
        items[prev, I_NEXT] = nxt
    if nxt == NIL:
        buckets[b, B_LAST] = prev
    else:
        items[nxt, I_PREV] = prev


@inline
def bucket_new_after(buckets, sc, after, freq):
    """A new empty bucket of frequency `freq` right after bucket `after` in the list."""
    b = take_node(buckets, B_NEXT, sc, FREE_BUCKET, BUCKET_HWM)
    nxt = buckets[after, B_NEXT]
    buckets[b, B_FREQ] = freq
    buckets[b, B_PREV] = after
    buckets[b, B_NEXT] = nxt
    buckets[b, B_FIRST] = NIL
    buckets[b, B_LAST] = NIL
    buckets[after, B_NEXT] = b
    buckets[nxt, B_PREV] = b
    return b


@inline
def bucket_drop_if_empty(buckets, sc, b):
    if buckets[b, B_FIRST] == NIL:
        prev, nxt = buckets[b, B_PREV], buckets[b, B_NEXT]
        buckets[prev, B_NEXT] = nxt
        buckets[nxt, B_PREV] = prev
        give_node(buckets, B_NEXT, sc, FREE_BUCKET, b)


@inline
def touch(items, buckets, sc, kind, x):
    """A hit on item x: LRU moves it to the tail of its bucket; LFU to the tail of the next frequency."""
    b = items[x, I_BUCKET]
    if kind == LRU:
        if buckets[b, B_LAST] != x:
            item_unlink(items, buckets, b, x)
            item_append(items, buckets, b, x)
        return
    freq = buckets[b, B_FREQ] + 1
    nb = buckets[b, B_NEXT]
    if nb == 0 or buckets[nb, B_FREQ] != freq:
        nb = bucket_new_after(buckets, sc, b, freq)
    item_unlink(items, buckets, b, x)
    item_append(items, buckets, nb, x)
    bucket_drop_if_empty(buckets, sc, b)


# ============================================================================
# Record loop
# ============================================================================

@inline
def evict_one(items, buckets, hmap, tabs, sc, cnt, by_k):
    """Remove the victim: the first item of the first (least frequent) bucket."""
    b = buckets[0, B_NEXT]
    x = buckets[b, B_FIRST]
    key = items[x, I_KEY]
    nx = items[x, I_NEXT]
    if nx != NIL:  # the next victims: its map bucket (its node came with the previous eviction), the next node
        prefetch(hmap, map_home(items[nx, I_KEY], hmap.shape[0] - 1))
        if items[nx, I_NEXT] != NIL:
            prefetch(items, items[nx, I_NEXT])
    t = key >> ROW_BITS
    item_unlink(items, buckets, b, x)
    bucket_drop_if_empty(buckets, sc, b)
    map_delete(hmap, key, x)
    give_node(items, I_NEXT, sc, FREE_ITEM, x)
    k = tabs[t, T_K]
    sc[USED] -= tabs[t, T_OBJ_BYTES]
    sc[CACHED] -= 1
    sc[PAYLOAD] -= tabs[t, T_ROW_BYTES]
    sc[LIVE] -= k
    cnt[Count.FREES] += k
    by_k[k] -= 1


@inline
def insert(items, buckets, hmap, tabs, ip, sc, cnt, by_k, key, t):
    """A miss: make room, then add the row to the frequency-1 bucket (a row larger than the capacity is denied)."""
    obj = tabs[t, T_OBJ_BYTES]
    if obj > ip[P_CAPACITY]:
        cnt[Count.DENIED_FULL] += 1
        return
    while sc[USED] + obj > ip[P_CAPACITY]:
        evict_one(items, buckets, hmap, tabs, sc, cnt, by_k)
    x = take_node(items, I_NEXT, sc, FREE_ITEM, ITEM_HWM)
    b = buckets[0, B_NEXT]
    if b == 0 or buckets[b, B_FREQ] != 1:
        b = bucket_new_after(buckets, sc, 0, 1)
    items[x, I_KEY] = key
    item_append(items, buckets, b, x)
    map_insert(hmap, key, x)
    k = tabs[t, T_K]
    sc[USED] += obj
    sc[CACHED] += 1
    sc[PAYLOAD] += tabs[t, T_ROW_BYTES]
    sc[LIVE] += k
    cnt[Count.ALLOCATIONS] += k
    by_k[k] += 1
    index = sc[CACHED] * ip[P_ENTRY_BYTES]
    cnt[Count.PAYLOAD_PEAK] = max(cnt[Count.PAYLOAD_PEAK], sc[PAYLOAD])
    cnt[Count.INDEX_PEAK] = max(cnt[Count.INDEX_PEAK], index)
    cnt[Count.TOTAL_PEAK] = max(cnt[Count.TOTAL_PEAK], sc[PAYLOAD] + index + sc[CACHED] * ip[P_META_BYTES])


@inline
def write_row(sc, cnt, ip, by_k, gi, gf, step, ints, floats, n):
    """Row n of the time series (metrics.write_snapshot): the counters, this cache's gauges, rows by chunks.
    `gi` and `gf` are scratch for the gauges (the record loop cannot allocate)."""
    index = sc[CACHED] * ip[P_ENTRY_BYTES]
    meta = sc[CACHED] * ip[P_META_BYTES]
    gi[IntGauge.PAYLOAD_BYTES] = sc[PAYLOAD]
    gi[IntGauge.INDEX_BYTES] = index
    gi[IntGauge.META_BYTES] = meta
    gi[IntGauge.TOTAL_BYTES] = sc[PAYLOAD] + index + meta
    gi[IntGauge.MAPPED_PAGES] = 0            # a row cache has no pages
    gi[IntGauge.LIVE_CHUNKS] = sc[LIVE]
    gi[IntGauge.TRACKED_ROWS] = sc[CACHED]   # only cached rows have state
    for g in range(gf.size):
        gf[g] = 0.0                          # fragmentation, theta, index load factor (no index table modelled)
    metrics.write_snapshot(ints, floats, n, step, cnt, gi, gf, by_k, ip[P_TOTAL_ROWS] - sc[CACHED])


@numba.njit(cache=True)
def snapshot_row(sc, cnt, ip, by_k, step, ints, floats, n):
    gi = np.zeros(metrics.N_INT_GAUGES, np.int64)
    gf = np.zeros(metrics.N_FLOAT_GAUGES, np.float64)
    write_row(sc, cnt, ip, by_k, gi, gf, step, ints, floats, n)


@inline
def prefetch_ahead(items, hmap, lk_table, lk_row, i):
    """Start the cache misses of later lookups: the map bucket of lookup i + LOOKAHEAD, the item node of
    i + LOOKAHEAD/2."""
    n = lk_row.size
    far = i + LOOKAHEAD
    if far < n:
        prefetch(hmap, map_home(packed_row_key(lk_table[far], lk_row[far]), hmap.shape[0] - 1))
    mid = i + LOOKAHEAD // 2
    if mid < n:
        y = map_peek(hmap, packed_row_key(lk_table[mid], lk_row[mid]))
        if y != NIL:
            prefetch(items, y)


@inline
def need_grow(sc, items, buckets, hmap):
    """Whether one more lookup could overflow: it takes at most one new item and one new bucket."""
    return (sc[ITEM_HWM] + 1 > items.shape[0] or sc[BUCKET_HWM] + 1 > buckets.shape[0]
            or 2 * (sc[CACHED] + 1) > hmap.shape[0])


@inline
def add_hits(cnt, lookups, chunks, dims, hits, chunk_hits, dim_hits):
    cnt[Count.LOOKUPS] += lookups
    cnt[Count.CHUNKS_REQUESTED] += chunks
    cnt[Count.DIMS_REQUESTED] += dims
    cnt[Count.ROW_HITS] += hits
    cnt[Count.CHUNK_HITS] += chunk_hits
    cnt[Count.FULL_HITS] += hits
    cnt[Count.DIM_HITS] += dim_hits


@numba.njit(cache=True, nogil=True, _nrt=False)
def run(sc, cnt, ip, tabs, items, buckets, hmap, by_k, snap_i, snap_f, gi, gf, lk_step, lk_table, lk_row, im_step, i,
        j):
    """Process the merged records from lookup i and importance record j on; stop early to grow.

    A snapshot is written into (`snap_i`, `snap_f`) at each gap with floor(s'/report_every) > floor(s/report_every),
    labelled with the earlier step, exactly where the other policies take theirs.
    """
    n_lk, n_im = lk_step.size, im_step.size
    kind, report_every = ip[P_KIND], ip[P_REPORT_EVERY]
    # the hit counters of this call stay in registers and reach cnt before a snapshot and at the end
    # (stores to the arrays of the cache would otherwise make every count a load and a store)
    lookups = chunks = dims = hits = chunk_hits = dim_hits = 0
    while i < n_lk or j < n_im:
        is_lookup = i < n_lk and (j >= n_im or lk_step[i] <= im_step[j])
        if is_lookup and need_grow(sc, items, buckets, hmap):
            break
        s = lk_step[i] if is_lookup else im_step[j]
        if sc[HAVE_PREV] and s // report_every > sc[PREV] // report_every:
            add_hits(cnt, lookups, chunks, dims, hits, chunk_hits, dim_hits)
            lookups = chunks = dims = hits = chunk_hits = dim_hits = 0
            write_row(sc, cnt, ip, by_k, gi, gf, sc[PREV], snap_i, snap_f, sc[SNAP_N])
            sc[SNAP_N] += 1
        if is_lookup:
            prefetch_ahead(items, hmap, lk_table, lk_row, i)
            t = lk_table[i]
            key = packed_row_key(t, lk_row[i])
            k, d = tabs[t, T_K], tabs[t, T_D]
            x = map_find(hmap, items, key)
            lookups += 1
            chunks += k
            dims += d
            if x != NIL:
                hits += 1
                chunk_hits += k
                dim_hits += d
                touch(items, buckets, sc, kind, x)
            else:
                insert(items, buckets, hmap, tabs, ip, sc, cnt, by_k, key, t)
            i += 1
        else:
            j += 1
        sc[PREV] = s
        sc[HAVE_PREV] = 1
    add_hits(cnt, lookups, chunks, dims, hits, chunk_hits, dim_hits)
    if i < n_lk or j < n_im:
        return NEED_GROW, i, j
    return DONE, i, j


# ============================================================================
# Python driver
# ============================================================================

def _grown(a: np.ndarray, n: int) -> np.ndarray:
    out = aligned_zeros((n, a.shape[1]), a.dtype)
    out[:a.shape[0]] = a
    return out


class RowCache(Policy):
    """Base of `lru` and `lfu`: subclasses set `name`, `kind` and `meta_bytes_per_row` (their list links)."""

    kind = LRU
    #: modelled bytes of eviction-order state per cached row (used unless ReplayConfig.meta_bytes_per_row is set)
    meta_bytes_per_row = 0
    uses_grad = False
    is_cache = True
    trainable = False

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.k_max = max(t.chunks for t in tables)
        meta = self.meta_bytes_per_row if cfg.meta_bytes_per_row is None else cfg.meta_bytes_per_row
        overhead = cfg.index_entry_bytes + meta if cfg.budget_covers == "all" else 0
        self.tabs = np.array([[t.chunks, t.dim * t.dtype_bytes, t.dim * t.dtype_bytes + overhead, t.dim]
                              for t in tables],
                             np.int64)
        self.ip = np.zeros(N_IP, np.int64)
        self.ip[P_CAPACITY] = cfg.budget_bytes
        self.ip[P_KIND] = self.kind
        self.ip[P_REPORT_EVERY] = cfg.report_every
        self.ip[P_ENTRY_BYTES] = cfg.index_entry_bytes
        self.ip[P_META_BYTES] = meta
        self.ip[P_TOTAL_ROWS] = sum(t.rows for t in tables)
        self.sc = np.zeros(len(Sc), np.int64)
        self.cnt = np.zeros(metrics.N_COUNTS, np.int64)
        self.gi = np.zeros(metrics.N_INT_GAUGES, np.int64)
        self.gf = np.zeros(metrics.N_FLOAT_GAUGES, np.float64)
        self.sc[FREE_ITEM] = self.sc[FREE_BUCKET] = NIL
        self.sc[BUCKET_HWM] = 1  # bucket 0 is the sentinel
        self.items = np.zeros((1024, 4), np.int64)
        self.buckets = np.zeros((1024, 5), np.int64)  # sentinel: an empty circular list (prev = next = 0)
        self.hmap = np.zeros(2048, np.int64)
        self.by_k = np.zeros(self.k_max + 1, np.int64)
        self.series = Series(self.k_max)

    def grow(self) -> None:
        """Double whichever of the item array, bucket array and hash map (rebuilt) the next lookup could overflow."""
        sc = self.sc
        if sc[ITEM_HWM] + 1 > self.items.shape[0]:
            self.items = _grown(self.items, 2 * self.items.shape[0])
        if sc[BUCKET_HWM] + 1 > self.buckets.shape[0]:
            self.buckets = _grown(self.buckets, 2 * self.buckets.shape[0])
        if 2 * (self.sc[CACHED] + 1) > self.hmap.shape[0]:
            hmap = aligned_zeros(2 * self.hmap.shape[0], np.int64)
            map_rebuild(self.hmap, hmap)
            self.hmap = hmap

    def consume(self, batch) -> None:
        steps = np.concatenate((batch.step, batch.imp_step))
        if not steps.size:
            return
        first = int(self.sc[PREV]) if self.sc[HAVE_PREV] else int(steps.min())
        self.series.reserve(min(len(steps), (int(steps.max()) - first) // self.cfg.report_every + 1) + 1)
        self.sc[SNAP_N] = 0
        i = j = 0
        while True:
            status, i, j = run(self.sc, self.cnt, self.ip, self.tabs, self.items, self.buckets, self.hmap, self.by_k,
                               self.series.ints, self.series.floats, self.gi, self.gf, batch.step, batch.table,
                               batch.row, batch.imp_step, i, j)
            if status == DONE:
                break
            self.grow()
        self.series.flush(int(self.sc[SNAP_N]))

    def finish(self) -> PolicyResult:
        if self.sc[HAVE_PREV]:  # the final snapshot, after the last record
            snapshot_row(self.sc, self.cnt, self.ip, self.by_k, self.sc[PREV], self.series.ints, self.series.floats, 0)
            self.series.flush(1)
        return PolicyResult(summary=self.summary(), snapshots=self.series.frame())

    def summary(self) -> dict:
        """The summary now: a snapshot row taken now, with the peaks (metrics.summary)."""
        ints = np.zeros((1, self.series.ints.shape[1]), np.int64)
        floats = np.zeros((1, self.series.floats.shape[1]), np.float64)
        snapshot_row(self.sc, self.cnt, self.ip, self.by_k, self.sc[PREV], ints, floats, 0)
        return metrics.summary(ints[0], floats[0], self.cnt, self.k_max)
