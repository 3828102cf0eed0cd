"""`uniform-dim`: every row of every table keeps the same D' leading dimensions, the most that fit (DESIGN 4).

This is what a uniformly pruned model is: an embedding dimension D' smaller
than D, any integer 0..D (not a multiple of C). A chunk-quantized version
would keep nothing below 1/K of the dense size, which is a straw man, not a
baseline anyone would train.

Over the tables as given (a replay, or training with `--rows N` hashed tables)
every row of every table is stored, so D' follows the table sizes. Over
vocabulary tables (training with `--rows auto`) the trainer gives the lookups
of the sizing window (`set_frequencies`): the rows the window looked up are
stored with D' dimensions each, D' over those rows, and rows first seen later
read nothing, as a model whose vocabulary was built from that window.
"""
from __future__ import annotations

import numpy as np

from ..engine.rowset import RowMap
from .static import StaticPolicy, chunk_hist


def uniform_dims(tables, budget_bytes: int, rows=None) -> int:
    """Largest D' in 0..max D whose dense size sum(rows_t * min(D', D_t) * dtype_bytes) fits the budget; rows_t
    is the table's row count, or `rows[t]` (the rows stored) when given."""
    rows = [t.rows for t in tables] if rows is None else [int(n) for n in rows]
    best = 0
    for dims in range(max(t.dim for t in tables) + 1):
        if sum(n * min(dims, t.dim) * t.dtype_bytes for n, t in zip(rows, tables)) <= budget_bytes:
            best = dims
    return best


class UniformDim(StaticPolicy):
    name = "uniform-dim"
    sizing = "tables"
    vocabulary_window = True

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.known: RowMap | None = None    # the rows stored, when sized from a window's rows
        self._size([t.rows for t in tables])
        self.table_dims = np.minimum(self.dims, self.tab_d)   # every row of a table alike

    def _size(self, stored: list[int]) -> None:
        """D', the payload and the histogram when table t stores `stored[t]` rows (the rest read nothing)."""
        tables = self.tables
        self.dims = uniform_dims(tables, self.cfg.budget_bytes, stored)
        self.payload_bytes = sum(n * min(self.dims, t.dim) * t.dtype_bytes for n, t in zip(stored, tables))
        pairs = list(enumerate(zip(tables, stored)))
        self.dim_hist = chunk_hist(tables, self.k_max, [(i, min(self.dims, t.dim), n) for i, (t, n) in pairs]
                                   + [(i, 0, t.rows - n) for i, (t, n) in pairs])

    def set_frequencies(self, lookups: RowMap) -> None:
        """Store the rows the sizing window looked up (vocabulary tables; module docstring)."""
        table, row, _ = lookups.items()
        self._size([int(n) for n in np.bincount(table, minlength=len(self.tables))])
        self.known = RowMap(len(self.tables))
        self.known.put(table, row, np.minimum(self.dims, self.tab_d[table]))
        self.table_dims = None   # per row: stored or not

    def resident_dims(self, table, row) -> np.ndarray:
        if self.known is not None:
            return self.known.get(np.ascontiguousarray(table, np.int64), np.ascontiguousarray(row, np.int64))
        return np.minimum(self.dims, self.tab_d[table])
