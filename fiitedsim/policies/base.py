"""The one small interface every policy fills, and the summary it produces.

A policy is built for a list of tables and a config, is fed the record
stream batch by batch (`consume`), and at the end returns a `PolicyResult`:
the summary (the stable `summary.json` contract of the README) and the time
series of per-window snapshots, both as `fiitedsim/metrics.py` defines them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ..config import ReplayConfig, TableSpec
from ..metrics import SUMMARY_KEYS  # noqa: F401  (the summary.json contract lives in fiitedsim/metrics.py)

if TYPE_CHECKING:
    from ..rowset import RowMap
    from ..trace import RecordBatch


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
