"""torchmetrics ``Metric`` classes for validation: DAVIS J&F of tracked clips and mask mIoU.

The per-frame scores come from the core's evaluation functions (``sam2_plugins.evaluation``,
DAVIS conventions: J = IoU with empty/empty = 1, F = boundary F-measure with a tolerance of
``ceil(0.008 * image diagonal)`` pixels). The metrics only accumulate sums and counts, with
``dist_reduce_fx="sum"``, so they synchronise across DDP processes.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
from torchmetrics import Metric

__all__ = ["JandF", "MaskIoU", "best_candidate", "frame_scores"]


def frame_scores(pred: np.ndarray, gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """J and F of each frame of one object (the core's DAVIS-exact ``score_frame``).

    Args:
        pred, gt: bool (T, H, W).

    Returns:
        float64 arrays (T,) of J and F.
    """
    from sam2_plugins.evaluation.jf import f_radius, score_frame

    radius = f_radius(*gt.shape[-2:])
    jf = np.array([score_frame(p, g, radius) for p, g in zip(pred, gt)], np.float64)
    return jf[:, 0], jf[:, 1]


def _ious(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """float64 IoU over the last dim of broadcastable masks (empty vs empty counts as 1)."""
    p, g = pred.bool(), gt.bool()
    inter = (p & g).sum(-1).double()
    union = (p | g).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


class JandF(Metric):
    """Mean J, mean F and J&F over objects (DAVIS: per-object means, then the mean of those).

    ``update(pred, gt)`` takes bool (T, O, H, W) tensors of one or more clips' objects; with
    ``skip_first_and_last`` (DAVIS semi-supervised protocol) frames 0 and T-1 are not scored
    when T > 2.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, skip_first_and_last: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_first_and_last = skip_first_and_last
        self.add_state("j_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("f_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("objects", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:  # type: ignore[override]
        if pred.shape != gt.shape or pred.dim() != 4:
            raise ValueError(f"pred and gt must both be (T, O, H, W); got {tuple(pred.shape)} "
                             f"and {tuple(gt.shape)}")
        p = pred.detach().bool().cpu().numpy()
        g = gt.detach().bool().cpu().numpy()
        if self.skip_first_and_last and p.shape[0] > 2:
            p, g = p[1:-1], g[1:-1]
        for o in range(p.shape[1]):
            j, f = frame_scores(p[:, o], g[:, o])
            # out-of-place: states reset under inference_mode cannot be updated in place later
            self.j_sum = self.j_sum + float(j.mean())
            self.f_sum = self.f_sum + float(f.mean())
            self.objects = self.objects + 1.0

    def compute(self) -> Dict[str, torch.Tensor]:  # type: ignore[override]
        n = self.objects.clamp(min=1.0)
        j, f = self.j_sum / n, self.f_sum / n
        return {"J": j.float(), "F": f.float(), "J&F": ((j + f) / 2).float()}


class MaskIoU(Metric):
    """Mean IoU of (O, H, W) predicted vs ground-truth masks (empty vs empty counts as 1)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("iou_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:  # type: ignore[override]
        if pred.shape != gt.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
        iou = _ious(pred.detach().flatten(1), gt.detach().flatten(1))
        self.iou_sum = self.iou_sum + iou.sum().to(self.iou_sum)
        self.count = self.count + float(iou.numel())

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return (self.iou_sum / self.count.clamp(min=1.0)).float()


def best_candidate(candidates: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per object, the candidate mask with the highest IoU against the ground truth.

    Args:
        candidates: bool (O, M, H, W), e.g. the 3 masks SAM 2 proposes for one click.
        gt: bool (O, H, W).

    Returns:
        bool (O, H, W). Scoring this shows what a perfect IoU head would reach.
    """
    if candidates.dim() != 4 or gt.dim() != 3 or candidates.shape[0] != gt.shape[0] \
            or candidates.shape[-2:] != gt.shape[-2:]:
        raise ValueError(f"expected candidates (O, M, H, W) and gt (O, H, W) with the same O, H, W, "
                         f"got {tuple(candidates.shape)} and {tuple(gt.shape)}")
    iou = _ious(candidates.flatten(2), gt.flatten(1)[:, None])
    rows = torch.arange(candidates.shape[0], device=candidates.device)
    return candidates[rows, iou.argmax(1)].bool()
