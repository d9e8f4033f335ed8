"""The one-command reproduction: seeds as runs of their own, completeness from what a run
recorded, results that travel (no host, no absolute path), the runner's options."""

import json
import pathlib
import re
import shutil

import pytest

from aejax import runs
from aejax.experiments import reproduce
from aejax.report_entries import ENTRIES, Entry, Headline

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


def test_every_entry_parses_as_its_experiments_command_line():
    options = reproduce.parse_args(["--out", "runs/x"])
    for entry in ENTRIES:
        # a preset or flag the experiment lacks would fail here
        for unit in reproduce.units(entry, options):
            assert reproduce.expected_settings(unit, options.out)["quick"] is False


def test_seeds_are_runs_of_their_own_and_label_seeds_follow_them():
    options = reproduce.parse_args(["--out", "runs/x", "--quick"])
    ssl = reproduce.units(reproduce.BY_NAME["s10_ssl_100"], options)
    assert [u.folder for u in ssl] == ["s10_ssl_100/seed42", "s10_ssl_100/seed43", "s10_ssl_100/seed44"]
    assert [u.argv[u.argv.index("--label-seed") + 1] for u in ssl] == ["0", "1", "2"]
    assert all("--quick" in u.argv and "--validation" in u.argv for u in ssl)
    assert ssl[0].argv[:4] == ("--preset", "lecture", "--labels", "100")  # the preset first, as the report shows
    single = reproduce.units(reproduce.BY_NAME["s1_pca"], options)
    assert [u.folder for u in single] == ["s1_pca"] and "--label-seed" not in single[0].argv


