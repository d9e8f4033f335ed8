"""The variational family: VAE / KL-only / beta-VAE / CVAE (aejax.vae), ELBO and IWAE
(aejax.likelihood), the Gaussian losses and the WAE-MMD penalty (aejax.losses, aejax.wae).

Kept small for a shared CPU: batches of 2-8 images, latent size 2, one shared
initialisation of the networks, at most a couple of training steps.
"""

from __future__ import annotations

import dataclasses

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from aejax import autoencoder, likelihood, losses, vae, wae
from aejax import train as train_lib
from aejax.modules import Decoder, condition_on_labels

LATENT = 2
BATCH = 4
NUM_CLASSES = 10


# ------------------------------------------------------------------ helpers

def _images(n=BATCH, seed=0) -> jax.Array:
    """float32 (n, 28, 28, 1) in [0, 1]; image i has a different ink density, so images differ a lot."""
    rng = np.random.default_rng(seed)
    density = np.linspace(0.1, 0.9, n)[:, None, None]
    pixels = rng.uniform(0, 1, (n, 28, 28)) * (rng.uniform(0, 1, (n, 28, 28)) < density)
    return jnp.asarray(pixels[..., None], jnp.float32)


def _dataset(n=8, seed=0) -> dict[str, jax.Array]:
    """The on-device split format: uint8 (n, 28, 28) images and int32 (n,) labels."""
    rng = np.random.default_rng(seed)
    images = np.round(np.asarray(_images(n, seed))[..., 0] * 255).astype(np.uint8)
    return {"image": jnp.asarray(images), "label": jnp.asarray(rng.integers(0, 10, n), jnp.int32)}


def _batch(n=BATCH, seed=0) -> dict[str, jax.Array]:
    return {"image": _images(n, seed), "label": jnp.arange(n, dtype=jnp.int32) % 10}


def _vae(**kwargs) -> train_lib.Model:
    return vae.make_model(vae.VAEConfig(latent_dim=LATENT, **kwargs))


def _np_bce(logits, targets) -> np.ndarray:
    """-(x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))), elementwise, float64."""
    logits, targets = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    return targets * np.logaddexp(0.0, -logits) + (1 - targets) * np.logaddexp(0.0, logits)


def _np_kl(mu, log_var) -> np.ndarray:
    """KL(N(mu, s^2) || N(0, 1)) = 0.5 (s^2 + mu^2 - 1 - log s^2), summed over the last axis."""
    mu, log_var = np.asarray(mu, np.float64), np.asarray(log_var, np.float64)
    return 0.5 * np.sum(np.exp(log_var) + mu ** 2 - 1 - log_var, axis=-1)


def _np_log_normal(z, mu=0.0, log_var=0.0) -> np.ndarray:
    """log N(z; mu, exp(log_var)) summed over the last axis, by scipy."""
    z = np.asarray(z, np.float64)
    scale = np.exp(0.5 * np.asarray(log_var, np.float64))
    return np.sum(scipy.stats.norm.logpdf(z, np.asarray(mu, np.float64), scale), axis=-1)


def _max_abs_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def vae_vars():
    """(params, batch_stats) of one latent-2 VAE; every unconditional VAE config shares them."""
    return _vae().init(jax.random.key(0))


@pytest.fixture(scope="module")
def cvae():
    model = _vae(num_classes=NUM_CLASSES)
    params, batch_stats = model.init(jax.random.key(1))
    return model, params, batch_stats


def _sharpened(params):
    """The VAE's params with a narrow posterior away from the prior and a decoder that reads z.

    Makes the importance weights vary, so the IWAE bound visibly tightens with k.
    """
    enc_dense = dict(params["encoder"]["Dense_0"])
    enc_dense["kernel"] = enc_dense["kernel"].at[:, :LATENT].multiply(30.0)
    enc_dense["bias"] = enc_dense["bias"].at[:LATENT].add(1.0).at[LATENT:].set(-1.0)
    dec_dense = dict(params["decoder"]["Dense_0"])
    dec_dense["kernel"] = dec_dense["kernel"] * 100.0
    return {"encoder": {**params["encoder"], "Dense_0": enc_dense},
            "decoder": {**params["decoder"], "Dense_0": dec_dense}}


_MODEL = _vae()


@functools.cache
def _iwae_over_keys(num_samples):
    """The IWAE NLL of ``_MODEL`` for each key, one key at a time: (params, stats, images, keys (K,)) -> (K, B)."""
    def run(params, batch_stats, images, keys):
        return jax.lax.map(lambda key: likelihood.iwae_negative_log_likelihood(
            _MODEL, params, batch_stats, images, None, key, num_samples), keys)
    return jax.jit(run)


@functools.cache
def _iwae_keys() -> jax.Array:
    """The keys the IWAE tests share (32), so that their compiled functions are shared too."""
    return jax.random.split(jax.random.key(1), 32)


@jax.jit
def _negative_elbo_over_keys(params, batch_stats, images, keys):
    return jax.lax.map(lambda key: likelihood.negative_elbo(_MODEL, params, batch_stats, images, None, key), keys)


