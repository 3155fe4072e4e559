"""Update rules of the attack (plain SGD, normalised steps, Adam) and the gradient they read.

Stateless tensor functions: each takes the gradient of the moving rows and returns the amount
to subtract; Adam's moments are passed in and out, so the loop owns all state.
"""

from __future__ import annotations

import torch

__all__ = ["sgd_update", "normalized_update", "adam_update"]

_ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which the paper used.
_ADAM_EPS = 1e-8


def _per_item(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[N] -> [N, 1, ..., 1], broadcastable against ``like`` [N, ...]."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def sgd_update(grad: torch.Tensor, lr: float) -> torch.Tensor:
    """Plain gradient step: the amount to subtract, lr * grad."""
    return lr * grad


def normalized_update(grad: torch.Tensor, lr: float) -> torch.Tensor:
    """Step of length lr along each item's gradient direction (grad [N, ...])."""
    norm = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
    return lr * grad / _per_item(norm, grad)


def adam_update(
    grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, lr: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Adam step (Kingma & Ba) -> (amount to subtract, new m, new v); ``step`` counts from 1."""
    beta1, beta2 = _ADAM_BETAS
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad.square()
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    return lr * m_hat / (v_hat.sqrt() + _ADAM_EPS), m, v


def _moments(like: torch.Tensor, optimizer: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Adam's zeroed (m, v) for a variable shaped like ``like``; None for the stateless rules."""
    return (torch.zeros_like(like), torch.zeros_like(like)) if optimizer == "adam" else None


def _gradient(total: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d total / d x; zeros where total does not depend on x (a classifier that ignores its input)."""
    if not total.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(total, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def _all_per_item(mask: torch.Tensor) -> torch.Tensor:
    """[N, ...] bool -> [N]: true where every element of the item is true."""
    return mask.flatten(1).all(dim=1)
