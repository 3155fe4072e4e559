"""``cfattack train ...``: train the pieces of a bundle (generator, encoder, classifier).

Each command builds a validated config from ``--config FILE.json`` (optional) plus the
options given, writes it next to its outputs and resumes from the output folder's
checkpoint when there is one, so a long run can be done in pieces (``--max-minutes``).

Examples::

    cfattack train gan --out runs/gan --kimg 600 --max-minutes 9
    cfattack train encoder --generator runs/gan/generator.pt --out runs/encoder --kimg 100
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cfattack.errors import InvalidInputError

__all__ = ["train"]


def _build_config(model: type, config_file: Path | None, overrides: dict[str, Any]) -> Any:
    """Config = JSON file (if any) updated with the options the user actually gave."""
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = json.loads(Path(config_file).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read config {config_file}: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInputError(f"config {config_file} must hold a JSON object")
    for key, value in overrides.items():
        if value is None:
            continue
        if "__" in key:  # nested field, e.g. generator__channel_max -> generator.channel_max
            outer, inner = key.split("__", 1)
            data[outer] = {**data.get(outer, {}), inner: value}
        else:
            data[key] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        if first["type"] == "missing":
            raise InvalidInputError(f"missing setting {where}: give --{where.replace('_', '-')} "
                                    "or put it in the --config file") from exc
        raise InvalidInputError(f"invalid setting {where}: {first['msg']}") from exc


def _report(result: Any, what: str) -> None:
    state = "finished" if result.finished else "paused (run the same command again to resume)"
    click.echo(f"{what}: {state} at step {result.step}, {result.kimg:.1f} kimg, "
               f"{result.seconds / 60:.1f} min of training; outputs in {result.out_dir}")


@click.group()
def train() -> None:
    """Train a generator, an encoder or a classifier (resumable)."""


_common = [
    click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                 help="Output folder; an existing checkpoint there is resumed."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="JSON file with config fields; options given on the command line win."),
    click.option("--max-minutes", type=click.FloatRange(min=0), default=None,
                 help="Stop (with a checkpoint) after this many minutes; run again to resume."),
    click.option("--seed", type=int, default=None, help="Seed of every random draw."),
    click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads."),
    click.option("--device", default=None, help="torch device, e.g. cpu or cuda."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def _with_common(fn):
    for option in reversed(_common):
        fn = option(fn)
    return fn


@train.command("gan")
@_with_common
@click.option("--data", default=None, help="fashion-mnist (default), mnist-5k or a folder root/<class>/*.png.")
@click.option("--kimg", "total_kimg", type=float, default=None, help="Train on this many thousand images in all.")
@click.option("--batch", type=int, default=None, help="Images per step.")
@click.option("--conditional/--unconditional", default=None, help="Condition on class labels.")
@click.option("--channel-max", "generator__channel_max", type=int, default=None, help="Generator max channels.")
@click.option("--num-layers", "generator__num_layers", type=int, default=None, help="Generator synthesis layers.")
@click.option("--d-channel-max", "d_channel_max", type=int, default=None, help="Discriminator max channels.")
@click.option("--gamma", "r1_gamma", type=float, default=None, help="R1 penalty weight.")
@click.option("--snapshot-kimg", type=float, default=None, help="Checkpoint and sample grid every N kimg.")
def train_gan_command(out_dir: Path, config_file: Path | None, max_minutes: float | None, quiet: bool,
                      **options: Any) -> None:
    """Train a StyleGAN3 generator against a residual discriminator.

    The defaults are the CPU layout of the default bundle (32x32 grey, 6 layers, no extra
    nonlinearity upsampling); on a GPU consider --num-layers 14 and a larger --channel-max.

    \b
    Examples:
      cfattack train gan --out runs/gan --kimg 600 --channel-max 32 --d-channel-max 32
      cfattack train gan --out runs/gan --max-minutes 9      # resume, 9 more minutes
    """
    from cfattack.config import GanTrainingConfig
    from cfattack.training.gan import train_gan

    config = _build_config(GanTrainingConfig, config_file, options)
    _report(train_gan(config, out_dir, max_minutes=max_minutes, progress=not quiet), "train gan")


@train.command("encoder")
@_with_common
@click.option("--generator", required=False, default=None, help="Generator file the encoder inverts.")
@click.option("--data", default=None, help="Real images (training and validation).")
@click.option("--latent", type=click.Choice(["w", "w+"]), default=None, help="Predict W or W+.")
@click.option("--kimg", "total_kimg", type=float, default=None, help="Train on this many thousand images in all.")
@click.option("--batch", type=int, default=None, help="Images per step.")
@click.option("--classifier", "feature_classifier", default=None,
              help="Classifier file whose embedding of the reconstruction is matched to the input's.")
@click.option("--snapshot-kimg", type=float, default=None, help="Checkpoint and evaluate every N kimg.")
def train_encoder_command(out_dir: Path, config_file: Path | None, max_minutes: float | None, quiet: bool,
                          **options: Any) -> None:
    """Train the inversion encoder (image -> ws) for a trained generator.

    \b
    Examples:
      cfattack train encoder --generator runs/gan/generator.pt --out runs/encoder --kimg 100
    """
    from cfattack.config import EncoderTrainingConfig
    from cfattack.training.encoder import train_encoder

    config = _build_config(EncoderTrainingConfig, config_file, options)
    result = train_encoder(config, out_dir, max_minutes=max_minutes, progress=not quiet)
    _report(result, "train encoder")
    click.echo("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()))
