"""Peak RSS of `fiitedsim replay` on the 20M trace and on a 10x longer trace over the same rows.

Target (the issue): the peak RSS of replaying a 10x longer trace over the same
rows is within 10% of the 20M one (the trace is streamed, not loaded).

Each measurement runs `fiitedsim replay TRACE --policy fiited --budget 0.1 -q`
as the only child of a fresh wrapper process (`python -c ...`) which waits for
it and prints `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`: the peak RSS of
that one replay process, unaffected by this script or by the other
measurement. When /usr/bin/time exists its "Maximum resident set size" of the
same run is shown next to it as a cross-check. Before measuring, one replay
of the shipped sample fills the on-disk kernel cache, so neither measured
run pays for (or holds the memory of) compilation.

Reference figures measured in the same run, each in its own child the same way:
  * the same two replays with `--policy full` (the dense baseline, whose state
    does not grow with the trace, and which does not decode grad_norm);
  * a bare pyarrow scan of the columns a FIITED replay reads (step, table,
    row, grad_norm) with `ParquetFile.iter_batches` over the whole file, as
    `TraceSource` does, and the same scan one row group at a time
    (`iter_batches(row_groups=[i])`): what streaming the file costs by itself.
Together they separate what the reader holds from what the FIITED engine
state (tracked rows, index, pages) adds. The replay's summary table is
printed after each run, so the memory the simulator *accounts* (payload,
index, metadata) can be compared with the process's RSS.

The 10x trace is the 20M trace played ten times in a row with shifted steps,
so both replays touch exactly the same rows and any growth is the streaming's
fault (~6 GiB, written once under benchmarks/out/ and reused). With
--fresh-long an independently generated 200M trace is used instead: it
touches about 3x more distinct rows, and FIITED's state grows with the
distinct rows seen (DESIGN 1.3), so its ratio measures that growth too.

The scale-out issue's figure, a 1,000,000,000-lookup trace in parts on disk
(the 20M trace played 50 times, one Parquet part per repetition, replayed as
`fiitedsim replay FOLDER`): `--times 50 --parts --no-reference` (~31 GiB of
parts under benchmarks/out/, written once).

Usage: python benchmarks/bench_rss.py [--steps 1221] [--times 10] [--parts] [--fresh-long] [--policy fiited]
                                      [--budget 0.1] [--no-reference] [--json FILE]
(--policy full --no-reference measures only the dense baseline.)
Always exits 0 once the measurements ran; a missed target is reported as FAIL.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TOLERANCE = 0.10

# The wrapper: run argv[2:] as its only child (its stdout into the file argv[1]), then report that
# child's peak RSS (KiB on Linux) and wall time.
WRAPPER = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "w") as out:
    proc = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write(proc.stderr)
print(json.dumps({"rc": proc.returncode, "maxrss": ru.ru_maxrss, "wall_s": wall,
                  "user_s": ru.ru_utime, "sys_s": ru.ru_stime}))
"""


# A bare pyarrow scan: argv[1] = file, argv[2] = "whole" (one iter_batches over the file) or "rowgroups".
SCAN = r"""
import sys, pyarrow.parquet as pq
pf = pq.ParquetFile(sys.argv[1])
groups = [None] if sys.argv[2] == "whole" else [[i] for i in range(pf.num_row_groups)]
n = 0
for g in groups:
    for b in pf.iter_batches(batch_size=1 << 20, columns=["step", "table", "row", "grad_norm"], row_groups=g):
        n += b.num_rows
print(f"scanned {n:,} rows")
"""




def maxrss_kib(value: int) -> int:
    return value // 1024 if sys.platform == "darwin" else value   # macOS reports bytes, Linux KiB


def measure(cmd: list[str]) -> dict:
    """Peak RSS and wall time of `cmd` run as the only (grand)child of a fresh wrapper process."""
    gnu_time = Path("/usr/bin/time")
    # wrapper -> [/usr/bin/time -v ->] fiitedsim: RUSAGE_CHILDREN covers waited-for descendants too
    inner = ([str(gnu_time), "-v"] if gnu_time.exists() else []) + cmd
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as stdout:
        proc = subprocess.run([sys.executable, "-c", WRAPPER, stdout.name] + inner, capture_output=True, text=True)
        printed = stdout.read()
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrapper failed ({proc.returncode}): {proc.stderr[-3000:]}")
    out = json.loads(lines[-1])
    if out["rc"] != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {out['rc']}:\n{proc.stderr[-3000:]}")
    out["maxrss_kib"] = maxrss_kib(out["maxrss"])
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    out["gnu_time_kib"] = int(m.group(1)) if m else None
    out["cmd"] = " ".join(cmd)
    out["printed"] = printed
    return out


