"""Issue 14's classes of bad input, one section each: every case is one `error:` line, exit code 2, no traceback
and nothing written (`fails_cleanly`), or, where the input is fine after all, the documented result.

(Write errors are in test_write_errors.py, the report's checks in test_report.py, uniform-row in
test_reference_cases.py, and generated hostile inputs in test_hostile.py.)
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli import FAST, GEN_SMALL, TABLES, fails_cleanly, run, write_trace

from fiitedsim.config import TableSpec, tables_to_json
from fiitedsim.traces.writer import TABLES_KEY


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    return d


def _sweep(d: Path, trace: Path, **more) -> Path:
    keys = {"traces": [str(trace)], "policies": ["full"], "budgets": [0.5], "out": str(d.parent / "sw"), **more}
    path = d / "s.toml"
    path.write_text("[sweep]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return path


# ---------------------------------------------------------------------------
# Item 6: a column name given twice


def _twice(d: Path, name: str) -> Path:
    """A trace whose Parquet schema has two columns called `name` (pyarrow writes that without complaint)."""
    arrays = [pa.array([0, 0, 1], pa.int64()), pa.array([0, 1, 0], pa.int32()), pa.array([3, 4, 5], pa.int64()),
              pa.array([6, 7, 8], pa.int64())]
    names = ["step", "table", "row", name]
    table = pa.Table.from_arrays(arrays, names=names).replace_schema_metadata({TABLES_KEY: tables_to_json(TABLES)})
    pq.write_table(table, d / f"twice-{name}.parquet")
    return d / f"twice-{name}.parquet"


@pytest.mark.parametrize("name", ["row", "step", "table", "extra"])
@pytest.mark.parametrize("command", ["replay", "inspect", "sweep"])
def test_a_trace_with_a_column_name_twice(monkeypatch, capsys, tmp_path, folder, name, command):
    """replay, inspect and sweep crashed with KeyError: 'Column row does not exist in schema'."""
    trace = _twice(folder, name)
    if name == "extra":  # a column no one reads, given twice: still refused (a trace has a fixed schema)
        pq.write_table(pq.read_table(trace).append_column("extra", pa.array([1, 2, 3])), trace)
    args = {"replay": ["replay", trace, "--out", tmp_path / "o", "-q"], "inspect": ["inspect", trace, "-q"],
            "sweep": ["sweep", _sweep(folder, trace), "-q"]}[command]
    fails_cleanly(monkeypatch, capsys, tmp_path, args, str(trace), f"2 columns are named '{name}'", "rename")


def test_an_importance_log_with_a_column_name_twice(monkeypatch, capsys, tmp_path, folder):
    trace = write_trace(folder / "t.parquet")
    log = pa.Table.from_arrays([pa.array([0], pa.int64()), pa.array([0], pa.int32()), pa.array([1], pa.int64()),
                                pa.array([0], pa.int16()), pa.array([1.0], pa.float32()), pa.array([2.0])],
                               names=["step", "table", "row", "chunk", "importance", "importance"])
    pq.write_table(log, folder / "log.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", trace, "--importance", folder / "log.parquet", "-q"],
                  "log.parquet", "2 columns are named 'importance'")


def test_import_csv_refuses_a_used_column_given_twice(monkeypatch, capsys, tmp_path, folder):
    """`import csv` silently took the first of two `row` columns."""
    (folder / "l.csv").write_text("step,table,row,row\n0,0,1,5\n1,0,2,6\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "csv", folder / "l.csv", "-o", tmp_path / "o.parquet"],
                  "l.csv", "2 columns are named 'row'")
    # a repeated column that is not read is harmless
    (folder / "m.csv").write_text("step,table,row,note,note\n0,0,1,a,b\n1,0,2,c,d\n")
    result = run(monkeypatch, capsys, "import", "csv", folder / "m.csv", "-o", tmp_path / "m.parquet", "-q")
    assert result.code == 0, result.err


def test_import_parquet_and_train_data_refuse_a_used_column_given_twice(monkeypatch, capsys, tmp_path, folder):
    table = pa.Table.from_arrays([pa.array([0, 1]), pa.array([0, 0]), pa.array([1, 2]), pa.array([3, 4])],
                                 names=["step", "table", "row", "step"])
    pq.write_table(table, folder / "l.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "parquet", folder / "l.parquet", "-o",
                                                  tmp_path / "o.parquet"], "2 columns are named 'step'")
    (folder / "d.csv").write_text("y,s,s\n1,a,b\n0,c,d\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"csv:{folder / 'd.csv'}", "--label", "y",
                                                  "--sparse", "s", "-q"], "d.csv", "2 columns are named 's'")


def test_a_criteo_header_with_a_column_name_twice(monkeypatch, capsys, tmp_path, folder):
    names = ["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 26)), "C25"]
    (folder / "c.csv").write_text(",".join(names) + "\n" + ",".join(["1"] * 14 + ["a"] * 26) + "\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "criteo", folder / "c.csv", "-o", tmp_path / "o.parquet"],
                  "2 columns are named 'C25'")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"criteo:{folder / 'c.csv'}", "-q"],
                  "2 columns are named 'C25'")


@pytest.mark.parametrize("where", ["tables file", "trace metadata"])
def test_a_table_entry_with_a_key_twice(monkeypatch, capsys, tmp_path, folder, where):
    """JSON keeps the last of two equal keys silently: {"rows": 5, "rows": 20000} was a table of 20000 rows."""
    text = '[{"name": "users", "rows": 100000, "dim": 16, "chunk": 4, "rows": 5}, ' \
           '{"name": "items", "rows": 20000, "dim": 32, "chunk": 8}]'
    trace = write_trace(folder / "t.parquet")
    if where == "tables file":
        (folder / "tables.json").write_text(text)
        args = ["replay", trace, "--tables", folder / "tables.json", "-q"]
    else:
        table = pq.read_table(trace)
        pq.write_table(table.replace_schema_metadata({TABLES_KEY: text.encode()}), folder / "m.parquet")
        args = ["replay", folder / "m.parquet", "-q"]
    fails_cleanly(monkeypatch, capsys, tmp_path, args, "key 'rows' is given twice")


# ---------------------------------------------------------------------------
# Item 10: Criteo files that `import criteo` reads and `train --data criteo:` refused, or explained badly


def _criteo(label, cats="a") -> str:
    return "\t".join(([str(label)] if label is not None else []) + ["1"] * 13 + [cats] * 26) + "\n"


def test_train_reads_a_criteo_file_with_a_byte_order_mark_and_gzip(tmp_path):
    from fiitedsim.traces.importers.criteo import import_criteo
    from fiitedsim.train.data import read_criteo

    body = "".join(_criteo(i % 2, f"v{i}") for i in range(6))
    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbf" + body.encode())
    (tmp_path / "plain.tsv").write_text(body)
    with gzip.open(tmp_path / "z.tsv.gz", "wt") as f:
        f.write(body)
    plain = read_criteo(tmp_path / "plain.tsv", rows=50)
    for name in ("bom.tsv", "z.tsv.gz"):
        ds = read_criteo(tmp_path / name, rows=50)
        assert np.array_equal(ds.sparse, plain.sparse) and np.array_equal(ds.label, plain.label), name
    # the importer took a byte-order mark before a headerless first sample for a header and dropped that sample
    report = import_criteo(tmp_path / "bom.tsv", tmp_path / "bom.parquet")
    assert report.lookups == 6 * 26
    header = ",".join(["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))])
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (header + "\n" + body.replace("\t", ",")).encode())
    assert np.array_equal(read_criteo(tmp_path / "bom.csv", rows=50).sparse, plain.sparse)


def test_train_on_a_criteo_test_file_says_it_has_no_labels(monkeypatch, capsys, tmp_path, folder):
    """A 39-field test file got pyarrow's "Expected 40 columns, got 39"."""
    (folder / "test.tsv").write_text(_criteo(None) * 3)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"criteo:{folder / 'test.tsv'}", "-q"],
                  "looks like a Criteo test file without labels", "39 fields")
    header = ",".join([*(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))])
    (folder / "test.csv").write_text(header + "\n" + ",".join(["1"] * 13 + ["a"] * 26) + "\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"criteo:{folder / 'test.csv'}", "-q"],
                  "looks like a Criteo test file without labels")
    (folder / "short.tsv").write_text("1\t2\t3\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"criteo:{folder / 'short.tsv'}", "-q"],
                  "the first line has 3 tab-separated fields", "a Criteo sample has 40")


