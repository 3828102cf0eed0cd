"""`qr`: the quotient-remainder trick (DESIGN 4), sized before training from the table sizes alone.

Compositional embeddings (Shi, Mudigere, Naumov, Yang, "Compositional Embeddings Using Complementary
Partitions for Memory-Efficient Recommendation Systems", KDD 2020; facebookresearch/dlrm's
`tricks/qr_embedding_bag.py`): row i of an n-row table reads the combination of Q[i // m] and R[i mod m], a
quotient table of ceil(n / m) rows and a remainder table of m rows, both full-dimension. No two rows read the
same pair, so every row has a vector of its own, yet each quotient row serves up to m rows and each remainder
row up to ceil(n / m): their parameters are shared.

Sizing, per table t, before training and from the table sizes alone:
    base_t = min(n_t, min_m ceil(n_t/m) + m)   the fewest rows the table can take: its smallest pair of
                                               tables (about 2 sqrt(n_t) rows, `min_pair_rows`), or the table
                                               whole when that is smaller;
    b_t = base_t + floor((budget - sum_u base_u * row_bytes_u) * dense_t / dense_total) // row_bytes_t
                                               every table its fewest rows first, the rest of the budget split
                                               by dense size (as pools split it): a plain split by dense size
                                               gives a small table (a field of 3 or 60 values) less than its
                                               smallest pair at budgets where the large ones fit easily;
    a table with b_t >= n_t is stored whole (no sharing); otherwise m_t = the largest m <= n_t with
    ceil(n_t / m) + m <= b_t (the issue's "largest m for which both tables fit"; f(m) = ceil(n/m) + m falls
    until about sqrt(n) and grows after, so this spends the share on the remainder table).
A budget below sum_t base_t * row_bytes_t is refused, naming that size: the Q-R trick cannot compress a table
below its smallest pair.

Combination (`--qr-operation`): `mult`, the element-wise product (the default, as the paper's experiments
and DLRM's QREmbeddingBag default), or `add`, the sum (CAFE's artifact). A trainer initialises both factor
tables as DLRM's QREmbeddingBag.reset_parameters does for `mult`: U(sqrt(1/n), 1) (`nn.init.uniform_(w,
sqrt(1/n))`: lower bound sqrt(1/n), upper 1, so a product starts away from 0), and U(-sqrt(1/n), sqrt(1/n))
for `add` (CAFE's artifact), n the table's rows.

Replay: memory is (ceil(n/m) + m) full rows per table (n when whole), no index, no metadata. Every lookup
reads a full vector of its own: all D dimensions count as hits. The figures particular to `qr` are the shares
of lookups whose quotient row, and whose remainder row, has served another row seen so far (earlier in the
trace or earlier in its own step, as `hash` counts collisions): `quotient_shared_share` and
`remainder_shared_share` in its summary.
"""
from __future__ import annotations

import math

import numpy as np

from ..config import budget_name, dense_bytes
from ..engine.rowset import SharedRows
from ..errors import InputError
from .static import StaticPolicy, chunk_hist

#: The combinations `--qr-operation` takes.
QR_OPERATIONS = ("mult", "add")


