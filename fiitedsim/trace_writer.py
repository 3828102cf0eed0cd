"""Write access traces in the schema of DESIGN.md section 1.2."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import parquet
from .atomic import atomic_path
from .config import TableSpec, tables_to_json
from .paths import arrow_file

TABLES_KEY = b"fiitedsim.tables"
#: The importance log's columns (DESIGN.md 1.3); trace.py reads against the same schema.
IMPORTANCE_SCHEMA = pa.schema([
    pa.field("step", pa.int64()), pa.field("table", pa.int32()), pa.field("row", pa.int64()),
    pa.field("chunk", pa.int16()), pa.field("importance", pa.float32()),
])


def trace_schema(tables: list[TableSpec], with_grad: bool) -> pa.Schema:
    fields = [pa.field("step", pa.int64()), pa.field("table", pa.int32()), pa.field("row", pa.int64())]
    if with_grad:
        fields.append(pa.field("grad_norm", pa.list_(pa.float32())))
    return pa.schema(fields, metadata={TABLES_KEY: tables_to_json(tables).encode()})


class _ParquetStream:
    """A Parquet file written one row group per `write`, appearing only when the `with` block succeeds."""

    schema: pa.Schema

    def __init__(self, path, compression: str = "zstd"):
        self.path, self.compression = path, compression

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._sink = arrow_file(tmp, "wb")
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression=self.compression, **parquet.WRITE)
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

    def __init__(self, path, tables: list[TableSpec], with_grad: bool, compression: str = "zstd"):
        super().__init__(path, compression)
        self.tables, self.with_grad = tables, with_grad
        self.schema = trace_schema(tables, with_grad)
        self.lookups = 0

    def write(self, step, table, row, grad=None) -> None:
        """Append lookups; `grad` is a float32 array of shape (n, K) when the trace has grad norms."""
        columns = [pa.array(np.asarray(step, np.int64)), pa.array(np.asarray(table, np.int32)),
                   pa.array(np.asarray(row, np.int64))]
        if self.with_grad:
            grad = np.ascontiguousarray(grad, dtype=np.float32)
            n, k = grad.shape
            offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
            columns.append(pa.ListArray.from_arrays(offsets, pa.array(grad.reshape(-1))))
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.lookups += len(columns[0])
