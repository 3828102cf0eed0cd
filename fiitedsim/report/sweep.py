"""The sweep reports (`fiitedsim sweep`'s OUT/report.html): one replay-like (or training-like) section per group
of points that differ only in policy and budget (and seed), and the spread over generated traces' seeds."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ..atomic import atomic_path
from ..compare import RANKED, paired_verdict, policy_kind
from ..replay import ReplayResults
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
        budgets.setdefault(key.rpartition("@")[2] if "@" in key else "", []).append(key)
    rows = []
    for keys in budgets.values():
        ranked = [k for k in keys if policy_kind(k.partition("@")[0]) in RANKED]
        lead = max(ranked, key=lambda k: sum(rates(k)) / len(seeds)) if ranked else None
        for key in keys:
            name = key.partition("@")[0]
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
            "<nav>" + "".join(f'<a href="#{a}">{esc(title)}</a>' for a, title in links) + "</nav>",
            how_to_read(REPLAY_HOW)]
    body += [seed_spread_section(title, seeds, runs, f"spread-{i}") for i, (title, seeds, runs) in enumerate(spreads)]
    for i, (title, results) in enumerate(groups):
        sections, group_specs = replay_sections(results, prefix=f"g{i}-", h="h3", chart_ids=SWEEP_CHARTS)
        body += [f'<h2 id="group-{i}">{esc(title)}</h2>',
                 f'<p class="sub">{esc(budgets_text(results.summary))}</p>', *sections]
        specs.update(group_specs)
    return render_page("fiitedsim sweep report", body, specs)


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


def render_train_sweep_report(groups: list[tuple[str, dict, pl.DataFrame]]) -> str:
    """A data sweep's page: per group of points that differ only in policy and budget, the training report's
    sections (as `fiitedsim train --report` draws them for that group's runs); one copy of the libraries."""
    specs: dict[str, dict] = {}
    body = [(f'<p class="sub">{sum(len(g[1]["policies"]) for g in groups)} training points in {len(groups)} '
             f'group{"s" if len(groups) != 1 else ""} (same data and settings; policies and budgets within)</p>'),
            "<nav>" + "".join(f'<a href="#group-{i}">{esc(title)}</a>' for i, (title, _, _) in enumerate(groups))
            + "</nav>", how_to_read(TRAIN_HOW)]
    for i, (title, summary, curve) in enumerate(groups):
        sections, group_specs = train_sections(summary, curve, prefix=f"g{i}-", h="h3")
        body += [f'<h2 id="group-{i}">{esc(title)}</h2>', *sections]
        specs.update(group_specs)
    return render_page("fiitedsim training sweep report", body, specs, made_from="a training sweep")


def write_train_sweep_report(target: str | Path, groups: list[tuple[str, dict, pl.DataFrame]]) -> Path:
    """Render and write a data sweep's page all-or-nothing to `target`."""
    page = render_train_sweep_report(groups)
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(target)
