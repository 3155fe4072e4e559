"""Train a StyleGAN3 generator against a residual discriminator, resumably, on CPU or GPU.

Losses: non-saturating logistic for G and D, lazy R1 on real images; the generator's
exponential moving average (``G_ema``) is what gets shipped. D sees real and fake images
through the same random translation (a light differentiable augmentation), which keeps a
small discriminator from memorising a small dataset.

Every random draw comes from one seeded ``torch.Generator`` whose state is checkpointed,
so a run split into pieces (``max_minutes``) continues exactly as an unbroken run would::

    train_gan(GanTrainingConfig(total_kimg=50), "runs/fmnist")   # resumes if a checkpoint exists
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from cfattack.atomic import atomic_torch_save
from cfattack.config import GanTrainingConfig
from cfattack.errors import InvalidInputError
from cfattack.stylegan.generator import Generator
from cfattack.training.augment import random_translate
from cfattack.training.data import ImageDataset, load_dataset
from cfattack.training.discriminator import Discriminator
from cfattack.training.gan_files import CHECKPOINT_NAME, GAN_CHECKPOINT_FORMAT, GENERATOR_NAME
from cfattack.training.warm_start import warm_start_from_checkpoint

__all__ = ["GanTrainingResult", "train_gan", "translate_images", "CHECKPOINT_NAME", "GENERATOR_NAME"]



@dataclass(frozen=True)
class GanTrainingResult:
    """Where a (possibly partial) run stands."""

    out_dir: Path
    step: int
    kimg: float
    finished: bool
    seconds: float
    last_losses: dict[str, float]


# ---------------------------------------------------------------------------------------------
# Pure helpers.


def translate_images(x: torch.Tensor, max_fraction: float, rng: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``max_fraction`` of its size (whole pixels, border repeated)."""
    return random_translate(x, int(round(max_fraction * min(x.shape[2:]))), rng)


