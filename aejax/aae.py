"""The adversarial autoencoder (section 8) as a variant: three phases, three optimizers.

One training step runs the lecture's three updates in its order, inside one compiled
step (``train.apply_phases``):

1. ``autoencoder`` (encoder + decoder): mean-over-values BCE of the reconstruction;
2. ``generator`` (encoder only): ``generator_weight * BCE(D(z), 1)``, the codes of the
   updated encoder judged by the discriminator;
3. ``discriminator``: BCE with the same codes (those of step 2, before the generator
   update, as the lecture's ``latent.detach()``) labelled 0 and
   ``prior_samples_per_code`` times as many prior samples labelled 1, averaged over all.

Every optimizer is the lecture's Adam(1e-3, weight_decay=1e-6), with PyTorch's coupled
L2. The prior is any sampler ``(key, n) -> (n, latent_dim)`` (see ``priors``).

``discriminator_norm`` chooses how the discriminator's BatchNorm sees its inputs:
``"batch_separate"`` (the lecture) normalises the code batch and the prior batch each
by its own statistics, so the discriminator cannot see where the codes lie, only the
shape of their cloud: the codes drift far outside the prior's support. The two
corrections: ``"batch_joint"`` (codes and prior samples normalised as one batch, in the
generator phase too) and ``"none"`` (no BatchNorm).

``gradient_penalty`` (gamma > 0, needs ``discriminator_norm="none"``) adds Mescheder et
al.'s (2018) R1 term to the discriminator phase: ``gamma / 2 * E ||grad_z D(z)||^2`` over
prior samples. Unregularised, the code/prior game oscillates instead of settling; R1
makes the discriminator flat on the prior's support, the equilibrium at which the codes
have matched it.

``generator_optimizer="shared"`` drops the generator's own Adam: its term joins the
autoencoder loss, ``BCE + generator_weight * BCE(D(z), 1)``, under one Adam, and the
discriminator judges that phase's codes (before its update). With a separate Adam the
generator's step has the learning rate's size whatever ``generator_weight`` is, and
where the discriminator is flat its noise becomes a random walk of the encoder; shared,
the weight sets the term's share of the step. Two phases, two optimizers.

``label_conditioning`` (Makhzani et al. 2015, section 2.3) feeds the discriminator the
one-hot label beside each code, and beside each prior sample the one-hot index of the
mixture component it came from: class k is matched to component k (the ten boxes' box k,
the circle's Gaussian k). Without labels the encoder, a continuous map of a connected
data manifold, must tear it into ten disjoint boxes and leaves codes in the gaps; with
them each class only has to fill one box. It uses every training label (the paper's
extra "unlabelled" slot is not implemented) and needs a mixture prior
(``priors.Prior.sample_components``).

``standardize_components`` (with ``label_conditioning``) also standardises what the
discriminator sees: a code of label k and a sample of component k both become
``(z - mean_k) / std_k``, the component's moments estimated once from the prior's own
samples. A small component (the boxes are 0.8 wide) otherwise asks the discriminator
for input weights large enough to draw its edges sharply, which Adam at 1e-3 does not
reach in 10 epochs: the codes spill over every edge. Standardised, every class plays
the same game at the scale of one unit-variance box.

``component_assignment="balanced"`` plays the same conditioned game without labels: each
batch's codes are sent to the components by ``balanced_components``, the transport of
least standardised squared distance that gives every component an equal share (the
prior's weights), and the discriminator judges each code against its own component. A
code in a gap is then pushed into the box it was sent to, so the encoder tears the codes
apart along the gaps; the equal shares keep one box from taking every code.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax import flags, losses
from aejax.modules import (IMAGE_SHAPE, IMAGE_SHAPE_HELP, Decoder, Discriminator, Encoder, ImageShape, apply_inference,
                           apply_training, check_image_shape)
from aejax.priors import Prior, Sampler
from aejax.model import (Batch, BatchStats, EncoderDecoder, EncoderDecoderFunctions, LossOutput, Metrics, Model, Params,
                         Phase, encoder_decoder_functions, module_variables)
from aejax.optimizers import torch_adam

DiscriminatorNorm = Literal["batch_separate", "batch_joint", "none"]
DISCRIMINATOR_NORMS = typing.get_args(DiscriminatorNorm)
# "pooled": the lecture's one BCE over codes and prior samples together (20:1 for the prior);
# "balanced": the mean of the two classes' BCEs, so codes weigh as much as prior samples.
DiscriminatorLoss = Literal["pooled", "balanced"]
DISCRIMINATOR_LOSSES = typing.get_args(DiscriminatorLoss)
# "separate": the lecture's third Adam for the generator phase; "shared": the generator term
# is part of the autoencoder loss, under the autoencoder's Adam.
GeneratorOptimizer = Literal["separate", "shared"]
GENERATOR_OPTIMIZERS = typing.get_args(GeneratorOptimizer)
# "label": code of class k matched to component k (every training label used);
# "balanced": no labels, each batch's codes sent to the components by an equal-share
# transport of least standardised distance (``balanced_components``).
ComponentAssignment = Literal["label", "balanced"]
COMPONENT_ASSIGNMENTS = typing.get_args(ComponentAssignment)


@dataclasses.dataclass(frozen=True)
class AAEConfig:
    latent_dim: int = flags.field(2, "code dimension; must match the prior's")
    learning_rate: float = flags.field(1e-3, "Adam rate of every phase unless generator_learning_rate or "
                                        "adversary_learning_rate is set")
    # Adam normalises each phase's step, so generator_weight hardly weakens the generator
    # phase; a smaller generator rate does (two time scales, encoder-fooling vs discriminator).
    generator_learning_rate: float | None = flags.field(None, "Adam rate of the generator phase (none: learning_rate)")
    adversary_learning_rate: float | None = flags.field(None, "Adam rate of the discriminator (none: learning_rate)")
    weight_decay: float = flags.field(1e-6, "PyTorch-style coupled L2 of every optimizer")
    generator_weight: float = flags.field(0.01, "weight of the generator's BCE(D(z), 1)")
    prior_samples_per_code: int = flags.field(20, "prior samples per code in the discriminator's batch "
                                             "(the lecture: 20 uniform, 10 ten boxes)")
    discriminator_norm: DiscriminatorNorm = flags.field(
        "batch_separate", "discriminator BatchNorm: codes and prior samples normalised apart (the lecture), "
                          "together, or no BatchNorm")
    discriminator_loss: DiscriminatorLoss = flags.field(
        "pooled", "one BCE over codes and prior samples together (the lecture), or the mean of the two classes' BCEs")
    gradient_penalty: float = flags.field(0.0, "R1 weight gamma on prior samples, 0: none; needs discriminator_norm none")
    generator_optimizer: GeneratorOptimizer = flags.field(
        "separate", "the generator phase's own Adam (the lecture), or its term added to the autoencoder loss")
    label_conditioning: bool = flags.field(False, "the discriminator sees (code, one-hot label), class k matched to "
                                             "mixture component k")
    num_classes: int = flags.field(10, "labels 0..num_classes-1, one per prior component (label_conditioning only)",
                              cli=False)
    standardize_components: bool = flags.field(False, "the discriminator sees (z - mean_k) / std_k of component k; "
                                                 "needs label_conditioning")
    component_assignment: ComponentAssignment = flags.field(
        "label", "which component a code is matched to under label_conditioning: its label's, or (balanced) one "
                 "chosen without labels, each component taking an equal share of the batch")
    # the adversarial game's jitter shrinks at the end instead of being frozen at full rate
    decay_steps: int = flags.field(0, "> 0: every rate follows a cosine decay to 1% over this many steps "
                                 "(the run's length); 0: constant rates", cli=False)
    image_shape: ImageShape = flags.field(IMAGE_SHAPE, IMAGE_SHAPE_HELP, cli=False)

    def __post_init__(self):
        object.__setattr__(self, "image_shape", check_image_shape(self.image_shape))  # a list becomes a tuple
        if self.latent_dim <= 0 or self.prior_samples_per_code <= 0:
            raise ValueError(f"latent_dim and prior_samples_per_code must be positive, got "
                             f"{self.latent_dim} and {self.prior_samples_per_code}")
        rates = (self.learning_rate, self.generator_learning_rate, self.adversary_learning_rate)
        if any(rate is not None and rate <= 0 for rate in rates) or self.weight_decay < 0 or self.generator_weight < 0:
            raise ValueError("learning rates must be > 0; weight_decay and generator_weight >= 0")
        if self.discriminator_norm not in DISCRIMINATOR_NORMS:
            raise ValueError(f"discriminator_norm must be one of {DISCRIMINATOR_NORMS}, got {self.discriminator_norm!r}")
        if self.discriminator_loss not in DISCRIMINATOR_LOSSES:
            raise ValueError(f"discriminator_loss must be one of {DISCRIMINATOR_LOSSES}, got {self.discriminator_loss!r}")
        if self.generator_optimizer not in GENERATOR_OPTIMIZERS:
            raise ValueError(f"generator_optimizer must be one of {GENERATOR_OPTIMIZERS}, got {self.generator_optimizer!r}")
        if self.generator_optimizer == "shared" and self.generator_learning_rate is not None:
            raise ValueError("generator_learning_rate needs generator_optimizer='separate' (shared: the autoencoder's rate)")
        if self.gradient_penalty < 0:
            raise ValueError(f"gradient_penalty must be >= 0, got {self.gradient_penalty}")
        if self.gradient_penalty > 0 and self.discriminator_norm != "none":
            # with BatchNorm a sample's logit depends on its whole batch: no per-sample gradient
            raise ValueError("gradient_penalty needs discriminator_norm='none' (BatchNorm couples the samples' logits)")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.standardize_components and not self.label_conditioning:
            raise ValueError("standardize_components needs label_conditioning (the label names the component)")
        if self.component_assignment not in COMPONENT_ASSIGNMENTS:
            raise ValueError(f"component_assignment must be one of {COMPONENT_ASSIGNMENTS}, "
                             f"got {self.component_assignment!r}")
        if self.component_assignment != "label" and not self.label_conditioning:
            raise ValueError("component_assignment='balanced' needs label_conditioning (a component per code)")
        if self.decay_steps < 0:
            raise ValueError(f"decay_steps must be >= 0, got {self.decay_steps}")

    @property
    def needs_component_moments(self) -> bool:
        """Standardised inputs and the balanced assignment both read the components' moments."""
        return self.standardize_components or self.component_assignment != "label"

    @property
    def discriminator_input_dim(self) -> int:
        return self.latent_dim + (self.num_classes if self.label_conditioning else 0)


