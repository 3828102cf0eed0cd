"""Tests for fiitedsim.traces.source: round trips, the batch/hold-back merge property, and every input error."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# The project has no installed package or root conftest yet; make `import fiitedsim` work from a checkout.
from fiitedsim.config import TableSpec, tables_to_json  # noqa: E402
from fiitedsim.errors import GradNormIgnored, InputError  # noqa: E402
from fiitedsim.traces.source import TraceSource, read_lookups, write_importance  # noqa: E402
from fiitedsim.traces.writer import TABLES_KEY, TraceWriter  # noqa: E402

TABLES = [TableSpec("users", rows=100), TableSpec("items", rows=50, dim=32, chunk=8)]  # K = 8 and 4


def write_trace(path, step, table, row, grad=None, tables=TABLES, groups=1):
    """Write with the project's TraceWriter, split into `groups` row groups."""
    with TraceWriter(path, tables, with_grad=grad is not None) as w:
        for idx in np.array_split(np.arange(len(step)), groups):
            w.write(np.asarray(step)[idx], np.asarray(table)[idx], np.asarray(row)[idx],
                    None if grad is None else np.asarray(grad)[idx])
    return path


def write_raw(path, columns: dict, tables=TABLES, metadata=None):
    """Write arbitrary columns (pyarrow arrays or lists), with the tables metadata unless told otherwise."""
    table = pa.table({k: v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v) for k, v in columns.items()})
    if metadata is None and tables is not None:
        metadata = {TABLES_KEY: tables_to_json(tables).encode()}
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)
    return path


def simple(path, **over):
    cols = {"step": pa.array([0, 0, 1, 2], pa.int64()), "table": pa.array([0, 1, 0, 1], pa.int32()),
            "row": pa.array([3, 4, 5, 6], pa.int64())}
    cols.update(over)
    return write_raw(path, {k: v for k, v in cols.items() if v is not None})


def log_cols(**over):
    cols = {"step": pa.array([0, 1, 2], pa.int64()), "table": pa.array([0, 1, 0], pa.int32()),
            "row": pa.array([1, 2, 3], pa.int64()), "chunk": pa.array([0, 3, 7], pa.int16()),
            "importance": pa.array([0.5, 1.0, 2.0], pa.float32())}
    cols.update(over)
    return {k: v for k, v in cols.items() if v is not None}


def consume(source: TraceSource):
    return list(source.batches())


def expect_error(match, fn, *args, **kw):
    """InputError with a one-line message matching `match`."""
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def read(path, **kw):
    kw.setdefault("warn", lambda m: None)
    return read_lookups(path, **kw)


# ---------------------------------------------------------------------------
# Round trips


def test_round_trip_without_grad(tmp_path):
    step, table, row = [0, 0, 0, 3, 3, 7], [0, 1, 0, 1, 0, 0], [1, 49, 1, 0, 99, 5]
    path = write_trace(tmp_path / "t.parquet", step, table, row, groups=2)
    src = TraceSource(path, warn=pytest.fail)
    assert src.tables == TABLES and not src.has_grad and not src.has_importance
    assert src.num_lookups == 6 and src.num_importance == 0 and src.path == path
    got = read(path)
    np.testing.assert_array_equal(got.step, step)
    np.testing.assert_array_equal(got.table, table)
    np.testing.assert_array_equal(got.row, row)
    assert got.grad is None and got.step.dtype == np.int64 and got.table.dtype == np.int32
    assert got.imp_step.dtype == np.int64 and len(got.imp_step) == 0 and got.imp_value.dtype == np.float32


def test_round_trip_with_grad_zero_padded_per_table(tmp_path):
    # TraceWriter takes one K per write call, so write table 0 (K=8) then table 1 (K=4).
    path = tmp_path / "g.parquet"
    g0 = np.arange(16, dtype=np.float32).reshape(2, 8)
    g1 = np.arange(100, 112, dtype=np.float32).reshape(3, 4)
    with TraceWriter(path, TABLES, with_grad=True) as w:
        w.write([0, 1], [0, 0], [1, 2], g0)
        w.write([1, 1, 2], [1, 1, 1], [3, 4, 5], g1)
    got = read(path, batch_rows=2)
    assert got.grad.shape == (5, 8) and got.grad.dtype == np.float32 and got.grad.flags.c_contiguous
    np.testing.assert_array_equal(got.grad[:2], g0)
    np.testing.assert_array_equal(got.grad[2:, :4], g1)
    assert not got.grad[2:, 4:].any()
    assert TraceSource(path).has_grad


