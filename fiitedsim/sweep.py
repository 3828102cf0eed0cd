"""`fiitedsim sweep`: a grid of replays (traces x policies x budgets x knobs) or of training runs
(data x policies x budgets x trainer settings) on local processes or a Dask cluster.

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

import contextlib
import hashlib
import io
import itertools
import json
import logging
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .atomic import (
    atomic_path,
    check_writable,
    is_write_error,
    refuse_cwd_or_parent,
    write_error,
    write_parquet_frame,
)
from .checks import replay_warnings, train_warnings
from .config import ReplayConfig, TableSpec, load_tables_file, parse_budget
from .errors import InputError
from .memory import check_train_data_memory
from .plan import BudgetTwice, Run, plan
from .policies import POLICIES
from .policies.base import SUMMARY_KEYS
from .replay import RESULTS_FORMAT, ReplayResults, budget_entries, replay_each
from .trace import TraceSource

if TYPE_CHECKING:  # the trainer is imported only by data sweeps (it is heavy, and sets OMP_WAIT_POLICY)
    from .train.loop import TrainConfig

#: Layout version of a sweep folder (points/KEY.json, points.parquet); part of every point key.
SWEEP_FORMAT = 1
POINTS_DIR = "points"
POINTS_FILE = "points.parquet"
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Knob:
    """A setting that may be a grid axis: a scalar (one value) or a list of values in the sweep file.

    `target` says where a value goes: "tables" overrides that field of every
    table of the trace (as `replay --dim/--chunk/--dtype-bytes` do), "config"
    sets the `ReplayConfig` field of that name. In a data sweep (TRAIN_KNOBS)
    "train" sets the `TrainConfig` field of that name and "data" the argument
    of `runner.load_data`; `run_train_point` hands them to the trainer instead
    of `replay()`, and keys, storage and scheduling are shared.
    """

    name: str
    kind: type  # int, float, str or bool
    target: str


#: Knobs of a replay sweep (`traces`) in column order of points.parquet (after trace, policy, budget).
#: Every CLI knob of `replay`.
KNOBS = (
    Knob("chunk", int, "tables"), Knob("dim", int, "tables"), Knob("dtype_bytes", int, "tables"),
    Knob("gamma", float, "config"), Knob("interval", int, "config"), Knob("position_weight", float, "config"),
    Knob("page_bytes", int, "config"), Knob("max_load", float, "config"), Knob("index_initial", int, "config"),
    Knob("allocator", str, "config"), Knob("budget_covers", str, "config"), Knob("report_every", int, "config"),
    Knob("count_accesses", bool, "config"), Knob("mde_exponent", float, "config"),
)
KNOB_BY_NAME = {k.name: k for k in KNOBS}
#: Knobs of a training sweep (`data`) in column order of its points.parquet (after data, policy, budget): the
#: settings of `fiitedsim train` ("train": TrainConfig fields; "data": how the data set is made) and the
#: ReplayConfig fields the engine hook honours (report_every and count_accesses change nothing in training).
TRAIN_KNOBS = (
    Knob("dim", int, "train"), Knob("chunk", int, "train"), Knob("batch", int, "train"),
    Knob("epochs", int, "train"), Knob("lr_emb", float, "train"), Knob("lr_mlp", float, "train"),
    Knob("seed", int, "train"), Knob("samples", int, "data"), Knob("fields", int, "data"), Knob("rows", int, "data"),
    Knob("eval_every", int, "train"), Knob("interval", int, "train"),
    Knob("gamma", float, "config"), Knob("position_weight", float, "config"),
    Knob("page_bytes", int, "config"), Knob("max_load", float, "config"), Knob("index_initial", int, "config"),
    Knob("allocator", str, "config"), Knob("budget_covers", str, "config"), Knob("mde_exponent", float, "config"),
)
TRAIN_KNOB_BY_NAME = {k.name: k for k in TRAIN_KNOBS}
#: Keys of [sweep] that are not knobs. A sweep has exactly one of `traces` (replay points) and `data` (training).
COMMON_KEYS = ("policies", "budgets", "out")
REQUIRED_KEYS = ("traces", *COMMON_KEYS[:2])
OTHER_KEYS = ("out", "tables")
COLUMN_KEYS = ("label", "sparse", "dense")   # column names of parquet:/csv: data; one string each, not axes
REPLAY_KEYS = (*REQUIRED_KEYS, *OTHER_KEYS, *KNOB_BY_NAME)
#: A replay sweep may generate its traces instead of listing them: generate = {seed = [0, 1, 2], ...} takes
#: the options of `fiitedsim generate` (each a value or a list: an axis); the traces are written to OUT/traces/.
GENERATE_KEYS = {"profile": str, "alpha": float, "tables": int, "rows": int, "steps": int, "batch": int, "dim": int,
                 "chunk": int, "drift": float, "grad": bool, "seed": int}
GENERATED_DIR = "traces"
TRAIN_KEYS = ("data", *COMMON_KEYS, *COLUMN_KEYS, *TRAIN_KNOB_BY_NAME)
ALLOWED_KEYS = tuple(dict.fromkeys((*REPLAY_KEYS, "generate", *TRAIN_KEYS)))


# ---------------------------------------------------------------------------
# The sweep file


@dataclass(frozen=True)
class SweepFile:
    """A validated sweep file: axis values in the order given, paths resolved against the file's folder."""

    path: Path
    traces: tuple[str, ...]              # as written in the file (the `trace` column)
    trace_paths: tuple[Path, ...]        # absolute: file, folder or glob
    policies: tuple[str, ...]
    budgets: tuple[str, ...]             # labels, as parse_budget reads them
    knobs: dict[str, tuple]              # knob name -> values, only the knobs the file sets, in KNOBS order
    out: Path | None                     #   (TRAIN_KNOBS order for a data sweep)
    tables_file: Path | None
    generate: tuple[dict, ...] = ()      # generated traces: GenerateConfig arguments per trace (traces are labels,
    generate_axes: tuple[str, ...] = ()  #   paths come from `with_generated`); the generate options given as lists
    data: tuple[str, ...] = ()           # a data sweep: the data specs as written (the `data` column); traces ()
    data_specs: tuple[str, ...] = ()     # ... with their paths made absolute
    columns: dict[str, str] = field(default_factory=dict)  # label, sparse, dense as given


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]


