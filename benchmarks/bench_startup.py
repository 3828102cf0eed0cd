"""Wall time of `fiitedsim replay -q` on the shipped sample, start-up included, with the on-disk kernel cache.

Target (the issue): compiled kernels are cached on disk, so a second
`fiitedsim replay` of the shipped sample finishes in under 3 s wall time,
start-up included.

Runs `fiitedsim replay -q` (no trace argument: the sample shipped in
fiitedsim/data/) twice, each in its own subprocess with the default kernel
cache; the first run compiles and fills the cache if it is cold (e.g. the
engine sources changed since the last run), the second must load from it.
The reference figure measured in the same run: `python -c "import numpy,
numba, polars, pyarrow"`, the floor that imports alone put under any start-up
(best of 3, after the replays, so the file cache is warm for both).

Usage: python benchmarks/bench_startup.py [--runs 2] [--cold]
  --cold   first run with NUMBA_CACHE_DIR at an empty temporary folder filled by run 1 and
           reused by the later runs (shows the compile cost and that the cache works, without
           touching the default cache).
Always exits 0 once the measurements ran; a missed target is reported as FAIL.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LIMIT_S = 3.0




def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall, proc


def cache_dir(env: dict) -> str:
    """The kernel cache folder fiitedsim would use under `env`."""
    code = "import fiitedsim, numba; print(numba.config.CACHE_DIR)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2, help="replays in a row (default 2; the 2nd is judged)")
    ap.add_argument("--cold", action="store_true", help="start from an empty temporary kernel cache")
    args = ap.parse_args()
    runs = max(2, args.runs)

    print(f"bench_startup: {common.machine_line()}")
    print(f"load average at start: {common.load()}")
    env = dict(os.environ)
    tmp = None
    if args.cold:
        tmp = tempfile.TemporaryDirectory(prefix="fiitedsim-startup-numba-")
        env["NUMBA_CACHE_DIR"] = tmp.name
    cdir = cache_dir(env)
    cached = len(list(Path(cdir).rglob("*.nbi"))) if Path(cdir).is_dir() else 0
    print(f"kernel cache: {cdir} ({cached} cached kernel index files; run 1 compiles whatever is missing)")
    cmd = common.fiitedsim_exe() + ["replay", "-q"]
    print(f"command: {' '.join(cmd)}   (replays the shipped sample through all four policies)")

    walls = []
    for i in range(runs):
        wall, proc = timed(cmd, env)
        walls.append(wall)
        print(f"  run {i + 1}: {wall:.2f} s", flush=True)
        if i == 0:
            title = next((ln for ln in proc.stdout.splitlines() if "lookups" in ln), "").strip()
            if title:
                print(f"    ({title})")

    floor_cmd = [sys.executable, "-c", "import numpy, numba, polars, pyarrow"]
    floors = [timed(floor_cmd, env)[0] for _ in range(3)]
    help_walls = [timed(common.fiitedsim_exe() + ["--help"], env)[0] for _ in range(3)]
    if tmp is not None:
        tmp.cleanup()

    rows = [[f"fiitedsim replay -q, run {i + 1}", f"{w:.2f}",
             ("< 3 s: " + common.verdict(w < LIMIT_S)) if i == 1 else ""] for i, w in enumerate(walls)]
    rows.append(['python -c "import numpy, numba, polars, pyarrow" (best of 3)', f"{min(floors):.2f}", "reference"])
    rows.append(["fiitedsim --help (best of 3)", f"{min(help_walls):.2f}", "reference"])
    print()
    common.print_table(["command", "wall s", "target"], rows)
    second = walls[1]
    print(f"\nload average at end: {common.load()}")
    print(f"RESULT: second `fiitedsim replay -q` of the sample: {second:.2f} s wall "
          f"(target < {LIMIT_S:.0f} s; import floor {min(floors):.2f} s, so {second - min(floors):.2f} s above it)  "
          f"{common.verdict(second < LIMIT_S)}")


if __name__ == "__main__":
    main()
