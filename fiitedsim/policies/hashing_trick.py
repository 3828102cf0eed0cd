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
"""
from __future__ import annotations

import numba
import numpy as np

from ..config import budget_name, dense_bytes
from ..errors import InputError
from ..rowset import RowMap, find_bucket
from ..store import packed_row_key, splitmix64
from .static import StaticPolicy, chunk_hist


def bucket_counts(tables, budget_bytes: int) -> list[int]:
    """m_t: full-dimension rows of table t within its dense share of the budget (at most its rows)."""
    dense = dense_bytes(tables)
    return [min(t.rows, (budget_bytes * t.dense_bytes // dense) // (t.dim * t.dtype_bytes)) for t in tables]


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


@numba.njit(cache=True)
def observe_collisions(keys, owners, table, row, n_buckets, rows, collided):
    """collided[i] = 1 if the bucket of lookup i serves another row seen so far; returns the buckets first used.

    owners holds the first row of each used bucket as row + 1, negated once a second row has joined it.
    """
    added = 0
    for i in range(row.size):
        t, r = table[i], row[i]
        collided[i] = 0
        if n_buckets[t] >= rows[t]:
            continue
        key = packed_row_key(t, bucket_of(r, n_buckets[t], rows[t])) + 1
        b = find_bucket(keys, key)
        if keys[b] == 0:
            keys[b] = key
            owners[b] = r + 1
            added += 1
        elif owners[b] != r + 1:  # another row owns it, or this row owns it and another has joined
            collided[i] = 1
            if owners[b] > 0 and owners[b] != r + 1:
                owners[b] = -owners[b]
    return added


class HashingTrick(StaticPolicy):
    name = "hash"

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.n_buckets = np.array(bucket_counts(tables, cfg.budget_bytes), np.int64)
        self.tab_rows = np.array([t.rows for t in tables], np.int64)
        self.payload_bytes = int(sum(int(m) * t.dim * t.dtype_bytes for m, t in zip(self.n_buckets, tables)))
        # every row reads a full-dimension vector (its own or a shared one)
        self.dim_hist = chunk_hist(tables, self.k_max, ((i, t.dim, t.rows) for i, t in enumerate(tables)))
        self.owners = RowMap(len(tables))

    @classmethod
    def check_budget(cls, tables, cfg) -> None:
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

    def resident_dims(self, table, row) -> np.ndarray:
        return self.tab_d[table]  # every lookup reads a full vector

    def observe(self, batch) -> tuple[np.ndarray, np.ndarray]:
        collided = np.empty(batch.row.size, np.int64)
        self.owners.reserve(batch.row.size)
        self.owners.size += observe_collisions(self.owners.keys, self.owners.values, batch.table, batch.row,
                                               self.n_buckets, self.tab_rows, collided)
        return np.where(collided == 1, 0, self.tab_d[batch.table]), collided
