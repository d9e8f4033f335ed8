"""Binarized MNIST, the data set of the VAE likelihood literature; any greyscale images alike.

Each pixel becomes 1 with probability equal to its grey level in [0, 1], else 0.
Colour images are refused: a binarized data set is black and white.
Training draws a fresh binarization at every step (``dynamic_binarize``, "dynamic
binarization"); the test set is binarized once, by a fixed seed
(``binarized_test_set``), so that every run is scored on the same binary images.
A Bernoulli likelihood of binary targets is then a proper log-probability, and its
nats per image compare with published ones (negative ELBO, IWAE NLL); on grey-level
targets the same BCE also carries the targets' own binary entropy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aejax import data as data_lib

BINARIZATION_SEED = 0  # the seed of the one fixed binarization of the test set
_MANTISSA_BITS = 53  # a uniform draw in [0, 1) is m / 2**53 with m < 2**53 (NumPy's double from 64 random bits)


def _greyscale_only(channels: int) -> None:
    if channels != 1:
        raise ValueError(f"binarization takes greyscale images, got {channels} channels: "
                         f"a binarized data set is black and white")


def dynamic_binarize(key: jax.Array, images: jax.Array) -> jax.Array:
    """One Bernoulli draw per pixel with p = the pixel's intensity: (B, H, W, 1) in [0, 1] -> float32 {0, 1}.

    A different ``key`` gives a different draw; the same key, the same one. Colour
    images (C > 1) are refused.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, H, W, 1), got {images.shape}")
    _greyscale_only(images.shape[-1])
    return jax.random.bernoulli(key, images).astype(jnp.float32)


def static_binarize(images: np.ndarray, seed: int) -> np.ndarray:
    """A seeded Bernoulli(pixel / 255) draw of uint8 images (N, H, W): float32 (N, H, W, 1) in {0, 1}.

    Bit-identical on every machine and every call with the same ``seed``: NumPy's PCG64
    raw 64-bit stream is fixed for a seed (NumPy keeps bit generators' streams stable
    across versions, unlike its distributions' and JAX's random functions, whose values
    have changed between releases), and the comparison ``u < pixel / 255`` with
    ``u = m / 2**53`` is done exactly in integers: ``m * 255 < pixel * 2**53``.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if images.ndim == 4:
        _greyscale_only(images.shape[-1])
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {images.shape}")
    mantissas = np.random.PCG64(seed).random_raw(images.size) >> np.uint64(64 - _MANTISSA_BITS)
    thresholds = images.reshape(-1).astype(np.uint64) << np.uint64(_MANTISSA_BITS)
    ones = mantissas * np.uint64(255) < thresholds  # both sides < 2**61: no overflow
    return ones.reshape(*images.shape, 1).astype(np.float32)


def binarized_test_set(split: data_lib.Split, seed: int = BINARIZATION_SEED) -> dict[str, jax.Array]:
    """The split binarized once by ``seed``: {"image": float32 (N, H, W, 1) in {0, 1}, "label": int32 (N,)}.

    The same images for every call, run and machine (see ``static_binarize``), and the
    first n images of a split cut to n are those of the whole split. Device arrays in
    ``data.gather_batch``'s layout, so the likelihood code reads them as they are.
    """
    return {"image": jnp.asarray(static_binarize(np.asarray(split.images), seed)),
            "label": jnp.asarray(split.labels, dtype=jnp.int32)}
