"""Accuracy under each storage policy over seeds, on real data (MovieLens-100k) or on the synthetic task.

Budgets are given as shares of the *touched* dense size: the fp32 bytes of the
rows that the training split actually looks up (sum over fields of distinct
rows x D x 4), so a real data set whose hashed tables are mostly empty and a
synthetic one whose rows are mostly used are compared at the same pressure on
the rows that matter. For each seed (MovieLens: the model's start; synthetic:
the task's draw and the model's start, as `fiitedsim train --seed`), `full`
is trained once and `fiited`, `row-prune` and `uniform-dim` once per budget
(`uniform-dim` once per distinct stored layout: budgets at which it stores
the same bytes train the same model), through `train.runner.run_all`.

Trainer settings: D 16, C 4, `--rows` 100,000, `--batch` (MovieLens 512,
synthetic 2048), one epoch, `--interval` = min(100, max(1, training steps //
10)) so about ten pruning rounds run, and about 20 evaluations
(`eval_every` = max(1, steps // 20); `--evals N` for N). Everything else is the trainer's and the
engine's default except `--page-bytes` (MovieLens 1024: its budgets are a few
KiB).

Printed first, per seed, the task's statistics (`task_stats`: lookups per
touched row, the lookup share of the most-looked-up rows, each field's AUC
alone); `--stats-only` stops there. Then: mean AUC and standard deviation
over seeds per policy and budget,
every seed's `fiited - row-prune` and `fiited - full`, and the ranking of the
policies by mean AUC per budget. `--json FILE` keeps every figure.

    python benchmarks/bench_calibration.py --data movielens --seeds 0,1,2
    python benchmarks/bench_calibration.py --data synthetic --samples 400000 --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time

import numpy as np
from common import load, machine_line, print_table

from fiitedsim.config import ReplayConfig
from fiitedsim.plan import run_key
from fiitedsim.replay import parse_budgets
from fiitedsim.train.data import read_movielens, synthetic
from fiitedsim.train.engine_hook import EngineResidency, train_tables
from fiitedsim.train.loop import TrainConfig
from fiitedsim.train.runner import run_all

POLICIES = ("fiited", "row-prune", "uniform-dim")
DIM, CHUNK, ROWS = 16, 4, 100_000


def touched_bytes(ds, dim: int = DIM) -> tuple[int, list[int]]:
    """fp32 bytes of the rows the training split looks up, and the distinct rows per field."""
    tr = ds.split()[0]
    distinct = [int(np.unique(ds.sparse[tr, f]).size) for f in range(ds.sparse.shape[1])]
    return sum(distinct) * dim * 4, distinct


def task_stats(ds) -> dict:
    """How the training split looks its rows up, and how much each field alone tells (no model involved).

    Per touched row (field, row): lookups in the training split; their mean and
    median, the share of touched rows seen fewer than 5 / 20 times, and the
    share of all lookups that the most-looked-up 2% ... 64% of the touched rows
    take. Per field: distinct rows, and the evaluation-split AUC of each
    value's click rate in the training split, shrunk toward the mean click rate
    with 10 pseudo-samples (a value never seen scores the mean).
    """
    from fiitedsim.train.metrics import auc
    tr, ev = ds.split()
    counts, fields = [], []
    y, y_ev = ds.label[tr], ds.label[ev]
    prior = float(y.mean())
    for f in range(ds.sparse.shape[1]):
        n = np.bincount(ds.sparse[tr, f], minlength=ds.rows[f])
        clicks = np.bincount(ds.sparse[tr, f], weights=y, minlength=ds.rows[f])
        rate = (clicks + 10 * prior) / (n + 10)
        counts.append(n[n > 0])
        fields.append({"distinct": int((n > 0).sum()), "alone_auc": float(auc(y_ev, rate[ds.sparse[ev, f]]))})
    c = np.sort(np.concatenate(counts))[::-1]
    cum = np.cumsum(c) / c.sum()
    top = {str(q): float(cum[max(0, int(q * c.size) - 1)]) for q in (0.02, 0.04, 0.08, 0.16, 0.32, 0.64)}
    return {"touched_rows": int(c.size), "lookups": int(c.sum()), "mean": float(c.mean()),
            "median": float(np.median(c)), "below5": float(np.mean(c < 5)), "below20": float(np.mean(c < 20)),
            "top_share": top, "fields": fields, "positives": float(ds.label.mean())}


def print_stats(st: dict) -> None:
    print(f"  touched rows {st['touched_rows']:,}, lookups per touched row: mean {st['mean']:.1f}, median "
          f"{st['median']:.0f}, seen < 5 times {st['below5']:.3f}, < 20 times {st['below20']:.3f}; the top "
          f"2/4/8/16/32/64% of touched rows take " + " / ".join(f"{v:.3f}" for v in st["top_share"].values())
          + " of the lookups", flush=True)
    print("  each field alone (distinct rows: AUC): " + ", ".join(
        f"{f['distinct']:,}: {f['alone_auc']:.3f}" for f in st["fields"]), flush=True)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return load()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("movielens", "synthetic"), required=True)
    ap.add_argument("--samples", type=int, default=None, help="synthetic: samples (default 2,000,000)")
    ap.add_argument("--fields", type=int, default=26, help="synthetic: fields")
    ap.add_argument("--shares", default="0.02,0.04,0.08,0.16,0.32,0.64",
                    help="budgets as shares of the touched dense size")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--batch", type=int, default=None, help="default: MovieLens 512, synthetic 2048")
    ap.add_argument("--page-bytes", type=int, default=None, help="default: MovieLens 1024, synthetic 65536")
    ap.add_argument("--policies", default=",".join(POLICIES), help="besides full, which always runs")
    ap.add_argument("--evals", type=int, default=20, help="evaluations per run, about (eval_every = steps // N)")
    ap.add_argument("--stats-only", action="store_true", help="print the task statistics of each seed, train nothing")
    ap.add_argument("--json", default=None, help="write every figure to this file")
    args = ap.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    movielens = args.data == "movielens"
    batch = args.batch or (512 if movielens else 2048)
    page_bytes = args.page_bytes or (1024 if movielens else 65536)
    print(machine_line())
    print(f"uptime before: {uptime()}")
    t_all = time.perf_counter()
    results = {"data": args.data, "shares": shares, "seeds": seeds, "batch": batch, "page_bytes": page_bytes,
               "evals": args.evals,
               "runs": {}, "per_seed": {}}
    data_ml = read_movielens(None, rows=ROWS) if movielens else None
    for seed in seeds:
        t0 = time.perf_counter()
        ds = data_ml if movielens else synthetic(samples=args.samples or 2_000_000, fields=args.fields, rows=ROWS,
                                                 dim=DIM, seed=seed)
        gen_s = time.perf_counter() - t0
        tr = ds.split()[0]
        steps = math.ceil((tr.stop - tr.start) / batch)
        interval = min(100, max(1, steps // 10))
        eval_every = max(1, steps // args.evals)
        touched, distinct = touched_bytes(ds)
        budgets = {s: f"{max(1, math.floor(s * touched))}B" for s in shares}
        dense = sum(ds.rows) * DIM * 4
        info = {"samples": len(ds), "train_samples": tr.stop - tr.start, "steps": steps, "interval": interval,
                "eval_every": eval_every, "touched_bytes": touched, "distinct_rows": distinct, "dense_bytes": dense,
                "generate_seconds": gen_s, "budget_bytes": {str(s): int(b[:-1]) for s, b in budgets.items()},
                "positive_rate": float(ds.label.mean())}
        results["per_seed"][str(seed)] = info
        print(f"seed {seed}: {len(ds):,} samples ({info['train_samples']:,} trained), {len(ds.rows)} fields, "
              f"{steps} steps of {batch}, interval {interval}, eval every {eval_every}; touched rows "
              f"{sum(distinct):,} ({touched:,} B = {touched / dense:.4f} of the dense {dense:,} B); "
              f"positives {info['positive_rate']:.4f}; data {gen_s:.1f} s", flush=True)
        info["stats"] = task_stats(ds)
        print_stats(info["stats"])
        if args.stats_only:
            continue
        tcfg = TrainConfig(dim=DIM, chunk=CHUNK, batch=batch, eval_every=eval_every, seed=seed)
        rcfg = ReplayConfig(interval=interval, page_bytes=page_bytes)
        t1 = time.perf_counter()
        out = run_all(ds, args.data, ["full"], budgets[shares[-1]], tcfg, rcfg).summary
        run = next(iter(out["policies"].values()))
        results["runs"][f"full/{seed}"] = {**run, "teacher_auc": out["teacher_auc"]}
        print(f"  full: AUC {run['auc']:.4f} ({time.perf_counter() - t1:.0f} s)"
              + (f"; teacher {out['teacher_auc']:.4f}" if out["teacher_auc"] is not None else ""), flush=True)
        static = {}   # uniform-dim's stored bytes -> its run: budgets that store the same layout train once
        for share in shares:
            t1 = time.perf_counter()
            todo = [p for p in policies if p != "uniform-dim"]
            if "uniform-dim" in policies:
                tables = train_tables(ds.rows, DIM, CHUNK, ds.sparse_names)
                [(_, b)] = parse_budgets(budgets[share], tables)
                stored = EngineResidency.build("uniform-dim", tables, rcfg.with_budget(b)).policy.payload_bytes
                if stored in static:
                    results["runs"][f"uniform-dim@{share}/{seed}"] = static[stored]
                else:
                    todo.append("uniform-dim")
            out = run_all(ds, args.data, todo, budgets[share], tcfg, rcfg).summary
            for p in todo:
                results["runs"][f"{p}@{share}/{seed}"] = out["policies"][run_key(p, budgets[share])]
                if p == "uniform-dim":
                    static[stored] = out["policies"][run_key(p, budgets[share])]
            print(f"  share {share} ({budgets[share]}): " + ", ".join(
                f"{p} {results['runs'][f'{p}@{share}/{seed}']['auc']:.4f}" for p in policies)
                + f" ({time.perf_counter() - t1:.0f} s)", flush=True)
    results["seconds"] = time.perf_counter() - t_all
    if args.stats_only:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=1)
        return
    report(results, policies)
    print(f"uptime after: {uptime()}; {results['seconds']:.0f} s in all")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


def report(results: dict, policies: list[str]) -> None:
    seeds, runs = results["seeds"], results["runs"]
    full = np.array([runs[f"full/{s}"]["auc"] for s in seeds])

    def ms(x: np.ndarray) -> str:
        return f"{x.mean():.4f} ± {x.std(ddof=1):.4f}" if len(x) > 1 else f"{x.mean():.4f}"
    print(f"\nfull: {ms(full)} (seeds {', '.join(f'{a:.4f}' for a in full)})")
    rows, ranks, diffs = [], [], []
    for share in results["shares"]:
        auc = {p: np.array([runs[f"{p}@{share}/{s}"]["auc"] for s in seeds]) for p in policies}
        auc["full"] = full
        kib = np.mean([results["per_seed"][str(s)]["budget_bytes"][str(share)] for s in seeds]) / 1024
        rows.append([f"{share} ({kib:,.1f} KiB)"] + [ms(auc[p]) for p in (*policies, "full")])
        order = sorted(auc, key=lambda p: -auc[p].mean())
        ranks.append([str(share), " > ".join(order)])
        if "fiited" in auc and "row-prune" in auc:
            d = auc["fiited"] - auc["row-prune"]
            f = auc["fiited"] - full
            diffs.append([str(share), " ".join(f"{x:+.4f}" for x in d), ms(d), " ".join(f"{x:+.4f}" for x in f),
                          ms(f)])
    print_table(["share of touched (budget)", *(f"{p} AUC" for p in policies), "full AUC"], rows,
                title=f"mean ± sd over seeds {seeds}")
    print_table(["share", "fiited - row-prune per seed", "mean ± sd", "fiited - full per seed", "mean ± sd"], diffs)
    print_table(["share", "ranking by mean AUC"], ranks)


if __name__ == "__main__":
    sys.exit(main())
