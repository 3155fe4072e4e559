"""Explanation benchmark: latent-space counterfactuals vs the pixel-space baseline, in one run.

Every example image in ``examples/`` is explained toward every other class (20 images x 9
targets = 180 explanations on the default bundle), once per attack space (W+, W, pixel),
with the paper's attack settings (Adam, lr 0.01, at most 500 steps, threshold 0.5). Prints a
table of flip rate, median steps, median latent distance, median pixel RMS change, realism
and seconds per explanation: batched (all items of a space in one call) and one at a time (the
first target of each of the first ``--single`` images, each inverting its image afresh).
Realism is the Fréchet distance between the counterfactuals and real test images of the same
target classes (one real image drawn per counterfactual); the floor is the same distance
between two such draws of real images. It is measured twice: in the attacked classifier's embedding, and in a reference classifier's that the
attack never saw (``--reference``, default the bundle's ``offset-l2``, reduced to its top 16
principal axes over real test images, as ``cfattack compare`` does). Last, the bundle's other
classifiers label each reached counterfactual: the share they give the target and the source
class shows whether the change carries over beyond the attacked classifier.

    python benchmarks/explain.py                       # default bundle, examples/
    python benchmarks/explain.py --single 10 --out benchmarks/results/explain.json

Pixel counterfactuals flip the classifier with a small noise-like change that leaves the image
where it was in the classifier's embedding-space picture of real garments; latent
counterfactuals change the garment itself, toward real images of the target class.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from cfattack.attack.objectives import class_probabilities
from cfattack.bundle.loader import load_bundle
from cfattack.evaluation.compare import ReferenceEmbedding, real_images_of_classes
from cfattack.config import AttackConfig, InversionConfig
from cfattack.pipeline.explainer import Explainer
from cfattack.pipeline.explanation import ExplainConfig
from cfattack.quality.metrics import embed_images, frechet_distance
from cfattack.training.data import load_dataset

SPACES = ("w+", "w", "pixel")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def realism(embed, images: torch.Tensor, classes: list[int], real) -> tuple[float, float]:
    """(FD of images vs real images of the same classes, FD of real vs real) in embed's features."""
    a, b = real_images_of_classes(real, classes, 1), real_images_of_classes(real, classes, 2)
    return frechet_distance(embed(images), embed(a)), frechet_distance(embed(b), embed(a))


