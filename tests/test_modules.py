"""aejax.modules: parameter counts, shapes, PyTorch-like init and exact parity with the
lecture's PyTorch Encoder/Decoder (weights converted one to one), in eval and train mode,
and with its conditional decoder (CDecoder)."""

from __future__ import annotations

import copy

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import conv_kernels, modules
from aejax.modules import ConvTranspose2x, Decoder, Encoder

ATOL = 1e-5
RTOL = 1e-5
PARITY_LATENT = 8
PARITY_BATCH = 6
DECODER_OUT_GAIN = 30.0


def _torch():
    """torch, torch.nn and tests/torch_reference.py; the calling test is skipped where torch is missing."""
    torch = pytest.importorskip("torch")
    import torch_reference

    return torch, torch.nn, torch_reference


def _assert_close(actual, expected, atol=ATOL, rtol=RTOL):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    err = np.abs(actual - expected)
    assert np.all(err <= atol + rtol * np.abs(expected)), f"max abs err {err.max():.3g}"


def _randomise_batchnorm(module, gen, batches) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics.

    The running statistics come from train-mode passes over real-looking batches (a
    high momentum makes them close to the data's statistics, so eval-mode activations
    stay well scaled); momentum goes back to PyTorch's 0.1 afterwards.
    """
    torch, tnn, _ = _torch()
    bns = [m for m in module.modules() if isinstance(m, tnn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=gen) * 0.2)
            bn.momentum = 0.6
        module.train()
        for batch in batches:
            module(batch)
        for bn in bns:
            bn.momentum = 0.1
            assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
            assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


@pytest.fixture(scope="module")
def torch_pair():
    """Lecture Encoder/Decoder with random weights and non-trivial BatchNorm state."""
    torch, _, ref = _torch()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    encoder, decoder = ref.TorchEncoder(PARITY_LATENT), ref.TorchDecoder(PARITY_LATENT)
    _randomise_batchnorm(encoder, gen, [torch.rand(16, 1, 28, 28, generator=gen) for _ in range(2)])
    _randomise_batchnorm(decoder, gen, [torch.randn(16, PARITY_LATENT, generator=gen) for _ in range(2)])
    with torch.no_grad():  # larger final weights: images spread over (0, 1), not all near 0.5
        decoder.net[-2].weight.mul_(DECODER_OUT_GAIN)
    encoder.eval()
    decoder.eval()
    return encoder, decoder


@pytest.fixture(scope="module")
def parity_inputs():
    rng = np.random.default_rng(42)
    images = rng.uniform(0.0, 1.0, (PARITY_BATCH, 28, 28, 1)).astype(np.float32)
    latents = rng.normal(0.0, 1.0, (PARITY_BATCH, PARITY_LATENT)).astype(np.float32)
    return images, latents


def _flax_shapes(module, x):
    return jax.eval_shape(lambda k: module.init(k, jnp.zeros(x, jnp.float32), False), jax.random.key(0))


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


# ------------------------------------------------------------ counts and shapes

@pytest.mark.parametrize(
    "module, latent, expected",
    [
        ("encoder", 2, 525_506),
        ("decoder", 2, 1_580_577),
        ("encoder", 24, 570_584),
        ("decoder", 24, 1_591_841),
        ("encoder", 900, 2_365_508),
    ],
)
def test_trainable_parameter_counts(module, latent, expected):
    shapes = _flax_shapes(Encoder(latent), (1, 28, 28, 1)) if module == "encoder" else _flax_shapes(Decoder(), (1, latent))
    assert set(shapes) == {"params", "batch_stats"}
    assert _count(shapes["params"]) == expected
    _, _, ref = _torch()
    torch_module = ref.TorchEncoder(latent) if module == "encoder" else ref.TorchDecoder(latent)
    assert sum(p.numel() for p in torch_module.parameters()) == expected  # the lecture's own count agrees


def test_converter_covers_every_variable(torch_pair):
    """The converted trees have exactly the structure and shapes of flax's own init."""
    _, _, ref = _torch()
    encoder, decoder = torch_pair
    chex.assert_trees_all_equal_shapes_and_dtypes(
        ref.torch_to_flax(encoder), _flax_shapes(Encoder(PARITY_LATENT), (1, 28, 28, 1)))
    chex.assert_trees_all_equal_shapes_and_dtypes(
        ref.torch_to_flax(decoder), _flax_shapes(Decoder(), (1, PARITY_LATENT)))


