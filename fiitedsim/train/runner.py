"""`fiitedsim train`: load data, train once per (policy, budget) through the engine, save the results.

Every run starts from the same seeded parameters and sees the same batches, so
runs differ only by their storage policy. The results are `train_summary.json`
(README "train_summary.json") and `curve.parquet`, one row per evaluation of
every run: accuracy beside the policy's memory at that step. Everything except
the `seconds` fields (wall time of the training steps) is a pure function of
the inputs and the seed, so the same command gives byte-identical files.
"""
from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..atomic import atomic_path, refuse_cwd_or_parent
from ..config import ReplayConfig, TableSpec, dense_bytes
from ..errors import InputError
from ..replay import parse_budgets
from ..trace_writer import ImportanceWriter, TraceWriter
from .data import Dataset, movielens_files, read_criteo, read_movielens, read_table, synthetic
from .engine_hook import EngineResidency, TraceRecorder, train_tables
from .loop import TrainConfig, config_dict, train

SUMMARY_FILE, CURVE_FILE = "train_summary.json", "curve.parquet"
#: The defaults of `fiitedsim train --fields/--rows`, and of the `fields`/`rows` knobs of a data sweep.
DEFAULT_FIELDS, DEFAULT_ROWS = 26, 100_000
#: Keys of every run in train_summary.json, in this order (README contract).
RUN_KEYS = ("auc", "logloss", "payload_bytes_peak", "total_bytes_peak", "chunk_hit_rate", "samples", "seconds")
#: Columns of curve.parquet.
CURVE_COLUMNS = ("key", "policy", "budget", "step", "samples", "train_loss", "auc", "logloss", "payload_bytes",
                 "total_bytes", "chunk_hit_rate")


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


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
    if not Path(path).is_file():
        raise InputError(f"--data {spec!r}: file {path} not found")
    return [Path(path)]


def load_data(spec: str, label: str | None, sparse: str | None, dense: str | None, samples: int | None,
              fields: int, rows: int, dim: int, seed: int) -> Dataset:
    """`synthetic`, `movielens[:PATH]`, `criteo:PATH`, `parquet:PATH` or `csv:PATH` (the latter two with --label
    and --sparse)."""
    kind, path = data_kind(spec)
    if kind == "synthetic":
        return synthetic(samples=2_000_000 if samples is None else samples, fields=fields, rows=rows, dim=dim,
                         seed=seed)
    data_files(spec)
    if samples is not None and samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}")
    if kind == "movielens":
        return read_movielens(path or None, rows=rows, samples=samples)
    if kind == "criteo":
        return read_criteo(path, rows=rows, samples=samples)
    if not label or not _columns(sparse):
        raise InputError(f"--data {kind}:PATH needs --label and --sparse (and optionally --dense) column lists")
    return read_table(path, label, _columns(sparse), _columns(dense), rows=rows, samples=samples)


def train_config(**kw) -> TrainConfig:
    """TrainConfig from user values (CLI options or sweep knobs), with their bounds checked as input errors."""
    for key in ("batch", "epochs", "eval_every"):
        if key in kw and kw[key] < 1:
            raise InputError(f"--{key.replace('_', '-')} must be at least 1, got {kw[key]}")
    for key in ("lr_emb", "lr_mlp"):
        if key in kw and not (math.isfinite(kw[key]) and kw[key] > 0):
            raise InputError(f"--{key.replace('_', '-')} must be a positive number, got {kw[key]}")
    tcfg = TrainConfig(**kw)
    if tcfg.dim < 1 or tcfg.chunk < 1 or tcfg.dim % tcfg.chunk:
        raise InputError(f"--chunk {tcfg.chunk} must divide --dim {tcfg.dim} (both positive)")
    return tcfg


