"""`fiitedsim train`: load data, train once per (policy, budget) through the engine, save the results.

Every run starts from the same seeded parameters and sees the same batches, so
runs differ only by their storage policy. The results are `train_summary.json`
(docs/formats.md, "train_summary.json") and `curve.parquet`, one row per evaluation of
every run: accuracy beside the policy's memory at that step. Everything except
the `seconds` fields (wall time of the training steps) is a pure function of
the inputs and the seed, so the same command gives byte-identical files.
"""
from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from ..atomic import atomic_path, check_writable, refuse_cwd_or_parent, write_parquet_frame
from ..checks import train_warnings
from ..compare import QualityPoint, equal_quality
from ..config import MAX_BYTES, TRAIN_FIELDS, TRAIN_ROWS, ReplayConfig, TableSpec, check_seed, dense_bytes
from ..engine.rowset import RowMap
from ..errors import InputError, require_file
from ..memory import check_model_memory
from ..parsing import loads_json
from ..plan import Run, check_runs, plan, split_list
from ..policies import POLICIES, knowledge, sized_from_window, window_text
from ..replay import budget_entries
from ..traces.writer import ImportanceWriter, TraceWriter
from .data import OOV_ROW, Dataset, movielens_files, read_criteo, read_movielens, read_table, synthetic
from .engine_hook import EngineResidency, TraceRecorder, train_tables
from .loop import TrainConfig, config_dict, schedule, total_steps, train

SUMMARY_FILE, CURVE_FILE = "train_summary.json", "curve.parquet"
#: The defaults of `fiitedsim train --fields/--rows`, and of the `fields`/`rows` knobs of a data sweep (rows None:
#: `auto`, vocabulary tables).
DEFAULT_FIELDS, DEFAULT_ROWS = TRAIN_FIELDS, None
#: Keys of every run in train_summary.json, in this order (the docs/formats.md contract). `auc`, `logloss` and the hit
#: rates are means over the seeds, `*_std` their sample standard deviations (null with one seed), the byte
#: figures the largest over the seeds, `rounds` the fewest, `seconds` the sum; `per_seed` has each seed's own.
RUN_KEYS = ("auc", "logloss", "auc_std", "logloss_std", "payload_bytes_peak", "total_bytes_peak", "chunk_hit_rate",
            "dim_hit_rate", "collision_share", "rounds", "samples", "seconds", "per_seed", "knew")
#: Keys of each entry of a run's `per_seed` list.
SEED_KEYS = ("seed", "auc", "logloss", "payload_bytes_peak", "total_bytes_peak", "chunk_hit_rate", "dim_hit_rate",
             "collision_share", "rounds", "samples", "seconds", "teacher_auc")
#: Columns of curve.parquet.
CURVE_COLUMNS = ("key", "policy", "budget", "seed", "step", "samples", "train_loss", "auc", "logloss",
                 "payload_bytes", "total_bytes", "chunk_hit_rate", "dim_hit_rate")
CURVE_SCHEMA = {"key": pl.Utf8, "policy": pl.Utf8, "budget": pl.Utf8, "seed": pl.Int64, "step": pl.Int64,
                "samples": pl.Int64, "train_loss": pl.Float64, "auc": pl.Float64, "logloss": pl.Float64,
                "payload_bytes": pl.Int64, "total_bytes": pl.Int64, "chunk_hit_rate": pl.Float64,
                "dim_hit_rate": pl.Float64}


def _columns(text: str | None, option: str = "--sparse") -> list[str]:
    """A column list (`replay.split_list`'s rule: no empty item, none twice); none given is []."""
    return [] if text is None else split_list(text, option, "name at least one column", "a column")


#: The accepted forms of a data spec, as error messages list them.
DATA_SPECS = "synthetic, movielens, movielens:PATH, criteo:PATH, parquet:PATH or csv:PATH"


