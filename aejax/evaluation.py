"""Evaluating trained models: metrics, latent-space helpers and batched decoding.

Numbers (``mean_squared_error``, ``psnr``, ``reconstruction_metrics``)
take and give numpy. The model helpers run a ``train.Model`` in eval mode; each
compiles one program per model, argument shapes and settings (the model is a static
argument of a module-level ``jax.jit``), so calling them every epoch recompiles nothing.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aejax import data as data_lib
from aejax.inference import inference_batch_size, map_over_split
from aejax.model import BatchStats, Model, Params

LECTURE_NOISE_STD = 0.3  # the lecture's denoising noise: x + 0.3 N(0, 1), unclipped
LECTURE_FIRST_BATCH = 64  # the lecture draws its figure digits from the first (unshuffled) test batch


def mean_squared_error(estimate: np.ndarray, target: np.ndarray) -> float:
    """MSE over every pixel of every image; shapes must match."""
    estimate, target = np.asarray(estimate, np.float64), np.asarray(target, np.float64)
    if estimate.shape != target.shape:
        raise ValueError(f"estimate shape {estimate.shape} != target shape {target.shape}")
    return float(np.mean(np.square(estimate - target)))


def psnr(estimate: np.ndarray, clean: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of ``estimate`` against ``clean``.

    From the MSE over the whole set: ``10 log10(data_range^2 / MSE)``. Noise of std 0.3
    on [0, 1] images gives about 10.5 dB.
    """
    return float(10 * np.log10(data_range**2 / mean_squared_error(estimate, clean)))


