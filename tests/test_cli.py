"""The command line: every bad input is one `error:` line on stderr and exit code 2, and nothing is written.

The CLI is called in-process (`fiitedsim.cli.main` with `sys.argv` patched) so
the whole file runs in a few seconds; a few end-to-end cases use a subprocess
where the environment matters (terminal width). Reader-level validation
(exact messages, record numbers) lives in test_trace.py: here each case only
checks that the CLI turns it into a clean failure that names the problem.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fiitedsim import cli
from fiitedsim.config import TableSpec, tables_to_json
from fiitedsim.policies import POLICIES
from fiitedsim.policies.base import SUMMARY_KEYS
from fiitedsim.traces.source import write_importance
from fiitedsim.traces.writer import TABLES_KEY, TraceWriter

# Big virtual tables (cheap: state grows with the rows touched) so the default 64 KiB page fits any budget
# used below; K = 4 in both, two pools (chunk bytes 16 and 32). Dense size 8,960,000 bytes.
TABLES = [TableSpec("users", rows=100_000, dim=16, chunk=4), TableSpec("items", rows=20_000, dim=32, chunk=8)]
STEPS, PER_STEP = 30, 8  # lookups per table per step
FAST = ["--report-every", "5", "--interval", "3", "-q"]

REPLAY_OPTIONS = ["--budget", "--policy", "--out", "--tables", "--importance", "--gamma", "--interval",
                  "--position-weight", "--dim", "--chunk", "--dtype-bytes", "--page-bytes", "--max-load",
                  "--index-initial", "--allocator", "--budget-covers", "--report-every", "--count-accesses",
                  "--mde-exponent", "--json"]
GENERATE_OPTIONS = ["--profile", "--alpha", "--table-count", "--rows", "--steps", "--batch", "--dim", "--chunk",
                    "--drift", "--no-grad", "--seed", "--quiet"]
GEN_SMALL = ["--table-count", "2", "--rows", "1000", "--steps", "4", "--batch", "16", "--dim", "16", "--chunk", "4",
             "-q"]


# ---------------------------------------------------------------------------
# Helpers


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(monkeypatch, capsys, *args) -> Run:
    """`fiitedsim ARGS` in-process: exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["fiitedsim", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (hidden ones too) with a hash of its bytes and its mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        found[rel] += f" {path.stat().st_mode:o}"
    return found


def assert_clean_failure(result: Run, *words: str) -> str:
    """Exit 2, exactly one stderr line starting with `error:` that contains `words`, nothing on stdout."""
    assert result.code == 2, result
    assert "Traceback" not in result.err + result.out, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.err
    line = lines[0]
    assert result.err == line + "\n", repr(result.err)  # not even a blank line from the progress bar
    assert line.startswith("error:"), line
    for word in words:
        assert word in line, (word, line)
    assert result.out == "", result.out
    return line


def fails_cleanly(monkeypatch, capsys, root: Path, args, *words) -> str:
    """Run and check a clean failure that leaves `root` (inputs, --out folder, its parent) exactly as it was."""
    before = snapshot(root)
    line = assert_clean_failure(run(monkeypatch, capsys, *args), *words)
    after = snapshot(root)
    assert after == before, {"appeared": sorted(set(after) - set(before)),
                             "changed or gone": sorted(k for k in before if after.get(k) != before[k])}
    return line


def lookups(seed: int = 0):
    rng = np.random.default_rng(seed)
    step = np.repeat(np.arange(STEPS), 2 * PER_STEP)
    table = np.tile(np.repeat([0, 1], PER_STEP), STEPS)
    row = np.where(table == 0, rng.zipf(1.3, step.size) % TABLES[0].rows, rng.zipf(1.3, step.size) % TABLES[1].rows)
    grad = rng.gamma(2.0, 0.5, size=(step.size, 4)).astype(np.float32)
    return step, table, row.astype(np.int64), grad


def write_trace(path: Path, with_grad: bool = True, tables=TABLES) -> Path:
    step, table, row, grad = lookups()
    with TraceWriter(path, tables, with_grad=with_grad) as w:
        w.write(step, table, row, grad if with_grad else None)
    return path


def write_raw(path: Path, columns: dict, tables=TABLES) -> Path:
    """Arbitrary (malformed) columns, with the table list in the metadata so no inference warning is printed."""
    table = pa.table({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()})
    table = table.replace_schema_metadata({TABLES_KEY: tables_to_json(tables).encode()})
    pq.write_table(table, path)
    return path


def raw_trace(path: Path, **over) -> Path:
    cols = {"step": pa.array([0, 0, 1, 2], pa.int64()), "table": pa.array([0, 1, 0, 1], pa.int32()),
            "row": pa.array([3, 4, 5, 6], pa.int64())}
    cols.update(over)
    return write_raw(path, {k: v for k, v in cols.items() if v is not None})


def write_log(path: Path, value=(0.5, 1.0, 2.0)) -> Path:
    write_importance(path, [0, 1, 2], [0, 1, 0], [1, 2, 3], [0, 3, 2], list(value))
    return path


@pytest.fixture
def inputs(tmp_path) -> Path:
    """tmp_path/in holds a valid trace (with and without grad_norm) and importance log; outputs go elsewhere."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_trace(folder / "trace.parquet")
    write_trace(folder / "nograd.parquet", with_grad=False)
    write_log(folder / "imp.parquet")
    return folder


# ---------------------------------------------------------------------------
# replay: every bad input is a clean failure and writes nothing


def _bad_trace(name):
    """Builders of malformed traces: (folder) -> path."""
    def truncated(d):
        data = write_trace(d / "full.parquet").read_bytes()
        (d / "full.parquet").unlink()
        (d / name).write_bytes(data[: len(data) // 2])

    def empty(d):
        with TraceWriter(d / name, TABLES, with_grad=False):
            pass

    builders = {
        "missing_column.parquet": lambda d: raw_trace(d / name, row=None),
        "float_step.parquet": lambda d: raw_trace(d / name, step=pa.array([0.0, 0, 1, 2])),
        "string_row.parquet": lambda d: raw_trace(d / name, row=pa.array(["a", "b", "c", "d"])),
        "int_grad.parquet": lambda d: raw_trace(d / name, grad_norm=pa.array([[1, 2, 3, 4]] * 4, pa.list_(pa.int32()))),
        "negative_row.parquet": lambda d: raw_trace(d / name, row=pa.array([3, -4, 5, 6], pa.int64())),
        "row_too_big.parquet": lambda d: raw_trace(d / name, row=pa.array([3, 20_000, 5, 6], pa.int64())),
        "table_out_of_range.parquet": lambda d: raw_trace(d / name, table=pa.array([0, 1, 2, 1], pa.int32())),
        "negative_step.parquet": lambda d: raw_trace(d / name, step=pa.array([-1, 0, 1, 2], pa.int64())),
        "decreasing.parquet": lambda d: raw_trace(d / name, step=pa.array([0, 2, 1, 3], pa.int64())),
        "nan_grad.parquet": lambda d: raw_trace(d / name, grad_norm=pa.array(
            [[1.0] * 4, [1.0, float("nan"), 1.0, 1.0], [1.0] * 4, [1.0] * 4], pa.list_(pa.float32()))),
        "inf_grad.parquet": lambda d: raw_trace(d / name, grad_norm=pa.array(
            [[1.0] * 4, [1.0] * 4, [float("inf"), 1.0, 1.0, 1.0], [1.0] * 4], pa.list_(pa.float32()))),
        "negative_grad.parquet": lambda d: raw_trace(d / name, grad_norm=pa.array(
            [[1.0] * 4, [1.0] * 4, [1.0] * 4, [1.0, 1.0, 1.0, -0.5]], pa.list_(pa.float32()))),
        "short_grad.parquet": lambda d: raw_trace(d / name, grad_norm=pa.array(
            [[1.0] * 3] * 4, pa.list_(pa.float32()))),
        "null_row.parquet": lambda d: raw_trace(d / name, row=pa.array([3, None, 5, 6], pa.int64())),
        "empty.parquet": empty,
        "truncated.parquet": truncated,
        "not_parquet.parquet": lambda d: (d / name).write_text("step,table,row\n0,0,1\n"),
        "a_folder.parquet": lambda d: (d / name).mkdir(),
    }
    return builders[name]


BAD_TRACES = [
    ("missing_column.parquet", ["missing column", "row"]),
    ("float_step.parquet", ["'step'", "double"]),
    ("string_row.parquet", ["'row'", "string"]),
    ("int_grad.parquet", ["'grad_norm'"]),
    ("negative_row.parquet", ["record 1", "row -4", "negative"]),
    ("row_too_big.parquet", ["record 1", "row 20000", "outside 0..19999"]),
    ("table_out_of_range.parquet", ["record 2", "table index 2"]),
    ("negative_step.parquet", ["record 0", "step -1", "negative"]),
    ("decreasing.parquet", ["record 2", "non-decreasing"]),
    ("nan_grad.parquet", ["record 1", "nan"]),
    ("inf_grad.parquet", ["record 2", "inf"]),
    ("negative_grad.parquet", ["record 3", "-0.5"]),
    ("short_grad.parquet", ["grad_norm has 3 values", "K=4"]),
    ("null_row.parquet", ["record 1", "null"]),
    ("empty.parquet", ["no lookups"]),
    ("truncated.parquet", ["not a readable Parquet file"]),
    ("not_parquet.parquet", ["not a readable Parquet file"]),
    ("a_folder.parquet", ["is not a file"]),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
@pytest.mark.parametrize("name, words", BAD_TRACES, ids=[n.split(".")[0] for n, _ in BAD_TRACES])
def test_replay_bad_trace(monkeypatch, capsys, tmp_path, name, words, as_json):
    _bad_trace(name)(tmp_path)
    # without -q: the progress bar must not leak onto stderr around the error line either
    args = (["replay", tmp_path / name, "--out", tmp_path / "res", "--report-every", "5"]
            + (["--json"] if as_json else []))
    fails_cleanly(monkeypatch, capsys, tmp_path, args, str(tmp_path / name), *words)


def test_replay_missing_trace(monkeypatch, capsys, tmp_path):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", tmp_path / "nope.parquet", "--out", tmp_path / "res"],
                  "trace file not found", "nope.parquet")


def test_user_text_in_messages_is_printed_verbatim(monkeypatch, capsys, tmp_path):
    """Paths and values are not rich markup or emoji codes: no crash, nothing swallowed."""
    odd = tmp_path / "[bold]:smile:[/]  two  spaces.parquet"
    line = fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", odd, "--out", tmp_path / "res"],
                         "trace file not found")
    assert line.endswith("[bold]:smile:[/] two spaces.parquet")  # whitespace runs collapse to keep one line
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "--out", tmp_path / "res", "--allocator", "[red]x[/red]"],
                  "got '[red]x[/red]'")


def _tables_file(d: Path, text: str, suffix=".json") -> Path:
    path = d / f"tables{suffix}"
    path.write_text(text)
    return path


BAD_IMPORTANCE = [
    ("nan", lambda d: write_log(d / "log.parquet", (0.5, float("nan"), 2.0)), ["record 1", "importance nan"]),
    ("negative", lambda d: write_log(d / "log.parquet", (0.5, 1.0, -2.0)), ["record 2", "importance -2"]),
    ("inf", lambda d: write_log(d / "log.parquet", (float("inf"), 1.0, 2.0)), ["record 0", "importance inf"]),
    ("chunk_out_of_range", lambda d: write_importance(d / "log.parquet", [0], [0], [1], [4], [1.0]), ["chunk 4"]),
    ("row_out_of_range", lambda d: write_importance(d / "log.parquet", [0], [1], [20_000], [0], [1.0]), ["row 20000"]),
    ("unsorted", lambda d: write_importance(d / "log.parquet", [2, 1], [0, 0], [1, 1], [0, 0], [1.0, 1.0]),
     ["non-decreasing"]),
    ("missing_column", lambda d: pq.write_table(pa.table({"step": pa.array([0], pa.int64())}), d / "log.parquet"),
     ["missing column"]),
    ("truncated", lambda d: (d / "log.parquet").write_bytes(write_log(d / "x.parquet").read_bytes()[:200]),
     ["not a readable Parquet file"]),
]


@pytest.mark.parametrize("make, words", [(m, w) for _, m, w in BAD_IMPORTANCE], ids=[i for i, _, _ in BAD_IMPORTANCE])
def test_replay_bad_importance_log(monkeypatch, capsys, tmp_path, inputs, make, words):
    make(inputs)
    # the trace has no grad_norm, so no "the log wins" warning joins the error on stderr
    args = ["replay", inputs / "nograd.parquet", "--importance", inputs / "log.parquet", "--out", tmp_path / "res"]
    fails_cleanly(monkeypatch, capsys, tmp_path, args + FAST, "log.parquet", *words)


def test_replay_missing_importance_log(monkeypatch, capsys, tmp_path, inputs):
    args = ["replay", inputs / "nograd.parquet", "--importance", tmp_path / "nope.parquet", "--out", tmp_path / "res"]
    fails_cleanly(monkeypatch, capsys, tmp_path, args, "importance log not found", "nope.parquet")


# (extra replay arguments, words the error line must contain); `{d}` is the inputs folder
BAD_OPTIONS = {
    # policies
    "unknown_policy": (["--policy", "fiited,lru2"], ["unknown policy 'lru2'"]),
    "empty_policy": (["--policy", ","], ["--policy is empty"]),
    "markup_in_policy": (["--policy", "[/]"], ["unknown policy '[/]'"]),  # rich markup must not crash the message
    # budgets
    "budget_not_a_number": (["--budget", "abc"], ["budget 'abc' is not a number"]),
    "budget_trailing_junk": (["--budget", "0.1x"], ["unknown unit 'x'"]),
    "budget_unknown_unit": (["--budget", "2 parsecs"], ["unknown unit 'parsecs'"]),
    "budget_empty": (["--budget", ","], ["--budget is empty"]),
    "budget_negative_fraction": (["--budget", "-0.1"], ["budget '-0.1' is negative"]),
    "budget_negative_bytes": (["--budget", "-2GiB"], ["budget '-2GiB' is negative"]),
    "budget_negative_in_list": (["--budget", "0.1,-0.05"], ["budget '-0.05' is negative"]),
    "budget_over_100x": (["--budget", "1000"], ["over 100x"]),
    "budget_infinite": (["--budget", "1e999"], ["not finite"]),
    "budget_twice": (["--budget", "0.1,0.1"], ["lists a budget twice"]),
    "budget_too_small_for_a_page": (["--budget", "1KiB", "--page-bytes", "65536"],
                                    ["budget 1KiB (1024 bytes) leaves no room for one 65536-byte page"]),
    "budget_zero": (["--budget", "0", "--page-bytes", "65536"], ["no room for one 65536-byte page"]),
    "budget_small_fraction": (["--budget", "0.05,0.001", "--page-bytes", "65536"],
                              ["budget 0.001 (8960 bytes) leaves no room"]),
    "budget_covers_all_too_small": (["--budget", "0.0001", "--budget-covers", "all", "--page-bytes", "65536"],
                                    ["no room"]),
    # tables and overrides
    "tables_c_not_dividing_d": (["--tables", "{d}/bad_chunk.json"],
                                ["bad_chunk.json", "chunk C=5 does not divide dim D=16"]),
    "tables_toml_c_not_dividing_d": (["--tables", "{d}/bad_chunk.toml"],
                                     ["bad_chunk.toml", "C=3 does not divide dim D=32"]),
    "tables_not_json": (["--tables", "{d}/broken.json"], ["broken.json", "cannot parse tables file"]),
    "tables_missing": (["--tables", "{d}/nope.json"], ["tables file not found", "nope.json"]),
    "tables_wrong_count": (["--tables", "{d}/one_table.json"], ["lists 1 tables", "written for 2"]),
    "tables_rows_too_small": (["--tables", "{d}/small_rows.json", "--page-bytes", "64"], ["row", "outside 0..9"]),
    "chunk_not_dividing_dim_override": (["--dim", "30", "--chunk", "4"], ["chunk C=4 does not divide dim D=30"]),
    "chunk_override_alone": (["--chunk", "5"], ["chunk C=5 does not divide dim D=16"]),
    "chunk_override_vs_grad_norm": (["--chunk", "8"], ["grad_norm has 4 values", "K=2"]),
    "dim_override_vs_grad_norm": (["--dim", "64"], ["grad_norm has 4 values", "K=16"]),
    "dim_zero": (["--dim", "0"], ["dim and chunk must be positive"]),
    "too_many_chunks": (["--dim", "1024", "--chunk", "4"], ["at most 128 chunks"]),
    "dtype_bytes": (["--dtype-bytes", "3"], ["dtype_bytes must be 1, 2, 4 or 8"]),
    "chunk_bigger_than_page": (["--page-bytes", "16"], ["does not fit a page of 16 bytes"]),
    # knobs
    "allocator": (["--allocator", "best-fit"], ["--allocator must be 'lowest' or 'lifo'", "best-fit"]),
    "budget_covers": (["--budget-covers", "index"], ["--budget-covers must be 'payload' or 'all'", "index"]),
    "gamma_zero": (["--gamma", "0"], ["--gamma must be in (0, 1]"]),
    "gamma_above_one": (["--gamma", "1.5"], ["--gamma must be in (0, 1]", "1.5"]),
    "gamma_nan": (["--gamma", "nan"], ["--gamma must be in (0, 1]"]),
    "gamma_not_a_number": (["--gamma", "abc"], ["--gamma"]),
    "interval_zero": (["--interval", "0"], ["--interval must be at least 1"]),
    "interval_not_an_int": (["--interval", "1.5"], ["--interval"]),
    "position_weight": (["--position-weight", "0"], ["--position-weight must be in (0, 1]"]),
    "position_weight_inf": (["--position-weight", "inf"], ["--position-weight must be in (0, 1]"]),
    "page_bytes": (["--page-bytes", "0"], ["--page-bytes must be positive"]),
    "max_load": (["--max-load", "1"], ["--max-load must be in (0, 1)"]),
    "index_initial": (["--index-initial", "1000"], ["--index-initial must be a power of two"]),
    "report_every": (["--report-every", "0"], ["--report-every must be at least 1"]),
    "mde_exponent_above_one": (["--policy", "mde", "--mde-exponent", "2"], ["--mde-exponent must be in [0, 1]"]),
    "mde_exponent_negative": (["--policy", "mde", "--mde-exponent", "-0.5"], ["--mde-exponent must be in [0, 1]"]),
    "mde_exponent_nan": (["--policy", "mde", "--mde-exponent", "nan"], ["--mde-exponent must be in [0, 1]"]),
    # hash: users rows are 64 B of a 6,400,000 B share of 8,960,000, items rows 128 B of 2,560,000. At 400 B
    # items get 400 * 2,560,000 // 8,960,000 = 114 B: no row. A row of items needs 128 * 8,960,000 / 2,560,000
    # = 448 B of budget (users only ceil(89.6) = 90 B).
    "hash_budget_below_a_row": (["--policy", "hash", "--budget", "400B"],
                                ["holds no full row of table 'items' for hash", "smallest workable budget is 448"]),
    "unknown_option": (["--budjet", "0.1"], ["No such option: --budjet"]),
    "missing_option_value": (["--budget"], ["--budget"]),
}


@pytest.fixture
def table_files(inputs) -> Path:
    d = inputs
    (d / "bad_chunk.json").write_text(json.dumps([{"name": "users", "rows": 100_000, "dim": 16, "chunk": 5},
                                                  {"name": "items", "rows": 20_000, "dim": 32, "chunk": 8}]))
    (d / "bad_chunk.toml").write_text('[[tables]]\nname = "users"\nrows = 100000\ndim = 16\nchunk = 4\n'
                                      '[[tables]]\nname = "items"\nrows = 20000\ndim = 32\nchunk = 3\n')
    (d / "broken.json").write_text('[{"name": "users", "rows": ')
    (d / "one_table.json").write_text(json.dumps([{"name": "users", "rows": 100_000, "dim": 16, "chunk": 4}]))
    (d / "small_rows.json").write_text(json.dumps([{"name": "users", "rows": 10, "dim": 16, "chunk": 4},
                                                   {"name": "items", "rows": 10, "dim": 32, "chunk": 8}]))
    return d


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
@pytest.mark.parametrize("extra, words", list(BAD_OPTIONS.values()), ids=list(BAD_OPTIONS))
def test_replay_bad_options(monkeypatch, capsys, tmp_path, table_files, extra, words, as_json):
    extra = [a.replace("{d}", str(table_files)) for a in extra]
    args = (["replay", table_files / "trace.parquet", "--out", tmp_path / "res", "--report-every", "5"]
            + (["--json"] if as_json else []) + extra)
    fails_cleanly(monkeypatch, capsys, tmp_path, args, *words)


def test_replay_bad_options_on_the_shipped_sample(monkeypatch, capsys, tmp_path):
    """No trace argument: the sample is used, and bad flags still fail before anything is replayed or written."""
    for extra, words in [(["--chunk", "7"], ["chunk C=7 does not divide dim D=64"]),
                         (["--budget", "1B"], ["budget 1B (1 bytes) leaves no room"]),
                         (["--policy", "nope"], ["unknown policy 'nope'"])]:
        fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "-q", "--out", tmp_path / "res", *extra], *words)


# ---------------------------------------------------------------------------
# replay --out: only new, empty or earlier results folders


def test_out_is_a_foreign_non_empty_folder(monkeypatch, capsys, tmp_path, inputs):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", inputs / "trace.parquet", "--out", out, *FAST],
                  f"--out {out} exists and is not a fiitedsim results folder")
    assert (out / "notes.txt").read_text() == "keep me\n"


def test_out_with_a_foreign_summary_json_is_not_replaced(monkeypatch, capsys, tmp_path, inputs):
    """A folder is only deleted and replaced when its summary.json was written by fiitedsim."""
    out = tmp_path / "project"
    out.mkdir()
    (out / "summary.json").write_text('{"title": "my notes"}')
    (out / "data.csv").write_text("1,2\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", inputs / "trace.parquet", "--out", out, *FAST],
                  "is not a fiitedsim results folder")


def test_out_is_a_file(monkeypatch, capsys, tmp_path, inputs):
    (tmp_path / "res").write_text("x")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", inputs / "trace.parquet", "--out", tmp_path / "res", *FAST],
                  "is not a fiitedsim results folder")


def test_out_below_a_file(monkeypatch, capsys, tmp_path, inputs):
    (tmp_path / "afile").write_text("x")
    fails_cleanly(monkeypatch, capsys, tmp_path,
                  ["replay", inputs / "trace.parquet", "--out", tmp_path / "afile" / "sub" / "res", *FAST],
                  "is not a folder")


@pytest.mark.parametrize("where", [".", "..", "sub/.."])
def test_out_is_the_current_folder_or_above(monkeypatch, capsys, tmp_path, inputs, where):
    """Replacing the results folder deletes it first: never the folder we stand in, even when it is empty."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", inputs / "trace.parquet", "--out", where, *FAST],
                  "is the current folder or contains it")


