"""The labelled-attribute route: latent predictors of a user's image labels, fitted on the images' inversions.

Computed descriptors cover what a formula can measure; attributes such as "smiling" or
"eyeglasses" need labels. As the Counterfactual Attacks paper does with CelebA's attributes,
a user labels real images (a CSV read by `descriptors.LabelledAttributes`), inverts them into
the generator's latent space (`cfattack.inversion`, done by the caller: this package sits
beside inversion, not above it), and fits one predictor per attribute on those latents:
logistic regression for 0/1 labels, ridge for numbers, with held-out scores. The result is an
ordinary `LatentDescriptorModel` (file format ``cfattack.descriptors/1``), so an explanation
ranks "smiling +2.1 sd" exactly as it ranks computed descriptors::

    attrs = LabelledAttributes.from_csv("attributes.csv")            # image,Smiling,Eyeglasses
    ws = inverter.invert(images).ws                                   # [N, num_ws, w_dim]
    model = fit_labelled_predictors(ws, attrs, image_names=names, generator=G)
    model.save("labels.pt")                                           # a bundle's descriptor_model
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from cfattack.attribution.fitting import fit_from_latents
from cfattack.attribution.predictors import LatentDescriptorModel, _shape_text
from cfattack.attribution.sampling import generator_fingerprint
from cfattack.errors import InvalidInputError

__all__ = ["fit_labelled_predictors"]


def _as_attributes(labels: Any, image_names: Sequence[str] | None, n: int) -> tuple[Any, dict[str, np.ndarray]]:
    """(the LabelledAttributes that describe the columns, {name: float64 [n]} in the order of ws)."""
    from descriptors import LabelledAttributes

    try:
        if isinstance(labels, LabelledAttributes):
            if image_names is None:
                raise InvalidInputError("labels is a LabelledAttributes table: pass image_names, the image of each "
                                        "row of ws, to pick its labels")
            attrs = labels
        elif isinstance(labels, Mapping):
            if image_names is not None and len(image_names) != n:
                raise InvalidInputError(f"image_names has {len(image_names)} names for {n} latents")
            rows = [str(i) for i in range(n)]
            # The table normalises CelebA's -1 / 1 labels to 0 / 1 and checks every column's length.
            attrs = LabelledAttributes(rows, {str(k): _column(v) for k, v in labels.items()}, source="labels")
            image_names = rows
        else:
            raise InvalidInputError("labels must be a LabelledAttributes table or a mapping {attribute: [N] values}, "
                                    f"got {type(labels).__name__}")
        if isinstance(image_names, str) or len(image_names) != n:
            raise InvalidInputError(f"image_names must list one image per latent ({n}), "
                                    f"got {1 if isinstance(image_names, str) else len(image_names)}")
        return attrs, attrs.values([str(s) for s in image_names])
    except ValueError as exc:            # the table's own errors name the file, column and images
        raise InvalidInputError(str(exc)) from None


def _column(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def fit_labelled_predictors(
    ws: torch.Tensor,
    labels: Any,
    *,
    image_names: Sequence[str] | None = None,
    generator: torch.nn.Module | None = None,
    latent: Literal["w", "w+"] = "w+",
    holdout: float = 0.2,
    min_score: float = 0.5,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> LatentDescriptorModel:
    """Fit one latent predictor per labelled attribute on the inversions of the labelled images.

    Args:
        ws: the inverted latents of the labelled images ``[N, num_ws, w_dim]`` (an encoder's
            output, or better `Inverter.invert(...).ws`), in the generator's latent space.
        labels: ``{attribute: [N] values}`` in the order of ``ws`` (0/1 or CelebA's -1/1 labels
            become logistic predictors, other numbers ridge), or a `descriptors.LabelledAttributes`
            table together with ``image_names``.
        image_names: the image of each row of ``ws``, looked up in a LabelledAttributes table
            (by exact name, else by file name).
        generator: the generator ``ws`` belong to; its fingerprint is recorded so that
            `LatentDescriptorModel.fits_generator` can tell a model fitted for another one.
        latent: ``"w+"`` (all layers' entries as features) or ``"w"`` (their mean; fewer
            features, the safer choice with under a few hundred labelled images per attribute).
        holdout: share of the images kept aside to score the predictors.
        min_score: quality bar on R^2, or on the accuracy gain over the majority rate
            (`cfattack.attribution.fitting`); predictors below it are marked unreliable.
        seed: seed of the split.
        metadata: further JSON-able facts to store with the model.

    Returns:
        A `LatentDescriptorModel`: per attribute its held-out accuracy (logistic) or R^2 (ridge),
        reliability, and spread; ``save`` writes it in the ``cfattack.descriptors/1`` format.

    Raises:
        InvalidInputError: ws is not ``[N, num_ws, w_dim]``, labels do not match it in length,
            an image has no row in the table, or no attribute can be fitted.
    """
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or not ws.is_floating_point():
        raise InvalidInputError(f"ws must be a float tensor [N, num_ws, w_dim], got {_shape_text(ws)}")
    n = int(ws.shape[0])
    if generator is not None and (int(generator.num_ws), int(generator.w_dim)) != tuple(ws.shape[1:]):
        raise InvalidInputError(f"ws has shape {list(ws.shape)} but the generator's latents are "
                                f"[N, {int(generator.num_ws)}, {int(generator.w_dim)}]")
    attrs, values = _as_attributes(labels, image_names, n)
    info: dict[str, Any] = {"source": f"labelled inversions ({n} images)", "labels": repr(attrs)}
    if generator is not None:
        info["generator_fingerprint"] = generator_fingerprint(generator)
    return fit_from_latents(ws.detach().cpu(), values, attrs, latent=latent, holdout=holdout, min_score=min_score,
                            seed=seed, metadata={**info, **dict(metadata or {})})
