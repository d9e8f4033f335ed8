"""A generic training loop: it knows phases, never a model variant.

A variant (see ``aejax.autoencoder``) supplies a ``Model``: how to initialise its
variables, the ordered ``Phase``s of one training step (each a loss function, an
optax optimizer and the top-level modules it updates) and eval-mode ``encode`` /
``decode``. A plain autoencoder has one phase; the adversarial autoencoder has three
(autoencoder, generator, discriminator), run in order inside one compiled step.
"""

from __future__ import annotations

import contextlib
import functools
import threading
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

Params = Mapping[str, Any]  # {module name: flax params}
BatchStats = Mapping[str, Any]  # {module name: flax batch_stats}
Batch = Mapping[str, jax.Array]  # what ``gather`` returns, e.g. {"image": (B, 28, 28, 1), "label": (B,)}
Metrics = dict[str, jax.Array]
BATCH_AXIS = "batch"  # the data-parallel mesh axis
# loss_fn(params, batch_stats, batch, key, step) -> (scalar loss, (new batch_stats, metrics[, carry]));
# ``step`` (int32 scalar: steps done before this one) serves schedules such as a KL warm-up.
# ``carry`` (optional dict of arrays) joins the batch that later phases of the same step see,
# without gradient: the AAE's discriminator judges the codes its generator phase computed.
LossFn = Callable[[Params, BatchStats, Batch, jax.Array, jax.Array], tuple[jax.Array, tuple[BatchStats, Metrics]]]
# gather(dataset, indices (B,)) -> batch; ``data.gather_batch`` for MNIST, ``take_batch`` for any arrays.
GatherFn = Callable[[Mapping[str, jax.Array], jax.Array], Batch]
# encode(params, batch_stats, images, labels, train) -> latents;
# decode(params, batch_stats, latents, labels, train) -> logits. ``train=True`` normalises
# with the batch's statistics (as a PyTorch module left in train mode) without updating any.
EncodeFn = Callable[..., jax.Array]
DecodeFn = Callable[..., jax.Array]


class Phase(NamedTuple):
    """One optimisation phase of a training step.

    ``trainable`` names the top-level entries of ``params`` this phase's optimizer
    updates; the loss may read every module, but gradients flow only to these.
    ``value_metric`` names a metric of the loss passed to the optimizer as ``value=``
    (for ``optax.contrib.reduce_on_plateau``).
    """

    name: str
    loss_fn: LossFn
    optimizer: optax.GradientTransformation
    trainable: tuple[str, ...]
    value_metric: str | None = None


class Model(NamedTuple):
    """What a variant gives the generic loop.

    init(key) -> (params, batch_stats);
    encode(params, batch_stats, images (B,28,28,1), labels (B,), train=False) -> latents (B, D);
    decode(params, batch_stats, latents (B, D), labels (B,), train=False) -> logits (B,28,28,1);
    posterior (stochastic encoders only): the same arguments as encode -> (mu, log_var),
    each (B, D), of the Gaussian q(z | x); ``encode`` then returns mu.
    classify (models with a label head): (params, batch_stats, images, train=False) -> label logits (B, C).
    """

    init: Callable[[jax.Array], tuple[Params, BatchStats]]
    phases: tuple[Phase, ...]
    encode: EncodeFn
    decode: DecodeFn
    posterior: Callable[..., tuple[jax.Array, jax.Array]] | None = None
    classify: Callable[..., jax.Array] | None = None


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; a pytree, so it jits and checkpoints."""

    step: jax.Array
    params: Params
    batch_stats: BatchStats
    opt_states: dict[str, optax.OptState]  # one per phase, by phase name
    key: jax.Array  # consumed by splitting, never reused


def module_variables(params: Params, batch_stats: BatchStats, name: str) -> dict[str, Any]:
    """The flax variables of one top-level module: {"params": ..., "batch_stats": ...}."""
    return {"params": params[name], "batch_stats": batch_stats[name]}


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
    loss returns a ``carry`` dict adds it (gradient stopped) to the batch of later phases.
    """
    key, step_key = jax.random.split(state.key)
    params, batch_stats, opt_states = dict(state.params), state.batch_stats, dict(state.opt_states)
    metrics: Metrics = {}
    for index, phase in enumerate(phases):
        trainable = _subset(params, phase.trainable)

        def loss_of_trainable(sub, phase=phase, batch_stats=batch_stats, batch=batch, index=index):
            return phase.loss_fn({**params, **sub}, batch_stats, batch, jax.random.fold_in(step_key, index), state.step)

        (loss, aux), grads = jax.value_and_grad(loss_of_trainable, has_aux=True)(trainable)
        batch_stats, phase_metrics = aux[0], aux[1]
        if len(aux) == 3:
            batch = {**batch, **jax.tree.map(jax.lax.stop_gradient, aux[2])}
        extra = {} if phase.value_metric is None else {"value": phase_metrics[phase.value_metric]}
        updates, opt_states[phase.name] = phase.optimizer.update(grads, opt_states[phase.name], trainable, **extra)
        params.update(optax.apply_updates(trainable, updates))
        prefix = f"{phase.name}/" if len(phases) > 1 else ""
        metrics.update({prefix + k: v for k, v in {"loss": loss, **phase_metrics}.items()})
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