def adversarial_bce(logits: jax.Array, target: float) -> jax.Array:
    """Elementwise BCE of discriminator logits (B, 1) against a constant target (0 or 1)."""
    return losses.binary_cross_entropy_with_logits(logits, jnp.full_like(logits, target))


def discriminator_bce(code_logits: jax.Array, prior_logits: jax.Array, balanced: bool = False) -> jax.Array:
    """The discriminator's scalar loss: codes (Bc, 1) labelled 0, prior samples (Bp, 1) labelled 1.

    Pooled (the lecture): one mean over all Bc + Bp terms, so with 20 prior samples per
    code a discriminator that calls everything "prior" already scores well. Balanced: the
    mean of the two classes' mean BCEs.
    """
    code_terms, prior_terms = adversarial_bce(code_logits, 0.0), adversarial_bce(prior_logits, 1.0)
    if balanced:
        return 0.5 * (jnp.mean(code_terms) + jnp.mean(prior_terms))
    return jnp.mean(jnp.concatenate([code_terms, prior_terms]))


def r1_penalty(logit_fn: typing.Callable[[jax.Array], jax.Array], samples: jax.Array) -> jax.Array:
    """Squared norms (N,) of each sample's logit gradient, ``||grad_z logit_fn(z)||^2`` for samples (N, D).

    ``logit_fn`` maps (N, D) to (N, 1) with each row depending on its own sample only (no
    BatchNorm), so the gradient of the summed logits is each sample's own gradient.
    """
    grads = jax.grad(lambda z: jnp.sum(logit_fn(z)))(samples)
    return jnp.sum(jnp.square(grads), axis=-1)


