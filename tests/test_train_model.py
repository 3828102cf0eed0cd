"""The trainer's model and optimizers against oracles nobody here wrote.

* PyTorch (CPU, float64, autograd) builds the same DLRM from the same weights
  and batch: the loss and every gradient must agree to 1e-5 relative, with
  repeated rows in the batch and non-resident (masked) chunks.
* Central finite differences of the loss check the gradients without torch.
* Adam and (for D = 1, where it is plain Adagrad) row-wise Adagrad take the
  same step as torch.optim; the row-wise case for D > 1 is worked by hand.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from fiitedsim.train.model import (
    ModelConfig,
    backward,
    bce_with_logits,
    coalesce,
    forward,
    init_params,
)
from fiitedsim.train.optim import Adam, RowWiseAdagrad

try:
    import torch
except ImportError:  # torch is a test extra; CI installs it (see pyproject.toml)
    torch = None

# skipped only outside CI: with CI set, a missing torch fails these tests instead of hiding them
_torch_or_skip = pytest.mark.skipif(torch is None and not os.environ.get("CI"),
                                    reason="torch not installed (pip install -e '.[test]')")


def needs_torch(test):
    """A test against torch: slow (torch's import alone takes seconds), and skipped without torch outside CI."""
    return pytest.mark.slow(_torch_or_skip(test))


def tiny(dense=3, rows=(5, 3, 7), dim=8, chunk=2, bottom=(6,), top=(5, 4)):
    return ModelConfig(rows=rows, dense=dense, dim=dim, chunk=chunk, bottom=bottom, top=top)


def batch(cfg, B=9, seed=1, masked=True):
    """A batch whose rows repeat (tables of 3-7 rows, 9 samples) and whose lookups have random d in 0..D
    resident dimensions (not only multiples of C: uniform-dim and mde keep any number)."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(B, cfg.dense))
    idx = np.stack([rng.integers(0, r, size=B) for r in cfg.rows], axis=1).astype(np.int64)
    d = rng.integers(0, cfg.dim + 1, size=idx.shape).astype(np.int32) if masked else \
        np.full(idx.shape, cfg.dim, dtype=np.int32)
    y = rng.integers(0, 2, size=B).astype(np.float64)
    return dense, idx, d, y


def perturb(p, seed=2):
    """Embeddings of DLRM's init are ~1/sqrt(rows); make them O(1) so every term of the gradient matters."""
    rng = np.random.default_rng(seed)
    p.emb[...] = rng.normal(size=p.emb.shape)
    return p


def coalesced_rows(counts: np.ndarray, batch: int) -> np.ndarray:
    """The used slots of `coalesce`'s output: field f's distinct rows are slots f*batch .. f*batch + counts[f] - 1."""
    return np.concatenate([np.arange(f * batch, f * batch + int(n)) for f, n in enumerate(counts)])


def ours(p, cfg, dense, idx, d, y):
    cache = forward(p, cfg, dense, idx, d)
    loss = bce_with_logits(cache.logit, y)
    g = backward(p, cfg, cache, y)
    marker = np.full(p.emb.shape[0], -1, dtype=np.int32)
    rows = np.empty(idx.size, dtype=np.int64)
    grads = np.empty((idx.size, cfg.dim), dtype=p.emb.dtype)
    counts = np.empty(cfg.fields, dtype=np.int64)
    dims = np.empty(idx.size, dtype=np.int64)
    coalesce(p.offsets, idx, d, g.dT, g.start, marker, rows, grads, dims, counts)
    used = coalesced_rows(counts, idx.shape[0])
    demb = np.zeros_like(p.emb)
    demb[rows[used]] = grads[used]
    assert (marker == -1).all()
    return loss, g, demb


def torch_model(p, cfg, dense, idx, d, y):
    """The same model written independently with torch ops and autograd; returns loss and leaf tensors."""
    def t(a):
        return torch.tensor(a, dtype=torch.float64, requires_grad=True)

    emb = t(p.emb)
    bw, bb = [t(w) for w in p.bottom_w], [t(b) for b in p.bottom_b]
    tw, tb = [t(w) for w in p.top_w], [t(b) for b in p.top_b]
    vecs = []
    if cfg.dense:
        z = torch.tensor(dense, dtype=torch.float64)
        for w, b in zip(bw, bb):
            z = torch.relu(z @ w + b)
        vecs.append(z)
    cols = torch.arange(cfg.dim)
    for f in range(cfg.fields):
        rows = torch.tensor(p.offsets[f] + idx[:, f])
        mask = (cols[None, :] < torch.tensor(d[:, f])[:, None]).to(torch.float64)
        vecs.append(emb[rows] * mask)
    loss = torch_top(vecs, tw, tb, y, with_dense=bool(cfg.dense))
    loss.backward()
    return loss.item(), emb, bw, bb, tw, tb


def torch_top(vecs, tw, tb, y, with_dense=True):
    """DLRM's dot interaction of `vecs` (the dense vector first, when `with_dense`) and its top MLP, to the
    mean log loss, in torch ops (the tests of composed embeddings build their own `vecs`)."""
    T = torch.stack(vecs, dim=1)
    Z = torch.bmm(T, T.transpose(1, 2))
    li, lj = torch.tril_indices(T.shape[1], T.shape[1], offset=-1)
    h = Z[:, li, lj]
    if with_dense:
        h = torch.cat([vecs[0], h], dim=1)
    for i, (w, b) in enumerate(zip(tw, tb)):
        h = h @ w + b
        if i < len(tw) - 1:
            h = torch.relu(h)
    return torch.nn.functional.binary_cross_entropy_with_logits(h[:, 0], torch.tensor(y, dtype=torch.float64))


def close(a, b, rtol=1e-5):
    """Every element within rtol of the oracle's, relative to the array's largest magnitude for tiny entries."""
    b = np.asarray(b, dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.abs(b).max(), 1e-30))


