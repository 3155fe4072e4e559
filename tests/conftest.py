"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread(monkeypatch):
    """Tiny tensors: one torch thread avoids oversubscription on small, shared CI machines."""
    monkeypatch.setenv("CFATTACK_THREADS", "1")  # commands run in process apply cfattack's thread rule
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