# ------------------------------------------------------------ split_moments and reparametrize

def test_split_moments_shapes_and_halves():
    out = jnp.arange(3 * 2 * LATENT, dtype=jnp.float32).reshape(3, 2 * LATENT)
    mu, log_var = vae.split_moments(out)
    chex.assert_shape([mu, log_var], (3, LATENT))
    chex.assert_type([mu, log_var], jnp.float32)
    np.testing.assert_array_equal(mu, out[:, :LATENT])
    np.testing.assert_array_equal(log_var, out[:, LATENT:])


@pytest.mark.parametrize("shape", [(4, 3), (4,), (2, 2, 4), (4, 1)])
def test_split_moments_rejects_odd_last_axis_or_wrong_rank(shape):
    with pytest.raises(ValueError, match="even last axis"):
        vae.split_moments(jnp.zeros(shape))


def test_reparametrize_shape_dtype_and_formula():
    mu = jnp.asarray([[0.5, -1.0], [2.0, 0.0], [0.0, 3.0]], jnp.float32)
    log_var = jnp.asarray([[0.0, math.log(4.0)], [-2.0, 1.0], [0.5, -0.5]], jnp.float32)
    key = jax.random.key(7)
    z = vae.reparametrize(key, mu, log_var)
    chex.assert_shape(z, (3, 2))
    chex.assert_type(z, jnp.float32)
    eps = np.asarray(jax.random.normal(key, (3, 2)))
    np.testing.assert_allclose(z, np.asarray(mu) + np.exp(0.5 * np.asarray(log_var)) * eps, rtol=1e-6, atol=1e-6)


def test_reparametrize_sample_mean_and_variance():
    """200k draws of one (mu, log_var) have mean ~ mu and variance ~ exp(log_var)."""
    n = 200_000
    mu_row = np.asarray([0.5, -2.0, 1.0], np.float32)
    log_var_row = np.asarray([0.0, math.log(4.0), -2.0], np.float32)
    mu = jnp.broadcast_to(jnp.asarray(mu_row), (n, 3))
    log_var = jnp.broadcast_to(jnp.asarray(log_var_row), (n, 3))
    z = np.asarray(vae.reparametrize(jax.random.key(0), mu, log_var), np.float64)
    std = np.exp(0.5 * log_var_row)
    np.testing.assert_array_less(np.abs(z.mean(axis=0) - mu_row), 5 * std / math.sqrt(n))
    np.testing.assert_allclose(z.var(axis=0), np.exp(log_var_row), rtol=0.02)
    # the coordinates are independent
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.01


def test_reparametrize_same_key_same_z_other_key_other_z():
    """The noise comes from the key alone."""
    mu, log_var = jnp.zeros((BATCH, LATENT)), jnp.zeros((BATCH, LATENT))
    a = vae.reparametrize(jax.random.key(3), mu, log_var)
    b = vae.reparametrize(jax.random.key(3), mu, log_var)
    c = vae.reparametrize(jax.random.key(4), mu, log_var)
    np.testing.assert_array_equal(a, b)
    assert not np.any(np.asarray(a) == np.asarray(c))


# ------------------------------------------------------------ Gaussian KL and log-density

def test_kl_closed_form_hand_values():
    """KL(N(mu, s^2) || N(0, 1)) = sum_d 0.5 (s^2 + mu^2 - 1 - log s^2), on hand-picked rows."""
    mu = jnp.asarray([[0.0, 0.0], [1.0, 2.0], [0.0, 1.0], [3.0, 0.0]], jnp.float32)
    log_var = jnp.asarray([[0.0, 0.0], [0.0, 0.0], [math.log(4.0), math.log(0.25)], [0.0, -1.0]], jnp.float32)
    kl = losses.gaussian_kl_to_standard_normal(mu, log_var)
    chex.assert_shape(kl, (4,))
    chex.assert_type(kl, jnp.float32)
    expected = [
        0.0,                                                      # the prior itself
        2.5,                                                      # 0.5 * 1 + 0.5 * 4
        0.5 * (4 - 1 - math.log(4)) + 0.5 * (0.25 + 1 - 1 - math.log(0.25)),  # 0.80685 + 0.81815
        4.5 + 0.5 * (math.exp(-1) - 1 + 1),                       # 0.5 * 9 + 0.5 * (e^-1 + 1)
    ]
    np.testing.assert_allclose(kl, expected, rtol=1e-6, atol=1e-6)
    assert abs(float(kl[2]) - 1.625) < 1e-4


def test_kl_matches_torch_distributions():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    mu = rng.normal(0, 2, (6, 5)).astype(np.float32)
    log_var = rng.normal(0, 1.5, (6, 5)).astype(np.float32)
    q = torch.distributions.Normal(torch.from_numpy(mu), torch.exp(0.5 * torch.from_numpy(log_var)))
    p = torch.distributions.Normal(torch.zeros(6, 5), torch.ones(6, 5))
    expected = torch.distributions.kl_divergence(q, p).sum(-1).numpy()
    got = losses.gaussian_kl_to_standard_normal(jnp.asarray(mu), jnp.asarray(log_var))
    chex.assert_shape(got, (6,))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, _np_kl(mu, log_var), rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(got) >= 0)


