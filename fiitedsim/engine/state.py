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

import mmap
from collections import namedtuple
from enum import IntEnum

import numba
import numpy as np

from ..config import PoolLayout, ReplayConfig, TableSpec, resolve_layout
from ..metrics import N_COUNTS, Count, Series, snapshot_columns  # noqa: F401  (snapshot_columns: for callers of the engine)
from . import populate, store
from .store import FParam, Ix, Param, PoolCol, RecordLayout, Scalar


class Status(IntEnum):
    """What a record-loop kernel returns: done, or where it stopped and why."""

    DONE = 0
    NEED_ROWS = 1    # the row arrays are full, or the tracker would pass half full
    NEED_INDEX = 2   # the flat index array may not hold the next doubling
    NEED_PAGES = 3   # the page arrays may not hold the next pages
    GAP = 4          # a gap between records needs a pruning round or a snapshot (`handle_gap`)


DONE, NEED_ROWS, NEED_INDEX, NEED_PAGES, GAP = Status


class Loop(IntEnum):
    """st.ctl: the record loop's control state (kept apart from the policy's counts, st.cnt)."""

    PREV_STEP = 0     # step of the last record processed
    HAVE_PREV = 1     # whether a record was processed
    GAP_ROUND = 2     # the gap `run` stopped at needs a round
    GAP_SNAPSHOT = 3  # ... and/or a snapshot
    GAP_DONE = 4      # the gap before the next record was handled
    SNAP_N = 5        # snapshot rows in the buffer


POWTAB_MAX = 1 << 20
#: The arrays sized by tracked rows (`rec`, `row_slot`) and the flat index array start with room for up
#: to this many bytes each (never more than the tables could ever need). They are fresh anonymous memory,
#: which the kernel materialises a page at a time when it is first written, so the room costs address
#: space, not memory: resident memory still follows the rows seen and the index buckets used, while the
#: copies of doubling happen only past the reservation (docs/engine.md, "Memory per tracked row").
RESERVE_BYTES = 2 << 30
ROWS_MIN, INDEX_MIN = 1024, 1 << 16
#: A round's parallel ranking passes split the tracked rows into ROUND_BLOCKS blocks (None: one per Numba
#: thread), each of at least ROUND_BLOCK_MIN rows. Results do not depend on the blocks (a test splits tiny
#: traces into many).
ROUND_BLOCKS: int | None = None
ROUND_BLOCK_MIN = 4096
#: Pages the page arrays have room for at the start (they double as pages are mapped; fiitedsim/memory.py
#: checks the start-up arrays fit).
INITIAL_PAGES = 16
#: rec_p[tid, ...] holds a bucket number of one index as int32 (an index of 2**31 buckets would take
#: 16 GiB of implementation memory alone)
POS_DTYPE = np.int32
#: Arrays of at least this many bytes are advised for transparent huge pages (`aligned_zeros`)
HUGE_MIN_BYTES = 4 << 20
HUGE_PAGE = 2 << 20
RECORD_ALIGN = 128
#: How far ahead of the record loop the memory it will write first is faulted in on a helper thread
#: (`engine/populate.py`): tracked rows past the last one, and index entries past the bump pointer
#: (at least twice the largest index, room for its next doubling)
POPULATE_ROWS = 1 << 18
POPULATE_ENTRIES = 1 << 20

State = namedtuple("State", [
    "sc", "cnt", "ctl",                                  # store scalars, the policy's counts, loop control
    "ip", "fp", "tabs", "wpos", "powtab",                # parameters, per-table columns, decay table
    "trk", "rec", "rec_u", "rec_p", "row_slot",          # row tracker; one record per tracked row (three
    "rank", "dim_hist",                                  #   views of it), the slots of its chunks, a round's
                                                         #   scratch (rank summaries, rows to free)
    "ix", "ix_meta", "ix_free",                          # hash indices: entries, per-index columns, free regions
    "pools", "pool_theta", "page_live", "page_free_bits", "lifo", "slot_stamp",  # physical pools
    "snap_i", "snap_f",                                  # the time series' buffers (metrics.Series)
    "ahead",                                             # the record loop's prefetch stages' results
    "round_hist", "cand_bits", "cand_keys", "cand_k",    # a round's scratch: histograms, candidates
])


