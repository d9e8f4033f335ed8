"""The evaluation classifier: a small MNIST CNN trained once and saved (orbax).

Other experiments load it from ``runs/classifier`` (their ``--classifier`` flag) to
score generated digits, and train it there themselves if it is missing.

    python -m experiments.classifier --out runs/classifier
"""

from __future__ import annotations

import jax

from aejax import classifier
from aejax.experiments import common


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/classifier", epochs=5, latent_dim=None, batch_size=128)
    args = common.parse(parser, argv)
    splits = common.load_data(args)
    with common.output(args) as out:
        _, accuracy = classifier.load_or_train(out, splits, jax.random.key(args.seed), epochs=args.epochs,
                                               progress=not args.no_progress,
                                               checkpoint_dir=out / common.TRAIN_STATE)
        metrics = {"test_accuracy": accuracy}
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
