"""Hostile input, generated (issue 14): malformed traces, importance logs, table lists, sweep files and results
folders, each made bad by construction (one mutation of a valid input that the documented contract forbids).

Every example must end the way docs/usage.md ("Bad input") promises: exit code 2, exactly one `error:` line on
stderr, no traceback, nothing on stdout, no output written, numbers shown plainly (no numpy reprs). The
commands run in-process, so the module takes well under a minute; each test sets its own example count.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fiitedsim import cli
from fiitedsim.traces.source import write_importance
from fiitedsim.traces.writer import TABLES_KEY

pytestmark = pytest.mark.slow  # hypothesis: generated malformed inputs through the command line

# Two tables, K = 4 each, chunk bytes 16 and 32: --page-bytes 64 gives both pools a page at any budget used here.
TABLES = [{"name": "users", "rows": 100, "dim": 16, "chunk": 4, "dtype_bytes": 4},
          {"name": "items", "rows": 50, "dim": 32, "chunk": 8, "dtype_bytes": 4}]
STEP, TABLE, ROW = [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [1, 2, 3, 4, 99, 49]
GRAD = [[0.5, 1.0, 1.5, 2.0]] * 6
REPLAY = ["--policy", "fiited,uniform-row,lru,full", "--budget", "0.9", "--page-bytes", "64", "--interval", "1", "-q"]
def hostile(examples: int) -> settings:
    """Derandomized (the same examples on every run, so CI time is steady), no deadline, few examples."""
    return settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, max_examples=examples)


def run_cli(*args) -> tuple[int, str, str]:
    """`fiitedsim ARGS` in-process: exit code, stdout, stderr (its own capture: hypothesis reruns the body)."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["fiitedsim", *map(str, args)]
    code = 0
    try:
        # the CLI's rich consoles write to whatever sys.stdout / sys.stderr are at the time of printing
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, out: str, err: str, *must_not_exist: Path) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err + out, err
    lines = err.splitlines()
    assert len(lines) == 1 and err == lines[0] + "\n" and lines[0].startswith("error: "), repr(err)
    assert out == "", out
    assert "np.float" not in err and "np.int" not in err and "array(" not in err, err
    for path in must_not_exist:
        assert not path.exists(), path


@pytest.fixture(scope="module")
def scratch():
    """A folder per test module; each example writes into a fresh subfolder."""
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def fresh(root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=root))


# ---------------------------------------------------------------------------
# Traces


def _columns(with_grad: bool = True) -> dict:
    cols = {"step": pa.array(STEP, pa.int64()), "table": pa.array(TABLE, pa.int32()), "row": pa.array(ROW, pa.int64())}
    if with_grad:
        cols["grad_norm"] = pa.array(GRAD, pa.list_(pa.float32()))
    return cols


def _write(path: Path, cols: dict | list, metadata: bytes | None = json.dumps(TABLES).encode()) -> Path:
    names, arrays = (list(cols), list(cols.values())) if isinstance(cols, dict) else zip(*cols)
    table = pa.Table.from_arrays(list(arrays), names=list(names))
    if metadata is not None:
        table = table.replace_schema_metadata({TABLES_KEY: metadata})
    pq.write_table(table, path)
    return path


def _replace(cols: dict, name: str, values) -> dict:
    return {**cols, name: values}


BAD_TABLE_ENTRIES = [  # (change to the first table entry, why it is bad)
    lambda e: e.pop("rows"), lambda e: e.pop("dim"), lambda e: e.pop("chunk"),
    lambda e: e.update(rows=0), lambda e: e.update(rows=-5), lambda e: e.update(rows=2**40),
    lambda e: e.update(rows="100"), lambda e: e.update(rows=1.5), lambda e: e.update(rows=True),
    lambda e: e.update(dim=0), lambda e: e.update(chunk=3), lambda e: e.update(chunk=0),
    lambda e: e.update(dim=4096, chunk=4), lambda e: e.update(dtype_bytes=3), lambda e: e.update(dtype_bytes=None),
    lambda e: e.update(name="items"), lambda e: e.update(colour="red"), lambda e: e.update(dim=[16]),
    lambda e: e.update(rows=2**62, dim=2**20, chunk=2**13, dtype_bytes=8),
]


@st.composite
def bad_metadata(draw) -> bytes:
    kind = draw(st.sampled_from(["garbage", "json", "entry", "twice"]))
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=40).filter(lambda b: not _is_json(b)))
    if kind == "json":  # valid JSON that is no table list
        return json.dumps(draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just([]), st.just({}),
                                         st.lists(st.integers(), min_size=1, max_size=3),
                                         st.just({"tables": 3}), st.just([[1, 2]])))).encode()
    entries = json.loads(json.dumps(TABLES))
    if kind == "entry":
        draw(st.sampled_from(BAD_TABLE_ENTRIES))(entries[draw(st.integers(0, 1))])
        return json.dumps(entries).encode()
    return json.dumps(entries).replace('"dim": 16', '"dim": 16, "dim": 32', 1).encode()


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        return False
    return True


