"""Images of any shape (N, H, W) or (N, H, W, C): the layer sizes the networks derive from
the shape, every model family on colour 32x32x3, on 64x64x1 and on an odd 20x24x1,
the data helpers, and the experiments end to end on a 32x32x3 .npz and an 8-class IDX set.

The fast tests trace the families' training steps (``jax.eval_shape``: every layer's
shape, no compilation); the ``slow`` ones compile and train them.
"""

from __future__ import annotations

import functools
import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import (aae, autoencoder, binarized, classifier, contractive, data, disentangled, evaluation, modules, pca,
                   priors, semi_supervised, vae, wae)
from aejax import train as train_lib
from aejax.experiments import s1_pca, s2_conv_ae, s5_vae, s7_cvae, s8_aae, s10_semi_supervised

from experiment_support import quick_run
from support import count

COLOUR = (32, 32, 3)
LARGE_GREY = (64, 64, 1)
ODD = (20, 24, 1)
NUM_CLASSES = 4
BATCH = 4


# ------------------------------------------------------------------ the shape rule

def test_the_lecture_shape_keeps_the_lecture_layers():
    assert modules.encoder_grid((28, 28, 1)) == (2, 2)
    assert modules.decoder_layout((28, 28, 1)) == ((1, 1), ((1, 1), (1, 1)), ((0, 0), (0, 0)))


@pytest.mark.parametrize("latent, encoder_count, decoder_count", [(2, 525_506, 1_580_577), (24, 570_584, 1_591_841)])
def test_28x28x1_parameter_counts_are_the_lecture_s(latent, encoder_count, decoder_count):
    """The counts of tests/test_modules.py (the PyTorch lecture's), whether the shape is given or defaulted."""
    encoder = jax.eval_shape(functools.partial(modules.Encoder(latent, image_shape=(28, 28, 1)).init, train=False),
                             jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    decoder = jax.eval_shape(functools.partial(modules.Decoder(image_shape=(28, 28, 1)).init, train=False),
                             jax.random.key(0), jnp.zeros((1, latent)))
    assert (count(encoder["params"]), count(decoder["params"])) == (encoder_count, decoder_count)
    shapes = jax.eval_shape(autoencoder.make_model(autoencoder.AEConfig(latent_dim=latent)).init, jax.random.key(0))
    assert count(shapes[0]) == encoder_count + decoder_count


@pytest.mark.parametrize("height", range(1, 70))
def test_the_decoder_layout_reaches_every_side(height):
    (rows, cols), ((top, bottom), (left, right)), ((crop_top, crop_bottom), (crop_left, crop_right)) = (
        modules.decoder_layout((height, 7, 1)))
    grown = 32 * rows
    assert grown >= height and grown - 32 < height  # the smallest start grid that covers the side
    assert top + bottom + grown - 6 - crop_top - crop_bottom == height
    assert 0 <= top <= bottom <= top + 1 <= 4 and 0 <= crop_top <= crop_bottom <= crop_top + 1
    assert (top + bottom) * (crop_top + crop_bottom) == 0  # padded or cropped, never both
    assert (cols, left + right + 32 - 6 - crop_left - crop_right) == (1, 7)


@pytest.mark.parametrize("shape, grid, start", [
    ((28, 28, 1), (2, 2), (1, 1)), (COLOUR, (2, 2), (1, 1)), (LARGE_GREY, (4, 4), (2, 2)), (ODD, (2, 2), (1, 1)),
    ((65, 33, 2), (5, 3), (3, 2)), ((1, 1, 1), (1, 1), (1, 1)),
])
def test_networks_take_their_layer_sizes_from_the_image_shape(shape, grid, start):
    encoder = modules.Encoder(5, image_shape=shape)
    variables = jax.eval_shape(functools.partial(encoder.init, train=False), jax.random.key(0),
                               jnp.zeros((2, *shape)))
    assert variables["params"]["Dense_0"]["kernel"].shape == (grid[0] * grid[1] * 512, 5)
    assert jax.eval_shape(functools.partial(encoder.apply, train=False), variables, jnp.zeros((2, *shape))).shape == (2, 5)
    decoder = modules.Decoder(image_shape=shape, num_classes=3)
    labels = jnp.zeros((2,), jnp.int32)
    variables = jax.eval_shape(functools.partial(decoder.init, train=False), jax.random.key(0), jnp.zeros((2, 5)),
                               labels=labels)
    assert variables["params"]["Dense_0"]["kernel"].shape == (5 + 3, start[0] * start[1] * 512)
    assert variables["params"]["Conv_0"]["kernel"].shape == (7, 7, 32, shape[-1])
    logits = jax.eval_shape(functools.partial(decoder.apply, train=False), variables, jnp.zeros((2, 5)),
                            labels=labels)
    assert logits.shape == (2, *shape)


def test_the_decoder_crops_and_pads_in_numbers():
    """Run, not traced: a cropping (20x24) and a padding (32x32) decoder give finite logits of the image's size."""
    for shape in (ODD, COLOUR):
        decoder = modules.Decoder(image_shape=shape, conv_impl="lax", conv_transpose_impl="lax")
        variables = decoder.init(jax.random.key(0), jnp.zeros((2, 3)), False)
        logits = decoder.apply(variables, jax.random.normal(jax.random.key(1), (2, 3)), False)
        chex.assert_shape(logits, (2, *shape))
        chex.assert_tree_all_finite(logits)
        assert float(jnp.std(logits)) > 0  # cropped from the inside, not from padding alone


def test_networks_refuse_images_of_another_shape():
    encoder = modules.Encoder(2, image_shape=COLOUR)
    with pytest.raises(ValueError, match=r"^images must be float of shape \(B, 32, 32, 3\) in \[0, 1\], got "
                                         r"float32 \(2, 28, 28, 1\)"):
        encoder.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), False)
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W, C\) of positive integers, got \(32, 0, 3\)"):
        autoencoder.AEConfig(image_shape=(32, 0, 3))
    with pytest.raises(ValueError, match="the classifier needs images of at least 4x4 pixels, got 3x8"):
        classifier.make_model(3, image_shape=(3, 8, 1)).init(jax.random.key(0))