@pytest.fixture(scope="module")
def flax_init(parity_inputs):
    """Flax's own init, on the parity shapes (so compiled ops are shared with those tests)."""
    images, latents = parity_inputs
    enc, dec = Encoder(PARITY_LATENT), Decoder()
    enc_vars = enc.init(jax.random.key(0), jnp.asarray(images), False)
    dec_vars = dec.init(jax.random.key(1), jnp.asarray(latents), False)
    return enc, enc_vars, dec, dec_vars


def test_output_shapes_and_dtypes(flax_init, parity_inputs):
    enc, enc_vars, dec, dec_vars = flax_init
    x = jnp.asarray(parity_inputs[0])
    B, D = PARITY_BATCH, PARITY_LATENT
    z = enc.apply(enc_vars, x, False)
    chex.assert_shape(z, (B, D))
    chex.assert_type(z, jnp.float32)
    logits = dec.apply(dec_vars, z, False)
    chex.assert_shape(logits, (B, 28, 28, 1))
    chex.assert_type(logits, jnp.float32)
    # train mode: same shapes, and updated statistics with the same structure
    z_train, enc_updates = enc.apply(enc_vars, x, True, mutable=["batch_stats"])
    chex.assert_shape(z_train, (B, D))
    chex.assert_trees_all_equal_shapes_and_dtypes(enc_updates["batch_stats"], enc_vars["batch_stats"])
    logits_train, dec_updates = dec.apply(dec_vars, z_train, True, mutable=["batch_stats"])
    chex.assert_shape(logits_train, (B, 28, 28, 1))
    chex.assert_type(logits_train, jnp.float32)
    chex.assert_trees_all_equal_shapes_and_dtypes(dec_updates["batch_stats"], dec_vars["batch_stats"])
    # apply_inference(train=True) is the train-mode output with the updates dropped
    chex.assert_trees_all_close(modules.apply_inference(enc, enc_vars, x, train=True), z_train)
    chex.assert_trees_all_close(modules.apply_inference(enc, enc_vars, x), z)


def test_pytorch_like_init(flax_init):
    _, enc_vars, _, dec_vars = flax_init
    for variables in (enc_vars, dec_vars):
        params = flax.core.unfreeze(variables["params"])
        bn_names = [n for n in params if n.startswith("BatchNorm_")]
        assert len(bn_names) == 5
        for n in bn_names:
            chex.assert_trees_all_equal(params[n]["scale"], jnp.ones_like(params[n]["scale"]))
            chex.assert_trees_all_equal(params[n]["bias"], jnp.zeros_like(params[n]["bias"]))
            stats = variables["batch_stats"][n]
            chex.assert_trees_all_equal(stats["mean"], jnp.zeros_like(stats["mean"]))
            chex.assert_trees_all_equal(stats["var"], jnp.ones_like(stats["var"]))
    # weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with PyTorch's fan_in
    # (a transposed conv takes it from its *output* channels, as torch does)
    enc_p, dec_p = enc_vars["params"], dec_vars["params"]
    cases = [
        (enc_p["Conv_0"]["kernel"], 1 * 9),
        (enc_p["Conv_1"]["kernel"], 32 * 9),
        (enc_p["Dense_0"]["kernel"], 2048),
        (dec_p["Dense_0"]["kernel"], PARITY_LATENT),
        (dec_p["ConvTranspose2x_0"]["kernel"], 256 * 9),
        (dec_p["ConvTranspose2x_0"]["bias"], 256 * 9),
        (dec_p["Conv_0"]["kernel"], 32 * 49),
    ]
    for w, fan_in in cases:
        bound = 1 / np.sqrt(fan_in)
        w = np.asarray(w)
        assert np.abs(w).max() <= bound + 1e-7
        assert np.abs(w).max() > 0.8 * bound  # spread over the whole range, not a narrower init
    # torch's own ConvTranspose2d weight bound, for the record
    _, tnn, _ = _torch()
    t = tnn.ConvTranspose2d(512, 256, 3)
    assert float(t.weight.detach().abs().max()) <= 1 / np.sqrt(256 * 9) + 1e-7


