"""``cfattack batch``: explain a folder or manifest of images into one job folder, resumably.

Writes one report folder per item (as ``cfattack explain`` does), ``results.jsonl``,
``failures.jsonl``, ``global.json`` and ``global.html`` into ``--out``; prints a progress bar
and a final summary. Bad items are recorded and skipped (exit code 0); bad options, a bad
manifest or a folder holding another config's results exit 1 with one line. Run the same
command again to resume; under ``torchrun`` each rank takes its share (docs/batch.md).

``python -m cfattack.cli.batch ARGS`` is the same as ``cfattack batch ARGS``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cfattack.cli.common import out_option, run_guarded, runtime_options, start_command
from cfattack.cli.explain import explain_config, explain_options
from cfattack.cli.own_models import OwnModels, check_target, own_model_options

__all__ = ["batch", "main"]


@click.command()
@click.argument("source", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--target", default=None, help="Target class of every image without its own (name, alias or index).")
@click.option("--targets-from", "targets_from", type=click.Path(path_type=Path), default=None,
              help="Manifest (.csv/.jsonl with image,target) giving the targets of INPUT's images.")
@out_option("batch", "Job folder: item reports, results.jsonl, failures.jsonl, global.json, global.html.")
@click.option("--bundle", "bundle_name", default="default", show_default=True,
              help="'default' or a bundle folder (with bundle.json).")
@click.option("--classifier", default=None,
              help="Classifier of the bundle to explain (default: the bundle's); with --generator, your classifier "
                   "FILE (TorchScript, .pt2, cfattack checkpoint, or package.module:factory with --classifier-weights).")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=32, show_default=True,
              help="Images per device batch (reading, reports, journals).")
@click.option("--batched-numerics", is_flag=True,
              help="Batch the networks' work for throughput (a GPU); an item's answer can then depend on the batch "
                   "it shares. By default each image is computed on its own, so it gets the answer 'cfattack explain' "
                   "gives it.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items.")
@click.option("--restart", is_flag=True, help="Discard the folder's earlier results (needed after a config change).")
@click.option("--retry-failed", is_flag=True, help="Explain again the items that failed before.")
@own_model_options
@explain_options
@runtime_options
def batch(source: Path, target: str | None, targets_from: Path | None, out: Path, bundle_name: str,
          classifier: str | None, batch_size: int, batched_numerics: bool, limit: int | None, restart: bool,
          retry_failed: bool, steps: int,
          lr: float, threshold: float, space: str, objective: str, proximity: float, layers: tuple[int, ...] | None,
          shift_lr: float | None, shift_search: int, robust_shift: int, class_search: int,
          inversion_steps: int | None, seed: int, device: str, threads: int | None, quiet: bool,
          trust_code: bool = False, **own: Any) -> None:
    """Explain every image of INPUT (a folder, or a .csv/.jsonl manifest with image[,target]).

    Images are explained in batches of --batch-size on the device; an image that cannot be read
    or whose target is unknown (or already predicted) is recorded in failures.jsonl and the job
    goes on. Running the same command again skips finished items; another config is refused
    unless --restart. Under torchrun every rank takes its share of the batches and rank 0
    writes the global explanation; with a GPU rank r uses cuda:LOCAL_RANK (NCCL), on the CPU
    the ranks share the cores (gloo).

    \b
    Examples:
      cfattack batch examples/ --target pullover               # into ./batch/
      cfattack batch manifest.csv --out report/ --batch-size 64 --limit 1000
      cfattack batch images/ --targets-from targets.jsonl --out report/ --retry-failed
      torchrun --nproc-per-node 4 -m cfattack.cli.batch images/ --target dog --out report/ --device cuda
      cfattack batch pets/ --target dog --generator afhq.pkl --classifier resnet.pt --classes cat,dog,wild \
          --classifier-size 224 --normalize imagenet --trust-code
    """
    from cfattack.errors import InvalidInputError

    if target is None and targets_from is None and source.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise InvalidInputError(
            "give --target NAME or --targets-from MANIFEST (or a manifest INPUT with a target column)"
        )
    models = OwnModels(classifier=classifier, bundle_name=bundle_name, **own)
    if models.active and target is not None:
        check_target(target, models.class_names)  # before any network is loaded
    device = start_command(threads, device)  # before torch loads (OpenMP reads its settings then)
    bundle: Any = bundle_name
    if models.active:
        bundle = models.bundle(device, trust_code, quiet=quiet, cost_steps=(steps, inversion_steps))
        classifier = None
    from cfattack.batch.distributed import world_from_env
    from cfattack.batch.runner import BatchJob

    config = explain_config(steps, lr, threshold, space, objective, proximity, inversion_steps, seed, layers,
                            shift_lr, shift_search, robust_shift, class_search)
    if batched_numerics:
        config = config.model_copy(update={"batch_invariant": False})
    rank = world_from_env()[0]

    def log(line: str) -> None:
        if rank == 0:
            click.echo(line, err=True)

    job = BatchJob(
        source, out, target=target, targets_from=targets_from, bundle=bundle, classifier=classifier,
        config=config, batch_size=batch_size, limit=limit, restart=restart, retry_failed=retry_failed,
        device=device, progress=not quiet, log=log, trust_code=trust_code,
    )
    summary = job.run()
    if rank == 0:
        for line in summary.lines():
            click.echo(line)


def main(argv: list[str] | None = None) -> int:
    """``cfattack batch`` with its error handling: ``main(["examples/", "--target", "coat", "--out", "r/"])``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return run_guarded(lambda: batch.main(args=args, prog_name="cfattack batch", standalone_mode=False), args)


if __name__ == "__main__":
    raise SystemExit(main())
