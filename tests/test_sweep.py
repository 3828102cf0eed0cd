"""`fiitedsim sweep`: validation, equality with plain replays, resume, --force, and surviving a killed worker.

Clusters are real `distributed` clusters of worker processes on 127.0.0.1. One
module-scoped cluster serves the tests that go through `--scheduler` (the code
path is the same as for local runs); the local default path is exercised once,
and the killed-worker test starts its own cluster. Kernels are compiled in this
process first (`warm`), so workers load them from the on-disk cache.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_cli import assert_clean_failure, fails_cleanly, run

from fiitedsim import cli
from fiitedsim.config import ReplayConfig, TableSpec, resolve_layout
from fiitedsim.policies.base import SUMMARY_KEYS
from fiitedsim.replay import replay
from fiitedsim.sweep import POINTS_DIR, load_sweep_file, plan_points, plan_tasks
from fiitedsim.traces.source import TraceSource
from fiitedsim.traces.writer import TraceWriter

distributed = pytest.importorskip("distributed")

TABLES = [TableSpec("a", rows=50_000, dim=16, chunk=4), TableSpec("b", rows=20_000, dim=16, chunk=4)]
QUIET = {"warn": lambda m: None}


def write_trace(path: Path, steps: int, per_step: int, seed: int, first_step: int = 0, grad: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    n = steps * per_step
    step = np.repeat(np.arange(first_step, first_step + steps), per_step)
    table = rng.integers(0, 2, n).astype(np.int32)
    row = (rng.zipf(1.2, n) % np.where(table == 0, 50_000, 20_000)).astype(np.int64)
    norms = rng.gamma(2.0, 0.5, size=(n, 4)).astype(np.float32)
    with TraceWriter(path, TABLES, with_grad=grad) as w:
        for a in range(0, n, 1 << 18):
            w.write(step[a:a + (1 << 18)], table[a:a + (1 << 18)], row[a:a + (1 << 18)],
                    norms[a:a + (1 << 18)] if grad else None)
    return path


def write_sweep(path: Path, **keys) -> Path:
    """A [sweep] table; JSON values are valid TOML for strings, numbers, booleans and their lists."""
    path.write_text("[sweep]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A small trace file and a two-part folder trace (no grad_norm, so chunk sizes can be swept); kernels warmed."""
    root = tmp_path_factory.mktemp("sweep_in")
    write_trace(root / "small.parquet", steps=60, per_step=64, seed=1)
    (root / "parts").mkdir()
    write_trace(root / "parts" / "part-1.parquet", steps=30, per_step=64, seed=2)
    write_trace(root / "parts" / "part-2.parquet", steps=30, per_step=64, seed=3, first_step=30)
    source = TraceSource(root / "small.parquet", **QUIET)
    replay(source, ["fiited", "uniform-dim", "row-prune"], [("0.1", 10**6)], ReplayConfig(interval=5))
    write_trace(root / "grad.parquet", steps=10, per_step=64, seed=4, grad=True)
    replay(TraceSource(root / "grad.parquet", **QUIET), ["fiited"], [("0.1", 10**6)], ReplayConfig(interval=5))
    return root


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as c:
        yield c


def final_line(result) -> str:
    assert result.code == 0, result
    return result.err.strip().splitlines()[-1]


def reference(trace: Path, policy: str, budget: str, chunk: int | None, **knobs) -> tuple[dict, list]:
    """The point computed by a plain replay() of one policy at one budget."""
    from fiitedsim.config import dense_bytes, parse_budget

    source = TraceSource(trace, **QUIET)
    if chunk is not None:
        source.set_tables([TableSpec(t.name, t.rows, t.dim, chunk, t.dtype_bytes) for t in source.tables])
    bytes_ = parse_budget(budget, dense_bytes(source.tables))
    cfg = ReplayConfig(**knobs)
    results = replay(source, [policy], [(budget, bytes_)], cfg)
    return results.summary, results.series[policy].to_dicts()


# ---------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written


