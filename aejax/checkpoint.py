"""Saving and restoring trained variables with orbax-checkpoint."""

from __future__ import annotations

import os
import pathlib
from typing import Any

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
