"""Shared replay of policies whose layout never changes (`full`, `uniform-dim`, `uniform-row`, `hash`, `mde`).

Such a policy only decides, per lookup, how many leading *dimensions* of the
row are resident (any integer 0..D, not a multiple of C: a uniformly pruned
or mixed-dimension model keeps whole dimensions); memory is constant. The
kernel counts hits from those dimensions and takes snapshots at the same gaps
of the merged record stream as the FIITED engine, so every policy's time
series lines up step for step. Chunk figures count whole resident chunks
(floor(dims / C)); a row hit is any resident dimension (docs/semantics.md,
"Baselines").
"""
from __future__ import annotations

from enum import IntEnum

import numba
import numpy as np

from .. import metrics
from ..engine.loop import crosses, next_is_lookup
from ..metrics import Count, Series
from .base import Policy, PolicyResult


class Ctl(IntEnum):
    """ctl: the loop's previous step, and snapshot rows written."""

    PREV = 0
    HAVE_PREV = 1
    SNAP_N = 2


# Without reference counting (`_nrt=False`, docs/engine.md): the record-stream and hit-counting helpers it
# inlines take arrays, and each call would otherwise pay an incref/decref pair per array.
@numba.njit(cache=True, nogil=True, _nrt=False)
def static_run(cnt, ctl, lk_step, lk_table, lk_dims, lk_collided, tab_dims, chunks_of, tab_k, tab_d, im_step,
               report_every, gi, gf, dim_hist, snap_i, snap_f):
    """Count hits of a fixed layout from each lookup's resident dimensions (lk_dims, or tab_dims[table] when
    lk_dims is empty) and collisions (lk_collided, or none when it is empty); snapshot at report boundaries.
    chunks_of[t, dims] = dims // C_t: whole resident chunks, without a division per lookup."""
    n_lk, n_im = lk_step.size, im_step.size
    per_lookup, collisions = lk_dims.size > 0, lk_collided.size > 0
    i = j = 0
    while i < n_lk or j < n_im:
        is_lookup = next_is_lookup(lk_step, im_step, i, j)
        s = lk_step[i] if is_lookup else im_step[j]
        if ctl[Ctl.HAVE_PREV] and crosses(ctl[Ctl.PREV], s, report_every):
            metrics.write_snapshot(snap_i, snap_f, ctl[Ctl.SNAP_N], ctl[Ctl.PREV], cnt, gi, gf, dim_hist, 0)
            ctl[Ctl.SNAP_N] += 1
        if is_lookup:
            t = lk_table[i]
            dims = lk_dims[i] if per_lookup else tab_dims[t]
            dim = tab_d[t]
            metrics.add_hits(cnt, 1, dims > 0, chunks_of[t, dims], tab_k[t], dims == dim, dims, dim)
            if collisions:
                cnt[Count.COLLISIONS] += lk_collided[i]
            i += 1
        else:
            j += 1
        ctl[Ctl.PREV] = s
        ctl[Ctl.HAVE_PREV] = 1


_NONE = np.zeros(0, np.int64)