def data_kind(spec: str) -> tuple[str, str]:
    """(kind, path) of a data spec: ("synthetic" | "movielens", ""), or ("movielens" | "criteo" | "parquet" | "csv",
    PATH); else an InputError. A movielens PATH is a GroupLens ml-100k folder, the others are files."""
    kind, _, path = spec.partition(":")
    if kind in ("synthetic", "movielens") and not path:
        return kind, ""
    if kind not in ("movielens", "criteo", "parquet", "csv") or not path:
        raise InputError(f"--data {spec!r}: use {DATA_SPECS}")
    return kind, path


def data_files(spec: str) -> list[Path]:
    """The files a data spec reads (none for synthetic): what a sweep's point keys record; missing ones are errors."""
    kind, path = data_kind(spec)
    if kind == "synthetic":
        return []
    if kind == "movielens":
        return movielens_files(path or None)
    return [require_file(path, f"--data {spec!r}: file")]


#: Options of `fiitedsim train` that only some --data kinds read: given with another kind, they would be ignored.
DATA_OPTIONS = {"--label": ("parquet", "csv"), "--sparse": ("parquet", "csv"), "--dense": ("parquet", "csv"),
                "--fields": ("synthetic",)}


def refuse_unused_data_options(spec: str, given: dict[str, object]) -> None:
    """An InputError for an option of `DATA_OPTIONS` given (not None) with a --data kind that does not read it."""
    kind = data_kind(spec)[0]
    for option, value in given.items():
        kinds = DATA_OPTIONS[option]
        if value is not None and kind not in kinds:
            readers = " or ".join(f"{k}:PATH" if k in ("parquet", "csv") else k for k in kinds)
            raise InputError(f"{option} is for --data {readers}; --data {spec} does not read it (leave {option} out)")


def parse_rows(value) -> int | None:
    """`--rows`: `auto` (None: vocabulary tables) or a whole number of rows to hash every field into (an int, or
    its text); the number's range is checked where the tables are made."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() == "auto":
        return None
    if text.isascii() and text.isdigit():
        return int(text)
    raise InputError(f"--rows {value!r}: give auto (one row per value of the training split) or a whole number of "
                     "rows to hash every field into, such as 100000")


def load_data(spec: str, label: str | None, sparse: str | None, dense: str | None, samples: int | None,
              fields: int, rows: int | None, dim: int, seed: int, warn: Callable[[str], None] | None = None,
              drift: float = 0.0) -> Dataset:
    """`synthetic`, `movielens[:PATH]`, `criteo:PATH`, `parquet:PATH` or `csv:PATH` (the latter two with --label
    and --sparse).

    `rows` None (`--rows auto`): vocabulary tables of the training split (`data` module docstring); for synthetic
    data the values are drawn on tables of `TRAIN_ROWS` rows first. `drift`: synthetic data only. `warn` gets
    data warnings (NaN dense values read as 0); default: printed to stderr.
    """
    more = {} if warn is None else {"warn": warn}
    kind, path = data_kind(spec)
    if drift and kind != "synthetic":
        raise InputError(f"--drift is for --data synthetic, whose popularity it moves; --data {spec} brings its "
                         "own order in time (leave --drift out)")
    if kind == "synthetic":
        ds = synthetic(samples=2_000_000 if samples is None else samples, fields=fields,
                       rows=TRAIN_ROWS if rows is None else rows, dim=dim, seed=seed, drift=drift,
                       vocabulary=rows is None)
    else:
        data_files(spec)
        if samples is not None and samples < 1:
            raise InputError(f"--samples must be at least 1, got {samples}")
        if kind == "movielens":
            ds = read_movielens(path or None, rows=rows, samples=samples)
        elif kind == "criteo":
            ds = read_criteo(path, rows=rows, samples=samples, **more)
        elif not label or not _columns(sparse):
            raise InputError(f"--data {kind}:PATH needs --label and --sparse (and optionally --dense) column lists")
        else:
            ds = read_table(path, label, _columns(sparse), _columns(dense, "--dense"), rows=rows, samples=samples,
                            **more)
    if ds.vocabulary:  # their size is known now
        check_model_memory(spec, ds.rows, dim)
    return ds


def train_config(**kw) -> TrainConfig:
    """TrainConfig from user values (CLI options or sweep knobs), with their bounds checked as input errors."""
    for key in ("batch", "epochs", "eval_every", "interval"):
        if kw.get(key) is not None and not 1 <= kw[key] < MAX_BYTES:  # int64 in the outputs (a sweep's points)
            raise InputError(f"--{key.replace('_', '-')} must be at least 1 and below 2**62, got {kw[key]}")
    for key in ("lr_emb", "lr_mlp"):
        if key in kw and not (math.isfinite(kw[key]) and kw[key] > 0):
            raise InputError(f"--{key.replace('_', '-')} must be a positive number, got {kw[key]}")
    if "size_from" in kw and not (math.isfinite(kw["size_from"]) and 0 < kw["size_from"] <= 1):
        raise InputError(f"--size-from must be in (0, 1] (the share of the training split that policies sized "
                         f"before training see, from its start), got {kw['size_from']}")
    tcfg = TrainConfig(**kw)
    if tcfg.dim < 1 or tcfg.chunk < 1 or tcfg.dim % tcfg.chunk:
        raise InputError(f"--chunk {tcfg.chunk} must divide --dim {tcfg.dim} (both positive)")
    return tcfg


def parse_seeds(text: str) -> list[int]:
    """`0,1,2`: distinct non-negative integers, in the order given."""
    items = [x.strip() for x in str(text).split(",")]
    if not any(items) or not all(items):
        raise InputError(f"--seeds {text!r}: give comma-separated integers such as 0,1,2 (no empty items)")
    try:
        seeds = [int(x) for x in items]
    except ValueError:
        raise InputError(f"--seeds {text!r}: give comma-separated integers such as 0,1,2") from None
    for x in seeds:
        check_seed(x, f"--seeds {text!r}: each seed")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds {text!r} lists a seed twice; each seed is one more training of every point")
    return seeds


@dataclass
class TrainOutputs:
    summary: dict               # the train_summary.json object
    curve: pl.DataFrame         # curve.parquet


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _std(values: list) -> float | None:
    """Sample standard deviation (n - 1), or None with fewer than two values."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def window_samples(ds: Dataset, tcfg: TrainConfig) -> int:
    """Samples of the sizing window: the first max(1, floor(size_from * n)) of the n training samples."""
    n_train = ds.split(tcfg.eval_fraction)[0].stop
    return max(1, math.floor(tcfg.size_from * n_train)) if n_train else 0


