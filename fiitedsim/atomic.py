"""Write outputs all-or-nothing: to a temporary name beside the target, then rename."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError


@contextlib.contextmanager
def atomic_path(target: str | Path, directory: bool = False):
    """Yield a temporary path next to `target`; rename it onto `target` only on success.

    On any exception the temporary file (or directory) is removed and `target`
    is left as it was, so a failed run never leaves a half-written output.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
            # a folder cannot be renamed over a non-empty one: move the old one aside first, and
            # delete it only once the new one is in place, so a crash never loses both
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
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
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def refuse_cwd_or_parent(out: Path, name: str, example: str) -> None:
    """An output folder that is replaced or filled must not be the working folder or one above it."""
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise InputError(f"{name} {out} is the current folder or contains it; name a new folder such as {example}")
