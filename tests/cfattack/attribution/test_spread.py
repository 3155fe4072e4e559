"""descriptor_spread: the spread over generator samples that standardises measured changes, cached per generator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cfattack.attribution.sampling import generator_fingerprint, sample_latents
from cfattack.attribution.spread import _summary, descriptor_spread, spread_cache_dir
from cfattack.errors import InvalidInputError
from cfattack.stylegan.generator import Generator
from descriptors import Descriptor, DescriptorSet, default_descriptors

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_rgb_generator(seed: int = 0, channels: int = 3) -> Generator:
    torch.manual_seed(seed)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=channels, channel_base=128,
                  channel_max=8, num_layers=3, num_critical=1, margin_size=2).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(500, 8), None)[:, 0].mean(0))
    return G


class _Counting:
    """Counts G.synthesis calls, to tell a measured spread from one read from the cache."""

    def __init__(self, G):
        self.calls, self._synthesis = 0, G.synthesis.forward

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._synthesis(*args, **kwargs)


def test_spread_is_the_std_over_generator_samples(tmp_path):
    G = tiny_rgb_generator()
    ds = default_descriptors(3, kind="photos")
    spread = descriptor_spread(G, ds, samples=40, batch=16, cache_dir=tmp_path)
    assert spread.generator_fingerprint == generator_fingerprint(G) and spread.num_samples == 40
    with torch.no_grad():
        images = G.synthesis(sample_latents(G, 40, seed=0), noise_mode="const")
    direct = ds.compute(images)
    for name in ("mean_intensity", "contrast", "texture", "sharpness", "saturation", "warmth"):
        assert spread.std[name] == pytest.approx(direct[name].std(), rel=1e-4), name
        assert spread.mean[name] == pytest.approx(direct[name].mean(), rel=1e-4, abs=1e-9), name
    assert set(spread.std) | set(spread.dropped) == set(ds.names())
    assert all(v > 0 and math.isfinite(v) for v in spread.std.values())


def test_computed_once_reused_and_invalidated_by_another_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("CFATTACK_CACHE", str(tmp_path))
    assert spread_cache_dir() == tmp_path / "spread"
    G = tiny_rgb_generator()
    ds = default_descriptors(3, kind="photos")
    counter = _Counting(G)
    monkeypatch.setattr(G.synthesis, "forward", counter)
    first = descriptor_spread(G, ds, samples=24)
    measured_calls = counter.calls
    (path,) = (tmp_path / "spread").iterdir()
    assert measured_calls >= 1 and path.name.startswith(generator_fingerprint(G) + "-")
    assert json.loads(path.read_text())["format"] == "cfattack.spread/1"

    again = descriptor_spread(G, ds, samples=24)                       # read back: no synthesis at all
    assert counter.calls == measured_calls and again == first

    other = tiny_rgb_generator(seed=1)                                 # other weights: measured anew
    other_spread = descriptor_spread(other, ds, samples=24)
    assert other_spread.generator_fingerprint != first.generator_fingerprint
    assert other_spread.std != first.std and len(list((tmp_path / "spread").iterdir())) == 2

    descriptor_spread(G, default_descriptors(3), samples=24)           # another descriptor set: its own file
    descriptor_spread(G, ds, samples=30)                               # another sample count too
    assert len(list((tmp_path / "spread").iterdir())) == 4 and counter.calls > measured_calls

    path.write_text("{not json")                                       # a damaged file is replaced
    calls = counter.calls
    remeasured = descriptor_spread(G, ds, samples=24)
    assert counter.calls > calls and (remeasured.std, remeasured.dropped) == (first.std, first.dropped)
    assert json.loads(path.read_text())["std"] == first.std


def test_no_cache_and_unwritable_cache(tmp_path):
    G = tiny_rgb_generator()
    ds = default_descriptors(3, kind="photos").select(["mean_intensity", "contrast"])
    descriptor_spread(G, ds, samples=20, cache=False, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(RuntimeWarning, match="could not cache the descriptor spread"):
        spread = descriptor_spread(G, ds, samples=20, cache_dir=blocker / "spread")
    assert set(spread.std) == {"mean_intensity", "contrast"}


def test_dropped_descriptors_say_why(tmp_path):
    G = tiny_rgb_generator(channels=1)
    flat = Descriptor("always_two", "count", "a constant", "tone", (1, 3), lambda x: np.full(len(x), 2.0))
    ds = DescriptorSet([*default_descriptors(3, kind="photos"), flat])
    spread = descriptor_spread(G, ds, samples=20, cache_dir=tmp_path)
    assert spread.dropped["saturation"] == "does not apply to 1-channel images"
    assert spread.dropped["always_two"].startswith("constant (2)")
    assert "always_two" not in spread.std and "texture" in spread.std
    with pytest.raises(InvalidInputError, match="at least 8"):
        descriptor_spread(G, ds, samples=5, cache_dir=tmp_path)
    with pytest.raises(InvalidInputError, match="none of the descriptors applies"):
        descriptor_spread(G, ds.select(["hue"]), samples=20, cache_dir=tmp_path)


def test_circular_spread_of_hues_around_red():
    """Hues 350..10 deg: circular mean 0 and a spread of about 7 deg, not 180 deg as plain statistics say."""
    hues = np.array([350.0, 355.0, 0.0, 5.0, 10.0, 358.0, 2.0, np.nan])
    mean, std = _summary(hues, 360.0)
    assert min(mean, 360 - mean) < 1e-6 and 5.0 < std < 8.0
    assert np.nanstd(hues) > 150
    assert _summary(np.array([0.0, 90.0, 180.0, 270.0]), 360.0) == "spread evenly around the circle"
    assert _summary(np.array([1.0, np.nan, np.nan, np.nan]), None).startswith("undefined (NaN) on 75%")
