"""Import a CSV or Parquet file whose columns name the step, table and row of each lookup.

For traces recorded by another tool: `--step-col`, `--table-col` and
`--row-col` say which columns to use (any other columns are ignored), and
`--grad-col` (Parquet only: a list of floats per lookup) becomes `grad_norm`.
The table column holds integer indices (tables t0..t{max}) or names (tables
in order of first appearance). Without a tables file, a first pass finds the
tables and each table's rows as max(row)+1; a second pass writes. The input
is streamed in blocks both times and must already be sorted by step. The
written trace is read back through the replay's own validation before it
appears, so an import succeeds exactly when the replay would accept the data;
record numbers in errors are lines of data (CSV, after the header) or rows
(Parquet) of the input, counted from 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ... import parquet
from ...config import MAX_TABLES, load_tables_file
from ...errors import InputError, refuse_duplicate_columns, text_line
from ...paths import arrow_file
from .common import ImportReport, Layout, Progress, arrow_error, check_input, write_trace

BLOCK_BYTES = 4 << 20  # pyarrow reads blocks ahead; small blocks keep peak memory flat (~0.5 GB RSS, any input size)
BATCH_ROWS = 1 << 20


class _Input:
    """Streams the chosen columns of a CSV or Parquet file, with a progress position."""

    def __init__(self, fmt: str, path: Path, columns: dict[str, str]):
        self.fmt, self.path, self.columns = fmt, path, columns  # role -> column name
        names = list(columns.values())
        if len(set(names)) != len(names):
            raise InputError(f"the step, table, row (and grad) columns must be different, got {', '.join(names)}")
        if fmt == "parquet":
            try:
                with arrow_file(path) as f, parquet.open_file(f) as pf:
                    available = pf.schema_arrow.names
                    self.total = pf.metadata.num_rows
            except parquet.READ_ERRORS as exc:
                raise arrow_error(path, exc, "not a readable Parquet file (corrupt, truncated or another format)") \
                    from None
        else:
            if "grad" in columns:
                raise InputError("--grad-col needs Parquet input (CSV has no list columns)")
            try:
                with open(path, "rb") as f:
                    first = text_line(path, f.readline(1 << 20)).rstrip("\r\n")
            except OSError as exc:
                raise InputError(f"{path}: cannot read: {exc}") from None
            try:
                with open(path, "rb") as f:
                    available = pacsv.open_csv(f).schema.names if first else []
            except (pa.ArrowException, OSError) as exc:
                raise arrow_error(path, exc, "not readable as CSV") from None
            self.total = path.stat().st_size
        refuse_duplicate_columns(path, available, used=names)
        missing = [f"--{role}-col {name!r}" for role, name in columns.items() if name not in available]
        if missing:
            shown = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
            raise InputError(f"{path}: no column named by {', '.join(missing)}; the file has: {shown or 'no columns'}")

    def batches(self, progress: Progress | None) -> Iterator[dict[str, pa.Array]]:
        names = list(self.columns.values())
        try:
            if self.fmt == "parquet":
                done = 0
                with arrow_file(self.path) as f, parquet.open_file(f) as pf:
                    for group in range(pf.num_row_groups):
                        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=names, row_groups=[group]):
                            yield {role: batch.column(name) for role, name in self.columns.items()}
                            done += batch.num_rows
                            if progress:
                                progress(done, self.total)
            else:
                with open(self.path, "rb") as raw:
                    reader = pacsv.open_csv(raw, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
                                            convert_options=pacsv.ConvertOptions(include_columns=names))
                    for batch in reader:
                        yield {role: batch.column(name) for role, name in self.columns.items()}
                        if progress:
                            progress(min(raw.tell(), self.total), self.total)
        except parquet.READ_ERRORS as exc:
            raise arrow_error(self.path, exc, "corrupt or unreadable data") from None


def _check_type(path, role: str, name: str, col: pa.Array, ok, expected: str) -> None:
    if not ok(col.type):
        raise InputError(f"{path}: --{role}-col {name!r} has type {col.type}; expected {expected}")


def _table_ids(col: pa.Array, names: dict[str, int]) -> np.ndarray:
    """Integer table column as is; string names become indices in order of first appearance (`names` grows)."""
    if pa.types.is_integer(col.type):
        return col.to_numpy(zero_copy_only=False).astype(np.int64)
    encoded = pc.dictionary_encode(col)
    dictionary = encoded.dictionary.to_pylist()
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    used, first = np.unique(indices, return_index=True)
    for d in used[np.argsort(first)]:
        names.setdefault(dictionary[d], len(names))
    return np.array([names[name] for name in dictionary], np.int64)[indices]


def import_columns(fmt: str, path, output, step_col: str = "step", table_col: str = "table", row_col: str = "row",
                   grad_col: str | None = None, tables_file=None, layout: Layout = Layout(),
                   progress: Progress | None = None) -> ImportReport:
    """Convert `path` (fmt "csv" or "parquet") to a trace; see the module docstring."""
    if fmt not in ("csv", "parquet"):
        raise InputError(f"unknown format {fmt!r}: csv or parquet")
    path = check_input(path, f"{fmt} file")
    columns = {"step": step_col, "table": table_col, "row": row_col}
    if grad_col is not None:
        columns["grad"] = grad_col
    source = _Input(fmt, path, columns)

    def checked(cols: dict[str, pa.Array]) -> dict[str, pa.Array]:
        for role in ("step", "row"):
            _check_type(path, role, columns[role], cols[role], pa.types.is_integer, "integers")
        _check_type(path, "table", table_col, cols["table"],
                    lambda t: pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t),
                    "integer table indices or table names")
        for role, col in cols.items():
            if col.null_count:
                raise InputError(f"{path}: --{role}-col {columns[role]!r} has an empty value; every lookup needs one")
        return cols

    names: dict[str, int] = {}
    if tables_file is None:  # first pass: which tables, and how many rows each
        max_row = np.zeros(0, np.int64)
        for cols in source.batches(None):
            cols = checked(cols)
            table = _table_ids(cols["table"], names)
            row = cols["row"].to_numpy(zero_copy_only=False).astype(np.int64)
            if table.size == 0:
                continue
            if table.min() < 0 or table.max() >= MAX_TABLES:
                bad = table[(table < 0) | (table >= MAX_TABLES)][0]
                raise InputError(f"{path}: table index {int(bad)} is outside 0..{MAX_TABLES - 1}")
            need = int(table.max()) + 1
            if need > max_row.size:
                max_row = np.concatenate([max_row, np.full(need - max_row.size, -1, np.int64)])
            np.maximum.at(max_row, table, row)
        if max_row.size == 0:
            raise InputError(f"{path}: the input has no lookups; nothing to import")
        by_index = {i: name for name, i in names.items()}
        tables = [layout.table(str(by_index.get(i, f"t{i}")), max(int(m) + 1, 1)) for i, m in enumerate(max_row)]
    else:
        tables = None
    with_grad = grad_col is not None

    def chunks():
        known = {t.name: i for i, t in enumerate(tables)}
        for cols in source.batches(progress):
            cols = checked(cols)
            table_col_ = cols["table"]
            if pa.types.is_integer(table_col_.type):
                table = table_col_.to_numpy(zero_copy_only=False).astype(np.int64)
            else:
                dictionary = pc.dictionary_encode(table_col_)
                lookup = np.array([known.get(n, -1) for n in dictionary.dictionary.to_pylist()], np.int64)
                table = lookup[dictionary.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
                if (table < 0).any():
                    i = int(np.flatnonzero(table < 0)[0])
                    raise InputError(f"{path}: unknown table name {table_col_[i].as_py()!r}; the --tables file has: "
                                     f"{', '.join(list(known)[:10])}")
            grad = None
            if with_grad:
                grad = _grad_matrix(path, grad_col, cols["grad"], tables, table)
            yield (cols["step"].to_numpy(zero_copy_only=False).astype(np.int64),
                   np.clip(table, -1, np.iinfo(np.int32).max).astype(np.int32),
                   cols["row"].to_numpy(zero_copy_only=False).astype(np.int64), grad)

    if tables is None:
        tables = load_tables_file(tables_file)
    return write_trace(output, tables, chunks(), with_grad=with_grad, validate_as=path)


def _grad_matrix(path, name: str, col: pa.Array, tables, table: np.ndarray) -> np.ndarray:
    """A list<float> column as an (n, K) float32 matrix; every list must have K = D/C values of one K."""
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)) \
            or not pa.types.is_floating(col.type.value_type):
        raise InputError(f"{path}: --grad-col {name!r} has type {col.type}; expected a list of floats per lookup")
    ks = {t.chunks for t in tables}
    if len(ks) != 1:
        raise InputError("--grad-col needs every table to have the same K = D/C")
    k = ks.pop()
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != k)
    if bad.size:
        raise InputError(f"{path}: --grad-col {name!r}: a lookup has {int(lengths[bad[0]])} values, expected K={k}")
    return col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, k)