def _check_value(where: str, value, kind: type):
    """One TOML value of `kind` (an int is fine where a float is wanted; a bool is never an int)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"{where}: expected {_type_name(kind)}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise InputError(f"{where}: expected a finite number, got {value!r}")
    return value


def _axis(path: Path, key: str, raw, check: Callable) -> tuple:
    """A list of values (a scalar counts as a list of one); empty lists and repeated values are errors."""
    where = f"{path}: [sweep] {key}"
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise InputError(f"{where} is empty: give at least one value, e.g. {key} = [{_example(key)}]")
    out = [check(f"{where}[{i}]" if isinstance(raw, list) else where, v) for i, v in enumerate(values)]
    seen = set()
    for v in out:
        if v in seen:
            raise InputError(f"{where} lists {v!r} twice; each value of an axis must be different")
        seen.add(v)
    return tuple(out)


def _example(key: str) -> str:
    kind = (KNOB_BY_NAME.get(key) or TRAIN_KNOB_BY_NAME.get(key) or Knob(key, int, "")).kind
    return {"traces": '"traces/a.parquet"', "data": '"synthetic"', "policies": '"fiited", "uniform-dim"',
            "budgets": "0.05, 0.1", "allocator": '"lowest"', "budget_covers": '"payload"',
            "count_accesses": "false", "lr_emb": "0.05, 0.1", "lr_mlp": "0.001"}.get(
        key, "0.999" if kind is float else "8")


def _budget_label(where: str, value) -> str:
    """Numbers are fractions of the dense size (0.1), strings may carry a unit ("2GiB")."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: expected a fraction like 0.1 or a string like \"2GiB\", got {value!r}")
    label = repr(value) if isinstance(value, float) else str(value).strip()
    parse_budget(label, 1)  # the syntax; the bytes depend on each trace's dense size
    return label


def _policy(where: str, value, choices=tuple(POLICIES), what: str = "policy") -> str:
    value = _check_value(where, value, str)
    if value not in choices and value != "all":
        raise InputError(f"{where}: unknown {what} {value!r}; choose from {', '.join(choices)} or all")
    return value


def _sweep_kind(path: Path, sweep: dict) -> str:
    """"traces" or "generate" (replay points) or "data" (training points): exactly one of them, and its keys."""
    given = [k for k in ("traces", "generate", "data") if k in sweep]
    if len(given) > 1:
        raise InputError(f"{path}: [sweep] has both {given[0]!r} and {given[1]!r}; give traces = [...] or "
                         "generate = {...} for replay points, or data = [...] for training points (one sweep file "
                         "each)")
    if not given:
        raise InputError(f"{path}: [sweep] lacks 'traces' (replay points, e.g. traces = [{_example('traces')}]), "
                         "'generate' (replay points on generated traces, e.g. generate = {seed = [0, 1, 2]}) "
                         f"or 'data' (training points, e.g. data = [{_example('data')}])")
    kind = given[0]
    allowed = {"traces": REPLAY_KEYS, "data": TRAIN_KEYS,
               "generate": ("generate", *(k for k in REPLAY_KEYS if k not in ("traces", "tables")))}[kind]
    wrong = [k for k in sweep if k not in allowed]
    if wrong and wrong[0] == "tables" and kind == "generate":
        raise InputError(f"{path}: [sweep] 'tables' overrides the tables of listed traces; generated traces have "
                         "their own (set generate's tables, rows, dim and chunk instead)")
    if wrong and kind != "data":
        raise InputError(f"{path}: [sweep] {wrong[0]!r} is a training setting: it needs data = [...] (training "
                         "points) instead of traces; remove it to replay traces")
    if wrong:
        raise InputError(f"{path}: [sweep] {wrong[0]!r} applies to replays of traces, not to training points "
                         "(data = [...]); remove it")
    return kind


