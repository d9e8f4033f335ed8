"""The semi-supervised AAE (section 10; Makhzani et al. 2015, section 5) as a variant.

The encoder (the lecture's conv encoder with ``num_classes + latent_dim`` outputs) gives
label logits and a style code z; the conditional decoder reads
``concat(z, softmax(label logits))``. Two discriminators (MLPs without BatchNorm): one
tells the softmax labels from one-hot samples of a uniform categorical, the other the
styles from N(0, I) samples. One step, in the paper's order:

1. ``autoencoder`` (encoder + decoder): mean-over-values BCE on the unlabelled batch;
2. ``discriminators`` (both): BCE, encoder outputs labelled 0, prior samples 1;
3. ``generator`` (encoder): ``generator_weight`` * BCE of both discriminators' verdicts
   on the encoder outputs against 1;
4. ``supervised`` (encoder): cross-entropy of the label logits on a labelled batch
   (``semi_supervised=True``; without it the label head is an unsupervised clusterer,
   the paper's section 6, with ``num_classes`` clusters).

Two additions beyond the paper, both off by default. ``augment_shift`` (pixels): the
labelled images of the supervised phase are randomly translated, a fresh shift each
step, so that 100 labelled images seen every step are not simply memorised.
``consistency_weight`` adds to the supervised phase a pseudo-label term on the unlabelled
batch (as FixMatch, Sohn et al. 2020): where the label head is confident
(max probability >= ``confidence_threshold``) on an image, its argmax becomes the target
of the cross-entropy on a copy of that image shifted by up to ``max(augment_shift, 1)``
pixels; the mean is over the whole batch, so unconfident images add nothing.

A third, for the clustering variant above all: ``categorical_temperature`` > 0 draws the
label discriminator's prior samples from the relaxed (Gumbel-softmax) categorical instead
of exact one-hot vectors. A softmax output never is exactly one-hot, so against one-hot
samples the discriminator wins outright (without labels nothing else makes the head
confident) and its verdict stops telling the encoder which way to go.
The generator phase can add three terms on the label head (each off at weight 0), which
together make it an information-maximising clusterer (as RIM / IMSAT): the batch-balance
term ``balance_weight`` (``losses.batch_balance_gap``: the batch's mean label distribution
pulled to the uniform one, so no category empties), ``confidence_weight`` (the mean
entropy of each image's label distribution) and ``invariance_weight`` (the label head on
a shifted copy of each image trained towards its distribution on the image itself).
With ``label_terms_rate`` > 0 these terms leave the generator phase for a fifth phase,
``label_head``, with an Adam of their own at that rate: at the adversarial phases' rate (1e-4)
they move the head ten times slower than reconstruction (1e-3) pulls it back to soft codes.

Batches come from ``make_dataset`` + ``gather``: every training image as unlabelled
(their labels are replaced by -1, so no loss can read them) and the labelled subset,
from which each step draws as many labelled images as the batch has.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax import data as data_lib
from aejax import flags, losses
from aejax.label_style import label_style_functions, split_label_style
from aejax.modules import (IMAGE_SHAPE, IMAGE_SHAPE_HELP, Decoder, Discriminator, Encoder, ImageShape, apply_training,
                           check_image_shape, init_encoder_decoder)
from aejax.optimizers import torch_adam
from aejax.priors import Prior, categorical, standard_normal
from aejax.inference import inference_batch_size, map_over_split
from aejax.model import Batch, BatchStats, LossOutput, Model, Params, Phase, module_variables


DECODER_LABELS = ("softmax", "straight_through")


@dataclasses.dataclass(frozen=True)
class SemiSupervisedConfig:
    latent_dim: int = flags.field(10, "style dimension")
    num_classes: int = flags.field(10, "the label head's outputs: the data's classes, or the clusters when not "
                                  "semi_supervised", cli=False)
    learning_rate: float = flags.field(1e-3, "Adam rate of the autoencoder and supervised phases")
    adversarial_learning_rate: float = flags.field(1e-4, "Adam rate of both adversarial phases: the discriminators' "
                                                    "phase and the generator phase (one Adam each)")
    weight_decay: float = flags.field(0.0, "PyTorch-style coupled L2 of every optimizer")
    generator_weight: float = flags.field(1.0, "weight of the generator's BCE of both discriminators' verdicts")
    supervised_weight: float = flags.field(1.0, "weight of the label head's cross-entropy on the labelled images")
    discriminator_hidden: tuple[int, ...] = flags.field((1000, 1000), "hidden widths of both discriminators (the paper's)",
                                                   cli=False)
    semi_supervised: bool = flags.field(True, "train the label head on the labelled subset; off: unsupervised clustering",
                                   cli=False)
    # the paper lowers its rates late in training; at constant rates the test error swings
    # by a point from epoch to epoch
    decay_steps: int = flags.field(0, "> 0: every rate follows a cosine decay to 1% over this many steps "
                                 "(the run's length); 0: constant rates", cli=False)
    augment_shift: int = flags.field(0, "max random translation (pixels) of the labelled images; 0: none (the paper)")
    consistency_weight: float = flags.field(0.0, "weight of the pseudo-label term on unlabelled images; 0: none (the paper)")
    confidence_threshold: float = flags.field(0.95, "least label-head probability that makes an unlabelled image's "
                                               "argmax its pseudo-label")
    categorical_temperature: float = flags.field(0.0, "> 0: the label discriminator's prior samples are relaxed one-hot "
                                                 "vectors at this temperature; 0: exact one-hot (the paper)")
    balance_weight: float = flags.field(0.0, "weight of the batch-balance term of the generator phase: KL of the batch's "
                                        "mean label distribution from the uniform one; 0: none (the paper)")
    confidence_weight: float = flags.field(0.0, "weight of the mean entropy of the label head's softmax in the generator "
                                           "phase (sure predictions); 0: none (the paper)")
    decoder_label: str = flags.field("softmax", "what the decoder reads of the label head in the autoencoder phase: "
                                     "'softmax' (the paper) or 'straight_through' (the one-hot argmax, with the "
                                     "softmax's gradient), so reconstruction cannot use the head as a continuous code")
    invariance_weight: float = flags.field(0.0, "weight of the shift-invariance term of the generator phase: the label "
                                           "head on each image shifted by up to max(augment_shift, 1) pixels, against "
                                           "its softmax on the image itself; 0: none (the paper)")
    label_terms_rate: float = flags.field(0.0, "> 0: the label head's terms (balance, confidence, invariance) get a "
                                          "phase of their own after the generator's, with their own Adam at this "
                                          "rate; 0: they join the generator phase at adversarial_learning_rate")
    image_shape: ImageShape = flags.field(IMAGE_SHAPE, IMAGE_SHAPE_HELP, cli=False)

    def __post_init__(self):
        object.__setattr__(self, "image_shape", check_image_shape(self.image_shape))  # a list becomes a tuple
        if self.latent_dim <= 0 or self.num_classes <= 1:
            raise ValueError(f"need latent_dim > 0 and num_classes > 1, got {self.latent_dim} and {self.num_classes}")
        if min(self.learning_rate, self.adversarial_learning_rate) <= 0:
            raise ValueError("learning rates must be > 0")
        if not all(w >= 0 for w in (self.weight_decay, self.generator_weight, self.supervised_weight, self.balance_weight,
                                    self.confidence_weight, self.invariance_weight)):
            raise ValueError("weight_decay and the loss weights must be >= 0")
        if not self.label_terms_rate >= 0:
            raise ValueError(f"label_terms_rate must be >= 0, got {self.label_terms_rate}")
        if self.label_terms_rate > 0 and not (self.balance_weight or self.confidence_weight or self.invariance_weight):
            raise ValueError("label_terms_rate needs a label-head term (balance, confidence or invariance weight > 0)")
        if self.decay_steps < 0:
            raise ValueError(f"decay_steps must be >= 0, got {self.decay_steps}")
        if self.augment_shift < 0 or self.consistency_weight < 0 or not 0 < self.confidence_threshold <= 1:
            raise ValueError("need augment_shift >= 0, consistency_weight >= 0 and 0 < confidence_threshold <= 1")
        if self.decoder_label not in DECODER_LABELS:
            raise ValueError(f"decoder_label must be one of {DECODER_LABELS}, got {self.decoder_label!r}")
        if not self.categorical_temperature >= 0:
            raise ValueError(f"categorical_temperature must be >= 0, got {self.categorical_temperature}")
        if self.consistency_weight > 0 and not self.semi_supervised:
            raise ValueError("consistency_weight needs semi_supervised=True (it trains the label head with the labels' phase)")


def max_augment_shift(image_shape: ImageShape) -> int:
    """The largest shift (pixels) that keeps an image's centre on its canvas: (min(H, W) - 1) // 2, 13 for 28x28."""
    height, width, _ = check_image_shape(image_shape)
    return (min(height, width) - 1) // 2


