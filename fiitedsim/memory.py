"""Refuse, before any work, knob values whose up-front allocations this machine cannot hold.

A replay's memory otherwise grows with the rows it sees, but a few knobs size
arrays at the start, whatever the trace: `--index-initial` (every (table,
chunk) hash index starts at that capacity, or with `auto` at the capacity
the budget can fill) and `--page-bytes` (the engine
keeps a free-slot bitmap per page, and starts with room for 16 pages), and the
trainer's tables (`--rows` x `--fields` x `--dim`). A huge value used to end
in a MemoryError traceback (or an overflow); here it is one line with the
size it would need and the memory there is.

The limit is the smallest of the physical memory, the address-space limit
(RLIMIT_AS) and a cgroup memory limit (containers), when known. An address-space
limit below what the libraries reserve at start-up is refused before any work
(`check_address_space`).
"""
from __future__ import annotations

import math
import os
import resource
from pathlib import Path

from .config import PoolLayout, ReplayConfig, TableSpec, resolve_layout
from .errors import InputError


def memory_limit() -> int | None:
    """Bytes this process can hope to allocate: physical memory, RLIMIT_AS and the cgroup limit, the smallest."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY and soft > 0:
        limits.append(soft)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit
            limits.append(int(text))
    return min(limits) if limits else None


def min_address_space() -> int:
    """The address space (`ulimit -v`) fiitedsim needs to run at all: its libraries reserve address space ahead of
    use (thread stacks, allocator arenas per core: a small replay peaks near 3 GiB of it on 2 cores, while its
    resident memory stays below 300 MiB). Measured, with room: 4 GiB and 128 MiB per CPU core."""
    return 4 * 2**30 + 128 * 2**20 * (os.cpu_count() or 1)


#: The address space an HTML report needs: its chart bundle comes from vl-convert's JavaScript engine (V8), which
#: reserves a 64 GiB heap cage at start and aborts the process below that (measured: 66.8 GiB fails, 68 works).
REPORT_ADDRESS_SPACE = 68 * 2**30


def check_address_space(need: int | None = None, what: str = "fiitedsim needs to start") -> None:
    """Refuse, before any work, an address-space limit below `need` (default `min_address_space`): there the
    libraries failed in their own ways (an abort with thousands of allocator lines, a hang in the BLAS start-up,
    V8's abort writing a report) instead of one line."""
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    need = min_address_space() if need is None else need
    if soft != resource.RLIM_INFINITY and 0 < soft < need:
        raise InputError(f"the address-space limit (ulimit -v) is {format_bytes(soft)}, below the "
                         f"{format_bytes(need)} {what} (libraries reserve address space ahead of use; far less of it "
                         "is used); raise the limit, or limit memory with a cgroup instead")


def check_report_address_space() -> None:
    check_address_space(REPORT_ADDRESS_SPACE, "that writing an HTML report needs")


def format_bytes(n: int) -> str:
    """1536 -> '1.5 KiB', 2**40 -> '1 TiB' (plain numbers, no numpy reprs)."""
    for unit, size in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def check_fits(need: int, what: str, fix: str) -> None:
    """An InputError if `need` bytes are more than `memory_limit()`."""
    limit = memory_limit()
    if limit is not None and need > limit:
        raise InputError(f"{what} would take {format_bytes(need)} of memory at the start, more than the "
                         f"{format_bytes(limit)} this machine has; {fix}")


def engine_upfront_bytes(tables: list[TableSpec], cfg: ReplayConfig) -> tuple[int, int]:
    """(index bytes, page bookkeeping bytes) that `engine.EngineState` allocates before the first record."""
    from .engine.state import INDEX_MIN, INITIAL_PAGES

    cfg = resolve_layout(tables, cfg)
    caps = sum(cfg.index_capacity(t, k) for t, spec in enumerate(tables) for k in range(spec.chunks))
    index = max(4 * caps, INDEX_MIN) * 8                        # one 8-byte entry per bucket, room for doubling
    layout = PoolLayout.of(tables, cfg.page_bytes)
    spp = max(layout.slots_per_page)
    per_page = (math.ceil(spp / 64) + 1) * 8                     # the free-slot bitmap and its hint word
    if cfg.allocator == "lifo":
        per_page += 2 * spp * 2 * 8 + spp * 8  # the free-slot stack and the slot stamps
    return index, len(layout.chunk_bytes) * INITIAL_PAGES * per_page


def check_engine_memory(tables: list[TableSpec], cfg: ReplayConfig) -> None:
    """The paged policies' (fiited, row-prune) start-up arrays, for `--index-initial` and `--page-bytes` (the
    resolved values, `config.resolve_layout`, which the messages name)."""
    cfg = resolve_layout(tables, cfg)
    index, pages = engine_upfront_bytes(tables, cfg)
    pairs = sum(t.chunks for t in tables)
    if isinstance(cfg.index_initial, tuple):  # auto: a capacity per index
        caps = [cap for per_k in cfg.index_initial for cap in per_k]
        check_fits(index, f"--index-initial auto: the {pairs} hash indices (one per table and chunk position) of "
                          f"up to {max(caps)} buckets, {sum(caps)} in all,", "give --index-initial a number, e.g. "
                          "1024 (indices grow by themselves)")
    else:
        check_fits(index, f"--index-initial {cfg.index_initial}: the {pairs} hash indices (one per table and chunk "
                          f"position) of {cfg.index_initial} buckets each", "lower --index-initial (or leave it at "
                          "auto; indices grow by themselves)")
    spp = max(PoolLayout.of(tables, cfg.page_bytes).slots_per_page)
    from .engine.state import INITIAL_PAGES
    check_fits(pages, f"--page-bytes {cfg.page_bytes}: the bookkeeping of the first {INITIAL_PAGES} pages of "
                      f"{spp} chunk slots each", "lower --page-bytes (or leave it at auto)")


def train_upfront_bytes(fields: int, rows: int, dim: int, batch: int, synthetic_samples: int | None) -> int:
    """What `fiitedsim train` allocates whatever the data's length: the model's embedding tables with their
    optimizer state and one batch's activations, and for synthetic data the planted teacher and the samples."""
    table_rows = fields * rows
    model = table_rows * (dim * 4 + 8)                          # float32 embeddings, Adagrad accumulator, marker
    vectors = fields + 1
    per_sample = (3 * vectors * dim + 2 * vectors * fields // 2 + 2 * fields * dim) * 4 + 512 * 4
    need = model + batch * per_sample
    if synthetic_samples is not None:
        need += fields * rows * dim * 4 + synthetic_samples * (fields * 4 + 13 * 4 + 16)
    return need


def check_train_memory(fields: int, rows: int, dim: int, batch: int, synthetic_samples: int | None) -> None:
    need = train_upfront_bytes(fields, rows, dim, batch, synthetic_samples)
    what = (f"training {fields} tables of {rows:,} rows x {dim} dims (batches of {batch:,}"
            + (f", {synthetic_samples:,} synthetic samples)" if synthetic_samples is not None else ")"))
    check_fits(need, what, "lower --rows, --dim, --batch or --samples")


def check_train_data_memory(kind: str, fields: int, sparse: list[str], rows: int | None, dim: int, batch: int,
                            samples: int | None) -> None:
    """`check_train_memory` for a data spec of kind synthetic, movielens, criteo, parquet or csv, before it is
    loaded. `rows` None (vocabulary tables): synthetic values are drawn on `TRAIN_ROWS`-row tables, at most the
    size of its vocabulary tables; a file's vocabulary is checked once read (`check_model_memory`)."""
    from .config import TRAIN_ROWS
    n_fields = {"synthetic": fields, "criteo": 26, "movielens": 7}.get(kind, max(1, len(sparse)))
    synthetic_samples = (2_000_000 if samples is None else samples) if kind == "synthetic" else None
    if rows is None:
        if kind != "synthetic":
            return
        rows = TRAIN_ROWS
    if min(n_fields, rows, dim, batch) < 1 or (synthetic_samples is not None and synthetic_samples < 1):
        return  # refused with its own message by the data loader or the trainer's settings
    known = synthetic_samples if synthetic_samples is not None else samples
    # a batch is never larger than the data; a file's length is unknown until it is read
    check_train_memory(n_fields, rows, dim, min(batch, known) if known is not None else 1, synthetic_samples)


def check_model_memory(where: str, table_rows, dim: int) -> None:
    """The model's vocabulary tables, once their sizes are known (`--rows auto`): embeddings and optimizer state."""
    rows = sum(int(n) for n in table_rows)
    check_fits(rows * (dim * 4 + 8), f"{where}: training vocabulary tables of {rows:,} rows in all x {dim} dims",
               "give --rows N to hash every field into N rows instead, or fewer --samples")
