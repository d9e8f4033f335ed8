"""aejax.conv_kernels: every convolution and transposed-convolution implementation is XLA's
own (``lax``) on random inputs, values and gradients; the "auto" choice per backend; unknown
implementation names; the batch chunks of the CPU kernels."""

from __future__ import annotations

import typing

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import autoencoder, conv_kernels, modules


def _conv_transpose_reference(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """XLA's transposed convolution: PyTorch's ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)."""
    return jax.lax.conv_transpose(x, kernel, (2, 2), ((1, 2), (1, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


# ------------------------------------------------------------ conv2d

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


def test_conv_impl_choice():
    assert conv_kernels.resolve_conv_impl("auto") == ("patches" if jax.default_backend() == "cpu" else "lax")
    assert conv_kernels.resolve_conv_impl("lax") == "lax"
    with pytest.raises(ValueError, match="conv impl"):
        conv_kernels.resolve_conv_impl("winograd")


@pytest.mark.parametrize("impl", ["auto", "patches", "lax"])
def test_flax_conv_fn_is_conv2d_by_its_impl(impl):
    """The hook flax.linen.Conv calls: lax's signature, the same convolution by any impl."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 9, 9, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
    reference = jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = conv_kernels.flax_conv_fn(impl)(x, w, (2, 2), ((1, 1), (1, 1)))
    chex.assert_trees_all_close(got, reference, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"lhs_dilation": (2, 2)}, {"rhs_dilation": (1, 2)}, {"feature_group_count": 3}])
def test_flax_conv_fn_refuses_dilation_and_feature_groups(kwargs):
    x, w = jnp.zeros((1, 5, 5, 3)), jnp.zeros((3, 3, 1 if "feature_group_count" in kwargs else 3, 3))
    with pytest.raises(ValueError, match="no dilation and no feature groups"):
        conv_kernels.flax_conv_fn("patches")(x, w, (1, 1), ((1, 1), (1, 1)), **kwargs)


def test_conv2d_refuses_an_unknown_impl():
    with pytest.raises(ValueError, match=r"conv impl must be one of \('auto', 'patches', 'lax'\), got 'fft'"):
        conv_kernels.conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), (1, 1), ((1, 1), (1, 1)), "fft")


# ------------------------------------------------------------ conv_transpose2x

@pytest.mark.parametrize("height, width", [(5, 4), (1, 1), (1, 3), (3, 1)])  # 1-pixel axes skip padding-only taps
@pytest.mark.parametrize("impl, conv_impl", [("taps", "auto"), ("subpixel", "patches"), ("subpixel", "lax")])
def test_conv_transpose_impls_equal_lax_conv_transpose(height, width, impl, conv_impl):
    rng = np.random.default_rng(height * 10 + width)
    x = jnp.asarray(rng.normal(size=(2, height, width, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 6)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(2, 2 * height, 2 * width, 6)), jnp.float32)

    def ours(x, w):
        return conv_kernels.conv_transpose2x(x, w, impl, conv_impl)

    def loss(fn):
        return lambda x, w: jnp.sum(fn(x, w) * cotangent)

    y, reference = ours(x, w), _conv_transpose_reference(x, w)
    chex.assert_shape([y, reference], (2, 2 * height, 2 * width, 6))
    chex.assert_trees_all_close(y, reference, atol=1e-4, rtol=1e-5)
    grads = jax.grad(loss(ours), argnums=(0, 1))(x, w)
    chex.assert_trees_all_close(grads, jax.grad(loss(_conv_transpose_reference), argnums=(0, 1))(x, w),
                                atol=1e-3, rtol=1e-4)
    assert float(jnp.abs(grads[1]).max()) > 0.1


def test_conv_transpose2x_refuses_an_unknown_impl():
    with pytest.raises(ValueError, match=r"conv transpose impl must be one of .*, got 'fft'"):
        conv_kernels.conv_transpose2x(jnp.zeros((1, 2, 2, 1)), jnp.zeros((3, 3, 1, 1)), "fft")


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


# ------------------------------------------------------------ impl names and batch chunks

def test_impl_names_are_the_config_choices():
    """The impl names are Literal types, so a config field of that type lists them (e.g. as CLI choices)."""
    hints = typing.get_type_hints(autoencoder.AEConfig)
    assert typing.get_args(hints["conv_impl"]) == conv_kernels.CONV_IMPLS
    assert typing.get_args(hints["conv_transpose_impl"]) == conv_kernels.CONV_TRANSPOSE_IMPLS
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
