"""Disentangling style from label (section 9) as a variant: three phases, three optimizers.

The encoder (the lecture's conv encoder with ``num_classes + latent_dim`` outputs) gives
label logits and a style code z; the decoder (the conditional one) reads
``concat(z, softmax(label logits))``. A small MLP, the label adversary, tries to predict
the label from z alone; the encoder is penalised when it succeeds. One step:

1. ``autoencoder`` (encoder + decoder): mean-over-values BCE + ``label_weight`` * cross-
   entropy of the label logits with the true label;
2. ``confusion`` (encoder only): ``confusion_weight`` * cross-entropy between the uniform
   distribution and the adversary's prediction from z, smallest when the adversary is
   reduced to guessing (the domain-confusion loss; stabler than maximising its error);
   the adversary reads z standardised over the batch (``label_style.standardize``), so
   shrinking or shifting z cannot fool it;
3. ``label_adversary`` (the adversary): cross-entropy of its prediction from the codes
   of phase 2 (gradient stopped) with the true label.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from aejax import flags, losses
from aejax.label_style import (ClassStandardize, class_mean_share, label_dependence, label_style_functions,
                               split_label_style, standardize, uniform_cross_entropy)
from aejax.modules import (IMAGE_SHAPE, IMAGE_SHAPE_HELP, MLP, Decoder, Encoder, ImageShape, apply_inference,
                           apply_training, check_image_shape, init_encoder_decoder)
from aejax.optimizers import torch_adam
from aejax.model import Batch, BatchStats, LossOutput, Model, Params, Phase, module_variables, reparametrize, split_moments

DecoderLabel = Literal["predicted", "true"]
StyleNormalization = Literal["none", "class"]


@dataclasses.dataclass(frozen=True)
class DisentangledConfig:
    latent_dim: int = flags.field(8, "style dimension")
    num_classes: int = flags.field(10, "label classes: the label head's outputs and the decoder's label input", cli=False)
    learning_rate: float = flags.field(1e-3, "Adam rate of the autoencoder and confusion phases")
    adversary_learning_rate: float = flags.field(1e-3, "Adam rate of the label adversary")
    weight_decay: float = flags.field(1e-6, "PyTorch-style coupled L2 of every optimizer")
    label_weight: float = flags.field(1.0, "weight of the label head's cross-entropy in the autoencoder loss")
    confusion_weight: float = flags.field(0.1, "weight of the confusion loss (uniform cross-entropy of the adversary)")
    adversary_hidden: tuple[int, ...] = flags.field((256, 256), "hidden widths of the label adversary's MLP", cli=False)
    # the bottleneck then drops what the decoder already gets from the label
    style_kl_weight: float = flags.field(0.0, "> 0: a Gaussian style (mu, log_var), sampled in training, with this "
                                         "weight times its KL to N(0, I) per image; 0: a deterministic style")
    # "true" as Makhzani et al.'s supervised AAE: z never has to stand in for a label the head got wrong
    decoder_label: DecoderLabel = flags.field("predicted", "what the decoder reads in training: the label head's softmax "
                                                      "(the lecture) or the true label")
    # a closed-form linear adversary that the encoder cannot dodge by moving the label information around
    class_mean_weight: float = flags.field(0.0, "weight of the share of the style's variance explained by the class "
                                           "means, added to the confusion loss")
    kernel_dependence_weight: float = flags.field(0.0, "weight of the style's kernel dependence (CKA) on the labels, "
                                                  "added to the confusion loss")
    # "class" removes the linear leak by construction rather than penalising it
    style_normalization: StyleNormalization = flags.field(
        "none", "'class': the style standardised per class (true labels in training, the label head's in eval); "
                "'none': the lecture's style")
    image_shape: ImageShape = flags.field(IMAGE_SHAPE, IMAGE_SHAPE_HELP, cli=False)

    def __post_init__(self):
        object.__setattr__(self, "image_shape", check_image_shape(self.image_shape))  # a list becomes a tuple
        if self.latent_dim <= 0 or self.num_classes <= 1:
            raise ValueError(f"need latent_dim > 0 and num_classes > 1, got {self.latent_dim} and {self.num_classes}")
        if min(self.learning_rate, self.adversary_learning_rate) <= 0 or min(
                self.weight_decay, self.label_weight, self.confusion_weight, self.style_kl_weight,
                self.class_mean_weight, self.kernel_dependence_weight) < 0:
            raise ValueError("learning rates must be > 0; weight_decay and the loss weights >= 0")
        if self.decoder_label not in ("predicted", "true"):
            raise ValueError(f"decoder_label must be 'predicted' or 'true', got {self.decoder_label!r}")
        if self.style_normalization not in ("none", "class"):
            raise ValueError(f"style_normalization must be 'none' or 'class', got {self.style_normalization!r}")
        if self.style_normalization == "class" and self.style_kl_weight:
            raise ValueError("style_normalization='class' needs a deterministic style (style_kl_weight=0)")


class DisentangledModules(NamedTuple):
    encoder: Encoder
    decoder: Decoder
    adversary: MLP


def make_modules(config: DisentangledConfig) -> DisentangledModules:
    style_outputs = config.latent_dim * (2 if config.style_kl_weight else 1)
    return DisentangledModules(Encoder(config.num_classes + style_outputs, image_shape=config.image_shape),
                               Decoder(num_classes=config.num_classes, latent_dim=config.latent_dim,
                                       image_shape=config.image_shape),
                               MLP((*config.adversary_hidden, config.num_classes)))


@dataclasses.dataclass(frozen=True, eq=False)
class DisentangledParts:
    """What the model's functions read besides the training state: the config, the three
    networks and (``style_normalization="class"`` only) the style's ``ClassStandardize``."""

    config: DisentangledConfig
    modules: DisentangledModules
    normalizer: ClassStandardize | None = None