def test_kl_is_the_mean_of_the_monte_carlo_log_ratio():
    """E_q[log q(z) - log N(z; 0, I)] over 200k draws equals the closed-form KL."""
    mu = jnp.asarray([[1.0, -0.5]], jnp.float32)
    log_var = jnp.asarray([[math.log(0.25), math.log(2.0)]], jnp.float32)
    n = 200_000
    z = vae.reparametrize(jax.random.key(9), jnp.broadcast_to(mu, (n, 2)), jnp.broadcast_to(log_var, (n, 2)))
    log_ratio = losses.gaussian_log_density(z, mu, log_var) - losses.gaussian_log_density(z)
    kl = float(losses.gaussian_kl_to_standard_normal(mu, log_var)[0])
    assert abs(float(jnp.mean(log_ratio)) - kl) < 5 * float(jnp.std(log_ratio)) / math.sqrt(n)


def test_gaussian_log_density_matches_scipy_and_torch():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (3, 4, 5)).astype(np.float32)
    mu = rng.normal(0, 1, (4, 5)).astype(np.float32)  # broadcast over the leading (sample) axis
    log_var = rng.normal(0, 1, (4, 5)).astype(np.float32)
    got = losses.gaussian_log_density(jnp.asarray(z), jnp.asarray(mu), jnp.asarray(log_var))
    chex.assert_shape(got, (3, 4))
    chex.assert_type(got, jnp.float32)
    np.testing.assert_allclose(got, _np_log_normal(z, mu, log_var), rtol=1e-5, atol=1e-4)
    # the default is the standard normal prior
    prior = losses.gaussian_log_density(jnp.asarray(z))
    np.testing.assert_allclose(prior, _np_log_normal(z), rtol=1e-5, atol=1e-4)
    origin = losses.gaussian_log_density(jnp.zeros((1, 3)))
    np.testing.assert_allclose(origin, [-1.5 * math.log(2 * math.pi)], rtol=1e-6)
    # and torch.distributions (last: skipped where torch is missing, after the checks above ran)
    torch = pytest.importorskip("torch")
    torch_ref = torch.distributions.Normal(torch.from_numpy(mu), torch.exp(0.5 * torch.from_numpy(log_var)))
    np.testing.assert_allclose(got, torch_ref.log_prob(torch.from_numpy(z)).sum(-1).numpy(), rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------ Model outputs (VAE, CVAE)

def test_vae_encode_posterior_decode_shapes(vae_vars):
    params, batch_stats = vae_vars
    model, images = _vae(), _images()
    for train in (False, True):
        mu, log_var = model.posterior(params, batch_stats, images, train=train)
        chex.assert_shape([mu, log_var], (BATCH, LATENT))
        chex.assert_type([mu, log_var], jnp.float32)
        encoded = model.encode(params, batch_stats, images, train=train)
        chex.assert_shape(encoded, (BATCH, LATENT))
        np.testing.assert_array_equal(encoded, mu)  # encode is the posterior mean
        logits = model.decode(params, batch_stats, mu, train=train)
        chex.assert_shape(logits, (BATCH, 28, 28, 1))
        chex.assert_type(logits, jnp.float32)
        chex.assert_tree_all_finite(logits)
    chex.assert_shape(params["encoder"]["Dense_0"]["kernel"], (2048, 2 * LATENT))  # mu and log_var
    chex.assert_shape(params["decoder"]["Dense_0"]["kernel"], (LATENT, 512))


def test_cvae_encode_posterior_decode_shapes(cvae):
    model, params, batch_stats = cvae
    batch = _batch()
    mu, log_var = model.posterior(params, batch_stats, batch["image"], batch["label"])
    chex.assert_shape([mu, log_var], (BATCH, LATENT))
    chex.assert_type([mu, log_var], jnp.float32)
    chex.assert_shape(model.encode(params, batch_stats, batch["image"], batch["label"]), (BATCH, LATENT))
    for train in (False, True):
        logits = model.decode(params, batch_stats, mu, batch["label"], train=train)
        chex.assert_shape(logits, (BATCH, 28, 28, 1))
        chex.assert_type(logits, jnp.float32)


def test_cvae_first_dense_reads_latent_plus_one_hot(cvae):
    _, params, _ = cvae
    chex.assert_shape(params["decoder"]["Dense_0"]["kernel"], (LATENT + NUM_CLASSES, 512))
    chex.assert_shape(params["decoder"]["Dense_0"]["bias"], (512,))
    assert params["decoder"]["Dense_0"]["kernel"].size == (LATENT + NUM_CLASSES) * 512
    # the encoder is the unconditional one
    chex.assert_shape(params["encoder"]["Dense_0"]["kernel"], (2048, 2 * LATENT))


def test_cvae_decoder_honours_each_label(cvae):
    """Same z: label 3 and label 7 decode differently, and each row follows its own label."""
    model, params, batch_stats = cvae
    z = jnp.asarray([[0.3, -0.7], [0.3, -0.7]], jnp.float32)
    threes = model.decode(params, batch_stats, z, jnp.asarray([3, 3], jnp.int32))
    sevens = model.decode(params, batch_stats, z, jnp.asarray([7, 7], jnp.int32))
    mixed = model.decode(params, batch_stats, z, jnp.asarray([3, 7], jnp.int32))
    effect = float(jnp.max(jnp.abs(threes[0] - sevens[0])))  # small at init (~1e-4), far above rounding
    assert effect > 2e-5
    np.testing.assert_allclose(mixed[0], threes[0], atol=effect / 50)
    np.testing.assert_allclose(mixed[1], sevens[1], atol=effect / 50)
    np.testing.assert_allclose(threes[0], threes[1], atol=effect / 50)  # eval mode: rows independent


def test_cvae_loss_depends_on_the_labels(cvae):
    model, params, batch_stats = cvae
    batch, key = _batch(), jax.random.key(2)
    loss, _ = model.phases[0].loss_fn(params, batch_stats, batch, key, 0)
    other, _ = model.phases[0].loss_fn(params, batch_stats, {**batch, "label": (batch["label"] + 5) % 10}, key, 0)
    assert float(loss) != float(other)


def test_conditional_decoder_rejects_missing_or_bad_labels(cvae):
    model, params, batch_stats = cvae
    z = jnp.zeros((2, LATENT))
    with pytest.raises(ValueError, match="needs labels"):
        model.decode(params, batch_stats, z)
    with pytest.raises(ValueError, match="labels must be integers"):
        model.decode(params, batch_stats, z, jnp.zeros((2, 1), jnp.int32))
    with pytest.raises(ValueError, match="labels must be integers"):
        model.decode(params, batch_stats, z, jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="labels must be integers"):
        model.decode(params, batch_stats, z, jnp.asarray([3.0, 7.0], jnp.float32))


def test_unconditional_decoder_rejects_labels(vae_vars):
    params, batch_stats = vae_vars
    variables = {"params": params["decoder"], "batch_stats": batch_stats["decoder"]}
    with pytest.raises(ValueError, match="unconditional"):
        Decoder().apply(variables, jnp.zeros((2, LATENT)), False, labels=jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match="unconditional"):
        condition_on_labels(jnp.zeros((2, LATENT)), jnp.zeros((2,), jnp.int32), 0)


def test_condition_on_labels_appends_one_hot():
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]], jnp.float32)
    out = condition_on_labels(x, jnp.asarray([0, 2], jnp.int32), 3)
    chex.assert_shape(out, (2, 5))
    np.testing.assert_array_equal(out, [[1, 2, 1, 0, 0], [3, 4, 0, 0, 1]])
    assert condition_on_labels(x, None, 0) is x


