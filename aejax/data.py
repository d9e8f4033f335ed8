"""Data sets of uint8 images in IDX format (MNIST's layout): locating, validating and
loading them, plus on-device helpers.

Any such data set loads: the counts come from the IDX headers, the image shape from
the images (``image_shape``) and the number of classes from the labels
(``num_classes``). A folder holds the four files under MNIST's names
(``train-images-idx3-ubyte[.gz]`` ...; ``write_idx`` writes them); a Keras-layout
``.npz`` (``x_train, y_train, x_test, y_test``) loads too (``load_npz``).

Images are uint8 of any size: greyscale (N, H, W), kept so, or colour (N, H, W, C)
with C > 1 channels, kept with their channel axis; (N, H, W, 1) is squeezed to
(N, H, W). IDX files hold greyscale images as 3-D arrays (magic 2051) and colour ones
as 4-D arrays (magic 2052). On the device every image becomes float (H, W, C) in
[0, 1] (``to_float_nhwc``), and the networks take their layer sizes from that shape
(``aejax.modules``); the lecture's are MNIST's 28x28x1.

Where the files come from (``load_mnist``), first match wins:
  1. an explicit ``data_dir`` argument (e.g. the ``--data-dir`` flag);
  2. the ``AEJAX_DATA_DIR`` environment variable;
  3. the cache folder (``$AEJAX_CACHE_DIR`` or ``~/.cache/aejax/mnist``) if complete;
  4. a download of MNIST into the cache, each file verified by its official MD5;
  5. tensorflow-datasets' ``data_source`` for MNIST when it is installed (optional backend).
An explicit folder (1 or 2) is never silently replaced by another source: a missing
or corrupt file there is an error naming that file. Its files are checked
structurally (magic number, header count against the file's length, no empty image
side, as many labels as images), not against MNIST's counts. The cache is MNIST's own
folder: downloads into it are verified by checksum, and files read from it must
have MNIST's counts (60,000 / 10,000) and 10 classes.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import lzma
import math
import os
import pathlib
import tempfile
import tokenize
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

ENV_DATA_DIR = "AEJAX_DATA_DIR"
ENV_CACHE_DIR = "AEJAX_CACHE_DIR"

IMAGES_MAGIC = 2051  # uint8, 3 dimensions: greyscale images (N, H, W)
COLOUR_IMAGES_MAGIC = 2052  # uint8, 4 dimensions: images with channels (N, H, W, C)
LABELS_MAGIC = 2049  # uint8, 1 dimension
IDX_UINT8 = 0x0800  # an IDX magic number: 0x08 (uint8) in byte 2, the number of dimensions in byte 3
IMAGE_SIDE = 28  # MNIST's

# split -> (images file, labels file), MNIST's names without ".gz"
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_COUNTS = {"train": 60_000, "test": 10_000}
MNIST_NUM_CLASSES = 10
# Keras' mnist.npz layout: split -> (images key, labels key)
NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
# MD5 of the official gzip files; used only to verify downloads (a local folder may
# hold an equivalent re-ordering or another data set, so local files are validated structurally).
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DOWNLOAD_TIMEOUT_S = 5.0


class DataError(RuntimeError):
    """A data file is missing, truncated or corrupt, or no source is reachable (a one-line message)."""


def _one_line(error: BaseException) -> str:
    """An exception's text on one line (a library's message may span several)."""
    return " ".join(str(error).splitlines())


def _images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W), or (N, H, W, C) with C > 1; (N, H, W, 1) squeezed to (N, H, W). Else a one-line ValueError."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) greyscale or (N, H, W, C) with channels, got shape {images.shape}")
    if min(images.shape[1:]) < 1:
        raise ValueError(f"images must have at least one pixel and channel, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255), got {images.dtype}")
    return images


def _uint8_labels(labels: np.ndarray, count: int) -> np.ndarray:
    """Integer labels (count,) in [0, 255] as uint8; else a one-line ValueError."""
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({count},), got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must be in [0, 255], got values in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.uint8)


class Split(NamedTuple):
    """One split of a data set: images uint8 (N, H, W) greyscale or (N, H, W, C) with C > 1
    channels, labels uint8 (N,)."""

    images: np.ndarray  # (N, H, W) or (N, H, W, C) uint8
    labels: np.ndarray  # (N,) uint8

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray) -> Split:
        """A validated Split from NumPy arrays.

        ``images``: uint8 (N, H, W), or (N, H, W, C) (squeezed to (N, H, W) when C = 1).
        ``labels``: integers (N,) in [0, 255], stored as uint8 (as in IDX files).
        Raises a one-line ValueError naming what is wrong.
        """
        images = _images(images)
        return cls(images, _uint8_labels(labels, images.shape[0]))


def image_shape(images_or_split: Split | np.ndarray | jax.Array) -> tuple[int, int, int]:
    """(H, W, C) of a split's images or of an image batch (N, H, W) (C = 1) or (N, H, W, C):
    (28, 28, 1) for MNIST. Raises a one-line ValueError for another rank."""
    images = images_or_split.images if isinstance(images_or_split, Split) else images_or_split
    shape = tuple(int(n) for n in np.shape(images))
    if len(shape) not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {shape}")
    return (*shape[1:3], shape[3] if len(shape) == 4 else 1)


# --------------------------------------------------------------------------- IDX

def _open_bytes(path: pathlib.Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"MNIST file not found: {path}") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"IDX file {path} is corrupt or truncated: {_one_line(e)}") from None


def _image_magic(magic: int) -> bool:
    return magic in (IMAGES_MAGIC, COLOUR_IMAGES_MAGIC)


def read_idx(path: str | os.PathLike, expected_magic: int, expected_count: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzip or plain) into a uint8 array.

    ``expected_magic``: ``LABELS_MAGIC`` (2049) for labels (N,); ``IMAGES_MAGIC`` (2051)
    for images, which reads greyscale (N, H, W) (magic 2051) and colour (N, H, W, C)
    files (magic 2052) alike. N is taken from the header (or required to be
    ``expected_count`` when given). Raises DataError naming the file on a wrong magic
    number, count, an empty image side, or a length that disagrees with the header.
    """
    path = pathlib.Path(path)
    raw = _open_bytes(path)
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes, too few for a header")
    magic = int(np.frombuffer(raw, dtype=">u4", count=1)[0])
    images = _image_magic(expected_magic)
    if magic != expected_magic and not (images and _image_magic(magic)):
        wanted = f"{IMAGES_MAGIC} or {COLOUR_IMAGES_MAGIC}" if images else f"{expected_magic}"
        raise DataError(f"IDX file {path} has magic number {magic}, expected {wanted}")
    ndim = magic - IDX_UINT8
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes, header needs {header}")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).tolist()
    if ndim > 1 and min(dims[1:]) == 0:
        raise DataError(f"IDX file {path} holds images of shape {tuple(dims[1:])}; every side must be at least 1")
    if expected_count is not None and dims[0] != expected_count:
        raise DataError(f"IDX file {path} holds {dims[0]} items, expected {expected_count}")
    size = math.prod(dims)  # Python integers: no overflow
    if len(raw) - header != size:
        raise DataError(f"IDX file {path} is truncated or padded: {len(raw) - header} data bytes, expected {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> pathlib.Path:
    """Writes a uint8 IDX file that ``read_idx`` reads back; gzip-compressed when ``path`` ends in ".gz".

    ``array``: labels (N,) (magic 2049), greyscale images (N, H, W) (magic 2051) or
    images with channels (N, H, W, C) (magic 2052), integers in [0, 255] (stored as
    uint8). Returns ``path``.
    """
    path = pathlib.Path(path)
    array = np.asarray(array)
    if array.ndim not in (1, 3, 4):
        raise ValueError(f"write_idx: array must be labels (N,) or images (N, H, W) or (N, H, W, C), "
                         f"got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) or (array.size and (array.min() < 0 or array.max() > 255)):
        raise ValueError(f"write_idx: array must hold integers in [0, 255], got {array.dtype}")
    magic = IDX_UINT8 + array.ndim
    payload = np.asarray([magic, *array.shape], ">u4").tobytes() + np.ascontiguousarray(array, np.uint8).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6)
    path.write_bytes(payload)
    return path


def _find_file(folder: pathlib.Path, stem: str) -> pathlib.Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"MNIST file not found: {folder / (stem + '.gz')} (nor uncompressed {stem})")


