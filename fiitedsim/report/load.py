"""Reading a results folder and checking what a report reads: `summary.json` against its contract (types,
ranges, the keys the report needs) and the time series' columns; where a report may be written."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..atomic import check_writable
from ..errors import InputError, file_kind
from ..metrics import COUNTER_COLUMNS, FLOAT_COLUMNS, GAUGE_COLUMNS
from ..parquet import UnreadableFrame, read_frame
from ..parsing import loads_json
from ..policies.base import SUMMARY_KEYS
from ..replay import RESULTS_FORMAT, ReplayResults

NEEDED_SUMMARY_KEYS = (
    "payload_bytes_peak", "payload_bytes_final", "index_bytes_final", "meta_bytes_final", "total_bytes_peak",
    "total_bytes_final", "fragmentation_final", "mapped_pages_final", "row_hit_rate", "chunk_hit_rate",
    "full_hit_rate", "dim_hit_rate", "collision_share", "rehashes", "mean_probe_length", "dim_hist_final",
)
#: Time-series columns the report reads besides dim_0 .. dim_K.
NEEDED_SERIES_COLUMNS = (
    "step", "lookups", "row_hits", "chunk_hits", "chunks_requested", "full_hits", "payload_bytes", "index_bytes",
    "meta_bytes", "total_bytes", "mapped_pages", "fragmentation", "dim_hits", "dims_requested",
)
#: The hit rates: label -> (hits counter, requests counter, summary key). The dim hit rate (resident dims /
#: requested dims) comes first: it is the one rate comparable across chunk- and dimension-granular policies.


#: The results folders fiitedsim writes, each known by the file that marks it: `replay --out`, `train --out` and
#: a sweep's out folder.
FOLDER_KINDS = {"replay": "summary.json", "train": "train_summary.json", "sweep": "points.parquet"}


def folder_kind(folder: str | Path) -> str:
    """Which results folder `folder` is (`FOLDER_KINDS`); anything else is an InputError that says what it looked
    for. A sweep folder whose sweep did not finish has points/ but no points.parquet yet."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"results folder {folder} does not exist; write one with `fiitedsim replay TRACE --out "
                         f"{folder}`, `fiitedsim train ... --out {folder}` or a sweep")
    if not folder.is_dir():
        raise InputError(f"{folder} is {file_kind(folder) or 'a file'}, not a results folder; give the folder that "
                         "`fiitedsim replay --out`, "
                         "`train --out` or `sweep` wrote")
    for kind, marker in FOLDER_KINDS.items():
        if (folder / marker).is_file():
            return kind
    if (folder / "points").is_dir():
        raise InputError(f"{folder} is a sweep folder whose sweep did not finish (no points.parquet); run the "
                         "sweep again: stored points are reused")
    raise InputError(f"{folder} has no {', '.join(FOLDER_KINDS.values())}, so it is not a fiitedsim results folder; "
                     f"write one with `fiitedsim replay TRACE --out {folder}` or `fiitedsim train ... --out {folder}`")


@dataclass(frozen=True)
class TrainResults:
    """A training folder as `fiitedsim train --out` wrote it: the train_summary.json object and curve.parquet."""
    summary: dict
    curve: pl.DataFrame


def load_train_results(folder: str | Path) -> TrainResults:
    """Read a folder written by `fiitedsim train --out`, checked as far as the training report reads it."""
    from ..train.runner import CURVE_FILE, CURVE_SCHEMA, SUMMARY_FILE

    folder = Path(folder)
    rerun = f"re-run `fiitedsim train ... --out {folder}`"
    path = folder / SUMMARY_FILE
    try:
        summary = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); {rerun}") from None
    check_train_summary(summary, path, rerun)
    try:
        curve = read_frame(folder / CURVE_FILE)
    except UnreadableFrame as exc:
        raise InputError(f"{folder / CURVE_FILE} is missing or not readable ({exc}); {rerun}") from None
    problem = curve_problem(curve)
    if problem:
        raise InputError(f"{folder / CURVE_FILE}: {problem}; {rerun}")
    return TrainResults(summary, curve.select(list(CURVE_SCHEMA)))