@st.composite
def bad_trace(draw, folder: Path) -> Path:
    """A trace that breaks one rule of docs/formats.md, "Inputs" (or is no trace at all)."""
    path = folder / "trace.parquet"
    cols = _columns()
    kind = draw(st.sampled_from([
        "drop", "twice", "step_type", "row_type", "table_type", "null", "negative_row", "row_too_big",
        "table_out_of_range", "decreasing", "negative_step", "uint64_step", "grad_length", "grad_value",
        "grad_null", "grad_type", "unknown_name", "metadata", "empty", "garbage", "truncated", "parts"]))
    if kind == "drop":
        cols.pop(draw(st.sampled_from(["step", "table", "row"])))
    elif kind == "twice":
        name = draw(st.sampled_from(["step", "table", "row", "grad_norm"]))
        return _write(path, [*cols.items(), (name, cols[name])])
    elif kind == "step_type":
        cols = _replace(cols, "step", draw(st.sampled_from([
            pa.array([str(s) for s in STEP]), pa.array([float(s) for s in STEP]), pa.array([s > 0 for s in STEP]),
            pa.array([[s] for s in STEP])])))
    elif kind == "row_type":
        cols = _replace(cols, "row", draw(st.sampled_from([pa.array([str(r) for r in ROW]),
                                                          pa.array([r + 0.5 for r in ROW])])))
    elif kind == "table_type":
        cols = _replace(cols, "table", draw(st.sampled_from([pa.array([float(t) for t in TABLE]),
                                                            pa.array([[t] for t in TABLE])])))
    elif kind == "null":
        name = draw(st.sampled_from(["step", "table", "row", "grad_norm"]))
        values = cols[name].to_pylist()
        values[draw(st.integers(0, len(values) - 1))] = None
        cols = _replace(cols, name, pa.array(values, cols[name].type))
    elif kind in ("negative_row", "row_too_big", "table_out_of_range", "negative_step"):
        name = {"negative_row": "row", "row_too_big": "row", "table_out_of_range": "table",
                "negative_step": "step"}[kind]
        values = cols[name].to_pylist()
        i = draw(st.integers(0, len(values) - 1))
        values[i] = {"negative_row": draw(st.integers(-2**63, -1)),
                     "row_too_big": draw(st.integers(TABLES[TABLE[i]]["rows"], 2**63 - 1)),
                     "table_out_of_range": draw(st.one_of(st.integers(2, 2**31 - 1), st.integers(-2**31, -1))),
                     "negative_step": draw(st.integers(-2**63, -1))}[kind]
        if kind == "negative_step":  # keep the rest non-decreasing, so the negative step is the one fault
            values = [min(v, values[i]) if j < i else v for j, v in enumerate(values)]
        cols = _replace(cols, name, pa.array(values, cols[name].type))
    elif kind == "decreasing":
        i = draw(st.integers(1, len(STEP) - 1))
        values = list(STEP)
        values[i] = values[i - 1] - draw(st.integers(1, 10))
        values[:i] = [max(v, 0) + 10 for v in values[:i]]
        cols = _replace(cols, "step", pa.array(values, pa.int64()))
    elif kind == "uint64_step":
        values = [draw(st.integers(2**63, 2**64 - 1))] * len(STEP)
        cols = _replace(cols, "step", pa.array(values, pa.uint64()))
    elif kind == "grad_length":
        n = draw(st.integers(0, 9).filter(lambda k: k != 4))
        values = [list(g) for g in GRAD]
        values[draw(st.integers(0, len(values) - 1))] = [1.0] * n
        cols = _replace(cols, "grad_norm", pa.array(values, pa.list_(pa.float32())))
    elif kind == "grad_value":
        values = [list(g) for g in GRAD]
        values[draw(st.integers(0, len(values) - 1))][draw(st.integers(0, 3))] = draw(st.sampled_from(
            [math.nan, math.inf, -math.inf, -1.0, -1e-30, 1e39]))
        cols = _replace(cols, "grad_norm", pa.array(values, pa.list_(pa.float64())))
    elif kind == "grad_null":
        values = [list(g) for g in GRAD]
        values[draw(st.integers(0, len(values) - 1))][draw(st.integers(0, 3))] = None
        cols = _replace(cols, "grad_norm", pa.array(values, pa.list_(pa.float32())))
    elif kind == "grad_type":
        cols = _replace(cols, "grad_norm", draw(st.sampled_from([
            pa.array([1.0] * len(STEP)), pa.array([["a"] * 4] * len(STEP)), pa.array([[1] * 4] * len(STEP))])))
    elif kind == "unknown_name":
        names = ["users" if t == 0 else "items" for t in TABLE]
        names[draw(st.integers(0, len(names) - 1))] = draw(st.text(min_size=1, max_size=8).filter(
            lambda s: s not in ("users", "items")))
        cols = _replace(cols, "table", pa.array(names))
    elif kind == "metadata":
        return _write(path, cols, draw(bad_metadata()))
    elif kind == "empty":
        cols = {k: v.slice(0, 0) for k, v in cols.items()}
    elif kind == "garbage":
        path.write_bytes(draw(st.binary(max_size=200)))
        return path
    elif kind == "truncated":
        _write(path, cols)
        data = path.read_bytes()
        path.write_bytes(data[:draw(st.integers(0, len(data) - 1))])
        return path
    elif kind == "parts":  # a folder of parts that do not make one trace
        parts = folder / "parts"
        parts.mkdir()
        how = draw(st.sampled_from(["none", "schema", "metadata", "order"]))
        if how != "none":
            _write(parts / "part-1.parquet", cols)
        if how == "schema":
            _write(parts / "part-2.parquet", {k: v for k, v in cols.items() if k != "grad_norm"})
        elif how == "metadata":
            _write(parts / "part-2.parquet", cols, json.dumps(TABLES[::-1]).encode())
        elif how == "order":
            _write(parts / "part-2.parquet", _replace(cols, "step", pa.array([0] * len(STEP), pa.int64())))
            _write(parts / "part-1.parquet", _replace(cols, "step", pa.array([5] * len(STEP), pa.int64())))
        return parts
    return _write(path, cols)


def test_the_unmutated_inputs_are_fine(tmp_path):
    """The base every mutation starts from replays, inspects and reports cleanly (so a refusal is the mutation's)."""
    trace = _write(tmp_path / "t.parquet", _columns())
    plain = _write(tmp_path / "plain.parquet", _columns(with_grad=False))
    write_importance(tmp_path / "log.parquet", [0, 1, 2], [0, 1, 0], [1, 2, 3], [0, 3, 2], [1.0, 0.5, 2.0])
    for args in (["replay", trace, *REPLAY, "--out", tmp_path / "o"], ["inspect", trace, "-q"],
                 ["replay", plain, "--importance", tmp_path / "log.parquet", *REPLAY],
                 ["report", tmp_path / "o", "-o", tmp_path / "r.html"]):
        code, out, err = run_cli(*args)
        assert code == 0 and "error" not in err and "warning" not in err, (args, err)


@hostile(200)
@given(data=st.data())
def test_malformed_traces_are_refused(scratch, data):
    folder = fresh(scratch)
    trace = data.draw(bad_trace(folder))
    command = data.draw(st.sampled_from(["replay", "inspect"]))
    out = folder / "o"
    args = ["replay", trace, *REPLAY, "--out", out] if command == "replay" else ["inspect", trace, "-q"]
    assert_refused(*run_cli(*args), out)


# ---------------------------------------------------------------------------
# Importance logs


@st.composite
def bad_log(draw, folder: Path) -> Path:
    path = folder / "log.parquet"
    cols = {"step": pa.array([0, 1, 2], pa.int64()), "table": pa.array([0, 1, 0], pa.int32()),
            "row": pa.array([1, 2, 3], pa.int64()), "chunk": pa.array([0, 3, 2], pa.int16()),
            "importance": pa.array([1.0, 0.5, 2.0], pa.float32())}
    kind = draw(st.sampled_from(["drop", "twice", "chunk", "value", "unsorted", "row", "table_kind", "null",
                                 "garbage", "type"]))
    i = draw(st.integers(0, 2))
    if kind == "drop":
        cols.pop(draw(st.sampled_from(list(cols))))
    elif kind == "twice":
        name = draw(st.sampled_from(list(cols)))
        return _write(path, [*cols.items(), (name, cols[name])], None)
    elif kind == "chunk":
        values = cols["chunk"].to_pylist()
        values[i] = draw(st.one_of(st.integers(4, 2**15 - 1), st.integers(-2**15, -1)))
        cols["chunk"] = pa.array(values, pa.int16())
    elif kind == "value":
        values = cols["importance"].to_pylist()
        values[i] = draw(st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -1e-30]))
        cols["importance"] = pa.array(values, pa.float32())
    elif kind == "unsorted":
        cols["step"] = pa.array([5, 1, 2] if i == 0 else [0, 9, 2], pa.int64())
    elif kind == "row":
        values = cols["row"].to_pylist()
        values[i] = draw(st.one_of(st.integers(-2**63, -1), st.integers(100, 2**63 - 1)))
        cols["row"] = pa.array(values, pa.int64())
    elif kind == "table_kind":
        cols["table"] = pa.array(["users", "items", "users"])
    elif kind == "null":
        name = draw(st.sampled_from(list(cols)))
        values = cols[name].to_pylist()
        values[i] = None
        cols[name] = pa.array(values, cols[name].type)
    elif kind == "garbage":
        path.write_bytes(draw(st.binary(max_size=100)))
        return path
    elif kind == "type":
        name = draw(st.sampled_from(list(cols)))
        cols[name] = pa.array([str(v) for v in cols[name].to_pylist()])
    return _write(path, cols, None)


@hostile(80)
@given(data=st.data())
def test_malformed_importance_logs_are_refused(scratch, data):
    folder = fresh(scratch)
    trace = _write(folder / "trace.parquet", _columns(with_grad=False))
    log = data.draw(bad_log(folder))
    command = data.draw(st.sampled_from(["replay", "inspect"]))
    out = folder / "o"
    args = (["replay", trace, "--importance", log, *REPLAY, "--out", out] if command == "replay"
            else ["inspect", trace, "--importance", log, "-q"])
    assert_refused(*run_cli(*args), out)


# ---------------------------------------------------------------------------
# Table lists (--tables FILE)


