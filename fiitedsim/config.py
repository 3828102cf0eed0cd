"""The parameters of every command, validated at the boundary: tables and the replay's knobs
(`ReplayConfig`), the trainer's settings (`TrainConfig`) and a generated trace's (`GenerateConfig`).

Objects here hold parameters; the engine, the reference, the trainer and the
generator compute. Every knob of DESIGN.md has a field here and a CLI flag of
the same name, and the command line reads its defaults from these classes
(`fiitedsim/options.py`), so a default is written once. This module imports
nothing heavy: the command line loads it before it knows which command runs.
"""
from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .errors import InputError, require_file
from .parsing import TooDeep, loads_json, loads_toml

DEFAULT_DIM = 64
DEFAULT_CHUNK = 8
DEFAULT_DTYPE_BYTES = 4

#: Packed keys use 40 bits for the row and 16 for the table (see engine/hashmap.py).
MAX_ROWS = 1 << 40
#: Byte counts are int64 in the engine: a table's dense size, the tables' total and a budget stay below this.
MAX_BYTES = 1 << 62
#: Seeds are int64 where they are used (NumPy's generators, the trace's hashing): 0..2**63-1.
MAX_SEED = (1 << 63) - 1
#: Steps are int64 in a trace; an import's first step (`--step`) stays at most here, so the steps that follow it
#: (one per batch) stay inside int64 whatever the input's length.
MAX_FIRST_STEP = 1 << 62
#: A hash index's buckets are int32 in the engine's row state, so an index starts at most at 2**30 (and doubles).
MAX_INDEX_INITIAL = 1 << 30
#: `--page-bytes auto` (`resolve_layout`): the largest page it picks ...
AUTO_PAGE_MAX = 1 << 16
#: ... among those of which every pool's share of the budget holds at least this many, so that rounding a share
#: down to whole pages loses at most 1/16 of it.
AUTO_MIN_PAGES = 16
#: `--index-initial auto`: no index starts below this many buckets ...
AUTO_INDEX_MIN = 16
#: ... nor above this many (1 MiB of 16-byte entries): past it an index grows by doubling as its entries come, so
#: a huge table at a large budget does not reserve gigabytes for rows a trace may never touch.
AUTO_INDEX_MAX = 1 << 16
#: How `--page-bytes` and `--index-initial` ask for the layout derived from the budget (`resolve_layout`).
AUTO = "auto"
MAX_TABLES = 1 << 15
MAX_CHUNKS = 128
#: `fiitedsim generate --profile`: Zipf per table, or the reuse histograms of Meta's published datasets.
PROFILE_NAMES = ("zipf", "meta2021", "meta2022")


@dataclass(frozen=True)
class TableSpec:
    """One embedding table: `rows` virtual rows of `dim` floats in chunks of `chunk`."""

    name: str
    rows: int
    dim: int = DEFAULT_DIM
    chunk: int = DEFAULT_CHUNK
    dtype_bytes: int = DEFAULT_DTYPE_BYTES

    def __post_init__(self):
        where = f"table {self.name!r}"
        for key in ("rows", "dim", "chunk", "dtype_bytes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{where}: {key} must be an integer, got {value!r}")
        if not 1 <= self.rows < MAX_ROWS:
            raise InputError(f"{where}: rows must be between 1 and 2**40-1, got {self.rows}")
        if self.dim < 1 or self.chunk < 1:
            raise InputError(f"{where}: dim and chunk must be positive, got dim={self.dim}, chunk={self.chunk}")
        if self.dim % self.chunk:
            raise InputError(
                f"{where}: chunk C={self.chunk} does not divide dim D={self.dim}; pick C among the divisors of D")
        if self.dim // self.chunk > MAX_CHUNKS:
            raise InputError(f"{where}: at most {MAX_CHUNKS} chunks per row, got D/C={self.dim // self.chunk}")
        if self.dtype_bytes not in (1, 2, 4, 8):
            raise InputError(f"{where}: dtype_bytes must be 1, 2, 4 or 8, got {self.dtype_bytes}")
        if self.dense_bytes >= MAX_BYTES:
            raise InputError(f"{where}: its dense size rows x dim x dtype_bytes = {self.dense_bytes} bytes is beyond "
                             f"the {MAX_BYTES} (4 EiB) fiitedsim counts; lower rows or dim")

    @property
    def chunks(self) -> int:
        """K, the number of chunks per row."""
        return self.dim // self.chunk

    @property
    def chunk_bytes(self) -> int:
        return self.chunk * self.dtype_bytes

    @property
    def dense_bytes(self) -> int:
        """Size of the table stored dense at full dimension."""
        return self.rows * self.dim * self.dtype_bytes


