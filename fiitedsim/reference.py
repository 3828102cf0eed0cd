"""The plain-Python reference model of fiitedsim: the oracle the Numba engine is tested against.

This module implements DESIGN.md sections 2-5 literally, with the readings fixed
in docs/semantics.md. It is written for reading, not speed: dicts, lists and
sorted(); the only use of numpy is rounding float32 inputs (gradient norms and
importance values) exactly as they are stored in the Parquet files.

Public API::

    replay(tables, cfg, lookups, importance=(), policy="fiited", check=False) -> ReferenceResult
    check_invariants(result_or_model, tables=None, cfg=None)
    splitmix64(x)

Where the two documents leave something open, the choice made here is marked
"DECISION" in a comment so that it can be found and discussed.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from .config import PoolLayout, ReplayConfig, TableSpec, resolve_layout

POLICIES = ("fiited", "row-prune", "full", "uniform-dim", "uniform-row", "hash", "qr", "cafe", "mde")

MASK64 = (1 << 64) - 1

SUMMARY_KEYS = (
    "payload_bytes_peak", "payload_bytes_final", "index_bytes_peak", "index_bytes_final",
    "meta_bytes_final", "total_bytes_peak", "total_bytes_final", "mapped_pages_final",
    "live_chunks_final", "fragmentation_final", "row_hit_rate", "chunk_hit_rate",
    "full_hit_rate", "dim_hit_rate", "collision_share", "lookups", "row_hits", "chunk_hits",
    "chunks_requested", "full_hits", "dim_hits", "dims_requested", "collisions",
    "allocations", "frees", "rehashes", "denied_full", "denied_threshold", "theta_final",
    "mean_probe_length", "max_probe_length", "searches", "probes", "rounds", "tracked_rows",
    "dim_hist_final", "index_load_factor_final",
)

SNAPSHOT_KEYS = (
    "step", "lookups", "row_hits", "chunk_hits", "chunks_requested", "full_hits",
    "dim_hits", "dims_requested", "collisions", "allocations", "frees", "rehashes",
    "denied_full", "denied_threshold", "searches", "probes", "rounds", "payload_bytes",
    "index_bytes", "meta_bytes", "total_bytes", "mapped_pages", "live_chunks", "tracked_rows",
    "fragmentation", "theta", "dim_hist",
)

COUNTER_KEYS = (
    "lookups", "row_hits", "chunk_hits", "chunks_requested", "full_hits", "dim_hits",
    "dims_requested", "collisions", "allocations",
    "frees", "rehashes", "denied_full", "denied_threshold", "searches", "probes", "rounds",
)


# --------------------------------------------------------------------------- helpers

def splitmix64(x: int) -> int:
    """DESIGN 3.1: "splitmix64 is the standard finaliser (x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9; x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31,
    all mod 2^64, row taken as uint64)"."""
    x &= MASK64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK64
    x ^= x >> 31
    return x


def home_bucket(row: int, capacity: int) -> int:
    """DESIGN 3.1: "home bucket = splitmix64(row) & (capacity - 1)"."""
    return splitmix64(row) & (capacity - 1)


def as_float32(value) -> float:
    """Gradient norms and importance values are float32 in the files."""
    return float(np.float32(value))


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Lookup:
    """One trace record (DESIGN 1.2)."""

    step: int
    table: int
    row: int
    grads: tuple[float, ...] | None  # float32 values already widened to float64, or None


@dataclass(frozen=True)
class ImportanceRecord:
    """One importance-log record (DESIGN 1.3)."""

    step: int
    table: int
    row: int
    chunk: int
    value: float  # float32 value widened to float64


def _read_lookups(lookups, tables: list[TableSpec]) -> list[Lookup]:
    out = []
    previous = None
    for item in lookups:
        item = tuple(item)
        if len(item) == 3:
            step, t, row = item
            grads = None
        elif len(item) == 4:
            step, t, row, grads = item
        else:
            raise ValueError(f"a lookup is (step, table, row) or (step, table, row, grads), got {item!r}")
        step, t, row = int(step), int(t), int(row)
        if not 0 <= t < len(tables):
            raise ValueError(f"lookup {item!r}: table index {t} out of range")
        if not 0 <= row < tables[t].rows:
            raise ValueError(f"lookup {item!r}: row {row} out of range for table {tables[t].name!r}")
        if previous is not None and step < previous:
            raise ValueError(f"lookup steps must be non-decreasing: {step} after {previous}")
        previous = step
        if grads is not None:
            grads = tuple(as_float32(g) for g in grads)
            if len(grads) != tables[t].chunks:
                raise ValueError(f"lookup {item!r}: expected {tables[t].chunks} gradient norms, got {len(grads)}")
        out.append(Lookup(step, t, row, grads))
    return out


def _read_importance(importance, tables: list[TableSpec]) -> list[ImportanceRecord]:
    out = []
    previous = None
    for item in importance:
        step, t, row, chunk, value = tuple(item)
        step, t, row, chunk = int(step), int(t), int(row), int(chunk)
        if not 0 <= t < len(tables):
            raise ValueError(f"importance record {item!r}: table index {t} out of range")
        if not 0 <= row < tables[t].rows:
            raise ValueError(f"importance record {item!r}: row {row} out of range")
        if not 0 <= chunk < tables[t].chunks:
            raise ValueError(f"importance record {item!r}: chunk {chunk} out of range")
        if previous is not None and step < previous:
            raise ValueError(f"importance steps must be non-decreasing: {step} after {previous}")
        previous = step
        out.append(ImportanceRecord(step, t, row, chunk, as_float32(value)))
    return out


def merge_records(lookups: list[Lookup], importance: list[ImportanceRecord]) -> list:
    """semantics.md "Records and their order": "all lookups of step s (in trace
    order) come before the importance records of step s (in log order)"."""
    merged = []
    i = j = 0
    while i < len(lookups) or j < len(importance):
        if j == len(importance) or (i < len(lookups) and lookups[i].step <= importance[j].step):
            merged.append(lookups[i])
            i += 1
        else:
            merged.append(importance[j])
            j += 1
    return merged


# --------------------------------------------------------------------------- result

@dataclass
class ReferenceResult:
    """Everything the reference computes for one replay.

    `summary` and `snapshots` hold exactly SUMMARY_KEYS / SNAPSHOT_KEYS. The other
    fields expose the final FIITED state for differential tests (empty for the
    baselines): raw utilities and last steps per tracked row, every (t, k) index
    as {row: slot address}, its capacity and its bucket layout, the mapped pages
    and the last round's theta per pool."""

    summary: dict
    snapshots: list = field(default_factory=list)
    utilities: dict = field(default_factory=dict)       # (t, r) -> tuple of K raw u (not decayed)
    last: dict = field(default_factory=dict)            # (t, r) -> last update step
    index: dict = field(default_factory=dict)           # (t, k) -> {row: slot address}
    index_capacity: dict = field(default_factory=dict)  # (t, k) -> capacity
    index_layout: dict = field(default_factory=dict)    # (t, k) -> [row or None] * capacity
    mapped_pages: list = field(default_factory=list)    # per pool: sorted mapped page numbers
    theta: list = field(default_factory=list)           # per pool: theta of the last round


# --------------------------------------------------------------------------- VHPI index