# ------------------------------------------------------------ PyTorch parity

def test_encoder_eval_parity(torch_pair, parity_inputs):
    torch, _, ref = _torch()
    encoder, _ = torch_pair
    images, _ = parity_inputs
    with torch.no_grad():
        expected = ref._np(encoder(ref._nchw(images)))
    got = Encoder(PARITY_LATENT).apply(ref.torch_to_flax(encoder), jnp.asarray(images), False)
    chex.assert_shape(got, (PARITY_BATCH, PARITY_LATENT))
    assert np.abs(expected).max() > 0.1  # a meaningful comparison, not of near-zeros
    _assert_close(got, expected)


def _torch_decoder_logits(decoder, z):
    """The torch decoder's output before its final Sigmoid."""
    _, tnn, _ = _torch()
    assert isinstance(decoder.net[-1], tnn.Sigmoid)
    return decoder.net[:-1](decoder.fc(z).view(-1, 512, 1, 1))


@pytest.mark.parametrize("impl", ["taps", "subpixel", "lax"])
def test_decoder_eval_parity(torch_pair, parity_inputs, impl):
    torch, _, ref = _torch()
    _, decoder = torch_pair
    _, latents = parity_inputs
    with torch.no_grad():
        expected = ref._nhwc(decoder(torch.from_numpy(latents)))
        expected_logits = ref._nhwc(_torch_decoder_logits(decoder, torch.from_numpy(latents)))
    logits = Decoder(conv_transpose_impl=impl).apply(ref.torch_to_flax(decoder), jnp.asarray(latents), False)
    chex.assert_shape(logits, (PARITY_BATCH, 28, 28, 1))
    chex.assert_type(logits, jnp.float32)
    assert expected.std() > 0.1 and expected.min() < 0.1 and expected.max() > 0.9  # images, not a constant
    _assert_close(jax.nn.sigmoid(logits), expected)
    _assert_close(logits, expected_logits, atol=1e-4)


def test_encoder_train_parity(torch_pair, parity_inputs):
    torch, _, ref = _torch()
    encoder = copy.deepcopy(torch_pair[0])
    images, _ = parity_inputs
    variables = ref.torch_to_flax(encoder)
    encoder.train()
    with torch.no_grad():
        expected = ref._np(encoder(ref._nchw(images)))
    got, updates = Encoder(PARITY_LATENT).apply(variables, jnp.asarray(images), True, mutable=["batch_stats"])
    _assert_close(got, expected)
    expected_stats = ref.torch_to_flax(encoder)["batch_stats"]
    chex.assert_trees_all_equal_structs(updates["batch_stats"], expected_stats)
    # the statistics did move, and moved the same way
    old = variables["batch_stats"]["BatchNorm_0"]["var"]
    assert not np.allclose(np.asarray(updates["batch_stats"]["BatchNorm_0"]["var"]), np.asarray(old))
    jax.tree_util.tree_map(_assert_close, updates["batch_stats"], expected_stats)


