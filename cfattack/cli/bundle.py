"""``cfattack bundle create``: save a generator, an encoder, classifiers and class names as a bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cfattack.cli.common import start_command, threads_option
from cfattack.errors import InvalidInputError

__all__ = ["bundle_group"]


@click.group("bundle")
def bundle_group() -> None:
    """Make and inspect bundles (generator + encoder + classifiers + class names)."""


def _parse_named(values: tuple[str, ...], option: str, what: str) -> dict[str, str]:
    named: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name or not text:
            raise InvalidInputError(f"{option} takes NAME={what}, got {value!r}")
        if name in named:
            raise InvalidInputError(f"{option} {name}: given twice")
        named[name] = text
    return named


def _classifier_entries(files: tuple[str, ...], specs: tuple[str, ...]) -> dict[str, Any]:
    """--classifier NAME=FILE plus --classifier-spec NAME=JSON -> what `assemble_bundle` takes."""
    entries: dict[str, Any] = dict(_parse_named(files, "--classifier", "FILE"))
    for name, text in _parse_named(specs, "--classifier-spec", "JSON").items():
        if name not in entries:
            raise InvalidInputError(f"--classifier-spec {name}: no --classifier {name}=FILE names its file")
        try:
            fields = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"--classifier-spec {name}: not JSON ({exc})") from None
        if not isinstance(fields, dict) or "file" in fields:
            raise InvalidInputError(f"--classifier-spec {name}: expected a JSON object of classifier fields "
                                    "(kind, factory, kwargs, input_normalization, description) without file")
        entries[name] = {"file": entries[name], **fields}
    return entries


@bundle_group.command("create")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--generator", required=True, help="Generator file (cfattack checkpoint or official pickle).")
@click.option("--classifier", "classifiers", multiple=True, required=True, metavar="NAME=FILE",
              help="A classifier under a name: a cfattack checkpoint, a TorchScript file (needs --trust-code) or, "
                   "with --classifier-spec, a state dict for a factory. Repeat for several; the first is the default.")
@click.option("--classifier-spec", "classifier_specs", multiple=True, metavar="NAME=JSON",
              help="More about classifier NAME, as bundle.json writes it: e.g. "
                   "'{\"kind\": \"factory\", \"factory\": \"pkg.module:make_net\", \"kwargs\": {\"num_classes\": 10}}' "
                   "or an input_normalization. Factories are code: they need --trust-code.")
@click.option("--encoder", default=None, help="Encoder checkpoint (image -> ws).")
@click.option("--data", default=None,
              help="Training data the class names come from: fashion-mnist, mnist-5k or a folder (or use --classes).")
@click.option("--classes", default=None, metavar="A,B,...",
              help="Class names in logit order, instead of --data [default: names stored in the default "
                   "classifier's file].")
@click.option("--classifier-size", type=click.IntRange(4, 16384), default=None,
              help="Input size of the classifiers: images are resized to it (antialiased) [default: the "
                   "generator's resolution].")
@click.option("--normalize", default=None, metavar="imagenet|none|MEAN,STD",
              help="Input values of the classifiers: imagenet, none ([-1, 1]) or MEAN,STD on [0, 1].")
@click.option("--image-kind", type=click.Choice(["photos", "objects"]), default=None,
              help="What the images show [default: photos for RGB, objects for grey].")
@click.option("--name", required=True, help="Short bundle name.")
@click.option("--description", default="", help="One or two sentences on what the bundle explains.")
@click.option("--latent-space", type=click.Choice(["w", "w+"]), default="w+", show_default=True)
@click.option("--descriptor-model", default=None,
              help="Descriptor model from `cfattack train descriptors` (fitted on this generator); shipped as "
                   "descriptors.pt for attribution.")
@click.option("--command", "commands", multiple=True, help="A command that produced the files (provenance); repeatable.")
@click.option("--metrics", "metrics_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="JSON file of metrics to record in the provenance.")
@click.option("--trust-code", is_flag=True,
              help="Allow classifiers that are code: TorchScript files and factories (which import and call a "
                   "Python module). Only for files whose author you trust; cfattack checkpoints need no trust.")
@threads_option
def bundle_create(out_dir: Path, generator: str, classifiers: tuple[str, ...], classifier_specs: tuple[str, ...],
                  encoder: str | None, data: str | None, classes: str | None, classifier_size: int | None,
                  normalize: str | None, image_kind: str | None, name: str, description: str, latent_space: str,
                  descriptor_model: str | None, commands: tuple[str, ...], metrics_file: Path | None,
                  trust_code: bool, threads: int | None) -> None:
    """Assemble trained files into a bundle directory and check that it loads.

    \b
    Examples:
      cfattack bundle create my_bundle --generator runs/gan/generator.pt --encoder runs/enc/encoder.pt \\
          --classifier baseline=runs/clf/classifier.pt --data fashion-mnist --name fashion-mnist-32 \\
          --descriptor-model runs/descriptors.pt
      cfattack bundle create my_bundle --generator runs/gan/generator.pt --data fashion-mnist --name custom \\
          --classifier resnet=resnet_state.pt --trust-code \\
          --classifier-spec 'resnet={"kind": "factory", "factory": "my_models:make_resnet"}'
      cfattack bundle create afhq --generator stylegan3-r-afhqv2-512x512.pkl --classifier resnet=resnet.pt \
          --classes cat,dog,wild --classifier-size 224 --normalize imagenet --name afhq --trust-code
    """
    start_command(threads)  # the bundle is checked by loading it on the CPU
    from cfattack.training.assemble import assemble_bundle

    metrics_data = None
    if metrics_file is not None:
        try:
            metrics_data = json.loads(metrics_file.read_text())
        except ValueError as exc:
            raise InvalidInputError(f"--metrics {metrics_file}: not JSON ({exc})") from exc
    from cfattack.bundle.preprocess import parse_normalize
    from cfattack.cli.own_models import own_class_names

    entries = _classifier_entries(classifiers, classifier_specs)
    normalization = parse_normalize(normalize)
    for clf_name, entry in list(entries.items()):
        fields = dict(entry) if isinstance(entry, dict) else {"file": entry}
        if classifier_size is not None:
            fields.setdefault("input_size", classifier_size)
        if normalization is not None:
            fields.setdefault("input_normalization", normalization.model_dump(mode="json"))
        entries[clf_name] = fields
    bundle = assemble_bundle(out_dir, generator=generator, classifiers=entries,
                             class_names=own_class_names(classes, None, None), image_kind=image_kind, data=data, name=name, encoder=encoder, description=description,
                             latent_space=latent_space, descriptor_model=descriptor_model, commands=commands,
                             metrics=metrics_data, trust_code=trust_code)
    click.echo(f"bundle {bundle.spec.name!r} written to {out_dir}: {len(bundle.class_names)} classes, "
               f"classifiers {', '.join(bundle.classifiers)}, "
               f"encoder {'yes' if bundle.encoder is not None else 'no'}, "
               f"descriptor model {'yes' if bundle.descriptor_model_path is not None else 'no'}")
