"""Docs that must match their sources."""
from pathlib import Path

import pytest

from fiitedsim.policies.base import SUMMARY_KEYS

ROOT = Path(__file__).resolve().parents[1]


def test_design_copy_matches_the_shared_spec(shared_data):
    shared = shared_data.parent / "DESIGN.md"
    if not shared.is_file():
        pytest.skip("../shared/DESIGN.md is absent")
    assert (ROOT / "docs" / "DESIGN.md").read_text() == shared.read_text(), \
        "docs/DESIGN.md is stale: copy the shared DESIGN.md over it (and update both implementations)"


def test_readme_documents_every_summary_key():
    readme = (ROOT / "README.md").read_text()
    missing = [key for key in SUMMARY_KEYS if f"`{key}`" not in readme]
    assert not missing, f"README's summary.json table lacks {missing}"


def test_readme_documents_every_train_option():
    import typer

    from fiitedsim.cli import app

    command = typer.main.get_command(app).commands["train"]
    options = [opt for param in command.params for opt in param.opts if opt.startswith("--") and opt != "--help"]
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Training with pruned embeddings"):readme.index("### `train_summary.json`")]
    missing = [opt for opt in options if f"`{opt}" not in section]
    assert len(options) > 15 and not missing, f"README's `fiitedsim train` table lacks {missing}"


def test_readme_documents_every_train_summary_key():
    from fiitedsim.train.runner import CURVE_COLUMNS, RUN_KEYS

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### `train_summary.json`"):readme.index("## Performance")]
    missing = [key for key in (*RUN_KEYS, *CURVE_COLUMNS, "teacher_auc", "config") if f"`{key}`" not in section]
    assert not missing, f"README's train_summary.json section lacks {missing}"
