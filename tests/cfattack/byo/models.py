"""Small random-weight "own models" for the BYO tests: a 64 px RGB StyleGAN3 written as an official
pickle (config T or R) and a cat/dog classifier that only runs on 3 x 96 x 96 ImageNet-normalised input."""

from __future__ import annotations

from pathlib import Path

import torch

from cfattack.stylegan.generator import Generator
from tests.tools.make_official_pickle import write_official_pickle

RESOLUTION = 64
CLASSIFIER_SIZE = 96


def small_generator(config: str = "T", seed: int = 0) -> Generator:
    """A 64 px RGB generator with few channels (fast on a CPU), config T or R."""
    torch.manual_seed(seed)
    extra = {"conv_kernel": 1, "use_radial_filters": True} if config == "R" else {}
    return Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=RESOLUTION, img_channels=3, channel_base=512,
                     channel_max=16, num_layers=4, num_critical=1, margin_size=2, mapping_kwargs={"num_layers": 1},
                     **extra).eval()


class CatDogNet(torch.nn.Module):
    """Two logits from a 3 x 96 x 96 image: its flattened 12 x 12 pooled map only fits at 96 px."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = torch.nn.AvgPool2d(8)
        self.head = torch.nn.Linear(4 * 12 * 12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.tanh(self.conv(x))).flatten(1))


def cat_dog_net(seed: int = 1) -> CatDogNet:
    torch.manual_seed(seed)
    return CatDogNet().eval()


def write_official_generator(path: Path, config: str = "T") -> Path:
    return write_official_pickle(path, small_generator(config))


def write_torchscript_classifier(path: Path, class_names: list[str] | None = None) -> Path:
    """The classifier traced at 96 px and saved as TorchScript (optionally carrying class_names.json)."""
    import json
    import warnings

    net = cat_dog_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, torch.zeros(1, 3, CLASSIFIER_SIZE, CLASSIFIER_SIZE))
        extra = {"class_names.json": json.dumps(class_names)} if class_names else {}
        torch.jit.save(traced, str(path), _extra_files=extra)
    return path


def write_export_classifier(path: Path, class_names: list[str] | None = None) -> Path:
    """The classifier as a torch.export program (any batch size), optionally carrying class_names.json."""
    import json

    net = cat_dog_net()
    program = torch.export.export(net, (torch.zeros(2, 3, CLASSIFIER_SIZE, CLASSIFIER_SIZE),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    extra = {"class_names.json": json.dumps(class_names)} if class_names else {}
    torch.export.save(program, str(path), extra_files=extra)
    return path
