"""The one small interface every policy fills, and the summary it produces.

A policy is built for a list of tables and a config, is fed the record
stream batch by batch (`consume`), and at the end returns a `PolicyResult`:
the summary (the stable `summary.json` contract of the README) and the time
series of per-window snapshots.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ..config import ReplayConfig, TableSpec
from ..engine import FLOAT_COLUMNS

if TYPE_CHECKING:
    from ..rowset import RowMap
    from ..trace import RecordBatch

#: Keys of every policy object in summary.json, in this order (README contract).
SUMMARY_KEYS = [
    "payload_bytes_peak", "payload_bytes_final", "index_bytes_peak", "index_bytes_final", "meta_bytes_final",
    "total_bytes_peak", "total_bytes_final", "mapped_pages_final", "live_chunks_final", "fragmentation_final",
    "row_hit_rate", "chunk_hit_rate", "full_hit_rate", "dim_hit_rate", "collision_share", "lookups", "row_hits",
    "chunk_hits", "chunks_requested", "full_hits", "dim_hits", "dims_requested", "collisions", "allocations",
    "frees", "rehashes", "denied_full", "denied_threshold", "theta_final",
    "mean_probe_length", "max_probe_length", "searches", "probes", "rounds", "tracked_rows", "dim_hist_final",
    "index_load_factor_final",
]


def ratio(num, den) -> float:
    return float(num) / float(den) if den else 0.0


@dataclass
class PolicyResult:
    summary: dict
    snapshots: pl.DataFrame

    def summary_json(self) -> dict:
        """The summary with +inf theta written as null (JSON has no infinity)."""
        out = dict(self.summary)
        if not math.isfinite(out["theta_final"]):
            out["theta_final"] = None
        return out


def finish_summary(counts: dict) -> dict:
    """Fill derived rates from raw counts; return the keys in SUMMARY_KEYS order."""
    counts = dict(counts)
    counts["row_hit_rate"] = ratio(counts["row_hits"], counts["lookups"])
    counts["chunk_hit_rate"] = ratio(counts["chunk_hits"], counts["chunks_requested"])
    counts["full_hit_rate"] = ratio(counts["full_hits"], counts["lookups"])
    counts["dim_hit_rate"] = ratio(counts["dim_hits"], counts["dims_requested"])
    counts["collision_share"] = ratio(counts["collisions"], counts["lookups"])
    counts["mean_probe_length"] = ratio(counts["probes"], counts["searches"])
    missing = set(SUMMARY_KEYS) - set(counts)
    if missing:
        raise AssertionError(f"summary lacks {sorted(missing)}")
    return {key: counts[key] for key in SUMMARY_KEYS}


def snapshots_frame(rows: np.ndarray, columns: list[str]) -> pl.DataFrame:
    """Time-series table from int64 snapshot rows (engine.snapshot_columns): integers as int64, exact at any
    size (never through float64), the ratios of FLOAT_COLUMNS decoded from their float64 bits."""
    rows = np.ascontiguousarray(rows, np.int64)
    data = {c: rows[:, i].copy().view(np.float64) if c in FLOAT_COLUMNS else rows[:, i].copy()
            for i, c in enumerate(columns)}
    return pl.DataFrame(data, schema={c: pl.Float64 if c in FLOAT_COLUMNS else pl.Int64 for c in columns})


def snapshot_values(row: np.ndarray, columns: list[str]) -> dict:
    """One int64 snapshot row as {column: int, or float for FLOAT_COLUMNS}."""
    return {c: float(np.int64(v).view(np.float64)) if c in FLOAT_COLUMNS else int(v) for c, v in zip(columns, row)}


class Policy:
    """Base of all policies: fed merged record batches in order, then asked to finish."""

    name = "policy"
    #: whether `consume` reads `batch.grad` (if no policy of a replay does, the reader skips the column)
    uses_grad = True
    #: whether the policy is sized from a first pass over the lookups (`set_frequencies` before `consume`)
    needs_frequencies = False
    #: whether the results do not depend on the budget (`full`): a trainer trains it once per seed
    budget_independent = False

    def __init__(self, tables: list[TableSpec], cfg: ReplayConfig, has_grad: bool, has_log: bool):
        self.tables, self.cfg, self.has_grad, self.has_log = tables, cfg, has_grad, has_log

    @classmethod
    def check_budget(cls, tables: list[TableSpec], cfg: ReplayConfig) -> None:
        """Refuse (InputError) a budget under which the policy could never store anything; before any work."""

    def set_frequencies(self, lookups: "RowMap") -> None:
        """Lookups per (table, row) of the whole trace, for a policy with `needs_frequencies`."""
        raise NotImplementedError

    def resident_dims(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The dimensions each (table[i], row[i]) would read now, 0..D (int), without changing any state."""
        raise NotImplementedError

    def consume(self, batch: "RecordBatch") -> None:
        raise NotImplementedError

    def finish(self) -> PolicyResult:
        raise NotImplementedError
