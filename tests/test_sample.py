"""The shipped sample is exactly what traces/README.md says made it."""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fiitedsim.cli import SAMPLE_TRACE
from fiitedsim.traces.generate import GenerateConfig, generate
from fiitedsim.traces.source import TraceSource


def test_shipped_sample_is_reproducible(tmp_path: Path):
    cfg = GenerateConfig(profile="meta2021", tables=2, rows=20000, steps=300, batch=128, seed=7)
    report = generate(tmp_path / "sample.parquet", cfg)
    # the shipped file keeps 5cddf2c's list encoding of grad_norm, so that every replay of it reads a trace of an
    # earlier version; the writer now packs the norms (issue 20): the same records, the same table metadata
    new, shipped = (TraceSource(path) for path in (tmp_path / "sample.parquet", SAMPLE_TRACE))
    assert pq.read_schema(SAMPLE_TRACE).field("grad_norm").type == pa.list_(pa.float32())
    assert new.tables == shipped.tables
    for a, b in zip(new.batches(), shipped.batches(), strict=True):
        assert all(np.array_equal(value, getattr(b, name)) for name, value in vars(a).items())
    assert report.tvd < 0.01
