"""The ``bundle.json`` spec: pydantic models of what a bundle holds, and reading/writing the file.

`BundleSpec` is the content of ``bundle.json`` (format ``cfattack.bundle/1``): image format,
class names, and the relative paths and kinds of the generator, encoder, classifiers and
descriptor model. Validation here only looks at the JSON; checking that the named networks
exist and fit together is `cfattack.bundle.loader`'s job. Importing this module loads no network.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, JsonValue, ValidationError, field_validator, model_validator

from cfattack.bundle.messages import _one_line
from cfattack.classes import check_class_names
from cfattack.config import FrozenConfig
from cfattack.errors import InvalidInputError

__all__ = [
    "BUNDLE_FORMAT",
    "SPEC_FILENAME",
    "BundleError",
    "ImageSpec",
    "GeneratorSpec",
    "InputNormalization",
    "ClassifierSpec",
    "Provenance",
    "BundleSpec",
    "read_bundle_spec",
    "write_bundle_spec",
    "condense_validation_error",
]

BUNDLE_FORMAT = "cfattack.bundle/1"
SPEC_FILENAME = "bundle.json"

_FACTORY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_CLASSIFIER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


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
    kind: Literal["objects", "photos"] = Field(
        "objects",
        description="What the images show, which picks the descriptors that can explain them: 'objects' on a "
        "plain background (shape descriptors apply: ink area, width, centroid, ...) or 'photos' (tone, colour, "
        "texture and sharpness only).",
    )
    native_size: int | None = Field(
        None, ge=1, le=16384, description="Size of the training data's own images, when it differs from "
        "resolution (Fashion-MNIST: 28); an input file of exactly this size is placed as `placement` says.")
    placement: Literal["resize", "pad"] = Field(
        "resize", description="How an input image of native_size becomes resolution x resolution: 'pad' "
        "(centred on black, as the training data was) or 'resize' (centre-crop and resample; every other size "
        "is always resized).")

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

    kind: Literal["cfattack", "torchscript", "export", "factory", "module"] = Field(
        "cfattack",
        description="'cfattack': a cfattack.classifier/1 checkpoint (weights only); 'torchscript': a file for "
        "torch.jit.load; 'export': a torch.export program (.pt2); 'factory': `factory(**kwargs)` builds the "
        "module and `file` holds its state dict; 'module': a network handed over in Python (an in-memory "
        "bundle; never read from a folder). 'torchscript', 'export' and 'factory' are code: they load only "
        "with trust_code=True (CLI --trust-code).",
    )
    file: RelativePath = Field(
        description="Checkpoint, TorchScript file or state dict, relative to the bundle directory."
    )
    factory: str | None = Field(
        None,
        description="For kind 'factory': 'package.module:callable' (an importable module; only it is "
        "imported, and only with trust_code=True; nothing is evaluated from the string).",
    )
    kwargs: dict[str, JsonValue] = Field(default_factory=dict, description="Keyword arguments of the factory.")
    input_normalization: InputNormalization | None = Field(
        None, description="Mapping applied to our [-1, 1] images before the classifier sees them; None = none."
    )
    input_size: int | None = Field(
        None, ge=4, le=16384, description="Input size the classifier expects (e.g. 224): images are resized to "
        "it (bilinear, antialiased, differentiable) before the normalisation; None = the generator's resolution.")
    input_channels: Literal[1, 3] | None = Field(
        None, description="Channels the classifier expects when they differ from the images' (grey <-> RGB); "
        "None = the same.")
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
                channels = classifier.input_channels or self.image.channels
                if count not in (1, channels):
                    raise ValueError(
                        f"classifier {name!r}: input_normalization has {count} mean/std values but the "
                        + (f"images have {channels} channel(s)" if classifier.input_channels is None
                           else f"classifier's input has {channels} channel(s)")
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


def condense_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """Pydantic's multi-line report as one line: ``loc: message; loc: message (+N more)``."""
    parts = []
    errors = exc.errors()
    for error in errors[:limit]:
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ").replace("\n", " ")
        parts.append(f"{where}: {message}" if where else message)
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


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
        raise BundleError(f"{path}: invalid bundle spec: {condense_validation_error(exc)}") from None


def write_bundle_spec(spec: BundleSpec, directory: str | os.PathLike) -> Path:
    """Write ``spec`` to ``directory/bundle.json`` atomically (creating the directory); returns the path."""
    from cfattack.atomic import atomic_write_text

    if not isinstance(spec, BundleSpec):
        raise InvalidInputError(f"spec must be a BundleSpec, got {type(spec).__name__}")
    return atomic_write_text(Path(directory) / SPEC_FILENAME, spec.to_json())
