"""A path made by the first move alone (class step or whole-object shift, no ascent step) is still shown."""

from __future__ import annotations

from types import SimpleNamespace

from cfattack.reports.strip import first_move_frames


def _exp(steps=0, class_step=None, shift_px=None):
    return SimpleNamespace(steps=steps, class_step=class_step, shift_px=shift_px)


def test_first_move_frames_are_the_inner_frames_of_a_move_only_path():
    assert first_move_frames(_exp(class_step=0.375), 8, 6) == [1, 2, 3, 4, 5, 6]
    assert first_move_frames(_exp(shift_px=(1.5, 0.0)), 8, 3) == [1, 3, 6]  # evenly thinned
    assert first_move_frames(_exp(class_step=0.375), 2, 6) == []  # no inner frame to show


def test_paths_with_ascent_steps_or_no_move_use_the_step_frames():
    assert first_move_frames(_exp(steps=4, class_step=0.5), 8, 6) == []  # pick_frames shows those
    assert first_move_frames(_exp(), 8, 6) == []
    assert first_move_frames(_exp(class_step=0.0, shift_px=(0.0, 0.0)), 8, 6) == []
    assert first_move_frames(_exp(class_step=0.5), 8, 0) == []
