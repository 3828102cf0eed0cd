"""The comparison rules of the reports, with expectations worked out by hand.

`paired_verdict` is the tie rule over seeds: A beats B when the mean of the paired per-seed differences
d_i = A_i - B_i exceeds their sample standard deviation and every d_i is positive; anything else is a tie.
`interpolate_log` reads a policy's curve at a memory between two measured points (linear in log memory,
never outside them); `memory_points` picks the memories the equal-memory tables compare at.
"""
from __future__ import annotations

import math

import pytest

from fiitedsim.compare import (
    CurvePoint,
    QualityPoint,
    at_quality,
    equal_memory_rows,
    equal_quality,
    interpolate_log,
    least_memory_at_quality,
    log_grid,
    make_curve,
    memory_points,
    paired_verdict,
    policy_kind,
)

# ---------------------------------------------------------------------------
# The tie rule


def test_every_seed_ahead_by_more_than_the_spread_is_a_win():
    # d = (3, 1, 2): mean 2; deviations (1, -1, 0), sample variance (1 + 1 + 0) / 2 = 1, sd 1; 2 > 1, all d > 0
    v = paired_verdict([3.0, 1.0, 2.0], [0.0, 0.0, 0.0])
    assert (v.outcome, v.mean, v.sd, v.agree, v.seeds) == ("better", 2.0, 1.0, 3, 3)
    # the same pairs the other way round: B beats A
    v = paired_verdict([0.0, 0.0, 0.0], [3.0, 1.0, 2.0])
    assert (v.outcome, v.mean, v.sd, v.agree) == ("worse", -2.0, 1.0, 3)


def test_a_seed_of_the_other_sign_is_a_tie_however_large_the_mean():
    # d = (10, 10, 10, 10, -0.1): mean 39.9 / 5 = 7.98; deviations 2.02 (four times) and -8.08;
    # squares 4 * 4.0804 = 16.3216 and 65.2864, sum 81.608, / 4 = 20.402, sd 4.517: the mean is above it,
    # but the fifth seed disagrees
    v = paired_verdict([10, 10, 10, 10, -0.1], [0, 0, 0, 0, 0])
    assert v.outcome == "tie" and v.agree == 4 and v.seeds == 5
    assert v.mean == pytest.approx(7.98) and v.sd == pytest.approx(math.sqrt(20.402))


def test_every_seed_ahead_but_within_the_spread_is_a_tie():
    # d = (5, 1, 0.5): mean 6.5 / 3 = 2.1667; deviations 2.8333, -1.1667, -1.6667; squares 8.0278 + 1.3611
    # + 2.7778 = 12.1667, / 2 = 6.0833 = 73 / 12, sd 2.4664 > 2.1667
    v = paired_verdict([5, 1, 0.5], [0, 0, 0])
    assert v.outcome == "tie" and v.agree == 3
    assert v.mean == pytest.approx(13 / 6) and v.sd == pytest.approx(math.sqrt(73 / 12))


def test_pairing_sees_a_steady_gap_that_each_sides_own_spread_hides():
    # A = (0.70, 0.80, 0.90) and B = A - 0.01: each side's own spread is 0.1, ten times the gap, but every
    # seed (same data, same initial model) has A ahead by exactly 0.01: d = 0.01 three times, sd 0
    v = paired_verdict([0.70, 0.80, 0.90], [0.69, 0.79, 0.89])
    assert v.outcome == "better" and v.mean == pytest.approx(0.01) and v.sd == pytest.approx(0.0, abs=1e-12)
    # equal results: d = 0, a mean of 0 is not above a spread of 0
    assert paired_verdict([0.7, 0.71, 0.72], [0.7, 0.71, 0.72]).outcome == "tie"


def test_one_seed_gives_a_difference_but_no_verdict():
    v = paired_verdict([0.71], [0.70])
    assert v.outcome == "one seed" and v.sd is None and v.mean == pytest.approx(0.01) and v.seeds == 1
    assert paired_verdict([], []).outcome == "no seeds"
    with pytest.raises(ValueError):
        paired_verdict([0.7, 0.71], [0.7])


# ---------------------------------------------------------------------------
# Curves on log memory


