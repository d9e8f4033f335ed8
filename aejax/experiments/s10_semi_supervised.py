"""Section 10: the semi-supervised AAE (Makhzani et al. 2015), or its unsupervised clustering variant.

    python -m experiments.s10_semi_supervised --labels 100 --out runs/s10_ssl_100
    python -m experiments.s10_semi_supervised --labels 1000 --out runs/s10_ssl_1000
    python -m experiments.s10_semi_supervised --labels 0 --clusters 16 --out runs/s10_clusters16

``--labels N`` keeps N / 10 labelled training images per class (chosen by
``--label-seed``); every training image is used unlabelled. ``--labels 0`` trains the
clustering variant (``--clusters`` categories, no labels at all) and assigns each
cluster its majority test label. Figures: test error (or clustering error) by epoch;
style transfer (test digits' styles decoded with every category); for clustering, test
digits grouped by cluster. metrics.json: final test error of the label head (or the
clustering error), by epoch, with the epochs, wall time and device.
"""

from __future__ import annotations

import jax
import numpy as np

from aejax import data, plots, semi_supervised
from aejax import train as train_lib
from aejax.experiments import common
from aejax.experiments.s9_disentangled import label_swap


def cluster_examples(split: data.Split, clusters: np.ndarray, num_clusters: int, per_cluster: int = 10) -> np.ndarray:
    """(num_clusters, per_cluster, 28, 28, 1): the first test digits of each cluster (blank where fewer)."""
    grid = np.zeros((num_clusters, per_cluster, 28, 28, 1), np.float32)
    for c in range(num_clusters):
        members = np.flatnonzero(clusters == c)[:per_cluster]
        if len(members):
            grid[c, : len(members)] = np.asarray(data.to_float_nhwc(split.images[members]))
    return grid


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s10_semi_supervised", epochs=50, latent_dim=10,
                                batch_size=100)
    parser.add_argument("--labels", type=int, default=100,
                        help="labelled training images, a multiple of 10 (balanced); 0: unsupervised clustering")
    parser.add_argument("--label-seed", type=int, default=0, help="seed choosing the labelled subset")
    parser.add_argument("--clusters", type=common.positive_int, default=16, help="categories of the clustering variant")
    parser.add_argument("--learning-rate", type=common.positive_float, default=1e-3, help="Adam rate of the autoencoder and supervised phases")
    parser.add_argument("--adversarial-learning-rate", type=common.positive_float, default=1e-4,
                        help="Adam rate of the discriminators and the generator")
    common.add_lr_schedule_flag(parser)
    parser.add_argument("--augment-shift", type=int, default=0,
                        help="max random translation (pixels) of the labelled images; 0: none (the paper)")
    parser.add_argument("--consistency-weight", type=common.non_negative_float, default=0.0,
                        help="weight of the pseudo-label term on confident unlabelled images; 0: none (the paper)")
    parser.add_argument("--confidence-threshold", type=common.positive_float, default=0.95,
                        help="label-head probability above which an unlabelled image gets a pseudo-label (<= 1)")
    parser.add_argument("--categorical-temperature", type=common.non_negative_float, default=0.0,
                        help="> 0: the label prior's samples are relaxed one-hot (Gumbel-softmax) at this "
                             "temperature; 0: exact one-hot (the paper)")
    args = common.parse(parser, argv)
    if args.labels < 0 or args.labels % 10:
        parser.error(f"--labels must be 0 or a positive multiple of 10, got {args.labels}")
    if not 0 <= args.augment_shift <= 13:
        parser.error(f"--augment-shift must be 0..13 pixels, got {args.augment_shift}")
    if args.confidence_threshold > 1:
        parser.error(f"--confidence-threshold must be in (0, 1], got {args.confidence_threshold}")
    if args.consistency_weight > 0 and args.labels == 0:
        parser.error("--consistency-weight needs labels (--labels > 0)")
    splits = common.load_data(args)
    supervised = args.labels > 0
    config = semi_supervised.SemiSupervisedConfig(
        latent_dim=args.latent_dim, num_classes=10 if supervised else args.clusters,
        learning_rate=args.learning_rate, adversarial_learning_rate=args.adversarial_learning_rate,
        semi_supervised=supervised, augment_shift=args.augment_shift,
        consistency_weight=args.consistency_weight, confidence_threshold=args.confidence_threshold,
        categorical_temperature=args.categorical_temperature,
        decay_steps=common.decay_steps(args, splits["train"]))
    labelled = (semi_supervised.balanced_subset(splits["train"].labels, args.labels // 10, jax.random.key(args.label_seed))
                if supervised else None)
    model = semi_supervised.make_model(config)
    test_set = data.device_dataset(splits["test"])
    labels = splits["test"].labels
    name = "test error" if supervised else "clustering error"

    def test_error(state: train_lib.TrainState) -> tuple[float, np.ndarray]:
        predicted = semi_supervised.predict_labels(model, state.params, state.batch_stats, test_set)
        error = float(np.mean(predicted != labels)) if supervised else semi_supervised.clustering_error(predicted, labels)[0]
        return error, predicted

    error_key = "test_error" if supervised else "clustering_error"
    with common.output(args) as out:
        state, history, seconds = common.fit(
            model, splits, args, jax.random.key(args.seed), out,
            dataset=semi_supervised.make_dataset(splits["train"], labelled), gather=semi_supervised.gather,
            on_epoch_end=lambda epoch, state, means: {error_key: test_error(state)[0]})  # kept in the history
        errors = [entry[error_key] for entry in history.epochs]
        error, predicted = test_error(state)
        metrics = {
            "labels": args.labels,
            error_key: error,
            f"{name.replace(' ', '_')}_by_epoch": errors,
            "epochs": args.epochs,
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        if supervised:
            metrics["labelled_indices"] = labelled.tolist()
        else:
            metrics["cluster_to_label"] = semi_supervised.clustering_error(predicted, labels)[1]
            plots.plot_image_grid(cluster_examples(splits["test"], predicted, config.num_classes), out / "clusters.png",
                                  title="the first test digits of each cluster (one row per cluster)",
                                  row_labels=[str(c) for c in range(config.num_classes)])
        plots.plot_metric_by_epoch(100 * np.asarray(errors), out / "error_by_epoch.png", f"{name} (%)")
        styles = model.encode(state.params, state.batch_stats, data.to_float_nhwc(splits["test"].images[:10]))
        swapped = label_swap(model, state, np.asarray(styles), config.num_classes)
        originals = np.asarray(data.to_float_nhwc(splits["test"].images[:10]))[:, None]
        plots.plot_image_grid(np.concatenate([originals, swapped], axis=1), out / "style_transfer.png",
                              title="test digit, then its style decoded with each category",
                              col_labels=["input"] + [str(k) for k in range(config.num_classes)])
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