class StaticPolicy(Policy):
    """A policy with a fixed number of resident dimensions per row and constant memory.

    Subclasses set `payload_bytes`, `index_bytes`, `meta_bytes` and `dim_hist`
    (rows by whole resident chunks) in `__init__` and implement
    `resident_dims(table, row)`: the dimensions a lookup reads, without side
    effects. One whose every row of a table reads the same dimensions sets
    `table_dims` (per table), and replay then reads no per-lookup array. A policy
    whose hits depend on what was seen before (`hash`) overrides `observe`.
    """

    payload_bytes = index_bytes = meta_bytes = 0
    uses_grad = False
    fixed_layout = True
    dim_hist: list[int] = []
    #: the dimensions every row of table t reads, when they depend on the table only (else None)
    table_dims: np.ndarray | None = None

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.k_max = max(t.chunks for t in tables)
        self.tab_c = np.array([t.chunk for t in tables], np.int64)
        self.tab_d = np.array([t.dim for t in tables], np.int64)
        self.tab_k = np.array([t.chunks for t in tables], np.int64)
        self.chunks_of = np.array([[d // t.chunk for d in range(max(t.dim for t in tables) + 1)] for t in tables],
                                  np.int64)
        self.cnt = np.zeros(metrics.N_COUNTS, np.int64)
        self.ctl = np.zeros(len(Ctl), np.int64)
        self.series = Series(self.k_max)

    def resident_dims(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def observe(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """(dimensions counted as hits, collided flags) of the batch's lookups, in order; an empty array for
        dimensions that depend on the table only (`table_dims`), and for no collisions."""
        if self.table_dims is not None:
            return _NONE, _NONE
        return np.asarray(self.resident_dims(batch.table, batch.row), np.int64), _NONE

    def _gauges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(integer gauges, float gauges, rows by whole resident chunks): constant, as the layout is."""
        gi = np.zeros(metrics.N_INT_GAUGES, np.int64)
        gi[metrics.IntGauge.PAYLOAD_BYTES] = self.payload_bytes
        gi[metrics.IntGauge.INDEX_BYTES] = self.index_bytes
        gi[metrics.IntGauge.META_BYTES] = self.meta_bytes
        gi[metrics.IntGauge.TOTAL_BYTES] = self.payload_bytes + self.index_bytes + self.meta_bytes
        # no pages, live chunks, tracked rows, fragmentation, theta or index load factor: 0
        return gi, np.zeros(metrics.N_FLOAT_GAUGES, np.float64), np.array(self.dim_hist, np.int64)

    def _peaks(self) -> None:
        """The extremes are the constant sizes."""
        total = self.payload_bytes + self.index_bytes + self.meta_bytes
        self.cnt[Count.PAYLOAD_PEAK], self.cnt[Count.INDEX_PEAK] = self.payload_bytes, self.index_bytes
        self.cnt[Count.TOTAL_PEAK] = total

    def consume(self, batch) -> None:
        bound = snapshot_bound(batch, self.ctl[Ctl.PREV] if self.ctl[Ctl.HAVE_PREV] else None, self.cfg.report_every)
        if not bound:
            return
        self.series.reserve(bound)
        self.ctl[Ctl.SNAP_N] = 0
        dims, collided = self.observe(batch)
        tab_dims = self.table_dims if self.table_dims is not None else _NONE
        static_run(self.cnt, self.ctl, batch.step, batch.table, dims, collided, tab_dims, self.chunks_of, self.tab_k,
                   self.tab_d, batch.imp_step, self.cfg.report_every, *self._gauges(), self.series.ints,
                   self.series.floats)
        self.series.flush(int(self.ctl[Ctl.SNAP_N]))

    def _row_now(self, ints: np.ndarray, floats: np.ndarray) -> None:
        gi, gf, hist = self._gauges()
        metrics.write_snapshot(ints, floats, 0, self.ctl[Ctl.PREV], self.cnt, gi, gf, hist, 0)

    def finish(self) -> PolicyResult:
        if self.ctl[Ctl.HAVE_PREV]:  # the final snapshot, after the last record
            self._row_now(self.series.ints, self.series.floats)
            self.series.flush(1)
        return PolicyResult(summary=self.summary(), snapshots=self.series.frame())

    def summary(self) -> dict:
        self._peaks()
        ints = np.zeros((1, self.series.ints.shape[1]), np.int64)
        floats = np.zeros((1, self.series.floats.shape[1]), np.float64)
        self._row_now(ints, floats)
        return metrics.summary(ints[0], floats[0], self.cnt, self.k_max)


def snapshot_bound(batch, prev: int | None, report_every: int) -> int:
    """Room for the snapshots a batch can produce (0: the batch has no record); `prev` is the step of the last
    record before it. Steps never decrease within a stream, so no concatenation is needed."""
    ends = [(x[0], x[-1]) for x in (batch.step, batch.imp_step) if x.size]
    if not ends:
        return 0
    first = int(prev) if prev is not None else int(min(e[0] for e in ends))
    last = int(max(e[1] for e in ends))
    return min(batch.step.size + batch.imp_step.size, (last - first) // report_every + 1) + 1


def chunk_hist(tables, k_max: int, rows_at_dims) -> list[int]:
    """Rows by whole resident chunks: `rows_at_dims` yields (table index, dims, number of rows)."""
    hist = [0] * (k_max + 1)
    for t, dims, n in rows_at_dims:
        hist[dims // tables[t].chunk] += n
    return hist
