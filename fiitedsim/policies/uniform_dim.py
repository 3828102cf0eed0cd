"""`uniform-dim`: every row of every table keeps the same D' leading dimensions, the most that fit (DESIGN 4).

This is what a uniformly pruned model is: an embedding dimension D' smaller
than D, any integer 0..D (not a multiple of C). A chunk-quantized version
would keep nothing below 1/K of the dense size, which is a straw man, not a
baseline anyone would train.
"""
from __future__ import annotations

import numpy as np

from .static import StaticPolicy, chunk_hist


def uniform_dims(tables, budget_bytes: int) -> int:
    """Largest D' in 0..max D whose dense size sum(rows * min(D', D) * dtype_bytes) fits the budget."""
    best = 0
    for dims in range(max(t.dim for t in tables) + 1):
        if sum(t.rows * min(dims, t.dim) * t.dtype_bytes for t in tables) <= budget_bytes:
            best = dims
    return best


class UniformDim(StaticPolicy):
    name = "uniform-dim"

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.dims = uniform_dims(tables, cfg.budget_bytes)
        self.table_dims = np.minimum(self.dims, self.tab_d)
        self.payload_bytes = sum(t.rows * min(self.dims, t.dim) * t.dtype_bytes for t in tables)
        self.dim_hist = chunk_hist(tables, self.k_max,
                                   ((i, min(self.dims, t.dim), t.rows) for i, t in enumerate(tables)))

    def resident_dims(self, table, row) -> np.ndarray:
        return np.minimum(self.dims, self.tab_d[table])
