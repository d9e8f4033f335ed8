"""The adversarial experiments (sections 8-10): quick runs on an 8-class data set, their
presets, and one-line errors for settings that cannot run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from aejax import data, runs
from aejax.experiments import s8_aae, s9_disentangled, s10_semi_supervised

from experiment_support import assert_recorded, files, one_line_error, parse, quick_run

EIGHT_CLASSES = 8


# ------------------------------------------------------------------ section 8: adversarial autoencoder

@pytest.mark.slow
def test_s8_aae_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s8_aae, other_idx_dir, out)
    assert {"prior_samples.png", "latent_epochs.gif", "latent_final.png", "latent_final_recomputed_bn.png",
            "grid.png", "frames", "checkpoint", "metrics.json"} <= files(out)
    assert os.listdir(out / "frames") == ["latent_epoch01.png"]
    assert_recorded(s8_aae, metrics)
    match = metrics["prior_match"]
    assert match["prior"].startswith("uniform") and 0 <= match["inside_support"] <= 1
    assert match["discriminator_accuracy"] == pytest.approx(
        0.5 * (match["codes_called_codes"] + match["prior_called_prior"]))
    distribution = match["distribution"]  # against prior samples, beside two prior samples' own distance
    assert distribution["samples"] == 256 and distribution["mmd2"] > distribution["mmd2_noise"]
    assert distribution["uniformity"]["share_inside"] == pytest.approx(match["inside_support"])
    # the recomputed encoder statistics move the codes (the trained running ones lag), scored the same ways
    recomputed = metrics["prior_match_recomputed_bn"]
    assert recomputed["code_min"] != match["code_min"]
    assert recomputed["distribution"]["samples"] == 256
    assert recomputed["distribution"]["mmd2"] != distribution["mmd2"]
    assert 0 < metrics["test_bce"] < 0.75 and 0 < metrics["test_mse"] < 0.3  # near-untrained: about log 2
    assert len(metrics["train_history"]) == 1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging folder left


@pytest.mark.slow
def test_s8_aae_boxes_report_each_box_share_and_validation_codes(other_idx_dir, tmp_path):
    out = tmp_path / "boxes"
    metrics = quick_run(s8_aae, other_idx_dir, out, "--preset", "lecture_boxes", "--validation")
    match = metrics["prior_match"]
    assert len(match["box_shares"]) == 10 and match["box_share_max"] == max(match["box_shares"])
    assert sum(match["box_shares"]) == pytest.approx(match["inside_support"])  # the lecture's boxes do not overlap
    assert "uniformity" not in match["distribution"]
    # under the validation protocol the recipes are compared on validation codes, read with the running
    # and with the recomputed encoder statistics (a sweep chooses between them)
    for key in ("validation_prior_match", "validation_prior_match_recomputed_bn"):
        validation = metrics[key]
        assert sum(validation["box_shares"]) == pytest.approx(validation["inside_support"]), key
        assert validation["distribution"]["samples"] == 256, key
    assert metrics["protocol"]["split_sizes"]["validation"] == 256
    assert (metrics["validation_prior_match"]["distribution"]["mmd2"]
            != metrics["validation_prior_match_recomputed_bn"]["distribution"]["mmd2"])


def test_s8_aae_presets():
    lecture, preset = parse(s8_aae)
    assert preset == "lecture" and lecture == s8_aae.Config()
    boxes, _ = parse(s8_aae, "--preset", "recommended_boxes", "--batch-size", "256")
    assert boxes.prior == "boxes" and boxes.model.label_conditioning and boxes.model.standardize_components
    assert boxes.train.batch_size == 256  # a flag overrides its preset's value
    assert parse(s8_aae, "--preset", "lecture_boxes")[0].prior == "boxes"


def test_s8_aae_label_conditioned_boxes_need_ten_classes(other_idx_dir, tmp_path, capsys):
    err = one_line_error(s8_aae, ["--preset", "recommended_boxes", "--quick", "--no-progress",
                                   "--data-dir", str(other_idx_dir), "--out", str(tmp_path / "o")], capsys, code=1)
    assert "10 classes" in err and "num_classes=8" in err
    assert not (tmp_path / "o").exists()
    err = one_line_error(s8_aae, ["--label-conditioning", "--out", str(tmp_path / "o")], capsys)
    assert "label_conditioning needs a mixture prior" in err


@pytest.mark.slow
def test_s8_aae_unlabelled_boxes_need_no_labels_on_eight_classes(other_idx_dir, tmp_path):
    unlabelled, _ = parse(s8_aae, "--preset", "unlabelled_boxes")
    assert unlabelled.model.component_assignment == "balanced" and unlabelled.model.label_conditioning
    metrics = quick_run(s8_aae, other_idx_dir, tmp_path / "run", "--preset", "unlabelled_boxes")
    match = metrics["prior_match"]
    assert metrics["settings"]["num_classes"] == 10  # the prior's ten boxes, not the data's 8 classes
    assert len(match["box_shares"]) == 10 and sum(match["box_shares"]) == pytest.approx(match["inside_support"])
    assert 0 <= match["inside_own_component"] <= match["inside_support"]
    assert sum(metrics["validation_prior_match"]["box_shares"]) == pytest.approx(
        metrics["validation_prior_match"]["inside_support"])


# ------------------------------------------------------------------ section 9: disentangled AAE

@pytest.mark.slow
def test_s9_disentangled_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s9_disentangled, other_idx_dir, out, "--validation", "--style-normalization", "class")
    assert {"style_transfer.png", "style_by_label.png", "checkpoint", "metrics.json"} <= files(out)
    assert_recorded(s9_disentangled, metrics)
    assert metrics["num_classes"] == EIGHT_CLASSES
    for name in ("label_head_test_accuracy", "adversary_test_accuracy", "classifier_test_accuracy"):
        assert 0 <= metrics[name] <= 1, name
    # fair probes, the 10-NN first: fitted on the 512 training styles, scored on all 256 test ones, for the
    # class-standardised style and for the style before its standardisation
    for leak_key in ("label_leak", "label_leak_before_standardization"):
        assert list(metrics[leak_key]) == ["knn", "logistic", "mlp"], leak_key
        for kind, leak in metrics[leak_key].items():
            assert (leak["train_size"], leak["test_size"]) == (512, 256), (leak_key, kind)
            assert 0 <= leak["accuracy"] <= 1 and 0 <= leak["permuted_accuracy"] <= 1
    both = {"label_head_accuracy", "label_leak", "label_leak_before_standardization"}
    assert set(metrics["recomputed_bn"]) == both
    # under the validation protocol the same probes score the validation styles too (what chooses a recipe)
    assert set(metrics["validation"]) == both
    assert metrics["validation"]["label_leak"]["knn"]["test_size"] == metrics["protocol"]["split_sizes"]["validation"]
    majority = metrics["label_leak"]["logistic"]["majority_share"]
    # four steps teach the label head something, seen once its statistics fit the final weights
    assert metrics["recomputed_bn"]["label_head_accuracy"] > majority + 0.1
    assert 1 / EIGHT_CLASSES <= majority < 0.3
    transfer = metrics["style_transfer_accuracy"]
    assert 0 <= transfer["overall"] <= 1
    # every one of the data's labels was asked for: a score for each, none for absent ones
    assert len(transfer["per_label"]) == EIGHT_CLASSES and all(0 <= v <= 1 for v in transfer["per_label"])
    assert transfer["overall"] == pytest.approx(np.mean(transfer["per_label"]))  # each label asked as often


def test_s9_disentangled_presets():
    lecture, preset = parse(s9_disentangled)
    assert preset == "lecture" and lecture == s9_disentangled.Config()
    assert lecture.model.style_normalization == "none" and lecture.model.confusion_weight == 0.1
    assert parse(s9_disentangled, "--preset", "recommended", "--quick")[0].train.epochs == 1


def test_s9_disentangled_class_style_needs_a_deterministic_style(tmp_path, capsys):
    err = one_line_error(s9_disentangled, ["--style-normalization", "class", "--style-kl-weight", "0.005",
                                            "--out", str(tmp_path / "o")], capsys)
    assert "deterministic style" in err
    err = one_line_error(s9_disentangled, ["--transfer-images", "0", "--out", str(tmp_path / "o")], capsys)
    assert "transfer_images must be a positive integer" in err


def test_s9_disentangled_refuses_a_classifier_of_other_classes(other_idx_dir, tmp_path, capsys):
    saved = tmp_path / "classifier"
    saved.mkdir()
    (saved / "classifier.json").write_text(json.dumps({"test_accuracy": 0.99}))  # no count: MNIST's 10
    err = one_line_error(s9_disentangled, ["--classifier", str(saved), "--train-limit", "512", "--test-limit", "256",
                                            "--data-dir", str(other_idx_dir), "--out", str(tmp_path / "o")], capsys)
    assert "trained on 10 classes, the data has 8" in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ section 10: semi-supervised AAE

@pytest.mark.slow
def test_s10_semi_supervised_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s10_semi_supervised, other_idx_dir, out, "--preset", "recommended", "--labels", "80")
    assert {"error_by_epoch.png", "style_transfer.png", "checkpoint", "metrics.json"} <= files(out)
    assert "clusters.png" not in files(out)
    assert_recorded(s10_semi_supervised, metrics, preset="recommended")
    assert metrics["settings"]["consistency_weight"] == 1.0 and metrics["settings"]["semi_supervised"] is True
    assert metrics["labels"] == 80 and metrics["num_classes"] == EIGHT_CLASSES
    indices = np.asarray(metrics["labelled_indices"])
    assert len(set(indices)) == 80 and indices.max() < 512  # from the run's training images
    # the recommended preset follows the validation protocol: indices into the run's training images, the
    # class-stratified sample of those left after the hold-out
    train_labels = runs.load_splits(runs.RunOptions(data_dir=other_idx_dir, train_limit=512, test_limit=256),
                                    validation=True)["train"].labels
    assert np.bincount(train_labels[indices], minlength=EIGHT_CLASSES).tolist() == [10] * EIGHT_CLASSES
    assert 0 <= metrics["test_error"] < 0.85  # chance: 7/8
    # the recommended preset follows the validation protocol: the error is followed on validation images
    assert metrics["error_by_epoch_split"] == "validation" and "test_error_by_epoch" not in metrics
    assert len(metrics["validation_error_by_epoch"]) == 1
    assert 0 <= metrics["train_history"][0]["supervised/confident_share"] <= 1  # the pseudo-label term was on
    # style from label: the first 256 test styles (all there are) decoded with each of the 8 classes, and fair probes
    transfer = metrics["style_transfer_accuracy"]
    assert len(transfer["per_label"]) == EIGHT_CLASSES and transfer["overall"] == pytest.approx(np.mean(transfer["per_label"]))
    for name in ("label_leak", "validation_label_leak"):
        leak = metrics[name]["knn"]
        assert leak["train_size"] == 512 and 0 <= leak["accuracy"] <= 1, name
    assert metrics["label_leak"]["logistic"]["test_size"] == 256
    assert metrics["validation_label_leak"]["logistic"]["test_size"] == metrics["protocol"]["split_sizes"]["validation"]
    # the final errors again with the encoder's statistics recomputed: a second way of reading the model
    recomputed = metrics["recomputed_bn"]
    assert set(recomputed) == {"validation_final_error", "test_error"}
    assert all(0 <= value <= 1 for value in recomputed.values())
    # after 8 steps the running statistics are still half their initial (0, 1): far off the final weights'
    assert recomputed["test_error"] < metrics["test_error"] - 0.1


@pytest.mark.slow
def test_s10_clustering_follows_validation_and_labels_clusters_from_training(other_idx_dir, tmp_path):
    out = tmp_path / "clusters"
    metrics = quick_run(s10_semi_supervised, other_idx_dir, out, "--preset", "recommended_clustering", "--clusters",
                        "12")
    assert "clusters.png" in files(out)
    assert metrics["protocol"]["validation"] is True
    assert metrics["protocol"]["split_sizes"] == {"train": 512, "validation": 256, "test": 256}
    assert metrics["error_by_epoch_split"] == "validation" and "test_error_by_epoch" not in metrics
    assert len(metrics["validation_error_by_epoch"]) == 1 and metrics["validation_best_epoch"] == 1
    assert metrics["validation_best_error"] == metrics["validation_final_error"] == metrics["validation_error_by_epoch"][0]
    assert set(metrics["recomputed_bn"]) == {"validation_final_error"}  # clusters labelled the same way
    assert 0 <= metrics["recomputed_bn"]["validation_final_error"] <= 1
    # the label head's terms trained in their own phase
    assert {"label_head/balance_gap", "label_head/entropy", "label_head/invariance"} <= set(metrics["train_history"][0])
    assert not any(name.startswith("generator/balance") for name in metrics["train_history"][0])
    report = metrics["clustering"]
    assert metrics["clustering_error"] == report["most_confident"]["error"]
    assert len(report["most_confident"]["cluster_labels"]) == 12 and report["clusters_used"] <= 12
    # labels fitted to the test set itself are an optimistic bound on the paper's training-labelled numbers
    assert report["test_majority"]["error"] <= min(report["most_confident"]["error"],
                                                   report["train_majority"]["error"]) + 1e-9


def test_s10_semi_supervised_presets():
    lecture, preset = parse(s10_semi_supervised)
    assert preset == "lecture" and lecture == s10_semi_supervised.Config()
    assert lecture.labels == 100 and lecture.model.semi_supervised and lecture.model.augment_shift == 0
    clustering, _ = parse(s10_semi_supervised, "--preset", "clustering")
    clustering_model = s10_semi_supervised.derive_model_config(clustering, 10, 60_000)
    assert not clustering_model.semi_supervised and clustering_model.num_classes == 16  # a head of --clusters outputs
    assert clustering.clusters == 16
    # a label count given with the clustering preset makes it semi-supervised again
    labelled = parse(s10_semi_supervised, "--preset", "clustering", "--labels", "1000")[0]
    assert s10_semi_supervised.derive_model_config(labelled, 10, 60_000).semi_supervised


@pytest.mark.parametrize("argv, message", [
    (["--labels", "-5"], "labels must be 0 (clustering) or positive"),
    (["--labels", "0", "--consistency-weight", "1"], "consistency_weight needs labels"),
    (["--no-semi-supervised"], "unrecognized arguments: --no-semi-supervised"),
    (["--augment-shift", "14"], "augment_shift must be 0..13"),
    (["--clusters", "1"], "clusters must be at least 2"),
], ids=["negative-labels", "consistency-without-labels", "unsupervised-with-labels", "shift", "clusters"])
def test_s10_semi_supervised_bad_settings(argv, message, tmp_path, capsys):
    assert message in one_line_error(s10_semi_supervised, [*argv, "--out", str(tmp_path / "o")], capsys)


def test_s10_semi_supervised_labels_must_balance_over_the_classes(other_idx_dir, tmp_path, capsys):
    err = one_line_error(s10_semi_supervised, ["--labels", "100", "--quick", "--no-progress",
                                                "--data-dir", str(other_idx_dir), "--out", str(tmp_path / "o")], capsys)
    assert "100 labels cannot be balanced over 8 classes" in err and "multiple of 8" in err
    assert not (tmp_path / "o").exists()


def test_s10_cluster_examples_leaves_empty_clusters_blank(mnist):
    split = data.Split(mnist["test"].images[:6], mnist["test"].labels[:6])
    grid = s10_semi_supervised.cluster_examples(split, np.array([2, 0, 2, 2, 0, 2]), num_clusters=3, per_cluster=3)
    assert grid.shape == (3, 3, 28, 28, 1)
    assert not grid[1].any() and not grid[0, 2].any()  # cluster 1 empty; cluster 0 has two members
    np.testing.assert_allclose(grid[2, 0], data.to_float_nhwc(split.images[:1])[0])
    np.testing.assert_allclose(grid[0, 1], data.to_float_nhwc(split.images[4:5])[0])
