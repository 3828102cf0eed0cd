"""A small real replay for the report tests (test_report.py, test_report_browser.py).

The shipped sample (76,800 lookups, 300 steps) through the four original
policies at two budgets, snapshotted every 25 steps: real numbers, a few
seconds, and every chart has several windows and both facet layouts to draw.
"""
from __future__ import annotations

import functools

from fiitedsim.cli import SAMPLE_TRACE
from fiitedsim.config import ReplayConfig
from fiitedsim.replay import ReplayResults, parse_budgets, replay
from fiitedsim.trace import TraceSource

# Named, not list(POLICIES): a policy another engineer is still writing must not break the report tests;
# test_report.py checks separately that any policy name in a summary reaches the page.
POLICY_NAMES = ["fiited", "uniform-dim", "uniform-row", "full"]
BUDGETS = "0.05,0.25"
REPORT_EVERY = 25


@functools.cache
def sample_results(budgets: str = BUDGETS) -> ReplayResults:
    """Cached per test process: treat the result as read-only (copy before changing it)."""
    source = TraceSource(SAMPLE_TRACE)
    return replay(source, POLICY_NAMES, parse_budgets(budgets, source.tables), ReplayConfig(report_every=REPORT_EVERY))


def train_outputs():
    """Made-up `fiitedsim train` results for the training report: two policies at two budgets, hand-written
    numbers (the report only draws them), evaluated at steps 10 and 20."""
    import polars as pl

    from fiitedsim.train.runner import CURVE_COLUMNS, TrainOutputs

    runs = {  # key: (auc, payload bytes peak, chunk hit rate)
        "fiited@0.05": (0.7010, 5 * 2**20, 0.61), "full@0.05": (0.7100, 100 * 2**20, 1.0),
        "fiited@0.25": (0.7090, 25 * 2**20, 0.83), "full@0.25": (0.7100, 100 * 2**20, 1.0),
    }
    policies = {key: {"auc": auc, "logloss": 0.5, "payload_bytes_peak": payload, "total_bytes_peak": payload + 4096,
                      "chunk_hit_rate": hit, "samples": 40960, "seconds": 1.5}
                for key, (auc, payload, hit) in runs.items()}
    summary = {"policies": policies, "teacher_auc": 0.75,
               "config": {"data": "synthetic", "samples": 45_000, "budgets": [{"label": "0.05", "bytes": 5 * 2**20},
                                                                             {"label": "0.25", "bytes": 25 * 2**20}]}}
    rows = []
    for key, (auc, payload, hit) in runs.items():
        name, _, budget = key.partition("@")
        rows += [(key, name, budget, 10, 20480, 0.6, auc - 0.01, 0.55, payload, payload + 4096, hit),
                 (key, name, budget, 20, 40960, 0.55, auc, 0.5, payload, payload + 4096, hit)]
    return TrainOutputs(summary, pl.DataFrame(rows, schema=list(CURVE_COLUMNS), orient="row"))
