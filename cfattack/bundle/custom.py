"""Your own models without a bundle folder: a generator and a classifier, put together in memory.

`bundle_from_networks` makes a `Bundle` from networks already in memory (any StyleGAN3
generator cfattack reads, any ``torch.nn.Module`` or callable classifier); `load_classifier_file`
loads a classifier file of any kind cfattack reads (TorchScript, a ``torch.export`` program,
``module:factory`` plus a state dict, or a cfattack checkpoint); `class_names_in_file` reads
the class names a TorchScript or ``torch.export`` archive carries (an extra file
``class_names.json`` or ``class_names.txt``) straight from the zip, without running anything,
so the CLI can check a target before it loads any network. Such a bundle has no encoder (the
inverter searches) and no descriptor model (changes are measured and standardised by the
generator's own spread).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from cfattack.bundle.classifier import (
    BundleClassifier,
    _build_factory_classifier,
    _load_export,
    _load_torchscript,
    is_torchscript_archive,
)
from cfattack.bundle.loader import Bundle, _as_device
from cfattack.bundle.messages import _one_line
from cfattack.bundle.spec import BundleError, BundleSpec, ClassifierSpec, GeneratorSpec, ImageSpec, InputNormalization
from cfattack.errors import InvalidInputError, NetworkLoadError, UntrustedCodeError

__all__ = ["bundle_from_networks", "class_names_in_file", "classifier_file_kind", "load_classifier_file"]

_MAX_NAMES_BYTES = 1 << 20  # a class-name list larger than 1 MiB is not a class-name list
_PROBE_BATCH = 2


class _CallableNet(torch.nn.Module):
    """A plain callable (images -> logits) as a module, so it can be wrapped and moved like one."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


class _Preprocessed(torch.nn.Module):
    """``net(preprocess(images))``: a user's own preprocessing in front of their classifier."""

    def __init__(self, net: torch.nn.Module, preprocess: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self.preprocess = preprocess

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images))


def classifier_file_kind(path: Path) -> str:
    """``"torchscript"``, ``"export"`` or ``"cfattack"`` (a weights-only checkpoint), told by content."""
    if is_torchscript_archive(path):
        return "torchscript"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if any(n.endswith("/archive_format") or "/models/" in n for n in archive.namelist()):
                    return "export"
        except (zipfile.BadZipFile, OSError):
            pass
    return "cfattack"