def test_failed_run_leaves_earlier_results_untouched(monkeypatch, capsys, tmp_path, inputs):
    out = tmp_path / "res"
    ok = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--out", out, *FAST)
    assert ok.code == 0, ok.err
    raw_trace(inputs / "bad.parquet", row=pa.array([3, -4, 5, 6], pa.int64()))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", inputs / "bad.parquet", "--out", out, *FAST], "row -4")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", inputs / "trace.parquet", "--out", out, "--gamma", "2"],
                  "--gamma")


def test_out_replaces_earlier_results_and_accepts_an_empty_folder(monkeypatch, capsys, tmp_path, inputs):
    out = tmp_path / "res"
    out.mkdir()
    assert run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--out", out, "--policy", "full",
               *FAST).code == 0
    assert sorted(p.name for p in (out / "timeseries").iterdir()) == ["full.parquet"]
    r = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--out", out, "--policy", "fiited", *FAST)
    assert r.code == 0, r.err
    assert sorted(p.name for p in (out / "timeseries").iterdir()) == ["fiited.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "res"]  # no temporary leftovers


def test_crash_while_writing_leaves_no_output(monkeypatch, capsys, tmp_path, inputs):
    """An unexpected error half-way through writing the results removes the temporary folder."""
    import fiitedsim.replay as replay_mod

    def boom(summary):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(replay_mod, "summary_text", boom)
    monkeypatch.setattr(sys, "argv", ["fiitedsim", "replay", str(inputs / "trace.parquet"), "--out",
                                      str(tmp_path / "res"), *FAST])
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError, match="disk on fire"):  # a bug, not bad input: it keeps its traceback
        cli.main()
    assert snapshot(tmp_path) == before


