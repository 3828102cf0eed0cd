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
from ..engine import hashmap
from ..engine.hashmap import ROW_BITS, inline, packed_row_key, splitmix64
from ..engine.loop import crosses, next_is_lookup
from ..engine.prefetch import prefetch
from ..engine.state import aligned_zeros
from ..metrics import Count, IntGauge, Series
from .base import Policy, PolicyResult

NIL = -1
LOOKAHEAD = 16  # lookups ahead whose map bucket is prefetched; their item node at half that distance


class Kind(IntEnum):
    """Which eviction order (ip[Ip.KIND])."""

    LRU = 0
    LFU = 1


class Status(IntEnum):
    """What `run` returns: done, or stopped because the next lookup could overflow an array."""

    DONE = 0
    NEED_GROW = 1


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


class Ip(IntEnum):
    """ip: the cache's parameters."""

    CAPACITY = 0
    KIND = 1
    REPORT_EVERY = 2
    ENTRY_BYTES = 3
    META_BYTES = 4
    TOTAL_ROWS = 5


class TabCol(IntEnum):
    """tabs[t]: K, payload bytes of one row, bytes one cached row takes from the capacity, D."""

    K = 0
    ROW_BYTES = 1
    OBJ_BYTES = 2
    D = 3


class Item(IntEnum):
    """items[x]: one cached row."""

    KEY = 0
    PREV = 1
    NEXT = 2
    BUCKET = 3


class Bucket(IntEnum):
    """buckets[b]: one frequency; bucket 0 is the sentinel of the circular bucket list."""

    FREQ = 0
    PREV = 1
    NEXT = 2
    FIRST = 3
    LAST = 4


# hmap: a map of engine/hashmap.py from packed (table, row) to its item; the item's key confirms a match (a hit
# reads the item next anyway).


# ============================================================================
# Hash map: packed (table, row) -> item (engine/hashmap.py)
# ============================================================================

@inline
def map_find(hmap, items, key):
    """Item of `key`, or NIL."""
    return hashmap.find(hmap, 0, hmap.shape[0] - 1, splitmix64(key), items, Item.KEY, key)


@inline
def map_delete(hmap, key, item):
    """Remove the entry of `item` (whose key is `key`)."""
    mask = hmap.shape[0] - 1
    b = hashmap.home(splitmix64(key), mask)
    while hashmap.entry_value(hmap[b]) != item:
        b = (b + 1) & mask
    hashmap.remove(hmap, 0, mask, b)


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
    last = buckets[b, Bucket.LAST]
    items[x, Item.PREV] = last
    items[x, Item.NEXT] = NIL
    items[x, Item.BUCKET] = b
    if last == NIL:
        buckets[b, Bucket.FIRST] = x
    else:
        items[last, Item.NEXT] = x
    buckets[b, Bucket.LAST] = x


@inline
def item_unlink(items, buckets, b, x):
    prev, nxt = items[x, Item.PREV], items[x, Item.NEXT]
    if prev == NIL:
        buckets[b, Bucket.FIRST] = nxt
    else:
        items[prev, Item.NEXT] = nxt
    if nxt == NIL:
        buckets[b, Bucket.LAST] = prev
    else:
        items[nxt, Item.PREV] = prev


@inline
def bucket_new_after(buckets, sc, after, freq):
    """A new empty bucket of frequency `freq` right after bucket `after` in the list."""
    b = take_node(buckets, Bucket.NEXT, sc, Sc.FREE_BUCKET, Sc.BUCKET_HWM)
    nxt = buckets[after, Bucket.NEXT]
    buckets[b, Bucket.FREQ] = freq
    buckets[b, Bucket.PREV] = after
    buckets[b, Bucket.NEXT] = nxt
    buckets[b, Bucket.FIRST] = NIL
    buckets[b, Bucket.LAST] = NIL
    buckets[after, Bucket.NEXT] = b
    buckets[nxt, Bucket.PREV] = b
    return b


@inline
def bucket_drop_if_empty(buckets, sc, b):
    if buckets[b, Bucket.FIRST] == NIL:
        prev, nxt = buckets[b, Bucket.PREV], buckets[b, Bucket.NEXT]
        buckets[prev, Bucket.NEXT] = nxt
        buckets[nxt, Bucket.PREV] = prev
        give_node(buckets, Bucket.NEXT, sc, Sc.FREE_BUCKET, b)


