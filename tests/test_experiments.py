"""Each experiment's --quick run writes its figures and metrics; bad input fails cleanly."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import (classifier, common, s1_pca, s2_conv_ae, s3_sparse_ae, s4_interpolation, s5_vae,
                         s5_vae_kl_only, s6_toy_conditional, s7_cvae, s8_aae, s9_disentangled, s10_semi_supervised,
                         s11_beta_vae, s11_wae)

EXPECTED = {
    s1_pca: ({"reconstructions.png", "denoising.png", "latent_scatter.png"},
             {"pca_components", "test_mse", "psnr_noisy_db", "psnr_filtered_db"}),
    s2_conv_ae: ({"reconstructions.png", "latent_scatter.png", "denoising.png", "checkpoint"},
                 {"test_bce", "test_mse", "pca24_test_mse", "psnr_noisy_db", "psnr_ae_eval_db",
                  "psnr_ae_batch_stats_db", "psnr_pca90_db"}),
    s3_sparse_ae: ({"denoising.png", "class_activation_maps.png", "activation_histograms.png", "sparsity_costs.png",
                    "checkpoint"},
                   {"test_bce", "test_mse", "psnr_denoised_db", "mean_activation"}),
    s4_interpolation: ({"interpolation.png", "interpolation.gif", "checkpoint"},
                       {"test_bce", "test_mse", "interpolation_max_distance_from_ends"}),
}
LIKELIHOOD = {"test_negative_elbo_nats", "iwae_nll_nats", "iwae_negative_elbo_same_images_nats", "iwae_samples"}
VAE_FIGURES = {"reconstructions.png", "denoising.png", "interpolation.png", "interpolation.gif",
               "vector_arithmetic.png", "checkpoint"}
# Variational-family scripts, run on fewer images (they only have to write everything).
SMALL = {
    s5_vae: (VAE_FIGURES | {"latent_scatter.png", "latent_grid.png"},
             LIKELIHOOD | {"test_bce", "test_mse", "psnr_vae_eval_db", "test_kl_nats", "active_dims"}),
    s5_vae_kl_only: ({"histograms.png", "latent_scatter.png", "checkpoint"},
                     {"mu_mean_abs", "variance_mean", "probe_accuracy_from_mu"}),
    s7_cvae: ({"latent_all.png", "latent_4.png", "latent_9.png", "grid_label4.png", "grid_label9.png",
               "style_transfer.png", "checkpoint"},
              LIKELIHOOD | {"classifier_test_accuracy", "figure_fives_classified_as_5"}),
    s11_beta_vae: (VAE_FIGURES, LIKELIHOOD | {"beta", "kl_warmup_steps", "test_mse"}),
    s11_wae: ({"reconstructions.png", "prior_samples.png", "checkpoint"},
              {"test_mse", "test_mmd_codes_vs_prior", "reference_mmd_prior_vs_prior"}),
    s6_toy_conditional: ({"toy_reconstructions.png"}, {"plain_test_mse", "conditional_test_mse"}),
    classifier: (set(), {"test_accuracy"}),
}


@pytest.mark.parametrize("script", list(EXPECTED), ids=lambda m: m.__name__.split(".")[-1])
def test_quick_run_writes_figures_and_metrics(script, mnist_dir, tmp_path):
    out = tmp_path / "run"
    returned = script.main(["--quick", "--no-progress", "--data-dir", str(mnist_dir), "--out", str(out)])
    files, metric_names = EXPECTED[script]
    assert files <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metric_names <= set(metrics)
    assert metrics["settings"]["quick"] is True
    for name in metric_names:
        assert metrics[name] == pytest.approx(returned[name])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging left behind
    if "test_mse" in metrics and script is not s1_pca:
        assert 0 < metrics["test_mse"] < 0.25  # trained a little: far better than predicting noise


@pytest.mark.parametrize("script", list(SMALL), ids=lambda m: m.__name__.split(".")[-1])
def test_variational_quick_runs_write_figures_and_metrics(script, mnist_dir, tmp_path):
    out = tmp_path / "run"
    returned = script.main(["--quick", "--no-progress", "--data-dir", str(mnist_dir), "--out", str(out),
                            "--train-limit", "768", "--test-limit", "256"])
    files, metric_names = SMALL[script]
    assert files | {"metrics.json"} <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metric_names <= set(metrics)
    for name in metric_names:
        assert metrics[name] == pytest.approx(returned[name], nan_ok=True)
    if "iwae_nll_nats" in metrics:  # nats per image: positive, below 784 * log 2, IWAE <= ELBO on the same images
        assert 0 < metrics["iwae_nll_nats"] <= metrics["iwae_negative_elbo_same_images_nats"] + 1e-3 < 784 * 0.7
        assert metrics["iwae_samples"] == 8 and metrics["iwae_images"] == 128  # the --quick sizes
    if script is s7_cvae:
        for name in ("generation_accuracy", "style_transfer_accuracy"):
            assert len(metrics[name]["per_label"]) == 10 and 0 <= metrics[name]["overall"] <= 1
    if script is s6_toy_conditional:
        assert metrics["plain_epochs"] <= 300 and metrics["conditional_epochs"] <= 300


# Adversarial-family scripts: (script, extra flags, files, metrics), on 768 / 256 images.
ADVERSARIAL = [
    (s8_aae, ["--prior", "boxes", "--batch-size", "128", "--discriminator-norm", "none", "--gradient-penalty", "1",
              "--label-conditioning"],
     {"prior_samples.png", "latent_epochs.gif", "latent_final.png", "latent_final_recomputed_bn.png", "grid.png",
      "frames", "checkpoint"},
     {"prior_match", "prior_match_recomputed_bn", "test_bce", "test_mse"}),
    (s9_disentangled, ["--style-normalization", "class"], {"style_transfer.png", "style_by_label.png", "checkpoint"},
     {"label_head_test_accuracy", "label_leak_logistic", "label_leak_knn", "adversary_test_accuracy",
      "style_transfer_accuracy"}),
    (s10_semi_supervised, ["--labels", "100", "--lr-schedule", "cosine", "--augment-shift", "2", "--consistency-weight", "1"], {"error_by_epoch.png", "style_transfer.png", "checkpoint"},
     {"test_error", "test_error_by_epoch", "labelled_indices"}),
    (s10_semi_supervised, ["--labels", "0", "--clusters", "16"], {"clusters.png", "error_by_epoch.png"},
     {"clustering_error", "clustering_error_by_epoch", "cluster_to_label"}),
]


@pytest.mark.parametrize("script, flags, files, metric_names", ADVERSARIAL,
                         ids=["s8_aae", "s9_disentangled", "s10_labels100", "s10_clusters16"])
def test_adversarial_quick_runs_write_figures_and_metrics(script, flags, files, metric_names, mnist, mnist_dir, tmp_path):
    out = tmp_path / "run"
    returned = script.main(["--quick", "--no-progress", "--data-dir", str(mnist_dir), "--out", str(out),
                            "--train-limit", "768", "--test-limit", "256", *flags])
    assert files | {"metrics.json"} <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metric_names <= set(metrics)
    assert metrics["settings"]["quick"] is True
    if script is s8_aae:
        assert os.listdir(out / "frames") == ["latent_epoch01.png"]
        match = metrics["prior_match"]
        assert match["prior"] == "10 uniform boxes" and 0 <= match["inside_support"] <= 1
        assert match["discriminator_accuracy"] == pytest.approx(0.5 * (match["codes_called_codes"] + match["prior_called_prior"]))
        # the recomputed encoder statistics move the codes (the trained running ones lag)
        assert metrics["prior_match_recomputed_bn"]["code_min"] != match["code_min"]
        assert metrics["train_history"][0]["discriminator/r1"] > 0  # the R1 penalty was on
        # label-conditioned: a code inside its own label's box is inside the support
        assert 0 <= match["inside_own_component"] <= match["inside_support"]
    if script is s9_disentangled:
        assert len(metrics["style_transfer_accuracy"]["per_label"]) == 10
        assert 0 <= metrics["label_leak_logistic"] <= 1 and metrics["label_head_test_accuracy"] == returned["label_head_test_accuracy"]
        assert set(metrics["recomputed_bn"]) == {"label_head_test_accuracy", "label_leak_logistic", "label_leak_knn"}
    if "test_error" in metrics:
        labels = mnist["train"].labels[metrics["labelled_indices"]]
        assert len(labels) == 100 and set(np.bincount(labels)) == {10}  # balanced, from the train split
        assert metrics["test_error_by_epoch"][-1] == pytest.approx(metrics["test_error"])
        assert 0 <= metrics["train_history"][0]["supervised/confident_share"] <= 1  # the pseudo-label term was on
    if "clustering_error" in metrics:
        assert len(metrics["cluster_to_label"]) <= 16 and 0 <= metrics["clustering_error"] < 1
        assert metrics["clustering_error_by_epoch"][-1] == pytest.approx(metrics["clustering_error"])


def test_semi_supervised_label_count_must_be_a_multiple_of_ten(tmp_path):
    result = _run(["experiments.s10_semi_supervised", "--out", str(tmp_path / "o"), "--labels", "15"])
    assert result.returncode == 2 and "multiple of 10" in result.stderr and "Traceback" not in result.stderr


def test_staged_output_keeps_the_previous_result_when_a_run_fails(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("complete")
    with pytest.raises(RuntimeError):
        with common.staged_output(out) as staging:
            (staging / "metrics.json").write_text("partial")
            raise RuntimeError("killed mid-run")
    assert (out / "metrics.json").read_text() == "complete"
    assert os.listdir(tmp_path) == ["run"]
    with common.staged_output(out) as staging:
        (staging / "metrics.json").write_text("new")
    assert (out / "metrics.json").read_text() == "new"
    assert os.listdir(tmp_path) == ["run"]


def _run(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "positive integer"),
    (["--batch-size", "-3"], "positive integer"),
    (["--latent-dim", "two"], "positive integer"),
    (["--train-noise-std", "nan"], "finite number"),
])
def test_bad_cli_values_exit_2_with_one_line(flags, message, tmp_path):
    result = _run(["experiments.s2_conv_ae", "--out", str(tmp_path / "o"), *flags])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_output_folder_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _run(["experiments.s1_pca", "--out", str(blocker / "sub")])
    assert result.returncode == 2 and "not writable" in result.stderr


def test_missing_data_is_one_line_error_and_keeps_old_results(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("complete")
    result = _run(["experiments.s1_pca", "--out", str(out), "--data-dir", str(tmp_path / "nowhere")])
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "MNIST file not found" in result.stderr
    assert (out / "metrics.json").read_text() == "complete"


def test_help_lists_options_with_defaults():
    result = _run(["experiments.s3_sparse_ae", "--help"])
    assert result.returncode == 0
    assert "--sparsity" in result.stdout and "default: l1" in result.stdout
