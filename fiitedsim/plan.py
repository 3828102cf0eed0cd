"""One planning step: tables + policies + budgets + knobs become the runs to compute, every one checked.

`fiitedsim replay`, `fiitedsim train` and `fiitedsim sweep` all plan here, so a
budget is parsed, a knob applied and a run refused by one rule whatever the
command:

- a budget is a fraction of the dense size of the run's tables, or bytes with
  a unit (`config.parse_budget`); two budgets that come to the same bytes are
  one budget given twice;
- the knobs `dim`, `chunk` and `dtype_bytes` override that field of every
  table (as `replay --dim/--chunk/--dtype-bytes` and a sweep's axes do), every
  other knob sets the `ReplayConfig` field of its name; a knob given as a list
  of values is a grid axis (a sweep);
- `--page-bytes auto` and `--index-initial auto` are resolved per run, since
  each budget has its own layout (`config.resolve_layout`); a run keeps its
  config as given (summaries show "auto"), `Run.resolved()` has the values;
- every chunk must fit in a page (`config.check_tables_fit_pages`) and every
  policy must be able to store something at its budget (`Policy.check_budget`),
  checked here on the resolved layout (so errors name the page size and index
  capacities the run would use), before any trace is read or any model trained.

The order of the runs is the order of their results: budgets x policies for a
replay and a training run (keys `NAME@BUDGET`), policies x budgets x knobs for
a sweep's grid (`policy_major`).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from .config import (
    ReplayConfig,
    TableSpec,
    check_tables_fit_pages,
    dense_bytes,
    knobs,
    parse_budget,
    resolve_layout,
)
from .errors import InputError
from .policies import POLICIES

#: Knobs that override a field of every table; the other knobs are `ReplayConfig` fields (`config.knobs`).
TABLE_KNOBS = ("dim", "chunk", "dtype_bytes")


def split_list(text: str, option: str, empty_hint: str, noun: str = "a value") -> list[str]:
    """The items of a comma-separated option value: at least one, none empty, none twice.

    One rule for every list option (--policy, --budget, train's --sparse and --dense): `0.1,` (an empty item,
    a stray comma) and `fiited,fiited` (an item twice) are mistakes to point out, not to repair silently.
    """
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise InputError(f"{option} is empty: {empty_hint}")
    if not all(items):
        raise InputError(f"{option} {text!r} has an empty item (a stray comma); separate the values by single "
                         "commas, with none at either end")
    twice = next((item for i, item in enumerate(items) if item in items[:i]), None)
    if twice is not None:
        raise InputError(f"{option} lists {noun} twice: {twice} (in {text}); give each once")
    return items


def parse_policies(text: str, choices=tuple(POLICIES), purpose: str = "") -> list[str]:
    """Comma-separated policy names (or `all` alone) among `choices`, in the given order (`split_list`'s rule).

    `purpose` qualifies the error for a command that accepts fewer policies (" for training").
    """
    names = split_list(text, "--policy", "name at least one of " + ", ".join(choices), "a policy")
    unknown = [n for n in names if n not in choices and n != "all"]
    if unknown:
        raise InputError(f"unknown policy {unknown[0]!r}{purpose}: choose from {', '.join(choices)} or all")
    if "all" in names:
        if len(names) > 1:
            raise InputError(f"--policy {text}: all names every policy{purpose} already; give all alone, or "
                             "the policies")
        return list(choices)
    return names


def budget_labels(text: str) -> list[str]:
    """The budgets of a `--budget` value, as given (`split_list`'s rule)."""
    return split_list(text, "--budget", "give a fraction like 0.1 or bytes like 2GiB", "a budget")


class BudgetTwice(InputError):
    """Two budgets that come to the same bytes: one budget given twice."""


def parse_budgets(budgets, tables: Sequence[TableSpec], where: str | None = None) -> list[tuple[str, int]]:
    """(label, bytes) of each budget: from a `--budget` text, labels (a sweep file's), or (label, bytes) pairs.

    Two budgets that come to the same bytes are one budget given twice; `where` (a sweep file and its trace or
    data) words that error for a sweep file instead of the `--budget` option.
    """
    items = budget_labels(budgets) if isinstance(budgets, str) else list(budgets)
    dense = dense_bytes(list(tables))
    parsed = [item if isinstance(item, tuple) else (item, parse_budget(item, dense)) for item in items]
    seen: dict[int, str] = {}
    for label, bytes_ in parsed:
        if bytes_ in seen:
            if where is not None:
                raise BudgetTwice(f"{where}: budgets {seen[bytes_]} and {label} are both {bytes_} bytes: one budget "
                                 "given twice; list each budget once")
            raise BudgetTwice(f"--budget lists a budget twice: {seen[bytes_]} and {label} are both {bytes_} bytes; "
                             "give each budget once")
        seen[bytes_] = label
    return parsed


def run_key(name: str, budget_label: str) -> str:
    """A run's key in a summary that holds several budgets: NAME@BUDGET (`parse_run_key` reads it back)."""
    return f"{name}@{budget_label}"


def parse_run_key(key: str) -> tuple[str, str | None]:
    """(policy name, budget label) of a summary key made by `run_key`; the label is None for a key that names
    no budget (NAME alone: a summary of one budget)."""
    name, at, label = key.partition("@")
    return name, label if at else None


@dataclass(frozen=True)
class Run:
    """One policy at one budget under one setting of the knobs: a replay of a trace, or one training run."""

    policy: str
    budget_label: str
    budget_bytes: int
    tables: tuple[TableSpec, ...]   # the tables with the knobs' overrides
    config: ReplayConfig            # the knobs as given, with the run's budget (`ReplayConfig.with_budget`)
    knobs: tuple = ()               # (name, value) of the knobs given as axes, in the order given

    def resolved(self) -> ReplayConfig:
        """The run's config with its layout resolved for its tables and budget (`config.resolve_layout`): the
        page size and index capacities the engine uses."""
        return resolve_layout(list(self.tables), self.config)

    def key(self, keyed: bool) -> str:
        """The run's key in a summary: NAME, or NAME@BUDGET when the summary holds several budgets."""
        return run_key(self.policy, self.budget_label) if keyed else self.policy


def keyed(runs: Sequence[Run]) -> bool:
    """Whether the runs' keys name their budget: they hold more than one."""
    return len({run.budget_label for run in runs}) > 1


def plan(tables: Sequence[TableSpec], policies: Sequence[str], budgets, config: ReplayConfig = ReplayConfig(),
         axes: Mapping[str, Sequence] | None = None, *, policy_major: bool = False,
         check_tables: Callable[[tuple[TableSpec, ...]], None] | None = None, where: str | None = None,
         check: bool = True) -> list[Run]:
    """The runs of `policies` x `budgets` x the knobs' values, checked; see the module docstring.

    `budgets` as `parse_budgets` takes them; `config` holds the knobs every run shares, `axes` maps a knob to
    its values (a grid). `check_tables(tables)` may refuse the tables a setting of the knobs makes (a trace
    with grad_norm cannot change its chunks per row). `where` names a sweep file and its trace or data in the
    errors of a table override and of a budget given twice. `check=False` leaves the runs' checks to a later
    `check_runs` (a command with checks of its own to make first).
    """
    axes = dict(axes or {})
    unknown = [k for k in axes if k not in TABLE_KNOBS and k not in knobs()]
    if unknown:  # a caller's mistake: a sweep file's keys are checked against the same knobs before
        raise ValueError(f"{unknown[0]!r} is no knob: neither a table override {TABLE_KNOBS} nor a ReplayConfig "
                         "knob (config.knobs)")
    settings = []  # per setting of the knobs: (knobs, tables, config, budgets)
    for values in itertools.product(*axes.values()):
        chosen = tuple(zip(axes, values))
        try:  # replace() re-runs TableSpec's checks (C divides D, ...)
            run_tables = tuple(replace(t, **{k: v for k, v in chosen if k in TABLE_KNOBS}) for t in tables)
        except InputError as exc:
            raise InputError(f"{where}: {exc}" if where is not None else str(exc)) from None
        if check_tables is not None:
            check_tables(run_tables)
        run_config = replace(config, **{k: v for k, v in chosen if k not in TABLE_KNOBS})
        parsed = parse_budgets(budgets, run_tables, where)
        settings.append((chosen, run_tables, run_config, parsed))
    if policy_major:
        order = [(policy, i, setting) for policy in policies for i in range(len(settings[0][3]))
                 for setting in settings]
    else:
        order = [(policy, i, setting) for setting in settings for i in range(len(setting[3])) for policy in policies]
    runs = []
    for policy, i, (chosen, run_tables, run_config, parsed) in order:
        label, bytes_ = parsed[i]
        runs.append(Run(policy, label, bytes_, run_tables, run_config.with_budget(bytes_, label), chosen))
    if check:
        check_runs(runs)
    return runs


def check_runs(runs: Sequence[Run], vocabulary: bool = False) -> None:
    """Refuse a run that could never store anything: a chunk larger than a page, or a budget too small for the
    policy (`Policy.check_budget`: one page in every pool, one row of every table, the start-up memory).
    `vocabulary`: the tables are a training run's vocabulary tables (`Policy.check_budget`)."""
    for run in runs:
        config = run.resolved()
        check_tables_fit_pages(list(run.tables), config)
        POLICIES[run.policy].check_budget(list(run.tables), config, vocabulary)