def test_configs_hold_the_shape_as_a_tuple():
    assert autoencoder.AEConfig(image_shape=[32, 32, 3]).image_shape == COLOUR
    assert vae.VAEConfig().image_shape == (28, 28, 1)


# ------------------------------------------------------------------ the families

def _dataset(shape: tuple[int, int, int], n: int = 8) -> dict[str, jax.Array]:
    """Device split format: uint8 images (n, H, W) for C = 1, else (n, H, W, C); int32 labels below NUM_CLASSES."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return {"image": jnp.asarray(images[..., 0] if shape[-1] == 1 else images),
            "label": jnp.asarray(np.arange(n) % NUM_CLASSES, jnp.int32)}


def _semi_supervised(shape, supervised: bool):
    config = semi_supervised.SemiSupervisedConfig(latent_dim=2, num_classes=NUM_CLASSES, discriminator_hidden=(16,),
                                                  semi_supervised=supervised, image_shape=shape,
                                                  categorical_temperature=0.0 if supervised else 0.3)
    dataset = _dataset(shape)
    split = data.Split(np.asarray(dataset["image"]), np.asarray(dataset["label"], np.uint8))
    return (semi_supervised.make_model(config),
            semi_supervised.make_dataset(split, np.arange(NUM_CLASSES) if supervised else None), semi_supervised.gather)


# family -> shape -> (model, dataset, gather); "conditional": the decoder reads labels
FAMILIES = {
    "conv_ae": lambda s: autoencoder.make_model(autoencoder.AEConfig(latent_dim=2, image_shape=s)),
    "denoising_ae": lambda s: autoencoder.make_model(autoencoder.AEConfig(latent_dim=2, input_noise_std=0.3,
                                                                          image_shape=s)),
    "sparse_ae": lambda s: autoencoder.make_model(autoencoder.AEConfig(latent_dim=4, sparsity="kl_per_unit",
                                                                       image_shape=s)),
    "contractive_ae": lambda s: contractive.make_model(contractive.ContractiveConfig(latent_dim=2, image_shape=s)),
    "vae": lambda s: vae.make_model(vae.VAEConfig(latent_dim=2, image_shape=s)),
    "beta_vae": lambda s: vae.make_model(vae.VAEConfig(latent_dim=2, kld_weight=vae.beta_to_kld_weight(1.0, s),
                                                       kl_warmup_steps=4, image_shape=s)),
    "cvae": lambda s: vae.make_model(vae.VAEConfig(latent_dim=2, num_classes=NUM_CLASSES, image_shape=s)),
    "wae": lambda s: wae.make_model(wae.WAEConfig(latent_dim=2, image_shape=s)),
    "aae": lambda s: aae.make_model(aae.AAEConfig(prior_samples_per_code=2, image_shape=s), priors.uniform_box()),
    "disentangled": lambda s: disentangled.make_model(disentangled.DisentangledConfig(
        latent_dim=2, num_classes=NUM_CLASSES, adversary_hidden=(16,), style_normalization="class", image_shape=s)),
    "semi_supervised": lambda s: _semi_supervised(s, supervised=True),
    "clustering": lambda s: _semi_supervised(s, supervised=False),
    "classifier": lambda s: classifier.make_model(NUM_CLASSES, image_shape=s),
}
CONDITIONAL = {"cvae", "disentangled", "semi_supervised", "clustering"}


def _family(name: str, shape: tuple[int, int, int]):
    """(model, dataset, gather) of a family for images of ``shape``."""
    built = FAMILIES[name](shape)
    return (built, _dataset(shape), data.gather_batch) if isinstance(built, train_lib.Model) else built


def _decode_labels(name: str) -> jax.Array | None:
    return jnp.arange(BATCH, dtype=jnp.int32) % NUM_CLASSES if name in CONDITIONAL else None


def _check_encode_decode(name: str, model: train_lib.Model, params, batch_stats, images: jax.Array,
                         shape: tuple[int, int, int], evaluate=jax.eval_shape) -> None:
    """encode (B, H, W, C) -> codes (B, D); decode codes -> logits (B, H, W, C) (the classifier: logits (B, K))."""
    codes = evaluate(lambda p, s, x: model.encode(p, s, x), params, batch_stats, images)
    if name == "classifier":
        assert codes.shape == (BATCH, NUM_CLASSES)
        return
    assert len(codes.shape) == 2 and codes.shape[0] == BATCH
    logits = evaluate(lambda p, s, z: model.decode(p, s, z, _decode_labels(name)), params, batch_stats, codes)
    assert logits.shape == (BATCH, *shape)


SHAPE_IDS = {COLOUR: "32x32x3", LARGE_GREY: "64x64x1", ODD: "20x24x1"}
# every family on both main shapes; the odd one (a cropping decoder) on a family of each kind
TRACED = [(name, shape) for shape in (COLOUR, LARGE_GREY) for name in sorted(FAMILIES)] + [
    (name, ODD) for name in ("classifier", "conv_ae", "cvae", "semi_supervised")]


@pytest.mark.parametrize("name, shape", TRACED, ids=[f"{name}-{SHAPE_IDS[shape]}" for name, shape in TRACED])
def test_every_family_traces_its_training_step_on_other_shapes(name, shape):
    """Every layer's shape fits: initialisation, a training step and encode/decode, traced without compiling."""
    model, dataset, gather = _family(name, shape)
    state = jax.eval_shape(functools.partial(train_lib.create_train_state, model), jax.random.key(0))
    step = functools.partial(train_lib.apply_phases, model.phases)
    new_state, metrics = jax.eval_shape(lambda s, d: step(s, gather(d, jnp.arange(BATCH))), state, dataset)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state.params, state.params)
    assert all(value.shape == () for value in metrics.values())
    images = jax.ShapeDtypeStruct((BATCH, *shape), jnp.float32)
    _check_encode_decode(name, model, state.params, state.batch_stats, images, shape)