# ---------------------------------------------------------------------------
# Item 7: knob values whose start-up arrays cannot be allocated, or whose byte counts overflow int64


@pytest.fixture
def eight_gib(monkeypatch):
    """The machine has 8 GiB, whatever it really has: the refusals below do not depend on the test machine."""
    from fiitedsim import memory

    monkeypatch.setattr(memory, "memory_limit", lambda: 8 * 2**30)


HUGE_REPLAY = [
    (["--index-initial", str(2**40)], ["--index-initial must be at most 2**30"]),
    (["--index-initial", str(2**28), "--budget", "0.9"],
     ["--index-initial 268435456", "would take 64 GiB of memory at the start", "more than the 8 GiB"]),
    (["--page-bytes", str(2**40), "--budget", "2TiB"],
     ["--page-bytes 1099511627776", "16 pages of 68719476736 chunk slots", "would take 256 GiB", "lower --page-bytes"]),
    (["--page-bytes", str(2**32), "--budget", "2TiB", "--allocator", "lifo"], ["--page-bytes 4294967296", "321 GiB"]),
    (["--budget", "1e25B", "--policy", "full,lru"], ["budget '1e25B' is beyond the 4 EiB"]),
    (["--budget", "9000PB"], ["unknown unit 'pb'"]),
    (["--policy", "full", "--dim", str(2**50), "--chunk", str(2**43), "--page-bytes", str(2**46),
      "--dtype-bytes", "8"], ["dense size", "is beyond the", "lower rows or dim"]),
]


