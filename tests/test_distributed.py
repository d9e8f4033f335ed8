"""Data parallel training across processes: two processes on this machine (coordinator on
localhost, gloo CPU collectives, one CPU device each) train as one process does."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(process_id: int, processes: int, port: int, data_dir: pathlib.Path) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return subprocess.Popen([sys.executable, str(WORKER), str(process_id), str(processes), str(port), str(data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_processes_train_as_one(mnist_dir):
    port = _free_port()
    workers = [_start(i, 2, port, mnist_dir) for i in range(2)]
    single = _start(0, 1, 0, mnist_dir)
    results = [_result(w) for w in workers]
    reference = _result(single)
    assert [(r["process"], r["processes"], r["devices"]) for r in results] == [(0, 2, 2), (1, 2, 2)]
    assert reference["processes"] == 1 and len(reference["losses"]) == 3
    for result in results:  # each step's loss over the global batch, sharded 32 + 32 over the processes
        np.testing.assert_allclose(result["losses"], reference["losses"], rtol=1e-5)
    assert reference["losses"][2] < reference["losses"][0]  # the steps train
