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

Usage: python benchmarks/bench_decode.py [--steps 1221] [--repeat 3] [--encodings a,b,...] [--target 15]
The last lines judge the chosen encoding (the writer's, `fiitedsim.trace_writer`) against the target of
15 M lookups/s for `TraceSource.batches()`, and the old encoding beside it.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

GRAD_PATH = "grad_norm.list.element"  # the Parquet column path of a list's values
ENCODINGS = {
    # name: (layout, writer options for the gradient column(s): compression, dictionary, byte-stream split)
    "list-zstd-dict": ("list", "zstd", True, False),
    "list-zstd": ("list", "zstd", False, False),
    "list-zstd-bss": ("list", "zstd", False, True),
    "list-lz4-bss": ("list", "lz4", False, True),
    "list-none": ("list", "none", False, False),
    "fixed-zstd-bss": ("fixed", "zstd", False, True),
    "columns-zstd-bss": ("columns", "zstd", False, True),
    "columns-lz4-bss": ("columns", "lz4", False, True),
    "bytes-zstd-bss": ("bytes", "zstd", False, True),
    "bytes-lz4-bss": ("bytes", "lz4", False, True),
    "bytes-lz4": ("bytes", "lz4", False, False),
    "bytes-none": ("bytes", "none", False, False),
}
INT_COLUMNS = ["step", "table", "row"]


def grad_columns(layout: str, k: int) -> list[str]:
    """The Parquet column paths that hold the gradient norms in `layout`."""
    if layout == "columns":
        return [f"grad_norm_{c}" for c in range(k)]
    return ["grad_norm"] if layout == "bytes" else [GRAD_PATH]


def writer_options(name: str, k: int) -> dict:
    """ParquetWriter keyword arguments of encoding `name`; the integer columns as the trace writer writes them."""
    layout, codec, dictionary, bss = ENCODINGS[name]
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
    layout = ENCODINGS[name][0]
    with pq.ParquetFile(source) as pf:
        meta = pf.schema_arrow.metadata
        k = None
        writer = None
        for group in range(pf.num_row_groups):
            t = pf.read_row_group(group, columns=INT_COLUMNS + ["grad_norm"])
            grad = t.column("grad_norm").combine_chunks()
            values = grad.flatten()
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
    from fiitedsim.trace import TraceSource
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=common.STEPS_20M)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--encodings", default=",".join(ENCODINGS))
    ap.add_argument("--target", type=float, default=15.0, help="M lookups/s of TraceSource.batches() (default 15)")
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
          f"{'-' if chosen is None else f'{chosen:.1f}'} M lookups/s, target >= {args.target:g}: "
          f"{common.verdict(chosen is not None and chosen >= args.target)}; on the old encoding "
          f"(list-zstd-dict): {figures.get('list-zstd-dict') or '-'}")
    print(f"load average at end: {common.load()}")


def trace_by_writer(source: Path) -> Path:
    """The benchmark trace rewritten by this tree's `TraceWriter`, the same row groups."""
    import pyarrow.parquet as pq

    from fiitedsim.config import tables_from_json
    from fiitedsim.trace_writer import TABLES_KEY, TraceWriter

    with pq.ParquetFile(source) as pf:
        tables = tables_from_json(json.loads(pf.schema_arrow.metadata[TABLES_KEY]), str(source))
        out = common.OUT / "decode" / f"{source.stem}.writer.parquet"  # written anew: the writer may have changed
        with TraceWriter(out, tables, with_grad=True) as writer:
            for group in range(pf.num_row_groups):
                t = pf.read_row_group(group, columns=INT_COLUMNS + ["grad_norm"])
                grad = t.column("grad_norm").combine_chunks()
                values = grad.flatten().to_numpy()
                writer.write(*(t.column(c).to_numpy() for c in INT_COLUMNS), values.reshape(len(grad), -1))
    return out


if __name__ == "__main__":
    main()
