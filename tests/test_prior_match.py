"""Two-sample statistics of codes against a prior (aejax.prior_match)."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from aejax import prior_match, priors

N = 2000
# About one standard deviation of each statistic between two prior samples of N points
# (uniform box and ten boxes, measured over many seeds): a single noise draw can land
# near 0, so "within noise" allows a few of these besides the reported noise level.
SPREAD = {"mmd2": 1e-3, "energy": 1.5e-3}


def dense_mmd_squared(x: np.ndarray, y: np.ndarray, bandwidths) -> float:
    """The unbiased MMD^2 from full kernel matrices: the definition, for small samples."""
    def gram(a, b):
        squared = np.sum(np.square(a[:, None, :] - b[None, :, :]), axis=-1)
        return sum(np.exp(-squared / (2 * s * s)) for s in bandwidths)

    kxx, kyy = gram(x, x), gram(y, y)
    n, m = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * gram(x, y).mean())


def dense_energy(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased energy distance from full distance matrices."""
    def dist(a, b):
        return np.sqrt(np.sum(np.square(a[:, None, :] - b[None, :, :]), axis=-1))

    n, m = len(x), len(y)
    return 2 * dist(x, y).mean() - dist(x, x).sum() / (n * (n - 1)) - dist(y, y).sum() / (m * (m - 1))


def unstratified(prior: priors.Prior, key: jax.Array, n: int) -> np.ndarray:
    """n prior samples with random component counts, as an encoder's codes have.

    ``uniform_boxes`` gives each box exactly n / 10 samples; such a sample matches the
    prior more evenly than independent draws, which shifts both statistics below 0.
    """
    draw_key, subset_key = jax.random.split(key)
    pool = np.asarray(prior(draw_key, 16 * n))
    return pool[np.asarray(jax.random.permutation(subset_key, 16 * n)[:n])]


def half_box(key: jax.Array, n: int) -> np.ndarray:
    """n codes uniform on [-2.5, 0] x [-2.5, 2.5]: all inside the uniform prior, half its area."""
    codes = np.array(priors.uniform_box()(key, n))
    codes[:, 0] = (codes[:, 0] - 2.5) / 2
    return codes


# -- by hand ---------------------------------------------------------------------------


def test_mmd_squared_by_hand():
    x, y = [[0.0], [1.0]], [[3.0], [5.0]]
    k = lambda d: math.exp(-d * d / 2)  # one bandwidth, s = 1
    # within x: the pair (0, 1) both ways; within y: (3, 5); across: 3, 5, 2, 4
    expected = k(1) + k(2) - 2 * (k(3) + k(5) + k(2) + k(4)) / 4
    assert prior_match.mmd_squared(x, y, [1.0]) == pytest.approx(expected, rel=1e-12)
    # two bandwidths: the kernels add, and so do the MMD^2s
    two = prior_match.mmd_squared(x, y, [1.0, 2.0])
    assert two == pytest.approx(expected + prior_match.mmd_squared(x, y, [2.0]), rel=1e-12)


def test_energy_distance_by_hand():
    # across: |0-2|, |0-3|, |1-2|, |1-3| -> mean 2; within each: 1 -> 2 * 2 - 1 - 1
    assert prior_match.energy_distance([[0.0], [1.0]], [[2.0], [3.0]]) == pytest.approx(2.0, rel=1e-12)
    # across: 10, 10, 5, 5 -> 7.5; within x: |(3, 4)| = 5; within y: 0 -> 15 - 5 - 0
    x, y = [[0.0, 0.0], [3.0, 4.0]], [[6.0, 8.0], [6.0, 8.0]]
    assert prior_match.energy_distance(x, y) == pytest.approx(10.0, rel=1e-12)


def test_single_point_samples_are_rejected():
    # the within-sample means need a pair i != j
    with pytest.raises(ValueError, match="x needs at least 2 points"):
        prior_match.energy_distance([[0.0]], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="y needs at least 2 points"):
        prior_match.mmd_squared([[0.0], [1.0]], [[1.0]], [1.0])


def test_median_bandwidths_by_hand():
    # distances 1, 2, 3 (points 0, 1, 3 on a line) -> median 2
    assert prior_match.median_bandwidths([[0.0], [1.0], [3.0]]) == pytest.approx([1.0, 2.0, 4.0])
    assert prior_match.median_bandwidths([[0.0], [1.0], [3.0]], (1.0,)) == pytest.approx([2.0])
    # mmd_squared's default: the pooled sample's median times (0.5, 1, 2); pooled 0, 1, 3, 4:
    # distances 1, 1, 2, 3, 3, 4 -> median 2.5
    x, y = [[0.0], [1.0]], [[3.0], [4.0]]
    assert prior_match.mmd_squared(x, y) == pytest.approx(prior_match.mmd_squared(x, y, [1.25, 2.5, 5.0]), rel=1e-12)