def load_split_from_dir(folder: str | os.PathLike, split: str, num_classes: int | None = None,
                        expected_count: int | None = None) -> Split:
    """Loads and validates one split ('train' or 'test') from a folder of IDX files.

    Returns images uint8 (N, H, W) or (N, H, W, C) (``Split``'s layout: C = 1 squeezed)
    and labels uint8 (N,), N from the headers; the two files must agree on N, and N
    must be ``expected_count`` when that is given. With ``num_classes``, labels must
    lie in [0, num_classes).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    folder = pathlib.Path(folder)
    images_stem, labels_stem = SPLITS[split]
    images_path = _find_file(folder, images_stem)
    images = read_idx(images_path, IMAGES_MAGIC, expected_count)
    labels_path = _find_file(folder, labels_stem)
    labels = read_idx(labels_path, LABELS_MAGIC, expected_count)
    if len(labels) != len(images):
        raise DataError(f"IDX file {labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} images")
    if num_classes is not None and labels.max(initial=0) >= num_classes:
        raise DataError(f"labels in {labels_path} exceed {num_classes - 1} (max {labels.max()})")
    return Split(images[..., 0] if images.ndim == 4 and images.shape[-1] == 1 else images, labels)


_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first bytes (an empty one starts with its end record)
_NPY_MAGIC = b"\x93NUMPY"
# what opening a damaged archive or reading its members raises: zipfile (bad CRC, data cut short,
# a name that is not UTF-8, an encrypted member's RuntimeError, an unknown zip version or compression
# method), the decompressors, and numpy's .npy header parser (ValueError, or the tokenizer's errors)
_ZIP_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
               NotImplementedError, RuntimeError, SyntaxError, tokenize.TokenError)
_MAX_DEFLATE_RATIO = 1032  # deflate expands its input at most about 1032-fold


def _member_capacity(info: zipfile.ZipInfo, archive_size: int) -> int:
    """The most bytes an archive member can yield: its declared size, bounded by what the
    archive's bytes can expand to (1:1 stored, 1032:1 compressed), as the declared size may be forged."""
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _MAX_DEFLATE_RATIO
    return min(info.file_size, ratio * archive_size)


