"""Replay throughput of fiited, uniform-dim and full on the 20M-lookup benchmark trace.

Targets (the issue): on 20M lookups over 4 tables of 2.5M rows, Zipf 1.05,
D = 64, C = 8, budget 0.10, inline gradient norms,
  * FIITED replay >= 10M lookups/s on one core, JIT warm-up excluded and reported separately;
  * uniform-dim and full replays >= 50M lookups/s.

For each policy this prints
  (a) JIT warm-up: a first and a second replay of a tiny trace (same tables,
      300 steps x 64 lookups per table, so pruning rounds and snapshots run) in
      a fresh subprocess, once with the default on-disk kernel cache (warm-up
      near 0 when the cache is warm) and once with NUMBA_CACHE_DIR pointing at
      an empty temporary folder (cold compile);
  (b) engine throughput: all RecordBatches of the trace are read into memory
      first, then only the policy's consume() calls + finish() are timed. The
      kernels are single-threaded, so this is one core's throughput; the CPU
      time is printed next to the wall time to show it (with --pin the calling
      thread is also pinned to one CPU, which only helps on an idle machine:
      if another process runs on that CPU the two share it);
  (c) end-to-end throughput: `fiitedsim.replay.replay(TraceSource(path), [policy], ...)`
      including Parquet decoding and validation.
The reference figures measured in the same run: a bare pyarrow scan of the
same columns of the same file (iter_batches, nothing else; once with
grad_norm, which FIITED reads, once without, as the baselines read), and the
TraceSource.batches() pass alone (decoding + validation, no policy), so the
reader sees how much of end-to-end is reading the trace; and the *utility
floor*: over the same in-memory batches, only the first thing every FIITED
access does (find or track the row with `store.track_row`, then
`fiited.update_utilities`: decay and K multiply-adds), with the record loop's
prefetching of tracker buckets and row state, and nothing of the VHPI store
(no index, no pages, no rounds). No exact FIITED replay can be faster than
this on the same machine, so it shows how much of the target the machine's
memory system leaves. It must end with the fiited run's tracked rows, last
steps and utilities, bit for bit (printed).

Usage: python benchmarks/bench_replay.py [--steps 1221] [--policies fiited,uniform-dim,full]
                                         [--repeat 3] [--no-cold] [--pin] [--json FILE]
Always exits 0 once the measurements ran; a missed target is reported as FAIL.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TARGETS = {"fiited": 10e6, "uniform-dim": 50e6, "full": 50e6}   # engine lookups/s
WARMUP_STEPS, WARMUP_BATCH = 300, 64                             # tiny trace: 76,800 lookups
TRACE_COLUMNS = ["step", "table", "row", "grad_norm"]


# ----------------------------------------------------------------------------- subprocess worker

def worker_warmup(policy: str, trace: str) -> None:
    """Run in a fresh process: time imports, then a first and a second replay of the tiny trace; print JSON."""
    t0 = time.perf_counter()
    import numba

    from fiitedsim.config import ReplayConfig
    from fiitedsim.replay import parse_budgets, replay
    from fiitedsim.trace import TraceSource
    t_import = time.perf_counter() - t0
    times = []
    for _ in range(2):
        t1 = time.perf_counter()
        source = TraceSource(trace)
        replay(source, [policy], parse_budgets(common.BUDGET, source.tables), ReplayConfig())
        times.append(time.perf_counter() - t1)
    print(json.dumps({"import_s": t_import, "first_s": times[0], "second_s": times[1],
                      "cache_dir": numba.config.CACHE_DIR}))


def run_warmup(policy: str, trace: Path, cache_dir: str | None) -> dict:
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    cmd = [sys.executable, __file__, "--worker-warmup", policy, str(trace)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"warm-up worker for {policy} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


# ----------------------------------------------------------------------------- in-process measurements

def pyarrow_scan(path: Path, columns: list[str]) -> tuple[float, float, int]:
    """The peer figure: read the columns with iter_batches and do nothing else."""
    import pyarrow.parquet as pq
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    n = 0
    with pq.ParquetFile(path) as pf:
        for batch in pf.iter_batches(batch_size=1 << 20, columns=columns):
            n += batch.num_rows
    return time.perf_counter() - t0, time.process_time() - c0, n


def load_batches(path: Path):
    from fiitedsim.trace import TraceSource
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    source = TraceSource(path)
    batches = list(source.batches())
    return source, batches, time.perf_counter() - t0, time.process_time() - c0


class Pinned:
    """Pin the calling thread to one CPU for the duration (Linux); a no-op elsewhere or with --no-pin."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and hasattr(os, "sched_setaffinity")
        self.cpu = None

    def __enter__(self):
        if self.enabled:
            self.saved = os.sched_getaffinity(0)
            self.cpu = max(self.saved)
            os.sched_setaffinity(0, {self.cpu})
        return self

    def __exit__(self, *exc):
        if self.enabled:
            os.sched_setaffinity(0, self.saved)


