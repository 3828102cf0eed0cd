"""The one open-addressing map (`fiitedsim/engine/hashmap.py`) against a Python dict, and against Knuth's
Algorithm R: deleting by backward shift leaves the table exactly as if the key had never been inserted."""
from __future__ import annotations

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fiitedsim.engine import hashmap


@numba.njit(cache=True)
def _apply(m, keys, ops):
    """ops[i] = (1, key): insert key (known absent) with value = its slot in `keys`; (0, key): delete it;
    (2, key): find it. Returns what each find found (-1: absent)."""
    mask = m.shape[0] - 1
    found = np.full(ops.shape[0], -2, np.int64)
    n = 0
    for i in range(ops.shape[0]):
        op, key = ops[i, 0], ops[i, 1]
        h = hashmap.splitmix64(key)
        if op == 1:
            keys[n, 0] = key
            hashmap.insert(m, 0, mask, h, n)
            n += 1
        else:
            v = hashmap.find(m, 0, mask, h, keys, 0, key)
            if op == 2:
                found[i] = v
            else:  # delete: find the bucket holding value v, then remove it
                b = hashmap.home(h, mask)
                while hashmap.entry_value(m[b]) != v:
                    b = (b + 1) & mask
                hashmap.remove(m, 0, mask, b)
    return found


def _run(capacity, ops):
    m = np.zeros(capacity, np.int64)
    keys = np.zeros((max(1, len(ops)), 1), np.int64)
    found = _apply(m, keys, np.array(ops, np.int64).reshape(-1, 2))
    return m, keys, found


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 1, 2]), st.integers(0, 30)), max_size=80),
       st.sampled_from([8, 16]))
def test_map_agrees_with_a_dict_and_deletion_leaves_no_trace(script, capacity):
    ops, live, order = [], {}, []
    for op, x in script:  # make the script valid: insert only absent keys, delete only present ones
        if op == 1 and x not in live and len(live) < capacity // 2:
            live[x] = len(order)
            order.append(x)
            ops.append((1, x))
        elif op == 0 and order:
            key = order[x % len(order)]  # delete a live key
            del live[key]
            order.remove(key)
            ops.append((0, key))
        elif op == 2:
            key = order[x % len(order)] if order and x % 2 else x  # a live key half the time
            ops.append((2, key))
    m, keys, found = _run(capacity, ops)
    # finds answer as a dict would: the slot the key was inserted at, -1 when absent at that moment
    state, n = {}, 0
    for i, (op, key) in enumerate(ops):
        if op == 1:
            state[key] = n
            n += 1
        elif op == 0:
            del state[key]
        else:
            assert found[i] == state.get(key, -1)
    # Algorithm R: the table equals one into which only the surviving keys were inserted, in their order
    fresh = np.zeros(capacity, np.int64)
    slots = {}
    n = 0
    for op, key in ops:
        if op == 1:
            slots[key] = n
            n += 1
    for key in order:
        hashmap.insert(fresh, 0, capacity - 1, np.uint64(hashmap.splitmix64(key)), slots[key])
    assert np.array_equal(m, fresh)


def test_entry_layout_by_hand():
    """An entry is the low 32 bits of the hash over value + 1; its home is those bits & mask."""
    h = np.uint64(0x0123456789ABCDEF)
    e = hashmap.entry(h, 41)
    assert int(e) % 2**64 == (0x89ABCDEF << 32) | 42
    assert hashmap.entry_value(e) == 41
    assert hashmap.entry_home(e, 0xFF) == 0xEF
    assert hashmap.home(h, 0xFF) == 0xEF


def _splitmix64(x: int) -> int:
    """DESIGN 3.1's finaliser in Python integers."""
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return z ^ (z >> 31)


@given(st.integers(0, 2**63 - 1))
def test_splitmix64_is_designs(x):
    assert int(hashmap.splitmix64(x)) == _splitmix64(x)


def test_rebuild_keeps_every_key():
    m, keys, _ = _run(64, [(1, k) for k in range(20)])
    grown = np.zeros(256, np.int64)
    hashmap.rebuild(m, grown)
    _, _, found = _run(256, [(1, k) for k in range(20)] + [(2, k) for k in range(25)])
    assert list(found[20:]) == list(range(20)) + [-1] * 5
    assert np.count_nonzero(grown) == 20
    for k in range(20):
        assert hashmap.find(grown, 0, 255, np.uint64(hashmap.splitmix64(k)), keys, 0, k) == k
