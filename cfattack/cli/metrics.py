"""``cfattack metrics ...``: measure trained models (``metrics fd``: generator quality)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cfattack.cli.common import SEED, FiniteFloat, device_option, generator_file, start_command, threads_option

__all__ = ["metrics"]


@click.group()
def metrics() -> None:
    """Measure trained models."""


@metrics.command("fd")
@click.option("--network", required=True, help="Generator file (checkpoint or official pickle) or 'default'.")
@click.option("--classifier", required=True, help="cfattack classifier file whose embedding is used.")
@click.option("--data", default="fashion-mnist", show_default=True, help="Real images: test and val splits.")
@click.option("--num", type=click.IntRange(10, 1_000_000), default=5000, show_default=True,
              help="Generated images (and at most this many real images per split).")
@click.option("--trunc", "truncation_psi", type=FiniteFloat(-100, 100), default=1.0, show_default=True,
              help="Truncation psi.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the generated latents.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the numbers to this JSON file.")
@device_option
@threads_option
def metrics_fd(network: str, classifier: str, data: str, num: int, truncation_psi: float, seed: int,
               json_out: Path | None, device: str, threads: int | None) -> None:
    """Fréchet distance of generated vs real test images in a classifier's embedding, and class coverage.

    The val-vs-test distance is printed beside it as the floor (real vs real, same sample size).
    This is not FID: it uses our classifier's embedding, not Inception features.

    \b
    Examples:
      cfattack metrics fd --network runs/gan/generator.pt --classifier cfattack/assets/default/classifiers/baseline.pt
    """
    device = start_command(threads, device)  # before torch loads (OpenMP reads its settings then)
    from cfattack.atomic import atomic_write_text
    from cfattack.classifiers.checkpoint import load_classifier_checkpoint
    from cfattack.quality.generator_quality import generator_quality
    from cfattack.stylegan.loading import load_generator
    from cfattack.training.data import load_dataset

    G = load_generator(generator_file(network), device=device)
    clf, meta = load_classifier_checkpoint(classifier, device=device)
    test, val = load_dataset(data, "test"), load_dataset(data, "val")
    names = meta.get("class_names") or test.class_names
    result = generator_quality(G, clf, test.images, val.images, names, num=num, seed=seed,
                               truncation_psi=truncation_psi)
    click.echo(f"Fréchet distance (classifier embedding), generated vs test: "
               f"{result['frechet_distance_generated_vs_test']:.4g}")
    click.echo(f"floor, real val vs test:                                   {result['frechet_distance_val_vs_test']:.4g}")
    click.echo(f"confident (p >= {result['coverage_threshold']}): {result['coverage_confident_share']:.1%}; "
               f"smallest class share: {result['coverage_min_class_share']:.1%}")
    click.echo("class shares: " + ", ".join(f"{k} {v:.1%}" for k, v in result["coverage_class_share"].items()))
    if "label_agreement" in result:
        click.echo(f"conditional: {result['label_agreement']:.1%} of samples classified as the class asked for")
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result, indent=2))
