"""A trained VAE's (or CVAE's) report numbers in nats: test negative ELBO, IWAE NLL, KL per dimension.

``summarize`` scores every test image's negative ELBO (one posterior sample) and the
IWAE bound on -log p(x) with k importance samples on the first test images: k and the
image count default to what the device affords (a GPU: k = 500 on every image; a
CPU: k = 100 on the first 1000; a smoke run: k = 8 on the first 128), and the negative
ELBO again over exactly those images, so the two bounds compare image for image. The
summary names its targets: "binarized" ({0, 1} images, nats comparable with the
literature's) or "grey-level" (the lecture's [0, 1] targets, whose BCE includes their
own entropy, about 45.5 nats per MNIST test image). ``kl_summary``
reads the posterior's KL to the prior per latent dimension (which dimensions carry
information). Both give JSON-ready dicts for metrics.json.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aejax import likelihood, losses
from aejax.model import BatchStats, Model, Params

GPU_SAMPLES = 500  # k of the IWAE bound on a GPU, over every test image
CPU_SAMPLES, CPU_IMAGES = 100, 1000  # on a CPU: k and the first test images scored
QUICK_SAMPLES, QUICK_IMAGES = 8, 128  # a smoke run's
ACTIVE_KL_NATS = 0.01  # a latent dimension whose mean KL exceeds this carries information


def default_sizes(quick: bool = False) -> tuple[int, int | None]:
    """(k, first test images; None: all) of the IWAE bound for this device, or for a smoke run."""
    if quick:
        return QUICK_SAMPLES, QUICK_IMAGES
    if jax.devices()[0].platform == "gpu":
        return GPU_SAMPLES, None
    return CPU_SAMPLES, CPU_IMAGES


def likelihood_targets(dataset: Mapping[str, jax.Array]) -> str:
    """"binarized" when every image of ``dataset`` is 0 or 1 (0 or 255 for uint8), else "grey-level"."""
    images = jnp.asarray(dataset["image"])
    top = 255 if images.dtype == jnp.uint8 else 1
    return "binarized" if bool(jnp.all((images == 0) | (images == top))) else "grey-level"


def summarize(model: Model, params: Params, batch_stats: BatchStats, test_set: Mapping[str, jax.Array],
              key: jax.Array, num_samples: int | None = None, num_images: int | None = None, *,
              quick: bool = False) -> dict[str, Any]:
    """Test negative ELBO over all of ``test_set`` ({"image" (N, H, W, C), "label" (N,)}) and the
    IWAE NLL with ``num_samples`` importance samples over its first ``num_images``, nats per image.

    ``None`` takes ``default_sizes(quick)``'s value. A CVAE's densities are conditional
    on the labels. Returns test_negative_elbo_nats, test_images_elbo, iwae_nll_nats,
    iwae_negative_elbo_same_images_nats (the ELBO on the IWAE's images, which the IWAE
    bound undercuts), iwae_samples and iwae_images (the counts used) and
    likelihood_targets (``likelihood_targets(test_set)``).
    """
    default_samples, default_images = default_sizes(quick)
    samples = default_samples if num_samples is None else num_samples
    images = default_images if num_images is None else num_images
    if samples <= 0 or (images is not None and images <= 0):
        raise ValueError(f"num_samples and num_images must be positive, got {samples} and {images}")
    elbo_key, iwae_key = jax.random.split(key)
    full = likelihood.evaluate_negative_elbo(model, params, batch_stats, test_set, elbo_key)
    subset = {k: v[:images] for k, v in test_set.items()}
    bound = likelihood.evaluate_likelihood(model, params, batch_stats, subset, iwae_key, num_samples=samples)
    return {
        "likelihood_targets": likelihood_targets(test_set),
        "test_negative_elbo_nats": float(np.mean(full)),
        "test_images_elbo": int(len(full)),
        "iwae_nll_nats": float(np.mean(bound["iwae_nll"])),
        "iwae_negative_elbo_same_images_nats": float(np.mean(bound["negative_elbo"])),
        "iwae_samples": int(samples),
        "iwae_images": int(len(bound["iwae_nll"])),
    }


def kl_summary(mu: np.ndarray, log_var: np.ndarray) -> dict[str, Any]:
    """The mean KL(q(z | x) || N(0, I)) of posterior moments mu, log_var (N, D): in total
    (test_kl_nats), per dimension (kl_per_dim_nats, D values) and the count of dimensions
    above ``ACTIVE_KL_NATS`` (active_dims; the others stay at the prior)."""
    mu, log_var = np.asarray(mu), np.asarray(log_var)
    if mu.ndim != 2 or mu.shape != log_var.shape:
        raise ValueError(f"mu and log_var must both be (N, D), got {mu.shape} and {log_var.shape}")
    per_dim = np.asarray(jnp.mean(losses.gaussian_kl_per_dimension(jnp.asarray(mu), jnp.asarray(log_var)), axis=0))
    return {"test_kl_nats": float(per_dim.sum()), "kl_per_dim_nats": per_dim.tolist(),
            "active_dims": int(np.sum(per_dim > ACTIVE_KL_NATS))}
