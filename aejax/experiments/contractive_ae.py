"""Extension: the contractive autoencoder (Rifai et al., 2011), the lecture's conv AE plus lambda ||dh/dx||_F^2.

    aejax run contractive_ae --out runs/contractive_ae                          # lambda 1e-3, 1 projection
    aejax run contractive_ae --preset recommended --out runs/contractive_ae_rec # the exact penalty
    aejax run contractive_ae --contraction-weight 0 --out runs/contractive_ae_0 # the plain AE, to compare

The lecture cites the paper in its reading list but trains no contractive AE; its conv
AE (latent 24, BCE, Adam 1e-4, batch 64, 5 epochs) is the base. Figures: reconstructions
of 9 test images, denoising of 9 test images with N(0, 0.3) noise, the histogram of the
encoder's Jacobian norm over test images. metrics.json: test BCE / MSE, the mean
||dh/dx||_F of the eval-mode encoder on test images, the codes' mean standard deviation
(a shrunken code shrinks the Jacobian too, so their ratio is the scale-free contraction)
and the PSNR of the noisy and of the denoised test images.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from aejax import contractive, data, evaluation, flags, plots, runs

SHOWN = 9  # test images in the reconstruction and denoising figures


@dataclasses.dataclass(frozen=True)
class Config:
    model: contractive.ContractiveConfig = contractive.ContractiveConfig(latent_dim=24)
    train: runs.TrainConfig = runs.TrainConfig(epochs=5, batch_size=64)
    test_noise_std: float = flags.field(
        evaluation.LECTURE_NOISE_STD,
        "std of the Gaussian noise on the test images of the denoising metrics and figure (> 0)")
    jacobian_images: int = flags.field(1000, "the Jacobian norms are measured on the first N test images (> 0)")

    def __post_init__(self):
        if not (math.isfinite(self.test_noise_std) and self.test_noise_std > 0):
            raise ValueError(f"test_noise_std must be a finite number > 0, got {self.test_noise_std}")
        if self.jacobian_images <= 0:
            raise ValueError(f"jacobian_images must be a positive integer, got {self.jacobian_images}")


PRESETS: dict[str, dict[str, Any]] = {
    # the lecture trains no contractive AE: its conv AE's settings with the estimated penalty
    "lecture": {},
    # the exact penalty (the paper's): no estimator noise; about 5x a plain AE step on a CPU
    "recommended": {"jacobian_projections": 0},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "contractive_ae")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    train_set, test_set = data.device_dataset(splits["train"]), data.device_dataset(splits["test"])
    model_config = dataclasses.replace(config.model, image_shape=data.image_shape(splits["train"]))
    model = contractive.make_model(model_config)
    train_key, noise_key = jax.random.split(jax.random.key(config.train.seed))
    with run.output() as out:
        state, history = run.fit(model, train_set, train_key, out)
        with run.timer("evaluation"):
            test = evaluation.evaluate(model, state.params, state.batch_stats, test_set)
            clean, noisy_set = evaluation.noisy_test_set(splits["test"], noise_key, config.test_noise_std)
            noisy = np.asarray(noisy_set["image"])
            denoised = evaluation.evaluate(model, state.params, state.batch_stats, noisy_set)["reconstructions"]
            norms = contractive.jacobian_frobenius_norms(
                model, state.params, state.batch_stats, data.device_dataset(splits["test"], config.jacobian_images))
            code_std = float(np.mean(np.std(test["latents"], axis=0)))
            metrics = {
                **evaluation.reconstruction_metrics(test),
                "test_jacobian_frobenius_mean": float(norms.mean()),
                "test_code_std": code_std,
                "test_jacobian_frobenius_over_code_std": float(norms.mean()) / code_std,
                "jacobian_images": len(norms),
                "psnr_noisy_db": evaluation.psnr(noisy, clean),
                "psnr_denoised_db": evaluation.psnr(denoised, clean),
                "train_history": history.epochs,
            }
        with run.timer("figures"):
            plots.plot_digits(test["inputs"][:SHOWN], test["reconstructions"][:SHOWN], path=out / "reconstructions.png",
                              titles=["input", "contractive AE"])
            plots.plot_digits(clean[:SHOWN], noisy[:SHOWN], denoised[:SHOWN], path=out / "denoising.png",
                              titles=["clean", "noisy", "contractive AE"])
            plots.plot_histograms({"||dh/dx||_F per test image (eval mode)": norms}, out / "jacobian_norms.png")
        runs.save_state(out, state)
        run.write_metrics(out, metrics, dataclasses.replace(config, model=model_config))
    return metrics