def pair_rows(n: int, m: int) -> int:
    """Rows of a quotient and a remainder table for an n-row table and m remainder rows."""
    return -(-n // m) + m


def min_pair_rows(n: int) -> int:
    """The fewest rows any pair of tables of an n-row table takes: min over m of ceil(n/m) + m (at m near
    sqrt(n); f falls until sqrt(n) and grows after, so the neighbours of isqrt(n) hold the minimum)."""
    r = math.isqrt(n)
    return min(pair_rows(n, m) for m in range(max(1, r - 1), min(n, r + 2) + 1))


def remainder_rows(n: int, rows: int) -> int | None:
    """m for an n-row table that may keep `rows` rows: None when it keeps the table whole (rows >= n), else
    the largest m <= n with ceil(n/m) + m <= rows, 0 when there is none (the budget is too small)."""
    if rows >= n:
        return None
    if rows < min_pair_rows(n):
        return 0
    # ceil(n/m) + m <= rows holds for m from about (rows - sqrt(rows^2 - 4n)) / 2 to (rows + sqrt(...)) / 2;
    # start at the upper root's floor (exact integers) and walk to the largest m that fits
    m = min(n, (rows + math.isqrt(max(0, rows * rows - 4 * n))) // 2 + 1)
    while m > 1 and pair_rows(n, m) > rows:
        m -= 1
    return m


def fewest_rows(n: int) -> int:
    """base_t: the fewest rows an n-row table takes under qr, its smallest pair or itself whole."""
    return min(n, min_pair_rows(n))


def least_budget(tables) -> int:
    """The smallest budget qr can take: every table at its fewest rows."""
    return sum(fewest_rows(t.rows) * t.dim * t.dtype_bytes for t in tables)


def qr_layout(tables, budget_bytes: int) -> list[int | None]:
    """m_t of every table at a budget (module docstring): None for a table stored whole, 0 when too small."""
    dense = dense_bytes(tables)
    rest = budget_bytes - least_budget(tables)
    if rest < 0:
        return [0] * len(tables)
    return [remainder_rows(t.rows, fewest_rows(t.rows) + (rest * t.dense_bytes // dense) // (t.dim * t.dtype_bytes))
            for t in tables]


class Qr(StaticPolicy):
    name = "qr"
    sizing = "tables"

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.m = qr_layout(tables, cfg.budget_bytes)
        # per table: remainder rows (0: stored whole) and quotient rows; a whole table's rows are its own
        self.tab_m = np.array([m or 0 for m in self.m], np.int64)
        self.tab_q = np.array([-(-t.rows // m) if m else t.rows for t, m in zip(tables, self.m)], np.int64)
        self.payload_bytes = sum((pair_rows(t.rows, m) if m else t.rows) * t.dim * t.dtype_bytes
                                 for t, m in zip(tables, self.m))
        self.table_dims = self.tab_d   # every row reads a full vector of its own
        self.dim_hist = chunk_hist(tables, self.k_max, ((i, t.dim, t.rows) for i, t in enumerate(tables)))
        self.quotient, self.remainder = SharedRows(len(tables)), SharedRows(len(tables))
        self.shared = np.zeros(2, np.int64)   # lookups whose quotient / remainder row served another row

    @classmethod
    def check_budget(cls, tables, cfg, vocabulary: bool = False) -> None:
        need = least_budget(tables)
        if cfg.budget_bytes < need:
            raise InputError(f"budget {budget_name(cfg)} ({cfg.budget_bytes} bytes) is below the smallest pairs of "
                             f"quotient and remainder tables qr can make of these tables (about 2 sqrt(rows) rows "
                             f"each, or the table whole); the smallest workable budget is {need} bytes "
                             f"({need / dense_bytes(tables):.6g} of the dense size)")

    def compose(self, table: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored rows each (table, row) combines, as a trainer lays out a table of n rows: quotient row q at
        q, remainder row r at ceil(n/m) + r (both within the table's n rows, since ceil(n/m) + m <= b_t < n);
        -1 as the remainder of a row of a table stored whole (it reads itself)."""
        table, row = np.asarray(table, np.int64), np.asarray(row, np.int64)
        m = self.tab_m[table]
        split = m > 0
        safe = np.where(split, m, 1)
        quotient = np.where(split, row // safe, row)
        remainder = np.where(split, self.tab_q[table] + row % safe, -1)
        return quotient, remainder

    @property
    def operation(self) -> str:
        """How a row's two factors combine (`--qr-operation`)."""
        return self.cfg.qr_operation

    def initialise(self, emb: np.ndarray, offsets: np.ndarray, seed: int) -> None:
        """A trainer's initial factor rows (module docstring): per split table t, its ceil(n/m) + m rows from a
        generator seeded by (seed, t), U(sqrt(1/n), 1) for "mult" and U(-sqrt(1/n), sqrt(1/n)) for "add"."""
        for t, (spec, m) in enumerate(zip(self.tables, self.m)):
            if not m:
                continue
            rows, bound = pair_rows(spec.rows, m), float(np.sqrt(1.0 / spec.rows))
            low, high = (bound, 1.0) if self.operation == "mult" else (-bound, bound)
            values = np.random.default_rng([seed, t]).uniform(low, high, size=(rows, emb.shape[1]))
            emb[offsets[t]:offsets[t] + rows] = values.astype(emb.dtype)

    def resident_dims(self, table, row) -> np.ndarray:
        return self.tab_d[table]

    def observe(self, batch) -> tuple[np.ndarray, np.ndarray]:
        quotient, remainder = self.compose(batch.table, batch.row)
        split = self.tab_m[batch.table] > 0
        self.shared[0] += int(self.quotient.observe(batch.table, batch.row, np.where(split, quotient, -1)).sum())
        self.shared[1] += int(self.remainder.observe(batch.table, batch.row, remainder).sum())
        return super().observe(batch)

    def summary(self) -> dict:
        out = super().summary()
        lookups = out["lookups"]
        out["quotient_shared_share"] = int(self.shared[0]) / lookups if lookups else 0.0
        out["remainder_shared_share"] = int(self.shared[1]) / lookups if lookups else 0.0
        return out
