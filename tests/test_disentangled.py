"""The disentangled AAE (aejax.disentangled) and what it shares with the semi-supervised
AAE (aejax.label_style); the label-conditioned decoder input (modules.condition_on_labels)."""

from __future__ import annotations

import dataclasses
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import data, disentangled, inference, label_style, losses
from aejax import train as train_lib
from aejax.model import split_moments
from aejax.modules import apply_training, condition_on_labels
from adversarial_support import (B, FlatEncoder, assert_config_fields_documented, assert_label_head_model,
                                 assert_phase_changed_only, phase_runner, state_without_compiling_init)
from support import max_abs_diff

NUM_CLASSES = 10
STYLE_DIM = 4
DIS_CONFIG = disentangled.DisentangledConfig(latent_dim=STYLE_DIM, adversary_hidden=(32, 32))


def _standardized(z: np.ndarray) -> np.ndarray:
    return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    return x - np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1, keepdims=True)) - x.max(-1, keepdims=True)


@pytest.fixture(scope="module")
def batch(mnist):
    test = mnist["test"]
    return data.gather_batch({"image": jnp.asarray(test.images[:B]), "label": jnp.asarray(test.labels[:B], jnp.int32)},
                             jnp.arange(B))


@pytest.fixture(scope="module")
def dis_setup():
    model = disentangled.make_model(DIS_CONFIG)
    return model, state_without_compiling_init(model, 1)


# ================================================================== the named losses, by hand

def test_confusion_and_adversary_losses_by_hand():
    """A linear encoder and a linear adversary on 4 images of 2x2 pixels, 3 classes, a 2-D style."""
    config = disentangled.DisentangledConfig(latent_dim=2, num_classes=3, confusion_weight=0.5, class_mean_weight=0.25)
    parts = disentangled.DisentangledParts(config, disentangled.DisentangledModules(FlatEncoder(5), None, nn.Dense(3)))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(4, 2, 2, 1)).astype(np.float32)
    labels = np.asarray([0, 1, 2, 1])
    w, a, a0 = (rng.normal(size=shape).astype(np.float32) for shape in ((4, 5), (2, 3), (3,)))
    params = {"encoder": {"Dense_0": {"kernel": jnp.asarray(w)}},
              "label_adversary": {"kernel": jnp.asarray(a), "bias": jnp.asarray(a0)}}
    batch_stats = {"encoder": {}, "label_adversary": {}}
    batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}
    loss, _, metrics, carry = disentangled.confusion_loss(parts, params, batch_stats, batch, jax.random.key(0), 0)

    z = (images.reshape(4, 4).astype(np.float64) @ w)[:, 3:]  # after the 3 label logits
    np.testing.assert_allclose(carry["style"], z, rtol=1e-5)
    uniform_ce = -_log_softmax(_standardized(z) @ a + a0).mean(-1)
    class_means = np.stack([z[labels == c].mean(0) for c in range(3)])
    between = sum(np.sum(labels == c) * np.sum((class_means[c] - z.mean(0)) ** 2) for c in range(3)) / 4
    share = between / z.var(0).sum()
    np.testing.assert_allclose(float(metrics["class_mean_share"]), share, rtol=1e-4)
    np.testing.assert_allclose(float(loss), 0.5 * uniform_ce.mean() + 0.25 * share, rtol=1e-4)

    style = rng.normal(size=(4, 2)).astype(np.float32)
    adversary, stats, adversary_metrics, _ = disentangled.adversary_loss(
        parts, params, batch_stats, {**batch, "style": jnp.asarray(style)}, jax.random.key(0), 0)
    logits = _standardized(style.astype(np.float64)) @ a + a0
    np.testing.assert_allclose(float(adversary), -np.mean(_log_softmax(logits)[np.arange(4), labels]), rtol=1e-5)
    np.testing.assert_allclose(float(adversary_metrics["accuracy"]), np.mean(logits.argmax(-1) == labels))
    assert stats is batch_stats


