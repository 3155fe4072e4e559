"""GAN inversion: find ws whose image G.synthesis(ws) reproduces a given image.

Two stages. The start: the encoder's one-shot guess; without an encoder, the best of many
random latents (`cfattack.inversion.search`: the paper's best of 128 at truncation 0.7, scored
by pixel error plus a perceptual distance taken from the classifier's own features,
`cfattack.inversion.perceptual`); or, when asked, the generator's average latent. Then Adam on
ws minimising pixel MSE plus a structural (1 - SSIM) term (plus the perceptual term after a
search): in ``latent`` space after an encoder, first in W and then in W+ after a search. The
result says honestly how good the reconstruction is: PSNR, SSIM, and whether the classifier
gives the reconstruction the same label as the original; poor ones are flagged, because a
counterfactual of a bad reconstruction explains the wrong image::

    inv = Inverter(G, encoder=E, classifier=clf, config=InversionConfig(steps=100))
    result = inv.invert(images)        # images [N, C, H, W] in [-1, 1]
    result.ws, result.reconstruction, result.psnr, result.flagged
    Inverter(G, None, clf, preprocess=to_224).invert(images)   # no encoder: search, W, W+
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from cfattack.attack.objectives import objective_value
from cfattack.config import InversionConfig
from cfattack.errors import InvalidInputError
from cfattack.inversion.perceptual import ClassifierFeatures
from cfattack.inversion.search import best_candidates, candidate_classes, candidate_ws, schedule_for_resolution
from cfattack.quality.image_quality import psnr, ssim

__all__ = ["Inverter", "InversionResult"]

# Default weight of the classifier-feature term after an encoder start. Measured on 60 held-out
# Fashion-MNIST test images (default bundle): labels kept 85% -> 93%, reconstructions already past
# p = 0.9 toward the near target 2 -> 0, PSNR 25.0 -> 22.5 dB.
ENCODER_PERCEPTUAL_WEIGHT = 1.0
# Refinement after an encoder start (steps, lr) and after any other start: an encoder's guess is
# close, so fewer, larger steps reach the same PSNR (22.3 vs 22.5 dB on 60 held-out images).
ENCODER_REFINEMENT = (60, 0.03)
OTHER_REFINEMENT = (100, 0.02)


@dataclass
class InversionResult:
    """Per image: ws [N, num_ws, w_dim], reconstruction [N, C, H, W], quality and flags [N]."""

    ws: torch.Tensor
    reconstruction: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor
    encoder_psnr: torch.Tensor
    label_original: torch.Tensor | None
    label_reconstruction: torch.Tensor | None
    flagged: torch.Tensor
    reasons: list[list[str]]
    loss_curve: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0  # refinement steps after the start (the last phase's)

    @property
    def label_match(self) -> torch.Tensor | None:
        if self.label_original is None or self.label_reconstruction is None:
            return None
        return self.label_original == self.label_reconstruction


def _reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, config: InversionConfig) -> torch.Tensor:
    """Per-image loss [N]: pixel MSE plus the structural term."""
    loss = config.pixel_weight * (recon - target).square().mean(dim=[1, 2, 3])
    if config.structure_weight > 0:
        loss = loss + config.structure_weight * (1 - ssim(recon, target))
    return loss


class _Adam:
    """torch.optim.Adam (defaults, single-tensor path) on one tensor, with the same arithmetic.

    Why not torch.optim: its first use imports torch._dynamo, about 1.5 s of every CLI call.
    The update below is the one torch runs on CPU, operation for operation, so results are
    bit-identical (tests/cfattack/test_inversion.py checks it).
    """

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        """Apply one update from ``param.grad`` and clear the gradient."""
        grad = self.param.grad
        beta1, beta2 = self.betas
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = self.lr / (1 - beta1**self.steps)
        denom = (self.exp_avg_sq.sqrt() / (1 - beta2**self.steps) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-step_size)
        self.param.grad = None


@dataclass(frozen=True)
class _Plan:
    """What one `Inverter.invert` call does: the start, the steps per space, the loss weights."""

    start: str  # "encoder", "search" or "average"
    phases: tuple[tuple[str, int, float], ...]  # (space "w" / "w+", steps, learning rate), run in order
    starts: int
    chunk: int
    perceptual_weight: float


class Inverter:
    """Invert images into a generator's W/W+ space; see the module docstring.

    Args:
        G: the generator (``mapping``, ``synthesis``, ``w_avg``).
        encoder: images -> ws [N, num_ws, w_dim], or None (then the start is a search).
        classifier: the explained classifier, for the label check and the perceptual term.
        config: the settings (`InversionConfig`).
        preprocess: maps generator images [N, C, R, R] in [-1, 1] to the classifier's input
            (resize, normalisation) wherever the classifier is called; identity when None.
    """

    def __init__(
        self,
        G: torch.nn.Module,
        encoder: torch.nn.Module | None = None,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
        config: InversionConfig | None = None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.G = G
        self.encoder = encoder
        self.classifier = classifier
        self.config = config or InversionConfig()
        self.preprocess = preprocess
        self._features: ClassifierFeatures | None = None

    def _decode(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode="const")

    def _classify(self, images: torch.Tensor) -> torch.Tensor:
        assert self.classifier is not None
        return self.classifier(images if self.preprocess is None else self.preprocess(images))

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        expected = (self.G.img_channels, self.G.img_resolution, self.G.img_resolution)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InvalidInputError(f"images must be a tensor [N, {', '.join(map(str, expected))}]; got {shape}")
        if not torch.isfinite(images).all():
            raise InvalidInputError("images contain NaN or infinite values")
        return images.float().clamp(-1, 1)

    def plan(self) -> _Plan:
        """The start, steps and weights this inverter's config resolves to for its generator."""
        cfg = self.config
        start = cfg.start if cfg.start != "auto" else ("encoder" if self.encoder is not None else "search")
        if start == "encoder" and self.encoder is None:
            raise InvalidInputError("inversion start 'encoder' needs an encoder; use 'search' or 'average'")
        if cfg.perceptual_weight and self.classifier is None:
            raise InvalidInputError("perceptual_weight > 0 needs a classifier (its features are the perceptual term)")
        defaults = schedule_for_resolution(self.G.img_resolution)
        weight = cfg.perceptual_weight
        if weight is None:
            # The classifier's features keep the reconstruction what the classifier saw (its label):
            # an attack that starts from a reconstruction of another class explains nothing.
            if self.classifier is None:
                weight = 0.0
            elif start == "search":
                weight = defaults.perceptual_weight
            else:
                weight = ENCODER_PERCEPTUAL_WEIGHT if start == "encoder" else 0.0
        steps, lr = ENCODER_REFINEMENT if start == "encoder" else OTHER_REFINEMENT
        steps = steps if cfg.steps is None else cfg.steps
        lr = lr if cfg.lr is None else cfg.lr
        phases: tuple[tuple[str, int, float], ...] = ((cfg.latent, steps, lr),)
        if start == "search":
            w_steps = defaults.w_steps if cfg.search_w_steps is None else cfg.search_w_steps
            phases = (("w", w_steps, cfg.search_lr), (cfg.latent, steps, lr))
        return _Plan(start=start, phases=phases,
                     starts=defaults.starts if cfg.search_starts is None else cfg.search_starts,
                     chunk=defaults.chunk if cfg.search_batch is None else cfg.search_batch,
                     perceptual_weight=float(weight))

    def latents_depend_on_classifier(self) -> bool:
        """True when the classifier shapes the ws (not only the flags): a perceptual term, or a
        search whose candidates take the class the classifier predicts. A cache of inversions
        shared between classifiers must then key on the classifier too."""
        plan = self.plan()
        predicted_class = plan.start == "search" and self.G.c_dim > 0 and self.classifier is not None
        return plan.perceptual_weight > 0 or predicted_class

    def features(self) -> ClassifierFeatures:
        """The classifier's perceptual features (`cfattack.inversion.perceptual`), built once."""
        if self.classifier is None:
            raise InvalidInputError("the perceptual term needs a classifier")
        if self._features is None:
            self._features = ClassifierFeatures(self.classifier, self.preprocess, self.config.perceptual_layers)
        return self._features

    def start(self, images: torch.Tensor, on_chunk: Callable[[], None] | None = None) -> torch.Tensor:
        """The initial ws [N, num_ws, w_dim]: the encoder's guess, the search's best, or w_avg."""
        plan = self.plan()
        if plan.start == "encoder":
            with torch.no_grad():
                return self.encoder(images).float()
        if plan.start == "search":
            return self._search(images, plan, self._search_groups(images, plan.starts), on_chunk)
        w_avg = self.G.mapping.w_avg
        return w_avg.view(1, 1, -1).expand(images.shape[0], self.G.num_ws, -1).clone()

    def _search_groups(self, images: torch.Tensor, starts: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(image indices, candidate classes or None) per group of images sharing candidates.

        A conditional generator gets, per image, the class the classifier predicts when the
        classifier has one output per generator class; otherwise the starts cycle over all classes.
        """
        everyone = torch.arange(images.shape[0], device=images.device)
        if self.G.c_dim == 0:
            return [(everyone, None)]
        if self.classifier is not None:
            with torch.no_grad():
                logits = self._classify(images)
            if logits.ndim == 2 and logits.shape[1] == self.G.c_dim:
                predicted = logits.argmax(dim=1)
                return [(everyone[predicted == k], torch.full((starts,), int(k))) for k in predicted.unique().tolist()]
        return [(everyone, candidate_classes(self.G.c_dim, starts))]

    def _search(self, images: torch.Tensor, plan: _Plan, groups: list[tuple[torch.Tensor, torch.Tensor | None]],
                on_chunk: Callable[[], None] | None) -> torch.Tensor:
        """The best of ``plan.starts`` random latents per image (pixel MSE + perceptual distance)."""
        cfg = self.config
        ws0 = torch.empty(images.shape[0], self.G.num_ws, self.G.w_dim, device=images.device)
        for index, classes in groups:
            targets = images[index]
            flat_targets = targets.flatten(1)
            target_features = None
            if plan.perceptual_weight > 0:
                with torch.no_grad():
                    target_features = self.features()(targets)

            def score(candidates: torch.Tensor, flat_targets=flat_targets, target_features=target_features):
                flat = candidates.flatten(1)
                mse = (flat.square().sum(1, keepdim=True) + flat_targets.square().sum(1).unsqueeze(0)
                       - 2 * flat @ flat_targets.T).clamp_min(0) / flat.shape[1]
                if target_features is None:
                    return cfg.pixel_weight * mse
                return cfg.pixel_weight * mse + plan.perceptual_weight * ClassifierFeatures.pairwise(
                    self.features()(candidates), target_features)

            candidates = candidate_ws(self.G, plan.starts, cfg.search_truncation, cfg.search_seed, classes)
            best, _ = best_candidates(lambda ws: self._decode(ws).clamp(-1, 1), candidates, score, plan.chunk,
                                      on_chunk)
            ws0[index] = best
        return ws0

    def invert(self, images: torch.Tensor, on_step: Callable[[int, int], None] | None = None) -> InversionResult:
        """Invert ``images`` [N, C, H, W] in [-1, 1]; ``on_step(done, total)`` follows each unit of work.

        The units are the search's decoded chunks (when searching) and the refinement steps.

        Raises:
            InvalidInputError: ``images`` is not [N, C, R, R] for this generator, or holds NaN/inf;
                the config asks for an encoder start without an encoder, or for a perceptual
                term without a classifier.
        """
        cfg = self.config
        started = time.perf_counter()
        images = self._check(images)
        device = next(self.G.parameters()).device
        images = images.to(device)
        plan = self.plan()
        groups = self._search_groups(images, plan.starts) if plan.start == "search" else []
        total = len(groups) * -(-plan.starts // plan.chunk) + sum(steps for _, steps, _ in plan.phases)
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if on_step is not None:
                on_step(done, total)

        # 1. Start: encoder, search over random latents, or the average latent.
        ws0 = self._search(images, plan, groups, tick) if plan.start == "search" else self.start(images)
        with torch.no_grad():
            encoder_psnr = psnr(self._decode(ws0).clamp(-1, 1), images)

        # 2. Refine: Adam per phase, on one w per image broadcast to all entries (W) or on each
        #    entry (W+); a W phase hands its ws to the next phase, which starts a fresh Adam.
        target_features = None
        if plan.perceptual_weight > 0:
            with torch.no_grad():
                target_features = self.features()(images)
        ws = ws0
        curve: list[float] = []
        for space, steps, lr in plan.phases:
            if space == "w":
                param = ws.mean(dim=1, keepdim=True).clone().requires_grad_(True)
                expand = lambda p: p.expand(-1, self.G.num_ws, -1)  # noqa: E731
            else:
                param = ws.clone().requires_grad_(True)
                expand = lambda p: p  # noqa: E731
            optimizer = _Adam(param, lr=lr)
            for _ in range(steps):
                ws = expand(param)
                recon = self._decode(ws)
                loss = _reconstruction_loss(recon, images, cfg)
                if target_features is not None:
                    loss = loss + plan.perceptual_weight * ClassifierFeatures.distance(
                        self.features()(recon), target_features)
                if cfg.proximity_weight > 0:
                    loss = loss + cfg.proximity_weight * (ws - ws0).square().mean(dim=[1, 2])
                loss.sum().backward()
                optimizer.step()
                curve.append(float(loss.detach().mean()))
                tick()
            ws = expand(param).detach()
        ws = self._retry_mislabelled(ws, images, plan, ws0)

        # 3. Judge the result.
        with torch.no_grad():
            recon = self._decode(ws).clamp(-1, 1)
            quality_psnr, quality_ssim = psnr(recon, images), ssim(recon, images)
        result = InversionResult(
            ws=ws, reconstruction=recon, psnr=quality_psnr, ssim=quality_ssim, encoder_psnr=encoder_psnr,
            label_original=None, label_reconstruction=None, flagged=torch.zeros(len(images), dtype=torch.bool),
            reasons=[[] for _ in range(len(images))], loss_curve=curve, seconds=time.perf_counter() - started,
            steps=plan.phases[-1][1],
        )
        return self.judge(result, images)

    def _retry_mislabelled(self, ws: torch.Tensor, images: torch.Tensor, plan: _Plan, ws0: torch.Tensor) -> torch.Tensor:
        """ws with the items the classifier labels unlike their input refined again, a label term added.

        The attack starts from the reconstruction, so a reconstruction of another class would
        make the counterfactual one of another image. ``label_retry_steps`` more steps of the
        same loss plus ``label_weight`` times -log p(input's label) usually bring the label back
        at little cost in PSNR (on held-out Fashion-MNIST: 6 of 6 such items, each within 1 dB).
        """
        cfg = self.config
        if not cfg.label_retry_steps or not cfg.label_weight or self.classifier is None or cfg.steps == 0:
            return ws  # (steps=0 asks for the start alone)
        with torch.no_grad():
            wanted = self._classify(images).argmax(dim=1)
            got = self._classify(self._decode(ws).clamp(-1, 1)).argmax(dim=1)
        rows = (got != wanted).nonzero().squeeze(1)
        if rows.numel() == 0:
            return ws
        targets, labels = images[rows], wanted[rows]
        target_features = None
        if plan.perceptual_weight > 0:
            with torch.no_grad():
                target_features = self.features()(targets)
        shared = cfg.latent == "w"
        param = (ws[rows].mean(dim=1, keepdim=True) if shared else ws[rows]).clone().requires_grad_(True)
        optimizer = _Adam(param, lr=plan.phases[-1][2])
        for _ in range(cfg.label_retry_steps):
            current = param.expand(-1, self.G.num_ws, -1) if shared else param
            recon = self._decode(current)
            loss = _reconstruction_loss(recon, targets, cfg)
            if target_features is not None:
                loss = loss + plan.perceptual_weight * ClassifierFeatures.distance(self.features()(recon), target_features)
            if cfg.proximity_weight > 0:
                loss = loss + cfg.proximity_weight * (current - ws0[rows]).square().mean(dim=[1, 2])
            log_p = objective_value(self._classify(recon.clamp(-1, 1)), labels, "log_probability")
            (loss - cfg.label_weight * log_p).sum().backward()
            optimizer.step()
        out = ws.clone()
        out[rows] = (param.expand(-1, self.G.num_ws, -1) if shared else param).detach()
        return out

    def judge(self, result: InversionResult, images: torch.Tensor) -> InversionResult:
        """``result`` with its labels and flags set by this inverter's classifier and thresholds.

        `invert` ends with it; the explainer also calls it to reuse one inversion of the same
        images for another classifier (the latents do not depend on the classifier, the flags do).
        """
        cfg = self.config
        label_orig = label_recon = None
        if self.classifier is not None:
            device = result.reconstruction.device
            with torch.no_grad():
                label_orig = self._classify(images.to(device)).argmax(dim=1)
                label_recon = self._classify(result.reconstruction).argmax(dim=1)
        reasons: list[list[str]] = []
        for i in range(images.shape[0]):
            why = []
            if float(result.psnr[i]) < cfg.flag_psnr_below:
                why.append(f"PSNR {float(result.psnr[i]):.1f} dB < {cfg.flag_psnr_below:g} dB")
            if cfg.flag_label_change and label_orig is not None and int(label_orig[i]) != int(label_recon[i]):
                why.append("the classifier labels the reconstruction differently from the input")
            reasons.append(why)
        return dataclasses.replace(result, label_original=label_orig, label_reconstruction=label_recon,
                                   flagged=torch.tensor([bool(r) for r in reasons]), reasons=reasons)
