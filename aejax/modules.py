"""The lecture's networks as flax.linen modules, applied with explicit variables.

Layouts are NHWC. Parameter counts equal the PyTorch originals (see tests).
BatchNorm follows PyTorch exactly: momentum 0.1 on the new statistic (flax's 0.9 on
the old), eps 1e-5, normalisation by the biased batch variance, and the running
variance updated with the unbiased one (flax's own BatchNorm uses the biased one).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU() default


class BatchNorm(nn.Module):
    """PyTorch-semantics batch normalisation over all axes but the last.

    Variables: params {scale, bias}; batch_stats {mean, var}.
    In train mode the batch statistics are used and the running ones updated.
    """

    momentum: float = 0.1  # PyTorch convention: weight of the new batch statistic
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            if not self.is_initializing():
                n = x.size // features
                unbiased = var * (n / max(n - 1, 1))
                ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value
        inv = jax.lax.rsqrt(var + self.epsilon) * scale
        return (x - mean) * inv + bias


def _torch_uniform(fan_in: int):
    """PyTorch's default init for Conv/Linear weights and biases: U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / jnp.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


ConvImpl = str  # "auto" | "patches" | "lax"
CONV_IMPLS = ("auto", "patches", "lax")


def resolve_conv_impl(impl: ConvImpl) -> str:
    """"auto" -> "patches" on the CPU backend (XLA:CPU's convolution gradients are slow
    at these sizes; slices + one matmul are not), "lax" elsewhere (cuDNN et al.)."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "patches" if jax.default_backend() == "cpu" else "lax"
    return impl


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x (N, K) @ w (K, M)`` with its gradient written out (dx = g w^T, dw = x^T g).

    The same function and gradient as ``jnp.dot``; as a custom VJP its backward dots stay
    plain 2-D matmuls of the forward's operands, where XLA:CPU, fusing autodiff's
    transposes into neighbouring ops, laid the decoder's weight gradients out in
    transposed copies that cost more than the dots (a 9.5 MB transposing copy: 15 ms
    per step at batch 64).
    """
    return jnp.dot(x, w)


def _matmul_fwd(x, w):
    return jnp.dot(x, w), (x, w)


def _matmul_bwd(res, g):
    x, w = res
    return jnp.dot(g, w.T), jnp.dot(x.T, g)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def patch_conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
               padding: Sequence[tuple[int, int]]) -> jax.Array:
    """``lax.conv_general_dilated`` for NHWC x (B,H,W,C) and HWIO kernel (kh,kw,C,F), computed
    as im2col: the kh*kw shifted, strided slices concatenated on channels, then one matmul.

    Mathematically the same convolution; its gradient is slices, pads and two matmuls.
    """
    kh, kw, c, f = kernel.shape
    (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    taps = [x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
            for i in range(kh) for j in range(kw)]
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)  # (B, H', W', kh*kw*C)
    return jnp.dot(patches, kernel.reshape(kh * kw * c, f))


