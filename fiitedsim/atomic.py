"""Write outputs all-or-nothing: to a temporary name beside the target, then rename.

Temporary names are hidden and say which process made them: `.NAME.HOST-PID.RANDOM.tmp` (`.old` for an
earlier folder moved aside). A run that was killed leaves one behind; the next write into the same folder
removes those of processes of this host that are gone (`remove_leftovers`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from .errors import InputError, file_kind

#: errno values of a write that fails because of where it goes, not because of a bug: a full disk or quota, a
#: file over the size limit (RLIMIT_FSIZE), a read-only file system, no permission.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_write_error(exc: BaseException) -> bool:
    """An OSError (pyarrow's included: they carry the errno) that `WRITE_ERRNOS` covers."""
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


class WriteError(InputError):
    """An output could not be written (`WRITE_ERRNOS`); `target` and `errno` say which and why."""

    def __init__(self, target, errno_: int):
        self.target, self.errno = Path(target), errno_
        hint = "free some space or write elsewhere" if errno_ in _NO_ROOM else "choose a folder you can write to"
        super().__init__(f"cannot write {target}: {os.strerror(errno_)}; nothing was written there ({hint})")


def write_error(target, exc: OSError) -> WriteError:
    """One line naming the output and the reason, with what to do."""
    return WriteError(target, exc.errno)


def write_parquet_frame(frame, path: str | Path, statistics: bool = True) -> None:
    """A polars frame as Parquet with page checksums (`parquet.frame_bytes`), through Python's file I/O: a
    failed write (a full disk) is the OSError it is."""
    from .parquet import frame_bytes
    Path(path).write_bytes(frame_bytes(frame, statistics))


def output_path(target: str | Path, directory: bool = False, what: str = "output") -> Path:
    """Where an output named `target` is written: `target` itself or, for a symbolic link, the file it points to
    (written through: the link stays and the file it names is replaced, as a shell's `>` does).

    Only a regular file (or, with `directory`, a folder) is ever replaced: a device, a FIFO, a socket (or a
    folder where a file is meant) is refused, whatever the command.
    """
    target = Path(target)
    real = Path(os.path.realpath(target)) if target.is_symlink() else target
    kind = file_kind(real)
    if kind is not None and not (directory and kind == "a folder"):
        through = f" (the link points to {real})" if real != target else ""
        raise InputError(f"{what} {target} is {kind}{through}; fiitedsim replaces only regular files: name a "
                         "new file")
    return real


def _same_or_inside(inner: Path, outer: Path) -> bool:
    """`inner` is `outer` (by any name: a link, a hard link, `a/../b`) or lies inside the folder `outer`."""
    a, b = Path(os.path.realpath(inner)), Path(os.path.realpath(outer))
    if a == b or b in a.parents:
        return True
    try:
        return os.path.samefile(inner, outer)
    except (OSError, ValueError):
        return False


def refuse_inputs(outputs, inputs) -> None:
    """No output replaces one of the command's inputs or another of its outputs.

    `outputs` and `inputs` are (option, path) pairs, such as ("--report", path) or ("the trace", part); a
    folder output is given as the entries it replaces (OUT/summary.json, OUT/timeseries), so an input
    elsewhere in the folder is fine. Called before any work, so nothing is lost.
    """
    outputs = [(name, Path(path)) for name, path in outputs if path is not None]
    inputs = [(name, Path(path)) for name, path in inputs if path is not None]
    for i, (name, path) in enumerate(outputs):
        for in_name, in_path in inputs:
            if _same_or_inside(in_path, path):
                raise InputError(f"{name} {path} would replace {in_name} {in_path}, an input of this command; "
                                 "write the output elsewhere")
        for other_name, other in outputs[:i]:
            if _same_or_inside(path, other) or _same_or_inside(other, path):
                raise InputError(f"{name} {path} and {other_name} {other} name the same file; give each output "
                                 "its own name")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "host"


def _prefix(name: str) -> str:
    """Hidden temporary names of this process for an output called `name`."""
    return f".{name}.{_host()}-{os.getpid()}."


#: `.NAME.HOST-PID.RANDOM.tmp|.old` (this module's names); `.NAME.RANDOM.tmp` (older fiitedsim versions, random
#: part 8 characters of tempfile's alphabet).
_OURS = re.compile(r"\..+\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>[0-9]+)\.[a-z0-9_]{8}(?:\.tmp|\.old)?")
_OLDER = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
#: A leftover of an older version (no process id to ask) is removed once it has not changed for this long.
OLDER_LEFTOVER_SECONDS = 24 * 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours to signal
        return True
    return True


#: Folders this process has cleaned already: a sweep writes thousands of points into one folder, and listing
#: it before each would cost time quadratic in the points.
_CLEANED: set[str] = set()


def remove_leftovers(folder: str | Path) -> None:
    """Remove hidden temporaries in `folder` left by killed fiitedsim runs: those named by a process of this host
    that no longer runs, and older versions' unnamed ones untouched for a day. Once per folder and process;
    never fails."""
    key = os.path.abspath(folder)
    if key in _CLEANED:
        return
    _CLEANED.add(key)
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    host, now = _host(), time.time()
    for entry in entries:
        match = _OURS.fullmatch(entry.name)
        try:
            if match:
                stale = match["host"] == host and not _alive(int(match["pid"]))
            else:
                stale = bool(_OLDER.fullmatch(entry.name)) and \
                    now - entry.lstat().st_mtime > OLDER_LEFTOVER_SECONDS
            if not stale:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        except OSError:
            continue


def _link_tree(src: Path, dst: Path) -> None:
    """`src` at `dst` without copying data where the file system allows: hard links, else copies."""
    if src.is_dir() and not src.is_symlink():
        dst.mkdir()
        shutil.copystat(src, dst)
        for child in src.iterdir():
            _link_tree(child, dst / child.name)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


#: Outputs this process renamed into place, in order: what a run that is interrupted, or cannot print its
#: summary, says it wrote (`written_text`).
WRITTEN: list[Path] = []
NOTHING_WRITTEN = "nothing was written"


def written_text() -> str:
    """What this process wrote, for a message: "nothing was written", or the outputs (a sweep's many points
    counted)."""
    done = [p for p in dict.fromkeys(WRITTEN) if p.exists()]
    if not done:
        return NOTHING_WRITTEN
    if len(done) > 4:
        return f"{len(done)} outputs were written, the last {done[-1]}"
    return "written: " + ", ".join(map(str, done))


@contextlib.contextmanager
def together():
    """Hold SIGINT and SIGTERM while the block writes a run's outputs, so that they appear together: a signal
    before the block leaves none, one during it is delivered when all are written. (Only in the main thread,
    where Python delivers signals.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def atomic_path(target: str | Path, directory: bool = False, replaces: tuple[str, ...] | None = None):
    """Yield a temporary path next to `target`; rename it onto `target` only on success.

    On any exception the temporary file (or directory) is removed and `target`
    is left as it was, so a failed run never leaves a half-written output.

    With `directory` and `replaces` (the names the new folder's content is made of), an existing folder at
    `target` is replaced by the new one, but every other entry the user put in it is kept: linked (or
    copied) into the new folder before the swap, so that a crash at any point loses neither.
    """
    target = output_path(target, directory)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(target.parent)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=_prefix(target.name), suffix=".tmp", dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=_prefix(target.name), suffix=".tmp", dir=target.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:  # parent is a file, no permission, read-only file system: the user's path is wrong
        blocker = next((p for p in target.parents if p.exists()), None)
        why = f"{blocker} is not a folder" if blocker is not None and not blocker.is_dir() else exc.strerror or exc
        raise InputError(f"cannot write {target}: {why}") from None
    # mkstemp/mkdtemp create private (0600/0700) files; give outputs the usual umask-based mode
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod((0o777 if directory else 0o666) & ~umask)
    try:
        yield tmp
        if directory and target.is_dir():
            if replaces is not None:  # the user's own files in the folder stay
                for entry in target.iterdir():
                    if entry.name not in replaces and not (tmp / entry.name).exists():
                        _link_tree(entry, tmp / entry.name)
            # a folder cannot be renamed over a non-empty one: move the old one aside first, and
            # delete it only once the new one is in place, so a crash never loses both
            old = Path(tempfile.mkdtemp(prefix=_prefix(target.name), suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / target.name, target)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        WRITTEN.append(target)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if is_write_error(exc):  # a full disk, a read-only file system ...: the user's to fix, in one line
            raise write_error(target, exc) from None
        if isinstance(exc, WriteError) and exc.target == tmp:  # a nested atomic write into our temporary name
            raise WriteError(target, exc.errno) from None
        raise


def check_writable(target: str | Path, inside: bool = False, directory: bool = False) -> None:
    """Fail now, not after the run, if `target` cannot be written: a read-only file system, no permission, or
    a target that is not a regular file (a folder with `directory`: `output_path`).

    Creates and removes a hidden probe file in the folder where the output's temporary file will go: the
    nearest existing folder at or above `target`'s parent (or, with `inside`, at or above `target` itself,
    for a folder that is filled in place such as a sweep's). A full disk is not predicted (it may fill up
    during the run); `atomic_path` reports that at the write.
    """
    target = output_path(target, directory=directory or inside)
    start = target if inside else target.parent
    folder = next((p for p in (start, *start.parents) if p.exists()), None)
    if folder is None or not folder.is_dir():
        return  # the path itself is wrong; the command's own checks say how
    try:
        fd, name = tempfile.mkstemp(prefix=_prefix("fiitedsim-probe"), dir=folder)
    except OSError as exc:
        if is_write_error(exc):
            raise InputError(f"cannot write {target}: {folder} is not writable ({os.strerror(exc.errno)}); "
                             "choose a folder you can write to") from None
        raise
    os.close(fd)
    os.unlink(name)


def refuse_cwd_or_parent(out: Path, name: str, example: str) -> None:
    """An output folder that is replaced or filled must not be the working folder or one above it."""
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise InputError(f"{name} {out} is the current folder or contains it; name a new folder such as {example}")
