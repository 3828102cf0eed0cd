"""`full`: the dense table, nothing pruned: the memory reference (DESIGN 4)."""
from __future__ import annotations

import numpy as np

from .static import StaticPolicy, chunk_hist


class Full(StaticPolicy):
    name = "full"
    sizing = "dense"
    budget_independent = True

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.payload_bytes = sum(t.dense_bytes for t in tables)
        self.table_dims = self.tab_d
        self.dim_hist = chunk_hist(tables, self.k_max, ((i, t.dim, t.rows) for i, t in enumerate(tables)))

    def resident_dims(self, table, row) -> np.ndarray:
        return self.tab_d[table]
