"""The lecture's networks as flax.linen modules, applied with explicit variables.

Layouts are NHWC. Parameter counts equal the PyTorch originals (see tests). How the
convolutions run (``conv_impl``, ``conv_transpose_impl``) is ``aejax.conv_kernels``'s.

BatchNorm follows PyTorch exactly: momentum 0.1 on the new statistic (flax's 0.9 on
the old), eps 1e-5, normalisation by the biased batch variance, and the running
variance updated with the unbiased one (flax's own BatchNorm uses the biased one).

Image shapes. The lecture's networks read 28x28 greyscale images, ``IMAGE_SHAPE``
(28, 28, 1); any (H, W, C) runs through the same layers, sized from the shape
(``image_shape`` of ``Encoder``, ``Decoder`` and ``Classifier``):

- the encoder's four Conv(3x3, stride 2, padding 1) take each side s to ceil(s / 2),
  so H x W becomes ceil(H / 16) x ceil(W / 16) (28 -> 14 -> 7 -> 4 -> 2), and its Dense
  layer reads that grid's 512 channels flattened (2 x 2 x 512 = 2048 for 28x28);
- the decoder's Dense layer gives a start grid of ceil(H / 32) x ceil(W / 32) x 512
  (1 x 1 for 28x28), which its five ConvTranspose(3x3, stride 2) blocks grow 32-fold
  to G_H x G_W; its Conv(7x7) pads each axis by P = H + 6 - G (a side of G gives
  G + P - 6 = H), split (P // 2, P - P // 2), where 0 <= P <= 6 (28: G = 32, P = 2, the
  lecture's padding 1), and otherwise pads nothing and crops the centre H x W out of
  its G - 6 (the larger half of an odd crop at the end);
- the decoder's last convolution has C output channels (one logit per channel value);
- the evaluation classifier's two 2x2 max-pools take H x W to floor(floor(H / 2) / 2)
  x floor(floor(W / 2) / 2) (7 x 7 for 28x28), so it needs images of at least 4x4.

For 28x28x1 these are the lecture's layers exactly; every image size of at least 1x1
(4x4 for the classifier) and every channel count C >= 1 has its layers.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax import decoder_tail
from aejax.conv_kernels import (ConvImpl, ConvTransposeImpl, batch_chunk_size, conv2d,
                                conv_transpose2x, flax_conv_fn, resolve_conv_impl, resolve_conv_transpose_impl)

LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU() default
# From this batch size on, training on the CPU runs the decoder's last block as decoder_tail does:
# the block alone, forward and backward, at 1024 images ran 523 us an image against 676 and held
# 253 MB against 676 (at 512: 712 against 642 us, so smaller batches keep the plain composition)
FUSED_TAIL_MIN_BATCH = 1024


class BatchNorm(nn.Module):
    """PyTorch-semantics batch normalisation over all axes but the last.

    Variables: params {scale, bias}; batch_stats {mean, var}.
    In train mode the batch statistics are used and the running ones updated.
    """

    momentum: float = 0.1  # PyTorch convention: weight of the new batch statistic
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, weights_only: bool = False,
                 statistics: tuple[jax.Array, jax.Array, int] | None = None):
        """The normalised x (..., C). For a layer that normalises inside a fused computation
        (``decoder_tail``), x gives only C: ``weights_only`` returns (scale, bias), each (C,);
        ``statistics`` (mean, biased var, values per feature) measured there update the running
        statistics in train mode, and nothing is returned."""
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        if weights_only:
            return scale, bias
        if statistics is not None:
            if train and not self.is_initializing():
                self._update(ra_mean, ra_var, *statistics)
            return None
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            if not self.is_initializing():
                self._update(ra_mean, ra_var, mean, var, x.size // features)
        else:
            mean, var = ra_mean.value, ra_var.value
        inv = jax.lax.rsqrt(var + self.epsilon) * scale
        return (x - mean) * inv + bias

    def _update(self, ra_mean, ra_var, mean: jax.Array, var: jax.Array, n: int) -> None:
        """The running statistics moved toward a batch's mean and unbiased variance (PyTorch's rule)."""
        unbiased = var * (n / max(n - 1, 1))
        ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
        ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased


def _torch_uniform(fan_in: int):
    """PyTorch's default init for Conv/Linear weights and biases: U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / jnp.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


Padding = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def _conv(features: int, kernel: int, stride: int, padding: int | Padding, in_features: int,
          impl: ConvImpl = "lax") -> nn.Conv:
    """A PyTorch-initialised square convolution; ``padding`` the same on every side, or per side."""
    fan_in = in_features * kernel * kernel
    if isinstance(padding, int):
        padding = ((padding, padding),) * 2
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=padding,
        kernel_init=_torch_uniform(fan_in), bias_init=_torch_uniform(fan_in),
        conv_general_dilated=flax_conv_fn(impl),
    )