@inline
def touch(items, buckets, sc, kind, x):
    """A hit on item x: LRU moves it to the tail of its bucket; LFU to the tail of the next frequency."""
    b = items[x, Item.BUCKET]
    if kind == Kind.LRU:
        if buckets[b, Bucket.LAST] != x:
            item_unlink(items, buckets, b, x)
            item_append(items, buckets, b, x)
        return
    freq = buckets[b, Bucket.FREQ] + 1
    nb = buckets[b, Bucket.NEXT]
    if nb == 0 or buckets[nb, Bucket.FREQ] != freq:
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
    b = buckets[0, Bucket.NEXT]
    x = buckets[b, Bucket.FIRST]
    key = items[x, Item.KEY]
    nx = items[x, Item.NEXT]
    if nx != NIL:  # the next victims: its map bucket (its node came with the previous eviction), the next node
        prefetch(hmap, hashmap.home(splitmix64(items[nx, Item.KEY]), hmap.shape[0] - 1))
        if items[nx, Item.NEXT] != NIL:
            prefetch(items, items[nx, Item.NEXT])
    t = key >> ROW_BITS
    item_unlink(items, buckets, b, x)
    bucket_drop_if_empty(buckets, sc, b)
    map_delete(hmap, key, x)
    give_node(items, Item.NEXT, sc, Sc.FREE_ITEM, x)
    k = tabs[t, TabCol.K]
    sc[Sc.USED] -= tabs[t, TabCol.OBJ_BYTES]
    sc[Sc.CACHED] -= 1
    sc[Sc.PAYLOAD] -= tabs[t, TabCol.ROW_BYTES]
    sc[Sc.LIVE] -= k
    cnt[Count.FREES] += k
    by_k[k] -= 1


@inline
def insert(items, buckets, hmap, tabs, ip, sc, cnt, by_k, key, t):
    """A miss: make room, then add the row to the frequency-1 bucket (a row larger than the capacity is denied)."""
    obj = tabs[t, TabCol.OBJ_BYTES]
    if obj > ip[Ip.CAPACITY]:
        cnt[Count.DENIED_FULL] += 1
        return
    while sc[Sc.USED] + obj > ip[Ip.CAPACITY]:
        evict_one(items, buckets, hmap, tabs, sc, cnt, by_k)
    x = take_node(items, Item.NEXT, sc, Sc.FREE_ITEM, Sc.ITEM_HWM)
    b = buckets[0, Bucket.NEXT]
    if b == 0 or buckets[b, Bucket.FREQ] != 1:
        b = bucket_new_after(buckets, sc, 0, 1)
    items[x, Item.KEY] = key
    item_append(items, buckets, b, x)
    hashmap.insert(hmap, 0, hmap.shape[0] - 1, splitmix64(key), x)
    k = tabs[t, TabCol.K]
    sc[Sc.USED] += obj
    sc[Sc.CACHED] += 1
    sc[Sc.PAYLOAD] += tabs[t, TabCol.ROW_BYTES]
    sc[Sc.LIVE] += k
    cnt[Count.ALLOCATIONS] += k
    by_k[k] += 1
    index = sc[Sc.CACHED] * ip[Ip.ENTRY_BYTES]
    cnt[Count.PAYLOAD_PEAK] = max(cnt[Count.PAYLOAD_PEAK], sc[Sc.PAYLOAD])
    cnt[Count.INDEX_PEAK] = max(cnt[Count.INDEX_PEAK], index)
    cnt[Count.TOTAL_PEAK] = max(cnt[Count.TOTAL_PEAK], sc[Sc.PAYLOAD] + index + sc[Sc.CACHED] * ip[Ip.META_BYTES])


