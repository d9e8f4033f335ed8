"""Shared by the adversarial family's tests (aae, disentangled, semi_supervised, parity):
configs, tree helpers, phase runners and assertions every variant's model must pass."""

from __future__ import annotations

import dataclasses
import functools
import math
import typing

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import aae, priors
from aejax import train as train_lib

from support import max_abs_diff

B = 4
AAE_CONFIG = aae.AAEConfig()  # the lecture's: latent 2, batch_separate, 20 prior samples per code
LABELLED_CONFIG = aae.AAEConfig(discriminator_norm="none", prior_samples_per_code=3, label_conditioning=True)
# flags of the run itself, which no model config field may shadow
RUN_LEVEL_NAMES = {"epochs", "batch_size", "seed", "chunk_steps", "checkpoint_every", "on_nonfinite", "data_parallel",
                   "lr_schedule", "out", "data_dir", "quick", "progress", "restart", "train_limit", "test_limit", "preset"}


def user_prior(key, n):
    """A hand-written sampler, no ``Prior`` object: uniform on [-1, 1]^2."""
    return jax.random.uniform(key, (n, 2), jnp.float32, -1.0, 1.0)


# ------------------------------------------------------------------ helpers shared by the adversarial tests

def random_codes(n: int, seed: int = 0, shift: float = 1.0, scale: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, 2)) * scale + shift).astype(np.float32)


def box_centres() -> np.ndarray:
    """(10, 2) float32: the centres of LECTURE_BOXES."""
    boxes = np.asarray(priors.LECTURE_BOXES, np.float32)
    return (boxes[:, [0, 2]] + boxes[:, [1, 3]]) / 2


def box_sides() -> np.ndarray:
    """(10, 2) float32: the widths and heights of LECTURE_BOXES (0.8, the last box 0.6 high)."""
    boxes = np.asarray(priors.LECTURE_BOXES, np.float32)
    return boxes[:, [1, 3]] - boxes[:, [0, 2]]


def assert_phase_changed_only(before: train_lib.TrainState, after: train_lib.TrainState, phase: str,
                              changed: tuple[str, ...]):
    """``after`` (one phase run from ``before``) changed the params of ``changed`` only, and only its own opt state."""
    assert set(after.params) == set(before.params)
    for name in before.params:
        if name in changed:
            assert max_abs_diff(before.params[name], after.params[name]) > 1e-5, name
        else:
            chex.assert_trees_all_equal(before.params[name], after.params[name])
    for name in before.opt_states:
        if name == phase:
            assert max_abs_diff(before.opt_states[name], after.opt_states[name]) > 0
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


def state_without_compiling_init(model: train_lib.Model, seed: int) -> train_lib.TrainState:
    """create_train_state with variables of exactly the shapes ``model.init`` gives (traced, not compiled:
    compiling the conv networks' init costs ~5 s per model on CPU)."""
    shapes = jax.eval_shape(model.init, jax.random.key(seed))
    variables = (_filled(shapes[0], np.random.default_rng(seed)), _filled(shapes[1], None))
    chex.assert_trees_all_equal_shapes_and_dtypes(variables, shapes)
    return train_lib.create_train_state(model._replace(init=lambda key: variables), jax.random.key(seed))


@functools.cache
def phase_runner(model: train_lib.Model, start: int, stop: int):
    """jit(apply_phases(model.phases[start:stop], state, batch)), compiled once per slice."""
    return jax.jit(functools.partial(train_lib.apply_phases, model.phases[start:stop]))


def _drop_schedule_count(opt_state):
    """A torch_adam state with a schedule -> the same state as the constant-rate optimizer has it."""
    *adam_parts, _ = opt_state  # chain: (..., scale_by_adam state, scale_by_schedule state)
    return (*adam_parts, optax.EmptyState())


def assert_decay_lowers_every_phase_rate(decayed: train_lib.Model, constant: train_lib.Model, batch, phase_batch=None):
    """``decayed`` (decay_steps=1) and ``constant`` (the same config without decay): each phase
    applied alone to the state after step one (run on ``batch``) moves its modules 1/100 as far
    as the same phase at constant rates. ``phase_batch(state after step one, batch)``, when
    given, is the batch of those single phases."""
    first = jax.jit(functools.partial(train_lib.apply_phases, decayed.phases))(state_without_compiling_init(decayed, 3),
                                                                               batch)[0]
    if phase_batch is not None:
        batch = phase_batch(first, batch)
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


def assert_config_fields_documented(config_type: type, not_on_command_line: set[str], choices: dict[str, tuple]):
    """Every field has a help text; exactly ``not_on_command_line`` are marked ``cli: False``;
    the fields of ``choices`` are Literal types of those values; no field is a run-level name."""
    hints = typing.get_type_hints(config_type)
    fields = dataclasses.fields(config_type)
    for field in fields:
        assert isinstance(field.metadata.get("help"), str) and len(field.metadata["help"]) > 10, field.name
    assert {f.name for f in fields if not f.metadata.get("cli", True)} == not_on_command_line
    for name, values in choices.items():
        assert typing.get_origin(hints[name]) is typing.Literal and typing.get_args(hints[name]) == values, name
    assert not {f.name for f in fields} & RUN_LEVEL_NAMES


def assert_label_head_model(model: train_lib.Model, state: train_lib.TrainState, images: jax.Array, num_classes: int,
                            style_dim: int):
    """Shapes of a label-head model's encode, classify and decode; decode takes integer labels,
    one-hot vectors or probabilities, and the labels reach the decoder."""
    params, stats = state.params, state.batch_stats
    n = images.shape[0]
    chex.assert_shape(params["encoder"]["Dense_0"]["kernel"], (2048, num_classes + style_dim))
    chex.assert_shape(params["decoder"]["Dense_0"]["kernel"], (style_dim + num_classes, 512))
    style = jax.jit(model.encode)(params, stats, images)
    chex.assert_shape(style, (n, style_dim))
    label_logits = jax.jit(model.classify)(params, stats, images)
    chex.assert_shape(label_logits, (n, num_classes))
    chex.assert_type([style, label_logits], jnp.float32)
    assert not np.allclose(label_logits[:, :style_dim], style)  # two different slices of the encoder output

    decode = jax.jit(model.decode)
    labels = jnp.arange(n, dtype=jnp.int32) * 3 % num_classes
    by_labels = decode(params, stats, style, labels)
    by_probs = decode(params, stats, style, jax.nn.softmax(label_logits))
    by_one_hot = decode(params, stats, style, jax.nn.one_hot(labels, num_classes))
    chex.assert_shape([by_labels, by_probs, by_one_hot], (n, 28, 28, 1))
    chex.assert_type([by_labels, by_probs, by_one_hot], jnp.float32)
    np.testing.assert_allclose(by_one_hot, by_labels, atol=1e-6)
    other = decode(params, stats, style, (labels + 1) % num_classes)
    assert max_abs_diff(other, by_labels) > 1e-6  # the labels reach the decoder


class FlatEncoder(nn.Module):
    """A linear encoder without BatchNorm: images (B, H, W, 1) -> (B, features)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        del train
        return nn.Dense(self.features, use_bias=False)(x.reshape(x.shape[0], -1))


class LinearCritic(nn.Module):
    """A discriminator without BatchNorm whose logit is linear in its input: (N, D) -> (N, 1)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        del train
        return nn.Dense(1)(x)


def softplus(x):
    """log(1 + e^x) in float64: BCE with logit x against target 0; softplus(-x) against target 1."""
    return np.logaddexp(0.0, np.asarray(x, np.float64))
