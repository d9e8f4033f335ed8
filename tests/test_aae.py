"""The adversarial autoencoder (aejax.aae) without PyTorch: phases, the carry of
train.apply_phases, config checks, label conditioning, prior_match, the named losses.

Kept small for a shared CPU: batches of 4 images, one
initialisation per model variant (module-scoped), each phase compiled once and run on
its own from the same state.
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

from aejax import aae, data, priors
from aejax import train as train_lib

from adversarial_support import (AAE_CONFIG, LABELLED_CONFIG, B, LinearCritic, assert_config_fields_documented,
                                 assert_decay_lowers_every_phase_rate, assert_phase_changed_only, box_centres, box_sides,
                                 phase_runner, random_codes, softplus, state_without_compiling_init, user_prior)
from support import max_abs_diff


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
    state = state_without_compiling_init(model, 0)
    encode = jax.jit(model.encode, static_argnames="train")
    return model, state, encode


@pytest.fixture(scope="module")
def aae_runs(aae_setup, aae_batch, aae_dataset):
    """Each phase alone from the initial state, phase 2 after phase 1, and one full compiled step."""
    model, s0, encode = aae_setup
    codes0 = encode(s0.params, s0.batch_stats, aae_batch["image"], train=True)
    runs = {
        "autoencoder": phase_runner(model, 0, 1)(s0, aae_batch)[0],
        "generator": phase_runner(model, 1, 2)(s0, aae_batch)[0],
        "discriminator": phase_runner(model, 2, 3)(s0, {**aae_batch, "codes": codes0})[0],
    }
    runs["autoencoder+generator"] = phase_runner(model, 1, 2)(runs["autoencoder"], aae_batch)[0]
    step = train_lib.make_train_step(model.phases)
    runs["full"], runs["full_metrics"] = step(jax.tree.map(jnp.copy, s0), aae_dataset, jnp.arange(B))
    return runs


# ================================================================== the named losses, by hand

@pytest.mark.parametrize("balanced", [False, True])
def test_discriminator_loss_by_hand_with_a_linear_critic(balanced):
    """Logit w.z + c: BCE of 2 codes (target 0) and 6 prior samples (target 1), plus
    gamma/2 * |w|^2, the R1 term of a linear logit whatever z is."""
    gamma = 3.0
    config = aae.AAEConfig(discriminator_norm="none", prior_samples_per_code=3, gradient_penalty=gamma,
                           discriminator_loss="balanced" if balanced else "pooled")
    samples = np.asarray([[0.5, 0.5], [1.0, -1.0], [0.0, 2.0], [1.0, 0.0], [2.0, 1.0], [0.0, 0.0]], np.float32)
    parts = aae.AAEParts(config, aae.AAEModules(None, None, LinearCritic()), lambda key, n: jnp.asarray(samples[:n]))
    w, c = np.asarray([[1.0], [-2.0]], np.float32), np.float32(0.25)
    params = {"discriminator": {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.asarray([c])}}}
    codes = np.asarray([[1.0, 0.0], [0.0, 1.0]], np.float32)
    loss, stats, metrics, _ = aae.discriminator_loss(parts, params, {"discriminator": {}},
                                                    {"codes": jnp.asarray(codes)}, jax.random.key(0), 0)
    code_terms, prior_terms = softplus(codes @ w + c), softplus(-(samples @ w + c))
    bce = (0.5 * (code_terms.mean() + prior_terms.mean()) if balanced
           else np.concatenate([code_terms, prior_terms]).mean())
    np.testing.assert_allclose(float(metrics["r1"]), 5.0, rtol=1e-6)  # |(1, -2)|^2
    np.testing.assert_allclose(float(loss), bce + 0.5 * gamma * 5.0, rtol=1e-6)
    # code logits 1.25, -1.75: 1 of 2 right; prior logits -0.25, 3.25, -3.75, 1.25, 0.25, 0.25: 4 of 6
    np.testing.assert_allclose(float(metrics["balanced_accuracy"]), 0.5 * (1 / 2 + 4 / 6), rtol=1e-6)
    assert stats == {"discriminator": {}}


def test_generator_term_by_hand_with_a_linear_critic():
    config = aae.AAEConfig(discriminator_norm="none", generator_weight=0.5)
    parts = aae.AAEParts(config, aae.AAEModules(None, None, LinearCritic()), user_prior)
    params = {"discriminator": {"Dense_0": {"kernel": jnp.asarray([[2.0], [1.0]]), "bias": jnp.asarray([-1.0])}}}
    codes = jnp.asarray([[1.0, 1.0], [0.0, 0.0], [-1.0, 0.5]])  # logits 2, -1, -2.5
    loss, _, metrics = aae.generator_term(parts, params, {"discriminator": {}}, codes, None, jax.random.key(0))
    np.testing.assert_allclose(float(loss), 0.5 * softplus(-np.asarray([2.0, -1.0, -2.5])).mean(), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["codes_called_prior"]), 1 / 3, rtol=1e-6)


def test_make_model_assembles_the_named_losses():
    model = aae.make_model(AAE_CONFIG, user_prior)
    assert [(p.name, p.loss_fn.func) for p in model.phases] == [
        ("autoencoder", aae.autoencoder_loss), ("generator", aae.generator_loss),
        ("discriminator", aae.discriminator_loss)]
    parts = model.phases[0].loss_fn.args[0]
    assert all(p.loss_fn.args == (parts,) for p in model.phases)
    assert parts.config == AAE_CONFIG and parts.prior is user_prior and parts.moments is None


def test_aae_config_fields_are_documented_for_the_command_line():
    assert_config_fields_documented(aae.AAEConfig, {"num_classes", "decay_steps", "image_shape"}, {
        "discriminator_norm": aae.DISCRIMINATOR_NORMS, "discriminator_loss": aae.DISCRIMINATOR_LOSSES,
        "generator_optimizer": aae.GENERATOR_OPTIMIZERS})


# ================================================================== shapes; each phase updates only its modules

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


def test_aae_autoencoder_phase_updates_encoder_and_decoder_only(aae_setup, aae_runs):
    s0 = aae_setup[1]
    assert_phase_changed_only(s0, aae_runs["autoencoder"], "autoencoder", ("encoder", "decoder"))
    chex.assert_trees_all_equal(s0.batch_stats["discriminator"], aae_runs["autoencoder"].batch_stats["discriminator"])


def test_aae_generator_phase_updates_encoder_only(aae_setup, aae_runs):
    assert_phase_changed_only(aae_setup[1], aae_runs["generator"], "generator", ("encoder",))


def test_aae_discriminator_phase_updates_discriminator_only(aae_setup, aae_runs):
    s0, after = aae_setup[1], aae_runs["discriminator"]
    assert_phase_changed_only(s0, after, "discriminator", ("discriminator",))
    for name in ("encoder", "decoder"):
        chex.assert_trees_all_equal(s0.batch_stats[name], after.batch_stats[name])
    assert max_abs_diff(s0.batch_stats["discriminator"], after.batch_stats["discriminator"]) > 0


# ================================================================== the carry: the discriminator judges phase-2 codes

def test_full_aae_step_discriminator_judges_codes_from_before_the_generator_update(aae_setup, aae_runs, aae_batch):
    model, s0, encode = aae_setup
    after_ae, after_gen, full = aae_runs["autoencoder"], aae_runs["autoencoder+generator"], aae_runs["full"]
    # the full step runs autoencoder then generator: the same encoder/decoder as the two phases run by hand
    chex.assert_trees_all_close(full.params["encoder"], after_gen.params["encoder"], atol=1e-6)
    chex.assert_trees_all_close(full.params["decoder"], after_gen.params["decoder"], atol=1e-6)

    codes_before = encode(after_ae.params, after_ae.batch_stats, aae_batch["image"], train=True)
    codes_after = encode(after_gen.params, after_gen.batch_stats, aae_batch["image"], train=True)
    assert max_abs_diff(codes_before, codes_after) > 1e-4
    phase = model.phases[2]
    key = jax.random.fold_in(jax.random.split(s0.key)[1], 2)  # apply_phases' key for phase index 2

    @jax.jit
    def by_hand(codes):
        def loss(sub):
            output = phase.loss_fn({**after_gen.params, **sub}, after_gen.batch_stats,
                                   {**aae_batch, "codes": codes}, key, s0.step)
            return output.loss, output.batch_stats
        trainable = {"discriminator": after_gen.params["discriminator"]}
        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
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
    assert max_abs_diff(stats_after, stats_before) > 1e-5
    assert max_abs_diff(full.batch_stats["discriminator"], stats_after) > 1e-5


def test_shared_generator_optimizer_adds_the_generator_term_to_the_autoencoder_phase(aae_setup, aae_batch):
    """Two phases: the autoencoder loss is the separate model's autoencoder + generator losses at the
    same parameters; one Adam moves encoder and decoder; the discriminator judges that phase's codes."""
    separate = aae.make_model(aae.AAEConfig(discriminator_norm="none"), user_prior)
    shared = aae.make_model(aae.AAEConfig(discriminator_norm="none", generator_optimizer="shared"), user_prior)
    assert [phase.name for phase in shared.phases] == ["autoencoder", "discriminator"]
    s0 = state_without_compiling_init(shared, 1)
    assert set(s0.opt_states) == {"autoencoder", "discriminator"}
    key = jax.random.key(4)

    def loss(model, index):
        return model.phases[index].loss_fn(s0.params, s0.batch_stats, aae_batch, key, s0.step)

    total, _, metrics, carry = jax.jit(lambda: loss(shared, 0))()
    bce, generator = jax.jit(lambda: (loss(separate, 0)[0], loss(separate, 1)[0]))()
    assert float(generator) > 1e-4
    np.testing.assert_allclose(float(total), float(bce + generator), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["generator"]), float(generator), rtol=1e-6)
    codes0 = aae_setup[2](s0.params, s0.batch_stats, aae_batch["image"], train=True)
    chex.assert_trees_all_close(carry["codes"], codes0, atol=1e-6)

    after_ae = phase_runner(shared, 0, 1)(s0, aae_batch)[0]
    assert_phase_changed_only(s0, after_ae, "autoencoder", ("encoder", "decoder"))
    full, full_metrics = phase_runner(shared, 0, 2)(s0, aae_batch)
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
        return train_lib.LossOutput(jnp.mean(h ** 2), batch_stats, {}, carry={"h": h})

    def second_loss(params, batch_stats, batch, key, step):
        return train_lib.LossOutput(jnp.sum(second_layer.apply({"params": params["b"]}, batch["h"])), batch_stats,
                                    {"seen_h": batch["h"]})

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
    assert max_abs_diff(a1, a0) > 1e-3  # phase 1 trained "a" ...
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
    assert max_abs_diff(direct, jax.tree.map(jnp.zeros_like, a0)) > 1e-3


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
        assert max_abs_diff(full.params[name], s0.params[name]) > 1e-5
    for name in full.opt_states:
        assert max_abs_diff(full.opt_states[name], s0.opt_states[name]) > 0
    assert not np.array_equal(jax.random.key_data(full.key), jax.random.key_data(s0.key))
    # the discriminator phase draws from this sampler: another prior gives another loss for the same codes
    codes = jnp.asarray(random_codes(B))
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
    with pytest.raises(ValueError, match=r"must return \(n, 3\) codes, got shape \(3, 2\)"):
        aae.make_model(aae.AAEConfig(latent_dim=3), priors.uniform_box())


