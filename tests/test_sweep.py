"""aejax.sweep: specs, scores, winners and records; a selection run reads no test file."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from aejax import data, runs, sweep


def _spec(**changes) -> sweep.SweepSpec:
    values = dict(experiment="s2_conv_ae", preset="recommended", metric="validation_mse", lower_is_better=True,
                  grid={"latent_dim": (2, 8), "epochs": (1, 3)}, seeds=(42, 43))
    values.update(changes)
    return sweep.SweepSpec(**values)


@pytest.fixture(scope="module")
def train_only(tmp_path_factory) -> pathlib.Path:
    """A folder holding only training files (600 MNIST images): reading a test file there is an error."""
    mnist = data.load_mnist()["train"]
    folder = tmp_path_factory.mktemp("train_only")
    data.write_idx(folder / "train-images-idx3-ubyte", mnist.images[:600])
    data.write_idx(folder / "train-labels-idx1-ubyte", mnist.labels[:600])
    return folder


# ------------------------------------------------------------------ specs


def test_candidates_are_the_grid_product_with_fixed_values_and_the_last_field_fastest():
    spec = _spec(fixed={"batch_size": 32})
    assert spec.candidates() == [{"batch_size": 32, "latent_dim": 2, "epochs": 1},
                                 {"batch_size": 32, "latent_dim": 2, "epochs": 3},
                                 {"batch_size": 32, "latent_dim": 8, "epochs": 1},
                                 {"batch_size": 32, "latent_dim": 8, "epochs": 3}]
    assert spec.name == "s2_conv_ae__recommended"


@pytest.mark.parametrize("changes, message", [
    ({"grid": {"no_such_field": (1,)}}, "has no setting 'no_such_field'"),
    ({"grid": {"validation": (True,)}}, "sets validation itself"),
    ({"grid": {"latent_dim": ()}}, "has no values"),
    ({"metric": "test_mse"}, "names the test split"),
    ({"curve": "train_history.test_loss"}, "names the test split"),
    ({"preset": "nonexistent"}, "has no preset 'nonexistent'"),
    ({"seeds": ()}, "at least one seed"),
    ({"seeds": (1, 1)}, "seeds repeat"),
    ({"fixed": {"latent_dim": 4}}, "set twice"),
    ({"seed_flags": ("epochs",)}, "set twice"),
    ({"metric": None}, "a metric or evaluations"),
    ({"evaluations": {"running": "validation_mse"}}, "a metric or evaluations"),
    ({"metric": None, "evaluations": {"running": "test_mse"}}, "names the test split"),
])
def test_check_spec_refuses_what_cannot_run_in_one_line(changes, message):
    with pytest.raises(ValueError, match=message) as error:
        sweep.check_spec(_spec(**changes))
    assert "\n" not in str(error.value)


def test_run_argv_is_a_selection_run_under_the_validation_protocol():
    spec = _spec(seed_flags=("seed",), run_flags=("--quick",))
    argv = sweep.run_argv(spec, {"latent_dim": 8, "validation": True, "learning_rate": 1e-3}, 43)
    assert argv[:4] == ["--preset", "recommended", "--validation", "--selection"]
    assert argv[4:] == ["--seed", "43", "--latent-dim", "8", "--validation", "--learning-rate", "0.001", "--quick"]
    assert sweep.flag_words("binarize", False) == ["--no-binarize"]
    with pytest.raises(ValueError, match="None"):
        sweep.flag_words("checkpoint_every", None)


def test_typed_settings_read_values_as_the_experiment_parser_does_and_refuse_bad_ones():
    spec = _spec(grid={"learning_rate": ("1e-3",), "latent_dim": ("8",)})
    assert sweep.typed_settings(spec, {"learning_rate": "1e-3", "latent_dim": "8"}) == {"learning_rate": 0.001,
                                                                                       "latent_dim": 8}
    with pytest.raises(SystemExit) as exit_:
        sweep.typed_settings(spec, {"latent_dim": "eight"})
    assert exit_.value.code == 2


def test_read_spec_reads_toml_and_names_what_is_wrong(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('experiment = "s2_conv_ae"\npreset = "recommended"\nmetric = "validation_mse"\n'
                    'lower_is_better = true\nseeds = [1, 2]\nnote = "why"\n[grid]\nlatent_dim = [2, 24]\n'
                    '[fixed]\nepochs = 3\n')
    spec = sweep.read_spec(path)
    assert spec.grid == {"latent_dim": (2, 24)} and spec.fixed == {"epochs": 3} and spec.seeds == (1, 2)
    path.write_text('experiment = "s2_conv_ae"\nbogus = 1\n')
    with pytest.raises(ValueError, match="unknown key.*bogus"):
        sweep.read_spec(path)
    path.write_text('experiment = "s2_conv_ae"\n')
    with pytest.raises(ValueError, match="missing grid, lower_is_better, preset"):
        sweep.read_spec(path)
    path.write_text("experiment = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        sweep.read_spec(path)
    with pytest.raises(ValueError, match="not found"):
        sweep.read_spec(tmp_path / "absent.toml")


def test_command_line_errors_are_one_line_with_exit_2(capsys):
    for argv in (["s2_conv_ae", "--preset", "recommended", "--grid", "latent_dim=2"],  # no metric / direction
                 ["s2_conv_ae", "--preset", "recommended", "--grid", "latent_dim", "--metric", "m",
                  "--lower-is-better"],
                 ["--spec", "x.toml", "--metric", "m"],
                 ["s2_conv_ae", "--preset", "recommended", "--grid", "latent_dim=two", "--metric", "validation_mse",
                  "--lower-is-better", "--list"]):
        with pytest.raises(SystemExit) as exit_:
            sweep.main(argv)
        assert exit_.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_portable_command_leaves_out_where_the_sweep_ran():
    argv = ["s2", "--workdir", "/scratch", "--record=r.json", "--jobs", "2", "--data-dir", "d", "--metric", "m"]
    assert sweep.portable(argv) == ["s2", "--metric", "m"]


# ------------------------------------------------------------------ scores and winners


def test_lookup_follows_dotted_paths_and_maps_over_lists():
    metrics = {"a": {"b": 0.5}, "history": [{"loss": 3.0}, {"loss": 2.0}]}
    assert sweep.lookup(metrics, "a.b") == 0.5
    assert sweep.lookup(metrics, "history.loss") == [3.0, 2.0]
    with pytest.raises(ValueError, match="'a.c': a has no 'c' \\(holds \\['b'\\]\\)"):
        sweep.lookup(metrics, "a.c")


def test_score_of_needs_a_selection_run_and_a_number():
    spec = _spec(curve="history.loss")
    metrics = {"protocol": {"selection": True}, "validation_mse": 0.25, "history": [{"loss": 3}, {"loss": 2}],
               "seconds": {"total": 9.0}}
    assert sweep.score_of(spec, metrics, "validation_mse") == {"score": 0.25, "seconds": 9.0, "curve": [3.0, 2.0]}
    with pytest.raises(ValueError, match="not a selection run"):
        sweep.score_of(spec, {**metrics, "protocol": {"validation": True}}, "validation_mse")
    with pytest.raises(ValueError, match="not a number"):
        sweep.score_of(spec, {**metrics, "validation_mse": [0.1]}, "validation_mse")


def _candidates(means_by_seed: list[list[float]], seeds=(42, 43)) -> list[dict]:
    return [{"settings": {"latent_dim": d, "epochs": e}, "runs": {str(s): {"score": v, "curve": [v + 1, v]}
                                                                 for s, v in zip(seeds, values)}}
            for (d, e), values in zip([(2, 1), (2, 3), (8, 1), (8, 3)], means_by_seed)]


@pytest.mark.parametrize("lower, winner", [(True, 2), (False, 1)])
def test_summarize_picks_the_best_mean_in_the_metrics_direction(lower, winner):
    spec = _spec(lower_is_better=lower)
    candidates = _candidates([[0.5, 0.7], [0.9, 0.9], [0.1, 0.3], [0.4, 0.4]])
    summary = sweep.summarize(spec, candidates, {"latent_dim": [2, 8], "epochs": [1, 3]})
    assert summary["complete"] and summary["winner"] == winner
    assert candidates[0]["mean"] == pytest.approx(0.6) and candidates[0]["sd"] == pytest.approx(np.std([.5, .7], ddof=1))
    # the winner sits on the grid's edge in both fields; its curve falls to its last epoch
    assert summary["winner_at_grid_edge"] == ["latent_dim", "epochs"]
    assert summary["winner_curve_best_at_last_epoch"] is lower


def test_summarize_names_no_winner_until_every_run_is_in():
    candidates = _candidates([[0.5, 0.7], [0.9, 0.9], [0.1, 0.3], [0.4, 0.4]])
    del candidates[3]["runs"]["43"]
    summary = sweep.summarize(_spec(), candidates, {"latent_dim": [2, 8], "epochs": [1, 3]})
    assert not summary["complete"] and summary["winner"] is None
    assert candidates[3]["mean"] == 0.4 and candidates[3]["sd"] is None


def test_merge_previous_keeps_runs_of_the_same_candidates_and_metric_only():
    spec = _spec()
    settings = [{"latent_dim": 2, "epochs": 1}, {"latent_dim": 8, "epochs": 1}]
    previous = sweep.new_record(spec, settings, "")
    previous["candidates"][1]["runs"] = {"42": {"score": 0.1}, "7": {"score": 0.2}}
    record = sweep.new_record(spec, list(reversed(settings)), "")
    sweep.merge_previous(record, previous)
    assert record["candidates"][0]["runs"] == {"42": {"score": 0.1}}  # seed 7 is not one of this sweep's
    assert record["candidates"][1]["runs"] == {}
    other = sweep.new_record(_spec(metric="validation_bce"), settings, "")
    sweep.merge_previous(other, previous)
    assert all(c["runs"] == {} for c in other["candidates"])


# ------------------------------------------------------------------ selection runs


def test_selection_names_rename_the_test_split_and_keep_what_exists():
    metrics = {"test_mse": 1.0, "validation_prior_match": 2.0, "prior_match": {"test_size": 5, "latest": 3},
               "validation_error": 0.1, "test_error": 0.2, "history": [{"test_loss": 1}],
               "protocol": {"split_sizes": {"test": 1}}}
    renamed = runs.selection_names(metrics)
    assert renamed == {"validation_mse": 1.0, "validation_prior_match": 2.0,
                       "prior_match": {"validation_size": 5, "latest": 3}, "validation_error": 0.1,
                       "history": [{"validation_loss": 1}], "protocol": {"split_sizes": {"test": 1}}}


def test_a_selection_run_reads_no_test_file_and_scores_the_validation_split(train_only):
    options = runs.RunOptions(data_dir=train_only, selection=True)
    splits = runs.load_splits(options, validation=True)
    assert sorted(splits) == ["test", "train", "validation"]
    assert splits["test"] is splits["validation"] and len(splits["validation"].labels) == 100
    assert len(splits["train"].labels) == 500
    with pytest.raises(data.DataError):  # the folder has no test file: the plain protocols fail to load it
        runs.load_splits(runs.RunOptions(data_dir=train_only), validation=True)
    with pytest.raises(runs.UsageError, match="needs the validation protocol"):
        runs.load_splits(options, validation=False)


def _keys(tree) -> list[str]:
    if isinstance(tree, dict):
        return [k for key, value in tree.items() for k in [key, *_keys(value)]]
    if isinstance(tree, list):
        return [k for item in tree for k in _keys(item)]
    return []


@pytest.mark.slow
def test_a_sweep_runs_its_candidates_without_the_test_set_and_resumes_from_its_record(train_only, tmp_path, capsys):
    record_path = tmp_path / "selections" / "s2_conv_ae__recommended.json"
    argv = ["s2_conv_ae", "--preset", "recommended", "--grid", "latent_dim=2,16", "--seeds", "7",
            "--metric", "validation_mse", "--lower-is-better", "--curve", "train_history.loss",
            "--workdir", str(tmp_path / "runs"), "--record", str(record_path), "--data-dir", str(train_only),
            "--", "--quick", "--train-limit", "256", "--test-limit", "128"]
    assert sweep.main(argv) == 0
    record = json.loads(record_path.read_text())
    assert record["complete"] and record["grid"] == {"latent_dim": [2, 16]}
    means = [c["mean"] for c in record["candidates"]]
    assert record["winner"] == int(np.argmin(means))
    assert "--data-dir" not in record["command"] and "--workdir" not in record["command"]
    # no number of the record or of a candidate's metrics is named by the test split
    for folder in (tmp_path / "runs").glob("s2_conv_ae__recommended/*/seed7"):
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["protocol"]["selection"] and "test" not in metrics["protocol"]["split_sizes"]
        assert metrics["protocol"]["test_split"] == "not read"
        assert not [k for k in _keys({k: v for k, v in metrics.items() if k not in ("settings", "protocol")})
                    if runs.TEST_WORD.search(k)]
        assert metrics["validation_mse"] == pytest.approx(
            next(c for c in record["candidates"] if c["settings"]["latent_dim"] == metrics["settings"]["latent_dim"]
                 )["runs"]["7"]["score"])
    assert not [k for k in _keys(record) if runs.TEST_WORD.search(k)]
    # started again without its run folders, the sweep reads its record and runs nothing
    import shutil
    shutil.rmtree(tmp_path / "runs")
    capsys.readouterr()
    assert sweep.main(argv) == 0
    assert "candidate" not in capsys.readouterr().out
    assert json.loads(record_path.read_text())["candidates"] == record["candidates"]


def test_each_run_is_scored_every_way_of_evaluating_it_and_the_way_is_part_of_the_candidate(tmp_path, monkeypatch):
    spec = _spec(metric=None, evaluations={"running": "leak.running", "recomputed": "leak.recomputed"},
                 grid={"latent_dim": (2, 8)}, seeds=(42, 43))
    started = []

    def fake_run(spec, settings, seed, folder, data_dir, needs=()):
        started.append((settings["latent_dim"], seed))
        d = settings["latent_dim"]
        return {"protocol": {"selection": True}, "leak": {"running": 0.5 - d / 100 + seed / 1000,
                                                          "recomputed": 0.2 + d / 100}}

    monkeypatch.setattr(sweep, "run_candidate", fake_run)
    record = sweep.sweep(spec, tmp_path / "record.json", tmp_path, echo=False)
    assert sorted(started) == [(2, 42), (2, 43), (8, 42), (8, 43)]  # one run per settings and seed
    assert [(c["settings"]["latent_dim"], c["evaluation"]) for c in record["candidates"]] == [
        (2, "running"), (2, "recomputed"), (8, "running"), (8, "recomputed")]
    assert record["complete"] and record["winner"] == 1  # latent 2, recomputed: 0.22
    assert record["candidates"][2]["runs"]["43"]["score"] == pytest.approx(0.5 - 0.08 + 0.043)
    assert json.loads((tmp_path / "record.json").read_text())["winner"] == 1
    started.clear()
    sweep.sweep(spec, tmp_path / "record.json", tmp_path, echo=False)
    assert started == []  # everything is in the record


def test_a_run_folder_without_a_newer_way_of_evaluating_is_run_again(tmp_path, monkeypatch):
    """A finished run is read back, not rerun, while its metrics.json holds what the candidates read;
    one written before a way of evaluating was added runs again, its new metrics replacing the old."""
    calls = []

    def fake_call(argv, stdout, stderr):
        calls.append(argv)
        out = pathlib.Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"leak": {"running": 0.3, "recomputed": 0.2}}))
        return 0

    monkeypatch.setattr(sweep.subprocess, "call", fake_call)
    folder = tmp_path / "run" / "seed42"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"leak": {"running": 0.4}}))
    spec, settings = _spec(), {"latent_dim": 2, "epochs": 1}
    assert sweep.run_candidate(spec, settings, 42, folder, None, ["leak.running"]) == {"leak": {"running": 0.4}}
    assert calls == []
    result = sweep.run_candidate(spec, settings, 42, folder, None, ["leak.running", "leak.recomputed"])
    assert result == {"leak": {"running": 0.3, "recomputed": 0.2}} and len(calls) == 1
    assert json.loads((folder / "metrics.json").read_text()) == result
