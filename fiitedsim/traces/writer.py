"""Write access traces in the schema of DESIGN.md section 1.2.

Gradient norms are written packed: `grad_norm` is a fixed_size_binary(4 K_max) column holding each lookup's
K_max norms as little-endian float32, zero past the K of its table (docs/formats.md, "Gradient norms"), lz4
and no dictionary (byte-stream split would save 11% but polars cannot read it on fixed-size binary). A
`list<float32>` column needs repetition levels, whose decoding capped reading at about 5 M lookups/s whatever
the codec; the packed column decodes straight into the replay's [n, K_max] matrix (benchmarks/README.md,
"Decoding gradient norms", measured with bench_decode.py).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import parquet
from ..atomic import atomic_path
from ..config import TableSpec, tables_to_json
from ..paths import arrow_file

TABLES_KEY = b"fiitedsim.tables"
#: The importance log's columns (DESIGN.md 1.3); source.py reads against the same schema.
IMPORTANCE_SCHEMA = pa.schema([
    pa.field("step", pa.int64()), pa.field("table", pa.int32()), pa.field("row", pa.int64()),
    pa.field("chunk", pa.int16()), pa.field("importance", pa.float32()),
])


#: The columns of every lookup; `grad_norm` may follow.
LOOKUP_COLUMNS = ("step", "table", "row")
#: How packed gradient norms are stored: little-endian float32, K_max of them in one fixed-size binary value.
PACKED_FLOAT = "<f4"


def packed_grad_type(k_max: int) -> pa.DataType:
    """The type of a packed `grad_norm` column: one fixed-size binary value of K_max float32 per lookup."""
    return pa.binary(4 * k_max)


def trace_schema(tables: list[TableSpec], with_grad: bool) -> pa.Schema:
    fields = [pa.field("step", pa.int64()), pa.field("table", pa.int32()), pa.field("row", pa.int64())]
    if with_grad:
        fields.append(pa.field("grad_norm", packed_grad_type(max(t.chunks for t in tables))))
    return pa.schema(fields, metadata={TABLES_KEY: tables_to_json(tables).encode()})


#: ParquetWriter options of a trace (chosen by bench_decode.py): zstd with dictionaries for the integer columns;
#: lz4 and no dictionary for the gradient norms (byte-stream split, smaller, is unreadable to polars there).
TRACE_OPTIONS = {"compression": {**{name: "zstd" for name in LOOKUP_COLUMNS}, "grad_norm": "lz4"},
                 "use_dictionary": list(LOOKUP_COLUMNS)}


class _ParquetStream:
    """A Parquet file written one row group per `write`, appearing only when the `with` block succeeds."""

    schema: pa.Schema

    def __init__(self, path, compression: str = "zstd"):
        self.path, self.options = path, {"compression": compression}

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._sink = arrow_file(tmp, "wb")
            self._writer = pq.ParquetWriter(self._sink, self.schema, **self.options, **parquet.WRITE)
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            try:
                self._writer.close()
            finally:
                self._sink.close()
        except Exception as close_error:
            if exc_type is None:  # a failed close is the error to report; still remove the temporary file
                self._atomic.__exit__(type(close_error), close_error, close_error.__traceback__)
                raise
        return self._atomic.__exit__(exc_type, exc, tb)


class ImportanceWriter(_ParquetStream):
    """Stream an importance log (DESIGN.md 1.3): one record per (lookup, chunk), in step order."""

    schema = IMPORTANCE_SCHEMA

    def __init__(self, path, compression: str = "zstd"):
        super().__init__(path, compression)
        self.records = 0

    def write(self, step, table, row, grad) -> None:
        """Append every chunk of every lookup: `grad` (n, K) float32 becomes n * K records, chunk-minor."""
        grad = np.ascontiguousarray(grad, dtype=np.float32)
        n, k = grad.shape
        columns = [np.repeat(np.asarray(step, np.int64), k), np.repeat(np.asarray(table, np.int32), k),
                   np.repeat(np.asarray(row, np.int64), k), np.tile(np.arange(k, dtype=np.int16), n),
                   grad.reshape(-1)]
        self._writer.write_table(pa.Table.from_arrays([pa.array(c) for c in columns], schema=self.schema))
        self.records += n * k


class TraceWriter(_ParquetStream):
    """Stream lookups into a Parquet trace; the file appears only when the `with` block succeeds.

    Each `write` call becomes one row group, so callers write in batches of
    roughly a million lookups to keep memory flat.
    """

    def __init__(self, path, tables: list[TableSpec], with_grad: bool):
        super().__init__(path)
        self.tables, self.with_grad = tables, with_grad
        self.schema = trace_schema(tables, with_grad)
        self.options = TRACE_OPTIONS if with_grad else {"compression": "zstd", "use_dictionary": True}
        self.lookups = 0

    def write(self, step, table, row, grad=None) -> None:
        """Append lookups; `grad` is a float32 array of shape (n, K) when the trace has grad norms, K at most
        the tables' largest chunk count, and 0 past the K of each lookup's table."""
        columns = [pa.array(np.asarray(step, np.int64)), pa.array(np.asarray(table, np.int32)),
                   pa.array(np.asarray(row, np.int64))]
        if self.with_grad:
            columns.append(pack_grad(grad, self.schema.field("grad_norm").type.byte_width // 4))
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.lookups += len(columns[0])


def pack_grad(grad, k_max: int) -> pa.FixedSizeBinaryArray:
    """An (n, K) array of gradient norms as a packed `grad_norm` column, zero-padded to K_max, without a copy
    when K = K_max."""
    grad = np.asarray(grad, dtype=np.float32)
    n, k = grad.shape
    if k > k_max:
        raise ValueError(f"grad has {k} norms per lookup; the tables have at most {k_max} chunks")
    if k == k_max:
        packed = np.ascontiguousarray(grad, PACKED_FLOAT)
    else:
        packed = np.zeros((n, k_max), PACKED_FLOAT)
        packed[:, :k] = grad
    return pa.FixedSizeBinaryArray.from_buffers(packed_grad_type(k_max), n, [None, pa.py_buffer(packed)])


def unpack_grad(col: pa.FixedSizeBinaryArray) -> np.ndarray:
    """A packed `grad_norm` column (without nulls) as its read-only [n, J] float32 matrix, without a copy."""
    n, j = len(col), col.type.byte_width // 4
    return np.frombuffer(col.buffers()[1], PACKED_FLOAT, n * j, col.offset * j * 4).reshape(n, j)