def test_make_model_assembles_the_named_losses():
    model = disentangled.make_model(DIS_CONFIG)
    assert [(p.name, p.loss_fn.func, p.trainable) for p in model.phases] == [
        ("autoencoder", disentangled.autoencoder_loss, ("encoder", "decoder")),
        ("confusion", disentangled.confusion_loss, ("encoder",)),
        ("label_adversary", disentangled.adversary_loss, ("label_adversary",))]
    assert model.phases[0].loss_fn.args[0].normalizer is None
    class_norm = disentangled.make_model(dataclasses.replace(DIS_CONFIG, style_normalization="class"))
    assert class_norm.phases[0].trainable == ("encoder", "decoder", "style_norm")
    assert isinstance(class_norm.phases[0].loss_fn.args[0].normalizer, label_style.ClassStandardize)


def test_disentangled_config_fields_are_documented_for_the_command_line():
    assert_config_fields_documented(disentangled.DisentangledConfig, {"num_classes", "adversary_hidden", "image_shape"}, {
        "decoder_label": ("predicted", "true"), "style_normalization": ("none", "class")})


def test_adversary_learning_rate_sets_the_label_adversarys_rate_only():
    """Adam's first step on a constant gradient is -rate per parameter."""
    model = disentangled.make_model(dataclasses.replace(DIS_CONFIG, weight_decay=0.0, adversary_learning_rate=4e-3))
    params = {"w": jnp.ones((2,))}
    rates = {phase.name: -float(phase.optimizer.update({"w": jnp.full((2,), 0.3)}, phase.optimizer.init(params),
                                                       params)[0]["w"][0])
             for phase in model.phases}
    assert rates == pytest.approx({"autoencoder": 1e-3, "confusion": 1e-3, "label_adversary": 4e-3}, rel=1e-5)


# ================================================================== shapes; each phase updates only its modules

def test_label_head_shapes_and_decoding_by_labels_or_probabilities(dis_setup, batch):
    model, state = dis_setup
    assert_label_head_model(model, state, batch["image"], NUM_CLASSES, STYLE_DIM)


def test_disentangled_confusion_phase_updates_encoder_only(dis_setup, batch):
    model, s0 = dis_setup
    after, metrics = phase_runner(model, 1, 2)(s0, batch)
    assert_phase_changed_only(s0, after, "confusion", ("encoder",))
    assert float(metrics["loss"]) >= DIS_CONFIG.confusion_weight * math.log(NUM_CLASSES) - 1e-6


def test_disentangled_label_adversary_phase_updates_adversary_only(dis_setup, batch):
    model, s0 = dis_setup
    labels = jnp.asarray([0, 3, 7, 9], jnp.int32)
    style = jnp.asarray(np.random.default_rng(0).normal(size=(B, STYLE_DIM)), jnp.float32)
    after, metrics = phase_runner(model, 2, 3)(s0, {**batch, "label": labels, "style": style})
    assert_phase_changed_only(s0, after, "label_adversary", ("label_adversary",))
    chex.assert_trees_all_equal(s0.batch_stats, after.batch_stats)
    # its loss is the adversary's cross-entropy on the given style codes, standardised over the batch
    adversary = disentangled.make_modules(DIS_CONFIG)[2]
    standardized = (style - style.mean(0)) / np.sqrt(style.var(0) + 1e-5)
    predicted = adversary.apply({"params": s0.params["label_adversary"]}, standardized)
    expected = optax.softmax_cross_entropy_with_integer_labels(predicted, labels).mean()
    np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)


# ================================================================== disentangled helpers, label conditioning

def test_standardize_gives_zero_mean_unit_variance_columns_whatever_the_scale():
    z = jnp.asarray(np.random.default_rng(1).normal(3.0, 0.1, size=(64, 5)), jnp.float32)
    out = label_style.standardize(z)
    np.testing.assert_allclose(np.asarray(out.mean(0)), 0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.std(0)), 1, atol=1e-3)  # eps 1e-5 against a variance of 1e-2
    np.testing.assert_allclose(np.asarray(label_style.standardize(10 * z - 4)), np.asarray(out), rtol=2e-3, atol=1e-4)


