"""aejax.toy: section 6's sine-plus-circle problem and its MLP autoencoders.

Parity with the lecture's PyTorch code: the toy data and split, the (conditional) MLPs
with weights copied one to one, a few epochs of the lecture's full-batch training loop
and ``ReduceLROnPlateau(patience=50)`` epoch by epoch. The tests that compare with
PyTorch are skipped where torch is missing; the others run without it.
"""

from __future__ import annotations

import functools
import math
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from aejax import toy
from aejax import train as train_lib

from support import assert_close, count, torch_modules

POINTS_PER_SHAPE = 2000
NOISE_STD = 0.06
CENTRE = np.array([1.5, -0.5])
RADIUS = 0.5


@pytest.fixture(scope="module")
def toy_data():
    return toy.make_sine_circle(jax.random.key(0))


@pytest.fixture(scope="module")
def toy_splits(toy_data):
    return toy.split(toy_data)


# ================================================================ toy data

def test_sine_circle_shapes_dtypes_and_labels(toy_data):
    points, labels, (sine, circle) = toy_data
    assert points.shape == (2 * POINTS_PER_SHAPE, 2) and points.dtype == np.float32
    assert labels.shape == (2 * POINTS_PER_SHAPE,) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels[:POINTS_PER_SHAPE], 0)
    np.testing.assert_array_equal(labels[POINTS_PER_SHAPE:], 1)
    assert sine.shape == circle.shape == (POINTS_PER_SHAPE, 2)
    assert np.all(np.isfinite(points))


def test_sine_circle_noise_free_curves_are_exact(toy_data):
    _, _, (sine, circle) = toy_data
    # sine: evenly spaced x over [-2.2, 2.2], y = sin(x) exactly
    np.testing.assert_array_equal(sine[:, 0], np.linspace(-2.2, 2.2, POINTS_PER_SHAPE))
    np.testing.assert_array_equal(sine[:, 1], np.sin(sine[:, 0]))
    # circle: 0.5 * (sin t, cos t) + (1.5, -0.5), t evenly spaced over [0, 2 pi]
    np.testing.assert_allclose(np.linalg.norm(circle - CENTRE, axis=1), RADIUS, rtol=0, atol=1e-12)
    t = np.linspace(0, 2 * np.pi, POINTS_PER_SHAPE)
    np.testing.assert_allclose(circle, RADIUS * np.stack([np.sin(t), np.cos(t)], 1) + CENTRE, rtol=0, atol=1e-12)
    np.testing.assert_allclose(circle[0], [1.5, 0.0], atol=1e-12)  # t = 0: (sin 0, cos 0) = (0, 1)
    np.testing.assert_allclose(circle[-1], circle[0], atol=1e-12)  # the curve closes
    # no noise: the points are the curves themselves (in float32)
    clean = toy.make_sine_circle(jax.random.key(5), noise_std=0.0)
    np.testing.assert_array_equal(clean.points, np.concatenate([sine, circle]).astype(np.float32))


def test_sine_circle_noise_statistics(toy_data):
    points, _, curves = toy_data
    residual = points.astype(np.float64) - np.concatenate(curves)
    # 8000 N(0, 0.06^2) draws: the std's standard error is ~0.0005, the mean's ~0.0007
    assert abs(residual.std() - NOISE_STD) < 0.003, residual.std()
    assert np.all(np.abs(residual.std(axis=0) - NOISE_STD) < 0.004), residual.std(axis=0)
    assert np.all(np.abs(residual.mean(axis=0)) < 0.004), residual.mean(axis=0)
    # independent per point and coordinate: tiny correlation between the two coordinates
    assert abs(np.corrcoef(residual.T)[0, 1]) < 0.05
    # the noise scales linearly with noise_std (same key, same draws)
    doubled = toy.make_sine_circle(jax.random.key(0), noise_std=2 * NOISE_STD)
    assert_close(doubled.points.astype(np.float64) - np.concatenate(curves), 2 * residual, atol=1e-6, rtol=0)


