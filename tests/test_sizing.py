"""Policies sized before training from a window of the training split (`--size-from`), over vocabulary tables:
what uniform-dim, hash and mde store, what each run says it knew, and the unseen share, worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from fiitedsim.config import ReplayConfig, TableSpec
from fiitedsim.engine.rowset import RowMap
from fiitedsim.errors import InputError
from fiitedsim.policies import HashingTrick, UniformDim, knowledge, sized_from_window, window_text
from fiitedsim.train.data import synthetic
from fiitedsim.train.loop import TrainConfig
from fiitedsim.train.runner import unseen_share, window_lookups, window_samples

TABLES = [TableSpec("a", 11, 16, 4), TableSpec("b", 4, 16, 4)]


def window(pairs) -> RowMap:
    """A sizing window's lookups: (table, row) pairs, each once."""
    counts = RowMap(2)
    table, row = zip(*pairs)
    counts.count(np.array(table, np.int32), np.array(row, np.int64))
    return counts


def test_uniform_dim_stores_the_window_rows_only():
    policy = UniformDim(TABLES, ReplayConfig(budget_bytes=100), True, False)
    # over the tables: 15 rows x 4 bytes = 60 bytes a dimension: D' = 1
    assert policy.dims == 1 and policy.payload_bytes == 60
    policy.set_frequencies(window([(0, 1), (0, 2), (0, 3), (1, 1)]))
    # 4 stored rows x 4 bytes = 16 bytes a dimension: D' = floor(100 / 16) = 6, payload 4 x 6 x 4 = 96
    assert policy.dims == 6 and policy.payload_bytes == 96
    dims = policy.resident_dims(np.array([0, 0, 1, 1]), np.array([1, 5, 1, 2]))
    assert dims.tolist() == [6, 0, 6, 0]          # a row the window never saw reads nothing
    # rows by whole chunks (C = 4): 4 stored rows at 1 chunk, the other 11 of the 15 at 0
    assert policy.dim_hist == [11, 4, 0, 0, 0]


def test_hash_over_vocabulary_gives_every_table_a_row_then_splits_by_the_window_rows():
    policy = HashingTrick(TABLES, ReplayConfig(budget_bytes=256), True, False)
    policy.set_frequencies(window([(0, r) for r in range(1, 6)] + [(1, 1)]))
    # row bytes 64: one row each first (128 bytes), 128 left, split by the window rows' dense size 5 x 64 : 1 x 64:
    # a gets 1 + (128 * 320 // 384 = 106) // 64 = 2 rows (of its 5), b 1 + (128 * 64 // 384 = 21) // 64 = 1 row
    assert policy.n_buckets.tolist() == [2, 1] and policy.payload_bytes == 3 * 64
    table, row = np.array([0, 0, 1, 1]), np.array([1, 9, 1, 3])
    assert policy.resident_dims(table, row).tolist() == [16, 0, 16, 0]
    # b keeps its one window row whole: it reads itself; a's rows share 2 buckets
    assert policy.remap(np.array([1]), np.array([1])).tolist() == [1]
    assert set(policy.remap(np.zeros(5, np.int64), np.arange(1, 6)).tolist()) <= {0, 1}


def test_hash_over_vocabulary_refuses_a_budget_below_one_row_per_table():
    HashingTrick.check_budget(TABLES, ReplayConfig(budget_bytes=128), vocabulary=True)
    with pytest.raises(InputError, match="holds no full row of every table for hash; the smallest workable budget "
                                         "is 128 bytes"):
        HashingTrick.check_budget(TABLES, ReplayConfig(budget_bytes=127), vocabulary=True)


def test_what_each_policy_knew():
    assert window_text(1.0) == "the whole training split"
    assert window_text(0.1) == "the first 10% of the training split"
    words = "the first 10% of the training split"
    assert knowledge("mde", words) == "sized from the first 10% of the training split"
    assert knowledge("uniform-dim", words, vocabulary=True) == "sized from the first 10% of the training split"
    assert knowledge("uniform-dim", words, vocabulary=False) == "sized from the table sizes"
    assert knowledge("hash", words) == "sized from the table sizes"
    assert knowledge("fiited", words) == knowledge("row-prune", words) == "in training, online"
    assert knowledge("full", words) == "dense reference: every row whole"
    assert [sized_from_window(n, True) for n in ("mde", "uniform-dim", "hash", "fiited", "full")] == [
        True, True, True, False, False]
    assert [sized_from_window(n, False) for n in ("mde", "uniform-dim", "hash")] == [True, False, False]


def test_sizing_window_and_unseen_share_by_hand():
    # tests/test_train_data.py::test_drift_by_hand's data: 100 samples, 90 training; rows (i + 1) // 10 + 1 for
    # i < 99, then 0 (a value first seen in evaluation)
    ds = synthetic(samples=100, fields=1, rows=40, alpha=40.0, dense=2, seed=0, drift=0.5, vocabulary=True)
    whole, half = TrainConfig(), TrainConfig(size_from=0.5)
    assert window_samples(ds, whole) == 90 and window_samples(ds, half) == 45
    # the whole split saw rows 1..10: of the 10 evaluated lookups (rows 10 x 9, then 0) only the last is unseen
    assert unseen_share(ds, whole) == pytest.approx(0.1)
    # its first 45 samples saw rows 1..5 (sample 44: 45 // 10 + 1 = 5): every evaluated lookup is unseen
    assert unseen_share(ds, half) == 1.0
    table, row, count = window_lookups(ds, half).items()
    assert row.tolist() == [1, 2, 3, 4, 5] and count.tolist() == [9, 10, 10, 10, 6]


@pytest.mark.slow  # trains models
def test_each_seed_trains_on_its_own_vocabulary_tables():
    """Synthetic data is drawn anew per seed, so its vocabulary tables differ: each seed's policy is built on its
    own tables (full stores each seed's own dense size; a fractional budget is a share of each seed's)."""
    from fiitedsim.config import ReplayConfig
    from fiitedsim.train.runner import load_data, run_all, train_config

    def data(seed):
        return load_data("synthetic", None, None, None, 3000, 3, None, 8, seed)
    dense = {seed: sum(data(seed).rows) * 8 * 4 for seed in (0, 1)}
    assert dense[0] != dense[1]
    tcfg = train_config(dim=8, chunk=4, batch=256, seed=0)
    out = run_all(data, "synthetic", ["full", "uniform-dim"], "0.5", tcfg, ReplayConfig(page_bytes=64), seeds=[0, 1])
    full = out.summary["policies"]["full@0.5"]["per_seed"]
    assert [e["payload_bytes_peak"] for e in full] == [dense[0], dense[1]]
    assert out.summary["config"]["dense_bytes"] == dense[0]    # the summary's tables are the first seed's
