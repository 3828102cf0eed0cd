"""A 24-point `fiitedsim sweep` on the local cores against the same 24 points one after another in one process.

Target (issue 5): a 24-point sweep on the 2 local cores takes <= 0.6x the time of running the points one
after another.

The grid: the benchmark trace's generator (Zipf 1.05, 4 tables x 2.5M rows, D = 64, C = 8, grad_norm) at
`--steps` steps (default 400: 6.6M lookups, so each point takes seconds and the cluster's start-up is
amortised as it would be in a real sweep), policies fiited and row-prune (the paged, slowest ones) x 12
budgets. Both figures are measured in the same run, kernels compiled beforehand:

- sweep: `fiitedsim.sweep.run_sweep` as the command runs it (local cluster of one worker process per core
  started and stopped, workers loading the cached kernels, points sharing a trace pass batched up to
  `--points-per-task` per task so the trace is decoded once per task, every point stored, points.parquet
  and the HTML report written) into an empty folder; and as a reference the same with one point per task;
- one after another: `fiitedsim.sweep.run_point` of the same 24 points in a loop in this process (the
  same work per point: reading and replaying the trace, encoding the time series), no storing.

A control figure says how much parallelism the machine had to give at the time (other sessions may be
using the cores): two points run at once in two plain worker processes (no Dask) against one point alone;
its ratio is the floor that no two-process sweep could beat then.

Usage: python benchmarks/bench_sweep_parallel.py [--steps 400] [--workers N] [--points-per-task 4] [--json FILE]
Always exits 0 once the measurements ran; a missed target is reported as FAIL.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TARGET_RATIO = 0.6
POLICIES = ["fiited", "row-prune"]
BUDGETS = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4]


def _timed_point(spec) -> float:
    from fiitedsim.sweep import run_point

    t0 = time.perf_counter()
    run_point(spec)
    return time.perf_counter() - t0


def control(spec) -> tuple[float, float]:
    """Wall time of two copies of a point run at once in two fresh processes (kernels warm), and of one alone."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_timed_point, [spec, spec]))  # load the kernels in both processes
        t0 = time.perf_counter()
        list(pool.map(_timed_point, [spec, spec]))
        both = time.perf_counter() - t0
    return both, _timed_point(spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400, help="steps of the generated trace (16,384 lookups each)")
    ap.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    ap.add_argument("--points-per-task", type=int, default=4, help="as `fiitedsim sweep --points-per-task` (default 4)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()

    from fiitedsim.sweep import load_sweep_file, plan_points, run_point, run_sweep

    print(common.machine_line())
    trace = common.ensure_trace(None, args.steps)
    lookups = common.lookups_of(args.steps)
    with tempfile.TemporaryDirectory(prefix="bench_sweep_parallel.") as tmp:
        toml = Path(tmp) / "sweep.toml"
        toml.write_text(f"[sweep]\ntraces = [{json.dumps(str(trace))}]\npolicies = {json.dumps(POLICIES)}\n"
                        f"budgets = {json.dumps(BUDGETS)}\n")
        sweep = load_sweep_file(toml)
        points = plan_points(sweep, warn=print)
        assert len(points) == 24, len(points)
        t0 = time.perf_counter()
        # one point of each policy compiles (or loads) its kernels into the disk cache outside both timings;
        # the sweep's workers then load them from there as a sweep after any earlier run does
        for policy in POLICIES:
            run_point(next(p for p in points if p.spec.policy == policy).spec)
        print(f"warm-up (one point per policy): {time.perf_counter() - t0:.1f} s")
        print(f"load before: {common.load()}", flush=True)

        t0 = time.perf_counter()
        outcome = run_sweep(sweep, Path(tmp) / "out", workers=args.workers, points_per_task=args.points_per_task)
        sweep_s = time.perf_counter() - t0
        assert outcome.computed == 24
        print(f"sweep: {sweep_s:.1f} s", flush=True)
        t0 = time.perf_counter()
        outcome = run_sweep(sweep, Path(tmp) / "out1", workers=args.workers, points_per_task=1)
        single_s = time.perf_counter() - t0
        assert outcome.computed == 24
        print(f"sweep, one point per task: {single_s:.1f} s", flush=True)

        t0 = time.perf_counter()
        for point in points:
            run_point(point.spec)
        serial_s = time.perf_counter() - t0
        control_s, alone_s = control(points[POLICIES.index("fiited")].spec)
        print(f"load after: {common.load()}")
    ratio = sweep_s / serial_s
    workers = args.workers or os.cpu_count()
    common.print_table(["measurement", "wall s", "s per point"], [
        [f"sweep: 24 points on {workers} local worker processes, --points-per-task {args.points_per_task}",
         f"{sweep_s:.1f}", f"{sweep_s / 24:.2f}"],
        ["reference: the same sweep with --points-per-task 1", f"{single_s:.1f}", f"{single_s / 24:.2f}"],
        ["reference: the same 24 points one after another", f"{serial_s:.1f}", f"{serial_s / 24:.2f}"],
        ["control: 2 fiited points at once in 2 plain processes", f"{control_s:.1f}", f"{control_s / 2:.2f}"],
        ["control: the same fiited point alone", f"{alone_s:.1f}", f"{alone_s:.2f}"],
    ], title=f"{common.rel(trace)}: {lookups:,} lookups per point; {', '.join(POLICIES)} x {len(BUDGETS)} budgets")
    ok = ratio <= TARGET_RATIO
    floor = control_s / (2 * alone_s)
    print(f"control: two processes at once took {floor:.2f}x the time of one after the other "
          f"(0.5 on two idle cores): the floor for any two-process sweep at the time")
    print(f"with one point per task (every point decodes the trace itself): {single_s / serial_s:.2f}")
    print(f"RESULT {common.verdict(ok)}: sweep / one after another = {ratio:.2f} (target <= {TARGET_RATIO})")
    if args.json:
        figures = {"machine": common.machine_line(), "sweep_s": sweep_s, "serial_s": serial_s, "ratio": ratio,
                   "single_point_tasks_s": single_s, "points_per_task": args.points_per_task,
                   "control_floor": floor, "workers": workers, "lookups_per_point": lookups,
                   "target_ratio": TARGET_RATIO}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
