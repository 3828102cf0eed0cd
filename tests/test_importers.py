"""Importers (fbgemm .pt, Criteo TSV/CSV, CSV/Parquet with named columns) and the categorical hash.

Expected traces are worked out by hand from the tiny inputs written here; the
hash is checked against an independent plain-Python FNV-1a / splitmix64
written from their published definitions and test vectors.
"""
from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli import fails_cleanly, run

from fiitedsim.config import TableSpec, tables_to_json
from fiitedsim.errors import InputError
from fiitedsim.traces.hashing import hash_rows, hash_value
from fiitedsim.traces.importers import criteo as criteo_mod
from fiitedsim.traces.importers.columns import import_columns
from fiitedsim.traces.importers.common import Layout
from fiitedsim.traces.importers.criteo import import_criteo
from fiitedsim.traces.source import read_lookups
from fiitedsim.traces.writer import TABLES_KEY

QUIET = {"warn": lambda m: None}
M64 = (1 << 64) - 1


# ---------------------------------------------------------------------------
# An independent oracle for the hash (fiitedsim/traces/hashing.py docstring)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def splitmix64_finaliser(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def oracle_row(value: str, field: int, rows: int) -> int:
    if value == "":
        return 0
    z = (fnv1a64(value.encode()) + (field + 1) * 0x9E3779B97F4A7C15) & M64
    return 1 + splitmix64_finaliser(z) % (rows - 1)


