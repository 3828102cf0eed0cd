"""`lru`: a full-dimension row cache evicting the least recently used row (DESIGN 4).

Capacity is the budget in bytes and a cached row takes its row bytes
K * C * dtype_bytes (plus its index entry and list links with
`--budget-covers all`), so with equal tables it holds budget / (K*C*dtype_bytes)
rows. On unit-size rows it reproduces libCacheSim's LRU miss ratio exactly.
The shared machinery is in `rowcache.py`; see docs/semantics.md, "Row caches".
"""
from __future__ import annotations

from .rowcache import Kind, RowCache


class Lru(RowCache):
    name = "lru"
    kind = Kind.LRU
    #: previous and next links of the recency list, as int32 slot numbers
    meta_bytes_per_row = 8
