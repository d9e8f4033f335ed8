"""The contractive autoencoder (Rifai et al., 2011) as a variant: a config and a loss.

The lecture's conv autoencoder (BCE on logits, Adam) plus ``lambda * ||dh/dx||_F^2``,
the squared Frobenius norm of the encoder's Jacobian at each training image, averaged
over the batch: codes that change little when an image moves a little in any
direction, except where the reconstruction needs them to.

The encoder normalises with the batch's statistics in train mode, which makes each
sample's code depend on every image of the batch. The penalty differentiates each
code only with respect to its own image, with the batch's statistics held as they are
(``batch_statistics``, ``encode_with_statistics``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aejax import data as data_lib
from aejax import flags, losses
from aejax.conv_kernels import (CONV_IMPL_HELP, CONV_TRANSPOSE_IMPL_HELP, ConvImpl, ConvTransposeImpl,
                                resolve_conv_impl, resolve_conv_transpose_impl)
from aejax.modules import BatchNorm, Decoder, Encoder, apply_inference, apply_training, init_encoder_decoder
from aejax.optimizers import torch_adam
from aejax.train import Batch, BatchStats, Metrics, Model, Params, Phase, map_over_split, module_variables

EncodeFn = Callable[[jax.Array], jax.Array]  # images (B, 28, 28, 1) -> codes (B, D), each code from its own image


@dataclasses.dataclass(frozen=True)
class ContractiveConfig:
    """The contractive autoencoder's settings; the optimiser is the lecture's conv AE's."""

    latent_dim: int = dataclasses.field(default=24, metadata={"help": "size D of the code h (> 0)"})
    learning_rate: float = dataclasses.field(default=1e-4, metadata={"help": "Adam learning rate (> 0)"})
    weight_decay: float = dataclasses.field(
        default=0.0, metadata={"help": "PyTorch-style coupled L2 weight decay of Adam (>= 0)"})
    # The BCE is a mean over pixels (about 0.2 per pixel early on) while the encoder's
    # ||J||_F^2 starts in the hundreds. The penalty can also be lowered by merely shrinking
    # the code (the decoder scales it back up), so what counts is ||J||_F over the codes' std:
    # after 128 steps on MNIST (latent 24) it was 16.8 at lambda 0, 9.3 at 1e-3 (best
    # denoising PSNR too), 13.8 at 1e-2 and 18.5 at 1e-1, where shrinking takes over.
    contraction_weight: float = dataclasses.field(
        default=1e-3, metadata={"help": "weight lambda of the contraction penalty ||dh/dx||_F^2 (>= 0; 0: plain AE)"})
    # One projection adds about half a plain AE step on a CPU; the exact penalty (24
    # products at latent 24) makes a step about 5x a plain one (batch 64), cheap only on
    # an accelerator. A single Gaussian projection gives an unbiased, if noisy, gradient
    # (as Hoffman et al. 2019 found enough for Jacobian regularisation).
    jacobian_projections: int = dataclasses.field(
        default=1, metadata={"help": "0: the exact penalty (one vector-Jacobian product per code unit); "
                                     "K > 0: Hutchinson's estimate from K random Gaussian projections"})
    conv_impl: ConvImpl = flags.field("auto", CONV_IMPL_HELP)
    conv_transpose_impl: ConvTransposeImpl = flags.field("auto", CONV_TRANSPOSE_IMPL_HELP)

    def __post_init__(self):
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be > 0 and weight_decay >= 0")
        if self.contraction_weight < 0:
            raise ValueError(f"contraction_weight must be >= 0, got {self.contraction_weight}")
        if self.jacobian_projections < 0:
            raise ValueError(f"jacobian_projections must be >= 0, got {self.jacobian_projections}")
        resolve_conv_impl(self.conv_impl)  # each raises on an unknown name
        resolve_conv_transpose_impl(self.conv_transpose_impl)


def jacobian_norms_squared(encode: EncodeFn, inputs: jax.Array, key: jax.Array | None = None,
                           projections: int = 0) -> jax.Array:
    """||d encode(x)_i / d x_i||_F^2 for each sample: inputs (B, ...) -> (B,).

    ``encode`` must compute each code from its own input alone (eval mode, or
    ``encode_with_statistics``): one vector-Jacobian product of the batch then gives
    every sample's J_i^T u_i at once. ``projections=0``: exact, the sum over the D unit
    vectors u = e_k (D products). ``projections=K``: Hutchinson's unbiased estimate
    ``mean_k ||J_i^T v_k||^2`` with v_k ~ N(0, I_D) drawn from ``key`` (E ||J^T v||^2 =
    tr(J J^T) = ||J||_F^2), K products.
    """
    codes, vjp = jax.vjp(encode, inputs)
    count, width = codes.shape
    if projections == 0:
        cotangents = jnp.broadcast_to(jnp.eye(width, dtype=codes.dtype)[:, None, :], (width, count, width))
    else:
        if key is None:
            raise ValueError("the projected estimate needs a PRNG key")
        cotangents = jax.random.normal(key, (projections, count, width), codes.dtype)
    (rows,) = jax.vmap(vjp)(cotangents)  # (K, B, ...): J_i^T u for each cotangent
    squares = jnp.sum(jnp.square(rows).reshape(rows.shape[0], count, -1), axis=-1)  # (K, B)
    return jnp.sum(squares, axis=0) if projections == 0 else jnp.mean(squares, axis=0)


def contractive_penalty(encode: EncodeFn, inputs: jax.Array, key: jax.Array | None = None,
                        projections: int = 0) -> jax.Array:
    """The contraction penalty: ``||dh_i/dx_i||_F^2`` averaged over the batch, a scalar.

    inputs (B, ...); ``encode``, ``key`` and ``projections`` as in ``jacobian_norms_squared``.
    """
    return jnp.mean(jacobian_norms_squared(encode, inputs, key, projections))