class HashIndex:
    """DESIGN 3.1 "Hash index ("virtually hashed")": one open-addressing hash
    index per (table, chunk position k) mapping a row id to a physical slot.

    "Capacity is a power of two, starting at index_initial; linear probing
    (bucket, bucket+1, ... mod capacity); home bucket = splitmix64(row) &
    (capacity - 1)". "Deletion uses backward-shift (no tombstones). The index
    never shrinks."
    """

    def __init__(self, capacity: int, max_load: float):
        self.keys: list[int | None] = [None] * capacity
        self.values: list[int | None] = [None] * capacity
        self.count = 0
        self.max_load = max_load

    @property
    def capacity(self) -> int:
        return len(self.keys)

    def search(self, row: int) -> tuple[int | None, int]:
        """Return (slot address or None, probes). DESIGN 3.1: "Probe length of a
        search = index slots examined until the key or an empty slot is found (>= 1)"."""
        i = home_bucket(row, self.capacity)
        probes = 0
        while True:
            probes += 1
            key = self.keys[i]
            if key is None:
                return None, probes
            if key == row:
                return self.values[i], probes
            i = (i + 1) % self.capacity

    def needs_growth(self) -> bool:
        """DESIGN 3.1: "Before an insert, if (count + 1) > max_load * capacity the capacity doubles"."""
        return (self.count + 1) > self.max_load * self.capacity

    def grow(self) -> None:
        """DESIGN 3.1: "the capacity doubles and entries are reinserted scanning the
        old array from slot 0 upward"."""
        old_keys, old_values = self.keys, self.values
        self.keys = [None] * (2 * len(old_keys))
        self.values = [None] * (2 * len(old_keys))
        for i in range(len(old_keys)):
            if old_keys[i] is not None:
                self._place(old_keys[i], old_values[i])

    def _place(self, row: int, value: int) -> None:
        i = home_bucket(row, self.capacity)
        while self.keys[i] is not None:
            i = (i + 1) % self.capacity
        self.keys[i] = row
        self.values[i] = value

    def insert_without_growth(self, row: int, value: int) -> None:
        """Place a row known to be absent (the caller grew the index first if needed)."""
        assert self.count < self.capacity, "no empty bucket"
        self._place(row, value)
        self.count += 1

    def delete(self, row: int) -> None:
        """semantics.md "Index": "Backward-shift deletion: after emptying slot i,
        scan j = i+1, i+2, ... (mod capacity) until an empty slot; an entry at j
        whose home bucket h is not cyclically in (i, j] moves to i, and i becomes j"."""
        cap = self.capacity
        i = home_bucket(row, cap)
        while self.keys[i] != row:
            if self.keys[i] is None:
                raise KeyError(row)
            i = (i + 1) % cap
        self.keys[i] = None
        self.values[i] = None
        self.count -= 1
        j = (i + 1) % cap
        while self.keys[j] is not None:
            h = home_bucket(self.keys[j], cap)
            if not _cyclically_in(h, i, j):
                self.keys[i], self.values[i] = self.keys[j], self.values[j]
                self.keys[j] = None
                self.values[j] = None
                i = j
            j = (j + 1) % cap

    def entries(self) -> dict[int, int]:
        return {k: v for k, v in zip(self.keys, self.values) if k is not None}


def _cyclically_in(h: int, i: int, j: int) -> bool:
    """Is h in the cyclic half-open interval (i, j]?"""
    if i <= j:
        return i < h <= j
    return h > i or h <= j


# --------------------------------------------------------------------------- physical pool

class Pool:
    """DESIGN 3.2 "Physical pool ("physically indexed")": chunk-sized slots grouped
    in pages; "Pages are numbered 0, 1, 2, ...; a newly mapped page takes the lowest
    unmapped number. Allocation MUST take the free slot with the lowest address
    (lowest mapped page number, then lowest slot); a new page is mapped only when
    every mapped page is full". With `allocator = lifo` (semantics.md "Allocator"):
    "the most recently freed slot among mapped pages. Mapping a page makes its slots
    free as if freed in descending slot order (so slot 0 of the new page is taken
    first). When a page is unmapped its slots leave the free list."

    Slot address = page * slots_per_page + slot_in_page.
    """

    def __init__(self, slots_per_page: int, allocator: str):
        self.slots_per_page = slots_per_page
        self.allocator = allocator
        self.mapped: set[int] = set()
        self.live_on_page: dict[int, int] = {}
        self.owner: dict[int, tuple[int, int, int]] = {}  # address -> (t, r, k)
        # The free slots of mapped pages: a min-heap for "lowest", a stack for "lifo".
        self.free: list[int] = []

    def page_of(self, address: int) -> int:
        return address // self.slots_per_page

    def slots_of_page(self, page: int) -> range:
        return range(page * self.slots_per_page, (page + 1) * self.slots_per_page)

    def _push_free(self, address: int) -> None:
        if self.allocator == "lowest":
            heapq.heappush(self.free, address)
        else:
            self.free.append(address)

    def _pop_free(self) -> int:
        if self.allocator == "lowest":
            return heapq.heappop(self.free)  # the lowest address
        return self.free.pop()  # the most recently freed

    def _map_lowest_unmapped_page(self) -> None:
        page = 0
        while page in self.mapped:
            page += 1
        self.mapped.add(page)
        self.live_on_page[page] = 0
        for address in reversed(self.slots_of_page(page)):  # descending: slot 0 ends on top for lifo
            self._push_free(address)

    def take_slot(self, owner: tuple[int, int, int], page_cap: int) -> int | None:
        """semantics.md: "the free slot of the lowest address among mapped pages; if
        every mapped page is full, map the lowest unmapped page number (if under the
        page cap) and take its slot 0; else deny". Returns None when denied."""
        if not self.free:
            if len(self.mapped) >= page_cap:
                return None
            self._map_lowest_unmapped_page()
        address = self._pop_free()
        self.owner[address] = owner
        self.live_on_page[self.page_of(address)] += 1
        return address

    def release(self, address: int) -> None:
        del self.owner[address]
        self.live_on_page[self.page_of(address)] -= 1
        self._push_free(address)

    def unmap_empty_pages(self) -> None:
        """semantics.md: "Pages left with no live slot are unmapped at the end of the
        round (or access) that emptied them, lowest page first."."""
        for page in sorted(self.mapped):
            if self.live_on_page[page] == 0:
                self.mapped.remove(page)
                del self.live_on_page[page]
                self.free = [a for a in self.free if self.page_of(a) != page]
                if self.allocator == "lowest":
                    heapq.heapify(self.free)

    @property
    def live(self) -> int:
        return len(self.owner)


# --------------------------------------------------------------------------- FIITED model

class TrackedRow:
    """Policy state of one tracked row (DESIGN 2): K utilities, the last-update
    step, and the resident chunks k -> slot address."""

    def __init__(self, chunks: int, step: int):
        self.u = [0.0] * chunks  # "A row seen for the first time starts with u = 0 and last = s"
        self.last = step
        self.resident: dict[int, int] = {}

    def prefix_length(self) -> int:
        """The resident prefix length d."""
        d = 0
        while d in self.resident:
            d += 1
        return d


