"""A DLRM-style CTR model in NumPy with hand-written backward passes.

Shapes: B samples per batch, F sparse fields (one embedding table each), M
dense features, embedding dimension D, K = D / C chunks of C values.

Forward, one step at a time (each has its backward in `backward`, in reverse):

1. bottom MLP on the dense features: h_0 = x, a_l = h_{l-1} W_l + b_l,
   h_l = relu(a_l); its last layer has D outputs, so z = h_L is (B, D).
   (ReLU on every layer, the last included, as in DLRM.) Without dense
   features (M = 0) there is no bottom MLP and no z.
2. embedding lookup: e_f = E_f[row_f] * mask, where mask keeps the first d_f
   values (the lookup's resident dimensions: d * C for a chunk policy, any
   0..D for `uniform-dim` and `mde`) and zeroes the rest: a dimension that is
   not resident reads as zeros (docs/DESIGN.md section 2), so a row of d
   dimensions is a d-dimensional embedding padded with zeros.
3. interaction: stack T = [z, e_1, ..., e_F] (B, n, D), n = F + 1 (F without
   dense features); the features are the dot products T_i . T_j of every pair
   i > j, in the order (1,0), (2,0), (2,1), (3,0), ... (P = n(n-1)/2 of them).
4. top MLP on [z, pairs] (or just the pairs without dense features): ReLU on
   the hidden layers, a linear last layer with one output, the logit l.
5. loss = mean over the batch of the binary cross-entropy of sigmoid(l):
   L = mean(max(l, 0) - l y + log(1 + exp(-|l|))), the stable form of
   -[y log p + (1-y) log(1-p)].

Parameters are float32 for training; `dtype=np.float64` builds the same model
in double precision, which the gradient tests use to compare against PyTorch
and finite differences to 1e-5 relative.

Embedding tables live in one array `emb` (sum of rows, D) with `offsets`:
table f's row r is `emb[offsets[f] + r]`, so one Numba kernel handles all
tables in a single call (no per-table Python loop).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numba
import numpy as np


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the model. `bottom` and `top` list the hidden layer widths only:
    the bottom MLP always ends in `dim` outputs, the top MLP in one."""

    rows: tuple[int, ...]            # rows of each sparse field's table
    dense: int                       # number of dense features (0: no bottom MLP)
    dim: int = 16                    # embedding dimension D
    chunk: int = 4                   # chunk size C (the residency hook's unit); must divide dim
    bottom: tuple[int, ...] = (128, 64)
    top: tuple[int, ...] = (256, 128)
    extra_rows: int = 0              # rows after the fields' tables that a storage policy keeps (`cafe`'s hot table)

    @property
    def fields(self) -> int:
        return len(self.rows)

    @property
    def chunks(self) -> int:
        return self.dim // self.chunk

    @property
    def n_vectors(self) -> int:
        """Vectors in the interaction: z (if there are dense features) plus one per field."""
        return self.fields + (1 if self.dense > 0 else 0)

    @property
    def n_pairs(self) -> int:
        n = self.n_vectors
        return n * (n - 1) // 2

    def bottom_sizes(self) -> list[int]:
        return [self.dense, *self.bottom, self.dim] if self.dense > 0 else []

    def top_sizes(self) -> list[int]:
        first = self.n_pairs + (self.dim if self.dense > 0 else 0)
        return [first, *self.top, 1]


def mlp_list(bottom_w, bottom_b, top_w, top_b) -> list:
    """MLP arrays in the fixed order W1, b1, W2, b2, ... of the bottom then the top MLP (Adam's order)."""
    return [a for w, b in (*zip(bottom_w, bottom_b), *zip(top_w, top_b)) for a in (w, b)]


@dataclass
class Params:
    """Every trainable array. MLP weights are (in, out) so that a layer is `h @ W + b`."""

    emb: np.ndarray                  # (sum rows, D)
    offsets: np.ndarray              # (F + 1,) int64: table f is emb[offsets[f]:offsets[f+1]]
    bottom_w: list[np.ndarray] = field(default_factory=list)
    bottom_b: list[np.ndarray] = field(default_factory=list)
    top_w: list[np.ndarray] = field(default_factory=list)
    top_b: list[np.ndarray] = field(default_factory=list)

    def mlp_arrays(self) -> list[np.ndarray]:
        """The dense (Adam-trained) parameters, in a fixed order."""
        return mlp_list(self.bottom_w, self.bottom_b, self.top_w, self.top_b)


