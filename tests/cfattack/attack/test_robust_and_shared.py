"""The attack options added for trustworthy counterfactuals: shifted views and a shared W+ change."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from cfattack.attack.latent_attack import LatentAttack
from cfattack.attack.robustness import shift_offsets, shifted_views
from cfattack.config import AttackConfig
from tests.cfattack.attack.test_attack import decoder, tiny, weakest_class  # noqa: F401  (fixture)


def test_shifted_views_move_pixels_by_whole_pixels_and_repeat_edges():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    views = shifted_views(x, 1)
    assert shift_offsets(1) == [(1, 0), (-1, 0), (0, 1), (0, -1)]
    found = [tuple((v[0] == 1).nonzero()[0].tolist()) for v in views]
    assert found == [(2, 3), (2, 1), (3, 2), (1, 2)]  # (row, col): right, left, down, up
    edge = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    assert shifted_views(edge, 2)[0, 0, 0].tolist() == [0, 0, 1, 2, 3]  # shifted right by 1, edge repeated
    assert shifted_views(edge, 2)[4, 0, 0].tolist() == [0, 0, 0, 1, 2]  # by 2
    assert shifted_views(x, 0).shape[0] == 0


class _OnePixel(nn.Module):
    """Class 1 lights up only when the pixel at (8, 8) is bright: a non-robust, one-position feature."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 8 * (x[:, 0, 8, 8] + 0.5)
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_robust_views_make_the_change_survive_shifts():
    start = -torch.ones(1, 1, 16, 16)
    plain = LatentAttack(lambda w: w, _OnePixel(),
                         AttackConfig(space="pixel", lr=0.05, steps=200, threshold=0.9, robust_shift_px=0))
    robust = LatentAttack(lambda w: w, _OnePixel(),
                          AttackConfig(space="pixel", lr=0.05, steps=200, threshold=0.9, robust_shift_px=1,
                                       robust_stop=True))
    a = plain.run(None, 1, images=start)
    b = robust.run(None, 1, images=start)
    assert a.reached.all() and b.reached.all()
    neighbours = [(8, 9), (8, 7), (9, 8), (7, 8)]
    # Without views only the one pixel changes; with them (and robust_stop) its four neighbours
    # must light up too, because the item stops only when every shifted view also passes.
    assert all(float(a.images_cf[0, 0, r, c]) == -1 for r, c in neighbours)
    assert all(float(b.images_cf[0, 0, r, c]) > -0.5 + 0.9 / 8 for r, c in neighbours)
    views = shifted_views(b.images_cf, 1)
    assert torch.softmax(_OnePixel()(views), dim=1)[:, 1].min() > 0.9


def test_shared_change_moves_every_entry_by_the_same_vector(tiny):  # noqa: F811
    G, cnn, ws0 = tiny
    target = weakest_class(G, cnn, ws0)
    config = AttackConfig(space="w+", shared_change=True, steps=3, lr=0.05, threshold=0.99, num_frames=3)
    result = LatentAttack(decoder(G), cnn, config).run(ws0, target)
    moved = result.ws_cf - ws0
    torch.testing.assert_close(moved, moved[:, :1].expand_as(moved))  # one change for all entries
    assert moved.abs().amax() > 0
    assert not torch.equal(result.ws_cf, result.ws_cf[:, :1].expand_as(result.ws_cf))  # W+ start kept
    torch.testing.assert_close(result.frames_ws[:, 0], ws0)
    with torch.no_grad():
        torch.testing.assert_close(result.images_cf, G.synthesis(result.ws_cf, noise_mode="const"))


def test_shared_change_is_w_plus_only_and_alone():
    with pytest.raises(ValidationError, match="needs space 'w\\+'"):
        AttackConfig(space="w", shared_change=True)
    with pytest.raises(ValidationError, match="cannot be combined"):
        AttackConfig(shared_change=True, layers=(1,))
    with pytest.raises(ValidationError):
        AttackConfig(robust_shift_px=5)


def test_shift_search_takes_the_smallest_passing_shift_along_the_best_axis():
    from cfattack.attack.shift_search import search_shift

    # A toy "generator": ws[:, 0, 0] is the object's x position, ws[:, 0, 1] its y position;
    # the class is "right" once x passes 2.2 px. Directions move x and y by one pixel each.
    ws0 = torch.zeros(3, 2, 2)
    ws0[1, 0, 0] = 1.0  # already closer
    directions = torch.eye(2).expand(3, 2, 2).clone()

    def score(ws):
        x = ws[:, 0, 0]
        objective = 5 * x - 0.1 * ws[:, 0, 1].square()  # rises fastest along +x
        return objective, x > 2.2

    shift = search_shift(score, ws0, directions, radius=2)
    assert shift[0].tolist() == [0.0, 0.0]  # 2.5 px would be needed: beyond the radius, nothing applied
    assert shift[1].tolist() == [1.5, 0.0]  # the smallest half-pixel step that passes
    assert search_shift(score, ws0, directions, radius=3)[0].tolist() == [2.5, 0.0]
    assert search_shift(score, ws0, directions, radius=0).abs().sum() == 0


def test_shift_search_probes_instead_of_trusting_the_gradient_and_finds_a_narrow_class():
    from cfattack.attack.shift_search import search_shift

    # The class is a window 0.2 px wide around x = 3.3 (between the half-pixel tries 3.0 and
    # 3.5), and at the start the objective's gradient points down (-y) more steeply than along
    # +x: a ripple that a 1-px probe does not see.
    ws0 = torch.zeros(1, 2, 2)
    directions = torch.eye(2).expand(1, 2, 2).clone()

    def score(ws):
        x, y = ws[:, 0, 0], ws[:, 0, 1]
        objective = -(x - 3.3).abs() - 0.05 * torch.sin(40 * y)
        return objective, (x - 3.3).abs() < 0.1

    start = ws0.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(score(start)[0].sum(), start)
    assert slope[0, 0, 1].abs() > slope[0, 0, 0].abs()  # the gradient would have chosen the y axis
    shift = search_shift(score, ws0, directions, radius=4)
    assert shift[0].tolist() == [3.25, 0.0]  # half a step below the best try (3.5), found by the refinement


def test_shift_search_in_the_attack_starts_from_the_shifted_latent_and_reports_the_move():
    # Decode is the identity on a 2-vector "image"; class 1 needs coordinate 0 above 1.2.
    class Position(nn.Module):
        def forward(self, x):
            return torch.stack([torch.zeros_like(x[:, 0, 0, 0]), 10 * (x[:, 0, 0, 0] - 1.2)], dim=1)

    ws0 = torch.zeros(2, 2, 2)
    directions = torch.eye(2).expand(2, 2, 2).clone()
    config = AttackConfig(space="w+", shift_search_px=2, steps=50, lr=0.05)
    result = LatentAttack(lambda ws: ws.unsqueeze(1), Position(), config).run(ws0, 1, shift_directions=directions)
    assert result.reached.all() and result.steps.tolist() == [0, 0]
    assert result.shift_px.tolist() == [[1.5, 0.0], [1.5, 0.0]]
    torch.testing.assert_close(result.ws0, ws0)  # distances count the move
    assert result.latent_distance.tolist() == pytest.approx([1.5, 1.5])
    # Without directions (a decoder that is no StyleGAN3) the search is skipped, not an error.
    plain = LatentAttack(lambda ws: ws.unsqueeze(1), Position(), config).run(ws0, 1)
    assert plain.reached.all() and plain.steps.min() > 0 and plain.shift_px is None