@hostile(80)
@given(data=st.data())
def test_malformed_table_files_are_refused(scratch, data):
    folder = fresh(scratch)
    trace = _write(folder / "trace.parquet", _columns())
    suffix = data.draw(st.sampled_from([".json", ".toml"]))
    path = folder / f"tables{suffix}"
    if suffix == ".json":
        path.write_bytes(data.draw(bad_metadata()))
    else:
        entries = json.loads(json.dumps(TABLES))
        how = data.draw(st.sampled_from(["entry", "garbage", "count"]))
        if how == "entry":
            data.draw(st.sampled_from(BAD_TABLE_ENTRIES))(entries[data.draw(st.integers(0, 1))])
        elif how == "count":
            entries = entries[:1]
        text = "".join("[[tables]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in e.items()) for e in entries)
        path.write_text(text if how != "garbage" else data.draw(st.text(min_size=1, max_size=30)) + " = = \n")
    command = data.draw(st.sampled_from(["replay", "inspect"]))
    out = folder / "o"
    args = (["replay", trace, "--tables", path, *REPLAY, "--out", out] if command == "replay"
            else ["inspect", trace, "--tables", path, "-q"])
    assert_refused(*run_cli(*args), out)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if value is None:
        return '"none"'  # TOML has no null: a string where a number belongs
    return json.dumps(value)


# ---------------------------------------------------------------------------
# Sweep files

WRONG_VALUES = st.sampled_from(["text", 1.5, -3, 0, True, [], [[1]], {"a": 1}, math.nan, math.inf, 2**62])
KNOB_BAD = {  # values each knob must refuse
    "gamma": [0.0, 1.5, -0.1, math.nan, math.inf, "0.9", True], "interval": [0, -1, 1.5, "100"],
    "position_weight": [0.0, 2.0, math.nan], "page_bytes": [0, -64, 8], "max_load": [0.0, 1.0, 2.0, math.nan],
    "index_initial": [0, 1000, 2**40, -2], "allocator": ["best-fit", 1], "budget_covers": ["index", False],
    "report_every": [0, -5], "count_accesses": ["yes", 1], "chunk": [3, 0, -4, 5], "dim": [0, -16, 30],
    "dtype_bytes": [3, 0, 16],
}


@st.composite
def bad_sweep(draw, folder: Path, trace: Path) -> Path:
    sweep = {"traces": [str(trace)], "policies": ["fiited", "full"], "budgets": [0.9], "page_bytes": 64,
             "out": str(folder / "o")}
    kind = draw(st.sampled_from(["unknown", "missing", "wrong", "empty", "twice", "policy", "budget", "knob",
                                 "trace", "both", "garbage", "top"]))
    if kind == "unknown":
        sweep[draw(st.sampled_from(["gama", "budget", "trace", "polices", "seed_", "Out"]))] = 1
    elif kind == "missing":
        sweep.pop(draw(st.sampled_from(["traces", "policies", "budgets"])))
    elif kind == "wrong":
        key = draw(st.sampled_from(["traces", "policies", "budgets", "out", "tables"]))
        sweep[key] = draw(WRONG_VALUES.filter(lambda v: not (key == "budgets" and isinstance(v, (int, float))
                                                             and not isinstance(v, bool) and 0 <= v <= 100)
                                              and not (key == "out" and isinstance(v, str))))  # any folder name
    elif kind == "empty":
        sweep[draw(st.sampled_from(["traces", "policies", "budgets", "gamma", "chunk"]))] = []
    elif kind == "twice":
        key = draw(st.sampled_from(["traces", "policies", "budgets"]))
        sweep[key] = sweep[key] + sweep[key][:1]
    elif kind == "policy":
        sweep["policies"] = [draw(st.sampled_from(["fifo", "FIITED", "", "all ", "uniform_row"]))]
    elif kind == "budget":
        sweep["budgets"] = [draw(st.sampled_from(["lots", "-0.1", "101", "2XB", "", "1e30B", "0.1,0.2", "nan"]))]
    elif kind == "knob":
        name = draw(st.sampled_from(sorted(KNOB_BAD)))
        sweep[name] = [draw(st.sampled_from(KNOB_BAD[name]))]
    elif kind == "trace":
        sweep["traces"] = [str(folder / draw(st.sampled_from(["missing.parquet", "*.nothing", "nodir/"])))]
    elif kind == "both":
        sweep["data"] = ["synthetic"]
    path = folder / "s.toml"
    if kind == "garbage":
        path.write_bytes(draw(st.binary(min_size=1, max_size=60)))
    elif kind == "top":
        path.write_text(draw(st.sampled_from(["", "[other]\na = 1\n", "sweep = 3\n", "[sweep]\n"])))
    else:
        path.write_text("[sweep]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in sweep.items()))
    return path


@hostile(150)
@given(data=st.data())
def test_malformed_sweep_files_are_refused(scratch, data):
    folder = fresh(scratch)
    trace = _write(folder / "trace.parquet", _columns(with_grad=False))
    path = data.draw(bad_sweep(folder, trace))
    assert_refused(*run_cli("sweep", path, "-q"), folder / "o")


# ---------------------------------------------------------------------------
# Results folders (fiitedsim report)

INT_BAD = st.sampled_from(["12", -1, 1.5, True, None, [], {}])
SHARE_BAD = st.sampled_from(["0.5", -0.01, 1.01, 7.5, None, [], True])


@pytest.fixture(scope="module")
def results(scratch) -> Path:
    folder = scratch / "results"
    trace = _write(scratch / "results-trace.parquet", _columns())
    code, _, err = run_cli("replay", trace, *REPLAY, "--out", folder)
    assert code == 0, err
    return folder


@hostile(100)
@given(data=st.data())
def test_malformed_results_folders_are_refused(scratch, results, data):
    folder = fresh(scratch) / "run"
    shutil.copytree(results, folder)
    summary = json.loads((folder / "summary.json").read_text())
    stats = summary["policies"][data.draw(st.sampled_from(sorted(summary["policies"])))]
    kind = data.draw(st.sampled_from(["int", "share", "dim_hist", "theta", "config", "trace", "format", "json",
                                      "series_missing", "series_garbage", "series_type", "sections"]))
    if kind == "int":
        stats[data.draw(st.sampled_from(["payload_bytes_final", "total_bytes_peak", "rehashes", "lookups",
                                         "mapped_pages_final", "meta_bytes_final"]))] = data.draw(INT_BAD)
    elif kind == "share":
        stats[data.draw(st.sampled_from(["row_hit_rate", "chunk_hit_rate", "full_hit_rate",
                                         "fragmentation_final"]))] = data.draw(SHARE_BAD)
    elif kind == "dim_hist":
        stats["dim_hist_final"] = data.draw(st.sampled_from([None, "x", [], [-1, 2], ["a"], 3, [1.5]]))
    elif kind == "theta":
        stats["theta_final"] = data.draw(st.sampled_from(["inf", -1.0, [], True]))
    elif kind == "config":
        summary["config"]["budgets"] = data.draw(st.sampled_from(["0.9", [1], [{"label": 0.9}],
                                                                  [{"label": "0.9", "bytes": "x"}]]))
    elif kind == "trace":
        key = data.draw(st.sampled_from(["dense_bytes", "lookups", "last_step", "path"]))
        summary["trace"][key] = data.draw(st.sampled_from(["5", -3, 2.5, [1]] if key != "path" else [5, [], {}]))
    elif kind == "format":
        summary["format"] = data.draw(st.sampled_from([0, 2, "1", None, 1.0, True]))
    elif kind == "sections":
        summary[data.draw(st.sampled_from(["policies", "config", "trace"]))] = data.draw(
            st.sampled_from([None, [], "x", 3, {}]))
    if kind == "json":
        (folder / "summary.json").write_bytes(data.draw(st.binary(max_size=60).filter(lambda b: not _is_json(b))))
    else:
        (folder / "summary.json").write_text(json.dumps(summary))
    series = sorted((folder / "timeseries").iterdir())
    target = series[data.draw(st.integers(0, len(series) - 1))]
    if kind == "series_missing":
        target.unlink()
    elif kind == "series_garbage":
        target.write_bytes(data.draw(st.binary(max_size=100)))
    elif kind == "series_type":
        import polars as pl
        frame = pl.read_parquet(target)
        name = data.draw(st.sampled_from(["step", "lookups", "chunk_hits", "payload_bytes", "fragmentation"]))
        frame.with_columns(pl.col(name).cast(pl.String)).write_parquet(target)
    out = folder.parent / "r.html"
    assert_refused(*run_cli("report", folder, "-o", out), out)


# ---------------------------------------------------------------------------
# Training data (train --data csv:/parquet:/criteo:)


@st.composite
def bad_training_csv(draw, folder: Path) -> tuple[str, list[str]]:
    """A CSV (or Criteo TSV) that `train` must refuse, and the options naming its columns."""
    rows = [["1", "0.5", "a"], ["0", "1.5", "b"], ["1", "", "c"]]
    header = ["y", "d", "s"]
    kind = draw(st.sampled_from(["label", "dense", "missing_column", "twice", "empty", "garbage", "no_label",
                                 "criteo_test", "criteo_short"]))
    i = draw(st.integers(0, 2))
    if kind == "label":
        rows[i][0] = draw(st.sampled_from(["2", "-1", "0.5", "yes", "", "nan", "inf"]))
    elif kind == "dense":
        rows[i][1] = draw(st.sampled_from(["inf", "-inf", "1e39", "-3.5e38", "abc", "1,5"]))
    elif kind == "missing_column":
        return f"csv:{_csv(folder, header, rows)}", ["--label", "y", "--sparse", "s,nope", "--dense", "d"]
    elif kind == "twice":
        header[2] = "d"
    elif kind == "empty":
        (folder / "d.csv").write_text(draw(st.sampled_from(["", "y,d,s\n"])))
        return f"csv:{folder / 'd.csv'}", ["--label", "y", "--sparse", "s", "--dense", "d"]
    elif kind == "garbage":
        (folder / "d.csv").write_bytes(b"PAR1" + draw(st.binary(max_size=50)))
        return f"parquet:{folder / 'd.csv'}", ["--label", "y", "--sparse", "s"]
    elif kind == "no_label":
        return f"csv:{_csv(folder, header, rows)}", ["--sparse", "s"]
    elif kind in ("criteo_test", "criteo_short"):
        fields = 39 if kind == "criteo_test" else draw(st.integers(1, 38))
        (folder / "c.tsv").write_text(("\t".join(["1"] * fields) + "\n") * 3)
        return f"criteo:{folder / 'c.tsv'}", []
    return f"csv:{_csv(folder, header, rows)}", ["--label", "y", "--sparse", "s", "--dense", "d"]


def _csv(folder: Path, header: list[str], rows: list[list[str]]) -> Path:
    path = folder / "d.csv"
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


@hostile(40)
@given(data=st.data())
def test_malformed_training_data_is_refused(scratch, data):
    folder = fresh(scratch)
    spec, columns = data.draw(bad_training_csv(folder))
    out = folder / "o"
    assert_refused(*run_cli("train", "--data", spec, *columns, "--rows", "50", "--batch", "2", "--page-bytes",
                            "256", "-q", "--out", out), out)


# ---------------------------------------------------------------------------
# Option values


BAD_VALUES = st.sampled_from(["", ",", "-1", "0", "nan", "inf", "-inf", "1e400", "abc", "2**40", "0x10", "1.5.2",
                              str(2**70), str(-2**70), "all,", "\U0001f642", "1e-400"])


@hostile(80)
@given(option=st.sampled_from(["--budget", "--policy", "--gamma", "--interval", "--page-bytes", "--max-load",
                               "--index-initial", "--allocator", "--budget-covers", "--report-every", "--dim",
                               "--chunk", "--dtype-bytes", "--position-weight"]), value=BAD_VALUES)
def test_bad_replay_option_values_are_refused(scratch, option, value):
    """Each of these values is wrong for each of these options (2**70 overflowed the engine's int64)."""
    folder = fresh(scratch)
    trace = _write(folder / "trace.parquet", _columns())
    out = folder / "o"
    assert_refused(*run_cli("replay", trace, *REPLAY, option, value, "--out", out), out)


@hostile(40)
@given(option=st.sampled_from(["--rows", "--fields", "--dim", "--chunk", "--batch", "--epochs", "--eval-every",
                               "--samples", "--lr-emb", "--lr-mlp", "--budget", "--policy", "--page-bytes",
                               "--index-initial", "--interval", "--gamma", "--size-from", "--drift"]),
       value=BAD_VALUES)
def test_bad_train_option_values_are_refused(scratch, option, value):
    if option in ("--batch", "--eval-every", "--epochs") and value == str(2**70):
        return  # a batch or evaluation interval beyond the data is fine; 2**70 epochs are the user's time to spend
    if option == "--drift" and value in ("0", "1e-400"):
        return  # no drift: the stationary task
    folder = fresh(scratch)
    out = folder / "o"
    assert_refused(*run_cli("train", "--samples", "300", "--rows", "50", "--fields", "2", "--batch", "64",
                            "--page-bytes", "256", option, value, "-q", "--out", out), out)


# --- round two: B (non-UTF-8 names), C (deep nesting), D (integer overflow), F (environment) ---


NAME_BYTES = st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")).filter(
    lambda b: b not in (b".", b"..") and not b.startswith(b"."))


@hostile(25)
@given(data=st.data())
def test_any_file_name_bytes_work_and_print(scratch, data):
    """Class B: a file name of any bytes (Latin-1, broken UTF-8, control bytes) is read and written, and every
    line naming it can be printed as UTF-8 (pyarrow, polars and printing raised UnicodeEncodeError)."""
    import os
    folder = fresh(scratch)
    name = os.fsdecode(data.draw(NAME_BYTES, label="name"))
    case = data.draw(st.sampled_from(["replay", "inspect", "generate", "import-in", "import-out", "missing"]))
    trace = folder / f"{name}.parquet"
    _write(folder / "plain.parquet", _columns()).rename(trace)  # the test's pyarrow takes UTF-8 names only
    csv = folder / f"{name}.csv"
    csv.write_text("step,table,row\n0,a,1\n1,b,2\n")
    target = folder / f"out-{name}.parquet"
    args = {"replay": ["replay", trace, *REPLAY, "--out", folder / f"o-{name}"], "inspect": ["inspect", trace, "-q"],
            "generate": ["generate", target, "--table-count", "1", "--rows", "100", "--steps", "2", "--batch", "8",
                         "--dim", "16", "--chunk", "4", "-q"],
            "import-in": ["import", "csv", csv, "-o", folder / "c.parquet", "-q"],
            "import-out": ["import", "csv", csv, "-o", target, "-q"],
            "missing": ["replay", folder / f"gone-{name}.parquet", "-q"]}[case]
    code, out, err = run_cli(*args)
    (out + err).encode("utf-8")  # printable: no lone surrogates
    if case == "missing":
        assert_refused(code, out, err)
    else:
        assert code == 0 and "Traceback" not in err and "error" not in err, err


@st.composite
def deep_text(draw, toml_value: bool = False) -> str:
    """Arrays or objects nested past the limit (65 levels to far past Python's recursion limit)."""
    depth = draw(st.one_of(st.integers(65, 200), st.integers(900, 1100), st.integers(20_000, 100_000)))
    kind = draw(st.sampled_from(["array", "object", "mixed"]))
    opens = {"array": ["["], "object": ['{"a":' if not toml_value else "{a = "],
             "mixed": ["[", '{"a":' if not toml_value else "{a = "]}[kind]
    seq = [opens[i % len(opens)] for i in range(depth)]
    closes = "".join("]" if o == "[" else "}" for o in reversed(seq))
    return "".join(seq) + "1" + closes


@hostile(40)
@given(data=st.data())
def test_deeply_nested_json_and_toml_are_refused(scratch, data):
    """Class C: a table list, a trace's metadata, a sweep file or a summary.json nested deeply is one error line
    (each raised RecursionError)."""
    folder = fresh(scratch)
    where = data.draw(st.sampled_from(["tables.json", "tables.toml", "metadata", "sweep", "summary"]))
    if where == "tables.json":
        path = folder / "t.json"
        path.write_text(data.draw(deep_text()))
        args = ["replay", _write(folder / "trace.parquet", _columns()), *REPLAY, "--tables", path]
    elif where == "tables.toml":
        path = folder / "t.toml"
        path.write_text(f"x = {data.draw(deep_text(toml_value=True))}\n")
        args = ["inspect", _write(folder / "trace.parquet", _columns()), "--tables", path, "-q"]
    elif where == "metadata":
        trace = _write(folder / "trace.parquet", _columns(), data.draw(deep_text()).encode())
        args = [data.draw(st.sampled_from(["replay", "inspect"])), trace, "-q"]
    elif where == "sweep":
        path = folder / "s.toml"
        trace = _write(folder / "trace.parquet", _columns())
        key = data.draw(st.sampled_from(["chunk", "budgets", "generate", "gamma"]))
        path.write_text(f'[sweep]\ntraces = ["{trace}"]\npolicies = ["full"]\nbudgets = [0.5]\nout = "{folder / "o"}"\n'
                        .replace("budgets = [0.5]\n", "" if key == "budgets" else "budgets = [0.5]\n")
                        + f"{key} = {data.draw(deep_text(toml_value=True))}\n")
        args = ["sweep", path, "-q"]
    else:
        results = folder / "r"
        results.mkdir()
        (results / "summary.json").write_text(data.draw(deep_text()))
        args = ["report", results]
    code, out, err = run_cli(*args)
    assert_refused(code, out, err, folder / "o")
    assert "nested more than" in err, err


HUGE_OR_NEGATIVE = st.one_of(st.integers(-2**70, -1), st.integers(2**63, 2**70))


@hostile(30)
@given(data=st.data())
def test_integers_past_64_bits_are_refused(scratch, data):
    """Class D: a seed, an import's first step, a training count or a sweep's seed outside 64 bits is one error
    line (tracebacks, OverflowError, or steps wrapped around to negative ones)."""
    folder = fresh(scratch)
    value = data.draw(HUGE_OR_NEGATIVE, label="value")
    out = folder / "o"
    where = data.draw(st.sampled_from(["--seed", "--seeds", "--batch", "--eval-every", "--epochs", "import --step",
                                       "sweep seed", "generate --seed"]))
    if where == "import --step":
        day = folder / "day.tsv"
        day.write_text("".join("\t".join(["1", *[str(i)] * 13, *["ab"] * 26]) + "\n" for i in range(3)))
        args = ["import", "criteo", day, "-o", out, f"--step={value}", "-q"]
    elif where == "sweep seed":
        path = folder / "s.toml"
        path.write_text(f'[sweep]\ndata = ["synthetic"]\npolicies = ["full"]\nbudgets = [0.5]\nout = "{out}"\n'
                        f"samples = 300\nrows = 50\nfields = 2\nbatch = 64\nseed = [{value}]\n")
        args = ["sweep", path, "-q"]
    elif where == "generate --seed":
        args = ["generate", out, f"--seed={value}", "-q"]
    else:
        args = ["train", "--samples", "300", "--rows", "50", "--fields", "2", "--batch", "64", "--page-bytes", "256",
                "--policy", "full", "-q", "--out", out, f"{where}={value}"]
    if where in ("--batch", "--eval-every", "--epochs") and value < 0:
        value = 2**64
        args[-1] = f"{where}={value}"
    assert_refused(*run_cli(*args), out)


@hostile(8)
@given(protocol=st.integers(2, 5), legacy=st.booleans(), garble=st.booleans())
def test_fbgemm_files_of_any_pickle_protocol_print_no_torch_noise(scratch, protocol, legacy, garble):
    """Class J: whatever the file's pickle protocol and format, the only lines on stderr are fiitedsim's (torch
    printed UserWarnings before the error line)."""
    import warnings
    torch = pytest.importorskip("torch")
    folder = fresh(scratch)
    pt = folder / "b.pt"
    lengths = [[1, 2], [0, 1]]
    torch.save((torch.tensor([3, 4, 5, 6]), torch.tensor([0, 1, 3, 3, 4]), torch.tensor(lengths)), pt,
               pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)
    if garble:
        pt.write_bytes(pt.read_bytes()[: len(pt.read_bytes()) // 2])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, out, err = run_cli("import", "fbgemm", pt, "-o", folder / "t.parquet", "-q")
    assert [str(w.message) for w in seen] == []
    if code:
        assert_refused(code, out, err, folder / "t.parquet")
    else:
        assert "warning" not in err and "Traceback" not in err, err


@hostile(6)
@given(limit_mib=st.integers(256, 4096), command=st.sampled_from(["replay", "inspect", "sweep", "report"]))
def test_any_small_address_space_limit_is_one_line(scratch, limit_mib, command):
    """Class F: under `ulimit -v` of 256 MiB to 4 GiB every command ends in one error line, exit 2, and leaves
    nothing behind (it aborted with thousands of allocator lines, or hung in the BLAS start-up)."""
    import os
    import resource
    import subprocess
    folder = fresh(scratch)
    trace = _write(folder / "trace.parquet", _columns())
    (folder / "s.toml").write_text(f'[sweep]\ntraces = ["{trace}"]\npolicies = ["full"]\nbudgets = [0.9]\n'
                                   f'out = "{folder / "sw"}"\n')
    args = {"replay": ["replay", trace, *REPLAY, "--out", folder / "o"], "inspect": ["inspect", trace, "-q"],
            "sweep": ["sweep", folder / "s.toml", "-q"], "report": ["report", folder, "-o", folder / "r.html"]}[command]
    before = sorted(os.listdir(folder))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mib * 2**20, limit_mib * 2**20))
    p = subprocess.run([sys.executable, "-m", "fiitedsim", *map(str, args)], capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("error: "), p.stderr[-1000:]
    assert sorted(os.listdir(folder)) == before


# --- round two: G1 (dense values past the trainer's float32), G2 (the label as a feature), G3 (no false claims
# about seeds), G4 (nested Parquet columns), H (damaged stored sweep points), I (time series and training curves
# out of range), data options the data does not read ---


@st.composite
def hostile_training_data(draw, folder: Path) -> tuple[str, list[str]]:
    """Training data `train` must refuse (issue 21): a dense value whose square overflows float32 (G1), the label
    also used as a feature (G2), a nested Parquet column (G4), an option the --data kind does not read."""
    kind = draw(st.sampled_from(["huge_dense", "leak", "nested", "unread_option"]))
    n = 40
    cols = {"y": [i % 2 for i in range(n)], "s": [f"v{i % 7}" for i in range(n)], "d": [i / 10 for i in range(n)]}
    use = ["--label", "y", "--sparse", "s", "--dense", "d"]
    if kind == "huge_dense":
        cols["d"][draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, 1])) * draw(
            st.floats(1.85e19, 3.4e38, allow_nan=False))
    elif kind == "leak":
        use = ["--label", "y", "--sparse", draw(st.sampled_from(["y", "s,y", "y,s"])), "--dense",
               draw(st.sampled_from(["d", "d,y", "y"]))]
        if "y" not in use[3].split(","):
            use[5] = "y"
    elif kind == "nested":
        name = draw(st.sampled_from(["y", "s", "d"]))
        nested = draw(st.sampled_from([pa.list_(pa.int64()), pa.large_list(pa.string()),
                                       pa.list_(pa.float64(), 1), pa.struct([("p", pa.int64())]),
                                       pa.map_(pa.string(), pa.int64())]))
        value = {"list": [1], "large_list": ["a"], "fixed_size_list": [1.0], "struct": {"p": 1},
                 "map": [("k", 1)]}[str(nested).split("<")[0]]
        table = {k: pa.array(v) for k, v in cols.items()}
        table[name] = pa.array([value] * n, nested)
        pq.write_table(pa.table(table), folder / "d.parquet")
        return f"parquet:{folder / 'd.parquet'}", use
    else:
        extra = draw(st.sampled_from([["--fields", "3"], ["--drift", "0.5"]]))
        use = use + extra
    if draw(st.booleans()):
        pq.write_table(pa.table(cols), folder / "d.parquet")
        return f"parquet:{folder / 'd.parquet'}", use
    _csv(folder, list(cols), [[str(cols[c][i]) for c in cols] for i in range(n)])
    return f"csv:{folder / 'd.csv'}", use


