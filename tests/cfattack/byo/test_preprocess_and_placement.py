"""Preprocessing between generator and classifier, input placement, and the CPU cost note."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cfattack.bundle import read_bundle_spec
from cfattack.bundle.loader import DEFAULT_BUNDLE_DIR
from cfattack.bundle.preprocess import IMAGENET, adapt_images, parse_normalize
from cfattack.cli.own_models import cpu_cost_note
from cfattack.errors import InvalidInputError
from cfattack.images import load_image
from cfattack.stylegan.generator import Generator


def test_adapt_images_resizes_with_antialiasing_and_converts_channels():
    stripes = torch.ones(1, 1, 64, 64)
    stripes[..., ::2] = -1  # finest detail: an antialiased shrink averages it away, plain sampling keeps it
    small = adapt_images(stripes, 16, 3)
    assert small.shape == (1, 3, 16, 16)
    assert small.abs().max() < 0.1
    rgb = torch.rand(2, 3, 8, 8, requires_grad=True)
    grey = adapt_images(rgb, 12, 1)
    assert grey.shape == (2, 1, 12, 12)
    grey.sum().backward()  # differentiable: the attack's gradients reach the generator's images
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0
    assert adapt_images(rgb, None, None) is rgb


def test_parse_normalize():
    assert parse_normalize("imagenet") == IMAGENET and parse_normalize("none") is None and parse_normalize(None) is None
    half = parse_normalize("0.5,0.5")
    scale, shift = half.affine(3)
    assert scale == [1.0] * 3 and shift == [0.0] * 3  # [-1, 1] -> [0, 1] -> (x - .5) / .5 is the identity
    for bad in ("imagenett", "0.5", "0.5,0", "a,b", "0.5,nan"):
        with pytest.raises(InvalidInputError, match="--normalize"):
            parse_normalize(bad)


def test_native_28px_images_are_padded_like_the_training_data(tmp_path):
    spec = read_bundle_spec(DEFAULT_BUNDLE_DIR)
    assert (spec.image.native_size, spec.image.placement) == (28, "pad")
    pixels = np.random.RandomState(0).randint(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "raw28.png")
    from cfattack.pipeline.explainer import Explainer

    explainer = Explainer.__new__(Explainer)  # load() only needs the spec: no network is loaded
    explainer.bundle = type("SpecOnly", (), {"spec": spec})()
    padded, _ = explainer.load(tmp_path / "raw28.png")
    expected = torch.full((1, 32, 32), -1.0)
    expected[:, 2:30, 2:30] = torch.from_numpy(pixels).float() / 127.5 - 1
    torch.testing.assert_close(padded, expected)
    # Any other size is still resized, and 32 px files (the shipped examples) are read as they are.
    Image.fromarray(pixels[:27, :27]).save(tmp_path / "raw27.png")
    assert load_image(tmp_path / "raw27.png", 1, 32, pad_from=28).shape == (1, 32, 32)
    example = DEFAULT_BUNDLE_DIR.parents[2] / "examples" / "coat-1.png"
    if example.is_file():
        torch.testing.assert_close(explainer.load(example)[0], load_image(example, 1, 32))


def test_cpu_cost_note_only_for_large_generators_on_the_cpu():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=256, img_channels=3, channel_base=256, channel_max=4,
                  num_layers=2, num_critical=1, mapping_kwargs={"num_layers": 1}).eval()
    note = cpu_cost_note(G, "cpu", attack_steps=500)
    assert note is not None and "minutes per image on this CPU" in note and "use a GPU" in note
    assert cpu_cost_note(G, "cuda", attack_steps=500) is None
    G.img_resolution = 128  # the note's threshold is read from the generator
    assert cpu_cost_note(G, "cpu", attack_steps=500) is None
