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
a node, item nodes (key, prev, next, bucket) and bucket nodes (freq, prev,
next, first item, last item). Nodes and buckets are recycled through free
lists. The arrays are implementation memory, not the modelled footprint, and
grow by doubling between kernel calls (the kernel returns NEED_GROW first), so
state stays proportional to the rows cached (DESIGN 1.3).
"""
from __future__ import annotations

import numba
import numpy as np

from ..engine import COUNTER_COLUMNS, snapshot_columns
from ..prefetch import prefetch
from ..store import EMPTY, ROW_BITS, packed_row_key, splitmix64
from .base import Policy, PolicyResult, finish_summary, snapshot_values, snapshots_frame

inline = numba.njit(cache=True, inline="always")

LRU, LFU = 0, 1
DONE, NEED_GROW = 0, 1
NIL = -1
LOOKAHEAD = 16  # lookups ahead whose map bucket is prefetched; their item node at half that distance

# sc: the counters in COUNTER_COLUMNS order first (copied straight into snapshots), then state scalars
(LOOKUPS, ROW_HITS, CHUNK_HITS, CHUNKS_REQUESTED, FULL_HITS, DIM_HITS, DIMS_REQUESTED, COLLISIONS, ALLOCATIONS,
 FREES, REHASHES, DENIED_FULL, DENIED_THRESHOLD, SEARCHES, PROBES, ROUNDS) = range(16)
N_COUNTERS = 16
(USED, CACHED, PAYLOAD, LIVE, PAYLOAD_PEAK, INDEX_PEAK, TOTAL_PEAK, PREV, HAVE_PREV, FREE_ITEM, ITEM_HWM,
 FREE_BUCKET, BUCKET_HWM, SNAP_N) = range(16, 30)
N_SC = 30
# ip: parameters
P_CAPACITY, P_KIND, P_REPORT_EVERY, P_ENTRY_BYTES, P_META_BYTES, P_TOTAL_ROWS = range(6)
N_IP = 6
# tabs[t]: K, payload bytes of one row, bytes one cached row takes from the capacity, D
T_K, T_ROW_BYTES, T_OBJ_BYTES, T_D = range(4)
# items[x]: one cached row
I_KEY, I_PREV, I_NEXT, I_BUCKET = range(4)
# buckets[b]: one frequency; bucket 0 is the sentinel of the circular bucket list
B_FREQ, B_PREV, B_NEXT, B_FIRST, B_LAST = range(5)
# map[h]: (packed key + 1, item); key 0 = empty bucket
M_KEY, M_ITEM = 0, 1


# ============================================================================
# Hash map: packed (table, row) -> item, linear probing, backward-shift deletion
# ============================================================================

@inline
def map_home(key, mask):
    return np.int64(splitmix64(key) & np.uint64(mask))


@inline
def map_find(hmap, key):
    """Item of `key`, or NIL."""
    mask = hmap.shape[0] - 1
    h = map_home(key, mask)
    while True:
        k = hmap[h, M_KEY]
        if k == EMPTY:
            return NIL
        if k == key + 1:
            return hmap[h, M_ITEM]
        h = (h + 1) & mask


@inline
def map_insert(hmap, key, item):
    """Insert a key known to be absent (the caller keeps the load at most 1/2)."""
    mask = hmap.shape[0] - 1
    h = map_home(key, mask)
    while hmap[h, M_KEY] != EMPTY:
        h = (h + 1) & mask
    hmap[h, M_KEY] = key + 1
    hmap[h, M_ITEM] = item


@inline
def map_delete(hmap, key):
    """Remove a present key; entries after it move back so no tombstone is needed."""
    mask = hmap.shape[0] - 1
    i = map_home(key, mask)
    while hmap[i, M_KEY] != key + 1:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        k = hmap[j, M_KEY]
        if k == EMPTY:
            break
        h = map_home(k - 1, mask)
        if (j > i and (h <= i or h > j)) or (j < i and (h <= i and h > j)):  # h not cyclically in (i, j]
            hmap[i, M_KEY] = k
            hmap[i, M_ITEM] = hmap[j, M_ITEM]
            i = j
    hmap[i, M_KEY] = EMPTY


@numba.njit(cache=True)
def map_rebuild(old, new):
    for h in range(old.shape[0]):
        if old[h, M_KEY] != EMPTY:
            map_insert(new, old[h, M_KEY] - 1, old[h, M_ITEM])


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
def evict_one(items, buckets, hmap, tabs, sc, by_k):
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
    map_delete(hmap, key)
    give_node(items, I_NEXT, sc, FREE_ITEM, x)
    k = tabs[t, T_K]
    sc[USED] -= tabs[t, T_OBJ_BYTES]
    sc[CACHED] -= 1
    sc[PAYLOAD] -= tabs[t, T_ROW_BYTES]
    sc[LIVE] -= k
    sc[FREES] += k
    by_k[k] -= 1


@inline
def insert(items, buckets, hmap, tabs, ip, sc, by_k, key, t):
    """A miss: make room, then add the row to the frequency-1 bucket (a row larger than the capacity is denied)."""
    obj = tabs[t, T_OBJ_BYTES]
    if obj > ip[P_CAPACITY]:
        sc[DENIED_FULL] += 1
        return
    while sc[USED] + obj > ip[P_CAPACITY]:
        evict_one(items, buckets, hmap, tabs, sc, by_k)
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
    sc[ALLOCATIONS] += k
    by_k[k] += 1
    index = sc[CACHED] * ip[P_ENTRY_BYTES]
    sc[PAYLOAD_PEAK] = max(sc[PAYLOAD_PEAK], sc[PAYLOAD])
    sc[INDEX_PEAK] = max(sc[INDEX_PEAK], index)
    sc[TOTAL_PEAK] = max(sc[TOTAL_PEAK], sc[PAYLOAD] + index + sc[CACHED] * ip[P_META_BYTES])


@inline
def fill_row(sc, ip, by_k, step, row):
    """One row of the time series (engine.snapshot_columns): step, counters, gauges, dimension histogram."""
    row[0] = step
    for c in range(N_COUNTERS):
        row[1 + c] = sc[c]
    g = 1 + N_COUNTERS
    index = sc[CACHED] * ip[P_ENTRY_BYTES]
    meta = sc[CACHED] * ip[P_META_BYTES]
    row[g + 0] = sc[PAYLOAD]
    row[g + 1] = index
    row[g + 2] = meta
    row[g + 3] = sc[PAYLOAD] + index + meta
    row[g + 4] = 0          # mapped pages: a row cache has no pages
    row[g + 5] = sc[LIVE]
    row[g + 6] = sc[CACHED]  # tracked rows: only cached rows have state
    row[g + 7] = 0          # fragmentation 0.0 (float columns hold float64 bits: 0 is 0.0)
    row[g + 8] = 0          # theta 0.0
    row[g + 9] = 0          # index load factor 0.0 (the index is not modelled as a table)
    for d in range(by_k.size):
        row[g + 10 + d] = by_k[d]
    row[g + 10] = ip[P_TOTAL_ROWS] - sc[CACHED]


@numba.njit(cache=True)
def fill_snapshot_row(sc, ip, by_k, step, row):
    fill_row(sc, ip, by_k, step, row)


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
        y = map_find(hmap, packed_row_key(lk_table[mid], lk_row[mid]))
        if y != NIL:
            prefetch(items, y)


@inline
def need_grow(sc, items, buckets, hmap):
    """Whether one more lookup could overflow: it takes at most one new item and one new bucket."""
    return (sc[ITEM_HWM] + 1 > items.shape[0] or sc[BUCKET_HWM] + 1 > buckets.shape[0]
            or 2 * (sc[CACHED] + 1) > hmap.shape[0])


@numba.njit(cache=True, nogil=True, _nrt=False)
def run(sc, ip, tabs, items, buckets, hmap, by_k, snap, lk_step, lk_table, lk_row, im_step, i, j):
    """Process the merged records from lookup i and importance record j on; stop early to grow.

    A snapshot is written into `snap` at each gap with floor(s'/report_every) > floor(s/report_every),
    labelled with the earlier step, exactly where the other policies take theirs.
    """
    n_lk, n_im = lk_step.size, im_step.size
    kind, report_every = ip[P_KIND], ip[P_REPORT_EVERY]
    while i < n_lk or j < n_im:
        is_lookup = i < n_lk and (j >= n_im or lk_step[i] <= im_step[j])
        if is_lookup and need_grow(sc, items, buckets, hmap):
            return NEED_GROW, i, j
        s = lk_step[i] if is_lookup else im_step[j]
        if sc[HAVE_PREV] and s // report_every > sc[PREV] // report_every:
            fill_row(sc, ip, by_k, sc[PREV], snap[sc[SNAP_N]])
            sc[SNAP_N] += 1
        if is_lookup:
            prefetch_ahead(items, hmap, lk_table, lk_row, i)
            t = lk_table[i]
            key = packed_row_key(t, lk_row[i])
            k = tabs[t, T_K]
            x = map_find(hmap, key)
            sc[LOOKUPS] += 1
            sc[CHUNKS_REQUESTED] += k
            sc[DIMS_REQUESTED] += tabs[t, T_D]
            if x != NIL:
                sc[ROW_HITS] += 1
                sc[CHUNK_HITS] += k
                sc[FULL_HITS] += 1
                sc[DIM_HITS] += tabs[t, T_D]
                touch(items, buckets, sc, kind, x)
            else:
                insert(items, buckets, hmap, tabs, ip, sc, by_k, key, t)
            i += 1
        else:
            j += 1
        sc[PREV] = s
        sc[HAVE_PREV] = 1
    return DONE, i, j


# ============================================================================
# Python driver
# ============================================================================

def _grown(a: np.ndarray, n: int) -> np.ndarray:
    out = np.empty((n, a.shape[1]), a.dtype)
    out[:a.shape[0]] = a
    return out


class RowCache(Policy):
    """Base of `lru` and `lfu`: subclasses set `name`, `kind` and `meta_bytes_per_row` (their list links)."""

    kind = LRU
    #: modelled bytes of eviction-order state per cached row (used unless ReplayConfig.meta_bytes_per_row is set)
    meta_bytes_per_row = 0
    uses_grad = False

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
        self.sc = np.zeros(N_SC, np.int64)
        self.sc[FREE_ITEM] = self.sc[FREE_BUCKET] = NIL
        self.sc[BUCKET_HWM] = 1  # bucket 0 is the sentinel
        self.items = np.zeros((1024, 4), np.int64)
        self.buckets = np.zeros((1024, 5), np.int64)  # sentinel: an empty circular list (prev = next = 0)
        self.hmap = np.zeros((2048, 2), np.int64)
        self.by_k = np.zeros(self.k_max + 1, np.int64)
        self.columns = snapshot_columns(self.k_max)
        self.snapshots: list[np.ndarray] = []

    def grow(self) -> None:
        """Double whichever of the item array, bucket array and hash map (rebuilt) the next lookup could overflow."""
        sc = self.sc
        if sc[ITEM_HWM] + 1 > self.items.shape[0]:
            self.items = _grown(self.items, 2 * self.items.shape[0])
        if sc[BUCKET_HWM] + 1 > self.buckets.shape[0]:
            self.buckets = _grown(self.buckets, 2 * self.buckets.shape[0])
        if 2 * (self.sc[CACHED] + 1) > self.hmap.shape[0]:
            hmap = np.zeros((2 * self.hmap.shape[0], 2), np.int64)
            map_rebuild(self.hmap, hmap)
            self.hmap = hmap

    def consume(self, batch) -> None:
        steps = np.concatenate((batch.step, batch.imp_step))
        if not steps.size:
            return
        first = int(self.sc[PREV]) if self.sc[HAVE_PREV] else int(steps.min())
        bound = min(len(steps), (int(steps.max()) - first) // self.cfg.report_every + 1) + 1
        snap = np.zeros((bound, len(self.columns)), np.int64)
        self.sc[SNAP_N] = 0
        i = j = 0
        while True:
            status, i, j = run(self.sc, self.ip, self.tabs, self.items, self.buckets, self.hmap, self.by_k, snap,
                               batch.step, batch.table, batch.row, batch.imp_step, i, j)
            if status == DONE:
                break
            self.grow()
        self.snapshots.append(snap[:self.sc[SNAP_N]])

    def finish(self) -> PolicyResult:
        parts = list(self.snapshots)
        if self.sc[HAVE_PREV]:  # the final snapshot, after the last record
            parts.append(self._row_now()[None, :])
        rows = np.concatenate(parts) if parts else np.zeros((0, len(self.columns)), np.int64)
        return PolicyResult(summary=self.summary(), snapshots=snapshots_frame(rows, self.columns))

    def _row_now(self) -> np.ndarray:
        row = np.zeros(len(self.columns), np.int64)
        fill_snapshot_row(self.sc, self.ip, self.by_k, self.sc[PREV], row)
        return row

    def summary(self) -> dict:
        """Final values are those of a snapshot row taken now; peaks come from the counters."""
        now = snapshot_values(self._row_now(), self.columns)
        sc = self.sc
        counts = {key: int(now[key]) for key in COUNTER_COLUMNS}
        counts.update(
            payload_bytes_peak=int(sc[PAYLOAD_PEAK]), payload_bytes_final=int(now["payload_bytes"]),
            index_bytes_peak=int(sc[INDEX_PEAK]), index_bytes_final=int(now["index_bytes"]),
            meta_bytes_final=int(now["meta_bytes"]), total_bytes_peak=int(sc[TOTAL_PEAK]),
            total_bytes_final=int(now["total_bytes"]), mapped_pages_final=0,
            live_chunks_final=int(now["live_chunks"]), fragmentation_final=0.0, theta_final=0.0,
            max_probe_length=0, tracked_rows=int(now["tracked_rows"]),
            dim_hist_final=[int(now[f"dim_{d}"]) for d in range(self.k_max + 1)], index_load_factor_final=0.0,
        )
        return finish_summary(counts)
