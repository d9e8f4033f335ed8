"""The adversarial family: priors (aejax.priors), the AAE (aejax.aae), the disentangled
AAE (aejax.disentangled), the semi-supervised AAE (aejax.semi_supervised), the latent
Discriminator and label conditioning (aejax.modules) and the phase carry of train.apply_phases.

Kept small for a shared CPU: batches of 4 images, one initialisation per model variant
(module-scoped), each phase compiled once and run on its own from the same state.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch import nn as tnn

from aejax import aae, data, disentangled, losses, priors, vae
from aejax import semi_supervised as semi
from aejax import train as train_lib
from aejax.modules import Discriminator, apply_training, condition_on_labels

B = 4
NUM_CLASSES = 10
STYLE_DIM = 4
AAE_CONFIG = aae.AAEConfig()  # the lecture's: latent 2, batch_separate, 20 prior samples per code
DIS_CONFIG = disentangled.DisentangledConfig(latent_dim=STYLE_DIM, adversary_hidden=(32, 32))
SEMI_CONFIG = semi.SemiSupervisedConfig(latent_dim=STYLE_DIM, discriminator_hidden=(32, 32))


def user_prior(key, n):
    """A hand-written sampler, no ``Prior`` object: uniform on [-1, 1]^2."""
    return jax.random.uniform(key, (n, 2), jnp.float32, -1.0, 1.0)


# ------------------------------------------------------------------ helpers

def _max_abs_diff(a, b) -> float:
    """Largest absolute difference over two trees of the same structure (numpy: no per-shape compiles)."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(leaves_a, leaves_b))


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _torch_discriminator(latent: int = 2, batch_norm: bool = True, seed: int = 0) -> tnn.Sequential:
    """The lecture's discriminator; BatchNorm affine params and running stats randomised so the copy matters."""
    torch.manual_seed(seed)
    layers: list[tnn.Module] = []
    for a, b in ((latent, 512), (512, 256)):
        layers.append(tnn.Linear(a, b))
        if batch_norm:
            layers.append(tnn.BatchNorm1d(b))
        layers.append(tnn.LeakyReLU(0.2))
    net = tnn.Sequential(*layers, tnn.Linear(256, 1), tnn.Sigmoid())
    with torch.no_grad():
        for m in net:
            if isinstance(m, tnn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net


def _discriminator_to_flax(net: tnn.Sequential) -> tuple[dict, dict]:
    """(params, batch_stats) of aejax's Discriminator: Dense kernel = weight.T, BatchNorm scale/bias, mean/var."""
    params, stats, dense, bn = {}, {}, 0, 0
    for m in net:
        if isinstance(m, tnn.Linear):
            params[f"Dense_{dense}"] = {"kernel": jnp.asarray(_np(m.weight).T), "bias": jnp.asarray(_np(m.bias))}
            dense += 1
        elif isinstance(m, tnn.BatchNorm1d):
            params[f"BatchNorm_{bn}"] = {"scale": jnp.asarray(_np(m.weight)), "bias": jnp.asarray(_np(m.bias))}
            stats[f"BatchNorm_{bn}"] = {"mean": jnp.asarray(_np(m.running_mean)), "var": jnp.asarray(_np(m.running_var))}
            bn += 1
    return params, stats


def _batch_norms(net: tnn.Sequential) -> list[tnn.BatchNorm1d]:
    return [m for m in net if isinstance(m, tnn.BatchNorm1d)]


def _codes(n: int, seed: int = 0, shift: float = 1.0, scale: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, 2)) * scale + shift).astype(np.float32)


def _assert_phase_changed_only(before: train_lib.TrainState, after: train_lib.TrainState, phase: str,
                               changed: tuple[str, ...]):
    """``after`` (one phase run from ``before``) changed the params of ``changed`` only, and only its own opt state."""
    assert set(after.params) == set(before.params)
    for name in before.params:
        if name in changed:
            assert _max_abs_diff(before.params[name], after.params[name]) > 1e-5, name
        else:
            chex.assert_trees_all_equal(before.params[name], after.params[name])
    for name in before.opt_states:
        if name == phase:
            assert _max_abs_diff(before.opt_states[name], after.opt_states[name]) > 0
        else:
            chex.assert_trees_all_equal(before.opt_states[name], after.opt_states[name])
    assert int(after.step) == int(before.step) + 1


def _filled(tree, rng: np.random.Generator):
    """Concrete variables for a tree of shapes (``jax.eval_shape`` of an init): kernels and biases
    U(-1/sqrt(fan_in), +), BatchNorm at its initial state (scale 1, bias 0, mean 0, var 1)."""
    if "kernel" in tree:
        bound = 1.0 / math.sqrt(np.prod(tree["kernel"].shape[:-1]))
        return {k: jnp.asarray(rng.uniform(-bound, bound, v.shape), v.dtype) for k, v in tree.items()}
    if "scale" in tree or "mean" in tree:
        return {k: (jnp.ones if k in ("scale", "var") else jnp.zeros)(v.shape, v.dtype) for k, v in tree.items()}
    return {k: _filled(v, rng) for k, v in tree.items()}


def _state_without_compiling_init(model: train_lib.Model, seed: int) -> train_lib.TrainState:
    """create_train_state with variables of exactly the shapes ``model.init`` gives (traced, not compiled:
    compiling the conv networks' init costs ~5 s per model on CPU)."""
    shapes = jax.eval_shape(model.init, jax.random.key(seed))
    variables = (_filled(shapes[0], np.random.default_rng(seed)), _filled(shapes[1], None))
    chex.assert_trees_all_equal_shapes_and_dtypes(variables, shapes)
    return train_lib.create_train_state(model._replace(init=lambda key: variables), jax.random.key(seed))


@functools.cache
def _phase_runner(model: train_lib.Model, start: int, stop: int):
    """jit(apply_phases(model.phases[start:stop], state, batch)), compiled once per slice."""
    return jax.jit(functools.partial(train_lib.apply_phases, model.phases[start:stop]))


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def aae_dataset(mnist):
    test = mnist["test"]
    return {"image": jnp.asarray(test.images[:B]), "label": jnp.asarray(test.labels[:B], jnp.int32)}


@pytest.fixture(scope="module")
def aae_batch(aae_dataset):
    return data.gather_batch(aae_dataset, jnp.arange(B))


@pytest.fixture(scope="module")
def aae_setup():
    model = aae.make_model(AAE_CONFIG, user_prior)
    state = _state_without_compiling_init(model, 0)
    encode = jax.jit(model.encode, static_argnames="train")
    return model, state, encode


@pytest.fixture(scope="module")
def aae_runs(aae_setup, aae_batch, aae_dataset):
    """Each phase alone from the initial state, phase 2 after phase 1, and one full compiled step."""
    model, s0, encode = aae_setup
    codes0 = encode(s0.params, s0.batch_stats, aae_batch["image"], train=True)
    runs = {
        "autoencoder": _phase_runner(model, 0, 1)(s0, aae_batch)[0],
        "generator": _phase_runner(model, 1, 2)(s0, aae_batch)[0],
        "discriminator": _phase_runner(model, 2, 3)(s0, {**aae_batch, "codes": codes0})[0],
    }
    runs["autoencoder+generator"] = _phase_runner(model, 1, 2)(runs["autoencoder"], aae_batch)[0]
    step = train_lib.make_train_step(model.phases)
    runs["full"], runs["full_metrics"] = step(jax.tree.map(jnp.copy, s0), aae_dataset, jnp.arange(B))
    return runs


@pytest.fixture(scope="module")
def dis_setup():
    model = disentangled.make_model(DIS_CONFIG)
    return model, _state_without_compiling_init(model, 1)


@pytest.fixture(scope="module")
def semi_dataset(mnist):
    train = mnist["train"]
    small = data.Split(train.images[:1000], train.labels[:1000])
    labelled = np.sort(np.concatenate([np.flatnonzero(small.labels == digit)[:2] for digit in range(NUM_CLASSES)]))
    return semi.make_dataset(small, labelled)


@pytest.fixture(scope="module")
def semi_batch(semi_dataset):
    return semi.gather(semi_dataset, jnp.arange(B))


@pytest.fixture(scope="module")
def semi_setup():
    model = semi.make_model(SEMI_CONFIG)
    return model, _state_without_compiling_init(model, 2)


# ================================================================== Discriminator vs PyTorch

@pytest.mark.parametrize("batch_norm, expected", [(True, 134_657), (False, 133_121)])
def test_discriminator_parameter_count_matches_torch(batch_norm, expected):
    net = _torch_discriminator(batch_norm=batch_norm)
    assert sum(p.numel() for p in net.parameters()) == expected
    variables = jax.eval_shape(lambda k: Discriminator(batch_norm=batch_norm).init(k, jnp.zeros((1, 2)), False),
                               jax.random.key(0))
    assert _count(variables["params"]) == expected
    if batch_norm:
        assert _count(variables["batch_stats"]) == 2 * (512 + 256)
        flax_params, flax_stats = _discriminator_to_flax(net)
        chex.assert_trees_all_equal_shapes(flax_params, variables["params"])
        chex.assert_trees_all_equal_shapes(flax_stats, variables["batch_stats"])
    else:
        assert "batch_stats" not in variables or not variables["batch_stats"]
        assert not any(name.startswith("BatchNorm") for name in variables["params"])


