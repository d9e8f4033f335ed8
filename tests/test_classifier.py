"""aejax.classifier: the MNIST CNN that scores generated digits (any number of classes),
its prediction and accuracy helpers, and load_or_train's saved copy. No torch needed."""

from __future__ import annotations

import json
import math
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import checkpoint, classifier, data, modules

from support import assert_close


def _random_images(n, seed):
    return np.random.default_rng(seed).uniform(size=(n, 28, 28, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def random_classifier_params():
    return classifier.make_model().init(jax.random.key(0))[0]


@pytest.fixture(scope="module")
def random_classifier_params_8():
    return classifier.make_model(num_classes=8).init(jax.random.key(0))[0]


# ================================================================ the network

def test_classifier_output_shape(random_classifier_params):
    net = modules.Classifier(10)
    x = jnp.asarray(_random_images(3, 0))
    shapes = jax.eval_shape(lambda k: net.init(k, x), jax.random.key(0))
    assert set(shapes) == {"params"}  # no batch statistics
    variables = {"params": random_classifier_params["classifier"]}
    chex.assert_trees_all_equal_shapes_and_dtypes(variables, shapes)
    logits = net.apply(variables, x)
    chex.assert_shape(logits, (3, 10))
    chex.assert_type(logits, jnp.float32)
    # each image is scored independently of its batch
    assert_close(net.apply(variables, x[1:2]), logits[1:2])
    assert classifier.num_classes_of(random_classifier_params) == 10


def _shapes(layers):
    return {name: {k: tuple(v.shape) for k, v in layer.items()} for name, layer in layers.items()}


def test_classifier_with_8_classes(random_classifier_params_8, random_classifier_params):
    params = random_classifier_params_8
    assert classifier.num_classes_of(params) == 8
    model = classifier.make_model(num_classes=8)
    x = jnp.asarray(_random_images(5, 2))
    logits = model.encode(params, {"classifier": {}}, x)
    chex.assert_shape(logits, (5, 8))
    chex.assert_type(logits, jnp.float32)
    # only the last layer's width depends on the class count
    want = _shapes(random_classifier_params["classifier"])
    last = max((n for n in want if n.startswith("Dense_")), key=lambda n: int(n.split("_")[1]))
    want[last] = {"kernel": (128, 8), "bias": (8,)}
    assert _shapes(params["classifier"]) == want


@pytest.mark.parametrize("num_classes", [1, 0, -3])
def test_make_model_rejects_fewer_than_two_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        classifier.make_model(num_classes=num_classes)


# ================================================================ accuracy_by_label

def test_accuracy_by_label():
    wanted = np.array([0, 0, 1, 1, 1, 3, 3, 3, 3, 9])
    predicted = np.array([0, 5, 1, 1, 2, 3, 3, 3, 3, 0])
    result = classifier.accuracy_by_label(predicted, wanted, 10)
    assert result["overall"] == pytest.approx(7 / 10)
    per_label = result["per_label"]
    assert len(per_label) == 10
    assert per_label[0] == pytest.approx(0.5)
    assert per_label[1] == pytest.approx(2 / 3)
    assert per_label[3] == 1.0
    assert per_label[9] == 0.0
    for absent in (2, 4, 5, 6, 7, 8):  # wanted never (2 and 5 are only predicted)
        assert math.isnan(per_label[absent])
    with pytest.raises(ValueError, match="differ in shape"):
        classifier.accuracy_by_label(predicted[:-1], wanted, 10)
    with pytest.raises(ValueError, match="differ in shape"):
        classifier.accuracy_by_label(predicted.reshape(2, 5), wanted, 10)


@pytest.mark.parametrize("num_classes", [2, 3, 8, 12])
def test_accuracy_by_label_has_one_entry_per_class(num_classes):
    wanted = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    result = classifier.accuracy_by_label(predicted, wanted, num_classes)
    assert result["overall"] == pytest.approx(3 / 4)
    per_label = result["per_label"]
    assert len(per_label) == num_classes
    assert per_label[:2] == [0.5, 1.0]
    assert all(math.isnan(v) for v in per_label[2:])  # labels 2 .. num_classes - 1 never wanted


def test_accuracy_by_label_requires_num_classes():
    with pytest.raises(TypeError):
        classifier.accuracy_by_label(np.array([0]), np.array([0]))


# ================================================================ predict

def test_predict_checks_input_and_returns_digits(random_classifier_params):
    params = random_classifier_params
    images = _random_images(7, 1)
    with pytest.raises(ValueError, match=r"images must be float \(N, H, W, C\)"):
        classifier.predict(params, (images * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"images must be float \(N, H, W, C\)"):
        classifier.predict(params, images[..., 0])  # (N, 28, 28)
    with pytest.raises(ValueError, match=r"images of shape \(1, 28, 28\) do not fit this classifier"):
        classifier.predict(params, images.reshape(7, 1, 28, 28))
    predicted = classifier.predict(params, images, batch_size=3)  # batches of 3, 3 and 1
    assert isinstance(predicted, np.ndarray) and predicted.shape == (7,)
    assert np.issubdtype(predicted.dtype, np.integer)
    assert np.all((0 <= predicted) & (predicted < 10))
    logits = modules.Classifier(10).apply({"params": params["classifier"]}, jnp.asarray(images))
    np.testing.assert_array_equal(predicted, np.argmax(np.asarray(logits), -1))


def test_predict_reads_the_class_count_from_params(random_classifier_params_8):
    params = random_classifier_params_8
    # a random net's argmax spreads over the classes; 64 images reach several of them
    images = _random_images(64, 3)
    predicted = classifier.predict(params, images, batch_size=40)  # batches of 40 and 24
    assert predicted.shape == (64,)
    assert np.all((0 <= predicted) & (predicted < 8))
    logits = modules.Classifier(8).apply({"params": params["classifier"]}, jnp.asarray(images))
    chex.assert_shape(logits, (64, 8))
    np.testing.assert_array_equal(predicted, np.argmax(np.asarray(logits), -1))


# ================================================================ load_or_train

CLASSIFIER_TRAIN, CLASSIFIER_TEST, CLASSIFIER_EPOCHS = 4096, 512, 2
SMALL_TRAIN, SMALL_TEST, SMALL_CLASSES = 256, 64, 8  # the 8-class runs: 2 steps of one epoch


@pytest.fixture(scope="module")
def small_mnist(mnist):
    return {"train": data.Split(mnist["train"].images[:CLASSIFIER_TRAIN], mnist["train"].labels[:CLASSIFIER_TRAIN]),
            "test": data.Split(mnist["test"].images[:CLASSIFIER_TEST], mnist["test"].labels[:CLASSIFIER_TEST])}


@pytest.fixture(scope="module")
def eight_class_mnist(mnist):
    """A tiny set of MNIST's digits 0..7."""
    def take(split, count):
        keep = np.flatnonzero(split.labels < SMALL_CLASSES)[:count]
        return data.Split(split.images[keep], split.labels[keep])

    splits = {"train": take(mnist["train"], SMALL_TRAIN), "test": take(mnist["test"], SMALL_TEST)}
    assert data.num_classes(splits) == SMALL_CLASSES
    return splits


@pytest.fixture(scope="module")
def trained_classifier(small_mnist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier") / "saved"
    params, accuracy = classifier.load_or_train(folder, small_mnist, jax.random.key(0), epochs=CLASSIFIER_EPOCHS)
    return folder, params, accuracy


@pytest.fixture(scope="module")
def trained_classifier_8(eight_class_mnist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier-8") / "saved"
    params, accuracy = classifier.load_or_train(folder, eight_class_mnist, jax.random.key(0), epochs=1)
    return folder, params, accuracy


def _no_training(*args, **kwargs):
    raise AssertionError("load_or_train retrained although a saved classifier exists")


@pytest.mark.slow
def test_load_or_train_trains_and_saves(trained_classifier, small_mnist):
    folder, params, accuracy = trained_classifier
    # 64 Adam steps on 4096 digits: 0.83-0.87 test accuracy over 6 seeds
    assert accuracy > 0.8
    assert (folder / "checkpoint").is_dir()
    info = json.loads((folder / classifier.INFO_FILE).read_text())
    assert info == {"test_accuracy": accuracy, "epochs": CLASSIFIER_EPOCHS, "train_images": CLASSIFIER_TRAIN,
                    "num_classes": 10, "image_shape": [28, 28, 1]}
    assert classifier.saved_num_classes(folder) == 10
    assert classifier.num_classes_of(params) == 10
    # the accuracy is that of the returned parameters on the test split
    predicted = classifier.predict(params, data.to_float_nhwc(small_mnist["test"].images))
    assert accuracy == pytest.approx(float(np.mean(predicted == small_mnist["test"].labels)))
    assert classifier.accuracy_by_label(predicted, small_mnist["test"].labels, 10)["overall"] == pytest.approx(accuracy)


@pytest.mark.slow
def test_load_or_train_loads_without_retraining(trained_classifier, small_mnist, monkeypatch):
    folder, params, accuracy = trained_classifier
    monkeypatch.setattr(classifier, "train_classifier", _no_training)
    loaded, loaded_accuracy = classifier.load_or_train(folder, small_mnist, jax.random.key(1), epochs=CLASSIFIER_EPOCHS)
    assert loaded_accuracy == accuracy
    chex.assert_trees_all_equal_shapes_and_dtypes(loaded, params)
    chex.assert_trees_all_equal(loaded, params)
    # an explicit class count equal to the saved one loads it too
    again, _ = classifier.load_or_train(folder, small_mnist, jax.random.key(1), epochs=1, num_classes=10)
    chex.assert_trees_all_equal(again, params)


@pytest.mark.slow
def test_load_or_train_without_path_saves_nothing(trained_classifier, small_mnist, monkeypatch, tmp_path):
    _, params, accuracy = trained_classifier
    calls = []

    def fake_training(train_set, key, num_classes, epochs=5, batch_size=128, progress=False, checkpoint_dir=None,
                      image_shape=None):
        assert checkpoint_dir is None  # nothing on disk, not even training checkpoints
        calls.append((int(train_set["label"].shape[0]), num_classes, epochs))
        return params

    def no_saving(*args, **kwargs):
        raise AssertionError("load_or_train(None, ...) saved a checkpoint")

    monkeypatch.setattr(classifier, "train_classifier", fake_training)
    monkeypatch.setattr(checkpoint, "save", no_saving)
    monkeypatch.chdir(tmp_path)
    got, got_accuracy = classifier.load_or_train(None, small_mnist, jax.random.key(0), epochs=1)
    assert calls == [(CLASSIFIER_TRAIN, 10, 1)]  # the class count comes from the data
    assert got is params and got_accuracy == pytest.approx(accuracy)
    assert list(tmp_path.iterdir()) == []


def test_load_or_train_passes_the_class_count_to_training(eight_class_mnist, monkeypatch):
    seen = []

    def fake_training(train_set, key, num_classes, epochs=5, batch_size=128, progress=False, checkpoint_dir=None,
                      image_shape=None):
        seen.append(num_classes)
        return classifier.make_model(num_classes).init(jax.random.key(0))[0]

    monkeypatch.setattr(classifier, "train_classifier", fake_training)
    classifier.load_or_train(None, eight_class_mnist, jax.random.key(0), epochs=1)
    classifier.load_or_train(None, eight_class_mnist, jax.random.key(0), epochs=1, num_classes=10)
    assert seen == [SMALL_CLASSES, 10]  # from the data, else as asked


@pytest.mark.slow
def test_load_or_train_refuses_a_classifier_for_another_class_count(trained_classifier, small_mnist,
                                                                   eight_class_mnist, monkeypatch):
    folder, _, _ = trained_classifier
    monkeypatch.setattr(classifier, "train_classifier", _no_training)
    with pytest.raises(ValueError, match=r"the classifier in .* was trained on 10 classes, the data has 8"):
        classifier.load_or_train(folder, small_mnist, jax.random.key(0), epochs=1, num_classes=8)
    # the count taken from the data: an 8-class set does not use the 10-class classifier either
    with pytest.raises(ValueError, match=r"the classifier in .* was trained on 10 classes, the data has 8"):
        classifier.load_or_train(folder, eight_class_mnist, jax.random.key(0), epochs=1)
    assert classifier.saved_num_classes(folder) == 10  # left as it was


@pytest.mark.slow
def test_load_or_train_saves_the_class_count(trained_classifier_8, eight_class_mnist, small_mnist, monkeypatch):
    folder, params, accuracy = trained_classifier_8
    info = json.loads((folder / classifier.INFO_FILE).read_text())
    assert info == {"test_accuracy": accuracy, "epochs": 1, "train_images": SMALL_TRAIN, "num_classes": SMALL_CLASSES,
                    "image_shape": [28, 28, 1]}
    assert classifier.saved_num_classes(folder) == SMALL_CLASSES
    assert classifier.num_classes_of(params) == SMALL_CLASSES
    predicted = classifier.predict(params, data.to_float_nhwc(eight_class_mnist["test"].images))
    assert np.all(predicted < SMALL_CLASSES)
    assert accuracy == pytest.approx(float(np.mean(predicted == eight_class_mnist["test"].labels)))
    by_label = classifier.accuracy_by_label(predicted, eight_class_mnist["test"].labels, SMALL_CLASSES)
    assert len(by_label["per_label"]) == SMALL_CLASSES and by_label["overall"] == pytest.approx(accuracy)
    # loaded back as an 8-class classifier; refused for 10 classes
    monkeypatch.setattr(classifier, "train_classifier", _no_training)
    loaded, loaded_accuracy = classifier.load_or_train(folder, eight_class_mnist, jax.random.key(1), epochs=1)
    assert loaded_accuracy == accuracy
    chex.assert_trees_all_equal(loaded, params)
    with pytest.raises(ValueError, match=r"the classifier in .* was trained on 8 classes, the data has 10"):
        classifier.load_or_train(folder, small_mnist, jax.random.key(0), epochs=1)


def test_saved_num_classes(tmp_path):
    assert classifier.saved_num_classes(tmp_path) is None  # nothing saved there
    assert classifier.saved_num_classes(tmp_path / "missing") is None
    info = tmp_path / classifier.INFO_FILE
    info.write_text(json.dumps({"test_accuracy": 0.9, "epochs": 5, "train_images": 60000}))
    assert classifier.saved_num_classes(tmp_path) == 10  # saved before the count was: an MNIST classifier
    info.write_text(json.dumps({"test_accuracy": 0.9, "epochs": 5, "train_images": 60000, "num_classes": 3}))
    assert classifier.saved_num_classes(tmp_path) == 3


def test_saved_image_shape(tmp_path):
    assert classifier.saved_image_shape(tmp_path) is None  # nothing saved there
    info = tmp_path / classifier.INFO_FILE
    info.write_text(json.dumps({"test_accuracy": 0.9, "epochs": 5, "train_images": 60000, "num_classes": 10}))
    assert classifier.saved_image_shape(tmp_path) == (28, 28, 1)  # saved before the shape was: an MNIST classifier
    info.write_text(json.dumps({"test_accuracy": 0.9, "num_classes": 10, "image_shape": [32, 32, 3]}))
    assert classifier.saved_image_shape(tmp_path) == (32, 32, 3)


@pytest.mark.slow
def test_load_or_train_counts_a_classifier_json_without_num_classes_as_10(trained_classifier, small_mnist,
                                                                         monkeypatch, tmp_path):
    folder, params, accuracy = trained_classifier
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    info = json.loads((old / classifier.INFO_FILE).read_text())
    del info["num_classes"]
    (old / classifier.INFO_FILE).write_text(json.dumps(info))
    assert classifier.saved_num_classes(old) == 10
    monkeypatch.setattr(classifier, "train_classifier", _no_training)
    loaded, loaded_accuracy = classifier.load_or_train(old, small_mnist, jax.random.key(0), epochs=1)
    assert loaded_accuracy == accuracy
    chex.assert_trees_all_equal(loaded, params)
    with pytest.raises(ValueError, match=r"the classifier in .* was trained on 10 classes, the data has 8"):
        classifier.load_or_train(old, small_mnist, jax.random.key(0), epochs=1, num_classes=8)


@pytest.mark.slow
def test_load_or_train_refuses_a_checkpoint_without_its_info(trained_classifier, small_mnist, tmp_path):
    folder, _, _ = trained_classifier
    bare = tmp_path / "bare"
    shutil.copytree(folder / "checkpoint", bare / "checkpoint")
    with pytest.raises(ValueError, match=f"without {classifier.INFO_FILE}"):
        classifier.load_or_train(bare, small_mnist, jax.random.key(0), epochs=1)


def test_classifier_is_the_same_function_by_any_convolution_impl():
    images = jax.random.uniform(jax.random.key(3), (5, 28, 28, 1))
    params = modules.Classifier(10, "lax").init(jax.random.key(4), images)
    by_lax = modules.Classifier(10, "lax").apply(params, images)
    by_patches = modules.Classifier(10, "patches").apply(params, images)
    np.testing.assert_allclose(np.asarray(by_patches), np.asarray(by_lax), rtol=1e-5, atol=1e-5)
    assert modules.Classifier(10).conv_impl == "auto"  # patches on a CPU: fast gradients inside scanned chunks