def init_params(cfg: ModelConfig, seed: int, dtype=np.float32) -> Params:
    """DLRM's initialisation: E_f ~ U(-1/sqrt(rows_f), 1/sqrt(rows_f)); W ~ N(0, 2/(in+out)); b ~ N(0, 1/out).

    One numpy Generator seeded by `seed` draws everything in a fixed order, so
    the same config and seed give bit-identical parameters.
    """
    if cfg.dim % cfg.chunk:
        raise ValueError(f"chunk {cfg.chunk} does not divide dim {cfg.dim}")
    rng = np.random.default_rng(seed)
    offsets = np.zeros(cfg.fields + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(cfg.rows)
    emb = np.zeros((int(offsets[-1]) + cfg.extra_rows, cfg.dim), dtype=dtype)   # extra rows: the policy's to set
    for f, rows in enumerate(cfg.rows):
        bound = 1.0 / np.sqrt(rows)
        emb[offsets[f]:offsets[f + 1]] = rng.uniform(-bound, bound, size=(rows, cfg.dim))
    p = Params(emb=emb, offsets=offsets)

    def layers(sizes, ws, bs):
        for n_in, n_out in itertools.pairwise(sizes):
            ws.append(rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), size=(n_in, n_out)).astype(dtype))
            bs.append(rng.normal(0.0, np.sqrt(1.0 / n_out), size=n_out).astype(dtype))
    layers(cfg.bottom_sizes(), p.bottom_w, p.bottom_b)
    layers(cfg.top_sizes(), p.top_w, p.top_b)
    return p


# ---------------------------------------------------------------- kernels
# Table-major loops (field f outer, sample b inner) so the lookups are visited in
# the trace's order: all lookups of table 0, then table 1, ...

@numba.njit(cache=True, parallel=True)
def gather(emb, offsets, idx, d, out, start):
    """out[b, start + f, :] = emb[offsets[f] + idx[b, f]] with the values from dimension d[b, f] on set to 0."""
    B, F = idx.shape
    D = emb.shape[1]
    for b in numba.prange(B):
        for f in range(F):
            r = offsets[f] + idx[b, f]
            keep = d[b, f]
            for k in range(D):
                out[b, start + f, k] = emb[r, k] if k < keep else 0.0


@numba.njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def interact(T, out):
    """out[b, p] = T[b, i] . T[b, j] for the pairs p = (i, j), i > j, in row-major order.

    The dot products accumulate in float64; `reassoc` lets LLVM split each sum
    into vector lanes (a fixed order for a given build, so still deterministic),
    which halves the time of this latency-bound loop. No other fast-math flag.
    """
    B, n, D = T.shape
    for b in numba.prange(B):
        p = 0
        for i in range(1, n):
            for j in range(i):
                s = 0.0
                for k in range(D):
                    s += T[b, i, k] * T[b, j, k]
                out[b, p] = s
                p += 1


@numba.njit(cache=True, parallel=True)
def interact_backward(T, g, dT):
    """dT = dL/dT given g = dL/dpairs: for pair p = (i, j), dT_i += g_p T_j and dT_j += g_p T_i."""
    B, n, D = T.shape
    for b in numba.prange(B):
        for i in range(n):
            for k in range(D):
                dT[b, i, k] = 0.0
        p = 0
        for i in range(1, n):
            for j in range(i):
                gp = g[b, p]
                for k in range(D):
                    dT[b, i, k] += gp * T[b, j, k]
                    dT[b, j, k] += gp * T[b, i, k]
                p += 1


@numba.njit(cache=True, parallel=True)
def chunk_norms(dT, start, chunk, out):
    """out[f, b, c] = L2 norm of chunk c of the gradient of lookup (b, f), in float32 (the trace's grad_norm).

    This is the gradient with respect to the looked-up vector, so a chunk that is
    not resident (read as zeros) still gets the norm it would have as a zero-valued
    parameter: that is what lets it earn utility and be admitted later.
    """
    B = dT.shape[0]
    F, _, K = out.shape
    for b in numba.prange(B):
        for f in range(F):
            for c in range(K):
                s = 0.0
                for k in range(c * chunk, (c + 1) * chunk):
                    v = np.float64(dT[b, start + f, k])
                    s += v * v
                out[f, b, c] = np.float32(np.sqrt(s))


