"""Each experiment's --quick run writes its figures and metrics; bad input fails cleanly."""

import json
import os
import subprocess
import sys

import pytest

from experiments import common, s1_pca, s2_conv_ae, s3_sparse_ae, s4_interpolation

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
