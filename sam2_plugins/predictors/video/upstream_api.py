"""Upstream's dict-based tracking API (``SAM2Base.track_step`` and friends) on the one engine.

``SAM2Model.track_step`` and ``SAM2Model._prepare_memory_conditioned_features`` call these:
upstream's ``output_dict`` (``{"cond_frame_outputs": {t: out}, "non_cond_frame_outputs":
{t: out}}``, each ``out`` a dict with B-row tensors) is read in place through a
:class:`~.bank.MemoryBank` view, and the frame goes through the same :class:`~.step.TrackingStep`
as the video predictor, with upstream's storage conventions (memories kept in the encoder's
dtype, each with its own ``maskmem_pos_enc``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from torch import Tensor

from .bank import MemoryBank
from .entry import PointInputs
from .frames import FrameFeatures
from .step import TrackingStep

if TYPE_CHECKING:
    from ...modeling.sam2 import SAM2Model

__all__ = ["track_step", "prepare_memory_conditioned_features"]

OutputDict = Dict[str, Dict[int, Dict[str, Any]]]


def _inputs(current_vision_feats: List[Tensor], current_vision_pos_embeds: List[Tensor],
            feat_sizes: List[Tuple[int, int]], output_dict: OutputDict) -> Tuple[FrameFeatures, MemoryBank]:
    feats = FrameFeatures(vision_feats=list(current_vision_feats), vision_pos=current_vision_pos_embeds[-1],
                          feat_sizes=list(feat_sizes))
    return feats, MemoryBank.view(output_dict, rows=feats.batch)


def prepare_memory_conditioned_features(model: SAM2Model, frame_idx: int, is_init_cond_frame: bool,
                                        current_vision_feats: List[Tensor], current_vision_pos_embeds: List[Tensor],
                                        feat_sizes: List[Tuple[int, int]], output_dict: OutputDict,
                                        num_frames: Optional[int], track_in_reverse: bool = False) -> Tensor:
    """``(B, C, H, W)`` memory-conditioned features (upstream's signature and semantics)."""
    feats, bank = _inputs(current_vision_feats, current_vision_pos_embeds, feat_sizes, output_dict)
    return TrackingStep(model, memory_dtype=None).condition(frame_idx, feats, [bank], num_frames,
                                                            track_in_reverse, is_init_cond_frame)


def track_step(model: SAM2Model, frame_idx: int, is_init_cond_frame: bool, current_vision_feats: List[Tensor],
               current_vision_pos_embeds: List[Tensor], feat_sizes: List[Tuple[int, int]],
               point_inputs: Optional[Dict[str, Tensor]], mask_inputs: Optional[Tensor], output_dict: OutputDict,
               num_frames: Optional[int], track_in_reverse: bool = False, run_mem_encoder: bool = True,
               prev_sam_mask_logits: Optional[Tensor] = None) -> Dict[str, Any]:
    """One frame for B objects, as upstream ``SAM2Base.track_step``.

    Args:
        frame_idx: index of this frame in the video.
        is_init_cond_frame: the first prompted frame of these objects (no memory read).
        current_vision_feats / current_vision_pos_embeds / feat_sizes: from
            ``model.prepare_backbone_features`` (``(HW, B, C)`` per level, features expanded to
            ``B`` objects).
        point_inputs: ``{"point_coords": (B, P, 2), "point_labels": (B, P)}`` clicks / box
            corners in model-input pixels, or ``None``.
        mask_inputs: ``(B, 1, S, S)`` 0/1 mask prompt, or ``None``.
        output_dict: the memory, ``{"cond_frame_outputs": {t: out}, "non_cond_frame_outputs":
            {t: out}}``, read in place.
        num_frames: video length (sets the pointer count and temporal scale); ``None`` for an
            open-ended stream.
        track_in_reverse: tracking backwards in time.
        run_mem_encoder: also compute this frame's memory.
        prev_sam_mask_logits: ``(B, 1, S/4, S/4)`` earlier logits used as the mask prompt
            together with new clicks.

    Returns:
        ``{"point_inputs", "mask_inputs", "pred_masks" (B,1,S/4,S/4), "pred_masks_high_res"
        (B,1,S,S), "obj_ptr" (B,C), "object_score_logits" (B,1), "maskmem_features"
        (B,mem_dim,H,W) | None, "maskmem_pos_enc" [(B,mem_dim,H,W)] | None}``.
    """
    feats, bank = _inputs(current_vision_feats, current_vision_pos_embeds, feat_sizes, output_dict)
    step = TrackingStep(model, memory_dtype=None)
    if prev_sam_mask_logits is not None and (point_inputs is None or mask_inputs is not None):
        raise ValueError("prev_sam_mask_logits needs point inputs and no mask input")
    pred = step.predict(frame_idx, feats, [bank], num_frames=num_frames, reverse=track_in_reverse,
                        is_init_cond_frame=is_init_cond_frame, point_inputs=PointInputs.from_dict(point_inputs),
                        mask_inputs=mask_inputs, prev_mask_logits=prev_sam_mask_logits)
    sam = pred.sam
    out: Dict[str, Any] = {"point_inputs": point_inputs, "mask_inputs": mask_inputs,
                           "pred_masks": sam.low_res_masks, "pred_masks_high_res": sam.high_res_masks,
                           "obj_ptr": sam.obj_ptr, "object_score_logits": sam.object_score_logits}
    if run_mem_encoder and model.num_maskmem > 0:
        feat, pos = step.encode_memory(feats, sam.high_res_masks, sam.object_score_logits,
                                       from_points=point_inputs is not None)
        out["maskmem_features"], out["maskmem_pos_enc"] = feat, pos
    else:
        out["maskmem_features"] = out["maskmem_pos_enc"] = None
    return out
