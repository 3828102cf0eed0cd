"""The one planning step (fiitedsim/plan.py) that replay, train and sweep share."""
import pytest

from fiitedsim.config import ReplayConfig, TableSpec
from fiitedsim.errors import InputError
from fiitedsim.plan import BudgetTwice, check_runs, keyed, plan

TABLES = [TableSpec("a", 1000, 16, 4), TableSpec("b", 3000, 16, 4)]  # dense size 4000 x 64 bytes
CFG = ReplayConfig(page_bytes=256)


def test_runs_are_budgets_by_policies_or_a_sweeps_grid():
    runs = plan(TABLES, ["fiited", "full"], "0.1,0.2", CFG)
    assert [(r.policy, r.budget_label) for r in runs] == [("fiited", "0.1"), ("full", "0.1"), ("fiited", "0.2"),
                                                          ("full", "0.2")]
    assert [r.key(keyed(runs)) for r in runs] == ["fiited@0.1", "full@0.1", "fiited@0.2", "full@0.2"]
    assert runs[0].budget_bytes == 25600 and runs[0].config.budget_bytes == 25600
    assert runs[0].config.budget_label == "0.1" and runs[0].config.page_bytes == 256
    grid = plan(TABLES, ["fiited", "full"], ["0.1", "0.2"], CFG, {"gamma": (0.9, 0.99)}, policy_major=True)
    assert [(r.policy, r.budget_label, r.config.gamma) for r in grid][:4] == [
        ("fiited", "0.1", 0.9), ("fiited", "0.1", 0.99), ("fiited", "0.2", 0.9), ("fiited", "0.2", 0.99)]
    assert grid[1].knobs == (("gamma", 0.99),)


def test_table_knobs_override_every_table_and_set_the_budget_bytes():
    [run] = plan(TABLES, ["uniform-dim"], "0.5", CFG, {"dim": (32,), "chunk": (8,)})
    assert [(t.dim, t.chunk) for t in run.tables] == [(32, 8), (32, 8)]
    assert run.budget_bytes == 4000 * 32 * 4 // 2
    with pytest.raises(InputError, match=r"^s.toml: trace 'x': table 'a': chunk C=3 does not divide"):
        plan(TABLES, ["full"], "0.5", CFG, {"chunk": (3,)}, where="s.toml: trace 'x'")


def test_a_budget_given_twice_is_named_for_the_option_or_the_sweep_file():
    with pytest.raises(BudgetTwice, match=r"^--budget lists a budget twice: 0\.5 and 50% are both 128000 bytes"):
        plan(TABLES, ["full"], "0.5,50%", CFG)
    with pytest.raises(BudgetTwice, match=r"^s.toml: trace 'x': budgets 0\.5 and 50% are both 128000 bytes: one"):
        plan(TABLES, ["full"], ["0.5", "50%"], CFG, where="s.toml: trace 'x'")
    assert [r.budget_bytes for r in plan(TABLES, ["full"], [("0.5", 7), ("0.6", 9)], CFG)] == [7, 9]  # given bytes


def test_checks_come_with_the_plan_or_after_a_commands_own():
    with pytest.raises(InputError, match="leaves no room for one 256-byte page"):
        plan(TABLES, ["fiited"], "10B", CFG)
    runs = plan(TABLES, ["fiited"], "10B", CFG, check=False)  # e.g. train's --emit-trace rule first
    with pytest.raises(InputError, match="leaves no room for one 256-byte page"):
        check_runs(runs)
    with pytest.raises(InputError, match="does not fit a page of 8 bytes"):
        plan(TABLES, ["full"], "0.5", ReplayConfig(page_bytes=8))
