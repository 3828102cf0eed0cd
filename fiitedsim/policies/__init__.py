"""Policies: one module each, all behind `base.Policy`."""
from .fiited import Fiited
from .full import Full
from .uniform_dim import UniformDim
from .uniform_row import UniformRow

POLICIES = {cls.name: cls for cls in (Fiited, UniformDim, UniformRow, Full)}
