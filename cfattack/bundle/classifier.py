"""Classifiers as the rest of cfattack sees them, and loading one of each kind a bundle names.

`BundleClassifier` wraps a loaded network: it applies the classifier's `InputNormalization`
to our [-1, 1] images and checks input and output shapes on every call. `_load_classifier`
builds one from a `ClassifierSpec` of kind ``cfattack`` (a cfattack.classifier/1 checkpoint,
weights only: its shapes are checked from the recorded architecture, nothing is run), or of the
code kinds ``torchscript`` and ``factory`` (`resolve_factory` imports ``package.module:callable``,
the state dict is loaded strictly). Code loads only when trusted (`cfattack.bundle.trust`), and
is then built and probed with a dummy batch under a time limit, so a wrong class count fails at
load time, not mid-attack. Weights-only networks are never run at load time; their first call
turns any failure into one `BundleError` line.
"""

from __future__ import annotations

import importlib
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from cfattack.bundle.messages import _one_line, _torch_reason
from cfattack.bundle.preprocess import adapt_images
from cfattack.bundle.spec import _FACTORY, BundleError, BundleSpec, ClassifierSpec, InputNormalization
from cfattack.bundle.trust import CODE_KINDS, TRUSTED_CODE_TIME_LIMIT_S, describe_code, run_with_time_limit
from cfattack.classes import resolve_class
from cfattack.errors import InvalidInputError, NetworkLoadError, UnsafePickleError, UntrustedCodeError
from cfattack.torch_zip import read_torch_zip

__all__ = ["BundleClassifier", "is_torchscript_archive", "resolve_factory"]

_PROBE_BATCH = 2  # batch size of the dummy forward pass that checks a classifier's output


# ---------------------------------------------------------------------------------------------
# Classifiers as the rest of cfattack sees them.


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


class BundleClassifier(torch.nn.Module):
    """A bundle's classifier: images [N, C, R, R] in [-1, 1] -> logits [N, K].

    Wraps the loaded network ``net``: applies the spec's input normalisation (one per-channel
    affine map, folded from the range mapping and mean/std) and checks the input and output
    shapes on every call. Until one call has succeeded, an exception from ``net`` becomes a
    one-line `BundleError` naming the classifier (weights-only networks are not test-run when
    the bundle loads, so their first call is their check). Parameters are frozen; gradients
    still flow to the images.

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
        input_size: int | None = None,
        input_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.input_size = input_size  # None: the network reads img_resolution
        self.input_channels = input_channels  # None: the network reads img_channels
        self.net = net
        self.name = name
        self.num_classes = num_classes
        self.img_channels = img_channels
        self.img_resolution = img_resolution
        self.normalization = normalization
        self.verified = False  # set by the first call that returns well-shaped logits
        if normalization is None:
            self.register_buffer("scale", None)
            self.register_buffer("shift", None)
        else:
            scale, shift = normalization.affine(input_channels or img_channels)
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[N, C, R, R] in [-1, 1] -> what ``net`` expects: channels, size, then the normalisation."""
        images = adapt_images(images, self.input_size, self.input_channels)
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
        if self.verified:
            logits = self.net(self.normalize(images))
        else:
            logits = self._first_call(images)
        problem = self._output_problem(logits, images.shape[0])
        if problem is not None:
            raise BundleError(f"classifier {self.name!r} {problem}")
        self.verified = True
        return logits

    def _first_call(self, images: torch.Tensor) -> Any:
        try:
            return self.net(self.normalize(images))
        except torch.OutOfMemoryError:
            raise  # a resource problem of this call, not a broken network
        except Exception as exc:  # a network that cannot run on the bundle's images: say so in one line
            raise BundleError(
                f"classifier {self.name!r} fails on images of shape {list(images.shape)} "
                f"({type(exc).__name__}: {_one_line(exc)})"
            ) from exc

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
        return (f"name={self.name!r}, num_classes={self.num_classes}, normalization={self.normalization is not None}, "
                f"input_size={self.input_size}, input_channels={self.input_channels}")


# ---------------------------------------------------------------------------------------------
# Loading classifiers.


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


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript zips hold ``<name>/constants.pkl``; ``torch.load`` would silently run jit.load on them."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_state_dict(path: Path, where: str) -> dict[str, torch.Tensor]:
    if is_torchscript_archive(path):
        raise NetworkLoadError(
            f"{where}: {path.name} is a TorchScript file, not a state dict; set kind to 'torchscript'"
        )
    try:  # bounded and code-free, like our own checkpoints (the factory itself is the trusted code)
        state = read_torch_zip(path, path.name, what="state dict")
    except UnsafePickleError as exc:
        raise UnsafePickleError(exc.global_name, f"{where}: {exc}") from None
    except NetworkLoadError as exc:
        raise NetworkLoadError(f"{where}: {exc}") from None
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


