import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))  # tests/engine_adapter.py

settings.register_profile("ci", max_examples=int(os.environ.get("FIITEDSIM_EXAMPLES", "150")), deadline=None)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data` beside the checkout: reference inputs some tests compare against (published statistics,
    sample files; DESIGN.md beside it); they skip when it is absent (fiitedsim itself never reads it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA
