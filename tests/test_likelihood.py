"""aejax.likelihood: the negative ELBO and the IWAE bound of a VAE or CVAE, per image and
over a split, and the refusal of a model without a posterior.

Kept small for a shared CPU: batches of 2-8 images, latent size 2, one shared
initialisation of the networks (conftest's ``vae_vars`` and ``cvae``).
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from aejax import autoencoder, likelihood

from support import (VAE_LATENT, inked_batch, inked_dataset, inked_images, np_bce, np_gaussian_kl, np_log_normal,
                     small_vae)

BATCH = 4


def _sharpened(params):
    """The VAE's params with a narrow posterior away from the prior and a decoder that reads z.

    Makes the importance weights vary, so the IWAE bound visibly tightens with k.
    """
    enc_dense = dict(params["encoder"]["Dense_0"])
    enc_dense["kernel"] = enc_dense["kernel"].at[:, :VAE_LATENT].multiply(30.0)
    enc_dense["bias"] = enc_dense["bias"].at[:VAE_LATENT].add(1.0).at[VAE_LATENT:].set(-1.0)
    dec_dense = dict(params["decoder"]["Dense_0"])
    dec_dense["kernel"] = dec_dense["kernel"] * 100.0
    return {"encoder": {**params["encoder"], "Dense_0": enc_dense},
            "decoder": {**params["decoder"], "Dense_0": dec_dense}}


_MODEL = small_vae()


@functools.cache
def _iwae_over_keys(num_samples):
    """The IWAE NLL of ``_MODEL`` for each key, one key at a time: (params, stats, images, keys (K,)) -> (K, B)."""
    def run(params, batch_stats, images, keys):
        return jax.lax.map(lambda key: likelihood.iwae_negative_log_likelihood(
            _MODEL, params, batch_stats, images, None, key, num_samples), keys)
    return jax.jit(run)


@functools.cache
def _iwae_keys() -> jax.Array:
    """The keys the IWAE tests share (32), so that their compiled functions are shared too."""
    return jax.random.split(jax.random.key(1), 32)


@jax.jit
def _negative_elbo_over_keys(params, batch_stats, images, keys):
    return jax.lax.map(lambda key: likelihood.negative_elbo(_MODEL, params, batch_stats, images, None, key), keys)


def _label_sensitive(params):
    """The CVAE's params with the one-hot rows of the decoder's first kernel scaled up 100-fold."""
    dense = dict(params["decoder"]["Dense_0"])
    dense["kernel"] = dense["kernel"].at[VAE_LATENT:].multiply(100.0)
    return {**params, "decoder": {**params["decoder"], "Dense_0": dense}}


# ------------------------------------------------------------ negative ELBO and IWAE

def test_negative_elbo_matches_direct_computation(vae_vars):
    params, batch_stats = vae_vars
    model, images, key = small_vae(), inked_images(BATCH), jax.random.key(21)
    got = likelihood.negative_elbo(model, params, batch_stats, images, None, key)
    chex.assert_shape(got, (BATCH,))
    chex.assert_type(got, jnp.float32)
    mu, log_var = model.posterior(params, batch_stats, images)
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)
    logits = model.decode(params, batch_stats, z)
    expected = np_bce(logits, images).sum(axis=(1, 2, 3)) + np_gaussian_kl(mu, log_var)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert len(set(np.round(np.asarray(got), 1))) == BATCH  # per image, not a batch mean


def test_iwae_shapes_and_sample_chunk(vae_vars):
    """(k, B) log-weights, (B,) NLL = -log mean_k w_k; decoding 3 samples at a time changes nothing."""
    params, batch_stats = _sharpened(vae_vars[0]), vae_vars[1]
    model, images, keys = small_vae(), inked_images(BATCH), _iwae_keys()
    whole = _iwae_over_keys(10)(params, batch_stats, images, keys[:8])  # sample_chunk=None, one row per key
    chex.assert_shape(whole, (8, BATCH))
    chex.assert_type(whole, jnp.float32)
    chunked = jax.jit(lambda p, s, x, key: likelihood.log_importance_weights(model, p, s, x, None, key, 10,
                                                                             sample_chunk=3))
    log_w = chunked(params, batch_stats, images, keys[0])  # 3 + 3 + 3 + a remainder of 1
    chex.assert_shape(log_w, (10, BATCH))
    chex.assert_type(log_w, jnp.float32)
    chex.assert_tree_all_finite(log_w)
    assert float(jnp.min(jnp.std(log_w, axis=0))) > 0.1  # the samples differ
    expected = -(scipy.special.logsumexp(np.asarray(log_w, np.float64), axis=0) - math.log(10))
    np.testing.assert_allclose(whole[0], expected, rtol=1e-6, atol=1e-4)


def test_iwae_with_one_sample_is_the_single_sample_monte_carlo_negative_elbo(vae_vars):
    """k = 1: -(log p(x|z) + log N(z; 0, I) - log N(z; mu, var)) with eps = normal(key, (1, B, D))[0]."""
    params, batch_stats = _sharpened(vae_vars[0]), vae_vars[1]
    model, images = small_vae(), inked_images(BATCH)
    key = _iwae_keys()[0]
    got = _iwae_over_keys(1)(params, batch_stats, images, _iwae_keys())[0]
    chex.assert_shape(got, (BATCH,))
    mu, log_var = model.posterior(params, batch_stats, images)
    eps = jax.random.normal(key, (1, *mu.shape))[0]
    z = mu + jnp.exp(0.5 * log_var) * eps
    log_px = -np_bce(model.decode(params, batch_stats, z), images).sum(axis=(1, 2, 3))
    log_pz, log_qz = np_log_normal(z), np_log_normal(z, mu, log_var)
    np.testing.assert_allclose(got, -(log_px + log_pz - log_qz), rtol=1e-5)
    # the same z as negative_elbo with that key: they differ by the MC KL minus the closed-form one
    elbo = likelihood.negative_elbo(model, params, batch_stats, images, None, key)
    mc_minus_closed_kl = (log_qz - log_pz) - np_gaussian_kl(mu, log_var)
    assert np.max(np.abs(mc_minus_closed_kl)) > 0.1
    np.testing.assert_allclose(np.asarray(got) - np.asarray(elbo), mc_minus_closed_kl, atol=2e-3)


def test_iwae_one_sample_averages_to_negative_elbo(vae_vars):
    """Over many keys the k = 1 estimate (MC KL) and negative_elbo (closed-form KL) agree in mean."""
    params, batch_stats = _sharpened(vae_vars[0]), vae_vars[1]
    images = inked_images(BATCH)
    iwae1, elbo = [], []
    for keys in (_iwae_keys(), jax.random.split(jax.random.key(2), 32)):
        iwae1.append(np.asarray(_iwae_over_keys(1)(params, batch_stats, images, keys), np.float64))
        elbo.append(np.asarray(_negative_elbo_over_keys(params, batch_stats, images, keys), np.float64))
    iwae1, elbo = np.concatenate(iwae1), np.concatenate(elbo)  # (64 keys, B)
    difference = iwae1 - elbo  # same z per key: the difference is the KL's Monte Carlo error
    assert difference.std() > 0.1  # it is a Monte Carlo error, not zero
    assert abs(difference.mean()) < 5 * difference.std() / math.sqrt(difference.size)  # over all images
    per_image_error = difference.std(axis=0) / math.sqrt(difference.shape[0])
    np.testing.assert_array_less(np.abs(iwae1.mean(axis=0) - elbo.mean(axis=0)), 5 * per_image_error)


def test_iwae_bound_tightens_with_more_samples(vae_vars):
    """Averaged over images and keys: iwae(k=1) >= iwae(k=10) >= iwae(k=100)."""
    params, batch_stats = _sharpened(vae_vars[0]), vae_vars[1]
    images, keys = inked_images(BATCH), _iwae_keys()
    # fewer keys for larger k (k decodes per key); all estimates are of the same images
    means = [float(np.mean(_iwae_over_keys(k)(params, batch_stats, images, keys[:n])))
             for k, n in ((1, 32), (10, 8), (100, 4))]
    assert means[0] > means[1] > means[2], means


def test_cvae_likelihood_reads_labels(cvae):
    model, params, batch_stats = cvae
    params = _label_sensitive(params)
    batch, key = inked_batch(BATCH), jax.random.key(3)
    nll = likelihood.iwae_negative_log_likelihood(model, params, batch_stats, batch["image"], batch["label"], key, 2)
    chex.assert_shape(nll, (BATCH,))
    other = likelihood.negative_elbo(model, params, batch_stats, batch["image"], (batch["label"] + 1) % 10, key)
    same = likelihood.negative_elbo(model, params, batch_stats, batch["image"], batch["label"], key)
    assert np.min(np.abs(np.asarray(other) - np.asarray(same))) > 1e-3  # ~16 float32 ulps at 543 nats
    with pytest.raises(ValueError, match="needs labels"):
        likelihood.negative_elbo(model, params, batch_stats, batch["image"], None, key)


# ------------------------------------------------------------ over a split

def test_posterior_moments_over_a_split(vae_vars):
    params, batch_stats = vae_vars
    model, dataset = small_vae(), inked_dataset(5)
    mu, log_var = likelihood.posterior_moments(model, params, batch_stats, dataset, batch_size=3)
    assert isinstance(mu, np.ndarray) and isinstance(log_var, np.ndarray)
    chex.assert_shape([mu, log_var], (5, VAE_LATENT))
    images = jnp.asarray(dataset["image"], jnp.float32)[..., None] / 255.0
    mu_direct, log_var_direct = model.posterior(params, batch_stats, images)
    np.testing.assert_allclose(mu, mu_direct, atol=1e-5)
    np.testing.assert_allclose(log_var, log_var_direct, atol=1e-5)


def test_evaluate_likelihood_keys_shapes_and_values(vae_vars):
    params, batch_stats = vae_vars
    model, dataset = small_vae(), inked_dataset(4)
    result = likelihood.evaluate_likelihood(model, params, batch_stats, dataset, jax.random.key(0), num_samples=3,
                                            batch_size=2, sample_chunk=2)
    assert set(result) == {"negative_elbo", "iwae_nll"}
    for value in result.values():
        assert isinstance(value, np.ndarray)
        chex.assert_shape(value, (4,))
        assert np.all(np.isfinite(value)) and np.all(value > 0)
    # the untrained model's posterior is close to its prior and its decoder barely reads z,
    # so every estimate of an image is within a fraction of a nat of the same image's
    # direct negative ELBO, while the images differ by nats
    images = jnp.asarray(dataset["image"], jnp.float32)[..., None] / 255.0
    direct = np.asarray(likelihood.negative_elbo(model, params, batch_stats, images, None, jax.random.key(9)))
    assert np.min(np.diff(np.sort(direct))) > 0.5
    np.testing.assert_allclose(result["negative_elbo"], direct, atol=0.2)
    np.testing.assert_allclose(result["iwae_nll"], direct, atol=0.2)


def test_evaluate_likelihood_rejects_non_positive_sizes(vae_vars):
    params, batch_stats = vae_vars
    with pytest.raises(ValueError, match="positive"):
        likelihood.evaluate_likelihood(small_vae(), params, batch_stats, inked_dataset(2), jax.random.key(0), num_samples=0)


def test_evaluate_negative_elbo_is_evaluate_likelihoods_without_the_iwae(vae_vars):
    params, batch_stats = vae_vars
    model, dataset = small_vae(), inked_dataset(5)
    key = jax.random.key(3)
    both = likelihood.evaluate_likelihood(model, params, batch_stats, dataset, key, num_samples=2, batch_size=2)
    alone = likelihood.evaluate_negative_elbo(model, params, batch_stats, dataset, key, batch_size=2)
    chex.assert_shape(alone, (5,))
    np.testing.assert_allclose(alone, both["negative_elbo"], rtol=1e-6)
    other = likelihood.evaluate_negative_elbo(model, params, batch_stats, dataset, jax.random.key(4), batch_size=2)
    assert not np.array_equal(other, alone)  # a fresh draw of z


@pytest.mark.parametrize("call", [
    lambda m: likelihood.log_importance_weights(m, None, None, inked_images(2), None, jax.random.key(0), 2),
    lambda m: likelihood.iwae_negative_log_likelihood(m, None, None, inked_images(2), None, jax.random.key(0), 2),
    lambda m: likelihood.negative_elbo(m, None, None, inked_images(2), None, jax.random.key(0)),
    lambda m: likelihood.evaluate_likelihood(m, None, None, inked_dataset(2), jax.random.key(0), 2),
    lambda m: likelihood.posterior_moments(m, None, None, inked_dataset(2)),
], ids=["log_importance_weights", "iwae", "negative_elbo", "evaluate_likelihood", "posterior_moments"])
def test_likelihood_needs_a_posterior(call):
    """A deterministic autoencoder has no q(z | x): every likelihood function says so."""
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=2))
    assert model.posterior is None
    with pytest.raises(ValueError, match="posterior"):
        call(model)
