"""``cfattack train ...``: train the pieces of a bundle (generator, encoder, classifier, descriptor model).

Each command builds a validated config from ``--config FILE.json`` (optional) plus the
options given, writes it next to its outputs and resumes from the output folder's
checkpoint when there is one, so a long run can be done in pieces (``--max-minutes``).

Examples::

    cfattack train gan --out runs/gan --kimg 600 --max-minutes 9
    cfattack train encoder --generator runs/gan/generator.pt --out runs/encoder --kimg 100
    cfattack train descriptors --bundle default --out descriptors.pt
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cfattack.cli.common import SEED, FiniteFloat, default_out, out_option, resolve_device, runtime_options, \
    start_command
from cfattack.errors import InvalidInputError
from cfattack.regular_files import read_regular_file

__all__ = ["train"]

_MAX_CONFIG_BYTES = 1 << 24  # a config is a few hundred bytes; 16 MiB is generous and bounded


def _build_config(model: type, config_file: Path | None, overrides: dict[str, Any]) -> Any:
    """Config = JSON file (if any) updated with the options the user actually gave.

    A value the config refuses is a usage error naming the option (exit 2) when an option gave
    it, and a bad-input error naming the setting (exit 1) when the --config file did. The
    device is --device when given, else the file's, else ``auto`` (CUDA when torch sees a GPU);
    one that does not exist here is refused before any work.
    """
    from click.core import ParameterSource
    from pydantic import ValidationError

    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = json.loads(read_regular_file(config_file, what="config file", max_bytes=_MAX_CONFIG_BYTES))
        except ValueError as exc:  # InvalidInputError too: missing, a folder, a FIFO ...
            raise InvalidInputError(f"cannot read config {config_file}: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInputError(f"config {config_file} must hold a JSON object")
    overrides = dict(overrides)
    ctx = click.get_current_context(silent=True)
    device = overrides.pop("device", None) or "auto"
    given = ctx is not None and ctx.get_parameter_source("device") not in (None, ParameterSource.DEFAULT)
    if given or "device" not in data:
        data["device"] = resolve_device(device)
    elif data["device"] == "auto":
        data["device"] = resolve_device("auto")
    for key, value in overrides.items():
        if value is None:
            continue
        if "__" in key:  # nested field, e.g. generator__channel_max -> generator.channel_max
            outer, inner = key.split("__", 1)
            data[outer] = {**data.get(outer, {}), inner: value}
        else:
            data[key] = value
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        if first["type"] == "missing":
            raise InvalidInputError(f"missing setting {where}: give --{where.replace('_', '-')} "
                                    "or put it in the --config file") from exc
        option = _option_of("__".join(str(p) for p in first["loc"][:2]), overrides)
        if option is not None:
            raise click.BadParameter(first["msg"], ctx=click.get_current_context(silent=True), param=option) from None
        raise InvalidInputError(f"invalid setting {where}: {first['msg']}") from exc
    resolve_device(config.device)  # a --config file's cuda on a machine without one: refused now
    return config


def _option_of(key: str, overrides: dict[str, Any]) -> click.Parameter | None:
    """The command's option that gave setting ``key`` (``generator__channel_max`` for nested ones), if one did."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    for candidate in (key, key.split("__")[0]):
        if overrides.get(candidate) is not None:
            return next((p for p in ctx.command.params if p.name == candidate), None)
    return None


def _report(result: Any, what: str) -> None:
    state = "finished" if result.finished else "paused (run the same command again to resume)"
    click.echo(f"{what}: {state} at step {result.step}, {result.kimg:.1f} kimg, "
               f"{result.seconds / 60:.1f} min of training; outputs in {result.out_dir}")


@click.group()
def train() -> None:
    """Train a generator, an encoder or a classifier (resumable), or fit descriptor predictors."""


def _with_common(command: str):
    """The options every ``train`` command shares; ``--out`` defaults to ./train-<command>/."""
    common = [
        out_option(f"train {command}", "Output folder; an existing checkpoint there is resumed."),
        click.option("--config", "config_file", type=click.Path(path_type=Path),
                     help="JSON file with config fields; options given on the command line win."),
        click.option("--max-minutes", type=FiniteFloat(min=0), default=None,
                     help="Stop (with a checkpoint) after this many minutes; run again to resume."),
        click.option("--seed", type=SEED, default=None, help="Seed of every random draw."),
        runtime_options,
    ]

    def decorate(fn):
        for option in reversed(common):
            fn = option(fn)
        return fn

    return decorate


def _start(options: dict[str, Any]) -> None:
    """Apply the thread rule before any work (the config records --threads when it was given)."""
    start_command(options.get("threads"))