def make_parts(config: DisentangledConfig) -> DisentangledParts:
    normalizer = ClassStandardize(config.num_classes) if config.style_normalization == "class" else None
    return DisentangledParts(config, make_modules(config), normalizer)


def init(parts: DisentangledParts, key: jax.Array) -> tuple[Params, BatchStats]:
    """params and batch_stats of encoder, decoder, label_adversary (and style_norm)."""
    config, (encoder, decoder, adversary) = parts.config, parts.modules
    key, adversary_key = jax.random.split(key)
    params, batch_stats = init_encoder_decoder(key, encoder, decoder, config.latent_dim)
    params["label_adversary"] = adversary.init(adversary_key, jnp.zeros((1, config.latent_dim)))["params"]
    batch_stats["label_adversary"] = {}
    if parts.normalizer:
        variables = parts.normalizer.init(key, jnp.zeros((1, config.latent_dim)), False, labels=jnp.zeros((1,), jnp.int32))
        params["style_norm"], batch_stats["style_norm"] = variables["params"], variables["batch_stats"]
    return params, batch_stats


def style_moments(config: DisentangledConfig, style: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """(mu, log_var), each (B, latent_dim), of a variational style (B, 2 latent_dim); (style, None) of a deterministic one."""
    return split_moments(style) if config.style_kl_weight else (style, None)


def encoder_outputs(parts: DisentangledParts, params: Params, batch_stats: BatchStats, batch: Batch,
                    ) -> tuple[jax.Array, jax.Array, jax.Array | None, BatchStats]:
    """Train mode: label logits (B, num_classes), style mu and log_var (B, latent_dim; log_var None
    for a deterministic style, mu class-standardised under ``style_normalization="class"``), the
    updated statistics."""
    out, encoder_stats = apply_training(parts.modules.encoder, module_variables(params, batch_stats, "encoder"),
                                        batch["image"])
    label_logits, style = split_label_style(out, parts.config.num_classes)
    mu, log_var = style_moments(parts.config, style)
    stats = {**batch_stats, "encoder": encoder_stats}
    if parts.normalizer:
        mu, stats["style_norm"] = apply_training(parts.normalizer, module_variables(params, batch_stats, "style_norm"),
                                                 mu, labels=batch["label"])
    return label_logits, mu, log_var, stats


def autoencoder_loss(parts: DisentangledParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                     step: jax.Array) -> LossOutput:
    """BCE of the reconstructions of batch["image"] (B, H, W, C) + ``label_weight`` * the label
    head's cross-entropy with batch["label"] (B,) (+ ``style_kl_weight`` * the style's KL).
   """
    del step
    config = parts.config
    images = batch["image"]
    label_logits, mu, log_var, stats = encoder_outputs(parts, params, batch_stats, batch)
    z = mu if log_var is None else reparametrize(key, mu, log_var)
    labels = jax.nn.softmax(label_logits) if config.decoder_label == "predicted" else batch["label"]
    logits, decoder_stats = apply_training(parts.modules.decoder, module_variables(params, batch_stats, "decoder"), z,
                                           labels=labels)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
    label_ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(label_logits, batch["label"]))
    metrics = {"bce": bce, "label_ce": label_ce, "label_accuracy": jnp.mean(jnp.argmax(label_logits, -1) == batch["label"])}
    loss = bce + config.label_weight * label_ce
    if log_var is not None:
        metrics["style_kl"] = jnp.mean(losses.gaussian_kl_to_standard_normal(mu, log_var))
        loss = loss + config.style_kl_weight * metrics["style_kl"]
    return LossOutput(loss, {**stats, "decoder": decoder_stats}, metrics)


