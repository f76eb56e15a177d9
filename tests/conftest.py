"""Shared fixtures: the optional real data folder, determinism, small thread counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SAM2_PLUGINS_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_GOLDEN = SHARED_DATA.parent / "golden"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real DAVIS / stardist / SA-V data); skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present (tests needing it skip)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_golden() -> Path:
    """``../shared/golden`` (numbers from official evaluators); skips where absent."""
    if not SHARED_GOLDEN.is_dir():
        pytest.skip(f"golden folder {SHARED_GOLDEN} is not present")
    return SHARED_GOLDEN


@pytest.fixture(autouse=True)
def _seed() -> None:
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True)
def _drop_torchvision_shim():
    """Tests may install a torchvision stand-in for upstream's predictors; remove it afterwards
    so libraries that probe for torchvision (torchmetrics) do not see a half module."""
    yield
    from tests.ref_utils import uninstall_torchvision_shim

    uninstall_torchvision_shim()
