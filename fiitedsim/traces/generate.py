"""Synthetic access traces: `fiitedsim generate OUT.parquet`.

A trace has `steps` x `tables` x `batch` lookups (DESIGN.md 1.2). Within step
s the lookups of table 0 come first, then table 1, ...; the `batch` lookups of
one (step, table) pair are called a *batch*. Tables are named t0, t1, ... and
all have TableSpec(rows, dim, chunk, dtype_bytes=4).

Popularity (all profiles)
-------------------------
Zipf(alpha) over the `rows` rows of a table: rank r = 1..rows has probability
r^-alpha / Z. Ranks 1..min(rows, 65536) are sampled exactly from their
discrete CDF; ranks beyond that (only when rows > 65536) from the continuous
power law x^-alpha on [65536.5, rows + 0.5] rounded to the nearest integer,
whose mass on [r - 0.5, r + 0.5] is r^-alpha to a relative error below
alpha(alpha+1)/(24 r^2) < 5e-9 (alpha <= 20). Memory is O(65536), whatever `rows`.

Ranks become rows through drift and a fixed per-table bijection:

    shift(s) = floor(R * s * rows) mod rows     (R = --drift, float64, left to right)
    pos      = (rank - 1 + shift(s)) mod rows
    row      = P_t(pos)

P_t is a keyed bijection of [0, rows): on the smallest power-of-two domain
2^b >= rows, four rounds of (add key, multiply by an odd key, xor-shift right
by ceil(b/2)) mod 2^b -- each step is invertible mod 2^b -- with
cycle-walking (re-apply until the value is < rows). Hot rows are therefore
scattered over the table. With R > 0 the rank -> row mapping moves by about
R * rows positions per step: the row at rank k + R*rows climbs to rank k, and
the rows pushed past rank 1 wrap around to the coldest ranks, so the hot set
is replaced steadily; at R = 1/steps the ranking turns once over the trace.

Profiles
--------
`zipf`: every lookup is an independent Zipf(alpha) draw.

`meta2021`, `meta2022`: each batch reproduces Meta's published reuse-factor
histogram (fiitedsim.traces.profiles). Reuse factor = how many times a row occurs in
one batch; the histogram matched is LOOKUP-weighted (share of lookups whose
row has a reuse factor in each of Meta's bins (0,1], (1,2], (2,4], ...,
(32768+). A batch of B lookups cannot hold reuse factors above B, so the
target is q = profiles.conditioned(published, B): the published histogram on
the bins whose lower edge is < B, renormalised; the dropped mass is reported
as the cut-off mass. A batch is built in three steps:

1. Counts. Within a bin (lo, hi] a distinct row's count c is drawn from
   lo+1 .. min(hi, B) with probability proportional to c^-2 (a count density
   ~ c^-2 is what makes the published lookup mass per doubling bin about
   flat; the unique-weighted histogram it implies,
   p_u(bin) ~ q(bin) / E[c | bin], reproduces Meta's published "Histogram of
   col sizes" too). Which bins get a new count is decided by error diffusion
   per table: each bin earns a credit of B * q(bin) lookups per batch; going
   from the largest bin down to (1, 2], the bin's next count c (drawn in
   advance with a threshold u * c, u ~ U(0, 1)) is placed while the credit
   is >= its threshold and c fits in the room left, and placing it takes c
   from the credit. Counts that do not fit wait for a later batch (where the
   large bins go first). The room left, r, is filled with r singletons, so
   every batch has exactly B lookups and no count is ever truncated. Credits
   stay bounded (the expected mass placed equals the credit earned; the
   error is at most about one count per bin and table), so the dataset
   histogram misses q by O(largest count / lookups per table) rather than
   the O(1/sqrt(number of large counts)) of independent draws. Measured TVD
   to q: 0.010-0.021 for 2 tables x 30 steps at B = 1024 or 4096, below
   0.001 for 4 tables x 1221 steps at B = 4096 (20M lookups). Very large
   batches need more steps: at B = 131072 a single count can hold 10% of a
   batch.
2. Rows. m distinct ranks are drawn by Zipf(alpha) without replacement (the
   first m distinct values of independent Zipf draws; if 64*m + 4096 draws do
   not give m distinct ranks, the smallest unused ranks fill in) and sorted;
   the hottest rank gets the largest count. Popular rows therefore recur in
   almost every batch with large counts (temporal locality), and drift moves
   them as above.
3. The batch's lookups are shuffled (Fisher-Yates).
The histogram of the written trace is accumulated from the counts while
generating; it equals profiles.reuse_histogram of the file.

Gradient norms (unless --no-grad)
---------------------------------
For a lookup of a row at popularity rank r (at that step), chunk k = 0..K-1:

    grad_norm[k] = r^-0.1 * 0.8^k * exp(0.5 * z),   z ~ N(0, 1) per lookup and chunk

float32, finite and > 0: popular rows get larger gradients (log-scale slope
-0.1 in the rank) and later chunks smaller ones (mean ratio 0.8 per chunk).

Determinism and streaming
-------------------------
Each table draws from its own counter-based generator (splitmix64 of a
per-table key from numpy SeedSequence([seed, table])); gradient noise comes
from numpy's PCG64 seeded with SeedSequence([seed, 1 << 32]). Same arguments
and seed give a byte-identical file. Lookups are produced and written in row
groups of about 2^20 lookups made of whole batches (one batch per row group if
a batch is larger), so memory does not grow with the trace length (it is
proportional to max(2^20, batch) lookups).
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numba
import numpy as np

from ..atomic import check_writable
from ..config import GenerateConfig
from ..errors import InputError
from ..memory import check_fits, format_bytes
from . import profiles
from .writer import TraceWriter

ROW_GROUP_LOOKUPS = 1 << 20
ZIPF_HEAD = 1 << 16           # ranks sampled exactly from the discrete CDF
COUNT_TABLE = 1 << 16         # within-bin counts sampled exactly up to this count
PERM_ROUNDS = 4
GRAD_BETA = 0.1               # grad scale ~ rank^-GRAD_BETA
GRAD_DECAY = 0.8              # grad scale ~ GRAD_DECAY^k for chunk k
GRAD_SIGMA = 0.5              # lognormal noise exp(GRAD_SIGMA * z)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_INV53 = 1.0 / 9007199254740992.0


# ----------------------------------------------------------------------------- report


@dataclass
class GenerateReport:
    """What `generate` did. The histogram fields are None for the zipf profile."""

    path: str
    profile: str
    lookups: int
    seconds: float
    batch: int
    measured_lookup: np.ndarray | None = None   # lookup-weighted reuse histogram of the written trace
    measured_unique: np.ndarray | None = None   # unique-weighted reuse histogram of the written trace
    target: np.ndarray | None = None            # published lookup-weighted histogram conditioned on reuse <= batch
    tvd: float | None = None                    # TVD(measured_lookup, target)
    cutoff_mass: float | None = None            # published lookup mass at reuse > batch
    tables: list = field(default_factory=list)

    @property
    def lookups_per_second(self) -> float:
        return self.lookups / self.seconds if self.seconds > 0 else float("inf")

    def lines(self) -> list[str]:
        """Human-readable summary lines for the CLI."""
        out = [f"wrote {self.lookups:,} lookups to {self.path} in {self.seconds:.2f} s "
               f"({self.lookups_per_second / 1e6:.1f} M lookups/s)"]
        if self.tvd is not None:
            out.append(f"reuse histogram vs published {self.profile} conditioned on reuse <= {self.batch}: "
                       f"TVD = {self.tvd:.4f} (published lookup mass cut off: {self.cutoff_mass:.3f})")
            out.append(profiles.format_histogram(self.measured_lookup, "  measured: "))
            out.append(profiles.format_histogram(self.target, "  target:   "))
        return out


# ----------------------------------------------------------------------------- numba kernels

@numba.njit(cache=True, inline="always")
def _mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def _uniform(states, t):
    """Next U[0, 1) double of table t's counter-based generator (splitmix64)."""
    states[t] += _GOLDEN
    return np.float64(_mix64(states[t]) >> _S11) * _INV53


