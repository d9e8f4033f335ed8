"""What every experiment script shares: flags, data, staged output, training, metrics."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pathlib
import platform
import shutil
import sys
from typing import Any, Callable, Iterator

import jax
import numpy as np

from aejax import checkpoint, classifier, data, evaluation, likelihood
from aejax import train as train_lib

NOISE_STD = 0.3  # the lecture's denoising noise: x + 0.3 N(0, 1), unclipped
QUICK_TRAIN_EXAMPLES = 2048
QUICK_TEST_EXAMPLES = 512


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _float_argument(text: str, is_valid: Callable[[float], bool], wanted: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not is_valid(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
    return value


def positive_float(text: str) -> float:
    return _float_argument(text, lambda v: bool(np.isfinite(v)) and v > 0, "a finite number > 0")


def open_fraction(text: str) -> float:
    return _float_argument(text, lambda v: 0 < v < 1, "a number strictly between 0 and 1")


def non_negative_float(text: str) -> float:
    return _float_argument(text, lambda v: bool(np.isfinite(v)) and v >= 0, "a finite number >= 0")


def make_parser(description: str, *, out: str, epochs: int | None, latent_dim: int | None,
                batch_size: int = 64) -> argparse.ArgumentParser:
    """Flags every script shares; ``epochs=None`` for scripts that train nothing."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(out), help="output folder (replaced only when the run succeeds)")
    parser.add_argument("--data-dir", type=pathlib.Path, default=None,
                        help=f"folder with the four MNIST IDX files (else ${data.ENV_DATA_DIR}, the cache, a download)")
    if epochs is not None:
        parser.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs")
        parser.add_argument("--batch-size", type=positive_int, default=batch_size, help="training batch size")
        parser.add_argument("--chunk-steps", type=positive_int, default=100,
                            help="training steps per compiled chunk (lax.scan, no host round trip); 1: step by step")
        parser.add_argument("--data-parallel", action="store_true",
                            help="shard each batch over all devices (jax.sharding mesh), parameters replicated")
        parser.add_argument("--checkpoint-every", type=positive_int, default=None,
                            help="save the whole training state every N steps (default: after every epoch); "
                                 "a killed run resumes from its last checkpoint when the same command is run again")
        parser.add_argument("--on-nonfinite", choices=train_lib.NONFINITE_POLICIES, default="stop",
                            help="a non-finite loss: stop (exit 1, naming the step and loss term, the last good "
                                 "checkpoint kept) or skip that batch's update")
    if latent_dim is not None:
        parser.add_argument("--latent-dim", type=positive_int, default=latent_dim, help="latent size")
    parser.add_argument("--seed", type=int, default=42, help="seed of every PRNG key")
    parser.add_argument("--train-limit", type=positive_int, default=None, help="use only the first N training images")
    parser.add_argument("--test-limit", type=positive_int, default=None, help="use only the first N test images")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: 1 epoch on {QUICK_TRAIN_EXAMPLES} train / {QUICK_TEST_EXAMPLES} test images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--restart", action="store_true",
                        help="discard the partial results of an interrupted run of --out instead of resuming it")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.quick:
        if "epochs" in args:
            args.epochs = 1
        args.train_limit = min(args.train_limit or QUICK_TRAIN_EXAMPLES, QUICK_TRAIN_EXAMPLES)
        args.test_limit = min(args.test_limit or QUICK_TEST_EXAMPLES, QUICK_TEST_EXAMPLES)
    check_writable(parser, args.out)
    return args


def check_writable(parser: argparse.ArgumentParser, out: pathlib.Path) -> None:
    """A usage error (exit 2) unless ``out`` is, or can be made, a writable folder."""
    absolute = out.absolute()
    existing = next(p for p in (absolute, *absolute.parents) if p.exists())  # staging is made beside ``out``
    if (absolute.exists() and not absolute.is_dir()) or not existing.is_dir() or not os.access(existing, os.W_OK):
        parser.error(f"output folder {out} is not writable")


