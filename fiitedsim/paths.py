"""File names as the operating system gives them: any bytes, not only UTF-8.

Python keeps the bytes of a name that are not UTF-8 (a Latin-1 `é`, byte 0xE9) as lone surrogates
(os.fsdecode), which cannot be encoded: printing such a name raised UnicodeEncodeError, and so did pyarrow,
which encodes every path it is given as UTF-8. Here the two helpers everything goes through: `shown` for a
name (a path, a table name, any user text) in a message or a table, and `arrow_file` to open a file for pyarrow
by its bytes. polars takes the Python file objects `open` gives.
"""
from __future__ import annotations

import os


def shown(name) -> str:
    """`name` (a path or any text) as it can be printed anywhere: bytes that are not UTF-8 as `\\xNN` escapes, so
    that `in/lat\\xe9.parquet` names the file in the shell's $'...' spelling."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def arrow_file(path, mode: str = "r"):
    """`path` opened by pyarrow through its bytes (pyarrow's own path arguments must be UTF-8). Readers and
    writers given it do not close it: use it in a `with` block. Raises OSError as `open` does."""
    import pyarrow as pa

    return pa.OSFile(os.fsencode(path), mode)
