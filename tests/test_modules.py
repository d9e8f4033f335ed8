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

from aejax import modules
from aejax.modules import ConvTranspose2x, Decoder, Encoder, condition_on_labels

from support import assert_close, count, torch_modules

ATOL = 1e-5
RTOL = 1e-5
PARITY_LATENT = 8
PARITY_BATCH = 6
DECODER_OUT_GAIN = 30.0


def _randomise_batchnorm(module, gen, batches) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics.

    The running statistics come from train-mode passes over real-looking batches (a
    high momentum makes them close to the data's statistics, so eval-mode activations
    stay well scaled); momentum goes back to PyTorch's 0.1 afterwards.
    """
    torch, tnn, _ = torch_modules()
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
    torch, _, ref = torch_modules()
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


# ------------------------------------------------------------ counts and shapes

PARAMETER_COUNTS = pytest.mark.parametrize(
    "module, latent, expected",
    [
        ("encoder", 2, 525_506),
        ("decoder", 2, 1_580_577),
        ("encoder", 24, 570_584),
        ("decoder", 24, 1_591_841),
        ("encoder", 900, 2_365_508),
    ],
)


@PARAMETER_COUNTS
def test_trainable_parameter_counts(module, latent, expected):
    shapes = _flax_shapes(Encoder(latent), (1, 28, 28, 1)) if module == "encoder" else _flax_shapes(Decoder(), (1, latent))
    assert set(shapes) == {"params", "batch_stats"}
    assert count(shapes["params"]) == expected


@pytest.mark.slow
@PARAMETER_COUNTS
def test_lecture_parameter_counts(module, latent, expected):
    _, _, ref = torch_modules()
    torch_module = ref.TorchEncoder(latent) if module == "encoder" else ref.TorchDecoder(latent)
    assert sum(p.numel() for p in torch_module.parameters()) == expected  # the lecture's own count agrees


@pytest.mark.slow
def test_converter_covers_every_variable(torch_pair):
    """The converted trees have exactly the structure and shapes of flax's own init."""
    _, _, ref = torch_modules()
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


@pytest.mark.slow
def test_torch_conv_transpose_takes_its_fan_in_from_its_output_channels():
    """The bound test_pytorch_like_init expects of the transposed convolution is torch's own."""
    _, tnn, _ = torch_modules()
    t = tnn.ConvTranspose2d(512, 256, 3)
    assert float(t.weight.detach().abs().max()) <= 1 / np.sqrt(256 * 9) + 1e-7


# ------------------------------------------------------------ PyTorch parity

@pytest.mark.slow
def test_encoder_eval_parity(torch_pair, parity_inputs):
    torch, _, ref = torch_modules()
    encoder, _ = torch_pair
    images, _ = parity_inputs
    with torch.no_grad():
        expected = ref._np(encoder(ref._nchw(images)))
    got = Encoder(PARITY_LATENT).apply(ref.torch_to_flax(encoder), jnp.asarray(images), False)
    chex.assert_shape(got, (PARITY_BATCH, PARITY_LATENT))
    assert np.abs(expected).max() > 0.1  # a meaningful comparison, not of near-zeros
    assert_close(got, expected)


def _torch_decoder_logits(decoder, z):
    """The torch decoder's output before its final Sigmoid."""
    _, tnn, _ = torch_modules()
    assert isinstance(decoder.net[-1], tnn.Sigmoid)
    return decoder.net[:-1](decoder.fc(z).view(-1, 512, 1, 1))


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["taps", "subpixel", "lax"])
def test_decoder_eval_parity(torch_pair, parity_inputs, impl):
    torch, _, ref = torch_modules()
    _, decoder = torch_pair
    _, latents = parity_inputs
    with torch.no_grad():
        expected = ref._nhwc(decoder(torch.from_numpy(latents)))
        expected_logits = ref._nhwc(_torch_decoder_logits(decoder, torch.from_numpy(latents)))
    logits = Decoder(conv_transpose_impl=impl).apply(ref.torch_to_flax(decoder), jnp.asarray(latents), False)
    chex.assert_shape(logits, (PARITY_BATCH, 28, 28, 1))
    chex.assert_type(logits, jnp.float32)
    assert expected.std() > 0.1 and expected.min() < 0.1 and expected.max() > 0.9  # images, not a constant
    assert_close(jax.nn.sigmoid(logits), expected)
    assert_close(logits, expected_logits, atol=1e-4)


