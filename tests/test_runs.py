"""aejax.runs: the data a run sees under each protocol, and what metrics.json records of it."""

from __future__ import annotations

import dataclasses
import json
import pathlib

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
    """The hold-out is taken from the whole training set, so a limited run validates on a sample of the same images."""
    options = runs.RunOptions(data_dir=other_idx_dir, train_limit=1000, test_limit=300)
    splits = runs.load_splits(options, validation=True)
    assert {k: len(v.labels) for k, v in splits.items()} == {"train": 1000, "validation": 300, "test": 300}
    whole = runs.load_splits(runs.RunOptions(data_dir=other_idx_dir), validation=True)
    held = {image.tobytes() for image in whole["validation"].images}
    assert all(image.tobytes() in held for image in splits["validation"].images)
    np.testing.assert_array_equal(splits["validation"].images, runs.stratified_cut(whole["validation"], 300).images)


def test_a_cut_keeps_every_class_of_a_set_stored_class_by_class(other_idx_dir):
    whole = runs.load_splits(runs.RunOptions(data_dir=other_idx_dir))["train"]
    order = np.argsort(whole.labels, kind="stable")  # class by class, as some data sets are stored
    by_class = data.Split(whole.images[order], whole.labels[order])
    cut = runs.stratified_cut(by_class, 800)
    counts = np.bincount(cut.labels, minlength=8)
    expected = np.bincount(by_class.labels, minlength=8) * 800 / len(by_class.labels)
    assert len(cut.labels) == 800 and np.all(np.abs(counts - expected) <= 1)  # each class its share
    assert np.all(np.diff(cut.labels.astype(int)) >= 0)  # kept in the split's order
    again = runs.stratified_cut(by_class, 800)
    np.testing.assert_array_equal(again.images, cut.images)  # seeded: the same sample for every run
    assert runs.stratified_cut(by_class, None) is by_class and runs.stratified_cut(by_class, 10**6) is by_class


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


def test_tfds_and_a_data_folder_exclude_each_other():
    with pytest.raises(ValueError, match="not both"):
        runs.RunOptions(data_dir=pathlib.Path("d"), tfds="mnist")
    with pytest.raises(ValueError, match="needs --tfds"):
        runs.RunOptions(tfds_data_dir=pathlib.Path("d"))


@pytest.mark.slow
def test_a_run_writes_its_epochs_numbers_and_figures_to_tensorboard(tiny_idx_dir, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    from aejax.experiments import s2_conv_ae

    out = tmp_path / "run"
    s2_conv_ae.main(["--quick", "--no-progress", "--data-dir", str(tiny_idx_dir), "--out", str(out), "--epochs", "1",
                     "--tensorboard", "--validation"])
    metrics = json.loads((out / "metrics.json").read_text())
    events = event_accumulator.EventAccumulator(str(out / runs.TENSORBOARD), size_guidance={"images": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    # every training mean of the epoch, at step 1, as the history holds it (float32)
    for name, value in metrics["train_history"][0].items():
        (event,) = events.Scalars(f"train/{name}")
        assert event.step == 1 and event.value == pytest.approx(value, rel=1e-6)
    assert [e.value for e in events.Scalars("final/test_mse")] == [pytest.approx(metrics["test_mse"], rel=1e-6)]
    assert not [tag for tag in scalars if tag.startswith(("final/settings", "final/protocol"))]
    figures = sorted(p.stem for p in out.glob("*.png"))
    assert figures and sorted(events.Tags()["images"]) == figures
    image = events.Images(figures[0])[0]
    from PIL import Image
    assert (image.width, image.height) == Image.open(out / f"{figures[0]}.png").size
