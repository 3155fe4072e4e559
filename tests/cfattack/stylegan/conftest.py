"""Helpers of the generator-file tests: the golden T32 network, as is and as an official pickle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cfattack.stylegan.generator import Generator
from tests.golden import build_golden_generator
from tests.tools.make_official_pickle import write_official_pickle

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGE_ATOL = 1e-4


def golden_image_error(G: Generator, case, samples: int = 3) -> float:
    """Max |G.synthesis(G.mapping(z, c)) - img_psi1| over the first ``samples`` golden inputs."""
    z = torch.from_numpy(case.arrays["z"][:samples])
    c = torch.from_numpy(case.arrays["c"][:samples])
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, c), noise_mode="const", force_fp32=True)
    expected = torch.from_numpy(case.arrays["img_psi1"][:samples])
    return float((img.double() - expected.double()).abs().max())


def assert_state_equal(G: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = G.state_dict()
    assert list(state) == list(reference)
    for name, value in reference.items():
        # (The golden npz stores 0-d buffers as [1].)
        assert torch.equal(state[name].reshape(value.shape), value), name


@pytest.fixture(scope="module")
def t32():
    return build_golden_generator("T32_c10_gray")


@pytest.fixture(scope="module")
def t32_pickle(tmp_path_factory, t32):
    G, _ = t32
    return write_official_pickle(tmp_path_factory.mktemp("pkl") / "t32.pkl", G)


def small_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1, channel_base=256,
                     channel_max=8, num_layers=3, num_critical=1, margin_size=2, mapping_kwargs={"num_layers": 1})
