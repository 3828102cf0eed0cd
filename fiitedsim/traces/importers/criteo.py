"""Import Criteo display-advertising data (the 1TB click logs' day files, or Kaggle's train.txt).

Each line is one sample: label, 13 integer (dense) features, 26 categorical
features as hex strings, tab-separated, no header (test files lack the label:
39 fields). The CSV form with a header
line (`label,I1,...,I13,C1,...,C26`, as in DeepCTR's criteo_sample) is read
too: a tab in the first line means TSV, a first field that is not an integer
means a header. Only the 26 categorical columns (the last 26) are read.

Every `batch` consecutive samples form one training step, starting at
`step` (the last step may hold fewer samples). Each categorical field is a
table (named C1..C26, or by the header) of `rows` rows; a value is hashed into
its table by `fiitedsim.traces.hashing` (FNV-1a 64 + splitmix64, stable across runs
and platforms), and a missing value takes the reserved row 0. Within a step
the lookups are table-major (all samples of C1, then C2, ...), the order of
FBGEMM's table-batched requests. The file is streamed in blocks (a day file is
~45 GB); `.gz` input is decompressed on the fly.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ...config import check_first_step
from ...errors import InputError, refuse_duplicate_columns, text_line
from ..hashing import hash_rows
from . import CRITEO_BATCH, CRITEO_ROWS
from .common import ImportReport, Layout, Progress, arrow_error, check_input, tables_from_file, write_trace

N_DENSE, N_CAT = 13, 26
N_FIELDS = 1 + N_DENSE + N_CAT
DEFAULT_ROWS = CRITEO_ROWS
BLOCK_BYTES = 4 << 20  # pyarrow reads blocks ahead; small blocks keep peak memory flat (~0.5 GB RSS, any input size)


def _first_line(path: Path, compressed: bool) -> str:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            # a UTF-8 byte-order mark is no part of the first field (pyarrow's reader skips it too)
            return text_line(path, f.readline(1 << 20)).rstrip("\r\n")
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def import_criteo(path, output, batch: int = CRITEO_BATCH, rows: int = DEFAULT_ROWS, step: int = 0, tables_file=None,
                  layout: Layout = Layout(), progress: Progress | None = None) -> ImportReport:
    """Convert a Criteo TSV/CSV file to a trace; see the module docstring for the mapping."""
    path = check_input(path, "criteo file")
    if batch < 1:
        raise InputError(f"--batch must be >= 1 sample per step, got {batch}")
    check_first_step(step)
    if rows < 2:
        raise InputError(f"--rows must be at least 2 (row 0 is reserved for missing values), got {rows}")
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    first = _first_line(path, compressed)
    if not first:
        raise InputError(f"{path}: the file is empty; expected Criteo samples (label, I1..I13, C1..C26)")
    delimiter = "\t" if "\t" in first else ","
    fields = first.split(delimiter)
    if len(fields) not in (N_FIELDS, N_FIELDS - 1):
        raise InputError(f"{path}: the first line has {len(fields)} {'tab' if delimiter == chr(9) else 'comma'}-"
                         f"separated fields; a Criteo sample has {N_FIELDS} (label, I1..I13, C1..C26), "
                         f"or {N_FIELDS - 1} without the label (test files)")
    n_fields = len(fields)
    header = fields[0] != "" and not _is_int(fields[0])
    if header:
        refuse_duplicate_columns(path, fields)
    names = fields[-N_CAT:] if header else [f"C{i + 1}" for i in range(N_CAT)]
    if tables_file is not None:
        tables = tables_from_file(tables_file, N_CAT, "Criteo data (26 categorical fields)")
        if min(t.rows for t in tables) < 2:
            raise InputError(f"--tables {tables_file}: every table needs at least 2 rows (row 0 is for missing values)")
    else:
        tables = [layout.table(name, rows) for name in names]
    table_rows = [t.rows for t in tables]

    columns = [f"f{i}" for i in range(n_fields)]
    cat = columns[-N_CAT:]
    read = pacsv.ReadOptions(column_names=columns, skip_rows=1 if header else 0, block_size=BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char=False if delimiter == "\t" else '"')
    convert = pacsv.ConvertOptions(include_columns=cat, column_types={c: pa.string() for c in cat},
                                   strings_can_be_null=False)
    size = path.stat().st_size

    def blocks():
        """Per CSV block: a (samples, 26) int64 matrix of rows."""
        with open(path, "rb") as raw:
            stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "gzip") if compressed else raw
            try:
                reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
                for record_batch in reader:
                    ids = np.empty((record_batch.num_rows, N_CAT), np.int64)
                    for j, name in enumerate(cat):
                        ids[:, j] = hash_rows(record_batch.column(name), j, table_rows[j])
                    yield ids
                    if progress:
                        progress(min(raw.tell(), size), size)
            except (pa.ArrowException, OSError, EOFError) as exc:
                raise arrow_error(path, exc, "not valid Criteo data") from None

    def chunks():
        """Whole steps, table-major within each step; the samples of an unfinished step wait for the next block."""
        carry = np.empty((0, N_CAT), np.int64)
        next_step = step
        for ids in blocks():
            ids = np.concatenate([carry, ids]) if carry.size else ids
            whole = len(ids) // batch * batch
            if whole:
                yield _lookups(ids[:whole], batch, next_step)
                next_step += whole // batch
            carry = ids[whole:]
        if len(carry):
            yield _lookups(carry, len(carry), next_step)
    return write_trace(output, tables, chunks())


def _lookups(ids: np.ndarray, batch: int, first_step: int) -> tuple:
    """(step, table, row) of `ids` (samples x tables), whole steps of `batch` samples, table-major per step."""
    steps = len(ids) // batch
    by_step = ids.reshape(steps, batch, N_CAT).transpose(0, 2, 1)  # step, table, sample
    row = by_step.reshape(-1)
    step = np.repeat(np.arange(first_step, first_step + steps, dtype=np.int64), N_CAT * batch)
    table = np.tile(np.repeat(np.arange(N_CAT, dtype=np.int32), batch), steps)
    return step, table, row
