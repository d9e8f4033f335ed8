"""Bad input everywhere a user can give it: one clear line naming the problem, no JAX traceback."""

import gzip
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import aae, autoencoder, data, disentangled, priors, semi_supervised, vae
from aejax import train as train_lib
from aejax.model import split_moments


@pytest.fixture(scope="module")
def ae():
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=4))
    return model, *model.init(jax.random.key(0))


@pytest.fixture(scope="module")
def cvae():
    model = vae.make_model(vae.VAEConfig(latent_dim=2, num_classes=10))
    return model, *model.init(jax.random.key(0))


IMAGES = "images must be float of shape (B, 28, 28, 1)"


@pytest.mark.parametrize("images, extra", [
    (jnp.zeros((2, 28, 28)), "add the channel axis"),
    (jnp.zeros((2, 28, 28, 1), jnp.uint8), "data.to_float_nhwc"),
    (jnp.zeros((2, 32, 32, 1)), "(2, 32, 32, 1)"),
    (jnp.zeros((28, 28, 1)), "(28, 28, 1)"),
])
def test_encoder_names_the_images_argument_and_the_expected_shape(ae, images, extra):
    model, params, batch_stats = ae
    with pytest.raises(ValueError, match=f"^{re.escape(IMAGES)}.*{re.escape(extra)}") as error:
        model.encode(params, batch_stats, images)
    assert "\n" not in str(error.value)  # one line: it is printed as a usage error


@pytest.mark.parametrize("latents", [jnp.zeros((2, 5)), jnp.zeros((4,)), jnp.zeros((2, 4), jnp.int32)])
def test_decoder_names_the_latents_and_the_latent_size(ae, latents):
    model, params, batch_stats = ae
    with pytest.raises(ValueError, match=r"latents must be float of shape \(B, 4\), got"):
        model.decode(params, batch_stats, latents)


def test_decoding_works_inside_jit_with_the_right_shapes(ae):
    model, params, batch_stats = ae  # the checks read only static shapes, so they run under jit
    logits = jax.jit(lambda z: model.decode(params, batch_stats, z))(jnp.zeros((3, 4)))
    assert logits.shape == (3, 28, 28, 1)


@pytest.mark.parametrize("labels, message", [
    (jnp.array([1, 10]), r"labels must be in \[0, 10\), got values in \[1, 10\]"),
    (jnp.array([-1, 3]), r"labels must be in \[0, 10\)"),
    (jnp.array([1.0, 2.0]), r"labels must be integers of shape \(2,\) or probabilities"),
    (jnp.array([1, 2, 3]), r"labels must be integers of shape \(2,\)"),
    (None, r"a conditional module \(num_classes=10\) needs labels"),
])
def test_conditional_decoder_rejects_bad_labels(cvae, labels, message):
    model, params, batch_stats = cvae
    with pytest.raises(ValueError, match=message):
        model.decode(params, batch_stats, jnp.zeros((2, 2)), labels)


def test_vae_moments_need_an_even_split():
    with pytest.raises(ValueError, match="even last axis"):
        split_moments(jnp.zeros((2, 5)))


@pytest.mark.parametrize("make, message", [
    (lambda: autoencoder.AEConfig(latent_dim=0), "latent_dim must be positive, got 0"),
    (lambda: autoencoder.AEConfig(sparsity="l2"), r"sparsity must be one of \(.*\), got 'l2'"),
    (lambda: vae.VAEConfig(latent_dim=-2), "latent_dim must be positive, got -2"),
    (lambda: aae.AAEConfig(prior_samples_per_code=0), "prior_samples_per_code must be positive, got 2 and 0"),
    (lambda: aae.AAEConfig(discriminator_norm="layer"), r"discriminator_norm must be one of \(.*\), got 'layer'"),
    (lambda: disentangled.DisentangledConfig(num_classes=1), "num_classes > 1, got 8 and 1"),
    (lambda: semi_supervised.SemiSupervisedConfig(latent_dim=0), "latent_dim > 0 and num_classes > 1, got 0 and 10"),
])
def test_configs_that_cannot_work_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_prior_of_the_wrong_size_is_rejected_when_the_model_is_built():
    with pytest.raises(ValueError, match=r"prior\(key, n\) must return \(n, 2\) codes"):
        aae.make_model(aae.AAEConfig(latent_dim=2), priors.standard_normal(3))


def _dataset(n=8):
    return {"image": jnp.zeros((n, 28, 28), jnp.uint8), "label": jnp.zeros(n, jnp.int32)}


@pytest.mark.parametrize("dataset, message", [
    (_dataset(0), "^dataset is empty$"),
    ({"image": jnp.zeros((8, 28, 28), jnp.uint8), "label": jnp.int32(3)},
     r"dataset arrays need a leading example axis; \['label'\] have none"),
    ({"image": jnp.zeros((8, 28, 28), jnp.uint8)}, "needs a 'label' array"),
    ({"image": jnp.zeros((8, 1024), jnp.uint8), "label": jnp.zeros(8, jnp.int32)},
     r"dataset\['image'\] must be uint8 or float of shape \(N, H, W\) or \(N, H, W, C\), got uint8 \(8, 1024\)"),
])
def test_train_rejects_a_malformed_dataset(ae, dataset, message):
    model = ae[0]
    state = train_lib.create_train_state(model, jax.random.key(0))
    with pytest.raises(ValueError, match=message):
        train_lib.train(model, state, dataset, epochs=1, batch_size=4, reporting=train_lib.QUIET)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, r"epochs, batch_size and chunk_steps must be positive, got 0, 4, "),
    ({"batch_size": -1}, r"epochs, batch_size and chunk_steps must be positive, got 1, -1, "),
    ({"checkpointing": train_lib.Checkpointing(None, every=0)}, r"checkpointing.every must be positive, got 0"),
    ({"nonfinite": "ignore"}, r"nonfinite must be one of \(.*\), got 'ignore'"),
])
def test_train_rejects_bad_settings(ae, kwargs, message):
    model = ae[0]
    state = train_lib.create_train_state(model, jax.random.key(0))
    with pytest.raises(ValueError, match=message):
        train_lib.train(model, state, _dataset(), **{"epochs": 1, "batch_size": 4, "reporting": train_lib.QUIET, **kwargs})


