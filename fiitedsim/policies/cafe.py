"""`cafe`: hot features exact, cold features hashed, hotness from a sketch of gradient norms; learned online.

CAFE (Zhang, Liu, Miao, Nie, Zhu, Cui, "CAFE: Towards Compact, Adaptive, and Fast Embedding for Large-scale
Recommendation Models", SIGMOD 2024), as its authors' artifact implements it (github.com/HugoZHL/CAFE,
`ArtifactEvaluation/embeddings/sk_embedding_bag.py` and `sketch.cpp`, `init_embed.py` for the sizes):

Parts, sized from the budget B, which covers them all (b: the row bytes of the tables, the largest when they
differ: one hot table serves every field, so a hot row holds a row of any table):
    cold share h (`--cafe-cold-share`), threshold k (`--cafe-threshold`), decay r (`--cafe-decay`, 0.99);
    H = floor(B * (1 - h) / (b + 48)): the sketch's buckets and the hot table's rows (row 0 is never assigned,
      as in the artifact: H - 1 usable rows); the sketch is H buckets of 4 slots of 12 bytes (id, score, hot
      row): 48 H bytes, so hot rows and sketch split (1 - h) B as b : 48 (`init_embed.py`);
    c_t = max(1, floor(B * h * dense_t / dense_total) // b_t): table t's cold rows (the artifact takes
      ceil(B/dense * h * n_t); the floor keeps within the budget, one row at least).
Defaults of k and h follow the ratio cr = B / dense_total as the artifact's Criteo runs pair them
(`tasks/criteo.json`): the entry of the largest listed ratio at most cr (`DEFAULTS`).

Per step (a training batch), the lookups are answered from the sketch as it was when the step began (the
artifact queries in the forward pass and inserts after the backward pass):
    a lookup of (t, r) is *hot* when bucket splitmix64(key) mod H holds its key with a nonzero score and a hot
    row: it reads that row of the hot table, all D dimensions its own (a hit); otherwise it is *cold*: it reads
    cold row splitmix64(r) mod c_t of its table (itself when c_t >= rows_t), and when that row has served
    another row seen so far (as `hash` counts) it is a collision, 0 dimensions.
When the step is over (before the next step's first lookup), per table with lookups in the step, in table
order (the artifact inserts field by field):
    decay: when the inserted score since the last decay, tot, exceeds 10 H k: every slot holding a hot row
      whose score * r < k gives its row back (to the end of the free queue; the feature is cold again, nothing
      written back: a demotion); every score is multiplied by r; tot = 0;
    scores: g_i = the L2 norm of lookup i's gradient (sqrt of the sum of its chunk norms squared, in chunk
      order, float64), 1 without gradients; v_i = g_i * N_t / S_t, N_t the table's lookups in the step and S_t
      their g_i summed in record order (0 when S_t = 0): a field's scores sum to its lookups;
    insert each lookup in record order (`sketch.cpp`, `Insert`): tot += v; in its bucket,
      - a slot holding its key with a nonzero score: score += v; if score >= k, the slot has no hot row and the
        free queue is not empty, it takes the first free row (a promotion); otherwise the slot moves towards
        slot 0 while its score exceeds the previous slot's;
      - else the first slot with score 0 takes (key, v);
      - else, if slot 3 has no hot row: its score += v and it takes the key (Space-Saving's replacement);
      - else the score is dropped.
Scores are float64 here (the artifact's are float32). Importance logs are not read.

Replay figures particular to `cafe` (its summary): `hot_hit_share` (hot lookups / lookups), `promotions`,
`demotions`, and the memory of each part, `hot_bytes` (H rows), `cold_bytes` and `sketch_bytes`; the cold
collisions are the standard `collisions` and `collision_share`. Payload is hot + cold rows; the sketch,
which also maps hot features to their rows, is the index; no metadata.

Training: the hot table is one more table of the model (H rows after the fields' tables, initialised as the
artifact does, U(+-sqrt(1 / max rows_t))); a lookup trains the row it read. A promotion copies the feature's
cold row (the row it was reading) into its hot row, with its row-wise Adagrad state, after the step's update
(the artifact copies before it, `insert_grad` sits between backward and the optimizer step).
"""
from __future__ import annotations

