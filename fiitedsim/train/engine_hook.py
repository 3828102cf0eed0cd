"""Training through the replay engine: a `ResidencyHook` over the replay policy objects themselves.

`EngineResidency` wraps one `fiitedsim.policies` object (`fiited`, `row-prune`,
`uniform-dim`, `hash`, `mde`, `full`) built exactly as `fiitedsim.replay.replay`
builds it, so the trainer and a replay share one implementation of DESIGN.md
sections 2-5 and their memory metrics are identical (docs/semantics.md,
"Training through the engine"). Per training step s, in this order:

1. `lookup(s)`: the gap between the last consumed step and s is closed first
   (`Policy.close_gap`: the pruning round and snapshot `run` would do when
   step s's first record arrives, at now = the last consumed step), which
   returns the chunks the round freed (a round is the only place chunks are
   freed); they are returned as resets. Then d per lookup is the resident
   prefix now, in dimensions: what the forward pass may read (a row first seen
   has d = 0).
2. `feedback(s, ...)`: the step's lookups with their per-chunk gradient norms
   become one `RecordBatch` for the policy's ordinary `consume` (hit status,
   utility updates, admission, in trace order). All its records have step s,
   so no round can run inside it (checked). Chunks admitted by it
   (d after minus d before, once per distinct row) are returned as resets:
   a (re-)admitted chunk starts at zero.

Static layouts (`full`, `uniform-dim`, `hash`, `mde`) free and admit nothing:
`lookup` returns their fixed dimensions, `feedback` only counts hits, and
`hash` maps each lookup to the stored row it shares (`remap`). `mde`, and over
vocabulary tables `uniform-dim` and `hash`, are sized before training from
the lookups of the sizing window (`build`'s `window`: the first `--size-from`
of the training split), the trainer's first pass.

Hit statistics are the policy's own: for a row looked up twice in one step,
the second lookup's hit status counts chunks admitted by the first (as in a
replay), while the forward pass of that step read the prefix of step 1 for
both, since admitted chunks start at zero only after the step.
"""
from __future__ import annotations

import numpy as np

from ..config import ReplayConfig, TableSpec, check_tables_fit_pages
from ..engine.hashmap import ROW_BITS
from ..engine.rowset import RowMap
from ..errors import InputError
from ..policies import POLICIES, TRAIN_POLICIES, sized_from_window
from ..policies.base import Policy, PolicyResult
from ..traces.source import RecordBatch
from .residency import Resets

_NO_IMP = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64),
           np.zeros(0, np.float32))


def train_tables(rows, dim: int, chunk: int, names=None) -> list[TableSpec]:
    """One fp32 table per sparse field, as the model stores them (the budget's dense size is theirs)."""
    names = names if names is not None else [f"f{i}" for i in range(len(rows))]
    return [TableSpec(str(name), int(r), dim, chunk, 4) for name, r in zip(names, rows)]


