"""aejax.evaluation: metrics and the model helpers, on a tiny hand-checkable model; each helper
compiles once per model and shape."""

from __future__ import annotations

import collections

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import data, evaluation
from aejax.experiments import common
from aejax.train import Model

from support import random_dataset


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def _tiny_model(traces: collections.Counter) -> Model:
    """encode: z = scale * (mean pixel, max pixel), doubled with ``train``; decode: every pixel's
    logit is z0 + 2 z1 - label. ``traces`` counts how often each function is traced."""

    def encode(params, batch_stats, images, labels=None, train=False):
        traces["encode"] += 1
        flat = images.reshape(images.shape[0], -1)
        z = params["scale"] * jnp.stack([flat.mean(axis=1), flat.max(axis=1)], axis=1)
        return 2 * z if train else z

    def decode(params, batch_stats, latents, labels=None, train=False):
        traces["decode"] += 1
        logits = latents[:, 0] + 2 * latents[:, 1] - (0 if labels is None else labels.astype(latents.dtype))
        return jnp.broadcast_to(logits[:, None, None, None], (latents.shape[0], 28, 28, 1))

    return Model(init=lambda key: ({"scale": jnp.ones(())}, {}), phases=(), encode=encode, decode=decode)


PARAMS, STATS = {"scale": jnp.ones(())}, {}


def _pixels(images: np.ndarray) -> np.ndarray:
    """One pixel per image: the helpers' images are constant, (N, 28, 28, 1) -> (N,)."""
    images = np.asarray(images)
    assert np.all(images == images[..., :1, :1, :])
    return images[..., 0, 0, 0]


def test_reconstruction_metrics_by_hand():
    result = {"inputs": np.array([[1.0, 0.0], [0.0, 0.0]]), "reconstructions": np.array([[0.5, 0.5], [0.0, 1.0]])}
    metrics = evaluation.reconstruction_metrics(result, prefix="val")
    assert set(metrics) == {"val_bce", "val_mse"}
    # per pixel: -log 0.5 twice; a clipped 0 against 0 (about 0); a clipped 1 against 0: -log 1e-7
    expected_bce = (2 * np.log(2) + 1e-7 - np.log(1e-7)) / 4
    assert metrics["val_bce"] == pytest.approx(expected_bce, rel=1e-6)
    assert metrics["val_mse"] == pytest.approx((0.25 + 0.25 + 0 + 1) / 4)


def test_noisy_test_set_adds_the_keys_gaussian_noise():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    split = data.Split(images, np.array([7, 1], np.uint8))
    key = jax.random.key(3)
    clean, noisy = evaluation.noisy_test_set(split, key, std=0.5)
    assert clean.shape == (2, 28, 28, 1)
    np.testing.assert_allclose(clean[1, 0, 5, 0], images[1, 0, 5] / 255.0, rtol=1e-6)
    expected = clean + 0.5 * np.asarray(jax.random.normal(key, clean.shape, jnp.float32))
    np.testing.assert_allclose(np.asarray(noisy["image"]), expected, rtol=1e-6, atol=1e-6)
    assert noisy["label"].dtype == jnp.int32
    np.testing.assert_array_equal(noisy["label"], [7, 1])
    assert evaluation.LECTURE_NOISE_STD == 0.3


def test_first_of_class_picks_by_label_within_the_first_images():
    images = np.stack([np.full((28, 28), v, np.uint8) for v in (10, 20, 30, 40)])
    split = data.Split(images, np.array([3, 1, 3, 2], np.uint8))
    picked = evaluation.first_of_class(split, 3, index=1)
    assert picked.shape == (28, 28, 1)
    assert picked[0, 0, 0] == pytest.approx(30 / 255)
    with pytest.raises(ValueError, match="fewer than 2 images of class 3 among the first 2"):
        evaluation.first_of_class(split, 3, index=1, within=2)