def test_discriminator_matches_torch_in_train_and_eval_mode():
    net = _torch_discriminator(seed=3)
    params, stats = _discriminator_to_flax(net)
    x = _codes(16, seed=1)
    module = Discriminator()

    net.train()
    with torch.no_grad():
        expected = _np(net(torch.from_numpy(x)))
    logits, new_stats = apply_training(module, {"params": params, "batch_stats": stats}, jnp.asarray(x))
    chex.assert_shape(logits, (16, 1))
    np.testing.assert_allclose(jax.nn.sigmoid(logits), expected, atol=1e-5, rtol=1e-5)
    for i, bn in enumerate(_batch_norms(net)):  # momentum 0.1, unbiased running variance
        np.testing.assert_allclose(new_stats[f"BatchNorm_{i}"]["mean"], _np(bn.running_mean), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(new_stats[f"BatchNorm_{i}"]["var"], _np(bn.running_var), atol=1e-5, rtol=1e-5)
    # the update really moved the statistics (so the comparison above is not vacuous)
    assert _max_abs_diff(new_stats, stats) > 1e-2

    net.eval()
    y = _codes(5, seed=2, shift=-0.5)
    with torch.no_grad():
        expected_eval = _np(net(torch.from_numpy(y)))
    eval_logits = module.apply({"params": params, "batch_stats": new_stats}, jnp.asarray(y), False)
    np.testing.assert_allclose(jax.nn.sigmoid(eval_logits), expected_eval, atol=1e-5, rtol=1e-5)
    # eval mode: a row's verdict does not depend on its batch
    alone = module.apply({"params": params, "batch_stats": new_stats}, jnp.asarray(y[:1]), False)
    np.testing.assert_allclose(alone, eval_logits[:1], atol=1e-6)


def test_discriminator_without_batch_norm_matches_torch():
    net = _torch_discriminator(batch_norm=False, seed=4)
    params, stats = _discriminator_to_flax(net)
    assert stats == {}
    x = _codes(6, seed=3)
    with torch.no_grad():
        expected = _np(net(torch.from_numpy(x)))
    module = Discriminator(batch_norm=False)
    logits, new_stats = apply_training(module, {"params": params}, jnp.asarray(x))
    assert new_stats == {}
    np.testing.assert_allclose(jax.nn.sigmoid(logits), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(module.apply({"params": params}, jnp.asarray(x), False), logits, atol=1e-6)


# ================================================================== shapes of every head

def test_aae_encode_decode_shapes(aae_setup, aae_batch):
    model, state, encode = aae_setup
    for train in (False, True):
        z = encode(state.params, state.batch_stats, aae_batch["image"], train=train)
        chex.assert_shape(z, (B, AAE_CONFIG.latent_dim))
        chex.assert_type(z, jnp.float32)
    logits = jax.jit(model.decode)(state.params, state.batch_stats, z)
    chex.assert_shape(logits, (B, 28, 28, 1))
    chex.assert_type(logits, jnp.float32)
    chex.assert_tree_all_finite(logits)
    assert set(state.params) == {"encoder", "decoder", "discriminator"}
    assert set(state.opt_states) == {"autoencoder", "generator", "discriminator"}


@pytest.mark.parametrize("variant", ["disentangled", "semi_supervised"])
def test_label_head_models_shapes_and_decoding_by_labels_or_probabilities(variant, request, aae_batch):
    model, state = request.getfixturevalue("dis_setup" if variant == "disentangled" else "semi_setup")
    params, stats, images = state.params, state.batch_stats, aae_batch["image"]
    chex.assert_shape(params["encoder"]["Dense_0"]["kernel"], (2048, NUM_CLASSES + STYLE_DIM))
    chex.assert_shape(params["decoder"]["Dense_0"]["kernel"], (STYLE_DIM + NUM_CLASSES, 512))
    style = jax.jit(model.encode)(params, stats, images)
    chex.assert_shape(style, (B, STYLE_DIM))
    label_logits = jax.jit(model.classify)(params, stats, images)
    chex.assert_shape(label_logits, (B, NUM_CLASSES))
    chex.assert_type([style, label_logits], jnp.float32)
    assert not np.allclose(label_logits[:, :STYLE_DIM], style)  # two different slices of the encoder output

    decode = jax.jit(model.decode)
    labels = jnp.asarray([0, 3, 7, 9], jnp.int32)
    by_labels = decode(params, stats, style, labels)
    by_probs = decode(params, stats, style, jax.nn.softmax(label_logits))
    by_one_hot = decode(params, stats, style, jax.nn.one_hot(labels, NUM_CLASSES))
    chex.assert_shape([by_labels, by_probs, by_one_hot], (B, 28, 28, 1))
    chex.assert_type([by_labels, by_probs, by_one_hot], jnp.float32)
    np.testing.assert_allclose(by_one_hot, by_labels, atol=1e-6)
    other = decode(params, stats, style, (labels + 1) % NUM_CLASSES)
    assert _max_abs_diff(other, by_labels) > 1e-6  # the labels reach the decoder


# ================================================================== each phase updates only its modules

def test_aae_autoencoder_phase_updates_encoder_and_decoder_only(aae_setup, aae_runs):
    s0 = aae_setup[1]
    _assert_phase_changed_only(s0, aae_runs["autoencoder"], "autoencoder", ("encoder", "decoder"))
    chex.assert_trees_all_equal(s0.batch_stats["discriminator"], aae_runs["autoencoder"].batch_stats["discriminator"])


def test_aae_generator_phase_updates_encoder_only(aae_setup, aae_runs):
    _assert_phase_changed_only(aae_setup[1], aae_runs["generator"], "generator", ("encoder",))


def test_aae_discriminator_phase_updates_discriminator_only(aae_setup, aae_runs):
    s0, after = aae_setup[1], aae_runs["discriminator"]
    _assert_phase_changed_only(s0, after, "discriminator", ("discriminator",))
    for name in ("encoder", "decoder"):
        chex.assert_trees_all_equal(s0.batch_stats[name], after.batch_stats[name])
    assert _max_abs_diff(s0.batch_stats["discriminator"], after.batch_stats["discriminator"]) > 0


def test_disentangled_confusion_phase_updates_encoder_only(dis_setup, aae_batch):
    model, s0 = dis_setup
    batch = {**aae_batch, "label": jnp.asarray([0, 3, 7, 9], jnp.int32)}
    after, metrics = _phase_runner(model, 1, 2)(s0, batch)
    _assert_phase_changed_only(s0, after, "confusion", ("encoder",))
    assert float(metrics["loss"]) >= DIS_CONFIG.confusion_weight * math.log(NUM_CLASSES) - 1e-6


def test_disentangled_label_adversary_phase_updates_adversary_only(dis_setup, aae_batch):
    model, s0 = dis_setup
    labels = jnp.asarray([0, 3, 7, 9], jnp.int32)
    style = jnp.asarray(np.random.default_rng(0).normal(size=(B, STYLE_DIM)), jnp.float32)
    after, metrics = _phase_runner(model, 2, 3)(s0, {**aae_batch, "label": labels, "style": style})
    _assert_phase_changed_only(s0, after, "label_adversary", ("label_adversary",))
    chex.assert_trees_all_equal(s0.batch_stats, after.batch_stats)
    # its loss is the adversary's cross-entropy on the given style codes, standardised over the batch
    adversary = disentangled.make_modules(DIS_CONFIG)[2]
    standardized = (style - style.mean(0)) / np.sqrt(style.var(0) + 1e-5)
    predicted = adversary.apply({"params": s0.params["label_adversary"]}, standardized)
    expected = optax.softmax_cross_entropy_with_integer_labels(predicted, labels).mean()
    np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)


def test_semi_supervised_discriminators_phase_updates_both_discriminators_only(semi_setup, semi_batch):
    model, s0 = semi_setup
    after, metrics = _phase_runner(model, 1, 2)(s0, semi_batch)
    _assert_phase_changed_only(s0, after, "discriminators", ("label_discriminator", "style_discriminator"))
    np.testing.assert_allclose(float(metrics["loss"]), float(metrics["label_loss"] + metrics["style_loss"]), rtol=1e-6)


def test_semi_supervised_generator_phase_updates_encoder_only(semi_setup, semi_batch):
    model, s0 = semi_setup
    after, _ = _phase_runner(model, 2, 3)(s0, semi_batch)
    _assert_phase_changed_only(s0, after, "generator", ("encoder",))


def test_semi_supervised_supervised_phase_updates_encoder_only(semi_setup, semi_batch):
    model, s0 = semi_setup
    assert model.phases[3].name == "supervised"
    after, metrics = _phase_runner(model, 3, 4)(s0, semi_batch)
    _assert_phase_changed_only(s0, after, "supervised", ("encoder",))
    # its loss reads the labelled images and labels, in train mode
    logits = jax.jit(model.classify, static_argnames="train")(s0.params, s0.batch_stats, semi_batch["labelled_image"],
                                                              train=True)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, semi_batch["labelled_label"]).mean()
    np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)


def test_semi_supervised_phases_with_and_without_labels():
    with_labels = semi.make_model(SEMI_CONFIG)
    without = semi.make_model(semi.SemiSupervisedConfig(latent_dim=STYLE_DIM, discriminator_hidden=(32, 32),
                                                        semi_supervised=False))
    assert [p.name for p in with_labels.phases] == ["autoencoder", "discriminators", "generator", "supervised"]
    assert [p.name for p in without.phases] == ["autoencoder", "discriminators", "generator"]
    assert [p.trainable for p in without.phases] == [("encoder", "decoder"),
                                                     ("label_discriminator", "style_discriminator"), ("encoder",)]


# ================================================================== the carry: the discriminator judges phase-2 codes

