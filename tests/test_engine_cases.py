"""The hand-worked cases of test_reference_cases.py, run against the Numba engine.

The expected numbers there were derived by hand (see the comments of each
case), so the engine is checked against those derivations directly, not only
against the reference.
"""
import pytest
import test_reference_cases as cases
from engine_adapter import engine_replay

CASES = sorted(name for name in dir(cases) if name.startswith("check_case"))


@pytest.mark.parametrize("name", CASES)
def test_engine_matches_hand_worked_case(name):
    getattr(cases, name)(lambda *a, **kw: engine_replay(*a, check=True, **kw))
