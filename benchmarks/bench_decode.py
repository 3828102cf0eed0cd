"""How fast each encoding of `grad_norm` decodes (issue 20, part 4): the measurement behind the trace writer's choice.

The benchmark trace (benchmarks/common.py: 20.0M lookups, 4 tables x 2.5M rows, Zipf 1.05, D = 64, C = 8 so K = 8
gradient norms per lookup) is rewritten, row group by row group, in each candidate encoding of its `grad_norm`
column under benchmarks/out/decode/ (cached). Then, in fresh processes, the encodings taking turns in a rotating
order, --repeat times:

  * scan:   a bare pyarrow scan of step, table, row and the gradient column(s) (`iter_batches` per row group,
            nothing else);
  * source: `TraceSource(path).batches()`, decoding and validation (skipped for a layout the reader does not
            read);

and the file size. The lines printed end with the commit, date and load. Candidates:

  list-zstd-dict   list<float32>, zstd, dictionary on: what 5cddf2c's writer writes (the "old" encoding)
  list-zstd        the same without a dictionary for grad_norm
  list-zstd-bss    ... and byte-stream-split floats
  list-lz4-bss     ... lz4 instead of zstd for grad_norm
  list-none        no dictionary, no compression for grad_norm
  fixed-zstd-bss   fixed_size_list<float32, K> (Parquet still stores a list: repetition levels remain)
  columns-zstd-bss K float32 columns grad_norm_0 .. grad_norm_{K-1} (no repetition levels; the reader would
                   still have to interleave them into the [n, K] matrix: not read by TraceSource)
  columns-lz4-bss  the same with lz4
  bytes-zstd-bss   packed: fixed_size_binary(4 K), the K float32 of a lookup side by side (no repetition
                   levels, and the decoded buffer is the [n, K] matrix), zstd, byte-stream split
  bytes-lz4-bss    the same with lz4
  bytes-lz4        lz4 without byte-stream split
  bytes-none       neither compression nor byte-stream split
  writer           what this tree's TraceWriter writes

With --cli it measures targets 2 and 3 instead: `fiitedsim replay TRACE --policy fiited` (progress bar on a
pseudo-terminal, as on a terminal) against the engine alone (bench_replay's engine worker: in-memory batches)
on the benchmark trace and on one of 2000 lookups per table per step (20.0M lookups), each written packed by
this tree and converted to 5cddf2c's list encoding; summaries of the two encodings are compared.

Usage: python benchmarks/bench_decode.py [--steps 1221] [--repeat 3] [--encodings a,b,...] [--target 15]
       python benchmarks/bench_decode.py --cli [--repeat 3]
The last lines judge the chosen encoding (the writer's, `fiitedsim.traces.writer`) against the target of
15 M lookups/s for `TraceSource.batches()`, and the old encoding beside it.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

GRAD_PATH = "grad_norm.list.element"  # the Parquet column path of a list's values
#: The candidates, named LAYOUT-CODEC[-dict][-bss]: dictionary on, byte-stream split on (see `encoding`).
ENCODINGS = ["list-zstd-dict", "list-zstd", "list-zstd-bss", "list-lz4-bss", "list-none", "fixed-zstd-bss",
             "columns-zstd-bss", "columns-lz4-bss", "bytes-zstd-bss", "bytes-lz4-bss", "bytes-lz4", "bytes-none"]


def encoding(name: str) -> tuple[str, str, bool, bool]:
    """(layout, codec of the gradient column(s), dictionary, byte-stream split) of a candidate's name."""
    layout, codec, *flags = name.split("-")
    return layout, codec, "dict" in flags, "bss" in flags


INT_COLUMNS = ["step", "table", "row"]
#: The trace of the CLI target: 2000 lookups per table per step, 2500 steps x 4 tables = 20.0M lookups.
CLI_BATCH, CLI_STEPS = 2000, 2500
HERE = Path(__file__).resolve().parent


def grad_columns(layout: str, k: int) -> list[str]:
    """The Parquet column paths that hold the gradient norms in `layout`."""
    if layout == "columns":
        return [f"grad_norm_{c}" for c in range(k)]
    return ["grad_norm"] if layout == "bytes" else [GRAD_PATH]


def writer_options(name: str, k: int) -> dict:
    """ParquetWriter keyword arguments of encoding `name`; the integer columns as the trace writer writes them."""
    layout, codec, dictionary, bss = encoding(name)
    grads = grad_columns(layout, k)
    return {"compression": {**{c: "zstd" for c in INT_COLUMNS}, **{c: codec for c in grads}},
            "use_dictionary": INT_COLUMNS + (grads if dictionary else []),
            "use_byte_stream_split": grads if bss else False, "write_page_checksum": True}


def convert(source: Path, name: str) -> Path:
    """The benchmark trace rewritten with encoding `name` (cached under benchmarks/out/decode/)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = common.OUT / "decode" / f"{source.stem}.{name}.parquet"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    layout = encoding(name)[0]
    with pq.ParquetFile(source) as pf:
        meta = pf.schema_arrow.metadata
        k = None
        writer = None
        for group in range(pf.num_row_groups):
            t = pf.read_row_group(group, columns=INT_COLUMNS + ["grad_norm"])
            grad, values = grad_values(t.column("grad_norm").combine_chunks())
            k = len(values) // len(grad)
            cols = {c: t.column(c).combine_chunks() for c in INT_COLUMNS}
            if layout == "list":
                cols["grad_norm"] = grad
            elif layout == "fixed":
                cols["grad_norm"] = pa.FixedSizeListArray.from_arrays(values, k)
            elif layout == "bytes":
                cols["grad_norm"] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * k), len(grad),
                                                                         [None, pa.py_buffer(values.to_numpy())])
            else:
                matrix = values.to_numpy().reshape(-1, k)
                cols.update({f"grad_norm_{c}": pa.array(np.ascontiguousarray(matrix[:, c])) for c in range(k)})
            table = pa.table(cols).replace_schema_metadata(meta)
            if writer is None:
                tmp = out.with_name("." + out.name)
                writer = pq.ParquetWriter(tmp, table.schema, **writer_options(name, k))
            writer.write_table(table)
        writer.close()
    tmp.rename(out)
    return out


def grad_values(col):
    """A grad_norm column of either layout as (the same column as lists, its flat float32 values)."""
    import numpy as np
    import pyarrow as pa

    from fiitedsim.traces.writer import unpack_grad
    if pa.types.is_fixed_size_binary(col.type):
        matrix = unpack_grad(col)
        values = pa.array(np.ascontiguousarray(matrix).reshape(-1))
        offsets = pa.array(np.arange(0, (len(col) + 1) * matrix.shape[1], matrix.shape[1], dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values), values
    return col, col.flatten()


# ----------------------------------------------------------------------------- workers (fresh processes)

def worker_scan(path: str) -> dict:
    """Bare pyarrow scan of every column, row group by row group."""
    import pyarrow.parquet as pq
    gc.collect()
    t0 = time.perf_counter()
    n = 0
    with pq.ParquetFile(path) as pf:
        for group in range(pf.num_row_groups):
            for batch in pf.iter_batches(batch_size=1 << 20, row_groups=[group]):
                n += batch.num_rows
    return {"wall_s": time.perf_counter() - t0, "lookups": n}


def worker_source(path: str) -> dict:
    """`TraceSource(path).batches()`, grad_norm included."""
    from fiitedsim.traces.source import TraceSource
    gc.collect()
    t0 = time.perf_counter()
    n = 0
    source = TraceSource(path)
    if not source.has_grad:
        return {"error": "not read"}
    for batch in source.batches():
        n += batch.num_lookups
    return {"wall_s": time.perf_counter() - t0, "lookups": n}


def run(mode: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), f"--worker-{mode}", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main

def median_mps(runs: list[dict]) -> tuple[float | None, str]:
    """Median M lookups/s of the runs that succeeded, and the walls as text."""
    good = [r for r in runs if "wall_s" in r]
    if not good:
        return None, runs[0].get("error", "-") if runs else "-"
    return (statistics.median(r["lookups"] / r["wall_s"] / 1e6 for r in good),
            ", ".join(f"{r['wall_s']:.2f}" for r in good))


def mps_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def measure(files: dict[str, Path], repeat: int) -> dict:
    """Every (encoding, mode) `repeat` times in fresh processes, the encodings in a rotating order."""
    names = list(files)
    runs = {(n, m): [] for n in names for m in ("scan", "source")}
    for rep in range(repeat):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for mode in ("scan", "source"):
            for name in order:
                runs[(name, mode)].append(run(mode, files[name]))
    return runs


# ----------------------------------------------------------------------------- end to end (--cli)

def _drain(fd: int) -> None:
    """Read a pseudo-terminal until it closes, so that the progress bar never blocks on a full buffer."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