# ------------------------------------------------------------ the VAE loss and its weights

def test_vae_loss_is_weighted_mean_bce_plus_weighted_mean_kl(vae_vars):
    """loss = reconstruction_weight * mean BCE + kld_weight * mean KL, recomputed from the modules."""
    params, batch_stats = vae_vars
    model = _vae(kld_weight=0.05, reconstruction_weight=0.7)
    batch, key = _batch(), jax.random.key(11)
    loss, (new_stats, metrics) = model.phases[0].loss_fn(params, batch_stats, batch, key, jnp.int32(0))
    chex.assert_shape(loss, ())
    mu, log_var = model.posterior(params, batch_stats, batch["image"], train=True)
    z = vae.reparametrize(key, mu, log_var)
    logits = model.decode(params, batch_stats, z, train=True)
    bce = _np_bce(logits, batch["image"]).mean()
    kl = _np_kl(mu, log_var).mean()
    np.testing.assert_allclose(float(metrics["bce"]), bce, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["kl"]), kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(metrics["kld_weight"]), 0.05, rtol=1e-7)
    np.testing.assert_allclose(float(loss), 0.7 * bce + 0.05 * kl, rtol=1e-5)
    # the running statistics come back updated, with the same structure
    chex.assert_trees_all_equal_structs(new_stats, batch_stats)
    assert _max_abs_diff(new_stats, batch_stats) > 0


def test_vae_loss_same_key_same_loss_other_key_differs(vae_vars):
    params, batch_stats = vae_vars
    loss_fn, batch = _vae().phases[0].loss_fn, _batch()
    a, _ = loss_fn(params, batch_stats, batch, jax.random.key(5), 0)
    b, _ = loss_fn(params, batch_stats, batch, jax.random.key(5), 0)
    c, _ = loss_fn(params, batch_stats, batch, jax.random.key(6), 0)
    assert float(a) == float(b)
    assert float(a) != float(c)


def test_vae_loss_uses_the_warmup_weight_at_step(vae_vars):
    params, batch_stats = vae_vars
    model = _vae(kld_weight=0.1, kl_warmup_steps=10)
    batch, key = _batch(), jax.random.key(11)
    loss, (_, metrics) = model.phases[0].loss_fn(params, batch_stats, batch, key, jnp.int32(4))
    np.testing.assert_allclose(float(metrics["kld_weight"]), 0.1 * 5 / 10, rtol=1e-6)
    np.testing.assert_allclose(float(loss), float(metrics["bce"]) + 0.05 * float(metrics["kl"]), rtol=1e-6)


