"""Bundles: a directory naming every network an explanation needs, described by ``bundle.json``.

A bundle holds a generator (our checkpoint or an official StyleGAN3 pickle), an optional
encoder, one or more classifiers (ours, TorchScript, or ``module:factory`` + state dict), an
optional descriptor model, the class names and the image format. `load_bundle` reads the spec,
checks that the pieces fit together (resolutions, channels, latent sizes, one logit per class)
and returns a `Bundle` whose networks are in eval mode with frozen parameters::

    b = load_bundle("default")                 # shipped in cfattack/assets/default/
    b = load_bundle("my_afhq/")                # a user's directory holding bundle.json
    clf = b.classifier()                       # the default classifier
    logits = clf(images)                       # images [N, C, R, R] in [-1, 1] -> [N, K]
    b.class_index("Ankle boot")                # names, aliases or indices -> int

Layout (paths in ``bundle.json`` are relative to its folder and may not leave it)::

    my_bundle/
        bundle.json              # BundleSpec
        generator.pt | .pkl      # cfattack.generator/1 checkpoint or official network pickle
        encoder.pt               # optional, cfattack.encoder/1
        classifiers/*.pt         # cfattack.classifier/1, TorchScript, or a state dict for a factory
        descriptors.pt           # optional descriptor model

Importing this module loads no network; `load_bundle` loads them all (bundles are small).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import posixpath
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, Field, JsonValue, ValidationError, field_validator, model_validator

from cfattack.classes import check_class_names, resolve_choice, resolve_class
from cfattack.config import FrozenConfig
from cfattack.errors import InvalidInputError, NetworkLoadError, UnsafePickleError

__all__ = [
    "BUNDLE_FORMAT",
    "SPEC_FILENAME",
    "DEFAULT_BUNDLE_DIR",
    "BundleError",
    "ImageSpec",
    "GeneratorSpec",
    "InputNormalization",
    "ClassifierSpec",
    "Provenance",
    "BundleSpec",
    "BundleClassifier",
    "Bundle",
    "bundle_spec_path",
    "read_bundle_spec",
    "write_bundle_spec",
    "resolve_factory",
    "load_bundle",
]

BUNDLE_FORMAT = "cfattack.bundle/1"
SPEC_FILENAME = "bundle.json"
DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parent / "assets" / "default"

_FACTORY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_CLASSIFIER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_PROBE_BATCH = 2  # batch size of the dummy forward pass that checks a classifier's output
_ZIP_MAGIC = b"PK\x03\x04"


class BundleError(InvalidInputError):
    """A bundle is missing, its ``bundle.json`` is invalid, or its networks do not fit together."""


# ---------------------------------------------------------------------------------------------
# The spec (bundle.json).


def _check_relative_path(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty path relative to the bundle directory")
    if "\\" in value:
        raise ValueError(f"{value!r}: write paths with forward slashes")
    if value.startswith("/") or re.match(r"[A-Za-z]:", value):
        raise ValueError(f"{value!r} is absolute; paths must be relative to the bundle directory")
    normalized = posixpath.normpath(value)
    if normalized == ".." or normalized.startswith("../"):
        raise ValueError(f"{value!r} leads outside the bundle directory")
    if normalized == ".":
        raise ValueError(f"{value!r} names the bundle directory itself, not a file in it")
    return value


RelativePath = Annotated[str, AfterValidator(_check_relative_path)]
"""A file path inside the bundle directory, written with ``/``; it may not start with ``/`` or
contain ``..`` steps that leave the directory."""


class ImageSpec(FrozenConfig):
    """The images every network of the bundle exchanges."""

    resolution: int = Field(ge=4, le=16384, description="Image height and width in pixels (square images).")
    channels: int = Field(ge=1, le=4, description="Image channels: 1 grey, 3 RGB.")
    value_range: tuple[float, float] = Field(
        (-1.0, 1.0),
        description="Pixel value range of images passed between networks: always [-1, 1] (NVIDIA's "
        "convention). A classifier that expects other inputs says so in its input_normalization.",
    )

    @field_validator("value_range")
    @classmethod
    def _always_symmetric_unit(cls, value: tuple[float, float]) -> tuple[float, float]:
        if tuple(value) != (-1.0, 1.0):
            raise ValueError(
                f"must be [-1, 1] (got {list(value)}); describe a classifier's own input range "
                "in its input_normalization instead"
            )
        return value


class GeneratorSpec(FrozenConfig):
    """Where the StyleGAN3 generator is and in which format."""

    file: RelativePath = Field(description="Generator file, relative to the bundle directory.")
    kind: Literal["cfattack", "stylegan3-pkl"] = Field(
        "cfattack",
        description="'cfattack': a checkpoint written by save_generator_checkpoint; 'stylegan3-pkl': "
        "an official NVIDIA network pickle (its G_ema is used; no code from it is executed).",
    )


def _finite(values: tuple[float, ...], what: str) -> None:
    if not all(v == v and abs(v) != float("inf") for v in values):
        raise ValueError(f"{what} must be finite numbers, got {list(values)}")


class InputNormalization(FrozenConfig):
    """How to turn our [-1, 1] images into what a classifier was trained on.

    First ``x`` is mapped linearly from [-1, 1] onto ``value_range``, then, if given,
    ``(x - mean) / std`` is applied per channel. A classifier trained on ImageNet-normalised
    [0, 1] inputs: ``{"value_range": [0, 1], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}``.
    """

    value_range: tuple[float, float] = Field(
        (-1.0, 1.0), description="The range [-1, 1] is mapped onto, e.g. [0, 1] or [0, 255]."
    )
    mean: tuple[float, ...] | None = Field(
        None, min_length=1, description="Per-channel mean subtracted after the range mapping (1 or C values)."
    )
    std: tuple[float, ...] | None = Field(
        None, min_length=1, description="Per-channel standard deviation divided by after subtracting mean."
    )

    @model_validator(mode="after")
    def _consistent(self) -> InputNormalization:
        _finite(self.value_range, "value_range")
        if self.value_range[0] == self.value_range[1]:
            raise ValueError(f"value_range must span an interval, got {list(self.value_range)}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            _finite(self.mean, "mean")
            _finite(self.std, "std")
            if len(self.mean) != len(self.std):
                raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
            if min(self.std) <= 0:
                raise ValueError(f"std must be positive, got {list(self.std)}")
        return self

    def affine(self, channels: int) -> tuple[list[float], list[float]]:
        """Per-channel ``(scale, shift)`` with ``normalised = x * scale + shift`` for x in [-1, 1]."""
        lo, hi = self.value_range
        mean = self.mean if self.mean is not None else (0.0,)
        std = self.std if self.std is not None else (1.0,)
        if len(mean) not in (1, channels):
            raise InvalidInputError(
                f"input_normalization has {len(mean)} mean/std values for {channels}-channel images"
            )
        if len(mean) == 1:
            mean, std = mean * channels, std * channels
        # [-1, 1] -> [lo, hi] is x * (hi - lo) / 2 + (hi + lo) / 2; then (. - m) / s.
        scale = [(hi - lo) / 2 / s for s in std]
        shift = [((hi + lo) / 2 - m) / s for m, s in zip(mean, std)]
        return scale, shift


class ClassifierSpec(FrozenConfig):
    """One classifier of the bundle: images -> logits, one per class, in class_names order."""

    kind: Literal["cfattack", "torchscript", "factory"] = Field(
        "cfattack",
        description="'cfattack': a cfattack.classifier/1 checkpoint; 'torchscript': a file for "
        "torch.jit.load; 'factory': `factory(**kwargs)` builds the module and `file` holds its state dict.",
    )
    file: RelativePath = Field(
        description="Checkpoint, TorchScript file or state dict, relative to the bundle directory."
    )
    factory: str | None = Field(
        None,
        description="For kind 'factory': 'package.module:callable' (an importable module; only it is "
        "imported, nothing is evaluated from the string).",
    )
    kwargs: dict[str, JsonValue] = Field(default_factory=dict, description="Keyword arguments of the factory.")
    input_normalization: InputNormalization | None = Field(
        None, description="Mapping applied to our [-1, 1] images before the classifier sees them; None = none."
    )
    description: str = Field("", description="What the classifier is (architecture, training loss, data).")
    metrics: dict[str, JsonValue] = Field(default_factory=dict, description="Measured quality, e.g. test accuracy.")

    @model_validator(mode="after")
    def _factory_fields(self) -> ClassifierSpec:
        if self.kind == "factory":
            if self.factory is None:
                raise ValueError("kind 'factory' needs factory: 'package.module:callable'")
            if not _FACTORY.fullmatch(self.factory):
                raise ValueError(f"factory must look like 'package.module:callable', got {self.factory!r}")
        elif self.factory is not None or self.kwargs:
            raise ValueError(f"factory and kwargs apply only to kind 'factory', not {self.kind!r}")
        return self


class Provenance(FrozenConfig):
    """How the bundle's networks were made, so they can be reproduced and judged."""

    commands: tuple[str, ...] = Field((), description="Shell commands that produced the files, in order.")
    data: str = Field("", description="Training data: name, split, where it came from, licence.")
    metrics: dict[str, JsonValue] = Field(default_factory=dict, description="Metrics reached (name -> value).")
    created: date | None = Field(None, description="Date the bundle was assembled (ISO 8601, YYYY-MM-DD).")


