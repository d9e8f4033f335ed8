"""PCA as the linear autoencoder's optimum."""

import jax
import numpy as np
import pytest

from aejax import evaluation, pca


@pytest.fixture(scope="module")
def train_images(mnist):
    return mnist["train"].images / 255.0


def test_pca_keeps_87_components_for_90_percent_variance(train_images):
    model = pca.fit_pca(train_images, 0.90)
    assert model.n_components_ == 87
    assert 0.90 <= model.explained_variance_ratio_.sum() < 0.905


def test_recode_keeps_shape_and_beats_fewer_components(mnist, train_images):
    test = (mnist["test"].images[:500] / 255.0).astype(np.float32)
    errors = [evaluation.mean_squared_error(pca.recode(pca.fit_pca(train_images[:5000], k), test), test) for k in (8, 32)]
    assert pca.recode(pca.fit_pca(train_images[:2000], 8), test).shape == test.shape
    assert errors[1] < errors[0]


def test_linear_autoencoder_reaches_the_pca_error(train_images):
    """A k-unit linear AE trained with MSE on centred data matches PCA at the same k."""
    x = pca.flatten(train_images[:3000])
    centred = x - x.mean(axis=0)
    k = 16
    model = pca.fit_pca(centred, k)
    pca_mse = evaluation.mean_squared_error(pca.recode(model, centred), centred)
    _, ae_mse = pca.train_linear_autoencoder(jax.random.key(0), centred, k, steps=1500)
    assert ae_mse >= pca_mse * (1 - 1e-3)  # PCA is the optimum: nothing linear does better
    assert ae_mse <= pca_mse * 1.03  # and gradient descent gets within 3% of it


def test_psnr_of_known_noise():
    clean = np.zeros((10, 28, 28), np.float32)
    assert evaluation.psnr(clean + 0.1, clean) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shape"):
        evaluation.mean_squared_error(clean, clean[:5])


def test_interpolate_endpoints_and_shape():
    path = evaluation.interpolate(np.zeros(3), np.ones(3) * 2, 5)
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[0], 0)
    np.testing.assert_allclose(path[-1], 2)
    np.testing.assert_allclose(path[2], 1)
    with pytest.raises(ValueError, match="latents differ in shape"):
        evaluation.interpolate(np.zeros(3), np.zeros(4), 5)
