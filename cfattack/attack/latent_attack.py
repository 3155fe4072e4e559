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
`cfattack.stylegan.translation.translation_directions`), so a generator that has learnt to keep its
objects centred can still answer "move it".

The attack sees only two callables, so it works with any decoder (a VAE, the identity) and any
classifier that returns logits ``[N, K]`` (``K == 1``: one sigmoid logit for class 1). Both must
treat the items of a batch independently, e.g. networks in eval mode: finished items leave the
batch, and batch statistics would couple the rest.

This module holds the loop; the objectives live in `cfattack.attack.objectives`, the step
rules in `cfattack.attack.update_rules`, the per-item loop state in `cfattack.attack.loop_state`
and what a run returns in `cfattack.attack.result`.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from cfattack.attack.input_checks import _check_target, _check_target_range, _describe
from cfattack.attack.loop_state import _PathRecorder, _Tracks
from cfattack.attack.objectives import class_probabilities, objective_value, proximity_penalty
from cfattack.attack.result import (
    _GOING,
    _MAX_STEPS,
    _NON_FINITE,
    _REACHED,
    _REASONS,
    _ZERO_GRADIENT,
    AttackResult,
    _cpu,
)
from cfattack.attack.class_search import add_class_step, search_class_step
from cfattack.attack.robustness import shifted_views
from cfattack.attack.shift_search import search_shift, shift_entry0
from cfattack.attack.update_rules import (
    _all_per_item,
    _gradient,
    _moments,
    adam_update,
    normalized_update,
    sgd_update,
)
from cfattack.config import AttackConfig
from cfattack.errors import InvalidInputError
from cfattack.images import quantize_8bit

