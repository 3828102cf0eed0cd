"""The `fiitedsim` command line: thin wrappers that parse, call the library, and print.

Bad input raises `InputError` anywhere below; `main` turns it into one line on
stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from . import options as o
from .atomic import NOTHING_WRITTEN, WRITTEN, check_writable, is_write_error, refuse_inputs, together, written_text
from .config import knob_config
from .errors import InputError
from .paths import shown
from .streams import (
    GuardedStdout,
    Interrupted,
    StdoutFailed,
    escape_unencodable_output,
    guard_standard_streams,
    signals_raise,
)

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
    err.print(Text.assemble((label, style), " ", " ".join(shown(message).split())), highlight=False)


def _note(text) -> None:
    """A plain line on stderr that names outputs (paths as `shown`)."""
    err.print(shown(text), markup=False, highlight=False)


def _warn(*messages) -> None:
    """`warning:` lines on stderr (a summary's warnings, a reader's)."""
    for message in messages:
        _say("warning:", "yellow", message)


@contextlib.contextmanager
def _progress(what: str, quiet: bool, total: int | None = None):
    """A progress bar on stderr and its `update(done, total=None)`, `done` counted from the start.

    Only on a terminal: redirected, the transient bar shows nothing yet leaves a blank line on stderr.
    """
    with Progress(TextColumn(f"[bold]{escape(what)}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, disable=quiet or not err.is_terminal, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done, total=None: bar.update(task, completed=done, total=total)


def _counting(update):
    """`update(done)` as a callback that is given the lookups of each batch instead."""
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        update(done)
    return advance


@app.command()
def replay(
    trace: Optional[Path] = o.TRACE, budget: str = o.BUDGET, policy: str = o.REPLAY_POLICY,
    out_dir: Optional[Path] = o.REPLAY_OUT, tables: Optional[Path] = o.TABLES_FILE,
    importance: Optional[Path] = o.IMPORTANCE, gamma: float = o.KNOB["gamma"], interval: int = o.KNOB["interval"],
    position_weight: float = o.KNOB["position_weight"], dim: Optional[int] = o.DIM_OVERRIDE,
    chunk: Optional[int] = o.CHUNK_OVERRIDE, dtype_bytes: Optional[int] = o.DTYPE_OVERRIDE,
    page_bytes: str = o.KNOB["page_bytes"], max_load: float = o.KNOB["max_load"],
    index_initial: str = o.KNOB["index_initial"], allocator: str = o.KNOB["allocator"],
    budget_covers: str = o.KNOB["budget_covers"], report_every: int = o.KNOB["report_every"],
    count_accesses: bool = o.KNOB["count_accesses"], mde_exponent: float = o.KNOB["mde_exponent"],
    qr_operation: str = o.KNOB["qr_operation"], cafe_threshold: str = o.KNOB["cafe_threshold"],
    cafe_cold_share: str = o.KNOB["cafe_cold_share"], cafe_decay: float = o.KNOB["cafe_decay"],
    as_json: bool = o.JSON,
    report: Optional[Path] = o.REPORT, quiet: bool = o.QUIET,
):
    """Replay a trace through the policies and compare memory, fragmentation and hit rates.

    Example: fiitedsim replay trace.parquet --budget 0.05,0.10 --policy fiited,uniform-dim --out runs/demo
    """
    from .plan import parse_policies, plan
    from .replay import check_out_dir, passes, replay_runs, summary_text, write_results
    from .traces.source import TraceSource

    cfg = knob_config(locals())  # the knobs' parameters, by their ReplayConfig field names
    trace_path = trace if trace is not None else SAMPLE_TRACE
    names = parse_policies(policy)
    if out_dir is not None:
        check_out_dir(out_dir)  # before the replay, not after it
    if report is not None:
        from .report import check_report_path
        check_report_path(report, will_exist=out_dir)  # the report may go inside the --out folder
    source = TraceSource(trace_path, tables_file=tables, importance=importance, warn=_warn)
    refuse_inputs([("--report", report), *_folder_outputs(out_dir, ("summary.json", "timeseries"))],
                  [*(("the trace", part) for part in source.parts), ("--tables", tables), ("--importance", importance)])
    overrides = {"dim": dim, "chunk": chunk, "dtype_bytes": dtype_bytes}
    runs = plan(source.tables, names, budget, cfg, {k: (v,) for k, v in overrides.items() if v is not None})
    source.set_tables(list(runs[0].tables))
    total = source.num_lookups * passes(names)
    with _progress(f"replaying {shown(trace_path.name)}", quiet or as_json, total) as update:
        results = replay_runs(source, runs, progress=_counting(update))
    _warn(*results.summary["warnings"])
    with together():  # a signal now is delivered once both are written
        if out_dir is not None:
            write_results(out_dir, results)
        if report is not None:
            _write_report(report, results)
    if as_json:
        sys.stdout.write(summary_text(results.summary))
        return
    _print_summary(results.summary)
    if out_dir is not None:
        _note(f"results in {out_dir}/ (summary.json, timeseries/)")


def _folder_outputs(out_dir: Path | None, names) -> list[tuple[str, Path]]:
    """An --out folder as the outputs `refuse_inputs` compares: the entries of it that are replaced."""
    return [] if out_dir is None else [("--out", out_dir / name) for name in names]


def _write_report(target: Path, results, what: str = "report", write=None) -> None:
    """Write a report (`write(target, results)`, default the replay report) with a spinner on a terminal, then
    say where it is."""
    if write is None:
        from .report import write_report as write
    with err.status("writing the report", spinner="dots") if err.is_terminal else contextlib.nullcontext():
        write(target, results)
    _note(f"{what} in {target}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="Results folder: written by `fiitedsim replay TRACE --out RUN_DIR` "
                                             "(summary.json, timeseries/), by `fiitedsim train ... --out RUN_DIR` "
                                             "(train_summary.json, curve.parquet) or by `fiitedsim sweep` "
                                             "(points.parquet, points/)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default: "
                                                                      "RUN_DIR/report.html); its folder must exist."),
):
    """Render the HTML report of a saved replay, training run or sweep, without running anything again.

    The folder's kind is recognised by its files and said on stderr: a replay folder (summary.json) gives the \
replay report: warnings, a ranking per budget by dim hit rate with total memory (caches ranked apart), a \
table at equal total memory, a summary table, dim hit rate against total memory and payload (log axes), \
memory, fragmentation, pages and hit rates over the steps, row dimensions. A training folder \
(train_summary.json) gives the training report: memory at equal quality, the ranking per budget with the \
paired tie rule over seeds, AUC at equal total memory, AUC against memory and over the steps. A sweep folder \
(points.parquet) gives the sweep report: the metric along every swept knob, then each group of points. The \
page is the one the original command's --report (or the sweep) wrote, byte for byte; the chart libraries are \
inside the file, so it opens offline.

    Example: fiitedsim report runs/demo -o runs/demo.html
    """
    from .report import check_report_path, folder_kind

    kind = folder_kind(run_dir)  # first: a wrong RUN_DIR is the likelier mistake
    target = output if output is not None else run_dir / "report.html"
    if kind == "replay":
        from .report import load_results, write_report
        results = load_results(run_dir)
        inputs = ["summary.json", *(f"timeseries/{k}.parquet" for k in results.summary["policies"])]
        write = write_report
    elif kind == "train":
        from .report import load_train_results, write_train_report
        from .train.runner import CURVE_FILE, SUMMARY_FILE
        results = load_train_results(run_dir)
        inputs, write = [SUMMARY_FILE, CURVE_FILE], write_train_report
    else:
        from .sweep.results import POINTS_DIR, POINTS_FILE, load_sweep_points, write_sweep_report
        results = load_sweep_points(run_dir)
        inputs = [POINTS_FILE, *(f"{POINTS_DIR}/{p.key}.{ext}" for p in results for ext in ("json", "parquet"))]

        def write(target, points):
            write_sweep_report(run_dir, points, target)
    refuse_inputs([("--output", target)], [("the results folder's", run_dir / name) for name in inputs])
    _write_report(check_report_path(target), results, f"report of a {kind} folder", write)


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
#             allocator, budget_covers, report_every, count_accesses, mde_exponent, qr_operation,
#             cafe_threshold, cafe_cold_share, cafe_decay
#             (page_bytes and index_initial: "auto", the default, or a number, e.g. ["auto", 1024])
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
                                                    "for training points, which use every core themselves; at "
                                                    "most 4 per core)."),
    connect_timeout: float = typer.Option(10.0, help="Seconds to wait for --scheduler before giving up."),
    points_per_task: int = typer.Option(4, help="Replay points that share a trace pass (same trace and knobs) are "
                                                "replayed together, up to this many per task: the trace is "
                                                "decoded once for them. Each keeps its own state, so memory per "
                                                "worker grows with it; 1 = one point per task."),
    force: bool = typer.Option(False, "--force", help="Recompute every point, also those already stored."),
    out_dir: Optional[Path] = o.SWEEP_OUT, quiet: bool = o.QUIET,
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
    with _progress("sweep points", quiet) as update:
        outcome = run_sweep(sweep_file, out_path, scheduler=scheduler, workers=workers,
                            connect_timeout=connect_timeout, force=force, points_per_task=points_per_task,
                            warn=_warn, progress=update)
    _note(f"{len(outcome.points)} points ({outcome.computed} computed, {outcome.reused} already stored) in "
          f"{out_path}/ (points.parquet, report.html, points/)")


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
    data: str = o.DATA, label: Optional[str] = o.LABEL, sparse: Optional[str] = o.SPARSE,
    dense: Optional[str] = o.DENSE, samples: Optional[int] = o.SAMPLES, fields: Optional[int] = o.FIELDS,
    rows: str = o.TRAIN_ROWS_OPTION, drift: float = o.TRAIN_DRIFT, size_from: float = o.SIZE_FROM,
    policy: str = o.TRAIN_POLICY_OPTION, budget: str = o.BUDGET,
    dim: int = o.TRAIN_DIM, chunk: int = o.TRAIN_CHUNK, batch: int = o.TRAIN_BATCH, epochs: int = o.EPOCHS,
    eval_every: Optional[int] = o.EVAL_EVERY, lr_emb: float = o.LR_EMB, lr_mlp: float = o.LR_MLP,
    gamma: float = o.KNOB["gamma"], interval: Optional[int] = o.TRAIN_INTERVAL, page_bytes: str = o.KNOB["page_bytes"],
    index_initial: str = o.KNOB["index_initial"], mde_exponent: float = o.KNOB["mde_exponent"],
    qr_operation: str = o.KNOB["qr_operation"], cafe_threshold: str = o.KNOB["cafe_threshold"],
    cafe_cold_share: str = o.KNOB["cafe_cold_share"], cafe_decay: float = o.KNOB["cafe_decay"],
    seed: int = o.TRAIN_SEED,
    seeds: Optional[str] = o.SEEDS, out_dir: Optional[Path] = o.TRAIN_OUT, report: Optional[Path] = o.REPORT,
    emit_trace: Optional[Path] = o.EMIT_TRACE, emit_importance: Optional[Path] = o.EMIT_IMPORTANCE,
    quiet: bool = o.QUIET,
):
    """Train a DLRM-style CTR model in NumPy with its embeddings stored by each policy, and compare accuracy.

    Embedding storage goes through the replay engine itself: a chunk that is not resident reads as zeros and \
