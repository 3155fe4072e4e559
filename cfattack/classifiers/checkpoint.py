"""Save and load classifiers in cfattack's checkpoint format.

A checkpoint is a ``torch.save`` zip of plain types only, readable with
``torch.load(weights_only=True)``; we read it with `cfattack.torch_zip.read_torch_zip`, which
runs no code and checks every declared size before allocating. The recorded architecture is
built on the meta device first (no memory) and must need exactly the tensors the file holds
before the real network is allocated (a file declaring ``width=100000`` asks for 360 GB)::

    {"format": "cfattack.classifier/1",
     "factory": "cfattack.classifiers:build_classifier",
     "kwargs": {...},              # arguments of build_classifier
     "storage_dtype": "float32" | "float16",
     "state_dict": {...},          # CPU tensors
     "metadata": {...}}            # plain: class names, metrics, training config, ...

``half=True`` stores floating tensors as float16 (half the size); loading always returns a
float32 model. Example::

    save_classifier_checkpoint(clf, "baseline.pt", metadata={"class_names": names}, half=True)
    clf, meta = load_classifier_checkpoint("baseline.pt")
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from cfattack.classifiers.backbone import FACTORY_NAME, Classifier, build_classifier
from cfattack.atomic import atomic_write
from cfattack.bounded_pickle import FormatError, network_bytes_limit, plain_copy
from cfattack.errors import InvalidInputError, NetworkLoadError
from cfattack.torch_zip import read_torch_zip

__all__ = ["CLASSIFIER_FORMAT", "save_classifier_checkpoint", "load_classifier_checkpoint",
           "read_classifier_checkpoint"]

CLASSIFIER_FORMAT = "cfattack.classifier/1"
_KEYS = {"format", "factory", "kwargs", "storage_dtype", "state_dict", "metadata"}
_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _check_plain(value: Any, where: str) -> None:
    """Raise InvalidInputError unless ``value`` is JSON-like (what weights_only loading accepts)."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where} is {value}: only finite floats can be stored")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise InvalidInputError(f"{where} is a {type(value).__name__}; use None, bool, int, float, str, list or dict")


def _plain(value: Any) -> Any:
    """A deep copy with tuples turned into lists (as JSON would), so files hold builtins only."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_classifier_checkpoint(
    model: Classifier, path: str | os.PathLike, *, metadata: dict, half: bool = False
) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        model: a `Classifier` made by `build_classifier` (its ``factory_kwargs`` rebuild it).
        path: destination file; its folder must exist.
        metadata: plain data (str keys; None/bool/int/float/str/list/dict values), e.g.
            ``{"class_names": [...], "metrics": {...}, "training": config.model_dump(mode="json")}``.
        half: store floating tensors as float16 (loading returns float32 again).

    Returns:
        ``path`` as a Path.
    """
    if not isinstance(model, Classifier) or model.factory_kwargs is None:
        raise InvalidInputError("model must be a Classifier built by cfattack.classifiers.build_classifier")
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"metadata must be a dict, got {type(metadata).__name__}")
    _check_plain(metadata, "metadata")
    _check_plain(model.factory_kwargs, "model.factory_kwargs")
    store = torch.float16 if half else torch.float32
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu", copy=True)
        state[key] = (tensor.to(store) if tensor.is_floating_point() else tensor).contiguous()
    payload = {
        "format": CLASSIFIER_FORMAT,
        "factory": FACTORY_NAME,
        "kwargs": _plain(model.factory_kwargs),
        "storage_dtype": "float16" if half else "float32",
        "state_dict": state,
        "metadata": _plain(metadata),
    }
    path = Path(path)
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: folder {path.parent} does not exist")
    return atomic_write(path, lambda fh: torch.save(payload, fh), make_parents=False)


