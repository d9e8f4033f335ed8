"""What several experiments share: the interpolation classes (s4_interpolation, s5_vae,
s11_beta_vae) and the VAE's evaluation and figures (s5_vae, s11_beta_vae)."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from aejax import data, evaluation, flags, likelihood, likelihood_metrics, plots, runs
from aejax import train as train_lib

LECTURE_INTERPOLATION = (7, 6)  # the lecture interpolates from a 7 to a 6
LECTURE_ARITHMETIC = (1, 9)  # the lecture's vector arithmetic: z(1) + z(9 first) - z(9 second)
GRID_STEPS = 20
GRID_LIMIT = 3.0  # a latent-2 grid covers [-3, 3]^2
SHOWN = 9  # test images in the reconstruction and denoising figures
ROW_STEPS = 10  # decoded points in an interpolation row
GIF_FRAMES = 200  # frames of an interpolation GIF


@dataclasses.dataclass(frozen=True)
class InterpolationClasses:
    """The two classes an interpolation figure runs between; ``resolve`` fits them to the data."""

    start_class: int | None = flags.field(
        None, f"class to start the interpolation from (none: the lecture's {LECTURE_INTERPOLATION[0]} if the data "
              "have it, else the last class)")
    end_class: int | None = flags.field(
        None, f"class to end the interpolation at (none: the lecture's {LECTURE_INTERPOLATION[1]} if the data have "
              "it, else the last class other than the start)")

    def __post_init__(self):
        for name in ("start_class", "end_class"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be a class label >= 0, got {value}")
        if self.start_class is not None and self.start_class == self.end_class:
            raise ValueError(f"start_class and end_class must differ, got {self.start_class} for both")

    def resolve(self, num_classes: int) -> tuple[int, int]:
        """(start, end) for data with labels 0 .. num_classes - 1; a ValueError names a class the data lack."""
        if num_classes < 2:
            raise ValueError(f"interpolating between two classes needs at least two, the data have {num_classes}")
        start = _choose_class(self.start_class, LECTURE_INTERPOLATION[0], num_classes, self.end_class)
        return start, _choose_class(self.end_class, LECTURE_INTERPOLATION[1], num_classes, start)


def _choose_class(given: int | None, lecture: int, num_classes: int, other: int | None) -> int:
    """``given``, else the lecture's class if the data have it (and it is not ``other``), else the last
    class other than ``other``."""
    if given is not None:
        if given >= num_classes:
            raise ValueError(f"class {given} is not in the data (labels 0..{num_classes - 1})")
        return given
    if lecture < num_classes and lecture != other:
        return lecture
    return max(c for c in range(num_classes) if c != other)


class FigureClasses(NamedTuple):
    """The classes of the VAE figures: the interpolation's ``start`` -> ``end``, and the vector
    arithmetic's ``one`` and ``nine`` (z(one) + z(nine first) - z(nine second))."""

    start: int
    end: int
    one: int
    nine: int


def figure_classes(interpolation: InterpolationClasses, num_classes: int) -> FigureClasses:
    """The figures' classes for data with labels 0 .. num_classes - 1: the interpolation's (a usage
    error names a class the data lack), the lecture's 1 and 9 where the data have them, else class 0
    and the last class."""
    with runs.usage_errors():
        start, end = interpolation.resolve(num_classes)
    one, nine = LECTURE_ARITHMETIC
    return FigureClasses(start, end, one if one < num_classes else 0, nine if nine < num_classes else num_classes - 1)


def vae_evaluation(run: runs.Run, out: pathlib.Path, model: train_lib.Model, state: train_lib.TrainState,
                   test_split: data.Split, classes: FigureClasses, *, test_set: Mapping[str, jax.Array],
                   scored_set: Mapping[str, jax.Array], noise_key: jax.Array, likelihood_key: jax.Array,
                   iwae_samples: int | None, iwae_images: int | None, name: str, description: str,
                   latent_dim: int) -> dict[str, Any]:
    """A trained VAE's test metrics, and its figures written to ``out``.

    Metrics: reconstruction BCE / MSE of ``test_set``; PSNR of noisy test images (std 0.3,
    from ``noise_key``) and of their reconstructions; negative ELBO and IWAE NLL
    (``likelihood_metrics.summarize`` with ``iwae_samples`` / ``iwae_images``, from
    ``likelihood_key``) and the posterior's KL per dimension on ``scored_set``; the classes
    drawn. Figures: reconstructions and denoising of ``SHOWN`` test images (the model
    called ``name``), the start -> end interpolation (a row and a GIF, titled with
    ``description``), the vector arithmetic, for ``latent_dim`` 2 the posterior means of
    ``scored_set`` and a decoded grid. ``run.seconds`` gets their times.
    """
    params, stats = state.params, state.batch_stats
    with run.timer("evaluation"):
        test = evaluation.evaluate(model, params, stats, test_set)
        clean, noisy_set = evaluation.noisy_test_set(test_split, noise_key)
        denoised = evaluation.evaluate(model, params, stats, noisy_set)["reconstructions"]
        mu, log_var = likelihood.posterior_moments(model, params, stats, scored_set)
        metrics = {
            **evaluation.reconstruction_metrics(test),
            "psnr_noisy_db": evaluation.psnr(np.asarray(noisy_set["image"]), clean),
            "psnr_vae_eval_db": evaluation.psnr(denoised, clean),
            **likelihood_metrics.summarize(model, params, stats, scored_set, likelihood_key, iwae_samples,
                                           iwae_images, quick=run.options.quick),
            **likelihood_metrics.kl_summary(mu, log_var),
            "interpolation_classes": [classes.start, classes.end],
            "vector_arithmetic_classes": [classes.one, classes.nine],
        }
        first, last = (evaluation.lecture_example(test_split, label) for label in (classes.start, classes.end))
        row = evaluation.interpolation_frames(model, params, stats, first, last, ROW_STEPS)
        frames = evaluation.interpolation_frames(model, params, stats, first, last, GIF_FRAMES)
        arithmetic = evaluation.vector_arithmetic(model, params, stats, np.stack(
            [evaluation.lecture_example(test_split, label, index)
             for label, index in ((classes.one, 0), (classes.nine, 0), (classes.nine, 1))]))
        grid = (evaluation.decode_on_grid(model, params, stats, (-GRID_LIMIT,) * 2, (GRID_LIMIT,) * 2, GRID_STEPS)
                if latent_dim == 2 else None)
    with run.timer("figures"):
        one, nine = classes.one, classes.nine
        plots.plot_digits(test["inputs"][:SHOWN], test["reconstructions"][:SHOWN], path=out / "reconstructions.png",
                          titles=["input", name])
        plots.plot_digits(np.asarray(noisy_set["image"][:SHOWN]), denoised[:SHOWN], path=out / "denoising.png",
                          titles=["noisy", name])
        plots.plot_image_row(row, out / "interpolation.png", title=f"{classes.start} -> {classes.end}, {description}")
        plots.save_gif(frames, out / "interpolation.gif")
        plots.plot_image_row(arithmetic, out / "vector_arithmetic.png",
                             title=f"{one},  {nine} (first),  {nine} (second),  "
                                   f"decode(z({one}) + z({nine} first) - z({nine} second))")
        if grid is not None:
            plots.plot_latent_scatter(mu, test["labels"], out / "latent_scatter.png", title="test posterior means")
            plots.plot_image_grid(grid, out / "latent_grid.png",
                                  title=f"decoded over [-{GRID_LIMIT:g}, {GRID_LIMIT:g}]^2 (rows z[0], columns z[1])")
    return metrics
