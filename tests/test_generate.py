"""Tests for the synthetic trace generator (fiitedsim.traces.generate) and the published profiles
(fiitedsim.traces.profiles)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fiitedsim.errors import InputError  # noqa: E402

# The project has no installed package or root conftest yet; make `import fiitedsim` work from a checkout.
from fiitedsim.traces import generate as gen  # noqa: E402
from fiitedsim.traces import profiles  # noqa: E402
from fiitedsim.traces.generate import GenerateConfig, generate  # noqa: E402
from fiitedsim.traces.writer import TABLES_KEY, unpack_grad  # noqa: E402


def small(**kw) -> GenerateConfig:
    args = dict(profile="zipf", tables=2, rows=5000, steps=20, batch=256, dim=16, chunk=4, seed=7)
    args.update(kw)
    return GenerateConfig(**args)


def read(path):
    return pq.read_table(path)


# ----------------------------------------------------------------------------- published profiles

def _parse_locality(path: Path) -> list[dict]:
    """Independent parser of Meta's locality_stats.txt: one dict per `.pt` block."""
    blocks, cur, mode = [], None, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.endswith(".pt"):
            cur = {"name": line, "lookup": [], "unique": [], "labels": []}
            blocks.append(cur)
            mode = None
        elif line.startswith("Locality stats after processing"):
            cur["batch"] = int(line.split()[-1])
        elif line.startswith("Avg # of indices:"):
            cur["indices"] = int(line.split(":")[1])
        elif line.startswith("Avg # of unique cols:"):
            cur["uniq"] = int(line.split(":")[1])
        elif line.startswith("Histogram of col sizes"):
            mode = "unique"
        elif line.startswith("Ratio of index distribution at different column sizes"):
            mode = "lookup"
        elif line.startswith("(") and mode:
            label, value = line.rsplit(":", 1)
            cur[mode].append(float(value))
            if mode == "lookup":
                cur["labels"].append(label)
    return blocks




def test_meta2021_constants_equal_published_whole_dataset_block(shared_data):
    blocks = _parse_locality(shared_data / "meta-dlrm-2021-locality.txt")
    first = blocks[0]
    assert first["name"] == "fbgemm_t856_bs65536.pt"
    assert first["batch"] == profiles.META_2021.batch_size
    assert tuple(first["lookup"]) == profiles.META_2021.lookup
    assert tuple(first["unique"]) == profiles.META_2021.unique
    assert tuple(first["labels"]) == profiles.BIN_LABELS


def test_meta2022_constants_equal_weighted_aggregate_of_parts(shared_data):
    blocks = _parse_locality(shared_data / "meta-dlrm-2022-locality.txt")
    assert len(blocks) == 16 and all(b["name"].startswith("fbgemm_t788_bs131072_") for b in blocks)
    w = np.array([b["indices"] for b in blocks], dtype=np.float64)
    lookup = w @ np.array([b["lookup"] for b in blocks]) / w.sum()
    unique = w @ np.array([b["unique"] for b in blocks]) / w.sum()
    assert blocks[0]["batch"] == profiles.META_2022.batch_size
    np.testing.assert_allclose(profiles.META_2022.lookup, lookup, rtol=0, atol=5e-7)
    np.testing.assert_allclose(profiles.META_2022.unique, unique, rtol=0, atol=5e-7)
    # weighting the unique-weighted histogram by unique counts changes nothing at this precision
    u = np.array([b["uniq"] for b in blocks], dtype=np.float64)
    np.testing.assert_allclose(profiles.META_2022.unique,
                               u @ np.array([b["unique"] for b in blocks]) / u.sum(), rtol=0, atol=5e-7)


def test_profile_helpers():
    assert profiles.bin_index([1, 2, 3, 4, 5, 8, 9, 32768, 32769, 10**9]).tolist() == \
        [0, 1, 2, 2, 3, 3, 4, 15, 16, 16]
    q = profiles.conditioned("meta2021", 1024)
    assert q[11:].sum() == 0 and q[10] > 0 and abs(q.sum() - 1) < 1e-12
    h = profiles.META_2021.lookup_hist
    assert profiles.cutoff_mass(profiles.META_2021, 1024) == pytest.approx(h[11:].sum())
    np.testing.assert_allclose(q[:11], h[:11] / h[:11].sum())
    assert profiles.conditioned("meta2022", 1).tolist() == [1.0] + [0.0] * 16
    assert profiles.tvd([1, 0], [0, 1]) == 1.0 and profiles.tvd([1, 1], [2, 2]) == 0.0
    # two batches: (step 0, table 0) has row 5 x3 and row 6 x1; (step 0, table 1) row 5 x2
    step = [0, 0, 0, 0, 0, 0]
    table = [0, 0, 0, 0, 1, 1]
    row = [5, 6, 5, 5, 5, 5]
    lookups, distinct = profiles.reuse_counts(step, table, row)
    assert lookups[:3].tolist() == [1, 2, 3] and lookups[3:].sum() == 0
    assert distinct[:3].tolist() == [1, 1, 1]
    lw, uw = profiles.reuse_histogram(step, table, row)
    np.testing.assert_allclose(lw[:3], [1 / 6, 2 / 6, 3 / 6])
    np.testing.assert_allclose(uw[:3], [1 / 3, 1 / 3, 1 / 3])


