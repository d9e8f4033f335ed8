"""Shared fixtures: the MNIST folder (from AEJAX_DATA_DIR) and the loaded data set."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MNIST_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    """The folder of the four MNIST IDX files.

    Taken from AEJAX_DATA_DIR (CI sets it), else ``<repo>/../shared/data/mnist``.
    A missing folder is a test failure, never a skip: the data tests must run.
    """
    folder = pathlib.Path(os.environ.get("AEJAX_DATA_DIR", DEFAULT_MNIST_DIR))
    if not folder.is_dir():
        pytest.fail(
            f"MNIST data folder not found: {folder}. Set AEJAX_DATA_DIR to a folder "
            f"holding {', '.join(MNIST_FILES)}.",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """aejax.data.load_mnist(mnist_dir): {'train': Split, 'test': Split}."""
    from aejax import data

    return data.load_mnist(mnist_dir)
