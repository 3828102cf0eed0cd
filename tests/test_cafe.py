"""`cafe`: the sketch worked by hand, its memory by hand, the engine against the plain-Python reference, and the
trainer's rows (hot and cold, promotions copying rows) against PyTorch autograd."""
from __future__ import annotations

import numpy as np
import pytest
from engine_adapter import engine_replay
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import fails_cleanly, run, write_trace
from test_differential import assert_same
from test_train_model import close, needs_torch, perturb, tiny, torch, torch_top

from fiitedsim import reference
from fiitedsim.config import ReplayConfig, TableSpec
from fiitedsim.errors import InputError
from fiitedsim.policies import Cafe, knowledge
from fiitedsim.policies.cafe import cafe_defaults, sketch_decay, sketch_insert, sketch_query

TWO = [TableSpec("a", rows=100, dim=4, chunk=2), TableSpec("b", rows=100, dim=4, chunk=2)]


def one_bucket(free):
    """A sketch of one bucket (every key lands in it) and a free queue holding `free`, in order."""
    key, cnt, row = np.zeros((1, 4), np.int64), np.zeros((1, 4)), np.zeros((1, 4), np.int64)
    queue = np.array(free + [0] * 2, np.int64)
    return key, cnt, row, queue, np.array([0, len(free)], np.int64), np.zeros(1)


def test_the_sketch_by_hand():
    key, cnt, row, free, fq, tot = one_bucket([5, 6])
    keys = np.array([10, 20, 10, 30, 40, 50, 10, 20], np.int64)
    scores = np.array([1, 2, 1, 1, 1, 1, 1, 1], np.float64)
    promoted = np.empty(keys.size, np.int64)
    # 10 and 20 take slots 0 and 1; 10 again: 2, below k = 3, already first; 30 and 40 take slots 2 and 3; 50 finds
    # no slot of its own nor an empty one: slot 3 (no hot row) takes it, its score 1 + 1 = 2 (Space-Saving); 10
    # reaches 3 = k: the first free row, 5; then 20 reaches 3: row 6
    assert sketch_insert(key, cnt, row, free, fq, tot, 3.0, keys, scores, promoted) == 2
    assert promoted.tolist() == [0, 0, 0, 0, 0, 0, 5, 6]
    assert key.tolist() == [[10, 20, 30, 50]] and cnt.tolist() == [[3, 3, 1, 2]] and row.tolist() == [[5, 6, 0, 0]]
    assert fq.tolist() == [2, 0] and tot[0] == 9
    # 60 replaces 50 in slot 3 (score 3); 60 again reaches 4 with no free row: no promotion, it moves up past every
    # smaller score: [60 4, 10 3, 20 3, 30 1]
    assert sketch_insert(key, cnt, row, free, fq, tot, 3.0, np.array([60, 60]), np.array([1.0, 1.0]), promoted) == 0
    assert key.tolist() == [[60, 10, 20, 30]] and cnt.tolist() == [[4, 3, 3, 1]] and row.tolist() == [[0, 5, 6, 0]]
    out = np.empty(4, np.int64)
    sketch_query(key, cnt, row, np.array([10, 20, 60, 99]), out)
    assert out.tolist() == [5, 6, 0, 0]
    # no decay until tot passes 10 x H x k = 30; past it, hot slots whose score x 0.5 < 3 give their rows back (to
    # the end of the queue, in slot order) and every score halves
    assert sketch_decay(cnt, row, free, fq, tot, 3.0, 0.5) == 0 and tot[0] == 11
    tot[0] = 31.0
    assert sketch_decay(cnt, row, free, fq, tot, 3.0, 0.5) == 2
    assert row.tolist() == [[0, 0, 0, 0]] and cnt.tolist() == [[2, 1.5, 1.5, 0.5]] and tot[0] == 0
    assert [int(free[(fq[0] + i) % free.size]) for i in range(fq[1])] == [5, 6]   # the queue, front first


def test_memory_by_hand():
    # 2 tables of 100 rows x 16 bytes: dense 3,200. Budget 640 (ratio 0.2: threshold 10, cold share 0.5):
    # H = floor(640 x 0.5 / (16 + 48)) = 5 hot rows and sketch buckets; cold rows floor(640 x 0.5 x 1/2) // 16 = 10
    # per table. Hot 5 x 16 = 80, cold 20 x 16 = 320, sketch 5 x 48 = 240: 640 in all
    policy = Cafe(TWO, ReplayConfig(budget_bytes=640), False, False)
    assert (policy.hot, policy.cold, policy.threshold, policy.cold_share) == (5, [10, 10], 10.0, 0.5)
    assert (policy.hot_bytes, policy.cold_bytes, policy.sketch_bytes) == (80, 320, 240)
    assert policy.payload_bytes + policy.index_bytes == 640
    assert cafe_defaults(0.25) == (10.0, 0.5) and cafe_defaults(0.9) == (10.0, 0.7)
    assert cafe_defaults(0.0001) == (500.0, 0.1) and cafe_defaults(0.02) == (50.0, 0.3)


