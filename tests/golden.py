"""Access to the golden reference data (numbers from NVIDIA's official StyleGAN3 code).

The files in ``tests/data/golden/`` ship with the repository (see its README.md). When the
steering checkout's ``../shared/golden/stylegan3/`` is present, the extra generator cases
there (T32, R32, T64) are tested too; on a user's fresh clone they are simply skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"
SHARED_GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "golden" / "stylegan3"

SHIPPED_GENERATOR_CASES = ("T32_c10_gray", "R32_c10_gray", "R64_c10")
EXTRA_GENERATOR_CASES = ("T32", "R32", "T64")


def golden_file(name: str) -> Path | None:
    """Path of a golden file, shipped copy first; None when neither copy exists."""
    for folder in (GOLDEN_DIR, SHARED_GOLDEN_DIR):
        path = folder / name
        if path.is_file():
            return path
    return None


def available_generator_cases() -> list[str]:
    names = list(SHIPPED_GENERATOR_CASES)
    names += [n for n in EXTRA_GENERATOR_CASES if golden_file(f"generator_{n}.npz") is not None]
    return names


@dataclass(frozen=True)
class GeneratorCase:
    name: str
    meta: dict
    arrays: dict[str, np.ndarray]

    @property
    def init_kwargs(self) -> dict:
        return dict(self.meta["init_kwargs"])

    def state_dict(self):
        import torch

        prefix = "state/"
        return {k[len(prefix):]: torch.from_numpy(v) for k, v in self.arrays.items() if k.startswith(prefix)}


@lru_cache(maxsize=None)
def generator_case(name: str) -> GeneratorCase:
    npz_path = golden_file(f"generator_{name}.npz")
    json_path = golden_file(f"generator_{name}.json")
    if npz_path is None or json_path is None:
        raise FileNotFoundError(f"golden generator case {name} is not available")
    with np.load(npz_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return GeneratorCase(name=name, meta=json.loads(json_path.read_text()), arrays=arrays)


def build_golden_generator(name: str):
    """Our Generator with the golden case's kwargs and weights loaded strictly, in eval mode."""
    from cfattack.stylegan.generator import Generator

    case = generator_case(name)
    G = Generator(**case.init_kwargs)
    G.load_state_dict(case.state_dict(), strict=True)
    return G.eval().requires_grad_(False), case
