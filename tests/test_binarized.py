"""Binarized MNIST (aejax.binarized): the dynamic draws of training and the one fixed
test binarization; the VAE loss with ``binarize``; the likelihood summary's ELBO over
the IWAE's images; the section-5 ``binarized`` preset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import binarized, data, likelihood, likelihood_metrics, losses, vae
from aejax.experiments import s5_vae
from aejax.model import module_variables, reparametrize, split_moments
from aejax.modules import apply_training

from experiment_support import parse

# sha256 of the packed bits of the first 100 MNIST test images binarized by seed 0: the
# fixed binarization must be the same on every machine and with every library version
FIRST_100_SHA256 = "59c2691cc6a4b6146cf483ca4480805910abc1ca761cee56c8f3896c519f2a45"
FIRST_100_ONES = 9368


# ------------------------------------------------------------------ dynamic_binarize

def test_dynamic_binarize_draws_bernoulli_pixels():
    intensities = jnp.asarray([0.0, 0.1, 0.5, 0.9, 1.0])
    images = jnp.broadcast_to(intensities[:, None, None, None], (5, 28, 28, 1))
    draws = jnp.stack([binarized.dynamic_binarize(key, images) for key in jax.random.split(jax.random.key(0), 8)])
    assert draws.dtype == jnp.float32 and draws.shape == (8, 5, 28, 28, 1)
    assert set(np.unique(np.asarray(draws)).tolist()) <= {0.0, 1.0}
    means = np.asarray(draws.mean(axis=(0, 2, 3, 4)))  # 8 * 784 draws per intensity: std <= 0.007
    np.testing.assert_allclose(means, intensities, atol=0.03)
    assert means[0] == 0 and means[-1] == 1  # p = 0 and p = 1 are certain


def test_dynamic_binarize_is_fresh_per_key_and_fixed_by_it():
    images = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    first = binarized.dynamic_binarize(jax.random.key(2), images)
    np.testing.assert_array_equal(first, binarized.dynamic_binarize(jax.random.key(2), images))
    other = binarized.dynamic_binarize(jax.random.key(3), images)
    assert float(jnp.mean(first != other)) > 0.1  # about 2 p (1 - p) = 1/3 of the pixels differ
    with pytest.raises(ValueError, match=r"images must be \(B, H, W, 1\)"):
        binarized.dynamic_binarize(jax.random.key(2), images[..., 0])


# ------------------------------------------------------------------ the fixed test binarization

def test_binarized_test_set_is_bit_identical_and_keeps_the_labels(mnist):
    split = mnist["test"]
    first, second = binarized.binarized_test_set(split), binarized.binarized_test_set(split)
    images = np.asarray(first["image"])
    assert images.shape == (len(split.labels), 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images, np.asarray(second["image"]))
    assert set(np.unique(images).tolist()) == {0.0, 1.0}
    assert first["label"].dtype == jnp.int32
    np.testing.assert_array_equal(first["label"], split.labels.astype(np.int32))
    # a Bernoulli(pixel / 255) draw: the share of ones is the mean intensity (7.8M pixels)
    assert images.mean() == pytest.approx(split.images.mean() / 255, abs=1e-3)
    assert np.all(images[split.images == 0] == 0) and np.all(images[split.images == 255] == 1)
    packed = np.packbits(images[:100].astype(bool)).tobytes()
    assert hashlib.sha256(packed).hexdigest() == FIRST_100_SHA256 and images[:100].sum() == FIRST_100_ONES
    # a split cut to its first n images gets the whole split's first n binary images
    cut = binarized.binarized_test_set(data.Split(split.images[:100], split.labels[:100]))
    np.testing.assert_array_equal(np.asarray(cut["image"]), images[:100])


def test_static_binarize_seeds_and_bad_input():
    images = np.full((3, 28, 28), 128, np.uint8)
    zero, one = binarized.static_binarize(images, 0), binarized.static_binarize(images, 1)
    assert np.mean(zero != one) > 0.3  # another seed, another draw
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        binarized.static_binarize(images, -1)
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, H, W\)"):
        binarized.static_binarize(images.astype(np.float32), 0)


# ------------------------------------------------------------------ the VAE loss with binarize

@pytest.fixture(scope="module")
def grey_batch():
    return {"image": jax.random.uniform(jax.random.key(5), (8, 28, 28, 1)),
            "label": jnp.arange(8, dtype=jnp.int32) % 10}


def _loss_by_hand(config: vae.VAEConfig, params, batch_stats, images, labels, key):
    """The VAE loss written out: mean BCE of ``images`` + kld_weight * mean KL, z drawn from ``key``."""
    encoder, decoder = vae.make_modules(config)
    out, _ = apply_training(encoder, module_variables(params, batch_stats, "encoder"), images)
    mu, log_var = split_moments(out)
    z = reparametrize(key, mu, log_var)
    kwargs = {"labels": labels} if config.num_classes else {}
    logits, _ = apply_training(decoder, module_variables(params, batch_stats, "decoder"), z, **kwargs)
    return (config.reconstruction_weight * jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
            + config.kld_weight * jnp.mean(losses.gaussian_kl_to_standard_normal(mu, log_var)))


@pytest.mark.parametrize("num_classes", [0, 10], ids=["vae", "cvae"])
def test_loss_with_binarize_fits_a_fresh_binary_draw(grey_batch, num_classes):
    """Input and target are dynamic_binarize(split(key)[1]); z comes from split(key)[0]."""
    config = vae.VAEConfig(latent_dim=2, binarize=True, num_classes=num_classes)
    model = vae.make_model(config)
    params, batch_stats = model.init(jax.random.key(0))
    loss_fn = jax.jit(model.phases[0].loss_fn)
    key = jax.random.key(7)
    loss = loss_fn(params, batch_stats, grey_batch, key, 0)[0]
    assert float(loss) == float(loss_fn(params, batch_stats, grey_batch, key, 0)[0])  # deterministic for a key
    z_key, binarize_key = jax.random.split(key)
    binary = binarized.dynamic_binarize(binarize_key, grey_batch["image"])
    expected = _loss_by_hand(config, params, batch_stats, binary, grey_batch["label"], z_key)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # the grey-level loss on the drawn binary batch, with the reparametrisation's key, is the same
    grey = jax.jit(vae.make_model(dataclasses.replace(config, binarize=False)).phases[0].loss_fn)
    np.testing.assert_allclose(loss, grey(params, batch_stats, {**grey_batch, "image": binary}, z_key, 0).loss, rtol=1e-6)
    assert float(loss) != float(grey(params, batch_stats, grey_batch, key, 0).loss)
    assert float(loss) != float(loss_fn(params, batch_stats, grey_batch, jax.random.key(8), 0)[0])


def test_loss_without_binarize_is_unchanged(grey_batch):
    """binarize=False (the default): the grey images themselves, z from the loss's key as it is."""
    config = vae.VAEConfig(latent_dim=2)
    assert config == vae.VAEConfig(latent_dim=2, binarize=False)
    model = vae.make_model(config)
    params, batch_stats = model.init(jax.random.key(0))
    key = jax.random.key(7)
    loss, new_stats, metrics, _ = jax.jit(model.phases[0].loss_fn)(params, batch_stats, grey_batch, key, 0)
    expected = _loss_by_hand(config, params, batch_stats, grey_batch["image"], None, key)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert set(metrics) == {"bce", "kl", "kld_weight"}
    with pytest.raises(ValueError, match="binarize must be True or False"):
        vae.VAEConfig(binarize=1)