def test_sine_circle_reproducible_from_key(toy_data):
    again = toy.make_sine_circle(jax.random.key(0))
    np.testing.assert_array_equal(again.points, toy_data.points)
    np.testing.assert_array_equal(again.labels, toy_data.labels)
    other = toy.make_sine_circle(jax.random.key(1))
    assert not np.allclose(other.points, toy_data.points)
    np.testing.assert_array_equal(other.curves[0], toy_data.curves[0])  # only the noise depends on the key
    np.testing.assert_array_equal(other.curves[1], toy_data.curves[1])


def test_sine_circle_points_per_shape():
    small = toy.make_sine_circle(jax.random.key(0), points_per_shape=7)
    assert small.points.shape == (14, 2)
    np.testing.assert_array_equal(small.labels, [0] * 7 + [1] * 7)


@pytest.mark.parametrize("kwargs", [{"points_per_shape": 0}, {"points_per_shape": -3}, {"noise_std": -0.01}])
def test_sine_circle_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="points_per_shape must be > 0 and noise_std >= 0"):
        toy.make_sine_circle(jax.random.key(0), **kwargs)


def test_split_is_sklearns_75_25_split(toy_data, toy_splits):
    x_train, x_test, y_train, y_test = train_test_split(toy_data.points, toy_data.labels, test_size=0.25,
                                                        random_state=42)
    assert set(toy_splits) == {"train", "test"}
    for name, x, y, n in (("train", x_train, y_train, 3000), ("test", x_test, y_test, 1000)):
        part = toy_splits[name]
        assert set(part) == {"points", "label"}
        assert part["points"].shape == (n, 2) and part["points"].dtype == jnp.float32
        assert part["label"].shape == (n,) and part["label"].dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(part["points"]), x)
        np.testing.assert_array_equal(np.asarray(part["label"]), y)
    # shuffled (not the first 3000 rows), and together the split holds every point once
    assert not np.array_equal(np.asarray(toy_splits["train"]["label"]), toy_data.labels[:3000])
    both = np.concatenate([np.asarray(toy_splits["train"]["points"]), np.asarray(toy_splits["test"]["points"])])
    np.testing.assert_array_equal(np.unique(both, axis=0), np.unique(toy_data.points, axis=0))
    assert 0.4 < float(np.mean(np.asarray(toy_splits["test"]["label"]))) < 0.6
    # the seed is the split's random_state
    other = toy.split(toy_data, seed=0)
    assert not np.array_equal(np.asarray(other["test"]["points"]), x_test)


# ================================================================ toy MLPs vs PyTorch

