"""The sweep reports (`fiitedsim sweep`'s OUT/report.html): one replay-like (or training-like) section per group
of points that differ only in policy and budget (and seed), and the spread over generated traces' seeds."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import altair as alt
import polars as pl

from ..atomic import atomic_path
from ..compare import RANKED, paired_verdict, policy_kind, policy_order
from ..plan import parse_run_key, run_key
from ..replay import ReplayResults
from .charts import MIB, num
from .page import budgets_text, esc, how_to_read, html_table, mib_text, render_page
from .replay import REPLAY_HOW, replay_sections
from .train import TRAIN_HOW, train_sections

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
        budgets.setdefault(parse_run_key(key)[1] or "", []).append(key)
    rows = []
    for keys in budgets.values():
        ranked = [k for k in keys if policy_kind(parse_run_key(k)[0]) in RANKED]
        lead = max(ranked, key=lambda k: sum(rates(k)) / len(seeds)) if ranked else None
        for key in keys:
            name = parse_run_key(key)[0]
            values = rates(key)
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
            if policy_kind(name) not in RANKED or lead is None:
                verdict = {"cache": "cache (not ranked)", "reference": "dense reference"}.get(policy_kind(name), "")
            elif key == lead:
                verdict = "best mean"
            else:
                outcome = paired_verdict(rates(lead), values).outcome
                verdict = {"better": "below the best", "tie": "tie with the best"}.get(outcome, outcome)
            total = sum(s["total_bytes_peak"] for s in runs[key]) / len(seeds)
            rows.append([key, f"{100 * mean:.2f}%" + (f" ± {100 * sd:.2f}" if sd is not None else ""),
                         " ".join(f"{100 * v:.2f}" for v in values), mib_text(total), verdict])
    seeds_text = ", ".join(str(s) for s in seeds)
    return (f'<h2 id="{anchor}">Spread over seeds: {esc(title)}</h2>'
            f'<p class="sub">generated traces of seeds {esc(seeds_text)}; a policy is below the best when the mean '
            "of its per-seed differences from the best exceeds their standard deviation and every seed agrees, "
            "else tied</p>"
            + html_table(["policy@budget", "dim hit rate, mean ± sd", "per seed (%)", "total peak MiB (mean)",
                      "against the best pruning policy"], rows, "numbers"))


# ---------------------------------------------------------------------------
# Along the swept knobs: the metric and total memory against each knob with two or more values

#: Axes that are not knobs: what is measured (trace, data), the runs within a group (policy, budget) and the
#: seeds a band spreads over (a training point's `seed`, a generated trace's `generate_seed`).
NOT_KNOBS = ("trace", "data", "policy", "budget", "seed", "generate_seed")
#: A knob whose numeric values span more than this ratio is drawn on a log axis.
LOG_SPAN = 10


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def knob_axes(points: Sequence) -> list[str]:
    """The swept knobs of a sweep's points, in axis order: every axis but `NOT_KNOBS` with two or more values."""
    if not points:
        return []
    names = [k for k in points[0].axes if k not in NOT_KNOBS]
    return [k for k in names if len(policy_order(p.axes[k] for p in points)) > 1]