class AAEModules(typing.NamedTuple):
    encoder: Encoder
    decoder: Decoder
    discriminator: Discriminator


def make_modules(config: AAEConfig) -> AAEModules:
    return AAEModules(Encoder(config.latent_dim, image_shape=config.image_shape),
                      Decoder(latent_dim=config.latent_dim, image_shape=config.image_shape),
                      Discriminator(batch_norm=config.discriminator_norm != "none"))


def _check_prior(prior: Sampler, config: AAEConfig) -> None:
    shape = jax.eval_shape(lambda key: prior(key, 3), jax.random.key(0)).shape
    if shape != (3, config.latent_dim):
        raise ValueError(f"prior(key, n) must return (n, {config.latent_dim}) codes, got shape {shape} for n=3")
    if not config.label_conditioning:
        return
    name = getattr(prior, "name", prior)
    components = getattr(prior, "num_components", 0) if getattr(prior, "sample_components", None) is not None else 0
    if components == 0:
        raise ValueError(f"label_conditioning needs a mixture prior with {config.num_classes} components, one per class "
                         f"(priors.Prior.sample_components), got {name!r}, not a mixture")
    if components != config.num_classes:
        raise ValueError(f"label_conditioning matches class k to prior component k: {name!r} has {components} "
                         f"components, so it needs {components} classes, got num_classes={config.num_classes}")


