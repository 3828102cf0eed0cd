"""Decode the next trace batches on a second thread while the engine replays the current one.

Parquet decoding (pyarrow) and the replay kernels (Numba, `nogil=True`) both
release the GIL, so on a machine with two cores end-to-end time becomes
about max(decode, replay) instead of their sum. Results do not change: the
batches arrive in the same order, and an error raised while reading (say a
corrupt row group) is re-raised in the consumer at the same place.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items` with up to `depth` of them produced ahead on a background thread."""
    if depth < 1:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put((_END, exc))

    worker = threading.Thread(target=produce, name="fiitedsim-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