def test_oracle_matches_published_test_vectors():
    # FNV-1a 64 vectors from the FNV reference (isthe.com/chongo/tech/comp/fnv): "", "a", "foobar"
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8
    # splitmix64 seeded with 0: the first output is finaliser(0x9E3779B97F4A7C15) = 0xE220A8397B1DCDAF (Vigna)
    assert splitmix64_finaliser(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("value", ["68fd1e64", "05db9164", "a", "", "ü", "x" * 100])
@pytest.mark.parametrize("field", [0, 25])
@pytest.mark.parametrize("rows", [2, 1000, 1_000_000, (1 << 40) - 1])
def test_hash_matches_the_oracle(value, field, rows):
    assert hash_value(value, field, rows) == oracle_row(value, field, rows)


def test_hash_of_a_sliced_column_and_nulls():
    values = pa.array(["zz", "05db9164", None, "", "68fd1e64"]).slice(1)  # a non-zero Arrow offset
    got = hash_rows(values, 3, 1000).tolist()
    assert got == [oracle_row("05db9164", 3, 1000), 0, 0, oracle_row("68fd1e64", 3, 1000)]
    assert hash_value("05db9164", 0, 1000) != hash_value("05db9164", 1, 1000)  # per-field seed


def test_hash_needs_two_rows():
    with pytest.raises(InputError, match="at least 2"):
        hash_value("a", 0, 1)


# ---------------------------------------------------------------------------
# fbgemm


def write_pt(path: Path, indices, offsets, lengths, compress=False, legacy=False) -> Path:
    torch = pytest.importorskip("torch")
    data = (torch.tensor(indices, dtype=torch.int64), torch.tensor(offsets, dtype=torch.int64),
            torch.tensor(lengths, dtype=torch.int64))
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    if compress:
        path.write_bytes(gzip.compress(path.read_bytes()))
    return path


# T = 3 tables, B = 4 samples. lengths[t][b] lookups of table t in sample b:
LENGTHS = [[1, 0, 2, 1],   # table 0: 4 lookups
           [0, 0, 0, 0],   # table 1: none
           [3, 1, 1, 1]]   # table 2: 6 lookups
INDICES = [5, 7, 8, 2, 9, 9, 1, 4, 0, 6]
OFFSETS = [0, 1, 1, 3, 4, 4, 4, 4, 4, 7, 8, 9, 10]  # running sum of the flattened lengths, 13 = T*B+1 entries


@pytest.mark.slow  # torch writes the .pt files (its import alone takes seconds)
@pytest.mark.parametrize("compress, legacy", [(False, False), (True, False), (False, True)],
                         ids=["pt", "pt.gz", "legacy-format"])
def test_fbgemm_hand_example(tmp_path, compress, legacy):
    from fiitedsim.traces.importers.fbgemm import import_fbgemm
    pt = write_pt(tmp_path / "b.pt", INDICES, OFFSETS, LENGTHS, compress, legacy)
    report = import_fbgemm(pt, tmp_path / "out.parquet", step=7, layout=Layout(dim=16, chunk=4))
    got = read_lookups(tmp_path / "out.parquet", **QUIET)
    assert got.step.tolist() == [7] * 10
    assert got.table.tolist() == [0, 0, 0, 0, 2, 2, 2, 2, 2, 2]
    assert got.row.tolist() == INDICES
    # rows = max index + 1: table 0 max(5,7,8,2) = 8 -> 9; table 1 unused -> 1; table 2 max(9,9,1,4,0,6) -> 10
    meta = json.loads(pq.read_schema(tmp_path / "out.parquet").metadata[TABLES_KEY])
    assert meta == [{"name": "t0", "rows": 9, "dim": 16, "chunk": 4, "dtype_bytes": 4},
                    {"name": "t1", "rows": 1, "dim": 16, "chunk": 4, "dtype_bytes": 4},
                    {"name": "t2", "rows": 10, "dim": 16, "chunk": 4, "dtype_bytes": 4}]
    assert (report.lookups, report.first_step, report.last_step) == (10, 7, 7)


@pytest.mark.slow  # torch writes the .pt files (its import alone takes seconds)
def test_fbgemm_rows_and_tables_options(tmp_path):
    from fiitedsim.traces.importers.fbgemm import import_fbgemm
    pt = write_pt(tmp_path / "b.pt", INDICES, OFFSETS, LENGTHS)
    import_fbgemm(pt, tmp_path / "r.parquet", rows=100)
    assert [t["rows"] for t in json.loads(pq.read_schema(tmp_path / "r.parquet").metadata[TABLES_KEY])] == [100] * 3
    with pytest.raises(InputError, match="table 't2' has row 9 but only 9 rows"):
        import_fbgemm(pt, tmp_path / "small.parquet", rows=9)
    assert not (tmp_path / "small.parquet").exists()
    tables = tmp_path / "tables.json"
    tables.write_text(tables_to_json([TableSpec("x", 10), TableSpec("y", 10)]))
    with pytest.raises(InputError, match="lists 2 tables but .* has 3"):
        import_fbgemm(pt, tmp_path / "t.parquet", tables_file=tables)


@pytest.mark.slow  # torch writes the .pt files (its import alone takes seconds)
def test_fbgemm_parts_replay_as_one_trace(tmp_path):
    """Three batch files imported with --step 0, 1, 2 into one folder read back in step order."""
    from fiitedsim.traces.importers.fbgemm import import_fbgemm
    pt = write_pt(tmp_path / "b.pt", INDICES, OFFSETS, LENGTHS)
    for i in (2, 0, 1):
        import_fbgemm(pt, tmp_path / "meta" / f"part-{i}.parquet", step=i, rows=10)
    got = read_lookups(tmp_path / "meta", **QUIET)
    assert got.step.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert got.row.tolist() == INDICES * 3


def _bad_pt(kind: str, path: Path) -> None:
    torch = pytest.importorskip("torch")
    i64 = torch.int64
    good = (torch.tensor(INDICES, dtype=i64), torch.tensor(OFFSETS, dtype=i64), torch.tensor(LENGTHS, dtype=i64))
    if kind == "truncated":
        torch.save(good, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "not_pickle":
        path.write_text("indices,offsets,lengths\n1,2,3\n")
    elif kind == "two_tensors":
        torch.save(good[:2], path)
    elif kind == "dict":
        torch.save({"indices": good[0]}, path)
    elif kind == "float":
        torch.save((good[0].float(), good[1], good[2]), path)
    elif kind == "lengths_1d":
        torch.save((good[0], good[1], good[2].reshape(-1)), path)
    elif kind == "offsets_count":
        torch.save((good[0], good[1][:-1], good[2]), path)
    elif kind == "inconsistent":
        offsets = good[1].clone()
        offsets[2] = 2  # table 0, sample 1 now has 1 lookup but lengths says 0
        torch.save((good[0], offsets, good[2]), path)
    elif kind == "past_end":
        torch.save((good[0][:5], good[1], good[2]), path)
    elif kind == "negative":
        indices = good[0].clone()
        indices[3] = -1
        torch.save((indices, good[1], good[2]), path)


BAD_PT = [
    ("truncated", ["not a readable PyTorch .pt file"]),
    ("not_pickle", ["not a readable PyTorch .pt file"]),
    ("two_tensors", ["expected a tuple of 3 tensors", "tuple of 2"]),
    ("dict", ["expected a tuple of 3 tensors", "dict"]),
    ("float", ["indices has dtype torch.float32"]),
    ("lengths_1d", ["lengths has shape (12,)"]),
    ("offsets_count", ["offsets has 12 entries", "T*B+1 = 13"]),
    ("inconsistent", ["disagree at table 0, sample 1"]),
    ("past_end", ["indices has 5 entries"]),
    ("negative", ["indices[3] = -1 is negative"]),
]


@pytest.mark.slow  # torch writes the .pt files (its import alone takes seconds)
@pytest.mark.parametrize("kind, words", BAD_PT, ids=[k for k, _ in BAD_PT])
def test_fbgemm_bad_file_exits_2(monkeypatch, capsys, tmp_path, kind, words):
    _bad_pt(kind, tmp_path / "bad.pt")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "fbgemm", tmp_path / "bad.pt", "-o",
                                                  tmp_path / "out" / "t.parquet"], str(tmp_path / "bad.pt"), *words)


