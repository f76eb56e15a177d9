"""SAM 2's training loss: focal + dice + IoU regression + object score, over steps and frames.

This is the paper's recipe (upstream ``training/loss_fns.py``, ``MultiStepMultiMasksAndIous``),
re-derived so that its values match upstream's to float precision:

* per prediction step, every output mask gets a sigmoid focal loss (mean over pixels), a dice
  loss and an IoU-regression loss (L1 between the predicted IoU and the IoU of ``logits > 0``
  with the target);
* when a step outputs several masks, only the one with the lowest ``w_mask * focal + w_dice *
  dice`` is supervised by the mask losses, while the IoU loss averages over all of them;
* mask, dice and IoU losses only count where the object is present in the target; the object
  score is trained with a BCE on "is the object present";
* everything is divided by the number of objects per frame (averaged over processes under
  DDP) and summed over frames and over correction steps.

Masks are logits at the model's input resolution (``image_size``², "high-res" outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LossWeights", "SAM2Loss", "focal_loss", "dice_loss", "iou_regression_loss"]

CORE_LOSS_KEY = "core_loss"


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
               gamma: float = 2.0) -> torch.Tensor:
    """Element-wise sigmoid focal loss (RetinaNet), not reduced.

    Args:
        logits: float tensor of any shape (mask logits or object-score logits).
        targets: same shape, 0/1 floats.
        alpha: weight of positives (``alpha``) vs negatives (``1 - alpha``); < 0 disables it.
        gamma: focusing exponent; 0 gives plain BCE.

    Returns:
        float tensor of the shape of ``logits``.
    """
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    # probability the model gives to the right answer at each pixel
    p_correct = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_correct) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - (2 Σ p·t + 1) / (Σ p + Σ t + 1)`` per mask, with p = sigmoid(logits).

    Args:
        logits, targets: float (N, M, H, W).

    Returns:
        float (N, M). The +1 smoothing keeps it finite for empty targets.
    """
    p = torch.sigmoid(logits).flatten(2)
    t = targets.flatten(2)
    inter2 = 2 * (p * t).sum(-1)
    return 1 - (inter2 + 1) / (p.sum(-1) + t.sum(-1) + 1)