@pytest.mark.parametrize("args, words", HUGE_REPLAY, ids=[" ".join(a) for a, _ in HUGE_REPLAY])
def test_replay_refuses_knobs_it_cannot_allocate_before_the_run(monkeypatch, capsys, tmp_path, folder, eight_gib,
                                                               args, words):
    """These ended in MemoryError (or OverflowError) tracebacks."""
    trace = write_trace(folder / "t.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", trace, *args, "--out", tmp_path / "o", "-q"], *words)


@pytest.mark.parametrize("knobs, words", [
    ({"index_initial": [1024, 2**28]}, ["--index-initial 268435456", "64 GiB"]),
    ({"page_bytes": 2**40, "budgets": ["2TiB"]}, ["--page-bytes 1099511627776", "256 GiB"]),
    ({"index_initial": 2**31}, ["--index-initial must be at most 2**30"]),
])
def test_a_sweep_file_with_such_knobs_is_refused_before_anything_runs(monkeypatch, capsys, tmp_path, folder,
                                                                      eight_gib, knobs, words):
    trace = write_trace(folder / "t.parquet")
    toml = _sweep(folder, trace, **{"policies": ["fiited"], "budgets": [0.9], **knobs})
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", toml, "-q"], *words)


@pytest.mark.parametrize("args, words", [
    (["--rows", str(2**31 - 1)], ["26 tables of 2,147,483,647 rows x 16 dims", "TiB of memory at the start"]),
    (["--dim", "100000", "--rows", "1000"], ["1,000 rows x 100000 dims"]),
    (["--samples", str(10**10)], ["10,000,000,000 synthetic samples"]),
])
def test_train_refuses_tables_it_cannot_allocate(monkeypatch, capsys, tmp_path, eight_gib, args, words):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", *args, "--out", tmp_path / "o", "-q"], *words,
                  "lower --rows, --dim, --batch or --samples")


def test_generate_refuses_a_batch_it_cannot_allocate(monkeypatch, capsys, tmp_path, eight_gib):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["generate", tmp_path / "g.parquet", "--batch", str(2**40),
                                                  "--table-count", "1", "--steps", "1", "-q"],
                  "--batch 1099511627776", "would take", "lower --batch")


def test_a_memory_error_left_over_is_one_line(monkeypatch, capsys, tmp_path, folder):
    """Whatever no up-front check foresaw: one line with numpy's size, exit 2."""
    from fiitedsim import replay as replay_module

    def short_of_memory(*args, **kw):
        raise MemoryError("Unable to allocate 3.07 EiB for an array with shape (1,) and data type uint8")
    monkeypatch.setattr(replay_module, "replay_runs", short_of_memory)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", write_trace(folder / "t.parquet"), "-q"],
                  "out of memory (Unable to allocate 3.07 EiB", "more memory than this machine has")


# ---------------------------------------------------------------------------
# Item 9: uniform-row on a huge table


