"""``cfattack explain`` on the default bundle: the report, the summary, and every kind of bad input."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfattack.cli.explain import default_out_dir
from tests.cfattack.cli.test_cli import assert_one_line_failure, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FAST = ("--inversion-steps", "10", "--quiet")


def test_explain_writes_the_report_and_prints_a_summary(tmp_path):
    out = tmp_path / "report"
    result = run_cli("explain", EXAMPLES / "trouser-1.png", "--target", "Dress", "--out", out, *FAST)
    assert result.exit_code == 0, result.output + result.stderr
    assert {p.name for p in out.iterdir()} == {
        "explanation.json", "counterfactual.png", "strip.png", "start.png", "path.gif", "explanation.html"}
    lines = result.stdout.splitlines()
    assert lines[0].startswith("trouser (p=") and "-> dress: reached in" in lines[0]
    assert lines[1].startswith("inversion: PSNR")
    assert "top 5 descriptor changes" in result.stdout and "report:" in lines[-1]
    data = json.loads((out / "explanation.json").read_text())
    assert data["target"] == "dress" and data["reached"] is True
    assert data["config"]["inversion"]["steps"] == 10


def test_explain_options_reach_the_config(tmp_path):
    out = tmp_path / "r"
    result = run_cli("explain", EXAMPLES / "sneaker-1.png", "--target", "9", "--out", out, "--space", "w",
                     "--steps", "300", "--lr", "0.02", "--threshold", "0.6", "--objective", "log_probability",
                     "--seed", "3", *FAST)
    assert result.exit_code == 0, result.stderr
    data = json.loads((out / "explanation.json").read_text())
    attack = data["config"]["attack"]
    assert (attack["space"], attack["steps"], attack["lr"], attack["threshold"], attack["objective"], attack["seed"]) == (
        "w", 300, 0.02, 0.6, "log_probability", 3)
    assert data["target"] == "ankle-boot" and data["threshold"] == 0.6


def test_layers_option_reaches_the_config_and_bad_values_are_one_line(tmp_path):
    out = tmp_path / "r"
    result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "pullover", "--out", out, "--layers", "0-1",
                     "--steps", "40", *FAST)
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "explanation.json").read_text())["config"]["attack"]["layers"] == [0, 1]
    for value, words in (("x", ("--layers", "ws entry")), ("99", ("out of range", "0..")), ("3-1", ("backwards",))):
        result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "pullover", "--layers", value, *FAST)
        assert_one_line_failure(result, *words)
    result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "pullover", "--layers", "0", "--space", "w", *FAST)
    assert_one_line_failure(result, "--space w+")


def test_shift_lr_moves_the_garment_and_the_report_says_how_far(tmp_path):
    out = tmp_path / "r"
    # (--class-search 0: the class step alone would flip it before any shift step.)
    result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "pullover", "--out", out, "--shift-lr", "0.2",
                     "--steps", "40", "--class-search", "0", *FAST)
    assert result.exit_code == 0, result.stderr
    assert "px right" in result.stdout
    data = json.loads((out / "explanation.json").read_text())
    assert data["config"]["attack"]["shift_lr"] == 0.2
    dx, dy = data["shift_px"]
    assert data["steps"] >= 1 and abs(dx) + abs(dy) > 0
    assert "moved as a whole" in (out / "explanation.html").read_text()
    for extra, words in ((("--space", "w"), ("--shift-lr", "--space w+")), (("--shift-lr", "0"), ("--shift-lr",))):
        result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "pullover", "--shift-lr", "0.1", *extra,
                         *FAST)
        assert_one_line_failure(result, *words)


def test_default_out_dir_is_named_after_image_and_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_out_dir(Path("a/b/shoe.png"), "ankle boot") == Path("explain/shoe-to-ankle-boot")
    result = run_cli("explain", EXAMPLES / "bag-1.png", "--target", "coat", "--steps", "5", *FAST)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "explain" / "bag-1-to-coat" / "explanation.html").is_file()


def test_unreached_target_exits_zero_and_says_so(tmp_path):
    result = run_cli("explain", EXAMPLES / "trouser-1.png", "--target", "bag", "--steps", "1", "--class-search", "0",
                     "--out", tmp_path, *FAST)
    assert result.exit_code == 0, result.stderr
    assert "NOT reached (max_steps)" in result.stdout


# --- bad input: one line, non-zero exit, nothing written ------------------------------------------


def _fails(tmp_path, image, target="pullover", *fragments):
    out = tmp_path / "out"
    result = run_cli("explain", image, "--target", target, "--out", out, *FAST)
    assert_one_line_failure(result, *fragments)
    assert not out.exists()
    return result


def test_missing_file(tmp_path):
    _fails(tmp_path, tmp_path / "nope.png", "pullover", "not found")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not a picture")
    _fails(tmp_path, path, "pullover", "not a readable image")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _fails(tmp_path, path, "pullover", "empty")


def test_truncated_png(tmp_path):
    data = (EXAMPLES / "coat-1.png").read_bytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    _fails(tmp_path, path, "pullover", "truncated.png")


def test_directory_instead_of_image(tmp_path):
    result = run_cli("explain", tmp_path, "--target", "pullover", *FAST)
    assert_one_line_failure(result)


def _huge_png(width: int, height: int) -> bytes:
    """A tiny file that claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_huge_dimensions_are_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_huge_png(100_000, 100_000))
    _fails(tmp_path, path, "pullover", "too large")


