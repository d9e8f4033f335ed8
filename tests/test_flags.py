"""aejax.flags: flags from config dataclasses (types, Literal choices, --x / --no-x, fields the
run sets), presets under the given flags, ambiguous leaf names, and refused values as usage errors."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import pytest

from aejax import flags


@dataclasses.dataclass(frozen=True)
class Model:
    latent_dim: int = flags.field(8, "code size")
    activation: Literal["relu", "tanh"] = flags.field("relu", "hidden activation")
    num_classes: int = flags.field(0, "from the data", cli=False)

    def __post_init__(self):
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")


@dataclasses.dataclass(frozen=True)
class Train:
    learning_rate: float = flags.field(1e-3, "Adam's rate")
    shuffle: bool = flags.field(True, "reshuffle every epoch")
    out: pathlib.Path = flags.field(pathlib.Path("runs"), "output folder")
    limit: int | None = flags.field(None, "examples used, all when unset")


@dataclasses.dataclass(frozen=True)
class Config:
    model: Model = Model()
    train: Train = Train()
    seed: int = flags.field(0, "PRNG seed")


@dataclasses.dataclass(frozen=True)
class Options:
    quick: bool = flags.field(False, "a short run")


@dataclasses.dataclass(frozen=True)
class Clash:
    model: Model = Model()
    other: Train = Train()
    latent_dim: int = flags.field(2, "the same leaf name as model.latent_dim")


PRESETS = {"lecture": {}, "small": {"latent_dim": 2, "shuffle": False}, "tanh": {"activation": "tanh", "seed": 3}}


def _parse(*argv: str, options=None):
    return flags.parse(Config(), PRESETS, list(argv), "a test experiment", options, prog="test")


def _usage_error(capsys, *argv: str) -> str:
    """Parses ``argv``: exit 2 and one error line on stderr, returned."""
    with pytest.raises(SystemExit, match="^2$"):
        _parse(*argv)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("test: error: "), err
    return err


# ------------------------------------------------------------------ leaf fields

def test_leaf_fields_are_the_flag_bearing_fields_with_their_paths():
    leaves = flags.leaf_fields(Config())
    assert list(leaves) == ["latent_dim", "activation", "learning_rate", "shuffle", "out", "limit", "seed"]
    assert leaves["shuffle"][0] == ("train", "shuffle") and leaves["seed"][0] == ("seed",)
    assert "num_classes" not in leaves  # cli=False: the run sets it


def test_ambiguous_leaf_names_raise():
    with pytest.raises(ValueError, match=r"\['activation', 'latent_dim'\] appear twice"):
        flags.leaf_fields(dataclasses.replace(Clash(), other=Model()))
    with pytest.raises(ValueError, match="'latent_dim' appears twice"):
        flags.leaf_fields(Clash())


def test_a_field_type_without_a_command_line_form_raises():
    @dataclasses.dataclass(frozen=True)
    class Listed:
        sizes: tuple = flags.field((1, 2), "no flag form")

    with pytest.raises(TypeError, match="no command-line form"):
        flags.make_parser(Listed(), {}, "")


# ------------------------------------------------------------------ flags and presets

def test_defaults_without_flags_and_the_default_preset():
    config, options, preset = _parse()
    assert config == Config() and options is None and preset == "lecture"


def test_typed_flags_reach_nested_fields():
    config, _, _ = _parse("--latent-dim", "5", "--learning-rate", "0.02", "--out", "x/y", "--limit", "7", "--seed", "4")
    assert config.model.latent_dim == 5 and config.train.learning_rate == 0.02 and config.seed == 4
    assert config.train.out == pathlib.Path("x/y") and config.train.limit == 7
    assert config.model.activation == "relu" and config.train.shuffle is True  # untouched


def test_bool_fields_are_x_and_no_x():
    assert _parse("--no-shuffle")[0].train.shuffle is False
    assert _parse("--preset", "small", "--shuffle")[0].train.shuffle is True


def test_a_preset_applies_over_the_defaults_and_given_flags_override_it():
    small, _, preset = _parse("--preset", "small")
    assert preset == "small" and small.model.latent_dim == 2 and small.train.shuffle is False
    assert small.seed == 0  # not in the preset: the default
    overridden, _, _ = _parse("--preset", "small", "--latent-dim", "6")
    assert overridden.model.latent_dim == 6 and overridden.train.shuffle is False


def test_literal_fields_take_only_their_choices(capsys):
    assert _parse("--activation", "tanh")[0].model.activation == "tanh"
    assert "invalid choice: 'gelu'" in _usage_error(capsys, "--activation", "gelu")


def test_fields_the_run_sets_get_no_flag(capsys):
    assert "--num-classes" not in flags.make_parser(Config(), PRESETS, "").format_help()
    assert "unrecognized arguments: --num-classes 3" in _usage_error(capsys, "--num-classes", "3")


def test_run_options_are_parsed_apart_from_the_config():
    config, options, _ = _parse("--quick", "--seed", "2", options=Options())
    assert options == Options(quick=True) and config.seed == 2


def test_help_lists_the_presets_and_each_flags_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps the help to the terminal's width
    text = flags.make_parser(Config(), PRESETS, "").format_help()
    assert "small: --latent-dim 2, --no-shuffle" in text and "lecture: the defaults" in text
    assert "--shuffle, --no-shuffle" in text and "reshuffle every epoch (default: True)" in text
    assert "{relu,tanh}" in text and "examples used, all when unset (default: none)" in text


# ------------------------------------------------------------------ refused values

@pytest.mark.parametrize("argv, message", [
    (["--latent-dim", "0"], "latent_dim must be positive, got 0"),  # the config's own check
    (["--latent-dim", "two"], "argument --latent-dim: expected an integer, got 'two'"),
    (["--learning-rate", "nan"], "argument --learning-rate: expected a finite number, got 'nan'"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
])
def test_a_refused_value_is_a_one_line_usage_error(argv, message, capsys):
    assert message in _usage_error(capsys, *argv)


# ------------------------------------------------------------------ replace_fields and as_flat_dict

def test_replace_fields_rebuilds_nested_configs_and_runs_their_checks():
    config = flags.replace_fields(Config(), {"latent_dim": 3, "seed": 9})
    assert config.model == Model(latent_dim=3) and config.seed == 9 and config.train is Config().train
    with pytest.raises(ValueError, match="latent_dim must be positive"):
        flags.replace_fields(Config(), {"latent_dim": -1})
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['width'\]"):
        flags.replace_fields(Config(), {"width": 3})


def test_as_flat_dict_holds_every_field_by_leaf_name_json_ready():
    flat = flags.as_flat_dict(Config())
    assert flat == {"latent_dim": 8, "activation": "relu", "num_classes": 0, "learning_rate": 1e-3, "shuffle": True,
                    "out": "runs", "limit": None, "seed": 0}
