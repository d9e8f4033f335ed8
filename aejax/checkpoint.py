"""Saving and restoring with orbax-checkpoint: trained variables, and whole training runs.

``save`` / ``restore`` keep one pytree (e.g. a model's params and batch_stats).
``TrainingCheckpoints`` keeps the last few full training states of a run (params,
batch_stats, every optimizer state, the PRNG key, the step) with a JSON record of
where the run is (epoch, position in the epoch, metrics so far), so that a killed run
resumes exactly where its last checkpoint was taken.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def save(path: str | os.PathLike, tree: Any, overwrite: bool = False) -> pathlib.Path:
    """Saves a pytree (e.g. {"params": ..., "batch_stats": ...}) to the folder ``path``.

    orbax writes into a temporary folder and renames it when complete, so an
    interrupted save never leaves a half-written checkpoint; an existing one is kept
    unless ``overwrite``.
    """
    path = pathlib.Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"checkpoint {path} exists; pass overwrite=True to replace it")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, tree, force=overwrite)
        checkpointer.wait_until_finished()
    return path


def restore(path: str | os.PathLike, like: Any) -> Any:
    """Restores the pytree saved at ``path`` with the structure, shapes and dtypes of ``like``."""
    path = pathlib.Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(path, like)


def _is_typed_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
    """Typed PRNG keys -> their uint32 data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, tree)


def _data_to_keys(tree: Any, like: Any) -> Any:
    """Undoes ``_keys_to_data`` where ``like`` holds a typed key, with the same key implementation."""
    return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
                        if _is_typed_key(ref) else x, tree, like)


class TrainingCheckpoints:
    """The last ``max_to_keep`` checkpoints of one training run, in the folder ``directory``.

    Each checkpoint, named by its training step, holds ``state`` (any pytree of arrays,
    typed PRNG keys included) and ``progress`` (a JSON-serialisable dict). Saves are
    synchronous and atomic (orbax writes a temporary folder and renames it), so a run
    killed while saving leaves the previous checkpoint as the latest.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "progress"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, progress: dict[str, Any]) -> None:
        """Saves ``state`` and ``progress`` as checkpoint ``step`` (replacing one of that step)."""
        if step in self._manager.all_steps():
            self._manager.delete(step)
        host_state = jax.tree.map(np.asarray, _keys_to_data(state))  # gathered, so any sharding restores anywhere
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(host_state),
                                                         progress=ocp.args.JsonSave(progress)))
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """(state, progress) of checkpoint ``step`` (default: the latest); ``state`` shaped like ``like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no training checkpoint in {self.directory}")
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jax.numpy.result_type(x)), _keys_to_data(like))
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"training checkpoint {self.directory / str(step)} does not fit this model: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return _data_to_keys(jax.tree.map(jax.numpy.asarray, restored.state), like), dict(restored.progress)

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> "TrainingCheckpoints":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
