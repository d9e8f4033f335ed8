"""TensorBoard event files without TensorFlow: scalars and images.

An ``EventWriter`` writes one file ``events.out.tfevents.<seconds>.<host>.<n>`` in its
folder, ``n`` the first number (000, 001, ...) free there, so that the names sort in
the order the files were opened. The file is a TFRecord stream (each record: uint64
length, masked CRC32C of the length, the bytes, masked CRC32C of the bytes;
little-endian) of ``Event`` protocol buffers, encoded here by hand: the first carries
``file_version`` "brain.Event:2", each later one a ``Summary`` of ``simple_value``
scalars or of one PNG ``Image``.

A resumed process opens a new writer, so a new file beside the earlier ones
(TensorBoard reads a folder's files in the order of their names).
Its ``purge_step`` is the first step it writes again: the file then opens with a
``SessionLog`` START event at that step, on which TensorBoard drops the events of
the earlier files from that step on (those a crashed process wrote past its last
checkpoint, or all of them when the whole history is written again from step 1).

The messages, with the field numbers of TensorFlow's ``event.proto`` and ``summary.proto``:
  Event:          wall_time (1, double), step (2, int64), file_version (3, string), summary (5),
                  session_log (7)
  SessionLog:     status (1, enum: START = 1)
  Summary:        value (1, repeated)
  Summary.Value:  tag (1, string), simple_value (2, float), image (4)
  Summary.Image:  height (1), width (2), colorspace (3), encoded_image_string (4, bytes)
"""

from __future__ import annotations

import io
import itertools
import os
import pathlib
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

import numpy as np
from PIL import Image

FILE_VERSION = "brain.Event:2"
SESSION_START = 1  # SessionLog.START

# Summary.Image.colorspace by the PNG's Pillow mode (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA)
_COLORSPACE = {"1": 1, "L": 1, "I": 1, "I;16": 1, "LA": 2, "RGB": 3, "P": 3, "RGBA": 4}

# ------------------------------------------------------------------ CRC32C


def _crc32c_table() -> tuple[int, ...]:
    """The byte table of CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (a byte at a time: event files are small)."""
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length (uint64), its masked CRC, ``data``, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


# ------------------------------------------------------ protocol buffers