# JAX reports each compilation's stages (tracing, lowering, XLA compile or persistent-cache
# read) as duration events; ``train`` sums those recorded while its own steps are called,
# so the jitted step keeps JAX's ordinary dispatch and in-memory cache.
_COMPILE_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration",
                             "/jax/core/compile/jaxpr_to_mlir_module_duration",
                             "/jax/core/compile/backend_compile_duration"})
_compile_clock = threading.local()  # .seconds: a list to add to while counting, else absent


def _record_compile_time(event: str, duration_secs: float, **_: Any) -> None:
    seconds = getattr(_compile_clock, "seconds", None)
    if seconds is not None and event in _COMPILE_EVENTS:
        seconds.append(duration_secs)


jax.monitoring.register_event_duration_secs_listener(_record_compile_time)


@contextlib.contextmanager
def _counting_compile_time(into: list[float]):
    """Adds to ``into`` the compile durations JAX records in this thread inside the block."""
    outer = getattr(_compile_clock, "seconds", None)
    _compile_clock.seconds = into
    try:
        yield
    finally:
        _compile_clock.seconds = outer


class History(NamedTuple):
    epochs: list[dict[str, float]]  # per epoch, the mean of each metric over its steps
    seconds: float = 0.0  # wall time of ``train``, summed over the processes of a resumed run
    compile_seconds: float = 0.0  # of ``seconds``, compiling the step and chunk programs (this process)
    resumed_seconds: float = 0.0  # of ``seconds``, the processes before a resume (from the checkpoint)


def num_examples(dataset: Mapping[str, jax.Array]) -> int:
    """The number of examples N of ``dataset``: the leading axis of its first array (in mapping order).

    Later arrays may have other lengths: a custom ``gather`` reads them its own way
    (e.g. a labelled subset indexed modulo its size).
    """
    leaves = list(dataset.values())
    if not leaves:
        raise ValueError("dataset holds no arrays")
    first = next(iter(dataset))
    if not getattr(leaves[0], "ndim", 0):
        raise ValueError(f"dataset[{first!r}] needs a leading example axis, got shape {jnp.shape(leaves[0])}")
    return int(leaves[0].shape[0])


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


