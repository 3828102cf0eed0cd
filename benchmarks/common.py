"""Shared helpers of the benchmark scripts: the benchmark trace, cached on disk, and small printing aids.

The benchmark trace is the one of the performance targets: Zipf 1.05 over 4
tables of 2.5M rows, D = 64, C = 8 (K = 8 chunks), inline gradient norms,
4096 lookups per table per step, so `steps` steps hold steps * 16,384 lookups
(1221 steps ~ 20M, 12210 steps ~ 200M).

Traces are written once under `benchmarks/out/` (git-ignored) and reused; the
file name encodes every argument, and a file is only trusted if its Parquet
footer says it holds the expected number of lookups (an interrupted run
leaves no file behind because `generate` writes all-or-nothing, but a check
costs nothing).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
REPO = HERE.parent

# The benchmark trace of the targets
PROFILE = "zipf"
ALPHA = 1.05
TABLES = 4
ROWS = 2_500_000
BATCH = 4096
DIM = 64
CHUNK = 8
GRAD = True
BUDGET = "0.10"

STEPS_20M = 1221      # 1221 * 4 * 4096 = 20,004,864 lookups


def lookups_of(steps: int, batch: int = BATCH) -> int:
    return steps * TABLES * batch


def grad_layout() -> str:
    """The name part of this tree's `grad_norm` layout: "grad" for the lists written up to 5cddf2c, "gradpacked"
    for packed float32 (issue 20), so that a trace of either writer is cached under its own name."""
    import pyarrow as pa

    from fiitedsim.config import TableSpec
    from fiitedsim.traces.writer import trace_schema
    kind = trace_schema([TableSpec("t", rows=1)], True).field("grad_norm").type
    return "gradpacked" if pa.types.is_fixed_size_binary(kind) else "grad"


def trace_path(steps: int, seed: int = 0, batch: int = BATCH) -> Path:
    """Where the benchmark trace of `steps` steps lives (the name encodes every generator argument and the
    writer's grad_norm layout)."""
    grad = grad_layout() if GRAD else "nograd"
    return OUT / (f"{PROFILE}{ALPHA:g}_t{TABLES}_r{ROWS}_b{batch}_d{DIM}_c{CHUNK}_{grad}"
                  f"_s{steps}_seed{seed}.parquet")


def _holds(path: Path, lookups: int) -> bool:
    import pyarrow.parquet as pq
    try:
        return pq.ParquetFile(path).metadata.num_rows == lookups
    except Exception:  # unreadable or truncated: regenerate
        return False


def ensure_trace(path: str | Path | None, steps: int, seed: int = 0, batch: int = BATCH,
                 verbose: bool = True) -> Path:
    """Generate the benchmark trace of `steps` steps at `path` unless it is already there; return its path.

    `path=None` picks the default name under benchmarks/out/ (see `trace_path`).
    Prints how long generation took (or that the cached file was reused).
    """
    from fiitedsim.traces.generate import GenerateConfig, generate

    path = Path(path) if path is not None else trace_path(steps, seed, batch)
    cfg = GenerateConfig(profile=PROFILE, alpha=ALPHA, tables=TABLES, rows=ROWS, steps=steps, batch=batch,
                         dim=DIM, chunk=CHUNK, grad=GRAD, seed=seed)
    if path.exists() and _holds(path, cfg.lookups):
        if verbose:
            print(f"trace: reusing {rel(path)} ({cfg.lookups:,} lookups, {path.stat().st_size / 2**20:,.0f} MiB)")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"trace: generating {rel(path)} ({cfg.lookups:,} lookups) ...", flush=True)
    t0 = time.perf_counter()
    last = [t0]

    def progress(written: int) -> None:
        now = time.perf_counter()
        if verbose and now - last[0] > 30:
            last[0] = now
            print(f"  ... {written:,} / {cfg.lookups:,} lookups after {now - t0:.0f} s", flush=True)

    report = generate(path, cfg, progress=progress)
    seconds = time.perf_counter() - t0
    if verbose:
        print(f"trace: generated {report.lookups:,} lookups in {seconds:.1f} s "
              f"({report.lookups / seconds / 1e6:.1f} M lookups/s), {path.stat().st_size / 2**20:,.0f} MiB",
              flush=True)
    return path


def size_bytes(path: str | Path) -> int:
    """Bytes of a trace file, or of every part in a trace folder."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.glob("*.parquet")) if path.is_dir() else path.stat().st_size


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def machine_line() -> str:
    """One line describing where and when the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{when}; {cpu}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}; "
            f"git {git_rev()}")


