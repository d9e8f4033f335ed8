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


def batch_balance_gap(probs: jax.Array) -> jax.Array:
    """KL(mean categorical of the batch || uniform) = log K - H(mean of ``probs`` over the batch).

    probs (B, K), rows on the simplex -> scalar >= 0: zero when the batch as a whole uses
    every category equally, log K when every row puts all its mass on one same category.
    A categorical prior matched per batch: it penalises empty clusters, not unsure rows.
    """
    mean = jnp.mean(probs, axis=0)
    # the floor keeps the gradient finite where a category is unused (log 0)
    return jnp.log(probs.shape[-1]) + jnp.sum(mean * jnp.log(jnp.maximum(mean, 1e-12)))


def categorical_entropy(probs: jax.Array) -> jax.Array:
    """H(p) per row: probs (B, K) on the simplex -> (B,), in nats; 0 for a one-hot row."""
    return -jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-12)), axis=-1)


def gaussian_kl_per_dimension(mu: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mu, exp(log_var)) || N(0, 1)) elementwise, in nats: ``-0.5 (1 + log_var - mu^2 - exp(log_var))``."""
    return -0.5 * (1 + log_var - jnp.square(mu) - jnp.exp(log_var))


def gaussian_kl_to_standard_normal(mu: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mu, exp(log_var)) || N(0, I)) per object, in nats: (B, D), (B, D) -> (B,).

    The sum over dimensions of ``gaussian_kl_per_dimension``; the lecture's KL term is
    its mean over the batch.
    """
    return jnp.sum(gaussian_kl_per_dimension(mu, log_var), axis=-1)


def gaussian_log_density(z: jax.Array, mu: jax.Array | float = 0.0, log_var: jax.Array | float = 0.0) -> jax.Array:
    """log N(z; mu, exp(log_var)) summed over the last axis: (..., D) -> (...,)."""
    return -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + log_var + jnp.square(z - mu) * jnp.exp(-log_var), axis=-1)


IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # multiples of C, as the WAE paper's code


def imq_kernel(x: jax.Array, y: jax.Array, scale: float) -> jax.Array:
    """Inverse multiquadratic kernel ``C / (C + |x_i - y_j|^2)``: (N, D), (M, D) -> (N, M)."""
    distances = jnp.sum(jnp.square(x[:, None, :] - y[None, :, :]), axis=-1)
    return scale / (scale + distances)


def mmd_imq(codes: jax.Array, prior_samples: jax.Array, prior_variance: float = 1.0,
            scales: tuple[float, ...] = IMQ_SCALES) -> jax.Array:
    """Unbiased MMD^2 between codes (N, D) and prior samples (M, D) under IMQ kernels.

    As in Tolstikhin et al. (WAE, 2018): base constant ``C = 2 * D * prior_variance``,
    summed over kernels of constant ``s * C`` for each ``s`` in ``scales``. Scalar;
    about 0 when the codes follow the prior. N, M >= 2.
    """
    n, m = codes.shape[0], prior_samples.shape[0]
    if n < 2 or m < 2 or codes.shape[1:] != prior_samples.shape[1:]:
        raise ValueError(f"need >= 2 codes and prior samples of one size, got {codes.shape} and {prior_samples.shape}")
    base = 2.0 * codes.shape[-1] * prior_variance
    off_diagonal = lambda k: (jnp.sum(k) - jnp.trace(k)) / (k.shape[0] * (k.shape[0] - 1))  # noqa: E731
    total = jnp.zeros((), codes.dtype)
    for s in scales:
        total += (off_diagonal(imq_kernel(codes, codes, s * base))
                  + off_diagonal(imq_kernel(prior_samples, prior_samples, s * base))
                  - 2 * jnp.mean(imq_kernel(codes, prior_samples, s * base)))
    return total
