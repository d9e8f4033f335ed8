"""One process of the two-process data parallel tests (tests/test_distributed.py).

    python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT DATA_DIR CHECKPOINT_DIR [KILL_EPOCH]

Trains the lecture's conv AE for three epochs on the first 64 MNIST images (one batch per
epoch, so each epoch's loss is one step's) over a mesh of every process's CPU device,
checkpointing every epoch into CHECKPOINT_DIR (a rerun resumes from its latest
checkpoint), and prints the step it started from and the per-epoch losses as one JSON
line. NUM_PROCESSES 1: one process, no mesh. KILL_EPOCH: process 1 kills itself (SIGKILL) at the end of that epoch,
after the previous epoch's checkpoint and before this one's.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import jax


def train_job(num_processes: int, data_dir: str, checkpoint_dir: str, kill_epoch: int | None) -> tuple[int, list[float]]:
    """(the step this run started from, each epoch's loss)."""
    from aejax import autoencoder, checkpoint, data, train

    def on_epoch_end(epoch, state, means):
        if epoch == kill_epoch and jax.process_index() == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    splits = data.load_mnist(data_dir, allow_download=False)
    dataset = data.device_dataset(data.Split(splits["train"].images[:64], splits["train"].labels[:64]))
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=24))
    state = train.create_train_state(model, jax.random.key(0))
    mesh = train.data_parallel_mesh() if num_processes > 1 else None
    with checkpoint.TrainingCheckpoints(checkpoint_dir) as checkpoints:
        start_step = checkpoints.latest_step() or 0
        _, history = train.train(model, state, dataset, epochs=3, batch_size=64, mesh=mesh, chunk_steps=1,
                                 checkpointing=train.Checkpointing(checkpoints),
                                 callbacks=train.Callbacks(on_epoch_end=on_epoch_end),
                                 reporting=train.Reporting(progress=False))
    return start_step, [epoch["loss"] for epoch in history.epochs]


if __name__ == "__main__":
    process_id, num_processes, port, data_dir, checkpoint_dir = sys.argv[1:6]
    kill_epoch = int(sys.argv[6]) if len(sys.argv) > 6 else None
    if int(num_processes) > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives between processes
        jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=int(num_processes),
                                   process_id=int(process_id))
    start_step, losses = train_job(int(num_processes), data_dir, checkpoint_dir, kill_epoch)
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                      "devices": jax.device_count(), "start_step": start_step, "losses": losses}))
