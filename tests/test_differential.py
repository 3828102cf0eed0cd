"""The Numba engine equals the plain-Python reference exactly (DESIGN.md section 6).

Hypothesis draws small traces that stress the corners: many tables and pools,
ties in utilities, budgets of 0 and above the dense size, interval 1,
gamma 1.0, pages of one or two slots so rows straddle page boundaries, tiny
hash indices that double and shift, both allocators and both budget modes,
inline gradient norms and importance logs. Every counter, every snapshot,
every utility (bit for bit), every index bucket and every mapped page must
agree.
"""
from __future__ import annotations

import math
import struct
from dataclasses import replace

import pytest
from engine_adapter import engine_replay
from hypothesis import assume, given, note
from hypothesis import strategies as st

from fiitedsim import reference
from fiitedsim.config import ReplayConfig, TableSpec, resolve_layout
from fiitedsim.errors import InputError
from fiitedsim.policies import POLICIES

pytestmark = pytest.mark.slow  # hypothesis: the engine against the reference on generated traces


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def assert_same(ref, eng):
    for key, value in ref.summary.items():
        other = eng.summary[key]
        if isinstance(value, float):
            assert bits(value) == bits(other), f"summary[{key}]: reference {value!r}, engine {other!r}"
        else:
            assert value == other, f"summary[{key}]: reference {value!r}, engine {other!r}"
    assert len(ref.snapshots) == len(eng.snapshots), "number of snapshots"
    for i, (a, b) in enumerate(zip(ref.snapshots, eng.snapshots)):
        for key, value in a.items():
            other = b[key]
            if isinstance(value, float) or isinstance(other, float):
                same = (math.isinf(value) and math.isinf(other)) or bits(float(value)) == bits(float(other))
                assert same, f"snapshot {i} [{key}]: reference {value!r}, engine {other!r}"
            else:
                assert value == other, f"snapshot {i} [{key}]: reference {value!r}, engine {other!r}"
    assert ref.last == eng.last
    assert ref.utilities.keys() == eng.utilities.keys()
    for key, u in ref.utilities.items():
        assert [bits(x) for x in u] == [bits(x) for x in eng.utilities[key]], f"utilities of {key}"
    assert ref.index_capacity == eng.index_capacity
    assert ref.index == eng.index
    assert ref.index_layout == eng.index_layout
    assert ref.mapped_pages == eng.mapped_pages
    assert [bits(x) for x in ref.theta] == [bits(x) for x in eng.theta]


@st.composite
def scenarios(draw):
    n_tables = draw(st.integers(1, 3))
    shapes = [(8, 2, 4), (8, 4, 4), (4, 2, 4), (6, 2, 4), (4, 4, 2), (4, 1, 4)]  # (dim, chunk, dtype_bytes)
    tables = []
    for t in range(n_tables):
        dim, chunk, dtype = draw(st.sampled_from(shapes[:2] if draw(st.booleans()) else shapes))
        tables.append(TableSpec(f"t{t}", draw(st.integers(1, 12)), dim, chunk, dtype))
    max_chunk_bytes = max(t.chunk_bytes for t in tables)
    page_bytes = max_chunk_bytes * draw(st.integers(1, 3))
    dense = sum(t.dense_bytes for t in tables)
    budget = draw(st.one_of(st.just(0), st.integers(0, dense), st.integers(dense, 2 * dense),
                            st.sampled_from([page_bytes, 2 * page_bytes])))
    cfg = ReplayConfig(
        budget_bytes=budget,
        gamma=draw(st.sampled_from([1.0, 0.999, 0.9, 0.5])),
        interval=draw(st.integers(1, 4)),
        position_weight=draw(st.sampled_from([1.0, 0.7, 0.5])),
        page_bytes=page_bytes,
        max_load=draw(st.sampled_from([0.5, 0.75, 0.9])),
        index_initial=draw(st.sampled_from([1, 2, 4])),
        allocator=draw(st.sampled_from(["lowest", "lifo"])),
        budget_covers=draw(st.sampled_from(["payload", "payload", "all"])),
        report_every=draw(st.integers(1, 5)),
        count_accesses=draw(st.booleans()),
        mde_exponent=draw(st.sampled_from([0.0, 0.3, 0.5, 1.0])),
    )
    n = draw(st.integers(0, 60))
    gaps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    with_grad = draw(st.booleans())
    grad_values = st.sampled_from([0.0, 0.5, 1.0, 2.0, 1.0e-3]) | st.floats(0, 10, width=32)
    lookups, step = [], 0
    for gap in gaps:
        step += gap
        t = draw(st.integers(0, n_tables - 1))
        r = draw(st.integers(0, tables[t].rows - 1))
        if with_grad:
            lookups.append((step, t, r, draw(st.lists(grad_values, min_size=tables[t].chunks,
                                                      max_size=tables[t].chunks))))
        else:
            lookups.append((step, t, r))
    importance = []
    if draw(st.integers(0, 3)) == 0:
        last = max(step, 1) + 2
        steps = sorted(draw(st.lists(st.integers(0, last), min_size=1, max_size=20)))
        for s in steps:
            t = draw(st.integers(0, n_tables - 1))
            importance.append((s, t, draw(st.integers(0, tables[t].rows - 1)),
                               draw(st.integers(0, tables[t].chunks - 1)), draw(grad_values)))
    if not lookups and not importance:
        lookups = [(0, 0, 0)]
    return tables, cfg, lookups, importance


