"""The replay report's charts (Vega-Lite specs through altair), with their data inlined: memory against hit
rate on log axes, memory parts, fragmentation, pages, per-window hit rates and row dimensions over the steps."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence

import altair as alt
import numpy as np
import polars as pl

from ..compare import KINDS, SummaryRun, policy_kind, policy_order, runs_of
from ..replay import ReplayResults

MIB = 2**20
#: Most snapshots drawn per policy in the time-series charts (keeps the page small for long runs).
MAX_WINDOWS = 200
#: Most snapshots per policy in the stacked row-dimension chart (it has K series per policy).
MAX_DIM_WINDOWS = 50


HIT_RATES = {
    "dim hit rate": ("dim_hits", "dims_requested", "dim_hit_rate"),
    "row hit rate": ("row_hits", "lookups", "row_hit_rate"),
    "chunk hit rate": ("chunk_hits", "chunks_requested", "chunk_hit_rate"),
    "full hit rate": ("full_hits", "lookups", "full_hit_rate"),
}
MEMORY_PARTS = {"payload": "payload_bytes", "index": "index_bytes", "metadata": "meta_bytes"}
#: vega-embed options: SVG output (crisp, searchable), export buttons but no link to the online editor.


CHART_IDS = ("tradeoff", "memory", "fragmentation", "pages", "hit_rates", "dims_final", "dims_over_time")


# ---------------------------------------------------------------------------
# Loading and checking a results folder


def _thin(frame: pl.DataFrame, limit: int) -> pl.DataFrame:
    """At most `limit` evenly spaced rows, first and last included."""
    if frame.height <= limit:
        return frame
    return frame[np.unique(np.linspace(0, frame.height - 1, limit).round().astype(np.int64)).tolist()]


def num(x, digits: int = 6):
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


def _series_rows(results: ReplayResults, runs: list[SummaryRun], limit: int, make) -> list[dict]:
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
            v = num(row[column] / scale if row[column] is not None else None)
            if v is not None:
                out.append({**{k: row[k] for k in keep}, "what": label, value_name: v})
    return out


# ---------------------------------------------------------------------------
# Charts


class ChartLayout:
    """Shared colours and facets so every chart reads the same way."""

    def __init__(self, runs: list[SummaryRun]):
        self.policies = policy_order(r.policy for r in runs)
        budget_bytes = {r.budget: r.budget_bytes for r in runs}
        # budgets ascending by bytes where known, otherwise in the order given
        self.budgets = sorted(policy_order(r.budget for r in runs),
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
        dashes = {"online": [1, 0], "sized": [6, 3], "cache": [2, 2], "reference": [1, 0]}
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


def step_x() -> alt.X:
    return alt.X("step:Q", title="training step", axis=alt.Axis(format="d"))


#: The two memory axes of the trade-off charts: the left panel total memory, the right one payload only.
MEMORY_AXES = {
    "total_mib": "total memory, peak (MiB, log scale): payload + index + metadata",
    "payload_mib": "payload only, peak (MiB, log scale)",
}


def label_points(rows: list[dict], field: str, value: str, label_key: str, multi_budget: bool) -> None:
    """Set `label_key` of each row: its budget (its policy with one budget); budgets that land on the same
    point (a dense policy, a static size that a larger budget does not change) share one label."""
    by_point: dict[tuple, list[dict]] = {}
    for row in rows:
        by_point.setdefault((row["policy"], row[field], row[value]), []).append(row)
    for same in by_point.values():
        same[0][label_key] = ", ".join(r["budget"] if multi_budget else r["policy"] for r in same)
        for row in same[1:]:
            row[label_key] = ""


def memory_panels(rows: list[dict], y: tuple[str, str, alt.Scale], tooltip: list, lay: ChartLayout, title: str,
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


def chart_tradeoff(results: ReplayResults, runs: list[SummaryRun], lay: ChartLayout):
    """Dim hit rate against total memory (peak, log axis) and against payload, one line per policy."""
    rows = []
    for run in runs:
        s = results.summary["policies"][run.key]
        rows.append({"policy": run.policy, "budget": run.budget, "budget_bytes": run.budget_bytes or 0,
                     "kind": KINDS[policy_kind(run.policy)],
                     "total_mib": num(s["total_bytes_peak"] / MIB), "payload_mib": num(s["payload_bytes_peak"] / MIB),
                     "rate": num(100 * s["dim_hit_rate"], 4),
                     "collisions": num(100 * s["collision_share"], 4)})
    for field in MEMORY_AXES:
        label_points(rows, field, "rate", f"label_{field}", lay.multi_budget)
    tooltip = [alt.Tooltip("policy:N"), alt.Tooltip("kind:N"), alt.Tooltip("budget:N"),
               alt.Tooltip("total_mib:Q", title="total MiB", format=".3f"),
               alt.Tooltip("payload_mib:Q", title="payload MiB", format=".3f"),
               alt.Tooltip("rate:Q", title="dim hit rate %", format=".2f"),
               alt.Tooltip("collisions:Q", title="collisions % of lookups", format=".2f")]
    y = ("rate", "dim hit rate over the run (%)", alt.Scale(domain=[0, 100]))
    return memory_panels(
        rows, y, tooltip, lay, "Dim hit rate against memory: further up and further left is better",
        "resident dims / requested dims; one line per policy through its budgets, points labelled by budget "
        "(dashed: sized before training; dotted: cache, which needs a full backing copy)" if lay.multi_budget else
        "resident dims / requested dims; one point per policy")


def chart_memory(results: ReplayResults, runs: list[SummaryRun], lay: ChartLayout):
    wide = _series_rows(results, runs, MAX_WINDOWS, lambda f: f.select("step", *MEMORY_PARTS.values()))
    rows = _long(wide, ("policy", "budget", "step"), MEMORY_PARTS, "mib", scale=MIB)
    chart = alt.Chart(alt.Data(values=rows)).mark_area().encode(
        x=step_x(),
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
    rows = [{**r, column: num(r[column])} for r in
            _series_rows(results, runs, MAX_WINDOWS, lambda f: f.select("step", column))]
    windows = max((results.series[r.key].height for r in runs), default=0)
    chart = alt.Chart(alt.Data(values=rows)).mark_line(point=windows <= 30).encode(
        x=step_x(), y=alt.Y(f"{column}:Q", title=y_title, axis=alt.Axis(format=fmt)), color=lay.color,
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
        x=step_x(), y=alt.Y("rate:Q", title="hit rate in the window (%)", scale=alt.Scale(domain=[0, 100])),
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
                             "share": num(100 * count / holding if holding else 0.0, 4)})
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
        x=step_x(), y=alt.Y("rows:Q", title="rows holding chunks", stack="zero"),
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
    lay = ChartLayout(runs)
    specs = {}
    for chart_id in chart_ids:
        chart = CHARTS[chart_id][1](results, runs, lay).configure_view(stroke="#ddd").configure_axis(labelFontSize=11)
        specs[f"{prefix}{chart_id}"] = chart.to_dict()
    return specs


# ---------------------------------------------------------------------------
# The page