def test_string_and_dictionary_table_names(tmp_path):
    names = pa.array(["items", "users", "items"])
    for i, col in enumerate([names, names.dictionary_encode(),
                             pa.array(["items", "users", "items"], pa.large_string())]):
        path = write_raw(tmp_path / f"s{i}.parquet", {"step": [0, 1, 1], "table": col, "row": [49, 99, 0]})
        got = read(path)
        np.testing.assert_array_equal(got.table, [1, 0, 1])
        np.testing.assert_array_equal(got.row, [49, 99, 0])


def test_narrow_integer_types_are_cast(tmp_path):
    path = write_raw(tmp_path / "n.parquet", {"step": pa.array([0, 1], pa.int16()),
                                              "table": pa.array([1, 0], pa.uint8()),
                                              "row": pa.array([7, 8], pa.int32())})
    got = read(path)
    assert got.step.dtype == np.int64 and got.row.dtype == np.int64 and got.table.dtype == np.int32
    np.testing.assert_array_equal(got.table, [1, 0])


def test_inferred_tables_warn(tmp_path):
    path = write_raw(tmp_path / "i.parquet", {"step": [0, 0, 1], "table": pa.array([0, 2, 0], pa.int32()),
                                              "row": [5, 9, 17]}, tables=None)
    warnings = []
    src = TraceSource(path, warn=warnings.append, batch_rows=1)
    assert [(t.name, t.rows, t.dim, t.chunk, t.dtype_bytes) for t in src.tables] == [
        ("t0", 18, 64, 8, 4), ("t1", 1, 64, 8, 4), ("t2", 10, 64, 8, 4)]
    assert len(warnings) == 1 and "inferred 3 table" in warnings[0]


def test_inferred_named_tables_keep_first_appearance_order(tmp_path):
    path = write_raw(tmp_path / "i.parquet", {"step": [0, 0, 1, 1], "table": ["b", "a", "b", "c"],
                                              "row": [5, 9, 17, 0]}, tables=None)
    src = TraceSource(path, warn=lambda m: None, batch_rows=2)
    assert [(t.name, t.rows) for t in src.tables] == [("b", 18), ("a", 10), ("c", 1)]
    np.testing.assert_array_equal(read_lookups(path, warn=lambda m: None).table, [0, 1, 0, 2])


def test_tables_file_overrides_metadata(tmp_path):
    path = simple(tmp_path / "t.parquet")
    spec = tmp_path / "tables.json"
    spec.write_text(json.dumps([{"name": "a", "rows": 10, "dim": 16, "chunk": 4},
                                {"name": "b", "rows": 7, "dim": 64, "chunk": 8}]))
    src = TraceSource(path, tables_file=spec)
    assert [(t.name, t.rows, t.chunks) for t in src.tables] == [("a", 10, 4), ("b", 7, 8)]


def test_importance_log_round_trip_and_log_wins_over_grad(tmp_path):
    path = write_trace(tmp_path / "g.parquet", [0, 1], [0, 0], [1, 2], grad=np.ones((2, 8), np.float32),
                       tables=[TableSpec("a", 10)])
    log = tmp_path / "imp.parquet"
    write_importance(log, [0, 1, 5], [0, 0, 0], [1, 2, 9], [0, 7, 3], [0.5, 0.25, 3.0])
    assert pq.read_schema(log).types == [pa.int64(), pa.int32(), pa.int64(), pa.int16(), pa.float32()]
    warnings = []
    src = TraceSource(path, importance=log, warn=warnings.append)
    assert src.has_importance and not src.has_grad and src.num_importance == 3
    assert any("log wins" in w for w in warnings)
    assert [type(w) for w in warnings] == [GradNormIgnored]  # its class, which inspect drops it by
    got = read_lookups(path, importance=log, warn=lambda m: None)
    assert got.grad is None
    np.testing.assert_array_equal(got.imp_step, [0, 1, 5])
    np.testing.assert_array_equal(got.imp_chunk, [0, 7, 3])
    np.testing.assert_array_equal(got.imp_value, np.float32([0.5, 0.25, 3.0]))
    assert got.imp_table.dtype == np.int32 and got.imp_chunk.dtype == np.int64