def confusion_loss(parts: DisentangledParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                   step: jax.Array) -> LossOutput:
    """``confusion_weight`` * the uniform cross-entropy of the adversary's prediction from the
    standardised style of batch["image"] (B, H, W, C), plus the class-mean and kernel-dependence
    terms when weighted. The style (B, latent_dim) is carried to the adversary's phase.
   """
    del key, step
    config = parts.config
    _, z, _, stats = encoder_outputs(parts, params, batch_stats, batch)  # z: the style (mean)
    # the running statistics move once per step, in the autoencoder phase
    stats = {**stats, "style_norm": batch_stats["style_norm"]} if parts.normalizer else stats
    predicted = parts.modules.adversary.apply({"params": params["label_adversary"]}, standardize(z))
    loss = config.confusion_weight * jnp.mean(uniform_cross_entropy(predicted))
    share = class_mean_share(z, batch["label"], config.num_classes)
    if config.class_mean_weight:
        loss = loss + config.class_mean_weight * share
    metrics = {"class_mean_share": share}
    if config.kernel_dependence_weight:
        metrics["label_dependence"] = label_dependence(z, batch["label"], config.num_classes)
        loss = loss + config.kernel_dependence_weight * metrics["label_dependence"]
    return LossOutput(loss, stats, metrics, {"style": z})


def adversary_loss(parts: DisentangledParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                   step: jax.Array) -> LossOutput:
    """Cross-entropy of the adversary's prediction from the standardised batch["style"] (B, latent_dim)
    with batch["label"] (B,)."""
    del key, step
    predicted = parts.modules.adversary.apply({"params": params["label_adversary"]}, standardize(batch["style"]))
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(predicted, batch["label"]))
    return LossOutput(loss, batch_stats, {"accuracy": jnp.mean(jnp.argmax(predicted, -1) == batch["label"])})


def encode_class_standardized(parts: DisentangledParts, params: Params, batch_stats: BatchStats, images: jax.Array,
                              labels: jax.Array | None = None, train: bool = False) -> jax.Array:
    """The class-standardised style (B, latent_dim) of images (B, H, W, C), with the label head's
    classes (one encoder pass): ``labels`` are ignored, so the style stays a function of the image alone."""
    del labels
    encoder = parts.modules.encoder
    out = apply_inference(encoder, module_variables(params, batch_stats, "encoder"), images, train)
    label_logits, style = split_label_style(out, parts.config.num_classes)
    return apply_inference(parts.normalizer, module_variables(params, batch_stats, "style_norm"), style, train,
                           labels=jnp.argmax(label_logits, axis=-1))


def make_model(config: DisentangledConfig) -> Model:
    """``encode`` gives the style z (B, latent_dim); ``decode(z, labels)`` takes integer labels
    (B,) or label probabilities (B, num_classes); ``classify`` gives the label logits."""
    parts = make_parts(config)
    encoder, decoder, _ = parts.modules
    classify, encode, decode = label_style_functions(encoder, decoder, config.num_classes,
                                                     lambda style: style_moments(config, style)[0])
    if parts.normalizer:
        encode = functools.partial(encode_class_standardized, parts)
    optimizer = torch_adam(config.learning_rate, config.weight_decay)
    phases = (
        Phase("autoencoder", functools.partial(autoencoder_loss, parts), optimizer,
              ("encoder", "decoder") + (("style_norm",) if parts.normalizer else ())),
        Phase("confusion", functools.partial(confusion_loss, parts), optimizer, ("encoder",)),
        Phase("label_adversary", functools.partial(adversary_loss, parts),
              torch_adam(config.adversary_learning_rate, config.weight_decay), ("label_adversary",)),
    )
    return Model(init=functools.partial(init, parts), phases=phases, encode=encode, decode=decode, classify=classify)