def labels_per_class(total: int, num_classes: int) -> int:
    """Labelled images per class when ``total`` are spread evenly over ``num_classes`` classes."""
    if total <= 0 or num_classes <= 0:
        raise ValueError(f"need a positive label count and class count, got {total} and {num_classes}")
    if total % num_classes:
        raise ValueError(f"{total} labels cannot be balanced over {num_classes} classes: "
                         f"give a multiple of {num_classes}")
    return total // num_classes


def balanced_subset(labels: np.ndarray, per_class: int, key: jax.Array, num_classes: int) -> np.ndarray:
    """Sorted indices (num_classes * per_class,) of ``per_class`` examples of each class 0..num_classes-1
    among ``labels`` (N,), chosen by ``key``."""
    labels = np.asarray(labels)
    if per_class <= 0:
        raise ValueError(f"per_class must be positive, got {per_class}")
    chosen = []
    for label, class_key in zip(range(num_classes), jax.random.split(key, num_classes)):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {label} has {len(members)} examples, fewer than per_class={per_class}")
        chosen.append(members[np.asarray(jax.random.choice(class_key, len(members), (per_class,), replace=False))])
    return np.sort(np.concatenate(chosen))


def make_dataset(split: data_lib.Split, labelled: np.ndarray | None) -> dict[str, jax.Array]:
    """Every image of ``split`` unlabelled ("label" all -1) plus, when given, the labelled
    subset at indices ``labelled`` ("labelled_image", "labelled_label")."""
    dataset = {"image": jnp.asarray(split.images), "label": jnp.full((len(split.labels),), -1, jnp.int32)}
    if labelled is not None:
        labelled = np.asarray(labelled)
        if labelled.ndim != 1 or labelled.size == 0:
            raise ValueError(f"labelled must be a non-empty 1-D index array, got shape {labelled.shape}")
        dataset["labelled_image"] = jnp.asarray(split.images[labelled])
        dataset["labelled_label"] = jnp.asarray(split.labels[labelled], jnp.int32)
    return dataset