def window_lookups(ds: Dataset, tcfg: TrainConfig) -> RowMap:
    """Lookups per (field, row) of the sizing window: the first pass of a policy sized before training (mde, and
    uniform-dim and hash over vocabulary tables)."""
    sparse = ds.sparse[:window_samples(ds, tcfg)]
    counts = RowMap(sparse.shape[1])
    for f in range(sparse.shape[1]):
        counts.count(np.full(sparse.shape[0], f, np.int32), sparse[:, f].astype(np.int64))
    return counts


def unseen_share(ds: Dataset, tcfg: TrainConfig) -> float:
    """The share of evaluation lookups (samples x fields) whose row the sizing window never looked up: with
    vocabulary tables, values the window never saw (the out-of-vocabulary row counts as never seen, since no
    training value reads it); with hashed tables, rows (a new value on a row a window value hashed to counts as
    seen, as the model sees it)."""
    _, ev = ds.split(tcfg.eval_fraction)
    window, evaluated = ds.sparse[:window_samples(ds, tcfg)], ds.sparse[ev]
    if evaluated.size == 0:
        return 0.0
    unseen = 0
    for f in range(ds.sparse.shape[1]):
        seen = np.zeros(ds.rows[f], bool)
        seen[window[:, f]] = True
        if ds.vocabulary:
            seen[OOV_ROW] = False
        unseen += int((~seen[evaluated[:, f]]).sum())
    return unseen / evaluated.size


def touched_rows(ds: Dataset, tcfg: TrainConfig) -> list[int]:
    """Distinct rows of each field in the training split: what any policy can ever be asked for."""
    tr, _ = ds.split(tcfg.eval_fraction)
    return [int(np.unique(ds.sparse[tr, f]).size) for f in range(ds.sparse.shape[1])]


