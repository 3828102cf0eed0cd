"""Published reuse-factor histograms of Meta's DLRM lookup datasets, and how to measure them.

Reuse factor: how many times an index (row) occurs in one batch of one table,
i.e. among the lookups of one (step, table) pair of a trace. Meta's
`locality_stats.txt` files publish two histograms of it over the same 17 bins
(0,1], (1,2], (2,4], (4,8], ..., (16384,32768], (32768+):

* the LOOKUP-weighted one ("Ratio of index distribution at different column
  sizes"): share of all lookups whose index has a reuse factor in the bin;
* the UNIQUE-weighted one ("Histogram of col sizes"): share of distinct
  (batch, table, index) triples whose reuse factor is in the bin.

The values below are copied from the files (three decimals, as published; they
sum to 1 only up to rounding, so every user normalises them first). The
product never reads the published files; `tests/test_generate.py` re-parses
them when they are present and checks these constants against them.

"At the published batch size scaled down": a trace with B lookups per table
per step cannot hold a reuse factor above B, so it is compared with the
published lookup-weighted histogram conditioned on reuse <= B: the bins whose
lower edge is < B, renormalised (`conditioned`). The published lookup mass in
the dropped bins is reported as the cut-off mass (`cutoff_mass`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Bin i holds reuse factors c with LOWER[i] < c <= UPPER[i] (the last bin is open).
N_BINS = 17
BIN_LOWER = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768],
                     dtype=np.int64)
BIN_UPPER = np.append(BIN_LOWER[1:], np.iinfo(np.int64).max).astype(np.int64)
BIN_LABELS = tuple([f"({BIN_LOWER[i]}, {BIN_LOWER[i + 1]}]" for i in range(N_BINS - 1)]
                   + [f"({BIN_LOWER[-1]}+"])


@dataclass(frozen=True)
class PublishedProfile:
    """One dataset's published histograms (raw three-decimal values, not normalised)."""

    name: str
    source: str          # file and block(s) the numbers come from
    batch_size: int      # the published batch size (samples per batch)
    lookup: tuple        # lookup-weighted reuse histogram, 17 bins
    unique: tuple        # unique-weighted reuse histogram, 17 bins

    @property
    def lookup_hist(self) -> np.ndarray:
        """The lookup-weighted histogram normalised to sum 1."""
        return _normalise(np.array(self.lookup, dtype=np.float64))

    @property
    def unique_hist(self) -> np.ndarray:
        """The unique-weighted histogram normalised to sum 1."""
        return _normalise(np.array(self.unique, dtype=np.float64))


# Source: github.com/facebookresearch/dlrm_datasets embedding_bag/2021/locality_stats.txt
# (copy: /work/shared/data/meta-dlrm-2021-locality.txt), first block
# "fbgemm_t856_bs65536.pt" = the whole dataset (856 tables, batch 65,536,
# Avg # of indices 887017990, Avg # of unique cols 128435723).
META_2021 = PublishedProfile(
    name="meta2021",
    source="meta-dlrm-2021-locality.txt, block fbgemm_t856_bs65536.pt (whole dataset)",
    batch_size=65536,
    lookup=(0.069, 0.044, 0.068, 0.101, 0.121, 0.104, 0.073, 0.058, 0.052, 0.050, 0.049,
            0.048, 0.048, 0.043, 0.031, 0.023, 0.019),
    unique=(0.473, 0.152, 0.139, 0.112, 0.072, 0.032, 0.011, 0.005, 0.002, 0.001, 0.000,
            0.000, 0.000, 0.000, 0.000, 0.000, 0.000),
)

# Source: github.com/facebookresearch/dlrm_datasets embedding_bag/2022/locality_stats.txt
# (copy: /work/shared/data/meta-dlrm-2022-locality.txt). The file has no
# whole-dataset block, only the 16 part files fbgemm_t788_bs131072_{0..15}.pt
# (788 tables, batch 131,072). Both histograms below are the average of the 16
# blocks weighted by each block's "Avg # of indices", rounded to 6 decimals.
# (Weighting the unique-weighted one by "Avg # of unique cols" instead gives
# the same values to 6 decimals.)
META_2022 = PublishedProfile(
    name="meta2022",
    source="meta-dlrm-2022-locality.txt, blocks fbgemm_t788_bs131072_0..15.pt weighted by Avg # of indices",
    batch_size=131072,
    lookup=(0.027, 0.023, 0.040, 0.068, 0.105, 0.120, 0.099, 0.070, 0.059, 0.054, 0.040,
            0.07175, 0.064, 0.047, 0.021, 0.017125, 0.075062),
    unique=(0.342, 0.144, 0.149, 0.138, 0.112, 0.068, 0.029, 0.010, 0.004, 0.002, 0.001,
            0.001, 0.000, 0.000, 0.000, 0.000, 0.000),
)