def test_kl_only_config_gives_the_decoder_no_gradient(vae_vars):
    """reconstruction_weight = 0: all-zero gradients for the decoder, non-zero ones for the encoder."""
    params, batch_stats = vae_vars
    model = _vae(kld_weight=0.1, reconstruction_weight=0.0)
    batch = _batch()

    def loss(decoder, encoder_head):  # the encoder's last layer only, to keep the compiled gradient small
        encoder = {**params["encoder"], "Dense_0": encoder_head}
        return model.phases[0].loss_fn({"encoder": encoder, "decoder": decoder}, batch_stats, batch,
                                       jax.random.key(0), 0)[0]

    decoder_grads, head_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params["decoder"],
                                                                           params["encoder"]["Dense_0"])
    chex.assert_trees_all_equal_shapes(decoder_grads, params["decoder"])
    chex.assert_trees_all_equal(decoder_grads, jax.tree.map(jnp.zeros_like, params["decoder"]))
    assert float(jnp.max(jnp.abs(head_grads["kernel"]))) > 0


def test_kld_weight_warmup_is_linear_then_constant():
    config = vae.VAEConfig(kld_weight=0.2, kl_warmup_steps=4)
    got = [float(vae.kld_weight_at(config, jnp.int32(step))) for step in range(7)]
    np.testing.assert_allclose(got, [0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2], rtol=1e-6)
    constant = vae.VAEConfig(kld_weight=0.2)
    for step in (0, 1, 1000):
        w = vae.kld_weight_at(constant, jnp.int32(step))
        chex.assert_shape(w, ())
        chex.assert_type(w, jnp.float32)
        np.testing.assert_allclose(float(w), 0.2, rtol=1e-7)


def test_beta_to_kld_weight():
    assert vae.beta_to_kld_weight(1.0) == 1 / 784
    assert abs(vae.beta_to_kld_weight(3.92) - 0.005) < 1e-12  # the lecture's weight


# ------------------------------------------------------------ key discipline in training

def test_train_step_consumes_key_and_is_reproducible():
    """One compiled step: the key moves on, the warm-up weight follows the step, and a seed fixes the run."""
    model = _vae(kld_weight=0.04, kl_warmup_steps=4)
    step_fn = train_lib.make_train_step(model.phases)
    dataset, indices = _dataset(8), jnp.arange(4)
    runs = []
    for seed in (0, 0, 1):
        state = train_lib.create_train_state(model, jax.random.key(seed))
        key_before = np.asarray(jax.random.key_data(state.key)).copy()
        weights = []
        for _ in range(2):
            state, metrics = step_fn(state, dataset, indices)
            weights.append(float(metrics["kld_weight"]))
        assert not np.array_equal(key_before, jax.random.key_data(state.key))
        assert int(state.step) == 2
        np.testing.assert_allclose(weights, [0.01, 0.02], rtol=1e-6)
        runs.append(state)
    chex.assert_trees_all_equal(runs[0].params, runs[1].params)
    chex.assert_trees_all_equal(runs[0].batch_stats, runs[1].batch_stats)
    np.testing.assert_array_equal(jax.random.key_data(runs[0].key), jax.random.key_data(runs[1].key))
    assert _max_abs_diff(runs[0].params, runs[2].params) > 1e-4


# ------------------------------------------------------------ negative ELBO and IWAE

def test_negative_elbo_matches_direct_computation(vae_vars):
    params, batch_stats = vae_vars
    model, images, key = _vae(), _images(), jax.random.key(21)
    got = likelihood.negative_elbo(model, params, batch_stats, images, None, key)
    chex.assert_shape(got, (BATCH,))
    chex.assert_type(got, jnp.float32)
    mu, log_var = model.posterior(params, batch_stats, images)
    z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)
    logits = model.decode(params, batch_stats, z)
    expected = _np_bce(logits, images).sum(axis=(1, 2, 3)) + _np_kl(mu, log_var)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert len(set(np.round(np.asarray(got), 1))) == BATCH  # per image, not a batch mean


def test_iwae_shapes_and_sample_chunk(vae_vars):
    """(k, B) log-weights, (B,) NLL = -log mean_k w_k; decoding 3 samples at a time changes nothing."""
    params, batch_stats = _sharpened(vae_vars[0]), vae_vars[1]
    model, images, keys = _vae(), _images(), _iwae_keys()
    whole = _iwae_over_keys(10)(params, batch_stats, images, keys[:8])  # sample_chunk=None, one row per key
    chex.assert_shape(whole, (8, BATCH))
    chex.assert_type(whole, jnp.float32)
    chunked = jax.jit(lambda p, s, x, key: likelihood.log_importance_weights(model, p, s, x, None, key, 10,
                                                                             sample_chunk=3))
    log_w = chunked(params, batch_stats, images, keys[0])  # 3 + 3 + 3 + a remainder of 1
    chex.assert_shape(log_w, (10, BATCH))
    chex.assert_type(log_w, jnp.float32)
    chex.assert_tree_all_finite(log_w)
    assert float(jnp.min(jnp.std(log_w, axis=0))) > 0.1  # the samples differ
    expected = -(scipy.special.logsumexp(np.asarray(log_w, np.float64), axis=0) - math.log(10))
    np.testing.assert_allclose(whole[0], expected, rtol=1e-6, atol=1e-4)