def warm_cache(policy: str) -> None:
    """One unmeasured replay of the shipped sample so the measured runs load kernels instead of compiling."""
    t0 = time.perf_counter()
    subprocess.run(common.fiitedsim_exe() + ["replay", "-q", "--policy", policy], capture_output=True, text=True)
    print(f"kernel cache warmed with `fiitedsim replay -q --policy {policy}` ({time.perf_counter() - t0:.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=common.STEPS_20M, help="steps of the base trace (~20M lookups)")
    ap.add_argument("--times", type=int, default=10,
                    help="the long trace is the base played this many times (default 10: ~200M lookups)")
    ap.add_argument("--parts", action="store_true",
                    help="write the long trace as a folder of parts, one per repetition, and replay the folder")
    ap.add_argument("--fresh-long", action="store_true",
                    help="generate the long trace independently (more distinct rows) instead of repeating the base")
    ap.add_argument("--policy", default="fiited")
    ap.add_argument("--budget", default="0.1")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference runs (replay --policy full, bare pyarrow scans)")
    ap.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    args = ap.parse_args()

    print(f"bench_rss: {common.machine_line()}")
    print(f"load average at start: {common.load()}")
    base = common.ensure_trace(None, args.steps)
    # "a 10x longer trace over the same rows": the base trace played 10 times (identical distinct rows);
    # with --fresh-long, an independently generated 10x trace instead (it touches ~3x more distinct
    # rows, and replay state grows with distinct rows by design, DESIGN 1.3)
    steps_long = args.steps * args.times
    if args.fresh_long:
        long = common.ensure_trace(None, steps_long)
    elif args.parts:
        long = common.ensure_repeated_parts(base, args.times)
    else:
        long = common.ensure_repeated_trace(base, args.times)
    replay_cmd = common.fiitedsim_exe() + ["replay", "TRACE", "--policy", "POLICY", "--budget", args.budget, "-q"]
    runs = [(args.policy, "target", args.policy)]
    if not args.no_reference:
        if args.policy != "full":
            runs.append(("full", "reference: replay --policy full", "full"))
        runs += [("scan", "reference: pyarrow iter_batches, whole file", "whole"),
                 ("scan-rg", "reference: pyarrow iter_batches per row group", "rowgroups")]
    for key, _, policy in runs:
        if not key.startswith("scan"):
            warm_cache(policy)
    results: dict[str, list[dict]] = {}
    for key, what, arg in runs:
        results[key] = []
        for steps, trace in ((args.steps, base), (steps_long, long)):
            if key.startswith("scan"):
                cmd = [sys.executable, "-c", SCAN, str(trace), arg]
            else:
                cmd = [str(trace) if c == "TRACE" else arg if c == "POLICY" else c for c in replay_cmd]
            print(f"{what}: {common.rel(trace)} ...", flush=True)
            r = measure(cmd)
            r.update(lookups=common.lookups_of(steps), steps=steps, trace=str(trace), key=key, what=what)
            results[key].append(r)
            print(f"  peak RSS {r['maxrss_kib'] / 1024:,.1f} MiB in {r['wall_s']:.1f} s; it printed:", flush=True)
            print("\n".join("    " + line for line in r["printed"].rstrip().splitlines()))

    rows = []
    for key, what, _ in runs:
        for r in results[key]:
            rows.append([what if key != args.policy else f"fiitedsim replay --policy {key}", f"{r['steps']}",
                         f"{r['lookups']:,}", f"{common.size_bytes(r['trace']) / 2**20:,.0f}",
                         f"{r['wall_s']:.1f}", f"{r['lookups'] / r['wall_s'] / 1e6:.1f}",
                         f"{r['maxrss_kib'] / 1024:,.1f}",
                         f"{r['gnu_time_kib'] / 1024:,.1f}" if r["gnu_time_kib"] else "-"])
    print(f"\ncommand: {' '.join(replay_cmd).replace('POLICY', args.policy)}")
    common.print_table(["run", "steps", "lookups", "file MiB", "wall s", "M lookups/s", "peak RSS MiB",
                        "/usr/bin/time MiB"], rows)
    print(f"\nload average at end: {common.load()}")
    ratios = {}
    for key, what, _ in runs:
        a, b = results[key][0]["maxrss_kib"], results[key][1]["maxrss_kib"]
        ratios[key] = b / a
        if key != args.policy:
            print(f"{what}: peak RSS long / base = {b / 1024:,.1f} / {a / 1024:,.1f} MiB = {b / a:.3f}")
    a, b = results[args.policy][0]["maxrss_kib"], results[args.policy][1]["maxrss_kib"]
    ratio = ratios[args.policy]
    ok = abs(ratio - 1.0) <= TOLERANCE
    print(f"RESULT ({args.policy}): peak RSS long / base = {b / 1024:,.1f} / {a / 1024:,.1f} MiB = {ratio:.3f} "
          f"(target within {TOLERANCE:.0%}: {1 - TOLERANCE:.2f}..{1 + TOLERANCE:.2f})  {common.verdict(ok)}")
    if args.json:
        args.json.write_text(json.dumps({"machine": common.machine_line(), "runs": results, "ratios": ratios,
                                         "pass": ok}, indent=2) + "\n")


if __name__ == "__main__":
    main()
