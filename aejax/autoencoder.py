"""The lecture's deterministic autoencoders as one variant: a config and a loss.

Covers the plain conv AE (section 2), the denoising AE (noise on training inputs,
clean targets), the sparse AE with the L1 or either KL-Bernoulli penalty (section 3)
and the weight-decayed AE used for interpolation (section 4).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Literal

import jax
import jax.numpy as jnp

from aejax import data as data_lib
from aejax import flags, losses
from aejax.conv_kernels import (CONV_IMPL_HELP, CONV_TRANSPOSE_IMPL_HELP, ConvImpl, ConvTransposeImpl,
                                resolve_conv_impl, resolve_conv_transpose_impl)
from aejax.model import (Batch, BatchStats, EncoderDecoder, LossOutput, Model, Params, Phase, encoder_decoder_functions,
                         module_variables)
from aejax.modules import (IMAGE_SHAPE, IMAGE_SHAPE_HELP, Decoder, Encoder, ImageShape, apply_training,
                           check_image_shape)
from aejax.optimizers import torch_adam

Sparsity = Literal["none", "l1", "kl_per_object", "kl_per_unit"]
SPARSITY_CHOICES = typing.get_args(Sparsity)


@dataclasses.dataclass(frozen=True)
class AEConfig:
    """The deterministic autoencoder's settings; the defaults are the lecture's plain conv AE."""

    latent_dim: int = flags.field(2, "size D of the code z (> 0)")
    learning_rate: float = flags.field(1e-4, "Adam learning rate (> 0)")
    weight_decay: float = flags.field(0.0, "PyTorch-style coupled L2 weight decay of Adam (>= 0; section 4: 1e-5)")
    input_noise_std: float = flags.field(0.0, "std of the Gaussian noise added to training inputs, clean targets "
                                              "(>= 0, pixels in [0, 1]; > 0: denoising AE)")
    sparsity: Sparsity = flags.field("none", "sparsity penalty on the code: L1 or KL-Bernoulli per object or per unit")
    sparsity_weight: float = flags.field(0.01, "weight beta of the sparsity penalty")
    sparsity_target: float = flags.field(0.1, "target activation p of the KL sparsity penalties, in (0, 1)")
    conv_impl: ConvImpl = flags.field("auto", CONV_IMPL_HELP)
    conv_transpose_impl: ConvTransposeImpl = flags.field("auto", CONV_TRANSPOSE_IMPL_HELP)
    image_shape: ImageShape = flags.field(IMAGE_SHAPE, IMAGE_SHAPE_HELP, cli=False)

    def __post_init__(self):
        object.__setattr__(self, "image_shape", check_image_shape(self.image_shape))  # a list becomes a tuple
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if not (self.learning_rate > 0 and self.weight_decay >= 0 and self.input_noise_std >= 0):  # NaN fails too
            raise ValueError("learning_rate must be > 0; weight_decay and input_noise_std >= 0 (finite numbers)")
        if self.sparsity not in SPARSITY_CHOICES:
            raise ValueError(f"sparsity must be one of {SPARSITY_CHOICES}, got {self.sparsity!r}")
        if not 0 < self.sparsity_target < 1:
            raise ValueError(f"sparsity_target must be in (0, 1), got {self.sparsity_target}")
        resolve_conv_impl(self.conv_impl)  # each raises on an unknown name
        resolve_conv_transpose_impl(self.conv_transpose_impl)


def sparsity_penalty(config: AEConfig, latents: jax.Array) -> jax.Array:
    """The scalar sparsity term (before the beta weight) for latents (B, D).

    l1: mean |activation| (the lecture's F.l1_loss against zeros); kl_per_object: KL
    of each object's mean activation, summed over the batch (as the lecture says);
    kl_per_unit: KL of each unit's batch-mean activation, averaged over the units.
    """
    if config.sparsity == "l1":
        return jnp.mean(losses.l1_sparsity(latents))
    if config.sparsity == "kl_per_object":
        return jnp.sum(losses.kl_sparsity_per_object(latents, config.sparsity_target))
    if config.sparsity == "kl_per_unit":
        return jnp.mean(losses.kl_sparsity_per_unit(latents, config.sparsity_target))
    return jnp.zeros((), latents.dtype)


def make_modules(config: AEConfig) -> EncoderDecoder:
    """The lecture's conv encoder (``latent_dim`` codes) and decoder, for images of ``image_shape``."""
    return EncoderDecoder(Encoder(config.latent_dim, conv_impl=config.conv_impl, image_shape=config.image_shape),
                          Decoder(conv_impl=config.conv_impl, conv_transpose_impl=config.conv_transpose_impl,
                                  latent_dim=config.latent_dim, image_shape=config.image_shape))


def autoencoder_loss(config: AEConfig, modules: EncoderDecoder, params: Params, batch_stats: BatchStats,
                     batch: Batch, key: jax.Array, step: jax.Array) -> LossOutput:
    """Mean-over-values BCE on logits (+ beta * sparsity) of batch["image"] (B, H, W, C) in [0, 1].

    With ``input_noise_std`` the encoder reads the images plus noise drawn from ``key``
    and the targets stay clean (the denoising AE). Metrics: bce, and sparsity (the
    penalty before beta) when a penalty is set.
    """
    del step  # no schedule
    encoder, decoder = modules
    clean = batch["image"]
    inputs = data_lib.add_gaussian_noise(key, clean, config.input_noise_std) if config.input_noise_std else clean
    latents, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), inputs)
    logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), latents)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, clean))
    metrics = {"bce": bce}
    loss = bce
    if config.sparsity != "none":
        penalty = sparsity_penalty(config, latents)
        loss = loss + config.sparsity_weight * penalty
        metrics["sparsity"] = penalty
    return LossOutput(loss, {"encoder": encoder_stats, "decoder": decoder_stats}, metrics)


def make_model(config: AEConfig) -> Model:
    """The variant as the generic loop sees it: one phase updating encoder and decoder."""
    modules = make_modules(config)
    functions = encoder_decoder_functions(modules, config.latent_dim)
    phase = Phase("autoencoder", functools.partial(autoencoder_loss, config, modules),
                  torch_adam(config.learning_rate, config.weight_decay), ("encoder", "decoder"))
    return Model(init=functions.init, phases=(phase,), encode=functions.encode, decode=functions.decode)