gets no update, a re-admitted chunk starts at zero, and each step's per-chunk gradient norms feed the \
FIITED utilities. Prints AUC and log loss on the last 10% of the data beside each policy's memory; with \
--seeds, the mean and standard deviation over the seeds.

    Example: fiitedsim train --data synthetic --policy all --budget 0.05,0.10,0.25 --seeds 0,1,2 \
--report runs/train.html
    """
    from .plan import budget_labels, parse_policies
    from .policies import TRAIN_POLICIES
    from .train.runner import (
        CURVE_FILE,
        DEFAULT_FIELDS,
        SUMMARY_FILE,
        check_train_out,
        data_files,
        data_kind,
        load_data,
        parse_rows,
        parse_seeds,
        refuse_unused_data_options,
        run_all,
        train_config,
        write_outputs,
    )

    refuse_unused_data_options(data, {"--label": label, "--sparse": sparse, "--dense": dense, "--fields": fields})
    fields = DEFAULT_FIELDS if fields is None else fields
    names = parse_policies(policy, TRAIN_POLICIES, " for training")
    budgets = budget_labels(budget)  # the list's syntax now; the bytes once the data's tables are known
    seed_list = parse_seeds(seeds) if seeds is not None else [seed]
    table_rows = parse_rows(rows)
    tcfg = train_config(dim=dim, chunk=chunk, batch=batch, epochs=epochs, eval_every=eval_every, interval=interval,
                        lr_emb=lr_emb, lr_mlp=lr_mlp, seed=seed_list[0], size_from=size_from)
    rcfg = knob_config(locals(), train=True)  # the knobs train has options for; its --interval is TrainConfig's
    if out_dir is not None:
        check_train_out(out_dir)
    if report is not None:
        from .report import check_report_path
        check_report_path(report, will_exist=out_dir)
    for path in (emit_trace, emit_importance):
        if path is not None:
            check_writable(path)
    refuse_inputs([*_folder_outputs(out_dir, (SUMMARY_FILE, CURVE_FILE)), ("--report", report),
                   ("--emit-trace", emit_trace), ("--emit-importance", emit_importance)],
                  [("--data", path) for path in data_files(data)])
    from .memory import check_train_data_memory
    check_train_data_memory(data_kind(data)[0], fields, [c for c in (sparse or "").split(",") if c.strip()],
                            table_rows, dim, batch, samples)
    ds = load_data(data, label, sparse, dense, samples, fields, table_rows, dim, seed_list[0], warn=_warn, drift=drift)

    def data_of_seed(s: int):
        """Synthetic data is drawn anew per seed; a file is the same data for every seed."""
        if s == seed_list[0] or data_kind(data)[0] != "synthetic":
            return ds
        return load_data(data, label, sparse, dense, samples, fields, table_rows, dim, s, drift=drift)
    with _progress("training", quiet) as update:
        outputs = run_all(data_of_seed, data, names, budgets, tcfg, rcfg, emit_trace, emit_importance,
                          progress=update, seeds=seed_list, drift=drift)
    _warn(*outputs.summary["warnings"])
    with together():  # a signal now is delivered once both are written
        if out_dir is not None:
            write_outputs(out_dir, outputs)
        if report is not None:
            from .report import write_train_report
            write_train_report(report, outputs)
            _note(f"report in {report}")
    _print_train(outputs.summary)
    for what, path in (("results", out_dir), ("trace", emit_trace), ("importance log", emit_importance)):
        if path is not None:
            _note(f"{what} in {path}")


def _print_train(summary: dict) -> None:
    from .compare import no_spread_reason, runs_of
    from .report.train import common_seeds, once_per_policy, tables_text

    teacher = summary.get("teacher_auc")
    cfg = summary["config"]
    seeds = cfg["seeds"]
    with_auc = common_seeds(summary, runs_of(summary))
    title = "training results" + (f" (teacher AUC {teacher:.4f}: the best achievable)" if teacher is not None else "")
    table = Table(title=title, title_justify="left")
    table.caption = (f"{len(seeds)} seed(s) {', '.join(map(str, seeds))}: AUC and log loss are means"
                     + (" ± standard deviation" if len(seeds) > 1 else "; one seed shows no spread")
                     + (f". {no_spread_reason(seeds, with_auc)}" if with_auc != seeds else "")
                     + f". The model's {tables_text(cfg)}. The training split touched {sum(cfg['touched_rows']):,} "
                       f"rows, {_mib(cfg['touched_dense_bytes'])} MiB dense; budgets as a share of that: "
                     + ", ".join(f"{b['label']} = {b['touched_share']:.3g}x" for b in cfg["budgets"])
                     + f". {100 * cfg['unseen_share']:.1f}% of the evaluation lookups name a value the sizing window "
                       "never saw.")
    table.caption_justify = "left"
    for col in ("policy@budget", "AUC", "log loss", "payload peak MiB", "total peak MiB", "dim hit", "rounds",
                "samples", "seconds", "knew"):
        table.add_column(col, justify="left" if col in ("policy@budget", "knew") else "right")

    def with_std(mean, std):
        if mean is None:
            return "-"
        return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    for run, budget in once_per_policy(summary, runs_of(summary)):
        s = summary["policies"][run.key]
        key = run.key if budget == run.budget else f"{run.policy} ({budget})"
        table.add_row(escape(key), with_std(s["auc"], s["auc_std"]), with_std(s["logloss"], s["logloss_std"]),
                      _mib(s["payload_bytes_peak"]), _mib(s["total_bytes_peak"]), f"{s['dim_hit_rate']:.3f}",
                      f"{s['rounds']:,}", f"{s['samples']:,}", f"{s['seconds']:.1f}", escape(s["knew"]))
    out.print(table)
    quality = summary.get("equal_quality")
    if quality:
        q = Table(title="memory at equal quality: the least at which AUC is at full's (not below by the paired "
                        "rule, within 0.005 on the mean)", title_justify="left")
        for col in ("policy", "total KiB", "payload KiB"):
            q.add_column(col, justify="left" if col == "policy" else "right")
        for name, figures in quality.items():
            q.add_row(name, *(f"{figures[k] / 1024:,.1f}" if figures[k] is not None else "not reached"
                              for k in ("total_bytes", "payload_bytes")))
        out.print(q)


@app.command()
def generate(
    output: Path = typer.Argument(..., help="Trace file to write (Parquet)."),
    profile: str = o.PROFILE, alpha: float = o.ALPHA, table_count: int = o.TABLE_COUNT, rows: int = o.GENERATE_ROWS,
    steps: int = o.STEPS, batch: int = o.GENERATE_BATCH, dim: int = o.DIM, chunk: int = o.CHUNK,
    drift: float = o.DRIFT, no_grad: bool = o.NO_GRAD, seed: int = o.GENERATE_SEED, quiet: bool = o.QUIET,
):
    """Write a synthetic access trace with per-chunk gradient norms.

    Example: fiitedsim generate traces/demo.parquet --profile meta2021 --table-count 4 --rows 1000000 --steps 2000
    """
    from .traces.generate import GenerateConfig
    from .traces.generate import generate as run_generate

    cfg = GenerateConfig(profile=profile, alpha=alpha, tables=table_count, rows=rows, steps=steps, batch=batch,
                         dim=dim, chunk=chunk, drift=drift, grad=not no_grad, seed=seed)
    with _progress(f"generating {shown(output.name)}", quiet, cfg.lookups) as update:
        report = run_generate(output, cfg, progress=update)
    for line in report.lines():
        _note(line)


@app.command()
def inspect(
    trace: Optional[Path] = o.TRACE, tables: Optional[Path] = o.TABLES_FILE,
    importance: Optional[Path] = o.IMPORTANCE,
    compare: Optional[str] = typer.Option(None, help="Print the reuse histogram beside Meta's published one: "
                                                     "meta2021 or meta2022, conditioned on reuse <= the largest "
                                                     "batch, with the total-variation distance (TVD)."),
    as_json: bool = o.JSON, quiet: bool = o.QUIET,
):
    """Describe a trace in one streaming pass: size, steps, tables, distinct rows, reuse histogram, gradient norms.

    Per table: lookups, distinct rows and their share of the table, lookups per step. The reuse factor (how
    often a row occurs in one (step, table) batch) is binned as in Meta's dlrm_datasets locality statistics,
    weighted by lookups and by distinct rows, exactly as `fiitedsim generate` measures its output.
    Every record is validated as a replay would, so a clean inspect means the trace replays.

    Example: fiitedsim inspect traces/demo.parquet --compare meta2021
    """
    from .replay import summary_text
    from .traces.stats import inspect_trace, stats_tables

    trace_path = trace if trace is not None else SAMPLE_TRACE
    with _progress(f"inspecting {shown(trace_path.name)}", quiet or as_json) as update:
        stats = inspect_trace(trace_path, tables_file=tables, importance=importance, compare=compare,
                              warn=_warn, progress=update)
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


def _run_import(what: str, quiet: bool, run) -> None:
    """Run an importer under a progress bar (its own unit: bytes of input or lookups) and print its report."""
    with _progress(what, quiet) as update:
        report = run(update)
    for line in report.lines():
        _note(line)


@import_app.command("fbgemm")
def import_fbgemm(
    input: Path = typer.Argument(..., help="A .pt file of FBGEMM TBE benchmark requests (indices, offsets, "
                                           "lengths), e.g. fbgemm_t856_bs65536_0.pt of Meta's dlrm_datasets; "
                                           "gzip-compressed files are read too."),
    output: Path = o.IMPORT_OUTPUT,
    step: int = typer.Option(0, help="Step of this batch (one file is one training step; give file N --step N)."),
    rows: Optional[int] = typer.Option(None, help="Rows of every table (default: max index + 1 per table)."),
    tables: Optional[Path] = o.IMPORT_TABLES, dim: int = o.DIM, chunk: int = o.CHUNK, dtype_bytes: int = o.DTYPE,
    quiet: bool = o.QUIET,
):
    """Import one batch of FBGEMM table-batched-embedding requests (needs PyTorch: pip install 'fiitedsim\\[fbgemm]').

    lengths is T x B (lookups of table t in sample b), offsets the T*B+1 CSR offsets into indices (table-major).

    Tables are named t0..t{T-1}; lookups keep the file's order.

    Example: for i in 0 1 2; do fiitedsim import fbgemm fbgemm_t856_bs65536_$i.pt --step $i \
