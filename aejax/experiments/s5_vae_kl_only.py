"""Section 5: a VAE trained on the KL term alone (weight 0.1, latent 2, 2 epochs).

With no reconstruction term the encoder maps every digit onto the prior: posterior
means near 0, variances near 1, classes inseparable. Writes histograms of the test
posterior means and variances, their scatter by label, and metrics.json with their
statistics and the accuracy of a logistic-regression probe predicting the digit from
mu (chance is about 0.11; the full VAE's mu gives far more).

    python -m experiments.s5_vae_kl_only --out runs/s5_vae_kl_only
"""

from __future__ import annotations

import jax
import numpy as np

from aejax import data, evaluation, likelihood, plots, vae
from aejax.experiments import common


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s5_vae_kl_only", epochs=2, latent_dim=2)
    parser.add_argument("--kld-weight", type=common.non_negative_float, default=0.1, help="weight of the KL term")
    args = common.parse(parser, argv)
    splits = common.load_data(args)
    config = vae.VAEConfig(latent_dim=args.latent_dim, kld_weight=args.kld_weight, reconstruction_weight=0.0)
    model = vae.make_model(config)
    test_set = data.device_dataset(splits["test"])
    with common.output(args) as out:
        state, history, seconds = common.fit(model, splits, args, jax.random.key(args.seed), out)
        mu, log_var = likelihood.posterior_moments(model, state.params, state.batch_stats, test_set)
        variance = np.exp(log_var)
        labels = splits["test"].labels
        metrics = {
            "mu_mean_abs": float(np.mean(np.abs(mu))),
            "mu_std": float(np.std(mu)),
            "variance_mean": float(np.mean(variance)),
            "variance_std": float(np.std(variance)),
            "probe_accuracy_from_mu": evaluation.probe_accuracy(mu, labels),
            "majority_class_share": float(np.bincount(labels).max() / len(labels)),
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        plots.plot_histograms({"posterior mean mu": mu, "posterior variance": variance}, out / "histograms.png")
        plots.plot_latent_scatter(mu, labels, out / "latent_scatter.png", title="test posterior means, KL-only VAE")
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
