"""Shared replay of policies whose layout never changes (`full`, `uniform-dim`, `uniform-row`).

Such a policy only decides, per lookup, how many leading chunks d of the row
are resident; memory is constant. The kernel counts hits from d and takes
snapshots at the same gaps of the merged record stream as the FIITED engine,
so every policy's time series lines up step for step.
"""
from __future__ import annotations

import numba
import numpy as np

from ..engine import COUNTER_COLUMNS, GAUGE_COLUMNS, snapshot_columns
from .base import Policy, PolicyResult, finish_summary, snapshots_frame

_LOOKUPS, _ROW_HITS, _CHUNK_HITS, _CHUNKS_REQUESTED, _FULL_HITS = 0, 1, 2, 3, 4
_PREV, _HAVE_PREV = 5, 6


@numba.njit(cache=True, nogil=True)
def static_run(sc, lk_step, lk_table, lk_d, tab_k, im_step, report_every, snap_steps, snap_counts):
    """Count hits of a fixed layout; write a snapshot at each report boundary between records."""
    n_lk, n_im = lk_step.size, im_step.size
    i = j = 0
    n_snap = 0
    while i < n_lk or j < n_im:
        is_lookup = i < n_lk and (j >= n_im or lk_step[i] <= im_step[j])
        s = lk_step[i] if is_lookup else im_step[j]
        if sc[_HAVE_PREV] and s // report_every > sc[_PREV] // report_every:
            snap_steps[n_snap] = sc[_PREV]
            snap_counts[n_snap, :] = sc[:5]
            n_snap += 1
        if is_lookup:
            d, k = lk_d[i], tab_k[lk_table[i]]
            sc[_LOOKUPS] += 1
            sc[_ROW_HITS] += d > 0
            sc[_CHUNK_HITS] += d
            sc[_CHUNKS_REQUESTED] += k
            sc[_FULL_HITS] += d == k
            i += 1
        else:
            j += 1
        sc[_PREV] = s
        sc[_HAVE_PREV] = 1
    return n_snap


class StaticPolicy(Policy):
    """A policy with a fixed resident prefix per row and constant memory.

    Subclasses set `payload_bytes`, `index_bytes`, `meta_bytes` and `dim_hist`
    in `__init__` and implement `resident(batch)`: d for each lookup.
    """

    payload_bytes = index_bytes = meta_bytes = 0
    uses_grad = False
    dim_hist: list[int] = []

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.k_max = max(t.chunks for t in tables)
        self.tab_k = np.array([t.chunks for t in tables], np.int64)
        self.sc = np.zeros(7, np.int64)
        self.snap_steps: list[np.ndarray] = []
        self.snap_counts: list[np.ndarray] = []

    def resident(self, batch) -> np.ndarray:
        raise NotImplementedError

    def consume(self, batch) -> None:
        steps = np.concatenate((batch.step, batch.imp_step))
        first = int(self.sc[_PREV]) if self.sc[_HAVE_PREV] else int(steps.min())
        bound = min(len(steps), (int(steps.max()) - first) // self.cfg.report_every + 1) + 1
        snap_steps = np.empty(bound, np.int64)
        snap_counts = np.empty((bound, 5), np.int64)
        n = static_run(self.sc, batch.step, batch.table, self.resident(batch).astype(np.int64), self.tab_k,
                       batch.imp_step, self.cfg.report_every, snap_steps, snap_counts)
        self.snap_steps.append(snap_steps[:n])
        self.snap_counts.append(snap_counts[:n])

    def finish(self) -> PolicyResult:
        steps_parts, counts_parts = list(self.snap_steps), list(self.snap_counts)
        if self.sc[_HAVE_PREV]:  # the final snapshot, after the last record
            steps_parts.append(self.sc[_PREV:_PREV + 1].copy())
            counts_parts.append(self.sc[None, :5].copy())
        steps = np.concatenate(steps_parts) if steps_parts else np.zeros(0, np.int64)
        counts = np.concatenate(counts_parts) if counts_parts else np.zeros((0, 5), np.int64)
        columns = snapshot_columns(self.k_max)
        rows = np.zeros((len(steps), len(columns)), np.int64)  # float gauges (all 0.0) as bits: 0
        rows[:, 0] = steps
        rows[:, 1:6] = counts
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
        sc = self.sc
        zero = ("mapped_pages_final", "live_chunks_final", "allocations", "frees", "rehashes", "denied_full",
                "denied_threshold", "max_probe_length", "searches", "probes", "rounds", "tracked_rows")
        counts = {key: 0 for key in zero}
        counts.update(
            payload_bytes_peak=self.payload_bytes, payload_bytes_final=self.payload_bytes,
            index_bytes_peak=self.index_bytes, index_bytes_final=self.index_bytes, meta_bytes_final=self.meta_bytes,
            total_bytes_peak=total, total_bytes_final=total, fragmentation_final=0.0,
            lookups=int(sc[_LOOKUPS]), row_hits=int(sc[_ROW_HITS]), chunk_hits=int(sc[_CHUNK_HITS]),
            chunks_requested=int(sc[_CHUNKS_REQUESTED]), full_hits=int(sc[_FULL_HITS]), theta_final=0.0,
            dim_hist_final=[int(x) for x in self.dim_hist], index_load_factor_final=0.0,
        )
        return finish_summary(counts)
