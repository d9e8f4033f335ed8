"""Convolution kernels for XLA:CPU: the same functions as ``lax``'s, written as matmuls and slices.

XLA:CPU runs its own convolutions, and above all their gradients, slowly at the
lecture's sizes (and very slowly inside ``lax.scan``); matmuls, slices and pads it runs
fast. ``conv2d`` and ``conv_transpose2x`` pick an implementation by name ("auto": these
kernels on the CPU backend, ``lax``/cuDNN elsewhere). Layouts: NHWC inputs, HWIO
kernels (flax's).
"""

from __future__ import annotations

import functools
import typing
from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp

ConvImpl = Literal["auto", "patches", "lax"]
CONV_IMPLS: tuple[str, ...] = typing.get_args(ConvImpl)
ConvTransposeImpl = Literal["auto", "taps", "subpixel", "lax"]
CONV_IMPL_HELP = "how convolutions run, the same function by each (auto: patches on CPU, lax elsewhere)"
CONV_TRANSPOSE_IMPL_HELP = ("how the decoder's transposed convolutions run, the same function by each "
                            "(auto: taps on CPU, subpixel elsewhere)")
CONV_TRANSPOSE_IMPLS: tuple[str, ...] = typing.get_args(ConvTransposeImpl)


def resolve_conv_impl(impl: str) -> str:
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