BAD_FILES = [
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "out": "o", "gama": [0.9]},
     ["unknown key 'gama'", "allowed"]),
    ({"traces": ["small.parquet"], "policies": [], "budgets": [0.1], "out": "o"}, ["policies", "is empty"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "chunk": [], "out": "o"},
     ["chunk", "is empty"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "interval": ["100"], "out": "o"},
     ["interval[0]", "expected an integer", "'100'"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "gamma": [True], "out": "o"},
     ["gamma[0]", "expected a number"]),
    ({"traces": "small.parquet", "policies": ["fifo"], "budgets": [0.1], "out": "o"}, ["unknown policy 'fifo'"]),
    ({"traces": ["missing.parquet"], "policies": ["fiited"], "budgets": [0.1], "out": "o"},
     ["trace file not found", "missing.parquet"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1, 0.1], "out": "o"}, ["0.1", "twice"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": ["lots"], "out": "o"},
     ["'lots'", "not a number"]),
    ({"policies": ["fiited"], "budgets": [0.1], "out": "o"}, ["lacks 'traces'"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1]}, ["no output folder", "--out"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "chunk": [3], "out": "o"},
     ["small.parquet", "does not divide"]),
    ({"traces": ["grad.parquet"], "policies": ["fiited"], "budgets": [0.1], "chunk": [8], "out": "o"},
     ["grad.parquet", "has grad_norm", "without grad_norm"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "gamma": [1.5], "out": "o"},
     ["--gamma must be in (0, 1]"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "page_bytes": ["auto", "big"],
      "out": "o"}, ["page_bytes[1]", 'expected an integer or "auto"', "'big'"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "index_initial": "1024", "out": "o"},
     ["index_initial", 'expected an integer or "auto"', "'1024'"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "index_initial": ["auto", 1000],
      "out": "o"}, ["--index-initial must be a power of two, got 1000"]),
    ({"traces": ["small.parquet"], "policies": ["fiited"], "budgets": [0.1], "page_bytes": ["auto", "auto"],
      "out": "o"}, ["page_bytes lists 'auto' twice"]),
]


@pytest.mark.parametrize("keys, words", BAD_FILES, ids=[w[0] for _, w in BAD_FILES])
def test_bad_sweep_file_is_one_line_exit_2(monkeypatch, capsys, tmp_path, inputs, keys, words):
    folder = tmp_path / "w"
    folder.mkdir()
    for name in ("small.parquet", "grad.parquet"):
        (folder / name).write_bytes((inputs / name).read_bytes())
    toml = write_sweep(folder / "sweep.toml", **keys)
    fails_cleanly(monkeypatch, capsys, folder, ["sweep", toml, "-q"], *words)


def test_not_toml_and_no_sweep_table(monkeypatch, capsys, tmp_path):
    (tmp_path / "bad.toml").write_text("[sweep\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", tmp_path / "bad.toml"], "not valid TOML")
    (tmp_path / "other.toml").write_text("[grid]\ntraces = []\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", tmp_path / "other.toml"], "unknown top-level key 'grid'")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", tmp_path / "none.toml"], "sweep file not found")


def test_out_folder_that_is_not_a_sweep_is_refused(monkeypatch, capsys, tmp_path, inputs):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")], policies=["full"], budgets=[0.1])
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", toml, "--out", tmp_path / "o"], "not a fiitedsim sweep")


@pytest.mark.slow  # waits out a connection timeout
def test_unreachable_scheduler_fails_within_the_timeout(monkeypatch, capsys, tmp_path, inputs):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")], policies=["full"], budgets=[0.1],
                       out=str(tmp_path / "o"))
    t0 = time.monotonic()
    result = run(monkeypatch, capsys, "sweep", toml, "--scheduler", f"tcp://127.0.0.1:{port}",
                 "--connect-timeout", "2", "-q")
    elapsed = time.monotonic() - t0
    assert_clean_failure(result, "cannot reach the Dask scheduler", f"127.0.0.1:{port}", "within 2 s")
    assert elapsed < 2 + 5, elapsed
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------
# Results


