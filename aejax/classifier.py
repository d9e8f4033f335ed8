"""A small CNN, trained once and saved, that scores generated images (MNIST's digits by default).

Trained with the generic loop (one phase: cross-entropy, Adam); no BatchNorm, so an
image's score never depends on the rest of its batch. ``load_or_train`` keeps one
trained copy on disk (orbax) with its test accuracy, classes and image shape beside it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pathlib
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax import checkpoint, inference
from aejax import data as data_lib
from aejax import train as train_lib
from aejax.model import Batch, BatchStats, LossOutput, Model, Params, Phase
from aejax.modules import IMAGE_SHAPE, Classifier, ImageShape, check_image_shape

EPOCHS = 5  # training epochs of the evaluation classifier: about 99% on MNIST's test set
INFO_FILE = "classifier.json"  # beside the checkpoint: test accuracy, epochs, images, classes, image shape


def classifier_loss(network: Classifier, params: Params, batch_stats: BatchStats, batch: Batch, key: jax.Array,
                    step: jax.Array) -> LossOutput:
    """Mean cross-entropy of the class logits of batch["image"] (B, H, W, C) with batch["label"] (B,).

    Metric: accuracy.
    """
    del key, step  # deterministic, no schedule
    logits = network.apply({"params": params["classifier"]}, batch["image"])
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return LossOutput(loss, batch_stats, {"accuracy": accuracy})


def make_model(num_classes: int = data_lib.MNIST_NUM_CLASSES, learning_rate: float = 1e-3,
               decay_steps: int | None = None, image_shape: ImageShape = IMAGE_SHAPE) -> Model:
    """The classifier of images of ``image_shape`` (H, W, C) as the generic loop sees it; ``encode``
    gives the class logits (B, num_classes).

    Adam; with ``decay_steps`` its rate follows a cosine decay to 0 over that many steps.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    network = Classifier(num_classes, image_shape=check_image_shape(image_shape))

    def init(key):
        return {"classifier": network.init(key, jnp.zeros((1, *network.image_shape)))["params"]}, {"classifier": {}}

    def encode(params, batch_stats, images, labels=None, train=False):
        del batch_stats, labels, train
        return network.apply({"params": params["classifier"]}, images)

    def decode(*args, **kwargs):
        raise NotImplementedError("the classifier has no decoder")

    rate = optax.cosine_decay_schedule(learning_rate, decay_steps) if decay_steps else learning_rate
    phase = Phase("classifier", functools.partial(classifier_loss, network), optax.adam(rate), ("classifier",))
    return Model(init=init, phases=(phase,), encode=encode, decode=decode)


def num_classes_of(params: Params) -> int:
    """The number of classes a trained classifier's ``params`` score (its last layer's width)."""
    layers = params["classifier"]
    last = max((name for name in layers if name.startswith("Dense_")), key=lambda name: int(name.split("_")[1]))
    return int(layers[last]["bias"].shape[0])


