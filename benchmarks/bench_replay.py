"""Replay throughput of fiited, uniform-dim and full on the 20M-lookup benchmark trace; with --against REV,
this tree's engine against REV's on the same batches.

Targets (the first issue): on 20M lookups over 4 tables of 2.5M rows, Zipf 1.05,
D = 64, C = 8, budget 0.10, inline gradient norms,
  * FIITED replay >= 10M lookups/s on one core, JIT warm-up excluded and reported separately;
  * uniform-dim and full replays >= 50M lookups/s.

For each policy this prints
  (a) JIT warm-up: a first and a second replay of a tiny trace (same tables,
      300 steps x 64 lookups per table, so pruning rounds and snapshots run) in
      a fresh subprocess, once with the default on-disk kernel cache (warm-up
      near 0 when the cache is warm) and once with NUMBA_CACHE_DIR pointing at
      an empty temporary folder (cold compile);
  (b) engine throughput: every run is a fresh process that reads all RecordBatches
      of the trace into memory first, then times only the policy's consume() calls
      + finish() (wall and CPU time; the record loop is single-threaded, a round's
      ranking passes use every core, so cpu can exceed wall). The time spent in the
      gaps between records that run pruning rounds is printed apart (the "rounds"
      split). Runs of the policies, and of the utility floor below, alternate, so a
      change of load on the machine hits all of them alike;
  (c) end-to-end throughput: `fiitedsim.replay.replay(TraceSource(path), [policy], ...)`
      including Parquet decoding and validation, in this process.
The reference figures measured in the same run: a bare pyarrow scan of the
same columns of the same file (iter_batches, nothing else; once with
grad_norm, which FIITED reads, once without, as the baselines read), and the
TraceSource.batches() pass alone (decoding + validation, no policy), so the
reader sees how much of end-to-end is reading the trace; and the *utility
floor*: over the same in-memory batches, in its own fresh process, only the
first thing every FIITED access does (find or track the row with
`engine.store.track_row`, then `engine.access.update_utilities`: decay and K multiply-adds),
with the record loop's prefetching of tracker buckets and records, and nothing
of the VHPI store (no index, no pages, no rounds). No exact FIITED replay can
be faster than this on the same machine. It must end with the fiited run's
tracked rows, last steps and utilities, bit for bit (a digest of both is
compared and printed).

--against REV (a commit, tag or branch of this repository) compares this tree's
engine with REV's instead. REV's `fiitedsim` package is extracted with
`git archive` into benchmarks/out/rev-HASH/ (git-ignored; extracted once and
reused, so its kernels compile once into their own cache folder). Then, per
policy (default fiited, uniform-dim, full, lru), both engines replay the same
trace's batches in memory, each run in a fresh process (PYTHONPATH set to the
tree under test, NUMBA_CACHE_DIR unset so each tree keys its kernel cache on
its own sources), alternating which goes first, --repeat times; the utility
floor runs after each fiited pair. Peak RSS of `fiitedsim replay TRACE
--policy fiited --budget 0.10 -q` (the CLI, Parquet decoding included) is
measured for both trees the same way (--rss-repeat times each). The RESULT
lines judge: fiited throughput this / REV >= 2.0 (medians of the runs that
sat in the same place of their pair, first or second, and the geometric mean
of the two ratios: see `position_ratios`; the medians of all runs and the
best runs are printed too); rounds <= 25% of this tree's fiited engine time; peak RSS
this <= REV; the other policies' throughput this / REV >= 1.0; and the
summaries of fiited (and row-prune): when both revisions report the same
summary keys the JSON texts must be byte-identical, else every key both have
must be equal (the script says which keys only one side has: since 65e3afb the
summary gained dim_hit_rate, dim_hits, dims_requested, collisions and
collision_share). The other policies' summaries are compared the same way and
printed as notes: their meaning may change between revisions (uniform-dim
keeps whole dimensions since c0d2efc, whole chunks before), so against a
revision of the same summary format they must be byte-identical too.

Usage: python benchmarks/bench_replay.py [--steps 1221] [--policies fiited,uniform-dim,full]
                                         [--repeat 3] [--no-cold] [--pin] [--json FILE]
       python benchmarks/bench_replay.py --against 65e3afb [--repeat 5] [--rss-repeat 2]
Always exits 0 once the measurements ran; a missed target is reported as FAIL.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import extract_rev, worker_env  # noqa: E402

TARGETS = {"fiited": 10e6, "uniform-dim": 50e6, "full": 50e6}   # engine lookups/s
WARMUP_STEPS, WARMUP_BATCH = 300, 64                             # tiny trace: 76,800 lookups
TRACE_COLUMNS = ["step", "table", "row", "grad_norm"]
AGAINST_POLICIES = "fiited,uniform-dim,full,lru"
SPEEDUP_TARGET = 2.0      # fiited, this tree / REV
ENGINE_POLICIES = ("fiited", "row-prune")  # --against judges their summaries; the others' are printed as notes
ROUNDS_SHARE_TARGET = 0.25


# ----------------------------------------------------------------------------- workers (fresh processes)

def trace_source_class():
    """`TraceSource` of the tree under test: `fiitedsim.traces.source` since issue 20, `fiitedsim.trace` before (a
    revision run with --against)."""
    import importlib
    from pathlib import Path

    import fiitedsim
    moved = (Path(fiitedsim.__file__).parent / "traces").is_dir()
    return importlib.import_module("fiitedsim.traces.source" if moved else "fiitedsim.trace").TraceSource


def worker_warmup(policy: str, trace: str) -> None:
    """Time imports, then a first and a second replay of the tiny trace; print JSON."""
    t0 = time.perf_counter()
    import numba

    import fiitedsim
    from fiitedsim.config import ReplayConfig
    from fiitedsim.replay import parse_budgets, replay
    TraceSource = trace_source_class()
    t_import = time.perf_counter() - t0
    times = []
    for _ in range(2):
        t1 = time.perf_counter()
        source = TraceSource(trace)
        replay(source, [policy], parse_budgets(common.BUDGET, source.tables), ReplayConfig())
        times.append(time.perf_counter() - t1)
    print(json.dumps({"import_s": t_import, "first_s": times[0], "second_s": times[1],
                      "cache_dir": numba.config.CACHE_DIR, "fiitedsim": fiitedsim.__file__}))


def load_batches(path):
    TraceSource = trace_source_class()
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    source = TraceSource(path)
    batches = list(source.batches())
    return source, batches, time.perf_counter() - t0, time.process_time() - c0


def state_digest(st) -> str:
    """sha256 of the tracked rows' keys, last steps and utility bits (this tree's engine layout)."""
    import numpy as np

    from fiitedsim.engine import store
    n = int(st.sc[store.Scalar.TRACKED])
    k_max = int(st.ip[store.Param.KMAX])
    h = hashlib.sha256()
    for col in (int(st.ip[store.Param.R_KEY]), int(st.ip[store.Param.R_LAST])):
        h.update(np.ascontiguousarray(st.rec[:n, col]).tobytes())
    h.update(np.ascontiguousarray(st.rec[:n, :k_max]).tobytes())  # the utilities' bits
    return h.hexdigest()


def worker_engine(policy: str, trace: str, digest: bool, pin: bool) -> None:
    """consume() of every in-memory batch + finish(), timed, with the time spent in gap kernels (rounds)."""
    import fiitedsim
    from fiitedsim.config import ReplayConfig
    from fiitedsim.policies import POLICIES
    from fiitedsim.replay import parse_budgets

    source, batches, load_s, _ = load_batches(trace)
    (label, budget), = parse_budgets(common.BUDGET, source.tables)
    obj = POLICIES[policy](source.tables, ReplayConfig().with_budget(budget, label), source.has_grad,
                           source.has_importance)
    gaps = {"wall": 0.0, "cpu": 0.0, "n": 0}
    kernel = getattr(obj, "gap_kernel", None)
    if kernel is not None:  # the engine policies hand every round and snapshot to this kernel
        def timed_gap(st):
            c0, t0 = time.process_time(), time.perf_counter()
            kernel(st)
            gaps["wall"] += time.perf_counter() - t0
            gaps["cpu"] += time.process_time() - c0
            gaps["n"] += 1
        obj.gap_kernel = timed_gap
    with Pinned(pin):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        for batch in batches:
            obj.consume(batch)
        result = obj.finish()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"wall_s": wall, "cpu_s": cpu, "gap_wall_s": gaps["wall"], "gap_cpu_s": gaps["cpu"], "gaps": gaps["n"],
           "lookups": int(result.summary["lookups"]), "load_s": load_s, "summary": result.summary_json(),
           "fiitedsim": fiitedsim.__file__}
    if digest:
        out["digest"] = state_digest(obj.engine.st)
    print(json.dumps(out))


def utility_floor_kernel():
    """Compile (once) the floor loop: track the row, update its utilities, prefetch like `engine.loop.run`.

    The prefetching repeats the first two stages of `engine.loop.prefetch_ahead` (tracker bucket, then the
    record) but not its index and slot prefetches: the floor reads neither, and prefetching them would
    load it with traffic that is not its own.
    """
    import numba
    import numpy as np

    from fiitedsim.engine import store
    from fiitedsim.engine.access import update_utilities
    from fiitedsim.engine.loop import RECORD_AHEAD, TRACKER_AHEAD
    from fiitedsim.engine.prefetch import prefetch, prefetch2

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
                tid = store.tracker_peek_hashed(st.trk, store.splitmix64(store.packed_row_key(lk_table[mid],
                                                                                              lk_row[mid])))
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


def utility_floor_run(kernel, source, batches) -> dict:
    """The floor loop over every in-memory batch, on a fresh engine state of FIITED's tables and config."""
    import numpy as np

    from fiitedsim.config import ReplayConfig
    from fiitedsim.engine import NEED_ROWS, EngineState, store
    from fiitedsim.replay import parse_budgets

    (label, budget), = parse_budgets(common.BUDGET, source.tables)
    engine = EngineState(source.tables, ReplayConfig().with_budget(budget, label), source.has_grad,
                         source.has_importance)
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
            "tracked_rows": int(engine.st.sc[store.Scalar.TRACKED]), "digest": state_digest(engine.st)}


