"""Wasserstein autoencoder with the MMD penalty (Tolstikhin et al., 2018), as a variant.

The lecture's deterministic encoder and decoder (``latent_dim`` codes) with a loss
that pushes a batch of codes towards the prior N(0, I) by the MMD between them and as
many prior samples, under inverse multiquadratic kernels:
``mean-over-values BCE + mmd_weight * MMD``. The paper's lambda = 10 on a per-image
cost is ``mmd_weight = 10 / (H * W * C)`` here, 10 / 784 on MNIST (the default,
``mmd_weight=None``: ``mmd_weight_of``).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from aejax import autoencoder, flags, losses
from aejax.model import (Batch, BatchStats, EncoderDecoder, LossOutput, Model, Params, Phase, encoder_decoder_functions,
                         module_variables)
from aejax.modules import IMAGE_SHAPE, IMAGE_SHAPE_HELP, ImageShape, apply_training, check_image_shape, num_values
from aejax.optimizers import torch_adam

PAPER_LAMBDA = 10.0  # Tolstikhin et al.'s MMD weight on a per-image reconstruction cost


@dataclasses.dataclass(frozen=True)
class WAEConfig:
    """The Wasserstein autoencoder's settings (MMD penalty)."""

    latent_dim: int = flags.field(8, "size D of the code z (> 0)")
    learning_rate: float = flags.field(1e-3, "Adam learning rate (> 0)")
    weight_decay: float = flags.field(0.0, "PyTorch-style coupled L2 weight decay of Adam (>= 0)")
    mmd_weight: float | None = flags.field(
        None, "weight of the MMD between codes and prior samples next to the mean-over-values BCE (>= 0; none: the "
              "paper's lambda = 10 per image, 10 / (H * W * C): 10 / 784 on MNIST)")
    image_shape: ImageShape = flags.field(IMAGE_SHAPE, IMAGE_SHAPE_HELP, cli=False)

    def __post_init__(self):
        object.__setattr__(self, "image_shape", check_image_shape(self.image_shape))  # a list becomes a tuple
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or (self.mmd_weight is not None and self.mmd_weight < 0):
            raise ValueError("learning_rate must be > 0; weight_decay and mmd_weight >= 0")


def mmd_weight_of(config: WAEConfig) -> float:
    """The MMD's weight: ``config.mmd_weight``, or where that is None the paper's lambda = 10 per
    image in the mean-over-values loss, 10 / (H * W * C) (10 / 784 on MNIST)."""
    return PAPER_LAMBDA / num_values(config.image_shape) if config.mmd_weight is None else config.mmd_weight


def wae_loss(config: WAEConfig, modules: EncoderDecoder, params: Params, batch_stats: BatchStats, batch: Batch,
             key: jax.Array, step: jax.Array) -> LossOutput:
    """Mean BCE of batch["image"] (B, H, W, C) + mmd_weight * MMD(codes, as many prior samples drawn with ``key``).

    Metrics: bce, mmd.
    """
    del step  # no schedule
    encoder, decoder = modules
    images = batch["image"]
    codes, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), images)
    logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), codes)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
    mmd = losses.mmd_imq(codes, jax.random.normal(key, codes.shape, codes.dtype))
    loss = bce + mmd_weight_of(config) * mmd
    return LossOutput(loss, {"encoder": encoder_stats, "decoder": decoder_stats}, {"bce": bce, "mmd": mmd})


def make_model(config: WAEConfig) -> Model:
    """The plain autoencoder's modules and encode/decode with the WAE loss as its one phase."""
    modules = autoencoder.make_modules(autoencoder.AEConfig(latent_dim=config.latent_dim,
                                                            image_shape=config.image_shape))
    functions = encoder_decoder_functions(modules, config.latent_dim)
    phase = Phase("wae", functools.partial(wae_loss, config, modules),
                  torch_adam(config.learning_rate, config.weight_decay), ("encoder", "decoder"))
    return Model(init=functions.init, phases=(phase,), encode=functions.encode, decode=functions.decode)
