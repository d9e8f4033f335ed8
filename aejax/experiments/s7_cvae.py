"""Section 7: the conditional VAE (decoder reads concat(z, one_hot(label))), latent 2.

Trains the lecture's CVAE (Adam 1e-2, batch 64, 5 epochs, BCE + 0.005 KL) and writes:
posterior means of all test digits, of the 4s and of the 9s; 20x20 grids decoded over
[-2, 2]^2 with label 4 and with label 9; style transfer (the second 2 of the first test
batch, 10 posterior samples decoded as 5s). metrics.json: test negative ELBO and IWAE
NLL (nats) and, scored by the evaluation classifier, generation accuracy (prior
samples decoded with label y, classified as y; per label and overall) and style-
transfer accuracy (test digits' posterior samples decoded with every label).

    python -m experiments.s7_cvae --out runs/s7_cvae
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aejax import classifier, data, likelihood, plots, vae
from aejax import train as train_lib
from aejax.experiments import common
from aejax.experiments.s5_vae import add_vae_flags, decode_grid


def decode_with_labels(model: train_lib.Model, state: train_lib.TrainState, z: jax.Array, labels: jax.Array,
                       batch_size: int = 1000) -> np.ndarray:
    """sigmoid(decode(z (N, D), labels (N,))) in batches: (N, 28, 28, 1)."""
    run = jax.jit(lambda p, s, z, y: jax.nn.sigmoid(model.decode(p, s, z, y)))
    return np.concatenate([np.asarray(run(state.params, state.batch_stats, z[i:i + batch_size], labels[i:i + batch_size]))
                           for i in range(0, z.shape[0], batch_size)])


def generation_accuracy(model, state, classifier_params, key, per_label: int, latent_dim: int) -> dict:
    """Prior samples decoded with each label, scored by the classifier."""
    labels = jnp.repeat(jnp.arange(10, dtype=jnp.int32), per_label)
    z = jax.random.normal(key, (labels.shape[0], latent_dim))
    images = decode_with_labels(model, state, z, labels)
    return classifier.accuracy_by_label(classifier.predict(classifier_params, images), np.asarray(labels))


def style_transfer_accuracy(model, state, classifier_params, key, test_set, images: int) -> dict:
    """One posterior sample per test image, decoded with each of the 10 labels, scored by the classifier."""
    subset = data.gather_batch(test_set, jnp.arange(images))
    mu, log_var = model.posterior(state.params, state.batch_stats, subset["image"], subset["label"])
    z = vae.reparametrize(key, mu, log_var)
    labels = jnp.tile(jnp.arange(10, dtype=jnp.int32), images)
    decoded = decode_with_labels(model, state, jnp.repeat(z, 10, axis=0), labels)
    return classifier.accuracy_by_label(classifier.predict(classifier_params, decoded), np.asarray(labels))


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s7_cvae", epochs=5, latent_dim=2)
    parser.add_argument("--learning-rate", type=common.positive_float, default=1e-2, help="Adam learning rate (the notebook's 1e-2)")
    parser.add_argument("--kld-weight", type=common.non_negative_float, default=0.005, help="weight of the KL term")
    parser.add_argument("--samples-per-label", type=common.positive_int, default=1000,
                        help="prior samples decoded per label for the generation accuracy")
    parser.add_argument("--transfer-images", type=common.positive_int, default=1000,
                        help="test images whose style is decoded with every label")
    add_vae_flags(parser)
    common.add_classifier_flag(parser)
    args = common.parse(parser, argv)
    if args.quick:
        args.samples_per_label, args.transfer_images = min(args.samples_per_label, 50), min(args.transfer_images, 50)
    splits = common.load_data(args)
    config = vae.VAEConfig(latent_dim=args.latent_dim, learning_rate=args.learning_rate,
                           kld_weight=args.kld_weight, num_classes=10)
    model = vae.make_model(config)
    keys = jax.random.split(jax.random.key(args.seed), 6)
    test_set = data.device_dataset(splits["test"])
    classifier_params, classifier_accuracy = common.load_classifier(args, splits, keys[0])
    with common.output(args) as out:
        state, history, seconds = common.fit(model, splits, args, keys[1], out)
        mu, _ = likelihood.posterior_moments(model, state.params, state.batch_stats, test_set)
        labels = splits["test"].labels
        # style transfer as the lecture: the second 2 of the first batch, 10 samples decoded as 5s
        two = common.first_of_digit(splits["test"], 2, index=1)
        two_mu, two_log_var = model.posterior(state.params, state.batch_stats, two[None], None)
        z = vae.reparametrize(keys[2], jnp.repeat(two_mu, 10, 0), jnp.repeat(two_log_var, 10, 0))
        fives = decode_with_labels(model, state, z, jnp.full((10,), 5, jnp.int32))
        transfer_images = min(args.transfer_images, len(labels))
        metrics = {
            **common.likelihood_metrics(model, state, test_set, keys[3], args),
            "classifier_test_accuracy": classifier_accuracy,
            "generation_accuracy": generation_accuracy(model, state, classifier_params, keys[4],
                                                       args.samples_per_label, args.latent_dim),
            "style_transfer_accuracy": style_transfer_accuracy(model, state, classifier_params, keys[5],
                                                               test_set, transfer_images),
            "figure_fives_classified_as_5": float(np.mean(classifier.predict(classifier_params, fives) == 5)),
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        plots.plot_latent_scatter(mu, labels, out / "latent_all.png", title="test posterior means, all digits")
        for digit in (4, 9):
            plots.plot_latent_scatter(mu[labels == digit], None, out / f"latent_{digit}.png",
                                      title=f"test posterior means of the {digit}s")
            plots.plot_image_grid(decode_grid(model, state, 2.0, label=digit), out / f"grid_label{digit}.png",
                                  title=f"label {digit} decoded over [-2, 2]^2 (rows z[0], columns z[1])")
        plots.plot_image_row(np.concatenate([two[None], fives]), out / "style_transfer.png",
                             title="a test 2, then 10 samples of its posterior decoded as 5")
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
