"""The decoder's last block in training on the CPU: ConvTranspose(3x3, s2) -> BatchNorm ->
LeakyReLU -> Conv(7x7), over batch chunks with the batch's exact statistics.

The block's 32x32 maps are the largest tensors of a training step: at batch 4096 each is
512 MB, and the plain composition keeps several of them. Here the forward pass runs the
chunks twice (the BatchNorm moments, merged over chunks; then the output), the backward
pass twice (the gradient sums BatchNorm needs, keeping the pre-activation gradient; then
the input gradient), recomputing the cheap transposed convolution each time: one 32x32
map is stored instead of several.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from aejax import conv_kernels as ck

def _chunks(x, chunk):
    return x.reshape(x.shape[0] // chunk, chunk, *x.shape[1:])


def _merge(x):
    return x.reshape(-1, *x.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9, 10))
def tail(h, kt, bt, gamma, beta, k7, b7, padding, chunk, slope, epsilon):
    """The block on h (B, H, W, C) -> (logits (B, H', W', channels), mean (F,), biased var (F,)):
    the transposed convolution to F features (kt, bt), BatchNorm with the batch's statistics and
    epsilon (gamma, beta), LeakyReLU of slope, the 7x7 convolution (k7, b7) padded by padding;
    chunk divides B. The mean and var are returned for the running statistics."""
    out, _ = _tail_fwd(h, kt, bt, gamma, beta, k7, b7, padding, chunk, slope, epsilon)
    return out


def _x(hc, kt, bt):
    return ck.conv_transpose_taps(hc, kt) + bt


def _tail_fwd(h, kt, bt, gamma, beta, k7, b7, padding, chunk, slope, epsilon):
    hs = _chunks(h, chunk)

    def moments(_, hc):
        x = _x(hc, kt, bt)
        m = jnp.mean(x, axis=(0, 1, 2))
        return None, (m, jnp.sum(jnp.square(x - m), axis=(0, 1, 2)))

    _, (means, m2s) = jax.lax.scan(moments, None, hs)
    per = chunk * h.shape[1] * 2 * h.shape[2] * 2
    mean = jnp.mean(means, axis=0)
    var = (jnp.sum(m2s, axis=0) + per * jnp.sum(jnp.square(means - mean), axis=0)) / (per * hs.shape[0])
    rstd = jax.lax.rsqrt(var + epsilon)

    def forward(_, hc):
        a = jax.nn.leaky_relu((_x(hc, kt, bt) - mean) * (rstd * gamma) + beta, slope)
        return None, ck.tap_conv(a, k7, padding) + b7

    _, ys = jax.lax.scan(forward, None, hs)
    return (_merge(ys), mean, var), (h, kt, bt, gamma, beta, k7, b7, mean, rstd)


def _tail_bwd(padding, chunk, slope, epsilon, res, cotangents):
    h, kt, bt, gamma, beta, k7, b7, mean, rstd = res
    gy = cotangents[0]  # mean and var feed the running statistics only
    hs, gys = _chunks(h, chunk), _chunks(gy, chunk)
    n = h.shape[0] * h.shape[1] * 2 * h.shape[2] * 2

    def pass_a(carry, inputs):
        hc, gyc = inputs
        xhat = (_x(hc, kt, bt) - mean) * rstd
        pre = xhat * gamma + beta
        _, conv_vjp = jax.vjp(lambda a, k: ck.tap_conv(a, k, padding), jax.nn.leaky_relu(pre, slope), k7)
        ga, dk7 = conv_vjp(gyc)
        gpre = jnp.where(pre > 0, ga, slope * ga)
        dgamma, dbeta, dk = carry
        return (dgamma + jnp.sum(gpre * xhat, axis=(0, 1, 2)), dbeta + jnp.sum(gpre, axis=(0, 1, 2)), dk + dk7), gpre

    zeros = jnp.zeros_like(gamma)
    (dgamma, dbeta, dk7), gpres = jax.lax.scan(pass_a, (zeros, zeros, jnp.zeros_like(k7)), (hs, gys))

    def pass_b(carry, inputs):
        hc, gpre = inputs
        x, t_vjp = jax.vjp(lambda hc, k: ck.conv_transpose_taps(hc, k), hc, kt)
        xhat = (x + bt - mean) * rstd
        gx = rstd * gamma * (gpre - dbeta / n - xhat * dgamma / n)
        gh, dkt = t_vjp(gx)
        dkt_sum, dbt = carry
        return (dkt_sum + dkt, dbt + jnp.sum(gx, axis=(0, 1, 2))), gh

    (dkt, dbt), ghs = jax.lax.scan(pass_b, (jnp.zeros_like(kt), jnp.zeros_like(bt)), (hs, gpres))
    db7 = jnp.sum(gy, axis=(0, 1, 2))
    return _merge(ghs), dkt, dbt, dgamma, dbeta, dk7, db7


tail.defvjp(_tail_fwd, _tail_bwd)
