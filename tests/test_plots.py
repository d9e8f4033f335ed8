"""Figures are written as PNG / GIF with the lecture's settings."""

import numpy as np
import pytest
from PIL import Image

from aejax import plots


def test_png_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((9, 28, 28, 1), dtype=np.float32)
    activations = rng.random((50, 900)) * 0.3
    labels = np.arange(50) % 10
    paths = [
        plots.plot_digits(images, images[::-1], path=tmp_path / "digits.png", titles=["a", "b"]),
        plots.plot_latent_scatter(rng.normal(size=(50, 2)), labels, tmp_path / "scatter.png"),
        plots.plot_class_activation_maps(activations, labels, tmp_path / "maps.png"),
        plots.plot_activation_histograms(activations, tmp_path / "hist.png"),
        plots.plot_sparsity_costs(tmp_path / "costs.png"),
        plots.plot_image_row(images[:5], tmp_path / "sub" / "row.png"),
    ]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100


def test_class_activation_maps_take_the_data_classes(tmp_path):
    rng = np.random.default_rng(1)
    activations = rng.random((48, 900)) * 0.3
    paths = [plots.plot_class_activation_maps(activations, np.arange(48) % classes, tmp_path / f"maps{classes}.png")
             for classes in (8, 10, 13)]
    heights = []
    for path in paths:
        with Image.open(path) as image:
            heights.append(image.size[1])
    # two rows of five for 8 and 10 classes (the same up to the tight bounding box), three for 13
    assert abs(heights[0] - heights[1]) < 0.1 * heights[1] and heights[2] > 1.3 * max(heights[:2])


def test_gif_has_every_frame_upscaled_looping_at_40ms(tmp_path):
    frames = np.linspace(0, 1, 200)[:, None, None] * np.ones((200, 28, 28))
    path = plots.save_gif(frames, tmp_path / "interp.gif")
    with Image.open(path) as gif:
        assert gif.size == (112, 112)  # 4x: a 200-frame GIF stays a few hundred KB
        assert gif.n_frames == 200
        assert gif.info["duration"] == 40
        assert gif.info["loop"] == 0
        gif.seek(199)
        assert np.asarray(gif.convert("L")).mean() > 250  # the last frame is white


def _saturation(path) -> float:
    """The largest spread between a pixel's RGB channels in a saved figure (0: every pixel grey)."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), np.int64)
    return float((rgb.max(axis=-1) - rgb.min(axis=-1)).max())


def test_colour_images_are_drawn_in_colour_and_grey_ones_in_grey(tmp_path):
    red = np.zeros((2, 3, 32, 32, 3), np.float32)
    red[..., 0] = 1.0
    grey = np.full((2, 3, 20, 24), 0.5, np.float32)
    assert _saturation(plots.plot_image_grid(red, tmp_path / "red.png", col_labels=["a", "b", "c"])) > 200
    assert _saturation(plots.plot_image_grid(grey, tmp_path / "grey.png", row_labels=["a", "b"])) == 0
    assert _saturation(plots.plot_digits(red[0], red[1], path=tmp_path / "digits.png", titles=["a", "b"])) > 200
    assert _saturation(plots.plot_digits(grey[0], path=tmp_path / "grey_digits.png")) == 0
    assert _saturation(plots.plot_image_row(red[0], tmp_path / "row.png")) > 200
    primaries = np.eye(3, dtype=np.float32)[:, None, None, :] * np.ones((3, 32, 32, 1), np.float32)
    gif = plots.save_gif(primaries, tmp_path / "primaries.gif")
    with Image.open(gif) as frames:
        assert frames.size == (128, 128) and frames.n_frames == 3
        for index, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
            frames.seek(index)
            assert tuple(frames.convert("RGB").getpixel((5, 5))) == colour


def test_rows_of_other_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="rows must hold images of one size"):
        plots.plot_digits(np.zeros((2, 28, 28)), np.zeros((2, 32, 32, 3)), path=tmp_path / "mixed.png")