def test_interrupt_exits_130_and_writes_nothing(monkeypatch, capsys, tmp_path, inputs):
    import fiitedsim.replay as replay_mod

    def interrupted(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(replay_mod, "replay_runs", interrupted)
    before = snapshot(tmp_path)
    r = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--out", tmp_path / "res", *FAST)
    assert r.code == 130 and "Traceback" not in r.err
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------
# One line whatever the terminal width (subprocess: rich reads COLUMNS when the console is created)


def _cli_subprocess(*args, columns="80"):
    env = dict(os.environ, COLUMNS=columns, TERM="xterm-256color")
    return subprocess.run([sys.executable, "-m", "fiitedsim", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.slow  # runs the command in a subprocess
def test_long_error_is_not_wrapped_at_terminal_width(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-an-even-longer-trace-file-name.parquet"
    p = _cli_subprocess("replay", deep, "--out", tmp_path / "res")
    r = Run(p.returncode, p.stdout, p.stderr)
    line = assert_clean_failure(r, "trace file not found", str(deep))
    assert len(line) > 100
    assert not (tmp_path / "res").exists()


@pytest.mark.slow  # runs the command in a subprocess
def test_warning_and_error_are_one_line_each_at_narrow_width(tmp_path):
    """No table list (inference warning, itself long) and then a decreasing step: two lines, none wrapped."""
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"step": pa.array([0, 2, 1], pa.int64()), "table": pa.array([0, 0, 0], pa.int32()),
                             "row": pa.array([1, 2, 3], pa.int64())}), path)
    p = _cli_subprocess("replay", path, "--out", tmp_path / "res", "--page-bytes", "64", columns="40")
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 2, p.stderr
    assert lines[0].startswith("warning:") and "inferred 1 table(s)" in lines[0] and lines[0].endswith("real sizes")
    assert lines[1].startswith("error:") and "non-decreasing" in lines[1]
    assert not (tmp_path / "res").exists()


@pytest.mark.slow  # runs the command in a subprocess
def test_click_usage_error_is_one_line_in_a_real_process(tmp_path):
    p = _cli_subprocess("replay", "--interval", "often", "--out", tmp_path / "res", columns="40")
    assert_clean_failure(Run(p.returncode, p.stdout, p.stderr), "--interval")
    assert not (tmp_path / "res").exists()


# ---------------------------------------------------------------------------
# generate: bad options


BAD_GENERATE = {
    "chunk_not_dividing_dim": (["--dim", "16", "--chunk", "5"], ["--chunk 5 does not divide --dim 16"]),
    "unknown_profile": (["--profile", "meta2099"], ["unknown --profile 'meta2099'"]),
    "zero_steps": (["--steps", "0"], ["--steps must be positive, got 0"]),
    "negative_steps": (["--steps", "-3"], ["--steps must be positive, got -3"]),
    "zero_rows": (["--rows", "0"], ["--rows must be positive"]),
    "zero_tables": (["--table-count", "0"], ["--table-count must be positive"]),
    "zero_batch": (["--batch", "0"], ["--batch must be positive"]),
    "drift": (["--drift", "1.5"], ["--drift must be in [0, 1)"]),
    "alpha": (["--alpha", "-1"], ["--alpha must be positive"]),
    "alpha_not_a_number": (["--alpha", "steep"], ["--alpha"]),
    "negative_seed": (["--seed", "-1"], ["--seed must be between 0"]),
    "meta_rows_below_batch": (["--profile", "meta2021", "--rows", "8"], ["needs --rows >= --batch"]),
    "unknown_option": (["--stepz", "3"], ["No such option: --stepz"]),
}


@pytest.mark.parametrize("extra, words", list(BAD_GENERATE.values()), ids=list(BAD_GENERATE))
def test_generate_bad_options(monkeypatch, capsys, tmp_path, extra, words):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["generate", tmp_path / "t.parquet", *GEN_SMALL, *extra], *words)


