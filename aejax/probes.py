"""Label probes on latent codes: how much of the label a fresh classifier reads from a code.

The probe is fitted on the TRAINING codes and scored on ALL test codes, so the test set's
order and any shift between parts of it (MNIST's test halves come from different writers)
cannot bias the score. Each result carries two references for chance: the majority share
of the test labels, and the accuracy of the same probe fitted on randomly permuted
training labels (chance as that probe sees it, on the same test set).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

ProbeKind = Literal["logistic", "knn", "mlp"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("logistic", "knn", "mlp")
DEFAULT_KINDS: tuple[ProbeKind, ...] = ("logistic", "knn")  # ``label_probes``' default: the cheap two
KNN_NEIGHBOURS = 10
LOGISTIC_MAX_ITER = 1000
MLP_HIDDEN = (128,)  # one hidden layer: a non-linear read-out a little richer than 10-NN's vote
MLP_MAX_ITER = 200  # epochs at most; it stops earlier when a tenth of its training codes stops improving


class ProbeResult(NamedTuple):
    """One probe's scores on the whole test set.

    accuracy: the probe fitted on the training codes and labels.
    permuted_accuracy: the same probe fitted on the training codes with permuted labels.
    majority_share: share of the most frequent test label.
    train_size, test_size: codes the probe was fitted on and scored on.
    kind: "logistic" or "knn".
    """

    accuracy: float
    permuted_accuracy: float
    majority_share: float
    train_size: int
    test_size: int
    kind: str


def _make_probe(kind: ProbeKind, seed: int = 0) -> Pipeline:
    """A fresh, unfitted probe on standardised features (the scaler sees only what it is fitted on)."""
    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=LOGISTIC_MAX_ITER))
    if kind == "mlp":  # early stopping holds out a tenth of the training codes, never test codes
        return make_pipeline(StandardScaler(), MLPClassifier(MLP_HIDDEN, max_iter=MLP_MAX_ITER, early_stopping=True,
                                                             random_state=seed))
    return make_pipeline(StandardScaler(), KNeighborsClassifier(KNN_NEIGHBOURS))


def _checked_codes(codes: np.ndarray, name: str) -> np.ndarray:
    """``codes`` (N, D) as float64; ValueError unless 2-D, real, non-empty and finite."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (N, D), got shape {codes.shape}")
    if codes.dtype == bool or not (np.issubdtype(codes.dtype, np.floating) or np.issubdtype(codes.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {codes.dtype}")
    codes = codes.astype(np.float64)
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"{name} must be finite, found NaN or infinity")
    return codes


def _checked_labels(labels: np.ndarray, num_codes: int, name: str) -> np.ndarray:
    """``labels`` (N,) as int64; ValueError unless 1-D integers, one per code."""
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
    if labels.shape != (num_codes,):
        raise ValueError(f"{name} must have shape ({num_codes},), one per code, got {labels.shape}")
    return labels.astype(np.int64)


def training_subset(num_codes: int, max_train: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices (min(N, max_train),) of the training codes to fit on, a seeded random subset in
    ascending order; all of them when ``max_train`` is None or not below N."""
    if max_train is None or max_train >= num_codes:
        return np.arange(num_codes)
    return np.sort(rng.choice(num_codes, size=max_train, replace=False))


def majority_share(labels: np.ndarray) -> float:
    """Share (in [0, 1]) of the most frequent value among ``labels`` (M,), M >= 1."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(counts.max() / counts.sum())


def label_probe(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                test_labels: np.ndarray, kind: ProbeKind = "logistic", seed: int = 0,
                max_train: int | None = None) -> ProbeResult:
    """Fit a ``kind`` probe on the training codes and score it on every test code.

    train_codes (N, D), train_labels (N,) integers with at least two classes;
    test_codes (M, D), test_labels (M,). ``"logistic"``: logistic regression, ``"knn"``:
    10 nearest neighbours, ``"mlp"``: a one-hidden-layer network (early stopping on a tenth
    of the training codes), each on features standardised with the training codes' statistics.
    ``max_train``: fit on a random subset of that many training codes (keeps a large
    training set cheap on a CPU). ``np.random.default_rng(seed)`` draws the subset, then the
    permutation of its labels for ``permuted_accuracy``.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"kind must be one of {list(PROBE_KINDS)}, got {kind!r}")
    if max_train is not None and max_train < 1:
        raise ValueError(f"max_train must be None or >= 1, got {max_train}")
    train_codes = _checked_codes(train_codes, "train_codes")
    test_codes = _checked_codes(test_codes, "test_codes")
    train_labels = _checked_labels(train_labels, train_codes.shape[0], "train_labels")
    test_labels = _checked_labels(test_labels, test_codes.shape[0], "test_labels")
    if test_codes.shape[1] != train_codes.shape[1]:
        raise ValueError(f"test_codes have {test_codes.shape[1]} features, train_codes {train_codes.shape[1]}")

    rng = np.random.default_rng(seed)
    subset = training_subset(train_codes.shape[0], max_train, rng)
    codes, labels = train_codes[subset], train_labels[subset]
    if np.unique(labels).size < 2:
        raise ValueError(f"train_labels must hold at least 2 classes, got {np.unique(labels).tolist()}")
    if kind == "knn" and len(labels) < KNN_NEIGHBOURS:
        raise ValueError(f"the knn probe needs at least {KNN_NEIGHBOURS} training codes, got {len(labels)}")

    accuracy = _make_probe(kind, seed).fit(codes, labels).score(test_codes, test_labels)
    permuted_accuracy = _make_probe(kind, seed).fit(codes, rng.permutation(labels)).score(test_codes, test_labels)
    return ProbeResult(accuracy=float(accuracy), permuted_accuracy=float(permuted_accuracy),
                       majority_share=majority_share(test_labels), train_size=int(len(labels)),
                       test_size=int(len(test_labels)), kind=kind)


def label_probes(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                 test_labels: np.ndarray, seed: int = 0, max_train: int | None = None,
                 kinds: tuple[ProbeKind, ...] = DEFAULT_KINDS) -> dict[str, dict[str, float | int]]:
    """The probes of ``kinds`` (``label_probe`` with each, same seed and subset), JSON-ready:
    {"logistic": {"accuracy", "permuted_accuracy", "majority_share", "train_size", "test_size"},
    "knn": {...}}."""
    unknown = [kind for kind in kinds if kind not in PROBE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty tuple of {list(PROBE_KINDS)}, got {kinds!r}")
    report = {}
    for kind in kinds:
        result = label_probe(train_codes, train_labels, test_codes, test_labels, kind=kind, seed=seed,
                             max_train=max_train)
        report[kind] = {field: getattr(result, field)
                        for field in ("accuracy", "permuted_accuracy", "majority_share", "train_size", "test_size")}
    return report