# ---------------------------------------------------------------------------
# The batch / hold-back property


def merged(step, imp_step):
    """Global record stream of docs/semantics.md as (kind, id): lookups of step s, then its importance records."""
    recs = [(s, 0, i) for i, s in enumerate(step)] + [(s, 1, j) for j, s in enumerate(imp_step)]
    return [(kind, i) for _, kind, i in sorted(recs)]


steps_strategy = st.lists(st.integers(0, 6), min_size=1, max_size=60).map(sorted)


@pytest.mark.slow  # hypothesis: many generated cases through the engine
@settings(max_examples=80, deadline=None)
@given(step=steps_strategy, imp_step=st.lists(st.integers(0, 8), max_size=40).map(sorted),
       batch_rows=st.integers(1, 5), groups=st.integers(1, 4))
def test_batches_merge_to_the_record_stream(step, imp_step, batch_rows, groups):
    n, m = len(step), len(imp_step)
    tables = [TableSpec("a", rows=max(n, m, 1))]
    with tempfile.TemporaryDirectory() as tmp:
        # Row ids equal record numbers, so each record can be recognised after the merge.
        trace = write_trace(Path(tmp) / "t.parquet", step, [0] * n, np.arange(n), tables=tables,
                            groups=min(groups, n))
        log = Path(tmp) / "imp.parquet"
        write_importance(log, imp_step, [0] * m, np.arange(m), [0] * m, np.ones(m))
        batches = list(TraceSource(trace, importance=log, batch_rows=batch_rows, warn=lambda msg: None).batches())

    got = []
    for b in batches:
        assert b.num_lookups + b.num_importance > 0, "no empty batches"
        recs = [(s, 0, int(r)) for s, r in zip(b.step, b.row)] + [(s, 1, int(r)) for s, r in zip(b.imp_step, b.imp_row)]
        got += [(kind, i) for _, kind, i in sorted(recs)]
    assert got == merged(step, imp_step)

    for i, b in enumerate(batches[:-1]):
        x = next(int(later.step[0]) for later in batches[i + 1:] if later.num_lookups)
        assert (b.step < x).all() and (b.imp_step < x).all()
    assert batches[-1].num_lookups > 0


def test_hold_back_splits_a_step_across_parquet_batches(tmp_path):
    step = [0] * 7 + [1] * 7 + [2] * 7
    trace = write_trace(tmp_path / "t.parquet", step, [0] * 21, np.arange(21), tables=[TableSpec("a", 21)], groups=3)
    log = tmp_path / "imp.parquet"
    write_importance(log, [0, 1, 1, 2, 9], [0] * 5, [0] * 5, [0] * 5, np.ones(5))
    batches = list(TraceSource(trace, importance=log, batch_rows=3).batches())
    assert [list(b.step) for b in batches] == [[0] * 7, [1] * 7, [2] * 7]
    assert [list(b.imp_step) for b in batches] == [[0], [1, 1], [2, 9]]


# ---------------------------------------------------------------------------
# Validation: files


def test_missing_file(tmp_path):
    expect_error("trace file not found", TraceSource, tmp_path / "nope.parquet")


def test_missing_importance_log(tmp_path):
    expect_error("importance log not found", TraceSource, simple(tmp_path / "t.parquet"), importance=tmp_path / "x")


def test_not_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_text("step,table,row\n0,0,1\n")
    expect_error("not a readable Parquet file", TraceSource, path)


def test_truncated_file(tmp_path):
    path = write_trace(tmp_path / "t.parquet", np.arange(1000), np.zeros(1000), np.arange(1000) % 50)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error("not a readable Parquet file", TraceSource, path)


