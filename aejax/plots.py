"""The lecture's figures; every function saves a PNG (Agg backend) and returns its path.

Images are greyscale (H, W) or (H, W, 1), shown in grey, or colour (H, W, 3), shown in
colour (other channel counts are shown as the mean of their channels, in grey).
"""

from __future__ import annotations

import math
import os
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

PathLike = str | os.PathLike


def _as_images(images: np.ndarray) -> np.ndarray:
    """Images as the figures draw them: (N, H, W) float in grey, or (N, H, W, 3) in colour.

    Takes (N, H, W), (N, H, W, C) or flattened square greyscale (N, side * side), e.g. (N, 784).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"flat images must be square greyscale (N, side * side), got shape {images.shape}")
        return images.reshape(images.shape[0], side, side)
    if images.ndim == 4:
        if images.shape[-1] == 3:
            return images
        return images[..., 0] if images.shape[-1] == 1 else images.mean(axis=-1)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), (N, H, W, C) or (N, side * side), got shape {images.shape}")
    return images


def _in_colour(images: np.ndarray) -> np.ndarray:
    """``_as_images``' greyscale (N, H, W) as (N, H, W, 3); colour as it is."""
    return images if images.ndim == 4 else np.repeat(images[..., None], 3, axis=-1)


def _show(ax: plt.Axes, image: np.ndarray) -> None:
    """One image in [0, 1] (or a canvas of them): (H, W) in grey, (H, W, 3) in colour (clipped to [0, 1])."""
    if image.ndim == 3:
        ax.imshow(np.clip(image, 0, 1))
    else:
        ax.imshow(image, cmap="Greys_r", clim=(0, 1))