def test_generate_output_is_a_folder_or_below_a_file(monkeypatch, capsys, tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["generate", tmp_path / "folder", *GEN_SMALL], "is a directory")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["generate", tmp_path / "afile" / "t.parquet", *GEN_SMALL],
                  "afile is not a folder")


def test_generate_missing_output_argument(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["generate", *GEN_SMALL], "Missing")


# ---------------------------------------------------------------------------
# Happy paths


def test_replay_without_a_trace_replays_the_shipped_sample(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    r = run(monkeypatch, capsys, "replay")
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    for name in ("fiited", "uniform-dim", "uniform-row", "full"):
        assert name in r.out
    assert "sample.parquet" in r.out
    assert r.err == ""  # no warning, and the progress bar stays silent when stderr is not a terminal
    assert list(tmp_path.iterdir()) == []  # nothing written without --out


def test_replay_json(monkeypatch, capsys):
    r = run(monkeypatch, capsys, "replay", "--json")  # --json also silences the progress bar
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert {"policies", "config", "trace"} <= set(summary)
    assert Path(summary["trace"]["path"]) == cli.SAMPLE_TRACE
    assert list(summary["policies"]) == ["fiited", "uniform-dim", "uniform-row", "full"]
    for key, s in summary["policies"].items():
        assert set(SUMMARY_KEYS) <= set(s), (key, set(SUMMARY_KEYS) - set(s))
        assert s["lookups"] == summary["trace"]["lookups"] > 0
    assert r.err.strip() == ""


def test_replay_budget_list_keys_and_all_policies(monkeypatch, capsys, inputs):
    r = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--budget", "0.05,0.1", "--policy", "all",
            "--json", *FAST)
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert list(summary["policies"]) == [f"{name}@{b}" for b in ("0.05", "0.1") for name in POLICIES]
    # touched rows, counted here with numpy: distinct (table, row) pairs of the trace, times each table's row bytes
    _, table, row, _ = lookups()
    pairs = np.unique(np.stack([table, row]), axis=1)
    per_table = [int((pairs[0] == t).sum()) for t in range(len(TABLES))]
    touched = sum(n * t.dim * 4 for n, t in zip(per_table, TABLES))
    assert summary["trace"]["touched_rows_per_table"] == per_table
    assert summary["trace"]["touched_dense_bytes"] == touched
    dense = 100_000 * 16 * 4 + 20_000 * 32 * 4  # 8,960,000
    # The layouts (docs/semantics.md "Layout"). Pools: users' 16-byte chunks (dense 6,400,000), items' 32-byte
    # chunks (2,560,000). 0.05: shares 320,000 and 128,000 bytes; 128,000 holds 16 pages of 4096 (31), not of
    # 8192 (15): pages of 4096, caps 78 and 31 pages of 256 and 128 slots, N = 19,968 and 3,968 chunks. Index
    # (t, k) holds at most min(rows, N // (k + 1)) entries: users 19,968, 9,984, 6,656, 4,992 -> the smallest
    # power of two c with n <= 0.75 c: 32768, 16384, 16384, 8192; items 3,968, 1,984, 1,322, 992 -> 8192, 4096,
    # 2048, 2048. 0.1: shares 640,000 and 256,000: pages of 8192 (256,000 // 8192 = 31), caps 78 and 31 pages
    # of 512 and 256 slots, N = 39,936 and 7,936: users 39,936, 19,968, 13,312, 9,984 -> 65536, 32768, 32768,
    # 16384; items 7,936, 3,968, 2,645, 1,984 -> 16384, 8192, 4096, 4096.
    assert summary["config"]["budgets"] == [
        {"label": "0.05", "bytes": 448_000, "dense_share": 448_000 / dense, "touched_share": 448_000 / touched,
         "page_bytes": 4096, "index_initial": [[32768, 16384, 16384, 8192], [8192, 4096, 2048, 2048]]},
        {"label": "0.1", "bytes": 896_000, "dense_share": 896_000 / dense, "touched_share": 896_000 / touched,
         "page_bytes": 8192, "index_initial": [[65536, 32768, 32768, 16384], [16384, 8192, 4096, 4096]]}]
    assert summary["config"]["page_bytes"] == summary["config"]["index_initial"] == "auto"  # as given
    for s in summary["policies"].values():
        assert set(SUMMARY_KEYS) <= set(s)