@hostile(40)
@given(data=st.data())
def test_hostile_training_data_round_two_is_refused(scratch, data):
    folder = fresh(scratch)
    spec, columns = data.draw(hostile_training_data(folder))
    out, report = folder / "o", folder / "r.html"
    assert_refused(*run_cli("train", "--data", spec, *columns, "--rows", "50", "--batch", "8", "--page-bytes", "256",
                            "--policy", "full", "--budget", "0.5", "-q", "--out", out, "--report", report),
                   out, report)


@hostile(20)
@given(option=st.sampled_from([["--label", "y"], ["--sparse", "a"], ["--dense", "x"]]),
       data=st.sampled_from(["synthetic", "movielens"]))
def test_column_options_with_data_that_has_no_columns_are_refused(scratch, option, data):
    out = fresh(scratch) / "o"
    assert_refused(*run_cli("train", "--data", data, "--samples", "300", *option, "-q", "--out", out), out)


@hostile(30)
@given(seeds=st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True), data=st.data())
def test_a_training_report_never_claims_one_seed_for_several(seeds, data):
    """G3: seeds whose evaluation split holds one class have no AUC; the report says so, and never that one
    seed was trained when several were."""
    import html
    import re

    import polars as pl
    from report_fixtures import train_outputs

    from fiitedsim import report as rp
    from fiitedsim.compare import NO_AUC

    without = data.draw(st.lists(st.sampled_from(seeds), unique=True))
    outputs = train_outputs(seeds=tuple(seeds))
    for stats in outputs.summary["policies"].values():
        for entry in stats["per_seed"]:
            entry["auc"] = None if entry["seed"] in without else entry["auc"]
        aucs = [e["auc"] for e in stats["per_seed"] if e["auc"] is not None]
        stats["auc"], stats["auc_std"] = (sum(aucs) / len(aucs) if aucs else None), None
    curve = outputs.curve.with_columns(pl.when(pl.col("seed").is_in(without)).then(None).otherwise(pl.col("auc"))
                                       .alias("auc"))
    page = rp.render_train_report(outputs.summary, curve)
    text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<(script|style)\b.*?</\1>", "", page, flags=re.S)))
    if len(seeds) > 1:
        assert "One seed" not in text and "one seed (" not in text
    if len(without) == len(seeds):
        assert NO_AUC in text and "Highest mean AUC" not in text and "Winner" not in text
    elif len(seeds) - len(without) == 1 and len(seeds) > 1:
        assert f"Only seed {[s for s in seeds if s not in without][0]} has an AUC for every run" in text


