"""`fiitedsim sweep`: a grid of replays (traces x policies x budgets x knobs) or of training runs
(data x policies x budgets x trainer settings) on local processes or a Dask cluster.

One module per concept: `file` reads the sweep file, `points` plans the points
(their keys, and the tasks that batch them), `run` computes them (locally or
on a Dask cluster), `results` stores each point and collects points.parquet
and the report. The sweep file's format is documented once, in
docs/cli.md ("fiitedsim sweep", generated from `SWEEP_FILE_HELP`).

Why it is built this way:

- A *point* is one `replay()` of one trace with one policy at one budget, so
  points are independent (any order, any worker) and each equals a plain
  `fiitedsim replay TRACE --policy P --budget B ...` with the point's knobs.
- A point's *key* is the sha256 of the canonical JSON of everything that can
  change its result (`point_identity`): the trace's resolved part files with
  their sizes and modification times, the effective table list, every
  `ReplayConfig` field, the policy, the budget, the results format and the
  fiitedsim version. Results are stored under that key, so a re-run skips what
  is stored (resume), a changed input or knob makes a new key instead of
  reusing a stale result, and a task that Dask runs twice (a worker died after
  finishing it) is harmless.
- Workers only compute: a task returns the point's summary and its time series
  (Parquet bytes) to the client, and the client writes `OUT/points/KEY.json`
  and `KEY.parquet` atomically as each point finishes. Workers need the input
  traces at the same path, but no shared filesystem for outputs, and an
  interrupted sweep loses nothing that had finished.
- Local and remote runs take the same path: a `distributed.LocalCluster` of
  single-threaded worker processes on 127.0.0.1, or a `Client` of the given
  scheduler; everything after that is identical.
- Everything that can be checked without replaying (the sweep file, every
  trace's footers, every table override, knob and budget) is checked on the
  client before any task is submitted, so bad input costs no cluster time.
- A sweep file with `data` instead of `traces` makes *training points*: one
  `train.runner.run_all` of one data set with one policy at one budget (the
  numbers of `fiitedsim train --policy P --budget B` with the point's
  settings). They use the same keys, storage, resume and scheduling; only the
  work of a point (`run_train_point`), its identity (`train_point_identity`)
  and the summaries differ. A training point is heavy, so each is its own
  task, and a worker keeps the last data set it loaded (`_dataset`) for the
  next point on the same data.
"""
from __future__ import annotations

from .file import (
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
    "DEFAULT_SCHEDULER_PORT", "GENERATED_DIR", "GENERATE_KEYS", "KNOBS", "KNOB_BY_NAME", "POINTS_DIR", "POINTS_FILE",
    "REPORT_FILE", "SWEEP_FORMAT", "TRAIN_KNOBS", "TRAIN_KNOB_BY_NAME", "TRAIN_METRICS", "Knob", "Point", "PointSpec",
    "SweepFile", "SweepOutcome", "TrainPointSpec", "check_sweep_out", "dask_client", "file_identity",
    "generated_trace", "load_sweep_file", "pass_key", "plan_points", "plan_tasks", "plan_train_points",
    "point_identity", "point_key", "points_frame", "probe_scheduler", "report_groups", "run_point", "run_points",
    "run_sweep", "run_train_point", "run_train_points", "scheduler_address", "seed_spreads", "store_point",
    "trace_identity", "train_point_identity", "train_report_groups", "with_generated", "write_points_table",
    "write_sweep_report",
]
