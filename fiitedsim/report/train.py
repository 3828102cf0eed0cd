"""The training report (`train --report`): warnings, the ranking per budget by mean AUC with the tie rule over
seeds, AUC at equal total memory, AUC against memory and over the steps, and the table of every run."""
from __future__ import annotations

from pathlib import Path

import altair as alt
import polars as pl

from ..atomic import atomic_path
from ..compare import (
    CACHE_NOTE,
    KINDS,
    NO_AUC,
    QUALITY_TOLERANCE,
    RANKED,
    CurvePoint,
    Paired,
    QualityPoint,
    SummaryRun,
    equal_quality,
    knew,
    no_spread_reason,
    paired_verdict,
    policy_kind,
    policy_order,
    runs_of,
)
from ..policies import POLICIES, window_text
from .charts import MEMORY_AXES, MIB, ChartLayout, label_points, memory_panels, num, step_x
from .load import check_report_path
from .page import (
    Html,
    WarningMarks,
    budget_line,
    budgets_text,
    dense_sizes,
    equal_memory_table,
    esc,
    how_to_read,
    html_table,
    mib_text,
    over_budget,
    pct,
    plain_value,
    render_page,
    run_tags,
    size_text,
    warnings_of,
)

TRAIN_CHART_IDS = ("accuracy_memory", "auc_steps")


def _seed_aucs(stats: dict) -> dict:
    """Seed -> that seed's AUC (finite ones only); a run without `per_seed` is one seed of its mean."""
    per_seed = stats.get("per_seed")
    if not isinstance(per_seed, list) or not per_seed:
        return {None: stats["auc"]} if stats.get("auc") is not None else {}
    return {e.get("seed"): e["auc"] for e in per_seed if isinstance(e, dict) and e.get("auc") is not None}


def common_seeds(summary: dict, runs: list[SummaryRun]) -> list:
    """The seeds every run has a finite AUC for, in the order trained: the pairs of every paired comparison."""
    each = [_seed_aucs(summary["policies"][r.key]) for r in runs]
    order = policy_order(s for aucs in each for s in aucs)
    return [s for s in order if all(s in aucs for aucs in each)]


def trained_seeds(summary: dict) -> list:
    """The seeds the summary's runs were trained with (its config's `seeds`)."""
    return [s for s in summary["config"].get("seeds") or [] if s is not None]


def _paired(summary: dict, a: SummaryRun, b: SummaryRun, seeds: list) -> Paired:
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
    lay = ChartLayout(runs)
    points = []
    for run in runs:
        s = summary["policies"][run.key]
        auc, std = s.get("auc"), s.get("auc_std")
        points.append({"policy": run.policy, "budget": run.budget, "budget_bytes": run.budget_bytes or 0,
                       "kind": KINDS[policy_kind(run.policy)], "total_mib": num(s["total_bytes_peak"] / MIB),
                       "payload_mib": num(s["payload_bytes_peak"] / MIB), "auc": num(auc),
                       "lo": num(auc - std) if auc is not None and std is not None else None,
                       "hi": num(auc + std) if auc is not None and std is not None else None,
                       "std": num(std), "seeds": len(_seed_aucs(s))})
    for field in MEMORY_AXES:
        label_points(points, field, "auc", f"label_{field}", True)
    tooltip = [alt.Tooltip("policy:N"), alt.Tooltip("kind:N"), alt.Tooltip("budget:N"),
               alt.Tooltip("total_mib:Q", title="total peak MiB", format=".3f"),
               alt.Tooltip("payload_mib:Q", title="payload peak MiB", format=".3f"),
               alt.Tooltip("auc:Q", title="AUC (mean)", format=".4f"),
               alt.Tooltip("std:Q", title="AUC std over seeds", format=".4f"), alt.Tooltip("seeds:Q")]
    y = ("auc", "AUC on the last 10% (mean over seeds)", alt.Scale(zero=False))
    tradeoff = memory_panels(
        points, y, tooltip, lay, "AUC against memory: further up and further left is better",
        "mean over seeds, bars ± one standard deviation over seeds; one line per policy through its budgets, "
        "points labelled by budget (dashed: sized before training)",
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
            steps.append({"policy": r["policy"], "budget": r["budget"], "step": r["step"], "auc": num(mean),
                          "lo": num(mean - std) if mean is not None and std is not None else None,
                          "hi": num(mean + std) if mean is not None and std is not None else None,
                          "std": num(std), "seeds": r["seeds"]})
    base = alt.Chart(alt.Data(values=steps)).encode(x=step_x())
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
    "otherwise the two <b>tie</b>. With one seed there is no spread: the report says so instead of calling ties. "
    "A seed whose evaluation split holds one class has no AUC (it ranks clicks against non-clicks), so it pairs "
    "nothing.",
    "<b>Memory</b> is the peak total (payload + hash index + per-row metadata; the largest over the seeds) on a "
    "log axis, with payload alone beside it: at small budgets index and metadata can exceed the payload.",
    "<b>What each policy knew</b> is said beside it, and all are ranked together: fiited and row-prune learn in "
    "training, online; mde is sized before training from the lookup counts of a sizing window (the first part "
    "of the training split, <code>--size-from</code>), and so are uniform-dim and hash over vocabulary tables "
    "(they store the rows that window saw; a row first seen later reads nothing), while over hashed tables they "
    "are sized from the table sizes. <b>hash</b> shares buckets between rows; its collision share (lookups whose "
    "bucket also serves another row) is shown beside its figures. <b>full</b> is the dense reference, above any "
    "budget below the dense size, and is not ranked.",
    "<b>Memory at equal quality</b> is the FIITED paper's own measure: per policy, the least total memory (and "
    "the least payload) at which its AUC is at <b>full</b>'s: not below it by the paired rule, and at most "
    f"{QUALITY_TOLERANCE} below it on the mean, interpolated linearly in log memory between measured budgets and "
    "never extrapolated.",
    "<b>Budgets</b> are shown in bytes, as a share of the dense size and as a share of the dense size of the rows "
    "the training split touched: a budget at or above the touched size holds every row the model ever reads.",
    "<b>At equal total memory</b> compares each policy's curve of mean AUC against total peak memory (linear in "
    "log memory between its measured points, never extrapolated; each seed's AUC alike, so the tie rule applies "
    "there too).",
]


