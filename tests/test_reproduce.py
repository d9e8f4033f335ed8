"""The one-command reproduction: runs experiments in order, skips completed ones, writes the report."""

import json
import re

import pytest

from aejax.experiments import reproduce


def test_every_lecture_section_has_an_experiment_and_each_headline_names_a_metric():
    sections = {e.section.split(".")[0] for e in reproduce.EXPERIMENTS}
    assert sections == {str(n) for n in range(1, 11)}
    assert len(reproduce.BY_NAME) == len(reproduce.EXPERIMENTS)  # unique names
    for experiment in reproduce.EXPERIMENTS:
        assert experiment.headline and all(re.fullmatch(r"[a-z0-9_.]+", key) for _, key, _ in experiment.headline)


def test_quick_subset_runs_reports_and_then_skips_what_is_complete(mnist_dir, tmp_path, capsys):
    out = tmp_path / "reproduce"
    argv = ["--quick", "--no-progress", "--only", "s1_pca,s6_toy_conditional,s10_ssl_1000", "--out", str(out),
            "--data-dir", str(mnist_dir), "--train-limit", "512", "--test-limit", "256"]
    result = reproduce.main(argv)
    # 512 training images hold fewer than 100 of each digit: the 1000-label run fails, the others go on
    assert result["failed"] == ["s10_ssl_1000"]
    manifest = json.loads((out / "reproduce.json").read_text())
    assert manifest["s1_pca"]["status"] == "done" and manifest["s6_toy_conditional"]["status"] == "done"
    assert "fewer than per_class=100" in manifest["s10_ssl_1000"]["error"]
    assert manifest["s1_pca"]["argv"] == ["--seed", "42", "--quick", "--train-limit", "512", "--test-limit", "256"]

    report = (out / "REPORT.md").read_text()
    pca = json.loads((out / "s1_pca" / "metrics.json").read_text())
    toy = json.loads((out / "s6_toy_conditional" / "metrics.json").read_text())
    assert f"| components kept | {pca['pca_components']} |" in report
    assert f"| test MSE | {pca['test_mse']:.4f} |" in report
    assert f"| conditional AE test MSE | {toy['conditional_test_mse']:.4f} |" in report
    assert "![s1_pca: denoising](s1_pca/denoising.png)" in report
    assert "**failed**: ValueError" in report and report.count("**not run**") == len(reproduce.EXPERIMENTS) - 3
    assert "PCA(0.90) keeps 87 components" in report  # the lecture's claim beside the measurement
    assert "mode: quick" in report and "device: cpu" in report
    page = (out / "REPORT.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # s1's three figures and s6's one, inlined

    capsys.readouterr()
    before = (out / "s1_pca" / "metrics.json").stat().st_mtime_ns
    again = reproduce.main(argv)
    printed = capsys.readouterr().out
    assert "s1_pca: complete, skipped" in printed and "s6_toy_conditional: complete, skipped" in printed
    assert (out / "s1_pca" / "metrics.json").stat().st_mtime_ns == before
    assert again["failed"] == ["s10_ssl_1000"]  # a failed one is tried again

    # runs made by the scripts themselves, without the runner's manifest, are reported too
    (out / "reproduce.json").unlink()
    (out / "REPORT.html").unlink()
    reproduce.main(["--report-only", "--no-html", "--out", str(out)])
    report = (out / "REPORT.md").read_text()
    assert "*run outside the runner: its settings are in metrics.json*" in report
    assert f"| test MSE | {pca['test_mse']:.4f} |" in report and not (out / "REPORT.html").exists()


def test_changed_flags_rerun_an_experiment(mnist_dir, tmp_path):
    out = tmp_path / "reproduce"
    common = ["--quick", "--no-progress", "--only", "s1_pca", "--out", str(out), "--data-dir", str(mnist_dir),
              "--train-limit", "300", "--test-limit", "100"]
    reproduce.main(common)
    first = json.loads((out / "s1_pca" / "metrics.json").read_text())
    reproduce.main([*common, "--seed", "7"])
    second = json.loads((out / "s1_pca" / "metrics.json").read_text())
    assert first["settings"]["seed"] == 42 and second["settings"]["seed"] == 7


@pytest.mark.parametrize("argv", [["--only", ""], ["--only", "s2_latent3"]])
def test_unknown_experiment_names_are_usage_errors(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown experiment" in capsys.readouterr().err
