"""`row-prune` (DESIGN.md 4, docs/semantics.md "Row pruning (row-prune)").

The Numba engine must equal the plain-Python reference bit for bit on the
hypothesis traces of test_differential.py, and both must match the cases
below, whose expected numbers are derived by hand in the comments (not taken
from either implementation's output).

Conventions as in test_reference_cases.py: fp32 tables; slot address =
page * spp + slot; index bytes = sum of capacities * 16; metadata (4 + 4K)
bytes per tracked row. index_initial 8 keeps every index from doubling here
(max 2 entries, 2 + 1 <= 0.75 * 8). Home buckets at capacity 8 (asserted in
test_home_buckets): r0->0 r1->5 r2->2 r3->0 r4->4 r5->4.
"""
from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from engine_adapter import engine_replay
from hypothesis import given, note
from test_differential import assert_same, scenarios
from test_reference_cases import expect, home, table

from fiitedsim import reference
from fiitedsim.config import ReplayConfig, TableSpec


def ref_replay(*args, **kw):
    return reference.replay(*args, policy="row-prune", check=True, **kw)


def eng_replay(*args, **kw):
    return engine_replay(*args, policy="row-prune", check=True, **kw)


REPLAYS = pytest.mark.parametrize("replay_fn", [ref_replay, eng_replay], ids=["reference", "engine"])


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def assert_whole_rows(tables, res):
    """Every row has all K chunks indexed or none."""
    chunks: dict[tuple[int, int], set[int]] = {}
    for (t, k), mapping in res.index.items():
        for r in mapping:
            chunks.setdefault((t, r), set()).add(k)
    for (t, r), ks in chunks.items():
        assert ks == set(range(tables[t].chunks)), f"row {(t, r)} holds chunks {sorted(ks)}"


def test_home_buckets():
    assert [home(r, 8) for r in range(6)] == [0, 5, 2, 0, 4, 4]


# ------------------------------------------------------------------ differential

@pytest.mark.slow  # hypothesis: many generated cases through the engine
@given(scenarios())
def test_engine_equals_reference(scenario):
    tables, cfg, lookups, importance = scenario
    note(f"tables={tables}\ncfg={cfg}\nlookups={lookups}\nimportance={importance}")
    ref = ref_replay(tables, cfg, lookups, importance)
    eng = eng_replay(tables, cfg, lookups, importance)
    assert_same(ref, eng)
    assert_whole_rows(tables, eng)


@pytest.mark.parametrize("cut_every", [1, 2, 1000])
@pytest.mark.parametrize("allocator", ["lowest", "lifo"])
def test_batch_boundaries_do_not_matter(cut_every, allocator):
    """Cutting the stream into batches anywhere (between steps) gives the same result, with rows evicted
    and re-admitted at every round."""
    tables = [TableSpec("a", 50, 8, 2, 4), TableSpec("b", 30, 4, 2, 4)]  # K = 4 and K = 2 in one pool
    cfg = ReplayConfig(budget_bytes=400, page_bytes=24, interval=2, index_initial=2, gamma=0.9, report_every=3,
                       allocator=allocator)
    lookups = [(s, (s * 7 + i) % 2, (s * 3 + i * 5) % 30) for s in range(40) for i in range(5)]
    ref = ref_replay(tables, cfg, lookups)
    assert ref.summary["frees"] > 0 and ref.summary["row_hits"] > 0 and ref.summary["denied_threshold"] > 0
    eng = eng_replay(tables, cfg, lookups, cuts=list(range(0, 40, cut_every)))
    assert_same(ref, eng)


# ------------------------------------------------------------------ hand-worked cases

