"""Train the inversion encoder for a fixed generator, resumably.

Each batch mixes two kinds of examples:

1. synthetic pairs (ws, G(ws)), where the target latent is known: latent loss on E(G(ws))
   plus pixel loss on G(E(G(ws))); ws are drawn with random truncation and style mixing
   so that W+ is covered, not only the mapping network's output;
2. real training images, where only the image is known: pixel loss on G(E(x)) (and,
   optionally, a loss between a classifier's embeddings of G(E(x)) and x, which keeps the
   reconstruction's class).

Evaluation uses held-out real images (the validation split): PSNR/SSIM of G(E(x)).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from cfattack.atomic import atomic_torch_save, atomic_write_text
from cfattack.config import EncoderTrainingConfig
from cfattack.inversion.encoder import Encoder, save_encoder_checkpoint
from cfattack.errors import InvalidInputError
from cfattack.stylegan.generator import Generator
from cfattack.quality.image_quality import psnr, ssim
from cfattack.training.data import ImageDataset, load_dataset

__all__ = ["EncoderTrainingResult", "train_encoder", "evaluate_encoder", "sample_training_ws", "ENCODER_NAME"]

ENCODER_NAME = "encoder.pt"
_CHECKPOINT = "checkpoint.pt"
_FORMAT = "cfattack.encoder-training/1"


@dataclass(frozen=True)
class EncoderTrainingResult:
    out_dir: Path
    step: int
    kimg: float
    finished: bool
    seconds: float
    metrics: dict[str, float]


def sample_training_ws(G: Generator, n: int, psi_min: float, mixing_prob: float, rng: torch.Generator,
                       device: torch.device) -> torch.Tensor:
    """Latents covering W+: per-sample truncation psi in [psi_min, 1], optional style mixing."""
    def mapped() -> torch.Tensor:
        z = torch.randn(n, G.z_dim, generator=rng).to(device)
        c = None
        if G.c_dim:
            c = F.one_hot(torch.randint(0, G.c_dim, (n,), generator=rng), G.c_dim).float().to(device)
        return G.mapping(z, c)

    ws = mapped()
    if mixing_prob > 0:
        other = mapped()
        cut = torch.randint(1, G.num_ws, (n,), generator=rng).to(device)
        mix = (torch.rand(n, generator=rng) < mixing_prob).to(device)
        layer = torch.arange(G.num_ws, device=device).view(1, -1)
        use_other = (layer >= cut.view(-1, 1)) & mix.view(-1, 1)
        ws = torch.where(use_other.unsqueeze(2), other, ws)
    psi = psi_min + (1 - psi_min) * torch.rand(n, 1, 1, generator=rng).to(device)
    w_avg = G.mapping.w_avg.view(1, 1, -1)
    return w_avg + psi * (ws - w_avg)


@torch.no_grad()
def evaluate_encoder(E: Encoder, G: Generator, images: torch.Tensor, classifier: torch.nn.Module | None = None,
                     batch: int = 100) -> dict[str, float]:
    """Mean PSNR/SSIM of G(E(x)) against x (and label agreement when a classifier is given)."""
    p, s, agree = [], [], []
    for start in range(0, images.shape[0], batch):
        x = images[start:start + batch]
        recon = G.synthesis(E(x), noise_mode="const").clamp(-1, 1)
        p.append(psnr(recon, x))
        s.append(ssim(recon, x))
        if classifier is not None:
            agree.append(classifier(recon).argmax(1) == classifier(x).argmax(1))
    metrics = {"psnr": float(torch.cat(p).mean()), "ssim": float(torch.cat(s).mean())}
    if agree:
        metrics["label_agreement"] = float(torch.cat(agree).float().mean())
    return metrics


class _Run:
    def __init__(self, config: EncoderTrainingConfig, G: Generator, train: ImageDataset) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.train = train
        torch.manual_seed(config.seed)
        self.E = Encoder(G.img_resolution, G.img_channels, G.num_ws, G.w_dim, latent=config.latent,
                         channels=config.channels, channel_max=config.channel_max,
                         w_avg=G.mapping.w_avg).to(self.device)
        self.opt = torch.optim.Adam(self.E.parameters(), lr=config.lr, betas=(0.9, 0.99))
        self.rng = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.images_seen = 0
        self.seconds = 0.0
        # Scale of w around its mean, so the latent loss is ~1 for a prediction of w_avg.
        with torch.no_grad():
            probe = sample_training_ws(G, 2000, 1.0, 0.0, torch.Generator().manual_seed(12345), self.device)
            self.w_scale = float((probe - G.mapping.w_avg).square().mean())

    def state(self) -> dict:
        return {"format": _FORMAT, "config": self.config.model_dump(mode="json"), "E": self.E.state_dict(),
                "opt": self.opt.state_dict(), "rng": self.rng.get_state(), "step": self.step,
                "images_seen": self.images_seen, "seconds": self.seconds}

    def load(self, state: dict) -> None:
        if state.get("format") != _FORMAT:
            raise InvalidInputError(f"not a cfattack encoder training checkpoint (format {state.get('format')!r})")
        keep = {"total_kimg", "snapshot_kimg", "threads", "device", "eval_images"}
        saved = EncoderTrainingConfig.model_validate(state["config"]).model_dump(exclude=keep)
        if saved != self.config.model_dump(exclude=keep):
            raise InvalidInputError("the checkpoint was written with a different training config; "
                                    "use a new output directory or the same settings")
        self.E.load_state_dict(state["E"])
        self.opt.load_state_dict(state["opt"])
        self.rng.set_state(state["rng"])
        self.step, self.images_seen = int(state["step"]), int(state["images_seen"])
        self.seconds = float(state["seconds"])

    def iterate(self, total_images: int, classifier: torch.nn.Module | None) -> dict[str, float]:
        cfg = self.config
        # Cosine learning-rate decay to 5% over the whole run.
        progress = min(self.images_seen / max(total_images, 1), 1.0)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

        n_real = int(round(cfg.batch * cfg.real_fraction))
        n_fake = cfg.batch - n_real
        losses: dict[str, torch.Tensor] = {}
        targets, images = [], []
        if n_fake:
            with torch.no_grad():
                ws = sample_training_ws(self.G, n_fake, cfg.psi_min, cfg.style_mixing_prob, self.rng, self.device)
                images.append(self.G.synthesis(ws, noise_mode="const").clamp(-1, 1))
            targets.append(ws)
        if n_real:
            idx = torch.randint(0, len(self.train), (n_real,), generator=self.rng)
            images.append(self.train.images[idx].to(self.device))
        x = torch.cat(images)
        pred = self.E(x)
        total = torch.zeros([], device=self.device)
        if n_fake and cfg.latent_weight > 0:
            losses["latent"] = (pred[:n_fake] - targets[0]).square().mean() / self.w_scale
            total = total + cfg.latent_weight * losses["latent"]
        if cfg.pixel_weight > 0 or classifier is not None:
            recon = self.G.synthesis(pred, noise_mode="const")
            losses["pixel"] = (recon - x).square().mean()
            total = total + cfg.pixel_weight * losses["pixel"]
            if classifier is not None and cfg.feature_weight > 0:
                with torch.no_grad():
                    target_feat = classifier.embed(x)
                losses["feature"] = (classifier.embed(recon) - target_feat).square().mean()
                total = total + cfg.feature_weight * losses["feature"]
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.step += 1
        self.images_seen += cfg.batch
        return {k: float(v.detach()) for k, v in {"total": total, **losses}.items()}


def train_encoder(
    config: EncoderTrainingConfig,
    out_dir: str | os.PathLike,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    train_data: ImageDataset | None = None,
    eval_data: ImageDataset | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EncoderTrainingResult:
    """Train (or resume) the encoder; writes ``checkpoint.pt``, ``encoder.pt``, ``log.jsonl``, ``config.json``.

    ``progress``: a bar on a terminal and a summary line on stderr (`cfattack.progress`);
    ``on_progress(images seen, total images)`` follows every step.
    """
    from cfattack.progress import Progress
    from cfattack.stylegan.loading import load_generator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    G = load_generator(config.generator, device=config.device)
    classifier = None
    if config.feature_classifier:
        from cfattack.classifiers.checkpoint import load_classifier_checkpoint

        classifier, _ = load_classifier_checkpoint(config.feature_classifier, device=config.device)
        classifier.requires_grad_(False)
    # An image folder is read at the generator's size and channels (its default is 32 px grey).
    folder = {"resolution": G.img_resolution, "channels": G.img_channels} if Path(config.data).is_dir() else {}
    train = train_data if train_data is not None else load_dataset(config.data, "train", **folder)
    evaluation = eval_data if eval_data is not None else load_dataset(config.data, "val", **folder)
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    for ds in (train, evaluation):
        if tuple(ds.images.shape[1:]) != expected:
            raise InvalidInputError(f"dataset images are {list(ds.images.shape[1:])}, the generator makes {list(expected)}")
    eval_images = evaluation.images[: config.eval_images].to(config.device)

    run = _Run(config, G, train)
    ckpt = out / _CHECKPOINT
    if ckpt.exists():
        run.load(torch.load(ckpt, map_location="cpu", weights_only=True))  # load_state_dict moves it
    atomic_write_text(out / "config.json", json.dumps(config.model_dump(mode="json"), indent=2))

    total_images = int(config.total_kimg * 1000)
    snapshot_images = max(int(config.snapshot_kimg * 1000), config.batch)
    started = mark = time.monotonic()
    steps = 0
    losses: dict[str, float] = {}
    metrics: dict[str, float] = {}

    def snapshot() -> EncoderTrainingResult:
        nonlocal mark, metrics
        run.seconds += time.monotonic() - mark
        mark = time.monotonic()
        metrics = evaluate_encoder(run.E.eval(), run.G, eval_images, classifier)
        run.E.train()
        atomic_torch_save(run.state(), ckpt)
        save_encoder_checkpoint(run.E, out / ENCODER_NAME,
                                metadata={"kimg": run.images_seen / 1000, "val_metrics": metrics,
                                          "generator": str(config.generator)})
        with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": run.step, "kimg": run.images_seen / 1000, "seconds": round(run.seconds, 1),
                                 **{f"loss_{k}": v for k, v in losses.items()}, **{f"val_{k}": v for k, v in metrics.items()}}) + "\n")
        return EncoderTrainingResult(out, run.step, run.images_seen / 1000, run.images_seen >= total_images,
                                     run.seconds, dict(metrics))

    result = None
    bar = Progress("train encoder", total=total_images, unit="img", quiet=not progress, initial=run.images_seen,
                   leave=True)
    images_before = run.images_seen
    with bar:  # an error closes the bar without a summary
        run.E.train()
        while run.images_seen < total_images:
            if (max_steps is not None and steps >= max_steps) or (
                max_minutes is not None and time.monotonic() - started > max_minutes * 60
            ):
                break
            before = run.images_seen
            losses = run.iterate(total_images, classifier)
            steps += 1
            bar.update_to(run.images_seen)
            bar.note(", ".join(f"{k}={v:.4f}" for k, v in losses.items()))
            if on_progress is not None:
                on_progress(run.images_seen, total_images)
            if run.images_seen // snapshot_images != before // snapshot_images:
                result = snapshot()
        if result is None or result.step != run.step:
            result = snapshot()
        bar.close(bar.rate_line("train encoder", run.images_seen - images_before, "img",
                                f"step {run.step}, {run.images_seen / 1000:.1f} of {total_images / 1000:.1f} kimg"))
    return result