def test_a_three_lookup_trace_of_a_huge_table_replays_at_the_cost_of_its_lookups_under_the_default_policies(
        monkeypatch, capsys, tmp_path, folder, count_kernel_calls):
    """uniform-row counted kept rows over every row of every table: hours for 2**40 - 1 rows."""
    from fiitedsim.config import TableSpec
    from fiitedsim.policies import uniform_row
    from fiitedsim.traces.writer import TraceWriter

    n = 2**40 - 1
    with TraceWriter(folder / "t.parquet", [TableSpec("huge", rows=n, dim=8, chunk=4)], with_grad=False) as w:
        w.write(np.array([0, 1, 2]), np.zeros(3, np.int32), np.array([5, n - 1, 5], np.int64))
    # the work counted, not timed: uniform-row's kernels run as Python and fail the test past 1,000 calls (the
    # O(rows) uniform-row permuted all 2**40 rows); the other default policies would need 2**40-row arrays
    work = count_kernel_calls(uniform_row, limit=1000)
    result = run(monkeypatch, capsys, "replay", folder / "t.parquet", "--json", "-q")
    assert result.code == 0, result.err
    assert work["permute"] <= 3 * 2, work  # one permutation per lookup and pass over the trace, at most
    summary = json.loads(result.out)["policies"]["uniform-row"]
    m = (n * 32 // 10) * n // (n * 32)     # budget 0.10 of the dense size: floor(0.1 * dense), then m
    assert summary["dim_hist_final"] == [n - m, 0, m]
    assert summary["payload_bytes_final"] == m * 32 <= n * 32 // 10


# ---------------------------------------------------------------------------
# Item 12: one rule for lists, table entries without dim, importance records past the trace, plain numbers


@pytest.mark.parametrize("args, words", [
    (["--budget", "0.1,"], ["--budget '0.1,' has an empty item"]),
    (["--budget", ",0.5"], ["has an empty item"]),
    (["--budget", "0.5,,0.6"], ["has an empty item"]),
    (["--budget", "0.5,0.5"], ["--budget lists a budget twice: 0.5"]),
    (["--budget", "0.5,50%"], ["--budget lists a budget twice: 0.5 and 50% are both 4480000 bytes"]),
    (["--policy", "fiited,fiited"], ["--policy lists a policy twice: fiited"]),
    (["--policy", "full,"], ["--policy 'full,' has an empty item"]),
    (["--policy", "all,full"], ["all names every policy already"]),
])
def test_lists_refuse_empty_items_and_repeats_alike(monkeypatch, capsys, tmp_path, folder, args, words):
    """`--budget 0.1,` was accepted, a budget twice refused and a policy twice silently merged: one rule now."""
    trace = write_trace(folder / "t.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", trace, *args, "--out", tmp_path / "o", "-q"], *words)


@pytest.mark.parametrize("args, words", [
    (["--budget", "0.1,"], ["--budget '0.1,' has an empty item"]),
    (["--policy", "full,full"], ["--policy lists a policy twice"]),
    (["--data", "csv:{d}/d.csv", "--label", "y", "--sparse", "s,s"], ["--sparse lists a column twice: s"]),
    (["--data", "csv:{d}/d.csv", "--label", "y", "--sparse", "s,"], ["--sparse 's,' has an empty item"]),
    (["--data", "csv:{d}/d.csv", "--label", "y", "--sparse", "s", "--dense", "x,x"], ["--dense lists a column"]),
])
def test_train_lists_follow_the_same_rule(monkeypatch, capsys, tmp_path, folder, args, words):
    (folder / "d.csv").write_text("y,s,x\n1,a,1\n0,b,2\n1,c,3\n")
    args = [a.replace("{d}", str(folder)) for a in args]
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", *args, "--out", tmp_path / "o", "-q"], *words)


@pytest.mark.parametrize("keys, words", [
    ({"policies": ["all", "full"]}, ["\"all\" names every policy already"]),
    ({"budgets": [0.5, "50%"]}, ["budgets 0.5 and 50% are both 4480000 bytes"]),
])
def test_sweep_lists_follow_the_same_rule(monkeypatch, capsys, tmp_path, folder, keys, words):
    trace = write_trace(folder / "t.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", _sweep(folder, trace, **keys), "-q"], *words)


