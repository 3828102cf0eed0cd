"""A sweep's output folder: OUT/points/KEY.json + KEY.parquet per point (written as each finishes, checked
when read back), then OUT/points.parquet (one row per point) and OUT/report.html (points grouped as replays).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..atomic import atomic_path, check_writable, refuse_cwd_or_parent, write_parquet_frame
from ..checks import replay_warnings, train_warnings
from ..errors import InputError
from ..parquet import UnreadableFrame, read_frame
from ..parsing import loads_json
from ..plan import run_key
from ..policies.base import SUMMARY_KEYS
from ..replay import RESULTS_FORMAT, ReplayResults
from .file import GENERATE_KEYS, KNOB_BY_NAME, TRAIN_KNOB_BY_NAME, IntOrAuto
from .points import SWEEP_FORMAT, Point, TrainPointSpec

POINTS_DIR = "points"
POINTS_FILE = "points.parquet"
REPORT_FILE = "report.html"


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
    """The stored record of a point, or None when it is absent, damaged or of another layout: its JSON, and its
    series (a replay point's time series, a training point's curve), checked as `fiitedsim report` checks them."""
    try:
        record = loads_json((out / POINTS_DIR / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    ok = (isinstance(record, dict) and record.get("format") == SWEEP_FORMAT and record.get("key") == key
          and _valid_summary(record.get("summary")) and _valid_series(out / POINTS_DIR / f"{key}.parquet",
                                                                        "trace" not in record["summary"]))
    return record if ok else None


def _valid_series(path: Path, training: bool) -> bool:
    """A stored point's Parquet file is readable and holds a curve (training) or time series in its ranges."""
    from ..report.load import curve_problem, series_problem

    try:
        frame = read_frame(path)
    except UnreadableFrame:
        return False
    return (curve_problem if training else series_problem)(frame) is None


def _valid_summary(summary) -> bool:
    """A stored point's summary has the types and ranges its tables and report read (a changed file is recomputed)."""
    if not isinstance(summary, dict):
        return False
    if "trace" in summary:  # a replay point: the summary.json checks of `fiitedsim report`
        from ..report import check_summary
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


# Summaries: points.parquet and the report

#: Polars types of the axis columns (knobs by their kind; "auto" or a number: strings, `_cell`).
_KIND_DTYPE = {int: pl.Int64, float: pl.Float64, str: pl.String, bool: pl.Boolean, IntOrAuto: pl.String}


def _cell(value):
    """An axis value as its points.parquet column holds it: an int of an "auto"-or-number knob as its digits."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _knob_cells(axes: dict, knobs: dict) -> dict:
    """`axes` with the values of the "auto"-or-number knobs among `knobs` (name -> Knob) as `_cell` makes them."""
    return {k: _cell(v) if k in knobs and knobs[k].kind is IntOrAuto else v for k, v in axes.items()}


def _records(out: Path, points: list[Point]) -> list[dict]:
    records = []
    for p in points:
        record = _stored(out, p.key)
        if record is None:  # the folder was changed under us
            raise InputError(f"{out}: point {p.key} vanished while the sweep ran; run the sweep again")
        records.append(record)
    return records


@dataclass(frozen=True)
class StoredPoint:
    """A computed point as its folder keeps it (points/KEY.json): what the report is made of, so a report drawn
    right after the sweep and one drawn later from the folder (`fiitedsim report OUT`) are the same page."""

    key: str
    axes: dict       # column -> value, as points.parquet's grid order lists the point
    summary: dict    # the point's summary.json (replay) or train_summary.json (training) object

    @property
    def training(self) -> bool:
        return "trace" not in self.summary

    @property
    def policy(self) -> str:
        return self.axes["policy"]

    @property
    def budget_label(self) -> str:
        return self.axes["budget"]

    @property
    def budget_bytes(self) -> int:
        return self.summary["config"]["budgets"][0]["bytes"]

    @property
    def seed(self):
        """A training point's seed (the model's initial parameters and, for synthetic data, the data's)."""
        return self.summary["config"]["seeds"][0]

    @property
    def stats(self) -> dict:
        """The point's one run: its figures in the summary."""
        [run] = self.summary["policies"].values()
        return run