def test_corrupt_data_page_mid_stream(tmp_path):
    n = 5000
    path = write_trace(tmp_path / "t.parquet", np.repeat(np.arange(4), n), np.zeros(4 * n), np.arange(4 * n) % 50,
                       groups=4)
    col = pq.ParquetFile(path).metadata.row_group(2).column(2)  # the `row` column of the third row group
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + col.total_compressed_size] = b"\xff" * col.total_compressed_size
    path.write_bytes(bytes(data))
    src = TraceSource(path, batch_rows=n)  # the footer is intact
    expect_error("corrupt or truncated Parquet data", consume, src)


def test_missing_columns(tmp_path):
    msg = expect_error("missing column", TraceSource, simple(tmp_path / "t.parquet", row=None))
    assert "row" in msg and "step, table, row" in msg


def test_extra_columns_are_ignored(tmp_path):
    warnings = []
    got = read_lookups(simple(tmp_path / "t.parquet", label=["x", "y", "z", "w"]), warn=warnings.append)
    assert len(got.step) == 4 and warnings == []


def test_empty_trace(tmp_path):
    path = simple(tmp_path / "t.parquet", step=pa.array([], pa.int64()), table=pa.array([], pa.int32()),
                  row=pa.array([], pa.int64()))
    expect_error("no lookups", TraceSource, path)


# Validation: types


@pytest.mark.parametrize("column, array, expected", [
    ("step", pa.array([0.0, 0, 1, 2]), "'step' has type double; expected an integer"),
    ("row", pa.array(["a", "b", "c", "d"]), "'row' has type string; expected an integer"),
    ("table", pa.array([0.0, 1, 0, 1]), "'table' has type double; expected an integer table index or a string"),
    ("grad_norm", pa.array([[1]] * 4, pa.list_(pa.int32())),
     r"'grad_norm' has type list<.*int32>; expected a list of floats"),
    ("grad_norm", pa.array([1.0] * 4), "'grad_norm' has type double; expected a list of floats"),
])
def test_wrong_dtypes(tmp_path, column, array, expected):
    expect_error(expected, TraceSource, simple(tmp_path / "t.parquet", **{column: array}))


@pytest.mark.parametrize("column, array, expected", [
    ("chunk", pa.array([0.0, 1, 2]), "'chunk' has type double; expected an integer"),
    ("importance", pa.array([1, 2, 3]), "'importance' has type int64; expected a float"),
    ("step", pa.array(["0", "1", "2"]), "'step' has type string"),
])
def test_wrong_importance_dtypes(tmp_path, column, array, expected):
    log = write_raw(tmp_path / "imp.parquet", log_cols(**{column: array}), tables=None)
    expect_error(expected, TraceSource, simple(tmp_path / "t.parquet"), importance=log)


def test_importance_table_kind_must_match_trace(tmp_path):
    log = write_raw(tmp_path / "imp.parquet", log_cols(table=pa.array(["users", "items", "users"])), tables=None)
    expect_error("names tables by name but the trace", TraceSource, simple(tmp_path / "t.parquet"), importance=log)


def test_uint64_too_large(tmp_path):
    path = simple(tmp_path / "t.parquet", row=pa.array([1, 2, 2**63, 3], pa.uint64()))
    expect_error(r"record 2: row 9223372036854775808 does not fit", consume, TraceSource(path))


# Validation: values


@pytest.mark.parametrize("column", ["step", "table", "row"])
def test_nulls(tmp_path, column):
    values = {"step": [0, 0, None, 2], "table": [0, 1, None, 1], "row": [3, 4, None, 6]}[column]
    path = simple(tmp_path / "t.parquet", **{column: pa.array(values, pa.int64())})
    expect_error(f"record 2: column '{column}' is null", consume, TraceSource(path))


def test_null_string_table(tmp_path):
    path = simple(tmp_path / "t.parquet", table=pa.array(["users", None, "users", "items"]))
    expect_error("record 1: column 'table' is null", consume, TraceSource(path))


def test_null_grad_norm(tmp_path):
    grad = pa.array([[1.0] * 8, [1.0] * 4, None, [1.0] * 4], pa.list_(pa.float32()))
    expect_error("record 2: column 'grad_norm' is null", consume,
                 TraceSource(simple(tmp_path / "t.parquet", grad_norm=grad)))


