"""Policies: one module each, all behind `base.Policy`."""
from .fiited import Fiited
from .full import Full
from .lfu import Lfu
from .lru import Lru
from .row_prune import RowPrune
from .uniform_dim import UniformDim
from .uniform_row import UniformRow

POLICIES = {cls.name: cls for cls in (Fiited, RowPrune, UniformDim, UniformRow, Full, Lru, Lfu)}