def test_fbgemm_without_torch(monkeypatch, tmp_path):
    from fiitedsim.traces.importers.fbgemm import import_fbgemm
    (tmp_path / "b.pt").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(InputError, match=r"needs PyTorch.*pip install 'fiitedsim\[fbgemm\]'"):
        import_fbgemm(tmp_path / "b.pt", tmp_path / "o.parquet")


@pytest.mark.slow  # torch writes the .pt files (its import alone takes seconds)
def test_fbgemm_cli(monkeypatch, capsys, tmp_path):
    pt = write_pt(tmp_path / "b.pt", INDICES, OFFSETS, LENGTHS)
    result = run(monkeypatch, capsys, "import", "fbgemm", pt, "-o", tmp_path / "t.parquet", "--step", "3", "-q")
    assert result.code == 0, result.err
    assert "10 lookups" in result.err
    assert read_lookups(tmp_path / "t.parquet", **QUIET).step.tolist() == [3] * 10


# ---------------------------------------------------------------------------
# criteo

# 5 samples, C1..C26 (only C1, C2 and C26 vary; "" is missing). Dense fields are never read.
CATS = [
    {0: "aa", 1: "b1", 25: "z"},
    {0: "aa", 1: "", 25: "z"},
    {0: "cc", 1: "b1", 25: ""},
    {0: "", 1: "b2", 25: "z"},
    {0: "aa", 1: "b1", 25: "y"},
]


def criteo_lines(sep: str) -> list[str]:
    lines = []
    for i, cats in enumerate(CATS):
        dense = [str(i), "", "3"] + ["1"] * 10
        cat = [cats.get(j, "c0ffee") for j in range(26)]
        lines.append(sep.join([str(i % 2)] + dense + cat))
    return lines


def write_tsv(path: Path) -> Path:
    path.write_text("\n".join(criteo_lines("\t")) + "\n")
    return path


