"""The semi-supervised AAE (aejax.semi_supervised): phases, the named losses, data helpers,
prediction, augmentation and pseudo-labels."""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import data
from aejax import semi_supervised as semi
from aejax import train as train_lib
from adversarial_support import (B, FlatEncoder, LinearCritic, assert_config_fields_documented,
                                 assert_decay_lowers_every_phase_rate, assert_label_head_model, assert_phase_changed_only,
                                 phase_runner, softplus, state_without_compiling_init)

NUM_CLASSES = 10
STYLE_DIM = 4
SEMI_CONFIG = semi.SemiSupervisedConfig(latent_dim=STYLE_DIM, discriminator_hidden=(32, 32))


@pytest.fixture(scope="module")
def semi_dataset(mnist):
    train = mnist["train"]
    small = data.Split(train.images[:1000], train.labels[:1000])
    labelled = np.sort(np.concatenate([np.flatnonzero(small.labels == digit)[:2] for digit in range(NUM_CLASSES)]))
    return semi.make_dataset(small, labelled)


@pytest.fixture(scope="module")
def semi_batch(semi_dataset):
    return semi.gather(semi_dataset, jnp.arange(B))


@pytest.fixture(scope="module")
def semi_setup():
    model = semi.make_model(SEMI_CONFIG)
    return model, state_without_compiling_init(model, 2)


# ================================================================== the named losses, by hand

def test_generator_loss_by_hand():
    """A linear encoder (4 images of 2x2 pixels -> 3 label logits + a 2-D style) and linear discriminators:
    generator_weight * (mean BCE(label verdicts, 1) + mean BCE(style verdicts, 1))."""
    config = semi.SemiSupervisedConfig(latent_dim=2, num_classes=3, generator_weight=0.5)
    parts = dataclasses.replace(semi.make_parts(config),
                                modules=semi.SemiSupervisedModules(FlatEncoder(5), None, LinearCritic(), LinearCritic()))
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(4, 2, 2, 1)).astype(np.float32)
    w, label_w, style_w = (rng.normal(size=shape).astype(np.float32) for shape in ((4, 5), (3, 1), (2, 1)))
    params = {"encoder": {"Dense_0": {"kernel": jnp.asarray(w)}},
              "label_discriminator": {"Dense_0": {"kernel": jnp.asarray(label_w), "bias": jnp.asarray([0.5])}},
              "style_discriminator": {"Dense_0": {"kernel": jnp.asarray(style_w), "bias": jnp.asarray([-0.25])}}}
    batch_stats = {"encoder": {}, "label_discriminator": {}, "style_discriminator": {}}
    loss, stats, metrics, _ = semi.generator_loss(parts, params, batch_stats, {"image": jnp.asarray(images)},
                                                 jax.random.key(0), 0)
    out = images.reshape(4, 4).astype(np.float64) @ w
    probs = np.exp(out[:, :3]) / np.exp(out[:, :3]).sum(-1, keepdims=True)
    label_verdicts, style_verdicts = probs @ label_w + 0.5, out[:, 3:] @ style_w - 0.25
    expected = 0.5 * (softplus(-label_verdicts).mean() + softplus(-style_verdicts).mean())
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert metrics == {} and stats == batch_stats


