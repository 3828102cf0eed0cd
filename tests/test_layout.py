"""`--page-bytes auto` and `--index-initial auto` (DESIGN 3.1-3.2, docs/semantics.md "Layout").

Every expected number is derived by hand in the comments: the budget split across pools by dense share
(`PoolLayout.page_caps` with nothing taken for index or metadata), then the page rule (the largest power of two
up to 64 KiB of which every pool's share holds 16 pages; else one page; else the smallest that fits the largest
chunk), then per index (t, k) n = min(rows_t, N_t // (k + 1)), N_t = N_p * dense_t // dense_p the table's share of
its pool's chunks, and the smallest power of two c >= 16 with n <= max_load * c.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from engine_adapter import engine_replay
from test_cli import fails_cleanly, run, write_trace

from fiitedsim import reference
from fiitedsim.config import (
    AUTO_INDEX_MAX,
    AUTO_INDEX_MIN,
    AUTO_MIN_PAGES,
    AUTO_PAGE_MAX,
    MAX_INDEX_INITIAL,
    ReplayConfig,
    TableSpec,
    auto_index_capacity,
    auto_page_bytes,
    check_budget_workable,
    resolve_layout,
)
from fiitedsim.errors import InputError
from fiitedsim.plan import plan

# one pool of 16-byte chunks (D = 16, C = 4, fp32; K = 4)
ONE = [TableSpec("a", rows=1000, dim=16, chunk=4)]
# pools of 16-byte chunks (a: dense 15,000 x 64 = 960,000) and 32-byte chunks (b: dense 250 x 128 = 32,000)
TWO = [TableSpec("a", rows=15_000, dim=16, chunk=4), TableSpec("b", rows=250, dim=32, chunk=8)]


def test_the_constants_are_the_documented_ones():
    assert (AUTO_PAGE_MAX, AUTO_MIN_PAGES, AUTO_INDEX_MIN, AUTO_INDEX_MAX, MAX_INDEX_INITIAL) == (
        65536, 16, 16, 65536, 2**30)
    assert ReplayConfig().page_bytes == ReplayConfig().index_initial == "auto"


# ---------------------------------------------------------------------------
# The page size


@pytest.mark.parametrize("budget, page", [
    (16 * 4096, 4096),          # exactly 16 pages of 4096 (8192: 8)
    (16 * 4096 - 1, 2048),      # 15 pages of 4096: 2048 holds 31
    (16 * 65536, 65536),        # 16 pages of the largest page
    (2**40, 65536),             # never above 64 KiB
    (16 * 16, 16),              # 16 pages of the smallest page that fits a chunk
    (16 * 16 - 1, 128),         # 15 pages of 16: no page gives 16; the largest with one page is 128 (255 // 128 = 1)
    (16, 16),                   # one page of 16
    (15, 16),                   # no page at all: the smallest power of two >= 16 bytes
    (0, 16),
])
def test_page_rule_of_one_pool(budget, page):
    assert auto_page_bytes(ONE, budget) == page


def test_page_rule_takes_the_pool_that_needs_the_smallest_pages():
    # budget 992,000 = the dense size: shares 960,000 and 32,000 bytes. Pool a alone: 960,000 // 65536 = 14 < 16,
    # 960,000 // 32768 = 29: 32768. Pool b: 32,000 // 2048 = 15 < 16, 32,000 // 1024 = 31: 1024 for both.
    assert auto_page_bytes(TWO[:1], 960_000) == 32768
    assert auto_page_bytes(TWO, 992_000) == 1024
    # budget 5,022 (0.0050625 of 992,000): shares 4,860 and 162; 16 pages need 16 x 32 = 512 bytes in pool b (its
    # chunks are 32 bytes): none; one page of 128 fits b (162 // 128 = 1) and a (4,860 // 128 = 37), of 256 not b
    assert auto_page_bytes(TWO, 5022) == 128
    # budget 992: shares 960 and 32: one page of 32 in b, nothing larger
    assert auto_page_bytes(TWO, 992) == 32
    # budget 991: shares 959 and 31: no 32-byte page in b; the smallest power of two >= 32
    assert auto_page_bytes(TWO, 991) == 32


def test_page_rule_for_chunks_that_are_no_power_of_two_or_beyond_64_kib():
    odd = [TableSpec("t", rows=100, dim=6, chunk=3)]          # 12-byte chunks: pages from 16
    assert auto_page_bytes(odd, 0) == 16 and auto_page_bytes(odd, 16 * 16) == 16 and auto_page_bytes(odd, 512) == 32
    huge = [TableSpec("t", rows=10, dim=32768, chunk=32768)]  # 131072-byte chunks: no page up to 64 KiB fits one
    assert auto_page_bytes(huge, 10 * 131072) == 131072


def test_a_budget_too_small_for_any_page_is_refused_naming_the_smallest_workable_budget():
    # budget 991 of TWO: pages of 32 (above); pool b gets 31 bytes. Smallest workable budget: the least B with
    # B * 32,000 // 992,000 >= 32, i.e. ceil(32 * 992,000 / 32,000) = 992 bytes.
    cfg = ReplayConfig(budget_bytes=991, budget_label="991B")
    with pytest.raises(InputError, match=r"budget 991B \(991 bytes\) leaves no room for one 32-byte page in every "
                                         r"pool; the smallest workable budget is 992 bytes"):
        check_budget_workable(TWO, cfg)
    check_budget_workable(TWO, ReplayConfig(budget_bytes=992))
    with pytest.raises(InputError, match="smallest workable budget is 992 bytes"):
        plan(TWO, ["fiited"], "991B")
    assert plan(TWO, ["fiited"], "992B")[0].resolved().page_bytes == 32


def test_replay_refuses_a_budget_too_small_for_any_page(monkeypatch, capsys, tmp_path):
    # test_cli's tables: users 16-byte chunks, dense 6,400,000; items 32-byte chunks, dense 2,560,000. At 100
    # bytes items gets 100 * 2,560,000 // 8,960,000 = 28 bytes: not one 32-byte page. The smallest workable
    # budget: ceil(32 * 8,960,000 / 2,560,000) = 112 bytes (112 / 8,960,000 = 1.25e-05).
    trace = write_trace(tmp_path / "t.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", trace, "--budget", "100B", "--out", tmp_path / "o", "-q"],
                  "budget 100B (100 bytes) leaves no room for one 32-byte page in every pool",
                  "the smallest workable budget is 112 bytes (1.25e-05 of the dense size)")
    r = run(monkeypatch, capsys, "replay", trace, "--budget", "112B", "--policy", "fiited", "--json", "-q")
    assert r.code == 0, r.err
    [budget] = json.loads(r.out)["config"]["budgets"]
    assert budget["page_bytes"] == 32


# ---------------------------------------------------------------------------
# The index capacities


@pytest.mark.parametrize("n, max_load, cap", [
    (0, 0.75, 16), (12, 0.75, 16),      # the floor: 12 <= 0.75 x 16
    (13, 0.75, 32), (96, 0.75, 128), (97, 0.75, 256),
    (100, 0.9, 128), (115, 0.9, 128), (116, 0.9, 256),  # 0.9 x 128 = 115.2
    (100, 0.5, 256), (128, 0.5, 256), (129, 0.5, 512),
    (3 * 2**14, 0.75, 2**16), (3 * 2**14 + 1, 0.75, 2**16), (2**40, 0.75, 2**16),  # the cap: 0.75 x 65,536
])
def test_index_capacity_rule(n, max_load, cap):
    assert auto_index_capacity(n, max_load) == cap


def test_index_capacities_per_table_and_chunk_position():
    # ONE at pages of 64 bytes (4 slots) and a budget of 1,600 bytes: 25 pages, N = 100 chunks. Index (0, k) holds
    # at most min(1000, 100 // (k + 1)) = 100, 50, 33, 25 entries -> 256, 128, 64, 64 (0.75 x 64 = 48 >= 33,
    # 0.75 x 32 = 24 < 25); at max_load 0.9: 128, 64, 64, 32 (0.9 x 32 = 28.8 >= 25).
    cfg = resolve_layout(ONE, ReplayConfig(budget_bytes=1600, page_bytes=64))
    assert cfg.page_bytes == 64 and cfg.index_initial == ((256, 128, 64, 64),)
    cfg = resolve_layout(ONE, ReplayConfig(budget_bytes=1600, page_bytes=64, max_load=0.9))
    assert cfg.index_initial == ((128, 64, 64, 32),)
    # rows bind: a 30-row table holds at most 30 entries an index whatever the budget -> 64 (0.75 x 32 = 24 < 30)
    few = [TableSpec("few", rows=30, dim=16, chunk=4)]
    assert resolve_layout(few, ReplayConfig(budget_bytes=10**6)).index_initial == ((64, 64, 64, 64),)
    # budget 0 holds nothing: every index at the floor
    assert resolve_layout(ONE, ReplayConfig(budget_bytes=0)).index_initial == ((16, 16, 16, 16),)


def test_index_capacities_of_tables_in_two_pools():
    # users: 1,000 rows, 16-byte chunks (dense 64,000); items: 40 rows, 32-byte chunks, K = 2 (dense 2,560).
    # Budget 16,640 (0.25): shares 16,000 and 640. 640 // 32 = 20 >= 16 (640 // 64 = 10): pages of 32 bytes.
    # users: 500 pages of 2 slots, N = 1,000: n = 1000, 500, 333, 250 -> 2048, 1024, 512, 512.
    # items: 20 pages of 1 slot, N = 20: n = min(40, 20) = 20, min(40, 10) = 10 -> 32, 16.
    tables = [TableSpec("users", rows=1000, dim=16, chunk=4), TableSpec("items", rows=40, dim=16, chunk=8)]
    cfg = resolve_layout(tables, ReplayConfig(budget_bytes=16_640))
    assert cfg.page_bytes == 32
    assert cfg.index_initial == ((2048, 1024, 512, 512), (32, 16))
    assert [[cfg.index_capacity(t, k) for k in range(s.chunks)] for t, s in enumerate(tables)] == [
        [2048, 1024, 512, 512], [32, 16]]


def test_movielens_vocabulary_tables_at_4480_bytes():
    # 7 fp32 tables, D = 16, C = 4 (one pool of 16-byte chunks, dense 3,550 rows x 64). 4,480 // 256 = 17 >= 16
    # (4,480 // 512 = 8): pages of 256 bytes, 16 slots each, N = 17 x 16 = 272. Each table's share is
    # floor(272 x rows / 3,550): 944 -> 72, 1,651 -> 126, 62 -> 4, 3 -> 0, 22 -> 1, 796 -> 60, 72 -> 5; then
    # n_k = share // (k + 1):
    #   72: 72, 36, 24, 18 -> 128 (0.75 x 64 = 48 < 72 <= 96), 64, 32 (24 <= 24), 32 (12 < 18)
    #   126: 126, 63, 42, 31 -> 256 (96 < 126), 128, 64, 64 (24 < 31)
    #   60: 60, 30, 20, 15 -> 128 (48 < 60), 64, 32, 32
    #   shares of at most 5 entries: the floor, 16 x 4
    # 1,280 buckets, 20,480 bytes (every index at 1024 buckets: 28 x 1024 x 16 = 458,752 bytes)
    tables = [TableSpec(f"t{i}", rows=r, dim=16, chunk=4) for i, r in enumerate([944, 1651, 62, 3, 22, 796, 72])]
    cfg = resolve_layout(tables, ReplayConfig(budget_bytes=4480))
    floor = (16,) * 4
    assert cfg.page_bytes == 256
    assert cfg.index_initial == ((128, 64, 32, 32), (256, 128, 64, 64), floor, floor, floor, (128, 64, 32, 32), floor)
    assert sum(map(sum, cfg.index_initial)) * 16 == 20_480


def test_tables_of_one_pool_share_its_chunks_by_dense_size():
    # a (3,000 rows) and b (1,000 rows), both 16-byte chunks (D = 16, C = 4): one pool, dense 4,000 x 64. Pages of
    # 64 bytes (4 slots), budget 16,000: 250 pages, N = 1,000. Shares 1,000 x 3,000 // 4,000 = 750 and 250:
    # a: 750, 375, 250, 187 -> 1024 (768 >= 750), 512, 512 (384 >= 250), 256 (192 >= 187)
    # b: 250, 125, 83, 62 -> 512 (384 >= 250 > 192), 256 (192 >= 125), 128 (96 >= 83), 128 (62 > 48)
    tables = [TableSpec("a", rows=3000, dim=16, chunk=4), TableSpec("b", rows=1000, dim=16, chunk=4)]
    cfg = resolve_layout(tables, ReplayConfig(budget_bytes=16_000, page_bytes=64))
    assert cfg.index_initial == ((1024, 512, 512, 256), (512, 256, 128, 128))


def test_numbers_set_every_index_and_the_page():
    # a number of buckets is every index's; a page size given is the one the capacities use
    cfg = resolve_layout(TWO, ReplayConfig(budget_bytes=992_000, index_initial=64))
    assert (cfg.page_bytes, cfg.index_initial) == (1024, 64) and cfg.index_capacity(1, 3) == 64
    # pages of 64 bytes: a 960,000 // 64 = 15,000 pages x 4 slots, N = 60,000 >= 15,000 rows; b 500 pages x 2, N =
    # 1,000 >= 250 rows: every index holds at most its rows: a 15,000 -> 32768 (0.75 x 16384 = 12,288), b 250 -> 512
    cfg = resolve_layout(TWO, ReplayConfig(budget_bytes=992_000, page_bytes=64))
    assert cfg.index_initial == ((32768,) * 4, (512,) * 4)


def test_resolution_is_idempotent_and_tied_to_its_tables():
    cfg = resolve_layout(TWO, ReplayConfig(budget_bytes=992_000))
    assert resolve_layout(TWO, cfg) is cfg and cfg.resolved and not ReplayConfig().resolved
    assert resolve_layout(TWO, ReplayConfig(page_bytes=4096, index_initial=8)).resolved
    with pytest.raises(ValueError, match="other tables"):
        resolve_layout(ONE, cfg)
    with pytest.raises(ValueError, match="resolve the config first"):
        ReplayConfig().index_capacity(0, 0)


def test_auto_indices_of_a_huge_table_start_at_the_cap_and_a_number_beyond_memory_is_refused(monkeypatch, capsys,
                                                                                                tmp_path):
    """A table of 2**40 - 1 rows (D = 8, C = 4: 16-byte chunks, K = 2) at 0.10 of its dense size: some 2.2e11
    chunks fit the budget, so both indices start at the 65,536-bucket cap (2 x 65,536 x 16 = 2 MiB of index) and
    grow as entries come. `--index-initial 2**30` asks the engine to reserve 4 x 8 bytes per bucket up front:
    2 x 4 x 2**30 x 8 = 64 GiB, more than the 8 GiB this test says the machine has."""
    from fiitedsim import memory
    from fiitedsim.traces.writer import TraceWriter

    n = 2**40 - 1
    huge = [TableSpec("huge", rows=n, dim=8, chunk=4)]
    assert resolve_layout(huge, ReplayConfig(budget_bytes=n * 32 // 10)).index_initial == ((65536, 65536),)
    with TraceWriter(tmp_path / "t.parquet", huge, with_grad=False) as w:
        w.write(np.array([0, 1]), np.zeros(2, np.int32), np.array([5, n - 1], np.int64))
    result = run(monkeypatch, capsys, "replay", tmp_path / "t.parquet", "--policy", "fiited", "--json", "-q")
    assert result.code == 0, result.err
    assert json.loads(result.out)["policies"]["fiited"]["index_bytes_peak"] == 2 * 65536 * 16
    monkeypatch.setattr(memory, "memory_limit", lambda: 8 * 2**30)
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", tmp_path / "t.parquet", "--policy", "fiited",
                                                  "--index-initial", str(2**30), "-q"],
                  "--index-initial 1073741824: the 2 hash indices (one per table and chunk position) of 1073741824 "
                  "buckets each would take 64 GiB of memory at the start, more than the 8 GiB", "lower --index-initial")


def test_each_budget_of_a_plan_has_its_own_layout():
    runs = plan(TWO, ["fiited"], "992B,5022B,992000B")
    assert [run.config.page_bytes for run in runs] == ["auto"] * 3  # as given
    assert [run.resolved().page_bytes for run in runs] == [32, 128, 1024]


# ---------------------------------------------------------------------------
# Replays with auto layouts: no index ever doubles, and the engine equals the reference


def _zipf_trace(tables, steps, per_step, seed):
    rng = np.random.default_rng(seed)
    lookups = []
    for s in range(steps):
        for _ in range(per_step):
            t = int(rng.integers(0, len(tables)))
            r = int(rng.zipf(1.1) % tables[t].rows)
            grad = rng.gamma(2.0, 0.5, tables[t].chunks).astype(np.float32).tolist()
            lookups.append((s, t, r, grad))
    return lookups


# budgets from a tenth of a page per pool up to most of the dense size, tables of different rows, chunks and K
MIXED = [TableSpec("big", rows=3000, dim=16, chunk=4), TableSpec("mid", rows=300, dim=8, chunk=2),
         TableSpec("wide", rows=200, dim=32, chunk=8), TableSpec("tiny", rows=5, dim=16, chunk=4)]


@pytest.mark.parametrize("policy", ["fiited", "row-prune"])
@pytest.mark.parametrize("share", [0.01, 0.05, 0.2, 0.6])
@pytest.mark.parametrize("allocator", ["lowest", "lifo"])
def test_an_auto_sized_index_alone_in_its_pool_never_doubles(policy, share, allocator):
    """Index (t, k) holds rows whose chunks 0..k are resident, k + 1 chunks each, all in t's pool, whose budget
    keeps at most N_p chunks; alone in its pool a table's share is N_p: never more than min(rows_t, N_p // (k + 1))
    entries, which its capacity takes. With a table beside it in its pool (`tiny` beside `big`), an index may
    outgrow its share and double: the engine still equals the reference."""
    alone = [t for t in MIXED if t.name != "tiny"]   # big, mid and wide: one table per pool
    for tables, doubles in ((alone, False), (MIXED, True)):
        dense = sum(t.dense_bytes for t in tables)
        cfg = ReplayConfig(budget_bytes=int(share * dense), interval=3, report_every=5, gamma=0.95,
                           allocator=allocator)
        lookups = _zipf_trace(tables, steps=40, per_step=120, seed=7)
        ref = reference.replay(tables, cfg, lookups, policy=policy)
        eng = engine_replay(tables, cfg, lookups, policy=policy, check=True)
        assert ref.summary == eng.summary and ref.index_layout == eng.index_layout
        if doubles:
            continue
        layout = resolve_layout(tables, cfg)
        start = sum(map(sum, layout.index_initial)) * cfg.index_entry_bytes
        for result in (ref, eng):
            assert result.summary["rehashes"] == 0
            assert result.summary["index_bytes_peak"] == result.summary["index_bytes_final"] == start
            assert result.index_capacity == {(t, k): layout.index_capacity(t, k) for t, s in enumerate(tables)
                                             for k in range(s.chunks)}
        # the same trace with every index at the floor does double: the bound is what keeps the auto ones whole
        small = reference.replay(tables, ReplayConfig(budget_bytes=cfg.budget_bytes, index_initial=16, interval=3,
                                                      gamma=0.95), lookups, policy=policy)
        assert share < 0.05 or small.summary["rehashes"] > 0


def test_the_capacities_differ_between_tables_and_positions_in_these_replays():
    dense = sum(t.dense_bytes for t in MIXED)
    layout = resolve_layout(MIXED, ReplayConfig(budget_bytes=int(0.05 * dense)))
    flat = [c for caps in layout.index_initial for c in caps]
    assert len(set(flat)) >= 4 and len(set(layout.index_initial[0])) > 1


# ---------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("args, page, index", [
    ([], "auto", "auto"), (["--page-bytes", "auto", "--index-initial", "auto"], "auto", "auto"),
    (["--page-bytes", "AUTO"], "auto", "auto"), (["--page-bytes", "1024", "--index-initial", "64"], 1024, 64),
])
def test_replay_reads_auto_and_numbers(monkeypatch, capsys, tmp_path, args, page, index):
    trace = write_trace(tmp_path / "t.parquet")
    r = run(monkeypatch, capsys, "replay", trace, "--policy", "fiited", "--budget", "0.05", *args, "--json", "-q")
    assert r.code == 0, r.err
    config = json.loads(r.out)["config"]
    assert (config["page_bytes"], config["index_initial"]) == (page, index)
    [budget] = config["budgets"]
    # 0.05 of test_cli's tables resolves to pages of 4096 (test_cli.test_replay_budget_list_keys_and_all_policies)
    assert budget["page_bytes"] == (4096 if page == "auto" else page)
    if index == 64:
        assert budget["index_initial"] == [[64] * 4, [64] * 4]


BAD = [
    (["--page-bytes", "big"], "--page-bytes must be a positive number of bytes or auto, got 'big'"),
    (["--page-bytes", "1.5"], "--page-bytes must be a positive number of bytes or auto, got '1.5'"),
    (["--page-bytes", "-64"], "--page-bytes must be a positive number of bytes or auto, got '-64'"),
    (["--page-bytes", "0"], "--page-bytes must be positive, got 0"),
    (["--page-bytes", ""], "--page-bytes must be a positive number of bytes or auto, got ''"),
    (["--index-initial", "automatic"], "--index-initial must be a power of two up to 2**30 or auto, got 'automatic'"),
    (["--index-initial", "0x10"], "--index-initial must be a power of two up to 2**30 or auto, got '0x10'"),
    (["--index-initial", "1000"], "--index-initial must be a power of two, got 1000"),
    (["--index-initial", str(2**31)], "--index-initial must be at most 2**30"),
]


@pytest.mark.parametrize("args, words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_replay_refuses_bad_spellings(monkeypatch, capsys, tmp_path, args, words):
    trace = write_trace(tmp_path / "t.parquet")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", trace, *args, "--out", tmp_path / "o", "-q"], words)


@pytest.mark.parametrize("args, words", BAD[:1] + BAD[5:6] + BAD[7:8], ids=["page", "index", "index-1000"])
def test_train_refuses_bad_spellings(monkeypatch, capsys, tmp_path, args, words):
    fails_cleanly(monkeypatch, capsys, tmp_path, ["train", "--samples", "600", "--fields", "2", "--rows", "50",
                                                  "--batch", "128", *args, "--out", tmp_path / "o", "-q"], words)


def test_train_takes_index_initial_and_reports_both_layouts(monkeypatch, capsys, tmp_path):
    # 2 fields x 50 rows x D = 16 fp32: dense 6,400; budget 0.1 = 640 bytes, one pool of 16-byte chunks:
    # 640 // 32 = 20 >= 16 (640 // 64 = 10): pages of 32, 20 pages of 2 slots, N = 40, each field's share 20;
    # n = 20, 10, 6, 5 -> 32 (0.75 x 16 = 12 < 20 <= 24), 16, 16, 16 for each field
    args = ["train", "--samples", "600", "--fields", "2", "--rows", "50", "--batch", "128", "--budget", "0.1",
            "--interval", "3", "-q"]
    r = run(monkeypatch, capsys, *args, "--out", tmp_path / "a")
    assert r.code == 0, r.err
    config = json.loads((tmp_path / "a" / "train_summary.json").read_text())["config"]
    assert (config["page_bytes"], config["index_initial"]) == ("auto", "auto")
    assert [(b["page_bytes"], b["index_initial"]) for b in config["budgets"]] == [(32, [[32, 16, 16, 16]] * 2)]
    r = run(monkeypatch, capsys, *args, "--index-initial", "128", "--page-bytes", "64", "--out", tmp_path / "b")
    assert r.code == 0, r.err
    config = json.loads((tmp_path / "b" / "train_summary.json").read_text())["config"]
    assert (config["page_bytes"], config["index_initial"]) == (64, 128)
    assert [(b["page_bytes"], b["index_initial"]) for b in config["budgets"]] == [(64, [[128] * 4] * 2)]
