"""Priors for the adversarial autoencoder: samplers ``(key, n) -> z (n, D)``.

The AAE only ever calls a prior, so any function with that signature works (see
``aae.make_model``). The ones here are ``Prior`` objects: callable samplers that also
know their support (``contains``), used to report how well codes match the prior.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Sampler = Callable[[jax.Array, int], jax.Array]  # (key, n) -> (n, D) float32
# (key, components (n,) int) -> (n, D): one sample from each given mixture component
ComponentSampler = Callable[[jax.Array, jax.Array], jax.Array]

# The lecture's ten boxes (section 8): a 3x3 grid of 0.8 x 0.8 boxes and one below,
# each as (x_min, x_max, y_min, y_max).
_EDGES = ((-1.5, -0.7), (-0.5, 0.3), (0.5, 1.3))
LECTURE_BOXES: tuple[tuple[float, float, float, float], ...] = tuple(
    (x[0], x[1], y[0], y[1]) for x, y in itertools.product(_EDGES, _EDGES)) + ((-0.5, 0.3, -2.3, -1.7),)


@dataclasses.dataclass(frozen=True)
class Prior:
    """A sampler with a name, its dimension and a support test.

    ``sample(key, n)`` -> (n, dim) float32; ``contains(z (N, dim))`` -> (N,) bool: inside
    the support (for unbounded priors, the region holding 99% of the mass, as documented
    by each constructor). Mixtures also give ``num_components`` and
    ``sample_components(key, components (n,) int)`` -> (n, dim), one sample of each named
    component, and ``component_contains(z (N, dim), components (N,))`` -> (N,) bool:
    inside that component's support (the label-conditioned AAE maps class k to component k).
    """

    name: str
    dim: int
    sample: Sampler
    contains: Callable[[jax.Array], jax.Array]
    num_components: int = 0  # 0: not a mixture
    sample_components: ComponentSampler | None = None
    component_contains: Callable[[jax.Array, jax.Array], jax.Array] | None = None

    def __call__(self, key: jax.Array, n: int) -> jax.Array:
        return self.sample(key, n)


def _check_codes(z: jax.Array, dim: int) -> jax.Array:
    z = jnp.asarray(z)
    if z.ndim != 2 or z.shape[1] != dim:
        raise ValueError(f"codes must have shape (N, {dim}), got {z.shape}")
    return z


def uniform_box(low: float = -2.5, high: float = 2.5, dim: int = 2) -> Prior:
    """Uniform on [low, high]^dim; the lecture's first prior is [-2.5, 2.5]^2."""
    if not high > low or dim <= 0:
        raise ValueError(f"need high > low and dim > 0, got low={low}, high={high}, dim={dim}")

    def sample(key, n):
        return jax.random.uniform(key, (n, dim), jnp.float32, low, high)

    def contains(z):
        z = _check_codes(z, dim)
        return jnp.all((z >= low) & (z <= high), axis=1)

    return Prior(f"uniform[{low:g},{high:g}]^{dim}", dim, sample, contains)


def uniform_boxes(boxes: Sequence[tuple[float, float, float, float]] = LECTURE_BOXES) -> Prior:
    """Uniform on a union of 2-D boxes (x_min, x_max, y_min, y_max), equally many samples from each.

    Sample ``i`` comes from box ``i % len(boxes)``, so every box gets n // len(boxes)
    samples or one more (the lecture draws the same number from each box).
    """
    bounds = np.asarray(boxes, np.float32)
    if bounds.ndim != 2 or bounds.shape[1] != 4 or np.any(bounds[:, 1] <= bounds[:, 0]) or np.any(bounds[:, 3] <= bounds[:, 2]):
        raise ValueError("boxes must be (x_min, x_max, y_min, y_max) tuples with min < max")
    low = jnp.asarray(bounds[:, [0, 2]])
    high = jnp.asarray(bounds[:, [1, 3]])

    def sample_components(key, which):
        unit = jax.random.uniform(key, (which.shape[0], 2), jnp.float32)
        return low[which] + unit * (high[which] - low[which])

    def sample(key, n):
        return sample_components(key, jnp.arange(n) % len(bounds))

    def inside_each(z):  # (N, num_boxes) bool
        z = _check_codes(z, 2)[:, None, :]
        return jnp.all((z >= low) & (z <= high), axis=-1)

    def contains(z):
        return jnp.any(inside_each(z), axis=1)

    def component_contains(z, which):
        return jnp.take_along_axis(inside_each(z), jnp.asarray(which)[:, None], axis=1)[:, 0]

    return Prior(f"{len(bounds)} uniform boxes", 2, sample, contains, len(bounds), sample_components, component_contains)


