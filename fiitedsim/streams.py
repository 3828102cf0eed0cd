"""The process around a command: its standard streams and its signals.

A closed stdin, stdout or stderr (`>&-`) gets /dev/null behind its number; printing to a closed or failed
stdout raises `StdoutFailed` (the CLI turns it into one line, or a quiet exit when the reader went away);
text stdout's encoding cannot hold is escaped; SIGINT and SIGTERM raise `Interrupted` in the main thread, so
that temporaries are removed (`atomic.together` holds them while a run's outputs are written).
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading


class StdoutFailed(Exception):
    """Printing to standard output failed: the reader went away (EPIPE), it was closed (`>&-`: EBADF), or a
    write error (a full disk behind `> file`)."""

    def __init__(self, errno_: int):
        super().__init__(os.strerror(errno_))
        self.errno = errno_


class GuardedStdout:
    """Standard output for the commands: a failed write or flush raises `StdoutFailed` (which click does not
    turn into a silent exit 1, as it does a broken pipe), and a closed one (None) fails the same way."""

    def __init__(self, stream):
        self.stream = stream

    def _call(self, name: str, *args):
        if self.stream is None:
            raise StdoutFailed(errno.EBADF)
        try:
            return getattr(self.stream, name)(*args)
        except OSError as exc:
            raise StdoutFailed(exc.errno) from None

    def write(self, text: str) -> int:
        return self._call("write", text)

    def flush(self) -> None:
        if self.stream is not None:
            self._call("flush")

    def isatty(self) -> bool:
        return self.stream is not None and self.stream.isatty()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def guard_standard_streams() -> None:
    """A closed stdin, stdout or stderr (`>&-`) gets /dev/null behind its number, so that no file this run opens
    takes the number and receives what is printed; printing to a closed stdout is still an error (`GuardedStdout`)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
    if sys.stderr is None:  # nothing can be said; the exit code still tells
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (`signum`); raised in the main thread so that temporaries are removed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise():
    """SIGINT and SIGTERM raise `Interrupted` for the block (SIGTERM's default would kill the run at once and
    leave its temporaries); the handlers before are restored after (tests run the CLI in-process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def escape_unencodable_output() -> None:
    """Text stdout's encoding cannot hold (a table name's `é` under LC_ALL=C without UTF-8 mode, where stdout is
    ASCII) is printed as `\\xe9` escapes instead of failing; stderr does so by default."""
    with contextlib.suppress(AttributeError, ValueError):  # not a text stream of Python's own (tests capture it)
        sys.stdout.reconfigure(errors="backslashreplace")