@inline
def write_row(sc, cnt, ip, by_k, gi, gf, step, ints, floats, n):
    """Row n of the time series (metrics.write_snapshot): the counters, this cache's gauges, rows by chunks.
    `gi` and `gf` are scratch for the gauges (the record loop cannot allocate)."""
    index = sc[Sc.CACHED] * ip[Ip.ENTRY_BYTES]
    meta = sc[Sc.CACHED] * ip[Ip.META_BYTES]
    gi[IntGauge.PAYLOAD_BYTES] = sc[Sc.PAYLOAD]
    gi[IntGauge.INDEX_BYTES] = index
    gi[IntGauge.META_BYTES] = meta
    gi[IntGauge.TOTAL_BYTES] = sc[Sc.PAYLOAD] + index + meta
    gi[IntGauge.MAPPED_PAGES] = 0            # a row cache has no pages
    gi[IntGauge.LIVE_CHUNKS] = sc[Sc.LIVE]
    gi[IntGauge.TRACKED_ROWS] = sc[Sc.CACHED]   # only cached rows have state
    for g in range(gf.size):
        gf[g] = 0.0                          # fragmentation, theta, index load factor (no index table modelled)
    metrics.write_snapshot(ints, floats, n, step, cnt, gi, gf, by_k, ip[Ip.TOTAL_ROWS] - sc[Sc.CACHED])


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
        prefetch(hmap, hashmap.home(splitmix64(packed_row_key(lk_table[far], lk_row[far])), hmap.shape[0] - 1))
    mid = i + LOOKAHEAD // 2
    if mid < n:
        y = hashmap.peek(hmap, 0, hmap.shape[0] - 1, splitmix64(packed_row_key(lk_table[mid], lk_row[mid])))
        if y != NIL:
            prefetch(items, y)


@inline
def need_grow(sc, items, buckets, hmap):
    """Whether one more lookup could overflow: it takes at most one new item and one new bucket."""
    return (sc[Sc.ITEM_HWM] + 1 > items.shape[0] or sc[Sc.BUCKET_HWM] + 1 > buckets.shape[0]
            or 2 * (sc[Sc.CACHED] + 1) > hmap.shape[0])


@numba.njit(cache=True, nogil=True, _nrt=False)
def run(sc, cnt, ip, tabs, items, buckets, hmap, by_k, snap_i, snap_f, gi, gf, lk_step, lk_table, lk_row, im_step, i,
        j):
    """Process the merged records from lookup i and importance record j on; stop early to grow.

    A snapshot is written into (`snap_i`, `snap_f`) at each gap with floor(s'/report_every) > floor(s/report_every),
    labelled with the earlier step, exactly where the other policies take theirs.
    """
    n_lk, n_im = lk_step.size, im_step.size
    kind, report_every = ip[Ip.KIND], ip[Ip.REPORT_EVERY]
    # the hit counters of this call stay in registers and reach cnt before a snapshot and at the end
    # (stores to the arrays of the cache would otherwise make every count a load and a store)
    lookups = chunks = dims = hits = chunk_hits = dim_hits = 0
    while i < n_lk or j < n_im:
        is_lookup = next_is_lookup(lk_step, im_step, i, j)
        if is_lookup and need_grow(sc, items, buckets, hmap):
            break
        s = lk_step[i] if is_lookup else im_step[j]
        if sc[Sc.HAVE_PREV] and crosses(sc[Sc.PREV], s, report_every):
            metrics.add_hits(cnt, lookups, hits, chunk_hits, chunks, hits, dim_hits, dims)
            lookups = chunks = dims = hits = chunk_hits = dim_hits = 0
            write_row(sc, cnt, ip, by_k, gi, gf, sc[Sc.PREV], snap_i, snap_f, sc[Sc.SNAP_N])
            sc[Sc.SNAP_N] += 1
        if is_lookup:
            prefetch_ahead(items, hmap, lk_table, lk_row, i)
            t = lk_table[i]
            key = packed_row_key(t, lk_row[i])
            k, d = tabs[t, TabCol.K], tabs[t, TabCol.D]
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
        sc[Sc.PREV] = s
        sc[Sc.HAVE_PREV] = 1
    metrics.add_hits(cnt, lookups, hits, chunk_hits, chunks, hits, dim_hits, dims)
    if i < n_lk or j < n_im:
        return Status.NEED_GROW, i, j
    return Status.DONE, i, j


# ============================================================================
# Python driver
# ============================================================================