#: Values a time-series or curve column must not hold, by the column's kind (docs/formats.md).
_BAD_BY_KIND = {"share": [float("nan"), -0.01, 1.01, 7.5, float("inf")], "number": [float("nan"), -1.0, -float("inf")],
                "int": [-1, -2**62], "auc": [-0.5, 1.5, float("inf")]}


def _series_kind(name: str) -> str:
    if name in ("fragmentation", "index_load_factor", "chunk_hit_rate", "dim_hit_rate"):
        return "share"
    if name in ("theta", "train_loss", "logloss"):
        return "number"
    return "auc" if name == "auc" else "int"


def _damage_frame(data, path: Path, columns: list[str]) -> None:
    """One value of one of `columns` of the Parquet file at `path` out of its range, or the file's bytes broken."""
    import polars as pl

    how = data.draw(st.sampled_from(["value", "value", "garbage", "truncated"]))
    if how == "garbage":
        path.write_bytes(data.draw(st.sampled_from([b"", b"PAR1", b"PAR1" + b"\0" * 40 + b"PAR1"])))
        return
    if how == "truncated":
        good = path.read_bytes()
        path.write_bytes(good[:data.draw(st.integers(0, len(good) - 1))])
        return
    frame = pl.read_parquet(path)
    name = data.draw(st.sampled_from(columns))
    value = data.draw(st.sampled_from(_BAD_BY_KIND[_series_kind(name)]))
    row = data.draw(st.integers(0, frame.height - 1))
    column = frame[name].cast(pl.Float64) if isinstance(value, float) else frame[name]
    frame.with_columns(column.scatter(row, value).alias(name)).write_parquet(path)


