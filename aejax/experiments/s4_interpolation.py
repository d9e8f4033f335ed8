"""Section 4: interpolating between two digits with a plain autoencoder.

    aejax run s4_interpolation --out runs/s4_interpolation                         # the lecture: 7 -> 6
    aejax run s4_interpolation --start-class 1 --end-class 8 --out runs/s4_1_to_8  # other digits

Trains the conv AE (latent 24, Adam 1e-4 with PyTorch-style weight decay 1e-5, 5
epochs), encodes the first image of the start class and the first of the end class
in the first test batch (64 images; the lecture's 7 and 6, or the data's last two
classes where it has no 7 or 6), and decodes the straight line between their codes:
10 points as a row (interpolation.png) and 200 as a looping GIF (interpolation.gif, 40
ms a frame). A plain AE fades one digit into the other. metrics.json: test BCE / MSE,
the classes used, and how far the decoded path strays from both ends.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from aejax import autoencoder, data, evaluation, flags, plots, runs
from aejax.experiments import common


@dataclasses.dataclass(frozen=True)
class Config:
    model: autoencoder.AEConfig = autoencoder.AEConfig(latent_dim=24, weight_decay=1e-5)
    train: runs.TrainConfig = runs.TrainConfig(epochs=5, batch_size=64)
    interpolation: common.InterpolationClasses = common.InterpolationClasses()
    gif_frames: int = flags.field(200, "frames of the GIF (>= 2)")

    def __post_init__(self):
        if self.gif_frames < 2:
            raise ValueError(f"gif_frames must be >= 2, got {self.gif_frames}")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},
    # nothing better is known for showing a plain AE's interpolation: the lecture's settings
    "recommended": {},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "s4_interpolation")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    with runs.usage_errors():
        start_class, end_class = config.interpolation.resolve(data.num_classes(splits))
    start, end = (evaluation.lecture_example(splits["test"], label) for label in (start_class, end_class))
    train_set, test_set = data.device_dataset(splits["train"]), data.device_dataset(splits["test"])
    model_config = dataclasses.replace(config.model, image_shape=data.image_shape(splits["train"]))
    model = autoencoder.make_model(model_config)
    with run.output() as out:
        state, history = run.fit(model, train_set, jax.random.key(config.train.seed), out)
        with run.timer("evaluation"):
            test = evaluation.evaluate(model, state.params, state.batch_stats, test_set)
            row = evaluation.interpolation_frames(model, state.params, state.batch_stats, start, end, common.ROW_STEPS)
            frames = evaluation.interpolation_frames(model, state.params, state.batch_stats, start, end,
                                                     config.gif_frames)  # (gif_frames, H, W, C)
            # How far the path strays from both ends: a fade keeps this small, no new shapes appear.
            endpoint_distance = np.minimum(np.abs(frames - frames[:1]).mean(axis=(1, 2, 3)),
                                           np.abs(frames - frames[-1:]).mean(axis=(1, 2, 3)))
            metrics = {
                **evaluation.reconstruction_metrics(test),
                "start_class": start_class,
                "end_class": end_class,
                "interpolation_max_distance_from_ends": float(endpoint_distance.max()),
                "train_history": history.epochs,
            }
        with run.timer("figures"):
            plots.plot_image_row(row, out / "interpolation.png",
                                 title=f"{start_class} -> {end_class}, plain autoencoder")
            plots.save_gif(frames, out / "interpolation.gif")
        runs.save_state(out, state)
        run.write_metrics(out, metrics, dataclasses.replace(config, model=model_config))
    return metrics
