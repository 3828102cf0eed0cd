"""Run the Numba engine with the call shape of `fiitedsim.reference.replay`.

Differential tests and the hand-worked cases call both through this one
signature. The records are cut into several stream batches (at step
boundaries, as `TraceSource.batches()` does) so that batch boundaries and the
engine's grow-and-resume protocol are exercised too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fiitedsim.engine.rowset import RowMap
from fiitedsim.policies import POLICIES
from fiitedsim.traces.source import RecordBatch


@dataclass
class EngineResult:
    summary: dict
    snapshots: list = field(default_factory=list)
    utilities: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)
    index: dict = field(default_factory=dict)
    index_capacity: dict = field(default_factory=dict)
    index_layout: dict = field(default_factory=dict)
    mapped_pages: list = field(default_factory=list)
    theta: list = field(default_factory=list)


def _arrays(tables, lookups, importance):
    k_max = max(t.chunks for t in tables)
    lookups = [tuple(x) for x in lookups]
    step = np.array([x[0] for x in lookups], np.int64)
    table = np.array([x[1] for x in lookups], np.int32)
    row = np.array([x[2] for x in lookups], np.int64)
    has_grad = any(len(x) == 4 and x[3] is not None for x in lookups)
    grad = None
    if has_grad:
        grad = np.zeros((len(lookups), k_max), np.float32)
        for i, x in enumerate(lookups):
            if len(x) == 4 and x[3] is not None:
                grad[i, :len(x[3])] = np.asarray(x[3], np.float32)
    importance = [tuple(x) for x in importance]
    imp = [np.array([x[c] for x in importance], dt) for c, dt in
           enumerate((np.int64, np.int32, np.int64, np.int64, np.float32))]
    return step, table, row, grad, has_grad, imp


def _batches(step, table, row, grad, imp, cuts):
    """Cut the merged stream before each step in `cuts` (lookups and importance of step < X first)."""
    bounds = sorted(set(cuts)) + [None]
    lo_l = lo_i = 0
    for x in bounds:
        hi_l = len(step) if x is None else int(np.searchsorted(step, x, "left"))
        hi_i = len(imp[0]) if x is None else int(np.searchsorted(imp[0], x, "left"))
        if hi_l > lo_l or hi_i > lo_i:
            yield RecordBatch(step[lo_l:hi_l], table[lo_l:hi_l], row[lo_l:hi_l],
                              None if grad is None else grad[lo_l:hi_l],
                              *(a[lo_i:hi_i] for a in imp))
        lo_l, lo_i = hi_l, hi_i


def engine_replay(tables, cfg, lookups, importance=(), policy="fiited", check=False, cuts=None):
    """Replay with the engine; `cuts` are steps where a new stream batch starts (default: a few)."""
    step, table, row, grad, has_grad, imp = _arrays(tables, lookups, importance)
    if cuts is None:
        all_steps = np.unique(np.concatenate((step, imp[0])))
        cuts = all_steps[1::3].tolist()
    policy_obj = POLICIES[policy](tables, cfg, has_grad, len(imp[0]) > 0)
    if policy_obj.needs_frequencies:  # the first pass `replay` makes for an offline oracle (mde)
        counts = RowMap(len(tables))
        for batch in _batches(step, table, row, grad, imp, cuts):
            counts.count(batch.table, batch.row)
        policy_obj.set_frequencies(counts)
    for batch in _batches(step, table, row, grad, imp, cuts):
        policy_obj.consume(batch)
        if check and hasattr(policy_obj, "engine"):  # the chunk-storing policies
            policy_obj.engine.check_invariants()
    result = policy_obj.finish()
    frame = result.snapshots
    dim_cols = [c for c in frame.columns if c.startswith("dim_") and c[4:].isdigit()]
    snapshots = []
    for rec in frame.iter_rows(named=True):
        snap = {k: v for k, v in rec.items() if k not in dim_cols and k != "index_load_factor"}
        snap["dim_hist"] = [rec[c] for c in dim_cols]
        snapshots.append(snap)
    out = EngineResult(summary=result.summary, snapshots=snapshots)
    if hasattr(policy_obj, "engine"):
        eng = policy_obj.engine
        for key, (u, last, _) in eng.tracked().items():
            out.utilities[key] = u
            out.last[key] = last
        for key, (cap, layout, mapping) in eng.index_contents().items():
            out.index[key] = mapping
            out.index_capacity[key] = cap
            out.index_layout[key] = layout
        out.mapped_pages = eng.mapped_pages()
        out.theta = [float(x) for x in eng.st.pool_theta]
    return out
