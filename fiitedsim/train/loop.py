"""The training loop: time-ordered batches, a residency hook around every step, periodic evaluation.

One step of `Trainer.step`, in this order:
1. hook.lookup -> d per lookup, its resident dimensions (and chunks to zero,
   which are zeroed now); hook.remap, if the hook has it, -> the stored row
   each lookup reads (rows that share storage: `hash`);
2. forward with dimensions >= d read as zeros; loss; backward;
3. per-chunk gradient norms of every lookup (float32, the trace's grad_norm);
4. row-wise Adagrad on the embeddings (masked: non-resident dimensions get no
   update), Adam on the MLPs;
5. hook.feedback(step, table, row, grad_norm) (and chunks to zero, zeroed now).

Deterministic: parameters come from `seed`, batches are taken in file (time)
order without shuffling, and every kernel sums in a fixed order.
"""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..config import TrainConfig  # noqa: F401 (its home before; the trainer's users import it here)
from ..errors import InputError
from .data import Dataset
from .metrics import auc, log_loss
from .model import (
    ModelConfig,
    backward,
    bce_with_logits,
    chunk_norms,
    factor_grads,
    forward,
    init_params,
    sigmoid,
)
from .optim import Adam, RowWiseAdagrad
from .residency import FullResidency, Resets, ResidencyHook
from .threads import ThreadedMatmul, blas_threads