def read_classifier_checkpoint(path: str | os.PathLike, *, max_bytes: int | None = None) -> dict:
    """The validated raw content of a classifier checkpoint (state dict still in storage dtype).

    ``max_bytes`` limits the bytes of its tensors (default `cfattack.bounded_pickle.MAX_NETWORK_BYTES`
    or ``$CFATTACK_MAX_NETWORK_BYTES``).
    """
    path = Path(path)
    if not path.is_file():
        raise NetworkLoadError(f"{path}: no such classifier file")
    payload = read_torch_zip(path, str(path), what="classifier checkpoint", max_bytes=max_bytes)
    if not isinstance(payload, dict) or payload.get("format") != CLASSIFIER_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise NetworkLoadError(f"{path}: not a cfattack classifier checkpoint (format {found!r:.60}, "
                               f"expected {CLASSIFIER_FORMAT!r})")
    missing = _KEYS - payload.keys()
    if missing:
        raise NetworkLoadError(f"{path}: classifier checkpoint lacks {', '.join(sorted(missing))}")
    if payload["factory"] != FACTORY_NAME:
        raise NetworkLoadError(f"{path}: unknown classifier factory {payload['factory']!r:.80} "
                               f"(expected {FACTORY_NAME!r})")
    if not isinstance(payload["storage_dtype"], str) or payload["storage_dtype"] not in _STORAGE_DTYPES:
        raise NetworkLoadError(f"{path}: unknown storage dtype {payload['storage_dtype']!r:.40}")
    for key in ("kwargs", "state_dict", "metadata"):
        if not isinstance(payload[key], dict):
            raise NetworkLoadError(f"{path}: {key} must be a dict, found {type(payload[key]).__name__}")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["state_dict"].items()):
        raise NetworkLoadError(f"{path}: state_dict holds values that are not tensors")
    try:
        # Copies with a value budget: shared references in the file cannot expand here.
        kwargs, metadata = plain_copy(payload["kwargs"], "kwargs"), plain_copy(payload["metadata"], "metadata")
    except FormatError as exc:
        raise NetworkLoadError(f"{path}: refusing the classifier checkpoint: {exc}") from None
    return {**payload, "kwargs": kwargs, "metadata": metadata, "state_dict": dict(payload["state_dict"])}


def _check_fit(path: Path, kwargs: dict, state: dict[str, torch.Tensor], limit: int) -> None:
    """Build the recorded architecture on the meta device (no memory) and compare it with the weights."""
    try:
        with torch.device("meta"):
            expected = build_classifier(**kwargs).state_dict()
    except Exception as exc:  # untrusted kwargs: any failure to build means bad arguments
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NetworkLoadError(f"{path}: bad classifier arguments ({first_line:.200})") from None
    needed = sum(t.numel() for t in expected.values()) * 4
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        problems = [f"{label} {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                    for label, names in (("missing", missing), ("unexpected", unexpected),
                                         ("shape mismatch (file vs model)", wrong)) if names]
        raise NetworkLoadError(f"{path}: weights do not fit the recorded architecture ({'; '.join(problems)}; "
                               f"it would need {needed / 2**20:,.1f} MiB)")
    if needed > limit:  # only reachable with a lowered limit: the weights are already within it
        raise NetworkLoadError(f"{path}: refusing the classifier: it needs {needed / 2**20:,.1f} MiB, over the "
                               "limit (raise it with max_bytes= or CFATTACK_MAX_NETWORK_BYTES)")


def load_classifier_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, max_bytes: int | None = None
) -> tuple[Classifier, dict]:
    """Rebuild a classifier saved by `save_classifier_checkpoint`.

    Args:
        path: the checkpoint.
        device: where the classifier goes.
        max_bytes: limit on the bytes of its tensors (as float32; default 4 GiB, see
            `cfattack.bounded_pickle.MAX_NETWORK_BYTES`).

    Returns:
        ``(classifier, metadata)``: a float32 `Classifier` on ``device`` in eval mode with
        ``requires_grad`` off for its parameters (gradients still flow to its *inputs*, which
        is what attacks need; call ``.requires_grad_(True).train()`` to fine-tune it).

    Raises:
        UnsafePickleError: the file references a global outside the allow-list (nothing ran).
        NetworkLoadError: missing, truncated or corrupt file, wrong format, sizes over the
            limit, or weights that do not fit the recorded architecture (checked before the
            network is allocated).
    """
    path = Path(path)
    limit = network_bytes_limit(max_bytes)
    payload = read_classifier_checkpoint(path, max_bytes=limit)
    state = payload["state_dict"]
    _check_fit(path, payload["kwargs"], state, limit)
    try:
        model = build_classifier(**payload["kwargs"])
    except (TypeError, ValueError) as exc:
        raise NetworkLoadError(f"{path}: bad classifier arguments ({exc})") from None
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise NetworkLoadError(f"{path}: weights do not fit the recorded architecture ({first_line})") from None
    model = model.to(device).eval().requires_grad_(False)
    return model, payload["metadata"]
