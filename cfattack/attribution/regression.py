"""Ridge and logistic regression with the penalty picked on a validation split, and the R^2 score.

The linear solvers behind `cfattack.attribution.fitting.fit_from_latents`: closed-form ridge
for every penalty through one SVD (``alpha / n`` on a log grid), L2-penalised logistic
regression by L-BFGS for 0/1 labels. numpy and torch only.
"""

from __future__ import annotations

import numpy as np
import torch

_RIDGE_LAMBDAS = 10.0 ** np.arange(-5.0, 3.01, 0.5)    # alpha / n on standardised features
_LOGISTIC_LAMBDAS = 10.0 ** np.arange(-5.0, 0.01, 1.0)  # L2 weight on the mean log-loss


def _ridge_path(x: np.ndarray, y: np.ndarray, lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge for every lambda through one SVD.

    Args:
        x: features ``[n, F]`` (standardised); y: targets ``[n, K]``; lambdas: ``alpha / n`` values ``[L]``.

    Returns:
        ``(coef [L, F, K], x_center [F], y_center [K])``: predictions are
        ``(x - x_center) @ coef[l] + y_center``.
    """
    x_center, y_center = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_center, full_matrices=False)
    uty = u.T @ (y - y_center)                                         # [r, K]
    n = x.shape[0]
    shrink = s[None, :] / (s[None, :] ** 2 + n * lambdas[:, None])     # [L, r]
    coef = np.einsum("rf,lr,rk->lfk", vt, shrink, uty)
    return coef, x_center, y_center


def _r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column; y, pred ``[n, K]``."""
    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - ss_res / np.maximum(ss_tot, 1e-300)


def _fit_ridge(x_fit: np.ndarray, y_fit: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge per target column with the penalty picked on ``val`` (a boolean mask of the fitting rows).

    Returns ``(coef [F, K], intercept [K], lambda [K])`` for standardised features.
    """
    tr = ~val
    coef_path, xc, yc = _ridge_path(x_fit[tr], y_fit[tr], _RIDGE_LAMBDAS)
    pred = np.einsum("nf,lfk->lnk", x_fit[val] - xc, coef_path) + yc      # [L, n_val, K]
    mse = ((pred - y_fit[val][None]) ** 2).mean(axis=1)                   # [L, K]
    best = _RIDGE_LAMBDAS[mse.argmin(axis=0)]                             # [K]
    # Refit on all fitting rows, each target with its own penalty (the SVD is shared).
    coef = np.empty((x_fit.shape[1], y_fit.shape[1]))
    intercept = np.empty(y_fit.shape[1])
    for lam in np.unique(best):
        cols = best == lam
        c, xc, yc = _ridge_path(x_fit, y_fit[:, cols], np.array([lam]))
        coef[:, cols] = c[0]
        intercept[cols] = yc - xc @ c[0]
    return coef, intercept, best


def _logistic(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-penalised logistic regression by L-BFGS: ``(w [F], b [])``, float64."""
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def _fit_logistic(x_fit: np.ndarray, y_fit: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Logistic regression of 0/1 labels with the penalty picked by validation log-loss: ``(coef [F], b, lambda)``."""
    x = torch.from_numpy(x_fit)
    y = torch.from_numpy(y_fit.astype(np.float64))
    tr, va = torch.from_numpy(~val), torch.from_numpy(val)
    losses = []
    for lam in _LOGISTIC_LAMBDAS:
        w, b = _logistic(x[tr], y[tr], float(lam))
        logits = x[va] @ w + b
        losses.append(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y[va])))
    lam = float(_LOGISTIC_LAMBDAS[int(np.argmin(losses))])
    w, b = _logistic(x, y, lam)
    return w.numpy(), float(b), lam