@dataclass
class TrainResult:
    auc: float
    logloss: float
    samples: int                      # training samples processed
    steps: int
    seconds: float                    # training time, evaluations excluded
    teacher_auc: float | None         # synthetic data: AUC of the planted P(click) on the eval split
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Model parameters, optimizers and a residency hook; `step` trains on one batch."""

    def __init__(self, model: ModelConfig, lr_emb: float = 0.05, lr_mlp: float = 1e-3, seed: int = 0,
                 hook: ResidencyHook | None = None, dtype=np.float32):
        self.hook = hook if hook is not None else FullResidency(model.chunks, model.dim)
        self.cfg = model = replace(model, extra_rows=getattr(self.hook, "extra_rows", 0))
        self.p = init_params(model, seed, dtype)
        if self.hook.chunks != model.chunks:
            raise ValueError(f"hook has {self.hook.chunks} chunks per row, the model {model.chunks}")
        self._remap = getattr(self.hook, "remap", None)
        self._compose = getattr(self.hook, "compose", None)
        self._copies = getattr(self.hook, "copies", None)
        if hasattr(self.hook, "initialise"):
            self.hook.initialise(self.p.emb, self.p.offsets, seed)
        self.adagrad = RowWiseAdagrad(self.p.emb, lr=lr_emb)
        self.adam = Adam(self.p.mlp_arrays(), lr=lr_mlp)
        self.mm = ThreadedMatmul()   # the MLP products; run steps inside `threads.blas_threads(1)`

    def close(self) -> None:
        """Stop the matrix-product threads."""
        self.mm.close()

    def _lookups(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(table, row) of a batch's lookups in trace order: table-major, batch order inside a table."""
        B, F = idx.shape
        return np.repeat(np.arange(F, dtype=np.int32), B), np.ascontiguousarray(idx.T).reshape(-1).astype(np.int64)

    def _as_batch(self, d: np.ndarray, B: int) -> np.ndarray:
        """Trace-ordered values (F*B) as a (B, F) array."""
        return np.ascontiguousarray(np.asarray(d).reshape(self.cfg.fields, B).T)

    def _stored(self, idx: np.ndarray, table: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, tuple | None]:
        """The stored rows a batch reads: its own rows, or the hook's shared ones (`remap`); with compositional
        embeddings the first rows and (second rows, operation) as `model.forward` takes them."""
        if self._compose is not None:
            first, second = self._compose(table, row)
            B = idx.shape[0]
            return self._as_batch(first, B), (self._as_batch(second, B), self.hook.operation)
        if self._remap is None:
            return idx, None
        return self._as_batch(self._remap(table, row), idx.shape[0]), None

    def zero(self, resets: Resets | None) -> None:
        """Set the stored values of the listed chunks to zero."""
        if resets is None or len(resets.row) == 0:
            return
        C = self.cfg.chunk
        rows = self.p.offsets[np.asarray(resets.table, dtype=np.int64)] + np.asarray(resets.row, dtype=np.int64)
        cols = np.asarray(resets.chunk, dtype=np.int64)[:, None] * C + np.arange(C)
        self.p.emb[rows[:, None], cols] = 0

    def step(self, step: int, dense: np.ndarray, idx: np.ndarray, y: np.ndarray) -> float:
        """Train on one batch; return its mean loss (before the update)."""
        B = idx.shape[0]
        table, row = self._lookups(idx)
        d, resets = self.hook.lookup(step, table, row)
        self.zero(resets)
        if self._copies is not None:   # stored rows the policy moved since the last step (`cafe`'s promotions)
            source, target = self._copies()
            self.p.emb[target] = self.p.emb[source]
            self.adagrad.acc[target] = self.adagrad.acc[source]
        d = self._as_batch(np.clip(d, 0, self.cfg.dim).astype(np.int32), B)
        stored, compose = self._stored(idx, table, row)
        cache = forward(self.p, self.cfg, dense, stored, d, self.mm, compose)
        loss = bce_with_logits(cache.logit, y)
        g = backward(self.p, self.cfg, cache, y, self.mm)
        norms = np.empty((self.cfg.fields, B, self.cfg.chunks), dtype=np.float32)
        chunk_norms(g.dT, g.start, self.cfg.chunk, norms)
        if compose is None:
            self.adagrad.step(self.p.emb, self.p.offsets, stored, d, g.dT, g.start)
        else:   # each factor row gets its share of the gradient (`model.factor_grads`)
            second, operation = compose
            d_first, d_second = factor_grads(g.dT[:, g.start:, :], *cache.factors, operation)
            for rows, grad, dims in ((stored, d_first, d), (np.where(second < 0, 0, second), d_second,
                                                           np.where(second < 0, 0, d))):
                dT = g.dT.copy()
                dT[:, g.start:, :] = grad
                self.adagrad.step(self.p.emb, self.p.offsets, rows, dims, dT, g.start)
        self.adam.step(g.mlp_arrays())
        self.zero(self.hook.feedback(step, table, row, norms.reshape(-1, self.cfg.chunks)))
        return loss

    def predict(self, dense: np.ndarray, idx: np.ndarray, batch: int = 8192) -> np.ndarray:
        """P(click) of each sample with the currently resident chunks (float64)."""
        out = np.empty(idx.shape[0])
        for lo in range(0, idx.shape[0], batch):
            i = np.ascontiguousarray(idx[lo:lo + batch])
            table, row = self._lookups(i)
            d = self._as_batch(np.clip(self.hook.resident(table, row), 0, self.cfg.dim).astype(np.int32), i.shape[0])
            stored, compose = self._stored(i, table, row)
            out[lo:lo + batch] = sigmoid(forward(self.p, self.cfg, dense[lo:lo + batch], stored, d, self.mm,
                                                 compose).logit.astype(np.float64))
        return out


def check_finite(trainer: Trainer, losses: list[float], prob: np.ndarray, step: int, ds: Dataset) -> None:
    """The model is still numbers after `step` steps: the losses since the last evaluation, the evaluation's
    predictions, the parameters and the optimizers' state are finite. A model that overflowed float32 would
    predict one class and report a meaningless AUC: an InputError says what to change instead."""
    state = [trainer.p.emb, trainer.adagrad.acc, *trainer.p.mlp_arrays(), *trainer.adam.m, *trainer.adam.v]
    if np.isfinite(losses).all() and np.isfinite(prob).all() and all(np.isfinite(a).all() for a in state):
        return
    largest = ""
    if ds.dense.shape[1]:
        biggest = np.abs(ds.dense).max(axis=0)
        j = int(np.argmax(biggest))
        largest = f" (the largest dense value is {float(biggest[j]):.4g}, in column {ds.dense_names[j]!r})"
    raise InputError(f"training overflowed the float32 model by step {step:,}: its loss, gradients or parameters "
                     f"are no longer finite numbers; scale the dense features{largest} or lower --lr-mlp / --lr-emb")


