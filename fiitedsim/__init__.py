"""fiitedsim: simulate FIITED embedding-dimension pruning on VHPI hash tables before spending GPU time."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

__version__ = "0.1.0"


def _kernel_cache_dir() -> str:
    """A Numba cache folder keyed by a hash of every source file of the package.

    Numba invalidates a cached kernel only when the file that defines it
    changes, but our kernels inline functions from other modules (store.py into
    policies/*.py). Keying the whole cache on all sources makes any edit or
    upgrade recompile everything once instead of running a stale kernel.
    """
    digest = hashlib.sha1(sys.version.encode())
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fiitedsim"
    return str(base / f"numba-{digest.hexdigest()[:16]}")


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = _kernel_cache_dir()
    if "numba" in sys.modules:  # numba read its config already: tell it directly
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