class BundleSpec(FrozenConfig):
    """The content of ``bundle.json``: what a bundle holds and how its pieces fit together."""

    format_version: Literal["cfattack.bundle/1"] = Field(
        BUNDLE_FORMAT, description="Bundle format identifier; this cfattack reads cfattack.bundle/1."
    )
    name: str = Field(min_length=1, description="Short name of the bundle, e.g. 'fashion-mnist-32'.")
    description: str = Field("", description="What the bundle explains, in a sentence or two.")
    image: ImageSpec = Field(description="Resolution and channels of the images all networks exchange.")
    class_names: tuple[str, ...] = Field(
        min_length=2,
        description="Class names in logit order; unique ignoring case, spaces, hyphens, underscores, slashes.",
    )
    class_aliases: dict[str, str] = Field(
        default_factory=dict, description="Other accepted names: alias -> class name (e.g. 'T-shirt/top' -> 't-shirt')."
    )
    generator: GeneratorSpec = Field(description="The StyleGAN3 generator.")
    encoder: RelativePath | None = Field(
        None, description="cfattack.encoder/1 checkpoint (image -> ws) used to start inversion; None = no encoder."
    )
    classifiers: dict[str, ClassifierSpec] = Field(
        min_length=1, description="The classifiers that can be explained, by name."
    )
    default_classifier: str = Field(description="Name (a key of classifiers) used when none is chosen.")
    descriptor_model: RelativePath | None = Field(
        None, description="File of fitted latent descriptor predictors used for attribution; None = none."
    )
    latent_space: Literal["w", "w+"] = Field(
        "w+", description="Latent space attacks move in by default: one w for all layers ('w') or one per layer ('w+')."
    )
    truncation_psi: float = Field(
        1.0, ge=0, le=2, description="Default truncation when sampling from the generator (1 = none)."
    )
    provenance: Provenance = Field(default_factory=Provenance, description="How the networks were produced.")

    @model_validator(mode="after")
    def _consistent(self) -> BundleSpec:
        check_class_names(self.class_names, self.class_aliases)
        for name, classifier in self.classifiers.items():
            if not _CLASSIFIER_NAME.fullmatch(name):
                raise ValueError(
                    f"classifier name {name!r} must start with a letter or digit and use only letters, "
                    "digits and _ . + -"
                )
            if classifier.input_normalization is not None and classifier.input_normalization.mean is not None:
                count = len(classifier.input_normalization.mean)
                if count not in (1, self.image.channels):
                    raise ValueError(
                        f"classifier {name!r}: input_normalization has {count} mean/std values but the "
                        f"images have {self.image.channels} channel(s)"
                    )
        if self.default_classifier not in self.classifiers:
            raise ValueError(
                f"default_classifier {self.default_classifier!r} is not one of the classifiers "
                f"({', '.join(self.classifiers)})"
            )
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def files(self) -> dict[str, str]:
        """Every file the bundle names: ``{role: relative path}``, roles like ``"classifier 'baseline'"``."""
        files = {"generator": self.generator.file}
        if self.encoder is not None:
            files["encoder"] = self.encoder
        for name, classifier in self.classifiers.items():
            files[f"classifier {name!r}"] = classifier.file
        if self.descriptor_model is not None:
            files["descriptor model"] = self.descriptor_model
        return files

    def to_json(self) -> str:
        """The ``bundle.json`` text (2-space indent, trailing newline)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/bundle.json`` atomically; see `write_bundle_spec`."""
        return write_bundle_spec(self, directory)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BundleSpec:
        """Read and validate a ``bundle.json`` (or the one in a directory); see `read_bundle_spec`."""
        return read_bundle_spec(path)


