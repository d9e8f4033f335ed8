"""aejax.data's readers on damaged files: every IDX, gzip or .npz input either loads
(arrays of the documented dtype and shape) or raises a one-line ``DataError``; never
another exception, and never an allocation the file's size cannot back.

Property tests mutate small valid files written by aejax's own writer (``write_idx``)
and ``np.savez``: truncation, flipped and overwritten bytes, forged header fields,
appended garbage, wrong arrays in an archive. Each example writes into its own
temporary folder (a function-scoped fixture would be shared between examples).
"""

from __future__ import annotations

import gzip
import io
import pathlib
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aejax import data

# reproducible in CI, no example database written into the repository
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
# a reader may hold a few copies of a file of a few kB; anything near this is a header believed
MAX_PEAK_BYTES = 16 * 2**20

IDX_KINDS = {"images": data.IMAGES_MAGIC, "labels": data.LABELS_MAGIC}
FORGED_WORDS = (0, 1, 2, 3, 27, 28, 29, data.LABELS_MAGIC, data.IMAGES_MAGIC, data.COLOUR_IMAGES_MAGIC, 0x0903, 0x0D03,
                2**31, 2**31 - 1, 2**32 - 1, 2**24)


def _images(count: int) -> np.ndarray:
    """uint8 (count, 28, 28), distinct values per image (a reshuffle would show)."""
    return ((np.arange(count * 28 * 28) * 7 + np.arange(count).repeat(28 * 28)) % 256).astype(np.uint8).reshape(
        count, 28, 28)


def _labels(count: int) -> np.ndarray:
    """uint8 (count,) in [0, 10)."""
    return (np.arange(count) * 3 % 10).astype(np.uint8)


def _idx_bytes(kind: str, count: int, compressed: bool) -> bytes:
    """The bytes ``write_idx`` writes for images or labels of ``count`` items."""
    array = _images(count) if kind == "images" else _labels(count)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / ("f.gz" if compressed else "f")
        return data.write_idx(path, array).read_bytes()


# ------------------------------------------------------------------ mutations

def _apply(raw: bytes, mutation: tuple) -> bytes:
    """One mutation of ``raw``: positions are taken modulo the length, so any draw applies."""
    op, *args = mutation
    buf = bytearray(raw)
    if op == "truncate":
        return raw[: args[0] % (len(raw) + 1)]
    if op == "empty":
        return b""
    if op == "append":
        return raw + args[0]
    if not buf:
        return raw
    if op == "flip":
        pos, mask = args
        buf[pos % len(buf)] ^= mask
    elif op == "overwrite":
        pos, chunk = args
        pos %= len(buf)
        buf[pos: pos + len(chunk)] = chunk
    elif op == "word":  # a forged big-endian uint32 in the IDX header (magic or a dimension)
        index, value = args
        buf[4 * index: 4 * index + 4] = value.to_bytes(4, "big")
    elif op == "dtype":  # byte 2 of the magic number: IDX's data type code
        buf[2 % len(buf)] = args[0]
    elif op == "zip":  # a byte of a zip record (local header, central directory, end record)
        signature, occurrence, offset, value = args
        starts = [i for i in range(len(buf)) if buf.startswith(signature, i)]
        if starts:
            pos = starts[occurrence % len(starts)] + offset
            buf[pos % len(buf)] = value
    return bytes(buf)


MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 2**16)),
    st.tuples(st.just("empty")),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(1, 255)),
    st.tuples(st.just("overwrite"), st.integers(0, 2**16), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("word"), st.integers(0, 3), st.sampled_from(FORGED_WORDS) | st.integers(0, 2**32 - 1)),
    st.tuples(st.just("dtype"), st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF])),
)
# the header and the first bytes after it are where readers go wrong most; bias positions there
HEADER_MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 40)),
    st.tuples(st.just("flip"), st.integers(0, 40), st.integers(1, 255)),
)
MUTATIONS = st.lists(MUTATION | HEADER_MUTATION, min_size=1, max_size=3)
# zip records: local file header (30 bytes + name), central directory entry (46 + name), end record (22);
# offsets biased to their fields: flags (encryption, UTF-8 names), compression method, sizes, lengths, offsets
ZIP_FIELD_OFFSETS = st.sampled_from([6, 8, 10, 12, 16, 18, 20, 22, 24, 26, 28, 30, 32, 42, 45]) | st.integers(4, 60)
ZIP_MUTATION = st.tuples(st.just("zip"), st.sampled_from([b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"]),
                         st.integers(0, 7), ZIP_FIELD_OFFSETS,
                         st.sampled_from([0x00, 0x01, 0x08, 0x0C, 0x0E, 0x20, 0x40, 0x63, 0x7F, 0xFF])
                         | st.integers(0, 255))
NPZ_MUTATIONS = st.lists(MUTATION | ZIP_MUTATION, min_size=1, max_size=3)


def _mutate(raw: bytes, mutations) -> bytes:
    for mutation in mutations:
        raw = _apply(raw, mutation)
    return raw


# ------------------------------------------------------------------- outcomes

def _outcome(call):
    """Runs ``call``: its result, or None after a one-line DataError. Any other exception,
    or a peak allocation beyond what a small file can back, fails the test."""
    tracemalloc.start()
    try:
        result = call()
    except data.DataError as error:
        message = str(error)
        assert message and "\n" not in message and "\r" not in message, f"not one line: {message!r}"
        result = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"peak allocation {peak} bytes for a file of a few kB"
    return result


def _check_images(images: np.ndarray) -> None:
    """uint8 (N, H, W) or (N, H, W, C), no empty side."""
    assert images.dtype == np.uint8 and images.ndim in (3, 4) and min(images.shape[1:]) >= 1


def _check_split(split: data.Split) -> None:
    assert isinstance(split, data.Split)
    _check_images(split.images)
    assert split.images.ndim == 3 or split.images.shape[-1] > 1  # one channel is squeezed
    assert split.labels.dtype == np.uint8 and split.labels.shape == split.images.shape[:1]


def _check_splits(splits) -> None:
    assert set(splits) == {"train", "test"}
    for split in splits.values():
        _check_split(split)


# ------------------------------------------------------------------------ IDX

@settings(FUZZ, max_examples=400)
@given(kind=st.sampled_from(sorted(IDX_KINDS)), count=st.integers(0, 6), compressed=st.booleans(),
       inside_gzip=st.booleans(), mutations=MUTATIONS, pin_count=st.booleans())
def test_read_idx_loads_or_raises_data_error(kind, count, compressed, inside_gzip, mutations, pin_count):
    plain = _idx_bytes(kind, count, False)
    if compressed and inside_gzip:  # damage the IDX payload, then compress it intact
        raw = gzip.compress(_mutate(plain, mutations), mtime=0)
    else:
        raw = _mutate(_idx_bytes(kind, count, compressed), mutations)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / ("file.gz" if compressed else "file")
        path.write_bytes(raw)
        expected_count = count if pin_count else None
        array = _outcome(lambda: data.read_idx(path, IDX_KINDS[kind], expected_count))
    if array is None:
        return
    assert array.dtype == np.uint8
    if kind == "images":
        _check_images(array)
    else:
        assert array.ndim == 1
    if pin_count:
        assert len(array) == count
    if (gzip.decompress(raw) if compressed else raw) == plain:  # undamaged: the values written
        np.testing.assert_array_equal(array, _images(count) if kind == "images" else _labels(count))


def _write_split_folder(folder: pathlib.Path, counts: dict, compressed: bool) -> None:
    """The four IDX files, ``counts[(split, kind)]`` items each."""
    for split, names in data.SPLITS.items():
        for kind, name in zip(("images", "labels"), names):
            path = folder / (name + (".gz" if compressed else ""))
            path.write_bytes(_idx_bytes(kind, counts[split, kind], compressed))


FILE_KEYS = [(split, kind) for split in data.SPLITS for kind in ("images", "labels")]


@settings(FUZZ, max_examples=250)
@given(counts=st.fixed_dictionaries({key: st.integers(0, 5) for key in FILE_KEYS}), compressed=st.booleans(),
       damaged=st.dictionaries(st.sampled_from(FILE_KEYS), MUTATIONS, max_size=2),
       num_classes=st.none() | st.integers(1, 12), via_dataset=st.booleans())
def test_folder_loaders_load_or_raise_data_error(counts, compressed, damaged, num_classes, via_dataset):
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        _write_split_folder(folder, counts, compressed)
        for (split, kind), mutations in damaged.items():
            name = data.SPLITS[split][0 if kind == "images" else 1] + (".gz" if compressed else "")
            (folder / name).write_bytes(_mutate((folder / name).read_bytes(), mutations))
        if via_dataset:
            splits = _outcome(lambda: data.load_dataset(folder))
            if splits is not None:
                _check_splits(splits)
            return
        split = _outcome(lambda: data.load_split_from_dir(folder, "test", num_classes))
    if split is not None:
        _check_split(split)
        if num_classes is not None:
            assert split.labels.max(initial=0) < num_classes


# ------------------------------------------------------------------------ npz

def _keras_arrays(train: int, test: int) -> dict[str, np.ndarray]:
    return {"x_train": _images(train), "y_train": _labels(train), "x_test": _images(test), "y_test": _labels(test)}


# replacements for one array of the archive: wrong dtypes, shapes, ndim, objects, strings
ODD_ARRAYS = st.sampled_from([
    np.zeros((3, 28, 28), np.float32), np.zeros((3, 28, 28), np.int64), np.zeros((3, 28, 28, 1), np.uint8),
    np.zeros((3, 28, 28, 3), np.uint8), np.zeros((3, 32, 32), np.uint8), np.zeros((3, 784), np.uint8),
    np.zeros((0, 28, 28), np.uint8), np.zeros((), np.uint8), np.zeros((3,), np.uint8), np.zeros((3, 1), np.uint8),
    np.zeros((3,), np.float64), np.array([0, -1, 2]), np.array([0, 256, 2]), np.array([0, 1, 2], np.uint64),
    np.array([True, False, True]), np.array(["0", "1", "2"]), np.array([b"a", b"b", b"c"]),
    np.array([0, 1, 2], object), np.array([np.zeros((28, 28), np.uint8)] * 3 + [None], object)[:3],
    np.zeros(3, dtype=[("a", np.uint8)]), np.zeros((3, 28, 28), ">u1"), np.zeros(3, ">i4"),
    np.zeros(3, np.complex64), np.zeros(3, "datetime64[s]"), np.arange(3, dtype=np.int8),
])


@settings(FUZZ, max_examples=250)
@given(train=st.integers(0, 5), test=st.integers(0, 5), compressed=st.booleans(),
       replaced=st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test"]), ODD_ARRAYS, max_size=2),
       dropped=st.sets(st.sampled_from(["x_train", "y_train", "x_test", "y_test"]), max_size=1),
       extra=st.booleans(), mutations=st.none() | NPZ_MUTATIONS, via_dataset=st.booleans())
def test_load_npz_loads_or_raises_data_error(train, test, compressed, replaced, dropped, extra, mutations, via_dataset):
    arrays = _keras_arrays(train, test) | replaced
    arrays = {key: value for key, value in arrays.items() if key not in dropped}
    if extra:
        arrays["notes"] = np.array([1.5])
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    raw = buffer.getvalue()
    if mutations is not None:
        raw = _mutate(raw, mutations)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "set.npz"
        path.write_bytes(raw)
        splits = _outcome(lambda: (data.load_dataset if via_dataset else data.load_npz)(path))
    if splits is not None:
        _check_splits(splits)


@settings(FUZZ, max_examples=250)
@given(compressed=st.booleans(), mutations=st.lists(ZIP_MUTATION, min_size=1, max_size=4))
def test_load_npz_survives_damaged_zip_records(compressed, mutations):
    """Forged fields of the archive's own records: flags (an encrypted or UTF-8-named member),
    compression methods, sizes, name lengths and offsets."""
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **_keras_arrays(3, 2))
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "set.npz"
        path.write_bytes(_mutate(buffer.getvalue(), mutations))
        splits = _outcome(lambda: data.load_npz(path))
    if splits is not None:
        _check_splits(splits)


def _zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npy_with_header(header: str) -> bytes:
    """A version 1.0 .npy member with a hand-written header (e.g. a forged shape) and a few data bytes."""
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(100)


FORGED_HEADERS = st.sampled_from([
    "{'descr': '|u1', 'fortran_order': False, 'shape': (2147483648, 28, 28), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296,), }",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (9223372036854775807, 2), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (-1, 28, 28), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (-3,), }",
    "{'descr': '|u1', 'fortran_order': True, 'shape': (3, 28, 28), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': 'not a dtype', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '|u1', 'fortran_order': False, 'shape': 3, }",
    "{'descr': '|u1', 'fortran_order': False}",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), 'extra': 1}",
    "not a dict at all",
    "{'descr': '|u1', 'fortran_order': False, 'shape': (100,), }",
    "{'descr': [('a', '|u1')], 'fortran_order': False, 'shape': (100,), }",
    "{'descr': '|V0', 'fortran_order': False, 'shape': (2147483648,), }",
])


