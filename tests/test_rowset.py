"""The per-row bookkeeping maps (`fiitedsim/engine/rowset.py`) against Python sets and dicts."""
import numpy as np
import pytest

from fiitedsim.engine import rowset
from fiitedsim.engine.rowset import RowMap, TouchedRows


def lookups(seed=0, n=5000):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 3, n).astype(np.int32)
    row = (rng.zipf(1.2, n) % np.array([50, 7, 100_000])[table]).astype(np.int64)
    return table, row


def test_row_map_counts_lookups_per_row_through_growth():
    table, row = lookups()
    counts = RowMap(3, capacity=4)  # grows many times
    for lo in range(0, table.size, 333):
        counts.count(table[lo:lo + 333], row[lo:lo + 333])
    expected: dict = {}
    for t, r in zip(table.tolist(), row.tolist()):
        expected[(t, r)] = expected.get((t, r), 0) + 1
    t, r, c = counts.items()
    assert dict(zip(zip(t.tolist(), r.tolist()), c.tolist())) == expected
    assert list(zip(t.tolist(), r.tolist())) == sorted(expected)  # ascending (table, row)
    assert counts.size == len(expected)
    assert counts.per_table.tolist() == [sum(1 for k in expected if k[0] == x) for x in range(3)]
    got = counts.get(np.array([0, 1, 2], np.int64), np.array([10**9, 3, 99_999], np.int64), default=-7)
    assert got.tolist() == [-7, expected.get((1, 3), -7), expected.get((2, 99_999), -7)]


def test_row_map_put_overwrites():
    m = RowMap(2, capacity=2)
    m.put(np.array([0, 1, 0]), np.array([5, 5, 6]), np.array([1, 2, 3]))
    m.put(np.array([0]), np.array([5]), np.array([9]))
    assert m.size == 3
    assert m.get(np.array([0, 1, 0, 1], np.int64), np.array([5, 5, 6, 6], np.int64)).tolist() == [9, 2, 3, 0]


@pytest.mark.parametrize("bitmap", [True, False])
def test_touched_rows_count_distinct_rows_per_table(monkeypatch, bitmap):
    if not bitmap:
        monkeypatch.setattr(rowset, "BITMAP_MAX_ROWS", 0)
    table, row = lookups(1)
    touched = TouchedRows([50, 7, 100_000])
    assert (touched.bits is not None) == bitmap
    for lo in range(0, table.size, 1000):
        touched.add(table[lo:lo + 1000], row[lo:lo + 1000])
    pairs = set(zip(table.tolist(), row.tolist()))
    assert touched.per_table.tolist() == [sum(1 for p in pairs if p[0] == t) for t in range(3)]
    assert touched.size == len(pairs)