def prefix_ranges(table: np.ndarray, row: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Resets:
    """Chunks lo[i] .. hi[i]-1 of every (table[i], row[i]) with lo < hi, row-major then chunk order."""
    keep = hi > lo
    table, row, lo, hi = table[keep], row[keep], lo[keep].astype(np.int64), hi[keep].astype(np.int64)
    counts = hi - lo
    starts = np.cumsum(counts) - counts
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    return Resets(np.repeat(table, counts).astype(np.int32), np.repeat(row, counts).astype(np.int64),
                  (np.repeat(lo, counts) + within).astype(np.int16))


class TraceRecorder:
    """The trainer's lookups with their gradient norms, buffered into ~1M-lookup row groups.

    `trace` is a `TraceWriter` (grad_norm column) and `importance` an
    `ImportanceWriter`, either None; both are already open.
    """

    def __init__(self, trace=None, importance=None, flush_lookups: int = 1 << 20):
        self.trace, self.importance, self.flush_lookups = trace, importance, flush_lookups
        self._parts: list[tuple] = []
        self._n = 0

    def record(self, step: int, table: np.ndarray, row: np.ndarray, grad: np.ndarray) -> None:
        self._parts.append((np.full(row.size, step, np.int64), table.copy(), row.copy(), grad.copy()))
        self._n += row.size
        if self._n >= self.flush_lookups:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        step, table, row, grad = (np.concatenate(c) for c in zip(*self._parts))
        if self.trace is not None:
            self.trace.write(step, table, row, grad)
        if self.importance is not None:
            self.importance.write(step, table, row, grad)
        self._parts, self._n = [], 0


class EngineResidency:
    """A residency hook backed by a replay policy object (module docstring)."""

    def __init__(self, policy: Policy, recorder: TraceRecorder | None = None):
        if not policy.trainable:
            raise InputError(f"policy {policy.name!r} cannot drive training; choose from {', '.join(TRAIN_POLICIES)}")
        if len({t.chunks for t in policy.tables}) != 1:
            raise ValueError("the trainer's tables all have the same chunks per row")
        self.policy, self.recorder = policy, recorder
        self.chunks, self.dim = policy.tables[0].chunks, policy.tables[0].dim
        self.chunk = policy.tables[0].chunk
        self.paged = not policy.fixed_layout
        if hasattr(policy, "remap"):  # rows share stored vectors (`hash`): the trainer reads these rows
            self.remap = policy.remap
        if hasattr(policy, "compose"):  # rows combine two stored vectors (`qr`)
            self.compose, self.operation = policy.compose, policy.operation
        for name in ("initialise", "extra_rows", "copies"):  # a policy's own rows (`qr`'s factors, `cafe`'s hot table)
            if hasattr(policy, name):
                setattr(self, name, getattr(policy, name))
        self._step = None
        self._d = None
        self._finished: PolicyResult | None = None

    @staticmethod
    def check(name: str, tables: list[TableSpec], cfg: ReplayConfig, vocabulary: bool = False) -> None:
        """The checks of `build` without building: `fiitedsim sweep` runs them on the client before submitting."""
        if name not in TRAIN_POLICIES:
            raise InputError(f"unknown training policy {name!r}: choose from {', '.join(TRAIN_POLICIES)}")
        check_tables_fit_pages(tables, cfg)
        POLICIES[name].check_budget(tables, cfg, vocabulary)

    @classmethod
    def build(cls, name: str, tables: list[TableSpec], cfg: ReplayConfig, recorder: TraceRecorder | None = None,
              window: RowMap | None = None, vocabulary: bool = False):
        """The policy `name` at `cfg`'s budget, checked and constructed as `replay` does for a trace with grad_norm.

        `window`: lookups per (table, row) of the sizing window (the first part of the training split, `--size-from`),
        for a policy sized from the data before training (`sized_from_window`); `vocabulary`: the tables are the
        training split's vocabulary tables.
        """
        cls.check(name, tables, cfg, vocabulary)
        policy = POLICIES[name](tables, cfg, True, False)
        if sized_from_window(name, vocabulary):
            if window is None:
                raise ValueError(f"policy {name!r} is sized from the sizing window's lookups: pass window")
            policy.set_frequencies(window)
        return cls(policy, recorder)

    def _batch(self, step: int, table: np.ndarray, row: np.ndarray, grad: np.ndarray | None) -> RecordBatch:
        return RecordBatch(np.full(row.size, step, np.int64), np.ascontiguousarray(table, np.int32),
                           np.ascontiguousarray(row, np.int64), grad, *_NO_IMP)

    def resident(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Resident dimensions of each lookup now (0..D)."""
        return np.asarray(self.policy.resident_dims(table, row), np.int32)

    def lookup(self, step: int, table: np.ndarray, row: np.ndarray):
        if self._step is not None and step <= self._step:
            raise ValueError(f"steps must increase: step {step} after {self._step}")
        resets = None
        if self.paged:
            resets = self._close_gap(step)
        else:   # a static layout frees nothing, but may still act between steps (`cafe` inserts the last step's)
            self.policy.close_gap(step)
        self._step = step
        if self.paged:  # the engine's unit is the chunk: feedback compares prefixes in chunks
            self._d = self.policy.resident_chunks(table, row)
            return self._d * self.chunk, resets
        return self.resident(table, row), resets

    def _close_gap(self, step: int) -> Resets | None:
        """Run the gap before `step`; the chunks its round freed."""
        freed = self.policy.close_gap(step)
        if freed is None:
            return None
        return prefix_ranges(freed.table, freed.row, freed.lo, freed.hi)

    def feedback(self, step: int, table: np.ndarray, row: np.ndarray, grad_norm: np.ndarray):
        if step != self._step:
            raise ValueError(f"feedback for step {step} after the lookup of step {self._step}")
        grad = np.ascontiguousarray(grad_norm, np.float32)
        if self.recorder is not None:
            self.recorder.record(step, table, row, grad)
        if not self.paged:
            self.policy.consume(self._batch(step, table, row, grad))
            return None
        rounds = self.policy.rounds
        self.policy.consume(self._batch(step, table, row, grad))
        if self.policy.rounds != rounds:
            raise AssertionError(f"a pruning round ran inside the records of step {step}")
        after = self.policy.resident_chunks(table, row)
        grew = np.flatnonzero(after > self._d)
        if grew.size == 0:
            return None
        keys = (table[grew].astype(np.int64) << ROW_BITS) | row[grew].astype(np.int64)
        _, first = np.unique(keys, return_index=True)  # a row looked up twice is admitted once
        pick = grew[np.sort(first)]
        return prefix_ranges(table[pick], row[pick], self._d[pick], after[pick])

    def memory(self) -> dict:
        """The policy's summary now (current gauges, peaks and hit rates so far), as replay would report it."""
        return self.policy.summary()

    def finish(self) -> PolicyResult:
        """The policy's final summary and time series (once), flushing any recorded trace."""
        if self._finished is None:
            if self.recorder is not None:
                self.recorder.flush()
            self._finished = self.policy.finish()
        return self._finished
