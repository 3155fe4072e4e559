"""What the attack raises and what holds it back: class probabilities, objectives, proximity term.

Pure functions of logits (or latents), kept apart from the loop so callers that only score
(the explainer, the batch runner, benchmarks) need not read the attack itself.
"""

from __future__ import annotations

from typing import Literal

import torch

from cfattack.errors import InvalidInputError

__all__ = ["class_probabilities", "objective_value", "proximity_penalty"]


def _two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """[N, 1] sigmoid logit -> [N, 2] softmax logits (0, l), since softmax([0, l])[1] = sigmoid(l)."""
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """logits [N, K] -> class probabilities [N, max(K, 2)] (one logit is read as a sigmoid)."""
    return torch.softmax(_two_class_logits(logits), dim=1)


def objective_value(
    logits: torch.Tensor, target: torch.Tensor, objective: Literal["probability", "log_probability", "margin"]
) -> torch.Tensor:
    """logits [N, K], target [N] -> the quantity the attack raises, [N].

    ``probability``: softmax p_target (the paper). ``log_probability``: log p_target, whose
    gradient does not vanish when p_target is tiny. ``margin``: target logit minus the largest
    other logit, positive exactly when the target is the predicted class.
    """
    logits = _two_class_logits(logits)
    index = target[:, None]
    if objective == "probability":
        return torch.softmax(logits, dim=1).gather(1, index).squeeze(1)
    if objective == "log_probability":
        return torch.log_softmax(logits, dim=1).gather(1, index).squeeze(1)
    if objective == "margin":
        others = logits.scatter(1, index, float("-inf"))
        return logits.gather(1, index).squeeze(1) - others.amax(dim=1)
    raise InvalidInputError(f"objective must be probability, log_probability or margin, got {objective!r}")


def proximity_penalty(x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """x, x0 [N, ...] -> mean over all non-batch dimensions of (x - x0)^2, [N]."""
    return (x - x0).square().flatten(1).mean(dim=1)
