"""The engine's memory helpers and the metrics contract's integer columns.

Neither can change a replay's numbers (the differential tests cover those); these pin what they
promise on their own: aligned records, populate requests that leave contents alone, and time-series
integers that stay exact near 2**63 from the kernel to the table.
"""
from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from fiitedsim.config import ReplayConfig, TableSpec
from fiitedsim.engine import RECORD_ALIGN, EngineState, aligned_zeros, populate
from fiitedsim.metrics import COUNTER_COLUMNS, FLOAT_COLUMNS, GAUGE_COLUMNS, snapshot_columns
from fiitedsim.policies import POLICIES
from fiitedsim.traces.source import RecordBatch


@pytest.mark.parametrize("shape", [(5,), (3, 16), (1 << 20, 16)])  # small (np.zeros) and large (a mapping)
def test_aligned_zeros(shape):
    a = aligned_zeros(shape, np.int64)
    assert a.shape == shape and a.dtype == np.int64 and not a.any()
    assert a.ctypes.data % RECORD_ALIGN == 0


def test_records_are_aligned_and_two_lines_at_k8():
    engine = EngineState([TableSpec("t", rows=5000, dim=64, chunk=8)], ReplayConfig(budget_bytes=1 << 20),
                         has_grad=True, has_log=False)
    st = engine.st
    assert st.rec.ctypes.data % 128 == 0 and st.rec.strides[0] == 128
    assert engine.rl.key == 8  # line 0: the 8 utilities; line 1: key, last step, d, the 8 buckets
    assert np.shares_memory(st.rec, st.rec_u) and np.shares_memory(st.rec, st.rec_p)


def test_populate_leaves_contents_alone():
    a = aligned_zeros(1 << 22, np.int64)  # 32 MiB: a mapping advised for huge pages
    a[::4096] = np.arange(a[::4096].size)
    before = a.copy()
    populate.ahead(a, 0, a.nbytes)
    populate.ahead(a, a.nbytes - 100, a.nbytes + 12345)  # clipped to the array
    time.sleep(0.2)
    assert np.array_equal(a, before)


def _batch(steps, rows, k):
    e = np.zeros(0, np.int64)
    return RecordBatch(np.asarray(steps, np.int64), np.zeros(len(rows), np.int32), np.asarray(rows, np.int64),
                       np.ones((len(rows), k), np.float32), e, np.zeros(0, np.int32), e, e, np.zeros(0, np.float32))


@pytest.mark.parametrize("policy", ["fiited", "row-prune", "full", "uniform-dim", "lru"])
def test_series_integers_are_int64_end_to_end(policy):
    """Steps near 2**63 (not representable in float64) reach the time series exactly; ratios are float64."""
    tables = [TableSpec("t", rows=100, dim=8, chunk=2)]
    cfg = ReplayConfig(budget_bytes=tables[0].dense_bytes // 2, page_bytes=64, interval=2, report_every=1)
    big = 2**63 - 10
    steps = [big, big, big + 3, big + 7]
    obj = POLICIES[policy](tables, cfg, True, False)
    obj.consume(_batch(steps, [1, 2, 1, 3], tables[0].chunks))
    frame = obj.finish().snapshots
    assert frame.columns == snapshot_columns(tables[0].chunks)
    assert frame["step"].to_list() == [big, big + 3, big + 7]
    for name in frame.columns:
        assert frame[name].dtype == (pl.Float64 if name in FLOAT_COLUMNS else pl.Int64), name
    assert frame["lookups"].to_list() == [2, 3, 4]
    assert set(COUNTER_COLUMNS + GAUGE_COLUMNS) <= set(frame.columns)
