"""Section 6: a plain and a conditional MLP autoencoder on the sine-plus-circle toy data.

4000 noisy points (noise std 0.06, drawn from --seed's key), scikit-learn's 75/25
split (random_state 42); each model trained full-batch with Adam, the rate cut by 10
after 50 epochs without test improvement, until it falls below 1e-6 or 5000 epochs.
Writes the lecture's figure (noisy points, both true curves, test reconstructions in
grey) for both models and metrics.json with their test MSE.

    python -m experiments.s6_toy_conditional --out runs/s6_toy_conditional
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from aejax import checkpoint, evaluation, plots, toy
from aejax import train as train_lib
from aejax.experiments import common


CHECKPOINT_EVERY = 500  # full-batch epochs are single steps: checkpoint every 500 of them


def fit_toy(config: toy.ToyConfig, splits: dict, key: jax.Array, checkpoint_dir: pathlib.Path,
            ) -> tuple[train_lib.Model, train_lib.TrainState, int]:
    """Trains one toy model to the lecture's stop rule (resuming from ``checkpoint_dir``); returns it, its state and the epochs run."""
    model = toy.make_model(config, splits["test"])
    state = train_lib.create_train_state(model, key)
    with checkpoint.TrainingCheckpoints(checkpoint_dir) as checkpoints:
        state, history = train_lib.train(model, state, splits["train"], epochs=config.max_epochs,
                                         batch_size=int(splits["train"]["label"].shape[0]), progress=False,
                                         log_epochs=False, should_stop=toy.should_stop(config),
                                         gather=train_lib.take_batch, checkpoints=checkpoints,
                                         checkpoint_every=CHECKPOINT_EVERY)
    return model, state, len(history.epochs)


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s6_toy_conditional", epochs=None, latent_dim=None)
    parser.add_argument("--max-epochs", type=common.positive_int, default=5000, help="epoch cap (full-batch steps)")
    args = common.parse(parser, argv)
    if args.quick:
        args.max_epochs = min(args.max_epochs, 300)
    data_key, *model_keys = jax.random.split(jax.random.key(args.seed), 3)
    toy_data = toy.make_sine_circle(data_key)
    splits = toy.split(toy_data)
    test_points, test_labels = np.asarray(splits["test"]["points"]), splits["test"]["label"]
    metrics, reconstructions = {}, {}
    with common.output(args) as out:
        for name, conditional, key in (("plain", False, model_keys[0]), ("conditional", True, model_keys[1])):
            config = toy.ToyConfig(conditional=conditional, max_epochs=args.max_epochs)
            model, state, epochs = fit_toy(config, splits, key, out / common.TRAIN_STATE / name)
            codes = model.encode(state.params, state.batch_stats, splits["test"]["points"], test_labels)
            restored = np.asarray(model.decode(state.params, state.batch_stats, codes, test_labels))
            reconstructions[f"{name} autoencoder"] = restored
            metrics[f"{name}_test_mse"] = evaluation.mean_squared_error(restored, test_points)
            metrics[f"{name}_epochs"] = epochs
            metrics[f"{name}_final_learning_rate"] = toy.learning_rate(config, state)
        metrics["mse_ratio_plain_over_conditional"] = metrics["plain_test_mse"] / metrics["conditional_test_mse"]
        plots.plot_toy_reconstructions(toy_data.points, toy_data.labels, list(toy_data.curves), reconstructions,
                                       out / "toy_reconstructions.png")
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
