"""Engine state for the chunk-storing policies, and the grow-and-resume protocol.

Kernels never reallocate: before each record they check that the record
cannot overflow any array (tracked rows, the tracker map, the flat index
arrays, page arrays) and otherwise return a status code; the driver grows what
was asked and calls the kernel again from the same record. A gap between
records that needs a pruning round or a snapshot is handed back the same way
(status GAP), because the record loop is compiled without reference counting
and so cannot call code that allocates. State therefore stays proportional to the distinct rows seen
(DESIGN 1.3), and growth costs are amortised by doubling.
"""
from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

from . import store
from .config import PoolLayout, ReplayConfig, TableSpec

# kernel status codes
DONE, NEED_ROWS, NEED_INDEX, NEED_PAGES, GAP = 0, 1, 2, 3, 4

#: Columns of the per-window time series, in the order kernels write them.
COUNTER_COLUMNS = ["lookups", "row_hits", "chunk_hits", "chunks_requested", "full_hits", "dim_hits", "dims_requested",
                   "collisions", "allocations", "frees", "rehashes", "denied_full", "denied_threshold", "searches",
                   "probes", "rounds"]
GAUGE_COLUMNS = ["payload_bytes", "index_bytes", "meta_bytes", "total_bytes", "mapped_pages", "live_chunks",
                 "tracked_rows", "fragmentation", "theta", "index_load_factor"]
#: st.sc index of each counter column
COUNTER_SC = np.array([store.LOOKUPS, store.ROW_HITS, store.CHUNK_HITS, store.CHUNKS_REQUESTED, store.FULL_HITS,
                       store.DIM_HITS, store.DIMS_REQUESTED, store.COLLISIONS, store.ALLOCATIONS, store.FREES,
                       store.REHASHES, store.DENIED_FULL, store.DENIED_THRESHOLD, store.SEARCHES, store.PROBES,
                       store.ROUNDS], dtype=np.int64)

POWTAB_MAX = 1 << 20
#: The arrays sized by tracked rows (`rows`, `row_u`, `row_pos`) and the flat index array start with room
#: for up to this many bytes each (never more than the tables could ever need). np.zeros takes fresh pages
#: from the kernel, which materialises a page only when it is first written, so the room costs address
#: space, not memory: resident memory still follows the rows seen and the index buckets used, while the
#: copies of doubling happen only past the reservation (docs/engine.md, "Memory per tracked row").
RESERVE_BYTES = 2 << 30
ROWS_MIN, INDEX_MIN = 1024, 1 << 16
#: Pages the page arrays have room for at the start (they double as pages are mapped).
INITIAL_PAGES = 16
#: row_pos[tid, k] holds a bucket number of one index: int32 halves its size (an index of 2**31 buckets
#: would take 48 GiB of implementation memory alone)
ROW_POS_DTYPE = np.int32

State = namedtuple("State", [
    "sc", "ip", "fp", "tabs", "wpos", "powtab",          # scalars, parameters, per-table columns, decay table
    "trk", "rows", "row_u", "row_pos", "dim_hist",       # row tracker and tracked-row state
    "ix", "ix_meta",                                     # hash indices: (key, slot, tid) entries, per-index columns
    "pools", "pool_theta", "page_live", "page_free_bits", "lifo", "slot_stamp",  # physical pools
    "snap", "counter_sc",                                # snapshot buffer
])


def _grown(a: np.ndarray, axis: int, n: int) -> np.ndarray:
    """A copy of `a` enlarged to length n along `axis`, zero-filled."""
    shape = list(a.shape)
    shape[axis] = n
    out = np.zeros(shape, a.dtype)
    out[tuple(slice(0, m) for m in a.shape)] = a
    return out