def _shift_sum(taps: jax.Array, out_h: int, out_w: int, kw: int) -> jax.Array:
    """(T, B, Hp, Wp, F) per-tap partial outputs -> (B, out_h, out_w, F): tap t = i*kw + j shifted by (i, j), summed."""
    return sum(taps[t, :, t // kw:t // kw + out_h, t % kw:t % kw + out_w] for t in range(taps.shape[0]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def shift_sum(taps: jax.Array, out_h: int, out_w: int, kw: int) -> jax.Array:
    """``_shift_sum`` with a hand-written gradient: autodiff would pad each tap's slice back to
    the full (T, B, Hp, Wp, F) shape and add T of those (T = 49: 49x the memory traffic);
    the gradient is just the output gradient padded to each tap's offset, stacked."""
    return _shift_sum(taps, out_h, out_w, kw)


def _shift_sum_fwd(taps, out_h, out_w, kw):
    return _shift_sum(taps, out_h, out_w, kw), taps.shape


def _shift_sum_bwd(out_h, out_w, kw, shape, grad):
    num_taps, _, hp, wp, _ = shape
    return (jnp.stack([jnp.pad(grad, ((0, 0), (t // kw, hp - out_h - t // kw), (t % kw, wp - out_w - t % kw), (0, 0)))
                       for t in range(num_taps)]),)


shift_sum.defvjp(_shift_sum_fwd, _shift_sum_bwd)


def tap_conv(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]]) -> jax.Array:
    """A stride-1 NHWC/HWIO convolution for large kernels with few outputs: matmul first, then shift.

    im2col would copy the input kh*kw times (49 for the decoder's 7x7 output layer); here
    one ``matmul`` maps every input pixel to its kh*kw*F per-tap contributions (T, B, Hp, Wp, F),
    and ``shift_sum`` adds each tap's shifted window. With F = 1 that array is smaller
    than the input's 32 channels.
    """
    kh, kw, c, f = kernel.shape
    (pt, pb), (pl, pr) = padding
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    b, hp, wp, _ = x.shape
    taps = matmul(x.reshape(-1, c), kernel.reshape(kh * kw, c, f).transpose(1, 0, 2).reshape(c, kh * kw * f))
    taps = taps.reshape(b, hp, wp, kh * kw, f).transpose(3, 0, 1, 2, 4)  # (T, B, Hp, Wp, F)
    return shift_sum(taps, x.shape[1] - kh + 1, x.shape[2] - kw + 1, kw)


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Sequence[tuple[int, int]],
           impl: ConvImpl = "auto") -> jax.Array:
    """NHWC/HWIO convolution by the chosen implementation (see ``resolve_conv_impl``).

    "patches" is ``patch_conv``, or ``tap_conv`` for stride-1 kernels of 25+ taps and no
    more outputs than inputs (the decoder's 7x7 layer: 32 -> 1).
    XLA:CPU runs its own convolutions very slowly inside loops (``lax.scan``: 3.3 s per
    batch of 512 for the decoder's 7x7 layer), matmuls not.
    """
    if resolve_conv_impl(impl) == "patches":
        if kernel.shape[0] * kernel.shape[1] >= 25 and tuple(strides) == (1, 1) and kernel.shape[3] <= kernel.shape[2]:
            return tap_conv(x, kernel, padding)
        return patch_conv(x, kernel, strides, padding)
    return jax.lax.conv_general_dilated(x, kernel, tuple(strides), tuple(padding),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _flax_conv_fn(impl: ConvImpl):
    """``nn.Conv(conv_general_dilated=...)`` hook: the lax signature, only what aejax's convs use."""

    def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                             dimension_numbers=None, feature_group_count=1, precision=None):
        del dimension_numbers, precision  # flax passes NHWC/HWIO and the default precision
        if any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))) or feature_group_count != 1:
            raise ValueError("conv2d supports no dilation and no feature groups")
        return conv2d(lhs, rhs, window_strides, padding, impl)

    return conv_general_dilated


def _conv(features: int, kernel: int, stride: int, padding: int, in_features: int,
          impl: ConvImpl = "lax") -> nn.Conv:
    fan_in = in_features * kernel * kernel
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((padding, padding),) * 2,
        kernel_init=_torch_uniform(fan_in), bias_init=_torch_uniform(fan_in),
        conv_general_dilated=_flax_conv_fn(impl),
    )


# Which kernel entry (of 3, in flax's flipped layout) feeds each output phase and
# input tap of a stride-2 transposed conv (k=3, p=1, output_padding=1), per spatial
# axis: even outputs 2m read x[m] * k[1]; odd outputs 2m+1 read x[m] * k[0] + x[m+1] * k[2].
_PHASE_TAP_KERNEL = {(0, 0): 1, (1, 0): 0, (1, 1): 2}  # (phase, tap) -> kernel index; (0, 1) reads nothing


def _subpixel_taps(kernel: jax.Array, taps_h: int = 2, taps_w: int = 2) -> jax.Array:
    """(3, 3, C, F) transposed-conv kernel -> (taps_h, taps_w, C, 4F) kernel of the equivalent 2x2 conv.

    Output channels are ordered (phase_h, phase_w, F). Built by indexing, not an einsum
    with 0/1 matrices: XLA:CPU runs such skinny matmuls (and their gradients) slowly.
    ``taps_h = 1`` keeps only the first row of taps (the second reads only padding when H = 1).
    """
    zeros = jnp.zeros(kernel.shape[2:], kernel.dtype)

    def block(a, b, p, q):
        i, j = _PHASE_TAP_KERNEL.get((p, a)), _PHASE_TAP_KERNEL.get((q, b))
        return zeros if i is None or j is None else kernel[i, j]

    rows = [[jnp.concatenate([block(a, b, p, q) for p in (0, 1) for q in (0, 1)], axis=-1)
             for b in range(taps_w)] for a in range(taps_h)]
    return jnp.stack([jnp.stack(row) for row in rows])


