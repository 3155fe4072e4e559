"""Latent descriptor predictors h_k(ws): LatentDescriptorModel and its file format ``cfattack.descriptors/1``.

The Counterfactual Attack explains a latent move ``ws0 -> ws_cf`` by the named descriptors that
changed most. Rather than decoding both latents and measuring the images, it fits one cheap
predictor per descriptor on latents (a ridge regression or a small MLP shared by the numeric
descriptors, or a logistic regression for 0/1 labels) and reads the attribution as ``h_k(ws_cf) - h_k(ws0)``, standardised by the
descriptor's spread over generator samples. No extra image passes are needed at explanation
time, and prediction needs nothing but torch::

    from cfattack.attribution import fit_descriptor_model, load_descriptor_model
    model = fit_descriptor_model(G, default_descriptors(channels=1), num_samples=10000)
    model.save("descriptors.pt")                      # format cfattack.descriptors/1
    model = load_descriptor_model("descriptors.pt")
    values = model.predict(ws)                        # ws [N, num_ws, w_dim] -> [N, K], differentiable
    rows = model.rank(ws0, ws_cf)                     # per item: DescriptorChange rows, largest first

This module holds the fitted model (prediction, ranking, save) and the reader of its files;
fitting lives in `cfattack.attribution.fitting` (how a model is fitted is described there),
the exact but slower alternative in `cfattack.attribution.measured`. Command line:
``cfattack train descriptors --bundle default --out FILE``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError

from cfattack.atomic import atomic_torch_save
from cfattack.attribution.changes import DescriptorChange, _sorted
from cfattack.attribution.mlp import _check_mlp, _mlp_forward
from cfattack.attribution.sampling import generator_fingerprint
from cfattack.config import FrozenConfig
from cfattack.bounded_pickle import FormatError, plain_copy
from cfattack.errors import InvalidInputError, NetworkLoadError
from cfattack.torch_zip import read_torch_zip

__all__ = [
    "DESCRIPTOR_MODEL_FORMAT",
    "PredictorFit",
    "LatentDescriptorModel",
    "load_descriptor_model",
]

DESCRIPTOR_MODEL_FORMAT = "cfattack.descriptors/1"
_KEYS = {"format", "latent", "num_ws", "w_dim", "fits", "dropped", "x_mean", "x_scale", "weight", "bias", "metadata"}


class PredictorFit(FrozenConfig):
    """What was fitted for one descriptor, and how well it predicts held-out samples."""

    name: str = Field(description="Descriptor (or labelled attribute) name.")
    unit: str = Field(description="Unit of the predicted values (a probability for logistic predictors).")
    meaning: str = Field(description="One line saying what the descriptor measures.")
    higher_means: str = Field("", description="Short reading of a larger value.")
    group: str = Field("", description="Descriptor group: shape, tone, texture, colour or labelled.")
    kind: Literal["ridge", "mlp", "logistic"] = Field(
        description="Ridge regression, a small MLP shared by the numeric descriptors, or logistic regression for 0/1 labels."
    )
    score: float = Field(description="Held-out R^2 (ridge, mlp) or held-out accuracy (logistic).")
    score_name: Literal["r2", "accuracy"] = Field(description="What score is.")
    skill: float = Field(
        description="The value compared with min_score: R^2 for ridge; (accuracy - majority) / (1 - majority) "
        "for logistic."
    )
    majority_rate: float | None = Field(
        None, description="Held-out accuracy of always answering the fitting part's majority class (logistic only)."
    )
    train_score: float = Field(description="The same score on the fitting part (compare with score for overfitting).")
    reliable: bool = Field(description="skill >= min_score; rankings leave unreliable predictors out by default.")
    mean: float = Field(description="Mean of the descriptor over the fitting samples.")
    std: float = Field(gt=0, description="Standard deviation over the fitting samples; standardises changes.")
    penalty: float = Field(ge=0, description="L2 penalty: ridge alpha / n, logistic lambda, or the MLP's weight decay.")
    num_fit: int = Field(ge=1, description="Samples the final predictor was fitted on.")
    num_holdout: int = Field(ge=1, description="Held-out samples the score was measured on.")


def _features(ws: torch.Tensor, latent: str, num_ws: int, w_dim: int) -> torch.Tensor:
    """ws [N, num_ws, w_dim] (or [N, w_dim] for latent 'w') -> features [N, F]."""
    if not isinstance(ws, torch.Tensor):
        raise InvalidInputError(f"ws must be a torch tensor, got {type(ws).__name__}")
    if not ws.is_floating_point():
        raise InvalidInputError(f"ws must be floating point, got {ws.dtype}")
    if latent == "w" and ws.ndim == 2 and ws.shape[1] == w_dim:
        return ws
    if ws.ndim != 3 or tuple(ws.shape[1:]) != (num_ws, w_dim):
        raise InvalidInputError(f"ws must have shape [N, {num_ws}, {w_dim}] (num_ws, w_dim of the generator the "
                                f"descriptor model was fitted for), got {list(ws.shape)}")
    # W: one w per image; averaging also accepts W+ latents whose layers differ (e.g. from an encoder).
    return ws.mean(dim=1) if latent == "w" else ws.reshape(ws.shape[0], num_ws * w_dim)


class LatentDescriptorModel:
    """Fitted predictors ``h_k(ws)`` of K descriptors: linear maps of the (standardised) latent.

    Attributes:
        names: the K descriptor names, in output order.
        fits: one `PredictorFit` per name (kind, held-out score, reliability, mean, std, ...).
        latent: ``"w+"`` (features: all ``num_ws * w_dim`` values) or ``"w"`` (the mean over layers).
        num_ws, w_dim: the generator's latent shape.
        dropped: ``{name: reason}`` for descriptors that could not be fitted (constant, undefined).
        metadata: JSON-able facts about the fit (sampling settings, generator fingerprint, timing).

    Prediction is ``z @ weight + bias`` with ``z = (features - x_mean) / x_scale``, a sigmoid on
    logistic columns; ``mlp`` columns instead read ``mlp(z) * std + mean`` from one small MLP
    shared by them (``mlp``: tensors ``w1 [F, H], b1 [H], w2 [H, H], b2 [H], w3 [H, K], b3 [K]``,
    SiLU between layers). All tensors are float32 and live on one device (`to`).
    """

    def __init__(self, fits: Sequence[PredictorFit], *, weight: torch.Tensor, bias: torch.Tensor,
                 x_mean: torch.Tensor, x_scale: torch.Tensor, latent: Literal["w", "w+"], num_ws: int, w_dim: int,
                 dropped: Mapping[str, str] | None = None, metadata: Mapping[str, Any] | None = None,
                 mlp: Mapping[str, torch.Tensor] | None = None) -> None:
        if latent not in ("w", "w+"):
            raise InvalidInputError(f"latent must be 'w' or 'w+', got {latent!r}")
        num_ws, w_dim = int(num_ws), int(w_dim)
        if num_ws < 1 or w_dim < 1:
            raise InvalidInputError(f"num_ws and w_dim must be positive, got {num_ws}, {w_dim}")
        num_features = w_dim if latent == "w" else num_ws * w_dim
        k = len(fits)
        shapes = {"weight": (weight, (num_features, k)), "bias": (bias, (k,)), "x_mean": (x_mean, (num_features,)),
                  "x_scale": (x_scale, (num_features,))}
        for what, (tensor, shape) in shapes.items():
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
                found = list(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise InvalidInputError(f"{what} must be a tensor of shape {list(shape)}, got {found}")
            if not bool(torch.isfinite(tensor).all()):
                raise InvalidInputError(f"{what} holds NaN or infinite values")
        if bool((x_scale <= 0).any()):
            raise InvalidInputError("x_scale must be positive")
        self.mlp = _check_mlp(mlp, num_features, k) if mlp is not None else None
        if self.mlp is None and any(f.kind == "mlp" for f in fits):
            raise InvalidInputError("fits of kind 'mlp' need the mlp weights")
        names = [f.name for f in fits]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"descriptor names must be unique, got {names}")
        self.fits: list[PredictorFit] = list(fits)
        self.names: list[str] = names
        self.latent: Literal["w", "w+"] = latent
        self.num_ws, self.w_dim = num_ws, w_dim
        self.dropped: dict[str, str] = dict(dropped or {})
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.weight = weight.detach().to(torch.float32).contiguous()
        self.bias = bias.detach().to(torch.float32).contiguous()
        self.x_mean = x_mean.detach().to(torch.float32).contiguous()
        self.x_scale = x_scale.detach().to(torch.float32).contiguous()
        self._logistic = torch.tensor([f.kind == "logistic" for f in self.fits], dtype=torch.bool,
                                      device=self.weight.device)
        self._is_mlp = torch.tensor([f.kind == "mlp" for f in self.fits], dtype=torch.bool, device=self.weight.device)
        self._y_mean = torch.tensor([f.mean for f in self.fits], dtype=torch.float32, device=self.weight.device)
        self._y_std = torch.tensor([f.std for f in self.fits], dtype=torch.float32, device=self.weight.device)
        self._index = {n: i for i, n in enumerate(names)}

    # -- properties -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        reliable = sum(f.reliable for f in self.fits)
        return (f"LatentDescriptorModel({len(self)} predictors, {reliable} reliable, latent={self.latent!r}, "
                f"num_ws={self.num_ws}, w_dim={self.w_dim})")

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def std(self) -> dict[str, float]:
        """``{name: standard deviation over generator samples}``: pass it to `measured_changes`."""
        return {f.name: f.std for f in self.fits}

    @property
    def reliable_names(self) -> list[str]:
        """Names of the predictors that met the quality bar."""
        return [f.name for f in self.fits if f.reliable]

    @property
    def generator_fingerprint(self) -> str | None:
        """`generator_fingerprint` of the generator the model was fitted on (None if unknown)."""
        value = self.metadata.get("generator_fingerprint")
        return value if isinstance(value, str) else None

    def fit_of(self, name: str) -> PredictorFit:
        """The `PredictorFit` of one descriptor; `InvalidInputError` listing the names if unknown."""
        if name not in self._index:
            extra = f" (dropped when fitting: {self.dropped[name]})" if name in self.dropped else ""
            raise InvalidInputError(f"the descriptor model has no predictor {name!r}{extra}; "
                                    f"it has: {', '.join(self.names) or '(none)'}")
        return self.fits[self._index[name]]

    def fits_generator(self, G: torch.nn.Module) -> bool:
        """Whether ``G`` is the generator the model was fitted on (same weights; False if unknown)."""
        return self.generator_fingerprint is not None and self.generator_fingerprint == generator_fingerprint(G)

    def describe(self) -> list[dict[str, Any]]:
        """JSON-ready table: one row per predictor (`PredictorFit` fields)."""
        return [f.model_dump() for f in self.fits]

    # -- the verbs ------------------------------------------------------------------------------

    def to(self, device: str | torch.device) -> "LatentDescriptorModel":
        """Move the weights to ``device`` (in place) and return the model."""
        for attr in ("weight", "bias", "x_mean", "x_scale", "_logistic", "_is_mlp", "_y_mean", "_y_std"):
            setattr(self, attr, getattr(self, attr).to(device))
        if self.mlp is not None:
            self.mlp = {key: value.to(device) for key, value in self.mlp.items()}
        return self

    def predict(self, ws: torch.Tensor) -> torch.Tensor:
        """Predicted descriptor values.

        Args:
            ws: latents ``[N, num_ws, w_dim]`` (for a ``"w"`` model also ``[N, w_dim]``), float,
                on the model's device. Gradients flow back to ``ws``.

        Returns:
            ``[N, K]`` in ``names`` order, in each descriptor's unit (a probability in [0, 1] for
            logistic predictors), in ``ws``'s dtype (float32 for half-precision input).
        """
        x = _features(ws, self.latent, self.num_ws, self.w_dim)
        dtype = ws.dtype if ws.dtype in (torch.float32, torch.float64) else torch.float32
        z = (x.to(dtype) - self.x_mean.to(dtype)) / self.x_scale.to(dtype)
        out = z @ self.weight.to(dtype) + self.bias.to(dtype)
        out = torch.where(self._logistic, torch.sigmoid(out), out)
        if self.mlp is not None:
            scaled = _mlp_forward(self.mlp, z) * self._y_std.to(dtype) + self._y_mean.to(dtype)
            out = torch.where(self._is_mlp, scaled, out)
        return out

    def rank(self, ws0: torch.Tensor, ws_cf: torch.Tensor, *,
             include_unreliable: bool = False) -> list[list[DescriptorChange]]:
        """Per item, the descriptors sorted by ``|standardized_change|``, largest first.

        Args:
            ws0: original latents ``[N, num_ws, w_dim]``.
            ws_cf: counterfactual latents, same shape.
            include_unreliable: also list predictors below the quality bar (``reliable=False``).

        Returns:
            ``N`` lists of `DescriptorChange` rows with ``source="predicted"``.
        """
        if not isinstance(ws0, torch.Tensor) or not isinstance(ws_cf, torch.Tensor) or ws0.shape != ws_cf.shape:
            raise InvalidInputError("ws0 and ws_cf must be tensors of the same shape, got "
                                    f"{_shape_text(ws0)} and {_shape_text(ws_cf)}")
        with torch.no_grad():
            before = self.predict(ws0).to("cpu", torch.float64).numpy()
            after = self.predict(ws_cf).to("cpu", torch.float64).numpy()
        keep = [i for i, f in enumerate(self.fits) if f.reliable or include_unreliable]
        rows = []
        for b, a in zip(before, after):
            items = [DescriptorChange(
                name=f.name, unit=f.unit, meaning=f.meaning, higher_means=f.higher_means,
                before=float(b[i]), after=float(a[i]), change=float(a[i] - b[i]),
                standardized_change=float((a[i] - b[i]) / f.std), score=f.score, reliable=f.reliable,
                source="predicted",
            ) for i, f in ((i, self.fits[i]) for i in keep)]
            rows.append(_sorted(items))
        return rows

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model atomically in the ``cfattack.descriptors/1`` format; returns the path.

        The file is a ``torch.save`` zip of plain types and float32 CPU tensors, readable with
        ``torch.load(weights_only=True)``.
        """
        payload = {
            "format": DESCRIPTOR_MODEL_FORMAT,
            "latent": self.latent, "num_ws": self.num_ws, "w_dim": self.w_dim,
            "fits": [f.model_dump(mode="json") for f in self.fits],
            "dropped": dict(self.dropped),
            "x_mean": self.x_mean.cpu().clone(), "x_scale": self.x_scale.cpu().clone(),
            "weight": self.weight.cpu().clone(), "bias": self.bias.cpu().clone(),
            "metadata": _plain(self.metadata, "metadata"),
            "mlp": None if self.mlp is None else {k: v.cpu().clone() for k, v in self.mlp.items()},
        }
        return atomic_torch_save(payload, path)


