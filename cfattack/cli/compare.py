"""``cfattack compare``: explain the same images with several classifiers, side by side.

Without IMAGES it explains the example images shipped inside the package
(``cfattack/assets/examples/``, the same twenty as the repository's ``examples/``), so it works
from any install and any directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cfattack.cli.common import out_option, require_input_file, runtime_options, start_command
from cfattack.cli.explain import explain_config, explain_options
from cfattack.cli.own_models import OwnModels, check_target, own_model_options
from cfattack.errors import InvalidInputError

__all__ = ["EXAMPLE_IMAGES", "compare"]

EXAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "assets" / "examples"
"""The example images shipped as package data (``<class>-<n>.png``, two per Fashion-MNIST class)."""


def _example_images(count: int) -> list[Path]:
    images = sorted(EXAMPLE_IMAGES.glob("*.png"))
    if not images:
        raise InvalidInputError(f"no example images in {EXAMPLE_IMAGES} (an incomplete install?); pass image files")
    return images[:count]


@click.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--bundle", "bundle_name", default="default", show_default=True,
              help="'default' or a bundle folder (with bundle.json).")
@click.option("--classifiers", default="all", show_default=True,
              help="Comma-separated classifier names of the bundle, or 'all'.")
@click.option("--images", "num_images", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="Without IMAGES: how many of the example images shipped with cfattack to explain.")
@click.option("--targets", default=None,
              help="Comma-separated target per image (default: each class's most confusable class).")
@out_option("compare", "Report folder (comparison.json, comparison.html).")
@click.option("--no-realism", is_flag=True, help="Skip the realism measure (needs the bundle's dataset).")
@click.option("--classifier", default=None,
              help="With --generator: your classifier FILE (TorchScript, .pt2, cfattack checkpoint, or "
                   "package.module:factory with --classifier-weights), compared on its own.")
@own_model_options
@explain_options
@runtime_options
def compare(images: tuple[Path, ...], bundle_name: str, classifiers: str, num_images: int, targets: str | None,
            out: Path, no_realism: bool, steps: int, lr: float, threshold: float, space: str, objective: str,
            proximity: float, layers: tuple[int, ...] | None, shift_lr: float | None, shift_search: int,
            robust_shift: int, class_search: int, inversion_steps: int | None,
            seed: int, device: str, threads: int | None, quiet: bool, trust_code: bool = False,
            classifier: str | None = None, **own: Any) -> None:
    """Explain the same images with each classifier of a bundle and compare the explanations.

    Per classifier: flip rate, median steps and latent distance, realism of the counterfactuals
    (Fréchet distance to real images of the target class, in one shared reference embedding)
    and attribution concentration; plus one image's strip per classifier. Without IMAGES, the
    first --images of the example images shipped with cfattack.

    \b
    Examples:
      cfattack compare --images 20 --out compare/
      cfattack compare --classifiers baseline,lcc examples/coat-1.png --targets pullover
    """
    for image in images:  # a missing file, a folder or a FIFO: one line and exit 1 before loading anything
        require_input_file(image)
    models = OwnModels(classifier=classifier, bundle_name=bundle_name, **own)
    if models.active:
        if not images:
            raise InvalidInputError("with --generator, name the IMAGES to explain (the shipped examples are "
                                    "Fashion-MNIST)")
        for target in (targets or "").split(","):
            if target.strip():
                check_target(target.strip(), models.class_names)  # before any network is loaded
    elif classifier is not None:
        raise InvalidInputError("--classifier FILE goes with --generator; pick a bundle's classifiers with --classifiers")
    device = start_command(threads, device)  # before torch loads (OpenMP reads its settings then)
    from cfattack.bundle.loader import load_bundle
    from cfattack.evaluation.compare import compare_classifiers
    from cfattack.progress import ExplainProgress, Progress
    from cfattack.reports.comparison import write_comparison

    paths: list[Path] = list(images) or _example_images(num_images)
    target_list = None
    if targets is not None:
        target_list = [t.strip() for t in targets.split(",") if t.strip()]
        if len(target_list) == 1:
            target_list = target_list * len(paths)
    if models.active:
        bundle = models.bundle(device, trust_code, quiet=quiet, cost_steps=(steps, inversion_steps))
    else:
        bundle = load_bundle(bundle_name, device=device, trust_code=trust_code)
    names = None if classifiers.strip().lower() == "all" else [n.strip() for n in classifiers.split(",") if n.strip()]
    real = None
    if not no_realism:
        real = _real_images(bundle)
    config = explain_config(steps, lr, threshold, space, objective, proximity, inversion_steps, seed, layers,
                            shift_lr, shift_search, robust_shift, class_search)

    bar = Progress("compare", total=len(names or bundle.classifiers), unit="classifiers", quiet=quiet, leave=True)
    inner = Progress("", quiet=not bar.live, position=1, stream=bar.stream)  # the steps inside one classifier
    stages = ExplainProgress(inner, attack_steps=steps)
    done: list[str] = []

    def on_classifier(name: str) -> None:
        bar.update_to(len(done))
        done.append(name)
        bar.note(f"now {name}, {len(paths)} images", refresh=True)
        stages.prefix = f"{name}: "

    with bar, inner:
        result = compare_classifiers(bundle, paths, target_list, names, config, real=real,
                                     on_classifier=on_classifier, on_stage=stages.on_stage,
                                     on_progress=stages.on_progress)
        bar.update_to(len(done))
        inner.close()
        times = ", ".join(f"{r.name} {r.seconds:.0f} s" for r in result.report.classifiers)
        bar.close(f"compare: {len(done)} classifiers x {len(paths)} images in {bar.elapsed:.1f} s ({times})")
    files = write_comparison(result, out)
    for line in format_table(result.report):
        click.echo(line)
    click.echo(f"report: {files['html']} (+ {files['json'].name})")


def _real_images(bundle: Any) -> tuple[Any, Any] | None:
    """Real test images of the bundle's dataset, for realism; None (with a note) when unavailable."""
    from cfattack.errors import CfattackError
    from cfattack.training.data import load_dataset

    data = (bundle.spec.provenance.data or "") if bundle.spec.provenance else ""
    name = "fashion-mnist" if "fashion-mnist" in data.lower() else None
    if name is None:
        click.echo("note: realism skipped (the bundle names no dataset cfattack can load)", err=True)
        return None
    try:
        test = load_dataset(name, "test")
    except CfattackError as exc:
        click.echo(f"note: realism skipped ({exc})", err=True)
        return None
    return test.images, test.labels


def format_table(report: Any) -> list[str]:
    """The comparison as a fixed-width text table (stdout)."""
    def f(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else fmt.format(v)

    width = max(10, *(len(r.name) for r in report.classifiers))
    lines = [f"{'classifier':<{width}}  acc.    silh.  flip  steps  latent  realism (floor)  top-3  most often first"]
    for r in report.classifiers:
        first = next(iter(r.top_descriptors), "n/a")
        m = r.classifier_metrics
        lines.append(f"{r.name:<{width}}  {f(m.get('accuracy'), '{:6.2%}')}  {f(m.get('silhouette'), '{:5.3f}')}  "
                     f"{f(r.flip_rate, '{:4.0%}')}  {f(r.median_steps, '{:5.0f}')}  "
                     f"{f(r.median_latent_distance, '{:6.2f}')}  {f(r.realism_fd, '{:7.2f}')} "
                     f"({f(r.realism_floor, '{:.2f}')})  {f(r.attribution_concentration, '{:5.0%}')}  {first}")
    return lines