def check_fits(params: Params, image_shape: ImageShape) -> None:
    """Raises a one-line ValueError unless a classifier's ``params`` read images of ``image_shape``:
    its first convolution's input channels and its first Dense layer's inputs must match."""
    height, width, channels = image_shape
    layers = params["classifier"]
    trained_channels = int(layers["Conv_0"]["kernel"].shape[2])
    trained_inputs = int(layers["Dense_0"]["kernel"].shape[0])
    inputs = (height // 4) * (width // 4) * int(layers["Conv_1"]["kernel"].shape[3])  # after two 2x2 max-pools
    if trained_channels != channels or trained_inputs != inputs:
        raise ValueError(f"images of shape {tuple(image_shape)} do not fit this classifier: it was trained on "
                         f"images of {trained_channels} channels whose pooled grid holds {trained_inputs} values")


def predict(params: Params, images: jax.Array | np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Predicted classes (N,) for images (N, H, W, C) float in [0, 1] of the shape the classifier was
    trained on (MNIST's (N, 28, 28, 1) by default), ``batch_size`` at a time
    (None: ``inference.inference_batch_size()``; a short last batch padded, so one compilation)."""
    images = jnp.asarray(images)
    if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be float (N, H, W, C) in [0, 1], got {images.dtype} {images.shape}")
    image_shape = check_image_shape(images.shape[1:])
    check_fits(params, image_shape)
    classes = num_classes_of(params)
    (predicted,) = inference.map_over_split(
        lambda _, indices: (_predict_batch(params["classifier"], images[indices], classes),),
        {"image": images}, batch_size or inference.inference_batch_size(), pad_last=True)
    return predicted


@functools.partial(jax.jit, static_argnums=2)
def _predict_batch(params, images, num_classes):  # module level: compiled once per batch shape, not per call
    return jnp.argmax(Classifier(num_classes, image_shape=images.shape[1:]).apply({"params": params}, images), -1)


def accuracy_by_label(predicted: np.ndarray, wanted: np.ndarray, num_classes: int) -> dict[str, float | list[float]]:
    """Share of ``predicted`` (N,) equal to ``wanted`` (N,): overall and per wanted label
    0 .. num_classes - 1 (NaN for a label never wanted)."""
    predicted, wanted = np.asarray(predicted), np.asarray(wanted)
    if predicted.shape != wanted.shape:
        raise ValueError(f"predicted {predicted.shape} and wanted {wanted.shape} differ in shape")
    hits = predicted == wanted
    per_label = [float(hits[wanted == y].mean()) if np.any(wanted == y) else float("nan") for y in range(num_classes)]
    return {"overall": float(hits.mean()), "per_label": per_label}


def train_classifier(train_set: Mapping[str, jax.Array], key: jax.Array, num_classes: int, epochs: int = EPOCHS,
                     batch_size: int = 128, progress: bool = False,
                     checkpoint_dir: str | os.PathLike | None = None,
                     image_shape: ImageShape | None = None) -> Params:
    """Trains the classifier on ``{"image", "label"}`` (``data.device_dataset``); returns its params.

    ``checkpoint_dir``: keep the training state there after every epoch and resume from it.
    ``image_shape``: (H, W, C) of the images (None: read from ``train_set["image"]``).
    """
    steps = epochs * -(-int(train_set["label"].shape[0]) // batch_size)
    image_shape = data_lib.image_shape(train_set["image"]) if image_shape is None else image_shape
    model = make_model(num_classes, decay_steps=steps, image_shape=image_shape)
    state = train_lib.create_train_state(model, key)
    with contextlib.ExitStack() as stack:
        checkpointing = (None if checkpoint_dir is None else
                         train_lib.Checkpointing(stack.enter_context(checkpoint.TrainingCheckpoints(checkpoint_dir))))
        state, _ = train_lib.train(model, state, train_set, epochs=epochs, batch_size=batch_size,
                                   checkpointing=checkpointing,
                                   reporting=train_lib.Reporting(progress=progress, log_epochs=progress))
    return state.params


def test_accuracy(params: Params, test_split: data_lib.Split) -> float:
    predicted = predict(params, data_lib.to_float_nhwc(test_split.images))
    return float(np.mean(predicted == test_split.labels))


def saved_num_classes(path: str | os.PathLike) -> int | None:
    """The class count of the classifier saved at ``path`` (None: none saved there); one saved
    without a count was trained on MNIST."""
    info = pathlib.Path(path) / INFO_FILE
    if not info.is_file():
        return None
    return int(json.loads(info.read_text()).get("num_classes", data_lib.MNIST_NUM_CLASSES))


def saved_image_shape(path: str | os.PathLike) -> ImageShape | None:
    """The image shape (H, W, C) of the classifier saved at ``path`` (None: none saved there); one
    saved without a shape was trained on MNIST's 28x28x1."""
    info = pathlib.Path(path) / INFO_FILE
    if not info.is_file():
        return None
    return tuple(int(n) for n in json.loads(info.read_text()).get("image_shape", IMAGE_SHAPE))


def load_or_train(path: str | os.PathLike | None, splits: Mapping[str, data_lib.Split], key: jax.Array,
                  epochs: int = EPOCHS, progress: bool = False, checkpoint_dir: str | os.PathLike | None = None,
                  num_classes: int | None = None) -> tuple[Params, float]:
    """The saved classifier at ``path`` if there is one, else a newly trained one saved there.

    ``path=None`` trains one without saving (smoke runs on data subsets must not leave
    a weak classifier behind for real runs). ``checkpoint_dir``: see ``train_classifier``.
    ``num_classes``: the classes it scores (default: those of ``splits``); a saved
    classifier for another count, or for images of another shape than ``splits``', is
    refused. Returns (params, test accuracy).
    """
    num_classes = data_lib.num_classes(splits) if num_classes is None else num_classes
    image_shape = data_lib.image_shape(splits["train"])
    folder = None if path is None else pathlib.Path(path).absolute()
    if folder is not None and (folder / "checkpoint").is_dir():
        if not (folder / INFO_FILE).is_file():
            raise ValueError(f"{folder} holds a classifier checkpoint without {INFO_FILE}; remove it to retrain")
        saved = saved_num_classes(folder)
        if saved != num_classes:
            raise ValueError(f"the classifier in {folder} was trained on {saved} classes, the data has "
                             f"{num_classes}; give another classifier folder")
        saved_shape = saved_image_shape(folder)
        if saved_shape != image_shape:
            raise ValueError(f"the classifier in {folder} was trained on images of shape {saved_shape}, the data's "
                             f"are {image_shape}; give another classifier folder")
        like = make_model(num_classes, image_shape=image_shape).init(jax.random.key(0))[0]
        params = checkpoint.restore(folder / "checkpoint", {"params": like})["params"]
        return params, float(json.loads((folder / INFO_FILE).read_text())["test_accuracy"])
    params = train_classifier(data_lib.device_dataset(splits["train"]), key, num_classes, epochs, progress=progress,
                              checkpoint_dir=checkpoint_dir, image_shape=image_shape)
    accuracy = test_accuracy(params, splits["test"])
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint.save(folder / "checkpoint", {"params": params})
        (folder / INFO_FILE).write_text(json.dumps(
            {"test_accuracy": accuracy, "epochs": epochs, "train_images": int(len(splits["train"].labels)),
             "num_classes": num_classes, "image_shape": list(image_shape)}, indent=2) + "\n")
    return params, accuracy
