"""The ``aejax`` console command: experiment names, sub-commands and their errors."""

from __future__ import annotations

import importlib

import pytest

import aejax
from aejax import cli, flags


def test_experiment_names_are_the_runnable_modules():
    names = cli.experiment_names()
    assert {"s1_pca", "s2_conv_ae", "s10_semi_supervised", "s11_beta_vae", "s11_wae", "classifier"} <= set(names)
    assert "reproduce" not in names and not [n for n in names if n.startswith("_")]


@pytest.mark.parametrize("given, full", [
    ("s2_conv_ae", "s2_conv_ae"),  # exact
    ("s1", "s1_pca"),  # a section, although s10_... and s11_... start with it too
    ("s10", "s10_semi_supervised"),
    ("s2_c", "s2_conv_ae"),  # a unique prefix
    ("contractive", "contractive_ae"),
])
def test_resolve_experiment(given, full):
    assert cli.resolve_experiment(given) == full


@pytest.mark.parametrize("given, message", [
    ("s11", "names several experiments (s11_beta_vae, s11_wae)"),
    ("s99", "no experiment named 's99'"),
])
def test_resolve_experiment_refuses(given, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cli.resolve_experiment(given)


def test_version_list_and_usage(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"aejax {aejax.__version__}"
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == cli.experiment_names()
    assert cli.main([]) == 2 and "usage: aejax" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["run"], "aejax run needs an experiment name"),
    (["run", "s11", "--quick"], "names several experiments"),
    (["frobnicate"], "unknown command 'frobnicate'"),
])
def test_bad_commands_exit_2_with_one_error_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error:") and "Traceback" not in err


def test_run_help_names_the_experiment_and_its_presets(capsys):
    with pytest.raises(SystemExit, match="^0$"):
        cli.main(["run", "s1", "--help"])
    out = capsys.readouterr().out
    assert "usage: aejax run s1_pca" in out and "--preset" in out and "--variance" in out


@pytest.mark.parametrize("name", cli.experiment_names())
def test_every_preset_sets_real_flags_to_other_values_than_their_defaults(name):
    """A preset value equal to its default, or naming no flag, would be a silent no-op: each one changes the run."""
    module = importlib.import_module(f"aejax.experiments.{name}")
    defaults = flags.as_flat_dict(module.Config())
    on_command_line = {leaf for leaf, (_, field, _) in flags.leaf_fields(module.Config()).items()
                       if field.metadata.get("cli", True)}
    for preset, values in module.PRESETS.items():
        assert set(values) <= on_command_line, f"{name} --preset {preset}: {set(values) - on_command_line}"
        parsed = flags.as_flat_dict(flags.parse(module.Config(), module.PRESETS, ["--preset", preset], module.__doc__,
                                                None)[0])
        for field, value in values.items():
            assert parsed[field] == value != defaults[field], f"{name} --preset {preset}: {field}"

