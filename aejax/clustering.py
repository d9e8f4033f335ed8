"""Scoring unsupervised clusters against labels, the AAE paper's way (Makhzani et al. 2015).

Each cluster is given a label from the TRAINING data (the label of the training image the
cluster is most confident about, or the cluster's majority training label), and the error
is measured on ALL test images. Labelling clusters with the test images' own majority
labels is reported too, as an optimistic bound: it fits the labelling to the data it scores.

The deep-clustering literature (VaDE, N2D, ...) scores K = C clusters by their one-to-one
(Hungarian) matching to the classes instead: ``labels_by_matching``, fitted on training
images as the protocol asks and, as those papers report it, on the test images themselves.

Clusters are columns of a (N, K) table of probabilities q(y = k | x); an image belongs to
the cluster of its largest probability. A cluster no image was assigned to gets label -1,
and test images that land in it count as errors.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

UNUSED = -1  # the label of a cluster no training image was assigned to
TEST_MAJORITY_NOTE = "labels from the test set itself: an optimistic bound, not the paper's protocol"
TEST_MATCHING_NOTE = ("the one-to-one matching fitted on the test set itself, as VaDE and N2D report their "
                      "accuracy: an optimistic bound")
PROBABILITY_SUM_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within about 1e-6


def _checked_probs(probs: np.ndarray, name: str) -> np.ndarray:
    """``probs`` (N, K) as float64; ValueError unless non-empty, finite, in [0, 1] with rows summing to 1."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (N, K) of probabilities, got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"{name} must be floating point probabilities, got dtype {probs.dtype}")
    probs = probs.astype(np.float64)
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"{name} must be probabilities in [0, 1], found values outside")
    # Logits or unnormalised scores would make one cluster's column incomparable across images.
    if np.max(np.abs(probs.sum(axis=1) - 1)) > PROBABILITY_SUM_TOLERANCE:
        raise ValueError(f"{name} rows must sum to 1 (q(y | x) over the clusters)")
    return probs


def _checked_labels(labels: np.ndarray, length: int, name: str, minimum: int = 0) -> np.ndarray:
    """``labels`` (length,) as int64; ValueError unless 1-D integers >= ``minimum``."""
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
    if labels.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {labels.shape}")
    if length and labels.min() < minimum:
        raise ValueError(f"{name} must be >= {minimum}, found {labels.min()}")
    return labels.astype(np.int64)


def _checked_clusters(clusters: np.ndarray, num_clusters: int, name: str) -> np.ndarray:
    """``clusters`` (N,) as int64; ValueError unless 1-D integers in [0, num_clusters)."""
    clusters = np.asarray(clusters)
    if clusters.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {clusters.shape}")
    clusters = _checked_labels(clusters, clusters.shape[0], name)
    if clusters.size and clusters.max() >= num_clusters:
        raise ValueError(f"{name} must be below the number of clusters {num_clusters}, found {clusters.max()}")
    return clusters


def labels_by_most_confident(train_probs: np.ndarray, train_labels: np.ndarray) -> np.ndarray:
    """Cluster labels (K,): cluster k gets the label of the training image with the largest
    q(y = k | x) among the images assigned to k; -1 where no image is assigned to k.

    train_probs (N, K) probabilities, train_labels (N,) non-negative integers. Ties go to the
    first such image.
    """
    probs = _checked_probs(train_probs, "train_probs")
    labels = _checked_labels(train_labels, probs.shape[0], "train_labels")
    clusters = probs.argmax(axis=1)
    cluster_labels = np.full(probs.shape[1], UNUSED, np.int64)
    for k in np.unique(clusters):
        members = np.flatnonzero(clusters == k)
        cluster_labels[k] = labels[members[probs[members, k].argmax()]]
    return cluster_labels


def labels_by_majority(train_clusters: np.ndarray, train_labels: np.ndarray, num_clusters: int) -> np.ndarray:
    """Cluster labels (K,): each cluster's most frequent training label (ties: the smallest
    label); -1 where no image is in the cluster.

    train_clusters (N,) in [0, num_clusters), train_labels (N,) non-negative integers.
    """
    if num_clusters < 1:
        raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
    clusters = _checked_clusters(train_clusters, num_clusters, "train_clusters")
    labels = _checked_labels(train_labels, clusters.shape[0], "train_labels")
    cluster_labels = np.full(num_clusters, UNUSED, np.int64)
    for k in np.unique(clusters):
        cluster_labels[k] = np.bincount(labels[clusters == k]).argmax()
    return cluster_labels


