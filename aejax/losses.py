"""Elementwise losses and penalties (the caller reduces), on logits where applicable."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def binary_cross_entropy_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """BCE(sigmoid(logits), targets), elementwise, stable for any logit.

    Equals PyTorch's ``F.binary_cross_entropy(sigmoid(logits), targets, reduction='none')``
    wherever that one does not clamp its log at -100. Same shape as ``logits``.
    """
    return jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """(predictions - targets)^2, elementwise; its mean is the MSE."""
    return jnp.square(predictions - targets)


def sparsity_activation(z: jax.Array) -> jax.Array:
    """The lecture's activation of a latent unit: ``(sigmoid(|z|) - 0.5) * 2`` in [0, 1).

    (In float32 it rounds to exactly 1.0 for |z| above about 17.)
    """
    return (jax.nn.sigmoid(jnp.abs(z)) - 0.5) * 2


def l1_sparsity(z: jax.Array) -> jax.Array:
    """|activation| per latent unit, elementwise (mean of it is the lecture's L1 term)."""
    return jnp.abs(sparsity_activation(z))


def bernoulli_kl(target: float | jax.Array, rate: jax.Array, eps: float = 1e-7) -> jax.Array:
    """KL(Bernoulli(target) || Bernoulli(rate)) elementwise; ``rate`` clipped away from 0 and 1."""
    rate = jnp.clip(rate, eps, 1 - eps)
    return target * jnp.log(target / rate) + (1 - target) * jnp.log((1 - target) / (1 - rate))


def kl_sparsity_per_object(z: jax.Array, target: float) -> jax.Array:
    """KL sparsity with the rate averaged over the layer for each object.

    z: (B, units) -> (B,): KL(target || mean_units(activation)) per object; the lecture
    sums this over the batch (or take the mean, as a weight choice).
    """
    return bernoulli_kl(target, jnp.mean(sparsity_activation(z), axis=-1))


def kl_sparsity_per_unit(z: jax.Array, target: float) -> jax.Array:
    """KL sparsity with the rate averaged over the batch for each unit.

    z: (B, units) -> (units,): KL(target || mean_batch(activation)) per unit; the
    lecture averages this over the units of the layer.
    """
    return bernoulli_kl(target, jnp.mean(sparsity_activation(z), axis=0))
