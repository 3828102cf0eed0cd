"""Parquet as fiitedsim writes and reads it: every page carries a CRC-32 checksum, checked on every read.

A flipped bit in a page (bit rot, a bad copy) is then an error naming the file instead of changed numbers.
Files of other writers without checksums read as before: only pages that carry one are checked.
"""
from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Options of every Parquet writer (`pq.write_table`, `pq.ParquetWriter`) in fiitedsim.
WRITE = {"write_page_checksum": True}
#: Options of every Parquet reader (`pq.ParquetFile`, `pq.read_table`) in fiitedsim.
READ = {"page_checksum_verification": True}
#: What reading a damaged file raises: pyarrow's errors (a failed checksum is an OSError), and a name in the
#: footer that is no longer UTF-8.
READ_ERRORS = (pa.ArrowException, OSError, UnicodeDecodeError)


def open_file(source) -> pq.ParquetFile:
    """A `ParquetFile` whose pages are verified as they are read; `source` a path, or a file opened by
    `paths.arrow_file` (any file name), which closing the `ParquetFile` leaves open."""
    return pq.ParquetFile(source, **READ)


def frame_bytes(frame, statistics: bool = True) -> bytes:
    """A polars frame as Parquet bytes with page checksums (polars' own writer has none): zstd, as polars
    writes by default."""
    buffer = io.BytesIO()
    pq.write_table(frame.to_arrow(), buffer, compression="zstd", write_statistics=statistics, **WRITE)
    return buffer.getvalue()


class UnreadableFrame(Exception):
    """A Parquet file that cannot be read: missing, truncated or damaged (the message names the exception)."""


def read_frame(path: str | Path, columns: list[str] | None = None):
    """A Parquet file fiitedsim wrote (a time series, a curve, a sweep's points) as a polars frame, read by its
    bytes (`paths.arrow_file`: any file name) through pyarrow with its page checksums verified: polars' own
    reader checks none, and on a damaged file it can panic or abort the process where pyarrow raises. Anything
    unreadable is an `UnreadableFrame`."""
    import polars as pl

    from .paths import arrow_file
    try:
        with arrow_file(path) as f:
            return pl.from_arrow(pq.read_table(f, columns=columns, **READ))
    except (*READ_ERRORS, pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
        raise UnreadableFrame(type(exc).__name__) from None


def metadata_intact(pf: pq.ParquetFile, key: bytes) -> bool:
    """Whether the two copies of a metadata entry agree: pyarrow keeps the footer's key-value entry and a copy
    inside the serialised Arrow schema (`ARROW:schema`), and reads the copy; the footer has no checksum, so a
    flipped bit in either shows only as a difference between them. A file without the Arrow copy has one."""
    footer = pf.metadata.metadata or {}
    if b"ARROW:schema" not in footer:
        return True
    return footer.get(key) == (pf.schema_arrow.metadata or {}).get(key)
