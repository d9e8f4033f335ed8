"""PCA as the simplest (linear) autoencoder, with scikit-learn, and its trained twin.

Images (N, H, W[, C]) are flattened to (N, H * W * C) floats in [0, 1]: (N, 784) for MNIST.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.decomposition import PCA


def flatten(images: np.ndarray) -> np.ndarray:
    """(N, H, W[, C]) -> (N, H * W * C) float32: (N, 784) for MNIST."""
    images = np.asarray(images, dtype=np.float32)
    return images.reshape(images.shape[0], -1)


def fit_pca(train_images: np.ndarray, n_components: float | int = 0.90, seed: int = 42) -> PCA:
    """PCA on flattened images; a float keeps that share of variance (0.90 -> 87 on MNIST)."""
    return PCA(n_components, random_state=seed).fit(flatten(train_images))


def recode(pca: PCA, images: np.ndarray) -> np.ndarray:
    """Encode then decode: images of shape (N, H, W[, C]) back in the same shape."""
    images = np.asarray(images)
    return pca.inverse_transform(pca.transform(flatten(images))).reshape(images.shape).astype(np.float32)


def train_linear_autoencoder(
    key: jax.Array, centred: np.ndarray, k: int, steps: int = 3000, learning_rate: float = 1e-2
) -> tuple[dict[str, jax.Array], float]:
    """A k-unit linear autoencoder (one Dense each way, no activation) trained with MSE.

    centred: (N, D) inputs with zero column means. Full-batch Adam. Returns the
    weights {"encoder": (D, k), "decoder": (k, D)} and the final per-element MSE,
    which PCA's optimum at the same k bounds from below.
    """
    x = jnp.asarray(centred, jnp.float32)
    d = x.shape[1]
    enc_key, dec_key = jax.random.split(key)
    params = {"encoder": jax.random.normal(enc_key, (d, k)) / jnp.sqrt(d),
              "decoder": jax.random.normal(dec_key, (k, d)) / jnp.sqrt(k)}
    optimizer = optax.adam(learning_rate)

    def loss_fn(p):
        return jnp.mean(jnp.square(x @ p["encoder"] @ p["decoder"] - x))

    @jax.jit
    def run(params):
        def body(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), _ = jax.lax.scan(body, (params, optimizer.init(params)), None, length=steps)
        return params, loss_fn(params)

    params, loss = run(params)
    return params, float(loss)
