"""`uniform-row`: full-dimension rows, a pseudo-random fraction of each table kept (DESIGN 4).

Table t keeps exactly m_t = min(rows_t, floor(B * rows_t / dense)) rows (B the payload budget, after the
remap with `--budget-covers all`): row r is kept when perm_t(r) < m_t, where perm_t is a keyed pseudo-random
bijection of [0, rows_t), a 4-round Feistel network with cycle walking (`permute`). So the payload is exact
in O(1) per table, sum_t m_t * row bytes <= B, and deciding a lookup costs O(1) (fewer than 4 Feistel
evaluations on average), whatever the table's size: cost follows the rows looked up, not the rows there are.
Kept rows are stored dense; the remap from row id to dense position costs an int64 per row of the table
(index bytes), no metadata. docs/semantics.md ("Baselines") has the formulas.
"""
from __future__ import annotations

import numba
import numpy as np

from ..engine.hashmap import splitmix64
from .static import StaticPolicy

REMAP_BYTES_PER_ROW = 8
#: splitmix64's increment: round key i of table t is splitmix64((4t + i + 1) * GOLDEN), the splitmix64 generator
GOLDEN = 0x9E3779B97F4A7C15
ROUNDS = 4


def half_bits(rows: int) -> int:
    """h: the Feistel network permutes [0, 2**(2h)), the smallest such domain holding [0, rows) (h >= 1)."""
    return max(1, -(-(rows - 1).bit_length() // 2))


def round_keys(table: int) -> np.ndarray:
    """The ROUNDS round keys of table `table` (uint64)."""
    out = np.empty(ROUNDS, np.uint64)
    for i in range(ROUNDS):
        out[i] = _splitmix(((ROUNDS * table + i + 1) * GOLDEN) % 2**64)
    return out


def _splitmix(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) % 2**64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) % 2**64
    return x ^ (x >> 31)


@numba.njit(cache=True, inline="always")
def feistel(x, h, keys):
    """One pass of the network over [0, 2**(2h)): halves (L, R) = (x >> h, x & mask); per round
    (L, R) <- (R, L ^ (splitmix64(R ^ key) & mask)); then (L << h) | R."""
    hh = np.uint64(h)
    mask = (np.uint64(1) << hh) - np.uint64(1)
    left = np.uint64(x) >> hh
    right = np.uint64(x) & mask
    for i in range(keys.size):
        left, right = right, left ^ (splitmix64(right ^ keys[i]) & mask)
    return (left << hh) | right


@numba.njit(cache=True)
def permute(x, rows, h, keys):
    """perm(x) for x in [0, rows): the network applied until the value falls in [0, rows) (cycle walking), a
    bijection of [0, rows) because the network is one of its larger domain."""
    y = feistel(x, h, keys)
    n = np.uint64(rows)
    while y >= n:
        y = feistel(y, h, keys)
    return y


@numba.njit(cache=True)
def kept_mask(table, row, tab_rows, tab_h, tab_keys, tab_kept):
    """Whether each lookup's row is kept: perm_t(r) < m_t."""
    out = np.empty(row.size, np.bool_)
    for i in range(row.size):
        t = table[i]
        m = tab_kept[t]
        if m >= tab_rows[t]:
            out[i] = True
        elif m == 0:
            out[i] = False
        else:
            out[i] = permute(row[i], tab_rows[t], tab_h[t], tab_keys[t]) < np.uint64(m)
    return out


def kept_rows(rows: int, budget: int, dense: int) -> int:
    """m = min(rows, floor(budget * rows / dense)) in exact integer arithmetic."""
    return min(rows, max(0, budget) * rows // dense)


class UniformRow(StaticPolicy):
    name = "uniform-row"
    sizing = "tables"
    trainable = False

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        dense = sum(t.dense_bytes for t in tables)
        self.index_bytes = REMAP_BYTES_PER_ROW * sum(t.rows for t in tables)
        budget = cfg.budget_bytes - (self.index_bytes if cfg.budget_covers == "all" else 0)
        self.fraction = min(1.0, max(0, budget) / dense)
        kept = [kept_rows(t.rows, budget, dense) for t in tables]
        self.tab_rows = np.array([t.rows for t in tables], np.int64)
        self.tab_kept = np.array(kept, np.int64)
        self.tab_h = np.array([half_bits(t.rows) for t in tables], np.int64)
        self.tab_keys = np.stack([round_keys(i) for i in range(len(tables))])
        self.payload_bytes = sum(k * t.dim * t.dtype_bytes for k, t in zip(kept, tables))
        self.dim_hist = [0] * (self.k_max + 1)
        for k, t in zip(kept, tables):
            self.dim_hist[t.chunks] += k
            self.dim_hist[0] += t.rows - k

    def resident_dims(self, table, row) -> np.ndarray:
        keep = kept_mask(np.ascontiguousarray(table, np.int64), np.ascontiguousarray(row, np.int64),
                         self.tab_rows, self.tab_h, self.tab_keys, self.tab_kept)
        return np.where(keep, self.tab_d[table], 0)
