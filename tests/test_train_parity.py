"""Two training steps of aejax's conv AE equal two steps of the lecture's PyTorch loop.

Same weights, same batch: the BCE loss, Adam with PyTorch's coupled weight decay,
BatchNorm in train mode (outputs and running statistics) must all agree.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import autoencoder
from aejax import train as train_lib

torch = pytest.importorskip("torch")  # every test here compares with the lecture's PyTorch loop
F = torch.nn.functional

from torch_reference import TorchDecoder, TorchEncoder, _nchw, torch_to_flax  # noqa: E402 (needs torch)

pytestmark = pytest.mark.slow

LATENT, BATCH, LR, WEIGHT_DECAY, STEPS = 4, 16, 1e-3, 1e-5, 2


def _conv_biases_before_batchnorm(tree):
    """Paths of conv biases that feed a BatchNorm: their true gradient is exactly zero,
    so Adam's step on them is float noise divided by noise (g / (|g| + eps))."""
    return {("encoder", f"Conv_{i}", "bias") for i in range(5)} | \
        {("decoder", f"ConvTranspose2x_{i}", "bias") for i in range(5)}


# The library convolution: the im2col forms of the CPU default compute the same function
# (values and gradients against lax and PyTorch in test_modules), but sum in another
# order, and the +-lr noise steps of the conv biases feeding a BatchNorm then differ;
# Adam's second step, dividing by |g|, spreads that over many small-gradient entries.
@pytest.mark.parametrize("conv_impl", ["lax"])
def test_two_adam_steps_match_pytorch(mnist, conv_impl):
    torch.manual_seed(0)
    encoder, decoder = TorchEncoder(LATENT), TorchDecoder(LATENT)
    images = (mnist["test"].images[:BATCH] / 255.0).astype(np.float32)[..., None]

    enc_vars, dec_vars = torch_to_flax(encoder), torch_to_flax(decoder)
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=LATENT, learning_rate=LR, weight_decay=WEIGHT_DECAY,
                                                             conv_impl=conv_impl))
    params = {"encoder": enc_vars["params"], "decoder": dec_vars["params"]}
    stats = {"encoder": enc_vars["batch_stats"], "decoder": dec_vars["batch_stats"]}
    phase = model.phases[0]
    state = train_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                                 opt_states={phase.name: phase.optimizer.init(params)}, key=jax.random.key(0))
    dataset = {"image": jnp.asarray(mnist["test"].images[:BATCH]), "label": jnp.zeros(BATCH, jnp.int32)}
    step = train_lib.make_train_step(model.phases)

    optimizer = torch.optim.Adam(itertools.chain(encoder.parameters(), decoder.parameters()), lr=LR,
                                 weight_decay=WEIGHT_DECAY)
    encoder.train(), decoder.train()
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch_loss = F.binary_cross_entropy(decoder(encoder(_nchw(images))), _nchw(images))
        torch_loss.backward()
        optimizer.step()
        state, metrics = step(state, dataset, jnp.arange(BATCH))
        np.testing.assert_allclose(float(metrics["loss"]), torch_loss.item(), rtol=1e-5)

    expected_enc, expected_dec = torch_to_flax(encoder), torch_to_flax(decoder)
    expected = {"params": {"encoder": expected_enc["params"], "decoder": expected_dec["params"]},
                "batch_stats": {"encoder": expected_enc["batch_stats"], "decoder": expected_dec["batch_stats"]}}
    skipped = _conv_biases_before_batchnorm(expected["params"])
    compared = 0
    for group, got_tree in (("params", state.params), ("batch_stats", state.batch_stats)):
        got_flat = dict(jax.tree_util.tree_flatten_with_path(got_tree)[0])
        for path, want in jax.tree_util.tree_flatten_with_path(expected[group])[0]:
            keys = tuple(k.key for k in path)
            if group == "params" and keys in skipped:
                continue
            error = np.abs(np.asarray(got_flat[path]) - np.asarray(want))
            # Adam's first steps are lr * g / (|g| + eps): where |g| is near eps, float
            # noise in g moves the step by up to lr (the skipped biases, and a few kernel
            # entries); a BatchNorm's running mean inherits its conv bias's difference.
            # Which entries those are depends on XLA's reduction order, so on the thread
            # count (on one core 3 of the decoder's 256 BatchNorm biases; on two, within 2).
            # So up to 2% of entries (at least three per array) may differ, by no more than
            # the steps taken; the rest must agree.
            close = error <= 5e-6 + 1e-4 * np.abs(np.asarray(want))
            allowed = max(3, close.size // 50)
            assert (~close).sum() <= allowed, f"{group} {keys}: {(~close).sum()} of {close.size} differ"
            assert error.max() <= 2 * LR * STEPS, f"{group} {keys}: max error {error.max():.3g}"
            compared += 1
    assert compared > 40
    # and the step did move the weights: not comparing two untouched copies
    before = torch_to_flax(TorchEncoder(LATENT))["params"]
    assert not np.allclose(np.asarray(state.params["encoder"]["Dense_0"]["kernel"]),
                           np.asarray(before["Dense_0"]["kernel"]))
