"""The `lru` and `lfu` row caches (DESIGN 4) against libCacheSim and against hand-worked cases.

DESIGN 4: `lru` MUST reproduce libCacheSim's LRU miss ratio exactly on
unit-size requests. The oracle is the `libcachesim` PyPI package (the C
library's own Python bindings). Traces are replayed with one table of 1-byte
rows (dim = chunk = dtype_bytes = 1), so a budget of N bytes is a cache of N
rows, the same as libCacheSim's cache_size N on unit-size objects. `lfu` is
compared with libCacheSim's LFU the same way (docs/semantics.md, "Row caches":
our LFU follows libCacheSim's reading: in-cache frequencies, ties evicted in
LRU order).
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import libcachesim as lcs  # the oracle; in the `test` extra
import numpy as np
import pytest

from fiitedsim.config import ReplayConfig, TableSpec
from fiitedsim.engine import snapshot_columns
from fiitedsim.policies import POLICIES
from fiitedsim.policies.base import SUMMARY_KEYS
from fiitedsim.traces.source import RecordBatch, TraceSource
from fiitedsim.traces.writer import TraceWriter

ORACLE_DTYPE = np.dtype([("timestamp", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access_vtime", "<i8")])
UNIT = TableSpec("t", rows=1 << 20, dim=1, chunk=1, dtype_bytes=1)  # a row is 1 byte: budget bytes = rows
ORACLES = {"lru": lambda cap: lcs.LRU(cache_size=cap), "lfu": lambda cap: lcs.LFU(cache_size=cap)}
_E = np.zeros(0, np.int64)


def batch_of(step, table, row, imp_step=_E) -> RecordBatch:
    m = len(imp_step)
    return RecordBatch(np.asarray(step, np.int64), np.asarray(table, np.int32), np.asarray(row, np.int64), None,
                       np.asarray(imp_step, np.int64), np.zeros(m, np.int32), np.zeros(m, np.int64),
                       np.zeros(m, np.int64), np.zeros(m, np.float32))


def replay(name, rows, budget, tables=(UNIT,), table=None, step=None, report_every=100, cut=50_000, **cfg):
    """Replay lookups through policy `name`, fed in batches of `cut` lookups; one step per lookup by default."""
    rows = np.asarray(rows, np.int64)
    step = np.arange(rows.size) if step is None else np.asarray(step)
    table = np.zeros(rows.size, np.int32) if table is None else np.asarray(table)
    policy = POLICIES[name](list(tables), ReplayConfig(budget_bytes=budget, report_every=report_every, **cfg),
                            False, False)
    for lo in range(0, rows.size, cut):
        policy.consume(batch_of(step[lo:lo + cut], table[lo:lo + cut], rows[lo:lo + cut]))
    return policy.finish()


def misses(result) -> int:
    return result.summary["lookups"] - result.summary["row_hits"]


def write_oracle_general(path: Path, obj_ids) -> Path:
    """libCacheSim's oracleGeneral binary format: 24-byte records, unit sizes."""
    rec = np.zeros(len(obj_ids), ORACLE_DTYPE)
    rec["timestamp"] = np.arange(len(obj_ids))
    rec["obj_id"] = obj_ids
    rec["obj_size"] = 1
    rec["next_access_vtime"] = -1
    rec.tofile(path)
    return path


def oracle_misses(name, path: Path, capacity: int, n: int, ignore_size=False) -> int:
    """libCacheSim's process_trace miss ratio as a count (exact: n < 2**53, so rounding recovers it)."""
    params = lcs.ReaderInitParam()
    params.ignore_obj_size = ignore_size
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE, params)
    ratio = ORACLES[name](capacity).process_trace(reader)[0]
    count = round(ratio * n)
    assert abs(ratio - count / n) < 1e-12
    return count


def zipf_rows(n, n_objects, alpha, seed):
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, n_objects + 1, dtype=np.float64)
    p = ranks ** -alpha
    perm = rng.permutation(n_objects)  # popular ids scattered, not 0, 1, 2, ...
    return perm[rng.choice(n_objects, size=n, p=p / p.sum())].astype(np.int64)


# ---------------------------------------------------------------------------
# The oracle: libCacheSim


