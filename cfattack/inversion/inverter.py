"""GAN inversion: find ws whose image G.synthesis(ws) reproduces a given image.

Two stages, both optional: the encoder's one-shot guess (or the generator's average latent
when there is no encoder), then Adam on ws minimising pixel MSE plus a structural (1 - SSIM)
term. The result says honestly how good the reconstruction is: PSNR, SSIM, and whether the
classifier gives the reconstruction the same label as the original; poor ones are flagged,
because a counterfactual of a bad reconstruction explains the wrong image::

    inv = Inverter(G, encoder=E, classifier=clf, config=InversionConfig(steps=100))
    result = inv.invert(images)        # images [N, C, H, W] in [-1, 1]
    result.ws, result.reconstruction, result.psnr, result.flagged
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from cfattack.config import InversionConfig
from cfattack.errors import InvalidInputError
from cfattack.quality.image_quality import psnr, ssim

__all__ = ["Inverter", "InversionResult"]


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


class Inverter:
    """Invert images into a generator's W/W+ space; see the module docstring."""

    def __init__(
        self,
        G: torch.nn.Module,
        encoder: torch.nn.Module | None = None,
        classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
        config: InversionConfig | None = None,
    ) -> None:
        self.G = G
        self.encoder = encoder
        self.classifier = classifier
        self.config = config or InversionConfig()

    def _decode(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode="const")

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        expected = (self.G.img_channels, self.G.img_resolution, self.G.img_resolution)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InvalidInputError(f"images must be a tensor [N, {', '.join(map(str, expected))}]; got {shape}")
        if not torch.isfinite(images).all():
            raise InvalidInputError("images contain NaN or infinite values")
        return images.float().clamp(-1, 1)

    def start(self, images: torch.Tensor) -> torch.Tensor:
        """The initial ws: the encoder's guess, or w_avg for every image."""
        if self.encoder is not None:
            with torch.no_grad():
                return self.encoder(images).float()
        w_avg = self.G.mapping.w_avg
        return w_avg.view(1, 1, -1).expand(images.shape[0], self.G.num_ws, -1).clone()

    def invert(self, images: torch.Tensor) -> InversionResult:
        cfg = self.config
        started = time.perf_counter()
        images = self._check(images)
        device = next(self.G.parameters()).device
        images = images.to(device)

        # 1. Start: encoder (or the average latent).
        ws0 = self.start(images)
        with torch.no_grad():
            encoder_psnr = psnr(self._decode(ws0).clamp(-1, 1), images)

        # 2. Refine: Adam on W+ entries, or on one w per image broadcast to all entries.
        if cfg.latent == "w":
            param = ws0.mean(dim=1, keepdim=True).clone().requires_grad_(True)
            expand = lambda p: p.expand(-1, self.G.num_ws, -1)  # noqa: E731
        else:
            param = ws0.clone().requires_grad_(True)
            expand = lambda p: p  # noqa: E731
        optimizer = _Adam(param, lr=cfg.lr)
        curve: list[float] = []
        for _ in range(cfg.steps):
            ws = expand(param)
            loss = _reconstruction_loss(self._decode(ws), images, cfg)
            if cfg.proximity_weight > 0:
                loss = loss + cfg.proximity_weight * (ws - ws0).square().mean(dim=[1, 2])
            loss.sum().backward()
            optimizer.step()
            curve.append(float(loss.detach().mean()))

        # 3. Judge the result.
        with torch.no_grad():
            ws = expand(param).detach()
            recon = self._decode(ws).clamp(-1, 1)
            quality_psnr, quality_ssim = psnr(recon, images), ssim(recon, images)
        result = InversionResult(
            ws=ws, reconstruction=recon, psnr=quality_psnr, ssim=quality_ssim, encoder_psnr=encoder_psnr,
            label_original=None, label_reconstruction=None, flagged=torch.zeros(len(images), dtype=torch.bool),
            reasons=[[] for _ in range(len(images))], loss_curve=curve, seconds=time.perf_counter() - started,
        )
        return self.judge(result, images)

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
                label_orig = self.classifier(images.to(device)).argmax(dim=1)
                label_recon = self.classifier(result.reconstruction).argmax(dim=1)
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