#: curve.parquet columns by kind (docs/formats.md): shares in [0, 1], numbers >= 0, AUCs in [0, 1] or NaN/null
#: (undefined: the evaluation split held one class); the other numeric columns are integers >= 0.
_CURVE_SHARES = ("chunk_hit_rate", "dim_hit_rate")
_CURVE_NUMBERS = ("train_loss", "logloss")


def curve_problem(curve: pl.DataFrame) -> str | None:
    """What is wrong with a training curve (curve.parquet, or a sweep's stored training point), None if nothing:
    every column of `runner.CURVE_SCHEMA` of its type, and every value in its range."""
    from ..train.runner import CURVE_SCHEMA

    wrong = [c for c, dtype in CURVE_SCHEMA.items() if c not in curve.columns or curve.schema[c] != dtype]
    if wrong:
        return f"column {wrong[0]} is missing or not {CURVE_SCHEMA[wrong[0]]}"
    for name, dtype in CURVE_SCHEMA.items():
        column = curve[name]
        if name == "auc":
            problem = _range_problem(name, column.fill_nan(0.5).fill_null(0.5), 1.0, "an AUC in 0..1 or undefined")
        elif name in _CURVE_SHARES:
            problem = _range_problem(name, column, 1.0, "a share in 0..1")
        elif name in _CURVE_NUMBERS:
            problem = _range_problem(name, column, math.inf, "a number >= 0")
        elif dtype.is_integer():
            problem = _range_problem(name, column, math.inf, "an integer >= 0")
        else:
            problem = f"column {name} has empty values" if column.null_count() else None
        if problem:
            return problem
    return None


def _range_problem(name: str, column: pl.Series, most: float, what: str) -> str | None:
    """A numeric column's first value that is empty, NaN, below 0 or above `most` (None: all fine)."""
    if column.null_count():
        return f"column {name} has empty values"
    values = column.cast(pl.Float64)
    bad = (values.is_nan() | (values < 0) | (values > most)).arg_true()
    if bad.len():
        row = int(bad[0])
        value = column[row]
        shown = "NaN" if isinstance(value, float) and math.isnan(value) else _shown(value)
        return f"column {name}, row {row:,}: {shown} is not {what}"
    return None


#: train_summary.json figures of a run by kind: shares in [0, 1], non-negative numbers, non-negative integers.
_TRAIN_SHARES = {"chunk_hit_rate", "dim_hit_rate", "collision_share"}
_TRAIN_NUMBERS = {"logloss", "auc_std", "logloss_std", "seconds"}
_TRAIN_INTS = {"payload_bytes_peak", "total_bytes_peak", "rounds", "samples"}


def _train_value_problem(name: str, value) -> str | None:
    """What is wrong with one figure of a training run (None: fine); `auc` may be null (one class only)."""
    if name == "auc":
        return None if value is None or (_is_number(value) and 0 <= value <= 1) else \
            f"is {_shown(value)}, not an AUC in 0..1 or null"
    if name in _TRAIN_SHARES:
        return None if _is_number(value) and 0 <= value <= 1 else f"is {_shown(value)}, not a share in 0..1"
    if name in _TRAIN_NUMBERS:
        return None if value is None or (_is_number(value) and value >= 0) else \
            f"is {_shown(value)}, not a number >= 0 or null"
    if name in _TRAIN_INTS:
        return None if _is_int(value) and value >= 0 else f"is {_shown(value)}, not an integer >= 0"
    return None


