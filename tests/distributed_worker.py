"""One process of the two-process data parallel test (tests/test_distributed.py).

    python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT DATA_DIR

Trains the lecture's conv AE for three steps on the first 64 MNIST images (one batch per
epoch, so each epoch's loss is one step's) over a mesh of every process's CPU device, and
prints the per-step losses as one JSON line. NUM_PROCESSES 1: one process, no mesh.
"""

from __future__ import annotations

import json
import sys

import jax


def per_step_losses(num_processes: int, data_dir: str) -> list[float]:
    from aejax import autoencoder, data, train

    splits = data.load_mnist(data_dir, allow_download=False)
    dataset = data.device_dataset(data.Split(splits["train"].images[:64], splits["train"].labels[:64]))
    model = autoencoder.make_model(autoencoder.AEConfig(latent_dim=24))
    state = train.create_train_state(model, jax.random.key(0))
    mesh = train.data_parallel_mesh() if num_processes > 1 else None
    _, history = train.train(model, state, dataset, epochs=3, batch_size=64, mesh=mesh, progress=False,
                             chunk_steps=1)
    return [epoch["loss"] for epoch in history.epochs]


if __name__ == "__main__":
    process_id, num_processes, port, data_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives between processes
        jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=num_processes,
                                   process_id=process_id)
    losses = per_step_losses(num_processes, data_dir)
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                      "devices": jax.device_count(), "losses": losses}))