def test_null_inside_grad_norm(tmp_path):
    grad = pa.array([[1.0] * 8, [1.0] * 4, [1.0] * 7 + [None], [1.0] * 4], pa.list_(pa.float32()))
    expect_error(r"record 2 \(step 1\): grad_norm contains a null", consume,
                 TraceSource(simple(tmp_path / "t.parquet", grad_norm=grad)))


def test_negative_row(tmp_path):
    path = simple(tmp_path / "t.parquet", row=pa.array([3, -1, 5, 6], pa.int64()))
    expect_error(r"record 1 \(step 0\): row -1 is outside 0..49 of table 'items'", consume, TraceSource(path))


def test_row_too_large(tmp_path):
    path = simple(tmp_path / "t.parquet", row=pa.array([3, 4, 100, 6], pa.int64()))
    expect_error(r"record 2 \(step 1\): row 100 is outside 0..99 of table 'users'", consume, TraceSource(path))


def test_table_index_out_of_range(tmp_path):
    path = simple(tmp_path / "t.parquet", table=pa.array([0, 1, 2, 1], pa.int32()))
    expect_error(r"record 2 \(step 1\): table index 2 is out of range: the trace's 'fiitedsim.tables' metadata has 2",
                 consume, TraceSource(path))


def test_negative_table_index(tmp_path):
    path = simple(tmp_path / "t.parquet", table=pa.array([0, -1, 0, 1], pa.int32()))
    expect_error(r"record 1 \(step 0\): table index -1 is out of range", consume, TraceSource(path))


def test_unknown_table_name(tmp_path):
    path = simple(tmp_path / "t.parquet", table=pa.array(["users", "items", "movies", "users"]))
    expect_error("record 2: unknown table name 'movies'; the trace's 'fiitedsim.tables' metadata has: users, items",
                 consume, TraceSource(path))


def test_steps_decreasing_within_a_batch(tmp_path):
    path = simple(tmp_path / "t.parquet", step=pa.array([0, 2, 1, 3], pa.int64()))
    expect_error(r"record 2 \(step 1\): step 1 comes after step 2; steps must be non-decreasing", consume,
                 TraceSource(path))


def test_steps_decreasing_across_batches(tmp_path):
    path = simple(tmp_path / "t.parquet", step=pa.array([0, 2, 1, 3], pa.int64()))
    expect_error(r"record 2 \(step 1\): step 1 comes after step 2", consume, TraceSource(path, batch_rows=2))


def test_negative_step(tmp_path):
    path = simple(tmp_path / "t.parquet", step=pa.array([-3, 0, 1, 2], pa.int64()))
    expect_error(r"record 0 \(step -3\): step -3 is negative", consume, TraceSource(path))


def test_grad_norm_wrong_length(tmp_path):
    grad = pa.array([[1.0] * 8, [1.0] * 8, [1.0] * 8, [1.0] * 4], pa.list_(pa.float32()))
    expect_error(r"record 1 \(step 0\): grad_norm has 8 values but table 'items' has K=4", consume,
                 TraceSource(simple(tmp_path / "t.parquet", grad_norm=grad)))


@pytest.mark.parametrize("bad, shown", [  # 1e300 was shown as inf, its value read as float32 (issue 21)
    (float("nan"), "nan"), (float("inf"), "inf"), (-0.5, "-0.5"),
    (1e300, r"1e\+300 \(beyond 3\.4e\+38, the largest float32, which these values are read as\)")])
def test_grad_norm_bad_values(tmp_path, bad, shown):
    grad = pa.array([[1.0] * 8, [1.0] * 4, [1.0] * 3 + [bad] + [1.0] * 4, [1.0] * 4], pa.list_(pa.float64()))
    expect_error(rf"record 2 \(step 1\): grad_norm value {shown} is not allowed", consume,
                 TraceSource(simple(tmp_path / "t.parquet", grad_norm=grad)))


# Validation: importance log