def _condense(exc: ValidationError, limit: int = 3) -> str:
    """Pydantic's multi-line report as one line: ``loc: message; loc: message (+N more)``."""
    parts = []
    errors = exc.errors()
    for error in errors[:limit]:
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ").replace("\n", " ")
        parts.append(f"{where}: {message}" if where else message)
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def bundle_spec_path(name_or_path: str | os.PathLike) -> Path:
    """The ``bundle.json`` that ``"default"``, a bundle directory, or a ``bundle.json`` path means.

    The string ``"default"`` always means the bundle shipped with cfattack (pass ``"./default"``
    for a directory of that name).
    """
    if isinstance(name_or_path, str) and name_or_path == "default":
        path = DEFAULT_BUNDLE_DIR / SPEC_FILENAME
        if not path.is_file():
            raise BundleError(
                f"the default bundle is not installed: {path} is missing (it ships with a trained "
                "cfattack; until then pass the path of a bundle directory)"
            )
        return path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InvalidInputError(f"a bundle is 'default' or a path, got {type(name_or_path).__name__}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / SPEC_FILENAME).is_file():
            raise BundleError(f"{path} is not a bundle: it has no {SPEC_FILENAME}")
        return path / SPEC_FILENAME
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise BundleError(
                f"{path} is a file, not a bundle: pass a directory containing {SPEC_FILENAME} (or that file itself)"
            )
        return path
    raise BundleError(
        f"bundle {str(name_or_path)!r} not found: pass 'default' or a directory containing {SPEC_FILENAME}"
    )


def read_bundle_spec(path: str | os.PathLike) -> BundleSpec:
    """Read and validate a ``bundle.json`` (or the one inside the directory ``path``).

    Raises:
        BundleError: the file is missing, unreadable, not JSON, of another format version, or
            fails validation (the reasons condensed to one line).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / SPEC_FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read it ({_one_line(exc)})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object, found {type(data).__name__}")
    version = data.get("format_version", BUNDLE_FORMAT)
    if version != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {version!r} is not supported (this cfattack reads {BUNDLE_FORMAT!r})")
    try:
        return BundleSpec.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"{path}: invalid bundle spec: {_condense(exc)}") from None


def write_bundle_spec(spec: BundleSpec, directory: str | os.PathLike) -> Path:
    """Write ``spec`` to ``directory/bundle.json`` atomically (creating the directory); returns the path."""
    from cfattack.atomic import atomic_write_text

    if not isinstance(spec, BundleSpec):
        raise InvalidInputError(f"spec must be a BundleSpec, got {type(spec).__name__}")
    return atomic_write_text(Path(directory) / SPEC_FILENAME, spec.to_json())


# ---------------------------------------------------------------------------------------------
# Classifiers as the rest of cfattack sees them.


def _one_line(exc: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = "; ".join(lines) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _torch_reason(exc: BaseException) -> str:
    """The informative part of a torch loading error, without its boilerplate paragraphs."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # weights_only refusals bury the reason mid-paragraph
        reason = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        return "torch.load(weights_only=True) refused it: " + (" ".join(reason.split()) or "unknown reason")
    if text.startswith("Error(s) in loading state_dict"):  # first line only names the class
        return _one_line(RuntimeError("\n".join(text.splitlines()[1:])))
    if "PytorchStreamReader" in text:  # then several sentences of generic advice
        return text.split(". ", 1)[0]
    return _one_line(exc)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


class BundleClassifier(torch.nn.Module):
    """A bundle's classifier: images [N, C, R, R] in [-1, 1] -> logits [N, K].

    Wraps the loaded network ``net``: applies the spec's input normalisation (one per-channel
    affine map, folded from the range mapping and mean/std) and checks the input and output
    shapes on every call. Parameters are frozen; gradients still flow to the images.

    Attributes:
        name: the classifier's name in the bundle.
        net: the wrapped network (sees normalised images).
        num_classes, img_channels, img_resolution: K, C and R.
    """

    scale: torch.Tensor | None
    shift: torch.Tensor | None

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        name: str,
        num_classes: int,
        img_channels: int,
        img_resolution: int,
        normalization: InputNormalization | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.num_classes = num_classes
        self.img_channels = img_channels
        self.img_resolution = img_resolution
        self.normalization = normalization
        if normalization is None:
            self.register_buffer("scale", None)
            self.register_buffer("shift", None)
        else:
            scale, shift = normalization.affine(img_channels)
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[N, C, R, R] in [-1, 1] -> what ``net`` expects (the identity without a normalisation)."""
        if self.scale is None or self.shift is None:
            return images
        return images * self.scale.to(images.dtype) + self.shift.to(images.dtype)

    def _check_input(self, images: Any) -> None:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise InvalidInputError(
                f"classifier {self.name!r} takes images [N, {', '.join(map(str, expected))}] in [-1, 1], "
                f"got {_describe(images)}"
            )
        if not images.is_floating_point():
            raise InvalidInputError(f"classifier {self.name!r} takes float images in [-1, 1], got {_describe(images)}")

    def _output_problem(self, logits: Any, batch: int) -> str | None:
        """None if ``logits`` are float [batch, K], else what is wrong with them."""
        if (
            isinstance(logits, torch.Tensor)
            and logits.is_floating_point()
            and tuple(logits.shape) == (batch, self.num_classes)
        ):
            return None
        hint = ""
        if isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.shape[0] == batch:
            hint = f" ({logits.shape[1]} outputs per image for {self.num_classes} classes)"
        return (
            f"returned {_describe(logits)} for {batch} images; expected float logits of shape "
            f"[{batch}, {self.num_classes}], one per class{hint}"
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, C, R, R] in [-1, 1] -> logits [N, K]."""
        self._check_input(images)
        logits = self.net(self.normalize(images))
        problem = self._output_problem(logits, images.shape[0])
        if problem is not None:
            raise BundleError(f"classifier {self.name!r} {problem}")
        return logits

    @property
    def has_embedding(self) -> bool:
        """Whether the wrapped network exposes ``embed`` (cfattack classifiers do)."""
        return callable(getattr(self.net, "embed", None))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, C, R, R] in [-1, 1] -> the network's embedding [N, D]."""
        if not self.has_embedding:
            raise InvalidInputError(f"classifier {self.name!r} has no embed() method")
        self._check_input(images)
        return self.net.embed(self.normalize(images))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_classes={self.num_classes}, normalization={self.normalization is not None}"