__all__ = ["LatentAttack"]


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
        class_directions: torch.Tensor | None = None,
        on_step: Callable[[int, int, int], None] | None = None,
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
            class_directions: with ``config.class_search_steps``: [N, w_dim], each item's target
                class mean w minus its source class mean (`cfattack.stylegan.class_means`); rows
                that are not finite are not searched. Ignored when None or in pixel space.
            on_step: called after every step as ``on_step(step, finished_items, items)``, e.g.
                to drive a progress bar.

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
            start, start_shift, class_step = ws0, None, None
            if cfg.shift_search_px and ws0 is not None and shift_directions is not None:
                start_shift = search_shift(self._stop_score(target), ws0, shift_directions, cfg.shift_search_px)
                start = shift_entry0(ws0, start_shift, shift_directions)
            if cfg.class_search_steps and cfg.space != "pixel" and start is not None and start.ndim == 3 \
                    and class_directions is not None:
                directions = self._check_class_directions(class_directions, start)
                if start_shift is not None:  # an item a whole-object shift already flips keeps just that
                    moved = start_shift.abs().sum(dim=1) > 0
                    directions = torch.where(moved[:, None], torch.full_like(directions, float("nan")), directions)
                class_step = search_class_step(self._stop_score(target), start, directions,
                                               cfg.class_search_steps, cfg.class_search_reach)
                start = add_class_step(start, class_step, torch.nan_to_num(directions))
            return self._ascend(start, start_images, target, began, shift_directions, on_step,
                                origin=ws0, start_shift=start_shift, class_step=class_step)

    # --- the loop ---------------------------------------------------------------------------

    def _ascend(
        self, ws0: torch.Tensor | None, start_images: torch.Tensor | None, target: torch.Tensor, began: float,
        shift_directions: torch.Tensor | None, on_step: Callable[[int, int, int], None] | None = None,
        origin: torch.Tensor | None = None, start_shift: torch.Tensor | None = None,
        class_step: torch.Tensor | None = None,
    ) -> AttackResult:
        cfg = self.config
        x0 = self._start(ws0, start_images)
        anchor = x0 if cfg.space == "pixel" else ws0  # what the proximity term measures against
        var = x0.clone()
        track = _Tracks.empty(x0, cfg.steps, cfg.num_frames)
        moments = _moments(var, cfg.optimizer)
        shifts = None  # shift_lr: [N, 2] pixels moved so far, and the update rule's state
        if shift_directions is not None and cfg.shift_lr is not None:
            shifts = torch.zeros(var.shape[0], 2, dtype=var.dtype, device=var.device)
            shift_moments = _moments(shifts, cfg.optimizer)
        movable = self._movable_entries(var)
        recorder = _PathRecorder(capacity=max(128, 16 * cfg.num_frames))
        num_classes = 0

        for step in range(cfg.steps + 1):
            rows = track.active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            if on_step is not None and step:
                on_step(step, int(track.active.numel() - rows.numel()), int(track.active.numel()))
            # 1. Keep the iterate for the frames (thinned, so memory stays bounded).
            recorder.record(step, var)

            # 2. Score the items still moving: variable -> images -> logits -> loss.
            x = var[rows].detach().requires_grad_(True)
            base = ws0[rows] if ws0 is not None else None  # the moving items' start latents
            imgs = self._images(x, base)
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
            objective, p_stop = self._robust_score(imgs, logits, tgt, p, num_classes)
            p_stop = self._saved_score(imgs, tgt, p_stop, num_classes)
            loss = -objective
            if cfg.proximity_weight > 0:
                loss = loss + cfg.proximity_weight * proximity_penalty(self._latent(x, base), anchor[rows])

            # 3. Stop items past the threshold, out of steps, or with a non-finite loss.
            ended = torch.zeros_like(tgt)
            ended[p_stop > cfg.threshold] = _REACHED
            ended[(ended == _GOING) & ~torch.isfinite(loss)] = _NON_FINITE
            if step == cfg.steps:
                ended[ended == _GOING] = _MAX_STEPS

            # 4. Gradient for the rest; a zero or non-finite one ends the item too.
            going = ended == _GOING
            grad = torch.zeros_like(x)
            shift_grad = None
            if going.any():
                grad = _gradient(loss[going].sum(), x)
                if shifts is not None:  # d loss / d shift, before layers masks entry 0
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

        if on_step is not None:
            on_step(step, int(track.active.numel()), int(track.active.numel()))
        if start_shift is not None:  # the move made before the ascent is part of the answer
            shifts = start_shift if shifts is None else shifts + start_shift
        return self._result(ws0, x0, var, target, track, began, shifts, origin, class_step, start_shift)

    def _stop_score(self, target: torch.Tensor) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """ws -> (log p(target), passes the stop criterion): what `search_shift` tries candidates with.

        The direction is taken from the log-probability whatever the attack's objective: far
        from the target, p itself is too flat to say which way is up.
        """
        def score(ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            imgs = self._decode(ws)
            logits = self._logits(imgs, ws.shape[0], 0)
            _check_target_range(target, max(logits.shape[1], 2))
            p = class_probabilities(logits.detach()).gather(1, target[:, None]).squeeze(1)
            _, p_stop = self._robust_score(imgs, logits.detach(), target, p, logits.shape[1])
            p_stop = self._saved_score(imgs, target, p_stop, logits.shape[1])
            return objective_value(logits, target, "log_probability"), p_stop > self.config.threshold
        return score

    def _robust_score(
        self, imgs: torch.Tensor, logits: torch.Tensor, tgt: torch.Tensor, p: torch.Tensor, num_classes: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective [n], probability that must pass the threshold [n]) of the iterate.

        Without ``robust_shift_px`` that is the objective and probability of the image itself;
        with it, the objective is averaged over the image and its shifted views, and with
        ``robust_stop`` the probability is the lowest over them (`cfattack.attack.robustness`).
        """
        cfg = self.config
        objective = objective_value(logits, tgt, cfg.objective)
        if not cfg.robust_shift_px or imgs.ndim != 4:  # views need images [n, C, H, W]
            return objective, p
        views = shifted_views(imgs, cfg.robust_shift_px)
        count = views.shape[0] // imgs.shape[0]
        view_logits = self._logits(views, views.shape[0], num_classes)
        view_tgt = tgt.repeat(count)
        view_objective = objective_value(view_logits, view_tgt, cfg.objective).view(count, -1)
        objective = (objective + view_objective.sum(dim=0)) / (count + 1)
        if not cfg.robust_stop:
            return objective, p
        view_p = class_probabilities(view_logits.detach()).gather(1, view_tgt[:, None]).view(count, -1)
        return objective, torch.minimum(p, view_p.amin(dim=0))

    def _saved_score(self, imgs: torch.Tensor, tgt: torch.Tensor, p_stop: torch.Tensor, num_classes: int) -> torch.Tensor:
        """With ``stop_on_saved``: p_stop, lowered to the target probability of the 8-bit image where
        that is lower (only the items that would stop are re-scored)."""
        if not self.config.stop_on_saved or imgs.ndim != 4:
            return p_stop
        in_range = (imgs.detach().flatten(1).abs() <= 1).all(dim=1)  # an image in [-1, 1], as saved
        passing = ((p_stop > self.config.threshold) & in_range).nonzero().squeeze(1)
        if passing.numel() == 0:
            return p_stop
        with torch.no_grad():
            saved = quantize_8bit(imgs.detach()[passing])
            logits = self._logits(saved, len(passing), num_classes)
            p_saved = class_probabilities(logits).gather(1, tgt[passing][:, None]).squeeze(1)
        out = p_stop.clone()
        out[passing] = torch.minimum(p_stop[passing], p_saved.to(p_stop.dtype))
        return out

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

    def _shares_change(self, ws0: torch.Tensor | None) -> bool:
        """W+ start, one w-vector change added to every entry (``config.shared_change``)."""
        return self.config.space == "w+" and self.config.shared_change and ws0 is not None and ws0.ndim == 3

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
        if self._shares_change(ws0):
            return torch.zeros_like(ws0[:, 0])
        return ws0.mean(dim=1) if self._shares_w(ws0) else ws0.clone()

    def _latent(self, x: torch.Tensor, ws0: torch.Tensor | None) -> torch.Tensor:
        """Variable -> full ws (space w: the one w repeated over all entries; shared_change: ws0 plus
        the one change on every entry); pixels pass through."""
        if self._shares_w(ws0):
            assert ws0 is not None
            return x.unsqueeze(1).expand(-1, ws0.shape[1], -1)
        if self._shares_change(ws0):
            assert ws0 is not None
            return ws0 + x.unsqueeze(1)
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
        cfg = self.config
        searching = bool(cfg.shift_search_px) and cfg.space == "w+"
        if cfg.shift_lr is None and not searching:
            if directions is not None:
                raise InvalidInputError("shift_directions given but neither shift_lr nor shift_search_px is on")
            return None
        if directions is None and cfg.shift_lr is None:
            return None  # the search is skipped without directions (e.g. a decoder that is no StyleGAN3)
        if ws0 is None or ws0.ndim != 3:
            raise InvalidInputError("shift_lr and shift_search_px need ws0 of shape [N, num_ws, w_dim]")
        want = (ws0.shape[0], 2, ws0.shape[2])
        if directions is None:
            raise InvalidInputError(f"shift_lr needs shift_directions {list(want)} "
                                    "(cfattack.stylegan.translation.translation_directions(G, ws0))")
        if not isinstance(directions, torch.Tensor) or tuple(directions.shape) != want:
            raise InvalidInputError(f"shift_directions must be {list(want)}, got {_describe(directions)}")
        if not torch.isfinite(directions).all():
            raise InvalidInputError("shift_directions contains NaN or infinite values")
        return directions.detach().to(ws0)

    def _check_class_directions(self, directions: torch.Tensor, ws0: torch.Tensor) -> torch.Tensor:
        want = (ws0.shape[0], ws0.shape[2])
        if not isinstance(directions, torch.Tensor) or tuple(directions.shape) != want:
            raise InvalidInputError(f"class_directions must be {list(want)}, got {_describe(directions)}")
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
        track: _Tracks, began: float, shifts: torch.Tensor | None = None, origin: torch.Tensor | None = None,
        class_step: torch.Tensor | None = None, start_shift: torch.Tensor | None = None,
    ) -> AttackResult:
        """The result; distances and ``images0`` are measured from ``origin`` (the caller's ws0, before
        any whole-object shift) when given."""
        cfg = self.config
        origin = ws0 if origin is None else origin
        assert track.images_cf is not None and not track.active.any()
        with torch.no_grad():
            if cfg.space == "pixel":
                images0, ws_cf, frames_ws, frames_images = x0, None, None, track.frames
                latent_distance = per_entry = None
            else:
                assert ws0 is not None and origin is not None
                images0 = self._decode(origin)
                ws_cf = self._latent(var, ws0).contiguous()
                frames_ws = torch.stack([self._latent(track.frames[:, f], ws0) for f in range(cfg.num_frames)], dim=1)
                first_move = torch.zeros(len(var), dtype=torch.bool)
                if class_step is not None:
                    first_move |= _cpu(class_step) > 0
                if start_shift is not None:
                    first_move |= (_cpu(start_shift).abs().sum(dim=1) > 0)
                frames_ws = _path_from_origin(frames_ws, origin, ws_cf, _cpu(track.steps), first_move)
                frames_images = None
                if cfg.record_images:
                    frames_images = torch.stack(
                        [_cpu(self._decode(frames_ws[:, f].to(var.device))) for f in range(cfg.num_frames)], dim=1
                    )
                diff = ws_cf - origin
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
            ws0=_cpu(origin),
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
            class_step=_cpu(class_step),
        )


def _path_from_origin(frames_ws: torch.Tensor, origin: torch.Tensor, ws_cf: torch.Tensor,
                      steps: torch.Tensor, first_move: torch.Tensor) -> torch.Tensor:
    """Frames that begin at the caller's ws0 even when a first move (shift, class step) came before the ascent.

    The first frame becomes the origin; an item the first move alone carried past the threshold
    (no ascent steps) gets the straight line from the origin to its counterfactual, which is the
    path that move took.
    """
    moved = first_move.to(frames_ws.device)
    if frames_ws.ndim != origin.ndim + 1 or not bool(moved.any()):
        return frames_ws
    frames_ws = frames_ws.clone()
    count = frames_ws.shape[1]
    line = torch.linspace(0, 1, count, dtype=frames_ws.dtype, device=frames_ws.device)
    for i in moved.nonzero().squeeze(1).tolist():
        if int(steps[i]) == 0:
            shape = (count,) + (1,) * (origin.ndim - 1)
            frames_ws[i] = origin[i] + line.view(shape) * (ws_cf[i] - origin[i])
        else:
            frames_ws[i, 0] = origin[i]
    return frames_ws
