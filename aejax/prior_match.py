"""Two-sample statistics of how well codes match a prior, which collapse cannot game.

The share of codes inside the prior's support rewards collapse: codes squeezed into one
corner of a box are all inside it, and ten boxes cover 63.5% of their bounding box, so
codes scattered over that bounding box already score about 64%. The statistics here
compare the whole distribution of the codes with prior samples instead:

* ``mmd_squared``: the unbiased maximum mean discrepancy with a sum of Gaussian kernels;
* ``energy_distance``: 2 E|X-Y| - E|X-X'| - E|Y-Y'|;
* ``uniformity_test``: a chi-square test of a 2-D histogram over a box;
* ``box_shares``: the share of codes in each box of a union of boxes;
* ``prior_match_statistics``: MMD^2 and energy distance of codes against a prior sample,
  beside the same statistics between two prior samples (their noise level).

Both two-sample statistics are 0 in expectation exactly when the two distributions are
equal, and, being unbiased, fluctuate around 0 (they can be negative) with a spread
that shrinks like 1 / N: compare a value with the noise level at the same sample size.
Pairwise sums are computed in float64 numpy, in blocks of rows, so that N = M = 10,000
never holds more than a few hundred thousand pairwise values at once.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from scipy import stats

# Pairwise values a block holds (2 MiB of float64): small enough to stay in cache across
# the several passes over each block, several times faster than blocks of 16 MiB.
_BLOCK_ELEMENTS = 1 << 18
# The default bandwidths' median pairwise distance uses at most this many points (about
# half a million pairs): the bandwidths need the sample's scale, not its exact median.
_MEDIAN_POINTS = 1000
# Prior samples are a random n of this many times n draws (see _prior_draw).
_POOL_FACTOR = 16
DEFAULT_BANDWIDTH_SCALES = (0.5, 1.0, 2.0)
MIN_EXPECTED_PER_CELL = 5  # the chi-square approximation's usual floor
NULL_DRAWS = 20  # pairs of prior samples whose statistics make the null distribution

PriorSampler = Callable[[jax.Array, int], Any]  # (key, n) -> (n, D)


def _as_sample(x: Any, name: str, min_points: int = 2) -> np.ndarray:
    """``x`` as a float64 (N, D) array with N >= ``min_points`` finite rows."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, D) with D > 0, got {x.shape}")
    if x.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values")
    return x