def train_ranking(summary: dict, runs: list[SummaryRun], lay: ChartLayout, warns: WarningMarks, seeds: list) -> str:
    """Per budget: the policies from the highest mean AUC down, each compared with the first by the paired tie
    rule (`paired_verdict`), the dense reference against the first, caches apart; the budget's warnings."""
    stats = summary["policies"]
    covers_all = summary["config"].get("budget_covers") == "all"
    blocks = []
    trained = trained_seeds(summary)
    reason = no_spread_reason(trained, seeds)

    def figures(run: SummaryRun) -> str:
        s = stats[run.key]
        return (f"<b>{esc(run.policy)}</b> {_pm(s.get('auc'), s.get('auc_std'))} in {size_text(s['total_bytes_peak'])}"
                + run_tags(run.policy, s, over_budget(s, run.budget_bytes, covers_all), cache=False)
                + warns.marks(run.key))

    def against(leader: SummaryRun, run: SummaryRun) -> tuple[Paired, str]:
        v = _paired(summary, leader, run, seeds)
        if v.mean is None:
            return v, ""
        text = f"{-v.mean:+.4f} vs {esc(leader.policy)}"
        if v.outcome == "one seed":
            return v, f" ({text}; one seed)"
        text += f", paired sd {v.sd:.4f}"
        if v.outcome == "tie":
            return v, f' ({text}: <span class="verdict">tie</span>)'
        side = "below" if v.outcome == "better" else "above"
        return v, f' ({text}, {v.agree}/{v.seeds} seeds: <span class="verdict">{side}</span>)'

    for budget in lay.budgets:
        mine = [r for r in runs if r.budget == budget and stats[r.key].get("auc") is not None]

        def by_auc(kinds: tuple[str, ...]) -> list[SummaryRun]:
            return sorted((r for r in mine if policy_kind(r.policy) in kinds), key=lambda r: -stats[r.key]["auc"])
        ranked, refs, caches = by_auc(RANKED), by_auc(("reference",)), by_auc(("cache",))
        lines = [f'<p class="budget-line">{budget_line(summary, budget)}</p>']
        if ranked:
            leader, rest = ranked[0], ranked[1:]
            verdicts = [against(leader, r) for r in rest]
            items = [f"1. {figures(leader)}"] + [f"{i}. {figures(r)}{text}"
                                                   for i, (r, (_, text)) in enumerate(zip(rest, verdicts), 2)]
            tied = [r.policy for r, (v, _) in zip(rest, verdicts) if v.outcome == "tie"]
            beaten = [r.policy for r, (v, _) in zip(rest, verdicts) if v.outcome == "better"]
            if reason is not None and rest:
                verdict = (f"Highest mean AUC: <b>{esc(leader.policy)}</b>. {esc(reason)}"
                           + (" (train with --seeds 0,1,2 to tell differences from noise)." if len(trained) < 2
                              else "."))
            elif tied:
                verdict = (f"No single winner: <b>{esc(leader.policy)}</b> ties with {esc(', '.join(tied))}"
                           + (f" (and beats {esc(', '.join(beaten))})" if beaten else "") + ".")
            elif rest:
                verdict = (f"Winner: <b>{esc(leader.policy)}</b>, ahead of every other policy on all "
                           f"{len(seeds)} seeds by more than the spread.")
            else:
                verdict = f"Only <b>{esc(leader.policy)}</b> at this budget."
            verdict += f" {esc(leader.policy)}: {esc(knew(leader.policy, stats[leader.key]))}."
            lines.append(f'<p class="rank"><span class="verdict">{verdict}</span></p>')
            lines.append('<p class="rank"><span class="what">By mean AUC ± sd over seeds, with total memory '
                         "(peak) and what each knew:</span> " + " &middot; ".join(items) + "</p>")
            for ref in refs:
                _, text = against(ref, leader)
                lines.append('<p class="rank ref"><span class="what">Dense reference (not ranked):</span> '
                             f"{figures(ref)}; {esc(leader.policy)} against it{text or ': no AUC'}</p>")
        else:
            lines += [f'<p class="rank ref"><span class="what">Dense reference:</span> {figures(r)}</p>' for r in refs]
        if not mine:
            lines.append(f'<p class="rank"><span class="verdict">Nothing to rank: {esc(NO_AUC)}.</span></p>')
        if caches:
            lines.append(f'<p class="rank cache"><span class="what">Caches, ranked apart: each {esc(CACHE_NOTE)}:'
                         "</span> " + " &middot; ".join(f"{i}. {figures(r)}" for i, r in enumerate(caches, 1))
                         + "</p>")
        lines.append(warns.about([r.key for r in runs if r.budget == budget]))
        blocks.append('<div class="budget">' + "".join(lines) + "</div>")
    return '<div class="headline">' + "".join(blocks) + "</div>"


