"""The one-command reproduction: seeds as runs of their own, completeness from what a run
recorded, the report with its protocol lines and mean +- sd."""

import json
import re

import pytest

from aejax.experiments import reproduce


def test_every_lecture_section_has_an_entry_and_each_headline_names_a_metric():
    sections = {e.section.split(".")[0] for e in reproduce.EXPERIMENTS}
    assert sections == {str(n) for n in range(1, 11)}
    assert len(reproduce.BY_NAME) == len(reproduce.EXPERIMENTS)  # unique names
    for experiment in reproduce.EXPERIMENTS:
        assert experiment.headline and all(re.fullmatch(r"[a-z0-9_.]+", key) for _, key, _ in experiment.headline)
        # every entry's command line parses: a preset or flag the experiment lacks would fail here
        for unit in reproduce.units(experiment, reproduce.parse_args(["--out", "runs/x"])):
            assert reproduce.expected_settings(unit)["quick"] is False
    # the headline claims run over three seeds
    for name in ("s7_cvae", "s8_aae_uniform_corrected", "s9_disentangled", "s10_ssl_100", "s10_clusters16"):
        assert len(reproduce.BY_NAME[name].seeds) >= 3, name


def test_seeds_are_runs_of_their_own_and_label_seeds_follow_them():
    args = reproduce.parse_args(["--out", "runs/x", "--quick"])
    ssl = reproduce.units(reproduce.BY_NAME["s10_ssl_100"], args)
    assert [u.folder for u in ssl] == ["s10_ssl_100/seed42", "s10_ssl_100/seed43", "s10_ssl_100/seed44"]
    assert [u.argv[u.argv.index("--label-seed") + 1] for u in ssl] == ["0", "1", "2"]
    assert all("--quick" in u.argv and "--validation" in u.argv for u in ssl)
    single = reproduce.units(reproduce.BY_NAME["s1_pca"], args)
    assert [u.folder for u in single] == ["s1_pca"] and "--label-seed" not in single[0].argv


def test_summarize_gives_mean_and_sd_with_each_seed():
    assert reproduce.summarize([0.1, 0.2, 0.3], ".1%") == "20.0% +- 10.0% (3 seeds: 10.0%, 20.0%, 30.0%)"
    assert reproduce.summarize([0.5], ".2f") == "0.50"
    assert reproduce.summarize([[1], []], "") == "1 / none"  # lists side by side
    assert reproduce.summarize([None], ".2f") == "n/a"


