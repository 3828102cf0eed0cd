"""Reading a sweep file: its [sweep] table checked and turned into a `SweepFile` (axes in the order given).

A replay sweep lists traces (or generates them: `generate = {...}`), a data sweep lists data sets; both have
policies, budgets and knobs, each knob a value or a list of values (a grid axis). Every problem is an
`InputError` that names the file and the key and says what to write instead.
"""
from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import AUTO, knobs, parse_budget
from ..errors import InputError, require_file
from ..parsing import TooDeep, loads_toml
from ..policies import POLICIES, TRAIN_POLICIES


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
    kind: type  # int, float, str, bool or IntOrAuto
    target: str


class IntOrAuto:
    """The kind of a knob that takes an integer or "auto" (`page_bytes`, `index_initial`, a data sweep's
    `rows`): its points.parquet column holds strings, "auto" or the number's digits."""


#: The sweep file's type of a `ReplayConfig` knob's values (`config.KnobSpec.kind`); "auto" is no sweep value of
#: cafe_threshold and cafe_cold_share: leave the key out.
_KIND = {"int": int, "float": float, "str": str, "bool": bool, "int or auto": IntOrAuto, "number or auto": float}
#: The `ReplayConfig` knobs (its fields' metadata, `config.knobs`) as sweep keys, in field order.
CONFIG_KNOBS = tuple(Knob(name, _KIND[knob.kind], "config") for name, knob in knobs().items())
#: Knobs of a replay sweep (`traces`) in column order of points.parquet (after trace, policy, budget).
#: Every CLI knob of `replay`: the table overrides, then every `ReplayConfig` knob.
KNOBS = (
    Knob("chunk", int, "tables"), Knob("dim", int, "tables"), Knob("dtype_bytes", int, "tables"), *CONFIG_KNOBS,
)
KNOB_BY_NAME = {k.name: k for k in KNOBS}
#: Knobs of a training sweep (`data`) in column order of its points.parquet (after data, policy, budget): the
#: settings of `fiitedsim train` ("train": TrainConfig fields; "data": how the data set is made) and the
#: ReplayConfig fields the engine hook honours (report_every and count_accesses change nothing in training).
TRAIN_KNOBS = (
    Knob("dim", int, "train"), Knob("chunk", int, "train"), Knob("batch", int, "train"),
    Knob("epochs", int, "train"), Knob("lr_emb", float, "train"), Knob("lr_mlp", float, "train"),
    Knob("seed", int, "train"), Knob("samples", int, "data"), Knob("fields", int, "data"),
    Knob("rows", IntOrAuto, "data"),
    Knob("drift", float, "data"), Knob("size_from", float, "train"),
    Knob("eval_every", int, "train"), Knob("interval", int, "train"),
    *(k for k in CONFIG_KNOBS if knobs()[k.name].train is not None),
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


#: The most points a sweep file may expand to. The grid is planned (every point checked and keyed) before any
#: point runs: 10**6 points took 1.7 GB and over a minute before any output. Past this a sweep is refused.
MAX_POINTS = 100_000


def _check_grid_size(path: Path, sizes: dict[str, int]) -> None:
    """Refuse a grid of more than MAX_POINTS points (`sizes`: the length of every axis), before it is built."""
    total = math.prod(sizes.values())
    if total > MAX_POINTS:
        axes = " x ".join(f"{n:,} {name}" for name, n in sizes.items() if n > 1)
        raise InputError(f"{path}: the grid has {total:,} points ({axes}), more than the {MAX_POINTS:,} one sweep "
                         "runs; split it into several sweep files")


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            IntOrAuto: 'an integer or "auto"'}[kind]


def _check_value(where: str, value, kind: type):
    """One TOML value of `kind` (an int is fine where a float is wanted; a bool is never an int)."""
    if kind is IntOrAuto:
        if value == AUTO or isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InputError(f"{where}: expected {_type_name(kind)}, got {value!r}")
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
    require_file(path, "sweep file", "give a .toml file with a [sweep] table")
    try:
        data = loads_toml(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, TooDeep) as exc:
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
    _check_grid_size(path, {"traces": len(generate) or len(traces), "policies": len(policies),
                            "budgets": len(budgets), **{k: len(v) for k, v in knobs.items()}})
    return SweepFile(path, traces, paths, policies, budgets, knobs, out, tables, generate=generate,
                     generate_axes=generate_axes)


def _generate_grid(path: Path, raw) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    """The `generate` table: `fiitedsim generate` options, each a value or a list (an axis), every trace checked."""
    from ..traces.generate import GenerateConfig

    where = f"{path}: [sweep] generate"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a table of `fiitedsim generate` options, e.g. generate = "
                         "{profile = \"zipf\", rows = 100000, steps = 200, seed = [0, 1, 2]}")
    unknown = [k for k in raw if k not in GENERATE_KEYS]
    if unknown:
        raise InputError(f"{where}: unknown option {unknown[0]!r}; allowed: {', '.join(GENERATE_KEYS)}")
    axes = {k: _axis(path, f"generate.{k}", raw[k], lambda w, v, k=k: _check_value(w, v, GENERATE_KEYS[k]))
            for k in GENERATE_KEYS if k in raw}
    _check_grid_size(path, {f"generate.{k}": len(v) for k, v in axes.items()})
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


def _non_empty_string(where: str, value, what: str = "string") -> str:
    value = _check_value(where, value, str)
    if not value.strip():
        raise InputError(f"{where}: empty {what}")
    return value


def _load_train_sweep(path: Path, sweep: dict) -> SweepFile:
    """The rest of `load_sweep_file` for a data sweep: data specs, training policies, train knobs, columns."""
    from ..train.runner import DATA_SPECS, data_kind

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
    for name in ("fields", "drift"):   # they shape synthetic data only: a sweep of files would repeat its points
        if name in knobs and not any(data_kind(s)[0] == "synthetic" for s in data):
            raise InputError(f"{path}: [sweep] {name!r} is for synthetic data, and data lists none; remove it")
    if tables_kinds and not ("label" in columns and "sparse" in columns):
        raise InputError(f"{path}: [sweep] data {tables_kinds[0]!r} needs label = \"COLUMN\" and "
                         "sparse = \"COLUMN,COLUMN\" (and optionally dense = \"COLUMN,...\") in [sweep]")
    out = base / _non_empty_string(f"{path}: [sweep] out", sweep["out"]) if "out" in sweep else None
    _check_grid_size(path, {"data": len(data), "policies": len(policies), "budgets": len(budgets),
                            **{k: len(v) for k, v in knobs.items()}})
    return SweepFile(path, (), (), policies, budgets, knobs, out, None, data=data, data_specs=tuple(specs),
                     columns=columns)