# ---------------------------------------------------------------------------------------------
# Loading networks.


def resolve_factory(reference: str) -> Callable[..., Any]:
    """The callable ``"package.module:attr.path"`` names: imports that module only, then getattr.

    Raises:
        BundleError: malformed reference, module that will not import, missing or non-callable attribute.
    """
    if not isinstance(reference, str) or not _FACTORY.fullmatch(reference):
        raise BundleError(f"factory must look like 'package.module:callable', got {reference!r}")
    module_name, _, qualname = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise BundleError(f"factory {reference!r}: cannot import module {module_name!r} ({_one_line(exc)})") from None
    except Exception as exc:  # a user's module may fail at import in any way; report it as one line
        raise BundleError(
            f"factory {reference!r}: importing {module_name!r} failed ({type(exc).__name__}: {_one_line(exc)})"
        ) from exc
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise BundleError(f"factory {reference!r}: module {module_name!r} has no attribute {qualname!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BundleError(f"factory {reference!r}: {qualname!r} is not callable (it is of type {type(obj).__name__})")
    return obj


def _as_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"invalid device {device!r} ({_one_line(exc)})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {str(device)!r} requested but CUDA is not available (use 'cpu')")
    return device


def _check_files(spec: BundleSpec, root: Path) -> None:
    missing = [f"{role} ({rel})" for role, rel in spec.files().items() if not (root / rel).is_file()]
    if missing:
        raise BundleError(f"bundle {spec.name!r} at {root}: missing file(s): {', '.join(missing)}")


