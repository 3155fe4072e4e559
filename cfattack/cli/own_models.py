"""The shared ``--generator`` / ``--classifier FILE`` flags: explain your own models without a bundle folder.

``explain``, ``batch`` and ``compare`` take ``--generator G.pkl --classifier MODEL [--classes ...]`` instead
of ``--bundle``; `own_model_options` adds the flags, `own_class_names` and `check_target` read
and check the class names before any network is loaded (an unknown target costs nothing),
`own_bundle` loads the two networks into an in-memory bundle
(`cfattack.bundle.custom.bundle_from_networks`), and `cpu_cost_note` warns, measured on this
machine, when a large generator is about to run on the CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from cfattack.errors import InvalidInputError

__all__ = ["OwnModels", "check_target", "cpu_cost_note", "own_bundle", "own_class_names", "own_model_options"]

_MAX_CLASSES_FILE = 1 << 20
_NOTE_FROM_RESOLUTION = 256  # below this a CPU explanation takes minutes at most

_OPTIONS = (
    click.option("--generator", default=None,
                 help="Your own StyleGAN3 generator (an official NVIDIA pickle or a cfattack checkpoint) instead of "
                      "--bundle; then --classifier is a classifier FILE (see docs/your-own-models.md)."),
    click.option("--classifier-weights", default=None, metavar="FILE",
                 help="With --generator and --classifier package.module:factory: the factory's state dict."),
    click.option("--classes", default=None, metavar="A,B,...",
                 help="With --generator: class names in logit order [default: names stored in the classifier "
                      "file, else the indices 0, 1, ...]."),
    click.option("--classes-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="With --generator: a text file of class names, one a line, in logit order."),
    click.option("--classifier-size", type=click.IntRange(4, 16384), default=None,
                 help="With --generator: the classifier's input size; images are resized to it (antialiased) "
                      "[default: the generator's resolution]."),
    click.option("--classifier-channels", type=click.Choice(["1", "3"]), default=None,
                 help="With --generator: the classifier's input channels when they differ from the generator's."),
    click.option("--normalize", default=None, metavar="imagenet|none|MEAN,STD",
                 help="With --generator: the classifier's input values: imagenet ([0, 1] then ImageNet mean/std), "
                      "none ([-1, 1] as the generator makes them) or MEAN,STD on [0, 1] [default: none]."),
    click.option("--image-kind", type=click.Choice(["photos", "objects"]), default=None,
                 help="With --generator: what the images show, which picks the descriptors [default: photos for "
                      "RGB, objects for grey]."),
)


def own_model_options(command: Any) -> Any:
    """Add the own-model flags (see the module docstring)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


class OwnModels:
    """The own-model flags of one command, checked; ``active`` when ``--generator`` was given."""

    def __init__(self, generator: str | None, classifier: str | None, classifier_weights: str | None,
                 classes: str | None, classes_file: Path | None, classifier_size: int | None,
                 classifier_channels: str | None, normalize: str | None, image_kind: str | None,
                 bundle_name: str = "default") -> None:
        extras = {"--classifier-weights": classifier_weights, "--classes": classes, "--classes-file": classes_file,
                  "--classifier-size": classifier_size, "--classifier-channels": classifier_channels,
                  "--normalize": normalize, "--image-kind": image_kind}
        self.active = generator is not None
        if not self.active:
            given = [flag for flag, value in extras.items() if value is not None]
            if given:
                raise InvalidInputError(f"{', '.join(given)} only apply with --generator (your own models)")
            return
        if bundle_name != "default":
            raise InvalidInputError("give --bundle, or --generator and --classifier, not both")
        if classifier is None:
            raise InvalidInputError("--generator needs --classifier FILE (TorchScript, .pt2 or package.module:factory)")
        if classes is not None and classes_file is not None:
            raise InvalidInputError("give --classes or --classes-file, not both")
        from cfattack.bundle.preprocess import parse_normalize

        self.generator, self.classifier, self.weights = generator, classifier, classifier_weights
        self.size, self.image_kind = classifier_size, image_kind
        self.channels = None if classifier_channels is None else int(classifier_channels)
        self.normalization = parse_normalize(normalize)
        if not Path(generator).is_file():
            raise InvalidInputError(f"--generator {generator}: no such file")
        self.class_names = own_class_names(classes, classes_file, classifier if classifier_weights is None else None)

    def bundle(self, device: str, trust_code: bool, quiet: bool = False, cost_steps: tuple[int, int] | None = None) -> Any:
        """Load both networks into an in-memory `Bundle` (see `own_bundle`)."""
        return own_bundle(self, device, trust_code, quiet=quiet, cost_steps=cost_steps)