# compiled and run: a family of each kind of network on colour images, the conv AE on the larger grey ones
# too (every family's step on both shapes is traced above, without compiling)
TRAINED = [(name, COLOUR) for name in ("aae", "classifier", "conv_ae", "cvae", "disentangled", "semi_supervised",
                                       "vae", "wae")] + [("conv_ae", LARGE_GREY)]


@pytest.mark.slow
@pytest.mark.parametrize("name, shape", TRAINED, ids=[f"{name}-{SHAPE_IDS[shape]}" for name, shape in TRAINED])
def test_every_family_trains_on_other_shapes(name, shape):
    model, dataset, gather = _family(name, shape)
    state = train_lib.create_train_state(model, jax.random.key(0))
    step = train_lib.make_train_step(model.phases, gather)
    before = jax.tree.map(np.asarray, state.params)
    for first in (0, BATCH):
        state, metrics = step(state, dataset, jnp.arange(first, first + BATCH))
    chex.assert_tree_all_finite(metrics)
    assert _params_moved(before, state.params)
    images = gather(dataset, jnp.arange(BATCH))["image"]
    chex.assert_shape(images, (BATCH, *shape))
    _check_encode_decode(name, model, state.params, state.batch_stats, images, shape,
                         evaluate=lambda fn, *args: fn(*args))


