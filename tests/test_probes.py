"""aejax.probes: label probes fitted on training codes and scored on the whole test set, on
synthetic codes whose label content is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aejax import probes

DIM = 8
CLASSES = 4
CHANCE_TOLERANCE = 0.05  # with 2000 balanced test labels, chance accuracy's sampling std is about 0.01
WRITER_SHIFT = 3.0  # offset of a writer group's codes along the first axis, in units of the codes' std


def _balanced_labels(rng: np.random.Generator, n: int, classes: int = CLASSES) -> np.ndarray:
    """(n,) labels, each class equally often, in random order."""
    return rng.permutation(np.arange(n) % classes)


def _uninformative(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes (n, DIM) of pure Gaussian noise and labels (n,) drawn independently of them."""
    return rng.normal(size=(n, DIM)), _balanced_labels(rng, n)


def _informative(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes (n, DIM): class c's mean is 4 along axis c (means 5.7 std apart), plus unit noise."""
    labels = _balanced_labels(rng, n)
    return 4.0 * np.eye(DIM)[labels] + rng.normal(size=(n, DIM)), labels


def _writer_groups(rng: np.random.Generator, n: int) -> np.ndarray:
    """Codes (n, DIM) independent of any labels: noise, the first half shifted by +WRITER_SHIFT along
    the first axis and the second half by -WRITER_SHIFT, like two groups of writers."""
    codes = rng.normal(size=(n, DIM))
    codes[: n // 2, 0] += WRITER_SHIFT
    codes[n // 2:, 0] -= WRITER_SHIFT
    return codes


def _old_half_split(codes: np.ndarray, labels: np.ndarray) -> float:
    """The protocol the fair probe replaces: a logistic probe fitted on the first half of the test
    set and scored on the second, in the given order."""
    half = len(labels) // 2
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(codes[:half], labels[:half])
    return float(probe.score(codes[half:], labels[half:]))


def _assert_at_chance(result: probes.ProbeResult) -> None:
    assert abs(result.accuracy - result.permuted_accuracy) < CHANCE_TOLERANCE, result
    assert result.accuracy < result.majority_share + CHANCE_TOLERANCE, result


@pytest.mark.parametrize("kind", probes.PROBE_KINDS)
def test_uninformative_codes_score_at_chance_whatever_the_test_order(kind):
    rng = np.random.default_rng(0)
    train_codes, train_labels = _uninformative(rng, 2000)
    test_codes, test_labels = _uninformative(rng, 2000)
    by_label, shuffled = np.argsort(test_labels, kind="stable"), rng.permutation(len(test_labels))
    results = [probes.label_probe(train_codes, train_labels, test_codes[order], test_labels[order], kind=kind)
               for order in (np.arange(len(test_labels)), by_label, shuffled)]
    _assert_at_chance(results[0])
    assert results[0].majority_share == pytest.approx(1 / CLASSES)
    # Every test code is scored by the same fitted probe: the order cannot change a single prediction.
    assert results[1] == results[0] and results[2] == results[0]


@pytest.mark.parametrize("kind", probes.PROBE_KINDS)
def test_informative_codes_score_high_and_permuted_labels_stay_at_chance(kind):
    rng = np.random.default_rng(1)
    train_codes, train_labels = _informative(rng, 2000)
    test_codes, test_labels = _informative(rng, 1000)
    result = probes.label_probe(train_codes, train_labels, test_codes, test_labels, kind=kind)
    assert result.accuracy > 0.95
    # the codes form one cluster per class: a probe fitted on permuted labels gives each cluster
    # about one label, so its accuracy moves in steps of a cluster's share, most for the MLP
    assert abs(result.permuted_accuracy - 1 / CLASSES) < (0.15 if kind == "mlp" else 0.1)
    assert (result.train_size, result.test_size, result.kind) == (2000, 1000, kind)


@pytest.mark.parametrize("kind", probes.PROBE_KINDS)
def test_writer_shift_between_test_halves_keeps_the_fair_probe_at_chance(kind):
    """Both data sets hold two writer groups whose codes are offset differently; the codes say
    nothing about the labels. Fitted on training codes, the probe stays at chance on every test code."""
    rng = np.random.default_rng(2)
    train_labels, test_labels = _balanced_labels(rng, 2000), _balanced_labels(rng, 2000)
    train_codes, test_codes = _writer_groups(rng, 2000), _writer_groups(rng, 2000)
    _assert_at_chance(probes.label_probe(train_codes, train_labels, test_codes, test_labels, kind=kind))


def test_the_old_half_split_scores_below_chance_when_test_halves_differ():
    """Test halves with different class mixes (70% class 0 in the first, 70% class 1 in the second),
    codes independent of the labels: the half-split probe learns the first half's mix and scores
    far below chance on the second; the fair probe stays at chance."""
    rng = np.random.default_rng(3)
    train_codes, train_labels = rng.normal(size=(2000, DIM)), _balanced_labels(rng, 2000, classes=2)
    mostly = [rng.permutation(np.r_[np.full(700, major), np.full(300, 1 - major)]) for major in (0, 1)]
    test_labels = np.concatenate(mostly)
    test_codes = rng.normal(size=(2000, DIM))
    assert _old_half_split(test_codes, test_labels) < 0.5 - 0.1
    result = probes.label_probe(train_codes, train_labels, test_codes, test_labels)
    assert result.majority_share == 0.5
    _assert_at_chance(result)
    assert result.accuracy > 0.5 - CHANCE_TOLERANCE


def test_max_train_fits_on_a_seeded_stable_subset():
    rng = np.random.default_rng(4)
    train_codes, train_labels = _informative(rng, 3000)
    test_codes, test_labels = _informative(rng, 500)
    run = lambda seed, max_train: probes.label_probe(train_codes, train_labels, test_codes, test_labels,
                                                     kind="knn", seed=seed, max_train=max_train)
    assert run(0, 300) == run(0, 300)
    assert run(0, 300).train_size == 300 and run(0, 300).accuracy > 0.95
    assert run(0, 3000) == run(0, 5000) == run(0, None)
    assert run(0, None).train_size == 3000


def test_training_subset_is_seeded_sorted_and_without_repeats():
    draw = lambda seed: probes.training_subset(1000, 100, np.random.default_rng(seed))
    subset = draw(7)
    np.testing.assert_array_equal(subset, draw(7))
    assert not np.array_equal(subset, draw(8))
    assert len(np.unique(subset)) == 100 and np.all(np.diff(subset) > 0)
    np.testing.assert_array_equal(probes.training_subset(50, None, np.random.default_rng(0)), np.arange(50))


def test_label_probes_reports_both_kinds_json_ready():
    rng = np.random.default_rng(5)
    train_codes, train_labels = _informative(rng, 400)
    test_codes, test_labels = _informative(rng, 200)
    report = probes.label_probes(train_codes, train_labels, test_codes, test_labels, seed=3, max_train=300)
    assert sorted(report) == ["knn", "logistic"]
    for kind, scores in report.items():
        expected = probes.label_probe(train_codes, train_labels, test_codes, test_labels, kind=kind, seed=3,
                                      max_train=300)
        assert scores == {"accuracy": expected.accuracy, "permuted_accuracy": expected.permuted_accuracy,
                          "majority_share": expected.majority_share, "train_size": 300, "test_size": 200}
    assert json.loads(json.dumps(report)) == report


def _valid() -> dict:
    rng = np.random.default_rng(6)
    train_codes, train_labels = _informative(rng, 40)
    test_codes, test_labels = _informative(rng, 20)
    return dict(train_codes=train_codes, train_labels=train_labels, test_codes=test_codes, test_labels=test_labels)


@pytest.mark.parametrize("change, match", [
    (dict(train_codes=np.zeros(40)), "train_codes must be a non-empty 2-D array"),
    (dict(test_codes=np.zeros((0, DIM))), "test_codes must be a non-empty 2-D array"),
    (dict(test_codes=np.zeros((20, DIM + 1))), "test_codes have 9 features, train_codes 8"),
    (dict(train_labels=np.zeros(39, int)), r"train_labels must have shape \(40,\)"),
    (dict(test_labels=np.zeros((20, 1), int)), r"test_labels must have shape \(20,\)"),
    (dict(train_labels=np.zeros(40)), "train_labels must be integers"),
    (dict(train_labels=np.zeros(40, int)), "at least 2 classes"),
    (dict(train_codes=np.full((40, DIM), np.nan)), "train_codes must be finite"),
    (dict(test_codes=np.full((20, DIM), "a")), "test_codes must hold real numbers"),
    (dict(kind="svm"), "kind must be one of"),
    (dict(max_train=0), "max_train must be None or >= 1"),
    (dict(kind="knn", max_train=5), "knn probe needs at least 10 training codes"),
])
def test_bad_inputs_raise(change, match):
    with pytest.raises(ValueError, match=match):
        probes.label_probe(**{**_valid(), **change})


def test_the_mlp_probe_reads_a_label_no_linear_probe_can():
    """The label is the code's distance from the origin (rings): invisible to a linear read-out."""
    rng = np.random.default_rng(7)

    def rings(n):
        codes = rng.normal(size=(n, 2))
        radius = np.linalg.norm(codes, axis=1)
        return codes, np.digitize(radius, np.quantile(radius, [0.25, 0.5, 0.75]))

    train_codes, train_labels = rings(3000)
    test_codes, test_labels = rings(1000)
    logistic = probes.label_probe(train_codes, train_labels, test_codes, test_labels, kind="logistic")
    mlp = probes.label_probe(train_codes, train_labels, test_codes, test_labels, kind="mlp")
    assert logistic.accuracy < 0.4 and mlp.accuracy > 0.8
    assert abs(mlp.permuted_accuracy - 0.25) < 0.1


def test_label_probes_takes_the_kinds_asked_for():
    rng = np.random.default_rng(8)
    train_codes, train_labels = _informative(rng, 400)
    test_codes, test_labels = _informative(rng, 200)
    report = probes.label_probes(train_codes, train_labels, test_codes, test_labels, kinds=("mlp", "knn"))
    assert list(report) == ["mlp", "knn"] and report["mlp"]["accuracy"] > 0.9
    with pytest.raises(ValueError, match="kinds must be"):
        probes.label_probes(train_codes, train_labels, test_codes, test_labels, kinds=("svm",))