def test_interpolation_is_linear_in_log_memory_and_never_extrapolates():
    curve = make_curve([CurvePoint(4.0, 90.0), CurvePoint(1.0, 50.0)])  # given out of order
    assert [p.memory for p in curve] == [1.0, 4.0]
    # 2 is halfway from 1 to 4 on a log scale: t = log(2 / 1) / log(4 / 1) = 1/2, so 50 + 40 / 2 = 70
    assert interpolate_log(curve, 2.0).value == pytest.approx(70.0)
    # sqrt(2) is a quarter of the way: 50 + 40 / 4 = 60 (linear in memory it would be 50 + 40 * 0.138 = 55.5)
    assert interpolate_log(curve, math.sqrt(2)).value == pytest.approx(60.0)
    assert interpolate_log(curve, 1.0).value == 50.0 and interpolate_log(curve, 4.0).value == 90.0
    for outside in (0.0, 0.99, 4.01):
        assert interpolate_log(curve, outside) is None


def test_each_seed_is_interpolated_alike_so_the_mean_is_the_mean_of_the_seeds():
    curve = make_curve([CurvePoint(1.0, 0.71, (0.70, 0.72)), CurvePoint(4.0, 0.75, (0.74, 0.76))])
    point = interpolate_log(curve, 2.0)  # t = 1/2
    assert point.seeds == pytest.approx((0.72, 0.74)) and point.value == pytest.approx(0.73)


def test_a_curve_leaves_out_no_memory_and_keeps_the_better_of_equal_memories():
    curve = make_curve([CurvePoint(0.0, 0.6, budget="a"), CurvePoint(2.0, 0.7, budget="b"),
                        CurvePoint(2.0, 0.8, budget="c")])
    assert [(p.memory, p.value, p.budget) for p in curve] == [(2.0, 0.8, "c")]


def test_log_grid():
    assert log_grid(1, 16, 5) == pytest.approx([1, 2, 4, 8, 16])
    assert log_grid(3, 3, 5) == [3]


def spans(**ranges) -> dict:
    return {name: make_curve([CurvePoint(a, 0.0), CurvePoint(b, 0.0)]) for name, (a, b) in ranges.items()}


def test_points_span_the_memory_every_policy_was_measured_over():
    curves = spans(a=(1, 4), b=(2, 8))
    curves["full"] = make_curve([CurvePoint(100, 1.0)])  # one memory: no range, so it does not narrow the range
    points, common = memory_points(curves)
    # [max(1, 2), min(4, 8)] = [2, 4]: five points 2 * 2 ** (i / 4), the ends exact
    assert common and points == pytest.approx([2, 2 * 2**0.25, 2 * 2**0.5, 2 * 2**0.75, 4])
    assert points[0] == 2 and points[-1] == 4


def test_without_a_common_range_the_points_cover_each_overlap_of_two_policies():
    # A [1, 2], B [1.5, 3], C [4, 8], D [6, 10]: no memory is in all four; two overlap on [1.5, 2] and [6, 8]:
    # three points on each, its ends and their geometric mean (sqrt(1.5 * 2) = sqrt(3), sqrt(6 * 8) = sqrt(48))
    points, common = memory_points(spans(A=(1, 2), B=(1.5, 3), C=(4, 8), D=(6, 10)))
    assert not common and points == pytest.approx([1.5, math.sqrt(3), 2, 6, math.sqrt(48), 8])
    # ranges that only touch overlap in that one memory
    assert memory_points(spans(A=(1, 2), B=(2, 4), C=(8, 16))) == ([2], False)
    # no two ranges overlap, or no policy has a range: nothing to compare at equal memory
    assert memory_points(spans(A=(1, 2), B=(3, 4))) == ([], False)
    assert memory_points({"full": make_curve([CurvePoint(5, 1.0)])}) == ([], False)