@train.command("gan")
@_with_common("gan")
@click.option("--data", default=None, help="fashion-mnist (default), mnist-5k or a folder root/<class>/*.png.")
@click.option("--kimg", "total_kimg", type=FiniteFloat(), default=None, help="Train on this many thousand images in all.")
@click.option("--batch", type=int, default=None, help="Images per step.")
@click.option("--conditional/--unconditional", default=None, help="Condition on class labels.")
@click.option("--channel-max", "generator__channel_max", type=int, default=None, help="Generator max channels.")
@click.option("--num-layers", "generator__num_layers", type=int, default=None, help="Generator synthesis layers.")
@click.option("--d-channel-max", "d_channel_max", type=int, default=None, help="Discriminator max channels.")
@click.option("--gamma", "r1_gamma", type=FiniteFloat(), default=None, help="R1 penalty weight.")
@click.option("--snapshot-kimg", type=FiniteFloat(), default=None, help="Checkpoint and sample grid every N kimg.")
@click.option("--init-from", default=None,
              help="Warm start from another run's checkpoint (same layout); may add --conditional.")
def train_gan_command(out: Path, config_file: Path | None, max_minutes: float | None, quiet: bool,
                      **options: Any) -> None:
    """Train a StyleGAN3 generator against a residual discriminator.

    The defaults are the CPU layout of the default bundle (32x32 grey, 6 layers, no extra
    nonlinearity upsampling); on a GPU consider --num-layers 14 and a larger --channel-max.

    \b
    Examples:
      cfattack train gan --out runs/gan --kimg 600 --channel-max 32 --d-channel-max 32
      cfattack train gan --out runs/gan --max-minutes 9      # resume, 9 more minutes
      cfattack train gan --out runs/cgan --conditional --init-from runs/gan --kimg 200
    """
    _start(options)
    from cfattack.config import GanTrainingConfig
    from cfattack.training.gan import train_gan

    config = _build_config(GanTrainingConfig, config_file, options)
    _report(train_gan(config, out, max_minutes=max_minutes, progress=not quiet), "train gan")


@train.command("encoder")
@_with_common("encoder")
@click.option("--generator", required=False, default=None, help="Generator file the encoder inverts.")
@click.option("--data", default=None, help="Real images (training and validation).")
@click.option("--latent", type=click.Choice(["w", "w+"]), default=None, help="Predict W or W+.")
@click.option("--kimg", "total_kimg", type=FiniteFloat(), default=None, help="Train on this many thousand images in all.")
@click.option("--batch", type=int, default=None, help="Images per step.")
@click.option("--classifier", "feature_classifier", default=None,
              help="Classifier file whose embedding of the reconstruction is matched to the input's.")