def _params_moved(before, after) -> bool:
    return any(not np.array_equal(a, np.asarray(b)) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_an_odd_sized_autoencoder_trains_and_reconstructs():
    """Compiled and run: the conv AE on 20x24 greyscale (its decoder crops), two steps and ``evaluation.evaluate``."""
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=2, image_shape=ODD))
    dataset = _dataset(ODD)
    state = train_lib.create_train_state(model, jax.random.key(0))
    step = train_lib.make_train_step(model.phases)
    state, first = step(state, dataset, jnp.arange(BATCH))
    state, _ = step(state, dataset, jnp.arange(BATCH))
    state, again = step(state, dataset, jnp.arange(BATCH))
    assert float(again["bce"]) < float(first["bce"])  # it learns those images
    result = evaluation.evaluate(model, state.params, state.batch_stats, dataset, batch_size=BATCH)
    chex.assert_shape([result["inputs"], result["reconstructions"]], [(8, *ODD)] * 2)
    assert 0 <= result["reconstructions"].min() and result["reconstructions"].max() <= 1


def test_pca_on_colour_images():
    images = np.asarray(_dataset(COLOUR, 40)["image"], np.float32) / 255
    model = pca.fit_pca(images, 5)
    assert pca.recode(model, images[:3]).shape == (3, *COLOUR)
    assert model.components_.shape == (5, math.prod(COLOUR))


# ------------------------------------------------------------------ what depends on the number of values

def test_per_image_weights_scale_with_the_values_of_an_image():
    assert vae.beta_to_kld_weight(1.0) == 1 / 784 == vae.beta_to_kld_weight(1.0, (28, 28, 1))
    assert vae.beta_to_kld_weight(2.0, COLOUR) == 2 / 3072
    assert wae.mmd_weight_of(wae.WAEConfig()) == 10 / 784
    assert wae.mmd_weight_of(wae.WAEConfig(image_shape=COLOUR)) == 10 / 3072
    assert wae.mmd_weight_of(wae.WAEConfig(mmd_weight=0.5, image_shape=COLOUR)) == 0.5
    assert semi_supervised.max_augment_shift((28, 28, 1)) == 13 and semi_supervised.max_augment_shift(ODD) == 9


def test_binarization_refuses_colour_images():
    assert vae.VAEConfig(binarize=True, image_shape=ODD).binarize
    with pytest.raises(ValueError, match=r"^binarize needs greyscale images, got 3 channels"):
        vae.VAEConfig(binarize=True, image_shape=COLOUR)
    with pytest.raises(ValueError, match=r"^binarization takes greyscale images, got 3 channels"):
        binarized.dynamic_binarize(jax.random.key(0), jnp.zeros((2, *COLOUR)))
    with pytest.raises(ValueError, match=r"^binarization takes greyscale images, got 3 channels"):
        binarized.static_binarize(np.zeros((2, *COLOUR), np.uint8), 0)
    grey = binarized.binarized_test_set(data.Split(np.full((2, 20, 24), 255, np.uint8), np.zeros(2, np.uint8)))
    chex.assert_shape(grey["image"], (2, *ODD))
    assert float(grey["image"].min()) == 1.0