@needs_torch
@pytest.mark.parametrize("dense", [3, 0])
@pytest.mark.parametrize("masked", [True, False])
def test_loss_and_every_gradient_match_torch(dense, masked):
    cfg = tiny(dense=dense)
    p = perturb(init_params(cfg, seed=0, dtype=np.float64))
    dense_x, idx, d, y = batch(cfg, masked=masked)
    assert len(np.unique(idx[:, 0])) < idx.shape[0]  # repeated rows in the batch
    loss, g, demb = ours(p, cfg, dense_x, idx, d, y)
    t_loss, emb, bw, bb, tw, tb = torch_model(p, cfg, dense_x, idx, d, y)
    assert loss == pytest.approx(t_loss, rel=1e-10)
    close(demb, emb.grad.numpy())
    assert np.abs(demb).sum() > 0
    for ours_list, theirs in ((g.bottom_w, bw), (g.bottom_b, bb), (g.top_w, tw), (g.top_b, tb)):
        assert len(ours_list) == len(theirs)
        for a, b in zip(ours_list, theirs):
            close(a, b.grad.numpy())


@needs_torch
def test_float32_model_is_close_to_the_float64_oracle():
    cfg = tiny()
    p64 = perturb(init_params(cfg, seed=0, dtype=np.float64))
    p32 = init_params(cfg, seed=0, dtype=np.float32)
    p32.emb[...] = p64.emb
    dense_x, idx, d, y = batch(cfg)
    loss, g, demb = ours(p32, cfg, dense_x, idx, d, y)
    t_loss, emb, _, _, tw, _ = torch_model(p64, cfg, dense_x, idx, d, y)
    assert loss == pytest.approx(t_loss, rel=1e-5)
    close(demb, emb.grad.numpy(), rtol=1e-4)
    close(g.top_w[0], tw[0].grad.numpy(), rtol=1e-4)


def test_masked_dimensions_get_no_gradient_and_read_as_zero():
    cfg = tiny()
    p = perturb(init_params(cfg, seed=0, dtype=np.float64))
    dense_x, idx, d, y = batch(cfg)
    d[0, 0] = 3  # sample 0's lookup of table 0 keeps dimensions 0..2 (not a whole number of chunks)
    cache = forward(p, cfg, dense_x, idx, d)
    assert (cache.T[0, 1, 3:] == 0).all() and (cache.T[0, 1, :3] == p.emb[idx[0, 0]][:3]).all()
    _, _, demb = ours(p, cfg, dense_x, idx, d, y)
    for f in range(cfg.fields):
        for r in range(cfg.rows[f]):
            looked = d[idx[:, f] == r, f]
            keep = looked.max() if looked.size else 0
            assert (demb[p.offsets[f] + r, keep:] == 0).all()


