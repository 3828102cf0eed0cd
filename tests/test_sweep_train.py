"""`fiitedsim sweep` with `data = [...]`: training points equal direct `run_all` runs, resume and --force,
bad sweep files as one line with exit 2, and unchanged keys of replay points.

The data is tiny (3,000 synthetic samples, 3 fields of 200 rows, D = 8, C = 4, 256-byte pages) so a point
trains in well under a second once its kernels are compiled. The references are computed in this process
first, which also compiles the kernels into Numba's on-disk cache for the workers.
"""
from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest
from test_cli import assert_clean_failure, fails_cleanly, run
from test_sweep import QUIET, final_line, write_sweep, write_trace

from fiitedsim import __version__
from fiitedsim.config import ReplayConfig
from fiitedsim.errors import InputError
from fiitedsim.replay import RESULTS_FORMAT
from fiitedsim.sweep import (
    POINTS_DIR,
    TRAIN_METRICS,
    load_sweep_file,
    plan_points,
    trace_identity,
)
from fiitedsim.traces.source import TraceSource
from fiitedsim.train.runner import RUN_KEYS, load_data, run_all, train_config

distributed = pytest.importorskip("distributed")

#: The sweep's fixed settings: every key is a scalar axis (a column of points.parquet).
SMALL = {"samples": 3000, "fields": 3, "rows": 200, "batch": 256, "dim": 8, "chunk": 4, "eval_every": 4,
         "interval": 3, "page_bytes": 256}


def reference(policy: str, budget: str, lr_emb: float) -> tuple[dict, pl.DataFrame]:
    """The point as one direct `run_all` of one policy at one budget."""
    ds = load_data("synthetic", None, None, None, SMALL["samples"], SMALL["fields"], SMALL["rows"], SMALL["dim"], 0)
    tcfg = train_config(dim=SMALL["dim"], chunk=SMALL["chunk"], batch=SMALL["batch"], eval_every=SMALL["eval_every"],
                        interval=SMALL["interval"], lr_emb=lr_emb)
    outputs = run_all(ds, "synthetic", [policy], budget, tcfg, ReplayConfig(page_bytes=SMALL["page_bytes"]))
    return outputs.summary, outputs.curve


def without_seconds(summary: dict) -> dict:
    """A train summary with the wall time (the one field that differs between identical runs) left out."""
    def run_figures(run):
        return {m: [{k: x for k, x in e.items() if k != "seconds"} for e in v] if m == "per_seed" else v
                for m, v in run.items() if m != "seconds"}
    return {**summary, "policies": {k: run_figures(run) for k, run in summary["policies"].items()}}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.mark.slow  # starts a Dask cluster
def test_data_sweep_equals_direct_runs(monkeypatch, capsys, tmp_path, cluster):
    grid = {"policies": ["fiited", "row-prune"], "budgets": [0.1, "0.25"], "lr_emb": [0.05, 0.1]}
    expected = {(p, b, lr): reference(p, b, lr) for p in grid["policies"] for b in ("0.1", "0.25")
                for lr in grid["lr_emb"]}
    toml = write_sweep(tmp_path / "s.toml", data=["synthetic"], **grid, **SMALL, out="o")
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "8 points (8 computed, 0 already stored)" in line
    out = tmp_path / "o"
    frame = pl.read_parquet(out / "points.parquet")
    axes = ["dim", "chunk", "batch", "lr_emb", "samples", "fields", "rows", "eval_every", "interval", "page_bytes"]
    assert frame.columns == ["key", "data", "policy", "budget", *axes, "budget_bytes", "dense_bytes",
                             *TRAIN_METRICS]
    assert frame.height == 8 and frame["key"].n_unique() == 8
    assert frame.select("policy", "budget", "lr_emb").rows() == [
        (p, b, lr) for p in grid["policies"] for b in ("0.1", "0.25") for lr in grid["lr_emb"]]
    for row in frame.iter_rows(named=True):
        summary, curve = expected[(row["policy"], row["budget"], row["lr_emb"])]
        record = json.loads((out / POINTS_DIR / f"{row['key']}.json").read_text())
        assert without_seconds(record["summary"]) == without_seconds(summary)
        assert pl.read_parquet(out / POINTS_DIR / f"{row['key']}.parquet").equals(curve)
        [run_] = summary["policies"].values()
        got = {("samples" if k == "trained_samples" else k): row[k] for k in TRAIN_METRICS}
        figures = [k for k in RUN_KEYS if k in got and k != "seconds"]
        assert len(figures) == 9 and {k: got[k] for k in figures} == {k: run_[k] for k in figures}
        assert row["teacher_auc"] == summary["teacher_auc"] is not None
        assert row["dense_bytes"] == 3 * 200 * 8 * 4 and row["budget_bytes"] == summary["config"]["budgets"][0]["bytes"]
    page = (out / "report.html").read_text()
    assert page.count('class="chart"') == 2 * 2 + 1  # two groups (lr_emb), two charts each; AUC along lr_emb
    assert 'id="chart-g1-auc_steps"' in page
    # each group: the ranking (one seed: no ties called), the equal-memory table, the budgets' shares
    for i in range(2):
        assert f'id="g{i}-ranking"' in page and f'id="g{i}-equal-memory"' in page
    assert "cannot call ties" in page and page.count("of the dense size of the") >= 2 * 2
    # `fiitedsim report OUT` draws the same page from the folder
    result = run(monkeypatch, capsys, "report", out, "-o", tmp_path / "again.html")
    assert result.code == 0 and "report of a sweep folder" in result.err, result
    assert (tmp_path / "again.html").read_text() == page