@pytest.mark.parametrize("kwargs, message", [
    ({"discriminator_norm": "layer"}, "discriminator_norm must be one of"),
    ({"discriminator_norm": "batch"}, "discriminator_norm must be one of"),
    ({"latent_dim": 0}, "latent_dim and prior_samples_per_code must be positive"),
    ({"prior_samples_per_code": 0}, "latent_dim and prior_samples_per_code must be positive"),
    ({"learning_rate": 0.0}, "learning rates must be > 0"), ({"generator_weight": -1.0}, "generator_weight >= 0"),
    ({"generator_learning_rate": 0.0}, "learning rates must be > 0"),
    ({"adversary_learning_rate": -1e-3}, "learning rates must be > 0"),
    ({"gradient_penalty": -1.0, "discriminator_norm": "none"}, "gradient_penalty must be >= 0"),
    # the lecture's BatchNorm couples the samples: no per-sample gradient
    ({"gradient_penalty": 1.0}, "gradient_penalty needs discriminator_norm='none'"),
    ({"gradient_penalty": 1.0, "discriminator_norm": "batch_joint"}, "gradient_penalty needs discriminator_norm='none'"),
    ({"generator_optimizer": "adam"}, "generator_optimizer must be one of"),
    ({"generator_optimizer": "shared", "generator_learning_rate": 1e-4}, "generator_learning_rate needs"),
    ({"num_classes": 1}, "num_classes must be at least 2"),
    ({"decay_steps": -1}, "decay_steps must be >= 0"),
    ({"component_assignment": "nearest", "label_conditioning": True}, "component_assignment must be one of"),
    ({"component_assignment": "balanced"}, "component_assignment='balanced' needs label_conditioning"),
])
def test_aae_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        aae.AAEConfig(**kwargs)