@dataclass(frozen=True)
class TrainPlan:
    """The runs of a training command, checked, and the schedule they share."""

    tables: list[TableSpec]    # the data's embedding tables at the model's dim and chunk
    runs: list[Run]            # budgets x policies (`plan.plan`), each config with the schedule's interval
    tcfg: TrainConfig          # with `interval` and `eval_every` set (`loop.schedule`)
    auto: list[str]            # the schedule's settings derived from the run's length
    steps: int                 # training steps of one run


def plan_training(first: Dataset, policies: list[str], budgets, tcfg: TrainConfig, rcfg: ReplayConfig,
                  seeds: int = 1, emit: bool = False) -> TrainPlan:
    """Plan one training command on its (first seed's) data: the runs (`plan.plan`) and the schedule.

    `emit`: the run's lookups are recorded (--emit-trace, --emit-importance), which needs one run and one seed.

    The pruning interval is part of the training schedule: `tcfg.interval` (and `tcfg.eval_every`), or from
    the run's length when None (`loop.schedule`); `rcfg.interval` is not used.
    """
    if rcfg.interval != ReplayConfig().interval:
        raise ValueError("the trainer's pruning interval is TrainConfig.interval, not ReplayConfig.interval")
    if len(first) < 2:
        raise InputError("need at least 2 samples (one to train on, one to evaluate)")
    tables = train_tables(first.rows, tcfg.dim, tcfg.chunk, first.sparse_names)
    runs = plan(tables, policies, budgets, rcfg, check=False)
    if emit and (len(runs) != 1 or seeds != 1):
        raise InputError("--emit-trace and --emit-importance record one training run: give one --policy, one "
                         f"--budget and one seed (got {len(runs)} runs x {seeds} seeds)")
    check_runs(runs, first.vocabulary)  # every check before any training: a bad budget fails first
    n_train = first.split(tcfg.eval_fraction)[0].stop
    auto = [k for k in ("interval", "eval_every") if getattr(tcfg, k) is None]
    steps = total_steps(tcfg, n_train)
    tcfg = schedule(tcfg, steps)
    runs = [replace(run, config=replace(run.config, interval=tcfg.interval)) for run in runs]
    return TrainPlan(tables, runs, tcfg, auto, steps)


