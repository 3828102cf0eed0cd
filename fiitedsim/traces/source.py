"""Read access traces and importance logs (DESIGN.md 1.2-1.3) as validated, step-ordered batches.

Everything a replay consumes passes through `TraceSource.batches()`, so this is
the one place where user files are checked. Checks are vectorised with numpy
per Parquet batch and every failure is an `InputError` whose message is one
line naming the file and, for bad data, the 0-based record number (the row
of the Parquet file), its step and the offending value.

A trace may be one Parquet file or several "parts" (a folder of `*.parquet`
files or a glob pattern, see `trace_parts`): parts are streamed one after the
other in natural name order and behave exactly like their concatenation, so a
trace larger than memory or disk quota can be written and replayed piecewise.

Nothing here needs the whole trace in memory: files are streamed with
`ParquetFile.iter_batches`, one row group at a time. `batches()` holds back
what may still continue in the next Parquet batch, so that the consumer can
merge each batch's lookups with its importance records by step without
looking ahead (docs/semantics.md, "Records and their order"): by default the
lookups of the last step (whole steps per batch), with `whole_steps=False`
only the importance records of that step, which keeps memory at one Parquet
batch even when a single step does not fit in memory.
"""
from __future__ import annotations

import glob
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import parquet
from ..atomic import atomic_path
from ..config import MAX_TABLES, TableSpec, load_tables_file, parse_tables_json, tables_from_json
from ..errors import (
    EmptyImportanceLog,
    GradNormIgnored,
    InputError,
    TablesInferred,
    file_kind,
    refuse_duplicate_columns,
    require_file,
)
from ..parsing import TooDeep, loads_json
from ..paths import arrow_file
from .checks import first_bad_norm, first_bad_value, rows_in_bounds, steps_in_order
from .readahead import read_ahead
from .writer import IMPORTANCE_SCHEMA, LOOKUP_COLUMNS, TABLES_KEY, unpack_grad

TRACE_COLUMNS = LOOKUP_COLUMNS
IMPORTANCE_COLUMNS = ("step", "table", "row", "chunk", "importance")
_INT64_MAX = np.iinfo(np.int64).max


def print_to_stderr(message: str) -> None:
    """Default `warn` callback: warnings go to stderr so they never mix with machine-readable stdout."""
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class RecordBatch:
    """A slice of the merged record stream: lookups plus the importance records that go with them.

    Merge rule (docs/semantics.md): lookups of step s come before importance
    records of step s. `TraceSource.batches()` guarantees that applying this
    rule batch by batch gives the global order.
    """

    step: np.ndarray   # int64 [n] lookups
    table: np.ndarray  # int32 [n] index into the table list
    row: np.ndarray    # int64 [n]
    grad: np.ndarray | None  # float32 [n, K_max], zero-padded past K(table); None without grad_norm
    imp_step: np.ndarray   # int64 [m] importance-log records (empty when there is no log)
    imp_table: np.ndarray  # int32 [m]
    imp_row: np.ndarray    # int64 [m]
    imp_chunk: np.ndarray  # int64 [m]
    imp_value: np.ndarray  # float32 [m]

    def __post_init__(self):
        # Read-only views throughout: arrays decoded zero-copy from Arrow are read-only and joined ones are
        # not, and Numba compiles a kernel once per signature, so a mix would compile every kernel twice.
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.flags.writeable:
                view = value.view()
                view.flags.writeable = False
                setattr(self, name, view)

    @property
    def num_lookups(self) -> int:
        return len(self.step)

    @property
    def num_importance(self) -> int:
        return len(self.imp_step)


# ---------------------------------------------------------------------------
# Small helpers shared by the trace and the importance log


def _one_line(exc: BaseException) -> str:
    """pyarrow messages can span lines; the CLI prints errors on one line."""
    return " ".join(str(exc).split())


def _open_parquet(path: Path, what: str) -> pq.ParquetFile:
    """Open a Parquet file or explain in one line why it cannot be read."""
    require_file(path, what, "give the path of one Parquet file")
    try:
        return parquet.open_file(arrow_file(path))
    except parquet.READ_ERRORS as exc:
        raise InputError(f"{path}: not a readable Parquet file (corrupt, truncated or another format): "
                         f"{_one_line(exc)}") from None