PROFILES = {p.name: p for p in (META_2021, META_2022)}


def _normalise(h: np.ndarray) -> np.ndarray:
    total = float(h.sum())
    return h / total if total > 0 else h.astype(np.float64)


def bin_index(counts) -> np.ndarray:
    """Bin of each reuse factor (>= 1): 1 -> 0, 2 -> 1, 3..4 -> 2, ..., > 32768 -> 16."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.searchsorted(BIN_LOWER[1:], counts, side="left").astype(np.int64)


def reuse_counts(step, table, row) -> tuple[np.ndarray, np.ndarray]:
    """Raw reuse histograms of trace columns: (lookups per bin, distinct rows per bin), int64.

    Groups the lookups by (step, table, row); a group of c lookups is one
    distinct index with reuse factor c. Batches split across calls are counted
    as separate batches, so feed whole (step, table) batches (generated traces
    keep them inside one row group when the batch is at most 2**20 lookups).
    Raw counts of several calls can be summed before normalising.
    """
    step = np.asarray(step, dtype=np.int64)
    table = np.asarray(table)
    row = np.asarray(row, dtype=np.int64)
    if not (len(step) == len(table) == len(row)):
        raise ValueError("step, table and row must have the same length")
    if len(step) == 0:
        return np.zeros(N_BINS, np.int64), np.zeros(N_BINS, np.int64)
    if table.dtype.kind not in "iu":  # table names: map to codes first
        _, table = np.unique(table, return_inverse=True)
    table = table.astype(np.int64)
    import polars as pl

    groups = (pl.DataFrame({"s": step, "t": table, "r": row}, nan_to_null=False)
              .group_by(["s", "t", "r"]).len())
    sizes = groups["len"].to_numpy().astype(np.int64)
    bins = bin_index(sizes)
    lookups = np.bincount(bins, weights=sizes, minlength=N_BINS).astype(np.int64)
    distinct = np.bincount(bins, minlength=N_BINS).astype(np.int64)
    return lookups, distinct


def reuse_histogram(step, table, row) -> tuple[np.ndarray, np.ndarray]:
    """(lookup-weighted, unique-weighted) reuse histograms over Meta's 17 bins, each summing to 1."""
    lookups, distinct = reuse_counts(step, table, row)
    return _normalise(lookups.astype(np.float64)), _normalise(distinct.astype(np.float64))


def tvd(p, q) -> float:
    """Total-variation distance 0.5 * sum |p - q| of two histograms (each normalised first)."""
    p = _normalise(np.asarray(p, dtype=np.float64))
    q = _normalise(np.asarray(q, dtype=np.float64))
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in length: {p.shape} vs {q.shape}")
    return float(0.5 * np.abs(p - q).sum())


def _lookup_of(published) -> np.ndarray:
    if isinstance(published, PublishedProfile):
        published = published.lookup
    elif isinstance(published, str):
        published = PROFILES[published].lookup
    h = np.asarray(published, dtype=np.float64)
    if h.shape != (N_BINS,):
        raise ValueError(f"a reuse histogram has {N_BINS} bins, got shape {h.shape}")
    return _normalise(h)


def kept_bins(batch: int) -> np.ndarray:
    """Mask of the bins a batch of `batch` lookups can reach: lower edge < batch."""
    return BIN_LOWER < int(batch)


def conditioned(published, batch: int) -> np.ndarray:
    """The published lookup-weighted histogram conditioned on reuse <= batch.

    `published` is a PublishedProfile, a profile name, or 17 raw values. The
    bins whose lower edge is >= batch are set to 0 and the rest renormalised.
    """
    h = _lookup_of(published)
    kept = np.where(kept_bins(batch), h, 0.0)
    if kept.sum() <= 0:
        raise ValueError(f"no published mass at reuse <= {batch}")
    return kept / kept.sum()


def cutoff_mass(published, batch: int) -> float:
    """Share of the published lookup mass in bins a batch of `batch` lookups cannot reach."""
    h = _lookup_of(published)
    return float(h[~kept_bins(batch)].sum())


def format_histogram(h, label: str = "") -> str:
    """A one-line rendering of a 17-bin histogram (nonzero bins only)."""
    parts = [f"{BIN_LABELS[i]}:{v:.3f}" for i, v in enumerate(np.asarray(h, dtype=float)) if v > 0]
    return (label + " " if label else "") + " ".join(parts)
