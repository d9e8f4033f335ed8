"""Section 2: the convolutional autoencoder, its latent space, and denoising.

    aejax run s2_conv_ae --out runs/s2_latent24                                # the lecture, latent 24
    aejax run s2_conv_ae --preset lecture_latent2 --out runs/s2_latent2        # the lecture, latent 2
    aejax run s2_conv_ae --preset lecture_denoising --out runs/s2_denoising    # the denoising AE

Trains the lecture's conv AE (BCE, Adam 1e-4, batch 64, 5 epochs); the denoising AE
sees noisy training inputs (std 0.3) and clean targets. Figures: reconstructions of 9
test images, the latent scatter (first two coordinates), the denoising figure (noisy
test images, std 0.3, and the AE's output). metrics.json: test BCE / MSE, PCA's test
MSE at as many components as the latent size, and the PSNR against the clean test
images of the noisy input, of the AE in eval mode, of the AE with batch statistics in
batches of 64 (as the notebook runs it) and of PCA(0.90).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from aejax import autoencoder, data, evaluation, flags, pca, plots, runs
from aejax import train as train_lib

SHOWN = 9  # test images in the reconstruction and denoising figures
NOTEBOOK_EVAL_BATCH = 64  # the notebook denoises in train mode, in batches of 64
PCA_VARIANCE = 0.90  # the PCA denoising baseline of section 1


@dataclasses.dataclass(frozen=True)
class Config:
    model: autoencoder.AEConfig = autoencoder.AEConfig(latent_dim=24)
    train: runs.TrainConfig = runs.TrainConfig(epochs=5, batch_size=64)
    test_noise_std: float = flags.field(
        evaluation.LECTURE_NOISE_STD,
        "std of the Gaussian noise on the test images of the denoising metrics and figure (> 0)")

    def __post_init__(self):
        if not (math.isfinite(self.test_noise_std) and self.test_noise_std > 0):
            raise ValueError(f"test_noise_std must be a finite number > 0, got {self.test_noise_std}")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},
    "lecture_latent2": {"latent_dim": 2},
    "lecture_denoising": {"input_noise_std": evaluation.LECTURE_NOISE_STD},
    # nothing better is known for the plain conv AE: the lecture's settings (latent 24)
    "recommended": {},
}


def denoising_metrics(model: train_lib.Model, state: train_lib.TrainState, splits: dict[str, data.Split],
                      key: jax.Array, noise_std: float) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """PSNR against the clean test images of the noisy ones, the AE's output (eval mode and
    batch statistics) and PCA(0.90)'s; returns them and the noisy and denoised images (N, H, W, C)."""
    clean, noisy_set = evaluation.noisy_test_set(splits["test"], key, noise_std)
    ae_eval = evaluation.evaluate(model, state.params, state.batch_stats, noisy_set)
    ae_batch = evaluation.evaluate(model, state.params, state.batch_stats, noisy_set, batch_size=NOTEBOOK_EVAL_BATCH,
                                   batch_statistics=True)
    baseline = pca.fit_pca(splits["train"].images / 255.0, PCA_VARIANCE)
    noisy = np.asarray(noisy_set["image"])
    metrics = {
        "noise_std": noise_std,
        "psnr_noisy_db": evaluation.psnr(noisy, clean),
        "psnr_ae_eval_db": evaluation.psnr(ae_eval["reconstructions"], clean),
        "psnr_ae_batch_stats_db": evaluation.psnr(ae_batch["reconstructions"], clean),
        "psnr_pca90_db": evaluation.psnr(pca.recode(baseline, noisy), clean),
        "pca90_components": int(baseline.n_components_),
    }
    return metrics, {"noisy": noisy, "denoised": ae_eval["reconstructions"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "s2_conv_ae")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    train_set, test_set = data.device_dataset(splits["train"]), data.device_dataset(splits["test"])
    latent_dim = config.model.latent_dim
    model_config = dataclasses.replace(config.model, image_shape=data.image_shape(splits["train"]))
    model = autoencoder.make_model(model_config)
    train_key, noise_key = jax.random.split(jax.random.key(config.train.seed))
    with run.output() as out:
        state, history = run.fit(model, train_set, train_key, out)
        with run.timer("evaluation"):
            test = evaluation.evaluate(model, state.params, state.batch_stats, test_set)
            denoise, denoise_images = denoising_metrics(model, state, splits, noise_key, config.test_noise_std)
            metrics = {**evaluation.reconstruction_metrics(test)}
            # PCA with as many components as the code has units, where the data allow that many
            if latent_dim <= min(len(splits["train"].labels), math.prod(model_config.image_shape)):
                pca_k = pca.fit_pca(splits["train"].images / 255.0, latent_dim)
                metrics[f"pca{latent_dim}_test_mse"] = evaluation.mean_squared_error(
                    pca.recode(pca_k, test["inputs"]), test["inputs"])
            metrics.update({
                **denoise,
                "train_history": history.epochs,
                # compiling apart: the steady training throughput
                "train_images_per_second": config.train.epochs * len(splits["train"].labels)
                / (history.seconds - history.compile_seconds),
            })
        with run.timer("figures"):
            plots.plot_digits(test["inputs"][:SHOWN], test["reconstructions"][:SHOWN], path=out / "reconstructions.png",
                              titles=["input", "AE"])
            codes = np.pad(test["latents"], ((0, 0), (0, max(0, 2 - latent_dim))))  # a 1-D code: z[1] = 0
            plots.plot_latent_scatter(codes, test["labels"], out / "latent_scatter.png",
                                      title=f"test latents (first 2 of {latent_dim} dims)")
            plots.plot_digits(denoise_images["noisy"][:SHOWN], denoise_images["denoised"][:SHOWN],
                              path=out / "denoising.png", titles=["noisy", "AE"])
        runs.save_state(out, state)
        run.write_metrics(out, metrics, dataclasses.replace(config, model=model_config))
    return metrics