def test_uniform_cross_entropy_is_log_c_at_equal_logits_and_larger_otherwise():
    c = 7
    equal = label_style.uniform_cross_entropy(jnp.full((3, c), 2.5))
    chex.assert_shape(equal, (3,))
    np.testing.assert_allclose(equal, math.log(c), rtol=1e-6)
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(5, c)) * 2, jnp.float32)
    got = label_style.uniform_cross_entropy(logits)
    assert np.all(np.asarray(got) > math.log(c) + 1e-3)
    expected = -np.mean(np.asarray(jax.nn.log_softmax(logits)), axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_split_label_style_shapes_and_errors():
    out = jnp.arange(3 * 14, dtype=jnp.float32).reshape(3, 14)
    labels, style = label_style.split_label_style(out, 10)
    chex.assert_shape(labels, (3, 10))
    chex.assert_shape(style, (3, 4))
    np.testing.assert_array_equal(jnp.concatenate([labels, style], 1), out)
    for bad in (jnp.zeros((3, 10)), jnp.zeros((3, 9)), jnp.zeros((14,)), jnp.zeros((2, 3, 14))):
        with pytest.raises(ValueError, match="encoder output"):
            label_style.split_label_style(bad, 10)


def test_condition_on_labels_concatenates_float_probabilities_unchanged():
    x = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], jnp.float32)
    probs = jnp.asarray([[0.2, 0.8], [0.5, 0.5]], jnp.float32)
    out = condition_on_labels(x, probs, 2)
    chex.assert_shape(out, (2, 5))
    np.testing.assert_array_equal(out[:, :3], x)
    np.testing.assert_array_equal(out[:, 3:], probs)
    half = condition_on_labels(x, probs.astype(jnp.float16), 2)
    chex.assert_type(half, jnp.float32)
    np.testing.assert_allclose(half[:, 3:], probs, atol=1e-3)
    np.testing.assert_array_equal(condition_on_labels(x, jnp.asarray([1, 0], jnp.int32), 2)[:, 3:], [[0, 1], [1, 0]])


@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (2,), (2, 2, 1)])
def test_condition_on_labels_rejects_probabilities_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match="probabilities of shape"):
        condition_on_labels(jnp.zeros((2, 3)), jnp.full(shape, 0.5, jnp.float32), 2)


@pytest.mark.slow
def test_disentangled_variational_style_with_true_labels(batch):
    config = disentangled.DisentangledConfig(latent_dim=STYLE_DIM, adversary_hidden=(32, 32),
                                             style_kl_weight=0.005, decoder_label="true")
    encoder, _, _ = disentangled.make_modules(config)
    assert encoder.latent_dim == NUM_CLASSES + 2 * STYLE_DIM  # label logits, style mu and log-variance
    model = disentangled.make_model(config)
    state = train_lib.create_train_state(model, jax.random.key(0))
    chex.assert_shape(model.encode(state.params, state.batch_stats, batch["image"]), (B, STYLE_DIM))
    after, metrics = phase_runner(model, 0, 1)(state, batch)
    assert float(metrics["style_kl"]) > 0
    mu, log_var = split_moments(label_style.split_label_style(
        encoder.apply({"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]},
                      batch["image"], True, mutable=["batch_stats"])[0], NUM_CLASSES)[1])
    np.testing.assert_allclose(float(metrics["style_kl"]),
                               float(losses.gaussian_kl_to_standard_normal(mu, log_var).mean()), rtol=1e-4)
    with pytest.raises(ValueError, match="decoder_label"):
        disentangled.DisentangledConfig(decoder_label="oracle")


def _cka_by_hand(z: np.ndarray, labels: np.ndarray, bandwidths=label_style.KERNEL_BANDWIDTHS) -> float:
    """tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)), H the centring matrix, in float64."""
    z = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
    n, d = z.shape
    squared = np.array([[np.sum((z[i] - z[j]) ** 2) / d for j in range(n)] for i in range(n)])
    k = sum(np.exp(-squared / (2 * bw * bw)) for bw in bandwidths)
    l = (labels[:, None] == labels[None, :]).astype(np.float64)
    h = np.eye(n) - 1.0 / n
    return float(np.trace(k @ h @ l @ h) / np.sqrt(np.trace(k @ h @ k @ h) * np.trace(l @ h @ l @ h)))


def test_label_dependence_reads_what_class_means_miss():
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 3, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    # every class centred at 0, but on circles of radius 1, 2, 3: no linear leak, a plain non-linear one
    rings = ((labels[:, None] + 1.0) * np.stack([np.cos(angle), np.sin(angle)], 1)).astype(np.float32)
    independent = rng.normal(size=(n, 2)).astype(np.float32)
    dependence = lambda z: float(label_style.label_dependence(jnp.asarray(z), jnp.asarray(labels), 3))
    assert float(label_style.class_mean_share(jnp.asarray(rings), jnp.asarray(labels), 3)) < 0.02
    assert dependence(rings) > 0.2 > 0.05 > dependence(independent)  # the noise floor: O(1/n)
    np.testing.assert_allclose(dependence(rings), _cka_by_hand(rings.astype(np.float64), labels), rtol=1e-4)
    np.testing.assert_allclose(dependence(independent), _cka_by_hand(independent.astype(np.float64), labels), rtol=1e-3)
    np.testing.assert_allclose(dependence(3.0 * rings + 1.0), dependence(rings), rtol=1e-4)  # scale and shift do not hide it
    grad = jax.grad(lambda z: label_style.label_dependence(z, jnp.asarray(labels), 3))(jnp.asarray(rings))
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).sum()) > 0