def test_c_minus_2_within_bin_model_reproduces_published_unique_histograms():
    for p in (profiles.META_2021, profiles.META_2022):
        implied = gen.implied_unique(p.lookup_hist, p.batch_size * 16)
        assert profiles.tvd(implied, p.unique_hist) < 0.01, p.name


# ----------------------------------------------------------------------------- determinism, schema

@pytest.mark.parametrize("profile", ["zipf", "meta2022"])
def test_same_seed_gives_identical_bytes(tmp_path, profile):
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    generate(a, small(profile=profile, drift=0.001))
    generate(b, small(profile=profile, drift=0.001))
    generate(c, small(profile=profile, drift=0.001, seed=8))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("profile", ["zipf", "meta2021"])
def test_schema_metadata_and_layout(tmp_path, profile):
    cfg = small(profile=profile)
    out = tmp_path / "t.parquet"
    seen = []
    rep = generate(out, cfg, progress=seen.append)
    assert rep.lookups == cfg.steps * cfg.tables * cfg.batch == seen[-1]
    assert seen == sorted(seen)
    meta = pq.read_schema(out).metadata
    tables = json.loads(meta[TABLES_KEY])
    assert [t["name"] for t in tables] == ["t0", "t1"]
    assert all(t["rows"] == 5000 and t["dim"] == 16 and t["chunk"] == 4 and t["dtype_bytes"] == 4 for t in tables)
    tb = read(out)
    assert tb.schema.field("step").type == pa.int64()
    assert tb.schema.field("table").type == pa.int32()
    assert tb.schema.field("row").type == pa.int64()
    assert tb.schema.field("grad_norm").type == pa.binary(4 * cfg.chunks)  # packed: K float32 per lookup
    step, table, row = (tb[c].to_numpy() for c in ("step", "table", "row"))
    expected_step = np.repeat(np.arange(cfg.steps), cfg.tables * cfg.batch)
    expected_table = np.tile(np.repeat(np.arange(cfg.tables), cfg.batch), cfg.steps)
    assert (step == expected_step).all() and (table == expected_table).all()
    assert row.min() >= 0 and row.max() < cfg.rows
    assert tb["grad_norm"].null_count == 0
    no_grad = tmp_path / "n.parquet"
    generate(no_grad, small(profile=profile, grad=False))
    assert read(no_grad).column_names == ["step", "table", "row"]


def test_row_groups_hold_whole_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "ROW_GROUP_LOOKUPS", 1000)
    out = tmp_path / "t.parquet"
    generate(out, small(batch=300, steps=7))  # 3 batches of 300 per row group
    md = pq.ParquetFile(out).metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sizes == [900] * 4 + [600]
    out2 = tmp_path / "u.parquet"
    generate(out2, small(batch=2500, steps=2, tables=1, profile="meta2021"))  # a batch larger than a group
    md = pq.ParquetFile(out2).metadata
    assert [md.row_group(i).num_rows for i in range(md.num_row_groups)] == [1000, 1000, 500] * 2


# ----------------------------------------------------------------------------- Zipf popularity

def test_zipf_sampler_matches_exact_discrete_zipf_small_rows():
    from scipy.stats import chisquare

    rows, alpha, n = 60, 1.05, 300_000
    ranks = gen.sample_zipf_ranks(n, alpha, rows, seed=3)
    assert ranks.min() >= 1 and ranks.max() <= rows
    obs = np.bincount(ranks, minlength=rows + 1)[1:]
    p = np.arange(1, rows + 1, dtype=float) ** -alpha
    p /= p.sum()
    assert chisquare(obs, n * p).pvalue > 1e-3