def load_data(args: argparse.Namespace) -> dict[str, data.Split]:
    splits = data.load_mnist(args.data_dir)
    return {"train": data.Split(*(a[: args.train_limit] for a in splits["train"])),
            "test": data.Split(*(a[: args.test_limit] for a in splits["test"]))}


class UsageError(ValueError):
    """A command line that cannot run as given (exit code 2, as argparse's errors)."""


# Settings that may change between an interrupted run and its resumption.
RESUMABLE_SETTING_CHANGES = frozenset({"no_progress", "restart", "out", "data_dir"})
TRAIN_STATE = "train_state"  # the folder of a run's training checkpoints (``checkpoint.TrainingCheckpoints``)


def _staging_folder(out: pathlib.Path) -> pathlib.Path:
    return out.with_name(f".{out.name}.partial")


def _holds_checkpoint(staging: pathlib.Path) -> bool:
    """Whether a training checkpoint (a step folder under ``train_state``, maybe one level down) was saved."""
    root = staging / TRAIN_STATE
    return any(p.is_dir() and p.name.isdigit() for p in [*root.glob("*"), *root.glob("*/*")]) if root.is_dir() else False


def _clear(folder: pathlib.Path, keep: set[str]) -> None:
    for entry in folder.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


@contextlib.contextmanager
def staged_output(out: pathlib.Path, settings: dict[str, Any] | None = None, restart: bool = False,
                  ) -> Iterator[pathlib.Path]:
    """Yields the staging folder ``.<out>.partial`` that replaces ``out`` only if the block succeeds.

    A failed or interrupted run leaves ``out`` (a previous complete result) untouched.
    If the run has saved training checkpoints (``<staging>/train_state``), the staging
    folder is kept, and the same command resumes it (``settings`` must match the
    interrupted run's, apart from ``RESUMABLE_SETTING_CHANGES``; ``restart`` discards
    it instead). One run at a time may use a staging folder (a file lock).
    """
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_folder(out)
    staging.mkdir(exist_ok=True)
    lock = open(staging / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise UsageError(f"another run is writing {out} (its partial results are in {staging})") from None
    try:
        settings = None if settings is None else {k: v for k, v in settings.items() if k not in RESUMABLE_SETTING_CHANGES}
        settings_file = staging / "run_settings.json"
        resumable = _holds_checkpoint(staging) and settings_file.is_file()
        if resumable and not restart and settings is not None:
            previous = json.loads(settings_file.read_text())
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            if changed:
                raise UsageError(f"{staging} holds an interrupted run with other settings ({', '.join(changed)}); "
                                 f"rerun it with the same flags to resume it, or add --restart to discard it")
        if restart or not resumable:
            _clear(staging, keep={".lock"})
        elif resumable:
            print(f"resuming the interrupted run in {staging}", file=sys.stderr)
        settings_file.write_text(json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n")
        try:
            yield staging
        except BaseException:
            if _holds_checkpoint(staging):
                print(f"partial run kept in {staging}: run the same command to resume it", file=sys.stderr)
            else:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        settings_file.unlink()
        (staging / ".lock").unlink()
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        lock.close()  # releases the lock


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of a run as JSON-ready values."""
    return {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}


def output(args: argparse.Namespace) -> contextlib.AbstractContextManager[pathlib.Path]:
    """``staged_output`` for a script's ``--out``, resuming an interrupted run of the same flags."""
    return staged_output(args.out, run_settings(args), restart=args.restart)


def fit(model: train_lib.Model, splits: dict[str, data.Split], args: argparse.Namespace, key: jax.Array,
        workdir: pathlib.Path, *, dataset: dict[str, jax.Array] | None = None,
        gather: train_lib.GatherFn = data.gather_batch,
        on_epoch_end: Callable[[int, train_lib.TrainState, dict[str, float]], dict[str, float] | None] | None = None,
        ) -> tuple[train_lib.TrainState, train_lib.History, float]:
    """Initialises and trains ``model`` on the train split (or ``dataset``); returns state, history, seconds.

    Checkpoints go to ``workdir/train_state`` (the run's staging folder), from which an
    interrupted run resumes; seconds are the training wall time over all its processes.
    """
    state = train_lib.create_train_state(model, key)
    dataset = data.device_dataset(splits["train"]) if dataset is None else dataset
    mesh = train_lib.data_parallel_mesh() if args.data_parallel else None
    with checkpoint.TrainingCheckpoints(workdir / TRAIN_STATE) as checkpoints:
        state, history = train_lib.train(model, state, dataset, epochs=args.epochs, batch_size=args.batch_size,
                                         chunk_steps=args.chunk_steps, mesh=mesh, checkpoints=checkpoints,
                                         checkpoint_every=args.checkpoint_every, nonfinite=args.on_nonfinite,
                                         progress=not args.no_progress, gather=gather, on_epoch_end=on_epoch_end)
    jax.block_until_ready(state.params)
    return state, history, history.seconds


def recomputed_batch_stats(model: train_lib.Model, state: train_lib.TrainState, splits: dict[str, data.Split],
                           args: argparse.Namespace, key: jax.Array) -> train_lib.BatchStats:
    """``state``'s BatchNorm statistics recomputed for its final weights over the train split,
    through the model's first phase (``train.recompute_batch_stats``), in batches of the run's size."""
    batch_size = min(args.batch_size, len(splits["train"].labels))
    return train_lib.recompute_batch_stats(model.phases[0], state.params, state.batch_stats,
                                           data.device_dataset(splits["train"]), batch_size, key)


def noisy_test_set(split: data.Split, key: jax.Array, std: float = NOISE_STD) -> tuple[np.ndarray, dict[str, jax.Array]]:
    """Clean images (N, 28, 28, 1) and an ``evaluate``-ready set of their noisy copies."""
    clean = data.to_float_nhwc(split.images)
    noisy = data.add_gaussian_noise(key, clean, std)
    return np.asarray(clean), {"image": noisy, "label": jax.numpy.asarray(split.labels, jax.numpy.int32)}


def save_state(folder: pathlib.Path, state: train_lib.TrainState) -> None:
    """The trained variables as ``folder/checkpoint`` (replacing one a resumed run's first try left)."""
    checkpoint.save(folder / "checkpoint", {"params": state.params, "batch_stats": state.batch_stats}, overwrite=True)


def reconstruction_metrics(result: dict[str, np.ndarray], prefix: str = "test") -> dict[str, float]:
    """Mean BCE and MSE of an ``evaluate`` result's reconstructions against its inputs."""
    recon = np.clip(result["reconstructions"], 1e-7, 1 - 1e-7)
    target = result["inputs"]
    bce = float(np.mean(-(target * np.log(recon) + (1 - target) * np.log(1 - recon))))
    return {f"{prefix}_bce": bce, f"{prefix}_mse": evaluation.mean_squared_error(result["reconstructions"], target)}


def write_metrics(folder: pathlib.Path, metrics: dict[str, Any], args: argparse.Namespace) -> pathlib.Path:
    """metrics.json with the run's settings and device beside the numbers."""
    payload = {
        **metrics,
        "settings": run_settings(args),
        "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
        "host": platform.node(),
    }
    path = folder / "metrics.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def on_gpu() -> bool:
    return jax.devices()[0].platform == "gpu"


def add_lr_schedule_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="'cosine': every rate decays to 1%% of itself over the run's training steps")


def decay_steps(args: argparse.Namespace, train_split: data.Split) -> int:
    """The configs' ``decay_steps`` for ``--lr-schedule``: the run's training steps, ceil(N / B)
    per epoch as train.train keeps the short last batch; 0 (no decay) for 'constant'."""
    if args.lr_schedule != "cosine":
        return 0
    return args.epochs * -(-len(train_split.labels) // args.batch_size)


def add_likelihood_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iwae-samples", type=positive_int, default=None,
                        help="importance samples k of the IWAE bound (default 500 on a GPU, 100 on a CPU, 8 with --quick)")
    parser.add_argument("--iwae-images", type=positive_int, default=None,
                        help="first N test images for the IWAE bound (default: all on a GPU, 1000 on a CPU, 128 with --quick)")


def likelihood_metrics(model: train_lib.Model, state: train_lib.TrainState, test_set: dict[str, jax.Array],
                       key: jax.Array, args: argparse.Namespace) -> dict[str, Any]:
    """Test negative ELBO (one posterior sample, all images) and IWAE NLL (k samples, a subset), nats."""
    if args.quick:
        samples, images = args.iwae_samples or 8, args.iwae_images or 128
    else:
        samples = args.iwae_samples or (500 if on_gpu() else 100)
        images = args.iwae_images or (None if on_gpu() else 1000)
    elbo_key, iwae_key = jax.random.split(key)
    full = likelihood.evaluate_likelihood(model, state.params, state.batch_stats, test_set, elbo_key, num_samples=1)
    subset = {k: v[:images] for k, v in test_set.items()}
    bound = likelihood.evaluate_likelihood(model, state.params, state.batch_stats, subset, iwae_key, num_samples=samples)
    return {
        "test_negative_elbo_nats": float(full["negative_elbo"].mean()),
        "test_images_elbo": int(len(full["negative_elbo"])),
        "iwae_nll_nats": float(bound["iwae_nll"].mean()),
        "iwae_negative_elbo_same_images_nats": float(bound["negative_elbo"].mean()),
        "iwae_samples": samples,
        "iwae_images": int(len(bound["iwae_nll"])),
    }


def add_classifier_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classifier", type=pathlib.Path, default=pathlib.Path("runs/classifier"),
                        help="folder of the saved evaluation classifier (trained and saved there if absent; "
                             "--quick trains a throwaway one instead)")


