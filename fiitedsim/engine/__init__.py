"""The engine of the chunk-storing policies (`fiited`, `row-prune`): an exact model of DESIGN.md sections 2
and 3 as Numba kernels over flat arrays, with the names and the order of steps of `fiitedsim/reference.py`.

Each concept has its module:

* `state`: `EngineState`, every array of one replay, built, grown between kernel calls (the grow-and-resume
  protocol) and shown to tests and the trainer;
* `hashmap`: the one open-addressing hash map of int64 entries, under the row tracker, the hash indices, the
  row caches (`policies/rowcache.py`) and the row sets (`rowset`);
* `store`: the VHPI store: the row tracker and its records, the hash indices and the paged pools (DESIGN 3);
* `access`: an access ((1) observe, (2) update utilities, (3) admit) and an importance record (DESIGN 2);
* `round`: a pruning round, its ranking passes and its frees (DESIGN 2, "Pruning rounds");
* `loop`: the record loop with its prefetch stages, the snapshots, and the merged record stream every
  policy's record loop walks;
* `populate`: faults in, on a helper thread, the memory the record loop writes next;
* `prefetch`: the software-prefetch intrinsic;
* `rowset`: maps and sets of (table, row) (bookkeeping of the baselines, replay and inspect).

docs/engine.md has the measured rules the kernels follow. The policies' Python side is in
`fiitedsim/policies/`.
"""
from __future__ import annotations

from .state import (  # noqa: F401  (the names callers of the engine use; tunables are patched on `state` itself)
    NEED_ROWS,
    RECORD_ALIGN,
    EngineState,
    aligned_zeros,
    snapshot_columns,
)