def _shift(x: jax.Array, axis: int, back: bool) -> jax.Array:
    """x shifted by one along ``axis``, zero-filled: ``back`` out[m] = x[m + 1], else out[m] = x[m - 1]."""
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, 1) if back else (1, 0)
    return jnp.pad(jax.lax.slice_in_dim(x, 1, n, axis=axis) if back else jax.lax.slice_in_dim(x, 0, n - 1, axis=axis), pad)


def _phase_terms(rows: int, cols: int) -> dict[tuple[int, int], list[tuple[int, int, bool, bool]]]:
    """For each output phase (p, q) of the stride-2 transposed conv, the taps that reach it:
    (kernel row i, kernel column j, read the next input row, read the next input column).
    Per axis, even outputs 2m read x[m] * k[1]; odd outputs 2m + 1 read x[m] * k[0] + x[m + 1] * k[2]
    (``_PHASE_TAP_KERNEL``). Every tap reaches exactly one phase."""
    def axis_terms(phase, taps):
        return [(1, False)] if phase == 0 else [(0, False)] + ([(2, True)] if taps == 3 else [])
    return {(p, q): [(i, j, next_h, next_w) for i, next_h in axis_terms(p, rows) for j, next_w in axis_terms(q, cols)]
            for p in (0, 1) for q in (0, 1)}


@jax.custom_vjp
def assemble_phases(taps: jax.Array) -> jax.Array:
    """Per-tap contributions (B, H, W, rows, cols, F) -> transposed-conv output (B, 2H, 2W, F).

    Hand-written gradient: autodiff would pad each tap's slice back to the whole taps array
    and add nine of those; each tap feeds one phase, so its gradient is that phase's
    output gradient shifted back, and the nine are stacked once.
    """
    b, h, w, rows, cols, f = taps.shape
    phases = {}
    for (p, q), terms in _phase_terms(rows, cols).items():
        total = None
        for i, j, next_h, next_w in terms:
            t = taps[:, :, :, i, j]
            t = _shift(t, 1, back=True) if next_h else t
            t = _shift(t, 2, back=True) if next_w else t
            total = t if total is None else total + t
        phases[p, q] = total
    y = jnp.stack([jnp.stack([phases[p, 0], phases[p, 1]], axis=3) for p in (0, 1)], axis=2)  # (B, H, 2, W, 2, F)
    return y.reshape(b, 2 * h, 2 * w, f)


def _assemble_phases_fwd(taps):
    return assemble_phases(taps), taps.shape


def _assemble_phases_bwd(shape, grad):
    b, h, w, rows, cols, f = shape
    grad = grad.reshape(b, h, 2, w, 2, f)
    by_tap = {}
    for (p, q), terms in _phase_terms(rows, cols).items():
        for i, j, next_h, next_w in terms:
            g = grad[:, :, p, :, q]
            g = _shift(g, 1, back=False) if next_h else g
            by_tap[i, j] = _shift(g, 2, back=False) if next_w else g
    return (jnp.stack([jnp.stack([by_tap[i, j] for j in range(cols)], axis=3) for i in range(rows)], axis=3),)


assemble_phases.defvjp(_assemble_phases_fwd, _assemble_phases_bwd)


