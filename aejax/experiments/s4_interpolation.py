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

from aejax import autoencoder, data, evaluation, plots, runs

FIRST_BATCH = 64  # the lecture picks its digits from the first (unshuffled) test batch
ROW_STEPS = 10  # decoded points in the interpolation row
LECTURE_START, LECTURE_END = 7, 6


@dataclasses.dataclass(frozen=True)
class Config:
    model: autoencoder.AEConfig = autoencoder.AEConfig(latent_dim=24, weight_decay=1e-5)
    train: runs.TrainConfig = runs.TrainConfig(epochs=5, batch_size=64)
    start_class: int | None = dataclasses.field(
        default=None, metadata={"help": f"class (digit) to start from (none: {LECTURE_START} if the data have it, "
                                        "else the last class)"})
    end_class: int | None = dataclasses.field(
        default=None, metadata={"help": f"class (digit) to end at (none: {LECTURE_END} if the data have it, "
                                        "else the last class other than the start)"})
    gif_frames: int = dataclasses.field(default=200, metadata={"help": "frames of the GIF (>= 2)"})

    def __post_init__(self):
        for name in ("start_class", "end_class"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be a class label >= 0, got {value}")
        if self.start_class is not None and self.start_class == self.end_class:
            raise ValueError(f"start_class and end_class must differ, got {self.start_class} for both")
        if self.gif_frames < 2:
            raise ValueError(f"gif_frames must be >= 2, got {self.gif_frames}")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},
    # nothing better is known for showing a plain AE's interpolation: the lecture's settings
    "recommended": {},
}


def _choose(given: int | None, lecture: int, num_classes: int, other: int | None) -> int:
    """``given``, else the lecture's class if the data have it (and it is not ``other``), else the last class
    other than ``other``. Raises ``runs.UsageError`` for a given class the data do not have."""
    if given is not None:
        if given >= num_classes:
            raise runs.UsageError(f"class {given} is not in the data (labels 0..{num_classes - 1})")
        return given
    if lecture < num_classes and lecture != other:
        return lecture
    return max(c for c in range(num_classes) if c != other)


def interpolation_classes(config: Config, num_classes: int) -> tuple[int, int]:
    """The (start, end) classes of the interpolation for data with labels 0 .. num_classes - 1."""
    if num_classes < 2:
        raise runs.UsageError(f"interpolating between two classes needs at least two, the data have {num_classes}")
    start = _choose(config.start_class, LECTURE_START, num_classes, config.end_class)
    return start, _choose(config.end_class, LECTURE_END, num_classes, start)


def first_image(split: data.Split, label: int) -> np.ndarray:
    """The first image (28, 28, 1) of ``label`` in the first test batch, as the lecture picks it;
    else the first in the split."""
    within = FIRST_BATCH if np.any(split.labels[:FIRST_BATCH] == label) else len(split.labels)
    return evaluation.first_of_class(split, label, within=within)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "s4_interpolation")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    start_class, end_class = interpolation_classes(config, data.num_classes(splits))
    start, end = first_image(splits["test"], start_class), first_image(splits["test"], end_class)
    train_set, test_set = data.device_dataset(splits["train"]), data.device_dataset(splits["test"])
    model = autoencoder.make_model(config.model)
    with run.output() as out:
        state, history = run.fit(model, train_set, jax.random.key(config.train.seed), out)
        with run.timer("evaluation"):
            test = evaluation.evaluate(model, state.params, state.batch_stats, test_set)
            row = evaluation.interpolation_frames(model, state.params, state.batch_stats, start, end, ROW_STEPS)
            frames = evaluation.interpolation_frames(model, state.params, state.batch_stats, start, end,
                                                     config.gif_frames)  # (gif_frames, 28, 28, 1)
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
        run.write_metrics(out, metrics)
    return metrics
