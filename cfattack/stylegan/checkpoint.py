"""Our own generator checkpoint format: weights and plain kwargs, read without unpickling code.

Generators we train are saved in a format separate from NVIDIA's pickles, and simpler: a
``torch.save`` zip of plain types (``format``, ``class``, ``init_kwargs``, ``state_dict``,
``extra``), readable with ``torch.load(weights_only=True)``. We read it back with
`cfattack.torch_zip.read_torch_zip`, which checks every declared size before allocating (and
`cfattack.stylegan.generator_build` checks the kwargs against the weights). The ``format``
string (`CHECKPOINT_FORMAT`) names the layout and never changes for existing files.

Example::

    from cfattack.stylegan.checkpoint import load_generator_checkpoint, save_generator_checkpoint
    save_generator_checkpoint(G, "G.pt", extra={"step": 1200})
    G = load_generator_checkpoint("G.pt")                       # our Generator, eval, no grad
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cfattack.atomic import atomic_write
from cfattack.bounded_pickle import FormatError, network_bytes_limit, plain_copy
from cfattack.errors import InvalidInputError, NetworkLoadError
from cfattack.stylegan.file_access import _MAX_DEPTH, _ZIP_MAGIC, _source_name, read_head
from cfattack.stylegan.generator import Generator
from cfattack.stylegan.generator_build import _as_device, _build_generator
from cfattack.torch_zip import read_torch_zip

__all__ = [
    "CHECKPOINT_FORMAT",
    "load_generator_checkpoint",
    "read_generator_checkpoint",
    "save_generator_checkpoint",
]

CHECKPOINT_FORMAT = "cfattack.generator/1"
"""Value of the ``format`` entry of a checkpoint written by `save_generator_checkpoint`."""


def _check_plain(value: Any, what: str, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidInputError(f"{what} is nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{what} has a non-string key {key!r}")
            _check_plain(item, f"{what}[{key!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{what}[{i}]", depth + 1)
        return
    raise InvalidInputError(
        f"{what} holds a {type(value).__name__}; only None, bool, int, float, str, list, tuple and dict are allowed"
    )


def _plain_copy(value: Any) -> Any:
    """Deep copy of a checked plain value with dict subclasses turned into dicts."""
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain_copy(v) for v in value)
    return value


def save_generator_checkpoint(G: Generator, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write G to ``path`` atomically as a cfattack checkpoint (a ``torch.save`` zip).

    The file holds ``{"format": "cfattack.generator/1", "class": "Generator", "init_kwargs",
    "state_dict", "extra"}`` with plain types and CPU tensors only, so `load_generator_checkpoint`
    can read it with ``torch.load(weights_only=True)``. It is written to a temporary file in the
    same folder and renamed over ``path``: a crash leaves the previous file intact.

    Args:
        G: our `cfattack.stylegan.generator.Generator`.
        path: destination file (its folder must exist).
        extra: optional plain metadata (str keys; None/bool/int/float/str/list/tuple/dict values),
            e.g. training step and metrics.

    Returns:
        ``path`` as a Path.
    """

    if not isinstance(G, Generator):
        raise InvalidInputError(f"G must be a cfattack.stylegan.generator.Generator, got {type(G).__name__}")
    init_kwargs = G.init_kwargs
    _check_plain(init_kwargs, "G.init_kwargs")
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise InvalidInputError(f"extra must be a dict or None, got {type(extra).__name__}")
    _check_plain(extra, "extra")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "class": "Generator",
        "init_kwargs": _plain_copy(init_kwargs),
        "state_dict": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in G.state_dict().items()},
        "extra": _plain_copy(extra),
    }

    path = Path(path)
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: folder {path.parent} does not exist")
    atomic_write(path, lambda f: torch.save(payload, f), make_parents=False)
    return path


def read_generator_checkpoint(path: str | os.PathLike, *, max_bytes: int | None = None) -> dict[str, Any]:
    """The validated contents of a cfattack checkpoint, without building the network.

    Args:
        path: the checkpoint.
        max_bytes: limit on the bytes of its tensors (default
            `cfattack.bounded_pickle.MAX_NETWORK_BYTES` or ``$CFATTACK_MAX_NETWORK_BYTES``).

    Returns:
        ``{"format", "class", "init_kwargs", "state_dict", "extra"}`` (CPU tensors).
    """
    source, head = read_head(path)
    if head != _ZIP_MAGIC:
        raise NetworkLoadError(f"{source}: not a cfattack generator checkpoint (not a zip archive)")
    data = read_torch_zip(path, source, what="cfattack checkpoint", max_bytes=max_bytes)

    def fail(problem: str) -> NetworkLoadError:
        return NetworkLoadError(f"{source}: not a cfattack generator checkpoint: {problem}")

    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise fail(f"expected format {CHECKPOINT_FORMAT!r}, found {found!r:.60}")
    if data.get("class") != "Generator":
        raise fail(f"unsupported class {data.get('class')!r:.60}")
    init_kwargs, state_dict, extra = data.get("init_kwargs"), data.get("state_dict"), data.get("extra", {})
    if not isinstance(init_kwargs, dict) or not isinstance(extra, dict):
        raise fail("init_kwargs and extra must be dicts")
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise fail("state_dict must map names to tensors")
    try:
        # Copies with a value budget: shared references in the file cannot expand here.
        init_kwargs = plain_copy(init_kwargs, "init_kwargs", max_depth=_MAX_DEPTH)
        extra = plain_copy(extra, "extra", max_depth=_MAX_DEPTH)
    except FormatError as exc:
        raise fail(str(exc)) from exc
    return {"format": CHECKPOINT_FORMAT, "class": "Generator", "init_kwargs": init_kwargs,
            "state_dict": dict(state_dict), "extra": extra}


def load_generator_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, max_bytes: int | None = None
) -> Generator:
    """Our Generator from a checkpoint written by `save_generator_checkpoint`.

    Returns a Generator in eval mode with ``requires_grad`` off, on ``device``. Use
    `read_generator_checkpoint` for the ``extra`` metadata. ``max_bytes`` raises or lowers the
    limit on the file's tensors (see `read_generator_checkpoint`).
    """
    device = _as_device(device)
    limit = network_bytes_limit(max_bytes)
    data = read_generator_checkpoint(path, max_bytes=limit)
    return _build_generator(data["init_kwargs"], data["state_dict"], "the generator", _source_name(path), device, limit)
