"""``cfattack evaluate``: how good are the explanations, measured by networks the attack never saw.

A counterfactual is worth something only if it is (1) valid as the user will see it (the 8-bit
PNG, not the float tensor), (2) valid to independent judges (classifiers the attack never used:
the bundle's other classifiers and extra judges trained only for evaluation), (3) realistic
(its Frechet distance to real target-class images in a judge's embedding, beside generator
samples and the real-vs-real floor), (4) close to the input, and (5) stable: the same answer
alone, in a batch and through ``cfattack batch``. This module measures all of it on real
held-out images toward near targets (each image's second-ranked class), for several methods
at once, with bootstrap intervals::

    report = evaluate_explanations(bundle, images, methods=("w+", "pixel"), judges=judges)
    report.methods[0].independent_validity.value

Rates count an item as valid only when its start was sound: an item whose start (the
reconstruction) is labelled differently from the input, or is already past the threshold, is
reported under ``unsound_start`` and never counted as a success.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from pydantic import BaseModel, Field

from cfattack.attack.objectives import class_probabilities
from cfattack.bundle.classifier import BundleClassifier
from cfattack.bundle.loader import Bundle
from cfattack.config import AttackConfig, InversionConfig
from cfattack.errors import InvalidInputError
from cfattack.images import quantize_8bit
from cfattack.evaluation.compare import real_images_of_classes
from cfattack.pipeline.explainer import Explainer
from cfattack.pipeline.explanation import ExplainConfig, Explanation
from cfattack.quality.metrics import frechet_distance

__all__ = [
    "EVALUATION_FORMAT",
    "METHODS",
    "EvaluationImages",
    "EvaluationReport",
    "Interval",
    "MethodResult",
    "StabilityResult",
    "evaluate_explanations",
    "method_config",
    "near_targets",
    "quantize_8bit",
]

EVALUATION_FORMAT = "cfattack.evaluation/1"


def method_config(name: str) -> ExplainConfig:
    """The explain settings of one evaluated method.

    ``w+`` and ``w`` are today's defaults in that space; ``pixel`` is the pixel-space baseline;
    ``paper`` is Goldwasser & Hooker's setting as cfattack shipped it before its defaults changed
    (W+, Adam lr 0.01, raise the target probability, stop at the first iterate past 0.5 on the
    float image, an inversion of 100 steps at lr 0.02 without the classifier-feature term or the label
    retry, batched numerics), kept so every evaluation reports the old
    figure beside the new one.
    """
    if name == "w+":
        return ExplainConfig()
    if name == "w":
        return ExplainConfig(attack=AttackConfig(space="w"), inversion=InversionConfig(latent="w"))
    if name == "pixel":
        return ExplainConfig(attack=AttackConfig(space="pixel"))
    if name == "paper":
        return ExplainConfig(attack=_paper_attack(), batch_invariant=False,
                             inversion=InversionConfig(perceptual_weight=0.0, steps=100, lr=0.02, label_retry_steps=0))
    raise InvalidInputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def _paper_attack() -> AttackConfig:
    fields = {"space": "w+", "optimizer": "adam", "lr": 0.01, "steps": 500, "objective": "probability",
              "threshold": 0.5, "proximity_weight": 0.0, "shift_lr": None}
    # Options added after the paper's setting (robustness, priors) are switched off where they exist.
    extra = {"robust_shift_px": 0, "robust_stop": False, "shift_search_px": 0, "shared_change": False,
             "class_search_steps": 0, "stop_on_saved": False}
    fields.update({k: v for k, v in extra.items() if k in AttackConfig.model_fields})
    return AttackConfig(**fields)


METHODS: tuple[str, ...] = ("w+", "w", "pixel", "paper")


class Interval(BaseModel):
    """A measured value with its 95% bootstrap interval (percentiles over resampled items)."""

    value: float | None
    low: float | None = None
    high: float | None = None


class StabilityResult(BaseModel):
    """The same items explained alone, in batches of 32, and through ``cfattack batch``."""

    items: int = Field(description="Items compared (explained by all three routes).")
    same_top3_share: Interval = Field(description="Share of items whose top-3 descriptors (as a set) agree on all routes.")
    steps_spread_median: float | None = Field(description="Median over items of max - min attack steps across routes.")
    same_steps_share: float | None = Field(description="Share of items that took the same number of steps on every route.")


class MethodResult(BaseModel):
    """One method's row of the evaluation."""

    method: str
    config: ExplainConfig
    items: int
    validity: Interval = Field(description="Share valid on the explained classifier, judged on the saved 8-bit image.")
    validity_float: float = Field(description="Share that reached the threshold on the float tensor (the attack's own verdict).")
    unsound_start: int = Field(description="Items whose start is labelled unlike the input or is already past the threshold.")
    independent_validity: Interval = Field(description="Share that a majority of the judges label as the target.")
    judge_target_share: dict[str, float] = Field(description="Per judge: share labelled as the target.")
    judge_source_share: dict[str, float] = Field(description="Per judge: share still labelled as the source class.")
    realism_fd: Interval = Field(description="Frechet distance to real target-class images in the realism judge's embedding.")
    realism_ratio_to_generator: float | None = Field(description="realism_fd / generator samples' distance (1 = as real as samples).")
    pixel_l1_from_input: float = Field(description="Median mean |cf - input| in [-1, 1] units.")
    pixel_l2_from_input: float = Field(description="Median ||cf - input||_2.")
    pixel_l1_from_reconstruction: float = Field(description="Median mean |cf - reconstruction| (pixel: from the input).")
    latent_distance: float | None = Field(description="Median ||ws_cf - ws0|| (None in pixel space).")
    steps_median: float = Field(description="Median attack steps.")
    seconds_per_explanation: float = Field(description="Wall time per explanation, batched.")
    stability: StabilityResult | None = None


