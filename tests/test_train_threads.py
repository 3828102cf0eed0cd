"""`ThreadedMatmul` is a plain matrix product, whatever the split.

The trainer's MLPs use it for every product (threads.py says why), so it must
equal NumPy's `a @ b` for the shapes and memory layouts the backward pass hands
it: C-ordered activations, transposed views (h.T @ g, g @ W.T), row counts that
do not divide evenly, and products too small to split.
"""
from __future__ import annotations

import numpy as np
import pytest

from fiitedsim.train.threads import ThreadedMatmul, blas_threads


@pytest.mark.slow  # seconds of replay or compute
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("m,k,n", [(2048, 367, 256), (1001, 300, 7), (5, 3, 2), (367, 2048, 256)])
@pytest.mark.parametrize("transpose_a", [False, True])
def test_equals_numpy_matmul(threads, m, k, n, transpose_a):
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((k, m)).T if transpose_a else rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T   # a transposed view, like W.T
    mm = ThreadedMatmul(threads)
    try:
        with blas_threads(1):
            got = mm(a, b)
    finally:
        mm.close()
    # each block is its own BLAS call, so allow the rounding of a different summation order
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12 * np.abs(a @ b).max())
    assert got.shape == (m, n) and got.dtype == np.float64


def test_same_product_every_time():
    """The split depends on shapes only: repeated products are bit-identical (the trainer's determinism)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2048, 367)).astype(np.float32), rng.standard_normal((367, 256)).astype(np.float32)
    mm = ThreadedMatmul(2)
    try:
        first = mm(a, b)
        assert all(np.array_equal(first, mm(a, b)) for _ in range(5))
    finally:
        mm.close()