-o traces/meta/part-$i.parquet; done
    """
    from .traces.importers.common import Layout, check_output
    from .traces.importers.fbgemm import import_fbgemm as run

    out_path = check_output(output, [("the input", input), ("--tables", tables)])
    _run_import(f"importing {shown(input.name)}", quiet, lambda progress: run(
        input, out_path, step=step, rows=rows, tables_file=tables, layout=Layout(dim, chunk, dtype_bytes),
        progress=progress))


@import_app.command("criteo")
def import_criteo(
    input: Path = typer.Argument(..., help="Criteo TSV (label, I1..I13, C1..C26, no header; test files without "
                                           "the label and .gz are fine) or the same as CSV with a header line."),
    output: Path = o.IMPORT_OUTPUT, batch: int = o.CRITEO_BATCH_OPTION, rows: int = o.CRITEO_ROWS_OPTION,
    step: int = typer.Option(0, help="Step of the first batch (continue a previous day file's steps)."),
    tables: Optional[Path] = o.IMPORT_TABLES, dim: int = o.DIM, chunk: int = o.CHUNK, dtype_bytes: int = o.DTYPE,
    quiet: bool = o.QUIET,
):
    """Import Criteo display-advertising data: each of the 26 categorical fields is a table.

    Every --batch samples form one step; within a step lookups are table-major.

    A value is hashed into its table with FNV-1a 64 + splitmix64 (stable across runs and machines; see
    fiitedsim/traces/hashing.py); a missing value is row 0.

    Example: fiitedsim import criteo day_0.tsv --batch 4096 -o traces/criteo.parquet
    """
    from .traces.importers.common import Layout, check_output
    from .traces.importers.criteo import import_criteo as run

    out_path = check_output(output, [("the input", input), ("--tables", tables)])
    _run_import(f"importing {shown(input.name)}", quiet, lambda progress: run(
        input, out_path, batch=batch, rows=rows, step=step, tables_file=tables,
        layout=Layout(dim, chunk, dtype_bytes), progress=progress))


def _import_columns(fmt: str, input: Path, output: Path, step_col: str, table_col: str, row_col: str,
                    grad_col: Optional[str], tables: Optional[Path], dim: int, chunk: int, dtype_bytes: int,
                    quiet: bool) -> None:
    from .traces.importers.columns import import_columns
    from .traces.importers.common import Layout, check_output

    out_path = check_output(output, [("the input", input), ("--tables", tables)])
    _run_import(f"importing {shown(input.name)}", quiet, lambda progress: import_columns(
        fmt, input, out_path, step_col=step_col, table_col=table_col, row_col=row_col, grad_col=grad_col,
        tables_file=tables, layout=Layout(dim, chunk, dtype_bytes), progress=progress))




@import_app.command("csv")
def import_csv(
    input: Path = typer.Argument(..., help="CSV file with a header line."),
    output: Path = o.IMPORT_OUTPUT, step_col: str = o.STEP_COL, table_col: str = o.TABLE_COL, row_col: str = o.ROW_COL,
    tables: Optional[Path] = o.IMPORT_TABLES, dim: int = o.DIM, chunk: int = o.CHUNK, dtype_bytes: int = o.DTYPE,
    quiet: bool = o.QUIET,
):
    """Import a CSV file with one lookup per line in named step / table / row columns (sorted by step).

    Example: fiitedsim import csv lookups.csv --step-col iter --table-col feature --row-col id -o traces/t.parquet
    """
    _import_columns("csv", input, output, step_col, table_col, row_col, None, tables, dim, chunk, dtype_bytes, quiet)


@import_app.command("parquet")
def import_parquet(
    input: Path = typer.Argument(..., help="Parquet file with one lookup per record."),
    output: Path = o.IMPORT_OUTPUT, step_col: str = o.STEP_COL, table_col: str = o.TABLE_COL, row_col: str = o.ROW_COL,
    grad_col: Optional[str] = typer.Option(None, help="Column of per-chunk gradient norms (list of K=D/C floats), "
                                                      "written as grad_norm."),
    tables: Optional[Path] = o.IMPORT_TABLES, dim: int = o.DIM, chunk: int = o.CHUNK, dtype_bytes: int = o.DTYPE,
    quiet: bool = o.QUIET,
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


def _stdout_failed(exc: StdoutFailed) -> int:
    """The exit code for a failed standard output, with one line saying what was written (nothing when the
    reader went away, as `head` does: 141, the status of a writer killed by SIGPIPE)."""
    with contextlib.suppress(OSError):  # nothing more can go there: keep Python's exit flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    if exc.errno == errno.EPIPE:
        return 128 + signal.SIGPIPE
    why = "it is closed" if exc.errno == errno.EBADF else str(exc)
    done = written_text()
    _say("error:", "bold red", f"cannot write to standard output: {why}"
                               + (f"; {done}" if done != NOTHING_WRITTEN else ""))
    return 2


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    guard_standard_streams()
    escape_unencodable_output()
    WRITTEN.clear()  # what this run writes (an in-process caller may have written before)
    stdout = sys.stdout
    sys.stdout = GuardedStdout(stdout)
    try:
        with signals_raise():
            _main()
    finally:
        sys.stdout = stdout


def _main() -> None:
    try:
        from .memory import check_address_space
        check_address_space()
        code = app(standalone_mode=False)
        sys.stdout.flush()  # now, so that a full disk behind `> file` is an error line, not an ignored exception
    except StdoutFailed as exc:
        sys.exit(_stdout_failed(exc))
    except Interrupted as exc:
        _say("aborted:", "bold red", f"interrupted by {exc}; {written_text()}")
        sys.exit(128 + exc.signum)
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
