"""Helpers shared by the tests: random data sets, tree comparisons, float64 numpy references
of the variational terms, and the optional PyTorch reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from aejax import train as train_lib
from aejax import vae

ATOL = 1e-5
RTOL = 1e-5


# ------------------------------------------------------------------ data

def random_dataset(n: int, seed: int = 0, num_classes: int = 10) -> dict[str, jax.Array]:
    """The on-device split format of noise: uint8 (n, 28, 28) uniform images, int32 (n,) labels below ``num_classes``."""
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
            "label": jnp.asarray(rng.integers(0, num_classes, n), jnp.int32)}


def inked_images(n: int, seed: int = 0) -> jax.Array:
    """float32 (n, 28, 28, 1) in [0, 1]; image i has a different ink density, so images differ a lot."""
    rng = np.random.default_rng(seed)
    density = np.linspace(0.1, 0.9, n)[:, None, None]
    pixels = rng.uniform(0, 1, (n, 28, 28)) * (rng.uniform(0, 1, (n, 28, 28)) < density)
    return jnp.asarray(pixels[..., None], jnp.float32)


def inked_dataset(n: int, seed: int = 0) -> dict[str, jax.Array]:
    """``inked_images`` in the on-device split format: uint8 (n, 28, 28) images and int32 (n,) labels."""
    rng = np.random.default_rng(seed)
    images = np.round(np.asarray(inked_images(n, seed))[..., 0] * 255).astype(np.uint8)
    return {"image": jnp.asarray(images), "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32)}


def inked_batch(n: int, seed: int = 0) -> dict[str, jax.Array]:
    """A training batch: ``inked_images`` (n, 28, 28, 1) and labels 0, 1, ... (mod 10)."""
    return {"image": inked_images(n, seed), "label": jnp.arange(n, dtype=jnp.int32) % 10}


# ------------------------------------------------------------------ trees and arrays

def max_abs_diff(a, b) -> float:
    """Largest absolute difference over two trees of the same structure (numpy: no per-shape compiles)."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(leaves_a, leaves_b))


def count(tree) -> int:
    """The number of scalars in a tree of arrays (or of shapes, as ``jax.eval_shape`` gives them)."""
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def assert_close(actual, expected, atol: float = ATOL, rtol: float = RTOL) -> None:
    """Same shape, and |actual - expected| <= atol + rtol |expected| everywhere (in float64)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.abs(actual - expected)
    assert np.all(err <= atol + rtol * np.abs(expected)), f"max abs err {err.max():.3g}"


# ------------------------------------------------------------------ float64 references of the variational terms

def np_bce(logits, targets) -> np.ndarray:
    """-(x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))), elementwise, float64."""
    logits, targets = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    return targets * np.logaddexp(0.0, -logits) + (1 - targets) * np.logaddexp(0.0, logits)


def np_gaussian_kl(mu, log_var) -> np.ndarray:
    """KL(N(mu, s^2) || N(0, 1)) = 0.5 (s^2 + mu^2 - 1 - log s^2), summed over the last axis."""
    mu, log_var = np.asarray(mu, np.float64), np.asarray(log_var, np.float64)
    return 0.5 * np.sum(np.exp(log_var) + mu ** 2 - 1 - log_var, axis=-1)


def np_log_normal(z, mu=0.0, log_var=0.0) -> np.ndarray:
    """log N(z; mu, exp(log_var)) summed over the last axis, by scipy."""
    z = np.asarray(z, np.float64)
    scale = np.exp(0.5 * np.asarray(log_var, np.float64))
    return np.sum(scipy.stats.norm.logpdf(z, np.asarray(mu, np.float64), scale), axis=-1)


# ------------------------------------------------------------------ the small VAE of the vae and likelihood tests

VAE_LATENT = 2
CVAE_CLASSES = 10


def small_vae(**kwargs) -> train_lib.Model:
    """A VAE of latent size ``VAE_LATENT``; ``kwargs``: the other ``VAEConfig`` fields."""
    return vae.make_model(vae.VAEConfig(latent_dim=VAE_LATENT, **kwargs))


# ------------------------------------------------------------------ PyTorch

def torch_modules():
    """(torch, torch.nn, tests/torch_reference.py); the calling test is skipped where torch is missing."""
    torch = pytest.importorskip("torch")
    import torch_reference

    return torch, torch.nn, torch_reference
