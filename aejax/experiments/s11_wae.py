"""Beyond the lecture: the Wasserstein autoencoder with an MMD penalty (IMQ kernels).

Trains a WAE-MMD (the lecture's encoder and decoder, latent 8, Adam 1e-3, batch 64) and
writes reconstructions, 100 images decoded from prior samples, and metrics.json with
test BCE / MSE, the MMD between test codes and prior samples, and for reference the
MMD between two independent prior samples of the same size (what a perfect match gives).

    python -m experiments.s11_wae --out runs/s11_wae
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aejax import data, losses, plots, wae
from aejax import train as train_lib
from aejax.experiments import common

MMD_SAMPLES = 2000


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s11_wae", epochs=5, latent_dim=8)
    parser.add_argument("--mmd-weight", type=common.non_negative_float, default=10 / 784,
                        help="weight of the MMD next to the pixel-mean BCE (the paper's lambda = 10 per image)")
    parser.add_argument("--learning-rate", type=common.positive_float, default=1e-3, help="Adam learning rate")
    args = common.parse(parser, argv)
    splits = common.load_data(args)
    model = wae.make_model(wae.WAEConfig(latent_dim=args.latent_dim, learning_rate=args.learning_rate,
                                         mmd_weight=args.mmd_weight))
    train_key, prior_key, reference_key, sample_key = jax.random.split(jax.random.key(args.seed), 4)
    with common.output(args) as out:
        state, history, seconds = common.fit(model, splits, args, train_key, out)
        test = train_lib.evaluate(model, state.params, state.batch_stats, data.device_dataset(splits["test"]))
        codes = jnp.asarray(test["latents"][:MMD_SAMPLES])
        prior = jax.random.normal(prior_key, codes.shape)
        metrics = {
            **common.reconstruction_metrics(test),
            "test_mmd_codes_vs_prior": float(losses.mmd_imq(codes, prior)),
            "reference_mmd_prior_vs_prior": float(losses.mmd_imq(jax.random.normal(reference_key, codes.shape), prior)),
            "mmd_samples": int(codes.shape[0]),
            "code_mean": np.asarray(codes.mean(0)).tolist(),
            "code_std": np.asarray(codes.std(0)).tolist(),
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        samples = jax.nn.sigmoid(model.decode(state.params, state.batch_stats,
                                              jax.random.normal(sample_key, (100, args.latent_dim))))
        plots.plot_digits(test["inputs"][:9], test["reconstructions"][:9], path=out / "reconstructions.png",
                          titles=["input", "WAE"])
        plots.plot_image_grid(np.asarray(samples).reshape(10, 10, 28, 28, 1), out / "prior_samples.png",
                              title="decoded prior samples z ~ N(0, I)")
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
