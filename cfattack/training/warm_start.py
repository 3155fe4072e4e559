"""Start a GAN run from another run's weights, optionally adding class conditioning.

A small generator trained unconditionally for a long time has learnt most of what it can about
the images; conditioning it on the class afterwards is much cheaper than training a
conditional one from scratch. Every source tensor is kept; the added pieces start as follows:

- generator: the mapping network's first layer gains input columns for the label embedding.
  The columns for z are rescaled so that z still contributes exactly what it did (the layer's
  equalised-learning-rate gain depends on its input width); the label columns get their fresh
  initialisation, as in a conditional network trained from scratch. They cannot start at zero:
  the mapping network learns 100x slower than the rest (lr multiplier 0.01), so zero columns
  stay near zero for tens of thousands of steps while the discriminator, which learns the
  labels at once, overpowers the generator (tried: 14% label agreement after 48 kimg).
- discriminator: the projection head's first output row is the source's logit and the label
  embedding starts as a constant that selects exactly that row, so D starts as the source D for
  every label; the other rows start at their fresh initialisation, so gradients reach the label
  embedding from the first step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch

from cfattack.config import GanTrainingConfig
from cfattack.errors import InvalidInputError
from cfattack.training.gan_files import CHECKPOINT_NAME, GAN_CHECKPOINT_FORMAT

__all__ = ["warm_start_from_checkpoint"]

# Settings that must agree between the source run and the warm-started one (the weights' shapes).
_SHAPE_FIELDS = ("resolution", "channels", "generator", "d_channel_base", "d_channel_max")


def warm_start_from_checkpoint(path: str | Path, config: GanTrainingConfig, G: torch.nn.Module,
                               G_ema: torch.nn.Module, D: torch.nn.Module) -> None:
    """Copy G, G_ema and D weights from a `cfattack train gan` checkpoint into fresh networks.

    Raises InvalidInputError if the file is not such a checkpoint, its layout differs, or it is
    conditional while this run is not.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise InvalidInputError(f"cannot read warm-start checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != GAN_CHECKPOINT_FORMAT:
        raise InvalidInputError(f"{path} is not a cfattack GAN training checkpoint")
    source = GanTrainingConfig.model_validate(state["config"])
    theirs = source.model_dump(include=set(_SHAPE_FIELDS))
    ours = config.model_dump(include=set(_SHAPE_FIELDS))
    if theirs != ours:
        differ = sorted(k for k in _SHAPE_FIELDS if theirs[k] != ours[k])
        raise InvalidInputError(f"warm start needs the same network layout; {path} differs in {', '.join(differ)}")
    if source.conditional and not config.conditional:
        raise InvalidInputError(f"{path} is conditional; warm-start it into a conditional run (--conditional)")
    with torch.no_grad():
        for net, key in ((G, "G"), (G_ema, "G_ema")):
            _copy_into(net, state[key], _generator_rule(source.generator.z_dim))
        _copy_into(D, state["D"], _discriminator_rule(D))


def _copy_into(net: torch.nn.Module, src: Mapping[str, torch.Tensor], adapt) -> None:
    """Copy every same-shaped tensor; `adapt(key, src, dst)` handles the conditioning layers."""
    dst = net.state_dict()
    unknown = sorted(set(src) - set(dst))
    if unknown:
        raise InvalidInputError(f"warm-start checkpoint has tensors this network lacks: {', '.join(unknown[:3])}")
    for key, target in dst.items():
        value = src.get(key)
        if value is not None and value.shape == target.shape:
            target.copy_(value)
        else:
            adapt(key, value, target)


def _generator_rule(z_dim: int):
    def adapt(key: str, value: torch.Tensor | None, target: torch.Tensor) -> None:
        if key.startswith("mapping.embed."):
            return  # new label embedding: keep its fresh initialisation
        if key == "mapping.fc0.weight" and value is not None and value.shape[1] == z_dim:
            # Same product (weight * gain) for the z inputs; the label inputs keep their fresh init.
            target[:, :z_dim] = value * math.sqrt(target.shape[1] / z_dim)
            return
        raise InvalidInputError(f"warm start: generator tensor {key} does not fit "
                                f"({None if value is None else list(value.shape)} vs {list(target.shape)})")
    return adapt


def _discriminator_rule(D: torch.nn.Module):
    cmap_dim = getattr(D, "cmap_dim", 0)

    def adapt(key: str, value: torch.Tensor | None, target: torch.Tensor) -> None:
        if key in ("out.weight", "out.bias") and value is not None and value.shape[0] == 1:
            target[0] = value[0]  # row 0 carries the source's logit; other rows keep their init
            return
        if key == "embed.weight":
            target.zero_()
            return
        if key == "embed.bias":
            target.zero_()
            target[0] = math.sqrt(cmap_dim)  # projection onto row 0, undoing the 1/sqrt(cmap_dim)
            return
        raise InvalidInputError(f"warm start: discriminator tensor {key} does not fit "
                                f"({None if value is None else list(value.shape)} vs {list(target.shape)})")
    return adapt