@pytest.mark.parametrize("images, labels, num_classes, message", [
    (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.int64), None, r"images must be uint8 of shape \(N, H, W\)"),
    (np.zeros((3, 28, 28), np.uint8), np.array([0, 4, 10]), 10, r"labels must be in \[0, 10\), got values in \[0, 10\]"),
    (np.zeros((3, 28, 28), np.uint8), np.array([0, -1, 3]), None, r"labels must be non-negative, got values in \[-1, 3\]"),
    (np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.int64), None, r"labels must be integers of shape \(3,\)"),
])
def test_device_dataset_rejects_what_is_not_mnist(images, labels, num_classes, message):
    with pytest.raises(ValueError, match=message):
        data.device_dataset(data.Split(images, labels), num_classes=num_classes)


# --- the command line --------------------------------------------------------------------------

def _run(args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def _one_error_line(stderr):
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error") or ": error:" in line]
    return len(lines) == 1 and "Traceback" not in stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["experiments.reproduce", "--only", "s1_pca,s99_nothing"], "unknown experiment(s) s99_nothing"),
    (["experiments.s8_aae", "--learning-rate", "0"], "learning rates must be > 0"),
    (["experiments.s9_disentangled", "--adversary-learning-rate", "nan"], "expected a finite number"),
    (["experiments.s1_pca", "--variance", "1.5"], "strictly between 0 and 1"),
    (["experiments.s3_sparse_ae", "--sparsity-target", "0"], "sparsity_target must be in (0, 1)"),
    (["experiments.s2_conv_ae", "--checkpoint-every", "0"], "positive integer"),
    (["experiments.s2_conv_ae", "--on-nonfinite", "ignore"], "invalid choice"),
    (["experiments.s8_aae", "--prior", "cauchy"], "invalid choice"),
    (["experiments.s8_aae", "--gradient-penalty", "1"], "gradient_penalty needs discriminator_norm='none'"),
    (["experiments.s8_aae", "--label-conditioning"], "label_conditioning needs a mixture prior"),
    (["experiments.s8_aae", "--prior", "boxes", "--standardize-components"],
     "standardize_components needs label_conditioning"),
    (["experiments.s8_aae", "--prior", "boxes", "--component-assignment", "balanced"],
     "component_assignment='balanced' needs label_conditioning"),
    (["experiments.s8_aae", "--component-assignment", "nearest"], "invalid choice"),
    (["experiments.s8_aae", "--generator-optimizer", "shared", "--generator-learning-rate", "1e-4"],
     "generator_learning_rate needs generator_optimizer='separate'"),
    (["experiments.s9_disentangled", "--style-normalization", "class", "--style-kl-weight", "0.005"],
     "style_normalization='class' needs a deterministic style"),
    (["experiments.s10_semi_supervised", "--augment-shift", "20"], "augment_shift must be 0..13 pixels"),
    (["experiments.s10_semi_supervised", "--labels", "0", "--consistency-weight", "1"],
     "consistency_weight needs labels"),
    (["experiments.s10_semi_supervised", "--categorical-temperature", "-0.3"], "categorical_temperature must be >= 0"),
])
def test_bad_cli_values_are_usage_errors(args, message, tmp_path):
    result = _run([*args, "--out", str(tmp_path / "o")])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and _one_error_line(result.stderr)


@pytest.mark.slow
def test_corrupt_data_file_is_one_line_and_exit_1(mnist_dir, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in os.listdir(mnist_dir):
        if name.endswith(".gz"):
            shutil.copy(mnist_dir / name, folder / name)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01\x00\x00\x27\x10" + b"\x01" * 100)  # a header promising 10000 labels, 100 given
    result = _run(["experiments.s1_pca", "--data-dir", str(folder), "--out", str(tmp_path / "o")])
    assert result.returncode == 1
    assert "t10k-labels-idx1-ubyte.gz" in result.stderr and _one_error_line(result.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_nonfinite_loss_in_a_script_exits_1_naming_step_and_term_and_keeps_old_results(mnist_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("complete")
    # noise of std 1e39 overflows float32 to inf: the first step's loss is NaN
    result = _run(["experiments.s2_conv_ae", "--quick", "--no-progress", "--train-limit", "64", "--test-limit", "64",
                   "--input-noise-std", "1e39", "--data-dir", str(mnist_dir), "--out", str(out)])
    assert result.returncode == 1
    assert "non-finite loss at training step 0 (epoch 1)" in result.stderr and "loss=nan" in result.stderr
    assert _one_error_line(result.stderr)
    assert (out / "metrics.json").read_text() == "complete"
    assert sorted(os.listdir(tmp_path)) == ["run"]  # nothing to resume from: the staging folder is gone
