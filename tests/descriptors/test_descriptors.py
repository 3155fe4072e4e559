"""Descriptors: known answers on shapes drawn here, registry contract, CSV attributes, real garments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from descriptors import Descriptor, DescriptorSet, LabelledAttributes, as_image_batch, default_descriptors
from descriptors.shape import (
    aspect_ratio,
    centroid_x,
    centroid_y,
    height,
    holes,
    ink_area,
    perimeter,
    slant,
    stroke_thickness,
    symmetry_lr,
    width,
)
from descriptors.tone import colourfulness, contrast, edge_density, hue, mean_intensity, texture_energy

S = 32  # canvas size


# -- drawing helpers: [H, W] planes in [-1, 1], black background ------------------------------------

def canvas(value: float = -1.0, size: int = S) -> np.ndarray:
    return np.full((size, size), value)


def batch(*planes: np.ndarray) -> np.ndarray:
    """[H, W] planes -> grey batch [N, 1, H, W]."""
    return np.stack(planes)[:, None]


def rectangle(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    img = canvas()
    img[r0:r1, c0:c1] = 1.0
    return img


def ring(cy: float, cx: float, outer: float, inner: float, img: np.ndarray | None = None) -> np.ndarray:
    img = canvas() if img is None else img
    yy, xx = np.mgrid[:S, :S]
    r = np.hypot(yy - cy, xx - cx)
    img[(r <= outer) & (r >= inner)] = 1.0
    return img


def segment(degrees_from_vertical: float, length: float, half_width: float) -> np.ndarray:
    """A stroke through the centre leaning ``degrees`` to the right of vertical (y grows downward)."""
    t = np.radians(degrees_from_vertical)
    d = np.array([np.sin(t), -np.cos(t)])                  # (x, y) direction, pointing up and right
    yy, xx = np.mgrid[:S, :S]
    p = np.stack([xx - 15.5, yy - 15.5], axis=-1)
    along = p @ d
    across = np.abs(p @ np.array([-d[1], d[0]]))
    img = canvas()
    img[(np.abs(along) <= length / 2) & (across <= half_width)] = 1.0
    return img


def rgb(r: float, g: float, b: float, size: int = 8) -> np.ndarray:
    """A uniform RGB image [3, size, size] with channel values in [-1, 1]."""
    return np.stack([np.full((size, size), float(v)) for v in (r, g, b)])


# -- shape: known answers ---------------------------------------------------------------------------

def test_filled_rectangle_exact() -> None:
    x = batch(rectangle(8, 20, 10, 16))                       # 12 rows x 6 columns
    assert ink_area(x)[0] == pytest.approx(72 / S**2)
    assert width(x)[0] == 6 and height(x)[0] == 12
    assert aspect_ratio(x)[0] == pytest.approx(2.0)
    assert perimeter(x)[0] == 2 * (12 + 6)
    assert centroid_x(x)[0] == pytest.approx(12.5) and centroid_y(x)[0] == pytest.approx(13.5)
    assert holes(x)[0] == 0
    assert slant(x)[0] == pytest.approx(0.0, abs=1e-9)
    assert symmetry_lr(x)[0] == pytest.approx(1.0)


def test_rectangle_cut_by_the_border_ends_there() -> None:
    x = batch(rectangle(0, 10, 0, S))                         # touches three borders
    assert width(x)[0] == S and height(x)[0] == 10
    assert perimeter(x)[0] == 2 * (10 + S)
    assert holes(x)[0] == 0


def test_holes_ring_two_rings_and_open_shapes() -> None:
    one = ring(15.5, 15.5, 9, 5)
    two = ring(15.5, 8, 6, 3, ring(15.5, 23, 6, 3))
    u_shape = rectangle(8, 24, 8, 24)
    u_shape[8:20, 12:20] = -1.0                               # cavity open at the top
    pinhole = rectangle(8, 24, 8, 24)
    pinhole[15, 15] = -1.0
    x = batch(one, two, u_shape, pinhole)
    np.testing.assert_array_equal(holes(x), [1, 2, 0, 0])
    np.testing.assert_array_equal(holes(x, min_hole_area=1), [1, 2, 0, 1])
    # a one-pixel diagonal outline stays closed: background connects through 4 neighbours only
    diamond = canvas()
    for k in range(6):
        for r, c in ((10 + k, 16 + k), (16 + k, 22 - k), (22 - k, 16 - k), (16 - k, 10 + k)):
            diamond[r, c] = 1.0
    assert holes(batch(diamond), min_hole_area=1)[0] == 1


def test_slant_of_leaning_strokes() -> None:
    x = batch(segment(30, 24, 1.5), segment(-30, 24, 1.5), segment(0, 24, 1.5), segment(12, 20, 1.0))
    s = slant(x)
    assert s[0] == pytest.approx(30, abs=1.5)
    assert s[1] == pytest.approx(-30, abs=1.5)
    assert s[2] == pytest.approx(0, abs=1e-9)
    assert s[3] == pytest.approx(12, abs=1.5)
    # a wide shape has a defined, small slant (the principal axis would sit at +-90 degrees)
    assert abs(slant(batch(rectangle(12, 18, 4, 28)))[0]) < 1e-9


def test_stroke_thickness_thin_and_thick_bars() -> None:
    thin, thick = rectangle(4, 28, 15, 17), rectangle(4, 28, 13, 19)   # 2 and 6 px wide, 24 long
    t = stroke_thickness(batch(thin, thick))
    assert t[0] == pytest.approx(2.0)                          # even width, every pixel at distance 1
    assert 5.0 < t[1] < 6.5 and t[1] > t[0]
    # the Euclidean distance keeps the estimate for a diagonal stroke
    assert stroke_thickness(batch(segment(30, 24, 2.0)))[0] == pytest.approx(4.0, abs=1.0)


def test_symmetry_ordering_and_shift_invariance() -> None:
    tee = canvas()
    tee[6:10, 6:22] = 1.0
    tee[10:26, 12:16] = 1.0                                   # a T, symmetric about x = 13.5
    ell = canvas()
    ell[6:26, 8:12] = 1.0
    ell[22:26, 12:24] = 1.0                                   # an L
    shifted_tee = np.roll(tee, 5, axis=1)
    sym = symmetry_lr(batch(tee, ell, shifted_tee))
    assert sym[0] == pytest.approx(1.0) and sym[2] == pytest.approx(1.0)
    assert sym[1] < 0.7


def test_empty_images_give_defined_values() -> None:
    x = batch(canvas(), canvas(-0.2))                         # black, and dim grey below the threshold
    values = default_descriptors(1).compute(x)
    for name in ("ink_area", "width", "height", "perimeter", "stroke_thickness", "holes"):
        np.testing.assert_array_equal(values[name], 0.0, err_msg=name)
    for name in ("aspect_ratio", "slant", "symmetry_lr", "centroid_x", "centroid_y"):
        assert np.isnan(values[name]).all(), name
    np.testing.assert_allclose(values["mean_intensity"], [0.0, 0.4])
    np.testing.assert_array_equal(values["contrast"], 0.0)
    # an empty batch is fine too
    assert all(v.shape == (0,) for v in default_descriptors(1).compute(np.zeros((0, 1, S, S))).values())


def test_threshold_is_configurable() -> None:
    x = batch(np.where(rectangle(8, 20, 10, 16) > 0, 0.3, -1.0))          # a dim rectangle
    assert ink_area(x)[0] > 0 and ink_area(x, threshold=0.5)[0] == 0
    assert default_descriptors(1, threshold=0.5).compute(x, names=["width"])["width"][0] == 0
    with pytest.raises(ValueError, match="threshold"):
        ink_area(x, threshold=1.5)


# -- tone, texture, colour --------------------------------------------------------------------------

def test_tone_and_texture() -> None:
    flat = canvas(0.2)
    checker = np.where((np.indices((S, S)).sum(axis=0) % 2) == 0, 1.0, -1.0)
    blocks = np.where(((np.indices((S, S)) // 4).sum(axis=0) % 2) == 0, 1.0, -1.0)
    x = batch(flat, checker, blocks)
    np.testing.assert_allclose(mean_intensity(x), [0.6, 0.5, 0.5])
    np.testing.assert_allclose(contrast(x), [0.0, 0.5, 0.5])
    e, t = edge_density(x), texture_energy(x)
    assert e[0] == 0 and t[0] == 0
    assert t[1] > 10 > t[2] > 0                               # 16 inside a 1-px checkerboard
    assert e[2] > 0.3
    assert edge_density(batch(rectangle(8, 20, 10, 16)))[0] > 0


def test_colourfulness_and_hue() -> None:
    red, green, blue, grey = rgb(1, -1, -1), rgb(-1, 1, -1), rgb(-1, -1, 1), rgb(0, 0, 0)
    half = red.copy()
    half[:, :, 4:] = green[:, :, 4:]
    x = np.stack([red, green, blue, grey, half])
    m = colourfulness(x)
    assert m[0] == pytest.approx(0.3 * 255 * np.sqrt(1.25))
    assert m[3] == pytest.approx(0.0)
    h = hue(x)
    assert min(h[0], 360 - h[0]) == pytest.approx(0.0, abs=1e-6)
    assert h[1] == pytest.approx(120) and h[2] == pytest.approx(240) and h[4] == pytest.approx(60)
    assert np.isnan(h[3])
    with pytest.raises(ValueError, match="RGB"):
        hue(batch(canvas()))


def test_rgb_shape_uses_luminance() -> None:
    grey = batch(rectangle(8, 20, 10, 16))
    white_rgb = np.repeat(grey, 3, axis=1)
    a, b = default_descriptors(1).compute(grey), default_descriptors(3).compute(white_rgb)
    for name, v in a.items():
        np.testing.assert_allclose(b[name], v, err_msg=name)
    assert set(b) - set(a) == {"colourfulness", "hue"}


# -- input contract and batching --------------------------------------------------------------------

def _shapes_batch() -> np.ndarray:
    return batch(rectangle(8, 20, 10, 16), ring(15.5, 15.5, 9, 5), segment(30, 24, 1.5), canvas(),
                 np.random.default_rng(0).uniform(-1, 1, (S, S)))


def test_tensor_and_numpy_agree_and_batch_equals_single_images() -> None:
    x = _shapes_batch()
    ds = default_descriptors(1)
    from_numpy = ds.compute(x)
    from_tensor = ds.compute(torch.from_numpy(x).float())
    for name in ds.names():
        np.testing.assert_allclose(from_tensor[name], from_numpy[name], rtol=1e-5, atol=1e-5, err_msg=name)
        assert from_numpy[name].dtype == np.float64 and from_numpy[name].shape == (len(x),)
    for i in range(len(x)):
        single = ds.compute(x[i:i + 1])
        for name in ds.names():
            np.testing.assert_allclose(single[name], from_numpy[name][i:i + 1], err_msg=f"{name} image {i}")


def test_input_validation() -> None:
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        as_image_batch(np.zeros((4, 32, 32)))
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        as_image_batch(np.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        as_image_batch(np.full((1, 1, 8, 8), np.nan))
    with pytest.raises(ValueError, match="floats in \\[-1, 1\\], got dtype uint8"):
        as_image_batch(np.zeros((1, 1, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="torch.int64 tensor"):
        as_image_batch(torch.zeros((1, 1, 8, 8), dtype=torch.int64))
    assert as_image_batch(np.full((1, 1, 2, 2), 3.0)).max() == 1.0          # clipped
    assert as_image_batch(torch.zeros((1, 3, 2, 2), dtype=torch.bfloat16)).dtype == np.float64


# -- registry ---------------------------------------------------------------------------------------

def test_registry_contract() -> None:
    grey, colour = default_descriptors(1), default_descriptors(3)
    assert grey.names() == ["ink_area", "width", "height", "aspect_ratio", "slant", "stroke_thickness",
                            "perimeter", "symmetry_lr", "centroid_x", "centroid_y", "holes",
                            "mean_intensity", "contrast", "edge_density", "texture_energy"]
    assert colour.names() == grey.names() + ["colourfulness", "hue"]
    assert colour.for_channels(1).names() == grey.names()
    table = colour.describe()
    json.dumps(table)
    assert all(row["unit"] and row["meaning"] and row["group"] for row in table)
    assert colour.get("hue").channels == (3,) and colour.get("slant").channels == (1, 3)
    assert list(grey.compute(_shapes_batch(), names=["holes", "slant"])) == ["holes", "slant"]


def test_registry_errors() -> None:
    ds = default_descriptors(3)
    with pytest.raises(ValueError, match="unknown descriptor 'roundness'; valid names: ink_area, width"):
        ds.get("roundness")
    with pytest.raises(ValueError, match="unknown descriptor"):
        ds.compute(_shapes_batch(), names=["roundness"])
    with pytest.raises(ValueError, match=r"colourfulness, hue do not apply to images with C=1"):
        ds.compute(_shapes_batch())
    with pytest.raises(ValueError, match="appears twice"):
        DescriptorSet([ds.get("width"), ds.get("width")])
    with pytest.raises(ValueError, match="snake_case"):
        Descriptor("Ink Area", "px", "x", "shape", (1,), np.sum)
    with pytest.raises(ValueError, match="group"):
        Descriptor("ink", "px", "x", "size", (1,), np.sum)
    with pytest.raises(ValueError, match="channels"):
        Descriptor("ink", "px", "x", "shape", (2,), np.sum)
    with pytest.raises(ValueError, match="channels must be 1"):
        default_descriptors(4)


def test_import_is_light() -> None:
    code = "import sys, descriptors; print(sorted(m for m in ('scipy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- labelled attributes ----------------------------------------------------------------------------

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "attrs.csv"
    path.write_text(text)
    return path


def test_labelled_csv(tmp_path: Path) -> None:
    path = _write(tmp_path, "image,Smiling,Eyeglasses,age\n"
                            "000001.jpg,1,-1,31.5\n000002.jpg,-1,-1,20\n000003.jpg, 1 ,1,44\n")
    attrs = LabelledAttributes.from_csv(path)
    assert attrs.names() == ["Smiling", "Eyeglasses", "age"] and len(attrs) == 3
    v = attrs.values(["000003.jpg", "data/000001.jpg"])     # a path is found by its file name
    np.testing.assert_array_equal(v["Smiling"], [1.0, 1.0])
    np.testing.assert_array_equal(v["Eyeglasses"], [1.0, 0.0])
    np.testing.assert_array_equal(v["age"], [44.0, 31.5])
    assert attrs.is_binary("Smiling") and not attrs.is_binary("age")
    assert [r["kind"] for r in attrs.describe()] == ["binary", "binary", "numeric"]
    only = LabelledAttributes.from_csv(path, columns=["age"])
    assert only.names() == ["age"]
    semi = _write(tmp_path, "name;blond\na.png;0\nb.png;1\n")
    assert LabelledAttributes.from_csv(semi, image_column="name", delimiter=";").values(["b.png"])["blond"][0] == 1


@pytest.mark.parametrize("text, kwargs, message", [
    ("file,Smiling\na.jpg,1\n", {}, "no image column 'image'; columns are: file, Smiling"),
    ("image,Smiling\na.jpg,1\n", {"columns": ["Young"]}, "missing attribute column.*'Young'.*available: Smiling"),
    ("image,Smiling\na.jpg,yes\n", {}, "row 2, column 'Smiling': 'yes' is not a finite number"),
    ("image,Smiling\na.jpg,\n", {}, "row 2, column 'Smiling': '\\(empty\\)'"),
    ("image,Smiling\na.jpg,1\na.jpg,0\n", {}, "listed more than once: 'a.jpg'"),
    ("image,Smiling,Smiling\na.jpg,1,1\n", {}, "repeated in the header"),
    ("image,Smiling\na.jpg,1,0\n", {}, "row 2: 3 cells for 2 columns"),
    ("image\na.jpg\n", {}, "no attribute columns"),
    ("image,Smiling\n", {}, "no image rows"),
])
def test_labelled_csv_errors(tmp_path: Path, text: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LabelledAttributes.from_csv(_write(tmp_path, text), **kwargs)


def test_labelled_lookup_errors(tmp_path: Path) -> None:
    attrs = LabelledAttributes.from_csv(_write(tmp_path, "image,Smiling\na.jpg,1\nb.jpg,0\n"))
    with pytest.raises(ValueError, match="2 image name\\(s\\) not in the table: 'c.jpg', 'd.jpg'"):
        attrs.values(["a.jpg", "c.jpg", "d.jpg"])
    with pytest.raises(ValueError, match="unknown attribute.*'Young'; valid names: Smiling"):
        attrs.values(["a.jpg"], names=["Young"])
    with pytest.raises(ValueError, match="does not exist"):
        LabelledAttributes.from_csv(tmp_path / "missing.csv")


# -- real garments ----------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_sanity() -> None:
    from cfattack.training.data import load_fashion_mnist

    data = load_fashion_mnist("test")
    labels = data.labels.numpy()
    pick = {name: np.flatnonzero(labels == data.class_names.index(name))[:40]
            for name in ("trouser", "bag", "sandal", "ankle-boot")}
    ds = default_descriptors(1)
    v = {name: ds.compute(data.images[idx]) for name, idx in pick.items()}
    for name, values in v.items():
        for d, arr in values.items():
            assert np.isfinite(arr).all(), (name, d)
    assert v["trouser"]["aspect_ratio"].mean() > 1.5
    assert v["bag"]["width"].mean() > v["trouser"]["width"].mean() + 5
    assert v["sandal"]["ink_area"].mean() < v["ankle-boot"]["ink_area"].mean()
    assert v["sandal"]["stroke_thickness"].mean() < v["ankle-boot"]["stroke_thickness"].mean()
    assert v["trouser"]["symmetry_lr"].mean() > v["ankle-boot"]["symmetry_lr"].mean()
