"""Counterfactual attack: known answers on linear problems, tiny real StyleGAN3 + CNN for the spaces."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from cfattack.attack.latent_attack import LatentAttack
from cfattack.attack.objectives import class_probabilities, objective_value
from cfattack.attack.result import AttackItemSummary, AttackResult
from cfattack.config import AttackConfig
from cfattack.errors import InvalidInputError
from cfattack.stylegan.generator import Generator

# A 2-class linear classifier on a 2-D latent: logit_1 - logit_0 = u . x with u = (3, 4), |u|^2 = 25.
U = torch.tensor([3.0, 4.0], dtype=torch.float64)
W = torch.stack([torch.zeros(2, dtype=torch.float64), U])
X_START = torch.tensor([-1.0, -1.01], dtype=torch.float64)  # u . x = -7.04


def linear(x: torch.Tensor) -> torch.Tensor:
    return x @ W.T.to(x.dtype)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


# The analytic tests below are written for the paper's loop: raise p(target), stop past 0.5, no
# shifted views, no whole-object shift (cfattack's defaults differ; see AttackConfig).
PAPER = dict(objective="probability", threshold=0.5, robust_shift_px=0, shift_search_px=0)


def attack(classifier=linear, decode=identity, **config) -> LatentAttack:
    return LatentAttack(decode, classifier, AttackConfig(**{**PAPER, **config}))


def cross(a: torch.Tensor, b: torch.Tensor) -> float:
    """z of the 2-D cross product: 0 when a is parallel to b."""
    return float(a[0] * b[1] - a[1] * b[0])


# ---------------------------------------------------------------------------------------------
# Known answers on the linear problem.


def test_sgd_margin_is_analytic():
    """Margin gradient is u: x_t = x0 + t lr u, margin_t = -7.04 + 0.25 t, first pass at t = 29."""
    result = attack(optimizer="sgd", objective="margin", lr=0.01).run(X_START[None], 1)
    assert result.reasons == ["reached"] and bool(result.reached[0])
    assert int(result.steps[0]) == 29
    torch.testing.assert_close(result.ws_cf[0], X_START + 29 * 0.01 * U)
    expected_curve = torch.sigmoid(-7.04 + 0.25 * torch.arange(30, dtype=torch.float64))
    torch.testing.assert_close(result.probability_curves[0], expected_curve)
    assert float(result.target_probability[0]) == pytest.approx(float(expected_curve[-1]))
    assert int(result.source_class[0]) == 0
    assert float(result.source_probability[0]) == pytest.approx(1 - float(expected_curve[0]))
    assert float(result.latent_distance[0]) == pytest.approx(29 * 0.01 * 5)
    # Identity decode: the pixel distance is the latent distance; RMS divides by sqrt(2) values.
    assert float(result.pixel_l2[0]) == pytest.approx(29 * 0.01 * 5)
    assert float(result.pixel_rms[0]) == pytest.approx(29 * 0.01 * 5 / math.sqrt(2))


@pytest.mark.parametrize("objective", ["probability", "log_probability", "margin"])
@pytest.mark.parametrize("optimizer", ["sgd", "normalized"])
def test_ascent_moves_along_the_weight_vector_and_stops_at_first_pass(objective, optimizer):
    result = attack(optimizer=optimizer, objective=objective, lr=0.05, steps=2000).run(X_START[None], 1)
    assert result.reasons == ["reached"]
    moved = result.ws_cf[0] - X_START
    assert cross(moved, U) == pytest.approx(0, abs=1e-9) and float(moved @ U) > 0
    curve = result.probability_curves[0]
    assert len(curve) == int(result.steps[0]) + 1
    assert torch.all(curve[:-1] <= 0.5) and curve[-1] > 0.5  # the first passing iterate, no later
    assert torch.all(curve.diff() > 0)


def test_normalized_steps_have_length_lr():
    """Each normalised step raises the margin by lr |u| = 0.05: 7.04 / 0.05 = 140.8 -> 141 steps."""
    result = attack(optimizer="normalized", objective="margin", lr=0.01).run(X_START[None], 1)
    assert int(result.steps[0]) == 141
    torch.testing.assert_close(result.ws_cf[0], X_START + 141 * 0.01 * U / 5)


def test_default_adam_under_constant_gradient_moves_each_coordinate_by_lr():
    """Adam normalises a constant gradient per coordinate: both move by lr, margin +0.07 per step."""
    result = attack(objective="margin").run(X_START[None], 1)  # Adam, lr 0.01 by default
    assert int(result.steps[0]) == 101  # 7.04 / 0.07 = 100.57
    torch.testing.assert_close(result.ws_cf[0], X_START + 101 * 0.01, atol=1e-6, rtol=0)


def test_adam_matches_torch_adam():
    x0 = torch.tensor([[-1.0, -1.01], [0.3, -2.0]], dtype=torch.float64)
    result = attack(threshold=0.999, steps=20, lr=0.05).run(x0, 1)
    assert result.reasons == ["max_steps", "max_steps"]
    x = x0.clone().requires_grad_(True)
    adam = torch.optim.Adam([x], lr=0.05)
    for _ in range(20):
        adam.zero_grad()
        (-torch.softmax(linear(x), dim=1)[:, 1]).sum().backward()
        adam.step()
    torch.testing.assert_close(result.ws_cf, x.detach())


def test_sigmoid_classifier_with_one_logit():
    """[N, 1] logits are p(class 1) = sigmoid(l): the same answer as the 2-class linear problem."""
    result = attack(lambda x: (x @ U)[:, None], optimizer="sgd", objective="margin").run(X_START[None], 1)
    assert int(result.steps[0]) == 29 and result.reasons == ["reached"]
    assert int(result.source_class[0]) == 0


def test_objective_helpers_known_values():
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    target = torch.tensor([0, 2])
    p = torch.softmax(logits, dim=1)
    torch.testing.assert_close(objective_value(logits, target, "probability"), p[[0, 1], [0, 2]])
    torch.testing.assert_close(objective_value(logits, target, "log_probability"), p[[0, 1], [0, 2]].log())
    torch.testing.assert_close(objective_value(logits, target, "margin"), torch.tensor([-2.0, 1.0]))
    one = torch.tensor([[0.0], [2.0]])
    torch.testing.assert_close(class_probabilities(one)[:, 1], torch.sigmoid(one[:, 0]))
    torch.testing.assert_close(objective_value(one, torch.tensor([1, 0]), "margin"), torch.tensor([0.0, -2.0]))


# ---------------------------------------------------------------------------------------------
# Batches: per-item stopping and per-item failures.


def test_per_item_stopping_in_a_batch():
    x0 = torch.stack([X_START, torch.tensor([1.0, 1.0]).double(), torch.tensor([-100.0, -100.0]).double()])
    result = attack(optimizer="sgd", objective="margin", steps=60).run(x0, 1)
    assert result.reasons == ["reached", "reached", "max_steps"]
    assert result.steps.tolist() == [29, 0, 60]
    assert result.reached.tolist() == [True, True, False]
    assert torch.equal(result.ws_cf[1], x0[1])  # stopped at the start: never moved
    assert [len(c) for c in result.probability_curves] == [30, 1, 61]
    alone = attack(optimizer="sgd", objective="margin", steps=60).run(x0[:1], 1)
    torch.testing.assert_close(result.ws_cf[0], alone.ws_cf[0])
    torch.testing.assert_close(result.probability_curves[0], alone.probability_curves[0])
    assert result.flip_rate == pytest.approx(2 / 3) and len(result) == 3


def test_runs_the_same_inside_no_grad():
    with torch.no_grad():
        result = attack(optimizer="sgd", objective="margin").run(X_START[None], 1)
    assert result.reasons == ["reached"] and int(result.steps[0]) == 29


def test_per_item_targets():
    x0 = torch.stack([X_START, X_START])
    result = attack(optimizer="sgd", objective="margin").run(x0, torch.tensor([1, 0]))
    assert result.steps.tolist() == [29, 0] and result.target.tolist() == [1, 0]


def test_zero_gradient_ends_that_item_only():
    def gated(x: torch.Tensor) -> torch.Tensor:  # constant (zero logits) wherever x[0] <= 0
        return linear(x) * (x[:, :1] > 0)

    x0 = torch.tensor([[-1.0, -1.01], [0.5, -1.01]], dtype=torch.float64)  # item 1: u . x = -2.54
    result = attack(gated, optimizer="sgd", objective="margin").run(x0, 1)
    assert result.reasons == ["zero_gradient", "reached"]
    assert result.steps.tolist() == [0, 11]  # 2.54 / 0.25 = 10.16
    assert not bool(result.reached[0]) and float(result.target_probability[0]) == pytest.approx(0.5)
    torch.testing.assert_close(result.ws_cf[0], x0[0])


def test_classifier_ignoring_its_input_is_zero_gradient():
    result = attack(lambda x: torch.zeros(x.shape[0], 3)).run(X_START[None].repeat(2, 1), 2)
    assert result.reasons == ["zero_gradient", "zero_gradient"] and result.steps.tolist() == [0, 0]


def test_non_finite_loss_or_gradient_ends_that_item_only():
    def fragile(x: torch.Tensor) -> torch.Tensor:
        # 0 * sqrt(.): adds nothing while x[1] < 0.5; NaN gradient at 0.5; NaN logits beyond.
        return linear(x) + 0 * torch.sqrt(0.5 - x[:, 1:2])

    x0 = torch.tensor([[-1.0, -1.01], [-5.0, 0.2], [-1.0, 0.5]], dtype=torch.float64)
    result = attack(fragile, optimizer="sgd", objective="margin").run(x0, 1)
    assert result.reasons == ["reached", "non_finite", "non_finite"]
    # Item 1: x[1] = 0.2 + 0.04 t passes 0.5 at t = 8 (NaN loss); item 2: finite loss, NaN gradient.
    assert result.steps.tolist() == [29, 8, 0]
    torch.testing.assert_close(result.ws_cf[1], x0[1] + 8 * 0.01 * U)
    assert math.isnan(float(result.target_probability[1]))
    assert not result.reached[1:].any()
    summary = result.summary()  # NaNs do not break the pydantic summary
    assert summary[1].reason == "non_finite" and summary[0].reason == "reached"


def test_proximity_penalty_has_its_analytic_pull_and_shortens_the_path():
    """Loss -margin + lam * mean((x - x0)^2): d_t = u / lam * (1 - (1 - lr lam)^t) for D = 2."""
    far = torch.tensor([[-100.0, -100.0]], dtype=torch.float64)  # never reached in 200 steps
    free = attack(optimizer="sgd", objective="margin", steps=200).run(far, 1)
    pulled = attack(optimizer="sgd", objective="margin", steps=200, proximity_weight=1.0).run(far, 1)
    assert free.reasons == pulled.reasons == ["max_steps"]
    torch.testing.assert_close(pulled.ws_cf[0] - far[0], U * (1 - 0.99**200))
    assert float(pulled.latent_distance[0]) < float(free.latent_distance[0]) == pytest.approx(10.0)


# ---------------------------------------------------------------------------------------------
# Frames.


def test_frames_are_evenly_spaced_and_include_start_and_end():
    result = attack(optimizer="sgd", objective="margin").run(X_START[None], 1)  # 29 steps
    assert result.frame_steps[0].tolist() == [0, 4, 8, 12, 17, 21, 25, 29]
    expected = X_START + result.frame_steps[0, :, None].double() * 0.01 * U
    torch.testing.assert_close(result.frames_ws[0], expected)
    torch.testing.assert_close(result.frames_images[0], expected)  # identity decode
    assert torch.equal(result.frames_ws[0, 0], X_START) and torch.equal(result.frames_ws[0, -1], result.ws_cf[0])


def test_long_paths_keep_bounded_frames_near_even_spacing():
    far = torch.tensor([[-300.0, -300.0], [-1.0, -1.01]], dtype=torch.float64)  # item 0 never passes
    result = attack(optimizer="sgd", objective="margin", steps=1500, num_frames=5).run(far, 1)
    assert result.steps.tolist() == [1500, 29]
    steps = result.frame_steps[0]
    assert steps[0] == 0 and steps[-1] == 1500 and torch.all(steps.diff() > 0)
    ideal = torch.tensor([0, 375, 750, 1125, 1500])
    assert torch.all((steps - ideal).abs() <= 8)  # 128 kept iterates at most: every 16th step here
    torch.testing.assert_close(result.frames_ws[0], far[0] + steps[:, None].double() * 0.01 * U)
    assert result.frame_steps[1].tolist() == [0, 7, 15, 22, 29]  # short path: exact


# ---------------------------------------------------------------------------------------------
# A tiny real StyleGAN3 and CNN: W vs W+, pixel space.


@pytest.fixture(scope="module")
def tiny() -> tuple[Generator, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    G = Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=1,
        channel_base=128, channel_max=8, num_layers=3, num_critical=1, margin_size=2,
    ).eval()
    cnn = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    ).eval()
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 8), None)
    ws = ws + 0.3 * torch.randn(ws.shape)  # a W+ start: entries differ
    return G, cnn, ws


def decoder(G: Generator):
    return lambda ws: G.synthesis(ws, noise_mode="const")


def weakest_class(G: Generator, cnn: nn.Module, ws: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return cnn(G.synthesis(ws, noise_mode="const")).argmin(dim=1)


@pytest.mark.parametrize("space", ["w", "w+"])
def test_w_and_w_plus_on_tiny_stylegan(tiny, space):
    G, cnn, ws0 = tiny
    target = weakest_class(G, cnn, ws0)
    config = dict(space=space, steps=3, lr=0.05, threshold=0.99, num_frames=3)
    result = attack(cnn, decoder(G), **config).run(ws0, target)
    n, num_ws, w_dim = ws0.shape
    assert result.reasons == ["max_steps"] * n
    assert result.ws_cf.shape == (n, num_ws, w_dim) and result.images_cf.shape == (n, 1, 16, 16)
    assert result.frames_ws.shape == (n, 3, num_ws, w_dim) and result.frames_images.shape == (n, 3, 1, 16, 16)
    assert result.frame_steps.tolist() == [[0, 2, 3]] * n  # floor(1.5 + 0.5) = 2
    with torch.no_grad():
        torch.testing.assert_close(result.images_cf, G.synthesis(result.ws_cf, noise_mode="const"))
        torch.testing.assert_close(result.images0, G.synthesis(ws0, noise_mode="const"))
    torch.testing.assert_close(result.frames_images[:, -1], result.images_cf)
    assert torch.all(result.probability_curves[0][-1] > result.probability_curves[0][0])
    entries_equal = torch.equal(result.ws_cf, result.ws_cf[:, :1].expand_as(result.ws_cf))
    if space == "w":
        # One w per item, repeated over every entry, starting from the mean of ws0's entries.
        assert entries_equal and torch.equal(result.frames_ws, result.frames_ws[:, :, :1].expand_as(result.frames_ws))
        torch.testing.assert_close(result.frames_ws[:, 0], ws0.mean(dim=1, keepdim=True).expand_as(ws0))
    else:
        assert not entries_equal and torch.equal(result.frames_ws[:, 0], ws0)
        moved = result.ws_cf - ws0
        assert not torch.allclose(moved, moved[:, :1].expand_as(moved))  # entries moved differently
    expected_per_entry = (result.ws_cf - ws0).norm(dim=-1).mean(dim=-1)
    torch.testing.assert_close(result.latent_distance_per_entry, expected_per_entry)
    torch.testing.assert_close(result.latent_distance, (result.ws_cf - ws0).flatten(1).norm(dim=1))


def test_layers_move_only_the_chosen_ws_entries(tiny):
    G, cnn, ws0 = tiny
    target = weakest_class(G, cnn, ws0)
    # (Entry 0 feeds the input's rotation and translation, whose weights start at zero in an
    # untrained generator, so its gradient would be zero here.)
    result = attack(cnn, decoder(G), layers=(1, 3), steps=3, lr=0.05, threshold=0.99).run(ws0, target)
    moved = (result.ws_cf - ws0).abs().amax(dim=(0, 2))  # per entry, over items and w
    assert moved[1] > 0 and moved[3] > 0
    still = [0, 2] + list(range(4, G.num_ws))
    assert torch.equal(result.ws_cf[:, still], ws0[:, still])
    assert torch.equal(result.frames_ws[:, :, still], ws0[:, None, still].expand_as(result.frames_ws[:, :, still]))
    assert torch.all(result.probability_curves[0][-1] > result.probability_curves[0][0])


def test_layers_outside_ws_or_outside_w_plus_are_refused(tiny):
    G, cnn, ws0 = tiny
    with pytest.raises(InvalidInputError, match="out of range"):
        attack(cnn, decoder(G), layers=(G.num_ws,)).run(ws0, 0)
    with pytest.raises(InvalidInputError, match=r"\[N, num_ws, w_dim\]"):
        attack(layers=(0,)).run(X_START[None], 1)
    for bad in ({"layers": ()}, {"layers": (1, 1)}, {"layers": (-1,)}, {"layers": (0,), "space": "w"}):
        with pytest.raises(ValidationError):
            AttackConfig(**bad)


# --- shift_lr: a separate, known step along given directions of ws entry 0 -------------------------

SHIFT_DIRECTIONS = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)  # [1, 2, w_dim]: 1 px right, down


def test_shift_steps_entry_0_along_the_directions_analytically():
    """Decode = entry 0; the margin's gradient there is u, so the shift gradient is D u = (6, 4).

    SGD on the shift alone (``layers=(1,)`` masks entry 0 for the ordinary step; entry 1 has no
    gradient): shift += 0.01 (6, 4) and entry 0 += 0.01 D^T D u = 0.01 (12, 4) per step, so the
    margin grows by 0.52 a step and first passes 0 at step 14.
    """
    ws0 = torch.stack([X_START, torch.zeros(2, dtype=torch.float64)])[None]  # [1, 2 entries, w_dim 2]
    result = attack(decode=lambda ws: ws[:, 0], optimizer="sgd", objective="margin", layers=(1,),
                    shift_lr=0.01).run(ws0, 1, shift_directions=SHIFT_DIRECTIONS)
    assert result.reasons == ["reached"] and int(result.steps[0]) == 14
    torch.testing.assert_close(result.ws_cf[0, 0], X_START + 14 * 0.01 * torch.tensor([12.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(result.ws_cf[0, 1], ws0[0, 1])
    torch.testing.assert_close(result.shift_px[0], 14 * 0.01 * torch.tensor([6.0, 4.0], dtype=torch.float64))
    assert result.summary()[0].shift_px == pytest.approx((0.84, 0.56))


def test_shift_needs_its_directions_and_w_plus():
    ws0 = torch.stack([X_START, X_START])[None]
    with pytest.raises(InvalidInputError, match=r"shift_lr needs shift_directions \[1, 2, 2\]"):
        attack(decode=lambda ws: ws[:, 0], shift_lr=0.1).run(ws0, 1)
    with pytest.raises(InvalidInputError, match=r"shift_directions must be \[1, 2, 2\]"):
        attack(decode=lambda ws: ws[:, 0], shift_lr=0.1).run(ws0, 1, shift_directions=SHIFT_DIRECTIONS[:, :1])
    with pytest.raises(InvalidInputError, match="neither shift_lr nor shift_search_px is on"):
        attack(decode=lambda ws: ws[:, 0]).run(ws0, 1, shift_directions=SHIFT_DIRECTIONS)
    with pytest.raises(InvalidInputError, match=r"ws0 of shape \[N, num_ws, w_dim\]"):
        attack(shift_lr=0.1).run(X_START[None], 1, shift_directions=SHIFT_DIRECTIONS)
    for space in ("w", "pixel"):
        with pytest.raises(ValidationError, match="shift_lr"):
            AttackConfig(space=space, shift_lr=0.1)
    assert attack().run(X_START[None], 1).shift_px is None


def test_pixel_space_changes_pixels_within_range(tiny):
    G, cnn, ws0 = tiny
    target = weakest_class(G, cnn, ws0)
    result = attack(cnn, decoder(G), space="pixel", steps=4, lr=0.3, threshold=0.99, num_frames=3).run(ws0, target)
    with torch.no_grad():
        start = G.synthesis(ws0, noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(result.images0, start)
    assert result.ws_cf is None and result.frames_ws is None and result.latent_distance is None
    assert result.images_cf.min() >= -1 and result.images_cf.max() <= 1
    assert (result.images_cf.abs() == 1).any()  # lr 0.3 drives some pixels onto the clamp
    assert torch.all(result.pixel_l2 > 0)
    assert result.frames_images.shape == (2, 3, 1, 16, 16)
    assert torch.equal(result.frames_images[:, 0], start) and torch.equal(result.frames_images[:, -1], result.images_cf)
    assert result.summary()[0].latent_distance is None

    given = torch.zeros(1, 1, 16, 16)
    from_image = attack(cnn, decoder(G), space="pixel", steps=2, threshold=0.99).run(None, 0, images=given)
    assert torch.equal(from_image.images0, given) and float(from_image.pixel_l2[0]) > 0


# ---------------------------------------------------------------------------------------------
# Result summary, seeding, validation.


def test_summary_is_pydantic_and_json_ready():
    x0 = torch.stack([X_START, torch.tensor([-100.0, -100.0]).double()])
    result = attack(optimizer="sgd", objective="margin", steps=40).run(x0, 1)
    assert isinstance(result, AttackResult) and result.seconds > 0
    summary = result.summary()
    assert all(isinstance(s, AttackItemSummary) for s in summary)
    first = json.loads(summary[0].model_dump_json())
    assert first["reached"] is True and first["steps"] == 29 and first["reason"] == "reached"
    assert first["frame_steps"][0] == 0 and first["frame_steps"][-1] == 29
    assert len(first["probability_curve"]) == 30 and first["source_class"] == 0
    assert AttackItemSummary.model_validate_json(summary[1].model_dump_json()) == summary[1]
    assert summary[1].reason == "max_steps" and summary[1].steps == 40


def test_seed_makes_random_decoding_repeatable_and_leaves_global_rng_alone():
    noisy = lambda x: x + 0.01 * torch.randn_like(x)  # noqa: E731
    state = torch.get_rng_state()
    first = attack(decode=noisy, optimizer="sgd", objective="margin", seed=3).run(X_START[None], 1)
    assert torch.equal(torch.get_rng_state(), state)
    second = attack(decode=noisy, optimizer="sgd", objective="margin", seed=3).run(X_START[None], 1)
    torch.testing.assert_close(first.images_cf, second.images_cf, rtol=0, atol=0)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    x0 = torch.stack([X_START, torch.tensor([1.0, 1.0]).double(), torch.tensor([-100.0, -100.0]).double()])
    cpu = attack(objective="margin", steps=150).run(x0, 1)
    gpu = attack(objective="margin", steps=150).run(x0.cuda(), 1)
    assert gpu.reasons == cpu.reasons and torch.equal(gpu.steps, cpu.steps)
    assert gpu.ws_cf.device.type == "cpu" and gpu.frames_ws.device.type == "cpu"
    torch.testing.assert_close(gpu.ws_cf, cpu.ws_cf)
    torch.testing.assert_close(gpu.frames_images, cpu.frames_images)


@pytest.mark.parametrize(
    "ws0, target, match",
    [
        (torch.zeros(2), 1, "ws0 must be"),
        (torch.zeros(1, 2, 3, 4), 1, "ws0 must be"),
        (torch.zeros(0, 2), 1, "N >= 1"),
        (torch.zeros(2, 2, dtype=torch.long), 1, "floating-point"),
        (torch.tensor([[0.0, math.nan]]), 1, "NaN"),
        (torch.tensor([[0.0, math.inf]]), 1, "NaN or infinite"),
        (None, 1, "ws0 is required"),
        (torch.zeros(2, 2), 2, "out of range .* 2 classes"),
        (torch.zeros(2, 2), -1, ">= 0"),
        (torch.zeros(2, 2), [1, 1, 1], r"\[N\] = \[2\]"),
        (torch.zeros(2, 2), torch.tensor([0.5, 1.0]), "integer"),
        (torch.zeros(2, 2), True, "bool"),
    ],
)
def test_bad_inputs_raise_clear_errors(ws0, target, match):
    with pytest.raises(InvalidInputError, match=match):
        attack().run(ws0, target)


@pytest.mark.parametrize(
    "classifier, match",
    [
        (lambda x: (x @ U.float())[:], r"\[N, num_classes\]"),  # [N]
        (lambda x: linear(x.double())[:, :, None], r"\[N, num_classes\]"),  # [N, K, 1]
        (lambda x: linear(x.double())[:1], r"\[2, K\]"),  # wrong N
        (lambda x: "logits", r"got str"),
    ],
)
def test_bad_classifier_outputs_raise(classifier, match):
    with pytest.raises(InvalidInputError, match=match):
        attack(classifier).run(torch.zeros(2, 2), 1)


def test_bad_decoder_output_and_misplaced_images_raise():
    with pytest.raises(InvalidInputError, match="decode must return"):
        attack(decode=lambda ws: ws[:1]).run(torch.zeros(2, 2), 1)
    with pytest.raises(InvalidInputError, match="space='pixel' only"):
        attack().run(torch.zeros(2, 2), 1, images=torch.zeros(2, 1, 4, 4))
    with pytest.raises(InvalidInputError, match=r"\[N, C, H, W\]"):
        attack(space="pixel").run(None, 1, images=torch.zeros(2, 4, 4))


@pytest.mark.parametrize(
    "field, value",
    [
        ("threshold", 0.0), ("threshold", 1.0), ("steps", 0), ("steps", 100_001), ("lr", 0.0),
        ("lr", math.nan), ("num_frames", 1), ("optimizer", "rmsprop"), ("objective", "hinge"),
        ("space", "z"), ("proximity_weight", -1.0), ("unknown", 1),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValidationError):
        AttackConfig(**{field: value})