class _ExportedProgram(torch.nn.Module):
    """A ``torch.export`` program's module; its train/eval mode was fixed at export (it refuses ``eval()``)."""

    def __init__(self, program: torch.nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> _ExportedProgram:
        self.training = mode  # not passed on: the exported graph has no modes to switch
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.program(images)


def _load_export(path: Path, where: str) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _ExportedProgram(torch.export.load(str(path)).module())
    except Exception as exc:  # torch raises many types for a file that is not an exported program
        raise NetworkLoadError(
            f"{where}: {path.name} is not a loadable torch.export program ({type(exc).__name__}: {_one_line(exc)})"
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


def _check_cfattack_shapes(net: Any, spec: BundleSpec, where: str) -> None:
    """A cfattack classifier's shapes from its recorded architecture: checked without running it."""
    kwargs = getattr(net, "factory_kwargs", None) or {}
    num_classes = getattr(net, "num_classes", None)
    if num_classes is not None and num_classes != spec.num_classes:
        raise BundleError(f"{where}: the checkpoint has {num_classes} outputs per image for {spec.num_classes} classes")
    channels, resolution = spec.image.channels, spec.image.resolution
    if kwargs.get("in_channels", channels) != channels:
        raise BundleError(f"{where}: the checkpoint reads {kwargs['in_channels']}-channel images but the bundle's "
                          f"have {channels}")
    if kwargs.get("backbone", "cnn") == "mlp" and kwargs.get("image_size", resolution) != resolution:
        raise BundleError(f"{where}: the checkpoint reads {kwargs['image_size']}x{kwargs['image_size']} images but "
                          f"the bundle's are {resolution}x{resolution}")
    if kwargs.get("backbone", "cnn") == "cnn" and resolution < 8:  # three 2x poolings need at least 8 pixels
        raise BundleError(f"{where}: the checkpoint's CNN needs images of at least 8x8, the bundle's are "
                          f"{resolution}x{resolution}")


def _load_classifier(
    name: str,
    spec: BundleSpec,
    root: Path,
    device: torch.device,
    *,
    trust_code: bool = False,
    time_limit: float = TRUSTED_CODE_TIME_LIMIT_S,
) -> BundleClassifier:
    """Load one classifier of the bundle; code kinds only with ``trust_code``, within ``time_limit`` seconds.

    Raises:
        UntrustedCodeError: a factory or TorchScript classifier without ``trust_code`` (nothing imported or read).
        BundleError, NetworkLoadError: the file cannot be loaded or the network does not fit.
    """
    where = f"bundle {spec.name!r}: classifier {name!r}"
    cspec = spec.classifiers[name]
    path = root / cspec.file
    if cspec.kind == "module":
        raise BundleError(f"{where} is of kind 'module', a network handed over in Python; a bundle folder "
                          "cannot hold one (save it as TorchScript, a torch.export program or a factory + state dict)")
    if cspec.kind in CODE_KINDS:
        if not trust_code:
            raise UntrustedCodeError(
                f"{where} would run {describe_code(cspec)}; load it only if you trust the bundle's author, "
                "with --trust-code (CLI) or trust_code=True (Python)"
            )
        return run_with_time_limit(lambda: _load_code_classifier(name, spec, path, device, where), time_limit, where)

    from cfattack.classifiers.checkpoint import load_classifier_checkpoint

    try:
        net, metadata = load_classifier_checkpoint(path, "cpu")
    except NetworkLoadError as exc:
        raise NetworkLoadError(f"{where}: {exc}") from exc
    _check_classifier_classes(metadata, spec, where)
    _check_cfattack_shapes(net, spec, where)
    return _wrap(net, name, spec, device)


def _wrap(net: torch.nn.Module, name: str, spec: BundleSpec, device: torch.device) -> BundleClassifier:
    classifier = BundleClassifier(
        net, name=name, num_classes=spec.num_classes, img_channels=spec.image.channels,
        img_resolution=spec.image.resolution, normalization=spec.classifiers[name].input_normalization,
        input_size=spec.classifiers[name].input_size, input_channels=spec.classifiers[name].input_channels,
    )
    return classifier.to(device).eval().requires_grad_(False)


def _load_code_classifier(
    name: str, spec: BundleSpec, path: Path, device: torch.device, where: str
) -> BundleClassifier:
    """Build a trusted code classifier and probe it (runs in `run_with_time_limit`'s thread)."""
    cspec = spec.classifiers[name]
    if cspec.kind == "torchscript":
        net = _load_torchscript(path, where)
    elif cspec.kind == "export":
        net = _load_export(path, where)
    else:
        net = _build_factory_classifier(cspec, path, where)
    classifier = _wrap(net, name, spec, device)
    _probe(classifier, where, device)
    classifier.verified = True
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