def run_all(data: Dataset | Callable[[int], Dataset], data_spec: str, policies: list[str], budgets,
            tcfg: TrainConfig, rcfg: ReplayConfig, emit_trace: Path | None = None,
            emit_importance: Path | None = None, progress: Callable[[int, int], None] | None = None,
            seeds: list[int] | None = None, drift: float = 0.0) -> TrainOutputs:
    """Train one model per policy, budget and seed (keys NAME@BUDGET) and collect accuracy and memory.

    `data` is the data set, or a function of the seed that makes it (synthetic data is drawn per seed;
    a file is the same for every seed, only the model's initial parameters change). `seeds` default to
    `tcfg.seed`; `budgets` as `plan.parse_budgets` takes them; the schedule as `plan_training` sets it.
    `progress(done, total)` counts training steps over every run and seed. `drift`: the synthetic data's
    (recorded in the summary).

    Each seed's policies work on its own data's tables (vocabulary tables of synthetic data differ between
    seeds: a budget given as a fraction is that fraction of each seed's dense size); the summary's tables,
    budgets and dense size are the first seed's.

    Policies sized before training (`policies.sized_from_window`) see the lookups of the sizing window, the
    first `tcfg.size_from` of each seed's training split; the summary says what each run knew (`knew`), the
    share of evaluation lookups that window never saw (`unseen_share`, mean over the seeds) and the memory at
    which each policy reaches `full`'s AUC (`equal_quality`).
    """
    seeds = [tcfg.seed] if seeds is None else list(seeds)
    datasets = (lambda seed: data) if isinstance(data, Dataset) else data
    first = datasets(seeds[0])
    planned = plan_training(first, policies, budgets, tcfg, rcfg, len(seeds), bool(emit_trace or emit_importance))
    tables, runs, tcfg, steps = planned.tables, planned.runs, planned.tcfg, planned.steps
    total, done = steps * len(runs) * len(seeds), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)
    per_seed: dict[str, list[dict]] = {run.key(True): [] for run in runs}
    curve, teacher, unseen = [], [], []
    for seed in seeds:
        ds = first if seed == seeds[0] else datasets(seed)
        tcfg_s = replace(tcfg, seed=seed)
        window = (window_lookups(ds, tcfg_s) if any(sized_from_window(n, ds.vocabulary) for n in policies)
                  else None)
        unseen.append(unseen_share(ds, tcfg_s))
        trained: dict[str, str] = {}  # a budget-independent policy (full) -> its key trained at this seed
        for run, seed_run in zip(runs, runs if ds.rows == first.rows else seed_runs(ds, policies, budgets, tcfg,
                                                                                   rcfg)):
            name, label, key = run.policy, run.budget_label, run.key(True)
            if POLICIES[name].budget_independent and name in trained:  # the same model at every budget
                per_seed[key].append(dict(per_seed[trained[name]][-1]))
                curve.extend([{**h, "key": key, "budget": label} for h in curve if h["key"] == trained[name]
                              and h["seed"] == seed])
                advance(steps)
                continue
            trained[name] = key
            hook = EngineResidency.build(name, list(seed_run.tables), seed_run.config, window=window,
                                         vocabulary=ds.vocabulary)
            with _recording(tables, emit_trace, emit_importance) as recorder:
                hook.recorder = recorder
                res = train(ds, tcfg_s, hook, progress=lambda done, total: advance(1),
                            eval_extra=lambda hook=hook: _memory_now(hook))
                summary = hook.finish().summary
            per_seed[key].append({
                "seed": seed, "auc": _finite(res.auc), "logloss": _finite(res.logloss),
                **{k: summary[k] for k in ("payload_bytes_peak", "total_bytes_peak", "chunk_hit_rate",
                                           "dim_hit_rate", "collision_share", "rounds")},
                "samples": res.samples, "seconds": res.seconds, "teacher_auc": res.teacher_auc})
            curve.extend({"key": key, "policy": name, "budget": label, "seed": seed, **h} for h in res.history)
        teacher.append(res.teacher_auc)
    window_words = window_text(tcfg.size_from)
    results = {run.key(True): {**combine_seeds(per_seed[run.key(True)]),
                               "knew": knowledge(run.policy, window_words, first.vocabulary)} for run in runs}
    touched = touched_rows(first, tcfg)
    touched_dense = sum(n * t.dim * t.dtype_bytes for n, t in zip(touched, tables))
    budgets = list(dict.fromkeys((run.budget_label, run.budget_bytes) for run in runs))
    rcfg = runs[0].config
    summary = {"policies": results, "teacher_auc": _mean(teacher),
               "equal_quality": equal_quality([quality_point(run.policy, results[run.key(True)]) for run in runs]),
               "config": {"data": data_spec, "samples": len(first), "fields": len(first.rows),
                          "rows": "auto" if first.vocabulary else first.rows[0], "table_rows": list(first.rows),
                          "table_names": list(first.sparse_names), "drift": drift,
                          "dense": first.dense.shape[1], **config_dict(tcfg),
                          "seeds": seeds, "auto": planned.auto, "steps_run": steps, "gamma": rcfg.gamma,
                          "page_bytes": rcfg.page_bytes, "index_initial": rcfg.index_initial,
                          "mde_exponent": rcfg.mde_exponent, "qr_operation": rcfg.qr_operation, "policies": policies,
                          "budgets": budget_entries(budgets, dense_bytes(tables), touched_dense, tables, rcfg),
                          "dense_bytes": dense_bytes(tables), "touched_rows": touched,
                          "touched_dense_bytes": touched_dense, "sizing_window_samples": window_samples(first, tcfg),
                          "unseen_share": _mean(unseen)}}
    summary["warnings"] = train_warnings(summary, [(run.policy, run.budget_label, run.budget_bytes) for run in runs])
    frame = pl.DataFrame(curve, schema=CURVE_SCHEMA)
    return TrainOutputs(summary, frame.select(CURVE_COLUMNS))


