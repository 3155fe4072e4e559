"""Tests of cfattack.reports: real files in tmp_path from hand-built explanations."""

from __future__ import annotations

import errno
import os
import re
import stat

import numpy as np
import pytest
import torch
from PIL import Image

import cfattack.atomic
from cfattack.attribution.changes import DescriptorChange
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import ExplainConfig, Explanation, ExplanationImages, InversionReport
from cfattack.reports import bar_chart_svg, image_data_uri, line_chart_svg, svg_document, write_report
from cfattack.reports.html import FLAGGED_BANNER, render_html
from cfattack.reports.pixels import diverging_rgb
from cfattack.reports.strip import DEFAULT_GAP, render_strip

FILES = {"json", "counterfactual", "strip", "start", "gif", "html"}


def _row(
    name: str, std: float, *, reliable: bool = True, source: str = "predicted", unit: str = "px"
) -> DescriptorChange:
    before = 1.5
    return DescriptorChange(
        name=name, unit=unit, meaning=f"what {name} measures", higher_means="more of it",
        before=before, after=before + std / 2, change=std / 2, standardized_change=std,
        score=0.8 if source == "predicted" else None, reliable=reliable, source=source,
    )


def _explanation(
    channels: int = 1,
    size: int = 32,
    *,
    space: str = "w+",
    frame_steps: tuple[int, ...] = (0, 4, 8, 12),
    flagged: bool = False,
    with_images: bool = True,
    attributions: list[DescriptorChange] | None = None,
    measured: list[DescriptorChange] | None = None,
    warnings: list[str] | None = None,
    seed: int = 0,
) -> Explanation:
    """A complete explanation of random images; the path has ``frame_steps[-1]`` steps."""
    gen = torch.Generator().manual_seed(seed)
    steps = frame_steps[-1]
    latent = space != "pixel"
    original = torch.rand(channels, size, size, generator=gen) * 2 - 1
    frames = torch.rand(len(frame_steps), channels, size, size, generator=gen) * 2 - 1
    frames[0] = original if not latent else frames[0]
    inversion = None
    if latent:
        inversion = InversionReport(
            psnr=14.0 if flagged else 27.5, ssim=0.4 if flagged else 0.93, encoder_psnr=12.0 if flagged else 22.0,
            steps=100, label_match=not flagged, flagged=flagged,
            reasons=["PSNR 14.0 dB is below 18 dB"] if flagged else [],
        )
    curve = [min(1.0, 0.02 + 0.05 * i) for i in range(steps + 1)]
    exp = Explanation(
        image="examples/coat-0.png", bundle="default", classifier="baseline",
        class_names=["t-shirt", "trouser", "pullover", "dress", "coat"],
        source_class="coat", source_index=4, source_probability=0.93, start_class="coat",
        target="pullover", target_index=2, reached=True, reason="reached", steps=steps, threshold=0.5,
        target_probability=curve[-1], counterfactual_class="pullover", space=space,
        latent_distance=3.25 if latent else None, pixel_rms=0.12, probability_curve=curve,
        frame_steps=list(frame_steps), inversion=inversion,
        attribution_source="predicted" if latent else "measured",
        attributions=attributions if attributions is not None else [
            _row("ink_area", 2.1), _row("mean_tone", -1.3), _row("symmetry", 0.4, reliable=False),
        ],
        measured=measured if measured is not None else [],
        warnings=warnings if warnings is not None else [],
        timings={"inversion": 1.2, "attack": 3.4},
        config=ExplainConfig(),
    )
    if with_images:
        exp.with_images(ExplanationImages(
            original=original,
            reconstruction=frames[0].clone() if latent else None,
            frames=frames,
            counterfactual=frames[-1].clone(),
        ))
    return exp


def _panel_count(width: int, panel_width: int) -> int:
    # width = n * panel_width + (n - 1) * gap
    n, rest = divmod(width + DEFAULT_GAP, panel_width + DEFAULT_GAP)
    assert rest == 0, (width, panel_width)
    return n


# ---------------------------------------------------------------------------------------------
# The report files.


@pytest.mark.parametrize("channels, size", [(1, 32), (3, 16)])
def test_write_report_writes_every_file_and_json_round_trips(tmp_path, channels, size):
    exp = _explanation(channels, size)
    out = tmp_path / "new" / "report"  # missing folders are created
    paths = write_report(exp, out)
    assert set(paths) == FILES
    assert all(p.is_file() and p.parent == out for p in paths.values())
    assert paths["html"].name == "explanation.html"
    back = Explanation.from_json(paths["json"].read_text(encoding="utf-8"))
    assert back.model_dump() == exp.model_dump()  # (== would also compare the images, absent from JSON)
    assert not back.has_images
    with Image.open(paths["counterfactual"]) as im:
        assert im.mode == ("L" if channels == 1 else "RGB")
        assert im.size == (size, size)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    with Image.open(paths["start"]) as im:  # the attack's start: the reconstruction
        start = np.asarray(im)
    expected = ((exp.images.reconstruction * 127.5 + 128).floor().clamp(0, 255).to(torch.uint8)
                .permute(1, 2, 0).numpy())
    assert np.array_equal(start.reshape(expected.shape), expected)