# ---------------------------------------------------------------------------
# Case A: a round that evicts a whole row; ties broken by (t, r).
#
# Tables t0, t1: rows 8, dim 4, chunk 2 (K=2, 8 B chunks) -> one pool. page 16 (spp 2);
# budget 32 -> 2 pages -> N = 4 chunks = 2 rows. gamma 1.0, interval 2, report_every 2.
#
# step0 (t0,r1,[1,1]): search (0,0) home 5 -> 1 probe. U=2 >= 0; free 0 + 2 pages*2 = 4 >= 2:
#        map page 0, addrs 0,1; insert (0,0),(0,1).
# step0 (t1,r0,[1,1]): U=2; free 0 + 1 page*2 = 2 >= 2: map page 1, addrs 2,3.
# step1 (t0,r2,[2,1]): U=3; free 0 + 0 -> denied_full (1).
# step1 (t0,r4,[1,1]): U=2; denied_full (2).
# Round at now=1: U = t0r1 2, t1r0 2, t0r2 3, t0r4 2. Rank (U desc, t, r):
#   t0r2 (3), t0r1 (2), t0r4 (2), t1r0 (2). Keep t0r2 (2 chunks), t0r1 (4 = N); t0r4 does not
#   fit. theta = U of t0r1 = 2.0. t0r1 won the tie against t0r4 on r and against t1r0 on t
#   (although r0 < r1). Free t1r0: (1,0,0) addr 2, (1,0,1) addr 3; page 1 empty -> unmapped.
#   Snapshot at step 1: lookups 4, allocations 4, frees 2, denied_full 2, payload 16, mapped 1,
#   live 2, theta 2.0, meta 4*12 = 48, index 4 indices * 8 * 16 = 512, total 576,
#   dim_hist [15, 0, 1], tracked 4.
# step2 (t1,r0,[.5,.5]): search (1,0) home 0 -> 1. u=[1.5,1.5], U=3 >= 2; page 0 full, 1 page
#        mappable: map the lowest unmapped page 1, addrs 2,3.
# step2 (t0,r2,[0,0]): u=[2,1], U=3 >= 2; free 0 + 0 -> denied_full (3).
# step3 (t0,r5,[.5,.5]): search (0,0) home 4 -> 1. U=1 < 2 -> denied_threshold (1).
# step3 (t0,r1,[0,0]): d=2: row, 2 chunk and full hit; searches (0,0),(0,1) at home 5: 1 + 1.
# Searches 7*1 + 2 = 9, probes 9. requested 8 lookups * 2 = 16. allocations 2+2+2 = 6.
# Final: payload 32 (peak 32), index 512, meta 5*12 = 60, total 604 (the peak: every earlier
# moment had less metadata and at most 32 payload), dim_hist [14, 0, 2], load 4/32.
# ---------------------------------------------------------------------------

def check_case_a(replay_fn):
    tables = [table("t0", 8, 4, 2), table("t1", 8, 4, 2)]
    cfg = ReplayConfig(budget_bytes=32, page_bytes=16, index_initial=8, interval=2, report_every=2, gamma=1.0)
    trace = [(0, 0, 1, [1, 1]), (0, 1, 0, [1, 1]), (1, 0, 2, [2, 1]), (1, 0, 4, [1, 1]),
             (2, 1, 0, [.5, .5]), (2, 0, 2, [0, 0]), (3, 0, 5, [.5, .5]), (3, 0, 1, [0, 0])]
    res = replay_fn(tables, cfg, trace)
    expect(res.summary, lookups=8, row_hits=1, chunk_hits=2, chunks_requested=16, full_hits=1,
           allocations=6, frees=2, denied_full=3, denied_threshold=1, rounds=1, rehashes=0,
           searches=9, probes=9, max_probe_length=1, theta_final=2.0,
           payload_bytes_final=32, payload_bytes_peak=32, index_bytes_final=512, index_bytes_peak=512,
           meta_bytes_final=60, total_bytes_final=604, total_bytes_peak=604, mapped_pages_final=2,
           live_chunks_final=4, fragmentation_final=0.0, tracked_rows=5, dim_hist_final=[14, 0, 2],
           index_load_factor_final=4 / 32)
    assert res.index == {(0, 0): {1: 0}, (0, 1): {1: 1}, (1, 0): {0: 2}, (1, 1): {0: 3}}
    assert res.mapped_pages == [[0, 1]]
    assert res.theta == [2.0]
    assert res.utilities == {(0, 1): (1.0, 1.0), (1, 0): (1.5, 1.5), (0, 2): (2.0, 1.0), (0, 4): (1.0, 1.0),
                             (0, 5): (0.5, 0.5)}
    assert res.last == {(0, 1): 3, (1, 0): 2, (0, 2): 2, (0, 4): 1, (0, 5): 3}
    assert [s["step"] for s in res.snapshots] == [1, 3]
    expect(res.snapshots[0], lookups=4, allocations=4, frees=2, denied_full=2, rounds=1, payload_bytes=16,
           mapped_pages=1, live_chunks=2, theta=2.0, meta_bytes=48, index_bytes=512, total_bytes=576,
           dim_hist=[15, 0, 1], tracked_rows=4)