def test_plan_expands_the_grid_in_axis_order(tmp_path, inputs):
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet"), str(inputs / "parts")],
                       policies=["fiited", "full"], budgets=[0.05, "1MiB"], chunk=[4, 8], gamma=0.99)
    points = plan_points(load_sweep_file(toml), warn=lambda m: None)
    assert len(points) == 2 * 2 * 2 * 2
    assert list(points[0].axes) == ["trace", "policy", "budget", "chunk", "gamma"]
    assert [p.axes["chunk"] for p in points[:4]] == [4, 8, 4, 8]
    assert len({p.key for p in points}) == len(points)
    # the key depends on the trace's files: touching one part changes only that trace's keys
    again = plan_points(load_sweep_file(toml), warn=lambda m: None)
    assert [p.key for p in again] == [p.key for p in points]
    os.utime(inputs / "parts" / "part-2.parquet", ns=(1, 1))
    moved = plan_points(load_sweep_file(toml), warn=lambda m: None)
    assert [a.key == b.key for a, b in zip(points, moved)] == [p.axes["trace"].endswith("small.parquet")
                                                              for p in points]


def test_plan_takes_auto_and_numbers_as_layout_knobs(tmp_path, inputs):
    """page_bytes and index_initial axes mix "auto" and numbers; each point keeps the value as given, and each
    budget of an auto point resolves to its own page size."""
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")], policies=["fiited"],
                       budgets=["64KiB", "1MiB"], page_bytes=["auto", 1024], index_initial="auto")
    points = plan_points(load_sweep_file(toml), warn=lambda m: None)
    assert [(p.axes["budget"], p.axes["page_bytes"], p.axes["index_initial"]) for p in points] == [
        ("64KiB", "auto", "auto"), ("64KiB", 1024, "auto"), ("1MiB", "auto", "auto"), ("1MiB", 1024, "auto")]
    assert [p.spec.config.page_bytes for p in points] == ["auto", 1024, "auto", 1024]
    assert len({p.key for p in points}) == 4
    # one pool of 16-byte chunks (a and b: D = 16, C = 4): 65,536 // 4096 = 16 pages; 1,048,576 // 65536 = 16
    pages = [resolve_layout(list(p.spec.tables), p.spec.config.with_budget(p.spec.budget_bytes)).page_bytes
             for p in points]
    assert pages == [4096, 1024, 65536, 1024]


def test_points_sharing_a_trace_pass_are_batched_round_robin(tmp_path, inputs):
    """Tasks by hand: (policy, budget) points of one trace and knobs share a pass; other knobs do not."""
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")],
                       policies=["fiited", "row-prune", "full"], budgets=[0.05, 0.1, 0.2, 0.4], gamma=[0.99, 0.9])
    points = plan_points(load_sweep_file(toml), warn=lambda m: None)
    assert len(points) == 24

    def names(tasks):
        return [[(p.axes["policy"], p.axes["budget"], p.axes["gamma"]) for p in task] for task in tasks]

    # two groups of 12 (one per gamma); at most 4 per task -> 3 tasks, rounded up to 2 workers -> 4 of 3 each
    tasks = plan_tasks(points, workers=2, points_per_task=4)
    assert [len(t) for t in tasks] == [3, 3, 3, 3, 3, 3, 3, 3]
    group = [p for p in points if p.axes["gamma"] == 0.99]  # grid order: policy, budget, gamma
    assert names(tasks[:4]) == names([group[0::4], group[1::4], group[2::4], group[3::4]])
    assert names(tasks[0:1]) == [[("fiited", "0.05", 0.99), ("row-prune", "0.05", 0.99), ("full", "0.05", 0.99)]]
    assert all(len({p.axes["gamma"] for p in t}) == 1 for t in tasks)
    assert sorted(p.key for t in tasks for p in t) == sorted(p.key for p in points)
    # one point per task; and a group smaller than the workers gets one task per point
    assert [len(t) for t in plan_tasks(points, workers=2, points_per_task=1)] == [1] * 24
    assert [len(t) for t in plan_tasks(points[:3], workers=4, points_per_task=4)] == [1, 1, 1]
    assert [len(t) for t in plan_tasks(points, workers=1, points_per_task=100)] == [12, 12]


