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
                  scored_sets: Mapping[str, Mapping[str, jax.Array]],
                  kinds: tuple[probes.ProbeKind, ...] = probes.DEFAULT_KINDS,
                  unstandardized: Model | None = None) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """For each named scored split: its styles (N, latent_dim), the label head's accuracy on it and
    the styles' label leak: probes of ``kinds`` fitted on the training images' styles (encoded once
    for all splits), scored on all of the split's, each beside the same probe fitted on permuted
    labels (``probes.label_probes``).

    ``unstandardized``: the same weights read without the style's class standardisation; its
    styles' leak is reported too, as ``label_leak_before_standardization``: a style standardised
    by the label head's own predicted class is at the majority share for a linear probe by
    construction, the style before it is not.
    Returns {name: (styles, {"label_head_accuracy", "label_leak"[, "label_leak_before_standardization"]})}.
    """
    readers = {"label_leak": model, **({"label_leak_before_standardization": unstandardized} if unstandardized
                                       else {})}
    train_labels = np.asarray(train_set["label"])
    train_styles = {key: evaluation.encode_split(reader, params, batch_stats, train_set)
                    for key, reader in readers.items()}
    results = {}
    for name, scored_set in scored_sets.items():
        labels = np.asarray(scored_set["label"])
        predicted = semi_supervised.predict_labels(model, params, batch_stats, scored_set)
        styles = {key: evaluation.encode_split(reader, params, batch_stats, scored_set)
                  for key, reader in readers.items()}
        report: dict[str, Any] = {"label_head_accuracy": float(np.mean(predicted == labels))}
        report.update({key: probes.label_probes(train_styles[key], train_labels, styles[key], labels, kinds=kinds)
                       for key in readers})
        results[name] = (styles["label_leak"], report)
    return results