def test_explanation_save_uses_write_report(tmp_path):
    paths = _explanation().save(tmp_path)
    assert set(paths) == FILES


@pytest.mark.parametrize("channels, size, scale", [(1, 32, 4), (3, 16, 8)])
def test_strip_size_and_panels_with_reconstruction(tmp_path, channels, size, scale):
    # original | reconstruction | steps 4, 8 | counterfactual | difference: step 0 and 12 are the
    # reconstruction and counterfactual themselves, so they are not repeated as frames.
    exp = _explanation(channels, size, frame_steps=(0, 4, 8, 12))
    strip = np.asarray(Image.open(write_report(exp, tmp_path)["strip"]))
    panel = size * scale
    assert strip.shape[0] == panel == 128
    assert _panel_count(strip.shape[1], panel) == 6
    gap = strip[:, panel : panel + DEFAULT_GAP]
    assert (gap == 255).all()
    if channels == 1:  # grey images stay grey
        first = strip[:, :panel].astype(int)
        assert (first[..., 0] == first[..., 1]).all() and (first[..., 1] == first[..., 2]).all()


def test_strip_without_reconstruction_in_pixel_space(tmp_path):
    exp = _explanation(1, 32, space="pixel", frame_steps=(0, 3, 6, 9, 12))
    strip = np.asarray(Image.open(write_report(exp, tmp_path)["strip"]))
    # original | steps 3, 6, 9 | counterfactual | difference
    assert _panel_count(strip.shape[1], 128) == 6
    html = (tmp_path / "explanation.html").read_text(encoding="utf-8")
    assert "reconstruction (step 0)" not in html
    assert "original (step 0)" in html


def test_strip_thins_many_frames():
    exp = _explanation(1, 32, frame_steps=tuple(range(0, 41, 2)))  # 19 intermediate frames
    strip = render_strip(exp, max_frames=4)
    assert _panel_count(strip.shape[1], 128) == 2 + 4 + 2


def test_strip_captions_name_frame_steps(tmp_path):
    html = render_html(_explanation(frame_steps=(0, 4, 8, 12)))
    captions = ("original", "reconstruction (step 0)", "step 4", "step 8", "counterfactual (step 12)", "difference")
    for caption in captions:
        assert f"<figcaption>{caption}" in html


# ---------------------------------------------------------------------------------------------
# The difference map.


def test_difference_map_red_where_brighter_blue_where_darker(tmp_path):
    exp = _explanation(1, 32)
    images = exp.images
    start = torch.zeros(1, 32, 32)
    cf = start.clone()
    cf[0, 0, 0] = 0.8  # brighter
    cf[0, 31, 31] = -0.8  # darker
    exp.with_images(ExplanationImages(images.original, start, images.frames, cf))
    strip = np.asarray(Image.open(write_report(exp, tmp_path)["strip"])).astype(int)
    diff = strip[:, -128:]  # the last panel
    brighter, darker, unchanged = diff[1, 1], diff[-2, -2], diff[64, 64]
    assert brighter[0] > 150 and brighter[2] < 100  # red
    assert darker[2] > 150 and darker[0] < 100  # blue
    assert (unchanged == 255).all()  # white


def test_diverging_rgb_is_symmetric_and_handles_zero():
    rgb = diverging_rgb(np.array([[-2.0, 0.0, 2.0, 1.0]])).astype(int)
    assert (rgb[0, 1] == 255).all()
    assert rgb[0, 0, 2] > rgb[0, 0, 0] and rgb[0, 2, 0] > rgb[0, 2, 2]
    assert 255 - rgb[0, 3, 1] == pytest.approx((255 - rgb[0, 2, 1]) / 2, abs=1)  # half the value, half the colour
    assert (diverging_rgb(np.zeros((3, 3))) == 255).all()


# ---------------------------------------------------------------------------------------------
# The HTML page.


def test_html_is_self_contained_with_charts(tmp_path):
    html = write_report(_explanation(), tmp_path)["html"].read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") >= 2  # bar chart and probability curve
    assert "data:image/png;base64," in html
    lowered = html.lower()
    for bad in ('src="http', "src='http", 'href="http', "href='http", "@import", "url(http", "<script", "<link"):
        assert bad not in lowered, bad
    assert not re.search(r"https?://", html)
    # the summary
    for text in ("coat", "pullover", "0.93", "reached in 12 steps", "threshold", "3.25", "baseline", "default"):
        assert text in html, text
    assert "unreliable" in html  # the symmetry row's predictor missed the quality bar
    assert "1.5 \u2192 2.55 px" in html  # before -> after unit in the chart


def test_flagged_banner_only_when_flagged():
    assert FLAGGED_BANNER in render_html(_explanation(flagged=True))
    assert "PSNR 14.0 dB is below 18 dB" in render_html(_explanation(flagged=True))
    calm = render_html(_explanation(flagged=False))
    assert FLAGGED_BANNER not in calm
    assert "PSNR 27.5 dB" in calm
    assert FLAGGED_BANNER not in render_html(_explanation(space="pixel"))


