"""Between generator and classifier: channels, size and value range of the classifier's input.

A generator makes [N, C, R, R] images in [-1, 1]; a user's classifier may expect another
channel count (grey <-> RGB), another size (e.g. 224 px) and ImageNet-normalised [0, 1]
inputs. `adapt_images` converts channels and resizes (antialiased, differentiable: the attack's
gradients flow through it); `parse_normalize` turns the CLI's ``--normalize`` text into the
bundle spec's `InputNormalization`; `IMAGENET` is that preset. `BundleClassifier` applies
them in this order: channels, size, then the normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cfattack.bundle.spec import InputNormalization
from cfattack.errors import InvalidInputError

__all__ = ["IMAGENET", "adapt_images", "parse_normalize"]

IMAGENET = InputNormalization(value_range=(0.0, 1.0), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
"""torchvision's ImageNet models: [0, 1] inputs, then per-channel (x - mean) / std."""

# Luma weights (ITU-R BT.601), as Pillow's "L" conversion uses.
_GREY_WEIGHTS = (0.299, 0.587, 0.114)


def adapt_images(images: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    """[N, C, R, R] in [-1, 1] -> [N, channels, size, size] in [-1, 1] (None keeps that property).

    Grey becomes RGB by repeating the channel, RGB becomes grey by BT.601 luma; the resize is
    bilinear with antialiasing when shrinking (`torch.nn.functional.interpolate`), so it is
    differentiable and does not alias a 1024 px image down to 224 px.
    """
    if channels is not None and channels != images.shape[1]:
        if images.shape[1] == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] == 3 and channels == 1:
            weights = torch.tensor(_GREY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
            images = (images * weights).sum(dim=1, keepdim=True)
        else:
            raise InvalidInputError(f"cannot convert {images.shape[1]}-channel images to {channels} channels")
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=size < images.shape[-1])
    return images


def parse_normalize(text: str | None) -> InputNormalization | None:
    """``--normalize`` -> `InputNormalization` (None = the classifier takes [-1, 1] as is).

    ``imagenet``: [0, 1] then ImageNet mean/std; ``none``: [-1, 1] unchanged; ``MEAN,STD``: [0, 1]
    then ``(x - MEAN) / STD`` on every channel (e.g. ``0.5,0.5``; ``0,1`` = plain [0, 1]).

    Raises:
        InvalidInputError: any other text.
    """
    if text is None or text.strip().lower() == "none":
        return None
    if text.strip().lower() == "imagenet":
        return IMAGENET
    parts = [p.strip() for p in text.split(",")]
    try:
        mean, std = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        mean = std = None
    if mean is None or std is None or not (std > 0) or mean != mean or abs(mean) == float("inf") \
            or std == float("inf"):
        raise InvalidInputError(f"--normalize takes imagenet, none or MEAN,STD (e.g. 0.5,0.5), got {text!r}")
    return InputNormalization(value_range=(0.0, 1.0), mean=(mean,), std=(std,))
