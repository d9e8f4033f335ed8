"""Resumable training: checkpoints of the whole state, resuming bit for bit, non-finite losses."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import autoencoder, checkpoint
from aejax import train as train_lib

from support import random_dataset


def _model():
    return autoencoder.make_model(autoencoder.AEConfig(latent_dim=3, learning_rate=1e-3))


def _leaves(tree):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree.leaves(tree)]


def _assert_identical(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _train(model, dataset, checkpoints=None, epochs=2, seed=0, checkpoint_every=None, **kwargs):
    state = train_lib.create_train_state(model, jax.random.key(seed))
    checkpointing = None if checkpoints is None else train_lib.Checkpointing(checkpoints, checkpoint_every)
    return train_lib.train(model, state, dataset, epochs=epochs, batch_size=16, chunk_steps=4, reporting=train_lib.QUIET,
                           checkpointing=checkpointing, **kwargs)


def test_resuming_from_any_checkpoint_ends_bit_for_bit_where_the_uninterrupted_run_ends(tmp_path):
    """100 examples, batch 16, chunks of 4: per epoch a chunk, two single steps and a batch of 4.

    The uninterrupted run keeps a checkpoint after every chunk or step; resuming from
    each of them (mid-epoch ones included) must reproduce its final state exactly.
    """
    model, dataset = _model(), random_dataset(100)
    with checkpoint.TrainingCheckpoints(tmp_path / "full", max_to_keep=100) as full:
        reference, reference_history = _train(model, dataset, full, checkpoint_every=1)
        steps = full.all_steps()
    assert steps == [4, 5, 6, 7, 11, 12, 13, 14]  # after each chunk / step; 7 and 14 end the epochs
    assert int(reference.step) == 14
    for resume_at in (4, 6, 7, 12):
        folder = tmp_path / f"from{resume_at}"
        shutil.copytree(tmp_path / "full", folder)
        for later in steps:
            if later > resume_at:
                shutil.rmtree(folder / str(later))
        with checkpoint.TrainingCheckpoints(folder) as resumed_checkpoints:
            assert resumed_checkpoints.latest_step() == resume_at
            recorded = resumed_checkpoints.restore(reference, resume_at)[1]["seconds"]
            resumed, history = _train(model, dataset, resumed_checkpoints, seed=123)  # the seed is overridden
        _assert_identical(resumed, reference)
        assert history.epochs == reference_history.epochs
        # the time before the resume is the checkpoint's, and counts in the run's wall time
        assert history.resumed_seconds == recorded > 0 and history.seconds > recorded
    assert reference_history.resumed_seconds == 0.0


def test_checkpoint_holds_every_part_of_the_state_and_the_history(tmp_path):
    model, dataset = _model(), random_dataset(64)
    with checkpoint.TrainingCheckpoints(tmp_path) as checkpoints:
        state, history = _train(model, dataset, checkpoints, epochs=1)
        like = train_lib.create_train_state(model, jax.random.key(5))
        restored, progress = checkpoints.restore(like)
    _assert_identical(restored, state)  # params, batch_stats, the Adam state, the key and the step
    assert set(restored.opt_states) == {"autoencoder"} and int(restored.step) == 4
    assert progress["history"] == history.epochs and progress["epoch"] == 2 and progress["items_done"] == 0


def test_a_finished_run_is_not_trained_again_and_a_longer_one_continues(tmp_path):
    model, dataset = _model(), random_dataset(64)
    with checkpoint.TrainingCheckpoints(tmp_path / "a") as checkpoints:
        once, _ = _train(model, dataset, checkpoints, epochs=1)
        again, history = _train(model, dataset, checkpoints, epochs=1)
        _assert_identical(again, once)
        assert len(history.epochs) == 1
        longer, history = _train(model, dataset, checkpoints, epochs=2)
    straight, _ = _train(model, dataset, None, epochs=2)
    _assert_identical(longer, straight)
    assert len(history.epochs) == 2


def test_resuming_with_another_batch_size_is_refused(tmp_path):
    model, dataset = _model(), random_dataset(64)
    with checkpoint.TrainingCheckpoints(tmp_path) as checkpoints:
        _train(model, dataset, checkpoints, epochs=1)
        state = train_lib.create_train_state(model, jax.random.key(0))
        with pytest.raises(ValueError, match="batch_size"):
            train_lib.train(model, state, dataset, epochs=2, batch_size=32,
                            checkpointing=train_lib.Checkpointing(checkpoints), reporting=train_lib.QUIET)


def _exploding_model(bad_from_step: int) -> train_lib.Model:
    """A one-parameter model whose loss turns NaN from training step ``bad_from_step`` on."""

    def loss_fn(params, batch_stats, batch, key, step):
        images = batch["image"].astype(jnp.float32) / 255.0
        loss = jnp.mean(jnp.square(params["scale"]["w"] * images - 0.5))
        broken = jnp.where(step >= bad_from_step, jnp.nan, 0.0)
        return train_lib.LossOutput(loss + broken, batch_stats, {"fit": loss, "broken_term": broken})

    phase = train_lib.Phase("fit", loss_fn, optax.sgd(0.1), ("scale",))
    return train_lib.Model(init=lambda key: ({"scale": {"w": jnp.ones(())}}, {"scale": {}}), phases=(phase,),
                           encode=lambda *a, **k: None, decode=lambda *a, **k: None)


@pytest.mark.parametrize("chunk_steps", [1, 4])
def test_nonfinite_loss_stops_naming_the_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path, chunk_steps):
    model, dataset = _exploding_model(bad_from_step=9), random_dataset(64)  # 4 steps per epoch: step 9 is in epoch 3
    state = train_lib.create_train_state(model, jax.random.key(0))
    with checkpoint.TrainingCheckpoints(tmp_path) as checkpoints:
        with pytest.raises(train_lib.NonFiniteLossError) as error:
            train_lib.train(model, state, dataset, epochs=5, batch_size=16, chunk_steps=chunk_steps, reporting=train_lib.QUIET,
                            checkpointing=train_lib.Checkpointing(checkpoints, every=2))
        message = str(error.value)
        assert "step 9 (epoch 3)" in message and "broken_term=nan" in message and "loss=nan" in message
        assert "fit=" not in message  # the finite term is not blamed
        last = 8  # chunks of 4 end at steps 4 and 8; single steps: every 2 steps
        assert f"last good checkpoint (step {last})" in message
        assert checkpoints.latest_step() == last
        restored, _ = checkpoints.restore(train_lib.create_train_state(model, jax.random.key(0)))
    assert int(restored.step) == last and np.isfinite(float(restored.params["scale"]["w"]))
    assert "\n" not in message


def test_nonfinite_skip_drops_those_updates_and_counts_them():
    model, dataset = _exploding_model(bad_from_step=6), random_dataset(64)
    reference = train_lib.create_train_state(model, jax.random.key(0))
    reference, _ = train_lib.train(model, reference, dataset, epochs=1, batch_size=16, chunk_steps=4, reporting=train_lib.QUIET)
    reference, _ = train_lib.train(model, reference, dataset, epochs=1, batch_size=16, chunk_steps=1, reporting=train_lib.QUIET, nonfinite="skip")  # steps 4, 5 good, 6, 7 dropped
    state = train_lib.create_train_state(model, jax.random.key(0))
    state, history = train_lib.train(model, state, dataset, epochs=3, batch_size=16, chunk_steps=4, reporting=train_lib.QUIET, nonfinite="skip")
    assert int(state.step) == 12
    assert [e[train_lib.SKIPPED_METRIC] for e in history.epochs] == [0, 2, 4]
    assert np.isfinite(history.epochs[1]["fit"]) and np.isnan(history.epochs[2]["fit"])  # no kept step: no mean
    assert float(state.params["scale"]["w"]) == float(reference.params["scale"]["w"]) != 1.0


# --- the experiment scripts: killed mid-run, resumed by the same command --------------------------

# single steps (one compiled program: the test pays three compilations), checkpoints every 4 steps
RUN = ["experiments.s4_interpolation", "--no-progress", "--train-limit", "640", "--test-limit", "64", "--gif-frames", "4",
       "--epochs", "3", "--batch-size", "32", "--chunk-steps", "1", "--checkpoint-every", "4", "--latent-dim", "4"]


def _command(mnist_dir, out):
    return [sys.executable, "-m", *RUN, "--data-dir", str(mnist_dir), "--out", str(out)]


def _params(out):
    params, batch_stats = autoencoder.make_model(autoencoder.AEConfig(latent_dim=4)).init(jax.random.key(0))
    return checkpoint.restore(out / "checkpoint", {"params": params, "batch_stats": batch_stats})


@pytest.mark.slow
def test_killed_experiment_resumes_with_the_same_command_and_ends_bit_for_bit(mnist_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("an earlier complete result")
    staging = tmp_path / ".run.partial" / "train_state"
    child = subprocess.Popen(_command(mnist_dir, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (staging.is_dir() and [p for p in staging.iterdir() if p.name.isdigit()]):  # the first checkpoint
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    saved = sorted(int(p.name) for p in staging.iterdir() if p.name.isdigit())
    assert saved and saved[-1] < 60  # 3 epochs of 20 steps: killed before the end
    assert (out / "metrics.json").read_text() == "an earlier complete result"  # untouched by the killed run

    resumed = subprocess.run(_command(mnist_dir, out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the interrupted run" in resumed.stderr
    straight = subprocess.run(_command(mnist_dir, tmp_path / "straight"), capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    _assert_identical(_params(out), _params(tmp_path / "straight"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["train_history"]) == 3
    seconds = metrics["seconds"]  # the killed process's training counts in the total as in the training time
    assert seconds["total"] >= seconds["train"] + seconds["compile"] + seconds["evaluation"]
    assert metrics["train_history"] == json.loads((tmp_path / "straight" / "metrics.json").read_text())["train_history"]
    assert sorted(os.listdir(tmp_path)) == ["run", "straight"]  # no staging folders left


@pytest.mark.slow
def test_a_partial_run_with_other_flags_is_not_resumed(mnist_dir, tmp_path):
    out = tmp_path / "run"
    staging = tmp_path / ".run.partial"
    (staging / "train_state" / "4").mkdir(parents=True)
    (staging / "run_settings.json").write_text(json.dumps({"epochs": 99}))
    result = subprocess.run(_command(mnist_dir, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "other settings" in result.stderr and "--restart" in result.stderr and "Traceback" not in result.stderr
    assert (staging / "train_state" / "4").is_dir()  # the partial run is kept for its own command