@pytest.mark.slow  # starts a Dask cluster
def test_sweep_equals_separate_replays(monkeypatch, capsys, tmp_path, inputs, cluster):
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet"), str(inputs / "parts")],
                       policies=["fiited", "uniform-dim"], budgets=[0.05, "0.2"], chunk=[4, 8], gamma=[0.99],
                       interval=5, report_every=10, out="o")
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "16 points (16 computed, 0 already stored)" in line
    out = tmp_path / "o"
    frame = pl.read_parquet(out / "points.parquet")
    assert frame.height == 16 and frame["key"].n_unique() == 16
    assert frame.columns[:9] == ["key", "trace", "policy", "budget", "chunk", "gamma", "interval", "report_every",
                                 "budget_bytes"]
    assert all(k in frame.columns for k in SUMMARY_KEYS)
    assert frame.schema["dim_hist_final"] == pl.List(pl.Int64)
    for row in frame.iter_rows(named=True):
        summary, series = reference(Path(row["trace"]), row["policy"], row["budget"], row["chunk"],
                                    gamma=0.99, interval=5, report_every=10)
        record = json.loads((out / POINTS_DIR / f"{row['key']}.json").read_text())
        assert record["summary"] == summary
        assert pl.read_parquet(out / POINTS_DIR / f"{row['key']}.parquet").to_dicts() == series
        assert {k: row[k] for k in SUMMARY_KEYS} == summary["policies"][row["policy"]]
    page = (out / "report.html").read_text()
    # 3 charts in each of the 4 groups (trace x chunk), and the dim hit rate along chunk once per trace
    assert page.count('class="chart"') == 4 * 3 + 2 and "http://" not in page.split("<body>")[1][:2000]
    assert re.findall(r'<h3 id="sec-knob-\d">(.*?)</h3>', page) == [
        f"dim hit rate % and total memory along chunk (trace {t})"
        for t in (inputs / "small.parquet", inputs / "parts")]
    # each group: its ranking, its equal-memory table and its budgets with their shares of the dense sizes
    for i in range(4):
        assert f'id="g{i}-ranking"' in page and f'id="g{i}-equal-memory"' in page
    assert page.count("of the dense size of the") >= 4 * 2


@pytest.mark.slow  # starts a Dask cluster
def test_layout_knobs_auto_and_numbers_equal_separate_replays(monkeypatch, capsys, tmp_path, inputs, cluster):
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")], policies=["fiited", "row-prune"],
                       budgets=[0.01, "0.05"], page_bytes=["auto", 1024], index_initial=["auto", 64], interval=5,
                       out="o")
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "16 points (16 computed, 0 already stored)" in line
    frame = pl.read_parquet(tmp_path / "o" / "points.parquet")
    assert frame.schema["page_bytes"] == frame.schema["index_initial"] == pl.String
    assert sorted(set(frame["page_bytes"])) == ["1024", "auto"] and sorted(set(frame["index_initial"])) == ["64",
                                                                                                            "auto"]
    for row in frame.iter_rows(named=True):
        knobs = {k: int(row[k]) if row[k] != "auto" else "auto" for k in ("page_bytes", "index_initial")}
        summary, series = reference(Path(row["trace"]), row["policy"], row["budget"], None, interval=5, **knobs)
        record = json.loads((tmp_path / "o" / POINTS_DIR / f"{row['key']}.json").read_text())
        assert record["summary"] == summary
        assert record["summary"]["config"]["page_bytes"] == knobs["page_bytes"]  # as given
        [budget] = record["summary"]["config"]["budgets"]
        assert isinstance(budget["page_bytes"], int) and len(budget["index_initial"]) == 2
        assert pl.read_parquet(tmp_path / "o" / POINTS_DIR / f"{row['key']}.parquet").to_dicts() == series