def _shape_text(x: object) -> str:
    return str(list(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def _plain(value: Any, where: str) -> Any:
    """A JSON-like copy of ``value`` (what weights_only loading accepts); numpy scalars become Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where} is {value}: only finite numbers can be stored")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{where} has a non-string key {key!r}")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    raise InvalidInputError(f"{where} holds a {type(value).__name__}; only JSON-like values can be stored")


def load_descriptor_model(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                          max_bytes: int | None = None) -> LatentDescriptorModel:
    """Read a model written by `LatentDescriptorModel.save` (no code from the file runs).

    ``max_bytes`` limits the bytes of its tensors (default `cfattack.bounded_pickle.MAX_NETWORK_BYTES`
    or ``$CFATTACK_MAX_NETWORK_BYTES``).

    Raises:
        NetworkLoadError: the file is missing, truncated or corrupt, not in the
            ``cfattack.descriptors/1`` format, or its parts do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise NetworkLoadError(f"{path}: no such descriptor model file")
    # Read on a budget (no code runs; sizes are checked before allocating), not with torch.load.
    payload = read_torch_zip(path, str(path), what="descriptor model", max_bytes=max_bytes)
    if not isinstance(payload, dict) or payload.get("format") != DESCRIPTOR_MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise NetworkLoadError(f"{path}: not a cfattack descriptor model (format {found!r}, "
                               f"expected {DESCRIPTOR_MODEL_FORMAT!r})")
    missing = _KEYS - payload.keys()
    if missing:
        raise NetworkLoadError(f"{path}: descriptor model lacks {', '.join(sorted(missing))}")
    if not isinstance(payload["fits"], list) or not isinstance(payload["dropped"], dict) \
            or not isinstance(payload["metadata"], dict):
        raise NetworkLoadError(f"{path}: descriptor model has malformed fits, dropped or metadata")
    try:  # copies with a value budget: shared references in the file cannot expand here
        payload = {**payload, **{key: plain_copy(payload[key], key) for key in ("fits", "dropped", "metadata")}}
    except FormatError as exc:
        raise NetworkLoadError(f"{path}: refusing the descriptor model: {exc}") from None
    try:
        fits = [PredictorFit.model_validate(f) for f in payload["fits"]]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise NetworkLoadError(f"{path}: bad predictor record ({'.'.join(map(str, first['loc']))}: "
                               f"{first['msg']})") from None
    try:
        model = LatentDescriptorModel(
            fits, weight=payload["weight"], bias=payload["bias"], x_mean=payload["x_mean"],
            x_scale=payload["x_scale"], latent=payload["latent"], num_ws=payload["num_ws"], w_dim=payload["w_dim"],
            dropped=payload["dropped"], metadata=payload["metadata"], mlp=payload.get("mlp"))
    except (InvalidInputError, TypeError, ValueError) as exc:
        raise NetworkLoadError(f"{path}: descriptor model parts do not fit together ({exc})") from None
    return model.to(device)
