"""The notebooks: committed with their outputs, and they run top to bottom on the default bundle, offline.

The committed notebooks carry the outputs of a full run, so they read as results where people
browse them; a fast check fails when one is committed without them (or with an error). The
slow tests execute them again. After changing a notebook, run it and save it with its outputs::

    python -m tests.notebooks.test_notebooks quickstart.ipynb compare_classifiers.ipynb
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
COMMITTED = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def execute(name: str) -> "nbformat.NotebookNode":
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # One torch thread per process keeps the kernel from fighting the test runner for cores.
    env_threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    os.environ.update(env_threads)
    client = nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS.parent)}})
    client.execute()
    return notebook


def _outputs(notebook) -> str:
    text = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", "") or str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def _errors(notebook) -> list:
    return [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_notebook_has_its_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    not_run = [i for i, c in enumerate(code) if c.get("execution_count") is None]
    assert not not_run, (f"{name} is committed without outputs (code cells {not_run} never ran); run "
                         f"python -m tests.notebooks.test_notebooks {name}")
    assert sum(len(c.get("outputs", [])) for c in code) >= len(code) // 2, f"{name}: most cells have no output"
    assert not _errors(notebook), f"{name} is committed with an error output"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{name}: cells were not run once, top to bottom: {counts}"


@pytest.mark.slow
def test_quickstart_runs_and_explains():
    notebook = execute("quickstart.ipynb")
    text = _outputs(notebook)
    assert "trouser -> dress: reached" in text
    assert "explanation.html" in text and "strip.png" in text and "path.gif" in text
    assert "pixel RMS" in text
    assert "Explanation(t-shirt -> shirt" in text  # the list of explanations, one line each
    shown = {c.source.strip(): {key for o in c.get("outputs", []) for key in o.get("data", {})}
             for c in notebook.cells if c.cell_type == "code"}
    assert "text/html" in shown["explanation"]  # the compact view
    assert "image/png" in shown["explanation.plot()"]  # the matplotlib figure, shown once
    assert sum(o.get("output_type") in ("execute_result", "display_data")
               for c in notebook.cells if c.cell_type == "code" and c.source.strip() == "explanation.plot()"
               for o in c.outputs) == 1
    assert not _errors(notebook)


@pytest.mark.slow
def test_compare_classifiers_runs(monkeypatch):
    monkeypatch.setenv("CFATTACK_NOTEBOOK_IMAGES", "4")
    notebook = execute("compare_classifiers.ipynb")
    errors = _errors(notebook)
    assert not errors, errors
    text = _outputs(notebook)
    assert "flip" in text and "comparison.html" in text
    assert "baseline" in text and "Explanation(" in text


def main(names: list[str]) -> None:
    """Execute the named notebooks (all when none) and save them with their outputs."""
    for name in names or COMMITTED:
        notebook = execute(name)
        if _errors(notebook):
            raise SystemExit(f"{name}: a cell raised; not saved")
        nbformat.write(notebook, NOTEBOOKS / name)
        print(f"saved {NOTEBOOKS / name} with its outputs")


if __name__ == "__main__":
    main(sys.argv[1:])