def knob_charts(points: Sequence) -> list[tuple[str, str, dict]]:
    """Per swept knob, and per setting of the other swept knobs (and the trace or data set, when several), a chart
    of the metric along the knob (dim hit rate in % for replays, AUC for trainings) beside total peak memory: one
    line per policy@budget, a band of ± one sample standard deviation over the seeds (training `seed`, generated traces'
    `generate_seed`) where there are two or more, the mean as the line. Numbers on a log axis when they span more
    than `LOG_SPAN`x; any other knob (text, true/false, "auto" beside numbers) as categories in the order swept.

    `points` are the sweep's stored points (`sweep.results.StoredPoint`): axes, policy, budget_label, stats and
    training. Returns (chart id, title, Vega-Lite spec), in knob order.
    """
    out = []
    training = bool(points) and points[0].training
    metric, title_y = (("auc", "AUC on the last 10% (mean over seeds)") if training else
                       ("dim_hit_rate", "dim hit rate % (mean over seeds)"))
    scale = 1.0 if training else 100.0
    generated = bool(points) and "generate_seed" in points[0].axes
    for knob in knob_axes(points):
        values = policy_order(p.axes[knob] for p in points)
        numeric = all(_is_number(v) for v in values)
        log = numeric and min(values) > 0 and max(values) / min(values) > LOG_SPAN
        others = [k for k in points[0].axes if k not in (knob, "policy", "budget", "seed", "generate_seed")
                  and not (generated and k == "trace") and len(policy_order(p.axes[k] for p in points)) > 1]
        groups: dict[tuple, list] = {}
        for p in points:
            groups.setdefault(tuple((k, p.axes[k]) for k in others), []).append(p)
        for rest, members in groups.items():
            series: dict[tuple, list] = {}
            for p in members:
                series.setdefault((run_key(p.policy, p.budget_label), p.axes[knob]), []).append(p.stats)
            rows = []
            for (line, value), runs in series.items():
                ys = [r[metric] * scale for r in runs if r.get(metric) is not None]
                mib = [r["total_bytes_peak"] / MIB for r in runs]
                mean = sum(ys) / len(ys) if ys else None
                sd = (math.sqrt(sum((y - mean) ** 2 for y in ys) / (len(ys) - 1)) if len(ys) > 1 else None)
                rows.append({"run": line, "x": value if numeric else str(value), "y": num(mean),
                             "lo": num(mean - sd) if sd is not None else None,
                             "hi": num(mean + sd) if sd is not None else None, "sd": num(sd), "seeds": len(ys),
                             "total_mib": num(sum(mib) / len(mib))})
            lines = policy_order(r["run"] for r in rows)
            x = alt.X("x:Q" if numeric else "x:N", title=knob,
                      scale=alt.Scale(type="log") if log else (alt.Scale(zero=False) if numeric else alt.Undefined),
                      sort=None if numeric else [str(v) for v in values])
            color = alt.Color("run:N", title="policy@budget", sort=lines, scale=alt.Scale(domain=lines,
                                                                                           scheme="tableau10"))
            base = alt.Chart(alt.Data(values=rows)).encode(x=x)
            tooltip = [alt.Tooltip("run:N", title="policy@budget"), alt.Tooltip("x:N", title=knob),
                       alt.Tooltip("y:Q", title=title_y, format=".4f"), alt.Tooltip("sd:Q", format=".4f"),
                       alt.Tooltip("seeds:Q"), alt.Tooltip("total_mib:Q", title="total peak MiB", format=".3f")]
            line = base.mark_line(point=True).encode(y=alt.Y("y:Q", title=title_y, scale=alt.Scale(zero=False)),
                                                     color=color, tooltip=tooltip)
            layers = [line]
            if any(r["lo"] is not None for r in rows):
                band = base.transform_filter("isValid(datum.lo)").mark_area(opacity=0.15).encode(
                    y="lo:Q", y2="hi:Q", color=alt.Color("run:N", sort=lines, legend=None,
                                                         scale=alt.Scale(domain=lines, scheme="tableau10")))
                layers = [band, line]
            memory = base.mark_line(point=True).encode(
                y=alt.Y("total_mib:Q", title="total peak MiB (mean over seeds)", scale=alt.Scale(type="log")),
                color=color, tooltip=tooltip)
            chart = alt.hconcat(alt.layer(*layers).properties(width=360, height=260),
                                memory.properties(width=360, height=260)).resolve_scale(color="shared")
            where = _title_of(rest)
            title = f"{title_y.split(' (')[0]} and total memory along {knob}" + (f" ({where})" if where else "")
            spec = chart.properties(title=alt.Title(title, subtitle=(
                "one line per policy@budget; band: ± one standard deviation over the seeds"
                + ("; log x axis" if log else "")))).configure_view(stroke="#ddd").to_dict()
            out.append((f"knob-{len(out)}", title, spec))
    return out


def _title_of(rest: tuple) -> str:
    return ", ".join(f"{k} {v}" for k, v in rest)


def knob_section(points: Sequence) -> tuple[list[str], dict[str, dict]]:
    """The page's "Along the swept knobs" section (nothing when no knob has two values) and its chart specs."""
    charts = knob_charts(points)
    if not charts:
        return [], {}
    body = ['<h2 id="knobs">Along the swept knobs</h2>',
            '<p class="note">What a sweep is for: the metric along each knob swept, every other setting held (one '
            "chart per setting of the others), with total peak memory beside it.</p>"]
    for chart_id, title, _ in charts:
        body.append(f'<h3 id="sec-{chart_id}">{esc(title)}</h3>')
        body.append(f'<div class="chart" id="chart-{chart_id}" data-chart="{chart_id}"></div>')
    return body, {chart_id: spec for chart_id, _, spec in charts}