# ------------------------------------------------------------------ likelihoods on binary images

@pytest.fixture(scope="module")
def tiny_vae():
    """An untrained latent-2 VAE and 6 binary images: 3 of Bernoulli(0.5) noise, then 3 blank.

    Its decoder draws nearly blank pages (final bias -3: a lit pixel costs about 3 nats,
    a dark one 0.05) that depend strongly on z (first kernel x 100), and its posterior
    is narrow (log-variance bias -1) around means that vary: the importance weights
    then vary, and the IWAE bound is visibly below the ELBO.
    """
    model = vae.make_model(vae.VAEConfig(latent_dim=2))
    params, batch_stats = model.init(jax.random.key(0))
    encoder_dense = {"kernel": params["encoder"]["Dense_0"]["kernel"].at[:, :2].multiply(30.0),
                     "bias": params["encoder"]["Dense_0"]["bias"].at[2:].set(-1.0)}
    decoder_dense = {**params["decoder"]["Dense_0"], "kernel": params["decoder"]["Dense_0"]["kernel"] * 100.0}
    conv = {**params["decoder"]["Conv_0"], "bias": jnp.full((1,), -3.0)}
    params = {"encoder": {**params["encoder"], "Dense_0": encoder_dense},
              "decoder": {**params["decoder"], "Dense_0": decoder_dense, "Conv_0": conv}}
    noise = binarized.dynamic_binarize(jax.random.key(1), jnp.full((3, 28, 28, 1), 0.5))
    images = jnp.concatenate([noise, jnp.zeros((3, 28, 28, 1))])
    return model, params, batch_stats, {"image": images, "label": jnp.zeros((6,), jnp.int32)}


