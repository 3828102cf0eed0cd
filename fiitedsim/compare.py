"""Fair comparisons, without HTML: each run's kind (learned online, sized before training, cache, the dense
reference), the paired tie rule over seeds (`paired_verdict`), policies at equal total memory (curves linear in
log memory between measured points, never extrapolated, compared at common memories) and memory at equal quality
(`equal_quality`: the least memory at which a policy's AUC is at the dense reference's). Light: a trainer's
summary uses it as well as the reports."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .plan import parse_run_key
from .policies import DENSE_REFERENCE, POLICIES, knowledge  # noqa: F401 (DENSE_REFERENCE: API)


@dataclass(frozen=True)
class SummaryRun:
    """A run as a saved summary keys it (`runs_of`); `plan.Run` is a run to compute."""
    key: str            # the summary key: NAME or NAME@BUDGET (`plan.run_key`)
    policy: str
    budget: str         # budget label as given on the command line
    budget_bytes: int | None


def runs_of(summary: dict) -> list[SummaryRun]:
    budgets = {b["label"]: b.get("bytes") for b in summary["config"].get("budgets", []) if isinstance(b, dict)}
    only = next(iter(budgets)) if len(budgets) == 1 else ""
    runs = []
    for key in summary["policies"]:
        name, label = parse_run_key(key)
        label = label if label is not None else only
        runs.append(SummaryRun(key, name, label, budgets.get(label)))
    return runs


def policy_order(values) -> list:
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------
# What a policy is and what it knew: learned online, sized before training, a cache, the dense reference

CACHE_NOTE = "needs a full backing copy: a miss is served from it, not lost"
#: Kind -> how charts and tables name it (the charts' line style follows it). "online" and "sized" are ranked
#: together, each run labelled with what it knew (`knew`).
KINDS = {"online": "pruning, learned online", "sized": "pruning, sized before training",
         "cache": "cache (full backing copy)", "reference": "dense reference"}
#: The kinds ranked against each other.
RANKED = ("online", "sized")


def policy_kind(name: str) -> str:
    """`cache` (misses served from a full copy elsewhere), `reference` (the dense table), `sized` (sized before
    training: from the table sizes, or from a first pass over a window of the lookups) or `online` (learns in
    training from the lookups so far; also any policy fiitedsim does not know)."""
    cls = POLICIES.get(name)
    if cls is None:
        return "online"
    if cls.is_cache:
        return "cache"
    return "online" if cls.sizing == "online" else "reference" if cls.sizing == "dense" else "sized"


def knew(name: str, stats: dict) -> str:
    """What a run knew: its summary's `knew` (training), else what a replay's policy knows (a replay's first pass
    reads the whole trace)."""
    text = stats.get("knew") if isinstance(stats, dict) else None
    if isinstance(text, str) and text:
        return text
    if name not in POLICIES:
        return "unknown"
    return knowledge(name, "the whole trace (a first pass)", training=False)


# ---------------------------------------------------------------------------
# Comparisons: differences over seeds, and curves compared at equal memory


@dataclass(frozen=True)
class Paired:
    """The verdict on a - b from paired per-seed values (the same seed: the same data and initial model)."""
    outcome: str            # "better" (a beats b), "worse" (b beats a), "tie", "one seed" or "no seeds"
    mean: float | None      # mean of the per-seed differences a_i - b_i
    sd: float | None        # their sample standard deviation (n - 1); None with fewer than two seeds
    agree: int              # seeds whose difference has the sign of the mean (0 when the mean is 0)
    seeds: int


def paired_verdict(a: Sequence[float], b: Sequence[float]) -> Paired:
    """a beats b when the mean of the paired differences d_i = a_i - b_i exceeds their sample standard
    deviation AND every d_i is positive (b beats a in the mirror case); anything else is a tie. One seed has no
    spread, so no verdict ("one seed"); a difference is still reported."""
    if len(a) != len(b):
        raise ValueError("paired values need one value of each side per seed")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(d)
    if n == 0:
        return Paired("no seeds", None, None, 0, 0)
    mean = sum(d) / n
    agree = sum(1 for x in d if (x > 0 if mean > 0 else x < 0)) if mean != 0 else 0
    if n == 1:
        return Paired("one seed", mean, None, agree, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if mean > sd and all(x > 0 for x in d):
        outcome = "better"
    elif -mean > sd and all(x < 0 for x in d):
        outcome = "worse"
    else:
        outcome = "tie"
    return Paired(outcome, mean, sd, agree, n)


#: Why a training run has no AUC (null in train_summary.json): AUC ranks positives against negatives.
NO_AUC = "AUC is undefined: the evaluation split holds one class only"


def no_spread_reason(trained: Sequence, with_auc: Sequence) -> str | None:
    """Why the paired tie rule cannot be applied to training runs, as a sentence, or None when it can: `trained`
    are the seeds trained, `with_auc` those with an AUC for every run (the pairs of the paired rule)."""
    if len(with_auc) >= 2:
        return None
    if not with_auc:
        return NO_AUC + (", on every seed" if len(trained) > 1 else "")
    if len(trained) < 2:
        return "One seed: no spread, cannot call ties"
    return (f"Only seed {with_auc[0]} has an AUC for every run (on the others the evaluation split holds one class "
            "only): no spread, cannot call ties")


@dataclass(frozen=True)
class CurvePoint:
    """One measured run of a policy: its memory, its value, the value per seed (training) and its budget."""
    memory: float
    value: float
    seeds: tuple[float, ...] = ()
    budget: str = ""


def make_curve(points: Sequence[CurvePoint]) -> list[CurvePoint]:
    """A policy's measured points ordered by memory, ready to interpolate on log memory.

    Points with no memory (a budget too small to store anything) have no place on a log axis and are left
    out; of several points at the same memory the best value is kept (the first of equal ones).
    """
    best: dict[float, CurvePoint] = {}
    for p in points:
        if p.memory > 0 and math.isfinite(p.value) and (p.memory not in best or p.value > best[p.memory].value):
            best[p.memory] = p
    return [best[m] for m in sorted(best)]


def interpolate_log(curve: Sequence[CurvePoint], memory: float) -> CurvePoint | None:
    """The curve at `memory`: linear in log(memory) between the two measured points around it (their seeds
    alike), the point itself where one was measured, None outside the measured range (no extrapolation)."""
    if not curve or memory <= 0 or memory < curve[0].memory or memory > curve[-1].memory:
        return None
    for lo, hi in zip(curve, curve[1:]):
        if lo.memory <= memory <= hi.memory:
            if memory == lo.memory:
                return lo
            if memory == hi.memory:
                return hi
            t = (math.log(memory) - math.log(lo.memory)) / (math.log(hi.memory) - math.log(lo.memory))
            return CurvePoint(memory, lo.value + t * (hi.value - lo.value),
                              tuple(x + t * (y - x) for x, y in zip(lo.seeds, hi.seeds)))
    return curve[0] if memory == curve[0].memory else None


#: Memory points of the equal-memory tables: this many across the range every policy covers, or (when no memory
#: is covered by all) `OVERLAP_POINTS` across each stretch of memory that two or more policies cover.
COMMON_POINTS, OVERLAP_POINTS = 5, 3


def log_grid(lo: float, hi: float, count: int) -> list[float]:
    """`count` memories evenly spaced on a log scale from lo to hi, both ends exact (one point if lo == hi)."""
    if lo == hi or count < 2:
        return [lo]
    inner = [lo * (hi / lo) ** (i / (count - 1)) for i in range(1, count - 1)]
    return [lo, *inner, hi]


def memory_points(curves: dict[str, list[CurvePoint]]) -> tuple[list[float], bool]:
    """The memories the equal-memory table compares at, and whether every policy's range covers them.

    Only curves with two or more measured memories span a range [first memory, last memory]. If all the
    ranges share a stretch [largest first memory, smallest last memory]: `COMMON_POINTS` log-spaced memories
    across it. Otherwise, for each maximal stretch of memory inside the ranges of at least two policies,
    `OVERLAP_POINTS` log-spaced memories across it (none where no two ranges overlap).
    """
    spans = [(c[0].memory, c[-1].memory) for c in curves.values() if len(c) >= 2]
    if not spans:
        return [], False
    lo, hi = max(a for a, _ in spans), min(b for _, b in spans)
    if lo <= hi:
        return log_grid(lo, hi, COMMON_POINTS), True
    ends = sorted({x for span in spans for x in span})
    stretches: list[list[float]] = []
    for a, b in zip(ends, ends[1:]):  # elementary pieces between consecutive range ends
        if sum(1 for x, y in spans if x <= a and b <= y) >= 2:
            if stretches and stretches[-1][1] == a:
                stretches[-1][1] = b
            else:
                stretches.append([a, b])
    # ranges that only touch (one's last memory is another's first) overlap in that single memory
    for x in ends:
        if sum(1 for a, b in spans if a <= x <= b) >= 2 and not any(a <= x <= b for a, b in stretches):
            stretches.append([x, x])
    return [m for a, b in sorted(stretches) for m in log_grid(a, b, OVERLAP_POINTS)], False


@dataclass(frozen=True)
class EqualRow:
    memory: float
    values: dict[str, CurvePoint | None]    # every policy's interpolated point (None outside its range)
    best: str | None                        # the highest among the ranked (non-cache) policies measured here


def equal_memory_rows(curves: dict[str, list[CurvePoint]]) -> tuple[list[EqualRow], bool]:
    """Each policy's curve at the common memory points (`memory_points`), with the best ranked policy.

    Caches are interpolated but never "best": their misses are served from a full copy elsewhere. Returns
    the rows and whether every policy covers them.
    """
    grid, common = memory_points(curves)
    rows = []
    for m in grid:
        values = {name: interpolate_log(c, m) if len(c) >= 2 else None for name, c in curves.items()}
        measured = [n for n, v in values.items() if v is not None]
        ranked = [n for n in measured if policy_kind(n) != "cache"]
        best = max(ranked, key=lambda n: values[n].value) if ranked else None  # first of equal values
        rows.append(EqualRow(m, values, best))
    return rows, common


# ---------------------------------------------------------------------------
# Memory at equal quality: the least memory at which a policy's AUC is at the dense reference's

#: A policy is at `full`'s quality when the paired rule does not put it below `full` and its mean AUC is at most
#: this far below `full`'s (the FIITED paper's framing: memory saved "at unchanged quality").
QUALITY_TOLERANCE = 0.005
#: Between two measured points the crossing is searched at this many steps of log memory.
QUALITY_STEPS = 1000


def at_quality(values: Sequence[float], reference: Sequence[float], tolerance: float = QUALITY_TOLERANCE) -> bool:
    """Whether per-seed AUCs `values` are at the reference's (per seed, the same seeds in the same order): the
    paired rule does not call them below it ("worse") and the mean difference is at least -`tolerance`. With
    one seed the paired rule gives no verdict, so the mean alone decides."""
    verdict = paired_verdict(values, reference)
    return verdict.outcome != "worse" and verdict.mean is not None and verdict.mean >= -tolerance


def least_memory_at_quality(curve: Sequence[CurvePoint], reference: Sequence[float],
                            tolerance: float = QUALITY_TOLERANCE) -> float | None:
    """The least memory at which the curve (`make_curve`: measured points by memory, per-seed values in
    `seeds`) is at the reference's quality (`at_quality`), or None where no measured point is.

    Below the first point nothing is claimed (no extrapolation): if the first point is at quality, its memory is
    the answer. Otherwise, between the last point below quality and the first one at it, the per-seed values
    are interpolated linearly in log memory (`interpolate_log`'s rule) and the first of `QUALITY_STEPS` steps
    at quality is the answer.
    """
    below = None
    for point in curve:
        if at_quality(point.seeds, reference, tolerance):
            if below is None:
                return point.memory
            lo, hi = math.log(below.memory), math.log(point.memory)
            for j in range(1, QUALITY_STEPS):
                t = j / QUALITY_STEPS
                seeds = [x + t * (y - x) for x, y in zip(below.seeds, point.seeds)]
                if at_quality(seeds, reference, tolerance):
                    return math.exp(lo + t * (hi - lo))
            return point.memory   # the measured point itself (not its interpolated double, which may round off)
        below = point
    return None


@dataclass(frozen=True)
class QualityPoint:
    """One measured run for `equal_quality`: its policy, peak memories and AUC per seed."""
    policy: str
    total_bytes: float
    payload_bytes: float
    seeds: dict    # seed -> AUC (finite ones only)


def equal_quality(points: Sequence[QualityPoint], reference: str = "full") -> dict | None:
    """Per policy, the least total memory and the least payload at which its AUC is at the reference's
    (`least_memory_at_quality` on each memory axis; the reference's own run is its memory), as
    {"total_bytes": ..., "payload_bytes": ...} with None where not reached in the measured range. The seeds
    compared are those every run has. None when the reference was not trained (or has no AUC)."""
    ref = [p for p in points if p.policy == reference and p.seeds]
    if not ref:
        return None
    seeds = [s for s in ref[0].seeds if all(s in p.seeds for p in points if p.seeds)]
    if not seeds:
        return None
    base = [ref[0].seeds[s] for s in seeds]
    out = {}
    for name in policy_order(p.policy for p in points):
        mine = [p for p in points if p.policy == name and all(s in p.seeds for s in seeds)]
        figures = {}
        for axis in ("total_bytes", "payload_bytes"):
            curve = make_curve([CurvePoint(float(getattr(p, axis)), sum(p.seeds[s] for s in seeds) / len(seeds),
                                           tuple(p.seeds[s] for s in seeds)) for p in mine])
            least = least_memory_at_quality(curve, base)
            figures[axis] = None if least is None else round(least)
        out[name] = figures
    return out


# ---------------------------------------------------------------------------
# Data for the charts