@click.option("--snapshot-kimg", type=FiniteFloat(), default=None, help="Checkpoint and evaluate every N kimg.")
def train_encoder_command(out: Path, config_file: Path | None, max_minutes: float | None, quiet: bool,
                          **options: Any) -> None:
    """Train the inversion encoder (image -> ws) for a trained generator.

    \b
    Examples:
      cfattack train encoder --generator runs/gan/generator.pt --out runs/encoder --kimg 100
    """
    _start(options)
    from cfattack.config import EncoderTrainingConfig
    from cfattack.training.encoder import train_encoder

    config = _build_config(EncoderTrainingConfig, config_file, options)
    result = train_encoder(config, out, max_minutes=max_minutes, progress=not quiet)
    _report(result, "train encoder")
    click.echo("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()))


@train.command("classifier")
@_with_common("classifier")
@click.option("--data", default=None, help="fashion-mnist (default), mnist-5k or a folder root/<class>/*.png.")
@click.option("--loss", default=None,
              help="Training loss: ce (default), latent_boost, lcc or semantic; their weights and schedules "
                   "are config fields (latent_boost_*, lcc_*, semantic_*, ce_weight) for --config.")
@click.option("--head", type=click.Choice(["linear", "offset_l2"]), default=None, help="Classification head.")
@click.option("--backbone", type=click.Choice(["cnn", "mlp"]), default=None,
              help="cnn (default) or mlp (one hidden layer = the embedding; the OffsetL2 paper's model).")
@click.option("--activation", type=click.Choice(["relu", "abs"]), default=None, help="Hidden activation of --backbone mlp.")
@click.option("--epochs", type=int, default=None, help="Passes over the training split.")
@click.option("--batch", type=int, default=None, help="Images per step.")
@click.option("--lr", type=FiniteFloat(), default=None, help="Peak learning rate.")
@click.option("--width", type=int, default=None, help="Channels of the first conv stage.")
@click.option("--embedding-dim", type=int, default=None, help="Size of the explicit embedding.")
@click.option("--max-train-images", type=int, default=None, help="Use only the first N training images (timing, smoke tests).")
@click.option("--max-eval-images", type=int, default=None, help="Use only the first N val and test images.")
def train_classifier_command(out: Path, config_file: Path | None, max_minutes: float | None, quiet: bool,
                             **options: Any) -> None:
    """Train a classifier with an explicit embedding (best validation epoch is kept).

    Writes config.json, checkpoint.pt (resumable: run the same command again), metrics.json
    (per-epoch history; test accuracy, macro-F1, embedding silhouette, Davies-Bouldin, kNN
    purity, dead units, mistake severity) and classifier.pt.

    \b
    Examples:
      cfattack train classifier --out runs/clf --data fashion-mnist --epochs 15
      cfattack train classifier --out runs/zoo/lcc --loss lcc --head linear --threads 1
      cfattack train classifier --out runs/abs-l2 --data mnist-5k --backbone mlp --activation abs --head offset_l2
    """
    if max_minutes is not None:
        raise InvalidInputError("train classifier stops per epoch; use --epochs (it resumes from its checkpoint)")
    _start(options)
    from cfattack.config import ClassifierTrainingConfig
    from cfattack.training.classifier import train_classifier

    config = _build_config(ClassifierTrainingConfig, config_file, options)
    result = train_classifier(config, out, progress=not quiet)
    state = "finished" if result.finished else "paused (run the same command again to resume)"
    click.echo(f"train classifier: {state} after epoch {result.epoch}, {result.seconds / 60:.1f} min; "
               f"outputs in {result.out_dir}")
    test = result.metrics.get("test") if isinstance(result.metrics, dict) else None
    if isinstance(test, dict):
        click.echo("test: " + ", ".join(f"{k} {v:.4g}" for k, v in test.items() if isinstance(v, (int, float))))


def _encoded_training_images(bundle_name: str | None, data: str, count: int, G: Any, device: str, batch: int,
                             trust_code: bool = False) -> Any:
    """The bundle encoder's latents of the first ``count`` training images of ``data``."""
    import torch

    from cfattack.bundle.loader import load_bundle
    from cfattack.training.data import load_dataset

    if bundle_name is None:
        raise InvalidInputError("--anchors needs --bundle (its encoder inverts the real images)")
    bundle = load_bundle(bundle_name, device=device, trust_code=trust_code)
    if bundle.encoder is None:
        raise InvalidInputError(f"--anchors: bundle {bundle.name!r} has no encoder")
    images = load_dataset(data, "train").images[:count]
    with torch.no_grad():
        return torch.cat([bundle.encoder(images[i:i + batch].to(device)) for i in range(0, len(images), batch)])


@train.command("descriptors")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=default_out("train descriptors") / "descriptors.pt", show_default=True,
              help="Descriptor model file to write, e.g. my_bundle/descriptors.pt.")
@click.option("--bundle", "bundle_name", default=None,
              help="Bundle whose generator is sampled: 'default' or a bundle folder. Its latent space and "
                   "truncation are the defaults of --latent and --trunc.")
@click.option("--generator", default=None, help="Or a generator file (cfattack checkpoint or official pickle).")
@click.option("--num", "num_samples", type=click.IntRange(20, 10_000_000), default=10000, show_default=True,
              help="Generator samples to measure (--holdout of them score the predictors).")
@click.option("--latent", type=click.Choice(["w", "w+"]), default=None,
              help="Predict from W+ (every layer) or W (mean over layers); default: the bundle's, else w+.")
@click.option("--trunc", "truncation_psi", type=FiniteFloat(-100, 100), default=None,
              help="Truncation psi of the samples [default: the bundle's, else 1].")
@click.option("--style-mixing", type=click.FloatRange(0, 1), default=None,
              help="Share of samples mixing two latents across layers [default: 0.5 for w+, 0 for w].")
@click.option("--descriptors", "names", default=None,
              help="Comma-separated descriptor names to fit [default: every one that applies to the images].")
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Share of samples kept aside to score the predictors.")
@click.option("--min-score", type=FiniteFloat(), default=0.5, show_default=True,
              help="Quality bar on held-out R^2 (or accuracy gain over the majority rate); below it a "
                   "predictor is kept but marked unreliable.")
@click.option("--batch", type=click.IntRange(1, 65536), default=256, show_default=True,
              help="Images synthesised at a time.")
@click.option("--predictor", type=click.Choice(["ridge", "mlp"]), default="ridge", show_default=True,
              help="One ridge regression per descriptor, or a small MLP shared by the numeric ones (higher "
                   "held-out R^2, but it extrapolates worse to attacked latents; see docs/attribution.md).")
