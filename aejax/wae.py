"""Wasserstein autoencoder with the MMD penalty (Tolstikhin et al., 2018), as a variant.

The lecture's deterministic encoder and decoder (``latent_dim`` codes) with a loss
that pushes a batch of codes towards the prior N(0, I) by the MMD between them and as
many prior samples, under inverse multiquadratic kernels:
``mean-over-pixels BCE + mmd_weight * MMD``. The paper's lambda = 10 on a per-image
cost is ``mmd_weight = 10 / 784`` here (the default).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from aejax import autoencoder, flags, losses
from aejax.model import (Batch, BatchStats, EncoderDecoder, LossOutput, Model, Params, Phase, encoder_decoder_functions,
                         module_variables)
from aejax.modules import apply_training
from aejax.optimizers import torch_adam


@dataclasses.dataclass(frozen=True)
class WAEConfig:
    """The Wasserstein autoencoder's settings (MMD penalty)."""

    latent_dim: int = flags.field(8, "size D of the code z (> 0)")
    learning_rate: float = flags.field(1e-3, "Adam learning rate (> 0)")
    weight_decay: float = flags.field(0.0, "PyTorch-style coupled L2 weight decay of Adam (>= 0)")
    mmd_weight: float = flags.field(10 / 784, "weight of the MMD between codes and prior samples next to the "
                                              "mean-over-pixels BCE (>= 0; the paper's lambda = 10 is 10 / 784)")

    def __post_init__(self):
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.mmd_weight < 0:
            raise ValueError("learning_rate must be > 0; weight_decay and mmd_weight >= 0")


def wae_loss(config: WAEConfig, modules: EncoderDecoder, params: Params, batch_stats: BatchStats, batch: Batch,
             key: jax.Array, step: jax.Array) -> LossOutput:
    """Mean BCE of batch["image"] (B, 28, 28, 1) + mmd_weight * MMD(codes, as many prior samples drawn with ``key``).

    Metrics: bce, mmd.
    """
    del step  # no schedule
    encoder, decoder = modules
    images = batch["image"]
    codes, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), images)
    logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), codes)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
    mmd = losses.mmd_imq(codes, jax.random.normal(key, codes.shape, codes.dtype))
    loss = bce + config.mmd_weight * mmd
    return LossOutput(loss, {"encoder": encoder_stats, "decoder": decoder_stats}, {"bce": bce, "mmd": mmd})


def make_model(config: WAEConfig) -> Model:
    """The plain autoencoder's modules and encode/decode with the WAE loss as its one phase."""
    modules = autoencoder.make_modules(autoencoder.AEConfig(latent_dim=config.latent_dim))
    functions = encoder_decoder_functions(modules, config.latent_dim)
    phase = Phase("wae", functools.partial(wae_loss, config, modules),
                  torch_adam(config.learning_rate, config.weight_decay), ("encoder", "decoder"))
    return Model(init=functions.init, phases=(phase,), encode=functions.encode, decode=functions.decode)