def _linear_generator_loss(images, w, key, loss_fn=semi.generator_loss, **weights):
    """``loss_fn`` (generator_loss by default) with a linear encoder ``w`` (pixels -> 3 label logits +
    a 2-D style) and all-ones linear critics; ``weights``: the config's loss weights. Returns (loss, metrics)."""
    params = {"encoder": {"Dense_0": {"kernel": jnp.asarray(w)}},
              "label_discriminator": {"Dense_0": {"kernel": jnp.ones((3, 1)), "bias": jnp.zeros((1,))}},
              "style_discriminator": {"Dense_0": {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros((1,))}}}
    batch_stats = {"encoder": {}, "label_discriminator": {}, "style_discriminator": {}}
    config = semi.SemiSupervisedConfig(latent_dim=2, num_classes=3, **weights)
    parts = dataclasses.replace(semi.make_parts(config),
                                modules=semi.SemiSupervisedModules(FlatEncoder(5), None, LinearCritic(), LinearCritic()))
    loss, _, metrics, _ = loss_fn(parts, params, batch_stats, {"image": images}, key, 0)
    return float(loss), metrics


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_generator_loss_adds_the_batch_balance_term_by_hand():
    """balance_weight * (log K - H(mean softmax over the batch)) on top of the adversarial terms."""
    rng = np.random.default_rng(2)
    images = jnp.asarray(rng.uniform(size=(4, 2, 2, 1)).astype(np.float32))
    w = rng.normal(size=(4, 5)).astype(np.float32)
    probs = _softmax(np.asarray(images).reshape(4, 4).astype(np.float64) @ w[:, :3])
    mean = probs.mean(0)
    gap = np.log(3) + np.sum(mean * np.log(mean))
    plain, _ = _linear_generator_loss(images, w, jax.random.key(0))
    balanced, metrics = _linear_generator_loss(images, w, jax.random.key(0), balance_weight=2.0)
    np.testing.assert_allclose(balanced - plain, 2.0 * gap, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["balance_gap"]), gap, rtol=1e-4)
    assert gap > 0.01  # the random encoder is unbalanced enough for the term to show


def test_generator_loss_adds_the_confidence_and_shift_invariance_terms_by_hand():
    """confidence_weight * mean H(softmax) + invariance_weight * mean CE(logits of shifted copies,
    softmax of the originals), the copies shifted with the phase's key by up to 1 pixel."""
    rng = np.random.default_rng(3)
    images = jnp.asarray(rng.uniform(size=(4, 3, 3, 1)).astype(np.float32))
    w = rng.normal(size=(9, 5)).astype(np.float32)
    key = jax.random.key(7)
    probs = _softmax(np.asarray(images).reshape(4, 9).astype(np.float64) @ w[:, :3])
    entropy = -np.sum(probs * np.log(probs), -1).mean()
    shifted = np.asarray(data.random_shift(key, images, 1)).reshape(4, 9).astype(np.float64)
    assert not np.allclose(shifted, np.asarray(images).reshape(4, 9))  # the copies did move
    shifted_logits = shifted @ w[:, :3]
    log_q = shifted_logits - np.log(np.exp(shifted_logits).sum(-1, keepdims=True))
    invariance = -np.sum(probs * log_q, -1).mean()
    plain, _ = _linear_generator_loss(images, w, key)
    both, metrics = _linear_generator_loss(images, w, key, confidence_weight=0.5, invariance_weight=3.0)
    np.testing.assert_allclose(float(metrics["entropy"]), entropy, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["invariance"]), invariance, rtol=1e-4)
    np.testing.assert_allclose(both - plain, 0.5 * entropy + 3.0 * invariance, rtol=1e-4)


def test_label_terms_rate_moves_the_label_head_terms_from_the_generator_to_their_own_phase_by_hand():
    """With label_terms_rate > 0 the generator phase is the adversarial terms alone, and
    label_head_loss is balance + confidence + invariance on the same key's shifted copies."""
    rng = np.random.default_rng(5)
    images = jnp.asarray(rng.uniform(size=(4, 3, 3, 1)).astype(np.float32))
    w = rng.normal(size=(9, 5)).astype(np.float32)
    key = jax.random.key(11)
    weights = {"balance_weight": 2.0, "confidence_weight": 0.5, "invariance_weight": 3.0}
    probs = _softmax(np.asarray(images).reshape(4, 9).astype(np.float64) @ w[:, :3])
    mean = probs.mean(0)
    gap = np.log(3) + np.sum(mean * np.log(mean))
    entropy = -np.sum(probs * np.log(probs), -1).mean()
    shifted_logits = np.asarray(data.random_shift(key, images, 1)).reshape(4, 9).astype(np.float64) @ w[:, :3]
    log_q = shifted_logits - np.log(np.exp(shifted_logits).sum(-1, keepdims=True))
    invariance = -np.sum(probs * log_q, -1).mean()
    plain, _ = _linear_generator_loss(images, w, key)
    generator, generator_metrics = _linear_generator_loss(images, w, key, label_terms_rate=1e-3, **weights)
    head, head_metrics = _linear_generator_loss(images, w, key, semi.label_head_loss, label_terms_rate=1e-3, **weights)
    np.testing.assert_allclose(generator, plain, rtol=1e-6)
    assert generator_metrics == {}
    np.testing.assert_allclose(head, 2.0 * gap + 0.5 * entropy + 3.0 * invariance, rtol=1e-4)
    np.testing.assert_allclose([float(head_metrics[k]) for k in ("balance_gap", "entropy", "invariance")],
                               [gap, entropy, invariance], rtol=1e-4)
    # the same terms as the generator phase adds when they have no phase of their own
    joined, _ = _linear_generator_loss(images, w, key, **weights)
    np.testing.assert_allclose(joined - plain, head, rtol=1e-4)