def _shift_sum(taps: jax.Array, out_h: int, out_w: int, kw: int, f: int) -> jax.Array:
    """(B, Hp, Wp, T F) per-tap partial outputs -> (B, out_h, out_w, F): tap t = i*kw + j (channels
    t F .. t F + F - 1) shifted by (i, j), summed. Read in the layout the matmul wrote, so no
    transposing copy of the taps is made."""
    num_taps = taps.shape[-1] // f
    return sum(taps[:, t // kw:t // kw + out_h, t % kw:t % kw + out_w, t * f:(t + 1) * f] for t in range(num_taps))


def _tap_matrix(kernel: jax.Array) -> jax.Array:
    """HWIO (kh, kw, C, F) -> (C, kh kw F): column t F + f is tap t's weights into output channel f."""
    kh, kw, c, f = kernel.shape
    return kernel.reshape(kh * kw, c, f).transpose(1, 0, 2).reshape(c, kh * kw * f)


def tap_conv(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]]) -> jax.Array:
    """A stride-1 NHWC/HWIO convolution for large kernels with few outputs: matmul first, then shift.

    im2col would copy the input kh*kw times (49 for the decoder's 7x7 output layer); here
    one matmul maps every input pixel to its kh*kw*F per-tap contributions (B, Hp, Wp, T F),
    and each tap's shifted window is added. With F = 1 that array is smaller than the
    input's 32 channels. The gradient is written out: autodiff would pad each tap's window
    back to the whole taps array and add T of those (T = 49: 49x the memory traffic).
    """
    return _tap_conv(x, kernel, tuple(tuple(side) for side in padding))  # hashable: a static argument


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tap_conv(x: jax.Array, kernel: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    kh, kw, c, f = kernel.shape
    (pt, pb), (pl, pr) = padding
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    b, hp, wp, _ = x.shape
    taps = jnp.dot(x.reshape(-1, c), _tap_matrix(kernel)).reshape(b, hp, wp, kh * kw * f)
    return _shift_sum(taps, hp - kh + 1, wp - kw + 1, kw, f)


def _tap_conv_fwd(x, kernel, padding):
    return _tap_conv(x, kernel, padding), (x, kernel)


def _tap_conv_bwd(padding, residuals, grad):
    x, kernel = residuals
    kh, kw, c, f = kernel.shape
    (pt, pb), (pl, pr) = padding
    b, out_h, out_w, _ = grad.shape
    hp, wp = x.shape[1] + pt + pb, x.shape[2] + pl + pr
    # each tap's and output channel's gradient: the output gradient padded to the tap's offset,
    # one contiguous (B Hp Wp) plane each, stacked once: (T F, B Hp Wp)
    planes = jnp.stack([jnp.pad(grad[..., o], ((0, 0), (t // kw, hp - out_h - t // kw), (t % kw, wp - out_w - t % kw)))
                        for t in range(kh * kw) for o in range(f)]).reshape(kh * kw * f, b * hp * wp)
    padded = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0))).reshape(b * hp * wp, c)
    d_padded = jax.lax.dot_general(planes, _tap_matrix(kernel), (((0,), (1,)), ((), ())))  # (B Hp Wp, C)
    dx = d_padded.reshape(b, hp, wp, c)[:, pt:pt + x.shape[1], pl:pl + x.shape[2]]
    # (T F, C) as a plain matmul: XLA:CPU hands it to its fused matmul kernels, where the (C, T F)
    # form with both operands transposed ran as a generic dot at 2.2x the time (batch 4096)
    d_kernel = jnp.dot(planes, padded)
    return dx, d_kernel.reshape(kh * kw, f, c).transpose(0, 2, 1).reshape(kh, kw, c, f)


_tap_conv.defvjp(_tap_conv_fwd, _tap_conv_bwd)


# On the CPU, a layer this wide or wider (input pixels per channel) runs over chunks of
# CPU_BATCH_CHUNK images when the batch is larger: the decoder's 32x32 layers' intermediates
# (the 7x7 layer's 49 taps: 200 KB an image) then stay in cache. The AE's train step on the
# 2-core CPU: 1.10x at batch 512, 1.28x at 4096; 32-image chunks cost 13% at batch 64, so
# batches up to 64 run whole. Narrower layers lose more to the loop than they gain.
CPU_BATCH_CHUNK = 64
CHUNK_MIN_PIXELS = 16 * 16


def batch_chunk_size(x: jax.Array) -> int | None:
    """The chunk over which a CPU kernel runs ``x`` (B, H, W, C), or None for the whole batch at once."""
    if jax.default_backend() != "cpu" or x.shape[0] <= CPU_BATCH_CHUNK or x.shape[1] * x.shape[2] < CHUNK_MIN_PIXELS:
        return None
    return CPU_BATCH_CHUNK


def over_batch_chunks(fn: Callable[[jax.Array], jax.Array], x: jax.Array, chunk: int | None) -> jax.Array:
    """``fn(x)`` for a per-image ``fn``, computed ``chunk`` images at a time (``lax.map``; the
    last ``B % chunk`` images in one call of their own); ``chunk`` None: ``fn(x)``."""
    b = x.shape[0]
    if chunk is None or b <= chunk:
        return fn(x)
    whole = b - b % chunk
    head = jax.lax.map(fn, x[:whole].reshape(whole // chunk, chunk, *x.shape[1:]))
    head = head.reshape(whole, *head.shape[2:])
    return head if whole == b else jnp.concatenate([head, fn(x[whole:])], axis=0)


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Sequence[tuple[int, int]],
           impl: ConvImpl = "auto") -> jax.Array:
    """NHWC/HWIO convolution by the chosen implementation (see ``resolve_conv_impl``).

    "patches" is ``patch_conv``, or ``tap_conv`` for stride-1 kernels of 25+ taps and no
    more outputs than inputs (the decoder's 7x7 layer: 32 -> 1); on the CPU, layers of 16x16
    pixels or more run over chunks of ``CPU_BATCH_CHUNK`` images (``batch_chunk_size``).
    XLA:CPU runs its own convolutions very slowly inside loops (``lax.scan``: 3.3 s per
    batch of 512 for the decoder's 7x7 layer), matmuls not.
    """
    if resolve_conv_impl(impl) == "patches":
        if kernel.shape[0] * kernel.shape[1] >= 25 and tuple(strides) == (1, 1) and kernel.shape[3] <= kernel.shape[2]:
            return over_batch_chunks(lambda xb: tap_conv(xb, kernel, padding), x, batch_chunk_size(x))
        return over_batch_chunks(lambda xb: patch_conv(xb, kernel, strides, padding), x, batch_chunk_size(x))
    return jax.lax.conv_general_dilated(x, kernel, tuple(strides), tuple(padding),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def flax_conv_fn(impl: ConvImpl) -> Callable[..., jax.Array]:
    """``conv2d`` by ``impl`` as ``flax.linen.Conv``'s ``conv_general_dilated`` hook (lax's signature;
    no dilation, no feature groups: what aejax's convolutions use)."""

    def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                             dimension_numbers=None, feature_group_count=1, precision=None):
        del dimension_numbers, precision  # flax passes NHWC/HWIO and the default precision
        if any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))) or feature_group_count != 1:
            raise ValueError("conv2d supports no dilation and no feature groups")
        return conv2d(lhs, rhs, window_strides, padding, impl)

    return conv_general_dilated


