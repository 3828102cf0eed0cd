"""Matrix products split over a small thread pool, with NumPy's BLAS kept single-threaded.

Why not let BLAS use the cores itself: OpenBLAS keeps its worker threads
spinning for a while after every call. The trainer alternates BLAS products
(the MLPs) with parallel Numba kernels (gather, interaction, Adagrad), and the
spinning BLAS threads took the cores away from the Numba threads: on two vCPUs
every Numba kernel of a training step ran 2-5x slower than alone
(benchmarks/README.md, "Training throughput"). So, inside `blas_threads(1)`,
`ThreadedMatmul` cuts a product into blocks of rows and computes them on a
pool of Python threads (NumPy releases the GIL inside BLAS), whose idle
threads sleep instead of spinning.

The split depends only on the shapes and the thread count, never on timing,
so a product is the same from run to run.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

#: Products smaller than this (multiply-adds) run on the calling thread: splitting costs more than it saves.
MIN_SPLIT_WORK = 1 << 20


def default_threads() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def blas_threads(n: int):
    """Limit NumPy's BLAS to `n` threads inside the block (threadpoolctl), restoring the old limit after."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=n, user_api="blas"):
        yield


class ThreadedMatmul:
    """`mm(a, b)` equals `a @ b` for 2-D arrays, its rows computed in `threads` blocks at once.

    Meant to run inside `blas_threads(1)`; outside it, it still gives the right
    product, only without the benefit.
    """

    def __init__(self, threads: int | None = None):
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="fiitedsim-mm") \
            if self.threads > 1 else None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        m, k = a.shape
        n = b.shape[1]
        if self._pool is None or m < 2 * self.threads or m * k * n < MIN_SPLIT_WORK:
            return a @ b
        out = np.empty((m, n), dtype=np.result_type(a, b))
        bounds = np.linspace(0, m, self.threads + 1).astype(int)
        caller = np.geterr()   # floating-point error handling is per thread: every block follows the caller's

        def block(i: int) -> None:
            lo, hi = bounds[i], bounds[i + 1]
            with np.errstate(**caller):
                np.matmul(a[lo:hi], b, out=out[lo:hi])

        futures = [self._pool.submit(block, i) for i in range(1, self.threads)]
        block(0)
        for f in futures:
            f.result()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
