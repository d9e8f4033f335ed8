"""Section 9: disentangling style from label (label head + style z + a label adversary on z).

    python -m experiments.s9_disentangled --out runs/s9_disentangled

Figures: style transfer (test digits, then each one's style z decoded with each of the
ten labels: a 10-column figure per digit row); the first two style coordinates of the
test digits coloured by label. metrics.json: label-head test accuracy; the label leak,
i.e. how well a fresh probe predicts the digit from the test styles z (logistic
regression and 10-NN, fitted on half the test set, scored on the other half; chance is
about 10%); the adversary's own test accuracy; style-transfer accuracy (each test
digit's z decoded with every label, scored by the evaluation classifier); under
``recomputed_bn`` the label head and the leak again with the encoder's BatchNorm
statistics recomputed for its final weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aejax import classifier, data, disentangled, evaluation, plots
from aejax import train as train_lib
from aejax.experiments import common
from aejax.experiments.s7_cvae import decode_with_labels

FIGURE_DIGITS = 10


def styles_and_labels(model: train_lib.Model, state: train_lib.TrainState, test_set: dict) -> tuple[np.ndarray, np.ndarray]:
    """Test styles z (N, D) and predicted labels (N,), eval mode."""
    run = jax.jit(lambda p, s, images: (model.encode(p, s, images), jnp.argmax(model.classify(p, s, images), -1)))
    return train_lib.map_over_split(
        lambda _, idx: run(state.params, state.batch_stats, data.gather_batch(test_set, idx)["image"]), test_set, 1000)


def label_swap(model: train_lib.Model, state: train_lib.TrainState, styles: np.ndarray, num_classes: int) -> np.ndarray:
    """Each style decoded with every label: images (N, num_classes, 28, 28, 1)."""
    labels = jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), len(styles))
    decoded = decode_with_labels(model, state, jnp.repeat(jnp.asarray(styles), num_classes, axis=0), labels)
    return decoded.reshape(len(styles), num_classes, 28, 28, 1)


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s9_disentangled", epochs=10, latent_dim=8,
                                batch_size=128)
    parser.add_argument("--learning-rate", type=common.positive_float, default=1e-3, help="Adam learning rate of the autoencoder and confusion phases")
    parser.add_argument("--adversary-learning-rate", type=common.positive_float, default=1e-3, help="Adam learning rate of the label adversary")
    parser.add_argument("--confusion-weight", type=common.non_negative_float, default=0.1,
                        help="weight of the encoder's penalty when the adversary reads the label from z")
    parser.add_argument("--class-mean-weight", type=common.non_negative_float, default=0.0,
                        help="> 0: also penalise the share of the style's variance explained by the class means")
    parser.add_argument("--kernel-dependence-weight", type=common.non_negative_float, default=0.0,
                        help="> 0: also penalise the kernel (Gaussian, CKA) dependence of the style on the label")
    parser.add_argument("--style-kl-weight", type=common.non_negative_float, default=0.0,
                        help="> 0: variational style pulled to N(0, I) by this weight times its KL (0.005: the lecture's VAE weight)")
    parser.add_argument("--decoder-label", choices=("predicted", "true"), default="predicted",
                        help="what the decoder reads in training: the label head's softmax or the true label")
    parser.add_argument("--style-normalization", choices=("none", "class"), default="none",
                        help="'class': standardise the style per class (true labels in training, the label head's in eval)")
    parser.add_argument("--transfer-images", type=common.positive_int, default=1000,
                        help="test images whose style is decoded with every label and scored")
    common.add_classifier_flag(parser)
    args = common.parse(parser, argv)
    if args.style_normalization == "class" and args.style_kl_weight:
        parser.error("--style-normalization class needs a deterministic style (--style-kl-weight 0)")
    splits = common.load_data(args)
    config = disentangled.DisentangledConfig(latent_dim=args.latent_dim, learning_rate=args.learning_rate,
                                             adversary_learning_rate=args.adversary_learning_rate,
                                             confusion_weight=args.confusion_weight, style_kl_weight=args.style_kl_weight,
                                             decoder_label=args.decoder_label, class_mean_weight=args.class_mean_weight,
                                             kernel_dependence_weight=args.kernel_dependence_weight,
                                             style_normalization=args.style_normalization)
    model = disentangled.make_model(config)
    keys = jax.random.split(jax.random.key(args.seed), 2)
    test_set = data.device_dataset(splits["test"])
    labels = splits["test"].labels
    classifier_params, classifier_accuracy = common.load_classifier(args, splits, keys[0])
    with common.output(args) as out:
        state, history, seconds = common.fit(model, splits, args, keys[1], out)
        styles, predicted = styles_and_labels(model, state, test_set)
        adversary = jax.jit(lambda p, z: jnp.argmax(
            disentangled.make_modules(config)[2].apply({"params": p["label_adversary"]}, disentangled.standardize(z)), -1))
        transfer = min(args.transfer_images, len(labels))
        swapped = label_swap(model, state, styles[:transfer], config.num_classes)
        wanted = np.tile(np.arange(config.num_classes), transfer)
        # the same probes on the styles of the final weights: the encoder's running BatchNorm
        # statistics lag its adversarial updates (see train.recompute_batch_stats)
        precise_stats = common.recomputed_batch_stats(model, state, splits, args, keys[1])
        precise_styles, precise_predicted = styles_and_labels(model, state.replace(batch_stats=precise_stats), test_set)
        metrics = {
            "label_head_test_accuracy": float(np.mean(predicted == labels)),
            "label_leak_logistic": evaluation.probe_accuracy(styles, labels, "logistic"),
            "label_leak_knn": evaluation.probe_accuracy(styles, labels, "knn"),
            "recomputed_bn": {
                "label_head_test_accuracy": float(np.mean(precise_predicted == labels)),
                "label_leak_logistic": evaluation.probe_accuracy(precise_styles, labels, "logistic"),
                "label_leak_knn": evaluation.probe_accuracy(precise_styles, labels, "knn"),
            },
            "majority_class_share": float(np.bincount(labels).max() / len(labels)),
            "adversary_test_accuracy": float(np.mean(np.asarray(adversary(state.params, styles)) == labels)),
            "style_transfer_accuracy": classifier.accuracy_by_label(
                classifier.predict(classifier_params, swapped.reshape(-1, 28, 28, 1)), wanted),
            "classifier_test_accuracy": classifier_accuracy,
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        originals = np.asarray(data.to_float_nhwc(splits["test"].images[:FIGURE_DIGITS]))
        rows = min(FIGURE_DIGITS, transfer)
        figure = np.concatenate([originals[:rows, None], swapped[:rows]], axis=1)
        plots.plot_image_grid(figure, out / "style_transfer.png",
                              title="test digit, then its style decoded with labels 0-9",
                              col_labels=["input"] + [str(k) for k in range(config.num_classes)])
        plots.plot_latent_scatter(styles, labels, out / "style_by_label.png",
                                  title="style z[0], z[1] of test digits, coloured by digit (ideally mixed)")
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