def test_full_aae_step_discriminator_judges_codes_from_before_the_generator_update(aae_setup, aae_runs, aae_batch):
    model, s0, encode = aae_setup
    after_ae, after_gen, full = aae_runs["autoencoder"], aae_runs["autoencoder+generator"], aae_runs["full"]
    # the full step runs autoencoder then generator: the same encoder/decoder as the two phases run by hand
    chex.assert_trees_all_close(full.params["encoder"], after_gen.params["encoder"], atol=1e-6)
    chex.assert_trees_all_close(full.params["decoder"], after_gen.params["decoder"], atol=1e-6)

    codes_before = encode(after_ae.params, after_ae.batch_stats, aae_batch["image"], train=True)
    codes_after = encode(after_gen.params, after_gen.batch_stats, aae_batch["image"], train=True)
    assert _max_abs_diff(codes_before, codes_after) > 1e-4
    phase = model.phases[2]
    key = jax.random.fold_in(jax.random.split(s0.key)[1], 2)  # apply_phases' key for phase index 2

    @jax.jit
    def by_hand(codes):
        def loss(sub):
            return phase.loss_fn({**after_gen.params, **sub}, after_gen.batch_stats,
                                 {**aae_batch, "codes": codes}, key, s0.step)
        trainable = {"discriminator": after_gen.params["discriminator"]}
        (value, (stats, _)), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        updates, _ = phase.optimizer.update(grads, s0.opt_states["discriminator"], trainable)
        return value, stats["discriminator"], optax.apply_updates(trainable, updates)["discriminator"]

    loss_before, stats_before, params_before = by_hand(codes_before)
    loss_after, stats_after, _ = by_hand(codes_after)
    metrics = aae_runs["full_metrics"]
    np.testing.assert_allclose(float(metrics["discriminator/loss"]), float(loss_before), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(full.batch_stats["discriminator"], stats_before, atol=1e-5, rtol=1e-5)
    # the Dense biases before a BatchNorm get a (mathematically) zero gradient, whose rounding noise
    # Adam's first step turns into +-lr: for them, only check a step of at most lr each way
    got, expected = full.params["discriminator"], params_before
    for name in got:
        for leaf in got[name]:
            pre_norm_bias = leaf == "bias" and name in ("Dense_0", "Dense_1")
            atol = 2.01 * AAE_CONFIG.learning_rate if pre_norm_bias else 1e-6
            np.testing.assert_allclose(got[name][leaf], expected[name][leaf], atol=atol, err_msg=f"{name}/{leaf}")
    # codes of the updated encoder would have given another loss and other running statistics
    assert abs(float(loss_after) - float(loss_before)) > 1e-5
    assert _max_abs_diff(stats_after, stats_before) > 1e-5
    assert _max_abs_diff(full.batch_stats["discriminator"], stats_after) > 1e-5


def test_shared_generator_optimizer_adds_the_generator_term_to_the_autoencoder_phase(aae_setup, aae_batch):
    """Two phases: the autoencoder loss is the separate model's autoencoder + generator losses at the
    same parameters; one Adam moves encoder and decoder; the discriminator judges that phase's codes."""
    separate = aae.make_model(aae.AAEConfig(discriminator_norm="none"), user_prior)
    shared = aae.make_model(aae.AAEConfig(discriminator_norm="none", generator_optimizer="shared"), user_prior)
    assert [phase.name for phase in shared.phases] == ["autoencoder", "discriminator"]
    s0 = _state_without_compiling_init(shared, 1)
    assert set(s0.opt_states) == {"autoencoder", "discriminator"}
    key = jax.random.key(4)

    def loss(model, index):
        return model.phases[index].loss_fn(s0.params, s0.batch_stats, aae_batch, key, s0.step)

    total, (_, metrics, carry) = jax.jit(lambda: loss(shared, 0))()
    bce, generator = jax.jit(lambda: (loss(separate, 0)[0], loss(separate, 1)[0]))()
    assert float(generator) > 1e-4
    np.testing.assert_allclose(float(total), float(bce + generator), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["generator"]), float(generator), rtol=1e-6)
    codes0 = aae_setup[2](s0.params, s0.batch_stats, aae_batch["image"], train=True)
    chex.assert_trees_all_close(carry["codes"], codes0, atol=1e-6)

    after_ae = _phase_runner(shared, 0, 1)(s0, aae_batch)[0]
    _assert_phase_changed_only(s0, after_ae, "autoencoder", ("encoder", "decoder"))
    full, full_metrics = _phase_runner(shared, 0, 2)(s0, aae_batch)
    disc_key = jax.random.fold_in(jax.random.split(s0.key)[1], 1)  # apply_phases' key for phase index 1
    by_hand = shared.phases[1].loss_fn(after_ae.params, after_ae.batch_stats, {**aae_batch, "codes": codes0}, disc_key, s0.step)[0]
    np.testing.assert_allclose(float(full_metrics["discriminator/loss"]), float(by_hand), rtol=1e-5)
    codes1 = aae_setup[2](after_ae.params, after_ae.batch_stats, aae_batch["image"], train=True)
    with_new_codes = shared.phases[1].loss_fn(after_ae.params, after_ae.batch_stats, {**aae_batch, "codes": codes1}, disc_key, s0.step)[0]
    assert abs(float(with_new_codes) - float(by_hand)) > 1e-6  # the codes of the updated encoder differ


def test_apply_phases_carry_joins_later_batches_without_gradient():
    """A hand-made two-phase model: phase 1 carries its output h, phase 2 reads batch["h"]."""
    first_layer, second_layer = nn.Dense(3), nn.Dense(1)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2)), jnp.float32)

    def init(key):
        k1, k2 = jax.random.split(key)
        return ({"a": first_layer.init(k1, x)["params"], "b": second_layer.init(k2, jnp.zeros((1, 3)))["params"]}, {})

    def first_loss(params, batch_stats, batch, key, step):
        assert "h" not in batch  # the carry reaches later phases only
        h = first_layer.apply({"params": params["a"]}, batch["x"])
        return jnp.mean(h ** 2), (batch_stats, {}, {"h": h})

    def second_loss(params, batch_stats, batch, key, step):
        return jnp.sum(second_layer.apply({"params": params["b"]}, batch["h"])), (batch_stats, {"seen_h": batch["h"]})

    phases = (train_lib.Phase("first", first_loss, optax.sgd(0.1), ("a",)),
              train_lib.Phase("second", second_loss, optax.sgd(0.1), ("a", "b")))
    model = train_lib.Model(init=init, phases=phases, encode=None, decode=None)
    state = train_lib.create_train_state(model, jax.random.key(0))
    new_state, metrics = jax.jit(functools.partial(train_lib.apply_phases, phases))(state, {"x": x})

    a0 = state.params["a"]
    expected_h = x @ a0["kernel"] + a0["bias"]  # phase 1's output, before its update
    np.testing.assert_allclose(metrics["second/seen_h"], expected_h, rtol=1e-6, atol=1e-6)
    assert "second/h" not in metrics and "first/h" not in metrics
    a1 = new_state.params["a"]
    assert _max_abs_diff(a1, a0) > 1e-3  # phase 1 trained "a" ...
    assert not np.allclose(metrics["second/seen_h"], x @ a1["kernel"] + a1["bias"])  # ... after computing h
    # phase 2's gradient for "a" is zero: the SGD step of phase 2 left "a" as phase 1 made it
    only_first, _ = jax.jit(functools.partial(train_lib.apply_phases, phases[:1]))(state, {"x": x})
    chex.assert_trees_all_close(new_state.params["a"], only_first.params["a"], atol=1e-7)

    def second_loss_of_a(a):
        return train_lib.apply_phases(phases, state.replace(params={**state.params, "a": a}), {"x": x})[1]["second/loss"]

    chex.assert_trees_all_equal(jax.jit(jax.grad(second_loss_of_a))(a0), jax.tree.map(jnp.zeros_like, a0))
    # without the stop-gradient, the same loss would depend on "a"
    direct = jax.grad(lambda a: jnp.sum(second_layer.apply({"params": state.params["b"]},
                                                            first_layer.apply({"params": a}, x))))(a0)
    assert _max_abs_diff(direct, jax.tree.map(jnp.zeros_like, a0)) > 1e-3


# ================================================================== a user-written prior; config; prior_match

def test_aae_trains_a_step_with_a_user_written_sampler(aae_setup, aae_runs, aae_batch):
    model, s0, _ = aae_setup
    full, metrics = aae_runs["full"], aae_runs["full_metrics"]
    expected_keys = {"autoencoder/loss", "autoencoder/bce", "generator/loss", "generator/codes_called_prior",
                     "discriminator/loss", "discriminator/balanced_accuracy"}
    assert set(metrics) == expected_keys
    chex.assert_tree_all_finite(metrics)
    assert 0.0 <= float(metrics["discriminator/balanced_accuracy"]) <= 1.0
    assert int(full.step) == 1
    for name in ("encoder", "decoder", "discriminator"):
        assert _max_abs_diff(full.params[name], s0.params[name]) > 1e-5
    for name in full.opt_states:
        assert _max_abs_diff(full.opt_states[name], s0.opt_states[name]) > 0
    assert not np.array_equal(jax.random.key_data(full.key), jax.random.key_data(s0.key))
    # the discriminator phase draws from this sampler: another prior gives another loss for the same codes
    codes = jnp.asarray(_codes(B))
    key = jax.random.key(9)
    mine = model.phases[2].loss_fn(s0.params, s0.batch_stats, {"codes": codes}, key, 0)[0]
    other_model = aae.make_model(AAE_CONFIG, priors.standard_normal(2))
    other = other_model.phases[2].loss_fn(s0.params, s0.batch_stats, {"codes": codes}, key, 0)[0]
    assert abs(float(mine) - float(other)) > 1e-4


@pytest.mark.parametrize("sampler", [
    lambda key, n: jnp.zeros((n, 3)),
    lambda key, n: jnp.zeros((n,)),
    lambda key, n: jnp.zeros((5, 2)),
])
def test_make_model_rejects_a_sampler_of_the_wrong_shape(sampler):
    with pytest.raises(ValueError, match="prior"):
        aae.make_model(AAE_CONFIG, sampler)


def test_make_model_checks_the_prior_dimension_against_latent_dim():
    aae.make_model(aae.AAEConfig(latent_dim=3), priors.standard_normal(3))  # accepted
    with pytest.raises(ValueError):
        aae.make_model(aae.AAEConfig(latent_dim=3), priors.uniform_box())


@pytest.mark.parametrize("kwargs", [
    {"discriminator_norm": "layer"}, {"discriminator_norm": "batch"}, {"latent_dim": 0},
    {"prior_samples_per_code": 0}, {"learning_rate": 0.0}, {"generator_weight": -1.0},
    {"generator_learning_rate": 0.0}, {"discriminator_learning_rate": -1e-3},
    {"gradient_penalty": -1.0, "discriminator_norm": "none"},
    {"gradient_penalty": 1.0},  # the lecture's BatchNorm couples the samples: no per-sample gradient
    {"gradient_penalty": 1.0, "discriminator_norm": "batch_joint"},
    {"generator_optimizer": "adam"}, {"generator_optimizer": "shared", "generator_learning_rate": 1e-4},
])
def test_aae_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        aae.AAEConfig(**kwargs)
    assert set(aae.DISCRIMINATOR_NORMS) == {"batch_separate", "batch_joint", "none"}


def test_prior_match_counts_support_and_discriminator_verdicts():
    net = _torch_discriminator(seed=5)
    with torch.no_grad():  # sharpen the verdicts so that both classes get some answers right and some wrong
        net[-2].weight.mul_(20.0)
    params, stats = _discriminator_to_flax(net)
    net.eval()
    prior = priors.uniform_box(-1.0, 1.0)
    codes = np.asarray([[0, 0], [0.5, -0.5], [1.5, 0], [0, -3], [0.9, 0.9], [2, 2], [-0.99, 0.2], [5, 5],
                        [-1, 1], [1.01, 0]], np.float32)
    inside = np.all((codes >= -1) & (codes <= 1), axis=1)
    assert inside.sum() == 5
    key = jax.random.key(3)
    result = aae.prior_match(AAE_CONFIG, {"discriminator": params}, {"discriminator": stats}, codes, prior, key)
    assert result["prior"] == prior.name
    assert result["inside_support"] == pytest.approx(inside.mean())

    samples = np.array(prior(key, len(codes)))
    with torch.no_grad():
        p_codes = _np(net(torch.from_numpy(codes)))[:, 0]
        p_prior = _np(net(torch.from_numpy(samples)))[:, 0]
    assert np.min(np.abs(np.concatenate([p_codes, p_prior]) - 0.5)) > 1e-4  # no verdict on the fence
    codes_right, prior_right = np.mean(p_codes < 0.5), np.mean(p_prior > 0.5)
    assert result["codes_called_codes"] == pytest.approx(codes_right)
    assert result["prior_called_prior"] == pytest.approx(prior_right)
    assert 0.0 <= result["discriminator_accuracy"] <= 1.0
    assert result["discriminator_accuracy"] == pytest.approx(0.5 * (codes_right + prior_right))
    np.testing.assert_allclose(result["code_min"], codes.min(0))
    np.testing.assert_allclose(result["code_max"], codes.max(0))
    with pytest.raises(ValueError, match="codes must have shape"):
        aae.prior_match(AAE_CONFIG, {"discriminator": params}, {"discriminator": stats}, codes[:, :1], prior, key)


