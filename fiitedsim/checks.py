"""Warnings about comparisons that could mislead, in the words a user acts on.

A comparison can be exact and still say nothing: a round-based policy whose
run was too short for its rounds is first-come admission under another name,
and two policies with identical results at a budget are not being told apart
(often because the budget holds every row the run touches). Both are easy to
miss in a table of numbers, so replay and train print them as `warning:`
lines and store them in their summaries, and the reports show them beside
the numbers.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .plan import run_key
from .policies import POLICIES

#: Replay figures that make two policies' results "identical": every hit count and every memory figure.
REPLAY_SIGNATURE = ("row_hits", "chunk_hits", "full_hits", "dim_hits", "collisions", "payload_bytes_peak",
                    "index_bytes_peak", "meta_bytes_final", "total_bytes_peak")


def _has_rounds(name: str) -> bool:
    """Whether policy `name` runs pruning rounds (`Policy.has_rounds`; a name fiitedsim does not know: no)."""
    return getattr(POLICIES.get(name), "has_rounds", False)


def few_rounds(key: str, rounds: int, interval: int, steps: str, what: str = "--interval") -> str:
    plural = "round" if rounds == 1 else "rounds"
    return (f"{key} ran {rounds} pruning {plural} (interval {interval} over steps {steps}): its figures are "
            f"first-come admission, not pruning; lower {what} so that rounds run")


def identical_groups(keys: Iterable[str], signature: Callable[[str], object]) -> list[list[str]]:
    """Groups of two or more keys whose signatures are equal, in first-appearance order."""
    groups: dict = {}
    for key in keys:
        groups.setdefault(signature(key), []).append(key)
    return [group for group in groups.values() if len(group) > 1]


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:-1]) + " and " + keys[-1]


def identical(keys: list[str], budget: dict | None, measured: str) -> str:
    why = "check that the budget and the run are what you meant"
    if budget is not None and budget.get("touched_share", 0.0) >= 1.0:
        why = (f"the budget is {budget['touched_share']:.3g}x the dense size of the rows the run touched, so it "
               f"holds all of them; lower it to compare")
    return f"{_names(keys)} produced identical {measured} at budget {budget['label'] if budget else '?'}: {why}"


def replay_warnings(summary: dict, runs: list[tuple[str, str, str, int]]) -> list[str]:
    """Warnings of a replay summary; `runs` are its (key, policy, budget label, budget bytes)."""
    policies, trace, cfg = summary["policies"], summary["trace"], summary["config"]
    steps = f"{trace['first_step']}..{trace['last_step']}"
    out = [few_rounds(key, policies[key]["rounds"], cfg["interval"], steps)
           for key, name, _, _ in runs if _has_rounds(name) and policies[key]["rounds"] < 2]
    budgets = {b["label"]: b for b in cfg["budgets"]}
    for label in dict.fromkeys(label for _, _, label, _ in runs):
        keys = [key for key, _, lab, _ in runs if lab == label]
        for group in identical_groups(keys, lambda k: tuple(policies[k][f] for f in REPLAY_SIGNATURE)):
            out.append(identical(group, budgets.get(label), "hit counts and memory"))
    return out


def train_warnings(summary: dict, runs: list[tuple[str, str, int]]) -> list[str]:
    """Warnings of a train summary; `runs` are its (policy, budget label, budget bytes)."""
    policies, cfg = summary["policies"], summary["config"]
    out = [few_rounds(run_key(name, label), policies[run_key(name, label)]["rounds"], cfg["interval"],
                      f"0..{cfg['steps_run'] - 1}" if "steps_run" in cfg else "of the run", "--interval")
           for name, label, _ in runs if _has_rounds(name) and policies[run_key(name, label)]["rounds"] < 2]
    budgets = {b["label"]: b for b in cfg["budgets"]}
    for label in dict.fromkeys(label for _, label, _ in runs):
        keys = [run_key(name, lab) for name, lab, _ in runs if lab == label]
        same = identical_groups(keys, lambda k: tuple((e["auc"], e["logloss"]) for e in policies[k]["per_seed"]))
        for group in same:
            out.append(identical(group, budgets.get(label), "AUC and log loss on every seed"))
    return out
