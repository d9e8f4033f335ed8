"""Running an experiment: its options, data, staged output folder, training and metrics.json.

What every experiment of ``aejax.experiments`` shares, usable by research scripts too:

- ``TrainConfig``: the generic loop's settings (epochs, batch size, seed, ...), a config
  like the variants' (``aejax.flags`` makes its flags);
- ``RunOptions``: where data and results live and how the run behaves (not part of
  the result: changing them does not change the numbers);
- ``staged_output``: a folder that replaces ``--out`` only when the run succeeds, and
  from which an interrupted run resumes;
- ``fit``: create the train state and train, checkpointing into the run folder;
- ``write_metrics``: metrics.json with the preset, every config field and the device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import re
import shutil
import sys
import time
from typing import Any, Callable, Iterator, Literal

import jax
import numpy as np

from aejax import checkpoint, classifier, data, flags, inference, tensorboard
from aejax import train as train_lib

QUICK_TRAIN_EXAMPLES = 2048
QUICK_TEST_EXAMPLES = 512
CUT_SEED = 1  # the sample a limited run keeps (``stratified_cut``): the same for every run and seed
TENSORBOARD = "tensorboard"  # the folder of a run's TensorBoard event files (``--tensorboard``)
TRAIN_STATE = "train_state"  # the folder of a run's training checkpoints (``checkpoint.TrainingCheckpoints``)
LRSchedule = Literal["constant", "cosine"]


class UsageError(ValueError):
    """A command line that cannot run as given (exit code 2, as argparse's errors)."""


@contextlib.contextmanager
def usage_errors(prefix: str = "") -> Iterator[None]:
    """Turns a ValueError raised inside into a ``UsageError`` (a bad command-line value, exit 2)."""
    try:
        yield
    except UsageError:
        raise
    except ValueError as e:
        raise UsageError(f"{prefix}{e}") from None


def classifier_folder_field() -> Any:
    """The ``classifier`` config field of experiments that score images with the evaluation
    classifier (``Run.evaluation_classifier``): the folder it is read from or saved to."""
    return flags.field(pathlib.Path("runs/classifier"),
                       "folder of the saved evaluation classifier (trained on the whole data set and saved there "
                       "if absent; --quick trains a throwaway one instead)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The generic loop's settings for one run."""

    epochs: int = flags.field(5, "training epochs")
    batch_size: int = flags.field(64, "training batch size")
    seed: int = flags.field(42, "seed of every PRNG key")
    lr_schedule: LRSchedule = flags.field(
        "constant", "cosine: every learning rate decays to 1%% of itself over the run")
    chunk_steps: int = flags.field(
        100, "training steps per compiled chunk (lax.scan, no host round trip); 1: step by step")
    checkpoint_every: int | None = flags.field(None, "save the training state every N steps (none: after every epoch); "
                                                     "a killed run resumes when the same command runs again")
    on_nonfinite: Literal["stop", "skip"] = flags.field(
        "stop", "a non-finite loss: stop (exit 1, the last good checkpoint kept) or skip that batch's update")
    data_parallel: bool = flags.field(False, "shard each batch over all devices, parameters replicated")
    validation: bool = flags.field(False, "hold out a stratified validation split of the training set (MNIST: 10,000 "
                                          "of 60,000, the same for every seed) on which the run makes its choices "
                                          "(monitoring, stopping, labels); training uses the rest and the test set "
                                          "is read once, at the end. Off: the lecture's protocol, training on all")

    def __post_init__(self):
        for name in ("epochs", "batch_size", "chunk_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise ValueError(f"checkpoint_every must be a positive integer, got {self.checkpoint_every}")

    def decay_steps(self, num_examples: int) -> int:
        """The variants' ``decay_steps`` for this schedule: the run's steps, ceil(N / B) per epoch
        (``train.train`` keeps the short last batch); 0 (no decay) for 'constant'."""
        if self.lr_schedule != "cosine":
            return 0
        return self.epochs * -(-num_examples // self.batch_size)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Where a run reads and writes, and how it reports; the numbers do not depend on them
    (``quick``, ``train_limit`` and ``test_limit`` aside, which metrics.json records)."""

    out: pathlib.Path = flags.field(
        pathlib.Path("runs/experiment"), "output folder (replaced only when the run succeeds)")
    data_dir: pathlib.Path | None = flags.field(
        None, f"folder of the four IDX files (else ${data.ENV_DATA_DIR}, the cache, a download)")
    quick: bool = flags.field(False, f"smoke run: 1 epoch on at most {QUICK_TRAIN_EXAMPLES} train / "
                                     f"{QUICK_TEST_EXAMPLES} test images")
    train_limit: int | None = flags.field(None, "use only the first N training images")
    test_limit: int | None = flags.field(None, "use only the first N test images")
    progress: bool = flags.field(True, "show a progress bar")
    restart: bool = flags.field(False, "discard the partial results of an interrupted run of --out instead of resuming")
    tfds: str | None = flags.field(None, "read the tensorflow-datasets image set of this name (mnist, fashion_mnist, "
                                         "cifar10, svhn_cropped, ...) instead of IDX files; needs aejax[tfds]")
    tfds_data_dir: pathlib.Path | None = flags.field(None, "folder of the prepared tfds data sets (else $TFDS_DATA_DIR, "
                                                           "else ~/tensorflow_datasets)")
    tensorboard: bool = flags.field(False, "also write TensorBoard event files into <out>/tensorboard: every epoch's "
                                           "numbers as they come, the final numbers and the figures at the end")
    selection: bool = flags.field(False, "a selection run (a sweep's candidate; needs --validation): the test files "
                                         "are never read, the validation split is scored in the test split's place "
                                         "and metrics.json names every number by it")

    def __post_init__(self):
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if self.tfds is not None and self.data_dir is not None:
            raise ValueError("give --data-dir or --tfds, not both")
        if self.tfds_data_dir is not None and self.tfds is None:
            raise ValueError("--tfds-data-dir needs --tfds NAME")

    def with_quick_limits(self) -> RunOptions:
        """These options with the limits a ``quick`` (smoke) run uses: the given ones capped at
        ``QUICK_TRAIN_EXAMPLES`` / ``QUICK_TEST_EXAMPLES`` (the caps where none is given); unchanged otherwise."""
        if not self.quick:
            return self
        return dataclasses.replace(self, train_limit=min(self.train_limit or QUICK_TRAIN_EXAMPLES, QUICK_TRAIN_EXAMPLES),
                                   test_limit=min(self.test_limit or QUICK_TEST_EXAMPLES, QUICK_TEST_EXAMPLES))


def parse(config: Any, presets: dict[str, dict[str, Any]], argv: list[str] | None, doc: str,
          name: str, quick: dict[str, int] | None = None) -> tuple[Any, RunOptions, str | None]:
    """An experiment's command line: (config, options, preset); ``runs/<name>`` is the default output folder.

    ``doc`` is the experiment module's ``__doc__`` (its first line describes the parser; the
    rest is shown after the flags). ``--quick`` caps the options' limits (``RunOptions.with_quick_limits``),
    the config's ``epochs`` (if it has one) at 1 and each field named in ``quick`` at its value. The
    output folder must be writable (usage error otherwise).
    """
    config, options, preset = flags.parse(config, presets, argv, doc, RunOptions(out=pathlib.Path("runs") / name),
                                          prog=f"aejax run {name}")
    options = options.with_quick_limits()
    if options.quick:  # caps: the config's epochs at 1, and the experiment's own (``quick``)
        fields = flags.as_flat_dict(config)
        caps = {**({"epochs": 1} if "epochs" in fields else {}), **(quick or {})}
        config = flags.replace_fields(config, {name: min(fields[name], cap) for name, cap in caps.items()})
    check_writable(options.out)
    return config, options, preset


def check_writable(out: pathlib.Path) -> None:
    """A usage error unless ``out`` is, or can be made, a writable folder."""
    absolute = out.absolute()
    existing = next(p for p in (absolute, *absolute.parents) if p.exists())  # staging is made beside ``out``
    if (absolute.exists() and not absolute.is_dir()) or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"output folder {out} is not writable")


def stratified_cut(split: data.Split, limit: int | None, seed: int = CUT_SEED) -> data.Split:
    """``limit`` images of ``split``: a seeded, class-stratified sample kept in the split's order (each
    class its share, largest remainders rounding: ``data.validation_split``'s draw), so that a set stored
    class by class keeps its classes; the whole split when ``limit`` is None or not below its size."""
    if limit is None or limit >= len(split.labels):
        return split
    return data.validation_split(split, size=limit, seed=seed)[1]


def load_splits(options: RunOptions, validation: bool = False) -> dict[str, data.Split]:
    """The data set of ``options.data_dir`` (see ``data.load_mnist``), cut to the run's limits
    (``RunOptions.with_quick_limits``).

    ``validation``: also a ``"validation"`` split, ``data.validation_split``'s hold-out of the
    whole training set (then cut to the test limit), and ``"train"`` is the rest. A limit keeps a
    class-stratified sample (``stratified_cut``), not the first images.
    ``options.selection`` (needs ``validation``): the test files are not read; ``"test"`` is the
    validation split, so that code scoring "the test split" scores the validation split.
    """
    if options.selection and not validation:
        raise UsageError("a selection run (--selection) needs the validation protocol (--validation)")
    wanted = ("train",) if options.selection else tuple(data.SPLITS)
    if options.tfds is not None:
        from aejax import tfds_data  # optional: needs tensorflow-datasets

        splits = tfds_data.load_tfds(options.tfds, data_dir=options.tfds_data_dir, splits=wanted)
    else:
        splits = data.load_mnist(options.data_dir, splits=wanted)
    result = {"train": splits["train"], "test": splits.get("test")}
    if validation:
        result["train"], result["validation"] = data.validation_split(splits["train"])
    options = options.with_quick_limits()
    limits = {"train": options.train_limit, "validation": options.test_limit, "test": options.test_limit}
    result = {name: stratified_cut(split, limits[name]) for name, split in result.items() if split is not None}
    if options.selection:
        result["test"] = result["validation"]
    return result


# ------------------------------------------------------------------ the run folder

# Options that may change between an interrupted run and its resumption.
RESUMABLE_SETTING_CHANGES = frozenset({"progress", "restart", "out", "data_dir", "tfds_data_dir", "tensorboard"})


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
        # as JSON gives them back (tuples as lists), so that they compare with the saved ones
        settings = None if settings is None else json.loads(json.dumps(
            {k: v for k, v in settings.items() if k not in RESUMABLE_SETTING_CHANGES}, sort_keys=True, default=str))
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


class Run:
    """One experiment run: its config, options, preset and timings; ``with run.output() as out``.

    ``run.timer(name)`` adds a block's wall time to ``run.seconds[name]`` (data, train,
    evaluation, figures), which ``write_metrics`` records.
    """

    def __init__(self, config: Any, options: RunOptions, preset: str | None):
        # the options as the run uses them (and metrics.json records them): a quick run's limits capped
        self.config, self.options, self.preset = config, options.with_quick_limits(), preset
        self.seconds: dict[str, float] = {}
        self.split_sizes: dict[str, int] = {}
        self._started = time.perf_counter()
        self._resumed_seconds = 0.0  # training time of the processes before a resume
        self._events: tensorboard.EventWriter | None = None  # ``--tensorboard``'s writer, once an epoch ends
        if self.options.selection and not self.validation:
            raise UsageError("a selection run (--selection) needs the validation protocol (--validation)")

    def settings(self, config: Any = None) -> dict[str, Any]:
        """Every field of ``config`` (default: the run's) and of the run options, JSON-ready, as
        ``recorded_settings`` gives them for the run folder ``--out``."""
        config = self.config if config is None else config
        return {**recorded_settings(config, self.options.out), **recorded_settings(self.options, self.options.out),
                "preset": self.preset}

    def output(self) -> contextlib.AbstractContextManager[pathlib.Path]:
        """``staged_output`` for ``--out``, resuming an interrupted run of the same settings."""
        return staged_output(self.options.out, self.settings(), restart=self.options.restart)

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    @property
    def validation(self) -> bool:
        """Whether the run follows the validation protocol (``TrainConfig.validation``)."""
        return bool(getattr(getattr(self.config, "train", None), "validation", False))

    def load_splits(self) -> dict[str, data.Split]:
        """``load_splits`` for the run's options and protocol; their sizes go into metrics.json
        (a selection run's ``"test"``, the validation split itself, is not named)."""
        with self.timer("data"):
            splits = load_splits(self.options, self.validation)
        self.split_sizes = {name: int(len(split.labels)) for name, split in splits.items()
                            if not (self.options.selection and name == "test")}
        if self.limited:
            sizes = ", ".join(f"{size:,} {name}" for name, size in self.split_sizes.items())
            print(f"limited run: a class-stratified sample of each split (seed {CUT_SEED}): {sizes} images")
        return splits

    @property
    def limited(self) -> bool:
        """Whether the run keeps a sample of its splits (``--train-limit``, ``--test-limit``, ``--quick``)."""
        return self.options.train_limit is not None or self.options.test_limit is not None

    def fit(self, model: train_lib.Model, train_set: dict[str, jax.Array], key: jax.Array, workdir: pathlib.Path,
            *, gather: inference.GatherFn = data.gather_batch,
            on_epoch_end: Callable[[int, train_lib.TrainState, dict[str, float]], dict[str, float] | None] | None = None,
            should_stop: Callable[[train_lib.TrainState, dict[str, float]], bool] | None = None,
            ) -> tuple[train_lib.TrainState, train_lib.History]:
        """Initialises and trains ``model`` on ``train_set`` with ``config.train``'s settings.

        Checkpoints go to ``workdir/train_state`` (the run's staging folder), from which an
        interrupted run resumes. ``seconds["train"]`` is the training wall time over all
        of the run's processes (an interrupted part included) but for compiling the
        training programs, ``seconds["compile"]`` (this process's).
        """
        settings: TrainConfig = self.config.train
        if self.options.tensorboard:
            on_epoch_end = self._with_events(workdir, on_epoch_end)
        state = train_lib.create_train_state(model, key)
        mesh = train_lib.data_parallel_mesh() if settings.data_parallel else None
        with checkpoint.TrainingCheckpoints(workdir / TRAIN_STATE) as checkpoints:
            state, history = train_lib.train(
                model, state, train_set, epochs=settings.epochs, batch_size=settings.batch_size,
                chunk_steps=settings.chunk_steps, mesh=mesh, gather=gather, nonfinite=settings.on_nonfinite,
                checkpointing=train_lib.Checkpointing(checkpoints, settings.checkpoint_every),
                callbacks=train_lib.Callbacks(on_epoch_end, should_stop),
                reporting=train_lib.Reporting(progress=self.options.progress))
        jax.block_until_ready(state.params)
        self.add_training_time(history)
        return state, history

    def _with_events(self, workdir: pathlib.Path, on_epoch_end: Callable | None) -> Callable:
        """``on_epoch_end`` that also writes the epoch's numbers (training means as ``train/...``, what
        ``on_epoch_end`` measured under its own names) to ``workdir/tensorboard``."""
        def epoch_end(epoch: int, state: train_lib.TrainState, means: dict[str, float]) -> dict[str, float] | None:
            measured = on_epoch_end(epoch, state, means) if on_epoch_end is not None else None
            if self._events is None:  # a resumed process rewrites from its first epoch on
                self._events = tensorboard.EventWriter(workdir / TENSORBOARD, purge_step=epoch)
            self._events.scalars(means, epoch, prefix="train/")
            self._events.scalars(measured or {}, epoch)
            return measured
        return epoch_end

    def add_training_time(self, history: train_lib.History) -> None:
        """Adds a ``train.train`` call's time: compiling to ``seconds["compile"]``, the rest to ``seconds["train"]``."""
        self.seconds["compile"] = self.seconds.get("compile", 0.0) + history.compile_seconds
        self.seconds["train"] = self.seconds.get("train", 0.0) + history.seconds - history.compile_seconds
        self._resumed_seconds += history.resumed_seconds

    def evaluation_classifier(self, folder: pathlib.Path, splits: dict[str, data.Split], key: jax.Array,
                              epochs: int = classifier.EPOCHS) -> tuple[train_lib.Params, float]:
        """The classifier that scores generated images, and its test accuracy.

        ``--quick`` trains a throwaway one on the run's images (a weak one must not be left
        for real runs); otherwise the one saved in ``folder``, else one trained on the whole
        data set (the run's limits lifted) and saved there. A saved one for another number
        of classes is a usage error.
        """
        if self.options.quick:
            return classifier.load_or_train(None, splits, key, epochs=1)
        if self.options.selection:  # no test file is read: the saved classifier, scored on the validation split
            if classifier.saved_num_classes(folder.absolute()) is None:
                raise UsageError(f"a selection run reads no test file, so it cannot train the evaluation classifier: "
                                 f"train it first (aejax run classifier --out {folder}) or give --classifier")
            params, _ = classifier.load_or_train(folder.absolute(), splits, key, num_classes=data.num_classes(splits))
            return params, classifier.test_accuracy(params, splits["test"])
        classes, shape = data.num_classes(splits), data.image_shape(splits["train"])
        saved = classifier.saved_num_classes(folder.absolute())
        if saved is not None and saved != classes:
            raise UsageError(f"the classifier in {folder.absolute()} was trained on {saved} classes, the data has "
                             f"{classes}; give another --classifier folder")
        saved_shape = classifier.saved_image_shape(folder.absolute())
        if saved_shape is not None and tuple(saved_shape) != tuple(shape):
            raise UsageError(f"the classifier in {folder.absolute()} was trained on {'x'.join(map(str, saved_shape))} "
                             f"images, the data's are {'x'.join(map(str, shape))}; give another --classifier folder")
        # one classifier for every run: trained on the whole training set, whatever the run's limits or protocol
        partial = self.validation or self.options.train_limit is not None or self.options.test_limit is not None
        whole = load_splits(dataclasses.replace(self.options, train_limit=None, test_limit=None)) if partial else splits
        return classifier.load_or_train(folder.absolute(), whole, key, epochs=epochs, num_classes=classes)

    def write_metrics(self, folder: pathlib.Path, metrics: dict[str, Any], config: Any = None) -> pathlib.Path:
        """metrics.json: the numbers, the preset, every config field (``settings``), timings and device;
        nothing of the machine (host, folders) but its device, so that the results may move.

        ``config``: the config the run actually used, where it differs from the parsed one
        by fields derived from the data (the number of classes, the decay steps).
        """
        # an interrupted process's training time counts (its checkpoint recorded it), as in "train"
        self.seconds["total"] = time.perf_counter() - self._started + self._resumed_seconds
        selection = {"selection": True, "test_split": "not read"} if self.options.selection else {}
        if self.options.selection:  # in place: what the experiment returns (and prints) is named alike
            renamed = selection_names(metrics)
            metrics.clear()
            metrics.update(renamed)
        payload = {
            **metrics,
            "preset": self.preset,
            "protocol": {"validation": self.validation, "split_sizes": self.split_sizes,
                         **({"cut": f"class-stratified sample, seed {CUT_SEED}"} if self.limited else {}),
                         **metrics.get("protocol", {}), **selection},
            "settings": self.settings(config),
            "seconds": dict(self.seconds),
            "device": device_name(),
        }
        path = folder / "metrics.json"
        path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")
        if self.options.tensorboard:
            self._write_final_events(folder, metrics)
        return path

    def _write_final_events(self, folder: pathlib.Path, metrics: dict[str, Any]) -> None:
        """The run's final numbers (``final/...``, nested ones by their dotted path) and its figures, at
        the step after the last epoch, into ``folder/tensorboard``."""
        step = len(metrics.get("train_history", [])) or 1
        writer = self._events or tensorboard.EventWriter(folder / TENSORBOARD)
        with writer:
            writer.scalars(_flat_numbers(metrics), step, prefix="final/")
            tensorboard.write_figures(writer, folder, step)
        self._events = None


def _flat_numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a nest of dicts by dotted path (lists, such as histories, left out)."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() if key not in ("protocol", "settings")
                for k, v in _flat_numbers(value, f"{prefix}{key}.").items()}
    if isinstance(tree, (int, float, np.integer, np.floating)) and not isinstance(tree, bool):
        return {prefix[:-1]: float(tree)}
    return {}


TEST_WORD = re.compile(r"(?<![A-Za-z0-9])test(?![A-Za-z0-9])")  # "test" as a word of a metrics key


def selection_names(metrics: Any) -> Any:
    """``metrics`` with every key naming the test split renamed for the validation split
    (``test_error`` -> ``validation_error``, ``label_leak.test_size`` -> ``validation_size``): what a
    selection run scores "as the test split" is the validation split. A key whose new name is
    taken keeps the existing value (both score the same images); ``protocol`` is left as it is."""
    if isinstance(metrics, list):
        return [selection_names(item) for item in metrics]
    if not isinstance(metrics, dict):
        return metrics
    renamed: dict[str, Any] = {}
    for key, value in metrics.items():
        value = value if key == "protocol" else selection_names(value)
        new = TEST_WORD.sub("validation", key) if isinstance(key, str) else key
        if new == key or new not in metrics:
            renamed[new] = value
    return renamed


# Options naming where a run read and wrote: machine-specific, and they do not change the numbers.
MACHINE_SETTINGS = frozenset({"out", "data_dir", "tfds_data_dir"})


def relative_path(path: pathlib.PurePath, run_folder: pathlib.Path) -> str:
    """``path`` (absolute, or relative to the working directory) relative to ``run_folder``, POSIX-style:
    a record that stays true when the results move together."""
    return pathlib.Path(os.path.relpath(pathlib.Path(path).absolute(), run_folder.absolute())).as_posix()


def recorded_settings(config: Any, run_folder: pathlib.Path) -> dict[str, Any]:
    """``config``'s fields by leaf name as metrics.json records them for a run in ``run_folder``:
    JSON-ready, paths relative to ``run_folder``, ``MACHINE_SETTINGS`` left out."""
    flat = flags.as_flat_dict(config, path_as=lambda path: relative_path(path, run_folder))
    return {name: value for name, value in flat.items() if name not in MACHINE_SETTINGS}


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise TypeError(f"metrics.json cannot hold a {type(value).__name__}")


def device_name() -> str:
    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind}"


def on_gpu() -> bool:
    return jax.devices()[0].platform == "gpu"


def save_state(folder: pathlib.Path, state: train_lib.TrainState) -> None:
    """The trained variables as ``folder/checkpoint`` (replacing one a resumed run's first try left)."""
    checkpoint.save(folder / "checkpoint", {"params": state.params, "batch_stats": state.batch_stats}, overwrite=True)


def recomputed_batch_stats(model: train_lib.Model, state: train_lib.TrainState, train_set: dict[str, jax.Array],
                           batch_size: int, key: jax.Array) -> train_lib.BatchStats:
    """``state``'s BatchNorm statistics recomputed for its final weights over ``train_set``
    through the model's first phase (``inference.recompute_batch_stats``)."""
    batch_size = min(batch_size, int(train_set["label"].shape[0]))
    return inference.recompute_batch_stats(model.phases[0], state.params, state.batch_stats, train_set, batch_size, key)


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
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=2, default=str))