def _load_generator(spec: BundleSpec, root: Path, device: torch.device) -> torch.nn.Module:
    from cfattack import legacy

    path = root / spec.generator.file
    with open(path, "rb") as f:
        head = f.read(4)
    kind = spec.generator.kind
    # Catch the common mix-up with a hint, before the loader reports a format error.
    where = f"bundle {spec.name!r}: generator {path.name}"
    if kind == "cfattack" and head[:1] == b"\x80":
        raise BundleError(f"{where} is a pickle; set generator.kind to 'stylegan3-pkl'")
    if kind == "stylegan3-pkl" and head == _ZIP_MAGIC:
        raise BundleError(f"{where} is a zip checkpoint; set generator.kind to 'cfattack'")
    try:
        if kind == "cfattack":
            G = legacy.load_generator_checkpoint(path, device)
        else:
            G = legacy.load_network_pkl(path, device=device, load=("G_ema",))["G_ema"]
    except UnsafePickleError:
        raise
    except NetworkLoadError as exc:
        raise NetworkLoadError(f"bundle {spec.name!r}: generator: {exc}") from exc
    got = (G.img_resolution, G.img_channels)
    want = (spec.image.resolution, spec.image.channels)
    if got != want:
        raise BundleError(
            f"bundle {spec.name!r}: the generator makes {got[0]}x{got[0]} images with {got[1]} channel(s) but "
            f"bundle.json says {want[0]}x{want[0]} with {want[1]}"
        )
    return G.eval().requires_grad_(False)


