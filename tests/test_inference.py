"""Running a model over a split outside training (aejax.inference): batching, padding, precise BatchNorm."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import inference
from aejax.model import LossOutput, Phase
from aejax.modules import BatchNorm

from support import random_dataset


def test_map_over_split_concatenates_batches_and_rejects_empty_splits():
    """Uneven last batch, batch numbers in order, one array per output; an empty split is a ValueError."""
    dataset = {"label": jnp.arange(7)}
    seen = []

    def fn(number, indices):
        seen.append(number)
        return indices * 2, indices[:, None]

    doubled, column = inference.map_over_split(fn, dataset, batch_size=3)
    assert seen == [0, 1, 2]
    np.testing.assert_array_equal(doubled, np.arange(7) * 2)
    assert column.shape == (7, 1)
    with pytest.raises(ValueError, match="at least one example"):
        inference.map_over_split(fn, {"label": jnp.zeros((0,))}, batch_size=3)
    with pytest.raises(ValueError, match="positive batch_size"):
        inference.map_over_split(fn, dataset, batch_size=0)


def test_num_examples_is_the_first_arrays_leading_axis_whatever_its_key():
    """No key is special: N is the first array's leading axis; later arrays may be of other lengths."""
    dataset = {"points": jnp.zeros((7, 2)), "subset": jnp.zeros((3,))}
    assert inference.num_examples(dataset) == 7
    numbers, = inference.map_over_split(lambda _, idx: (idx,), dataset, batch_size=4)
    np.testing.assert_array_equal(numbers, np.arange(7))


def test_map_over_split_pads_only_when_asked():
    dataset = {"image": jnp.zeros((5, 28, 28), jnp.uint8)}
    seen = []

    def fn(_, indices):
        seen.append(np.asarray(indices))
        return (indices * 10,)

    (out,) = inference.map_over_split(fn, dataset, 2, pad_last=True)
    np.testing.assert_array_equal(out, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(seen[-1], [4, 4])  # the short batch repeats its last index
    seen.clear()
    (out,) = inference.map_over_split(fn, dataset, 2)
    np.testing.assert_array_equal(out, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(seen[-1], [4])
    seen.clear()
    (out,) = inference.map_over_split(fn, dataset, 8, pad_last=True)  # one batch of all 5, nothing padded
    assert [len(s) for s in seen] == [5] and len(out) == 5


def test_recompute_batch_stats_averages_each_full_batch_statistic():
    """Precise BN: the mean of the full batches' means and unbiased variances, for the phase's modules only."""
    norm = BatchNorm()

    traced = []

    def loss_fn(params, batch_stats, batch, key, step):
        traced.append(1)
        features = batch["image"].reshape(batch["image"].shape[0], -1)[:, 400:405]  # (B, 5), varied pixels
        y, updated = norm.apply({"params": params["net"], "batch_stats": batch_stats["net"]}, features, True,
                                mutable=["batch_stats"])
        return LossOutput(jnp.mean(y), {**batch_stats, "net": updated["batch_stats"]}, {})

    phase = Phase("fit", loss_fn, optax.sgd(0.1), ("net",))
    dataset = random_dataset(100)
    variables = norm.init(jax.random.key(0), jnp.zeros((2, 5)), False)
    stale = {"mean": jnp.full((5,), 7.0, jnp.float32), "var": jnp.full((5,), 3.0, jnp.float32)}
    other_stale = {"mean": jnp.zeros((5,), jnp.float32), "var": jnp.ones((5,), jnp.float32)}
    other = {"mean": jnp.arange(3.0)}
    result = inference.recompute_batch_stats(phase, {"net": variables["params"]}, {"net": stale, "other": other},
                                             dataset, batch_size=32, key=jax.random.key(1))
    pixels = np.asarray(dataset["image"], np.float64).reshape(100, -1)[:, 400:405] / 255.0
    batches = [pixels[i * 32:(i + 1) * 32] for i in range(3)]  # the last 4 examples make no full batch
    np.testing.assert_allclose(result["net"]["mean"], np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(result["net"]["var"], np.mean([b.var(0, ddof=1) for b in batches], 0), rtol=1e-4)
    chex.assert_trees_all_equal(result["other"], other)
    with pytest.raises(ValueError, match="full batch of 128"):
        inference.recompute_batch_stats(phase, {"net": variables["params"]}, {"net": stale}, dataset, 128, jax.random.key(1))
    # compiled once per loss and shapes: a second call (new statistics values) traces nothing
    traces = len(traced)
    inference.recompute_batch_stats(phase, {"net": variables["params"]}, {"net": other_stale, "other": other},
                                    dataset, batch_size=32, key=jax.random.key(2))
    assert len(traced) == traces
