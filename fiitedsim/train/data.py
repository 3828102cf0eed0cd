"""Training data: a planted-truth synthetic CTR generator, a Criteo reader, a generic Parquet/CSV reader.

Every source gives a `Dataset` in time order (file order); `split` keeps the
last `eval_fraction` (10%) for evaluation, never shuffled, as a time-ordered
split of click logs must be.

Sparse values become rows with `fiitedsim.hashing.hash_rows` (the rule the
Criteo importer uses too: FNV-1a 64 of the value's text, seeded per field,
splitmix64, row 1 + h mod (rows - 1); a missing or empty value is row 0).
Integer columns of a Parquet file are hashed as their decimal text, so the
same value maps to the same row whether it came from CSV or Parquet.

Files are read in blocks (pyarrow's streaming CSV reader, Parquet batch by
batch) and only the encoded arrays (4 bytes per sparse value and per dense
value) are kept, so a Criteo day file never has to fit in memory as text.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from ..errors import InputError, refuse_duplicate_columns
from ..hashing import hash_rows

CRITEO_DENSE = [f"I{i}" for i in range(1, 14)]
CRITEO_SPARSE = [f"C{i}" for i in range(1, 27)]
CRITEO_COLUMNS = ["label", *CRITEO_DENSE, *CRITEO_SPARSE]


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

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def split(self, eval_fraction: float = 0.1) -> tuple[slice, slice]:
        """Time-ordered split: (train, eval) slices, eval being the last `eval_fraction` of the samples."""
        n = len(self)
        n_eval = max(1, round(n * eval_fraction)) if n > 1 else 0
        return slice(0, n - n_eval), slice(n - n_eval, n)


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


def synthetic(samples: int = 2_000_000, fields: int = 26, rows: int = 100_000, dense: int = 13,
              dim: int = 16, alpha: float = 1.05, seed: int = 0) -> Dataset:
    """A CTR data set with a planted truth (a hidden "teacher"), so the best achievable AUC is known.

    * Rows: in each field, popularity rank r (0 = most popular) has probability
      proportional to (r + 1)^-alpha; a fixed random permutation per field turns
      ranks into row ids (so popularity is not readable from the id).
    * Teacher: row of rank r has a `dim`-vector whose first `useful_dims(r)` values
      are N(0, 1/dim) and the rest exactly 0: popular rows need more dimensions.
    * Dense features x ~ N(0, 1), teacher weights w ~ N(0, 1/M) and A ~ N(0, 1/M)
      (M x dim), so the dense features' own projection zt = x A has unit variance.
    * logit = -1 + x . w + c1 * sum_f u_f . zt + c2 * sum_{f<g} u_f . u_g, where c1
      and c2 scale the dense-sparse term to standard deviation 1.5 and the pair term
      to 1.0 over the first min(N, 100,000) samples; label ~ Bernoulli(sigmoid(logit)).
      `teacher_prob` keeps sigmoid(logit): no model can beat its AUC in expectation,
      so it is printed beside results.
    * Why both embedding terms: they are the two kinds of dot product a DLRM
      computes (embedding . bottom-MLP output, embedding . embedding). The
      dense-sparse term is what makes embeddings learnable in one epoch from
      DLRM's near-zero initialisation: through e_f . z its gradient is nonzero
      from the first step, while a pair-only teacher starts at a saddle (measured: with
      pairs only, the embeddings added 0.0035 AUC to a model whose embeddings are
      all zero, against 0.14 that the teacher's own vectors give). Both terms use
      every useful dimension of u_f, so rows with more useful dimensions need more
      embedding dimensions. Without dense features (M = 0) the dense-sparse term is 0.

    One numpy Generator seeded by `seed` draws everything in a fixed order.
    """
    if samples < 1 or fields < 1 or rows < 1 or dense < 0 or dim < 1:
        raise InputError("synthetic data needs --samples >= 1, --fields >= 1, --rows >= 1")
    rng = np.random.default_rng(seed)
    p = (np.arange(1, rows + 1, dtype=np.float64)) ** -alpha
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    dims = useful_dims(rows, dim)
    teacher = np.zeros((fields, rows, dim), dtype=np.float32)
    sparse = np.empty((samples, fields), dtype=np.int32)
    for f in range(fields):
        perm = rng.permutation(rows)                       # rank -> row id
        vals = rng.normal(0.0, np.sqrt(1.0 / dim), size=(rows, dim))
        vals[np.arange(dim)[None, :] >= dims[:, None]] = 0.0
        teacher[f, perm] = vals                            # row perm[r] gets rank r's vector
        ranks = np.minimum(np.searchsorted(cdf, rng.random(samples), side="right"), rows - 1)
        sparse[:, f] = perm[ranks]
    x = rng.standard_normal((samples, dense)).astype(np.float32)
    w = rng.normal(0.0, np.sqrt(1.0 / max(dense, 1)), size=dense)
    a = rng.normal(0.0, np.sqrt(1.0 / max(dense, 1)), size=(dense, dim))
    cross, pairs = np.empty(samples), np.empty(samples)
    _teacher_terms(sparse, teacher, x.astype(np.float64) @ a, cross, pairs)

    def scale_to(sd_wanted: float, term: np.ndarray) -> float:
        sd = term[:100_000].std()
        return sd_wanted / sd if sd > 0 else 0.0
    logit = -1.0 + x.astype(np.float64) @ w + scale_to(1.5, cross) * cross + scale_to(1.0, pairs) * pairs
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(samples) < prob).astype(np.float32)
    return Dataset(dense=x, sparse=sparse, label=label, rows=(rows,) * fields,
                   dense_names=[f"x{i}" for i in range(dense)], sparse_names=[f"f{i}" for i in range(fields)],
                   teacher_prob=prob.astype(np.float32))


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


#: The largest magnitude a dense value may have: the model computes in float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


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
    warning; an infinite value, or one beyond the float32 range the model computes in, is an InputError
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
    # Criteo's log(1 + x) brings any finite count into range; values used as given must fit float32
    bad = np.flatnonzero(np.isinf(x) if log1p else ~(np.abs(x) <= FLOAT32_MAX))
    if bad.size:
        i = int(bad[0])
        what = "is infinite" if np.isinf(x[i]) else f"is beyond the float32 range (+-{FLOAT32_MAX:.4g})"
        raise InputError(f"{path}: dense column {name!r}, sample {offset + i:,}: value {float(x[i]):g} {what}; "
                         "dense values must be finite numbers the model can hold (scale or clip them)")
    if log1p:
        x = np.log1p(np.maximum(x, 0.0))
    return x.astype(np.float32)


def _encode(batch, path, label, sparse, dense, rows, log1p, offset=0, nans=None):
    return (_labels(batch.column(label), path, label, offset),
            np.stack([_dense(batch.column(c), path, c, log1p, offset, nans) for c in dense], axis=1) if dense
            else np.zeros((batch.num_rows, 0), np.float32),
            np.stack([hash_rows(batch.column(c), f, rows) for f, c in enumerate(sparse)], axis=1).astype(np.int32))


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
        return pa.input_stream(path, compression="gzip" if gz else None)
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
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        f = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    _check_columns(path, f.schema_arrow.names, [label, *sparse, *dense])
    yield from f.iter_batches(batch_size=1 << 20, columns=list(dict.fromkeys([label, *sparse, *dense])))


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _collect(batches, path, label, sparse, dense, rows, log1p, samples, warn=_warn_stderr) -> Dataset:
    """Encode batches until `samples` (None: all) are read; `warn` gets the NaN counts of dense columns."""
    import pyarrow as pa
    if not 2 <= rows < 2**31:
        raise InputError(f"--rows must be in [2, 2**31) (row 0 is reserved for missing values), got {rows}")
    if not sparse:
        raise InputError("at least one sparse column is needed (--sparse)")
    ys, xs, ss = [], [], []
    n = 0
    nans = _NanCount()
    for batch in batches:
        if samples is not None and n + batch.num_rows > samples:
            batch = batch.slice(0, samples - n)
        if isinstance(batch, pa.RecordBatch) and batch.num_rows:
            y, x, s = _encode(batch, path, label, sparse, dense, rows, log1p, n, nans)
            ys.append(y), xs.append(x), ss.append(s)
            n += batch.num_rows
        if samples is not None and n >= samples:
            break
    if n == 0:
        raise InputError(f"{path}: holds no samples")
    nans.report(path, warn)
    return Dataset(dense=np.concatenate(xs), sparse=np.concatenate(ss), label=np.concatenate(ys),
                   rows=(rows,) * len(sparse), dense_names=list(dense), sparse_names=list(sparse))


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
            return fh.readline(1 << 16).decode("utf-8", "replace").removeprefix("\ufeff")
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def read_criteo(path: str | Path, rows: int, samples: int | None = None, warn=_warn_stderr) -> Dataset:
    """Criteo display-advertising data: label, I1-I13 (dense counts), C1-C26 (categorical).

    Either the original tab-separated form without header, or a comma-separated
    file whose header names those columns (like DeepCTR's criteo_sample.txt);
    gzip-compressed too, and a UTF-8 byte-order mark is fine (as for
    `fiitedsim import criteo`). A test file (39 fields, no label) is refused.
    Dense values become log(1 + max(x, 0)) with missing as 0; categorical values
    are hashed per field into `rows` rows (module docstring).
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


def read_table(path: str | Path, label: str, sparse: list[str], dense: list[str], rows: int,
               samples: int | None = None, warn=_warn_stderr) -> Dataset:
    """Any Parquet file or comma-separated CSV with a header: the named label, sparse and dense columns.

    Dense values are used as they are (missing as 0); sparse values are hashed
    per field into `rows` rows. Parquet is recognised by its magic bytes.
    """
    path = str(path)
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