@pytest.mark.parametrize("bandwidths", [(0.5, 1.0, 2.0), (0.7, 1.3), (3.0,)])
def test_blocked_sums_match_the_definition(monkeypatch, bandwidths):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 3)), rng.normal(size=(250, 3)) + 0.2
    expected_mmd, expected_energy = dense_mmd_squared(x, y, bandwidths), dense_energy(x, y)
    assert prior_match.mmd_squared(x, y, bandwidths) == pytest.approx(expected_mmd, rel=1e-10)
    # blocks of a few rows: many blocks, a last one cut short, diagonal blocks not square
    monkeypatch.setattr(prior_match, "_BLOCK_ELEMENTS", 1000)
    assert prior_match.mmd_squared(x, y, bandwidths) == pytest.approx(expected_mmd, rel=1e-10)
    assert prior_match.energy_distance(x, y) == pytest.approx(expected_energy, rel=1e-10)


def test_blocks_stay_small(monkeypatch):
    shapes = []
    original = prior_match._squared_distances

    def recording(block, b, b_squared):
        shapes.append(block.shape[0] * b.shape[0])
        return original(block, b, b_squared)

    monkeypatch.setattr(prior_match, "_squared_distances", recording)
    monkeypatch.setattr(prior_match, "_BLOCK_ELEMENTS", 1 << 14)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(size=(1500, 2)), rng.uniform(size=(1200, 2))
    prior_match.mmd_squared(x, y, [0.2])
    prior_match.energy_distance(x, y)
    assert shapes and max(shapes) <= 1 << 14


def test_statistics_are_symmetric_and_shift_invariant():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 2)), rng.normal(size=(150, 2)) * 1.5
    for statistic in (prior_match.energy_distance, lambda a, b: prior_match.mmd_squared(a, b, [1.0])):
        assert statistic(x, y) == pytest.approx(statistic(y, x), rel=1e-10)
        assert statistic(x + 100.0, y + 100.0) == pytest.approx(statistic(x, y), rel=1e-6)


# -- noise against mismatch --------------------------------------------------------------


def within_noise(result: dict) -> None:
    for name in ("mmd2", "energy"):
        assert abs(result[name]) < 3 * abs(result[f"{name}_noise"]) + 3 * SPREAD[name], (name, result)


def far_above_noise(result: dict) -> None:
    for name in ("mmd2", "energy"):
        assert result[name] > 10 * max(abs(result[f"{name}_noise"]), SPREAD[name]), (name, result)


@pytest.mark.parametrize("name", ["uniform", "boxes"])
def test_prior_samples_are_within_noise(name):
    prior = priors.PRIORS[name]()
    codes = unstratified(prior, jax.random.key(10), N)
    within_noise(prior_match.prior_match_statistics(codes, prior, jax.random.key(11), null_draws=3))


@pytest.mark.parametrize("name", ["uniform", "boxes"])
def test_collapsed_codes_are_far_above_noise(name):
    # every collapsed code of the uniform box is inside it: the support share says 100%
    prior = priors.PRIORS[name]()
    codes = 0.3 * unstratified(prior, jax.random.key(12), N)
    far_above_noise(prior_match.prior_match_statistics(codes, prior, jax.random.key(13), null_draws=3))


def test_codes_squeezed_into_half_the_box_are_far_above_noise():
    prior = priors.uniform_box()
    codes = half_box(jax.random.key(14), N)
    assert bool(np.all(prior.contains(codes)))
    result = prior_match.prior_match_statistics(codes, prior, jax.random.key(15), box=(-2.5, 2.5), null_draws=3)
    far_above_noise(result)
    assert result["uniformity"]["share_inside"] == 1.0
    assert result["uniformity"]["occupied_cells"] == 0.5
    assert result["uniformity"]["p_value"] < 1e-100


def test_codes_scattered_over_the_boxes_bounding_box_are_far_above_noise():
    prior = priors.uniform_boxes()
    lows, highs = prior_match.boxes_bounds(priors.LECTURE_BOXES)
    codes = np.asarray(jax.random.uniform(jax.random.key(16), (N, 2), minval=lows.min(0), maxval=highs.max(0)))
    # ten 0.8 x 0.8 boxes in a 2.8 x 3.6 bounding box: 6.4 / 10.08 of it
    assert float(np.mean(prior.contains(codes))) == pytest.approx(6.4 / 10.08, abs=0.03)
    far_above_noise(prior_match.prior_match_statistics(codes, prior, jax.random.key(17), null_draws=3))
    np.testing.assert_allclose(prior_match.box_shares(codes, lows, highs), 0.064, atol=0.02)


# -- prior_match_statistics --------------------------------------------------------------