def test_class_mean_share():
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    # class means all equal: nothing linearly readable
    same_means = jnp.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 2.0], [-1.0, -2.0], [0.5, 1.0], [-0.5, -1.0]])
    np.testing.assert_allclose(label_style.class_mean_share(same_means, labels, 3), 0.0, atol=1e-6)
    # constant within each class: all variance is between classes
    by_class = jnp.array([[0.0, 1.0], [0.0, 1.0], [3.0, 0.0], [3.0, 0.0], [-2.0, 5.0], [-2.0, 5.0]])
    np.testing.assert_allclose(label_style.class_mean_share(by_class, labels, 3), 1.0, rtol=1e-5)
    # a mix: by-hand between-class over total variance, one dimension
    z = jnp.array([[0.0], [2.0], [4.0], [6.0], [1.0], [1.0]])
    mean = 14.0 / 6
    between = (2 * (1 - mean) ** 2 + 2 * (5 - mean) ** 2 + 2 * (1 - mean) ** 2) / 6
    np.testing.assert_allclose(label_style.class_mean_share(z, labels, 3), between / np.var(np.asarray(z)), rtol=1e-5)
    # and the encoder gets a gradient from it
    assert float(jnp.abs(jax.grad(lambda z: label_style.class_mean_share(z, labels, 3))(by_class + 0.1 * z)).sum()) > 0


# ------------------------------------------------------------------ class-conditional style normalisation