def expected_criteo(batch: int, rows: int, first_step: int = 0):
    """Per step (consecutive `batch` samples), table-major: for table j, samples in order; rows by the oracle."""
    step, table, row = [], [], []
    for s0 in range(0, len(CATS), batch):
        block = CATS[s0:s0 + batch]
        for j in range(26):
            for cats in block:
                step.append(first_step + s0 // batch)
                table.append(j)
                row.append(oracle_row(cats.get(j, "c0ffee"), j, rows))
    return step, table, row


def test_criteo_tsv_hand_example(tmp_path):
    tsv = write_tsv(tmp_path / "day_0.tsv")
    report = import_criteo(tsv, tmp_path / "c.parquet", batch=2, rows=1000, step=10)
    got = read_lookups(tmp_path / "c.parquet", **QUIET)
    step, table, row = expected_criteo(2, 1000, 10)
    assert got.step.tolist() == step  # 5 samples in batches of 2: steps 10, 11 and a last step 12 of one sample
    assert got.table.tolist() == table
    assert got.row.tolist() == row
    assert step[:4] == [10, 10, 10, 10] and table[:4] == [0, 0, 1, 1] and row[3] == 0  # sample 1's C2 is missing
    assert report.lookups == 5 * 26 and (report.first_step, report.last_step) == (10, 12)
    meta = json.loads(pq.read_schema(tmp_path / "c.parquet").metadata[TABLES_KEY])
    assert [t["name"] for t in meta] == [f"C{i}" for i in range(1, 27)] and {t["rows"] for t in meta} == {1000}


def test_criteo_csv_with_header_and_gzip_give_the_same_trace(tmp_path):
    import_criteo(write_tsv(tmp_path / "d.tsv"), tmp_path / "tsv.parquet", batch=2, rows=1000)
    header = ",".join(["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)])
    (tmp_path / "d.csv").write_text(header + "\n" + "\n".join(criteo_lines(",")) + "\n")
    import_criteo(tmp_path / "d.csv", tmp_path / "csv.parquet", batch=2, rows=1000)
    (tmp_path / "d.tsv.gz").write_bytes(gzip.compress((tmp_path / "d.tsv").read_bytes()))
    import_criteo(tmp_path / "d.tsv.gz", tmp_path / "gz.parquet", batch=2, rows=1000)
    want = pq.read_table(tmp_path / "tsv.parquet")
    assert pq.read_table(tmp_path / "csv.parquet").equals(want)
    assert pq.read_table(tmp_path / "gz.parquet").equals(want)


def test_criteo_test_file_without_label(tmp_path):
    """Criteo's test files have no label column (39 fields); the first field may be empty."""
    import_criteo(write_tsv(tmp_path / "d.tsv"), tmp_path / "with.parquet", batch=2, rows=1000)
    lines = [line.split("\t", 1)[1] for line in criteo_lines("\t")]
    lines[0] = "\t" + lines[0].split("\t", 1)[1]  # I1 missing in the first sample
    (tmp_path / "test.tsv").write_text("\n".join(lines) + "\n")
    import_criteo(tmp_path / "test.tsv", tmp_path / "without.parquet", batch=2, rows=1000)
    assert pq.read_table(tmp_path / "without.parquet").equals(pq.read_table(tmp_path / "with.parquet"))


def test_criteo_steps_span_read_blocks(tmp_path, monkeypatch):
    """Blocks of a few lines cut steps anywhere; the samples of a cut step wait for the next block."""
    lines = criteo_lines("\t") * 40  # 200 samples
    (tmp_path / "d.tsv").write_text("\n".join(lines) + "\n")
    import_criteo(tmp_path / "d.tsv", tmp_path / "big.parquet", batch=7, rows=50)
    monkeypatch.setattr(criteo_mod, "BLOCK_BYTES", 500)  # about 3 lines per block
    import_criteo(tmp_path / "d.tsv", tmp_path / "small.parquet", batch=7, rows=50)
    assert pq.read_table(tmp_path / "small.parquet").equals(pq.read_table(tmp_path / "big.parquet"))
    got = read_lookups(tmp_path / "small.parquet", **QUIET)
    assert np.bincount(got.step).tolist() == [7 * 26] * 28 + [4 * 26]  # 200 = 28 * 7 + 4


def test_criteo_shared_sample(tmp_path, shared_data):
    path = shared_data / "criteo_sample.csv"
    import_criteo(path, tmp_path / "c.parquet", batch=64, rows=1_000_000)
    got = read_lookups(tmp_path / "c.parquet", **QUIET)
    with open(path, newline="") as f:
        samples = list(csv.DictReader(f))
    assert len(samples) == 200
    assert np.bincount(got.step).tolist() == [64 * 26] * 3 + [8 * 26]  # 200 = 3 * 64 + 8
    # lookup p of step s, table j is sample s*64 + p; check every lookup against the oracle
    want = []
    for s0 in range(0, 200, 64):
        block = samples[s0:s0 + 64]
        for j in range(26):
            want += [oracle_row(sample[f"C{j + 1}"], j, 1_000_000) for sample in block]
    assert got.row.tolist() == want
    assert int((got.row == 0).sum()) == sum(sample[f"C{j}"] == "" for sample in samples for j in range(1, 27)) > 0


BAD_CRITEO = {
    "empty": ("", ["the file is empty"]),
    "few_fields": ("1\t2\t3\n", ["first line has 3 tab-separated fields", "has 40", "or 39"]),
    "short_row": (None, ["not valid Criteo data", "Expected 40 columns, got 39"]),
}


@pytest.mark.parametrize("kind", list(BAD_CRITEO))
def test_criteo_bad_input_exits_2(monkeypatch, capsys, tmp_path, kind):
    text, words = BAD_CRITEO[kind]
    if text is None:
        lines = criteo_lines("\t")
        lines[3] = lines[3].rsplit("\t", 1)[0]
        text = "\n".join(lines) + "\n"
    (tmp_path / "d.tsv").write_text(text)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "criteo", tmp_path / "d.tsv", "-o",
                                                  tmp_path / "c.parquet"], str(tmp_path / "d.tsv"), *words)


@pytest.mark.parametrize("args, words", [
    (["--batch", "0"], ["--batch must be >= 1"]),
    (["--rows", "1"], ["--rows must be at least 2"]),
    (["--chunk", "5"], ["does not divide"]),
    (["-o", "{d}/c.txt"], ["give a .parquet file name"]),
], ids=["batch", "rows", "chunk", "suffix"])
def test_criteo_bad_options_exit_2(monkeypatch, capsys, tmp_path, args, words):
    write_tsv(tmp_path / "d.tsv")
    args = [a.format(d=tmp_path) for a in args]
    out = [] if "-o" in args else ["-o", tmp_path / "c.parquet"]
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "criteo", tmp_path / "d.tsv", *out, *args], *words)