def train_curves(summary: dict, runs: list[SummaryRun], seeds: list) -> dict[str, list[CurvePoint]]:
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


def quality_points(summary: dict, runs: list[SummaryRun]) -> list[QualityPoint]:
    """Every run with an AUC as `equal_quality` takes it (the seeds of its own `per_seed`)."""
    points = []
    for run in runs:
        s = summary["policies"][run.key]
        aucs = {seed: v for seed, v in _seed_aucs(s).items() if v is not None}
        points.append(QualityPoint(run.policy, s["total_bytes_peak"], s["payload_bytes_peak"], aucs))
    return points


def equal_quality_table(summary: dict, runs: list[SummaryRun]) -> str:
    """Per policy, the least total memory and payload at which its AUC is at `full`'s (`compare.equal_quality`),
    each beside full's own, best first; "not reached in the measured range" where no budget got there."""
    quality = equal_quality(quality_points(summary, runs))
    if quality is None:
        return ('<p class="note">Memory at equal quality compares every policy with <b>full</b>: train it too '
                "(<code>--policy ...,full</code>), on data whose evaluation split has both classes.</p>")
    stats = summary["policies"]
    first = {run.policy: stats[run.key] for run in reversed(runs)}
    ref = quality["full"]

    def cell(value, full_value) -> str:
        if value is None:
            return "not reached in the measured range"
        return f"{size_text(value)} ({pct(value / full_value)} of full's)" if full_value else size_text(value)
    order = sorted((n for n in quality if n != "full"),
                   key=lambda n: (quality[n]["total_bytes"] is None, quality[n]["total_bytes"] or 0))
    rows = [[name, knew(name, first[name]), cell(quality[name]["total_bytes"], ref["total_bytes"]),
             cell(quality[name]["payload_bytes"], ref["payload_bytes"])] for name in order]
    rows.append(["full", "dense reference", size_text(ref["total_bytes"]), size_text(ref["payload_bytes"])])
    reached = [n for n in order if quality[n]["total_bytes"] is not None]
    if reached:
        best, least = reached[0], quality[reached[0]]["total_bytes"]
        lead = (f"At full's quality, <b>{esc(best)}</b> ({esc(knew(best, first[best]))}) needs the least total "
                f"memory: {size_text(least)}, {pct(1 - least / ref['total_bytes'])} less than full.")
    else:
        lead = "No policy reached full's quality within the measured budgets: add larger budgets to find where."
    missing = [n for n in order if quality[n]["total_bytes"] is None]
    if missing and reached:
        lead += f" Not reached in the measured range: {esc(', '.join(missing))}."
    return (f'<p class="rank"><span class="verdict">{lead}</span></p>'
            + html_table(["policy", "what it knew", "least total memory at full's AUC",
                          "least payload at full's AUC"], rows, "numbers"))