def _torch_mlp(sizes):
    _, tnn, _ = torch_modules()
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(tnn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(tnn.LeakyReLU(0.2))
    return tnn.Sequential(*layers)


@functools.cache
def _torch_toy_ae_class():
    """The lecture's toy autoencoder (a torch.nn.Module, so made once torch is there)."""
    torch, tnn, _ = torch_modules()

    class TorchToyAE(tnn.Module):
        """``conditional``: the label (float 0/1) is appended to x and to z."""

        def __init__(self, conditional: bool):
            super().__init__()
            c = int(conditional)
            self.conditional = conditional
            self.encoder = _torch_mlp((2 + c, 32, 64, 1))
            self.decoder = _torch_mlp((1 + c, 64, 32, 2))

        def encode(self, x, y=None):
            return self.encoder(torch.cat([x, y.view(-1, 1)], 1) if self.conditional else x)

        def decode(self, z, y=None):
            return self.decoder(torch.cat([z, y.view(-1, 1)], 1) if self.conditional else z)

        def forward(self, x, y=None):
            return self.decode(self.encode(x, y), y)

    return TorchToyAE


def _sequential_to_flax(seq) -> dict:
    _, tnn, ref = torch_modules()
    linears = [m for m in seq if isinstance(m, tnn.Linear)]
    return {f"Dense_{i}": {"kernel": jnp.asarray(ref._np(m.weight).T.copy()), "bias": jnp.asarray(ref._np(m.bias))}
            for i, m in enumerate(linears)}


def _toy_params(torch_ae) -> dict:
    return {"encoder": _sequential_to_flax(torch_ae.encoder), "decoder": _sequential_to_flax(torch_ae.decoder)}


def _torch_toy(conditional: bool, seed: int = 0):
    torch, _, _ = torch_modules()
    torch.manual_seed(seed)
    return _torch_toy_ae_class()(conditional)


def _t(x):
    torch, _, _ = torch_modules()
    return torch.from_numpy(np.array(x, np.float32))


# the lecture's counts: plain encoder 2*32+32 + 32*64+64 + 64*1+1, decoder 1*64+64 + 64*32+32 + 32*2+2;
# conditional: one more input to each first layer
@pytest.mark.slow
@pytest.mark.parametrize("conditional, encoder_count, decoder_count",
                         [(False, 2273, 2274), (True, 2305, 2338)])
def test_toy_parameter_tree_and_counts(toy_splits, conditional, encoder_count, decoder_count):
    torch_modules()
    model = toy.make_model(toy.ToyConfig(conditional=conditional), toy_splits["test"])
    params, batch_stats = model.init(jax.random.key(0))
    torch_ae = _torch_toy(conditional)
    assert count(params["encoder"]) == encoder_count == sum(p.numel() for p in torch_ae.encoder.parameters())
    assert count(params["decoder"]) == decoder_count == sum(p.numel() for p in torch_ae.decoder.parameters())
    assert batch_stats == {"encoder": {}, "decoder": {}}
    chex.assert_trees_all_equal_shapes_and_dtypes(_toy_params(torch_ae), params)
    # PyTorch-like init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    first = params["encoder"]["Dense_0"]["kernel"]
    bound = 1 / math.sqrt(2 + int(conditional))
    assert float(jnp.abs(first).max()) <= bound + 1e-7
    assert float(jnp.abs(params["encoder"]["Dense_1"]["kernel"]).max()) <= 1 / math.sqrt(32) + 1e-7
    assert float(jnp.abs(params["decoder"]["Dense_1"]["kernel"]).max()) > 0.8 / math.sqrt(64)


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [False, True])
def test_toy_model_matches_pytorch(toy_splits, conditional):
    torch, tnn, ref = torch_modules()
    model = toy.make_model(toy.ToyConfig(conditional=conditional), toy_splits["test"])
    torch_ae = _torch_toy(conditional, seed=1)
    params = _toy_params(torch_ae)
    batch_stats = {"encoder": {}, "decoder": {}}
    rng = np.random.default_rng(0)
    points = rng.normal(0, 1.5, (64, 2)).astype(np.float32)
    labels = rng.integers(0, 2, 64).astype(np.int32)
    codes_in = rng.normal(0, 2, (64, 1)).astype(np.float32)
    y = _t(labels)
    with torch.no_grad():
        want_codes = ref._np(torch_ae.encode(_t(points), y))
        want_decoded = ref._np(torch_ae.decode(_t(codes_in), y))
        want_restored = ref._np(torch_ae(_t(points), y))
    codes = model.encode(params, batch_stats, jnp.asarray(points), jnp.asarray(labels))
    chex.assert_shape(codes, (64, 1))
    assert_close(codes, want_codes)
    decoded = model.decode(params, batch_stats, jnp.asarray(codes_in), jnp.asarray(labels))
    chex.assert_shape(decoded, (64, 2))
    assert np.abs(want_decoded).max() > 0.1
    assert_close(decoded, want_decoded)
    assert_close(model.decode(params, batch_stats, codes, jnp.asarray(labels)), want_restored)
    if conditional:
        # the label matters, and it is required
        flipped = model.decode(params, batch_stats, jnp.asarray(codes_in), jnp.asarray(1 - labels))
        assert np.abs(np.asarray(flipped) - want_decoded).max() > 1e-3
        with pytest.raises(ValueError, match="labels of shape"):
            model.encode(params, batch_stats, jnp.asarray(points))
    else:
        # a plain model ignores labels
        assert_close(model.encode(params, batch_stats, jnp.asarray(points)), want_codes)

    # the loss: torch's MSELoss on the batch, and the test MSE as the metric the plateau schedule watches
    batch = {"points": jnp.asarray(points), "label": jnp.asarray(labels)}
    loss, _, metrics, _ = model.phases[0].loss_fn(params, batch_stats, batch, jax.random.key(0), 0)
    test = toy_splits["test"]
    with torch.no_grad():
        want_loss = tnn.functional.mse_loss(torch_ae(_t(points), y), _t(points)).item()
        want_test = tnn.functional.mse_loss(torch_ae(_t(test["points"]), _t(test["label"])), _t(test["points"])).item()
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["test_loss"]), want_test, rtol=1e-5)
    assert model.phases[0].value_metric == "test_loss"


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [False, True])
def test_toy_training_epochs_match_pytorch_loop(toy_splits, conditional):
    """A few epochs of the lecture's loop (full batch; the scheduler stepped with the test loss
    before optimizer.step()) against train.train from the same weights."""
    torch, tnn, _ = torch_modules()
    epochs = 4
    torch_ae = _torch_toy(conditional, seed=2)
    config = toy.ToyConfig(conditional=conditional)
    model = toy.make_model(config, toy_splits["test"])
    phase = model.phases[0]
    params = _toy_params(torch_ae)
    state = train_lib.TrainState(step=jnp.zeros((), jnp.int32), params=jax.tree_util.tree_map(jnp.copy, params),
                                 batch_stats={"encoder": {}, "decoder": {}},
                                 opt_states={phase.name: phase.optimizer.init(params)}, key=jax.random.key(0))
    state, history = train_lib.train(model, state, toy_splits["train"], epochs=epochs, batch_size=3000,
                                     gather=train_lib.take_batch, reporting=train_lib.QUIET)

    train_x, train_y = _t(toy_splits["train"]["points"]), _t(toy_splits["train"]["label"])
    test_x, test_y = _t(toy_splits["test"]["points"]), _t(toy_splits["test"]["label"])
    optimizer = torch.optim.Adam(torch_ae.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=50)
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = tnn.functional.mse_loss(torch_ae(train_x, train_y), train_x)
        loss.backward()
        with torch.no_grad():
            test_loss = tnn.functional.mse_loss(torch_ae(test_x, test_y), test_x)
        scheduler.step(test_loss.item())
        optimizer.step()
        np.testing.assert_allclose(history.epochs[epoch]["loss"], loss.item(), rtol=1e-5)
        np.testing.assert_allclose(history.epochs[epoch]["test_loss"], test_loss.item(), rtol=1e-5)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), state.params, params)
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-3  # the weights did change (4 steps of ~1e-3)
    chex.assert_trees_all_close(state.params, _toy_params(torch_ae), atol=1e-6, rtol=1e-5)
    assert toy.learning_rate(config, state) == pytest.approx(optimizer.param_groups[0]["lr"])