@pytest.mark.slow
def test_encoder_train_parity(torch_pair, parity_inputs):
    torch, _, ref = torch_modules()
    encoder = copy.deepcopy(torch_pair[0])
    images, _ = parity_inputs
    variables = ref.torch_to_flax(encoder)
    encoder.train()
    with torch.no_grad():
        expected = ref._np(encoder(ref._nchw(images)))
    got, updates = Encoder(PARITY_LATENT).apply(variables, jnp.asarray(images), True, mutable=["batch_stats"])
    assert_close(got, expected)
    expected_stats = ref.torch_to_flax(encoder)["batch_stats"]
    chex.assert_trees_all_equal_structs(updates["batch_stats"], expected_stats)
    # the statistics did move, and moved the same way
    old = variables["batch_stats"]["BatchNorm_0"]["var"]
    assert not np.allclose(np.asarray(updates["batch_stats"]["BatchNorm_0"]["var"]), np.asarray(old))
    jax.tree_util.tree_map(assert_close, updates["batch_stats"], expected_stats)


@pytest.mark.slow
def test_decoder_train_parity(torch_pair, parity_inputs):
    torch, _, ref = torch_modules()
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
    assert_close(jax.nn.sigmoid(logits), expected, atol=5e-5)
    expected_stats = ref.torch_to_flax(decoder)["batch_stats"]
    chex.assert_trees_all_equal_structs(updates["batch_stats"], expected_stats)
    jax.tree_util.tree_map(assert_close, updates["batch_stats"], expected_stats)


def _batchnorm_train_step():
    """(x (2, 2, 1, 3), output, running statistics) of one train-mode BatchNorm step from its init."""
    x = np.random.default_rng(0).normal(2.0, 3.0, (2, 2, 1, 3)).astype(np.float32)  # n = 4 per feature
    bn = modules.BatchNorm()
    variables = bn.init(jax.random.key(0), jnp.asarray(x), False)
    y, updates = bn.apply(variables, jnp.asarray(x), True, mutable=["batch_stats"])
    return x, y, updates["batch_stats"]


def test_batchnorm_running_var_uses_unbiased_variance():
    """One train step from (mean 0, var 1): mean' = 0.1 * batch mean, var' = 0.9 + 0.1 * unbiased var."""
    x, y, stats = _batchnorm_train_step()
    flat = x.reshape(-1, 3).astype(np.float64)
    assert_close(stats["mean"], 0.1 * flat.mean(0))
    assert_close(stats["var"], 0.9 + 0.1 * flat.var(0, ddof=1))
    # the output is normalised with the biased variance, as torch does
    assert_close(y, ((flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)).reshape(x.shape), atol=1e-5)


@pytest.mark.slow
def test_batchnorm_matches_torch_in_train_mode():
    x, y, stats = _batchnorm_train_step()
    torch, tnn, ref = torch_modules()
    torch_bn = tnn.BatchNorm2d(3).train()
    with torch.no_grad():
        torch_y = torch_bn(ref._nchw(x))
    assert_close(y, ref._nhwc(torch_y))
    assert_close(stats["var"], ref._np(torch_bn.running_var))
    assert_close(stats["mean"], ref._np(torch_bn.running_mean))


# ------------------------------------------------------------ conditional decoder vs the lecture's CDecoder

CDEC_LATENT, CDEC_BATCH = 2, 6


@pytest.fixture(scope="module")
def torch_cdecoder():
    """The lecture's CDecoder (the plain decoder on concat(z, one_hot(label, 10))) with random
    weights and non-trivial BatchNorm state."""
    torch, tnn, ref = torch_modules()

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


@pytest.mark.slow
def test_conditional_decoder_parameter_count(torch_cdecoder):
    _, _, ref = torch_modules()
    shapes = jax.eval_shape(lambda k: Decoder(num_classes=10).init(
        k, jnp.zeros((1, CDEC_LATENT)), False, labels=jnp.zeros((1,), jnp.int32)), jax.random.key(0))
    torch_count = sum(p.numel() for p in torch_cdecoder.parameters())
    assert count(shapes["params"]) == torch_count == 1_580_577 + 10 * 512
    chex.assert_trees_all_equal_shapes_and_dtypes(ref.torch_to_flax(torch_cdecoder), shapes)
    # and through init_encoder_decoder, as the CVAE builds it
    params, _ = jax.eval_shape(lambda k: modules.init_encoder_decoder(
        k, Encoder(CDEC_LATENT), Decoder(num_classes=10), CDEC_LATENT), jax.random.key(0))
    assert params["decoder"]["Dense_0"]["kernel"].shape == (CDEC_LATENT + 10, 512)