def _chi2_99(dim: int) -> float:
    from scipy.stats import chi2  # scipy comes with scikit-learn
    return float(chi2.ppf(0.99, dim))


def standard_normal(dim: int = 2) -> Prior:
    """N(0, I); its support here is the ball holding 99% of the mass (squared norm <= chi2_dim(0.99))."""
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    radius2 = _chi2_99(dim)

    def sample(key, n):
        return jax.random.normal(key, (n, dim), jnp.float32)

    def contains(z):
        return jnp.sum(jnp.square(_check_codes(z, dim)), axis=1) <= radius2

    return Prior(f"N(0, I_{dim})", dim, sample, contains)


def gaussian_mixture(num_components: int = 10, radius: float = 4.0, std: float = 0.5) -> Prior:
    """Equal-weight 2-D Gaussians N(mu_k, std^2 I), mu_k evenly spaced on a circle of ``radius``.

    Support: within the 99% ball of some component (squared distance <= chi2_2(0.99) std^2).
    """
    if num_components <= 0 or radius < 0 or std <= 0:
        raise ValueError("need num_components > 0, radius >= 0, std > 0")
    angles = 2 * math.pi * np.arange(num_components) / num_components
    means = jnp.asarray(np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1), jnp.float32)
    radius2 = _chi2_99(2) * std**2

    def sample_components(key, which):
        return means[which] + std * jax.random.normal(key, (which.shape[0], 2), jnp.float32)

    def sample(key, n):
        return sample_components(key, jnp.arange(n) % num_components)

    def squared_distances(z):  # (N, num_components)
        return jnp.sum(jnp.square(_check_codes(z, 2)[:, None, :] - means), axis=-1)

    def contains(z):
        return jnp.min(squared_distances(z), axis=1) <= radius2

    def component_contains(z, which):
        return jnp.take_along_axis(squared_distances(z), jnp.asarray(which)[:, None], axis=1)[:, 0] <= radius2

    return Prior(f"{num_components} Gaussians on a circle", 2, sample, contains, num_components, sample_components,
                 component_contains)


def categorical(num_classes: int = 10, temperature: float = 0.0) -> Prior:
    """One-hot vectors of a uniform categorical (the semi-supervised AAE's label prior).

    ``temperature`` > 0: its relaxation instead (Gumbel-softmax / Concrete, Jang et al. 2017;
    Maddison et al. 2017), ``softmax(g / temperature)`` with g (n, num_classes) i.i.d.
    Gumbel: points inside the simplex, one-hot as the temperature goes to 0, each class
    the argmax equally often. Exact one-hot vectors lie where no softmax output can reach,
    so a discriminator can always tell them apart; relaxed ones can be matched.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")

    def sample(key, n):
        if temperature > 0:
            return jax.nn.softmax(jax.random.gumbel(key, (n, num_classes), jnp.float32) / temperature, axis=-1)
        return jax.nn.one_hot(jax.random.randint(key, (n,), 0, num_classes), num_classes, dtype=jnp.float32)

    def contains(y):
        y = _check_codes(y, num_classes)
        return jnp.max(y, axis=1) > 0.5  # a confident (nearly one-hot) label

    name = f"categorical({num_classes})" if temperature == 0 else f"relaxed categorical({num_classes}, T={temperature:g})"
    return Prior(name, num_classes, sample, contains)


PRIORS: dict[str, Callable[[], Prior]] = {
    "uniform": uniform_box,
    "boxes": uniform_boxes,
    "gaussian": standard_normal,
    "mixture": gaussian_mixture,
}