# ================================================================== discriminator_norm options

@pytest.mark.parametrize("norm", ["batch_separate", "batch_joint"])
def test_discriminator_phase_batch_statistics_follow_the_norm_option(norm):
    per_code = 3
    model = aae.make_model(aae.AAEConfig(discriminator_norm=norm, prior_samples_per_code=per_code), user_prior)
    net = _torch_discriminator(seed=6)
    params, stats = _discriminator_to_flax(net)
    codes = _codes(B, seed=4, shift=1.5)
    key = jax.random.key(11)
    samples = np.array(user_prior(key, B * per_code))

    loss, (new_stats, metrics) = jax.jit(model.phases[2].loss_fn)(
        {"discriminator": params}, {"discriminator": stats}, {"codes": jnp.asarray(codes)}, key, 0)
    net.train()
    with torch.no_grad():
        if norm == "batch_separate":  # two train-mode calls: codes, then prior samples
            out = torch.cat([net(torch.from_numpy(codes)), net(torch.from_numpy(samples))])
        else:  # one call on the concatenation
            out = net(torch.from_numpy(np.concatenate([codes, samples])))
    targets = torch.cat([torch.zeros(B, 1), torch.ones(B * per_code, 1)])
    expected_loss = float(torch.nn.functional.binary_cross_entropy(out, targets))
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5)
    for i, bn in enumerate(_batch_norms(net)):
        np.testing.assert_allclose(new_stats["discriminator"][f"BatchNorm_{i}"]["mean"], _np(bn.running_mean),
                                   atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(new_stats["discriminator"][f"BatchNorm_{i}"]["var"], _np(bn.running_var),
                                   atol=1e-5, rtol=1e-4)
    # the first BatchNorm's running mean by hand: one PyTorch update per call
    w, b = np.asarray(params["Dense_0"]["kernel"], np.float64), np.asarray(params["Dense_0"]["bias"], np.float64)
    m0 = np.asarray(stats["BatchNorm_0"]["mean"], np.float64)
    mean_codes, mean_prior = (codes @ w + b).mean(0), (samples @ w + b).mean(0)
    mean_both = (np.concatenate([codes, samples]) @ w + b).mean(0)
    separate = 0.9 * (0.9 * m0 + 0.1 * mean_codes) + 0.1 * mean_prior
    joint = 0.9 * m0 + 0.1 * mean_both
    expected, wrong = (separate, joint) if norm == "batch_separate" else (joint, separate)
    got = np.asarray(new_stats["discriminator"]["BatchNorm_0"]["mean"])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.max(np.abs(got - wrong)) > 1e-3
    p = _np(out)[:, 0]
    np.testing.assert_allclose(float(metrics["balanced_accuracy"]),
                               0.5 * (np.mean(p[:B] < 0.5) + np.mean(p[B:] > 0.5)), atol=1e-6)


def test_discriminator_norm_none_has_no_batch_statistics():
    model = aae.make_model(aae.AAEConfig(discriminator_norm="none"), user_prior)
    params, stats = jax.eval_shape(model.init, jax.random.key(0))
    assert stats["discriminator"] == {}
    assert _count(params["discriminator"]) == 133_121
    faithful_stats = jax.eval_shape(aae.make_model(AAE_CONFIG, user_prior).init, jax.random.key(0))[1]
    assert _count(faithful_stats["discriminator"]) == 2 * (512 + 256)

    net = _torch_discriminator(batch_norm=False, seed=7)
    disc_params, _ = _discriminator_to_flax(net)
    codes, key = _codes(B, seed=5), jax.random.key(12)
    samples = np.array(user_prior(key, B * AAE_CONFIG.prior_samples_per_code))
    loss, (new_stats, _) = model.phases[2].loss_fn({"discriminator": disc_params}, {"discriminator": {}},
                                                   {"codes": jnp.asarray(codes)}, key, 0)
    assert new_stats["discriminator"] == {}
    with torch.no_grad():
        out = net(torch.from_numpy(np.concatenate([codes, samples])))
    targets = torch.cat([torch.zeros(B, 1), torch.ones(len(samples), 1)])
    np.testing.assert_allclose(float(loss), float(torch.nn.functional.binary_cross_entropy(out, targets)), rtol=1e-5)


def test_r1_penalty_is_each_samples_squared_logit_gradient():
    z = jnp.asarray(_codes(6, seed=8))
    w = jnp.asarray([[3.0], [-4.0]])
    np.testing.assert_allclose(aae.r1_penalty(lambda x: x @ w, z), np.full(6, 25.0), rtol=1e-6)
    # a non-linear logit: sum of squares has gradient 2z, squared norm 4 |z|^2
    np.testing.assert_allclose(aae.r1_penalty(lambda x: jnp.sum(x * x, -1, keepdims=True), z),
                               4 * np.sum(np.square(np.asarray(z)), -1), rtol=1e-5)


@pytest.mark.parametrize("balanced", [False, True])
def test_discriminator_gradient_penalty_matches_torch_double_backward(balanced):
    """Loss and parameter gradients of BCE + gamma/2 * mean ||grad_z D(z)||^2 over the first
    B prior samples, against PyTorch's create_graph double backward."""
    per_code, gamma = 3, 2.5
    config = aae.AAEConfig(discriminator_norm="none", prior_samples_per_code=per_code, gradient_penalty=gamma,
                           discriminator_loss="balanced" if balanced else "pooled")
    model = aae.make_model(config, user_prior)
    net = _torch_discriminator(batch_norm=False, seed=9)
    params, _ = _discriminator_to_flax(net)
    codes, key = _codes(B, seed=6, shift=0.5), jax.random.key(13)
    samples = np.array(user_prior(key, B * per_code))

    def loss_fn(p):
        loss, (_, metrics) = model.phases[2].loss_fn({"discriminator": p}, {"discriminator": {}},
                                                     {"codes": jnp.asarray(codes)}, key, 0)
        return loss, metrics

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    logit_net = tnn.Sequential(*list(net)[:-1])  # the Sigmoid left to a logits BCE, as aejax does
    code_logits = logit_net(torch.from_numpy(codes))
    prior_in = torch.from_numpy(samples).requires_grad_(True)
    prior_logits = logit_net(prior_in)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    if balanced:
        t_bce = 0.5 * (bce(code_logits, torch.zeros_like(code_logits)) + bce(prior_logits, torch.ones_like(prior_logits)))
    else:
        t_bce = bce(torch.cat([code_logits, prior_logits]), torch.cat([torch.zeros(B, 1), torch.ones(B * per_code, 1)]))
    (z_grad,) = torch.autograd.grad(prior_logits[:B].sum(), prior_in, create_graph=True)
    r1 = z_grad[:B].pow(2).sum(1).mean()
    (t_bce + 0.5 * gamma * r1).backward()
    assert r1.item() > 1e-3  # the penalty is not vanishing, so the comparison means something
    np.testing.assert_allclose(float(metrics["r1"]), r1.item(), rtol=1e-4)
    np.testing.assert_allclose(float(loss), (t_bce + 0.5 * gamma * r1).item(), rtol=1e-5)
    for i, layer in enumerate(m for m in net if isinstance(m, tnn.Linear)):
        np.testing.assert_allclose(grads[f"Dense_{i}"]["kernel"], _np(layer.weight.grad).T, atol=1e-6, rtol=1e-4)
        np.testing.assert_allclose(grads[f"Dense_{i}"]["bias"], _np(layer.bias.grad), atol=1e-6, rtol=1e-4)
    # the first layer's gradient differs from the BCE's alone: the penalty reaches the weights
    bce_only = aae.make_model(dataclasses.replace(config, gradient_penalty=0.0), user_prior)
    grads_bce = jax.grad(lambda p: bce_only.phases[2].loss_fn({"discriminator": p}, {"discriminator": {}},
                                                             {"codes": jnp.asarray(codes)}, key, 0)[0])(params)
    assert np.max(np.abs(grads["Dense_0"]["kernel"] - grads_bce["Dense_0"]["kernel"])) > 1e-4


# ================================================================== priors

N_SAMPLES = 100_000


def test_uniform_box_range_and_moments():
    prior = priors.uniform_box()
    z = np.asarray(prior(jax.random.key(0), N_SAMPLES), np.float64)
    chex.assert_shape(z, (N_SAMPLES, 2))
    assert z.min() >= -2.5 and z.max() <= 2.5
    assert z.min() < -2.49 and z.max() > 2.49
    std = 5.0 / math.sqrt(12)
    np.testing.assert_array_less(np.abs(z.mean(0)), 5 * std / math.sqrt(N_SAMPLES))
    np.testing.assert_allclose(z.var(0), 25.0 / 12.0, rtol=0.02)
    assert bool(jnp.all(prior.contains(jnp.asarray(z))))
    shifted = priors.uniform_box(1.0, 3.0, dim=3)
    w = np.asarray(shifted(jax.random.key(1), N_SAMPLES))
    chex.assert_shape(w, (N_SAMPLES, 3))
    assert w.min() >= 1.0 and w.max() <= 3.0
    np.testing.assert_allclose(w.mean(0), 2.0, atol=0.01)
    np.testing.assert_allclose(w.var(0), 4.0 / 12.0, rtol=0.02)
    outside = jnp.asarray([[0.99, 2.0, 2.0], [2.0, 3.01, 2.0], [2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(shifted.contains(outside), [False, False, True])


def _box_membership(z: np.ndarray) -> np.ndarray:
    """(N, 10) bool: z in LECTURE_BOXES[j]."""
    boxes = np.asarray(priors.LECTURE_BOXES)
    x, y = z[:, None, 0], z[:, None, 1]
    return (x >= boxes[:, 0]) & (x <= boxes[:, 1]) & (y >= boxes[:, 2]) & (y <= boxes[:, 3])


def _box_centres() -> np.ndarray:
    """(10, 2) float32: the centres of LECTURE_BOXES."""
    return np.asarray([[(b[0] + b[1]) / 2, (b[2] + b[3]) / 2] for b in priors.LECTURE_BOXES], np.float32)


def _box_sides() -> np.ndarray:
    """(10, 2) float32: the widths and heights of LECTURE_BOXES (0.8, the last box 0.6 high)."""
    return np.asarray([[b[1] - b[0], b[3] - b[2]] for b in priors.LECTURE_BOXES], np.float32)


def test_uniform_boxes_samples_each_box_equally():
    assert len(priors.LECTURE_BOXES) == 10
    prior = priors.uniform_boxes()
    n = 10_000
    z = np.asarray(prior(jax.random.key(0), n))
    chex.assert_shape(z, (n, 2))
    member = _box_membership(z)
    np.testing.assert_array_equal(member.sum(1), 1)  # every sample in exactly one box
    np.testing.assert_array_equal(member.sum(0), n // 10)
    np.testing.assert_array_equal(member.argmax(1), np.arange(n) % 10)
    assert bool(jnp.all(prior.contains(jnp.asarray(z))))
    # uniform inside a box: the samples of box 0 have its centre as mean
    x0, x1, y0, y1 = priors.LECTURE_BOXES[0]
    np.testing.assert_allclose(z[::10].mean(0), [(x0 + x1) / 2, (y0 + y1) / 2], atol=0.02)


def test_uniform_boxes_contains():
    prior = priors.uniform_boxes()
    centres = jnp.asarray(_box_centres())
    assert bool(jnp.all(prior.contains(centres)))
    outside = jnp.asarray([[2.0, 2.0], [-0.6, -0.6], [0.0, -1.6], [0.4, 0.0], [-0.1, -2.4], [-3.0, 0.0]])
    assert not bool(jnp.any(prior.contains(outside)))
    assert bool(prior.contains(jnp.asarray([[0.0, 0.0]]))[0])  # (0, 0) is inside (-0.5, 0.3)^2
    np.testing.assert_array_equal(prior.contains(outside), _box_membership(np.asarray(outside)).any(1))


def test_uniform_boxes_unequal_n_gives_at_most_one_extra_per_box():
    z = np.asarray(priors.uniform_boxes()(jax.random.key(1), 23))
    counts = _box_membership(z).sum(0)
    np.testing.assert_array_equal(counts, [3, 3, 3] + [2] * 7)


def test_standard_normal_moments_and_support():
    prior = priors.standard_normal(3)
    z = np.asarray(prior(jax.random.key(0), N_SAMPLES), np.float64)
    chex.assert_shape(z, (N_SAMPLES, 3))
    np.testing.assert_array_less(np.abs(z.mean(0)), 5 / math.sqrt(N_SAMPLES))
    np.testing.assert_allclose(z.var(0), 1.0, rtol=0.02)
    inside = float(jnp.mean(prior.contains(jnp.asarray(z, jnp.float32))))
    assert abs(inside - 0.99) < 0.002
    chi2_99 = 11.344866730144373  # scipy.stats.chi2.ppf(0.99, 3)
    np.testing.assert_array_equal(prior.contains(jnp.asarray([[0.0, 0.0, 0.0], [3.36, 0.0, 0.0], [3.38, 0.0, 0.0]])),
                                  [True, 3.36 ** 2 <= chi2_99, 3.38 ** 2 <= chi2_99])


def test_gaussian_mixture_component_means_on_the_circle():
    k, radius, std = 10, 4.0, 0.5
    prior = priors.gaussian_mixture(k, radius, std)
    z = np.asarray(prior(jax.random.key(0), N_SAMPLES), np.float64)
    chex.assert_shape(z, (N_SAMPLES, 2))
    which = np.arange(N_SAMPLES) % k
    angles = 2 * math.pi * np.arange(k) / k
    expected_means = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    means = np.stack([z[which == c].mean(0) for c in range(k)])
    np.testing.assert_allclose(means, expected_means, atol=0.025)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), radius, atol=0.025)
    stds = np.stack([z[which == c].std(0) for c in range(k)])
    np.testing.assert_allclose(stds, std, rtol=0.03)
    inside = float(jnp.mean(prior.contains(jnp.asarray(z, jnp.float32))))
    assert 0.985 < inside < 0.999
    checks = prior.contains(jnp.asarray(np.concatenate([expected_means, [[0.0, 0.0], [8.0, 0.0]]]), jnp.float32))
    np.testing.assert_array_equal(checks, [True] * k + [False, False])


def test_categorical_one_hot_and_uniform():
    prior = priors.categorical(NUM_CLASSES)
    y = np.asarray(prior(jax.random.key(0), N_SAMPLES))
    chex.assert_shape(y, (N_SAMPLES, NUM_CLASSES))
    assert y.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(1), 1.0)
    np.testing.assert_allclose(y.mean(0), 0.1, atol=0.005)
    assert bool(jnp.all(prior.contains(jnp.asarray(y[:100]))))
    assert not bool(jnp.any(prior.contains(jnp.full((3, NUM_CLASSES), 0.1))))


def test_relaxed_categorical_is_gumbel_softmax_on_the_simplex():
    key = jax.random.key(1)
    cold, warm = priors.categorical(NUM_CLASSES, 0.1), priors.categorical(NUM_CLASSES, 1.0)
    y = np.asarray(cold(key, N_SAMPLES))
    chex.assert_shape(y, (N_SAMPLES, NUM_CLASSES))
    assert y.dtype == np.float32 and np.all(y >= 0) and np.all(y <= 1)
    np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-5)
    # the same Gumbel draws, softmax at the temperature: its argmax is the Gumbel-max sample, uniform
    gumbel = np.asarray(jax.random.gumbel(key, (N_SAMPLES, NUM_CLASSES), jnp.float32), np.float64)
    expected = np.exp(gumbel / 0.1 - (gumbel / 0.1).max(1, keepdims=True))
    np.testing.assert_allclose(y, expected / expected.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.bincount(y.argmax(1), minlength=NUM_CLASSES) / N_SAMPLES, 0.1, atol=0.01)
    # colder is closer to one-hot; the same draws give the same argmax at any temperature
    hot = np.asarray(warm(key, N_SAMPLES))
    assert np.all(hot > 0) and np.all(hot < 1)  # inside the simplex, where softmax outputs live
    assert y.max(1).mean() > 0.9 > hot.max(1).mean()
    np.testing.assert_array_equal(y.argmax(1), hot.argmax(1))
    assert cold.name != priors.categorical(NUM_CLASSES).name


def test_semi_supervised_label_prior_temperature_reaches_the_discriminators():
    """The discriminators' loss on the same parameters, batch and key: one-hot and relaxed
    prior samples are judged differently; two relaxed runs agree."""
    batch = {"image": jax.random.uniform(jax.random.key(2), (B, 28, 28, 1))}
    losses_by_temperature = []
    for temperature in (0.0, 0.5, 0.5):
        model = semi.make_model(dataclasses.replace(SEMI_CONFIG, semi_supervised=False,
                                                    categorical_temperature=temperature))
        s0 = _state_without_compiling_init(model, 3)
        _, (_, metrics) = model.phases[1].loss_fn(s0.params, s0.batch_stats, batch, jax.random.key(0), 0)
        losses_by_temperature.append(float(metrics["label_loss"]))
    one_hot, relaxed, relaxed_again = losses_by_temperature
    assert relaxed == relaxed_again
    assert abs(one_hot - relaxed) > 1e-4


@pytest.mark.parametrize("make", [priors.uniform_box, priors.uniform_boxes, priors.standard_normal,
                                  priors.gaussian_mixture, priors.categorical])
def test_priors_same_key_same_samples_other_key_differs(make):
    prior = make()
    a, b, c = prior(jax.random.key(4), 64), prior(jax.random.key(4), 64), prior(jax.random.key(5), 64)
    chex.assert_shape(a, (64, prior.dim))
    chex.assert_type(a, jnp.float32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_priors_registry_builds_2d_priors():
    for name, make in priors.PRIORS.items():
        prior = make()
        assert prior.dim == 2, name
        chex.assert_shape(prior(jax.random.key(0), 7), (7, 2))


@pytest.mark.parametrize("build", [
    lambda: priors.uniform_box(1.0, 1.0), lambda: priors.uniform_box(2.0, 1.0), lambda: priors.uniform_box(dim=0),
    lambda: priors.uniform_boxes([(0.0, 1.0, 1.0, 0.0)]), lambda: priors.uniform_boxes([(1.0, 0.0, 0.0, 1.0)]),
    lambda: priors.uniform_boxes([(0.0, 1.0, 0.0)]),
    lambda: priors.gaussian_mixture(0), lambda: priors.gaussian_mixture(radius=-1.0), lambda: priors.gaussian_mixture(std=0.0),
    lambda: priors.standard_normal(0), lambda: priors.categorical(0), lambda: priors.categorical(1),
    lambda: priors.categorical(10, -0.5),
])
def test_priors_reject_bad_arguments(build):
    with pytest.raises(ValueError):
        build()


@pytest.mark.parametrize("prior, bad_shape", [
    (priors.uniform_box(), (5, 3)), (priors.uniform_box(), (5,)), (priors.uniform_boxes(), (4, 3)),
    (priors.standard_normal(3), (4, 2)), (priors.gaussian_mixture(), (2, 2, 2)), (priors.categorical(10), (4, 9)),
])
def test_contains_rejects_wrong_shaped_codes(prior, bad_shape):
    with pytest.raises(ValueError, match="codes must have shape"):
        prior.contains(jnp.zeros(bad_shape))


# ================================================================== semi_supervised data helpers

def test_balanced_subset_per_class_no_duplicates_deterministic():
    # equally large classes, so that jax.random.choice compiles once (MNIST's ten sizes cost ten compiles)
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 30))
    chosen = semi.balanced_subset(labels, 5, jax.random.key(0))
    chex.assert_shape(chosen, (50,))
    assert len(np.unique(chosen)) == 50
    np.testing.assert_array_equal(chosen, np.sort(chosen))
    np.testing.assert_array_equal(np.bincount(labels[chosen], minlength=10), 5)
    np.testing.assert_array_equal(semi.balanced_subset(labels, 5, jax.random.key(0)), chosen)
    assert not np.array_equal(semi.balanced_subset(labels, 5, jax.random.key(1)), chosen)


