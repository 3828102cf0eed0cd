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
from fiitedsim.traces.source import TraceSource

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


#: Made-up training runs: key -> (AUC per seed 0, 1, 2; payload peak MiB; total peak MiB; dim hit; collisions).
#: test_report.py works out by hand what the report must say about them (ranking, ties, equal memory).
TRAIN_RUNS = {
    "fiited@0.05": ((0.7010, 0.7030, 0.7050), 1, 2, 0.61, 0.0),
    "uniform-dim@0.05": ((0.7000, 0.7025, 0.7040), 1, 1, 0.25, 0.0),
    "hash@0.05": ((0.7020, 0.7000, 0.7060), 1, 1, 0.20, 0.40),
    "full@0.05": ((0.7100, 0.7100, 0.7100), 16, 16, 1.0, 0.0),
    "fiited@0.25": ((0.7090, 0.7080, 0.7100), 4, 8, 0.83, 0.0),
    "uniform-dim@0.25": ((0.7050, 0.7040, 0.7060), 4, 4, 0.50, 0.0),
    "hash@0.25": ((0.7060, 0.7050, 0.7075), 4, 4, 0.45, 0.25),
    "full@0.25": ((0.7100, 0.7100, 0.7100), 16, 16, 1.0, 0.0),
}


def train_outputs(seeds: tuple[int, ...] = (0, 1, 2), warnings: tuple[str, ...] = ()):
    """Made-up `fiitedsim train` results for the training report (the report only draws them): `TRAIN_RUNS`
    for the first len(seeds) seeds, evaluated at steps 10 (AUC - 0.01) and 20 (the final AUC)."""
    import math

    import polars as pl

    from fiitedsim.policies import knowledge
    from fiitedsim.train.runner import CURVE_COLUMNS, TrainOutputs

    mib = 2**20

    def std(xs):
        if len(xs) < 2:
            return None
        m = sum(xs) / len(xs)
        return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))

    policies, rows = {}, []
    for key, (aucs, payload, total, dim_hit, collide) in TRAIN_RUNS.items():
        name, _, budget = key.partition("@")
        aucs = aucs[:len(seeds)]
        per_seed = [{"seed": seed, "auc": auc, "logloss": 0.5, "payload_bytes_peak": payload * mib,
                     "total_bytes_peak": total * mib, "chunk_hit_rate": dim_hit, "dim_hit_rate": dim_hit,
                     "collision_share": collide, "rounds": 10 if name == "fiited" else 0, "samples": 40960,
                     "seconds": 0.5, "teacher_auc": 0.75} for seed, auc in zip(seeds, aucs)]
        policies[key] = {"auc": sum(aucs) / len(aucs), "logloss": 0.5, "auc_std": std(aucs),
                         "logloss_std": 0.0 if len(seeds) > 1 else None, "payload_bytes_peak": payload * mib,
                         "total_bytes_peak": total * mib, "chunk_hit_rate": dim_hit, "dim_hit_rate": dim_hit,
                         "collision_share": collide, "rounds": 10 if name == "fiited" else 0, "samples": 40960,
                         "seconds": 0.5 * len(seeds), "per_seed": per_seed,
                         "knew": knowledge(name, "the whole training split", vocabulary=True)}
        for seed, auc in zip(seeds, aucs):
            rows += [(key, name, budget, seed, 10, 20480, 0.6, auc - 0.01, 0.55, payload * mib, total * mib,
                      dim_hit, dim_hit),
                     (key, name, budget, seed, 20, 40960, 0.55, auc, 0.5, payload * mib, total * mib, dim_hit,
                      dim_hit)]
    budgets = [{"label": "0.05", "bytes": 2**20, "dense_share": 0.05, "touched_share": 0.25},
               {"label": "0.25", "bytes": 5 * 2**20, "dense_share": 0.25, "touched_share": 1.25}]
    summary = {"policies": policies, "teacher_auc": 0.75, "warnings": list(warnings),
               "config": {"data": "synthetic", "samples": 45_000, "seeds": list(seeds), "steps_run": 20,
                          "eval_every": 10, "interval": 5, "policies": ["fiited", "uniform-dim", "hash", "full"],
                          "budgets": budgets, "dense_bytes": 20 * 2**20, "touched_rows": [1000, 2000],
                          "touched_dense_bytes": 4 * 2**20}}
    return TrainOutputs(summary, pl.DataFrame(rows, schema=list(CURVE_COLUMNS), orient="row"))


def stored_points(out) -> dict:
    """A replay point and a training point stored in the sweep folder `out` as a sweep stores them (`store_point`),
    from the results above: {kind: key}."""
    import io
    from types import SimpleNamespace

    import polars as pl

    from fiitedsim.sweep import POINTS_DIR
    from fiitedsim.sweep.results import store_point

    (out / POINTS_DIR).mkdir(parents=True)
    results = sample_results()
    name = next(iter(results.summary["policies"]))
    replay_summary = {**results.summary, "policies": {name: results.summary["policies"][name]}}
    trained = train_outputs(seeds=(0,))
    key = next(iter(trained.summary["policies"]))
    train_summary = {**trained.summary, "policies": {key: trained.summary["policies"][key]}}
    points = {}
    for kind, summary, frame in (("replay", replay_summary, results.series[name]),
                                 ("train", train_summary, trained.curve.filter(pl.col("key") == key))):
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        point = SimpleNamespace(key=f"{kind}-point", axes={"policy": name})
        store_point(out, point, summary, buffer.getvalue())
        points[kind] = point.key
    return points
