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
"""
from __future__ import annotations

import functools
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import numpy as np
import polars as pl

from . import __version__
from .atomic import atomic_path, check_writable
from .errors import InputError
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
    "full_hit_rate", "rehashes", "mean_probe_length", "dim_hist_final",
)
#: Time-series columns the report reads besides dim_0 .. dim_K.
NEEDED_SERIES_COLUMNS = (
    "step", "lookups", "row_hits", "chunk_hits", "chunks_requested", "full_hits", "payload_bytes", "index_bytes",
    "meta_bytes", "total_bytes", "mapped_pages", "fragmentation",
)
#: The three hit rates: label -> (hits counter, requests counter, summary key).
HIT_RATES = {
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


#: summary.json values by kind (policies.base.SUMMARY_KEYS): shares in [0, 1], other non-negative numbers; every
#: other key of the contract is a non-negative integer count or byte size.
_SHARE_KEYS = {"row_hit_rate", "chunk_hit_rate", "full_hit_rate", "fragmentation_final", "index_load_factor_final"}
_NUMBER_KEYS = {"mean_probe_length"}
_TRACE_INT_KEYS = {"lookups", "importance_records", "dense_bytes"}
#: Keys of the config and trace sections every results folder has had since format 1, and the report reads.
_REQUIRED = {"config": ("budgets", "policies"), "trace": ("path", "lookups", "dense_bytes")}


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
            and (b.get("bytes") is None or (_is_int(b["bytes"]) and b["bytes"] >= 0)) for b in value)
        return None if ok else f"is {_shown(value)}, not a list of {{\"label\", \"bytes\"}} budgets"
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
    return None


def check_series(results: ReplayResults) -> None:
    for key in results.summary["policies"]:
        frame = results.series.get(key)
        columns = [] if frame is None else frame.columns
        missing = [c for c in NEEDED_SERIES_COLUMNS if c not in columns]
        if missing or not any(c.startswith("dim_") for c in columns) or frame.height == 0:
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


def chart_tradeoff(results: ReplayResults, runs: list[Run], lay: _Layout):
    rows = []
    for run in runs:
        s = results.summary["policies"][run.key]
        for label, (_, _, key) in HIT_RATES.items():
            rows.append({"policy": run.policy, "budget": run.budget, "budget_bytes": run.budget_bytes or 0,
                         "what": label, "total_mib": _num(s["total_bytes_final"] / MIB),
                         "rate": _num(100 * s[key], 4),
                         "label": run.budget if lay.multi_budget else run.policy})
    # budgets that land on the same point (a dense policy, a budget too small for any row) share one label
    by_point: dict[tuple, list[dict]] = {}
    for row in rows:
        by_point.setdefault((row["policy"], row["what"], row["total_mib"], row["rate"]), []).append(row)
    for same in by_point.values():
        same[0]["label"] = ", ".join(r["label"] for r in same)
        for row in same[1:]:
            row["label"] = ""
    base = alt.Chart(alt.Data(values=rows)).encode(
        x=alt.X("total_mib:Q", title="total memory at the end (MiB)"),
        y=alt.Y("rate:Q", title="hit rate over the whole run (%)", scale=alt.Scale(domain=[0, 100])),
        color=lay.color)
    tooltip = [alt.Tooltip("policy:N"), alt.Tooltip("budget:N"), alt.Tooltip("total_mib:Q", title="MiB", format=".2f"),
               alt.Tooltip("rate:Q", title="hit rate %", format=".2f")]
    line = base.mark_line().encode(order="budget_bytes:Q", detail="policy:N")
    points = base.mark_point(filled=True, size=60).encode(tooltip=tooltip)
    labels = base.mark_text(align="left", dx=6, dy=-6, fontSize=10).encode(text="label:N")
    layered = alt.layer(line, points, labels).properties(width=260, height=220)
    return layered.facet(column=alt.Column("what:N", title=None, sort=list(HIT_RATES))).properties(
        title=alt.Title("Hit rate against memory: further up and further left is better",
                        subtitle="one line per policy through its budgets (points labelled by budget)"
                                 if lay.multi_budget else "one point per policy"))


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
    return lay.grid(chart).properties(title=alt.Title(
        "Memory over steps: payload, hash index and policy metadata",
        subtitle="stacked; the top edge is the total at each snapshot"))


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
    ).properties(width=260, height=180)
    facet = {"column": alt.Column("what:N", title=None, sort=list(HIT_RATES))}
    if lay.multi_budget:
        facet["row"] = alt.Row("budget:N", title="budget", sort=lay.budgets)
    return chart.facet(**facet).properties(title=alt.Title(
        "Hit rates per window over steps",
        subtitle="each point is the rate within one window: (hits at its end - hits at its start) / "
                 "(requests at its end - requests at its start), from the cumulative counters"))


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
    "tradeoff": ("Hit rate against memory", chart_tradeoff),
    "memory": ("Memory over steps", chart_memory),
    "fragmentation": ("Fragmentation over steps", chart_fragmentation),
    "pages": ("Mapped pages over steps", chart_pages),
    "hit_rates": ("Hit rates per window", chart_hit_rates),
    "dims_final": ("Row dimensions at the end", chart_dims_final),
    "dims_over_time": ("Row dimensions over steps", chart_dims_over_time),
}
assert tuple(CHARTS) == CHART_IDS


def chart_specs(results: ReplayResults) -> dict[str, dict]:
    """Vega-Lite specs by chart id, in page order."""
    runs = runs_of(results.summary)
    lay = _Layout(runs)
    specs = {}
    for chart_id, (_, make) in CHARTS.items():
        chart = make(results, runs, lay).configure_view(stroke="#ddd").configure_axis(labelFontSize=11)
        specs[chart_id] = chart.to_dict()
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


def _pct(x) -> str:
    return f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_table(results: ReplayResults, runs: list[Run]) -> str:
    dense = results.summary["trace"].get("dense_bytes") or 0
    header = ["policy", "budget", "budget MiB", "total MiB", "total peak MiB", "payload MiB", "index MiB",
              "meta MiB", "% of dense", "fragmentation", "row hit", "chunk hit", "full hit", "rows with chunks",
              "rows with none", "mapped pages", "rehashes", "mean probes"]
    rows = []
    for run in runs:
        s = results.summary["policies"][run.key]
        hist = s["dim_hist_final"]
        rows.append([run.policy, run.budget, "" if run.budget_bytes is None else _mib(run.budget_bytes),
                     _mib(s["total_bytes_final"]), _mib(s["total_bytes_peak"]), _mib(s["payload_bytes_final"]),
                     _mib(s["index_bytes_final"]), _mib(s["meta_bytes_final"]),
                     _pct(s["total_bytes_final"] / dense) if dense else "", _pct(s["fragmentation_final"]),
                     _pct(s["row_hit_rate"]), _pct(s["chunk_hit_rate"]), _pct(s["full_hit_rate"]),
                     f"{sum(hist[1:]):,}", f"{hist[0]:,}" if hist else "", f"{s['mapped_pages_final']:,}",
                     f"{s['rehashes']:,}", f"{s['mean_probe_length']:.2f}"])
    return _table(header, rows, "numbers")


def headline(results: ReplayResults, runs: list[Run], lay: _Layout) -> str:
    """Per budget, the policies from the highest chunk hit rate down, with their memory (ties: order given).

    A policy whose budgeted bytes (payload, or everything with --budget-covers all) ended above the
    budget is marked, so a dense reference cannot pass for a winner.
    """
    stats = results.summary["policies"]
    covers_all = results.summary["config"].get("budget_covers") == "all"
    items = []
    for budget in lay.budgets:
        mine = sorted((r for r in runs if r.budget == budget), key=lambda r: -stats[r.key]["chunk_hit_rate"])
        parts = []
        for run in mine:
            s = stats[run.key]
            used = s["total_bytes_peak"] if covers_all else s["payload_bytes_peak"]
            over = " (over the budget)" if run.budget_bytes is not None and used > run.budget_bytes else ""
            parts.append(f"<b>{_e(run.policy)}</b> {_pct(s['chunk_hit_rate'])} in "
                         f"{_mib(s['total_bytes_final'])} MiB{over}")
        where = (f"At budget <b>{_e(budget)}</b>"
                 + (f" ({_mib(mine[0].budget_bytes)} MiB)" if mine[0].budget_bytes is not None else "")
                 + ", chunk hit rate and total memory: ") if budget else "Chunk hit rate and total memory: "
        items.append(f"<li>{where}{' &middot; '.join(parts)}</li>")
    return "<ul class=\"headline\">" + "".join(items) + "</ul>"


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


def config_tables(summary: dict) -> str:
    config = dict(summary["config"])
    budgets = config.pop("budgets", [])
    policies = config.pop("policies", [])
    knobs = [[k, _plain(v)] for k, v in config.items()]
    knobs.append(["policies", ", ".join(map(str, policies))])
    knobs.append(["budgets", ", ".join(f"{b.get('label')} = {b.get('bytes'):,} bytes" if isinstance(b.get("bytes"), int)
                                       else str(b.get("label")) for b in budgets if isinstance(b, dict))])
    trace = dict(summary["trace"])
    tables = trace.pop("tables", []) or []
    stats = [[k, _plain(v)] for k, v in trace.items()]
    if isinstance(trace.get("dense_bytes"), int):
        stats.append(["dense size", f"{_mib(trace['dense_bytes'])} MiB"])
    table_rows = [[t.get("name"), f"{t.get('rows', 0):,}", t.get("dim"), t.get("chunk"), t.get("dtype_bytes")]
                  for t in tables if isinstance(t, dict)]
    return ("<h2 id=\"config\">Configuration</h2>" + _table(["setting", "value"], knobs, "kv")
            + "<h2 id=\"trace\">Trace</h2>" + _table(["statistic", "value"], stats, "kv")
            + _table(["table", "rows", "dimension D", "chunk C", "bytes per value"], table_rows, "numbers"))


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1500px;
 padding:0 16px;color:#222}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:32px;border-bottom:1px solid #ddd}
.sub{color:#555;margin-top:0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px}th{background:#f4f4f4}
table.numbers td{text-align:right}table.numbers td:first-child,table.numbers td:nth-child(2){text-align:left}
.chart{margin:8px 0 24px;overflow-x:auto}.note{color:#555;font-size:13px;max-width:900px}
nav a{margin-right:12px}
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


def render_report(results: ReplayResults) -> str:
    """The whole page as one string: deterministic (no dates, no random ids), offline, one copy of the libraries."""
    check_summary(results.summary)
    check_series(results)
    summary = results.summary
    runs = runs_of(summary)
    lay = _Layout(runs)
    specs = chart_specs(results)
    trace = summary["trace"]
    name = Path(str(trace.get("path", "trace"))).name
    lookups = trace.get("lookups")
    facts = [f"{lookups:,} lookups" if isinstance(lookups, int) else "",
             f"steps {trace.get('first_step')} to {trace.get('last_step')}",
             f"dense size {_mib(trace['dense_bytes'])} MiB" if isinstance(trace.get("dense_bytes"), int) else "",
             f"{len(lay.policies)} policies x {len(lay.budgets)} budget{'s' if lay.multi_budget else ''}"]
    parts = [
        f'<p class="sub">{_e(", ".join(f for f in facts if f))}. Trace: <code>{_e(trace.get("path"))}</code></p>',
        "<nav>" + "".join(f'<a href="#sec-{i}">{_e(t)}</a>' for i, (t, _) in CHARTS.items())
        + '<a href="#summary">Summary table</a><a href="#config">Configuration</a><a href="#trace">Trace</a></nav>',
        headline(results, runs, lay),
        '<h2 id="summary">Summary at the end of the run</h2>',
        SUMMARY_NOTE,
        summary_table(results, runs),
    ]
    for chart_id, (title, _) in CHARTS.items():
        parts.append(f'<h2 id="sec-{chart_id}">{_e(title)}</h2>')
        parts.append(f'<div class="chart" id="chart-{chart_id}" data-chart="{chart_id}"></div>')
    parts.append(config_tables(summary))
    return _page(f"fiitedsim report: {name}", parts, specs)


SUMMARY_NOTE = ('<p class="note">Memory is at the end of the run (peak where it says so); hit rates are over the whole '
                "run: row hit = the row's first chunk was resident, chunk hit = resident chunks / requested chunks, "
                "full hit = all chunks of the row were resident. The budget is the payload budget of DESIGN.md 3.3 "
                "(payload + index + metadata with --budget-covers all).</p>")
#: Charts drawn for each group of a sweep report (the rest would multiply the page size by the group count).
SWEEP_CHARTS = ("tradeoff", "hit_rates", "memory")


def render_sweep_report(groups: list[tuple[str, ReplayResults]]) -> str:
    """A sweep's page: per group of points that differ only in policy and budget, the replay report's ranking,
    summary table and the tradeoff, hit-rate and memory charts; one copy of the libraries for all."""
    specs: dict[str, dict] = {}
    body = [(f'<p class="sub">{sum(len(r.summary["policies"]) for _, r in groups)} points in {len(groups)} '
             f'group{"s" if len(groups) != 1 else ""} (same trace and knobs; policies and budgets within)</p>'),
            "<nav>" + "".join(f'<a href="#group-{i}">{_e(title)}</a>' for i, (title, _) in enumerate(groups))
            + "</nav>", SUMMARY_NOTE]
    for i, (title, results) in enumerate(groups):
        check_summary(results.summary)
        check_series(results)
        runs = runs_of(results.summary)
        lay = _Layout(runs)
        body += [f'<h2 id="group-{i}">{_e(title)}</h2>', headline(results, runs, lay), summary_table(results, runs)]
        for chart_id in SWEEP_CHARTS:
            chart = CHARTS[chart_id][1](results, runs, lay)
            specs[f"g{i}-{chart_id}"] = chart.configure_view(stroke="#ddd").configure_axis(labelFontSize=11).to_dict()
            body.append(f'<div class="chart" id="chart-g{i}-{chart_id}" data-chart="{chart_id}"></div>')
    return _page("fiitedsim sweep report", body, specs)


def write_sweep_report(target: str | Path, groups: list[tuple[str, ReplayResults]]) -> Path:
    """Render and write a sweep's page all-or-nothing to `target`."""
    page = render_sweep_report(groups)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(target)