def run_space(explainer: Explainer, paths: list[Path], targets: list[str], space: str, single: int,
              real, reference: ReferenceEmbedding | None) -> dict:
    cfg = ExplainConfig(attack=AttackConfig(space=space), inversion=InversionConfig(steps=100))
    explainer.config = cfg
    clf = explainer.bundle.classifier()
    # Every timing inverts from scratch: no inversion kept from another space or an earlier item.
    explainer.clear_cache()
    started = time.perf_counter()
    results = explainer.explain_many(paths, targets, batch_size=len(paths))
    batched_seconds = (time.perf_counter() - started) / len(paths)

    single_times = []
    first_per_image, seen = [], set()
    for path, target in zip(paths, targets):
        if path not in seen:
            seen.add(path)
            first_per_image.append((path, target))
    for path, target in first_per_image[:single]:
        explainer.clear_cache()
        tic = time.perf_counter()
        explainer.explain(path, target)
        single_times.append(time.perf_counter() - tic)

    reached = [e for e in results if e.reached]
    fd = floor = ref_fd = ref_floor = None
    others = {}
    if reached:
        cf = torch.stack([e.images.counterfactual for e in reached]).to(explainer.device)
        target_idx = torch.tensor([e.target_index for e in reached])
        source_idx = torch.tensor([e.source_index for e in reached])
    if real is not None and len(reached) > 1:
        fd, floor = realism(lambda x: embed_images(clf, x), cf, target_idx.tolist(), real)
        if reference is not None:
            ref_fd, ref_floor = realism(reference, cf, target_idx.tolist(), real)
    if reached:
        for name in explainer.bundle.classifiers:
            if name == clf.name:
                continue
            with torch.no_grad():
                pred = explainer.bundle.classifier(name)(cf).argmax(1).cpu()
            others[name] = {"target": float((pred == target_idx).float().mean()),
                            "source": float((pred == source_idx).float().mean())}
    return {
        "space": space,
        "explanations": len(results),
        "flip_rate": len(reached) / len(results),
        "median_steps": _median([e.steps for e in reached]),
        "median_latent_distance": _median([e.latent_distance for e in reached if e.latent_distance is not None]),
        "median_pixel_rms": _median([e.pixel_rms for e in reached]),
        "realism_fd": fd,
        "realism_floor_real_vs_real": floor,
        "reference_realism_fd": ref_fd,
        "reference_realism_floor": ref_floor,
        "other_classifiers_label_share": others,
        "seconds_per_explanation_batched": batched_seconds,
        "seconds_per_explanation_single_median": _median(single_times),
        "single_count": len(single_times),
        "inversion_flagged": sum(bool(e.inversion and e.inversion.flagged) for e in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="default")
    parser.add_argument("--examples", default="examples")
    parser.add_argument("--spaces", default=",".join(SPACES))
    parser.add_argument("--single", type=int, default=10, help="Explanations also timed one at a time, per space.")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--real", default="fashion-mnist", help="Real test images for realism ('' = skip).")
    parser.add_argument("--reference", default="offset-l2",
                        help="Bundle classifier (not the attacked one) whose embedding also measures realism ('' = skip).")
    parser.add_argument("--reference-dims", type=int, default=16,
                        help="Principal axes of the reference embedding kept for its Fréchet distance.")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    bundle = load_bundle(args.bundle, device=args.device)
    explainer = Explainer(bundle)
    images = sorted(Path(args.examples).glob("*.png"))
    with torch.no_grad():
        x = torch.stack([explainer.load(p)[0] for p in images]).to(bundle.device)
        source = class_probabilities(bundle.classifier()(x)).argmax(1).tolist()
    paths, targets = [], []
    for path, label in zip(images, source):
        for target in range(bundle.num_classes):
            if target != label:
                paths.append(path)
                targets.append(bundle.class_names[target])

    real = None
    if args.real:
        test = load_dataset(args.real, "test")
        real = (test.images, test.labels)
    reference = None
    if real is not None and args.reference:
        if args.reference == bundle.default_classifier:
            raise SystemExit(f"--reference {args.reference} is the attacked classifier; pick another")
        reference = ReferenceEmbedding(bundle.classifier(args.reference), real[0].to(bundle.device),
                                       dims=args.reference_dims)
    rows = [run_space(explainer, paths, targets, space, args.single, real, reference)
            for space in args.spaces.split(",")]
    report = {
        "bundle": bundle.name,
        "images": len(images),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"device {args.device}",
        "torch": torch.__version__,
        "reference": None if reference is None else f"{reference.name}, top {args.reference_dims} principal axes",
        "rows": rows,
    }
    header = (f"{'space':<6} {'n':>4} {'flip':>6} {'steps':>6} {'latent':>7} {'pixRMS':>7} {'FD':>6} {'floor':>6} "
              f"{'refFD':>6} {'floor':>6} {'s/expl batch':>13} {'s/expl single':>14}")
    print(header)
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        print(f"{r['space']:<6} {r['explanations']:>4} {r['flip_rate']:>6.1%} {fmt(r['median_steps'], '>6.0f')} "
              f"{fmt(r['median_latent_distance'], '>7.2f')} {fmt(r['median_pixel_rms'], '>7.3f')} "
              f"{fmt(r['realism_fd'], '>6.2f')} {fmt(r['realism_floor_real_vs_real'], '>6.2f')} "
              f"{fmt(r['reference_realism_fd'], '>6.2f')} {fmt(r['reference_realism_floor'], '>6.2f')} "
              f"{r['seconds_per_explanation_batched']:>13.3f} "
              f"{fmt(r['seconds_per_explanation_single_median'], '>14.3f')}")
    for r in rows:
        shares = ", ".join(f"{n} {v['target']:.0%}/{v['source']:.0%}" for n, v in r["other_classifiers_label_share"].items())
        print(f"{r['space']}: other classifiers' labels for the counterfactuals, target/source: {shares or '-'}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