def check_train_summary(summary, path: str | Path = "train_summary.json", rerun: str = "re-run the training") -> None:
    """A train_summary.json has the parts the training report reads, of the right types and ranges."""
    from ..train.runner import RUN_KEYS

    if not isinstance(summary, dict) or not isinstance(summary.get("policies"), dict) or not summary["policies"] \
            or not isinstance(summary.get("config"), dict):
        raise InputError(f"{path} lacks its policies or config section; {rerun}")
    _check_runs(path, "run", summary["policies"], RUN_KEYS, _train_value_problem, rerun, rerun)
    for key, run in summary["policies"].items():
        seeds = run["per_seed"]
        if not isinstance(seeds, list) or not seeds or not all(
                isinstance(e, dict) and "seed" in e and _train_value_problem("auc", e.get("auc", "?")) is None
                for e in seeds):
            raise InputError(f"{path}: run {key}: per_seed is {_shown(seeds)}, not a list of seeds' figures; {rerun}")
    _check_values(path, "config", {name: summary["config"].get(name) for name in ("budgets", "policies")},
                  _config_value_problem, rerun)
    _check_warnings(summary, path, rerun)


def _check_runs(path, noun: str, runs: dict, needed, problem_of, lacking_rerun: str, rerun: str) -> None:
    """Every run of a summary has the `needed` keys, and no value `problem_of(name, value)` finds wrong."""
    for key, stats in runs.items():
        missing = [k for k in needed if not isinstance(stats, dict) or k not in stats]
        if missing:
            raise InputError(f"{path}: {noun} {key} lacks {missing[0]}; {lacking_rerun}")
        _check_values(path, f"{noun} {key}:", stats, problem_of, rerun)


def _check_values(path, where: str, values: dict, problem_of, rerun: str) -> None:
    """No value of a summary's section (`where`: "config", "trace", "run KEY:") that `problem_of(name, value)`
    finds wrong."""
    for name, value in values.items():
        problem = problem_of(name, value)
        if problem:
            raise InputError(f"{path}: {where} {name} {problem}; {rerun}")


def _check_warnings(summary: dict, path, rerun: str) -> None:
    warnings = summary.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise InputError(f"{path}: warnings is {_shown(warnings)}, not a list of messages; {rerun}")


def load_results(folder: str | Path) -> ReplayResults:
    """Read a folder written by `fiitedsim replay --out`; anything else is an InputError that says what to do."""
    folder = Path(folder)
    rerun = f"write it with `fiitedsim replay TRACE --out {folder}`"
    if not folder.exists():
        raise InputError(f"results folder {folder} does not exist; {rerun}")
    if not folder.is_dir():
        raise InputError(f"{folder} is {file_kind(folder) or 'a file'}, not a results folder; {rerun}")
    path = folder / "summary.json"
    if not path.is_file():
        raise InputError(f"{folder} has no summary.json, so it is not a fiitedsim results folder; {rerun}")
    try:
        summary = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); re-run `fiitedsim replay TRACE --out {folder}`") from None
    check_summary(summary, path, folder)
    series = {}
    for key in summary["policies"]:
        ts = folder / "timeseries" / f"{key}.parquet"
        if not ts.is_file():
            raise InputError(f"{folder} is incomplete: timeseries/{key}.parquet is missing; "
                             f"re-run `fiitedsim replay TRACE --out {folder}`")
        try:
            series[key] = read_frame(ts)
        except UnreadableFrame as exc:  # a damaged or truncated file
            raise InputError(f"{ts} is not a readable Parquet file ({exc}); "
                             f"re-run `fiitedsim replay TRACE --out {folder}`") from None
    return ReplayResults(summary, series)