@pytest.mark.slow  # starts a Dask cluster
def test_resume_skips_stored_points_and_force_recomputes(monkeypatch, capsys, tmp_path, cluster):
    toml = write_sweep(tmp_path / "s.toml", data="synthetic", policies=["fiited", "full"], budgets=[0.1, 0.25],
                       **SMALL, out="o")
    out = tmp_path / "o"
    assert "4 points (4 computed" in final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler",
                                                    cluster.scheduler_address, "-q"))
    stored = sorted((out / POINTS_DIR).glob("*.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in stored}
    table = pl.read_parquet(out / "points.parquet").drop("seconds")
    stored[1].unlink()
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address, "-q"))
    assert "4 points (1 computed, 3 already stored)" in line
    assert {p: p.stat().st_mtime_ns for p in stored if p != stored[1]} == \
        {p: t for p, t in mtimes.items() if p != stored[1]}
    assert pl.read_parquet(out / "points.parquet").drop("seconds").equals(table)  # only wall time may differ
    line = final_line(run(monkeypatch, capsys, "sweep", toml, "--scheduler", cluster.scheduler_address,
                          "--force", "-q"))
    assert "4 points (4 computed, 0 already stored)" in line
    assert all(p.stat().st_mtime_ns != mtimes[p] for p in stored if p != stored[1])
    assert pl.read_parquet(out / "points.parquet").drop("seconds").equals(table)


CSV = "y,a,b,x\n" + "".join(f"{i % 2},u{i % 7},v{i % 5},{i / 10}\n" for i in range(40))
BASE = {"policies": ["fiited"], "budgets": [0.5], "out": "o"}
BAD_FILES = [
    ({"traces": ["t.parquet"], "data": ["synthetic"], **BASE}, ["both 'traces' and 'data'", "one sweep file each"]),
    ({**BASE}, ["lacks 'traces'", "or 'data'"]),
    ({"traces": ["t.parquet"], "lr_emb": [0.1], **BASE}, ["'lr_emb' is a training setting", "data = [...]"]),
    ({"traces": ["t.parquet"], "label": "y", **BASE}, ["'label' is a training setting"]),
    ({"data": ["synthetic"], "dtype_bytes": [2], **BASE}, ["'dtype_bytes' applies to replays of traces"]),
    ({"data": ["synthetic"], "tables": "t.toml", **BASE}, ["'tables' applies to replays of traces"]),
    ({"data": ["synthetic"], **BASE, "policies": ["lru"]}, ["unknown training policy 'lru'"]),
    ({"data": ["tsv:x"], **BASE}, ["data[0]", "'tsv:x' is not a data spec"]),
    ({"data": ["csv:missing.csv"], "label": "y", "sparse": "a", **BASE}, ["data 'csv:missing.csv'", "not found"]),
    ({"data": ["csv:d.csv"], "sparse": "a", **BASE}, ["needs label", "sparse"]),
    ({"data": ["synthetic"], "label": "y", **BASE}, ["'label' names columns of parquet:/csv: data"]),
    # issue 21, smaller item: a fields axis over files made copies of the same point
    ({"data": ["csv:d.csv"], "label": "y", "sparse": "a", "fields": [2, 3], **BASE},
     ["'fields' is for synthetic data"]),
    ({"data": ["csv:d.csv"], "label": "y", "sparse": "a,y", **BASE}, ["label column 'y'", "leak"]),
    ({"data": ["csv:d.csv"], "label": "y", "sparse": "a,nope", **BASE}, ["d.csv", "unknown column", "nope"]),
    ({"data": ["synthetic", "synthetic"], **BASE}, ["lists 'synthetic' twice"]),
    ({"data": ["synthetic"], "dim": 8, "chunk": [4, 3], **BASE}, ["--chunk 3 must divide --dim 8"]),
    ({"data": ["synthetic"], "lr_emb": [0.0], **BASE}, ["--lr-emb must be a positive number"]),
    ({"data": ["synthetic"], "samples": 1, **BASE}, ["samples must be at least 2"]),
    ({"data": ["synthetic"], "rows": 200, "fields": 3, **BASE, "budgets": [0.01], "page_bytes": 65536},
     ["no room for one", "page"]),
    ({"data": ["synthetic"], "gamma": [2.0], **BASE}, ["--gamma must be in (0, 1]"]),
]


