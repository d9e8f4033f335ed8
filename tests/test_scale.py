"""Whole chunks of steps on the device (lax.scan) and data parallelism over a device mesh."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import aae, autoencoder, priors
from aejax import train as train_lib

from support import random_dataset


def _train(model, dataset, chunk_steps, epochs=2, batch_size=16, seed=0):
    state = train_lib.create_train_state(model, jax.random.key(seed))
    return train_lib.train(model, state, dataset, epochs=epochs, batch_size=batch_size, chunk_steps=chunk_steps,
                           reporting=train_lib.QUIET)


MODELS = {
    "autoencoder": lambda: autoencoder.make_model(autoencoder.AEConfig(latent_dim=3, learning_rate=1e-3)),
    # three phases, three optimizers and a carry between phases
    "aae": lambda: aae.make_model(aae.AAEConfig(prior_samples_per_code=2), priors.uniform_box(2)),
}
# Relative distance allowed between chunked and step-by-step parameters. Both run the same
# steps on the same batches and keys, but XLA compiles a scan body and a lone step into
# differently fused programs, so float rounding differs; Adam's g / (|g| + eps) turns that
# into parameter noise, which the AAE's adversarial game amplifies.
FLOAT_NOISE = {"autoencoder": 1e-3, "aae": 5e-2}


def _flat(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def _relative_distance(params, reference, start):
    return float(jnp.linalg.norm(_flat(params) - _flat(reference)) / jnp.linalg.norm(_flat(reference) - _flat(start)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_chunked_epochs_equal_step_by_step(name):
    """100 examples, batch 16: 6 full batches -> one chunk of 4, 2 single steps, then a batch of 4."""
    model, dataset = MODELS[name](), random_dataset(100)
    initial = train_lib.create_train_state(model, jax.random.key(0))
    stepwise, stepwise_history = _train(model, dataset, chunk_steps=1)
    chunked, chunked_history = _train(model, dataset, chunk_steps=4)
    assert int(stepwise.step) == int(chunked.step) == 14
    np.testing.assert_array_equal(jax.random.key_data(chunked.key), jax.random.key_data(stepwise.key))
    # the first epoch's mean metrics agree to float precision
    got, want = chunked_history.epochs[0], stepwise_history.epochs[0]
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-4, atol=1e-6)
    distance = _relative_distance(chunked.params, stepwise.params, initial.params)
    assert distance < FLOAT_NOISE[name]
    assert _relative_distance(chunked.batch_stats, stepwise.batch_stats, initial.batch_stats) < FLOAT_NOISE[name]
    # the tolerance tells runs apart: the same start shuffled by another key lands far away
    other = jax.tree.map(jnp.copy, initial).replace(key=jax.random.key(1))  # train donates its state
    other, _ = train_lib.train(model, other, dataset, epochs=2, batch_size=16, chunk_steps=4,
                               reporting=train_lib.QUIET)
    assert _relative_distance(other.params, stepwise.params, initial.params) > 10 * distance


def test_chunk_covers_every_step_of_an_epoch():
    """With chunks the epoch still sees each example once: the step counter and the epoch mean agree."""
    model, dataset = MODELS["autoencoder"](), random_dataset(64)
    state, history = _train(model, dataset, chunk_steps=2, epochs=1, batch_size=16)  # 4 steps = 2 chunks
    assert int(state.step) == 4
    assert np.isfinite(history.epochs[0]["loss"])


@pytest.mark.parametrize("bad", [{"chunk_steps": 0}, {"epochs": 0}, {"batch_size": -1}])
def test_train_rejects_non_positive_counts(bad):
    model, dataset = MODELS["autoencoder"](), random_dataset(32)
    state = train_lib.create_train_state(model, jax.random.key(0))
    kwargs = {"epochs": 1, "batch_size": 16, "chunk_steps": 2, **bad}
    with pytest.raises(ValueError, match="must be positive"):
        train_lib.train(model, state, dataset, reporting=train_lib.QUIET, **kwargs)


def test_drop_last_with_too_large_a_batch_is_an_error():
    model, dataset = MODELS["autoencoder"](), random_dataset(8)
    state = train_lib.create_train_state(model, jax.random.key(0))
    with pytest.raises(ValueError, match="leaves no batch"):
        train_lib.train(model, state, dataset, epochs=1, batch_size=16, drop_last=True, reporting=train_lib.QUIET)


_EIGHT_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, {root!r})
    from aejax import autoencoder, data
    from aejax import train as train_lib
    assert jax.device_count() == 8, jax.devices()
    dataset = data.device_dataset(data.load_mnist({data_dir!r})["test"], limit={examples})
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=3))  # the lecture's Adam, lr 1e-4
    # Conv biases that feed a BatchNorm have a true gradient of 0 (the BatchNorm subtracts
    # them): Adam steps them by float noise / noise, +-lr whatever the device count. Left out.
    def flat(tree):
        return np.concatenate([np.ravel(x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
                               if not (path[-1].key == "bias" and path[1].key.startswith("Conv")
                                       and (path[0].key, path[1].key) != ("decoder", "Conv_0"))])
    start = flat(train_lib.create_train_state(model, jax.random.key(0)).params)
    out = {{}}
    for name, mesh, shuffle_seed in (("one", None, None), ("eight", train_lib.data_parallel_mesh(), None),
                                      ("eight_other_shuffle", train_lib.data_parallel_mesh(), 1)):
        state = train_lib.create_train_state(model, jax.random.key(0))
        if shuffle_seed is not None:
            state = state.replace(key=jax.random.key(shuffle_seed))
        # global batch 64 (8 per device): 4 sharded batches (2 chunks of 2) and one of 4, replicated
        state, history = train_lib.train(model, state, dataset, epochs=2, batch_size=64, chunk_steps=2,
                                         mesh=mesh, reporting=train_lib.QUIET)
        leaf = jax.tree.leaves(state.params)[0]
        out[name] = {{"losses": [e["loss"] for e in history.epochs], "devices": len(leaf.sharding.device_set),
                     "params": flat(state.params)}}
    reference = out["one"].pop("params")
    for name in out:
        params = out[name].pop("params", reference)
        out[name]["distance"] = float(np.linalg.norm(params - reference) / np.linalg.norm(reference - start))
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_data_parallel_on_eight_cpu_devices_matches_one_device(mnist_dir):
    """8 simulated CPU devices, the batch sharded: the same training as on one device.

    The sharded BatchNorm sums and gradients are reduced in another order, so the runs
    agree to float noise (BatchNorm's backward amplifies it to ~2e-4 of the gradient),
    far closer than a run whose only difference is the shuffle.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES.format(root=root, data_dir=str(mnist_dir), examples=260)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["one"]["devices"] == 1 and out["eight"]["devices"] == 8
    one, eight = out["one"]["losses"], out["eight"]["losses"]
    assert one[-1] < one[0]  # it trained
    np.testing.assert_allclose(eight[0], one[0], rtol=1e-4)
    np.testing.assert_allclose(eight, one, rtol=5e-4)  # measured: 3e-5 and 1.4e-4
    # Adam's lr * g / (|g| + eps) turns the noise into parameter differences (measured 0.07
    # of the distance travelled); a different shuffle lands several times further away (0.63)
    assert out["eight"]["distance"] < 0.15
    assert out["eight_other_shuffle"]["distance"] > 5 * out["eight"]["distance"]
