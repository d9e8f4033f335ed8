"""Labelled image data sets of tensorflow-datasets (tfds) by name, read without TensorFlow.

``load_tfds("fashion_mnist")`` returns the data set's splits as ``data.Split``: images
uint8 (N, H, W) for one channel, (N, H, W, C) for more, labels uint8 (N,). Any tfds
data set with an ``image`` feature of one fixed size and a ``label`` feature of at
most 256 classes loads (mnist, fashion_mnist, kmnist, emnist/<config>, svhn_cropped,
cifar10, ...).

tfds reads a prepared data set in the ArrayRecord format through ``tfds.data_source``,
which needs no TensorFlow. Nothing is downloaded: a data set is prepared beforehand,
on a machine with internet and TensorFlow, with

    tfds build NAME --file_format=array_record [--data_dir DIR]

and its folder is found in ``data_dir`` (e.g. the ``--tfds-data-dir`` flag), else in
``$TFDS_DATA_DIR``, else in ``~/tensorflow_datasets``. A data set prepared in tfds'
default TFRecord format is converted there with ``tfds convert_format``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from aejax import data
from aejax.data import DataError

ENV_TFDS_DATA_DIR = "TFDS_DATA_DIR"
INSTALL_HINT = 'pip install "aejax[tfds]"'
IMAGE_FEATURE = "image"
LABEL_FEATURE = "label"


def _first_line(error: BaseException) -> str:
    """The first line of an exception's text (tfds' messages may list every data set)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _import_tfds() -> ModuleType:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(f"tensorflow-datasets is not installed: {INSTALL_HINT}") from None
    return tfds


def _builder(tfds: ModuleType, name: str, data_dir: str | os.PathLike | None) -> Any:
    """The tfds builder of ``name`` (nothing is read or downloaded yet)."""
    if data_dir is None:
        # tfds reads $TFDS_DATA_DIR once, when imported; here it counts when loading
        data_dir = os.environ.get(ENV_TFDS_DATA_DIR) or None
    try:
        return tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    except (ValueError, AssertionError) as e:  # an unknown name, config or version
        raise DataError(f"tfds has no data set {name!r}: {_first_line(e)}") from None


def _check_features(builder: Any, name: str) -> None:
    """A one-line DataError unless the data set has an image feature of one size and a label."""
    features = builder.info.features
    names = list(features.keys()) if hasattr(features, "keys") else []
    missing = [feature for feature in (IMAGE_FEATURE, LABEL_FEATURE) if feature not in names]
    if missing:
        raise DataError(f"tfds data set {name!r} has no {' and no '.join(repr(m) for m in missing)} feature "
                        f"(its features: {', '.join(names) or 'none by name'}); aejax needs labelled images")
    shape = tuple(features[IMAGE_FEATURE].shape)
    if len(shape) != 3 or None in shape:
        raise DataError(f"tfds data set {name!r} has images of shape {shape}: aejax needs one size (H, W, C)")


def _not_prepared(name: str, folder: str) -> DataError:
    return DataError(
        f"tfds data set {name!r} is not prepared in {folder}: on a machine with internet run "
        f"`tfds build {name} --file_format=array_record --data_dir=DIR` (TensorFlow needed there), "
        f"bring DIR here and point --tfds-data-dir (or {ENV_TFDS_DATA_DIR}) at it")


def _data_sources(tfds: ModuleType, builder: Any, name: str, splits: Sequence[str]) -> list[Sequence[Any]]:
    """One random-access source of examples per split; a one-line DataError if they cannot be opened."""
    try:
        return list(builder.as_data_source(split=list(splits)))
    except Exception as e:  # tfds raises many kinds; each is told apart below
        folder = str(builder.data_dir)
        if not builder.is_prepared():
            raise _not_prepared(name, folder) from None
        random_access = tfds.core.FileFormat.with_random_access()
        if not builder.info.available_file_formats() & random_access:
            raise DataError(
                f"tfds data set {name!r} in {folder} is stored as {builder.info.file_format.value}, which only "
                f"TensorFlow reads: convert it with `tfds convert_format --dataset_version_dir={folder} "
                f"--out_file_format=array_record` where TensorFlow is installed") from None
        raise DataError(f"tfds data set {name!r} in {folder} cannot be read: {_first_line(e)}") from None


def _read_split(source: Sequence[Any], name: str, split: str, folder: str) -> data.Split:
    """Every example of one split: images uint8 (N, H, W[, C]), labels uint8 (N,)."""
    where = f"tfds data set {name!r}, split {split!r}"
    try:  # the files are opened and decoded only here, example by example
        examples = [source[i] for i in range(len(source))]
    except Exception as e:  # array_record and tfds raise RuntimeError, ValueError, OSError ...
        raise DataError(f"{where} cannot be read from {folder}: {_first_line(e)}") from None
    if not examples:
        raise DataError(f"{where} has no examples")
    images = np.stack([np.asarray(example[IMAGE_FEATURE]) for example in examples])
    labels = np.asarray([example[LABEL_FEATURE] for example in examples])
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8, got {images.dtype}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(examples),):
        raise DataError(f"{where}: labels must be one integer per image, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() > 255:
        raise DataError(f"{where}: labels must be in [0, 255], got values in [{labels.min()}, {labels.max()}]")
    if images.shape[-1] == 1:  # one channel: (N, H, W), as the IDX loaders give
        images = images[..., 0]
    return data.Split(images, labels.astype(np.uint8))


def load_tfds(name: str, *, data_dir: str | os.PathLike | None = None,
              splits: Sequence[str] = ("train", "test")) -> dict[str, data.Split]:
    """Loads the ``splits`` of the prepared tfds data set ``name`` ({split: Split}).

    ``name``: a tfds name, with a config or version where it has them
    (``"emnist/balanced"``, ``"mnist:3.0.1"``); ``splits``: tfds split names, slices
    included (``"train[:10%]"``); only these are read. ``data_dir``: the tfds data
    folder (default ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``).
    Images are uint8 (N, H, W) for one channel, else (N, H, W, C); labels uint8 (N,).
    Raises a one-line DataError when tensorflow-datasets is missing, the data set is
    unknown, not prepared, has no labelled images of one size, or cannot be read.
    """
    if isinstance(splits, str) or not splits:
        raise ValueError(f"splits must be a non-empty sequence of split names, got {splits!r}")
    tfds = _import_tfds()
    builder = _builder(tfds, name, data_dir)
    _check_features(builder, name)
    sources = _data_sources(tfds, builder, name, splits)
    return {split: _read_split(source, name, split, str(builder.data_dir)) for split, source in zip(splits, sources)}