_GLOB_CHARS = re.compile(r"[*?[]")


def natural_key(path: Path) -> tuple:
    """Sort key comparing digit runs as numbers: part-2 before part-10 (plain string order puts it after)."""
    text = str(path)
    return tuple((0, int(piece), piece) if piece.isdigit() else (1, 0, piece)
                 for piece in re.split(r"(\d+)", text)), text


def trace_parts(path) -> list[Path]:
    """The Parquet files a trace argument names: the file itself, every `*.parquet` in a folder, or a glob's matches.

    Parts are ordered by `natural_key` of their path (numbers compare as
    numbers, so part-2 comes before part-10); files whose name starts with "."
    (hidden, or an unfinished atomic write) are skipped.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        parts = [p for p in path.iterdir() if p.suffix == ".parquet" and p.is_file() and not p.name.startswith(".")]
        if not parts:
            raise InputError(f"trace {path} is not a file, and as a folder of parts it holds no *.parquet files")
        return sorted(parts, key=natural_key)
    if _GLOB_CHARS.search(str(path)):
        parts = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file() and not Path(p).name.startswith(".")]
        if not parts:
            raise InputError(f"trace file not found, nor any file matching it as a glob pattern: {path}")
        return sorted(parts, key=natural_key)
    if path.exists():
        raise InputError(f"trace file {path} is {file_kind(path)}, not a regular file; give a Parquet file, a folder "
                         "of parts or a glob")
    raise InputError(f"trace file not found: {path}")


def _stream(path: Path, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Stream `columns` in batches; pyarrow errors raised mid-file (bad pages) become InputError."""
    try:
        with arrow_file(path) as f, parquet.open_file(f) as pf:
            # one row group at a time: iter_batches over the whole file keeps memory that grows with
            # the number of row groups read (measured 7x on a 10x longer trace), per group it is flat
            for group in range(pf.num_row_groups):
                # one thread per file: the caller validates on another (read_ahead in `_lookups`), and on two
                # cores pyarrow's column threads only competed with it (measured, benchmarks/README.md)
                for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, row_groups=[group],
                                             use_threads=False):
                    if batch.num_rows:
                        yield batch
    except parquet.READ_ERRORS as exc:
        raise InputError(f"{path}: corrupt or truncated Parquet data: {_one_line(exc)}") from None


