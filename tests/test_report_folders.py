"""`fiitedsim report DIR` for every results folder fiitedsim writes (replay, training, sweep), the sweep report's
charts along its knobs, and `full` listed once in the training tables."""
from __future__ import annotations

import json
import re

import pytest
from test_cli import fails_cleanly, run
from test_sweep import final_line, write_sweep

#: A tiny synthetic training run: 2 fields of 60 rows, 300 samples, batches of 64.
TRAIN = ["train", "--samples", "300", "--fields", "2", "--rows", "60", "--batch", "64", "--page-bytes", "64",
         "--interval", "2", "-q"]


def specs(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="fiitedsim-specs">(.*?)</script>', page,
                                re.S).group(1))


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory):
    """A training folder (`train --out`) and the page `train --report` wrote beside it: two policies, two
    budgets, two seeds; the command runs in-process as `run` runs it."""
    import sys

    from fiitedsim import cli

    root = tmp_path_factory.mktemp("train")
    args = [*TRAIN, "--policy", "fiited,full", "--budget", "0.1,0.25", "--seeds", "0,1", "--out", root / "t",
            "--report", root / "direct.html"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["fiitedsim", *map(str, args)])
        try:
            cli.main()
        except SystemExit as exc:
            assert not exc.code, exc
    assert (root / "t" / "train_summary.json").is_file() and (root / "direct.html").is_file()
    return root


@pytest.mark.slow  # trains models
def test_a_training_folder_gives_the_page_train_wrote(monkeypatch, capsys, tmp_path, train_folder):
    result = run(monkeypatch, capsys, "report", train_folder / "t", "-o", tmp_path / "again.html")
    assert result.code == 0 and result.err == f"report of a train folder in {tmp_path / 'again.html'}\n", result
    page = (tmp_path / "again.html").read_text()
    assert page == (train_folder / "direct.html").read_text()
    assert 'id="equal-quality"' in page and 'id="chart-accuracy_memory"' in page


@pytest.mark.slow  # trains models
def test_full_is_listed_once_as_the_dense_reference(train_folder, monkeypatch, capsys):
    """train repeats full's figures under every budget in train_summary.json (the contract); its tables list it
    once, for every budget."""
    summary = json.loads((train_folder / "t" / "train_summary.json").read_text())
    assert {k for k in summary["policies"] if k.startswith("full@")} == {"full@0.1", "full@0.25"}
    page = (train_folder / "direct.html").read_text()
    table = page.split('id="summary">', 1)[1].split('id="sec-', 1)[0]
    rows = re.findall(r"<tr><td>(\w[\w-]*)</td><td>([^<]*)</td>", table)
    assert rows == [("fiited", "0.1"), ("full", "every budget"), ("fiited", "0.25")]
    result = run(monkeypatch, capsys, "report", train_folder / "t", "-o", train_folder / "x.html")
    assert result.code == 0
    from fiitedsim.cli import _print_train
    _print_train(summary)
    out = capsys.readouterr().out
    assert out.count("full (every budget)") == 1 and "full@" not in out and out.count("fiited@") == 2


@pytest.mark.slow  # trains models
def test_a_damaged_training_folder_is_one_line(monkeypatch, capsys, tmp_path, train_folder):
    import shutil

    folder = tmp_path / "t"
    shutil.copytree(train_folder / "t", folder)
    summary = json.loads((folder / "train_summary.json").read_text())
    summary["policies"]["fiited@0.1"]["auc"] = 7.5
    (folder / "train_summary.json").write_text(json.dumps(summary))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", folder, "-o", tmp_path / "r.html"],
                  "run fiited@0.1: auc is 7.5, not an AUC in 0..1 or null", "re-run")
    shutil.copy(train_folder / "t" / "train_summary.json", folder / "train_summary.json")
    (folder / "curve.parquet").unlink()
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", folder, "-o", tmp_path / "r.html"],
                  "curve.parquet is missing or not readable")


CURVE_DAMAGE = [  # (column, value, words): issue 21, class I
    ("auc", 1.5, ["auc", "1.5", "not an AUC in 0..1"]),
    ("dim_hit_rate", -0.1, ["dim_hit_rate", "-0.1", "not a share in 0..1"]),
    ("chunk_hit_rate", float("nan"), ["chunk_hit_rate", "NaN", "not a share in 0..1"]),
    ("train_loss", float("nan"), ["train_loss", "NaN", "not a number >= 0"]),
    ("logloss", -1.0, ["logloss", "-1", "not a number >= 0"]),
    ("step", -5, ["step", "-5", "not an integer >= 0"]),
    ("total_bytes", -1, ["total_bytes", "-1", "not an integer >= 0"]),
    ("key", None, ["key", "empty"]),
]