@pytest.mark.parametrize("name", ["uniform", "boxes"])
def test_prior_match_statistics_is_seeded_and_json_ready(name):
    prior = priors.PRIORS[name]()
    codes = np.asarray(prior(jax.random.key(20), 700))
    box = (-2.5, 2.5) if name == "uniform" else None
    first = prior_match.prior_match_statistics(codes, prior, jax.random.key(21), max_samples=500, box=box)
    again = prior_match.prior_match_statistics(codes, prior, jax.random.key(21), max_samples=500, box=box)
    other = prior_match.prior_match_statistics(codes, prior, jax.random.key(22), max_samples=500, box=box)
    assert first == again
    assert first["mmd2"] != other["mmd2"] and first["energy_noise"] != other["energy_noise"]
    assert first["samples"] == 500
    assert len(first["bandwidths"]) == 3 and first["bandwidths"][0] > 0
    assert ("uniformity" in first) == (box is not None)
    assert json.loads(json.dumps(first, allow_nan=False)) == first


def test_prior_match_statistics_uses_all_codes_up_to_max_samples():
    prior = priors.uniform_box()
    codes = np.asarray(prior(jax.random.key(23), 300))
    result = prior_match.prior_match_statistics(codes, prior, jax.random.key(24), null_draws=3)
    assert result["samples"] == 300
    # no subset: the same key draws the same prior samples, and the order of the codes is irrelevant
    shuffled = prior_match.prior_match_statistics(codes[::-1], prior, jax.random.key(24), null_draws=3)
    assert shuffled["mmd2"] == pytest.approx(result["mmd2"], rel=1e-9)
    assert shuffled["mmd2_noise"] == result["mmd2_noise"]


@pytest.mark.parametrize("scale, p_below", [(1.0, None), (0.3, 1 / 21)])
def test_the_null_distribution_places_the_codes_statistic(scale, p_below):
    prior = priors.uniform_box()
    codes = scale * unstratified(prior, jax.random.key(30), 1000)
    result = prior_match.prior_match_statistics(codes, prior, jax.random.key(31))
    for name in ("mmd2", "energy"):
        null = result[f"{name}_null"]
        assert null["draws"] == prior_match.NULL_DRAWS and null["sd"] > 0
        assert abs(null["mean"]) < 3 * null["sd"]  # two prior samples differ by noise around 0
        if p_below is None:  # prior samples: their statistic within the null's spread, not in its far tail
            assert abs(result[name] - null["mean"]) < 4 * null["sd"] and null["p_value"] > 0.05
        else:  # collapsed codes: above every null draw, the smallest p-value 20 draws can give
            assert null["p_value"] == pytest.approx(p_below) and result[name] > null["mean"] + 10 * null["sd"]
    assert result["mmd2_null"]["mean"] != result["mmd2_noise"]  # the first draw is one of twenty
    with pytest.raises(ValueError, match="null_draws"):
        prior_match.prior_match_statistics(codes, prior, jax.random.key(31), null_draws=0)


def test_prior_match_statistics_bad_input():
    prior = priors.uniform_box()
    codes = np.zeros((10, 2))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="max_samples must be an integer >= 2"):
        prior_match.prior_match_statistics(codes, prior, key, max_samples=1)
    with pytest.raises(ValueError, match=r"prior_sample\(key, 160\) must return shape \(160, 3\)"):
        prior_match.prior_match_statistics(np.zeros((10, 3)), prior, key)
    with pytest.raises(ValueError, match="box must be"):
        prior_match.prior_match_statistics(np.zeros((10, 3)), priors.uniform_box(dim=3), key, box=(-1, 1))
    with pytest.raises(ValueError, match="codes contains non-finite values"):
        prior_match.prior_match_statistics(np.full((10, 2), np.nan), prior, key)


# -- uniformity_test ---------------------------------------------------------------------


def test_uniformity_test_passes_uniform_codes():
    codes = np.asarray(priors.uniform_box()(jax.random.key(30), 5000))
    result = prior_match.uniformity_test(codes, [-2.5, -2.5], [2.5, 2.5])
    assert result["p_value"] > 0.01
    assert result["share_inside"] == 1.0 and result["occupied_cells"] == 1.0
    assert result["max_cell_ratio"] < 1.5


def test_uniformity_test_fails_squeezed_codes():
    result = prior_match.uniformity_test(half_box(jax.random.key(31), 5000), -2.5, 2.5)
    assert result["share_inside"] == 1.0  # the support share cannot see it
    assert result["p_value"] < 1e-100
    assert result["occupied_cells"] == 0.5
    assert result["max_cell_ratio"] > 1.7  # about 2: every code in half the cells