def test_lecture_example_looks_in_the_first_batch_then_the_whole_split():
    labels = np.array([1] * 63 + [2] + [2] * 10 + [5], np.uint8)  # one 2 in the first batch of 64, a 5 after it
    images = np.arange(len(labels), dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    split = data.Split(images, labels)
    assert evaluation.lecture_example(split, 2)[0, 0, 0] == pytest.approx(63 / 255)
    assert evaluation.lecture_example(split, 2, index=1)[0, 0, 0] == pytest.approx(64 / 255)  # beyond the batch
    assert evaluation.lecture_example(split, 5)[0, 0, 0] == pytest.approx(74 / 255)
    with pytest.raises(ValueError, match="fewer than 1 images of class 7"):
        evaluation.lecture_example(split, 7)


def test_interpolation_classes_fall_back_to_the_data_and_are_checked():
    lecture = common.InterpolationClasses()
    assert lecture.resolve(10) == (7, 6)
    assert lecture.resolve(3) == (2, 1)  # no 7 or 6: the last two classes
    assert lecture.resolve(7) == (6, 5)  # a 6 but no 7: 6 starts, 5 ends
    assert common.InterpolationClasses(end_class=2).resolve(3) == (1, 2)
    with pytest.raises(ValueError, match="class 9 is not in the data"):
        common.InterpolationClasses(start_class=9).resolve(8)
    with pytest.raises(ValueError, match="needs at least two"):
        lecture.resolve(1)
    with pytest.raises(ValueError, match="must differ"):
        common.InterpolationClasses(start_class=3, end_class=3)
    with pytest.raises(ValueError, match="end_class must be a class label >= 0"):
        common.InterpolationClasses(end_class=-1)


def test_vector_arithmetic_decodes_a_plus_b_minus_c():
    model = _tiny_model(collections.Counter())
    inputs = np.stack([np.full((28, 28, 1), v, np.float32) for v in (0.5, 0.25, 0.125)])
    result = evaluation.vector_arithmetic(model, PARAMS, STATS, inputs)
    assert result.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(result[:3], inputs)
    z = 0.5 + 0.25 - 0.125  # each code is (mean, max) of a constant image: (v, v)
    assert _pixels(result)[3] == pytest.approx(_sigmoid(z + 2 * z), rel=1e-5)
    with pytest.raises(ValueError, match="three images"):
        evaluation.vector_arithmetic(model, PARAMS, STATS, inputs[:2])


def test_decode_on_grid_rows_follow_the_first_coordinate():
    model = _tiny_model(collections.Counter())
    images = evaluation.decode_on_grid(model, PARAMS, STATS, (-1.0, 0.0), (1.0, 2.0), 3)
    assert images.shape == (3, 3, 28, 28, 1)
    z0, z1 = np.array([-1.0, 0.0, 1.0]), np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(_pixels(images), _sigmoid(z0[:, None] + 2 * z1[None, :]), rtol=1e-5)
    with_label = evaluation.decode_on_grid(model, PARAMS, STATS, (-1.0, 0.0), (1.0, 2.0), 3, label=2)
    np.testing.assert_allclose(_pixels(with_label), _sigmoid(z0[:, None] + 2 * z1[None, :] - 2), rtol=1e-5)


def test_decode_with_labels_and_label_swap_by_hand():
    model = _tiny_model(collections.Counter())
    latents = jnp.array([[0.5, 0.0], [0.0, 1.0], [1.0, 1.0]])
    images = evaluation.decode_with_labels(model, PARAMS, STATS, latents, jnp.array([0, 1, 3]))
    assert images.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(_pixels(images), _sigmoid([0.5, 2 - 1, 3 - 3]), rtol=1e-5)
    with pytest.raises(ValueError, match="one label per latent"):
        evaluation.decode_with_labels(model, PARAMS, STATS, latents, jnp.array([0, 1]))

    styles = np.array([[0.0, 0.0], [1.0, 0.5]])
    swapped = evaluation.label_swap(model, PARAMS, STATS, styles, num_classes=3)
    assert swapped.shape == (2, 3, 28, 28, 1)
    classes = np.arange(3)
    np.testing.assert_allclose(_pixels(swapped), _sigmoid([0 - classes, 2 - classes]), rtol=1e-5)


def test_interpolation_frames_decode_the_line_between_two_codes():
    model = _tiny_model(collections.Counter())
    start, end = np.zeros((28, 28, 1), np.float32), np.full((28, 28, 1), 0.5, np.float32)
    frames = evaluation.interpolation_frames(model, PARAMS, STATS, start, end, 3)
    assert frames.shape == (3, 28, 28, 1)
    # codes (0, 0) and (0.5, 0.5); the midpoint (0.25, 0.25)
    np.testing.assert_allclose(_pixels(frames), _sigmoid([0.0, 0.75, 1.5]), rtol=1e-5)


def test_evaluate_by_hand_and_with_batch_statistics():
    model, dataset = _tiny_model(collections.Counter()), random_dataset(5, num_classes=3)
    result = evaluation.evaluate(model, PARAMS, STATS, dataset, batch_size=2)
    images = np.asarray(dataset["image"], np.float64)[..., None] / 255
    latents = np.stack([images.reshape(5, -1).mean(1), images.reshape(5, -1).max(1)], axis=1)
    np.testing.assert_allclose(result["inputs"], images, rtol=1e-6)
    np.testing.assert_allclose(result["latents"], latents, rtol=1e-5)
    labels = np.asarray(dataset["label"])
    np.testing.assert_allclose(_pixels(result["reconstructions"]),
                               _sigmoid(latents[:, 0] + 2 * latents[:, 1] - labels), rtol=1e-5)
    np.testing.assert_array_equal(result["labels"], labels)
    doubled = evaluation.evaluate(model, PARAMS, STATS, dataset, batch_size=2, batch_statistics=True)
    np.testing.assert_allclose(doubled["latents"], 2 * latents, rtol=1e-5)


def test_evaluate_of_a_real_autoencoder_is_eval_mode():
    from aejax import autoencoder

    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=4))
    params, stats = model.init(jax.random.key(0))
    dataset = random_dataset(6, num_classes=3)
    result = evaluation.evaluate(model, params, stats, dataset, batch_size=4)
    assert result["latents"].shape == (6, 4) and result["reconstructions"].shape == (6, 28, 28, 1)
    assert result["reconstructions"].min() >= 0 and result["reconstructions"].max() <= 1
    # eval mode: an image's latent does not depend on the batch it shares
    alone = evaluation.evaluate(model, params, stats, {k: v[:1] for k, v in dataset.items()})
    np.testing.assert_allclose(alone["latents"][0], result["latents"][0], atol=1e-5)
    batched = evaluation.evaluate(model, params, stats, dataset, batch_size=4, batch_statistics=True)
    assert not np.allclose(batched["latents"], result["latents"], atol=1e-3)


