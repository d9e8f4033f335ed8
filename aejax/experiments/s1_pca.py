"""Section 1: PCA as the simplest autoencoder (scikit-learn).

PCA(0.90) on the training images (87 components on MNIST), test images recoded,
noisy test images (x + 0.3 N(0, 1), unclipped) filtered, and the first two PCA
coordinates of the test set as a scatter.

    python -m experiments.s1_pca --out runs/s1_pca
"""

from __future__ import annotations

import jax
import numpy as np

from aejax import data, evaluation, pca, plots
from aejax.experiments import common

SHOWN = 6  # the lecture shows 6 random test digits


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s1_pca", epochs=None, latent_dim=None)
    parser.add_argument("--variance", type=common.open_fraction, default=0.90, help="share of variance PCA keeps")
    args = common.parse(parser, argv)
    if not 0 < args.variance < 1:
        parser.error(f"--variance must be in (0, 1), got {args.variance}")
    splits = common.load_data(args)
    train_images = splits["train"].images / 255.0
    test_images = (splits["test"].images / 255.0).astype(np.float32)
    noise_key, pick_key = jax.random.split(jax.random.key(args.seed))
    noisy = np.asarray(data.add_gaussian_noise(noise_key, test_images, common.NOISE_STD))
    shown = np.asarray(jax.random.choice(pick_key, len(test_images), (SHOWN,), replace=False))
    with common.output(args) as out:
        model = pca.fit_pca(train_images, args.variance, args.seed)
        decoded = pca.recode(model, test_images)
        filtered = pca.recode(model, noisy)
        latents = model.transform(pca.flatten(test_images))
        metrics = {
            "pca_components": int(model.n_components_),
            "compression_ratio": 784 / int(model.n_components_),
            "test_mse": evaluation.mean_squared_error(decoded, test_images),
            "noise_std": common.NOISE_STD,
            "psnr_noisy_db": evaluation.psnr(noisy, test_images),
            "psnr_filtered_db": evaluation.psnr(filtered, test_images),
        }
        plots.plot_digits(test_images[shown], decoded[shown], path=out / "reconstructions.png",
                          titles=["test", "PCA"])
        plots.plot_digits(noisy[shown], filtered[shown], path=out / "denoising.png", titles=["noisy", "PCA"])
        plots.plot_latent_scatter(latents[:, :2], splits["test"].labels, out / "latent_scatter.png",
                                  title="first two PCA components of the test set")
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
