"""tfds data sets by name: offline, on tfds' mock data and on small data sets prepared here
in the ArrayRecord format (no TensorFlow, no download)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from aejax import tfds_data
from aejax.data import DataError, Split

# --------------------------------------------------- prepared here, read for real

TINY_COUNTS = {"train": 12, "test": 5}


def _tiny_examples(split: str, shape: tuple[int, ...]) -> list[tuple[np.ndarray, int]]:
    """Distinct random images with labels 0..9, the same for every call."""
    rng = np.random.default_rng([TINY_COUNTS[split], shape[-1]])
    return [(rng.integers(0, 256, shape, dtype=np.uint8), int(rng.integers(10))) for _ in range(TINY_COUNTS[split])]


class _TinyBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A labelled image data set written without TensorFlow: Pillow encodes the PNGs."""

    VERSION = tfds.core.Version("1.0.0")
    SHAPE: tuple[int, int, int]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=self.SHAPE), "label": tfds.features.ClassLabel(num_classes=10)}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in TINY_COUNTS}

    def _generate_examples(self, split):
        for key, (image, label) in enumerate(_tiny_examples(split, self.SHAPE)):
            pil = Image.fromarray(image[..., 0] if self.SHAPE[-1] == 1 else image)
            yield key, {"image": pil, "label": label}


class AejaxTinyGrey(_TinyBuilder):  # registered in tfds as "aejax_tiny_grey"
    SHAPE = (6, 5, 1)


