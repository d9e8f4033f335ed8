"""How good a VAE is, in nats per image: negative ELBO and the IWAE bound on -log p(x).

Each of an image's H * W * C values (MNIST's 784 pixels) is Bernoulli with the
decoder's logits, targets the images given (the lecture's BCE, summed over the values
instead of averaged; colour channels as grey levels). On the lecture's [0, 1]
grey values this is a cross-entropy, not a log-probability: it includes the targets'
own binary entropy (about 45.5 nats per MNIST test image), so only numbers on binarized
images (``aejax.binarized``) compare with the literature's. Encoders and decoders run
in eval mode. For a CVAE every density is conditional on the label.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aejax import data as data_lib
from aejax import losses
from aejax.inference import inference_batch_size, map_over_split, num_examples
from aejax.model import BatchStats, Model, Params, reparametrize

GPU_DECODES = 10_000  # decodes per compiled chunk on a GPU by default (~4 GB of activations)


def _require_posterior(model: Model) -> None:
    if model.posterior is None:
        raise ValueError("this model has no Gaussian posterior (model.posterior is None); use a VAE or CVAE")


def reconstruction_log_likelihood(model: Model, params: Params, batch_stats: BatchStats, z: jax.Array,
                                  images: jax.Array, labels: jax.Array | None) -> jax.Array:
    """log p(x | z) = -sum over values of BCE(logits, x): z (B, D), images (B, H, W, C) -> (B,)."""
    logits = model.decode(params, batch_stats, z, labels)
    return -jnp.sum(losses.binary_cross_entropy_with_logits(logits, images), axis=(1, 2, 3))


def log_importance_weights(model: Model, params: Params, batch_stats: BatchStats, images: jax.Array,
                           labels: jax.Array | None, key: jax.Array, num_samples: int,
                           sample_chunk: int | None = None) -> jax.Array:
    """log p(x | z_k) + log p(z_k) - log q(z_k | x) for z_k ~ q(z | x): (num_samples, B).

    The k-th sample uses eps[k] of ``jax.random.normal(key, (num_samples, B, D))``.
    Samples are decoded ``sample_chunk`` at a time (all at once if None) to bound memory.
    """
    _require_posterior(model)
    mu, log_var = model.posterior(params, batch_stats, images, labels)
    eps = jax.random.normal(key, (num_samples, *mu.shape), mu.dtype)

    def one_sample(eps_k):
        z = mu + jnp.exp(0.5 * log_var) * eps_k
        return (reconstruction_log_likelihood(model, params, batch_stats, z, images, labels)
                + losses.gaussian_log_density(z) - losses.gaussian_log_density(z, mu, log_var))

    return jax.lax.map(one_sample, eps, batch_size=sample_chunk)


def iwae_negative_log_likelihood(model: Model, params: Params, batch_stats: BatchStats, images: jax.Array,
                                 labels: jax.Array | None, key: jax.Array, num_samples: int,
                                 sample_chunk: int | None = None) -> jax.Array:
    """-log (1/k) sum_k w_k (Burda et al., 2016), nats per image: (B,).

    An upper bound on -log p(x) that tightens as k grows; k = 1 is the single-sample
    Monte Carlo negative ELBO with the same key.
    """
    log_w = log_importance_weights(model, params, batch_stats, images, labels, key, num_samples, sample_chunk)
    return -(jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples))


def negative_elbo(model: Model, params: Params, batch_stats: BatchStats, images: jax.Array,
                  labels: jax.Array | None, key: jax.Array) -> jax.Array:
    """-log p(x | z) + KL(q(z | x) || N(0, I)) with one z ~ q(z | x) and the KL in closed form: (B,).

    The lecture's VAE loss with both terms summed per image and weight 1 (beta = 1).
    """
    _require_posterior(model)
    mu, log_var = model.posterior(params, batch_stats, images, labels)
    z = reparametrize(key, mu, log_var)
    return (-reconstruction_log_likelihood(model, params, batch_stats, z, images, labels)
            + losses.gaussian_kl_to_standard_normal(mu, log_var))


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "sample_chunk"))
def _score_batch(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                 indices: jax.Array, key: jax.Array, num_samples: int, sample_chunk: int,
                 ) -> tuple[jax.Array, jax.Array]:
    """(negative ELBO (B,), IWAE NLL (B,)) of the images ``indices`` (B,) of ``dataset``; compiled
    once per model, k, chunk and batch size (``evaluate_likelihood`` keeps B fixed)."""
    batch = data_lib.gather_batch(dataset, indices)
    elbo_key, iwae_key = jax.random.split(key)
    return (negative_elbo(model, params, batch_stats, batch["image"], batch["label"], elbo_key),
            iwae_negative_log_likelihood(model, params, batch_stats, batch["image"], batch["label"], iwae_key,
                                         num_samples, sample_chunk))


def decodes_per_chunk() -> int:
    """Images x importance samples decoded at once by default: ``GPU_DECODES`` on a GPU, else
    ``inference.inference_batch_size()`` (XLA:CPU decodes fastest in cache-sized batches)."""
    return GPU_DECODES if jax.devices()[0].platform == "gpu" else inference_batch_size()


@functools.partial(jax.jit, static_argnames="model")
def _elbo_batch(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                indices: jax.Array, key: jax.Array) -> jax.Array:
    batch = data_lib.gather_batch(dataset, indices)
    elbo_key, _ = jax.random.split(key)  # _score_batch's split: the same draws as evaluate_likelihood's
    return negative_elbo(model, params, batch_stats, batch["image"], batch["label"], elbo_key)


def evaluate_negative_elbo(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                           key: jax.Array, batch_size: int | None = None) -> np.ndarray:
    """Per-image negative ELBO (N,) in nats over a whole split ``{"image", "label"}``, one posterior
    sample per image (a key per batch, split from ``key``): ``evaluate_likelihood``'s
    "negative_elbo" (the same values for the same key and batch size) without the IWAE's decodes. ``batch_size`` None: ``inference.inference_batch_size()``."""
    _require_posterior(model)
    dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
    batch_size = batch_size or inference_batch_size()
    keys = jax.random.split(key, -(-num_examples(dataset) // batch_size))
    (scores,) = map_over_split(
        lambda number, indices: (_elbo_batch(model, params, batch_stats, dataset, indices, keys[number]),),
        dataset, batch_size, pad_last=True)
    return scores


def evaluate_likelihood(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                        key: jax.Array, num_samples: int, batch_size: int | None = None, sample_chunk: int | None = None,
                        ) -> dict[str, np.ndarray]:
    """Per-image negative ELBO and IWAE NLL (nats) over a whole split ``{"image", "label"}``.

    Returns {"negative_elbo": (N,), "iwae_nll": (N,)}; each batch gets its own keys,
    split from ``key``. Memory is bounded whatever k and N: ``batch_size`` images at a
    time, ``sample_chunk`` samples of each decoded at once (None: ``decodes_per_chunk()``
    decodes in all) and k * ``batch_size`` * D normal draws. Every batch has
    ``min(batch_size, N)`` images (the last one padded by repeating its last index, the
    padding's results dropped), so one compiled function serves the whole split.
    """
    _require_posterior(model)
    if batch_size is None:
        batch_size = inference_batch_size()
    if sample_chunk is None:
        sample_chunk = max(1, decodes_per_chunk() // batch_size)
    if num_samples <= 0 or batch_size <= 0 or sample_chunk <= 0:
        raise ValueError(f"num_samples, batch_size and sample_chunk must be positive, got "
                         f"{num_samples}, {batch_size}, {sample_chunk}")
    dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
    count = int(dataset["label"].shape[0])
    if count == 0:
        raise ValueError("the dataset has no images")
    batch = min(batch_size, count)
    starts = range(0, count, batch)
    keys = jax.random.split(key, len(starts))
    elbo, iwae = [], []
    for number, start in enumerate(starts):
        indices = np.minimum(np.arange(start, start + batch), count - 1)  # a short last batch repeats its last image
        scores = _score_batch(model, params, batch_stats, dataset, jnp.asarray(indices), keys[number],
                              num_samples, min(sample_chunk, num_samples))
        kept = min(batch, count - start)
        elbo.append(np.asarray(scores[0])[:kept])
        iwae.append(np.asarray(scores[1])[:kept])
    return {"negative_elbo": np.concatenate(elbo), "iwae_nll": np.concatenate(iwae)}


def posterior_moments(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                      batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mu (N, D) and log_var (N, D) of q(z | x) for every image of a split, eval mode
    (``batch_size`` None: ``inference.inference_batch_size()``)."""
    _require_posterior(model)
    run = jax.jit(lambda p, s, x, y: model.posterior(p, s, x, y))

    def moments(_, indices):
        batch = data_lib.gather_batch(dataset, indices)
        return run(params, batch_stats, batch["image"], batch["label"])

    mu, log_var = map_over_split(moments, dataset, batch_size or inference_batch_size(), pad_last=True)
    return mu, log_var
