"""Loading bundles: find a bundle, load every network it names, check they fit, return a `Bundle`.

A bundle is a directory naming every network an explanation needs, described by ``bundle.json``.

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
Bundles are untrusted input: every file must lie inside the folder (symbolic links that lead
out are refused), and classifiers that are code (factory, TorchScript) load only with
``trust_code=True``; see `cfattack.bundle.trust`.

The spec models and ``bundle.json`` I/O live in `cfattack.bundle.spec`, classifier wrapping
and loading in `cfattack.bundle.classifier`; this module resolves ``"default"`` or a path to a
``bundle.json`` (`bundle_spec_path`, reading `DEFAULT_BUNDLE_DIR`), loads the generator and
encoder, and assembles the `Bundle`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

import cfattack.bundle.trust as trust
from cfattack.bundle.classifier import BundleClassifier, _load_classifier
from cfattack.bundle.messages import _one_line
from cfattack.bundle.spec import SPEC_FILENAME, BundleError, BundleSpec, _check_relative_path, read_bundle_spec
from cfattack.classes import resolve_choice, resolve_class
from cfattack.errors import InvalidInputError, NetworkLoadError, UnsafePickleError

__all__ = ["DEFAULT_BUNDLE_DIR", "Bundle", "bundle_file", "bundle_spec_path", "load_bundle"]

DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parents[1] / "assets" / "default"

_ZIP_MAGIC = b"PK\x03\x04"


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


# ---------------------------------------------------------------------------------------------
# Loading networks.


def _as_device(device: str | torch.device) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"invalid device {device!r} ({_one_line(exc)})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {str(device)!r} requested but CUDA is not available (use 'cpu')")
    return device


def _inside(root: Path, relative: str) -> tuple[Path, str | None]:
    """``root / relative`` with links followed, and why it is refused (None if it lies inside ``root``)."""
    path = root / relative
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop (RuntimeError before Python 3.13)
        return path, f"cannot be resolved ({_one_line(exc)})"
    if not resolved.is_relative_to(root):
        return resolved, f"is a link to {resolved}, outside the bundle folder; paths may not leave it (copy the file in)"
    return resolved, None


def bundle_file(spec_path: str | os.PathLike, relative: str) -> Path:
    """A file named in a bundle's spec, for callers that read one file without `load_bundle`.

    ``spec_path`` is the bundle's ``bundle.json`` (see `bundle_spec_path`).

    Raises:
        BundleError: ``relative`` leaves the bundle folder, also through a symbolic link.
    """
    root = Path(spec_path).parent.resolve()
    try:
        _check_relative_path(relative)
    except ValueError as exc:
        raise BundleError(f"bundle at {root}: {exc}") from None
    problem = _inside(root, relative)[1]
    if problem is not None:
        raise BundleError(f"bundle at {root}: {relative} {problem}")
    return root / relative


def _check_files(spec: BundleSpec, root: Path) -> None:
    """Every file the spec names lies inside ``root`` (``root`` resolved) and is a regular file."""
    outside, missing = [], []
    for role, rel in spec.files().items():
        resolved, problem = _inside(root, rel)
        if problem is not None:
            outside.append(f"{role} ({rel}) {problem}")
        elif not resolved.is_file():
            missing.append(f"{role} ({rel})")
    if outside:
        raise BundleError(f"bundle {spec.name!r} at {root}: {'; '.join(outside)}")
    if missing:
        raise BundleError(f"bundle {spec.name!r} at {root}: missing file(s): {', '.join(missing)}")


def _load_generator(spec: BundleSpec, root: Path, device: torch.device) -> torch.nn.Module:
    from cfattack.stylegan.checkpoint import load_generator_checkpoint
    from cfattack.stylegan.official_pickle import load_network_pkl

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
            G = load_generator_checkpoint(path, device)
        else:
            G = load_network_pkl(path, device=device, load=("G_ema",))["G_ema"]
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
    from cfattack.inversion.encoder import load_encoder_checkpoint

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


# ---------------------------------------------------------------------------------------------
# The bundle.


class Bundle:
    """A loaded bundle: the networks of one domain and what they agree on.

    Attributes:
        spec: the validated `BundleSpec`.
        root: the bundle directory (relative paths in the spec are relative to it).
        generator: our `cfattack.stylegan.generator.Generator` (eval mode, frozen).
        encoder: `cfattack.inversion.encoder.Encoder` or None.
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
            path = self.root / _check_relative_path(relative)
        except ValueError as exc:
            raise InvalidInputError(f"bundle {self.name!r}: {exc}") from None
        problem = _inside(self.root, relative)[1]
        if problem is not None:
            raise InvalidInputError(f"bundle {self.name!r}: {relative} {problem}")
        return path

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


def load_bundle(
    name_or_path: str | os.PathLike = "default",
    device: str | torch.device = "cpu",
    *,
    trust_code: bool = False,
    code_time_limit: float | None = None,
) -> Bundle:
    """Load a bundle and check that its networks fit together.

    Args:
        name_or_path: ``"default"`` (the bundle shipped in ``cfattack/assets/default/``), a
            directory containing ``bundle.json``, or the path of a ``bundle.json``.
        device: where to put the networks (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        trust_code: allow classifiers that are code (kind ``factory``: imports and calls a
            module; kind ``torchscript``: a program). Only for bundles whose author you trust;
            weights-only bundles (like the default one) need no trust.
        code_time_limit: seconds each trusted code classifier may take to import, build, load
            and run a dummy batch; past it the load fails (see `cfattack.bundle.trust`). None:
            `cfattack.bundle.trust.TRUSTED_CODE_TIME_LIMIT_S` (60 s).

    Returns:
        A `Bundle` with every network loaded, in eval mode and frozen. Networks that are not
        code are not run here; each classifier checks its output shape on every call.

    Raises:
        UntrustedCodeError: the bundle has factory or TorchScript classifiers and ``trust_code``
            is False (nothing was loaded, imported or run; the message lists them).
        BundleError: no such bundle, invalid ``bundle.json``, missing files or files whose links
            leave the bundle folder, or networks that do not fit (generator size vs the spec,
            encoder vs generator, classifier outputs vs the number of classes, an unresolvable factory).
        NetworkLoadError: a network file that cannot be read (naming the bundle and the network),
            or trusted code that overran ``code_time_limit``.
        UnsafePickleError: an official pickle that references a disallowed global.
    """
    device = _as_device(device)
    if code_time_limit is None:
        code_time_limit = trust.TRUSTED_CODE_TIME_LIMIT_S  # read now, so it can be changed at run time
    if not (isinstance(code_time_limit, (int, float)) and 0 < code_time_limit < math.inf):
        raise InvalidInputError(f"code_time_limit must be a positive, finite number of seconds, got {code_time_limit!r}")
    spec_path = bundle_spec_path(name_or_path)
    spec = read_bundle_spec(spec_path)
    root = spec_path.parent.resolve()
    trust.check_trust(spec, trust_code)  # before any file is read: a refused bundle costs nothing
    _check_files(spec, root)
    generator = _load_generator(spec, root, device)
    encoder = _load_encoder(spec, root, generator, device)
    classifiers = {
        name: _load_classifier(name, spec, root, device, trust_code=trust_code, time_limit=code_time_limit)
        for name in spec.classifiers
    }
    return Bundle(spec, root, generator, encoder, classifiers, device)