def test_balanced_subset_rejects_small_classes_and_bad_per_class():
    labels = np.asarray([0, 0, 0, 1, 1, 2, 2, 2, 2])
    chosen = semi.balanced_subset(labels, 2, jax.random.key(0), num_classes=2)  # class 2 is not asked for
    np.testing.assert_array_equal(np.bincount(labels[chosen], minlength=3), [2, 2, 0])
    with pytest.raises(ValueError, match="class 1"):
        semi.balanced_subset(labels, 3, jax.random.key(0), num_classes=3)
    with pytest.raises(ValueError, match="per_class"):
        semi.balanced_subset(labels, 0, jax.random.key(0), num_classes=3)


def test_make_dataset_hides_labels_and_keeps_the_labelled_subset(mnist):
    split = data.Split(mnist["train"].images[:20], mnist["train"].labels[:20])
    labelled = np.asarray([2, 5, 11])
    dataset = semi.make_dataset(split, labelled)
    assert set(dataset) == {"image", "label", "labelled_image", "labelled_label"}
    np.testing.assert_array_equal(dataset["image"], split.images)
    np.testing.assert_array_equal(dataset["label"], -1)
    chex.assert_type(dataset["label"], jnp.int32)
    np.testing.assert_array_equal(dataset["labelled_image"], split.images[labelled])
    np.testing.assert_array_equal(dataset["labelled_label"], split.labels[labelled])
    chex.assert_type(dataset["labelled_label"], jnp.int32)
    assert set(semi.make_dataset(split, None)) == {"image", "label"}
    for bad in (np.asarray([], np.int64), np.asarray([[1, 2]])):
        with pytest.raises(ValueError, match="labelled"):
            semi.make_dataset(split, bad)


