"""Data parallel training across processes: two processes on this machine (coordinator on
localhost, gloo CPU collectives, one CPU device each) train as one process does, and a
job killed with one of its workers resumes, when rerun, from its last checkpoint."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")

pytestmark = pytest.mark.slow  # worker processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(process_id: int, processes: int, port: int, data_dir: pathlib.Path, checkpoint_dir: pathlib.Path,
           kill_epoch: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
    env.pop("JAX_NUM_CPU_DEVICES", None)
    argv = [sys.executable, str(WORKER), str(process_id), str(processes), str(port), str(data_dir), str(checkpoint_dir)]
    return subprocess.Popen(argv + ([] if kill_epoch is None else [str(kill_epoch)]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def _job(processes: int, data_dir: pathlib.Path, checkpoint_dir: pathlib.Path,
         kill_epoch: int | None = None) -> list[subprocess.Popen]:
    port = _free_port()
    return [_start(i, processes, port, data_dir, checkpoint_dir, kill_epoch) for i in range(processes)]


def test_two_processes_train_as_one_and_a_killed_job_resumes_from_its_last_checkpoint(mnist_dir, tmp_path):
    single = _job(1, mnist_dir, tmp_path / "single")[0]
    killed = _job(2, mnist_dir, tmp_path / "two", kill_epoch=3)
    killed[1].communicate(timeout=600)
    assert killed[1].returncode == -signal.SIGKILL
    killed[0].kill()  # as a launcher tears the job down once a worker is lost
    killed[0].communicate(timeout=60)
    # epoch 2's checkpoint is the last one: worker 1 died after epoch 3's step, before its checkpoint
    assert sorted(int(p.name) for p in (tmp_path / "two").iterdir() if p.name.isdigit())[-1] == 2

    results = [_result(w) for w in _job(2, mnist_dir, tmp_path / "two")]  # the same command again
    reference = _result(single)
    assert [(r["process"], r["processes"], r["devices"], r["start_step"]) for r in results] == [(0, 2, 2, 2), (1, 2, 2, 2)]
    assert (reference["processes"], reference["start_step"], len(reference["losses"])) == (1, 0, 3)
    for result in results:  # epochs 1-2 from the checkpoint's history, epoch 3 trained after the resume
        np.testing.assert_allclose(result["losses"], reference["losses"], rtol=1e-5)
    assert reference["losses"][2] < reference["losses"][0]  # the steps train
