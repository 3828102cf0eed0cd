"""The replay report (`replay --report`, `fiitedsim report RUN_DIR`): warnings, the ranking per budget by dim hit
rate with total memory, the equal-memory table, the summary table, the charts and the run's configuration."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_path
from ..compare import CACHE_NOTE, RANKED, CurvePoint, SummaryRun, policy_kind, runs_of
from ..policies import CACHE_POLICIES
from ..replay import ReplayResults
from .charts import CHART_IDS, CHARTS, ChartLayout, chart_specs
from .load import check_report_path, check_series, check_summary
from .page import (
    Html,
    WarningMarks,
    budget_line,
    config_tables,
    dense_sizes,
    equal_memory_table,
    esc,
    how_to_read,
    html_table,
    mib_text,
    over_budget,
    pct,
    render_page,
    run_tags,
    size_text,
    warnings_of,
)


def summary_table(results: ReplayResults, runs: list[SummaryRun], warns: WarningMarks | None = None) -> str:
    dense = results.summary["trace"].get("dense_bytes") or 0
    covers_all = results.summary["config"].get("budget_covers") == "all"
    header = ["policy", "budget", "budget MiB", "total MiB", "total peak MiB", "payload MiB", "index MiB",
              "meta MiB", "% of dense", "fragmentation", "dim hit", "row hit", "chunk hit", "full hit",
              "collisions", "rows with chunks", "rows with none", "mapped pages", "rehashes", "mean probes", "notes"]
    rows = []
    for run in runs:
        s = results.summary["policies"][run.key]
        hist = s["dim_hist_final"]
        notes = run_tags(run.policy, s, over_budget(s, run.budget_bytes, covers_all), short=True).strip()
        rows.append([run.policy, run.budget, "" if run.budget_bytes is None else mib_text(run.budget_bytes),
                     *(mib_text(s[k]) for k in ("total_bytes_final", "total_bytes_peak", "payload_bytes_final",
                                                "index_bytes_final", "meta_bytes_final")),
                     pct(s["total_bytes_final"] / dense) if dense else "", pct(s["fragmentation_final"]),
                     pct(s["dim_hit_rate"]), pct(s["row_hit_rate"]), pct(s["chunk_hit_rate"]),
                     pct(s["full_hit_rate"]), pct(s["collision_share"]),
                     f"{sum(hist[1:]):,}", f"{hist[0]:,}" if hist else "", f"{s['mapped_pages_final']:,}",
                     f"{s['rehashes']:,}", f"{s['mean_probe_length']:.2f}",
                     Html(notes + (warns.marks(run.key) if warns else ""))])
    return html_table(header, rows, "numbers")


def headline(results: ReplayResults, runs: list[SummaryRun], lay: ChartLayout,
             warns: WarningMarks | None = None) -> str:
    """Per budget: its size, then the pruning policies from the highest dim hit rate down (ties: order given)
    with their total memory, the dense reference, and the caches apart; the warnings about that budget.

    A policy whose budgeted bytes (payload, or everything with --budget-covers all) peaked above the
    budget is marked, so a dense reference cannot pass for a winner.
    """
    stats = results.summary["policies"]
    covers_all = results.summary["config"].get("budget_covers") == "all"
    warns = warns or WarningMarks([], [])
    blocks = []
    for budget in lay.budgets:
        mine = [r for r in runs if r.budget == budget]

        def figures(run: SummaryRun) -> str:
            s = stats[run.key]
            return (f"<b>{esc(run.policy)}</b> {pct(s['dim_hit_rate'])} in {size_text(s['total_bytes_peak'])}"
                    + run_tags(run.policy, s, over_budget(s, run.budget_bytes, covers_all), cache=False)
                    + warns.marks(run.key))

        def by_rate(kinds: tuple[str, ...]) -> list[SummaryRun]:
            return sorted((r for r in mine if policy_kind(r.policy) in kinds),
                          key=lambda r: -stats[r.key]["dim_hit_rate"])
        ranked, refs, caches = by_rate(RANKED), by_rate(("reference",)), by_rate(("cache",))
        lines = [f'<p class="budget-line">{budget_line(results.summary, budget)}</p>']
        if ranked:
            lines.append('<p class="rank"><span class="what">Pruning, by dim hit rate, with total memory (peak) and '
                         "what each knew:</span> "
                         + " &middot; ".join(f"{i}. {figures(r)}" for i, r in enumerate(ranked, 1)) + "</p>")
        if refs:
            lines.append('<p class="rank ref"><span class="what">Dense reference (not ranked):</span> '
                         + " &middot; ".join(figures(r) for r in refs) + "</p>")
        if caches:
            lines.append(f'<p class="rank cache"><span class="what">Caches, ranked apart: each {esc(CACHE_NOTE)}:'
                         "</span> " + " &middot; ".join(f"{i}. {figures(r)}" for i, r in enumerate(caches, 1))
                         + "</p>")
        lines.append(warns.about([r.key for r in mine]))
        blocks.append('<div class="budget">' + "".join(lines) + "</div>")
    return '<div class="headline">' + "".join(blocks) + "</div>"


def replay_curves(summary: dict, runs: list[SummaryRun]) -> dict[str, list[CurvePoint]]:
    """Each policy's measured points: dim hit rate (%) against total memory (peak), one per budget."""
    curves: dict[str, list[CurvePoint]] = {}
    for run in runs:
        s = summary["policies"][run.key]
        curves.setdefault(run.policy, []).append(
            CurvePoint(float(s["total_bytes_peak"]), 100 * s["dim_hit_rate"], budget=run.budget))
    return curves