def check_summary(summary, path: str | Path = "summary.json", folder: str | Path = "DIR") -> None:
    """The summary is the current format and has the parts the report reads."""
    fmt = summary.get("format") if isinstance(summary, dict) else None
    if fmt != RESULTS_FORMAT or not _is_int(fmt):  # 1.0 and true equal 1 in Python, but are no format number
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt < RESULTS_FORMAT:
            raise InputError(f"{path} is results format {fmt}, written by an older fiitedsim; this one reads "
                             f"format {RESULTS_FORMAT}: re-run `fiitedsim replay TRACE --out {folder}` to rewrite it")
        if isinstance(fmt, int) and not isinstance(fmt, bool):
            raise InputError(f"{path} is results format {fmt}, written by a newer fiitedsim; this one reads "
                             f"format {RESULTS_FORMAT}: upgrade fiitedsim")
        raise InputError(f"{path} has no results format number, so it is not a fiitedsim summary.json; "
                         f"write one with `fiitedsim replay TRACE --out {folder}`")
    policies, config, trace = (summary.get(k) for k in ("policies", "config", "trace"))
    if not isinstance(policies, dict) or not policies or not isinstance(config, dict) or not isinstance(trace, dict):
        raise InputError(f"{path} lacks its policies, config or trace section; "
                         f"re-run `fiitedsim replay TRACE --out {folder}`")
    rerun = f"the file was changed or damaged: re-run `fiitedsim replay TRACE --out {folder}`"
    for section, keys in (("config", config), ("trace", trace)):
        lacking = [k for k in _REQUIRED[section] if k not in keys]
        if lacking:
            raise InputError(f"{path}: {section} lacks {lacking[0]}; {rerun}")
    _check_runs(path, "policy", policies, NEEDED_SUMMARY_KEYS, _summary_value_problem,
                f"re-run `fiitedsim replay TRACE --out {folder}`", rerun)
    _check_values(path, "config", config, _config_value_problem, rerun)
    _check_values(path, "trace", trace, _trace_value_problem, rerun)
    _check_warnings(summary, path, rerun)


#: summary.json values by kind (policies.base.SUMMARY_KEYS): shares in [0, 1], other non-negative numbers; every
#: other key of the contract is a non-negative integer count or byte size.
_SHARE_KEYS = {"row_hit_rate", "chunk_hit_rate", "full_hit_rate", "dim_hit_rate", "collision_share",
               "fragmentation_final", "index_load_factor_final"}
_NUMBER_KEYS = {"mean_probe_length"}
_TRACE_INT_KEYS = {"lookups", "importance_records", "dense_bytes", "touched_rows", "touched_dense_bytes"}
#: Keys of the config and trace sections every results folder of this format has, and the report reads.
_REQUIRED = {"config": ("budgets", "policies"),
             "trace": ("path", "lookups", "dense_bytes", "touched_rows", "touched_dense_bytes")}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _shown(value) -> str:
    """A value as the file has it, shortened: the message stays one readable line."""
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _summary_value_problem(name: str, value) -> str | None:
    """What is wrong with one policy value of summary.json (None: fine). Unknown keys are left alone."""
    if name in _SHARE_KEYS:
        if not _is_number(value):
            return f"is {_shown(value)}, not a number"
        return None if 0.0 <= value <= 1.0 else f"is {_shown(value)}, outside 0..1"
    if name in _NUMBER_KEYS:
        return None if _is_number(value) and value >= 0 else f"is {_shown(value)}, not a number >= 0"
    if name == "theta_final":  # null = +infinity
        return None if value is None or (_is_number(value) and value >= 0) else \
            f"is {_shown(value)}, not a number >= 0 or null"
    if name == "dim_hist_final":
        ok = isinstance(value, list) and value and all(_is_int(v) and v >= 0 for v in value)
        return None if ok else f"is {_shown(value)}, not a list of counts"
    if name in SUMMARY_KEYS:
        return None if _is_int(value) and value >= 0 else f"is {_shown(value)}, not an integer >= 0"
    return None


def _config_value_problem(name: str, value) -> str | None:
    if name == "budgets":
        ok = isinstance(value, list) and all(
            isinstance(b, dict) and isinstance(b.get("label"), str)
            and (b.get("bytes") is None or (_is_int(b["bytes"]) and b["bytes"] >= 0))
            and all(_is_number(b[k]) and b[k] >= 0 for k in ("dense_share", "touched_share") if k in b)
            for b in value)
        return None if ok else f"is {_shown(value)}, not a list of {{\"label\", \"bytes\", ...}} budgets"
    if name == "policies":
        ok = isinstance(value, list) and all(isinstance(p, str) for p in value)
        return None if ok else f"is {_shown(value)}, not a list of policy names"
    if isinstance(value, float) and not math.isfinite(value):
        return f"is {_shown(value)}, not a finite number"
    return None