@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.05, 1.3])
def test_zipf_sampler_tail_mass_for_a_billion_rows(alpha):
    from scipy.special import zeta

    rows, n = 10**9, 400_000
    ranks = gen.sample_zipf_ranks(n, alpha, rows, seed=11)
    assert ranks.min() >= 1 and ranks.max() <= rows
    # exact masses by direct summation over blocks (Euler-Maclaurin for the huge tail)
    def mass(lo, hi):  # sum_{r=lo}^{hi} r^-alpha, lo large
        if alpha == 1.0:
            return np.log((hi + 0.5) / (lo - 0.5))
        return ((hi + 0.5) ** (1 - alpha) - (lo - 0.5) ** (1 - alpha)) / (1 - alpha)
    head = (np.arange(1, 1001, dtype=float) ** -alpha).sum()
    total = head + mass(1001, rows)
    if alpha > 1:
        total_exact = zeta(alpha, 1) - zeta(alpha, rows + 1)
        assert total == pytest.approx(total_exact, rel=1e-6)
    for lo, hi in [(1, 1), (2, 10), (11, 1000), (1001, 10**5), (10**5 + 1, 10**7), (10**7 + 1, rows)]:
        p = (np.arange(lo, hi + 1, dtype=float) ** -alpha).sum() / total if hi <= 1000 else mass(lo, hi) / total
        share = np.mean((ranks >= lo) & (ranks <= hi))
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-4, (lo, hi, share, p)


def test_trace_rank_frequency_slope_is_minus_alpha(tmp_path):
    alpha = 1.2
    out = tmp_path / "z.parquet"
    generate(out, small(alpha=alpha, rows=10**8, steps=100, batch=4000, tables=1, grad=False))
    row = read(out)["row"].to_numpy()
    freq = np.sort(np.unique(row, return_counts=True)[1])[::-1][:100]
    slope = np.polyfit(np.log(np.arange(1, 101)), np.log(freq), 1)[0]
    assert abs(slope + alpha) < 0.1
    # hot rows are scattered, not rows 0..k
    hot = np.unique(row, return_counts=True)
    top = hot[0][np.argsort(-hot[1])[:20]]
    assert top.max() > 10**6


@pytest.mark.parametrize("rows", [1, 2, 3, 17, 1000, 4097, 65536])
def test_rank_to_row_is_a_bijection(rows):
    cfg = small(rows=rows, batch=1, tables=3)
    for t in range(3):
        r = gen.rank_to_row(np.arange(1, rows + 1), 0, t, cfg)
        assert sorted(r.tolist()) == list(range(rows))


# ----------------------------------------------------------------------------- Meta profiles

@pytest.mark.parametrize("profile", ["meta2021", "meta2022"])
@pytest.mark.parametrize("batch", [1024, 4096])
def test_meta_profile_matches_conditioned_published_histogram(tmp_path, profile, batch):
    cfg = GenerateConfig(profile=profile, tables=2, rows=200_000, steps=30, batch=batch, grad=False, seed=1)
    out = tmp_path / "m.parquet"
    rep = generate(out, cfg)
    target = profiles.conditioned(profile, batch)
    np.testing.assert_allclose(rep.target, target)
    assert rep.cutoff_mass == pytest.approx(profiles.cutoff_mass(profile, batch))
    assert rep.tvd <= 0.05
    print(f"{profile} batch {batch}: TVD {rep.tvd:.4f}, cut-off mass {rep.cutoff_mass:.3f}")
    tb = read(out)
    step, table, row = (tb[c].to_numpy() for c in ("step", "table", "row"))
    lookup, unique = profiles.reuse_histogram(step, table, row)
    np.testing.assert_allclose(lookup, rep.measured_lookup, atol=1e-12)
    np.testing.assert_allclose(unique, rep.measured_unique, atol=1e-12)
    assert profiles.tvd(lookup, target) <= 0.05
    # the unique-weighted histogram follows the one the c^-2 model implies
    assert profiles.tvd(unique, gen.implied_unique(target, batch)) <= 0.1
    assert "TVD" in "\n".join(rep.lines())
    # every batch has exactly `batch` lookups; popular rows recur across steps
    assert (np.bincount(step * cfg.tables + table) == batch).all()
    t0 = row[table == 0]
    s0 = step[table == 0]
    hottest = gen.rank_to_row(1, 0, 0, cfg)
    assert len(np.unique(s0[t0 == hottest])) >= 0.8 * cfg.steps


def test_meta_profile_big_rows_and_tiny_batch(tmp_path):
    rep = generate(tmp_path / "m.parquet",
                   GenerateConfig(profile="meta2022", tables=1, rows=10**9, steps=200, batch=8, grad=False))
    assert rep.lookups == 1600 and rep.tvd <= 0.05


# ----------------------------------------------------------------------------- drift

