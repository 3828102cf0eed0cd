"""read_ahead yields the same items in the same order and re-raises the producer's errors in place."""
import pytest

from fiitedsim.errors import InputError
from fiitedsim.traces.readahead import read_ahead


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_same_items_same_order(depth):
    assert list(read_ahead(iter(range(100)), depth)) == list(range(100))


def test_error_is_raised_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise InputError("row group 3 is corrupt")

    got = []
    with pytest.raises(InputError, match="corrupt"):
        for x in read_ahead(items(), 2):
            got.append(x)
    assert got == [1, 2]


def test_consumer_stopping_early_stops_the_producer():
    produced = []

    def items():
        for i in range(10_000):
            produced.append(i)
            yield i

    for x in read_ahead(items(), 2):
        if x == 3:
            break
    assert len(produced) < 100
