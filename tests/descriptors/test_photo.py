"""Photo descriptors: known answers on drawn images, a real photograph, and the choice of set by image kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from descriptors import IMAGE_KINDS, Descriptor, default_descriptors
from descriptors.base import circular_difference
from descriptors.photo import saturation, sharpness, texture, warmth
from descriptors.tone import colourfulness, contrast, hue, mean_intensity

S = 64


def grey(*planes: np.ndarray) -> np.ndarray:
    """[H, W] planes in [-1, 1] -> [N, 1, H, W]."""
    return np.stack(planes)[:, None]


def noise(seed: int = 0, size: int = S) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (size, size))


def blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(plane, sigma, mode="nearest")


def colour(r: float, g: float, b: float, size: int = 8) -> np.ndarray:
    """Uniform RGB image [1, 3, size, size], channels in [0, 1]."""
    return (np.array([r, g, b], dtype=np.float64)[None, :, None, None] * 2 - 1) * np.ones((1, 3, size, size))


def of_hue(deg: float) -> np.ndarray:
    """A fully saturated colour of this HSV hue, [1, 3, 8, 8]."""
    k = (np.array([5.0, 3.0, 1.0]) + deg / 60.0) % 6.0
    return colour(*(1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)))


# -- known answers ----------------------------------------------------------------------------------

def test_brightness_and_contrast_order():
    dim, bright = np.full((S, S), -0.5), np.full((S, S), 0.5)
    assert mean_intensity(grey(dim))[0] < mean_intensity(grey(bright))[0]
    x = noise()
    assert contrast(grey(0.5 * x))[0] == pytest.approx(0.5 * contrast(grey(x))[0])


def test_sharpness_falls_with_blur_and_ignores_contrast():
    x = noise()
    values = sharpness(grey(x, blur(x, 0.7), blur(x, 1.5), blur(x, 3.0)))
    assert values[0] == pytest.approx(0.625, abs=0.03)                   # pixel noise: 20 / 32
    assert values[0] > values[1] > values[2] > values[3] > 0
    assert sharpness(grey(0.3 * x))[0] == pytest.approx(values[0])       # contrast-invariant
    step = np.where(np.arange(S)[None, :] < S // 2, -1.0, 1.0) * np.ones((S, 1))
    checker = np.where(np.indices((S, S)).sum(axis=0) % 2 == 0, 1.0, -1.0)
    ramp = np.linspace(-1, 1, S)[None, :] * np.ones((S, 1))
    # Known values away from the border; the replicated border costs about 1 / S.
    assert sharpness(grey(step, checker, ramp, np.zeros((S, S)))) == pytest.approx([0.25, 1.0, 0.0, 0.0], abs=1.5 / S)
    assert sharpness(grey(np.zeros((S, S))))[0] == 0.0


def test_texture_is_local_contrast():
    x = noise()
    flat, ramp = np.zeros((S, S)), np.linspace(-1, 1, S)[None, :] * np.ones((S, 1))
    halves = np.where(np.arange(S)[None, :] < S // 2, -1.0, 1.0) * np.ones((S, 1))
    t = texture(grey(flat, x, blur(x, 2.0), ramp, halves))
    assert t[0] == 0.0
    assert t[1] > 0.2 > t[2] > 0                                          # uniform noise: local std ~ 0.29
    assert t[3] < 0.05 and t[4] < 0.1                                     # smooth ramp, one big edge: little
    assert contrast(grey(halves))[0] == 0.5 > t[4]                        # globally contrasty, locally flat
    assert texture(grey(x), window=9)[0] == pytest.approx(t[1], rel=0.05)
    with pytest.raises(ValueError, match="odd number"):
        texture(grey(x), window=4)


def test_saturation_warmth_and_colourfulness_of_patches():
    red, grey_patch, blue = colour(1, 0, 0), colour(0.5, 0.5, 0.5), colour(0, 0, 1)
    dull_red = colour(0.6, 0.4, 0.4)
    x = np.concatenate([red, grey_patch, blue, dull_red])
    assert saturation(x) == pytest.approx([1.0, 0.0, 1.0, 0.2])
    assert warmth(x) == pytest.approx([1.0, 0.0, -1.0, 0.2])
    c = colourfulness(x)
    assert c[1] == pytest.approx(0.0) and c[0] > c[3] > c[1]
    with pytest.raises(ValueError, match="RGB"):
        saturation(grey(noise()))


def test_hue_of_pure_colours_and_chroma_weighting():
    for deg in (0.0, 60.0, 120.0, 180.0, 240.0, 300.0, 30.0):
        assert abs(circular_difference(hue(of_hue(deg))[0] - deg, 360.0)) < 1e-3, deg
    # Half vivid red (chroma 1), half muted green (chroma 0.25): the mean leans towards red.
    x = of_hue(0.0)
    x[..., 4:] = colour(0.375, 0.625, 0.375)[..., 4:]
    h = hue(x)[0]
    third = np.radians(120.0)
    assert circular_difference(h, 360.0) == pytest.approx(np.degrees(np.arctan2(0.25 * np.sin(third),
                                                                                   1 + 0.25 * np.cos(third))))
    assert np.isnan(hue(colour(0.5, 0.5, 0.5))[0])
    assert circular_difference(np.array([10.0 - 350.0, 350.0 - 10.0, 180.0]), 360.0).tolist() == [20.0, -20.0, -180.0]


# -- a real photograph ------------------------------------------------------------------------------

def _photo() -> np.ndarray:
    """A real colour photograph as [1, 3, H, W] in [-1, 1]: scikit-image's cat or matplotlib's portrait."""
    try:
        from skimage import data

        pixels = data.chelsea()
    except ImportError:
        try:
            import matplotlib
        except ImportError:
            pytest.skip("needs scikit-image or matplotlib for a sample photograph")
        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if not path.is_file():
            pytest.skip(f"matplotlib's sample photograph {path} is missing")
        from PIL import Image

        pixels = np.asarray(Image.open(path).convert("RGB"))
    return (pixels.astype(np.float64) / 127.5 - 1.0).transpose(2, 0, 1)[None]


def test_on_a_real_photograph():
    from PIL import Image, ImageFilter

    x = _photo()
    pixels = np.clip(np.floor(x[0].transpose(1, 2, 0) * 127.5 + 128), 0, 255).astype(np.uint8)
    blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(2)))
    blurred = (blurred.astype(np.float64) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    grey_version = np.repeat(np.einsum("nchw,c->nhw", x, [0.299, 0.587, 0.114])[:, None], 3, axis=1)
    rotated = x[:, [2, 0, 1]]               # R <- B, G <- R, B <- G: every pixel's hue turns by +120 deg
    darker = (x + 1.0) * 0.5 - 1.0

    ds = default_descriptors(3, kind="photos")
    v = ds.compute(np.concatenate([x, blurred, grey_version, rotated, darker]))
    assert all(np.isfinite(values[[0, 1, 3, 4]]).all() for values in v.values())
    assert 0 < v["sharpness"][0] < 1 and v["sharpness"][1] < 0.5 * v["sharpness"][0]
    assert v["texture"][1] < v["texture"][0]
    assert v["mean_intensity"][4] == pytest.approx(0.5 * v["mean_intensity"][0])
    assert v["contrast"][4] == pytest.approx(0.5 * v["contrast"][0])
    assert v["sharpness"][4] == pytest.approx(v["sharpness"][0], rel=1e-6)
    assert v["saturation"][0] > 0.05 and v["saturation"][2] == pytest.approx(0.0, abs=1e-12)
    assert v["colourfulness"][2] == pytest.approx(0.0, abs=1e-9) and np.isnan(v["hue"][2])
    assert circular_difference(v["hue"][3] - v["hue"][0], 360.0) == pytest.approx(120.0, abs=1e-3)
    assert v["saturation"][3] == pytest.approx(v["saturation"][0])


# -- the kind switch --------------------------------------------------------------------------------

def test_descriptor_set_by_image_kind():
    assert IMAGE_KINDS == ("objects", "photos")
    assert default_descriptors(1).names() == default_descriptors(1, kind="objects").names()
    photos_grey, photos_rgb = default_descriptors(1, "photos"), default_descriptors(3, "photos")
    assert photos_grey.names() == ["mean_intensity", "contrast", "texture", "sharpness", "edge_density"]
    assert photos_rgb.names() == photos_grey.names() + ["saturation", "colourfulness", "hue", "warmth"]
    assert not {"ink_area", "width", "perimeter", "centroid_x", "holes"} & set(photos_rgb.names())
    assert {"ink_area", "perimeter"} <= set(default_descriptors(3, "objects").names())
    groups = {d.name: d.group for d in photos_rgb}
    assert groups["sharpness"] == groups["texture"] == "texture" and groups["warmth"] == "colour"
    assert all(row["unit"] and row["meaning"] and "\n" not in row["meaning"] for row in photos_rgb.describe())
    assert photos_rgb.get("hue").period == 360.0 and photos_rgb.get("warmth").period is None
    assert "0.05" in photos_rgb.get("edge_density").meaning                    # photos: finer edges count
    assert "0.1" in default_descriptors(1).get("edge_density").meaning
    with pytest.raises(ValueError, match="image kind must be one of objects, photos, got 'faces'"):
        default_descriptors(3, kind="faces")
    with pytest.raises(ValueError, match="texture_window"):
        default_descriptors(3, kind="photos", texture_window=2)
    with pytest.raises(ValueError, match="period"):
        Descriptor("angle", "deg", "x", "shape", (1,), np.sum, period=0.0)


def test_photo_set_on_a_512_px_batch_is_vectorised():
    """Four RGB images at 512 px: every value finite, and the set runs in seconds, not minutes."""
    import time

    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 512, 512))
    start = time.perf_counter()
    values = default_descriptors(3, "photos").compute(x)
    elapsed = time.perf_counter() - start
    assert all(v.shape == (4,) and np.isfinite(v).all() for v in values.values())
    # About 0.2 s per image on one core; a per-pixel Python loop would take minutes.
    assert elapsed < 20