def _zeros_reserving(tails, dtypes, floor: int, need: int) -> list[np.ndarray]:
    """Zeroed arrays of n rows each, n = `need` capped at RESERVE_BYTES for the widest (never below `floor`).

    One array per (shape tail, dtype) of `tails` and `dtypes`; they share n. Where the system refuses
    that much address space (strict overcommit), the arrays start at `floor` rows.
    """
    widest = max(int(np.prod(tail)) * np.dtype(dtype).itemsize for tail, dtype in zip(tails, dtypes))
    n = max(floor, min(need, RESERVE_BYTES // widest))
    try:
        arrays = [np.zeros((n, *tail), dtype) for tail, dtype in zip(tails, dtypes)]
    except MemoryError:
        arrays = [np.zeros((floor, *tail), dtype) for tail, dtype in zip(tails, dtypes)]
    return arrays


#: Gauges that are ratios (float64); every other snapshot column is an integer.
FLOAT_COLUMNS = ("fragmentation", "theta", "index_load_factor")


def snapshot_columns(k_max: int) -> list[str]:
    """Columns of a snapshot row. Rows are int64 arrays, so steps and counters stay exact past 2**53; a column of
    FLOAT_COLUMNS holds the IEEE-754 bits of its float64 value (written as `np.float64(x).view(np.int64)`,
    read back by `policies.base.snapshots_frame` / `snapshot_values`)."""
    return ["step"] + COUNTER_COLUMNS + GAUGE_COLUMNS + [f"dim_{d}" for d in range(k_max + 1)]


@numba.njit(cache=True)
def fill_powtab(gamma, out, start):
    """out[n] = gamma ** float64(n): the same libm pow the kernels would call (DESIGN 2)."""
    for n in range(start, out.size):
        out[n] = gamma ** np.float64(n)


class EngineState:
    """Owns the arrays of one replay of a chunk-storing policy and grows them on request."""

    def __init__(self, tables: list[TableSpec], cfg: ReplayConfig, has_grad: bool, has_log: bool,
                 snapshot_capacity: int = 4096):
        self.tables, self.cfg = tables, cfg
        self.layout = layout = PoolLayout.of(tables, cfg.page_bytes)
        k_max = max(t.chunks for t in tables)
        n_pools = len(layout.chunk_bytes)
        self.k_max, self.n_pools = k_max, n_pools
        ip = np.zeros(store.N_IP, np.int64)
        ip[store.P_INTERVAL] = cfg.interval
        ip[store.P_REPORT_EVERY] = cfg.report_every
        ip[store.P_PAGE_BYTES] = cfg.page_bytes
        ip[store.P_BUDGET] = cfg.budget_bytes
        ip[store.P_COVERS_ALL] = cfg.budget_covers == "all"
        ip[store.P_LIFO] = cfg.allocator == "lifo"
        ip[store.P_HAS_GRAD] = has_grad and not has_log
        ip[store.P_HAS_LOG] = has_log
        ip[store.P_COUNT_ACCESSES] = cfg.count_accesses
        ip[store.P_ENTRY_BYTES] = cfg.index_entry_bytes
        ip[store.P_KMAX] = k_max
        ip[store.P_NPOOLS] = n_pools
        ip[store.P_DENSE_TOTAL] = sum(layout.dense_bytes)
        ip[store.P_TOTAL_ROWS] = sum(t.rows for t in tables)
        sc = np.zeros(store.N_SC, np.int64)
        caps = np.array([[cfg.index_initial if k < t.chunks else 0 for k in range(k_max)] for t in tables],
                        np.int64).reshape(-1)  # chunk positions a table does not have get no index
        ix_meta = np.zeros((caps.size, 3), np.int64)
        ix_meta[:, store.X_CAP] = caps
        ix_meta[:, store.X_OFF] = np.cumsum(caps) - caps
        sc[store.IX_BUMP] = sc[store.IX_CAP_TOTAL] = int(caps.sum())
        sc[store.IX_CAP_MAX] = cfg.index_initial
        sc[store.INDEX_PEAK] = sc[store.TOTAL_PEAK] = sc[store.IX_CAP_TOTAL] * cfg.index_entry_bytes
        flat = max(4 * int(caps.sum()), INDEX_MIN)
        ix, = _zeros_reserving([(store.IX_COLS,)], [np.int64], flat,
                               sum(4 * t.chunks * self._index_cap_bound(t.rows) for t in tables))
        rows, row_u, row_pos = _zeros_reserving(
            [(3,), (k_max,), (k_max,)], [np.int64, np.float64, ROW_POS_DTYPE], ROWS_MIN, sum(t.rows for t in tables))
        pools = np.zeros((n_pools, store.N_Q), np.int64)
        pools[:, store.Q_SPP] = layout.slots_per_page
        pools[:, store.Q_DENSE] = layout.dense_bytes
        fp = np.zeros(store.N_FP, np.float64)
        fp[store.F_GAMMA], fp[store.F_MAX_LOAD] = cfg.gamma, cfg.max_load
        tabs = np.array([[t.chunks, pool, cfg.meta_bytes_for(t), t.chunk]
                         for t, pool in zip(tables, layout.pool_of_table)], np.int64)
        pages = INITIAL_PAGES
        self.st = State(
            sc=sc, ip=ip, fp=fp, tabs=tabs,
            wpos=np.array([cfg.position_weight ** float(k) for k in range(k_max)], np.float64),
            powtab=self._powtab(np.zeros(0), 1024),
            trk=np.zeros((2 * ROWS_MIN, 2), np.int64), rows=rows, row_u=row_u, row_pos=row_pos,
            dim_hist=np.zeros(k_max + 1, np.int64),
            ix=ix, ix_meta=ix_meta,
            pools=pools, pool_theta=np.zeros(n_pools, np.float64),
            page_live=np.full((n_pools, pages), store.UNMAPPED, np.int64),
            page_free_bits=np.zeros((n_pools, pages, (max(layout.slots_per_page) + 63) // 64), np.uint64),
            lifo=np.zeros((n_pools, self._lifo_len(pages), 2), np.int64),
            slot_stamp=np.zeros((n_pools, self._slot_len(pages)), np.int64),
            snap=np.zeros((snapshot_capacity, len(snapshot_columns(k_max))), np.int64),  # FLOAT_COLUMNS as bits
            counter_sc=COUNTER_SC,
        )
        self.snapshots: list[np.ndarray] = []

    # ---- sizes -------------------------------------------------------------
    def _index_cap_bound(self, rows: int) -> int:
        """The largest capacity an index of a table of `rows` rows can reach (all rows resident)."""
        cap = self.cfg.index_initial
        while rows > self.cfg.max_load * cap:
            cap *= 2
        return cap

    def _lifo_len(self, pages: int) -> int:
        return 2 * pages * int(max(self.layout.slots_per_page)) + 1 if self.cfg.allocator == "lifo" else 1

    def _slot_len(self, pages: int) -> int:
        return pages * int(max(self.layout.slots_per_page)) if self.cfg.allocator == "lifo" else 1

    def _powtab(self, old: np.ndarray, n: int) -> np.ndarray:
        out = np.empty(n, np.float64)
        out[:old.size] = old
        fill_powtab(float(self.cfg.gamma), out, old.size)
        return out

    # ---- growth --------------------------------------------------------------
    def ensure_steps(self, max_step: int) -> None:
        """Decay factors for gaps up to max_step come from a table (bit-identical to pow)."""
        need = min(max_step + 1, POWTAB_MAX)
        if need > self.st.powtab.size:
            size = min(max(need, 2 * self.st.powtab.size), POWTAB_MAX)
            self.st = self.st._replace(powtab=self._powtab(self.st.powtab, size))

    def grow(self, status: int) -> None:
        st = self.st
        if status == NEED_ROWS:  # the row arrays are full, or the tracker map would pass half full
            need = int(st.sc[store.TRACKED]) + 1
            if need > st.rows.shape[0]:
                cap = 2 * st.rows.shape[0]
                st = st._replace(rows=_grown(st.rows, 0, cap), row_u=_grown(st.row_u, 0, cap),
                                 row_pos=_grown(st.row_pos, 0, cap))
            if 2 * need > st.trk.shape[0]:
                trk = np.zeros((2 * st.trk.shape[0], 2), np.int64)
                store.tracker_rebuild(st.trk, trk)
                st = st._replace(trk=trk)
            self.st = st
        elif status == NEED_INDEX:
            self._compact_index()
        elif status == NEED_PAGES:
            pages = 2 * st.page_live.shape[1]
            page_live = _grown(st.page_live, 1, pages)
            page_live[:, st.page_live.shape[1]:] = store.UNMAPPED
            self.st = st._replace(page_live=page_live, page_free_bits=_grown(st.page_free_bits, 1, pages),
                                  lifo=_grown(st.lifo, 1, self._lifo_len(pages)),
                                  slot_stamp=_grown(st.slot_stamp, 1, self._slot_len(pages)))
        else:
            raise RuntimeError(f"unknown engine status {status}")

    def _compact_index(self) -> None:
        """Copy live index regions into fresh flat arrays with room for the next doublings."""
        st = self.st
        caps = st.ix_meta[:, store.X_CAP]
        live = int(caps.sum())
        if 2 * int(st.sc[store.IX_CAP_MAX]) > np.iinfo(ROW_POS_DTYPE).max:
            raise RuntimeError("a hash index would exceed 2**31 buckets (row_pos holds int32 buckets)")
        size = max(4 * live + 4 * self.k_max * int(st.sc[store.IX_CAP_MAX]), st.ix.shape[0])
        ix = np.zeros((size, store.IX_COLS), np.int64)
        pos = 0
        for i in range(caps.size):
            cap, src = int(caps[i]), int(st.ix_meta[i, store.X_OFF])
            ix[pos:pos + cap] = st.ix[src:src + cap]
            st.ix_meta[i, store.X_OFF] = pos
            pos += cap
        st.sc[store.IX_BUMP] = pos
        self.st = st._replace(ix=ix)

    def flush_snapshots(self) -> None:
        n = int(self.st.sc[store.SNAP_N])
        if n:
            self.snapshots.append(self.st.snap[:n].copy())
            self.st.sc[store.SNAP_N] = 0

    def snapshot_table(self) -> np.ndarray:
        self.flush_snapshots()
        if not self.snapshots:
            return np.zeros((0, self.st.snap.shape[1]), np.int64)
        return np.concatenate(self.snapshots)

    # ---- inspection (tests and invariant checks) ----------------------------
    def tracked(self):
        """(t, r) -> (utilities tuple, last step, resident prefix d) for every tracked row."""
        st = self.st
        out = {}
        for tid in range(int(st.sc[store.TRACKED])):
            key, last, d = (int(x) for x in st.rows[tid])
            t, r = key >> store.ROW_BITS, key & store.ROW_MASK
            out[(t, r)] = (tuple(float(x) for x in st.row_u[tid, :self.tables[t].chunks]), last, d)
        return out

    def index_contents(self):
        """(t, k) -> (capacity, bucket list with row or None, {row: slot})."""
        st = self.st
        out = {}
        for t, spec in enumerate(self.tables):
            for k in range(spec.chunks):
                off, cap, _ = (int(x) for x in st.ix_meta[t * self.k_max + k])
                keys, vals = st.ix[off:off + cap, store.IX_KEY], st.ix[off:off + cap, store.IX_SLOT]
                layout = [int(x) - 1 if x != store.EMPTY else None for x in keys]
                mapping = {int(x) - 1: int(v) for x, v in zip(keys, vals) if x != store.EMPTY}
                out[(t, k)] = (cap, layout, mapping)
        return out

    def mapped_pages(self):
        st = self.st
        return [sorted(int(p) for p in np.nonzero(st.page_live[pool] != store.UNMAPPED)[0])
                for pool in range(self.n_pools)]

    def check_invariants(self) -> None:
        """DESIGN invariants: one slot per resident chunk, no slot owned twice,
        live chunks == sum of row dimensions == index entries, mapped pages within the budget."""
        st = self.st
        rows = self.tracked()
        index = self.index_contents()
        owners: dict[tuple[int, int], tuple[int, int, int]] = {}
        entries = 0
        for (t, k), (_, _, mapping) in index.items():
            assert int(st.ix_meta[t * self.k_max + k, store.X_COUNT]) == len(mapping)
            entries += len(mapping)
            pool = self.layout.pool_of_table[t]
            spp = self.layout.slots_per_page[pool]
            for r, slot in mapping.items():
                assert (pool, slot) not in owners, f"slot {slot} of pool {pool} owned twice"
                owners[(pool, slot)] = (t, r, k)
                page, s = divmod(slot, spp)
                assert st.page_live[pool, page] != store.UNMAPPED, f"slot {slot} on unmapped page {page}"
                assert not (int(st.page_free_bits[pool, page, s // 64]) >> (s % 64)) & 1, f"slot {slot} marked free"
        dims = 0
        for tid, ((t, r), (_, _, d)) in enumerate(rows.items()):
            dims += d
            for k in range(self.tables[t].chunks):
                assert (r in index[(t, k)][2]) == (k < d), f"row {(t, r)}: resident set is not the prefix 0..{d - 1}"
                if k < d:  # the engine's cached bucket of each resident chunk is where the index holds it
                    bucket = int(st.row_pos[tid, k])
                    assert index[(t, k)][1][bucket] == r, f"row {(t, r)} chunk {k}: row_pos {bucket} is stale"
                    assert int(st.ix[int(st.ix_meta[t * self.k_max + k, store.X_OFF]) + bucket, store.IX_TID]) == tid
        regions = sorted((int(off), int(cap)) for off, cap, _ in st.ix_meta if cap)
        for (off, cap), (next_off, _) in zip(regions, regions[1:] + [(int(st.sc[store.IX_BUMP]), 0)]):
            assert off + cap <= next_off, f"index region at {off} overlaps the next one or the bump pointer"
        live = int(st.sc[store.LIVE_TOTAL])
        assert live == dims == entries == int(st.sc[store.IX_COUNT_TOTAL]), (live, dims, entries)
        mapped = st.page_live != store.UNMAPPED
        assert live == int(st.page_live[mapped].sum())
        assert int(mapped.sum()) == int(st.sc[store.MAPPED_TOTAL])
        if self.cfg.budget_covers == "payload":
            caps = self.layout.page_caps(self.cfg.budget_bytes, 0, self.cfg.page_bytes)
            for pool in range(self.n_pools):
                n = int(st.pools[pool, store.Q_MAPPED])
                assert n <= caps[pool], f"pool {pool}: {n} pages mapped over the cap {caps[pool]}"
        hist = np.bincount(st.rows[:len(rows), store.R_D], minlength=self.k_max + 1)
        assert np.array_equal(hist, st.dim_hist), "dimension histogram out of date"
