"""Batch throughput: the same explanations batched on the device vs one at a time, in one run.

N items of the default bundle (the example images, each toward other classes: first every image
toward one class, then toward a second, ...; 32 by default) are explained with the settings of
``cfattack explain`` (``ExplainConfig()``: by default every image is computed on its own, so
batching changes nothing in the answers; ``--batched-numerics`` batches the networks), three
ways, on the CPU and, when there is one, on a CUDA GPU:

- batched: one ``Explainer.explain_many`` call over all N items (batch size N by default);
- one at a time: N ``Explainer.explain`` calls;
- job: ``cfattack batch`` as a library call (`cfattack.batch.BatchJob`), reports and journals
  written, same batch size.

Prints items/s for each and the batched / one-at-a-time ratio::

    OMP_NUM_THREADS=1 python benchmarks/batch.py                  # 32 items, CPU (+ GPU if present)
    python benchmarks/batch.py --items 64 --batch-size 32 --devices cpu --out benchmarks/results/batch.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from cfattack.attack.objectives import class_probabilities
from cfattack.batch import BatchJob
from cfattack.pipeline.explainer import Explainer
from cfattack.pipeline.explanation import ExplainConfig


def make_items(explainer: Explainer, examples: Path, count: int) -> tuple[list[Path], list[str]]:
    """``count`` (image, target) pairs: every image toward label+1, then toward label+2, ..."""
    images = sorted(examples.glob("*.png"))
    bundle = explainer.bundle
    with torch.no_grad():
        x = torch.stack([explainer.load(p)[0] for p in images]).to(bundle.device)
        labels = class_probabilities(bundle.classifier()(x)).argmax(1).tolist()
    pairs = [(path, bundle.class_names[(label + shift) % bundle.num_classes])
             for shift in range(1, bundle.num_classes) for path, label in zip(images, labels)]
    if count > len(pairs):
        raise SystemExit(f"--items {count}: only {len(pairs)} (image, target) pairs exist")
    pairs = pairs[:count]
    return [p for p, _ in pairs], [t for _, t in pairs]


def _timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    tic = time.perf_counter()
    value = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, time.perf_counter() - tic


def run_device(device: str, examples: Path, count: int, batch_size: int, job: bool, batched_numerics: bool) -> dict:
    explainer = Explainer("default", ExplainConfig(batch_invariant=not batched_numerics), device=device)
    paths, targets = make_items(explainer, examples, count)
    explainer.explain(paths[0], targets[0])  # warm-up: first-call costs are not throughput

    batched, batched_s = _timed(lambda: explainer.explain_many(paths, targets, batch_size=batch_size))
    single, single_s = _timed(lambda: [explainer.explain(p, t) for p, t in zip(paths, targets)])
    row = {
        "device": device,
        "items": count,
        "batch_size": batch_size,
        "batched_seconds": batched_s,
        "single_seconds": single_s,
        "batched_items_per_s": count / batched_s,
        "single_items_per_s": count / single_s,
        "speedup": single_s / batched_s,
        "reached_batched": sum(e.reached for e in batched),
        "reached_single": sum(e.reached for e in single),
        "same_steps": sum(a.steps == b.steps for a, b in zip(batched, single)),
        "median_steps": sorted(e.steps for e in batched)[count // 2],
    }
    if job:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = Path(tmp) / "items.csv"
            manifest.write_text("image,target\n" + "".join(f"{p.resolve()},{t}\n" for p, t in zip(paths, targets)))
            summary, job_s = _timed(lambda: BatchJob(manifest, Path(tmp) / "out", bundle=explainer.bundle,
                                                     config=explainer.config, batch_size=batch_size,
                                                     device=device).run())
        row["job_seconds"] = job_s
        row["job_items_per_s"] = summary.explained / job_s
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default="examples", help="Folder of input images.")
    parser.add_argument("--items", type=int, default=32, help="(image, target) pairs to explain.")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size (default: all items in one batch).")
    parser.add_argument("--devices", default=None,
                        help="Comma-separated, e.g. cpu,cuda (default: cpu, + cuda if present).")
    parser.add_argument("--no-job", action="store_true", help="Skip the end-to-end BatchJob timing.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    parser.add_argument("--batched-numerics", action="store_true",
                        help="ExplainConfig(batch_invariant=False): batch the networks (default: each image alone).")
    parser.add_argument("--out", default=None, help="Also write the rows as JSON here.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    batch_size = args.batch_size or args.items

    rows = [run_device(d, Path(args.examples), args.items, batch_size, not args.no_job, args.batched_numerics)
            for d in devices]
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
               + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    numerics = "batched numerics" if args.batched_numerics else "each image computed alone (batch_invariant)"
    print(f"default bundle, {args.items} items, batch size {batch_size}, {numerics}; {machine}; torch {torch.__version__}")
    print(f"{'device':<7} {'batched it/s':>13} {'single it/s':>12} {'speedup':>8} {'job it/s':>9} "
          f"{'reached b/s':>12} {'same steps':>11} {'median steps':>13}")
    for r in rows:
        job = f"{r['job_items_per_s']:>9.2f}" if "job_items_per_s" in r else f"{'-':>9}"
        print(f"{r['device']:<7} {r['batched_items_per_s']:>13.2f} {r['single_items_per_s']:>12.2f} "
              f"{r['speedup']:>7.1f}x {job} {r['reached_batched']:>5}/{r['reached_single']:<6} "
              f"{r['same_steps']:>5}/{r['items']:<5} {r['median_steps']:>13}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": machine, "torch": torch.__version__, "rows": rows},
                                             indent=2) + "\n")


if __name__ == "__main__":
    main()
