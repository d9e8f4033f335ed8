"""Shared fixtures: the MNIST folder (from AEJAX_DATA_DIR), the loaded data set, and
other data sets made from it (8 classes with other counts; a tiny 3-class set); the
small VAE and CVAE of the vae and likelihood tests."""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np
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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test module, drops JAX's compiled programs. Each one keeps a few memory
    mappings, and a pytest worker that runs half the suite would otherwise reach the
    kernel's limit on them (vm.max_map_count, 65,530): XLA then crashes while compiling."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()


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

    Taken from AEJAX_DATA_DIR (CI sets it), else ``<repo>/../shared/data/mnist``;
    absolute, so links to its files made from inside tmp folders resolve.
    A missing folder is a test failure, never a skip: the data tests must run.
    """
    folder = pathlib.Path(os.environ.get("AEJAX_DATA_DIR", DEFAULT_MNIST_DIR)).resolve()
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


# The 8-class set: MNIST's digits 0..7, as many as MNIST holds of them, rounded down.
OTHER_CLASSES = 8
OTHER_COUNTS = {"train": 48_000, "test": 8_000}
TINY_CLASSES = 3
TINY_COUNTS = {"train": 30, "test": 12}


def _write_subset(folder: pathlib.Path, mnist, classes: int, counts: dict) -> pathlib.Path:
    """Writes, as plain IDX files under MNIST's names, the first ``counts[split]``
    images of each split whose label is below ``classes``."""
    from aejax import data

    folder.mkdir(parents=True, exist_ok=True)
    for split, (images_stem, labels_stem) in data.SPLITS.items():
        keep = np.flatnonzero(mnist[split].labels < classes)[: counts[split]]
        assert len(keep) == counts[split], f"MNIST's {split} split has only {len(keep)} images of digits < {classes}"
        data.write_idx(folder / images_stem, mnist[split].images[keep])
        data.write_idx(folder / labels_stem, mnist[split].labels[keep])
    return folder.resolve()


@pytest.fixture(scope="session")
def other_idx_dir(mnist, tmp_path_factory) -> pathlib.Path:
    """An absolute folder of the four IDX files (MNIST's names, plain) holding an
    8-class data set made from MNIST: train = the first 48,000 training images with
    label 0..7, test = the first 8,000 such test images; labels stay 0..7."""
    return _write_subset(tmp_path_factory.mktemp("other-idx"), mnist, OTHER_CLASSES, OTHER_COUNTS)


@pytest.fixture(scope="session")
def tiny_idx_dir(mnist, tmp_path_factory) -> pathlib.Path:
    """An absolute folder of the four IDX files (plain) holding a tiny 3-class set for
    quick runs: the first 30 training and 12 test images with label 0..2."""
    return _write_subset(tmp_path_factory.mktemp("tiny-idx"), mnist, TINY_CLASSES, TINY_COUNTS)


@pytest.fixture(scope="module")
def vae_vars():
    """(params, batch_stats) of ``support.small_vae()``; every unconditional VAE config of that size shares them."""
    import jax
    from support import small_vae

    return small_vae().init(jax.random.key(0))


@pytest.fixture(scope="module")
def cvae():
    """(model, params, batch_stats) of ``support.small_vae`` conditioned on ``CVAE_CLASSES`` labels."""
    import jax
    from support import CVAE_CLASSES, small_vae

    model = small_vae(num_classes=CVAE_CLASSES)
    params, batch_stats = model.init(jax.random.key(1))
    return model, params, batch_stats
