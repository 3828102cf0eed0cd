"""`qr`, the quotient-remainder trick: its sizes and figures worked out by hand, and the trainer's gradients of
compositional embeddings against PyTorch autograd."""
from __future__ import annotations

import numpy as np
import pytest
from engine_adapter import engine_replay
from test_cli import fails_cleanly, run, write_trace
from test_train_model import close, coalesced_rows, needs_torch, perturb, tiny, torch, torch_top

from fiitedsim import reference
from fiitedsim.config import ReplayConfig, TableSpec
from fiitedsim.errors import InputError
from fiitedsim.policies import Qr, knowledge
from fiitedsim.policies.qr import min_pair_rows, qr_layout, remainder_rows
from fiitedsim.train.model import backward, bce_with_logits, coalesce, factor_grads, forward, init_params

# one table of 100 rows, D = 4 (C = 2), fp32: 16 bytes a row, dense 1,600 bytes
ONE = [TableSpec("a", rows=100, dim=4, chunk=2)]


def test_sizes_by_hand():
    # a 30-row share: ceil(100/m) + m <= 30 for m = 26 (4 + 26 = 30), not 27 (4 + 27 = 31): the largest is 26
    assert remainder_rows(100, 30) == 26
    # the fewest rows of a pair: m = 10 gives 10 + 10 = 20 (9: 12 + 9 = 21, 11: 10 + 11 = 21)
    assert min_pair_rows(100) == 20 and remainder_rows(100, 20) == 10 and remainder_rows(100, 19) == 0
    # a share of all the rows keeps the table whole
    assert remainder_rows(100, 100) is None
    # 7 rows in a share of 6: m = 4 gives 2 + 4 = 6, m = 5 gives 2 + 5 = 7
    assert remainder_rows(7, 6) == 4 and remainder_rows(7, 5) == 0
    policy = Qr(ONE, ReplayConfig(budget_bytes=30 * 16), True, False)
    # quotient rows ceil(100 / 26) = 4, remainder rows 26: 30 rows x 16 bytes
    assert policy.m == [26] and policy.payload_bytes == 480 and policy.index_bytes == policy.meta_bytes == 0


def test_tables_get_their_fewest_rows_then_split_the_rest_by_dense_size():
    # a: 100 rows of 16 bytes (dense 1,600), fewest 20 rows (m = 10); b: 50 rows of 32 bytes (D = 8; dense 1,600),
    # fewest: m = 7 gives 8 + 7 = 15 (6: 9 + 6, 8: 7 + 8 also 15; nothing less) -> 15 rows. The least budget is
    # 20 x 16 + 15 x 32 = 800. At 1,280, the rest 480 splits in halves: a 20 + 240 // 16 = 35 rows -> the largest
    # m with ceil(100/m) + m <= 35 is 31 (4 + 31; 32: 4 + 32 = 36); b 15 + 240 // 32 = 22 rows -> m = 19
    # (ceil(50/19) = 3, 3 + 19 = 22; 20: 3 + 20 = 23). Payload 35 x 16 + 22 x 32 = 1,264 <= 1,280
    tables = [TableSpec("a", rows=100, dim=4, chunk=2), TableSpec("b", rows=50, dim=8, chunk=2)]
    assert min_pair_rows(50) == 15 and qr_layout(tables, 1280) == [31, 19]
    assert Qr(tables, ReplayConfig(budget_bytes=1280), True, False).payload_bytes == 1264
    # a small table is whole from the start: 3 rows take 3 (their smallest pair, m = 2, takes 2 + 2 = 4)
    small = [TableSpec("s", rows=3, dim=4, chunk=2), TableSpec("a", rows=100, dim=4, chunk=2)]
    assert qr_layout(small, (3 + 20) * 16) == [None, 10]


def test_a_budget_below_the_smallest_pair_is_refused_naming_the_smallest():
    Qr.check_budget(ONE, ReplayConfig(budget_bytes=320))                 # 20 rows: the smallest pair
    with pytest.raises(InputError, match="below the smallest pairs of quotient and remainder tables qr can make"
                                         ".*the smallest workable budget is 320 bytes"):
        Qr.check_budget(ONE, ReplayConfig(budget_bytes=319))


def test_shared_quotient_and_remainder_rows_by_hand():
    # m = 26: row -> (quotient, remainder) 0 -> (0, 0), 26 -> (1, 0), 1 -> (0, 1), 0 -> (0, 0), 52 -> (2, 0).
    # Quotient row 0 serves row 0 first; row 1 joins it (shared), then row 0 again (its row has another reader:
    # shared); 1 and 2 serve one row each: 2 of 5. Remainder row 0 serves 0, then 26 (shared), 0 again (shared),
    # 52 (shared); remainder 1 serves row 1 alone: 3 of 5. Every lookup reads all 4 dimensions of its own vector.
    lookups = [(0, 0, 0), (0, 0, 26), (1, 0, 1), (1, 0, 0), (2, 0, 52)]
    cfg = ReplayConfig(budget_bytes=480, report_every=2)
    eng = engine_replay(ONE, cfg, lookups, policy="qr", check=True)
    ref = reference.replay(ONE, cfg, lookups, policy="qr", check=True)
    for result in (eng, ref):
        s = result.summary
        assert (s["quotient_shared_share"], s["remainder_shared_share"]) == (2 / 5, 3 / 5)
        assert s["dim_hit_rate"] == 1.0 and s["collision_share"] == 0.0 and s["payload_bytes_final"] == 480
    assert eng.summary == ref.summary