def test_budgets_and_tables_cafe_cannot_use():
    # budget 100 (ratio 0.031: threshold 50, cold share 0.3): H = floor(70 / 64) = 1, no hot row; two hot rows need
    # 2 x 64 / 0.7 = 182.9 -> 183 bytes
    with pytest.raises(InputError, match="leaves cafe a sketch of 1 bucket.*about 183 bytes at a cold share of 0.3"):
        Cafe.check_budget(TWO, ReplayConfig(budget_bytes=100))
    # tables of 16- and 32-byte rows (dense 1,600 + 3,200): a hot row holds the larger, 32 bytes. Budget 960 (ratio
    # 0.2: cold share 0.5): H = floor(480 / (32 + 48)) = 6; cold rows floor(480 x 1/3) // 16 = 10 and
    # floor(480 x 2/3) // 32 = 10. Hot 6 x 32 = 192, cold 160 + 320 = 480, sketch 6 x 48 = 288: 960 in all
    mixed = Cafe([TableSpec("a", 100, 4, 2), TableSpec("b", 100, 8, 2)], ReplayConfig(budget_bytes=960), False, False)
    assert (mixed.hot, mixed.cold, mixed.hot_bytes, mixed.cold_bytes, mixed.sketch_bytes) == (6, [10, 10], 192, 480,
                                                                                             288)
    assert knowledge("cafe", "the whole training split") == "in training, online"


def _trace(seed, steps, per_step, rows, chunks, grads):
    rng = np.random.default_rng(seed)
    out = []
    for s in range(steps):
        for _ in range(per_step):
            t = int(rng.integers(0, 2))
            r = int(rng.zipf(1.3) % rows)
            g = rng.gamma(2.0, 0.5, chunks).astype(np.float32).tolist() if grads else None
            out.append((s, t, r, g) if grads else (s, t, r))
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), budget=st.sampled_from([400, 640, 1200, 3000]),
       threshold=st.sampled_from([0.5, 2.0, 8.0]), decay=st.sampled_from([0.5, 0.9, 1.0]),
       grads=st.booleans(), report_every=st.sampled_from([1, 3, 100]))
def test_engine_equals_reference(seed, budget, threshold, decay, grads, report_every):
    cfg = ReplayConfig(budget_bytes=budget, cafe_threshold=threshold, cafe_decay=decay, report_every=report_every)
    lookups = _trace(seed, steps=12, per_step=15, rows=100, chunks=2, grads=grads)
    ref = reference.replay(TWO, cfg, lookups, policy="cafe")
    eng = engine_replay(TWO, cfg, lookups, policy="cafe", check=True)
    assert_same(ref, eng)
    assert ref.summary.keys() == eng.summary.keys() and "promotions" in eng.summary


def test_a_replay_promotes_and_demotes():
    # a low threshold and a strong decay on a skewed trace: features turn hot, and some cold again
    cfg = ReplayConfig(budget_bytes=640, cafe_threshold=1.0, cafe_decay=0.5)
    lookups = _trace(1, steps=60, per_step=20, rows=100, chunks=2, grads=True)
    s = engine_replay(TWO, cfg, lookups, policy="cafe", check=True).summary
    assert s["promotions"] > 0 and s["demotions"] > 0 and 0 < s["hot_hit_share"] < 1
    assert s["collision_share"] > 0 and s["total_bytes_peak"] == 640


def test_replay_and_refusals_on_the_command_line(monkeypatch, capsys, tmp_path):
    # the shipped sample (two tables of the same row size)
    result = run(monkeypatch, capsys, "replay", "--policy", "cafe", "--budget", "0.02,0.1", "--json", "-q")
    assert result.code == 0, result.err
    fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "--policy", "cafe", "--budget", "200B", "-q"],
                  "leaves cafe a sketch")
    trace = write_trace(tmp_path / "t.parquet")    # tables of 64- and 128-byte rows: hot rows of 128 bytes
    assert run(monkeypatch, capsys, "replay", trace, "--policy", "cafe", "-q").code == 0
    for option, value, words in (("--cafe-cold-share", "1.5", "--cafe-cold-share must be in (0, 1)"),
                                 ("--cafe-threshold", "-2", "--cafe-threshold must be a positive number"),
                                 ("--cafe-threshold", "hot", "give auto or a number"),
                                 ("--cafe-decay", "0", "--cafe-decay must be in (0, 1]")):
        fails_cleanly(monkeypatch, capsys, tmp_path, ["replay", "--policy", "cafe", option, value, "-q"], words)


# ---------------------------------------------------------------------------
# Training