def test_label_head_phase_trains_the_encoder_at_the_label_terms_rate():
    """A fifth phase after the generator's, on the encoder only; Adam's first step on a constant
    gradient is -rate per parameter."""
    model = semi.make_model(dataclasses.replace(SEMI_CONFIG, balance_weight=1.0, label_terms_rate=5e-3))
    assert [(p.name, p.loss_fn.func) for p in model.phases][2:4] == [
        ("generator", semi.generator_loss), ("label_head", semi.label_head_loss)]
    phase = model.phases[3]
    assert phase.trainable == ("encoder",)
    params = {"w": jnp.ones((2,))}
    step = phase.optimizer.update({"w": jnp.full((2,), 0.3)}, phase.optimizer.init(params), params)[0]["w"]
    np.testing.assert_allclose(np.asarray(step), -5e-3, rtol=1e-5)
    assert "label_head" not in [p.name for p in semi.make_model(SEMI_CONFIG).phases]


class ConcatDecoder(nn.Module):
    """A linear decoder of concat(style, labels) -> (B, 2, 2, 1) logits, without BatchNorm."""

    @nn.compact
    def __call__(self, z: jax.Array, train: bool, labels: jax.Array) -> jax.Array:
        del train
        return nn.Dense(4, use_bias=False)(jnp.concatenate([z, labels], -1)).reshape(-1, 2, 2, 1)


def test_straight_through_decoder_label_reads_the_one_hot_and_passes_the_softmax_gradient():
    rng = np.random.default_rng(4)
    images = jnp.asarray(rng.uniform(size=(4, 2, 2, 1)).astype(np.float32))
    w_enc, w_dec = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    params = {"encoder": {"Dense_0": {"kernel": jnp.asarray(w_enc)}}, "decoder": {"Dense_0": {"kernel": jnp.asarray(w_dec)}}}
    batch_stats = {"encoder": {}, "decoder": {}}
    modules = semi.SemiSupervisedModules(FlatEncoder(5), ConcatDecoder(), None, None)

    def reconstruction(decoder_label, params):
        config = semi.SemiSupervisedConfig(latent_dim=2, num_classes=3, decoder_label=decoder_label)
        parts = dataclasses.replace(semi.make_parts(config), modules=modules)
        return semi.autoencoder_loss(parts, params, batch_stats, {"image": images}, jax.random.key(0), 0)[0]

    out = np.asarray(images).reshape(4, 4).astype(np.float64) @ w_enc
    one_hot = np.eye(3)[np.argmax(out[:, :3], -1)]
    logits = np.concatenate([out[:, 3:], one_hot], -1) @ w_dec
    expected = softplus(-logits) * np.asarray(images).reshape(4, 4) + softplus(logits) * (1 - np.asarray(images).reshape(4, 4))
    np.testing.assert_allclose(float(reconstruction("straight_through", params)), expected.mean(), rtol=1e-5)
    assert abs(float(reconstruction("softmax", params)) - expected.mean()) > 1e-4  # the paper's reads the softmax
    # the label head still learns from reconstruction: the gradient flows as through the softmax
    grad = jax.grad(lambda p: reconstruction("straight_through", p))(params)["encoder"]["Dense_0"]["kernel"]
    assert float(jnp.max(jnp.abs(grad[:, :3]))) > 1e-4