class EvaluationReport(BaseModel):
    """What ``cfattack evaluate`` writes as ``evaluation.json``."""

    format: str = EVALUATION_FORMAT
    bundle: str
    classifier: str
    images: int
    image_source: str
    judges: list[str] = Field(description="Classifiers that judge validity; none of them is used by the attack.")
    realism_judge: str
    realism_floor: Interval = Field(description="The same distance between two draws of real images.")
    generator_fd: Interval = Field(description="Generator samples of the same target classes vs real images.")
    methods: list[MethodResult]
    machine: str
    threads: int
    seconds: float


@dataclass
class EvaluationImages:
    """Held-out real images to explain, and a separate pool of real images to measure realism against."""

    images: torch.Tensor  # [N, C, R, R] in [-1, 1]
    realism_pool: torch.Tensor  # [M, C, R, R]
    realism_labels: torch.Tensor  # [M]
    source: str  # where they came from, for the report


def near_targets(classifier: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> list[int]:
    """Each image's second-ranked class under ``classifier``: the nearest other class."""
    with torch.no_grad():
        logits = torch.cat([classifier(images[i : i + 256]) for i in range(0, len(images), 256)])
    return logits.topk(2, dim=1).indices[:, 1].tolist()


def _bootstrap(values: Sequence[float], stat: Callable[[np.ndarray], float], resamples: int, seed: int) -> Interval:
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(value=None)
    rng = np.random.default_rng(seed)
    draws = [stat(data[rng.integers(0, data.size, data.size)]) for _ in range(resamples)]
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (None, None)
    return Interval(value=float(stat(data)), low=float(low), high=float(high))


def _share(flags: Sequence[bool], resamples: int, seed: int) -> Interval:
    return _bootstrap([float(f) for f in flags], np.mean, resamples, seed)


class _Embedding:
    """A judge's embedding as numpy features (the realism yardstick)."""

    def __init__(self, judge: BundleClassifier) -> None:
        if not hasattr(judge.net, "embed"):
            raise InvalidInputError(f"realism judge {judge.name!r} has no embedding (embed())")
        self.judge = judge

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        out = [self.judge.net.embed(self.judge.normalize(images[i : i + 256])).float().cpu()
               for i in range(0, len(images), 256)]
        return torch.cat(out).double().numpy()


def _fd_interval(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> Interval:
    """Frechet distance of paired feature sets, with a bootstrap over the pairs."""
    value = frechet_distance(a, b)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(a), len(a))
        draws.append(frechet_distance(a[pick], b[pick]))
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (None, None)
    return Interval(value=float(value), low=None if low is None else float(low), high=None if high is None else float(high))


@torch.no_grad()
def _generator_samples(bundle: Bundle, classes: Sequence[int], seed: int) -> torch.Tensor:
    """One generator sample per listed class (conditional generators) or unconditioned samples."""
    G = bundle.generator
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(len(classes), G.z_dim, generator=rng).to(bundle.device)
    c = None
    if G.c_dim:
        c = torch.zeros(len(classes), G.c_dim, device=bundle.device)
        c[torch.arange(len(classes)), torch.tensor(list(classes))] = 1
    out = []
    for i in range(0, len(classes), 64):
        ws = G.mapping(z[i : i + 64], None if c is None else c[i : i + 64], truncation_psi=bundle.spec.truncation_psi)
        out.append(G.synthesis(ws, noise_mode="const").clamp(-1, 1).cpu())
    return torch.cat(out)


def _labels(judge: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([class_probabilities(judge(images[i : i + 256])).argmax(1).cpu()
                          for i in range(0, len(images), 256)])


def _top3(exp: Explanation) -> frozenset[str]:
    return frozenset(a.name for a in exp.attributions[:3])


def _sound_start(exp: Explanation) -> bool:
    """The attack started from an image labelled like the input and not already past the threshold.

    An item that passed at step 0 after a first move (a whole-object shift or a class step) did
    start below the threshold: the move is its counterfactual.
    """
    moved = bool(exp.class_step) or (exp.shift_px is not None and any(abs(v) > 0 for v in exp.shift_px))
    return exp.start_class == exp.source_class and (exp.steps > 0 or moved) and \
        exp.reason not in ("start_past_threshold", "start_mislabelled")


def _run(explainer: Explainer, images: torch.Tensor, targets: list[int], classifier: str,
         batch_size: int) -> tuple[list[Explanation], float]:
    explainer.clear_cache()
    began = time.perf_counter()
    exps = explainer.explain_many(list(images), targets, classifier=classifier, batch_size=batch_size)
    return exps, (time.perf_counter() - began) / max(len(exps), 1)


def _through_batch_command(explainer: Explainer, images: torch.Tensor, targets: list[int], classifier: str,
                           batch_size: int) -> tuple[list[frozenset[str] | None], list[int | None]]:
    """Top-3 sets and steps of the same items run by the ``cfattack batch`` job runner."""
    from cfattack.batch.runner import BatchJob
    from cfattack.images import save_image

    names = explainer.bundle.class_names
    with tempfile.TemporaryDirectory(prefix="cfattack-eval-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        rows = []
        for i, image in enumerate(images):
            path = save_image(image, folder / f"item{i:05d}.png")
            rows.append({"image": str(path), "target": names[targets[i]]})
        manifest = Path(tmp) / "items.csv"
        with open(manifest, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image", "target"])
            writer.writeheader()
            writer.writerows(rows)
        out = Path(tmp) / "job"
        BatchJob(manifest, out, bundle=explainer.bundle, classifier=classifier, config=explainer.config,
                 batch_size=batch_size, resamples=10).run()
        by_image: dict[str, dict] = {}
        for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            by_image[Path(record["image"]).name] = record
    tops, steps = [], []
    for i in range(len(images)):
        record = by_image.get(f"item{i:05d}.png")
        tops.append(None if record is None else frozenset(a["name"] for a in record["attributions"][:3]))
        steps.append(None if record is None else int(record["steps"]))
    return tops, steps


def _stability(explainer: Explainer, images: torch.Tensor, targets: list[int], classifier: str,
               batched: list[Explanation], resamples: int, seed: int) -> StabilityResult:
    alone, _ = _run(explainer, images, targets, classifier, batch_size=1)
    job_tops, job_steps = _through_batch_command(explainer, images, targets, classifier, batch_size=32)
    same, spreads, same_steps = [], [], []
    for i, (a, b) in enumerate(zip(alone, batched)):
        if job_tops[i] is None:
            continue
        same.append(_top3(a) == _top3(b) == job_tops[i])
        route_steps = [a.steps, b.steps, job_steps[i]]
        spreads.append(max(route_steps) - min(route_steps))
        same_steps.append(len(set(route_steps)) == 1)
    return StabilityResult(
        items=len(same), same_top3_share=_share(same, resamples, seed),
        steps_spread_median=float(statistics.median(spreads)) if spreads else None,
        same_steps_share=float(np.mean(same_steps)) if same_steps else None,
    )


def explained_device(classifier: torch.nn.Module) -> torch.device:
    """The device a classifier's parameters or buffers live on (CPU when it has none)."""
    for tensor in (*classifier.parameters(), *classifier.buffers()):
        return tensor.device
    return torch.device("cpu")


def _method_result(name: str, config: ExplainConfig, exps: list[Explanation], seconds: float,
                   inputs: torch.Tensor, explained: BundleClassifier, judges: dict[str, BundleClassifier],
                   embed: _Embedding, real_feats: np.ndarray, generator_fd: float | None,
                   resamples: int, seed: int) -> MethodResult:
    targets = torch.tensor([e.target_index for e in exps])
    sources = torch.tensor([e.source_index for e in exps])
    cfs = quantize_8bit(torch.stack([e.images.counterfactual for e in exps]).float())
    with torch.no_grad():
        p_target = torch.cat([class_probabilities(explained(cfs[i : i + 256].to(explained_device(explained))))
                              .cpu() for i in range(0, len(cfs), 256)]).gather(1, targets[:, None]).squeeze(1)
    sound = [_sound_start(e) for e in exps]
    valid = [bool(p > config.attack.threshold) and ok for p, ok in zip(p_target.tolist(), sound)]
    votes = torch.zeros(len(exps))
    target_share, source_share = {}, {}
    for judge_name, judge in judges.items():
        labels = _labels(lambda x, j=judge: j(x.to(explained_device(j))), cfs)
        votes += (labels == targets).float()
        target_share[judge_name] = float((labels == targets).float().mean())
        source_share[judge_name] = float((labels == sources).float().mean())
    majority = [bool(v > len(judges) / 2) and ok for v, ok in zip(votes.tolist(), sound)]
    cf_feats = embed(cfs)
    realism = _fd_interval(cf_feats, real_feats, max(resamples // 5, 0), seed)
    starts = torch.stack([(e.images.reconstruction if e.images.reconstruction is not None else e.images.original)
                          for e in exps]).float()
    l1_input = (cfs - inputs).abs().flatten(1).mean(1)
    l2_input = (cfs - inputs).flatten(1).norm(dim=1)
    l1_start = (cfs - starts).abs().flatten(1).mean(1)
    latent = [e.latent_distance for e in exps if e.latent_distance is not None]
    return MethodResult(
        method=name, config=config, items=len(exps),
        validity=_share(valid, resamples, seed),
        validity_float=float(np.mean([e.reached for e in exps])),
        unsound_start=sum(not ok for ok in sound),
        independent_validity=_share(majority, resamples, seed),
        judge_target_share=target_share, judge_source_share=source_share,
        realism_fd=realism,
        realism_ratio_to_generator=None if not generator_fd or realism.value is None else realism.value / generator_fd,
        pixel_l1_from_input=float(l1_input.median()), pixel_l2_from_input=float(l2_input.median()),
        pixel_l1_from_reconstruction=float(l1_start.median()),
        latent_distance=float(statistics.median(latent)) if latent else None,
        steps_median=float(statistics.median(e.steps for e in exps)),
        seconds_per_explanation=seconds,
    )


def evaluate_explanations(
    bundle: Bundle,
    data: EvaluationImages,
    *,
    judges: dict[str, BundleClassifier],
    realism_judge: str,
    classifier: str | None = None,
    methods: Sequence[str] = METHODS,
    stability_methods: Sequence[str] = ("w+",),
    batch_size: int = 32,
    resamples: int = 1000,
    seed: int = 0,
    configs: dict[str, ExplainConfig] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Explain ``data.images`` toward their near targets with every method and measure the results.

    Args:
        bundle: the loaded bundle whose ``classifier`` is explained.
        data: held-out images and a realism pool (see `EvaluationImages`).
        judges: classifiers that judge validity; must not include the explained classifier.
        realism_judge: the judge whose embedding measures realism.
        methods: names from `METHODS` (or keys of ``configs``), in report order.
        stability_methods: methods also run alone and through ``cfattack batch``.
        configs: extra or overriding methods, name -> `ExplainConfig`.
        progress: called with a short note as each stage begins.
    """
    began = time.perf_counter()
    note = progress or (lambda text: None)
    name = classifier or bundle.default_classifier
    explained = bundle.classifier(name)
    if name in judges or any(j is explained for j in judges.values()):
        raise InvalidInputError(f"the explained classifier {name!r} cannot also be a judge")
    if realism_judge not in judges:
        raise InvalidInputError(f"realism judge {realism_judge!r} is not one of the judges {sorted(judges)}")
    configs = dict(configs or {})
    explainer = Explainer(bundle)
    images = data.images.float()
    targets = near_targets(lambda x: explained(x.to(bundle.device)), images.to(bundle.device))

    embed = _Embedding(judges[realism_judge])
    pool = (data.realism_pool, data.realism_labels)
    real_a = real_images_of_classes(pool, targets, seed + 1)
    real_b = real_images_of_classes(pool, targets, seed + 2)
    real_feats = embed(real_a)
    floor = _fd_interval(embed(real_b), real_feats, max(resamples // 5, 0), seed)
    samples = _generator_samples(bundle, targets, seed + 3)
    generator = _fd_interval(embed(samples), real_feats, max(resamples // 5, 0), seed)

    rows = []
    for method in methods:
        config = configs.get(method) or method_config(method)
        note(f"{method}: explaining {len(images)} images")
        explainer.config = config
        exps, seconds = _run(explainer, images, targets, name, batch_size)
        row = _method_result(method, config, exps, seconds, images, explained, judges, embed, real_feats,
                             generator.value, resamples, seed)
        if method in stability_methods:
            note(f"{method}: stability (alone, and through cfattack batch)")
            row.stability = _stability(explainer, images, targets, name, exps, resamples, seed)
        rows.append(row)
    return EvaluationReport(
        bundle=bundle.name, classifier=name, images=len(images), image_source=data.source,
        judges=list(judges), realism_judge=realism_judge, realism_floor=floor, generator_fd=generator,
        methods=rows, machine=f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs",
        threads=torch.get_num_threads(), seconds=time.perf_counter() - began,
    )
