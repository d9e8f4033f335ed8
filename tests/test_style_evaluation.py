"""aejax.style_evaluation: style transfer scored against the category asked for."""

from __future__ import annotations

import numpy as np
import pytest

from aejax import classifier, style_evaluation


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