def test_iwae_with_one_sample_is_the_single_sample_monte_carlo_negative_elbo(vae_vars):
    """k = 1: -(log p(x|z) + log N(z; 0, I) - log N(z; mu, var)) with eps = normal(key, (1, B, D))[0]."""
    params, batch_stats = _sharpened(vae_vars[0]), vae_vars[1]
    model, images = _vae(), _images()
    key = _iwae_keys()[0]
    got = _iwae_over_keys(1)(params, batch_stats, images, _iwae_keys())[0]
    chex.assert_shape(got, (BATCH,))
    mu, log_var = model.posterior(params, batch_stats, images)
    eps = jax.random.normal(key, (1, *mu.shape))[0]
    z = mu + jnp.exp(0.5 * log_var) * eps
    log_px = -_np_bce(model.decode(params, batch_stats, z), images).sum(axis=(1, 2, 3))
    log_pz, log_qz = _np_log_normal(z), _np_log_normal(z, mu, log_var)
    np.testing.assert_allclose(got, -(log_px + log_pz - log_qz), rtol=1e-5)
    # the same z as negative_elbo with that key: they differ by the MC KL minus the closed-form one
    elbo = likelihood.negative_elbo(model, params, batch_stats, images, None, key)
    mc_minus_closed_kl = (log_qz - log_pz) - _np_kl(mu, log_var)
    assert np.max(np.abs(mc_minus_closed_kl)) > 0.1
    np.testing.assert_allclose(np.asarray(got) - np.asarray(elbo), mc_minus_closed_kl, atol=2e-3)


def test_iwae_one_sample_averages_to_negative_elbo(vae_vars):
    """Over many keys the k = 1 estimate (MC KL) and negative_elbo (closed-form KL) agree in mean."""
    params, batch_stats = _sharpened(vae_vars[0]), vae_vars[1]
    images = _images()
    iwae1, elbo = [], []
    for keys in (_iwae_keys(), jax.random.split(jax.random.key(2), 32)):
        iwae1.append(np.asarray(_iwae_over_keys(1)(params, batch_stats, images, keys), np.float64))
        elbo.append(np.asarray(_negative_elbo_over_keys(params, batch_stats, images, keys), np.float64))
    iwae1, elbo = np.concatenate(iwae1), np.concatenate(elbo)  # (64 keys, B)
    difference = iwae1 - elbo  # same z per key: the difference is the KL's Monte Carlo error
    assert difference.std() > 0.1  # it is a Monte Carlo error, not zero
    assert abs(difference.mean()) < 5 * difference.std() / math.sqrt(difference.size)  # over all images
    per_image_error = difference.std(axis=0) / math.sqrt(difference.shape[0])
    np.testing.assert_array_less(np.abs(iwae1.mean(axis=0) - elbo.mean(axis=0)), 5 * per_image_error)


def test_iwae_bound_tightens_with_more_samples(vae_vars):
    """Averaged over images and keys: iwae(k=1) >= iwae(k=10) >= iwae(k=100)."""
    params, batch_stats = _sharpened(vae_vars[0]), vae_vars[1]
    images, keys = _images(), _iwae_keys()
    # fewer keys for larger k (k decodes per key); all estimates are of the same images
    means = [float(np.mean(_iwae_over_keys(k)(params, batch_stats, images, keys[:n])))
             for k, n in ((1, 32), (10, 8), (100, 4))]
    assert means[0] > means[1] > means[2], means


def _label_sensitive(params):
    """The CVAE's params with the one-hot rows of the decoder's first kernel scaled up 100-fold."""
    dense = dict(params["decoder"]["Dense_0"])
    dense["kernel"] = dense["kernel"].at[LATENT:].multiply(100.0)
    return {**params, "decoder": {**params["decoder"], "Dense_0": dense}}


def test_cvae_likelihood_reads_labels(cvae):
    model, params, batch_stats = cvae
    params = _label_sensitive(params)
    batch, key = _batch(), jax.random.key(3)
    nll = likelihood.iwae_negative_log_likelihood(model, params, batch_stats, batch["image"], batch["label"], key, 2)
    chex.assert_shape(nll, (BATCH,))
    other = likelihood.negative_elbo(model, params, batch_stats, batch["image"], (batch["label"] + 1) % 10, key)
    same = likelihood.negative_elbo(model, params, batch_stats, batch["image"], batch["label"], key)
    assert np.min(np.abs(np.asarray(other) - np.asarray(same))) > 1e-3  # ~16 float32 ulps at 543 nats
    with pytest.raises(ValueError, match="needs labels"):
        likelihood.negative_elbo(model, params, batch_stats, batch["image"], None, key)


