"""Section 1: PCA as the simplest autoencoder (scikit-learn); trains no network.

    aejax run s1_pca --out runs/s1_pca                          # the lecture: PCA(0.90)
    aejax run s1_pca --variance 0.99 --out runs/s1_pca_099      # more components kept

PCA keeping a share of the training images' variance (0.90: 87 components on MNIST),
the test images recoded, noisy test images (x + 0.3 N(0, 1), unclipped) filtered, and
the first two PCA coordinates of the test set as a scatter. Figures: reconstructions
and denoising of 6 random test images, the latent scatter. metrics.json: components
kept, compression ratio, test MSE, PSNR of the noisy and the filtered test images.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from aejax import data, evaluation, flags, pca, plots, runs

SHOWN = 6  # the lecture shows 6 random test digits


@dataclasses.dataclass(frozen=True)
class Config:
    variance: float = flags.field(0.90, "share of the training images' variance PCA keeps, in (0, 1)")
    test_noise_std: float = flags.field(
        evaluation.LECTURE_NOISE_STD, "std of the Gaussian noise added to the test images PCA filters (> 0)")
    seed: int = flags.field(42, "seed of the noise, the shown images and PCA's solver")

    def __post_init__(self):
        if not 0 < self.variance < 1:
            raise ValueError(f"variance must be strictly between 0 and 1, got {self.variance}")
        if not (math.isfinite(self.test_noise_std) and self.test_noise_std > 0):
            raise ValueError(f"test_noise_std must be a finite number > 0, got {self.test_noise_std}")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},
    # nothing better is known for a linear baseline: the lecture's settings
    "recommended": {},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "s1_pca")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    train_images = splits["train"].images / 255.0
    test_images = (splits["test"].images / 255.0).astype(np.float32)  # (N, H, W[, C]) in [0, 1]
    values = math.prod(data.image_shape(splits["test"]))  # per image: 784 for MNIST
    noise_key, pick_key = jax.random.split(jax.random.key(config.seed))
    noisy = np.asarray(data.add_gaussian_noise(noise_key, test_images, config.test_noise_std))
    shown = np.asarray(jax.random.choice(pick_key, len(test_images), (min(SHOWN, len(test_images)),), replace=False))
    with run.output() as out:
        with run.timer("train"):
            model = pca.fit_pca(train_images, config.variance, config.seed)
        with run.timer("evaluation"):
            decoded = pca.recode(model, test_images)
            filtered = pca.recode(model, noisy)
            latents = model.transform(pca.flatten(test_images))
            components = int(model.n_components_)
            metrics = {
                "pca_components": components,
                "compression_ratio": values / components,
                "test_mse": evaluation.mean_squared_error(decoded, test_images),
                "noise_std": config.test_noise_std,
                "psnr_noisy_db": evaluation.psnr(noisy, test_images),
                "psnr_filtered_db": evaluation.psnr(filtered, test_images),
            }
        with run.timer("figures"):
            plots.plot_digits(test_images[shown], decoded[shown], path=out / "reconstructions.png",
                              titles=["test", "PCA"])
            plots.plot_digits(noisy[shown], filtered[shown], path=out / "denoising.png", titles=["noisy", "PCA"])
            # one component (a 1-D code) still gets a scatter: its second coordinate is 0
            scatter = latents[:, :2] if components >= 2 else np.pad(latents, ((0, 0), (0, 1)))
            plots.plot_latent_scatter(scatter, splits["test"].labels, out / "latent_scatter.png",
                                      title="first two PCA components of the test set")
        run.write_metrics(out, metrics)
    return metrics
