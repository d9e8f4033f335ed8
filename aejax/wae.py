"""Wasserstein autoencoder with the MMD penalty (Tolstikhin et al., 2018), as a variant.

The lecture's deterministic encoder and decoder (``latent_dim`` codes) with a loss
that pushes a batch of codes towards the prior N(0, I) by the MMD between them and as
many prior samples, under inverse multiquadratic kernels:
``mean-over-pixels BCE + mmd_weight * MMD``. The paper's lambda = 10 on a per-image
cost is ``mmd_weight = 10 / 784`` here (the default).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from aejax import autoencoder, losses
from aejax.modules import Decoder, Encoder, apply_training
from aejax.train import Model, Phase, module_variables
from aejax.optimizers import torch_adam


@dataclasses.dataclass(frozen=True)
class WAEConfig:
    """The Wasserstein autoencoder's settings (MMD penalty)."""

    latent_dim: int = dataclasses.field(default=8, metadata={"help": "size D of the code z (> 0)"})
    learning_rate: float = dataclasses.field(default=1e-3, metadata={"help": "Adam learning rate (> 0)"})
    weight_decay: float = dataclasses.field(
        default=0.0, metadata={"help": "PyTorch-style coupled L2 weight decay of Adam (>= 0)"})
    mmd_weight: float = dataclasses.field(
        default=10 / 784, metadata={"help": "weight of the MMD between codes and prior samples next to the "
                                            "mean-over-pixels BCE (>= 0; the paper's lambda = 10 is 10 / 784)"})

    def __post_init__(self):
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.mmd_weight < 0:
            raise ValueError("learning_rate must be > 0; weight_decay and mmd_weight >= 0")


def make_loss(config: WAEConfig, encoder: Encoder, decoder: Decoder):
    """loss(params, batch_stats, batch, key, step): mean BCE + mmd_weight * MMD(codes, prior samples)."""

    def loss_fn(params, batch_stats, batch, key, step=None):
        del step
        images = batch["image"]
        codes, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), images)
        logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), codes)
        bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
        mmd = losses.mmd_imq(codes, jax.random.normal(key, codes.shape, codes.dtype))
        loss = bce + config.mmd_weight * mmd
        return loss, ({"encoder": encoder_stats, "decoder": decoder_stats}, {"bce": bce, "mmd": mmd})

    return loss_fn


def make_model(config: WAEConfig) -> Model:
    """The plain autoencoder's modules and encode/decode with the WAE loss as its one phase."""
    base = autoencoder.make_model(autoencoder.AEConfig(latent_dim=config.latent_dim))
    phase = Phase("wae", make_loss(config, Encoder(config.latent_dim), Decoder(latent_dim=config.latent_dim)),
                  torch_adam(config.learning_rate, config.weight_decay), ("encoder", "decoder"))
    return base._replace(phases=(phase,))