def _trace_value_problem(name: str, value) -> str | None:
    if name in _TRACE_INT_KEYS:
        return None if _is_int(value) and value >= 0 else f"is {_shown(value)}, not an integer >= 0"
    if name in ("first_step", "last_step"):
        return None if value is None or (_is_int(value) and value >= 0) else f"is {_shown(value)}, not a step"
    if name in ("path", "importance"):
        return None if value is None or isinstance(value, str) else f"is {_shown(value)}, not a path"
    if name == "tables":
        return None if isinstance(value, list) else f"is {_shown(value)}, not a list of tables"
    if name == "touched_rows_per_table":
        ok = isinstance(value, list) and all(_is_int(v) and v >= 0 for v in value)
        return None if ok else f"is {_shown(value)}, not a list of counts"
    return None


def check_series(results: ReplayResults) -> None:
    """Every run's time series has the columns the report reads, of their types and ranges (`series_problem`)."""
    for key in results.summary["policies"]:
        frame = results.series.get(key)
        problem = "is missing" if frame is None else series_problem(frame)
        if problem:
            raise InputError(f"time series of {key}: {problem}; the file was changed or damaged: re-run "
                             "`fiitedsim replay TRACE --out DIR`")


#: Time-series columns that are shares in [0, 1]; `theta` is a number >= 0 (+inf: the budget holds no chunk).
_SERIES_SHARES = ("fragmentation", "index_load_factor")


def series_problem(frame: pl.DataFrame) -> str | None:
    """What is wrong with one replay time series (a replay's timeseries/KEY.parquet, or a sweep's stored replay
    point), None if nothing. docs/formats.md: the columns the report reads and dim_0 .. dim_K, at least one row;
    `fragmentation` and `index_load_factor` shares in [0, 1], `theta` a number >= 0 (+inf allowed), every other
    column of the contract an integer >= 0 (Int64); nothing empty or NaN."""
    columns = frame.columns
    missing = [c for c in NEEDED_SERIES_COLUMNS if c not in columns]
    dims = [c for c in columns if c.startswith("dim_") and c[4:].isdigit()]
    if missing or not dims or frame.height == 0:
        return f"lacks {missing[0] if missing else 'dim_0 .. dim_K' if frame.height else 'rows'}"
    known = {"step", *COUNTER_COLUMNS, *GAUGE_COLUMNS, *dims}
    for name in [c for c in columns if c in known]:
        dtype, column = frame.schema[name], frame[name]
        if not dtype.is_numeric():
            return f"column {name} has type {dtype}, not numbers"
        if name in FLOAT_COLUMNS:
            problem = _range_problem(name, column.replace(math.inf, 0.0) if name == "theta" else column,
                                     1.0 if name in _SERIES_SHARES else math.inf,
                                     "a share in 0..1" if name in _SERIES_SHARES else "a number >= 0")
        elif not dtype.is_integer():
            return f"column {name} is {dtype}, not Int64"
        else:
            problem = _range_problem(name, column, math.inf, "an integer >= 0")
        if problem:
            return problem
    return None


def check_report_path(target: str | Path, will_exist: str | Path | None = None) -> Path:
    """Fail before any work if the report cannot be written: its folder must exist (or be `will_exist`), and the
    address space must hold the chart engine (`memory.check_report_address_space`)."""
    from ..memory import check_report_address_space
    check_report_address_space()
    target = Path(target)
    parent = target.parent
    if target.is_dir():
        raise InputError(f"report {target} is a folder; name a file such as {target / 'report.html'}")
    if will_exist is not None and parent.resolve() == Path(will_exist).resolve():
        return target  # the --out folder, checked by its own command
    if not parent.exists():
        raise InputError(f"cannot write report {target}: folder {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise InputError(f"cannot write report {target}: {parent} is not a folder")
    check_writable(target)
    return target