def _is_string(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_string(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_float_list(t: pa.DataType) -> bool:
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    return is_list and pa.types.is_floating(t.value_type)


def _is_packed(t: pa.DataType) -> bool:
    """Packed gradient norms (what `TraceWriter` writes): fixed-size binary of 4 bytes per float32 norm."""
    return pa.types.is_fixed_size_binary(t) and t.byte_width > 0 and t.byte_width % 4 == 0


def _is_grad(t: pa.DataType) -> bool:
    return _is_float_list(t) or _is_packed(t)


def _check_schema(path: Path, schema: pa.Schema, what: str, required: tuple[str, ...],
                  types: dict[str, tuple[Callable[[pa.DataType], bool], str]]) -> None:
    """Columns present, each once, and of usable types, checked from the footer before reading any data."""
    refuse_duplicate_columns(path, schema.names)
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"{what} needs columns {', '.join(required)}")
    for name, (ok, expected) in types.items():
        if name in schema.names and not ok(schema.field(name).type):
            raise InputError(f"{path}: column {name!r} has type {schema.field(name).type}; expected {expected}")


def _naming(source: str, build: Callable[[], list[TableSpec]]) -> list[TableSpec]:
    """Run `build`, making sure a bad table spec's message says which file it came from."""
    try:
        return build()
    except InputError as exc:
        if source in str(exc):
            raise
        raise InputError(f"{source}: {exc}") from None


def _kind(t: pa.DataType) -> str:
    return "name" if _is_string(t) else "index"


def _columns_text(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def _tables_meta(schema: pa.Schema):
    """The table metadata of a part, parsed when it is JSON so that formatting differences do not matter."""
    raw = (schema.metadata or {}).get(TABLES_KEY)
    try:
        return None if raw is None else loads_json(raw.decode("utf-8"))
    except ValueError:  # not UTF-8, not JSON, nested too deeply
        return raw


_TABLE_TYPE = (lambda t: pa.types.is_integer(t) or _is_string(t), "an integer table index or a string table name")
_INT_TYPE = (pa.types.is_integer, "an integer type")


class _Where:
    """Which file and which record a batch starts at, to word error messages."""

    def __init__(self, path: Path, offset: int):
        self.path, self.offset = path, offset

    def fail(self, i: int, step: np.ndarray | None, message: str):
        at = f"record {self.offset + int(i)}"
        if step is not None:
            at += f" (step {int(step[i])})"
        raise InputError(f"{self.path}: {at}: {message}")


def _no_nulls(col: pa.Array, name: str, where: _Where) -> None:
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        where.fail(i, None, f"column {name!r} is null; every record needs a value there")


def _ints(col: pa.Array, name: str, where: _Where) -> np.ndarray:
    """An integer column as int64 (narrower types are widened; uint64 must fit)."""
    _no_nulls(col, name, where)
    values = col.to_numpy(zero_copy_only=False)
    if values.dtype == np.uint64:
        big = np.flatnonzero(values > _INT64_MAX)
        if big.size:
            where.fail(big[0], None, f"{name} {int(values[big[0]])} does not fit a signed 64-bit integer")
    return values.astype(np.int64, copy=False)


def _int32(col: pa.Array, table: np.ndarray) -> np.ndarray:
    """Validated table indices as int32: the column itself, without a copy, when it is an int32 column."""
    return col.to_numpy() if col.type == pa.int32() else table.astype(np.int32)


def _floats(values: pa.Array) -> np.ndarray:
    """Float column as float32; float64 overflow becomes inf, which the caller then rejects."""
    with np.errstate(over="ignore"):
        return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)


def _value_text(values: pa.Array, i: int, as_float32: float) -> str:
    """How a message names the value at `i` that `_floats` made `as_float32`: the file's own value when the cast
    made it inf (1e300 read as float32 is inf, and "importance inf" misnamed it)."""
    original = values[i].as_py()
    if isinstance(original, float) and math.isfinite(original) and not math.isfinite(as_float32):
        return f"{original:g} (beyond 3.4e+38, the largest float32, which these values are read as)"
    return f"{as_float32}"


def _check_steps(step: np.ndarray, previous: int | None, where: _Where, fix: str) -> int:
    """Steps >= 0 and non-decreasing, also across batch boundaries; return the last step."""
    if steps_in_order(step, previous):
        return int(step[-1])
    neg = np.flatnonzero(step < 0)
    if neg.size:
        where.fail(neg[0], step, f"step {int(step[neg[0]])} is negative; steps must be >= 0")
    before = np.concatenate([[step[0] if previous is None else previous], step[:-1]])
    down = np.flatnonzero(step < before)
    if down.size:
        i = down[0]
        where.fail(i, step, f"step {int(step[i])} comes after step {int(before[i])}; "
                            f"steps must be non-decreasing ({fix})")
    return int(step[-1])


def _join(parts: list[tuple]) -> tuple:
    """Concatenate a list of column tuples once (appending one by one would copy quadratically)."""
    if len(parts) == 1:
        return parts[0]
    return tuple(None if cols[0] is None else np.concatenate(cols) for cols in zip(*parts))


def _split(parts: tuple, i: int) -> tuple[tuple, tuple]:
    return (tuple(None if x is None else x[:i] for x in parts),
            tuple(None if x is None else x[i:] for x in parts))


# ---------------------------------------------------------------------------


class TraceSource:
    """A validated access trace (and optional importance log) that can be streamed any number of times.

    The constructor reads only Parquet footers, except when the table list has
    to be inferred (one pass over the `table` and `row` columns). Data errors
    surface while iterating `batches()`.
    """

    def __init__(self, path, tables_file=None, importance=None, batch_rows: int = 1 << 20,
                 warn: Callable[[str], None] = print_to_stderr):
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be positive, got {batch_rows}")
        self.path = Path(path)
        self.batch_rows = int(batch_rows)
        self.warn = warn

        #: the Parquet files of the trace, in replay order (one for a plain file)
        self.parts = trace_parts(self.path)
        schema, self.num_lookups = self._check_parts()
        if self.num_lookups == 0:
            raise InputError(f"{self.path}: the trace has no lookups; a replay needs at least one")
        self._table_kind = _kind(schema.field("table").type)

        self.importance_path = None if importance is None else Path(importance)
        self.has_importance = self.importance_path is not None
        self.num_importance = 0
        if self.has_importance:
            self._open_importance()
        #: whether the trace has gradient norms (inspect reads them even when a log is given)
        self.trace_has_grad = trace_has_grad = "grad_norm" in schema.names
        self._packed = trace_has_grad and _is_packed(schema.field("grad_norm").type)
        self.has_grad = trace_has_grad and not self.has_importance
        if trace_has_grad and self.has_importance:
            warn(GradNormIgnored(f"{self.path} has grad_norm and an importance log {self.importance_path} was "
                                 "given too: the log wins and grad_norm is ignored"))

        self.set_tables(self._resolve_tables(schema, tables_file))

    def set_tables(self, tables: list[TableSpec]) -> None:
        """Use `tables` (e.g. with --dim/--chunk overrides applied); records are validated against them."""
        self.tables = list(tables)
        self._names = {t.name: i for i, t in enumerate(self.tables)}
        self._rows = np.array([t.rows for t in self.tables], dtype=np.int64)
        self._k = np.array([t.chunks for t in self.tables], dtype=np.int64)
        self.k_max = int(self._k.max())

    # -- setup ---------------------------------------------------------------

    def _check_parts(self) -> tuple[pa.Schema, int]:
        """Footers of every part: readable, a trace schema, and the same columns and table metadata in all.

        Returns the first part's schema (the table metadata comes from it) and
        the total number of lookups, without reading any data.
        """
        first, total = None, 0
        for part in self.parts:
            with _open_parquet(part, "trace file") as pf:
                schema = pf.schema_arrow
                total += pf.metadata.num_rows
                if not parquet.metadata_intact(pf, TABLES_KEY):
                    raise InputError(f"{part}: the two copies of its '{TABLES_KEY.decode()}' metadata differ: the "
                                     "file is damaged; write or copy it again")
            _check_schema(part, schema, "a trace", TRACE_COLUMNS, {
                "step": _INT_TYPE, "row": _INT_TYPE, "table": _TABLE_TYPE,
                "grad_norm": (_is_grad, "a list of floats (one L2 norm per chunk), or fixed-size binary "
                                        "of 4 bytes per chunk (packed float32)")})
            if first is None:
                first = schema
                continue
            if not schema.remove_metadata().equals(first.remove_metadata()):
                raise InputError(f"{part}: its columns ({_columns_text(schema)}) differ from those of the first "
                                 f"part {self.parts[0]} ({_columns_text(first)}); every part of a trace needs the "
                                 "same schema")
            if _tables_meta(schema) != _tables_meta(first):
                raise InputError(f"{part}: its '{TABLES_KEY.decode()}' metadata differs from that of the first "
                                 f"part {self.parts[0]}; every part of a trace must carry the same table list "
                                 "(or none)")
        return first, total

    def _open_importance(self) -> None:
        path = self.importance_path
        with _open_parquet(path, "importance log") as pf:
            schema = pf.schema_arrow
            self.num_importance = pf.metadata.num_rows
        _check_schema(path, schema, "an importance log", IMPORTANCE_COLUMNS, {
            "step": _INT_TYPE, "row": _INT_TYPE, "chunk": _INT_TYPE, "table": _TABLE_TYPE,
            "importance": (pa.types.is_floating, "a float type")})
        kind = _kind(schema.field("table").type)
        if kind != self._table_kind:
            raise InputError(f"{path}: the log names tables by {kind} but the trace {self.path} by "
                             f"{self._table_kind}; use the same kind of table column in both")
        if self.num_importance == 0:
            self.warn(EmptyImportanceLog(f"importance log {path} is empty: no importance will be added"))

    def _resolve_tables(self, schema: pa.Schema, tables_file) -> list[TableSpec]:
        """--tables file, else the trace's metadata, else inference (DESIGN 1.1)."""
        meta = (schema.metadata or {}).get(TABLES_KEY)
        key = TABLES_KEY.decode()
        if tables_file is not None:
            tables = _naming(str(tables_file), lambda: load_tables_file(tables_file))
            written_for = self._metadata_table_count(meta)
            if written_for is not None and written_for != len(tables):
                raise InputError(f"{tables_file} lists {len(tables)} tables but the trace {self.path} was "
                                 f"written for {written_for} (its '{key}' metadata); fix the --tables file")
            self._tables_source = f"--tables file {tables_file}"
            return tables
        if meta is not None:
            try:
                data = _naming(f"{self.parts[0]}: Parquet metadata '{key}'",
                               lambda: parse_tables_json(meta.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError, TooDeep) as exc:
                raise InputError(f"{self.parts[0]}: Parquet metadata '{key}' is not valid JSON "
                                 f"({_one_line(exc)}); pass --tables FILE instead") from None
            self._tables_source = f"the trace's '{key}' metadata"
            source = f"{self.parts[0]} metadata '{key}'"
            return _naming(source, lambda: tables_from_json(data, source))
        self._tables_source = "the inferred table list"
        return self._infer_tables()

    @staticmethod
    def _metadata_table_count(meta: bytes | None) -> int | None:
        """Table count in the metadata, or None when absent or unreadable (the --tables file replaces it)."""
        try:
            data = loads_json(meta.decode("utf-8")) if meta is not None else None
        except ValueError:  # not UTF-8, not JSON, nested too deeply
            return None
        if isinstance(data, dict):
            data = data.get("tables")
        return len(data) if isinstance(data, list) else None

    def _infer_tables(self) -> list[TableSpec]:
        """rows = max(row)+1 per table over the trace and the log, default D, C and dtype, with a warning."""
        names: dict[str, int] = {}  # grows in order of first appearance when tables are named
        max_row = np.full(0, -1, dtype=np.int64)
        files = list(self.parts) + ([self.importance_path] if self.has_importance else [])
        for path in files:
            offset = 0
            for batch in _stream(path, ["table", "row"], self.batch_rows):
                where = _Where(path, offset)
                table = self._table_index(batch.column("table"), where, names, grow=True)
                bad = np.flatnonzero((table < 0) | (table >= MAX_TABLES))
                if bad.size:
                    where.fail(bad[0], None, f"table index {int(table[bad[0]])} is outside 0..{MAX_TABLES - 1}")
                row = _ints(batch.column("row"), "row", where)
                neg = np.flatnonzero(row < 0)
                if neg.size:
                    where.fail(neg[0], None, f"row {int(row[neg[0]])} is negative; rows must be >= 0")
                need = int(table.max()) + 1
                if need > len(max_row):
                    max_row = np.concatenate([max_row, np.full(need - len(max_row), -1, dtype=np.int64)])
                np.maximum.at(max_row, table, row)
                offset += batch.num_rows
        by_index = {i: name for name, i in names.items()}
        tables = [TableSpec(by_index.get(i, f"t{i}"), rows=max(int(m) + 1, 1)) for i, m in enumerate(max_row)]
        self.warn(TablesInferred(f"{self.path}: no table list in the trace metadata and no --tables file; "
                                 f"inferred {len(tables)} table(s) with rows = max(row)+1 and D=64, C=8, fp32; "
                                 "pass --tables FILE to give the real sizes"))
        return tables

    # -- per-batch column conversion ------------------------------------------

    def _table_index(self, col: pa.Array, where: _Where, names: dict[str, int], grow: bool) -> np.ndarray:
        """Table column as int64 indices; names are looked up once per distinct name, not per row."""
        if pa.types.is_integer(col.type):
            return _ints(col, "table", where)
        _no_nulls(col, "table", where)
        encoded = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
        dictionary = encoded.dictionary.to_pylist()
        indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if grow:
            used, first = np.unique(indices, return_index=True)
            for d in used[np.argsort(first)]:
                names.setdefault(dictionary[d], len(names))
        lookup = np.array([names.get(name, -1) for name in dictionary], dtype=np.int64)
        table = lookup[indices]
        unknown = np.flatnonzero(table < 0)
        if unknown.size:
            known = list(names)
            shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
            where.fail(unknown[0], None, f"unknown table name {dictionary[indices[unknown[0]]]!r}; "
                                         f"{self._tables_source} has: {shown}")
        return table

    def _tables_rows(self, col: pa.Array, row_col: pa.Array, step: np.ndarray,
                     where: _Where) -> tuple[np.ndarray, np.ndarray]:
        """Table indices in range and rows within their table, checked against the table list."""
        table = self._table_index(col, where, self._names, grow=False)
        if not row_col.null_count and row_col.type != pa.uint64():  # the checks of _ints cannot fail: order kept
            row = _ints(row_col, "row", where)
            if rows_in_bounds(table, row, self._rows):
                return table, row
        n = len(self.tables)
        bad = np.flatnonzero((table < 0) | (table >= n))
        if bad.size:
            where.fail(bad[0], step, f"table index {int(table[bad[0]])} is out of range: "
                                     f"{self._tables_source} has {n} table(s), indices 0..{n - 1}")
        row = _ints(row_col, "row", where)
        bad = np.flatnonzero((row < 0) | (row >= self._rows[table]))
        if bad.size:
            i = bad[0]
            t = self.tables[table[i]]
            where.fail(i, step, f"row {int(row[i])} is outside 0..{t.rows - 1} of table {t.name!r}; "
                                f"fix the trace or give the table's real size with --tables")
        return table, row

    def _grad(self, col: pa.Array, table: np.ndarray, step: np.ndarray, where: _Where) -> np.ndarray:
        """The batch's gradient norms, packed or as lists, as a zero-padded float32 [n, K_max] matrix."""
        return (self._grad_packed if self._packed else self._grad_list)(col, table, step, where)

    def _wrong_length(self, lengths: np.ndarray, want: np.ndarray, table: np.ndarray, step: np.ndarray,
                      where: _Where) -> None:
        """Refuse the first record whose count of gradient norms is not the K of its table."""
        bad = np.flatnonzero(lengths != want)
        if bad.size:
            i = bad[0]
            where.fail(i, step, self._length_text(int(lengths[i]), int(want[i]), table[i]))

    def _length_text(self, has: int, k: int, t: int) -> str:
        return f"grad_norm has {has} values but table {self.tables[t].name!r} has K={k} chunks (dim/chunk)"

    def _grad_list(self, col: pa.Array, table: np.ndarray, step: np.ndarray, where: _Where) -> np.ndarray:
        """A grad_norm list column: when every list holds K_max values (offsets regular), the flat values are
        reshaped without a copy; else they are scattered into the zero-padded matrix."""
        _no_nulls(col, "grad_norm", where)
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
        want = self._k[table]
        self._wrong_length(lengths, want, table, step, where)
        flat = col.flatten()
        ends = np.cumsum(lengths)
        if flat.null_count:
            p = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0])
            where.fail(int(np.searchsorted(ends, p, side="right")), step, "grad_norm contains a null value")
        values = _floats(flat)
        p = first_bad_value(values)
        if p >= 0:
            where.fail(int(np.searchsorted(ends, p, side="right")), step, f"grad_norm value "
                       f"{_value_text(flat, p, values[p])} is not allowed; gradient norms must be finite and >= 0")
        n = len(table)
        if (lengths == self.k_max).all():
            return values.reshape(n, self.k_max)
        grad = np.zeros((n, self.k_max), dtype=np.float32)
        starts = ends - lengths
        record = np.repeat(np.arange(n), lengths)
        grad[record, np.arange(len(values)) - starts[record]] = values
        return grad

    def _grad_packed(self, col: pa.Array, table: np.ndarray, step: np.ndarray, where: _Where) -> np.ndarray:
        """Packed norms (fixed-size binary of J float32): the values are the matrix, without a copy when J is
        K_max. A record holds J values, of which those past the K of its table must be 0 (padding)."""
        _no_nulls(col, "grad_norm", where)
        n, j = len(col), col.type.byte_width // 4
        matrix = unpack_grad(col)
        if (self._k == j).all():  # every table has J chunks: no padding, no per-record K
            p = first_bad_value(matrix.reshape(-1))
            want = None
        else:
            want = self._k[table]
            if (want > j).any():
                self._wrong_length(np.full(n, j), want, table, step, where)
            p = first_bad_norm(matrix, want)
        if p >= 0:
            i, c = divmod(int(p), j)
            k = j if want is None else int(want[i])
            if c < k:
                where.fail(i, step, f"grad_norm value {matrix[i, c]} is not allowed; gradient norms must be "
                                    "finite and >= 0")
            has = int(np.flatnonzero(matrix[i])[-1]) + 1  # a value past K, where packing pads with 0
            where.fail(i, step, self._length_text(has, k, table[i]))
        if j == self.k_max:
            return matrix.astype(np.float32, copy=False)  # no copy on a little-endian machine
        grad = np.zeros((n, self.k_max), dtype=np.float32)
        width = min(j, self.k_max)
        grad[:, :width] = matrix[:, :width]
        return grad

    # -- streams ---------------------------------------------------------------

    def _lookups(self, with_grad: bool) -> Iterator[tuple]:
        """Validated lookups per Parquet batch: (step, table, row, grad)."""
        read_grad = self.has_grad and with_grad
        columns = list(TRACE_COLUMNS) + (["grad_norm"] if read_grad else [])
        last, last_part = None, None
        for part in self.parts:
            offset = 0
            for batch in read_ahead(_stream(part, columns, self.batch_rows), depth=1):  # decode the next meanwhile
                where = _Where(part, offset)
                step = _ints(batch.column("step"), "step", where)
                if offset == 0 and last_part is not None and step[0] < last:
                    where.fail(0, step, f"the part starts at step {int(step[0])} but the previous part "
                                        f"{last_part} ends at step {last}; parts are replayed in natural name "
                                        "order and their steps must be non-decreasing across parts")
                last = _check_steps(step, last, where, "sort the trace by step, keeping lookup order within a step")
                table, row = self._tables_rows(batch.column("table"), batch.column("row"), step, where)
                grad = self._grad(batch.column("grad_norm"), table, step, where) if read_grad else None
                yield step, _int32(batch.column("table"), table), row, grad
                offset += batch.num_rows
            if offset:
                last_part = part

    def _importance(self) -> Iterator[tuple]:
        """Validated importance records per Parquet batch: (step, table, row, chunk, value)."""
        path = self.importance_path
        offset, last = 0, None
        for batch in _stream(path, list(IMPORTANCE_COLUMNS), self.batch_rows):
            where = _Where(path, offset)
            step = _ints(batch.column("step"), "step", where)
            last = _check_steps(step, last, where, "sort the importance log by step")
            table, row = self._tables_rows(batch.column("table"), batch.column("row"), step, where)
            chunk = _ints(batch.column("chunk"), "chunk", where)
            k = self._k[table]
            bad = np.flatnonzero((chunk < 0) | (chunk >= k))
            if bad.size:
                i = bad[0]
                where.fail(i, step, f"chunk {int(chunk[i])} is outside 0..{int(k[i]) - 1} "
                                    f"of table {self.tables[table[i]].name!r}")
            value_col = batch.column("importance")
            _no_nulls(value_col, "importance", where)
            value = _floats(value_col)
            bad = np.flatnonzero(~np.isfinite(value) | (value < 0))
            if bad.size:
                where.fail(bad[0], step, f"importance {_value_text(value_col, int(bad[0]), value[bad[0]])} is not "
                                         "allowed; "
                                         "importance must be finite and >= 0")
            yield step, table.astype(np.int32), row, chunk, value
            offset += batch.num_rows

    def _empty_importance(self) -> tuple:
        return (np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int64),
                np.empty(0, np.int64), np.empty(0, np.float32))

    def batches(self, with_grad: bool = True, whole_steps: bool = True) -> Iterator[RecordBatch]:
        """Stream RecordBatches whose concatenation, merged batch by batch by step, is the record stream.

        `with_grad=False` skips decoding (and so validating) `grad_norm`, for
        consumers that do not use it; `grad` is then None.

        With `whole_steps` (the default), every batch but the last holds only
        records with step < X, where X is the step of the first lookup held
        back for the next batch: the tail of a Parquet batch sharing its final
        step is held back because more lookups of that step may follow, and
        importance records of step X must come after all of them. The last
        batch gets whatever remains, including importance records after the
        last lookup. Consumers that count per step (trace statistics) need this.
        A step that ends in the next Parquet batch is passed on as a batch of
        its own, so that only its lookups are copied (joined), not the batch's.

        With `whole_steps=False`, lookups are passed on as soon as they are
        decoded, so a step may continue in the next batch, and only importance
        records of a batch's last lookup step wait for the next batch. Merging
        batch by batch still gives the record stream, and memory stays at one
        Parquet batch even when one step has more lookups than fit in memory
        (one FBGEMM request file is one step); replay uses this.
        """
        importance = self._importance() if self.has_importance else iter(())
        imp_held = [self._empty_importance()]

        def importance_before(x: int) -> tuple:
            """Importance records of steps < x, leaving those of steps >= x held back."""
            while imp_held[-1][0].size == 0 or imp_held[-1][0][-1] < x:
                more = next(importance, None)
                if more is None:
                    break
                imp_held.append(more)
            records = _join(imp_held)
            out, rest = _split(records, int(np.searchsorted(records[0], x, side="left")))
            imp_held[:] = [rest]
            return out

        held: list[tuple] = []  # lookups of the last step seen, when whole_steps
        for part in self._lookups(with_grad):
            x = part[0][-1]
            if not whole_steps:
                yield self._batch(part, importance_before(x))
                continue
            if held and part[0][0] == x == held[-1][0][-1]:  # the part only continues the held step: no copy yet
                held.append(part)
                continue
            part, tail = _split(part, int(np.searchsorted(part[0], x, side="left")))
            if held:  # the held step ends in this part (its last step x is later): join only that step's lookups
                ending, part = _split(part, int(np.searchsorted(part[0], held[-1][0][-1], side="right")))
                lookups = _join(held + [ending])
                after = part[0][0] if len(part[0]) else x
                yield self._batch(lookups, importance_before(after))
            held = [tail]
            imp_out = importance_before(x)
            if len(part[0]) or len(imp_out[0]):
                yield self._batch(part, imp_out)
        rest = _join(imp_held + list(importance))
        lookups = _join(held) if held else None
        if lookups is not None or len(rest[0]):
            yield self._batch(lookups if lookups is not None else self._no_lookups(with_grad), rest)

    def _no_lookups(self, with_grad: bool) -> tuple:
        grad = np.zeros((0, self.k_max), np.float32) if self.has_grad and with_grad else None
        return np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int64), grad

    @staticmethod
    def _batch(lookups: tuple, imp: tuple) -> RecordBatch:
        step, table, row, grad = lookups
        grad = None if grad is None else np.ascontiguousarray(grad)
        return RecordBatch(step, table, row, grad, *imp)


