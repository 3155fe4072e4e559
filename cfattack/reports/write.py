"""`write_report`: one explanation -> explanation.json, counterfactual.png, strip.png, start.png, path.gif, explanation.html.

Everything is rendered in memory first, so a malformed explanation fails before any file is
written; each file is then written atomically (temporary file + rename), so a full disk leaves
the previous file or none, never a partial one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cfattack.atomic import atomic_write, atomic_write_text
from cfattack.errors import InvalidInputError
from cfattack.images import save_image
from cfattack.reports.animation import path_gif_bytes
from cfattack.reports.html import DEFAULT_TOP_K, render_html
from cfattack.reports.pixels import png_bytes
from cfattack.reports.strip import DEFAULT_MAX_FRAMES, compose_strip, strip_panels

if TYPE_CHECKING:
    from cfattack.pipeline.explanation import Explanation

__all__ = ["REPORT_FILES", "write_report"]

REPORT_FILES = {
    "json": "explanation.json",
    "counterfactual": "counterfactual.png",
    "strip": "strip.png",
    "start": "start.png",
    "gif": "path.gif",
    "html": "explanation.html",
}
"""The file each key of `write_report`'s result names: the JSON, the counterfactual, the strip
(original | reconstruction | path | counterfactual | difference), the image the attack started
from (the reconstruction, or the original in pixel space), the path as an animated GIF, and the
self-contained page."""


def write_report(
    explanation: Explanation,
    directory: str | os.PathLike,
    *,
    top_k: int = DEFAULT_TOP_K,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> dict[str, Path]:
    """Write the report files of ``explanation`` (`REPORT_FILES`) into ``directory`` (created if missing).

    Args:
        explanation: an explanation with its images attached (not one read back from JSON).
        directory: the output folder; existing report files in it are replaced.
        top_k: attributions drawn in the HTML bar chart (its table lists all of them).
        max_frames: intermediate frames of the path shown in the strip.

    Returns:
        ``{"json": ..., "counterfactual": ..., "strip": ..., "start": ..., "gif": ..., "html": ...}``,
        the paths written (plus ``"counterfactual-1"``... for an explanation with alternatives).

    Raises:
        InvalidInputError: the explanation has no images, or they are malformed.
        OSError: the folder cannot be created or a file cannot be written (e.g. a full disk);
            no partial file is left behind.

    Example::

        paths = write_report(exp, "out/coat-0")
        paths["html"]    # out/coat-0/explanation.html, opens offline
    """
    if not explanation.has_images:
        raise InvalidInputError(
            "cannot write a report: this explanation has no images (it was read back from JSON); "
            "explain the image again to get them"
        )
    # 1. Render everything in memory: a malformed image fails here, before any file exists.
    json_text = explanation.to_json()
    panels = strip_panels(explanation, max_frames)
    strip_png = png_bytes(compose_strip(panels))
    gif = path_gif_bytes(explanation)
    page = render_html(explanation, top_k=top_k, panels=panels, gif=gif)
    images = explanation.images
    start = images.reconstruction if images.reconstruction is not None else images.original

    # 2. Write, each file atomically.
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {key: directory / name for key, name in REPORT_FILES.items()}
    atomic_write_text(paths["json"], json_text)
    save_image(explanation.images.counterfactual, paths["counterfactual"])
    atomic_write(paths["strip"], lambda fh: fh.write(strip_png))
    save_image(start, paths["start"])
    atomic_write(paths["gif"], lambda fh: fh.write(gif))
    for index, image in enumerate(images.alternatives, 1):  # k > 1: the other counterfactuals
        paths[f"counterfactual-{index}"] = save_image(image, directory / f"counterfactual-{index}.png")
    atomic_write_text(paths["html"], page)
    return paths