def tables_text(config: dict) -> str:
    """The model's tables in words: how they were made, and each field's size."""
    sizes, names = config.get("table_rows"), config.get("table_names")
    if not isinstance(sizes, list):
        return ""
    names = names if isinstance(names, list) and len(names) == len(sizes) else [f"f{i}" for i in range(len(sizes))]
    how = ("vocabulary tables (one row per value of the training split, plus a shared row for values first seen "
           "later)" if config.get("rows") == "auto" else f"hashed tables of {config.get('rows'):,} rows"
           if isinstance(config.get("rows"), int) else "tables")
    return f"{how}: " + ", ".join(f"{n} {r:,}" for n, r in zip(names, sizes))


#: How a table names the budget of a run that is the same at every budget (`once_per_policy`).
EVERY_BUDGET = "every budget"


def _without_seconds(stats: dict) -> dict:
    """A run's figures but its wall times, the one thing two trainings of the same model may differ in."""
    return {k: ([{**e, "seconds": None} for e in v] if k == "per_seed" and isinstance(v, list) else v)
            for k, v in stats.items() if k != "seconds"}


def once_per_policy(summary: dict, runs: list[SummaryRun]) -> list[tuple[SummaryRun, str]]:
    """The runs a table lists, each with the budget it shows: a policy that ignores the budget (`full`) once, at
    its first budget, shown as "every budget", when its figures are the same at every budget (as `train`
    repeats them; a sweep trains it once per budget point); every other run as it is."""
    listed, first = [], {}
    for run in runs:
        stats = summary["policies"][run.key]
        if getattr(POLICIES.get(run.policy), "budget_independent", False):
            if run.policy in first and _without_seconds(stats) == first[run.policy]:
                continue
            if run.policy not in first:
                first[run.policy] = _without_seconds(stats)
                same = all(_without_seconds(summary["policies"][r.key]) == first[run.policy]
                           for r in runs if r.policy == run.policy)
                listed.append((run, EVERY_BUDGET if same else run.budget))
                continue
        listed.append((run, run.budget))
    return listed


def train_table(summary: dict, runs: list[SummaryRun], warns: WarningMarks) -> str:
    covers_all = summary["config"].get("budget_covers") == "all"
    order = policy_order(seed for run in runs for seed in _seed_aucs(summary["policies"][run.key]) if seed is not None)
    rows = []
    for run, budget in once_per_policy(summary, runs):
        s = summary["policies"][run.key]
        aucs = _seed_aucs(s)
        per_seed = " / ".join(f"{aucs[seed]:.4f}" if seed in aucs else "-" for seed in order)
        over = budget != EVERY_BUDGET and over_budget(s, run.budget_bytes, covers_all)
        notes = run_tags(run.policy, s, over, short=True).strip()
        rows.append([run.policy, budget, _pm(s.get("auc"), s.get("auc_std")),
                     _pm(s.get("logloss"), s.get("logloss_std")), per_seed, mib_text(s["payload_bytes_peak"]),
                     mib_text(s["total_bytes_peak"]), pct(s["dim_hit_rate"]) if "dim_hit_rate" in s else "",
                     pct(s["chunk_hit_rate"]), pct(s["collision_share"]) if "collision_share" in s else "",
                     f"{s['rounds']:,}" if isinstance(s.get("rounds"), int) else "", f"{s['samples']:,}",
                     f"{s['seconds']:.1f}", Html(notes + warns.marks(run.key))])
    return html_table(["policy", "budget", "AUC (mean ± sd)", "log loss (mean ± sd)",
                   f"AUC per seed ({' / '.join(map(str, order))})" if order else "AUC per seed",
                   "payload peak MiB", "total peak MiB", "dim hit", "chunk hit", "collisions", "rounds", "samples",
                   "seconds", "notes"], rows, "numbers")