Moments = tuple[jax.Array, jax.Array]  # per-component means and stds, each (num_components, latent_dim)


def component_moments(prior: Prior, num_samples: int = 10_000) -> Moments:
    """Each mixture component's mean and std (K, D), estimated from ``num_samples`` of its samples
    (a fixed key: the same numbers every call)."""
    k = prior.num_components
    samples = prior.sample_components(jax.random.key(0), jnp.arange(num_samples * k) % k).reshape(num_samples, k, -1)
    return jnp.mean(samples, axis=0), jnp.std(samples, axis=0)


def discriminator_inputs(config: AAEConfig, codes: jax.Array, labels: jax.Array | None,
                         moments: Moments | None = None) -> jax.Array:
    """The discriminator's input (N, discriminator_input_dim): codes (N, latent_dim), with
    one-hot ``labels`` (N,) beside them under ``label_conditioning`` (else labels are
    ignored), each code standardised by its label's component ``moments`` under
    ``standardize_components``."""
    if not config.label_conditioning:
        return codes
    if labels is None:
        raise ValueError("a label-conditioned discriminator needs the labels (N,) of the codes")
    if config.standardize_components:
        if moments is None:
            raise ValueError("standardize_components needs the prior's component moments (aae.component_moments)")
        codes = (codes - moments[0][labels]) / moments[1][labels]
    return jnp.concatenate([codes, jax.nn.one_hot(labels, config.num_classes, dtype=codes.dtype)], axis=1)


def balanced_components(codes: jax.Array, moments: Moments, temperature: float = 1.0,
                        iterations: int = 50) -> jax.Array:
    """Each code's component (N,) int32, every component taking an equal share of the codes.

    codes (N, D); moments the components' means and stds (K, D). The cost of sending code i
    to component k is its squared standardised distance ``sum(((z_i - mean_k) / std_k)^2)``;
    ``iterations`` of log-domain Sinkhorn with entropy ``temperature`` give the plan with row
    sums 1/N and column sums 1/K, and each code takes its row's largest entry. With costs
    far apart this is each code's nearest component, up to the equal shares. No gradient
    flows through the choice.
    """
    means, stds = moments
    z = jax.lax.stop_gradient(codes)
    cost = jnp.sum(jnp.square((z[:, None, :] - means[None]) / stds[None]), axis=-1)  # (N, K)
    n, k = cost.shape
    log_kernel = -cost / temperature
    log_rows, log_cols = -jnp.log(n), -jnp.log(k)

    def sinkhorn_step(potentials, _):
        f, g = potentials
        f = log_rows - jax.nn.logsumexp(log_kernel + g[None, :], axis=1)
        g = log_cols - jax.nn.logsumexp(log_kernel + f[:, None], axis=0)
        return (f, g), None

    (f, g), _ = jax.lax.scan(sinkhorn_step, (jnp.zeros(n), jnp.zeros(k)), None, length=iterations)
    return jnp.argmax(log_kernel + f[:, None] + g[None, :], axis=1).astype(jnp.int32)