# ================================================================ the plateau schedule vs PyTorch

def _plateau_sequences():
    rng = np.random.default_rng(0)
    improving_then_flat = [1.0 - 0.05 * i for i in range(10)] + [0.5] * 300
    noisy = list(np.abs(rng.normal(1.0, 0.1, 400)))
    # relative steps of 3e-5, below the 1e-4 threshold one by one but not when added up
    # against the best value so far
    slow = [float((1 - 3e-5) ** i) for i in range(300)]
    # improvements and plateaus interleaved, one improvement right at the edge of patience
    mixed = ([0.999 ** i for i in range(60)] + [0.95] * 50 + [0.9] + [0.9] * 120 + [0.8] + [0.85] * 70)
    return {"improving_then_flat": improving_then_flat, "noisy": noisy, "slow": slow, "mixed": mixed}


PLATEAU_SEQUENCES = _plateau_sequences()


def _torch_plateau_rates(values, patience, factor, lr=1e-3):
    torch, tnn, _ = torch_modules()
    param = tnn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=patience, factor=factor)
    rates = []
    for v in values:
        scheduler.step(float(v))
        rates.append(optimizer.param_groups[0]["lr"])
    return np.array(rates)


def _aejax_plateau_states(values, config):
    model = toy.make_model(config, {"points": jnp.zeros((1, 2)), "label": jnp.zeros((1,), jnp.int32)})
    optimizer = model.phases[0].optimizer
    params = {"w": jnp.zeros((3,))}
    grads = {"w": jnp.ones((3,))}
    opt_state = optimizer.init(params)
    update = jax.jit(lambda s, v: optimizer.update(grads, s, params, value=v)[1])
    states = []
    for v in values:
        opt_state = update(opt_state, jnp.float32(v))
        states.append(opt_state)
    return states


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PLATEAU_SEQUENCES))
@pytest.mark.parametrize("patience, factor", [(50, 0.1), (2, 0.1), (5, 0.5)])
def test_plateau_schedule_matches_torch(name, patience, factor):
    values = PLATEAU_SEQUENCES[name]
    config = toy.ToyConfig(plateau_patience=patience, plateau_factor=factor)
    want = _torch_plateau_rates(values, patience, factor)
    # Compared until the rate first falls below 1e-7, a decade under the stop rule's 1e-6:
    # further down torch's ``eps=1e-8`` (no cut smaller than 1e-8) stops its cuts while
    # optax keeps cutting, which no run of the lecture's loop reaches.
    below = np.flatnonzero(want < 1e-7)
    if below.size:
        values, want = values[:below[0] + 1], want[:below[0] + 1]
    states = _aejax_plateau_states(values, config)
    got = np.array([config.learning_rate * float(s[1].scale) for s in states])
    # the same cuts on the same epochs ...
    want_cuts, got_cuts = np.flatnonzero(np.diff(want)) + 1, np.flatnonzero(np.diff(got)) + 1
    np.testing.assert_array_equal(got_cuts, want_cuts, err_msg=f"epochs of the cuts differ ({name})")
    # ... and the same rate at every epoch (the scale is float32)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    # the lecture's stop rule (lr < 1e-6), read through toy.should_stop, fires on the same epoch
    stop = toy.should_stop(config)
    got_stop = [stop(types.SimpleNamespace(opt_states={"toy": s}), {}) for s in states]
    np.testing.assert_array_equal(got_stop, want < 1e-6)
    if name == "slow" and patience >= 4:  # an improvement every 4 epochs
        assert len(want_cuts) == 0  # the accumulated improvement counts: no plateau
    if name == "improving_then_flat":
        # 11 improving epochs (0.5 beats 0.55), then a cut on the (patience + 1)-th epoch without one
        assert want_cuts[0] == 11 + patience


