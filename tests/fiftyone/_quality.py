"""Accuracy floors for the demo-model tests, derived from the demo model's own card.

The card (``sam2_plugins/weights/sam2.1_hiera_nano_demo.pt.json``, key ``trained``) records the
shipped model's held-out scores on synthetic data: ``J&F`` (videos, GT mask prompt on the first
frame, DAVIS rules) and ``mIoU_1click`` (images, one centre click). A test's floor is that score
minus a margin stated here with its reason, so a better model raises the bar by itself.
"""

from __future__ import annotations

import json
from pathlib import Path

CARD = Path(__file__).resolve().parents[2] / "sam2_plugins" / "weights" / "sam2.1_hiera_nano_demo.pt.json"

#: Box prompts from tight GT boxes on synthetic images: at least as informative as the card's
#: single centre click; the margin covers other image sizes, seeds and object counts.
SEGMENT_MARGIN = 0.10
#: Synthetic video, box prompt on a middle frame tracked both ways (the card: GT mask on the
#: first frame, forward): a weaker prompt, hence a wider margin.
TRACK_MARGIN = 0.15


def card_score(metric: str) -> float:
    """The demo model's held-out ``metric`` from its card (``trained`` section)."""
    trained = json.loads(CARD.read_text()).get("trained", {})
    if metric not in trained:
        raise KeyError(f"the demo model card {CARD} has no trained[{metric!r}]; it has {sorted(trained)}")
    return float(trained[metric])


def demo_floor(metric: str, margin: float) -> float:
    """``card_score(metric) - margin``: the least a demo-model test must reach."""
    return card_score(metric) - margin