def read_lookups(path, **kw) -> RecordBatch:
    """Read a whole trace (and log) into one RecordBatch: for tests and small traces only.

    This holds everything in memory, which `TraceSource.batches()` is designed
    to avoid; replays must stream instead. `kw` are TraceSource's arguments.
    """
    parts = list(TraceSource(path, **kw).batches())
    grads = [p.grad for p in parts]
    fields = ("step", "table", "row", "imp_step", "imp_table", "imp_row", "imp_chunk", "imp_value")
    joined = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
    return RecordBatch(grad=None if grads[0] is None else np.concatenate(grads), **joined)


def write_importance(path, step, table, row, chunk, value) -> None:
    """Write an importance log (DESIGN 1.3) all-or-nothing; records must already be sorted by step."""
    arrays = [np.asarray(step, np.int64), np.asarray(table, np.int32), np.asarray(row, np.int64),
              np.asarray(chunk, np.int16), np.asarray(value, np.float32)]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"importance columns differ in length: {[len(a) for a in arrays]}")
    table_ = pa.Table.from_arrays([pa.array(a) for a in arrays], schema=IMPORTANCE_SCHEMA)
    with atomic_path(path) as tmp, arrow_file(tmp, "wb") as f:
        pq.write_table(table_, f, compression="zstd", **parquet.WRITE)