def _load_encoder(spec: BundleSpec, root: Path, G: torch.nn.Module, device: torch.device) -> torch.nn.Module | None:
    if spec.encoder is None:
        return None
    from cfattack.encoder import load_encoder_checkpoint

    try:
        E = load_encoder_checkpoint(root / spec.encoder, device)
    except NetworkLoadError as exc:
        raise NetworkLoadError(f"bundle {spec.name!r}: encoder: {exc}") from exc
    checks = (
        ("image resolution", E.img_resolution, spec.image.resolution, "bundle.json"),
        ("image channels", E.img_channels, spec.image.channels, "bundle.json"),
        ("num_ws", E.num_ws, G.num_ws, "the generator"),
        ("w_dim", E.w_dim, G.w_dim, "the generator"),
    )
    for what, got, want, source in checks:
        if got != want:
            raise BundleError(f"bundle {spec.name!r}: the encoder has {what} {got} but {source} has {want}")
    return E.eval().requires_grad_(False)


def _is_torchscript_archive(path: Path) -> bool:
    """TorchScript zips hold ``<name>/constants.pkl``; ``torch.load`` would silently run jit.load on them."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_state_dict(path: Path, where: str) -> dict[str, torch.Tensor]:
    if _is_torchscript_archive(path):
        raise NetworkLoadError(
            f"{where}: {path.name} is a TorchScript file, not a state dict; set kind to 'torchscript'"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError,
            AttributeError, IndexError, OSError, zipfile.BadZipFile) as exc:
        raise NetworkLoadError(f"{where}: {path.name} is not a readable state dict ({_torch_reason(exc)})") from None
    # Training scripts often save {"state_dict": ..., "epoch": ...}; accept that wrapper too.
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise NetworkLoadError(f"{where}: {path.name} does not hold a state dict (names -> tensors)")
    return dict(state)


def _summarise(names: set[str], limit: int = 3) -> str:
    ordered = sorted(names)
    return ", ".join(ordered[:limit]) + (f" (+{len(ordered) - limit} more)" if len(ordered) > limit else "")


def _build_factory_classifier(spec: ClassifierSpec, path: Path, where: str) -> torch.nn.Module:
    assert spec.factory is not None  # guaranteed by ClassifierSpec's validator
    try:
        factory = resolve_factory(spec.factory)
    except BundleError as exc:
        raise BundleError(f"{where}: {exc}") from None
    try:
        net = factory(**spec.kwargs)
    except Exception as exc:  # user code: any failure becomes one line naming the factory
        raise NetworkLoadError(
            f"{where}: factory {spec.factory!r} raised {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    if not isinstance(net, torch.nn.Module):
        raise BundleError(f"{where}: factory {spec.factory!r} returned a {type(net).__name__}, not a torch.nn.Module")
    state = _read_state_dict(path, where)
    expected = set(net.state_dict())
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected:
        details = [f"missing {_summarise(missing)}"] if missing else []
        details += [f"unexpected {_summarise(unexpected)}"] if unexpected else []
        raise NetworkLoadError(
            f"{where}: {path.name} does not fit the network {spec.factory!r} builds ({'; '.join(details)})"
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise NetworkLoadError(
            f"{where}: {path.name} does not fit the network {spec.factory!r} builds ({_torch_reason(exc)})"
        ) from None
    return net


def _load_torchscript(path: Path, where: str) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            # torch >= 2.9 flags TorchScript as deprecated; users still ship such files.
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise NetworkLoadError(
            f"{where}: {path.name} is not a loadable TorchScript file ({_torch_reason(exc)}); a plain state "
            "dict needs kind 'factory'"
        ) from None


def _check_classifier_classes(metadata: Any, spec: BundleSpec, where: str) -> None:
    """A cfattack checkpoint that records its class names must agree with the bundle's."""
    names = metadata.get("class_names") if isinstance(metadata, Mapping) else None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return
    try:
        agree = len(names) == spec.num_classes and all(
            resolve_class(n, spec.class_names, spec.class_aliases) == i for i, n in enumerate(names)
        )
    except InvalidInputError:
        agree = False
    if not agree:
        raise BundleError(
            f"{where}: the checkpoint was trained on classes [{', '.join(names)}] but the bundle's are "
            f"[{', '.join(spec.class_names)}]"
        )


