"""aejax: autoencoders in JAX/Flax.

The lecture's autoencoders (PCA, convolutional, denoising, sparse, variational,
conditional, adversarial, disentangled, semi-supervised) as variants over shared
modules and one generic training loop. Submodules load on first use, so
``import aejax`` is cheap::

    from aejax import autoencoder, data, train
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=24))

Variants: ``autoencoder`` (plain, denoising, sparse), ``contractive``, ``vae`` (VAE, CVAE,
beta-VAE), ``wae``, ``aae``, ``disentangled``, ``semi_supervised``, ``toy``, ``pca``.
The variant contract (``LossOutput``, ``Phase``, ``Model``): ``model``; the loop: ``train``;
running a model over a split: ``inference``; compile time: ``compile_clock``; data:
``data``; networks: ``modules``; losses: ``losses``; metrics: ``evaluation``,
``likelihood``; priors: ``priors``; run folders and configs: ``runs``, ``flags``;
experiments: ``aejax.experiments`` (``aejax run NAME``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"  # the one source of the version (pyproject reads it)

_SUBMODULES = (
    "aae", "autoencoder", "checkpoint", "classifier", "compile_clock", "contractive", "conv_kernels", "data",
    "disentangled", "evaluation", "flags", "inference", "label_style", "likelihood", "losses", "model", "modules",
    "optimizers", "pca", "plots", "priors", "runs", "semi_supervised", "toy", "train", "vae", "wae",
)
__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"aejax.{name}")
    raise AttributeError(f"module 'aejax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