# ---------------------------------------------------------------------------
# Case B: the keep set stops at the first row that does not fit, even when a later (tied) row
# would; denied_full with one free slot but K = 2; decay in the round.
#
# t0: rows 8, dim 4, chunk 2 (K=2); t1: rows 8, dim 2, chunk 2 (K=1); both 8 B chunks -> one
# pool. page 24 (spp 3); budget 24 -> 1 page, N = 3. gamma 0.5, interval 2.
#
# step0 (t0,r1,[2,1]): U=3; free 0 + 1*3 >= 2: map page 0, addrs 0,1.
# step0 (t1,r2,[4]):   U=4; free 3-2 = 1 >= 1: addr 2.
# step0 (t0,r4,[4,4]): U=8; free 0 + 0 -> denied_full (1).
# step1 (t0,r0,[1,1]): U=2; denied_full (2).
# Round at now=1 (U = sum * 0.5 ** (1 - last)): t0r1 3*.5 = 1.5, t1r2 4*.5 = 2,
#   t0r4 8*.5 = 4, t0r0 2*1 = 2. Rank: t0r4 (4, K2), t0r0 (2, t0, K2), t1r2 (2, t1, K1), t0r1 (1.5).
#   t0r4 fits (2 <= 3); t0r0 does not (4 > 3): the keep set ends there, although t1r2 (K=1,
#   tied with t0r0 but after it on t) would fit in the third slot. theta = 4.0. Free in (t, r, k) order: (0,1,0) addr 0,
#   (0,1,1) addr 1, (1,2,0) addr 2. Page 0 empty -> unmapped.
# step2 (t0,r4,[0,0]): u = [4*.25, 4*.25] = [1,1], U=2 < 4 -> denied_threshold (1).
# step2 (t0,r0,[4,4]): u = [1*.5+4]*2 = [4.5,4.5], U=9: free 0 + 1*3: map page 0, addrs 0,1.
# step2 (t1,r2,[1]):   u = 4*.25+1 = 2 < 4 -> denied_threshold (2).
# step3 (t0,r5,[3,3]): U=6 >= 4; one slot free (addr 2) + 0 pages: 1 < K=2 -> denied_full (3)
#        (chunk-wise FIITED would have taken addr 2 for k=0).
# step3 (t0,r0,[0,0]): d=2: hits; u = [2.25,2.25].
# Searches: 8 lookups with d=0, 1 probe each (the home bucket is empty every time: at most r1
# (home 5) or r0 (home 0) is indexed in (0,0)), + 2 for the last (r0 at home 0) = 10, probes 10.
# requested: 7 t0 lookups * 2 + 2 t1 lookups * 1 = 16. allocations 3 + 2 = 5, frees 3.
# Final: payload 24, index 3 indices * 8 * 16 = 384, meta 4 t0 rows * 12 + 1 t1 row * 8 = 56,
# total 464 (also the peak: metadata only grows, payload is never above 24), live 2 of 3 slots,
# dim_hist [15, 0, 1] (16 rows), load 2/24. Both allocators give the same slots (a fresh page
# pushes its slots 2,1,0 on the lifo stack and pops 0,1,2).
# ---------------------------------------------------------------------------

def check_case_b(replay_fn):
    tables = [table("t0", 8, 4, 2), table("t1", 8, 2, 2)]
    trace = [(0, 0, 1, [2, 1]), (0, 1, 2, [4]), (0, 0, 4, [4, 4]), (1, 0, 0, [1, 1]),
             (2, 0, 4, [0, 0]), (2, 0, 0, [4, 4]), (2, 1, 2, [1]), (3, 0, 5, [3, 3]), (3, 0, 0, [0, 0])]
    for allocator in ("lowest", "lifo"):
        cfg = ReplayConfig(budget_bytes=24, page_bytes=24, index_initial=8, interval=2, report_every=100,
                           gamma=0.5, allocator=allocator)
        res = replay_fn(tables, cfg, trace)
        expect(res.summary, lookups=9, row_hits=1, chunk_hits=2, chunks_requested=16, full_hits=1,
               allocations=5, frees=3, denied_full=3, denied_threshold=2, rounds=1, rehashes=0,
               searches=10, probes=10, theta_final=4.0, payload_bytes_final=24, payload_bytes_peak=24,
               index_bytes_final=384, meta_bytes_final=56, total_bytes_final=464, total_bytes_peak=464,
               mapped_pages_final=1, live_chunks_final=2, fragmentation_final=1.0 - 2 / 3,
               tracked_rows=5, dim_hist_final=[15, 0, 1], index_load_factor_final=2 / 24)
        assert res.index == {(0, 0): {0: 0}, (0, 1): {0: 1}, (1, 0): {}}, allocator
        assert res.utilities == {(0, 1): (2.0, 1.0), (1, 2): (2.0,), (0, 4): (1.0, 1.0), (0, 0): (2.25, 2.25),
                                 (0, 5): (3.0, 3.0)}
        assert res.theta == [4.0]


