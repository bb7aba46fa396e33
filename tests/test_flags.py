"""One source of truth for settings: every `Config` field has its flag (and web-form field), generated from it."""

import dataclasses

from stylelab import Config, cli
from stylelab.config import OPTIMIZERS, PRECISIONS
from stylelab.flags import config_from_args, dest, flag_fields, flag_name
from stylelab.layers import POOLINGS


def parse(*argv):
    return cli.build_parser().parse_args(["run", "c.png", "s.png", "-o", "out.png", *argv])


def test_every_field_has_a_flag_or_is_set_through_one():
    folded = {f.metadata["weights_field"] for f in dataclasses.fields(Config) if f.metadata.get("weights_field")}
    with_flag = {f.name for f in flag_fields()}
    assert with_flag | folded == {f.name for f in dataclasses.fields(Config)}
    run = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["run"]
    options = {s for a in run._actions for s in a.option_strings}
    assert {flag_name(f) for f in flag_fields()} <= options


def test_defaults_round_trip_to_the_default_config():
    assert config_from_args(parse()) == Config()


def test_each_flag_sets_its_field():
    cases = {"--steps": ("7", 7), "--lbfgs-history": ("5", 5), "--optimizer": ("adam", "adam"),
             "--pooling": ("avg", "avg"), "--lr": ("0.5", 0.5), "--style-weight": ("3", 3.0),
             "--precision": ("float32", "float32"), "--color": ("transfer", "transfer"), "--tol": ("0.01", 0.01)}
    for flag, (text, value) in cases.items():
        field = next(f for f in flag_fields() if flag_name(f) == flag)
        assert getattr(config_from_args(parse(flag, text)), field.name) == value, flag
    assert config_from_args(parse("--no-multiscale")).multiscale is False
    assert config_from_args(parse("--tileable")).tileable is True
    layers = config_from_args(parse("--style-layers", "relu1_1:2,relu3_1"))
    assert (layers.style_layers, layers.style_layer_weights) == (("relu1_1", "relu3_1"), (2.0, 1.0))


def test_choices_and_help_come_from_the_config_fields():
    run = next(a for a in cli.build_parser()._actions if a.dest == "command").choices["run"]
    actions = {a.dest: a for a in run._actions}
    assert tuple(actions["optimizer"].choices) == OPTIMIZERS
    assert tuple(actions["pooling"].choices) == POOLINGS
    assert tuple(actions["precision"].choices) == PRECISIONS
    for f in flag_fields():
        assert actions[dest(f)].help.startswith(f.metadata["help"].split("{")[0]), f.name


def test_the_web_form_follows():
    from stylelab.web.schema import form_schema

    form = {f["name"]: f for f in form_schema()}
    assert form["optimizer"]["choices"] == list(OPTIMIZERS)
    assert form["pooling"]["choices"] == list(POOLINGS)
    assert form["lbfgs_history"]["default"] == Config().lbfgs_history