@pytest.mark.slow  # trains models
@pytest.mark.parametrize("column, value, words", CURVE_DAMAGE, ids=[f"{c}={v}" for c, v, _ in CURVE_DAMAGE])
def test_a_training_curve_out_of_its_ranges_is_refused(monkeypatch, capsys, tmp_path, train_folder, column, value,
                                                       words):
    import shutil

    import polars as pl

    folder = tmp_path / "t"
    shutil.copytree(train_folder / "t", folder)
    curve = pl.read_parquet(folder / "curve.parquet")
    curve.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(value, curve.schema[column]))
                       .otherwise(pl.col(column)).alias(column)).write_parquet(folder / "curve.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", folder, "-o", tmp_path / "r.html"],
                  "curve.parquet", *words, "re-run")


@pytest.mark.slow  # trains models
def test_report_never_replaces_a_file_it_reads(monkeypatch, capsys, tmp_path, train_folder):
    import shutil

    folder = tmp_path / "t"
    shutil.copytree(train_folder / "t", folder)
    before = (folder / "train_summary.json").read_bytes()
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", folder, "-o", folder / "train_summary.json"],
                  "would replace the results folder's")
    assert (folder / "train_summary.json").read_bytes() == before


def test_what_is_no_results_folder(monkeypatch, capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", tmp_path / "empty"],
                  "has no summary.json, train_summary.json, points.parquet")
    (tmp_path / "half" / "points").mkdir(parents=True)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", tmp_path / "half"], "sweep did not finish")


@pytest.mark.slow  # runs a sweep
def test_a_sweep_folder_gives_its_page_with_charts_along_its_knobs(monkeypatch, capsys, tmp_path):
    """Two generated traces (seeds 0 and 1) x gamma [0.9, 0.99] x interval [2, 50]: per knob, per setting of the
    other knob, one chart; interval spans 25x, so its x axis is logarithmic, gamma's (1.1x) is not; two seeds
    give a band. The page of `report OUT` is OUT/report.html, byte for byte."""
    toml = write_sweep(tmp_path / "s.toml", policies=["fiited", "uniform-dim"], budgets=[0.1, 0.3],
                       gamma=[0.9, 0.99], interval=[2, 50], out="o")
    toml.write_text(toml.read_text() + "generate = {tables = 2, rows = 2000, steps = 40, batch = 64, seed = [0, 1]}\n")
    assert "32 points" in final_line(run(monkeypatch, capsys, "sweep", toml, "--workers", "1", "-q"))
    out = tmp_path / "o"
    result = run(monkeypatch, capsys, "report", out, "-o", tmp_path / "again.html")
    assert result.code == 0 and "report of a sweep folder" in result.err, result
    page = (out / "report.html").read_text()
    assert (tmp_path / "again.html").read_text() == page
    charts = specs(page)
    knobs = sorted(k for k in charts if k.startswith("knob-"))
    assert knobs == ["knob-0", "knob-1", "knob-2", "knob-3"]   # gamma at 2 intervals, interval at 2 gammas
    titles = re.findall(r'<h3 id="sec-knob-\d">(.*?)</h3>', page)
    assert titles == ["dim hit rate % and total memory along gamma (interval 2)",
                      "dim hit rate % and total memory along gamma (interval 50)",
                      "dim hit rate % and total memory along interval (gamma 0.9)",
                      "dim hit rate % and total memory along interval (gamma 0.99)"]
    gamma, interval = charts["knob-0"], charts["knob-2"]
    [metric, memory] = interval["hconcat"]
    assert metric["layer"][1]["encoding"]["x"]["scale"] == {"type": "log"}
    assert gamma["hconcat"][0]["layer"][1]["encoding"]["x"]["scale"] == {"zero": False}
    assert metric["layer"][0]["mark"]["type"] == "area"                 # the band over the two seeds
    assert memory["encoding"]["y"]["field"] == "total_mib"
    data = interval["data"]["values"]
    assert {r["run"] for r in data} == {"fiited@0.1", "fiited@0.3", "uniform-dim@0.1", "uniform-dim@0.3"}
    assert all(r["seeds"] == 2 for r in data) and sorted({r["x"] for r in data}) == [2, 50]