@pytest.mark.slow  # starts a Dask cluster
def test_resume_recomputes_only_missing_points_and_force_recomputes_all(monkeypatch, capsys, tmp_path, inputs,
                                                                       cluster):
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")],
                       policies=["fiited", "row-prune", "full"], budgets=[0.05, 0.1], interval=5, out="o")
    out = tmp_path / "o"
    # the default path: a LocalCluster of this run's own
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--workers", "2", "-q"))
    assert "6 points (6 computed, 0 already stored)" in line
    table = (out / "points.parquet").read_bytes()
    report = (out / "report.html").read_bytes()
    stored = sorted((out / POINTS_DIR).glob("*.json"))
    assert len(stored) == 6
    mtimes = {p: p.stat().st_mtime_ns for p in stored}
    stored[2].unlink()
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "6 points (1 computed, 5 already stored)" in line
    assert (out / "points.parquet").read_bytes() == table
    assert (out / "report.html").read_bytes() == report
    # a damaged series (issue 21, class H: every rerun failed with ComputeError) is computed again as well
    stored[2].with_suffix(".parquet").write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    result = run(monkeypatch, capsys, "report", out, "-o", tmp_path / "r.html")
    assert result.code == 2 and "missing or damaged" in result.err, result
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "6 points (1 computed, 5 already stored)" in line
    assert (out / "report.html").read_bytes() == report
    mtimes[stored[2]] = stored[2].stat().st_mtime_ns
    assert {p: p.stat().st_mtime_ns for p in stored if p != stored[2]} == \
        {p: t for p, t in mtimes.items() if p != stored[2]}
    # nothing to do: no cluster is contacted at all (an unreachable address does not matter)
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", "tcp://127.0.0.1:9", "-q"))
    assert "6 points (0 computed, 6 already stored)" in line
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address,
                          "--force", "-q"))
    assert "6 points (6 computed, 0 already stored)" in line
    assert (out / "points.parquet").read_bytes() == table
    assert all(p.stat().st_mtime_ns != mtimes[p] for p in stored if p != stored[2])
    assert sorted(p.name for p in (out / POINTS_DIR).iterdir()) == sorted(
        [p.name for p in stored] + [p.with_suffix(".parquet").name for p in stored])


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "out of range", "wrong type"])
def test_a_damaged_stored_series_is_not_stored_so_it_is_computed_again(tmp_path, damage):
    """Issue 21, class H: a garbage points/KEY.parquet made every rerun fail with polars' ComputeError; a damaged
    JSON was already recomputed. Either file damaged means the point is not stored."""
    from report_fixtures import stored_points

    from fiitedsim.sweep.results import _stored

    points = stored_points(tmp_path)
    for kind, key in points.items():
        assert _stored(tmp_path, key) is not None
        target = tmp_path / POINTS_DIR / f"{key}.parquet"
        good = target.read_bytes()
        if damage == "garbage":
            target.write_bytes(b"PAR1" + b"\x17" * 300 + b"PAR1")
        elif damage == "empty":
            target.write_bytes(b"")
        elif damage == "truncated":
            target.write_bytes(good[: len(good) // 2])
        else:
            frame = pl.read_parquet(target)
            column = {"replay": "fragmentation", "train": "auc"}[kind] if damage == "out of range" else "step"
            frame.with_columns((pl.lit(7.5) if damage == "out of range" else pl.col(column).cast(pl.String))
                               .alias(column)).write_parquet(target)
        assert _stored(tmp_path, key) is None, (kind, damage)


@pytest.mark.slow  # starts a Dask cluster
def test_killed_worker_every_point_exactly_once_and_equal_to_a_local_run(monkeypatch, capsys, tmp_path, inputs):
    """The issue's required test: a worker is SIGKILLed mid-sweep; Dask reruns its task elsewhere."""
    big = write_trace(tmp_path / "big.parquet", steps=400, per_step=4096, seed=5, grad=True)  # 1.6M lookups per point
    budgets = [0.02, 0.04, 0.08, 0.16, 0.32, 0.64]
    toml = write_sweep(tmp_path / "s.toml", traces=[str(big)], policies=["fiited"], budgets=budgets, out="o")
    out = tmp_path / "o"
    killed = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_one_busy_worker():
            while not killed and not finished.is_set():
                done = len(list((out / POINTS_DIR).glob("*.json"))) if (out / POINTS_DIR).is_dir() else 0
                busy = [w for w, keys in client.processing().items() if keys] if done else []
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.update(done=done, worker=busy[0])
                time.sleep(0.05)

        finished = threading.Event()

        watcher = threading.Thread(target=kill_one_busy_worker, daemon=True)
        watcher.start()
        try:
            # 2 points per task: 4 tasks of 2, 2, 1, 1 points on 2 workers, so a task is still running
            # when the first one has stored its points (and a killed task loses two points at once)
            result = run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address,
                         "--points-per-task", "2", "-q")
        finally:
            finished.set()
            watcher.join()
    line = final_line(result)
    assert killed and killed["done"] < len(budgets), killed
    assert f"{len(budgets)} points ({len(budgets)} computed, 0 already stored)" in line
    assert len(list((out / POINTS_DIR).glob("*.json"))) == len(budgets)
    frame = pl.read_parquet(out / "points.parquet")
    assert frame["budget"].to_list() == [repr(b) for b in budgets] and frame["key"].n_unique() == len(budgets)
    # the local run: one replay() of every budget in this process
    from fiitedsim.replay import parse_budgets

    source = TraceSource(big, **QUIET)
    local = replay(source, ["fiited"], parse_budgets(",".join(map(repr, budgets)), source.tables), ReplayConfig())
    for row in frame.iter_rows(named=True):
        expected = local.summary["policies"][f"fiited@{row['budget']}"]
        assert {k: row[k] for k in SUMMARY_KEYS} == expected
        stored = pl.read_parquet(out / POINTS_DIR / f"{row['key']}.parquet")
        assert stored.equals(local.series[f"fiited@{row['budget']}"])


@pytest.mark.slow  # starts a Dask cluster
def test_a_point_that_fails_on_its_data_leaves_the_others_stored(monkeypatch, capsys, tmp_path, inputs, cluster):
    """Steps decreasing across parts show only while replaying (on a worker): that point fails, the rest is kept."""
    bad = tmp_path / "bad"
    bad.mkdir()
    write_trace(bad / "part-1.parquet", steps=10, per_step=8, seed=6, first_step=50)
    write_trace(bad / "part-2.parquet", steps=10, per_step=8, seed=7)
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet"), str(bad)], policies=["full"],
                       budgets=[0.1], out="o")
    result = run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q")
    assert_clean_failure(result, "1 of 2 points failed", "trace=", "non-decreasing", "the 1 finished points are stored")
    assert len(list((tmp_path / "o" / POINTS_DIR).glob("*.json"))) == 1
    assert not (tmp_path / "o" / "points.parquet").exists()


