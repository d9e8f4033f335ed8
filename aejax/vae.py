"""The variational family as one variant: VAE, KL-only VAE, beta-VAE with KL warm-up, CVAE.

Section 5 and 7 of the lecture. The encoder is the plain one with 2 * latent_dim
outputs, split into mu and log-variance; z = mu + exp(log_var / 2) * eps with eps drawn
from an explicit key. The loss is the lecture's
``reconstruction_weight * mean-over-pixels BCE + kld_weight * mean-over-batch KL``.

With ``binarize`` every training batch is dynamically binarized (``aejax.binarized``),
the data set of the likelihood literature.

Because the BCE is a mean over an image's H * W * C values (784 pixels of MNIST),
``kld_weight`` is ``beta / (H * W * C)`` in the usual per-image ELBO units: on MNIST
the lecture's 0.005 is beta = 3.92, and beta = 1 (the plain ELBO) is
``kld_weight = 1 / 784``. ``beta_to_kld_weight`` converts. Each channel value is a
Bernoulli variable with p in [0, 1], colour channels as grey levels; binarization
(``binarize``) needs greyscale images.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from aejax import binarized, flags, losses
from aejax.model import (Batch, BatchStats, EncoderDecoder, LossOutput, Model, Params, Phase, encoder_decoder_functions,
                         module_variables, reparametrize, split_moments)
from aejax.modules import (IMAGE_SHAPE, IMAGE_SHAPE_HELP, Decoder, Encoder, ImageShape, apply_inference,
                           apply_training, check_image_shape, num_values)
from aejax.optimizers import torch_adam


def beta_to_kld_weight(beta: float, image_shape: ImageShape = IMAGE_SHAPE) -> float:
    """The KL weight in the lecture's mean-over-values loss that equals beta per image of
    ``image_shape``: beta / (H * W * C), beta / 784 for MNIST."""
    return beta / num_values(image_shape)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The variational autoencoder's settings; the defaults are the lecture's VAE (section 5)."""

    latent_dim: int = flags.field(2, "size D of the code z (> 0)")
    learning_rate: float = flags.field(1e-4, "Adam learning rate (> 0; the CVAE of section 7: 1e-2)")
    weight_decay: float = flags.field(0.0, "PyTorch-style coupled L2 weight decay of Adam (>= 0)")
    kld_weight: float = flags.field(0.005, "weight of the mean KL term next to the mean-over-pixels BCE "
                                           "(>= 0; beta / (H * W * C), beta / 784 on MNIST; the KL-only run: 0.1)")
    reconstruction_weight: float = flags.field(1.0, "weight of the BCE term (>= 0; 0: the lecture's KL-only run)")
    kl_warmup_steps: int = flags.field(0, "training steps over which the KL weight rises linearly from 0 "
                                          "to kld_weight (>= 0; 0: constant)")
    binarize: bool = flags.field(False, "binarized MNIST: training images drawn as Bernoulli(pixel) afresh every "
                                        "step (dynamic binarization); the likelihoods are then comparable with "
                                        "the literature's")
    num_classes: int = flags.field(0, "classes of the labels the decoder reads as "
                                      "one_hot(label) (> 0: CVAE; the data's class count)", cli=False)
    image_shape: ImageShape = flags.field(IMAGE_SHAPE, IMAGE_SHAPE_HELP, cli=False)

    def __post_init__(self):
        object.__setattr__(self, "image_shape", check_image_shape(self.image_shape))  # a list becomes a tuple
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError(f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, {self.weight_decay}")
        if self.kld_weight < 0 or self.reconstruction_weight < 0 or self.kl_warmup_steps < 0 or self.num_classes < 0:
            raise ValueError("kld_weight, reconstruction_weight, kl_warmup_steps and num_classes must be >= 0")
        if not isinstance(self.binarize, bool):
            raise ValueError(f"binarize must be True or False, got {self.binarize!r}")
        if self.binarize and self.image_shape[-1] != 1:
            raise ValueError(f"binarize needs greyscale images, got {self.image_shape[-1]} channels "
                             f"(image shape {self.image_shape}): binarized data sets are black-and-white")


def kld_weight_at(config: VAEConfig, step: jax.Array) -> jax.Array:
    """The KL weight at ``step`` (steps done before this one): constant, or the linear warm-up."""
    if not config.kl_warmup_steps:
        return jnp.asarray(config.kld_weight, jnp.float32)
    return optax.linear_schedule(0.0, config.kld_weight, config.kl_warmup_steps)(step + 1)


def make_modules(config: VAEConfig) -> EncoderDecoder:
    """The encoder (2 * latent_dim outputs: mu, log_var) and the (conditional when num_classes) decoder,
    for images of ``image_shape``."""
    return EncoderDecoder(Encoder(2 * config.latent_dim, image_shape=config.image_shape),
                          Decoder(num_classes=config.num_classes, latent_dim=config.latent_dim,
                                  image_shape=config.image_shape))


def vae_loss(config: VAEConfig, modules: EncoderDecoder, params: Params, batch_stats: BatchStats, batch: Batch,
             key: jax.Array, step: jax.Array) -> LossOutput:
    """``reconstruction_weight * mean BCE + kld_weight(step) * mean KL`` of batch["image"] (B, H, W, C).

    With ``config.binarize`` the batch's images are first replaced by one Bernoulli draw
    from a key split off ``key``: the binary images are both the encoder's input and the
    BCE's target. The CVAE's decoder also reads batch["label"] (B,). Metrics: bce, kl,
    kld_weight.
    """
    encoder, decoder = modules
    images = batch["image"]
    if config.binarize:  # off, ``key`` goes to the reparametrisation untouched
        key, binarize_key = jax.random.split(key)
        images = binarized.dynamic_binarize(binarize_key, images)
    out, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), images)
    mu, log_var = split_moments(out)
    z = reparametrize(key, mu, log_var)
    label_kwargs = {"labels": batch["label"]} if config.num_classes else {}
    logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), z, **label_kwargs)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
    kl = jnp.mean(losses.gaussian_kl_to_standard_normal(mu, log_var))
    weight = kld_weight_at(config, step)
    loss = config.reconstruction_weight * bce + weight * kl
    return LossOutput(loss, {"encoder": encoder_stats, "decoder": decoder_stats},
                      {"bce": bce, "kl": kl, "kld_weight": weight})


def make_model(config: VAEConfig) -> Model:
    """One phase (Adam on encoder and decoder); ``encode`` gives mu, ``posterior`` (mu, log_var)."""
    modules = make_modules(config)
    functions = encoder_decoder_functions(modules, config.latent_dim)

    def posterior(params, batch_stats, images, labels=None, train=False):
        del labels  # the lecture's CVAE conditions only the decoder
        return split_moments(apply_inference(modules.encoder, module_variables(params, batch_stats, "encoder"),
                                             images, train))

    def encode(params, batch_stats, images, labels=None, train=False):
        return posterior(params, batch_stats, images, labels, train)[0]

    phase = Phase("vae", functools.partial(vae_loss, config, modules),
                  torch_adam(config.learning_rate, config.weight_decay), ("encoder", "decoder"))
    return Model(init=functions.init, phases=(phase,), encode=encode, decode=functions.decode, posterior=posterior)