def test_gather_draws_labelled_images_from_the_subset(mnist):
    split = data.Split(mnist["train"].images[:20], mnist["train"].labels[:20])
    labelled = np.asarray([2, 5, 11])
    dataset = semi.make_dataset(split, labelled)
    indices = jnp.asarray([0, 4, 7, 19])
    batch = semi.gather(dataset, indices)
    assert set(batch) == {"image", "label", "labelled_image", "labelled_label"}
    chex.assert_shape([batch["image"], batch["labelled_image"]], (4, 28, 28, 1))
    chex.assert_type([batch["image"], batch["labelled_image"]], jnp.float32)
    chex.assert_shape(batch["labelled_label"], (4,))
    np.testing.assert_array_equal(batch["label"], -1)
    np.testing.assert_allclose(batch["image"], data.to_float_nhwc(split.images[np.asarray(indices)]))
    pick = np.asarray(indices) % 3  # [0, 1, 1, 1]
    np.testing.assert_array_equal(batch["labelled_label"], split.labels[labelled][pick])
    np.testing.assert_allclose(batch["labelled_image"], data.to_float_nhwc(split.images[labelled][pick]))
    assert set(semi.gather(semi.make_dataset(split, None), indices)) == {"image", "label"}


def test_clustering_error_on_hand_made_arrays():
    error, assignment = semi.clustering_error(np.asarray([0, 0, 1, 1, 2]), np.asarray([3, 3, 4, 5, 5]))
    assert error == pytest.approx(0.2)
    assert assignment == {0: 3, 1: 4, 2: 5}
    perfect, relabel = semi.clustering_error(np.asarray([2, 2, 0, 1, 1, 0]), np.asarray([7, 7, 1, 4, 4, 1]))
    assert perfect == 0.0 and relabel == {0: 1, 1: 4, 2: 7}
    merged, _ = semi.clustering_error(np.zeros(6, int), np.asarray([1, 1, 1, 2, 2, 3]))
    assert merged == pytest.approx(0.5)
    for clusters, labels in ((np.zeros(3, int), np.zeros(4, int)), (np.zeros(0, int), np.zeros(0, int)),
                             (np.zeros((2, 2), int), np.zeros((2, 2), int))):
        with pytest.raises(ValueError):
            semi.clustering_error(clusters, labels)


# ================================================================== disentangled helpers, label conditioning

def test_standardize_gives_zero_mean_unit_variance_columns_whatever_the_scale():
    z = jnp.asarray(np.random.default_rng(1).normal(3.0, 0.1, size=(64, 5)), jnp.float32)
    out = disentangled.standardize(z)
    np.testing.assert_allclose(np.asarray(out.mean(0)), 0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.std(0)), 1, atol=1e-3)  # eps 1e-5 against a variance of 1e-2
    np.testing.assert_allclose(np.asarray(disentangled.standardize(10 * z - 4)), np.asarray(out), rtol=2e-3, atol=1e-4)


def test_uniform_cross_entropy_is_log_c_at_equal_logits_and_larger_otherwise():
    c = 7
    equal = disentangled.uniform_cross_entropy(jnp.full((3, c), 2.5))
    chex.assert_shape(equal, (3,))
    np.testing.assert_allclose(equal, math.log(c), rtol=1e-6)
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(5, c)) * 2, jnp.float32)
    got = disentangled.uniform_cross_entropy(logits)
    assert np.all(np.asarray(got) > math.log(c) + 1e-3)
    expected = -np.mean(np.asarray(jax.nn.log_softmax(logits)), axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_split_label_style_shapes_and_errors():
    out = jnp.arange(3 * 14, dtype=jnp.float32).reshape(3, 14)
    labels, style = disentangled.split_label_style(out, 10)
    chex.assert_shape(labels, (3, 10))
    chex.assert_shape(style, (3, 4))
    np.testing.assert_array_equal(jnp.concatenate([labels, style], 1), out)
    for bad in (jnp.zeros((3, 10)), jnp.zeros((3, 9)), jnp.zeros((14,)), jnp.zeros((2, 3, 14))):
        with pytest.raises(ValueError, match="encoder output"):
            disentangled.split_label_style(bad, 10)


def test_condition_on_labels_concatenates_float_probabilities_unchanged():
    x = jnp.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], jnp.float32)
    probs = jnp.asarray([[0.2, 0.8], [0.5, 0.5]], jnp.float32)
    out = condition_on_labels(x, probs, 2)
    chex.assert_shape(out, (2, 5))
    np.testing.assert_array_equal(out[:, :3], x)
    np.testing.assert_array_equal(out[:, 3:], probs)
    half = condition_on_labels(x, probs.astype(jnp.float16), 2)
    chex.assert_type(half, jnp.float32)
    np.testing.assert_allclose(half[:, 3:], probs, atol=1e-3)
    np.testing.assert_array_equal(condition_on_labels(x, jnp.asarray([1, 0], jnp.int32), 2)[:, 3:], [[0, 1], [1, 0]])


@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (2,), (2, 2, 1)])
def test_condition_on_labels_rejects_probabilities_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match="probabilities of shape"):
        condition_on_labels(jnp.zeros((2, 3)), jnp.full(shape, 0.5, jnp.float32), 2)


def test_disentangled_variational_style_with_true_labels(aae_batch):
    config = disentangled.DisentangledConfig(latent_dim=STYLE_DIM, adversary_hidden=(32, 32),
                                             style_kl_weight=0.005, decoder_label="true")
    encoder, _, _ = disentangled.make_modules(config)
    assert encoder.latent_dim == NUM_CLASSES + 2 * STYLE_DIM  # label logits, style mu and log-variance
    model = disentangled.make_model(config)
    state = train_lib.create_train_state(model, jax.random.key(0))
    chex.assert_shape(model.encode(state.params, state.batch_stats, aae_batch["image"]), (B, STYLE_DIM))
    after, metrics = _phase_runner(model, 0, 1)(state, aae_batch)
    assert float(metrics["style_kl"]) > 0
    mu, log_var = vae.split_moments(disentangled.split_label_style(
        encoder.apply({"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]},
                      aae_batch["image"], True, mutable=["batch_stats"])[0], NUM_CLASSES)[1])
    np.testing.assert_allclose(float(metrics["style_kl"]),
                               float(losses.gaussian_kl_to_standard_normal(mu, log_var).mean()), rtol=1e-4)
    with pytest.raises(ValueError, match="decoder_label"):
        disentangled.DisentangledConfig(decoder_label="oracle")


def test_discriminator_bce_pooled_and_balanced():
    code_logits = jnp.array([[2.0], [-1.0]])
    prior_logits = jnp.array([[0.5], [1.5], [-0.5], [3.0]])
    code_terms = np.log1p(np.exp([2.0, -1.0]))           # -log(1 - sigmoid(l))
    prior_terms = np.log1p(np.exp(-np.array([0.5, 1.5, -0.5, 3.0])))  # -log(sigmoid(l))
    pooled = aae.discriminator_bce(code_logits, prior_logits)
    balanced = aae.discriminator_bce(code_logits, prior_logits, balanced=True)
    np.testing.assert_allclose(pooled, np.concatenate([code_terms, prior_terms]).mean(), rtol=1e-6)
    np.testing.assert_allclose(balanced, 0.5 * (code_terms.mean() + prior_terms.mean()), rtol=1e-6)
    # "always prior" (large logits everywhere) is cheap under the pooled loss, not under the balanced one
    always_prior_codes, always_prior_samples = jnp.full((10, 1), 3.0), jnp.full((200, 1), 3.0)
    assert aae.discriminator_bce(always_prior_codes, always_prior_samples) < 0.2
    assert aae.discriminator_bce(always_prior_codes, always_prior_samples, balanced=True) > 1.5


def test_discriminator_loss_option_is_validated():
    with pytest.raises(ValueError, match="discriminator_loss"):
        aae.AAEConfig(discriminator_loss="hinge")


def _cka_by_hand(z: np.ndarray, labels: np.ndarray, bandwidths=disentangled.KERNEL_BANDWIDTHS) -> float:
    """tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)), H the centring matrix, in float64."""
    z = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
    n, d = z.shape
    squared = np.array([[np.sum((z[i] - z[j]) ** 2) / d for j in range(n)] for i in range(n)])
    k = sum(np.exp(-squared / (2 * bw * bw)) for bw in bandwidths)
    l = (labels[:, None] == labels[None, :]).astype(np.float64)
    h = np.eye(n) - 1.0 / n
    return float(np.trace(k @ h @ l @ h) / np.sqrt(np.trace(k @ h @ k @ h) * np.trace(l @ h @ l @ h)))


def test_label_dependence_reads_what_class_means_miss():
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 3, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    # every class centred at 0, but on circles of radius 1, 2, 3: no linear leak, a plain non-linear one
    rings = ((labels[:, None] + 1.0) * np.stack([np.cos(angle), np.sin(angle)], 1)).astype(np.float32)
    independent = rng.normal(size=(n, 2)).astype(np.float32)
    dependence = lambda z: float(disentangled.label_dependence(jnp.asarray(z), jnp.asarray(labels), 3))
    assert float(disentangled.class_mean_share(jnp.asarray(rings), jnp.asarray(labels), 3)) < 0.02
    assert dependence(rings) > 0.2 > 0.05 > dependence(independent)  # the noise floor: O(1/n)
    np.testing.assert_allclose(dependence(rings), _cka_by_hand(rings.astype(np.float64), labels), rtol=1e-4)
    np.testing.assert_allclose(dependence(independent), _cka_by_hand(independent.astype(np.float64), labels), rtol=1e-3)
    np.testing.assert_allclose(dependence(3.0 * rings + 1.0), dependence(rings), rtol=1e-4)  # scale and shift do not hide it
    grad = jax.grad(lambda z: disentangled.label_dependence(z, jnp.asarray(labels), 3))(jnp.asarray(rings))
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).sum()) > 0