def load_sweep_file(path: str | Path) -> SweepFile:
    """Parse and validate a sweep file; every problem is an InputError that says what to change."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"sweep file not found: {path}" if not path.exists() else
                         f"sweep file {path} is not a file; give a .toml file with a [sweep] table")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    extra = [k for k in data if k != "sweep"]
    if extra:
        raise InputError(f"{path}: unknown top-level key {extra[0]!r}; everything goes in the [sweep] table")
    sweep = data.get("sweep")
    if not isinstance(sweep, dict):
        raise InputError(f"{path}: no [sweep] table; see `fiitedsim sweep --help` for the format")
    unknown = [k for k in sweep if k not in ALLOWED_KEYS]
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r} in [sweep]; allowed: {', '.join(ALLOWED_KEYS)}")
    kind = _sweep_kind(path, sweep)
    if kind == "data":
        return _load_train_sweep(path, sweep)
    missing = [k for k in (kind, *REQUIRED_KEYS[1:]) if k not in sweep]
    if missing:
        raise InputError(f"{path}: [sweep] lacks {missing[0]!r}, e.g. {missing[0]} = [{_example(missing[0])}]")
    base = path.resolve().parent

    def non_empty_string(where, v):
        return _non_empty_string(where, v, "path")

    generate, generate_axes = _generate_grid(path, sweep["generate"]) if kind == "generate" else ((), ())
    if generate:
        traces = tuple(_generated_label(g, generate_axes) for g in generate)
    else:
        traces = _axis(path, "traces", sweep["traces"], non_empty_string)
    policies = _axis(path, "policies", sweep["policies"], _policy)
    if "all" in policies:
        if len(policies) > 1:
            raise InputError(f"{path}: [sweep] policies: \"all\" names every policy already; give [\"all\"] alone, "
                             "or the policies")
        policies = tuple(POLICIES)
    budgets = _axis(path, "budgets", sweep["budgets"], _budget_label)
    knobs = {k.name: _axis(path, k.name, sweep[k.name], lambda w, v, k=k: _check_value(w, v, k.kind))
             for k in KNOBS if k.name in sweep}
    out = tables = None
    if "out" in sweep:
        out = base / non_empty_string(f"{path}: [sweep] out", sweep["out"])
    if "tables" in sweep:
        tables = base / non_empty_string(f"{path}: [sweep] tables", sweep["tables"])
    paths = () if generate else tuple(base / t for t in traces)
    return SweepFile(path, traces, paths, policies, budgets, knobs, out, tables, generate=generate,
                     generate_axes=generate_axes)


def _generate_grid(path: Path, raw) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    """The `generate` table: `fiitedsim generate` options, each a value or a list (an axis), every trace checked."""
    from .generate import GenerateConfig

    where = f"{path}: [sweep] generate"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a table of `fiitedsim generate` options, e.g. generate = "
                         "{profile = \"zipf\", rows = 100000, steps = 200, seed = [0, 1, 2]}")
    unknown = [k for k in raw if k not in GENERATE_KEYS]
    if unknown:
        raise InputError(f"{where}: unknown option {unknown[0]!r}; allowed: {', '.join(GENERATE_KEYS)}")
    axes = {k: _axis(path, f"generate.{k}", raw[k], lambda w, v, k=k: _check_value(w, v, GENERATE_KEYS[k]))
            for k in GENERATE_KEYS if k in raw}
    grid = tuple(dict(zip(axes, values)) for values in itertools.product(*axes.values()))
    for g in grid:
        try:
            GenerateConfig(**g)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    return grid, tuple(k for k in axes if isinstance(raw[k], list))


def _generated_label(options: dict, axes: tuple[str, ...]) -> str:
    """The `trace` column of a generated trace: "generate", with the values of the options that vary."""
    return "generate" + "".join(f" {k}={options[k]}" for k in axes)


def generated_trace(out: Path, options: dict, progress: Callable[[str], None] | None = None) -> Path:
    """The trace `fiitedsim generate` writes for `options`, under OUT/traces/ (made once; byte-identical anew).

    Named by a hash of the options and the fiitedsim version, so a changed option or version is a new file;
    a file whose footer does not hold the expected lookups (a partial copy) is made again.
    """
    from .generate import GenerateConfig, generate

    cfg = GenerateConfig(**options)
    text = json.dumps({"fiitedsim": __version__, **asdict(cfg)}, sort_keys=True, separators=(",", ":"))
    target = out / GENERATED_DIR / f"generate-{hashlib.sha256(text.encode()).hexdigest()[:16]}.parquet"
    try:
        complete = pq.ParquetFile(target).metadata.num_rows == cfg.tables * cfg.steps * cfg.batch
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


def _non_empty_string(where: str, value, what: str = "string") -> str:
    value = _check_value(where, value, str)
    if not value.strip():
        raise InputError(f"{where}: empty {what}")
    return value


def _load_train_sweep(path: Path, sweep: dict) -> SweepFile:
    """The rest of `load_sweep_file` for a data sweep: data specs, training policies, train knobs, columns."""
    from .train.engine_hook import TRAIN_POLICIES
    from .train.runner import DATA_SPECS, data_kind

    missing = [k for k in COMMON_KEYS[:2] if k not in sweep]
    if missing:
        raise InputError(f"{path}: [sweep] lacks {missing[0]!r}, e.g. {missing[0]} = [{_example(missing[0])}]")
    base = path.resolve().parent

    def data_spec(where, value):
        value = _non_empty_string(where, value).strip()
        try:
            data_kind(value)
        except InputError:
            raise InputError(f"{where}: {value!r} is not a data spec; use {DATA_SPECS}") from None
        return value

    data = _axis(path, "data", sweep["data"], data_spec)
    specs = []
    for spec in data:
        kind, file = data_kind(spec)
        specs.append(f"{kind}:{(base / file).resolve()}" if file else spec)
    repeated = [d for i, d in enumerate(data) if specs[i] in specs[:i]]
    if repeated:
        raise InputError(f"{path}: [sweep] data lists {repeated[0]!r} twice (as another spelling of the same "
                         "file); list each data set once")
    policies = _axis(path, "policies", sweep["policies"],
                     lambda w, v: _policy(w, v, TRAIN_POLICIES, "training policy"))
    if "all" in policies:
        if len(policies) > 1:
            raise InputError(f"{path}: [sweep] policies: \"all\" names every training policy already; give "
                             "[\"all\"] alone, or the policies")
        policies = TRAIN_POLICIES
    budgets = _axis(path, "budgets", sweep["budgets"], _budget_label)
    knobs = {k.name: _axis(path, k.name, sweep[k.name], lambda w, v, k=k: _check_value(w, v, k.kind))
             for k in TRAIN_KNOBS if k.name in sweep}
    columns = {k: _non_empty_string(f"{path}: [sweep] {k}", sweep[k]) for k in COLUMN_KEYS if k in sweep}
    tables_kinds = [s for s in data if data_kind(s)[0] in ("parquet", "csv")]
    if columns and not tables_kinds:
        raise InputError(f"{path}: [sweep] {next(iter(columns))!r} names columns of parquet:/csv: data, and "
                         "data lists none; remove it")
    if tables_kinds and not ("label" in columns and "sparse" in columns):
        raise InputError(f"{path}: [sweep] data {tables_kinds[0]!r} needs label = \"COLUMN\" and "
                         "sparse = \"COLUMN,COLUMN\" (and optionally dense = \"COLUMN,...\") in [sweep]")
    out = base / _non_empty_string(f"{path}: [sweep] out", sweep["out"]) if "out" in sweep else None
    return SweepFile(path, (), (), policies, budgets, knobs, out, None, data=data, data_specs=tuple(specs),
                     columns=columns)


# ---------------------------------------------------------------------------
# Points


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
    rows: int
    train: TrainConfig
    config: ReplayConfig           # without the budget: run_all sets it
    policy: str
    budget_label: str
    budget_bytes: int

    def data_key(self) -> tuple:
        """What shapes the data set (the worker's cache key): synthetic data depends on dim and seed, files do not."""
        if self.file is None:
            return (self.data, self.samples, self.fields, self.rows, self.train.dim, self.train.seed)
        return (self.data, self.file, self.label, self.sparse, self.dense, self.samples, self.rows)


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
                 "rows": spec.rows},
        "train": asdict(spec.train), "config": asdict(spec.config.with_budget(spec.budget_bytes, spec.budget_label)),
        "policy": spec.policy, "budget": {"label": spec.budget_label, "bytes": spec.budget_bytes},
    }