@pytest.mark.parametrize("keys, words", BAD_FILES, ids=[w[0] for _, w in BAD_FILES])
def test_bad_data_sweep_file_is_one_line_exit_2(monkeypatch, capsys, tmp_path, keys, words):
    (tmp_path / "d.csv").write_text(CSV)
    toml = write_sweep(tmp_path / "sweep.toml", **keys)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", toml, "-q"], *words)


def test_replay_point_keys_follow_the_documented_identity(tmp_path):
    """Training points must not change replay keys: the key of a trace point is still the sha256 of the
    identity docs/semantics.md ("Sweeps") spells out, computed here by hand."""
    trace = write_trace(tmp_path / "t.parquet", steps=5, per_step=16, seed=1)
    toml = write_sweep(tmp_path / "s.toml", traces=[str(trace)], policies=["fiited"], budgets=[0.1], gamma=0.99)
    [point] = plan_points(load_sweep_file(toml), warn=lambda m: None)
    source = TraceSource(trace, **QUIET)
    config = {"budget_bytes": point.spec.budget_bytes, "gamma": 0.99, "interval": 100, "position_weight": 1.0,
              "page_bytes": "auto", "max_load": 0.75, "index_initial": "auto", "index_entry_bytes": 16,
              "meta_bytes_per_row": None, "allocator": "lowest", "budget_covers": "payload", "report_every": 100,
              "count_accesses": False, "mde_exponent": 0.3, "qr_operation": "mult", "cafe_threshold": None,
              "cafe_cold_share": None, "cafe_decay": 0.99, "budget_label": "0.1"}
    identity = {"sweep_format": 1, "results_format": RESULTS_FORMAT, "fiitedsim": __version__,
                "trace_parts": trace_identity(source),
                "tables": [{"name": t.name, "rows": t.rows, "dim": t.dim, "chunk": t.chunk,
                            "dtype_bytes": t.dtype_bytes} for t in source.tables],
                "config": config, "policy": "fiited", "budget": {"label": "0.1", "bytes": point.spec.budget_bytes}}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    assert point.key == hashlib.sha256(text.encode()).hexdigest()


