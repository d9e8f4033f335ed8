"""The lecture as a notebook (notebooks/lecture.ipynb): committed without outputs, sections 1-10
in the lecture's order, and executed top to bottom as committed (QUICK = True) in a python3
kernel: no cell fails, every section shows its figures and every run behind them completes."""

from __future__ import annotations

import json
import math
import os
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "lecture.ipynb"
SECTIONS = [str(number) for number in range(1, 11)]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUNS = pathlib.Path("runs/notebook")  # the notebook's RUNS, relative to the kernel's folder
CELL_TIMEOUT_S = 900  # one experiment's quick run; a loaded CPU compiles slowly


def read_notebook() -> nbformat.NotebookNode:
    """The committed notebook, as nbformat 4."""
    return nbformat.read(NOTEBOOK, as_version=4)


def execute(folder: pathlib.Path, env: dict[str, str]) -> nbformat.NotebookNode:
    """The notebook executed top to bottom in a python3 kernel started in ``folder`` with ``env``."""
    notebook = read_notebook()
    client = NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)
    return notebook


def stdout(cell: nbformat.NotebookNode) -> str:
    """What an executed code cell printed."""
    return "".join(output.get("text", "") for output in cell.outputs
                   if output.output_type == "stream" and output.name == "stdout")


def png_outputs(notebook: nbformat.NotebookNode) -> int:
    """How many PNG images the executed notebook displayed."""
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs)


def test_notebook_is_committed_clean_with_the_lectures_sections():
    """No outputs or execution counts; the headings name sections 1-10 in order; QUICK is on."""
    notebook = read_notebook()
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    headings = [match.group(1) for cell in notebook.cells if cell.cell_type == "markdown"
                for match in re.finditer(r"^## (\d+)\. ", cell.source, flags=re.MULTILINE)]
    assert headings == SECTIONS
    assert re.search(r"^QUICK = True\b", code[0].source, flags=re.MULTILINE)


@pytest.mark.slow
def test_notebook_executes_and_every_section_shows_its_figures(mnist_dir, tmp_path):
    notebook = execute(tmp_path, {**os.environ, "AEJAX_DATA_DIR": str(mnist_dir)})

    figures = json.loads(stdout(notebook.cells[-1]))  # the summary: section -> ["run/figure.png", ...]
    assert list(figures) == SECTIONS
    assert all(figures[section] for section in SECTIONS)
    shown = [figure for section in SECTIONS for figure in figures[section]]
    assert png_outputs(notebook) == len(shown)
    for figure in shown:
        assert (tmp_path / RUNS / figure).read_bytes()[:8] == PNG_SIGNATURE, figure
    # each run wrote metrics.json (only a run that succeeds does), as a quick run with finite losses
    for run in {figure.split("/")[0] for figure in shown}:
        metrics = json.loads((tmp_path / RUNS / run / "metrics.json").read_text())
        assert metrics["settings"]["quick"] is True, run
        losses = {key: value for key, value in metrics.items()
                  if isinstance(value, float) and key.endswith(("_mse", "_bce", "_nats"))}
        assert all(math.isfinite(value) for value in losses.values()), (run, losses)


@pytest.mark.slow
def test_notebook_without_the_data_folder_stops_with_a_clear_message(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "AEJAX_DATA_DIR"}
    with pytest.raises(CellExecutionError, match="AEJAX_DATA_DIR is not set"):
        execute(tmp_path, env)
    assert not (tmp_path / RUNS).exists()
