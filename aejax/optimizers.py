"""Optimizers with PyTorch's semantics, as optax chains."""

from __future__ import annotations

import optax


def torch_adam(learning_rate: float | optax.Schedule, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """``torch.optim.Adam(lr, weight_decay)``: L2 added to the gradient (coupled), not AdamW.

    Applies to every parameter, BatchNorm scale and biases included, as PyTorch does.
    ``learning_rate`` may be an optax schedule of the update count (a float keeps the
    state as it was: no counter).
    """
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    return optax.chain(*parts, optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), optax.scale_by_learning_rate(learning_rate))
