"""The lecture's PyTorch Encoder/Decoder and a one-to-one weight converter to aejax's Flax modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn as tnn


# ------------------------------------------------------------ the lecture's modules

class TorchEncoder(tnn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        layers, in_ch = [], 1
        for h in (32, 64, 128, 256):
            layers += [tnn.Conv2d(in_ch, h, 3, stride=2, padding=1), tnn.BatchNorm2d(h), tnn.LeakyReLU()]
            in_ch = h
        layers += [tnn.Conv2d(256, 512, 1), tnn.BatchNorm2d(512), tnn.LeakyReLU(),
                   tnn.Flatten(), tnn.Linear(2048, latent_dim)]
        self.net = tnn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class TorchDecoder(tnn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.fc = tnn.Linear(latent_dim, 512)
        layers = []
        for a, b in ((512, 256), (256, 128), (128, 64), (64, 32)):
            layers += [tnn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1),
                       tnn.BatchNorm2d(b), tnn.LeakyReLU()]
        layers += [tnn.ConvTranspose2d(32, 32, 3, 2, 1, output_padding=1), tnn.BatchNorm2d(32), tnn.LeakyReLU(),
                   tnn.Conv2d(32, 1, 7, padding=1), tnn.Sigmoid()]
        self.net = tnn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.fc(z).view(-1, 512, 1, 1))


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
