"""Fault memory in ahead of the engine, on a helper thread.

The engine's big arrays are fresh anonymous memory (`engine.aligned_zeros`),
and the kernel clears every page the first time it is written. On the
benchmark replay that is about 0.8 GB, and clearing it took 1.2-1.7 s of system
time on the thread that first wrote it (docs/engine.md), as much as the
ranking passes of every round together. The record loop writes these arrays
front to back (records and slots by tracked-row id, index regions at the bump
pointer), so the driver knows before each batch which bytes the batch will
write first, and asks this module to fault them in now: a helper thread calls
`madvise(MADV_POPULATE_WRITE)` on them (Linux 5.14 and later), which backs the
pages without changing their contents, while the record loop runs. Nothing is
read or written through these requests, so results cannot change; a request
only moves page-clearing work to another core (the CPU time is the same).

`FIITEDSIM_POPULATE=0` turns it off (as does a system without the call).
"""
from __future__ import annotations

import ctypes
import os
import queue
import sys
import threading

import numpy as np

MADV_POPULATE_WRITE = 23
PAGE = 4096

_queue: queue.SimpleQueue | None = None
_madvise = None
_lock = threading.Lock()
_enabled = os.environ.get("FIITEDSIM_POPULATE", "1") != "0" and sys.platform.startswith("linux")


def _worker(q: queue.SimpleQueue) -> None:
    global _enabled
    while True:
        array, start, end = q.get()
        base = array.ctypes.data
        lo = (base + start) & ~(PAGE - 1)
        hi = base + min(end, array.nbytes)
        if hi > lo and _enabled:
            if _madvise(lo, hi - lo, MADV_POPULATE_WRITE) != 0 and ctypes.get_errno() == 22:  # EINVAL: no such call
                _enabled = False
        del array


def _start() -> bool:
    """Start the helper thread once; False where the call is not available."""
    global _queue, _madvise, _enabled
    with _lock:
        if _queue is None and _enabled:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                _madvise = libc.madvise
                _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                _madvise.restype = ctypes.c_int
            except (OSError, AttributeError):
                _enabled = False
                return False
            _queue = queue.SimpleQueue()
            threading.Thread(target=_worker, args=(_queue,), name="fiitedsim-populate", daemon=True).start()
    return _enabled


def ahead(array: np.ndarray, start: int, end: int) -> None:
    """Fault in bytes start .. end of `array` (clipped to it) on the helper thread, soon. The request keeps
    `array` alive until it is served."""
    if end > start and start < array.nbytes and _start():
        _queue.put((array, start, end))


def enabled() -> bool:
    return _enabled


def _forget_thread() -> None:
    """A forked child has no helper thread: start its own on its first request."""
    global _queue, _lock
    _queue, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_thread)