def iou_regression_loss(logits: torch.Tensor, targets: torch.Tensor, pred_ious: torch.Tensor,
                        use_l1: bool = True) -> torch.Tensor:
    """Error of the predicted IoU against the IoU of the thresholded mask.

    Args:
        logits, targets: float (N, M, H, W); a pixel is predicted foreground where logit > 0.
        pred_ious: float (N, M), the decoder's IoU head.
        use_l1: L1 (SAM 2) or squared error (SAM 1).

    Returns:
        float (N, M), not reduced. The actual IoU is 0 (not NaN) when both masks are empty.
    """
    pred = logits.flatten(2) > 0
    gt = targets.flatten(2) > 0
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    actual = inter / union.clamp(min=1.0)
    if use_l1:
        return F.l1_loss(pred_ious, actual, reduction="none")
    return F.mse_loss(pred_ious, actual, reduction="none")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four terms (SAM 2: 20, 1, 1, 1)."""

    mask: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    cls: float = 1.0


class SAM2Loss(nn.Module):
    """Multi-step, multi-mask SAM 2 loss (see the module docstring).

    Args:
        weights: term weights; the total is ``mask*focal + dice*dice + iou*iou + cls*class``.
        focal_alpha, focal_gamma: focal loss on masks (0.25, 2).
        supervise_all_iou: IoU loss on all M masks (True, SAM 2) or only on the chosen one.
        iou_use_l1_loss: L1 (True, SAM 2) or MSE for the IoU term.
        pred_obj_scores: train the object-score head (True for every SAM 2 model); if False the
            object counts as always present and the class loss is 0.
        focal_alpha_obj_score, focal_gamma_obj_score: focal parameters for the object score
            (-1, 0: plain BCE).
    """

    def __init__(self, weights: LossWeights = LossWeights(), focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, supervise_all_iou: bool = True,
                 iou_use_l1_loss: bool = True, pred_obj_scores: bool = True,
                 focal_alpha_obj_score: float = -1.0, focal_gamma_obj_score: float = 0.0) -> None:
        super().__init__()
        self.weights = weights
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.supervise_all_iou = supervise_all_iou
        self.iou_use_l1_loss = iou_use_l1_loss
        self.pred_obj_scores = pred_obj_scores
        self.focal_alpha_obj_score = focal_alpha_obj_score
        self.focal_gamma_obj_score = focal_gamma_obj_score

    @staticmethod
    def objects_per_frame(targets: torch.Tensor) -> float:
        """Objects per frame, averaged over DDP processes and clamped to >= 1."""
        n = torch.tensor(float(targets.shape[1]), device=targets.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(n)
            n = n / torch.distributed.get_world_size()
        return float(n.clamp(min=1.0).item())

    def forward(self, outputs: Sequence[Mapping[str, List[torch.Tensor]]],
                targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Loss of a clip.

        Args:
            outputs: one dict per frame (in frame order) with the lists (one entry per
                prediction step) ``multistep_pred_multimasks_high_res`` (float (N, M, H, W)
                logits), ``multistep_pred_ious`` (float (N, M)) and
                ``multistep_object_score_logits`` (float (N, 1)).
            targets: (T, N, H, W) ground-truth masks (bool or 0/1), N objects per frame.

        Returns:
            dict with ``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class`` (unweighted,
            summed over frames and steps) and ``core_loss`` (the weighted total), all 0-dim.
        """
        if targets.dim() != 4:
            raise ValueError(f"targets must be (T, N, H, W), got shape {tuple(targets.shape)}")
        if len(outputs) != targets.shape[0]:
            raise ValueError(f"got outputs for {len(outputs)} frames but targets for "
                             f"{targets.shape[0]}")
        num_objects = self.objects_per_frame(targets)
        zero = targets.new_zeros((), dtype=torch.float32)
        totals = {"loss_mask": zero, "loss_dice": zero, "loss_iou": zero, "loss_class": zero}
        for frame_out, frame_tgt in zip(outputs, targets):
            masks_steps = frame_out["multistep_pred_multimasks_high_res"]
            ious_steps = frame_out["multistep_pred_ious"]
            score_steps = frame_out["multistep_object_score_logits"]
            if not (len(masks_steps) == len(ious_steps) == len(score_steps)):
                raise ValueError("multistep lists must have the same length")
            tgt = frame_tgt[:, None].float()
            for masks, ious, scores in zip(masks_steps, ious_steps, score_steps):
                step = self._step(masks.float(), tgt, ious.float(), scores.float(), num_objects)
                for k, v in step.items():
                    totals[k] = totals[k] + v
        w = self.weights
        totals[CORE_LOSS_KEY] = (w.mask * totals["loss_mask"] + w.dice * totals["loss_dice"]
                                 + w.iou * totals["loss_iou"] + w.cls * totals["loss_class"])
        return totals

    def _step(self, masks: torch.Tensor, tgt: torch.Tensor, ious: torch.Tensor,
              scores: torch.Tensor, num_objects: float) -> Dict[str, torch.Tensor]:
        """Losses of one prediction step: masks (N, M, H, W), tgt (N, 1, H, W)."""
        if masks.shape[-2:] != tgt.shape[-2:]:
            raise ValueError(f"predicted masks are {tuple(masks.shape[-2:])} but targets are "
                             f"{tuple(tgt.shape[-2:])}")
        tgt = tgt.expand_as(masks)
        focal = focal_loss(masks, tgt, self.focal_alpha, self.focal_gamma).flatten(2).mean(-1)
        focal = focal / num_objects
        dice = dice_loss(masks, tgt) / num_objects
        iou = iou_regression_loss(masks, tgt, ious, self.iou_use_l1_loss) / num_objects
        if self.pred_obj_scores:
            present = (tgt[:, 0] > 0).flatten(1).any(-1, keepdim=True).float()
            cls = focal_loss(scores, present, self.focal_alpha_obj_score,
                             self.focal_gamma_obj_score)
            cls = cls.mean(1).sum() / num_objects
        else:
            present = masks.new_ones(masks.shape[0], 1)
            cls = masks.new_zeros(())
        if masks.shape[1] > 1:
            # supervise the mask that is already closest to the target (SAM's ambiguity
            # handling); the IoU head still learns the quality of every output
            combo = focal * self.weights.mask + dice * self.weights.dice
            best = combo.argmin(-1, keepdim=True)
            focal = focal.gather(1, best)
            dice = dice.gather(1, best)
            iou = iou.mean(-1, keepdim=True) if self.supervise_all_iou else iou.gather(1, best)
        return {
            "loss_mask": (focal * present).sum(),
            "loss_dice": (dice * present).sum(),
            "loss_iou": (iou * present).sum(),
            "loss_class": cls,
        }
