"""The variational experiments (sections 5 and 7, beta-VAE, WAE) and the evaluation
classifier: quick runs on an 8-class data set, their presets, one-line errors for
settings that cannot run; ``aejax.likelihood_metrics`` on a tiny VAE."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import classifier as aejax_classifier
from aejax import likelihood_metrics, vae, wae
from aejax.experiments import classifier, s5_vae, s5_vae_kl_only, s7_cvae, s11_beta_vae, s11_wae

from experiment_support import NOISY_PSNR_DB, assert_recorded, files, one_line_error, parse, quick_run

CLASSES = 8  # the other_idx_dir data set: labels 0..7
VAE_FIGURES = {"reconstructions.png", "denoising.png", "interpolation.png", "interpolation.gif",
               "vector_arithmetic.png", "checkpoint", "metrics.json"}


def _assert_likelihood(metrics):
    """Nats per image: positive, below 784 log 2 (a coin per pixel), the IWAE bound at most the
    ELBO on the same images (up to Monte Carlo noise); the --quick sizes."""
    assert 0 < metrics["iwae_nll_nats"] <= metrics["iwae_negative_elbo_same_images_nats"] + 0.5 < 784 * math.log(2)
    assert 0 < metrics["test_negative_elbo_nats"] < 784 * math.log(2)
    assert metrics["iwae_samples"] == likelihood_metrics.QUICK_SAMPLES
    assert metrics["iwae_images"] == likelihood_metrics.QUICK_IMAGES and metrics["test_images_elbo"] == 256


# ------------------------------------------------------------------ likelihood_metrics

@pytest.fixture(scope="module")
def tiny_vae():
    """An untrained latent-2 VAE, its variables and 6 random [0, 1] images."""
    model = vae.make_model(vae.VAEConfig(latent_dim=2))
    params, batch_stats = model.init(jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (6, 28, 28, 1))
    return model, params, batch_stats, {"image": images, "label": jnp.zeros((6,), jnp.int32)}


def test_summarize_scores_all_images_and_the_iwae_subset(tiny_vae):
    model, params, batch_stats, test_set = tiny_vae
    result = likelihood_metrics.summarize(model, params, batch_stats, test_set, jax.random.key(2), 4, 3)
    assert result["test_images_elbo"] == 6 and result["iwae_images"] == 3 and result["iwae_samples"] == 4
    for name in ("test_negative_elbo_nats", "iwae_nll_nats", "iwae_negative_elbo_same_images_nats"):
        assert 0 < result[name] < 784 * 2  # random images under an untrained decoder: about a coin per pixel
    more = likelihood_metrics.summarize(model, params, batch_stats, test_set, jax.random.key(2), 4, 100)
    assert more["iwae_images"] == 6  # no more than there are
    with pytest.raises(ValueError, match="must be positive"):
        likelihood_metrics.summarize(model, params, batch_stats, test_set, jax.random.key(2), 0, 3)


def test_default_sizes_by_device():
    assert likelihood_metrics.default_sizes(quick=True) == (8, 128)
    expected = (500, None) if jax.devices()[0].platform == "gpu" else (100, 1000)
    assert likelihood_metrics.default_sizes() == expected


def test_kl_summary_counts_the_dimensions_away_from_the_prior():
    mu = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    log_var = np.zeros((2, 3))
    log_var[:, 2] = np.log(4.0)  # variance 4: KL = 0.5 (4 - 1 - log 4)
    result = likelihood_metrics.kl_summary(mu, log_var)
    assert result["kl_per_dim_nats"] == pytest.approx([0.5, 0.0, 0.5 * (3 - np.log(4))], abs=1e-6)
    assert result["active_dims"] == 2 and result["test_kl_nats"] == pytest.approx(sum(result["kl_per_dim_nats"]))
    with pytest.raises(ValueError, match=r"must both be \(N, D\)"):
        likelihood_metrics.kl_summary(mu, log_var[:, :2])


# ------------------------------------------------------------------ section 5: VAE

@pytest.mark.slow
def test_s5_vae_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s5_vae, other_idx_dir, out, "--preset", "lecture_latent2")
    assert VAE_FIGURES | {"latent_scatter.png", "latent_grid.png"} <= files(out)
    assert_recorded(s5_vae, metrics, "lecture_latent2")
    assert metrics["settings"]["latent_dim"] == 2 and len(metrics["kl_per_dim_nats"]) == 2
    assert 0 < metrics["test_mse"] < 0.25  # trained a little: better than noise
    assert metrics["psnr_noisy_db"] == pytest.approx(NOISY_PSNR_DB, abs=0.5)
    _assert_likelihood(metrics)
    assert 0 <= metrics["active_dims"] <= 2 and metrics["test_kl_nats"] >= 0
    assert metrics["interpolation_classes"] == [7, 6]  # the lecture's, present in 0..7
    assert metrics["vector_arithmetic_classes"] == [1, CLASSES - 1]  # no 9: the last class
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging folder left


def test_s5_vae_presets_and_impossible_settings(other_idx_dir, tmp_path, capsys):
    lecture = parse(s5_vae)[0]
    assert (lecture.model.latent_dim, lecture.model.kld_weight, lecture.train.epochs) == (24, 0.005, 5)
    assert parse(s5_vae, "--preset", "lecture_latent2")[0].model.latent_dim == 2
    recommended = parse(s5_vae, "--preset", "recommended")[0]
    assert recommended.model.kld_weight == pytest.approx(1 / 784) and recommended.model.kl_warmup_steps > 0
    assert recommended.model.latent_dim == 24 and recommended.train.validation  # the protocol's preset
    err = one_line_error(s5_vae, ["--lr-schedule", "cosine", "--out", str(tmp_path / "o")], capsys)
    assert "lr_schedule must be constant" in err
    err = one_line_error(s5_vae, ["--start-class", "9", "--data-dir", str(other_idx_dir), "--train-limit", "512",
                                   "--test-limit", "256", "--no-progress", "--out", str(tmp_path / "o")], capsys)
    assert "class 9 is not in the data (labels 0..7)" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_s5_vae_kl_only_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s5_vae_kl_only, other_idx_dir, out)
    assert {"histograms.png", "latent_scatter.png", "checkpoint", "metrics.json"} <= files(out)
    assert_recorded(s5_vae_kl_only, metrics)
    assert metrics["settings"]["reconstruction_weight"] == 0 and metrics["settings"]["kld_weight"] == 0.1
    assert metrics["mu_mean_abs"] < 0.5 and 0.5 < metrics["variance_mean"] < 1.5  # about the prior
    probe = metrics["probe_from_mu"]["logistic"]
    assert 0.1 < probe["majority_share"] < 0.2  # 8 classes of about equal size
    assert probe["test_size"] == 256 and probe["train_size"] == 512 and 0 <= probe["permuted_accuracy"] <= 1


def test_s5_vae_kl_only_presets_and_impossible_settings(tmp_path, capsys):
    # the recommended preset is the lecture's (a demonstration, nothing to improve)
    assert parse(s5_vae_kl_only, "--preset", "recommended")[0] == parse(s5_vae_kl_only)[0]
    err = one_line_error(s5_vae_kl_only, ["--reconstruction-weight", "1", "--out", str(tmp_path / "o")], capsys)
    assert "reconstruction_weight must be 0" in err
    err = one_line_error(s5_vae_kl_only, ["--kld-weight", "0", "--out", str(tmp_path / "o")], capsys)
    assert "kld_weight must be > 0" in err


# ------------------------------------------------------------------ section 7: CVAE

@pytest.mark.slow
def test_s7_cvae_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s7_cvae, other_idx_dir, out)
    # the lecture's 4 and 9: 9 is missing, the last class stands in
    assert {"latent_all.png", "latent_4.png", f"latent_{CLASSES - 1}.png", "grid_label4.png",
            f"grid_label{CLASSES - 1}.png", "style_transfer.png", "checkpoint", "metrics.json"} <= files(out)
    assert_recorded(s7_cvae, metrics)
    _assert_likelihood(metrics)
    assert metrics["figure_grid_labels"] == [4, CLASSES - 1] and metrics["figure_transfer_classes"] == [2, 5]
    assert 1 / CLASSES < metrics["classifier_test_accuracy"] <= 1  # the throwaway classifier learnt something
    for name in ("generation_accuracy", "style_transfer_accuracy"):
        assert len(metrics[name]["per_label"]) == CLASSES and 0 <= metrics[name]["overall"] <= 1
    assert metrics["generation_samples_per_label"] == s7_cvae.QUICK_SCORED
    assert metrics["style_transfer_images"] == s7_cvae.QUICK_SCORED
    assert 0 <= metrics["figure_transfer_classified_as_target"] <= 1
    assert not (tmp_path / "runs").exists()  # --quick saves no classifier


def test_s7_cvae_refuses_a_saved_classifier_of_another_class_count(other_idx_dir, tmp_path, capsys):
    saved = tmp_path / "classifier"
    (saved / "checkpoint").mkdir(parents=True)
    (saved / "classifier.json").write_text(json.dumps({"test_accuracy": 0.99, "num_classes": 10}))
    err = one_line_error(s7_cvae, ["--classifier", str(saved), "--data-dir", str(other_idx_dir), "--train-limit",
                                    "512", "--test-limit", "256", "--no-progress", "--out", str(tmp_path / "o")],
                          capsys)
    assert "trained on 10 classes, the data has 8" in err
    assert not (tmp_path / "o").exists()


def test_s7_cvae_presets_and_impossible_settings(tmp_path, capsys):
    lecture = parse(s7_cvae)[0]
    assert (lecture.model.latent_dim, lecture.model.learning_rate, lecture.model.kld_weight) == (2, 1e-2, 0.005)
    # the recommended preset is the lecture's (nothing better measured)
    assert parse(s7_cvae, "--preset", "recommended")[0] == lecture
    err = one_line_error(s7_cvae, ["--samples-per-label", "0", "--out", str(tmp_path / "o")], capsys)
    assert "samples_per_label must be a positive integer" in err


# ------------------------------------------------------------------ beyond the lecture: beta-VAE, WAE

@pytest.mark.slow
def test_s11_beta_vae_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s11_beta_vae, other_idx_dir, out)
    assert VAE_FIGURES <= files(out) and "latent_grid.png" not in files(out)  # latent 24: no grid
    assert_recorded(s11_beta_vae, metrics)
    assert metrics["settings"]["beta"] == 1.0 and metrics["settings"]["kld_weight"] == pytest.approx(1 / 784)
    assert metrics["kl_warmup_steps"] == 8  # one epoch: 512 images in batches of 64
    assert 0 < metrics["test_mse"] < 0.25
    _assert_likelihood(metrics)
    assert len(metrics["kl_per_dim_nats"]) == 24
    assert metrics["vector_arithmetic_classes"] == [1, CLASSES - 1]


def test_s11_beta_vae_presets_and_impossible_settings(tmp_path, capsys):
    lecture = parse(s11_beta_vae)[0]
    # the recommended preset is this experiment's recipe (nothing better known)
    assert parse(s11_beta_vae, "--preset", "recommended")[0] == lecture
    # beta and the warm-up in epochs are the flags; the model's KL weight and warm-up steps follow from them
    model = s11_beta_vae.derive_model_config(parse(s11_beta_vae, "--beta", "4", "--kl-warmup-epochs", "1.5")[0], 6400)
    assert model.kld_weight == vae.beta_to_kld_weight(4) and model.kl_warmup_steps == 150  # 1.5 x 100 batches of 64
    no_warmup = parse(s11_beta_vae, "--kl-warmup-epochs", "0")[0]
    assert s11_beta_vae.derive_model_config(no_warmup, 6400).kl_warmup_steps == 0
    for flag in ("--kld-weight", "--kl-warmup-steps"):
        err = one_line_error(s11_beta_vae, [flag, "100", "--out", str(tmp_path / "o")], capsys)
        assert f"unrecognized arguments: {flag}" in err


@pytest.mark.slow
def test_s11_wae_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s11_wae, other_idx_dir, out)
    assert {"reconstructions.png", "prior_samples.png", "checkpoint", "metrics.json"} <= files(out)
    assert_recorded(s11_wae, metrics)
    assert 0 < metrics["test_mse"] < 0.25
    assert metrics["mmd_samples_used"] == 256 and len(metrics["code_std"]) == 8
    # a barely trained encoder's codes are further from the prior than a second prior sample
    assert abs(metrics["reference_mmd_prior_vs_prior"]) < metrics["test_mmd_codes_vs_prior"]


def test_s11_wae_presets_and_impossible_settings(tmp_path, capsys):
    lecture = parse(s11_wae)[0]
    # the paper's lambda = 10 per image: 10 / 784 in the mean-over-pixels loss of MNIST
    assert (lecture.model.latent_dim, wae.mmd_weight_of(lecture.model)) == (8, pytest.approx(10 / 784))
    assert parse(s11_wae, "--preset", "recommended")[0] == lecture  # nothing better known
    err = one_line_error(s11_wae, ["--lr-schedule", "cosine", "--out", str(tmp_path / "o")], capsys)
    assert "lr_schedule must be constant" in err
    err = one_line_error(s11_wae, ["--mmd-samples", "1", "--out", str(tmp_path / "o")], capsys)
    assert "mmd_samples must be at least 2" in err


# ------------------------------------------------------------------ the evaluation classifier

@pytest.mark.slow
def test_classifier_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(classifier, other_idx_dir, out)
    assert {"checkpoint", "classifier.json", "metrics.json"} <= files(out)
    assert_recorded(classifier, metrics)
    assert metrics["num_classes"] == CLASSES
    assert json.loads((out / "classifier.json").read_text())["num_classes"] == CLASSES
    assert 1 / CLASSES < metrics["test_accuracy"] <= 1
    # what s7_cvae reads of it: the class count, so it refuses it for data of another count
    assert aejax_classifier.saved_num_classes(out) == CLASSES


def test_classifier_presets_and_bad_epochs(tmp_path, capsys):
    assert parse(classifier, "--preset", "recommended")[0] == parse(classifier)[0]  # the lecture has none
    err = one_line_error(classifier, ["--epochs", "0", "--out", str(tmp_path / "o")], capsys)
    assert "epochs must be a positive integer" in err