def test_criteo_missing_input(monkeypatch, capsys, tmp_path):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "criteo", tmp_path / "nope.tsv", "-o",
                                                  tmp_path / "c.parquet"], "criteo file not found")


# ---------------------------------------------------------------------------
# csv / parquet with named columns


def test_csv_with_named_tables(tmp_path):
    (tmp_path / "l.csv").write_text("iter,feature,id,extra\n0,users,4,x\n0,items,2,y\n1,users,0,z\n2,ads,7,w\n")
    import_columns("csv", tmp_path / "l.csv", tmp_path / "t.parquet", step_col="iter", table_col="feature",
                   row_col="id", layout=Layout(dim=8, chunk=4))
    got = read_lookups(tmp_path / "t.parquet", **QUIET)
    # tables in order of first appearance: users 0, items 1, ads 2; rows = max(id)+1 per table: 5, 3, 8
    assert got.step.tolist() == [0, 0, 1, 2]
    assert got.table.tolist() == [0, 1, 0, 2]
    assert got.row.tolist() == [4, 2, 0, 7]
    meta = json.loads(pq.read_schema(tmp_path / "t.parquet").metadata[TABLES_KEY])
    assert [(t["name"], t["rows"], t["dim"], t["chunk"]) for t in meta] == [("users", 5, 8, 4), ("items", 3, 8, 4),
                                                                            ("ads", 8, 8, 4)]


def test_parquet_with_integer_tables_and_grad(tmp_path):
    pq.write_table(pa.table({"s": pa.array([0, 1, 1], pa.int32()), "t": pa.array([1, 0, 1], pa.int16()),
                             "r": pa.array([3, 9, 0], pa.int64()),
                             "g": pa.array([[1, 2], [3, 4], [5, 6]], pa.list_(pa.float64()))}), tmp_path / "in.parquet")
    import_columns("parquet", tmp_path / "in.parquet", tmp_path / "t.parquet", step_col="s", table_col="t",
                   row_col="r", grad_col="g", layout=Layout(dim=8, chunk=4))
    got = read_lookups(tmp_path / "t.parquet", **QUIET)
    assert (got.step.tolist(), got.table.tolist(), got.row.tolist()) == ([0, 1, 1], [1, 0, 1], [3, 9, 0])
    assert got.grad.tolist() == [[1, 2], [3, 4], [5, 6]]
    meta = json.loads(pq.read_schema(tmp_path / "t.parquet").metadata[TABLES_KEY])
    assert [(t["name"], t["rows"]) for t in meta] == [("t0", 10), ("t1", 4)]