@numba.njit(cache=True, parallel=True)
def coalesce(offsets, idx, d, dT, start, marker, rows_out, grads_out, dims_out, counts):
    """Sum the masked per-lookup gradients of each distinct row of each field.

    Field f's distinct global rows go to slots f*B .. f*B + counts[f] - 1 of
    rows_out, in batch order, and grads_out holds, per slot, the sum over that
    row's lookups of dL/de with the values of non-resident dimensions (>= d)
    dropped; dims_out the row's resident dimensions (the most any of its lookups read).
    Fields own disjoint global rows, so they are coalesced in parallel with the
    same result (and the same order of additions) as one at a time. `marker`
    (one int32 per global row, all -1 on entry and on return) maps a row to its
    slot without sorting.
    """
    B, F = idx.shape
    D = grads_out.shape[1]
    for f in numba.prange(F):
        base = f * B
        u = 0
        for b in range(B):
            r = offsets[f] + idx[b, f]
            s = marker[r]
            if s < 0:
                s = base + u
                marker[r] = s
                rows_out[s] = r
                for k in range(D):
                    grads_out[s, k] = 0.0
                dims_out[s] = 0
                u += 1
            keep = d[b, f]
            dims_out[s] = max(dims_out[s], keep)
            for k in range(keep):
                grads_out[s, k] += dT[b, start + f, k]
        counts[f] = u
        for i in range(base, base + u):
            marker[rows_out[i]] = -1


# ---------------------------------------------------------------- forward / backward

@dataclass
class Cache:
    """What the forward pass keeps for the backward pass."""

    bottom_h: list   # inputs of each bottom layer, then z (its output)
    top_h: list      # inputs of each top layer (after ReLU)
    T: np.ndarray    # (B, n, D) stacked interaction vectors
    logit: np.ndarray
    factors: tuple | None = None   # compositional embeddings: (first, second) (B, F, D) values before combining


def compose_factors(first: np.ndarray, second: np.ndarray, operation: str) -> np.ndarray:
    """The embedding two stored rows make together: their element-wise product ("mult") or sum ("add")."""
    return first * second if operation == "mult" else first + second


def factor_grads(dE: np.ndarray, first: np.ndarray, second: np.ndarray, operation: str) -> tuple:
    """(d first, d second) from the gradient dE of their combination: the product rule for "mult" (each factor's
    gradient is dE times the other factor), dE itself for both with "add"."""
    if operation == "mult":
        return dE * second, dE * first
    return dE, dE


@dataclass
class Grads:
    """Gradients of the mean loss. `dT[:, start:, :]` holds dL/de for every lookup (unmasked)."""

    bottom_w: list
    bottom_b: list
    top_w: list
    top_b: list
    dT: np.ndarray
    start: int       # 1 with dense features (T[:, 0] is z), else 0

    def mlp_arrays(self) -> list[np.ndarray]:
        return mlp_list(self.bottom_w, self.bottom_b, self.top_w, self.top_b)


def forward(p: Params, cfg: ModelConfig, dense: np.ndarray, idx: np.ndarray, d: np.ndarray,
            mm=np.matmul, compose: tuple | None = None) -> Cache:
    """Steps 1-4 of the module docstring: the logits of a batch and what backward needs.

    dense (B, M), idx (B, F) rows within each table, d (B, F) resident dimensions of each lookup.
    `mm(a, b)` computes the MLPs' matrix products (the trainer passes `threads.ThreadedMatmul`).
    `compose` (second (B, F) rows, -1 for none; operation): each embedding is the row of `idx` combined with
    the row of `second` (`compose_factors`; a lookup without a second row reads its first row alone).
    """
    dtype = p.emb.dtype
    B = idx.shape[0]
    # 1. bottom MLP
    bottom_h = []
    h = np.ascontiguousarray(dense, dtype=dtype)
    for w, b in zip(p.bottom_w, p.bottom_b):
        bottom_h.append(h)
        h = mm(h, w)
        h += b
        np.maximum(h, 0, out=h)
    start = 1 if cfg.dense > 0 else 0
    # 2. embedding lookup, written straight into the interaction stack
    T = np.empty((B, cfg.n_vectors, cfg.dim), dtype=dtype)
    if start:
        bottom_h.append(h)
        T[:, 0, :] = h
    gather(p.emb, p.offsets, idx, d, T, start)
    factors = None
    if compose is not None:
        second_idx, operation = compose
        S = np.empty_like(T)
        gather(p.emb, p.offsets, np.where(second_idx < 0, 0, second_idx), d, S, start)
        first, second = T[:, start:, :].copy(), S[:, start:, :]
        second[second_idx < 0] = 1 if operation == "mult" else 0   # no second row: the first alone
        T[:, start:, :] = compose_factors(first, second, operation)
        factors = (first, second)
    # 3. pairwise dot products, then the top MLP's input [z, pairs]
    top_in = np.empty((B, cfg.top_sizes()[0]), dtype=dtype)
    interact(T, top_in[:, start * cfg.dim:])
    if start:
        top_in[:, :cfg.dim] = h
    # 4. top MLP: ReLU on the hidden layers, linear output
    top_h = []
    h = top_in
    last = len(p.top_w) - 1
    for i, (w, b) in enumerate(zip(p.top_w, p.top_b)):
        top_h.append(h)
        h = mm(h, w)
        h += b
        if i < last:
            np.maximum(h, 0, out=h)
    return Cache(bottom_h=bottom_h, top_h=top_h, T=T, logit=h[:, 0], factors=factors)