def engine_run(name: str, source, batches, budgets, cfg, pin: bool, keep_state: bool = False) -> dict:
    """consume() of every in-memory batch + finish(); construction is timed apart.

    With keep_state, the result holds the engine's final arrays ("state") for chunk-storing policies."""
    from fiitedsim.policies import POLICIES
    label, budget = budgets[0]
    gc.collect()
    t0 = time.perf_counter()
    policy = POLICIES[name](source.tables, cfg.with_budget(budget, label), source.has_grad, source.has_importance)
    build = time.perf_counter() - t0
    with Pinned(pin):
        c0, t0 = time.process_time(), time.perf_counter()
        for batch in batches:
            policy.consume(batch)
        result = policy.finish()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"build_s": build, "wall_s": wall, "cpu_s": cpu, "lookups": int(result.summary["lookups"]),
            "summary": result.summary_json(),
            "state": getattr(getattr(policy, "engine", None), "st", None) if keep_state else None}


def end_to_end(name: str, path: Path, cfg) -> dict:
    from fiitedsim.replay import parse_budgets, replay
    from fiitedsim.trace import TraceSource
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    source = TraceSource(path)
    results = replay(source, [name], parse_budgets(common.BUDGET, source.tables), cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "lookups": int(results.summary["trace"]["lookups"]),
            "summary": results.summary["policies"][name]}


def in_process_warmup(name: str, trace: Path, cfg) -> float:
    from fiitedsim.replay import parse_budgets, replay
    from fiitedsim.trace import TraceSource
    t0 = time.perf_counter()
    source = TraceSource(trace)
    replay(source, [name], parse_budgets(common.BUDGET, source.tables), cfg)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- the utility floor

def utility_floor_kernel():
    """Compile (once) the floor loop: track the row, update its utilities, prefetch like `fiited.run`.

    The prefetching repeats the first two stages of `fiited.prefetch_ahead` (tracker bucket, then the
    record) but not its index and slot prefetches: the floor reads neither, and prefetching them would
    load it with traffic that is not its own.
    """
    import numba
    import numpy as np

    from fiitedsim import store
    from fiitedsim.policies.fiited import RECORD_AHEAD, TRACKER_AHEAD, update_utilities
    from fiitedsim.prefetch import prefetch, prefetch2

    @numba.njit(nogil=True, _nrt=False)
    def floor(st, lk_step, lk_table, lk_row, lk_grad, i):
        n = lk_row.size
        while i < n:
            tracked = st.sc[store.Scalar.TRACKED]
            if tracked + 1 > st.rec.shape[0] or 2 * (tracked + 1) > st.trk.shape[0]:
                return i  # the driver grows the records or the tracker, then calls again from lookup i
            far = i + TRACKER_AHEAD
            if far < n:
                key = store.packed_row_key(lk_table[far], lk_row[far])
                prefetch(st.trk, np.int64(store.splitmix64(key) & np.uint64(st.trk.shape[0] - 1)))
            mid = i + RECORD_AHEAD
            if mid < n:
                tid = store.tracker_peek(st.trk, store.packed_row_key(lk_table[mid], lk_row[mid]))
                if tid >= 0:
                    prefetch(st.rec, tid)
                    prefetch2(st.rec, tid, st.ip[store.Param.R_KEY])
            t, s = lk_table[i], lk_step[i]
            tid = store.track_row(st.trk, st.rec, st.rec_u, st.dim_hist, st.tabs, st.sc, st.cnt, st.ip, t,
                                  lk_row[i], s)
            update_utilities(st, tid, s, st.tabs[t, store.Tab.K], lk_grad, i)
            i += 1
        return n

    return floor