def _ema_beta(config: GanTrainingConfig, images_seen: int) -> float:
    ema_nimg = config.ema_kimg * 1000
    if config.ema_rampup is not None:
        ema_nimg = min(ema_nimg, images_seen * config.ema_rampup)
    return 0.5 ** (config.batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def _update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(labels, num_classes).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# The trainer.


class _Run:
    """All state of one training run; `save`/`load` make it resumable."""

    def __init__(self, config: GanTrainingConfig, data: ImageDataset) -> None:
        self.config = config
        self.data = data
        device = torch.device(config.device)
        c_dim = data.num_classes if config.conditional else 0
        torch.manual_seed(config.seed)  # initial weights only; all later draws use self.rng
        g_kwargs = config.generator.generator_kwargs(c_dim, config.resolution, config.channels, config.batch)
        self.G = Generator(**g_kwargs).to(device).train()
        self.D = Discriminator(c_dim=c_dim, img_resolution=config.resolution, img_channels=config.channels,
                               channel_base=config.d_channel_base, channel_max=config.d_channel_max).to(device).train()
        self.G_ema = Generator(**g_kwargs).to(device).eval().requires_grad_(False)
        self.G_ema.load_state_dict(self.G.state_dict())
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config.g_lr, betas=(0.0, 0.99), eps=1e-8)
        # Lazy regularisation: R1 runs every r1_interval steps, so slow D's Adam to match (StyleGAN2).
        ratio = config.r1_interval / (config.r1_interval + 1)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=config.d_lr * ratio,
                                      betas=(0.0, 0.99**ratio), eps=1e-8)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.images_seen = 0
        self.seconds = 0.0
        self.device = device
        # Fixed latents for the sample grids.
        grid_rng = torch.Generator().manual_seed(config.seed + 1)
        self.grid_z = torch.randn(64, self.G.z_dim, generator=grid_rng)
        self.grid_c = _one_hot(torch.arange(64) % data.num_classes, data.num_classes) if c_dim else None

    # -- state -----------------------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "format": GAN_CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "rng": self.rng.get_state(), "step": self.step, "images_seen": self.images_seen,
            "seconds": self.seconds,
        }

    def load(self, state: dict) -> None:
        if state.get("format") != GAN_CHECKPOINT_FORMAT:
            raise InvalidInputError(f"not a cfattack GAN training checkpoint (format {state.get('format')!r})")
        saved = GanTrainingConfig.model_validate(state["config"])
        # Length, snapshot spacing, threads and device may change between pieces of one run.
        free = {"total_kimg", "snapshot_kimg", "threads", "device"}
        if saved.model_dump(exclude=free) != self.config.model_dump(exclude=free):
            raise InvalidInputError("the checkpoint was written with a different training config; "
                                    "use a new output directory or the same settings")
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.rng.set_state(state["rng"])
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.seconds = float(state["seconds"])

    # -- one iteration -----------------------------------------------------------------------------

    def _sample_real(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(0, len(self.data), (self.config.batch,), generator=self.rng)
        real = self.data.images[idx].to(self.device)
        c = _one_hot(self.data.labels[idx], self.data.num_classes).to(self.device) if self.G.c_dim else None
        return real, c

    def _sample_latents(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.randn(self.config.batch, self.G.z_dim, generator=self.rng).to(self.device)
        c = None
        if self.G.c_dim:
            labels = self.data.labels[torch.randint(0, len(self.data), (self.config.batch,), generator=self.rng)]
            c = _one_hot(labels, self.data.num_classes).to(self.device)
        return z, c

    def _d_input(self, img: torch.Tensor) -> torch.Tensor:
        return translate_images(img, self.config.augment_translate, self.rng)

    def iterate(self) -> dict[str, float]:
        cfg = self.config
        z, c_fake = self._sample_latents()
        real, c_real = self._sample_real()

        # 1. Generator: make D call the fakes real. This forward also updates G's EMAs
        #    (w_avg, magnitude_ema), once per step.
        self.D.requires_grad_(False)
        fake = self.G(z, c_fake, update_emas=True)
        loss_g = F.softplus(-self.D(self._d_input(fake), c_fake)).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        self.D.requires_grad_(True)

        # 2. Discriminator: fakes (reused, detached) low, reals high; R1 on reals every r1_interval.
        do_r1 = cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0
        real_in = real.detach().requires_grad_(do_r1)
        logits_fake = self.D(self._d_input(fake.detach()), c_fake)
        logits_real = self.D(self._d_input(real_in), c_real)
        loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        r1 = torch.zeros([])
        if do_r1:
            (grad,) = torch.autograd.grad(logits_real.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            loss_d = loss_d + r1 * (cfg.r1_gamma / 2) * cfg.r1_interval
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_D.step()

        # 3. Generator EMA.
        self.images_seen += cfg.batch
        self.step += 1
        _update_ema(self.G_ema, self.G, _ema_beta(cfg, self.images_seen))
        stats = {"loss_g": loss_g, "loss_d": loss_d, "r1": r1,
                 "real_score": logits_real.mean(), "fake_score": logits_fake.mean()}
        return {k: float(v.detach()) for k, v in stats.items()}

    @torch.no_grad()
    def sample_images(self) -> torch.Tensor:
        """G_ema on the fixed grid latents: [64, C, H, W]."""
        c = None if self.grid_c is None else self.grid_c.to(self.device)
        return self.G_ema(self.grid_z.to(self.device), c, noise_mode="const").clamp(-1, 1).cpu()


def train_gan(
    config: GanTrainingConfig,
    out_dir: str | os.PathLike,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    data: ImageDataset | None = None,
    on_snapshot: Callable[[GanTrainingResult], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> GanTrainingResult:
    """Train (or resume) until ``config.total_kimg``, ``max_minutes`` or ``max_steps`` of this call.

    Writes into ``out_dir``: ``config.json``, ``checkpoint.pt`` (everything needed to resume),
    ``log.jsonl`` (losses per snapshot), ``samples/grid_<kimg>.png`` and, at every snapshot,
    ``generator.pt`` (the EMA generator in cfattack's checkpoint format). ``progress``: a bar on
    a terminal and a summary line on stderr (`cfattack.progress`); ``on_progress(images seen,
    total images)`` follows every step.
    """
    from cfattack.images import save_image_grid
    from cfattack.progress import Progress
    from cfattack.stylegan.checkpoint import save_generator_checkpoint

    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    if data is None:
        data = load_dataset(config.data, "train")
    if data.images.shape[1:] != (config.channels, config.resolution, config.resolution):
        raise InvalidInputError(
            f"dataset images are {list(data.images.shape[1:])}, config expects "
            f"[{config.channels}, {config.resolution}, {config.resolution}]"
        )
    run = _Run(config, data)
    ckpt_path = out / CHECKPOINT_NAME
    if ckpt_path.exists():
        run.load(torch.load(ckpt_path, map_location="cpu", weights_only=True))  # load_state_dict moves it
    elif config.init_from:
        warm_start_from_checkpoint(config.init_from, config, run.G, run.G_ema, run.D)
    (out / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))

    total_images = int(config.total_kimg * 1000)
    snapshot_images = max(int(config.snapshot_kimg * 1000), config.batch)
    started = time.monotonic()
    steps_this_call = 0
    losses: dict[str, float] = {}
    bar = Progress("train gan", total=total_images, unit="img", quiet=not progress, initial=run.images_seen,
                   leave=True)
    images_before = run.images_seen

    mark = time.monotonic()

    def snapshot() -> GanTrainingResult:
        nonlocal mark
        run.seconds += time.monotonic() - mark
        mark = time.monotonic()
        atomic_torch_save(run.state(), ckpt_path)
        save_generator_checkpoint(run.G_ema, out / GENERATOR_NAME,
                                  extra={"kimg": run.images_seen / 1000, "step": run.step})
        save_image_grid(run.sample_images(), out / "samples" / f"grid_{run.images_seen // 1000:06d}.png", ncols=8)
        with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": run.step, "kimg": run.images_seen / 1000,
                                 "seconds": round(run.seconds, 1), **losses}) + "\n")
        result = GanTrainingResult(out, run.step, run.images_seen / 1000, run.images_seen >= total_images,
                                   run.seconds, dict(losses))
        if on_snapshot is not None:
            on_snapshot(result)
        return result

    result = None
    with bar:  # an error closes the bar without a summary
        while run.images_seen < total_images:
            if max_steps is not None and steps_this_call >= max_steps:
                break
            if max_minutes is not None and time.monotonic() - started > max_minutes * 60:
                break
            before = run.images_seen
            losses = run.iterate()
            steps_this_call += 1
            bar.update_to(run.images_seen)
            bar.note(f"g={losses['loss_g']:.3f}, d={losses['loss_d']:.3f}")
            if on_progress is not None:
                on_progress(run.images_seen, total_images)
            if run.images_seen // snapshot_images != before // snapshot_images:
                result = snapshot()
        if result is None or result.step != run.step:
            result = snapshot()
        bar.close(bar.rate_line("train gan", run.images_seen - images_before, "img",
                                f"step {run.step}, {run.images_seen / 1000:.1f} of {total_images / 1000:.1f} kimg"))
    return result
