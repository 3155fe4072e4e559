"""path.gif: start -> recorded frames -> counterfactual, enlarged, captioned, looping, written with the report."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image, ImageSequence

from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import Explanation
from cfattack.reports.animation import path_frames, path_gif_bytes
from cfattack.reports.html import render_html
from cfattack.reports.pixels import to_display_rgb
from cfattack.reports.write import write_report
from tests.cfattack.reports.test_reports import _explanation


def _frames(data: bytes) -> tuple[list[np.ndarray], list[int], dict]:
    with Image.open(io.BytesIO(data)) as im:
        info = dict(im.info)
        pictures, durations = [], []
        for frame in ImageSequence.Iterator(im):
            durations.append(frame.info["duration"])
            pictures.append(np.asarray(frame.convert("RGB")))
    return pictures, durations, info


def test_frames_go_from_the_start_to_the_counterfactual():
    exp = _explanation(1, 32, frame_steps=(0, 4, 4, 8, 12))  # step 4 recorded twice: shown once
    steps = [step for step, _ in path_frames(exp)]
    assert steps == [0, 4, 8, 12]
    pictures, durations, info = _frames(path_gif_bytes(exp))
    assert len(pictures) == 4 and info.get("loop") == 0
    assert durations[0] > durations[1] and durations[-1] > durations[1]  # start and end are held
    first, last = pictures[0], pictures[-1]
    assert first.shape[1] == 128 and first.shape[0] > 128  # 32 px x 4, plus the caption band
    start = np.repeat(np.repeat(to_display_rgb(exp.images.reconstruction), 4, 0), 4, 1)
    end = np.repeat(np.repeat(to_display_rgb(exp.images.counterfactual), 4, 0), 4, 1)
    assert np.array_equal(first[:128], start)  # grey levels are exact in a greyscale GIF
    assert np.array_equal(last[:128], end)
    band = last[128:]
    assert (band < 128).any() and (band == 255).mean() > 0.5  # dark caption text on white


def test_pixel_space_starts_from_the_original_and_colour_works():
    exp = _explanation(3, 16, space="pixel", frame_steps=(0, 6, 12))
    frames = path_frames(exp)
    assert np.array_equal(frames[0][1], to_display_rgb(exp.images.original))
    pictures, _, _ = _frames(path_gif_bytes(exp))
    assert len(pictures) == 3 and pictures[0].shape[1] == 128  # 16 px x 8


def test_many_frames_are_thinned():
    exp = _explanation(1, 32, frame_steps=tuple(range(0, 201, 2)))
    assert len(path_frames(exp, max_frames=10)) == 12


def test_report_writes_and_shows_the_gif(tmp_path):
    exp = _explanation()
    paths = write_report(exp, tmp_path)
    assert paths["gif"].name == "path.gif" and paths["gif"].read_bytes() == path_gif_bytes(exp)
    page = paths["html"].read_text(encoding="utf-8")
    uri = re.search(r'src="data:image/gif;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(uri) == paths["gif"].read_bytes()
    assert 'href="path.gif"' in page
    assert "data:image/gif" in render_html(exp)  # made on the fly when not given


def test_no_images_no_gif():
    with pytest.raises(InvalidInputError, match="no images"):
        path_gif_bytes(Explanation.from_json(_explanation().to_json()))