def test_each_helper_traces_once_per_model_and_shape():
    traces = collections.Counter()
    model, dataset = _tiny_model(traces), random_dataset(5, num_classes=3)
    other_params = {"scale": jnp.full((), 2.0, jnp.float32)}

    def run_all(params):
        return (evaluation.evaluate(model, params, STATS, dataset, batch_size=2),
                evaluation.decode_on_grid(model, params, STATS, (0.0, 0.0), (1.0, 1.0), 2),
                evaluation.decode_with_labels(model, params, STATS, jnp.zeros((3, 2)), jnp.arange(3)),
                evaluation.label_swap(model, params, STATS, np.zeros((1, 2)), 3),
                evaluation.interpolation_frames(model, params, STATS, np.zeros((28, 28, 1), np.float32),
                                                np.ones((28, 28, 1), np.float32), 4))

    first = run_all(PARAMS)
    after_first = dict(traces)
    assert after_first["encode"] >= 2  # evaluate's batches of 2 and of 1, interpolation's pair
    second = run_all(other_params)  # new parameter values: arguments, not constants, so no new trace
    assert dict(traces) == after_first
    np.testing.assert_allclose(second[0]["latents"], 2 * first[0]["latents"], rtol=1e-5)
    # a new model is a new program
    evaluation.evaluate(_tiny_model(traces), PARAMS, STATS, dataset, batch_size=2)
    assert traces["encode"] > after_first["encode"]


def test_eval_mode_helpers_pad_the_last_batch_and_return_every_example_once():
    traces = collections.Counter()
    model, dataset = _tiny_model(traces), random_dataset(5, num_classes=3)  # 5 images
    whole = evaluation.evaluate(model, PARAMS, STATS, dataset, batch_size=5)
    before = traces["encode"]
    padded = evaluation.evaluate(model, PARAMS, STATS, dataset, batch_size=2)  # batches 2, 2 and 1 padded to 2
    assert traces["encode"] == before + 1  # one shape, one trace
    for key in whole:
        np.testing.assert_allclose(padded[key], whole[key], rtol=1e-6)
    codes = evaluation.encode_split(model, PARAMS, STATS, dataset, batch_size=2)
    chex.assert_shape(codes, (5, 2))
    np.testing.assert_allclose(codes, whole["latents"], rtol=1e-6)
    np.testing.assert_allclose(evaluation.encode_split(model, PARAMS, STATS, dataset), whole["latents"], rtol=1e-6)


def test_batch_statistics_need_an_explicit_batch_size():
    model, dataset = _tiny_model(collections.Counter()), random_dataset(5, num_classes=3)
    with pytest.raises(ValueError, match="explicit batch_size"):
        evaluation.evaluate(model, PARAMS, STATS, dataset, batch_statistics=True)
