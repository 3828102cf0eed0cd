"""Docs that must match their sources."""
from pathlib import Path

import pytest

from fiitedsim.policies.base import SUMMARY_KEYS

ROOT = Path(__file__).resolve().parents[1]


def test_design_copy_matches_the_shared_spec(shared_data):
    shared = shared_data.parent / "DESIGN.md"
    if not shared.is_file():
        pytest.skip(f"{shared} is absent")
    assert (ROOT / "docs" / "DESIGN.md").read_text() == shared.read_text(), \
        "docs/DESIGN.md is stale: copy the shared DESIGN.md over it (and update both implementations)"


def test_readme_documents_every_summary_key():
    readme = (ROOT / "README.md").read_text()
    missing = [key for key in SUMMARY_KEYS if f"`{key}`" not in readme]
    assert not missing, f"README's summary.json table lacks {missing}"
