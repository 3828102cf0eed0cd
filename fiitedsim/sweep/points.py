"""Planning a sweep's points: the grid expanded and checked on the client (`plan.plan` per trace or data set),
each point keyed by the sha256 of everything that can change its result, and the points batched into tasks.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..config import ReplayConfig, TableSpec, TrainConfig, load_tables_file
from ..errors import InputError
from ..memory import check_train_data_memory
from ..paths import arrow_file
from ..plan import BudgetTwice, Run, check_runs, plan
from ..replay import RESULTS_FORMAT
from ..traces.source import TraceSource
from .file import KNOB_BY_NAME, TRAIN_KNOB_BY_NAME, SweepFile

#: Layout version of a sweep folder (points/KEY.json, points.parquet); part of every point key.
SWEEP_FORMAT = 1
#: Generated traces are written to OUT/traces/ (`generated_trace`).
GENERATED_DIR = "traces"


@dataclass(frozen=True)
class PointSpec:
    """Everything a worker needs to compute a point (it must be picklable and small)."""

    trace: str                     # absolute path of the file, folder or glob
    tables_file: str | None
    tables: tuple[TableSpec, ...]  # effective tables (overrides applied); the worker uses these
    policy: str
    budget_label: str
    budget_bytes: int
    config: ReplayConfig

    def run(self) -> Run:
        return Run(self.policy, self.budget_label, self.budget_bytes, self.tables, self.config)


@dataclass(frozen=True)
class TrainPointSpec:
    """A training point: the arguments of `runner.load_data` and of a one-policy, one-budget `runner.run_all`."""

    data: str                      # the spec with an absolute path: synthetic, movielens[:/...], criteo:/..., ...
    file: tuple | None             # (resolved path, size, mtime ns) of the data file; for movielens a tuple of
    #                                those of its three files; None for synthetic
    label: str | None
    sparse: str | None
    dense: str | None
    samples: int | None            # None: synthetic 2,000,000, files all
    fields: int
    rows: int | None               # None: `auto`, the training split's vocabulary tables
    drift: float                   # synthetic data only
    train: TrainConfig
    config: ReplayConfig           # without the budget: run_all sets it
    policy: str
    budget_label: str
    budget_bytes: int

    def data_key(self) -> tuple:
        """What shapes the data set (the worker's cache key): synthetic data depends on dim and seed, files do not."""
        if self.file is None:
            return (self.data, self.samples, self.fields, self.rows, self.drift, self.train.dim, self.train.seed)
        return (self.data, self.file, self.label, self.sparse, self.dense, self.samples, self.rows)

    def load(self, samples: int | None = None):
        """The point's data set (`runner.load_data`), of its first `samples` (None: the point's own)."""
        from ..train.runner import load_data
        return load_data(self.data, self.label, self.sparse, self.dense, self.samples if samples is None else samples,
                         self.fields, self.rows, self.train.dim, self.train.seed, drift=self.drift)


@dataclass(frozen=True)
class Point:
    key: str
    axes: dict     # column -> value: trace (or data), policy, budget, then the knobs the file sets
    spec: PointSpec | TrainPointSpec


def file_identity(path: str | Path) -> tuple:
    """Resolved path, size and modification time (ns) of a file: a rewritten file gets new point keys."""
    st = Path(path).stat()
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def trace_identity(source: TraceSource) -> list[list]:
    """`file_identity` of every part of a trace, in order."""
    return [list(file_identity(part)) for part in source.parts]


def point_identity(parts: list[list], spec: PointSpec) -> dict:
    """The full configuration of a point; its canonical JSON's sha256 is the point key (docs/semantics.md)."""
    return {
        "sweep_format": SWEEP_FORMAT, "results_format": RESULTS_FORMAT, "fiitedsim": __version__,
        "trace_parts": parts, "tables": [asdict(t) for t in spec.tables],
        "config": asdict(spec.config), "policy": spec.policy,
        "budget": {"label": spec.budget_label, "bytes": spec.budget_bytes},
    }


def point_key(identity: dict) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def plan_points(sweep: SweepFile, warn: Callable[[str], None]) -> list[Point]:
    """Expand the grid in axis order (trace, policy, budget, knobs), checking every combination on the client."""
    if sweep.data:
        return plan_train_points(sweep)
    table_knobs = [k for k in sweep.knobs if KNOB_BY_NAME[k].target == "tables"]
    if sweep.tables_file is not None:
        load_tables_file(sweep.tables_file)  # a bad tables file is named once, not per trace
    if sweep.generate and not sweep.trace_paths:
        raise ValueError("plan_points: write the generated traces first (with_generated)")
    points = []
    seen_traces: dict[str, str] = {}
    for i, (label, path) in enumerate(zip(sweep.traces, sweep.trace_paths)):
        generated = {f"generate_{k}": sweep.generate[i][k] for k in sweep.generate_axes} if sweep.generate else {}
        source = TraceSource(path, tables_file=sweep.tables_file, warn=warn)
        parts = trace_identity(source)
        same = seen_traces.setdefault(json.dumps(parts), label)
        if same != label:
            raise InputError(f"{sweep.path}: traces {same!r} and {label!r} are the same files; list each trace once")

        def same_chunks(tables, source=source, label=label):
            if source.has_grad and any(a.chunks != b.chunks for a, b in zip(tables, source.tables)):
                raise InputError(f"{sweep.path}: trace {label!r} has grad_norm with K = dim/chunk values per "
                                 f"lookup, so its chunks per row cannot change ({', '.join(table_knobs)} axis); "
                                 "sweep chunk sizes on traces without grad_norm (importance then is frequency)")
        runs = plan(source.tables, sweep.policies, sweep.budgets, ReplayConfig(), sweep.knobs, policy_major=True,
                    check_tables=same_chunks, where=f"{sweep.path}: trace {label!r}")
        for run in runs:
            spec = PointSpec(str(path), None if sweep.tables_file is None else str(sweep.tables_file), run.tables,
                             run.policy, run.budget_label, run.budget_bytes, run.config)
            axes = {"trace": label, **generated, "policy": run.policy, "budget": run.budget_label, **dict(run.knobs)}
            points.append(Point(point_key(point_identity(parts, spec)), axes, spec))
    return points


def train_point_identity(spec: TrainPointSpec) -> dict:
    """The full configuration of a training point; its canonical JSON's sha256 is the point key."""
    return {
        "sweep_format": SWEEP_FORMAT, "point": "train", "fiitedsim": __version__,
        "data": {"spec": spec.data, "file": None if spec.file is None else list(spec.file), "label": spec.label,
                 "sparse": spec.sparse, "dense": spec.dense, "samples": spec.samples, "fields": spec.fields,
                 "rows": spec.rows, "drift": spec.drift},
        "train": asdict(spec.train), "config": asdict(spec.config.with_budget(spec.budget_bytes, spec.budget_label)),
        "policy": spec.policy, "budget": {"label": spec.budget_label, "bytes": spec.budget_bytes},
    }


def _data_tables(spec: TrainPointSpec, heads: dict) -> tuple[list[TableSpec], bool]:
    """The point's embedding tables and whether they are vocabulary tables, after the cheap checks of its data.

    Hashed tables: a file's first sample is read once (its format, columns and first values, as load_data checks
    them); synthetic tables are known from the spec. Vocabulary tables (`rows` None) are the training split's,
    so the data set is read (or drawn) whole, once per `data_key`; only its table sizes are kept.
    """
    from ..train.engine_hook import train_tables

    if spec.samples is not None and spec.samples < 2:
        raise InputError(f"samples must be at least 2 (one to train on, one to evaluate), got {spec.samples}")
    if spec.file is None and spec.rows is not None:
        if spec.fields < 1 or spec.rows < 1:
            raise InputError(f"synthetic data needs fields >= 1 and rows >= 1, got {spec.fields} and {spec.rows}")
        return train_tables((spec.rows,) * spec.fields, spec.train.dim, spec.train.chunk), False
    key = spec.data_key()
    if key not in heads:
        head = spec.load(None if spec.rows is None else 1)
        heads[key] = (head.rows, head.sparse_names, head.vocabulary)
    rows, names, vocabulary = heads[key]
    return train_tables(rows, spec.train.dim, spec.train.chunk, names), vocabulary


def plan_train_points(sweep: SweepFile) -> list[Point]:
    """The grid of a data sweep (data, policy, budget, knobs), every point checked as `fiitedsim train` would."""
    from ..train.runner import DEFAULT_FIELDS, DEFAULT_ROWS, data_files, data_kind, parse_rows, train_config

    train_knobs = [k for k in sweep.knobs if TRAIN_KNOB_BY_NAME[k].target == "train"]
    config_knobs = [k for k in sweep.knobs if TRAIN_KNOB_BY_NAME[k].target == "config"]
    points, heads = [], {}
    for label, data in zip(sweep.data, sweep.data_specs):
        kind = data_kind(data)[0]
        columns = sweep.columns if kind in ("parquet", "csv") else {}
        where = f"{sweep.path}: data {label!r}"
        grid = {}  # (policy, budget, knob values) -> point
        for values in itertools.product(*sweep.knobs.values()):
            chosen = dict(zip(sweep.knobs, values))
            try:
                files = data_files(data)
                identity = (None if kind == "synthetic" else file_identity(files[0]) if kind != "movielens"
                            else tuple(file_identity(f) for f in files))
                tcfg = train_config(**{k: chosen[k] for k in train_knobs})
                rcfg = ReplayConfig(**{k: chosen[k] for k in config_knobs})
                spec = TrainPointSpec(data, identity, columns.get("label"),
                                      columns.get("sparse"), columns.get("dense"), chosen.get("samples"),
                                      chosen.get("fields", DEFAULT_FIELDS),
                                      parse_rows(chosen.get("rows", DEFAULT_ROWS)), chosen.get("drift", 0.0), tcfg,
                                      rcfg, "", "", 0)
                check_train_data_memory(kind, spec.fields, [c for c in (spec.sparse or "").split(",") if c.strip()],
                                        spec.rows, tcfg.dim, tcfg.batch, spec.samples)
                tables, vocabulary = _data_tables(spec, heads)
                runs = plan(tables, sweep.policies, sweep.budgets, rcfg, where=where, check=False)
                check_runs(runs, vocabulary)
            except BudgetTwice:
                raise
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
            for run in runs:
                point_spec = replace(spec, policy=run.policy, budget_label=run.budget_label,
                                     budget_bytes=run.budget_bytes)
                axes = {"data": label, "policy": run.policy, "budget": run.budget_label, **chosen}
                grid[(run.policy, run.budget_label, values)] = Point(point_key(train_point_identity(point_spec)), axes,
                                                                     point_spec)
        points += [grid[(policy, budget, values)] for policy in sweep.policies for budget in sweep.budgets
                   for values in itertools.product(*sweep.knobs.values())]
    return points


def pass_key(spec: PointSpec) -> tuple:
    """Points with equal pass keys differ only in policy and budget, so one trace pass can feed them all."""
    return (spec.trace, spec.tables_file, spec.tables, replace(spec.config, budget_bytes=0, budget_label=""))


def plan_tasks(points: list[Point], workers: int, points_per_task: int) -> list[list[Point]]:
    """Batch points that share a trace pass into tasks of at most `points_per_task` points.

    Decoding the trace (above all its grad_norm) is a large share of a point's work, so a
    task replays several points in one pass. A group of n points becomes a multiple of `workers`
    tasks (when it has that many points), filled round-robin so fast and slow policies mix and
    the workers finish together. `points_per_task` 1 gives one task per point.
    """
    groups: dict[tuple, list[Point]] = {}
    for point in points:
        groups.setdefault(pass_key(point.spec), []).append(point)
    tasks = []
    for group in groups.values():
        n_tasks = -(-len(group) // points_per_task)
        n_tasks = min(len(group), -(-n_tasks // workers) * workers)
        tasks += [group[i::n_tasks] for i in range(n_tasks)]
    return tasks


def generated_trace(out: Path, options: dict, progress: Callable[[str], None] | None = None) -> Path:
    """The trace `fiitedsim generate` writes for `options`, under OUT/traces/ (made once; byte-identical anew).

    Named by a hash of the options and the fiitedsim version, so a changed option or version is a new file;
    a file whose footer does not hold the expected lookups (a partial copy) is made again.
    """
    from ..traces.generate import GenerateConfig, generate

    cfg = GenerateConfig(**options)
    text = json.dumps({"fiitedsim": __version__, **asdict(cfg)}, sort_keys=True, separators=(",", ":"))
    target = out / GENERATED_DIR / f"generate-{hashlib.sha256(text.encode()).hexdigest()[:16]}.parquet"
    try:
        complete = pq.read_metadata(arrow_file(target)).num_rows == cfg.tables * cfg.steps * cfg.batch
    except (OSError, pa.ArrowException):
        complete = False
    if not complete:
        target.parent.mkdir(parents=True, exist_ok=True)
        if progress:
            progress(f"generating {target.name}")
        generate(target, cfg)
    return target


def with_generated(sweep: SweepFile, out: Path, progress: Callable[[str], None] | None = None) -> SweepFile:
    """The sweep with its generated traces written (or found) under OUT/traces/ and their paths filled in."""
    if not sweep.generate:
        return sweep
    return replace(sweep, trace_paths=tuple(generated_trace(out, g, progress) for g in sweep.generate))