def _epoch_means(totals: Mapping[str, float], num_steps: int) -> dict[str, float]:
    """Mean of each metric over the epoch's steps; steps dropped as non-finite count in none but their own."""
    kept = num_steps - totals.get(SKIPPED_METRIC, 0.0)
    return {k: v if k == SKIPPED_METRIC else (v / kept if kept else float("nan")) for k, v in totals.items()}


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
    checkpoints: checkpoint_lib.TrainingCheckpoints | None = None,
    checkpoint_every: int | None = None,
    nonfinite: str = "stop",
    log_every: int = 25,
    progress: bool = True,
    log_epochs: bool = True,
    on_epoch_end: Callable[[int, TrainState, dict[str, float]], dict[str, float] | None] | None = None,
    should_stop: Callable[[TrainState, dict[str, float]], bool] | None = None,
    gather: GatherFn = data_lib.gather_batch,
) -> tuple[TrainState, History]:
    """Trains ``epochs`` shuffled passes over ``dataset``; returns the state and history.

    The shuffle key of each epoch is split from ``state.key``, so one seed fixes the
    whole run. Full batches run ``chunk_steps`` at a time as one compiled program
    (``make_train_chunk``); the steps left over, and a shorter last batch, run one by
    one (``make_train_step``); ``chunk_steps=1`` runs every step on its own. Either way
    the same steps see the same batches and keys. ``mesh`` (``data_parallel_mesh()``)
    shards every batch across its devices and replicates the state: the same training,
    global batch statistics included, on several devices.

    ``checkpoints`` (a ``checkpoint.TrainingCheckpoints``) saves the whole state and
    the position in the run at the end of every epoch (``checkpoint_every=None``), or
    after the chunk, step or epoch that completes each further ``checkpoint_every``
    steps, and always at the end. If
    it already holds a checkpoint, training resumes from the latest one (``state`` then
    only gives its structure): with the same ``batch_size``, ``chunk_steps`` and
    dataset, a resumed run ends exactly where an uninterrupted one would have.

    ``nonfinite="stop"`` raises ``NonFiniteLossError`` (naming the step and the
    metrics) at the first non-finite metric, before any checkpoint could hold the
    damaged state; ``"skip"`` drops such steps' updates and counts them as the
    ``nonfinite_skipped`` metric.

    The tqdm bar (``progress``) advances per chunk (or every ``log_every`` single
    steps) with the running mean loss; ``log_epochs`` prints each epoch's mean metrics.
    ``on_epoch_end(epoch, state, means)`` runs after each epoch; the numbers it returns
    (e.g. a test error) join that epoch's entry of the history, checkpointed with it.
    ``should_stop(state, means)``, asked after each epoch, ends training early (e.g.
    once a plateau schedule has shrunk the learning rate enough). ``gather`` builds a
    batch from the dataset.
    """
    if epochs <= 0 or batch_size <= 0 or chunk_steps <= 0:
        raise ValueError(f"epochs, batch_size and chunk_steps must be positive, got {epochs}, {batch_size}, {chunk_steps}")
    if checkpoint_every is not None and checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
    if nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
    example_count = check_dataset(dataset, gather)
    if drop_last and example_count < batch_size:
        raise ValueError(f"drop_last with batch_size {batch_size} > {example_count} examples leaves no batch")
    skip = nonfinite == "skip"
    step_fn = make_train_step(model.phases, gather, skip)
    chunk_fn = make_train_chunk(model.phases, gather, skip) if chunk_steps > 1 else None
    layout = {"num_examples": example_count, "batch_size": batch_size, "chunk_steps": chunk_steps, "drop_last": drop_last}
    started = time.perf_counter()
    history, start_epoch, resume, finished, earlier_seconds = History([]), 1, None, False, 0.0
    last_saved = None if checkpoints is None else checkpoints.latest_step()  # the step of the latest checkpoint
    if last_saved is not None:
        state, saved_progress = checkpoints.restore(state, last_saved)
        if saved_progress["layout"] != layout:
            raise ValueError(f"the checkpoints in {checkpoints.directory} come from a run with {saved_progress['layout']}, "
                             f"not {layout}; resume with the same settings or use another folder")
        history = History(list(saved_progress["history"]))
        start_epoch, finished = saved_progress["epoch"], saved_progress["finished"]
        earlier_seconds = saved_progress["seconds"]
        resume = saved_progress if saved_progress["items_done"] else None
    state, dataset = _place(mesh, state, PartitionSpec()), _place(mesh, dataset, PartitionSpec())
    global_step = int(state.step)
    compile_durations: list[float] = []

    def run(is_chunk: bool, state: TrainState, indices: jax.Array) -> tuple[TrainState, Metrics]:
        """One step or chunk; the time JAX spends compiling it (its first call) is counted apart."""
        with _counting_compile_time(compile_durations):
            return (chunk_fn if is_chunk else step_fn)(state, dataset, indices)

    def save(epoch: int, items_done: int, shuffle_key: jax.Array | None, totals: dict, steps_done: int,
             finished: bool = False) -> None:
        nonlocal last_saved
        checkpoints.save(global_step, state, {
            "epoch": epoch, "items_done": items_done, "steps_done": steps_done, "totals": totals,
            "shuffle_key": None if shuffle_key is None else np.asarray(jax.random.key_data(shuffle_key)).tolist(),
            "history": history.epochs, "layout": layout, "finished": finished,
            "seconds": earlier_seconds + time.perf_counter() - started})
        last_saved = global_step

    def saved_note() -> str:
        if checkpoints is None:
            return "no checkpoints were kept"
        if last_saved is None:
            return f"no checkpoint was saved yet in {checkpoints.directory}"
        return f"the last good checkpoint (step {last_saved}) is kept in {checkpoints.directory}"

    for epoch in range(start_epoch, epochs + 1):
        if finished:
            break
        if resume is not None:  # mid-epoch: the epoch's key was split off before the checkpoint
            shuffle_key = jax.random.wrap_key_data(jnp.asarray(resume["shuffle_key"], jnp.uint32),
                                                   impl=jax.random.key_impl(state.key))
            items_to_skip, totals, done = resume["items_done"], dict(resume["totals"]), resume["steps_done"]
            resume = None
        else:
            key, shuffle_key = jax.random.split(state.key)
            state = state.replace(key=key)
            items_to_skip, totals, done = 0, {}, 0
        full, rest = data_lib.epoch_indices(shuffle_key, example_count, batch_size, drop_last)
        num_chunks = full.shape[0] // chunk_steps if chunk_fn is not None else 0
        # (indices, runs as one chunk) in training order
        work = [(full[i * chunk_steps:(i + 1) * chunk_steps], True) for i in range(num_chunks)]
        work += [(indices, False) for indices in full[num_chunks * chunk_steps:]]
        work += [] if rest is None else [(rest, False)]
        num_steps = full.shape[0] + (rest is not None)
        bar = tqdm(total=num_steps, initial=done, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False)
        for item, (indices, is_chunk) in enumerate(work):
            if item < items_to_skip:
                continue
            state, metrics = run(is_chunk, state, _place_indices(mesh, indices))
            rows = {k: np.atleast_1d(np.asarray(v)) for k, v in jax.device_get(metrics).items()}  # (steps,) each
            _raise_if_nonfinite(rows, global_step, epoch, saved_note())
            totals = {k: totals.get(k, 0.0) + float(np.sum(v, dtype=np.float64)) for k, v in rows.items()}
            steps = indices.shape[0] if is_chunk else 1
            done, global_step = done + steps, global_step + steps
            bar.update(steps)
            if progress and (is_chunk or done % log_every == 0):
                bar.set_postfix(loss=f"{_main_loss(totals) / done:.5f}")
            if (checkpoints is not None and checkpoint_every is not None and item + 1 < len(work)
                    and global_step - (last_saved or 0) >= checkpoint_every):
                save(epoch, item + 1, shuffle_key, totals, done)
        means = _epoch_means(totals, num_steps)
        bar.close()
        if on_epoch_end is not None:
            means.update(on_epoch_end(epoch, state, means) or {})
        if log_epochs:  # after ``on_epoch_end``: what it measured (e.g. a validation error) is shown too
            tqdm.write(f"epoch {epoch}/{epochs}: " + ", ".join(f"{k} {v:.5f}" for k, v in means.items()))
        history.epochs.append(means)
        finished = should_stop is not None and should_stop(state, means)
        if checkpoints is not None and (checkpoint_every is None or finished or epoch == epochs
                                        or global_step - (last_saved or 0) >= checkpoint_every):
            save(epoch + 1, 0, None, {}, 0, finished)
    return state, history._replace(seconds=earlier_seconds + time.perf_counter() - started,
                                   compile_seconds=float(sum(compile_durations)), resumed_seconds=earlier_seconds)


