"""Running a model over a whole split outside training: eval-mode batching and BatchNorm recomputation.

``map_over_split`` runs a compiled function over consecutive batches of a split (one
compilation with ``pad_last``); ``inference_batch_size`` is the batch a device runs
eval mode fastest at; ``recompute_batch_stats`` replaces the running BatchNorm
statistics by ones of the final weights.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aejax import data as data_lib
from aejax.model import BatchStats, LossFn, Params, Phase

# gather(dataset, indices (B,)) -> batch; ``data.gather_batch`` for MNIST, ``take_batch`` for any arrays.
GatherFn = Callable[[Mapping[str, jax.Array], jax.Array], Mapping[str, jax.Array]]


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
    output = loss_fn(params, zeros, gather(dataset, indices), key, jnp.zeros((), jnp.int32))
    return {name: output.batch_stats[name] for name in names}


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