def test_summarize_gives_the_elbo_over_the_iwae_images(tiny_vae):
    model, params, batch_stats, test_set = tiny_vae
    result = likelihood_metrics.summarize(model, params, batch_stats, test_set, jax.random.key(2), 16, 3)
    assert result["likelihood_targets"] == "binarized"
    assert (result["iwae_samples"], result["iwae_images"], result["test_images_elbo"]) == (16, 3, 6)
    noise = likelihood_metrics.summarize(model, params, batch_stats, {k: v[:3] for k, v in test_set.items()},
                                         jax.random.key(3), 16)
    # over the IWAE's 3 noise images (about 1200 nats each), not the full ELBO's 6 (the blank ones: about 40)
    assert result["iwae_negative_elbo_same_images_nats"] == pytest.approx(noise["test_negative_elbo_nats"], abs=25.0)
    assert result["test_negative_elbo_nats"] < result["iwae_negative_elbo_same_images_nats"] - 300
    # the bound undercuts the ELBO on the same images (by 0.8 to 3.5 nats over keys 0..9)
    assert result["iwae_nll_nats"] < result["iwae_negative_elbo_same_images_nats"]
    grey = {"image": jax.random.uniform(jax.random.key(4), (6, 28, 28, 1)), "label": test_set["label"]}
    assert likelihood_metrics.summarize(model, params, batch_stats, grey, jax.random.key(2), 2, 2,
                                        )["likelihood_targets"] == "grey-level"


def test_likelihood_targets_reads_uint8_and_float_images():
    assert likelihood_metrics.likelihood_targets({"image": jnp.asarray([[0, 255]], jnp.uint8)}) == "binarized"
    assert likelihood_metrics.likelihood_targets({"image": jnp.asarray([[0, 128]], jnp.uint8)}) == "grey-level"
    assert likelihood_metrics.likelihood_targets({"image": jnp.asarray([[0.0, 1.0]])}) == "binarized"
    assert likelihood_metrics.likelihood_targets({"image": jnp.asarray([[0.0, 0.5]])}) == "grey-level"


def test_evaluate_likelihood_chunks_and_pads_without_changing_results(tiny_vae):
    """7 images in batches of 3 (the last padded): one compiled batch function, and the
    samples' chunking changes nothing; the IWAE bound is below the ELBO with k = 64."""
    model, params, batch_stats, test_set = tiny_vae
    seven = {k: jnp.concatenate([v, v[:1]]) for k, v in test_set.items()}
    likelihood._score_batch.clear_cache()
    whole = likelihood.evaluate_likelihood(model, params, batch_stats, seven, jax.random.key(6), 64, batch_size=3,
                                           sample_chunk=64)
    assert likelihood._score_batch._cache_size() == 1
    chunked = likelihood.evaluate_likelihood(model, params, batch_stats, seven, jax.random.key(6), 64, batch_size=3,
                                             sample_chunk=5)
    assert whole["iwae_nll"].shape == whole["negative_elbo"].shape == (7,)
    np.testing.assert_allclose(chunked["iwae_nll"], whole["iwae_nll"], rtol=1e-5)
    np.testing.assert_array_equal(chunked["negative_elbo"], whole["negative_elbo"])
    assert np.mean(whole["iwae_nll"]) < np.mean(whole["negative_elbo"])
    with pytest.raises(ValueError, match="must be positive"):
        likelihood.evaluate_likelihood(model, params, batch_stats, seven, jax.random.key(6), 4, sample_chunk=0)


# ------------------------------------------------------------------ section 5: the binarized preset

def test_s5_binarized_preset():
    config = parse(s5_vae, "--preset", "binarized")[0]
    assert config.model.binarize and config.model.kld_weight == pytest.approx(1 / 784)
    assert config.model.kl_warmup_steps == 938 and config.model.latent_dim == 24
    assert (config.iwae_samples, config.iwae_images) == (1000, 10_000)
    assert not parse(s5_vae)[0].model.binarize
    assert s5_vae.iwae_sizes(config, quick=False) == (1000, 10_000)
    assert s5_vae.iwae_sizes(config, quick=True) == (likelihood_metrics.QUICK_SAMPLES, likelihood_metrics.QUICK_IMAGES)
    assert s5_vae.iwae_sizes(parse(s5_vae)[0], quick=True) == (likelihood_metrics.QUICK_SAMPLES,
                                                             likelihood_metrics.QUICK_IMAGES)


@pytest.mark.slow
def test_s5_binarized_quick_run_records_binarized_likelihoods(mnist_dir, tmp_path):
    out = tmp_path / "run"
    s5_vae.main(["--preset", "binarized", "--quick", "--no-progress", "--train-limit", "512", "--test-limit", "256",
                 "--data-dir", str(mnist_dir), "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["preset"] == "binarized" and metrics["settings"]["binarize"] is True
    assert metrics["likelihood_targets"] == "binarized"
    assert metrics["iwae_samples"] == likelihood_metrics.QUICK_SAMPLES  # --quick caps the preset's k = 1000
    assert metrics["iwae_images"] == likelihood_metrics.QUICK_IMAGES and metrics["test_images_elbo"] == 256
    assert 0 < metrics["iwae_nll_nats"] <= metrics["iwae_negative_elbo_same_images_nats"] + 0.5 < 784 * math.log(2)
    assert 0 < metrics["test_negative_elbo_nats"] < 784 * math.log(2)