def _load_classifier(
    name: str, spec: BundleSpec, root: Path, device: torch.device
) -> BundleClassifier:
    where = f"bundle {spec.name!r}: classifier {name!r}"
    cspec = spec.classifiers[name]
    path = root / cspec.file
    if cspec.kind == "cfattack":
        from cfattack.classifiers.checkpoint import load_classifier_checkpoint

        try:
            net, metadata = load_classifier_checkpoint(path, "cpu")
        except NetworkLoadError as exc:
            raise NetworkLoadError(f"{where}: {exc}") from exc
        _check_classifier_classes(metadata, spec, where)
    elif cspec.kind == "torchscript":
        net = _load_torchscript(path, where)
    else:
        net = _build_factory_classifier(cspec, path, where)

    classifier = BundleClassifier(
        net, name=name, num_classes=spec.num_classes, img_channels=spec.image.channels,
        img_resolution=spec.image.resolution, normalization=cspec.input_normalization,
    )
    classifier = classifier.to(device).eval().requires_grad_(False)
    _probe(classifier, where, device)
    return classifier


def _probe(classifier: BundleClassifier, where: str, device: torch.device) -> None:
    """One forward pass on a dummy batch, so a wrong class count fails at load time, not mid-attack."""
    shape = (_PROBE_BATCH, classifier.img_channels, classifier.img_resolution, classifier.img_resolution)
    images = torch.zeros(shape, device=device)
    try:
        with torch.no_grad():
            logits = classifier.net(classifier.normalize(images))
    except Exception as exc:  # user networks fail in any way; say which one and on what input
        raise NetworkLoadError(
            f"{where} fails on a dummy batch of shape {list(shape)} ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    problem = classifier._output_problem(logits, _PROBE_BATCH)
    if problem is not None:
        raise BundleError(f"{where} {problem}")


# ---------------------------------------------------------------------------------------------
# The bundle.


class Bundle:
    """A loaded bundle: the networks of one domain and what they agree on.

    Attributes:
        spec: the validated `BundleSpec`.
        root: the bundle directory (relative paths in the spec are relative to it).
        generator: our `cfattack.generator.Generator` (eval mode, frozen).
        encoder: `cfattack.encoder.Encoder` or None.
        classifiers: ``{name: BundleClassifier}``, images [N, C, R, R] in [-1, 1] -> logits [N, K].
        default_classifier: the name used when none is given.
        class_names: tuple of K names in logit order.
        device: where the networks are.
    """

    def __init__(
        self,
        spec: BundleSpec,
        root: Path,
        generator: torch.nn.Module,
        encoder: torch.nn.Module | None,
        classifiers: dict[str, BundleClassifier],
        device: torch.device,
    ) -> None:
        self.spec = spec
        self.root = root
        self.generator = generator
        self.encoder = encoder
        self.classifiers = classifiers
        self.device = device

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def default_classifier(self) -> str:
        return self.spec.default_classifier

    @property
    def descriptor_model_path(self) -> Path | None:
        """Absolute path of the descriptor model file, or None when the bundle has none."""
        return None if self.spec.descriptor_model is None else self.root / self.spec.descriptor_model

    def path(self, relative: str) -> Path:
        """A file of the bundle: ``root / relative``."""
        try:
            return self.root / _check_relative_path(relative)
        except ValueError as exc:
            raise InvalidInputError(f"bundle {self.name!r}: {exc}") from None

    def classifier(self, name: str | None = None) -> BundleClassifier:
        """The classifier called ``name`` (matched like class names), or the default one."""
        if name is None:
            return self.classifiers[self.spec.default_classifier]
        return self.classifiers[resolve_choice(name, list(self.classifiers), what="classifier")]

    def class_index(self, name_or_index: str | int) -> int:
        """Index of a class given by name, alias (e.g. ``"T-shirt/top"``) or index; see `resolve_class`."""
        return resolve_class(name_or_index, self.spec.class_names, self.spec.class_aliases)

    def class_name(self, name_or_index: str | int) -> str:
        """The canonical name of a class given by name, alias or index."""
        return self.spec.class_names[self.class_index(name_or_index)]

    def to(self, device: str | torch.device) -> Bundle:
        """Move every network to ``device``; returns self."""
        device = _as_device(device)
        self.generator.to(device)
        if self.encoder is not None:
            self.encoder.to(device)
        for classifier in self.classifiers.values():
            classifier.to(device)
        self.device = device
        return self

    def __repr__(self) -> str:
        return (
            f"Bundle({self.name!r}, root={str(self.root)!r}, classes={self.num_classes}, "
            f"classifiers={list(self.classifiers)}, encoder={self.encoder is not None}, device={str(self.device)!r})"
        )


def load_bundle(name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle and check that its networks fit together.

    Args:
        name_or_path: ``"default"`` (the bundle shipped in ``cfattack/assets/default/``), a
            directory containing ``bundle.json``, or the path of a ``bundle.json``.
        device: where to put the networks (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).

    Returns:
        A `Bundle` with every network loaded, in eval mode and frozen.

    Raises:
        BundleError: no such bundle, invalid ``bundle.json``, missing files, or networks that do
            not fit (generator size vs the spec, encoder vs generator, classifier outputs vs the
            number of classes, an unresolvable factory).
        NetworkLoadError: a network file that cannot be read (naming the bundle and the network).
        UnsafePickleError: an official pickle that references a disallowed global.
    """
    device = _as_device(device)
    spec_path = bundle_spec_path(name_or_path)
    spec = read_bundle_spec(spec_path)
    root = spec_path.parent.resolve()
    _check_files(spec, root)
    generator = _load_generator(spec, root, device)
    encoder = _load_encoder(spec, root, generator, device)
    classifiers = {name: _load_classifier(name, spec, root, device) for name in spec.classifiers}
    return Bundle(spec, root, generator, encoder, classifiers, device)