def test_r1_penalty_is_each_samples_squared_logit_gradient():
    z = jnp.asarray(random_codes(6, seed=8))
    w = jnp.asarray([[3.0], [-4.0]])
    np.testing.assert_allclose(aae.r1_penalty(lambda x: x @ w, z), np.full(6, 25.0), rtol=1e-6)
    # a non-linear logit: sum of squares has gradient 2z, squared norm 4 |z|^2
    np.testing.assert_allclose(aae.r1_penalty(lambda x: jnp.sum(x * x, -1, keepdims=True), z),
                               4 * np.sum(np.square(np.asarray(z)), -1), rtol=1e-5)


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


@pytest.mark.parametrize("rates", [{}, {"generator_learning_rate": 1e-4}, {"adversary_learning_rate": 3e-3},
                                   {"generator_learning_rate": 2e-5, "adversary_learning_rate": 5e-4}])
def test_each_phase_steps_at_its_own_learning_rate(rates):
    """Adam's first step on a constant gradient is -rate per parameter: the rate each phase's optimizer holds."""
    model = aae.make_model(aae.AAEConfig(weight_decay=0.0, **rates), priors.uniform_box())
    wanted = {"autoencoder": 1e-3, "generator": rates.get("generator_learning_rate", 1e-3),
              "discriminator": rates.get("adversary_learning_rate", 1e-3)}
    params = {"w": jnp.ones((3,))}
    for phase in model.phases:
        updates, _ = phase.optimizer.update({"w": jnp.full((3,), 0.7)}, phase.optimizer.init(params), params)
        np.testing.assert_allclose(updates["w"], -wanted[phase.name], rtol=1e-5)