def test_decoder_train_parity(torch_pair, parity_inputs):
    torch, _, ref = _torch()
    decoder = copy.deepcopy(torch_pair[1])
    _, latents = parity_inputs
    variables = ref.torch_to_flax(decoder)
    decoder.train()
    with torch.no_grad():
        expected = ref._nhwc(decoder(torch.from_numpy(latents)))
    logits, updates = Decoder().apply(variables, jnp.asarray(latents), True, mutable=["batch_stats"])
    assert expected.std() > 0.1
    # Looser than eval mode: the first BatchNorm normalises 256 channels by statistics
    # of only 4 * PARITY_BATCH = 24 values each, which amplifies float32 rounding
    # differences between the two conv implementations; the observed max abs error is
    # about 1.2e-5 (eval mode: 1.3e-6), on images spread over (0, 1).
    _assert_close(jax.nn.sigmoid(logits), expected, atol=5e-5)
    expected_stats = ref.torch_to_flax(decoder)["batch_stats"]
    chex.assert_trees_all_equal_structs(updates["batch_stats"], expected_stats)
    jax.tree_util.tree_map(_assert_close, updates["batch_stats"], expected_stats)


def test_batchnorm_running_var_uses_unbiased_variance():
    """One train step from (mean 0, var 1): mean' = 0.1 * batch mean, var' = 0.9 + 0.1 * unbiased var."""
    x = np.random.default_rng(0).normal(2.0, 3.0, (2, 2, 1, 3)).astype(np.float32)  # n = 4 per feature
    bn = modules.BatchNorm()
    variables = bn.init(jax.random.key(0), jnp.asarray(x), False)
    y, updates = bn.apply(variables, jnp.asarray(x), True, mutable=["batch_stats"])
    flat = x.reshape(-1, 3).astype(np.float64)
    stats = updates["batch_stats"]
    _assert_close(stats["mean"], 0.1 * flat.mean(0))
    _assert_close(stats["var"], 0.9 + 0.1 * flat.var(0, ddof=1))
    # the output is normalised with the biased variance, as torch does
    _assert_close(y, ((flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)).reshape(x.shape), atol=1e-5)
    torch, tnn, ref = _torch()
    torch_bn = tnn.BatchNorm2d(3).train()
    with torch.no_grad():
        torch_y = torch_bn(ref._nchw(x))
    _assert_close(y, ref._nhwc(torch_y))
    _assert_close(stats["var"], ref._np(torch_bn.running_var))
    _assert_close(stats["mean"], ref._np(torch_bn.running_mean))


# ------------------------------------------------------------ conditional decoder vs the lecture's CDecoder

CDEC_LATENT, CDEC_BATCH = 2, 6


@pytest.fixture(scope="module")
def torch_cdecoder():
    """The lecture's CDecoder (the plain decoder on concat(z, one_hot(label, 10))) with random
    weights and non-trivial BatchNorm state."""
    torch, tnn, ref = _torch()

    class TorchCDecoder(ref.TorchDecoder):
        def __init__(self, latent_dim: int):
            super().__init__(latent_dim + 10)

        def forward(self, z, labels):
            return super().forward(torch.cat([z, tnn.functional.one_hot(labels, 10).float()], 1))

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    decoder = TorchCDecoder(CDEC_LATENT)
    bns = [m for m in decoder.modules() if isinstance(m, tnn.BatchNorm2d)]
    with torch.no_grad():  # non-trivial BatchNorm affine parameters and running statistics
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=gen) * 0.2)
            bn.momentum = 0.6
        decoder.train()
        for _ in range(2):
            decoder(torch.randn(16, CDEC_LATENT, generator=gen), torch.randint(0, 10, (16,), generator=gen))
        for bn in bns:
            bn.momentum = 0.1
        decoder.net[-2].weight.mul_(DECODER_OUT_GAIN)  # images spread over (0, 1), not all near 0.5
    decoder.eval()
    return decoder