def _read_npy_member(archive: zipfile.ZipFile, name: str, archive_size: int) -> np.ndarray:
    """One .npy member of an archive as an array (never a pickle).

    Its header's shape and dtype are checked against the member's size before numpy
    allocates the array they claim; raises a one-line ValueError when they cannot fit.
    """
    info = archive.getinfo(name)
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(member)
        claimed = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
        available = _member_capacity(info, archive_size) - member.tell()
        if min(shape, default=0) < 0 or claimed > available:
            raise ValueError(f"array header claims shape {shape} of {dtype} ({claimed} bytes) "
                             f"but the member holds at most {max(available, 0)} bytes")
        member.seek(0)
        return np.lib.format.read_array(member, allow_pickle=False)


def load_npz(path: str | os.PathLike, splits: Iterable[str] = tuple(NPZ_KEYS)) -> dict[str, Split]:
    """Loads {'train': Split, 'test': Split} from a Keras-layout ``.npz`` (only the members of ``splits``).

    Keys ``x_train`` uint8 (N, H, W) or (N, H, W, C), ``y_train`` (N,) integers, and the
    same for ``x_test``/``y_test`` (``Split.from_arrays``). Raises a one-line DataError
    naming the file and key.
    """
    path = pathlib.Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(len(_NPY_MAGIC))
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"npz file not found: {path}") from None
    except OSError as e:
        raise DataError(f"npz file {path} is corrupt or not an npz archive: {_one_line(e)}") from None
    if head.startswith(_NPY_MAGIC):  # a bare .npy under an .npz name
        raise DataError(f"npz file {path} is not an npz archive (holds a single array)")
    if not head.startswith(_ZIP_SIGNATURES):
        raise DataError(f"npz file {path} is corrupt or not an npz archive: it does not start as a zip archive")
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise DataError(f"npz file {path} is corrupt or not an npz archive: {_one_line(e)}") from None
    with archive:
        names = archive.namelist()
        # numpy's naming: key "x_train" is the member "x_train.npy" (or a member named "x_train")
        wanted = {split: NPZ_KEYS[split] for split in splits}
        members = {key: key + ".npy" if key + ".npy" in names else key
                   for keys in wanted.values() for key in keys}
        missing = [key for key, name in members.items() if name not in names]
        if missing:
            held = sorted(name[:-4] if name.endswith(".npy") else name for name in names)
            raise DataError(f"npz file {path} has no array {missing[0]!r} (holds {held}); "
                            f"expected x_train, y_train, x_test, y_test")
        loaded = {}
        for split, (images_key, labels_key) in wanted.items():
            try:
                images = _read_npy_member(archive, members[images_key], size)
                labels = _read_npy_member(archive, members[labels_key], size)
                loaded[split] = Split.from_arrays(images, labels)
            except _ZIP_ERRORS as e:  # bad arrays or a damaged member
                raise DataError(f"npz file {path}: {images_key}/{labels_key}: {_one_line(e)}") from None
        return loaded