def seed_runs(ds: Dataset, policies: list[str], budgets, tcfg: TrainConfig, rcfg: ReplayConfig) -> list[Run]:
    """The runs of a seed whose data has tables of other sizes than the first seed's (vocabulary tables of
    synthetic data drawn anew): planned on its own tables, the same budgets (a fraction of its own dense size),
    in the same order, with the schedule's interval."""
    tables = train_tables(ds.rows, tcfg.dim, tcfg.chunk, ds.sparse_names)
    runs = [replace(run, config=replace(run.config, interval=tcfg.interval))
            for run in plan(tables, policies, budgets, rcfg, check=False)]
    check_runs(runs, ds.vocabulary)
    return runs


def quality_point(policy: str, stats: dict) -> QualityPoint:
    """A run of a summary (`RUN_KEYS`) as `compare.equal_quality` takes it."""
    return QualityPoint(policy, stats["total_bytes_peak"], stats["payload_bytes_peak"],
                        {e["seed"]: e["auc"] for e in stats["per_seed"] if e["auc"] is not None})


def combine_seeds(entries: list[dict]) -> dict:
    """One run's figures over its seeds (RUN_KEYS)."""
    def col(key):
        return [e[key] for e in entries]
    return {"auc": _mean(col("auc")), "logloss": _mean(col("logloss")), "auc_std": _std(col("auc")),
            "logloss_std": _std(col("logloss")), "payload_bytes_peak": max(col("payload_bytes_peak")),
            "total_bytes_peak": max(col("total_bytes_peak")), "chunk_hit_rate": _mean(col("chunk_hit_rate")),
            "dim_hit_rate": _mean(col("dim_hit_rate")), "collision_share": _mean(col("collision_share")),
            "rounds": min(col("rounds")), "samples": entries[0]["samples"], "seconds": sum(col("seconds")),
            "per_seed": [{k: e[k] for k in SEED_KEYS} for e in entries]}


def _memory_now(hook: EngineResidency) -> dict:
    s = hook.memory()
    return {"payload_bytes": s["payload_bytes_final"], "total_bytes": s["total_bytes_final"],
            "chunk_hit_rate": s["chunk_hit_rate"], "dim_hit_rate": s["dim_hit_rate"]}


@contextlib.contextmanager
def _recording(tables: list[TableSpec], trace: Path | None, importance: Path | None):
    """A recorder over the requested trace and importance writers (None if neither); files appear on success."""
    if trace is None and importance is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        tw = stack.enter_context(TraceWriter(trace, tables, with_grad=True)) if trace is not None else None
        iw = stack.enter_context(ImportanceWriter(importance)) if importance is not None else None
        yield TraceRecorder(tw, iw)


def check_train_out(out: Path) -> Path:
    """`--out` may be new, empty or an earlier `fiitedsim train` folder (replaced); nothing else."""
    refuse_cwd_or_parent(out, "--out", "runs/train")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not _is_train_folder(out):
            raise InputError(f"--out {out} exists and is not a fiitedsim train folder; choose a new folder")
    check_writable(out, directory=True)
    return out


def _is_train_folder(folder: Path) -> bool:
    try:
        summary = loads_json((folder / SUMMARY_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(summary, dict) and "policies" in summary and "config" in summary


def summary_text(summary: dict) -> str:
    return json.dumps(summary, indent=2, allow_nan=False) + "\n"


def write_outputs(out: Path, outputs: TrainOutputs) -> Path:
    """`train_summary.json` and `curve.parquet`, all-or-nothing into `out`."""
    out = check_train_out(out)
    with atomic_path(out.resolve(), directory=True, replaces=(SUMMARY_FILE, CURVE_FILE)) as tmp:
        write_parquet_frame(outputs.curve, tmp / CURVE_FILE)
        (tmp / SUMMARY_FILE).write_text(summary_text(outputs.summary))
    return out
