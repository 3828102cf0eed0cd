"""Policies: one module each, all behind `base.Policy`."""
from .fiited import Fiited
from .full import Full
from .hashing_trick import HashingTrick
from .lfu import Lfu
from .lru import Lru
from .mde import Mde
from .row_prune import RowPrune
from .uniform_dim import UniformDim
from .uniform_row import UniformRow

POLICIES = {cls.name: cls for cls in (Fiited, RowPrune, UniformDim, UniformRow, HashingTrick, Mde, Full, Lru, Lfu)}
#: Policies that keep whole rows of a full copy elsewhere: a miss is served from that copy, not lost.
CACHE_POLICIES = ("lru", "lfu")
#: Policies that run pruning rounds (the "fewer than 2 rounds" warning applies to them).
ROUND_POLICIES = ("fiited", "row-prune")