def _varint(value: int) -> bytes:
    """A base-128 varint; a negative int64 as its two's complement (ten bytes)."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _int_field(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes_field(field: int, value: bytes) -> bytes:
    return _key(field, 2) + _varint(len(value)) + value


def _event(wall_time: float, step: int, *, file_version: str | None = None, summary: bytes | None = None,
           session_start: bool = False) -> bytes:
    """An encoded ``Event``; ``summary`` an encoded ``Summary``."""
    out = _key(1, 1) + struct.pack("<d", wall_time) + _int_field(2, step)
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if summary is not None:
        out += _bytes_field(5, summary)
    if session_start:
        out += _bytes_field(7, _int_field(1, SESSION_START))
    return out


def _scalar_value(tag: str, value: float) -> bytes:
    """An encoded ``Summary.Value`` holding ``simple_value`` (float32)."""
    # a float32 cast (inf past its range, as TensorFlow writes); struct's "f" would raise there
    with np.errstate(over="ignore"):
        single = np.array(value, dtype="<f4")
    return _bytes_field(1, tag.encode()) + _key(2, 5) + single.tobytes()


def _image_value(tag: str, png: bytes, height: int, width: int, colorspace: int) -> bytes:
    """An encoded ``Summary.Value`` holding a ``Summary.Image``."""
    image = _int_field(1, height) + _int_field(2, width) + _int_field(3, colorspace) + _bytes_field(4, png)
    return _bytes_field(1, tag.encode()) + _bytes_field(4, image)


def _summary(values: Sequence[bytes]) -> bytes:
    return b"".join(_bytes_field(1, value) for value in values)


# ------------------------------------------------------------------ images


def _as_real_number(value: object) -> float | None:
    """``value`` as a float when it is a real scalar (Python, NumPy or JAX; not bool), else None."""
    if isinstance(value, (str, bytes)):
        return None
    try:
        array = np.asarray(value)
    except Exception:  # an object NumPy cannot hold is no number
        return None
    if array.ndim != 0 or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        return None
    return float(array)


def _png_from_array(image: np.ndarray) -> tuple[bytes, int, int, int]:
    """PNG bytes, height, width, colorspace of a uint8 or float array (H, W), (H, W, 1) or (H, W, 3)."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)) or 0 in array.shape:
        raise ValueError(f"image must have shape (H, W), (H, W, 1) or (H, W, 3), got {np.shape(image)}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError("image has non-finite values")
        # floats are intensities in [0, 1], as matplotlib's imshow takes them
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0..255) or float (0..1), got {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")  # uint8 (H, W) is mode L, (H, W, 3) RGB
    return buffer.getvalue(), array.shape[0], array.shape[1], 1 if array.ndim == 2 else 3


def _png_from_file(path: pathlib.Path) -> tuple[bytes, int, int, int]:
    """The PNG file's bytes, height, width, colorspace; a one-line ValueError if it is no PNG."""
    png = path.read_bytes()
    try:
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG":
                raise ValueError(f"{path} is a {image.format} image, not a PNG")
            width, height = image.size
            colorspace = _COLORSPACE.get(image.mode, 3)
    except (OSError, SyntaxError) as e:  # Pillow's UnidentifiedImageError is an OSError
        raise ValueError(f"{path} is not a readable PNG: {' '.join(str(e).splitlines())}") from None
    return png, height, width, colorspace


# ------------------------------------------------------------------ writer


class EventWriter:
    """Writes one TensorBoard event file in ``folder`` (created if missing).

    ``purge_step``: for a resumed run, the first step this writer writes again;
    TensorBoard then drops the earlier files' events from that step on.
    Each ``scalar``/``scalars``/``image`` call appends one event and flushes it, so
    TensorBoard sees it at once and a crash loses nothing written. Use as a context
    manager or call ``close``.
    """

    def __init__(self, folder: pathlib.Path | str | os.PathLike, purge_step: int | None = None) -> None:
        if purge_step is not None:
            purge_step = _check_step(purge_step)
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        for number in itertools.count():  # "x": another writer's file is never appended to or replaced
            self.path = self.folder / f"{stem}.{number:03d}"
            try:
                self._file = open(self.path, "xb")
                break
            except FileExistsError:
                continue
        self._write(_event(time.time(), 0, file_version=FILE_VERSION))
        if purge_step is not None:
            self._write(_event(time.time(), purge_step, session_start=True))

    def _write(self, event: bytes) -> None:
        if self._file.closed:
            raise ValueError(f"event file {self.path} is closed")
        self._file.write(tfrecord(event))
        self._file.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Writes one scalar (stored as float32; NaN and infinities as they are)."""
        number = _as_real_number(value)
        if number is None:
            raise TypeError(f"scalar {tag!r} must be a real number, got {type(value).__name__}")
        self.scalars({tag: number}, step)

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> list[str]:
        """Writes each real number of ``values`` as scalar ``prefix + key`` in one event.

        Values that are no real number (strings, None, arrays, bools) are skipped;
        NaN and infinities are written. Returns the tags written.
        """
        step = _check_step(step)
        tags, encoded = [], []
        for key, value in values.items():
            number = _as_real_number(value)
            if number is None:
                continue
            tag = _check_tag(prefix + str(key))
            tags.append(tag)
            encoded.append(_scalar_value(tag, number))
        if encoded:
            self._write(_event(time.time(), step, summary=_summary(encoded)))
        return tags

    def image(self, tag: str, image: np.ndarray | pathlib.Path | str, step: int) -> None:
        """Writes one image: a PNG file's path, or an array uint8 (0..255) or float (0..1,
        clipped) of shape (H, W), (H, W, 1) or (H, W, 3), encoded as PNG."""
        step = _check_step(step)
        tag = _check_tag(tag)
        if isinstance(image, (str, os.PathLike)):
            png, height, width, colorspace = _png_from_file(pathlib.Path(image))
        else:
            png, height, width, colorspace = _png_from_array(image)
        self._write(_event(time.time(), step, summary=_summary([_image_value(tag, png, height, width, colorspace)])))

    def flush(self) -> None:
        """Flushes the file (each write already does; kept for writers used as streams)."""
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        """Closes the file; closing twice is harmless, writing afterwards a ValueError."""
        self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    return tag


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an integer, got {type(step).__name__}")
    return int(step)


# ------------------------------------------------------------------ helpers


def write_figures(writer: EventWriter, folder: pathlib.Path | str | os.PathLike, step: int) -> list[str]:
    """Writes every ``*.png`` directly in ``folder`` (sorted by name) as an image tagged
    by its stem; returns the tags. A missing folder holds no figures."""
    paths = sorted(pathlib.Path(folder).glob("*.png"))
    for path in paths:
        writer.image(path.stem, path, step)
    return [path.stem for path in paths]


def write_history(writer: EventWriter, epochs: Sequence[Mapping[str, float]], prefix: str = "train/") -> None:
    """Writes each epoch's metrics (e.g. ``History.epochs``) as scalars ``prefix + key``
    at step = the epoch's number, counted from 1."""
    for number, means in enumerate(epochs, start=1):
        writer.scalars(means, number, prefix)
