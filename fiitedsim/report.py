"""One self-contained HTML page that compares the policies and budgets of a replay.

`fiitedsim replay ... --report FILE.html` and `fiitedsim report RUN_DIR` both end
in `write_report`, so a report re-rendered from a saved results folder is the
same page, byte for byte, as the one written straight after the replay.

The page must open offline, years later, on a laptop without network access:
the Vega, Vega-Lite and vega-embed libraries are inlined once (the bundle that
`vl-convert-python` ships, matched to altair's Vega-Lite version) and every
chart's data is inlined in its spec. Policies and budgets are read from the
summary, never from a fixed list, so policies added later appear by themselves.

Per-window hit rates are computed from the differences of the cumulative
counters between consecutive snapshots (hits in the window / requests in the
window), not from the cumulative rates, which flatten out as a run goes on.
Long runs are thinned to at most `MAX_WINDOWS` snapshots per chart (always
keeping the first and the last); rates over thinned snapshots are still exact,
each over the merged windows, because they come from counter differences.

Comparisons follow three rules, stated on the page itself ("How to read
this"): memory is total memory (payload + hash index + metadata, the peak)
on a log axis, with payload beside it; caches (`policies.CACHE_POLICIES`)
are ranked apart from pruning, because their misses are served from a full
backing copy elsewhere; and with several training seeds a difference is only
called when the paired per-seed differences clear their spread
(`paired_verdict`). "At equal memory" tables interpolate each policy's
measured points linearly on log memory (`interpolate_log`) at common points
(`memory_points`), never extrapolating.
"""
from __future__ import annotations

import functools
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import numpy as np
import polars as pl

from . import __version__
from .atomic import atomic_path, check_writable
from .errors import InputError
from .policies import CACHE_POLICIES, POLICIES
from .policies.base import SUMMARY_KEYS
from .replay import RESULTS_FORMAT, ReplayResults

MIB = 2**20
#: Most snapshots drawn per policy in the time-series charts (keeps the page small for long runs).
MAX_WINDOWS = 200
#: Most snapshots per policy in the stacked row-dimension chart (it has K series per policy).
MAX_DIM_WINDOWS = 50
#: Summary keys the report reads (a subset of policies.base.SUMMARY_KEYS, the summary.json contract).
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
HIT_RATES = {
    "dim hit rate": ("dim_hits", "dims_requested", "dim_hit_rate"),
    "row hit rate": ("row_hits", "lookups", "row_hit_rate"),
    "chunk hit rate": ("chunk_hits", "chunks_requested", "chunk_hit_rate"),
    "full hit rate": ("full_hits", "lookups", "full_hit_rate"),
}
MEMORY_PARTS = {"payload": "payload_bytes", "index": "index_bytes", "metadata": "meta_bytes"}
#: vega-embed options: SVG output (crisp, searchable), export buttons but no link to the online editor.
EMBED_OPTIONS = {"renderer": "svg", "mode": "vega-lite",
                 "actions": {"export": True, "source": False, "compiled": False, "editor": False}}
#: Chart ids in page order: the browser test and tests/test_report.py count them.
CHART_IDS = ("tradeoff", "memory", "fragmentation", "pages", "hit_rates", "dims_final", "dims_over_time")


# ---------------------------------------------------------------------------
# Loading and checking a results folder


