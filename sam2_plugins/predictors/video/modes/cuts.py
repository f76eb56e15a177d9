"""Shot-cut detection on the image encoder's features.

A shot cut replaces the whole scene between two frames. The image features of consecutive
frames of one shot stay close (the scene moves a little); across a cut they do not. The
detector keeps a small descriptor of each frame: the stride-16 features (``(H*W, 1, C)`` of
:class:`~sam2_plugins.predictors.video.frames.FrameFeatures`) average-pooled onto a
``grid x grid`` layout, mean-centred per channel over the grid and L2-normalised, so it keeps
where things are, not only what. A frame is a cut when the cosine similarity of its descriptor
with the previous frame's (in tracking order) falls below ``threshold``.

The threshold (0.6 by default) was measured with the shipped demo model (see
``docs/tracking_modes.md``): cuts of the hard benchmark fall far below it and consecutive frames
of ordinary synthetic clips and of DAVIS-2016 stay above it. Everything stays on the device;
the decision is a 0-d bool tensor.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CutDetector", "DEFAULT_CUT_THRESHOLD"]

DEFAULT_CUT_THRESHOLD = 0.6


class CutDetector:
    """Flags frames whose features differ from the previous frame's like a new shot.

    Args:
        threshold: cosine similarity of consecutive frame descriptors under which a frame is a
            cut (in (-1, 1)).
        grid: the descriptor's spatial grid (``grid x grid`` cells, 4).
    """

    def __init__(self, threshold: float = DEFAULT_CUT_THRESHOLD, grid: int = 4) -> None:
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not -1.0 < threshold < 1.0:
            raise ValueError(f"cut_threshold must be a number in (-1, 1), got {threshold!r}")
        if not isinstance(grid, int) or isinstance(grid, bool) or grid < 1:
            raise ValueError(f"cut grid must be an int >= 1, got {grid!r}")
        self.threshold = float(threshold)
        self.grid = grid

    def descriptor(self, top: Tensor, size: "tuple[int, int]") -> Tensor:
        """``(H*W, 1, C)`` top-level features -> ``(grid * grid * C,)`` unit descriptor."""
        h, w = size
        x = top[:, :1].float().permute(1, 2, 0).reshape(1, -1, h, w)
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