def _data_tables(spec: TrainPointSpec, heads: dict) -> list[TableSpec]:
    """The point's embedding tables, after the cheap checks of its data (a file's first sample is read once)."""
    from .train.engine_hook import train_tables
    from .train.runner import load_data

    if spec.samples is not None and spec.samples < 2:
        raise InputError(f"samples must be at least 2 (one to train on, one to evaluate), got {spec.samples}")
    if spec.file is None:
        if spec.fields < 1 or spec.rows < 1:
            raise InputError(f"synthetic data needs fields >= 1 and rows >= 1, got {spec.fields} and {spec.rows}")
        return train_tables((spec.rows,) * spec.fields, spec.train.dim, spec.train.chunk)
    key = spec.data_key()
    if key not in heads:  # the file's format, columns and first values, as load_data checks them
        heads[key] = load_data(spec.data, spec.label, spec.sparse, spec.dense, 1, spec.fields, spec.rows,
                               spec.train.dim, spec.train.seed)
    head = heads[key]
    return train_tables(head.rows, spec.train.dim, spec.train.chunk, head.sparse_names)


def plan_train_points(sweep: SweepFile) -> list[Point]:
    """The grid of a data sweep (data, policy, budget, knobs), every point checked as `fiitedsim train` would."""
    from .train.runner import DEFAULT_FIELDS, DEFAULT_ROWS, data_files, data_kind, train_config

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
                                      chosen.get("fields", DEFAULT_FIELDS), chosen.get("rows", DEFAULT_ROWS),
                                      tcfg, rcfg, "", "", 0)
                check_train_data_memory(kind, spec.fields, [c for c in (spec.sparse or "").split(",") if c.strip()],
                                        spec.rows, tcfg.dim, tcfg.batch, spec.samples)
                tables = _data_tables(spec, heads)
                runs = plan(tables, sweep.policies, sweep.budgets, rcfg, where=where)
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


def run_point(spec: PointSpec) -> tuple[dict, bytes]:
    """Compute one point (on a worker): its summary.json object and its time series as Parquet bytes."""
    return run_points([spec])[0]


def run_points(specs: list[PointSpec]) -> list[tuple[dict, bytes]]:
    """Compute points that share a trace pass (`pass_key`) in one pass: decoded once, replayed by each.

    Each result equals `run_point` of that spec alone (`replay_each`); a point is a single-policy,
    single-budget replay, so it is the same whether it ran alone or batched.
    """
    first = specs[0]
    if any(pass_key(s) != pass_key(first) for s in specs):
        raise ValueError("run_points: the points do not share a trace pass")
    source = TraceSource(first.trace, tables_file=first.tables_file, warn=lambda message: None)  # client warned
    source.set_tables(list(first.tables))
    results = replay_each(source, [s.run() for s in specs])
    out = []
    for spec, result in zip(specs, results):
        buffer = io.BytesIO()
        result.series[spec.policy].write_parquet(buffer)
        out.append((result.summary, buffer.getvalue()))
    return out


#: The last data set this (worker) process loaded, with its `data_key`: consecutive training points on the same
#: data (the usual order of a grid) load it once. One at a time, so a worker holds at most one data set.
_LAST_DATA: tuple | None = None


def _dataset(spec: TrainPointSpec):
    global _LAST_DATA
    from .train.runner import load_data

    key = spec.data_key()
    if _LAST_DATA is None or _LAST_DATA[0] != key:
        _LAST_DATA = None  # free the previous data set before loading the next
        _LAST_DATA = (key, load_data(spec.data, spec.label, spec.sparse, spec.dense, spec.samples, spec.fields,
                                     spec.rows, spec.train.dim, spec.train.seed))
    return _LAST_DATA[1]


def run_train_point(spec: TrainPointSpec) -> tuple[dict, bytes]:
    """Compute one training point (on a worker): its train_summary.json object and its curve as Parquet bytes.

    The summary is exactly what `fiitedsim train --policy P --budget B` with the point's settings writes (one
    run, keyed P@B), so it carries the data's teacher AUC and the configuration the report shows.
    """
    from .train.runner import run_all

    outputs = run_all(_dataset(spec), spec.data, [spec.policy], spec.budget_label, spec.train, spec.config)
    buffer = io.BytesIO()
    outputs.curve.write_parquet(buffer)
    return outputs.summary, buffer.getvalue()