def test_the_classifier_scores_only_images_of_its_shape(tmp_path):
    train = data.Split(np.asarray(_dataset(COLOUR, 16)["image"]), np.arange(16, dtype=np.uint8) % NUM_CLASSES)
    splits = {"train": train, "test": data.Split(train.images[:4], train.labels[:4])}
    params, accuracy = classifier.load_or_train(tmp_path, splits, jax.random.key(0), epochs=1)
    assert 0 <= accuracy <= 1 and classifier.saved_image_shape(tmp_path) == COLOUR
    predicted = classifier.predict(params, data.to_float_nhwc(train.images[:3]))
    assert predicted.shape == (3,) and predicted.max() < NUM_CLASSES
    with pytest.raises(ValueError, match=r"images of shape \(28, 28, 1\) do not fit this classifier"):
        classifier.predict(params, jnp.zeros((2, 28, 28, 1)))
    grey = {name: data.Split(split.images[..., 0], split.labels) for name, split in splits.items()}
    with pytest.raises(ValueError, match=r"trained on images of shape \(32, 32, 3\), the data's are \(32, 32, 1\)"):
        classifier.load_or_train(tmp_path, grey, jax.random.key(0))


# ------------------------------------------------------------------ the experiments end to end

def _colour_npz(mnist, path) -> None:
    """MNIST padded to 32x32 and tinted by label: 512 training and 256 test images of 10 classes, uint8 (N, 32, 32, 3)."""
    tints = np.array([[1.0, 0.5, 0.2], [0.2, 1.0, 0.5], [0.5, 0.2, 1.0]])
    arrays = {}
    for split, count_ in (("train", 512), ("test", 256)):
        images = np.pad(mnist[split].images[:count_], ((0, 0), (2, 2), (2, 2)))
        labels = mnist[split].labels[:count_]
        arrays[f"x_{split}"] = np.round(images[..., None] * tints[labels % 3][:, None, None, :]).astype(np.uint8)
        arrays[f"y_{split}"] = labels
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def colour_npz(mnist, tmp_path_factory):
    path = tmp_path_factory.mktemp("colour") / "colour.npz"
    _colour_npz(mnist, path)
    return path


EXPERIMENTS = {
    "s1_pca": (s1_pca, [], {"reconstructions.png"}),
    "s2_conv_ae": (s2_conv_ae, [], {"reconstructions.png", "denoising.png", "checkpoint"}),
    "s5_vae": (s5_vae, [], {"reconstructions.png", "interpolation.gif", "vector_arithmetic.png"}),
    "s7_cvae": (s7_cvae, [], {"style_transfer.png", "grid_label4.png"}),
    "s8_aae": (s8_aae, [], {"grid.png", "latent_epochs.gif"}),
    "s10_clustering": (s10_semi_supervised, ["--preset", "clustering"], {"clusters.png", "style_transfer.png"}),
}


# the same quick runs on an 8-class 28x28 IDX set are the experiments' own tests
# (tests/test_experiments_*.py, ``*_quick_run_on_eight_classes``)
@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_quick_runs_on_a_colour_npz(experiment, colour_npz, tmp_path):
    script, argv, figures = EXPERIMENTS[experiment]
    metrics = quick_run(script, colour_npz, tmp_path / "run", *argv)
    expected_shape = [32, 32, 3]
    if experiment != "s1_pca":  # PCA has no network
        assert metrics["settings"]["image_shape"] == expected_shape
    assert figures <= {p.name for p in (tmp_path / "run").iterdir()}
    numbers = [v for v in jax.tree.leaves(json.loads(json.dumps(metrics))) if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers if v == v)  # NaN marks a label never asked for
    if experiment == "s1_pca":
        assert metrics["compression_ratio"] == pytest.approx(math.prod(expected_shape) / metrics["pca_components"])
    if experiment == "s7_cvae":
        assert len(metrics["generation_accuracy"]["per_label"]) == 10
    if experiment == "s10_clustering":
        assert 0 <= metrics["clustering_error"] <= 1
