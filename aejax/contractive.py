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

from aejax import autoencoder, flags, losses
from aejax import data as data_lib
from aejax.inference import map_over_split
from aejax.model import (Batch, BatchStats, EncoderDecoder, LossOutput, Model, Params, Phase, encoder_decoder_functions,
                         module_variables)
from aejax.modules import BatchNorm, apply_training
from aejax.optimizers import torch_adam

EncodeFn = Callable[[jax.Array], jax.Array]  # images (B, H, W, C) -> codes (B, D), each code from its own image


@dataclasses.dataclass(frozen=True)
class ContractiveConfig(autoencoder.AEConfig):
    """The conv autoencoder's settings (``AEConfig``: denoising and sparsity included) plus the
    contraction penalty; the defaults are the lecture's conv AE with lambda 1e-3."""

    # What counts is ||J||_F relative to the codes' spread: the penalty can also be lowered
    # by shrinking the code, which the decoder scales back up; 1e-3 lowers that ratio most.
    contraction_weight: float = flags.field(1e-3, "weight lambda of the contraction penalty ||dh/dx||_F^2 "
                                                  "(>= 0; 0: plain AE)")
    # A single Gaussian projection gives an unbiased, if noisy, gradient (as Hoffman et al.
    # 2019 found enough for Jacobian regularisation) at about half a plain step's cost on a
    # CPU; the exact penalty costs one product per code unit.
    jacobian_projections: int = flags.field(1, "0: the exact penalty (one vector-Jacobian product per code unit); "
                                               "K > 0: Hutchinson's estimate from K random Gaussian projections")

    def __post_init__(self):
        super().__post_init__()
        if self.contraction_weight < 0:
            raise ValueError(f"contraction_weight must be >= 0, got {self.contraction_weight}")
        if self.jacobian_projections < 0:
            raise ValueError(f"jacobian_projections must be >= 0, got {self.jacobian_projections}")


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
    """The encoder in train mode on images (B, H, W, C), and the statistics it normalised by.

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
    """images (B, H, W, C) -> codes (B, D), every BatchNorm normalising by the given ``statistics``.

    Eval mode with the batch's statistics (``batch_statistics``) in place of the running
    ones reproduces the train-mode codes of that batch, but each code now depends on its
    own image alone: the Jacobian of one sample treats the batch's statistics as
    constants. They remain functions of the parameters, so a loss's gradient still
    flows through them, as through the train-mode forward pass.
    """
    return lambda images: encoder.apply({"params": params, "batch_stats": statistics}, images, False)


def contractive_loss(config: ContractiveConfig, modules: EncoderDecoder, params: Params, batch_stats: BatchStats,
                     batch: Batch, key: jax.Array, step: jax.Array) -> LossOutput:
    """``autoencoder.autoencoder_loss`` + lambda * ``contractive_penalty`` of the train-mode encoder.

    batch["image"] (B, H, W, C) in [0, 1]; with ``input_noise_std`` the encoder reads
    (and the penalty is taken at) the noisy images, the targets stay clean. The penalty's Jacobian is taken with the
    batch's BatchNorm statistics held fixed (``encode_with_statistics``): in train mode a
    sample's code also moves with the other images through the statistics, an effect of
    order 1/B that is no part of the code's sensitivity to its own image. ``key`` draws
    the projections of the estimated penalty (and the noise, from a key split off it).
    Metrics: bce, sparsity (with a sparsity penalty), and contraction (the penalty
    before lambda) when lambda > 0.
    """
    del step  # no schedule
    encoder, decoder = modules
    clean = inputs = batch["image"]
    if config.input_noise_std:  # off, ``key`` draws the projections untouched
        key, noise_key = jax.random.split(key)
        inputs = data_lib.add_gaussian_noise(noise_key, clean, config.input_noise_std)
    latents, encoder_stats, statistics = batch_statistics(
        encoder, module_variables(params, batch_stats, "encoder"), inputs)
    logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), latents)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, clean))
    metrics = {"bce": bce}
    loss = bce
    if config.sparsity != "none":
        penalty = autoencoder.sparsity_penalty(config, latents)
        loss = loss + config.sparsity_weight * penalty
        metrics["sparsity"] = penalty
    if config.contraction_weight:
        penalty = contractive_penalty(encode_with_statistics(encoder, params["encoder"], statistics), inputs,
                                      key, config.jacobian_projections)
        loss = loss + config.contraction_weight * penalty
        metrics["contraction"] = penalty
    return LossOutput(loss, {"encoder": encoder_stats, "decoder": decoder_stats}, metrics)


def make_model(config: ContractiveConfig) -> Model:
    """The conv autoencoder's modules, init, encode and decode with ``contractive_loss`` as its one phase."""
    modules = autoencoder.make_modules(config)
    functions = encoder_decoder_functions(modules, config.latent_dim)
    phase = Phase("autoencoder", functools.partial(contractive_loss, config, modules),
                  torch_adam(config.learning_rate, config.weight_decay), ("encoder", "decoder"))
    return Model(init=functions.init, phases=(phase,), encode=functions.encode, decode=functions.decode)


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
