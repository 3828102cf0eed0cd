"""Import one batch of FBGEMM table-batched-embedding requests (Meta's `dlrm_datasets` format).

FBGEMM's TBE benchmarks (`--requests_data_file`) and the files of
github.com/facebookresearch/dlrm_datasets (`fbgemm_t856_bs65536_N.pt`, ...)
hold one training batch as a pickled tuple of three integer tensors, read
with `indices, offsets, lengths = torch.load(path)`:

* `lengths`, shape (T, B): the pooling factor of table t in sample b;
* `offsets`, shape (T*B + 1,): CSR offsets, table-major: the lookups of table
  t in sample b are `indices[offsets[t*B + b] : offsets[t*B + b + 1]]`, so
  `diff(offsets) == lengths.flatten()`;
* `indices`, flat int64: the rows looked up.

One file is one step (`step`, default 0); the lookups keep the file's order
(table-major, then sample, then position in the bag). Tables are named
t0..t{T-1}; a table's rows are max(index)+1 unless `rows` or a tables file
gives them. Some copies of these files are gzip-compressed; that is detected
from the magic bytes (and decompressed in memory; plain files are
memory-mapped). PyTorch is needed only here (`pip install 'fiitedsim[fbgemm]'`);
`torch.load` runs with `weights_only=True`, so a file cannot execute code.
"""
from __future__ import annotations

import gzip
import io
import warnings

import numpy as np

from ...config import check_first_step
from ...errors import InputError
from .common import ImportReport, Layout, Progress, check_input, check_rows_fit, one_line, tables_from_file, write_trace

#: lookups per written row group
CHUNK = 1 << 20


def _torch():
    try:
        import torch
    except ImportError:
        raise InputError("importing fbgemm files needs PyTorch, which is not installed: "
                         "pip install 'fiitedsim[fbgemm]'") from None
    return torch


def _load(torch, path, compressed: bool):
    """`torch.load` of a plain or gzip-compressed file, memory-mapped where the format allows."""
    if compressed:
        return torch.load(io.BytesIO(gzip.decompress(path.read_bytes())), map_location="cpu", weights_only=True)
    try:  # memory-mapped: a multi-GB file is paged in as it is read, not copied into memory
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # files in torch's legacy (non-zip) format cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def load(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, offsets, lengths) as int64 numpy arrays, checked for the shapes and consistency above."""
    torch = _torch()
    path = check_input(path, "fbgemm file")
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    try:
        with warnings.catch_warnings():  # torch's UserWarnings (a legacy pickle protocol) before our one line
            warnings.simplefilter("ignore")
            data = _load(torch, path, compressed)
    except Exception as exc:  # torch raises many types here (UnpicklingError, RuntimeError, EOFError, zip errors)
        why = one_line(exc)
        if why.startswith("Weights only load failed"):  # torch's text goes on to advise loading it unsafely
            why = ("it holds objects other than tensors, or pickle instructions the safe loader refuses "
                   "(fiitedsim loads .pt files with weights_only, so that a file cannot run code)")
        raise InputError(f"{path}: not a readable PyTorch .pt file (corrupt, truncated or another format): "
                         f"{why[:300]}") from None
    if not isinstance(data, (tuple, list)) or len(data) != 3 or not all(isinstance(x, torch.Tensor) for x in data):
        got = type(data).__name__ + (f" of {len(data)}" if isinstance(data, (tuple, list)) else "")
        raise InputError(f"{path}: expected a tuple of 3 tensors (indices, offsets, lengths), got {got}")
    names = ("indices", "offsets", "lengths")
    for name, tensor in zip(names, data):
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            raise InputError(f"{path}: {name} has dtype {tensor.dtype}; expected an integer tensor")
    indices, offsets, lengths = (x.detach().cpu().numpy().astype(np.int64, copy=False) for x in data)
    if lengths.ndim != 2:
        raise InputError(f"{path}: lengths has shape {tuple(lengths.shape)}; expected (tables, batch size)")
    if indices.ndim != 1 or offsets.ndim != 1:
        raise InputError(f"{path}: indices and offsets must be 1-D, got shapes {tuple(indices.shape)} "
                         f"and {tuple(offsets.shape)}")
    t, b = lengths.shape
    if offsets.size != t * b + 1:
        raise InputError(f"{path}: offsets has {offsets.size} entries but lengths is {t} x {b}; expected "
                         f"T*B+1 = {t * b + 1}")
    if offsets[0] < 0 or offsets[-1] > indices.size:
        raise InputError(f"{path}: offsets run from {offsets[0]} to {offsets[-1]} but indices has {indices.size} "
                         "entries")
    bad = np.flatnonzero(np.diff(offsets) != lengths.reshape(-1))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{path}: offsets and lengths disagree at table {i // b}, sample {i % b}: offsets give "
                         f"{int(offsets[i + 1] - offsets[i])} lookups, lengths {int(lengths.reshape(-1)[i])}")
    used = indices[offsets[0]:offsets[-1]]
    if used.size and used.min() < 0:
        p = int(np.flatnonzero(used < 0)[0])
        raise InputError(f"{path}: indices[{int(offsets[0]) + p}] = {int(used[p])} is negative")
    return used, offsets - offsets[0], lengths


def import_fbgemm(path, output, step: int = 0, rows: int | None = None, tables_file=None,
                  layout: Layout = Layout(), progress: Progress | None = None) -> ImportReport:
    """Convert one .pt batch file to a trace whose lookups all have step `step`."""
    check_first_step(step)
    if rows is not None and tables_file is not None:
        raise InputError("give --rows or --tables, not both")
    indices, offsets, lengths = load(path)
    t_count, batch = lengths.shape
    bounds = offsets[::batch]  # first lookup of each table, then the end
    max_row = np.full(t_count, -1, np.int64)
    nonempty = np.flatnonzero(bounds[1:] > bounds[:-1])
    if nonempty.size:
        max_row[nonempty] = np.maximum.reduceat(indices, bounds[nonempty])
    if tables_file is not None:
        tables = tables_from_file(tables_file, t_count, f"{path} (lengths is {t_count} x {batch})")
    else:
        tables = [layout.table(f"t{i}", rows if rows is not None else max(int(max_row[i]) + 1, 1))
                  for i in range(t_count)]
    check_rows_fit(tables, max_row, path)

    def chunks():
        total = indices.size
        for start in range(0, total, CHUNK):
            end = min(start + CHUNK, total)
            table = np.searchsorted(bounds, np.arange(start, end), side="right") - 1
            yield np.full(end - start, step, np.int64), table.astype(np.int32), indices[start:end]
            if progress:
                progress(end, total)
    return write_trace(output, tables, chunks())