def batch_statistics(encoder: nn.Module, variables: Mapping[str, Any], images: jax.Array,
                     ) -> tuple[jax.Array, BatchStats, BatchStats]:
    """The encoder in train mode on images (B, 28, 28, 1), and the statistics it normalised by.

    Returns (codes (B, D), the updated running statistics (as ``apply_training``), the
    batch's own statistics: each BatchNorm's mean and biased variance over the batch, in
    the layout of the module's ``batch_stats``).
    """
    captured: dict[tuple[str, ...], jax.Array] = {}

    def capture(call, args, kwargs, context):
        module = context.module
        if isinstance(module, BatchNorm) and context.method_name == "__call__":
            x, train = args[0], (args[1] if len(args) > 1 else kwargs["train"])
            if train:  # what BatchNorm's train mode normalises by
                axes = tuple(range(x.ndim - 1))
                mean = jnp.mean(x, axis=axes)
                captured[(*module.path, "mean")] = mean
                captured[(*module.path, "var")] = jnp.mean(jnp.square(x - mean), axis=axes)
        return call(*args, **kwargs)

    with nn.intercept_methods(capture):
        codes, running = apply_training(encoder, variables, images)
    return codes, running, traverse_util.unflatten_dict(captured)


def encode_with_statistics(encoder: nn.Module, params: Params, statistics: BatchStats) -> EncodeFn:
    """images (B, 28, 28, 1) -> codes (B, D), every BatchNorm normalising by the given ``statistics``.

    Eval mode with the batch's statistics (``batch_statistics``) in place of the running
    ones reproduces the train-mode codes of that batch, but each code now depends on its
    own image alone: the Jacobian of one sample treats the batch's statistics as
    constants. They remain functions of the parameters, so a loss's gradient still
    flows through them, as through the train-mode forward pass.
    """
    return lambda images: encoder.apply({"params": params, "batch_stats": statistics}, images, False)


def contractive_loss(config: ContractiveConfig, encoder: Encoder, decoder: Decoder, params: Params,
                     batch_stats: BatchStats, batch: Batch, key: jax.Array, step: jax.Array | None = None,
                     ) -> tuple[jax.Array, tuple[BatchStats, Metrics]]:
    """Mean-over-pixels BCE on logits + lambda * ``contractive_penalty`` of the train-mode encoder.

    batch["image"] (B, 28, 28, 1) in [0, 1]. The penalty's Jacobian is taken with the
    batch's BatchNorm statistics held fixed (``encode_with_statistics``): in train mode a
    sample's code also moves with the other images through the statistics, an effect of
    order 1/B that is no part of the code's sensitivity to its own image. ``key`` draws
    the projections of the estimated penalty. Metrics: bce, and contraction (the
    penalty before lambda) when lambda > 0.
    """
    del step  # no schedule
    images = batch["image"]
    latents, encoder_stats, statistics = batch_statistics(
        encoder, module_variables(params, batch_stats, "encoder"), images)
    logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), latents)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
    metrics = {"bce": bce}
    loss = bce
    if config.contraction_weight:
        penalty = contractive_penalty(encode_with_statistics(encoder, params["encoder"], statistics), images,
                                      key, config.jacobian_projections)
        loss = loss + config.contraction_weight * penalty
        metrics["contraction"] = penalty
    return loss, ({"encoder": encoder_stats, "decoder": decoder_stats}, metrics)


def make_model(config: ContractiveConfig) -> Model:
    """The variant as the generic loop sees it: one phase updating encoder and decoder."""
    encoder = Encoder(config.latent_dim, conv_impl=config.conv_impl)
    decoder = Decoder(conv_impl=config.conv_impl, conv_transpose_impl=config.conv_transpose_impl,
                      latent_dim=config.latent_dim)

    def init(key):
        return init_encoder_decoder(key, encoder, decoder, config.latent_dim)

    def encode(params, batch_stats, images, labels=None, train=False):
        del labels  # unconditional
        return apply_inference(encoder, module_variables(params, batch_stats, "encoder"), images, train)

    def decode(params, batch_stats, latents, labels=None, train=False):
        del labels
        return apply_inference(decoder, module_variables(params, batch_stats, "decoder"), latents, train)

    phase = Phase("autoencoder", functools.partial(contractive_loss, config, encoder, decoder),
                  torch_adam(config.learning_rate, config.weight_decay), ("encoder", "decoder"))
    return Model(init=init, phases=(phase,), encode=encode, decode=decode)


@functools.partial(jax.jit, static_argnames=("model",))
def _eval_norms_squared(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                        indices: jax.Array) -> jax.Array:
    images = data_lib.gather_batch(dataset, indices)["image"]
    return jacobian_norms_squared(lambda x: model.encode(params, batch_stats, x, None), images)


def jacobian_frobenius_norms(model: Model, params: Params, batch_stats: BatchStats,
                             dataset: Mapping[str, jax.Array], batch_size: int = 500) -> np.ndarray:
    """The exact ||dh/dx||_F of the eval-mode encoder at every image of a split: (N,) numpy.

    ``dataset`` as ``evaluation.evaluate``'s ({"image", "label"}); eval mode normalises
    by the running statistics, so each code depends on its own image and the batch
    size changes nothing but speed. Compiled once per model and batch shape.
    """
    dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
    (squares,) = map_over_split(
        lambda _, indices: (_eval_norms_squared(model, params, batch_stats, dataset, indices),), dataset, batch_size)
    return np.sqrt(squares)