def test_columns_with_tables_file(tmp_path):
    (tmp_path / "l.csv").write_text("step,table,row\n0,items,4\n1,users,99\n")
    tables = tmp_path / "tables.json"
    tables.write_text(tables_to_json([TableSpec("users", 100), TableSpec("items", 10)]))
    import_columns("csv", tmp_path / "l.csv", tmp_path / "t.parquet", tables_file=tables)
    got = read_lookups(tmp_path / "t.parquet", **QUIET)
    assert got.table.tolist() == [1, 0] and got.row.tolist() == [4, 99]


BAD_COLUMNS = {
    "unsorted": ("step,table,row\n0,0,1\n2,0,1\n1,0,1\n", [], ["record 2 (step 1)", "non-decreasing"]),
    "missing_col": ("step,table,row\n0,0,1\n", ["--row-col", "id"], ["no column named by --row-col 'id'",
                                                                   "step, table, row"]),
    "negative_row": ("step,table,row\n0,0,1\n0,0,-3\n", [], ["record 1", "row -3"]),
    "empty_value": ("step,table,row\n0,0,1\n0,,3\n", [], ["--table-col 'table' has an empty value"]),
    "text_step": ("step,table,row\n0,0,1\nx,0,3\n", [], ["--step-col 'step' has type string"]),
    "no_rows": ("step,table,row\n", [], ["no lookups"]),
    "grad_csv": ("step,table,row\n0,0,1\n", ["--grad-col", "g"], ["No such option"]),
}


@pytest.mark.parametrize("kind", list(BAD_COLUMNS))
def test_csv_bad_input_exits_2(monkeypatch, capsys, tmp_path, kind):
    text, args, words = BAD_COLUMNS[kind]
    (tmp_path / "l.csv").write_text(text)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "csv", tmp_path / "l.csv", "-o", tmp_path / "t.parquet",
                                                  *args], *words)


def test_parquet_bad_grad_length_exits_2(monkeypatch, capsys, tmp_path):
    pq.write_table(pa.table({"step": [0, 1], "table": [0, 0], "row": [1, 2], "g": [[1.0] * 8, [1.0] * 7]}),
                   tmp_path / "in.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "parquet", tmp_path / "in.parquet", "-o",
                                                  tmp_path / "t.parquet", "--grad-col", "g"],
                  str(tmp_path / "in.parquet"), "a lookup has 7 values, expected K=8")


def test_parquet_not_parquet_exits_2(monkeypatch, capsys, tmp_path):
    (tmp_path / "in.parquet").write_text("step,table,row\n")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "parquet", tmp_path / "in.parquet", "-o",
                                                  tmp_path / "t.parquet"], "not a readable Parquet file")


def test_import_help_lists_formats(monkeypatch, capsys):
    result = run(monkeypatch, capsys, "import", "--help")
    assert result.code == 0
    for fmt in ("fbgemm", "criteo", "csv", "parquet"):
        assert fmt in result.out


def test_output_onto_the_input_is_refused(monkeypatch, capsys, tmp_path):
    pq.write_table(pa.table({"step": [0], "table": [0], "row": [1]}), tmp_path / "in.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "parquet", tmp_path / "in.parquet", "-o",
                                                  tmp_path / "in.parquet"], "would replace the input")


@pytest.mark.slow  # torch writes the .pt files (its import alone takes seconds)
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_fbgemm_pickle_protocol_4_is_one_line_without_torch_warnings(monkeypatch, capsys, tmp_path, legacy):
    """Issue 21, class J: torch printed two UserWarning lines ("Detected pickle protocol 4") before the error."""
    import warnings
    torch = pytest.importorskip("torch")
    data = tuple(torch.tensor(x, dtype=torch.int64) for x in (INDICES, OFFSETS, LENGTHS))
    torch.save(data, tmp_path / "p4.pt", pickle_protocol=4, _use_new_zipfile_serialization=not legacy)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        line = fails_cleanly(monkeypatch, capsys, tmp_path, ["import", "fbgemm", tmp_path / "p4.pt", "-o",
                                                             tmp_path / "t.parquet"], "not a readable PyTorch .pt file")
    assert [str(w.message) for w in seen] == []
    assert "weights_only` set to `False`" not in line
