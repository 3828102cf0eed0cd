"""Training through the replay engine (fiitedsim/train/engine_hook.py).

Two kinds of checks, neither using numbers produced by the code under test as
expectations: (1) a trace emitted while training, replayed by
`fiitedsim.replay.replay` under the same policy and config, must give exactly
the trainer's memory metrics and time series; (2) at every step the embedding
values obey DESIGN.md section 2 (absent chunks read as zeros and get no update,
admitted chunks start at zero), and the resets the adapter reports add up to
the engine's own allocation and free counters.
"""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from fiitedsim.config import ReplayConfig, dense_bytes, parse_budget
from fiitedsim.errors import InputError
from fiitedsim.replay import replay
from fiitedsim.traces.source import TraceSource
from fiitedsim.traces.writer import ImportanceWriter, TraceWriter, unpack_grad
from fiitedsim.train.data import synthetic
from fiitedsim.train.engine_hook import EngineResidency, TraceRecorder, train_tables
from fiitedsim.train.loop import TrainConfig, Trainer, model_config, train

# Small and fast, but with rounds every 3 steps, snapshots every 4, and a budget that forces pruning:
# 64-byte pages hold 4 chunks of 4 fp32 values.
DATA = {"samples": 3000, "fields": 3, "rows": 400, "dense": 4, "dim": 16, "seed": 3}
TRAIN = TrainConfig(dim=16, chunk=4, bottom=(16,), top=(16,), batch=128, eval_every=5, seed=1)
REPLAY = ReplayConfig(interval=3, report_every=4, page_bytes=64, gamma=0.99)


@pytest.fixture(scope="module")
def data():
    return synthetic(**DATA)


def config(tables, budget: str) -> ReplayConfig:
    return REPLAY.with_budget(parse_budget(budget, dense_bytes(tables)), budget)


@pytest.mark.parametrize("policy", ["fiited", "row-prune", "uniform-dim", "full"])
def test_replaying_the_emitted_trace_gives_the_trainers_memory_metrics(data, tmp_path, policy):
    tables = train_tables(data.rows, TRAIN.dim, TRAIN.chunk)
    cfg = config(tables, "0.1")
    trace, imp = tmp_path / "t.parquet", tmp_path / "imp.parquet"
    with TraceWriter(trace, tables, with_grad=True) as tw, ImportanceWriter(imp) as iw:
        hook = EngineResidency.build(policy, tables, cfg, TraceRecorder(tw, iw, flush_lookups=1000))
        train(data, TRAIN, hook)
        trained = hook.finish()
    replayed = replay(TraceSource(trace), [policy], [("0.1", cfg.budget_bytes)], cfg)
    summary = replayed.summary["policies"][policy]
    assert trained.summary_json() == summary
    assert trained.snapshots.equals(replayed.series[policy])
    if policy in ("fiited", "row-prune"):  # the budget really pruned: rounds freed chunks that came back
        assert summary["rounds"] >= 6 and summary["frees"] > 0 and summary["denied_threshold"] > 0
    # the importance log holds the trace's gradient norms, one record per (lookup, chunk) in the same order
    t, log = pq.read_table(trace), pq.read_table(imp)
    K = TRAIN.dim // TRAIN.chunk
    assert log.num_rows == K * t.num_rows == K * summary["lookups"]
    grad = unpack_grad(t["grad_norm"].combine_chunks())
    assert np.array_equal(log["importance"].to_numpy(), grad.reshape(-1))
    assert np.array_equal(log["row"].to_numpy()[::K], t["row"].to_numpy())
    assert np.array_equal(log["chunk"].to_numpy(), np.tile(np.arange(K), t.num_rows))


class Spy:
    """Delegates to the engine hook and keeps what it answered for the current step."""

    def __init__(self, hook: EngineResidency):
        self.hook, self.chunks = hook, hook.chunks

    def lookup(self, step, table, row):
        self.d, self.freed = self.hook.lookup(step, table, row)
        return self.d, self.freed

    def feedback(self, step, table, row, grad_norm):
        self.admitted = self.hook.feedback(step, table, row, grad_norm)
        return self.admitted

    def resident(self, table, row):
        return self.hook.resident(table, row)


