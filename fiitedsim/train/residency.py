"""The residency hook: how the trainer asks a storage policy which embedding dimensions exist.

Every embedding row is D values, K = D / C chunks of C. A policy keeps a
prefix of each row resident: dimensions 0..d-1, d in 0..D (a multiple of C for
the chunk policies, any number for `uniform-dim` and `mde`). The trainer
talks to the policy through three calls (and an optional fourth); lookups are
always passed as flat arrays in the trace's order (all lookups of table 0 in
batch order, then table 1, ...):

    d, resets = hook.lookup(step, table, row)
        Before the forward pass of `step`. Returns d (int, one per lookup): the
        resident dimensions the forward pass may read. `resets` (or None) lists
        chunks whose stored values must be set to zero now (freed or newly
        admitted ones: an admitted chunk starts at zero).
    resets = hook.feedback(step, table, row, grad_norm)
        After the backward pass and the optimizer update of `step`. grad_norm is
        (lookups, K) float32, the L2 norm of each chunk of each lookup's
        gradient (the trace's `grad_norm` column; see `model.chunk_norms`).
        `resets` lists chunks to zero, as for `lookup`.
    d = hook.resident(table, row)
        Side-effect free: what is resident now (used for evaluation).
    rows = hook.remap(table, row)        (optional)
        The stored row each lookup reads, where rows share storage (`hash`);
        without it every lookup reads its own row.
    first, second = hook.compose(table, row)   (optional, with `operation`)
        Compositional embeddings (`qr`): each lookup reads the combination of
        two stored rows of its table, `first` and `second` (-1: none, the first
        alone), combined by `hook.operation` ("mult", element-wise product, or
        "add"); each factor gets its share of the gradient (the product rule).
    hook.initialise(emb, offsets, seed)       (optional)
        Sets the initial values of the rows the policy stores where they differ
        from the model's (the factors of `qr`); called once, before training.

The trainer reads non-resident chunks as zeros, gives them no update, and zeroes
the stored values of every chunk in `resets`. `FullResidency` keeps everything;
`engine_hook.EngineResidency` runs the replay policies (FIITED frees chunks in
the pruning round it runs at `lookup` and admits at `feedback`).
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


class Resets(NamedTuple):
    """Chunks whose stored values the trainer must set to zero: (table, row, chunk) triples."""

    table: np.ndarray   # int32
    row: np.ndarray     # int64
    chunk: np.ndarray   # int16, 0..K-1


class ResidencyHook(Protocol):
    chunks: int  # K, chunks per row
    dim: int     # D, dimensions per row

    def lookup(self, step: int, table: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, Resets | None]: ...

    def feedback(self, step: int, table: np.ndarray, row: np.ndarray,
                 grad_norm: np.ndarray) -> Resets | None: ...

    def resident(self, table: np.ndarray, row: np.ndarray) -> np.ndarray: ...


class FullResidency:
    """Everything resident, nothing ever freed: plain training (the `full` policy)."""

    def __init__(self, chunks: int, dim: int):
        self.chunks, self.dim = chunks, dim

    def lookup(self, step, table, row):
        return np.full(row.shape[0], self.dim, dtype=np.int32), None

    def feedback(self, step, table, row, grad_norm):
        return None

    def resident(self, table, row):
        return np.full(row.shape[0], self.dim, dtype=np.int32)


class PrefixResidency:
    """A test hook: row r of table t keeps `dims(t, r)` dimensions (vectorised), frees what `frees[step]` says.

    Records every call in `calls` so tests can check what the trainer reported.
    """

    def __init__(self, chunks: int, dim: int, dims, frees: dict[int, Resets] | None = None,
                 admits: dict[int, Resets] | None = None):
        self.chunks, self.dim, self.dims = chunks, dim, dims
        self.frees, self.admits = frees or {}, admits or {}
        self.calls: list[tuple] = []

    def lookup(self, step, table, row):
        self.calls.append(("lookup", step, table.copy(), row.copy()))
        return self.resident(table, row), self.admits.get(step)

    def feedback(self, step, table, row, grad_norm):
        self.calls.append(("feedback", step, table.copy(), row.copy(), grad_norm.copy()))
        return self.frees.get(step)

    def resident(self, table, row):
        return np.asarray(self.dims(table, row), dtype=np.int32)