class FiitedModel:
    """DESIGN sections 2 (dimension policy), 3 (VHPI storage) and 5 (metrics)."""

    def __init__(self, tables: list[TableSpec], cfg: ReplayConfig, has_grads: bool, log_given: bool):
        # DESIGN 3.1-3.2: `index_initial` and `page_bytes` "auto" are derived from the budget (the rule is
        # docs/semantics.md "Layout"); the engine resolves with the same function.
        cfg = resolve_layout(tables, cfg)
        self.tables = tables
        self.cfg = cfg
        self.has_grads = has_grads
        self.log_given = log_given
        self.layout = PoolLayout.of(tables, cfg.page_bytes)
        self.pools = [Pool(spp, cfg.allocator) for spp in self.layout.slots_per_page]
        # DECISION: every (t, k) index exists from the start with its initial capacity
        # (DESIGN 3.1 "For each (table, chunk position k) one ... hash index"), so its
        # bytes count from the first record on.
        self.indices = {(t, k): HashIndex(cfg.index_capacity(t, k), cfg.max_load)
                        for t, spec in enumerate(tables) for k in range(spec.chunks)}
        self.rows: dict[tuple[int, int], TrackedRow] = {}
        # "Before the first round theta = 0"
        self.theta = [0.0] * len(self.pools)
        self.counters = {key: 0 for key in COUNTER_KEYS}
        self.max_probe_length = 0
        self.w = {t: [cfg.position_weight ** float(k) for k in range(spec.chunks)]
                  for t, spec in enumerate(tables)}
        self.meta_bytes = 0
        self.payload_bytes_peak = 0
        self.index_bytes_peak = 0
        self.total_bytes_peak = 0
        self.observe_peaks()

    # ----- gauges (DESIGN 3.2, 3.3, 5)

    def payload_bytes(self) -> int:
        """DESIGN 3.2: "Payload bytes = mapped pages * page_bytes"."""
        return sum(len(pool.mapped) for pool in self.pools) * self.cfg.page_bytes

    def index_bytes(self) -> int:
        """DESIGN 3.1: "index bytes = sum of capacities * 16" (index_entry_bytes)."""
        return sum(index.capacity for index in self.indices.values()) * self.cfg.index_entry_bytes

    def observe_peaks(self, transient_index_bytes: int = 0) -> None:
        """semantics.md "Peaks": maxima over the whole replay, including rehash transients."""
        payload = self.payload_bytes()
        index = self.index_bytes() + transient_index_bytes
        self.payload_bytes_peak = max(self.payload_bytes_peak, payload)
        self.index_bytes_peak = max(self.index_bytes_peak, index)
        self.total_bytes_peak = max(self.total_bytes_peak, payload + index + self.meta_bytes)

    def page_caps(self) -> list[int]:
        """semantics.md "Budget": pool p may map at most pool_budget_p // page_bytes
        pages, where avail is the budget minus (with --budget-covers all) the current
        index and metadata bytes."""
        overhead = self.index_bytes() + self.meta_bytes if self.cfg.budget_covers == "all" else 0
        return self.layout.page_caps(self.cfg.budget_bytes, overhead, self.cfg.page_bytes)

    # ----- policy state (DESIGN 2)

    def track(self, t: int, r: int, step: int) -> TrackedRow:
        """semantics.md: "Rows are tracked from the first record (lookup or importance
        record) that names them; a tracked row is never forgotten"."""
        row = self.rows.get((t, r))
        if row is None:
            row = TrackedRow(self.tables[t].chunks, step)
            self.rows[(t, r)] = row
            self.meta_bytes += self.cfg.meta_bytes_for(self.tables[t])
            self.observe_peaks()
        return row

    def effective_utilities(self, row: TrackedRow, now: int) -> list[float]:
        """DESIGN 2: "e[t,r,k] = min over j <= k of u[t,r,j] * gamma ** (s - last[t,r])"."""
        f = self.cfg.gamma ** float(now - row.last)
        e = []
        running = math.inf
        for u in row.u:
            running = min(running, u * f)
            e.append(running)
        return e

    # ----- records

    def access(self, rec: Lookup) -> None:
        """DESIGN 2 "An access, in this order: (1) hit status is recorded from the
        resident prefix length d before anything changes (section 5); (2) utilities
        are updated; (3) admission: for k = d, d+1, ..., K-1: if e[t,r,k] < theta the
        chunk is denied (denied_threshold) and the loop stops; else if no slot can be
        had within the budget it is denied (denied_full) and the loop stops; else it
        is allocated and inserted in index (t, k)."""
        t, r, s = rec.table, rec.row, rec.step
        K = self.tables[t].chunks
        row = self.track(t, r, s)
        c = self.counters

        # (1) hit status (DESIGN 5, semantics.md "Access details")
        d = row.prefix_length()
        c["lookups"] += 1
        c["row_hits"] += int(d > 0)
        c["chunk_hits"] += d
        c["chunks_requested"] += K
        c["full_hits"] += int(d == K)
        # DESIGN 5: "dim hit rate: resident dimensions / requested dimensions"; "chunk policies count d * C"
        c["dim_hits"] += d * self.tables[t].chunk
        c["dims_requested"] += self.tables[t].dim
        # DESIGN 3.1: "Each access searches chunk indices k = 0..min(d, K-1) before admission"
        for k in range(0, min(d, K - 1) + 1):
            _, probes = self.indices[(t, k)].search(r)
            c["searches"] += 1
            c["probes"] += probes
            self.max_probe_length = max(self.max_probe_length, probes)

        # (2) utilities: u = u * gamma ** (s - last) + x[k], x[k] = g_k * w_k
        f = self.cfg.gamma ** float(s - row.last)  # once per row update
        w = self.w[t]
        for k in range(K):
            if self.log_given:
                # "When importance comes from a log, an access only decays its row
                # (x[k] = 0), unless --count-accesses is given, which makes it add w_k"
                x = w[k] if self.cfg.count_accesses else 0.0
            else:
                if not self.has_grads:
                    g = 1.0  # "1.0 when the trace has none: then utility is decayed frequency"
                elif rec.grads is None:
                    # DECISION: a lookup without grads in a trace that has grad norms
                    # contributes no gradient (g_k = 0.0).
                    g = 0.0
                else:
                    g = rec.grads[k]
                x = g * w[k]
            row.u[k] = row.u[k] * f + x
        row.last = s

        # (3) admission
        self.admit(t, r, s, row, d)

    def admit(self, t: int, r: int, s: int, row: TrackedRow, d: int) -> None:
        """Step (3) of an access: admit chunks k = d, d+1, ... while they pass theta and fit."""
        K = self.tables[t].chunks
        c = self.counters
        pool_id = self.layout.pool_of_table[t]
        pool = self.pools[pool_id]
        e = self.effective_utilities(row, s)
        for k in range(d, K):
            if e[k] < self.theta[pool_id]:
                c["denied_threshold"] += 1
                break
            # "take a slot (lowest address, or lifo), then insert into index (t, k)
            # (which may rehash first)"
            page_cap = self.page_caps()[pool_id]
            address = pool.take_slot((t, r, k), page_cap)
            if address is None:
                c["denied_full"] += 1
                break
            c["allocations"] += 1
            row.resident[k] = address
            self.observe_peaks()
            self.insert_index(t, k, r, address)
        # "a page whose slots are all free is unmapped at the end of the round or
        # access that emptied it": an access only allocates, so it never empties a
        # page and there is nothing to unmap here.

    def insert_index(self, t: int, k: int, r: int, address: int) -> None:
        """DESIGN 3.1 and semantics.md "Index": "On a doubling, the index's bytes are
        momentarily old + new capacity; the peak index bytes and peak total bytes
        include that transient."."""
        index = self.indices[(t, k)]
        # DECISION: one doubling per insert, as DESIGN 3.1 says "if", not "while"
        # (identical whenever max_load >= 0.5).
        if index.needs_growth():
            self.observe_peaks(transient_index_bytes=2 * index.capacity * self.cfg.index_entry_bytes)
            index.grow()
            self.counters["rehashes"] += 1
        index.insert_without_growth(r, address)
        self.observe_peaks()

    def importance(self, rec: ImportanceRecord) -> None:
        """DESIGN 2: "An importance-log record (t, r, k, v) at step s first decays all
        K chunks of the row to s (u[t,r,j] *= gamma ** (s - last[t,r]); last[t,r] = s),
        then adds v * w_k to chunk k (a row first seen in the log starts with u = 0,
        last = s). It never admits anything: only accesses admit."""
        t, r, s = rec.table, rec.row, rec.step
        row = self.track(t, r, s)
        f = self.cfg.gamma ** float(s - row.last)
        for j in range(len(row.u)):
            row.u[j] = row.u[j] * f
        row.last = s
        row.u[rec.chunk] = row.u[rec.chunk] + rec.value * self.w[t][rec.chunk]

    def apply(self, rec) -> None:
        if isinstance(rec, Lookup):
            self.access(rec)
        else:
            self.importance(rec)

    def round(self, now: int) -> None:
        """DESIGN 2 "Pruning rounds" evaluated at now = s, per pool (semantics.md "Budget"):
        1. capacity N = the number of chunk slots the payload budget allows.
        2. Rank all tracked chunks by (e desc, k asc, t asc, r asc); the keep set is
           the first N of them.
        3. theta = e of the N-th chunk; 0.0 if fewer than N chunks are tracked;
           +infinity if N = 0.
        4. Every resident chunk outside the keep set is freed (pruned), in (t, r, k)
           order. Pages left empty are then unmapped."""
        self.counters["rounds"] += 1
        caps = self.page_caps()
        for pool_id, pool in enumerate(self.pools):
            N = caps[pool_id] * pool.slots_per_page
            ranked = []  # (e, k, t, r)
            for (t, r), row in self.rows.items():
                if self.layout.pool_of_table[t] != pool_id:
                    continue
                for k, e in enumerate(self.effective_utilities(row, now)):
                    ranked.append((e, k, t, r))
            ranked.sort(key=lambda c: (-c[0], c[1], c[2], c[3]))
            keep = {(t, r, k) for (_, k, t, r) in ranked[:N]}
            if N == 0:
                self.theta[pool_id] = math.inf
            elif len(ranked) < N:
                self.theta[pool_id] = 0.0
            else:
                self.theta[pool_id] = ranked[N - 1][0]
            resident = sorted((t, r, k) for (t, r), row in self.rows.items()
                              if self.layout.pool_of_table[t] == pool_id for k in row.resident)
            for (t, r, k) in resident:
                if (t, r, k) not in keep:
                    self.free_chunk(t, r, k)
            pool.unmap_empty_pages()

    def free_chunk(self, t: int, r: int, k: int) -> None:
        row = self.rows[(t, r)]
        address = row.resident.pop(k)
        self.pools[self.layout.pool_of_table[t]].release(address)
        self.indices[(t, k)].delete(r)
        self.counters["frees"] += 1

    # ----- reports (DESIGN 5)

    def dim_hist(self) -> list[int]:
        """semantics.md: "dim_hist counts all rows of all tables by resident prefix
        length d (rows never seen have d = 0)". Length K_max + 1."""
        hist = [0] * (max(t.chunks for t in self.tables) + 1)
        hist[0] = sum(t.rows for t in self.tables)
        for row in self.rows.values():
            d = row.prefix_length()
            hist[0] -= 1
            hist[d] += 1
        return hist

    def fragmentation(self) -> float:
        """semantics.md: "1 - live_slots / (mapped_pages * slots_per_page), summed over
        pools; 0 when nothing is mapped"."""
        capacity = sum(len(p.mapped) * p.slots_per_page for p in self.pools)
        if capacity == 0:
            return 0.0
        return 1.0 - sum(p.live for p in self.pools) / capacity

    def theta_min(self) -> float:
        """semantics.md: "the smallest finite per-pool theta of the last round, or +inf
        if every pool had N = 0"."""
        finite = [th for th in self.theta if math.isfinite(th)]
        return min(finite) if finite else math.inf

    def gauges(self) -> dict:
        payload, index, meta = self.payload_bytes(), self.index_bytes(), self.meta_bytes
        return {
            "payload_bytes": payload,
            "index_bytes": index,
            "meta_bytes": meta,
            "total_bytes": payload + index + meta,
            "mapped_pages": sum(len(p.mapped) for p in self.pools),
            "live_chunks": sum(p.live for p in self.pools),
            "tracked_rows": len(self.rows),
            "fragmentation": self.fragmentation(),
            "theta": self.theta_min(),
            "dim_hist": self.dim_hist(),
        }

    def snapshot(self, step: int) -> dict:
        snap = {"step": step}
        snap.update(self.counters)
        snap.update(self.gauges())
        return {key: snap[key] for key in SNAPSHOT_KEYS}

    def summary(self) -> dict:
        c, g = self.counters, self.gauges()
        entries = sum(index.count for index in self.indices.values())
        capacity = sum(index.capacity for index in self.indices.values())
        summary = {
            "payload_bytes_peak": self.payload_bytes_peak,
            "payload_bytes_final": g["payload_bytes"],
            "index_bytes_peak": self.index_bytes_peak,
            "index_bytes_final": g["index_bytes"],
            "meta_bytes_final": g["meta_bytes"],
            "total_bytes_peak": self.total_bytes_peak,
            "total_bytes_final": g["total_bytes"],
            "mapped_pages_final": g["mapped_pages"],
            "live_chunks_final": g["live_chunks"],
            "fragmentation_final": g["fragmentation"],
            "row_hit_rate": _rate(c["row_hits"], c["lookups"]),
            "chunk_hit_rate": _rate(c["chunk_hits"], c["chunks_requested"]),
            "full_hit_rate": _rate(c["full_hits"], c["lookups"]),
            "dim_hit_rate": _rate(c["dim_hits"], c["dims_requested"]),
            "collision_share": _rate(c["collisions"], c["lookups"]),
            "theta_final": g["theta"],
            "mean_probe_length": _rate(c["probes"], c["searches"]),
            "max_probe_length": self.max_probe_length,
            "tracked_rows": g["tracked_rows"],
            "dim_hist_final": g["dim_hist"],
            # DECISION: total entries / total capacity over all indices.
            "index_load_factor_final": _rate(entries, capacity),
        }
        summary.update(c)
        return {key: summary[key] for key in SUMMARY_KEYS}

    def result(self, snapshots: list) -> ReferenceResult:
        return ReferenceResult(
            summary=self.summary(),
            snapshots=snapshots,
            utilities={key: tuple(row.u) for key, row in self.rows.items()},
            last={key: row.last for key, row in self.rows.items()},
            index={key: index.entries() for key, index in self.indices.items()},
            index_capacity={key: index.capacity for key, index in self.indices.items()},
            index_layout={key: list(index.keys) for key, index in self.indices.items()},
            mapped_pages=[sorted(p.mapped) for p in self.pools],
            theta=list(self.theta),
        )

    # ----- debug checks

    def check_invariants(self) -> None:
        """Resident chunks own exactly one slot each, no slot is owned twice, live
        chunks == sum of row dimensions == index entries, mapped pages within the page
        cap (budget covers payload), every resident set is a prefix 0..d-1, and the
        indices and free lists are consistent."""
        live = 0
        seen_addresses = set()
        for (t, r), row in self.rows.items():
            d = row.prefix_length()
            assert set(row.resident) == set(range(d)), \
                f"row {(t, r)} resident set {sorted(row.resident)} is not a prefix"
            pool = self.pools[self.layout.pool_of_table[t]]
            for k, address in row.resident.items():
                key = (self.layout.pool_of_table[t], address)
                assert key not in seen_addresses, f"slot {key} owned twice"
                seen_addresses.add(key)
                assert pool.owner.get(address) == (t, r, k), f"slot {address} owner mismatch for {(t, r, k)}"
                found, _ = self.indices[(t, k)].search(r)
                assert found == address, f"index ({t},{k}) maps row {r} to {found}, expected {address}"
            live += d
        assert live == sum(p.live for p in self.pools), "live chunks != owned slots"
        assert live == sum(ix.count for ix in self.indices.values()), "live chunks != index entries"
        for (t, k), index in self.indices.items():
            _check_index_layout(index.keys, index.count, f"index ({t},{k})")
            for r, address in index.entries().items():
                assert self.rows[(t, r)].resident.get(k) == address, f"stale index entry ({t},{k}) row {r}"
        caps = self.page_caps()
        for pool_id, pool in enumerate(self.pools):
            if self.cfg.budget_covers == "payload":
                assert len(pool.mapped) <= caps[pool_id], \
                    f"pool {pool_id} maps {len(pool.mapped)} > cap {caps[pool_id]}"
            for address in pool.owner:
                assert pool.page_of(address) in pool.mapped, f"owned slot {address} on an unmapped page"
            expected_free = {a for page in pool.mapped for a in pool.slots_of_page(page)} - set(pool.owner)
            assert len(pool.free) == len(set(pool.free)), "duplicate in free list"
            assert set(pool.free) == expected_free, "free list does not match mapped minus owned slots"
            for page in pool.mapped:
                owned = sum(1 for a in pool.slots_of_page(page) if a in pool.owner)
                assert pool.live_on_page[page] == owned
                assert owned > 0, f"page {page} mapped but empty after a record"


