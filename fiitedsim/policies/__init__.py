"""Policies: one module each, all behind `base.Policy`."""
from .cafe import Cafe
from .fiited import Fiited
from .full import Full
from .hashing_trick import HashingTrick
from .lfu import Lfu
from .lru import Lru
from .mde import Mde
from .qr import Qr
from .row_prune import RowPrune
from .uniform_dim import UniformDim
from .uniform_row import UniformRow

POLICIES = {cls.name: cls for cls in (Fiited, RowPrune, UniformDim, UniformRow, HashingTrick, Qr, Cafe, Mde, Full,
                                     Lru, Lfu)}
# The registry by kind, in registry order: read from the classes' attributes (`base.Policy.is_cache`, ...).
#: Policies that keep whole rows of a full copy elsewhere: a miss is served from that copy, not lost.
CACHE_POLICIES = tuple(name for name, cls in POLICIES.items() if cls.is_cache)
#: Policies that run pruning rounds (the "fewer than 2 rounds" warning applies to them).
ROUND_POLICIES = tuple(name for name, cls in POLICIES.items() if cls.has_rounds)
#: The dense reference: every row stored whole, so above any budget below the dense size.
DENSE_REFERENCE = tuple(name for name, cls in POLICIES.items() if cls.sizing == "dense")
#: Policies a trainer can run on: chunk storage through the engine, or a fixed layout.
TRAIN_POLICIES = tuple(name for name, cls in POLICIES.items() if cls.trainable)


def sized_from_window(name: str, vocabulary: bool) -> bool:
    """Whether policy `name` is sized before training from the lookups of a sizing window (`set_frequencies`):
    a first-pass policy always, a policy sized from the tables when they are vocabulary tables."""
    cls = POLICIES[name]
    return cls.sizing == "first pass" or (vocabulary and cls.vocabulary_window)


def window_text(size_from: float) -> str:
    """The training split's sizing window in words: "the whole training split", "the first 10% of ..."."""
    if size_from >= 1.0:
        return "the whole training split"
    return f"the first {100 * size_from:.4g}% of the training split"


def knowledge(name: str, window: str, vocabulary: bool = False, training: bool = True) -> str:
    """What policy `name` knew when it decided what to store, as summaries and reports say it.

    `window` names the sizing window ("the whole trace", `window_text`); `vocabulary`: the tables are the
    training split's vocabulary tables; `training`: a training run (else a replay).
    """
    sizing = POLICIES[name].sizing
    if sizing == "dense":
        return "dense reference: every row whole"
    if sizing == "online":
        return "in training, online" if training else "online, from the lookups so far"
    if sized_from_window(name, vocabulary):
        return f"sized from {window}"
    return "sized from the table sizes"
