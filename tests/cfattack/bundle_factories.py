"""Classifier factories that test bundles name as ``tests.cfattack.bundle_factories:<callable>``."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """images [N, C, R, R] -> logits [N, num_classes] through one linear layer."""

    def __init__(self, in_channels: int = 1, resolution: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * resolution * resolution, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class InputRecorder(nn.Module):
    """Keeps the last input it saw (to check input normalisation); logits depend on the input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_classes))
        self.last_input: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_input = x.detach().clone()
        return x.flatten(1).mean(dim=1, keepdim=True) * self.weight


class TupleNet(TinyNet):
    """Returns (logits, features) like many research models: not what a bundle accepts."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.fc(x.flatten(1)), x


def make_net(in_channels: int = 1, resolution: int = 16, num_classes: int = 10) -> TinyNet:
    return TinyNet(in_channels, resolution, num_classes)


def make_recorder(num_classes: int = 10) -> InputRecorder:
    return InputRecorder(num_classes)


def make_tuple_net(in_channels: int = 1, resolution: int = 16, num_classes: int = 10) -> TupleNet:
    return TupleNet(in_channels, resolution, num_classes)


def make_not_a_module() -> str:
    return "not a network"


def make_failing(**kwargs: object) -> nn.Module:
    raise RuntimeError("this factory always fails")


class Builders:
    """A dotted attribute path after the colon: ``bundle_factories:Builders.tiny``."""

    @staticmethod
    def tiny(num_classes: int = 10) -> TinyNet:
        return TinyNet(num_classes=num_classes)


NOT_CALLABLE = 42


class Forever(nn.Module):
    """A network whose forward never returns (pure Python loop): trusted code that must be time-limited."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while True:
            x = x * self.weight


def make_forever() -> Forever:
    return Forever()


class ScriptedForever(nn.Module):
    """Scripted with torch.jit.script, a TorchScript program whose forward loops forever on finite input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while bool(x.abs().sum() >= 0):
            x = x * 1.0
        return x
