"""Section 6: a plain and a conditional MLP autoencoder on the sine-plus-circle toy data.

    aejax run s6_toy_conditional --out runs/s6_toy_conditional                          # the lecture (faithful)
    aejax run s6_toy_conditional --preset recommended --out runs/s6_toy_conditional_rec # test split held out

4000 noisy points (noise std 0.06, drawn from --seed's key), scikit-learn's 75/25
split (random_state 42); each model trained full-batch by the generic loop with Adam,
the rate cut by 10 after 50 epochs without improvement, until it falls below 1e-6 or
after 5000 epochs (300 with --quick). The MNIST data are not used.

``lecture`` is faithful to the notebook: the plateau schedule and the stop rule watch
the test split, so the reported test MSE has steered training. ``recommended`` holds
out a fifth of the training points for them instead and only scores the test split.

Figure: the lecture's (noisy points, both true curves, test reconstructions in grey)
for both models, toy_reconstructions.png. metrics.json: each model's test MSE, epochs
trained and final learning rate, and the plain over the conditional test MSE.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import typing
from typing import Any, Literal

import jax
import numpy as np

from aejax import checkpoint, evaluation, flags, plots, runs, toy
from aejax import train as train_lib

QUICK = {"max_epochs": 300}  # --quick's caps on the config (``runs.parse``)
VALIDATION_SHARE = 0.2  # of the training points, watched by the schedule under plateau_split="validation"
MIN_POINTS_PER_SHAPE = 10  # enough for a test quarter and a validation fifth of both shapes
PlateauSplit = Literal["test", "validation"]
Points = dict[str, jax.Array]  # {"points": (N, 2) float32, "label": (N,) int32}


@dataclasses.dataclass(frozen=True)
class ToyModels(toy.ToyConfig):
    """The settings both toy models share; the experiment trains one plain and one conditional model."""

    conditional: bool = flags.field(False, "whether the model reads the label (the experiment trains both kinds)",
                                    cli=False)


@dataclasses.dataclass(frozen=True)
class Config:
    model: ToyModels = ToyModels()
    seed: int = flags.field(42, "seed of the toy points' noise and of both models")
    noise_std: float = flags.field(0.06, "std of the noise on the toy points (>= 0)")
    points_per_shape: int = flags.field(2000, f"points on the sine and on the circle (>= {MIN_POINTS_PER_SHAPE})")
    plateau_split: PlateauSplit = flags.field(
        "test", "what the plateau schedule and the stop rule watch: the test split "
                "(the lecture) or a held-out fifth of the training points")
    checkpoint_every: int = flags.field(500, "save each model's training state every N epochs (full-batch steps); "
                                             "a killed run resumes when the same command runs again")

    def __post_init__(self):
        if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"noise_std must be a finite number >= 0, got {self.noise_std}")
        if self.points_per_shape < MIN_POINTS_PER_SHAPE:
            raise ValueError(f"points_per_shape must be >= {MIN_POINTS_PER_SHAPE}, got {self.points_per_shape}")
        if self.plateau_split not in typing.get_args(PlateauSplit):
            raise ValueError(f"plateau_split must be one of {typing.get_args(PlateauSplit)}, "
                             f"got {self.plateau_split!r}")
        if self.checkpoint_every <= 0:
            raise ValueError(f"checkpoint_every must be a positive integer, got {self.checkpoint_every}")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},
    # the test split stays unseen until it is scored
    "recommended": {"plateau_split": "validation"},
}


def schedule_split(splits: dict[str, Points], plateau_split: PlateauSplit) -> tuple[Points, Points]:
    """(training points, points the plateau schedule and stop rule watch)."""
    if plateau_split == "test":
        return splits["train"], splits["test"]
    count = int(splits["train"]["label"].shape[0])
    cut = count - round(count * VALIDATION_SHARE)  # the split is shuffled already: the last fifth is a fair sample
    return ({k: v[:cut] for k, v in splits["train"].items()}, {k: v[cut:] for k, v in splits["train"].items()})


def fit_toy(config: toy.ToyConfig, train_points: Points, watched: Points, key: jax.Array, checkpoint_every: int,
            checkpoint_dir: pathlib.Path) -> tuple[train_lib.Model, train_lib.TrainState, train_lib.History]:
    """Trains one toy model full-batch to the lecture's stop rule, checkpointing into (and resuming from)
    ``checkpoint_dir``; returns the model, its state and its history."""
    model = toy.make_model(config, watched)
    state = train_lib.create_train_state(model, key)
    with checkpoint.TrainingCheckpoints(checkpoint_dir) as checkpoints:
        # one step per epoch: no progress bar, no line per epoch
        state, history = train_lib.train(model, state, train_points, epochs=config.max_epochs,
                                         batch_size=int(train_points["label"].shape[0]), gather=train_lib.take_batch,
                                         checkpointing=train_lib.Checkpointing(checkpoints, checkpoint_every),
                                         callbacks=train_lib.Callbacks(should_stop=toy.should_stop(config)),
                                         reporting=train_lib.QUIET)
    return model, state, history


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "s6_toy_conditional", quick=QUICK)
    run = runs.Run(config, options, preset)
    data_key, *model_keys = jax.random.split(jax.random.key(config.seed), 3)
    with run.timer("data"):
        toy_data = toy.make_sine_circle(data_key, config.points_per_shape, config.noise_std)
        splits = toy.split(toy_data)
        train_points, watched = schedule_split(splits, config.plateau_split)
    test_points, test_labels = np.asarray(splits["test"]["points"]), splits["test"]["label"]
    metrics: dict[str, Any] = {"protocol": {"plateau_schedule_and_stop_watch": config.plateau_split}}
    reconstructions: dict[str, np.ndarray] = {}
    with run.output() as out:
        for name, conditional, key in (("plain", False, model_keys[0]), ("conditional", True, model_keys[1])):
            model_config = dataclasses.replace(config.model, conditional=conditional)
            model, state, history = fit_toy(model_config, train_points, watched, key, config.checkpoint_every,
                                            out / runs.TRAIN_STATE / name)
            run.add_training_time(history)
            with run.timer("evaluation"):
                codes = model.encode(state.params, state.batch_stats, splits["test"]["points"], test_labels)
                restored = np.asarray(model.decode(state.params, state.batch_stats, codes, test_labels))  # (N, 2)
                reconstructions[f"{name} autoencoder"] = restored
                metrics[f"{name}_test_mse"] = evaluation.mean_squared_error(restored, test_points)
                metrics[f"{name}_epochs"] = len(history.epochs)
                metrics[f"{name}_final_learning_rate"] = toy.learning_rate(model_config, state)
        metrics["mse_ratio_plain_over_conditional"] = metrics["plain_test_mse"] / metrics["conditional_test_mse"]
        with run.timer("figures"):
            plots.plot_toy_reconstructions(toy_data.points, toy_data.labels, list(toy_data.curves), reconstructions,
                                           out / "toy_reconstructions.png")
        run.write_metrics(out, metrics)
    return metrics