@pytest.mark.parametrize("entry, missing", [
    ({"name": "users", "rows": 100000, "chunk": 4}, "dim"),
    ({"name": "users", "rows": 100000, "dim": 16}, "chunk"),
    ({"name": "users", "dim": 16, "chunk": 4}, "rows"),
])
def test_a_table_entry_needs_rows_dim_and_chunk(monkeypatch, capsys, tmp_path, folder, entry, missing):
    """An entry without dim silently became D = 64."""
    trace = write_trace(folder / "t.parquet")
    tables = [entry, {"name": "items", "rows": 20000, "dim": 32, "chunk": 8}]
    (folder / "tables.json").write_text(json.dumps(tables))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", trace, "--tables", folder / "tables.json", "-q"],
                  f"table 0 ('users') has no '{missing}'", "every table needs rows, dim and chunk")
    meta = pq.read_table(trace).replace_schema_metadata({TABLES_KEY: json.dumps(tables).encode()})
    pq.write_table(meta, folder / "m.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["inspect", folder / "m.parquet", "-q"], f"has no '{missing}'")


def test_importance_records_past_the_trace_do_not_move_its_steps(monkeypatch, capsys, tmp_path, folder):
    """The summary's trace.first_step/last_step are the trace's; a log reaching past them moved them."""
    from fiitedsim.traces.source import write_importance

    trace = write_trace(folder / "t.parquet")                        # steps 0..29
    write_importance(folder / "log.parquet", [0, 5, 400], [0, 1, 0], [1, 2, 3], [0, 3, 2], [1.0, 1.0, 1.0])
    result = run(monkeypatch, capsys, "replay", trace, "--importance", folder / "log.parquet", "--json", "-q")
    assert result.code == 0, result.err
    summary = json.loads(result.out)["trace"]
    assert (summary["first_step"], summary["last_step"]) == (0, 29)
    assert summary["importance_records"] == 3


def test_error_messages_show_plain_numbers(monkeypatch, capsys, tmp_path, folder):
    """A label of 2 was shown as np.float64(2.0)."""
    (folder / "d.csv").write_text("y,s\n1,a\n2,b\n")
    line = fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--data", f"csv:{folder / 'd.csv'}", "--label", "y",
                                                         "--sparse", "s", "-q"],
                         "label column 'y', sample 1: value 2; labels must be 0 or 1")
    assert "np." not in line


# ---------------------------------------------------------------------------
# Issue 21, class B: file names that are not UTF-8, text the locale cannot encode

LATIN1 = os.fsdecode(b"lat\xe9")  # a Latin-1 name: Python holds its byte 0xE9 as a lone surrogate


def _non_utf8_case(tmp_path, folder, case: str) -> tuple[list, Path]:
    """(arguments, the path with a non-UTF-8 name that the command reads or writes)."""
    plain = write_trace(folder / "plain.parquet")
    named_in = write_trace(folder / f"{LATIN1}.parquet")
    csv = folder / f"{LATIN1}.csv"
    csv.write_text("step,table,row\n0,a,1\n1,b,2\n")
    data = folder / f"{LATIN1}-data.csv"
    data.write_text("y,s\n" + "".join(f"{i % 2},v{i % 7}\n" for i in range(200)))
    out = tmp_path / f"o-{LATIN1}"
    small = ["--policy", "full", "--budget", "0.5", "--page-bytes", "64", *FAST]
    return {
        "replay input": (["replay", named_in, *small], named_in),
        "replay --out": (["replay", plain, *small, "--out", out], out),
        "replay --report": (["replay", plain, *small, "--report", out.with_suffix(".html")], out.with_suffix(".html")),
        "inspect input": (["inspect", named_in, "-q"], named_in),
        "generate output": (["generate", out.with_suffix(".parquet"), *GEN_SMALL], out.with_suffix(".parquet")),
        "import csv input": (["import", "csv", csv, "-o", tmp_path / "c.parquet", "-q"], csv),
        "import csv -o": (["import", "csv", folder / "plain.csv", "-o", out.with_suffix(".parquet"), "-q"],
                          out.with_suffix(".parquet")),
        "import parquet input": (["import", "parquet", named_in, "--table-col", "table", "-o",
                                  tmp_path / "p.parquet", "-q"], named_in),
        "train csv data": (["train", "--data", f"csv:{data}", "--label", "y", "--sparse", "s", "--rows", "8",
                            "--policy", "full", "--budget", "0.5", "--page-bytes", "64", "--batch", "32", "-q"], data),
        "train --emit-trace": (["train", "--samples", "300", "--rows", "50", "--fields", "2", "--batch", "64",
                                "--policy", "full", "--page-bytes", "256", "-q", "--emit-trace",
                                out.with_suffix(".parquet")], out.with_suffix(".parquet")),
    }[case]


@pytest.mark.parametrize("case", ["replay input", "replay --out", "replay --report", "inspect input",
                                  "generate output", "import csv input", "import csv -o", "import parquet input",
                                  "train csv data", "train --emit-trace"])