# ---------------------------------------------------------------------------
# The training report (`fiitedsim train --report`): accuracy against memory


#: Chart ids of the training report, in page order.
TRAIN_CHART_IDS = ("accuracy_memory", "auc_steps")


def train_chart_specs(summary: dict, curve: pl.DataFrame) -> dict[str, dict]:
    """AUC against peak payload across budgets per policy; AUC over training steps per run."""
    runs = runs_of(summary)
    lay = _Layout(runs)
    points = []
    for run in runs:
        s = summary["policies"][run.key]
        points.append({"policy": run.policy, "budget": run.budget, "budget_bytes": run.budget_bytes or 0,
                       "payload_mib": _num(s["payload_bytes_peak"] / MIB), "auc": _num(s["auc"]),
                       "label": run.budget})
    base = alt.Chart(alt.Data(values=points)).encode(
        x=alt.X("payload_mib:Q", title="peak embedding payload (MiB)"),
        y=alt.Y("auc:Q", title="AUC on the last 10%", scale=alt.Scale(zero=False)), color=lay.color)
    tooltip = [alt.Tooltip("policy:N"), alt.Tooltip("budget:N"),
               alt.Tooltip("payload_mib:Q", title="payload MiB", format=".2f"), alt.Tooltip("auc:Q", format=".4f")]
    tradeoff = alt.layer(
        base.mark_line().encode(order="budget_bytes:Q", detail="policy:N"),
        base.mark_point(filled=True, size=60).encode(tooltip=tooltip),
        base.mark_text(align="left", dx=6, dy=-6, fontSize=10).encode(text="label:N"),
    ).properties(width=520, height=320, title=alt.Title(
        "AUC against memory: further up and further left is better",
        subtitle="one line per policy through its budgets (points labelled by budget)"))
    steps = [{"policy": r["policy"], "budget": r["budget"], "step": r["step"], "auc": _num(r["auc"])}
             for r in curve.iter_rows(named=True)]
    over = alt.Chart(alt.Data(values=steps)).mark_line(point=True).encode(
        x=_step_x(), y=alt.Y("auc:Q", title="AUC on the last 10%", scale=alt.Scale(zero=False)), color=lay.color,
        tooltip=[alt.Tooltip("policy:N"), alt.Tooltip("budget:N"), alt.Tooltip("step:Q"),
                 alt.Tooltip("auc:Q", format=".4f")]).properties(width=300 if lay.multi_budget else 520, height=260)
    over = lay.budget_column(over).properties(title=alt.Title("AUC over training steps"))
    specs = {}
    for chart_id, chart in zip(TRAIN_CHART_IDS, (tradeoff, over)):
        specs[chart_id] = chart.configure_view(stroke="#ddd").configure_axis(labelFontSize=11).to_dict()
    return specs