@hostile(60)
@given(data=st.data())
def test_time_series_out_of_range_are_refused(scratch, results, data):
    """I: a replay folder's time series holding NaN, a share outside 0..1 or a negative count is refused."""
    import polars as pl

    folder = fresh(scratch) / "run"
    shutil.copytree(results, folder)
    target = data.draw(st.sampled_from(sorted((folder / "timeseries").iterdir())))
    columns = [c for c in pl.read_parquet(target).columns]
    _damage_frame(data, target, columns)
    out = folder.parent / "r.html"
    assert_refused(*run_cli("report", folder, "-o", out), out)


@hostile(40)
@given(data=st.data())
def test_training_curves_out_of_range_are_refused(scratch, data):
    """I: a training folder's curve.parquet out of its ranges (or unreadable) is refused."""
    from report_fixtures import train_outputs

    from fiitedsim.train.runner import CURVE_SCHEMA, write_outputs

    folder = fresh(scratch) / "t"
    write_outputs(folder, train_outputs(seeds=(0, 1)))
    _damage_frame(data, folder / "curve.parquet", [c for c in CURVE_SCHEMA if c not in ("key", "policy", "budget")])
    out = folder.parent / "r.html"
    assert_refused(*run_cli("report", folder, "-o", out), out)


@hostile(60)
@given(data=st.data())
def test_damaged_stored_sweep_points_are_not_stored(scratch, data):
    """H: a stored point whose Parquet file is damaged or out of range counts as not stored (a sweep computes it
    again; `report` of the folder says it is damaged) instead of failing every rerun."""
    import polars as pl
    from report_fixtures import stored_points

    from fiitedsim.sweep import POINTS_DIR
    from fiitedsim.sweep.results import _stored

    out = fresh(scratch)
    key = stored_points(out)[data.draw(st.sampled_from(["replay", "train"]))]
    target = out / POINTS_DIR / f"{key}.parquet"
    columns = [c for c in pl.read_parquet(target).columns if c not in ("key", "policy", "budget")]
    _damage_frame(data, target, columns)
    assert _stored(out, key) is None


@pytest.fixture(scope="module")
def training_csv(scratch) -> Path:
    """400 samples, two sparse columns and one dense one, for runs that get far enough to train."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, a, b, x = rng.integers(0, 2, 400), rng.integers(0, 20, 400), rng.integers(0, 30, 400), rng.normal(size=400)
    rows = [[str(y[i]), str(a[i]), str(b[i]), repr(float(x[i]))] for i in range(400)]
    folder = scratch / "training-csv"
    folder.mkdir()
    return _csv(folder, ["y", "a", "b", "x"], rows)


@hostile(12)
@given(option=st.sampled_from(["--lr-emb", "--lr-mlp"]), exponent=st.sampled_from([12, 20, 30, 38]),
       batch=st.sampled_from(["8", "32", "256"]))
def test_a_model_that_overflows_float32_is_one_error_line(scratch, training_csv, option, exponent, batch):
    """G1: whatever overflows the float32 model (here a learning rate far too large) ends as one error line, not
    raw RuntimeWarnings (from the trainer's matmul threads too) and a one-class model with exit 0."""
    import warnings

    out = fresh(scratch) / "o"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = run_cli("train", "--data", f"csv:{training_csv}", "--label", "y", "--sparse", "a,b", "--dense", "x",
                         "--batch", batch, "--policy", "full,fiited", "--budget", "0.5",
                         "--page-bytes", "256", option, f"1e{exponent}", "-q", "--out", out)
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in seen]
    if result[0] == 0:   # a rate that did not overflow trains a model of finite numbers
        summary = json.loads((out / "train_summary.json").read_text())
        assert all(math.isfinite(run["logloss"]) for run in summary["policies"].values())
        return
    assert_refused(*result, out)
    assert "float32" in result[2]


