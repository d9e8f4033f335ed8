"""Section 10: the semi-supervised AAE (Makhzani et al. 2015), or its unsupervised clustering variant.

    aejax run s10_semi_supervised --labels 100 --out runs/s10_ssl_100                    # the paper's phases
    aejax run s10_semi_supervised --labels 1000 --out runs/s10_ssl_1000
    aejax run s10_semi_supervised --preset recommended --labels 100 --out runs/s10_ssl_100_rec
    aejax run s10_semi_supervised --preset clustering --out runs/s10_clusters16           # no labels
    aejax run s10_semi_supervised --preset recommended_clustering --out runs/s10_clusters16_rec

``--labels N`` keeps N labelled training images, N / C of each of the data's C classes
(chosen by ``--label-seed``; N must be a multiple of C); every training image is also
used unlabelled. ``--labels 0`` trains the clustering variant (``--clusters``
categories, no labels at all), scored by the paper's protocol (``aejax.clustering``):
each cluster is labelled from the training images (the one it is most confident about;
also the training majority), the error is measured on all test images.

With ``--validation`` the error is followed epoch by epoch on the validation split and
the test set is read once, at the end; otherwise (the lecture's protocol) on the test set.
Figures: ``error_by_epoch.png``; ``style_transfer.png`` (test images' styles decoded
with every category); for clustering, ``clusters.png`` (test images grouped by
cluster). metrics.json: the final test error of the label head (or the clustering
report), the error by epoch on the followed split, under ``recomputed_bn`` the final
errors again with the encoder's BatchNorm statistics recomputed for its final weights, the
labelled training indices; with
labels, how well the style is separated from the label (``aejax.style_evaluation``):
``style_transfer_accuracy`` (the first ``--transfer-images`` test styles decoded with every
class, scored by the evaluation classifier read from ``--classifier``, or trained on the
whole data set and saved there) and ``label_leak`` (fair probes reading the label from
the styles; ``validation_label_leak`` the same on the validation split).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import numpy as np

from aejax import clustering, data, evaluation, flags, modules, plots, probes, runs, semi_supervised, style_evaluation
from aejax import train as train_lib

FIGURE_ROWS = 10  # test images in the style-transfer figure
CLUSTER_EXAMPLES = 10  # test images per cluster in the clusters figure
MONITOR_TRAIN_IMAGES = 10_000  # training images that label the clusters while an epoch is followed


@dataclasses.dataclass(frozen=True)
class Config:
    model: semi_supervised.SemiSupervisedConfig = semi_supervised.SemiSupervisedConfig()
    train: runs.TrainConfig = runs.TrainConfig(epochs=50, batch_size=100)
    labels: int = flags.field(100, "labelled training images, balanced over the classes (a multiple of their "
                                   "number); 0: unsupervised clustering")
    label_seed: int = flags.field(0, "seed choosing the labelled subset")
    clusters: int = flags.field(16, "categories of the clustering variant (--labels 0)")
    transfer_images: int = flags.field(
        1000, "test images whose style is decoded with every class and scored (with labels)")
    classifier: pathlib.Path = runs.classifier_folder_field()

    def __post_init__(self):
        if self.labels < 0:
            raise ValueError(f"labels must be 0 (clustering) or positive, got {self.labels}")
        if self.clusters < 2:
            raise ValueError(f"clusters must be at least 2, got {self.clusters}")
        if self.transfer_images <= 0:
            raise ValueError(f"transfer_images must be a positive integer, got {self.transfer_images}")
        if self.labels == 0 and self.model.consistency_weight > 0:
            raise ValueError("consistency_weight needs labels (--labels > 0)")


PRESETS: dict[str, dict[str, Any]] = {
    "lecture": {},  # the paper's four phases alone
    # beyond the paper: shifted labelled images, pseudo-labels on confident unlabelled
    # ones, cosine-decayed rates; under the validation protocol
    "recommended": {"lr_schedule": "cosine", "augment_shift": 2, "consistency_weight": 1.0, "validation": True},
    # relaxed one-hot prior samples keep the label discriminator from winning outright
    "clustering": {"labels": 0, "categorical_temperature": 0.3, "validation": True},
    # chosen on validation: the label head's information terms (balance, confidence, shift
    # invariance) in a phase of their own at the autoencoder's rate
    "recommended_clustering": {"labels": 0, "categorical_temperature": 0.3, "validation": True,
                               "balance_weight": 1.0, "confidence_weight": 0.5, "invariance_weight": 1.0,
                               "augment_shift": 2, "label_terms_rate": 1e-3},
}


def derive_model_config(config: Config, num_classes: int, train_examples: int,
                        image_shape: modules.ImageShape = modules.IMAGE_SHAPE) -> semi_supervised.SemiSupervisedConfig:
    """The model's settings for a run on ``train_examples`` training images of ``num_classes`` classes
    and ``image_shape``: ``config.model`` with the fields the run derives. The label count decides
    the variant (no labels: no supervised phase, and the label head has ``clusters`` outputs, else
    one per class); the run's length sets the rates' decay. A ValueError names an ``augment_shift``
    that moves the images' centres off their canvas (``semi_supervised.max_augment_shift``)."""
    largest = semi_supervised.max_augment_shift(image_shape)
    if config.model.augment_shift > largest:
        raise ValueError(f"augment_shift must be 0..{largest} pixels for {image_shape[0]}x{image_shape[1]} images "
                         f"(a larger shift moves their centre off the canvas), got {config.model.augment_shift}")
    supervised = config.labels > 0
    return dataclasses.replace(config.model, semi_supervised=supervised,
                               num_classes=num_classes if supervised else config.clusters,
                               decay_steps=config.train.decay_steps(train_examples), image_shape=image_shape)


