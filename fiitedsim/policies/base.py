"""The one small interface every policy fills, and the summary it produces.

A policy is built for a list of tables and a config, is fed the record
stream batch by batch (`consume`), and at the end returns a `PolicyResult`:
the summary (the stable `summary.json` contract of docs/formats.md) and the time
series of per-window snapshots, both as `fiitedsim/metrics.py` defines them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import polars as pl

from ..config import ReplayConfig, TableSpec
from ..metrics import SUMMARY_KEYS  # noqa: F401  (the summary.json contract lives in fiitedsim/metrics.py)

if TYPE_CHECKING:
    from ..engine.rowset import RowMap
    from ..traces.source import RecordBatch


class ChunkRanges(NamedTuple):
    """Chunks lo[i] .. hi[i]-1 of row (table[i], row[i]): what a pruning round freed, one entry per row."""

    table: np.ndarray   # int64
    row: np.ndarray     # int64
    lo: np.ndarray      # int64
    hi: np.ndarray      # int64


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
    #: what the policy knows when it decides what to store (`policies.knowledge` words it for summaries and
    #: reports): "online" (learns from the lookups so far, in training), "first pass" (sized before training
    #: from the lookups of a sizing window: `set_frequencies`), "tables" (sized before training from the table
    #: sizes; over vocabulary tables, from the rows the sizing window holds: `set_frequencies` when given),
    #: "dense" (stores every row whole: the reference)
    sizing = "online"
    #: a policy sized from the tables that, over vocabulary tables, sizes from the rows of the sizing window instead
    #: (`uniform-dim`, `hash`); `qr` keeps to the table sizes
    vocabulary_window = False
    #: whether the policy is sized from a first pass over the lookups (`set_frequencies` before `consume`)
    needs_frequencies = False
    #: whether the results do not depend on the budget (`full`): a trainer trains it once per seed
    budget_independent = False
    #: whether what is resident never changes (the static layouts): nothing is ever freed or admitted
    fixed_layout = False
    # What kind of policy it is: every module reads these (`policies.CACHE_POLICIES` and the other lists are
    # derived from them); `sizing` "dense" is the dense reference.
    #: a cache: keeps whole rows of a full copy elsewhere, so a miss is served from that copy, not lost (`lru`,
    #: `lfu`); ranked apart from the pruning policies
    is_cache = False
    #: whether the policy runs pruning rounds (the "fewer than 2 rounds" warning applies to it)
    has_rounds = False
    #: whether a trainer can run on it: chunk storage through the engine, or a fixed layout
    trainable = True

    def __init__(self, tables: list[TableSpec], cfg: ReplayConfig, has_grad: bool, has_log: bool):
        self.tables, self.cfg, self.has_grad, self.has_log = tables, cfg, has_grad, has_log

    @classmethod
    def check_budget(cls, tables: list[TableSpec], cfg: ReplayConfig, vocabulary: bool = False) -> None:
        """Refuse (InputError) a budget under which the policy could never store anything; before any work.

        `vocabulary`: the tables are a training run's vocabulary tables, so a policy sized from the tables is
        sized from the rows of the sizing window instead (`set_frequencies`)."""

    def set_frequencies(self, lookups: "RowMap") -> None:
        """Lookups per (table, row) of the sizing window (a replay: the whole trace), before `consume`: what a
        policy sized from the data knows (`needs_frequencies`, or `sizing` "tables" over vocabulary tables)."""
        raise NotImplementedError

    def resident_dims(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The dimensions each (table[i], row[i]) would read now, 0..D (int), without changing any state."""
        raise NotImplementedError

    def resident_chunks(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The whole chunks each (table[i], row[i]) would read now, 0..K (int32), without changing any state."""
        chunk = np.array([t.chunk for t in self.tables], np.int64)[np.asarray(table, np.int64)]
        return (np.asarray(self.resident_dims(table, row), np.int64) // chunk).astype(np.int32)

    def close_gap(self, step: int) -> ChunkRanges | None:
        """Handle now what the record stream does between the last record consumed and a record of `step`
        (a pruning round, a snapshot), as the first record of `step` would; return the chunks it freed
        (None: nothing). A trainer calls it before reading the rows of `step`. Static layouts: nothing."""
        return None

    @property
    def rounds(self) -> int:
        """Pruning rounds run so far."""
        return 0

    def consume(self, batch: "RecordBatch") -> None:
        raise NotImplementedError

    def finish(self) -> PolicyResult:
        raise NotImplementedError
