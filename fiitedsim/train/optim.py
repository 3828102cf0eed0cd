"""Optimizers: row-wise Adagrad for the embedding tables, Adam for the MLPs.

Row-wise Adagrad (the optimizer of DLRM's embedding tables, as in FBGEMM's
`rowwise_adagrad`): one accumulator per row instead of one per value. At a
step, let G_r be the summed gradient of row r over all its lookups in the batch
(values of non-resident dimensions dropped) and d_r its resident dimensions
(the most any of its lookups read). Then

    a_r <- a_r + mean_{k < d_r}(G_r[k]^2)  (mean over the d_r values the row stores)
    E_r <- E_r - lr * G_r / (sqrt(a_r) + eps)

Rows not looked up in the batch, or with nothing resident, are untouched (no
decay, no accumulator change). It is plain Adagrad with the accumulators of a
row tied to their mean, which costs 4 bytes per row. The mean runs over the
values the row stores, as FBGEMM's averages over the table's dimension, so a
row of d dimensions trains as a d-dimensional table would: `uniform-dim` is a
D'-dimensional model, `mde` a mixed-dimension one.

Adam (Kingma & Ba, with bias correction, as torch.optim.Adam without weight
decay): m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2;
w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
"""
from __future__ import annotations

import numba
import numpy as np

from .model import coalesce


@numba.njit(cache=True, parallel=True)
def rowwise_adagrad_update(emb, acc, rows, grads, dims, counts, batch, lr, eps):
    """Apply the row-wise Adagrad update to `coalesce`'s output: field f's rows are slots f*batch + 0..counts[f]-1.

    Fields own disjoint rows, so they update in parallel.
    """
    for f in numba.prange(counts.shape[0]):
        for u in range(f * batch, f * batch + counts[f]):
            r, n = rows[u], dims[u]
            if n == 0:
                continue
            s = 0.0
            for k in range(n):
                g = np.float64(grads[u, k])
                s += g * g
            acc[r] += s / n
            scale = lr / (np.sqrt(np.float64(acc[r])) + eps)
            for k in range(n):
                emb[r, k] -= scale * grads[u, k]


class RowWiseAdagrad:
    """Row-wise Adagrad over the concatenated table array `emb` (see the module docstring)."""

    def __init__(self, emb: np.ndarray, lr: float = 0.05, eps: float = 1e-8):
        self.lr, self.eps = float(lr), float(eps)
        self.acc = np.zeros(emb.shape[0], dtype=emb.dtype)
        self._marker = np.full(emb.shape[0], -1, dtype=np.int32)
        self._rows = np.empty(0, dtype=np.int64)
        self._grads = np.empty((0, emb.shape[1]), dtype=emb.dtype)
        self._dims = np.empty(0, dtype=np.int64)

    def step(self, emb, offsets, idx, d, dT, start) -> None:
        """Sum the batch's masked lookup gradients per row (`coalesce`), then update those rows.

        d (B, F): the resident dimensions of each lookup."""
        B, F = idx.shape
        if self._rows.shape[0] < B * F:
            self._rows = np.empty(B * F, dtype=np.int64)
            self._grads = np.empty((B * F, emb.shape[1]), dtype=emb.dtype)
            self._dims = np.empty(B * F, dtype=np.int64)
        counts = np.empty(F, dtype=np.int64)
        coalesce(offsets, idx, d, dT, start, self._marker, self._rows, self._grads, self._dims, counts)
        rowwise_adagrad_update(emb, self.acc, self._rows, self._grads, self._dims, counts, B, self.lr, self.eps)


class Adam:
    """Adam over a fixed list of arrays (updated in place)."""

    def __init__(self, params: list[np.ndarray], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.lr, self.b1, self.b2, self.eps = float(lr), float(betas[0]), float(betas[1]), float(eps)
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * (g * g)
            denom = np.sqrt(v / c2)
            denom += self.eps
            p -= (self.lr / c1) * m / denom
