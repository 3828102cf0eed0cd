"""`full`: the dense table, nothing pruned: the memory reference (DESIGN 4)."""
from __future__ import annotations

import numpy as np

from .static import StaticPolicy


class Full(StaticPolicy):
    name = "full"

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.payload_bytes = sum(t.dense_bytes for t in tables)
        self.dim_hist = [0] * self.k_max + [sum(t.rows for t in tables)]
        if any(t.chunks != self.k_max for t in tables):  # rows of short tables sit at their own K
            self.dim_hist = [0] * (self.k_max + 1)
            for t in tables:
                self.dim_hist[t.chunks] += t.rows

    def resident(self, batch) -> np.ndarray:
        return self.tab_k[batch.table]