def gather(dataset: Mapping[str, jax.Array], indices: jax.Array) -> dict[str, jax.Array]:
    """An unlabelled batch by ``indices`` (B,) and, if the dataset has them, B labelled images.

    The labelled ones are ``indices % num_labelled``: the indices are a slice of a fresh
    permutation, so these cycle through the labelled subset in a new order each epoch.
    """
    batch = data_lib.gather_batch({"image": dataset["image"], "label": dataset["label"]}, indices)
    if "labelled_label" in dataset:
        pick = indices % dataset["labelled_label"].shape[0]
        batch["labelled_image"] = data_lib.to_float_nhwc(dataset["labelled_image"][pick])
        batch["labelled_label"] = dataset["labelled_label"][pick]
    return batch


class SemiSupervisedModules(NamedTuple):
    encoder: Encoder
    decoder: Decoder
    label_discriminator: Discriminator
    style_discriminator: Discriminator


def make_modules(config: SemiSupervisedConfig) -> SemiSupervisedModules:
    return SemiSupervisedModules(Encoder(config.num_classes + config.latent_dim, image_shape=config.image_shape),
                                 Decoder(num_classes=config.num_classes, latent_dim=config.latent_dim,
                                         image_shape=config.image_shape),
                                 Discriminator(config.discriminator_hidden, batch_norm=False),
                                 Discriminator(config.discriminator_hidden, batch_norm=False))


