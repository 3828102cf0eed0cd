"""Replay one record stream through several policies and budgets, and save the results.

The trace is read once: each batch goes to every (policy, budget) instance in
turn, so adding policies costs replay time but not I/O or memory per lookup.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import polars as pl

from .atomic import atomic_path, check_writable, refuse_cwd_or_parent, write_parquet_frame
from .checks import replay_warnings
from .config import ReplayConfig, TableSpec, dense_bytes, resolve_layout
from .engine.rowset import RowMap, TouchedRows
from .errors import InputError
from .parsing import loads_json
from .paths import shown
from .plan import Run, check_runs, keyed, parse_budgets, parse_policies, plan, split_list  # noqa: F401 (API)
from .policies import POLICIES
from .traces.readahead import read_ahead
from .traces.source import TraceSource

#: Version of the results folder layout (summary.json + timeseries/); bump on incompatible change.
#: 2: dimension-granular uniform-dim, hash and mde, dim hit rates, collisions, touched rows, warnings.
RESULTS_FORMAT = 2


@dataclass
class ReplayResults:
    summary: dict                       # the summary.json object
    series: dict[str, pl.DataFrame]     # time series per policy key


def replay(source: TraceSource, policies: list[str], budgets, cfg: ReplayConfig,
           progress: Callable[[int], None] | None = None) -> ReplayResults:
    """Feed the trace once through every policy at every budget (`budgets` as `plan.parse_budgets` takes them)."""
    return replay_runs(source, plan(source.tables, policies, budgets, cfg), progress)


def replay_runs(source: TraceSource, runs: list[Run], progress: Callable[[int], None] | None = None) -> ReplayResults:
    """Feed the trace once through the planned runs (`plan.plan` of the source's tables and one config)."""
    keys = [(run.key(keyed(runs)), run) for run in runs]
    results, trace = _one_pass(source, keys, progress)
    cfg = runs[0].config
    budgets = list(dict.fromkeys((run.budget_label, run.budget_bytes) for run in runs))
    policies = list(dict.fromkeys(run.policy for run in runs))
    summary = {
        "format": RESULTS_FORMAT,
        "policies": {key: r.summary_json() for key, r in results.items()},
        "config": config_json(cfg, budgets, policies, trace, runs[0].tables),
        "trace": trace,
    }
    summary["warnings"] = replay_warnings(summary, _warning_runs(keys))
    return ReplayResults(summary, {key: r.snapshots for key, r in results.items()})


def _warning_runs(keys: list[tuple[str, Run]]) -> list[tuple[str, str, str, int]]:
    """(key, policy, budget label, budget bytes) of each run, as `checks.replay_warnings` takes them."""
    return [(key, run.policy, run.budget_label, run.budget_bytes) for key, run in keys]


def passes(policies: list[str]) -> int:
    """Passes over the trace a replay of these policies makes: 2 when one is sized from a first pass (`mde`)."""
    return 2 if any(POLICIES[name].needs_frequencies for name in policies) else 1


def replay_each(source: TraceSource, runs: list[Run],
                progress: Callable[[int], None] | None = None) -> list[ReplayResults]:
    """Several single-policy, single-budget replays in one pass over the trace.

    Result i equals `replay_runs(source, [runs[i]])` exactly (policy instances never share state): the
    trace is decoded once for all of them instead of once each, which is what `fiitedsim sweep` batches
    points for. The runs share the source's tables and every knob but the budget.
    """
    check_runs(runs)  # again on the worker: the start-up arrays must fit in its memory, not only the client's
    keys = [(str(i), run) for i, run in enumerate(runs)]
    results, trace = _one_pass(source, keys, progress)
    out = []
    for key, run in keys:
        name = run.policy
        summary = {"format": RESULTS_FORMAT, "policies": {name: results[key].summary_json()},
                   "config": config_json(run.config, [(run.budget_label, run.budget_bytes)], [name], trace,
                                         run.tables),
                   "trace": trace}
        summary["warnings"] = replay_warnings(summary, _warning_runs([(name, run)]))
        out.append(ReplayResults(summary, {name: results[key].snapshots}))
    return out


def _one_pass(source: TraceSource, runs: list[tuple[str, Run]],
              progress: Callable[[int], None] | None) -> tuple[dict, dict]:
    """Feed the trace once through one policy instance per (key, planned run).

    Returns the finished `PolicyResult` per key and the summary's "trace" object.
    """
    tables = source.tables
    instances = {key: POLICIES[run.policy](tables, run.config, source.has_grad, source.has_importance)
                 for key, run in runs}
    if any(policy.needs_frequencies for policy in instances.values()):
        touched = count_lookups(source, progress)  # the first pass of a policy sized from it (mde)
        for policy in instances.values():
            if policy.needs_frequencies:
                policy.set_frequencies(touched)
    else:
        touched = TouchedRows([t.rows for t in tables])
    first_step = last_step = None
    lookups = importance = 0
    # only policies that read gradient norms make the reader decode them (the widest column)
    with_grad = any(getattr(policy, "uses_grad", True) for policy in instances.values())
    # whole_steps=False: a step may span batches, so memory stays at a few Parquet batches even when one step
    # does not fit (policies process records one by one, so where a batch ends does not matter)
    for batch in read_ahead(source.batches(with_grad=with_grad, whole_steps=False)):  # decode the next meanwhile
        for policy in instances.values():
            policy.consume(batch)
        if isinstance(touched, TouchedRows):
            touched.add(batch.table, batch.row)
        if batch.step.size:  # the trace's steps: importance records outside them do not move them
            first_step = int(batch.step[0]) if first_step is None else first_step
            last_step = int(batch.step[-1])
        lookups += batch.num_lookups
        importance += batch.num_importance
        if progress:
            progress(batch.num_lookups)
    if lookups == 0:
        raise InputError(f"{source.path}: the trace has no lookups")
    results = {key: policy.finish() for key, policy in instances.items()}
    trace = {
        "path": shown(source.path), "importance": shown(source.importance_path) if source.has_importance else None,
        "lookups": lookups, "importance_records": importance, "grad_norm": source.has_grad,
        "first_step": first_step, "last_step": last_step, "dense_bytes": dense_bytes(tables),
        "touched_rows": int(touched.per_table.sum()), "touched_rows_per_table": [int(x) for x in touched.per_table],
        "touched_dense_bytes": sum(int(n) * t.dim * t.dtype_bytes for n, t in zip(touched.per_table, tables)),
        "tables": [asdict(t) for t in tables],
    }
    return results, trace


def count_lookups(source: TraceSource, progress: Callable[[int], None] | None = None) -> RowMap:
    """Lookups per distinct (table, row) of the whole trace: one pass that decodes no gradient norms."""
    counts = RowMap(len(source.tables))
    for batch in read_ahead(source.batches(with_grad=False, whole_steps=False)):
        counts.count(batch.table, batch.row)
        if progress:
            progress(batch.num_lookups)
    return counts


def config_json(cfg: ReplayConfig, budgets, policies, trace: dict, tables) -> dict:
    """The summary's "config": the knobs as given (`page_bytes` and `index_initial` "auto" or a number), the
    budgets with their layouts (`budget_entries`) and the policies."""
    out = {k: v for k, v in asdict(cfg).items() if k not in ("budget_bytes", "budget_label")}
    out["budgets"] = budget_entries(budgets, trace["dense_bytes"], trace["touched_dense_bytes"], tables, cfg)
    out["policies"] = list(policies)
    return out


def budget_entries(budgets, dense: int, touched_dense: int, tables: Sequence[TableSpec] | None = None,
                   cfg: ReplayConfig | None = None) -> list[dict]:
    """Each budget with its share of the nominal dense size and of the dense size of the rows touched.

    The second is what a budget means: with hash sizes far above the distinct values seen, every
    budget above the touched size holds everything, whatever share of the nominal size it is.
    Given the tables and the knobs as given (`cfg`), each budget also has the layout it resolves to
    (`config.resolve_layout`): `page_bytes`, and `index_initial` as the initial capacity of every hash
    index, a list per table of its capacities per chunk position k.
    """
    entries = []
    for label, b in budgets:
        entry = {"label": label, "bytes": b, "dense_share": b / dense if dense else 0.0,
                 "touched_share": b / touched_dense if touched_dense else 0.0}
        if tables is not None and cfg is not None:
            layout = resolve_layout(list(tables), cfg.with_budget(b, label))
            entry["page_bytes"] = layout.page_bytes
            entry["index_initial"] = [[layout.index_capacity(t, k) for k in range(spec.chunks)]
                                      for t, spec in enumerate(tables)]
        entries.append(entry)
    return entries


def check_out_dir(out: str | Path) -> Path:
    """`out` may be new, an empty folder or an earlier results folder (whose summary.json and timeseries/ are
    replaced, other files kept); nothing else."""
    out = Path(out)
    refuse_cwd_or_parent(out, "--out", "runs/demo")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_results_folder(out))):
        raise InputError(f"--out {out} exists and is not a fiitedsim results folder; choose a new folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--out {out}: {parent} is not a folder")
            break
    check_writable(out, directory=True)
    return out


def _is_results_folder(folder: Path) -> bool:
    """Written by fiitedsim: its summary.json parses and has our keys (the folder is deleted on replace)."""
    try:
        summary = loads_json((folder / "summary.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(summary, dict) and "format" in summary and "policies" in summary


def write_results(out: str | Path, results: ReplayResults) -> Path:
    """Write `summary.json` and `timeseries/KEY.parquet` all-or-nothing into `out`."""
    out = check_out_dir(out)
    # resolved: `a/../b` must not create `a`; files the user added to an earlier results folder are kept
    with atomic_path(out.resolve(), directory=True, replaces=("summary.json", "timeseries")) as tmp:
        (tmp / "timeseries").mkdir()
        for key, frame in results.series.items():
            write_parquet_frame(frame, tmp / "timeseries" / f"{key}.parquet")
        (tmp / "summary.json").write_text(summary_text(results.summary))
    return out


def summary_text(summary: dict) -> str:
    return json.dumps(summary, indent=2, allow_nan=False) + "\n"
