"""The AAE's priors (aejax.priors): samplers, supports, mixture components."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import priors

N_SAMPLES = 100_000
NUM_CLASSES = 10


def test_uniform_box_range_and_moments():
    prior = priors.uniform_box()
    z = np.asarray(prior(jax.random.key(0), N_SAMPLES), np.float64)
    chex.assert_shape(z, (N_SAMPLES, 2))
    assert z.min() >= -2.5 and z.max() <= 2.5
    assert z.min() < -2.49 and z.max() > 2.49
    std = 5.0 / math.sqrt(12)
    np.testing.assert_array_less(np.abs(z.mean(0)), 5 * std / math.sqrt(N_SAMPLES))
    np.testing.assert_allclose(z.var(0), 25.0 / 12.0, rtol=0.02)
    assert bool(jnp.all(prior.contains(jnp.asarray(z))))
    shifted = priors.uniform_box(1.0, 3.0, dim=3)
    w = np.asarray(shifted(jax.random.key(1), N_SAMPLES))
    chex.assert_shape(w, (N_SAMPLES, 3))
    assert w.min() >= 1.0 and w.max() <= 3.0
    np.testing.assert_allclose(w.mean(0), 2.0, atol=0.01)
    np.testing.assert_allclose(w.var(0), 4.0 / 12.0, rtol=0.02)
    outside = jnp.asarray([[0.99, 2.0, 2.0], [2.0, 3.01, 2.0], [2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(shifted.contains(outside), [False, False, True])


def _box_membership(z: np.ndarray) -> np.ndarray:
    """(N, 10) bool: z in LECTURE_BOXES[j]."""
    boxes = np.asarray(priors.LECTURE_BOXES)
    x, y = z[:, None, 0], z[:, None, 1]
    return (x >= boxes[:, 0]) & (x <= boxes[:, 1]) & (y >= boxes[:, 2]) & (y <= boxes[:, 3])


def test_uniform_boxes_samples_each_box_equally():
    assert len(priors.LECTURE_BOXES) == 10
    prior = priors.uniform_boxes()
    n = 10_000
    z = np.asarray(prior(jax.random.key(0), n))
    chex.assert_shape(z, (n, 2))
    member = _box_membership(z)
    np.testing.assert_array_equal(member.sum(1), 1)  # every sample in exactly one box
    np.testing.assert_array_equal(member.sum(0), n // 10)
    np.testing.assert_array_equal(member.argmax(1), np.arange(n) % 10)
    assert bool(jnp.all(prior.contains(jnp.asarray(z))))
    # uniform inside a box: the samples of box 0 have its centre as mean
    x0, x1, y0, y1 = priors.LECTURE_BOXES[0]
    np.testing.assert_allclose(z[::10].mean(0), [(x0 + x1) / 2, (y0 + y1) / 2], atol=0.02)


def test_uniform_boxes_contains():
    prior = priors.uniform_boxes()
    boxes = jnp.asarray(priors.LECTURE_BOXES)
    centres = (boxes[:, [0, 2]] + boxes[:, [1, 3]]) / 2
    assert bool(jnp.all(prior.contains(centres)))
    outside = jnp.asarray([[2.0, 2.0], [-0.6, -0.6], [0.0, -1.6], [0.4, 0.0], [-0.1, -2.4], [-3.0, 0.0]])
    assert not bool(jnp.any(prior.contains(outside)))
    assert bool(prior.contains(jnp.asarray([[0.0, 0.0]]))[0])  # (0, 0) is inside (-0.5, 0.3)^2
    np.testing.assert_array_equal(prior.contains(outside), _box_membership(np.asarray(outside)).any(1))


def test_uniform_boxes_unequal_n_gives_at_most_one_extra_per_box():
    z = np.asarray(priors.uniform_boxes()(jax.random.key(1), 23))
    counts = _box_membership(z).sum(0)
    np.testing.assert_array_equal(counts, [3, 3, 3] + [2] * 7)


def test_standard_normal_moments_and_support():
    prior = priors.standard_normal(3)
    z = np.asarray(prior(jax.random.key(0), N_SAMPLES), np.float64)
    chex.assert_shape(z, (N_SAMPLES, 3))
    np.testing.assert_array_less(np.abs(z.mean(0)), 5 / math.sqrt(N_SAMPLES))
    np.testing.assert_allclose(z.var(0), 1.0, rtol=0.02)
    inside = float(jnp.mean(prior.contains(jnp.asarray(z, jnp.float32))))
    assert abs(inside - 0.99) < 0.002
    chi2_99 = 11.344866730144373  # scipy.stats.chi2.ppf(0.99, 3)
    np.testing.assert_array_equal(prior.contains(jnp.asarray([[0.0, 0.0, 0.0], [3.36, 0.0, 0.0], [3.38, 0.0, 0.0]])),
                                  [True, 3.36 ** 2 <= chi2_99, 3.38 ** 2 <= chi2_99])


def test_gaussian_mixture_component_means_on_the_circle():
    k, radius, std = 10, 4.0, 0.5
    prior = priors.gaussian_mixture(k, radius, std)
    z = np.asarray(prior(jax.random.key(0), N_SAMPLES), np.float64)
    chex.assert_shape(z, (N_SAMPLES, 2))
    which = np.arange(N_SAMPLES) % k
    angles = 2 * math.pi * np.arange(k) / k
    expected_means = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    means = np.stack([z[which == c].mean(0) for c in range(k)])
    np.testing.assert_allclose(means, expected_means, atol=0.025)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), radius, atol=0.025)
    stds = np.stack([z[which == c].std(0) for c in range(k)])
    np.testing.assert_allclose(stds, std, rtol=0.03)
    inside = float(jnp.mean(prior.contains(jnp.asarray(z, jnp.float32))))
    assert 0.985 < inside < 0.999
    checks = prior.contains(jnp.asarray(np.concatenate([expected_means, [[0.0, 0.0], [8.0, 0.0]]]), jnp.float32))
    np.testing.assert_array_equal(checks, [True] * k + [False, False])


def test_categorical_one_hot_and_uniform():
    prior = priors.categorical(NUM_CLASSES)
    y = np.asarray(prior(jax.random.key(0), N_SAMPLES))
    chex.assert_shape(y, (N_SAMPLES, NUM_CLASSES))
    assert y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(1), 1.0)
    np.testing.assert_allclose(y.mean(0), 0.1, atol=0.005)
    assert bool(jnp.all(prior.contains(jnp.asarray(y[:100]))))
    assert not bool(jnp.any(prior.contains(jnp.full((3, NUM_CLASSES), 0.1))))


def test_relaxed_categorical_is_gumbel_softmax_on_the_simplex():
    key = jax.random.key(1)
    cold, warm = priors.categorical(NUM_CLASSES, 0.1), priors.categorical(NUM_CLASSES, 1.0)
    y = np.asarray(cold(key, N_SAMPLES))
    chex.assert_shape(y, (N_SAMPLES, NUM_CLASSES))
    assert y.dtype == np.float32 and np.all(y >= 0) and np.all(y <= 1)
    np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)
    # the same Gumbel draws, softmax at the temperature: its argmax is the Gumbel-max sample, uniform
    gumbel = np.asarray(jax.random.gumbel(key, (N_SAMPLES, NUM_CLASSES), jnp.float32), np.float64)
    expected = np.exp(gumbel / 0.1 - (gumbel / 0.1).max(1, keepdims=True))
    np.testing.assert_allclose(y, expected / expected.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.bincount(y.argmax(1), minlength=NUM_CLASSES) / N_SAMPLES, 0.1, atol=0.01)
    # colder is closer to one-hot; the same draws give the same argmax at any temperature
    hot = np.asarray(warm(key, N_SAMPLES))
    assert np.all(hot > 0) and np.all(hot < 1)  # inside the simplex, where softmax outputs live
    assert y.max(1).mean() > 0.9 > hot.max(1).mean()
    np.testing.assert_array_equal(y.argmax(1), hot.argmax(1))
    assert cold.name != priors.categorical(NUM_CLASSES).name


@pytest.mark.parametrize("make", [priors.uniform_box, priors.uniform_boxes, priors.standard_normal,
                                  priors.gaussian_mixture, priors.categorical])
def test_priors_same_key_same_samples_other_key_differs(make):
    prior = make()
    a, b, c = prior(jax.random.key(4), 64), prior(jax.random.key(4), 64), prior(jax.random.key(5), 64)
    chex.assert_shape(a, (64, prior.dim))
    chex.assert_type(a, jnp.float32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_priors_registry_builds_2d_priors():
    for name, make in priors.PRIORS.items():
        prior = make()
        assert prior.dim == 2, name
        chex.assert_shape(prior(jax.random.key(0), 7), (7, 2))


@pytest.mark.parametrize("build, message", [
    (lambda: priors.uniform_box(1.0, 1.0), "need high > low"), (lambda: priors.uniform_box(2.0, 1.0), "need high > low"),
    (lambda: priors.uniform_box(dim=0), "dim > 0"),
    (lambda: priors.uniform_boxes([(0.0, 1.0, 1.0, 0.0)]), "with min < max"),
    (lambda: priors.uniform_boxes([(1.0, 0.0, 0.0, 1.0)]), "with min < max"),
    (lambda: priors.uniform_boxes([(0.0, 1.0, 0.0)]), r"boxes must be \(x_min, x_max, y_min, y_max\)"),
    (lambda: priors.gaussian_mixture(0), "need num_components > 0"),
    (lambda: priors.gaussian_mixture(radius=-1.0), "radius >= 0"), (lambda: priors.gaussian_mixture(std=0.0), "std > 0"),
    (lambda: priors.standard_normal(0), "dim must be positive"),
    (lambda: priors.categorical(0), "num_classes must be at least 2"),
    (lambda: priors.categorical(1), "num_classes must be at least 2"),
    (lambda: priors.categorical(10, -0.5), "temperature must be >= 0"),
])
def test_priors_reject_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("prior, bad_shape", [
    (priors.uniform_box(), (5, 3)), (priors.uniform_box(), (5,)), (priors.uniform_boxes(), (4, 3)),
    (priors.standard_normal(3), (4, 2)), (priors.gaussian_mixture(), (2, 2, 2)), (priors.categorical(10), (4, 9)),
])
def test_contains_rejects_wrong_shaped_codes(prior, bad_shape):
    with pytest.raises(ValueError, match="codes must have shape"):
        prior.contains(jnp.zeros(bad_shape))


@pytest.mark.parametrize("make", [priors.uniform_boxes, priors.gaussian_mixture])
def test_mixture_priors_sample_the_named_components(make):
    prior = make()
    assert prior.num_components == 10
    components = jax.random.randint(jax.random.key(4), (2000,), 0, 10)
    z = prior.sample_components(jax.random.key(5), components)
    chex.assert_shape(z, (2000, 2))
    # each sample lies in its own component's support (Gaussians: its 99% ball), rarely in a
    # neighbour's (the circle's neighbouring 99% balls overlap; the boxes are disjoint)
    own = float(jnp.mean(prior.component_contains(z, components)))
    other = float(jnp.mean(prior.component_contains(z, (components + 1) % 10)))
    if make is priors.uniform_boxes:
        assert own == 1.0 and other == 0.0
    else:
        assert 0.98 < own < 0.997 and other < 0.05
    if make is priors.uniform_boxes:
        np.testing.assert_array_equal(_box_membership(np.asarray(z)).argmax(1), np.asarray(components))
    # the unconditioned sampler is the same draw with components 0, 1, ..., 9, 0, ...
    np.testing.assert_array_equal(prior(jax.random.key(6), 23),
                                  prior.sample_components(jax.random.key(6), jnp.arange(23) % 10))
