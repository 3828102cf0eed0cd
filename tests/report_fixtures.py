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
