"""Training throughput: fiitedsim's NumPy/Numba DLRM trainer vs the same model in PyTorch (CPU), same run.

Target: ours >= 1.0x PyTorch's samples/s at batch 2048, D = 16, on the
synthetic data (26 fields of 100,000 rows, 13 dense features), with the same
model (bottom MLP 13-128-64-16, top MLP 367-256-128-1, pairwise dot
interaction) and the same optimizers (row-wise Adagrad on the embeddings,
Adam on the MLPs). The PyTorch side is the idiomatic fast CPU formulation: one
concatenated `nn.Embedding(sparse=True)` with per-field offsets, `bmm` for the
interaction, row-wise Adagrad on the coalesced sparse gradient, torch.optim.Adam.

Both sides train on the same batches in time order after `--warmup` untimed
steps. Each side runs in its own fresh Python process, one after the other,
with its threading as shipped: ours the way `fiitedsim train` runs its steps
(NumPy's BLAS single-threaded, the MLP products split over the trainer's
threads, idle OpenMP threads sleeping; see fiitedsim/train/threads.py),
PyTorch with its defaults. Separate processes because both sides configure
OpenMP when it first loads, and neither should inherit the other's setting.
Needs torch (the `test` extra): `pip install -e '.[test]'`.

    python benchmarks/bench_train.py [--steps 30] [--batch 2048]
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from contextlib import closing

import numpy as np
from common import load, machine_line, print_table, verdict

from fiitedsim.train.data import synthetic
from fiitedsim.train.loop import TrainConfig, Trainer, model_config
from fiitedsim.train.threads import blas_threads


def ours(ds, cfg: TrainConfig, steps: int, warmup: int) -> float:
    tr = Trainer(model_config(ds, cfg), cfg.lr_emb, cfg.lr_mlp, cfg.seed)
    B = cfg.batch
    with blas_threads(1), closing(tr):  # as `loop.train` runs its steps
        for s in range(warmup + steps):
            if s == warmup:
                t0 = time.perf_counter()
            lo = s * B
            tr.step(s, ds.dense[lo:lo + B], ds.sparse[lo:lo + B], ds.label[lo:lo + B])
    return steps * B / (time.perf_counter() - t0)


def torch_side(ds, cfg: TrainConfig, steps: int, warmup: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(cfg.seed)
    mc = model_config(ds, cfg)

    def mlp(sizes, last_relu):
        layers = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if last_relu or i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    emb = nn.Embedding(int(sum(mc.rows)), mc.dim, sparse=True)
    bottom, top = mlp(mc.bottom_sizes(), True), mlp(mc.top_sizes(), False)
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(mc.rows)[:-1]]), dtype=torch.int64)
    n = mc.n_vectors
    li, lj = torch.tril_indices(n, n, offset=-1)
    adam = torch.optim.Adam([*bottom.parameters(), *top.parameters()], lr=cfg.lr_mlp)
    acc = torch.zeros(emb.weight.shape[0])
    loss_fn = nn.BCEWithLogitsLoss()
    B = cfg.batch

    def step(s):
        lo = s * B
        x = torch.from_numpy(ds.dense[lo:lo + B])
        idx = torch.from_numpy(ds.sparse[lo:lo + B]).to(torch.int64) + offsets
        y = torch.from_numpy(ds.label[lo:lo + B])
        z = bottom(x)
        T = torch.cat([z[:, None, :], emb(idx)], dim=1)
        pairs = torch.bmm(T, T.transpose(1, 2))[:, li, lj]
        loss = loss_fn(top(torch.cat([z, pairs], dim=1))[:, 0], y)
        adam.zero_grad()
        emb.weight.grad = None
        loss.backward()
        adam.step()
        with torch.no_grad():  # row-wise Adagrad on the summed gradient of each looked-up row
            g = emb.weight.grad.coalesce()
            rows, vals = g.indices()[0], g.values()
            acc.index_add_(0, rows, vals.pow(2).mean(dim=1))
            emb.weight.index_add_(0, rows, -cfg.lr_emb * vals / (acc[rows].sqrt() + 1e-8)[:, None])

    for s in range(warmup + steps):
        if s == warmup:
            t0 = time.perf_counter()
        step(s)
    return steps * B / (time.perf_counter() - t0), torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--side", choices=["ours", "torch"], help=argparse.SUPPRESS)  # a child process: one side
    args = ap.parse_args()
    cfg = TrainConfig(batch=args.batch, dim=16)
    ds = synthetic(samples=(args.steps + args.warmup) * args.batch, fields=26, rows=args.rows, seed=0)
    if args.side == "ours":
        print(ours(ds, cfg, args.steps, args.warmup))
        return
    if args.side == "torch":
        print(*torch_side(ds, cfg, args.steps, args.warmup))
        return
    print(machine_line())
    mc = model_config(ds, cfg)
    print(f"model: bottom {mc.bottom_sizes()}, top {mc.top_sizes()}, 26 tables x {args.rows:,} rows, D = 16; "
          f"batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up")
    print(f"load before: {load()}")

    def side(name: str) -> list[float]:
        cmd = [sys.executable, __file__, "--side", name, *sys.argv[1:]]
        return [float(x) for x in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()]

    (ours_sps,) = side("ours")
    torch_sps, threads = side("torch")
    threads = int(threads)
    print(f"load after: {load()}")
    print_table(["trainer", "samples/s"], [["fiitedsim (NumPy + Numba)", f"{ours_sps:,.0f}"],
                                           [f"PyTorch CPU ({threads} threads)", f"{torch_sps:,.0f}"]])
    ratio = ours_sps / torch_sps
    print(f"ratio {ratio:.2f}x (target >= 1.0x): {verdict(ratio >= 1.0)}")


if __name__ == "__main__":
    main()