def test_the_runners_options_keep_their_names_and_defaults(tmp_path):
    defaults = reproduce.parse_args(["--out", str(tmp_path)])
    assert (defaults.jobs, defaults.seed, defaults.html, defaults.progress, defaults.names) == (1, 42, True, True, None)
    given = reproduce.parse_args(["--out", str(tmp_path), "--quick", "--only", "s1_pca, s7_cvae", "--force",
                                  "--report-only", "--no-html", "--no-progress", "--jobs", "3", "--train-limit", "9",
                                  "--test-limit", "8", "--data-dir", "d", "--list"])
    assert given.names == ("s1_pca", "s7_cvae") and given.jobs == 3 and not given.html and not given.progress
    assert (given.quick, given.force, given.report_only, given.list) == (True, True, True, True)
    assert (given.train_limit, given.test_limit, given.data_dir) == (9, 8, pathlib.Path("d"))


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--jobs", "two"], ["--train-limit", "-1"], ["--test-limit", "x"]])
def test_counts_must_be_positive_integers_a_one_line_usage_error(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        reproduce.parse_args([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "expected a positive integer" in err and err.count("\n") == 1 and "usage:" not in err


@pytest.mark.parametrize("argv", [["--only", ""], ["--only", "s2_latent3"]])
def test_unknown_experiment_names_are_usage_errors(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_an_unwritable_out_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        reproduce.parse_args(["--out", str(tmp_path / "file")])
    assert exit_info.value.code == 2 and "not writable" in capsys.readouterr().err


def test_write_metrics_records_no_host_and_no_absolute_path(tmp_path):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Config:
        classifier: pathlib.Path = tmp_path / "reproduce" / "classifier"
        latent_dim: int = 2

    out = tmp_path / "reproduce" / "entry" / "seed42"
    out.mkdir(parents=True)
    run = runs.Run(Config(), runs.RunOptions(out=out, data_dir=tmp_path / "mnist"), "lecture")
    text = run.write_metrics(out, {"test_mse": 0.5}).read_text()
    metrics = json.loads(text)
    assert "host" not in metrics and str(tmp_path) not in text
    assert metrics["settings"]["classifier"] == "../../classifier"  # relative to the run folder
    assert "out" not in metrics["settings"] and "data_dir" not in metrics["settings"]
    assert metrics["settings"]["latent_dim"] == 2 and metrics["test_mse"] == 0.5


def test_a_complete_run_stays_complete_when_its_results_move(tmp_path):
    unit_of = {}
    for name in ("first", "moved"):
        options = reproduce.parse_args(["--out", str(tmp_path / name)])
        unit_of[name] = reproduce.units(reproduce.BY_NAME["s7_cvae"], options)[0]
    unit = unit_of["first"]
    assert unit.argv[unit.argv.index("--classifier") + 1] == str(tmp_path / "first" / "classifier")
    settings = reproduce.expected_settings(unit, tmp_path / "first")
    assert settings["classifier"] == "../../classifier"
    metrics = {"settings": settings}
    for row in unit.entry.headline:  # every headline number present
        node = metrics
        *parents, leaf = row.key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = 0.5
    (tmp_path / "first" / unit.folder).mkdir(parents=True)
    (tmp_path / "first" / unit.folder / "metrics.json").write_text(json.dumps(metrics))
    assert reproduce.is_complete(tmp_path / "first", unit)
    shutil.move(tmp_path / "first", tmp_path / "moved")
    assert reproduce.is_complete(tmp_path / "moved", unit_of["moved"])
    metrics["settings"]["classifier"] = "../../other_classifier"
    (tmp_path / "moved" / unit.folder / "metrics.json").write_text(json.dumps(metrics))
    assert not reproduce.is_complete(tmp_path / "moved", unit_of["moved"])


def test_the_committed_results_are_portable_and_complete(monkeypatch):
    monkeypatch.chdir(REPO)  # the committed runs ran from the repository root, as the docs' commands do
    for path in RESULTS.rglob("metrics.json"):
        text = path.read_text()
        assert '"host"' not in text and not re.search(r'"(/|[A-Za-z]:\\)', text), path
    options = reproduce.parse_args(["--out", "docs/results", "--report-only"])
    incomplete = [u.folder for e in ENTRIES for u in reproduce.units(e, options)
                  if not reproduce.is_complete(options.out, u)]
    assert incomplete == []


def test_a_run_in_the_runners_process_drops_its_compiled_programs_even_when_it_fails(monkeypatch, tmp_path):
    cleared = []
    monkeypatch.setattr(reproduce.jax, "clear_caches", lambda: cleared.append(True))

    class Failing:
        @staticmethod
        def main(argv):
            raise ValueError("no data")

    monkeypatch.setattr(reproduce.importlib, "import_module", lambda name: Failing)
    options = reproduce.parse_args(["--out", str(tmp_path)])
    unit = reproduce.units(reproduce.BY_NAME["s1_pca"], options)[0]
    assert reproduce._run_here(unit, options) == {"status": "failed", "error": "ValueError: no data"}
    assert cleared == [True]


@pytest.mark.slow
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
    assert "host" not in pca and str(tmp_path) not in (out / "s1_pca" / "metrics.json").read_text()
    assert f"| components kept | {pca['pca_components']} |" in report
    assert f"| test MSE | {pca['test_mse']:.4f} |" in report
    assert f"| conditional AE test MSE | {toy['conditional_test_mse']:.4f} |" in report
    assert "![s1_pca: denoising](s1_pca/denoising.png)" in report
    assert "**failed**: ValueError" in report
    assert report.count("**not run**") == len(ENTRIES) - 3
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_changed_settings_rerun(mnist_dir, tmp_path):
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


@pytest.mark.slow
def test_seeded_entry_reports_mean_and_sd_over_its_runs(mnist_dir, tmp_path, monkeypatch):
    seeded = Entry(name="pca_seeds", module="s1_pca", section="1. PCA as the simplest autoencoder",
                   claim="three seeds of PCA", headline=(Headline("test MSE", "test_mse", ".5f"),),
                   figures=("denoising.png",), seeds=(1, 2, 3))
    monkeypatch.setattr(reproduce, "ENTRIES", (seeded,))
    monkeypatch.setattr(reproduce, "BY_NAME", {"pca_seeds": seeded})
    out = tmp_path / "reproduce"
    reproduce.main(["--quick", "--no-progress", "--no-html", "--out", str(out), "--data-dir", str(mnist_dir),
                    "--train-limit", "300", "--test-limit", "100"])
    runs_ = [json.loads((out / "pca_seeds" / f"seed{k}" / "metrics.json").read_text()) for k in (1, 2, 3)]
    assert [m["settings"]["seed"] for m in runs_] == [1, 2, 3]
    report = (out / "REPORT.md").read_text()
    assert f"| test MSE | {reproduce.report.summarize([m['test_mse'] for m in runs_], '.5f')} |" in report
    assert "(3 seeds:" in report
    assert "`aejax run s1_pca --quick --train-limit 300 --test-limit 100  (seeds 1, 2, 3)`" in report
    assert "![pca_seeds: denoising](pca_seeds/seed1/denoising.png)" in report and "complete: 1 of 1" in report
