"""Numbers and latent-space helpers used by the experiments (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np


def mean_squared_error(estimate: np.ndarray, target: np.ndarray) -> float:
    """MSE over every pixel of every image; shapes must match."""
    estimate, target = np.asarray(estimate, np.float64), np.asarray(target, np.float64)
    if estimate.shape != target.shape:
        raise ValueError(f"estimate shape {estimate.shape} != target shape {target.shape}")
    return float(np.mean(np.square(estimate - target)))


def psnr(estimate: np.ndarray, clean: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of ``estimate`` against ``clean``.

    From the MSE over the whole set: ``10 log10(data_range^2 / MSE)``. Noise of std 0.3
    on [0, 1] images gives about 10.5 dB.
    """
    return float(10 * np.log10(data_range**2 / mean_squared_error(estimate, clean)))


def interpolate(z_start: np.ndarray, z_end: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` points on the segment from z_start (D,) to z_end (D,), ends included: (steps, D)."""
    z_start, z_end = np.asarray(z_start).reshape(-1), np.asarray(z_end).reshape(-1)
    if z_start.shape != z_end.shape:
        raise ValueError(f"latents differ in shape: {z_start.shape} vs {z_end.shape}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    return (1 - weights) * z_start + weights * z_end


def probe_accuracy(features: np.ndarray, labels: np.ndarray, kind: str = "logistic") -> float:
    """How much of ``labels`` (N,) a fresh probe reads from ``features`` (N, D).

    The probe (``"logistic"``: scikit-learn logistic regression on standardised
    features; ``"knn"``: 10 nearest neighbours, which also sees non-linear structure) is
    fitted on the first half and scored on the second. Chance is the majority share.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 2 or labels.shape != features.shape[:1] or len(labels) < 4:
        raise ValueError(f"need features (N, D) and labels (N,) with N >= 4, got {features.shape} and {labels.shape}")
    probes = {"logistic": lambda: LogisticRegression(max_iter=1000), "knn": lambda: KNeighborsClassifier(10)}
    if kind not in probes:
        raise ValueError(f"kind must be one of {sorted(probes)}, got {kind!r}")
    half = len(labels) // 2
    probe = make_pipeline(StandardScaler(), probes[kind]()).fit(features[:half], labels[:half])
    return float(probe.score(features[half:], labels[half:]))
