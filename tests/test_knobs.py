"""The replay knobs are declared once, as `ReplayConfig`'s fields (their metadata: `config.KnobSpec`), and every
place that lists them reads them from there: the options (options.py), `replay` and `train` (cli.py), the sweep
files (sweep/file.py) and the planning step (plan.py). These tests fail when a field has no option or no sweep key,
and when an option or a sweep key names no field."""
from __future__ import annotations

import dataclasses

import pytest
import typer

from fiitedsim import cli
from fiitedsim import options as o
from fiitedsim.config import ReplayConfig, TableSpec, knob_config, knob_option, knobs
from fiitedsim.plan import TABLE_KNOBS, plan
from fiitedsim.sweep.file import KNOB_BY_NAME, KNOBS, TRAIN_KNOB_BY_NAME, TRAIN_KNOBS

#: The options of `replay` and `train` that are no knob: what runs, inputs and outputs.
REPLAY_NOT_KNOBS = {"trace", "budget", "policy", "out_dir", "tables", "importance", "as_json", "report", "quiet"}
#: A value other than the default of every knob, as the command line gives it (a new knob needs one here).
NOT_DEFAULT = {"gamma": "0.5", "interval": "7", "position_weight": "0.5", "page_bytes": "4096", "max_load": "0.5",
               "index_initial": "64", "allocator": "lifo", "budget_covers": "all", "report_every": "9",
               "count_accesses": None, "mde_exponent": "0.5", "qr_operation": "add", "cafe_threshold": "3",
               "cafe_cold_share": "0.5", "cafe_decay": "0.5"}


def command_params(name: str) -> dict:
    return {p.name: p for p in typer.main.get_command(cli.app).commands[name].params}


def test_every_replay_config_field_says_whether_it_is_a_knob():
    for f in dataclasses.fields(ReplayConfig):
        assert "knob" in f.metadata, f"ReplayConfig.{f.name} declares neither a knob (config._knob) nor NOT_A_KNOB"
    assert set(knobs()) == set(NOT_DEFAULT)


@pytest.mark.parametrize("name", list(knobs()))
def test_every_knob_has_a_replay_option_and_a_sweep_key(name):
    knob = knobs()[name]
    param = command_params("replay").get(name)
    assert param is not None, f"replay has no option for the knob {name}"
    assert param.opts == [knob_option(name)] and param.help == knob.help
    default = "auto" if knob.kind == "number or auto" else getattr(ReplayConfig(), name)
    assert param.default == default
    assert KNOB_BY_NAME[name].target == "config"
    train = command_params("train")
    if knob.train == "option":
        assert train[name].opts == [knob_option(name)] and train[name].help == knob.help
    else:  # train has no such option (its --interval is TrainConfig's)
        assert name not in train or train[name].help != knob.help
    if knob.train is None:
        assert name not in TRAIN_KNOB_BY_NAME or TRAIN_KNOB_BY_NAME[name].target != "config"
    else:
        assert TRAIN_KNOB_BY_NAME[name].target == "config"


@pytest.mark.parametrize("command", ["replay", "train"])
def test_every_knob_option_names_a_field(command):
    params = command_params(command)
    for name, param in params.items():
        if any(param.opts == [knob_option(k)] and param.help == knobs()[k].help for k in knobs()):
            assert name in knobs(), f"{command} {param.opts[0]} is a knob's option under another name"
    if command == "replay":
        for name in params:
            assert name in knobs() or name in TABLE_KNOBS or name in REPLAY_NOT_KNOBS, \
                f"replay's option {params[name].opts[0]} names no ReplayConfig field, table override or input"
    assert set(o.KNOB) == set(knobs())


def test_every_sweep_config_key_names_a_field():
    for knob in (*KNOBS, *TRAIN_KNOBS):
        if knob.target == "config":
            assert knob.name in knobs(), f"the sweep key {knob.name} sets no ReplayConfig knob"
        elif knob.target == "tables":
            assert knob.name in TABLE_KNOBS
    assert [k.name for k in KNOBS] == [*("chunk", "dim", "dtype_bytes"), *knobs()]  # points.parquet's columns


def test_replay_passes_every_knob_into_its_config(monkeypatch, capsys):
    """Every knob given on the command line reaches the config the runs are planned with."""
    seen = []

    class Planned(Exception):
        pass

    def fake_plan(tables, names, budget, cfg, axes=None, **kw):
        seen.append(cfg)
        raise Planned
    monkeypatch.setattr("fiitedsim.plan.plan", fake_plan)
    args = ["replay", "-q"]
    for name, value in NOT_DEFAULT.items():
        args += [knob_option(name)] + ([value] if value is not None else [])
    with pytest.raises(Planned):
        cli.app(args, standalone_mode=False)
    [cfg] = seen
    default = ReplayConfig()
    for name in knobs():
        assert getattr(cfg, name) != getattr(default, name), f"replay {knob_option(name)} did not reach the config"


def test_train_config_takes_only_the_knobs_train_has_options_for():
    cfg = knob_config({"gamma": 0.5, "interval": 7, "max_load": 0.5, "cafe_threshold": "auto"}, train=True)
    assert (cfg.gamma, cfg.interval, cfg.max_load, cfg.cafe_threshold) == (0.5, 100, 0.75, None)


def test_plan_refuses_an_axis_that_is_no_knob():
    with pytest.raises(ValueError, match="budget_label"):
        plan([TableSpec("t", 100, 8, 4)], ["full"], "0.5", axes={"budget_label": ("x",)})
