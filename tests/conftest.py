"""Shared fixtures: the MNIST folder (from AEJAX_DATA_DIR) and the loaded data set."""

from __future__ import annotations

import os
import pathlib
import tempfile

import pytest

# Identical XLA programs (one model compiled by several tests, and by the experiment
# subprocesses some tests start) compile once per machine: JAX's persistent compilation
# cache, shared by the pytest-xdist workers and inherited by subprocesses through the
# environment. Compiling dominates this suite's time on a CPU; the executables are the same.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(pathlib.Path(tempfile.gettempdir()) / f"aejax-tests-xla-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# LLVM's cheapest optimisation level: about 30% less compile time for the whole suite,
# which runs tiny models (numerics are checked against tolerances, speed lives in benchmarks/).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

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