@dataclass
class TrainOutputs:
    summary: dict               # the train_summary.json object
    curve: pl.DataFrame         # curve.parquet


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def run_all(ds: Dataset, data_spec: str, policies: list[str], budgets: str, tcfg: TrainConfig,
            rcfg: ReplayConfig, emit_trace: Path | None = None, emit_importance: Path | None = None,
            progress: Callable[[int], None] | None = None) -> TrainOutputs:
    """Train one model per policy and budget (keys NAME@BUDGET) and collect accuracy and memory."""
    tables = train_tables(ds.rows, tcfg.dim, tcfg.chunk, ds.sparse_names)
    runs = [(name, label, bytes_) for label, bytes_ in parse_budgets(budgets, tables) for name in policies]
    if (emit_trace or emit_importance) and len(runs) != 1:
        raise InputError("--emit-trace and --emit-importance record one training run: give one --policy and "
                         f"one --budget (got {len(runs)} runs)")
    hooks = {f"{name}@{label}": (name, label, EngineResidency.build(name, tables, rcfg.with_budget(b, label)))
             for name, label, b in runs}  # built first: a bad budget fails before any training
    if len(ds) < 2:
        raise InputError("need at least 2 samples (one to train on, one to evaluate)")
    results, curve = {}, []
    teacher_auc = None
    for key, (name, label, hook) in hooks.items():
        with _recording(tables, emit_trace, emit_importance) as recorder:
            hook.recorder = recorder
            res = train(ds, tcfg, hook, progress=(lambda done, total: progress(1)) if progress else None,
                        eval_extra=lambda hook=hook: _memory_now(hook))
            summary = hook.finish().summary
        teacher_auc = res.teacher_auc
        results[key] = {"auc": _finite(res.auc), "logloss": _finite(res.logloss),
                        "payload_bytes_peak": summary["payload_bytes_peak"],
                        "total_bytes_peak": summary["total_bytes_peak"],
                        "chunk_hit_rate": summary["chunk_hit_rate"], "samples": res.samples, "seconds": res.seconds}
        for h in res.history:
            curve.append({"key": key, "policy": name, "budget": label, **h})
    summary = {"policies": results, "teacher_auc": teacher_auc,
               "config": {"data": data_spec, "samples": len(ds), "fields": len(ds.rows), "rows": list(ds.rows),
                          "dense": ds.dense.shape[1], **config_dict(tcfg), "gamma": rcfg.gamma,
                          "interval": rcfg.interval, "page_bytes": rcfg.page_bytes, "policies": policies,
                          "budgets": [{"label": label, "bytes": b} for label, b in parse_budgets(budgets, tables)],
                          "dense_bytes": dense_bytes(tables)}}
    frame = pl.DataFrame(curve, schema={"key": pl.Utf8, "policy": pl.Utf8, "budget": pl.Utf8, "step": pl.Int64,
                                        "samples": pl.Int64, "train_loss": pl.Float64, "auc": pl.Float64,
                                        "logloss": pl.Float64, "payload_bytes": pl.Int64, "total_bytes": pl.Int64,
                                        "chunk_hit_rate": pl.Float64})
    return TrainOutputs(summary, frame.select(CURVE_COLUMNS))


def _memory_now(hook: EngineResidency) -> dict:
    s = hook.memory()
    return {"payload_bytes": s["payload_bytes_final"], "total_bytes": s["total_bytes_final"],
            "chunk_hit_rate": s["chunk_hit_rate"]}


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
    return out


def _is_train_folder(folder: Path) -> bool:
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(summary, dict) and "policies" in summary and "config" in summary


def summary_text(summary: dict) -> str:
    return json.dumps(summary, indent=2, allow_nan=False) + "\n"


def write_outputs(out: Path, outputs: TrainOutputs) -> Path:
    """`train_summary.json` and `curve.parquet`, all-or-nothing into `out`."""
    out = check_train_out(out)
    with atomic_path(out.resolve(), directory=True) as tmp:
        outputs.curve.write_parquet(tmp / CURVE_FILE)
        (tmp / SUMMARY_FILE).write_text(summary_text(outputs.summary))
    return out