def worker_floor(trace: str, pin: bool) -> None:
    source, batches, _, _ = load_batches(trace)
    kernel = utility_floor_kernel()
    utility_floor_run(kernel, source, batches[:1])  # compile outside the timing
    with Pinned(pin):
        out = utility_floor_run(kernel, source, batches)
    print(json.dumps(out))


class Pinned:
    """Pin the calling process to one CPU for the duration (Linux); a no-op elsewhere or when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and hasattr(os, "sched_setaffinity")

    def __enter__(self):
        if self.enabled:
            self.saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {max(self.saved)})
        return self

    def __exit__(self, *exc):
        if self.enabled:
            os.sched_setaffinity(0, self.saved)


# ----------------------------------------------------------------------------- running workers

def run_worker(argv: list[str], root: Path | None = None, own_cache: bool = False,
               cache_dir: str | None = None) -> dict:
    env = worker_env(root, own_cache)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], env=env, capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise RuntimeError(f"worker {argv} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    if root is not None and "fiitedsim" in out and not Path(out["fiitedsim"]).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"a worker meant to run {root} imported {out['fiitedsim']}")
    return out


def peak_rss(root: Path | None, trace: Path, policy: str, own_cache: bool) -> dict:
    """Peak RSS (MiB) and wall time of `fiitedsim replay TRACE --policy P --budget B -q`, a fresh process."""
    with tempfile.TemporaryDirectory(prefix="fiitedsim-rss-") as tmp:
        cmd = common.cli_command(root, ["replay", str(trace), "--policy", policy, "--budget", common.BUDGET, "-q",
                                        "--out", str(Path(tmp) / "out")])  # run from the temporary folder
        t0 = time.perf_counter()
        with open(Path(tmp) / "stderr", "w+b") as err_file:
            proc = subprocess.Popen(cmd, env=worker_env(root, own_cache), stdout=subprocess.DEVNULL,
                                    stderr=err_file, cwd=tmp)
            _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this one child
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
            err_file.seek(0)
            err = err_file.read().decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {"maxrss_mib": usage.ru_maxrss / 1024, "wall_s": wall}


# ----------------------------------------------------------------------------- in-process reference figures

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


def end_to_end(name: str, path: Path, cfg) -> dict:
    from fiitedsim.replay import parse_budgets, replay
    TraceSource = trace_source_class()
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    source = TraceSource(path)
    results = replay(source, [name], parse_budgets(common.BUDGET, source.tables), cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "lookups": int(results.summary["trace"]["lookups"]),
            "summary": results.summary["policies"][name]}


def mps(lookups: int, seconds: float) -> float:
    return lookups / seconds / 1e6 if seconds > 0 else float("inf")


def runs_line(runs: list[dict], key: str = "wall_s") -> str:
    return ", ".join(f"{r[key]:.3f}" for r in runs)


# ----------------------------------------------------------------------------- --against REV

def position_ratios(runs: dict) -> list[float]:
    """REV's median wall time over this tree's, for the runs that went first in their pair and for those that went
    second (one figure when only one place has runs of both trees).

    The place matters on this VM: in the 2026-11-30 runs, whichever tree ran first in a pair was slower
    than when it ran second (1.2-1.5x), for both trees. With an odd `--repeat` one tree goes first once more than the
    other, and the medians of all runs then compare a slow place with a fast one; comparing place by place (and
    taking the geometric mean of the two ratios) does not."""
    ratios = []
    for place in (0, 1):
        this = [r["wall_s"] for r in runs["this"] if r.get("position") == place]
        rev = [r["wall_s"] for r in runs["rev"] if r.get("position") == place]
        if this and rev:
            ratios.append(statistics.median(rev) / statistics.median(this))
    return ratios


def compare_summaries(a: dict, b: dict) -> tuple[bool, str]:
    """(equal, how): byte-identical JSON when both have the same keys, else equal on the keys both have."""
    if set(a) == set(b):
        same = json.dumps(a) == json.dumps(b)
        return same, "byte-identical JSON" + ("" if same else " -- DIFFERENT: " + ", ".join(
            k for k in a if a[k] != b[k]))
    common_keys = [k for k in a if k in b]
    differ = [k for k in common_keys if a[k] != b[k]]
    how = (f"the {len(common_keys)} keys both have are equal" if not differ else
           f"keys both have DIFFER: {', '.join(differ)}")
    return not differ, how + (f" (only this tree: {', '.join(k for k in a if k not in b) or '-'}; only REV: "
                              f"{', '.join(k for k in b if k not in a) or '-'})")


def against(args, policies: list[str], trace: Path, tiny: Path, record: dict) -> None:
    this = common.REPO
    rev_root, rev_hash = extract_rev(args.against)
    sides = {"this": this, "rev": rev_root}
    print(f"this tree: {this} (git {common.git_rev()}); REV {args.against} = {rev_hash[:12]}, extracted at "
          f"{common.rel(rev_root)}")
    record["against"] = {"rev": args.against, "hash": rev_hash, "policies": {}}

    print("\nwarming the kernel caches (a tiny replay per tree and policy, untimed) ...", flush=True)
    for side, root in sides.items():
        for name in policies:
            run_worker(["--worker-warmup", name, str(tiny)], root, own_cache=True)

    print(f"\nengine runs: {args.repeat} rounds; in each, per policy, both trees (alternating which goes first), "
          f"each a fresh process; the utility floor after each fiited pair")
    runs: dict = {name: {"this": [], "rev": []} for name in policies}
    floors: list[dict] = []
    for rep in range(args.repeat):
        order = ["this", "rev"] if rep % 2 == 0 else ["rev", "this"]
        for name in policies:
            for side in order:
                argv = ["--worker-engine", name, str(trace)] + (["--digest"] if side == "this" and name == "fiited"
                                                              else []) + (["--pin"] if args.pin else [])
                run = run_worker(argv, sides[side], own_cache=True)
                run["position"] = order.index(side)  # 0: first of its pair, 1: second
                runs[name][side].append(run)
                print(f"  [{rep + 1}/{args.repeat}] {name:12s} {side:4s} {run['wall_s']:7.3f} s "
                      f"({mps(run['lookups'], run['wall_s']):6.2f} M/s, cpu {run['cpu_s']:.2f} s, rounds "
                      f"{run['gap_wall_s']:.3f} s)   load {common.load()}", flush=True)
            if name == "fiited":
                floor = run_worker(["--worker-floor", str(trace)] + (["--pin"] if args.pin else []), this,
                                   own_cache=True)
                floors.append(floor)
                print(f"  [{rep + 1}/{args.repeat}] {'floor':12s} this {floor['wall_s']:7.3f} s "
                      f"({mps(floor['lookups'], floor['wall_s']):6.2f} M/s)", flush=True)

    rss = {"this": [], "rev": []}
    if "fiited" in policies and args.rss_repeat > 0:
        print(f"\npeak RSS of `fiitedsim replay TRACE --policy fiited --budget {common.BUDGET} -q` (a fresh process "
              f"each, {args.rss_repeat} per tree, alternating)")
        for rep in range(args.rss_repeat):
            for side in (["this", "rev"] if rep % 2 == 0 else ["rev", "this"]):
                m = peak_rss(sides[side], trace, "fiited", own_cache=True)
                rss[side].append(m)
                print(f"  {side:4s} {m['maxrss_mib']:9,.1f} MiB  ({m['wall_s']:.1f} s)   load {common.load()}",
                      flush=True)

    # tables
    print()
    rows, verdicts, notes = [], [], []
    for name in policies:
        entry = {}
        for side in ("this", "rev"):
            walls = [r["wall_s"] for r in runs[name][side]]
            entry[side] = {"runs_s": walls, "best_s": min(walls), "median_s": statistics.median(walls),
                           "cpu_s": [r["cpu_s"] for r in runs[name][side]],
                           "rounds_s": [r["gap_wall_s"] for r in runs[name][side]],
                           "rounds_cpu_s": [r["gap_cpu_s"] for r in runs[name][side]],
                           "lookups": runs[name][side][0]["lookups"]}
        lookups = entry["this"]["lookups"]
        ratio_all = entry["rev"]["median_s"] / entry["this"]["median_s"]
        ratio_best = entry["rev"]["best_s"] / entry["this"]["best_s"]
        by_position = position_ratios(runs[name])
        ratio_med = math.prod(by_position) ** (1 / len(by_position))
        same, how = compare_summaries(runs[name]["this"][0]["summary"], runs[name]["rev"][0]["summary"])
        consistent = all(json.dumps(r["summary"]) == json.dumps(runs[name][side][0]["summary"])
                         for side in ("this", "rev") for r in runs[name][side])
        entry.update(speedup_median=ratio_med, speedup_by_position=by_position, speedup_all_runs_median=ratio_all,
                     speedup_best=ratio_best, summaries_equal=same, summaries_how=how, runs_consistent=consistent)
        record["against"]["policies"][name] = entry
        for side, label in (("this", "this tree"), ("rev", f"REV {args.against}")):
            e = entry[side]
            share = statistics.median(r / w for r, w in zip(e["rounds_s"], e["runs_s"])) if name in (
                "fiited", "row-prune") else None
            rows.append([name, label, runs_line(runs[name][side]), f"{e['median_s']:.3f}",
                         f"{mps(lookups, e['median_s']):.2f}", f"{mps(lookups, e['best_s']):.2f}",
                         f"{statistics.median(e['rounds_s']):.3f}" if share is not None else "-",
                         f"{share:.0%}" if share is not None else "-"])
        target = SPEEDUP_TARGET if name == "fiited" else 1.0
        positions = " and ".join(f"{r:.2f}x" for r in by_position)
        verdicts.append((f"{name}: throughput this / REV = {ratio_med:.2f}x (medians of runs in the same place of "
                         f"their pair: {positions} first / second; all runs' medians {ratio_all:.2f}x, best runs "
                         f"{ratio_best:.2f}x), target >= {target:.1f}x", ratio_med >= target))
        if name in ENGINE_POLICIES:
            verdicts.append((f"{name}: summaries: {how}" + ("" if consistent else "; RUNS OF ONE TREE DIFFER"),
                             same and consistent))
        else:
            notes.append(f"{name}: summaries: {how}" + ("" if consistent else "; RUNS OF ONE TREE DIFFER"))
        if name == "fiited":
            e = entry["this"]
            share = statistics.median(r / w for r, w in zip(e["rounds_s"], e["runs_s"]))
            verdicts.append((f"fiited: rounds {statistics.median(e['rounds_s']):.3f} s = {share:.0%} of this tree's "
                             f"engine time (medians; rounds cpu {statistics.median(e['rounds_cpu_s']):.3f} s), "
                             f"target <= {ROUNDS_SHARE_TARGET:.0%}", share <= ROUNDS_SHARE_TARGET))
    common.print_table(["policy", "engine", "runs s", "median s", "M/s (median)", "M/s (best)", "rounds s",
                        "rounds share"], rows, title=f"engine: consume() + finish() of the in-memory batches "
                                                     f"({lookups:,} lookups), fresh processes, alternating")
    if floors:
        digests = {r["digest"] for r in runs["fiited"]["this"]} | {f["digest"] for f in floors}
        walls = [f["wall_s"] for f in floors]
        print(f"utility floor (this tree, fresh processes, after each fiited pair): {runs_line(floors)} s, median "
              f"{mps(floors[0]['lookups'], statistics.median(walls)):.2f} M lookups/s; rows, last steps and "
              f"utilities equal the fiited runs', bit for bit: {len(digests) == 1}")
        record["utility_floor"] = {"runs_s": walls, "mlps_median": mps(floors[0]["lookups"],
                                                                       statistics.median(walls)),
                                   "same_utilities": len(digests) == 1}
    if rss["this"] and rss["rev"]:
        this_peak = max(m["maxrss_mib"] for m in rss["this"])
        rev_peak = max(m["maxrss_mib"] for m in rss["rev"])
        verdicts.append((f"fiited: peak RSS of the CLI replay: this {this_peak:,.1f} MiB, REV {rev_peak:,.1f} MiB "
                         f"({this_peak / rev_peak:.3f}), target this <= REV", this_peak <= rev_peak))
        record["against"]["peak_rss_mib"] = {"this": [m["maxrss_mib"] for m in rss["this"]],
                                             "rev": [m["maxrss_mib"] for m in rss["rev"]]}
    print()
    for text in notes:
        print(f"note: {text}")
    print(f"RESULT against {args.against} ({rev_hash[:12]}):")
    for text, ok in verdicts:
        print(f"  {common.verdict(ok)}  {text}")
    record["against"]["verdicts"] = [{"text": t, "pass": ok} for t, ok in verdicts]


# ----------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=common.STEPS_20M,
                    help=f"steps of the benchmark trace (default {common.STEPS_20M} ~ 20M lookups)")
    ap.add_argument("--policies", help="comma-separated policies (default fiited,uniform-dim,full; with --against "
                                       f"{AGAINST_POLICIES})")
    ap.add_argument("--repeat", type=int, default=3, help="engine runs per policy (and per tree with --against); "
                                                          "the best and the median are reported (default 3)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocesses")
    ap.add_argument("--pin", action="store_true", help="pin each engine run to one CPU (the last one)")
    ap.add_argument("--against", metavar="REV", help="compare this tree's engine with REV's (a commit of this "
                                                     "repository); see the module docstring")
    ap.add_argument("--rss-repeat", type=int, default=1, help="with --against: peak-RSS replays per tree "
                                                              "(default 1; 0 skips them)")
    ap.add_argument("--json", type=Path, help="also write all measurements to this JSON file")
    ap.add_argument("--worker-warmup", nargs=2, metavar=("POLICY", "TRACE"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-engine", nargs=2, metavar=("POLICY", "TRACE"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-floor", metavar="TRACE", help=argparse.SUPPRESS)
    ap.add_argument("--digest", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_warmup:
        return worker_warmup(*args.worker_warmup)
    if args.worker_engine:
        return worker_engine(*args.worker_engine, digest=args.digest, pin=args.pin)
    if args.worker_floor:
        return worker_floor(args.worker_floor, pin=args.pin)

    from fiitedsim.config import ReplayConfig
    from fiitedsim.policies import POLICIES

    policies = [p.strip() for p in (args.policies or (AGAINST_POLICIES if args.against else
                                                      "fiited,uniform-dim,full")).split(",") if p.strip()]
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
    record: dict = {"machine": common.machine_line(), "steps": args.steps, "policies": {}}
    if args.against:
        # REV may predate the packed grad_norm (issue 20): both trees replay the list encoding, which every
        # revision reads (this tree reads both)
        from bench_decode import convert
        trace, tiny = convert(trace, "list-zstd-dict"), convert(tiny, "list-zstd-dict")
        print(f"--against: both trees read {common.rel(trace)} (grad_norm as lists, as 5cddf2c wrote them)")
        against(args, policies, trace, tiny, record)
        print(f"load average at end: {common.load()} (other processes on this machine slow every figure down)")
        if args.json:
            args.json.write_text(json.dumps(record, indent=2) + "\n")
        return
    cfg = ReplayConfig()

    # (a) JIT warm-up, each in a fresh subprocess
    print(f"\n(a) JIT warm-up: first vs second replay of a tiny trace "
          f"({common.lookups_of(WARMUP_STEPS, WARMUP_BATCH):,}"
          f" lookups, same tables) in a fresh process; warm-up = first - second")
    warm_rows = []
    for name in policies:
        warm = run_worker(["--worker-warmup", name, str(tiny)])
        row = [name, f"{warm['import_s']:.2f}", f"{warm['first_s']:.2f}", f"{warm['second_s']:.2f}",
               f"{warm['first_s'] - warm['second_s']:.2f}"]
        cold = None
        if not args.no_cold:
            with tempfile.TemporaryDirectory(prefix="fiitedsim-cold-numba-") as tmp:
                cold = run_worker(["--worker-warmup", name, str(tiny)], cache_dir=tmp)
            row += [f"{cold['first_s']:.2f}", f"{cold['second_s']:.2f}", f"{cold['first_s'] - cold['second_s']:.2f}"]
        else:
            row += ["-", "-", "-"]
        warm_rows.append(row)
        record["policies"].setdefault(name, {})["warmup"] = {"disk_cache": warm, "cold": cold}
    common.print_table(["policy", "import s", "cached: 1st s", "2nd s", "warm-up s",
                        "cold: 1st s", "2nd s", "compile s"], warm_rows)
    print("  'cached' uses the default on-disk kernel cache (warm unless the engine sources changed since the last\n"
          "  run, then its 1st replay compiles); 'cold' points NUMBA_CACHE_DIR at an empty temporary folder.")

    # reference figures: reading the trace
    print(f"\nreading {common.rel(trace)} ({trace.stat().st_size / 2**20:,.0f} MiB)")
    scan_wall, scan_cpu, scan_n = pyarrow_scan(trace, TRACE_COLUMNS)
    scan3_wall, scan3_cpu, scan3_n = pyarrow_scan(trace, TRACE_COLUMNS[:3])
    _, batches, load_wall, load_cpu = load_batches(trace)
    n_lookups = sum(b.num_lookups for b in batches)
    del batches
    gc.collect()
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

    # (b) engine throughput, batches in memory, every run a fresh process, policies and the floor alternating
    print(f"\n(b) engine: consume() of the in-memory batches + finish(), {args.repeat} runs per policy, each a fresh "
          f"process, alternating{', pinned to one CPU' if args.pin and hasattr(os, 'sched_setaffinity') else ''}")
    engine: dict = {name: [] for name in policies}
    floors: list[dict] = []
    for rep in range(max(1, args.repeat)):
        for name in policies:
            run = run_worker(["--worker-engine", name, str(trace)] + (["--digest"] if name == "fiited" else [])
                             + (["--pin"] if args.pin else []))
            engine[name].append(run)
            if name == "fiited":
                floors.append(run_worker(["--worker-floor", str(trace)] + (["--pin"] if args.pin else [])))
    for name in policies:
        runs = engine[name]
        walls = [r["wall_s"] for r in runs]
        split = (f", rounds {runs_line(runs, 'gap_wall_s')} s" if name in ("fiited", "row-prune") else "")
        print(f"  {name:12s} runs: {runs_line(runs)} s (cpu {runs_line(runs, 'cpu_s')} s{split})")
        record["policies"][name]["engine"] = {"runs_s": walls, "best_s": min(walls),
                                              "median_s": statistics.median(walls),
                                              "cpu_s": [r["cpu_s"] for r in runs],
                                              "rounds_s": [r["gap_wall_s"] for r in runs],
                                              "lookups": runs[0]["lookups"]}
    floor = None
    if floors:
        floor = min(floors, key=lambda r: r["wall_s"])
        same = len({r["digest"] for r in engine["fiited"]} | {f["digest"] for f in floors}) == 1
        print(f"  {'floor':12s} runs: {runs_line(floors)} s  (track the row + update its utilities only, no VHPI "
              f"store; {floor['tracked_rows']:,} rows)")
        print(f"  floor rows and utilities equal the fiited runs', bit for bit: {same}")
        record["utility_floor"] = {"runs_s": [r["wall_s"] for r in floors], "best_s": floor["wall_s"],
                                   "lookups": floor["lookups"], "mlps": mps(floor["lookups"], floor["wall_s"]),
                                   "same_utilities": same}

    # (c) end-to-end
    print("\n(c) end-to-end: replay(TraceSource(path), [policy], ...), Parquet decoding and validation included\n"
          "    (replay() may decode the next batches on a second thread and skip grad_norm for policies that do\n"
          "    not use it; cpu s > wall s shows a second core at work)")
    for name in policies:
        end_to_end(name, tiny, cfg)  # kernels loaded outside the timing
    e2e = {}
    for name in policies:
        e2e[name] = end_to_end(name, trace, cfg)
        print(f"  {name:12s} {e2e[name]['wall_s']:.2f} s wall, {e2e[name]['cpu_s']:.2f} s cpu")
        record["policies"][name]["end_to_end"] = {k: v for k, v in e2e[name].items() if k != "summary"}
        if e2e[name]["summary"] != engine[name][0]["summary"]:
            print(f"  warning: {name}: the end-to-end summary differs from the in-memory engine run's")

    # summary table
    rows = []
    for name in policies:
        best = min(engine[name], key=lambda r: r["wall_s"])
        ee = e2e[name]
        target = TARGETS.get(name)
        e_mps, x_mps = mps(best["lookups"], best["wall_s"]), mps(ee["lookups"], ee["wall_s"])
        rows.append([name, f"{best['lookups']:,}", f"{best['wall_s']:.3f}", f"{e_mps:.1f}", f"{ee['wall_s']:.2f}",
                     f"{x_mps:.1f}", f">= {target / 1e6:.0f} M/s" if target else "-",
                     common.verdict(e_mps * 1e6 >= target) if target else "-",
                     common.verdict(x_mps * 1e6 >= target) if target else "-"])
        record["policies"][name]["engine_mlps"] = e_mps
        record["policies"][name]["end_to_end_mlps"] = x_mps
        record["policies"][name]["target_mlps"] = target / 1e6 if target else None
    print()
    common.print_table(["policy", "lookups", "engine s", "engine M/s", "end-to-end s", "e2e M/s", "target",
                        "engine", "e2e"], rows,
                       title="RESULT (target judged on the best engine run; the e2e column shows whether "
                             "the full replay incl. decoding would meet it too)")
    print(f"reference, same run: pyarrow scan of step,table,row,grad_norm {scan_wall:.2f} s "
          f"({mps(scan_n, scan_wall):.1f} M rows/s), of step,table,row {scan3_wall:.2f} s "
          f"({mps(scan3_n, scan3_wall):.1f} M rows/s); TraceSource.batches() {load_wall:.2f} s "
          f"({mps(n_lookups, load_wall):.1f} M lookups/s)")
    if floor and "fiited" in policies:
        best = min(engine["fiited"], key=lambda r: r["wall_s"])
        print(f"utility floor, fresh processes alternating with the fiited runs: {floor['wall_s']:.3f} s "
              f"({mps(floor['lookups'], floor['wall_s']):.1f} M lookups/s): tracking rows and updating utilities "
              f"alone, without the VHPI store, takes {floor['wall_s'] / best['wall_s']:.0%} of the fiited "
              "engine's time")
    print(f"load average at end: {common.load()} (other processes on this machine slow every figure down)")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
