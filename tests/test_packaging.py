"""Issue 21, packaging: building the package prints no setuptools warning of the project's own making (a license
given as a TOML table is deprecated and becomes an error; a data folder missing from `packages`)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ["project.license", "License classifiers are deprecated", "is absent from the `packages` configuration",
        "SetuptoolsDeprecationWarning", "_DeprecatedInstaller"]


@pytest.mark.slow  # builds a wheel with pip (a subprocess, seconds)
def test_building_a_wheel_prints_no_warning_of_ours(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "fiitedsim", src / "fiitedsim", ignore=shutil.ignore_patterns("__pycache__"))
    # the venv's setuptools, no index: the build itself is what is tested, offline
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-v", str(src), "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    output = p.stdout + p.stderr
    assert not [w for w in OURS if w in output], [line for line in output.splitlines()
                                                   if any(w in line for w in OURS)]
    (wheel,) = (tmp_path / "wheel").glob("fiitedsim-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "fiitedsim/data/sample.parquet" in names  # the built-in sample trace ships
    assert "License-Expression: MIT" in metadata