#: Evaluations and pruning rounds a run gets when `eval_every` / `interval` are not set, so that a small data
#: set still shows an AUC curve and still prunes (and a large one does not evaluate or prune needlessly often).
AUTO_EVALS, AUTO_ROUNDS, MAX_AUTO_INTERVAL = 20, 10, 100


def total_steps(cfg: TrainConfig, n_train: int) -> int:
    """Training steps of a run over `n_train` training samples."""
    return cfg.steps if cfg.steps is not None else cfg.epochs * -(-n_train // cfg.batch)


def schedule(cfg: TrainConfig, steps: int) -> TrainConfig:
    """`cfg` with `eval_every` and `interval` set: as given, or from the run's length when None.

    eval_every = ceil(steps / 20) (about 20 evaluations, the last one at the end); interval =
    min(100, max(1, steps // 10)) (about 10 pruning rounds, never more often than replay's default
    allows on long runs).
    """
    eval_every = cfg.eval_every if cfg.eval_every is not None else max(1, -(-steps // AUTO_EVALS))
    interval = cfg.interval if cfg.interval is not None else min(MAX_AUTO_INTERVAL, max(1, steps // AUTO_ROUNDS))
    return replace(cfg, eval_every=eval_every, interval=interval)


def model_config(ds: Dataset, cfg: TrainConfig) -> ModelConfig:
    return ModelConfig(rows=tuple(ds.rows), dense=ds.dense.shape[1], dim=cfg.dim, chunk=cfg.chunk,
                       bottom=tuple(cfg.bottom), top=tuple(cfg.top))


def train(ds: Dataset, cfg: TrainConfig, hook: ResidencyHook | None = None, progress=None,
          eval_extra=None) -> TrainResult:
    """Train on the first 90% of `ds` in time order, evaluate on the last 10% every `eval_every` steps.

    `progress(done_steps, total_steps)` is called after every step if given;
    `eval_extra()` (a dict, e.g. the storage policy's memory now) is merged into
    every evaluation's history entry, so accuracy and memory line up per step.
    """
    tr, ev = ds.split(cfg.eval_fraction)
    n_train = tr.stop - tr.start
    if n_train < 1 or ev.stop - ev.start < 1:
        raise ValueError("need at least 2 samples (one to train on, one to evaluate)")
    trainer = Trainer(model_config(ds, cfg), cfg.lr_emb, cfg.lr_mlp, cfg.seed, hook)
    per_epoch = -(-n_train // cfg.batch)
    total = total_steps(cfg, n_train)
    cfg = schedule(cfg, total)
    y_ev = ds.label[ev]
    teacher_auc = auc(y_ev, ds.teacher_prob[ev]) if ds.teacher_prob is not None else None
    history, losses = [], []
    seconds, samples = 0.0, 0
    ev_auc = ev_ll = float("nan")
    # threads.py: BLAS single-threaded, the trainer's own threads split the products. Floating-point overflow
    # is not warned about: `check_finite` turns a model it broke into one error
    with blas_threads(1), closing(trainer), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for s in range(total):
            lo = (s % per_epoch) * cfg.batch
            hi = min(lo + cfg.batch, n_train)
            t0 = time.perf_counter()
            losses.append(trainer.step(s, ds.dense[lo:hi], ds.sparse[lo:hi], ds.label[lo:hi]))
            seconds += time.perf_counter() - t0
            samples += hi - lo
            if progress is not None:
                progress(s + 1, total)
            if (s + 1) % cfg.eval_every == 0 or s + 1 == total:
                prob = trainer.predict(ds.dense[ev], ds.sparse[ev])
                check_finite(trainer, losses, prob, s + 1, ds)
                ev_auc, ev_ll = auc(y_ev, prob), log_loss(y_ev, prob)
                history.append({"step": s + 1, "samples": samples, "train_loss": float(np.mean(losses)),
                                "auc": ev_auc, "logloss": ev_ll, **(eval_extra() if eval_extra is not None else {})})
                losses = []
    return TrainResult(auc=ev_auc, logloss=ev_ll, samples=samples, steps=total, seconds=seconds,
                       teacher_auc=teacher_auc, history=history)


def config_dict(cfg: TrainConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