def cli_replay(trace: Path) -> dict:
    """`fiitedsim replay TRACE --policy fiited --budget B --out TMP` in a fresh process with its default display:
    stderr a pseudo-terminal, so the progress bar draws (redirected, it would not). Wall time and the summary."""
    import pty
    import tempfile
    import threading
    with tempfile.TemporaryDirectory(prefix="fiitedsim-decode-") as tmp:
        out = Path(tmp) / "out"
        cmd = common.fiitedsim_exe() + ["replay", str(trace), "--policy", "fiited", "--budget", common.BUDGET,
                                        "--out", str(out)]
        master, slave = pty.openpty()
        reader = threading.Thread(target=_drain, args=(master,), daemon=True)
        reader.start()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, cwd=tmp)
        wall = time.perf_counter() - t0
        os.close(slave)
        reader.join(5)
        os.close(master)
        if proc.returncode:
            return {"error": f"exit {proc.returncode}"}
        summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "lookups": summary["trace"]["lookups"], "policies": summary["policies"]}


def engine_only(trace: Path) -> dict:
    """bench_replay's engine run: a fresh process replays the in-memory batches; consume() + finish() timed."""
    proc = subprocess.run([sys.executable, str(HERE / "bench_replay.py"), "--worker-engine", "fiited", str(trace)],
                          capture_output=True, text=True)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def without_seconds(value):
    """A summary with its wall-time fields blanked (the one allowed difference between two replays)."""
    if isinstance(value, dict):
        return {k: None if "seconds" in k else without_seconds(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def end_to_end(repeat: int) -> None:
    """Targets 2 and 3 of issue 20: CLI replay against engine-only speed, on both benchmark traces (4096 and
    2000 lookups per table per step), each in the packed (this writer) and the list (5cddf2c) encoding."""
    traces = {}
    for batch, steps in ((common.BATCH, common.STEPS_20M), (CLI_BATCH, CLI_STEPS)):
        packed = common.ensure_trace(None, steps, batch=batch)
        traces[f"b{batch} packed"] = packed
        traces[f"b{batch} list"] = convert(packed, "list-zstd-dict")
    runs = {(name, kind): [] for name in traces for kind in ("cli", "engine")}
    for rep in range(repeat):
        names = list(traces) if rep % 2 == 0 else list(traces)[::-1]
        for name in names:
            runs[(name, "cli")].append(cli_replay(traces[name]))
            runs[(name, "engine")].append(engine_only(traces[name]))
    rows = []
    for name in traces:
        cli, cli_walls = median_mps(runs[(name, "cli")])
        eng, eng_walls = median_mps(runs[(name, "engine")])
        ratio = None if cli is None or eng is None else cli / eng
        rows.append([name, cli_walls, "-" if cli is None else f"{cli:.2f}", eng_walls,
                     "-" if eng is None else f"{eng:.2f}", "-" if ratio is None else f"{ratio:.2f}"])
    common.print_table(["trace", "CLI replay s", "CLI M/s", "engine s", "engine M/s", "CLI / engine"], rows,
                       title=f"end to end: `fiitedsim replay TRACE --policy fiited --budget {common.BUDGET}` with its "
                             f"progress bar (a pseudo-terminal), median of {repeat}, vs the engine alone")
    for batch in (common.BATCH, CLI_BATCH):
        a, b = runs[(f"b{batch} packed", "cli")][0], runs[(f"b{batch} list", "cli")][0]
        same = "policies" in a and without_seconds(a["policies"]) == without_seconds(b["policies"])
        print(f"  b{batch}: the summaries of the packed and the list trace are equal (seconds blanked): {same}")
    by = {row[0]: row for row in rows}
    ratio = by[f"b{common.BATCH} packed"][5]
    cli = by[f"b{CLI_BATCH} packed"][2]
    print(f"RESULT CLI replay / engine on the 20M trace (packed): {ratio}, target >= 0.9: "
          f"{common.verdict(ratio != '-' and float(ratio) >= 0.9)}")
    print(f"RESULT CLI replay of the {CLI_BATCH}-lookups-per-table-step trace (packed): {cli} M lookups/s, "
          f"target >= 4: {common.verdict(cli != '-' and float(cli) >= 4)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=common.STEPS_20M)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--encodings", default=",".join(ENCODINGS))
    ap.add_argument("--target", type=float, default=15.0, help="M lookups/s of TraceSource.batches() (default 15)")
    ap.add_argument("--cli", action="store_true", help="measure CLI replays against the engine instead (targets 2, 3)")
    ap.add_argument("--worker-scan", help=argparse.SUPPRESS)
    ap.add_argument("--worker-source", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_scan or args.worker_source:
        out = worker_scan(args.worker_scan) if args.worker_scan else worker_source(args.worker_source)
        print(json.dumps(out))
        return
    names = [n.strip() for n in args.encodings.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENCODINGS]
    if unknown:
        ap.error(f"unknown encoding {unknown[0]!r}; choose from {', '.join(ENCODINGS)}")
    print(f"bench_decode: {common.machine_line()}")
    print(f"load average at start: {common.load()}")
    if args.cli:
        end_to_end(args.repeat)
        print(f"load average at end: {common.load()}")
        return
    trace = common.ensure_trace(None, args.steps)
    files = {n: convert(trace, n) for n in names}
    files["writer"] = trace_by_writer(trace)
    runs = measure(files, args.repeat)
    rows, figures = [], {}
    for name, path in files.items():
        scan, scan_walls = median_mps(runs[(name, "scan")])
        src, src_walls = median_mps(runs[(name, "source")])
        figures[name] = src
        rows.append([name, f"{common.size_bytes(path) / 2**20:,.0f}", scan_walls,
                     "-" if scan is None else f"{scan:.1f}", src_walls, "-" if src is None else f"{src:.1f}"])
    common.print_table(["encoding", "MiB", "scan s", "scan M/s", "batches() s", "batches() M/s"], rows,
                       title=f"median of {args.repeat} fresh processes per cell, encodings alternating")
    chosen = figures.get("writer")
    print(f"RESULT TraceSource.batches() on the writer's encoding: "
          f"{mps_text(chosen)} M lookups/s, target >= {args.target:g}: "
          f"{common.verdict(chosen is not None and chosen >= args.target)}; on the old encoding "
          f"(list-zstd-dict): {mps_text(figures.get('list-zstd-dict'))} M lookups/s")
    print(f"load average at end: {common.load()}")


def trace_by_writer(source: Path) -> Path:
    """The benchmark trace rewritten by this tree's `TraceWriter`, the same row groups."""
    import pyarrow.parquet as pq

    from fiitedsim.config import tables_from_json
    from fiitedsim.traces.writer import TABLES_KEY, TraceWriter

    with pq.ParquetFile(source) as pf:
        tables = tables_from_json(json.loads(pf.schema_arrow.metadata[TABLES_KEY]), str(source))
        out = common.OUT / "decode" / f"{source.stem}.writer.parquet"  # written anew: the writer may have changed
        with TraceWriter(out, tables, with_grad=True) as writer:
            for group in range(pf.num_row_groups):
                t = pf.read_row_group(group, columns=INT_COLUMNS + ["grad_norm"])
                grad, values = grad_values(t.column("grad_norm").combine_chunks())
                writer.write(*(t.column(c).to_numpy() for c in INT_COLUMNS), values.to_numpy().reshape(len(grad), -1))
    return out


if __name__ == "__main__":
    main()
