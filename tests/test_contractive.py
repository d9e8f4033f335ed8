"""The contractive autoencoder: its penalty against Jacobians by hand, its loss, its config,
that training with it contracts the encoder, and its experiment's quick run."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import cli, contractive, data, flags, runs
from aejax import train as train_lib
from aejax.experiments import contractive_ae
from aejax.modules import Encoder, apply_training

NOISY_PSNR_DB = 10.46  # std 0.3 noise on [0, 1] images


# ------------------------------------------------------------------ the penalty by hand

def test_penalty_of_a_linear_map_is_its_squared_frobenius_norm():
    weights = jax.random.normal(jax.random.key(0), (6, 3))
    inputs = jax.random.normal(jax.random.key(1), (5, 6))
    encode = lambda x: x @ weights  # noqa: E731  J = W^T for every sample
    expected = float(jnp.sum(weights**2))
    np.testing.assert_allclose(contractive.jacobian_norms_squared(encode, inputs), np.full(5, expected), rtol=1e-5)
    np.testing.assert_allclose(contractive.contractive_penalty(encode, inputs), expected, rtol=1e-5)


def test_penalty_of_a_tanh_layer_matches_its_closed_form_and_the_estimate_is_unbiased():
    weights = jax.random.normal(jax.random.key(0), (6, 3))
    inputs = jax.random.normal(jax.random.key(1), (4, 6))
    encode = lambda x: jnp.tanh(x @ weights)  # noqa: E731  J_i = diag(1 - tanh^2(x_i W)) W^T
    slopes = 1 - jnp.tanh(inputs @ weights) ** 2  # (B, D)
    expected = jnp.sum(slopes**2 * jnp.sum(weights**2, axis=0), axis=1)  # (B,)
    np.testing.assert_allclose(contractive.jacobian_norms_squared(encode, inputs), expected, rtol=1e-5)
    estimate = contractive.jacobian_norms_squared(encode, inputs, jax.random.key(2), projections=20_000)
    np.testing.assert_allclose(estimate, expected, rtol=0.05)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        contractive.jacobian_norms_squared(encode, inputs, projections=3)


STEP = 1e-2  # of the central finite differences, on pixels in [0, 1]


@pytest.fixture(scope="module")
def conv_encoder_results():
    """A latent-3 conv Encoder in train mode on two images, computed in one compiled program:
    its codes and statistics by each route, the penalty's norms and finite-difference Jacobians."""
    encoder = Encoder(3)
    variables = jax.jit(encoder.init, static_argnums=2)(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), False)
    images = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))

    @jax.jit
    def compute(variables, images):
        codes, running, statistics = contractive.batch_statistics(encoder, variables, images)
        train_codes, train_running = apply_training(encoder, variables, images)
        encode = contractive.encode_with_statistics(encoder, variables["params"], statistics)
        shifted = images.at[0].add(0.5)  # sample 0 perturbed
        steps = STEP * jnp.eye(784).reshape(784, 28, 28, 1)
        # each sample's image moved pixel by pixel, up and down: (2 samples, 2 signs, 784, D)
        moved = jnp.stack([jnp.stack([x + steps, x - steps]) for x in images]).reshape(-1, 28, 28, 1)
        return {
            "codes": codes, "train_codes": train_codes, "running": running, "train_running": train_running,
            "fixed_codes": encode(images),
            "train_codes_shifted": apply_training(encoder, variables, shifted)[0],
            "fixed_codes_shifted": encode(shifted),
            "moved_codes": encode(moved).reshape(2, 2, 784, -1),
            "norms": contractive.jacobian_norms_squared(encode, images),
            "penalty": contractive.contractive_penalty(encode, images),
        }

    return jax.device_get(compute(variables, images))


def test_conv_encoder_statistics_reproduce_train_mode(conv_encoder_results):
    r = conv_encoder_results
    np.testing.assert_allclose(r["codes"], r["train_codes"], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), r["running"], r["train_running"])
    # eval mode with the batch's statistics is train mode on this batch
    np.testing.assert_allclose(r["fixed_codes"], r["train_codes"], rtol=1e-4, atol=1e-5)