def test_importance_chunk_out_of_range(tmp_path):
    log = write_raw(tmp_path / "imp.parquet", log_cols(chunk=pa.array([0, 4, 7], pa.int16())), tables=None)
    src = TraceSource(simple(tmp_path / "t.parquet"), importance=log)
    expect_error(r"imp.parquet: record 1 \(step 1\): chunk 4 is outside 0..3 of table 'items'", consume, src)


def test_importance_negative_chunk(tmp_path):
    log = write_raw(tmp_path / "imp.parquet", log_cols(chunk=pa.array([-1, 0, 0], pa.int16())), tables=None)
    expect_error(r"record 0 \(step 0\): chunk -1 is outside", consume,
                 TraceSource(simple(tmp_path / "t.parquet"), importance=log))


@pytest.mark.parametrize("bad, shown", [(float("nan"), "nan"), (float("-inf"), "-inf"), (-1.0, "-1.0")])
def test_importance_bad_values(tmp_path, bad, shown):
    log = write_raw(tmp_path / "imp.parquet", log_cols(importance=pa.array([0.5, bad, 1.0], pa.float32())), tables=None)
    expect_error(rf"record 1 \(step 1\): importance {shown} is not allowed", consume,
                 TraceSource(simple(tmp_path / "t.parquet"), importance=log))


def test_importance_row_out_of_range(tmp_path):
    log = write_raw(tmp_path / "imp.parquet", log_cols(row=pa.array([1, 50, 3], pa.int64())), tables=None)
    expect_error(r"imp.parquet: record 1 \(step 1\): row 50 is outside 0..49 of table 'items'", consume,
                 TraceSource(simple(tmp_path / "t.parquet"), importance=log))


def test_importance_table_out_of_range(tmp_path):
    log = write_raw(tmp_path / "imp.parquet", log_cols(table=pa.array([0, 5, 0], pa.int32())), tables=None)
    expect_error(r"imp.parquet: record 1 \(step 1\): table index 5 is out of range", consume,
                 TraceSource(simple(tmp_path / "t.parquet"), importance=log))


def test_importance_null(tmp_path):
    log = write_raw(tmp_path / "imp.parquet", log_cols(importance=pa.array([0.5, None, 1.0], pa.float32())),
                    tables=None)
    expect_error("record 1: column 'importance' is null", consume,
                 TraceSource(simple(tmp_path / "t.parquet"), importance=log))


def test_importance_log_unsorted(tmp_path):
    log = write_raw(tmp_path / "imp.parquet", log_cols(step=pa.array([0, 2, 1], pa.int64())), tables=None)
    expect_error(r"imp.parquet: record 2 \(step 1\): step 1 comes after step 2; .*sort the importance log", consume,
                 TraceSource(simple(tmp_path / "t.parquet"), importance=log, batch_rows=1))


def test_importance_missing_columns(tmp_path):
    log = write_raw(tmp_path / "imp.parquet", log_cols(chunk=None), tables=None)
    expect_error("missing column.*chunk.*needs columns step, table, row, chunk, importance", TraceSource,
                 simple(tmp_path / "t.parquet"), importance=log)


def test_empty_importance_log_warns(tmp_path):
    log = tmp_path / "imp.parquet"
    write_importance(log, [], [], [], [], [])
    warnings = []
    src = TraceSource(simple(tmp_path / "t.parquet"), importance=log, warn=warnings.append)
    assert src.has_importance and src.num_importance == 0
    assert any("is empty" in w for w in warnings)
    got = read_lookups(simple(tmp_path / "t.parquet"), importance=log, warn=lambda m: None)
    assert len(got.step) == 4 and len(got.imp_step) == 0


# Validation: table lists


def test_malformed_metadata_json(tmp_path):
    path = simple(tmp_path / "t.parquet")
    table = pq.read_table(path).replace_schema_metadata({TABLES_KEY: b"[{\"name\": \"a\", "})
    pq.write_table(table, path)
    expect_error("metadata 'fiitedsim.tables' is not valid JSON", TraceSource, path)


def test_metadata_with_bad_table_spec(tmp_path):
    path = write_raw(tmp_path / "t.parquet", {"step": [0], "table": [0], "row": [0]},
                     metadata={TABLES_KEY: json.dumps([{"name": "a", "rows": 10, "dim": 10, "chunk": 3}]).encode()})
    expect_error("metadata 'fiitedsim.tables': table 'a': chunk C=3 does not divide dim D=10", TraceSource, path)


