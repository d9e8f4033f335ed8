"""The adversarial autoencoder (section 8) as a variant: three phases, three optimizers.

One training step runs the lecture's three updates in its order, inside one compiled
step (``train.apply_phases``):

1. ``autoencoder`` (encoder + decoder): mean-over-pixels BCE of the reconstruction;
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
prior samples. Unregularised, the code/prior game oscillates instead of settling (the
10-epoch runs in the README); R1 makes the discriminator flat on the prior's support,
the equilibrium at which the codes have matched it.

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
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax import losses
from aejax.modules import Decoder, Discriminator, Encoder, apply_inference, apply_training, init_encoder_decoder
from aejax.priors import Prior, Sampler
from aejax.train import Model, Params, BatchStats, Phase, module_variables
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


@dataclasses.dataclass(frozen=True)
class AAEConfig:
    latent_dim: int = 2
    learning_rate: float = 1e-3  # all three optimizers, unless one of the two below is set
    # Adam normalises each phase's step, so generator_weight hardly weakens the generator
    # phase; a smaller generator rate does (two time scales, encoder-fooling vs discriminator).
    generator_learning_rate: float | None = None
    discriminator_learning_rate: float | None = None
    weight_decay: float = 1e-6  # PyTorch-style coupled L2, all three
    generator_weight: float = 0.01
    prior_samples_per_code: int = 20  # the lecture: 20 (uniform run), 10 (ten-box run)
    discriminator_norm: DiscriminatorNorm = "batch_separate"
    discriminator_loss: DiscriminatorLoss = "pooled"
    gradient_penalty: float = 0.0  # R1 weight gamma on prior samples; 0: none (the lecture)
    generator_optimizer: GeneratorOptimizer = "separate"
    label_conditioning: bool = False  # the discriminator sees (code, one-hot label); a mixture prior
    num_classes: int = 10  # labels 0..num_classes-1, one per prior component (label_conditioning only)
    standardize_components: bool = False  # discriminator input (z - mean_k) / std_k; needs label_conditioning
    # > 0: every rate follows a cosine decay to 1% over this many steps (the run's length), so
    # the adversarial game's jitter shrinks at the end instead of being frozen at full rate
    decay_steps: int = 0

    def __post_init__(self):
        if self.latent_dim <= 0 or self.prior_samples_per_code <= 0:
            raise ValueError(f"latent_dim and prior_samples_per_code must be positive, got "
                             f"{self.latent_dim} and {self.prior_samples_per_code}")
        rates = (self.learning_rate, self.generator_learning_rate, self.discriminator_learning_rate)
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
        if self.decay_steps < 0:
            raise ValueError(f"decay_steps must be >= 0, got {self.decay_steps}")

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


def make_modules(config: AAEConfig) -> tuple[Encoder, Decoder, Discriminator]:
    return Encoder(config.latent_dim), Decoder(latent_dim=config.latent_dim), Discriminator(batch_norm=config.discriminator_norm != "none")


def _check_prior(prior: Sampler, config: AAEConfig) -> None:
    shape = jax.eval_shape(lambda key: prior(key, 3), jax.random.key(0)).shape
    if shape != (3, config.latent_dim):
        raise ValueError(f"prior(key, n) must return (n, {config.latent_dim}) codes, got shape {shape} for n=3")
    if config.label_conditioning and (getattr(prior, "sample_components", None) is None
                                      or prior.num_components != config.num_classes):
        raise ValueError(f"label_conditioning needs a mixture prior with {config.num_classes} components "
                         f"(priors.Prior.sample_components), got {getattr(prior, 'name', prior)!r}")


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


def prior_samples(config: AAEConfig, prior: Sampler, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array | None]:
    """n prior samples (n, latent_dim) and, under ``label_conditioning``, their components (n,)
    (equally many of each, as the lecture's box sampler); else None."""
    if not config.label_conditioning:
        return prior(key, n), None
    components = jnp.arange(n) % config.num_classes
    return prior.sample_components(key, components), components


def make_model(config: AAEConfig, prior: Sampler) -> Model:
    """The AAE for the generic loop; params/batch_stats hold encoder, decoder, discriminator."""
    _check_prior(prior, config)
    encoder, decoder, discriminator = make_modules(config)
    moments = component_moments(prior) if config.standardize_components else None
    joint = config.discriminator_norm == "batch_joint"
    shared = config.generator_optimizer == "shared"

    def init(key):
        key, disc_key = jax.random.split(key)
        params, batch_stats = init_encoder_decoder(key, encoder, decoder, config.latent_dim)
        disc = discriminator.init(disc_key, jnp.zeros((1, config.discriminator_input_dim)), False)
        return ({**params, "discriminator": disc["params"]},
                {**batch_stats, "discriminator": disc.get("batch_stats", {})})

    def generator_term(params, batch_stats, codes, labels, key):
        """generator_weight * BCE(D(codes), 1), the discriminator's updated statistics, metrics."""
        disc_vars = module_variables(params, batch_stats, "discriminator")
        inputs = discriminator_inputs(config, codes, labels, moments)
        if joint:  # the codes are normalised together with prior samples, as in the discriminator phase
            samples, components = prior_samples(config, prior, key, codes.shape[0] * config.prior_samples_per_code)
            both = jnp.concatenate([inputs, discriminator_inputs(config, samples, components, moments)])
            logits, disc_stats = apply_training(discriminator, disc_vars, both)
            logits = logits[: codes.shape[0]]
        else:
            logits, disc_stats = apply_training(discriminator, disc_vars, inputs)
        loss = config.generator_weight * jnp.mean(adversarial_bce(logits, 1.0))
        return loss, disc_stats, {"codes_called_prior": jnp.mean(logits > 0)}

    def autoencoder_loss(params, batch_stats, batch, key, step=None):
        del step
        images = batch["image"]
        codes, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), images)
        logits, decoder_stats = apply_training(decoder, module_variables(params, batch_stats, "decoder"), codes)
        bce = jnp.mean(losses.binary_cross_entropy_with_logits(logits, images))
        new_stats = {**batch_stats, "encoder": encoder_stats, "decoder": decoder_stats}
        if not shared:
            return bce, (new_stats, {"bce": bce})
        generator, disc_stats, metrics = generator_term(params, batch_stats, codes, batch.get("label"), key)
        metrics = {"bce": bce, "generator": generator, **metrics}
        return bce + generator, ({**new_stats, "discriminator": disc_stats}, metrics, {"codes": codes})

    def generator_loss(params, batch_stats, batch, key, step=None):
        del step
        codes, encoder_stats = apply_training(encoder, module_variables(params, batch_stats, "encoder"), batch["image"])
        loss, disc_stats, metrics = generator_term(params, batch_stats, codes, batch.get("label"), key)
        return loss, ({**batch_stats, "encoder": encoder_stats, "discriminator": disc_stats}, metrics, {"codes": codes})

    def discriminator_loss(params, batch_stats, batch, key, step=None):
        del step
        codes = batch["codes"]  # the generator's codes (the autoencoder phase's if shared), gradient stopped
        samples, components = prior_samples(config, prior, key, codes.shape[0] * config.prior_samples_per_code)
        code_inputs = discriminator_inputs(config, codes, batch.get("label"), moments)
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
            squared_norms = r1_penalty(
                lambda z: discriminator.apply({"params": params["discriminator"]},
                                              discriminator_inputs(config, z, None if components is None else components[:n],
                                                                   moments),
                                              True),
                samples[:n])
            metrics["r1"] = jnp.mean(squared_norms)
            loss = loss + 0.5 * config.gradient_penalty * metrics["r1"]
        return loss, ({**batch_stats, "discriminator": disc_stats}, metrics)

    def encode(params, batch_stats, images, labels=None, train=False):
        del labels
        return apply_inference(encoder, module_variables(params, batch_stats, "encoder"), images, train)

    def decode(params, batch_stats, latents, labels=None, train=False):
        del labels
        return apply_inference(decoder, module_variables(params, batch_stats, "decoder"), latents, train)

    def optimizer(rate=None):
        rate = config.learning_rate if rate is None else rate
        if config.decay_steps:
            rate = optax.cosine_decay_schedule(rate, config.decay_steps, alpha=0.01)
        return torch_adam(rate, config.weight_decay)

    generator_phases = () if shared else (
        Phase("generator", generator_loss, optimizer(config.generator_learning_rate), ("encoder",)),)
    phases = (
        Phase("autoencoder", autoencoder_loss, optimizer(), ("encoder", "decoder")),
        *generator_phases,
        Phase("discriminator", discriminator_loss, optimizer(config.discriminator_learning_rate), ("discriminator",)),
    )
    return Model(init=init, phases=phases, encode=encode, decode=decode)


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
    codes inside the component of their own label.
    """
    codes = jnp.asarray(codes, jnp.float32)
    if codes.ndim != 2 or codes.shape[1] != config.latent_dim:
        raise ValueError(f"codes must have shape (N, {config.latent_dim}), got {codes.shape}")
    if labels is not None:
        labels = jnp.asarray(labels, jnp.int32)
        if labels.shape != codes.shape[:1]:
            raise ValueError(f"labels must have shape ({codes.shape[0]},), got {labels.shape}")
    samples, components = prior_samples(config, prior, key, codes.shape[0])
    moments = component_moments(prior) if config.standardize_components else None
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