def _save(fig: plt.Figure, path: PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_digits(*rows: np.ndarray, path: PathLike, titles: list[str] | None = None, invert_colors: bool = True) -> pathlib.Path:
    """The lecture's ``plot_digits``: each argument a row of images, clim 0..1.

    rows: arrays of images of one size ((N, H, W), (N, H, W, C) or (N, side * side)); the
    shortest sets N. A row in colour shows every row in colour; ``invert_colors`` (dark
    ink on white) applies to greyscale figures only.
    """
    rows = [_as_images(r) for r in rows]
    if len({r.shape[1:3] for r in rows}) > 1:
        raise ValueError(f"rows must hold images of one size, got {sorted({r.shape[1:3] for r in rows})}")
    if any(r.ndim == 4 for r in rows):
        rows = [_in_colour(r) for r in rows]
    n = min(r.shape[0] for r in rows)
    height = rows[0].shape[1]
    canvas = np.concatenate([np.concatenate(list(r[:n]), axis=1) for r in rows], axis=0)
    if invert_colors and canvas.ndim == 2:
        canvas = 1 - canvas
    fig, ax = plt.subplots(figsize=(2 * n, 2 * len(rows)))
    _show(ax, canvas)
    ax.set_xticks([])
    ax.set_yticks(np.arange(len(rows)) * height + height // 2, labels=titles or [""] * len(rows), fontsize=16)
    return _save(fig, path)


def plot_latent_scatter(latents: np.ndarray, labels: np.ndarray | None, path: PathLike, title: str = "latent space",
                        alpha: float = 0.9) -> pathlib.Path:
    """Scatter of the first two latent coordinates (N, >=2), coloured by label (tab10)."""
    latents = np.asarray(latents)
    fig, ax = plt.subplots(figsize=(10, 10))
    if labels is None:
        ax.scatter(latents[:, 0], latents[:, 1], alpha=alpha, s=4)
    else:
        points = ax.scatter(latents[:, 0], latents[:, 1], c=labels, cmap="tab10", alpha=alpha, s=4,
                            vmin=-0.5, vmax=9.5)
        fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set(title=title, xlabel="z[0]", ylabel="z[1]")
    ax.grid(True)
    return _save(fig, path)


def plot_class_activation_maps(activations: np.ndarray, labels: np.ndarray, path: PathLike,
                               side: int = 30, clim: tuple[float, float] = (0, 0.5)) -> pathlib.Path:
    """Per-class mean activation of the latent units (N, side*side) as side x side maps, one per
    class present in ``labels`` (N,), five to a row."""
    classes = np.unique(np.asarray(labels))
    rows = -(-len(classes) // 5)
    fig, axes = plt.subplots(rows, 5, figsize=(16, 3.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, label in zip(axes.ravel(), classes):
        image = ax.imshow(activations[labels == label].mean(axis=0).reshape(side, side), cmap="Greys", clim=clim)
        ax.set_title(f"class {label}")
    fig.colorbar(image, ax=axes, shrink=0.8, label="mean activation")
    return _save(fig, path)


def _percent_hist(ax: plt.Axes, values: np.ndarray, bins: np.ndarray) -> None:
    counts, _ = np.histogram(values, bins=bins)
    widths = np.diff(bins)
    ax.bar(bins[:-1] + widths / 2, counts / len(values), width=widths * 0.8)
    ax.xaxis.set_ticks(bins)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{int(np.round(100 * y))}%"))
    ax.grid(True)


def plot_activation_histograms(activations: np.ndarray, path: PathLike, n_bins: int = 10, height: float = 1.0) -> pathlib.Path:
    """Histograms of all activations and of per-unit means (N, units), dashed overall mean."""
    unit_means = activations.mean(axis=0)
    mean = float(unit_means.mean())
    bins = np.linspace(0, 1, n_bins + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
    _percent_hist(ax1, activations.ravel(), bins)
    ax1.plot([mean, mean], [0, height], "k--", label=f"Overall Mean = {mean:.2f}")
    ax1.legend(loc="upper center", fontsize=14)
    ax1.set(xlabel="Activation", ylabel="% Activations", xlim=(0, 1), ylim=(0, height))
    _percent_hist(ax2, unit_means, bins)
    ax2.plot([mean, mean], [0, height], "k--")
    ax2.set(xlabel="Neuron Mean Activation", ylabel="% Neurons", xlim=(0, 1), ylim=(0, height))
    return _save(fig, path)


def plot_sparsity_costs(path: PathLike, target: float = 0.1) -> pathlib.Path:
    """KL, MAE and MSE cost against the actual sparsity for a target rate."""
    q = np.linspace(0.001, 0.999, 500)
    kl = target * np.log(target / q) + (1 - target) * np.log((1 - target) / (1 - q))
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.plot([target, target], [0, 0.3], "k:")
    ax.text(0.05, 0.32, "Target\nsparsity", fontsize=14)
    ax.plot(q, kl, "b-", label="KL divergence")
    ax.plot(q, np.abs(target - q), "g--", label=r"MAE ($\ell_1$)")
    ax.plot(q, (target - q) ** 2, "r--", linewidth=1, label=r"MSE ($\ell_2$)")
    ax.legend(loc="upper left", fontsize=14)
    ax.set(xlabel="Actual sparsity", ylabel="Cost", xlim=(0, 1), ylim=(0, 0.95))
    return _save(fig, path)


def plot_image_row(images: np.ndarray, path: PathLike, title: str | None = None) -> pathlib.Path:
    """One row of images, each in its own axes (the interpolation figure), clim 0..1."""
    images = _as_images(images)
    fig, axes = plt.subplots(1, len(images), figsize=(16, 2.5))
    for ax, image in zip(np.atleast_1d(axes), images):
        _show(ax, image)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_gif(images: np.ndarray, path: PathLike, upscale: int = 4, frame_ms: int = 40) -> pathlib.Path:
    """An animated, looping GIF of images in [0, 1] ((N, H, W) or (N, H, W, C)), upscaled.

    Frames at 4x (112 px for MNIST), greyscale or colour: a 200-frame interpolation stays a
    few hundred KB.
    """
    images = _as_images(images)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (images.shape[2] * upscale, images.shape[1] * upscale)
    frames = [Image.fromarray(np.uint8(np.clip(im, 0, 1) * 255)).resize(size, Image.NEAREST) for im in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], optimize=True, duration=frame_ms, loop=0)
    return path


def save_frames_gif(frames: list[PathLike], path: PathLike, frame_ms: int = 700, max_width: int = 400) -> pathlib.Path:
    """An animated, looping GIF of saved figures (PNG paths, shown in order, all at the first's
    size, at most ``max_width`` pixels wide, 64 colours: the GIF stays a few hundred KB)."""
    if not frames:
        raise ValueError("no frames to animate")
    first = Image.open(frames[0])
    scale = min(1.0, max_width / first.size[0])
    size = (round(first.size[0] * scale), round(first.size[1] * scale))
    images = [Image.open(f).convert("RGB").resize(size, Image.LANCZOS).quantize(64) for f in frames]
    path = pathlib.Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], optimize=True, duration=frame_ms, loop=0)
    return path


def plot_image_grid(images: np.ndarray, path: PathLike, title: str | None = None,
                    row_labels: list[str] | None = None, col_labels: list[str] | None = None) -> pathlib.Path:
    """A (rows, cols) grid of images as one tiled image, clim 0..1: images (R, C, H, W) or (R, C, H, W, ch)."""
    images = np.asarray(images, np.float32)
    if images.ndim not in (4, 5):
        raise ValueError(f"images must be (R, C, H, W) or (R, C, H, W, channels), got shape {images.shape}")
    rows, cols = images.shape[:2]
    tiles = _as_images(images.reshape(rows * cols, *images.shape[2:]))
    height, width = tiles.shape[1:3]
    tiles = tiles.reshape(rows, cols, *tiles.shape[1:])
    canvas = np.swapaxes(tiles, 1, 2).reshape(rows * height, cols * width, *tiles.shape[4:])
    # at most 10 inches a side: a 50x50 grid is a figure to look at, not a lossless archive
    fig, ax = plt.subplots(figsize=(min(10, max(4, cols * 0.6)), min(10, max(4, rows * 0.6))))
    _show(ax, canvas)
    ax.set_xticks(np.arange(cols) * width + width // 2 if col_labels else [], labels=col_labels or [])
    ax.set_yticks(np.arange(rows) * height + height // 2 if row_labels else [], labels=row_labels or [])
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_metric_by_epoch(values: np.ndarray, path: PathLike, name: str) -> pathlib.Path:
    """One value per epoch (E,), e.g. a test error, against the epoch number 1..E."""
    values = np.asarray(values)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(np.arange(1, len(values) + 1), values, marker="o")
    ax.set(xlabel="epoch", ylabel=name, title=f"{name} on the test set by epoch")
    ax.grid(True)
    return _save(fig, path)


def plot_histograms(values: dict[str, np.ndarray], path: PathLike, bins: int = 50) -> pathlib.Path:
    """One histogram per named array (flattened), side by side (e.g. posterior means and variances)."""
    fig, axes = plt.subplots(1, len(values), figsize=(6 * len(values), 4.5))
    for ax, (name, array) in zip(np.atleast_1d(axes), values.items()):
        ax.hist(np.asarray(array).ravel(), bins=bins, color="tab:blue")
        ax.set(title=name, xlabel=name, ylabel="count")
    return _save(fig, path)


def plot_toy_reconstructions(noisy: np.ndarray, labels: np.ndarray, curves: list[np.ndarray],
                             reconstructions: dict[str, np.ndarray], path: PathLike) -> pathlib.Path:
    """Section 6: noisy points by label, the true curves, and each model's reconstructions in grey."""
    fig, axes = plt.subplots(1, len(reconstructions), figsize=(10 * len(reconstructions), 6.5), squeeze=False)
    for ax, (name, points) in zip(axes[0], reconstructions.items()):
        ax.scatter(noisy[:, 0], noisy[:, 1], c=np.where(labels == 0, "tab:blue", "tab:green"), s=4, label="noisy data")
        for curve, colour in zip(curves, ("red", "gold")):
            ax.plot(curve[:, 0], curve[:, 1], color=colour, linewidth=4)
        ax.scatter(points[:, 0], points[:, 1], color="grey", s=6, label="reconstruction (test)")
        ax.set(title=name, xlim=(-2.5, 2.5), ylim=(-1.5, 1.5), xlabel="x", ylabel="y")
        ax.legend(loc="upper left")
    return _save(fig, path)