def run_train_points(specs: list[TrainPointSpec]) -> list[tuple[dict, bytes]]:
    """`run_train_point` of each spec: the task function of a data sweep (whose tasks hold one point each)."""
    return [run_train_point(spec) for spec in specs]


def pass_key(spec: PointSpec) -> tuple:
    """Points with equal pass keys differ only in policy and budget, so one trace pass can feed them all."""
    return (spec.trace, spec.tables_file, spec.tables, replace(spec.config, budget_bytes=0, budget_label=""))


def plan_tasks(points: list[Point], workers: int, points_per_task: int) -> list[list[Point]]:
    """Batch points that share a trace pass into tasks of at most `points_per_task` points.

    Decoding the trace (above all its grad_norm lists) is a large share of a point's work, so a
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


# ---------------------------------------------------------------------------
# The output folder


def check_sweep_out(out: str | Path) -> Path:
    """`out` may be new, empty or an earlier sweep folder (whose stored points are reused); nothing else."""
    out = Path(out)
    refuse_cwd_or_parent(out, "out folder", "runs/sweep")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"out folder {out} is a file; name a folder such as runs/sweep")
        if any(out.iterdir()) and not (out / POINTS_DIR).is_dir():
            raise InputError(f"out folder {out} exists and is not a fiitedsim sweep folder (no {POINTS_DIR}/); "
                             "choose a new folder")
    check_writable(out / POINTS_DIR, inside=True)  # points are written into points/, the summaries beside it
    if (out / POINTS_DIR).is_dir():
        check_writable(out, inside=True)
    return out


def _stored(out: Path, key: str) -> dict | None:
    """The stored record of a point, or None when it is absent, damaged or of another layout."""
    try:
        record = json.loads((out / POINTS_DIR / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    ok = (isinstance(record, dict) and record.get("format") == SWEEP_FORMAT and record.get("key") == key
          and (out / POINTS_DIR / f"{key}.parquet").is_file() and _valid_summary(record.get("summary")))
    return record if ok else None


def _valid_summary(summary) -> bool:
    """A stored point's summary has the types and ranges its tables and report read (a changed file is recomputed)."""
    if not isinstance(summary, dict):
        return False
    if "trace" in summary:  # a replay point: the summary.json checks of `fiitedsim report`
        from .report import check_summary
        try:
            check_summary(summary)
        except InputError:
            return False
        return True
    runs = summary.get("policies")
    if not isinstance(runs, dict) or len(runs) != 1 or not isinstance(summary.get("config"), dict):
        return False
    [run] = runs.values()

    def number(v, lo=0.0, hi=math.inf, null=False):
        if v is None:
            return null
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
    return (isinstance(run, dict) and number(run.get("auc"), 0.0, 1.0, null=True)
            and number(run.get("logloss"), null=True) and number(run.get("chunk_hit_rate"), 0.0, 1.0)
            and number(run.get("seconds")) and number(summary.get("teacher_auc"), 0.0, 1.0, null=True)
            and all(isinstance(run.get(k), int) and not isinstance(run.get(k), bool) and run[k] >= 0
                    for k in ("payload_bytes_peak", "total_bytes_peak", "samples")))