def test_replay_warns_of_comparisons_that_say_nothing(monkeypatch, capsys, inputs):
    """At 10x the dense size full, uniform-dim (D' = D) and hash (a bucket per row) keep everything: identical;
    with --interval 1000 over steps 0..29 no pruning round runs."""
    r = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--budget", "10", "--policy",
            "fiited,full,uniform-dim,hash", "--interval", "1000", "--json", "-q")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    warnings = summary["warnings"]
    assert r.err.splitlines() == [f"warning: {w}" for w in warnings]
    assert warnings[0].startswith("fiited ran 0 pruning rounds (interval 1000 over steps 0..29)")
    assert warnings[1].startswith("full, uniform-dim and hash produced identical hit counts and memory at budget 10")
    assert len(warnings) == 2 and "holds all of them" in warnings[1]
    r = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--budget", "0.1", "--policy", "fiited,full",
            "--json", *FAST)
    assert json.loads(r.out)["warnings"] == [] and r.err == ""


def test_replay_with_importance_log_and_overrides(monkeypatch, capsys, inputs):
    r = run(monkeypatch, capsys, "replay", inputs / "nograd.parquet", "--importance", inputs / "imp.parquet",
            "--count-accesses", "--budget", "2MiB", "--allocator", "lifo", "--budget-covers", "all", "--json", *FAST)
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["trace"]["importance_records"] == 3 and summary["trace"]["importance"].endswith("imp.parquet")
    assert summary["config"]["allocator"] == "lifo" and summary["config"]["count_accesses"] is True
    # --dim/--chunk overrides that agree with the data are accepted (no grad_norm here)
    r = run(monkeypatch, capsys, "replay", inputs / "nograd.parquet", "--dim", "64", "--chunk", "16", "--json", *FAST)
    assert r.code == 0, r.err
    assert [(t["dim"], t["chunk"]) for t in json.loads(r.out)["trace"]["tables"]] == [(64, 16), (64, 16)]


