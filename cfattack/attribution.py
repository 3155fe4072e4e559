"""Latent descriptor predictors h_k(ws) and the per-image descriptor rankings built from them.

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

``measured_changes`` is the exact but slower alternative: it computes the descriptors on the
two decoded images. Command line: ``cfattack train descriptors --bundle default --out FILE``.

How a model is fitted (`fit_from_latents`): features are the flattened ws (W+: ``num_ws *
w_dim`` values; W: the mean over layers), standardised with the fitting part's statistics. A
``holdout`` share of the samples is kept aside for the reported score; of the rest, 20 % picks
the regularisation strength (a log grid, closed-form ridge through one SVD per split; L-BFGS
for logistic regression), then the predictor is refitted on all of the rest. The score is the
held-out R^2 (ridge) or accuracy (logistic); a predictor is ``reliable`` when its R^2, or for
logistic regression its accuracy gain over always answering the majority class as a share of
what is possible, ``(accuracy - majority) / (1 - majority)``, reaches ``min_score``. Unreliable
predictors are kept but left out of rankings unless asked for. Descriptors that are constant
or mostly undefined (NaN) on the samples are dropped, with the reason recorded in ``dropped``.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError

from cfattack.atomic import atomic_torch_save
from cfattack.config import FrozenConfig
from cfattack.errors import InvalidInputError, NetworkLoadError

__all__ = [
    "DESCRIPTOR_MODEL_FORMAT",
    "DescriptorChange",
    "PredictorFit",
    "LatentDescriptorModel",
    "load_descriptor_model",
    "fit_descriptor_model",
    "fit_from_latents",
    "measured_changes",
    "sample_latents",
    "generator_fingerprint",
]

DESCRIPTOR_MODEL_FORMAT = "cfattack.descriptors/1"
_KEYS = {"format", "latent", "num_ws", "w_dim", "fits", "dropped", "x_mean", "x_scale", "weight", "bias", "metadata"}
_VAL_SHARE = 0.2                                       # share of the fitting part that picks the penalty
_RIDGE_LAMBDAS = 10.0 ** np.arange(-5.0, 3.01, 0.5)    # alpha / n on standardised features
_LOGISTIC_LAMBDAS = 10.0 ** np.arange(-5.0, 0.01, 1.0)  # L2 weight on the mean log-loss
_MAX_UNDEFINED = 0.1                                   # drop a descriptor NaN on more than this share
_MIN_SAMPLES = 20


# ---------------------------------------------------------------------------------------------
# Result records.


class DescriptorChange(FrozenConfig):
    """One ranked row of an explanation: how much one descriptor changed from ws0 to ws_cf."""

    name: str = Field(description="Descriptor name, e.g. 'ink_area'.")
    unit: str = Field(description="Unit of before / after / change, e.g. 'px' or 'fraction'.")
    meaning: str = Field(description="One line saying what the descriptor measures.")
    higher_means: str = Field("", description="Short reading of a larger value, e.g. 'thicker strokes'.")
    before: float = Field(description="Value for the original (predicted or measured), in the descriptor's unit.")
    after: float = Field(description="Value for the counterfactual, in the descriptor's unit.")
    change: float = Field(description="after - before, in the descriptor's unit.")
    standardized_change: float = Field(
        description="change / the descriptor's standard deviation over generator samples (the ranking key)."
    )
    score: float | None = Field(
        description="Held-out R^2 (ridge) or accuracy (logistic) of the predictor; None for measured rows."
    )
    reliable: bool = Field(description="Whether the predictor met the quality bar (always True when measured).")
    source: Literal["predicted", "measured"] = Field(
        description="'predicted' from latents by the descriptor model, 'measured' on the decoded images."
    )


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


# ---------------------------------------------------------------------------------------------
# The model.


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


def _sorted(rows: list[DescriptorChange]) -> list[DescriptorChange]:
    return sorted(rows, key=lambda r: -abs(r.standardized_change))


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


def load_descriptor_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LatentDescriptorModel:
    """Read a model written by `LatentDescriptorModel.save` (no code from the file runs).

    Raises:
        NetworkLoadError: the file is missing, truncated or corrupt, not in the
            ``cfattack.descriptors/1`` format, or its parts do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise NetworkLoadError(f"{path}: no such descriptor model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            IndexError, zipfile.BadZipFile, OSError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NetworkLoadError(f"{path}: not a readable descriptor model ({first_line})") from None
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


_MLP_KEYS = ("w1", "b1", "w2", "b2", "w3", "b3")


def _check_mlp(mlp: Any, num_features: int, k: int) -> dict[str, torch.Tensor]:
    if not isinstance(mlp, Mapping) or set(mlp) != set(_MLP_KEYS):
        raise InvalidInputError(f"mlp must be a dict with the tensors {', '.join(_MLP_KEYS)}")
    hidden = mlp["w1"].shape[1] if isinstance(mlp["w1"], torch.Tensor) and mlp["w1"].ndim == 2 else -1
    shapes = {"w1": (num_features, hidden), "b1": (hidden,), "w2": (hidden, hidden), "b2": (hidden,),
              "w3": (hidden, k), "b3": (k,)}
    out = {}
    for key, shape in shapes.items():
        tensor = mlp[key]
        if hidden < 1 or not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            raise InvalidInputError(f"mlp {key} must have shape {list(shape)}")
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidInputError(f"mlp {key} holds NaN or infinite values")
        out[key] = tensor.detach().to(torch.float32).contiguous()
    return out


def _mlp_forward(mlp: Mapping[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Standardised features [N, F] -> standardised outputs [N, K] (two SiLU hidden layers)."""
    dtype = z.dtype
    h = torch.nn.functional.silu(z @ mlp["w1"].to(dtype) + mlp["b1"].to(dtype))
    h = torch.nn.functional.silu(h @ mlp["w2"].to(dtype) + mlp["b2"].to(dtype))
    return h @ mlp["w3"].to(dtype) + mlp["b3"].to(dtype)


def _fit_mlp(z: np.ndarray, y: np.ndarray, train: np.ndarray, *, hidden: int, epochs: int, weight_decay: float,
             seed: int) -> dict[str, torch.Tensor]:
    """Train one MLP on standardised features ``z [n, F]`` -> standardised targets ``y [n, K]`` (NaN = no target).

    Only ``train`` rows are used. AdamW (lr 1e-3), batches of 256, a fixed number of epochs,
    squared error over the defined targets. Deterministic for a given seed.
    """
    gen = torch.Generator().manual_seed(int(seed) + 2)
    x = torch.from_numpy(z[train]).float()
    t = torch.from_numpy(y[train]).float()
    mask = torch.isfinite(t)
    t = torch.where(mask, t, torch.zeros_like(t))
    num_features, k = x.shape[1], t.shape[1]

    def init(fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_in, fan_out, generator=gen) * 2 - 1) * bound
        return w.requires_grad_(True), torch.zeros(fan_out, requires_grad=True)

    params = dict(zip(_MLP_KEYS, (*init(num_features, hidden), *init(hidden, hidden), *init(hidden, k))))
    opt = torch.optim.AdamW(list(params.values()), lr=1e-3, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 256):
                idx = order[i:i + 256]
                error = (_mlp_forward(params, x[idx]) - t[idx]).square() * mask[idx]
                loss = error.sum() / mask[idx].sum().clamp_min(1)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return {key: value.detach() for key, value in params.items()}


# ---------------------------------------------------------------------------------------------
# Measured mode.


def measured_changes(descriptors: Any, images0: Any, images_cf: Any, *,
                     std: Mapping[str, float] | None = None) -> list[list[DescriptorChange]]:
    """Descriptor changes measured on the images themselves (exact, one descriptor pass per image).

    Args:
        descriptors: a ``descriptors.DescriptorSet``.
        images0: originals ``[N, C, H, W]`` in [-1, 1] (tensor or array).
        images_cf: counterfactuals, same shape.
        std: ``{name: spread}`` used to standardise changes, normally ``model.std`` of the bundle's
            descriptor model. A descriptor without one is not standardised
            (``standardized_change == change``, in its own unit), so give ``std`` whenever you can.

    Returns:
        ``N`` lists of `DescriptorChange` rows (``source="measured"``, ``score=None``,
        ``reliable=True``) sorted by ``|standardized_change|``, largest first. Descriptors that
        are undefined (NaN) on either image of a pair are left out of that pair's list.
    """
    shape0, shape1 = getattr(images0, "shape", None), getattr(images_cf, "shape", None)
    if shape0 is None or shape1 is None or tuple(shape0) != tuple(shape1):
        raise InvalidInputError(f"images0 and images_cf must be image batches of the same shape, got "
                                f"{shape0 and list(shape0)} and {shape1 and list(shape1)}")
    std = dict(std or {})
    for name, value in std.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InvalidInputError(f"std[{name!r}] must be a positive number, got {value!r}")
    try:
        before = descriptors.compute(images0)
        after = descriptors.compute(images_cf)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    records = {d.name: d for d in descriptors}
    rows: list[list[DescriptorChange]] = []
    for i in range(int(shape0[0])):
        items = []
        for name, values0 in before.items():
            b, a = float(values0[i]), float(after[name][i])
            if not (math.isfinite(b) and math.isfinite(a)):
                continue
            d = records[name]
            items.append(DescriptorChange(
                name=name, unit=d.unit, meaning=d.meaning, higher_means=d.higher_means, before=b, after=a,
                change=a - b, standardized_change=(a - b) / float(std.get(name, 1.0)), score=None, reliable=True,
                source="measured"))
        rows.append(_sorted(items))
    return rows


# ---------------------------------------------------------------------------------------------
# Fitting.


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


def _descriptor_meta(descriptors_or_meta: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per name: unit, meaning, higher_means, group and ``binary`` (True / False / None = decide from the values)."""
    source = descriptors_or_meta
    if source is None:
        return {n: {"unit": "value", "meaning": f"attribute {n!r}", "higher_means": "", "group": "labelled",
                    "binary": None} for n in names}
    table: dict[str, dict[str, Any]] = {}
    if hasattr(source, "describe") and hasattr(source, "is_binary"):       # descriptors.LabelledAttributes
        for row in source.describe():
            table[row["name"]] = {"unit": row["unit"], "meaning": row["meaning"], "higher_means": "",
                                  "group": "labelled", "binary": row.get("kind") == "binary"}
    elif isinstance(source, Mapping):                                        # {name: {unit, meaning, ...}}
        for name, row in source.items():
            if not isinstance(row, Mapping):
                raise InvalidInputError(f"descriptor metadata for {name!r} must be a mapping, got {type(row).__name__}")
            table[str(name)] = _meta_row(str(name), row)
    elif isinstance(source, Iterable):                                       # DescriptorSet, Descriptors or dicts
        for item in source:
            if isinstance(item, Mapping):
                if "name" not in item:
                    raise InvalidInputError("each descriptor metadata row needs a 'name'")
                table[str(item["name"])] = _meta_row(str(item["name"]), item)
            elif hasattr(item, "name") and hasattr(item, "unit") and hasattr(item, "meaning"):
                # Computed descriptors are measurements: always ridge, even when a sample is all 0/1.
                table[item.name] = {"unit": item.unit, "meaning": item.meaning,
                                    "higher_means": getattr(item, "higher_means", ""),
                                    "group": getattr(item, "group", ""), "binary": False}
            else:
                raise InvalidInputError(f"cannot read descriptor metadata from a {type(item).__name__}")
    else:
        raise InvalidInputError("descriptors_or_meta must be a DescriptorSet, LabelledAttributes, a mapping "
                                f"name -> metadata, a list of metadata rows or None; got {type(source).__name__}")
    unknown = [n for n in names if n not in table]
    if unknown:
        raise InvalidInputError(f"no descriptor metadata for {', '.join(map(repr, unknown))}; "
                                f"known: {', '.join(table) or '(none)'}")
    return {n: table[n] for n in names}


def _meta_row(name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    kind = row.get("kind")
    if kind not in (None, "binary", "numeric"):
        raise InvalidInputError(f"descriptor {name!r}: kind must be 'binary' or 'numeric', got {kind!r}")
    return {"unit": str(row.get("unit", "value")), "meaning": str(row.get("meaning", f"attribute {name!r}")),
            "higher_means": str(row.get("higher_means", "")), "group": str(row.get("group", "")),
            "binary": None if kind is None else kind == "binary"}


def fit_from_latents(
    ws: torch.Tensor,
    values: Mapping[str, Any],
    descriptors_or_meta: Any = None,
    *,
    latent: Literal["w", "w+"] = "w+",
    holdout: float = 0.2,
    min_score: float = 0.5,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
    predictor: Literal["ridge", "mlp"] = "ridge",
    mlp_hidden: int = 256,
    mlp_epochs: int = 60,
    mlp_weight_decay: float = 1e-3,
) -> LatentDescriptorModel:
    """Fit one predictor per descriptor from latents and the descriptor values that go with them.

    Args:
        ws: latents ``[N, num_ws, w_dim]`` (generator samples, or inverted images).
        values: ``{name: [N] values}``, e.g. ``DescriptorSet.compute(G.synthesis(ws))`` or the columns of a
            user's attribute table (``LabelledAttributes.values(image_names)``). NaN marks an undefined value.
        descriptors_or_meta: where units and meanings come from: a ``DescriptorSet`` (every column is
            fitted by ridge regression), a ``LabelledAttributes`` (its binary columns by logistic
            regression), ``{name: {"unit", "meaning", "higher_means", "group", "kind"}}`` or a list of
            such rows with a ``"name"`` (``kind`` ``"binary"`` / ``"numeric"``; left out, a column whose
            values are all 0 or 1 is binary), or None (names only; binary decided from the values).
        latent: ``"w+"``: features are all ``num_ws * w_dim`` values; ``"w"``: their mean over layers.
        holdout: share of the samples kept aside to score the predictors, in (0, 1).
        min_score: quality bar on R^2, or on the accuracy gain over the majority rate (see module doc).
        seed: seed of the random split.
        metadata: JSON-able facts stored with the model.
        predictor: ``"ridge"`` (one linear map per numeric descriptor) or ``"mlp"`` (one small MLP
            shared by the numeric descriptors: on the 544-kimg Fashion-MNIST generator it explained
            far more of each descriptor, e.g. held-out R^2 0.95 vs 0.57 for ink area, but ranks
            worse on attacked latents; see docs/attribution.md). 0/1 columns always
            use logistic regression.
        mlp_hidden, mlp_epochs, mlp_weight_decay: the MLP's width, training length and AdamW decay.

    Returns:
        The fitted `LatentDescriptorModel` (on the CPU); ``dropped`` names what could not be fitted.
    """
    # 1. Check the inputs and build the features.
    if latent not in ("w", "w+"):
        raise InvalidInputError(f"latent must be 'w' or 'w+', got {latent!r}")
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or not ws.is_floating_point():
        raise InvalidInputError(f"ws must be a float tensor [N, num_ws, w_dim], got {_shape_text(ws)}")
    if not 0 < holdout < 1:
        raise InvalidInputError(f"holdout is a share of the samples and must lie in (0, 1), got {holdout!r}")
    if not math.isfinite(min_score):
        raise InvalidInputError(f"min_score must be a finite number, got {min_score!r}")
    if predictor not in ("ridge", "mlp"):
        raise InvalidInputError(f"predictor must be 'ridge' or 'mlp', got {predictor!r}")
    n, num_ws, w_dim = ws.shape
    if n < _MIN_SAMPLES:
        raise InvalidInputError(f"fitting needs at least {_MIN_SAMPLES} latents, got {n}")
    if not values:
        raise InvalidInputError("values is empty: give at least one descriptor column")
    columns: dict[str, np.ndarray] = {}
    for name, raw in values.items():
        column = np.asarray(raw.detach().cpu() if isinstance(raw, torch.Tensor) else raw, dtype=np.float64)
        if column.shape != (n,):
            raise InvalidInputError(f"values[{name!r}] has shape {list(column.shape)}, expected [{n}] (one per latent)")
        columns[str(name)] = column
    meta = _descriptor_meta(descriptors_or_meta, list(columns))
    x = _features(ws.detach(), latent, num_ws, w_dim).to("cpu", torch.float64).numpy()
    if not np.isfinite(x).all():
        raise InvalidInputError("ws contain NaN or infinite values")

    # 2. Split: holdout (scores) / fitting part, whose last share picks the penalty.
    order = np.random.default_rng(seed).permutation(n)
    n_hold = max(2, int(round(n * holdout)))
    hold_rows = np.zeros(n, dtype=bool)
    hold_rows[order[:n_hold]] = True
    fit_rows = ~hold_rows
    val_rows = np.zeros(n, dtype=bool)
    val_rows[order[n_hold:n_hold + max(2, int(round((n - n_hold) * _VAL_SHARE)))]] = True

    # 3. Standardise the features with the fitting part's statistics.
    x_mean = x[fit_rows].mean(axis=0)
    x_std = x[fit_rows].std(axis=0)
    x_scale = np.where(x_std > 1e-8 * max(1.0, float(x_std.max(initial=0.0))), x_std, 1.0)
    z = (x - x_mean) / x_scale

    # 4. Decide per column: drop, ridge or logistic.
    dropped: dict[str, str] = {}
    plans: dict[str, str] = {}
    for name, column in columns.items():
        finite = np.isfinite(column)
        undefined = 1.0 - finite.mean()
        usable_fit, usable_hold = finite & fit_rows, finite & hold_rows
        if undefined > _MAX_UNDEFINED:
            dropped[name] = f"undefined (NaN or infinite) on {undefined:.0%} of the samples"
            continue
        if usable_hold.sum() < 2 or (usable_fit & ~val_rows).sum() < 2 or (usable_fit & val_rows).sum() < 2:
            dropped[name] = "too few samples with a defined value"
            continue
        spread = column[usable_fit].std()
        if not spread > 1e-12 * max(1.0, abs(float(column[usable_fit].mean()))):
            dropped[name] = f"constant ({float(column[usable_fit].mean()):.6g}) on the samples"
            continue
        is01 = bool(np.isin(column[finite], (0.0, 1.0)).all())
        binary = meta[name]["binary"]
        if binary and not is01:
            raise InvalidInputError(f"attribute {name!r} is declared binary but holds values other than 0 and 1")
        if binary or (binary is None and is01):
            counts = [int((column[usable_fit & ~val_rows] == v).sum()) for v in (0.0, 1.0)]
            if min(counts) < 2:
                dropped[name] = f"too few samples of one class (0: {counts[0]}, 1: {counts[1]}) to fit"
                continue
            plans[name] = "logistic"
        else:
            plans[name] = "ridge"

    # 5. Fit. Ridge columns sharing the same defined rows share one SVD per penalty.
    results: dict[str, tuple[np.ndarray, float, float]] = {}
    groups: dict[bytes, list[str]] = {}
    for name, kind in plans.items():
        if kind == "ridge":
            groups.setdefault(np.packbits(np.isfinite(columns[name])).tobytes(), []).append(name)
    for names in groups.values():
        rows = fit_rows & np.isfinite(columns[names[0]])
        y = np.stack([columns[nm][rows] for nm in names], axis=1)
        coef, intercept, lams = _fit_ridge(z[rows], y, val_rows[rows])
        for j, nm in enumerate(names):
            results[nm] = (coef[:, j], float(intercept[j]), float(lams[j]))
    for name, kind in plans.items():
        if kind == "logistic":
            rows = fit_rows & np.isfinite(columns[name])
            results[name] = _fit_logistic(z[rows], columns[name][rows], val_rows[rows])
    mlp_weights = None
    mlp_pred: dict[str, np.ndarray] = {}
    numeric = [name for name, kind in plans.items() if kind == "ridge"]
    if predictor == "mlp" and numeric:
        targets = np.full((n, len(numeric)), np.nan)
        for j, name in enumerate(numeric):
            column = columns[name]
            fit_values = column[fit_rows & np.isfinite(column)]
            targets[:, j] = (column - fit_values.mean()) / fit_values.std()
        trained = _fit_mlp(z, targets, fit_rows, hidden=mlp_hidden, epochs=mlp_epochs,
                           weight_decay=mlp_weight_decay, seed=seed)
        with torch.no_grad():
            outputs = _mlp_forward(trained, torch.from_numpy(z).float()).double().numpy()
        for j, name in enumerate(numeric):
            column = columns[name]
            fit_values = column[fit_rows & np.isfinite(column)]
            mlp_pred[name] = outputs[:, j] * fit_values.std() + fit_values.mean()
            plans[name] = "mlp"
            results[name] = (np.zeros(z.shape[1]), 0.0, float(mlp_weight_decay))
        mlp_weights = {"numeric": numeric, **trained}

    # 6. Score on the holdout and record.
    fits: list[PredictorFit] = []
    weights, biases = [], []
    for name in columns:
        if name not in plans:
            continue
        coef, intercept, lam = results[name]
        column, kind = columns[name], plans[name]
        finite = np.isfinite(column)
        scored = {}
        for part, rows in (("holdout", hold_rows & finite), ("fit", fit_rows & finite)):
            raw = mlp_pred[name][rows] if kind == "mlp" else z[rows] @ coef + intercept
            if kind in ("ridge", "mlp"):
                scored[part] = float(_r2(column[rows][:, None], raw[:, None])[0])
            else:
                scored[part] = float(((raw > 0) == (column[rows] > 0.5)).mean())
        fit_values = column[fit_rows & finite]
        majority = None
        if kind in ("ridge", "mlp"):
            skill = scored["holdout"]
        else:
            major_class = float(fit_values.mean() >= 0.5)
            majority = float((column[hold_rows & finite] == major_class).mean())
            skill = (scored["holdout"] - majority) / (1.0 - majority) if majority < 1.0 else 0.0
        m = meta[name]
        fits.append(PredictorFit(
            name=name, unit="probability" if kind == "logistic" else m["unit"], meaning=m["meaning"],
            higher_means=m["higher_means"], group=m["group"], kind=kind, score=scored["holdout"],
            score_name="accuracy" if kind == "logistic" else "r2", skill=float(skill), majority_rate=majority,
            train_score=scored["fit"], reliable=bool(skill >= min_score), mean=float(fit_values.mean()),
            std=float(fit_values.std()), penalty=lam, num_fit=int(fit_values.size),
            num_holdout=int((hold_rows & finite).sum())))
        weights.append(coef)
        biases.append(intercept)
    if not fits:
        raise InvalidInputError("no descriptor could be fitted: " + "; ".join(f"{k}: {v}" for k, v in dropped.items()))

    info = {"num_samples": int(n), "holdout": float(holdout), "min_score": float(min_score), "seed": int(seed),
            "predictor": predictor}
    mlp = None
    if mlp_weights is not None:
        # Output j of the MLP serves fit j: place the numeric columns' outputs at their fit positions.
        order = [f.name for f in fits]
        hidden = mlp_weights["w1"].shape[1]
        w3 = torch.zeros(hidden, len(fits))
        b3 = torch.zeros(len(fits))
        for j, name in enumerate(mlp_weights["numeric"]):
            w3[:, order.index(name)] = mlp_weights["w3"][:, j]
            b3[order.index(name)] = mlp_weights["b3"][j]
        mlp = {"w1": mlp_weights["w1"], "b1": mlp_weights["b1"], "w2": mlp_weights["w2"], "b2": mlp_weights["b2"],
               "w3": w3, "b3": b3}
        info.update(mlp_hidden=int(mlp_hidden), mlp_epochs=int(mlp_epochs), mlp_weight_decay=float(mlp_weight_decay))
    return LatentDescriptorModel(
        fits, weight=torch.from_numpy(np.stack(weights, axis=1)), bias=torch.tensor(biases),
        x_mean=torch.from_numpy(x_mean), x_scale=torch.from_numpy(x_scale), latent=latent, num_ws=num_ws,
        w_dim=w_dim, dropped=dropped, metadata={**info, **_plain(dict(metadata or {}), "metadata")}, mlp=mlp)


def generator_fingerprint(G: torch.nn.Module) -> str:
    """A short hash of a generator's weights and buffers: tells whether a model was fitted on ``G``."""
    digest = hashlib.sha256()
    for key, tensor in sorted(G.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        t = t.to(torch.float32) if t.is_floating_point() else t
        digest.update(f"{key}:{t.dtype}:{list(t.shape)};".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def sample_latents(G: torch.nn.Module, num: int, *, truncation_psi: float = 1.0, style_mixing: float = 0.0,
                   seed: int = 0, device: str | torch.device | None = None) -> torch.Tensor:
    """Draw generator latents ``ws [num, num_ws, w_dim]`` reproducibly (on ``device``, default G's).

    ``z`` comes from a seeded CPU generator (the same ws on any device); conditional generators
    get uniformly drawn classes. With ``style_mixing`` > 0 that share of the samples takes the
    layers from a random cut-off on from a second latent, as in StyleGAN training, so the
    layers of W+ vary independently and a predictor can learn which layers matter.
    """
    if num < 1:
        raise InvalidInputError(f"num must be at least 1, got {num}")
    if not 0 <= style_mixing <= 1:
        raise InvalidInputError(f"style_mixing is a probability in [0, 1], got {style_mixing!r}")
    device = torch.device(device) if device is not None else next(G.parameters()).device
    rng = torch.Generator().manual_seed(int(seed))

    def mapped() -> torch.Tensor:
        z = torch.randn(num, G.z_dim, generator=rng)
        c = None
        if G.c_dim:
            c = torch.nn.functional.one_hot(torch.randint(0, G.c_dim, (num,), generator=rng), G.c_dim).float()
            c = c.to(device)
        return G.mapping(z.to(device), c, truncation_psi=truncation_psi)

    ws = mapped()
    if style_mixing > 0 and G.num_ws > 1:
        other = mapped()
        cut = torch.randint(1, G.num_ws, (num, 1), generator=rng).to(device)
        mix = (torch.rand(num, 1, generator=rng) < style_mixing).to(device)
        layer = torch.arange(G.num_ws, device=device).view(1, -1)
        ws = torch.where(((layer >= cut) & mix).unsqueeze(2), other, ws)
    return ws


def _jittered(anchors: torch.Tensor, spread: torch.Tensor, jitter: float, seed: int) -> torch.Tensor:
    """anchors + N(0, 1) * jitter * U(0, 1) * spread, drawn from a seeded CPU generator."""
    rng = torch.Generator().manual_seed(int(seed) + 1)
    scale = torch.rand(anchors.shape[0], 1, 1, generator=rng) * float(jitter)
    noise = torch.randn(anchors.shape, generator=rng)
    return anchors + (scale * noise).to(anchors) * spread.unsqueeze(0)


def _shifted(G: torch.nn.Module, ws: torch.Tensor, jitter: float, seed: int) -> torch.Tensor:
    """ws with every second item translated by N(0, jitter) pixels in x and y (seeded, CPU draws)."""
    from cfattack.translation import translate_ws

    rng = torch.Generator().manual_seed(int(seed) + 2)
    shift = torch.randn(ws.shape[0], 2, generator=rng) * float(jitter)
    shift[0::2] = 0
    out = ws.clone()
    moved = torch.arange(1, ws.shape[0], 2)
    for i in range(0, len(moved), 1024):
        rows = moved[i:i + 1024].to(ws.device)
        out[rows] = translate_ws(G, ws[rows], shift[rows.cpu()].to(ws.device))
    return out


def fit_descriptor_model(
    G: torch.nn.Module,
    descriptors: Any,
    *,
    num_samples: int = 10000,
    truncation_psi: float = 1.0,
    latent: Literal["w", "w+"] = "w+",
    seed: int = 0,
    holdout: float = 0.2,
    min_score: float = 0.5,
    batch: int = 256,
    progress: bool = False,
    style_mixing: float | None = None,
    anchor_ws: torch.Tensor | None = None,
    anchor_jitter: float = 0.5,
    predictor: Literal["ridge", "mlp"] = "ridge",
    shift_jitter: float = 0.0,
) -> LatentDescriptorModel:
    """Sample the generator, measure the descriptors on its images and fit a predictor for each.

    Args:
        G: a StyleGAN3 generator (``mapping``, ``synthesis``, ``z_dim``, ``c_dim``, ``num_ws``, ``w_dim``).
        descriptors: a ``descriptors.DescriptorSet``; those that do not apply to G's channel
            count are dropped (recorded in ``dropped``).
        num_samples: generator samples (``holdout`` of them score the predictors).
        truncation_psi: truncation of the sampled latents.
        latent: ``"w+"`` or ``"w"`` (see `fit_from_latents`); use the bundle's latent space.
        seed: seed of the latents and of the split.
        holdout, min_score: see `fit_from_latents`.
        batch: images synthesised at a time.
        progress: show a progress bar.
        style_mixing: share of samples whose layers mix two latents; default 0.5 for ``"w+"``
            (attacks and encoders move the layers apart), 0 for ``"w"``.
        anchor_ws: optional latents of inverted real images ``[M, num_ws, w_dim]`` (e.g. the
            encoder's output on training images). Explanations start from such latents, which
            lie off the mapping network's distribution, so fitting there too makes the
            predictors trustworthy where they are used: up to half of ``num_samples`` are
            these anchors, each moved by Gaussian noise of ``anchor_jitter`` x U(0, 1) x the
            per-entry spread of the generator samples (the attack's neighbourhood).
        predictor: ``"ridge"`` or ``"mlp"``; see `fit_from_latents`.
        shift_jitter: if > 0, every second sample is translated as a whole by N(0, shift_jitter)
            pixels in x and y through ws entry 0 (`cfattack.translation.translate_ws`). A
            generator of centred objects barely varies their position, so without this a
            predictor cannot tell how far an attack with ``shift_lr`` moved the object.

    Returns:
        The fitted `LatentDescriptorModel`; its metadata records the settings, the time taken
        and the generator's fingerprint (`LatentDescriptorModel.fits_generator`).
    """
    import time

    if num_samples < _MIN_SAMPLES:
        raise InvalidInputError(f"num_samples must be at least {_MIN_SAMPLES}, got {num_samples}")
    if batch < 1:
        raise InvalidInputError(f"batch must be at least 1, got {batch}")
    if latent not in ("w", "w+"):
        raise InvalidInputError(f"latent must be 'w' or 'w+', got {latent!r}")
    if not (math.isfinite(shift_jitter) and shift_jitter >= 0):
        raise InvalidInputError(f"shift_jitter must be a finite number of pixels >= 0, got {shift_jitter!r}")
    if shift_jitter > 0 and latent != "w+":
        raise InvalidInputError("shift_jitter moves ws entry 0 on its own; it needs latent 'w+'")
    mixing = (0.5 if latent == "w+" else 0.0) if style_mixing is None else float(style_mixing)
    channels = int(G.img_channels)
    applicable = [d for d in descriptors if d.applies_to(channels)]
    dropped = {d.name: f"does not apply to {channels}-channel images"
               for d in descriptors if not d.applies_to(channels)}
    if not applicable:
        raise InvalidInputError(f"none of the descriptors applies to {channels}-channel images")
    chosen = descriptors.select([d.name for d in applicable]) if dropped else descriptors

    # 1. Latents, then images -> descriptor values, one batch at a time.
    start = time.perf_counter()
    num_anchors = 0 if anchor_ws is None else min(int(anchor_ws.shape[0]), num_samples // 2)
    ws = sample_latents(G, num_samples - num_anchors, truncation_psi=truncation_psi, style_mixing=mixing, seed=seed)
    if num_anchors:
        ws = torch.cat([ws, _jittered(anchor_ws[:num_anchors].to(ws), ws.std(dim=0), anchor_jitter, seed)])
    if shift_jitter > 0:
        ws = _shifted(G, ws, shift_jitter, seed)
    parts: dict[str, list[np.ndarray]] = {d.name: [] for d in applicable}
    steps = range(0, num_samples, batch)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="descriptors", unit="batch")
    with torch.no_grad():
        for i in steps:
            images = G.synthesis(ws[i:i + batch], noise_mode="const")
            for name, v in chosen.compute(images).items():
                parts[name].append(v)
    values = {name: np.concatenate(v) for name, v in parts.items()}
    sample_seconds = time.perf_counter() - start

    # 2. Fit.
    model = fit_from_latents(
        ws.cpu(), values, chosen, latent=latent, holdout=holdout, min_score=min_score, seed=seed,
        predictor=predictor, metadata={"source": "generator samples" + (f" + {num_anchors} jittered anchors" if num_anchors else ""),
                  "num_anchors": num_anchors, "anchor_jitter": float(anchor_jitter),
                  "truncation_psi": float(truncation_psi), "style_mixing": mixing,
                  "shift_jitter": float(shift_jitter),
                  "batch": int(batch), "generator_fingerprint": generator_fingerprint(G),
                  "descriptors": [d.to_dict() for d in applicable] if hasattr(applicable[0], "to_dict") else [],
                  "sample_seconds": round(sample_seconds, 2)})
    model.dropped = {**dropped, **model.dropped}
    model.metadata["fit_seconds"] = round(time.perf_counter() - start - sample_seconds, 2)
    return model