def git_rev() -> str:
    import subprocess
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no",
                                "--", "fiitedsim"], capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "") if rev else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def load() -> str:
    """The 1/5/15-minute load averages, to tell whether other processes competed for the CPUs."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return "?"


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> None:
    """Plain fixed-width table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def fmt(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    if title:
        print(title)
    print(fmt(headers))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print(fmt(r))
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ensure_repeated_trace(base: Path, times: int, verbose: bool = True) -> Path:
    """The base trace played `times` times in a row (steps shifted), written once under benchmarks/out/.

    Every repetition looks up exactly the same rows, so replay state (which grows with the distinct
    rows seen) is the same as for the base trace: only streaming can make memory grow.
    """
    import pyarrow.parquet as pq

    from fiitedsim.config import tables_from_json
    from fiitedsim.traces.writer import TABLES_KEY, TraceWriter

    path = base.with_name(f"{base.stem}_x{times}.parquet")
    src = pq.ParquetFile(base)
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == times * src.metadata.num_rows:
        if verbose:
            print(f"reusing {rel(path)}")
        return path
    tables = tables_from_json(json.loads(src.schema_arrow.metadata[TABLES_KEY]), str(base))
    span = int(src.read_row_group(src.num_row_groups - 1, columns=["step"]).column(0)[-1].as_py()) + 1
    start = time.perf_counter()
    with TraceWriter(path, tables, with_grad=True) as out:
        for rep in range(times):
            for g in range(src.num_row_groups):
                part = src.read_row_group(g)
                grad = part.column("grad_norm").combine_chunks()
                out.write(part.column("step").to_numpy() + rep * span, part.column("table").to_numpy(),
                          part.column("row").to_numpy(),
                          grad.values.to_numpy().reshape(len(part), -1))
    if verbose:
        print(f"wrote {rel(path)} ({times} x {rel(base)}) in {time.perf_counter() - start:.1f} s")
    return path


def fiitedsim_exe() -> list[str]:
    """The `fiitedsim` command of this interpreter's environment (or `python -m fiitedsim`)."""
    import shutil

    exe = Path(sys.executable).parent / "fiitedsim"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("fiitedsim")
    return [found] if found else [sys.executable, "-m", "fiitedsim"]


def ensure_repeated_parts(base: Path, times: int, verbose: bool = True) -> Path:
    """The base trace played `times` times in a row, as a folder of `times` Parquet parts (one per repetition).

    Part i is the base with every step shifted by i * (last step + 1); the table metadata and row
    groups are copied as they are. This is how a trace larger than memory (or disk per file) is
    given to `fiitedsim replay FOLDER`. Written once under benchmarks/out/, a part only when its
    footer does not already hold the expected rows, each via a temporary name and a rename.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = base.with_name(f"{base.stem}_x{times}_parts")
    folder.mkdir(parents=True, exist_ok=True)
    src = pq.ParquetFile(base)
    rows = src.metadata.num_rows
    span = int(src.read_row_group(src.num_row_groups - 1, columns=["step"]).column(0)[-1].as_py()) + 1
    start, written = time.perf_counter(), 0
    for rep in range(times):
        part = folder / f"part-{rep:04d}.parquet"
        if part.exists() and _holds(part, rows):
            continue
        tmp = part.with_name(f".{part.name}.tmp")
        with pq.ParquetWriter(tmp, src.schema_arrow, compression="zstd") as out:
            for g in range(src.num_row_groups):
                group = src.read_row_group(g)
                step = pa.array(group.column("step").to_numpy() + rep * span)
                out.write_table(group.set_column(group.schema.get_field_index("step"), "step", step))
        tmp.rename(part)
        written += 1
        if verbose and (time.perf_counter() - start) > 0:
            print(f"  part {rep + 1}/{times} written ({time.perf_counter() - start:.0f} s)", flush=True)
    if verbose:
        verb = f"wrote {written} parts in {time.perf_counter() - start:.1f} s" if written else "reusing"
        print(f"{verb}: {rel(folder)} ({times} x {rel(base)}, {times * rows:,} lookups)")
    return folder


def worker_env(root: Path | None, own_cache: bool) -> dict:
    """The environment of a worker: PYTHONPATH at `root` (the tree whose fiitedsim it imports), and without
    NUMBA_CACHE_DIR when `own_cache` (the package then keys its kernel cache on its own sources)."""
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if own_cache:
        env.pop("NUMBA_CACHE_DIR", None)
    return env


def cli_command(root: Path | None, argv: list[str]) -> list[str]:
    """The command that runs `fiitedsim ARGV` with `root`'s package (PYTHONPATH from `worker_env`) and checks that it
    imported that package. Run it from a temporary folder: `python -m` would put the working directory first on
    sys.path, where a checkout would shadow PYTHONPATH."""
    where = str(root.resolve()) if root else ""
    check = f"assert fiitedsim.__file__.startswith({where!r}), fiitedsim.__file__"
    return [sys.executable, "-c", f"import sys, fiitedsim; {check}; sys.argv = {['fiitedsim', *argv]!r}; "
                                  "from fiitedsim.cli import main; main()"]


def extract_rev(rev: str) -> tuple[Path, str]:
    """REV's `fiitedsim` package and `benchmarks/` scripts, extracted once under benchmarks/out/rev-HASH/ with
    `git archive`; (folder, full hash). A process with PYTHONPATH at the folder (`worker_env`) imports REV's
    package."""
    import shutil
    import subprocess
    import tarfile
    import tempfile

    full = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                          capture_output=True, text=True)
    if full.returncode != 0:
        raise SystemExit(f"--against: {rev!r} is not a commit of {REPO}: {full.stderr.strip()}")
    full_hash = full.stdout.strip()
    root = OUT / f"rev-{full_hash[:12]}"
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        with tempfile.TemporaryDirectory() as tmp:
            tar = Path(tmp) / "rev.tar"
            subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(tar), full_hash,
                            "fiitedsim", "benchmarks"], check=True)
            with tarfile.open(tar) as tf:
                try:
                    tf.extractall(root, filter="data")
                except TypeError:  # Python without extraction filters
                    tf.extractall(root)
        done.write_text(full_hash + "\n")
    return root, full_hash


if __name__ == "__main__":  # `python benchmarks/common.py [STEPS]`: just make the trace
    ensure_trace(None, int(sys.argv[1]) if len(sys.argv) > 1 else STEPS_20M)