@pytest.mark.slow
def test_plateau_schedule_lecture_stop_epoch():
    """With the lecture's settings the rate falls below 1e-6 on the fourth cut
    (1e-3 * 0.1^3 rounds to just above 1e-6 in both float64 and float32)."""
    values = PLATEAU_SEQUENCES["improving_then_flat"]
    config = toy.ToyConfig()
    want = _torch_plateau_rates(values, 50, 0.1)
    states = _aejax_plateau_states(values, config)
    stop = toy.should_stop(config)
    first_torch = int(np.argmax(want < 1e-6))
    first_aejax = next(i for i, s in enumerate(states) if stop(types.SimpleNamespace(opt_states={"toy": s}), {}))
    assert first_torch == first_aejax == 11 + 4 * 51 - 1  # 0-based index of the fourth cut
    assert toy.learning_rate(config, types.SimpleNamespace(opt_states={"toy": states[first_aejax - 1]})) >= 1e-6


# ================================================================ toy training runs

def _fit(config, splits, key, epochs, stop=True):
    model = toy.make_model(config, splits["test"])
    state = train_lib.create_train_state(model, key)
    state, history = train_lib.train(model, state, splits["train"], epochs=epochs, batch_size=3000,
                                      gather=train_lib.take_batch,
                                      callbacks=train_lib.Callbacks(should_stop=toy.should_stop(config) if stop else None),
                                      reporting=train_lib.QUIET)
    return model, state, history