def conv_transpose_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The stride-2 transposed conv (k=3, p=1, output_padding=1) as one matmul, then shifted sums.

    x (B, H, W, C), kernel (3, 3, C, F) in flax's flipped layout -> (B, 2H, 2W, F), no bias.
    The matmul maps each input pixel to its 9 per-tap contributions (B, H, W, 3, 3, F),
    and ``assemble_phases`` adds those reaching each output: 9 C F multiply-adds per
    input pixel, where the subpixel 2x2 convolution does 16 (7 of its 16 tap/phase
    blocks are zeros). A 1-pixel-high (wide) input skips the third tap row (column): it
    only reaches the next input pixel, which does not exist.
    """
    b, h, w, c = x.shape
    f = kernel.shape[-1]
    rows, cols = (2 if h == 1 else 3), (2 if w == 1 else 3)
    k = kernel[:rows, :cols].transpose(2, 0, 1, 3).reshape(c, rows * cols * f)
    flat = x.reshape(b * h * w, c)
    return assemble_phases(matmul(flat, k).reshape(b, h, w, rows, cols, f))


CONV_TRANSPOSE_IMPLS = ("auto", "taps", "subpixel", "lax")


def resolve_conv_transpose_impl(impl: str) -> str:
    """"auto" -> "taps" on the CPU backend, "subpixel" elsewhere (its 2x2 convolution is
    then cuDNN's, see ``resolve_conv_impl``)."""
    if impl not in CONV_TRANSPOSE_IMPLS:
        raise ValueError(f"conv transpose impl must be one of {CONV_TRANSPOSE_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "taps" if jax.default_backend() == "cpu" else "subpixel"
    return impl


class ConvTranspose2x(nn.Module):
    """PyTorch ``ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)``: (B,H,W,C) -> (B,2H,2W,F).

    Parameters are those of ``flax.linen.ConvTranspose(F, (3, 3), strides=2,
    padding=((1, 2), (1, 2)))``: kernel (3, 3, C, F), the PyTorch weight (C, F, 3, 3)
    flipped spatially. The same function by any ``impl`` (``resolve_conv_transpose_impl``):
    ``'taps'`` is one matmul to the 9 per-tap contributions and their shifted sums
    (``conv_transpose_taps``: 9 C F multiply-adds per input pixel, as PyTorch's col2im);
    ``'subpixel'`` one 2x2 convolution into 4F channels (16 C F) followed by
    depth-to-space, with ``conv_impl`` choosing how that convolution runs (``conv2d``);
    ``'lax'`` the dilated ``lax.conv_transpose``, which XLA:CPU differentiates slowly.
    """

    features: int
    impl: str = "auto"
    conv_impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        fan_in = self.features * 9  # PyTorch takes a transposed conv's fan_in from dim 1 (out)
        kernel = self.param("kernel", _torch_uniform(fan_in), (3, 3, in_features, self.features))
        bias = self.param("bias", _torch_uniform(fan_in), (self.features,))
        impl = resolve_conv_transpose_impl(self.impl)
        if impl == "lax":
            y = jax.lax.conv_transpose(x, kernel, (2, 2), ((1, 2), (1, 2)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return y + bias
        if impl == "taps":
            return conv_transpose_taps(x, kernel) + bias
        # A 1-pixel-high (or wide) input meets the second tap row (column) only in padding: skip it.
        taps_h, taps_w = min(x.shape[1], 2), min(x.shape[2], 2)
        y = conv2d(x, _subpixel_taps(kernel, taps_h, taps_w), (1, 1), ((0, taps_h - 1), (0, taps_w - 1)),
                   self.conv_impl)
        b, h, w, _ = y.shape
        y = y.reshape(b, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, 2 * h, 2 * w, self.features) + bias


def _dense(features: int, in_features: int) -> nn.Dense:
    return nn.Dense(features, kernel_init=_torch_uniform(in_features), bias_init=_torch_uniform(in_features))


IMAGE_SHAPE = (28, 28, 1)


def check_images(x: jax.Array, name: str = "images") -> None:
    """Raises a one-line ValueError unless ``x`` is a float batch (B, 28, 28, 1)."""
    if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be float of shape (B, 28, 28, 1) in [0, 1], got {x.dtype} {tuple(x.shape)}"
                         + (" (add the channel axis: x[..., None])" if tuple(x.shape[1:]) == (28, 28) else "")
                         + (" (scale uint8 images: data.to_float_nhwc)" if x.dtype == jnp.uint8 else ""))


def check_latents(z: jax.Array, latent_dim: int | None, name: str = "latents") -> None:
    """Raises a one-line ValueError unless ``z`` is float (B, latent_dim) (any width if ``latent_dim`` is None)."""
    wanted = f"(B, {'D' if latent_dim is None else latent_dim})"
    if z.ndim != 2 or (latent_dim is not None and z.shape[1] != latent_dim) or not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"{name} must be float of shape {wanted}, got {z.dtype} {tuple(z.shape)}")


class Encoder(nn.Module):
    """(B, 28, 28, 1) -> (B, latent_dim).

    Four Conv(3x3, s2, p1) -> BN -> LeakyReLU blocks (32, 64, 128, 256 filters:
    28 -> 14 -> 7 -> 4 -> 2), Conv(1x1, 512) -> BN -> LeakyReLU, flatten, Dense.
    """

    latent_dim: int
    hidden: Sequence[int] = (32, 64, 128, 256)
    conv_impl: ConvImpl = "auto"  # the same function by any impl, see conv2d

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        check_images(x)
        in_features = x.shape[-1]
        for features in self.hidden:
            x = _conv(features, 3, 2, 1, in_features, self.conv_impl)(x)
            x = nn.leaky_relu(BatchNorm()(x, train), LEAKY_SLOPE)
            in_features = features
        x = _conv(512, 1, 1, 0, in_features, self.conv_impl)(x)
        x = nn.leaky_relu(BatchNorm()(x, train), LEAKY_SLOPE)
        # Flatten in PyTorch's (C, H, W) order so weights convert one to one.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        return _dense(self.latent_dim, x.shape[-1])(x)


class Decoder(nn.Module):
    """(B, latent_dim) -> logits (B, 28, 28, 1); ``sigmoid`` of them is the image.

    Dense(512), reshape 1x1x512, five ConvTranspose(3x3, s2, p1, op1) -> BN -> LeakyReLU
    blocks (256, 128, 64, 32, 32: 1 -> 2 -> 4 -> 8 -> 16 -> 32), Conv(7x7, p1) to one
    channel (32 -> 28). The lecture's final Sigmoid is left to the loss (on logits).
    With ``num_classes`` > 0 it is the lecture's conditional decoder (CDecoder): the
    Dense layer reads ``concat(z, one_hot(labels))``, (B, latent_dim + num_classes).
    """

    hidden: Sequence[int] = (256, 128, 64, 32, 32)
    conv_transpose_impl: str = "auto"  # "taps", "subpixel" or "lax": the same function, see ConvTranspose2x
    conv_impl: ConvImpl = "auto"  # how the subpixel 2x2 convolutions run, see conv2d
    num_classes: int = 0  # > 0: conditional on integer labels (B,)
    latent_dim: int | None = None  # checked against the latents' width when given

    @nn.compact
    def __call__(self, z: jax.Array, train: bool, labels: jax.Array | None = None) -> jax.Array:
        check_latents(z, self.latent_dim)
        z = condition_on_labels(z, labels, self.num_classes)
        x = _dense(512, z.shape[-1])(z).reshape(z.shape[0], 1, 1, 512)
        for features in self.hidden:
            x = ConvTranspose2x(features, self.conv_transpose_impl, self.conv_impl)(x)
            x = nn.leaky_relu(BatchNorm()(x, train), LEAKY_SLOPE)
        return _conv(1, 7, 1, 1, x.shape[-1], self.conv_impl)(x)


def condition_on_labels(x: jax.Array, labels: jax.Array | None, num_classes: int) -> jax.Array:
    """``concat(x (B, D), one_hot(labels (B,), num_classes))``; ``x`` itself when num_classes is 0.

    ``labels`` may also be float probabilities (B, num_classes), concatenated as they are.
    """
    if num_classes <= 0:
        if labels is not None:
            raise ValueError("labels given to an unconditional module (num_classes=0)")
        return x
    if labels is None:
        raise ValueError(f"a conditional module (num_classes={num_classes}) needs labels")
    if jnp.issubdtype(labels.dtype, jnp.floating):  # label probabilities, e.g. an encoder's softmax
        if labels.shape != (x.shape[0], num_classes):
            raise ValueError(f"labels must be integers of shape ({x.shape[0]},) or probabilities of shape "
                             f"({x.shape[0]}, {num_classes}), got {labels.dtype} {labels.shape}")
        return jnp.concatenate([x, labels.astype(x.dtype)], axis=-1)
    if labels.shape != x.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers of shape ({x.shape[0]},) or probabilities "
                         f"({x.shape[0]}, {num_classes}), got {labels.dtype} {labels.shape}")
    try:  # values are checkable only outside jit; inside, one_hot would silently give zeros
        values = np.asarray(labels)
    except jax.errors.TracerArrayConversionError:
        values = None
    if values is not None and values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got values in [{values.min()}, {values.max()}]")
    return jnp.concatenate([x, jax.nn.one_hot(labels, num_classes, dtype=x.dtype)], axis=-1)


class MLP(nn.Module):
    """Dense layers with LeakyReLU between them (none after the last): (B, in) -> (B, features[-1]).

    The toy problem's encoders and decoders (section 6); ``num_classes`` > 0 appends
    ``one_hot(labels)`` to the input; ``label_as_scalar`` appends the label itself as one
    number instead, as the lecture's conditional toy autoencoder does.
    """

    features: Sequence[int]
    negative_slope: float = 0.2
    label_as_scalar: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        if self.label_as_scalar:
            if labels is None or labels.shape != x.shape[:1]:
                raise ValueError(f"labels of shape ({x.shape[0]},) required, got {None if labels is None else labels.shape}")
            x = jnp.concatenate([x, labels.astype(x.dtype)[:, None]], axis=-1)
        elif labels is not None:
            raise ValueError("labels given to an unconditional MLP")
        for i, features in enumerate(self.features):
            x = _dense(features, x.shape[-1])(x)
            if i < len(self.features) - 1:
                x = nn.leaky_relu(x, self.negative_slope)
        return x


class Discriminator(nn.Module):
    """The AAE's latent discriminator: (B, D) -> logit (B, 1) of "drawn from the prior".

    The lecture's: Dense 512 -> BN -> LeakyReLU(0.2) -> Dense 256 -> BN -> LeakyReLU(0.2)
    -> Dense 1 (its Sigmoid is left to the loss). ``batch_norm=False`` drops the
    BatchNorms (the corrected option, see ``aae``).
    """

    hidden: Sequence[int] = (512, 256)
    batch_norm: bool = True
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, z: jax.Array, train: bool) -> jax.Array:
        x = z
        for features in self.hidden:
            x = _dense(features, x.shape[-1])(x)
            if self.batch_norm:
                x = BatchNorm()(x, train)
            x = nn.leaky_relu(x, self.negative_slope)
        return _dense(1, x.shape[-1])(x)


