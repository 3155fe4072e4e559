"""notebooks/your_own_models.ipynb runs top to bottom on its small random-weight models (the committed
outputs are checked by tests/notebooks/test_notebooks.py like every notebook's)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_your_own_models_notebook_runs():
    from tests.notebooks.test_notebooks import _errors, _outputs, execute

    notebook = execute("your_own_models.ipynb")
    assert not _errors(notebook), _errors(notebook)
    text = _outputs(notebook)
    assert "input_size=96" in text and "kind='module'" in text
    assert "explanation.html" in text and "strip.png" in text
    assert "inversion: PSNR" in text and "sd)" in text  # the CLI run: summary with honest units
    assert "unknown class 'wolf'" in text