@pytest.mark.parametrize("dense", [2, 0])
def test_gradients_match_central_finite_differences(dense):
    cfg = tiny(dense=dense, rows=(3, 4), dim=4, chunk=2, bottom=(5,), top=(4,))
    p = perturb(init_params(cfg, seed=3, dtype=np.float64))
    dense_x, idx, d, y = batch(cfg, B=6, seed=4)
    _, g, demb = ours(p, cfg, dense_x, idx, d, y)

    def loss_now():
        return bce_with_logits(forward(p, cfg, dense_x, idx, d).logit, y)

    h = 1e-6
    arrays = [(p.emb, demb)] + list(zip(p.mlp_arrays(), g.mlp_arrays()))
    for arr, grad in arrays:
        flat, gflat = arr.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = loss_now()
            flat[i] = old - h
            down = loss_now()
            flat[i] = old
            fd = (up - down) / (2 * h)
            assert gflat[i] == pytest.approx(fd, rel=1e-5, abs=1e-8), (arr.shape, i)


@needs_torch
def test_adam_step_matches_torch_optim():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(4, 3))
    tw = torch.tensor(w.copy(), requires_grad=True)
    opt_t = torch.optim.Adam([tw], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    opt = Adam([w], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    for step in range(3):
        g = rng.normal(size=w.shape)
        tw.grad = torch.tensor(g)
        opt_t.step()
        opt.step([g])
        close(w, tw.detach().numpy(), rtol=1e-12)


@needs_torch
def test_rowwise_adagrad_with_dim_1_is_torch_adagrad():
    """With D = 1 the row's mean of squared gradients is the one squared gradient: plain Adagrad.

    Rows not looked up get a zero gradient in torch's dense Adagrad, which leaves
    both their value and their accumulator unchanged, as row-wise Adagrad does.
    """
    rng = np.random.default_rng(6)
    emb = rng.normal(size=(5, 1))
    t_emb = torch.tensor(emb.copy(), requires_grad=True)
    opt_t = torch.optim.Adagrad([t_emb], lr=0.1, eps=1e-10)
    opt = RowWiseAdagrad(emb, lr=0.1, eps=1e-10)
    offsets = np.array([0, 5])
    for step in range(3):
        idx = rng.integers(0, 5, size=(6, 1))
        dT = rng.normal(size=(6, 1, 1))
        dense_grad = np.zeros_like(emb)
        np.add.at(dense_grad, idx[:, 0], dT[:, 0, :])
        t_emb.grad = torch.tensor(dense_grad)
        opt_t.step()
        opt.step(emb, offsets, idx, np.ones((6, 1), dtype=np.int32), dT, 0)
        close(emb, t_emb.detach().numpy(), rtol=1e-12)


def test_rowwise_adagrad_by_hand():
    """Table of 3 rows, D = 2, lr = 0.1, eps = 0. The accumulator averages over the row's resident dimensions.

    Step 1 looks up row 1 twice with gradients (1, 2) and (2, 2), and row 2 once with
    (5, 7) but only dimension 0 resident (d = 1), so its gradient is (5, 0):
      row 1: G = (3, 4), a = mean(9, 16) = 12.5, E -= 0.1 * (3, 4) / sqrt(12.5)
             = (0.3, 0.4) / 3.5355339 = (0.08485281, 0.11313708)
      row 2: G = (5), one resident value: a = mean(25) = 25, E -= (0.5, 0) / 5 = (0.1, 0)
      row 0: untouched.
    Step 2 looks up row 1 once with (0, 1): a = 12.5 + 0.5 = 13, E -= (0, 0.1 / sqrt(13)) = (0, 0.02773501).
    """
    emb = np.ones((3, 2))
    opt = RowWiseAdagrad(emb, lr=0.1, eps=0.0)
    offsets = np.array([0, 3])
    idx = np.array([[1], [2], [1]])
    dT = np.array([[[1.0, 2.0]], [[5.0, 7.0]], [[2.0, 2.0]]])
    d = np.array([[2], [1], [2]], dtype=np.int32)
    opt.step(emb, offsets, idx, d, dT, 0)
    np.testing.assert_allclose(emb, [[1, 1], [1 - 0.08485281, 1 - 0.11313708], [1 - 0.1, 1]], rtol=1e-7)
    np.testing.assert_allclose(opt.acc, [0, 12.5, 25])
    opt.step(emb, offsets, np.array([[1]]), np.array([[2]], dtype=np.int32), np.array([[[0.0, 1.0]]]), 0)
    np.testing.assert_allclose(emb[1], [1 - 0.08485281, 1 - 0.11313708 - 0.02773501], rtol=1e-7)
