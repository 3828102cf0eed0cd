"""fiitedsim: simulate FIITED embedding-dimension pruning on VHPI hash tables before spending GPU time."""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

__version__ = "0.1.0"


def _kernel_cache_dir() -> str:
    """A Numba cache folder keyed by a hash of every source file of the package.

    Numba invalidates a cached kernel only when the file that defines it
    changes, but our kernels inline functions from other modules (engine/hashmap.py
    into engine/store.py, policies/rowcache.py and others). Keying the whole cache on all sources makes any edit or
    upgrade recompile everything once instead of running a stale kernel. Where it goes: `_cache_bases`.
    """
    digest = hashlib.sha1(sys.version.encode())
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    name = f"numba-{digest.hexdigest()[:16]}"
    for base in _cache_bases():
        folder = base / name
        if _usable(folder):
            return str(folder)
    return str(Path(tempfile.gettempdir()) / f"fiitedsim-{os.getuid()}" / name)  # as good as it gets


def _cache_bases():
    """Where the kernel cache may go, in order: $XDG_CACHE_HOME/fiitedsim, ~/.cache/fiitedsim (only when the home
    folder is known: a user without a passwd entry and no $HOME has none), then a private folder of this user in
    the temporary folder (when those cannot be written: a read-only home). Never the installed package's
    __pycache__, where Numba itself falls back to."""
    if os.environ.get("XDG_CACHE_HOME"):
        yield Path(os.environ["XDG_CACHE_HOME"]) / "fiitedsim"
    try:
        yield Path.home() / ".cache" / "fiitedsim"
    except (RuntimeError, KeyError):  # no $HOME and no passwd entry
        pass
    yield Path(tempfile.gettempdir()) / f"fiitedsim-{os.getuid()}"


def _usable(folder: Path) -> bool:
    """`folder` exists or was made, is ours and writable, and no one else may write to it (kernels are code)."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = folder.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o022 and os.access(folder, os.W_OK | os.X_OK)


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = _kernel_cache_dir()
    if "numba" in sys.modules:  # numba read its config already: tell it directly
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
