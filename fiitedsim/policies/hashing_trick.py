"""`hash`: the hashing trick (DESIGN 4): rows share full-dimension vectors in a smaller table.

Feature hashing (Weinberger et al., "Feature Hashing for Large Scale
Multitask Learning", ICML 2009) is what production recommenders do when a
categorical space is too large: hash every id into a fixed number of rows and
let the ids that collide share one embedding. Table t gets as many
full-dimension rows as its share of the budget holds,

    m_t = min(rows_t, floor(budget * dense_t / dense_total) // row_bytes_t)

(the budget split across tables by dense size, as pools split it), and row r
reads bucket splitmix64(r) mod m_t (the row itself when m_t = rows_t: nothing
to share). Memory is m_t full rows per table, no index and no metadata.

A lookup *collides* when its bucket also serves another row seen so far (a
row looked up earlier in the trace, or in this lookup's own step). Its vector
then is not its own, so it counts as a miss at every granularity: hit rates
count the lookups that read their own row's vector, and `collision_share`
(collisions / lookups) is the figure reviewers ask for. The bookkeeping
(each used bucket's first row, and whether another row has joined it) is
implementation memory, like the engine's row tracker.

Over vocabulary tables (training with `--rows auto`) the trainer gives the
lookups of the sizing window (`set_frequencies`). The rows it looked up are
the ids hashed, K_t of them in table t; every table first gets one full row,
and the rest of the budget is split by the dense size of those rows:

    m_t = min(K_t, 1 + floor((budget - sum_u row_bytes_u) * K_t * row_bytes_t / sum_u K_u * row_bytes_u)
                       // row_bytes_t)

(so a field of three values is not starved by a field of thousands, and the
total never passes the budget). A row the window never saw reads nothing, as
an id outside the vocabulary the model was sized for. A budget below one full
row of every table is refused.
"""
from __future__ import annotations

import numba
import numpy as np

from ..config import budget_name, dense_bytes
from ..engine.hashmap import splitmix64
from ..engine.rowset import RowMap, SharedRows
from ..errors import InputError
from .static import StaticPolicy, chunk_hist


def bucket_counts(tables, budget_bytes: int) -> list[int]:
    """m_t: full-dimension rows of table t within its dense share of the budget (at most its rows)."""
    dense = dense_bytes(tables)
    return [min(t.rows, (budget_bytes * t.dense_bytes // dense) // (t.dim * t.dtype_bytes)) for t in tables]


def window_bucket_counts(tables, budget_bytes: int, known: list[int]) -> list[int]:
    """m_t over vocabulary tables whose sizing window looked up known[t] rows of table t (module docstring)."""
    row_bytes = [t.dim * t.dtype_bytes for t in tables]
    rest = budget_bytes - sum(row_bytes)
    dense = sum(k * b for k, b in zip(known, row_bytes))
    return [min(k, 1 + (rest * k * b // dense) // b) if dense else 0 for k, b in zip(known, row_bytes)]


@numba.njit(cache=True)
def bucket_of(row, n_buckets, rows):
    """The shared row that row `row` reads: itself if the table keeps every row, else splitmix64(row) mod m."""
    if n_buckets >= rows:
        return np.int64(row)
    return np.int64(splitmix64(row) % np.uint64(n_buckets))


@numba.njit(cache=True)
def buckets(table, row, n_buckets, rows, out):
    for i in range(row.size):
        out[i] = bucket_of(row[i], n_buckets[table[i]], rows[table[i]])


class HashingTrick(StaticPolicy):
    name = "hash"
    sizing = "tables"
    vocabulary_window = True

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.known: RowMap | None = None   # the rows hashed, when sized from a window's rows
        self._size(bucket_counts(tables, cfg.budget_bytes), [t.rows for t in tables])
        self.shared = SharedRows(len(tables))

    def _size(self, n_buckets: list[int], hashed: list[int]) -> None:
        """Table t keeps n_buckets[t] full rows for the hashed[t] rows that read one (the others read nothing)."""
        tables = self.tables
        self.n_buckets = np.array(n_buckets, np.int64)
        self.tab_rows = np.array(hashed, np.int64)   # m_t >= this: every hashed row keeps its own vector
        self.payload_bytes = int(sum(int(m) * t.dim * t.dtype_bytes for m, t in zip(self.n_buckets, tables)))
        # every hashed row reads a full-dimension vector (its own or a shared one)
        pairs = list(enumerate(zip(tables, hashed)))
        self.dim_hist = chunk_hist(tables, self.k_max, [(i, t.dim, int(n)) for i, (t, n) in pairs]
                                   + [(i, 0, t.rows - int(n)) for i, (t, n) in pairs])

    def set_frequencies(self, lookups: RowMap) -> None:
        """Hash the rows the sizing window looked up (vocabulary tables; module docstring)."""
        table, row, _ = lookups.items()
        known = [int(n) for n in np.bincount(table, minlength=len(self.tables))]
        self._size(window_bucket_counts(self.tables, self.cfg.budget_bytes, known), known)
        self.known = RowMap(len(self.tables))
        self.known.put(table, row, np.ones(table.size, np.int64))

    @classmethod
    def check_budget(cls, tables, cfg, vocabulary: bool = False) -> None:
        if vocabulary:  # one full row of every table first (module docstring)
            need = sum(t.dim * t.dtype_bytes for t in tables)
            if cfg.budget_bytes < need:
                raise InputError(f"budget {budget_name(cfg)} ({cfg.budget_bytes} bytes) holds no full row of every "
                                 f"table for hash; the smallest workable budget is {need} bytes "
                                 f"({need / dense_bytes(tables):.6g} of the dense size)")
            return
        empty = [t for t, m in zip(tables, bucket_counts(tables, cfg.budget_bytes)) if m < 1]
        if empty:
            dense = dense_bytes(tables)
            need = max(-(-t.dim * t.dtype_bytes * dense // t.dense_bytes) for t in tables)
            raise InputError(f"budget {budget_name(cfg)} ({cfg.budget_bytes} bytes) holds no full row of table "
                             f"{empty[0].name!r} for hash; the smallest workable budget is {need} bytes "
                             f"({need / dense:.6g} of the dense size)")

    def remap(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The shared row each (table, row) reads: what a trainer stores its vector under."""
        out = np.empty(row.size, np.int64)
        buckets(np.ascontiguousarray(table, np.int64), np.ascontiguousarray(row, np.int64), self.n_buckets,
                self.tab_rows, out)
        return out

    def _known(self, table, row) -> np.ndarray:
        """1 for each lookup of a hashed row, 0 for the others; empty when every row is hashed."""
        if self.known is None:
            return np.zeros(0, np.int64)
        return self.known.get(np.ascontiguousarray(table, np.int64), np.ascontiguousarray(row, np.int64))

    def resident_dims(self, table, row) -> np.ndarray:
        dims = self.tab_d[table]  # every hashed row reads a full vector
        known = self._known(table, row)
        return dims * known if known.size else dims

    def observe(self, batch) -> tuple[np.ndarray, np.ndarray]:
        known = self._known(batch.table, batch.row)
        stored = self.remap(batch.table, batch.row)
        # rows kept whole (m_t at least the rows hashed) and rows not hashed at all share nothing
        plain = self.n_buckets[batch.table] >= self.tab_rows[batch.table]
        stored[plain if not known.size else plain | (known == 0)] = -1
        collided = self.shared.observe(batch.table, batch.row, stored)
        dims = np.where(collided == 1, 0, self.tab_d[batch.table])
        return (dims * known if known.size else dims), collided
