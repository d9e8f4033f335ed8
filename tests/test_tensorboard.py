"""Event files written by aejax.tensorboard, read back by the tensorboard package's own readers."""

from __future__ import annotations

import io
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator, event_file_loader
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors as tb_errors
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

from aejax import tensorboard


def _accumulator(folder: pathlib.Path) -> event_accumulator.EventAccumulator:
    """TensorBoard's reader of a run folder, keeping every event (0: no sampling)."""
    accumulator = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    return accumulator.Reload()


def _events(path: pathlib.Path) -> list[event_pb2.Event]:
    """The file's events as written (TensorBoard's EventFileLoader would migrate scalars to tensors)."""
    return [event_pb2.Event.FromString(record) for record in event_file_loader.RawEventFileLoader(str(path)).Load()]


def _records(path: pathlib.Path) -> list[bytes]:
    """Every record of a TFRecord file through TensorBoard's CRC-checking reader."""
    reader = pywrap_tensorflow.PyRecordReader_New(str(path))
    records = []
    while True:
        try:
            reader.GetNext()
        except tb_errors.OutOfRangeError:
            return records
        records.append(reader.record())


def _png_pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def test_scalars_are_read_back_float32_exact_with_steps_and_tags(tmp_path):
    with tensorboard.EventWriter(tmp_path) as writer:
        written = writer.scalars({"loss": 0.1, "error": 1 / 3, "count": 7, "np": np.float64(2.0 ** -30 + 1),
                                  "jax": jnp.float32(2.5), "name": "conv", "none": None, "flag": True,
                                  "vector": np.ones(3)}, step=1, prefix="train/")
        writer.scalars({"loss": 0.05, "error": math.nan, "count": -math.inf, "big": 1e300}, step=2, prefix="train/")
        writer.scalar("test/error", np.float32(0.0123), step=2)
    # strings, None, bools and arrays are no scalars
    assert written == ["train/loss", "train/error", "train/count", "train/np", "train/jax"]

    accumulator = _accumulator(tmp_path)
    assert set(accumulator.Tags()["scalars"]) == {"train/loss", "train/error", "train/count", "train/np",
                                                  "train/jax", "train/big", "test/error"}
    values = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    assert values["train/loss"] == [(1, f32(0.1)), (2, f32(0.05))]
    assert values["train/count"][0] == (1, 7.0) and values["train/count"][1] == (2, -math.inf)
    assert values["train/np"] == [(1, f32(2.0 ** -30 + 1))] and values["train/jax"] == [(1, 2.5)]
    assert values["train/error"][0] == (1, f32(1 / 3)) and math.isnan(values["train/error"][1][1])
    assert values["train/big"] == [(2, math.inf)]  # past float32's range, as TensorFlow writes it
    assert values["test/error"] == [(2, f32(0.0123))]


def test_the_file_is_named_for_tensorboard_and_opens_with_its_version(tmp_path):
    with tensorboard.EventWriter(tmp_path / "run") as writer:
        writer.scalar("a", 1.0, step=3)
    (path,) = (tmp_path / "run").iterdir()
    assert path == writer.path and path.name.startswith("events.out.tfevents.")
    first, second = _events(path)
    assert first.file_version == "brain.Event:2" and first.step == 0
    assert second.step == 3 and second.wall_time >= first.wall_time > 1e9
    assert [(v.tag, v.simple_value) for v in second.summary.value] == [("a", 1.0)]


def test_writers_in_one_folder_get_files_named_in_the_order_opened(tmp_path):
    writers = [tensorboard.EventWriter(tmp_path) for _ in range(12)]
    for writer in writers:
        writer.close()
    paths = [writer.path for writer in writers]
    assert len(set(paths)) == 12 and sorted(paths) == paths == sorted(tmp_path.iterdir())


