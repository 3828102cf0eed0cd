"""What a range of commits adds to the run time of `bench_sweep.py` and `bench_train.py`: this tree against REV.

Target (the comparisons issue): everything it added costs at most 10% of the run time of
`bench_sweep.py` (four budgets x every policy in one `fiitedsim replay` of the 20M-lookup
benchmark trace) and of `bench_train.py` (fiitedsim's trainer, samples/s at batch 2048).

The same two workloads run under REV and each tree measured (the working tree, or the commits
given with `--this`), each run a fresh process, each tree going first in turn, `--repeat` times;
the figure is the ratio of the medians (tree / REV), best runs printed too:

* **sweep**: `fiitedsim replay TRACE --policy P --budget 0.02,0.05,0.10,0.25 --json -q`, the
  command `bench_sweep.py` times, as a user runs it (start-up, decoding, every policy and budget).
  P is REV's `--policy all` set (default `fiited,row-prune,uniform-dim,uniform-row,full,lru,lfu`,
  the set of 65e3afb) for both trees, so both do the same work; this tree's `all` (which adds
  `hash` and `mde`, a second pass over the trace) is timed once more as information.
* **train**: `bench_train.py --side ours` (the trainer's step loop at full residency, samples/s),
  the script of each tree with its own package.

REV's package and benchmark scripts come from `git archive` (benchmarks/out/rev-HASH/, reused);
each child runs with PYTHONPATH at its tree and checks which `fiitedsim` it imported. Kernel
caches are warmed by one untimed run per tree first.

    python benchmarks/bench_overhead.py --against 65e3afb [--this REV --this .] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import extract_rev, worker_env  # noqa: E402

TARGET = 1.10
BUDGETS = "0.02,0.05,0.10,0.25"
OLD_ALL = "fiited,row-prune,uniform-dim,uniform-row,full,lru,lfu"


def cli_run(root: Path, argv: list[str]) -> float:
    """Wall seconds of `fiitedsim ARGV` run by `root`'s package in a fresh process (from a temporary folder,
    so no checkout in the working directory shadows PYTHONPATH)."""
    with tempfile.TemporaryDirectory(prefix="fiitedsim-overhead-") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run(common.cli_command(root, argv), env=worker_env(root, own_cache=True), cwd=tmp,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"fiitedsim {' '.join(argv)} under {root} failed:\n{proc.stderr[-3000:]}")
    return wall


def train_run(root: Path, steps: int) -> float:
    """Samples/s of `root`'s `benchmarks/bench_train.py --side ours`, a fresh process."""
    script = root / "benchmarks" / "bench_train.py"
    check = f"import fiitedsim; assert fiitedsim.__file__.startswith({str(root.resolve())!r}), fiitedsim.__file__"
    code = (f"{check}; import runpy, sys; sys.path.insert(0, {str(script.parent)!r}); "
            f"sys.argv = [{str(script)!r}, '--side', 'ours', '--steps', '{steps}']; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')")
    with tempfile.TemporaryDirectory(prefix="fiitedsim-overhead-") as tmp:
        proc = subprocess.run([sys.executable, "-c", code], env=worker_env(root, own_cache=True), cwd=tmp,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_train.py --side ours under {root} failed:\n{proc.stderr[-3000:]}")
    return float(proc.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="the commit to compare with (the issue: 65e3afb)")
    ap.add_argument("--this", action="append", default=None, metavar="REV",
                    help="a commit to measure instead of the working tree ('.'); repeat to measure several in the "
                    "same run, e.g. the last commit before a later change that would hide this one's cost")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tree and workload (default 3)")
    ap.add_argument("--policy", default=OLD_ALL, help=f"the sweep's policies for every tree (default {OLD_ALL})")
    ap.add_argument("--train-steps", type=int, default=30, help="bench_train.py --steps (default 30)")
    ap.add_argument("--skip", choices=["sweep", "train"], help="leave one workload out")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()

    print(common.machine_line())
    print(f"load before: {common.load()}")
    rev = args.against
    trees = {rev: extract_rev(rev)[0]}
    for name in args.this or ["."]:
        if name == ".":
            trees[f"{common.git_rev()} (tree)"] = common.REPO
        else:
            trees[name] = extract_rev(name)[0]
    for name, root in trees.items():
        print(f"tree {name}: {root}")
    trace = common.ensure_trace(None, common.STEPS_20M)
    sweep_argv = ["replay", str(trace), "--policy", args.policy, "--budget", BUDGETS, "--json", "-q"]
    tiny = ["replay", "--policy", args.policy, "--budget", "0.1", "-q"]  # the shipped sample: warms the kernels
    record: dict = {"against": rev, "trees": list(trees), "repeat": args.repeat, "machine": common.machine_line()}

    for name, root in trees.items():
        cli_run(root, tiny)
        if args.skip != "train":
            train_run(root, 2)
    works = [w for w in ("sweep", "train") if w != args.skip]
    times: dict[str, dict[str, list[float]]] = {w: {n: [] for n in trees} for w in works}
    for i in range(args.repeat):
        order = list(trees)[i % len(trees):] + list(trees)[:i % len(trees)]  # each tree goes first in turn
        for work in works:
            for name in order:
                if work == "sweep":
                    times[work][name].append(cli_run(trees[name], sweep_argv))
                    print(f"  run {i + 1}: sweep under {name}: {times[work][name][-1]:.1f} s", flush=True)
                else:
                    times[work][name].append(train_run(trees[name], args.train_steps))
                    print(f"  run {i + 1}: train under {name}: {times[work][name][-1]:,.0f} samples/s", flush=True)
    all_now = None
    if "sweep" in works:
        all_now = cli_run(list(trees.values())[-1],
                          ["replay", str(trace), "--policy", "all", "--budget", BUDGETS, "--json", "-q"])

    rows, results = [], {}
    for work in works:
        unit = "s" if work == "sweep" else "samples/s"
        med = {n: statistics.median(v) for n, v in times[work].items()}
        best = {n: (min(v) if work == "sweep" else max(v)) for n, v in times[work].items()}
        for name in list(trees)[1:]:
            # run time of the tree / REV's (training: samples/s, so the inverse)
            ratio = med[name] / med[rev] if work == "sweep" else med[rev] / med[name]
            rows.append([work, name, unit, f"{med[name]:,.1f} (best {best[name]:,.1f})",
                         f"{med[rev]:,.1f} (best {best[rev]:,.1f})", f"{ratio:.3f}", common.verdict(ratio <= TARGET)])
            results.setdefault(work, {"runs": times[work]})[name] = ratio
    common.print_table(["workload", "tree", "unit", "tree (median)", f"{rev} (median)", f"run time tree / {rev}",
                        f"<= {TARGET:.2f}"], rows)
    for work, res in results.items():
        for name in list(trees)[1:]:
            print(f"RESULT {work}: run time {name} / {rev} = {res[name]:.3f} (target <= {TARGET:.2f}): "
                  f"{common.verdict(res[name] <= TARGET)}")
    if all_now is not None:
        print(f"note: {list(trees)[-1]} with --policy all (adds hash and mde; mde reads the trace twice): "
              f"{all_now:.1f} s")
        record["sweep_all_s"] = all_now
    print(f"load after: {common.load()}")
    record.update(results)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
