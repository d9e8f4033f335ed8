"""aejax.decoder_tail: the decoder's last block over batch chunks trains as the plain composition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import decoder_tail, modules

B = 128  # two chunks of 64


def _train(decoder, variables, z, weights):
    """Logits, the updated statistics and the parameters' gradient of one training step's loss."""
    def loss(params):
        logits, updated = decoder.apply({"params": params, "batch_stats": variables["batch_stats"]}, z, train=True,
                                        mutable=["batch_stats"])
        return jnp.sum(logits * weights), (logits, updated["batch_stats"])

    (_, (logits, stats)), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
    return logits, stats, grads


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_the_fused_last_block_trains_as_the_plain_composition(monkeypatch, image_shape):
    decoder = modules.Decoder(latent_dim=8, image_shape=image_shape)
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(B, 8)), jnp.float32)
    variables = decoder.init(jax.random.key(1), z[:2], train=False)
    weights = jnp.asarray(rng.normal(size=(B, *image_shape)), jnp.float32)
    calls = []
    tail = decoder_tail.tail
    monkeypatch.setattr(decoder_tail, "tail", lambda *args: calls.append(1) or tail(*args))

    monkeypatch.setattr(modules, "FUSED_TAIL_MIN_BATCH", 10 * B)
    plain = _train(decoder, variables, z, weights)
    assert calls == []
    monkeypatch.setattr(modules, "FUSED_TAIL_MIN_BATCH", B)
    fused = _train(decoder, variables, z, weights)
    assert calls == [1]
    scale = lambda tree: max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(tree))
    for name, a, b in zip(("logits", "batch statistics", "gradients"), plain, fused):
        assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b), name
        worst = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                                   jax.tree_util.tree_leaves(b)))
        assert worst <= 1e-4 * max(scale(a), 1.0), (name, worst)


def test_small_or_uneven_batches_and_eval_keep_the_plain_composition(monkeypatch):
    decoder = modules.Decoder(latent_dim=8)
    variables = decoder.init(jax.random.key(1), jnp.zeros((2, 8)), train=False)
    calls = []
    monkeypatch.setattr(decoder_tail, "tail", lambda *args: calls.append(1))
    monkeypatch.setattr(modules, "FUSED_TAIL_MIN_BATCH", B)
    for batch, train in ((B - 64, True), (B + 1, True), (B, False)):
        decoder.apply(variables, jnp.zeros((batch, 8)), train=train, mutable=["batch_stats"])
    assert calls == []