def test_warnings_go_to_stderr_and_keep_json_clean(monkeypatch, capsys, inputs):
    """A trace with grad_norm plus a log warns (log wins); stdout stays pure JSON."""
    r = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--importance", inputs / "imp.parquet",
            "--json", *FAST)
    assert r.code == 0, r.err
    json.loads(r.out)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "the log wins" in lines[0]


def test_replay_out_writes_summary_and_timeseries(monkeypatch, capsys, tmp_path, inputs):
    out = tmp_path / "runs" / "demo"
    r = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--out", out, "--json", *FAST)
    assert r.code == 0, r.err
    assert (out / "summary.json").read_text() == r.out  # the file is exactly what --json prints
    summary = json.loads(r.out)
    assert sorted(p.name for p in (out / "timeseries").iterdir()) == sorted(f"{k}.parquet" for k in summary["policies"])
    for key in summary["policies"]:
        frame = pq.read_table(out / "timeseries" / f"{key}.parquet")
        assert frame.num_rows >= STEPS // 5
    umask = os.umask(0)
    os.umask(umask)
    for path in [out, out / "timeseries", out / "summary.json", *(out / "timeseries").iterdir()]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o777 if path.is_dir() else 0o666) & ~umask, (path, oct(mode))
        assert mode != 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo"]  # no temporary leftovers
    r = run(monkeypatch, capsys, "replay", inputs / "trace.parquet", "--out", out, *FAST)
    assert r.code == 0 and "results in" in r.err and "fiited" in r.out


