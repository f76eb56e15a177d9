"""What the memory stores for one frame: a frame's output for a row group of objects.

A :class:`FrameOutput` is one entry of a :class:`~.bank.MemoryBank`: the mask the frame got,
and what later frames read from it (its spatial memory and its object pointer). The video
predictor and the session keep one bank per object (``B = 1``); training keeps one bank for a
batch of ``B`` objects that share a schedule. Upstream keeps the same fields in a dict; the
memory rules read both (:func:`sam2_plugins.modeling.rules.entry_field`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch

__all__ = ["PointInputs", "FrameOutput"]


@dataclass
class PointInputs:
    """Clicks on one frame for ``B`` rows, in model input pixels (0..image_size).

    Attributes:
        coords: (B, N, 2) float32, XY in the model's square input frame.
        labels: (B, N) int32: 1 positive, 0 negative, 2/3 box corners, -1 padding.
    """

    coords: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, torch.Tensor]]) -> Optional["PointInputs"]:
        """Upstream's ``{"point_coords", "point_labels"}`` dict (or None) as PointInputs."""
        return None if d is None else cls(d["point_coords"], d["point_labels"])

    @property
    def num_points(self) -> int:
        return int(self.labels.shape[1])

    def as_dict(self) -> Dict[str, torch.Tensor]:
        """The ``{"point_coords", "point_labels"}`` dict the model's SAM heads take."""
        return {"point_coords": self.coords, "point_labels": self.labels}

    def cat(self, coords: torch.Tensor, labels: torch.Tensor) -> "PointInputs":
        """New inputs with more clicks appended at the end (upstream's ``concat_points``)."""
        return PointInputs(torch.cat([self.coords, coords], dim=1),
                           torch.cat([self.labels, labels], dim=1))


@dataclass
class FrameOutput:
    """The output on one frame for the ``B`` rows of a bank.

    Attributes:
        pred_masks: (B, 1, s/4, s/4) float32 mask logits at the model's low resolution
            (256² for 1024² models); -1024 where the object is judged absent.
        obj_ptr: (B, hidden_dim) object pointer read by later frames.
        object_score_logits: (B, 1) float32; > 0 means the object is visible.
        iou: (B,) float32 predicted IoU of the chosen mask (1.0 for mask prompts).
        maskmem_features: (B, mem_dim, h, w) spatial memory (bf16 in the predictors, as
            upstream's predictor stores it), or None when not encoded yet (a fresh prompt) or
            evicted by the bounded bank.
        mask_from_points: True when the memory is (to be) encoded from a prompted frame;
            when binarising prompted masks such masks are binarised first.
        reverse: direction of the pass that produced this output.
        evicted: ``maskmem_features`` was dropped by the bounded bank (recomputable from the
            kept mask).
        in_memory: the memory policy admitted this frame: later frames may read it. Frames
            left out keep their mask (an output) but are never attended to.
        unfilled_masks: ``pred_masks`` before hole filling, kept only where filling changed
            them, so an evicted memory is recomputed from the mask it was encoded from.
        flags: signals a tracking mode adds, name -> (B,) bool tensor on the device (``"cut"``:
            a shot cut was detected on this frame; ``"refound"``: the object was confidently
            found again after one); read into the quality records.
    """

    pred_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    iou: torch.Tensor
    maskmem_features: Optional[torch.Tensor] = None
    mask_from_points: bool = False
    reverse: bool = False
    evicted: bool = False
    in_memory: bool = True
    unfilled_masks: Optional[torch.Tensor] = None
    flags: Optional[Dict[str, torch.Tensor]] = None

    @property
    def score(self) -> float:
        """The first row's object-score logit as a Python float (a host sync)."""
        return float(self.object_score_logits.reshape(-1)[0])

    def rows(self, start: int, stop: int) -> "FrameOutput":
        """Rows ``start:stop`` as their own output (views, no copy)."""
        mem = None if self.maskmem_features is None else self.maskmem_features[start:stop]
        return FrameOutput(self.pred_masks[start:stop], self.obj_ptr[start:stop],
                           self.object_score_logits[start:stop], self.iou[start:stop], mem,
                           self.mask_from_points, self.reverse, self.evicted, self.in_memory,
                           None if self.unfilled_masks is None else self.unfilled_masks[start:stop],
                           None if self.flags is None else {k: v[start:stop] for k, v in self.flags.items()})
