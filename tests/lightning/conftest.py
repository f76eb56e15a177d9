"""Small shared fixtures for the Lightning tests (nano model, tiny synthetic clips)."""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("lightning", reason="the Lightning adapter needs `pip install sam2-plugins[lightning]`")


@pytest.fixture(autouse=True)
def _quiet_and_seeded():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*litlogger.*")
        yield
