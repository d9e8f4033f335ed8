"""aejax.data: loading and validating IDX files (MNIST and other data sets, greyscale or with
channels), .npz files, sources, and the array helpers."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import pathlib
import urllib.error
import urllib.request

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import data

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
ALL_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def _link(src_dir: pathlib.Path, dst_dir: pathlib.Path, names) -> None:
    """Symlinks (no copies of the big files) ``names`` from src_dir into dst_dir."""
    for name in names:
        # an absolute target: a relative one would resolve against dst_dir
        (dst_dir / name).symlink_to((src_dir / name).resolve())


def _write_idx(path: pathlib.Path, magic: int, dims, payload: bytes | None = None) -> pathlib.Path:
    """A hand-made IDX file: big-endian uint32 magic and dims, then the bytes."""
    header = np.asarray([magic, *dims], dtype=">u4").tobytes()
    if payload is None:
        payload = bytes(int(np.prod(dims)))
    path.write_bytes(header + payload)
    return path


def _assert_names(excinfo, path: pathlib.Path) -> None:
    assert str(path) in str(excinfo.value), f"message does not name {path}: {excinfo.value}"


# ------------------------------------------------------------- the real files

def test_load_mnist_shapes_and_dtypes(mnist):
    assert set(mnist) == {"train", "test"}
    train, test = mnist["train"], mnist["test"]
    chex.assert_shape(train.images, (60_000, 28, 28))
    chex.assert_shape(train.labels, (60_000,))
    chex.assert_shape(test.images, (10_000, 28, 28))
    chex.assert_shape(test.labels, (10_000,))
    for array in (train.images, train.labels, test.images, test.labels):
        chex.assert_type(array, np.uint8)
        assert array.dtype == np.uint8


def test_load_mnist_labels_and_pixel_statistics(mnist):
    for split in ("train", "test"):
        labels = mnist[split].labels
        assert labels.min() == 0 and labels.max() == 9
        # every digit occurs, none is absent
        np.testing.assert_array_equal(np.unique(labels), np.arange(10))
    mean = mnist["train"].images.mean(dtype=np.float64) / 255.0
    assert abs(mean - 0.1307) < 1e-3, mean
    assert mnist["train"].images.max() == 255 and mnist["train"].images.min() == 0


def test_mnist_dir_is_absolute(mnist_dir):
    # AEJAX_DATA_DIR may be relative; links made from tmp folders need an absolute target
    assert mnist_dir.is_absolute() and (mnist_dir / TEST_LABELS).is_file()


def test_load_mnist_via_env_var(mnist_dir, mnist, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA_DIR, str(mnist_dir))
    test = data.load_split_from_dir(data.resolve_data_dir(), "test")
    np.testing.assert_array_equal(test.images, mnist["test"].images)
    np.testing.assert_array_equal(test.labels, mnist["test"].labels)


# ------------------------------------------------------------- validation

@pytest.mark.parametrize("missing", ALL_FILES)
def test_missing_file_raises_naming_it(mnist_dir, tmp_path, missing):
    _link(mnist_dir, tmp_path, [n for n in ALL_FILES if n != missing])
    with pytest.raises(data.DataError, match="MNIST file not found") as excinfo:
        data.load_mnist(tmp_path)
    _assert_names(excinfo, tmp_path / missing)


def test_truncated_gzip_raises_naming_it(mnist_dir, tmp_path):
    raw = (mnist_dir / TEST_IMAGES).read_bytes()
    (tmp_path / TEST_IMAGES).write_bytes(raw[: len(raw) // 2])
    _link(mnist_dir, tmp_path, [TEST_LABELS])
    with pytest.raises(data.DataError, match="corrupt or truncated") as excinfo:
        data.load_split_from_dir(tmp_path, "test")
    _assert_names(excinfo, tmp_path / TEST_IMAGES)
    # read_idx directly, too (the labels file, cut to 100 bytes)
    cut = tmp_path / "cut" / TEST_LABELS
    cut.parent.mkdir()
    cut.write_bytes((mnist_dir / TEST_LABELS).read_bytes()[:100])
    with pytest.raises(data.DataError, match="corrupt or truncated") as excinfo:
        data.read_idx(cut, data.LABELS_MAGIC, 10_000)
    _assert_names(excinfo, cut)


def test_corrupt_gzip_stream_raises_data_error(mnist_dir, tmp_path):
    raw = bytearray((mnist_dir / TEST_LABELS).read_bytes())
    for i in range(40, 48):  # inside the deflate stream, just past the gzip header
        raw[i] ^= 0xFF
    path = tmp_path / TEST_LABELS
    path.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match="corrupt or truncated") as excinfo:
        data.read_idx(path, data.LABELS_MAGIC, 10_000)
    _assert_names(excinfo, path)


def test_truncated_and_padded_plain_file_raise(tmp_path):
    short = tmp_path / "short-labels"
    _write_idx(short, data.LABELS_MAGIC, [10], bytes(9))
    with pytest.raises(data.DataError, match="truncated or padded: 9 data bytes, expected 10") as excinfo:
        data.read_idx(short, data.LABELS_MAGIC, 10)
    _assert_names(excinfo, short)
    padded = tmp_path / "padded-labels"
    _write_idx(padded, data.LABELS_MAGIC, [10], bytes(11))
    with pytest.raises(data.DataError, match="truncated or padded: 11 data bytes") as excinfo:
        data.read_idx(padded, data.LABELS_MAGIC, 10)
    _assert_names(excinfo, padded)
    header_only = tmp_path / "header-only"
    header_only.write_bytes(np.asarray([data.IMAGES_MAGIC], ">u4").tobytes())
    with pytest.raises(data.DataError, match="truncated: 4 bytes, header needs 16") as excinfo:
        data.read_idx(header_only, data.IMAGES_MAGIC)
    _assert_names(excinfo, header_only)


def test_wrong_magic_raises_naming_file(tmp_path):
    # a labels file where an images file is expected, and a made-up magic number
    labels_as_images = _write_idx(tmp_path / "labels", data.LABELS_MAGIC, [3, 28, 28])
    with pytest.raises(data.DataError, match="magic") as excinfo:
        data.read_idx(labels_as_images, data.IMAGES_MAGIC)
    _assert_names(excinfo, labels_as_images)
    bogus = _write_idx(tmp_path / "bogus", 2052, [3])
    with pytest.raises(data.DataError, match="2052") as excinfo:
        data.read_idx(bogus, data.LABELS_MAGIC)
    _assert_names(excinfo, bogus)


def test_wrong_count_raises_naming_file(tmp_path):
    path = _write_idx(tmp_path / "labels", data.LABELS_MAGIC, [5], bytes(range(5)))
    with pytest.raises(data.DataError, match="holds 5 items, expected 10000") as excinfo:
        data.read_idx(path, data.LABELS_MAGIC, expected_count=10_000)
    _assert_names(excinfo, path)
    # the same file is fine when its count is what is expected
    np.testing.assert_array_equal(data.read_idx(path, data.LABELS_MAGIC, 5), np.arange(5, dtype=np.uint8))


def test_wrong_count_in_split_folder(mnist_dir, tmp_path):
    # images from the real t10k file but a plain labels file with only 5 labels:
    # any count loads, but images and labels must agree
    _link(mnist_dir, tmp_path, [TEST_IMAGES])
    labels = _write_idx(tmp_path / "t10k-labels-idx1-ubyte", data.LABELS_MAGIC, [5], bytes(5))
    with pytest.raises(data.DataError, match="holds 5 labels but .* holds 10000 images") as excinfo:
        data.load_split_from_dir(tmp_path, "test")
    _assert_names(excinfo, labels)
    # an expected count (MNIST's, for the cache) is checked against the headers
    data.write_idx(labels, np.zeros(10_000, np.uint8))
    assert len(data.load_split_from_dir(tmp_path, "test").labels) == 10_000
    with pytest.raises(data.DataError, match="holds 10000 items, expected 60000") as excinfo:
        data.load_split_from_dir(tmp_path, "test", expected_count=60_000)
    _assert_names(excinfo, tmp_path / TEST_IMAGES)


def test_empty_image_side_and_label_range_raise(tmp_path):
    empty = _write_idx(tmp_path / "empty-images", data.IMAGES_MAGIC, [2, 0, 28])
    with pytest.raises(data.DataError, match=r"holds images of shape \(0, 28\); every side must be at least 1") \
            as excinfo:
        data.read_idx(empty, data.IMAGES_MAGIC)
    _assert_names(excinfo, empty)
    no_channels = _write_idx(tmp_path / "no-channels", data.COLOUR_IMAGES_MAGIC, [2, 4, 4, 0])
    with pytest.raises(data.DataError, match=r"holds images of shape \(4, 4, 0\)"):
        data.read_idx(no_channels, data.IMAGES_MAGIC)
    # labels above 9 are another data set's classes, refused only when 10 classes are required
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", data.IMAGES_MAGIC, [10_000, 28, 28])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", data.LABELS_MAGIC, [10_000], bytes([10]) * 10_000)
    assert data.load_split_from_dir(tmp_path, "test").labels.max() == 10
    with pytest.raises(data.DataError, match="exceed 9"):
        data.load_split_from_dir(tmp_path, "test", num_classes=10)


@pytest.mark.parametrize("shape, kept", [((32, 32), (32, 32)), ((20, 24, 3), (20, 24, 3)), ((9, 7, 1), (9, 7))])
def test_a_folder_of_any_image_shape_loads(tmp_path, shape, kept):
    """Greyscale (N, H, W) IDX files and 4-D ones with channels; one channel is squeezed, as in ``Split``."""
    rng = np.random.default_rng(0)
    images = {split: rng.integers(0, 256, (4, *shape), dtype=np.uint8) for split in data.SPLITS}
    for split, (images_stem, labels_stem) in data.SPLITS.items():
        data.write_idx(tmp_path / images_stem, images[split])
        data.write_idx(tmp_path / labels_stem, np.arange(4, dtype=np.uint8))
    splits = data.load_dataset(tmp_path)
    for split in data.SPLITS:
        assert splits[split].images.shape == (4, *kept)
        np.testing.assert_array_equal(splits[split].images.reshape(4, *shape), images[split])
        assert data.image_shape(splits[split]) == (*shape[:2], shape[2] if len(shape) == 3 else 1)


def test_an_empty_image_side_in_a_folder_is_one_line_naming_the_file(tmp_path):
    for split, (images_stem, labels_stem) in data.SPLITS.items():
        _write_idx(tmp_path / images_stem, data.IMAGES_MAGIC, [4, 32, 0])
        data.write_idx(tmp_path / labels_stem, np.zeros(4, np.uint8))
    with pytest.raises(data.DataError, match="every side must be at least 1") as excinfo:
        data.load_dataset(tmp_path)
    _assert_names(excinfo, tmp_path / "train-images-idx3-ubyte")
    assert "\n" not in str(excinfo.value)


def test_label_range_error_names_the_gzip_file(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", data.IMAGES_MAGIC, [10_000, 28, 28])
    header = np.asarray([data.LABELS_MAGIC, 10_000], ">u4").tobytes()
    labels = tmp_path / TEST_LABELS
    labels.write_bytes(gzip.compress(header + bytes([10]) * 10_000))
    with pytest.raises(data.DataError, match="exceed 9") as excinfo:
        data.load_split_from_dir(tmp_path, "test", num_classes=10)
    _assert_names(excinfo, labels)


def test_unknown_split_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="split must be one of .*'validation'"):
        data.load_split_from_dir(tmp_path, "validation")


def test_plain_files_read_like_gzip(mnist_dir, mnist, tmp_path):
    for name in (TEST_IMAGES, TEST_LABELS):
        with gzip.open(mnist_dir / name, "rb") as f:
            (tmp_path / name.removesuffix(".gz")).write_bytes(f.read())
    assert not list(tmp_path.glob("*.gz"))
    plain = data.load_split_from_dir(tmp_path, "test")
    chex.assert_type([plain.images, plain.labels], np.uint8)
    np.testing.assert_array_equal(plain.images, mnist["test"].images)
    np.testing.assert_array_equal(plain.labels, mnist["test"].labels)


# ------------------------------------------------------------- sources

def _forbid_network(monkeypatch):
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_empty_explicit_dir_does_not_fall_back(mnist_dir, tmp_path, monkeypatch):
    # every other source would work: env var, a complete cache; none may be used
    monkeypatch.setenv(data.ENV_DATA_DIR, str(mnist_dir))
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(mnist_dir))
    calls = _forbid_network(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError, match="not found") as excinfo:
        data.load_mnist(empty)
    assert str(empty) in str(excinfo.value)
    assert calls == []
    assert data.resolve_data_dir(empty) == empty


def test_resolve_data_dir_explicit_beats_env(tmp_path, monkeypatch):
    explicit, from_env = tmp_path / "explicit", tmp_path / "env"
    monkeypatch.setenv(data.ENV_DATA_DIR, str(from_env))
    assert data.resolve_data_dir(explicit) == explicit
    assert data.resolve_data_dir(str(explicit)) == explicit
    assert data.resolve_data_dir() == from_env
    assert data.resolve_data_dir(None, allow_download=False) == from_env


def test_resolve_data_dir_uses_complete_cache(mnist_dir, monkeypatch):
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(mnist_dir))
    calls = _forbid_network(monkeypatch)
    assert data.resolve_data_dir() == mnist_dir
    assert calls == []


def test_download_fails_fast_offline(tmp_path, monkeypatch):
    calls = _forbid_network(monkeypatch)
    target = tmp_path / "cache"
    with pytest.raises(data.DataError, match="could not download") as excinfo:
        data.download(target)
    message = str(excinfo.value)
    assert "--data-dir" in message
    assert data.ENV_DATA_DIR in message
    # one attempt per mirror for the first file, then it gives up
    assert len(calls) == len(data.MIRRORS)
    assert list(target.iterdir()) == []


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def test_no_source_at_all_fails_fast_with_what_to_do(tmp_path, monkeypatch):
    """No folder named, an empty cache, no network and no prepared tfds mnist: one DataError that
    says how to point aejax at the files, after one attempt per mirror and no tfds download."""
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    calls = _forbid_network(monkeypatch)
    with pytest.raises(data.DataError, match="no MNIST data found") as excinfo:
        data.load_mnist(splits=("test",))
    assert "--data-dir" in str(excinfo.value) and data.ENV_DATA_DIR in str(excinfo.value)
    assert len(calls) == len(data.MIRRORS)
    assert not (tmp_path / "tfds").exists() or not any((tmp_path / "tfds").rglob("*.array_record*"))


def test_download_checksum_mismatch_saves_nothing(tmp_path, monkeypatch):
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        return _FakeResponse(b"not the MNIST file you are looking for")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(data.DataError, match="checksum mismatch") as excinfo:
        data.download(tmp_path)
    assert "--data-dir" in str(excinfo.value)
    assert len(calls) == len(data.MIRRORS)
    assert list(tmp_path.iterdir()) == []


def test_download_dropped_connection_raises_data_error(tmp_path, monkeypatch):
    class _Dropped(_FakeResponse):
        def read(self, *args):
            raise http.client.IncompleteRead(b"partial", 1000)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: _Dropped(b""))
    with pytest.raises(data.DataError, match="--data-dir"):
        data.download(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_saves_verified_files(mnist_dir, tmp_path, monkeypatch):
    # The shared train-images file is a reordering (its MD5 differs from the
    # official one), so place it beforehand: download() must skip existing files.
    _link(mnist_dir, tmp_path, [TRAIN_IMAGES])
    served = []

    def urlopen(url, *args, **kwargs):
        name = url.rsplit("/", 1)[-1]
        served.append(name)
        return _FakeResponse((mnist_dir / name).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert data.download(tmp_path) == tmp_path
    assert sorted(served) == sorted([TRAIN_LABELS, TEST_IMAGES, TEST_LABELS])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ALL_FILES)
    for name in served:
        digest = hashlib.md5((tmp_path / name).read_bytes()).hexdigest()
        assert digest == data.OFFICIAL_MD5[name]


# ------------------------------------------------------------- other data sets

def test_other_idx_dir_loads_with_its_own_counts_and_classes(other_idx_dir, mnist):
    splits = data.load_mnist(other_idx_dir)
    chex.assert_shape([splits["train"].images, splits["train"].labels], [(48_000, 28, 28), (48_000,)])
    chex.assert_shape([splits["test"].images, splits["test"].labels], [(8_000, 28, 28), (8_000,)])
    assert data.num_classes(splits) == 8
    for split, count in (("train", 48_000), ("test", 8_000)):
        np.testing.assert_array_equal(np.unique(splits[split].labels), np.arange(8))
        keep = np.flatnonzero(mnist[split].labels < 8)[:count]
        np.testing.assert_array_equal(splits[split].images, mnist[split].images[keep])
        np.testing.assert_array_equal(splits[split].labels, mnist[split].labels[keep])
    # the general entry point reads the same folder alike
    again = data.load_dataset(other_idx_dir)
    np.testing.assert_array_equal(again["test"].labels, splits["test"].labels)
    dataset = data.device_dataset(splits["test"], limit=100)
    assert int(dataset["label"].max()) <= 7


def test_other_idx_dir_via_env_var(other_idx_dir, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA_DIR, str(other_idx_dir))
    _forbid_network(monkeypatch)
    assert len(data.load_mnist()["test"].images) == 8_000


def test_cache_folder_must_hold_mnist(other_idx_dir, monkeypatch):
    # the cache is MNIST's own folder: other counts there are an error, not another data set
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv(data.ENV_CACHE_DIR, str(other_idx_dir))
    calls = _forbid_network(monkeypatch)
    with pytest.raises(data.DataError, match="holds 48000 items, expected 60000") as excinfo:
        data.load_mnist()
    _assert_names(excinfo, other_idx_dir / "train-images-idx3-ubyte")
    assert calls == []


def test_num_classes_comes_from_the_labels(mnist):
    assert data.num_classes(mnist) == 10
    assert data.num_classes([mnist["test"]]) == 10
    three = data.Split.from_arrays(np.zeros((4, 28, 28), np.uint8), np.array([0, 2, 1, 2]))
    assert data.num_classes(three) == 3
    assert data.num_classes({"train": three, "test": data.Split.from_arrays(three.images, [0, 0, 0, 5])}) == 6
    assert data.num_classes([data.Split(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))]) == 0


@pytest.mark.parametrize("path_name", ["labels-idx1-ubyte", "images-idx3-ubyte.gz", "colour-images.gz"])
def test_write_idx_read_idx_round_trip(tmp_path, path_name):
    rng = np.random.default_rng(0)
    if path_name.startswith("labels"):
        array, magic = rng.integers(0, 256, 50).astype(np.int64), data.LABELS_MAGIC  # int64 stored as uint8
    elif path_name.startswith("colour"):
        array, magic = rng.integers(0, 256, (7, 32, 30, 3)).astype(np.uint8), data.COLOUR_IMAGES_MAGIC
    else:
        array, magic = rng.integers(0, 256, (7, 28, 28)).astype(np.uint8), data.IMAGES_MAGIC
    path = data.write_idx(tmp_path / path_name, array)
    assert path == tmp_path / path_name
    back = data.read_idx(path, data.LABELS_MAGIC if magic == data.LABELS_MAGIC else data.IMAGES_MAGIC, len(array))
    assert back.dtype == np.uint8 and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    # the gzip form is a real gzip stream; the plain form is header + bytes
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    assert np.frombuffer(raw[:8], ">u4").tolist() == [magic, len(array)]
    assert len(raw) == 4 * (1 + array.ndim) + array.size


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 28), np.uint8), r"labels \(N,\) or images \(N, H, W\) or \(N, H, W, C\), got shape \(2, 28\)"),
    (np.zeros((2, 2, 2, 2, 2), np.uint8), r"got shape \(2, 2, 2, 2, 2\)"),
    (np.full(3, 256), r"integers in \[0, 255\], got int64"),
    (np.full(3, -1), r"integers in \[0, 255\]"),
    (np.zeros(3, np.float32), r"integers in \[0, 255\], got float32"),
])
def test_write_idx_refuses_what_idx_cannot_hold(tmp_path, array, message):
    with pytest.raises(ValueError, match=message):
        data.write_idx(tmp_path / "out", array)
    assert not (tmp_path / "out").exists()


def test_split_from_arrays():
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28, 1).astype(np.uint8)
    split = data.Split.from_arrays(images, np.array([4, 0, 11], np.int64))
    chex.assert_shape([split.images, split.labels], [(3, 28, 28), (3,)])
    chex.assert_type([split.images, split.labels], np.uint8)
    np.testing.assert_array_equal(split.images, images[..., 0])
    np.testing.assert_array_equal(split.labels, [4, 0, 11])


def test_split_from_arrays_keeps_colour_channels():
    images = np.arange(2 * 5 * 6 * 3).reshape(2, 5, 6, 3).astype(np.uint8)
    split = data.Split.from_arrays(images, [1, 0])
    chex.assert_shape(split.images, (2, 5, 6, 3))
    np.testing.assert_array_equal(split.images, images)
    assert data.image_shape(split) == (5, 6, 3) == data.image_shape(images)
    assert data.image_shape(images[..., 0]) == (5, 6, 1)
    with pytest.raises(ValueError, match=r"images must be \(N, H, W\) or \(N, H, W, C\), got shape \(2, 5\)"):
        data.image_shape(np.zeros((2, 5)))


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((2, 32), np.uint8), [0, 1], r"images must be \(N, H, W\) greyscale or \(N, H, W, C\) .* got shape \(2, 32\)"),
    (np.zeros((2, 28, 0, 3), np.uint8), [0, 1], r"at least one pixel and channel, got shape \(2, 28, 0, 3\)"),
    (np.zeros((2, 28, 28), np.float32), [0, 1], r"images must be uint8 \(0..255\), got float32"),
    (np.zeros((2, 28, 28), np.uint8), [0, 1, 2], r"labels must be integers of shape \(2,\), got int64 \(3,\)"),
    (np.zeros((2, 28, 28), np.uint8), [0.0, 1.0], r"labels must be integers of shape \(2,\), got float64"),
    (np.zeros((2, 28, 28), np.uint8), [0, 256], r"labels must be in \[0, 255\], got values in \[0, 256\]"),
    (np.zeros((2, 28, 28), np.uint8), [-1, 3], r"labels must be in \[0, 255\]"),
])
def test_split_from_arrays_refuses_bad_input(images, labels, message):
    with pytest.raises(ValueError, match=message):
        data.Split.from_arrays(images, np.asarray(labels))


def _keras_npz(path, mnist, **override):
    arrays = {"x_train": mnist["train"].images[:40], "y_train": mnist["train"].labels[:40].astype(np.int64),
              "x_test": mnist["test"].images[:20, :, :, None], "y_test": mnist["test"].labels[:20]}
    arrays.update(override)
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def test_load_npz_keras_layout(tmp_path, mnist):
    path = _keras_npz(tmp_path / "mnist.npz", mnist)
    for splits in (data.load_npz(path), data.load_dataset(path), data.load_mnist(path)):
        assert set(splits) == {"train", "test"}
        chex.assert_shape([splits["train"].images, splits["test"].images], [(40, 28, 28), (20, 28, 28)])
        chex.assert_type([splits["train"].labels, splits["test"].labels], np.uint8)
        np.testing.assert_array_equal(splits["test"].images, mnist["test"].images[:20])
        np.testing.assert_array_equal(splits["train"].labels, mnist["train"].labels[:40])


def test_load_npz_errors_name_the_file_and_key(tmp_path, mnist):
    missing = _keras_npz(tmp_path / "missing.npz", mnist, y_test=None)
    with pytest.raises(data.DataError, match=r"has no array 'y_test' \(holds \['x_test', 'x_train', 'y_train'\]\)") \
            as excinfo:
        data.load_npz(missing)
    _assert_names(excinfo, missing)
    wrong = _keras_npz(tmp_path / "wrong.npz", mnist, x_test=np.zeros((20, 784), np.uint8))
    with pytest.raises(data.DataError, match=r"x_test/y_test: images must be \(N, H, W\) greyscale") as excinfo:
        data.load_npz(wrong)
    _assert_names(excinfo, wrong)
    with pytest.raises(data.DataError, match="npz file not found") as excinfo:
        data.load_npz(tmp_path / "nowhere.npz")
    _assert_names(excinfo, tmp_path / "nowhere.npz")
    not_zip = tmp_path / "text.npz"
    not_zip.write_text("not an archive")
    with pytest.raises(data.DataError, match="corrupt or not an npz archive") as excinfo:
        data.load_npz(not_zip)
    _assert_names(excinfo, not_zip)
    single = tmp_path / "single.npz"
    with single.open("wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(data.DataError, match="not an npz archive \\(holds a single array\\)") as excinfo:
        data.load_npz(single)
    _assert_names(excinfo, single)


def test_load_npz_of_colour_images(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(6) % 3,
              "x_test": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(4) % 3}
    np.savez(tmp_path / "colour.npz", **arrays)
    splits = data.load_npz(tmp_path / "colour.npz")
    chex.assert_shape([splits["train"].images, splits["test"].images], [(6, 32, 32, 3), (4, 32, 32, 3)])
    np.testing.assert_array_equal(splits["test"].images, arrays["x_test"])
    assert data.num_classes(splits) == 3


def test_check_split_and_device_dataset_take_any_classes():
    images = np.zeros((3, 28, 28), np.uint8)
    data.check_split(images, np.array([0, 4, 17]))
    dataset = data.device_dataset(data.Split(images, np.array([0, 4, 17], np.uint8)))
    np.testing.assert_array_equal(np.asarray(dataset["label"]), [0, 4, 17])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\), got values in \[0, 17\]"):
        data.device_dataset(data.Split(images, np.array([0, 4, 17], np.uint8)), num_classes=10)
    with pytest.raises(ValueError, match=r"labels must be non-negative, got values in \[-1, 4\]"):
        data.check_split(images, np.array([0, 4, -1]))


def test_colour_images_reach_the_device_and_the_batch():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    dataset = data.device_dataset(data.Split(images, np.arange(5, dtype=np.uint8)))
    chex.assert_shape(dataset["image"], (5, 6, 7, 3))
    batch = data.gather_batch(dataset, jnp.asarray([4, 0]))
    chex.assert_shape(batch["image"], (2, 6, 7, 3))
    chex.assert_trees_all_close(batch["image"], images[[4, 0]].astype(np.float32) / 255.0)
    chex.assert_trees_all_close(data.to_float_nhwc(images), images.astype(np.float32) / 255.0)
    for bad in (np.zeros((3, 6), np.uint8), np.zeros((3, 6, 0), np.uint8), np.zeros((3, 6, 7), np.float32)):
        with pytest.raises(ValueError, match=r"images must be uint8 of shape \(N, H, W\) or \(N, H, W, C\)"):
            data.check_split(bad, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"dataset\['image'\] must be uint8 or float of shape"):
        data.gather_batch({"image": jnp.zeros((3, 6), jnp.uint8), "label": jnp.zeros(3, jnp.int32)}, jnp.arange(2))


# ------------------------------------------------------------- array helpers

def test_to_float_nhwc():
    images = np.array([[[0, 255], [128, 1]]] * 3, dtype=np.uint8)  # (3, 2, 2)
    out = data.to_float_nhwc(images)
    chex.assert_shape(out, (3, 2, 2, 1))
    chex.assert_type(out, jnp.float32)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out[0, 0, 1, 0]) == 1.0
    assert float(out[0, 0, 0, 0]) == 0.0
    chex.assert_trees_all_close(out[..., 0], images.astype(np.float32) / 255.0)


def test_to_float_nhwc_real_images(mnist):
    out = data.to_float_nhwc(mnist["test"].images[:16])
    chex.assert_shape(out, (16, 28, 28, 1))
    chex.assert_type(out, jnp.float32)
    assert float(out.max()) == 1.0 and float(out.min()) == 0.0


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 28, 28), np.float32), np.zeros((2, 28, 28), np.int32), np.zeros((2, 784), np.uint8)],
)
def test_to_float_nhwc_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="images must be uint8 of shape \\(N, H, W\\)"):
        data.to_float_nhwc(bad)


def test_add_gaussian_noise():
    images = jnp.full((200, 28, 28, 1), 0.5, jnp.float32)
    key = jax.random.key(0)
    noisy = data.add_gaussian_noise(key, images, 0.3)
    chex.assert_shape(noisy, images.shape)
    chex.assert_type(noisy, jnp.float32)
    chex.assert_trees_all_equal(noisy, data.add_gaussian_noise(key, images, 0.3))
    other = data.add_gaussian_noise(jax.random.key(1), images, 0.3)
    assert not np.allclose(np.asarray(noisy), np.asarray(other))
    delta = np.asarray(noisy - images, np.float64)
    assert abs(delta.std() - 0.3) < 0.3 * 0.01, delta.std()  # 156,800 samples
    assert abs(delta.mean()) < 0.005
    # unclipped, as in the lecture
    assert float(noisy.min()) < 0.0 and float(noisy.max()) > 1.0
    # std 0 is the identity
    chex.assert_trees_all_equal(data.add_gaussian_noise(key, images, 0.0), images)


def _as_numpy_batches(batches):
    return [np.asarray(b) for b in batches]


def test_shuffled_batches_cover_every_index_once():
    batches = _as_numpy_batches(data.shuffled_batches(jax.random.key(0), 10, 3))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    # divisible: all batches full, nothing missing
    batches = _as_numpy_batches(data.shuffled_batches(jax.random.key(0), 12, 4))
    assert [len(b) for b in batches] == [4, 4, 4]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(12))


def test_shuffled_batches_drop_last():
    batches = _as_numpy_batches(data.shuffled_batches(jax.random.key(0), 10, 3, drop_last=True))
    assert [len(b) for b in batches] == [3, 3, 3]
    seen = np.concatenate(batches)
    assert len(np.unique(seen)) == 9 and seen.min() >= 0 and seen.max() <= 9
    # drop_last keeps the same order as the full epoch, minus the tail
    full = _as_numpy_batches(data.shuffled_batches(jax.random.key(0), 10, 3))
    np.testing.assert_array_equal(seen, np.concatenate(full)[:9])
    # fewer examples than a batch: nothing with drop_last, one short batch without
    assert data.shuffled_batches(jax.random.key(0), 2, 3, drop_last=True) == []
    assert [len(b) for b in data.shuffled_batches(jax.random.key(0), 2, 3)] == [2]


def test_shuffled_batches_key_determines_order():
    a = np.concatenate(_as_numpy_batches(data.shuffled_batches(jax.random.key(7), 100, 16)))
    b = np.concatenate(_as_numpy_batches(data.shuffled_batches(jax.random.key(7), 100, 16)))
    c = np.concatenate(_as_numpy_batches(data.shuffled_batches(jax.random.key(8), 100, 16)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.arange(100))  # actually shuffled


@pytest.mark.parametrize("batch_size", [0, -1])
def test_shuffled_batches_invalid_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size must be positive"):
        data.shuffled_batches(jax.random.key(0), 10, batch_size)


def test_shuffled_batches_invalid_num_examples():
    with pytest.raises(ValueError, match="num_examples must be positive"):
        data.shuffled_batches(jax.random.key(0), 0, 4)


def test_device_dataset_and_gather_batch(mnist):
    split = mnist["test"]
    dataset = data.device_dataset(split, limit=64)
    chex.assert_shape(dataset["image"], (64, 28, 28))
    chex.assert_type(dataset["image"], jnp.uint8)
    chex.assert_shape(dataset["label"], (64,))
    chex.assert_type(dataset["label"], jnp.int32)
    np.testing.assert_array_equal(np.asarray(dataset["label"]), split.labels[:64])

    indices = jnp.asarray([5, 0, 63, 17, 17], jnp.int32)
    batch = data.gather_batch(dataset, indices)
    chex.assert_shape(batch["image"], (5, 28, 28, 1))
    chex.assert_type(batch["image"], jnp.float32)
    chex.assert_shape(batch["label"], (5,))
    chex.assert_type(batch["label"], jnp.int32)
    idx = np.asarray(indices)
    chex.assert_trees_all_close(batch["image"][..., 0], split.images[idx].astype(np.float32) / 255.0)
    np.testing.assert_array_equal(np.asarray(batch["label"]), split.labels[idx].astype(np.int32))


def test_device_dataset_without_limit_keeps_everything(mnist):
    dataset = data.device_dataset(mnist["test"])
    chex.assert_shape([dataset["image"], dataset["label"]], [(10_000, 28, 28), (10_000,)])


def test_gather_batch_float_images_pass_unchanged():
    rng = np.random.default_rng(3)
    noisy = jnp.asarray(rng.normal(0.5, 1.0, (8, 28, 28, 1)), jnp.float32)  # outside [0, 1] too
    labels = jnp.arange(8, dtype=jnp.int32)
    indices = jnp.asarray([7, 2, 2, 0])
    batch = data.gather_batch({"image": noisy, "label": labels}, indices)
    chex.assert_shape(batch["image"], (4, 28, 28, 1))
    chex.assert_type(batch["image"], jnp.float32)
    chex.assert_trees_all_equal(batch["image"], noisy[indices])
    chex.assert_trees_all_equal(batch["label"], labels[indices])
    # float (N, 28, 28) gains the channel axis, values untouched
    flat = jnp.asarray(rng.uniform(size=(8, 28, 28)), jnp.float32)
    batch = data.gather_batch({"image": flat, "label": labels}, indices)
    chex.assert_shape(batch["image"], (4, 28, 28, 1))
    chex.assert_trees_all_equal(batch["image"][..., 0], flat[indices])


def test_random_shift_translates_each_image_within_the_range_with_zero_fill():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(0.1, 1.0, size=(64, 28, 28, 1)), jnp.float32)  # no zeros: every shift is visible
    max_shift = 2
    shifted = np.asarray(data.random_shift(jax.random.key(0), images, max_shift))
    assert shifted.shape == images.shape and shifted.dtype == np.float32

    def translate(image, dy, dx):  # content moved down by dy, right by dx, zeros where uncovered
        out = np.zeros_like(image)
        out[max(dy, 0): 28 + min(dy, 0), max(dx, 0): 28 + min(dx, 0)] = image[max(-dy, 0): 28 + min(-dy, 0),
                                                                               max(-dx, 0): 28 + min(-dx, 0)]
        return out

    found = []
    for image, result in zip(np.asarray(images), shifted):
        matches = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)
                   if np.array_equal(translate(image, dy, dx), result)]
        assert len(matches) == 1
        found.append(matches[0])
    assert len(set(found)) > 10  # each image its own shift, from all 25
    np.testing.assert_array_equal(data.random_shift(jax.random.key(0), images, 0), images)
    with pytest.raises(ValueError, match="max_shift"):
        data.random_shift(jax.random.key(0), images, -1)
    with pytest.raises(ValueError, match="must be \\(B, H, W, C\\)"):
        data.random_shift(jax.random.key(0), images[..., 0], 2)


# ------------------------------------------------------------------ the validation split

def _indexed_split(labels: np.ndarray) -> data.Split:
    """A split whose image i holds i in its first three pixels (base 256), to trace images through a split."""
    images = np.zeros((len(labels), 28, 28), np.uint8)
    index = np.arange(len(labels))
    images[:, 0, 0], images[:, 0, 1], images[:, 0, 2] = index % 256, (index // 256) % 256, index // 65536
    return data.Split(images, labels.astype(np.uint8))


def _indices(split: data.Split) -> np.ndarray:
    first = split.images[:, 0, :3].astype(np.int64)
    return first[:, 0] + 256 * first[:, 1] + 65536 * first[:, 2]


def test_validation_split_of_mnist_is_stratified_disjoint_and_stable(mnist):
    train = mnist["train"]
    rest, held = data.validation_split(train)
    assert (len(rest.labels), len(held.labels)) == (50_000, 10_000)
    counts, held_counts = np.bincount(train.labels, minlength=10), np.bincount(held.labels, minlength=10)
    assert np.all(np.abs(held_counts - counts / 6) <= 1)  # each class gives its sixth, rounded
    # disjoint and together the whole training set (images as bytes; MNIST's training images are distinct)
    rest_rows = {row.tobytes() for row in rest.images}
    held_rows = {row.tobytes() for row in held.images}
    assert not rest_rows & held_rows and len(rest_rows | held_rows) == len({r.tobytes() for r in train.images})
    test_rows = {row.tobytes() for row in mnist["test"].images}
    assert len(held_rows & test_rows) <= len({r.tobytes() for r in train.images} & test_rows)  # none added
    again_rest, again_held = data.validation_split(train)
    np.testing.assert_array_equal(again_held.images, held.images)
    np.testing.assert_array_equal(again_rest.labels, rest.labels)


def test_validation_split_partitions_keeps_order_and_is_seeded():
    labels = np.repeat(np.arange(3), [50, 30, 20])[np.random.default_rng(1).permutation(100)]
    split = _indexed_split(labels)
    rest, held = data.validation_split(split, size=10, seed=0)
    rest_index, held_index = _indices(rest), _indices(held)
    assert sorted(np.concatenate([rest_index, held_index]).tolist()) == list(range(100))  # a partition
    assert np.all(np.diff(rest_index) > 0) and np.all(np.diff(held_index) > 0)  # both in the split's order
    np.testing.assert_array_equal(rest.labels, labels[rest_index])
    assert np.bincount(held.labels, minlength=3).tolist() == [5, 3, 2]  # proportional to 50 / 30 / 20
    np.testing.assert_array_equal(_indices(data.validation_split(split, size=10, seed=0)[1]), held_index)
    assert not np.array_equal(_indices(data.validation_split(split, size=10, seed=1)[1]), held_index)
    # largest remainders: 7 of 100 over 50 / 30 / 20 is 3.5 / 2.1 / 1.4 -> 4 / 2 / 1
    assert np.bincount(data.validation_split(split, size=7)[1].labels, minlength=3).tolist() == [4, 2, 1]
    assert len(data.validation_split(split)[1].labels) == 17  # a sixth by default


@pytest.mark.parametrize("size", [0, 100, -3])
def test_validation_split_refuses_impossible_sizes(size):
    with pytest.raises(ValueError, match=f"validation size must be between 1 and 99 .* got {size}"):
        data.validation_split(_indexed_split(np.arange(100) % 4), size=size)
