"""Tests of cfattack.images: real files in tmp_path, damaged files, exact round trips."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from cfattack.errors import CfattackError, InvalidInputError
from cfattack.images import load_image, save_image, save_image_grid


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (8-bit grey) with one tiny IDAT: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# Round trips.


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_writes_png_of_right_mode_and_size(tmp_path, channels, mode):
    x = torch.rand(channels, 5, 7) * 2 - 1
    out = save_image(x, tmp_path / "img.png")
    assert out == tmp_path / "img.png"
    with Image.open(out) as pil:
        assert pil.format == "PNG"
        assert pil.mode == mode
        assert pil.size == (7, 5)  # (width, height)


def test_save_uses_gen_images_pixel_mapping(tmp_path):
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, -3.0, 3.0]).reshape(1, 1, 7)
    save_image(x, tmp_path / "ramp.png")
    pixels = np.asarray(Image.open(tmp_path / "ramp.png"))
    # floor(x * 127.5 + 128), clipped to [0, 255]
    np.testing.assert_array_equal(pixels[0], [0, 64, 128, 191, 255, 0, 255])


@pytest.mark.parametrize("channels", [1, 3])
def test_file_round_trip_is_exact(tmp_path, channels):
    rng = np.random.default_rng(0)
    shape = (9, 11) if channels == 1 else (9, 11, 3)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    src = tmp_path / "src.png"
    src.write_bytes(_png_bytes(pixels))

    x = load_image(src)
    assert x.dtype == torch.float32
    assert x.shape == (channels, 9, 11)
    assert x.min() >= -1 and x.max() <= 1
    expected = torch.from_numpy(pixels.reshape(9, 11, channels)).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)

    save_image(x, tmp_path / "copy.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "copy.png")), pixels)


def test_tensor_round_trip_within_one_level(tmp_path):
    x = torch.rand(3, 16, 16) * 2 - 1
    y = load_image(save_image(x, tmp_path / "x.png"))
    assert (y - x).abs().max() <= 1 / 127.5 + 1e-6


def test_save_accepts_numpy_and_gradients_and_creates_parents(tmp_path):
    x = (torch.rand(1, 4, 4) * 2 - 1).requires_grad_(True)
    save_image(x, tmp_path / "a" / "b" / "t.png")
    save_image(x.detach().numpy(), tmp_path / "n.png")
    assert (tmp_path / "a" / "b" / "t.png").is_file() and (tmp_path / "n.png").is_file()


def test_save_replaces_existing_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "img.png"
    save_image(torch.full((1, 4, 4), -1.0), target)
    save_image(torch.full((1, 4, 4), 1.0), target)
    assert np.asarray(Image.open(target)).min() == 255
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


def test_failed_save_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "img.png"
    save_image(torch.full((1, 4, 4), -1.0), target)
    before = target.read_bytes()

    def disk_full(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space left") as info:
        save_image(torch.full((1, 4, 4), 1.0), target)
    assert info.value.filename == str(target)  # the caller's file, not the temporary one
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(2, 4, 4), torch.zeros(4, 4), torch.zeros(1, 1, 4, 4), torch.zeros(3, 0, 4)],
    ids=["2-channels", "2-d", "4-d", "zero-height"],
)
def test_save_rejects_bad_shapes(tmp_path, bad):
    with pytest.raises(InvalidInputError, match=r"\[C, H, W\]"):
        save_image(bad, tmp_path / "x.png")


def test_save_rejects_nan_and_non_png(tmp_path):
    with pytest.raises(InvalidInputError, match="NaN"):
        save_image(torch.full((1, 2, 2), float("nan")), tmp_path / "x.png")
    with pytest.raises(InvalidInputError, match=r"\.png"):
        save_image(torch.zeros(1, 2, 2), tmp_path / "x.jpg")
    assert list(tmp_path.iterdir()) == []


def test_save_image_grid_layout(tmp_path):
    images = torch.stack([torch.full((3, 4, 5), v) for v in (-1.0, -0.5, 0.0, 0.5, 1.0)])
    out = save_image_grid(images, tmp_path / "grid.png", ncols=3, padding=2, pad_value=1.0)
    pixels = np.asarray(Image.open(out))
    assert pixels.shape == (2 * 4 + 2, 3 * 5 + 2 * 2, 3)
    # Row 0 holds images 0-2 at x = 0, 7, 14; row 1 (y = 6) images 3-4; padding is 2 px of white.
    assert [pixels[0, x, 0] for x in (0, 7, 14)] == [0, 64, 128]
    assert [pixels[6, x, 0] for x in (0, 7)] == [191, 255]
    assert pixels[0, 5, 0] == 255 and pixels[4, 0, 0] == 255  # padding column and row
    assert (pixels[6:, 14:] == 255).all()  # the empty sixth slot is pad_value


# ---------------------------------------------------------------------------------------------
# Conversions on load.


def test_load_converts_channels_and_size(tmp_path):
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, 10:30] = (255, 0, 0)  # centre square of a 2:1 image is red
    (tmp_path / "wide.png").write_bytes(_png_bytes(rgb))

    grey = load_image(tmp_path / "wide.png", channels=1)
    assert grey.shape == (1, 20, 40)
    x = load_image(tmp_path / "wide.png", channels=3, size=8)
    assert x.shape == (3, 8, 8)
    # The centre crop kept only the red part (a squash would have brought black columns in;
    # Lanczos rings a little at the border).
    assert x[0].min() > 0.5 and x[1].max() < -0.9
    assert load_image(tmp_path / "wide.png", size=(4, 6)).shape == (3, 4, 6)


def test_load_grey_stays_grey_and_transparency_goes_black(tmp_path):
    (tmp_path / "g.png").write_bytes(_png_bytes(np.full((3, 3), 200, np.uint8)))
    assert load_image(tmp_path / "g.png").shape == (1, 3, 3)
    assert load_image(tmp_path / "g.png", channels=3).shape == (3, 3, 3)

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[0, 0, 3] = 255  # one opaque white pixel, the rest fully transparent white
    (tmp_path / "a.png").write_bytes(_png_bytes(rgba))
    x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 2, 2)
    assert x[:, 0, 0].tolist() == [1.0, 1.0, 1.0]
    assert x[:, 1, 1].tolist() == [-1.0, -1.0, -1.0]


def test_load_16_bit_grey_is_rescaled(tmp_path):
    values = np.array([[0, 65535], [257 * 128, 257 * 64]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    x = load_image(tmp_path / "deep.png")
    expected = torch.tensor([[0, 255], [128, 64]], dtype=torch.float32) / 127.5 - 1
    torch.testing.assert_close(x[0], expected)


def test_load_jpeg(tmp_path):
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "x.jpg", quality=95)
    x = load_image(tmp_path / "x.jpg")
    assert x.shape == (3, 8, 8) and x.abs().max() < 0.05


# ---------------------------------------------------------------------------------------------
# Bad files: every failure is an InvalidInputError naming the file.


def _expect_invalid(path, match, **kwargs):
    with pytest.raises(InvalidInputError, match=match) as info:
        load_image(path, **kwargs)
    assert isinstance(info.value, CfattackError)
    assert str(path) in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    _expect_invalid(tmp_path / "nope.png", "not found")


def test_directory(tmp_path):
    _expect_invalid(tmp_path, "directory")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    _expect_invalid(tmp_path / "empty.png", "empty")


def test_text_file_is_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    _expect_invalid(tmp_path / "notes.png", "not a readable image")


def test_truncated_png(tmp_path):
    data = _png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _expect_invalid(tmp_path / "cut.png", "corrupt or truncated")


def test_png_with_garbage_image_data(tmp_path):
    data = bytearray(_png_bytes(np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 200] = os.urandom(190)
    (tmp_path / "garbage.png").write_bytes(bytes(data))
    _expect_invalid(tmp_path / "garbage.png", "corrupt|truncated|cannot read")


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:300])
    _expect_invalid(tmp_path / "cut.jpg", "corrupt or truncated|cannot read")


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    # Beyond Pillow's own hard limit (it raises) ...
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    _expect_invalid(tmp_path / "bomb.png", "too large")
    # ... and between our limit and Pillow's (Pillow would only warn).
    (tmp_path / "big.png").write_bytes(_png_header_only(9_000, 9_000))
    _expect_invalid(tmp_path / "big.png", "too large")


def test_max_pixels_argument(tmp_path):
    (tmp_path / "small.png").write_bytes(_png_bytes(np.zeros((20, 20), np.uint8)))
    _expect_invalid(tmp_path / "small.png", "too large", max_pixels=399)
    assert load_image(tmp_path / "small.png", max_pixels=400).shape == (1, 20, 20)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    path.write_bytes(_png_bytes(np.zeros((2, 2), np.uint8)))

    # chmod 0 would not stop root (CI may run as root), so let the open itself fail as it would.
    def denied(fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", denied)
    _expect_invalid(path, "permission denied")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"channels": 2}, "channels"), ({"size": 0}, "size"), ({"size": "big"}, "size"), ({"size": (1, 2, 3)}, "size")],
)
def test_bad_arguments(tmp_path, kwargs, match):
    (tmp_path / "ok.png").write_bytes(_png_bytes(np.zeros((2, 2), np.uint8)))
    with pytest.raises(InvalidInputError, match=match):
        load_image(tmp_path / "ok.png", **kwargs)
