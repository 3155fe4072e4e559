"""Counterfactual Attack (Goldwasser & Hooker, arXiv 2504.15479): gradient ascent in latent space.

Starting from latents ``ws0`` (an inverted image), step the latents to raise the classifier's
belief in a target class for the decoded image, ``classifier(decode(ws))``, and stop each item
at the first iterate whose target probability passes the threshold. Every iterate decodes
through the generator, so the path is a morph along the data manifold rather than pixel noise;
``space="pixel"`` runs the same ascent on the pixels, the baseline that shows the difference.

Example::

    attack = LatentAttack(lambda ws: G.synthesis(ws, noise_mode="const"), classifier, AttackConfig())
    result = attack.run(ws0, target=3)           # ws0 [N, G.num_ws, G.w_dim]
    result.ws_cf, result.images_cf               # [N, num_ws, w_dim], [N, C, H, W]
    result.summary()[0].steps                    # pydantic, one per item

With ``AttackConfig.shift_lr`` the attack also translates each item as a whole, along
directions of ws entry 0 the caller passes in (``shift_directions``, from
`cfattack.translation.translation_directions`), so a generator that has learnt to keep its
objects centred can still answer "move it".

The attack sees only two callables, so it works with any decoder (a VAE, the identity) and any
classifier that returns logits ``[N, K]`` (``K == 1``: one sigmoid logit for class 1). Both must
treat the items of a batch independently, e.g. networks in eval mode: finished items leave the
batch, and batch statistics would couple the rest.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import Callable, Literal, Sequence, overload

import torch
from pydantic import Field

from cfattack.config import AttackConfig, FrozenConfig
from cfattack.errors import InvalidInputError

__all__ = [
    "LatentAttack",
    "AttackResult",
    "AttackItemSummary",
    "AttackReason",
    "class_probabilities",
    "objective_value",
    "proximity_penalty",
]

AttackReason = Literal["reached", "max_steps", "zero_gradient", "non_finite"]
_REASONS: tuple[AttackReason, ...] = ("reached", "max_steps", "zero_gradient", "non_finite")
# Per-item outcome codes inside the loop: 0 = still moving, else 1 + index into _REASONS.
_GOING, _REACHED, _MAX_STEPS, _ZERO_GRADIENT, _NON_FINITE = range(5)

_ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which the paper used.
_ADAM_EPS = 1e-8


# ---------------------------------------------------------------------------------------------
# Pure helpers: objectives, regulariser, update rules.


def _two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """[N, 1] sigmoid logit -> [N, 2] softmax logits (0, l), since softmax([0, l])[1] = sigmoid(l)."""
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """logits [N, K] -> class probabilities [N, max(K, 2)] (one logit is read as a sigmoid)."""
    return torch.softmax(_two_class_logits(logits), dim=1)


def objective_value(
    logits: torch.Tensor, target: torch.Tensor, objective: Literal["probability", "log_probability", "margin"]
) -> torch.Tensor:
    """logits [N, K], target [N] -> the quantity the attack raises, [N].

    ``probability``: softmax p_target (the paper). ``log_probability``: log p_target, whose
    gradient does not vanish when p_target is tiny. ``margin``: target logit minus the largest
    other logit, positive exactly when the target is the predicted class.
    """
    logits = _two_class_logits(logits)
    index = target[:, None]
    if objective == "probability":
        return torch.softmax(logits, dim=1).gather(1, index).squeeze(1)
    if objective == "log_probability":
        return torch.log_softmax(logits, dim=1).gather(1, index).squeeze(1)
    if objective == "margin":
        others = logits.scatter(1, index, float("-inf"))
        return logits.gather(1, index).squeeze(1) - others.amax(dim=1)
    raise InvalidInputError(f"objective must be probability, log_probability or margin, got {objective!r}")


def proximity_penalty(x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """x, x0 [N, ...] -> mean over all non-batch dimensions of (x - x0)^2, [N]."""
    return (x - x0).square().flatten(1).mean(dim=1)


def _per_item(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[N] -> [N, 1, ..., 1], broadcastable against ``like`` [N, ...]."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def sgd_update(grad: torch.Tensor, lr: float) -> torch.Tensor:
    """Plain gradient step: the amount to subtract, lr * grad."""
    return lr * grad


def normalized_update(grad: torch.Tensor, lr: float) -> torch.Tensor:
    """Step of length lr along each item's gradient direction (grad [N, ...])."""
    norm = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
    return lr * grad / _per_item(norm, grad)