def _train_sections(summary: dict, curve: pl.DataFrame, prefix: str = "", h: str = "h2") -> tuple[list[str], dict]:
    """The body and chart specs of one training result; `prefix` keeps ids unique when a page holds several."""
    runs = runs_of(summary)
    specs = {f"{prefix}{k}": v for k, v in train_chart_specs(summary, curve).items()}
    teacher = summary.get("teacher_auc")
    config = summary["config"]
    rows = []
    for run in runs:
        s = summary["policies"][run.key]
        rows.append([run.policy, run.budget, "" if s["auc"] is None else f"{s['auc']:.4f}",
                     "" if s["logloss"] is None else f"{s['logloss']:.4f}", _mib(s["payload_bytes_peak"]),
                     _mib(s["total_bytes_peak"]), _pct(s["chunk_hit_rate"]), f"{s['samples']:,}",
                     f"{s['seconds']:.1f}"])
    facts = f"data {config.get('data')}, {config.get('samples', 0):,} samples"
    if teacher is not None:
        facts += f"; the planted teacher's AUC on the evaluation split is {teacher:.4f} (the best achievable)"
    knobs = [[k, _plain(v)] for k, v in config.items()]
    body = [
        f'<p class="sub">{_e(facts)}.</p>',
        f'<{h} id="{prefix}summary">Accuracy and memory at the end of training</{h}>',
        ('<p class="note">AUC and log loss on the last 10% of the samples (time order); memory is the embedding '
         "storage of each policy as the replay engine accounts it (payload = mapped pages; total adds the hash "
         "index and the per-row metadata); chunk hit = resident chunks / requested chunks over all training "
         "lookups. Seconds are wall time of the training steps.</p>"),
        _table(["policy", "budget", "AUC", "log loss", "payload peak MiB", "total peak MiB", "chunk hit",
                "samples", "seconds"], rows, "numbers"),
    ]
    for chart_id, title in zip(TRAIN_CHART_IDS, ("AUC against memory", "AUC over training steps")):
        body.append(f'<{h} id="{prefix}sec-{chart_id}">{_e(title)}</{h}>')
        body.append(f'<div class="chart" id="chart-{prefix}{chart_id}" data-chart="{chart_id}"></div>')
    body += [f'<{h} id="{prefix}config">Configuration</{h}>', _table(["setting", "value"], knobs, "kv")]
    return body, specs


def render_train_report(summary: dict, curve: pl.DataFrame) -> str:
    """The training report page: deterministic apart from the `seconds` column, offline, libraries inlined once."""
    body, specs = _train_sections(summary, curve)
    return _page("fiitedsim training report", body, specs, made_from="a training run")


def render_train_sweep_report(groups: list[tuple[str, dict, pl.DataFrame]]) -> str:
    """A data sweep's page: per group of points that differ only in policy and budget, the training report's
    sections (as `fiitedsim train --report` draws them for that group's runs); one copy of the libraries."""
    specs: dict[str, dict] = {}
    body = [(f'<p class="sub">{sum(len(g[1]["policies"]) for g in groups)} training points in {len(groups)} '
             f'group{"s" if len(groups) != 1 else ""} (same data and settings; policies and budgets within)</p>'),
            "<nav>" + "".join(f'<a href="#group-{i}">{_e(title)}</a>' for i, (title, _, _) in enumerate(groups))
            + "</nav>"]
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
