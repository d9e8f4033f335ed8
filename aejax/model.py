"""The variant contract: what a model variant gives the generic training loop.

A variant is a config plus named loss functions over shared modules. Every loss has
one signature, ``loss(params, batch_stats, batch, key, step) -> LossOutput`` (a
variant binds its config and networks first, with ``functools.partial``), and a
training step is a tuple of ``Phase``s, each a loss, an optax optimizer and the
top-level modules it updates. ``Model`` adds initialisation and eval-mode
``encode`` / ``decode``; ``encoder_decoder_functions`` builds those three for any
encoder and decoder pair.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from aejax.modules import apply_inference, init_encoder_decoder

Params = Mapping[str, Any]  # {module name: flax params}
BatchStats = Mapping[str, Any]  # {module name: flax batch_stats}
Batch = Mapping[str, jax.Array]  # what a gather function returns, e.g. {"image": (B, H, W, C), "label": (B,)}
Metrics = dict[str, jax.Array]


class LossOutput(NamedTuple):
    """What a loss function returns; the loop reads it by name.

    ``loss``: the scalar the phase's optimizer minimises. ``batch_stats``: every module's
    BatchNorm statistics, updated where the loss ran a module in train mode. ``metrics``:
    scalars logged per step. ``carry``: arrays (gradient stopped) that join the batch of
    the step's later phases, e.g. the codes an AAE's discriminator judges; None: nothing.
    """

    loss: jax.Array
    batch_stats: BatchStats
    metrics: Metrics
    carry: Mapping[str, jax.Array] | None = None


# loss(params, batch_stats, batch, key, step) -> LossOutput; ``step`` (int32 scalar: the steps
# done before this one) serves schedules such as a KL warm-up.
LossFn = Callable[[Params, BatchStats, Batch, jax.Array, jax.Array], LossOutput]
# encode(params, batch_stats, images, labels, train) -> latents;
# decode(params, batch_stats, latents, labels, train) -> logits. ``train=True`` normalises
# with the batch's statistics (as a PyTorch module left in train mode) without updating any.
EncodeFn = Callable[..., jax.Array]
DecodeFn = Callable[..., jax.Array]
InitFn = Callable[[jax.Array], tuple[Params, BatchStats]]


class Phase(NamedTuple):
    """One optimisation phase of a training step.

    ``trainable`` names the top-level entries of ``params`` this phase's optimizer
    updates; the loss may read every module, but gradients flow only to these.
    ``value_metric`` names a metric of the loss passed to the optimizer as ``value=``
    (for ``optax.contrib.reduce_on_plateau``).
    """

    name: str
    loss_fn: LossFn
    optimizer: optax.GradientTransformation
    trainable: tuple[str, ...]
    value_metric: str | None = None


class Model(NamedTuple):
    """What a variant gives the generic loop.

    init(key) -> (params, batch_stats);
    encode(params, batch_stats, images (B, H, W, C), labels (B,), train=False) -> latents (B, D);
    decode(params, batch_stats, latents (B, D), labels (B,), train=False) -> logits (B, H, W, C);
    posterior (stochastic encoders only): the same arguments as encode -> (mu, log_var),
    each (B, D), of the Gaussian q(z | x); ``encode`` then returns mu.
    classify (models with a label head): (params, batch_stats, images, train=False) -> label logits (B, C).
    """

    init: InitFn
    phases: tuple[Phase, ...]
    encode: EncodeFn
    decode: DecodeFn
    posterior: Callable[..., tuple[jax.Array, jax.Array]] | None = None
    classify: Callable[..., jax.Array] | None = None


def module_variables(params: Params, batch_stats: BatchStats, name: str) -> dict[str, Any]:
    """The flax variables of one top-level module: {"params": ..., "batch_stats": ...}."""
    return {"params": params[name], "batch_stats": batch_stats[name]}


class EncoderDecoder(NamedTuple):
    """An encoder and a decoder network, the top-level modules "encoder" and "decoder"."""

    encoder: nn.Module
    decoder: nn.Module


class EncoderDecoderFunctions(NamedTuple):
    """``Model``'s init, encode and decode for an ``EncoderDecoder``."""

    init: InitFn
    encode: EncodeFn
    decode: DecodeFn


def encoder_decoder_functions(modules: EncoderDecoder, latent_dim: int) -> EncoderDecoderFunctions:
    """init(key) of both networks for images of the encoder's ``image_shape`` and (B, latent_dim) codes; eval-mode
    encode (images (B, H, W, C) -> codes) and decode (codes -> logits (B, H, W, C)).

    The decoder reads ``labels`` (B,) when it is conditional (``num_classes`` > 0); the
    encoder never does.
    """
    encoder, decoder = modules
    conditional = bool(getattr(decoder, "num_classes", 0))

    def init(key: jax.Array) -> tuple[Params, BatchStats]:
        return init_encoder_decoder(key, encoder, decoder, latent_dim)

    def encode(params, batch_stats, images, labels=None, train=False):
        del labels  # the encoders of these variants read images alone
        return apply_inference(encoder, module_variables(params, batch_stats, "encoder"), images, train)

    def decode(params, batch_stats, latents, labels=None, train=False):
        label_kwargs = {"labels": labels} if conditional else {}
        return apply_inference(decoder, module_variables(params, batch_stats, "decoder"), latents, train,
                               **label_kwargs)

    return EncoderDecoderFunctions(init, encode, decode)


def split_moments(encoder_output: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A Gaussian encoder's output (B, 2D) -> mu (B, D), log_var (B, D): the first half and the second half."""
    if encoder_output.ndim != 2 or encoder_output.shape[-1] % 2:
        raise ValueError(f"encoder output must be (B, 2D) with an even last axis, got {encoder_output.shape}")
    mu, log_var = jnp.split(encoder_output, 2, axis=-1)
    return mu, log_var


def reparametrize(key: jax.Array, mu: jax.Array, log_var: jax.Array) -> jax.Array:
    """z = mu + exp(log_var / 2) * eps, eps ~ N(0, I) drawn from ``key``; same key, same z. Shapes (B, D)."""
    return mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape, mu.dtype)
