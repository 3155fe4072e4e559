"""Optional dependencies, imported when a feature first needs them, with an error that names the extra.

matplotlib (``Explanation.plot``) and pandas (``Explanation.to_dataframe``) are not needed to
explain anything, so they are extras, never imported at module level::

    plt_figure = require("matplotlib.figure", extra="plot", feature="Explanation.plot")
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from cfattack.errors import MissingDependencyError

__all__ = ["require", "in_notebook"]


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``; a missing package raises `MissingDependencyError` naming ``cfattack[extra]``.

    An installed package that fails to import for another reason keeps its own error.
    """
    package = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] != package:
            raise
        raise MissingDependencyError(
            f"{feature} needs {package}, which is not installed; install it with: pip install 'cfattack[{extra}]'"
        ) from exc


def in_notebook() -> bool:
    """True inside a running IPython kernel or shell (checked without importing IPython)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return bool(get is not None and get() is not None)