class RowPruneModel(FiitedModel):
    """DESIGN 4 `row-prune`: "the FIITED machinery at row granularity (a row has all K
    chunks or none; row utility = sum over its chunks)". Only admission and the round
    differ from FIITED; semantics.md "Row pruning (row-prune)" fixes the details."""

    def row_utility(self, row: TrackedRow, now: int) -> float:
        """semantics.md: "U = (u[0] + u[1] + ... + u[K-1]) * gamma ** float64(s - last),
        the raw utilities summed in k order from 0.0 in float64, then multiplied once by
        the decay factor"."""
        total = 0.0
        for u in row.u:
            total += u
        return total * self.cfg.gamma ** float(now - row.last)

    def admit(self, t: int, r: int, s: int, row: TrackedRow, d: int) -> None:
        """semantics.md: an access with d = 0: "U < theta -> denied_threshold; else if the
        pool cannot give K slots -> denied_full; else the row is admitted", first taking
        its K slots, then inserting chunk k into index (t, k) for k = 0, 1, ..."""
        if d > 0:
            return  # d == K: the row is already whole
        K = self.tables[t].chunks
        c = self.counters
        pool_id = self.layout.pool_of_table[t]
        pool = self.pools[pool_id]
        if self.row_utility(row, s) < self.theta[pool_id]:
            c["denied_threshold"] += 1
            return
        # "free slots on mapped pages plus max(0, page_cap - mapped_pages) * slots_per_page
        # must be at least K"
        page_cap = self.page_caps()[pool_id]
        obtainable = len(pool.free) + max(0, page_cap - len(pool.mapped)) * pool.slots_per_page
        if obtainable < K:
            c["denied_full"] += 1
            return
        for k in range(K):
            address = pool.take_slot((t, r, k), page_cap)
            assert address is not None, "the slot count above guarantees K slots"
            c["allocations"] += 1
            row.resident[k] = address
            self.observe_peaks()
        for k in range(K):
            self.insert_index(t, k, r, row.resident[k])

    def round(self, now: int) -> None:
        """semantics.md "Row pruning": per pool, rank rows by (U desc, t asc, r asc); keep
        the longest prefix whose chunk total is at most N; theta = U of the last kept row
        (+inf if N = 0 or no row fits, 0.0 if fewer than N chunks are tracked); free the
        other resident rows in (t, r, k) order, then unmap empty pages."""
        self.counters["rounds"] += 1
        caps = self.page_caps()
        for pool_id, pool in enumerate(self.pools):
            N = caps[pool_id] * pool.slots_per_page
            ranked = []  # (U, t, r)
            for (t, r), row in self.rows.items():
                if self.layout.pool_of_table[t] == pool_id:
                    ranked.append((self.row_utility(row, now), t, r))
            ranked.sort(key=lambda x: (-x[0], x[1], x[2]))
            keep = set()
            used = 0
            last_kept_u = math.inf
            for u, t, r in ranked:
                if used + self.tables[t].chunks > N:
                    break  # "the first row that does not fit ends it"
                used += self.tables[t].chunks
                keep.add((t, r))
                last_kept_u = u
            if N == 0:
                self.theta[pool_id] = math.inf
            elif sum(self.tables[t].chunks for _, t, _ in ranked) < N:
                self.theta[pool_id] = 0.0
            else:
                self.theta[pool_id] = last_kept_u  # +inf when not even the first row fits
            resident = sorted((t, r, k) for (t, r), row in self.rows.items()
                              if self.layout.pool_of_table[t] == pool_id for k in row.resident)
            for (t, r, k) in resident:
                if (t, r) not in keep:
                    self.free_chunk(t, r, k)
            pool.unmap_empty_pages()

    def check_invariants(self) -> None:
        """FIITED's invariants, and every row whole or absent (d in {0, K})."""
        super().check_invariants()
        for (t, r), row in self.rows.items():
            assert len(row.resident) in (0, self.tables[t].chunks), f"row {(t, r)} is partly resident"