@given(scenarios(), st.sampled_from(["fiited", "fiited", "fiited", "full", "uniform-dim", "uniform-row", "hash",
                                     "qr", "mde"]))
def test_engine_equals_reference(scenario, policy):
    tables, cfg, lookups, importance = scenario
    if policy in ("hash", "qr"):  # a budget that holds no row (no pair of tables) of some table is refused
        try:
            POLICIES[policy].check_budget(tables, cfg)
        except InputError:
            assume(False)
    note(f"tables={tables}\ncfg={cfg}\nlookups={lookups}\nimportance={importance}")
    ref = reference.replay(tables, cfg, lookups, importance, policy=policy, check=True)
    eng = engine_replay(tables, cfg, lookups, importance, policy=policy, check=True)
    assert_same(ref, eng)


@pytest.mark.parametrize("cut_every", [1, 2, 1000])
def test_batch_boundaries_do_not_matter(cut_every):
    """Cutting the stream into batches anywhere (between steps) gives the same result."""
    tables = [TableSpec("a", 50, 8, 2, 4), TableSpec("b", 30, 8, 2, 4)]
    cfg = ReplayConfig(budget_bytes=400, page_bytes=16, interval=2, index_initial=2, gamma=0.9, report_every=3)
    lookups = [(s, (s * 7 + i) % 2, (s * 13 + i * 5) % 30) for s in range(40) for i in range(5)]
    ref = reference.replay(tables, cfg, lookups)
    eng = engine_replay(tables, cfg, lookups, cuts=list(range(0, 40, cut_every)), check=True)
    assert_same(ref, eng)


@pytest.mark.parametrize("policy", ["fiited", "row-prune"])
@pytest.mark.parametrize("allocator", ["lowest", "lifo"])
def test_growth_and_compaction_match_the_reference(monkeypatch, policy, allocator):
    """With no room reserved up front, the engine grows its row arrays and page arrays, rebuilds its
    tracker and compacts its flat index many times; none of it may change a result.

    The engine normally reserves room for a trace this small (engine.state.RESERVE_BYTES) and never grows.
    """
    import numpy as np

    from fiitedsim.engine import state as engine

    monkeypatch.setattr(engine, "RESERVE_BYTES", 0)
    monkeypatch.setattr(engine, "ROWS_MIN", 2)
    monkeypatch.setattr(engine, "INDEX_MIN", 1)
    seen = set()
    grow = engine.EngineState.grow

    def spy_grow(self, status):
        seen.add(status)
        grow(self, status)

    monkeypatch.setattr(engine.EngineState, "grow", spy_grow)
    tables = [TableSpec("a", 400, 8, 2, 4), TableSpec("b", 300, 8, 2, 4), TableSpec("c", 200, 4, 2, 4)]
    dense = sum(t.dense_bytes for t in tables)
    cfg = ReplayConfig(budget_bytes=dense // 3, page_bytes=64, interval=7, index_initial=1, gamma=0.95,
                       report_every=50, allocator=allocator)
    rng = np.random.default_rng(5)
    lookups = []
    for s in range(120):  # a hot set that drifts, so rows enter, get pruned and come back
        for _ in range(20):
            t = int(rng.integers(0, 3))
            r = int((rng.zipf(1.3) + 3 * s) % tables[t].rows)
            lookups.append((s, t, r, [float(x) for x in rng.random(tables[t].chunks, np.float32)]))
    ref = reference.replay(tables, cfg, lookups, policy=policy)  # (the reference's own checks take 10 s here)
    eng = engine_replay(tables, cfg, lookups, policy=policy, check=True)
    assert_same(ref, eng)
    assert seen == {engine.NEED_ROWS, engine.NEED_INDEX, engine.NEED_PAGES}