def _grown(a: np.ndarray, n: int) -> np.ndarray:
    out = aligned_zeros((n, a.shape[1]), a.dtype)
    out[:a.shape[0]] = a
    return out


class RowCache(Policy):
    """Base of `lru` and `lfu`: subclasses set `name`, `kind` and `meta_bytes_per_row` (their list links)."""

    kind = Kind.LRU
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
        self.ip = np.zeros(len(Ip), np.int64)
        self.ip[Ip.CAPACITY] = cfg.budget_bytes
        self.ip[Ip.KIND] = self.kind
        self.ip[Ip.REPORT_EVERY] = cfg.report_every
        self.ip[Ip.ENTRY_BYTES] = cfg.index_entry_bytes
        self.ip[Ip.META_BYTES] = meta
        self.ip[Ip.TOTAL_ROWS] = sum(t.rows for t in tables)
        self.sc = np.zeros(len(Sc), np.int64)
        self.cnt = np.zeros(metrics.N_COUNTS, np.int64)
        self.gi = np.zeros(metrics.N_INT_GAUGES, np.int64)
        self.gf = np.zeros(metrics.N_FLOAT_GAUGES, np.float64)
        self.sc[Sc.FREE_ITEM] = self.sc[Sc.FREE_BUCKET] = NIL
        self.sc[Sc.BUCKET_HWM] = 1  # bucket 0 is the sentinel
        self.items = np.zeros((1024, 4), np.int64)
        self.buckets = np.zeros((1024, 5), np.int64)  # sentinel: an empty circular list (prev = next = 0)
        self.hmap = np.zeros(2048, np.int64)
        self.by_k = np.zeros(self.k_max + 1, np.int64)
        self.series = Series(self.k_max)

    def grow(self) -> None:
        """Double whichever of the item array, bucket array and hash map (rebuilt) the next lookup could overflow."""
        sc = self.sc
        if sc[Sc.ITEM_HWM] + 1 > self.items.shape[0]:
            self.items = _grown(self.items, 2 * self.items.shape[0])
        if sc[Sc.BUCKET_HWM] + 1 > self.buckets.shape[0]:
            self.buckets = _grown(self.buckets, 2 * self.buckets.shape[0])
        if 2 * (self.sc[Sc.CACHED] + 1) > self.hmap.shape[0]:
            hmap = aligned_zeros(2 * self.hmap.shape[0], np.int64)
            hashmap.rebuild(self.hmap, hmap)
            self.hmap = hmap

    def consume(self, batch) -> None:
        steps = np.concatenate((batch.step, batch.imp_step))
        if not steps.size:
            return
        first = int(self.sc[Sc.PREV]) if self.sc[Sc.HAVE_PREV] else int(steps.min())
        self.series.reserve(min(len(steps), (int(steps.max()) - first) // self.cfg.report_every + 1) + 1)
        self.sc[Sc.SNAP_N] = 0
        i = j = 0
        while True:
            status, i, j = run(self.sc, self.cnt, self.ip, self.tabs, self.items, self.buckets, self.hmap, self.by_k,
                               self.series.ints, self.series.floats, self.gi, self.gf, batch.step, batch.table,
                               batch.row, batch.imp_step, i, j)
            if status == Status.DONE:
                break
            self.grow()
        self.series.flush(int(self.sc[Sc.SNAP_N]))

    def finish(self) -> PolicyResult:
        if self.sc[Sc.HAVE_PREV]:  # the final snapshot, after the last record
            snapshot_row(self.sc, self.cnt, self.ip, self.by_k, self.sc[Sc.PREV], self.series.ints, self.series.floats,
                         0)
            self.series.flush(1)
        return PolicyResult(summary=self.summary(), snapshots=self.series.frame())

    def summary(self) -> dict:
        """The summary now: a snapshot row taken now, with the peaks (metrics.summary)."""
        ints = np.zeros((1, self.series.ints.shape[1]), np.int64)
        floats = np.zeros((1, self.series.floats.shape[1]), np.float64)
        snapshot_row(self.sc, self.cnt, self.ip, self.by_k, self.sc[Sc.PREV], ints, floats, 0)
        return metrics.summary(ints[0], floats[0], self.cnt, self.k_max)
