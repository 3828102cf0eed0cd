"""FIITED: per-chunk utilities, pruning rounds and threshold admission (DESIGN.md section 2), and, through its
subclass `row_prune.RowPrune`, the same machinery at row granularity (DESIGN.md section 4): the policy's Python
side. The engine is the package `fiitedsim.engine`: its state (`state.py`), the VHPI store (`store.py`), an
access (`access.py`), a round (`round.py`) and the record loop (`loop.py`), which follow DESIGN.md and
`fiitedsim/reference.py` step by step, with the same names.
"""
from __future__ import annotations

import numpy as np

from .. import metrics
from ..config import check_budget_workable, resolve_layout
from ..engine.loop import final_snapshot, handle_gap, resident_prefix, run, snapshot_row
from ..engine.state import DONE, GAP, EngineState, Loop
from ..engine.store import ROW_BITS, ROW_MASK, Param, Tab
from ..memory import check_engine_memory
from ..metrics import Count
from .base import ChunkRanges, Policy, PolicyResult


class Fiited(Policy):
    """FIITED dimension pruning over VHPI storage."""

    name = "fiited"
    #: granularity: a row holds any prefix of its chunks (FIITED) or all or none (row-prune)
    whole_rows = False
    has_rounds = True
    #: the record loop and gap handler (one pair for both granularities)
    run_kernel = staticmethod(run)
    gap_kernel = staticmethod(handle_gap)

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, resolve_layout(tables, cfg), has_grad, has_log)  # the run's page size and indices
        cfg = self.cfg
        self.engine = EngineState(tables, cfg, has_grad, has_log, whole_rows=self.whole_rows)
        k_max = self.engine.k_max
        self._no_grad = np.zeros((1, k_max), np.float32)

    @classmethod
    def check_budget(cls, tables, cfg, vocabulary: bool = False) -> None:
        cfg = resolve_layout(tables, cfg)
        check_engine_memory(tables, cfg)  # the start-up arrays (--index-initial, --page-bytes) must fit
        check_budget_workable(tables, cfg)

    def consume(self, batch) -> None:
        steps_max = 0
        if batch.step.size:
            steps_max = int(batch.step[-1])
        if batch.imp_step.size:
            steps_max = max(steps_max, int(batch.imp_step[-1]))
        self.engine.ensure_steps(steps_max)
        grad = batch.grad if (batch.grad is not None and self.engine.st.ip[Param.HAS_GRAD]) else self._no_grad
        self.engine.populate_ahead()
        i = j = 0
        while True:
            status, i, j = self.run_kernel(self.engine.st, batch.step, batch.table, batch.row, grad, batch.imp_step,
                                           batch.imp_table, batch.imp_row, batch.imp_chunk, batch.imp_value, i, j)
            if status == DONE:
                return
            if status == GAP:
                self.engine.snapshot_room()
                self.gap_kernel(self.engine.st)
                self.engine.round_scratch()
            else:
                self.engine.grow(status)
                self.engine.populate_ahead()

    def gap_due(self, step: int) -> tuple[bool, bool]:
        """(round, snapshot): what `run` would handle in the gap before a record of `step` (DESIGN 2)."""
        ctl, ip = self.engine.st.ctl, self.engine.st.ip
        if not ctl[Loop.HAVE_PREV] or ctl[Loop.GAP_DONE]:
            return False, False
        prev = int(ctl[Loop.PREV_STEP])
        return (step // int(ip[Param.INTERVAL]) > prev // int(ip[Param.INTERVAL]),
                step // int(ip[Param.REPORT_EVERY]) > prev // int(ip[Param.REPORT_EVERY]))

    def close_gap(self, step: int) -> ChunkRanges | None:
        """Handle now the gap `run` would stop at before the first record of `step`; return the chunks its
        round freed (None when no round ran).

        The trainer needs a round's frees before it reads the rows of `step`, while replay
        runs the round when that step's first record arrives: both happen between the last
        consumed record and `step`, at now = the last record's step, so the results agree.
        Marking the gap done lets the records of `step` then pass it without a second round.
        Rounds only free, so the freed chunks are each tracked row's prefix before minus after.
        """
        round_due, snapshot_due = self.gap_due(step)
        if not (round_due or snapshot_due):
            return None
        st = self.engine.st
        st.ctl[Loop.GAP_ROUND], st.ctl[Loop.GAP_SNAPSHOT] = round_due, snapshot_due
        self.engine.snapshot_room()
        if not round_due:
            self.gap_kernel(st)
            return None
        keys, before = self.engine.prefixes()
        self.gap_kernel(st)
        self.engine.round_scratch()
        _, after = self.engine.prefixes(len(keys))
        shrunk = np.flatnonzero(after < before)
        keys = keys[shrunk]
        return ChunkRanges(keys >> ROW_BITS, keys & ROW_MASK, after[shrunk], before[shrunk])

    @property
    def rounds(self) -> int:
        return int(self.engine.st.cnt[Count.ROUNDS])

    def resident_chunks(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Resident prefix d in chunks (int32) of each (table, row) lookup now, without changing any state."""
        out = np.empty(row.size, np.int32)
        st = self.engine.st
        resident_prefix(st.trk, st.rec, st.ip, np.ascontiguousarray(table, np.int64),
                        np.ascontiguousarray(row, np.int64), out)
        return out

    def resident_dims(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Resident dimensions (d * C, int32) of each (table, row) lookup now, without changing any state."""
        return self.resident_chunks(table, row) * self.engine.st.tabs[np.asarray(table, np.int64), Tab.C].astype(
            np.int32)

    def finish(self) -> PolicyResult:
        eng = self.engine
        eng.snapshot_room()
        final_snapshot(eng.st)
        eng.flush_snapshots()
        return PolicyResult(summary=self.summary(), snapshots=eng.series.frame())

    def summary(self) -> dict:
        """The summary now: a snapshot row taken now, with the peaks and the longest probe (metrics.summary)."""
        st = self.engine.st
        ints = np.zeros((1, st.snap_i.shape[1]), np.int64)
        floats = np.zeros((1, st.snap_f.shape[1]), np.float64)
        snapshot_row(st, st.ctl[Loop.PREV_STEP], ints, floats, 0)
        return metrics.summary(ints[0], floats[0], st.cnt, self.engine.k_max)
