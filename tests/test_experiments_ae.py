"""The deterministic-autoencoder experiments (sections 1-4 and 6): quick runs on an 8-class
data set, their presets, and one-line errors for settings that cannot run."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from aejax import flags
from aejax.experiments import s1_pca, s2_conv_ae, s3_sparse_ae, s4_interpolation, s6_toy_conditional

from experiment_support import NOISY_PSNR_DB, assert_recorded, files, one_line_error, parse, quick_run



def _fields_but(config, name):
    """Every field of ``config`` but ``name``, by leaf name."""
    return {k: v for k, v in flags.as_flat_dict(config).items() if k != name}


# ------------------------------------------------------------------ section 1: PCA

@pytest.mark.slow
def test_s1_pca_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s1_pca, other_idx_dir, out)
    assert {"reconstructions.png", "denoising.png", "latent_scatter.png", "metrics.json"} <= files(out)
    assert_recorded(s1_pca, metrics)
    assert 10 < metrics["pca_components"] < 200  # 90% of the variance of 512 digit images
    assert metrics["compression_ratio"] == pytest.approx(784 / metrics["pca_components"])
    assert 0 < metrics["test_mse"] < 0.05
    assert metrics["psnr_noisy_db"] == pytest.approx(NOISY_PSNR_DB, abs=0.5)
    assert metrics["psnr_filtered_db"] > metrics["psnr_noisy_db"] + 3  # PCA removes much of the noise
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging folder left


def test_s1_pca_presets_and_bad_variance(tmp_path, capsys):
    lecture, _ = parse(s1_pca)
    assert lecture.variance == 0.90 and parse(s1_pca, "--preset", "recommended")[0] == lecture
    err = one_line_error(s1_pca, ["--variance", "1.5", "--out", str(tmp_path / "o")], capsys)
    assert "variance must be strictly between 0 and 1" in err


# ------------------------------------------------------------------ section 2: conv AE

@pytest.mark.slow
def test_s2_conv_ae_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s2_conv_ae, other_idx_dir, out)
    assert {"reconstructions.png", "latent_scatter.png", "denoising.png", "checkpoint", "metrics.json"} <= files(out)
    assert_recorded(s2_conv_ae, metrics)
    assert metrics["settings"]["latent_dim"] == 24 and metrics["settings"]["epochs"] == 1
    assert 0 < metrics["test_mse"] < 0.25 and 0 < metrics["test_bce"] < 1
    assert 0 < metrics["pca24_test_mse"] < 0.1
    assert metrics["psnr_noisy_db"] == pytest.approx(NOISY_PSNR_DB, abs=0.5)
    for name in ("psnr_ae_eval_db", "psnr_ae_batch_stats_db", "psnr_pca90_db"):
        assert 0 < metrics[name] < 40
    assert metrics["psnr_pca90_db"] > metrics["psnr_noisy_db"]
    assert len(metrics["train_history"]) == 1 and metrics["train_images_per_second"] > 0
    # the wall time in parts: compiling the training programs is measured apart from training
    seconds = metrics["seconds"]
    assert {"data", "compile", "train", "evaluation", "figures", "total"} <= set(seconds)
    assert all(seconds[part] > 0 for part in ("data", "compile", "train", "evaluation", "figures"))
    assert sum(seconds[part] for part in ("data", "compile", "train", "evaluation", "figures")) <= seconds["total"]


def test_s2_presets_are_the_lecture_runs(tmp_path, capsys):
    lecture, preset = parse(s2_conv_ae)
    assert preset == "lecture" and lecture.model.latent_dim == 24 and lecture.model.input_noise_std == 0
    assert parse(s2_conv_ae, "--preset", "lecture_latent2")[0].model.latent_dim == 2
    denoising = parse(s2_conv_ae, "--preset", "lecture_denoising")[0]
    assert denoising.model.input_noise_std == 0.3 and denoising.model.latent_dim == 24
    assert parse(s2_conv_ae, "--preset", "recommended")[0] == lecture  # nothing better known
    err = one_line_error(s2_conv_ae, ["--test-noise-std", "0", "--out", str(tmp_path / "o")], capsys)
    assert "test_noise_std must be a finite number > 0" in err


# ------------------------------------------------------------------ section 3: sparse AE

@pytest.mark.slow
def test_s3_sparse_ae_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s3_sparse_ae, other_idx_dir, out)
    assert {"denoising.png", "class_activation_maps.png", "activation_histograms.png", "sparsity_costs.png",
            "checkpoint", "metrics.json"} <= files(out)
    assert_recorded(s3_sparse_ae, metrics)
    assert metrics["settings"]["latent_dim"] == 900 and metrics["settings"]["sparsity"] == "l1"
    assert 0 < metrics["test_mse"] < 0.25
    assert 0 < metrics["mean_activation"] < 1 and 0 <= metrics["share_of_units_mean_below_0.2"] <= 1
    assert metrics["psnr_noisy_db"] == pytest.approx(NOISY_PSNR_DB, abs=0.5)
    assert 0 < metrics["psnr_denoised_db"] < 40
    assert metrics["train_history"][0]["sparsity"] > 0  # the penalty was on


def test_s3_presets_and_impossible_settings(tmp_path, capsys):
    lecture, _ = parse(s3_sparse_ae)
    assert (lecture.model.sparsity, lecture.model.sparsity_weight) == ("l1", 0.01)
    kl = parse(s3_sparse_ae, "--preset", "lecture_kl")[0]
    assert (kl.model.sparsity, kl.model.sparsity_weight, kl.model.sparsity_target) == ("kl_per_unit", 0.1, 0.1)
    assert parse(s3_sparse_ae, "--preset", "recommended")[0] == lecture  # nothing better known
    out = str(tmp_path / "o")
    assert "perfect square" in one_line_error(s3_sparse_ae, ["--latent-dim", "24", "--out", out], capsys)
    assert "trains a sparse AE" in one_line_error(s3_sparse_ae, ["--sparsity", "none", "--out", out], capsys)


# ------------------------------------------------------------------ section 4: interpolation

@pytest.mark.slow
def test_s4_interpolation_quick_run_on_eight_classes(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s4_interpolation, other_idx_dir, out)
    assert {"interpolation.png", "interpolation.gif", "checkpoint", "metrics.json"} <= files(out)
    assert_recorded(s4_interpolation, metrics)
    assert metrics["settings"]["weight_decay"] == 1e-5
    assert (metrics["start_class"], metrics["end_class"]) == (7, 6)  # the lecture's digits: the data have them
    assert 0 < metrics["test_mse"] < 0.25
    assert 0 <= metrics["interpolation_max_distance_from_ends"] < 0.5
    with Image.open(out / "interpolation.gif") as gif:  # Pillow merges equal frames, adding up their durations
        durations = []
        for frame in range(gif.n_frames):
            gif.seek(frame)
            durations.append(gif.info["duration"])
    assert sum(durations) == 200 * 40


def test_s4_classes_are_checked(other_idx_dir, tmp_path, capsys):
    assert parse(s4_interpolation, "--preset", "recommended")[0] == parse(s4_interpolation)[0]
    out = str(tmp_path / "o")
    err = one_line_error(s4_interpolation, ["--start-class", "3", "--end-class", "3", "--out", out], capsys)
    assert "start_class and end_class must differ" in err
    err = one_line_error(s4_interpolation, ["--start-class", "9", "--data-dir", str(other_idx_dir), "--out", out],
                          capsys)
    assert "class 9 is not in the data (labels 0..7)" in err
    assert not (tmp_path / "o").exists()  # refused before any training


# ------------------------------------------------------------------ section 6: toy conditional AE

@pytest.mark.slow
def test_s6_toy_quick_run(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    metrics = quick_run(s6_toy_conditional, other_idx_dir, out)
    assert {"toy_reconstructions.png", "metrics.json"} <= files(out)
    assert_recorded(s6_toy_conditional, metrics)
    assert metrics["settings"]["max_epochs"] == 300 and metrics["settings"]["plateau_split"] == "test"
    for name in ("plain", "conditional"):
        assert 0 < metrics[f"{name}_test_mse"] < 1  # the points lie within [-2.5, 2.5] x [-1.5, 1.5]
        assert 1 <= metrics[f"{name}_epochs"] <= 300
        assert 0 < metrics[f"{name}_final_learning_rate"] <= 1e-3
    assert metrics["mse_ratio_plain_over_conditional"] == pytest.approx(
        metrics["plain_test_mse"] / metrics["conditional_test_mse"])


def test_s6_recommended_holds_the_test_split_out(tmp_path, capsys):
    lecture, _ = parse(s6_toy_conditional)
    recommended, _ = parse(s6_toy_conditional, "--preset", "recommended")
    assert lecture.plateau_split == "test" and recommended.plateau_split == "validation"
    assert _fields_but(recommended, "plateau_split") == _fields_but(lecture, "plateau_split")
    splits = {"train": {"points": jnp.zeros((100, 2)), "label": jnp.arange(100)},
              "test": {"points": jnp.ones((20, 2)), "label": jnp.arange(20)}}
    train, watched = s6_toy_conditional.schedule_split(splits, "validation")
    assert train["points"].shape == (80, 2) and np.array_equal(watched["label"], np.arange(80, 100))
    assert s6_toy_conditional.schedule_split(splits, "test")[1] is splits["test"]
    err = one_line_error(s6_toy_conditional, ["--points-per-shape", "3", "--out", str(tmp_path / "o")], capsys)
    assert "points_per_shape must be >= 10" in err
    assert "--conditional" not in flags.make_parser(recommended, s6_toy_conditional.PRESETS, "").format_help()
