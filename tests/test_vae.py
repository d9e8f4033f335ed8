"""The variational autoencoder (aejax.vae): VAE / KL-only / beta-VAE / CVAE models, the
loss and its weights, key discipline in training, config checks.

Kept small for a shared CPU: batches of 2-8 images, latent size 2, one shared
initialisation of the networks (conftest's ``vae_vars`` and ``cvae``), at most a couple
of training steps.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import vae
from aejax import train as train_lib
from aejax.model import reparametrize

from support import (CVAE_CLASSES, VAE_LATENT, inked_batch, inked_dataset, inked_images, max_abs_diff, np_bce,
                     np_gaussian_kl, small_vae)

BATCH = 4


# ------------------------------------------------------------ Model outputs (VAE, CVAE)

def test_vae_encode_posterior_decode_shapes(vae_vars):
    params, batch_stats = vae_vars
    model, images = small_vae(), inked_images(BATCH)
    for train in (False, True):
        mu, log_var = model.posterior(params, batch_stats, images, train=train)
        chex.assert_shape([mu, log_var], (BATCH, VAE_LATENT))
        chex.assert_type([mu, log_var], jnp.float32)
        encoded = model.encode(params, batch_stats, images, train=train)
        chex.assert_shape(encoded, (BATCH, VAE_LATENT))
        np.testing.assert_array_equal(encoded, mu)  # encode is the posterior mean
        logits = model.decode(params, batch_stats, mu, train=train)
        chex.assert_shape(logits, (BATCH, 28, 28, 1))
        chex.assert_type(logits, jnp.float32)
        chex.assert_tree_all_finite(logits)
    chex.assert_shape(params["encoder"]["Dense_0"]["kernel"], (2048, 2 * VAE_LATENT))  # mu and log_var
    chex.assert_shape(params["decoder"]["Dense_0"]["kernel"], (VAE_LATENT, 512))


def test_cvae_encode_posterior_decode_shapes(cvae):
    model, params, batch_stats = cvae
    batch = inked_batch(BATCH)
    mu, log_var = model.posterior(params, batch_stats, batch["image"], batch["label"])
    chex.assert_shape([mu, log_var], (BATCH, VAE_LATENT))
    chex.assert_type([mu, log_var], jnp.float32)
    chex.assert_shape(model.encode(params, batch_stats, batch["image"], batch["label"]), (BATCH, VAE_LATENT))
    for train in (False, True):
        logits = model.decode(params, batch_stats, mu, batch["label"], train=train)
        chex.assert_shape(logits, (BATCH, 28, 28, 1))
        chex.assert_type(logits, jnp.float32)


def test_cvae_first_dense_reads_latent_plus_one_hot(cvae):
    _, params, _ = cvae
    chex.assert_shape(params["decoder"]["Dense_0"]["kernel"], (VAE_LATENT + CVAE_CLASSES, 512))
    chex.assert_shape(params["decoder"]["Dense_0"]["bias"], (512,))
    # the encoder is the unconditional one
    chex.assert_shape(params["encoder"]["Dense_0"]["kernel"], (2048, 2 * VAE_LATENT))


def test_cvae_decoder_honours_each_label(cvae):
    """Same z: label 3 and label 7 decode differently, and each row follows its own label."""
    model, params, batch_stats = cvae
    z = jnp.asarray([[0.3, -0.7], [0.3, -0.7]], jnp.float32)
    threes = model.decode(params, batch_stats, z, jnp.asarray([3, 3], jnp.int32))
    sevens = model.decode(params, batch_stats, z, jnp.asarray([7, 7], jnp.int32))
    mixed = model.decode(params, batch_stats, z, jnp.asarray([3, 7], jnp.int32))
    effect = float(jnp.max(jnp.abs(threes[0] - sevens[0])))  # small at init (~1e-4), far above rounding
    assert effect > 2e-5
    np.testing.assert_allclose(mixed[0], threes[0], atol=effect / 50)
    np.testing.assert_allclose(mixed[1], sevens[1], atol=effect / 50)
    np.testing.assert_allclose(threes[0], threes[1], atol=effect / 50)  # eval mode: rows independent


def test_cvae_loss_depends_on_the_labels(cvae):
    model, params, batch_stats = cvae
    batch, key = inked_batch(BATCH), jax.random.key(2)
    loss, *_ = model.phases[0].loss_fn(params, batch_stats, batch, key, 0)
    other, *_ = model.phases[0].loss_fn(params, batch_stats, {**batch, "label": (batch["label"] + 5) % 10}, key, 0)
    assert float(loss) != float(other)


def test_conditional_decoder_rejects_missing_or_bad_labels(cvae):
    model, params, batch_stats = cvae
    z = jnp.zeros((2, VAE_LATENT))
    with pytest.raises(ValueError, match="needs labels"):
        model.decode(params, batch_stats, z)
    with pytest.raises(ValueError, match="labels must be integers"):
        model.decode(params, batch_stats, z, jnp.zeros((2, 1), jnp.int32))
    with pytest.raises(ValueError, match="labels must be integers"):
        model.decode(params, batch_stats, z, jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="labels must be integers"):
        model.decode(params, batch_stats, z, jnp.asarray([3.0, 7.0], jnp.float32))


# ------------------------------------------------------------ the VAE loss and its weights

def test_vae_loss_is_weighted_mean_bce_plus_weighted_mean_kl(vae_vars):
    """loss = reconstruction_weight * mean BCE + kld_weight * mean KL, recomputed from the modules."""
    params, batch_stats = vae_vars
    model = small_vae(kld_weight=0.05, reconstruction_weight=0.7)
    batch, key = inked_batch(BATCH), jax.random.key(11)
    loss, new_stats, metrics, _ = model.phases[0].loss_fn(params, batch_stats, batch, key, jnp.int32(0))
    chex.assert_shape(loss, ())
    mu, log_var = model.posterior(params, batch_stats, batch["image"], train=True)
    z = reparametrize(key, mu, log_var)
    logits = model.decode(params, batch_stats, z, train=True)
    bce = np_bce(logits, batch["image"]).mean()
    kl = np_gaussian_kl(mu, log_var).mean()
    np.testing.assert_allclose(float(metrics["bce"]), bce, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["kl"]), kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics["kld_weight"]), 0.05, rtol=1e-7)
    np.testing.assert_allclose(float(loss), 0.7 * bce + 0.05 * kl, rtol=1e-5)
    # the running statistics come back updated, with the same structure
    chex.assert_trees_all_equal_structs(new_stats, batch_stats)
    assert max_abs_diff(new_stats, batch_stats) > 0


def test_vae_loss_same_key_same_loss_other_key_differs(vae_vars):
    params, batch_stats = vae_vars
    loss_fn, batch = small_vae().phases[0].loss_fn, inked_batch(BATCH)
    a, *_ = loss_fn(params, batch_stats, batch, jax.random.key(5), 0)
    b, *_ = loss_fn(params, batch_stats, batch, jax.random.key(5), 0)
    c, *_ = loss_fn(params, batch_stats, batch, jax.random.key(6), 0)
    assert float(a) == float(b)
    assert float(a) != float(c)


def test_vae_loss_uses_the_warmup_weight_at_step(vae_vars):
    params, batch_stats = vae_vars
    model = small_vae(kld_weight=0.1, kl_warmup_steps=10)
    batch, key = inked_batch(BATCH), jax.random.key(11)
    loss, _, metrics, _ = model.phases[0].loss_fn(params, batch_stats, batch, key, jnp.int32(4))
    np.testing.assert_allclose(float(metrics["kld_weight"]), 0.1 * 5 / 10, rtol=1e-6)
    np.testing.assert_allclose(float(loss), float(metrics["bce"]) + 0.05 * float(metrics["kl"]), rtol=1e-6)


def test_kl_only_config_gives_the_decoder_no_gradient(vae_vars):
    """reconstruction_weight = 0: all-zero gradients for the decoder, non-zero ones for the encoder."""
    params, batch_stats = vae_vars
    model = small_vae(kld_weight=0.1, reconstruction_weight=0.0)
    batch = inked_batch(BATCH)

    def loss(decoder, encoder_head):  # the encoder's last layer only, to keep the compiled gradient small
        encoder = {**params["encoder"], "Dense_0": encoder_head}
        return model.phases[0].loss_fn({"encoder": encoder, "decoder": decoder}, batch_stats, batch,
                                       jax.random.key(0), 0)[0]

    decoder_grads, head_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params["decoder"],
                                                                           params["encoder"]["Dense_0"])
    chex.assert_trees_all_equal_shapes(decoder_grads, params["decoder"])
    chex.assert_trees_all_equal(decoder_grads, jax.tree.map(jnp.zeros_like, params["decoder"]))
    assert float(jnp.max(jnp.abs(head_grads["kernel"]))) > 0


def test_kld_weight_warmup_is_linear_then_constant():
    config = vae.VAEConfig(kld_weight=0.2, kl_warmup_steps=4)
    got = [float(vae.kld_weight_at(config, jnp.int32(step))) for step in range(7)]
    np.testing.assert_allclose(got, [0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2], rtol=1e-6)
    constant = vae.VAEConfig(kld_weight=0.2)
    for step in (0, 1, 1000):
        w = vae.kld_weight_at(constant, jnp.int32(step))
        chex.assert_shape(w, ())
        chex.assert_type(w, jnp.float32)
        np.testing.assert_allclose(float(w), 0.2, rtol=1e-7)


def test_beta_to_kld_weight():
    assert vae.beta_to_kld_weight(1.0) == 1 / 784
    assert abs(vae.beta_to_kld_weight(3.92) - 0.005) < 1e-12  # the lecture's weight


# ------------------------------------------------------------ key discipline in training

def test_train_step_consumes_key_and_is_reproducible():
    """One compiled step: the key moves on, the warm-up weight follows the step, and a seed fixes the run."""
    model = small_vae(kld_weight=0.04, kl_warmup_steps=4)
    step_fn = train_lib.make_train_step(model.phases)
    dataset, indices = inked_dataset(8), jnp.arange(4)
    runs = []
    for seed in (0, 0, 1):
        state = train_lib.create_train_state(model, jax.random.key(seed))
        key_before = np.asarray(jax.random.key_data(state.key)).copy()
        weights = []
        for _ in range(2):
            state, metrics = step_fn(state, dataset, indices)
            weights.append(float(metrics["kld_weight"]))
        assert not np.array_equal(key_before, jax.random.key_data(state.key))
        assert int(state.step) == 2
        np.testing.assert_allclose(weights, [0.01, 0.02], rtol=1e-6)
        runs.append(state)
    chex.assert_trees_all_equal(runs[0].params, runs[1].params)
    chex.assert_trees_all_equal(runs[0].batch_stats, runs[1].batch_stats)
    np.testing.assert_array_equal(jax.random.key_data(runs[0].key), jax.random.key_data(runs[1].key))
    assert max_abs_diff(runs[0].params, runs[2].params) > 1e-4


# ------------------------------------------------------------ config

NON_NEGATIVE = "kld_weight, reconstruction_weight, kl_warmup_steps and num_classes must be >= 0"


@pytest.mark.parametrize("bad, message", [
    (dict(latent_dim=0), "latent_dim must be positive"), (dict(latent_dim=-2), "latent_dim must be positive"),
    (dict(kld_weight=-0.1), NON_NEGATIVE), (dict(reconstruction_weight=-1.0), NON_NEGATIVE),
    (dict(kl_warmup_steps=-1), NON_NEGATIVE), (dict(num_classes=-1), NON_NEGATIVE),
    (dict(learning_rate=0.0), "learning_rate must be > 0"), (dict(weight_decay=-1e-5), "weight_decay >= 0"),
])
def test_vae_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        vae.VAEConfig(**bad)


def test_config_fields_carry_command_line_help():
    """Every field documents itself; num_classes comes from the data, not from a flag."""
    for field in dataclasses.fields(vae.VAEConfig):
        assert field.metadata.get("help"), f"VAEConfig.{field.name} has no help"
    cli = {f.name: f.metadata.get("cli", True) for f in dataclasses.fields(vae.VAEConfig)}
    assert cli["num_classes"] is False and cli["kld_weight"] is True
