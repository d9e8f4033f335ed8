"""Section 2: the convolutional autoencoder, its latent space, and denoising.

Trains the lecture's conv AE (BCE, Adam 1e-4, batch 64), then writes: reconstructions
of 9 test digits, the latent scatter (first two coordinates), the denoising figure
(first 64 test images with N(0, 0.3) noise), and metrics.json with test BCE / MSE,
PCA's MSE at the same number of components, and the PSNR of noisy input, the AE in
eval mode, the AE with batch statistics (as the notebook runs it) and PCA(0.90).
``--train-noise-std 0.3`` trains the denoising AE instead (noisy inputs, clean targets).

    python -m experiments.s2_conv_ae --latent-dim 2 --out runs/s2_latent2
    python -m experiments.s2_conv_ae --latent-dim 24 --out runs/s2_latent24
    python -m experiments.s2_conv_ae --latent-dim 24 --train-noise-std 0.3 --out runs/s2_denoising
"""

from __future__ import annotations

import jax
import numpy as np

from aejax import autoencoder, data, evaluation, pca, plots
from aejax import train as train_lib
from aejax.experiments import common



def denoising_metrics(model, state, splits, key) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """PSNR against the clean test images: noisy input, AE (eval / batch stats), PCA(0.90)."""
    clean_np, noisy_set = common.noisy_test_set(splits["test"], key)
    ae_eval = train_lib.evaluate(model, state.params, state.batch_stats, noisy_set)
    ae_batch = train_lib.evaluate(model, state.params, state.batch_stats, noisy_set, batch_size=64,
                                  batch_statistics=True)
    pca90 = pca.fit_pca(splits["train"].images / 255.0, 0.90)
    noisy_np = np.asarray(noisy_set["image"])
    pca_denoised = pca.recode(pca90, noisy_np)
    metrics = {
        "noise_std": common.NOISE_STD,
        "psnr_noisy_db": evaluation.psnr(noisy_np, clean_np),
        "psnr_ae_eval_db": evaluation.psnr(ae_eval["reconstructions"], clean_np),
        "psnr_ae_batch_stats_db": evaluation.psnr(ae_batch["reconstructions"], clean_np),
        "psnr_pca90_db": evaluation.psnr(pca_denoised, clean_np),
        "pca90_components": int(pca90.n_components_),
    }
    return metrics, {"noisy": noisy_np, "denoised": ae_eval["reconstructions"]}


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s2_conv_ae", epochs=5, latent_dim=24)
    parser.add_argument("--train-noise-std", type=common.non_negative_float, default=0.0,
                        help="std of Gaussian noise on training inputs (0: the lecture's plain AE)")
    args = common.parse(parser, argv)
    splits = common.load_data(args)
    config = autoencoder.AEConfig(latent_dim=args.latent_dim, input_noise_std=args.train_noise_std)
    model = autoencoder.make_model(config)
    train_key, noise_key = jax.random.split(jax.random.key(args.seed))
    with common.output(args) as out:
        state, history, seconds = common.fit(model, splits, args, train_key, out)
        test = train_lib.evaluate(model, state.params, state.batch_stats, data.device_dataset(splits["test"]))
        pca_k = pca.fit_pca(splits["train"].images / 255.0, args.latent_dim)
        denoise, denoise_images = denoising_metrics(model, state, splits, noise_key)
        metrics = {
            **common.reconstruction_metrics(test),
            f"pca{args.latent_dim}_test_mse": evaluation.mean_squared_error(pca.recode(pca_k, test["inputs"]), test["inputs"]),
            **denoise,
            "train_history": history.epochs,
            "train_seconds": seconds,
            "train_images_per_second": args.epochs * len(splits["train"].labels) / seconds,
        }
        plots.plot_digits(test["inputs"][:9], test["reconstructions"][:9], path=out / "reconstructions.png",
                          titles=["input", "AE"])
        plots.plot_latent_scatter(test["latents"], test["labels"], out / "latent_scatter.png",
                                  title=f"test latents (first 2 of {args.latent_dim} dims)")
        plots.plot_digits(denoise_images["noisy"][:9], denoise_images["denoised"][:9],
                          path=out / "denoising.png", titles=["noisy", "AE"])
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