@pytest.mark.parametrize("policy", ["fiited", "row-prune"])
@pytest.mark.parametrize("allocator", ["lowest", "lifo"])
def test_round_blocks_do_not_matter(monkeypatch, policy, allocator):
    """A round's ranking passes split the tracked rows into blocks (one per thread on large traces); any
    split gives the reference's results. Here up to 7 blocks of a few rows each, several pools."""
    import numpy as np

    from fiitedsim.engine import state as engine

    monkeypatch.setattr(engine, "ROUND_BLOCKS", 7)
    monkeypatch.setattr(engine, "ROUND_BLOCK_MIN", 1)
    tables = [TableSpec("a", 300, 8, 2, 4), TableSpec("b", 200, 8, 2, 4), TableSpec("c", 100, 4, 1, 4)]
    dense = sum(t.dense_bytes for t in tables)
    cfg = ReplayConfig(budget_bytes=dense // 4, page_bytes=32, interval=5, index_initial=4, gamma=0.9,
                       report_every=20, allocator=allocator)
    rng = np.random.default_rng(11)
    lookups = []
    for s in range(80):
        for _ in range(12):
            t = int(rng.integers(0, 3))
            r = int((rng.zipf(1.3) + 2 * s) % tables[t].rows)
            lookups.append((s, t, r, [float(x) for x in rng.random(tables[t].chunks, np.float32)]))
    ref = reference.replay(tables, cfg, lookups, policy=policy)
    eng = engine_replay(tables, cfg, lookups, policy=policy, check=True)
    assert_same(ref, eng)


@st.composite
def auto_scenarios(draw):
    """`scenarios` with `--page-bytes auto` and/or `--index-initial auto`, and tables up to 100x larger, so that
    rows bind some indices and the budget (N_p // (k + 1)) others: capacities differ between tables and k."""
    tables, cfg, lookups, importance = draw(scenarios())
    scale = draw(st.sampled_from([1, 10, 100]))
    tables = [replace(t, rows=t.rows * draw(st.sampled_from([1, scale]))) for t in tables]
    dense = sum(t.dense_bytes for t in tables)
    budget = draw(st.one_of(st.just(0), st.integers(0, dense // 8), st.integers(0, dense),
                            st.integers(dense, 2 * dense)))
    page, index = draw(st.sampled_from([("auto", "auto"), ("auto", cfg.index_initial), (cfg.page_bytes, "auto")]))
    return tables, replace(cfg, budget_bytes=budget, page_bytes=page, index_initial=index), lookups, importance


@given(auto_scenarios(), st.sampled_from(["fiited", "fiited", "row-prune", "uniform-dim", "hash"]))
def test_engine_equals_reference_with_auto_layouts(scenario, policy):
    tables, cfg, lookups, importance = scenario
    if policy == "hash":
        dense = sum(t.dense_bytes for t in tables)
        assume(all(cfg.budget_bytes * t.dense_bytes // dense >= t.dim * t.dtype_bytes for t in tables))
    note(f"tables={tables}\ncfg={cfg}\nlookups={lookups}\nimportance={importance}")
    ref = reference.replay(tables, cfg, lookups, importance, policy=policy, check=True)
    eng = engine_replay(tables, cfg, lookups, importance, policy=policy, check=True)
    assert_same(ref, eng)
    if policy in ("fiited", "row-prune"):
        layout = resolve_layout(tables, cfg)
        assert ref.index_capacity == {(t, k): max(layout.index_capacity(t, k), c) for (t, k), c in
                                      ref.index_capacity.items()}
        if cfg.budget_covers == "payload" and cfg.index_initial == "auto":
            assert ref.summary["rehashes"] == 0


@pytest.mark.parametrize("policy", ["fiited", "row-prune"])
@pytest.mark.parametrize("covers", ["payload", "all"])
@pytest.mark.parametrize("allocator", ["lowest", "lifo"])
@pytest.mark.parametrize("share", [0.02, 0.1, 0.5])
def test_auto_layouts_match_the_reference(policy, covers, allocator, share):
    """Three pools (8-, 16- and 32-byte chunks), K from 2 to 4, rows from 6 to 2000: at these budgets the page
    size and every index's capacity come from `resolve_layout`, and the capacities differ between tables and k."""
    import numpy as np

    tables = [TableSpec("a", 2000, 16, 4, 4), TableSpec("b", 150, 8, 2, 4), TableSpec("c", 400, 32, 8, 4),
              TableSpec("d", 6, 8, 4, 4)]
    dense = sum(t.dense_bytes for t in tables)
    cfg = ReplayConfig(budget_bytes=int(share * dense), interval=4, gamma=0.95, report_every=10,
                       budget_covers=covers, allocator=allocator, position_weight=0.8)
    layout = resolve_layout(tables, cfg)
    assert len({c for caps in layout.index_initial for c in caps}) >= 3
    rng = np.random.default_rng(3)
    lookups = []
    for s in range(60):  # a drifting hot set: rows enter, get pruned and come back
        for _ in range(40):
            t = int(rng.integers(0, len(tables)))
            r = int((rng.zipf(1.2) + 5 * s) % tables[t].rows)
            lookups.append((s, t, r, [float(x) for x in rng.random(tables[t].chunks, np.float32)]))
    ref = reference.replay(tables, cfg, lookups, policy=policy)
    eng = engine_replay(tables, cfg, lookups, policy=policy, check=True)
    assert_same(ref, eng)
    assert ref.index_capacity == {(t, k): layout.index_capacity(t, k) for t, spec in enumerate(tables)
                                  for k in range(spec.chunks)}  # none doubled