def generator_losses_under_two_labellings(config: aae.AAEConfig, images: jax.Array) -> tuple[float, float]:
    """The generator phase's loss on the same images with labels k and k + 5 (mod 10), from one
    initial state; also checks that the phase changes the encoder only."""
    model = aae.make_model(config, priors.uniform_boxes())
    state = train_lib.create_train_state(model, jax.random.key(1))
    step = jax.jit(lambda s, b: train_lib.apply_phases(model.phases[1:2], s, b))
    batch = {"image": images, "label": jnp.arange(B) % 10}
    after, metrics = step(state, batch)
    assert_phase_changed_only(state, after, "generator", ("encoder",))
    _, other = step(state, {**batch, "label": (batch["label"] + 5) % 10})
    return float(metrics["loss"]), float(other["loss"])


@pytest.mark.slow
def test_label_conditioned_generator_phase_updates_encoder_only_and_reads_the_labels(aae_batch):
    loss, shifted = generator_losses_under_two_labellings(LABELLED_CONFIG, aae_batch["image"])
    assert abs(loss - shifted) > 1e-7


def test_label_conditioning_needs_a_mixture_prior_with_one_component_per_class():
    for prior in (priors.uniform_box(), user_prior):
        with pytest.raises(ValueError, match="needs a mixture prior with 10 components, one per class") as error:
            aae.make_model(LABELLED_CONFIG, prior)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="'8 Gaussians on a circle' has 8 components, so it needs 8 classes, "
                                         "got num_classes=10") as error:
        aae.make_model(LABELLED_CONFIG, priors.gaussian_mixture(8))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="'10 uniform boxes' has 10 components, so it needs 10 classes, got num_classes=8"):
        aae.make_model(dataclasses.replace(LABELLED_CONFIG, num_classes=8), priors.uniform_boxes())
    aae.make_model(dataclasses.replace(LABELLED_CONFIG, num_classes=8), priors.gaussian_mixture(8))  # accepted
    with pytest.raises(ValueError, match="needs the labels"):
        aae.discriminator_inputs(LABELLED_CONFIG, jnp.zeros((3, 2)), None)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        aae.AAEConfig(label_conditioning=True, num_classes=1)
    with pytest.raises(ValueError, match="standardize_components needs label_conditioning"):
        aae.AAEConfig(standardize_components=True)