def test_uniformity_test_by_hand():
    # bins=2 on [0, 2]^2: five codes in each cell (one on the far corner, edges included),
    # two outside and one NaN, which also counts as outside
    cells = [[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5]]
    codes = [*cells * 4, [0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [2.0, 2.0], [3.0, 1.0], [-0.1, 1.0], [np.nan, 1.0]]
    result = prior_match.uniformity_test(codes, [0.0, 0.0], [2.0, 2.0], bins=2)
    assert result == {"chi2": 0.0, "p_value": 1.0, "expected_per_cell": 5.0, "share_inside": 20 / 23,
                      "occupied_cells": 1.0, "max_cell_ratio": 1.0}
    # counts 12, 4, 2, 2 against 5 each: chi2 = (49 + 1 + 9 + 9) / 5 = 13.6, fullest 12 / 5
    lopsided = prior_match.uniformity_test([[0.5, 0.5]] * 12 + [[1.5, 0.5]] * 4 + [[0.5, 1.5]] * 2
                                           + [[1.5, 1.5]] * 2, 0.0, 2.0, bins=2)
    assert lopsided["chi2"] == pytest.approx(13.6) and lopsided["max_cell_ratio"] == pytest.approx(2.4)
    # fewer than five codes expected a cell: the chi-square approximation does not hold, no test
    few = prior_match.uniformity_test([[0.5, 0.5]] * 3 + [[1.5, 0.5]], 0.0, 2.0, bins=2)
    assert few["chi2"] is None and few["p_value"] is None and few["expected_per_cell"] == 1.0
    assert few["occupied_cells"] == 0.5 and few["max_cell_ratio"] == 3.0
    nothing_inside = prior_match.uniformity_test([[5.0, 5.0]], 0.0, 2.0, bins=2)
    assert nothing_inside == {"chi2": None, "p_value": None, "expected_per_cell": 0.0, "share_inside": 0.0,
                              "occupied_cells": 0.0, "max_cell_ratio": 0.0}


def test_uniformity_test_bad_input():
    with pytest.raises(ValueError, match=r"codes must have shape \(N, 2\)"):
        prior_match.uniformity_test(np.zeros((5, 3)), 0.0, 1.0)
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        prior_match.uniformity_test(np.zeros((5, 2)), 0.0, 1.0, bins=1)
    with pytest.raises(ValueError, match="need finite low < high"):
        prior_match.uniformity_test(np.zeros((5, 2)), [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"low and high must be scalars or have shape \(2,\)"):
        prior_match.uniformity_test(np.zeros((5, 2)), [0.0, 0.0, 0.0], 1.0)


# -- box_shares --------------------------------------------------------------------------


def test_box_shares_by_hand():
    lows, highs = [[0.0, 0.0], [2.0, 2.0]], [[1.0, 1.0], [3.0, 3.0]]
    codes = [[0.5, 0.5], [2.5, 2.5], [2.0, 3.0], [5.0, 5.0]]  # one in box 0, two in box 1 (an edge), one in none
    assert prior_match.box_shares(codes, lows, highs) == [0.25, 0.5]


def test_box_shares_of_the_lecture_boxes():
    lows, highs = prior_match.boxes_bounds(priors.LECTURE_BOXES)
    np.testing.assert_array_equal(lows[0], [-1.5, -1.5])
    np.testing.assert_array_equal(highs[-1], [0.3, -1.7])
    # the ten-boxes prior draws sample i from box i % 10: exactly a tenth in each
    codes = priors.uniform_boxes()(jax.random.key(40), 1000)
    assert prior_match.box_shares(codes, lows, highs) == [0.1] * 10
    # codes all in one box: inside the support, and the shares show it
    collapsed = np.asarray(codes)[np.asarray(codes)[:, 1] < -1.6]  # only the box below
    assert prior_match.box_shares(collapsed, lows, highs) == [0.0] * 9 + [1.0]


def test_box_shares_bad_input():
    with pytest.raises(ValueError, match="lows and highs must both have shape"):
        prior_match.box_shares(np.zeros((3, 2)), np.zeros((2, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"codes must have shape \(N, 2\)"):
        prior_match.box_shares(np.zeros((3, 3)), np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="every box needs lows < highs"):
        prior_match.box_shares(np.zeros((3, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="boxes must be a non-empty sequence"):
        prior_match.boxes_bounds([(0.0, 1.0, 0.0)])


# -- other bad input -------------------------------------------------------------------


def test_two_sample_bad_input():
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\)"):
        prior_match.mmd_squared(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="x and y must have the same dimension"):
        prior_match.energy_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="y contains non-finite values"):
        prior_match.energy_distance(np.zeros((5, 2)), np.full((5, 2), np.inf))
    with pytest.raises(ValueError, match="bandwidths must be a non-empty sequence of positive numbers"):
        prior_match.mmd_squared(np.zeros((5, 2)), np.ones((5, 2)), [1.0, -1.0])
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        prior_match.mmd_squared(np.zeros((5, 2)), np.zeros((5, 2)))