def own_class_names(classes: str | None, classes_file: Path | None, classifier_file: str | None) -> list[str] | None:
    """Class names from ``--classes``, ``--classes-file`` or the classifier file (read without running it);
    None when none is given (the classes are then the indices)."""
    if classes is not None:
        names = [n.strip() for n in classes.split(",")]
        if any(not n for n in names):
            raise InvalidInputError(f"--classes has an empty name: {classes!r}")
        return names
    if classes_file is not None:
        if not classes_file.is_file():
            raise InvalidInputError(f"--classes-file {classes_file}: no such file")
        if classes_file.stat().st_size > _MAX_CLASSES_FILE:
            raise InvalidInputError(f"--classes-file {classes_file}: larger than {_MAX_CLASSES_FILE} bytes")
        try:
            text = classes_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"--classes-file {classes_file}: cannot read it ({exc})") from None
        return [line.strip() for line in text.splitlines() if line.strip()]
    if classifier_file is not None:
        from cfattack.bundle.custom import class_names_in_file

        return class_names_in_file(classifier_file)
    return None


def check_target(target: str, names: list[str] | None) -> None:
    """Refuse an unknown target before any network is loaded (names None: it must be a class index)."""
    if names is not None:
        from cfattack.classes import check_class_names, resolve_class

        check_class_names(tuple(names), {})
        resolve_class(target, tuple(names), {})
    elif not target.strip().isdigit():
        raise InvalidInputError(f"unknown class {target!r}: the classifier carries no class names, so targets are "
                                "indices (0, 1, ...); name the classes with --classes A,B,...")


def _describe_files(models: OwnModels) -> str:
    parts = [f"generator {models.generator}", f"classifier {models.classifier}"]
    if models.weights is not None:
        parts.append(f"weights {models.weights}")
    return "Own models: " + ", ".join(parts) + "."


def own_bundle(models: OwnModels, device: str, trust_code: bool, *, quiet: bool = False,
               cost_steps: tuple[int, int] | None = None) -> Any:
    """The generator and classifier files as an in-memory `Bundle` on ``device``.

    The classifier is loaded first (a refused code file costs no generator load). With
    ``cost_steps`` (attack steps, inversion steps), a CPU run of a large generator prints `cpu_cost_note`.
    """
    from cfattack.bundle.custom import bundle_from_networks, load_classifier_file
    from cfattack.stylegan.loading import load_generator

    net, _ = load_classifier_file(models.classifier, models.weights, trust_code=trust_code)
    names = models.class_names
    if names is None:
        carried = getattr(net, "class_names", None)  # a scripted module's attribute, if it has one
        if isinstance(carried, (list, tuple)) and carried and all(isinstance(n, str) for n in carried):
            names = list(carried)
    G = load_generator(models.generator)
    if cost_steps is not None and not quiet:
        note = cpu_cost_note(G, device, *cost_steps)
        if note:
            click.echo(note, err=True)
    return bundle_from_networks(
        G, net, names, input_size=models.size, input_channels=models.channels, normalization=models.normalization,
        image_kind=models.image_kind, name=Path(models.generator).stem, description=_describe_files(models),
        device=device,
    )


def cpu_cost_note(G: Any, device: str, attack_steps: int, inversion_steps: int | None = 100) -> str | None:
    """One line of the expected CPU time per image for a generator of >= 256 px, from one timed forward pass.

    The estimate counts the default inversion schedule (`cfattack.inversion.search.schedule_for_resolution`:
    search starts, W steps) plus ``inversion_steps`` and ``attack_steps``, a backward pass as two forward passes.
    """
    if not str(device).startswith("cpu") or int(G.img_resolution) < _NOTE_FROM_RESOLUTION:
        return None
    import torch

    from cfattack.inversion.search import schedule_for_resolution

    schedule = schedule_for_resolution(int(G.img_resolution))
    with torch.no_grad():
        ws = G.mapping.w_avg.view(1, 1, -1).expand(1, G.num_ws, -1).to(torch.float32)
        tic = time.perf_counter()
        G.synthesis(ws, noise_mode="const")
        forward = time.perf_counter() - tic
    passes = schedule.starts + 3 * (schedule.w_steps + (100 if inversion_steps is None else inversion_steps)
                                    + attack_steps)
    minutes = forward * passes / 60
    return (f"note: {G.img_resolution} px generator on the CPU: about {minutes:.0f} minutes per image on this CPU "
            f"(one forward pass takes {forward:.1f} s); use a GPU (--device cuda)")
