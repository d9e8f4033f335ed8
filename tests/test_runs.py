"""aejax.runs: the data a run sees under each protocol, and what metrics.json records of it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from aejax import data, runs


def test_load_splits_holds_out_validation_only_when_asked(other_idx_dir):
    options = runs.RunOptions(data_dir=other_idx_dir)
    plain = runs.load_splits(options)
    assert set(plain) == {"train", "test"} and len(plain["train"].labels) == 48_000
    held = runs.load_splits(options, validation=True)
    assert set(held) == {"train", "validation", "test"}
    assert (len(held["train"].labels), len(held["validation"].labels)) == (40_000, 8_000)  # a sixth, any data set
    np.testing.assert_array_equal(held["test"].labels, plain["test"].labels)  # the test set is untouched
    rest, validation = data.validation_split(plain["train"])
    np.testing.assert_array_equal(held["validation"].images, validation.images)
    np.testing.assert_array_equal(held["train"].labels, rest.labels)


def test_limits_cut_after_the_hold_out(other_idx_dir):
    """The hold-out is taken from the whole training set, so a limited run validates on the same images."""
    options = runs.RunOptions(data_dir=other_idx_dir, train_limit=1000, test_limit=300)
    splits = runs.load_splits(options, validation=True)
    assert {k: len(v.labels) for k, v in splits.items()} == {"train": 1000, "validation": 300, "test": 300}
    whole = runs.load_splits(runs.RunOptions(data_dir=other_idx_dir), validation=True)
    np.testing.assert_array_equal(splits["validation"].images, whole["validation"].images[:300])


@dataclasses.dataclass(frozen=True)
class _Config:
    train: runs.TrainConfig = runs.TrainConfig()


def test_metrics_record_the_protocol(other_idx_dir, tmp_path):
    for validation in (False, True):
        config = _Config(runs.TrainConfig(validation=validation))
        run = runs.Run(config, runs.RunOptions(data_dir=other_idx_dir, train_limit=600, test_limit=200), "lecture")
        run.load_splits()
        path = run.write_metrics(tmp_path, {"protocol": {"selected_on": {"epoch": "validation"}}})
        recorded = json.loads(path.read_text())
        assert recorded["protocol"]["validation"] is validation
        sizes = {"train": 600, "test": 200, **({"validation": 200} if validation else {})}
        assert recorded["protocol"]["split_sizes"] == sizes
        assert recorded["protocol"]["selected_on"] == {"epoch": "validation"}
        assert recorded["settings"]["validation"] is validation


def test_usage_errors_turn_value_errors_into_usage_errors():
    with pytest.raises(runs.UsageError, match="^--labels: too few$"):
        with runs.usage_errors("--labels: "):
            raise ValueError("too few")
    with pytest.raises(KeyError):
        with runs.usage_errors():
            raise KeyError("not a value error")


@pytest.mark.parametrize("given, expected", [
    ((None, None), (runs.QUICK_TRAIN_EXAMPLES, runs.QUICK_TEST_EXAMPLES)),  # the caps where none is given
    ((100, 10_000), (100, runs.QUICK_TEST_EXAMPLES)),  # a smaller limit stays, a larger one is capped
])
def test_quick_limits_are_computed_not_stored(given, expected):
    options = runs.RunOptions(quick=True, train_limit=given[0], test_limit=given[1])
    assert (options.train_limit, options.test_limit) == given  # the options keep what was given
    capped = options.with_quick_limits()
    assert (capped.train_limit, capped.test_limit) == expected
    assert capped.with_quick_limits() == capped
    assert runs.RunOptions(train_limit=7).with_quick_limits().train_limit == 7  # not quick: unchanged
