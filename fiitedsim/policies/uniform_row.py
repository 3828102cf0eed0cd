"""`uniform-row`: full-dimension rows, a pseudo-random fraction of each table kept (DESIGN 4).

Row r is kept when splitmix64(r) < floor(f * 2**64), f = budget / dense size
(capped at 1). Kept rows are stored dense; the remap from row id to dense
position costs an int64 per row of the table (index bytes), no metadata.
"""
from __future__ import annotations

import numba
import numpy as np

from ..store import splitmix64
from .static import StaticPolicy

REMAP_BYTES_PER_ROW = 8


@numba.njit(cache=True)
def kept_mask(rows, cut):
    out = np.empty(rows.size, np.bool_)
    for i in range(rows.size):
        out[i] = splitmix64(rows[i]) < cut
    return out


@numba.njit(cache=True)
def count_kept(n_rows, cut):
    kept = 0
    for r in range(n_rows):
        kept += splitmix64(r) < cut
    return kept


def keep_cut(fraction: float) -> np.uint64:
    """floor(f * 2**64) for f in [0, 1], saturated to 2**64 - 1 (every row kept) at f = 1."""
    if fraction >= 1.0:
        return np.uint64(2**64 - 1)
    return np.uint64(int(fraction * 2**64))


class UniformRow(StaticPolicy):
    name = "uniform-row"

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        dense = sum(t.dense_bytes for t in tables)
        self.index_bytes = REMAP_BYTES_PER_ROW * sum(t.rows for t in tables)
        budget = cfg.budget_bytes - (self.index_bytes if cfg.budget_covers == "all" else 0)
        self.fraction = min(1.0, max(0, budget) / dense)
        self.cut = keep_cut(self.fraction)
        kept = [int(count_kept(t.rows, self.cut)) if self.fraction < 1.0 else t.rows for t in tables]
        self.payload_bytes = sum(k * t.dim * t.dtype_bytes for k, t in zip(kept, tables))
        self.dim_hist = [0] * (self.k_max + 1)
        for k, t in zip(kept, tables):
            self.dim_hist[t.chunks] += k
            self.dim_hist[0] += t.rows - k

    def resident_dims(self, table, row) -> np.ndarray:
        if self.fraction >= 1.0:
            return self.tab_d[table]
        return np.where(kept_mask(row, self.cut), self.tab_d[table], 0)