def tables_from_json(data, source: str) -> list[TableSpec]:
    """Build table specs from the `fiitedsim.tables` JSON list (or a TOML `tables` array)."""
    if isinstance(data, dict) and "tables" in data:
        data = data["tables"]
    if not isinstance(data, list) or not data:
        raise InputError(f"{source}: expected a non-empty list of tables")
    if len(data) > MAX_TABLES:
        raise InputError(f"{source}: at most {MAX_TABLES} tables, got {len(data)}")
    allowed = {"name", "rows", "dim", "chunk", "dtype_bytes"}
    specs = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputError(f"{source}: table {i} is not an object")
        unknown = set(item) - allowed
        if unknown:
            raise InputError(f"{source}: table {i} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        missing = [key for key in ("rows", "dim", "chunk") if key not in item]
        if missing:  # no silent D = 64, C = 8: a table list says what the tables are (dtype_bytes defaults to 4)
            name = f" ({item['name']!r})" if isinstance(item.get("name"), str) else ""
            raise InputError(f"{source}: table {i}{name} has no {missing[0]!r}; every table needs rows, dim and "
                             "chunk (dtype_bytes defaults to 4)")
        specs.append(TableSpec(name=str(item.get("name", f"t{i}")), **{k: v for k, v in item.items() if k != "name"}))
    names = [t.name for t in specs]
    if len(set(names)) != len(names):
        raise InputError(f"{source}: table names must be unique, got {names}")
    return specs


def _unique_keys(pairs: list[tuple]) -> dict:
    """json object hook: a key given twice is an error (json keeps the last silently; TOML refuses it itself)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise InputError(f"key {key!r} is given twice in one object; keep one")
        out[key] = value
    return out


def parse_tables_json(text: str):
    """JSON of a table list, refusing an object with a repeated key."""
    return loads_json(text, object_pairs_hook=_unique_keys)


def load_tables_file(path: str | Path) -> list[TableSpec]:
    """Read a `--tables FILE` (JSON or TOML)."""
    path = Path(path)
    require_file(path, "tables file", "give a .json or .toml file")
    try:
        text = path.read_text()
        data = loads_toml(text) if path.suffix == ".toml" else parse_tables_json(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError, TooDeep) as exc:
        raise InputError(f"{path}: cannot parse tables file: {exc}") from None
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return tables_from_json(data, str(path))


def tables_to_json(tables: list[TableSpec]) -> str:
    return json.dumps([asdict(t) for t in tables], separators=(",", ":"))


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_budget(text: str, dense_bytes: int) -> int:
    """Budget in bytes from `0.1` (fraction of the dense size) or `2GiB` (bytes with a unit)."""
    raw = str(text).strip()
    if raw.startswith("-"):
        raise InputError(f"budget {raw!r} is negative: give a fraction like 0.1 or bytes like 2GiB")
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z%]*)", raw)
    if not match:
        raise InputError(f"budget {raw!r} is not a number: give a fraction like 0.1 or bytes like 2GiB")
    value, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(value):
        raise InputError(f"budget {raw!r} is not finite")
    if unit == "":
        if value > 100:
            raise InputError(f"budget {raw!r} as a fraction of the dense size is over 100x; "
                             "for bytes add a unit, e.g. 2GiB or 500MB")
        return int(math.floor(value * dense_bytes))
    if unit == "%":
        return int(math.floor(value / 100 * dense_bytes))
    if unit not in _UNITS:
        raise InputError(f"budget {raw!r}: unknown unit {unit!r}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")
    if value * _UNITS[unit] >= MAX_BYTES:
        raise InputError(f"budget {raw!r} is beyond the 4 EiB ({MAX_BYTES} bytes) fiitedsim counts; give a smaller "
                         "budget")
    return int(math.floor(value * _UNITS[unit]))


def _layout_value(value, option: str, number: str):
    """`--page-bytes` or `--index-initial` as given: "auto", or an integer (from a number or its digits)."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == AUTO:
            return AUTO
        if re.fullmatch(r"[0-9]+", text):
            return int(text)
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    elif isinstance(value, tuple):  # a resolved index_initial (checked by the caller)
        return value
    raise InputError(f"{option} must be {number} or auto, got {value!r}")


def _check_index_initial(value: int) -> None:
    if value < 1 or value & (value - 1):
        raise InputError(f"--index-initial must be a power of two, got {value}")
    if value > MAX_INDEX_INITIAL:
        raise InputError(f"--index-initial must be at most 2**30 = {MAX_INDEX_INITIAL} (an index holds at most "
                         f"2**31 buckets), got {value}")


@dataclass(frozen=True)
class KnobSpec:
    """What a `ReplayConfig` field that is a knob declares: the command line, the sweep files and the planning
    step read it from the field's metadata (`knobs()`), so a knob is declared once, here.

    Its option is `--NAME` (`knob_option`) on `replay`, its key NAME in a replay sweep's [sweep] table.
    """

    help: str
    #: the values it takes: "int", "float", "str", "bool", "int or auto" (`page_bytes`: "auto" or its digits) or
    #: "number or auto" (the field holds None for auto; the command line's default is "auto")
    kind: str
    #: what training does with it: "option" (`train` has the option and a data sweep the key), "sweep" (a data
    #: sweep's key only), None (training ignores it, or has its own: `train --interval` is TrainConfig's)
    train: str | None = None


def _knob(default, help: str, kind: str, train: str | None = None):
    return field(default=default, metadata={"knob": KnobSpec(help, kind, train)})


#: The metadata of a `ReplayConfig` field that no option sets (the planning step, or nothing, does).
NOT_A_KNOB = {"knob": None}


@dataclass(frozen=True)
class ReplayConfig:
    """Every knob of DESIGN.md sections 2-5, with its default; a knob's option is declared in its field's metadata
    (`KnobSpec`), a field that no option sets says so (`NOT_A_KNOB`)."""

    budget_bytes: int = field(default=0, metadata=NOT_A_KNOB)  # the planning step sets it per run from --budget
    gamma: float = _knob(0.999, "Utility decay factor per step.", "float", "option")
    interval: int = _knob(100, "Steps between pruning rounds.", "int")
    position_weight: float = _knob(
        1.0, "Weight w_k = position_weight**k of chunk k; below 1 favours leading chunks.", "float", "sweep")
    page_bytes: int | str = _knob(  # or "auto" (the default): `resolve_layout` picks it per budget
        AUTO, "Physical page size in bytes, or auto: per budget, the largest power of two up to 64 KiB of which every "
              "pool's share of the budget holds 16 pages.", "int or auto", "option")
    max_load: float = _knob(0.75, "Hash-index load factor that triggers doubling.", "float", "sweep")
    index_initial: int | str | tuple = _knob(  # or "auto"; resolved: a capacity per (table, k) (`resolve_layout`)
        AUTO, "Initial capacity of every hash index (a power of two), or auto: per index, the smallest power of two "
              "(at least 16) that holds at --max-load the chunks the budget can hold for it.", "int or auto", "option")
    index_entry_bytes: int = field(default=16, metadata=NOT_A_KNOB)        # the modelled size of an index entry
    meta_bytes_per_row: int | None = field(default=None, metadata=NOT_A_KNOB)  # None: 4 + 4*K per table
    allocator: str = _knob("lowest", "Slot allocator: lowest (lowest free address) or lifo.", "str", "sweep")
    budget_covers: str = _knob("payload", "What the budget covers: payload, or all (payload + index + metadata).",
                               "str", "sweep")
    report_every: int = _knob(100, "Steps per time-series window.", "int")
    count_accesses: bool = _knob(False, "With --importance, accesses also add w_k to utilities.", "bool")
    mde_exponent: float = _knob(  # `mde`: a row's dimension grows as (its lookup share) ** mde_exponent
        0.3, "mde: a row's dimension grows as (its share of its table's lookups) ** this, in [0, 1]; 0 gives every "
             "touched row the same dimension.", "float", "option")
    qr_operation: str = _knob(  # `qr`: a row's quotient and remainder vectors combine by product or sum
        "mult", "qr: how a row's quotient and remainder vectors combine: mult (element-wise product) or add (sum).",
        "str", "option")
    cafe_threshold: float | None = _knob(  # `cafe`: the sketch score that makes a feature hot (None: by the ratio)
        None, "cafe: the sketch score (normalised gradient norms, a field's scores summing to its lookups per step) "
              "that makes a feature hot; auto: by the budget's ratio, as the CAFE artifact's Criteo runs pair them "
              "(10 at 0.2-0.5 ... 500 below 0.005).", "number or auto", "option")
    cafe_cold_share: float | None = _knob(  # `cafe`: the budget's share of the cold hashed tables (None: by the ratio)
        None, "cafe: the budget's share of the cold hashed tables (the rest holds the hot table and its sketch); "
              "auto: by the budget's ratio, as the CAFE artifact's Criteo runs (0.7 at 0.5 ... 0.1 at 0.0005).",
        "number or auto", "option")
    cafe_decay: float = _knob(0.99, "cafe: the sketch's decay factor (the artifact's 0.99).", "float", "option")
    budget_label: str = field(default="", compare=False, metadata=NOT_A_KNOB)  # --budget's label of budget_bytes

    def __post_init__(self):
        object.__setattr__(self, "page_bytes", _layout_value(self.page_bytes, "--page-bytes",
                                                             "a positive number of bytes"))
        object.__setattr__(self, "index_initial", _layout_value(self.index_initial, "--index-initial",
                                                                "a power of two up to 2**30"))
        for name in ("interval", "page_bytes", "report_every", "index_entry_bytes"):
            if getattr(self, name) != AUTO and getattr(self, name) >= MAX_BYTES:  # the engine holds them as int64
                raise InputError(f"--{name.replace('_', '-')} must be below 2**62, got {getattr(self, name)}")
        if self.budget_bytes < 0:
            raise InputError(f"budget must not be negative, got {self.budget_bytes} bytes")
        if self.budget_bytes >= MAX_BYTES:
            raise InputError(f"budget of {self.budget_bytes} bytes is beyond the {MAX_BYTES} (4 EiB) fiitedsim "
                             "counts; give a smaller budget")
        if not (0.0 < self.gamma <= 1.0):
            raise InputError(f"--gamma must be in (0, 1], got {self.gamma}")
        if self.interval < 1:
            raise InputError(f"--interval must be at least 1 step, got {self.interval}")
        if not (0.0 < self.position_weight <= 1.0) or not math.isfinite(self.position_weight):
            raise InputError(f"--position-weight must be in (0, 1], got {self.position_weight}")
        if self.page_bytes != AUTO and self.page_bytes < 1:
            raise InputError(f"--page-bytes must be positive, got {self.page_bytes}")
        if not (0.0 < self.max_load < 1.0):
            raise InputError(f"--max-load must be in (0, 1), got {self.max_load}")
        if isinstance(self.index_initial, tuple):  # resolved: one capacity per (table, k)
            for caps in self.index_initial:
                for cap in caps:
                    _check_index_initial(cap)
        elif self.index_initial != AUTO:
            _check_index_initial(self.index_initial)
        if self.allocator not in ("lowest", "lifo"):
            raise InputError(f"--allocator must be 'lowest' or 'lifo', got {self.allocator!r}")
        if self.budget_covers not in ("payload", "all"):
            raise InputError(f"--budget-covers must be 'payload' or 'all', got {self.budget_covers!r}")
        if self.report_every < 1:
            raise InputError(f"--report-every must be at least 1 step, got {self.report_every}")
        if not (0.0 <= self.mde_exponent <= 1.0):
            raise InputError(f"--mde-exponent must be in [0, 1] (0: every touched row gets the same dimension, "
                             f"1: dimension proportional to lookups), got {self.mde_exponent}")
        if self.cafe_threshold is not None and not (math.isfinite(self.cafe_threshold) and self.cafe_threshold > 0):
            raise InputError(f"--cafe-threshold must be a positive number (or auto), got {self.cafe_threshold}")
        if self.cafe_cold_share is not None and not (0.0 < self.cafe_cold_share < 1.0):
            raise InputError(f"--cafe-cold-share must be in (0, 1) (the budget's share of the cold hashed tables; "
                             f"or auto), got {self.cafe_cold_share}")
        if not (0.0 < self.cafe_decay <= 1.0):
            raise InputError(f"--cafe-decay must be in (0, 1], got {self.cafe_decay}")
        if self.qr_operation not in ("mult", "add"):
            raise InputError(f"--qr-operation must be 'mult' (element-wise product) or 'add' (sum), got "
                             f"{self.qr_operation!r}")
        if self.meta_bytes_per_row is not None and self.meta_bytes_per_row < 0:
            raise InputError(f"meta_bytes_per_row must not be negative, got {self.meta_bytes_per_row}")

    def meta_bytes_for(self, table: TableSpec) -> int:
        return 4 + 4 * table.chunks if self.meta_bytes_per_row is None else self.meta_bytes_per_row

    @property
    def resolved(self) -> bool:
        """Whether the layout is concrete: a page size in bytes and every index's initial capacity."""
        return self.page_bytes != AUTO and self.index_initial != AUTO

    def index_capacity(self, t: int, k: int) -> int:
        """The initial capacity of hash index (table t, chunk position k), of a resolved config."""
        if isinstance(self.index_initial, tuple):
            return self.index_initial[t][k]
        if self.index_initial == AUTO:
            raise ValueError("index_initial 'auto' depends on the tables and the budget: resolve the config first "
                             "(config.resolve_layout)")
        return self.index_initial

    def with_budget(self, budget_bytes: int, label: str = "") -> "ReplayConfig":
        return replace(self, budget_bytes=budget_bytes, budget_label=label)


def knobs() -> dict[str, KnobSpec]:
    """The knobs: every `ReplayConfig` field that an option sets, by name, in field order (the order of a replay
    sweep's points.parquet columns)."""
    return {f.name: f.metadata["knob"] for f in fields(ReplayConfig) if f.metadata.get("knob") is not None}


def knob_option(name: str) -> str:
    """The command-line option of knob `name`: `--page-bytes` for `page_bytes`."""
    return "--" + name.replace("_", "-")


def knob_config(values: dict, train: bool = False) -> ReplayConfig:
    """The `ReplayConfig` of knob values as a command line gives them (other names in `values` are left out);
    `train`: only the knobs `fiitedsim train` has an option for (the others keep their defaults)."""
    given = {}
    for name, knob in knobs().items():
        if name not in values or (train and knob.train != "option"):
            continue
        value = values[name]
        given[name] = auto_or_number(value, knob_option(name)) if knob.kind == "number or auto" else value
    return ReplayConfig(**given)


def auto_or_number(value, option: str) -> float | None:
    """An option that is `auto` (None) or a number (`--cafe-threshold`, `--cafe-cold-share`)."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else float(value)
    text = str(value).strip()
    if text.lower() == AUTO:
        return None
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{option} {value!r}: give auto or a number") from None
    if not math.isfinite(number):
        raise InputError(f"{option} {value!r}: give auto or a finite number")
    return number


def check_tables_fit_pages(tables: list[TableSpec], cfg: ReplayConfig) -> None:
    """Every chunk must fit in a page, or no slot could ever be allocated; the dense sizes must be countable."""
    total = sum(t.dense_bytes for t in tables)
    if total >= MAX_BYTES:
        raise InputError(f"the tables' dense size is {total} bytes, beyond the {MAX_BYTES} (4 EiB) fiitedsim "
                         "counts; lower rows or dim")
    cfg = resolve_layout(tables, cfg)
    for t in tables:
        if t.chunk_bytes > cfg.page_bytes:
            raise InputError(f"table {t.name!r}: a chunk of {t.chunk_bytes} bytes does not fit a page of "
                             f"{cfg.page_bytes} bytes; raise --page-bytes")


def dense_bytes(tables: list[TableSpec]) -> int:
    return sum(t.dense_bytes for t in tables)


@dataclass(frozen=True)
class PoolLayout:
    """Tables grouped by chunk byte size: one physical pool each (DESIGN 3.2)."""

    chunk_bytes: tuple[int, ...]      # per pool, ascending
    pool_of_table: tuple[int, ...]    # per table
    dense_bytes: tuple[int, ...]      # per pool: full dense size of its tables
    slots_per_page: tuple[int, ...]   # per pool

    @classmethod
    def of(cls, tables: list[TableSpec], page_bytes: int) -> "PoolLayout":
        sizes = sorted({t.chunk_bytes for t in tables})
        pool_of = tuple(sizes.index(t.chunk_bytes) for t in tables)
        dense = tuple(sum(t.dense_bytes for t, p in zip(tables, pool_of) if p == i) for i in range(len(sizes)))
        return cls(tuple(sizes), pool_of, dense, tuple(page_bytes // s for s in sizes))

    def page_caps(self, budget_bytes: int, overhead_bytes: int, page_bytes: int) -> list[int]:
        """Pages each pool may map: the available budget split by dense share (docs/semantics.md)."""
        avail = max(0, budget_bytes - overhead_bytes)
        total = sum(self.dense_bytes)
        return [(avail * d // total) // page_bytes for d in self.dense_bytes]


def auto_page_bytes(tables: list[TableSpec], budget_bytes: int) -> int:
    """`--page-bytes auto`: the page size a budget gets (docs/semantics.md "Layout").

    The budget is split across pools by dense share as `PoolLayout.page_caps` does, with nothing taken for
    index or metadata (the layout is fixed before the run, whatever `--budget-covers`). Among the powers of two
    from the largest chunk up to AUTO_PAGE_MAX: the largest of which every pool's share holds AUTO_MIN_PAGES
    pages (small pages waste little of a small budget to rounding down to whole pages, large ones keep the page
    bookkeeping of a large budget small); else the largest of which every share holds one page; else the
    smallest power of two that fits the largest chunk (the budget check then names the smallest workable budget).
    """
    largest_chunk = max(t.chunk_bytes for t in tables)
    smallest = 1 << (largest_chunk - 1).bit_length()  # the smallest power of two >= the largest chunk
    shares = PoolLayout.of(tables, 1).page_caps(budget_bytes, 0, 1)  # bytes per pool
    for pages in (AUTO_MIN_PAGES, 1):
        page = AUTO_PAGE_MAX
        while page >= smallest:
            if all(share // page >= pages for share in shares):
                return page
            page //= 2
    return smallest


def auto_index_capacity(entries: int, max_load: float) -> int:
    """`--index-initial auto` of an index that holds at most `entries` entries: the smallest power of two, at
    least AUTO_INDEX_MIN, whose index takes them all without doubling (DESIGN 3.1 doubles before an insert when
    (count + 1) > max_load * capacity, so `entries <= max_load * capacity`), at most AUTO_INDEX_MAX."""
    cap = AUTO_INDEX_MIN
    while entries > max_load * cap and cap < AUTO_INDEX_MAX:
        cap *= 2
    return cap


def auto_index_capacities(tables: list[TableSpec], budget_bytes: int, page_bytes: int,
                          max_load: float) -> tuple[tuple[int, ...], ...]:
    """`--index-initial auto`: the initial capacity of every index (t, k), per table a tuple over k.

    Pool p holds at most N_p = page_cap_p * slots_per_page_p chunks (`PoolLayout.page_caps` with nothing taken
    for index or metadata); table t's share of them is N_t = N_p * dense_t // dense_p, the split by dense size
    that divides the budget between pools. A row with chunk k resident holds chunks 0..k too (resident
    prefixes), so table t's share holds at most n = min(rows_t, N_t // (k + 1)) entries of index (t, k); it
    starts at `auto_index_capacity(n)`. A table that takes more than its share of its pool grows its indices
    by doubling; a table alone in its pool never does (with `--budget-covers payload`) unless its capacity
    reached AUTO_INDEX_MAX.
    """
    layout = PoolLayout.of(tables, page_bytes)
    caps = layout.page_caps(budget_bytes, 0, page_bytes)
    chunks = [cap * spp for cap, spp in zip(caps, layout.slots_per_page)]
    memo: dict[int, int] = {}
    out = []
    for t, pool in zip(tables, layout.pool_of_table):
        share = chunks[pool] * t.dense_bytes // layout.dense_bytes[pool]
        per_k = []
        for k in range(t.chunks):
            n = min(t.rows, share // (k + 1))
            if n not in memo:
                memo[n] = auto_index_capacity(n, max_load)
            per_k.append(memo[n])
        out.append(tuple(per_k))
    return tuple(out)


def resolve_layout(tables: list[TableSpec], cfg: ReplayConfig) -> ReplayConfig:
    """`cfg` with a concrete layout for `tables` at its budget: `page_bytes` in bytes (`auto_page_bytes` when
    "auto") and `index_initial` a number or, when "auto", a capacity per (table, k) (`auto_index_capacities`).

    The one resolution the engine, the reference, the planner's checks and the summaries' budgets all call,
    so they agree. Resolve after setting the budget (`with_budget`): the layout depends on it. A resolved
    config comes back as it is.
    """
    if isinstance(cfg.index_initial, tuple) and (len(cfg.index_initial) != len(tables) or any(
            len(caps) != t.chunks for caps, t in zip(cfg.index_initial, tables))):
        raise ValueError("the config's index capacities were resolved for other tables")
    if cfg.resolved:
        return cfg
    page = auto_page_bytes(tables, cfg.budget_bytes) if cfg.page_bytes == AUTO else cfg.page_bytes
    index = cfg.index_initial
    if index == AUTO:
        index = auto_index_capacities(tables, cfg.budget_bytes, page, cfg.max_load)
    return replace(cfg, page_bytes=page, index_initial=index)


def budget_name(cfg: ReplayConfig) -> str:
    """How errors name the budget: its label as the user gave it, else its bytes."""
    return cfg.budget_label or f"{cfg.budget_bytes}B"


def check_budget_workable(tables: list[TableSpec], cfg: ReplayConfig) -> None:
    """A paged policy needs room for at least one page in every pool, or nothing can ever be stored."""
    label, budget_bytes = budget_name(cfg), cfg.budget_bytes
    cfg = resolve_layout(tables, cfg)
    layout = PoolLayout.of(tables, cfg.page_bytes)
    caps = layout.page_caps(budget_bytes, 0, cfg.page_bytes)
    if min(caps) < 1:
        total = sum(layout.dense_bytes)
        need = max(-(-cfg.page_bytes * total // d) for d in layout.dense_bytes)
        raise InputError(f"budget {label} ({budget_bytes} bytes) leaves no room for one {cfg.page_bytes}-byte page "
                         f"in every pool; the smallest workable budget is {need} bytes "
                         f"({need / total:.6g} of the dense size), or lower --page-bytes")


#: `fiitedsim train --fields/--rows` (and a data sweep's `fields`/`rows`): synthetic fields, rows per table.
TRAIN_FIELDS, TRAIN_ROWS = 26, 100_000


@dataclass(frozen=True)
class TrainConfig:
    """Settings of `fiitedsim train` (the model, the optimizers and the schedule; train/loop.py uses them)."""

    dim: int = 16
    chunk: int = 4
    bottom: tuple[int, ...] = (128, 64)
    top: tuple[int, ...] = (256, 128)
    batch: int = 2048
    epochs: int = 1
    steps: int | None = None          # if set, wins over epochs
    lr_emb: float = 0.05              # row-wise Adagrad
    lr_mlp: float = 1e-3              # Adam
    eval_every: int | None = None     # steps between evaluations (and one at the end); None: about 20 in all
    interval: int | None = None       # the engine's pruning interval; None: about 10 rounds (`schedule`)
    eval_fraction: float = 0.1        # the last 10% of the samples, in time order
    seed: int = 0
    size_from: float = 1.0            # policies sized before training see the first size_from of the training split

    def __post_init__(self):
        object.__setattr__(self, "seed", check_seed(self.seed))


def check_seed(value: int, flag: str = "--seed") -> int:
    """A seed as an int in 0..MAX_SEED (`-1` or `2**64` overflowed where it was used)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{flag} must be an integer, got {value!r}")
    if not 0 <= value <= MAX_SEED:
        raise InputError(f"{flag} must be between 0 and 2**63-1, got {value}")
    return int(value)


def check_first_step(step: int) -> int:
    """An import's `--step`: 0..MAX_FIRST_STEP (2**63 - 3 wrapped the steps after it around to negative ones)."""
    if not 0 <= step <= MAX_FIRST_STEP:
        raise InputError(f"--step must be between 0 and 2**62 (a trace's steps are 64-bit integers), got {step}")
    return step


def _generate_flag(field_name: str) -> str:
    """The `fiitedsim generate` option of a GenerateConfig field: `tables` (a count) is `--table-count`, since
    every other `--tables` names a table-list file."""
    return "--table-count" if field_name == "tables" else f"--{field_name}"


@dataclass
class GenerateConfig:
    """Arguments of `fiitedsim generate` (one field per CLI option; `tables` is `--table-count`)."""

    profile: str = "zipf"
    alpha: float = 1.05
    tables: int = 4
    rows: int = 1_000_000
    steps: int = 1000
    batch: int = 4096
    dim: int = DEFAULT_DIM
    chunk: int = DEFAULT_CHUNK
    drift: float = 0.0
    grad: bool = True
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.profile, str) or self.profile not in PROFILE_NAMES:
            raise InputError(f"unknown --profile {self.profile!r}; choose one of {', '.join(PROFILE_NAMES)}")
        for key in ("tables", "rows", "steps", "batch", "dim", "chunk", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"{_generate_flag(key)} must be an integer, got {value!r}")
            setattr(self, key, int(value))
        for key in ("tables", "rows", "steps", "batch", "dim", "chunk"):
            if getattr(self, key) < 1:
                raise InputError(f"{_generate_flag(key)} must be positive, got {getattr(self, key)}")
        if self.tables > MAX_TABLES:
            raise InputError(f"--table-count must be at most {MAX_TABLES}, got {self.tables}")
        if self.rows >= MAX_ROWS:
            raise InputError(f"--rows must be below 2**40, got {self.rows}")
        if self.dim % self.chunk:
            raise InputError(f"--chunk {self.chunk} does not divide --dim {self.dim}; pick a divisor of the dim")
        check_seed(self.seed)
        for key in ("alpha", "drift"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise InputError(f"--{key} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise InputError(f"--{key} must be finite, got {value}")
            setattr(self, key, float(value))
        if self.profile == "zipf" and self.alpha <= 0:
            raise InputError(f"--alpha must be positive for the zipf profile, got {self.alpha}")
        if self.alpha < 0:
            raise InputError(f"--alpha must not be negative, got {self.alpha}")
        if self.alpha > 20:
            raise InputError(f"--alpha must be at most 20, got {self.alpha}")
        if not 0.0 <= self.drift < 1.0:
            raise InputError(f"--drift must be in [0, 1) (a fraction of the rows per step), got {self.drift}")
        if not isinstance(self.grad, (bool, np.bool_)):
            raise InputError(f"grad must be true or false, got {self.grad!r}")
        self.grad = bool(self.grad)
        if self.profile != "zipf" and self.rows < self.batch:
            raise InputError(f"--profile {self.profile} needs --rows >= --batch (a batch may hold up to "
                             f"--batch distinct rows), got rows={self.rows}, batch={self.batch}")
        TableSpec("t0", self.rows, self.dim, self.chunk)  # any remaining TableSpec rule

    @property
    def chunks(self) -> int:
        return self.dim // self.chunk

    @property
    def lookups(self) -> int:
        return self.steps * self.tables * self.batch

    def table_specs(self) -> list[TableSpec]:
        return [TableSpec(f"t{i}", self.rows, self.dim, self.chunk, 4) for i in range(self.tables)]