# --- round two: A (outputs onto special files or inputs), E (closed stdout), K (interrupts), L (bit rot) ---
# (and inputs that are folders or FIFOs). Issue 21.


def _special_file(path: Path, kind: str) -> None:
    """Make `path` a FIFO, a device node (root only; else a FIFO), a socket, or a link to a FIFO."""
    import os
    import socket
    import stat
    if kind == "device" and os.geteuid() == 0:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 7))  # /dev/full's numbers
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
    elif kind == "link":
        _special_file(path.with_name(path.name + ".fifo"), "fifo")
        path.symlink_to(path.name + ".fifo")
    else:
        os.mkfifo(path)


def _state(path: Path):
    """What is at `path` (not following a link): its kind and, for a regular file, its bytes."""
    import os
    import stat
    st_ = os.lstat(path)
    if stat.S_ISLNK(st_.st_mode):
        return "link", os.readlink(path), _state(path.resolve()) if path.exists() else None
    return stat.S_IFMT(st_.st_mode), path.read_bytes() if stat.S_ISREG(st_.st_mode) else None


@pytest.fixture(scope="module")
def own_inputs(scratch) -> dict:
    """A trace, a tables file, a replay results folder and a training CSV that commands read."""
    folder = scratch / "own-inputs"
    folder.mkdir()
    trace = _write(folder / "trace.parquet", _columns())
    tables = folder / "tables.json"
    tables.write_text(json.dumps(TABLES))
    run = folder / "run"
    assert run_cli("replay", trace, *REPLAY, "--out", run)[0] == 0
    data = folder / "clicks.csv"
    data.write_text("y,a,b\n" + "".join(f"{i % 2},{i % 7},{i % 5}\n" for i in range(300)))
    return {"trace": trace, "tables": tables, "run": run, "data": data}


TRAIN_SMALL = ["--label", "y", "--sparse", "a,b", "--policy", "full", "--budget", "0.5", "--samples", "300",
               "--dim", "8", "--chunk", "4", "-q"]
GENERATE_SMALL = ["--table-count", "1", "--rows", "50", "--steps", "2", "--batch", "8", "-q"]


@st.composite
def output_onto_what_it_must_not_replace(draw, folder: Path, inputs: dict) -> tuple[list, Path]:
    """A command whose output is a special file, or one of the command's own inputs (by any spelling), or
    another of its outputs: (the command line, the path that must stay as it was)."""
    import os
    kind = draw(st.sampled_from(["special", "input", "other output"]))
    if kind == "special":
        target = folder / draw(st.sampled_from(["out.parquet", "r.html"]))
        _special_file(target, draw(st.sampled_from(["fifo", "device", "socket", "link"])))
        command = draw(st.sampled_from([
            ["replay", inputs["trace"], *REPLAY, "--report", target],
            ["generate", target, *GENERATE_SMALL],
            ["import", "parquet", inputs["trace"], "-o", target.with_suffix(".parquet")],
            ["report", inputs["run"], "-o", target],
            ["train", "--data", f"csv:{inputs['data']}", *TRAIN_SMALL, "--emit-trace", target],
        ]))
        if command[0] == "import" and not target.with_suffix(".parquet").exists():
            target.rename(target.with_suffix(".parquet"))
            target = target.with_suffix(".parquet")
        return command, target
    # a copy of the inputs, so that a failure cannot spoil the other examples
    copies = {name: folder / path.name for name, path in inputs.items()}
    for name, path in inputs.items():
        (shutil.copytree if path.is_dir() else shutil.copy)(path, copies[name])
    if kind == "input":
        victim, command = draw(st.sampled_from([
            ("trace", lambda t: ["replay", copies["trace"], *REPLAY, "--report", t]),
            ("tables", lambda t: ["replay", copies["trace"], *REPLAY, "--tables", copies["tables"], "--report", t]),
            ("data", lambda t: ["train", "--data", f"csv:{copies['data']}", *TRAIN_SMALL, "--report", t]),
            ("data", lambda t: ["train", "--data", f"csv:{copies['data']}", *TRAIN_SMALL, "--emit-trace", t]),
            ("data", lambda t: ["train", "--data", f"csv:{copies['data']}", *TRAIN_SMALL, "--out", folder / "o",
                                "--emit-importance", t]),
            ("summary", lambda t: ["report", copies["run"], "-o", t]),
        ]))
        target = copies["run"] / "summary.json" if victim == "summary" else copies[victim]
        spelling = draw(st.sampled_from(["same", "link", "hard link", "dotdot"]))
        if spelling == "link":
            (folder / "alias").symlink_to(target)
            name = folder / "alias"
        elif spelling == "hard link":
            os.link(target, folder / "alias")
            name = folder / "alias"
        elif spelling == "dotdot":
            name = target.parent / ".." / target.parent.name / target.name
        else:
            name = target
        return command(name), target
    run = folder / "o"  # two outputs of one command on one file
    command, target = draw(st.sampled_from([
        (["replay", copies["trace"], *REPLAY, "--out", run, "--report", run / "summary.json"], run / "summary.json"),
        (["replay", copies["trace"], *REPLAY, "--out", run, "--report", run / "timeseries"], run),
        (["train", "--data", f"csv:{copies['data']}", *TRAIN_SMALL, "--emit-trace", folder / "e.parquet",
          "--emit-importance", folder / "e.parquet"], folder / "e.parquet"),
        (["train", "--data", f"csv:{copies['data']}", *TRAIN_SMALL, "--out", run, "--report", run / "curve.parquet"],
         run),
    ]))
    return command, target


@hostile(30)
@given(data=st.data())
def test_outputs_never_replace_special_files_or_the_commands_inputs(scratch, own_inputs, data):
    """Class A: refused before any work, and whatever was there stays as it was."""
    folder = fresh(scratch)
    command, target = data.draw(output_onto_what_it_must_not_replace(folder, own_inputs))
    before = _state(target) if target.exists() or target.is_symlink() else None
    code, out, err = run_cli(*command)
    assert_refused(code, out, err)
    assert (_state(target) if target.exists() or target.is_symlink() else None) == before


@hostile(30)
@given(data=st.data())
def test_an_input_that_is_not_a_file_is_named_for_what_it_is(scratch, own_inputs, data):
    """A folder or a FIFO given as an input file was "not found"; now the message says what it is."""
    folder = fresh(scratch)
    kind = data.draw(st.sampled_from(["folder", "fifo", "socket", "link"]))
    path = folder / "input"
    if kind == "folder":
        path.mkdir()
    else:
        _special_file(path, kind)
    command = data.draw(st.sampled_from([
        ["replay", own_inputs["trace"], *REPLAY, "--tables", path],
        ["replay", own_inputs["trace"], *REPLAY, "--importance", path],
        ["inspect", own_inputs["trace"], "--tables", path, "-q"],
        ["train", "--data", f"csv:{path}", *TRAIN_SMALL],
        ["train", "--data", f"parquet:{path}", *TRAIN_SMALL],
        ["sweep", path],
        ["import", "csv", path, "-o", folder / "t.parquet"],
        *([["replay", path, *REPLAY], ["report", path]] if kind != "folder" else []),
    ]))
    code, out, err = run_cli(*command)
    assert_refused(code, out, err)
    what = {"folder": "a folder", "socket": "a socket"}.get(kind, "a FIFO (named pipe)")
    assert f"is {what}" in err and "not found" not in err, err