REPLAY_HOW = [
    "<b>Dim hit rate</b> = resident dims / requested dims over the whole run: the one rate comparable across "
    "policies that keep chunks (fiited, row-prune) and whole dimensions (uniform-dim, mde). A <b>hash</b> lookup "
    "whose bucket also serves another row is a collision and counts as a miss; its collision share is shown "
    "beside its rate.",
    "<b>Memory</b> is total memory at its peak: payload + hash index + per-row metadata (at small budgets index "
    "and metadata can exceed the payload). Charts put it on a log axis, with payload alone in the panel beside.",
    f"<b>Caches</b> ({', '.join(CACHE_POLICIES)}) are ranked apart: each {esc(CACHE_NOTE)}, so they need the dense "
    "table somewhere. A pruning policy's miss is information the model no longer has.",
    "<b>What each policy knew</b> is said beside it, and all are ranked together: fiited and row-prune learn "
    "online from the lookups so far; uniform-dim, uniform-row and hash are sized from the table sizes; <b>mde</b> "
    "is sized from a first pass over the whole trace it is then measured on, so it knows every row's lookup count "
    "in advance, which no policy sized before training could. <b>full</b> is the dense reference, above any "
    "budget below the dense size.",
    "<b>Budgets</b> are shown in bytes, as a share of the dense size and as a share of the dense size of the rows "
    "the trace touched: a budget at or above the touched size holds every row looked up, and policies cannot "
    "differ much.",
    "<b>At equal total memory</b> compares each policy's curve (linear in log memory between its measured "
    "points, never extrapolated) at common memory points: the fair comparison when policies spend a budget on "
    "different overheads.",
]


def replay_sections(results: ReplayResults, prefix: str = "", h: str = "h2",
                     chart_ids: Sequence[str] = CHART_IDS) -> tuple[list[str], dict[str, dict]]:
    """The body and chart specs of one replay result; `prefix` keeps ids unique when a page holds several."""
    check_summary(results.summary)
    check_series(results)
    summary = results.summary
    runs = runs_of(summary)
    lay = ChartLayout(runs)
    warns = WarningMarks(warnings_of(summary), [r.key for r in runs], prefix)
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
        body.append(f'<{h} id="{prefix}sec-{chart_id}">{esc(CHARTS[chart_id][0])}</{h}>')
        body.append(f'<div class="chart" id="chart-{prefix}{chart_id}" data-chart="{chart_id}"></div>')
    return body, specs


def render_report(results: ReplayResults) -> str:
    """The whole page as one string: deterministic (no dates, no random ids), offline, one copy of the libraries."""
    check_summary(results.summary)
    summary = results.summary
    runs = runs_of(summary)
    lay = ChartLayout(runs)
    trace = summary["trace"]
    name = Path(str(trace.get("path", "trace"))).name
    lookups = trace.get("lookups")
    dense, touched_dense, touched_rows = dense_sizes(summary)
    facts = [f"{lookups:,} lookups" if isinstance(lookups, int) else "",
             f"steps {trace.get('first_step')} to {trace.get('last_step')}",
             f"dense size {size_text(dense)}" if dense is not None else "",
             (f"{touched_rows:,} rows touched, {size_text(touched_dense)} dense"
              if touched_rows is not None and touched_dense is not None else ""),
             f"{len(lay.policies)} policies x {len(lay.budgets)} budget{'s' if lay.multi_budget else ''}"]
    sections, specs = replay_sections(results)
    parts = [
        f'<p class="sub">{esc(", ".join(f for f in facts if f))}. Trace: <code>{esc(trace.get("path"))}</code></p>',
        sections[0],  # the warnings, first of all
        "<nav>" + '<a href="#ranking">Ranking</a><a href="#equal-memory">At equal memory</a>'
        + '<a href="#summary">Summary table</a>'
        + "".join(f'<a href="#sec-{i}">{esc(t)}</a>' for i, (t, _) in CHARTS.items())
        + '<a href="#config">Configuration</a><a href="#trace">Trace</a></nav>',
        how_to_read(REPLAY_HOW),
        *sections[1:],
        config_tables(summary),
    ]
    return render_page(f"fiitedsim report: {name}", parts, specs)


SUMMARY_NOTE = ('<p class="note">Memory is at the end of the run (peak where it says so); hit rates are over the whole '
                "run: dim hit = resident dims / requested dims (comparable across chunk- and dimension-granular "
                "policies), row hit = the row's first chunk was resident, chunk hit = resident chunks / requested "
                "chunks, full hit = all chunks of the row were resident; collisions = lookups whose hash bucket also "
                "served another row (misses), as a share of lookups. The budget is the payload budget of DESIGN.md "
                "3.3 (payload + index + metadata with --budget-covers all).</p>")
#: Charts drawn for each group of a sweep report (the rest would multiply the page size by the group count).


def write_report(target: str | Path, results: ReplayResults) -> Path:
    """Render `results` and write the page all-or-nothing to `target`."""
    target = check_report_path(target)
    page = render_report(results)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


# ---------------------------------------------------------------------------
# The runs: which policy at which budget