@pytest.mark.parametrize("args, words", [
    (["--workers", "0"], ["--workers must be at least 1"]),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], ["--workers sizes the local cluster"]),
    (["--connect-timeout", "0", "--scheduler", "tcp://127.0.0.1:9"], ["--connect-timeout must be positive"]),
    (["--points-per-task", "0"], ["--points-per-task must be at least 1"]),
])
def test_bad_options(monkeypatch, capsys, tmp_path, inputs, args, words):
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")], policies=["full"], budgets=[0.1],
                       out="o")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", toml, *args], *words)


@pytest.mark.slow  # starts a Dask cluster
def test_generated_traces_per_seed_equal_fiitedsim_generate_and_plain_replays(monkeypatch, capsys, tmp_path,
                                                                                 cluster):
    """generate = {..., seed = [0, 1]}: one trace per seed under OUT/traces/, byte-identical to what
    `fiitedsim generate` writes with the same options, each point exactly its replay, `generate_seed` a column."""
    opts = {"tables": 2, "rows": 3000, "steps": 12, "batch": 64, "dim": 16, "chunk": 4}
    toml = tmp_path / "gen.toml"
    toml.write_text('[sweep]\ngenerate = {tables = 2, rows = 3000, steps = 12, batch = 64, dim = 16, chunk = 4, '
                    'seed = [0, 1]}\npolicies = ["fiited", "hash"]\nbudgets = [0.1]\ninterval = [4]\n'
                    'page_bytes = 1024\nout = "o"\n')
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "4 points (4 computed, 0 already stored)" in line
    frame = pl.read_parquet(tmp_path / "o" / "points.parquet")
    assert frame.columns[:6] == ["key", "trace", "generate_seed", "policy", "budget", "interval"]
    assert frame.select("trace", "generate_seed", "policy").rows() == [
        ("generate seed=0", 0, "fiited"), ("generate seed=0", 0, "hash"),
        ("generate seed=1", 1, "fiited"), ("generate seed=1", 1, "hash")]
    made = sorted((tmp_path / "o" / "traces").glob("*.parquet"))
    assert len(made) == 2
    for seed in (0, 1):
        mine = tmp_path / f"seed{seed}.parquet"
        args = [a for k, v in opts.items() for a in ("--table-count" if k == "tables" else f"--{k}", str(v))]
        assert run(monkeypatch, capsys, "generate", mine, *args, "--seed", str(seed), "-q").code == 0
        [twin] = [p for p in made if p.read_bytes() == mine.read_bytes()]
        for policy in ("fiited", "hash"):
            direct = replay(TraceSource(twin, **QUIET), [policy], [("0.1", frame["budget_bytes"][0])],
                            ReplayConfig(interval=4, page_bytes=1024)).summary["policies"][policy]
            row = frame.filter((pl.col("generate_seed") == seed) & (pl.col("policy") == policy)).row(0, named=True)
            assert {k: row[k] for k in SUMMARY_KEYS} == {k: direct[k] for k in SUMMARY_KEYS}
    # the report shows how each policy spreads over the two seeds: mean and per-seed dim hit rates of points.parquet
    page = (tmp_path / "o" / "report.html").read_text()
    spread = page.split('id="spread-0"')[1].split("</table>")[0]
    for policy in ("fiited", "hash"):
        rates = frame.filter(pl.col("policy") == policy).sort("generate_seed")["dim_hit_rate"].to_list()
        mean, sd = sum(rates) / 2, abs(rates[0] - rates[1]) / 2 ** 0.5
        assert (f"<td>{policy}@0.1</td><td>{100 * mean:.2f}% ± {100 * sd:.2f}</td>"
                f"<td>{100 * rates[0]:.2f} {100 * rates[1]:.2f}</td>") in spread
    again = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "4 points (0 computed, 4 already stored)" in again  # same files, same keys: nothing regenerated


