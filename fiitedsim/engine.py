"""Engine state for the chunk-storing policies, and the grow-and-resume protocol.

Kernels never reallocate: before each record they check that the record
cannot overflow any array (tracked rows, the tracker map, the flat index
arrays, page arrays, the snapshot buffer) and otherwise return a status code.
`EngineState.run` then grows what was asked and calls the kernel again from the
same record. State therefore stays proportional to the distinct rows seen
(DESIGN 1.3), and growth costs are amortised by doubling.
"""
from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

from . import store
from .config import PoolLayout, ReplayConfig, TableSpec

# kernel status codes
DONE, NEED_ROWS, NEED_INDEX, NEED_PAGES, NEED_SNAPSHOTS = 0, 1, 2, 3, 4

#: Columns of the per-window time series, in the order kernels write them.
COUNTER_COLUMNS = ["lookups", "row_hits", "chunk_hits", "chunks_requested", "full_hits", "allocations",
                   "frees", "rehashes", "denied_full", "denied_threshold", "searches", "probes", "rounds"]
GAUGE_COLUMNS = ["payload_bytes", "index_bytes", "meta_bytes", "total_bytes", "mapped_pages", "live_chunks",
                 "tracked_rows", "fragmentation", "theta", "index_load_factor"]
#: st.sc index of each counter column
COUNTER_SC = np.array([store.LOOKUPS, store.ROW_HITS, store.CHUNK_HITS, store.CHUNKS_REQUESTED, store.FULL_HITS,
                       store.ALLOCATIONS, store.FREES, store.REHASHES, store.DENIED_FULL, store.DENIED_THRESHOLD,
                       store.SEARCHES, store.PROBES, store.ROUNDS], dtype=np.int64)

POWTAB_MAX = 1 << 20

State = namedtuple("State", [
    "sc", "ip", "gamma", "max_load",
    "tab_k", "tab_pool", "tab_meta", "wpos", "powtab",
    "trk_keys", "trk_vals", "row_key", "row_u", "row_last", "row_d", "dim_hist",
    "ix_keys", "ix_vals", "ix_off", "ix_cap", "ix_count",
    "pool_spp", "pool_dense", "pool_hwm", "pool_mapped", "pool_live", "pool_hint_free", "pool_hint_unmapped",
    "pool_theta", "page_live", "page_mapped", "page_free_bits",
    "lifo_slot", "lifo_stamp", "lifo_top", "slot_stamp",
    "snap", "counter_sc",
])


