"""The shipped sample is exactly what traces/README.md says made it."""
from pathlib import Path

from fiitedsim.cli import SAMPLE_TRACE
from fiitedsim.generate import GenerateConfig, generate


def test_shipped_sample_is_reproducible(tmp_path: Path):
    cfg = GenerateConfig(profile="meta2021", tables=2, rows=20000, steps=300, batch=128, seed=7)
    report = generate(tmp_path / "sample.parquet", cfg)
    assert (tmp_path / "sample.parquet").read_bytes() == SAMPLE_TRACE.read_bytes()
    assert report.tvd < 0.01