def test_conditional_decoder_parameter_count(torch_cdecoder):
    _, _, ref = _torch()
    shapes = jax.eval_shape(lambda k: Decoder(num_classes=10).init(
        k, jnp.zeros((1, CDEC_LATENT)), False, labels=jnp.zeros((1,), jnp.int32)), jax.random.key(0))
    torch_count = sum(p.numel() for p in torch_cdecoder.parameters())
    assert _count(shapes["params"]) == torch_count == 1_580_577 + 10 * 512
    chex.assert_trees_all_equal_shapes_and_dtypes(ref.torch_to_flax(torch_cdecoder), shapes)
    # and through init_encoder_decoder, as the CVAE builds it
    params, _ = jax.eval_shape(lambda k: modules.init_encoder_decoder(
        k, Encoder(CDEC_LATENT), Decoder(num_classes=10), CDEC_LATENT), jax.random.key(0))
    assert params["decoder"]["Dense_0"]["kernel"].shape == (CDEC_LATENT + 10, 512)


def test_conditional_decoder_eval_parity(torch_cdecoder):
    torch, _, ref = _torch()
    rng = np.random.default_rng(3)
    z = rng.normal(size=(CDEC_BATCH, CDEC_LATENT)).astype(np.float32)
    labels = np.array([0, 3, 9, 3, 7, 1], np.int32)
    with torch.no_grad():
        expected = ref._nhwc(torch_cdecoder(torch.from_numpy(z), torch.from_numpy(labels).long()))
        other = ref._nhwc(torch_cdecoder(torch.from_numpy(z), torch.from_numpy((labels + 5) % 10).long()))
    variables = ref.torch_to_flax(torch_cdecoder)
    decoder = Decoder(num_classes=10)
    logits = decoder.apply(variables, jnp.asarray(z), False, labels=jnp.asarray(labels))
    chex.assert_shape(logits, (CDEC_BATCH, 28, 28, 1))
    assert expected.std() > 0.1 and expected.min() < 0.1 and expected.max() > 0.9  # images, not a constant
    assert np.abs(other - expected).max() > 0.05  # the label changes the image
    _assert_close(jax.nn.sigmoid(logits), expected)
    flipped = decoder.apply(variables, jnp.asarray(z), False, labels=jnp.asarray((labels + 5) % 10))
    _assert_close(jax.nn.sigmoid(flipped), other)
    # labels are required, integer and one per code
    with pytest.raises(ValueError, match="needs labels"):
        decoder.apply(variables, jnp.asarray(z), False)
    with pytest.raises(ValueError, match="labels must be integers of shape"):
        decoder.apply(variables, jnp.asarray(z), False, labels=jnp.asarray(labels, jnp.float32))
    with pytest.raises(ValueError, match="labels must be integers of shape"):
        decoder.apply(variables, jnp.asarray(z), False, labels=jnp.asarray(labels[:3]))


# ------------------------------------------------------------ ConvTranspose2x

@pytest.fixture(scope="module")
def conv_transpose_case():
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(2, 5, 4, 3)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(2, 10, 8, 6)), jnp.float32)
    params = ConvTranspose2x(6).init(jax.random.key(3), x)["params"]
    # a non-zero bias so it is checked too
    params = {"kernel": params["kernel"], "bias": jnp.asarray(rng.normal(size=(6,)), jnp.float32)}
    return x, cotangent, params


def _conv_transpose_loss(impl):
    def loss(params, x, cotangent):
        return jnp.sum(ConvTranspose2x(6, impl).apply({"params": params}, x) * cotangent)
    return loss


