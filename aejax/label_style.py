"""Models whose encoder gives label logits and a style code: what the disentangled and the
semi-supervised AAE share.

The encoder's output (B, num_classes + D) is split into label logits (B, num_classes)
and a style z (B, D); the conditional decoder reads z beside a label. Here: that split,
the model's ``classify`` / ``encode`` / ``decode``, and measures of how much of the
label the style still carries (``class_mean_share``, ``label_dependence``) with the
tools to remove it (``standardize``, ``ClassStandardize``, ``uniform_cross_entropy``).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from aejax.modules import Decoder, Encoder, apply_inference
from aejax.model import BatchStats, Params, module_variables


def split_label_style(encoder_output: jax.Array, num_classes: int) -> tuple[jax.Array, jax.Array]:
    """(B, num_classes + D) -> label logits (B, num_classes), style z (B, D)."""
    if encoder_output.ndim != 2 or encoder_output.shape[1] <= num_classes:
        raise ValueError(f"encoder output must be (B, {num_classes} + D) with D > 0, got {encoder_output.shape}")
    return encoder_output[:, :num_classes], encoder_output[:, num_classes:]


def standardize(z: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Each column of z (B, D) shifted and scaled to mean 0, variance 1 over the batch: (B, D).

    An adversary reads standardised codes, as a fresh probe would: otherwise the encoder
    escapes it by shrinking and shifting z, which hides nothing from a new probe.
    """
    return (z - jnp.mean(z, axis=0)) * jax.lax.rsqrt(jnp.var(z, axis=0) + eps)


def uniform_cross_entropy(logits: jax.Array) -> jax.Array:
    """Cross-entropy of the uniform distribution with softmax(logits (B, C)): (B,), minimal (log C) at uniform."""
    return -jnp.mean(jax.nn.log_softmax(logits), axis=-1)


def class_mean_share(z: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """Share () of the variance of z (B, D) explained by the class means of integer ``labels`` (B,).

    sum_c (n_c / B) |mean(z | c) - mean(z)|^2 / sum_d var(z_d): 0 when every class has the
    same mean (no linearly readable label), 1 when z is constant within each class.
    """
    centred = z - jnp.mean(z, axis=0)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=z.dtype)  # (B, C)
    counts = jnp.sum(one_hot, axis=0)
    means = (one_hot.T @ centred) / jnp.maximum(counts, 1.0)[:, None]  # (C, D)
    between = jnp.sum(counts[:, None] * jnp.square(means)) / z.shape[0]
    return between / (jnp.sum(jnp.var(z, axis=0)) + 1e-8)


KERNEL_BANDWIDTHS = (0.25, 0.5, 1.0)  # of the standardised style, per coordinate


def label_dependence(z: jax.Array, labels: jax.Array, num_classes: int,
                     bandwidths: tuple[float, ...] = KERNEL_BANDWIDTHS) -> jax.Array:
    """Kernel dependence () of the style z (B, D) on integer ``labels`` (B,): CKA in [0, 1].

    Centred kernel alignment of a Gaussian kernel on the standardised z (the sum of one
    per bandwidth; squared distances divided by D) with the same-label kernel. Unlike
    ``class_mean_share`` (the linear kernel's view), it is large whenever the classes'
    distributions of z differ, equal means or not: the non-linear leak a k-NN probe reads.
    Independent z and labels give O(1/B).
    """
    standardized = standardize(z)
    squared = jnp.sum(jnp.square(standardized[:, None, :] - standardized[None, :, :]), axis=-1) / z.shape[1]
    style_kernel = sum(jnp.exp(-squared / (2.0 * bw ** 2)) for bw in bandwidths)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=z.dtype)

    def centre(kernel):
        return kernel - jnp.mean(kernel, axis=0) - jnp.mean(kernel, axis=1, keepdims=True) + jnp.mean(kernel)

    k, l = centre(style_kernel), centre(one_hot @ one_hot.T)
    return jnp.sum(k * l) / jnp.sqrt(jnp.sum(k * k) * jnp.sum(l * l) + 1e-12)


class ClassStandardize(nn.Module):
    """Standardises the style z (B, D) per class: BatchNorm with class-conditional statistics.

    Train mode: each class's mean and (biased) variance over the batch items of that class
    (``labels`` (B,), the true labels), and the running (C, D) statistics updated with
    PyTorch's momentum where the class is present (so ``inference.recompute_batch_stats``
    averages them as it does BatchNorm's). Eval mode: the running statistics of ``labels``,
    which the model takes from its label head, never from the true labels. A shared
    affine (scale, bias (D,)) follows, as in BatchNorm. Every class's style then has the
    same mean and per-coordinate variance, so a linear probe has nothing left to read; the
    decoder loses nothing, as it is given the label.
    """

    num_classes: int
    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, z: jax.Array, train: bool, labels: jax.Array) -> jax.Array:
        features = z.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        shape = (self.num_classes, features)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(shape, jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(shape, jnp.float32))
        one_hot = jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)  # (B, C)
        if train:
            counts = jnp.sum(one_hot, axis=0)[:, None]  # (C, 1)
            class_mean = (one_hot.T @ z) / jnp.maximum(counts, 1.0)
            class_var = (one_hot.T @ jnp.square(z - one_hot @ class_mean)) / jnp.maximum(counts, 1.0)
            if not self.is_initializing():
                present = (counts > 0).astype(z.dtype)
                unbiased = class_var * counts / jnp.maximum(counts - 1.0, 1.0)
                ra_mean.value = ra_mean.value + self.momentum * present * (class_mean - ra_mean.value)
                ra_var.value = ra_var.value + self.momentum * present * (unbiased - ra_var.value)
        else:
            class_mean, class_var = ra_mean.value, ra_var.value
        mean, var = one_hot @ class_mean, one_hot @ class_var  # (B, D): each item's class statistics
        return (z - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


def encoder_output(encoder: Encoder, num_classes: int, params: Params, batch_stats: BatchStats, images: jax.Array,
                   train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Label logits (B, num_classes) and style (B, D) of images (B, H, W, C), without updating statistics."""
    out = apply_inference(encoder, module_variables(params, batch_stats, "encoder"), images, train)
    return split_label_style(out, num_classes)


def label_style_functions(encoder: Encoder, decoder: Decoder, num_classes: int,
                          style_mean: Callable[[jax.Array], jax.Array] = lambda style: style):
    """``classify``, ``encode``, ``decode`` of a model whose encoder gives label logits + style.

    classify -> label logits (B, num_classes); encode -> ``style_mean(style part)`` (B, D);
    decode(z, labels) with integer labels (B,) or probabilities (B, num_classes).
    """

    def classify(params, batch_stats, images, train=False):
        return encoder_output(encoder, num_classes, params, batch_stats, images, train)[0]

    def encode(params, batch_stats, images, labels=None, train=False):
        del labels
        return style_mean(encoder_output(encoder, num_classes, params, batch_stats, images, train)[1])

    def decode(params, batch_stats, latents, labels=None, train=False):
        return apply_inference(decoder, module_variables(params, batch_stats, "decoder"), latents, train, labels=labels)

    return classify, encode, decode
