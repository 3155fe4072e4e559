"""``cfattack explain``: one image, one target class, one report folder.

Prints a short summary (source -> target, steps, inversion quality, top descriptor changes)
and writes the report files (`cfattack.reports.write.REPORT_FILES`: ``explanation.json``,
``counterfactual.png``, ``strip.png``, ``start.png``, ``path.gif``, ``explanation.html``) into ``--out``. A target that is not reached is a result, not an
error: the report says so and the exit code is 0; bad input exits 1 with one line. Progress
(stages, inversion and attack steps) goes to stderr through `cfattack.progress`: a bar on a
terminal, one timing line otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from cfattack.cli.common import SEED, FiniteFloat, default_out, require_input_file, runtime_options, start_command
from cfattack.cli.own_models import OwnModels, check_target, own_model_options
from cfattack.errors import InvalidInputError
from cfattack.int_ranges import parse_int_ranges

__all__ = ["explain", "default_out_dir", "explain_config", "explain_options", "format_summary", "trust_code_option"]


def default_out_dir(image: Path, target: str) -> Path:
    """``explain/<image stem>-to-<target>`` (the command's folder, one report each), the target file-name safe."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", target).strip("-") or "target"
    return default_out("explain") / f"{image.stem}-to-{safe}"


def format_summary(explanation: Any, top: int = 5) -> list[str]:
    """The lines ``explain`` prints: outcome, inversion quality, the top descriptor changes."""
    e = explanation
    lines = [f"{e.source_class} (p={e.source_probability:.2f}) -> {e.target}: "
             + (f"reached in {e.steps} steps" if e.reached else f"NOT reached ({e.reason}) after {e.steps} steps")
             + e.first_move() + f", p({e.target})={e.target_probability:.2f}"
             + (f", latent distance {e.latent_distance:.2f}" if e.latent_distance is not None else "")
             + f", pixel RMS {e.pixel_rms:.3f}"
             + (f", moved {e.shift_px[0]:+.1f} px right {e.shift_px[1]:+.1f} px down"
                if e.shift_px is not None and not e.first_move() else "")]
    if e.inversion is not None:
        inv = e.inversion
        quality = f"inversion: PSNR {inv.psnr:.1f} dB, SSIM {inv.ssim:.3f}"
        if inv.flagged:
            quality += " -- FLAGGED: " + "; ".join(inv.reasons)
        lines.append(quality)
    rows = e.attributions[:top]
    if rows:
        source = "predicted from the latents" if e.attribution_source == "predicted" else "measured on the images"
        lines.append(f"top {len(rows)} descriptor changes ({source}):")
        width = max(len(r.name) for r in rows)
        for rank, r in enumerate(rows, 1):
            lines.append(
                f"  {rank}. {r.name:<{width}}  {r.before:9.3f} -> {r.after:9.3f} {r.unit:<9} "
                f"({r.standardized_change:+.2f} sd)"
            )
    else:
        lines.append("no descriptor changes to show")
    if e.agreement is not None:
        a = e.agreement
        lines.append(f"{a.counterfactuals} counterfactuals from jittered starts: {a.top1_share:.0%} share the largest "
                     f"change, top-3 overlap {a.top3_overlap:.0%}, in the top 3 of at least half: "
                     + (", ".join(a.consensus) or "none"))
        for alt in e.alternatives:
            lines.append(f"  #{alt.index}: " + ("reached" if alt.reached else f"NOT reached ({alt.reason})")
                         + f" in {alt.steps} steps, p={alt.target_probability:.2f}; top: "
                         + ", ".join(c.name for c in alt.attributions[:3]))
    lines += [f"warning: {w}" for w in e.warnings if not w.startswith("target not reached")]
    return lines


_EXPLAIN_OPTIONS = (
    click.option("--steps", type=click.IntRange(1, 100_000), default=500, show_default=True, help="Most attack steps."),
    click.option("--lr", type=FiniteFloat(0, 10, min_open=True), default=0.01, show_default=True,
                 help="Attack step size (Adam)."),
    click.option("--threshold", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=0.9,
                 show_default=True, help="Stop at the first iterate whose target probability exceeds this "
                                         "(the paper: 0.5)."),
    click.option("--space", type=click.Choice(["w", "w+", "pixel"]), default="w+", show_default=True,
                 help="Move one w, every W+ entry, or the pixels (the noisy baseline)."),
    click.option("--objective", type=click.Choice(["probability", "log_probability", "margin"]),
                 default="margin", show_default=True,
                 help="Quantity the attack raises (the paper: probability)."),
    click.option("--proximity", type=FiniteFloat(min=0), default=0.0, show_default=True,
                 help="Weight of the penalty on mean((ws - ws0)^2)."),
    click.option("--layers", default=None, callback=lambda ctx, param, value: _layers_option(value),
                 help="W+ entries the attack may move, e.g. 0 or 0-3 [default: all]. Entry 0 only turns and "
                      "shifts the image."),
    click.option("--shift-lr", type=FiniteFloat(0, 10, min_open=True), default=None,
                 help="W+ only: also move the object as a whole, this many pixels per step [default: off]."),
    click.option("--shift-search", "shift_search", type=click.IntRange(0, 8), default=8, show_default=True,
                 help="W+ only: first try moving the object as a whole by up to this many pixels (0 = off)."),
    click.option("--robust-shift", "robust_shift", type=click.IntRange(0, 4), default=1, show_default=True,
                 help="Average the objective over copies shifted by up to this many pixels (0 = off, the paper)."),
    click.option("--class-search", "class_search", type=click.IntRange(0, 64), default=8, show_default=True,
                 help="W+/W: first step along the generator's class direction (target class mean minus the source's) "
                      "in up to this many tries, then ascend (0 = off, the paper)."),
    click.option("--inversion-steps", type=click.IntRange(0, 100_000), default=None,
                 help="Optimisation steps refining the inversion's start [default: 60 after the bundle's encoder, "
                      "100 after a search]."),
    click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random draws."),
)


trust_code_option = click.option(
    "--trust-code", is_flag=True,
    help="Allow the bundle's classifiers that are code: kind 'factory' (imports and calls a Python module) and "
         "kind 'torchscript' (a TorchScript program); they are refused without it. Only for bundles whose author "
         "you trust; weights-only bundles such as the default need no trust.")


def explain_options(command: Any) -> Any:
    """Add the explanation settings shared by ``explain``, ``batch`` and ``compare`` (see `explain_config`),
    and ``--trust-code``."""
    for option in reversed(_EXPLAIN_OPTIONS):
        command = option(command)
    return trust_code_option(command)


def _layers_option(value: str | None) -> tuple[int, ...] | None:
    """``--layers`` text -> ws entry indices (None = every entry)."""
    if value is None:
        return None
    try:
        return tuple(parse_int_ranges(value, noun="ws entry", plural="ws entries", example="0 or 0-3",
                                      maximum=1023, max_count=1024))
    except InvalidInputError as e:
        raise click.BadParameter(str(e)) from None


def explain_config(steps: int, lr: float, threshold: float, space: str, objective: str, proximity: float,
                   inversion_steps: int | None, seed: int, layers: tuple[int, ...] | None = None,
                   shift_lr: float | None = None, shift_search: int = 8, robust_shift: int = 1,
                   class_search: int = 8) -> Any:
    """The `ExplainConfig` those options describe."""
    from cfattack.config import AttackConfig, InversionConfig
    from cfattack.pipeline.explanation import ExplainConfig

    if layers is not None and space != "w+":
        raise InvalidInputError(f"--layers picks W+ entries; it needs --space w+, not {space}")
    if shift_lr is not None and space != "w+":
        raise InvalidInputError(f"--shift-lr moves W+ entry 0 on its own; it needs --space w+, not {space}")
    return ExplainConfig(
        attack=AttackConfig(steps=steps, lr=lr, threshold=threshold, space=space, objective=objective,
                            proximity_weight=proximity, seed=seed, layers=layers,
                            shift_lr=shift_lr, shift_search_px=shift_search, robust_shift_px=robust_shift,
                            class_search_steps=class_search),
        inversion=InversionConfig(steps=inversion_steps),
    )


@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="Class the counterfactual should have (name, alias or index).")
@click.option("--bundle", "bundle_name", default="default", show_default=True,
              help="'default' or a bundle folder (with bundle.json).")