@settings(FUZZ, max_examples=150)
@given(key=st.sampled_from(["x_train", "y_train", "x_test", "y_test"]),
       header=FORGED_HEADERS | st.text(st.characters(max_codepoint=255), max_size=80),
       compression=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
       raw_bytes=st.none() | st.binary(max_size=200))
def test_load_npz_refuses_forged_members(key, header, compression, raw_bytes):
    """Hand-built archives: a member with a forged .npy header (shapes the data cannot back),
    or arbitrary bytes, among otherwise valid arrays; and arbitrary bytes named .npz."""
    members = {name + ".npy": _npy_bytes(array) for name, array in _keras_arrays(3, 2).items()}
    members[key + ".npy"] = _npy_with_header(header) if raw_bytes is None else raw_bytes
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "forged.npz"
        path.write_bytes(_zip_bytes(members, compression))
        splits = _outcome(lambda: data.load_npz(path))
        if splits is not None:
            _check_splits(splits)
        if raw_bytes is not None:  # the same bytes as the whole file
            path.write_bytes(raw_bytes)
            splits = _outcome(lambda: data.load_npz(path))
            if splits is not None:
                _check_splits(splits)


# ------------------------------------------------------- specific nasty inputs

def _patch_records(raw: bytes, signature: bytes, offset: int, value: bytes) -> bytes:
    """``value`` written at ``offset`` into every zip record starting with ``signature``."""
    buf = bytearray(raw)
    start = buf.find(signature)
    while start >= 0:
        buf[start + offset: start + offset + len(value)] = value
        start = buf.find(signature, start + 4)
    return bytes(buf)


