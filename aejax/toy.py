"""Section 6: the sine-plus-circle toy problem and its (conditional) MLP autoencoders.

Trained full-batch by the generic loop: one step per epoch over the whole training
set, Adam (PyTorch defaults) with the learning rate cut by 10 after 50 epochs without
improvement of the test loss (PyTorch's ``ReduceLROnPlateau(patience=50)``), stopping
once it falls below 1e-6 or after 5000 epochs, as the lecture does.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.model_selection import train_test_split

from aejax import flags, losses
from aejax.model import Batch, BatchStats, EncoderDecoder, LossOutput, Model, Params, Phase
from aejax.modules import MLP
from aejax.optimizers import torch_adam
from aejax.train import TrainState


class ToyData(NamedTuple):
    points: np.ndarray  # (N, 2) noisy
    labels: np.ndarray  # (N,) int32: 0 sine, 1 circle
    curves: tuple[np.ndarray, np.ndarray]  # the noise-free sine (n, 2) and circle (n, 2)


def make_sine_circle(key: jax.Array, points_per_shape: int = 2000, noise_std: float = 0.06) -> ToyData:
    """``y = sin(x)`` for x in [-2.2, 2.2] (label 0) and a circle of radius 0.5 around (1.5, -0.5) (label 1).

    Evenly spaced along each curve, plus N(0, noise_std^2) noise drawn from ``key``.
    """
    if points_per_shape <= 0 or noise_std < 0:
        raise ValueError(f"points_per_shape must be > 0 and noise_std >= 0, got {points_per_shape}, {noise_std}")
    x = np.linspace(-2.2, 2.2, points_per_shape)
    sine = np.stack([x, np.sin(x)], axis=1)
    t = np.linspace(0, 2 * np.pi, points_per_shape)
    circle = 0.5 * np.stack([np.sin(t), np.cos(t)], axis=1) + np.array([1.5, -0.5])
    clean = np.concatenate([sine, circle])
    noise = noise_std * np.asarray(jax.random.normal(key, clean.shape), np.float64)
    labels = np.repeat(np.arange(2, dtype=np.int32), points_per_shape)
    return ToyData((clean + noise).astype(np.float32), labels, (sine, circle))


def split(toy: ToyData, test_size: float = 0.25, seed: int = 42) -> dict[str, dict[str, jax.Array]]:
    """scikit-learn's shuffled split, as the lecture: {"train"/"test": {"points", "label"}}."""
    x_train, x_test, y_train, y_test = train_test_split(toy.points, toy.labels, test_size=test_size, random_state=seed)
    return {"train": {"points": jnp.asarray(x_train), "label": jnp.asarray(y_train)},
            "test": {"points": jnp.asarray(x_test), "label": jnp.asarray(y_test)}}


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """The toy autoencoder's settings; the defaults are the lecture's (section 6)."""

    conditional: bool = flags.field(False, "append the label to the encoder's input and to the code")
    learning_rate: float = flags.field(1e-3, "initial Adam learning rate (> 0; torch.optim.Adam's default)")
    plateau_patience: int = flags.field(50, "epochs without improvement of the test loss before the rate is cut (>= 0)")
    plateau_factor: float = flags.field(0.1, "factor the learning rate is multiplied by at a plateau, in (0, 1)")
    min_learning_rate: float = flags.field(1e-6, "training stops once the learning rate falls below it (> 0)")
    max_epochs: int = flags.field(5000, "the most epochs (full-batch steps) to train (> 0)")

    def __post_init__(self):
        if self.learning_rate <= 0 or self.min_learning_rate <= 0 or self.max_epochs <= 0:
            raise ValueError("learning_rate, min_learning_rate and max_epochs must be positive, got "
                             f"{self.learning_rate}, {self.min_learning_rate}, {self.max_epochs}")
        if self.plateau_patience < 0 or not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_patience must be >= 0 and plateau_factor in (0, 1), got "
                             f"{self.plateau_patience}, {self.plateau_factor}")


def _mean_squared_error(modules: EncoderDecoder, params: Params, batch: Batch) -> jax.Array:
    encoder, decoder = modules
    labels = batch["label"] if encoder.label_as_scalar else None
    codes = encoder.apply({"params": params["encoder"]}, batch["points"], labels)
    restored = decoder.apply({"params": params["decoder"]}, codes, labels)
    return jnp.mean(losses.squared_error(restored, batch["points"]))


def make_modules(config: ToyConfig) -> EncoderDecoder:
    """MLP 2 -> 32 -> 64 -> 1 and 1 -> 64 -> 32 -> 2 (LeakyReLU 0.2), inputs + 1 when conditional."""
    return EncoderDecoder(MLP((32, 64, 1), label_as_scalar=config.conditional),
                          MLP((64, 32, 2), label_as_scalar=config.conditional))


def toy_loss(modules: EncoderDecoder, test_set: Mapping[str, jax.Array], params: Params, batch_stats: BatchStats,
             batch: Batch, key: jax.Array, step: jax.Array) -> LossOutput:
    """The MSE of batch["points"] (B, 2) restored; metric ``test_loss``: the MSE of ``test_set``
    with the parameters before the step (gradient stopped), the value the plateau schedule watches."""
    del key, step  # deterministic, no schedule
    loss = _mean_squared_error(modules, params, batch)
    test_loss = _mean_squared_error(modules, jax.lax.stop_gradient(params), test_set)
    return LossOutput(loss, batch_stats, {"test_loss": test_loss})


def make_model(config: ToyConfig, test_set: Mapping[str, jax.Array]) -> Model:
    """The toy autoencoder (``make_modules``) trained on the MSE (``toy_loss``), the learning rate
    cut on plateaus of ``test_set``'s MSE, as the lecture steps its scheduler.
    ``encode``/``decode`` map points (B, 2) <-> codes (B, 1).
    """
    modules = make_modules(config)
    encoder, decoder = modules

    def init(key):
        enc_key, dec_key = jax.random.split(key)
        labels = jnp.zeros((1,), jnp.int32) if config.conditional else None
        return ({"encoder": encoder.init(enc_key, jnp.zeros((1, 2)), labels)["params"],
                 "decoder": decoder.init(dec_key, jnp.zeros((1, 1)), labels)["params"]},
                {"encoder": {}, "decoder": {}})

    def encode(params, batch_stats, points, labels=None, train=False):
        return encoder.apply({"params": params["encoder"]}, points, labels if config.conditional else None)

    def decode(params, batch_stats, codes, labels=None, train=False):
        return decoder.apply({"params": params["decoder"]}, codes, labels if config.conditional else None)

    # optax counts ``patience`` bad epochs and cuts on the last; PyTorch cuts after
    # ``patience`` of them, on the next one: hence + 1.
    optimizer = optax.chain(
        torch_adam(config.learning_rate),
        optax.contrib.reduce_on_plateau(factor=config.plateau_factor, patience=config.plateau_patience + 1, rtol=1e-4),
    )
    phase = Phase("toy", functools.partial(toy_loss, modules, test_set), optimizer, ("encoder", "decoder"),
                  value_metric="test_loss")
    return Model(init=init, phases=(phase,), encode=encode, decode=decode)


def learning_rate(config: ToyConfig, state: TrainState) -> float:
    """The current learning rate: the base rate times the plateau schedule's scale."""
    return config.learning_rate * float(state.opt_states["toy"][1].scale)


def should_stop(config: ToyConfig):
    """``train``'s stop rule: the rate has fallen below ``min_learning_rate``."""
    return lambda state, means: learning_rate(config, state) < config.min_learning_rate