def test_posterior_moments_over_a_split(vae_vars):
    params, batch_stats = vae_vars
    model, dataset = _vae(), _dataset(5)
    mu, log_var = likelihood.posterior_moments(model, params, batch_stats, dataset, batch_size=3)
    assert isinstance(mu, np.ndarray) and isinstance(log_var, np.ndarray)
    chex.assert_shape([mu, log_var], (5, LATENT))
    images = jnp.asarray(dataset["image"], jnp.float32)[..., None] / 255.0
    mu_direct, log_var_direct = model.posterior(params, batch_stats, images)
    np.testing.assert_allclose(mu, mu_direct, atol=1e-5)
    np.testing.assert_allclose(log_var, log_var_direct, atol=1e-5)


def test_evaluate_likelihood_keys_shapes_and_values(vae_vars):
    params, batch_stats = vae_vars
    model, dataset = _vae(), _dataset(4)
    result = likelihood.evaluate_likelihood(model, params, batch_stats, dataset, jax.random.key(0), num_samples=3,
                                            batch_size=2, sample_chunk=2)
    assert set(result) == {"negative_elbo", "iwae_nll"}
    for value in result.values():
        assert isinstance(value, np.ndarray)
        chex.assert_shape(value, (4,))
        assert np.all(np.isfinite(value)) and np.all(value > 0)
    # the untrained model's posterior is close to its prior and its decoder barely reads z,
    # so every estimate of an image is within a fraction of a nat of the same image's
    # direct negative ELBO, while the images differ by nats
    images = jnp.asarray(dataset["image"], jnp.float32)[..., None] / 255.0
    direct = np.asarray(likelihood.negative_elbo(model, params, batch_stats, images, None, jax.random.key(9)))
    assert np.min(np.diff(np.sort(direct))) > 0.5
    np.testing.assert_allclose(result["negative_elbo"], direct, atol=0.2)
    np.testing.assert_allclose(result["iwae_nll"], direct, atol=0.2)


def test_evaluate_likelihood_rejects_non_positive_sizes(vae_vars):
    params, batch_stats = vae_vars
    with pytest.raises(ValueError, match="positive"):
        likelihood.evaluate_likelihood(_vae(), params, batch_stats, _dataset(2), jax.random.key(0), num_samples=0)


@pytest.mark.parametrize("call", [
    lambda m: likelihood.log_importance_weights(m, None, None, _images(2), None, jax.random.key(0), 2),
    lambda m: likelihood.iwae_negative_log_likelihood(m, None, None, _images(2), None, jax.random.key(0), 2),
    lambda m: likelihood.negative_elbo(m, None, None, _images(2), None, jax.random.key(0)),
    lambda m: likelihood.evaluate_likelihood(m, None, None, _dataset(2), jax.random.key(0), 2),
    lambda m: likelihood.posterior_moments(m, None, None, _dataset(2)),
], ids=["log_importance_weights", "iwae", "negative_elbo", "evaluate_likelihood", "posterior_moments"])
def test_likelihood_needs_a_posterior(call):
    """A deterministic autoencoder has no q(z | x): every likelihood function says so."""
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=2))
    assert model.posterior is None
    with pytest.raises(ValueError, match="posterior"):
        call(model)


# ------------------------------------------------------------ WAE: IMQ kernel and MMD

def test_imq_kernel_hand_values():
    x = jnp.asarray([[0.0, 0.0], [1.0, 1.0]], jnp.float32)
    y = jnp.asarray([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]], jnp.float32)
    got = losses.imq_kernel(x, y, 2.0)
    chex.assert_shape(got, (2, 3))
    # squared distances [[1, 9, 2], [1, 5, 0]]; C / (C + d) with C = 2
    np.testing.assert_allclose(got, [[2 / 3, 2 / 11, 1 / 2], [2 / 3, 2 / 7, 1.0]], rtol=1e-6)