def _main_loss(totals: Mapping[str, float]) -> float:
    return totals["loss"] if "loss" in totals else next(iter(totals.values()))


CPU_INFERENCE_BATCH = 64  # XLA:CPU: the lecture's decoder ran 6,179 images/s at 64, 2,339 at 1000 (2-core Xeon)
ACCELERATOR_INFERENCE_BATCH = 1000


def inference_batch_size() -> int:
    """Images per compiled eval-mode call by default: ``CPU_INFERENCE_BATCH`` on the CPU backend
    (its convolution kernels run fastest while a batch's activations stay in cache),
    ``ACCELERATOR_INFERENCE_BATCH`` elsewhere. Eval-mode results do not depend on it."""
    return CPU_INFERENCE_BATCH if jax.default_backend() == "cpu" else ACCELERATOR_INFERENCE_BATCH


def map_over_split(fn: Callable[[int, jax.Array], tuple[jax.Array, ...]], dataset: Mapping[str, jax.Array],
                   batch_size: int, pad_last: bool = False) -> tuple[np.ndarray, ...]:
    """Runs ``fn(batch_number, indices (b,))`` over consecutive batches of a split; concatenates each output.

    ``fn`` returns a tuple of arrays with the batch on the first axis; the result holds
    one numpy array (N, ...) per output. ``pad_last``: a short last batch repeats its last
    index up to ``min(batch_size, N)`` and its padding's outputs are dropped, so every call
    has one shape (one compilation); only for ``fn`` that treat examples independently
    (eval mode, not batch statistics).
    """
    count = num_examples(dataset)
    if count == 0 or batch_size <= 0:
        raise ValueError(f"need at least one example and a positive batch_size, got {count} and {batch_size}")
    width = min(batch_size, count) if pad_last else batch_size
    parts = []
    for number, start in enumerate(range(0, count, batch_size)):
        stop = min(start + batch_size, count)
        indices = np.minimum(np.arange(start, start + width), count - 1) if pad_last else np.arange(start, stop)
        parts.append([np.asarray(out)[:stop - start] for out in fn(number, jnp.asarray(indices))])
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(len(parts[0])))