import numba
import numpy as np

from ..config import budget_name, dense_bytes
from ..engine.hashmap import ROW_BITS, splitmix64
from ..engine.rowset import SharedRows
from ..errors import InputError
from .static import StaticPolicy, chunk_hist

#: The artifact's Criteo pairs (`tasks/criteo.json`): (ratio, threshold k, cold share h), by falling ratio.
DEFAULTS = ((0.5, 10.0, 0.7), (0.2, 10.0, 0.5), (0.1, 20.0, 0.5), (0.05, 30.0, 0.5), (0.02, 50.0, 0.3),
            (0.01, 100.0, 0.3), (0.005, 200.0, 0.2), (0.002, 500.0, 0.2), (0.001, 500.0, 0.2),
            (0.0005, 500.0, 0.1))
#: Slots per sketch bucket and bytes per slot (4-byte id, 4-byte score, 4-byte hot row), as the artifact's.
SLOTS, SLOT_BYTES = 4, 12


def cafe_defaults(ratio: float) -> tuple[float, float]:
    """(threshold, cold share) for a budget of `ratio` of the dense size: the entry of the largest listed
    ratio at most `ratio` (the first above the list, the last below it)."""
    for r, k, h in DEFAULTS:
        if ratio >= r:
            return k, h
    return DEFAULTS[-1][1], DEFAULTS[-1][2]