def test_make_model_assembles_the_named_losses():
    model = semi.make_model(SEMI_CONFIG)
    assert [(p.name, p.loss_fn.func) for p in model.phases] == [
        ("autoencoder", semi.autoencoder_loss), ("discriminators", semi.discriminators_loss),
        ("generator", semi.generator_loss), ("supervised", semi.supervised_loss)]
    parts = model.phases[0].loss_fn.args[0]
    assert parts.config == SEMI_CONFIG and parts.label_prior.dim == NUM_CLASSES and parts.style_prior.dim == STYLE_DIM


def test_adversarial_learning_rate_covers_the_discriminators_and_the_generator():
    """Adam's first step on a constant gradient is -rate per parameter."""
    model = semi.make_model(dataclasses.replace(SEMI_CONFIG, adversarial_learning_rate=2e-4))
    params = {"w": jnp.ones((2,))}
    rates = {phase.name: -float(phase.optimizer.update({"w": jnp.full((2,), 0.3)}, phase.optimizer.init(params),
                                                       params)[0]["w"][0])
             for phase in model.phases}
    assert rates == pytest.approx({"autoencoder": 1e-3, "discriminators": 2e-4, "generator": 2e-4, "supervised": 1e-3},
                                  rel=1e-5)


def test_semi_supervised_config_fields_are_documented_for_the_command_line():
    assert_config_fields_documented(semi.SemiSupervisedConfig,
                                    {"num_classes", "decay_steps", "discriminator_hidden", "semi_supervised", "image_shape"},
                                    {})


