"""Section 3: the sparse autoencoder (latent 900 = 30x30, more units than pixels).

    aejax run s3_sparse_ae --out runs/s3_sparse_l1                       # the lecture: L1, beta 0.01
    aejax run s3_sparse_ae --preset lecture_kl --out runs/s3_sparse_kl   # the lecture: KL per unit, beta 0.1

Loss BCE + beta * sparsity of the activations ``(sigmoid(|z|) - 0.5) * 2``: the
lecture's L1 form or either KL-Bernoulli form towards a target rate (0.1). Figures:
denoising of 9 noisy test images (std 0.3), per-class mean activation maps (30x30),
activation histograms, the KL / MAE / MSE cost curves around the target. metrics.json:
test BCE / MSE, PSNR of the noisy and the denoised test images, the mean activation
and the share of units whose mean activation is below 0.2.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from aejax import autoencoder, data, evaluation, flags, losses, plots, runs

SHOWN = 9  # noisy test images in the denoising figure
QUIET_UNIT = 0.2  # a unit whose mean activation stays below this counts as sparse


@dataclasses.dataclass(frozen=True)
class Config:
    model: autoencoder.AEConfig = autoencoder.AEConfig(latent_dim=900, sparsity="l1", sparsity_weight=0.01,
                                                       sparsity_target=0.1)
    train: runs.TrainConfig = runs.TrainConfig(epochs=5, batch_size=64)
    test_noise_std: float = flags.field(
        evaluation.LECTURE_NOISE_STD,
        "std of the Gaussian noise on the test images of the denoising metrics and figure (> 0)")

    def __post_init__(self):
        if self.model.sparsity == "none":
            raise ValueError("sparsity must be l1, kl_per_object or kl_per_unit: this experiment trains a sparse AE")
        side = math.isqrt(self.model.latent_dim)
        if side * side != self.model.latent_dim:
            raise ValueError(f"latent_dim must be a perfect square for the activation maps, "
                             f"got {self.model.latent_dim}")
        if not (math.isfinite(self.test_noise_std) and self.test_noise_std > 0):
            raise ValueError(f"test_noise_std must be a finite number > 0, got {self.test_noise_std}")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},
    "lecture_kl": {"sparsity": "kl_per_unit", "sparsity_weight": 0.1},
    # nothing better is known: the lecture's L1 penalty. (KL per unit makes every unit
    # sparse and denoises slightly better, but reconstructs slightly worse.)
    "recommended": {},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "s3_sparse_ae")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    train_set, test_set = data.device_dataset(splits["train"]), data.device_dataset(splits["test"])
    model_config = dataclasses.replace(config.model, image_shape=data.image_shape(splits["train"]))
    model = autoencoder.make_model(model_config)
    train_key, noise_key = jax.random.split(jax.random.key(config.train.seed))
    with run.output() as out:
        state, history = run.fit(model, train_set, train_key, out)
        with run.timer("evaluation"):
            test = evaluation.evaluate(model, state.params, state.batch_stats, test_set)
            clean, noisy_set = evaluation.noisy_test_set(splits["test"], noise_key, config.test_noise_std)
            noisy = np.asarray(noisy_set["image"])
            denoised = evaluation.evaluate(model, state.params, state.batch_stats, noisy_set)["reconstructions"]
            activations = np.asarray(losses.sparsity_activation(test["latents"]))  # (N, latent_dim) in [0, 1)
            metrics = {
                **evaluation.reconstruction_metrics(test),
                "psnr_noisy_db": evaluation.psnr(noisy, clean),
                "psnr_denoised_db": evaluation.psnr(denoised, clean),
                "mean_activation": float(activations.mean()),
                f"share_of_units_mean_below_{QUIET_UNIT}": float((activations.mean(axis=0) < QUIET_UNIT).mean()),
                "train_history": history.epochs,
            }
        with run.timer("figures"):
            plots.plot_digits(noisy[:SHOWN], denoised[:SHOWN], path=out / "denoising.png",
                              titles=["noisy", "sparse AE"])
            plots.plot_class_activation_maps(activations, test["labels"], out / "class_activation_maps.png",
                                             side=math.isqrt(config.model.latent_dim))
            plots.plot_activation_histograms(activations, out / "activation_histograms.png")
            plots.plot_sparsity_costs(out / "sparsity_costs.png", target=config.model.sparsity_target)
        runs.save_state(out, state)
        run.write_metrics(out, metrics, dataclasses.replace(config, model=model_config))
    return metrics
