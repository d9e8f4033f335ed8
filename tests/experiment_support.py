"""Shared by the experiments' tests: quick runs on a data subset, parsing, one-line errors."""

from __future__ import annotations

import json
import os

import pytest

from aejax import flags, runs

NOISY_PSNR_DB = 10.46  # std 0.3 noise on [0, 1] images; a little more where pixels are clipped to 0 and 1


def quick_run(script, data_dir, out, *argv):
    """One quick run on 512 train / 256 test images; returns metrics.json."""
    script.main(["--quick", "--no-progress", "--data-dir", str(data_dir), "--out", str(out),
                 "--train-limit", "512", "--test-limit", "256", *argv])
    return json.loads((out / "metrics.json").read_text())


def assert_recorded(script, metrics, preset="lecture"):
    """metrics.json names the preset and holds every config field (and the quick run's options)."""
    assert metrics["preset"] == preset == metrics["settings"]["preset"]
    assert set(flags.as_flat_dict(script.Config())) <= set(metrics["settings"])
    assert metrics["settings"]["quick"] is True and metrics["settings"]["train_limit"] == 512


def files(out):
    return set(os.listdir(out))


def parse(script, *argv):
    """(config, preset) as ``script``'s command line ``argv`` gives them."""
    config, _, preset = runs.parse(script.Config(), script.PRESETS, list(argv), script.__doc__,
                                   script.__name__.rsplit(".", 1)[-1])
    return config, preset


def one_line_error(script, argv, capsys, code=2):
    """Runs ``script`` through ``run_main``: it exits with ``code`` and one line on stderr, returned."""
    capsys.readouterr()
    with pytest.raises(SystemExit, match=f"^{code}$"):
        runs.run_main(script.main, argv)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err