def load_classifier(args: argparse.Namespace, splits: dict[str, data.Split], key: jax.Array) -> tuple[Any, float]:
    """The evaluation classifier's params and test accuracy (see ``classifier.load_or_train``)."""
    if args.quick:
        return classifier.load_or_train(None, splits, key, epochs=1)
    limited = args.train_limit is not None or args.test_limit is not None  # the classifier always sees all of MNIST
    return classifier.load_or_train(args.classifier, data.load_mnist(args.data_dir) if limited else splits, key, epochs=5)


def decode_on_grid(model: train_lib.Model, state: train_lib.TrainState, low: tuple[float, float],
                   high: tuple[float, float], steps: int, label: int | None = None) -> np.ndarray:
    """Images (steps, steps, 28, 28, 1) decoded on a regular grid of the box [low, high] (2-D latents).

    Row i holds z[0] = linspace(low[0], high[0])[i], column j z[1] = linspace(low[1], high[1])[j]
    (the lecture's ``cartesian_prod`` order).
    """
    axes = [jax.numpy.linspace(lo, hi, steps) for lo, hi in zip(low, high)]
    grid = jax.numpy.stack(jax.numpy.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    labels = None if label is None else jax.numpy.full((grid.shape[0],), label, jax.numpy.int32)
    decode = jax.jit(lambda p, s, z, y: jax.nn.sigmoid(model.decode(p, s, z, y)))
    images = [np.asarray(decode(state.params, state.batch_stats, grid[i:i + 500], None if labels is None else labels[i:i + 500]))
              for i in range(0, grid.shape[0], 500)]
    return np.concatenate(images).reshape(steps, steps, 28, 28, 1)


def first_of_digit(split: data.Split, digit: int, index: int = 0, within: int = 64) -> np.ndarray:
    """The ``index``-th image (28, 28, 1) of ``digit`` among the first ``within`` (the lecture's first test batch)."""
    found = np.flatnonzero(split.labels[:within] == digit)
    if len(found) <= index:
        raise ValueError(f"fewer than {index + 1} test images of digit {digit} among the first {within}")
    return np.asarray(data.to_float_nhwc(split.images[found[index]][None]))[0]


def run_main(main: Callable[[list[str] | None], dict[str, Any]], argv: list[str] | None = None) -> None:
    """Runs an experiment's main; an error is one line on stderr: exit 2 for usage errors, else 1."""
    try:
        metrics = main(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except (data.DataError, ValueError, FileExistsError, OSError, train_lib.NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=2))
