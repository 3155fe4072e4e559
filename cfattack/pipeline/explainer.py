"""The explainer: invert an image, attack it in latent space, rank what changed.

This is the pipeline behind ``cfattack explain``. For each image: the bundle's classifier
labels it; the `Inverter` finds latents whose image reproduces it (and says how well); the
`LatentAttack` moves those latents until the classifier believes the target class; the
bundle's latent descriptor predictors (or the descriptors measured on the two images) say
which human-meaningful features changed. `Explainer.explain_many` explains N images, each
computed on its own by default so that batching never changes an answer
(``ExplainConfig.batch_invariant``)::

    from cfattack.pipeline.explainer import Explainer
    explainer = Explainer("default")                     # or a Bundle, or a bundle directory
    exp = explainer.explain("examples/coat-1.png", target="pullover")
    print(exp.summary_line()); exp.save("out/")

Your own networks need no bundle folder: ``Explainer(generator=G, classifier=model,
class_names=["cat", "dog"], input_size=224, normalization=IMAGENET)`` (or ``preprocess=fn``)
builds one in memory (`cfattack.bundle.custom.bundle_from_networks`).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import torch

from cfattack.attack.latent_attack import LatentAttack
from cfattack.attack.objectives import class_probabilities
from cfattack.attack.result import AttackResult
from cfattack.attribution.changes import DescriptorChange
from cfattack.attribution.measured import measured_changes
from cfattack.attribution.predictors import LatentDescriptorModel, load_descriptor_model
from cfattack.bundle.loader import Bundle, load_bundle
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import (
    AlternativeCounterfactual,
    ExplainConfig,
    Explanation,
    ExplanationImages,
    InversionReport,
    agreement_of,
)
from cfattack.images import image_from_pil, load_image
from cfattack.inversion.inverter import InversionResult, Inverter
from cfattack.pipeline.attack_setup import attack_progress, clamp_straight_through, shift_directions_or_none

__all__ = ["Explainer", "ImageInput", "explain"]

# A path, or an image tensor [C, H, W] / [1, C, H, W] in [-1, 1], or a PIL image.
ImageInput = Union[str, os.PathLike, torch.Tensor, "PIL.Image.Image"]  # noqa: F821

_OWN_MODEL_KEYWORDS = {"class_names", "preprocess", "input_size", "input_channels", "normalization", "image_kind",
                       "name", "description"}  # bundle_from_networks' keywords
_INVERSIONS_KEPT = 4  # recent inversions kept for reuse by another classifier (Explainer._invert)


class Explainer:
    """Explains one bundle's classifiers; loads the bundle and its descriptor model once.

    Args:
        bundle: a loaded `Bundle`, ``"default"``, or a bundle directory / ``bundle.json`` path.
        config: `ExplainConfig` (inversion, attack, attribution settings).
        device: move the bundle there (``"cpu"``, ``"cuda"``); None keeps the bundle's device.
        trust_code: when loading ``bundle``, allow classifiers that are code (factory,
            TorchScript); see `cfattack.bundle.loader.load_bundle`. Only for trusted bundles.
        generator, classifier: your own networks instead of a bundle (both or neither): a
            StyleGAN3 generator (`cfattack.stylegan.loading.load_generator` reads official pickles)
            and any ``torch.nn.Module`` or callable images -> logits. The other keywords
            (``class_names``, ``preprocess``, ``input_size``, ``input_channels``, ``normalization``,
            ``image_kind``) go to `cfattack.bundle.custom.bundle_from_networks`.

    Raises:
        UntrustedCodeError: the bundle holds code classifiers and ``trust_code`` is False.
        BundleError, NetworkLoadError: the bundle or its descriptor model cannot be loaded.
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike = "default",
        config: ExplainConfig | None = None,
        device: str | torch.device | None = None,
        *,
        trust_code: bool = False,
        generator: torch.nn.Module | None = None,
        classifier: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor] | None = None,
        **own_models: Any,
    ) -> None:
        if (generator is None) != (classifier is None):
            raise InvalidInputError("give both generator= and classifier= (your own networks), or neither")
        if generator is None and own_models:
            raise InvalidInputError(f"{', '.join(sorted(own_models))}: only with generator= and classifier=")
        if generator is not None:
            from cfattack.bundle.custom import bundle_from_networks

            unknown = set(own_models) - _OWN_MODEL_KEYWORDS
            if unknown:
                raise InvalidInputError(f"unknown keyword(s) {', '.join(sorted(unknown))}; with your own networks "
                                        f"Explainer takes {', '.join(sorted(_OWN_MODEL_KEYWORDS))}")
            if not (isinstance(bundle, str) and bundle == "default"):
                raise InvalidInputError("give a bundle, or generator= and classifier=, not both")
            bundle = bundle_from_networks(generator, classifier, device=device or "cpu", **own_models)
        elif not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle, device=device or "cpu", trust_code=trust_code)
        elif device is not None:
            bundle.to(device)
        self.bundle = bundle
        self.config = config or ExplainConfig()
        self.descriptor_model: LatentDescriptorModel | None = None
        self._inversions: dict[tuple, InversionResult] = {}  # see _invert
        if bundle.descriptor_model_path is not None:
            self.descriptor_model = load_descriptor_model(bundle.descriptor_model_path).to(bundle.device)
        from descriptors import default_descriptors

        self.descriptors = default_descriptors(bundle.spec.image.channels, kind=bundle.spec.image.kind)
        self._spread: dict[str, float] | None = None  # see _descriptor_std
        self._class_means: dict[tuple, torch.Tensor | None] = {}  # see _class_directions
        self._w_std: torch.Tensor | None = None  # see _alternatives

    def effective_config(self) -> ExplainConfig:
        """The settings an explanation really runs with (and records).

        In space ``w`` the attack moves one w per image, so the start must be an inversion in W:
        inverting in W+ and averaging its entries would start from an image that was never
        checked against the input. An inversion set to W+ is therefore run in W for that space.
        """
        cfg = self.config
        if cfg.attack.space == "w" and cfg.inversion.latent != "w":
            cfg = cfg.model_copy(update={"inversion": cfg.inversion.model_copy(update={"latent": "w"})})
        return cfg

    def clear_cache(self) -> None:
        """Forget the inversions kept for reuse, so the next explanation inverts from scratch (timing, memory)."""
        self._inversions.clear()

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    # --- inputs -----------------------------------------------------------------------------

    def load(self, image: ImageInput) -> tuple[torch.Tensor, str | None]:
        """One input -> (image [C, R, R] in [-1, 1] on the CPU, its path or None).

        Files are converted to the bundle's channels and size (see `cfattack.images.load_image`).
        """
        spec = self.bundle.spec.image
        if isinstance(image, (str, os.PathLike)):
            pad_from = spec.native_size if spec.placement == "pad" else None
            return load_image(image, channels=spec.channels, size=spec.resolution, pad_from=pad_from), str(image)
        if isinstance(image, torch.Tensor):
            tensor = image.detach().float().cpu()
            if tensor.ndim == 4 and tensor.shape[0] == 1:
                tensor = tensor[0]
            expected = (spec.channels, spec.resolution, spec.resolution)
            if tuple(tensor.shape) != expected:
                raise InvalidInputError(
                    f"image tensor must have shape {list(expected)} (values in [-1, 1]); got {list(image.shape)}"
                )
            if not torch.isfinite(tensor).all():
                raise InvalidInputError("image tensor contains NaN or infinite values")
            return tensor.clamp(-1, 1), None
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a core dependency
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            return self._from_pil(image), None
        raise InvalidInputError(
            f"an image must be a file path, a tensor [C, H, W] in [-1, 1] or a PIL image; got {type(image).__name__}"
        )

    def _from_pil(self, pil: "PIL.Image.Image") -> torch.Tensor:  # noqa: F821
        spec = self.bundle.spec.image
        return image_from_pil(pil, channels=spec.channels, size=spec.resolution,
                              pad_from=spec.native_size if spec.placement == "pad" else None)

    def _targets(self, targets: str | int | Sequence[str | int], count: int) -> list[int]:
        if isinstance(targets, (str, int)):
            targets = [targets] * count
        targets = list(targets)
        if len(targets) != count:
            raise InvalidInputError(f"got {len(targets)} targets for {count} images")
        return [self.bundle.class_index(t) for t in targets]

    # --- the pipeline -------------------------------------------------------------------------

    def explain(self, image: ImageInput, target: str | int, classifier: str | None = None, k: int = 1) -> Explanation:
        """Explain one image toward ``target`` (a class name, alias or index).

        ``k > 1`` also runs K - 1 more attacks from jittered starts (`ExplainConfig.jitter`):
        they are in ``alternatives``, and ``agreement`` says how much their top changes agree
        with each other, which is how far a user can trust the ranking.

        Raises:
            InvalidInputError: unreadable image, unknown target or classifier, or a target the
                classifier already predicts (unless ``config.allow_same_class``).
        """
        return self.explain_many([image], target, classifier=classifier, k=k)[0]

    def explain_many(
        self,
        images: Sequence[ImageInput],
        targets: str | int | Sequence[str | int],
        classifier: str | None = None,
        batch_size: int = 32,
        on_stage: Callable[[str], None] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
        k: int = 1,
    ) -> list[Explanation]:
        """Explain many images in batches of ``batch_size`` (one target for all, or one each).

        With ``config.batch_invariant`` (the default) the networks see one image at a time, so
        ``batch_size`` changes nothing in the results (and little in the speed on a CPU).

        All inputs are read and checked before any work starts, so a bad one fails fast;
        batch jobs that must go on past bad items check them one by one with `load`.
        ``on_stage(name)`` is called as each stage of a batch begins ("classify", "invert",
        "attack", "attribute"); ``on_progress(stage, done, total)`` as work inside a stage
        moves: "invert" counts refinement steps, "attack" the batch's finished items. Both are
        for progress bars.
        """
        if isinstance(images, (str, os.PathLike, torch.Tensor)):
            images = [images]
        if not images:
            return []
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        if not isinstance(k, int) or not 1 <= k <= 64:
            raise InvalidInputError(f"k (counterfactuals per image) must be 1..64, got {k!r}")
        if k > 1 and self.effective_config().attack.space == "pixel":
            raise InvalidInputError("k > 1 counterfactuals need a latent space (w or w+): pixel space has no "
                                    "latent start to jitter")
        loaded = [self.load(image) for image in images]
        target_indices = self._targets(targets, len(loaded))
        name = self._classifier_name(classifier)
        results: list[Explanation] = []
        # batch_invariant: each image is computed alone (see ExplainConfig.batch_invariant).
        step = 1 if self.config.batch_invariant else batch_size
        for start in range(0, len(loaded), step):
            chunk = loaded[start:start + step]
            x = torch.stack([tensor for tensor, _ in chunk])
            paths = [path for _, path in chunk]
            results += self._explain_batch(x, target_indices[start:start + step], name, paths, on_stage,
                                           on_progress, k)
        return results

    def _classifier_name(self, classifier: str | None) -> str:
        return self.bundle.classifier(classifier).name if classifier is not None else self.bundle.default_classifier

    def _explain_batch(
        self,
        x: torch.Tensor,
        targets: list[int],
        classifier_name: str,
        paths: list[str | None],
        on_stage: Callable[[str], None] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
        k: int = 1,
    ) -> list[Explanation]:
        cfg = self.effective_config()
        stage = on_stage or (lambda name: None)
        timings: dict[str, float] = {}
        clf = self.bundle.classifier(classifier_name)
        G = self.bundle.generator
        x = x.to(self.device)

        began = time.perf_counter()
        stage("classify")
        with torch.no_grad():
            probs = class_probabilities(clf(x)).cpu()
        source_prob, source = probs.max(dim=1)
        self._check_targets(source, targets, paths)

        inversion: InversionResult | None = None
        attack = LatentAttack(lambda ws: clamp_straight_through(G.synthesis(ws, noise_mode="const")), clf, cfg.attack)
        target_tensor = torch.tensor(targets, device=self.device)
        if cfg.attack.space == "pixel":
            timings["inversion"] = 0.0
            stage("attack")
            tic = time.perf_counter()
            result = attack.run(None, target_tensor, images=x, on_step=attack_progress(on_progress))
        else:
            stage("invert")
            tic = time.perf_counter()
            inversion = self._invert(x, clf, on_progress)
            timings["inversion"] = time.perf_counter() - tic
            stage("attack")
            tic = time.perf_counter()
            moves_object = cfg.attack.shift_lr is not None or (cfg.attack.shift_search_px and cfg.attack.space == "w+")
            directions = shift_directions_or_none(G, inversion.ws, required=cfg.attack.shift_lr is not None) \
                if moves_object else None
            result = attack.run(inversion.ws, target_tensor, shift_directions=directions,
                                class_directions=self._class_directions(clf, source.tolist(), targets),
                                on_step=attack_progress(on_progress))
        alternatives: list[list[tuple[AlternativeCounterfactual, torch.Tensor]]] | None = None
        if k > 1 and inversion is not None:
            alternatives = self._alternatives(attack, inversion, target_tensor, clf, source.tolist(), targets, k)
        timings["attack"] = time.perf_counter() - tic

        stage("attribute")
        tic = time.perf_counter()
        start_images = inversion.reconstruction.cpu() if inversion is not None else x.cpu()
        images_cf = result.images_cf.cpu()
        with torch.no_grad():
            cf_class = class_probabilities(clf(result.images_cf.to(self.device))).argmax(dim=1).cpu()
        predicted = self._predicted(inversion, result)
        measured = self._measured(start_images, images_cf) if (cfg.measured or predicted is None) else None
        timings["attribution"] = time.perf_counter() - tic
        per_item = (time.perf_counter() - began) / len(targets)

        explanations = []
        for i, target in enumerate(targets):
            attributions = predicted[i] if predicted is not None else measured[i]
            explanation = self._explanation(
                i, result, inversion, paths[i], classifier_name, int(source[i]), float(source_prob[i]),
                target, int(cf_class[i]), attributions, "predicted" if predicted is not None else "measured",
                measured[i] if (measured is not None and cfg.measured) else [],
                {**{k: v / len(targets) for k, v in timings.items()}, "total": per_item},
            )
            frames = result.frames_images[i] if result.frames_images is not None else images_cf[i : i + 1]
            others = alternatives[i] if alternatives is not None else []
            if others:
                tops = [[a.name for a in attributions]] + [[a.name for a in alt.attributions] for alt, _ in others]
                explanation = explanation.model_copy(update={"alternatives": [alt for alt, _ in others],
                                                             "agreement": agreement_of(tops)})
            explanation.with_images(ExplanationImages(
                original=x[i].cpu(),
                reconstruction=None if inversion is None else inversion.reconstruction[i].cpu(),
                frames=frames.cpu(),
                counterfactual=images_cf[i],
                alternatives=[image for _, image in others],
            ))
            explanations.append(explanation)
        return explanations

    def _invert(self, x: torch.Tensor, clf: torch.nn.Module,
                on_progress: Callable[[str, int, int], None] | None = None) -> InversionResult:
        """Invert x, reusing the latents of an identical earlier batch (e.g. another classifier).

        Unless the classifier shapes the latents (`Inverter.latents_depend_on_classifier`: a
        perceptual term, a class-conditioned search) inversion only uses it for the label flags,
        which `Inverter.judge` recomputes; it is deterministic, so a reused result is the one a
        fresh run would give. A few recent batches are kept.
        """
        settings = self.effective_config().inversion
        inverter = Inverter(self.bundle.generator, self.bundle.encoder, clf, settings)
        key = (hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest(), tuple(x.shape), str(x.device),
               settings.model_dump_json(),
               # a perceptual term or a class-conditioned search makes the latents the classifier's own
               id(clf) if inverter.latents_depend_on_classifier() else None)
        cached = self._inversions.pop(key, None)
        on_step = None if on_progress is None else (lambda done, total: on_progress("invert", done, total))
        result = inverter.invert(x, on_step=on_step) if cached is None else inverter.judge(cached, x)
        self._inversions[key] = result
        while len(self._inversions) > _INVERSIONS_KEPT:
            self._inversions.pop(next(iter(self._inversions)))
        return result

    def _alternatives(
        self, attack: LatentAttack, inversion: InversionResult, target: torch.Tensor, clf: torch.nn.Module,
        sources: list[int], targets: list[int], k: int,
    ) -> list[list[tuple[AlternativeCounterfactual, torch.Tensor]]]:
        """K - 1 more attacks per item, each from the inversion plus a seeded W-space jitter.

        The jitter of path j is one w-vector (the same for every item, so an item's paths do not
        depend on its batch) added to every ws entry; its scale is ``config.jitter`` times the
        generator's per-coordinate spread of w. Attributions and distances are measured from the
        inversion, as the main counterfactual's are.
        """
        from cfattack.stylegan.class_means import mapped_latent_std

        cfg = self.effective_config()
        G = self.bundle.generator
        if self._w_std is None:
            self._w_std = mapped_latent_std(G)
        ws0 = inversion.ws.detach()
        class_directions = self._class_directions(clf, sources, targets)
        recon = inversion.reconstruction.cpu()
        out: list[list[tuple[AlternativeCounterfactual, torch.Tensor]]] = [[] for _ in targets]
        for j in range(1, k):
            seed = (cfg.attack.seed or 0) + j
            noise = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(seed))
            start = ws0 + (cfg.jitter * noise * self._w_std.cpu()).to(ws0)
            moves_object = cfg.attack.shift_lr is not None or (cfg.attack.shift_search_px and cfg.attack.space == "w+")
            directions = shift_directions_or_none(G, start, required=cfg.attack.shift_lr is not None) if moves_object else None
            result = attack.run(start, target, shift_directions=directions, class_directions=class_directions)
            ranked = self._predicted(inversion, result)
            if ranked is None:
                ranked = self._measured(recon, result.images_cf.cpu())
            for i, summary in enumerate(result.summary()):
                moved = (result.ws_cf[i] - ws0[i].cpu()).flatten()
                out[i].append((AlternativeCounterfactual(
                    index=j, jitter_seed=seed, reached=summary.reached, reason=summary.reason, steps=summary.steps,
                    target_probability=summary.target_probability, class_step=summary.class_step,
                    latent_distance=float(moved.norm()),
                    pixel_rms=float((result.images_cf[i].cpu() - recon[i]).square().mean().sqrt()),
                    attributions=ranked[i][:5],
                ), result.images_cf[i].cpu()))
        return out

    def _class_directions(self, clf: torch.nn.Module, sources: list[int], targets: list[int]) -> torch.Tensor | None:
        """[N, w_dim] target class mean w minus source class mean w, for the attack's class search.

        From the generator's class input when its classes are the classifier's, else from
        generator samples labelled by the explained classifier
        (`cfattack.stylegan.class_means.class_mean_latents`). Computed once per generator and classifier.
        """
        if not self.config.attack.class_search_steps or self.config.attack.space == "pixel":
            return None
        from cfattack.stylegan.class_means import class_mean_latents

        G = self.bundle.generator
        key = (id(G), id(clf), self.config.attack.class_mean_samples)
        if key not in self._class_means:
            self._class_means[key] = class_mean_latents(G, classifier=clf, num_classes=len(self.bundle.class_names),
                                                        truncation_psi=self.bundle.spec.truncation_psi,
                                                        samples=self.config.attack.class_mean_samples)
        means = self._class_means[key]
        if means is None:
            return None
        if max(sources + targets) >= means.shape[0]:
            return None
        return (means[targets] - means[sources]).to(self.device)

    def _check_targets(self, source: torch.Tensor, targets: list[int], paths: list[str | None]) -> None:
        if self.config.allow_same_class:
            return
        for i, (label, target) in enumerate(zip(source.tolist(), targets)):
            if label == target:
                what = paths[i] or f"image {i}"
                raise InvalidInputError(
                    f"{what}: the classifier already predicts {self.bundle.class_names[target]!r}; "
                    "choose another target class"
                )

    def _predicted(self, inversion: InversionResult | None, result: AttackResult) -> list[list[DescriptorChange]] | None:
        if self.descriptor_model is None or inversion is None or result.ws_cf is None:
            return None
        ws0 = inversion.ws.detach().to(self.device)
        ws_cf = result.ws_cf.to(self.device)
        with torch.no_grad():
            return self.descriptor_model.rank(ws0, ws_cf, include_unreliable=self.config.include_unreliable)

    def _measured(self, start: torch.Tensor, cf: torch.Tensor) -> list[list[DescriptorChange]]:
        return measured_changes(self.descriptors, start, cf, std=self._descriptor_std())

    def _descriptor_std(self) -> dict[str, float]:
        """Each descriptor's spread: the unit of a measured change ("sd").

        From the bundle's descriptor model where it has the descriptor, else measured on
        generator samples (`cfattack.attribution.spread.descriptor_spread`, cached on disk).
        """
        model_std = {fit.name: fit.std for fit in self.descriptor_model.fits} if self.descriptor_model else {}
        if all(d.name in model_std for d in self.descriptors):
            return model_std
        if self._spread is None:
            from cfattack.attribution.spread import descriptor_spread

            spread = descriptor_spread(self.bundle.generator, self.descriptors, samples=self.config.spread_samples,
                                       truncation_psi=self.bundle.spec.truncation_psi)
            self._spread = dict(spread.std)
        return {**self._spread, **model_std}

    def _explanation(
        self,
        i: int,
        result: AttackResult,
        inversion: InversionResult | None,
        path: str | None,
        classifier_name: str,
        source: int,
        source_probability: float,
        target: int,
        cf_class: int,
        attributions: list[DescriptorChange],
        attribution_source: str,
        measured: list[DescriptorChange],
        timings: dict[str, float],
    ) -> Explanation:
        cfg = self.effective_config()
        names = list(self.bundle.class_names)
        summary = result.summary()[i]
        warnings: list[str] = []
        reached, reason = summary.reached, summary.reason
        # The start image is the reconstruction (before any whole-object move); pixel space starts
        # from the input itself.
        start_class = summary.source_class
        if inversion is not None and inversion.label_reconstruction is not None:
            start_class = int(inversion.label_reconstruction[i])
        report = None
        if inversion is not None:
            label_match = None if inversion.label_match is None else bool(inversion.label_match[i])
            report = InversionReport(
                psnr=float(inversion.psnr[i]), ssim=float(inversion.ssim[i]),
                encoder_psnr=float(inversion.encoder_psnr[i]), steps=inversion.steps,
                label_match=label_match, flagged=bool(inversion.flagged[i]), reasons=inversion.reasons[i],
            )
            if report.flagged:
                warnings.append("poor inversion: " + "; ".join(report.reasons)
                                + " -- the counterfactual explains the reconstruction, not the input")
        # A start that is already the target, or that the classifier labels unlike the input, makes
        # the result no counterfactual of the input: say so, and never count it as reached.
        shifted = summary.shift_px is not None and any(abs(v) > 0 for v in summary.shift_px)
        moved = shifted or bool(summary.class_step)
        if cfg.attack.space != "pixel" and summary.reached and summary.steps == 0 and not moved:
            reached, reason = False, "start_past_threshold"
            warnings.append(f"the reconstruction is already {names[target]!r} (p={summary.target_probability:.2f}): the "
                            "inversion changed the class, so there is no counterfactual of the input to show")
        elif cfg.attack.space != "pixel" and start_class != source:
            reached, reason = False, "start_mislabelled"
            warnings.append(f"the attack started from a reconstruction labelled {names[start_class]!r}, not "
                            f"{names[source]!r} as the input: the result explains another image and does not count "
                            "as reached")
        if not summary.reached:
            warnings.append(
                f"target not reached: stopped by {summary.reason} after {summary.steps} steps "
                f"at p={summary.target_probability:.3f} (threshold {cfg.attack.threshold:g})"
            )
        if attribution_source == "measured" and cfg.attack.space != "pixel":
            warnings.append("the bundle has no latent descriptor predictors; attributions are measured on the images")
        return Explanation(
            image=path,
            bundle=self.bundle.name,
            classifier=classifier_name,
            class_names=names,
            source_class=names[source],
            source_index=source,
            source_probability=source_probability,
            start_class=names[start_class],
            target=names[target],
            target_index=target,
            reached=reached,
            reason=reason,
            steps=summary.steps,
            threshold=cfg.attack.threshold,
            target_probability=summary.target_probability,
            counterfactual_class=names[cf_class],
            space=cfg.attack.space,
            latent_distance=summary.latent_distance,
            pixel_rms=summary.pixel_rms,
            shift_px=summary.shift_px if (shifted or cfg.attack.shift_lr is not None) else None,
            class_step=summary.class_step,
            probability_curve=summary.probability_curve,
            frame_steps=summary.frame_steps,
            inversion=report,
            attribution_source=attribution_source,
            attributions=attributions,
            measured=measured,
            warnings=warnings,
            timings={k: round(v, 4) for k, v in timings.items()},
            config=cfg,
        )


def explain(
    image: ImageInput,
    target: str | int,
    *,
    bundle: Bundle | str | os.PathLike = "default",
    classifier: str | None = None,
    config: ExplainConfig | None = None,
    out: str | os.PathLike | None = None,
    trust_code: bool = False,
) -> Explanation:
    """One-call convenience: build an `Explainer`, explain one image, optionally save the report.

    ``trust_code`` allows a bundle's code classifiers (factory, TorchScript); see `Explainer`.
    """
    explanation = Explainer(bundle, config, trust_code=trust_code).explain(image, target, classifier=classifier)
    if out is not None:
        explanation.save(Path(out))
    return explanation