def bce_with_logits(logit: np.ndarray, y: np.ndarray) -> float:
    """Step 5: mean binary cross-entropy of sigmoid(logit) against labels y in {0, 1} (float64 sum)."""
    z = logit.astype(np.float64)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def backward(p: Params, cfg: ModelConfig, cache: Cache, y: np.ndarray, mm=np.matmul) -> Grads:
    """Gradients of the mean loss, the forward steps in reverse.

    5. dL/dl = (sigmoid(l) - y) / B.
    4. top layer i (h_out = h_in W + b, ReLU on hidden outputs):
       dW = h_in^T g, db = sum_b g, dh_in = g W^T, and through the ReLU of the
       previous layer g = dh_in * (h_in > 0) (h_in is that ReLU's output, so
       h_in > 0 is exactly where the pre-activation was positive).
    3. top input [z, pairs] splits into dz (first D columns) and g_pairs;
       with the pairs Z_ij = T_i . T_j: dT_i = sum_j g_ij T_j over both roles
       (see `interact_backward`); dz gets dT_0 added.
    2. dL/de_f = dT_f for every lookup, masked only when the optimizer applies it
       (`coalesce`), so `chunk_norms` sees the whole gradient.
    1. bottom MLP like the top one, all layers with ReLU.
    """
    dtype = p.emb.dtype
    B = cache.logit.shape[0]
    start = 1 if cfg.dense > 0 else 0
    g = ((sigmoid(cache.logit) - y.astype(dtype)) / dtype.type(B)).astype(dtype)[:, None]
    # 4. top MLP
    n_top = len(p.top_w)
    top_w, top_b = [None] * n_top, [None] * n_top
    for i in range(n_top - 1, -1, -1):
        h_in = cache.top_h[i]
        top_w[i] = mm(h_in.T, g)
        top_b[i] = g.sum(axis=0)
        g = mm(g, p.top_w[i].T)
        if i > 0:
            g *= h_in > 0
    # 3. interaction
    dT = np.empty_like(cache.T)
    interact_backward(cache.T, np.ascontiguousarray(g[:, start * cfg.dim:]), dT)
    # 1. bottom MLP: dz = top input's z columns + dT_0
    n_bot = len(p.bottom_w)
    bottom_w, bottom_b = [None] * n_bot, [None] * n_bot
    if start:
        g = g[:, :cfg.dim] + dT[:, 0, :]
        g *= cache.bottom_h[-1] > 0   # the last bottom layer has a ReLU too
        for i in range(n_bot - 1, -1, -1):
            h_in = cache.bottom_h[i]
            bottom_w[i] = mm(h_in.T, g)
            bottom_b[i] = g.sum(axis=0)
            if i > 0:
                g = mm(g, p.bottom_w[i].T)
                g *= h_in > 0
    return Grads(bottom_w=bottom_w, bottom_b=bottom_b, top_w=top_w, top_b=top_b, dT=dT, start=start)


def full_residency(idx: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """d = K for every lookup: every chunk resident."""
    return np.full(idx.shape, cfg.chunks, dtype=np.int32)