def code_components(config: AAEConfig, codes: jax.Array, labels: jax.Array | None,
                    moments: Moments | None) -> jax.Array | None:
    """The components (N,) the discriminator matches codes (N, D) to: their ``labels`` under
    ``component_assignment="label"``, else ``balanced_components`` of the codes (by ``moments``)."""
    if config.component_assignment == "label":
        return labels
    return balanced_components(codes, moments)


def prior_samples(config: AAEConfig, prior: Sampler, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array | None]:
    """n prior samples (n, latent_dim) and, under ``label_conditioning``, their components (n,)
    (equally many of each, as the lecture's box sampler); else None."""
    if not config.label_conditioning:
        return prior(key, n), None
    components = jnp.arange(n) % config.num_classes
    return prior.sample_components(key, components), components


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, as jit caches need (moments are arrays)
class AAEParts:
    """What the AAE's functions read besides the training state: the config, the three
    networks, the prior and (``standardize_components`` only) its ``component_moments``."""

    config: AAEConfig
    modules: AAEModules
    prior: Sampler
    moments: Moments | None = None


def make_parts(config: AAEConfig, prior: Sampler) -> AAEParts:
    """The checked prior with the config's networks (raises ValueError for a prior that does not fit)."""
    _check_prior(prior, config)
    moments = component_moments(prior) if config.needs_component_moments else None
    return AAEParts(config, make_modules(config), prior, moments)


def autoencoder_functions(parts: AAEParts) -> EncoderDecoderFunctions:
    """init, encode and decode of the encoder and decoder (``model.encoder_decoder_functions``)."""
    encoder, decoder, _ = parts.modules
    return encoder_decoder_functions(EncoderDecoder(encoder, decoder), parts.config.latent_dim)


def init(parts: AAEParts, key: jax.Array) -> tuple[Params, BatchStats]:
    """params and batch_stats of encoder, decoder and discriminator."""
    key, disc_key = jax.random.split(key)
    params, batch_stats = autoencoder_functions(parts).init(key)
    disc = parts.modules.discriminator.init(disc_key, jnp.zeros((1, parts.config.discriminator_input_dim)), False)
    return ({**params, "discriminator": disc["params"]},
            {**batch_stats, "discriminator": disc.get("batch_stats", {})})


def generator_term(parts: AAEParts, params: Params, batch_stats: BatchStats, codes: jax.Array,
                   labels: jax.Array | None, key: jax.Array) -> tuple[jax.Array, Any, Metrics]:
    """``generator_weight * BCE(D(codes), 1)`` (scalar) for codes (B, latent_dim) and their labels (B,)
    (label-conditioned only), the discriminator's updated statistics, metrics."""
    config, discriminator = parts.config, parts.modules.discriminator
    disc_vars = module_variables(params, batch_stats, "discriminator")
    inputs = discriminator_inputs(config, codes, labels, parts.moments)
    if config.discriminator_norm == "batch_joint":  # normalised together with prior samples, as in the discriminator phase
        samples, components = prior_samples(config, parts.prior, key, codes.shape[0] * config.prior_samples_per_code)
        both = jnp.concatenate([inputs, discriminator_inputs(config, samples, components, parts.moments)])
        logits, disc_stats = apply_training(discriminator, disc_vars, both)
        logits = logits[: codes.shape[0]]
    else:
        logits, disc_stats = apply_training(discriminator, disc_vars, inputs)
    loss = config.generator_weight * jnp.mean(adversarial_bce(logits, 1.0))
    return loss, disc_stats, {"codes_called_prior": jnp.mean(logits > 0)}