@numba.njit(cache=True, inline="always")
def _permute(x, rows, bits, keys, t):
    """Keyed bijection of [0, rows) (see module docstring): mixer on [0, 2^bits) + cycle-walking."""
    mask = (_ONE << np.uint64(bits)) - _ONE
    shift = np.uint64((bits + 1) // 2)
    y = np.uint64(x)
    while True:
        for i in range(keys.shape[1] // 2):
            y = (y + keys[t, 2 * i]) & mask
            y = (y * (keys[t, 2 * i + 1] | _ONE)) & mask
            y = y ^ (y >> shift)
        if y < np.uint64(rows):
            return np.int64(y)


@numba.njit(cache=True, inline="always")
def _zipf_rank(u, head_cdf, rows, zp):
    """Rank in 1..rows of a Zipf(alpha) draw from u ~ U[0,1) (exact head + continuous tail)."""
    h = head_cdf.shape[0]
    p_head = zp[0]
    if h == rows or u < p_head:
        i = np.searchsorted(head_cdf, u, side="right")
        if i >= h:
            i = h - 1
        return np.int64(i + 1)
    v = (u - p_head) / (1.0 - p_head)
    a, g, tt, logba = zp[1], zp[2], zp[3], zp[4]
    if g == 0.0:
        x = a * math.exp(v * logba)
    else:
        x = a * math.exp(math.log1p(v * tt) / g)
    r = np.int64(math.floor(x + 0.5)) if x < 9.0e18 else rows
    if r <= h:
        r = h + 1
    if r > rows:
        r = rows
    return r


@numba.njit(cache=True, inline="always")
def _shift(s, drift, rows):
    if drift == 0.0:
        return np.int64(0)
    x = drift * np.float64(s) * np.float64(rows)
    return np.int64(math.floor(np.fmod(x, np.float64(rows))))


@numba.njit(cache=True, inline="always")
def _draw_count(states, t, lo, hi, wcum):
    """A count in lo+1..hi with probability ~ c^-2 (exact table up to its length, continuous beyond)."""
    u = _uniform(states, t)
    nt = wcum.shape[0] - 1
    if hi <= nt:
        w = wcum[lo] + u * (wcum[hi] - wcum[lo])
        c = np.int64(np.searchsorted(wcum, w, side="left"))
    else:
        # continuous density x^-2 on [lo+0.5, hi+0.5]: inverse CDF, rounded
        a = lo + 0.5
        b = hi + 0.5
        x = 1.0 / (1.0 / a - u * (1.0 / a - 1.0 / b))
        c = np.int64(math.floor(x + 0.5))
    if c < lo + 1:
        c = lo + 1
    if c > hi:
        c = hi
    return c


@numba.njit(cache=True, inline="always")
def _add_distinct(hset, hmask, r, ranks_buf, got):
    """Append rank r to ranks_buf[got] unless the open-addressing set hset holds it; return the count."""
    j = np.int64(_mix64(np.uint64(r)) & np.uint64(hmask))
    while hset[j] != 0 and hset[j] != r:
        j = (j + 1) & hmask
    if hset[j] == 0:
        hset[j] = r
        ranks_buf[got] = r
        got += 1
    return got


@numba.njit(cache=True)
def _fill(u0, u1, ntab, batch, rows, bits, keys, drift, states, head_cdf, zp,
          meta, q, bin_lo, bin_hi, wcum, credit, pend_c, pend_thr, hist_l, hist_u,
          counts, ranks_buf, hset, out_step, out_table, out_row, out_rank):
    """Generate the lookups of units u0..u1-1 (unit = step * ntab + table) into the out arrays."""
    nb = q.shape[0]
    hmask = hset.shape[0] - 1
    n = 0
    for unit in range(u0, u1):
        s = unit // ntab
        t = unit % ntab
        sh = _shift(s, drift, rows)
        base = n
        if not meta:
            for i in range(batch):
                out_rank[n + i] = _zipf_rank(_uniform(states, t), head_cdf, rows, zp)
        else:
            # 1. counts by per-bin error diffusion, largest bins first; singletons fill the rest
            for b in range(nb):
                credit[t, b] += batch * q[b]
            room = batch
            m = 0
            for b in range(nb - 1, 0, -1):
                if q[b] <= 0.0:
                    continue
                while True:
                    if pend_c[t, b] == 0:
                        c = _draw_count(states, t, bin_lo[b], bin_hi[b], wcum)
                        pend_c[t, b] = c
                        pend_thr[t, b] = _uniform(states, t) * c
                    c = pend_c[t, b]
                    if c > room or credit[t, b] < pend_thr[t, b]:
                        break
                    counts[m] = c
                    m += 1
                    room -= c
                    credit[t, b] -= c
                    pend_c[t, b] = 0
                    hist_l[b] += c
                    hist_u[b] += 1
            for _ in range(room):
                counts[m] = 1
                m += 1
            credit[t, 0] -= room
            hist_l[0] += room
            hist_u[0] += room
            # 2. m distinct Zipf ranks (first distinct values of iid draws), hottest gets the largest count
            got = 0
            draws = 0
            limit = 64 * m + 4096
            while got < m and draws < limit:
                r = _zipf_rank(_uniform(states, t), head_cdf, rows, zp)
                draws += 1
                got = _add_distinct(hset, hmask, r, ranks_buf, got)
            r = np.int64(1)
            while got < m:  # fallback: smallest unused ranks
                got = _add_distinct(hset, hmask, r, ranks_buf, got)
                r += 1
            for i in range(m):  # clear the set
                j = np.int64(_mix64(np.uint64(ranks_buf[i])) & np.uint64(hmask))
                while hset[j] != ranks_buf[i]:
                    j = (j + 1) & hmask
                hset[j] = 0
            rk = np.sort(ranks_buf[:m])
            cs = np.sort(counts[:m])
            k = base
            for i in range(m):
                c = cs[m - 1 - i]
                for _ in range(c):
                    out_rank[k] = rk[i]
                    k += 1
            # 3. shuffle the batch
            for i in range(batch - 1, 0, -1):
                j = base + np.int64(_uniform(states, t) * (i + 1))
                if j > base + i:
                    j = base + i
                tmp = out_rank[base + i]
                out_rank[base + i] = out_rank[j]
                out_rank[j] = tmp
        for i in range(batch):
            pos = out_rank[n + i] - 1 + sh
            if pos >= rows:
                pos -= rows
            out_row[n + i] = _permute(pos, rows, bits, keys, t)
            out_step[n + i] = s
            out_table[n + i] = t
        n += batch
    return n


@numba.njit(cache=True)
def _grads(rank, noise, beta, decay):
    """noise[i, k] <- rank[i]^-beta * decay^k * exp(noise[i, k]) in float32 (in place)."""
    n, kk = noise.shape
    fk = np.empty(kk, np.float32)
    for k in range(kk):
        fk[k] = np.float32(decay ** k)
    for i in range(n):
        sc = np.float32(np.float64(rank[i]) ** (-beta))
        for k in range(kk):
            noise[i, k] = sc * fk[k] * np.float32(math.exp(noise[i, k]))
    return noise


@numba.njit(cache=True)
def _zipf_many(n, states, head_cdf, rows, zp):
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = _zipf_rank(_uniform(states, 0), head_cdf, rows, zp)
    return out


@numba.njit(cache=True)
def _rows_of(rank, step, t, rows, bits, keys, drift):
    out = np.empty(rank.shape[0], np.int64)
    for i in range(rank.shape[0]):
        pos = (rank[i] - 1 + _shift(step[i], drift, rows)) % rows
        out[i] = _permute(pos, rows, bits, keys, t)
    return out


# ----------------------------------------------------------------------------- setup helpers

def _zipf_tables(alpha: float, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Head CDF over ranks 1..min(rows, ZIPF_HEAD) and tail parameters [p_head, a, g, t, log(b/a)]."""
    h = min(rows, ZIPF_HEAD)
    w = np.arange(1, h + 1, dtype=np.float64) ** -alpha
    head = np.cumsum(w)
    a, b, g = h + 0.5, rows + 0.5, 1.0 - alpha
    if rows > h:
        logba = math.log(b / a)
        if abs(g) < 1e-12:
            g, tt, tail = 0.0, 0.0, logba  # alpha == 1: x^-1 integrates to a log
        else:
            tt = math.expm1(g * logba)                     # (b/a)^g - 1
            tail = a ** g * tt / g                         # integral of x^-alpha over [a, b]
    else:
        logba, tt, tail = 0.0, 0.0, 0.0
    z = head[-1] + tail
    cdf = head / z
    return cdf, np.array([cdf[-1] if rows > h else 1.0, a, g, tt, logba], dtype=np.float64)


def _bits_for(rows: int) -> int:
    return max(1, (rows - 1).bit_length())


def _count_weights(batch: int) -> np.ndarray:
    """wcum[c] = sum_{j=1..c} j^-2 for c = 0..min(batch, COUNT_TABLE)."""
    n = min(batch, COUNT_TABLE)
    w = np.zeros(n + 1, dtype=np.float64)
    w[1:] = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -2.0)
    return w


def implied_unique(q: np.ndarray, batch: int) -> np.ndarray:
    """Unique-weighted histogram implied by lookup-weighted q under the c^-2 within-bin model."""
    q = np.asarray(q, dtype=np.float64)
    out = np.zeros_like(q)
    for b in range(profiles.N_BINS):
        lo, hi = int(profiles.BIN_LOWER[b]), int(min(profiles.BIN_UPPER[b], batch))
        if q[b] <= 0 or lo + 1 > hi:
            continue
        c = np.arange(lo + 1, hi + 1, dtype=np.float64)
        mean = (c * c ** -2.0).sum() / (c ** -2.0).sum()
        out[b] = q[b] / mean
    return out / out.sum()


def _table_seeds(seed: int, ntab: int) -> tuple[np.ndarray, np.ndarray]:
    states = np.empty(ntab, dtype=np.uint64)
    keys = np.empty((ntab, 2 * PERM_ROUNDS), dtype=np.uint64)
    for t in range(ntab):
        words = np.random.SeedSequence([seed, t]).generate_state(1 + 2 * PERM_ROUNDS, np.uint64)
        states[t] = words[0]
        keys[t] = words[1:]
    return states, keys


def sample_zipf_ranks(n: int, alpha: float, rows: int, seed: int = 0) -> np.ndarray:
    """n independent Zipf(alpha) ranks in 1..rows, drawn exactly as the generator draws them."""
    head_cdf, zp = _zipf_tables(float(alpha), int(rows))
    states = np.random.SeedSequence([seed, 1 << 33]).generate_state(1, np.uint64)
    return _zipf_many(int(n), states, head_cdf, int(rows), zp)


def rank_to_row(rank, step, table: int, cfg: GenerateConfig) -> np.ndarray:
    """The row that popularity rank `rank` (1-based) maps to at `step` in table `table` of `cfg`'s trace."""
    rank = np.asarray(rank, dtype=np.int64)
    step = np.broadcast_to(np.asarray(step, dtype=np.int64), rank.shape).copy()
    if rank.size and (rank.min() < 1 or rank.max() > cfg.rows):
        raise ValueError(f"ranks must be in 1..{cfg.rows}")
    _, keys = _table_seeds(cfg.seed, cfg.tables)
    return _rows_of(rank.ravel(), step.ravel(), int(table), cfg.rows, _bits_for(cfg.rows), keys,
                    cfg.drift).reshape(rank.shape)


# ----------------------------------------------------------------------------- driver

def hset_bytes(batch: int) -> int:
    """Bytes of the hash set a meta profile counts a step's distinct rows in."""
    return 8 << max(4, (2 * batch - 1).bit_length())


#: What a generated trace takes on disk at the least, per lookup and per gradient norm (measured: about 2.9 bytes
#: per lookup without gradient norms, 6 per norm with them; the bounds are below, so a refusal is certain).
MIN_BYTES_PER_LOOKUP, MIN_BYTES_PER_NORM = 1, 2


def check_disk_room(path, cfg: GenerateConfig) -> None:
    """Refuse, before writing, a trace that cannot fit the free space of its folder (`--steps 2**63-1` wrote a
    5.2 GB temporary in two minutes before failing). The estimate is a lower bound (`MIN_BYTES_PER_LOOKUP`)."""
    need = cfg.lookups * (MIN_BYTES_PER_LOOKUP + (cfg.chunks * MIN_BYTES_PER_NORM if cfg.grad else 0))
    folder = next((p for p in Path(path).absolute().parents if p.is_dir()), None)
    try:
        free = shutil.disk_usage(folder).free
    except (OSError, TypeError):
        return
    if need > free:
        raise InputError(f"{path}: {cfg.lookups:,} lookups (--steps x --table-count x --batch) would take at "
                         f"least {format_bytes(need)} on disk, more than the {format_bytes(free)} free there; "
                         "lower --steps, --table-count or --batch")


def generate(path, cfg: GenerateConfig, progress: Callable[[int], None] | None = None) -> GenerateReport:
    """Write the synthetic trace of `cfg` to `path` (Parquet, DESIGN.md 1.2) and report on it.

    `progress`, if given, is called after each row group with the number of
    lookups written so far.
    """
    if not isinstance(cfg, GenerateConfig):
        raise TypeError("cfg must be a GenerateConfig")
    if Path(path).is_dir():
        raise InputError(f"output {path} is a directory; give a file name like trace.parquet")
    check_writable(path)
    t0 = time.perf_counter()
    tables = cfg.table_specs()
    ntab, batch, rows, kk = cfg.tables, cfg.batch, cfg.rows, cfg.chunks
    meta = cfg.profile != "zipf"

    states, keys = _table_seeds(cfg.seed, ntab)
    head_cdf, zp = _zipf_tables(cfg.alpha, rows)
    bits = _bits_for(rows)
    grad_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([cfg.seed, 1 << 32])))

    nb = profiles.N_BINS
    if meta:
        published = profiles.PROFILES[cfg.profile]
        q = profiles.conditioned(published, batch)
    else:
        published, q = None, np.zeros(nb)
    bin_lo = profiles.BIN_LOWER.astype(np.int64)
    bin_hi = np.minimum(profiles.BIN_UPPER, batch).astype(np.int64)
    wcum = _count_weights(batch) if meta else np.zeros(2)
    credit = np.zeros((ntab, nb), dtype=np.float64)
    pend_c = np.zeros((ntab, nb), dtype=np.int64)
    pend_thr = np.zeros((ntab, nb), dtype=np.float64)
    hist_l = np.zeros(nb, dtype=np.int64)
    hist_u = np.zeros(nb, dtype=np.int64)
    check_fits(batch * 24 + hset_bytes(batch) if meta else 0, f"--batch {batch}: generating steps of {batch:,} "
               "lookups per table", "lower --batch")
    counts = np.empty(batch if meta else 1, dtype=np.int64)
    ranks_buf = np.empty(batch if meta else 1, dtype=np.int64)
    hset = np.zeros(hset_bytes(batch) // 8 if meta else 2, dtype=np.int64)

    units_total = cfg.steps * ntab
    units_per_group = max(1, ROW_GROUP_LOOKUPS // batch)
    cap = min(units_per_group, units_total) * batch
    check_fits(cap * 36 + (batch * 48 + hset_bytes(batch) if meta else 0),
               f"--batch {batch}: generating steps of {batch:,} lookups per table", "lower --batch")
    out_step = np.empty(cap, dtype=np.int64)
    out_table = np.empty(cap, dtype=np.int32)
    out_row = np.empty(cap, dtype=np.int64)
    out_rank = np.empty(cap, dtype=np.int64)

    check_disk_room(path, cfg)  # after the memory checks: a batch too large for memory is named as such
    written = 0
    with TraceWriter(path, tables, with_grad=cfg.grad) as writer:
        for u0 in range(0, units_total, units_per_group):
            u1 = min(units_total, u0 + units_per_group)
            n = _fill(u0, u1, ntab, batch, rows, bits, keys, cfg.drift, states, head_cdf, zp,
                      meta, q, bin_lo, bin_hi, wcum, credit, pend_c, pend_thr, hist_l, hist_u,
                      counts, ranks_buf, hset, out_step, out_table, out_row, out_rank)
            for a in range(0, n, ROW_GROUP_LOOKUPS):
                b = min(n, a + ROW_GROUP_LOOKUPS)
                grad = None
                if cfg.grad:
                    noise = grad_rng.standard_normal((b - a, kk), dtype=np.float32)
                    noise *= np.float32(GRAD_SIGMA)
                    grad = _grads(out_rank[a:b], noise, GRAD_BETA, GRAD_DECAY)
                writer.write(out_step[a:b], out_table[a:b], out_row[a:b], grad)
                written += b - a
                if progress is not None:
                    progress(written)

    report = GenerateReport(path=str(path), profile=cfg.profile, lookups=written,
                            seconds=time.perf_counter() - t0, batch=batch, tables=tables)
    if meta:
        report.measured_lookup = hist_l / max(1, hist_l.sum())
        report.measured_unique = hist_u / max(1, hist_u.sum())
        report.target = q
        report.tvd = profiles.tvd(report.measured_lookup, q)
        report.cutoff_mass = profiles.cutoff_mass(published, batch)
    return report