def utility_floor_run(kernel, source, batches, cfg, keep_state: bool = False) -> dict:
    """The floor loop over every in-memory batch, on a fresh engine state of FIITED's tables and config."""
    import numpy as np

    from fiitedsim import store
    from fiitedsim.engine import NEED_ROWS, EngineState
    engine = EngineState(source.tables, cfg, source.has_grad, source.has_importance)
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    no_grad = np.zeros((1, engine.k_max), np.float32)
    for batch in batches:
        engine.ensure_steps(int(batch.step[-1]) if batch.step.size else 0)
        grad = batch.grad if batch.grad is not None else no_grad  # as Fiited.consume passes it
        i = 0
        while i < batch.step.size:
            i = kernel(engine.st, batch.step, batch.table, batch.row, grad, i)
            if i < batch.step.size:
                engine.grow(NEED_ROWS)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "lookups": sum(b.num_lookups for b in batches),
            "tracked_rows": int(engine.st.sc[store.Scalar.TRACKED]), "state": engine.st if keep_state else None}


def same_utilities(a, b) -> bool:
    """Whether two engine states track the same rows with bit-identical utilities and last steps."""
    import numpy as np

    from fiitedsim import store
    n = int(a.sc[store.Scalar.TRACKED])
    k_max = int(a.ip[store.Param.KMAX])
    r_key, r_last = int(a.ip[store.Param.R_KEY]), int(a.ip[store.Param.R_LAST])
    return (n == int(b.sc[store.Scalar.TRACKED])
            and np.array_equal(a.rec[:n, r_key], b.rec[:n, r_key])
            and np.array_equal(a.rec[:n, r_last], b.rec[:n, r_last])
            and np.array_equal(a.rec[:n, :k_max], b.rec[:n, :k_max]))  # the utilities' bits


# ----------------------------------------------------------------------------- main

