"""The variant contract (aejax.model): Gaussian posterior helpers, the shared encoder/decoder
functions, and the loop reading a loss's output by name."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import autoencoder, model, vae
from aejax import train as train_lib

from support import VAE_LATENT

BATCH = 4


def test_split_moments_shapes_and_halves():
    out = jnp.arange(3 * 2 * VAE_LATENT, dtype=jnp.float32).reshape(3, 2 * VAE_LATENT)
    mu, log_var = model.split_moments(out)
    chex.assert_shape([mu, log_var], (3, VAE_LATENT))
    chex.assert_type([mu, log_var], jnp.float32)
    np.testing.assert_array_equal(mu, out[:, :VAE_LATENT])
    np.testing.assert_array_equal(log_var, out[:, VAE_LATENT:])


@pytest.mark.parametrize("shape", [(4, 3), (4,), (2, 2, 4), (4, 1)])
def test_split_moments_rejects_odd_last_axis_or_wrong_rank(shape):
    with pytest.raises(ValueError, match="even last axis"):
        model.split_moments(jnp.zeros(shape))


def test_reparametrize_shape_dtype_and_formula():
    mu = jnp.asarray([[0.5, -1.0], [2.0, 0.0], [0.0, 3.0]], jnp.float32)
    log_var = jnp.asarray([[0.0, math.log(4.0)], [-2.0, 1.0], [0.5, -0.5]], jnp.float32)
    key = jax.random.key(7)
    z = model.reparametrize(key, mu, log_var)
    chex.assert_shape(z, (3, 2))
    chex.assert_type(z, jnp.float32)
    eps = np.asarray(jax.random.normal(key, (3, 2)))
    np.testing.assert_allclose(z, np.asarray(mu) + np.exp(0.5 * np.asarray(log_var)) * eps, rtol=1e-6, atol=1e-6)


def test_reparametrize_sample_mean_and_variance():
    """200k draws of one (mu, log_var) have mean ~ mu and variance ~ exp(log_var)."""
    n = 200_000
    mu_row = np.asarray([0.5, -2.0, 1.0], np.float32)
    log_var_row = np.asarray([0.0, math.log(4.0), -2.0], np.float32)
    mu = jnp.broadcast_to(jnp.asarray(mu_row), (n, 3))
    log_var = jnp.broadcast_to(jnp.asarray(log_var_row), (n, 3))
    z = np.asarray(model.reparametrize(jax.random.key(0), mu, log_var), np.float64)
    std = np.exp(0.5 * log_var_row)
    np.testing.assert_array_less(np.abs(z.mean(axis=0) - mu_row), 5 * std / math.sqrt(n))
    np.testing.assert_allclose(z.var(axis=0), np.exp(log_var_row), rtol=0.02)
    # the coordinates are independent
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.01


def test_reparametrize_same_key_same_z_other_key_other_z():
    """The noise comes from the key alone."""
    mu, log_var = jnp.zeros((BATCH, VAE_LATENT)), jnp.zeros((BATCH, VAE_LATENT))
    a = model.reparametrize(jax.random.key(3), mu, log_var)
    b = model.reparametrize(jax.random.key(3), mu, log_var)
    c = model.reparametrize(jax.random.key(4), mu, log_var)
    np.testing.assert_array_equal(a, b)
    assert not np.any(np.asarray(a) == np.asarray(c))


def test_encoder_decoder_functions_are_the_variants_own():
    """The shared init / encode / decode: a plain AE's codes and logits, a conditional decoder reading labels."""
    config = autoencoder.AEConfig(latent_dim=3)
    functions = model.encoder_decoder_functions(autoencoder.make_modules(config), config.latent_dim)
    params, batch_stats = functions.init(jax.random.key(0))
    assert set(params) == set(batch_stats) == {"encoder", "decoder"}
    images = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    codes = functions.encode(params, batch_stats, images)
    chex.assert_shape(codes, (2, 3))
    chex.assert_shape(functions.decode(params, batch_stats, codes), (2, 28, 28, 1))
    cvae = vae.VAEConfig(latent_dim=2, num_classes=4)
    conditional = model.encoder_decoder_functions(vae.make_modules(cvae), cvae.latent_dim)
    params, batch_stats = conditional.init(jax.random.key(0))
    z = jnp.zeros((2, 2))
    one = conditional.decode(params, batch_stats, z, jnp.asarray([0, 0]))
    other = conditional.decode(params, batch_stats, z, jnp.asarray([3, 3]))
    assert float(jnp.max(jnp.abs(one - other))) > 0  # the label changes the image


@pytest.mark.parametrize("carry", [None, {}])
def test_a_loss_without_carry_adds_nothing_to_later_phases(carry):
    seen = {}

    def first(params, batch_stats, batch, key, step):
        return model.LossOutput(jnp.sum(params["a"] ** 2), batch_stats, {}, carry)

    def second(params, batch_stats, batch, key, step):
        seen["keys"] = sorted(batch)
        return model.LossOutput(jnp.sum(params["b"] ** 2) * batch["x"].sum(), batch_stats, {"step": step})

    phases = (model.Phase("first", first, optax.sgd(0.1), ("a",)), model.Phase("second", second, optax.sgd(0.1), ("b",)))
    toy = model.Model(init=lambda key: ({"a": jnp.ones(2), "b": jnp.ones(2)}, {}), phases=phases, encode=None, decode=None)
    state = train_lib.create_train_state(toy, jax.random.key(0))
    new_state, metrics = train_lib.apply_phases(phases, state, {"x": jnp.ones(3)})
    assert seen["keys"] == ["x"]
    assert set(metrics) == {"first/loss", "second/loss", "second/step"} and int(metrics["second/step"]) == 0
    np.testing.assert_allclose(new_state.params["a"], 0.8 * np.ones(2), rtol=1e-6)  # a - 0.1 * 2a