def render_sweep_report(groups: list[tuple[str, ReplayResults]],
                        spreads: Sequence[tuple[str, list, dict[str, list[dict]]]] = (),
                        points: Sequence = ()) -> str:
    """A sweep's page: the metric along every swept knob (`knob_section`, from the stored `points`), then per
    group of points that differ only in policy and budget, the replay report's warnings, ranking, equal-memory
    table, summary table and the tradeoff, hit-rate and memory charts; one copy of the libraries for all.
    `spreads` (title, seeds, runs) adds how groups that differ only in their generated trace's seed spread over
    those seeds (`seed_spread_section`)."""
    knobs, specs = knob_section(points)
    links = [("knobs", "along the knobs")] if knobs else []
    links += [(f"group-{i}", title) for i, (title, _) in enumerate(groups)]
    links += [(f"spread-{i}", f"spread: {title}") for i, (title, _, _) in enumerate(spreads)]
    body = [(f'<p class="sub">{sum(len(r.summary["policies"]) for _, r in groups)} points in {len(groups)} '
             f'group{"s" if len(groups) != 1 else ""} (same trace and knobs; policies and budgets within)</p>'),
            "<nav>" + "".join(f'<a href="#{a}">{esc(title)}</a>' for a, title in links) + "</nav>",
            how_to_read(REPLAY_HOW), *knobs]
    body += [seed_spread_section(title, seeds, runs, f"spread-{i}") for i, (title, seeds, runs) in enumerate(spreads)]
    for i, (title, results) in enumerate(groups):
        sections, group_specs = replay_sections(results, prefix=f"g{i}-", h="h3", chart_ids=SWEEP_CHARTS)
        body += [f'<h2 id="group-{i}">{esc(title)}</h2>',
                 f'<p class="sub">{esc(budgets_text(results.summary))}</p>', *sections]
        specs.update(group_specs)
    return render_page("fiitedsim sweep report", body, specs)


def write_sweep_report(target: str | Path, groups: list[tuple[str, ReplayResults]],
                       spreads: Sequence[tuple[str, list, dict[str, list[dict]]]] = (), points: Sequence = ()) -> Path:
    """Render and write a sweep's page all-or-nothing to `target`."""
    page = render_sweep_report(groups, spreads, points)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(target)


# ---------------------------------------------------------------------------
# The training report (`fiitedsim train --report`): accuracy against memory


#: Chart ids of the training report, in page order.


def render_train_sweep_report(groups: list[tuple[str, dict, pl.DataFrame]], points: Sequence = ()) -> str:
    """A data sweep's page: AUC along every swept knob (`knob_section`, from the stored `points`), then per group
    of points that differ only in policy, budget and seed, the training report's sections (as `fiitedsim train
    --report` draws them for that group's runs); one copy of the libraries."""
    knobs, specs = knob_section(points)
    links = ([("knobs", "along the knobs")] if knobs else []) + [
        (f"group-{i}", title) for i, (title, _, _) in enumerate(groups)]
    body = [(f'<p class="sub">{sum(len(g[1]["policies"]) for g in groups)} training runs in {len(groups)} '
             f'group{"s" if len(groups) != 1 else ""} (same data and settings; policies, budgets and seeds within)'
             "</p>"),
            "<nav>" + "".join(f'<a href="#{a}">{esc(title)}</a>' for a, title in links) + "</nav>",
            how_to_read(TRAIN_HOW), *knobs]
    for i, (title, summary, curve) in enumerate(groups):
        sections, group_specs = train_sections(summary, curve, prefix=f"g{i}-", h="h3")
        body += [f'<h2 id="group-{i}">{esc(title)}</h2>', *sections]
        specs.update(group_specs)
    return render_page("fiitedsim training sweep report", body, specs, made_from="a training sweep")


def write_train_sweep_report(target: str | Path, groups: list[tuple[str, dict, pl.DataFrame]],
                             points: Sequence = ()) -> Path:
    """Render and write a data sweep's page all-or-nothing to `target`."""
    page = render_train_sweep_report(groups, points)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(target)
