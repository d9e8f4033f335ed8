"""aejax.style_evaluation: style transfer scored against the category asked for; the style's
label leak, before and after its class standardisation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import classifier, disentangled, evaluation, probes, style_evaluation


def test_transfer_accuracy_scores_each_decode_against_its_category(monkeypatch):
    """3 styles x 4 categories; a stand-in classifier reads the digit written in pixel (0, 0)."""
    monkeypatch.setattr(classifier, "predict", lambda params, images: np.asarray(images)[:, 0, 0, 0].astype(np.int32))
    swapped = np.zeros((3, 4, 28, 28, 1), np.float32)
    swapped[:, :, 0, 0, 0] = np.arange(4)  # every decode drawn as the category asked for ...
    swapped[0, 1, 0, 0, 0] = 3  # ... but style 0 with category 1 reads as a 3
    swapped[2, 1, 0, 0, 0] = 0  # and style 2 with category 1 as a 0
    swapped[1, 3, 0, 0, 0] = 2  # and style 1 with category 3 as a 2
    scores = style_evaluation.transfer_accuracy(None, swapped)
    assert scores["overall"] == pytest.approx(9 / 12)
    np.testing.assert_allclose(scores["per_label"], [1.0, 1 / 3, 1.0, 2 / 3])


def test_transfer_accuracy_needs_styles_by_categories():
    with pytest.raises(ValueError, match=r"swapped must be \(N, categories, H, W, C\)"):
        style_evaluation.transfer_accuracy(None, np.zeros((12, 28, 28, 1), np.float32))


def test_head_and_leak_reads_the_style_before_its_class_standardisation_too():
    """A class-standardised disentangled model on 8x8 images of 3 classes: the leak of the style
    it encodes and, read through the same weights without the standardisation, of the raw style."""
    config = disentangled.DisentangledConfig(latent_dim=2, num_classes=3, style_normalization="class",
                                             image_shape=(8, 8, 1), adversary_hidden=(8,))
    model = disentangled.make_model(config)
    raw_model = disentangled.make_model(dataclasses.replace(config, style_normalization="none"))
    params, batch_stats = model.init(jax.random.key(0))
    # running class statistics far from (0, 1), so the standardisation moves every style
    batch_stats = dict(batch_stats)
    batch_stats["style_norm"] = {"mean": jnp.asarray([[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0]]),
                                 "var": jnp.asarray([[4.0, 0.25], [1.0, 9.0], [2.0, 0.5]])}
    rng = np.random.default_rng(0)

    def split(count):
        return {"image": jnp.asarray(rng.uniform(size=(count, 8, 8, 1)), jnp.float32),
                "label": jnp.asarray(np.arange(count) % 3, jnp.int32)}

    train_set, test_set = split(60), split(30)
    kinds = ("knn", "mlp")
    styles, report = style_evaluation.head_and_leak(model, params, batch_stats, train_set, {"test": test_set},
                                                    kinds=kinds, unstandardized=raw_model)["test"]
    encoded = {name: (evaluation.encode_split(reader, params, batch_stats, train_set),
                      evaluation.encode_split(reader, params, batch_stats, test_set))
               for name, reader in (("standardized", model), ("raw", raw_model))}
    np.testing.assert_array_equal(styles, encoded["standardized"][1])  # the styles the model encodes
    assert np.min(np.abs(encoded["raw"][1] - encoded["standardized"][1])) > 1e-3
    labels = (np.asarray(train_set["label"]), np.asarray(test_set["label"]))
    for key, name in (("label_leak", "standardized"), ("label_leak_before_standardization", "raw")):
        train_styles, test_styles = encoded[name]
        assert report[key] == probes.label_probes(train_styles, labels[0], test_styles, labels[1], kinds=kinds), key
    assert list(report["label_leak"]) == list(kinds)
    # without a second reader: the standardised style's leak alone
    _, alone = style_evaluation.head_and_leak(model, params, batch_stats, train_set, {"test": test_set})["test"]
    assert set(alone) == {"label_head_accuracy", "label_leak"} and set(alone["label_leak"]) == {"logistic", "knn"}
