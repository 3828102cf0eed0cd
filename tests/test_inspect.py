"""`fiitedsim inspect`: statistics against hand-worked numbers and independent group-bys, JSON, and clean failures."""
from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli import _tables_file, fails_cleanly, inputs, run  # noqa: F401 (inputs is a fixture)
from test_trace import TABLES, write_raw, write_trace

from fiitedsim import cli
from fiitedsim.config import TableSpec
from fiitedsim.traces.stats import inspect_trace
from fiitedsim.traces.writer import trace_schema

QUIET = {"warn": lambda m: None}


def write_mixed(path, step, table, row, grad, tables=TABLES, groups=1):
    """A trace whose grad_norm lists (the list layout) have each table's own K."""
    k = [t.chunks for t in tables]
    lists = pa.array([list(g[:k[t]]) for g, t in zip(np.asarray(grad), table)], pa.list_(pa.float32()))
    schema = trace_schema(tables, False).append(pa.field("grad_norm", pa.list_(pa.float32())))
    data = pa.Table.from_arrays([pa.array(np.asarray(step, np.int64)), pa.array(np.asarray(table, np.int32)),
                                 pa.array(np.asarray(row, np.int64)), lists], schema=schema)
    pq.write_table(data, path, row_group_size=-(-len(step) // groups))
    assert pq.ParquetFile(path).num_row_groups == groups
    return path

# ---------------------------------------------------------------------------
# A tiny trace worked by hand. TABLES: users (100 rows, D=64, C=8, K=8), items (50 rows, D=32, C=8, K=4), fp32.
#
#   i  step table row      per step:  step 0: 4 lookups (users 3, items 1)
#   0   0   users  3                  step 2: 5 lookups (users 1, items 4)
#   1   0   users  3                  step 5: 1 lookup  (users 1, items 0)
#   2   0   users  5       -> lookups per step min 1, mean 10/3, max 5; 3 distinct steps, first 0, last 5
#   3   0   items  7       users: 5 lookups, distinct {3, 5, 9} = 3 of 100 rows; per step 3, 1, 1 -> min 1, max 3
#   4   2   users  3       items: 5 lookups, distinct {7, 8} = 2 of 50 rows; per step 1, 4, 0 -> min 0, max 4
#   5   2   items  7       both: mean 5/3 per step
#   6   2   items  7
#   7   2   items  7       reuse factor c of each (step, table, row):
#   8   2   items  8         (0,users,3) c=2; (0,users,5) 1; (0,items,7) 1; (2,users,3) 1; (2,items,7) 3;
#   9   5   users  9         (2,items,8) 1; (5,users,9) 1
#                          bin (0,1]: 5 distinct, 5 lookups; (1,2]: 1 distinct, 2 lookups; (2,4]: 1 distinct, 3 lookups
# Dense bytes: users 100*64*4 = 25,600, items 50*32*4 = 6,400.
TINY_STEP = [0, 0, 0, 0, 2, 2, 2, 2, 2, 5]
TINY_TABLE = [0, 0, 0, 1, 0, 1, 1, 1, 1, 0]
TINY_ROW = [3, 3, 5, 7, 3, 7, 7, 7, 8, 9]


def tiny_grad() -> np.ndarray:
    """grad[i, k] = i + k/10, except grad[3, 0] = 0 (items' K = 4: columns 4..7 of its rows are padding)."""
    grad = np.arange(10)[:, None] + np.arange(8)[None, :] / 10
    grad[3, 0] = 0.0
    return grad.astype(np.float32)


def test_tiny_trace_by_hand(tmp_path):
    path = write_mixed(tmp_path / "t.parquet", TINY_STEP, TINY_TABLE, TINY_ROW, tiny_grad(), groups=3)
    s = inspect_trace(path, **QUIET)
    assert (s["lookups"], s["row_groups"], s["parts"], s["grad_norm"]) == (10, 3, 1, True)
    assert s["file_bytes"] == path.stat().st_size
    assert s["tables_source"] == "metadata"
    assert s["steps"] == {"first": 0, "last": 5, "distinct": 3}
    assert s["lookups_per_step"] == {"min": 1, "mean": 10 / 3, "max": 5}
    assert s["dense_bytes"] == 25_600 + 6_400 and s["distinct_rows"] == 5
    users, items = s["tables"]
    assert (users["name"], users["rows"], users["chunks"], users["dense_bytes"]) == ("users", 100, 8, 25_600)
    assert (items["name"], items["rows"], items["chunks"], items["dense_bytes"]) == ("items", 50, 4, 6_400)
    assert (users["lookups"], users["distinct_rows"], users["distinct_share"]) == (5, 3, 0.03)
    assert (items["lookups"], items["distinct_rows"], items["distinct_share"]) == (5, 2, 0.04)
    assert users["lookups_per_step"] == {"min": 1, "mean": 5 / 3, "max": 3}
    assert items["lookups_per_step"] == {"min": 0, "mean": 5 / 3, "max": 4}
    assert (users["steps_with_lookups"], items["steps_with_lookups"]) == (3, 2)
    reuse = s["reuse"]
    assert reuse["lookups"] == [5, 2, 3] + [0] * 14
    assert reuse["distinct"] == [5, 1, 1] + [0] * 14
    assert reuse["lookup_share"][:3] == [0.5, 0.2, 0.3]
    assert reuse["max_batch"] == 4 and reuse["compare"] is None
    # chunk 5 exists only in users, lookups 0, 1, 2, 4, 9: values 0.5, 1.5, 2.5, 4.5, 9.5 -> mean 3.7;
    # deviations -3.2 -2.2 -1.2 0.8 5.8, squares sum 50.8, population variance 10.16
    per_chunk = s["grad_norm_stats"]["per_chunk"]
    assert len(per_chunk) == 8
    c5 = per_chunk[5]
    assert (c5["count"], c5["min"], c5["max"], c5["zero_share"]) == (5, 0.5, 9.5, 0.0)
    assert c5["mean"] == pytest.approx(3.7, rel=1e-6) and c5["std"] == pytest.approx(10.16 ** 0.5, rel=1e-6)
    # chunk 0: all 10 lookups, values i: 0, 1, 2, (0 set at lookup 3), 4..9 -> sum 42, zeros at lookups 0 and 3
    c0 = per_chunk[0]
    assert (c0["count"], c0["zero_share"], c0["min"], c0["mean"]) == (10, 0.2, 0.0, pytest.approx(4.2))
    # all positions: 5 users lookups x 8 + 5 items lookups x 4 = 60 values
    assert s["grad_norm_stats"]["all"]["count"] == 60 and s["importance"] is None


def test_tiny_trace_does_not_depend_on_batching(tmp_path):
    """Steps and batches cut across Parquet batches and row groups must not change any statistic."""
    results = []
    for groups in (1, 3, 10):
        path = write_mixed(tmp_path / f"t{groups}.parquet", TINY_STEP, TINY_TABLE, TINY_ROW, tiny_grad(),
                           groups=groups)
        for batch_rows in (1, 2, 3, 1 << 20):
            s = inspect_trace(path, batch_rows=batch_rows, **QUIET)
            for key in ("path", "file_bytes", "row_groups"):
                s.pop(key)
            results.append(s)
    assert all(r == results[0] for r in results)


def random_trace(tmp_path):
    """Steps with gaps, tables missing from some steps, repeated rows; five row groups."""
    rng = np.random.default_rng(11)
    tables = [TableSpec("a", rows=300, dim=16, chunk=4), TableSpec("b", rows=40, dim=16, chunk=8),
              TableSpec("c", rows=5000, dim=24, chunk=8, dtype_bytes=2)]
    steps = np.sort(rng.choice(500, size=60, replace=False))
    per_step = rng.integers(1, 80, size=steps.size)
    step = np.repeat(steps, per_step)
    table = rng.choice(3, size=step.size, p=[0.5, 0.45, 0.05]).astype(np.int32)
    rows = np.array([t.rows for t in tables])
    row = (rng.zipf(1.4, size=step.size) - 1) % rows[table]
    k = np.array([t.chunks for t in tables])
    grad = rng.gamma(2.0, 0.5, size=(step.size, 4)).astype(np.float32)
    grad[rng.random(grad.shape) < 0.05] = 0.0
    grad[np.arange(4)[None, :] >= k[table][:, None]] = 0.0  # padding past K(table)
    path = write_mixed(tmp_path / "r.parquet", step, table, row, grad, tables=tables, groups=5)
    return path, tables, step, table, row, grad


def test_random_trace_against_polars_group_bys(tmp_path):
    path, tables, step, table, row, grad = random_trace(tmp_path)
    s = inspect_trace(path, batch_rows=37, **QUIET)
    df = pl.DataFrame({"step": step, "table": table, "row": row})

    per_step = df.group_by("step").len()["len"]
    assert s["steps"] == {"first": int(step[0]), "last": int(step[-1]), "distinct": per_step.len()}
    assert s["lookups_per_step"] == {"min": per_step.min(), "mean": pytest.approx(per_step.mean()),
                                     "max": per_step.max()}
    assert s["distinct_rows"] == df.select(["table", "row"]).n_unique()
    # lookups per (step, table), with 0 where a table has no lookup in a step of the trace
    grid = (df.select("step").unique().join(pl.DataFrame({"table": np.arange(3, dtype=np.int32)}), how="cross")
            .join(df.group_by(["step", "table"]).len(), on=["step", "table"], how="left").fill_null(0))
    for t, spec in enumerate(tables):
        got = s["tables"][t]
        mine = df.filter(pl.col("table") == t)
        counts = grid.filter(pl.col("table") == t)["len"]
        assert got["lookups"] == mine.height
        assert got["distinct_rows"] == mine["row"].n_unique()
        assert got["distinct_share"] == mine["row"].n_unique() / spec.rows
        assert got["lookups_per_step"] == {"min": counts.min(), "mean": pytest.approx(counts.mean()),
                                           "max": counts.max()}
    assert min(t["lookups_per_step"]["min"] for t in s["tables"]) == 0  # the case is exercised

    # reuse factor c -> Meta's bin ceil(log2 c) (1 -> 0, 2 -> 1, 3..4 -> 2, ...), capped at the open bin 16
    c = df.group_by(["step", "table", "row"]).len()["len"].to_numpy()
    bins = np.minimum([(int(x) - 1).bit_length() for x in c], 16)
    assert s["reuse"]["lookups"] == np.bincount(bins, weights=c, minlength=17).astype(int).tolist()
    assert s["reuse"]["distinct"] == np.bincount(bins, minlength=17).tolist()
    assert s["reuse"]["max_batch"] == grid["len"].max()

    k = np.array([t.chunks for t in tables])[table]
    per_chunk = s["grad_norm_stats"]["per_chunk"]
    assert len(per_chunk) == 4
    pooled = []
    for pos in range(4):
        values = grad[k > pos, pos].astype(np.float64)
        pooled.append(values)
        got = per_chunk[pos]
        assert got["count"] == values.size
        assert (got["min"], got["max"]) == (values.min(), values.max())
        assert got["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert got["std"] == pytest.approx(values.std(), rel=1e-10)
        assert got["zero_share"] == np.count_nonzero(values == 0) / values.size
    everything = np.concatenate(pooled)
    overall = s["grad_norm_stats"]["all"]
    assert overall["count"] == everything.size
    assert overall["mean"] == pytest.approx(everything.mean(), rel=1e-12)
    assert overall["std"] == pytest.approx(everything.std(), rel=1e-10)


def test_importance_log(monkeypatch, capsys, inputs):  # noqa: F811 (the imported fixture)
    # test_cli's log: steps 0, 1, 2; (table, row, chunk, value) = (0, 1, 0, 0.5), (1, 2, 3, 1.0), (0, 3, 2, 2.0).
    # All values: mean 3.5/3; deviations -2/3, -1/6, 5/6, squares sum 7/6, population variance 7/18.
    r = run(monkeypatch, capsys, "inspect", inputs / "trace.parquet", "--importance", inputs / "imp.parquet",
            "--json")
    assert r.code == 0 and r.err == "", r.err  # no "the log wins" warning: inspect reports both
    s = json.loads(r.out)
    imp = s["importance"]
    assert (imp["records"], imp["distinct_rows"], imp["distinct_rows_per_table"]) == (3, 3, [2, 1])
    assert imp["steps"] == {"first": 0, "last": 2}
    per_chunk = imp["values"]["per_chunk"]
    assert [c["count"] for c in per_chunk] == [1, 0, 1, 1]
    assert [c["mean"] for c in per_chunk] == [0.5, None, 2.0, 1.0]
    overall = imp["values"]["all"]
    assert (overall["count"], overall["min"], overall["max"], overall["zero_share"]) == (3, 0.5, 2.0, 0.0)
    assert overall["mean"] == pytest.approx(3.5 / 3) and overall["std"] == pytest.approx((7 / 18) ** 0.5)
    assert s["grad_norm"] is True and s["grad_norm_stats"]["all"]["count"] == s["lookups"] * 4


def test_compare_meta2021_agrees_with_generate(monkeypatch, capsys, tmp_path):
    trace = tmp_path / "meta.parquet"
    r = run(monkeypatch, capsys, "generate", trace, "--profile", "meta2021", "--table-count", "2", "--rows", "5000",
            "--steps", "30", "--batch", "1024", "--no-grad", "--seed", "3", "-q")
    assert r.code == 0, r.err
    printed = float(re.search(r"TVD = ([0-9.]+)", r.err).group(1))
    r = run(monkeypatch, capsys, "inspect", trace, "--compare", "meta2021", "--json")
    assert r.code == 0, r.err
    compare = json.loads(r.out)["reuse"]["compare"]
    assert compare["profile"] == "meta2021" and compare["conditioned_on_reuse_at_most"] == 1024
    assert abs(compare["tvd"] - printed) <= 5e-5  # generate prints 4 decimals
    assert compare["tvd"] < 0.05  # generate's docstring measures 0.010-0.021 at this size
    assert compare["tvd_unconditioned"] > compare["tvd"]  # bins above 1024 hold published mass the trace cannot
    r = run(monkeypatch, capsys, "inspect", trace, "--compare", "meta2021")
    assert r.code == 0 and f"TVD to meta2021 conditioned on reuse <= 1,024: {compare['tvd']:.4f}" in r.out


def test_json_is_deterministic_and_tables_render(monkeypatch, capsys, inputs):  # noqa: F811
    args = ["inspect", inputs / "trace.parquet", "--importance", inputs / "imp.parquet", "--compare", "meta2022"]
    first, second = (run(monkeypatch, capsys, *args, "--json") for _ in range(2))
    assert first.code == 0 and first.out == second.out and first.out.endswith("\n")
    assert json.loads(first.out)["lookups"] == 30 * 2 * 8
    r = run(monkeypatch, capsys, *args, "-q")
    assert r.code == 0 and r.err == "", r.err
    for words in ("tables", "users", "items", "reuse factor", "meta2022 conditioned", "grad_norm per chunk",
                  "importance log"):
        assert words in r.out, words


def test_without_a_trace_inspects_the_shipped_sample(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    r = run(monkeypatch, capsys, "inspect")
    assert r.code == 0 and r.err == "", r.err
    assert "sample.parquet" in r.out and "reuse factor" in r.out
    r = run(monkeypatch, capsys, "inspect", "--json")
    assert r.code == 0 and json.loads(r.out)["path"] == str(cli.SAMPLE_TRACE)
    assert list(tmp_path.iterdir()) == []


def test_inferred_tables_warn_once_on_stderr(monkeypatch, capsys, tmp_path):
    path = write_raw(tmp_path / "t.parquet", {"step": [0, 1], "table": [0, 1], "row": [4, 9]}, tables=None)
    r = run(monkeypatch, capsys, "inspect", path, "--json")
    assert r.code == 0 and len(r.err.strip().splitlines()) == 1 and "inferred" in r.err
    s = json.loads(r.out)
    assert s["tables_source"] == "inferred" and [t["rows"] for t in s["tables"]] == [5, 10]


def test_tables_file_overrides_metadata(monkeypatch, capsys, tmp_path):
    path = write_trace(tmp_path / "t.parquet", TINY_STEP, TINY_TABLE, TINY_ROW)
    tables = _tables_file(tmp_path, '[{"name": "u", "rows": 1000, "dim": 16, "chunk": 4, "dtype_bytes": 2},'
                                    ' {"name": "i", "rows": 10, "dim": 64, "chunk": 8}]')
    r = run(monkeypatch, capsys, "inspect", path, "--tables", tables, "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert s["tables_source"] == "tables_file"
    assert [(t["name"], t["rows"], t["chunks"], t["dense_bytes"]) for t in s["tables"]] == [
        ("u", 1000, 4, 1000 * 16 * 2), ("i", 10, 8, 10 * 64 * 4)]
    assert [t["distinct_share"] for t in s["tables"]] == [3 / 1000, 2 / 10]


def test_a_folder_of_parts_is_one_trace(tmp_path):
    """The tiny trace cut at step 2 into two part files gives the same statistics, with parts and sizes summed."""
    folder = tmp_path / "parts"
    folder.mkdir()
    one = inspect_trace(write_trace(tmp_path / "t.parquet", TINY_STEP, TINY_TABLE, TINY_ROW), **QUIET)
    a = write_trace(folder / "part-1.parquet", TINY_STEP[:6], TINY_TABLE[:6], TINY_ROW[:6])
    b = write_trace(folder / "part-2.parquet", TINY_STEP[6:], TINY_TABLE[6:], TINY_ROW[6:])
    parts = inspect_trace(folder, **QUIET)
    assert (parts["parts"], parts["row_groups"]) == (2, 2)
    assert parts["file_bytes"] == a.stat().st_size + b.stat().st_size
    for key in ("path", "parts", "file_bytes", "row_groups"):
        one.pop(key), parts.pop(key)
    assert parts == one


def test_user_text_is_printed_verbatim(monkeypatch, capsys, tmp_path):
    path = write_trace(tmp_path / "[bold]x[/].parquet", TINY_STEP, TINY_TABLE, TINY_ROW)
    r = run(monkeypatch, capsys, "inspect", path, "-q")
    assert r.code == 0 and "[bold]x[/].parquet" in r.out, r.err


def _truncated(d):
    data = write_trace(d / "full.parquet", TINY_STEP, TINY_TABLE, TINY_ROW).read_bytes()
    (d / "full.parquet").unlink()
    (d / "t.parquet").write_bytes(data[: len(data) // 2])
    return [d / "t.parquet"]


@pytest.mark.parametrize("make, words", [
    (lambda d: [d / "nope.parquet"], ["not found", "nope.parquet"]),
    (lambda d: [write_raw(d / "t.parquet", {"step": [0, 1], "table": [0, 0]})], ["missing column", "row"]),
    (_truncated, ["not a readable Parquet file"]),
    (lambda d: [write_raw(d / "t.parquet", {"step": [1, 0], "table": [0, 0], "row": [1, 2]})], ["non-decreasing"]),
    (lambda d: [write_trace(d / "t.parquet", TINY_STEP, TINY_TABLE, TINY_ROW), "--compare", "meta2020"],
     ["unknown profile 'meta2020'", "meta2021 or meta2022"]),
    (lambda d: [write_trace(d / "t.parquet", TINY_STEP, TINY_TABLE, TINY_ROW), "--importance", d / "x.parquet"],
     ["importance log not found"]),
])
@pytest.mark.parametrize("as_json", [False, True])
def test_bad_input_exits_2_with_one_line(monkeypatch, capsys, tmp_path, make, words, as_json):
    folder = tmp_path / "in"
    folder.mkdir()
    args = make(folder)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["inspect", *args, *(["--json"] if as_json else [])], *words)


def test_help_teaches(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    r = run(monkeypatch, capsys, "inspect", "--help")
    assert r.code == 0
    for option in ("--tables", "--importance", "--compare", "--json", "--quiet", "meta2021", "reuse"):
        assert option in r.out, option
    assert "inspect" in run(monkeypatch, capsys, "--help").out