@pytest.mark.parametrize("body, words", [
    ('generate = {seed = [0, 0]}', ["generate.seed lists 0 twice"]),
    ('generate = {sead = 1}', ["unknown option 'sead'", "seed"]),
    ('generate = {chunk = 5}', ["generate", "--chunk 5 does not divide --dim 64"]),
    ('generate = 3', ["generate: expected a table"]),
    ('generate = {seed = 1}\ntraces = ["x.parquet"]', ["has both 'traces' and 'generate'"]),
    ('generate = {seed = 1}\ntables = "t.json"', ["generated traces have their own"]),
])
def test_bad_generate_tables(monkeypatch, capsys, tmp_path, body, words):
    toml = tmp_path / "bad.toml"
    toml.write_text(f'[sweep]\n{body}\npolicies = ["fiited"]\nbudgets = [0.1]\nout = "o"\n')
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", toml, "-q"], *words)


# ---------------------------------------------------------------------------
# Issue 14, item 4: a --scheduler that is not a Dask scheduler, and a failing point's worker log


@contextlib.contextmanager
def fake_server(behaviour: str):
    """A TCP server on 127.0.0.1 that accepts connections and then stays silent, talks HTTP, or sends garbage."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held, stop = [], threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            if behaviour == "http":  # what a web server (or an HTTP proxy) answers to bytes it does not understand
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            elif behaviour == "length":  # a plausible length, then something that is no handshake
                conn.sendall(b"\x05\x00\x00\x00\x00\x00\x00\x00hello")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.slow  # waits out a connection timeout
@pytest.mark.parametrize("behaviour, words", [
    ("silent", ["sent no Dask handshake within 2 s"]),
    ("http", ["its first bytes are 'HTTP/1.1'"]),
    ("length", ["its first message is no Dask handshake"]),
])
def test_a_server_that_is_not_a_dask_scheduler_fails_within_the_timeout(monkeypatch, capsys, tmp_path, inputs,
                                                                        behaviour, words):
    """Dask's client waited for a handshake without a time limit (hours against a silent port) and read an HTTP
    reply as a frame length (MemoryError: Unable to allocate 3.07 EiB)."""
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")], policies=["full"], budgets=[0.1],
                       out=str(tmp_path / "o"))
    with fake_server(behaviour) as address:
        t0 = time.monotonic()
        result = run(monkeypatch, capsys, "sweep", toml, "--scheduler", address, "--connect-timeout", "2", "-q")
        elapsed = time.monotonic() - t0
    assert_clean_failure(result, f"{address} answered, but not as a Dask scheduler", *words)
    assert elapsed < 2 + 5, elapsed
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("address, words", [
    ("not a url", ["--scheduler 'not a url' is not a scheduler address", "tcp://HOST:PORT"]),
    ("tcp://127.0.0.1:70000", ["is not a scheduler address"]),
    ("tls://127.0.0.1:8786", ["only tcp:// scheduler addresses"]),
    ("tcp://no-such-host.invalid:8786", ["cannot reach the Dask scheduler at tcp://no-such-host.invalid:8786"]),
])
def test_a_malformed_or_unknown_scheduler_address_is_one_line(monkeypatch, capsys, tmp_path, inputs, address, words):
    """'not a url' printed its error and then an `Exception ignored in Client.__del__` traceback."""
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")], policies=["full"], budgets=[0.1],
                       out=str(tmp_path / "o"))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", toml, "--scheduler", address, "--connect-timeout", "2",
                                                  "-q"], *words)


@pytest.mark.slow  # starts a Dask cluster
def test_a_failing_point_on_local_workers_prints_only_the_error_line(monkeypatch, capfd, tmp_path, inputs):
    """Worker processes logged Dask's `Compute Failed` block (with a traceback) before the clean line."""
    bad = tmp_path / "bad"
    bad.mkdir()
    write_trace(bad / "part-1.parquet", steps=10, per_step=8, seed=6, first_step=50)
    write_trace(bad / "part-2.parquet", steps=10, per_step=8, seed=7)
    toml = write_sweep(tmp_path / "s.toml", traces=[str(bad)], policies=["full"], budgets=[0.1], out="o")
    monkeypatch.setattr(sys, "argv", ["fiitedsim", "sweep", str(toml), "--workers", "1", "-q"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    captured = capfd.readouterr()   # file descriptors: the workers' stderr too
    assert info.value.code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 1 of 1 points failed"), captured.err
    assert captured.out == ""


@pytest.mark.slow  # starts a Dask cluster
def test_a_stored_point_of_wrong_types_is_computed_again(monkeypatch, capsys, tmp_path, inputs, cluster):
    """Issue 14, item 8, in a sweep folder: a point record whose summary was changed (a hit rate of 7.5) would
    have gone into points.parquet and the report as it is; it counts as not stored."""
    toml = write_sweep(tmp_path / "s.toml", traces=[str(inputs / "small.parquet")], policies=["full", "uniform-dim"],
                       budgets=[0.1], out="o")
    final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    table = (tmp_path / "o" / "points.parquet").read_bytes()
    record_path = sorted((tmp_path / "o" / POINTS_DIR).glob("*.json"))[0]
    good = record_path.read_text()
    record = json.loads(good)
    next(iter(record["summary"]["policies"].values()))["chunk_hit_rate"] = 7.5
    record_path.write_text(json.dumps(record))
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "2 points (1 computed, 1 already stored)" in line
    assert record_path.read_text() == good
    assert (tmp_path / "o" / "points.parquet").read_bytes() == table