def test_label_head_variants_import_label_style_not_each_other():
    """disentangled and semi_supervised both build on label_style; neither imports another variant."""
    root = pathlib.Path(semi.__file__).parent
    for name, others in (("semi_supervised", {"disentangled", "aae"}), ("disentangled", {"semi_supervised", "aae"})):
        tree = ast.parse((root / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {f"aejax.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     and node.module == "aejax" for alias in node.names}
        assert "aejax.label_style" in imported, name
        assert not imported & {f"aejax.{other}" for other in others}, name


# ================================================================== prediction

def test_predict_labels_compiles_once_per_model_and_shape():
    traces = []

    def classify(params, batch_stats, images, train=False):
        traces.append(images.shape)  # runs once per trace, not per call
        return images.reshape(images.shape[0], -1)[:, :3] * params["w"]

    model = train_lib.Model(init=None, phases=(), encode=None, decode=None, classify=classify)
    images = np.zeros((8, 28, 28), np.uint8)
    images[:, 0, :3] = np.asarray([[9, 5, 1], [0, 4, 8]] * 4, np.uint8)
    dataset = {"image": jnp.asarray(images), "label": jnp.zeros((8,), jnp.int32)}
    first = semi.predict_labels(model, {"w": jnp.ones((3,))}, {}, dataset, batch_size=4)
    np.testing.assert_array_equal(first, [0, 2] * 4)
    second = semi.predict_labels(model, {"w": jnp.asarray([1.0, 3.0, 1.0])}, {}, dataset, batch_size=4)
    np.testing.assert_array_equal(second, [1, 1] * 4)  # scores 9, 15, 1 and 0, 12, 8
    assert traces == [(4, 28, 28, 1)]


# ================================================================== shapes; each phase updates only its modules

def test_label_head_shapes_and_decoding_by_labels_or_probabilities(semi_setup, semi_batch):
    model, state = semi_setup
    assert_label_head_model(model, state, semi_batch["image"], NUM_CLASSES, STYLE_DIM)


def test_semi_supervised_discriminators_phase_updates_both_discriminators_only(semi_setup, semi_batch):
    model, s0 = semi_setup
    after, metrics = phase_runner(model, 1, 2)(s0, semi_batch)
    assert_phase_changed_only(s0, after, "discriminators", ("label_discriminator", "style_discriminator"))
    np.testing.assert_allclose(float(metrics["loss"]), float(metrics["label_loss"] + metrics["style_loss"]), rtol=1e-6)


def test_semi_supervised_generator_phase_updates_encoder_only(semi_setup, semi_batch):
    model, s0 = semi_setup
    after, _ = phase_runner(model, 2, 3)(s0, semi_batch)
    assert_phase_changed_only(s0, after, "generator", ("encoder",))


def test_semi_supervised_supervised_phase_updates_encoder_only(semi_setup, semi_batch):
    model, s0 = semi_setup
    assert model.phases[3].name == "supervised"
    after, metrics = phase_runner(model, 3, 4)(s0, semi_batch)
    assert_phase_changed_only(s0, after, "supervised", ("encoder",))
    # its loss reads the labelled images and labels, in train mode
    logits = jax.jit(model.classify, static_argnames="train")(s0.params, s0.batch_stats, semi_batch["labelled_image"],
                                                              train=True)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, semi_batch["labelled_label"]).mean()
    np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)


def test_semi_supervised_phases_with_and_without_labels():
    with_labels = semi.make_model(SEMI_CONFIG)
    without = semi.make_model(semi.SemiSupervisedConfig(latent_dim=STYLE_DIM, discriminator_hidden=(32, 32),
                                                        semi_supervised=False))
    assert [p.name for p in with_labels.phases] == ["autoencoder", "discriminators", "generator", "supervised"]
    assert [p.name for p in without.phases] == ["autoencoder", "discriminators", "generator"]
    assert [p.trainable for p in without.phases] == [("encoder", "decoder"),
                                                     ("label_discriminator", "style_discriminator"), ("encoder",)]


def test_semi_supervised_label_prior_temperature_reaches_the_discriminators():
    """The discriminators' loss on the same parameters, batch and key: one-hot and relaxed
    prior samples are judged differently; two relaxed runs agree."""
    batch = {"image": jax.random.uniform(jax.random.key(2), (B, 28, 28, 1))}
    losses_by_temperature = []
    for temperature in (0.0, 0.5, 0.5):
        model = semi.make_model(dataclasses.replace(SEMI_CONFIG, semi_supervised=False,
                                                    categorical_temperature=temperature))
        s0 = state_without_compiling_init(model, 3)
        _, _, metrics, _ = model.phases[1].loss_fn(s0.params, s0.batch_stats, batch, jax.random.key(0), 0)
        losses_by_temperature.append(float(metrics["label_loss"]))
    one_hot, relaxed, relaxed_again = losses_by_temperature
    assert relaxed == relaxed_again
    assert abs(one_hot - relaxed) > 1e-4


# ================================================================== semi_supervised data helpers

def test_balanced_subset_per_class_no_duplicates_deterministic():
    # equally large classes, so that jax.random.choice compiles once (MNIST's ten sizes cost ten compiles)
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(8), 30))
    chosen = semi.balanced_subset(labels, 5, jax.random.key(0), 8)
    chex.assert_shape(chosen, (40,))
    assert len(np.unique(chosen)) == 40
    np.testing.assert_array_equal(chosen, np.sort(chosen))
    np.testing.assert_array_equal(np.bincount(labels[chosen], minlength=8), 5)
    np.testing.assert_array_equal(semi.balanced_subset(labels, 5, jax.random.key(0), 8), chosen)
    assert not np.array_equal(semi.balanced_subset(labels, 5, jax.random.key(1), 8), chosen)


def test_balanced_subset_rejects_small_classes_and_bad_per_class():
    labels = np.asarray([0, 0, 0, 1, 1, 2, 2, 2, 2])
    chosen = semi.balanced_subset(labels, 2, jax.random.key(0), num_classes=2)  # class 2 is not asked for
    np.testing.assert_array_equal(np.bincount(labels[chosen], minlength=3), [2, 2, 0])
    with pytest.raises(ValueError, match=r"^class 1 has 2 examples, fewer than per_class=3$"):
        semi.balanced_subset(labels, 3, jax.random.key(0), num_classes=3)
    with pytest.raises(ValueError, match=r"^class 3 has 0 examples, fewer than per_class=1$"):
        semi.balanced_subset(labels, 1, jax.random.key(0), num_classes=4)
    with pytest.raises(ValueError, match="per_class must be positive"):
        semi.balanced_subset(labels, 0, jax.random.key(0), num_classes=3)