@dataclasses.dataclass(frozen=True, eq=False)
class SemiSupervisedParts:
    """What the model's functions read besides the training state: the config, the four networks
    and the two priors (label: ``priors.categorical``, style: N(0, I))."""

    config: SemiSupervisedConfig
    modules: SemiSupervisedModules
    label_prior: Prior
    style_prior: Prior


def make_parts(config: SemiSupervisedConfig) -> SemiSupervisedParts:
    return SemiSupervisedParts(config, make_modules(config), categorical(config.num_classes, config.categorical_temperature),
                               standard_normal(config.latent_dim))


def init(parts: SemiSupervisedParts, key: jax.Array) -> tuple[Params, BatchStats]:
    """params and batch_stats of encoder, decoder and both discriminators."""
    config, (encoder, decoder, label_disc, style_disc) = parts.config, parts.modules
    key, label_key, style_key = jax.random.split(key, 3)
    params, batch_stats = init_encoder_decoder(key, encoder, decoder, config.latent_dim)
    params["label_discriminator"] = label_disc.init(label_key, jnp.zeros((1, config.num_classes)), False)["params"]
    params["style_discriminator"] = style_disc.init(style_key, jnp.zeros((1, config.latent_dim)), False)["params"]
    return params, {**batch_stats, "label_discriminator": {}, "style_discriminator": {}}


def _bce_against(logits: jax.Array, target: float) -> jax.Array:
    """Elementwise BCE of discriminator logits (B, 1) against a constant target (0 or 1)."""
    return losses.binary_cross_entropy_with_logits(logits, jnp.full_like(logits, target))


def encoder_outputs(parts: SemiSupervisedParts, params: Params, batch_stats: BatchStats, images: jax.Array,
                    ) -> tuple[jax.Array, jax.Array, Any]:
    """Train mode: label logits (B, num_classes), style (B, latent_dim), the encoder's updated statistics."""
    out, stats = apply_training(parts.modules.encoder, module_variables(params, batch_stats, "encoder"), images)
    return (*split_label_style(out, parts.config.num_classes), stats)


def verdicts(parts: SemiSupervisedParts, params: Params, label_probs: jax.Array, style: jax.Array,
             ) -> tuple[jax.Array, jax.Array]:
    """The label discriminator's logits (B, 1) for label_probs (B, num_classes), the style
    discriminator's (B, 1) for style (B, latent_dim)."""
    _, _, label_disc, style_disc = parts.modules
    return (label_disc.apply({"params": params["label_discriminator"]}, label_probs, True),
            style_disc.apply({"params": params["style_discriminator"]}, style, True))


