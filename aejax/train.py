"""A generic training loop: it knows phases, never a model variant.

A variant (see ``aejax.model``) supplies a ``Model``: how to initialise its variables,
the ordered ``Phase``s of one training step (each a loss function, an optax optimizer
and the top-level modules it updates) and eval-mode ``encode`` / ``decode``. A plain
autoencoder has one phase; the adversarial autoencoder has three (autoencoder,
generator, discriminator), run in order inside one compiled step.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from aejax import checkpoint as checkpoint_lib
from aejax import data as data_lib
from aejax.compile_clock import counting_compile_time
# the contract's names are re-exported: ``from aejax.train import Model, Phase, LossOutput`` works too
from aejax.inference import GatherFn, num_examples  # noqa: F401
from aejax.model import Batch, BatchStats, LossFn, LossOutput, Metrics, Model, Params, Phase  # noqa: F401

BATCH_AXIS = "batch"  # the data-parallel mesh axis


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; a pytree, so it jits and checkpoints."""

    step: jax.Array
    params: Params
    batch_stats: BatchStats
    opt_states: dict[str, optax.OptState]  # one per phase, by phase name
    key: jax.Array  # consumed by splitting, never reused


def _subset(tree: Params, names: tuple[str, ...]) -> dict[str, Any]:
    missing = [n for n in names if n not in tree]
    if missing:
        raise KeyError(f"phase updates modules {missing} that params lack (have {sorted(tree)})")
    return {n: tree[n] for n in names}


def create_train_state(model: Model, key: jax.Array) -> TrainState:
    """Initialises variables and one optimizer state per phase."""
    init_key, train_key = jax.random.split(key)
    params, batch_stats = model.init(init_key)
    opt_states = {p.name: p.optimizer.init(_subset(params, p.trainable)) for p in model.phases}
    if len(opt_states) != len(model.phases):
        raise ValueError("phase names must be unique")
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_states=opt_states, key=train_key)


def apply_phases(phases: tuple[Phase, ...], state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """One training step: the phases in order, each seeing the previous one's update.

    Metrics are prefixed by phase name when there are several phases. A phase whose
    ``LossOutput`` has a ``carry`` adds it (gradient stopped) to the batch of later phases.
    """
    key, step_key = jax.random.split(state.key)
    params, batch_stats, opt_states = dict(state.params), state.batch_stats, dict(state.opt_states)
    metrics: Metrics = {}
    for index, phase in enumerate(phases):
        trainable = _subset(params, phase.trainable)

        def loss_of_trainable(sub, phase=phase, batch_stats=batch_stats, batch=batch, index=index):
            output = phase.loss_fn({**params, **sub}, batch_stats, batch, jax.random.fold_in(step_key, index),
                                   state.step)
            return output.loss, output

        (loss, output), grads = jax.value_and_grad(loss_of_trainable, has_aux=True)(trainable)
        batch_stats = output.batch_stats
        if output.carry:
            batch = {**batch, **jax.tree.map(jax.lax.stop_gradient, output.carry)}
        extra = {} if phase.value_metric is None else {"value": output.metrics[phase.value_metric]}
        updates, opt_states[phase.name] = phase.optimizer.update(grads, opt_states[phase.name], trainable, **extra)
        params.update(optax.apply_updates(trainable, updates))
        prefix = f"{phase.name}/" if len(phases) > 1 else ""
        metrics.update({prefix + k: v for k, v in {"loss": loss, **output.metrics}.items()})
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_states=opt_states, key=key)
    return new_state, metrics


def take_batch(dataset: Mapping[str, jax.Array], indices: jax.Array) -> dict[str, jax.Array]:
    """The rows ``indices`` (B,) of every array of ``dataset``, unchanged."""
    return {name: array[indices] for name, array in dataset.items()}


NONFINITE_POLICIES = ("stop", "skip")
SKIPPED_METRIC = "nonfinite_skipped"  # 1 for a step whose update was dropped (``nonfinite="skip"``)


class NonFiniteLossError(FloatingPointError):
    """A training step produced a non-finite loss or metric; training stopped before using it."""