def test_training_keys_change_with_the_data_file(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text(CSV)
    toml = write_sweep(tmp_path / "s.toml", data=["csv:d.csv"], label="y", sparse="a,b", dense="x", rows=64,
                       batch=8, page_bytes=256, policies=["fiited", "full"], budgets=[0.5])
    keys = [p.key for p in plan_points(load_sweep_file(toml), warn=lambda m: None)]
    assert len(set(keys)) == 2 and keys == [p.key for p in plan_points(load_sweep_file(toml), warn=lambda m: None)]
    data.write_text(CSV + "1,u1,v1,0.5\n")
    assert not set(keys) & {p.key for p in plan_points(load_sweep_file(toml), warn=lambda m: None)}


def test_movielens_folder_points(tmp_path):
    """`movielens:DIR` resolves against the sweep file's folder; its three files are in the keys, and a point
    trains to exactly what `fiitedsim train` gives."""
    from test_train_data import write_ml100k

    from fiitedsim import sweep

    folder = write_ml100k(tmp_path / "ml")
    toml = write_sweep(tmp_path / "s.toml", data=["movielens:ml"], rows=64, batch=2, page_bytes=256,
                       policies=["fiited"], budgets=[0.5])
    [point] = plan_points(load_sweep_file(toml), warn=lambda m: None)
    assert point.spec.data == f"movielens:{folder.resolve()}"
    assert [f[0] for f in point.spec.file] == [str(folder.resolve() / n) for n in ("u.data", "u.user", "u.item")]
    summary, _ = sweep.run_train_point(point.spec)
    ds = load_data(point.spec.data, None, None, None, None, 26, 64, 16, 0)
    direct = run_all(ds, point.spec.data, ["fiited"], "0.5", train_config(batch=2),
                     ReplayConfig(page_bytes=256)).summary
    assert without_seconds(summary) == without_seconds(direct)
    (folder / "u.user").write_text((folder / "u.user").read_text().replace("|24|", "|25|"))
    [again] = plan_points(load_sweep_file(toml), warn=lambda m: None)
    assert again.key != point.key
    (folder / "u.item").unlink()
    with pytest.raises(InputError, match="data 'movielens:ml'.*u.item not found"):
        plan_points(load_sweep_file(toml), warn=lambda m: None)


@pytest.mark.slow  # trains models
def test_a_worker_loads_each_data_set_once_for_consecutive_points(monkeypatch, tmp_path):
    """`run_train_point` keeps the last data set: points that differ in policy, budget or trainer settings
    other than dim and seed reuse it; another data-shaping setting loads anew."""
    from fiitedsim import sweep
    from fiitedsim.sweep import run as sweep_run
    from fiitedsim.train import runner

    loads = []
    real = runner.load_data
    monkeypatch.setattr(runner, "load_data", lambda *a, **kw: loads.append(a) or real(*a, **kw))
    monkeypatch.setattr(sweep_run, "_LAST_DATA", None)
    toml = write_sweep(tmp_path / "s.toml", data="synthetic", policies=["full"], budgets=[0.5],
                       **{**SMALL, "lr_emb": [0.05, 0.1], "rows": [200, 100]})
    points = plan_points(load_sweep_file(toml), warn=lambda m: None)
    assert [(p.axes["lr_emb"], p.axes["rows"]) for p in points] == [(0.05, 200), (0.05, 100), (0.1, 200), (0.1, 100)]
    for point in points:  # grid order: rows varies fastest, so every point switches data sets
        sweep.run_train_point(point.spec)
    assert len(loads) == 4
    loads.clear()
    for point in sorted(points, key=lambda p: p.axes["rows"]):  # 100, 100 (still loaded), 200, 200
        sweep.run_train_point(point.spec)
    assert [a[6] for a in loads] == [200]  # the rows argument of load_data


@pytest.mark.slow  # starts a Dask cluster
@pytest.mark.parametrize("kind, extra, expected", [("data", [], 1), ("data", ["--workers", "2"], 2),
                                                   ("traces", [], None)])
def test_local_training_points_default_to_one_worker(monkeypatch, capsys, tmp_path, kind, extra, expected):
    """A training run uses every core itself, so a local data sweep starts one worker unless told otherwise;
    a replay sweep keeps one single-threaded worker per core (workers None: dask_client sizes it)."""
    import fiitedsim.sweep.run as sweep_module

    asked = []

    def no_cluster(scheduler, workers, connect_timeout):
        asked.append(workers)
        raise sweep_module.InputError("no cluster in this test")

    monkeypatch.setattr(sweep_module, "dask_client", no_cluster)
    source = ["synthetic"] if kind == "data" else [str(write_trace(tmp_path / "t.parquet", 5, 8, seed=0))]
    toml = write_sweep(tmp_path / "s.toml", **{kind: source}, policies=["full"], budgets=[0.5],
                       **(SMALL if kind == "data" else {}), out="o")
    assert_clean_failure(run(monkeypatch, capsys, "sweep", toml, "-q", *extra), "no cluster in this test")
    assert asked == [expected]
