"""`uniform-dim`: every row of every table keeps the same d chunks, the largest d that fits (DESIGN 4)."""
from __future__ import annotations

import numpy as np

from .static import StaticPolicy


def uniform_chunks(tables, budget_bytes: int) -> int:
    """Largest d whose dense size sum(rows * min(d, K) * C * dtype_bytes) fits the budget."""
    best = 0
    for d in range(max(t.chunks for t in tables) + 1):
        if sum(t.rows * min(d, t.chunks) * t.chunk_bytes for t in tables) <= budget_bytes:
            best = d
    return best


class UniformDim(StaticPolicy):
    name = "uniform-dim"

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.d = uniform_chunks(tables, cfg.budget_bytes)
        self.payload_bytes = sum(t.rows * min(self.d, t.chunks) * t.chunk_bytes for t in tables)
        self.dim_hist = [0] * (self.k_max + 1)
        for t in tables:
            self.dim_hist[min(self.d, t.chunks)] += t.rows

    def resident(self, batch) -> np.ndarray:
        return np.minimum(self.d, self.tab_k[batch.table])
