"""The generic loop: phases, key discipline, reproducibility, datasets of any keys, checkpoints."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import autoencoder, checkpoint, data, optimizers
from aejax import train as train_lib

from support import max_abs_diff, random_dataset


def _small_model(**kwargs):
    return autoencoder.make_model(autoencoder.AEConfig(latent_dim=4, **kwargs))


def test_same_seed_gives_identical_params_and_another_seed_differs():
    model, dataset = _small_model(), random_dataset(96)
    runs = []
    for seed in (3, 3, 4):
        state = train_lib.create_train_state(model, jax.random.key(seed))
        state, history = train_lib.train(model, state, dataset, epochs=1, batch_size=32, reporting=train_lib.QUIET)
        runs.append(state)
    chex.assert_trees_all_equal(runs[0].params, runs[1].params)
    chex.assert_trees_all_equal(runs[0].batch_stats, runs[1].batch_stats)
    assert max_abs_diff(runs[0].params, runs[2].params) > 1e-4
    assert int(runs[0].step) == 3  # 96 / 32 batches


def test_compile_time_is_counted_on_the_first_call_only():
    """The step program compiles in the first ``train`` call; a second call with the same model
    and shapes reuses it, so it records no compile time."""
    model, dataset = _small_model(), random_dataset(64)
    first = train_lib.train(model, train_lib.create_train_state(model, jax.random.key(0)), dataset,
                            epochs=1, batch_size=32, reporting=train_lib.QUIET)[1]
    second = train_lib.train(model, train_lib.create_train_state(model, jax.random.key(1)), dataset,
                             epochs=1, batch_size=32, reporting=train_lib.QUIET)[1]
    assert 0.0 < first.compile_seconds < first.seconds
    assert second.compile_seconds == 0.0


def test_epoch_log_line_shows_what_on_epoch_end_measured(capsys):
    model, dataset = _small_model(), random_dataset(64)
    train_lib.train(model, train_lib.create_train_state(model, jax.random.key(0)), dataset, epochs=2, batch_size=32,
                    reporting=train_lib.Reporting(progress=False),
                    callbacks=train_lib.Callbacks(on_epoch_end=lambda epoch, state, means: {"validation_error": epoch / 8}))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    assert "validation_error 0.12500" in lines[0] and "validation_error 0.25000" in lines[1]


def test_train_step_updates_params_stats_and_key_and_lowers_loss():
    model, dataset = _small_model(), random_dataset(64)
    state = train_lib.create_train_state(model, jax.random.key(0))
    step = train_lib.make_train_step(model.phases)
    before = jax.tree.map(jnp.copy, state)
    indices = jnp.arange(32)
    losses = []
    for _ in range(8):
        state, metrics = step(state, dataset, indices)
        losses.append(float(metrics["loss"]))
    chex.assert_shape(metrics["loss"], ())
    assert losses[-1] < losses[0]
    assert max_abs_diff(before.params, state.params) > 0
    assert max_abs_diff(before.batch_stats, state.batch_stats) > 0
    assert not np.array_equal(jax.random.key_data(before.key), jax.random.key_data(state.key))
    assert int(state.step) == 8


def test_phase_updates_only_its_trainable_modules():
    """A phase naming only the decoder leaves the encoder's params untouched."""
    model = _small_model()
    decoder_only = model.phases[0]._replace(name="decoder_only", trainable=("decoder",))
    model = model._replace(phases=(decoder_only,))
    state = train_lib.create_train_state(model, jax.random.key(0))
    before = jax.tree.map(jnp.copy, state.params)
    state, _ = train_lib.make_train_step(model.phases)(state, random_dataset(32), jnp.arange(32))
    chex.assert_trees_all_equal(before["encoder"], state.params["encoder"])
    assert max_abs_diff(before["decoder"], state.params["decoder"]) > 0


def test_several_phases_run_in_order_with_prefixed_metrics():
    model = _small_model()
    first = model.phases[0]._replace(name="first")
    second = model.phases[0]._replace(name="second", optimizer=optax.sgd(0.0), trainable=("encoder",))
    model = model._replace(phases=(first, second))
    state = train_lib.create_train_state(model, jax.random.key(0))
    assert set(state.opt_states) == {"first", "second"}
    state, metrics = train_lib.make_train_step(model.phases)(state, random_dataset(32), jnp.arange(32))
    assert {"first/loss", "first/bce", "second/loss", "second/bce"} <= set(metrics)
    # the second phase sees the first phase's update, so its loss is lower
    assert float(metrics["second/loss"]) < float(metrics["first/loss"])


def test_duplicate_phase_names_are_rejected():
    model = _small_model()
    model = model._replace(phases=(model.phases[0], model.phases[0]))
    with pytest.raises(ValueError, match="unique"):
        train_lib.create_train_state(model, jax.random.key(0))


def test_torch_adam_weight_decay_is_coupled_l2():
    """One step from zero Adam state: L2 is added to the gradient before normalisation."""
    params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.0])
    opt = optimizers.torch_adam(0.1, weight_decay=0.5)
    updates, _ = opt.update(grads, opt.init(params), params)
    g = grads + 0.5 * params  # coupled: [1.0, -1.0]
    expected = -0.1 * g / (jnp.abs(g) + 1e-8)  # first Adam step is lr * sign
    chex.assert_trees_all_close(updates, expected, atol=1e-6)
    # AdamW would give the second parameter a pure decay of -lr * wd * p = 0.1, not 0.1 * sign
    adamw, _ = optax.adamw(0.1, weight_decay=0.5).update(grads, optax.adamw(0.1, weight_decay=0.5).init(params), params)
    assert not np.allclose(adamw, expected)


