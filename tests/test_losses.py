"""aejax.losses (elementwise losses, sparsity penalties, the Gaussian KL and log-density, the IMQ
kernel's MMD) and autoencoder.sparsity_penalty."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import losses
from aejax.autoencoder import SPARSITY_CHOICES, AEConfig, sparsity_penalty
from aejax.model import reparametrize

from support import np_gaussian_kl, np_log_normal

TARGET = 0.1


def _np_activation(z):
    z = np.asarray(z, np.float64)
    return (1.0 / (1.0 + np.exp(-np.abs(z))) - 0.5) * 2.0


def _np_bernoulli_kl(p, q):
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


@pytest.mark.slow
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
    chex.assert_trees_all_close(kl, jnp.asarray(_np_bernoulli_kl(0.1, np.asarray(rates, np.float64)), jnp.float32), rtol=1e-5)
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
    chex.assert_trees_all_close(per_object, jnp.asarray(_np_bernoulli_kl(TARGET, act.mean(axis=1)), jnp.float32), rtol=1e-5)
    chex.assert_trees_all_close(per_unit, jnp.asarray(_np_bernoulli_kl(TARGET, act.mean(axis=0)), jnp.float32), rtol=1e-5)


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
        "kl_per_object": np.sum(_np_bernoulli_kl(TARGET, act.mean(axis=1))),
        "kl_per_unit": np.mean(_np_bernoulli_kl(TARGET, act.mean(axis=0))),
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
    chex.assert_trees_all_close(low, jnp.asarray(np.mean(_np_bernoulli_kl(0.05, act)), jnp.float32), rtol=1e-5)
    chex.assert_trees_all_close(high, jnp.asarray(np.mean(_np_bernoulli_kl(0.5, act)), jnp.float32), rtol=1e-5)
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


# ------------------------------------------------------------ Gaussian KL and log-density

def test_kl_closed_form_hand_values():
    """KL(N(mu, s^2) || N(0, 1)) = sum_d 0.5 (s^2 + mu^2 - 1 - log s^2), on hand-picked rows."""
    mu = jnp.asarray([[0.0, 0.0], [1.0, 2.0], [0.0, 1.0], [3.0, 0.0]], jnp.float32)
    log_var = jnp.asarray([[0.0, 0.0], [0.0, 0.0], [math.log(4.0), math.log(0.25)], [0.0, -1.0]], jnp.float32)
    kl = losses.gaussian_kl_to_standard_normal(mu, log_var)
    chex.assert_shape(kl, (4,))
    chex.assert_type(kl, jnp.float32)
    expected = [
        0.0,                                                      # the prior itself
        2.5,                                                      # 0.5 * 1 + 0.5 * 4
        0.5 * (4 - 1 - math.log(4)) + 0.5 * (0.25 + 1 - 1 - math.log(0.25)),  # 0.80685 + 0.81815
        4.5 + 0.5 * (math.exp(-1) - 1 + 1),                       # 0.5 * 9 + 0.5 * (e^-1 + 1)
    ]
    np.testing.assert_allclose(kl, expected, rtol=1e-6, atol=1e-6)
    assert abs(float(kl[2]) - 1.625) < 1e-4


@pytest.mark.slow
def test_kl_matches_torch_distributions():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    mu = rng.normal(0, 2, (6, 5)).astype(np.float32)
    log_var = rng.normal(0, 1.5, (6, 5)).astype(np.float32)
    q = torch.distributions.Normal(torch.from_numpy(mu), torch.exp(0.5 * torch.from_numpy(log_var)))
    p = torch.distributions.Normal(torch.zeros(6, 5), torch.ones(6, 5))
    expected = torch.distributions.kl_divergence(q, p).sum(-1).numpy()
    got = losses.gaussian_kl_to_standard_normal(jnp.asarray(mu), jnp.asarray(log_var))
    chex.assert_shape(got, (6,))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, np_gaussian_kl(mu, log_var), rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(got) >= 0)


def test_kl_is_the_mean_of_the_monte_carlo_log_ratio():
    """E_q[log q(z) - log N(z; 0, I)] over 200k draws equals the closed-form KL."""
    mu = jnp.asarray([[1.0, -0.5]], jnp.float32)
    log_var = jnp.asarray([[math.log(0.25), math.log(2.0)]], jnp.float32)
    n = 200_000
    z = reparametrize(jax.random.key(9), jnp.broadcast_to(mu, (n, 2)), jnp.broadcast_to(log_var, (n, 2)))
    log_ratio = losses.gaussian_log_density(z, mu, log_var) - losses.gaussian_log_density(z)
    kl = float(losses.gaussian_kl_to_standard_normal(mu, log_var)[0])
    assert abs(float(jnp.mean(log_ratio)) - kl) < 5 * float(jnp.std(log_ratio)) / math.sqrt(n)


def test_gaussian_log_density_matches_scipy():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (3, 4, 5)).astype(np.float32)
    mu = rng.normal(0, 1, (4, 5)).astype(np.float32)  # broadcast over the leading (sample) axis
    log_var = rng.normal(0, 1, (4, 5)).astype(np.float32)
    got = losses.gaussian_log_density(jnp.asarray(z), jnp.asarray(mu), jnp.asarray(log_var))
    chex.assert_shape(got, (3, 4))
    chex.assert_type(got, jnp.float32)
    np.testing.assert_allclose(got, np_log_normal(z, mu, log_var), rtol=1e-5, atol=1e-4)
    # the default is the standard normal prior
    prior = losses.gaussian_log_density(jnp.asarray(z))
    np.testing.assert_allclose(prior, np_log_normal(z), rtol=1e-5, atol=1e-4)
    origin = losses.gaussian_log_density(jnp.zeros((1, 3)))
    np.testing.assert_allclose(origin, [-1.5 * math.log(2 * math.pi)], rtol=1e-6)


@pytest.mark.slow
def test_gaussian_log_density_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (3, 4, 5)).astype(np.float32)
    mu = rng.normal(0, 1, (4, 5)).astype(np.float32)  # broadcast over the leading (sample) axis
    log_var = rng.normal(0, 1, (4, 5)).astype(np.float32)
    got = losses.gaussian_log_density(jnp.asarray(z), jnp.asarray(mu), jnp.asarray(log_var))
    torch_ref = torch.distributions.Normal(torch.from_numpy(mu), torch.exp(0.5 * torch.from_numpy(log_var)))
    np.testing.assert_allclose(got, torch_ref.log_prob(torch.from_numpy(z)).sum(-1).numpy(), rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------ IMQ kernel and MMD (the WAE's penalty)

def test_imq_kernel_hand_values():
    x = jnp.asarray([[0.0, 0.0], [1.0, 1.0]], jnp.float32)
    y = jnp.asarray([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]], jnp.float32)
    got = losses.imq_kernel(x, y, 2.0)
    chex.assert_shape(got, (2, 3))
    # squared distances [[1, 9, 2], [1, 5, 0]]; C / (C + d) with C = 2
    np.testing.assert_allclose(got, [[2 / 3, 2 / 11, 1 / 2], [2 / 3, 2 / 7, 1.0]], rtol=1e-6)


def test_mmd_imq_matches_numpy_unbiased_estimate():
    rng = np.random.default_rng(3)
    codes, prior = rng.normal(0, 1, (5, 3)), rng.normal(0.5, 1, (4, 3))

    def kernel(a, b, c):
        return c / (c + ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    expected = 0.0
    for s in losses.IMQ_SCALES:
        c = s * 2 * 3 * 1.0
        kxx, kyy, kxy = kernel(codes, codes, c), kernel(prior, prior, c), kernel(codes, prior, c)
        expected += ((kxx.sum() - np.trace(kxx)) / 20 + (kyy.sum() - np.trace(kyy)) / 12 - 2 * kxy.mean())
    got = losses.mmd_imq(jnp.asarray(codes, jnp.float32), jnp.asarray(prior, jnp.float32))
    chex.assert_shape(got, ())
    np.testing.assert_allclose(float(got), expected, rtol=1e-4, atol=1e-6)


def test_mmd_imq_near_zero_for_one_distribution_and_positive_for_two():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    a = jax.random.normal(k1, (400, 2))
    b = jax.random.normal(k2, (400, 2))
    shifted = jax.random.normal(k3, (400, 2)) + 3.0
    same = float(losses.mmd_imq(a, b))
    different = float(losses.mmd_imq(a, shifted))
    assert abs(same) < 0.02
    assert different > 1.0
    assert different > 50 * abs(same)


@pytest.mark.parametrize("codes_shape, prior_shape", [((1, 2), (4, 2)), ((4, 2), (1, 2)), ((4, 2), (4, 3))])
def test_mmd_imq_rejects_too_few_samples_or_mismatched_sizes(codes_shape, prior_shape):
    with pytest.raises(ValueError, match=">= 2"):
        losses.mmd_imq(jnp.zeros(codes_shape), jnp.zeros(prior_shape))