def _check_index_layout(keys: list, count: int, where: str) -> None:
    """Linear probing integrity: every entry is reachable from its home bucket
    without crossing an empty bucket; no duplicate keys; at least one empty bucket."""
    cap = len(keys)
    assert cap >= 1 and cap & (cap - 1) == 0, f"{where}: capacity {cap} is not a power of two"
    occupied = [k for k in keys if k is not None]
    assert len(occupied) == count, f"{where}: count {count} != occupied {len(occupied)}"
    assert len(set(occupied)) == len(occupied), f"{where}: duplicate keys"
    assert count < cap, f"{where}: no empty bucket"
    for i, key in enumerate(keys):
        if key is None:
            continue
        j = home_bucket(key, cap)
        while j != i:
            assert keys[j] is not None, f"{where}: row {key} at {i} unreachable from home {home_bucket(key, cap)}"
            j = (j + 1) % cap


# --------------------------------------------------------------------------- baselines

def row_permutation(t: int, r: int, rows: int) -> int:
    """semantics.md "Baselines", uniform-row: perm_t(r), a bijection of [0, rows).

    "h = max(1, ceil(bits(rows - 1) / 2)); the Feistel network over [0, 2**(2h)) splits x into L = x >> h and
    R = x mod 2**h and runs 4 rounds (L, R) <- (R, L xor (splitmix64(R xor K_i) mod 2**h)), with round keys
    K_i = splitmix64(((4t + i + 1) * 0x9E3779B97F4A7C15) mod 2**64), giving (L << h) | R; perm_t(r) applies
    the network to r, and again to the result, until the value is below rows (cycle walking)."
    """
    h = max(1, -(-(rows - 1).bit_length() // 2))
    mask = (1 << h) - 1
    keys = [splitmix64((4 * t + i + 1) * 0x9E3779B97F4A7C15) for i in range(4)]

    def network(x: int) -> int:
        left, right = x >> h, x & mask
        for key in keys:
            left, right = right, left ^ (splitmix64(right ^ key) & mask)
        return (left << h) | right

    y = network(r)
    while y >= rows:
        y = network(y)
    return y


class DenseBaseline:
    """DESIGN 4 and semantics.md "Baselines": `full`, `uniform-dim`, `uniform-row`,
    `hash` and `mde`. Storage is constant over the run, so only hit counters (and
    `hash`'s record of which rows each bucket has served) change; gauges and peaks
    are the constant sizes. Every layout is a number of resident *dimensions* per
    row (DESIGN 4: "any integer 0..D, not a multiple of C")."""

    def __init__(self, tables: list[TableSpec], cfg: ReplayConfig, policy: str, lookups=()):
        self.tables = tables
        self.cfg = cfg
        self.policy = policy
        self.counters = {key: 0 for key in COUNTER_KEYS}
        self.index_bytes = 0
        dense = sum(t.dense_bytes for t in tables)
        if policy == "full":
            # "full: dense, payload = dense size, index = meta = 0, all hit rates 1."
            self.payload_bytes = dense
        elif policy == "uniform-dim":
            # DESIGN 4: "every row of every table keeps the same D' leading dimensions (any
            # integer 0..D, not a multiple of C), the largest D' whose dense size
            # sum(rows * min(D', D) * dtype_bytes) fits the budget; stored dense (no index)"
            self.uniform_dims = 0
            for dims in range(max(t.dim for t in tables) + 1):
                if sum(t.rows * min(dims, t.dim) * t.dtype_bytes for t in tables) <= cfg.budget_bytes:
                    self.uniform_dims = dims
            self.payload_bytes = sum(t.rows * min(self.uniform_dims, t.dim) * t.dtype_bytes for t in tables)
        elif policy == "uniform-row":
            # "the dense remap costs an int64 per row of the table (index_bytes = rows * 8)"
            self.index_bytes = sum(t.rows * 8 for t in tables)
            # semantics.md: with --budget-covers all the remap is paid from the budget first.
            budget = cfg.budget_bytes - (self.index_bytes if cfg.budget_covers == "all" else 0)
            # "table t keeps exactly m_t = min(rows_t, floor(B * rows_t / dense)) rows (integer arithmetic)"
            self.kept_rows = [min(t.rows, max(0, budget) * t.rows // dense) for t in tables]
            # "The payload is the kept-row count times row bytes"
            self.payload_bytes = sum(n * t.dim * t.dtype_bytes for n, t in zip(self.kept_rows, tables))
        elif policy == "hash":
            # DESIGN 4: "each table's rows hashed into as many full-dimension rows as its share
            # of the budget holds; colliding rows share". semantics.md: the share is split by
            # dense size; row r reads bucket splitmix64(r) mod m_t, or itself when m_t = rows.
            self.buckets = [min(t.rows, (cfg.budget_bytes * t.dense_bytes // dense) // (t.dim * t.dtype_bytes))
                            for t in tables]
            self.payload_bytes = sum(m * t.dim * t.dtype_bytes for m, t in zip(self.buckets, tables))
            self.served: dict[tuple[int, int], set[int]] = {}  # (t, bucket) -> rows seen reading it
        elif policy == "qr":
            # DESIGN 4: "row i reads Q[i // m] combined with R[i mod m]; m the largest for which both tables fit".
            # semantics.md: every table first its fewest rows (its smallest pair, or itself whole), the rest of the
            # budget split by dense size; b_t >= rows: the table whole; else the largest m with ceil(rows/m) + m
            # <= b_t (a budget below every table's fewest rows is refused before any replay).
            def fewest(n):
                return min(n, min(-(-n // m) + m for m in range(1, n + 1)))
            rest = cfg.budget_bytes - sum(fewest(t.rows) * t.dim * t.dtype_bytes for t in tables)
            self.remainders = []
            for t in tables:
                b = fewest(t.rows) + (rest * t.dense_bytes // dense) // (t.dim * t.dtype_bytes)
                fits = [m for m in range(1, t.rows + 1) if -(-t.rows // m) + m <= b]
                self.remainders.append(None if b >= t.rows else max(fits))
            self.payload_bytes = sum((-(-t.rows // m) + m if m else t.rows) * t.dim * t.dtype_bytes
                                     for t, m in zip(tables, self.remainders))
            # (t, stored row) -> rows seen reading it, for the quotient and the remainder tables
            self.readers: tuple[dict, dict] = ({}, {})
            self.shared = [0, 0]
        elif policy == "cafe":
            self._cafe_init(tables, cfg, dense)
        elif policy == "mde":
            self.mde_dims = self._mde_dims(lookups)
            dtype = {t: spec.dtype_bytes for t, spec in enumerate(tables)}
            self.payload_bytes = sum(d * dtype[t] for (t, _), d in self.mde_dims.items())
            stored = sum(1 for d in self.mde_dims.values() if d > 0)
            # semantics.md: one index entry per row with d > 0 (the row -> place map)
            self.index_bytes = stored * cfg.index_entry_bytes
        else:
            raise ValueError(policy)

    def _mde_dims(self, lookups) -> dict[tuple[int, int], int]:
        """DESIGN 4 "mde": a static dimension per row growing with its access frequency
        (a power law), scaled to the budget; frequencies from a first pass.
        semantics.md: p_r = lookups of r / lookups of its table; every (row, level j)
        is a grant with threshold j / p_r ** alpha; grants are taken in ascending
        threshold, equal thresholds together, while the cost fits the budget."""
        counts: dict[tuple[int, int], int] = {}
        per_table = [0] * len(self.tables)
        for rec in lookups:
            counts[(rec.table, rec.row)] = counts.get((rec.table, rec.row), 0) + 1
            per_table[rec.table] += 1
        grants = []  # (threshold, row key)
        for (t, r), c in counts.items():
            w = (c / per_table[t]) ** self.cfg.mde_exponent
            grants.extend((j / w, (t, r), j) for j in range(1, self.tables[t].dim + 1))
        grants.sort(key=lambda g: g[0])
        entry = self.cfg.index_entry_bytes if self.cfg.budget_covers == "all" else 0
        dims = {key: 0 for key in counts}
        spent = 0
        i = 0
        while i < len(grants):
            end = i
            while end < len(grants) and grants[end][0] == grants[i][0]:
                end += 1
            same = grants[i:end]  # equal thresholds: all or none
            cost = sum(self.tables[key[0]].dtype_bytes + (entry if j == 1 else 0) for _, key, j in same)
            if spent + cost > self.cfg.budget_bytes:
                break
            spent += cost
            for _, key, j in same:
                dims[key] = j
            i += len(same)
        return dims

    # ----- cafe (semantics.md "cafe"; the policy's docstring): a sketch of 4-slot buckets, a hot table, cold tables

    def _cafe_init(self, tables, cfg, dense) -> None:
        ratio = cfg.budget_bytes / dense
        # the artifact's Criteo pairs (ratio, threshold, cold share): the largest listed ratio at most this one
        pairs = [(0.5, 10.0, 0.7), (0.2, 10.0, 0.5), (0.1, 20.0, 0.5), (0.05, 30.0, 0.5), (0.02, 50.0, 0.3),
                 (0.01, 100.0, 0.3), (0.005, 200.0, 0.2), (0.002, 500.0, 0.2), (0.001, 500.0, 0.2),
                 (0.0005, 500.0, 0.1)]
        k, h = next(((k, h) for r, k, h in pairs if ratio >= r), pairs[-1][1:])
        self.threshold = cfg.cafe_threshold if cfg.cafe_threshold is not None else k
        h = cfg.cafe_cold_share if cfg.cafe_cold_share is not None else h
        b = max(t.dim * t.dtype_bytes for t in tables)             # a hot row holds a row of any table
        self.hot = int(cfg.budget_bytes * (1.0 - h) // (b + 48))   # H buckets of 4 slots of 12 bytes, H hot rows
        self.cold = [max(1, int(cfg.budget_bytes * h * t.dense_bytes // dense) // (t.dim * t.dtype_bytes))
                     for t in tables]
        self.payload_bytes = self.hot * b + sum(c * t.dim * t.dtype_bytes for c, t in zip(self.cold, tables))
        self.index_bytes = 48 * self.hot                              # the sketch
        self.slots = [[[0, 0.0, 0] for _ in range(4)] for _ in range(self.hot)]   # [key, score, hot row]
        self.free = list(range(1, self.hot))                          # a FIFO of hot rows
        self.tot = 0.0
        self.pending: list[Lookup] = []
        self.cafe = {"hot_lookups": 0, "promotions": 0, "demotions": 0}
        self.served = {}   # (t, cold row) -> rows seen reading it

    def _cafe_key(self, t: int, r: int) -> int:
        return ((t << 40) | r) + 1

    def _cafe_hot(self, t: int, r: int) -> int:
        """The hot row (t, r) reads now, 0 when cold: the slot of its bucket holding its key with a score."""
        key = self._cafe_key(t, r)
        for slot in self.slots[splitmix64(key) % self.hot]:
            if slot[1] != 0 and slot[0] == key:
                return slot[2]
        return 0

    def _cafe_insert_pending(self) -> None:
        """The step's inserts: per table in order, the decay check, then each lookup's normalised score."""
        import math as _m
        records, self.pending = self.pending, []
        for t in sorted({rec.table for rec in records}):
            mine = [rec for rec in records if rec.table == t]
            norms = [1.0 if rec.grads is None else _m.sqrt(sum(g * g for g in rec.grads[:self.tables[t].chunks]))
                     for rec in mine]
            total = 0.0
            for g in norms:
                total += g
            if self.tot > 10.0 * self.hot * self.threshold:   # decay
                for bucket in self.slots:
                    for slot in bucket:
                        if slot[2] != 0 and slot[1] * self.cfg.cafe_decay < self.threshold:
                            self.free.append(slot[2])
                            slot[2] = 0
                            self.cafe["demotions"] += 1
                        slot[1] *= self.cfg.cafe_decay
                self.tot = 0.0
            for rec, g in zip(mine, norms):
                v = g * len(mine) / total if total != 0 else 0.0
                self.tot += v
                key = self._cafe_key(rec.table, rec.row)
                bucket = self.slots[splitmix64(key) % self.hot]
                at = next((j for j, slot in enumerate(bucket) if slot[1] != 0 and slot[0] == key), None)
                if at is not None:
                    bucket[at][1] += v
                    if bucket[at][1] >= self.threshold and self.free and bucket[at][2] == 0:
                        bucket[at][2] = self.free.pop(0)
                        self.cafe["promotions"] += 1
                        continue
                    while at > 0 and bucket[at][1] > bucket[at - 1][1]:
                        bucket[at], bucket[at - 1] = bucket[at - 1], bucket[at]
                        at -= 1
                    continue
                empty = next((j for j, slot in enumerate(bucket) if slot[1] == 0), None)
                if empty is not None:
                    bucket[empty][0], bucket[empty][1] = key, v
                elif bucket[3][2] == 0:
                    bucket[3][1] += v
                    bucket[3][0] = key

    def _cafe_apply(self, rec) -> int:
        """A lookup's dimensions under cafe (hot: all; cold: all, or none when its cold row served another row)."""
        if self.pending and rec.step > self.pending[-1].step:
            self._cafe_insert_pending()
        self.pending.append(rec)
        spec = self.tables[rec.table]
        if self._cafe_hot(rec.table, rec.row):
            self.cafe["hot_lookups"] += 1
            return spec.dim
        c = self.cold[rec.table]
        if c >= spec.rows:
            return spec.dim
        rows = self.served.setdefault((rec.table, splitmix64(rec.row) % c), set())
        rows.add(rec.row)
        if len(rows) > 1:
            self.counters["collisions"] += 1
            return 0
        return spec.dim

    def dimensions(self, t: int, r: int) -> int:
        """The number of dimensions row r of table t reads under this baseline."""
        D = self.tables[t].dim
        if self.policy in ("full", "hash", "qr", "cafe"):
            return D
        if self.policy == "uniform-dim":
            return min(self.uniform_dims, D)
        if self.policy == "mde":
            return self.mde_dims.get((t, r), 0)
        # "row r of table t is kept when perm_t(r) < m_t"
        return D if row_permutation(t, r, self.tables[t].rows) < self.kept_rows[t] else 0

    def apply(self, rec) -> None:
        if not isinstance(rec, Lookup):
            return  # baselines have no utilities: importance records change nothing
        spec = self.tables[rec.table]
        dims = self._cafe_apply(rec) if self.policy == "cafe" else self.dimensions(rec.table, rec.row)
        c = self.counters
        if self.policy == "hash" and self.buckets[rec.table] < spec.rows:
            bucket = splitmix64(rec.row) % self.buckets[rec.table]
            rows = self.served.setdefault((rec.table, bucket), set())
            rows.add(rec.row)
            # DESIGN 4: a collision is a lookup "whose bucket also serves another row seen so
            # far"; semantics.md: it reads a vector that is not its own, so it is no hit.
            if len(rows) > 1:
                c["collisions"] += 1
                dims = 0
        if self.policy == "qr" and self.remainders[rec.table]:
            # a quotient (remainder) row is shared when it has served another row seen so far
            m = self.remainders[rec.table]
            for i, part in enumerate((rec.row // m, rec.row % m)):
                rows = self.readers[i].setdefault((rec.table, part), set())
                rows.add(rec.row)
                self.shared[i] += int(len(rows) > 1)
        c["lookups"] += 1
        # semantics.md "Baselines": a row hit is any resident dimension; chunk hits count whole chunks
        c["row_hits"] += int(dims > 0)
        c["chunk_hits"] += dims // spec.chunk
        c["chunks_requested"] += spec.chunks
        c["full_hits"] += int(dims == spec.dim)
        c["dim_hits"] += dims
        c["dims_requested"] += spec.dim

    def round(self, now: int) -> None:
        pass  # no pruning rounds (DECISION: `rounds` stays 0 for baselines)

    def dim_hist(self) -> list[int]:
        """Rows by whole resident chunks, floor(dimensions / C); rows never seen at 0 under mde."""
        hist = [0] * (max(t.chunks for t in self.tables) + 1)
        for i, t in enumerate(self.tables):
            if self.policy == "uniform-row":
                hist[t.chunks] += self.kept_rows[i]
                hist[0] += t.rows - self.kept_rows[i]
            elif self.policy == "mde":
                dims = [d for (table, _), d in self.mde_dims.items() if table == i]
                for d in dims:
                    hist[d // t.chunk] += 1
                hist[0] += t.rows - len(dims)
            else:
                hist[self.dimensions(i, 0) // t.chunk] += t.rows
        return hist

    def gauges(self) -> dict:
        return {
            "payload_bytes": self.payload_bytes,
            "index_bytes": self.index_bytes,
            "meta_bytes": 0,
            "total_bytes": self.payload_bytes + self.index_bytes,
            # DECISION: no pool, so no pages, live chunks or fragmentation (0).
            "mapped_pages": 0,
            "live_chunks": 0,
            "tracked_rows": 0,
            "fragmentation": 0.0,
            "theta": 0.0,
            "dim_hist": self.dim_hist(),
        }

    def snapshot(self, step: int) -> dict:
        snap = {"step": step}
        snap.update(self.counters)
        snap.update(self.gauges())
        return {key: snap[key] for key in SNAPSHOT_KEYS}

    def result(self, snapshots: list) -> ReferenceResult:
        if self.policy == "cafe" and self.pending:  # the last step's inserts (promotions count)
            self._cafe_insert_pending()
        c, g = self.counters, self.gauges()
        summary = {
            "payload_bytes_peak": g["payload_bytes"],
            "payload_bytes_final": g["payload_bytes"],
            "index_bytes_peak": g["index_bytes"],
            "index_bytes_final": g["index_bytes"],
            "meta_bytes_final": 0,
            "total_bytes_peak": g["total_bytes"],
            "total_bytes_final": g["total_bytes"],
            "mapped_pages_final": 0,
            "live_chunks_final": 0,
            "fragmentation_final": 0.0,
            "row_hit_rate": _rate(c["row_hits"], c["lookups"]),
            "chunk_hit_rate": _rate(c["chunk_hits"], c["chunks_requested"]),
            "full_hit_rate": _rate(c["full_hits"], c["lookups"]),
            "dim_hit_rate": _rate(c["dim_hits"], c["dims_requested"]),
            "collision_share": _rate(c["collisions"], c["lookups"]),
            "theta_final": 0.0,
            "mean_probe_length": 0.0,
            "max_probe_length": 0,
            "tracked_rows": 0,
            "dim_hist_final": g["dim_hist"],
            # DECISION: the uniform-row dense remap is an array, not a hash index: 0.0.
            "index_load_factor_final": 0.0,
        }
        summary.update(c)
        keys = list(SUMMARY_KEYS)
        if self.policy == "qr":  # its own figures: shares of lookups whose quotient / remainder row was shared
            summary["quotient_shared_share"] = _rate(self.shared[0], c["lookups"])
            summary["remainder_shared_share"] = _rate(self.shared[1], c["lookups"])
            keys += ["quotient_shared_share", "remainder_shared_share"]
        if self.policy == "cafe":  # its own figures: the hot share, migrations and the parts' memory
            b = max(t.dim * t.dtype_bytes for t in self.tables)
            summary.update({"hot_hit_share": _rate(self.cafe["hot_lookups"], c["lookups"]),
                            "promotions": self.cafe["promotions"], "demotions": self.cafe["demotions"],
                            "hot_bytes": self.hot * b,
                            "cold_bytes": sum(c * t.dim * t.dtype_bytes for c, t in zip(self.cold, self.tables)),
                            "sketch_bytes": self.index_bytes})
            keys += ["hot_hit_share", "promotions", "demotions", "hot_bytes", "cold_bytes", "sketch_bytes"]
        return ReferenceResult(summary={key: summary[key] for key in keys}, snapshots=snapshots)


# --------------------------------------------------------------------------- replay

def replay(tables: list[TableSpec], cfg: ReplayConfig, lookups, importance=(), policy: str = "fiited",
           check: bool = False) -> ReferenceResult:
    """Replay a trace (and an optional importance log) under one policy.

    DESIGN 2 "Pruning rounds": "Let s be the step of the record just processed and
    s' the step of the next record. A round runs between them when
    floor(s' / interval) > floor(s / interval) — at most one round per gap, none
    after the trace's last record." semantics.md "Time series": "a snapshot is taken
    at each gap between records where floor(s'/report_every) > floor(s/report_every),
    after that gap's round, labelled with step s, and once after the last record."

    `lookups`: (step, table_index, row) or (step, table_index, row, grads) tuples.
    `importance`: (step, table_index, row, chunk, value) tuples; non-empty = "given".
    `check=True` checks the model invariants after every record and every round.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    tables = list(tables)
    if not tables:
        raise ValueError("at least one table is needed")
    cfg = resolve_layout(tables, cfg)
    for spec in tables:
        if spec.chunk_bytes > cfg.page_bytes:
            raise ValueError(f"table {spec.name!r}: a chunk of {spec.chunk_bytes} bytes does not fit a page")
    lookup_records = _read_lookups(lookups, tables)
    importance_records = _read_importance(importance, tables)
    has_grads = any(rec.grads is not None for rec in lookup_records)
    log_given = len(importance_records) > 0
    records = merge_records(lookup_records, importance_records)

    if policy == "fiited":
        model = FiitedModel(tables, cfg, has_grads, log_given)
    elif policy == "row-prune":
        model = RowPruneModel(tables, cfg, has_grads, log_given)
    else:
        model = DenseBaseline(tables, cfg, policy, lookup_records)

    snapshots = []
    for i, rec in enumerate(records):
        model.apply(rec)
        if check and isinstance(model, FiitedModel):
            model.check_invariants()
        if i + 1 < len(records):
            s, s_next = rec.step, records[i + 1].step
            if s_next // cfg.interval > s // cfg.interval:
                model.round(now=s)
                if check and isinstance(model, FiitedModel):
                    model.check_invariants()
            if s_next // cfg.report_every > s // cfg.report_every:
                snapshots.append(model.snapshot(s))
    # DECISION: an empty record stream has no "last record" and so no snapshot.
    if records:
        snapshots.append(model.snapshot(records[-1].step))
    return model.result(snapshots)


# --------------------------------------------------------------------------- invariants

def check_invariants(result_or_model, tables: list[TableSpec] | None = None,
                     cfg: ReplayConfig | None = None) -> None:
    """Assert the storage invariants.

    On a FiitedModel (what `replay(..., check=True)` does after every record) all
    of them are checked. On a ReferenceResult (or any engine result of the same
    shape) the checks are those its fields allow: every index layout is a valid
    linear-probing table matching the index dict, no slot address is owned twice
    in a pool, every row's indexed chunks form a prefix 0..d-1, live chunks equal
    the index entries and the dimension histogram's chunk total, and (given
    `tables` and `cfg`, budget covering payload) mapped pages within the page caps
    and every address on a mapped page.
    """
    if isinstance(result_or_model, FiitedModel):
        result_or_model.check_invariants()
        return
    res = result_or_model
    if not res.index:
        return
    pool_of_table = None
    slots_per_page = None
    if tables is not None and cfg is not None:
        cfg = resolve_layout(tables, cfg)
        layout = PoolLayout.of(tables, cfg.page_bytes)
        pool_of_table, slots_per_page = layout.pool_of_table, layout.slots_per_page
        if cfg.budget_covers == "payload":
            caps = layout.page_caps(cfg.budget_bytes, 0, cfg.page_bytes)
            for p, pages in enumerate(res.mapped_pages):
                assert len(pages) <= caps[p], f"pool {p} maps {len(pages)} pages > cap {caps[p]}"
    owners = {}
    dims: dict[tuple[int, int], set[int]] = {}
    entries = 0
    for (t, k), mapping in res.index.items():
        layout_keys = res.index_layout[(t, k)]
        assert len(layout_keys) == res.index_capacity[(t, k)]
        _check_index_layout(layout_keys, len(mapping), f"index ({t},{k})")
        assert set(r for r in layout_keys if r is not None) == set(mapping)
        for r, address in mapping.items():
            # Without the tables the pools are unknown: only check within one table.
            pool = pool_of_table[t] if pool_of_table is not None else ("table", t)
            assert (pool, address) not in owners, f"slot {address} owned twice"
            owners[(pool, address)] = (t, r, k)
            dims.setdefault((t, r), set()).add(k)
            if pool_of_table is not None:
                assert address // slots_per_page[pool] in res.mapped_pages[pool], f"slot {address} unmapped"
        entries += len(mapping)
    for key, ks in dims.items():
        assert ks == set(range(len(ks))), f"row {key} resident chunks {sorted(ks)} are not a prefix"
    assert res.summary["live_chunks_final"] == entries
    assert sum(d * n for d, n in enumerate(res.summary["dim_hist_final"])) == entries
