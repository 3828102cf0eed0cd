"""Write access traces in the schema of DESIGN.md section 1.2."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path
from .config import TableSpec, tables_to_json

TABLES_KEY = b"fiitedsim.tables"


def trace_schema(tables: list[TableSpec], with_grad: bool) -> pa.Schema:
    fields = [pa.field("step", pa.int64()), pa.field("table", pa.int32()), pa.field("row", pa.int64())]
    if with_grad:
        fields.append(pa.field("grad_norm", pa.list_(pa.float32())))
    return pa.schema(fields, metadata={TABLES_KEY: tables_to_json(tables).encode()})


class TraceWriter:
    """Stream lookups into a Parquet trace; the file appears only when the `with` block succeeds.

    Each `write` call becomes one row group, so callers write in batches of
    roughly a million lookups to keep memory flat.
    """

    def __init__(self, path, tables: list[TableSpec], with_grad: bool, compression: str = "zstd"):
        self.path, self.tables, self.with_grad = path, tables, with_grad
        self.schema = trace_schema(tables, with_grad)
        self.compression = compression
        self.lookups = 0

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(tmp, self.schema, compression=self.compression)
        return self

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

    def __exit__(self, exc_type, exc, tb):
        try:
            self._writer.close()
        except Exception as close_error:
            if exc_type is None:  # a failed close is the error to report; still remove the temporary file
                self._atomic.__exit__(type(close_error), close_error, close_error.__traceback__)
                raise
        return self._atomic.__exit__(exc_type, exc, tb)
