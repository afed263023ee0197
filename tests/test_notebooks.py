"""The user notebooks run top to bottom, and are committed without outputs.

Each notebook is executed in a fresh ``python3`` kernel (the virtualenv's ipykernel when pytest
runs from it), with ``ATTRIBUTION_NOTEBOOK_SMALL=1`` so that it runs at its quick size, in a
temporary working folder so that nothing it writes lands in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["compare_models", "plan_budget", "benchmark_methods"]
SMALL = "ATTRIBUTION_NOTEBOOK_SMALL"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def execute(name: str, folder: Path) -> nbformat.NotebookNode:
    """Run every cell of the notebook in a new kernel working in ``folder``; on an exception,
    fail with the notebook, the cell's number and the error it raised."""
    notebook = read(name)
    client = NotebookClient(notebook, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(folder)}})
    try:
        client.execute()
    except CellExecutionError as error:
        failed = next((index for index, cell in enumerate(notebook.cells, 1)
                       if any(output.output_type == "error"
                              for output in cell.get("outputs", []))), "?")
        pytest.fail(f"{name}.ipynb, cell {failed}: {_ANSI.sub('', str(error))}", pytrace=False)
    return notebook


def test_every_notebook_in_the_folder_is_tested():
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_valid_stripped_and_has_a_quick_size(name):
    notebook = read(name)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for index, cell in enumerate(notebook.cells, 1):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}.ipynb cell {index} has outputs: strip them"
            assert cell.execution_count is None, \
                f"{name}.ipynb cell {index} has an execution count: strip it"
    # The quick size is what keeps this suite fast; a notebook without it runs at full size.
    assert SMALL in code[0].source


@pytest.mark.parametrize("name", [
    "compare_models",
    pytest.param("plan_budget", marks=pytest.mark.bayes),
    "benchmark_methods",
])
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    monkeypatch.setenv(SMALL, "1")
    notebook = execute(name, tmp_path)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert any("image/png" in output.get("data", {}) for output in outputs), \
        f"{name}.ipynb drew no figure"
    assert not any(output.output_type == "error" for output in outputs)
