"""Docs that must match their sources."""
import re
from pathlib import Path

import pytest
import typer

from fiitedsim.policies.base import SUMMARY_KEYS

ROOT = Path(__file__).resolve().parents[1]
#: The prose docs a reader walks (docs/cli.md is generated; DESIGN.md and engine.md describe no options).
PROSE = ("README.md", "docs/usage.md", "docs/formats.md", "docs/sweeps.md", "docs/semantics.md")


def _section(text: str, start: str, end: str | None = None) -> str:
    return text[text.index(start):text.index(end) if end else len(text)]


def _options() -> set[str]:
    """Every --option of every command."""
    from fiitedsim.cli import app

    found: set[str] = set()

    def walk(command):
        found.update(o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--"))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)
    walk(typer.main.get_command(app))
    return found


def test_design_copy_matches_the_shared_spec(shared_data):
    shared = shared_data.parent / "DESIGN.md"
    if not shared.is_file():
        pytest.skip("../shared/DESIGN.md is absent")
    assert (ROOT / "docs" / "DESIGN.md").read_text() == shared.read_text(), \
        "docs/DESIGN.md is stale: copy the shared DESIGN.md over it (and update both implementations)"


def test_cli_reference_is_generated_from_the_commands():
    """docs/cli.md documents every command and option with its default: it is what the command line says."""
    from fiitedsim.clidoc import markdown

    expected = markdown()
    assert (ROOT / "docs" / "cli.md").read_text() == expected, \
        "docs/cli.md is stale: python -m fiitedsim.clidoc > docs/cli.md"
    missing = [opt for opt in _options() if f"`{opt}`" not in expected]
    assert len(_options()) > 50 and not missing, missing


def test_prose_names_only_options_that_exist():
    """An option the docs mention but no command has (a renamed or removed one) is a stale sentence."""
    options = _options() | {"--help"}
    stale = {path: sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", (ROOT / path).read_text())) - options)
             for path in PROSE}
    assert not any(stale.values()), stale


def test_formats_document_every_summary_key():
    formats = _section((ROOT / "docs" / "formats.md").read_text(), "## `summary.json`", "## `train_summary.json`")
    missing = [key for key in SUMMARY_KEYS if f"`{key}`" not in formats]
    assert not missing, f"docs/formats.md's summary.json table lacks {missing}"


def test_formats_document_every_train_summary_key():
    from fiitedsim.train.runner import CURVE_COLUMNS, RUN_KEYS

    formats = _section((ROOT / "docs" / "formats.md").read_text(), "## `train_summary.json`")
    config = ("rows", "table_rows", "table_names", "size_from", "sizing_window_samples", "unseen_share", "drift")
    missing = [key for key in (*RUN_KEYS, *CURVE_COLUMNS, "teacher_auc", "equal_quality", "config",
                               *(f"config.{k}" for k in config)) if f"`{key}`" not in formats]
    assert not missing, f"docs/formats.md's train_summary.json section lacks {missing}"


def test_sweeps_document_every_sweep_key_and_points_column():
    from fiitedsim.sweep import ALLOWED_KEYS, GENERATE_KEYS, TRAIN_METRICS

    sweeps = (ROOT / "docs" / "sweeps.md").read_text()
    missing = [key for key in (*ALLOWED_KEYS, *GENERATE_KEYS, *TRAIN_METRICS) if f"`{key}`" not in sweeps]
    assert not missing, f"docs/sweeps.md lacks {missing}"


def test_sweeps_are_described_in_one_place():
    """The README and semantics.md point to docs/sweeps.md instead of describing sweep files again."""
    for path in ("README.md", "docs/semantics.md", "docs/usage.md"):
        text = (ROOT / path).read_text()
        assert "[sweep]" not in text and "sweeps.md" in text, path