# ---------------------------------------------------------------------------
# Case C: U is the sum of the raw utilities, then decayed once (not each term decayed).
#
# One table rows 8, dim 4, chunk 2 (K=2); page 16 (spp 2); budget 16 -> N = 2 = one row.
# gamma 0.9, interval 2. a, b = float32(0.2), float32(0.3) widened to float64.
# step0 (r1,[a,b]): admitted, addrs 0,1.
# step1 (r2,[.1,.1]): U = 2 * float32(.1) ~ .2; free 0 -> denied_full (1).
# Round at now=1: U(r1) = (a + b) * 0.9 ** 1.0 ~ .45 > U(r2) ~ .2 (no decay): keep r1 (2 = N);
#   theta = (a + b) * 0.9, which differs in the last bit from a * 0.9 + b * 0.9 (asserted).
# step2 (r2,[.1,.1]): u = float32(.1) * 0.9 + float32(.1) each, U ~ .38 < theta -> denied_threshold.
# ---------------------------------------------------------------------------

def check_case_c(replay_fn):
    a, b, c = (float(np.float32(x)) for x in (0.2, 0.3, 0.1))
    f = 0.9 ** 1.0
    theta = (a + b) * f
    assert bits(theta) != bits(a * f + b * f), "the case must tell the two orders apart"
    tables = [table("a", 8, 4, 2)]
    cfg = ReplayConfig(budget_bytes=16, page_bytes=16, index_initial=8, interval=2, report_every=100, gamma=0.9)
    trace = [(0, 0, 1, [0.2, 0.3]), (1, 0, 2, [0.1, 0.1]), (2, 0, 2, [0.1, 0.1])]
    res = replay_fn(tables, cfg, trace)
    expect(res.summary, allocations=2, frees=0, denied_full=1, denied_threshold=1, rounds=1, live_chunks_final=2)
    assert bits(res.summary["theta_final"]) == bits(theta)
    assert [bits(x) for x in res.theta] == [bits(theta)]
    assert res.utilities[(0, 2)] == (c * f + c, c * f + c)


# ---------------------------------------------------------------------------
# Case D: no row fits the budget: theta = +inf after the first round.
#
# One table rows 8, dim 4, chunk 2 (K=2); page 8 (spp 1); budget 8 -> 1 page, N = 1 < K.
# step0 r0: U=2 >= 0, but free 0 + 1 page * 1 slot = 1 < 2 -> denied_full (1); nothing mapped.
# Round at now=0 (interval 1): ranked [r0 (2)]; r0 needs 2 > 1 -> keep set empty, theta = +inf.
# step1 r0: u = 1*.5 + 1 = 1.5 each (gamma 0.5), U = 3 < inf -> denied_threshold (1).
# Round at now=1: theta stays +inf. step2 r1: U=2 < inf -> denied_threshold (2).
# Never anything allocated: payload 0, frees 0, dim_hist [8, 0, 0].
# ---------------------------------------------------------------------------

def check_case_d(replay_fn):
    tables = [table("a", 8, 4, 2)]
    cfg = ReplayConfig(budget_bytes=8, page_bytes=8, index_initial=8, interval=1, report_every=100, gamma=0.5)
    res = replay_fn(tables, cfg, [(0, 0, 0), (1, 0, 0), (2, 0, 1)])
    expect(res.summary, allocations=0, frees=0, denied_full=1, denied_threshold=2, rounds=2,
           payload_bytes_peak=0, mapped_pages_final=0, dim_hist_final=[8, 0, 0])
    assert math.isinf(res.summary["theta_final"]) and res.theta == [math.inf]
    assert res.utilities[(0, 0)] == (1.5, 1.5)