def load_dataset(path: str | os.PathLike, splits: Iterable[str] = tuple(SPLITS)) -> dict[str, Split]:
    """Loads {'train': Split, 'test': Split} from a folder of the four IDX files or a ``.npz``;
    ``splits``: only those (their files alone are read).

    Any counts, classes and image shapes; images uint8 (N, H, W) or (N, H, W, C), labels
    uint8 (N,). No other source is tried: a missing or corrupt file is a DataError naming it.
    """
    path = pathlib.Path(path)
    if path.suffix == ".npz":
        return load_npz(path, splits)
    return {split: load_split_from_dir(path, split) for split in splits}


VALIDATION_SHARE = 1 / 6  # MNIST: 10,000 of the 60,000 training images
VALIDATION_SEED = 0  # one hold-out for every run and seed, so runs compare on the same images


def validation_split(split: Split, size: int | None = None, seed: int = VALIDATION_SEED) -> tuple[Split, Split]:
    """(rest, validation): a fixed, seeded, class-stratified hold-out of ``split``.

    ``size``: images held out (default: ``VALIDATION_SHARE`` of the split, 10,000 of MNIST's
    60,000). Each class gives its share of ``size`` (largest remainders round, so the total
    is exact); which images is a seeded permutation per class, the same on every machine.
    Both parts keep the split's order.
    """
    labels = np.asarray(split.labels)
    n = len(labels)
    size = round(n * VALIDATION_SHARE) if size is None else int(size)
    if not 0 < size < n:
        raise ValueError(f"validation size must be between 1 and {n - 1} for a split of {n} images, got {size}")
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * size / n
    taken = np.floor(quotas).astype(int)
    by_remainder = np.argsort(-(quotas - taken), kind="stable")
    taken[by_remainder[: size - taken.sum()]] += 1
    rng = np.random.default_rng(seed)
    held = np.zeros(n, bool)
    for label, quota in zip(classes, taken):
        members = np.flatnonzero(labels == label)
        held[rng.permutation(members)[:quota]] = True
    return (Split(split.images[~held], labels[~held]), Split(split.images[held], labels[held]))


def num_classes(splits: Mapping[str, Split] | Iterable[Split] | Split) -> int:
    """The number of classes: the largest label over the splits + 1 (0 when there are no labels)."""
    if isinstance(splits, Split):
        splits = [splits]
    elif isinstance(splits, Mapping):
        splits = splits.values()
    return max((int(np.max(s.labels)) + 1 for s in splits if np.size(s.labels)), default=0)


# ------------------------------------------------------------------- sources

def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get(ENV_CACHE_DIR, pathlib.Path.home() / ".cache" / "aejax" / "mnist"))


def _is_complete(folder: pathlib.Path) -> bool:
    stems = [stem for pair in SPLITS.values() for stem in pair]
    return all((folder / (s + ".gz")).is_file() or (folder / s).is_file() for s in stems)