def test_replay_is_deterministic(monkeypatch, capsys, tmp_path, inputs):
    args = [inputs / "trace.parquet", "--budget", "0.05,0.2", "--policy", "all", *FAST]
    for name in ("a", "b"):
        assert run(monkeypatch, capsys, "replay", *args, "--out", tmp_path / name).code == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    names = sorted(p.name for p in (a / "timeseries").iterdir())
    assert names == sorted(p.name for p in (b / "timeseries").iterdir()) and len(names) == 2 * len(POLICIES)
    for name in names:
        assert (a / "timeseries" / name).read_bytes() == (b / "timeseries" / name).read_bytes(), name


def test_generate_same_seed_same_bytes_and_replayable(monkeypatch, capsys, tmp_path):
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        r = run(monkeypatch, capsys, "generate", tmp_path / f"{name}.parquet", *GEN_SMALL, "--seed", seed)
        assert r.code == 0, r.err
        assert r.out == "" and "wrote" in r.err
    a, b, c = ((tmp_path / f"{n}.parquet").read_bytes() for n in "abc")
    assert a == b and a != c
    mode = (tmp_path / "a.parquet").stat().st_mode & 0o777
    assert mode != 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet", "c.parquet"]
    r = run(monkeypatch, capsys, "replay", tmp_path / "a.parquet", "--page-bytes", "1024", "--json", *FAST)
    assert r.code == 0, r.err
    assert json.loads(r.out)["trace"]["lookups"] == 4 * 2 * 16