# ---------------------------------------------------------------------------
# Case E: theta when everything fits: 0.0 below N, the smallest U at exactly N (as FIITED).
#
# One table rows 8, dim 2, chunk 2 (K=1, 8 B); page 16 (spp 2); budget 16 -> N = 2.
# gamma 0.5, interval 1, report_every 1 (a snapshot after every round). No grads: x = 1.
# step0 r0: u=1, addr 0.
# Round now=0: 1 chunk tracked < 2 -> keep all, theta 0.0.           snapshot 0: theta 0.0
# step1 r1 x3: new u=1 >= 0 -> addr 1; then two hits (same step, f=1): u = 2, 3.
# Round now=1: r0 1*.5 = .5, r1 3; 2 chunks = N -> keep all, theta = .5. snapshot 1: theta .5
# step2 r2: u=1 >= .5; free 0 + 0 -> denied_full (1).
# Round now=2: r0 .25, r1 1.5, r2 1: keep r1, r2; theta 1.0; free r0 (addr 0); page 0 keeps
#   r1.                                                               snapshot 2: theta 1.0
# step3 r2: u = .5 + 1 = 1.5 >= 1 -> addr 0. r3: u=1, not < 1; free 0 -> denied_full (2).
#   r0: u = 1*.125 + 1 = 1.125 >= 1 -> denied_full (3).           final snapshot 3: theta 1.0
# Searches: 1 per lookup (K=1), all 1 probe (r3 and r0 share home 0, but r0 was freed): 8, 8.
# Totals: lookups 8, row_hits 2, allocations 3, frees 1, denied_full 3, rounds 3.
# Final: mapped [0], index (0,0) {1: 1, 2: 0}, payload 16, index 128, meta 4 rows * 8 = 32,
# total 176, dim_hist [6, 2].
# ---------------------------------------------------------------------------

def check_case_e(replay_fn):
    tables = [table("a", 8, 2, 2)]
    cfg = ReplayConfig(budget_bytes=16, page_bytes=16, index_initial=8, interval=1, report_every=1, gamma=0.5)
    trace = [(0, 0, 0), (1, 0, 1), (1, 0, 1), (1, 0, 1), (2, 0, 2), (3, 0, 2), (3, 0, 3), (3, 0, 0)]
    res = replay_fn(tables, cfg, trace)
    expect(res.summary, lookups=8, row_hits=2, chunk_hits=2, full_hits=2, allocations=3, frees=1,
           denied_full=3, denied_threshold=0, rounds=3, searches=8, probes=8, theta_final=1.0,
           payload_bytes_final=16, index_bytes_final=128, meta_bytes_final=32, total_bytes_final=176,
           dim_hist_final=[6, 2])
    assert [s["theta"] for s in res.snapshots] == [0.0, 0.5, 1.0, 1.0]
    assert [s["step"] for s in res.snapshots] == [0, 1, 2, 3]
    assert res.index[(0, 0)] == {1: 1, 2: 0}
    assert res.utilities == {(0, 0): (1.125,), (0, 1): (3.0,), (0, 2): (1.5,), (0, 3): (1.0,)}


CASES = [check_case_a, check_case_b, check_case_c, check_case_d, check_case_e]


@REPLAYS
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_hand_worked_case(case, replay_fn):
    case(replay_fn)


# ------------------------------------------------------------------ command line

def test_cli_refuses_a_budget_without_a_page(monkeypatch, capsys, tmp_path):
    """row-prune stores chunks in pages, so like fiited it needs room for one page per pool: a clean exit 2."""
    from test_cli import fails_cleanly
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "-q", "--out", tmp_path / "res", "--policy", "row-prune",
                                                  "--budget", "1B"], "budget 1B (1 bytes) leaves no room")


def test_cli_replays_the_sample(monkeypatch, capsys, tmp_path):
    """`--policy row-prune` runs end to end; every stored row is whole (dim_hist only at 0 and K = 8)."""
    from test_cli import run
    result = run(monkeypatch, capsys, "replay", "-q", "--json", "--policy", "fiited,row-prune")
    assert result.code == 0, result.err
    summary = json.loads(result.out)["policies"]["row-prune"]
    hist = summary["dim_hist_final"]
    assert hist[1:8] == [0] * 7 and hist[8] * 8 == summary["live_chunks_final"] > 0
    assert summary["allocations"] - summary["frees"] == summary["live_chunks_final"]