def test_quick_subset_runs_reports_and_then_skips_what_is_complete(mnist_dir, tmp_path, capsys):
    out = tmp_path / "reproduce"
    argv = ["--quick", "--no-progress", "--only", "s1_pca,s6_toy_conditional,s10_ssl_1000", "--out", str(out),
            "--data-dir", str(mnist_dir), "--train-limit", "512", "--test-limit", "256"]
    result = reproduce.main(argv)
    # 512 training images hold fewer than 100 of each digit: the 1000-label runs fail, the others go on
    assert result["failed"] == [f"s10_ssl_1000/seed{k}" for k in (42, 43, 44)]
    manifest = json.loads((out / "reproduce.json").read_text())
    assert "fewer than per_class=100" in manifest["s10_ssl_1000/seed42"]["error"]

    report = (out / "REPORT.md").read_text()
    pca = json.loads((out / "s1_pca" / "metrics.json").read_text())
    toy = json.loads((out / "s6_toy_conditional" / "metrics.json").read_text())
    assert f"| components kept | {pca['pca_components']} |" in report
    assert f"| test MSE | {pca['test_mse']:.4f} |" in report
    assert f"| conditional AE test MSE | {toy['conditional_test_mse']:.4f} |" in report
    assert "![s1_pca: denoising](s1_pca/denoising.png)" in report
    assert "**failed**: ValueError" in report
    assert report.count("**not run**") == len(reproduce.EXPERIMENTS) - 3
    assert "PCA(0.90) keeps 87 components" in report  # the claim beside the measurement
    assert "*Protocol:* the lecture's protocol: trained on all 512 training images" in report
    assert "plateau schedule and stop watch: test" in report  # what section 6's lecture setting watches
    assert "mode: quick" in report and "device: cpu" in report and "complete: 2 of" in report
    page = (out / "REPORT.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # s1's three figures and s6's one, inlined

    capsys.readouterr()
    before = (out / "s1_pca" / "metrics.json").stat().st_mtime_ns
    again = reproduce.main(argv)
    printed = capsys.readouterr().out
    assert "s1_pca: complete, skipped" in printed and "s6_toy_conditional: complete, skipped" in printed
    assert (out / "s1_pca" / "metrics.json").stat().st_mtime_ns == before
    assert again["failed"] == result["failed"]  # failed runs are tried again

    # the report needs no manifest: completeness and numbers come from each run's metrics.json
    (out / "reproduce.json").unlink()
    reproduce.main(["--report-only", "--no-html", "--out", str(out), "--quick", "--train-limit", "512",
                    "--test-limit", "256"])
    assert f"| test MSE | {pca['test_mse']:.4f} |" in (out / "REPORT.md").read_text()


def test_jobs_run_at_once_in_processes_of_their_own_with_a_log_each(mnist_dir, tmp_path, capsys):
    out = tmp_path / "reproduce"
    argv = ["--quick", "--no-progress", "--no-html", "--jobs", "2", "--only", "s1_pca,s10_ssl_1000", "--out", str(out),
            "--data-dir", str(mnist_dir), "--train-limit", "512", "--test-limit", "256"]
    result = reproduce.main(argv)
    assert result["failed"] == [f"s10_ssl_1000/seed{k}" for k in (42, 43, 44)]
    manifest = json.loads((out / "reproduce.json").read_text())
    assert manifest["s1_pca"]["status"] == "done" and manifest["s1_pca"]["wall_seconds"] > 0
    # a failed run's entry quotes its log's last line: the script's one-line error
    assert "fewer than per_class=100" in manifest["s10_ssl_1000/seed43"]["error"]
    assert manifest["s10_ssl_1000/seed43"]["error"].startswith("exit 1: ")
    assert "fewer than per_class=100" in (out / "logs" / "s10_ssl_1000-seed43.log").read_text()
    assert (out / "s1_pca" / "metrics.json").is_file() and (out / "logs" / "s1_pca.log").is_file()
    assert json.loads((out / "s1_pca" / "metrics.json").read_text())["settings"]["train_limit"] == 512
    capsys.readouterr()
    reproduce.main(argv)
    assert "s1_pca: complete, skipped" in capsys.readouterr().out


@pytest.mark.parametrize("jobs", ["0", "two"])
def test_jobs_must_be_a_positive_integer(jobs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--jobs", jobs, "--out", str(tmp_path)])
    assert "expected a positive integer" in capsys.readouterr().err


def test_changed_settings_rerun_and_seeded_entries_report_mean_and_sd(mnist_dir, tmp_path):
    out = tmp_path / "reproduce"
    common = ["--quick", "--no-progress", "--out", str(out), "--data-dir", str(mnist_dir), "--test-limit", "100"]
    reproduce.main([*common, "--only", "s1_pca", "--train-limit", "300"])
    unit = reproduce.units(reproduce.BY_NAME["s1_pca"], reproduce.parse_args([*common, "--train-limit", "300"]))[0]
    assert reproduce.is_complete(out, unit)
    other = reproduce.units(reproduce.BY_NAME["s1_pca"], reproduce.parse_args([*common, "--train-limit", "400"]))[0]
    assert not reproduce.is_complete(out, other)  # other settings: not this run
    reproduce.main([*common, "--only", "s1_pca", "--train-limit", "400"])
    assert json.loads((out / "s1_pca" / "metrics.json").read_text())["settings"]["train_limit"] == 400

    # a run lacking a headline number is incomplete, so it reruns once the number exists
    metrics_path = out / "s1_pca" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    del metrics["test_mse"]
    metrics_path.write_text(json.dumps(metrics))
    assert not reproduce.is_complete(out, other)


def test_seeded_entry_reports_mean_and_sd_over_its_runs(mnist_dir, tmp_path, monkeypatch):
    seeded = reproduce._exp("pca_seeds", "s1_pca", [], "1. PCA as the simplest autoencoder", "three seeds of PCA",
                            [("test MSE", "test_mse", ".5f")], ["denoising.png"], seeds=(1, 2, 3))
    monkeypatch.setattr(reproduce, "EXPERIMENTS", (seeded,))
    monkeypatch.setattr(reproduce, "BY_NAME", {"pca_seeds": seeded})
    out = tmp_path / "reproduce"
    reproduce.main(["--quick", "--no-progress", "--no-html", "--out", str(out), "--data-dir", str(mnist_dir),
                    "--train-limit", "300", "--test-limit", "100"])
    runs_ = [json.loads((out / "pca_seeds" / f"seed{k}" / "metrics.json").read_text()) for k in (1, 2, 3)]
    assert [m["settings"]["seed"] for m in runs_] == [1, 2, 3]
    report = (out / "REPORT.md").read_text()
    assert f"| test MSE | {reproduce.summarize([m['test_mse'] for m in runs_], '.5f')} |" in report
    assert "(3 seeds:" in report and "`aejax run s1_pca --quick --train-limit 300 --test-limit 100  (seeds 1, 2, 3)`" in report
    assert "![pca_seeds: denoising](pca_seeds/seed1/denoising.png)" in report and "complete: 1 of 1" in report


@pytest.mark.parametrize("argv", [["--only", ""], ["--only", "s2_latent3"]])
def test_unknown_experiment_names_are_usage_errors(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_a_run_in_the_runners_process_drops_its_compiled_programs_even_when_it_fails(monkeypatch, tmp_path):
    cleared = []
    monkeypatch.setattr(reproduce.jax, "clear_caches", lambda: cleared.append(True))

    class Failing:
        @staticmethod
        def main(argv):
            raise ValueError("no data")

    monkeypatch.setattr(reproduce.importlib, "import_module", lambda name: Failing)
    unit = reproduce.units(reproduce.BY_NAME["s1_pca"], reproduce.parse_args(["--out", str(tmp_path)]))[0]
    entry = reproduce._run_here(unit, reproduce.parse_args(["--out", str(tmp_path)]))
    assert entry == {"status": "failed", "error": "ValueError: no data"} and cleared == [True]


def test_wall_time_split_sums_the_runs_and_gives_evaluations_share():
    runs = [{"data": 1.0, "compile": 10.0, "train": 80.0, "evaluation": 8.0, "figures": 1.0, "total": 100.0},
            {"data": 1.0, "compile": 10.0, "train": 60.0, "evaluation": 28.0, "figures": 1.0, "total": 100.0}]
    assert reproduce.wall_time_split(runs) == ("data 2 s, compile 20 s, train 140 s, evaluation 36 s, figures 2 s; "
                                               "evaluation and figures 19.0% of 200 s")
    assert reproduce.wall_time_split([runs[0], {"train": 5.0}]) is None  # a run with no total: no split
    assert reproduce.wall_time_split([]) is None
    with_classifier = reproduce.wall_time_split([{**runs[0], "classifier": 4.0}])
    assert "train 80 s, classifier 4 s, evaluation 8 s" in with_classifier