# Which kernel entry (of 3, in flax's flipped layout) feeds each output phase and
# input tap of a stride-2 transposed conv (k=3, p=1, output_padding=1), per spatial
# axis: even outputs 2m read x[m] * k[1]; odd outputs 2m+1 read x[m] * k[0] + x[m+1] * k[2].
_PHASE_TAP_KERNEL = {(0, 0): 1, (1, 0): 0, (1, 1): 2}  # (phase, tap) -> kernel index; (0, 1) reads nothing


def subpixel_taps(kernel: jax.Array, taps_h: int = 2, taps_w: int = 2) -> jax.Array:
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
    # one zero row and column before each phase: a tap that read the next input pixel takes its
    # phase's gradient one pixel back, a plain window of the padded array (no pad per tap)
    padded = jnp.pad(grad.reshape(b, h, 2, w, 2, f), ((0, 0), (1, 0), (0, 0), (1, 0), (0, 0), (0, 0)))
    by_tap = {}
    for (p, q), terms in _phase_terms(rows, cols).items():
        for i, j, next_h, next_w in terms:
            top, left = (0 if next_h else 1), (0 if next_w else 1)
            by_tap[i, j] = padded[:, top:top + h, p, left:left + w, q]
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


def resolve_conv_transpose_impl(impl: str) -> str:
    """"auto" -> "taps" on the CPU backend, "subpixel" elsewhere (its 2x2 convolution is
    then cuDNN's, see ``resolve_conv_impl``)."""
    if impl not in CONV_TRANSPOSE_IMPLS:
        raise ValueError(f"conv transpose impl must be one of {CONV_TRANSPOSE_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "taps" if jax.default_backend() == "cpu" else "subpixel"
    return impl


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array, conv_impl: ConvImpl = "auto") -> jax.Array:
    """The stride-2 transposed conv (k=3, p=1, output_padding=1) as one 2x2 convolution into 4F
    channels (``subpixel_taps``, run by ``conv2d`` with ``conv_impl``), then depth-to-space.

    x (B, H, W, C), kernel (3, 3, C, F) in flax's flipped layout -> (B, 2H, 2W, F), no bias.
    """
    # A 1-pixel-high (or wide) input meets the second tap row (column) only in padding: skip it.
    taps_h, taps_w = min(x.shape[1], 2), min(x.shape[2], 2)
    features = kernel.shape[-1]
    y = conv2d(x, subpixel_taps(kernel, taps_h, taps_w), (1, 1), ((0, taps_h - 1), (0, taps_w - 1)), conv_impl)
    b, h, w, _ = y.shape
    y = y.reshape(b, h, w, 2, 2, features).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, 2 * h, 2 * w, features)


def conv_transpose2x(x: jax.Array, kernel: jax.Array, impl: ConvTransposeImpl = "auto",
                     conv_impl: ConvImpl = "auto") -> jax.Array:
    """PyTorch's ``ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)`` without bias, by ``impl``.

    x (B, H, W, C), kernel (3, 3, C, F) in flax's flipped layout -> (B, 2H, 2W, F). The
    same function by any impl (``resolve_conv_transpose_impl``): ``"taps"``
    (``conv_transpose_taps``: 9 C F multiply-adds per input pixel, as PyTorch's col2im; over
    batch chunks as ``conv2d``'s on wide inputs),
    ``"subpixel"`` (``conv_transpose_subpixel``: 16 C F, its convolution run by
    ``conv_impl``) or ``"lax"`` (the dilated ``lax.conv_transpose``, which XLA:CPU
    differentiates slowly).
    """
    impl = resolve_conv_transpose_impl(impl)
    if impl == "lax":
        return jax.lax.conv_transpose(x, kernel, (2, 2), ((1, 2), (1, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if impl == "taps":
        return over_batch_chunks(lambda xb: conv_transpose_taps(xb, kernel), x, batch_chunk_size(x))
    return conv_transpose_subpixel(x, kernel, conv_impl)
