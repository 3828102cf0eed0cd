"""What is in a trace: `fiitedsim inspect TRACE`.

`inspect_trace` makes one streaming pass over a trace (and optionally an
importance log) through `TraceSource.batches()`, so every record is validated
exactly as a replay would validate it, and returns a plain dict (the `--json`
output). Memory grows with the number of distinct (table, row) pairs (one
hash-set entry each), the number of tables and K, never with the number of
lookups.

Definitions
-----------
* lookups per step: over the distinct steps present in the trace; per table,
  a step where the table has no lookup counts as 0.
* batch: the lookups of one (step, table) pair (DESIGN.md 1.2 calls a step a
  batch; generated traces have `--batch` lookups per pair).
* reuse factor: how many times a row occurs in one batch; the histograms are
  `profiles.reuse_counts` over Meta's 17 bins, lookup-weighted (share of
  lookups) and unique-weighted (share of distinct (step, table, row)), exactly
  as `fiitedsim generate` measures its own output. `TraceSource.batches()`
  never splits a step across batches, so each call sees whole batches.
* `--compare PROFILE`: like `generate`, the published lookup-weighted
  histogram conditioned on reuse <= B, with B the largest batch of the trace
  (no batch can hold a larger reuse factor), and the total-variation distance
  to it; the distance to the unconditioned published histogram and the cut-off
  published mass are reported too.
* value statistics (gradient norms per chunk position, importance per chunk):
  count, mean, population standard deviation (Welford, in float64, in record
  order), min, max and the share of exact zeros; "all" pools the positions.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

from .. import parquet
from ..engine.rowset import TouchedRows
from ..errors import GradNormIgnored, InputError
from ..paths import arrow_file, shown
from . import profiles
from .readahead import read_ahead
from .source import TraceSource, print_to_stderr
from .writer import TABLES_KEY

#: Version of the `inspect --json` object; bump on an incompatible change.
STATS_FORMAT = 1

# step-counter scalars (`cur`)
_CUR_STEP, _HAVE_STEP, _CUR_LOOKUPS, _N_TOUCHED = 0, 1, 2, 3
# per-table counters (`tstat` columns)
_T_LOOKUPS, _T_STEPS, _T_MIN, _T_MAX = 0, 1, 2, 3
# per-step counters (`sstat`)
_S_STEPS, _S_MIN, _S_MAX = 0, 1, 2
# value accumulators (`acc` columns)
_A_N, _A_MEAN, _A_M2, _A_MIN, _A_MAX, _A_ZEROS = 0, 1, 2, 3, 4, 5
_INT64_MAX = np.iinfo(np.int64).max


# ----------------------------------------------------------------------------- kernels

@numba.njit(cache=True)
def _flush_step(cur, counts, touched, tstat, sstat):
    """Close the current step: fold its per-table batch sizes and its total into the counters."""
    for i in range(cur[_N_TOUCHED]):
        t = touched[i]
        c = counts[t]
        tstat[t, _T_STEPS] += 1
        tstat[t, _T_MIN] = min(tstat[t, _T_MIN], c)
        tstat[t, _T_MAX] = max(tstat[t, _T_MAX], c)
        counts[t] = 0
    sstat[_S_STEPS] += 1
    sstat[_S_MIN] = min(sstat[_S_MIN], cur[_CUR_LOOKUPS])
    sstat[_S_MAX] = max(sstat[_S_MAX], cur[_CUR_LOOKUPS])
    cur[_CUR_LOOKUPS] = 0
    cur[_N_TOUCHED] = 0


@numba.njit(cache=True)
def _count_steps(step, table, cur, counts, touched, tstat, sstat):
    """Lookups per step and per (step, table) batch; the open step carries over to the next call."""
    for i in range(step.shape[0]):
        s = step[i]
        if cur[_HAVE_STEP] == 1 and s != cur[_CUR_STEP]:
            _flush_step(cur, counts, touched, tstat, sstat)
        cur[_CUR_STEP] = s
        cur[_HAVE_STEP] = 1
        t = table[i]
        if counts[t] == 0:
            touched[cur[_N_TOUCHED]] = t
            cur[_N_TOUCHED] += 1
        counts[t] += 1
        cur[_CUR_LOOKUPS] += 1
        tstat[t, _T_LOOKUPS] += 1


@numba.njit(cache=True, inline="always")
def _note(acc, p, v):
    """Welford update of position p with value v."""
    n = acc[p, _A_N] + 1.0
    acc[p, _A_N] = n
    d = v - acc[p, _A_MEAN]
    acc[p, _A_MEAN] += d / n
    acc[p, _A_M2] += d * (v - acc[p, _A_MEAN])
    acc[p, _A_MIN] = min(acc[p, _A_MIN], v)
    acc[p, _A_MAX] = max(acc[p, _A_MAX], v)
    if v == 0.0:
        acc[p, _A_ZEROS] += 1.0


@numba.njit(cache=True)
def _grad_moments(acc, grad, table, k_of):
    """Accumulate grad[i, k] for k < K(table[i]) (the rest of the row is padding) at position k."""
    for i in range(grad.shape[0]):
        for k in range(k_of[table[i]]):
            _note(acc, k, np.float64(grad[i, k]))


@numba.njit(cache=True)
def _value_moments(acc, value, position):
    for i in range(value.shape[0]):
        _note(acc, position[i], np.float64(value[i]))


# ----------------------------------------------------------------------------- state

def _new_acc(positions: int) -> np.ndarray:
    acc = np.zeros((positions, 6), np.float64)
    acc[:, _A_MIN] = np.inf
    acc[:, _A_MAX] = -np.inf
    return acc


def _moments_json(acc_row: np.ndarray) -> dict:
    n = int(acc_row[_A_N])
    if n == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None, "zero_share": None}
    return {"count": n, "mean": float(acc_row[_A_MEAN]), "std": math.sqrt(acc_row[_A_M2] / n),
            "min": float(acc_row[_A_MIN]), "max": float(acc_row[_A_MAX]),
            "zero_share": float(acc_row[_A_ZEROS]) / n}


def _pooled(acc: np.ndarray) -> np.ndarray:
    """One accumulator row for all positions (Chan et al.'s pairwise combination, in position order)."""
    total = _new_acc(1)[0]
    for row in acc:
        n_a, n_b = total[_A_N], row[_A_N]
        if n_b == 0:
            continue
        n = n_a + n_b
        d = row[_A_MEAN] - total[_A_MEAN]
        total[_A_MEAN] += d * n_b / n
        total[_A_M2] += row[_A_M2] + d * d * n_a * n_b / n
        total[_A_N] = n
        total[_A_MIN] = min(total[_A_MIN], row[_A_MIN])
        total[_A_MAX] = max(total[_A_MAX], row[_A_MAX])
        total[_A_ZEROS] += row[_A_ZEROS]
    return total


def _values_json(acc: np.ndarray) -> dict:
    used = int(np.flatnonzero(acc[:, _A_N] > 0).max(initial=-1)) + 1
    return {"per_chunk": [{"chunk": k, **_moments_json(acc[k])} for k in range(used)],
            "all": _moments_json(_pooled(acc))}


def check_profile(name: str | None) -> None:
    """`--compare` names one of the published profiles (checked before reading any data)."""
    if name is not None and name not in profiles.PROFILES:
        raise InputError(f"unknown profile {name!r} for --compare: choose {' or '.join(profiles.PROFILES)}")


def _reuse_json(lookups: np.ndarray, distinct: np.ndarray, max_batch: int, compare: str | None) -> dict:
    total_l, total_d = int(lookups.sum()), int(distinct.sum())
    measured = lookups / max(1, total_l)
    out = {"bins": list(profiles.BIN_LABELS),
           "lookups": [int(x) for x in lookups], "distinct": [int(x) for x in distinct],
           "lookup_share": [float(x) for x in measured],
           "distinct_share": [float(x) for x in distinct / max(1, total_d)],
           "max_batch": max_batch, "compare": None}
    if compare is not None:
        published = profiles.PROFILES[compare]
        target = profiles.conditioned(published, max_batch)
        out["compare"] = {
            "profile": compare, "source": published.source, "conditioned_on_reuse_at_most": max_batch,
            "published": [float(x) for x in published.lookup_hist],
            "target": [float(x) for x in target],
            "tvd": profiles.tvd(measured, target),
            "tvd_unconditioned": profiles.tvd(measured, published.lookup_hist),
            "cutoff_mass": profiles.cutoff_mass(published, max_batch),
        }
    return out


def _footer(path: Path):
    """(Arrow schema, number of row groups) of a Parquet file TraceSource has already opened and checked."""
    with arrow_file(path) as f, parquet.open_file(f) as pf:
        return pf.schema_arrow, pf.num_row_groups


# ----------------------------------------------------------------------------- driver

def inspect_trace(path, tables_file=None, importance=None, compare: str | None = None,
                  batch_rows: int = 1 << 20, warn: Callable[[str], None] = print_to_stderr,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Statistics of a trace (and importance log) as a JSON-ready dict; see the module docstring.

    Arguments are TraceSource's. `progress`, if given, is called after each
    batch with (lookups read so far, lookups in the trace).
    """
    check_profile(compare)  # before reading anything
    held: list[str] = []
    source = TraceSource(path, tables_file=tables_file, importance=importance, batch_rows=batch_rows,
                         warn=held.append)
    footers = [_footer(part) for part in source.parts]  # one file, or the parts of a multi-file trace
    schema, row_groups = footers[0][0], sum(groups for _, groups in footers)
    # a replay ignores grad_norm when a log is given (TraceSource warns so); inspect reports both,
    # so that one warning would be wrong here
    trace_has_grad = source.trace_has_grad
    for message in held:
        if not isinstance(message, GradNormIgnored):
            warn(message)
    source.has_grad = trace_has_grad
    tables_source = ("tables_file" if tables_file is not None
                     else "metadata" if TABLES_KEY in (schema.metadata or {}) else "inferred")
    path = source.path
    tables = source.tables
    ntab = len(tables)
    k_of = np.array([t.chunks for t in tables], np.int64)

    cur = np.zeros(4, np.int64)
    counts = np.zeros(ntab, np.int64)
    touched = np.zeros(ntab, np.int64)
    tstat = np.zeros((ntab, 4), np.int64)
    tstat[:, _T_MIN] = _INT64_MAX
    sstat = np.array([0, _INT64_MAX, 0], np.int64)
    rows = TouchedRows([t.rows for t in tables])
    reuse_l = np.zeros(profiles.N_BINS, np.int64)
    reuse_d = np.zeros(profiles.N_BINS, np.int64)
    grad_acc = _new_acc(source.k_max) if source.has_grad else None
    imp_acc = _new_acc(source.k_max)
    imp_rows = TouchedRows([t.rows for t in tables])
    first = last = imp_first = imp_last = None
    imp_records = done = 0

    for batch in read_ahead(source.batches(with_grad=source.has_grad)):
        if batch.num_lookups:
            if first is None:
                first = int(batch.step[0])
            last = int(batch.step[-1])
            _count_steps(batch.step, batch.table, cur, counts, touched, tstat, sstat)
            rows.add(batch.table, batch.row)
            lookups, distinct = profiles.reuse_counts(batch.step, batch.table, batch.row)
            reuse_l += lookups
            reuse_d += distinct
            if grad_acc is not None:
                _grad_moments(grad_acc, batch.grad, batch.table, k_of)
        if batch.num_importance:
            if imp_first is None:
                imp_first = int(batch.imp_step[0])
            imp_last = int(batch.imp_step[-1])
            imp_records += batch.num_importance
            imp_rows.add(batch.imp_table, batch.imp_row)
            _value_moments(imp_acc, batch.imp_value, batch.imp_chunk)
        done += batch.num_lookups
        if progress is not None:
            progress(done, source.num_lookups)
    if cur[_HAVE_STEP]:
        _flush_step(cur, counts, touched, tstat, sstat)
    n_lookups = int(tstat[:, _T_LOOKUPS].sum())
    if n_lookups == 0:
        raise InputError(f"{path}: the trace has no lookups")
    n_steps = int(sstat[_S_STEPS])

    table_rows = []
    for t, spec in enumerate(tables):
        lk, present = int(tstat[t, _T_LOOKUPS]), int(tstat[t, _T_STEPS])
        distinct = int(rows.per_table[t])
        table_rows.append({
            "name": spec.name, "rows": spec.rows, "dim": spec.dim, "chunk": spec.chunk, "chunks": spec.chunks,
            "dtype_bytes": spec.dtype_bytes, "dense_bytes": spec.dense_bytes,
            "lookups": lk, "distinct_rows": distinct, "distinct_share": distinct / spec.rows,
            "steps_with_lookups": present,
            "lookups_per_step": {"min": int(tstat[t, _T_MIN]) if present == n_steps else 0,
                                 "mean": lk / n_steps, "max": int(tstat[t, _T_MAX])},
        })
    stats = {
        "format": STATS_FORMAT,
        "path": shown(path),
        "parts": len(source.parts),
        "file_bytes": sum(part.stat().st_size for part in source.parts),
        "row_groups": row_groups,
        "lookups": n_lookups,
        "grad_norm": source.has_grad,
        "tables_source": tables_source,
        "steps": {"first": first, "last": last, "distinct": n_steps},
        "lookups_per_step": {"min": int(sstat[_S_MIN]), "mean": n_lookups / n_steps, "max": int(sstat[_S_MAX])},
        "dense_bytes": sum(t.dense_bytes for t in tables),
        "distinct_rows": rows.size,
        "tables": table_rows,
        "reuse": _reuse_json(reuse_l, reuse_d, int(tstat[:, _T_MAX].max()), compare),
        "grad_norm_stats": None if grad_acc is None else _values_json(grad_acc),
        "importance": None,
    }
    if source.has_importance:
        ipath = source.importance_path
        stats["importance"] = {
            "path": shown(ipath), "file_bytes": ipath.stat().st_size, "records": imp_records,
            "distinct_rows": imp_rows.size, "distinct_rows_per_table": [int(x) for x in imp_rows.per_table],
            "steps": {"first": imp_first, "last": imp_last}, "values": _values_json(imp_acc),
        }
    return stats


# ----------------------------------------------------------------------------- rendering

def _num(x, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _values_table(title: str, values: dict):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("chunk", "values", "mean", "std", "min", "max", "zero share"):
        table.add_column(col, justify="right")
    for row in values["per_chunk"] + [{"chunk": "all", **values["all"]}]:
        table.add_row(str(row["chunk"]), f"{row['count']:,}", _num(row["mean"]), _num(row["std"]), _num(row["min"]),
                      _num(row["max"]), _num(row["zero_share"], 3))
    return table


def stats_tables(stats: dict) -> list:
    """The human-readable form of `inspect_trace`'s dict: rich renderables (tables, notes), printed in order."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    mib = 2 ** 20
    steps, per_step = stats["steps"], stats["lookups_per_step"]
    overview = Table(title=escape(stats["path"]), title_justify="left", show_header=False)
    overview.add_column("what")
    overview.add_column("value")
    for what, value in (
            ("file", f"{stats['file_bytes'] / mib:,.1f} MiB, {stats['row_groups']:,} row group(s)"),
            ("lookups", f"{stats['lookups']:,}"),
            ("steps", f"{steps['first']:,} .. {steps['last']:,} ({steps['distinct']:,} distinct)"),
            ("lookups per step", f"min {per_step['min']:,}  mean {per_step['mean']:,.1f}  max {per_step['max']:,}"),
            ("tables", f"{len(stats['tables'])} (from {stats['tables_source'].replace('_', ' ')})"),
            ("distinct rows", f"{stats['distinct_rows']:,}"),
            ("dense size", f"{stats['dense_bytes'] / mib:,.1f} MiB"),
            ("grad_norm", "yes" if stats["grad_norm"] else "no")):
        overview.add_row(what, value)
    out = [overview]

    tables = Table(title="tables", title_justify="left")
    for col in ("table", "rows", "D", "C", "K", "bytes", "dense MiB", "lookups", "distinct rows", "distinct share",
                "per step min", "mean", "max"):
        tables.add_column(col, justify="left" if col == "table" else "right")
    for t in stats["tables"]:
        ps = t["lookups_per_step"]
        tables.add_row(escape(t["name"]), f"{t['rows']:,}", str(t["dim"]), str(t["chunk"]), str(t["chunks"]),
                       str(t["dtype_bytes"]), f"{t['dense_bytes'] / mib:,.1f}", f"{t['lookups']:,}",
                       f"{t['distinct_rows']:,}", f"{t['distinct_share']:.4f}", f"{ps['min']:,}", f"{ps['mean']:,.1f}",
                       f"{ps['max']:,}")
    out.append(tables)

    reuse, compare = stats["reuse"], stats["reuse"]["compare"]
    hist = Table(title="reuse factor per (step, table) batch", title_justify="left")
    for col in ("reuse", "lookups", "lookup share", "distinct share"):
        hist.add_column(col, justify="right")
    if compare is not None:
        hist.add_column(f"{compare['profile']} conditioned", justify="right")
        hist.add_column(f"{compare['profile']} published", justify="right")
    last = max([i for i, n in enumerate(reuse["lookups"]) if n]
               + ([i for i, v in enumerate(compare["published"]) if v > 0] if compare else []))
    for i in range(last + 1):
        cells = [reuse["bins"][i], f"{reuse['lookups'][i]:,}", f"{reuse['lookup_share'][i]:.3f}",
                 f"{reuse['distinct_share'][i]:.3f}"]
        if compare is not None:
            cells += [f"{compare['target'][i]:.3f}", f"{compare['published'][i]:.3f}"]
        hist.add_row(*cells)
    out.append(hist)
    note = f"largest batch: {reuse['max_batch']:,} lookups"
    if compare is not None:
        note += (f"; TVD to {compare['profile']} conditioned on reuse <= {reuse['max_batch']:,}: "
                 f"{compare['tvd']:.4f} (to the published histogram: {compare['tvd_unconditioned']:.4f}; "
                 f"published lookup mass cut off: {compare['cutoff_mass']:.3f})")
    out.append(Text(note))

    if stats["grad_norm_stats"] is not None:
        out.append(_values_table("grad_norm per chunk position", stats["grad_norm_stats"]))
    imp = stats["importance"]
    if imp is not None:
        title = (f"importance log {escape(imp['path'])}: {imp['records']:,} records, "
                 f"{imp['distinct_rows']:,} distinct rows")
        if imp["records"]:
            title += f", steps {imp['steps']['first']:,} .. {imp['steps']['last']:,}"
        out.append(_values_table(title, imp["values"]))
    return out