def autoencoder_loss(parts: AAEParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                     step: jax.Array) -> LossOutput:
    """Mean-over-values BCE of the reconstructions of batch["image"] (B, H, W, C), in train mode.

    With ``generator_optimizer="shared"`` the generator term is added, and the codes (B,
    latent_dim) are carried to the discriminator phase.
    """
    del step
    encoder, decoder, _ = parts.modules
    images = batch["image"]
    codes, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), images)
    logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), codes)
    bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
    new_stats = {**batch_stats, "encoder": encoder_stats, "decoder": decoder_stats}
    if parts.config.generator_optimizer != "shared":
        return LossOutput(bce, new_stats, {"bce": bce})
    components = code_components(parts.config, codes, batch.get("label"), parts.moments)
    generator, disc_stats, metrics = generator_term(parts, params, batch_stats, codes, components, key)
    metrics = {"bce": bce, "generator": generator, **metrics}
    return LossOutput(bce + generator, {**new_stats, "discriminator": disc_stats}, metrics, {"codes": codes})


def generator_loss(parts: AAEParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                   step: jax.Array) -> LossOutput:
    """``generator_term`` of the train-mode codes of batch["image"] (B, H, W, C); the codes
    (B, latent_dim) are carried to the discriminator phase."""
    del step
    codes, encoder_stats = apply_training(parts.modules.encoder, module_variables(params, batch_stats, "encoder"),
                                          batch["image"])
    components = code_components(parts.config, codes, batch.get("label"), parts.moments)
    loss, disc_stats, metrics = generator_term(parts, params, batch_stats, codes, components, key)
    return LossOutput(loss, {**batch_stats, "encoder": encoder_stats, "discriminator": disc_stats}, metrics,
                      {"codes": codes})


def discriminator_loss(parts: AAEParts, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                       step: jax.Array) -> LossOutput:
    """``discriminator_bce`` of batch["codes"] (B, latent_dim) labelled 0 and B * prior_samples_per_code
    prior samples (drawn with ``key``) labelled 1, plus the R1 term when ``gradient_penalty`` > 0.

    batch["label"] (B,) names the codes' classes under ``label_conditioning`` with
    ``component_assignment="label"``.
    """
    del step
    config, moments, discriminator = parts.config, parts.moments, parts.modules.discriminator
    codes = batch["codes"]  # the generator's codes (the autoencoder phase's if shared), gradient stopped
    samples, components = prior_samples(config, parts.prior, key, codes.shape[0] * config.prior_samples_per_code)
    code_inputs = discriminator_inputs(config, codes, code_components(config, codes, batch.get("label"), moments),
                                       moments)
    sample_inputs = discriminator_inputs(config, samples, components, moments)
    disc_vars = module_variables(params, batch_stats, "discriminator")
    if config.discriminator_norm == "batch_separate":  # the lecture: two train-mode calls
        code_logits, disc_stats = apply_training(discriminator, disc_vars, code_inputs)
        prior_logits, disc_stats = apply_training(
            discriminator, {"params": params["discriminator"], "batch_stats": disc_stats}, sample_inputs)
    else:
        both, disc_stats = apply_training(discriminator, disc_vars, jnp.concatenate([code_inputs, sample_inputs]))
        code_logits, prior_logits = both[: codes.shape[0]], both[codes.shape[0]:]
    loss = discriminator_bce(code_logits, prior_logits, config.discriminator_loss == "balanced")
    accuracy = 0.5 * (jnp.mean(code_logits < 0) + jnp.mean(prior_logits > 0))
    metrics = {"balanced_accuracy": accuracy}
    if config.gradient_penalty > 0:
        # on as many prior samples as codes: an unbiased estimate of the expectation at a
        # fraction of the cost of the double backward over all of them
        n = codes.shape[0]
        penalty_components = None if components is None else components[:n]
        squared_norms = r1_penalty(
            lambda z: discriminator.apply({"params": params["discriminator"]},
                                          discriminator_inputs(config, z, penalty_components, moments), True),
            samples[:n])
        metrics["r1"] = jnp.mean(squared_norms)
        loss = loss + 0.5 * config.gradient_penalty * metrics["r1"]
    return LossOutput(loss, {**batch_stats, "discriminator": disc_stats}, metrics)


