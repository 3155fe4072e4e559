"""Translating through ws entry 0, measured on the default bundle's real generator."""

from __future__ import annotations

import pytest
import torch

from cfattack.attribution.sampling import sample_latents
from cfattack.bundle.loader import load_bundle
from cfattack.errors import InvalidInputError
from cfattack.stylegan.translation import input_shift_px, translate_ws, translation_directions
from descriptors.shape import centroid_x, centroid_y

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def generator():
    return load_bundle("default").generator


@pytest.fixture(scope="module")
def ws(generator):
    return sample_latents(generator, 12, seed=3)


def _images(G, ws):
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const").numpy()


@pytest.mark.parametrize("shift", [(2.0, 0.0), (0.0, -1.5), (-1.0, 1.0)])
def test_translate_ws_moves_the_garment_by_the_asked_pixels_and_nothing_else(generator, ws, shift):
    moved = translate_ws(generator, ws, torch.tensor([shift] * len(ws)))
    assert torch.equal(moved[:, 1:], ws[:, 1:])  # only entry 0 changes
    before, after = _images(generator, ws), _images(generator, moved)
    dx = centroid_x(after) - centroid_x(before)
    dy = centroid_y(after) - centroid_y(before)
    # Measured on the images (a garment near the border can lose a little of its edge).
    assert abs(float(torch.tensor(dx).median()) - shift[0]) < 0.1
    assert abs(float(torch.tensor(dy).median()) - shift[1]) < 0.1
    torch.testing.assert_close(input_shift_px(generator, moved[:, 0]) - input_shift_px(generator, ws[:, 0]),
                               torch.tensor([shift] * len(ws)), atol=1e-3, rtol=0)


def test_directions_are_one_pixel_steps_that_keep_the_rotation(generator, ws):
    directions = translation_directions(generator, ws)
    assert directions.shape == (len(ws), 2, generator.w_dim)
    eps = 1e-2
    for k in range(2):
        stepped = ws.clone()
        stepped[:, 0] += eps * directions[:, k]
        change = (input_shift_px(generator, stepped[:, 0]) - input_shift_px(generator, ws[:, 0])) / eps
        expected = torch.zeros_like(change)
        expected[:, k] = 1
        torch.testing.assert_close(change, expected, atol=2e-2, rtol=0)
        t0, t1 = generator.synthesis.input.affine(ws[:, 0]), generator.synthesis.input.affine(stepped[:, 0])
        angle = torch.atan2(t1[:, 1], t1[:, 0]) - torch.atan2(t0[:, 1], t0[:, 0])
        assert float(angle.abs().max()) < 1e-4


def test_bad_shapes_are_refused(generator, ws):
    with pytest.raises(InvalidInputError, match=r"ws must be \[N, num_ws, "):
        translation_directions(generator, ws[:, 0])
    with pytest.raises(InvalidInputError, match=r"shift_px must be \[12, 2\]"):
        translate_ws(generator, ws, torch.zeros(12, 3))
    with pytest.raises(InvalidInputError, match="StyleGAN3 generator"):
        translation_directions(torch.nn.Linear(2, 2), ws)