def store_point(out: Path, point: Point, summary: dict, series: bytes) -> None:
    """Series first, then the JSON record: a point counts as stored only once its JSON exists, both complete."""
    folder = out / POINTS_DIR
    with atomic_path(folder / f"{point.key}.parquet") as tmp:
        tmp.write_bytes(series)
    record = {"format": SWEEP_FORMAT, "key": point.key, "point": point.axes, "summary": summary}
    with atomic_path(folder / f"{point.key}.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------
# Scheduling


@contextlib.contextmanager
def quiet_distributed():
    """Dask logs every worker start, loss and shutdown race at INFO/WARNING: keep the terminal to our lines."""
    names = ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


#: `--scheduler`: tcp://HOST:PORT, HOST:PORT or HOST (port 8786); HOST a name, an IPv4 or a bracketed IPv6 address.
_SCHEDULER_ADDRESS = re.compile(r"(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::([0-9]{1,5}))?/?")
#: Dask's default scheduler port.
DEFAULT_SCHEDULER_PORT = 8786
#: The handshake a Dask scheduler sends on connecting is a few hundred bytes; anything claiming more is not one.
_MAX_HANDSHAKE = 1 << 20


def scheduler_address(text: str) -> tuple[str, int, str]:
    """(host, port, tcp://host:port) of a `--scheduler` value, or an InputError saying what an address looks like."""
    raw = text.strip()
    scheme, sep, _ = raw.partition("://")
    if sep and scheme != "tcp":
        raise InputError(f"--scheduler {text!r}: only tcp:// scheduler addresses are supported (e.g. "
                         f"tcp://10.0.0.5:{DEFAULT_SCHEDULER_PORT}); {scheme}:// needs settings fiitedsim cannot pass")
    match = _SCHEDULER_ADDRESS.fullmatch(raw)
    port = int(match.group(2)) if match and match.group(2) else DEFAULT_SCHEDULER_PORT
    if not match or not 0 < port < 65536:
        raise InputError(f"--scheduler {text!r} is not a scheduler address; give tcp://HOST:PORT, e.g. "
                         f"tcp://10.0.0.5:{DEFAULT_SCHEDULER_PORT}")
    host = match.group(1)
    return host.strip("[]"), port, f"tcp://{host}:{port}"


def probe_scheduler(host: str, port: int, address: str, timeout: float) -> None:
    """Check, within `timeout` seconds, that a Dask scheduler listens at host:port, before Dask is asked to connect.

    A scheduler sends its handshake as soon as a connection is accepted: an 8-byte little-endian length, then
    that many bytes of msgpack naming its pickle protocol. Dask's own client waits for that handshake without a
    time limit, and reads a foreign server's first bytes as a length to allocate (a web server's "HTTP/1.1"
    asked for 3 EiB), so a port that is open but is no scheduler would hang or crash it. A refused connection
    is retried until the time is up, as Dask does (a scheduler may still be starting).
    """
    import socket
    import struct
    import time

    deadline = time.monotonic() + timeout
    unreachable = (f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({{}}); check the address, or "
                   "leave out --scheduler to run on local processes")
    not_dask = (f"{address} answered, but not as a Dask scheduler ({{}}); give the scheduler's own port (the "
                f"dashboard or a web server is not it; the default is {DEFAULT_SCHEDULER_PORT})")
    delay = 0.05
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=max(0.01, deadline - time.monotonic()))
            break
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            if isinstance(exc, socket.gaierror) or time.monotonic() + delay >= deadline:
                raise InputError(unreachable.format(reason)) from None
            time.sleep(delay)
            delay = min(2 * delay, 1.0)

    def receive(n: int) -> bytes:
        data = b""
        while len(data) < n:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                more = sock.recv(n - len(data))
            except TimeoutError:
                raise InputError(not_dask.format(f"it accepted the connection but sent no Dask handshake within "
                                                 f"{timeout:g} s")) from None
            except OSError as exc:
                raise InputError(unreachable.format(exc.strerror or exc)) from None
            if not more:
                raise InputError(not_dask.format("it closed the connection without a Dask handshake"))
            data += more
        return data

    with sock:
        head = receive(8)
        (size,) = struct.unpack("<Q", head)
        if not 0 < size <= _MAX_HANDSHAKE:
            shown = head.decode("ascii", "replace")
            raise InputError(not_dask.format(f"its first bytes are {shown!r}" if shown.isprintable()
                                             else "its first bytes are no Dask message"))
        if b"pickle-protocol" not in receive(size):
            raise InputError(not_dask.format("its first message is no Dask handshake"))


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None, connect_timeout: float):
    """A Client of `scheduler`, or of a LocalCluster of `workers` single-threaded processes on 127.0.0.1."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        host, port, scheduler = scheduler_address(scheduler)
        probe_scheduler(host, port, scheduler, connect_timeout)
        try:
            client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} within {connect_timeout:g} s "
                             f"({' '.join(str(exc).split())}); check the address, or leave out --scheduler "
                             "to run on local processes") from None
        with client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    # no dashboard is installed (bokeh is not a dependency); the scheduler's small HTTP server (health checks)
    # takes any free loopback port instead of 8787, which another cluster may hold
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


@dataclass
class SweepOutcome:
    points: list[Point]
    computed: int   # points computed by this run
    reused: int     # points found stored


def run_sweep(sweep: SweepFile, out: str | Path, *, scheduler: str | None = None, workers: int | None = None,
              connect_timeout: float = 10.0, force: bool = False, points_per_task: int = 4,
              warn: Callable[[str], None] = lambda m: None,
              progress: Callable[[int, int], None] | None = None) -> SweepOutcome:
    """Compute the points not stored yet (all with `force`), store each as its task finishes, then the summaries.

    Points sharing a trace pass are batched into tasks of at most `points_per_task` (`plan_tasks`);
    training points are one per task (`points_per_task` does not apply to them).
    `progress(done, total)` is called once before the first task and after each one.
    """
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if scheduler is not None and workers is not None:
        raise InputError("--workers sizes the local cluster; with --scheduler the cluster has its own workers")
    if points_per_task < 1:
        raise InputError(f"--points-per-task must be at least 1, got {points_per_task}")
    if not connect_timeout > 0:
        raise InputError(f"--connect-timeout must be positive, got {connect_timeout:g}")
    if scheduler is not None:
        scheduler_address(scheduler)  # the syntax, before any planning
    out = check_sweep_out(out)
    sweep = with_generated(sweep, out)
    points = plan_points(sweep, warn)
    pending = points if force else [p for p in points if _stored(out, p.key) is None]
    total = len(points)
    done = total - len(pending)
    if progress:
        progress(done, total)
    failures: list[tuple[Point, BaseException]] = []
    if sweep.data and scheduler is None and workers is None:
        workers = 1  # a training run already uses every core (train/threads.py); more workers would compete
    if pending:
        with quiet_distributed(), dask_client(scheduler, workers, connect_timeout) as client:
            from distributed import as_completed

            try:
                (out / POINTS_DIR).mkdir(parents=True, exist_ok=True)  # only once a cluster answered
            except OSError as exc:
                if is_write_error(exc):
                    raise write_error(out / POINTS_DIR, exc) from None
                raise

            if sweep.data:  # one training point per task, points on the same data set next to each other
                order: dict[tuple, int] = {}
                for p in pending:
                    order.setdefault(p.spec.data_key(), len(order))
                tasks, work = [[p] for p in sorted(pending, key=lambda p: order[p.spec.data_key()])], run_train_points
            else:
                n_workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
                tasks, work = plan_tasks(pending, n_workers, points_per_task), run_points
            by_key = {"fiitedsim-points-" + hashlib.sha256("".join(p.key for p in task).encode()).hexdigest(): task
                      for task in tasks}
            futures = [client.submit(work, [p.spec for p in task], key=k, pure=False)
                       for k, task in by_key.items()]
            for future in as_completed(futures, loop=client.loop):
                task = by_key[future.key]
                if future.status == "finished":
                    for point, (summary, series) in zip(task, future.result()):
                        store_point(out, point, summary, series)
                        done += 1
                    if progress:
                        progress(done, total)
                elif future.status == "error":
                    failures += [(point, future.exception()) for point in task]
                else:  # cancelled: the scheduler went away or dropped the task
                    failures += [(point, InputError(f"its task was {future.status} by the cluster")) for point in task]
                future.release()
    if failures:
        point, exc = failures[0]
        if not isinstance(exc, InputError) and type(exc).__name__ != "KilledWorker":
            raise exc
        raise InputError(f"{len(failures)} of {total} points failed, e.g. {_describe(point)}: "
                         f"{' '.join(str(exc).split())}; the {done} finished points are stored in {out}: "
                         "fix the input and run the sweep again to compute only the rest")
    write_points_table(out, points)
    write_sweep_report(out, points)
    return SweepOutcome(points, len(pending), total - len(pending))


def _describe(point: Point) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.axes.items())


# ---------------------------------------------------------------------------
# Summaries: points.parquet and the report

#: Polars types of the axis columns (knobs by their kind).
_KIND_DTYPE = {int: pl.Int64, float: pl.Float64, str: pl.String, bool: pl.Boolean}


def _records(out: Path, points: list[Point]) -> list[dict]:
    records = []
    for p in points:
        record = _stored(out, p.key)
        if record is None:  # the folder was changed under us
            raise InputError(f"{out}: point {p.key} vanished while the sweep ran; run the sweep again")
        records.append(record)
    return records


#: Metric columns of a data sweep's points.parquet: the run's figures of train_summary.json (a point is one
#: seed, its `seed` axis, so no spread), with `samples` (the training samples processed) named
#: `trained_samples` so that it cannot clash with the `samples` knob, then the teacher AUC (synthetic data;
#: null for files).
TRAIN_METRICS = {"auc": pl.Float64, "logloss": pl.Float64, "payload_bytes_peak": pl.Int64,
                 "total_bytes_peak": pl.Int64, "chunk_hit_rate": pl.Float64, "dim_hit_rate": pl.Float64,
                 "collision_share": pl.Float64, "rounds": pl.Int64, "trained_samples": pl.Int64,
                 "seconds": pl.Float64, "teacher_auc": pl.Float64}


def train_points_frame(out: Path, points: list[Point]) -> pl.DataFrame:
    """A data sweep's points.parquet: the axes, budget bytes and dense size, then the run's metrics."""
    records = _records(out, points)
    knob_names = [k for k in points[0].axes if k in TRAIN_KNOB_BY_NAME]
    schema = {"key": pl.String, "data": pl.String, "policy": pl.String, "budget": pl.String,
              **{k: _KIND_DTYPE[TRAIN_KNOB_BY_NAME[k].kind] for k in knob_names},
              "budget_bytes": pl.Int64, "dense_bytes": pl.Int64, **TRAIN_METRICS}
    rows = []
    for p, record in zip(points, records):
        summary = record["summary"]
        [run] = summary["policies"].values()
        rows.append({"key": p.key, **p.axes, "budget_bytes": p.spec.budget_bytes,
                     "dense_bytes": summary["config"]["dense_bytes"],
                     **{k: run["samples" if k == "trained_samples" else k] for k in TRAIN_METRICS
                        if k != "teacher_auc"},
                     "teacher_auc": summary["teacher_auc"]})
    return pl.DataFrame(rows, schema=schema, orient="row")


def points_frame(out: Path, points: list[Point]) -> pl.DataFrame:
    """One row per point in grid order: the axes, budget bytes and dense size, then every summary.json metric."""
    if points and isinstance(points[0].spec, TrainPointSpec):
        return train_points_frame(out, points)
    records = _records(out, points)
    generated = [k for k in points[0].axes if k.startswith("generate_")] if points else []
    knob_names = [k for k in points[0].axes if k in KNOB_BY_NAME] if points else []
    schema = {"key": pl.String, "trace": pl.String,
              **{k: _KIND_DTYPE[GENERATE_KEYS[k.removeprefix("generate_")]] for k in generated},
              "policy": pl.String, "budget": pl.String,
              **{k: _KIND_DTYPE[KNOB_BY_NAME[k].kind] for k in knob_names},
              "budget_bytes": pl.Int64, "dense_bytes": pl.Int64}
    columns: dict[str, list] = {c: [] for c in schema}
    metrics: dict[str, list] = {k: [] for k in SUMMARY_KEYS}
    for p, record in zip(points, records):
        summary = record["summary"]
        for c in ("trace", *generated, "policy", "budget", *knob_names):
            columns[c].append(p.axes[c])
        columns["key"].append(p.key)
        columns["budget_bytes"].append(p.spec.budget_bytes)
        columns["dense_bytes"].append(summary["trace"]["dense_bytes"])
        stats = summary["policies"][p.spec.policy]
        for k in SUMMARY_KEYS:
            metrics[k].append(stats[k])
    for k, values in metrics.items():
        if k == "dim_hist_final":
            schema[k] = pl.List(pl.Int64)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            schema[k] = pl.Int64
        else:  # rates, and theta_final (null = +infinity)
            schema[k] = pl.Float64
        columns[k] = values
    return pl.DataFrame(columns, schema=schema)


def write_points_table(out: Path, points: list[Point]) -> Path:
    target = out / POINTS_FILE
    frame = points_frame(out, points)
    with atomic_path(target) as tmp:
        write_parquet_frame(frame, tmp, statistics=False)
    return target


def _groups(points: list[Point], within: tuple[str, ...] = ("policy", "budget")) -> dict[tuple, list[Point]]:
    """Points by their axes other than those `within` a group, in grid order: the groups of the report."""
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        rest = tuple((k, v) for k, v in p.axes.items() if k not in within)
        groups.setdefault(rest, []).append(p)
    return groups


def _title(rest: tuple) -> str:
    return ", ".join(f"{k} {v}" for k, v in rest)


def _group_budgets(members: list[Point], dense: int | None, touched_dense: int | None) -> list[dict]:
    """The group's budgets as a summary lists them: label, bytes and their shares of the dense sizes."""
    budgets = [(p.spec.budget_label, p.spec.budget_bytes) for p in {p.spec.budget_label: p for p in members}.values()]
    if not isinstance(dense, int) or not isinstance(touched_dense, int):  # a point stored before the shares
        return [{"label": label, "bytes": b} for label, b in budgets]
    return budget_entries(budgets, dense, touched_dense)