def test_unknown_target_lists_the_valid_names(tmp_path):
    line = _fails(tmp_path, EXAMPLES / "coat-1.png", "giraffe").stderr
    for name in ("t-shirt", "ankle-boot", "pullover"):
        assert name in line


def test_target_equal_to_current_class(tmp_path):
    _fails(tmp_path, EXAMPLES / "coat-1.png", "COAT", "already predicts 'coat'")


def test_unknown_classifier_and_bundle(tmp_path):
    result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "bag", "--classifier", "nope", *FAST)
    assert_one_line_failure(result, "classifier", "baseline")
    result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "bag", "--bundle", tmp_path, *FAST)
    assert_one_line_failure(result, "bundle")


def test_bad_option_values(tmp_path):
    for option, value in (("--threshold", "1.5"), ("--steps", "0"), ("--space", "z"), ("--lr", "-1")):
        result = run_cli("explain", EXAMPLES / "coat-1.png", "--target", "bag", option, value, *FAST)
        assert_one_line_failure(result, option)


# --- odd but valid images are converted ------------------------------------------------------------


def _coat() -> Image.Image:
    return Image.open(EXAMPLES / "coat-1.png").convert("L")


@pytest.mark.parametrize("kind", ["rgb", "rgba", "palette", "grey16", "cmyk-jpeg", "large"])
def test_odd_images_are_converted(tmp_path, kind):
    grey = _coat()
    if kind == "rgb":
        image, suffix = grey.convert("RGB"), ".png"
    elif kind == "rgba":
        image, suffix = grey.convert("RGBA"), ".png"
    elif kind == "palette":
        image, suffix = grey.convert("P"), ".png"
    elif kind == "grey16":
        image, suffix = Image.fromarray((np.asarray(grey, dtype=np.uint16) * 257)), ".png"
    elif kind == "cmyk-jpeg":
        image, suffix = grey.convert("CMYK"), ".jpg"
    else:
        image, suffix = grey.resize((256, 256), Image.Resampling.NEAREST), ".png"
    path = tmp_path / f"coat{suffix}"
    image.save(path)
    out = tmp_path / "out"
    result = run_cli("explain", path, "--target", "pullover", "--out", out, "--steps", "200", *FAST)
    assert result.exit_code == 0, result.stderr
    data = json.loads((out / "explanation.json").read_text())
    assert data["source_class"] == "coat"