@pytest.mark.parametrize("command, options", [("replay", REPLAY_OPTIONS), ("generate", GENERATE_OPTIONS)])
def test_help(monkeypatch, capsys, command, options):
    monkeypatch.setenv("COLUMNS", "80")
    r = run(monkeypatch, capsys, command, "--help")
    assert r.code == 0, r.err
    for option in options:
        assert option in r.out, option


def test_top_level_help_and_bare_command(monkeypatch, capsys):
    r = run(monkeypatch, capsys, "--help")
    assert r.code == 0 and "replay" in r.out and "generate" in r.out
    r = run(monkeypatch, capsys, "nosuch")
    assert_clean_failure(r, "No such command 'nosuch'")


def test_steps_near_the_int64_limit_stay_exact_in_every_time_series(monkeypatch, capsys, tmp_path):
    """Issue 14, item 2: snapshot rows went through float64, so 2**53 + 1 became 2**53 and 2**63 - 1 became
    -2**63 (with a RuntimeWarning on stderr). Integer columns are int64 end to end now."""
    import warnings

    steps = [2**53 + 1, 2**53 + 1, 2**62 + 3, 2**63 - 2, 2**63 - 1, 2**63 - 1]
    path = tmp_path / "big.parquet"
    with TraceWriter(path, [TableSpec("a", rows=100, dim=8, chunk=4)], with_grad=False) as w:
        w.write(np.array(steps, np.int64), np.zeros(6, np.int32), np.array([1, 2, 1, 3, 1, 2], np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflowing cast warns; that is a failure here
        r = run(monkeypatch, capsys, "replay", path, "--policy", "all", "--budget", "0.9", "--page-bytes", "64",
                "--report-every", "1", "--out", tmp_path / "o", "--json", "-q")
    # only the comparison warnings (a budget that holds all 3 rows touched makes policies tie), no RuntimeWarning
    assert r.code == 0 and r.err.splitlines() == [f"warning: {w}" for w in json.loads(r.out)["warnings"]], r.err
    summary = json.loads(r.out)
    assert (summary["trace"]["first_step"], summary["trace"]["last_step"]) == (2**53 + 1, 2**63 - 1)
    for key in POLICIES:
        frame = pq.read_table(tmp_path / "o" / "timeseries" / f"{key}.parquet")
        assert frame.column("step").to_pylist() == [2**53 + 1, 2**62 + 3, 2**63 - 2, 2**63 - 1], key
        for name in frame.column_names:
            expected = pa.float64() if name in ("fragmentation", "theta", "index_load_factor") else pa.int64()
            assert frame.schema.field(name).type == expected, (key, name)
        assert frame.column("lookups").to_pylist() == [2, 3, 4, 6], key