def make_optimizer(config: AAEConfig, rate: float | None = None) -> optax.GradientTransformation:
    """``torch_adam`` at ``rate`` (None: ``learning_rate``), cosine-decayed over ``decay_steps`` when set."""
    rate = config.learning_rate if rate is None else rate
    if config.decay_steps:
        rate = optax.cosine_decay_schedule(rate, config.decay_steps, alpha=0.01)
    return torch_adam(rate, config.weight_decay)


def make_model(config: AAEConfig, prior: Sampler) -> Model:
    """The AAE for the generic loop; params/batch_stats hold encoder, decoder, discriminator."""
    parts = make_parts(config, prior)
    generator_phases = () if config.generator_optimizer == "shared" else (
        Phase("generator", functools.partial(generator_loss, parts), make_optimizer(config, config.generator_learning_rate),
              ("encoder",)),)
    phases = (
        Phase("autoencoder", functools.partial(autoencoder_loss, parts), make_optimizer(config), ("encoder", "decoder")),
        *generator_phases,
        Phase("discriminator", functools.partial(discriminator_loss, parts),
              make_optimizer(config, config.adversary_learning_rate), ("discriminator",)),
    )
    functions = autoencoder_functions(parts)
    return Model(init=functools.partial(init, parts), phases=phases, encode=functions.encode, decode=functions.decode)


def discriminator_logits(config: AAEConfig, params: Params, batch_stats: BatchStats, codes: jax.Array,
                         train: bool = False, labels: jax.Array | None = None,
                         moments: Moments | None = None) -> jax.Array:
    """The discriminator's logits (N, 1) for codes (N, latent_dim) (and their labels (N,) if
    label-conditioned, the prior's ``component_moments`` if standardised); eval mode unless ``train``."""
    _, _, discriminator = make_modules(config)
    return apply_inference(discriminator, module_variables(params, batch_stats, "discriminator"),
                           discriminator_inputs(config, codes, labels, moments), train)


def prior_match(config: AAEConfig, params: Params, batch_stats: BatchStats, codes: np.ndarray | jax.Array,
                prior: Prior, key: jax.Array, labels: np.ndarray | jax.Array | None = None) -> dict[str, Any]:
    """How well codes (N, latent_dim) match the prior.

    ``inside_support``: share of codes inside the prior's support. The discriminator (eval
    mode, running statistics) then judges the codes and as many prior samples:
    ``discriminator_accuracy`` is its balanced accuracy (0.5 is chance: it cannot tell
    codes from prior samples), with the two halves beside it. Label-conditioned models
    need the codes' ``labels`` (N,) and also report ``inside_own_component``: the share of
    codes inside the component of their own label. Under ``component_assignment="balanced"``
    ``labels`` are ignored: each code's component is its ``balanced_components`` one.
    """
    codes = jnp.asarray(codes, jnp.float32)
    if codes.ndim != 2 or codes.shape[1] != config.latent_dim:
        raise ValueError(f"codes must have shape (N, {config.latent_dim}), got {codes.shape}")
    if labels is not None:
        labels = jnp.asarray(labels, jnp.int32)
        if labels.shape != codes.shape[:1]:
            raise ValueError(f"labels must have shape ({codes.shape[0]},), got {labels.shape}")
    samples, components = prior_samples(config, prior, key, codes.shape[0])
    moments = component_moments(prior) if config.needs_component_moments else None
    labels = code_components(config, codes, labels, moments)
    code_logits = discriminator_logits(config, params, batch_stats, codes, labels=labels, moments=moments)
    prior_logits = discriminator_logits(config, params, batch_stats, samples, labels=components, moments=moments)
    codes_right, prior_right = float(jnp.mean(code_logits < 0)), float(jnp.mean(prior_logits > 0))
    own = {}
    if config.label_conditioning:
        own["inside_own_component"] = float(jnp.mean(prior.component_contains(codes, labels)))
    return {
        "prior": prior.name,
        "inside_support": float(jnp.mean(prior.contains(codes))),
        **own,
        "discriminator_accuracy": 0.5 * (codes_right + prior_right),
        "codes_called_codes": codes_right,
        "prior_called_prior": prior_right,
        "code_min": np.asarray(codes.min(0)).tolist(),
        "code_max": np.asarray(codes.max(0)).tolist(),
    }