@pytest.mark.slow
def test_conditional_decoder_eval_parity(torch_cdecoder):
    torch, _, ref = torch_modules()
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
    assert_close(jax.nn.sigmoid(logits), expected)
    flipped = decoder.apply(variables, jnp.asarray(z), False, labels=jnp.asarray((labels + 5) % 10))
    assert_close(jax.nn.sigmoid(flipped), other)
    # labels are required, integer and one per code
    with pytest.raises(ValueError, match="needs labels"):
        decoder.apply(variables, jnp.asarray(z), False)
    with pytest.raises(ValueError, match="labels must be integers of shape"):
        decoder.apply(variables, jnp.asarray(z), False, labels=jnp.asarray(labels, jnp.float32))
    with pytest.raises(ValueError, match="labels must be integers of shape"):
        decoder.apply(variables, jnp.asarray(z), False, labels=jnp.asarray(labels[:3]))


# ------------------------------------------------------------ labels: condition_on_labels

def test_unconditional_decoder_rejects_labels(flax_init):
    _, _, decoder, variables = flax_init
    with pytest.raises(ValueError, match="unconditional"):
        decoder.apply(variables, jnp.zeros((2, PARITY_LATENT)), False, labels=jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match="unconditional"):
        condition_on_labels(jnp.zeros((2, PARITY_LATENT)), jnp.zeros((2,), jnp.int32), 0)


def test_condition_on_labels_appends_one_hot():
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]], jnp.float32)
    out = condition_on_labels(x, jnp.asarray([0, 2], jnp.int32), 3)
    chex.assert_shape(out, (2, 5))
    np.testing.assert_array_equal(out, [[1, 2, 1, 0, 0], [3, 4, 0, 0, 1]])
    assert condition_on_labels(x, None, 0) is x


def test_out_of_range_labels_are_rejected_outside_jit():
    """one_hot would silently turn label 10 or -1 into zeros; eager calls name the range instead."""
    z = jnp.zeros((2, 3))
    for bad in ([0, 10], [-1, 2]):
        with pytest.raises(ValueError, match=r"\[0, 10\)"):
            condition_on_labels(z, jnp.asarray(bad, jnp.int32), 10)
    assert condition_on_labels(z, jnp.asarray([0, 9], jnp.int32), 10).shape == (2, 13)


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


@pytest.mark.slow
@pytest.mark.parametrize("height,width", [(5, 4), (1, 1), (1, 3)])  # 1-pixel inputs skip padding-only taps
@pytest.mark.parametrize("conv_impl", ["patches", "lax"])
def test_conv_transpose_matches_torch(height, width, conv_impl):
    _, tnn, ref = torch_modules()
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
        assert_close(y, ref._nhwc(ty))
        g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, x)
        assert_close(g_params["kernel"], ref.conv_transpose_weight_to_flax(layer.weight.grad), atol=1e-4)
        assert_close(g_params["bias"], ref._np(layer.bias.grad), atol=1e-4)
        assert_close(g_x, ref._nhwc(tx.grad), atol=1e-4)


def test_conv_impls_give_the_same_autoencoder():
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 28, 28, 1)), jnp.float32)
    variables = Encoder(3, conv_impl="lax").init(jax.random.key(0), x, False)
    z = {impl: Encoder(3, conv_impl=impl).apply(variables, x, False) for impl in ("patches", "lax")}
    chex.assert_trees_all_close(z["patches"], z["lax"], atol=1e-4, rtol=1e-4)
    dec_variables = Decoder(conv_impl="lax").init(jax.random.key(1), z["lax"], False)
    out = {impl: modules.apply_training(Decoder(conv_impl=impl), dec_variables, z["lax"]) for impl in ("patches", "lax")}
    chex.assert_trees_all_close(out["patches"], out["lax"], atol=1e-4, rtol=1e-4)


def test_conv_transpose_rejects_unknown_impl(conv_transpose_case):
    x, _, params = conv_transpose_case
    with pytest.raises(ValueError, match="impl"):
        ConvTranspose2x(6, "fft").apply({"params": params}, x)
