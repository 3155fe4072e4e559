"""Fitting latent descriptor predictors: fit_descriptor_model (from a generator) and fit_from_latents.

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

`fit_descriptor_model` samples the generator (`cfattack.attribution.sampling`), measures the
descriptors on its images and hands the latents and values to `fit_from_latents`; the result
is a `cfattack.attribution.predictors.LatentDescriptorModel`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from cfattack.attribution.mlp import _fit_mlp, _mlp_forward
from cfattack.attribution.predictors import LatentDescriptorModel, PredictorFit, _features, _plain, _shape_text
from cfattack.attribution.regression import _fit_logistic, _fit_ridge, _r2
from cfattack.attribution.sampling import (
    _jittered,
    _shifted,
    descriptor_values,
    generator_fingerprint,
    sample_latents,
)
from cfattack.errors import InvalidInputError

__all__ = ["fit_descriptor_model", "fit_from_latents"]

_VAL_SHARE = 0.2                                       # share of the fitting part that picks the penalty
_MAX_UNDEFINED = 0.1                                   # drop a descriptor NaN on more than this share
_MIN_SAMPLES = 20


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
            pixels in x and y through ws entry 0 (`cfattack.stylegan.translation.translate_ws`). A
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
    values = descriptor_values(G, ws, chosen, batch=batch, progress=progress)
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