@pytest.mark.parametrize("total, num_classes, per_class", [(100, 10, 10), (96, 8, 12), (16, 16, 1)])
def test_labels_per_class_divides_evenly(total, num_classes, per_class):
    assert semi.labels_per_class(total, num_classes) == per_class


@pytest.mark.parametrize("total, num_classes, message", [
    (100, 8, r"^100 labels cannot be balanced over 8 classes: give a multiple of 8$"),
    (15, 10, "15 labels cannot be balanced over 10 classes"),
    (0, 10, "need a positive label count"), (10, 0, "need a positive label count and class count"),
])
def test_labels_per_class_rejects_uneven_or_empty_counts(total, num_classes, message):
    with pytest.raises(ValueError, match=message):
        semi.labels_per_class(total, num_classes)


def test_make_dataset_hides_labels_and_keeps_the_labelled_subset(mnist):
    split = data.Split(mnist["train"].images[:20], mnist["train"].labels[:20])
    labelled = np.asarray([2, 5, 11])
    dataset = semi.make_dataset(split, labelled)
    assert set(dataset) == {"image", "label", "labelled_image", "labelled_label"}
    np.testing.assert_array_equal(dataset["image"], split.images)
    np.testing.assert_array_equal(dataset["label"], -1)
    chex.assert_type(dataset["label"], jnp.int32)
    np.testing.assert_array_equal(dataset["labelled_image"], split.images[labelled])
    np.testing.assert_array_equal(dataset["labelled_label"], split.labels[labelled])
    chex.assert_type(dataset["labelled_label"], jnp.int32)
    assert set(semi.make_dataset(split, None)) == {"image", "label"}
    for bad in (np.asarray([], np.int64), np.asarray([[1, 2]])):
        with pytest.raises(ValueError, match="labelled"):
            semi.make_dataset(split, bad)


def test_gather_draws_labelled_images_from_the_subset(mnist):
    split = data.Split(mnist["train"].images[:20], mnist["train"].labels[:20])
    labelled = np.asarray([2, 5, 11])
    dataset = semi.make_dataset(split, labelled)
    indices = jnp.asarray([0, 4, 7, 19])
    batch = semi.gather(dataset, indices)
    assert set(batch) == {"image", "label", "labelled_image", "labelled_label"}
    chex.assert_shape([batch["image"], batch["labelled_image"]], (4, 28, 28, 1))
    chex.assert_type([batch["image"], batch["labelled_image"]], jnp.float32)
    chex.assert_shape(batch["labelled_label"], (4,))
    np.testing.assert_array_equal(batch["label"], -1)
    np.testing.assert_allclose(batch["image"], data.to_float_nhwc(split.images[np.asarray(indices)]))
    pick = np.asarray(indices) % 3  # [0, 1, 1, 1]
    np.testing.assert_array_equal(batch["labelled_label"], split.labels[labelled][pick])
    np.testing.assert_allclose(batch["labelled_image"], data.to_float_nhwc(split.images[labelled][pick]))
    assert set(semi.gather(semi.make_dataset(split, None), indices)) == {"image", "label"}


# ================================================================== semi-supervised: augmentation and pseudo-labels