def test_images_are_read_back_with_their_sizes_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    channel = rng.random((6, 4, 1), dtype=np.float32)
    channel[0, 0, 0], channel[0, 1, 0] = -0.5, 1.5  # clipped to 0 and 255
    rgb = rng.integers(0, 256, (3, 8, 3), dtype=np.uint8)
    figure = tmp_path / "figure.png"
    Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)).save(figure)  # RGBA
    with tensorboard.EventWriter(tmp_path / "run") as writer:
        writer.image("grey", grey, step=1)
        writer.image("channel", channel, step=1)
        writer.image("rgb", rgb, step=2)
        writer.image("figure", figure, step=3)
        writer.image("figure", str(figure), step=4)

    accumulator = _accumulator(tmp_path / "run")
    assert set(accumulator.Tags()["images"]) == {"grey", "channel", "rgb", "figure"}
    (event,) = accumulator.Images("grey")
    assert (event.step, event.height, event.width) == (1, 5, 7)
    np.testing.assert_array_equal(_png_pixels(event.encoded_image_string), grey)
    (event,) = accumulator.Images("channel")
    assert (event.height, event.width) == (6, 4)
    expected = np.round(np.clip(channel[..., 0], 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(_png_pixels(event.encoded_image_string), expected)
    assert expected[0, 0] == 0 and expected[0, 1] == 255
    (event,) = accumulator.Images("rgb")
    assert (event.step, event.height, event.width) == (2, 3, 8)
    np.testing.assert_array_equal(_png_pixels(event.encoded_image_string), rgb)
    events = accumulator.Images("figure")
    assert [(e.step, e.height, e.width) for e in events] == [(3, 9, 11), (4, 9, 11)]
    assert all(e.encoded_image_string == figure.read_bytes() for e in events)  # the file's own bytes
    colorspaces = {v.tag: v.image.colorspace for e in _events(writer.path) for v in e.summary.value}
    assert colorspaces == {"grey": 1, "channel": 1, "rgb": 3, "figure": 4}


def test_figures_and_history(tmp_path):
    figures = tmp_path / "figures"
    (figures / "nested").mkdir(parents=True)
    for name, size in (("samples", (4, 6)), ("latent", (5, 5)), ("nested/deeper", (2, 2))):
        Image.fromarray(np.zeros(size, np.uint8)).save(figures / f"{name}.png")
    (figures / "notes.txt").write_text("not a figure")
    epochs = [{"loss": 0.5, "kl": 2.0}, {"loss": 0.25, "kl": 1.5}, {"loss": 0.125, "kl": 1.25, "valid_error": 0.75}]
    with tensorboard.EventWriter(tmp_path / "run") as writer:
        tensorboard.write_history(writer, epochs)
        assert tensorboard.write_figures(writer, figures, step=3) == ["latent", "samples"]
        assert tensorboard.write_figures(writer, tmp_path / "missing", step=3) == []

    accumulator = _accumulator(tmp_path / "run")
    assert [(e.step, e.value) for e in accumulator.Scalars("train/loss")] == [(1, 0.5), (2, 0.25), (3, 0.125)]
    assert [(e.step, e.value) for e in accumulator.Scalars("train/kl")] == [(1, 2.0), (2, 1.5), (3, 1.25)]
    assert [(e.step, e.value) for e in accumulator.Scalars("train/valid_error")] == [(3, 0.75)]
    assert sorted(accumulator.Tags()["images"]) == ["latent", "samples"]
    assert [(e.step, e.height, e.width) for e in accumulator.Images("samples")] == [(3, 4, 6)]


def test_a_resumed_writer_adds_a_file_whose_steps_replace_the_earlier_ones(tmp_path):
    with tensorboard.EventWriter(tmp_path) as first:
        tensorboard.write_history(first, [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.5}])
    # the resumed process writes the whole history again (restored from the checkpoint), one epoch more
    with tensorboard.EventWriter(tmp_path, purge_step=1) as second:
        tensorboard.write_history(second, [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.0}, {"loss": 0.5}])
    assert second.path != first.path and sorted(tmp_path.iterdir()) == [first.path, second.path]
    assert len(_events(first.path)) == 4  # the earlier file is kept as it was
    events = _accumulator(tmp_path).Scalars("train/loss")
    assert [(e.step, e.value) for e in events] == [(1, 3.0), (2, 2.0), (3, 1.0), (4, 0.5)]


