"""Section 5: the variational autoencoder (BCE + 0.005 KL), latent 2 or 24.

Trains the lecture's VAE (Adam 1e-4, batch 64, 5 epochs) and writes: reconstructions
and denoising of 9 test digits (from the posterior mean), the 7 -> 6 interpolation
(10 images and a 200-frame GIF), the vector arithmetic ``z(1) + z(9 first) - z(9
second)`` beside its inputs and, for latent 2, the scatter of mu by label and a 20x20
grid of images decoded over [-3, 3]^2. metrics.json: test BCE / MSE, denoising PSNR,
test negative ELBO and IWAE NLL in nats, KL per latent dimension.

    python -m experiments.s5_vae --latent-dim 2 --out runs/s5_vae_latent2
    python -m experiments.s5_vae --latent-dim 24 --out runs/s5_vae_latent24
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from aejax import data, evaluation, likelihood, losses, plots, vae
from aejax import train as train_lib
from aejax.experiments import common
from aejax.experiments.s4_interpolation import interpolation_frames

GRID_STEPS = 20


def decode_grid(model: train_lib.Model, state: train_lib.TrainState, limit: float, steps: int = GRID_STEPS,
                label: int | None = None) -> np.ndarray:
    """Images (steps, steps, 28, 28, 1) decoded on a regular grid of [-limit, limit]^2 (see common.decode_on_grid)."""
    return common.decode_on_grid(model, state, (-limit, -limit), (limit, limit), steps, label)


def vector_arithmetic(model: train_lib.Model, state: train_lib.TrainState, split: data.Split) -> np.ndarray:
    """[1, 9 (first), 9 (second), decode(mu(1) + mu(9 first) - mu(9 second))], (4, 28, 28, 1)."""
    one, nine_a, nine_b = (common.first_of_digit(split, d, i) for d, i in ((1, 0), (9, 0), (9, 1)))
    mu = model.encode(state.params, state.batch_stats, jnp.stack([one, nine_a, nine_b]), None)
    result = jax.nn.sigmoid(model.decode(state.params, state.batch_stats, (mu[0] + mu[1] - mu[2])[None], None))
    return np.concatenate([np.stack([one, nine_a, nine_b]), np.asarray(result)])


def add_vae_flags(parser: argparse.ArgumentParser) -> None:
    common.add_likelihood_flags(parser)
    parser.add_argument("--start-digit", type=int, choices=range(10), default=7, help="interpolation start")
    parser.add_argument("--end-digit", type=int, choices=range(10), default=6, help="interpolation end")


def train_and_report(config: vae.VAEConfig, args: argparse.Namespace, extra: dict | None = None) -> dict:
    """Trains the VAE of ``config`` and writes its figures, checkpoint and metrics.json to args.out."""
    splits = common.load_data(args)
    model = vae.make_model(config)
    train_key, noise_key, likelihood_key = jax.random.split(jax.random.key(args.seed), 3)
    test_set = data.device_dataset(splits["test"])
    with common.output(args) as out:
        state, history, seconds = common.fit(model, splits, args, train_key, out)
        test = train_lib.evaluate(model, state.params, state.batch_stats, test_set)
        clean, noisy_set = common.noisy_test_set(splits["test"], noise_key)
        denoised = train_lib.evaluate(model, state.params, state.batch_stats, noisy_set)["reconstructions"]
        mu, log_var = likelihood.posterior_moments(model, state.params, state.batch_stats, test_set)
        kl_per_dim = np.asarray(jnp.mean(losses.gaussian_kl_per_dimension(mu, log_var), axis=0))
        metrics = {
            **common.reconstruction_metrics(test),
            "psnr_noisy_db": evaluation.psnr(np.asarray(noisy_set["image"]), clean),
            "psnr_vae_eval_db": evaluation.psnr(denoised, clean),
            **common.likelihood_metrics(model, state, test_set, likelihood_key, args),
            "test_kl_nats": float(kl_per_dim.sum()),
            "kl_per_dim_nats": kl_per_dim.tolist(),
            "active_dims": int(np.sum(kl_per_dim > 0.01)),  # dims whose posterior moves away from the prior
            **(extra or {}),
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        plots.plot_digits(test["inputs"][:9], test["reconstructions"][:9], path=out / "reconstructions.png",
                          titles=["input", "VAE"])
        plots.plot_digits(np.asarray(noisy_set["image"][:9]), denoised[:9], path=out / "denoising.png",
                          titles=["noisy", "VAE"])
        start, end = (common.first_of_digit(splits["test"], d) for d in (args.start_digit, args.end_digit))
        plots.plot_image_row(interpolation_frames(model, state, start, end, 10), out / "interpolation.png",
                             title=f"{args.start_digit} -> {args.end_digit}, VAE (latent {config.latent_dim})")
        plots.save_gif(interpolation_frames(model, state, start, end, 200), out / "interpolation.gif")
        plots.plot_image_row(vector_arithmetic(model, state, splits["test"]), out / "vector_arithmetic.png",
                             title="1,  9 (first),  9 (second),  decode(z(1) + z(9 first) - z(9 second))")
        if config.latent_dim == 2:
            plots.plot_latent_scatter(mu, test["labels"], out / "latent_scatter.png", title="test posterior means")
            plots.plot_image_grid(decode_grid(model, state, 3.0), out / "latent_grid.png",
                                  title="decoded over [-3, 3]^2 (rows z[0], columns z[1])")
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s5_vae", epochs=5, latent_dim=2)
    parser.add_argument("--kld-weight", type=common.non_negative_float, default=0.005,
                        help="weight of the batch-mean KL next to the pixel-mean BCE (beta / 784)")
    add_vae_flags(parser)
    args = common.parse(parser, argv)
    return train_and_report(vae.VAEConfig(latent_dim=args.latent_dim, kld_weight=args.kld_weight), args)


if __name__ == "__main__":
    common.run_main(main)
