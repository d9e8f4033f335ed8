"""The lecture's PyTorch Encoder/Decoder and a one-to-one weight converter to aejax's Flax modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn as tnn

from aejax.benchmarks.torch_lecture import Decoder as TorchDecoder  # the lecture's modules, shared with the benchmarks
from aejax.benchmarks.torch_lecture import Encoder as TorchEncoder

# ------------------------------------------------------------ torch -> flax

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def conv_weight_to_flax(w: torch.Tensor) -> np.ndarray:
    """Conv2d weight (out, in, kh, kw) -> flax kernel (kh, kw, in, out)."""
    return _np(w).transpose(2, 3, 1, 0)


def conv_transpose_weight_to_flax(w: torch.Tensor) -> np.ndarray:
    """ConvTranspose2d weight (in, out, kh, kw) -> flax kernel: flipped spatially, (kh, kw, in, out)."""
    return np.ascontiguousarray(_np(w)[:, :, ::-1, ::-1].transpose(2, 3, 0, 1))


def flax_kernel_to_conv_transpose_weight(k: np.ndarray) -> torch.Tensor:
    """Inverse of conv_transpose_weight_to_flax."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(k)[::-1, ::-1].transpose(2, 3, 0, 1)))


def torch_to_flax(module: tnn.Module) -> dict:
    """{'params', 'batch_stats'} of the equivalent aejax module, in flax's naming order."""
    params, stats, counters = {}, {}, {}

    def name(kind):
        i = counters.get(kind, 0)
        counters[kind] = i + 1
        return f"{kind}_{i}"

    for m in module.modules():
        if isinstance(m, tnn.ConvTranspose2d):
            params[name("ConvTranspose2x")] = {"kernel": conv_transpose_weight_to_flax(m.weight), "bias": _np(m.bias)}
        elif isinstance(m, tnn.Conv2d):
            params[name("Conv")] = {"kernel": conv_weight_to_flax(m.weight), "bias": _np(m.bias)}
        elif isinstance(m, tnn.Linear):
            params[name("Dense")] = {"kernel": _np(m.weight).T.copy(), "bias": _np(m.bias)}
        elif isinstance(m, tnn.BatchNorm2d):
            n = name("BatchNorm")
            params[n] = {"scale": _np(m.weight), "bias": _np(m.bias)}
            stats[n] = {"mean": _np(m.running_mean), "var": _np(m.running_var)}
    return jax.tree_util.tree_map(jnp.asarray, {"params": params, "batch_stats": stats})


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return _np(t).transpose(0, 2, 3, 1)