def snapshot_columns(k_max: int) -> list[str]:
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
        n_tables = len(tables)
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
        n_index = n_tables * k_max
        sc[store.IX_CAP_TOTAL] = sum(t.chunks for t in tables) * cfg.index_initial
        sc[store.IX_CAP_MAX] = cfg.index_initial
        sc[store.INDEX_PEAK] = sc[store.TOTAL_PEAK] = sc[store.IX_CAP_TOTAL] * cfg.index_entry_bytes
        ix_cap = np.full(n_index, cfg.index_initial, np.int64)
        for t, spec in enumerate(tables):  # chunk positions a table does not have get no index
            ix_cap[t * k_max + spec.chunks:(t + 1) * k_max] = 0
        ix_off = np.zeros(n_index, np.int64)
        ix_off[:] = np.cumsum(np.concatenate([[0], ix_cap[:-1]]))
        sc[store.IX_BUMP] = int(ix_cap.sum())
        flat = max(4 * int(ix_cap.sum()), 1 << 16)
        spp = np.array(layout.slots_per_page, np.int64)
        pages = 16
        rows_cap = 1024
        self.st = State(
            sc=sc, ip=ip, gamma=float(cfg.gamma), max_load=float(cfg.max_load),
            tab_k=np.array([t.chunks for t in tables], np.int64),
            tab_pool=np.array(layout.pool_of_table, np.int64),
            tab_meta=np.array([cfg.meta_bytes_for(t) for t in tables], np.int64),
            wpos=np.array([cfg.position_weight ** float(k) for k in range(k_max)], np.float64),
            powtab=self._powtab(np.zeros(0), 1024),
            trk_keys=np.zeros(2 * rows_cap, np.int64), trk_vals=np.zeros(2 * rows_cap, np.int64),
            row_key=np.zeros(rows_cap, np.int64), row_u=np.zeros((rows_cap, k_max), np.float64),
            row_last=np.zeros(rows_cap, np.int64), row_d=np.zeros(rows_cap, np.int64),
            dim_hist=np.zeros(k_max + 1, np.int64),
            ix_keys=np.zeros(flat, np.int64), ix_vals=np.zeros(flat, np.int64),
            ix_off=ix_off, ix_cap=ix_cap, ix_count=np.zeros(n_index, np.int64),
            pool_spp=spp, pool_dense=np.array(layout.dense_bytes, np.int64),
            pool_hwm=np.zeros(n_pools, np.int64), pool_mapped=np.zeros(n_pools, np.int64),
            pool_live=np.zeros(n_pools, np.int64), pool_hint_free=np.zeros(n_pools, np.int64),
            pool_hint_unmapped=np.zeros(n_pools, np.int64), pool_theta=np.zeros(n_pools, np.float64),
            page_live=np.zeros((n_pools, pages), np.int64), page_mapped=np.zeros((n_pools, pages), np.int8),
            page_free_bits=np.zeros((n_pools, pages, (int(spp.max()) + 63) // 64), np.uint64),
            lifo_slot=np.zeros((n_pools, self._lifo_len(pages)), np.int64),
            lifo_stamp=np.zeros((n_pools, self._lifo_len(pages)), np.int64),
            lifo_top=np.zeros(n_pools, np.int64),
            slot_stamp=np.zeros((n_pools, self._slot_len(pages)), np.int64),
            snap=np.zeros((snapshot_capacity, len(snapshot_columns(k_max))), np.float64),
            counter_sc=COUNTER_SC,
        )
        self.snapshots: list[np.ndarray] = []

    # ---- sizes -------------------------------------------------------------
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
        if status == NEED_ROWS:
            cap = 2 * st.row_key.size
            keys, vals = np.zeros(2 * cap, np.int64), np.zeros(2 * cap, np.int64)
            store.tracker_rebuild(st.trk_keys, st.trk_vals, keys, vals)

            def bigger(a):
                out = np.zeros((cap,) + a.shape[1:], a.dtype)
                out[:a.shape[0]] = a
                return out
            self.st = st._replace(trk_keys=keys, trk_vals=vals, row_key=bigger(st.row_key),
                                  row_u=bigger(st.row_u), row_last=bigger(st.row_last), row_d=bigger(st.row_d))
        elif status == NEED_INDEX:
            self._compact_index()
        elif status == NEED_PAGES:
            old = st.page_live.shape[1]
            pages = 2 * old

            def wider(a, n):
                out = np.zeros((a.shape[0], n) + a.shape[2:], a.dtype)
                out[:, :a.shape[1]] = a
                return out
            self.st = st._replace(page_live=wider(st.page_live, pages), page_mapped=wider(st.page_mapped, pages),
                                  page_free_bits=wider(st.page_free_bits, pages),
                                  lifo_slot=wider(st.lifo_slot, self._lifo_len(pages)),
                                  lifo_stamp=wider(st.lifo_stamp, self._lifo_len(pages)),
                                  slot_stamp=wider(st.slot_stamp, self._slot_len(pages)))
        elif status == NEED_SNAPSHOTS:
            self.flush_snapshots()
        else:
            raise RuntimeError(f"unknown engine status {status}")

    def _compact_index(self) -> None:
        """Copy live index regions into fresh flat arrays with room for the next doublings."""
        st = self.st
        live = int(st.ix_cap.sum())
        size = max(2 * live + 4 * self.k_max * int(st.sc[store.IX_CAP_MAX]), st.ix_keys.size)
        keys, vals = np.zeros(size, np.int64), np.zeros(size, np.int64)
        off = np.zeros_like(st.ix_off)
        pos = 0
        for i in range(st.ix_cap.size):
            cap = int(st.ix_cap[i])
            src = int(st.ix_off[i])
            keys[pos:pos + cap] = st.ix_keys[src:src + cap]
            vals[pos:pos + cap] = st.ix_vals[src:src + cap]
            off[i] = pos
            pos += cap
        st.sc[store.IX_BUMP] = pos
        self.st = st._replace(ix_keys=keys, ix_vals=vals, ix_off=off)

    def flush_snapshots(self) -> None:
        n = int(self.st.sc[store.SNAP_N])
        if n:
            self.snapshots.append(self.st.snap[:n].copy())
            self.st.sc[store.SNAP_N] = 0

    def snapshot_table(self) -> np.ndarray:
        self.flush_snapshots()
        if not self.snapshots:
            return np.zeros((0, self.st.snap.shape[1]))
        return np.concatenate(self.snapshots)

    # ---- inspection (tests and invariant checks) ----------------------------
    def tracked(self):
        """(t, r) -> (utilities tuple, last step, resident prefix d) for every tracked row."""
        st = self.st
        n = int(st.sc[store.TRACKED])
        out = {}
        for tid in range(n):
            key = int(st.row_key[tid])
            t, r = key >> store.ROW_BITS, key & store.ROW_MASK
            k = self.tables[t].chunks
            out[(t, r)] = (tuple(float(x) for x in st.row_u[tid, :k]), int(st.row_last[tid]), int(st.row_d[tid]))
        return out

    def index_contents(self):
        """(t, k) -> (capacity, bucket list with row or None, {row: slot})."""
        st = self.st
        out = {}
        for t, spec in enumerate(self.tables):
            for k in range(spec.chunks):
                i = t * self.k_max + k
                cap, off = int(st.ix_cap[i]), int(st.ix_off[i])
                keys = st.ix_keys[off:off + cap]
                vals = st.ix_vals[off:off + cap]
                layout = [int(x) - 1 if x != store.EMPTY else None for x in keys]
                mapping = {int(x) - 1: int(v) for x, v in zip(keys, vals) if x != store.EMPTY}
                out[(t, k)] = (cap, layout, mapping)
        return out

    def mapped_pages(self):
        st = self.st
        return [sorted(int(p) for p in np.nonzero(st.page_mapped[pool])[0]) for pool in range(self.n_pools)]

    def check_invariants(self) -> None:
        """DESIGN invariants: one slot per resident chunk, no slot owned twice,
        live chunks == sum of row dimensions == index entries, mapped pages within the budget."""
        st = self.st
        rows = self.tracked()
        index = self.index_contents()
        owners: dict[tuple[int, int], tuple[int, int, int]] = {}
        entries = 0
        for (t, k), (cap, layout, mapping) in index.items():
            assert int(st.ix_count[t * self.k_max + k]) == len(mapping)
            entries += len(mapping)
            pool = self.layout.pool_of_table[t]
            for r, slot in mapping.items():
                assert (pool, slot) not in owners, f"slot {slot} of pool {pool} owned twice"
                owners[(pool, slot)] = (t, r, k)
                spp = self.layout.slots_per_page[pool]
                page, s = divmod(slot, spp)
                assert st.page_mapped[pool, page], f"slot {slot} on unmapped page {page}"
                assert not (int(st.page_free_bits[pool, page, s // 64]) >> (s % 64)) & 1, f"slot {slot} marked free"
        dims = 0
        for (t, r), (_, _, d) in rows.items():
            dims += d
            for k in range(self.tables[t].chunks):
                assert (r in index[(t, k)][2]) == (k < d), f"row {(t, r)}: resident set is not the prefix 0..{d - 1}"
        live = int(st.sc[store.LIVE_TOTAL])
        assert live == dims == entries == int(st.sc[store.IX_COUNT_TOTAL]), (live, dims, entries)
        assert live == int(st.page_live.sum())
        if self.cfg.budget_covers == "payload":
            for pool in range(self.n_pools):
                cap = self.layout.page_caps(self.cfg.budget_bytes, 0, self.cfg.page_bytes)[pool]
                assert st.pool_mapped[pool] <= cap, f"pool {pool}: {st.pool_mapped[pool]} pages mapped over cap {cap}"
        hist = np.bincount(st.row_d[:len(rows)], minlength=self.k_max + 1)
        assert np.array_equal(hist, st.dim_hist), "dimension histogram out of date"