def report_groups(out: Path, points: list[Point]) -> list[tuple[str, ReplayResults]]:
    """Points that differ only in policy and budget form one replay-like result (keys NAME@BUDGET), with the
    warnings a replay of all of them would give (`checks.replay_warnings`: identical results across them too)."""
    records = {p.key: r for p, r in zip(points, _records(out, points))}
    results = []
    for rest, members in _groups(points).items():
        budgets = list(dict.fromkeys(p.spec.budget_label for p in members))
        keyed = len(budgets) > 1
        first = records[members[0].key]["summary"]
        trace = first["trace"]
        summary = {"format": RESULTS_FORMAT, "policies": {}, "config": dict(first["config"]), "trace": trace}
        summary["config"]["budgets"] = _group_budgets(members, trace.get("dense_bytes"),
                                                      trace.get("touched_dense_bytes"))
        summary["config"]["policies"] = list(dict.fromkeys(p.spec.policy for p in members))
        series, runs = {}, []
        for p in members:
            key = f"{p.spec.policy}@{p.spec.budget_label}" if keyed else p.spec.policy
            summary["policies"][key] = records[p.key]["summary"]["policies"][p.spec.policy]
            series[key] = pl.read_parquet(out / POINTS_DIR / f"{p.key}.parquet")
            runs.append((key, p.spec.policy, p.spec.budget_label, p.spec.budget_bytes))
        summary["warnings"] = replay_warnings(summary, runs)
        results.append((_title(rest), ReplayResults(summary, series)))
    return results


