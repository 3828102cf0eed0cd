"""The metrics contract of every policy (DESIGN.md section 5, docs/semantics.md "Metrics").

This module owns what a replay reports, so that every policy reports it the same way:

* **counts** (`Count`, one int64 array per policy): the cumulative *counters* of the time series
  (`Count.LOOKUPS` .. `Count.ROUNDS`, in `COUNTER_COLUMNS` order), then the *extremes* kept over the
  whole replay for the summary (the byte peaks and the longest probe);
* **gauges**: current values, integers (`IntGauge`: bytes, pages, chunks, rows) and ratios
  (`FloatGauge`), in `GAUGE_COLUMNS` order;
* the hit counting of every record loop (`add_hits`);
* the **time series**: one row per snapshot, written by `write_snapshot` (a Numba function that
  every policy's kernel or driver calls) into a `Series`, whose integer columns stay int64 from the
  kernel to the Parquet file (steps and counters near 2**63 survive) and whose ratios are float64;
* the **summary** (`SUMMARY_KEYS`, the `summary.json` contract), built by `summary` from a snapshot
  row taken now and the extremes.

Policies differ only in how they fill the counts and gauges.
"""
from __future__ import annotations

from enum import IntEnum

import numba
import numpy as np
import polars as pl


class Count(IntEnum):
    """Indices of a policy's counts array: the series counters, then the summary's extremes."""

    LOOKUPS = 0
    ROW_HITS = 1
    CHUNK_HITS = 2
    CHUNKS_REQUESTED = 3
    FULL_HITS = 4
    DIM_HITS = 5
    DIMS_REQUESTED = 6
    COLLISIONS = 7
    ALLOCATIONS = 8
    FREES = 9
    REHASHES = 10
    DENIED_FULL = 11
    DENIED_THRESHOLD = 12
    SEARCHES = 13
    PROBES = 14
    ROUNDS = 15
    # extremes over the whole replay (summary only, not series columns)
    PAYLOAD_PEAK = 16
    INDEX_PEAK = 17
    TOTAL_PEAK = 18
    MAX_PROBE = 19


N_COUNTERS = int(Count.ROUNDS) + 1   # counters that are series columns
N_COUNTS = len(Count)


class IntGauge(IntEnum):
    PAYLOAD_BYTES = 0
    INDEX_BYTES = 1
    META_BYTES = 2
    TOTAL_BYTES = 3
    MAPPED_PAGES = 4
    LIVE_CHUNKS = 5
    TRACKED_ROWS = 6


class FloatGauge(IntEnum):
    FRAGMENTATION = 0
    THETA = 1
    INDEX_LOAD_FACTOR = 2


N_INT_GAUGES, N_FLOAT_GAUGES = len(IntGauge), len(FloatGauge)

#: Columns of the time series, in order: step, counters, gauges, then dim_0 .. dim_K (rows by resident chunks)
COUNTER_COLUMNS = [c.name.lower() for c in Count if c < N_COUNTERS]
GAUGE_COLUMNS = [g.name.lower() for g in IntGauge] + [g.name.lower() for g in FloatGauge]
FLOAT_COLUMNS = [g.name.lower() for g in FloatGauge]

#: Position of each integer column in a Series' int64 rows: step, counters, integer gauges, dim_0 ..
COL_STEP = 0
COL_COUNTERS = 1
COL_GAUGES = COL_COUNTERS + N_COUNTERS
COL_DIMS = COL_GAUGES + N_INT_GAUGES

#: Keys of every policy object in summary.json, in this order (the contract of docs/formats.md).
SUMMARY_KEYS = [
    "payload_bytes_peak", "payload_bytes_final", "index_bytes_peak", "index_bytes_final", "meta_bytes_final",
    "total_bytes_peak", "total_bytes_final", "mapped_pages_final", "live_chunks_final", "fragmentation_final",
    "row_hit_rate", "chunk_hit_rate", "full_hit_rate", "dim_hit_rate", "collision_share", "lookups", "row_hits",
    "chunk_hits", "chunks_requested", "full_hits", "dim_hits", "dims_requested", "collisions", "allocations",
    "frees", "rehashes", "denied_full", "denied_threshold", "theta_final",
    "mean_probe_length", "max_probe_length", "searches", "probes", "rounds", "tracked_rows", "dim_hist_final",
    "index_load_factor_final",
]


def snapshot_columns(k_max: int) -> list[str]:
    """Every column of the time series, in order."""
    return ["step"] + COUNTER_COLUMNS + GAUGE_COLUMNS + [f"dim_{d}" for d in range(k_max + 1)]


def int_columns(k_max: int) -> int:
    """Width of a Series' int64 rows."""
    return COL_DIMS + k_max + 1


# ============================================================================
# The one snapshot-row writer
# ============================================================================

@numba.njit(cache=True, inline="always")
def add_hits(counts, lookups, row_hits, chunk_hits, chunks, full_hits, dim_hits, dims):
    """Count `lookups` lookups that asked for `chunks` chunks and `dims` dimensions in all, of which `row_hits` found
    their row, `chunk_hits` chunks, `full_hits` all of it and `dim_hits` dimensions resident (DESIGN 5): the hit
    counting of every policy's record loop (one lookup at a time, or sums kept in registers). The counts are
    stored in index order: in a loop that stores to other arrays too, another order measured 20% slower
    (`static_run`, issue 20)."""
    counts[Count.LOOKUPS] += lookups
    counts[Count.ROW_HITS] += row_hits
    counts[Count.CHUNK_HITS] += chunk_hits
    counts[Count.CHUNKS_REQUESTED] += chunks
    counts[Count.FULL_HITS] += full_hits
    counts[Count.DIM_HITS] += dim_hits
    counts[Count.DIMS_REQUESTED] += dims


