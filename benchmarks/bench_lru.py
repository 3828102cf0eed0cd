"""`lru` replay throughput against libCacheSim's LRU on the 20M-lookup benchmark trace.

Target (the issue): our `lru` replay >= 2x libCacheSim's LRU `process_trace`
on the same requests at the same capacity, and both MUST give the same miss
ratio (DESIGN 4).

The trace is the one of the core targets (benchmarks/common.py: 4 tables x
2.5M rows, Zipf 1.05, D = 64, C = 8, batch 4096, ~20M lookups), budget 0.10:
every row is 256 bytes, so the cache holds floor(budget / 256) rows. The same
lookups, in the same order, are written once as a libCacheSim oracleGeneral
file under benchmarks/out/ (24-byte records: uint32 timestamp = step,
uint64 obj_id = table * rows + row, uint32 size = 1, int64 next access = -1),
and libCacheSim's LRU is given cache_size = that row count, so both simulate
the same unit-size LRU.

Printed, all in one run:
  (a) JIT warm-up of `lru` (first minus second replay of the tiny trace in a
      fresh process, with the default kernel cache, and with an empty one);
  (b) our engine: consume() of every in-memory RecordBatch + finish() (best of
      --repeat), i.e. the kernel on arrays already in memory, one core;
  (c) our end-to-end `replay()` of the Parquet file (decoding included);
  (d) the peer: libCacheSim `LRU(cache_size).process_trace(TraceReader(...))`
      (best of --repeat; it reads its binary trace through mmap, so its time
      includes decoding its own, much simpler, format);
and the ratio engine / libCacheSim, plus the two miss ratios.

Usage: python benchmarks/bench_lru.py [--steps 1221] [--repeat 2] [--no-cold] [--json FILE]
Always exits 0 once the measurements ran; a missed target is reported as FAIL.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_replay
import common

TARGET_RATIO = 2.0
ORACLE_DTYPE = np.dtype([("timestamp", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access_vtime", "<i8")])


def write_oracle_general(path: Path, batches, rows_per_table: int) -> Path:
    """The lookups of `batches` as a libCacheSim oracleGeneral file (unit sizes); written once, then reused."""
    n = sum(b.num_lookups for b in batches)
    if path.exists() and path.stat().st_size == n * ORACLE_DTYPE.itemsize:
        print(f"oracleGeneral trace: reusing {common.rel(path)}")
        return path
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for b in batches:
            rec = np.empty(b.num_lookups, ORACLE_DTYPE)
            rec["timestamp"] = b.step
            rec["obj_id"] = b.table.astype(np.uint64) * np.uint64(rows_per_table) + b.row.astype(np.uint64)
            rec["obj_size"] = 1
            rec["next_access_vtime"] = -1
            rec.tofile(f)
    tmp.replace(path)
    print(f"oracleGeneral trace: wrote {common.rel(path)} ({n:,} requests, {path.stat().st_size / 2**20:,.0f} MiB) "
          f"in {time.perf_counter() - t0:.1f} s")
    return path


def libcachesim_lru(path: Path, capacity_rows: int) -> dict:
    import libcachesim as lcs
    gc.collect()
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    cache = lcs.LRU(cache_size=capacity_rows)
    c0, t0 = time.process_time(), time.perf_counter()
    miss_ratio, _ = cache.process_trace(reader)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "miss_ratio": miss_ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=common.STEPS_20M,
                    help=f"steps of the benchmark trace (default {common.STEPS_20M} ~ 20M lookups)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of ours and of libCacheSim; best reported (default 2)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocess")
    ap.add_argument("--json", type=Path, help="also write all measurements to this JSON file")
    args = ap.parse_args()

    from fiitedsim.config import ReplayConfig
    from fiitedsim.replay import parse_budgets

    print(f"bench_lru: {common.machine_line()}")
    print(f"load average at start: {common.load()}")
    trace = common.ensure_trace(None, args.steps)
    tiny = common.ensure_trace(None, bench_replay.WARMUP_STEPS, batch=bench_replay.WARMUP_BATCH)
    cfg = ReplayConfig()
    record: dict = {"machine": common.machine_line(), "steps": args.steps}

    # (a) JIT warm-up
    warm = bench_replay.run_warmup("lru", tiny, None)
    cold = None
    if not args.no_cold:
        with tempfile.TemporaryDirectory(prefix="fiitedsim-cold-numba-") as tmp:
            cold = bench_replay.run_warmup("lru", tiny, tmp)
    compile_s = f", empty cache (compile) {cold['first_s'] - cold['second_s']:.2f} s" if cold else ""
    print(f"\n(a) JIT warm-up of lru (tiny trace, fresh process): default cache "
          f"{warm['first_s'] - warm['second_s']:.2f} s{compile_s}")
    record["warmup"] = {"disk_cache": warm, "cold": cold}
    bench_replay.in_process_warmup("lru", tiny, cfg)

    # (b) ours, batches in memory
    source, batches, load_wall, _ = bench_replay.load_batches(trace)
    budgets = parse_budgets(common.BUDGET, source.tables)
    row_bytes = common.DIM * source.tables[0].dtype_bytes
    capacity_rows = budgets[0][1] // row_bytes
    n = sum(b.num_lookups for b in batches)
    print(f"\ntrace {common.rel(trace)}: {n:,} lookups (loaded in {load_wall:.1f} s); budget {common.BUDGET} = "
          f"{budgets[0][1]:,} bytes = {capacity_rows:,} rows of {row_bytes} bytes")
    oracle = write_oracle_general(trace.with_suffix(".oracleGeneral.bin"), batches, common.ROWS)
    # TraceSource's first batch has read-only step/row arrays and the later ones writeable arrays: two Numba
    # specialisations of the kernel, the second compiled at the first call with batch 2 -- do that untimed
    bench_replay.engine_run("lru", source, batches[:2], budgets, cfg, False)
    runs = [bench_replay.engine_run("lru", source, batches, budgets, cfg, False) for _ in range(max(1, args.repeat))]
    ours = min(runs, key=lambda r: r["wall_s"])
    print("(b) ours, engine (in-memory batches): runs (wall/cpu) "
          + ", ".join(f"{r['wall_s']:.3f}/{r['cpu_s']:.3f}" for r in runs) + " s")
    del batches
    gc.collect()

    # (c) ours, end-to-end
    e2e = bench_replay.end_to_end("lru", trace, cfg)
    print(f"(c) ours, end-to-end replay(): {e2e['wall_s']:.2f} s wall, {e2e['cpu_s']:.2f} s cpu")

    # (d) the peer
    peer_runs = [libcachesim_lru(oracle, capacity_rows) for _ in range(max(1, args.repeat))]
    peer = min(peer_runs, key=lambda r: r["wall_s"])
    print("(d) libCacheSim LRU process_trace: runs (wall/cpu) "
          + ", ".join(f"{r['wall_s']:.3f}/{r['cpu_s']:.3f}" for r in peer_runs) + " s")

    s = ours["summary"]
    our_misses = s["lookups"] - s["row_hits"]
    peer_misses = round(peer["miss_ratio"] * n)
    same = our_misses == peer_misses and all(r["miss_ratio"] == peer["miss_ratio"] for r in peer_runs)
    ours_mps, e2e_mps = bench_replay.mps(n, ours["wall_s"]), bench_replay.mps(n, e2e["wall_s"])
    peer_mps = bench_replay.mps(n, peer["wall_s"])
    ratio = ours_mps / peer_mps
    cpu_ratio = peer["cpu_s"] / ours["cpu_s"] if ours["cpu_s"] > 0 else float("inf")
    print()
    common.print_table(["simulator", "lookups", "wall s", "cpu s", "M lookups/s", "misses", "miss ratio"], [
        ["fiitedsim lru, engine", f"{n:,}", f"{ours['wall_s']:.3f}", f"{ours['cpu_s']:.3f}", f"{ours_mps:.1f}",
         f"{our_misses:,}", f"{our_misses / n:.12f}"],
        ["fiitedsim lru, end-to-end", f"{n:,}", f"{e2e['wall_s']:.3f}", f"{e2e['cpu_s']:.3f}", f"{e2e_mps:.1f}",
         f"{e2e['summary']['lookups'] - e2e['summary']['row_hits']:,}", "-"],
        ["libCacheSim LRU process_trace", f"{n:,}", f"{peer['wall_s']:.3f}", f"{peer['cpu_s']:.3f}",
         f"{peer_mps:.1f}", f"{peer_misses:,}", f"{peer['miss_ratio']:.12f}"],
    ], title=f"capacity {capacity_rows:,} rows (M lookups/s from wall time)")
    print(f"RESULT: engine / libCacheSim = {ratio:.2f}x by wall time (target >= {TARGET_RATIO:g}x): "
          f"{common.verdict(ratio >= TARGET_RATIO)}; {cpu_ratio:.2f}x by cpu time; end-to-end / libCacheSim = "
          f"{e2e_mps / peer_mps:.2f}x; miss ratios equal: {common.verdict(same)}")
    print(f"load average at end: {common.load()} (other processes on this machine slow every figure down)")
    record.update(capacity_rows=capacity_rows, lookups=n,
                  ours={k: v for k, v in ours.items() if k != "summary"}, ours_runs_s=[r["wall_s"] for r in runs],
                  end_to_end={k: v for k, v in e2e.items() if k != "summary"}, libcachesim=peer,
                  libcachesim_runs_s=[r["wall_s"] for r in peer_runs], ratio=ratio, cpu_ratio=cpu_ratio,
                  our_misses=our_misses, libcachesim_misses=peer_misses, miss_ratio_equal=same)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
