"""Section 4: interpolating between two digits with a plain autoencoder.

Trains the conv AE (latent 24, Adam 1e-4 with PyTorch-style weight decay 1e-5), encodes
the first 7 and the first 6 of the first test batch (64 images), and decodes the
straight line between their codes: 10 points as a row and 200 as a looping GIF
(x10 upscaled, 40 ms a frame). A plain AE fades one digit into the other.

    python -m experiments.s4_interpolation --out runs/s4_interpolation
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aejax import autoencoder, data, evaluation, plots
from aejax import train as train_lib
from aejax.experiments import common

FIRST_BATCH = 64


def interpolation_frames(model: train_lib.Model, state: train_lib.TrainState, start: np.ndarray, end: np.ndarray,
                         steps: int) -> np.ndarray:
    """Decodes ``steps`` points between the codes of two images (28, 28, 1): (steps, 28, 28, 1) in [0, 1]."""
    codes = model.encode(state.params, state.batch_stats, jnp.stack([start, end]), None)
    path = jnp.asarray(evaluation.interpolate(codes[0], codes[1], steps), jnp.float32)
    return np.asarray(jax.nn.sigmoid(model.decode(state.params, state.batch_stats, path, None)))


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s4_interpolation", epochs=5, latent_dim=24)
    parser.add_argument("--weight-decay", type=common.non_negative_float, default=1e-5,
                        help="PyTorch-style (coupled L2) Adam weight decay")
    parser.add_argument("--start-digit", type=int, choices=range(10), default=7, help="digit to start from")
    parser.add_argument("--end-digit", type=int, choices=range(10), default=6, help="digit to end at")
    parser.add_argument("--gif-frames", type=common.positive_int, default=200, help="frames of the GIF")
    args = common.parse(parser, argv)
    splits = common.load_data(args)
    images = np.asarray(data.to_float_nhwc(splits["test"].images[:FIRST_BATCH]))
    labels = splits["test"].labels[:FIRST_BATCH]
    picks = {}
    for digit in (args.start_digit, args.end_digit):
        found = np.flatnonzero(labels == digit)
        if not len(found):
            raise ValueError(f"no test image of digit {digit} among the first {len(labels)}")
        picks[digit] = images[found[0]]
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=args.latent_dim, weight_decay=args.weight_decay))
    with common.output(args) as out:
        state, history, seconds = common.fit(model, splits, args, jax.random.key(args.seed), out)
        test = train_lib.evaluate(model, state.params, state.batch_stats, data.device_dataset(splits["test"]))
        start, end = picks[args.start_digit], picks[args.end_digit]
        row = interpolation_frames(model, state, start, end, 10)
        frames = interpolation_frames(model, state, start, end, args.gif_frames)
        plots.plot_image_row(row, out / "interpolation.png",
                             title=f"{args.start_digit} -> {args.end_digit}, plain autoencoder")
        plots.save_gif(frames, out / "interpolation.gif")
        # How far the path strays from both ends: a fade keeps this small, no new shapes appear.
        endpoint_distance = np.minimum(np.abs(frames - frames[:1]).mean(axis=(1, 2, 3)),
                                       np.abs(frames - frames[-1:]).mean(axis=(1, 2, 3)))
        metrics = {
            **common.reconstruction_metrics(test),
            "interpolation_max_distance_from_ends": float(endpoint_distance.max()),
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
