"""`row-prune`: the FIITED machinery at row granularity (DESIGN.md section 4).

The in-training row-pruning method the FIITED paper compares against: a row
holds all K chunks or none, and a row's utility is the sum of its chunks'
utilities (docs/semantics.md "Row pruning (row-prune)"). Everything else is
FIITED's: the same engine state, per-chunk utility updates, importance
records, VHPI indices and paged pools, round and snapshot placement and
metrics. So this policy is FIITED's driver and record loop with the
granularity set to whole rows; the two places that differ live in
`fiited.py` beside their FIITED counterparts, as `RowPruneModel` overrides
them in `fiitedsim/reference.py`: admission (`admit_row`) and the round's
ranking (`select_rows`: a radix histogram over the bit patterns of U,
weighted by each row's K, then an exact sort of the one bucket holding the
cut).
"""
from __future__ import annotations

from .fiited import Fiited


class RowPrune(Fiited):
    """Row-granularity pruning (whole rows in or out) over the same VHPI storage as FIITED."""

    name = "row-prune"
    whole_rows = True
