"""Shot-cut detection on the image encoder's features.

A shot cut replaces the whole scene between two frames. The image features of consecutive
frames of one shot stay close (the scene moves a little); across a cut they do not. The
detector keeps a small descriptor of each frame: the image encoder's finest feature level
(stride 4, ``vision_feats[0]`` of :class:`~sam2_plugins.predictors.video.frames.FrameFeatures`)
average-pooled onto a ``grid x grid`` layout (8 x 8), mean-centred per channel over the grid and
L2-normalised, so it keeps where things are, not only what. A frame is a cut when the cosine
similarity of its descriptor with the previous frame's (in tracking order) falls below
``threshold``.

The level, grid and threshold (0.55) were measured with the shipped demo model
(``python -m benchmarks cut-threshold``, see ``docs/tracking_modes.md``): across the cuts of the
hard benchmark the similarity stays below 0.48, between consecutive frames of ordinary synthetic
clips above 0.94 and of DAVIS-2016 above 0.62 (the coarse stride-16 level separates them worse:
cuts up to 0.74, DAVIS down to 0.37). Everything stays on the device; the decision is a 0-d
bool tensor.
"""

from __future__ import annotations

from typing import Any, Optional

import torch.nn.functional as F
from torch import Tensor

__all__ = ["CutDetector", "DEFAULT_CUT_THRESHOLD", "DEFAULT_CUT_GRID", "CUT_LEVEL"]

DEFAULT_CUT_THRESHOLD = 0.55
DEFAULT_CUT_GRID = 8
CUT_LEVEL = 0
"""The feature level the descriptor pools (0: the finest)."""


class CutDetector:
    """Flags frames whose features differ from the previous frame's like a new shot.

    Args:
        threshold: cosine similarity of consecutive frame descriptors under which a frame is a
            cut (in (-1, 1)).
        grid: the descriptor's spatial grid (``grid x grid`` cells, 8).
    """

    def __init__(self, threshold: float = DEFAULT_CUT_THRESHOLD, grid: int = DEFAULT_CUT_GRID) -> None:
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not -1.0 < threshold < 1.0:
            raise ValueError(f"cut_threshold must be a number in (-1, 1), got {threshold!r}")
        if not isinstance(grid, int) or isinstance(grid, bool) or grid < 1:
            raise ValueError(f"cut grid must be an int >= 1, got {grid!r}")
        self.threshold = float(threshold)
        self.grid = grid

    def descriptor(self, feats: Any) -> Tensor:
        """A frame's :class:`~sam2_plugins.predictors.video.frames.FrameFeatures` ->
        ``(grid * grid * C,)`` unit descriptor of its level :data:`CUT_LEVEL`."""
        h, w = feats.feat_sizes[CUT_LEVEL]
        x = feats.vision_feats[CUT_LEVEL][:, :1].float().permute(1, 2, 0).reshape(1, -1, h, w)
        x = F.adaptive_avg_pool2d(x, self.grid)[0]  # (C, g, g)
        x = x - x.mean(dim=(1, 2), keepdim=True)
        return F.normalize(x.flatten(), dim=0)

    def similarity(self, desc: Tensor, prev: Optional[Tensor]) -> Tensor:
        """Cosine similarity (0-d tensor) of two descriptors; 1 when there is no previous one."""
        if prev is None:
            return desc.new_ones(())
        return (desc * prev.to(desc.device)).sum()

    def is_cut(self, similarity: Tensor) -> Tensor:
        """0-d bool tensor: the similarity is below the threshold."""
        return similarity < self.threshold
