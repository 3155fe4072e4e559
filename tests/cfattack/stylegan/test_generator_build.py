"""cfattack.stylegan.generator_build: kwargs from a file are checked on paper before anything is built."""

from __future__ import annotations

import pytest
import torch

from cfattack.bounded_pickle import MAX_NETWORK_BYTES
from cfattack.errors import NetworkLoadError
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.generator_build import MAX_ACTIVATION_ELEMENTS, _check_values, _planned_size
from cfattack.stylegan.official_pickle import load_network_pkl
from tests.golden import build_golden_generator
from tests.tools.make_official_pickle import write_official_pickle

SMALL = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1, channel_base=256, channel_max=8,
             num_layers=3, num_critical=1, margin_size=2, mapping_kwargs={"num_layers": 1})


@pytest.mark.parametrize("kwargs", [
    SMALL,
    {**SMALL, "c_dim": 5, "mapping_kwargs": {"num_layers": 3}},
    {**SMALL, "conv_kernel": 1, "use_radial_filters": True, "num_layers": 5, "num_critical": 2},
    {**SMALL, "img_channels": 3, "filter_size": 4, "lrelu_upsampling": 3, "first_cutoff": 3.0},
    {**SMALL, "img_resolution": 64, "channel_base": 1024, "channel_max": 16, "num_layers": 6},
])
def test_the_plan_counts_exactly_the_weights_the_constructor_makes(kwargs):
    torch.manual_seed(0)
    built = sum(t.numel() for t in Generator(**kwargs).state_dict().values())
    assert _planned_size(kwargs)[0] == built


@pytest.mark.parametrize("case", ["T32_c10_gray", "R64_c10"])
def test_the_plan_matches_the_golden_networks(case):
    G, _ = build_golden_generator(case)
    assert _planned_size(G.init_kwargs)[0] == sum(t.numel() for t in G.state_dict().values())


OFFICIAL = {  # NVIDIA's released configurations (train.py: config R doubles G's channel base and max)
    "t-1024": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, channel_base=32768,
                   channel_max=512, magnitude_ema_beta=0.999, mapping_kwargs={"num_layers": 2}),
    "r-1024": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, channel_base=65536,
                   channel_max=1024, conv_kernel=1, use_radial_filters=True, mapping_kwargs={"num_layers": 2}),
    "r-512": dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=512, img_channels=3, channel_base=65536,
                  channel_max=1024, conv_kernel=1, use_radial_filters=True, mapping_kwargs={"num_layers": 2}),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_every_official_release_fits_the_default_limits(name):
    kwargs = OFFICIAL[name]
    assert _check_values(kwargs) is None
    weights, activation = _planned_size(kwargs)
    assert activation <= MAX_ACTIVATION_ELEMENTS / 1.3
    # G and G_ema, plus a discriminator of at most 30 M weights, as float32, far under the limit.
    assert (2 * weights + 30_000_000) * 4 < MAX_NETWORK_BYTES / 4


@pytest.mark.parametrize(("change", "problem"), [
    ({"channel_max": 4096}, r"describe [\d,]+ weights but the file holds 493,879"),
    ({"img_resolution": 4096}, "no buildable network .*no channels"),
    ({"first_cutoff": float("nan")}, "first_cutoff=nan is not a positive finite number"),
    ({"first_stopband": 1e-30}, "sampling rate below 1"),
    ({"num_critical": 20}, r"num_layers \(14\) must exceed num_critical \(20\)"),
    ({"filter_size": 64, "lrelu_upsampling": 16, "use_radial_filters": True}, r"layers would need [\d,]+ values per image"),
    ({"conv_clamp": "none"}, "conv_clamp='none'"),
    ({"img_channels": True}, "img_channels=True is not an int"),
])
def test_kwargs_that_ask_for_more_than_the_file_holds_are_refused_before_building(tmp_path, change, problem):
    G, _ = build_golden_generator("T32_c10_gray")
    path = write_official_pickle(tmp_path / "kw.pkl", G, init_kwargs={**G.init_kwargs, **change})
    with pytest.raises(NetworkLoadError, match=f"refusing to build G_ema: .*{problem}") as info:
        load_network_pkl(path, load=("G_ema",))
    assert "\n" not in str(info.value)