@pytest.mark.parametrize("impl", ["taps", "subpixel"])
def test_conv_transpose_impls_agree(conv_transpose_case, impl):
    x, cotangent, params = conv_transpose_case
    y = ConvTranspose2x(6, impl).apply({"params": params}, x)
    y_lax = ConvTranspose2x(6, "lax").apply({"params": params}, x)
    chex.assert_shape([y, y_lax], (2, 10, 8, 6))
    chex.assert_trees_all_close(y, y_lax, atol=ATOL, rtol=RTOL)
    g = jax.grad(_conv_transpose_loss(impl), argnums=(0, 1))(params, x, cotangent)
    g_lax = jax.grad(_conv_transpose_loss("lax"), argnums=(0, 1))(params, x, cotangent)
    chex.assert_trees_all_close(g, g_lax, atol=1e-4, rtol=1e-5)
    assert float(jnp.abs(g[0]["kernel"]).max()) > 0.1


def test_conv_transpose_taps_each_tap_reaches_one_phase():
    """Per axis the three kernel taps split 1 (even outputs) + 2 (odd outputs); a 1-pixel axis
    drops the tap that reads the next pixel."""
    terms = conv_kernels._phase_terms(3, 3)
    taps = [(i, j) for phase in terms.values() for i, j, _, _ in phase]
    assert sorted(taps) == [(i, j) for i in range(3) for j in range(3)]
    assert [len(terms[p, q]) for p in (0, 1) for q in (0, 1)] == [1, 2, 2, 4]
    assert sorted((i, j) for phase in conv_kernels._phase_terms(2, 3).values() for i, j, _, _ in phase) == \
        [(i, j) for i in range(2) for j in range(3)]


def test_matmul_value_and_gradient_equal_dot():
    rng = np.random.default_rng(11)
    x, w = (jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in ((37, 5), (5, 9)))
    g = jnp.asarray(rng.normal(size=(37, 9)), jnp.float32)
    chex.assert_trees_all_close(conv_kernels.matmul(x, w), jnp.dot(x, w), atol=1e-6)
    ours = jax.grad(lambda x, w: jnp.sum(conv_kernels.matmul(x, w) * g), argnums=(0, 1))(x, w)
    plain = jax.grad(lambda x, w: jnp.sum(jnp.dot(x, w) * g), argnums=(0, 1))(x, w)
    chex.assert_trees_all_close(ours, plain, atol=1e-5)
    chex.assert_trees_all_close(ours[1], np.asarray(x).T @ np.asarray(g), atol=1e-4)


def test_conv_transpose_impl_choice():
    assert conv_kernels.resolve_conv_transpose_impl("auto") == ("taps" if jax.default_backend() == "cpu" else "subpixel")
    assert conv_kernels.resolve_conv_transpose_impl("lax") == "lax"
    with pytest.raises(ValueError, match="conv transpose impl"):
        conv_kernels.resolve_conv_transpose_impl("winograd")


@pytest.mark.parametrize("height,width", [(5, 4), (1, 1), (1, 3)])  # 1-pixel inputs skip padding-only taps
@pytest.mark.parametrize("conv_impl", ["patches", "lax"])
def test_conv_transpose_matches_torch(height, width, conv_impl):
    _, tnn, ref = _torch()
    rng = np.random.default_rng(height * 10 + width)
    x = jnp.asarray(rng.normal(size=(2, height, width, 3)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(2, 2 * height, 2 * width, 6)), jnp.float32)
    layer = tnn.ConvTranspose2d(3, 6, 3, stride=2, padding=1, output_padding=1)
    params = {"kernel": jnp.asarray(ref.conv_transpose_weight_to_flax(layer.weight)), "bias": jnp.asarray(ref._np(layer.bias))}
    # round trip of the converter
    np.testing.assert_array_equal(ref._np(ref.flax_kernel_to_conv_transpose_weight(params["kernel"])), ref._np(layer.weight))
    tx = ref._nchw(np.asarray(x)).requires_grad_(True)
    ty = layer(tx)
    (ty * ref._nchw(np.asarray(cotangent))).sum().backward()
    for impl in ("taps", "subpixel", "lax"):
        module = ConvTranspose2x(6, impl, conv_impl)

        def loss(params, x):
            return jnp.sum(module.apply({"params": params}, x) * cotangent)

        y = module.apply({"params": params}, x)
        _assert_close(y, ref._nhwc(ty))
        g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
        _assert_close(g_params["kernel"], ref.conv_transpose_weight_to_flax(layer.weight.grad), atol=1e-4)
        _assert_close(g_params["bias"], ref._np(layer.bias.grad), atol=1e-4)
        _assert_close(g_x, ref._nhwc(tx.grad), atol=1e-4)