def _valid_npz_bytes() -> bytes:
    return _zip_bytes({name + ".npy": _npy_bytes(array) for name, array in _keras_arrays(3, 2).items()})


def _huge_member_archive() -> bytes:
    """x_train's header claims 2^31 images, with a few data bytes behind it."""
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2147483648, 28, 28), }"
    members = {name + ".npy": _npy_bytes(array) for name, array in _keras_arrays(3, 2).items()}
    return _zip_bytes(members | {"x_train.npy": _npy_with_header(header)})


def _forged_size_archive() -> bytes:
    """x_train's header and the central directory's size for it agree on 10^9 bytes; the archive holds a few."""
    members = {name + ".npy": _npy_bytes(array) for name, array in _keras_arrays(3, 2).items()}
    members["x_train.npy"] = _npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000,), }")
    raw = bytearray(_zip_bytes(members))
    entry = raw.find(b"x_train.npy", raw.find(b"PK\x01\x02")) - 46  # x_train's central directory entry
    assert raw[entry: entry + 4] == b"PK\x01\x02"
    raw[entry + 24: entry + 28] = (10**9 + 128).to_bytes(4, "little")  # uncompressed size
    return bytes(raw)


NASTY_NPZ = {
    # a member whose header claims (2^31, 28, 28): numpy allocated 1.5 TiB (MemoryError)
    "huge_member_header": (_huge_member_archive,
                           r"claims shape \(2147483648, 28, 28\) of uint8 \(1683627180032 bytes\) but the member "
                           r"holds at most 100 bytes"),
    # the same claim backed by a forged member size in the central directory
    "forged_member_size": (_forged_size_archive, r"claims shape \(1000000000,\)"),
    # a bare .npy claiming (2^31, 28, 28) under an .npz name: numpy read it whole (MemoryError)
    "huge_bare_npy": (lambda: _npy_with_header(
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2147483648, 28, 28), }"), "holds a single array"),
    # the encryption flag set on the members: zipfile's RuntimeError
    "encrypted_member": (lambda: _patch_records(_valid_npz_bytes(), b"PK\x01\x02", 8, b"\x01"), "encrypted"),
    # compression method 99 (AES): zipfile's NotImplementedError
    "unknown_compression": (lambda: _patch_records(
        _patch_records(_valid_npz_bytes(), b"PK\x03\x04", 8, b"\x63\x00"), b"PK\x01\x02", 10, b"\x63\x00"),
        "compression method is not supported"),
    # "needs zip version 6.4 to extract": zipfile's NotImplementedError while opening the archive
    "zip_version": (lambda: _patch_records(_valid_npz_bytes(), b"PK\x01\x02", 6, b"\x40"), "zip file version"),
    # a .npy header numpy cannot tokenize: tokenize.TokenError
    "unparsable_npy_header": (lambda: _zip_bytes(
        {name + ".npy": _npy_bytes(array) for name, array in _keras_arrays(3, 2).items()}
        | {"y_test.npy": _npy_with_header("[")}), "x_test/y_test"),
}


@pytest.mark.parametrize("case", sorted(NASTY_NPZ))
def test_nasty_npz_raises_one_line_data_error(tmp_path, case):
    build, message = NASTY_NPZ[case]
    path = tmp_path / "nasty.npz"
    path.write_bytes(build())
    tracemalloc.start()
    try:
        with pytest.raises(data.DataError, match=message) as excinfo:
            data.load_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES
    assert str(path) in str(excinfo.value) and "\n" not in str(excinfo.value)
