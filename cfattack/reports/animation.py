"""``path.gif``: the attack's path as an animated GIF, from the start image to the counterfactual.

The frames are the start image (the reconstruction, or the original in pixel space), every
recorded frame strictly between the first and the last step, and the counterfactual. Each is
enlarged like the strip's panels (whole-pixel nearest neighbour, about 128 px tall) above a
caption band that reads ``step 12/30  p=0.62``, the target probability at that step. The start
and the end are held longer, and the animation loops. Grey explanations give a greyscale GIF
(exact grey levels); colour ones are quantised per frame by Pillow::

    data = path_gif_bytes(exp)        # bytes of a GIF file; write_report saves it as path.gif
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cfattack.errors import InvalidInputError
from cfattack.reports.fonts import font_path
from cfattack.reports.pixels import to_display_rgb, upscale_nearest
from cfattack.reports.strip import DEFAULT_PANEL_HEIGHT, display_scale, first_move_frames, pick_frames

if TYPE_CHECKING:
    from cfattack.pipeline.explanation import Explanation

__all__ = ["MAX_GIF_FRAMES", "path_frames", "path_gif_bytes"]

MAX_GIF_FRAMES = 48
"""Most intermediate frames in the GIF (evenly spaced when the explanation recorded more)."""

_START_MS, _STEP_MS, _END_MS = 700, 120, 1500
_CAPTION_HEIGHT = 18


def path_frames(explanation: Explanation, max_frames: int = MAX_GIF_FRAMES) -> list[tuple[int, np.ndarray]]:
    """``(step, uint8 [H, W, 3])`` from the start (step 0) to the counterfactual, at native size.

    Step -1 marks a frame of a path made by the first move alone (`first_move_frames`).

    Raises:
        InvalidInputError: the explanation has no images, or they are malformed.
    """
    if not explanation.has_images:
        raise InvalidInputError("this explanation has no images (it was read from JSON); the GIF needs them")
    images = explanation.images
    start = images.reconstruction if images.reconstruction is not None else images.original
    frames = images.frames
    steps = list(explanation.frame_steps) if getattr(frames, "ndim", 0) == 4 and \
        frames.shape[0] == len(explanation.frame_steps) else []
    out = [(0, to_display_rgb(start, "start image"))]
    out += [(steps[i], to_display_rgb(frames[i], f"frame {i}")) for i in pick_frames(steps, explanation.steps,
                                                                                       max_frames)]
    # A path made by the first move alone (step -1 = "first move", captioned without a probability).
    if getattr(frames, "ndim", 0) == 4:
        out += [(-1, to_display_rgb(frames[i], f"frame {i}")) for i in first_move_frames(explanation, frames.shape[0],
                                                                                            max_frames)]
    out.append((explanation.steps, to_display_rgb(images.counterfactual, "counterfactual")))
    return out


def _caption_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = font_path()
    if path is not None:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    return ImageFont.load_default()


def path_gif_bytes(explanation: Explanation, max_frames: int = MAX_GIF_FRAMES) -> bytes:
    """The bytes of ``path.gif`` (see the module docstring)."""
    frames = path_frames(explanation, max_frames)
    grey = all(bool((f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()) for _, f in frames)
    scale = display_scale(max(f.shape[0] for _, f in frames), DEFAULT_PANEL_HEIGHT)
    curve = list(explanation.probability_curve)
    # After a first move the curve starts past it: the start picture (the reconstruction) gets no p.
    moved = bool(explanation.class_step) or (explanation.shift_px is not None and any(explanation.shift_px))
    font = _caption_font(11)
    pictures = []
    for step, pixels in frames:
        big = upscale_nearest(pixels, scale)
        h, w = big.shape[:2]
        canvas = Image.new("RGB", (w, h + _CAPTION_HEIGHT), (255, 255, 255))
        canvas.paste(Image.fromarray(big), (0, 0))
        caption = "first move" if step < 0 else f"step {step}/{explanation.steps}"
        if 0 <= step < len(curve) and not (moved and not pictures):
            caption += f"  p={curve[step]:.2f}"
        ImageDraw.Draw(canvas).text((3, h + 3), caption, fill=(34, 34, 34), font=font)
        pictures.append(canvas.convert("L") if grey else canvas)
    durations = [_START_MS] + [_STEP_MS] * (len(pictures) - 2) + [_END_MS]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations,
                     loop=0, disposal=1)
    return buffer.getvalue()