@needs_torch
def test_gradients_reach_the_rows_read_as_torch_says():
    """The trainer reads each lookup's stored row (`remap`: a hot row after the fields' tables, or a cold row of
    its table) and trains it: the same as a torch model whose embedding is where(hot, H[h], C_t[c])."""
    from test_train_model import ours

    cfg = tiny(rows=(6, 4, 9))
    rng = np.random.default_rng(4)
    B = 10
    # hot rows 0..2 lie after the 19 rows of the tables, hot row f holding field f's hot feature (a hot row holds
    # one feature at a time); cold rows within each table, shared by the lookups that hash to them
    hot = np.tile(np.arange(3), (B, 1))
    is_hot = rng.random((B, 3)) < 0.5
    cold = np.stack([rng.integers(0, 2, size=B) for _ in cfg.rows], axis=1)
    offsets = np.concatenate(([0], np.cumsum(cfg.rows)))
    stored = np.where(is_hot, offsets[-1] + hot - offsets[:-1][None, :], cold).astype(np.int64)
    from dataclasses import replace

    from fiitedsim.train.model import init_params
    cfg = replace(cfg, extra_rows=3)
    p = perturb(init_params(cfg, seed=0, dtype=np.float64))
    dense, y = rng.normal(size=(B, cfg.dense)), rng.integers(0, 2, size=B).astype(np.float64)
    d = np.full(stored.shape, cfg.dim, np.int32)
    loss, _, demb = ours(p, cfg, dense, stored, d, y)
    emb = torch.tensor(p.emb, dtype=torch.float64, requires_grad=True)
    z = torch.tensor(dense)
    for w, b in zip(p.bottom_w, p.bottom_b):
        z = torch.relu(z @ torch.tensor(w) + torch.tensor(b))
    vecs = [z]
    for f in range(cfg.fields):
        hot_vec = emb[torch.tensor(offsets[-1] + hot[:, f])]
        cold_vec = emb[torch.tensor(offsets[f] + cold[:, f])]
        vecs.append(torch.where(torch.tensor(is_hot[:, f])[:, None], hot_vec, cold_vec))
    t_loss = torch_top(vecs, [torch.tensor(w) for w in p.top_w], [torch.tensor(b) for b in p.top_b], y)
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-10)
    close(demb, emb.grad.numpy())
    assert np.abs(demb[offsets[-1]:]).sum() > 0   # the hot rows were trained


def test_a_promotion_copies_the_cold_row_into_the_hot_row():
    """Through the training hook: a feature promoted at the end of a step reads, from the next step on, a hot row
    holding what its cold row held (the trainer copies it, Adagrad state included)."""
    from fiitedsim.train.engine_hook import EngineResidency
    from fiitedsim.train.loop import Trainer
    from fiitedsim.train.model import ModelConfig

    tables = [TableSpec("a", 50, 8, 4), TableSpec("b", 50, 8, 4)]
    cfg = ReplayConfig(budget_bytes=800, cafe_threshold=0.5)     # H = floor(800 x 0.5 / 80) = 5
    hook = EngineResidency.build("cafe", tables, cfg)
    trainer = Trainer(ModelConfig(rows=(50, 50), dense=2, dim=8, chunk=4, bottom=(4,), top=(4,)), hook=hook)
    assert trainer.p.emb.shape[0] == 100 + 5                       # the hot table after the fields' tables
    rng = np.random.default_rng(0)
    idx = np.array([[3, 7], [3, 9]], np.int64)
    trainer.step(0, rng.normal(size=(2, 2)), idx, np.array([1.0, 0.0]))
    # step 0's two lookups of row 3 of table a score 2 in all (a field's scores sum to its lookups), past the
    # threshold 0.5: row 3 turns hot when step 0's inserts run, as step 1 begins
    cold = 0 + hook.policy.cold_rows(np.array([0]), np.array([3]))[0]   # table a's rows start at 0
    before, acc = trainer.p.emb[cold].copy(), trainer.adagrad.acc[cold]
    trainer.adagrad.step = lambda *args: None   # no update in step 1: what it reads is what the copy left
    trainer.step(1, rng.normal(size=(2, 2)), idx, np.array([1.0, 0.0]))
    hot = hook.policy.hot_rows(np.array([0]), np.array([3]))[0]
    assert hot > 0 and hook.policy.counts["promotions"] >= 1
    assert hook.remap(np.array([0]), np.array([3]))[0] == 100 + hot   # stored after the two tables' 100 rows
    assert np.array_equal(trainer.p.emb[100 + hot], before) and trainer.adagrad.acc[100 + hot] == acc > 0
    trainer.close()


@pytest.mark.slow  # trains a model
def test_training_under_cafe(monkeypatch, capsys, tmp_path):
    import json

    args = ["train", "--samples", "2000", "--fields", "3", "--batch", "128", "--policy", "cafe,full",
            "--budget", "0.2", "-q", "--out", tmp_path / "o"]
    result = run(monkeypatch, capsys, *args)
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "o" / "train_summary.json").read_text())
    cafe = summary["policies"]["cafe@0.2"]
    assert cafe["knew"] == "in training, online" and 0.4 < cafe["auc"] < 1.0
    assert cafe["total_bytes_peak"] <= summary["config"]["budgets"][0]["bytes"]
