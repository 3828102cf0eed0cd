"""The one exception type that means "the user's input is wrong", and the kinds of warning about input.

The CLI turns an `InputError` into a one-line message and exit code 2; anything
else that escapes is a bug and keeps its traceback. Warnings are not raised:
readers hand them to a `warn(message)` callback as they find them, and a
message's class says what it is about, so a caller that knows better (inspect
reports grad_norm beside a log, so the "grad_norm is ignored" warning is wrong
there) drops a kind of warning by class, never by its wording.
"""


import os
import stat
from pathlib import Path


class InputError(ValueError):
    """Bad input from the user: a file, a flag value or a combination of them."""


class InputWarning(str):
    """A warning about the user's input: the message itself, a `str`, of a class that names its kind."""


class GradNormIgnored(InputWarning):
    """A trace with inline grad_norm was given an importance log too: the log wins, grad_norm is not read."""


class EmptyImportanceLog(InputWarning):
    """The importance log holds no records."""


class TablesInferred(InputWarning):
    """Neither the trace's metadata nor a --tables file gave the tables: rows were inferred, D and C defaulted."""


def text_line(source, raw: bytes) -> str:
    """The first line of a CSV/TSV input (`raw`, its bytes) as text, without a UTF-8 byte-order mark (the CSV
    readers skip it too). Text in another encoding is refused: UTF-16 or UTF-32 (NUL bytes, or their byte-order
    marks) used to be read as one field holding NUL characters, which the error line then printed."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0" in raw:
        kind = "UTF-16 or UTF-32" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0" in raw[:4] else "binary"
        raise InputError(f"{source}: not UTF-8 text (it looks like {kind}); convert it to UTF-8 first, e.g. "
                         "iconv -f UTF-16 -t UTF-8")
    return raw.decode("utf-8", "replace").removeprefix("\ufeff")


def refuse_duplicate_columns(source, names, used=None) -> None:
    """A file with two columns of one name is ambiguous (readers silently take the first, or fail): refuse it.

    With `used`, only those names matter (files with many columns may repeat ones that are never read).
    """
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    twice = [n for n, count in seen.items() if count > 1 and (used is None or n in used)]
    if twice:
        raise InputError(f"{source}: {seen[twice[0]]} columns are named {twice[0]!r}; rename all but one of them "
                         "(it is not clear which one is meant)")


#: What a path is, for the file kinds a command cannot read as a file or replace with one.
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(path) -> str | None:
    """What `path` is if it exists and is not a regular file ("a folder", "a FIFO (named pipe)", "a character
    device" ...), following links; None for a regular file or a name with nothing behind it."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def require_file(path, what: str, hint: str = "") -> Path:
    """`path` names an existing regular file; else one line saying what it is instead ("a folder", "a FIFO") or
    that nothing is there. `hint` (e.g. "give a .toml file") ends the message."""
    path = Path(path)
    kind = file_kind(path)
    if kind is not None:
        raise InputError(f"{what} {path} is {kind}, not a file" + (f"; {hint}" if hint else ""))
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    return path