def test_qr_is_sized_from_the_table_sizes_only():
    assert knowledge("qr", "the whole training split", vocabulary=True) == "sized from the table sizes"


def test_replay_and_refusal_on_the_command_line(monkeypatch, capsys, tmp_path):
    trace = write_trace(tmp_path / "t.parquet")
    result = run(monkeypatch, capsys, "replay", trace, "--policy", "qr,hash", "--budget", "0.1,0.3", "--json", "-q")
    assert result.code == 0, result.err
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", trace, "--policy", "qr", "--budget", "100B", "-q"],
                  "qr can make", "smallest workable budget")
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", trace, "--policy", "qr", "--qr-operation", "concat"],
                  "--qr-operation must be 'mult'")


# ---------------------------------------------------------------------------
# Compositional embeddings in the trainer


def ours_composed(p, cfg, dense, first, second, y, operation):
    """Loss and the gradient of every embedding row: each factor row's share (`factor_grads`) summed per row."""
    d = np.full(first.shape, cfg.dim, np.int32)
    cache = forward(p, cfg, dense, first, d, compose=(second, operation))
    loss = bce_with_logits(cache.logit, y)
    g = backward(p, cfg, cache, y)
    d_first, d_second = factor_grads(g.dT[:, g.start:, :], *cache.factors, operation)
    demb = np.zeros_like(p.emb)
    for rows, grad, dims in ((first, d_first, d), (np.where(second < 0, 0, second), d_second,
                                                   np.where(second < 0, 0, d))):
        dT = g.dT.copy()
        dT[:, g.start:, :] = grad
        marker = np.full(p.emb.shape[0], -1, dtype=np.int32)
        out_rows = np.empty(rows.size, dtype=np.int64)
        grads = np.empty((rows.size, cfg.dim), dtype=p.emb.dtype)
        counts = np.empty(cfg.fields, dtype=np.int64)
        kept = np.empty(rows.size, dtype=np.int64)
        coalesce(p.offsets, rows, dims, dT, g.start, marker, out_rows, grads, kept, counts)
        used = coalesced_rows(counts, rows.shape[0])
        np.add.at(demb, out_rows[used], grads[used])
    return loss, demb


def torch_composed(p, cfg, dense, first, second, y, operation):
    """The same model with each embedding the product (sum) of two rows, by torch ops and autograd."""
    emb = torch.tensor(p.emb, dtype=torch.float64, requires_grad=True)
    z = torch.tensor(dense, dtype=torch.float64)
    for w, b in zip(p.bottom_w, p.bottom_b):
        z = torch.relu(z @ torch.tensor(w) + torch.tensor(b))
    vecs = [z]
    for f in range(cfg.fields):
        a = emb[torch.tensor(p.offsets[f] + first[:, f])]
        has = torch.tensor(second[:, f] >= 0)[:, None]
        b = emb[torch.tensor(p.offsets[f] + np.maximum(second[:, f], 0))]
        combined = a * b if operation == "mult" else a + b
        vecs.append(torch.where(has, combined, a))
    loss = torch_top(vecs, [torch.tensor(w) for w in p.top_w], [torch.tensor(b) for b in p.top_b], y)
    loss.backward()
    return loss.item(), emb.grad.numpy()


@needs_torch
@pytest.mark.parametrize("operation", ["mult", "add"])
def test_factor_gradients_match_torch(operation):
    cfg = tiny(rows=(6, 4, 9))
    p = perturb(init_params(cfg, seed=0, dtype=np.float64))
    rng = np.random.default_rng(3)
    B = 11
    dense = rng.normal(size=(B, cfg.dense))
    # first and second rows of each lookup, repeated within the batch; -1: no second row (read the first alone)
    first = np.stack([rng.integers(0, 2, size=B) for _ in cfg.rows], axis=1).astype(np.int64)
    second = np.stack([rng.integers(2, r, size=B) for r in cfg.rows], axis=1).astype(np.int64)
    second[::4, 1] = -1
    y = rng.integers(0, 2, size=B).astype(np.float64)
    loss, demb = ours_composed(p, cfg, dense, first, second, y, operation)
    t_loss, t_demb = torch_composed(p, cfg, dense, first, second, y, operation)
    assert loss == pytest.approx(t_loss, rel=1e-10)
    close(demb, t_demb)
    assert np.abs(demb[p.offsets[0]:p.offsets[0] + 2]).sum() > 0 and np.abs(demb[p.offsets[0] + 2:]).sum() > 0


@pytest.mark.slow  # trains a model
def test_training_under_qr(monkeypatch, capsys, tmp_path):
    """`train --policy qr` trains both factor tables; its memory is the policy's own."""
    import json

    args = ["train", "--samples", "600", "--fields", "2", "--rows", "200", "--batch", "64", "--policy", "qr,full",
            "--budget", "0.25", "-q", "--out", tmp_path / "o"]
    for operation in ("mult", "add"):
        result = run(monkeypatch, capsys, *args, "--qr-operation", operation)
        assert result.code == 0, result.err
        summary = json.loads((tmp_path / "o" / "train_summary.json").read_text())
        qr = summary["policies"]["qr@0.25"]
        # 2 tables of 200 rows x 16 fp32 = 12,800 bytes each; a quarter: 3,200 bytes = 50 rows each: the largest
        # m with ceil(200/m) + m <= 50 is 45 (5 + 45; 46: 5 + 46 = 51), so 50 rows x 64 bytes per table
        assert qr["payload_bytes_peak"] == 2 * 50 * 64 and 0.4 < qr["auc"] < 1.0
        assert summary["config"]["qr_operation"] == operation and qr["knew"] == "sized from the table sizes"