def test_conv_encoder_penalty_holds_the_batch_statistics_fixed(conv_encoder_results):
    r = conv_encoder_results
    # perturbing sample 0 moves sample 1's code in train mode (shared statistics), not with them fixed
    assert not np.allclose(r["train_codes_shifted"][1], r["train_codes"][1], atol=1e-4)
    np.testing.assert_array_equal(r["fixed_codes_shifted"][1], r["fixed_codes"][1])
    # central finite-difference Jacobians (784, D) of each sample against the penalty's norms
    jacobians = (r["moved_codes"][:, 0] - r["moved_codes"][:, 1]) / (2 * STEP)  # (2, 784, D)
    by_hand = np.sum(np.square(jacobians, dtype=np.float64), axis=(1, 2))
    np.testing.assert_allclose(r["norms"], by_hand, rtol=0.02)
    np.testing.assert_allclose(r["penalty"], np.mean(by_hand), rtol=0.02)


# ------------------------------------------------------------------ the loss and the config

def test_loss_is_bce_plus_lambda_times_the_penalty(mnist):
    config = contractive.ContractiveConfig(latent_dim=4, contraction_weight=0.05, jacobian_projections=0)
    model = contractive.make_model(config)
    encoder = Encoder(4)
    params, batch_stats = jax.jit(model.init)(jax.random.key(0))
    images = data.to_float_nhwc(mnist["test"].images[:4])
    batch = {"image": images, "label": jnp.asarray(mnist["test"].labels[:4], jnp.int32)}

    @jax.jit
    def compute(params, batch_stats, batch):
        loss, new_stats, metrics, _ = model.phases[0].loss_fn(params, batch_stats, batch, jax.random.key(1), 0)
        variables = {"params": params["encoder"], "batch_stats": batch_stats["encoder"]}
        latents, encoder_stats = apply_training(encoder, variables, batch["image"])
        logits = model.decode(params, batch_stats, latents, train=True)
        # each sample's full Jacobian (D, 28, 28, 1) on its own, the batch's statistics fixed
        _, _, statistics = contractive.batch_statistics(encoder, variables, batch["image"])
        single = lambda x: encoder.apply({"params": params["encoder"], "batch_stats": statistics},  # noqa: E731
                                         x[None], False)[0]
        jacobians = jax.vmap(jax.jacrev(single))(batch["image"])  # (B, D, 28, 28, 1)
        return loss, metrics, new_stats["encoder"], encoder_stats, jax.nn.sigmoid(logits), jacobians

    loss, metrics, new_stats, encoder_stats, probabilities, jacobians = jax.device_get(compute(params, batch_stats, batch))
    probabilities, target = np.asarray(probabilities, np.float64), np.asarray(images, np.float64)
    bce = np.mean(-(target * np.log(probabilities) + (1 - target) * np.log(1 - probabilities)))
    penalty = np.mean(np.sum(np.square(jacobians, dtype=np.float64), axis=(1, 2, 3, 4)))
    np.testing.assert_allclose(metrics["bce"], bce, rtol=1e-4)
    np.testing.assert_allclose(metrics["contraction"], penalty, rtol=1e-4)
    np.testing.assert_allclose(loss, bce + 0.05 * penalty, rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_stats, encoder_stats)


@pytest.mark.parametrize("field, value, message", [
    ("contraction_weight", -0.1, "contraction_weight must be >= 0"),
    ("jacobian_projections", -1, "jacobian_projections must be >= 0"),
    ("latent_dim", 0, "latent_dim must be positive"),
])
def test_config_rejects_impossible_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        contractive.ContractiveConfig(**{field: value})