def test_tables_file_disagrees_with_metadata_count(tmp_path):
    spec = tmp_path / "tables.json"
    spec.write_text(json.dumps([{"name": "a", "rows": 100, "dim": 64, "chunk": 8}]))
    expect_error("lists 1 tables but the trace .* was written for 2", TraceSource, simple(tmp_path / "t.parquet"),
                 tables_file=spec)


def test_tables_file_too_short_for_referenced_index(tmp_path):
    path = write_raw(tmp_path / "t.parquet", {"step": [0, 1], "table": [0, 1], "row": [0, 0]}, tables=None)
    spec = tmp_path / "tables.toml"
    spec.write_text('[[tables]]\nname = "a"\nrows = 10\ndim = 64\nchunk = 8\n')
    expect_error(r"record 1 \(step 1\): table index 1 is out of range: --tables file .*tables.toml has 1 table",
                 consume, TraceSource(path, tables_file=spec))


def test_tables_file_with_bad_table_spec_names_the_file(tmp_path):
    spec = tmp_path / "tables.json"
    spec.write_text(json.dumps([{"name": "a", "rows": 100, "dim": 8, "chunk": 4},
                                {"name": "b", "rows": 0, "dim": 8, "chunk": 4}]))
    expect_error(r"tables.json: table 'b': rows must be between", TraceSource, simple(tmp_path / "t.parquet"),
                 tables_file=spec)


# ---------------------------------------------------------------------------
# Encodings of grad_norm (issue 20): lists as written before, packed float32 as TraceWriter writes now


def write_old_encoding(path, step, table, row, grad, tables=TABLES, groups=1):
    """A trace as 5cddf2c's TraceWriter wrote it: grad_norm list<float32> of K(table) values, zstd, dictionaries
    on (pyarrow's default), one row group per write."""
    k = np.array([t.chunks for t in tables])[np.asarray(table)]
    schema = pa.schema([pa.field("step", pa.int64()), pa.field("table", pa.int32()), pa.field("row", pa.int64()),
                        pa.field("grad_norm", pa.list_(pa.float32()))],
                       metadata={TABLES_KEY: tables_to_json(tables).encode()})
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for idx in np.array_split(np.arange(len(step)), groups):
            lists = pa.array([list(np.asarray(grad)[i, :k[i]]) for i in idx], pa.list_(pa.float32()))
            w.write_table(pa.Table.from_arrays([pa.array(np.asarray(step, np.int64)[idx]),
                                                pa.array(np.asarray(table, np.int32)[idx]),
                                                pa.array(np.asarray(row, np.int64)[idx]), lists], schema=schema))
    return path


def mixed_lookups(n=3000, seed=0):
    """Lookups over TABLES (K = 8 and 4), steps with many lookups each, norms zero past K(table)."""
    rng = np.random.default_rng(seed)
    step = np.sort(rng.integers(0, 40, n))
    table = rng.integers(0, 2, n)
    row = np.where(table == 0, rng.integers(0, 100, n), rng.integers(0, 50, n))
    grad = rng.random((n, 8), dtype=np.float32) * 3
    grad[table == 1, 4:] = 0
    return step, table, row, grad


@pytest.mark.parametrize("batch_rows", [1 << 20, 257])
@pytest.mark.parametrize("whole_steps", [True, False])
def test_old_and_new_encodings_read_the_same(tmp_path, batch_rows, whole_steps):
    step, table, row, grad = mixed_lookups()
    old = write_old_encoding(tmp_path / "old.parquet", step, table, row, grad, groups=3)
    new = write_trace(tmp_path / "new.parquet", step, table, row, grad, groups=3)
    assert pq.read_schema(old).field("grad_norm").type == pa.list_(pa.float32())
    assert pq.read_schema(new).field("grad_norm").type == pa.binary(32)  # packed: K_max = 8 float32
    a = list(TraceSource(old, batch_rows=batch_rows).batches(whole_steps=whole_steps))
    b = list(TraceSource(new, batch_rows=batch_rows).batches(whole_steps=whole_steps))
    assert len(a) == len(b) and len(a) > (1 if batch_rows < 1000 else 0)
    for x, y in zip(a, b):
        for name, value in vars(x).items():
            other = getattr(y, name)
            assert value.dtype == other.dtype and value.shape == other.shape, name
            assert np.array_equal(value, other), name
    assert np.array_equal(np.concatenate([x.grad for x in a]), grad)