def _as_pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two samples (N, D) and (M, D) of the same dimension, each of at least two points."""
    x, y = _as_sample(x, "x"), _as_sample(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    return x, y


def _squared_distances(block: np.ndarray, b: np.ndarray, b_squared: np.ndarray) -> np.ndarray:
    """|block_i - b_j|^2 (R, M) of block (R, D), b (M, D) with b_squared = |b_j|^2 (M,), in place."""
    squared = block @ b.T
    squared *= -2.0
    squared += b_squared[None, :]
    squared += np.sum(block * block, axis=1)[:, None]
    # The expansion can round a zero distance to a tiny negative number.
    return np.maximum(squared, 0.0, out=squared)


def _cross_mean(a: np.ndarray, b: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """The mean of fn(|a_i - b_j|^2) over all N M pairs of a (N, D), b (M, D).

    ``fn`` maps squared distances (R, M) to values of that shape (it may work in place).
    Rows of ``a`` go in blocks of at most ``_BLOCK_ELEMENTS`` pairs.
    """
    b_squared = np.sum(b * b, axis=1)
    rows = max(1, _BLOCK_ELEMENTS // b.shape[0])
    total = 0.0
    for start in range(0, a.shape[0], rows):
        total += float(np.sum(fn(_squared_distances(a[start:start + rows], b, b_squared))))
    return total / (a.shape[0] * b.shape[0])


def _within_mean(a: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """The mean of fn(|a_i - a_j|^2) over the N (N - 1) pairs i != j of a (N, D).

    The pairs are symmetric, so only those with j > i are computed (half the work): each
    block of rows meets the columns from its first row on, and its own lower triangle
    (the diagonal included) is dropped.
    """
    a_squared = np.sum(a * a, axis=1)
    count = a.shape[0]
    rows = max(1, _BLOCK_ELEMENTS // count)
    total = 0.0
    for start in range(0, count, rows):
        values = fn(_squared_distances(a[start:start + rows], a[start:], a_squared[start:]))
        size = values.shape[0]
        values[np.tril_indices(size, 0, size)] = 0.0
        total += float(np.sum(values))
    return 2.0 * total / (count * (count - 1))


def median_bandwidths(sample: Any, scales: Sequence[float] = DEFAULT_BANDWIDTH_SCALES) -> list[float]:
    """The median pairwise distance of sample (N, D), N >= 2, times each scale.

    More than ``_MEDIAN_POINTS`` points: the median over that many of them, evenly spaced
    in the given order (no randomness; pooled samples [x; y] keep their proportions).
    """
    sample = _as_sample(sample, "sample")
    if len(scales) == 0 or not all(np.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales}")
    points = sample[np.linspace(0, sample.shape[0] - 1, min(sample.shape[0], _MEDIAN_POINTS)).round().astype(int)]
    squared = _squared_distances(points, points, np.sum(points * points, axis=1))
    median = float(np.median(np.sqrt(squared[np.triu_indices(points.shape[0], k=1)])))
    if median <= 0:
        raise ValueError("median pairwise distance is 0 (most points coincide); pass bandwidths explicitly")
    return [median * float(s) for s in scales]


def _check_bandwidths(bandwidths: Sequence[float]) -> list[float]:
    """Bandwidths as floats, each finite and positive."""
    bandwidths = [float(s) for s in bandwidths]
    if len(bandwidths) == 0 or not all(np.isfinite(s) and s > 0 for s in bandwidths):
        raise ValueError(f"bandwidths must be a non-empty sequence of positive numbers, got {bandwidths}")
    return bandwidths


def _squarings(ratio: float) -> int | None:
    """k if ratio is 2^k (k >= 0, up to rounding), else None."""
    k = round(np.log2(ratio))
    return k if k >= 0 and abs(2.0**k - ratio) <= 1e-12 * ratio else None


def _rbf_sum(bandwidths: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    """Squared distances -> sum over bandwidths s of exp(-d^2 / (2 s^2)), same shape.

    exp(-d^2 / (2 s^2)) is the widest bandwidth's kernel raised to (widest / s)^2; where
    that power is 2^k, k squarings replace an exp, the costliest step (the default
    bandwidths' powers are 1, 4 and 16: one exp a pair instead of three).
    """
    widest = max(bandwidths)
    powers = [(s, _squarings((widest / s) ** 2)) for s in bandwidths]
    by_squaring = sorted(k for _, k in powers if k is not None)
    by_exp = [s for s, k in powers if k is None]

    def kernel(squared: np.ndarray) -> np.ndarray:
        total = np.zeros_like(squared)
        for s in by_exp:
            total += np.exp(squared * (-0.5 / s**2))
        value = np.exp(squared * (-0.5 / widest**2), out=squared)  # the distances are not needed again
        done = 0
        for k in by_squaring:
            for _ in range(k - done):
                np.square(value, out=value)
            done = k
            total += value
        return total

    return kernel


def mmd_squared(x: Any, y: Any, bandwidths: Sequence[float] | None = None) -> float:
    """The unbiased MMD^2 of samples x (N, D) and y (M, D), N, M >= 2.

    Kernel: k(a, b) = sum over bandwidths s of exp(-|a - b|^2 / (2 s^2)). The estimate is
    mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j):
    0 in expectation exactly when x and y come from the same distribution, and then often
    negative. Default bandwidths: the median pairwise distance of the
    pooled sample [x; y] times (0.5, 1, 2) (``median_bandwidths``).
    """
    x, y = _as_pair(x, y)
    kernel = _rbf_sum(median_bandwidths(np.concatenate([x, y])) if bandwidths is None
                     else _check_bandwidths(bandwidths))
    return _within_mean(x, kernel) + _within_mean(y, kernel) - 2.0 * _cross_mean(x, y, kernel)


def energy_distance(x: Any, y: Any) -> float:
    """The unbiased energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| of x (N, D) and y (M, D).

    The within-sample means run over pairs i != j, so each sample needs at least two
    points. 0 in expectation exactly when x and y come from the same distribution;
    otherwise positive, in the units of the codes (a shift by c in 1-D gives about 2|c|
    when c is large against the spread).
    """
    x, y = _as_pair(x, y)
    distance = np.sqrt
    return 2.0 * _cross_mean(x, y, distance) - _within_mean(x, distance) - _within_mean(y, distance)


def _box_bounds(low: Any, high: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """low, high (scalars or (dim,)) as (dim,) float64 arrays with low < high."""
    try:
        low = np.broadcast_to(np.asarray(low, np.float64), (dim,))
        high = np.broadcast_to(np.asarray(high, np.float64), (dim,))
    except ValueError:
        raise ValueError(f"low and high must be scalars or have shape ({dim},), got "
                         f"{np.shape(low)} and {np.shape(high)}") from None
    if not np.all(np.isfinite(low) & np.isfinite(high) & (low < high)):
        raise ValueError(f"need finite low < high, got low={low.tolist()}, high={high.tolist()}")
    return low, high


def uniformity_test(codes: Any, low: Any, high: Any, bins: int = 10) -> dict[str, float | None]:
    """A chi-square test that codes (N, 2) are uniform on the box [low, high] (each (2,) or a scalar).

    The box is cut into bins x bins equal cells (edges included, as the priors' support);
    codes outside it (and non-finite ones) fall in an "outside" cell that the uniform
    prior never fills, so it is reported apart, not in the test:

    * ``share_inside``: share of codes inside the box;
    * ``chi2``, ``p_value``: ``scipy.stats.chisquare`` of the inside codes' cell counts
      against equal expected counts; None where a cell expects fewer than
      ``MIN_EXPECTED_PER_CELL`` codes, below which the chi-square approximation fails;
    * ``expected_per_cell``: inside codes / cells;
    * ``occupied_cells``: share of cells holding at least one code;
    * ``max_cell_ratio``: the fullest cell's count over the expected count a cell
      (inside codes / cells); 1 for perfectly even counts, 0 if no code is inside.

    Codes squeezed into part of the box leave cells empty, so the p-value is tiny even
    when every code is inside.
    """
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or codes.shape[1] != 2 or codes.shape[0] == 0:
        raise ValueError(f"codes must have shape (N, 2) with N > 0, got {codes.shape}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    low, high = _box_bounds(low, high, 2)
    with np.errstate(invalid="ignore"):  # NaN codes compare False: outside
        inside = np.all((codes >= low) & (codes <= high), axis=1)
    counts, _, _ = np.histogram2d(codes[inside, 0], codes[inside, 1], bins=bins,
                                  range=[[low[0], high[0]], [low[1], high[1]]])
    counts = counts.ravel()
    count_inside = int(inside.sum())
    expected = count_inside / counts.size
    chi2 = p_value = None
    if expected >= MIN_EXPECTED_PER_CELL:
        result = stats.chisquare(counts)
        chi2, p_value = float(result.statistic), float(result.pvalue)
    max_ratio = float(counts.max() / expected) if count_inside else 0.0
    return {
        "chi2": chi2,
        "p_value": p_value,
        "expected_per_cell": expected,
        "share_inside": count_inside / codes.shape[0],
        "occupied_cells": float(np.mean(counts > 0)),
        "max_cell_ratio": max_ratio,
    }


def boxes_bounds(boxes: Sequence[tuple[float, float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """2-D boxes as ``priors.uniform_boxes`` takes them, (x_min, x_max, y_min, y_max) each,
    -> lows (K, 2), highs (K, 2) for ``box_shares``."""
    bounds = np.asarray(boxes, np.float64)
    if bounds.ndim != 2 or bounds.shape[1] != 4 or bounds.shape[0] == 0:
        raise ValueError(f"boxes must be a non-empty sequence of (x_min, x_max, y_min, y_max), "
                         f"got shape {bounds.shape}")
    return bounds[:, [0, 2]], bounds[:, [1, 3]]


def box_shares(codes: Any, lows: Any, highs: Any) -> list[float]:
    """The share of codes (N, D) inside each box [lows[k], highs[k]] (lows, highs (K, D)), edges included.

    A prior of K equally weighted boxes puts 1 / K of its mass in each; a code in no box
    counts for none, and one in overlapping boxes for each of them. For
    ``priors.LECTURE_BOXES`` use ``box_shares(codes, *boxes_bounds(priors.LECTURE_BOXES))``.
    """
    codes = np.asarray(codes, np.float64)
    lows, highs = np.asarray(lows, np.float64), np.asarray(highs, np.float64)
    if lows.ndim != 2 or lows.shape[0] == 0 or lows.shape != highs.shape:
        raise ValueError(f"lows and highs must both have shape (K, D) with K > 0, got {lows.shape} and {highs.shape}")
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] != lows.shape[1]:
        raise ValueError(f"codes must have shape (N, {lows.shape[1]}) with N > 0, got {codes.shape}")
    if not np.all(lows < highs):
        raise ValueError("every box needs lows < highs")
    with np.errstate(invalid="ignore"):  # NaN codes compare False: in no box
        inside = np.all((codes[:, None, :] >= lows) & (codes[:, None, :] <= highs), axis=-1)  # (N, K)
    return [float(share) for share in inside.mean(axis=0)]


def _prior_draw(prior_sample: PriorSampler, key: jax.Array, n: int, dim: int) -> np.ndarray:
    """n prior samples as float64 (n, dim): a random n of ``_POOL_FACTOR * n`` draws.

    Samplers that stratify (``priors.uniform_boxes`` and ``gaussian_mixture`` take sample i
    from component i % K) give each component exactly n / K samples: fewer pairs from one
    component than independent draws have, which biases MMD^2 and energy distance low by
    O(1 / n), far beyond their spread (for the ten boxes at n = 2000, about -1e-3 against
    a spread of 5e-5). A random subset of a larger draw has nearly independent component
    counts and keeps about 1 / ``_POOL_FACTOR`` of that bias.
    """
    draw_key, subset_key = jax.random.split(key)
    pool = np.asarray(prior_sample(draw_key, _POOL_FACTOR * n), np.float64)
    if pool.shape != (_POOL_FACTOR * n, dim):
        raise ValueError(f"prior_sample(key, {_POOL_FACTOR * n}) must return shape ({_POOL_FACTOR * n}, {dim}), "
                         f"got {pool.shape}")
    if not np.all(np.isfinite(pool)):
        raise ValueError("prior_sample returned non-finite values")
    return pool[np.asarray(jax.random.permutation(subset_key, pool.shape[0])[:n])]


def _null_summary(draws: Sequence[float], observed: float) -> dict[str, float | int]:
    """Mean, sd (ddof 1; 0 for one draw) and Monte Carlo p-value of ``observed`` under the null ``draws``."""
    values = np.asarray(draws, np.float64)
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "p_value": float((1 + np.sum(values >= observed)) / (1 + values.size)), "draws": int(values.size)}


def prior_match_statistics(codes: Any, prior_sample: PriorSampler, key: jax.Array, max_samples: int = 5000,
                           box: tuple[Any, Any] | None = None, null_draws: int = NULL_DRAWS) -> dict[str, Any]:
    """MMD^2 and energy distance of codes (N, D) against a prior sample, beside their noise level.

    n = min(N, max_samples) codes (a subset drawn with ``key`` if N is larger) meet two
    independent prior samples A and B of n each, ``prior_sample(key, m) -> (m, D)``, each a
    random n of 16 n draws (a sampler that gives each mixture component exactly its share
    would bias both statistics low; see ``_prior_draw``):

    * ``mmd2``, ``energy``: MMD^2 (``mmd_squared``) and energy distance of codes and A;
    * ``mmd2_noise``, ``energy_noise``: the same of A and B, one draw of what two prior
      samples of this size differ by (it scatters around 0, so read its size, not its sign);
    * ``mmd2_null``, ``energy_null``: the null distribution, ``null_draws`` such pairs of
      fresh prior samples (A and B among them): its ``mean`` and ``sd``, and ``p_value``, the
      share of draws at least as large as the codes' statistic, (1 + k) / (1 + draws) (the
      smallest it can be is 1 / (1 + draws));
    * ``samples``: n; ``bandwidths``: the MMD's, used for both pairs so that the two
      MMD^2 are on one scale: the median heuristic (``median_bandwidths``) on a third
      prior sample, so that the codes cannot change the kernel they are judged by (a
      pooled median would widen it for codes far off the prior).

    ``box`` = (low, high) (each a scalar or (2,), 2-D codes only) adds ``uniformity``:
    ``uniformity_test`` of the n codes on that box. All values are JSON-ready; the same
    key gives the same numbers.
    """
    codes = _as_sample(codes, "codes")
    if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 2:
        raise ValueError(f"max_samples must be an integer >= 2, got {max_samples!r}")
    if box is not None and (len(box) != 2 or codes.shape[1] != 2):
        raise ValueError(f"box must be (low, high) for 2-D codes, got {len(box)} bounds and dimension {codes.shape[1]}")
    count, dim = codes.shape
    n = min(count, int(max_samples))
    subset_key, key_a, key_b, key_scale = jax.random.split(key, 4)
    if n < count:
        codes = codes[np.sort(np.asarray(jax.random.permutation(subset_key, count)[:n]))]
    prior_a = _prior_draw(prior_sample, key_a, n, dim)
    prior_b = _prior_draw(prior_sample, key_b, n, dim)
    bandwidths = median_bandwidths(_prior_draw(prior_sample, key_scale, n, dim))
    result: dict[str, Any] = {
        "mmd2": mmd_squared(codes, prior_a, bandwidths),
        "mmd2_noise": mmd_squared(prior_a, prior_b, bandwidths),
        "energy": energy_distance(codes, prior_a),
        "energy_noise": energy_distance(prior_a, prior_b),
        "samples": n,
        "bandwidths": bandwidths,
    }
    if isinstance(null_draws, bool) or not isinstance(null_draws, (int, np.integer)) or null_draws < 1:
        raise ValueError(f"null_draws must be an integer >= 1, got {null_draws!r}")
    null_mmd, null_energy = [result["mmd2_noise"]], [result["energy_noise"]]
    for draw_key in jax.random.split(jax.random.fold_in(key, 1), int(null_draws) - 1):  # keys apart from the above
        first_key, second_key = jax.random.split(draw_key)
        first, second = _prior_draw(prior_sample, first_key, n, dim), _prior_draw(prior_sample, second_key, n, dim)
        null_mmd.append(mmd_squared(first, second, bandwidths))
        null_energy.append(energy_distance(first, second))
    result["mmd2_null"] = _null_summary(null_mmd, result["mmd2"])
    result["energy_null"] = _null_summary(null_energy, result["energy"])
    if box is not None:
        result["uniformity"] = uniformity_test(codes, *box)
    return result