def test_text_is_escaped():
    nasty = '<script>alert("x")</script> & <b>'
    exp = _explanation(attributions=[_row(nasty, 1.0)], warnings=[nasty])
    html = render_html(exp)
    assert "<script" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;" in html and "&amp;" in html


def test_measured_vs_predicted_table_only_when_measured():
    assert "Predicted vs measured" not in render_html(_explanation())
    measured = [_row("ink_area", -0.5, source="measured"), _row("extra", 0.2, source="measured")]
    html = render_html(_explanation(measured=measured))
    assert "Predicted vs measured" in html
    section = html.split("Predicted vs measured")[1]
    assert "ink_area" in section and "extra" in section
    assert "<strong>no</strong>" in section  # the predicted and measured ink_area changes disagree in sign


def test_warnings_are_listed():
    html = render_html(_explanation(warnings=["the reconstruction is labelled differently"]))
    assert "<li>the reconstruction is labelled differently</li>" in html


# ---------------------------------------------------------------------------------------------
# Errors and failed writes.


def test_no_images_is_invalid_input(tmp_path):
    exp = Explanation.from_json(_explanation().to_json())
    with pytest.raises(InvalidInputError, match="no images"):
        write_report(exp, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_frames_without_known_steps_are_left_out():
    exp = _explanation(frame_steps=(0, 4, 8, 12))
    images = exp.images
    exp.with_images(ExplanationImages(images.original, images.reconstruction, images.frames[:2], images.counterfactual))
    # original | reconstruction | counterfactual | difference
    assert _panel_count(render_strip(exp).shape[1], 128) == 4


def test_repeated_frame_steps_are_shown_once():
    # A path of 3 steps recorded as 6 frames repeats steps: 0, 1, 1, 2, 2, 3.
    exp = _explanation(frame_steps=(0, 1, 1, 2, 2, 3))
    assert _panel_count(render_strip(exp).shape[1], 128) == 2 + 2 + 2
    html = render_html(exp)
    assert html.count("<figcaption>step 1</figcaption>") == 1


def test_malformed_images_fail_before_any_file(tmp_path):
    exp = _explanation()
    images = exp.images
    broken = images.counterfactual.clone()
    broken[0, 0, 0] = float("nan")
    exp.with_images(ExplanationImages(images.original, images.reconstruction, images.frames, broken))
    with pytest.raises(InvalidInputError, match="NaN"):
        write_report(exp, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_full_disk_propagates_and_leaves_no_partial_files(tmp_path, monkeypatch):
    real_fsync = os.fsync
    files = {"n": 0}

    def fsync_fails_on_third_file(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):  # not the folder's fsync after a rename
            files["n"] += 1
            if files["n"] == 3:  # strip.png: after explanation.json and counterfactual.png
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(cfattack.atomic.os, "fsync", fsync_fails_on_third_file)
    with pytest.raises(OSError) as info:
        write_report(_explanation(), tmp_path)
    assert info.value.errno == errno.ENOSPC
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["counterfactual.png", "explanation.json"]  # complete files only, no temporaries


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_raises_and_leaves_nothing(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OSError):
            write_report(_explanation(), folder)
        with pytest.raises(OSError):
            write_report(_explanation(), folder / "sub")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_directory_that_is_a_file_raises_oserror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        write_report(_explanation(), blocker / "report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ---------------------------------------------------------------------------------------------
# The reusable pieces.


def test_bar_chart_svg_colours_by_sign_and_escapes():
    svg = bar_chart_svg(["up <a>", "down", "broken"], [1.5, -0.7, float("nan")], notes=["1 -> 2 px", "", ""],
                        muted=[False, True, False], title="T & U")
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert svg.count("<rect") == 2  # no bar for NaN
    assert "#b2182b" in svg and "#2166ac" in svg
    assert "up &lt;a&gt;" in svg and "T &amp; U" in svg and "n/a" in svg
    assert 'stroke-dasharray="3 2"' in svg  # the muted row
    with pytest.raises(InvalidInputError):
        bar_chart_svg(["a"], [1.0, 2.0])


def test_line_chart_svg_threshold_and_marker():
    svg = line_chart_svg([0, 1, 2, 3], [0.1, 0.3, float("nan"), 0.7], hline=0.5, hline_label="threshold 0.5",
                         marker_index=-1, marker_label="stop", y_range=(0, 1))
    assert "stroke-dasharray" in svg and "threshold 0.5" in svg and "stop" in svg
    assert svg.count("<polyline") == 1  # the NaN breaks the line; the last point stands alone
    assert "<circle" in svg
    assert 'xmlns="http://www.w3.org/2000/svg"' in svg_document(svg)
    with pytest.raises(InvalidInputError):
        line_chart_svg([0, 1], [0.5], marker_index=0)


def test_image_data_uri_is_a_png():
    import base64
    import io

    uri = image_data_uri(torch.zeros(1, 8, 8), scale=2)
    assert uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        assert im.size == (16, 16) and im.mode == "L"
