"""The notebooks run top to bottom on the shipped default bundle, offline, on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(name: str) -> "nbformat.NotebookNode":
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # One torch thread per process keeps the kernel from fighting the test runner for cores.
    env_threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    os.environ.update(env_threads)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS.parent)}})
    client.execute()
    return notebook


def _outputs(notebook) -> str:
    text = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", "") or str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


@pytest.mark.slow
def test_quickstart_runs_and_explains():
    notebook = execute("quickstart.ipynb")
    text = _outputs(notebook)
    assert "trouser -> dress: reached" in text
    assert "explanation.html" in text and "strip.png" in text
    assert "pixel RMS" in text
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.slow
def test_compare_classifiers_runs(monkeypatch):
    monkeypatch.setenv("CFATTACK_NOTEBOOK_IMAGES", "4")
    notebook = execute("compare_classifiers.ipynb")
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    text = _outputs(notebook)
    assert "flip" in text and "comparison.html" in text
    assert "baseline" in text