@pytest.mark.slow
def test_class_standardize_is_torch_batch_norm_per_class():
    """Train mode: each class's items go through their own BatchNorm (PyTorch's, no affine);
    the running statistics of a class move only when it is in the batch. Eval mode: the
    running statistics of each item's class."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [7, 5, 9])  # class 3 absent
    z = (rng.normal(size=(21, 3)) * np.array([1.0, 3.0, 0.5])[labels % 3, None] + labels[:, None] * 2.0).astype(np.float32)
    module = label_style.ClassStandardize(num_classes=4)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 3)), False, labels=jnp.zeros((1,), jnp.int32))
    out, stats = apply_training(module, variables, jnp.asarray(z), labels=jnp.asarray(labels))
    for c in range(3):
        bn = torch.nn.BatchNorm1d(3, affine=False, momentum=0.1)
        expected = bn(torch.from_numpy(z[labels == c]))
        np.testing.assert_allclose(np.asarray(out)[labels == c], expected.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(np.asarray(stats["mean"][c]), bn.running_mean.numpy(), atol=1e-6)
        np.testing.assert_allclose(np.asarray(stats["var"][c]), bn.running_var.numpy(), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(stats["mean"][3]), 0.0)  # absent: unchanged
    np.testing.assert_array_equal(np.asarray(stats["var"][3]), 1.0)
    mean, var = rng.normal(size=(4, 3)).astype(np.float32), rng.uniform(0.5, 2.0, (4, 3)).astype(np.float32)
    eval_labels = np.array([3, 0, 3, 1])
    got = module.apply({"params": variables["params"], "batch_stats": {"mean": mean, "var": var}}, jnp.asarray(z[:4]), False,
                       labels=jnp.asarray(eval_labels))
    np.testing.assert_allclose(np.asarray(got), (z[:4] - mean[eval_labels]) / np.sqrt(var[eval_labels] + 1e-5), rtol=1e-5)


@pytest.fixture(scope="module")
def class_norm_setup(mnist):
    config = dataclasses.replace(DIS_CONFIG, style_normalization="class")
    model = disentangled.make_model(config)
    test = mnist["test"]
    dataset = {"image": jnp.asarray(test.images[:40]), "label": jnp.asarray(test.labels[:40], jnp.int32)}
    state = state_without_compiling_init(model, 2)
    state = phase_runner(model, 0, 3)(state, data.gather_batch(dataset, jnp.arange(20)))[0]
    return config, model, state, dataset


@pytest.mark.slow
def test_class_normalized_style_reads_the_label_head_not_the_true_labels(class_norm_setup):
    config, model, state, dataset = class_norm_setup
    images = data.gather_batch(dataset, jnp.arange(20))["image"]
    styles = model.encode(state.params, state.batch_stats, images, labels=jnp.zeros((20,), jnp.int32))
    chex.assert_shape(styles, (20, STYLE_DIM))
    np.testing.assert_array_equal(np.asarray(styles), np.asarray(model.encode(state.params, state.batch_stats, images)))
    predicted = jnp.argmax(model.classify(state.params, state.batch_stats, images), -1)
    encoder = disentangled.make_modules(config)[0]
    raw = label_style.split_label_style(encoder.apply(
        {"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]}, images, False), NUM_CLASSES)[1]
    stats = state.batch_stats["style_norm"]
    expected = (raw - stats["mean"][predicted]) / jnp.sqrt(stats["var"][predicted] + 1e-5) * state.params["style_norm"]["scale"] \
        + state.params["style_norm"]["bias"]
    np.testing.assert_allclose(np.asarray(styles), np.asarray(expected), rtol=1e-4, atol=1e-5)
    # the running statistics move in the autoencoder phase only, not again in the confusion phase
    batch = data.gather_batch(dataset, jnp.arange(20, 40))
    after_autoencoder = phase_runner(model, 0, 1)(state, batch)[0].batch_stats["style_norm"]
    after_confusion = phase_runner(model, 0, 2)(state, batch)[0].batch_stats["style_norm"]
    assert max_abs_diff(after_autoencoder, stats) > 1e-4
    assert max_abs_diff(after_autoencoder, after_confusion) == 0.0


@pytest.mark.slow
def test_recompute_batch_stats_averages_the_class_statistics(class_norm_setup):
    config, model, state, dataset = class_norm_setup
    recomputed = inference.recompute_batch_stats(model.phases[0], state.params, state.batch_stats, dataset, 20,
                                                 jax.random.key(0))
    encoder = disentangled.make_modules(config)[0]
    sums = np.zeros((NUM_CLASSES, STYLE_DIM))
    for start in (0, 20):  # each batch's class means, as in train mode
        batch = data.gather_batch(dataset, jnp.arange(start, start + 20))
        out, _ = apply_training(encoder, {"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]},
                                batch["image"])
        raw, labels = np.asarray(label_style.split_label_style(out, NUM_CLASSES)[1]), np.asarray(batch["label"])
        for c in np.unique(labels):
            sums[c] += raw[labels == c].mean(axis=0)
    np.testing.assert_allclose(np.asarray(recomputed["style_norm"]["mean"]), sums / 2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"adversary_learning_rate": 0.0}, "learning rates must be > 0"), ({"confusion_weight": -1.0}, "loss weights >= 0"),
    ({"num_classes": 1}, "num_classes > 1"),
    ({"style_normalization": "whiten"}, "style_normalization must be"),
    ({"style_normalization": "class", "style_kl_weight": 0.005}, "deterministic style"),
])
def test_disentangled_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        disentangled.DisentangledConfig(**kwargs)