@functools.cache
def _dense_rows(path: Path) -> np.ndarray:
    _, rows = np.unique(np.fromfile(path, ORACLE_DTYPE)["obj_id"], return_inverse=True)
    return rows.astype(np.int64)


@pytest.fixture
def cloud_physics(shared_data):
    """The trace's requests as rows of one table (obj_id -> dense row id), and its path for libCacheSim."""
    path = shared_data / "cloudPhysicsIO.oracleGeneral.bin"
    return path, _dense_rows(path)


@pytest.mark.parametrize("name", ["lru", "lfu"])
@pytest.mark.parametrize("capacity", [1, 2, 100, 1000, 5000, 10000, 40000, 60000])
def test_cloud_physics_trace_matches_libcachesim(name, capacity, cloud_physics):
    """The real block-I/O trace (113,872 requests, 48,974 objects; sizes ignored = unit size)."""
    path, rows = cloud_physics
    expected = oracle_misses(name, path, capacity, rows.size, ignore_size=True)
    assert misses(replay(name, rows, capacity)) == expected
    # one step per 64 requests: several lookups of one row per step are each a request
    assert misses(replay(name, rows, capacity, step=np.arange(rows.size) // 64)) == expected


@pytest.mark.slow  # differential against libcachesim on generated traces
@pytest.mark.parametrize("alpha,n_objects,capacities", [(1.05, 20_000, [1, 50, 500, 5000]),
                                                       (0.7, 5_000, [10, 1000, 4000, 6000])])
def test_generated_parquet_trace_matches_libcachesim(tmp_path, alpha, n_objects, capacities):
    """A Zipf trace written as a fiitedsim Parquet trace (two tables of 256-byte rows) and as oracleGeneral.

    Both tables have the same row size, so a budget of c rows (c * 256 bytes) is libCacheSim's cache of c
    unit-size objects; obj_id = table * rows + row.
    """
    from fiitedsim.replay import replay as full_replay

    n, rows_per_table = 60_000, n_objects
    ids = zipf_rows(n, 2 * n_objects, alpha, seed=7)
    table, row = (ids // rows_per_table).astype(np.int32), ids % rows_per_table
    tables = [TableSpec(f"t{i}", rows=rows_per_table) for i in range(2)]  # D = 64, C = 8, fp32: 256 bytes
    trace = tmp_path / "trace.parquet"
    with TraceWriter(trace, tables, with_grad=False) as w:
        w.write(np.arange(n) // 100, table, row)
    oracle = write_oracle_general(tmp_path / "trace.oracleGeneral.bin", table.astype(np.uint64) * rows_per_table + row)
    budgets = [(str(c), c * 256) for c in capacities]
    results = full_replay(TraceSource(trace), ["lru", "lfu"], budgets, ReplayConfig())
    for c in capacities:
        for name in ("lru", "lfu"):
            s = results.summary["policies"][f"{name}@{c}"]
            assert s["lookups"] - s["row_hits"] == oracle_misses(name, oracle, c, n), (name, c)


@pytest.mark.parametrize("name", ["lru", "lfu"])
@pytest.mark.parametrize("capacity", [3, 64, 700])
def test_every_request_hits_as_in_libcachesim(name, capacity):
    """Not only the total: with one step per lookup and report_every = 1 the time series has the cumulative
    hits after every request, compared with libCacheSim's cache.get() request by request."""
    rows = zipf_rows(8000, 2000, 0.9, seed=capacity)
    cache = ORACLES[name](capacity)
    hits = np.zeros(rows.size, np.int64)
    for i, r in enumerate(rows):
        req = lcs.Request()
        req.obj_id, req.obj_size = int(r), 1
        hits[i] = cache.get(req)
    series = replay(name, rows, capacity, report_every=1, cut=777).snapshots
    assert series["step"].to_list() == list(range(rows.size))
    assert np.array_equal(series["row_hits"].to_numpy(), np.cumsum(hits))


# ---------------------------------------------------------------------------
# Hand-worked cases (unit rows: budget = rows)

A, B, C = 0, 1, 2


def hits(name, rows, budget, **kw) -> int:
    return replay(name, rows, budget, **kw).summary["row_hits"]


def test_lru_hand_worked():
    # capacity 2, cache listed oldest -> newest:
    # A miss [A]; B miss [A B]; A hit [B A]; C miss, evict B [A C]; B miss, evict A [C B];
    # A miss, evict C [B A]; C miss, evict B [A C]  -> 1 hit
    assert hits("lru", [A, B, A, C, B, A, C], 2) == 1
    # A A A B C B C, capacity 2: A miss, A hit, A hit, B miss [A B], C miss evict A [B C], B hit, C hit -> 4
    assert hits("lru", [A, A, A, B, C, B, C], 2) == 4


def test_lfu_hand_worked():
    # A B A C B A C, capacity 2 (frequency in brackets):
    # A miss {A1}; B miss {A1 B1}; A hit {B1 A2}; C miss: least frequent is B -> {A2 C1};
    # B miss: evict C1 -> {A2 B1}; A hit {B1 A3}; C miss: evict B -> {A3 C1}  -> 2 hits (LRU: 1)
    assert hits("lfu", [A, B, A, C, B, A, C], 2) == 2
    # A A A B C B C, capacity 2: A miss, A hit, A hit {A3}; B miss {A3 B1}; C miss, evict B {A3 C1};
    # B miss, evict C; C miss, evict B  -> 2 hits (LRU: 4)
    assert hits("lfu", [A, A, A, B, C, B, C], 2) == 2


def test_lfu_ties_go_to_the_least_recent_and_evicted_rows_restart_at_one():
    # A A B C C B A B C, capacity 2:
    # A miss {A1}; A hit {A2}; B miss {A2 B1}; C miss: evict B {A2 C1}; C hit {A2 C2}, C reached 2 after A;
    # B miss: tie at frequency 2, evict A (reached 2 first) {C2 B1}; A miss: evict B {C2 A1} (A restarts at 1,
    # it does not keep its old 2); B miss: evict A {C2 B1}; C hit.  -> hits: A, C, C = 3
    # (had A kept frequency 2 and come back at 3, the B miss would have evicted C and the last C would miss)
    assert hits("lfu", [A, A, B, C, C, B, A, B, C], 2) == 3


def test_mixed_row_sizes_and_a_row_larger_than_the_capacity():
    # t0: 2-byte rows (K = 2), t1: 4-byte rows (K = 4); capacity 6 bytes. Lookups (table, row):
    # (0,a) miss, used 2 [a]; (1,b) miss, used 6 [a b]; (0,c) miss: 6+2 > 6, evict a, used 4+2 [b c];
    # (0,a) miss: evict b, used 2+2 [c a]; (1,b) miss: 4+4 > 6, evict c, used 2+4 [a b]  -> no hit;
    # inserted chunks 2+4+2+2+4 = 14, freed 2+4+2 = 8, live 2+4 = 6.
    tables = [TableSpec("t0", rows=10, dim=2, chunk=1, dtype_bytes=1), TableSpec("t1", rows=10, dim=4, chunk=1,
                                                                                  dtype_bytes=1)]
    a, b, c = 1, 2, 3
    res = replay("lru", [a, b, c, a, b], 6, tables=tables, table=[0, 1, 0, 0, 1])
    s = res.summary
    assert (s["row_hits"], s["allocations"], s["frees"], s["live_chunks_final"]) == (0, 14, 8, 6)
    assert (s["chunks_requested"], s["payload_bytes_final"], s["payload_bytes_peak"]) == (14, 6, 6)
    assert s["tracked_rows"] == 2
    assert s["dim_hist_final"] == [18, 0, 1, 0, 1]  # 20 rows: a at d = 2, b at d = 4, the rest absent
    assert s["denied_full"] == 0
    # capacity 3: a 4-byte row never fits and is never inserted (each lookup of it is denied), the 2-byte ones do
    s = replay("lru", [b, a, b, a], 3, tables=tables, table=[1, 0, 1, 0]).summary
    assert (s["row_hits"], s["denied_full"], s["allocations"], s["payload_bytes_peak"]) == (1, 2, 2, 2)


def test_hits_count_every_chunk_and_memory_is_rows_times_row_bytes():
    # 256-byte rows (D 64, C 8, fp32, K = 8), budget 2 rows; A B A: 1 hit of 8 chunks out of 24 requested.
    tables = [TableSpec("t", rows=100)]
    s = replay("lru", [A, B, A], 512, tables=tables).summary
    assert (s["row_hits"], s["chunk_hits"], s["full_hits"], s["chunks_requested"]) == (1, 8, 1, 24)
    assert (s["payload_bytes_final"], s["index_bytes_final"], s["meta_bytes_final"]) == (512, 2 * 16, 2 * 8)
    assert s["total_bytes_peak"] == s["total_bytes_final"] == 512 + 32 + 16
    assert s["dim_hist_final"] == [98] + [0] * 7 + [2]
    assert s["theta_final"] == 0.0 and s["mapped_pages_final"] == 0 and s["rehashes"] == 0
    assert list(s) == SUMMARY_KEYS
    assert replay("lfu", [A, B, A], 512, tables=tables).summary["meta_bytes_final"] == 2 * 12


def test_budget_covers_all_charges_index_entry_and_links_per_row():
    # 1-byte rows; with --budget-covers all a cached row costs 1 + 16 (index entry) + 8 (LRU links) = 25 bytes:
    # budget 50 holds 2 rows (A B A: 1 hit), budget 49 only 1 (A, B evicts A, A misses: no hit).
    assert hits("lru", [A, B, A], 50, budget_covers="all") == 1
    assert hits("lru", [A, B, A], 49, budget_covers="all") == 0
    assert hits("lru", [A, B, A], 2) == 1  # payload only: 2 bytes are 2 rows


def test_time_series_lines_up_with_the_other_policies():
    """Same columns as every policy, snapshots at the same gaps of the merged stream (importance records
    count), the same whatever the batch cuts, and the last row equals the summary."""
    tables = [TableSpec("t0", rows=50, dim=16, chunk=4), TableSpec("t1", rows=40, dim=8, chunk=4)]
    rng = np.random.default_rng(3)
    step = np.sort(rng.integers(0, 400, 3000))
    table = rng.integers(0, 2, step.size).astype(np.int32)
    row = rng.integers(0, 40, step.size)
    imp_step = np.sort(rng.integers(0, 700, 50))
    cfg = ReplayConfig(budget_bytes=2000, report_every=7)
    frames = {}
    for name in ("full", "lru", "lfu"):
        for cuts in ([3000], [1, 500, 1499, 3000]):
            policy = POLICIES[name](tables, cfg, False, True)
            lo = 0
            for hi in cuts:  # each batch gets the importance records of its step range
                s_lo = step[lo - 1] if lo else -1
                s_hi = step[hi - 1] if hi < step.size else 10**9
                sel = (imp_step > s_lo) & (imp_step <= s_hi)
                policy.consume(batch_of(step[lo:hi], table[lo:hi], row[lo:hi], imp_step[sel]))
                lo = hi
            result = policy.finish()
            assert result.snapshots.columns == snapshot_columns(4)
            frames.setdefault(name, []).append(result)
    for name in ("lru", "lfu"):
        one, cut = frames[name]
        assert one.snapshots.equals(cut.snapshots) and one.summary == cut.summary
        assert one.snapshots["step"].to_list() == frames["full"][0].snapshots["step"].to_list()
        last = one.snapshots.row(-1, named=True)
        for key in ("lookups", "row_hits", "allocations", "frees", "payload_bytes", "tracked_rows"):
            summary_key = {"payload_bytes": "payload_bytes_final"}.get(key, key)
            assert last[key] == one.summary[summary_key]
        assert [last[f"dim_{d}"] for d in range(5)] == one.summary["dim_hist_final"]
        assert sum(one.summary["dim_hist_final"]) == 90


@pytest.mark.slow  # runs the command in a subprocess
def test_cli_replays_lru_and_lfu_on_the_shipped_sample(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "fiitedsim", "replay", "--policy", "lru,lfu", "--out", str(out),
                           "-q"], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["policies"]) == ["lru", "lfu"]
    for name in ("lru", "lfu"):
        assert list(summary["policies"][name]) == SUMMARY_KEYS
        assert (out / "timeseries" / f"{name}.parquet").is_file()


def test_policy_all_includes_the_row_caches():
    from fiitedsim.replay import parse_policies
    names = parse_policies("all")
    assert "lru" in names and "lfu" in names