@pytest.mark.slow
def test_torch_adam_with_a_schedule_matches_torch_lambda_lr():
    """A schedule of the update count gives torch's Adam under LambdaLR (stepped after each update)."""
    torch = pytest.importorskip("torch")

    rng = np.random.default_rng(0)
    start, grads = rng.normal(size=5).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    schedule = optax.cosine_decay_schedule(0.1, 4, alpha=0.01)
    opt = optimizers.torch_adam(schedule, weight_decay=0.01)
    params = jnp.asarray(start)
    state = opt.init(params)
    weight = torch.nn.Parameter(torch.from_numpy(start.copy()))
    torch_opt = torch.optim.Adam([weight], lr=0.1, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(torch_opt, lambda count: float(schedule(count)) / 0.1)
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        weight.grad = torch.from_numpy(g.copy())
        torch_opt.step()
        scheduler.step()
    np.testing.assert_allclose(np.asarray(params), weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    constant = optimizers.torch_adam(0.1, weight_decay=0.01)  # the float form: no schedule counter in its state
    assert len(jax.tree.leaves(constant.init(params))) < len(jax.tree.leaves(state))


def test_denoising_variant_feeds_noise_and_targets_clean():
    dataset = random_dataset(32)
    batch = data.gather_batch(dataset, jnp.arange(32))
    plain = _small_model()
    noisy = _small_model(input_noise_std=0.3)
    params, stats = plain.init(jax.random.key(0))
    key = jax.random.key(1)
    plain_loss, *_ = plain.phases[0].loss_fn(params, stats, batch, key, 0)
    noisy_loss, *_ = noisy.phases[0].loss_fn(params, stats, batch, key, 0)
    noisy_again, *_ = noisy.phases[0].loss_fn(params, stats, batch, key, 0)
    assert float(plain_loss) != float(noisy_loss)
    assert float(noisy_loss) == float(noisy_again)  # the noise comes from the key alone


def test_sparse_variant_adds_weighted_penalty():
    batch = data.gather_batch(random_dataset(16), jnp.arange(16))
    plain = _small_model()
    sparse = _small_model(sparsity="l1", sparsity_weight=0.5)
    params, stats = plain.init(jax.random.key(0))
    key = jax.random.key(1)
    plain_loss, *_ = plain.phases[0].loss_fn(params, stats, batch, key, 0)
    sparse_loss, _, metrics, _ = sparse.phases[0].loss_fn(params, stats, batch, key, 0)
    np.testing.assert_allclose(float(sparse_loss), float(plain_loss) + 0.5 * float(metrics["sparsity"]), rtol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (dict(latent_dim=0), "latent_dim must be positive"), (dict(sparsity="l2"), "sparsity must be one of"),
    (dict(sparsity_target=1.5), r"sparsity_target must be in \(0, 1\)"), (dict(learning_rate=-1.0), "learning_rate must be > 0"),
    (dict(conv_transpose_impl="fft"), "conv transpose impl must be one of"), (dict(conv_impl="winograd"), "conv impl must be one of"),
])
def test_bad_config_is_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        autoencoder.AEConfig(**bad)


def test_checkpoint_round_trip_and_no_silent_overwrite(tmp_path):
    model = _small_model()
    state = train_lib.create_train_state(model, jax.random.key(0))
    tree = {"params": state.params, "batch_stats": state.batch_stats}
    checkpoint.save(tmp_path / "ckpt", tree)
    zeros = jax.tree.map(jnp.zeros_like, tree)
    chex.assert_trees_all_equal(checkpoint.restore(tmp_path / "ckpt", zeros), tree)
    with pytest.raises(FileExistsError, match="ckpt"):
        checkpoint.save(tmp_path / "ckpt", zeros)
    chex.assert_trees_all_equal(checkpoint.restore(tmp_path / "ckpt", zeros), tree)
    with pytest.raises(FileNotFoundError, match="missing"):
        checkpoint.restore(tmp_path / "missing", zeros)


@pytest.mark.parametrize("dataset, message", [
    ({}, "dataset holds no arrays"),
    ({"points": jnp.zeros((0, 2))}, "dataset is empty"),
    ({"points": jnp.zeros(())}, r"dataset\['points'\] needs a leading example axis"),
    ({"points": jnp.zeros((4, 2)), "weight": jnp.zeros(())}, r"\['weight'\] have none"),
])
def test_check_dataset_rejects_what_has_no_examples(dataset, message):
    with pytest.raises(ValueError, match=message):
        train_lib.check_dataset(dataset, train_lib.take_batch)


def test_check_dataset_names_a_key_the_gather_needs():
    """The gather is traced once, without running: a key it reads and the dataset lacks is one line."""
    with pytest.raises(ValueError, match=r"dataset needs a 'label' array, has \['image'\]"):
        train_lib.check_dataset({"image": jnp.zeros((8, 28, 28), jnp.uint8)}, data.gather_batch)


def test_check_dataset_counts_the_first_arrays_examples():
    """A later array of another length (a subset a custom gather reads its own way) is allowed."""
    dataset = {"points": jnp.zeros((7, 2)), "subset": jnp.zeros((3,))}
    assert train_lib.check_dataset(dataset, train_lib.take_batch) == 7