def labels_by_matching(clusters: np.ndarray, labels: np.ndarray, num_clusters: int, num_classes: int) -> np.ndarray:
    """Cluster labels (K,) from the one-to-one (Hungarian) matching of clusters to classes that
    puts the most images under their own class; clusters left unmatched (K > C) get -1.

    clusters (N,) in [0, num_clusters), labels (N,) in [0, num_classes).
    """
    if num_clusters < 1 or num_classes < 1:
        raise ValueError(f"num_clusters and num_classes must be >= 1, got {num_clusters}, {num_classes}")
    clusters = _checked_clusters(clusters, num_clusters, "clusters")
    labels = _checked_labels(labels, clusters.shape[0], "labels")
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"labels must be below num_classes {num_classes}, found {labels.max()}")
    counts = np.zeros((num_clusters, num_classes), np.int64)
    np.add.at(counts, (clusters, labels), 1)
    rows, columns = linear_sum_assignment(counts, maximize=True)
    cluster_labels = np.full(num_clusters, UNUSED, np.int64)
    cluster_labels[rows] = columns
    return cluster_labels


def clustering_error(test_clusters: np.ndarray, test_labels: np.ndarray, cluster_labels: np.ndarray) -> float:
    """Share of test images whose cluster's label differs from their own label.

    test_clusters (M,) in [0, K), test_labels (M,) non-negative integers, M >= 1;
    cluster_labels (K,) labels >= -1. An image in an unused cluster (label -1) is an error.
    """
    cluster_labels = np.asarray(cluster_labels)
    if cluster_labels.ndim != 1 or cluster_labels.size == 0:
        raise ValueError(f"cluster_labels must be a non-empty 1-D array (K,), got shape {cluster_labels.shape}")
    cluster_labels = _checked_labels(cluster_labels, cluster_labels.size, "cluster_labels", minimum=UNUSED)
    clusters = _checked_clusters(test_clusters, cluster_labels.size, "test_clusters")
    if clusters.size == 0:
        raise ValueError("test_clusters must hold at least one image")
    labels = _checked_labels(test_labels, clusters.shape[0], "test_labels")
    return float(np.mean(cluster_labels[clusters] != labels))


def classes_without_cluster(cluster_labels: np.ndarray, num_classes: int) -> list[int]:
    """Sorted classes in [0, num_classes) that no cluster in ``cluster_labels`` (K,) is labelled with."""
    return sorted(set(range(num_classes)) - set(np.asarray(cluster_labels).tolist()))


def clustering_report(train_probs: np.ndarray, train_labels: np.ndarray, test_probs: np.ndarray,
                      test_labels: np.ndarray, num_classes: int) -> dict:
    """The paper's clustering error and two references, JSON-ready.

    train_probs (N, K), test_probs (M, K): q(y = k | x) over K clusters; train_labels (N,)
    and test_labels (M,) in [0, num_classes). Returns
    {"most_confident": {"error", "cluster_labels"}  (the paper's protocol),
     "train_majority": {"error", "cluster_labels"},
     "test_majority": {"error", "cluster_labels", "note"}  (optimistic bound),
     "matching": {"error", "cluster_labels"}  (one-to-one, fitted on training images),
     "test_matching": {"error", "cluster_labels", "note"}  (one-to-one, fitted on the test set: the
     deep-clustering literature's accuracy is 1 - this error),
     "clusters_used", "clusters_used_train": clusters holding at least one test / training image,
     "classes_without_cluster", "classes_without_cluster_train_majority": classes no cluster is
     labelled with, by the most-confident and by the train-majority labelling}.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    train_probs = _checked_probs(train_probs, "train_probs")
    test_probs = _checked_probs(test_probs, "test_probs")
    num_clusters = train_probs.shape[1]
    if test_probs.shape[1] != num_clusters:
        raise ValueError(f"test_probs have {test_probs.shape[1]} clusters, train_probs {num_clusters}")
    train_labels = _checked_labels(train_labels, train_probs.shape[0], "train_labels")
    test_labels = _checked_labels(test_labels, test_probs.shape[0], "test_labels")
    for name, labels in (("train_labels", train_labels), ("test_labels", test_labels)):
        if labels.max() >= num_classes:
            raise ValueError(f"{name} must be below num_classes {num_classes}, found {labels.max()}")

    train_clusters, test_clusters = train_probs.argmax(axis=1), test_probs.argmax(axis=1)
    labellings = {
        "most_confident": labels_by_most_confident(train_probs, train_labels),
        "train_majority": labels_by_majority(train_clusters, train_labels, num_clusters),
        "test_majority": labels_by_majority(test_clusters, test_labels, num_clusters),
        "matching": labels_by_matching(train_clusters, train_labels, num_clusters, num_classes),
        "test_matching": labels_by_matching(test_clusters, test_labels, num_clusters, num_classes),
    }
    report: dict = {name: {"error": clustering_error(test_clusters, test_labels, cluster_labels),
                           "cluster_labels": cluster_labels.tolist()}
                    for name, cluster_labels in labellings.items()}
    report["test_majority"]["note"] = TEST_MAJORITY_NOTE
    report["test_matching"]["note"] = TEST_MATCHING_NOTE
    report["clusters_used"] = int(np.unique(test_clusters).size)
    report["clusters_used_train"] = int(np.unique(train_clusters).size)
    report["classes_without_cluster"] = classes_without_cluster(labellings["most_confident"], num_classes)
    report["classes_without_cluster_train_majority"] = classes_without_cluster(labellings["train_majority"],
                                                                               num_classes)
    return report
