"""The evaluation classifier: a small CNN trained once and saved (orbax), that scores generated images.

    aejax run classifier --out runs/classifier

Experiments that score generated images (``s7_cvae``, ``s9_disentangled``) read it from
their ``--classifier`` folder. Writes the saved classifier (``checkpoint``),
``classifier.json`` beside it (test accuracy, epochs, training images, number of
classes: a saved classifier is refused for data with another number of classes) and
metrics.json with the test accuracy. The recipe (batch 128, Adam 1e-3 cosine-decayed
over the run) is ``aejax.classifier``'s.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from aejax import classifier, data, flags, runs


@dataclasses.dataclass(frozen=True)
class Config:
    epochs: int = flags.field(classifier.EPOCHS, "training epochs")
    seed: int = flags.field(42, "seed of the initialisation and the shuffling")

    def __post_init__(self):
        if self.epochs <= 0:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs}")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},
    # not the lecture's (it has none): classifier.EPOCHS already score about 99% on MNIST's test set
    "recommended": {},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "classifier")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    classes = data.num_classes(splits)
    with run.output() as out:
        with run.timer("train"):
            _, accuracy = classifier.load_or_train(out, splits, jax.random.key(config.seed), epochs=config.epochs,
                                                   progress=options.progress, checkpoint_dir=out / runs.TRAIN_STATE)
        metrics = {"test_accuracy": accuracy, "num_classes": classes}
        run.write_metrics(out, metrics)
    return metrics