def test_file_names_that_are_not_utf8_work_and_are_shown_escaped(monkeypatch, capsys, tmp_path, folder, case):
    """Each raised UnicodeEncodeError: pyarrow and polars encode paths as UTF-8, and so did printing them."""
    (folder / "plain.csv").write_text("step,table,row\n0,a,1\n1,b,2\n")
    args, path = _non_utf8_case(tmp_path, folder, case)
    result = run(monkeypatch, capsys, *args)
    assert result.code == 0 and "Traceback" not in result.err and "error" not in result.err, result.err
    assert path.exists()
    assert "\udce9" not in result.out + result.err
    if not case.endswith("input") and case != "train csv data":  # the output is named, as the shell spells it
        assert "lat\\xe9" in result.err, result.err


def test_a_results_folder_with_such_a_name_renders(monkeypatch, capsys, tmp_path, folder):
    out = tmp_path / f"o-{LATIN1}"
    assert run(monkeypatch, capsys, "replay", write_trace(folder / "t.parquet"), "--policy", "full", "--budget",
               "0.5", *FAST, "--out", out).code == 0
    result = run(monkeypatch, capsys, "report", out)
    assert result.code == 0 and "lat\\xe9" in result.err, result.err
    assert (out / "report.html").is_file()


def test_a_missing_file_with_such_a_name_is_one_readable_line(monkeypatch, capsys, tmp_path, folder):
    line = fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", folder / f"{LATIN1}.parquet", "-q"],
                         "not found")
    assert "lat\\xe9.parquet" in line


@pytest.mark.slow  # a subprocess under the C locale
@pytest.mark.parametrize("json_output", [False, True])
def test_inspect_of_non_ascii_table_names_under_the_c_locale(tmp_path, json_output):
    """A table named 'tabé' crashed `inspect` with UnicodeEncodeError when stdout is ASCII (LC_ALL=C,
    PYTHONUTF8=0); it is printed escaped."""
    tables = [TableSpec("tab\u00e9", rows=100_000, dim=16, chunk=4),
              TableSpec("\u65e5\u672c", rows=20_000, dim=32, chunk=8)]
    trace = write_trace(tmp_path / "t.parquet", tables=tables)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"} | {"LC_ALL": "C", "PYTHONUTF8": "0"}
    p = subprocess.run([sys.executable, "-m", "fiitedsim", "inspect", trace, "-q", *(["--json"] if json_output
                                                                                     else [])],
                       capture_output=True, env=env, timeout=300)
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr.decode(errors="replace")
    text = p.stdout.decode("ascii")
    assert ("tab\\u00e9" if json_output else "tab\\xe9") in text


# ---------------------------------------------------------------------------
# Issue 21, class C: JSON and TOML nested deeply (RecursionError)

DEEP = 100_000


def _deep_case(tmp_path, folder, case: str) -> tuple[list, list[str]]:
    """(arguments, words of the message) for a user file of `case` nested DEEP levels."""
    trace = write_trace(folder / "t.parquet")
    small = ["--policy", "full", "--budget", "0.5", *FAST]
    array = "[" * DEEP + "]" * DEEP
    if case in ("tables json", "tables toml", "tables toml table", "import tables"):
        path = folder / ("d.json" if case in ("tables json", "import tables") else "d.toml")
        path.write_text({"tables toml": f"x = {array}\n",
                         "tables toml table": f"[[tables]]\nname = {array}\n"}.get(case, array))
        if case == "import tables":
            (folder / "c.csv").write_text("step,table,row\n0,a,1\n")
            return ["import", "csv", folder / "c.csv", "-o", tmp_path / "x.parquet", "--tables", path, "-q"], \
                [str(path), "nested more than 64 levels"]
        return ["replay", trace, *small, "--tables", path], [str(path), "nested more than 64 levels"]
    if case in ("metadata replay", "metadata inspect"):
        table = pq.read_table(trace).replace_schema_metadata({TABLES_KEY: array.encode()})
        pq.write_table(table, folder / "m.parquet")
        args = ["replay", folder / "m.parquet", *small] if case == "metadata replay" else \
            ["inspect", folder / "m.parquet", "-q"]
        return args, ["m.parquet", "metadata", "nested more than 64 levels"]
    if case in ("sweep array", "sweep inline table"):
        value = array if case == "sweep array" else "{a = " * 5000 + "1" + "}" * 5000
        path = _sweep(folder, trace)
        path.write_text(path.read_text() + (f"chunk = {value}\n" if case == "sweep array" else f"generate = {value}\n"))
        return ["sweep", path, "-q"], [str(path), "nested more than 64 levels"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["tables json", "tables toml", "tables toml table", "import tables",
                                  "metadata replay", "metadata inspect", "sweep array", "sweep inline table"])
def test_deeply_nested_input_is_one_line(monkeypatch, capsys, tmp_path, folder, case):
    """Each raised RecursionError."""
    args, words = _deep_case(tmp_path, folder, case)
    fails_cleanly(monkeypatch, capsys, tmp_path, args, *words)


def test_a_deeply_nested_summary_json_is_one_line(monkeypatch, capsys, tmp_path, folder):
    """`report` of it and `replay --out` onto its folder raised RecursionError."""
    out = tmp_path / "r"
    assert run(monkeypatch, capsys, "replay", write_trace(folder / "t.parquet"), "--policy", "full", "--budget",
               "0.5", *FAST, "--out", out).code == 0
    (out / "summary.json").write_text("[" * DEEP + "]" * DEEP)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["report", out], "summary.json", "nested more than 64 levels")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", folder / "t.parquet", "--policy", "full", "--out", out,
                                                  *FAST], "is not a fiitedsim results folder")


def test_a_deeply_nested_stored_sweep_point_is_computed_again(monkeypatch, capsys, tmp_path, folder):
    """A rerun (and `report`) raised RecursionError; like any damaged point, it is computed again."""
    sweep = _sweep(folder, write_trace(folder / "t.parquet"))
    assert run(monkeypatch, capsys, "sweep", sweep, "-q").code == 0
    (point,) = (tmp_path / "sw" / "points").glob("*.json")
    point.write_text('{"a":' * DEEP + "1" + "}" * DEEP)
    result = run(monkeypatch, capsys, "sweep", sweep, "-q")
    assert result.code == 0 and "(1 computed, 0 already stored)" in result.err, result.err
    assert json.loads(point.read_text())["format"]


# ---------------------------------------------------------------------------
# Issue 21, class D: integers beyond 64 bits (OverflowError, tracebacks, wrapped-around steps)

TRAIN_SMALL = ["train", "--samples", "300", "--rows", "50", "--fields", "2", "--batch", "64", "--page-bytes", "256",
               "--policy", "full", "-q"]


@pytest.mark.parametrize("args, words", [
    (["--seed=-1"], ["--seed", "between 0 and 2**63-1", "-1"]),
    (["--seed", str(2**64)], ["--seed", "between 0 and 2**63-1"]),
    (["--seeds", str(2**63)], ["--seeds", "between 0 and 2**63-1"]),
    (["--seeds", "0,-1"], ["--seeds", "between 0 and 2**63-1"]),
    (["--batch", str(2**64)], ["--batch", "below 2**62"]),
    (["--eval-every", str(2**64)], ["--eval-every", "below 2**62"]),
    (["--epochs", str(2**64)], ["--epochs", "below 2**62"]),
])
def test_train_integers_out_of_range(monkeypatch, capsys, tmp_path, args, words):
    """The seeds raised tracebacks (ValueError, OverflowError)."""
    fails_cleanly(monkeypatch, capsys, tmp_path, [*TRAIN_SMALL, *args, "--out", tmp_path / "o"], *words)


@pytest.mark.parametrize("key, value, words", [
    ("seed", -1, ["seed", "between 0 and 2**63-1"]), ("seed", 2**64, ["seed", "between 0 and 2**63-1"]),
    ("batch", 2**64, ["--batch", "below 2**62"]), ("eval_every", 2**64, ["--eval-every", "below 2**62"]),
])
def test_data_sweep_integers_out_of_range(monkeypatch, capsys, tmp_path, folder, key, value, words):
    """seed = [-1] raised a traceback; a batch of 2**64 trained, then failed to write points.parquet."""
    knobs = {"samples": 300, "rows": 50, "fields": 2, "batch": 64, "page_bytes": 256, key: [value]}
    path = folder / "s.toml"
    path.write_text('[sweep]\ndata = ["synthetic"]\npolicies = ["full"]\nbudgets = [0.5]\n'
                    f'out = "{tmp_path / "sw"}"\n' + "".join(f"{k} = {v}\n" for k, v in knobs.items()))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", path, "-q"], *words)


@pytest.mark.parametrize("step", [2**63 - 3, 2**64, -1])
def test_import_criteo_first_step_out_of_range(monkeypatch, capsys, tmp_path, folder, step):
    """--step 2**63-3 wrapped the later steps around to negative ones (exit 0), or raised OverflowError."""
    data = folder / "day.tsv"
    data.write_text("".join("\t".join(["1", *[str(i)] * 13, *["ab"] * 26]) + "\n" for i in range(8)))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "criteo", data, "-o", tmp_path / "x.parquet", "--batch",
                                                  "1", f"--step={step}", "-q"], "--step", "between 0 and 2**62")


