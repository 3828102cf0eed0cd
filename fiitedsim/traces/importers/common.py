"""What every importer shares: table specs, the atomic and validated write, progress and the report."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ...atomic import atomic_path, check_writable, refuse_inputs
from ...config import DEFAULT_CHUNK, DEFAULT_DIM, DEFAULT_DTYPE_BYTES, TableSpec, load_tables_file
from ...errors import InputError, require_file
from ..source import TraceSource
from ..writer import TraceWriter

#: progress(done, total) in the importer's unit (bytes of input, or lookups)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Layout:
    """D, C and bytes per value given to every imported table (the input formats carry none of them)."""

    dim: int = DEFAULT_DIM
    chunk: int = DEFAULT_CHUNK
    dtype_bytes: int = DEFAULT_DTYPE_BYTES

    def table(self, name: str, rows: int) -> TableSpec:
        return TableSpec(name, rows=rows, dim=self.dim, chunk=self.chunk, dtype_bytes=self.dtype_bytes)


@dataclass
class ImportReport:
    output: Path
    lookups: int
    first_step: int | None
    last_step: int | None
    tables: list[TableSpec]

    def lines(self) -> list[str]:
        steps = "no steps" if self.first_step is None else f"steps {self.first_step}..{self.last_step}"
        rows = sum(t.rows for t in self.tables)
        return [f"wrote {self.output}: {self.lookups:,} lookups, {steps}, {len(self.tables)} table(s) ({rows:,} rows)"]


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def tables_from_file(path, count: int, what: str) -> list[TableSpec]:
    """A --tables FILE that must describe exactly `count` tables."""
    tables = load_tables_file(path)
    if len(tables) != count:
        raise InputError(f"--tables {path} lists {len(tables)} tables but {what} has {count}")
    return tables


def check_rows_fit(tables: list[TableSpec], max_row: np.ndarray, source) -> None:
    """Every row seen (max_row[t], -1 when none) lies inside its table."""
    for t, spec in enumerate(tables):
        if max_row[t] >= spec.rows:
            raise InputError(f"{source}: table {spec.name!r} has row {int(max_row[t])} but only {spec.rows} rows; "
                             "raise --rows or fix the --tables file")


def write_trace(output, tables: list[TableSpec], chunks: Iterable[tuple], with_grad: bool = False,
                validate_as=None) -> ImportReport:
    """Write `chunks` of (step, table, row[, grad]) to `output` all-or-nothing.

    With `validate_as` (the input's name), the finished file is read back
    through `TraceSource`, the replay's own validation, before it is renamed
    into place; its record numbers are the input's, so errors name the input.
    """
    output = Path(output)
    first = last = None
    with atomic_path(output) as tmp:
        with TraceWriter(tmp, tables, with_grad=with_grad) as writer:
            for chunk in chunks:
                step = chunk[0]
                if len(step) == 0:
                    continue
                first = int(step[0]) if first is None else first
                last = int(step[-1])
                writer.write(*chunk)
        if writer.lookups == 0:
            raise InputError("the input has no lookups; nothing to import")
        if validate_as is not None:
            try:
                for _ in TraceSource(tmp, warn=lambda m: None).batches():
                    pass
            except InputError as exc:
                raise InputError(str(exc).replace(str(tmp), str(validate_as))) from None
        return ImportReport(output, writer.lookups, first, last, tables)


def check_output(output, inputs) -> Path:
    """The output must be a .parquet file name and must not be an input (`inputs`: (option, path) pairs)."""
    output = Path(output)
    if output.suffix != ".parquet":
        raise InputError(f"-o {output}: give a .parquet file name for the trace")
    refuse_inputs([("-o", output)], inputs)
    if output.is_dir():
        raise InputError(f"-o {output} is a folder; give a .parquet file name (e.g. {output}/part-0.parquet)")
    check_writable(output)
    return output


def check_input(path, what: str) -> Path:
    return require_file(path, what)


def arrow_error(path, exc: BaseException, what: str) -> InputError:
    """A pyarrow parse error as one line naming the file (long row dumps are cut)."""
    message = one_line(exc)
    message = re.sub(r"(.{300}).+", r"\1 ...", message)
    return InputError(f"{path}: {what}: {message}")