def _top_overlap(path, k=100):
    tb = read(path)
    step, row = tb["step"].to_numpy(), tb["row"].to_numpy()
    last = step.max()
    def top(mask):
        r, c = np.unique(row[mask], return_counts=True)
        return set(r[np.argsort(-c, kind="stable")[:k]].tolist())
    early, late = top(step < last * 0.1), top(step > last * 0.9)
    return len(early & late) / k


@pytest.mark.parametrize("profile", ["zipf", "meta2021"])
def test_drift_moves_the_hot_set(tmp_path, profile):
    overlaps = []
    for drift in (0.0, 1e-4, 1e-3):
        out = tmp_path / f"d{drift}.parquet"
        generate(out, small(profile=profile, rows=10_000, steps=100, batch=2000, tables=1, drift=drift,
                            grad=False))
        overlaps.append(_top_overlap(out))
    assert overlaps[0] >= 0.6
    assert overlaps[0] > overlaps[1] > overlaps[2]
    assert overlaps[2] <= 0.1


def test_drift_formula_moves_rank_one(tmp_path):
    # alpha = 3: rank 1 takes 83% of the lookups, so the mode of each step is rank 1's row
    cfg = small(alpha=3.0, rows=1000, steps=30, batch=200, tables=2, drift=0.0123, grad=False)
    out = tmp_path / "d.parquet"
    generate(out, cfg)
    tb = read(out)
    step, table, row = (tb[c].to_numpy() for c in ("step", "table", "row"))
    for t in range(cfg.tables):
        for s in range(cfg.steps):
            sel = row[(step == s) & (table == t)]
            mode = np.bincount(sel).argmax()
            shift = int(np.floor(cfg.drift * s * cfg.rows)) % cfg.rows
            assert mode == gen.rank_to_row(1, s, t, cfg)
            assert mode == gen.rank_to_row(1 + shift, 0, t, cfg)


# ----------------------------------------------------------------------------- gradient norms

@pytest.mark.parametrize("profile", ["zipf", "meta2022"])
def test_grad_norms(tmp_path, profile):
    cfg = small(profile=profile, rows=20_000, steps=40, batch=1024, dim=64, chunk=8)
    out = tmp_path / "g.parquet"
    generate(out, cfg)
    tb = read(out)
    g = unpack_grad(tb["grad_norm"].combine_chunks())
    assert g.dtype == np.float32 and np.isfinite(g).all() and (g >= 0).all()
    means = g.mean(axis=0)
    assert (np.diff(means) < 0).all()
    np.testing.assert_allclose(means[1:] / means[:-1], gen.GRAD_DECAY, rtol=0.05)
    # per-row mean gradient rises with the row's lookup count (popularity)
    row = tb["row"].to_numpy()
    rows, inv, cnt = np.unique(row, return_inverse=True, return_counts=True)
    mean_g = np.bincount(inv, weights=g[:, 0]) / cnt
    from scipy.stats import spearmanr
    rho = spearmanr(cnt, mean_g).statistic
    assert rho > 0.2, rho
    hot = cnt >= np.quantile(cnt, 0.99)
    cold = cnt <= np.quantile(cnt, 0.5)
    assert mean_g[hot].mean() > 1.3 * mean_g[cold].mean()


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw, words", [
    (dict(profile="meta2023"), "unknown --profile"),
    (dict(tables=0), "--table-count"),
    (dict(rows=0), "--rows"),
    (dict(rows=2**40), "--rows"),
    (dict(steps=-1), "--steps"),
    (dict(batch=0), "--batch"),
    (dict(dim=0), "--dim"),
    (dict(dim=64, chunk=5), "does not divide"),
    (dict(alpha=0.0), "--alpha"),
    (dict(alpha=-1.0, profile="meta2021"), "--alpha"),
    (dict(alpha=float("nan")), "--alpha"),
    (dict(alpha="1"), "--alpha"),
    (dict(drift=-0.1), "--drift"),
    (dict(drift=1.5), "--drift"),
    (dict(drift=float("inf")), "--drift"),
    (dict(seed=-1), "--seed"),
    (dict(steps=True), "--steps"),
    (dict(steps=2.5), "--steps"),
    (dict(profile="meta2022", rows=100, batch=4096), "--rows >= --batch"),
])
def test_bad_config_raises_input_error(kw, words):
    with pytest.raises(InputError) as info:
        small(**kw)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_meta_allows_uniform_popularity(tmp_path):
    rep = generate(tmp_path / "u.parquet", small(profile="meta2021", alpha=0.0, grad=False))
    assert rep.tvd <= 0.05