def class_names_in_file(path: str | Path) -> list[str] | None:
    """Class names stored in a TorchScript / torch.export zip as ``extra/class_names.json`` (a JSON list)
    or ``extra/class_names.txt`` (one a line); None when the file carries none. Nothing is executed."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename.rsplit("/extra/", 1)[-1] if "/extra/" in info.filename else None
                if name not in ("class_names.json", "class_names.txt"):
                    continue
                if info.file_size > _MAX_NAMES_BYTES:
                    raise InvalidInputError(f"{path}: its {name} is larger than {_MAX_NAMES_BYTES} bytes")
                text = archive.read(info).decode("utf-8")
                names = json.loads(text) if name.endswith(".json") else [t.strip() for t in text.splitlines()
                                                                          if t.strip()]
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise InvalidInputError(f"{path}: {name} must hold a list of class names")
                return names
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{path}: cannot read its class names ({_one_line(exc)})") from None
    return None


def load_classifier_file(source: str, weights: str | Path | None = None, *, trust_code: bool = False,
                         kwargs: dict[str, Any] | None = None) -> tuple[torch.nn.Module, str]:
    """A classifier file -> (the network on the CPU, its kind).

    ``source`` is a TorchScript file, a ``torch.export`` program (``.pt2``), a cfattack
    classifier checkpoint, or ``package.module:factory`` with ``weights`` its state dict.

    Raises:
        UntrustedCodeError: a code kind (TorchScript, export, factory) without ``trust_code`` (nothing read).
        InvalidInputError, NetworkLoadError, BundleError: a missing, unreadable or unfitting file.
    """
    is_factory = ":" in source and not Path(source).exists()
    if is_factory:
        if weights is None:
            raise InvalidInputError(f"classifier {source!r} is a factory: give its state dict with --classifier-weights")
        kind, path = "factory", Path(weights)
    else:
        if weights is not None:
            raise InvalidInputError("--classifier-weights goes with a factory classifier ('package.module:callable')")
        path = Path(source)
    if not path.is_file():
        raise InvalidInputError(f"classifier file {path} does not exist")
    if not is_factory:
        kind = classifier_file_kind(path)
    if kind != "cfattack" and not trust_code:
        what = {"factory": f"the factory {source!r}", "torchscript": f"the TorchScript program {path}",
                "export": f"the torch.export program {path}"}[kind]
        raise UntrustedCodeError(f"loading the classifier would run {what}; load it only if you trust its author, "
                                 "with --trust-code (CLI) or trust_code=True (Python)")
    where = f"classifier {path.name}"
    if kind == "torchscript":
        return _load_torchscript(path, where), kind
    if kind == "export":
        return _load_export(path, where), kind
    if kind == "factory":
        spec = ClassifierSpec(kind="factory", file="weights.pt", factory=source, kwargs=kwargs or {})
        return _build_factory_classifier(spec, path, where), kind
    from cfattack.classifiers.checkpoint import load_classifier_checkpoint

    try:
        net, _ = load_classifier_checkpoint(path, "cpu")
    except NetworkLoadError as exc:
        raise NetworkLoadError(f"{where}: {exc} (TorchScript, .pt2 and module:factory are the other kinds)") from exc
    return net, kind


def _count_classes(net: Callable[[torch.Tensor], Any], channels: int, resolution: int, device: torch.device) -> int:
    images = torch.zeros(_PROBE_BATCH, channels, resolution, resolution, device=device)
    try:
        with torch.no_grad():
            logits = net(images)
    except Exception as exc:  # user networks fail in any way; say on what input
        raise NetworkLoadError(f"the classifier fails on a batch of shape {list(images.shape)} after "
                               f"preprocessing ({type(exc).__name__}: {_one_line(exc)}); does it need another input size "
                               "(--classifier-size, input_size=) or channel count?") from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != _PROBE_BATCH:
        raise BundleError(f"the classifier must return logits [N, K]; it returned {type(logits).__name__} "
                          f"{list(getattr(logits, 'shape', []))} for {_PROBE_BATCH} images")
    return int(logits.shape[1])


def bundle_from_networks(
    generator: torch.nn.Module,
    classifier: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    class_names: Sequence[str] | None = None,
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    input_size: int | None = None,
    input_channels: int | None = None,
    normalization: InputNormalization | None = None,
    image_kind: str | None = None,
    name: str = "own-models",
    description: str = "",
    device: str | torch.device = "cpu",
) -> Bundle:
    """A `Bundle` of networks in memory: no encoder, no descriptor model.

    Args:
        generator: a cfattack StyleGAN3 `Generator` (e.g. from `cfattack.stylegan.loading.load_generator`).
        classifier: any module or callable taking [N, C', S, S] images and returning logits [N, K].
        class_names: K names in logit order; None: the class indices "0", "1", ... (K found by one call).
        preprocess: your own callable from the generator's [N, C, R, R] images in [-1, 1] to what
            ``classifier`` takes (differentiable); if given, ``input_size``, ``input_channels`` and
            ``normalization`` must be None.
        input_size, input_channels, normalization: the built-in preprocessing (see
            `cfattack.bundle.preprocess`): resize to ``input_size``, convert channels, normalise.
        image_kind: ``"photos"`` or ``"objects"`` (picks the descriptors); None: photos for RGB, objects for grey.

    Raises:
        InvalidInputError: conflicting arguments, or class names that do not fit the classifier.
    """
    device = _as_device(device)
    if not isinstance(generator, torch.nn.Module) or not hasattr(generator, "synthesis"):
        raise InvalidInputError(f"generator must be a StyleGAN3 generator module, got {type(generator).__name__}")
    if preprocess is not None and (input_size, input_channels, normalization) != (None, None, None):
        raise InvalidInputError("give preprocess, or input_size/input_channels/normalization, not both")
    if not isinstance(classifier, torch.nn.Module):
        if not callable(classifier):
            raise InvalidInputError(f"classifier must be a torch.nn.Module or a callable, got {type(classifier).__name__}")
        classifier = _CallableNet(classifier)
    net = classifier if preprocess is None else _Preprocessed(classifier, preprocess)
    resolution, channels = int(generator.img_resolution), int(generator.img_channels)
    generator = generator.to(device).eval().requires_grad_(False)
    net = net.to(device).eval()
    wrapped = BundleClassifier(net, name="classifier", num_classes=2, img_channels=channels, img_resolution=resolution,
                               normalization=normalization, input_size=input_size, input_channels=input_channels).to(device)
    count = _count_classes(lambda x: net(wrapped.normalize(x)), channels, resolution, device)
    names = tuple(str(i) for i in range(count)) if class_names is None else tuple(class_names)
    if len(names) != count:
        raise InvalidInputError(f"{len(names)} class names given but the classifier returns {count} logits per image")
    wrapped.num_classes = count
    wrapped.verified = True
    kind = image_kind or ("photos" if channels == 3 else "objects")
    try:
        spec = BundleSpec(
            name=name, description=description or "A generator and a classifier handed over in memory.",
            image=ImageSpec(resolution=resolution, channels=channels, kind=kind),
            class_names=names, generator=GeneratorSpec(file="generator (in memory)"),
            classifiers={"classifier": ClassifierSpec(
                kind="module", file="classifier (in memory)", input_normalization=normalization,
                input_size=input_size, input_channels=input_channels,
                description="custom preprocess" if preprocess is not None else "")},
            default_classifier="classifier", latent_space="w+",
        )
    except ValueError as exc:  # pydantic's ValidationError: duplicate names, bad kind...
        from pydantic import ValidationError

        from cfattack.bundle.spec import condense_validation_error

        reason = condense_validation_error(exc) if isinstance(exc, ValidationError) else _one_line(exc)
        raise InvalidInputError(f"cannot build the bundle: {reason}") from None
    wrapped = wrapped.to(device).eval().requires_grad_(False)  # via the wrapper: ScriptModules refuse it
    return Bundle(spec, Path.cwd(), generator, None, {"classifier": wrapped}, device)
