"""The AAE's discriminator and its losses against PyTorch (the lecture's networks); skipped
where torch is not installed."""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn as tnn  # noqa: E402  (after the importorskip)

from aejax import aae, priors  # noqa: E402
from aejax.modules import Discriminator, apply_training  # noqa: E402
from adversarial_support import (AAE_CONFIG, B, LABELLED_CONFIG, box_centres, box_sides, random_codes,  # noqa: E402
                                 user_prior)
from support import count, max_abs_diff  # noqa: E402

pytestmark = pytest.mark.slow  # every test here compares with PyTorch


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _torch_discriminator(latent: int = 2, batch_norm: bool = True, seed: int = 0):
    """The lecture's discriminator; BatchNorm affine params and running stats randomised so the copy matters."""
    torch.manual_seed(seed)
    layers = []
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


def _discriminator_to_flax(net) -> tuple[dict, dict]:
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


def _batch_norms(net) -> list:
    return [m for m in net if isinstance(m, tnn.BatchNorm1d)]


# ================================================================== Discriminator vs PyTorch

@pytest.mark.parametrize("batch_norm, expected", [(True, 134_657), (False, 133_121)])
def test_discriminator_parameter_count_matches_torch(batch_norm, expected):
    net = _torch_discriminator(batch_norm=batch_norm)
    assert sum(p.numel() for p in net.parameters()) == expected
    variables = jax.eval_shape(lambda k: Discriminator(batch_norm=batch_norm).init(k, jnp.zeros((1, 2)), False),
                               jax.random.key(0))
    assert count(variables["params"]) == expected
    if batch_norm:
        assert count(variables["batch_stats"]) == 2 * (512 + 256)
        flax_params, flax_stats = _discriminator_to_flax(net)
        chex.assert_trees_all_equal_shapes(flax_params, variables["params"])
        chex.assert_trees_all_equal_shapes(flax_stats, variables["batch_stats"])
    else:
        assert "batch_stats" not in variables or not variables["batch_stats"]
        assert not any(name.startswith("BatchNorm") for name in variables["params"])


def test_discriminator_matches_torch_in_train_and_eval_mode():
    net = _torch_discriminator(seed=3)
    params, stats = _discriminator_to_flax(net)
    x = random_codes(16, seed=1)
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
    assert max_abs_diff(new_stats, stats) > 1e-2

    net.eval()
    y = random_codes(5, seed=2, shift=-0.5)
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
    x = random_codes(6, seed=3)
    with torch.no_grad():
        expected = _np(net(torch.from_numpy(x)))
    module = Discriminator(batch_norm=False)
    logits, new_stats = apply_training(module, {"params": params}, jnp.asarray(x))
    assert new_stats == {}
    np.testing.assert_allclose(jax.nn.sigmoid(logits), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(module.apply({"params": params}, jnp.asarray(x), False), logits, atol=1e-6)


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
    codes = random_codes(B, seed=4, shift=1.5)
    key = jax.random.key(11)
    samples = np.array(user_prior(key, B * per_code))

    loss, new_stats, metrics, _ = jax.jit(model.phases[2].loss_fn)(
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
    assert count(params["discriminator"]) == 133_121
    faithful_stats = jax.eval_shape(aae.make_model(AAE_CONFIG, user_prior).init, jax.random.key(0))[1]
    assert count(faithful_stats["discriminator"]) == 2 * (512 + 256)

    net = _torch_discriminator(batch_norm=False, seed=7)
    disc_params, _ = _discriminator_to_flax(net)
    codes, key = random_codes(B, seed=5), jax.random.key(12)
    samples = np.array(user_prior(key, B * AAE_CONFIG.prior_samples_per_code))
    loss, new_stats, _, _ = model.phases[2].loss_fn({"discriminator": disc_params}, {"discriminator": {}},
                                                   {"codes": jnp.asarray(codes)}, key, 0)
    assert new_stats["discriminator"] == {}
    with torch.no_grad():
        out = net(torch.from_numpy(np.concatenate([codes, samples])))
    targets = torch.cat([torch.zeros(B, 1), torch.ones(len(samples), 1)])
    np.testing.assert_allclose(float(loss), float(torch.nn.functional.binary_cross_entropy(out, targets)), rtol=1e-5)


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
    codes, key = random_codes(B, seed=6, shift=0.5), jax.random.key(13)
    samples = np.array(user_prior(key, B * per_code))

    def loss_fn(p):
        loss, _, metrics, _ = model.phases[2].loss_fn({"discriminator": p}, {"discriminator": {}},
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


@pytest.mark.parametrize("standardize", [False, True])
def test_label_conditioned_discriminator_phase_matches_torch_on_code_label_pairs(standardize):
    config = dataclasses.replace(LABELLED_CONFIG, standardize_components=standardize)
    model = aae.make_model(config, priors.uniform_boxes())
    params = jax.eval_shape(model.init, jax.random.key(0))[0]
    chex.assert_shape(params["discriminator"]["Dense_0"]["kernel"], (2 + 10, 512))
    net = _torch_discriminator(latent=12, batch_norm=False, seed=8)
    disc_params, _ = _discriminator_to_flax(net)
    codes, labels, key = random_codes(B, seed=6), jnp.asarray([3, 1, 9, 3]), jax.random.key(13)
    loss_fn = jax.jit(model.phases[2].loss_fn)
    loss, *_ = loss_fn({"discriminator": disc_params}, {"discriminator": {}},
                      {"codes": jnp.asarray(codes), "label": labels}, key, 0)
    samples, components = aae.prior_samples(config, priors.uniform_boxes(), key, B * 3)
    np.testing.assert_array_equal(components, np.arange(B * 3) % 10)
    assert bool(jnp.all(priors.uniform_boxes().component_contains(samples, components)))
    eye = np.eye(10, dtype=np.float32)
    # standardised: each box's centre to 0 and its sides to sqrt(12), the unit-variance uniform's
    centres, stds = box_centres(), box_sides() / math.sqrt(12)
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
    other, *_ = loss_fn({"discriminator": disc_params}, {"discriminator": {}},
                       {"codes": jnp.asarray(codes), "label": labels + 1}, key, 0)
    assert abs(float(other) - float(loss)) > 1e-4
