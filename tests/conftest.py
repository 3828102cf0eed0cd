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


class TooMuchWork(AssertionError):
    """A counted kernel was called more often than a test allows: work that grows with something it should not."""


@pytest.fixture
def count_kernel_calls(monkeypatch):
    """`count(module, limit)`: run the Numba kernels defined in `module` as plain Python (their `py_func`) and
    count their calls, by kernel name, in the Counter it returns; a kernel called more than `limit` times raises
    `TooMuchWork` at once. A kernel's calls to another kernel of the module go through the module's globals, so
    they are counted too: a test asserts on the work done (calls per lookup) instead of on wall time, and an
    O(rows) regression fails after `limit` calls instead of running for hours."""
    import collections
    import functools

    def count(module, limit: int) -> collections.Counter:
        calls: collections.Counter = collections.Counter()
        for name, value in list(vars(module).items()):
            py_func = getattr(value, "py_func", None)
            if py_func is None or getattr(py_func, "__module__", None) != module.__name__:
                continue

            def counted(*args, _name=name, _func=py_func):
                calls[_name] += 1
                if calls[_name] > limit:
                    raise TooMuchWork(f"{module.__name__}.{_name} called more than {limit} times")
                return _func(*args)
            monkeypatch.setattr(module, name, functools.wraps(py_func)(counted))
        return calls
    return count
