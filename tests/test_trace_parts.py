"""Multi-part traces: a folder or glob of Parquet parts replays exactly like the single file they were cut from."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_cli import fails_cleanly, run

from fiitedsim.cli import SAMPLE_TRACE
from fiitedsim.config import ReplayConfig, TableSpec
from fiitedsim.errors import InputError
from fiitedsim.policies import POLICIES
from fiitedsim.replay import parse_budgets, replay
from fiitedsim.traces.source import TraceSource, natural_key, read_lookups, trace_parts, write_importance
from fiitedsim.traces.writer import TABLES_KEY, TraceWriter

TABLES = [TableSpec("a", rows=10, dim=16, chunk=4), TableSpec("b", rows=20, dim=16, chunk=4)]
QUIET = {"warn": lambda m: None}


def write_part(path: Path, step, table=None, row=None, tables=TABLES, grad=False) -> Path:
    step = np.asarray(step, np.int64)
    table = np.zeros(len(step), np.int32) if table is None else np.asarray(table, np.int32)
    row = np.arange(len(step)) % 10 if row is None else np.asarray(row, np.int64)
    with TraceWriter(path, tables, with_grad=grad) as w:
        w.write(step, table, row, np.ones((len(step), 4), np.float32) if grad else None)
    return path


def split_sample(folder: Path, names: list[str], cuts: list[int]) -> list[Path]:
    """Cut the shipped sample at record positions `cuts` into parts `names` (schema and metadata kept)."""
    table = pq.read_table(SAMPLE_TRACE)
    bounds = [0, *cuts, table.num_rows]
    folder.mkdir()
    paths = []
    for name, a, b in zip(names, bounds, bounds[1:]):
        pq.write_table(table.slice(a, b - a), folder / name)
        paths.append(folder / name)
    return paths


def replay_summary(trace, policies=("fiited", "uniform-dim", "full"), **kw) -> tuple[dict, dict]:
    """summary.json (without the trace path, the one field allowed to differ) and the time series."""
    source = TraceSource(trace, **QUIET, **kw)
    cfg = ReplayConfig(report_every=50, interval=20)
    results = replay(source, list(policies), parse_budgets("0.1", source.tables), cfg)
    assert results.summary["trace"].pop("path") == str(trace)
    return results.summary, {key: frame.to_dicts() for key, frame in results.series.items()}


# ---------------------------------------------------------------------------
# Order of parts


def test_natural_order_puts_part_2_before_part_10(tmp_path):
    names = ["part-10.parquet", "part-2.parquet", "part-1.parquet", "part-0.parquet"]
    for name in names:
        write_part(tmp_path / name, [0])
    assert [p.name for p in trace_parts(tmp_path)] == ["part-0.parquet", "part-1.parquet", "part-2.parquet",
                                                       "part-10.parquet"]
    assert sorted(["x9", "x10", "x1a", "x01"], key=lambda s: natural_key(Path(s))) == ["x01", "x1a", "x9", "x10"]


def test_folder_skips_hidden_and_non_parquet_files(tmp_path):
    write_part(tmp_path / "p1.parquet", [0, 1])
    write_part(tmp_path / ".p0.parquet.abc.tmp", [5])  # an unfinished atomic write
    write_part(tmp_path / ".hidden.parquet", [5])
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / "sub.parquet").mkdir()
    assert trace_parts(tmp_path) == [tmp_path / "p1.parquet"]


def test_steps_are_read_in_natural_order(tmp_path):
    # lexicographic order (p10 before p9) would put step 10 before step 9 and fail
    write_part(tmp_path / "p9.parquet", [9, 9], [0, 1], [1, 2])
    write_part(tmp_path / "p10.parquet", [10], [1], [19])
    write_part(tmp_path / "p8.parquet", [0, 8], [0, 0], [3, 4])
    src = TraceSource(tmp_path, **QUIET)
    got = read_lookups(tmp_path, **QUIET)
    assert src.num_lookups == 5
    assert got.step.tolist() == [0, 8, 9, 9, 10]
    assert got.table.tolist() == [0, 0, 0, 1, 1]
    assert got.row.tolist() == [3, 4, 1, 2, 19]


def test_glob_pattern(tmp_path):
    write_part(tmp_path / "day-1.parquet", [0, 1])
    write_part(tmp_path / "day-2.parquet", [2])
    write_part(tmp_path / "other.parquet", [0])  # not matched
    got = read_lookups(str(tmp_path / "day-*.parquet"), **QUIET)
    assert got.step.tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------
# A split trace replays exactly as the whole one


def test_sample_split_in_three_parts_replays_to_the_same_summary(tmp_path):
    whole = replay_summary(SAMPLE_TRACE)
    n = pq.ParquetFile(SAMPLE_TRACE).metadata.num_rows
    steps = pq.read_table(SAMPLE_TRACE, columns=["step"]).column("step").to_numpy()
    # the first cut falls inside a step (its lookups continue in the next part); the second on a step boundary
    cut_in_step = n // 3 + 7
    assert steps[cut_in_step - 1] == steps[cut_in_step]
    cut_on_boundary = int(np.searchsorted(steps, steps[2 * n // 3], side="left"))
    # names whose string order differs from the replay order
    split_sample(tmp_path / "parts", ["part-1.parquet", "part-2.parquet", "part-10.parquet"],
                 [cut_in_step, cut_on_boundary])
    assert TraceSource(tmp_path / "parts", **QUIET).num_lookups == n
    assert replay_summary(tmp_path / "parts") == whole
    assert replay_summary(str(tmp_path / "parts" / "part-*.parquet")) == whole


@pytest.mark.slow  # hypothesis: many generated cases through the engine
def test_replay_does_not_depend_on_where_batches_split_steps(tmp_path):
    """Replay reads with whole_steps=False: steps cut anywhere (97 lookups a batch) give the same results."""
    policies = list(POLICIES)
    whole = replay_summary(SAMPLE_TRACE, policies)
    steps = pq.read_table(SAMPLE_TRACE, columns=["step"]).column("step").to_numpy()
    assert np.bincount(steps).min() > 97  # every step spans two or more batches
    assert replay_summary(SAMPLE_TRACE, policies, batch_rows=97) == whole


@pytest.mark.slow  # hypothesis: many generated cases through the engine
@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=1, max_size=4),
       imp_step=st.lists(st.integers(0, 20), max_size=30).map(sorted), batch_rows=st.integers(1, 5),
       whole_steps=st.booleans())
def test_batches_over_parts_merge_to_the_record_stream(parts, imp_step, batch_rows, whole_steps):
    """Lookups of all parts, then merged with the log batch by batch, equal the global record stream."""
    parts = [np.cumsum(p) for p in parts]  # non-decreasing within a part ...
    offset = 0
    for i, p in enumerate(parts):          # ... and across parts
        parts[i] = p + offset
        offset = int(parts[i][-1]) if len(p) else offset
    step = np.concatenate(parts).astype(np.int64)
    assume(len(step) > 0)
    n, m = len(step), len(imp_step)
    tables = [TableSpec("a", rows=max(n, m, 1))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "parts"
        first = 0
        for i, p in enumerate(parts):  # row ids are global record numbers, to recognise records after the merge
            write_part(folder / f"p{i}.parquet", p, np.zeros(len(p)), np.arange(first, first + len(p)), tables)
            first += len(p)
        log = Path(tmp) / "imp.parquet"
        write_importance(log, imp_step, [0] * m, np.arange(m), [0] * m, np.ones(m))
        source = TraceSource(folder, importance=log, batch_rows=batch_rows, **QUIET)
        batches = list(source.batches(whole_steps=whole_steps))
    got = []
    for b in batches:
        assert b.num_lookups + b.num_importance > 0, "no empty batches"
        if not whole_steps:
            assert b.num_lookups <= batch_rows  # never more than one Parquet batch of lookups in memory
        recs = [(s, 0, int(r)) for s, r in zip(b.step, b.row)] + [(s, 1, int(r)) for s, r in zip(b.imp_step, b.imp_row)]
        got += [(kind, i) for _, kind, i in sorted(recs)]
    want = sorted([(s, 0, i) for i, s in enumerate(step)] + [(s, 1, j) for j, s in enumerate(imp_step)])
    assert got == [(kind, i) for _, kind, i in want]


def test_inferred_tables_span_all_parts(tmp_path):
    """Without metadata, rows = max(row)+1 over every part, not just the first."""
    for i, (step, row) in enumerate([([0], [3]), ([1], [41])]):
        pq.write_table(pa.table({"step": pa.array(step, pa.int64()), "table": pa.array([0], pa.int32()),
                                 "row": pa.array(row, pa.int64())}), tmp_path / f"p{i}.parquet")
    warnings = []
    src = TraceSource(tmp_path, warn=warnings.append)
    assert [t.rows for t in src.tables] == [42]
    assert len(warnings) == 1


# ---------------------------------------------------------------------------
# Errors name the part


def expect_error(match, fn, *args, **kw):
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_decreasing_steps_across_parts(tmp_path):
    write_part(tmp_path / "p0.parquet", [0, 5])
    write_part(tmp_path / "p1.parquet", [4, 6])
    src = TraceSource(tmp_path, **QUIET)
    msg = expect_error("non-decreasing across parts", lambda: list(src.batches()))
    assert str(tmp_path / "p1.parquet") in msg and "record 0 (step 4)" in msg
    assert "previous part" in msg and str(tmp_path / "p0.parquet") in msg and "step 5" in msg


def test_empty_part_in_the_middle_is_allowed(tmp_path):
    write_part(tmp_path / "p0.parquet", [0, 5])
    write_part(tmp_path / "p1.parquet", [])
    write_part(tmp_path / "p2.parquet", [5, 6])
    assert read_lookups(tmp_path, **QUIET).step.tolist() == [0, 5, 5, 6]


def test_mismatched_table_metadata(tmp_path):
    write_part(tmp_path / "p0.parquet", [0])
    write_part(tmp_path / "p1.parquet", [1], tables=[TableSpec("a", rows=10, dim=16, chunk=4),
                                                     TableSpec("b", rows=21, dim=16, chunk=4)])
    msg = expect_error("metadata differs", TraceSource, tmp_path, **QUIET)
    assert str(tmp_path / "p1.parquet") in msg and str(tmp_path / "p0.parquet") in msg


def test_metadata_in_some_parts_only(tmp_path):
    write_part(tmp_path / "p0.parquet", [0])
    table = pq.read_table(tmp_path / "p0.parquet").replace_schema_metadata(None)
    pq.write_table(table, tmp_path / "p1.parquet")
    expect_error(f"{tmp_path / 'p1.parquet'}: its '{TABLES_KEY.decode()}' metadata differs", TraceSource, tmp_path,
                 **QUIET)


def test_same_metadata_formatted_differently_is_accepted(tmp_path):
    write_part(tmp_path / "p0.parquet", [0])
    table = pq.read_table(tmp_path / "p0.parquet")
    pretty = json.dumps(json.loads(table.schema.metadata[TABLES_KEY]), indent=2).encode()
    pq.write_table(table.replace_schema_metadata({TABLES_KEY: pretty}), tmp_path / "p1.parquet")
    assert TraceSource(tmp_path, **QUIET).num_lookups == 2


def test_mismatched_schema(tmp_path):
    write_part(tmp_path / "p0.parquet", [0])
    write_part(tmp_path / "p1.parquet", [1], grad=True)
    msg = expect_error("differ from those of the first part", TraceSource, tmp_path, **QUIET)
    assert "grad_norm" in msg and str(tmp_path / "p1.parquet") in msg


def test_truncated_part(tmp_path):
    write_part(tmp_path / "p0.parquet", [0])
    bad = write_part(tmp_path / "p1.parquet", np.arange(1000))
    bad.write_bytes(bad.read_bytes()[:200])
    expect_error(f"{bad}: not a readable Parquet file", TraceSource, tmp_path, **QUIET)


def test_bad_record_in_a_later_part_counts_records_within_that_part(tmp_path):
    write_part(tmp_path / "p0.parquet", [0, 0, 0])
    write_part(tmp_path / "p1.parquet", [1, 1, 1], row=[1, 2, 10])  # table "a" has 10 rows
    src = TraceSource(tmp_path, **QUIET)
    expect_error(f"{tmp_path / 'p1.parquet'}: record 2 \\(step 1\\): row 10 is outside", lambda: list(src.batches()))


def test_empty_folder(tmp_path):
    expect_error("holds no \\*.parquet files", TraceSource, tmp_path, **QUIET)


def test_glob_matching_nothing(tmp_path):
    expect_error("nor any file matching it as a glob pattern", TraceSource, str(tmp_path / "nope-*.parquet"),
                 **QUIET)


def test_all_parts_empty(tmp_path):
    write_part(tmp_path / "p0.parquet", [])
    write_part(tmp_path / "p1.parquet", [])
    expect_error("no lookups", TraceSource, tmp_path, **QUIET)


# ---------------------------------------------------------------------------
# Command line


def test_cli_replays_a_folder(monkeypatch, capsys, tmp_path):
    write_part(tmp_path / "parts" / "p0.parquet", [0, 1], row=[1, 2])
    write_part(tmp_path / "parts" / "p1.parquet", [2, 3], row=[1, 3])
    result = run(monkeypatch, capsys, "replay", tmp_path / "parts", "--policy", "full", "--json", "-q")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["trace"]["lookups"] == 4 and summary["trace"]["path"] == str(tmp_path / "parts")


def test_cli_bad_part_exits_2(monkeypatch, capsys, tmp_path):
    write_part(tmp_path / "parts" / "p0.parquet", [3])
    write_part(tmp_path / "parts" / "p1.parquet", [2])
    fails_cleanly(monkeypatch, capsys, tmp_path,
                  ["replay", tmp_path / "parts", "--policy", "full", "--out", tmp_path / "res"],
                  str(tmp_path / "parts" / "p1.parquet"), "across parts")


# ---------------------------------------------------------------------------
# docs/engine.md's memory figures follow the engine's arrays


def test_engine_md_memory_figures_match_the_arrays():
    """Bytes per tracked row (K = 8), per tracker bucket and per index bucket, from a fresh EngineState."""
    from fiitedsim.engine import EngineState

    engine = EngineState([TableSpec("t", rows=5000, dim=64, chunk=8)], ReplayConfig(budget_bytes=1 << 20),
                         has_grad=True, has_log=False)
    state = engine.st
    cap = state.rec.shape[0]
    assert cap == 5000, "the row arrays are reserved for every row of the tables"  # a length no other array has
    # every distinct buffer with one entry per tracked row (rec_u and rec_p are views of rec)
    buffers = {a.ctypes.data: a.nbytes for a in state if isinstance(a, np.ndarray) and a.ndim >= 1
               and a.shape[0] == cap}
    per_row = sum(buffers.values())
    doc = (Path(__file__).resolve().parents[1] / "docs" / "engine.md").read_text()
    section = doc[doc.index("## Memory per tracked row"):]
    assert f"per tracked row: {per_row // cap} B at K = 8" in section, "docs/engine.md: bytes per tracked row are stale"
    assert f"int64 at {state.trk.itemsize} B per bucket" in section
    bucket = state.ix.itemsize
    assert f"{bucket} B per bucket" in section, "docs/engine.md: bytes per index bucket are stale"
    assert f"1024) buckets, {1024 * bucket // 1024} KiB" in section