def test_mmd_imq_matches_numpy_unbiased_estimate():
    rng = np.random.default_rng(3)
    codes, prior = rng.normal(0, 1, (5, 3)), rng.normal(0.5, 1, (4, 3))

    def kernel(a, b, c):
        return c / (c + ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    expected = 0.0
    for s in losses.IMQ_SCALES:
        c = s * 2 * 3 * 1.0
        kxx, kyy, kxy = kernel(codes, codes, c), kernel(prior, prior, c), kernel(codes, prior, c)
        expected += ((kxx.sum() - np.trace(kxx)) / 20 + (kyy.sum() - np.trace(kyy)) / 12 - 2 * kxy.mean())
    got = losses.mmd_imq(jnp.asarray(codes, jnp.float32), jnp.asarray(prior, jnp.float32))
    chex.assert_shape(got, ())
    np.testing.assert_allclose(float(got), expected, rtol=1e-4, atol=1e-6)


def test_mmd_imq_near_zero_for_one_distribution_and_positive_for_two():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    a = jax.random.normal(k1, (400, 2))
    b = jax.random.normal(k2, (400, 2))
    shifted = jax.random.normal(k3, (400, 2)) + 3.0
    same = float(losses.mmd_imq(a, b))
    different = float(losses.mmd_imq(a, shifted))
    assert abs(same) < 0.02
    assert different > 1.0
    assert different > 50 * abs(same)


@pytest.mark.parametrize("codes_shape, prior_shape", [((1, 2), (4, 2)), ((4, 2), (1, 2)), ((4, 2), (4, 3))])
def test_mmd_imq_rejects_too_few_samples_or_mismatched_sizes(codes_shape, prior_shape):
    with pytest.raises(ValueError, match=">= 2"):
        losses.mmd_imq(jnp.zeros(codes_shape), jnp.zeros(prior_shape))


def test_wae_loss_is_mean_bce_plus_weighted_mmd():
    config = wae.WAEConfig(latent_dim=LATENT, mmd_weight=0.3)
    model = wae.make_model(config)
    assert model.posterior is None
    params, batch_stats = model.init(jax.random.key(2))
    batch, key = _batch(), jax.random.key(12)
    loss, (new_stats, metrics) = model.phases[0].loss_fn(params, batch_stats, batch, key, 0)
    assert set(metrics) == {"bce", "mmd"}
    np.testing.assert_allclose(float(loss), float(metrics["bce"]) + 0.3 * float(metrics["mmd"]), rtol=1e-6)
    # recomputed from the modules in train mode and prior samples from the same key
    codes = model.encode(params, batch_stats, batch["image"], train=True)
    chex.assert_shape(codes, (BATCH, LATENT))
    logits = model.decode(params, batch_stats, codes, train=True)
    chex.assert_shape(logits, (BATCH, 28, 28, 1))
    np.testing.assert_allclose(float(metrics["bce"]), _np_bce(logits, batch["image"]).mean(), rtol=1e-5)
    mmd = losses.mmd_imq(codes, jax.random.normal(key, codes.shape))
    np.testing.assert_allclose(float(metrics["mmd"]), float(mmd), rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_equal_structs(new_stats, batch_stats)


# ------------------------------------------------------------ configs

NON_NEGATIVE = "kld_weight, reconstruction_weight, kl_warmup_steps and num_classes must be >= 0"


@pytest.mark.parametrize("bad, message", [
    (dict(latent_dim=0), "latent_dim must be positive"), (dict(latent_dim=-2), "latent_dim must be positive"),
    (dict(kld_weight=-0.1), NON_NEGATIVE), (dict(reconstruction_weight=-1.0), NON_NEGATIVE),
    (dict(kl_warmup_steps=-1), NON_NEGATIVE), (dict(num_classes=-1), NON_NEGATIVE),
    (dict(learning_rate=0.0), "learning_rate must be > 0"), (dict(weight_decay=-1e-5), "weight_decay >= 0"),
])
def test_vae_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        vae.VAEConfig(**bad)


@pytest.mark.parametrize("bad, message", [
    (dict(latent_dim=-1), "latent_dim must be positive"), (dict(latent_dim=0), "latent_dim must be positive"),
    (dict(mmd_weight=-1.0), "mmd_weight >= 0"), (dict(learning_rate=-1e-3), "learning_rate must be > 0"),
])
def test_wae_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        wae.WAEConfig(**bad)


def test_config_fields_carry_command_line_help():
    """Every field documents itself; num_classes comes from the data, not from a flag."""
    for config in (vae.VAEConfig, wae.WAEConfig):
        for field in dataclasses.fields(config):
            assert field.metadata.get("help"), f"{config.__name__}.{field.name} has no help"
    cli = {f.name: f.metadata.get("cli", True) for f in dataclasses.fields(vae.VAEConfig)}
    assert cli["num_classes"] is False and cli["kld_weight"] is True


def test_out_of_range_labels_are_rejected_outside_jit():
    """one_hot would silently turn label 10 or -1 into zeros; eager calls name the range instead."""
    from aejax.modules import condition_on_labels

    z = jnp.zeros((2, 3))
    for bad in ([0, 10], [-1, 2]):
        with pytest.raises(ValueError, match=r"\[0, 10\)"):
            condition_on_labels(z, jnp.asarray(bad, jnp.int32), 10)
    assert condition_on_labels(z, jnp.asarray([0, 9], jnp.int32), 10).shape == (2, 13)


def test_evaluate_negative_elbo_is_evaluate_likelihoods_without_the_iwae(vae_vars):
    params, batch_stats = vae_vars
    model, dataset = _vae(), _dataset(5)
    key = jax.random.key(3)
    both = likelihood.evaluate_likelihood(model, params, batch_stats, dataset, key, num_samples=2, batch_size=2)
    alone = likelihood.evaluate_negative_elbo(model, params, batch_stats, dataset, key, batch_size=2)
    chex.assert_shape(alone, (5,))
    np.testing.assert_allclose(alone, both["negative_elbo"], rtol=1e-6)
    other = likelihood.evaluate_negative_elbo(model, params, batch_stats, dataset, jax.random.key(4), batch_size=2)
    assert not np.array_equal(other, alone)  # a fresh draw of z