def stored_points(out: Path, points: list[Point]) -> list[StoredPoint]:
    """The computed points of a sweep just run, in grid order."""
    return [StoredPoint(p.key, p.axes, record["summary"]) for p, record in zip(points, _records(out, points))]


def load_sweep_points(out: str | Path) -> list[StoredPoint]:
    """The points of a finished sweep folder, in grid order (points.parquet's rows), each as stored; a folder
    whose sweep did not finish, or whose files were changed, is an InputError that says to run it again."""
    out = Path(out)
    rerun = "run the sweep again (`fiitedsim sweep FILE --out " + str(out) + "`; stored points are reused)"
    try:
        keys = read_frame(out / POINTS_FILE, columns=["key"])["key"].to_list()
    except UnreadableFrame as exc:
        raise InputError(f"{out}/{POINTS_FILE} is missing or not readable ({exc}): the sweep did not finish; "
                         f"{rerun}") from None
    points = []
    for key in keys:
        record = _stored(out, key) if isinstance(key, str) else None
        if record is None:
            raise InputError(f"{out}: point {key} of {POINTS_FILE} is missing or damaged in {POINTS_DIR}/; {rerun}")
        points.append(StoredPoint(key, record["point"], record["summary"]))
    if not points:
        raise InputError(f"{out}/{POINTS_FILE} lists no points; {rerun}")
    if len({p.training for p in points}) > 1:
        raise InputError(f"{out}: its points mix replays and trainings; {rerun} into a new folder")
    return points


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
        rows.append({"key": p.key, **_knob_cells(p.axes, TRAIN_KNOB_BY_NAME), "budget_bytes": p.spec.budget_bytes,
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
        axes = _knob_cells(p.axes, KNOB_BY_NAME)
        for c in ("trace", *generated, "policy", "budget", *knob_names):
            columns[c].append(axes[c])
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


def _groups(points: list[StoredPoint], within: tuple[str, ...] = ("policy", "budget")) -> dict[tuple, list]:
    """Points by their axes other than those `within` a group, in grid order: the groups of the report."""
    groups: dict[tuple, list[StoredPoint]] = {}
    for p in points:
        rest = tuple((k, v) for k, v in p.axes.items() if k not in within)
        groups.setdefault(rest, []).append(p)
    return groups


def _title(rest: tuple) -> str:
    return ", ".join(f"{k} {v}" for k, v in rest)


def _group_budgets(members: list[StoredPoint]) -> list[dict]:
    """The group's budgets as a summary lists them (label, bytes, their shares of the dense sizes and the
    layout): each as its points' summaries hold it (a point's summary has its one budget; the group's points
    share tables and knobs, so one budget's points share its entry)."""
    by_label = {p.budget_label: p for p in members}
    return [p.summary["config"]["budgets"][0] for p in by_label.values()]


def report_groups(out: Path, points: list[StoredPoint]) -> list[tuple[str, ReplayResults]]:
    """Points that differ only in policy and budget form one replay-like result (keys NAME@BUDGET), with the
    warnings a replay of all of them would give (`checks.replay_warnings`: identical results across them too)."""

    results = []
    for rest, members in _groups(points).items():
        budgets = list(dict.fromkeys(p.budget_label for p in members))
        keyed = len(budgets) > 1
        first = members[0].summary
        trace = first["trace"]
        summary = {"format": RESULTS_FORMAT, "policies": {}, "config": dict(first["config"]), "trace": trace}
        summary["config"]["budgets"] = _group_budgets(members)
        summary["config"]["policies"] = list(dict.fromkeys(p.policy for p in members))
        series, runs = {}, []
        for p in members:
            key = run_key(p.policy, p.budget_label) if keyed else p.policy
            summary["policies"][key] = p.summary["policies"][p.policy]
            series[key] = read_frame(out / POINTS_DIR / f"{p.key}.parquet")
            runs.append((key, p.policy, p.budget_label, p.budget_bytes))
        summary["warnings"] = replay_warnings(summary, runs)
        results.append((_title(rest), ReplayResults(summary, series)))
    return results


def train_report_groups(out: Path, points: list[StoredPoint]) -> list[tuple[str, dict, pl.DataFrame]]:
    """Training points that differ only in policy, budget and seed form one `fiitedsim train --seeds`-like result.

    Its train summary holds their runs (keys NAME@BUDGET, as `train --policy ... --budget ...` would key
    them), each run's seeds combined as `train --seeds` combines them (mean, spread, per_seed), and the
    first point's configuration with the group's policies, budgets and seeds; its curve is theirs.
    """
    from ..train.runner import combine_seeds

    results = []
    for rest, members in _groups(points, ("policy", "budget", "seed")).items():
        first = members[0].summary
        config = dict(first["config"])
        config["policies"] = list(dict.fromkeys(p.policy for p in members))
        config["budgets"] = _group_budgets(members)
        config["seeds"] = list(dict.fromkeys(p.seed for p in members))
        per_seed: dict[str, list[dict]] = {}
        knew: dict[str, str] = {}
        for p in members:
            [(key, run)] = p.summary["policies"].items()
            per_seed.setdefault(key, []).extend(run["per_seed"])
            knew.setdefault(key, run.get("knew", ""))
        teacher = [e["teacher_auc"] for entries in per_seed.values() for e in entries[:1]]
        summary = {"policies": {key: {**combine_seeds(entries), "knew": knew[key]}
                                for key, entries in per_seed.items()},
                   "teacher_auc": first["teacher_auc"] if len(config["seeds"]) == 1 else _mean_or_none(teacher),
                   "config": config}
        summary["warnings"] = train_warnings(summary, [(p.policy, p.budget_label, p.budget_bytes)
                                                       for p in members if p.seed == config["seeds"][0]])
        curve = pl.concat([read_frame(out / POINTS_DIR / f"{p.key}.parquet") for p in members])
        results.append((_title(rest), summary, curve))
    return results


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def render_sweep_folder(out: Path, points: list[StoredPoint]) -> str:
    """A sweep's report page from its stored points: what `fiitedsim sweep` writes to OUT/report.html and
    `fiitedsim report OUT` draws again, byte for byte."""
    from ..report import render_sweep_report, render_train_sweep_report

    if points[0].training:
        return render_train_sweep_report(train_report_groups(out, points), points)
    return render_sweep_report(report_groups(out, points), seed_spreads(points), points)


def write_sweep_report(out: Path, points: list[Point] | list[StoredPoint], target: Path | None = None) -> Path:
    """OUT/report.html (or `target`) all-or-nothing, from the sweep's points (as planned, or as stored)."""
    stored = points if points and isinstance(points[0], StoredPoint) else stored_points(out, points)
    page = render_sweep_folder(out, stored)
    target = out / REPORT_FILE if target is None else target
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


def seed_spreads(points: list[StoredPoint]) -> list[tuple[str, list, dict[str, list[dict]]]]:
    """Replay points on generated traces that differ only in the traces' seed (and policy and budget): per such
    set of two or more seeds, (title, seeds, policy@budget -> the points' summaries in seed order)."""
    if not points or "generate_seed" not in points[0].axes:
        return []
    out_sets = []
    for rest, members in _groups(points, ("trace", "generate_seed", "policy", "budget")).items():
        seeds = list(dict.fromkeys(p.axes["generate_seed"] for p in members))
        if len(seeds) < 2:
            continue
        runs: dict[str, dict] = {}
        for p in members:
            runs.setdefault(run_key(p.policy, p.budget_label), {})[p.axes["generate_seed"]] = \
                p.summary["policies"][p.policy]
        title = _title(rest) or "generated traces"
        out_sets.append((title, seeds, {key: [by_seed[s] for s in seeds] for key, by_seed in runs.items()}))
    return out_sets