def autoencoder_loss(parts: SemiSupervisedParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                     step: jax.Array) -> LossOutput:
    """Mean-over-values BCE of the reconstructions of batch["image"] (B, H, W, C), the decoder
    reading the style and the label head's softmax (or its straight-through one-hot, ``decoder_label``).
   """
    del key, step
    images = batch["image"]
    label_logits, style, encoder_stats = encoder_outputs(parts, params, batch_stats, images)
    label_code = jax.nn.softmax(label_logits)
    if parts.config.decoder_label == "straight_through":
        one_hot = jax.nn.one_hot(jnp.argmax(label_logits, -1), label_logits.shape[-1], dtype=label_code.dtype)
        label_code = label_code + jax.lax.stop_gradient(one_hot - label_code)
    logits, decoder_stats = apply_training(parts.modules.decoder, module_variables(params, batch_stats, "decoder"), style,
                                           labels=label_code)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
    return LossOutput(bce, {**batch_stats, "encoder": encoder_stats, "decoder": decoder_stats}, {"bce": bce})


def discriminators_loss(parts: SemiSupervisedParts, params: Params, batch_stats: BatchStats, batch: Batch,
                        key: jax.Array, step: jax.Array) -> LossOutput:
    """Sum of both discriminators' balanced BCEs: the encoder's outputs for batch["image"] (B, H, W, C)
    labelled 0, B prior samples each (drawn with ``key``) labelled 1."""
    del step
    label_logits, style, encoder_stats = encoder_outputs(parts, params, batch_stats, batch["image"])
    label_probs = jax.nn.softmax(label_logits)
    label_key, style_key = jax.random.split(key)
    n = style.shape[0]
    fake_label, fake_style = verdicts(parts, params, label_probs, style)
    real_label, real_style = verdicts(parts, params, parts.label_prior(label_key, n), parts.style_prior(style_key, n))
    label_loss = 0.5 * (jnp.mean(_bce_against(fake_label, 0.0)) + jnp.mean(_bce_against(real_label, 1.0)))
    style_loss = 0.5 * (jnp.mean(_bce_against(fake_style, 0.0)) + jnp.mean(_bce_against(real_style, 1.0)))
    metrics = {"label_loss": label_loss, "style_loss": style_loss}
    return LossOutput(label_loss + style_loss, {**batch_stats, "encoder": encoder_stats}, metrics)