def mps(lookups: int, seconds: float) -> float:
    return lookups / seconds / 1e6 if seconds > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=common.STEPS_20M,
                    help=f"steps of the benchmark trace (default {common.STEPS_20M} ~ 20M lookups)")
    ap.add_argument("--policies", default="fiited,uniform-dim,full", help="comma-separated policies")
    ap.add_argument("--repeat", type=int, default=3, help="engine runs per policy; the best is reported (default 3)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocesses")
    ap.add_argument("--pin", action="store_true", help="pin the engine runs to one CPU (the last one)")
    ap.add_argument("--json", type=Path, help="also write all measurements to this JSON file")
    ap.add_argument("--worker-warmup", nargs=2, metavar=("POLICY", "TRACE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_warmup:
        worker_warmup(*args.worker_warmup)
        return

    from fiitedsim.config import ReplayConfig
    from fiitedsim.policies import POLICIES
    from fiitedsim.replay import parse_budgets

    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        ap.error(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    print(f"bench_replay: {common.machine_line()}")
    print(f"load average at start: {common.load()}")
    print(f"trace: zipf {common.ALPHA}, {common.TABLES} tables x {common.ROWS:,} rows, D={common.DIM}, "
          f"C={common.CHUNK}, grad_norm inline, {args.steps} steps x {common.TABLES} x {common.BATCH}; "
          f"budget {common.BUDGET}, default ReplayConfig")
    trace = common.ensure_trace(None, args.steps)
    tiny = common.ensure_trace(None, WARMUP_STEPS, batch=WARMUP_BATCH)
    cfg = ReplayConfig()
    record: dict = {"machine": common.machine_line(), "steps": args.steps, "policies": {}}

    # (a) JIT warm-up, each in a fresh subprocess
    print(f"\n(a) JIT warm-up: first vs second replay of a tiny trace "
          f"({common.lookups_of(WARMUP_STEPS, WARMUP_BATCH):,}"
          f" lookups, same tables) in a fresh process; warm-up = first - second")
    warm_rows = []
    for name in policies:
        warm = run_warmup(name, tiny, None)
        row = [name, f"{warm['import_s']:.2f}", f"{warm['first_s']:.2f}", f"{warm['second_s']:.2f}",
               f"{warm['first_s'] - warm['second_s']:.2f}"]
        cold = None
        if not args.no_cold:
            with tempfile.TemporaryDirectory(prefix="fiitedsim-cold-numba-") as tmp:
                cold = run_warmup(name, tiny, tmp)
            row += [f"{cold['first_s']:.2f}", f"{cold['second_s']:.2f}", f"{cold['first_s'] - cold['second_s']:.2f}"]
        else:
            row += ["-", "-", "-"]
        warm_rows.append(row)
        record["policies"].setdefault(name, {})["warmup"] = {"disk_cache": warm, "cold": cold}
    common.print_table(["policy", "import s", "cached: 1st s", "2nd s", "warm-up s",
                        "cold: 1st s", "2nd s", "compile s"], warm_rows)
    print("  'cached' uses the default on-disk kernel cache (warm unless the engine sources changed since the last\n"
          "  run, then its 1st replay compiles); 'cold' points NUMBA_CACHE_DIR at an empty temporary folder.")

    # in-process warm-up so the timed runs below exclude compilation/loading
    for name in policies:
        in_process_warmup(name, tiny, cfg)

    # reference figures: reading the trace
    print(f"\nreading {common.rel(trace)} ({trace.stat().st_size / 2**20:,.0f} MiB)")
    scan_wall, scan_cpu, scan_n = pyarrow_scan(trace, TRACE_COLUMNS)
    scan3_wall, scan3_cpu, scan3_n = pyarrow_scan(trace, TRACE_COLUMNS[:3])
    source, batches, load_wall, load_cpu = load_batches(trace)
    n_lookups = sum(b.num_lookups for b in batches)
    budgets = parse_budgets(common.BUDGET, source.tables)
    common.print_table(["reader", "lookups", "wall s", "cpu s", "M lookups/s"], [
        ["pyarrow iter_batches (step,table,row,grad_norm)", f"{scan_n:,}", f"{scan_wall:.2f}", f"{scan_cpu:.2f}",
         f"{mps(scan_n, scan_wall):.1f}"],
        ["pyarrow iter_batches (step,table,row)", f"{scan3_n:,}", f"{scan3_wall:.2f}", f"{scan3_cpu:.2f}",
         f"{mps(scan3_n, scan3_wall):.1f}"],
        ["TraceSource.batches() (decode + validate)", f"{n_lookups:,}", f"{load_wall:.2f}", f"{load_cpu:.2f}",
         f"{mps(n_lookups, load_wall):.1f}"],
    ])
    record["reader"] = {"pyarrow_scan": {"wall_s": scan_wall, "cpu_s": scan_cpu, "rows": scan_n},
                        "pyarrow_scan_no_grad": {"wall_s": scan3_wall, "cpu_s": scan3_cpu, "rows": scan3_n},
                        "trace_source": {"wall_s": load_wall, "cpu_s": load_cpu, "lookups": n_lookups}}

    # (b) engine throughput, batches in memory
    pin = args.pin
    print(f"\n(b) engine: consume() of {len(batches)} in-memory batches + finish(), best of {args.repeat}"
          f"{', pinned to one CPU' if pin and hasattr(os, 'sched_setaffinity') else ''}")
    engine, states = {}, {}
    for name in policies:
        runs = [engine_run(name, source, batches, budgets, cfg, pin, keep_state=(i == 0))
                for i in range(max(1, args.repeat))]
        states[name] = runs[0].pop("state")
        walls = [r["wall_s"] for r in runs]
        print(f"  {name:12s} runs: " + ", ".join(f"{w:.3f}" for w in walls) + " s"
              f"  (construction {runs[0]['build_s']:.3f} s, cpu {min(r['cpu_s'] for r in runs):.3f} s)")
        best = min(runs, key=lambda r: r["wall_s"])
        engine[name] = best
        record["policies"][name]["engine"] = {"runs_s": walls, "best_s": best["wall_s"],
                                              "median_s": statistics.median(walls), "cpu_s": best["cpu_s"],
                                              "build_s": best["build_s"], "lookups": best["lookups"]}
    # the utility floor, same batches (only when fiited runs: it is FIITED's floor)
    floor = None
    if "fiited" in policies:
        kernel = utility_floor_kernel()
        utility_floor_run(kernel, source, batches[:1], cfg)  # compile outside the timing
        runs = [utility_floor_run(kernel, source, batches, cfg, keep_state=(i == 0))
                for i in range(max(1, args.repeat))]
        floor_state = runs[0].pop("state")
        floor = min(runs, key=lambda r: r["wall_s"])
        print(f"  {'floor':12s} runs: " + ", ".join(f"{r['wall_s']:.3f}" for r in runs) + " s"
              f"  (track the row + update its utilities only, no VHPI store; {floor['tracked_rows']:,} rows)")
        # the floor does the engine's own utility work: it ends with the fiited run's rows and utilities, bit for bit
        floor["same_utilities"] = same_utilities(floor_state, states["fiited"])
        print(f"  floor rows and utilities equal the fiited run's, bit for bit: {floor['same_utilities']}")
        record["utility_floor"] = {"runs_s": [r["wall_s"] for r in runs], "best_s": floor["wall_s"],
                                   "cpu_s": floor["cpu_s"], "lookups": floor["lookups"],
                                   "mlps": mps(floor["lookups"], floor["wall_s"]),
                                   "same_utilities": floor["same_utilities"]}
        del floor_state
    del batches, states
    gc.collect()

    # (c) end-to-end
    print("\n(c) end-to-end: replay(TraceSource(path), [policy], ...), Parquet decoding and validation included\n"
          "    (replay() may decode the next batches on a second thread and skip grad_norm for policies that do\n"
          "    not use it; cpu s > wall s shows a second core at work)")
    e2e = {}
    for name in policies:
        e2e[name] = end_to_end(name, trace, cfg)
        print(f"  {name:12s} {e2e[name]['wall_s']:.2f} s wall, {e2e[name]['cpu_s']:.2f} s cpu")
        record["policies"][name]["end_to_end"] = {k: v for k, v in e2e[name].items() if k != "summary"}
        if e2e[name]["summary"] != engine[name]["summary"]:
            print(f"  warning: {name}: the end-to-end summary differs from the in-memory engine run's")

    # summary table
    rows = []
    for name in policies:
        eg, ee = engine[name], e2e[name]
        target = TARGETS.get(name)
        e_mps, x_mps = mps(eg["lookups"], eg["wall_s"]), mps(ee["lookups"], ee["wall_s"])
        rows.append([name, f"{eg['lookups']:,}", f"{eg['wall_s']:.3f}", f"{e_mps:.1f}", f"{ee['wall_s']:.2f}",
                     f"{x_mps:.1f}", f">= {target / 1e6:.0f} M/s" if target else "-",
                     common.verdict(e_mps * 1e6 >= target) if target else "-",
                     common.verdict(x_mps * 1e6 >= target) if target else "-"])
        record["policies"][name]["engine_mlps"] = e_mps
        record["policies"][name]["end_to_end_mlps"] = x_mps
        record["policies"][name]["target_mlps"] = target / 1e6 if target else None
    print()
    common.print_table(["policy", "lookups", "engine s", "engine M/s", "end-to-end s", "e2e M/s", "target",
                        "engine", "e2e"], rows,
                       title="RESULT (target judged on the engine figure; the e2e column shows whether "
                             "the full replay incl. decoding would meet it too)")
    print(f"reference, same run: pyarrow scan of step,table,row,grad_norm {scan_wall:.2f} s "
          f"({mps(scan_n, scan_wall):.1f} M rows/s), of step,table,row {scan3_wall:.2f} s "
          f"({mps(scan3_n, scan3_wall):.1f} M rows/s); TraceSource.batches() {load_wall:.2f} s "
          f"({mps(n_lookups, load_wall):.1f} M lookups/s)")
    if floor:
        floor_mps = mps(floor["lookups"], floor["wall_s"])
        print(f"utility floor, same run and batches: {floor['wall_s']:.3f} s ({floor_mps:.1f} M lookups/s): "
              f"tracking rows and updating utilities alone, without the VHPI store, takes "
              f"{floor['wall_s'] / engine['fiited']['wall_s']:.0%} of the fiited engine's time")
    print(f"load average at end: {common.load()} (other processes on this machine slow every figure down)")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
