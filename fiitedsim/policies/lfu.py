"""`lfu`: a full-dimension row cache evicting the least frequently used row (DESIGN 4).

As libCacheSim's LFU: a row's frequency counts its hits during its current
stay in the cache (it re-enters at 1 after an eviction), and among rows of the
least frequency the one that reached it first -- the least recently used --
is evicted. Capacity as for `lru`. The shared machinery is in `rowcache.py`;
see docs/semantics.md, "Row caches".
"""
from __future__ import annotations

from .rowcache import Kind, RowCache


class Lfu(RowCache):
    name = "lfu"
    kind = Kind.LFU
    #: previous and next links of its frequency bucket's list and a pointer to the bucket, as int32
    meta_bytes_per_row = 12