def test_component_moments_of_the_boxes_and_standardised_inputs():
    prior = priors.uniform_boxes()
    means, stds = aae.component_moments(prior)
    chex.assert_shape((means, stds), (10, 2))
    centres = box_centres()
    np.testing.assert_allclose(means, centres, atol=0.01)
    np.testing.assert_allclose(stds, box_sides() / math.sqrt(12), rtol=0.02)  # a uniform of width w: w / sqrt(12)
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
    centres = box_centres()
    codes = np.concatenate([centres[:4], centres[:4], [[3.0, 3.0], [3.0, 3.0]]])
    labels = np.asarray([0, 1, 2, 3, 1, 2, 3, 4, 0, 1])  # 4 in their own box, 4 in another's, 2 outside
    result = aae.prior_match(LABELLED_CONFIG, params, stats, codes, prior, jax.random.key(3), labels)
    assert result["inside_support"] == pytest.approx(0.8)
    assert result["inside_own_component"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="labels must have shape"):
        aae.prior_match(LABELLED_CONFIG, params, stats, codes, prior, jax.random.key(3), labels[:3])


@pytest.mark.slow
def test_decay_steps_lower_every_phase_rate(aae_batch):
    """decay_steps=1: the first step at the full rates, the second at 1% of them, in all three phases."""
    def with_codes(first, batch):  # the discriminator phase alone reads the generator phase's codes
        return {**batch, "codes": decayed.encode(first.params, first.batch_stats, batch["image"], train=True)}

    decayed = aae.make_model(dataclasses.replace(AAE_CONFIG, decay_steps=1), user_prior)
    assert_decay_lowers_every_phase_rate(decayed, aae.make_model(AAE_CONFIG, user_prior), aae_batch, with_codes)


# ================================================================== ten boxes without labels

BALANCED_CONFIG = dataclasses.replace(LABELLED_CONFIG, component_assignment="balanced", standardize_components=True)


def test_balanced_components_keep_codes_that_are_already_balanced_in_their_own_box():
    moments = aae.component_moments(priors.uniform_boxes())
    order = np.random.default_rng(0).permutation(30) % 10  # three codes in each box, shuffled
    codes = box_centres()[order] + np.random.default_rng(1).uniform(-0.2, 0.2, (30, 2)).astype(np.float32)
    components = aae.balanced_components(jnp.asarray(codes), moments)
    chex.assert_shape(components, (30,))
    chex.assert_type(components, jnp.int32)
    np.testing.assert_array_equal(components, order)


def test_balanced_components_spread_codes_crowded_into_one_box_over_every_box():
    moments = aae.component_moments(priors.uniform_boxes())
    centres = box_centres()
    # 40 distinct codes, all nearest to box 4 (the middle one): nearest-box would give box 4 to all
    offsets = np.stack(np.meshgrid(np.linspace(-0.35, 0.35, 8), np.linspace(-0.3, 0.3, 5)), -1).reshape(-1, 2)
    codes = jnp.asarray(centres[4] + offsets, jnp.float32)
    nearest = np.argmin(((np.asarray(codes)[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert set(nearest) == {4}
    components = np.asarray(aae.balanced_components(codes, moments))
    counts = np.bincount(components, minlength=10)
    assert counts.min() >= 2 and counts.max() <= 6, counts  # 4 each would be exact
    # each code's box lies on its own side of box 4: a code right of centre never goes to a left column box
    left_column = {0, 1, 2}
    right_of_centre = np.asarray(codes)[:, 0] > centres[4, 0] + 0.1
    assert not set(components[right_of_centre]) & left_column


def test_balanced_assignment_ignores_the_labels_in_training_and_in_prior_match(aae_batch):
    loss, shifted = generator_losses_under_two_labellings(BALANCED_CONFIG, aae_batch["image"])
    assert loss == shifted
    # the labelled game with the same settings does read them
    labelled = dataclasses.replace(BALANCED_CONFIG, component_assignment="label")
    loss, shifted = generator_losses_under_two_labellings(labelled, aae_batch["image"])
    assert abs(loss - shifted) > 1e-7

    model = aae.make_model(BALANCED_CONFIG, priors.uniform_boxes())
    params, stats = model.init(jax.random.key(2))
    codes = box_centres()
    results = [aae.prior_match(BALANCED_CONFIG, params, stats, codes, priors.uniform_boxes(), jax.random.key(3), labels)
               for labels in (np.arange(10), (np.arange(10) + 3) % 10)]
    assert results[0] == results[1]
    assert results[0]["inside_own_component"] == pytest.approx(1.0)  # each centre sent to its own box
