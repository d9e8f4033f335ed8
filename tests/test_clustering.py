"""aejax.clustering: clusters labelled from training data and scored on the test set, on small
hand-made probability tables whose answers are worked out in the comments."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from aejax import clustering

# Three clusters; cluster 2 gets no training image.
# Cluster 0 holds training images 0-2: the most confident (0.9) is a 1, the majority is 0.
# Cluster 1 holds training images 3-5: the most confident (0.8) is a 0, the majority is 1.
TRAIN_PROBS = np.array([
    [0.9, 0.05, 0.05],
    [0.6, 0.3, 0.1],
    [0.7, 0.2, 0.1],
    [0.1, 0.8, 0.1],
    [0.2, 0.7, 0.1],
    [0.3, 0.6, 0.1],
])
TRAIN_LABELS = np.array([1, 0, 0, 0, 1, 1])
# Test images land in clusters 0, 0, 1, 1, 2; the last is a 2, a class no training image has.
TEST_PROBS = np.array([
    [0.8, 0.1, 0.1],
    [0.7, 0.2, 0.1],
    [0.1, 0.8, 0.1],
    [0.2, 0.7, 0.1],
    [0.1, 0.1, 0.8],
])
TEST_LABELS = np.array([0, 0, 1, 0, 2])
NUM_CLASSES = 3


def test_most_confident_labels_follow_the_most_confident_training_image():
    labels = clustering.labels_by_most_confident(TRAIN_PROBS, TRAIN_LABELS)
    np.testing.assert_array_equal(labels, [1, 0, -1])
    assert labels.dtype == np.int64


def test_majority_labels_follow_the_most_frequent_training_label():
    clusters = TRAIN_PROBS.argmax(axis=1)
    np.testing.assert_array_equal(clustering.labels_by_majority(clusters, TRAIN_LABELS, 3), [0, 1, -1])
    # A tie goes to the smaller label.
    np.testing.assert_array_equal(clustering.labels_by_majority(np.array([0, 0]), np.array([3, 2]), 1), [2])


def test_clustering_error_counts_images_in_unused_clusters_as_errors():
    test_clusters = TEST_PROBS.argmax(axis=1)
    # predicted 1, 1, 0, 0, -1 against 0, 0, 1, 0, 2: only the fourth is right.
    assert clustering.clustering_error(test_clusters, TEST_LABELS, np.array([1, 0, -1])) == pytest.approx(4 / 5)
    # predicted 0, 0, 1, 1, -1: the first three are right.
    assert clustering.clustering_error(test_clusters, TEST_LABELS, np.array([0, 1, -1])) == pytest.approx(2 / 5)
    assert clustering.clustering_error(np.array([2, 2]), np.array([0, 1]), np.array([0, 1, -1])) == 1.0


def test_report_scores_both_training_labellings_and_the_test_bound():
    report = clustering.clustering_report(TRAIN_PROBS, TRAIN_LABELS, TEST_PROBS, TEST_LABELS, NUM_CLASSES)
    assert report["most_confident"] == {"error": pytest.approx(4 / 5), "cluster_labels": [1, 0, -1]}
    assert report["train_majority"] == {"error": pytest.approx(2 / 5), "cluster_labels": [0, 1, -1]}
    # The test set's own majorities: cluster 0 holds 0, 0; cluster 1 holds 1, 0 (tie: 0); cluster 2 holds 2.
    # Only the third test image (a 1 in cluster 1) is wrong.
    assert report["test_majority"]["cluster_labels"] == [0, 0, 2]
    assert report["test_majority"]["error"] == pytest.approx(1 / 5)
    assert "optimistic" in report["test_majority"]["note"]
    assert report["clusters_used"] == 3 and report["clusters_used_train"] == 2
    assert report["classes_without_cluster"] == [2]
    assert report["classes_without_cluster_train_majority"] == [2]
    assert json.loads(json.dumps(report)) == report


def test_the_test_majority_is_never_worse_than_the_training_labellings():
    """Training and test sets that disagree: every cluster's training images carry one label and its
    test images mostly another."""
    rng = np.random.default_rng(0)
    train_clusters, test_clusters = rng.integers(0, 4, 200), rng.integers(0, 4, 100)
    train_labels = train_clusters % 2
    test_labels = np.where(rng.random(100) < 0.8, 1 - test_clusters % 2, test_clusters % 2)
    one_hot = lambda clusters: np.eye(4)[clusters] * 0.7 + 0.075  # rows sum to 1, argmax is the cluster
    report = clustering.clustering_report(one_hot(train_clusters), train_labels, one_hot(test_clusters),
                                          test_labels, num_classes=2)
    assert report["test_majority"]["error"] < 0.3
    assert report["most_confident"]["error"] > 0.7 and report["train_majority"]["error"] > 0.7
    assert report["test_majority"]["error"] <= min(report["most_confident"]["error"],
                                                   report["train_majority"]["error"])


def test_matching_is_one_to_one_and_the_best_such():
    """3 clusters, 2 classes: cluster 0 holds 0, 0, 1; cluster 1 holds 0, 0; cluster 2 holds 1, 1, 1."""
    clusters = np.asarray([0, 0, 0, 1, 1, 2, 2, 2])
    labels = np.asarray([0, 0, 1, 0, 0, 1, 1, 1])
    matched = clustering.labels_by_matching(clusters, labels, num_clusters=3, num_classes=2)
    # majority labelling would call clusters 0 and 1 both 0; a one-to-one matching gives 0 to one of them
    # (either keeps 2 images) and 1 to cluster 2 (3 images): 5 of 8 right, the best one-to-one total
    assert sorted(matched.tolist()) == [-1, 0, 1] and matched[2] == 1
    assert clustering.clustering_error(clusters, labels, matched) == pytest.approx(3 / 8)
    # every one-to-one map of 3 clusters to 2 classes does no better
    best = max(sum(np.sum((clusters == k) & (labels == c)) for k, c in zip(ks, range(2)))
               for ks in itertools.permutations(range(3), 2))
    assert best == 5
    # clusters = classes: a permutation of the classes
    perm = clustering.labels_by_matching(np.asarray([2, 2, 0, 1]), np.asarray([0, 0, 1, 2]), 3, 3)
    assert perm.tolist() == [1, 2, 0]


def test_report_matches_on_training_images_and_on_the_test_set_as_the_literature_does():
    report = clustering.clustering_report(TRAIN_PROBS, TRAIN_LABELS, TEST_PROBS, TEST_LABELS, NUM_CLASSES)
    train_clusters, test_clusters = TRAIN_PROBS.argmax(1), TEST_PROBS.argmax(1)
    for key, (fit_clusters, fit_labels) in {"matching": (train_clusters, TRAIN_LABELS),
                                            "test_matching": (test_clusters, TEST_LABELS)}.items():
        labels = clustering.labels_by_matching(fit_clusters, fit_labels, TRAIN_PROBS.shape[1], NUM_CLASSES)
        assert report[key]["cluster_labels"] == labels.tolist()
        assert report[key]["error"] == pytest.approx(clustering.clustering_error(test_clusters, TEST_LABELS, labels))
        assert len(set(labels.tolist()) - {-1}) == np.sum(labels >= 0)  # one-to-one
    assert "optimistic" in report["test_matching"]["note"]
    # fitted on the data it scores, the matching is never worse than the one fitted on training images
    assert report["test_matching"]["error"] <= report["matching"]["error"]


def test_a_class_no_cluster_is_labelled_with_is_listed():
    # Two clusters, three classes: the most confident images are a 0 and a 2, the majorities 0 and 1.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.4, 0.6], [0.3, 0.7]])
    labels = np.array([0, 0, 2, 1, 1])
    report = clustering.clustering_report(probs, labels, probs, labels, num_classes=3)
    assert report["most_confident"]["cluster_labels"] == [0, 2]
    assert report["classes_without_cluster"] == [1]
    assert report["train_majority"]["cluster_labels"] == [0, 1]
    assert report["classes_without_cluster_train_majority"] == [2]


TWO_CLUSTER_TEST_PROBS = TEST_PROBS[:, :2] / TEST_PROBS[:, :2].sum(axis=1, keepdims=True)
confident_labels, majority_labels = clustering.labels_by_most_confident, clustering.labels_by_majority
error_of, report_of = clustering.clustering_error, clustering.clustering_report


@pytest.mark.parametrize("call, match", [
    (lambda: confident_labels(TRAIN_PROBS, TRAIN_LABELS[:-1]), r"train_labels must have shape \(6,\)"),
    (lambda: confident_labels(TRAIN_PROBS[:, 0], TRAIN_LABELS), "must be a non-empty 2-D array"),
    (lambda: confident_labels(TRAIN_PROBS * 2, TRAIN_LABELS), r"probabilities in \[0, 1\]"),
    (lambda: confident_labels(TRAIN_PROBS / 2, TRAIN_LABELS), "rows must sum to 1"),
    (lambda: confident_labels(TRAIN_PROBS, -TRAIN_LABELS), "train_labels must be >= 0"),
    (lambda: confident_labels(TRAIN_PROBS, TRAIN_LABELS * 1.0), "train_labels must be integers"),
    (lambda: majority_labels(np.array([0, 3]), np.array([0, 1]), 3), "below the number of clusters 3"),
    (lambda: majority_labels(np.array([0, 1]), np.array([0, -1]), 3), "train_labels must be >= 0"),
    (lambda: majority_labels(np.array([0, 1]), np.array([0]), 3), r"train_labels must have shape \(2,\)"),
    (lambda: majority_labels(np.array([0, 1]), np.array([0, 1]), 0), "num_clusters must be >= 1"),
    (lambda: error_of(np.array([0, 1]), np.array([0]), np.array([0, 1])), "test_labels must have shape"),
    (lambda: error_of(np.array([0]), np.array([0]), np.array([0, -2])), "cluster_labels must be >= -1"),
    (lambda: error_of(np.array([], int), np.array([], int), np.array([0])), "at least one image"),
    (lambda: report_of(TRAIN_PROBS, TRAIN_LABELS, TWO_CLUSTER_TEST_PROBS, TEST_LABELS, 3),
     "test_probs have 2 clusters, train_probs 3"),
    (lambda: report_of(TRAIN_PROBS, TRAIN_LABELS, TEST_PROBS, TEST_LABELS[:-1], 3),
     r"test_labels must have shape \(5,\)"),
    (lambda: report_of(TRAIN_PROBS, TRAIN_LABELS, TEST_PROBS, TEST_LABELS, 2),
     "test_labels must be below num_classes 2"),
    (lambda: clustering.labels_by_matching(np.array([0, 1]), np.array([0, 3]), 2, 3), "below num_classes 3"),
    (lambda: clustering.labels_by_matching(np.array([0, 2]), np.array([0, 1]), 2, 3), "clusters"),
    (lambda: clustering.labels_by_matching(np.array([0]), np.array([0]), 1, 0), "num_classes must be >= 1"),
])
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