def cafe_layout(tables, cfg) -> tuple[int, list[int], float, float]:
    """(H, cold rows per table, threshold, cold share) of a budget (module docstring)."""
    dense = dense_bytes(tables)
    k, h = cafe_defaults(cfg.budget_bytes / dense)
    k = cfg.cafe_threshold if cfg.cafe_threshold is not None else k
    h = cfg.cafe_cold_share if cfg.cafe_cold_share is not None else h
    row_bytes = max(t.dim * t.dtype_bytes for t in tables)   # a hot row holds a row of any table
    hot = int(cfg.budget_bytes * (1.0 - h) // (row_bytes + SLOTS * SLOT_BYTES))
    cold = [max(1, int(cfg.budget_bytes * h * t.dense_bytes // dense) // (t.dim * t.dtype_bytes)) for t in tables]
    return hot, cold, k, h


@numba.njit(cache=True)
def _bucket(key, n):
    return np.int64(splitmix64(key) % np.uint64(n))


@numba.njit(cache=True)
def sketch_query(sk_key, sk_cnt, sk_row, keys, out):
    """out[i] = the hot row of key keys[i] (0: cold): the slot of its bucket holding it with a nonzero score."""
    n = sk_key.shape[0]
    for i in range(keys.size):
        b = _bucket(keys[i], n)
        out[i] = 0
        for j in range(sk_key.shape[1]):
            if sk_cnt[b, j] != 0 and sk_key[b, j] == keys[i]:
                out[i] = sk_row[b, j]
                break


@numba.njit(cache=True)
def sketch_decay(sk_cnt, sk_row, free, fq, tot, k, r):
    """The decay of the module docstring when tot exceeds 10 H k; returns the demotions."""
    n = sk_cnt.shape[0]
    if tot[0] <= 10.0 * n * k:
        return 0
    demoted = 0
    for b in range(n):
        for j in range(sk_cnt.shape[1]):
            if sk_row[b, j] != 0 and sk_cnt[b, j] * r < k:
                free[(fq[0] + fq[1]) % free.size] = sk_row[b, j]   # to the back of the free queue
                fq[1] += 1
                sk_row[b, j] = 0
                demoted += 1
            sk_cnt[b, j] *= r
    tot[0] = 0.0
    return demoted


@numba.njit(cache=True)
def sketch_insert(sk_key, sk_cnt, sk_row, free, fq, tot, k, keys, scores, promoted):
    """Insert keys[i] with scores[i] in order (module docstring); promoted[i] = the hot row key i was given now
    (0: none). Returns the promotions."""
    n, slots = sk_key.shape
    count = 0
    for i in range(keys.size):
        key, v = keys[i], scores[i]
        promoted[i] = 0
        tot[0] += v
        b = _bucket(key, n)
        found = -1
        for j in range(slots):
            if sk_cnt[b, j] != 0 and sk_key[b, j] == key:
                found = j
                break
        if found >= 0:
            sk_cnt[b, found] += v
            if sk_cnt[b, found] >= k and fq[1] > 0 and sk_row[b, found] == 0:
                sk_row[b, found] = free[fq[0]]
                fq[0] = (fq[0] + 1) % free.size
                fq[1] -= 1
                promoted[i] = sk_row[b, found]
                count += 1
                continue
            j = found
            while j > 0 and sk_cnt[b, j] > sk_cnt[b, j - 1]:   # towards slot 0 while larger than the previous
                sk_key[b, j], sk_key[b, j - 1] = sk_key[b, j - 1], sk_key[b, j]
                sk_cnt[b, j], sk_cnt[b, j - 1] = sk_cnt[b, j - 1], sk_cnt[b, j]
                sk_row[b, j], sk_row[b, j - 1] = sk_row[b, j - 1], sk_row[b, j]
                j -= 1
            continue
        empty = -1
        for j in range(slots):
            if sk_cnt[b, j] == 0:
                empty = j
                break
        if empty >= 0:
            sk_key[b, empty] = key
            sk_cnt[b, empty] = v
        elif sk_row[b, slots - 1] == 0:
            sk_cnt[b, slots - 1] += v
            sk_key[b, slots - 1] = key
    return count


@numba.njit(cache=True)
def lookup_scores(table, grad, chunks, out):
    """out[i] = v_i of the module docstring for one step's lookups (grad empty: g = 1): per table, g_i * N / S
    with S the table's g_i summed in record order."""
    n = table.size
    g = np.empty(n)
    for i in range(n):
        if grad.shape[0] == 0:
            g[i] = 1.0
        else:
            s = 0.0
            for c in range(chunks[table[i]]):
                x = np.float64(grad[i, c])
                s += x * x
            g[i] = np.sqrt(s)
    total = np.zeros(chunks.size)
    count = np.zeros(chunks.size, np.int64)
    for i in range(n):
        total[table[i]] += g[i]
        count[table[i]] += 1
    for i in range(n):
        t = table[i]
        out[i] = g[i] * count[t] / total[t] if total[t] != 0 else 0.0


class Cafe(StaticPolicy):
    name = "cafe"
    sizing = "online"
    uses_grad = True

    def __init__(self, tables, cfg, has_grad, has_log):
        super().__init__(tables, cfg, has_grad, has_log)
        self.hot, self.cold, self.threshold, self.cold_share = cafe_layout(tables, cfg)
        self.hot_bytes = self.hot * max(t.dim * t.dtype_bytes for t in tables)
        self.cold_bytes = sum(c * t.dim * t.dtype_bytes for c, t in zip(self.cold, tables))
        self.sketch_bytes = self.hot * SLOTS * SLOT_BYTES
        self.payload_bytes, self.index_bytes = self.hot_bytes + self.cold_bytes, self.sketch_bytes
        self.table_dims = None
        self.dim_hist = chunk_hist(tables, self.k_max, ((i, t.dim, t.rows) for i, t in enumerate(tables)))
        self.tab_rows = np.array([t.rows for t in tables], np.int64)
        self.tab_cold = np.array(self.cold, np.int64)
        self.sk_key = np.zeros((self.hot, SLOTS), np.int64)
        self.sk_cnt = np.zeros((self.hot, SLOTS), np.float64)
        self.sk_row = np.zeros((self.hot, SLOTS), np.int64)
        self.free = np.arange(1, max(self.hot, 2), dtype=np.int64)   # rows 1 .. H-1, a FIFO ring
        self.fq = np.array([0, self.hot - 1], np.int64)             # head, count
        self.tot = np.zeros(1, np.float64)
        self.cold_rows_shared = SharedRows(len(tables))
        self.counts = {"hot_lookups": 0, "promotions": 0, "demotions": 0}
        self._pending: list[tuple] = []   # the current step's (table, row, grad) parts, inserted when it ends
        self._pending_step = None
        self._copies: list[tuple] = []    # promotions not yet handed to a trainer: (table, row, hot row)
        self._chunks = np.array([t.chunks for t in tables], np.int64)

    @classmethod
    def check_budget(cls, tables, cfg, vocabulary: bool = False) -> None:
        hot, _, _, h = cafe_layout(tables, cfg)
        if hot < 2:
            row_bytes = max(t.dim * t.dtype_bytes for t in tables)
            need = int(-(-2 * (row_bytes + SLOTS * SLOT_BYTES) // (1.0 - h)))
            raise InputError(f"budget {budget_name(cfg)} ({cfg.budget_bytes} bytes) leaves cafe a sketch of "
                             f"{max(hot, 0)} bucket(s), no hot row; it needs about {need} bytes at a cold share of "
                             f"{h:g} ({need / dense_bytes(tables):.6g} of the dense size), or a lower "
                             "--cafe-cold-share")

    # ---- the state a step reads

    def _keys(self, table, row) -> np.ndarray:
        return (np.asarray(table, np.int64) << np.int64(ROW_BITS)) | np.asarray(row, np.int64)

    def hot_rows(self, table, row) -> np.ndarray:
        """The hot row each lookup reads now (0: cold)."""
        out = np.empty(len(row), np.int64)
        sketch_query(self.sk_key, self.sk_cnt, self.sk_row, self._keys(table, row) + 1, out)
        return out

    def cold_rows(self, table, row) -> np.ndarray:
        """The cold row each (table, row) reads: itself in a table that keeps every row, else splitmix64 mod c_t."""
        table, row = np.asarray(table, np.int64), np.asarray(row, np.int64)
        c = self.tab_cold[table]
        hashed = (splitmix_array(row) % c.astype(np.uint64)).astype(np.int64)
        return np.where(c >= self.tab_rows[table], row, hashed)

    def resident_dims(self, table, row) -> np.ndarray:
        return self.tab_d[table]

    # ---- replay

    def observe(self, batch) -> tuple[np.ndarray, np.ndarray]:
        n = batch.row.size
        dims, collided = np.empty(n, np.int64), np.zeros(n, np.int64)
        if n == 0:
            return dims, collided
        bounds = np.flatnonzero(np.diff(batch.step)) + 1
        for lo, hi in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [n]))):
            step = int(batch.step[lo])
            self.close_gap(step)
            table, row = batch.table[lo:hi], batch.row[lo:hi]
            hot = self.hot_rows(table, row)
            cold = np.where(hot == 0, self.cold_rows(table, row), -1)
            plain = self.tab_cold[table] >= self.tab_rows[table]
            shared = self.cold_rows_shared.observe(table, row, np.where(plain, -1, cold))
            self.counts["hot_lookups"] += int((hot != 0).sum())
            collided[lo:hi] = shared
            dims[lo:hi] = np.where(shared == 1, 0, self.tab_d[table])
            grad = batch.grad[lo:hi] if (batch.grad is not None and self.has_grad) else None
            self._pending.append((np.array(table, np.int64), np.array(row, np.int64),
                                  None if grad is None else np.array(grad, np.float32)))
            self._pending_step = step
        return dims, collided

    def close_gap(self, step: int):
        """Insert the last step's lookups once a later step begins (module docstring); frees nothing."""
        if self._pending and step > self._pending_step:
            self._insert_pending()
        return None

    def _insert_pending(self) -> None:
        table = np.concatenate([p[0] for p in self._pending])
        row = np.concatenate([p[1] for p in self._pending])
        grads = [p[2] for p in self._pending]
        grad = np.concatenate(grads) if grads[0] is not None else np.zeros((0, self.k_max), np.float32)
        self._pending, self._pending_step = [], None
        scores = np.empty(row.size)
        lookup_scores(table, grad, self._chunks, scores)
        keys = self._keys(table, row) + 1
        for t in np.unique(table):   # table order; records in order within a table
            mine = np.flatnonzero(table == t)
            self.counts["demotions"] += sketch_decay(self.sk_cnt, self.sk_row, self.free, self.fq, self.tot,
                                                     self.threshold, self.cfg.cafe_decay)
            promoted = np.empty(mine.size, np.int64)
            self.counts["promotions"] += sketch_insert(self.sk_key, self.sk_cnt, self.sk_row, self.free, self.fq,
                                                       self.tot, self.threshold, keys[mine], scores[mine], promoted)
            got = np.flatnonzero(promoted)
            self._copies += zip(table[mine][got].tolist(), row[mine][got].tolist(), promoted[got].tolist())

    def finish(self):
        if self._pending:
            self._insert_pending()
        return super().finish()

    def summary(self) -> dict:
        out = super().summary()
        lookups = out["lookups"]
        out.update({"hot_hit_share": self.counts["hot_lookups"] / lookups if lookups else 0.0,
                    "promotions": self.counts["promotions"], "demotions": self.counts["demotions"],
                    "hot_bytes": self.hot_bytes, "cold_bytes": self.cold_bytes, "sketch_bytes": self.sketch_bytes})
        return out

    # ---- training: the hot table after the fields' tables in the model's embedding array

    @property
    def extra_rows(self) -> int:
        """Rows the trainer's embedding array needs beyond the fields' tables: the hot table."""
        return self.hot

    def _offsets(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.tab_rows)))

    def remap(self, table: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The stored row each lookup reads, relative to its table's first row: a hot row lies after every table."""
        table, row = np.asarray(table, np.int64), np.asarray(row, np.int64)
        hot = self.hot_rows(table, row)
        offsets = self._offsets()
        return np.where(hot != 0, offsets[-1] + hot - offsets[table], self.cold_rows(table, row))

    def initialise(self, emb: np.ndarray, offsets: np.ndarray, seed: int) -> None:
        """The hot table's initial rows: U(+-sqrt(1 / max rows_t)) (the artifact's), from a generator seeded by
        (seed, the number of tables)."""
        bound = float(np.sqrt(1.0 / self.tab_rows.max()))
        rng = np.random.default_rng([seed, len(self.tables)])
        values = rng.uniform(-bound, bound, size=(self.hot, emb.shape[1]))
        emb[offsets[-1]:offsets[-1] + self.hot] = values.astype(emb.dtype)

    def copies(self) -> tuple[np.ndarray, np.ndarray]:
        """(source rows, destination rows) of the embedding array to copy now: each promotion since the last
        call copies the feature's cold row into its hot row."""
        if not self._copies:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        table, row, hot = (np.array(x, np.int64) for x in zip(*self._copies))
        self._copies = []
        offsets = self._offsets()
        return offsets[table] + self.cold_rows(table, row), offsets[-1] + hot


def splitmix_array(values: np.ndarray) -> np.ndarray:
    """splitmix64 of every value (uint64), the finaliser of DESIGN 3.1."""
    out = np.empty(values.size, np.uint64)
    _splitmix_all(np.ascontiguousarray(values, np.int64), out)
    return out


@numba.njit(cache=True)
def _splitmix_all(values, out):
    for i in range(values.size):
        out[i] = splitmix64(values[i])