def _label_head_terms(config: SemiSupervisedConfig, label_logits: jax.Array, shifted_logits: jax.Array | None,
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The label head's optional terms on its logits (B, K) and, for invariance, its logits on
    shifted copies (B, K): ``balance_weight`` * ``losses.batch_balance_gap`` of its softmax p,
    ``confidence_weight`` * the mean ``losses.categorical_entropy(p)``, ``invariance_weight`` *
    the mean cross-entropy of the shifted logits against p (no gradient through p)."""
    label_probs = jax.nn.softmax(label_logits)
    loss, metrics = jnp.zeros((), label_logits.dtype), {}
    if config.balance_weight > 0:
        metrics["balance_gap"] = losses.batch_balance_gap(label_probs)
        loss = loss + config.balance_weight * metrics["balance_gap"]
    if config.confidence_weight > 0:
        metrics["entropy"] = jnp.mean(losses.categorical_entropy(label_probs))
        loss = loss + config.confidence_weight * metrics["entropy"]
    if config.invariance_weight > 0:
        targets = jax.lax.stop_gradient(label_probs)
        metrics["invariance"] = jnp.mean(optax.softmax_cross_entropy(shifted_logits, targets))
        loss = loss + config.invariance_weight * metrics["invariance"]
    return loss, metrics


def _encode_with_shifted_copies(parts: SemiSupervisedParts, params: Params, batch_stats: BatchStats,
                                images: jax.Array, key: jax.Array, shift_copies: bool,
                                ) -> tuple[jax.Array, jax.Array, jax.Array | None, Any]:
    """Train mode: label logits (B, K) and style (B, D) of ``images``, the label logits (B, K) of
    copies shifted by up to max(augment_shift, 1) pixels (None unless ``shift_copies``), stats."""
    num_images = images.shape[0]
    if shift_copies:  # one pass: one set of batch statistics
        shifted = data_lib.random_shift(key, images, max(parts.config.augment_shift, 1))
        images = jnp.concatenate([images, shifted])
    all_logits, all_styles, encoder_stats = encoder_outputs(parts, params, batch_stats, images)
    shifted_logits = all_logits[num_images:] if shift_copies else None
    return all_logits[:num_images], all_styles[:num_images], shifted_logits, encoder_stats


def generator_loss(parts: SemiSupervisedParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                   step: jax.Array) -> LossOutput:
    """``generator_weight`` * the sum of both discriminators' BCEs against 1 on the encoder's outputs
    for batch["image"] (B, H, W, C), plus the label head's optional terms (``_label_head_terms``)
    unless they have a phase of their own (``label_terms_rate`` > 0).
   """
    del step
    config = parts.config
    own_phase = config.label_terms_rate > 0
    label_logits, style, shifted_logits, encoder_stats = _encode_with_shifted_copies(
        parts, params, batch_stats, batch["image"], key, shift_copies=config.invariance_weight > 0 and not own_phase)
    label_verdict, style_verdict = verdicts(parts, params, jax.nn.softmax(label_logits), style)
    loss = config.generator_weight * (jnp.mean(_bce_against(label_verdict, 1.0))
                                      + jnp.mean(_bce_against(style_verdict, 1.0)))
    metrics = {}
    if not own_phase:
        terms, metrics = _label_head_terms(config, label_logits, shifted_logits)
        loss = loss + terms
    return LossOutput(loss, {**batch_stats, "encoder": encoder_stats}, metrics)


def label_head_loss(parts: SemiSupervisedParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                    step: jax.Array) -> LossOutput:
    """The label head's terms (``_label_head_terms``) on batch["image"] (B, H, W, C) alone: the
    phase they get with ``label_terms_rate`` > 0, so that they train the encoder at a rate of
    their own rather than the adversaries'."""
    del step
    label_logits, _, shifted_logits, encoder_stats = _encode_with_shifted_copies(
        parts, params, batch_stats, batch["image"], key, shift_copies=parts.config.invariance_weight > 0)
    loss, metrics = _label_head_terms(parts.config, label_logits, shifted_logits)
    return LossOutput(loss, {**batch_stats, "encoder": encoder_stats}, metrics)


def supervised_loss(parts: SemiSupervisedParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                    step: jax.Array) -> LossOutput:
    """``supervised_weight`` * cross-entropy of the label head on batch["labelled_image"] (B, H, W, C)
    (shifted by up to ``augment_shift`` pixels) with batch["labelled_label"] (B,), plus the
    pseudo-label term on batch["image"] when ``consistency_weight`` > 0."""
    del step
    config = parts.config
    labelled_key, unlabelled_key = jax.random.split(key)
    images = data_lib.random_shift(labelled_key, batch["labelled_image"], config.augment_shift)
    labels = batch["labelled_label"]
    num_labelled = images.shape[0]
    if config.consistency_weight > 0:
        # targets from the clean images (train-mode statistics, as every other pass of the step)
        clean_logits = jax.lax.stop_gradient(encoder_outputs(parts, params, batch_stats, batch["image"])[0])
        probs = jax.nn.softmax(clean_logits)
        confident = jnp.max(probs, -1) >= config.confidence_threshold
        shifted = data_lib.random_shift(unlabelled_key, batch["image"], max(config.augment_shift, 1))
        images = jnp.concatenate([images, shifted])  # one pass: one set of batch statistics
    all_logits, _, encoder_stats = encoder_outputs(parts, params, batch_stats, images)
    label_logits = all_logits[:num_labelled]
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(label_logits, labels))
    metrics = {"accuracy": jnp.mean(jnp.argmax(label_logits, -1) == labels)}
    loss = config.supervised_weight * ce
    if config.consistency_weight > 0:
        pseudo = optax.softmax_cross_entropy_with_integer_labels(all_logits[num_labelled:], jnp.argmax(probs, -1))
        consistency = jnp.mean(jnp.where(confident, pseudo, 0.0))
        metrics.update(consistency=consistency, confident_share=jnp.mean(confident))
        loss = loss + config.consistency_weight * consistency
    return LossOutput(loss, {**batch_stats, "encoder": encoder_stats}, metrics)