def apply_phases_skipping_nonfinite(phases: tuple[Phase, ...], state: TrainState, batch: Batch,
                                    ) -> tuple[TrainState, Metrics]:
    """``apply_phases``, except that a step with any non-finite metric leaves the model unchanged.

    The step counter and the PRNG key still advance (later steps see the keys they would
    have seen); the dropped step's metrics read 0 and ``SKIPPED_METRIC`` reads 1.
    """
    new_state, metrics = apply_phases(phases, state, batch)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))
    keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
    new_state = new_state.replace(params=keep(new_state.params, state.params),
                                  batch_stats=keep(new_state.batch_stats, state.batch_stats),
                                  opt_states=keep(new_state.opt_states, state.opt_states))
    metrics = {k: jnp.where(finite, v, jnp.zeros_like(v)) for k, v in metrics.items()}
    metrics[SKIPPED_METRIC] = 1.0 - finite.astype(jnp.float32)
    return new_state, metrics


def _step_fn(phases: tuple[Phase, ...], skip_nonfinite: bool) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    return functools.partial(apply_phases_skipping_nonfinite if skip_nonfinite else apply_phases, phases)


@functools.lru_cache(maxsize=32)  # one compiled program per model, however often ``train`` is called
def make_train_step(phases: tuple[Phase, ...], gather: GatherFn = data_lib.gather_batch, skip_nonfinite: bool = False,
                    ) -> Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, Metrics]]:
    """A jit-compiled ``step(state, dataset, indices) -> (state, metrics)``.

    ``dataset`` is the whole split on the device (``data.device_dataset``); the batch
    is gathered by ``indices`` (B,) inside the compiled program. ``state`` is donated.
    ``skip_nonfinite``: see ``apply_phases_skipping_nonfinite``.
    """
    apply = _step_fn(phases, skip_nonfinite)

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, dataset, indices):
        return apply(state, gather(dataset, indices))

    return step


@functools.lru_cache(maxsize=32)
def make_train_chunk(phases: tuple[Phase, ...], gather: GatherFn = data_lib.gather_batch, skip_nonfinite: bool = False,
                     ) -> Callable[[TrainState, Mapping[str, jax.Array], jax.Array], tuple[TrainState, Metrics]]:
    """A jit-compiled ``chunk(state, dataset, indices (S, B)) -> (state, metrics, each (S,))``.

    S training steps as one program (``lax.scan`` over the rows of ``indices``): no
    host round trip between steps. Each step is the one of ``make_train_step``; the
    metrics of every step come back stacked. ``state`` is donated.
    """
    apply = _step_fn(phases, skip_nonfinite)

    @functools.partial(jax.jit, donate_argnums=0)
    def chunk(state, dataset, indices):
        return jax.lax.scan(lambda state, batch_indices: apply(state, gather(dataset, batch_indices)), state, indices)

    return chunk


def data_parallel_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh ("batch",) over ``devices`` (default: every device of every process)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (BATCH_AXIS,))


