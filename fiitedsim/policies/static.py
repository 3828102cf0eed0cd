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

import numba
import numpy as np

from ..engine import COUNTER_COLUMNS, GAUGE_COLUMNS, snapshot_columns
from .base import Policy, PolicyResult, finish_summary, snapshots_frame

# sc: the first eight counters of COUNTER_COLUMNS, in that order, then the loop's previous step
(_LOOKUPS, _ROW_HITS, _CHUNK_HITS, _CHUNKS_REQUESTED, _FULL_HITS, _DIM_HITS, _DIMS_REQUESTED,
 _COLLISIONS) = range(8)
N_COUNTS = 8
_PREV, _HAVE_PREV = 8, 9


@numba.njit(cache=True, nogil=True)
def static_run(sc, lk_step, lk_table, lk_dims, lk_collided, tab_c, tab_d, im_step, report_every, snap_steps,
               snap_counts):
    """Count hits of a fixed layout from each lookup's resident dimensions; snapshot at report boundaries."""
    n_lk, n_im = lk_step.size, im_step.size
    i = j = 0
    n_snap = 0
    while i < n_lk or j < n_im:
        is_lookup = i < n_lk and (j >= n_im or lk_step[i] <= im_step[j])
        s = lk_step[i] if is_lookup else im_step[j]
        if sc[_HAVE_PREV] and s // report_every > sc[_PREV] // report_every:
            snap_steps[n_snap] = sc[_PREV]
            snap_counts[n_snap, :] = sc[:N_COUNTS]
            n_snap += 1
        if is_lookup:
            t = lk_table[i]
            dims, c, dim = lk_dims[i], tab_c[t], tab_d[t]
            sc[_LOOKUPS] += 1
            sc[_ROW_HITS] += dims > 0
            sc[_CHUNK_HITS] += dims // c
            sc[_CHUNKS_REQUESTED] += dim // c
            sc[_FULL_HITS] += dims == dim
            sc[_DIM_HITS] += dims
            sc[_DIMS_REQUESTED] += dim
            sc[_COLLISIONS] += lk_collided[i]
            i += 1
        else:
            j += 1
        sc[_PREV] = s
        sc[_HAVE_PREV] = 1
    return n_snap


class StaticPolicy(Policy):
    """A policy with a fixed number of resident dimensions per row and constant memory.

    Subclasses set `payload_bytes`, `index_bytes`, `meta_bytes` and `dim_hist`
    (rows by whole resident chunks) in `__init__` and implement
    `resident_dims(table, row)`: the dimensions a lookup reads, without side
    effects. A policy whose hits depend on what was seen before (`hash`)
    overrides `observe`.
    """

    payload_bytes = index_bytes = meta_bytes = 0
    uses_grad = False
    dim_hist: list[int] = []

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.k_max = max(t.chunks for t in tables)
        self.tab_c = np.array([t.chunk for t in tables], np.int64)
        self.tab_d = np.array([t.dim for t in tables], np.int64)
        self.sc = np.zeros(_HAVE_PREV + 1, np.int64)
        self.snap_steps: list[np.ndarray] = []
        self.snap_counts: list[np.ndarray] = []

    def resident_dims(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def observe(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """(dimensions counted as hits, collided flags) of the batch's lookups, in order."""
        return (np.asarray(self.resident_dims(batch.table, batch.row), np.int64),
                np.zeros(batch.row.size, np.int64))

    def consume(self, batch) -> None:
        steps = np.concatenate((batch.step, batch.imp_step))
        if not steps.size:
            return
        first = int(self.sc[_PREV]) if self.sc[_HAVE_PREV] else int(steps.min())
        bound = min(len(steps), (int(steps.max()) - first) // self.cfg.report_every + 1) + 1
        snap_steps = np.empty(bound, np.int64)
        snap_counts = np.empty((bound, N_COUNTS), np.int64)
        dims, collided = self.observe(batch)
        n = static_run(self.sc, batch.step, batch.table, dims, collided, self.tab_c, self.tab_d, batch.imp_step,
                       self.cfg.report_every, snap_steps, snap_counts)
        self.snap_steps.append(snap_steps[:n])
        self.snap_counts.append(snap_counts[:n])

    def finish(self) -> PolicyResult:
        steps_parts, counts_parts = list(self.snap_steps), list(self.snap_counts)
        if self.sc[_HAVE_PREV]:  # the final snapshot, after the last record
            steps_parts.append(self.sc[_PREV:_PREV + 1].copy())
            counts_parts.append(self.sc[None, :N_COUNTS].copy())
        steps = np.concatenate(steps_parts) if steps_parts else np.zeros(0, np.int64)
        counts = np.concatenate(counts_parts) if counts_parts else np.zeros((0, N_COUNTS), np.int64)
        columns = snapshot_columns(self.k_max)
        rows = np.zeros((len(steps), len(columns)), np.int64)  # float gauges (all 0.0) as bits: 0
        rows[:, 0] = steps
        rows[:, 1:1 + N_COUNTS] = counts
        g = 1 + len(COUNTER_COLUMNS)
        total = self.payload_bytes + self.index_bytes + self.meta_bytes
        gauges = dict(payload_bytes=self.payload_bytes, index_bytes=self.index_bytes, meta_bytes=self.meta_bytes,
                      total_bytes=total)
        for c, name in enumerate(GAUGE_COLUMNS):
            rows[:, g + c] = gauges.get(name, 0)
        rows[:, g + len(GAUGE_COLUMNS):] = self.dim_hist
        return PolicyResult(summary=self.summary(), snapshots=snapshots_frame(rows, columns))

    def summary(self) -> dict:
        total = self.payload_bytes + self.index_bytes + self.meta_bytes
        zero = ("mapped_pages_final", "live_chunks_final", "allocations", "frees", "rehashes", "denied_full",
                "denied_threshold", "max_probe_length", "searches", "probes", "rounds", "tracked_rows")
        counts = {key: 0 for key in zero}
        counts.update(zip(COUNTER_COLUMNS[:N_COUNTS], (int(x) for x in self.sc[:N_COUNTS])))
        counts.update(
            payload_bytes_peak=self.payload_bytes, payload_bytes_final=self.payload_bytes,
            index_bytes_peak=self.index_bytes, index_bytes_final=self.index_bytes, meta_bytes_final=self.meta_bytes,
            total_bytes_peak=total, total_bytes_final=total, fragmentation_final=0.0, theta_final=0.0,
            dim_hist_final=[int(x) for x in self.dim_hist], index_load_factor_final=0.0,
        )
        return finish_summary(counts)


def chunk_hist(tables, k_max: int, rows_at_dims) -> list[int]:
    """Rows by whole resident chunks: `rows_at_dims` yields (table index, dims, number of rows)."""
    hist = [0] * (k_max + 1)
    for t, dims, n in rows_at_dims:
        hist[dims // tables[t].chunk] += n
    return hist