def _test_mse(model, state, test):
    codes = model.encode(state.params, state.batch_stats, test["points"], test["label"])
    restored = model.decode(state.params, state.batch_stats, codes, test["label"])
    return float(jnp.mean(jnp.square(restored - test["points"])))


def test_toy_run_stops_when_rate_falls_below_minimum(toy_splits):
    # a rate so small the test loss never improves by the 1e-4 threshold after epoch 1:
    # epochs 2-4 are bad -> first cut on epoch 4, epochs 5-7 bad -> second cut on epoch 7,
    # when the rate (1e-10) is below the minimum (2e-10): the run stops there.
    config = toy.ToyConfig(learning_rate=1e-8, plateau_patience=2, plateau_factor=0.1, min_learning_rate=2e-10)
    model, state, history = _fit(config, toy_splits, jax.random.key(0), epochs=50)
    assert len(history.epochs) == 7
    assert int(state.step) == 7
    assert toy.learning_rate(config, state) < config.min_learning_rate
    assert toy.learning_rate(config, state) == pytest.approx(1e-10, rel=1e-6)
    # the test loss reported is that of the parameters before each step
    fresh = train_lib.create_train_state(model, jax.random.key(0))
    np.testing.assert_allclose(history.epochs[0]["test_loss"], _test_mse(model, fresh, toy_splits["test"]), rtol=1e-5)

    # without a stop rule it runs all its epochs (cutting again on epoch 10)
    _, state, history = _fit(config, toy_splits, jax.random.key(0), epochs=10, stop=False)
    assert len(history.epochs) == 10
    assert toy.learning_rate(config, state) == pytest.approx(1e-11, rel=1e-6)


def test_take_batch_takes_rows_of_every_array():
    dataset = {"points": jnp.arange(10, dtype=jnp.float32).reshape(5, 2),
               "label": jnp.asarray([0, 1, 2, 3, 4], jnp.int32),
               "image": jnp.arange(5 * 28 * 28, dtype=jnp.int32).astype(jnp.uint8).reshape(5, 28, 28)}
    indices = jnp.asarray([3, 0, 3])
    batch = train_lib.take_batch(dataset, indices)
    assert set(batch) == set(dataset)
    np.testing.assert_array_equal(batch["points"], [[6, 7], [0, 1], [6, 7]])
    np.testing.assert_array_equal(batch["label"], [3, 0, 3])
    # unchanged: no scaling or channel axis, unlike data.gather_batch
    assert batch["image"].dtype == jnp.uint8 and batch["image"].shape == (3, 28, 28)
    np.testing.assert_array_equal(batch["image"], np.asarray(dataset["image"])[[3, 0, 3]])
    assert batch["points"].dtype == jnp.float32 and batch["label"].dtype == jnp.int32


def test_conditional_toy_autoencoder_beats_plain(toy_splits):
    """The lecture's point: knowing the label, a 1-d code reconstructs both shapes far better.

    After 200 full-batch epochs the plain model's test MSE was 3.2-3.7 times the
    conditional one's over 6 seeds; the margin asserted is 2x.
    """
    epochs = 200
    results = {}
    for conditional in (False, True):
        config = toy.ToyConfig(conditional=conditional, max_epochs=epochs)
        model, state, history = _fit(config, toy_splits, jax.random.key(3), epochs=epochs)
        assert len(history.epochs) == epochs  # no early stop
        mse = _test_mse(model, state, toy_splits["test"])
        assert mse < 0.5 * history.epochs[0]["test_loss"]  # it learned
        results[conditional] = mse
    assert results[True] < 0.5 * results[False], results
