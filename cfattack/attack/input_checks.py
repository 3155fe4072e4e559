"""Input checks of the attack that need no attack state: the target classes and error descriptions."""

from __future__ import annotations

import numbers
from typing import Sequence

import torch

from cfattack.errors import InvalidInputError


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _check_target(target: int | Sequence[int] | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """int, list or tensor -> LongTensor [N] on ``device``; range against the classifier comes later."""
    if isinstance(target, bool):
        raise InvalidInputError("target must be a class index, got a bool")
    if isinstance(target, numbers.Integral):
        target = torch.full((batch,), int(target), dtype=torch.long)
    elif not isinstance(target, torch.Tensor):
        try:
            target = torch.as_tensor(list(target))
        except (TypeError, ValueError, RuntimeError) as error:
            raise InvalidInputError(f"target must be an int or a sequence of ints, got {target!r}") from error
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise InvalidInputError(f"target must hold integer class indices, got {target.dtype}")
    if target.ndim == 0:
        target = target.expand(batch)
    if target.shape != (batch,):
        raise InvalidInputError(f"target must be one int or [N] = [{batch}] ints, got shape {tuple(target.shape)}")
    if (target < 0).any():
        raise InvalidInputError(f"target must be >= 0, got {target.min().item()}")
    return target.to(device=device, dtype=torch.long)


def _check_target_range(target: torch.Tensor, num_classes: int) -> None:
    if (target >= num_classes).any():
        raise InvalidInputError(
            f"target {int(target.max())} is out of range for a classifier with {num_classes} classes (0..{num_classes - 1})"
        )