def train_report_groups(out: Path, points: list[Point]) -> list[tuple[str, dict, pl.DataFrame]]:
    """Training points that differ only in policy, budget and seed form one `fiitedsim train --seeds`-like result.

    Its train summary holds their runs (keys NAME@BUDGET, as `train --policy ... --budget ...` would key
    them), each run's seeds combined as `train --seeds` combines them (mean, spread, per_seed), and the
    first point's configuration with the group's policies, budgets and seeds; its curve is theirs.
    """
    from .train.runner import combine_seeds

    records = {p.key: r for p, r in zip(points, _records(out, points))}
    results = []
    for rest, members in _groups(points, ("policy", "budget", "seed")).items():
        first = records[members[0].key]["summary"]
        config = dict(first["config"])
        config["policies"] = list(dict.fromkeys(p.spec.policy for p in members))
        config["budgets"] = _group_budgets(members, config.get("dense_bytes"), config.get("touched_dense_bytes"))
        config["seeds"] = list(dict.fromkeys(p.spec.train.seed for p in members))
        per_seed: dict[str, list[dict]] = {}
        for p in members:
            [(key, run)] = records[p.key]["summary"]["policies"].items()
            per_seed.setdefault(key, []).extend(run["per_seed"])
        teacher = [e["teacher_auc"] for entries in per_seed.values() for e in entries[:1]]
        summary = {"policies": {key: combine_seeds(entries) for key, entries in per_seed.items()},
                   "teacher_auc": first["teacher_auc"] if len(config["seeds"]) == 1 else _mean_or_none(teacher),
                   "config": config}
        summary["warnings"] = train_warnings(summary, [(p.spec.policy, p.spec.budget_label, p.spec.budget_bytes)
                                                       for p in members if p.spec.train.seed == config["seeds"][0]])
        curve = pl.concat([pl.read_parquet(out / POINTS_DIR / f"{p.key}.parquet") for p in members])
        results.append((_title(rest), summary, curve))
    return results


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def write_sweep_report(out: Path, points: list[Point]) -> Path:
    from .report import write_sweep_report as write
    from .report import write_train_sweep_report

    if points and isinstance(points[0].spec, TrainPointSpec):
        return write_train_sweep_report(out / REPORT_FILE, train_report_groups(out, points))
    return write(out / REPORT_FILE, report_groups(out, points), seed_spreads(out, points))


def seed_spreads(out: Path, points: list[Point]) -> list[tuple[str, list, dict[str, list[dict]]]]:
    """Replay points on generated traces that differ only in the traces' seed (and policy and budget): per such
    set of two or more seeds, (title, seeds, policy@budget -> the points' summaries in seed order)."""
    if not points or "generate_seed" not in points[0].axes:
        return []
    records = {p.key: r for p, r in zip(points, _records(out, points))}
    out_sets = []
    for rest, members in _groups(points, ("trace", "generate_seed", "policy", "budget")).items():
        seeds = list(dict.fromkeys(p.axes["generate_seed"] for p in members))
        if len(seeds) < 2:
            continue
        runs: dict[str, dict] = {}
        for p in members:
            runs.setdefault(f"{p.spec.policy}@{p.spec.budget_label}", {})[p.axes["generate_seed"]] = \
                records[p.key]["summary"]["policies"][p.spec.policy]
        title = _title(rest) or "generated traces"
        out_sets.append((title, seeds, {key: [by_seed[s] for s in seeds] for key, by_seed in runs.items()}))
    return out_sets