class ConvTranspose2x(nn.Module):
    """PyTorch ``ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)``: (B,H,W,C) -> (B,2H,2W,F).

    Parameters are those of ``flax.linen.ConvTranspose(F, (3, 3), strides=2,
    padding=((1, 2), (1, 2)))``: kernel (3, 3, C, F), the PyTorch weight (C, F, 3, 3)
    flipped spatially. The same function by any ``impl`` (``conv_kernels.conv_transpose2x``:
    "taps", "subpixel" with ``conv_impl`` running its convolution, or "lax").
    """

    features: int
    impl: ConvTransposeImpl = "auto"
    conv_impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, weights_only: bool = False):
        """(B, H, W, C) -> (B, 2H, 2W, F); ``weights_only``: (kernel, bias), x giving only C."""
        in_features = x.shape[-1]
        fan_in = self.features * 9  # PyTorch takes a transposed conv's fan_in from dim 1 (out)
        kernel = self.param("kernel", _torch_uniform(fan_in), (3, 3, in_features, self.features))
        bias = self.param("bias", _torch_uniform(fan_in), (self.features,))
        if weights_only:
            return kernel, bias
        return conv_transpose2x(x, kernel, self.impl, self.conv_impl) + bias


class OutputConv(nn.Module):
    """The decoder's last convolution, ``nn.Conv(features, (7, 7), padding=padding)`` with PyTorch's
    initialisation (the same parameters, kernel (7, 7, C, F) and bias (F,)), run by ``conv_impl``;
    ``weights_only``: (kernel, bias), x giving only C."""

    features: int
    padding: "Padding"
    conv_impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, weights_only: bool = False):
        in_features = x.shape[-1]
        fan_in = in_features * OUTPUT_KERNEL * OUTPUT_KERNEL
        kernel = self.param("kernel", _torch_uniform(fan_in), (OUTPUT_KERNEL, OUTPUT_KERNEL, in_features,
                                                               self.features))
        bias = self.param("bias", _torch_uniform(fan_in), (self.features,))
        if weights_only:
            return kernel, bias
        return conv2d(x, kernel, (1, 1), self.padding, self.conv_impl) + bias


def _dense(features: int, in_features: int) -> nn.Dense:
    return nn.Dense(features, kernel_init=_torch_uniform(in_features), bias_init=_torch_uniform(in_features))


ImageShape = tuple[int, int, int]  # (H, W, C) of one image
IMAGE_SHAPE: ImageShape = (28, 28, 1)  # the lecture's MNIST digits
ENCODER_STRIDES = 4  # the encoder's stride-2 convolutions: H -> ceil(H / 16)
OUTPUT_KERNEL = 7  # the decoder's last convolution: 7x7, stride 1
IMAGE_SHAPE_HELP = "shape (H, W, C) of the images, from the data; the network's layer sizes follow it"