def _place(mesh: Mesh | None, tree: Any, spec: PartitionSpec) -> Any:
    """``tree``'s arrays laid out on ``mesh`` by ``spec``.

    A mesh over several processes holds devices this process cannot address, which
    ``device_put`` refuses: there every process holds the same whole value (the same data,
    seed and shuffle), and each builds the global array from its own copy's pieces.
    """
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, spec)
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def build(leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:  # already global
            return leaf
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(build(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        whole = np.asarray(leaf)
        return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])

    return jax.tree.map(build, tree)


def _place_indices(mesh: Mesh | None, indices: jax.Array) -> jax.Array:
    """Batch indices (..., B): split over the mesh along B when it divides evenly, else replicated."""
    if mesh is None:
        return indices
    sharded = indices.shape[-1] % mesh.size == 0
    spec = PartitionSpec(*([None] * (indices.ndim - 1)), BATCH_AXIS) if sharded else PartitionSpec()
    return _place(mesh, indices, spec)


def check_dataset(dataset: Mapping[str, jax.Array], gather: GatherFn = data_lib.gather_batch) -> int:
    """The number of examples N of ``dataset`` (``num_examples``); a one-line ValueError if it is empty,
    if an array lacks a leading axis, or if ``gather`` refuses it.

    ``gather`` is traced for one index without running (``jax.eval_shape``), so what it
    checks of the dataset's keys, shapes and dtypes fails here rather than mid-training.
    """
    count = num_examples(dataset)
    if count == 0:
        raise ValueError("dataset is empty")
    scalars = sorted(name for name, array in dataset.items() if not getattr(array, "ndim", 0))
    if scalars:
        raise ValueError(f"dataset arrays need a leading example axis; {scalars} have none")
    try:
        jax.eval_shape(gather, dataset, jax.ShapeDtypeStruct((1,), jnp.int32))
    except KeyError as e:  # a key the gather reads: one line, as the other checks
        raise ValueError(f"dataset needs a {e.args[0]!r} array, has {sorted(dataset)}") from None
    return count


def _raise_if_nonfinite(rows: Mapping[str, np.ndarray], first_step: int, epoch: int, saved: str) -> None:
    """Raises ``NonFiniteLossError`` naming the first step (of rows (S,)) with a non-finite metric."""
    bad = np.stack([~np.isfinite(v) for v in rows.values()], axis=1)
    if not bad.any():
        return
    row = int(np.argmax(bad.any(axis=1)))
    terms = ", ".join(f"{name}={values[row]}" for name, values in rows.items() if not np.isfinite(values[row]))
    raise NonFiniteLossError(f"non-finite loss at training step {first_step + row} (epoch {epoch}): {terms}; "
                             f"training stopped, {saved}")


class History(NamedTuple):
    epochs: list[dict[str, float]]  # per epoch, the mean of each metric over its steps
    seconds: float = 0.0  # wall time of ``train``, summed over the processes of a resumed run
    compile_seconds: float = 0.0  # of ``seconds``, compiling the step and chunk programs (this process)
    resumed_seconds: float = 0.0  # of ``seconds``, the processes before a resume (from the checkpoint)


class Checkpointing(NamedTuple):
    """Where and how often ``train`` saves the whole state and its position in the run.

    ``every`` None: at the end of every epoch; N: after the chunk, step or epoch that
    completes each further N steps. Always at the end.
    """

    manager: checkpoint_lib.TrainingCheckpoints
    every: int | None = None


class Callbacks(NamedTuple):
    """``on_epoch_end(epoch, state, means)`` runs after each epoch; the numbers it returns (e.g.
    a validation error) join that epoch's entry of the history, checkpointed with it.
    ``should_stop(state, means)``, asked after each epoch, ends training early."""

    on_epoch_end: Callable[[int, TrainState, dict[str, float]], dict[str, float] | None] | None = None
    should_stop: Callable[[TrainState, dict[str, float]], bool] | None = None


class Reporting(NamedTuple):
    """What ``train`` shows: a tqdm bar advancing per chunk (or every ``log_every`` single
    steps) with the running mean loss, and each epoch's mean metrics (``log_epochs``)."""

    progress: bool = True
    log_every: int = 25
    log_epochs: bool = True


QUIET = Reporting(progress=False, log_epochs=False)


class _Position(NamedTuple):
    """Where a run stands inside an epoch: what a mid-epoch checkpoint records besides the state."""

    epoch: int
    items_done: int = 0  # chunks and single steps of the epoch's work already run
    steps_done: int = 0
    totals: dict[str, float] = {}  # per metric, the sum over the epoch's steps so far
    shuffle_key: jax.Array | None = None


def _epoch_work(full: jax.Array, rest: jax.Array | None, chunk_steps: int) -> list[tuple[jax.Array, bool]]:
    """(indices, runs as one chunk) in training order: full chunks of ``chunk_steps`` (none when it is 1),
    then single steps, then a short last batch."""
    num_chunks = full.shape[0] // chunk_steps if chunk_steps > 1 else 0
    work = [(full[i * chunk_steps:(i + 1) * chunk_steps], True) for i in range(num_chunks)]
    work += [(indices, False) for indices in full[num_chunks * chunk_steps:]]
    return work + ([] if rest is None else [(rest, False)])


def _epoch_means(totals: Mapping[str, float], num_steps: int) -> dict[str, float]:
    """Mean of each metric over the epoch's steps; steps dropped as non-finite count in none but their own."""
    kept = num_steps - totals.get(SKIPPED_METRIC, 0.0)
    return {k: v if k == SKIPPED_METRIC else (v / kept if kept else float("nan")) for k, v in totals.items()}


def _main_loss(totals: Mapping[str, float]) -> float:
    return totals["loss"] if "loss" in totals else next(iter(totals.values()))


class _Saver:
    """Saves checkpoints of a run and says, for an error message, which one is kept."""

    def __init__(self, checkpointing: Checkpointing | None, layout: dict[str, Any], started: float,
                 earlier_seconds: float, last_saved: int | None):
        self.checkpointing, self.layout, self.started = checkpointing, layout, started
        self.earlier_seconds, self.last_saved = earlier_seconds, last_saved  # last_saved: the latest checkpoint's step

    def due(self, global_step: int, end_of_epoch: bool) -> bool:
        if self.checkpointing is None:
            return False
        every = self.checkpointing.every
        if every is None:
            return end_of_epoch
        return global_step - (self.last_saved or 0) >= every

    def save(self, global_step: int, state: TrainState, position: _Position, history: History,
             finished: bool = False) -> None:
        key = position.shuffle_key
        self.checkpointing.manager.save(global_step, state, {
            "epoch": position.epoch, "items_done": position.items_done, "steps_done": position.steps_done,
            "totals": position.totals,
            "shuffle_key": None if key is None else np.asarray(jax.random.key_data(key)).tolist(),
            "history": history.epochs, "layout": self.layout, "finished": finished,
            "seconds": self.earlier_seconds + time.perf_counter() - self.started})
        self.last_saved = global_step

    def note(self) -> str:
        if self.checkpointing is None:
            return "no checkpoints were kept"
        directory = self.checkpointing.manager.directory
        if self.last_saved is None:
            return f"no checkpoint was saved yet in {directory}"
        return f"the last good checkpoint (step {self.last_saved}) is kept in {directory}"


def _check_options(epochs: int, batch_size: int, chunk_steps: int, checkpointing: Checkpointing | None,
                   nonfinite: str) -> None:
    if epochs <= 0 or batch_size <= 0 or chunk_steps <= 0:
        raise ValueError(f"epochs, batch_size and chunk_steps must be positive, got {epochs}, {batch_size}, {chunk_steps}")
    if checkpointing is not None and checkpointing.every is not None and checkpointing.every <= 0:
        raise ValueError(f"checkpointing.every must be positive, got {checkpointing.every}")
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")


def train(
    model: Model,
    state: TrainState,
    dataset: Mapping[str, jax.Array],
    *,
    epochs: int,
    batch_size: int,
    drop_last: bool = False,
    chunk_steps: int = 100,
    mesh: Mesh | None = None,
    gather: GatherFn = data_lib.gather_batch,
    nonfinite: str = "stop",
    checkpointing: Checkpointing | None = None,
    callbacks: Callbacks = Callbacks(),
    reporting: Reporting = Reporting(),
) -> tuple[TrainState, History]:
    """Trains ``epochs`` shuffled passes over ``dataset``; returns the state and history.

    The shuffle key of each epoch is split from ``state.key``, so one seed fixes the
    whole run. Full batches run ``chunk_steps`` at a time as one compiled program
    (``make_train_chunk``); the steps left over, and a shorter last batch, run one by
    one (``make_train_step``); ``chunk_steps=1`` runs every step on its own. Either way
    the same steps see the same batches and keys. ``mesh`` (``data_parallel_mesh()``)
    shards every batch across its devices and replicates the state: the same training,
    global batch statistics included, on several devices. ``gather`` builds a batch
    from the dataset.

    ``checkpointing`` saves the state and the position in the run (``Checkpointing``).
    If its manager already holds a checkpoint, training resumes from the latest one
    (``state`` then only gives its structure): with the same ``batch_size``,
    ``chunk_steps`` and dataset, a resumed run ends exactly where an uninterrupted one
    would have.

    ``nonfinite="stop"`` raises ``NonFiniteLossError`` (naming the step and the
    metrics) at the first non-finite metric, before any checkpoint could hold the
    damaged state; ``"skip"`` drops such steps' updates and counts them as the
    ``nonfinite_skipped`` metric. ``callbacks`` and ``reporting``: see ``Callbacks``
    and ``Reporting``.
    """
    _check_options(epochs, batch_size, chunk_steps, checkpointing, nonfinite)
    example_count = check_dataset(dataset, gather)
    if drop_last and example_count < batch_size:
        raise ValueError(f"drop_last with batch_size {batch_size} > {example_count} examples leaves no batch")
    skip = nonfinite == "skip"
    step_fn = make_train_step(model.phases, gather, skip)
    chunk_fn = make_train_chunk(model.phases, gather, skip) if chunk_steps > 1 else None
    layout = {"num_examples": example_count, "batch_size": batch_size, "chunk_steps": chunk_steps, "drop_last": drop_last}
    started = time.perf_counter()
    history, position, finished, earlier_seconds = History([]), _Position(1), False, 0.0
    last_saved = None if checkpointing is None else checkpointing.manager.latest_step()
    if last_saved is not None:
        manager = checkpointing.manager
        state, saved = manager.restore(state, last_saved)
        if saved["layout"] != layout:
            raise ValueError(f"the checkpoints in {manager.directory} come from a run with {saved['layout']}, "
                             f"not {layout}; resume with the same settings or use another folder")
        history, finished, earlier_seconds = History(list(saved["history"])), saved["finished"], saved["seconds"]
        key = None if not saved["items_done"] else jax.random.wrap_key_data(
            jnp.asarray(saved["shuffle_key"], jnp.uint32), impl=jax.random.key_impl(state.key))
        position = _Position(saved["epoch"], saved["items_done"], saved["steps_done"], dict(saved["totals"]), key)
    saver = _Saver(checkpointing, layout, started, earlier_seconds, last_saved)
    state, dataset = _place(mesh, state, PartitionSpec()), _place(mesh, dataset, PartitionSpec())
    global_step = int(state.step)
    compile_durations: list[float] = []

    for epoch in range(position.epoch, epochs + 1):
        if finished:
            break
        if position.shuffle_key is None:  # a fresh epoch (a mid-epoch resume has its key split off already)
            key, shuffle_key = jax.random.split(state.key)
            state = state.replace(key=key)
            position = _Position(epoch, shuffle_key=shuffle_key)
        full, rest = data_lib.epoch_indices(position.shuffle_key, example_count, batch_size, drop_last)
        work = _epoch_work(full, rest, chunk_steps)
        num_steps = full.shape[0] + (rest is not None)
        totals, done = position.totals, position.steps_done
        bar = tqdm(total=num_steps, initial=done, desc=f"epoch {epoch}/{epochs}", disable=not reporting.progress,
                   leave=False)
        for item, (indices, is_chunk) in enumerate(work):
            if item < position.items_done:
                continue
            with counting_compile_time(compile_durations):  # a program's first call compiles it
                state, metrics = (chunk_fn if is_chunk else step_fn)(state, dataset, _place_indices(mesh, indices))
            rows = {k: np.atleast_1d(np.asarray(v)) for k, v in jax.device_get(metrics).items()}  # (steps,) each
            _raise_if_nonfinite(rows, global_step, epoch, saver.note())
            totals = {k: totals.get(k, 0.0) + float(np.sum(v, dtype=np.float64)) for k, v in rows.items()}
            steps = indices.shape[0] if is_chunk else 1
            done, global_step = done + steps, global_step + steps
            bar.update(steps)
            if reporting.progress and (is_chunk or done % reporting.log_every == 0):
                bar.set_postfix(loss=f"{_main_loss(totals) / done:.5f}")
            if item + 1 < len(work) and saver.due(global_step, end_of_epoch=False):
                saver.save(global_step, state, _Position(epoch, item + 1, done, totals, position.shuffle_key), history)
        means = _epoch_means(totals, num_steps)
        bar.close()
        if callbacks.on_epoch_end is not None:
            means.update(callbacks.on_epoch_end(epoch, state, means) or {})
        if reporting.log_epochs:  # after ``on_epoch_end``: what it measured (e.g. a validation error) is shown too
            tqdm.write(f"epoch {epoch}/{epochs}: " + ", ".join(f"{k} {v:.5f}" for k, v in means.items()))
        history.epochs.append(means)
        finished = callbacks.should_stop is not None and callbacks.should_stop(state, means)
        position = _Position(epoch + 1)
        if saver.due(global_step, end_of_epoch=True) or (checkpointing is not None and (finished or epoch == epochs)):
            saver.save(global_step, state, position, history, finished)
    return state, history._replace(seconds=earlier_seconds + time.perf_counter() - started,
                                   compile_seconds=float(sum(compile_durations)), resumed_seconds=earlier_seconds)