def _fiitedsim(args, **kw):
    """`python -m fiitedsim ARGS` in a child process (closed streams and signals need a process of their own)."""
    import subprocess
    return subprocess.Popen([sys.executable, "-m", "fiitedsim", *map(str, args)], stderr=subprocess.PIPE,
                            text=True, **kw)


@hostile(8)
@given(data=st.data())
def test_a_closed_or_broken_standard_output(scratch, own_inputs, data):
    """Class E: `>&-` raised AttributeError (exit 1) after --out was written; `inspect | head -1` exited 1 with
    nothing said. Now: a closed stdout is one error line naming what was written (exit 2), a reader that went
    away ends the run quietly with 141 (a writer killed by SIGPIPE), and the outputs are whole."""
    import os
    import subprocess
    folder = fresh(scratch)
    out = folder / "o"
    command = data.draw(st.sampled_from([
        ["replay", own_inputs["trace"], *REPLAY, "--out", out],
        ["replay", own_inputs["trace"], *REPLAY, "--out", out, "--json"],
        ["inspect", own_inputs["trace"]],
        ["inspect", own_inputs["trace"], "--json"],
    ]))
    how = data.draw(st.sampled_from(["closed", "reader gone"]))
    if how == "closed":
        child = _fiitedsim(command, preexec_fn=lambda: os.close(1))
    else:
        child = _fiitedsim(command, stdout=subprocess.PIPE)
        child.stdout.close()  # the reader is gone before the first line
    err = child.stderr.read()
    code = child.wait()
    assert "Traceback" not in err and "Exception" not in err, err
    if "--out" in command:
        assert (out / "summary.json").is_file() and (out / "timeseries").is_dir()
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    if how == "closed":
        assert code == 2, (code, err)
        assert err.count("\n") == 1 and err.startswith("error: cannot write to standard output: it is closed"), err
        assert (f"it is closed; written: {out}" in err) == ("--out" in command), err
    else:
        assert code == 141 and err == "", (code, err)


K_HOOKS = {  # where a signal is sent: (module, function), before or after the call
    "replay": [("fiitedsim.replay", "replay_runs"), ("fiitedsim.replay", "write_results"),
               ("fiitedsim.report", "write_report"), ("fiitedsim.atomic", "_link_tree")],
    "train": [("fiitedsim.train.runner", "run_all"), ("fiitedsim.train.runner", "write_outputs"),
              ("fiitedsim.report", "write_train_report")],
}
K_SCRIPT = """
import importlib, os, signal, sys
module = importlib.import_module({module!r})
real = getattr(module, {function!r})
def hooked(*args, **kw):
    if {before!r}:
        os.kill(os.getpid(), signal.{signal})
    result = real(*args, **kw)
    if not {before!r}:
        os.kill(os.getpid(), signal.{signal})
    return result
setattr(module, {function!r}, hooked)
sys.argv = ["fiitedsim", *{args!r}]
from fiitedsim import cli
cli.main()
"""


@hostile(10)
@given(data=st.data())
def test_an_interrupt_leaves_all_outputs_or_none_or_says_which(scratch, own_inputs, data):
    """Class K: SIGINT or SIGTERM during `replay TRACE --out X --report Y` left X without Y (and SIGTERM left
    temporaries). Now a signal while the outputs are written is held until all are; one before leaves none; the
    `aborted:` line names what was written, and no temporary is left."""
    import subprocess
    folder = fresh(scratch)
    outputs = {"--out": folder / "X", "--report": folder / "Y.html"}
    kind = data.draw(st.sampled_from(sorted(K_HOOKS)))
    if kind == "replay":
        args = ["replay", own_inputs["trace"], *REPLAY]
    else:
        outputs["--emit-trace"] = folder / "E.parquet"
        args = ["train", "--data", f"csv:{own_inputs['data']}", *TRAIN_SMALL]
    args = [str(a) for a in args] + [str(a) for pair in outputs.items() for a in pair]
    module, function = data.draw(st.sampled_from(K_HOOKS[kind]))
    sig = data.draw(st.sampled_from(["SIGINT", "SIGTERM"]))
    before = data.draw(st.booleans())
    script = K_SCRIPT.format(module=module, function=function, before=before, signal=sig, args=args)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert "Traceback" not in child.stderr, child.stderr
    written = [name for name, path in outputs.items() if path.exists()]
    assert not [p for p in folder.rglob(".*")], list(folder.rglob(".*"))
    if child.returncode == 0:  # the hook's signal came after the last output: nothing to interrupt
        assert len(written) == len(outputs)
        return
    assert child.returncode == 128 + {"SIGINT": 2, "SIGTERM": 15}[sig], (child.returncode, child.stderr)
    last = child.stderr.strip().splitlines()[-1]
    assert last.startswith("aborted: interrupted by " + sig), child.stderr
    if written and len(written) < len(outputs):
        assert all(outputs[name].name in last for name in written), (written, last)
    if not written:
        assert "nothing was written" in last, last
    if kind == "replay":
        assert len(written) in (0, len(outputs)), written  # replay's two appear together


@pytest.fixture(scope="module")
def rotting(scratch) -> dict:
    """Files fiitedsim wrote (a generated trace, a replay's time series) and what reading them gives."""
    folder = scratch / "rot"
    folder.mkdir()
    trace = folder / "g.parquet"
    assert run_cli("generate", trace, "--table-count", "2", "--rows", "300", "--steps", "12", "--batch", "32",
                   "--dim", "16", "--chunk", "4", "-q")[0] == 0
    code, stats, _ = run_cli("inspect", trace, "--json", "-q")
    assert code == 0
    run = folder / "run"
    assert run_cli("replay", trace, *REPLAY, "--out", run)[0] == 0
    assert run_cli("report", run, "-o", folder / "r.html")[0] == 0
    return {"trace": trace, "stats": json.loads(stats), "run": run, "html": (folder / "r.html").read_bytes()}


@hostile(40)
@given(data=st.data())
def test_bit_rot_is_one_error_line_or_changes_nothing(scratch, rotting, data):
    """Class L: 35 of 40 copies of a trace with 1-3 flipped bits passed `inspect` with changed statistics. Now
    every page carries a checksum that is verified on read (and the table list, stored twice, is compared)."""
    folder = fresh(scratch)
    which = data.draw(st.sampled_from(["trace", "series"]))
    if which == "trace":
        damaged = folder / "g.parquet"
        original = rotting["trace"]
    else:
        shutil.copytree(rotting["run"], folder / "run")
        damaged = sorted((folder / "run" / "timeseries").iterdir())[data.draw(st.integers(0, 3))]
        original = rotting["run"] / "timeseries" / damaged.name
    raw = bytearray(original.read_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    damaged.write_bytes(bytes(raw))
    if which == "trace":
        code, out, err = run_cli("inspect", damaged, "--json", "-q")
        if code == 0:
            stats = json.loads(out)
            assert {**stats, "path": None} == {**rotting["stats"], "path": None}, "changed statistics, exit 0"
            return
    else:
        code, out, err = run_cli("report", folder / "run", "-o", folder / "r.html")
        if code == 0:
            assert (folder / "r.html").read_bytes() == rotting["html"], "a changed report, exit 0"
            return
    assert_refused(code, out, err)


def test_a_trace_of_another_writer_without_page_checksums_still_reads(scratch):
    folder = fresh(scratch)
    trace = _write(folder / "t.parquet", _columns())  # pyarrow's defaults: no page checksums
    code, out, err = run_cli("inspect", trace, "--json", "-q")
    assert code == 0 and err == "", err
    assert json.loads(out)["lookups"] == len(STEP)