def interpolate(z_start: np.ndarray, z_end: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` points on the segment from z_start (D,) to z_end (D,), ends included: (steps, D)."""
    z_start, z_end = np.asarray(z_start).reshape(-1), np.asarray(z_end).reshape(-1)
    if z_start.shape != z_end.shape:
        raise ValueError(f"latents differ in shape: {z_start.shape} vs {z_end.shape}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    return (1 - weights) * z_start + weights * z_end


def reconstruction_metrics(result: Mapping[str, np.ndarray], prefix: str = "test") -> dict[str, float]:
    """Mean BCE and MSE of an ``evaluate`` result's reconstructions against its inputs.

    ``result["reconstructions"]`` and ``result["inputs"]`` (N, H, W, C) in [0, 1];
    the reconstructions are clipped to [1e-7, 1 - 1e-7] for the BCE's logarithms.
    Returns {f"{prefix}_bce", f"{prefix}_mse"}.
    """
    reconstructions, target = np.asarray(result["reconstructions"]), np.asarray(result["inputs"])
    clipped = np.clip(reconstructions, 1e-7, 1 - 1e-7)
    bce = float(np.mean(-(target * np.log(clipped) + (1 - target) * np.log(1 - clipped))))
    return {f"{prefix}_bce": bce, f"{prefix}_mse": mean_squared_error(reconstructions, target)}


def noisy_test_set(split: data_lib.Split, key: jax.Array, std: float = LECTURE_NOISE_STD,
                   ) -> tuple[np.ndarray, dict[str, jax.Array]]:
    """Clean images (N, H, W, C) in [0, 1] and an ``evaluate``-ready set of their noisy copies:
    {"image": clean + std * N(0, 1) (N, H, W, C) float32, unclipped, "label": (N,) int32}."""
    clean = data_lib.to_float_nhwc(split.images)
    noisy = data_lib.add_gaussian_noise(key, clean, std)
    return np.asarray(clean), {"image": noisy, "label": jnp.asarray(split.labels, jnp.int32)}


def lecture_example(split: data_lib.Split, label: int, index: int = 0) -> np.ndarray:
    """The ``index``-th image (H, W, C) of ``label`` in the split's first batch, where the lecture
    picks its figure digits; else in the whole split."""
    first = np.asarray(split.labels[:LECTURE_FIRST_BATCH])
    within = LECTURE_FIRST_BATCH if np.count_nonzero(first == label) > index else len(split.labels)
    return first_of_class(split, label, index, within)


def vector_arithmetic(model: Model, params: Params, batch_stats: BatchStats, inputs: np.ndarray) -> np.ndarray:
    """inputs (3, H, W, C) = [a, b, c] -> [a, b, c, decode(encode(a) + encode(b) - encode(c))] (4, H, W, C)."""
    inputs = np.asarray(inputs)
    if inputs.ndim != 4 or inputs.shape[0] != 3:
        raise ValueError(f"vector arithmetic takes three images (3, H, W, C), got {inputs.shape}")
    codes = _encode(model, params, batch_stats, jnp.asarray(inputs))
    result = _decode_images(model, params, batch_stats, (codes[0] + codes[1] - codes[2])[None], None)
    return np.concatenate([inputs, np.asarray(result)])


def first_of_class(split: data_lib.Split, label: int, index: int = 0,
                   within: int = LECTURE_FIRST_BATCH) -> np.ndarray:
    """The ``index``-th image (H, W, C) in [0, 1] labelled ``label`` among the split's first ``within``
    (64: the lecture's first test batch)."""
    found = np.flatnonzero(np.asarray(split.labels[:within]) == label)
    if len(found) <= index:
        raise ValueError(f"fewer than {index + 1} images of class {label} among the first {within}")
    return np.asarray(data_lib.to_float_nhwc(split.images[found[index]][None]))[0]


@functools.partial(jax.jit, static_argnames=("model", "batch_statistics"))
def _evaluate_batch(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                    indices: jax.Array, batch_statistics: bool):
    batch = data_lib.gather_batch(dataset, indices)
    latents = model.encode(params, batch_stats, batch["image"], batch["label"], batch_statistics)
    logits = model.decode(params, batch_stats, latents, batch["label"], batch_statistics)
    return batch["image"], latents, jax.nn.sigmoid(logits), batch["label"]


def evaluate(
    model: Model,
    params: Params,
    batch_stats: BatchStats,
    dataset: Mapping[str, jax.Array],
    batch_size: int | None = None,
    batch_statistics: bool = False,
) -> dict[str, np.ndarray]:
    """The lecture's ``run_eval``: runs a whole split ({"image", "label"}, see ``data.device_dataset``)
    through the model.

    Eval mode by default; ``batch_statistics=True`` normalises each batch by its own
    statistics, as the notebook does where it forgets ``.eval()`` (then ``batch_size``
    matters and must be given: the lecture's is 64). In eval mode ``None`` takes
    ``inference.inference_batch_size()``.

    Returns numpy arrays: inputs (N, H, W, C), latents (N, D), reconstructions
    (N, H, W, C) = sigmoid(logits) in [0, 1], labels (N,).
    """
    if batch_size is None:
        if batch_statistics:
            raise ValueError("batch_statistics=True needs an explicit batch_size: each batch's statistics depend on it")
        batch_size = inference_batch_size()
    dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
    outputs = map_over_split(
        lambda _, indices: _evaluate_batch(model, params, batch_stats, dataset, indices, batch_statistics),
        dataset, batch_size, pad_last=not batch_statistics)
    return dict(zip(("inputs", "latents", "reconstructions", "labels"), outputs))


@functools.partial(jax.jit, static_argnames="model")
def _encode_batch(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                  indices: jax.Array) -> jax.Array:
    batch = data_lib.gather_batch(dataset, indices)
    return model.encode(params, batch_stats, batch["image"], batch["label"])


def encode_split(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                 batch_size: int | None = None) -> np.ndarray:
    """The codes (N, D) of a whole split ({"image", "label"}), eval mode, encoder only: ``evaluate``'s
    "latents" without decoding. ``batch_size`` None: ``inference.inference_batch_size()``."""
    dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
    (codes,) = map_over_split(lambda _, indices: (_encode_batch(model, params, batch_stats, dataset, indices),),
                              dataset, batch_size or inference_batch_size(), pad_last=True)
    return codes


@functools.partial(jax.jit, static_argnames="model")
def _encode(model: Model, params: Params, batch_stats: BatchStats, images: jax.Array) -> jax.Array:
    return model.encode(params, batch_stats, images, None)


@functools.partial(jax.jit, static_argnames="model")
def _decode_images(model: Model, params: Params, batch_stats: BatchStats, latents: jax.Array,
                   labels: jax.Array | None) -> jax.Array:
    return jax.nn.sigmoid(model.decode(params, batch_stats, latents, labels))


def _decode_in_batches(model: Model, params: Params, batch_stats: BatchStats, latents: jax.Array,
                       labels: jax.Array | None, batch_size: int | None = None) -> np.ndarray:
    """sigmoid(decode(latents (N, D), labels (N,) or None)), eval mode, ``batch_size`` at a time
    (None: ``inference.inference_batch_size()``; a short last batch padded, so one compilation): (N, H, W, C)."""
    latents = jnp.asarray(latents)
    labels = None if labels is None else jnp.asarray(labels)
    if labels is not None and labels.shape[:1] != latents.shape[:1]:
        raise ValueError(f"need one label per latent, got latents {latents.shape} and labels {labels.shape}")
    inputs = {"latent": latents} if labels is None else {"latent": latents, "label": labels}
    (images,) = map_over_split(
        lambda _, indices: (_decode_images(model, params, batch_stats, latents[indices],
                                           None if labels is None else labels[indices]),),
        inputs, batch_size or inference_batch_size(), pad_last=True)
    return images


def decode_with_labels(model: Model, params: Params, batch_stats: BatchStats, latents: jax.Array,
                       labels: jax.Array, batch_size: int | None = None) -> np.ndarray:
    """A conditional decoder's images for latents (N, D) and integer labels (N,): (N, H, W, C) in [0, 1].

    Eval mode, ``batch_size`` latents per compiled call (None: ``inference.inference_batch_size()``).
    """
    return _decode_in_batches(model, params, batch_stats, latents, labels, batch_size)


def decode_on_grid(model: Model, params: Params, batch_stats: BatchStats, low: tuple[float, float],
                   high: tuple[float, float], steps: int, label: int | None = None) -> np.ndarray:
    """Images (steps, steps, H, W, C) in [0, 1] decoded on a regular grid of the box [low, high] (2-D latents).

    Row i holds z[0] = linspace(low[0], high[0], steps)[i], column j z[1] =
    linspace(low[1], high[1], steps)[j] (the lecture's ``cartesian_prod`` order).
    ``label``: every point decoded with it (a conditional decoder).
    """
    axes = [jnp.linspace(lo, hi, steps) for lo, hi in zip(low, high)]
    grid = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    labels = None if label is None else jnp.full((grid.shape[0],), label, jnp.int32)
    images = _decode_in_batches(model, params, batch_stats, grid, labels)
    return images.reshape(steps, steps, *images.shape[1:])


def label_swap(model: Model, params: Params, batch_stats: BatchStats, styles: np.ndarray,
               num_classes: int) -> np.ndarray:
    """Each style (N, D) decoded with every label 0 .. num_classes - 1: images (N, num_classes, H, W, C).

    Entry [n, c] is style n decoded with label c (a conditional decoder, eval mode).
    """
    styles = jnp.asarray(styles)
    labels = jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), styles.shape[0])
    decoded = _decode_in_batches(model, params, batch_stats, jnp.repeat(styles, num_classes, axis=0), labels)
    return decoded.reshape(styles.shape[0], num_classes, *decoded.shape[1:])


def interpolation_frames(model: Model, params: Params, batch_stats: BatchStats, start: np.ndarray,
                         end: np.ndarray, steps: int) -> np.ndarray:
    """The decoded straight line between the codes of two images (H, W, C): (steps, H, W, C) in [0, 1].

    Frame 0 decodes ``start``'s code, frame ``steps - 1`` ``end``'s; eval mode, unconditional.
    """
    codes = _encode(model, params, batch_stats, jnp.stack([jnp.asarray(start), jnp.asarray(end)]))
    path = jnp.asarray(interpolate(np.asarray(codes[0]), np.asarray(codes[1]), steps), jnp.float32)
    return _decode_in_batches(model, params, batch_stats, path, None)