def test_class_mean_share():
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    # class means all equal: nothing linearly readable
    same_means = jnp.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 2.0], [-1.0, -2.0], [0.5, 1.0], [-0.5, -1.0]])
    np.testing.assert_allclose(disentangled.class_mean_share(same_means, labels, 3), 0.0, atol=1e-6)
    # constant within each class: all variance is between classes
    by_class = jnp.array([[0.0, 1.0], [0.0, 1.0], [3.0, 0.0], [3.0, 0.0], [-2.0, 5.0], [-2.0, 5.0]])
    np.testing.assert_allclose(disentangled.class_mean_share(by_class, labels, 3), 1.0, rtol=1e-5)
    # a mix: by-hand between-class over total variance, one dimension
    z = jnp.array([[0.0], [2.0], [4.0], [6.0], [1.0], [1.0]])
    mean = 14.0 / 6
    between = (2 * (1 - mean) ** 2 + 2 * (5 - mean) ** 2 + 2 * (1 - mean) ** 2) / 6
    np.testing.assert_allclose(disentangled.class_mean_share(z, labels, 3), between / np.var(np.asarray(z)), rtol=1e-5)
    # and the encoder gets a gradient from it
    assert float(jnp.abs(jax.grad(lambda z: disentangled.class_mean_share(z, labels, 3))(by_class + 0.1 * z)).sum()) > 0


@pytest.mark.parametrize("rates", [{}, {"generator_learning_rate": 1e-4}, {"discriminator_learning_rate": 3e-3},
                                   {"generator_learning_rate": 2e-5, "discriminator_learning_rate": 5e-4}])
def test_each_phase_steps_at_its_own_learning_rate(rates):
    """Adam's first step on a constant gradient is -rate per parameter: the rate each phase's optimizer holds."""
    model = aae.make_model(aae.AAEConfig(weight_decay=0.0, **rates), priors.uniform_box())
    wanted = {"autoencoder": 1e-3, "generator": rates.get("generator_learning_rate", 1e-3),
              "discriminator": rates.get("discriminator_learning_rate", 1e-3)}
    params = {"w": jnp.ones((3,))}
    for phase in model.phases:
        updates, _ = phase.optimizer.update({"w": jnp.full((3,), 0.7)}, phase.optimizer.init(params), params)
        np.testing.assert_allclose(updates["w"], -wanted[phase.name], rtol=1e-5)


# ------------------------------------------------------------------ class-conditional style normalisation