def test_sweep_refuses_more_local_workers_than_it_can_run(monkeypatch, capsys, tmp_path, folder):
    """--workers 2**64 tried to start that many processes."""
    from fiitedsim.sweep.run import max_local_workers
    sweep = _sweep(folder, write_trace(folder / "t.parquet"))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", sweep, "--workers", str(2**64), "-q"],
                  f"--workers must be at most {max_local_workers()}")


# ---------------------------------------------------------------------------
# Issue 21, smaller items: misleading messages


def test_a_float64_value_past_float32_is_named_as_given(monkeypatch, capsys, tmp_path, folder):
    """An importance of 1e300 was reported as "importance inf"."""
    log = folder / "log.parquet"
    pq.write_table(pa.table({"step": pa.array([0], pa.int64()), "table": pa.array([0], pa.int32()),
                             "row": pa.array([1], pa.int64()), "chunk": pa.array([0], pa.int16()),
                             "importance": pa.array([1e300], pa.float64())}), log)
    line = fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", write_trace(folder / "t.parquet", with_grad=False),
                                                         "--importance", log, "--policy", "full", *FAST],
                         "importance 1e+300", "largest float32")
    assert "inf" not in line


@pytest.mark.parametrize("command", ["import csv", "import criteo", "train csv", "train criteo"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_text_input_in_utf16_is_called_so(monkeypatch, capsys, tmp_path, folder, command, encoding):
    """A UTF-16 file was read as one field and its NUL characters printed in the error line."""
    path = folder / "d.csv"
    text = "step,table,row\n0,a,1\n" if command == "import csv" else "y,s\n1,a\n0,b\n"
    path.write_bytes(text.encode(encoding))
    args = {"import csv": ["import", "csv", path, "-o", tmp_path / "x.parquet"],
            "import criteo": ["import", "criteo", path, "-o", tmp_path / "x.parquet"],
            "train csv": ["train", "--data", f"csv:{path}", "--label", "y", "--sparse", "s"],
            "train criteo": ["train", "--data", f"criteo:{path}"]}[command]
    line = fails_cleanly(monkeypatch, capsys, tmp_path, [*args, "-q"], str(path), "not UTF-8 text")
    assert "\0" not in line


@pytest.mark.parametrize("steps", [2**63 - 1, 10**8])
def test_generate_refuses_a_trace_larger_than_the_free_disk(monkeypatch, capsys, tmp_path, steps):
    """--steps 2**63-1 wrote a 5.2 GB temporary in two minutes before it failed; now refused before writing."""
    fails_cleanly(monkeypatch, capsys, tmp_path, ["generate", tmp_path / "g.parquet", "--steps", str(steps), "-q"],
                  "lookups", "would take at least", "free there")


def test_generate_checks_the_free_disk_of_its_own_folder(monkeypatch, capsys, tmp_path):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    fails_cleanly(monkeypatch, capsys, tmp_path, ["generate", tmp_path / "g.parquet", *GEN_SMALL],
                  "1000 bytes free there")


@pytest.mark.parametrize("where", ["knobs", "generate", "data"])
def test_a_sweep_of_more_than_the_stated_points_is_refused_at_once(monkeypatch, capsys, tmp_path, folder, where):
    """10**6 points used 1.7 GB for over a minute before any output; past MAX_POINTS it is one line at once."""
    from fiitedsim.sweep.file import MAX_POINTS
    budgets = ", ".join(f'"{1000 + i}B"' for i in range(1000))
    gammas = ", ".join(str(0.5 + i * 1e-6) for i in range(1000))
    seeds = ", ".join(map(str, range(1000)))
    body = {"knobs": f'traces = ["{write_trace(folder / "t.parquet")}"]\npolicies = ["full"]\n'
                     f"budgets = [{budgets}]\ngamma = [{gammas}]\n",
            "generate": 'policies = ["full"]\nbudgets = [0.5]\ngenerate = {seed = [' + seeds
                        + "], rows = [" + ", ".join(map(str, range(100, 1100))) + "]}\n",
            "data": f'data = ["synthetic"]\npolicies = ["full"]\nbudgets = [{budgets}]\nseed = [{seeds}]\n'}[where]
    path = folder / "s.toml"
    path.write_text(f'[sweep]\nout = "{tmp_path / "sw"}"\n' + body)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["sweep", path, "-q"], "1,000,000 points", f"{MAX_POINTS:,}",
                  "split it")