def chunk_view(trainer: Trainer, emb: np.ndarray) -> np.ndarray:
    """emb as (total rows, K, C)."""
    return emb.reshape(emb.shape[0], trainer.cfg.chunks, trainer.cfg.chunk)


def test_absent_chunks_read_zero_get_no_update_and_come_back_at_zero(data):
    tables = train_tables(data.rows, TRAIN.dim, TRAIN.chunk)
    cfg = config(tables, "0.05")
    spy = Spy(EngineResidency.build("fiited", tables, cfg))
    trainer = Trainer(model_config(data, TRAIN), seed=TRAIN.seed, hook=spy)
    off = trainer.p.offsets
    freed_total = admitted_total = readmitted = 0
    ever_freed: set[tuple[int, int, int]] = set()
    B = TRAIN.batch
    for s in range(18):
        lo = s * B
        idx = data.sparse[lo:lo + B]
        before = chunk_view(trainer, trainer.p.emb.copy())
        trainer.step(s, data.dense[lo:lo + B], idx, data.label[lo:lo + B])
        after = chunk_view(trainer, trainer.p.emb)
        expected = before.copy()
        for resets in (spy.freed, spy.admitted):
            if resets is not None:
                expected[off[resets.table] + resets.row, resets.chunk] = 0.0
        if spy.freed is not None:
            freed_total += len(spy.freed.row)
            ever_freed |= set(zip(spy.freed.table.tolist(), spy.freed.row.tolist(), spy.freed.chunk.tolist()))
        if spy.admitted is not None:
            admitted_total += len(spy.admitted.row)
            got = after[off[spy.admitted.table] + spy.admitted.row, spy.admitted.chunk]
            assert not got.any(), "an admitted chunk must start at zero"
            readmitted += len(ever_freed & set(zip(spy.admitted.table.tolist(), spy.admitted.row.tolist(),
                                                   spy.admitted.chunk.tolist())))
        # chunks not resident in this step's forward pass: untouched by the optimizer
        table, row = trainer._lookups(idx)
        flat = off[table] + row
        for k in range(trainer.cfg.chunks):
            absent = spy.d <= k
            assert np.array_equal(after[flat[absent], k], expected[flat[absent], k]), f"step {s} chunk {k}"
    summary = spy.hook.finish().summary
    # every allocation is one admitted chunk reported, every free one freed chunk reported
    assert admitted_total == summary["allocations"]
    assert freed_total == summary["frees"] > 0
    assert readmitted > 0, "the test should see a freed chunk admitted again"


def test_absent_chunks_read_as_zero_in_prediction(data):
    tables = train_tables(data.rows, TRAIN.dim, TRAIN.chunk)
    hook = EngineResidency.build("fiited", tables, config(tables, "0.05"))
    trainer = Trainer(model_config(data, TRAIN), seed=TRAIN.seed, hook=hook)
    for s in range(7):
        lo = s * TRAIN.batch
        trainer.step(s, data.dense[lo:lo + TRAIN.batch], data.sparse[lo:lo + TRAIN.batch],
                     data.label[lo:lo + TRAIN.batch])
    idx, dense = data.sparse[-200:], data.dense[-200:]
    p0 = trainer.predict(dense, idx)
    table, row = trainer._lookups(idx)
    d = hook.resident(table, row)
    assert (d < trainer.cfg.chunks).any() and (d > 0).any()
    view = chunk_view(trainer, trainer.p.emb)
    flat = trainer.p.offsets[table] + row
    for k in range(trainer.cfg.chunks):
        view[flat[d <= k], k] = 1e3  # garbage in every chunk the policy does not hold
    assert np.array_equal(trainer.predict(dense, idx), p0)


def test_a_budget_below_one_page_is_an_input_error(data):
    tables = train_tables(data.rows, TRAIN.dim, TRAIN.chunk)
    with pytest.raises(InputError, match="no room for one"):
        EngineResidency.build("fiited", tables, REPLAY.with_budget(10, "10B"))


def test_row_caches_cannot_drive_training(data):
    tables = train_tables(data.rows, TRAIN.dim, TRAIN.chunk)
    with pytest.raises(InputError, match="unknown training policy"):
        EngineResidency.build("lru", tables, config(tables, "0.1"))