class AejaxTinyColour(_TinyBuilder):  # "aejax_tiny_colour"
    SHAPE = (4, 7, 3)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tfds data folder holding both tiny data sets as ArrayRecord files."""
    folder = tmp_path_factory.mktemp("tfds")
    for builder_class in (AejaxTinyGrey, AejaxTinyColour):
        builder_class(data_dir=str(folder), file_format="array_record").download_and_prepare()
    return folder


def _pairs(split: Split) -> list[tuple[int, bytes]]:
    """(label, image bytes) of each example, sorted: tfds stores the examples shuffled."""
    return sorted((int(label), image.tobytes()) for image, label in zip(split.images, split.labels))


@pytest.mark.parametrize("name, shape, loaded_shape", [("aejax_tiny_grey", (6, 5, 1), (6, 5)),
                                                       ("aejax_tiny_colour", (4, 7, 3), (4, 7, 3))])
def test_a_prepared_data_set_loads_every_example_exactly(tiny_dir, name, shape, loaded_shape):
    splits = tfds_data.load_tfds(name, data_dir=tiny_dir)
    assert list(splits) == ["train", "test"]
    for split, loaded in splits.items():
        assert isinstance(loaded, Split)
        assert loaded.images.shape == (TINY_COUNTS[split], *loaded_shape) and loaded.images.dtype == np.uint8
        assert loaded.labels.shape == (TINY_COUNTS[split],) and loaded.labels.dtype == np.uint8
        expected = [(label, image.reshape(loaded_shape).tobytes()) for image, label in _tiny_examples(split, shape)]
        assert _pairs(loaded) == sorted(expected)


def test_the_data_folder_comes_from_the_argument_else_tfds_data_dir(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tiny_dir))
    from_env = tfds_data.load_tfds("aejax_tiny_grey", splits=("test",))
    assert _pairs(from_env["test"]) == _pairs(tfds_data.load_tfds("aejax_tiny_grey", data_dir=tiny_dir)["test"])
    with pytest.raises(DataError, match=f"not prepared in {tmp_path}"):
        tfds_data.load_tfds("aejax_tiny_grey", data_dir=tmp_path)  # the argument wins over the variable


def test_only_the_named_splits_are_read(tiny_dir, tmp_path):
    # a copy of the grey set without its test split's file
    shutil.copytree(tiny_dir / "aejax_tiny_grey", tmp_path / "aejax_tiny_grey")
    (test_file,) = (tmp_path / "aejax_tiny_grey" / "1.0.0").glob("*-test.array_record*")
    test_file.unlink()
    assert list(tfds_data.load_tfds("aejax_tiny_grey", data_dir=tmp_path, splits=("train",))) == ["train"]
    with pytest.raises(DataError, match=f"'aejax_tiny_grey', split 'test' cannot be read .*{test_file.name}") as error:
        tfds_data.load_tfds("aejax_tiny_grey", data_dir=tmp_path)
    assert "\n" not in str(error.value)
    halves = tfds_data.load_tfds("aejax_tiny_grey", data_dir=tiny_dir, splits=("train[:50%]", "train[50%:]"))
    assert [len(split.labels) for split in halves.values()] == [6, 6]


def test_a_data_set_stored_as_tfrecord_names_the_conversion(tiny_dir, tmp_path):
    shutil.copytree(tiny_dir / "aejax_tiny_grey", tmp_path / "aejax_tiny_grey")
    info_path = tmp_path / "aejax_tiny_grey" / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"  # as `tfds build` writes by default
    info_path.write_text(json.dumps(info))
    with pytest.raises(DataError, match="stored as tfrecord, which only TensorFlow reads.*convert_format") as error:
        tfds_data.load_tfds("aejax_tiny_grey", data_dir=tmp_path)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------- tfds' mock data

@pytest.mark.parametrize("name, image_shape, num_classes", [
    ("mnist", (28, 28), 10),
    ("cifar10", (32, 32, 3), 10),
    ("svhn_cropped", (32, 32, 3), 10),
    ("emnist/letters", (28, 28), 37),
])
def test_mock_data_sets_load_as_splits(name, image_shape, num_classes):
    with tfds.testing.mock_data(num_examples=6):
        splits = tfds_data.load_tfds(name)
    assert list(splits) == ["train", "test"]
    for split in splits.values():
        assert split.images.shape == (6, *image_shape) and split.images.dtype == np.uint8
        assert split.labels.shape == (6,) and split.labels.dtype == np.uint8
        assert split.labels.max() < num_classes
        assert split.images.std() > 0  # random pixels, not a constant


def test_mock_reads_only_the_named_split():
    requested = []
    # the spy is undone before the mock (undone first, it would restore the mock for good)
    with tfds.testing.mock_data(num_examples=3), pytest.MonkeyPatch.context() as patch:
        mocked = tfds.core.DatasetBuilder.as_data_source

        def spy(self, split=None, **kwargs):
            requested.append(split)
            return mocked(self, split=split, **kwargs)

        patch.setattr(tfds.core.DatasetBuilder, "as_data_source", spy)
        splits = tfds_data.load_tfds("fashion_mnist", splits=("train",))
    assert list(splits) == ["train"] and splits["train"].images.shape == (3, 28, 28)
    assert requested == [["train"]]


def test_a_data_set_without_labelled_images_of_one_size_is_refused():
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(DataError, match="'celeb_a' has no 'label' feature \\(its features: image, landmarks"):
            tfds_data.load_tfds("celeb_a")
        with pytest.raises(DataError, match=r"'cats_vs_dogs' has images of shape \(None, None, 3\)"):
            tfds_data.load_tfds("cats_vs_dogs")


# ------------------------------------------------------------------- errors

def test_missing_tensorflow_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(DataError, match=r'^tensorflow-datasets is not installed: pip install "aejax\[tfds\]"$'):
        tfds_data.load_tfds("mnist")


def test_a_data_set_not_prepared_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    with pytest.raises(DataError) as error:
        tfds_data.load_tfds("mnist", data_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"tfds data set 'mnist' is not prepared in {tmp_path / 'mnist'}")
    assert "tfds build mnist --file_format=array_record" in message
    assert "--tfds-data-dir" in message and "TFDS_DATA_DIR" in message
    assert not list(tmp_path.iterdir())  # nothing was downloaded or written


@pytest.mark.parametrize("name, words", [("no_such_data_set", "tfds has no data set 'no_such_data_set'"),
                                         ("emnist/no_such_config", "BuilderConfig no_such_config not found")])
def test_an_unknown_name_is_a_one_line_error(tmp_path, name, words):
    with pytest.raises(DataError, match=words) as error:
        tfds_data.load_tfds(name, data_dir=tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("splits", ["train", ()])
def test_splits_must_be_a_sequence_of_names(splits):
    with pytest.raises(ValueError, match="splits must be a non-empty sequence"):
        tfds_data.load_tfds("mnist", splits=splits)


# --------------------------------------------------- a run on a tfds data set


@pytest.mark.slow
def test_a_run_reads_a_tfds_data_set_by_name(tmp_path):
    from aejax.experiments import s2_conv_ae

    out = tmp_path / "run"
    with tfds.testing.mock_data(num_examples=40):
        metrics = s2_conv_ae.main(["--quick", "--no-progress", "--tfds", "fashion_mnist", "--out", str(out)])
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["settings"]["tfds"] == "fashion_mnist" and "tfds_data_dir" not in recorded["settings"]
    assert recorded["protocol"]["split_sizes"] == {"train": 40, "test": 40}
    assert np.isfinite(metrics["test_mse"])