def test_equal_memory_rows_worked_by_hand():
    """alpha (1, 50) (4, 90); beta (2, 60) (8, 80); lru, a cache, (1, 70) (4, 95). Common range [2, 4].

    At 2: alpha t = log 2 / log 4 = 1/2 -> 70; beta measured 60; lru 70 + 25 / 2 = 82.5 (a cache: never best)
    At 2 sqrt 2: alpha t = 3/4 -> 80; beta t = log(sqrt 2) / log 4 = 1/4 -> 65; lru 88.75
    At 4: alpha measured 90; beta t = 1/2 -> 70; lru measured 95
    """
    curves = {"alpha": make_curve([CurvePoint(1, 50.0), CurvePoint(4, 90.0)]),
              "beta": make_curve([CurvePoint(2, 60.0), CurvePoint(8, 80.0)]),
              "lru": make_curve([CurvePoint(1, 70.0), CurvePoint(4, 95.0)])}
    rows, common = equal_memory_rows(curves)
    assert common and len(rows) == 5
    got = [(r.memory, r.best, {n: p.value for n, p in r.values.items()}) for r in (rows[0], rows[2], rows[4])]
    want = [(2, "alpha", {"alpha": 70.0, "beta": 60.0, "lru": 82.5}),
            (2 * math.sqrt(2), "alpha", {"alpha": 80.0, "beta": 65.0, "lru": 88.75}),
            (4, "alpha", {"alpha": 90.0, "beta": 70.0, "lru": 95.0})]
    for (m, best, values), (m_want, best_want, values_want) in zip(got, want):
        assert m == pytest.approx(m_want) and best == best_want and values == pytest.approx(values_want)


def test_policy_kinds():
    assert [policy_kind(n) for n in ("lru", "lfu", "mde", "full", "fiited", "row-prune", "hash", "uniform-dim",
                                     "uniform-row", "some-new-policy")] == [
        "cache", "cache", "sized", "reference", "online", "online", "sized", "sized", "sized", "online"]


# ---------------------------------------------------------------------------
# Memory at equal quality


def test_at_quality_needs_the_paired_rule_and_the_mean():
    full = [0.72, 0.73, 0.71]
    # d = (-0.002, -0.001, +0.001): mean -0.00067, a tie, within 0.005: at quality
    assert at_quality([0.718, 0.729, 0.711], full)
    # d = (-0.006, -0.004, -0.005): mean -0.005 ... but sd 0.001 and every d negative: below by the paired rule
    assert not at_quality([0.714, 0.726, 0.705], full)
    # d = (-0.02, -0.01, +0.003): mean -0.009, sd 0.0117: a tie, yet 0.009 below on the mean: not at quality
    assert not at_quality([0.70, 0.72, 0.713], full)
    # one seed: no paired verdict, the mean alone decides
    assert at_quality([0.716], [0.72]) and not at_quality([0.714], [0.72])


def test_least_memory_at_quality_worked_by_hand():
    full = [0.72, 0.73, 0.71]
    # measured at 100 bytes with d = (-0.02, -0.01, +0.003) (a tie, 0.009 below on the mean) and at 400 bytes with
    # d = 0. Between them d(t) = (1 - t) d(100): the paired rule stays a tie (mean and sd shrink alike) and the mean
    # -0.009 (1 - t) reaches -0.005 at t = 4/9 = 0.4444; the first of 1000 steps past it is t = 0.445, so the
    # memory is exp(ln 100 + 0.445 (ln 400 - ln 100)) = 100 * 4 ** 0.445 = 185.3
    curve = [CurvePoint(100.0, 0.711, (0.70, 0.72, 0.713)), CurvePoint(400.0, 0.72, (0.72, 0.73, 0.71))]
    assert least_memory_at_quality(curve, full) == pytest.approx(100 * 4 ** 0.445, rel=1e-12)
    # at quality from the first measured point: that memory (nothing below it is claimed)
    assert least_memory_at_quality(curve[1:], full) == 400.0
    # never at quality in the measured range: None, not an extrapolation
    assert least_memory_at_quality(curve[:1], full) is None
    assert least_memory_at_quality([], full) is None


def test_equal_quality_per_policy_on_both_memory_axes():
    # "a" reaches full's AUC at its second budget only (total 800, payload 200); "b" never; full at its own size
    points = [QualityPoint("a", 100, 50, {0: 0.60, 1: 0.61}), QualityPoint("a", 800, 200, {0: 0.70, 1: 0.71}),
              QualityPoint("b", 100, 100, {0: 0.60, 1: 0.60}), QualityPoint("full", 1600, 1600, {0: 0.70, 1: 0.71})]
    # a at 100: d = (-0.10, -0.10): below. Between 100 and 800: d(t) = -0.10 (1 - t) on both seeds, sd 0, every d
    # negative: below until t = 1, so the answer is the measured 800 (and 200 of payload)
    assert equal_quality(points) == {"a": {"total_bytes": 800, "payload_bytes": 200},
                                     "b": {"total_bytes": None, "payload_bytes": None},
                                     "full": {"total_bytes": 1600, "payload_bytes": 1600}}
    assert equal_quality(points[:3]) is None          # no reference trained
