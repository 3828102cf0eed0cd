"""The HTML reports: one self-contained page per replay, training run or sweep.

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

One module per concept: `load` reads a results folder of any kind (replay,
training, sweep) and checks its summary, `charts` the replay charts, `page`
the parts every page is made of (tables, warnings, the inlined libraries), and
`replay`, `train` and `sweep` the three kinds of report. The comparison rules
without HTML (kinds, what each policy knew, the tie rule, curves at equal
memory, memory at equal quality) are `fiitedsim.compare`, which the trainer's
summary uses too.
"""
from __future__ import annotations

from ..compare import (
    CACHE_NOTE,
    COMMON_POINTS,
    DENSE_REFERENCE,
    KINDS,
    OVERLAP_POINTS,
    CurvePoint,
    EqualRow,
    Paired,
    SummaryRun,
    equal_memory_rows,
    interpolate_log,
    log_grid,
    make_curve,
    memory_points,
    paired_verdict,
    policy_kind,
    runs_of,
)
from ..errors import InputError
from .charts import (
    CHART_IDS,
    CHARTS,
    HIT_RATES,
    MAX_DIM_WINDOWS,
    MAX_WINDOWS,
    MEMORY_AXES,
    MEMORY_PARTS,
    MIB,
    chart_dims_final,
    chart_dims_over_time,
    chart_fragmentation,
    chart_hit_rates,
    chart_memory,
    chart_pages,
    chart_specs,
    chart_tradeoff,
)
from .load import (
    FOLDER_KINDS,
    NEEDED_SERIES_COLUMNS,
    NEEDED_SUMMARY_KEYS,
    TrainResults,
    check_report_path,
    check_series,
    check_summary,
    check_train_summary,
    folder_kind,
    load_results,
    load_train_results,
)
from .page import (
    EMBED_OPTIONS,
    PAGE_SCRIPT,
    STYLE,
    budget_line,
    budget_shares,
    config_tables,
    equal_memory_table,
    vega_bundle,
    warnings_of,
)
from .replay import (
    REPLAY_HOW,
    SUMMARY_NOTE,
    headline,
    render_report,
    replay_curves,
    summary_table,
    write_report,
)
from .sweep import (
    SWEEP_CHARTS,
    render_sweep_report,
    render_train_sweep_report,
    seed_spread_section,
    write_sweep_report,
    write_train_sweep_report,
)
from .train import (
    TRAIN_CHART_IDS,
    TRAIN_HOW,
    common_seeds,
    render_train_report,
    train_chart_specs,
    train_curves,
    train_ranking,
    train_table,
    write_train_report,
)

__all__ = [
    "CACHE_NOTE", "CHARTS", "CHART_IDS", "COMMON_POINTS", "CurvePoint", "DENSE_REFERENCE", "EMBED_OPTIONS",
    "EqualRow", "FOLDER_KINDS", "HIT_RATES", "InputError", "KINDS", "MAX_DIM_WINDOWS", "MAX_WINDOWS", "MEMORY_AXES",
    "MEMORY_PARTS", "MIB", "NEEDED_SERIES_COLUMNS", "NEEDED_SUMMARY_KEYS", "OVERLAP_POINTS", "PAGE_SCRIPT",
    "Paired", "REPLAY_HOW", "SummaryRun", "STYLE", "SUMMARY_NOTE", "SWEEP_CHARTS", "TRAIN_CHART_IDS", "TRAIN_HOW",
    "TrainResults", "budget_line", "budget_shares", "chart_dims_final", "chart_dims_over_time",
    "chart_fragmentation", "chart_hit_rates", "chart_memory", "chart_pages", "chart_specs", "chart_tradeoff",
    "check_report_path", "check_series", "check_summary", "check_train_summary", "common_seeds", "config_tables",
    "equal_memory_rows", "equal_memory_table", "folder_kind", "headline", "interpolate_log", "load_results",
    "load_train_results", "log_grid", "make_curve", "memory_points", "paired_verdict", "policy_kind",
    "render_report", "render_sweep_report", "render_train_report", "render_train_sweep_report", "replay_curves",
    "runs_of", "seed_spread_section", "summary_table", "train_chart_specs", "train_curves", "train_ranking",
    "train_table", "vega_bundle", "warnings_of", "write_report", "write_sweep_report", "write_train_report",
    "write_train_sweep_report",
]