@click.option("--anchors", "anchor_data", default=None,
              help="Real training images (fashion-mnist, mnist-5k or a folder) that the bundle's encoder "
                   "inverts; up to half of --num samples are then these latents, jittered, so the "
                   "predictors are fitted where explanations start. Needs --bundle with an encoder.")
@click.option("--anchor-jitter", type=FiniteFloat(min=0), default=0.5, show_default=True,
              help="Largest jitter of an anchor, in units of the per-entry spread of generator latents.")
@click.option("--shift-jitter", type=FiniteFloat(min=0), default=0.0, show_default=True,
              help="W+ only: translate every second sample by N(0, this) pixels, so the predictors "
                   "see what moving the object does (for attacks with --shift-lr).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the latents and of the split.")
@runtime_options
@click.option("--trust-code", is_flag=True,
              help="With --anchors: allow the bundle's classifiers that are code (kind 'factory' or 'torchscript'); "
                   "only for bundles whose author you trust.")
def train_descriptors_command(out: Path, bundle_name: str | None, generator: str | None, num_samples: int,
                              latent: str | None, truncation_psi: float | None, style_mixing: float | None,
                              names: str | None, holdout: float, min_score: float, batch: int,
                              predictor: str, anchor_data: str | None, anchor_jitter: float, shift_jitter: float,
                              seed: int, threads: int | None, device: str, quiet: bool,
                              trust_code: bool = False) -> None:
    """Fit latent descriptor predictors (attribution) on samples of a generator.

    Samples the generator, measures every descriptor on the images and fits predictors from ws
    to their values (one MLP shared by the numeric descriptors, or a ridge regression each);
    prints each held-out R^2. Refit whenever
    the generator changes (the file records which generator it was fitted on).

    \b
    Examples:
      cfattack train descriptors --bundle default --anchors fashion-mnist --out cfattack/assets/default/descriptors.pt
      cfattack train descriptors --generator runs/gan/generator.pt --out runs/descriptors.pt --num 5000
    """
    import time

    if (bundle_name is None) == (generator is None):
        raise InvalidInputError("give exactly one of --bundle and --generator")
    device = start_command(threads, device)  # before torch loads (OpenMP reads its settings then)
    from cfattack.attribution.fitting import fit_descriptor_model
    from cfattack.bundle import bundle_file, bundle_spec_path, read_bundle_spec
    from cfattack.progress import live_on
    from cfattack.stylegan.loading import load_generator
    from descriptors import default_descriptors

    if bundle_name is not None:
        spec_path = bundle_spec_path(bundle_name)
        spec = read_bundle_spec(spec_path)
        generator = str(bundle_file(spec_path, spec.generator.file))
        latent = latent or spec.latent_space
        truncation_psi = spec.truncation_psi if truncation_psi is None else truncation_psi
    G = load_generator(generator).to(device)
    if G.img_channels not in (1, 3):
        raise InvalidInputError(f"descriptors measure grey or RGB images; the generator makes "
                                f"{G.img_channels} channels")
    descriptor_set = default_descriptors(channels=G.img_channels)
    if names:
        try:
            descriptor_set = descriptor_set.select([n.strip() for n in names.split(",") if n.strip()])
        except ValueError as exc:
            raise InvalidInputError(f"--descriptors: {exc}") from None
    start = time.perf_counter()
    anchor_ws = None
    if anchor_data is not None:
        anchor_ws = _encoded_training_images(bundle_name, anchor_data, num_samples // 2, G, device, batch,
                                             trust_code)
    model = fit_descriptor_model(
        G, descriptor_set, num_samples=num_samples, truncation_psi=1.0 if truncation_psi is None else truncation_psi,
        latent=latent or "w+", seed=seed, holdout=holdout, min_score=min_score, batch=batch,
        progress=live_on(quiet=quiet),
        style_mixing=style_mixing, anchor_ws=anchor_ws, anchor_jitter=anchor_jitter, predictor=predictor,
        shift_jitter=shift_jitter)
    model.save(out)
    seconds = time.perf_counter() - start
    click.echo(f"train descriptors: {len(model)} predictors ({len(model.reliable_names)} reliable) fitted on "
               f"{num_samples} samples in {seconds / 60:.1f} min; written to {out}")
    for fit in model.fits:
        click.echo(f"  {fit.name:<18} {fit.kind:<8} held-out {fit.score_name} {fit.score:6.3f}"
                   f"{'' if fit.reliable else '  (unreliable)'}")
    for name, reason in model.dropped.items():
        click.echo(f"  {name:<18} dropped: {reason}")