def load_results(folder: str | Path) -> ReplayResults:
    """Read a folder written by `fiitedsim replay --out`; anything else is an InputError that says what to do."""
    folder = Path(folder)
    rerun = f"write it with `fiitedsim replay TRACE --out {folder}`"
    if not folder.exists():
        raise InputError(f"results folder {folder} does not exist; {rerun}")
    if not folder.is_dir():
        raise InputError(f"{folder} is a file, not a results folder; {rerun}")
    path = folder / "summary.json"
    if not path.is_file():
        raise InputError(f"{folder} has no summary.json, so it is not a fiitedsim results folder; {rerun}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
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
            series[key] = pl.read_parquet(ts)
        except (OSError, pl.exceptions.PolarsError) as exc:  # a damaged or truncated file
            raise InputError(f"{ts} is not a readable Parquet file ({type(exc).__name__}); "
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
    for key, stats in policies.items():
        missing = [k for k in NEEDED_SUMMARY_KEYS if not isinstance(stats, dict) or k not in stats]
        if missing:
            raise InputError(f"{path}: policy {key} lacks {missing[0]}; re-run `fiitedsim replay TRACE --out {folder}`")
        for name, value in stats.items():
            problem = _summary_value_problem(name, value)
            if problem:
                raise InputError(f"{path}: policy {key}: {name} {problem}; {rerun}")
    for name, value in config.items():
        problem = _config_value_problem(name, value)
        if problem:
            raise InputError(f"{path}: config {name} {problem}; {rerun}")
    for name, value in trace.items():
        problem = _trace_value_problem(name, value)
        if problem:
            raise InputError(f"{path}: trace {name} {problem}; {rerun}")
    warnings = summary.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise InputError(f"{path}: warnings is {_shown(warnings)}, not a list of messages; {rerun}")


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
    for key in results.summary["policies"]:
        frame = results.series.get(key)
        columns = [] if frame is None else frame.columns
        missing = [c for c in NEEDED_SERIES_COLUMNS if c not in columns]
        if missing or not any(c.startswith("dim_") and c[4:].isdigit() for c in columns) or frame.height == 0:
            what = missing[0] if missing else ("dim_0 .. dim_K" if frame is not None and frame.height else "rows")
            raise InputError(f"time series of {key} lacks {what}; re-run `fiitedsim replay TRACE --out DIR`")
        for name in [*NEEDED_SERIES_COLUMNS, *(c for c in columns if c.startswith("dim_"))]:
            dtype = frame.schema[name]
            if not dtype.is_numeric() or frame[name].null_count():
                what = f"has type {dtype}" if not dtype.is_numeric() else "has empty values"
                raise InputError(f"time series of {key}: column {name} {what}, not numbers; the file was changed "
                                 "or damaged: re-run `fiitedsim replay TRACE --out DIR`")


def check_report_path(target: str | Path, will_exist: str | Path | None = None) -> Path:
    """Fail before any work if the report cannot be written: its folder must exist (or be `will_exist`)."""
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


def write_report(target: str | Path, results: ReplayResults) -> Path:
    """Render `results` and write the page all-or-nothing to `target`."""
    target = check_report_path(target)
    page = render_report(results)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


# ---------------------------------------------------------------------------
# The runs: which policy at which budget


@dataclass(frozen=True)
class Run:
    key: str            # the summary key: NAME or NAME@BUDGET
    policy: str
    budget: str         # budget label as given on the command line
    budget_bytes: int | None


def runs_of(summary: dict) -> list[Run]:
    budgets = {b["label"]: b.get("bytes") for b in summary["config"].get("budgets", []) if isinstance(b, dict)}
    only = next(iter(budgets)) if len(budgets) == 1 else ""
    runs = []
    for key in summary["policies"]:
        name, at, label = key.partition("@")
        label = label if at else only
        runs.append(Run(key, name, label, budgets.get(label)))
    return runs


def _order(values) -> list:
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------
# What a policy is: pruning, an offline oracle, a cache, the dense reference

#: The dense reference: every row stored whole, so above any budget below the dense size.
DENSE_REFERENCE = ("full",)
CACHE_NOTE = "needs a full backing copy: a miss is served from it, not lost"
ORACLE_NOTE = "offline oracle (sized from a first pass)"
#: Kind -> how charts and tables name it (the charts' line style follows it).
KINDS = {"pruning": "pruning", "oracle": "pruning, offline oracle", "cache": "cache (full backing copy)",
         "reference": "dense reference"}


def policy_kind(name: str) -> str:
    """`cache` (misses served from a full copy elsewhere), `oracle` (sized from a first pass over the very
    lookups it is measured on), `reference` (the dense table) or `pruning` (any other, new policies too)."""
    if name in CACHE_POLICIES:
        return "cache"
    if name in DENSE_REFERENCE:
        return "reference"
    if getattr(POLICIES.get(name), "needs_frequencies", False):
        return "oracle"
    return "pruning"


# ---------------------------------------------------------------------------
# Comparisons: differences over seeds, and curves compared at equal memory


@dataclass(frozen=True)
class Paired:
    """The verdict on a - b from paired per-seed values (the same seed: the same data and initial model)."""
    outcome: str            # "better" (a beats b), "worse" (b beats a), "tie", "one seed" or "no seeds"
    mean: float | None      # mean of the per-seed differences a_i - b_i
    sd: float | None        # their sample standard deviation (n - 1); None with fewer than two seeds
    agree: int              # seeds whose difference has the sign of the mean (0 when the mean is 0)
    seeds: int


def paired_verdict(a: Sequence[float], b: Sequence[float]) -> Paired:
    """a beats b when the mean of the paired differences d_i = a_i - b_i exceeds their sample standard
    deviation AND every d_i is positive (b beats a in the mirror case); anything else is a tie. One seed has no
    spread, so no verdict ("one seed"); a difference is still reported."""
    if len(a) != len(b):
        raise ValueError("paired values need one value of each side per seed")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(d)
    if n == 0:
        return Paired("no seeds", None, None, 0, 0)
    mean = sum(d) / n
    agree = sum(1 for x in d if (x > 0 if mean > 0 else x < 0)) if mean != 0 else 0
    if n == 1:
        return Paired("one seed", mean, None, agree, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if mean > sd and all(x > 0 for x in d):
        outcome = "better"
    elif -mean > sd and all(x < 0 for x in d):
        outcome = "worse"
    else:
        outcome = "tie"
    return Paired(outcome, mean, sd, agree, n)


@dataclass(frozen=True)
class CurvePoint:
    """One measured run of a policy: its memory, its value, the value per seed (training) and its budget."""
    memory: float
    value: float
    seeds: tuple[float, ...] = ()
    budget: str = ""


def make_curve(points: Sequence[CurvePoint]) -> list[CurvePoint]:
    """A policy's measured points ordered by memory, ready to interpolate on log memory.

    Points with no memory (a budget too small to store anything) have no place on a log axis and are left
    out; of several points at the same memory the best value is kept (the first of equal ones).
    """
    best: dict[float, CurvePoint] = {}
    for p in points:
        if p.memory > 0 and math.isfinite(p.value) and (p.memory not in best or p.value > best[p.memory].value):
            best[p.memory] = p
    return [best[m] for m in sorted(best)]


def interpolate_log(curve: Sequence[CurvePoint], memory: float) -> CurvePoint | None:
    """The curve at `memory`: linear in log(memory) between the two measured points around it (their seeds
    alike), the point itself where one was measured, None outside the measured range (no extrapolation)."""
    if not curve or memory <= 0 or memory < curve[0].memory or memory > curve[-1].memory:
        return None
    for lo, hi in zip(curve, curve[1:]):
        if lo.memory <= memory <= hi.memory:
            if memory == lo.memory:
                return lo
            if memory == hi.memory:
                return hi
            t = (math.log(memory) - math.log(lo.memory)) / (math.log(hi.memory) - math.log(lo.memory))
            return CurvePoint(memory, lo.value + t * (hi.value - lo.value),
                              tuple(x + t * (y - x) for x, y in zip(lo.seeds, hi.seeds)))
    return curve[0] if memory == curve[0].memory else None


#: Memory points of the equal-memory tables: this many across the range every policy covers, or (when no memory
#: is covered by all) `OVERLAP_POINTS` across each stretch of memory that two or more policies cover.
COMMON_POINTS, OVERLAP_POINTS = 5, 3


def log_grid(lo: float, hi: float, count: int) -> list[float]:
    """`count` memories evenly spaced on a log scale from lo to hi, both ends exact (one point if lo == hi)."""
    if lo == hi or count < 2:
        return [lo]
    inner = [lo * (hi / lo) ** (i / (count - 1)) for i in range(1, count - 1)]
    return [lo, *inner, hi]


def memory_points(curves: dict[str, list[CurvePoint]]) -> tuple[list[float], bool]:
    """The memories the equal-memory table compares at, and whether every policy's range covers them.

    Only curves with two or more measured memories span a range [first memory, last memory]. If all the
    ranges share a stretch [largest first memory, smallest last memory]: `COMMON_POINTS` log-spaced memories
    across it. Otherwise, for each maximal stretch of memory inside the ranges of at least two policies,
    `OVERLAP_POINTS` log-spaced memories across it (none where no two ranges overlap).
    """
    spans = [(c[0].memory, c[-1].memory) for c in curves.values() if len(c) >= 2]
    if not spans:
        return [], False
    lo, hi = max(a for a, _ in spans), min(b for _, b in spans)
    if lo <= hi:
        return log_grid(lo, hi, COMMON_POINTS), True
    ends = sorted({x for span in spans for x in span})
    stretches: list[list[float]] = []
    for a, b in zip(ends, ends[1:]):  # elementary pieces between consecutive range ends
        if sum(1 for x, y in spans if x <= a and b <= y) >= 2:
            if stretches and stretches[-1][1] == a:
                stretches[-1][1] = b
            else:
                stretches.append([a, b])
    # ranges that only touch (one's last memory is another's first) overlap in that single memory
    for x in ends:
        if sum(1 for a, b in spans if a <= x <= b) >= 2 and not any(a <= x <= b for a, b in stretches):
            stretches.append([x, x])
    return [m for a, b in sorted(stretches) for m in log_grid(a, b, OVERLAP_POINTS)], False


@dataclass(frozen=True)
class EqualRow:
    memory: float
    values: dict[str, CurvePoint | None]    # every policy's interpolated point (None outside its range)
    best: str | None                        # the highest among the ranked (non-cache) policies measured here


def equal_memory_rows(curves: dict[str, list[CurvePoint]]) -> tuple[list[EqualRow], bool]:
    """Each policy's curve at the common memory points (`memory_points`), with the best ranked policy.

    Caches are interpolated but never "best": their misses are served from a full copy elsewhere. Returns
    the rows and whether every policy covers them.
    """
    grid, common = memory_points(curves)
    rows = []
    for m in grid:
        values = {name: interpolate_log(c, m) if len(c) >= 2 else None for name, c in curves.items()}
        measured = [n for n, v in values.items() if v is not None]
        ranked = [n for n in measured if policy_kind(n) != "cache"]
        best = max(ranked, key=lambda n: values[n].value) if ranked else None  # first of equal values
        rows.append(EqualRow(m, values, best))
    return rows, common


# ---------------------------------------------------------------------------
# Data for the charts


def _thin(frame: pl.DataFrame, limit: int) -> pl.DataFrame:
    """At most `limit` evenly spaced rows, first and last included."""
    if frame.height <= limit:
        return frame
    return frame[np.unique(np.linspace(0, frame.height - 1, limit).round().astype(np.int64)).tolist()]


def _num(x, digits: int = 6):
    """JSON-safe rounded number (None for NaN/inf) so the page stays small and valid."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def _window_rates(frame: pl.DataFrame) -> pl.DataFrame:
    """Per-window hit rates in % from cumulative counters: diff(hits) / diff(requests); empty windows dropped."""
    out = frame.select("step")
    for label, (hits, requests, _) in HIT_RATES.items():
        dh = pl.col(hits).diff().fill_null(pl.col(hits))
        dn = pl.col(requests).diff().fill_null(pl.col(requests))
        out = out.with_columns(frame.select(pl.when(dn > 0).then(100.0 * dh / dn).alias(label)))
    return out


def _series_rows(results: ReplayResults, runs: list[Run], limit: int, make) -> list[dict]:
    rows = []
    for run in runs:
        for record in make(_thin(results.series[run.key], limit)).iter_rows(named=True):
            rows.append({"policy": run.policy, "budget": run.budget, **record})
    return rows


def _long(rows: list[dict], keep: tuple[str, ...], value_columns: dict[str, str], value_name: str,
          scale: float = 1.0) -> list[dict]:
    """Wide rows -> one row per (row, value column), dropping missing values."""
    out = []
    for row in rows:
        for label, column in value_columns.items():
            v = _num(row[column] / scale if row[column] is not None else None)
            if v is not None:
                out.append({**{k: row[k] for k in keep}, "what": label, value_name: v})
    return out


# ---------------------------------------------------------------------------
# Charts


class _Layout:
    """Shared colours and facets so every chart reads the same way."""

    def __init__(self, runs: list[Run]):
        self.policies = _order(r.policy for r in runs)
        budget_bytes = {r.budget: r.budget_bytes for r in runs}
        # budgets ascending by bytes where known, otherwise in the order given
        self.budgets = sorted(_order(r.budget for r in runs),
                              key=lambda b: (budget_bytes[b] is None, budget_bytes[b] or 0))
        self.multi_budget = len(self.budgets) > 1
        self.color = alt.Color("policy:N", title="policy", sort=self.policies,
                               scale=alt.Scale(domain=self.policies, scheme="tableau10"))
        # Faint layers (spread bars, bands) take the same colours on a scale of their own without a legend: on
        # the colour scale their faded symbols would stand in its legend, and Vega-Lite merges the legends of
        # scales with equal domains, so that legend=None would hide the policies' legend too. Hence a renamed
        # copy of the policy field (`faint`) and of the domain, in the same order: the same colours.
        renamed = [f"faint:{p}" for p in self.policies]
        faint = {"sort": renamed, "legend": None, "scale": alt.Scale(domain=renamed, scheme="tableau10")}
        self.stroke_faint, self.fill_faint = alt.Stroke("faint_policy:N", **faint), alt.Fill("faint_policy:N", **faint)
        present = {policy_kind(p) for p in self.policies}
        kinds = [label for kind, label in KINDS.items() if kind in present]
        dashes = {"pruning": [1, 0], "oracle": [6, 3], "cache": [2, 2], "reference": [1, 0]}
        self.dash = alt.StrokeDash("kind:N", title="kind", sort=kinds, scale=alt.Scale(
            domain=kinds, range=[dashes[k] for k in KINDS if KINDS[k] in kinds]))

    @staticmethod
    def faint(chart):
        """`chart` with the `faint_policy` field the faint encodings read."""
        return chart.transform_calculate(faint_policy="'faint:' + datum.policy")

    def budget_column(self, chart):
        """One column per budget when there are several; the chart as is otherwise."""
        if not self.multi_budget:
            return chart
        return chart.facet(column=alt.Column("budget:N", title="budget", sort=self.budgets))

    def grid(self, chart):
        """One panel per run: policies down, budgets across (or a wrapped row of policies for one budget)."""
        if self.multi_budget:
            return chart.facet(row=alt.Row("policy:N", title="policy", sort=self.policies),
                               column=alt.Column("budget:N", title="budget", sort=self.budgets))
        return chart.facet(facet=alt.Facet("policy:N", title="policy", sort=self.policies),
                           columns=min(3, len(self.policies)))


def _step_x() -> alt.X:
    return alt.X("step:Q", title="training step", axis=alt.Axis(format="d"))


#: The two memory axes of the trade-off charts: the left panel total memory, the right one payload only.
MEMORY_AXES = {
    "total_mib": "total memory, peak (MiB, log scale): payload + index + metadata",
    "payload_mib": "payload only, peak (MiB, log scale)",
}


def _label_points(rows: list[dict], field: str, value: str, label_key: str, multi_budget: bool) -> None:
    """Set `label_key` of each row: its budget (its policy with one budget); budgets that land on the same
    point (a dense policy, a static size that a larger budget does not change) share one label."""
    by_point: dict[tuple, list[dict]] = {}
    for row in rows:
        by_point.setdefault((row["policy"], row[field], row[value]), []).append(row)
    for same in by_point.values():
        same[0][label_key] = ", ".join(r["budget"] if multi_budget else r["policy"] for r in same)
        for row in same[1:]:
            row[label_key] = ""


def _memory_panels(rows: list[dict], y: tuple[str, str, alt.Scale], tooltip: list, lay: _Layout, title: str,
                   subtitle: str, spread: tuple[str, str] | None = None):
    """`y` (field, title, scale) against total memory (left) and payload (right), both on log axes, one line
    per policy through its budgets (dashed by kind), points labelled by budget, optional `spread` (low, high) bars.

    Rows need policy, budget, budget_bytes, kind, total_mib, payload_mib, label_total_mib and
    label_payload_mib; a row with no memory on an axis (a budget that stores nothing) is left off that panel,
    since a log axis has no zero.
    """
    y_field, y_title, y_scale = y
    panels = []
    for field, x_title in MEMORY_AXES.items():
        base = alt.Chart().transform_filter(f"datum.{field} > 0").encode(
            x=alt.X(f"{field}:Q", title=x_title, scale=alt.Scale(type="log", nice=False, padding=14),
                    axis=alt.Axis(labelOverlap="greedy", labelFlush=False)),
            y=alt.Y(f"{y_field}:Q", title=y_title, scale=y_scale))
        layers = [base.mark_line().encode(order="budget_bytes:Q", detail="policy:N", strokeDash=lay.dash,
                                          color=lay.color)]
        if spread is not None:
            lo, hi = spread
            layers.append(lay.faint(base.transform_filter(f"isValid(datum.{lo})")).mark_rule(
                strokeWidth=2, opacity=0.45).encode(
                y=alt.Y(f"{lo}:Q", title=y_title, scale=y_scale), y2=alt.Y2(f"{hi}:Q"), stroke=lay.stroke_faint))
        layers.append(base.mark_point(filled=True, size=60).encode(tooltip=tooltip, color=lay.color))
        layers.append(base.mark_text(align="left", dx=6, dy=-6, fontSize=10).encode(text=f"label_{field}:N",
                                                                                    color=lay.color))
        panels.append(alt.layer(*layers).properties(width=440, height=300))
    return alt.hconcat(*panels, data=alt.Data(values=rows)).resolve_scale(y="shared").properties(
        title=alt.Title(title, subtitle=subtitle))


def chart_tradeoff(results: ReplayResults, runs: list[Run], lay: _Layout):
    """Dim hit rate against total memory (peak, log axis) and against payload, one line per policy."""
    rows = []
    for run in runs:
        s = results.summary["policies"][run.key]
        rows.append({"policy": run.policy, "budget": run.budget, "budget_bytes": run.budget_bytes or 0,
                     "kind": KINDS[policy_kind(run.policy)],
                     "total_mib": _num(s["total_bytes_peak"] / MIB), "payload_mib": _num(s["payload_bytes_peak"] / MIB),
                     "rate": _num(100 * s["dim_hit_rate"], 4),
                     "collisions": _num(100 * s["collision_share"], 4)})
    for field in MEMORY_AXES:
        _label_points(rows, field, "rate", f"label_{field}", lay.multi_budget)
    tooltip = [alt.Tooltip("policy:N"), alt.Tooltip("kind:N"), alt.Tooltip("budget:N"),
               alt.Tooltip("total_mib:Q", title="total MiB", format=".3f"),
               alt.Tooltip("payload_mib:Q", title="payload MiB", format=".3f"),
               alt.Tooltip("rate:Q", title="dim hit rate %", format=".2f"),
               alt.Tooltip("collisions:Q", title="collisions % of lookups", format=".2f")]
    y = ("rate", "dim hit rate over the run (%)", alt.Scale(domain=[0, 100]))
    return _memory_panels(
        rows, y, tooltip, lay, "Dim hit rate against memory: further up and further left is better",
        "resident dims / requested dims; one line per policy through its budgets, points labelled by budget "
        "(dashed: offline oracle; dotted: cache, which needs a full backing copy)" if lay.multi_budget else
        "resident dims / requested dims; one point per policy")


def chart_memory(results: ReplayResults, runs: list[Run], lay: _Layout):
    wide = _series_rows(results, runs, MAX_WINDOWS, lambda f: f.select("step", *MEMORY_PARTS.values()))
    rows = _long(wide, ("policy", "budget", "step"), MEMORY_PARTS, "mib", scale=MIB)
    chart = alt.Chart(alt.Data(values=rows)).mark_area().encode(
        x=_step_x(),
        y=alt.Y("mib:Q", title="memory (MiB)", stack="zero"),
        color=alt.Color("what:N", title="part", sort=list(MEMORY_PARTS),
                        scale=alt.Scale(domain=list(MEMORY_PARTS), scheme="set2")),
        order=alt.Order("order:Q"),
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("what:N", title="part"),
                 alt.Tooltip("mib:Q", title="MiB", format=".3f")],
    ).transform_calculate(order=f"indexof({json.dumps(list(MEMORY_PARTS))}, datum.what)").properties(
        width=260, height=160)
    return lay.grid(chart).resolve_scale(y="independent").properties(title=alt.Title(
        "Memory over steps: payload, hash index and policy metadata",
        subtitle="stacked; the top edge is the total at each snapshot (each panel has its own vertical scale)"))


def _gauge_chart(results, runs, lay, column: str, title: str, y_title: str, fmt: str, subtitle: str):
    rows = [{**r, column: _num(r[column])} for r in
            _series_rows(results, runs, MAX_WINDOWS, lambda f: f.select("step", column))]
    windows = max((results.series[r.key].height for r in runs), default=0)
    chart = alt.Chart(alt.Data(values=rows)).mark_line(point=windows <= 30).encode(
        x=_step_x(), y=alt.Y(f"{column}:Q", title=y_title, axis=alt.Axis(format=fmt)), color=lay.color,
        tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("step:Q"), alt.Tooltip(f"{column}:Q", format=fmt)],
    ).properties(width=300, height=200)
    return lay.budget_column(chart).properties(title=alt.Title(title, subtitle=subtitle))


def chart_fragmentation(results, runs, lay):
    return _gauge_chart(results, runs, lay, "fragmentation", "Fragmentation over steps", "fragmentation (%)", ".1%",
                        "share of slots in mapped pages that hold no live chunk (1 - live slots / mapped slots)")


def chart_pages(results, runs, lay):
    return _gauge_chart(results, runs, lay, "mapped_pages", "Mapped pages over steps", "mapped pages", ",d",
                        "physical pages of the pool in use (baselines without a paged pool stay at 0)")


def chart_hit_rates(results, runs, lay):
    rows = _long(_series_rows(results, runs, MAX_WINDOWS, _window_rates), ("policy", "budget", "step"),
                 {k: k for k in HIT_RATES}, "rate")
    windows = max((results.series[r.key].height for r in runs), default=0)
    chart = alt.Chart(alt.Data(values=rows)).mark_line(point=windows <= 30).encode(
        x=_step_x(), y=alt.Y("rate:Q", title="hit rate in the window (%)", scale=alt.Scale(domain=[0, 100])),
        color=lay.color,
        tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("step:Q", title="window ends at step"),
                 alt.Tooltip("rate:Q", title="hit rate %", format=".2f")],
    ).properties(width=230, height=180)
    facet = {"column": alt.Column("what:N", title=None, sort=list(HIT_RATES))}
    if lay.multi_budget:
        facet["row"] = alt.Row("budget:N", title="budget", sort=lay.budgets)
    return chart.facet(**facet).properties(title=alt.Title(
        "Hit rates per window over steps",
        subtitle=["each point is the rate within one window: (hits at its end - hits at its start) / "
                  "(requests at its end - requests at its start), from the cumulative counters",
                  "dim hit = resident dims / requested dims, the rate comparable across chunk- and "
                  "dimension-granular policies; row, chunk and full hit count chunks"]))


def _dim_columns(frame: pl.DataFrame) -> list[str]:
    return sorted((c for c in frame.columns if c.startswith("dim_") and c[4:].isdigit()), key=lambda c: int(c[4:]))


def chart_dims_final(results, runs, lay):
    rows = []
    for run in runs:
        hist = results.summary["policies"][run.key]["dim_hist_final"]
        holding = sum(hist[1:])
        for d, count in enumerate(hist):
            if d > 0:
                rows.append({"policy": run.policy, "budget": run.budget, "d": d, "rows": int(count),
                             "share": _num(100 * count / holding if holding else 0.0, 4)})
    chart = alt.Chart(alt.Data(values=rows)).mark_bar().encode(
        x=alt.X("d:O", title="resident chunks per row (d)", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("policy:N", sort=lay.policies),
        y=alt.Y("share:Q", title="share of the policy's rows holding chunks (%)"), color=lay.color,
        tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("d:O", title="chunks"), alt.Tooltip("rows:Q", format=",d"),
                 alt.Tooltip("share:Q", title="%", format=".2f")],
    ).properties(width=360, height=220)
    return lay.budget_column(chart).properties(title=alt.Title(
        "Row dimensions at the end: how many chunks the rows that hold any keep",
        subtitle="each policy's bars add up to 100% of its rows with at least one resident chunk; the table "
                 "gives the counts, and rows with none (d = 0, never-seen rows included)"))


def chart_dims_over_time(results, runs, lay):
    rows = []
    for run in runs:
        frame = _thin(results.series[run.key], MAX_DIM_WINDOWS)
        for column in _dim_columns(frame)[1:]:
            d = int(column[4:])
            for step, count in zip(frame["step"].to_list(), frame[column].to_list()):
                rows.append({"policy": run.policy, "budget": run.budget, "step": step, "d": d, "rows": int(count)})
    chart = alt.Chart(alt.Data(values=rows)).mark_area().encode(
        x=_step_x(), y=alt.Y("rows:Q", title="rows holding chunks", stack="zero"),
        color=alt.Color("d:O", title="chunks (d)", scale=alt.Scale(scheme="viridis")),
        order=alt.Order("d:O"),
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("d:O", title="chunks"), alt.Tooltip("rows:Q", format=",d")],
    ).properties(width=260, height=160)
    return lay.grid(chart).resolve_scale(y="independent").properties(title=alt.Title(
        "Row dimensions over steps: rows holding at least one chunk, by resident chunks",
        subtitle="stacked; the top edge is the number of rows with any chunk resident "
                 "(each panel has its own vertical scale)"))


CHARTS = {
    "tradeoff": ("Dim hit rate against memory", chart_tradeoff),
    "memory": ("Memory over steps", chart_memory),
    "fragmentation": ("Fragmentation over steps", chart_fragmentation),
    "pages": ("Mapped pages over steps", chart_pages),
    "hit_rates": ("Hit rates per window", chart_hit_rates),
    "dims_final": ("Row dimensions at the end", chart_dims_final),
    "dims_over_time": ("Row dimensions over steps", chart_dims_over_time),
}
assert tuple(CHARTS) == CHART_IDS


def chart_specs(results: ReplayResults, chart_ids: Sequence[str] = CHART_IDS, prefix: str = "") -> dict[str, dict]:
    """Vega-Lite specs by chart id (`prefix` + id), in page order."""
    runs = runs_of(results.summary)
    lay = _Layout(runs)
    specs = {}
    for chart_id in chart_ids:
        chart = CHARTS[chart_id][1](results, runs, lay).configure_view(stroke="#ddd").configure_axis(labelFontSize=11)
        specs[f"{prefix}{chart_id}"] = chart.to_dict()
    return specs


# ---------------------------------------------------------------------------
# The page


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one script, for the Vega-Lite version altair writes (no network)."""
    import vl_convert

    vl_version = "_".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    try:
        bundle = vl_convert.javascript_bundle(vl_version=vl_version)
    except (RuntimeError, ValueError):  # an altair newer than this vl-convert knows: its latest Vega-Lite
        bundle = vl_convert.javascript_bundle()
    if "</script" in bundle.lower():  # would end our <script> element early
        bundle = bundle.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    return bundle


def _json_for_script(value) -> str:
    """JSON that can sit inside <script>: '<', '>' and '&' escaped as \\u sequences (valid JSON)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _mib(n) -> str:
    return f"{n / MIB:,.2f}"


def _size(n) -> str:
    """Bytes in MiB (2 decimals), or in KiB below a tenth of a MiB, where MiB would read 0.00."""
    if n == 0:
        return "0 bytes"
    return f"{n / MIB:,.2f} MiB" if n >= MIB / 10 else f"{n / 1024:,.1f} KiB"


def _pct(x) -> str:
    return f"{100 * x:.1f}%"


class _Html(str):
    """Text that is HTML already: `_table` does not escape it again."""


def _cell(value) -> str:
    return value if isinstance(value, _Html) else _e(value)


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_cell(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    table = f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{table}</div>' if "numbers" in cls.split() else table


def _share(x: float) -> str:
    """A share of a size: a percentage below 1, a multiple from 1 on."""
    return f"{100 * x:.3g}%" if x < 1 else f"{x:.3g}x"


# ---------------------------------------------------------------------------
# Warnings, budgets and kinds beside the numbers


def warnings_of(summary: dict) -> list[str]:
    return [str(w) for w in summary.get("warnings") or []]


def _concerns(warning: str, keys: Sequence[str]) -> list[str]:
    """The run keys a warning is about: those it names before its verb ("KEY ran ...", "A, B and C produced
    identical ..."), or anywhere for a warning of another form; a key counts as a whole token only."""
    head = warning
    for verb in (" ran ", " produced identical "):
        if verb in warning:
            head = warning.split(verb, 1)[0]
            break
    return [k for k in keys if re.search(rf"(?<![\w@.\-]){re.escape(k)}(?![\w@.\-])", head)]


class _Warnings:
    """A page's warnings, numbered, and which runs each concerns (to mark them beside their numbers)."""

    def __init__(self, warnings: list[str], keys: Sequence[str], prefix: str = ""):
        self.warnings, self.prefix = warnings, prefix
        self.by_key: dict[str, list[int]] = {}
        for i, w in enumerate(warnings, 1):
            for key in _concerns(w, keys):
                self.by_key.setdefault(key, []).append(i)

    def box(self) -> str:
        """The list near the top of the page: every warning in full."""
        if not self.warnings:
            return ""
        n = len(self.warnings)
        items = "".join(f'<li id="{self.prefix}warning-{i}">{_e(w)}</li>' for i, w in enumerate(self.warnings, 1))
        return (f'<div class="warnings" role="alert"><b>&#9888; {n} warning{"s" if n > 1 else ""}: read '
                f'{"these" if n > 1 else "this"} before comparing the numbers below</b><ol>{items}</ol></div>')

    def marks(self, key: str) -> str:
        """Links to the warnings about `key`, to sit beside its numbers."""
        return "".join(f' <a class="wmark" href="#{self.prefix}warning-{i}" title="{_e(self.warnings[i - 1])}">'
                       f"&#9888;&nbsp;warning&nbsp;{i}</a>" for i in self.by_key.get(key, []))

    def about(self, keys: Sequence[str]) -> str:
        """The warnings about any of `keys`, in full (beside a budget's ranking)."""
        seen = sorted({i for k in keys for i in self.by_key.get(k, [])})
        return "".join(f'<p class="warn-here">&#9888; warning {i}: {_e(self.warnings[i - 1])}</p>' for i in seen)


def _sizes(summary: dict) -> tuple[int | None, int | None, int | None]:
    """(dense bytes, dense bytes of the rows touched, rows touched) from a replay trace or a train config."""
    where = summary.get("trace") if isinstance(summary.get("trace"), dict) else summary.get("config", {})
    touched = where.get("touched_rows")
    if isinstance(touched, list):
        touched = sum(touched)
    ints = [v if isinstance(v, int) and not isinstance(v, bool) else None
            for v in (where.get("dense_bytes"), where.get("touched_dense_bytes"), touched)]
    return ints[0], ints[1], ints[2]


def budget_shares(summary: dict) -> dict[str, dict]:
    """Budget label -> its config entry with `dense_share` and `touched_share` (worked out where missing)."""
    dense, touched_dense, _ = _sizes(summary)
    out = {}
    for entry in summary["config"].get("budgets", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int):
            continue
        entry = dict(entry)
        if entry.get("dense_share") is None and dense:
            entry["dense_share"] = entry["bytes"] / dense
        if entry.get("touched_share") is None and touched_dense:
            entry["touched_share"] = entry["bytes"] / touched_dense
        out[str(entry.get("label"))] = entry
    return out


def budget_line(summary: dict, label: str) -> str:
    """`Budget L: B bytes (M MiB) = x% of the dense size (D MiB) and y% of the dense size of the R rows
    touched (T MiB)`, as far as the summary knows them."""
    entry = budget_shares(summary).get(label)
    if entry is None:
        return f"<b>Budget {_e(label)}</b>" if label else "<b>One budget</b>"
    dense, touched_dense, touched_rows = _sizes(summary)
    text = f"<b>Budget {_e(label)}</b>: {entry['bytes']:,} bytes ({_size(entry['bytes'])})"
    shares = []
    if entry.get("dense_share") is not None:
        shares.append(f"{_share(entry['dense_share'])} of the dense size"
                      + (f" ({_size(dense)})" if dense else ""))
    if entry.get("touched_share") is not None:
        rows = f" {touched_rows:,}" if touched_rows is not None else ""
        shares.append(f"{_share(entry['touched_share'])} of the dense size of the{rows} rows touched"
                      + (f" ({_size(touched_dense)})" if touched_dense else ""))
        if entry["touched_share"] >= 1:
            shares[-1] += ": it holds every touched row, so policies can hardly differ"
    return text + (" = " + " and ".join(shares) if shares else "")


def _over_budget(stats: dict, budget_bytes: int | None, covers_all: bool) -> bool:
    """Whether the budgeted bytes (payload, or everything with --budget-covers all) peaked above the budget."""
    used = stats["total_bytes_peak"] if covers_all else stats["payload_bytes_peak"]
    return budget_bytes is not None and used > budget_bytes


def _tags(name: str, stats: dict, over: bool, short: bool = False, cache: bool = True) -> str:
    """What to know beside a policy's figures: over the budget, stores nothing, an offline oracle, collisions, a
    cache (unless `cache` is False: said once for the line), the dense reference (`short`: for a table)."""
    tags = []
    if over:
        tags.append('<span class="tag over">over the budget</span>')
    if stats.get("total_bytes_peak") == 0:
        tags.append('<span class="tag ref">stores nothing</span>')
    kind = policy_kind(name)
    if kind == "oracle":
        tags.append(f'<span class="tag oracle">{"offline oracle" if short else _e(ORACLE_NOTE)}</span>')
    if kind == "cache" and cache:
        tags.append(f'<span class="tag cache">{"cache: full backing copy" if short else _e(CACHE_NOTE)}</span>')
    if kind == "reference" and short:
        tags.append('<span class="tag ref">dense reference</span>')
    if stats.get("collision_share") or name == "hash":
        share = _pct(stats.get("collision_share") or 0.0)
        tags.append(f'<span class="tag collide">collisions {share}</span>' if short else
                    f'<span class="tag collide">collisions: {share} of lookups (counted as misses)</span>')
    return (" " + " ".join(tags)) if tags else ""


# ---------------------------------------------------------------------------
# The replay report's tables


def summary_table(results: ReplayResults, runs: list[Run], warns: _Warnings | None = None) -> str:
    dense = results.summary["trace"].get("dense_bytes") or 0
    covers_all = results.summary["config"].get("budget_covers") == "all"
    header = ["policy", "budget", "budget MiB", "total MiB", "total peak MiB", "payload MiB", "index MiB",
              "meta MiB", "% of dense", "fragmentation", "dim hit", "row hit", "chunk hit", "full hit",
              "collisions", "rows with chunks", "rows with none", "mapped pages", "rehashes", "mean probes", "notes"]
    rows = []
    for run in runs:
        s = results.summary["policies"][run.key]
        hist = s["dim_hist_final"]
        notes = _tags(run.policy, s, _over_budget(s, run.budget_bytes, covers_all), short=True).strip()
        rows.append([run.policy, run.budget, "" if run.budget_bytes is None else _mib(run.budget_bytes),
                     _mib(s["total_bytes_final"]), _mib(s["total_bytes_peak"]), _mib(s["payload_bytes_final"]),
                     _mib(s["index_bytes_final"]), _mib(s["meta_bytes_final"]),
                     _pct(s["total_bytes_final"] / dense) if dense else "", _pct(s["fragmentation_final"]),
                     _pct(s["dim_hit_rate"]), _pct(s["row_hit_rate"]), _pct(s["chunk_hit_rate"]),
                     _pct(s["full_hit_rate"]), _pct(s["collision_share"]),
                     f"{sum(hist[1:]):,}", f"{hist[0]:,}" if hist else "", f"{s['mapped_pages_final']:,}",
                     f"{s['rehashes']:,}", f"{s['mean_probe_length']:.2f}",
                     _Html(notes + (warns.marks(run.key) if warns else ""))])
    return _table(header, rows, "numbers")


def headline(results: ReplayResults, runs: list[Run], lay: _Layout, warns: _Warnings | None = None) -> str:
    """Per budget: its size, then the pruning policies from the highest dim hit rate down (ties: order given)
    with their total memory, the dense reference, and the caches apart; the warnings about that budget.

    A policy whose budgeted bytes (payload, or everything with --budget-covers all) peaked above the
    budget is marked, so a dense reference cannot pass for a winner.
    """
    stats = results.summary["policies"]
    covers_all = results.summary["config"].get("budget_covers") == "all"
    warns = warns or _Warnings([], [])
    blocks = []
    for budget in lay.budgets:
        mine = [r for r in runs if r.budget == budget]

        def figures(run: Run) -> str:
            s = stats[run.key]
            return (f"<b>{_e(run.policy)}</b> {_pct(s['dim_hit_rate'])} in {_size(s['total_bytes_peak'])}"
                    + _tags(run.policy, s, _over_budget(s, run.budget_bytes, covers_all), cache=False)
                    + warns.marks(run.key))

        def by_rate(kinds: tuple[str, ...]) -> list[Run]:
            return sorted((r for r in mine if policy_kind(r.policy) in kinds),
                          key=lambda r: -stats[r.key]["dim_hit_rate"])
        ranked, refs, caches = by_rate(("pruning", "oracle")), by_rate(("reference",)), by_rate(("cache",))
        lines = [f'<p class="budget-line">{budget_line(results.summary, budget)}</p>']
        if ranked:
            lines.append('<p class="rank"><span class="what">Pruning, by dim hit rate, with total memory (peak):'
                         "</span> " + " &middot; ".join(f"{i}. {figures(r)}" for i, r in enumerate(ranked, 1))
                         + "</p>")
        if refs:
            lines.append('<p class="rank ref"><span class="what">Dense reference (not ranked):</span> '
                         + " &middot; ".join(figures(r) for r in refs) + "</p>")
        if caches:
            lines.append(f'<p class="rank cache"><span class="what">Caches, ranked apart: each {_e(CACHE_NOTE)}:'
                         "</span> " + " &middot; ".join(f"{i}. {figures(r)}" for i, r in enumerate(caches, 1))
                         + "</p>")
        lines.append(warns.about([r.key for r in mine]))
        blocks.append('<div class="budget">' + "".join(lines) + "</div>")
    return '<div class="headline">' + "".join(blocks) + "</div>"


def replay_curves(summary: dict, runs: list[Run]) -> dict[str, list[CurvePoint]]:
    """Each policy's measured points: dim hit rate (%) against total memory (peak), one per budget."""
    curves: dict[str, list[CurvePoint]] = {}
    for run in runs:
        s = summary["policies"][run.key]
        curves.setdefault(run.policy, []).append(
            CurvePoint(float(s["total_bytes_peak"]), 100 * s["dim_hit_rate"], budget=run.budget))
    return curves


def equal_memory_table(raw: dict[str, list[CurvePoint]], value: str, gap: str, seeds: bool = False) -> str:
    """The equal-memory table: per memory point each policy's interpolated value, the best that is not a cache,
    and every other's gap to it (with `seeds`, tie or not by `paired_verdict`), then how the points were picked.

    `value` and `gap` are format specs of a value and of a difference.
    """
    curves = {name: make_curve(points) for name, points in raw.items()}
    rows, common = equal_memory_rows(curves)
    spanning = [n for n, c in curves.items() if len(c) >= 2]
    columns = [n for n in spanning if any(row.values[n] is not None for row in rows)]
    header = ["total memory (peak)", "best (caches excluded)"]
    suffix = {"cache": " (cache: needs a full backing copy)", "oracle": " (offline oracle)"}
    header += [name + suffix.get(policy_kind(name), "") for name in columns]
    body = []
    for row in rows:
        best = row.values.get(row.best) if row.best else None
        ties = []
        cells = []
        for name in columns:
            point = row.values[name]
            if point is None:
                cells.append("")
                continue
            if name == row.best:
                cells.append(_Html(f"<b>{point.value:{value}}</b> best"))
                continue
            text = f"{point.value:{value}}"
            if best is not None:
                text += f" ({point.value - best.value:+{gap}}"
                if seeds and policy_kind(name) != "cache":
                    verdict = paired_verdict(best.seeds, point.seeds)
                    if verdict.outcome == "tie":
                        ties.append(name)
                        text += ", <b>tie</b>"
                    elif verdict.outcome == "better":
                        text += f", below on {verdict.agree}/{verdict.seeds} seeds"
                text += ")"
            cells.append(_Html(text))
        best_cell = "" if row.best is None else _e(row.best)
        if ties:
            best_cell += " &mdash; tied with " + ", ".join(_e(t) for t in ties)
        if row.best is not None and policy_kind(row.best) == "oracle":
            online = [n for n in columns if row.values[n] is not None and policy_kind(n) == "pruning"]
            best_cell += " (offline oracle)"
            if online:
                best_cell += "; without oracles: " + _e(max(online, key=lambda n: row.values[n].value))
        body.append([_size(row.memory), _Html(best_cell), *cells])
    notes = []
    if not spanning:
        notes.append("No policy was measured at two memories (one budget?), so there is no curve to interpolate: "
                     "compare the policies per budget above.")
    elif common:
        notes.append(f"Compared at {len(rows)} total memor{'y' if len(rows) == 1 else 'ies'} spaced evenly on a log "
                     "scale across the range every policy below was measured over (from the largest of their "
                     "smallest memories to the smallest of their largest).")
    elif rows:
        notes.append("No memory lies within every policy's measured range, so the points are spaced evenly on a log "
                     "scale across each stretch of memory that two or more policies were measured over "
                     f"({OVERLAP_POINTS} per stretch); a blank means the policy was not measured around that "
                     "memory. Add budgets to make the ranges overlap.")
    else:
        notes.append("No two policies were measured over overlapping memory ranges, so none can be compared at equal "
                     "memory: add budgets to make the ranges overlap.")
    outside = [n for n in spanning if n not in columns]
    if rows and outside:
        notes.append(f"Not measured around these memories: {', '.join(outside)}.")
    singles = [f"{n} ({'; '.join(f'{p.budget}: {p.value:{value}} in {_size(p.memory)}' for p in c)})"
               for n, c in curves.items() if len(c) == 1]
    if singles:
        notes.append("Measured at one memory only, so not interpolated: " + ", ".join(singles) + ".")
    empty = [f"{n}@{p.budget}" if p.budget else n for n, pts in raw.items() for p in pts if p.memory <= 0]
    if empty:
        notes.append("Stored nothing (0 bytes), so not on a log scale: " + ", ".join(empty) + ".")
    note = ('<p class="note">' + " ".join(_e(n) for n in notes) + " Each policy's curve is linear in log(memory) "
            "between its measured points (total memory, peak), never extrapolated; where several budgets gave the "
            "same memory, the better value counts. Caches are shown but never best: their misses are served from a "
            "full copy elsewhere.</p>")
    return (_table(header, body, "numbers equal") if body else "") + note


def _plain(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _budgets_text(summary: dict) -> str:
    return "; ".join(
        f"{label} = {b['bytes']:,} bytes"
        + (f", {_share(b['dense_share'])} of dense" if b.get("dense_share") is not None else "")
        + (f", {_share(b['touched_share'])} of touched" if b.get("touched_share") is not None else "")
        for label, b in budget_shares(summary).items())


def config_tables(summary: dict) -> str:
    config = dict(summary["config"])
    config.pop("budgets", [])
    policies = config.pop("policies", [])
    knobs = [[k, _plain(v)] for k, v in config.items()]
    knobs.append(["policies", ", ".join(map(str, policies))])
    knobs.append(["budgets", _budgets_text(summary)])
    trace = dict(summary["trace"])
    tables = trace.pop("tables", []) or []
    stats = [[k, _plain(v)] for k, v in trace.items()]
    for key, what in (("dense_bytes", "dense size"), ("touched_dense_bytes", "dense size of the rows touched")):
        if isinstance(trace.get(key), int):
            stats.append([what, f"{_mib(trace[key])} MiB"])
    touched = trace.get("touched_rows_per_table")
    table_rows = [[t.get("name"), f"{t.get('rows', 0):,}",
                   f"{touched[i]:,}" if isinstance(touched, list) and i < len(touched) else "",
                   t.get("dim"), t.get("chunk"), t.get("dtype_bytes")]
                  for i, t in enumerate(tables) if isinstance(t, dict)]
    return ("<h2 id=\"config\">Configuration</h2>" + _table(["setting", "value"], knobs, "kv")
            + "<h2 id=\"trace\">Trace</h2>" + _table(["statistic", "value"], stats, "kv")
            + _table(["table", "rows", "rows touched", "dimension D", "chunk C", "bytes per value"], table_rows,
                     "numbers"))


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1500px;
 padding:0 16px;color:#222}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
.sub{color:#555;margin-top:0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px}th{background:#f4f4f4}
table.numbers td{text-align:right}table.numbers td:first-child,table.numbers td:nth-child(2){text-align:left}
table.numbers td:last-child{text-align:left}
.chart{margin:8px 0 24px;overflow-x:auto}.note{color:#555;font-size:13px;max-width:1000px}
nav a{margin-right:12px}
.warnings{background:#fff4d6;border:2px solid #e0a800;border-radius:4px;padding:8px 14px;margin:12px 0;
 max-width:1100px}.warnings ol{margin:6px 0 2px}
.warn-here{background:#fff4d6;border-left:4px solid #e0a800;padding:3px 8px;margin:4px 0;font-size:13px}
.wmark{color:#8a5a00;font-size:12px;text-decoration:none;white-space:nowrap}
.how{background:#f3f6fa;border:1px solid #c9d6e6;border-radius:4px;padding:6px 14px;font-size:13px;max-width:1100px}
.how li{margin:3px 0}
.budget{border-left:3px solid #9ab;padding:2px 10px;margin:10px 0}.budget p{margin:4px 0}
.rank .what{color:#555}.rank.cache{color:#444}
.tag{font-size:11px;border-radius:3px;padding:0 4px;white-space:nowrap}
.tag.over{background:#fde2e1;color:#8c1c13}.tag.oracle{background:#e6e0f5;color:#46307a}
.tag.cache{background:#e2ecf7;color:#1d4f80}.tag.collide{background:#f2ead9;color:#6b4e16}
.tag.ref{background:#eee;color:#444}.verdict{font-weight:600}
.scroll{overflow-x:auto}table.numbers td{white-space:nowrap}
"""

PAGE_SCRIPT = """
(function () {
  var specs = JSON.parse(document.getElementById("fiitedsim-specs").textContent);
  var options = JSON.parse(document.getElementById("fiitedsim-embed-options").textContent);
  Object.keys(specs).forEach(function (id) {
    var el = document.getElementById("chart-" + id);
    vegaEmbed(el, specs[id], options).then(function () { el.setAttribute("data-rendered", "1"); })
      .catch(function (err) { el.textContent = "chart failed to render: " + err; console.error(err); });
  });
})();
"""


def _page(title: str, body: list[str], specs: dict[str, dict],
          made_from: str = f"results format {RESULTS_FORMAT}") -> str:
    """The page shell: head with the inlined libraries once, `body`, then the chart specs and the embed script."""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{STYLE}</style>",
        (f"<script>/* Vega, Vega-Lite {alt.SCHEMA_VERSION} and vega-embed, bundled by vl-convert */\n"
         f"{vega_bundle()}\n</script>"),
        "</head>", "<body>", f"<h1>{_e(title)}</h1>",
        *body,
        (f'<p class="note">Made by fiitedsim {_e(__version__)} from {_e(made_from)}. '
         "Opens offline: the chart libraries and data are inside this file.</p>"),
        f'<script type="application/json" id="fiitedsim-specs">{_json_for_script(specs)}</script>',
        f'<script type="application/json" id="fiitedsim-embed-options">{_json_for_script(EMBED_OPTIONS)}</script>',
        f"<script>{PAGE_SCRIPT}</script>",
        "</body>", "</html>", "",
    ])


def _how_to_read(items: list[str]) -> str:
    return '<div class="how"><b>How to read this</b><ul>' + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>"


#: The replay report's "how to read this" note (HTML).
REPLAY_HOW = [
    "<b>Dim hit rate</b> = resident dims / requested dims over the whole run: the one rate comparable across "
    "policies that keep chunks (fiited, row-prune) and whole dimensions (uniform-dim, mde). A <b>hash</b> lookup "
    "whose bucket also serves another row is a collision and counts as a miss; its collision share is shown "
    "beside its rate.",
    "<b>Memory</b> is total memory at its peak: payload + hash index + per-row metadata (at small budgets index "
    "and metadata can exceed the payload). Charts put it on a log axis, with payload alone in the panel beside.",
    f"<b>Caches</b> ({', '.join(CACHE_POLICIES)}) are ranked apart: each {_e(CACHE_NOTE)}, so they need the dense "
    "table somewhere. A pruning policy's miss is information the model no longer has.",
    f"<b>mde</b> is an {_e(ORACLE_NOTE)}: it knows every row's lookup count in advance, which no online policy "
    "does; read it as an upper reference for static per-row sizing. <b>full</b> is the dense reference, above "
    "any budget below the dense size.",
    "<b>Budgets</b> are shown in bytes, as a share of the dense size and as a share of the dense size of the rows "
    "the trace touched: a budget at or above the touched size holds every row looked up, and policies cannot "
    "differ much.",
    "<b>At equal total memory</b> compares each policy's curve (linear in log memory between its measured "
    "points, never extrapolated) at common memory points: the fair comparison when policies spend a budget on "
    "different overheads.",
]


def _replay_sections(results: ReplayResults, prefix: str = "", h: str = "h2",
                     chart_ids: Sequence[str] = CHART_IDS) -> tuple[list[str], dict[str, dict]]:
    """The body and chart specs of one replay result; `prefix` keeps ids unique when a page holds several."""
    check_summary(results.summary)
    check_series(results)
    summary = results.summary
    runs = runs_of(summary)
    lay = _Layout(runs)
    warns = _Warnings(warnings_of(summary), [r.key for r in runs], prefix)
    specs = chart_specs(results, chart_ids, prefix)
    body = [
        warns.box(),
        f'<{h} id="{prefix}ranking">Ranking per budget</{h}>',
        headline(results, runs, lay, warns),
        f'<{h} id="{prefix}equal-memory">At equal total memory: dim hit rate (%)</{h}>',
        equal_memory_table(replay_curves(summary, runs), ".1f", ".1f"),
        f'<{h} id="{prefix}summary">Summary at the end of the run</{h}>',
        SUMMARY_NOTE,
        summary_table(results, runs, warns),
    ]
    for chart_id in chart_ids:
        body.append(f'<{h} id="{prefix}sec-{chart_id}">{_e(CHARTS[chart_id][0])}</{h}>')
        body.append(f'<div class="chart" id="chart-{prefix}{chart_id}" data-chart="{chart_id}"></div>')
    return body, specs


def render_report(results: ReplayResults) -> str:
    """The whole page as one string: deterministic (no dates, no random ids), offline, one copy of the libraries."""
    check_summary(results.summary)
    summary = results.summary
    runs = runs_of(summary)
    lay = _Layout(runs)
    trace = summary["trace"]
    name = Path(str(trace.get("path", "trace"))).name
    lookups = trace.get("lookups")
    dense, touched_dense, touched_rows = _sizes(summary)
    facts = [f"{lookups:,} lookups" if isinstance(lookups, int) else "",
             f"steps {trace.get('first_step')} to {trace.get('last_step')}",
             f"dense size {_size(dense)}" if dense is not None else "",
             (f"{touched_rows:,} rows touched, {_size(touched_dense)} dense"
              if touched_rows is not None and touched_dense is not None else ""),
             f"{len(lay.policies)} policies x {len(lay.budgets)} budget{'s' if lay.multi_budget else ''}"]
    sections, specs = _replay_sections(results)
    parts = [
        f'<p class="sub">{_e(", ".join(f for f in facts if f))}. Trace: <code>{_e(trace.get("path"))}</code></p>',
        sections[0],  # the warnings, first of all
        "<nav>" + '<a href="#ranking">Ranking</a><a href="#equal-memory">At equal memory</a>'
        + '<a href="#summary">Summary table</a>'
        + "".join(f'<a href="#sec-{i}">{_e(t)}</a>' for i, (t, _) in CHARTS.items())
        + '<a href="#config">Configuration</a><a href="#trace">Trace</a></nav>',
        _how_to_read(REPLAY_HOW),
        *sections[1:],
        config_tables(summary),
    ]
    return _page(f"fiitedsim report: {name}", parts, specs)


SUMMARY_NOTE = ('<p class="note">Memory is at the end of the run (peak where it says so); hit rates are over the whole '
                "run: dim hit = resident dims / requested dims (comparable across chunk- and dimension-granular "
                "policies), row hit = the row's first chunk was resident, chunk hit = resident chunks / requested "
                "chunks, full hit = all chunks of the row were resident; collisions = lookups whose hash bucket also "
                "served another row (misses), as a share of lookups. The budget is the payload budget of DESIGN.md "
                "3.3 (payload + index + metadata with --budget-covers all).</p>")
#: Charts drawn for each group of a sweep report (the rest would multiply the page size by the group count).
SWEEP_CHARTS = ("tradeoff", "hit_rates", "memory")


def seed_spread_section(title: str, seeds: list, runs: dict[str, list[dict]], anchor: str) -> str:
    """How a group's results spread over the seeds of its generated traces (a replay sweep's `generate`).

    `runs` maps policy@budget to its summaries, one per seed in `seeds` order. Per run: the dim hit rate's
    mean ± sd and per seed, the mean total peak memory, and, per budget, the paired verdict against the
    pruning policy with the best mean (the training report's rule, on dim hit rates: `paired_verdict`)."""
    def rates(key):
        return [s["dim_hit_rate"] for s in runs[key]]
    budgets: dict[str, list[str]] = {}
    for key in runs:
        budgets.setdefault(key.rpartition("@")[2] if "@" in key else "", []).append(key)
    rows = []
    for keys in budgets.values():
        ranked = [k for k in keys if policy_kind(k.partition("@")[0]) == "pruning"]
        lead = max(ranked, key=lambda k: sum(rates(k)) / len(seeds)) if ranked else None
        for key in keys:
            name = key.partition("@")[0]
            values = rates(key)
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
            if policy_kind(name) != "pruning" or lead is None:
                verdict = {"cache": "cache (not ranked)", "oracle": "offline oracle (not ranked)",
                           "reference": "dense reference"}.get(policy_kind(name), "")
            elif key == lead:
                verdict = "best mean"
            else:
                outcome = paired_verdict(rates(lead), values).outcome
                verdict = {"better": "below the best", "tie": "tie with the best"}.get(outcome, outcome)
            total = sum(s["total_bytes_peak"] for s in runs[key]) / len(seeds)
            rows.append([key, f"{100 * mean:.2f}%" + (f" ± {100 * sd:.2f}" if sd is not None else ""),
                         " ".join(f"{100 * v:.2f}" for v in values), _mib(total), verdict])
    seeds_text = ", ".join(str(s) for s in seeds)
    return (f'<h2 id="{anchor}">Spread over seeds: {_e(title)}</h2>'
            f'<p class="sub">generated traces of seeds {_e(seeds_text)}; a policy is below the best when the mean '
            "of its per-seed differences from the best exceeds their standard deviation and every seed agrees, "
            "else tied</p>"
            + _table(["policy@budget", "dim hit rate, mean ± sd", "per seed (%)", "total peak MiB (mean)",
                      "against the best pruning policy"], rows, "numbers"))


def render_sweep_report(groups: list[tuple[str, ReplayResults]],
                        spreads: Sequence[tuple[str, list, dict[str, list[dict]]]] = ()) -> str:
    """A sweep's page: per group of points that differ only in policy and budget, the replay report's warnings,
    ranking, equal-memory table, summary table and the tradeoff, hit-rate and memory charts; one copy of the
    libraries for all. `spreads` (title, seeds, runs) adds how groups that differ only in their generated
    trace's seed spread over those seeds (`seed_spread_section`)."""
    specs: dict[str, dict] = {}
    links = [(f"group-{i}", title) for i, (title, _) in enumerate(groups)]
    links += [(f"spread-{i}", f"spread: {title}") for i, (title, _, _) in enumerate(spreads)]
    body = [(f'<p class="sub">{sum(len(r.summary["policies"]) for _, r in groups)} points in {len(groups)} '
             f'group{"s" if len(groups) != 1 else ""} (same trace and knobs; policies and budgets within)</p>'),
            "<nav>" + "".join(f'<a href="#{a}">{_e(title)}</a>' for a, title in links) + "</nav>",
            _how_to_read(REPLAY_HOW)]
    body += [seed_spread_section(title, seeds, runs, f"spread-{i}") for i, (title, seeds, runs) in enumerate(spreads)]
    for i, (title, results) in enumerate(groups):
        sections, group_specs = _replay_sections(results, prefix=f"g{i}-", h="h3", chart_ids=SWEEP_CHARTS)
        body += [f'<h2 id="group-{i}">{_e(title)}</h2>',
                 f'<p class="sub">{_e(_budgets_text(results.summary))}</p>', *sections]
        specs.update(group_specs)
    return _page("fiitedsim sweep report", body, specs)


def write_sweep_report(target: str | Path, groups: list[tuple[str, ReplayResults]],
                       spreads: Sequence[tuple[str, list, dict[str, list[dict]]]] = ()) -> Path:
    """Render and write a sweep's page all-or-nothing to `target`."""
    page = render_sweep_report(groups, spreads)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(target)


# ---------------------------------------------------------------------------
# The training report (`fiitedsim train --report`): accuracy against memory


#: Chart ids of the training report, in page order.
TRAIN_CHART_IDS = ("accuracy_memory", "auc_steps")


def _seed_aucs(stats: dict) -> dict:
    """Seed -> that seed's AUC (finite ones only); a run without `per_seed` is one seed of its mean."""
    per_seed = stats.get("per_seed")
    if not isinstance(per_seed, list) or not per_seed:
        return {None: stats["auc"]} if stats.get("auc") is not None else {}
    return {e.get("seed"): e["auc"] for e in per_seed if isinstance(e, dict) and e.get("auc") is not None}


def common_seeds(summary: dict, runs: list[Run]) -> list:
    """The seeds every run has a finite AUC for, in the order trained: the pairs of every paired comparison."""
    each = [_seed_aucs(summary["policies"][r.key]) for r in runs]
    order = _order(s for aucs in each for s in aucs)
    return [s for s in order if all(s in aucs for aucs in each)]


def _paired(summary: dict, a: Run, b: Run, seeds: list) -> Paired:
    sa, sb = _seed_aucs(summary["policies"][a.key]), _seed_aucs(summary["policies"][b.key])
    return paired_verdict([sa[s] for s in seeds], [sb[s] for s in seeds])


def _pm(mean, std, digits: int = 4) -> str:
    if mean is None:
        return ""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def train_chart_specs(summary: dict, curve: pl.DataFrame) -> dict[str, dict]:
    """Mean AUC against total peak memory (log axis, ± one standard deviation over seeds) and against payload;
    mean AUC over training steps with a ± one standard deviation band, per budget."""
    runs = runs_of(summary)
    lay = _Layout(runs)
    points = []
    for run in runs:
        s = summary["policies"][run.key]
        auc, std = s.get("auc"), s.get("auc_std")
        points.append({"policy": run.policy, "budget": run.budget, "budget_bytes": run.budget_bytes or 0,
                       "kind": KINDS[policy_kind(run.policy)], "total_mib": _num(s["total_bytes_peak"] / MIB),
                       "payload_mib": _num(s["payload_bytes_peak"] / MIB), "auc": _num(auc),
                       "lo": _num(auc - std) if auc is not None and std is not None else None,
                       "hi": _num(auc + std) if auc is not None and std is not None else None,
                       "std": _num(std), "seeds": len(_seed_aucs(s))})
    for field in MEMORY_AXES:
        _label_points(points, field, "auc", f"label_{field}", True)
    tooltip = [alt.Tooltip("policy:N"), alt.Tooltip("kind:N"), alt.Tooltip("budget:N"),
               alt.Tooltip("total_mib:Q", title="total peak MiB", format=".3f"),
               alt.Tooltip("payload_mib:Q", title="payload peak MiB", format=".3f"),
               alt.Tooltip("auc:Q", title="AUC (mean)", format=".4f"),
               alt.Tooltip("std:Q", title="AUC std over seeds", format=".4f"), alt.Tooltip("seeds:Q")]
    y = ("auc", "AUC on the last 10% (mean over seeds)", alt.Scale(zero=False))
    tradeoff = _memory_panels(
        points, y, tooltip, lay, "AUC against memory: further up and further left is better",
        "mean over seeds, bars ± one standard deviation over seeds; one line per policy through its budgets, "
        "points labelled by budget (dashed: offline oracle)",
        spread=("lo", "hi") if any(p["lo"] is not None for p in points) else None)  # one seed: no bars
    steps = []
    if curve.height:
        grouped = curve.group_by(["policy", "budget", "step"], maintain_order=True).agg(
            pl.col("auc").mean().alias("mean"), pl.col("auc").std(ddof=1).alias("std"),
            pl.col("auc").count().alias("seeds"))
        rank_p = {p: i for i, p in enumerate(lay.policies)}
        rank_b = {b: i for i, b in enumerate(lay.budgets)}
        for r in sorted(grouped.iter_rows(named=True), key=lambda r: (rank_p.get(r["policy"], len(rank_p)),
                                                                      rank_b.get(r["budget"], len(rank_b)), r["step"])):
            mean, std = r["mean"], r["std"]
            steps.append({"policy": r["policy"], "budget": r["budget"], "step": r["step"], "auc": _num(mean),
                          "lo": _num(mean - std) if mean is not None and std is not None else None,
                          "hi": _num(mean + std) if mean is not None and std is not None else None,
                          "std": _num(std), "seeds": r["seeds"]})
    base = alt.Chart(alt.Data(values=steps)).encode(x=_step_x())
    y_title = "AUC on the last 10% (mean over seeds)"
    # a click on a policy in the legend shows its band alone (named: an automatic name would differ per render)
    pick = alt.selection_point(name="pick_policy", fields=["policy"], bind="legend")
    band = lay.faint(base.transform_filter("isValid(datum.lo)")).mark_area().encode(
        y=alt.Y("lo:Q", title=y_title, scale=alt.Scale(zero=False)), y2=alt.Y2("hi:Q"), fill=lay.fill_faint,
        opacity=alt.condition(pick, alt.value(0.07), alt.value(0.0)))
    line = base.mark_line(point=alt.OverlayMarkDef(size=18)).encode(
        y=alt.Y("auc:Q", title=y_title, scale=alt.Scale(zero=False)), color=lay.color,
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.2)),
        tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("budget:N"), alt.Tooltip("step:Q"),
                 alt.Tooltip("auc:Q", title="AUC (mean)", format=".4f"),
                 alt.Tooltip("std:Q", title="std over seeds", format=".4f"), alt.Tooltip("seeds:Q")])
    layers = [band] if any(r["lo"] is not None for r in steps) else []  # one seed: no band (an empty layer warns)
    over = alt.layer(*layers, line.add_params(pick)).properties(width=380 if lay.multi_budget else 560, height=280)
    over = lay.budget_column(over).properties(title=alt.Title(
        "AUC over training steps", subtitle="every evaluation; line: mean over seeds, band: ± one standard "
                                            "deviation over seeds (click a policy in the legend to see it alone)"))
    specs = {}
    for chart_id, chart in zip(TRAIN_CHART_IDS, (tradeoff, over)):
        specs[chart_id] = chart.configure_view(stroke="#ddd").configure_axis(labelFontSize=11).to_dict()
    return specs


#: The training report's "how to read this" note (HTML).
TRAIN_HOW = [
    "<b>AUC</b> is on the last 10% of the samples (time order), as a mean over the seeds ± their sample standard "
    "deviation. With synthetic data every seed draws its own data set, so that spread mostly says how the data "
    "sets differ, not how the policies do.",
    "<b>Ties</b> come from the <i>paired</i> differences instead: one seed means the same data and the same "
    "initial model for every policy, so for two policies at a budget take d = AUC(A) - AUC(B) per seed. A beats "
    "B when the mean of d exceeds the sample standard deviation of d <b>and</b> every seed's d is positive; "
    "otherwise the two <b>tie</b>. With one seed there is no spread: the report says so instead of calling ties.",
    "<b>Memory</b> is the peak total (payload + hash index + per-row metadata; the largest over the seeds) on a "
    "log axis, with payload alone beside it: at small budgets index and metadata can exceed the payload.",
    f"<b>mde</b> is an {_e(ORACLE_NOTE)}: its sizes come from the training split's lookup counts, known before "
    "training. <b>hash</b> shares buckets between rows; its collision share (lookups whose bucket also serves "
    "another row) is shown beside its figures. <b>full</b> is the dense reference, above any budget below the "
    "dense size, and is not ranked.",
    "<b>Budgets</b> are shown in bytes, as a share of the dense size and as a share of the dense size of the rows "
    "the training split touched: a budget at or above the touched size holds every row the model ever reads.",
    "<b>At equal total memory</b> compares each policy's curve of mean AUC against total peak memory (linear in "
    "log memory between its measured points, never extrapolated; each seed's AUC alike, so the tie rule applies "
    "there too).",
]


def train_ranking(summary: dict, runs: list[Run], lay: _Layout, warns: _Warnings, seeds: list) -> str:
    """Per budget: the policies from the highest mean AUC down, each compared with the first by the paired tie
    rule (`paired_verdict`), the dense reference against the first, caches apart; the budget's warnings."""
    stats = summary["policies"]
    covers_all = summary["config"].get("budget_covers") == "all"
    blocks = []

    def figures(run: Run) -> str:
        s = stats[run.key]
        return (f"<b>{_e(run.policy)}</b> {_pm(s.get('auc'), s.get('auc_std'))} in {_size(s['total_bytes_peak'])}"
                + _tags(run.policy, s, _over_budget(s, run.budget_bytes, covers_all), cache=False)
                + warns.marks(run.key))

    def against(leader: Run, run: Run) -> tuple[Paired, str]:
        v = _paired(summary, leader, run, seeds)
        if v.mean is None:
            return v, ""
        text = f"{-v.mean:+.4f} vs {_e(leader.policy)}"
        if v.outcome == "one seed":
            return v, f" ({text}; one seed)"
        text += f", paired sd {v.sd:.4f}"
        if v.outcome == "tie":
            return v, f' ({text}: <span class="verdict">tie</span>)'
        side = "below" if v.outcome == "better" else "above"
        return v, f' ({text}, {v.agree}/{v.seeds} seeds: <span class="verdict">{side}</span>)'

    for budget in lay.budgets:
        mine = [r for r in runs if r.budget == budget and stats[r.key].get("auc") is not None]

        def by_auc(kinds: tuple[str, ...]) -> list[Run]:
            return sorted((r for r in mine if policy_kind(r.policy) in kinds), key=lambda r: -stats[r.key]["auc"])
        ranked, refs, caches = by_auc(("pruning", "oracle")), by_auc(("reference",)), by_auc(("cache",))
        lines = [f'<p class="budget-line">{budget_line(summary, budget)}</p>']
        if ranked:
            leader, rest = ranked[0], ranked[1:]
            verdicts = [against(leader, r) for r in rest]
            items = [f"1. {figures(leader)}"] + [f"{i}. {figures(r)}{text}"
                                                   for i, (r, (_, text)) in enumerate(zip(rest, verdicts), 2)]
            tied = [r.policy for r, (v, _) in zip(rest, verdicts) if v.outcome == "tie"]
            beaten = [r.policy for r, (v, _) in zip(rest, verdicts) if v.outcome == "better"]
            if len(seeds) < 2 and rest:
                verdict = (f"Highest mean AUC: <b>{_e(leader.policy)}</b>. One seed: no spread, cannot call ties "
                           "(train with --seeds 0,1,2 to tell differences from noise).")
            elif tied:
                verdict = (f"No single winner: <b>{_e(leader.policy)}</b> ties with {_e(', '.join(tied))}"
                           + (f" (and beats {_e(', '.join(beaten))})" if beaten else "") + ".")
            elif rest:
                verdict = (f"Winner: <b>{_e(leader.policy)}</b>, ahead of every other policy on all "
                           f"{len(seeds)} seeds by more than the spread.")
            else:
                verdict = f"Only <b>{_e(leader.policy)}</b> at this budget."
            online = [r for r in rest if policy_kind(r.policy) == "pruning"]
            if policy_kind(leader.policy) == "oracle":
                verdict += f" {_e(leader.policy)} is an {_e(ORACLE_NOTE)}"
                if online and len(seeds) >= 2:  # the best a trainer can run as is
                    best = online[0]
                    ties = [r.policy for r in online[1:] if against(best, r)[0].outcome == "tie"]
                    verdict += (f"; without oracles: <b>{_e(best.policy)}</b>"
                                + (f", tied with {_e(', '.join(ties))}" if ties else "") + ".")
                elif online:
                    verdict += f"; without oracles: <b>{_e(online[0].policy)}</b>."
                else:
                    verdict += "."
            lines.append(f'<p class="rank"><span class="verdict">{verdict}</span></p>')
            lines.append('<p class="rank"><span class="what">By mean AUC ± sd over seeds, with total memory '
                         "(peak):</span> " + " &middot; ".join(items) + "</p>")
            for ref in refs:
                _, text = against(ref, leader)
                lines.append('<p class="rank ref"><span class="what">Dense reference (not ranked):</span> '
                             f"{figures(ref)}; {_e(leader.policy)} against it{text or ': no AUC'}</p>")
        else:
            lines += [f'<p class="rank ref"><span class="what">Dense reference:</span> {figures(r)}</p>' for r in refs]
        if caches:
            lines.append(f'<p class="rank cache"><span class="what">Caches, ranked apart: each {_e(CACHE_NOTE)}:'
                         "</span> " + " &middot; ".join(f"{i}. {figures(r)}" for i, r in enumerate(caches, 1))
                         + "</p>")
        lines.append(warns.about([r.key for r in runs if r.budget == budget]))
        blocks.append('<div class="budget">' + "".join(lines) + "</div>")
    return '<div class="headline">' + "".join(blocks) + "</div>"


def train_curves(summary: dict, runs: list[Run], seeds: list) -> dict[str, list[CurvePoint]]:
    """Each policy's measured points: AUC (mean over `seeds`, and per seed) against total peak memory."""
    curves: dict[str, list[CurvePoint]] = {}
    for run in runs:
        s = summary["policies"][run.key]
        aucs = _seed_aucs(s)
        if not seeds or s.get("auc") is None:
            continue
        per = tuple(aucs[x] for x in seeds)
        curves.setdefault(run.policy, []).append(
            CurvePoint(float(s["total_bytes_peak"]), sum(per) / len(per), per, run.budget))
    return curves


def train_table(summary: dict, runs: list[Run], warns: _Warnings) -> str:
    covers_all = summary["config"].get("budget_covers") == "all"
    order = _order(seed for run in runs for seed in _seed_aucs(summary["policies"][run.key]) if seed is not None)
    rows = []
    for run in runs:
        s = summary["policies"][run.key]
        aucs = _seed_aucs(s)
        per_seed = " / ".join(f"{aucs[seed]:.4f}" if seed in aucs else "-" for seed in order)
        notes = _tags(run.policy, s, _over_budget(s, run.budget_bytes, covers_all), short=True).strip()
        rows.append([run.policy, run.budget, _pm(s.get("auc"), s.get("auc_std")),
                     _pm(s.get("logloss"), s.get("logloss_std")), per_seed, _mib(s["payload_bytes_peak"]),
                     _mib(s["total_bytes_peak"]), _pct(s["dim_hit_rate"]) if "dim_hit_rate" in s else "",
                     _pct(s["chunk_hit_rate"]), _pct(s["collision_share"]) if "collision_share" in s else "",
                     f"{s['rounds']:,}" if isinstance(s.get("rounds"), int) else "", f"{s['samples']:,}",
                     f"{s['seconds']:.1f}", _Html(notes + warns.marks(run.key))])
    return _table(["policy", "budget", "AUC (mean ± sd)", "log loss (mean ± sd)",
                   f"AUC per seed ({' / '.join(map(str, order))})" if order else "AUC per seed",
                   "payload peak MiB", "total peak MiB", "dim hit", "chunk hit", "collisions", "rounds", "samples",
                   "seconds", "notes"], rows, "numbers")


def _train_sections(summary: dict, curve: pl.DataFrame, prefix: str = "", h: str = "h2") -> tuple[list[str], dict]:
    """The body and chart specs of one training result; `prefix` keeps ids unique when a page holds several."""
    runs = runs_of(summary)
    lay = _Layout(runs)
    specs = {f"{prefix}{k}": v for k, v in train_chart_specs(summary, curve).items()}
    warns = _Warnings(warnings_of(summary), [r.key for r in runs], prefix)
    seeds = common_seeds(summary, runs)
    teacher = summary.get("teacher_auc")
    config = summary["config"]
    facts = f"data {config.get('data')}, {config.get('samples', 0):,} samples"
    if isinstance(config.get("steps_run"), int):
        facts += f", {config['steps_run']:,} training steps, evaluated every {config.get('eval_every')}"
    named = [s for s in config.get("seeds") or [] if s is not None]
    facts += (f"; seeds {', '.join(map(str, named))}" if len(named) > 1
              else f"; one seed ({named[0] if named else config.get('seed', '?')}): no spread, cannot call ties")
    if teacher is not None:
        facts += f"; the planted teacher's AUC on the evaluation split is {teacher:.4f} (the best achievable)"
    _, touched_dense, touched_rows = _sizes(summary)
    touched = config.get("touched_rows")
    if touched_rows is not None:
        per_field = f" (per field: {', '.join(f'{n:,}' for n in touched)})" if isinstance(touched, list) else ""
        facts += (f". The training split touched {touched_rows:,} rows{per_field}"
                  + (f", {_size(touched_dense)} dense" if touched_dense is not None else ""))
    knobs = [[k, _plain(v)] for k, v in config.items() if k != "budgets"]
    knobs.append(["budgets", _budgets_text(summary)])
    one_seed = "" if len(seeds) > 1 else " One seed: no spread, cannot call ties; the gaps are one run's."
    body = [
        f'<p class="sub">{_e(facts)}.</p>',
        warns.box(),
        _how_to_read(TRAIN_HOW) if not prefix else "",
        f'<{h} id="{prefix}ranking">Ranking per budget, with ties</{h}>',
        train_ranking(summary, runs, lay, warns, seeds),
        f'<{h} id="{prefix}equal-memory">At equal total memory: AUC (mean over seeds)</{h}>',
        equal_memory_table(train_curves(summary, runs, seeds), ".4f", ".4f", seeds=len(seeds) > 1)
        + (f'<p class="note">{one_seed.strip()}</p>' if one_seed else ""),
        f'<{h} id="{prefix}summary">Accuracy and memory at the end of training</{h}>',
        ('<p class="note">AUC and log loss on the last 10% of the samples (time order): mean ± sample standard '
         "deviation over the seeds, and each seed's AUC; memory is the embedding storage of each policy as the "
         "replay engine accounts it (payload = mapped pages; total adds the hash index and the per-row metadata), "
         "the peak, the largest over the seeds; dim hit = resident dims / requested dims and chunk hit = resident "
         "chunks / requested chunks over all training lookups; collisions = lookups whose hash bucket also "
         "serves another row. Seconds are wall time of the training steps, summed over the seeds.</p>"),
        train_table(summary, runs, warns),
    ]
    for chart_id, title in zip(TRAIN_CHART_IDS, ("AUC against memory", "AUC over training steps")):
        body.append(f'<{h} id="{prefix}sec-{chart_id}">{_e(title)}</{h}>')
        body.append(f'<div class="chart" id="chart-{prefix}{chart_id}" data-chart="{chart_id}"></div>')
    body += [f'<{h} id="{prefix}config">Configuration</{h}>', _table(["setting", "value"], knobs, "kv")]
    return body, specs


def render_train_report(summary: dict, curve: pl.DataFrame) -> str:
    """The training report page: deterministic apart from the `seconds` column, offline, libraries inlined once."""
    body, specs = _train_sections(summary, curve)
    nav = ("<nav>" + "".join(f'<a href="#{i}">{t}</a>' for i, t in (
        ("ranking", "Ranking"), ("equal-memory", "At equal memory"), ("summary", "Table"),
        ("sec-accuracy_memory", "AUC against memory"), ("sec-auc_steps", "AUC over steps"),
        ("config", "Configuration"))) + "</nav>")
    return _page("fiitedsim training report", [body[0], body[1], nav, *body[2:]], specs, made_from="a training run")


def render_train_sweep_report(groups: list[tuple[str, dict, pl.DataFrame]]) -> str:
    """A data sweep's page: per group of points that differ only in policy and budget, the training report's
    sections (as `fiitedsim train --report` draws them for that group's runs); one copy of the libraries."""
    specs: dict[str, dict] = {}
    body = [(f'<p class="sub">{sum(len(g[1]["policies"]) for g in groups)} training points in {len(groups)} '
             f'group{"s" if len(groups) != 1 else ""} (same data and settings; policies and budgets within)</p>'),
            "<nav>" + "".join(f'<a href="#group-{i}">{_e(title)}</a>' for i, (title, _, _) in enumerate(groups))
            + "</nav>", _how_to_read(TRAIN_HOW)]
    for i, (title, summary, curve) in enumerate(groups):
        sections, group_specs = _train_sections(summary, curve, prefix=f"g{i}-", h="h3")
        body += [f'<h2 id="group-{i}">{_e(title)}</h2>', *sections]
        specs.update(group_specs)
    return _page("fiitedsim training sweep report", body, specs, made_from="a training sweep")


def write_train_sweep_report(target: str | Path, groups: list[tuple[str, dict, pl.DataFrame]]) -> Path:
    """Render and write a data sweep's page all-or-nothing to `target`."""
    page = render_train_sweep_report(groups)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(target)


def write_train_report(target: str | Path, outputs) -> Path:
    """Render a `fiitedsim train` result (`runner.TrainOutputs`) and write the page all-or-nothing."""
    target = check_report_path(target)
    page = render_train_report(outputs.summary, outputs.curve)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
