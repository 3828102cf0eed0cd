"""`mde`: mixed-dimension embeddings (DESIGN 4), sized before training from a window of the lookups.

Mixed-dimension embeddings (Ginart, Naumov, Mudigere, Yang, Zou, "Mixed
Dimension Embeddings with Application to Memory-Efficient Recommendation
Systems", arXiv 1909.11810, ISIT 2021) give frequent ids longer vectors than
rare ones: a dimension proportional to popularity ** alpha, alpha in [0, 1]
the "temperature" (DLRM's reference code, `--md-temperature`, defaults to
0.3). Here every row gets its own static dimension, any whole number 0..D:

    p_r = lookups of row r / lookups of its table      (from a first pass)
    d_r = min(D, floor(lambda * p_r ** alpha)),  alpha = --mde-exponent

with lambda the largest value whose cost fits the budget. Rows never looked
up get 0. Exactly: every (row, level j = 1..D) is a grant with threshold
j / p_r ** alpha and a cost of dtype bytes (plus, with `--budget-covers
all`, one index entry for the row's first level); grants are taken in
ascending threshold, all grants of equal threshold together, while the total
cost fits. So lambda is the threshold of the last group taken, and rows of
equal frequency always get equal dimensions.

The frequencies come from a first pass over a sizing window: the whole trace
(replay: it knows the very lookups it is measured on), or the first
`--size-from` of the training split (training; the whole split by default,
as MDE's authors size from training-set counts). Rows the window never saw
get 0, so under drift the rows that become popular later have no vector.
Summaries and reports say which window a run was sized from (`knew`).
Memory: the payload is sum d_r * dtype
bytes (rows stored packed by dimension), the index one `index_entry_bytes`
entry per row with d_r > 0 (the row -> place map, idealised as for the row
caches), no metadata.
"""
from __future__ import annotations

import numpy as np

from ..engine.rowset import RowMap
from .static import StaticPolicy


def mde_levels(tables, table: np.ndarray, count: np.ndarray, budget_bytes: int, alpha: float,
               entry_bytes: int) -> np.ndarray:
    """d for each (table[i], count[i]) row of a first pass (see the module docstring); int64.

    `entry_bytes` is the index entry a row's first level costs (0 when the budget covers the payload only).
    """
    if table.size == 0:
        return np.zeros(0, np.int64)
    lookups = np.bincount(table, weights=count, minlength=len(tables)).astype(np.int64)
    # one group per (table, count): rows of equal frequency get equal dimensions
    groups, group_of, sizes = np.unique(np.stack((table, count), axis=1), axis=0, return_inverse=True,
                                        return_counts=True)
    group_of = group_of.reshape(-1)
    g_table, g_count = groups[:, 0], groups[:, 1]
    # p ** alpha with Python's float pow (libm), not numpy's vector loop, which may use other math libraries
    weight = np.array([(int(c) / int(n)) ** alpha for c, n in zip(g_count, lookups[g_table])], np.float64)
    dims = np.array([t.dim for t in tables], np.int64)[g_table]
    dtype = np.array([t.dtype_bytes for t in tables], np.int64)[g_table]
    grant_group = np.repeat(np.arange(groups.shape[0]), dims)
    level = np.arange(grant_group.size) - np.repeat(np.cumsum(dims) - dims, dims) + 1
    threshold = level / weight[grant_group]
    cost = sizes[grant_group] * (dtype[grant_group] + np.where(level == 1, entry_bytes, 0))
    order = np.argsort(threshold, kind="stable")
    threshold, cost = threshold[order], np.cumsum(cost[order])
    # a tie group ends where the next threshold differs; take every grant up to the last group that fits
    ends = np.flatnonzero(np.append(threshold[1:] != threshold[:-1], True))
    fits = ends[cost[ends] <= budget_bytes]
    taken = fits[-1] + 1 if fits.size else 0
    levels = np.bincount(grant_group[order[:taken]], minlength=groups.shape[0])
    return levels[group_of].astype(np.int64)


class Mde(StaticPolicy):
    name = "mde"
    sizing = "first pass"
    needs_frequencies = True

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.dims = RowMap(len(tables))
        self.dim_hist = [sum(t.rows for t in tables)] + [0] * self.k_max

    def set_frequencies(self, lookups: RowMap) -> None:
        table, row, count = lookups.items()
        entry = self.cfg.index_entry_bytes if self.cfg.budget_covers == "all" else 0
        dims = mde_levels(self.tables, table, count, self.cfg.budget_bytes, self.cfg.mde_exponent, entry)
        stored = dims > 0
        self.dims.put(table[stored], row[stored], dims[stored])
        dtype = np.array([t.dtype_bytes for t in self.tables], np.int64)
        self.payload_bytes = int((dims * dtype[table]).sum())
        self.index_bytes = int(stored.sum()) * self.cfg.index_entry_bytes
        chunk = np.array([t.chunk for t in self.tables], np.int64)
        hist = np.bincount(dims // chunk[table], minlength=self.k_max + 1)
        hist[0] += sum(t.rows for t in self.tables) - table.size
        self.dim_hist = [int(x) for x in hist]

    def resident_dims(self, table, row) -> np.ndarray:
        return self.dims.get(np.ascontiguousarray(table, np.int64), np.ascontiguousarray(row, np.int64))