def aligned_zeros(shape, dtype, align: int = RECORD_ALIGN) -> np.ndarray:
    """A zeroed array whose data starts at a multiple of `align` bytes.

    Large arrays are fresh anonymous mappings (zero pages, resident only once written) advised for
    transparent huge pages where the system offers them (`madvise` mode): the engine's big arrays are
    read at random, and 2 MiB pages take most of the page faults and TLB misses out of replay
    (docs/engine.md). Raises MemoryError when the system refuses the address space."""
    dtype = np.dtype(dtype)
    shape = tuple(int(x) for x in (shape if isinstance(shape, tuple) else (shape,)))
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes >= HUGE_MIN_BYTES and hasattr(mmap, "MAP_ANONYMOUS"):
        align = max(align, HUGE_PAGE)
        try:
            m = mmap.mmap(-1, nbytes + align, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except (OSError, OverflowError, ValueError) as exc:
            raise MemoryError(f"cannot map {nbytes} bytes") from exc
        if hasattr(mmap, "MADV_HUGEPAGE"):
            try:
                m.madvise(mmap.MADV_HUGEPAGE)
            except OSError:
                pass
        raw = np.frombuffer(m, np.uint8)
    else:
        raw = np.zeros(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _grown(a: np.ndarray, axis: int, n: int) -> np.ndarray:
    """A copy of `a` enlarged to length n along `axis`, zero-filled (and aligned as `aligned_zeros`)."""
    shape = list(a.shape)
    shape[axis] = n
    out = aligned_zeros(tuple(shape), a.dtype)
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
        arrays = [aligned_zeros((n, *tail), dtype) for tail, dtype in zip(tails, dtypes)]
    except MemoryError:
        arrays = [aligned_zeros((floor, *tail), dtype) for tail, dtype in zip(tails, dtypes)]
    return arrays


def record_views(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rec_u, rec_p): the records as float64 words (the utilities) and as int32 halves (the buckets)."""
    return rec.view(np.float64), rec.view(POS_DTYPE)


@numba.njit(cache=True)
def fill_powtab(gamma, out, start):
    """out[n] = gamma ** float64(n): the same libm pow the kernels would call (DESIGN 2)."""
    for n in range(start, out.size):
        out[n] = gamma ** np.float64(n)


class EngineState:
    """Owns the arrays of one replay of a chunk-storing policy and grows them on request."""

    def __init__(self, tables: list[TableSpec], cfg: ReplayConfig, has_grad: bool, has_log: bool,
                 snapshot_capacity: int = 4096, whole_rows: bool = False):
        cfg = resolve_layout(tables, cfg)  # `--page-bytes auto`, `--index-initial auto`: the run's layout
        self.tables, self.cfg = tables, cfg
        self.layout = layout = PoolLayout.of(tables, cfg.page_bytes)
        k_max = max(t.chunks for t in tables)
        n_pools = len(layout.chunk_bytes)
        self.k_max, self.n_pools = k_max, n_pools
        self.rl = rl = RecordLayout(k_max)
        ip = np.zeros(len(Param), np.int64)
        ip[Param.INTERVAL] = cfg.interval
        ip[Param.REPORT_EVERY] = cfg.report_every
        ip[Param.PAGE_BYTES] = cfg.page_bytes
        ip[Param.BUDGET] = cfg.budget_bytes
        ip[Param.COVERS_ALL] = cfg.budget_covers == "all"
        ip[Param.LIFO] = cfg.allocator == "lifo"
        ip[Param.HAS_GRAD] = has_grad and not has_log
        ip[Param.HAS_LOG] = has_log
        ip[Param.COUNT_ACCESSES] = cfg.count_accesses
        ip[Param.ENTRY_BYTES] = cfg.index_entry_bytes
        ip[Param.KMAX] = k_max
        ip[Param.NPOOLS] = n_pools
        ip[Param.DENSE_TOTAL] = sum(layout.dense_bytes)
        ip[Param.TOTAL_ROWS] = sum(t.rows for t in tables)
        ip[Param.WHOLE_ROWS] = whole_rows
        ip[Param.R_KEY], ip[Param.R_LAST], ip[Param.R_D], ip[Param.R_POS] = rl.key, rl.last, rl.d, rl.pos
        ip[Param.ROUND_BLOCKS] = ROUND_BLOCKS or numba.get_num_threads()
        ip[Param.ROUND_BLOCK_MIN] = ROUND_BLOCK_MIN
        sc = np.zeros(len(Scalar), np.int64)
        cnt = np.zeros(N_COUNTS, np.int64)
        caps = np.array([[cfg.index_capacity(t, k) if k < spec.chunks else 0 for k in range(k_max)]
                         for t, spec in enumerate(tables)],
                        np.int64).reshape(-1)  # chunk positions a table does not have get no index
        ix_meta = np.zeros((caps.size, len(Ix)), np.int64)
        ix_meta[:, Ix.CAP] = caps
        ix_meta[:, Ix.OFF] = np.cumsum(caps) - caps
        sc[Scalar.IX_BUMP] = sc[Scalar.IX_CAP_TOTAL] = int(caps.sum())
        sc[Scalar.IX_CAP_MAX] = int(caps.max())
        cnt[Count.INDEX_PEAK] = cnt[Count.TOTAL_PEAK] = sc[Scalar.IX_CAP_TOTAL] * cfg.index_entry_bytes
        flat = max(4 * int(caps.sum()), INDEX_MIN)
        ix, = _zeros_reserving([()], [np.int64], flat,
                               sum(4 * self._index_cap_bound(spec.rows, cfg.index_capacity(t, k))
                                   for t, spec in enumerate(tables) for k in range(spec.chunks)))
        # a slot address is below the pool's chunk count + one page (a page is mapped only when all mapped
        # pages are full, taking the lowest unmapped number), so int32 slots do for pools under 2**31 chunks
        slot_bound = max(sum(t.rows * t.chunks for t, p in zip(tables, layout.pool_of_table) if p == pool)
                         + spp for pool, spp in enumerate(layout.slots_per_page))
        self.slot_dtype = np.int32 if slot_bound < 2**31 else np.int64
        rec, row_slot, rank = _zeros_reserving([(rl.words,), (k_max,), ()], [np.int64, self.slot_dtype, np.uint64],
                                               ROWS_MIN, sum(t.rows for t in tables))
        rec_u, rec_p = record_views(rec)
        pools = np.zeros((n_pools, len(PoolCol)), np.int64)
        pools[:, PoolCol.SPP] = layout.slots_per_page
        pools[:, PoolCol.DENSE] = layout.dense_bytes
        fp = np.zeros(len(FParam), np.float64)
        fp[FParam.GAMMA], fp[FParam.MAX_LOAD] = cfg.gamma, cfg.max_load
        tabs = np.array([[t.chunks, pool, cfg.meta_bytes_for(t), t.chunk]  # Tab columns
                         for t, pool in zip(tables, layout.pool_of_table)], np.int64)
        pages = INITIAL_PAGES
        self.series = Series(k_max, snapshot_capacity)
        self.st = State(
            sc=sc, cnt=cnt, ctl=np.zeros(len(Loop), np.int64), ip=ip, fp=fp, tabs=tabs,
            wpos=np.array([cfg.position_weight ** float(k) for k in range(k_max)], np.float64),
            powtab=self._powtab(np.zeros(0), 1024),
            trk=aligned_zeros(2 * ROWS_MIN, np.int64), rec=rec, rec_u=rec_u, rec_p=rec_p, row_slot=row_slot,
            rank=rank,
            dim_hist=np.zeros(k_max + 1, np.int64),
            ix=ix, ix_meta=ix_meta, ix_free=np.full(64, -1, np.int64),
            pools=pools, pool_theta=np.zeros(n_pools, np.float64),
            page_live=np.full((n_pools, pages), store.UNMAPPED, np.int64),
            page_free_bits=np.zeros((n_pools, pages, (max(layout.slots_per_page) + 63) // 64 + 1), np.uint64),
            lifo=np.zeros((n_pools, self._lifo_len(pages), 2), np.int64),
            slot_stamp=np.zeros((n_pools, self._slot_len(pages)), np.int64),
            snap_i=self.series.ints, snap_f=self.series.floats,
            ahead=np.zeros((64, 3), np.int64),
            round_hist=np.zeros((max(1, ip[Param.ROUND_BLOCKS]), 1 << 16), np.int64),
            cand_bits=np.zeros(0, np.uint64), cand_keys=np.zeros(0, np.int64), cand_k=np.zeros(0, np.int64),
        )
        self._populated_rows = self._populated_entries = 0

    # ---- sizes -------------------------------------------------------------
    def _index_cap_bound(self, rows: int, initial: int) -> int:
        """The largest capacity an index of a table of `rows` rows starting at `initial` can reach (all rows
        resident)."""
        cap = initial
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
    def round_scratch(self) -> None:
        """After a round: room for as many cut-bucket candidates as the most a round has had (with a margin),
        so the next rounds reuse it instead of clearing fresh memory."""
        st = self.st
        need = int(st.sc[Scalar.ROUND_ROOM])
        if need > st.cand_bits.size:
            n = need + need // 2
            self.st = st._replace(cand_bits=np.zeros(n, np.uint64), cand_keys=np.zeros(n, np.int64),
                                  cand_k=np.zeros(n, np.int64))

    def populate_ahead(self) -> None:
        """Have the memory the record loop writes next faulted in on a helper thread (`populate.ahead`):
        the records, slots and rank summaries of the next POPULATE_ROWS new rows, and the index entries past
        the bump pointer where the next doublings go."""
        st = self.st
        n = int(st.sc[Scalar.TRACKED])
        target = min(n + POPULATE_ROWS, st.rec.shape[0])
        if target > self._populated_rows:
            start = max(self._populated_rows, n)
            for a in (st.rec, st.row_slot, st.rank):
                populate.ahead(a, start * a.strides[0], target * a.strides[0])
            self._populated_rows = target
        bump = int(st.sc[Scalar.IX_BUMP])
        target = min(bump + max(POPULATE_ENTRIES, 4 * int(st.sc[Scalar.IX_CAP_MAX])), st.ix.shape[0])
        if target > self._populated_entries:
            start = max(self._populated_entries, bump)
            populate.ahead(st.ix, start * st.ix.itemsize, target * st.ix.itemsize)
            self._populated_entries = target

    def ensure_steps(self, max_step: int) -> None:
        """Decay factors for gaps up to max_step come from a table (bit-identical to pow)."""
        need = min(max_step + 1, POWTAB_MAX)
        if need > self.st.powtab.size:
            size = min(max(need, 2 * self.st.powtab.size), POWTAB_MAX)
            self.st = self.st._replace(powtab=self._powtab(self.st.powtab, size))

    def grow(self, status: int) -> None:
        st = self.st
        if status == NEED_ROWS:  # the records are full, or the tracker map would pass half full
            need = int(st.sc[Scalar.TRACKED]) + 1
            if need > store.MAX_TRACKED:
                raise RuntimeError(f"more than {store.MAX_TRACKED} tracked rows (ids are 32-bit in the indices)")
            if need > st.rec.shape[0]:
                cap = 2 * st.rec.shape[0]
                rec = _grown(st.rec, 0, cap)
                rec_u, rec_p = record_views(rec)
                st = st._replace(rec=rec, rec_u=rec_u, rec_p=rec_p, row_slot=_grown(st.row_slot, 0, cap),
                                 rank=aligned_zeros(cap, np.uint64))
                self._populated_rows = 0
            if 2 * need > st.trk.shape[0]:
                trk = aligned_zeros(2 * st.trk.shape[0], np.int64)
                store.tracker_rebuild(trk, st.rec, self.rl.key, need - 1)
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
        """Copy live index regions into a fresh flat array with room for the next doublings."""
        st = self.st
        caps = st.ix_meta[:, Ix.CAP]
        live = int(caps.sum())
        if 2 * int(st.sc[Scalar.IX_CAP_MAX]) > np.iinfo(POS_DTYPE).max:
            raise RuntimeError("a hash index would exceed 2**31 buckets (records hold int32 buckets)")
        size = max(4 * live + 4 * self.k_max * int(st.sc[Scalar.IX_CAP_MAX]), st.ix.shape[0])
        ix = aligned_zeros(size, np.int64)
        pos = 0
        for i in range(caps.size):
            cap, src = int(caps[i]), int(st.ix_meta[i, Ix.OFF])
            ix[pos:pos + cap] = st.ix[src:src + cap]
            st.ix_meta[i, Ix.OFF] = pos
            pos += cap
        st.sc[Scalar.IX_BUMP] = pos
        st.ix_free[:] = -1
        self.st = st._replace(ix=ix)
        self._populated_entries = 0

    def flush_snapshots(self) -> None:
        """Keep the snapshot rows written so far; the kernels write from row 0 again."""
        self.series.flush(int(self.st.ctl[Loop.SNAP_N]))
        self.st.ctl[Loop.SNAP_N] = 0

    def snapshot_room(self) -> None:
        """Flush the snapshot buffer if it is full (before a kernel that may take a snapshot)."""
        if self.st.ctl[Loop.SNAP_N] >= self.series.capacity:
            self.flush_snapshots()

    # ---- inspection (tests, invariant checks, the trainer) -----------------
    def prefixes(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(packed (table, row) keys, resident prefix d) of the first n tracked rows (all by default), as
        copies (int64)."""
        st = self.st
        n = int(st.sc[Scalar.TRACKED]) if n is None else n
        return st.rec[:n, self.rl.key].copy(), st.rec[:n, self.rl.d].copy()

    def tracked(self):
        """(t, r) -> (utilities tuple, last step, resident prefix d) for every tracked row."""
        st, rl = self.st, self.rl
        out = {}
        for tid in range(int(st.sc[Scalar.TRACKED])):
            key, last, d = int(st.rec[tid, rl.key]), int(st.rec[tid, rl.last]), int(st.rec[tid, rl.d])
            t, r = key >> store.ROW_BITS, key & store.ROW_MASK
            out[(t, r)] = (tuple(float(x) for x in st.rec_u[tid, :self.tables[t].chunks]), last, d)
        return out

    def index_contents(self):
        """(t, k) -> (capacity, bucket list with row or None, {row: slot})."""
        st, rl = self.st, self.rl
        out = {}
        for t, spec in enumerate(self.tables):
            for k in range(spec.chunks):
                off, cap, _ = (int(x) for x in st.ix_meta[t * self.k_max + k])
                layout, mapping = [], {}
                for e in st.ix[off:off + cap]:
                    if e == store.EMPTY:
                        layout.append(None)
                        continue
                    tid = (int(e) & 0xFFFFFFFF) - 1
                    row = int(st.rec[tid, rl.key]) & store.ROW_MASK
                    layout.append(row)
                    mapping[row] = int(st.row_slot[tid, k])
                out[(t, k)] = (cap, layout, mapping)
        return out

    def mapped_pages(self):
        st = self.st
        return [sorted(int(p) for p in np.nonzero(st.page_live[pool] != store.UNMAPPED)[0])
                for pool in range(self.n_pools)]

    def check_invariants(self) -> None:
        """DESIGN invariants: one slot per resident chunk, no slot owned twice,
        live chunks == sum of row dimensions == index entries, mapped pages within the budget;
        and the engine's own: every index entry names its row's tid and hash, every cached bucket is
        where the index holds the chunk, the tracker finds every tracked row."""
        st, rl = self.st, self.rl
        rows = self.tracked()
        index = self.index_contents()
        owners: dict[tuple[int, int], tuple[int, int, int]] = {}
        entries = 0
        for (t, k), (_, _, mapping) in index.items():
            assert int(st.ix_meta[t * self.k_max + k, Ix.COUNT]) == len(mapping)
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
            h = int(store.splitmix64(np.uint64(r)))
            for k in range(self.tables[t].chunks):
                assert (r in index[(t, k)][2]) == (k < d), f"row {(t, r)}: resident set is not the prefix 0..{d - 1}"
                if k < d:  # the engine's cached bucket of each resident chunk is where the index holds it
                    bucket = int(st.rec_p[tid, rl.pos + k])
                    assert index[(t, k)][1][bucket] == r, f"row {(t, r)} chunk {k}: cached bucket {bucket} is stale"
                    e = int(st.ix[int(st.ix_meta[t * self.k_max + k, Ix.OFF]) + bucket]) & 0xFFFFFFFFFFFFFFFF
                    assert e == ((h & 0xFFFFFFFF) << 32) | (tid + 1), f"row {(t, r)} chunk {k}: entry {e:#x}"
            key = (t << store.ROW_BITS) | r
            assert store.tracker_find(st.trk, st.rec, rl.key, key) == tid, f"row {(t, r)}: tracker"
        regions = sorted((int(off), int(cap)) for off, cap, _ in st.ix_meta if cap)
        for (off, cap), (next_off, _) in zip(regions, regions[1:] + [(int(st.sc[Scalar.IX_BUMP]), 0)]):
            assert off + cap <= next_off, f"index region at {off} overlaps the next one or the bump pointer"
        live = int(st.sc[Scalar.LIVE_TOTAL])
        assert live == dims == entries == int(st.sc[Scalar.IX_COUNT_TOTAL]), (live, dims, entries)
        mapped = st.page_live != store.UNMAPPED
        assert live == int(st.page_live[mapped].sum())
        assert int(mapped.sum()) == int(st.sc[Scalar.MAPPED_TOTAL])
        if self.cfg.budget_covers == "payload":
            caps = self.layout.page_caps(self.cfg.budget_bytes, 0, self.cfg.page_bytes)
            for pool in range(self.n_pools):
                n = int(st.pools[pool, PoolCol.MAPPED])
                assert n <= caps[pool], f"pool {pool}: {n} pages mapped over the cap {caps[pool]}"
        hist = np.bincount(st.rec[:len(rows), rl.d], minlength=self.k_max + 1)
        assert np.array_equal(hist, st.dim_hist), "dimension histogram out of date"
