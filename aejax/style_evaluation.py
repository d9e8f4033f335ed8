"""How well a label-head model separates style from label: shared by sections 9 and 10.

Two measurements. Style transfer: test images' styles decoded with every category, each
decoded image scored by the evaluation classifier (``aejax.classifier``) against the
category asked for; a style free of the label lets the category decide the digit. Style
leak: fair probes (``aejax.probes``) read the label from the styles, fitted on the
training images' styles and scored on every style of the scored split.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from aejax import classifier, evaluation, probes, semi_supervised
from aejax.model import BatchStats, Model, Params


def transfer_accuracy(classifier_params: Params, swapped: np.ndarray) -> dict[str, Any]:
    """Share of decoded images classified as the category they were decoded with.

    swapped (N, K, H, W, C): N styles, each decoded with categories 0 .. K - 1 in order
    (``evaluation.label_swap``). Returns ``classifier.accuracy_by_label``: overall and per
    category asked for.
    """
    if swapped.ndim != 5:
        raise ValueError(f"swapped must be (N, categories, H, W, C), got shape {swapped.shape}")
    count, classes = swapped.shape[:2]
    wanted = np.tile(np.arange(classes), count)
    predicted = classifier.predict(classifier_params, swapped.reshape(-1, *swapped.shape[2:]))
    return classifier.accuracy_by_label(predicted, wanted, classes)


def head_and_leak(model: Model, params: Params, batch_stats: BatchStats, train_set: Mapping[str, jax.Array],
                  scored_sets: Mapping[str, Mapping[str, jax.Array]]) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """For each named scored split: its styles (N, latent_dim), the label head's accuracy on it and
    the styles' label leak: probes fitted on the training images' styles (encoded once for all
    splits), scored on all of the split's, each beside the same probe fitted on permuted labels
    (``probes.label_probes``). Returns {name: (styles, {"label_head_accuracy", "label_leak"})}."""
    train_styles = evaluation.encode_split(model, params, batch_stats, train_set)
    train_labels = np.asarray(train_set["label"])
    results = {}
    for name, scored_set in scored_sets.items():
        styles = evaluation.encode_split(model, params, batch_stats, scored_set)
        labels = np.asarray(scored_set["label"])
        predicted = semi_supervised.predict_labels(model, params, batch_stats, scored_set)
        results[name] = (styles, {
            "label_head_accuracy": float(np.mean(predicted == labels)),
            "label_leak": probes.label_probes(train_styles, train_labels, styles, labels),
        })
    return results
