"""The Wasserstein autoencoder (aejax.wae): its loss (mean BCE plus the weighted MMD penalty)
and its config checks."""

from __future__ import annotations

import dataclasses

import chex
import jax
import numpy as np
import pytest

from aejax import losses, wae

from support import VAE_LATENT, inked_batch, np_bce

BATCH = 4


def test_wae_loss_is_mean_bce_plus_weighted_mmd():
    config = wae.WAEConfig(latent_dim=VAE_LATENT, mmd_weight=0.3)
    model = wae.make_model(config)
    assert model.posterior is None
    params, batch_stats = model.init(jax.random.key(2))
    batch, key = inked_batch(BATCH), jax.random.key(12)
    loss, new_stats, metrics, _ = model.phases[0].loss_fn(params, batch_stats, batch, key, 0)
    assert set(metrics) == {"bce", "mmd"}
    np.testing.assert_allclose(float(loss), float(metrics["bce"]) + 0.3 * float(metrics["mmd"]), rtol=1e-6)
    # recomputed from the modules in train mode and prior samples from the same key
    codes = model.encode(params, batch_stats, batch["image"], train=True)
    chex.assert_shape(codes, (BATCH, VAE_LATENT))
    logits = model.decode(params, batch_stats, codes, train=True)
    chex.assert_shape(logits, (BATCH, 28, 28, 1))
    np.testing.assert_allclose(float(metrics["bce"]), np_bce(logits, batch["image"]).mean(), rtol=1e-5)
    mmd = losses.mmd_imq(codes, jax.random.normal(key, codes.shape))
    np.testing.assert_allclose(float(metrics["mmd"]), float(mmd), rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_equal_structs(new_stats, batch_stats)


@pytest.mark.parametrize("bad, message", [
    (dict(latent_dim=-1), "latent_dim must be positive"), (dict(latent_dim=0), "latent_dim must be positive"),
    (dict(mmd_weight=-1.0), "mmd_weight >= 0"), (dict(learning_rate=-1e-3), "learning_rate must be > 0"),
])
def test_wae_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        wae.WAEConfig(**bad)


def test_config_fields_carry_command_line_help():
    for field in dataclasses.fields(wae.WAEConfig):
        assert field.metadata.get("help"), f"WAEConfig.{field.name} has no help"