def cluster_examples(split: data.Split, clusters: np.ndarray, num_clusters: int,
                     per_cluster: int = CLUSTER_EXAMPLES) -> np.ndarray:
    """(num_clusters, per_cluster, H, W, C): the first test images of each cluster (blank where fewer)."""
    grid = np.zeros((num_clusters, per_cluster, *data.image_shape(split)), np.float32)
    for c in range(num_clusters):
        members = np.flatnonzero(clusters == c)[:per_cluster]
        if len(members):
            grid[c, : len(members)] = np.asarray(data.to_float_nhwc(split.images[members]))
    return grid


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, options, preset = runs.parse(Config(), PRESETS, argv, __doc__, "s10_semi_supervised")
    run = runs.Run(config, options, preset)
    splits = run.load_splits()
    supervised = config.labels > 0
    num_classes = data.num_classes(splits)
    if supervised:
        with runs.usage_errors("--labels: "):
            per_class = semi_supervised.labels_per_class(config.labels, num_classes)
        labelled = semi_supervised.balanced_subset(splits["train"].labels, per_class,
                                                   jax.random.key(config.label_seed), num_classes)
    else:
        labelled = None
    with runs.usage_errors():
        model_config = derive_model_config(config, num_classes, len(splits["train"].labels),
                                           data.image_shape(splits["train"]))
    model = semi_supervised.make_model(model_config)
    followed = "validation" if run.validation else "test"  # the split watched epoch by epoch
    test_set = data.device_dataset(splits["test"])
    followed_set = data.device_dataset(splits[followed])
    train_images = data.device_dataset(splits["train"])
    labels = splits["test"].labels
    keys = jax.random.split(jax.random.key(config.train.seed))
    if supervised:
        with run.timer("evaluation"):
            classifier_params, classifier_accuracy = run.evaluation_classifier(config.classifier, splits, keys[0])

    def error_on(state: train_lib.TrainState, dataset: dict[str, jax.Array], split_labels: np.ndarray,
                 train_limit: int | None = None, batch_stats: Any = None) -> float:
        """The label head's error on ``dataset``; clustering: by clusters labelled from training images.
        ``batch_stats``: BatchNorm statistics to read instead of the state's running ones."""
        stats = state.batch_stats if batch_stats is None else batch_stats
        with run.timer("evaluation"):
            if supervised:
                predicted = semi_supervised.predict_labels(model, state.params, stats, dataset)
                return float(np.mean(predicted != split_labels))
            train_subset = {k: v[:train_limit] for k, v in train_images.items()}
            train_probs = semi_supervised.predict_probabilities(model, state.params, stats, train_subset)
            cluster_labels = clustering.labels_by_most_confident(train_probs, np.asarray(train_subset["label"]))
            predicted = semi_supervised.predict_labels(model, state.params, stats, dataset)
            return clustering.clustering_error(predicted, split_labels, cluster_labels)

    with run.output() as out:
        by_epoch = f"{followed}_error_by_epoch"
        state, history = run.fit(
            model, semi_supervised.make_dataset(splits["train"], labelled), keys[1], out,
            gather=semi_supervised.gather,
            on_epoch_end=lambda epoch, state, means: {
                by_epoch: error_on(state, followed_set, splits[followed].labels, MONITOR_TRAIN_IMAGES)})
        errors = [entry[by_epoch] for entry in history.epochs]  # a resumed run's earlier epochs included
        with run.timer("evaluation"):
            predicted = semi_supervised.predict_labels(model, state.params, state.batch_stats, test_set)
            styles = evaluation.encode_split(model, state.params, state.batch_stats, test_set)
            transfer = min(config.transfer_images, len(labels)) if supervised else FIGURE_ROWS
            swapped = evaluation.label_swap(model, state.params, state.batch_stats, styles[:transfer],
                                            model_config.num_classes)
            best = int(np.argmin(errors))
            metrics: dict[str, Any] = {"labels": config.labels, "num_classes": num_classes, by_epoch: errors,
                                       "error_by_epoch_split": followed, f"{followed}_best_epoch": best + 1,
                                       "protocol": {"error_followed_on": followed},
                                       f"{followed}_best_error": errors[best], f"{followed}_final_error": errors[-1],
                                       "train_history": history.epochs}
            # the running statistics lag an adversarially trained encoder: the same errors with statistics
            # recomputed for the final weights (a sweep chooses between the two ways of reading them)
            precise_stats = runs.recomputed_batch_stats(model, state, train_images, config.train.batch_size,
                                                        jax.random.fold_in(jax.random.key(config.train.seed), 2))
            metrics["recomputed_bn"] = {
                f"{followed}_final_error": error_on(state, followed_set, splits[followed].labels, MONITOR_TRAIN_IMAGES,
                                                    precise_stats),
                **({"test_error": error_on(state, test_set, labels, batch_stats=precise_stats)}
                   if supervised and followed != "test" else {})}
            if supervised:
                metrics["test_error"] = float(np.mean(predicted != labels))
                metrics["labelled_indices"] = labelled.tolist()
                metrics["style_transfer_accuracy"] = style_evaluation.transfer_accuracy(classifier_params, swapped)
                metrics["classifier_test_accuracy"] = classifier_accuracy
                # fair probes (aejax.probes): fitted on the training styles, computed once for both splits
                train_styles = evaluation.encode_split(model, state.params, state.batch_stats, train_images)
                train_labels = splits["train"].labels
                metrics["label_leak"] = probes.label_probes(train_styles, train_labels, styles, labels)
                if run.validation:  # what a choice between recipes reads
                    followed_styles = evaluation.encode_split(model, state.params, state.batch_stats, followed_set)
                    metrics["validation_label_leak"] = probes.label_probes(train_styles, train_labels, followed_styles,
                                                                           splits[followed].labels)
            else:
                train_probs = semi_supervised.predict_probabilities(model, state.params, state.batch_stats,
                                                                    train_images)
                test_probs = semi_supervised.predict_probabilities(model, state.params, state.batch_stats, test_set)
                report = clustering.clustering_report(train_probs, splits["train"].labels, test_probs, labels,
                                                      num_classes)
                metrics["clustering"] = report
                metrics["clustering_error"] = report["most_confident"]["error"]
        with run.timer("figures"):
            name = "error" if supervised else "clustering error"
            plots.plot_metric_by_epoch(100 * np.asarray(errors), out / "error_by_epoch.png", f"{followed} {name} (%)")
            rows = min(FIGURE_ROWS, len(swapped))
            originals = np.asarray(data.to_float_nhwc(splits["test"].images[:rows]))[:, None]
            plots.plot_image_grid(np.concatenate([originals, swapped[:rows]], axis=1), out / "style_transfer.png",
                                  title="test image, then its style decoded with each category",
                                  col_labels=["input"] + [str(k) for k in range(model_config.num_classes)])
            if not supervised:
                plots.plot_image_grid(cluster_examples(splits["test"], predicted, model_config.num_classes),
                                      out / "clusters.png",
                                      title="the first test images of each cluster (one row per cluster)",
                                      row_labels=[str(c) for c in range(model_config.num_classes)])
        runs.save_state(out, state)
        run.write_metrics(out, metrics, dataclasses.replace(config, model=model_config))
    return metrics