def test_class_standardize_is_torch_batch_norm_per_class():
    """Train mode: each class's items go through their own BatchNorm (PyTorch's, no affine);
    the running statistics of a class move only when it is in the batch. Eval mode: the
    running statistics of each item's class."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [7, 5, 9])  # class 3 absent
    z = (rng.normal(size=(21, 3)) * np.array([1.0, 3.0, 0.5])[labels % 3, None] + labels[:, None] * 2.0).astype(np.float32)
    module = disentangled.ClassStandardize(num_classes=4)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 3)), False, labels=jnp.zeros((1,), jnp.int32))
    out, stats = apply_training(module, variables, jnp.asarray(z), labels=jnp.asarray(labels))
    for c in range(3):
        bn = tnn.BatchNorm1d(3, affine=False, momentum=0.1)
        expected = bn(torch.from_numpy(z[labels == c]))
        np.testing.assert_allclose(np.asarray(out)[labels == c], _np(expected), atol=1e-5)
        np.testing.assert_allclose(np.asarray(stats["mean"][c]), _np(bn.running_mean), atol=1e-6)
        np.testing.assert_allclose(np.asarray(stats["var"][c]), _np(bn.running_var), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(stats["mean"][3]), 0.0)  # absent: unchanged
    np.testing.assert_array_equal(np.asarray(stats["var"][3]), 1.0)
    mean, var = rng.normal(size=(4, 3)).astype(np.float32), rng.uniform(0.5, 2.0, (4, 3)).astype(np.float32)
    eval_labels = np.array([3, 0, 3, 1])
    got = module.apply({"params": variables["params"], "batch_stats": {"mean": mean, "var": var}}, jnp.asarray(z[:4]), False,
                       labels=jnp.asarray(eval_labels))
    np.testing.assert_allclose(np.asarray(got), (z[:4] - mean[eval_labels]) / np.sqrt(var[eval_labels] + 1e-5), rtol=1e-5)


@pytest.fixture(scope="module")
def class_norm_setup(mnist):
    config = dataclasses.replace(DIS_CONFIG, style_normalization="class")
    model = disentangled.make_model(config)
    test = mnist["test"]
    dataset = {"image": jnp.asarray(test.images[:40]), "label": jnp.asarray(test.labels[:40], jnp.int32)}
    state = _state_without_compiling_init(model, 2)
    state = _phase_runner(model, 0, 3)(state, data.gather_batch(dataset, jnp.arange(20)))[0]
    return config, model, state, dataset


def test_class_normalized_style_reads_the_label_head_not_the_true_labels(class_norm_setup):
    config, model, state, dataset = class_norm_setup
    images = data.gather_batch(dataset, jnp.arange(20))["image"]
    styles = model.encode(state.params, state.batch_stats, images, labels=jnp.zeros((20,), jnp.int32))
    chex.assert_shape(styles, (20, STYLE_DIM))
    np.testing.assert_array_equal(np.asarray(styles), np.asarray(model.encode(state.params, state.batch_stats, images)))
    predicted = jnp.argmax(model.classify(state.params, state.batch_stats, images), -1)
    encoder = disentangled.make_modules(config)[0]
    raw = disentangled.split_label_style(encoder.apply(
        {"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]}, images, False), NUM_CLASSES)[1]
    stats = state.batch_stats["style_norm"]
    expected = (raw - stats["mean"][predicted]) / jnp.sqrt(stats["var"][predicted] + 1e-5) * state.params["style_norm"]["scale"] \
        + state.params["style_norm"]["bias"]
    np.testing.assert_allclose(np.asarray(styles), np.asarray(expected), rtol=1e-4, atol=1e-5)
    # the running statistics move in the autoencoder phase only, not again in the confusion phase
    batch = data.gather_batch(dataset, jnp.arange(20, 40))
    after_autoencoder = _phase_runner(model, 0, 1)(state, batch)[0].batch_stats["style_norm"]
    after_confusion = _phase_runner(model, 0, 2)(state, batch)[0].batch_stats["style_norm"]
    assert _max_abs_diff(after_autoencoder, stats) > 1e-4
    assert _max_abs_diff(after_autoencoder, after_confusion) == 0.0


def test_recompute_batch_stats_averages_the_class_statistics(class_norm_setup):
    config, model, state, dataset = class_norm_setup
    recomputed = train_lib.recompute_batch_stats(model.phases[0], state.params, state.batch_stats, dataset, 20,
                                                 jax.random.key(0))
    encoder = disentangled.make_modules(config)[0]
    sums = np.zeros((NUM_CLASSES, STYLE_DIM))
    for start in (0, 20):  # each batch's class means, as in train mode
        batch = data.gather_batch(dataset, jnp.arange(start, start + 20))
        out, _ = apply_training(encoder, {"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]},
                                batch["image"])
        raw, labels = np.asarray(disentangled.split_label_style(out, NUM_CLASSES)[1]), np.asarray(batch["label"])
        for c in np.unique(labels):
            sums[c] += raw[labels == c].mean(axis=0)
    np.testing.assert_allclose(np.asarray(recomputed["style_norm"]["mean"]), sums / 2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"style_normalization": "whiten"}, "style_normalization must be"),
    ({"style_normalization": "class", "style_kl_weight": 0.005}, "deterministic style"),
])
def test_disentangled_config_rejects_bad_style_normalization(kwargs, message):
    with pytest.raises(ValueError, match=message):
        disentangled.DisentangledConfig(**kwargs)


@pytest.mark.parametrize("variant", ["semi_supervised", "aae"])
def test_decay_steps_lower_every_phase_rate(variant, request):
    """decay_steps=1: the first step at the full rates, the second at 1% of them. Each phase
    applied alone to the same state after step one moves its modules 1/100 as far as the
    same phase at constant rates (the AAE's three optimizers included)."""
    if variant == "aae":
        config, make, batch = AAE_CONFIG, lambda c: aae.make_model(c, user_prior), request.getfixturevalue("aae_batch")
    else:
        config, make, batch = SEMI_CONFIG, semi.make_model, request.getfixturevalue("semi_batch")
    decayed = make(dataclasses.replace(config, decay_steps=1))
    constant = make(config)
    first = jax.jit(functools.partial(train_lib.apply_phases, decayed.phases))(_state_without_compiling_init(decayed, 3),
                                                                               batch)[0]
    if variant == "aae":  # the discriminator phase alone reads the generator phase's codes
        batch = {**batch, "codes": decayed.encode(first.params, first.batch_stats, batch["image"], train=True)}
    # the same state as the constant-rate optimizers hold it (no schedule counters)
    as_constant = first.replace(opt_states={name: _drop_schedule_count(s) for name, s in first.opt_states.items()})
    for index, phase in enumerate(decayed.phases):
        step = jax.jit(functools.partial(train_lib.apply_phases, decayed.phases[index:index + 1]))(first, batch)[0]
        reference = jax.jit(functools.partial(train_lib.apply_phases, constant.phases[index:index + 1]))(as_constant, batch)[0]
        moved, moved_constant = ([np.asarray(a) - np.asarray(b) for a, b in zip(jax.tree.leaves(after.params),
                                                                                 jax.tree.leaves(first.params))]
                                 for after in (step, reference))
        norm, norm_constant = (np.sqrt(sum(float(np.sum(np.square(m, dtype=np.float64))) for m in tree))
                               for tree in (moved, moved_constant))
        # norms, not elements: a 1e-5 step on a weight of ~1 keeps only a few float32 digits
        assert norm_constant > 0 and norm / norm_constant == pytest.approx(0.01, rel=0.02), phase.name
    with pytest.raises(ValueError, match="decay_steps"):
        dataclasses.replace(config, decay_steps=-1)


def _drop_schedule_count(opt_state):
    """A torch_adam state with a schedule -> the same state as the constant-rate optimizer has it."""
    *adam_parts, _ = opt_state  # chain: (..., scale_by_adam state, scale_by_schedule state)
    return (*adam_parts, optax.EmptyState())


# ================================================================== label-conditioned discriminator

@pytest.mark.parametrize("make", [priors.uniform_boxes, priors.gaussian_mixture])
def test_mixture_priors_sample_the_named_components(make):
    prior = make()
    assert prior.num_components == 10
    components = jax.random.randint(jax.random.key(4), (2000,), 0, 10)
    z = prior.sample_components(jax.random.key(5), components)
    chex.assert_shape(z, (2000, 2))
    # each sample lies in its own component's support (Gaussians: its 99% ball), rarely in a
    # neighbour's (the circle's neighbouring 99% balls overlap; the boxes are disjoint)
    own = float(jnp.mean(prior.component_contains(z, components)))
    other = float(jnp.mean(prior.component_contains(z, (components + 1) % 10)))
    if make is priors.uniform_boxes:
        assert own == 1.0 and other == 0.0
    else:
        assert 0.98 < own < 0.997 and other < 0.05
    if make is priors.uniform_boxes:
        np.testing.assert_array_equal(_box_membership(np.asarray(z)).argmax(1), np.asarray(components))
    # the unconditioned sampler is the same draw with components 0, 1, ..., 9, 0, ...
    np.testing.assert_array_equal(prior(jax.random.key(6), 23),
                                  prior.sample_components(jax.random.key(6), jnp.arange(23) % 10))


LABELLED_CONFIG = aae.AAEConfig(discriminator_norm="none", prior_samples_per_code=3, label_conditioning=True)


@pytest.mark.parametrize("standardize", [False, True])
def test_label_conditioned_discriminator_phase_matches_torch_on_code_label_pairs(standardize):
    config = dataclasses.replace(LABELLED_CONFIG, standardize_components=standardize)
    model = aae.make_model(config, priors.uniform_boxes())
    params = jax.eval_shape(model.init, jax.random.key(0))[0]
    chex.assert_shape(params["discriminator"]["Dense_0"]["kernel"], (2 + 10, 512))
    net = _torch_discriminator(latent=12, batch_norm=False, seed=8)
    disc_params, _ = _discriminator_to_flax(net)
    codes, labels, key = _codes(B, seed=6), jnp.asarray([3, 1, 9, 3]), jax.random.key(13)
    loss_fn = jax.jit(model.phases[2].loss_fn)
    loss, _ = loss_fn({"discriminator": disc_params}, {"discriminator": {}},
                      {"codes": jnp.asarray(codes), "label": labels}, key, 0)
    samples, components = aae.prior_samples(config, priors.uniform_boxes(), key, B * 3)
    np.testing.assert_array_equal(components, np.arange(B * 3) % 10)
    assert bool(jnp.all(priors.uniform_boxes().component_contains(samples, components)))
    eye = np.eye(10, dtype=np.float32)
    # standardised: each box's centre to 0 and its sides to sqrt(12), the unit-variance uniform's
    centres, stds = _box_centres(), _box_sides() / math.sqrt(12)
    scale = (lambda z, k: (z - centres[k]) / stds[k]) if standardize else (lambda z, k: z)
    labels_np, components_np = np.asarray(labels), np.asarray(components)
    inputs = np.concatenate([np.concatenate([scale(codes, labels_np), eye[labels_np]], 1),
                             np.concatenate([scale(np.asarray(samples), components_np), eye[components_np]], 1)])
    with torch.no_grad():
        out = net(torch.from_numpy(inputs))
    targets = torch.cat([torch.zeros(B, 1), torch.ones(B * 3, 1)])
    # rtol: the standardisation uses moments estimated from 10,000 samples per box
    np.testing.assert_allclose(float(loss), float(torch.nn.functional.binary_cross_entropy(out, targets)),
                               rtol=1e-2 if standardize else 1e-5)
    # the labels reach the discriminator: other labels, another loss
    other, _ = loss_fn({"discriminator": disc_params}, {"discriminator": {}},
                       {"codes": jnp.asarray(codes), "label": labels + 1}, key, 0)
    assert abs(float(other) - float(loss)) > 1e-4


def test_label_conditioned_generator_phase_updates_encoder_only_and_reads_the_labels(aae_batch):
    model = aae.make_model(LABELLED_CONFIG, priors.uniform_boxes())
    state = train_lib.create_train_state(model, jax.random.key(1))
    step = jax.jit(lambda s, b: train_lib.apply_phases(model.phases[1:2], s, b))
    batch = {"image": aae_batch["image"], "label": jnp.arange(B) % 10}
    after, metrics = step(state, batch)
    _assert_phase_changed_only(state, after, "generator", ("encoder",))
    _, other = step(state, {**batch, "label": (batch["label"] + 5) % 10})
    assert abs(float(metrics["loss"]) - float(other["loss"])) > 1e-7


def test_label_conditioning_needs_a_mixture_prior_with_one_component_per_class():
    with pytest.raises(ValueError, match="mixture prior with 10 components"):
        aae.make_model(LABELLED_CONFIG, priors.uniform_box())
    with pytest.raises(ValueError, match="mixture prior with 10 components"):
        aae.make_model(LABELLED_CONFIG, user_prior)
    with pytest.raises(ValueError, match="mixture prior with 10 components"):
        aae.make_model(LABELLED_CONFIG, priors.gaussian_mixture(8))
    aae.make_model(dataclasses.replace(LABELLED_CONFIG, num_classes=8), priors.gaussian_mixture(8))  # accepted
    with pytest.raises(ValueError, match="needs the labels"):
        aae.discriminator_inputs(LABELLED_CONFIG, jnp.zeros((3, 2)), None)
    with pytest.raises(ValueError):
        aae.AAEConfig(label_conditioning=True, num_classes=1)
    with pytest.raises(ValueError, match="standardize_components needs label_conditioning"):
        aae.AAEConfig(standardize_components=True)


def test_component_moments_of_the_boxes_and_standardised_inputs():
    prior = priors.uniform_boxes()
    means, stds = aae.component_moments(prior)
    chex.assert_shape((means, stds), (10, 2))
    centres = _box_centres()
    np.testing.assert_allclose(means, centres, atol=0.01)
    np.testing.assert_allclose(stds, _box_sides() / math.sqrt(12), rtol=0.02)  # a uniform of width w: w / sqrt(12)
    config = dataclasses.replace(LABELLED_CONFIG, standardize_components=True)
    corners = jnp.asarray([[priors.LECTURE_BOXES[3][1], priors.LECTURE_BOXES[3][3]]], jnp.float32)  # box 3's top right
    inputs = aae.discriminator_inputs(config, corners, jnp.asarray([3]), (means, stds))
    np.testing.assert_allclose(inputs[0, :2], [math.sqrt(3)] * 2, rtol=0.02)  # half the side in stds: sqrt(12)/2
    np.testing.assert_array_equal(inputs[0, 2:], np.eye(10)[3])
    with pytest.raises(ValueError, match="component moments"):
        aae.discriminator_inputs(config, corners, jnp.asarray([3]))


def test_prior_match_reports_codes_inside_their_own_labels_box():
    model = aae.make_model(LABELLED_CONFIG, priors.uniform_boxes())
    params, stats = model.init(jax.random.key(2))
    prior = priors.uniform_boxes()
    centres = _box_centres()
    codes = np.concatenate([centres[:4], centres[:4], [[3.0, 3.0], [3.0, 3.0]]])
    labels = np.asarray([0, 1, 2, 3, 1, 2, 3, 4, 0, 1])  # 4 in their own box, 4 in another's, 2 outside
    result = aae.prior_match(LABELLED_CONFIG, params, stats, codes, prior, jax.random.key(3), labels)
    assert result["inside_support"] == pytest.approx(0.8)
    assert result["inside_own_component"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="labels must have shape"):
        aae.prior_match(LABELLED_CONFIG, params, stats, codes, prior, jax.random.key(3), labels[:3])


# ================================================================== semi-supervised: augmentation and pseudo-labels

def test_supervised_phase_with_shifts_and_pseudo_labels_by_hand(semi_batch):
    shift, weight = 2, 2.0
    config = dataclasses.replace(SEMI_CONFIG, augment_shift=shift, consistency_weight=weight, confidence_threshold=1e-6)
    model = semi.make_model(config)
    s0 = _state_without_compiling_init(model, 3)
    supervised = model.phases[3]
    key = jax.random.key(21)
    loss, (new_stats, metrics) = jax.jit(supervised.loss_fn)(s0.params, s0.batch_stats, semi_batch, key, 0)

    labelled_key, unlabelled_key = jax.random.split(key)
    images = jnp.concatenate([data.random_shift(labelled_key, semi_batch["labelled_image"], shift),
                              data.random_shift(unlabelled_key, semi_batch["image"], shift)])
    classify = jax.jit(model.classify, static_argnames="train")
    logits = classify(s0.params, s0.batch_stats, images, train=True)  # one pass: one set of batch statistics
    targets = jnp.argmax(classify(s0.params, s0.batch_stats, semi_batch["image"], train=True), -1)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:B], semi_batch["labelled_label"]).mean()
    pseudo = optax.softmax_cross_entropy_with_integer_labels(logits[B:], targets).mean()
    assert float(metrics["confident_share"]) == 1.0  # every image above a threshold of 1e-6
    np.testing.assert_allclose(float(metrics["consistency"]), float(pseudo), rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(ce + weight * pseudo), rtol=1e-5)
    # the shifts are drawn from the phase's key: another key, other images, another loss
    other, _ = jax.jit(supervised.loss_fn)(s0.params, s0.batch_stats, semi_batch, jax.random.key(22), 0)
    assert abs(float(other) - float(loss)) > 1e-6
    after, _ = _phase_runner(model, 3, 4)(s0, semi_batch)
    _assert_phase_changed_only(s0, after, "supervised", ("encoder",))


def test_pseudo_labels_only_from_confident_images(semi_batch):
    config = dataclasses.replace(SEMI_CONFIG, consistency_weight=1.0, confidence_threshold=1.0)
    model = semi.make_model(config)
    s0 = _state_without_compiling_init(model, 3)
    probs = jax.nn.softmax(jax.jit(model.classify, static_argnames="train")(
        s0.params, s0.batch_stats, semi_batch["image"], train=True))
    assert float(jnp.max(probs)) < 1.0  # so no image reaches a threshold of 1
    loss, (_, metrics) = jax.jit(model.phases[3].loss_fn)(s0.params, s0.batch_stats, semi_batch, jax.random.key(0), 0)
    assert float(metrics["confident_share"]) == 0.0 and float(metrics["consistency"]) == 0.0
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("kwargs", [{"augment_shift": -1}, {"consistency_weight": -1.0}, {"confidence_threshold": 0.0},
                                    {"confidence_threshold": 1.5}, {"consistency_weight": 1.0, "semi_supervised": False},
                                    {"categorical_temperature": -0.1}])
def test_semi_supervised_config_rejects_bad_augmentation_settings(kwargs):
    with pytest.raises(ValueError):
        semi.SemiSupervisedConfig(**kwargs)
