"""``cfattack evaluate``: measure explanation quality with judges the attack never saw."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cfattack.cli.common import out_option, runtime_options, start_command
from cfattack.cli.explain import trust_code_option
from cfattack.errors import InvalidInputError

__all__ = ["evaluate"]


def _methods(text: str) -> list[str]:
    from cfattack.evaluation.evaluate import METHODS

    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise InvalidInputError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


@click.command()
@click.option("--bundle", "bundle_name", default="default", show_default=True,
              help="'default' or a bundle folder (with bundle.json).")
@click.option("--classifier", default=None, help="Classifier to explain (default: the bundle's).")
@click.option("--data", default="fashion-mnist", show_default=True,
              help="Real images: the second half of this dataset's test split is explained, the first half "
                   "measures realism (fashion-mnist, mnist-5k or a folder root/<class>/*.png).")
@click.option("--images", "num_images", type=click.IntRange(min=2, max=100_000), default=200, show_default=True,
              help="How many held-out test images to explain (each toward its second-ranked class).")
@click.option("--methods", default="w+,w,pixel,paper", show_default=True,
              help="Comma-separated: w+ and w (the defaults in that space), pixel (the baseline), paper "
                   "(the paper's setting, cfattack's defaults before they changed).")
@click.option("--stability/--no-stability", default=True, show_default=True,
              help="Also explain the first method's items alone and through 'cfattack batch'.")
@click.option("--judge", "judge_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Extra judge: a cfattack classifier checkpoint (repeatable; default: the bundle's judges/ folder).")
@click.option("--batch-size", type=click.IntRange(min=1, max=4096), default=32, show_default=True)
@click.option("--resamples", type=click.IntRange(min=0, max=100_000), default=1000, show_default=True,
              help="Bootstrap resamples for the intervals.")
@out_option("evaluate", "Report folder (evaluation.json, evaluation.html).")
@runtime_options
@trust_code_option
def evaluate(bundle_name: str, classifier: str | None, data: str, num_images: int, methods: str, stability: bool,
             judge_files: tuple[Path, ...], batch_size: int, resamples: int, out: Path, device: str,
             threads: int | None, quiet: bool, trust_code: bool) -> None:
    """Explain held-out test images with several methods and measure how good the explanations are.

    Reports, per method and with 95% bootstrap intervals: validity on the saved 8-bit image,
    independent validity (a majority of judges, none used by the attack, see the target),
    realism (Frechet distance to real target-class images in a judge's embedding, beside
    generator samples and the real-vs-real floor), proximity, steps, time, and stability of
    the top-3 descriptors alone vs in a batch of 32 vs through 'cfattack batch'.

    \b
    Examples:
      cfattack evaluate --images 200 --out evaluate/
      cfattack evaluate --methods w+,paper --no-stability --images 40
    """
    from cfattack.atomic import atomic_write_text
    from cfattack.bundle.loader import load_bundle
    from cfattack.evaluation.evaluate import EvaluationImages, evaluate_explanations
    from cfattack.evaluation.judges import load_judges
    from cfattack.reports.evaluation import render_evaluation_html
    from cfattack.training.data import load_dataset

    chosen = _methods(methods)
    device = start_command(threads, device)  # before torch loads (OpenMP reads its settings then)
    note = (lambda text: None) if quiet else (lambda text: click.echo(f"evaluate: {text}", err=True))
    bundle = load_bundle(bundle_name, device=device, trust_code=trust_code)
    name = bundle.classifier(classifier).name if classifier else bundle.default_classifier
    judges = load_judges(bundle, name, extra=list(judge_files) or None)
    extra = [j for j in judges if j.startswith("judge:")]
    realism_judge = extra[0] if extra else next(iter(judges))
    test = load_dataset(data, split="test")
    half = len(test) // 2
    if len(test) - half < num_images:
        raise InvalidInputError(f"--images {num_images}: the second half of {data}'s test split has {len(test) - half}")
    spec = bundle.spec.image
    if tuple(test.images.shape[1:]) != (spec.channels, spec.resolution, spec.resolution):
        raise InvalidInputError(f"--data {data}: images {list(test.images.shape[1:])} do not match the bundle's "
                                f"{[spec.channels, spec.resolution, spec.resolution]}")
    images = EvaluationImages(images=test.images[half:half + num_images], realism_pool=test.images[:half],
                              realism_labels=test.labels[:half],
                              source=f"{data} test split, items {half}..{half + num_images - 1}")
    note(f"{num_images} images, classifier {name}, judges {', '.join(judges)}")
    report = evaluate_explanations(
        bundle, images, judges=judges, realism_judge=realism_judge, classifier=name, methods=chosen,
        stability_methods=chosen[:1] if stability else (), batch_size=batch_size, resamples=resamples, progress=note,
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json", json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    atomic_write_text(out / "evaluation.html", render_evaluation_html(report))
    for line in format_evaluation(report):
        click.echo(line)
    click.echo(f"report: {out / 'evaluation.html'} (+ evaluation.json)")


def format_evaluation(report) -> list[str]:
    """The evaluation as a plain-text table, one row per method."""
    def pct(interval) -> str:
        if interval.value is None:
            return "-"
        if interval.low is None:
            return f"{interval.value:.1%}"
        return f"{interval.value:.1%} [{interval.low:.0%}, {interval.high:.0%}]"

    lines = [f"{report.images} images, classifier {report.classifier}; judges: {', '.join(report.judges)}",
             f"realism floor (real vs real) {report.realism_floor.value:.2f}, generator samples "
             f"{report.generator_fd.value:.2f} (in {report.realism_judge}'s embedding)",
             f"{'method':<7} {'valid (saved)':<21} {'independent':<21} {'realism FD':>10} {'x gen':>6} "
             f"{'L1':>6} {'steps':>6} {'s/expl':>7} {'stable top-3':>13}"]
    for m in report.methods:
        stable = "-" if m.stability is None else f"{m.stability.same_top3_share.value:.1%}"
        ratio = "-" if m.realism_ratio_to_generator is None else f"{m.realism_ratio_to_generator:.2f}"
        lines.append(f"{m.method:<7} {pct(m.validity):<21} {pct(m.independent_validity):<21} "
                     f"{m.realism_fd.value:>10.2f} {ratio:>6} {m.pixel_l1_from_input:>6.3f} {m.steps_median:>6.0f} "
                     f"{m.seconds_per_explanation:>7.2f} {stable:>13}")
        if m.unsound_start:
            lines.append(f"        {m.unsound_start} item(s) started unsound (counted as failures)")
    return lines
