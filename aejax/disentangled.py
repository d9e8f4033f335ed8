"""Disentangling style from label (section 9) as a variant: three phases, three optimizers.

The encoder (the lecture's conv encoder with ``num_classes + latent_dim`` outputs) gives
label logits and a style code z; the decoder (the conditional one) reads
``concat(z, softmax(label logits))``. A small MLP, the label adversary, tries to predict
the label from z alone; the encoder is penalised when it succeeds. One step:

1. ``autoencoder`` (encoder + decoder): mean-over-pixels BCE + ``label_weight`` * cross-
   entropy of the label logits with the true label;
2. ``confusion`` (encoder only): ``confusion_weight`` * cross-entropy between the uniform
   distribution and the adversary's prediction from z, smallest when the adversary is
   reduced to guessing (the domain-confusion loss; stabler than maximising its error);
   the adversary reads z standardised over the batch (``standardize``), so shrinking or
   shifting z cannot fool it;
3. ``label_adversary`` (the adversary): cross-entropy of its prediction from the codes
   of phase 2 (gradient stopped) with the true label.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from aejax import losses, vae
from aejax.modules import MLP, Decoder, Encoder, apply_inference, apply_training, init_encoder_decoder
from aejax.train import Model, Phase, module_variables
from aejax.optimizers import torch_adam


def split_label_style(encoder_output: jax.Array, num_classes: int) -> tuple[jax.Array, jax.Array]:
    """(B, num_classes + D) -> label logits (B, num_classes), style z (B, D)."""
    if encoder_output.ndim != 2 or encoder_output.shape[1] <= num_classes:
        raise ValueError(f"encoder output must be (B, {num_classes} + D) with D > 0, got {encoder_output.shape}")
    return encoder_output[:, :num_classes], encoder_output[:, num_classes:]


def standardize(z: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Each column of z (B, D) shifted and scaled to mean 0, variance 1 over the batch.

    The adversary reads standardised codes, as a fresh probe would: otherwise the encoder
    escapes it by shrinking and shifting z, which hides nothing from a new probe.
    """
    return (z - jnp.mean(z, axis=0)) * jax.lax.rsqrt(jnp.var(z, axis=0) + eps)


def class_mean_share(z: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """Share of the variance of z (B, D) explained by the class means of integer ``labels`` (B,).

    sum_c (n_c / B) |mean(z | c) - mean(z)|^2 / sum_d var(z_d): 0 when every class has the
    same mean (no linearly readable label), 1 when z is constant within each class.
    """
    centred = z - jnp.mean(z, axis=0)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=z.dtype)  # (B, C)
    counts = jnp.sum(one_hot, axis=0)
    means = (one_hot.T @ centred) / jnp.maximum(counts, 1.0)[:, None]  # (C, D)
    between = jnp.sum(counts[:, None] * jnp.square(means)) / z.shape[0]
    return between / (jnp.sum(jnp.var(z, axis=0)) + 1e-8)


KERNEL_BANDWIDTHS = (0.25, 0.5, 1.0)  # of the standardised style, per coordinate


def label_dependence(z: jax.Array, labels: jax.Array, num_classes: int,
                     bandwidths: tuple[float, ...] = KERNEL_BANDWIDTHS) -> jax.Array:
    """Kernel dependence of the style z (B, D) on integer ``labels`` (B,): CKA in [0, 1].

    Centred kernel alignment of a Gaussian kernel on the standardised z (the sum of one
    per bandwidth; squared distances divided by D) with the same-label kernel. Unlike
    ``class_mean_share`` (the linear kernel's view), it is large whenever the classes'
    distributions of z differ, equal means or not: the non-linear leak a k-NN probe reads.
    Independent z and labels give O(1/B).
    """
    standardized = standardize(z)
    squared = jnp.sum(jnp.square(standardized[:, None, :] - standardized[None, :, :]), axis=-1) / z.shape[1]
    style_kernel = sum(jnp.exp(-squared / (2.0 * bw ** 2)) for bw in bandwidths)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=z.dtype)

    def centre(kernel):
        return kernel - jnp.mean(kernel, axis=0) - jnp.mean(kernel, axis=1, keepdims=True) + jnp.mean(kernel)

    k, l = centre(style_kernel), centre(one_hot @ one_hot.T)
    return jnp.sum(k * l) / jnp.sqrt(jnp.sum(k * k) * jnp.sum(l * l) + 1e-12)