def check_image_shape(image_shape: Sequence[int]) -> ImageShape:
    """``image_shape`` as a tuple (H, W, C) of positive integers; else a one-line ValueError."""
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else None
    if (shape is None or len(shape) != 3
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise ValueError(f"image_shape must be (H, W, C) of positive integers, got {image_shape!r}")
    return tuple(int(n) for n in shape)


def num_values(image_shape: Sequence[int]) -> int:
    """H * W * C: the values of one image (784 for 28x28 greyscale), over which the BCE is a mean."""
    return math.prod(check_image_shape(image_shape))


def encoder_grid(image_shape: Sequence[int]) -> tuple[int, int]:
    """The encoder's grid after its stride-2 convolutions: (ceil(H / 16), ceil(W / 16)); (2, 2) for 28x28."""
    height, width, _ = check_image_shape(image_shape)
    factor = 2 ** ENCODER_STRIDES
    return -(-height // factor), -(-width // factor)


class DecoderLayout(NamedTuple):
    """How the decoder reaches H x W (see the module docstring): the start grid (h0, w0) its
    Dense layer fills, the 7x7 convolution's padding ((top, bottom), (left, right)) and the
    crop ((top, bottom), (left, right)) of its output."""

    start: tuple[int, int]
    padding: Padding
    crop: Padding


def decoder_layout(image_shape: Sequence[int], upsampling_blocks: int = 5) -> DecoderLayout:
    """The decoder's layout for images of ``image_shape`` after ``upsampling_blocks`` stride-2
    transposed convolutions: for 28x28, start (1, 1), padding ((1, 1), (1, 1)), no crop."""
    height, width, _ = check_image_shape(image_shape)
    factor = 2 ** upsampling_blocks
    start, padding, crop = [], [], []
    for side in (height, width):
        cells = -(-side // factor)
        grown = cells * factor
        total = side + OUTPUT_KERNEL - 1 - grown  # the padding that makes the 7x7 output exactly ``side``
        pad, cut = max(total, 0), max(-total, 0)
        start.append(cells)
        padding.append((pad // 2, pad - pad // 2))
        crop.append((cut // 2, cut - cut // 2))
    return DecoderLayout(tuple(start), tuple(padding), tuple(crop))


def check_images(x: jax.Array, name: str = "images", image_shape: Sequence[int] = IMAGE_SHAPE) -> None:
    """Raises a one-line ValueError unless ``x`` is a float batch (B, H, W, C) of ``image_shape``."""
    height, width, channels = image_shape
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape) or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be float of shape (B, {height}, {width}, {channels}) in [0, 1], got "
                         f"{x.dtype} {tuple(x.shape)}"
                         + (" (add the channel axis: x[..., None])"
                            if channels == 1 and tuple(x.shape[1:]) == (height, width) else "")
                         + (" (scale uint8 images: data.to_float_nhwc)" if x.dtype == jnp.uint8 else ""))


def check_latents(z: jax.Array, latent_dim: int | None, name: str = "latents") -> None:
    """Raises a one-line ValueError unless ``z`` is float (B, latent_dim) (any width if ``latent_dim`` is None)."""
    wanted = f"(B, {'D' if latent_dim is None else latent_dim})"
    if z.ndim != 2 or (latent_dim is not None and z.shape[1] != latent_dim) or not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"{name} must be float of shape {wanted}, got {z.dtype} {tuple(z.shape)}")


class Encoder(nn.Module):
    """(B, H, W, C) of ``image_shape`` -> (B, latent_dim); the lecture's (B, 28, 28, 1) by default.

    Four Conv(3x3, s2, p1) -> BN -> LeakyReLU blocks (32, 64, 128, 256 filters:
    28 -> 14 -> 7 -> 4 -> 2; any side s -> ceil(s / 2) each), Conv(1x1, 512) -> BN ->
    LeakyReLU, flatten (ceil(H / 16) x ceil(W / 16) x 512 values), Dense.
    """

    latent_dim: int
    hidden: Sequence[int] = (32, 64, 128, 256)
    conv_impl: ConvImpl = "auto"  # the same function by any impl, see conv_kernels.conv2d
    image_shape: ImageShape = IMAGE_SHAPE

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        check_images(x, image_shape=check_image_shape(self.image_shape))
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
    """(B, latent_dim) -> logits (B, H, W, C) of ``image_shape``; ``sigmoid`` of them is the image.

    The lecture's, for (28, 28, 1): Dense(512), reshape 1x1x512, five ConvTranspose(3x3,
    s2, p1, op1) -> BN -> LeakyReLU blocks (256, 128, 64, 32, 32: 1 -> 2 -> 4 -> 8 -> 16
    -> 32), Conv(7x7, p1) to one channel (32 -> 28). Other shapes: Dense(h0 * w0 * 512)
    reshaped to the start grid (h0, w0, 512), the 7x7 convolution's padding and a crop
    from ``decoder_layout``, C output channels (see the module docstring). The lecture's
    final Sigmoid is left to the loss (on logits).
    With ``num_classes`` > 0 it is the lecture's conditional decoder (CDecoder): the
    Dense layer reads ``concat(z, one_hot(labels))``, (B, latent_dim + num_classes).
    """

    hidden: Sequence[int] = (256, 128, 64, 32, 32)
    conv_transpose_impl: ConvTransposeImpl = "auto"  # the same function by any impl, see ConvTranspose2x
    conv_impl: ConvImpl = "auto"  # how the convolutions run, see conv_kernels.conv2d
    num_classes: int = 0  # > 0: conditional on integer labels (B,)
    latent_dim: int | None = None  # checked against the latents' width when given
    image_shape: ImageShape = IMAGE_SHAPE

    def _fused_chunk(self, x: jax.Array, train: bool) -> int | None:
        """The chunk over which training runs the last block as ``decoder_tail`` does (x (B, H, W, C),
        its input), or None for the plain composition: on the CPU kernels, from
        ``FUSED_TAIL_MIN_BATCH`` images, in whole chunks."""
        chunk = batch_chunk_size(jax.ShapeDtypeStruct((x.shape[0], 2 * x.shape[1], 2 * x.shape[2], 1), x.dtype))
        usable = (train and not self.is_initializing() and chunk is not None
                  and x.shape[0] >= FUSED_TAIL_MIN_BATCH and x.shape[0] % chunk == 0
                  and resolve_conv_impl(self.conv_impl) == "patches"
                  and resolve_conv_transpose_impl(self.conv_transpose_impl) == "taps")
        return chunk if usable else None

    @nn.compact
    def __call__(self, z: jax.Array, train: bool, labels: jax.Array | None = None) -> jax.Array:
        check_latents(z, self.latent_dim)
        height, width, channels = check_image_shape(self.image_shape)
        (rows, cols), padding, ((top, bottom), (left, right)) = decoder_layout(self.image_shape, len(self.hidden))
        z = condition_on_labels(z, labels, self.num_classes)
        x = _dense(rows * cols * 512, z.shape[-1])(z).reshape(z.shape[0], rows, cols, 512)
        for features in self.hidden[:-1]:
            x = ConvTranspose2x(features, self.conv_transpose_impl, self.conv_impl)(x)
            x = nn.leaky_relu(BatchNorm()(x, train), LEAKY_SLOPE)
        last = ConvTranspose2x(self.hidden[-1], self.conv_transpose_impl, self.conv_impl)
        norm = BatchNorm()
        output = OutputConv(channels, padding, self.conv_impl, name="Conv_0")
        chunk = self._fused_chunk(x, train)
        if chunk is None:
            x = nn.leaky_relu(norm(last(x), train), LEAKY_SLOPE)
            x = output(x)
        else:  # the same function over batch chunks, the batch's statistics exact (decoder_tail)
            features = jnp.zeros((1, self.hidden[-1]), x.dtype)
            (kt, bt), (scale, bias) = last(x, weights_only=True), norm(features, train, weights_only=True)
            k7, b7 = output(features, weights_only=True)
            count = x.shape[0] * 2 * x.shape[1] * 2 * x.shape[2]  # values per feature of the block's 2H x 2W maps
            x, mean, var = decoder_tail.tail(x, kt, bt, scale, bias, k7, b7, padding, chunk, LEAKY_SLOPE, norm.epsilon)
            norm(features, train, statistics=(mean, var, count))
        if top or bottom or left or right:  # grown more than 6 beyond the image: its centre
            x = x[:, top:top + height, left:left + width, :]
        return x


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


CLASSIFIER_MIN_SIDE = 4  # the classifier's two 2x2 max-pools need 4 pixels a side


class Classifier(nn.Module):
    """A small CNN used only to score generated images: (B, H, W, C) of ``image_shape`` -> logits
    (B, num_classes); MNIST's (B, 28, 28, 1) -> (B, 10) by default.

    Conv(3x3, 32) -> ReLU -> maxpool -> Conv(3x3, 64) -> ReLU -> maxpool -> Dense(128) ->
    ReLU -> Dense(num_classes). No BatchNorm, so it has no batch statistics and scores each image
    independently of its batch. Images need at least 4x4 pixels.
    """

    num_classes: int = 10
    # the same function by any impl; "auto" (patches on a CPU) keeps XLA:CPU's slow convolution
    # gradients out of the scanned training chunks
    conv_impl: ConvImpl = "auto"
    image_shape: ImageShape = IMAGE_SHAPE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        height, width, _ = check_image_shape(self.image_shape)
        if min(height, width) < CLASSIFIER_MIN_SIDE:
            raise ValueError(f"the classifier needs images of at least {CLASSIFIER_MIN_SIDE}x{CLASSIFIER_MIN_SIDE} "
                             f"pixels, got {height}x{width}")
        check_images(x, image_shape=self.image_shape)
        in_features = x.shape[-1]
        for features in (32, 64):
            x = nn.relu(_conv(features, 3, 1, 1, in_features, self.conv_impl)(x))
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
    """Initial ({"encoder", "decoder"} params, same for batch_stats) for images of the encoder's
    ``image_shape`` and (B, latent_dim) codes."""
    enc_key, dec_key = jax.random.split(key)
    labels = {"labels": jnp.zeros((1,), jnp.int32)} if getattr(decoder, "num_classes", 0) else {}
    enc_vars = encoder.init(enc_key, jnp.zeros((1, *encoder.image_shape)), False)
    dec_vars = decoder.init(dec_key, jnp.zeros((1, latent_dim)), False, **labels)
    return ({"encoder": enc_vars["params"], "decoder": dec_vars["params"]},
            {"encoder": enc_vars["batch_stats"], "decoder": dec_vars["batch_stats"]})