@pytest.mark.slow
def test_training_contracts_the_encoder(mnist):
    """A few steps on 256 images with lambda > 0 leave a smaller penalty than with lambda = 0."""
    train_set = data.device_dataset(mnist["train"], limit=256)
    probe = data.to_float_nhwc(mnist["train"].images[:64])
    penalties = {}
    for weight in (0.0, 0.01):
        config = contractive.ContractiveConfig(latent_dim=8, learning_rate=1e-3, contraction_weight=weight)
        model = contractive.make_model(config)
        state = train_lib.create_train_state(model, jax.random.key(0))
        state, _ = train_lib.train(model, state, train_set, epochs=2, batch_size=64, chunk_steps=1,
                                   reporting=train_lib.QUIET)
        encoder = Encoder(8)
        variables = {"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]}
        _, _, statistics = contractive.batch_statistics(encoder, variables, probe)
        encode = contractive.encode_with_statistics(encoder, state.params["encoder"], statistics)
        penalties[weight] = float(contractive.contractive_penalty(encode, probe))
    assert penalties[0.01] < 0.5 * penalties[0.0], penalties


# ------------------------------------------------------------------ the experiment

@pytest.mark.slow
def test_quick_run_on_eight_classes_writes_figures_and_metrics(other_idx_dir, tmp_path):
    out = tmp_path / "run"
    contractive_ae.main(["--quick", "--no-progress", "--data-dir", str(other_idx_dir), "--out", str(out),
                         "--train-limit", "512", "--test-limit", "256"])
    assert {"reconstructions.png", "denoising.png", "jacobian_norms.png", "checkpoint", "metrics.json"} <= set(
        os.listdir(out))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging left behind
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["preset"] == "lecture" == metrics["settings"]["preset"]
    assert set(flags.as_flat_dict(contractive_ae.Config())) <= set(metrics["settings"])
    assert metrics["settings"]["quick"] is True and metrics["settings"]["train_limit"] == 512
    assert metrics["jacobian_images"] == 256  # every test image of the run, fewer than the default 1000
    assert 0 < metrics["test_mse"] < 0.25 and 0 < metrics["test_bce"] < 0.7
    assert 0 < metrics["test_jacobian_frobenius_mean"] < 1e3 and metrics["test_code_std"] > 0
    assert metrics["test_jacobian_frobenius_over_code_std"] == pytest.approx(
        metrics["test_jacobian_frobenius_mean"] / metrics["test_code_std"])
    assert metrics["psnr_noisy_db"] == pytest.approx(NOISY_PSNR_DB, abs=0.5)
    # 8 steps leave the running statistics of eval mode far from trained: only a finite, positive PSNR
    assert 0 < metrics["psnr_denoised_db"] < 40
    assert len(metrics["train_history"]) == 1 and metrics["train_history"][0]["contraction"] > 0


def _parse(*argv):
    config, _, preset = runs.parse(contractive_ae.Config(), contractive_ae.PRESETS, list(argv),
                                   contractive_ae.__doc__, "contractive_ae")
    return config, preset


def test_recommended_preset_takes_the_exact_penalty():
    lecture, preset = _parse()
    assert preset == "lecture" and lecture == contractive_ae.Config()
    assert lecture.model.jacobian_projections == 1 and lecture.model.latent_dim == 24
    assert lecture.model.learning_rate == 1e-4 and lecture.train.batch_size == 64 and lecture.train.epochs == 5
    recommended, _ = _parse("--preset", "recommended")
    assert recommended.model.jacobian_projections == 0
    differing = {k for k, v in flags.as_flat_dict(recommended).items() if flags.as_flat_dict(lecture)[k] != v}
    assert differing == {"jacobian_projections"}
    assert cli.resolve_experiment("contractive") == "contractive_ae"


@pytest.mark.parametrize("argv, names", [
    (["--contraction-weight", "-1"], "contraction_weight"),
    (["--test-noise-std", "0"], "test_noise_std"),
    (["--jacobian-images", "0"], "jacobian_images"),
])
def test_impossible_settings_give_one_line_errors(argv, names, capsys, tmp_path):
    capsys.readouterr()
    with pytest.raises(SystemExit, match="^2$"):
        runs.run_main(contractive_ae.main, [*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and names in err
