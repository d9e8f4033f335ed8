"""Section 5: a VAE trained on the KL term alone (weight 0.1, latent 2, 2 epochs).

    aejax run s5_vae_kl_only --out runs/s5_vae_kl_only

With no reconstruction term the encoder maps every image onto the prior: posterior
means near 0, variances near 1, classes inseparable. Figures: histograms of the test
posterior means and variances, their scatter by label. metrics.json: their statistics
and label probes on mu (``probes.label_probes``: fitted on the training images' mu,
scored on all test mu), each beside the same probe fitted on permuted labels and the
share of the commonest class (what guessing gets; the full VAE's mu gives far more).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from aejax import data, likelihood, plots, probes, runs, vae


@dataclasses.dataclass(frozen=True)
class Config:
    model: vae.VAEConfig = vae.VAEConfig(latent_dim=2, kld_weight=0.1, reconstruction_weight=0.0)
    train: runs.TrainConfig = runs.TrainConfig(epochs=2, batch_size=64)

    def __post_init__(self):
        if self.train.lr_schedule != "constant":
            raise ValueError("lr_schedule must be constant: the VAE's Adam has no learning-rate schedule")
        if self.model.reconstruction_weight != 0:
            raise ValueError(f"reconstruction_weight must be 0 in the KL-only run, got "
                             f"{self.model.reconstruction_weight} (s5_vae trains with the BCE)")
        if self.model.kld_weight <= 0:
            raise ValueError(f"kld_weight must be > 0: the KL term is the whole loss, got {self.model.kld_weight}")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},
    # a demonstration of collapse onto the prior, not a recipe: nothing to improve on
    "recommended": {},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "s5_vae_kl_only")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    model_config = dataclasses.replace(config.model, image_shape=data.image_shape(splits["train"]))
    model = vae.make_model(model_config)
    train_set, test_set = data.device_dataset(splits["train"]), data.device_dataset(splits["test"])
    labels = splits["test"].labels
    with run.output() as out:
        state, history = run.fit(model, train_set, jax.random.key(config.train.seed), out)
        with run.timer("evaluation"):
            mu, log_var = likelihood.posterior_moments(model, state.params, state.batch_stats, test_set)
            train_mu, _ = likelihood.posterior_moments(model, state.params, state.batch_stats, train_set)
            variance = np.exp(log_var)
            metrics = {
                "mu_mean_abs": float(np.mean(np.abs(mu))),
                "mu_std": float(np.std(mu)),
                "variance_mean": float(np.mean(variance)),
                "variance_std": float(np.std(variance)),
                # fitted on the training images' mu, scored on all test mu, beside chance as the probe sees it
                "probe_from_mu": probes.label_probes(train_mu, splits["train"].labels, mu, labels),
                "train_history": history.epochs,
            }
        with run.timer("figures"):
            plots.plot_histograms({"posterior mean mu": mu, "posterior variance": variance}, out / "histograms.png")
            plots.plot_latent_scatter(mu, labels, out / "latent_scatter.png", title="test posterior means, KL-only VAE")
        runs.save_state(out, state)
        run.write_metrics(out, metrics, dataclasses.replace(config, model=model_config))
    return metrics