def test_a_purge_step_drops_only_the_later_steps_of_earlier_files(tmp_path):
    with tensorboard.EventWriter(tmp_path) as crashed:
        tensorboard.write_history(crashed, [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.5}])
        crashed.image("samples", np.zeros((2, 2), np.uint8), step=3)
    # resumed from the checkpoint of epoch 1: it writes epochs 2 and 3 again
    with tensorboard.EventWriter(tmp_path, purge_step=2) as resumed:
        resumed.scalars({"loss": 1.75}, step=2, prefix="train/")
    accumulator = _accumulator(tmp_path)
    assert [(e.step, e.value) for e in accumulator.Scalars("train/loss")] == [(1, 3.0), (2, 1.75)]
    assert accumulator.Images("samples") == []  # every tag's events from step 2 on
    # without a purge step TensorBoard keeps both files' events of a step
    with tensorboard.EventWriter(tmp_path) as again:
        again.scalars({"loss": 1.5}, step=2, prefix="train/")
    assert [e.step for e in _accumulator(tmp_path).Scalars("train/loss")] == [1, 2, 2]


@pytest.mark.parametrize("where", ["length", "data"])
def test_tensorboard_detects_a_corrupt_byte_by_its_crc(tmp_path, where):
    with tensorboard.EventWriter(tmp_path) as writer:
        writer.scalar("a", 1.0, step=1)
        writer.scalar("b", 2.0, step=2)
    records = _records(writer.path)
    assert len(records) == 3 and event_pb2.Event.FromString(records[2]).summary.value[0].tag == "b"

    data = bytearray(writer.path.read_bytes())
    last = len(data) - (len(records[2]) + 16)  # the last record: 8 + 4 header bytes, data, 4 crc bytes
    data[last + 2 if where == "length" else last + 12 + 5] ^= 0x01
    writer.path.write_bytes(bytes(data))
    reader = pywrap_tensorflow.PyRecordReader_New(str(writer.path))
    reader.GetNext()
    reader.GetNext()
    with pytest.raises(tb_errors.DataLossError, match="header crc32" if where == "length" else "event crc32"):
        reader.GetNext()
    # TensorBoard drops the corrupt record and keeps the ones before it
    assert _accumulator(tmp_path).Tags()["scalars"] == ["a"]


def test_the_tfrecord_crc_is_tensorflows_masked_crc32c():
    assert tensorboard.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    for data in (b"", b"a", bytes(range(256)) * 3):
        assert tensorboard.masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)


def test_bad_input_is_a_one_line_error(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(jpeg, format="JPEG")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    writer = tensorboard.EventWriter(tmp_path / "run")
    cases = [
        (lambda: writer.image("x", np.zeros((4, 4, 2), np.uint8), 1), ValueError, "shape"),
        (lambda: writer.image("x", np.zeros((0, 4), np.uint8), 1), ValueError, "shape"),
        (lambda: writer.image("x", np.zeros((4, 4), np.int16), 1), ValueError, "uint8"),
        (lambda: writer.image("x", np.full((4, 4), np.nan), 1), ValueError, "non-finite"),
        (lambda: writer.image("x", jpeg, 1), ValueError, "JPEG image, not a PNG"),
        (lambda: writer.image("x", tmp_path / "broken.png", 1), ValueError, "not a readable PNG"),
        (lambda: writer.image("", np.zeros((4, 4), np.uint8), 1), ValueError, "tag"),
        (lambda: writer.scalar("x", "0.5", 1), TypeError, "real number"),
        (lambda: writer.scalar("x", 0.5, 1.0), TypeError, "step"),
        (lambda: writer.scalars({"": 0.5}, 1), ValueError, "tag"),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=words) as info:
            call()
        assert "\n" not in str(info.value)
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.scalar("x", 0.5, 2)
    assert len(_events(writer.path)) == 1  # only the version: nothing bad was written