def test_new_encoding_keeps_integer_dictionaries_and_packs_grad(tmp_path):
    step, table, row, grad = mixed_lookups(200)
    md = pq.ParquetFile(write_trace(tmp_path / "t.parquet", step, table, row, grad)).metadata.row_group(0)
    columns = {md.column(i).path_in_schema: md.column(i) for i in range(md.num_columns)}
    assert columns["grad_norm"].compression in ("LZ4", "LZ4_RAW")
    assert "BYTE_STREAM_SPLIT" not in columns["grad_norm"].encodings  # polars cannot read it on fixed-size binary
    assert not columns["grad_norm"].has_dictionary_page
    assert all(columns[c].compression == "ZSTD" and columns[c].has_dictionary_page for c in ("step", "table", "row"))
    import polars as pl
    frame = pl.read_parquet(tmp_path / "t.parquet")  # other tools read it too: the norms as 32-byte binaries
    assert frame["grad_norm"].to_list()[0] == grad[0].astype("<f4").tobytes()


def packed_trace(path, grad, tables=TABLES, table=(0, 1, 0, 1)):
    """The four lookups of `simple` with packed norms `grad` (4 x J float32; nulls where a row is None)."""
    grad = [None if g is None else np.asarray(g, "<f4").tobytes() for g in grad]
    j = next(len(g) for g in grad if g is not None) // 4
    return simple(path, table=pa.array(list(table), pa.int32()), grad_norm=pa.array(grad, pa.binary(4 * j)))


@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-0.5, "-0.5")])
def test_packed_grad_bad_values(tmp_path, bad, shown):
    grad = np.ones((4, 8), np.float32)
    grad[[1, 3], 4:] = 0
    grad[2, 3] = bad
    expect_error(rf"record 2 \(step 1\): grad_norm value {shown} is not allowed", consume,
                 TraceSource(packed_trace(tmp_path / "t.parquet", grad)))


def test_packed_grad_bad_values_all_tables_alike(tmp_path):
    tables = [TableSpec("users", rows=100), TableSpec("items", rows=50)]  # K = 8 for both: the fast path
    grad = np.ones((4, 8), np.float32)
    grad[3, 7] = -1
    path = packed_trace(tmp_path / "t.parquet", grad)
    source = TraceSource(path)
    source.set_tables(tables)
    expect_error(r"record 3 \(step 2\): grad_norm value -1.0 is not allowed", consume, source)


def test_packed_grad_padding_must_be_zero(tmp_path):
    grad = np.ones((4, 8), np.float32)
    grad[3, 4:] = 0
    grad[1, 6] = 0  # a record's values end at its last non-zero one
    expect_error(r"record 1 \(step 0\): grad_norm has 8 values but table 'items' has K=4", consume,
                 TraceSource(packed_trace(tmp_path / "t.parquet", grad)))


def test_packed_grad_too_short_and_null(tmp_path):
    short = np.ones((4, 4), np.float32)
    expect_error(r"record 0 \(step 0\): grad_norm has 4 values but table 'users' has K=8", consume,
                 TraceSource(packed_trace(tmp_path / "s.parquet", short)))
    grad = [np.ones(8), np.zeros(8), None, np.zeros(8)]
    expect_error("record 2: column 'grad_norm' is null", consume,
                 TraceSource(packed_trace(tmp_path / "n.parquet", grad)))


def test_packed_grad_odd_width_refused(tmp_path):
    path = simple(tmp_path / "t.parquet", grad_norm=pa.array([b"abc"] * 4, pa.binary(3)))
    expect_error(r"'grad_norm' has type fixed_size_binary\[3\]; expected a list of floats", TraceSource, path)