@numba.njit(cache=True, inline="always")
def write_snapshot(ints, floats, n, step, counts, int_gauges, float_gauges, dim_hist, unseen_rows):
    """Row n of the time series: step, counters, gauges, and rows by resident chunks.

    `dim_hist[d]` counts the rows with state at d resident chunks; `unseen_rows` (rows without state)
    are added at d = 0, so the histogram covers every row of every table (docs/semantics.md).
    Plain loops, no slices: callable from kernels compiled without reference counting.
    """
    ints[n, COL_STEP] = step
    for c in range(N_COUNTERS):
        ints[n, COL_COUNTERS + c] = counts[c]
    for g in range(N_INT_GAUGES):
        ints[n, COL_GAUGES + g] = int_gauges[g]
    for d in range(dim_hist.size):
        ints[n, COL_DIMS + d] = dim_hist[d]
    ints[n, COL_DIMS] += unseen_rows
    for g in range(N_FLOAT_GAUGES):
        floats[n, g] = float_gauges[g]


class Series:
    """A policy's time series: kernels write rows into `ints` and `floats`; full buffers are kept as parts."""

    def __init__(self, k_max: int, capacity: int = 4096):
        self.k_max = k_max
        self.ints = np.zeros((capacity, int_columns(k_max)), np.int64)
        self.floats = np.zeros((capacity, N_FLOAT_GAUGES), np.float64)
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []

    @property
    def capacity(self) -> int:
        return self.ints.shape[0]

    def reserve(self, rows: int) -> None:
        """Room for `rows` rows from row 0 (the buffers are flushed before this)."""
        if rows > self.capacity:
            self.ints = np.zeros((rows, self.ints.shape[1]), np.int64)
            self.floats = np.zeros((rows, N_FLOAT_GAUGES), np.float64)

    def flush(self, n: int) -> None:
        """Keep the first n rows of the buffers; the buffers start over from row 0."""
        if n:
            self.parts.append((self.ints[:n].copy(), self.floats[:n].copy()))

    def frame(self) -> pl.DataFrame:
        """The series as a table: integer columns int64 end to end, ratios float64."""
        ints = np.concatenate([p[0] for p in self.parts]) if self.parts else np.zeros((0, self.ints.shape[1]),
                                                                                       np.int64)
        floats = np.concatenate([p[1] for p in self.parts]) if self.parts else np.zeros((0, N_FLOAT_GAUGES))
        data: dict[str, np.ndarray] = {}
        i = 0
        for name in snapshot_columns(self.k_max):
            if name in FLOAT_COLUMNS:
                data[name] = np.ascontiguousarray(floats[:, FLOAT_COLUMNS.index(name)])
            else:
                data[name] = np.ascontiguousarray(ints[:, i])
                i += 1
        return pl.DataFrame(data)


# ============================================================================
# The one summary builder
# ============================================================================

def ratio(num, den) -> float:
    return float(num) / float(den) if den else 0.0


def summary(ints: np.ndarray, floats: np.ndarray, counts: np.ndarray, k_max: int) -> dict:
    """The summary (SUMMARY_KEYS order) from a snapshot row taken now (`ints`, `floats`: one row each,
    as `write_snapshot` writes it) and the policy's counts (for the extremes)."""
    out = {name: int(ints[COL_COUNTERS + c]) for c, name in enumerate(COUNTER_COLUMNS)}
    gi = {g: int(ints[COL_GAUGES + g]) for g in IntGauge}
    out.update(
        payload_bytes_peak=int(counts[Count.PAYLOAD_PEAK]), payload_bytes_final=gi[IntGauge.PAYLOAD_BYTES],
        index_bytes_peak=int(counts[Count.INDEX_PEAK]), index_bytes_final=gi[IntGauge.INDEX_BYTES],
        meta_bytes_final=gi[IntGauge.META_BYTES], total_bytes_peak=int(counts[Count.TOTAL_PEAK]),
        total_bytes_final=gi[IntGauge.TOTAL_BYTES], mapped_pages_final=gi[IntGauge.MAPPED_PAGES],
        live_chunks_final=gi[IntGauge.LIVE_CHUNKS], fragmentation_final=float(floats[FloatGauge.FRAGMENTATION]),
        theta_final=float(floats[FloatGauge.THETA]), max_probe_length=int(counts[Count.MAX_PROBE]),
        tracked_rows=gi[IntGauge.TRACKED_ROWS],
        dim_hist_final=[int(x) for x in ints[COL_DIMS:COL_DIMS + k_max + 1]],
        index_load_factor_final=float(floats[FloatGauge.INDEX_LOAD_FACTOR]),
    )
    out["row_hit_rate"] = ratio(out["row_hits"], out["lookups"])
    out["chunk_hit_rate"] = ratio(out["chunk_hits"], out["chunks_requested"])
    out["full_hit_rate"] = ratio(out["full_hits"], out["lookups"])
    out["dim_hit_rate"] = ratio(out["dim_hits"], out["dims_requested"])
    out["collision_share"] = ratio(out["collisions"], out["lookups"])
    out["mean_probe_length"] = ratio(out["probes"], out["searches"])
    return {key: out[key] for key in SUMMARY_KEYS}