def download(folder: str | os.PathLike, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> pathlib.Path:
    """Downloads the four official files into ``folder``, verifying each MD5.

    Fails fast (one short timeout per mirror) when offline. A file is moved into
    place only after its checksum matches, so a broken download leaves nothing behind.
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in OFFICIAL_MD5.items():
        if (folder / name).is_file():
            continue
        errors = []
        for mirror in MIRRORS:
            try:
                with urllib.request.urlopen(mirror + name, timeout=timeout_s) as response:
                    payload = response.read()
            except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, dropped connections
                errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
                continue
            if hashlib.md5(payload).hexdigest() != md5:
                errors.append(f"{mirror}: checksum mismatch")
                continue
            with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
                tmp.write(payload)
            os.replace(tmp.name, folder / name)
            break
        else:
            raise DataError(
                f"could not download MNIST file {name} ({'; '.join(errors)}); "
                f"point aejax at a local folder of the IDX files with --data-dir or {ENV_DATA_DIR}"
            )
    return folder


def _load_tfds(split: str) -> Split:
    """One MNIST split from a tfds data folder (``$TFDS_DATA_DIR``, else tfds's default) where
    ``mnist`` is prepared already: never a download (the HTTP one failed before this is tried)."""
    import tensorflow_datasets as tfds  # optional backend

    try:
        source = tfds.data_source("mnist", split=split, download=False, data_dir=os.environ.get("TFDS_DATA_DIR"))
        images = np.stack([np.asarray(ex["image"]).reshape(IMAGE_SIDE, IMAGE_SIDE) for ex in source])
        labels = np.asarray([ex["label"] for ex in source], dtype=np.uint8)
    except Exception as e:  # tfds raises many kinds here: missing data, an incomplete install, a bad folder
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"no MNIST data found: the download failed and tensorflow-datasets has no prepared "
                        f"'mnist' ({reason}); pass --data-dir or set {ENV_DATA_DIR} to a folder with the four "
                        f"IDX files") from None
    return Split(images.astype(np.uint8), labels)


def resolve_data_dir(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> pathlib.Path | None:
    """The folder to read from (see the module docstring for the order).

    Returns None only when tfds is the remaining source; raises DataError when no
    source can provide the files.
    """
    if data_dir is not None:
        return pathlib.Path(data_dir)
    if os.environ.get(ENV_DATA_DIR):
        return pathlib.Path(os.environ[ENV_DATA_DIR])
    cache = cache_dir()
    if _is_complete(cache):
        return cache
    download_error = None
    if allow_download:
        try:
            return download(cache)
        except DataError as e:
            download_error = e
    try:
        import tensorflow_datasets  # noqa: F401
        return None
    except ImportError:
        pass
    raise DataError(
        f"no MNIST data found: pass --data-dir or set {ENV_DATA_DIR} to a folder with the four IDX files"
        + (f" (download failed: {download_error})" if download_error else "")
    )


def load_mnist(data_dir: str | os.PathLike | None = None, allow_download: bool = True,
               splits: Iterable[str] = tuple(SPLITS)) -> dict[str, Split]:
    """Loads {'train': Split, 'test': Split}: images uint8 (N, H, W) or (N, H, W, C), labels uint8 (N,);
    ``splits``: only those (a selection run reads no test file).

    MNIST (28x28 greyscale) unless ``data_dir`` or AEJAX_DATA_DIR names another data set
    (a folder of the four IDX files or a ``.npz``, see ``load_dataset``): any counts,
    classes and image shapes.
    The cache folder is MNIST's own, so there MNIST's counts and 10 classes are verified.
    """
    explicit = data_dir is not None or bool(os.environ.get(ENV_DATA_DIR))
    folder = resolve_data_dir(data_dir, allow_download)
    if folder is None:
        return {split: _load_tfds(split) for split in splits}
    if explicit:
        return load_dataset(folder, splits)
    return {split: load_split_from_dir(folder, split, MNIST_NUM_CLASSES, MNIST_COUNTS[split]) for split in splits}


# ----------------------------------------------------------- array helpers

def to_float_nhwc(images: np.ndarray | jax.Array) -> jax.Array:
    """uint8 (N, H, W) -> float32 (N, H, W, 1), or uint8 (N, H, W, C) -> float32 (N, H, W, C),
    in [0, 1] (as torchvision's ToTensor)."""
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 of shape (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}")
    scaled = images.astype(jnp.float32) / 255.0
    return scaled[..., None] if images.ndim == 3 else scaled


def add_gaussian_noise(key: jax.Array, images: jax.Array, std: float) -> jax.Array:
    """``images + std * N(0, 1)``, unclipped as in the lecture; same shape and dtype."""
    return images + std * jax.random.normal(key, images.shape, images.dtype)


def random_shift(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
    """Each image (B, H, W, C) translated by its own random (dy, dx) in [-max_shift, max_shift]^2,
    the uncovered border filled with zeros (MNIST's background); same shape and dtype."""
    if images.ndim != 4:
        raise ValueError(f"images must be (B, H, W, C), got shape {images.shape}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return images
    height, width, channels = images.shape[1:]
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    # window start o in [0, 2 max_shift] moves the content by max_shift - o
    starts = jax.random.randint(key, (images.shape[0], 2), 0, 2 * max_shift + 1)
    crop = lambda image, start: jax.lax.dynamic_slice(image, (start[0], start[1], 0), (height, width, channels))
    return jax.vmap(crop)(padded, starts)


def epoch_indices(key: jax.Array, num_examples: int, batch_size: int, drop_last: bool = False,
                  ) -> tuple[jax.Array, jax.Array | None]:
    """One shuffled epoch: full batches (F, batch_size) and the shorter last batch (r,) or None.

    With ``drop_last=False`` (PyTorch's DataLoader default, as the lecture) every
    example is seen once per epoch. The indices gather from data kept on the device.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_examples <= 0:
        raise ValueError(f"num_examples must be positive, got {num_examples}")
    order = jax.random.permutation(key, num_examples)
    full = num_examples // batch_size
    rest = order[full * batch_size:] if not drop_last and num_examples % batch_size else None
    return order[: full * batch_size].reshape(full, batch_size), rest


def shuffled_batches(key: jax.Array, num_examples: int, batch_size: int, drop_last: bool = False) -> list[jax.Array]:
    """``epoch_indices`` as a list of index arrays, each (batch_size,) except a shorter last one."""
    full, rest = epoch_indices(key, num_examples, batch_size, drop_last)
    return list(full) + ([] if rest is None else [rest])


def check_split(images: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> None:
    """Raises a one-line ValueError unless images are uint8 (N, H, W) or (N, H, W, C) with no empty
    side, and labels integers (N,), non-negative, and below ``num_classes`` when it is given."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or min(images.shape[1:]) < 1:
        raise ValueError(f"images must be uint8 of shape (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}")
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({images.shape[0]},), got {labels.dtype} {labels.shape}")
    if not labels.size:
        return
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
    if labels.min() < 0:
        raise ValueError(f"labels must be non-negative, got values in [{labels.min()}, {labels.max()}]")


def device_dataset(split: Split, limit: int | None = None, num_classes: int | None = None) -> dict[str, jax.Array]:
    """A split as device arrays: {"image": uint8 (N, H, W) or (N, H, W, C), "label": int32 (N,)}.

    Kept as uint8 (47 MB for MNIST's training set) and scaled inside the compiled step.
    ``limit`` keeps the first ``limit`` examples (quick runs, tests). Labels may be
    any non-negative integers, or must lie in [0, num_classes) when that is given.
    """
    images, labels = split.images[:limit], split.labels[:limit]
    check_split(images, labels, num_classes)
    return {"image": jnp.asarray(images), "label": jnp.asarray(labels, dtype=jnp.int32)}


def gather_batch(dataset: dict[str, jax.Array], indices: jax.Array) -> dict[str, jax.Array]:
    """Gathers a batch by index: {"image": float32 (B, H, W, C), "label": int32 (B,)}.

    ``dataset["image"]``: (N, H, W) (C = 1) or (N, H, W, C); uint8 images are scaled to
    [0, 1], float images (e.g. already noisy) pass as they are.
    """
    images = dataset["image"][indices]
    if dataset["image"].ndim not in (3, 4) or not (images.dtype == jnp.uint8
                                                  or jnp.issubdtype(images.dtype, jnp.floating)):
        raise ValueError(f"dataset['image'] must be uint8 or float of shape (N, H, W) or (N, H, W, C), got "
                         f"{images.dtype} {dataset['image'].shape}")
    if images.dtype == jnp.uint8:
        images = to_float_nhwc(images)
    elif images.ndim == 3:
        images = images[..., None]
    return {"image": images, "label": dataset["label"][indices]}