def test_supervised_phase_with_shifts_and_pseudo_labels_by_hand(semi_batch):
    shift, weight = 2, 2.0
    config = dataclasses.replace(SEMI_CONFIG, augment_shift=shift, consistency_weight=weight, confidence_threshold=1e-6)
    model = semi.make_model(config)
    s0 = state_without_compiling_init(model, 3)
    supervised = model.phases[3]
    key = jax.random.key(21)
    loss, new_stats, metrics, _ = jax.jit(supervised.loss_fn)(s0.params, s0.batch_stats, semi_batch, key, 0)

    labelled_key, unlabelled_key = jax.random.split(key)
    images = jnp.concatenate([data.random_shift(labelled_key, semi_batch["labelled_image"], shift),
                              data.random_shift(unlabelled_key, semi_batch["image"], shift)])
    classify = jax.jit(model.classify, static_argnames="train")
    logits = classify(s0.params, s0.batch_stats, images, train=True)  # one pass: one set of batch statistics
    targets = jnp.argmax(classify(s0.params, s0.batch_stats, semi_batch["image"], train=True), -1)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:B], semi_batch["labelled_label"]).mean()
    pseudo = optax.softmax_cross_entropy_with_integer_labels(logits[B:], targets).mean()
    assert float(metrics["confident_share"]) == 1.0  # every image above a threshold of 1e-6
    np.testing.assert_allclose(float(metrics["consistency"]), float(pseudo), rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(ce + weight * pseudo), rtol=1e-5)
    # the shifts are drawn from the phase's key: another key, other images, another loss
    other, *_ = jax.jit(supervised.loss_fn)(s0.params, s0.batch_stats, semi_batch, jax.random.key(22), 0)
    assert abs(float(other) - float(loss)) > 1e-6
    after, _ = phase_runner(model, 3, 4)(s0, semi_batch)
    assert_phase_changed_only(s0, after, "supervised", ("encoder",))


def test_pseudo_labels_only_from_confident_images(semi_batch):
    config = dataclasses.replace(SEMI_CONFIG, consistency_weight=1.0, confidence_threshold=1.0)
    model = semi.make_model(config)
    s0 = state_without_compiling_init(model, 3)
    probs = jax.nn.softmax(jax.jit(model.classify, static_argnames="train")(
        s0.params, s0.batch_stats, semi_batch["image"], train=True))
    assert float(jnp.max(probs)) < 1.0  # so no image reaches a threshold of 1
    loss, _, metrics, _ = jax.jit(model.phases[3].loss_fn)(s0.params, s0.batch_stats, semi_batch, jax.random.key(0), 0)
    assert float(metrics["confident_share"]) == 0.0 and float(metrics["consistency"]) == 0.0
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("kwargs, message", [
    ({"augment_shift": -1}, "need augment_shift >= 0"), ({"consistency_weight": -1.0}, "consistency_weight >= 0"),
    ({"confidence_threshold": 0.0}, "0 < confidence_threshold <= 1"),
    ({"confidence_threshold": 1.5}, "0 < confidence_threshold <= 1"),
    ({"consistency_weight": 1.0, "semi_supervised": False}, "consistency_weight needs semi_supervised=True"),
    ({"categorical_temperature": -0.1}, "categorical_temperature must be >= 0"),
    ({"adversarial_learning_rate": 0.0}, "learning rates must be > 0"), ({"num_classes": 1}, "num_classes > 1"),
    ({"decay_steps": -1}, "decay_steps must be >= 0"), ({"balance_weight": -1.0}, "loss weights must be >= 0"),
    ({"balance_weight": float("nan")}, "loss weights must be >= 0"),
    ({"label_terms_rate": -1e-3}, "label_terms_rate must be >= 0"),
    ({"label_terms_rate": 1e-3}, "label_terms_rate needs a label-head term"),
    ({"decoder_label": "argmax"}, "decoder_label must be one of"), ({"confidence_weight": -0.1}, "loss weights must be >= 0"), ({"invariance_weight": -1.0}, "loss weights must be >= 0"),
])
def test_semi_supervised_config_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        semi.SemiSupervisedConfig(**kwargs)


@pytest.mark.slow
def test_decay_steps_lower_every_phase_rate(semi_batch):
    """decay_steps=1: the first step at the full rates, the second at 1% of them, in all four phases."""
    assert_decay_lowers_every_phase_rate(semi.make_model(dataclasses.replace(SEMI_CONFIG, decay_steps=1)),
                                         semi.make_model(SEMI_CONFIG), semi_batch)
