"""Section 3: the sparse autoencoder (latent 900 = 30x30, more units than pixels).

Loss BCE + beta * sparsity of the activations ``(sigmoid(|z|) - 0.5) * 2``: the
lecture's L1 form (beta 0.01) or either KL-Bernoulli form with a target rate. Writes
the denoising figure, per-class mean activation maps, activation histograms, the
KL/MAE/MSE cost curve and metrics.json (test BCE / MSE, PSNR, mean activation).

    python -m experiments.s3_sparse_ae --out runs/s3_sparse_l1
    python -m experiments.s3_sparse_ae --sparsity kl_per_unit --beta 0.1 --out runs/s3_sparse_kl
"""

from __future__ import annotations

import math

import jax
import numpy as np

from aejax import autoencoder, data, evaluation, losses, plots
from aejax import train as train_lib
from aejax.experiments import common



def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s3_sparse_ae", epochs=5, latent_dim=900)
    parser.add_argument("--sparsity", choices=[c for c in autoencoder.SPARSITY_CHOICES if c != "none"], default="l1",
                        help="sparsity penalty")
    parser.add_argument("--beta", type=common.non_negative_float, default=0.01, help="weight of the sparsity penalty")
    parser.add_argument("--target", type=common.open_fraction, default=0.1, help="target activation rate of the KL penalties")
    args = common.parse(parser, argv)
    side = math.isqrt(args.latent_dim)
    if side * side != args.latent_dim:
        parser.error(f"--latent-dim must be a perfect square for the activation maps, got {args.latent_dim}")
    if not 0 < args.target < 1:
        parser.error(f"--target must be in (0, 1), got {args.target}")
    splits = common.load_data(args)
    config = autoencoder.AEConfig(latent_dim=args.latent_dim, sparsity=args.sparsity, sparsity_weight=args.beta,
                                  sparsity_target=args.target)
    model = autoencoder.make_model(config)
    train_key, noise_key = jax.random.split(jax.random.key(args.seed))
    with common.output(args) as out:
        state, history, seconds = common.fit(model, splits, args, train_key, out)
        test = train_lib.evaluate(model, state.params, state.batch_stats, data.device_dataset(splits["test"]))
        clean, noisy_set = common.noisy_test_set(splits["test"], noise_key)
        noisy = np.asarray(noisy_set["image"])
        denoised = train_lib.evaluate(model, state.params, state.batch_stats, noisy_set)["reconstructions"]
        activations = np.asarray(losses.sparsity_activation(test["latents"]))
        metrics = {
            **common.reconstruction_metrics(test),
            "psnr_noisy_db": evaluation.psnr(noisy, clean),
            "psnr_denoised_db": evaluation.psnr(denoised, clean),
            "mean_activation": float(activations.mean()),
            "share_of_units_mean_below_0.2": float((activations.mean(axis=0) < 0.2).mean()),
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        plots.plot_digits(noisy[:9], denoised[:9], path=out / "denoising.png", titles=["noisy", "sparse AE"])
        plots.plot_class_activation_maps(activations, test["labels"], out / "class_activation_maps.png", side=side)
        plots.plot_activation_histograms(activations, out / "activation_histograms.png")
        plots.plot_sparsity_costs(out / "sparsity_costs.png", target=args.target)
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