def make_optimizer(config: SemiSupervisedConfig, rate: float) -> optax.GradientTransformation:
    """``torch_adam`` at ``rate``, cosine-decayed over ``decay_steps`` when set."""
    if config.decay_steps:
        rate = optax.cosine_decay_schedule(rate, config.decay_steps, alpha=0.01)
    return torch_adam(rate, config.weight_decay)


def make_model(config: SemiSupervisedConfig) -> Model:
    """``encode`` gives the style (B, latent_dim), ``classify`` the label logits (B, num_classes),
    ``decode(z, labels)`` takes integer labels (B,) or probabilities (B, num_classes)."""
    parts = make_parts(config)
    adversarial = make_optimizer(config, config.adversarial_learning_rate)
    phases = [
        Phase("autoencoder", functools.partial(autoencoder_loss, parts), make_optimizer(config, config.learning_rate),
              ("encoder", "decoder")),
        Phase("discriminators", functools.partial(discriminators_loss, parts), adversarial,
              ("label_discriminator", "style_discriminator")),
        Phase("generator", functools.partial(generator_loss, parts), adversarial, ("encoder",)),
    ]
    if config.label_terms_rate > 0:
        phases.append(Phase("label_head", functools.partial(label_head_loss, parts),
                            make_optimizer(config, config.label_terms_rate), ("encoder",)))
    if config.semi_supervised:
        phases.append(Phase("supervised", functools.partial(supervised_loss, parts),
                            make_optimizer(config, config.learning_rate), ("encoder",)))
    classify, encode, decode = label_style_functions(parts.modules.encoder, parts.modules.decoder, config.num_classes)
    return Model(init=functools.partial(init, parts), phases=tuple(phases), encode=encode, decode=decode,
                 classify=classify)


@functools.lru_cache(maxsize=32)  # one compiled program per classifier, however often it is called
def _label_predictor(classify: Callable[..., jax.Array]) -> Callable[[Params, BatchStats, jax.Array], jax.Array]:
    return jax.jit(lambda params, batch_stats, images: jnp.argmax(classify(params, batch_stats, images), -1))


@functools.lru_cache(maxsize=32)
def _probability_predictor(classify: Callable[..., jax.Array]) -> Callable[[Params, BatchStats, jax.Array], jax.Array]:
    return jax.jit(lambda params, batch_stats, images: jax.nn.softmax(classify(params, batch_stats, images), -1))


def predict_probabilities(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                          batch_size: int | None = None) -> np.ndarray:
    """The label head's q(y | x) (N, num_classes) over a split (``data.device_dataset``), eval mode
    (``batch_size`` None: ``inference.inference_batch_size()``); compiled once per model and batch shape."""
    run = _probability_predictor(model.classify)
    return map_over_split(lambda _, idx: (run(params, batch_stats, data_lib.gather_batch(dataset, idx)["image"]),),
                          dataset, batch_size or inference_batch_size(), pad_last=True)[0]


def predict_labels(model: Model, params: Params, batch_stats: BatchStats, dataset: Mapping[str, jax.Array],
                   batch_size: int | None = None) -> np.ndarray:
    """The label head's argmax (N,) over a split (``data.device_dataset``), eval mode
    (``batch_size`` None: ``inference.inference_batch_size()``).

    Compiled once per model and batch shape: every epoch's call reuses the program.
    """
    run = _label_predictor(model.classify)
    return map_over_split(lambda _, idx: (run(params, batch_stats, data_lib.gather_batch(dataset, idx)["image"]),),
                          dataset, batch_size or inference_batch_size(), pad_last=True)[0]
