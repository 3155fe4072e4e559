"""Old import path of `Explainer`.

Deprecated: kept for one release so that ``from cfattack.explainer import Explainer`` keeps
working; use ``cfattack.Explainer`` or `cfattack.pipeline.explainer`.
"""

from cfattack.pipeline.explainer import Explainer, ImageInput, explain

__all__ = ["Explainer", "ImageInput", "explain"]
