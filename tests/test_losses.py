"""aejax.losses (elementwise losses and sparsity penalties) and autoencoder.sparsity_penalty."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import losses
from aejax.autoencoder import SPARSITY_CHOICES, AEConfig, sparsity_penalty

TARGET = 0.1


def _np_activation(z):
    z = np.asarray(z, np.float64)
    return (1.0 / (1.0 + np.exp(-np.abs(z))) - 0.5) * 2.0


def _np_kl(p, q):
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


# A fixed small latent batch (B=3, units=4), no zero rates (so no clipping).
Z = np.array(
    [[0.5, -1.0, 2.0, 0.1],
     [-0.3, 0.0, 1.5, -2.5],
     [3.0, 0.7, -0.2, 0.05]],
    np.float32,
)


# ------------------------------------------------------------ BCE on logits

def test_bce_hand_values():
    logits = np.array([0.0, 2.0, -1.5, 0.3, 4.0], np.float32)
    targets = np.array([1.0, 0.3, 0.0, 1.0, 0.9], np.float32)
    expected = []
    for l, t in zip(logits.tolist(), targets.tolist()):
        s = 1 / (1 + math.exp(-l))
        expected.append(-(t * math.log(s) + (1 - t) * math.log(1 - s)))
    got = losses.binary_cross_entropy_with_logits(jnp.asarray(logits), jnp.asarray(targets))
    chex.assert_shape(got, (5,))
    chex.assert_trees_all_close(got, jnp.asarray(expected, jnp.float32), atol=1e-6, rtol=1e-6)
    assert abs(float(got[0]) - math.log(2)) < 1e-6


def test_bce_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (3, 28, 28, 1)).astype(np.float32)
    targets = rng.uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)  # soft targets, as pixel intensities
    targets[0] = (targets[0] > 0.5)  # and hard ones
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(logits), torch.from_numpy(targets), reduction="none").numpy()
    got = losses.binary_cross_entropy_with_logits(jnp.asarray(logits), jnp.asarray(targets))
    chex.assert_shape(got, logits.shape)
    chex.assert_type(got, jnp.float32)
    chex.assert_trees_all_close(got, jnp.asarray(expected), atol=1e-6, rtol=1e-5)


def test_bce_extreme_logits_finite_and_correct():
    logits = jnp.asarray([1000.0, 1000.0, -1000.0, -1000.0, 88.0, -88.0], jnp.float32)
    targets = jnp.asarray([0.0, 1.0, 0.0, 1.0, 0.0, 1.0], jnp.float32)
    got = losses.binary_cross_entropy_with_logits(logits, targets)
    assert bool(jnp.all(jnp.isfinite(got)))
    chex.assert_trees_all_close(got, jnp.asarray([1000.0, 0.0, 0.0, 1000.0, 88.0, 88.0]), atol=1e-4, rtol=1e-6)
    # the gradient is sigmoid(logit) - target, finite too
    grads = jax.grad(lambda l: jnp.sum(losses.binary_cross_entropy_with_logits(l, targets)))(logits)
    assert bool(jnp.all(jnp.isfinite(grads)))
    chex.assert_trees_all_close(grads, jax.nn.sigmoid(logits) - targets, atol=1e-6)


def test_bce_elementwise_shape():
    logits = jnp.zeros((2, 3, 4, 1))
    targets = jnp.ones((2, 3, 4, 1))
    got = losses.binary_cross_entropy_with_logits(logits, targets)
    chex.assert_shape(got, (2, 3, 4, 1))
    chex.assert_trees_all_close(got, jnp.full((2, 3, 4, 1), math.log(2.0)), atol=1e-6)
    # not reduced: changing one target changes only that element (logit 1, target 1 -> 0)
    logits = jnp.ones((2, 3, 4, 1))
    got = losses.binary_cross_entropy_with_logits(logits, targets)
    got2 = losses.binary_cross_entropy_with_logits(logits, targets.at[1, 2, 3, 0].set(0.0))
    changed = np.argwhere(np.asarray(got2 != got))
    np.testing.assert_array_equal(changed, [[1, 2, 3, 0]])
    assert abs(float(got2[1, 2, 3, 0]) - math.log1p(math.e)) < 1e-6  # -log(1 - sigmoid(1))


# ------------------------------------------------------------ squared error

def test_squared_error_hand_values():
    got = losses.squared_error(jnp.asarray([1.0, 2.0, -1.0, 0.5]), jnp.asarray([0.0, 2.5, 1.0, 0.5]))
    chex.assert_shape(got, (4,))
    chex.assert_trees_all_close(got, jnp.asarray([1.0, 0.25, 4.0, 0.0]))
    got = losses.squared_error(jnp.ones((2, 3)), jnp.zeros((2, 3)))
    chex.assert_shape(got, (2, 3))


# ------------------------------------------------------------ sparsity

def test_sparsity_activation_values():
    assert float(losses.sparsity_activation(jnp.asarray(0.0))) == 0.0
    chex.assert_trees_all_close(losses.sparsity_activation(jnp.asarray(1.0)), jnp.asarray(0.46211715726), atol=1e-7)
    z = jnp.linspace(-30.0, 30.0, 241)
    a = losses.sparsity_activation(z)
    chex.assert_shape(a, (241,))
    chex.assert_trees_all_close(a, losses.sparsity_activation(-z))  # symmetric
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # strictly below 1 wherever it is representable (float32 rounds sigmoid(30) to 1)
    assert float(losses.sparsity_activation(jnp.asarray(5.0))) < 1.0
    chex.assert_trees_all_close(a, jnp.asarray(_np_activation(z), jnp.float32), atol=1e-6)
    # monotone in |z|
    pos = np.asarray(a[120:])
    assert np.all(np.diff(pos) >= 0) and pos[-1] > pos[1]


def test_l1_sparsity_elementwise():
    got = losses.l1_sparsity(jnp.asarray(Z))
    chex.assert_shape(got, Z.shape)
    chex.assert_trees_all_close(got, jnp.asarray(np.abs(_np_activation(Z)), jnp.float32), atol=1e-6)
    assert float(got[1, 1]) == 0.0
    assert bool(jnp.all(got >= 0))


def test_bernoulli_kl_values():
    assert abs(float(losses.bernoulli_kl(0.1, jnp.asarray(0.1)))) < 1e-7
    expected = 0.1 * math.log(0.2) + 0.9 * math.log(1.8)
    chex.assert_trees_all_close(losses.bernoulli_kl(0.1, jnp.asarray(0.5)), jnp.asarray(expected), atol=1e-6)
    rates = jnp.asarray([0.01, 0.05, 0.09, 0.11, 0.3, 0.5, 0.9, 0.99])
    kl = losses.bernoulli_kl(0.1, rates)
    chex.assert_shape(kl, (8,))
    assert bool(jnp.all(kl > 0))
    chex.assert_trees_all_close(kl, jnp.asarray(_np_kl(0.1, np.asarray(rates, np.float64)), jnp.float32), rtol=1e-5)
    # rates of exactly 0 or 1 are clipped: large but finite
    edge = losses.bernoulli_kl(0.1, jnp.asarray([0.0, 1.0]))
    assert bool(jnp.all(jnp.isfinite(edge))) and bool(jnp.all(edge > 1.0))


def test_kl_sparsity_per_object_and_per_unit():
    z = jnp.asarray(Z)
    act = _np_activation(Z)
    per_object = losses.kl_sparsity_per_object(z, TARGET)
    per_unit = losses.kl_sparsity_per_unit(z, TARGET)
    chex.assert_shape(per_object, (3,))
    chex.assert_shape(per_unit, (4,))
    chex.assert_trees_all_close(per_object, jnp.asarray(_np_kl(TARGET, act.mean(axis=1)), jnp.float32), rtol=1e-5)
    chex.assert_trees_all_close(per_unit, jnp.asarray(_np_kl(TARGET, act.mean(axis=0)), jnp.float32), rtol=1e-5)


def test_kl_sparsity_forms_differ_when_means_differ():
    # rows: one quiet object, one active object; columns: both units equally active on average
    z = jnp.asarray([[0.2, 0.2], [2.0, 2.0]])
    object_rates = _np_activation(np.asarray(z)).mean(axis=1)
    unit_rates = _np_activation(np.asarray(z)).mean(axis=0)
    assert not np.allclose(object_rates, unit_rates.mean())
    per_object = losses.kl_sparsity_per_object(z, TARGET)
    per_unit = losses.kl_sparsity_per_unit(z, TARGET)
    assert abs(float(per_object.mean()) - float(per_unit.mean())) > 0.1
    chex.assert_trees_all_close(per_unit[0], per_unit[1])  # the two units look alike per batch
    assert float(per_object[1]) > float(per_object[0])  # the active object is penalised more
    # when every object and every unit has the same mean activation, the forms agree
    z_same = jnp.asarray([[0.2, 2.0], [2.0, 0.2]])
    chex.assert_trees_all_close(
        losses.kl_sparsity_per_object(z_same, TARGET), losses.kl_sparsity_per_unit(z_same, TARGET), rtol=1e-6)


@pytest.mark.parametrize("mode", SPARSITY_CHOICES)
def test_sparsity_penalty_modes(mode):
    config = AEConfig(latent_dim=Z.shape[1], sparsity=mode, sparsity_target=TARGET)
    act = _np_activation(Z)
    expected = {
        "none": 0.0,
        "l1": np.mean(np.abs(act)),
        "kl_per_object": np.sum(_np_kl(TARGET, act.mean(axis=1))),
        "kl_per_unit": np.mean(_np_kl(TARGET, act.mean(axis=0))),
    }[mode]
    got = sparsity_penalty(config, jnp.asarray(Z))
    chex.assert_shape(got, ())
    chex.assert_type(got, jnp.float32)
    chex.assert_trees_all_close(got, jnp.asarray(expected, jnp.float32), atol=1e-6, rtol=1e-5)
    if mode != "none":
        assert float(got) > 0.0


def test_sparsity_penalty_target_matters():
    z = jnp.asarray(Z)
    low = sparsity_penalty(AEConfig(latent_dim=4, sparsity="kl_per_unit", sparsity_target=0.05), z)
    high = sparsity_penalty(AEConfig(latent_dim=4, sparsity="kl_per_unit", sparsity_target=0.5), z)
    act = _np_activation(Z).mean(axis=0)
    chex.assert_trees_all_close(low, jnp.asarray(np.mean(_np_kl(0.05, act)), jnp.float32), rtol=1e-5)
    chex.assert_trees_all_close(high, jnp.asarray(np.mean(_np_kl(0.5, act)), jnp.float32), rtol=1e-5)
    assert float(low) != float(high)


def test_batch_balance_gap_by_hand():
    """log K - H(batch mean): 0 for a batch spread evenly, log K for one collapsed on a category."""
    k = 4
    even = jnp.eye(k)  # each category once
    collapsed = jnp.tile(jnp.eye(k)[2], (5, 1))
    np.testing.assert_allclose(float(losses.batch_balance_gap(even)), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(losses.batch_balance_gap(jnp.full((3, k), 1 / k))), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(losses.batch_balance_gap(collapsed)), np.log(k), rtol=1e-6)
    probs = jnp.asarray([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    mean = np.array([0.3, 0.35, 0.35])
    np.testing.assert_allclose(float(losses.batch_balance_gap(probs)), np.log(3) + np.sum(mean * np.log(mean)), atol=1e-6)
    grad = jax.grad(lambda p: losses.batch_balance_gap(p))(collapsed)
    assert np.all(np.isfinite(np.asarray(grad)))  # zero means do not give NaN gradients


def test_categorical_entropy_by_hand():
    probs = jnp.asarray([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    np.testing.assert_allclose(np.asarray(losses.categorical_entropy(probs)), [0.0, np.log(2), 1.5 * np.log(2)],
                               atol=1e-6)
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda p: losses.categorical_entropy(p).sum())(probs))))