class Classifier(nn.Module):
    """A small MNIST CNN used only to score generated digits: (B, 28, 28, 1) -> logits (B, 10).

    Conv(3x3, 32) -> ReLU -> maxpool -> Conv(3x3, 64) -> ReLU -> maxpool -> Dense(128) ->
    ReLU -> Dense(10). No BatchNorm, so it has no batch statistics and scores each image
    independently of its batch.
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_images(x)
        in_features = x.shape[-1]
        for features in (32, 64):
            x = nn.relu(_conv(features, 3, 1, 1, in_features)(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
            in_features = features
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(_dense(128, x.shape[-1])(x))
        return _dense(self.num_classes, 128)(x)


def apply_training(module: nn.Module, variables: dict, x: jax.Array, **kwargs) -> tuple[jax.Array, dict]:
    """Applies ``module`` in train mode: (output, updated batch_stats); kwargs (e.g. labels) go to it."""
    y, updates = module.apply(variables, x, True, mutable=["batch_stats"], **kwargs)
    return y, updates.get("batch_stats", {})  # {} for modules without BatchNorm


def apply_inference(module: nn.Module, variables: dict, x: jax.Array, train: bool = False, **kwargs) -> jax.Array:
    """Applies ``module`` without updating anything.

    ``train=False``: eval mode (running statistics). ``train=True``: BatchNorm uses the
    batch's own statistics, as a PyTorch module left in train mode under no_grad; the
    running statistics it would update are discarded.
    """
    if train:
        return apply_training(module, variables, x, **kwargs)[0]
    return module.apply(variables, x, False, **kwargs)


def init_encoder_decoder(key: jax.Array, encoder: nn.Module, decoder: nn.Module, latent_dim: int,
                         ) -> tuple[dict, dict]:
    """Initial ({"encoder", "decoder"} params, same for batch_stats) for 28x28 images and (B, latent_dim) codes."""
    enc_key, dec_key = jax.random.split(key)
    labels = {"labels": jnp.zeros((1,), jnp.int32)} if getattr(decoder, "num_classes", 0) else {}
    enc_vars = encoder.init(enc_key, jnp.zeros((1, 28, 28, 1)), False)
    dec_vars = decoder.init(dec_key, jnp.zeros((1, latent_dim)), False, **labels)
    return ({"encoder": enc_vars["params"], "decoder": dec_vars["params"]},
            {"encoder": enc_vars["batch_stats"], "decoder": dec_vars["batch_stats"]})