class ClassStandardize(nn.Module):
    """Standardises the style z (B, D) per class: BatchNorm with class-conditional statistics.

    Train mode: each class's mean and (biased) variance over the batch items of that class
    (``labels`` (B,), the true labels), and the running (C, D) statistics updated with
    PyTorch's momentum where the class is present (so ``train.recompute_batch_stats``
    averages them as it does BatchNorm's). Eval mode: the running statistics of ``labels``,
    which the model takes from its label head, never from the true labels. A shared
    affine (scale, bias (D,)) follows, as in BatchNorm. Every class's style then has the
    same mean and per-coordinate variance, so a linear probe has nothing left to read; the
    decoder loses nothing, as it is given the label.
    """

    num_classes: int
    momentum: float = 0.1
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, z: jax.Array, train: bool, labels: jax.Array) -> jax.Array:
        features = z.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        shape = (self.num_classes, features)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(shape, jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(shape, jnp.float32))
        one_hot = jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)  # (B, C)
        if train:
            counts = jnp.sum(one_hot, axis=0)[:, None]  # (C, 1)
            class_mean = (one_hot.T @ z) / jnp.maximum(counts, 1.0)
            class_var = (one_hot.T @ jnp.square(z - one_hot @ class_mean)) / jnp.maximum(counts, 1.0)
            if not self.is_initializing():
                present = (counts > 0).astype(z.dtype)
                unbiased = class_var * counts / jnp.maximum(counts - 1.0, 1.0)
                ra_mean.value = ra_mean.value + self.momentum * present * (class_mean - ra_mean.value)
                ra_var.value = ra_var.value + self.momentum * present * (unbiased - ra_var.value)
        else:
            class_mean, class_var = ra_mean.value, ra_var.value
        mean, var = one_hot @ class_mean, one_hot @ class_var  # (B, D): each item's class statistics
        return (z - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


def label_style_functions(encoder: Encoder, decoder: Decoder, num_classes: int,
                          style_mean: Callable[[jax.Array], jax.Array] = lambda style: style):
    """``classify``, ``encode``, ``decode`` of a model whose encoder gives label logits + style.

    classify -> label logits (B, num_classes); encode -> ``style_mean(style part)`` (B, D);
    decode(z, labels) with integer labels (B,) or probabilities (B, num_classes).
    """

    def encoder_output(params, batch_stats, images, train):
        out = apply_inference(encoder, module_variables(params, batch_stats, "encoder"), images, train)
        return split_label_style(out, num_classes)

    def classify(params, batch_stats, images, train=False):
        return encoder_output(params, batch_stats, images, train)[0]

    def encode(params, batch_stats, images, labels=None, train=False):
        del labels
        return style_mean(encoder_output(params, batch_stats, images, train)[1])

    def decode(params, batch_stats, latents, labels=None, train=False):
        return apply_inference(decoder, module_variables(params, batch_stats, "decoder"), latents, train, labels=labels)

    return classify, encode, decode


def uniform_cross_entropy(logits: jax.Array) -> jax.Array:
    """Cross-entropy of the uniform distribution with softmax(logits (B, C)): (B,), minimal (log C) at uniform."""
    return -jnp.mean(jax.nn.log_softmax(logits), axis=-1)


@dataclasses.dataclass(frozen=True)
class DisentangledConfig:
    latent_dim: int = 8  # style
    num_classes: int = 10
    learning_rate: float = 1e-3  # autoencoder and confusion phases
    adversary_learning_rate: float = 1e-3
    weight_decay: float = 1e-6  # PyTorch-style coupled L2
    label_weight: float = 1.0
    confusion_weight: float = 0.1
    adversary_hidden: tuple[int, ...] = (256, 256)
    # > 0: the style is a Gaussian posterior (mu, log_var), sampled in the autoencoder phase
    # and pulled towards N(0, I) by this weight times its KL (per image, as the VAE's
    # kld_weight): the bottleneck drops what the decoder already gets from the label.
    style_kl_weight: float = 0.0
    # In training the decoder reads the label head's softmax ("predicted", the lecture's
    # picture) or the true label ("true", as Makhzani et al.'s supervised AAE): then z
    # never has to stand in for a label the head got wrong.
    decoder_label: str = "predicted"
    # > 0: the confusion phase also penalises the share of the (standardised) style's
    # variance that the class means explain (``class_mean_share``): a closed-form linear
    # adversary that the encoder cannot dodge by moving the label information around.
    class_mean_weight: float = 0.0
    # > 0: the confusion phase also penalises ``label_dependence`` (kernel CKA of the style
    # with the labels): the non-linear counterpart of class_mean_weight, also closed-form.
    kernel_dependence_weight: float = 0.0
    # "class": the style passes through ``ClassStandardize`` (per-class mean and variance
    # removed; true labels in training, the label head's in eval): the linear leak is
    # removed by construction rather than penalised. "none": the lecture's style.
    style_normalization: str = "none"

    def __post_init__(self):
        if self.latent_dim <= 0 or self.num_classes <= 1:
            raise ValueError(f"need latent_dim > 0 and num_classes > 1, got {self.latent_dim} and {self.num_classes}")
        if min(self.learning_rate, self.adversary_learning_rate) <= 0 or min(self.weight_decay, self.label_weight, self.confusion_weight,
                                                                                          self.style_kl_weight, self.class_mean_weight,
                                                                                          self.kernel_dependence_weight) < 0:
            raise ValueError("learning_rate must be > 0; weight_decay and the loss weights >= 0")
        if self.decoder_label not in ("predicted", "true"):
            raise ValueError(f"decoder_label must be 'predicted' or 'true', got {self.decoder_label!r}")
        if self.style_normalization not in ("none", "class"):
            raise ValueError(f"style_normalization must be 'none' or 'class', got {self.style_normalization!r}")
        if self.style_normalization == "class" and self.style_kl_weight:
            raise ValueError("style_normalization='class' needs a deterministic style (style_kl_weight=0)")


def make_modules(config: DisentangledConfig) -> tuple[Encoder, Decoder, MLP]:
    style_outputs = config.latent_dim * (2 if config.style_kl_weight else 1)
    return (Encoder(config.num_classes + style_outputs), Decoder(num_classes=config.num_classes, latent_dim=config.latent_dim),
            MLP((*config.adversary_hidden, config.num_classes)))


def make_model(config: DisentangledConfig) -> Model:
    """``encode`` gives the style z (B, latent_dim); ``decode(z, labels)`` takes integer labels
    (B,) or label probabilities (B, num_classes); ``classify`` gives the label logits."""
    encoder, decoder, adversary = make_modules(config)
    normalizer = ClassStandardize(config.num_classes) if config.style_normalization == "class" else None
    modules = ("encoder", "decoder") + (("style_norm",) if normalizer else ())

    def init(key):
        key, adversary_key = jax.random.split(key)
        params, batch_stats = init_encoder_decoder(key, encoder, decoder, config.latent_dim)
        params["label_adversary"] = adversary.init(adversary_key, jnp.zeros((1, config.latent_dim)))["params"]
        batch_stats["label_adversary"] = {}
        if normalizer:
            variables = normalizer.init(key, jnp.zeros((1, config.latent_dim)), False, labels=jnp.zeros((1,), jnp.int32))
            params["style_norm"], batch_stats["style_norm"] = variables["params"], variables["batch_stats"]
        return params, batch_stats

    def style_moments(style):
        """(mu, log_var) of a variational style, (style, None) of a deterministic one."""
        return vae.split_moments(style) if config.style_kl_weight else (style, None)

    def encoder_outputs(params, batch_stats, batch):
        """Label logits, style (mu, log_var) and the updated statistics (train mode)."""
        out, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), batch["image"])
        label_logits, style = split_label_style(out, config.num_classes)
        mu, log_var = style_moments(style)
        stats = {**batch_stats, "encoder": encoder_stats}
        if normalizer:
            mu, stats["style_norm"] = apply_training(normalizer, module_variables(params, batch_stats, "style_norm"), mu,
                                                     labels=batch["label"])
        return label_logits, mu, log_var, stats

    def autoencoder_loss(params, batch_stats, batch, key, step=None):
        del step
        images = batch["image"]
        label_logits, mu, log_var, stats = encoder_outputs(params, batch_stats, batch)
        z = mu if log_var is None else vae.reparametrize(key, mu, log_var)
        labels = jax.nn.softmax(label_logits) if config.decoder_label == "predicted" else batch["label"]
        logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), z, labels=labels)
        bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
        label_ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(label_logits, batch["label"]))
        metrics = {"bce": bce, "label_ce": label_ce, "label_accuracy": jnp.mean(jnp.argmax(label_logits, -1) == batch["label"])}
        loss = bce + config.label_weight * label_ce
        if log_var is not None:
            metrics["style_kl"] = jnp.mean(losses.gaussian_kl_to_standard_normal(mu, log_var))
            loss = loss + config.style_kl_weight * metrics["style_kl"]
        return loss, ({**stats, "decoder": decoder_stats}, metrics)

    def confusion_loss(params, batch_stats, batch, key, step=None):
        del key, step
        _, z, _, stats = encoder_outputs(params, batch_stats, batch)  # z: the style (mean)
        # the running statistics move once per step, in the autoencoder phase
        stats = {**stats, "style_norm": batch_stats["style_norm"]} if normalizer else stats
        predicted = adversary.apply({"params": params["label_adversary"]}, standardize(z))
        loss = config.confusion_weight * jnp.mean(uniform_cross_entropy(predicted))
        share = class_mean_share(z, batch["label"], config.num_classes)
        if config.class_mean_weight:
            loss = loss + config.class_mean_weight * share
        metrics = {"class_mean_share": share}
        if config.kernel_dependence_weight:
            metrics["label_dependence"] = label_dependence(z, batch["label"], config.num_classes)
            loss = loss + config.kernel_dependence_weight * metrics["label_dependence"]
        return loss, (stats, metrics, {"style": z})

    def adversary_loss(params, batch_stats, batch, key, step=None):
        del key, step
        predicted = adversary.apply({"params": params["label_adversary"]}, standardize(batch["style"]))
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(predicted, batch["label"]))
        return loss, (batch_stats, {"accuracy": jnp.mean(jnp.argmax(predicted, -1) == batch["label"])})

    classify, encode, decode = label_style_functions(encoder, decoder, config.num_classes,
                                                     lambda style: style_moments(style)[0])
    if normalizer:
        def encode(params, batch_stats, images, labels=None, train=False):
            """The standardised style, with the label head's classes (one encoder pass): the
            true labels are ignored, so the style stays a function of the image alone."""
            del labels
            out = apply_inference(encoder, module_variables(params, batch_stats, "encoder"), images, train)
            label_logits, style = split_label_style(out, config.num_classes)
            return apply_inference(normalizer, module_variables(params, batch_stats, "style_norm"), style, train,
                                   labels=jnp.argmax(label_logits, axis=-1))

    optimizer = torch_adam(config.learning_rate, config.weight_decay)
    phases = (
        Phase("autoencoder", autoencoder_loss, optimizer, modules),
        Phase("confusion", confusion_loss, optimizer, ("encoder",)),
        Phase("label_adversary", adversary_loss, torch_adam(config.adversary_learning_rate, config.weight_decay),
              ("label_adversary",)),
    )
    return Model(init=init, phases=phases, encode=encode, decode=decode, classify=classify)