@functools.partial(jax.jit, static_argnames=("loss_fn", "names", "gather"))
def _batch_statistics_update(loss_fn: LossFn, names: tuple[str, ...], gather: GatherFn, params: Params,
                             zeros: BatchStats, dataset: Mapping[str, jax.Array], indices: jax.Array,
                             key: jax.Array) -> BatchStats:
    """The statistics ``loss_fn`` writes for modules ``names`` on one batch, from running ones at zero."""
    _, aux = loss_fn(params, zeros, gather(dataset, indices), key)
    return {name: aux[0][name] for name in names}


def recompute_batch_stats(
    phase: Phase,
    params: Params,
    batch_stats: BatchStats,
    dataset: Mapping[str, jax.Array],
    batch_size: int,
    key: jax.Array,
    momentum: float = 0.1,  # the weight of the new statistic, PyTorch's BatchNorm default (modules.BatchNorm)
    gather: GatherFn = data_lib.gather_batch,
) -> BatchStats:
    """BatchNorm statistics of the final weights ("precise BN"): the running ones, recomputed.

    The running statistics are an exponential average over the weights of the last few
    hundred steps; where training moves the weights fast (an adversarially trained
    encoder) eval mode then normalises by statistics of weights that no longer exist.
    Here ``phase``'s loss runs over the split's consecutive full batches (B = ``batch_size``)
    with every running statistic set to zero, so each batch's update is ``momentum`` times
    its own statistic (``modules.BatchNorm``: mean and unbiased variance); their average
    over the batches replaces the statistics of the modules ``phase`` trains. The
    others are returned as they were. Deterministic for a given ``key``. Compiled once
    per loss, ``gather`` and shapes.
    """
    count = num_examples(dataset)
    num_batches = count // batch_size
    if num_batches == 0:
        raise ValueError(f"need at least one full batch of {batch_size}, the split has {count} examples")
    names = tuple(name for name in phase.trainable if name in batch_stats and jax.tree.leaves(batch_stats[name]))
    zeros = {**batch_stats, **{name: jax.tree.map(jnp.zeros_like, batch_stats[name]) for name in names}}
    total = None
    for number in range(num_batches):
        update = _batch_statistics_update(phase.loss_fn, names, gather, params, zeros, dataset,
                                          jnp.arange(number * batch_size, (number + 1) * batch_size),
                                          jax.random.fold_in(key, number))
        total = update if total is None else jax.tree.map(jnp.add, total, update)
    return {**batch_stats, **jax.tree.map(lambda t: t / (num_batches * momentum), total)}


def __getattr__(name: str) -> Any:
    # ``evaluate`` reads dataset keys, so it lives in ``aejax.evaluation`` (which imports this module);
    # ``train.evaluate`` still resolves to it.
    if name == "evaluate":
        from aejax import evaluation

        return evaluation.evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