@click.option("--classifier", default=None,
              help="Classifier of the bundle to explain (default: the bundle's); with --generator, your classifier "
                   "FILE: TorchScript, a torch.export program (.pt2), a cfattack checkpoint, or "
                   "package.module:factory with --classifier-weights.")
@click.option("--out", "outdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder [default: explain/<image>-to-<target>].")
@click.option("--num-counterfactuals", "num_counterfactuals", type=click.IntRange(1, 64), default=1,
              show_default=True,
              help="Counterfactuals to make from jittered starts; the report says how much their top changes agree.")
@own_model_options
@explain_options
@runtime_options
def explain(image: Path, target: str, bundle_name: str, classifier: str | None, outdir: Path | None,
            num_counterfactuals: int, steps: int,
            lr: float, threshold: float, space: str, objective: str, proximity: float,
            layers: tuple[int, ...] | None, shift_lr: float | None, shift_search: int, robust_shift: int,
            class_search: int, inversion_steps: int | None, seed: int, device: str, threads: int | None, quiet: bool,
            trust_code: bool = False, **own: Any) -> None:
    """Explain why the classifier labels IMAGE as it does: what would make it TARGET?

    \b
    Examples:
      cfattack explain examples/trouser-1.png --target dress
      cfattack explain shoe.png --target "Ankle boot" --space w --out report/
      cfattack explain examples/coat-1.png --target pullover --num-counterfactuals 5
      cfattack explain cat.png --target dog --generator stylegan3-r-afhqv2-512x512.pkl \
          --classifier resnet.pt --classes cat,dog,wild --classifier-size 224 --normalize imagenet --trust-code
    """
    from cfattack.progress import ExplainProgress, Progress

    require_input_file(image)  # a folder, FIFO or device: one line and exit 1 before loading anything
    models = OwnModels(classifier=classifier, bundle_name=bundle_name, **own)
    if models.active:
        check_target(target, models.class_names)  # before any network is loaded
    device = start_command(threads, device)  # before torch loads (OpenMP reads its settings then)
    config = explain_config(steps, lr, threshold, space, objective, proximity, inversion_steps, seed, layers,
                            shift_lr, shift_search, robust_shift, class_search)
    with Progress("explain", quiet=quiet) as bar:
        stages = ExplainProgress(bar, attack_steps=steps)
        stages.on_stage("load bundle")
        from cfattack.pipeline.explainer import Explainer

        if models.active:
            bundle = models.bundle(device, trust_code, quiet=quiet, cost_steps=(steps, inversion_steps))
            explainer, classifier = Explainer(bundle, config), None
        else:
            explainer = Explainer(bundle_name, config, device=device, trust_code=trust_code)
        explanation = explainer.explain_many([image], target, classifier=classifier, on_stage=stages.on_stage,
                                             on_progress=stages.on_progress, k=num_counterfactuals)[0]
        stages.on_stage("write report")
        out = outdir if outdir is not None else default_out_dir(image, explanation.target)
        files = explanation.save(out)
        stages.finish()
        bar.close(f"explain: 1 image in {bar.elapsed:.1f} s ({stages.describe()})")
    for line in format_summary(explanation):
        click.echo(line)
    click.echo(f"report: {files['html']} (+ {', '.join(p.name for k, p in files.items() if k != 'html')})")