def train_sections(summary: dict, curve: pl.DataFrame, prefix: str = "", h: str = "h2") -> tuple[list[str], dict]:
    """The body and chart specs of one training result; `prefix` keeps ids unique when a page holds several."""
    runs = runs_of(summary)
    lay = ChartLayout(runs)
    specs = {f"{prefix}{k}": v for k, v in train_chart_specs(summary, curve).items()}
    warns = WarningMarks(warnings_of(summary), [r.key for r in runs], prefix)
    seeds = common_seeds(summary, runs)
    teacher = summary.get("teacher_auc")
    config = summary["config"]
    facts = f"data {config.get('data')}, {config.get('samples', 0):,} samples"
    if isinstance(config.get("steps_run"), int):
        facts += f", {config['steps_run']:,} training steps, evaluated every {config.get('eval_every')}"
    named = trained_seeds(summary)
    reason = no_spread_reason(named, seeds)
    facts += (f"; seeds {', '.join(map(str, named))}" if len(named) > 1
              else f"; one seed ({named[0] if named else config.get('seed', '?')})")
    facts += "" if reason is None else ": no spread, cannot call ties" if len(named) < 2 and seeds else f". {reason}"
    if teacher is not None:
        facts += f"; the planted teacher's AUC on the evaluation split is {teacher:.4f} (the best achievable)"
    _, touched_dense, touched_rows = dense_sizes(summary)
    touched = config.get("touched_rows")
    if touched_rows is not None:
        per_field = f" (per field: {', '.join(f'{n:,}' for n in touched)})" if isinstance(touched, list) else ""
        facts += (f". The training split touched {touched_rows:,} rows{per_field}"
                  + (f", {size_text(touched_dense)} dense" if touched_dense is not None else ""))
    if tables_text(config):
        facts += f". The model's {tables_text(config)}"
    if isinstance(config.get("unseen_share"), (int, float)):
        facts += (f". {pct(config['unseen_share'])} of the evaluation lookups name a value the sizing window, "
                  f"{window_text(config.get('size_from', 1.0))}, never saw")
    knobs = [[k, plain_value(v)] for k, v in config.items() if k != "budgets"]
    knobs.append(["budgets", budgets_text(summary)])
    one_seed = "" if reason is None else f" {reason}" + ("; the gaps are one run's." if seeds else ".")
    body = [
        f'<p class="sub">{esc(facts)}.</p>',
        warns.box(),
        how_to_read(TRAIN_HOW) if not prefix else "",
        f'<{h} id="{prefix}equal-quality">Memory at equal quality: the least memory at full\'s AUC</{h}>',
        equal_quality_table(summary, runs),
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
        body.append(f'<{h} id="{prefix}sec-{chart_id}">{esc(title)}</{h}>')
        body.append(f'<div class="chart" id="chart-{prefix}{chart_id}" data-chart="{chart_id}"></div>')
    body += [f'<{h} id="{prefix}config">Configuration</{h}>', html_table(["setting", "value"], knobs, "kv")]
    return body, specs


def render_train_report(summary: dict, curve: pl.DataFrame) -> str:
    """The training report page: deterministic apart from the `seconds` column, offline, libraries inlined once."""
    body, specs = train_sections(summary, curve)
    nav = ("<nav>" + "".join(f'<a href="#{i}">{t}</a>' for i, t in (
        ("equal-quality", "At equal quality"), ("ranking", "Ranking"), ("equal-memory", "At equal memory"),
        ("summary", "Table"),
        ("sec-accuracy_memory", "AUC against memory"), ("sec-auc_steps", "AUC over steps"),
        ("config", "Configuration"))) + "</nav>")
    return render_page("fiitedsim training report", [body[0], body[1], nav, *body[2:]], specs,
                       made_from="a training run")


def write_train_report(target: str | Path, outputs) -> Path:
    """Render a `fiitedsim train` result (`runner.TrainOutputs`) and write the page all-or-nothing."""
    target = check_report_path(target)
    page = render_train_report(outputs.summary, outputs.curve)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