@pytest.mark.parametrize("kernel,stride,padding,size,features", [
    (3, 2, ((1, 1), (1, 1)), (28, 28), 5), (3, 2, ((1, 1), (1, 1)), (7, 7), 5), (1, 1, ((0, 0), (0, 0)), (2, 2), 5),
    (2, 1, ((0, 1), (0, 1)), (4, 3), 5), (7, 1, ((1, 1), (1, 1)), (12, 12), 5), (3, 1, ((2, 0), (0, 1)), (5, 6), 5),
    # tap_conv (25+ taps, no more outputs than inputs): the decoder's 7x7 layer, and uneven padding
    (7, 1, ((1, 1), (1, 1)), (12, 12), 1), (5, 1, ((2, 0), (1, 3)), (9, 7), 3),
])
def test_patch_conv_equals_lax_conv(kernel, stride, padding, size, features):
    rng = np.random.default_rng(kernel * 100 + size[0])
    x = jnp.asarray(rng.normal(size=(3, *size, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 4, features)), jnp.float32)

    def loss(impl):
        def f(x, w):
            y = conv_kernels.conv2d(x, w, (stride, stride), padding, impl)
            return jnp.sum(jnp.sin(y)), y
        return f

    (_, y_patch), g_patch = jax.value_and_grad(loss("patches"), argnums=(0, 1), has_aux=True)(x, w)
    (_, y_lax), g_lax = jax.value_and_grad(loss("lax"), argnums=(0, 1), has_aux=True)(x, w)
    assert y_patch.shape == y_lax.shape
    chex.assert_trees_all_close(y_patch, y_lax, atol=1e-4, rtol=1e-5)
    chex.assert_trees_all_close(g_patch, g_lax, atol=1e-3, rtol=1e-4)


def test_conv_impls_give_the_same_autoencoder():
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 28, 28, 1)), jnp.float32)
    variables = Encoder(3, conv_impl="lax").init(jax.random.key(0), x, False)
    z = {impl: Encoder(3, conv_impl=impl).apply(variables, x, False) for impl in ("patches", "lax")}
    chex.assert_trees_all_close(z["patches"], z["lax"], atol=1e-4, rtol=1e-4)
    dec_variables = Decoder(conv_impl="lax").init(jax.random.key(1), z["lax"], False)
    out = {impl: modules.apply_training(Decoder(conv_impl=impl), dec_variables, z["lax"]) for impl in ("patches", "lax")}
    chex.assert_trees_all_close(out["patches"], out["lax"], atol=1e-4, rtol=1e-4)


def test_conv_impl_choice():
    assert conv_kernels.resolve_conv_impl("auto") == ("patches" if jax.default_backend() == "cpu" else "lax")
    assert conv_kernels.resolve_conv_impl("lax") == "lax"
    with pytest.raises(ValueError, match="conv impl"):
        conv_kernels.resolve_conv_impl("winograd")


def test_conv_transpose_rejects_unknown_impl(conv_transpose_case):
    x, _, params = conv_transpose_case
    with pytest.raises(ValueError, match="impl"):
        ConvTranspose2x(6, "fft").apply({"params": params}, x)


