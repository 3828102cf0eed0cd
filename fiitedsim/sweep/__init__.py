"""`fiitedsim sweep`: a grid of replays (traces x policies x budgets x knobs) or of training runs
(data x policies x budgets x trainer settings) on local processes or a Dask cluster.

One module per concept: `file` reads the sweep file, `points` plans the points
(each through `plan.plan`, keyed by a hash of its configuration, batched into
tasks), `run` computes them on local processes or a Dask cluster, `results`
stores each point and collects points.parquet and the report.

What a sweep is, its file, its points, keys and resume rules, and why it is
built this way are described once, in docs/sweeps.md; the command's options
and an annotated sweep file in docs/cli.md (`fiitedsim sweep --help`).
"""
from __future__ import annotations

from .file import (
    ALLOWED_KEYS,
    GENERATE_KEYS,
    KNOB_BY_NAME,
    KNOBS,
    TRAIN_KNOB_BY_NAME,
    TRAIN_KNOBS,
    Knob,
    SweepFile,
    load_sweep_file,
)
from .points import (
    GENERATED_DIR,
    SWEEP_FORMAT,
    Point,
    PointSpec,
    TrainPointSpec,
    file_identity,
    generated_trace,
    pass_key,
    plan_points,
    plan_tasks,
    plan_train_points,
    point_identity,
    point_key,
    trace_identity,
    train_point_identity,
    with_generated,
)
from .results import (
    POINTS_DIR,
    POINTS_FILE,
    REPORT_FILE,
    TRAIN_METRICS,
    check_sweep_out,
    points_frame,
    report_groups,
    seed_spreads,
    store_point,
    train_report_groups,
    write_points_table,
    write_sweep_report,
)
from .run import (
    DEFAULT_SCHEDULER_PORT,
    SweepOutcome,
    dask_client,
    probe_scheduler,
    run_point,
    run_points,
    run_sweep,
    run_train_point,
    run_train_points,
    scheduler_address,
)

__all__ = [
    "ALLOWED_KEYS", "DEFAULT_SCHEDULER_PORT", "GENERATED_DIR", "GENERATE_KEYS", "KNOBS", "KNOB_BY_NAME",
    "POINTS_DIR", "POINTS_FILE", "REPORT_FILE", "SWEEP_FORMAT", "TRAIN_KNOBS", "TRAIN_KNOB_BY_NAME",
    "TRAIN_METRICS", "Knob", "Point", "PointSpec", "SweepFile", "SweepOutcome", "TrainPointSpec",
    "check_sweep_out", "dask_client", "file_identity", "generated_trace", "load_sweep_file", "pass_key",
    "plan_points", "plan_tasks", "plan_train_points", "point_identity", "point_key", "points_frame",
    "probe_scheduler", "report_groups", "run_point", "run_points", "run_sweep", "run_train_point",
    "run_train_points", "scheduler_address", "seed_spreads", "store_point", "trace_identity",
    "train_point_identity", "train_report_groups", "with_generated", "write_points_table", "write_sweep_report",
]