def adam_update(
    grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, lr: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Adam step (Kingma & Ba) -> (amount to subtract, new m, new v); ``step`` counts from 1."""
    beta1, beta2 = _ADAM_BETAS
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad.square()
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    return lr * m_hat / (v_hat.sqrt() + _ADAM_EPS), m, v


def _moments(like: torch.Tensor, optimizer: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Adam's zeroed (m, v) for a variable shaped like ``like``; None for the stateless rules."""
    return (torch.zeros_like(like), torch.zeros_like(like)) if optimizer == "adam" else None


def _frame_steps(end_step: int, num_frames: int) -> list[int]:
    """num_frames evenly spaced steps from 0 to end_step, both included (repeats if the path is short)."""
    return [math.floor(j * end_step / (num_frames - 1) + 0.5) for j in range(num_frames)]


class _PathRecorder:
    """Keeps iterates at steps 0, k, 2k, ... on the CPU; k doubles whenever more than ``capacity`` are kept.

    Memory stays bounded whatever the step budget. Frames are exactly the evenly spaced steps
    while the path is shorter than ``capacity`` steps and otherwise the nearest kept iterates
    (at most k / 2 steps away); `AttackResult.frame_steps` says which steps were used.
    """

    def __init__(self, capacity: int) -> None:
        self.stride = 1
        self.capacity = capacity
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []

    def record(self, step: int, values: torch.Tensor) -> None:
        if step % self.stride:
            return
        self.steps.append(step)
        self.values.append(values.detach().to("cpu", copy=True))
        if len(self.steps) > self.capacity:
            self.stride *= 2
            keep = [i for i, s in enumerate(self.steps) if s % self.stride == 0]
            self.steps = [self.steps[i] for i in keep]
            self.values = [self.values[i] for i in keep]

    def frames(self, item: int, end_step: int, end_value: torch.Tensor, num_frames: int) -> tuple[list[int], torch.Tensor]:
        """Item ``item``'s frames for a path that ended at ``end_step`` with value ``end_value``."""
        kept = torch.tensor(self.steps)
        steps, values = [], []
        for wanted in _frame_steps(end_step, num_frames)[:-1]:
            i = int((kept - wanted).abs().argmin())  # first of equals: the earlier step
            steps.append(self.steps[i])
            values.append(self.values[i][item])
        steps.append(end_step)
        values.append(end_value.detach().to("cpu"))
        return steps, torch.stack(values)


def _gradient(total: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d total / d x; zeros where total does not depend on x (a classifier that ignores its input)."""
    if not total.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(total, x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def _all_per_item(mask: torch.Tensor) -> torch.Tensor:
    """[N, ...] bool -> [N]: true where every element of the item is true."""
    return mask.flatten(1).all(dim=1)


# ---------------------------------------------------------------------------------------------
# Results.


class AttackItemSummary(FrozenConfig):
    """The scalar outcome of one item of an attack (JSON-ready); tensors stay in `AttackResult`."""

    index: int = Field(..., ge=0, description="Position of the item in the batch.")
    target: int = Field(..., ge=0, description="Target class index.")
    reached: bool = Field(..., description="The target probability passed the threshold.")
    reason: AttackReason = Field(..., description="Why the item stopped.")
    steps: int = Field(..., ge=0, description="Updates taken: the index of the final iterate (0 = the start).")
    target_probability: float = Field(..., description="Target probability at the final iterate.")
    source_class: int = Field(..., ge=0, description="Predicted class at the start iterate.")
    source_probability: float = Field(..., description="Probability of the source class at the start iterate.")
    latent_distance: float | None = Field(..., description="||ws_cf - ws0||_2 over all entries (None in pixel space).")
    latent_distance_per_entry: float | None = Field(
        ..., description="Mean over ws entries of ||ws_cf[k] - ws0[k]||_2 (None in pixel space)."
    )
    pixel_rms: float = Field(..., description="Root mean square difference of the start and final images.")
    pixel_l2: float = Field(..., description="L2 norm of the difference of the start and final images.")
    probability_curve: list[float] = Field(..., description="Target probability at iterates 0..steps.")
    frame_steps: list[int] = Field(..., description="The iterates kept as frames, first and last included.")
    shift_px: tuple[float, float] | None = Field(
        None, description="With shift_lr: (right, down) pixels the item was moved as a whole (first order)."
    )


@dataclass(frozen=True)
class AttackResult:
    """Outcome of `LatentAttack.run` for N items; every tensor is detached and on the CPU.

    ``latent`` below is ws0's shape without the batch: ``[num_ws, w_dim]`` (or ``[D]``).
    Fields that do not exist in pixel space (ws_cf, frames_ws, latent distances) are None there.
    """

    config: AttackConfig
    target: torch.Tensor  # [N] long
    reached: torch.Tensor  # [N] bool
    reasons: list[AttackReason]  # N
    steps: torch.Tensor  # [N] long, index of each item's final iterate
    target_probability: torch.Tensor  # [N] float64, at the final iterate
    source_class: torch.Tensor  # [N] long, argmax at the start iterate
    source_probability: torch.Tensor  # [N] float64
    probability_curves: list[torch.Tensor]  # item i: [steps[i] + 1] float64
    ws0: torch.Tensor | None  # [N, *latent]
    ws_cf: torch.Tensor | None  # [N, *latent]
    images0: torch.Tensor  # [N, C, H, W]: decode(ws0), or the start image in pixel space
    images_cf: torch.Tensor  # [N, C, H, W]
    latent_distance: torch.Tensor | None  # [N]
    latent_distance_per_entry: torch.Tensor | None  # [N]
    pixel_rms: torch.Tensor  # [N]
    pixel_l2: torch.Tensor  # [N]
    frame_steps: torch.Tensor  # [N, num_frames] long
    frames_ws: torch.Tensor | None  # [N, num_frames, *latent]
    frames_images: torch.Tensor | None  # [N, num_frames, C, H, W]; None unless record_images (or pixel space)
    seconds: float  # wall-clock time of the whole run
    shift_px: torch.Tensor | None = None  # [N, 2] with shift_lr: (right, down) pixels the shift rule moved, first order

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def flip_rate(self) -> float:
        """Share of items whose target probability passed the threshold."""
        return float(self.reached.float().mean())

    def summary(self) -> list[AttackItemSummary]:
        """One validated, JSON-ready `AttackItemSummary` per item."""

        def maybe(values: torch.Tensor | None, i: int) -> float | None:
            return None if values is None else float(values[i])

        return [
            AttackItemSummary(
                index=i,
                target=int(self.target[i]),
                reached=bool(self.reached[i]),
                reason=self.reasons[i],
                steps=int(self.steps[i]),
                target_probability=float(self.target_probability[i]),
                source_class=int(self.source_class[i]),
                source_probability=float(self.source_probability[i]),
                latent_distance=maybe(self.latent_distance, i),
                latent_distance_per_entry=maybe(self.latent_distance_per_entry, i),
                pixel_rms=float(self.pixel_rms[i]),
                pixel_l2=float(self.pixel_l2[i]),
                probability_curve=self.probability_curves[i].tolist(),
                frame_steps=self.frame_steps[i].tolist(),
                shift_px=None if self.shift_px is None else (float(self.shift_px[i, 0]), float(self.shift_px[i, 1])),
            )
            for i in range(len(self))
        ]


# ---------------------------------------------------------------------------------------------
# The attack.


class LatentAttack:
    """Counterfactual attack: ascend the target objective through ``classifier(decode(ws))``.

    Args:
        decode: ws [N, *latent] -> images [N, C, H, W] (e.g. ``lambda ws: G.synthesis(ws, noise_mode="const")``).
        classifier: images -> logits [N, K]; ``K == 1`` is one sigmoid logit for class 1.
        config: step rule, stopping rule, space, movable ws entries, objective, proximity term, frames.
    """

    def __init__(
        self,
        decode: Callable[[torch.Tensor], torch.Tensor],
        classifier: Callable[[torch.Tensor], torch.Tensor],
        config: AttackConfig | None = None,
    ) -> None:
        self.decode = decode
        self.classifier = classifier
        self.config = config if config is not None else AttackConfig()

    def run(
        self,
        ws0: torch.Tensor | None,
        target: int | Sequence[int] | torch.Tensor,
        *,
        images: torch.Tensor | None = None,
        shift_directions: torch.Tensor | None = None,
    ) -> AttackResult:
        """Attack N items at once; each stops at its first iterate past the threshold.

        Args:
            ws0: start latents [N, num_ws, w_dim] (or generic [N, D]). In space ``w`` the
                moving latent is one w per item, starting at ``ws0.mean(1)`` and shared by all
                entries; in ``w+`` every entry moves (a 2-D ws0 moves as it is in both). May
                be None in pixel space when ``images`` is given.
            target: one class index for all items, or one per item ([N]).
            images: pixel space only: start images [N, C, H, W] in [-1, 1] instead of decode(ws0).
            shift_directions: with ``config.shift_lr``: [N, 2, w_dim], the changes of ws entry 0
                that shift each item by one pixel right and down.

        Returns:
            `AttackResult`. A zero or non-finite gradient or loss ends that item with its
            reason; the other items go on.
        """
        cfg = self.config
        began = time.perf_counter()
        ws0, start_images = self._check_inputs(ws0, images)
        shift_directions = self._check_shift_directions(shift_directions, ws0)
        batch = ws0.shape[0] if ws0 is not None else start_images.shape[0]
        device = ws0.device if ws0 is not None else start_images.device
        target = _check_target(target, batch, device)
        fork_devices = [device] if device.type == "cuda" else []
        # enable_grad: a caller's torch.no_grad() would otherwise turn every gradient into "zero".
        with torch.random.fork_rng(devices=fork_devices, enabled=cfg.seed is not None), torch.enable_grad():
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed)
            return self._ascend(ws0, start_images, target, began, shift_directions)

    # --- the loop ---------------------------------------------------------------------------

    def _ascend(
        self, ws0: torch.Tensor | None, start_images: torch.Tensor | None, target: torch.Tensor, began: float,
        shift_directions: torch.Tensor | None,
    ) -> AttackResult:
        cfg = self.config
        x0 = self._start(ws0, start_images)
        anchor = x0 if cfg.space == "pixel" else ws0  # what the proximity term measures against
        var = x0.clone()
        track = _Tracks.empty(x0, cfg.steps, cfg.num_frames)
        moments = _moments(var, cfg.optimizer)
        shifts = None  # shift_lr: [N, 2] pixels moved so far, and the update rule's state
        if shift_directions is not None:
            shifts = torch.zeros(var.shape[0], 2, dtype=var.dtype, device=var.device)
            shift_moments = _moments(shifts, cfg.optimizer)
        movable = self._movable_entries(var)
        recorder = _PathRecorder(capacity=max(128, 16 * cfg.num_frames))
        num_classes = 0

        for step in range(cfg.steps + 1):
            rows = track.active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            # 1. Keep the iterate for the frames (thinned, so memory stays bounded).
            recorder.record(step, var)

            # 2. Score the items still moving: variable -> images -> logits -> loss.
            x = var[rows].detach().requires_grad_(True)
            imgs = self._images(x, ws0)
            logits = self._logits(imgs, len(rows), num_classes)
            if step == 0:
                num_classes = logits.shape[1]
                _check_target_range(target, max(num_classes, 2))
            tgt = target[rows]
            probs = class_probabilities(logits.detach())
            p = probs.gather(1, tgt[:, None]).squeeze(1)
            track.curves[rows.cpu(), step] = p.cpu().double()
            if step == 0:
                source_p, track.source_class = probs.max(dim=1)
                track.source_probability = source_p.cpu().double()
            loss = -objective_value(logits, tgt, cfg.objective)
            if cfg.proximity_weight > 0:
                loss = loss + cfg.proximity_weight * proximity_penalty(self._latent(x, ws0), anchor[rows])

            # 3. Stop items past the threshold, out of steps, or with a non-finite loss.
            ended = torch.zeros_like(tgt)
            ended[p > cfg.threshold] = _REACHED
            ended[(ended == _GOING) & ~torch.isfinite(loss)] = _NON_FINITE
            if step == cfg.steps:
                ended[ended == _GOING] = _MAX_STEPS

            # 4. Gradient for the rest; a zero or non-finite one ends the item too.
            going = ended == _GOING
            grad = torch.zeros_like(x)
            shift_grad = None
            if going.any():
                grad = _gradient(loss[going].sum(), x)
                if shift_directions is not None:  # d loss / d shift, before layers masks entry 0
                    shift_grad = torch.einsum("nd,nkd->nk", grad[:, 0], shift_directions[rows])
                    ended[going & ~_all_per_item(torch.isfinite(shift_grad))] = _NON_FINITE
                if movable is not None:
                    grad = torch.where(movable, grad, torch.zeros_like(grad))
                ended[going & ~_all_per_item(torch.isfinite(grad))] = _NON_FINITE
                no_gradient = _all_per_item(grad == 0)
                if shift_grad is not None:
                    no_gradient &= _all_per_item(shift_grad == 0)
                ended[(ended == _GOING) & no_gradient] = _ZERO_GRADIENT

            # 5. Book-keep the items that ended at this iterate; they never move again.
            done = ended != _GOING
            if done.any():
                track.finish(rows[done], ended[done], step, p[done], imgs.detach()[done])
                for i in rows[done].tolist():
                    fsteps, fvalues = recorder.frames(i, step, var[i], cfg.num_frames)
                    track.frame_steps[i] = torch.tensor(fsteps)
                    track.frames[i] = fvalues

            # 6. Step the items that go on (ascent on the objective = descent on the loss).
            going = ended == _GOING
            if going.any():
                moving = rows[going]
                delta = self._update(grad[going], moving, moments, step + 1, cfg.lr)
                if shifts is not None and shift_grad is not None:
                    moved = self._update(shift_grad[going], moving, shift_moments, step + 1, cfg.shift_lr)
                    shifts[moving] -= moved
                    delta[:, 0] += torch.einsum("nk,nkd->nd", moved, shift_directions[moving])
                var[moving] = var[moving] - delta
                if cfg.space == "pixel":
                    var[moving] = var[moving].clamp(-1, 1)

        return self._result(ws0, x0, var, target, track, began, shifts)

    def _update(
        self, grad: torch.Tensor, rows: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor] | None, step: int,
        lr: float,
    ) -> torch.Tensor:
        """The amount to subtract from the moving rows; Adam's (m, v) are full-batch and updated in place."""
        cfg = self.config
        if cfg.optimizer == "sgd":
            return sgd_update(grad, lr)
        if cfg.optimizer == "normalized":
            return normalized_update(grad, lr)
        assert moments is not None
        m, v = moments
        # Every moving item has moved at each earlier step, so all share Adam's step count.
        update, m[rows], v[rows] = adam_update(grad, m[rows], v[rows], step, lr)
        return update

    # --- spaces -----------------------------------------------------------------------------

    def _shares_w(self, ws0: torch.Tensor | None) -> bool:
        return self.config.space == "w" and ws0 is not None and ws0.ndim == 3

    def _movable_entries(self, var: torch.Tensor) -> torch.Tensor | None:
        """[1, num_ws, 1] bool: the ws entries ``config.layers`` lets move (None = all of them)."""
        if self.config.layers is None:
            return None
        mask = torch.zeros(1, var.shape[1], 1, dtype=torch.bool, device=var.device)
        mask[0, list(self.config.layers)] = True
        return mask

    def _start(self, ws0: torch.Tensor | None, start_images: torch.Tensor | None) -> torch.Tensor:
        """The variable the loop moves, at iterate 0."""
        if self.config.space == "pixel":
            if start_images is None:
                with torch.no_grad():
                    start_images = self._decode(ws0)
            return start_images.detach().clamp(-1, 1)
        assert ws0 is not None
        return ws0.mean(dim=1) if self._shares_w(ws0) else ws0.clone()

    def _latent(self, x: torch.Tensor, ws0: torch.Tensor | None) -> torch.Tensor:
        """Variable -> full ws (space w: the one w repeated over all entries); pixels pass through."""
        if self._shares_w(ws0):
            assert ws0 is not None
            return x.unsqueeze(1).expand(-1, ws0.shape[1], -1)
        return x

    def _images(self, x: torch.Tensor, ws0: torch.Tensor | None) -> torch.Tensor:
        return x if self.config.space == "pixel" else self._decode(self._latent(x, ws0))

    def _decode(self, ws: torch.Tensor) -> torch.Tensor:
        images = self.decode(ws)
        if not isinstance(images, torch.Tensor) or images.ndim < 2 or images.shape[0] != ws.shape[0]:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InvalidInputError(f"decode must return images [N, ...] for ws [{ws.shape[0]}, ...], got {shape}")
        return images

    def _logits(self, images: torch.Tensor, batch: int, num_classes: int) -> torch.Tensor:
        logits = self.classifier(images)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch or logits.shape[1] < 1:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise InvalidInputError(f"classifier must return logits [N, num_classes] = [{batch}, K], got {shape}")
        if num_classes and logits.shape[1] != num_classes:
            raise InvalidInputError(f"classifier returned {logits.shape[1]} classes after {num_classes} at the start")
        return logits

    # --- input checks and the result ----------------------------------------------------------

    def _check_shift_directions(self, directions: torch.Tensor | None, ws0: torch.Tensor | None) -> torch.Tensor | None:
        if self.config.shift_lr is None:
            if directions is not None:
                raise InvalidInputError("shift_directions given but config.shift_lr is None (shifting is off)")
            return None
        if ws0 is None or ws0.ndim != 3:
            raise InvalidInputError("shift_lr needs ws0 of shape [N, num_ws, w_dim]")
        want = (ws0.shape[0], 2, ws0.shape[2])
        if directions is None:
            raise InvalidInputError(f"shift_lr needs shift_directions {list(want)} "
                                    "(cfattack.translation.translation_directions(G, ws0))")
        if not isinstance(directions, torch.Tensor) or tuple(directions.shape) != want:
            raise InvalidInputError(f"shift_directions must be {list(want)}, got {_describe(directions)}")
        if not torch.isfinite(directions).all():
            raise InvalidInputError("shift_directions contains NaN or infinite values")
        return directions.detach().to(ws0)

    def _check_inputs(
        self, ws0: torch.Tensor | None, images: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if images is not None and self.config.space != "pixel":
            raise InvalidInputError(f"images= is for space='pixel' only; space is {self.config.space!r}")
        if ws0 is None and images is None:
            raise InvalidInputError("ws0 is required (or images=, in space='pixel')")
        if ws0 is not None:
            if not isinstance(ws0, torch.Tensor) or not ws0.is_floating_point():
                raise InvalidInputError(f"ws0 must be a floating-point tensor, got {_describe(ws0)}")
            if ws0.ndim not in (2, 3) or ws0.shape[0] == 0 or ws0.numel() == 0:
                raise InvalidInputError(f"ws0 must be [N, num_ws, w_dim] or [N, D] with N >= 1, got {tuple(ws0.shape)}")
            if not torch.isfinite(ws0).all():
                raise InvalidInputError("ws0 contains NaN or infinite values")
            layers = self.config.layers
            if layers is not None and ws0.ndim != 3:
                raise InvalidInputError(f"layers needs ws0 of shape [N, num_ws, w_dim], got {tuple(ws0.shape)}")
            if layers is not None and max(layers) >= ws0.shape[1]:
                raise InvalidInputError(
                    f"layers {list(layers)} is out of range: the ws have entries 0..{ws0.shape[1] - 1}")
            ws0 = ws0.detach()
        if images is not None:
            if not isinstance(images, torch.Tensor) or not images.is_floating_point():
                raise InvalidInputError(f"images must be a floating-point tensor, got {_describe(images)}")
            if images.ndim != 4 or images.shape[0] == 0:
                raise InvalidInputError(f"images must be [N, C, H, W] with N >= 1, got {tuple(images.shape)}")
            if ws0 is not None and images.shape[0] != ws0.shape[0]:
                raise InvalidInputError(f"images has {images.shape[0]} items but ws0 has {ws0.shape[0]}")
            if not torch.isfinite(images).all():
                raise InvalidInputError("images contains NaN or infinite values")
            images = images.detach()
        return ws0, images

    def _result(
        self, ws0: torch.Tensor | None, x0: torch.Tensor, var: torch.Tensor, target: torch.Tensor,
        track: _Tracks, began: float, shifts: torch.Tensor | None = None,
    ) -> AttackResult:
        cfg = self.config
        assert track.images_cf is not None and not track.active.any()
        with torch.no_grad():
            if cfg.space == "pixel":
                images0, ws_cf, frames_ws, frames_images = x0, None, None, track.frames
                latent_distance = per_entry = None
            else:
                assert ws0 is not None
                images0 = self._decode(ws0)
                ws_cf = self._latent(var, ws0).contiguous()
                frames_ws = torch.stack([self._latent(track.frames[:, f], ws0) for f in range(cfg.num_frames)], dim=1)
                frames_images = None
                if cfg.record_images:
                    frames_images = torch.stack(
                        [_cpu(self._decode(frames_ws[:, f].to(var.device))) for f in range(cfg.num_frames)], dim=1
                    )
                diff = ws_cf - ws0
                latent_distance = diff.flatten(1).norm(dim=1)
                per_entry = diff.norm(dim=-1).mean(dim=-1) if diff.ndim == 3 else latent_distance
            pixel_diff = (track.images_cf - images0).flatten(1)
        steps = _cpu(track.steps)
        return AttackResult(
            config=cfg,
            target=_cpu(target),
            reached=_cpu(track.outcome == _REACHED),
            reasons=[_REASONS[code - 1] for code in track.outcome.tolist()],
            steps=steps,
            target_probability=_cpu(track.final_probability),
            source_class=_cpu(track.source_class),
            source_probability=_cpu(track.source_probability),
            probability_curves=[curve[: s + 1].clone() for curve, s in zip(_cpu(track.curves), steps.tolist())],
            ws0=_cpu(ws0),
            ws_cf=_cpu(ws_cf),
            images0=_cpu(images0),
            images_cf=_cpu(track.images_cf),
            latent_distance=_cpu(latent_distance),
            latent_distance_per_entry=_cpu(per_entry),
            pixel_rms=_cpu(pixel_diff.square().mean(dim=1).sqrt()),
            pixel_l2=_cpu(pixel_diff.norm(dim=1)),
            frame_steps=track.frame_steps,
            frames_ws=_cpu(frames_ws),
            frames_images=frames_images,
            seconds=time.perf_counter() - began,
            shift_px=_cpu(shifts),
        )


@dataclass
class _Tracks:
    """Per-item state of the loop: who still moves, how each item ended, what to report."""

    active: torch.Tensor  # [N] bool
    outcome: torch.Tensor  # [N] long: _GOING or 1 + index into _REASONS
    steps: torch.Tensor  # [N] long
    final_probability: torch.Tensor  # [N] float64, CPU (also where float64 is unsupported)
    curves: torch.Tensor  # [N, max_steps + 1] float64, CPU; NaN after each item's end
    source_class: torch.Tensor  # [N] long
    source_probability: torch.Tensor  # [N] float64, CPU
    frame_steps: torch.Tensor  # [N, num_frames] long, CPU
    frames: torch.Tensor  # [N, num_frames, *x0.shape[1:]], CPU
    images_cf: torch.Tensor | None = None  # [N, C, H, W], allocated at the first finished item

    @classmethod
    def empty(cls, x0: torch.Tensor, max_steps: int, num_frames: int) -> "_Tracks":
        n, device = x0.shape[0], x0.device
        return cls(
            active=torch.ones(n, dtype=torch.bool, device=device),
            outcome=torch.zeros(n, dtype=torch.long, device=device),
            steps=torch.zeros(n, dtype=torch.long, device=device),
            final_probability=torch.full((n,), math.nan, dtype=torch.float64),
            curves=torch.full((n, max_steps + 1), math.nan, dtype=torch.float64),
            source_class=torch.zeros(n, dtype=torch.long, device=device),
            source_probability=torch.zeros(n, dtype=torch.float64),
            frame_steps=torch.zeros(n, num_frames, dtype=torch.long),
            frames=torch.zeros(n, num_frames, *x0.shape[1:], dtype=x0.dtype),
        )

    def finish(self, items: torch.Tensor, codes: torch.Tensor, step: int, p: torch.Tensor, images: torch.Tensor) -> None:
        """Items [M] ended at ``step`` for ``codes`` [M] with target probability p [M] and images [M, ...]."""
        if self.images_cf is None:
            self.images_cf = torch.full(
                (self.active.shape[0], *images.shape[1:]), math.nan, dtype=images.dtype, device=images.device
            )
        self.active[items] = False
        self.outcome[items] = codes
        self.steps[items] = step
        self.final_probability[items.cpu()] = p.cpu().double()
        self.images_cf[items] = images


@overload
def _cpu(tensor: torch.Tensor) -> torch.Tensor: ...
@overload
def _cpu(tensor: None) -> None: ...
def _cpu(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Detached CPU copy (None stays None)."""
    return None if tensor is None else tensor.detach().cpu()


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _check_target(target: int | Sequence[int] | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """int, list or tensor -> LongTensor [N] on ``device``; range against the classifier comes later."""
    if isinstance(target, bool):
        raise InvalidInputError("target must be a class index, got a bool")
    if isinstance(target, numbers.Integral):
        target = torch.full((batch,), int(target), dtype=torch.long)
    elif not isinstance(target, torch.Tensor):
        try:
            target = torch.as_tensor(list(target))
        except (TypeError, ValueError, RuntimeError) as error:
            raise InvalidInputError(f"target must be an int or a sequence of ints, got {target!r}") from error
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise InvalidInputError(f"target must hold integer class indices, got {target.dtype}")
    if target.ndim == 0:
        target = target.expand(batch)
    if target.shape != (batch,):
        raise InvalidInputError(f"target must be one int or [N] = [{batch}] ints, got shape {tuple(target.shape)}")
    if (target < 0).any():
        raise InvalidInputError(f"target must be >= 0, got {target.min().item()}")
    return target.to(device=device, dtype=torch.long)


def _check_target_range(target: torch.Tensor, num_classes: int) -> None:
    if (target >= num_classes).any():
        raise InvalidInputError(
            f"target {int(target.max())} is out of range for a classifier with {num_classes} classes (0..{num_classes - 1})"
        )