def test_impl_names_are_the_config_choices():
    """The impl names are Literal types, so a config field of that type lists them (e.g. as CLI choices)."""
    import typing

    from aejax import autoencoder

    hints = typing.get_type_hints(autoencoder.AEConfig)
    assert typing.get_args(hints["conv_impl"]) == conv_kernels.CONV_IMPLS == ("auto", "patches", "lax")
    assert typing.get_args(hints["conv_transpose_impl"]) == conv_kernels.CONV_TRANSPOSE_IMPLS
    assert conv_kernels.CONV_TRANSPOSE_IMPLS == ("auto", "taps", "subpixel", "lax")
    hints = typing.get_type_hints(modules.Decoder)
    assert hints["conv_impl"] is conv_kernels.ConvImpl and hints["conv_transpose_impl"] is conv_kernels.ConvTransposeImpl


def test_over_batch_chunks_equals_one_call_with_a_remainder():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(70, 3, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)

    def per_image(xb):
        return jnp.tanh(xb @ w) * xb.sum(axis=(1, 2), keepdims=True)

    calls = []
    chunked = conv_kernels.over_batch_chunks(lambda xb: calls.append(xb.shape[0]) or per_image(xb), x, 32)
    assert calls == [32, 6]  # traced once for the mapped chunks, once for the 6 left over
    chex.assert_trees_all_close(chunked, per_image(x), atol=1e-6)
    g = jax.grad(lambda x: jnp.sum(conv_kernels.over_batch_chunks(per_image, x, 32) ** 2))(x)
    chex.assert_trees_all_close(g, jax.grad(lambda x: jnp.sum(per_image(x) ** 2))(x), atol=1e-5)
    assert conv_kernels.over_batch_chunks(per_image, x[:20], 32).shape == (20, 3, 4)


def test_batch_chunk_size_only_for_wide_layers_and_large_batches():
    chunk = conv_kernels.CPU_BATCH_CHUNK
    wide, narrow = jnp.zeros((chunk + 1, 16, 16, 1)), jnp.zeros((4 * chunk, 8, 8, 1))
    cpu = jax.default_backend() == "cpu"
    assert conv_kernels.batch_chunk_size(wide) == (chunk if cpu else None)
    assert conv_kernels.batch_chunk_size(wide[:chunk]) is None
    assert conv_kernels.batch_chunk_size(narrow) is None


@pytest.mark.parametrize("layer", ["conv7x7", "conv3x3s2", "conv_transpose"])
def test_batch_chunked_kernels_equal_lax(layer):
    """Batches past CPU_BATCH_CHUNK on 16x16 inputs: the chunked CPU kernels against lax, values and gradients."""
    rng = np.random.default_rng(3)
    batch = conv_kernels.CPU_BATCH_CHUNK + 3
    x = jnp.asarray(rng.normal(size=(batch, 16, 16, 4)), jnp.float32)
    if layer == "conv_transpose":
        w = jnp.asarray(rng.normal(size=(3, 3, 4, 5)) * 0.3, jnp.float32)

        def apply(x, w, impl):
            return conv_kernels.conv_transpose2x(x, w, "taps" if impl == "patches" else "lax")
    else:
        k, stride, features = (7, 1, 1) if layer == "conv7x7" else (3, 2, 5)
        w = jnp.asarray(rng.normal(size=(k, k, 4, features)) * 0.3, jnp.float32)

        def apply(x, w, impl):
            return conv_kernels.conv2d(x, w, (stride, stride), ((1, 1), (1, 1)), impl)

    def loss(impl):
        return lambda x, w: jnp.sum(jnp.sin(apply(x, w, impl)))

    chex.assert_trees_all_close(apply(x, w, "patches"), apply(x, w, "lax"), atol=1e-4, rtol=1e-5)
    g_chunked = jax.grad(loss("patches"), argnums=(0, 1))(x, w)
    chex.assert_trees_all_close(g_chunked, jax.grad(loss("lax"), argnums=(0, 1))(x, w), atol=1e-3, rtol=1e-4)
    assert float(jnp.abs(g_chunked[0][-1]).max()) > 0.01  # the left-over images get their gradient too
