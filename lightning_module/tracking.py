"""Differentiable clip forward through SAM 2's memory, with simulated prompts and corrections.

This is the training loop of upstream ``SAM2Train.forward`` written against the model API that
both our :class:`~sam2_plugins.modeling.sam2.SAM2Model` and upstream ``SAM2Base`` expose
(``forward_image``, ``_prepare_backbone_features``, ``_track_step``, ``_forward_sam_heads``,
``_encode_new_memory``). Every object is one batch row: the backbone runs once per image and
its features are gathered per object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from .prompts import PointInputs, PromptConfig, PromptPlan, concat_points, sample_error_points

__all__ = ["ClipBatch", "use_multimask", "forward_clip", "predict_first_click",
           "drop_inference_caches"]

FrameOutput = Dict[str, Any]


@dataclass
class ClipBatch:
    """A batch of B clips of T frames with O objects in all (objects are the batch rows).

    Attributes:
        images: float (T, B, 3, S, S), ImageNet-normalised, S = the model's ``image_size``.
        masks: bool (T, O, S, S), ground truth of every object on every frame.
        obj_to_clip: long (O,), the clip (0 .. B-1) each object belongs to.
        names: optional clip names, for logs.
    """

    images: torch.Tensor
    masks: torch.Tensor
    obj_to_clip: torch.Tensor
    names: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dim() != 5 or self.images.shape[2] != 3:
            raise ValueError(f"images must be (T, B, 3, S, S), got {tuple(self.images.shape)}")
        if self.masks.dim() != 4:
            raise ValueError(f"masks must be (T, O, S, S), got {tuple(self.masks.shape)}")
        if self.masks.shape[0] != self.images.shape[0]:
            raise ValueError(f"images have {self.images.shape[0]} frames, masks "
                             f"{self.masks.shape[0]}")
        if self.masks.shape[-2:] != self.images.shape[-2:]:
            raise ValueError(f"masks are {tuple(self.masks.shape[-2:])} but images are "
                             f"{tuple(self.images.shape[-2:])}")
        if self.obj_to_clip.shape != (self.masks.shape[1],):
            raise ValueError("obj_to_clip must have one entry per object")

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_objects(self) -> int:
        return int(self.masks.shape[1])

    def to(self, device: torch.device) -> "ClipBatch":
        return ClipBatch(self.images.to(device, non_blocking=True),
                         self.masks.to(device, non_blocking=True),
                         self.obj_to_clip.to(device), list(self.names))


def use_multimask(model: nn.Module, is_init_cond_frame: bool,
                  point_inputs: Optional[PointInputs]) -> bool:
    """SAM 2's rule: several masks for 0..1 clicks (on cond frames, or when tracking allows)."""
    n = 0 if point_inputs is None else int(point_inputs["point_labels"].shape[1])
    return bool(model.multimask_output_in_sam
                and (is_init_cond_frame or model.multimask_output_for_tracking)
                and model.multimask_min_pt_num <= n <= model.multimask_max_pt_num)


_LAZY_CACHES = ("_rope_cos", "_rope_sin")


def drop_inference_caches(model: nn.Module) -> int:
    """Forget lazily built tables that were created under ``torch.inference_mode``.

    Such tensors cannot take part in autograd, so a model validated (Lightning validates in
    inference mode) and then trained again would fail; the tables are rebuilt on next use.
    Returns the number of tables dropped.
    """
    n = 0
    for mod in model.modules():
        for attr in _LAZY_CACHES:
            t = getattr(mod, attr, None)
            if isinstance(t, torch.Tensor) and t.is_inference():
                setattr(mod, attr, None)
                n += 1
    return n


def _backbone(model: nn.Module, images: torch.Tensor):
    T, B = images.shape[:2]
    out = model.forward_image(images.flatten(0, 1))
    _, feats, pos, sizes = model._prepare_backbone_features(out)
    return feats, pos, sizes


def forward_clip(model: nn.Module, batch: ClipBatch, plan: PromptPlan, cfg: PromptConfig,
                 rng: np.random.Generator) -> List[FrameOutput]:
    """Track the objects of ``batch`` through all frames with the prompts of ``plan``.

    Conditioning frames are processed first (mask prompts go straight to memory, clicks / boxes
    through the SAM heads), then the other frames in order, each reading the memory of the
    frames processed before it. On the frames in ``plan.frames_to_correct`` the model gets
    ``cfg.num_correction_clicks`` extra clicks, one at a time, each with its previous low-res
    logits as mask prompt.

    Returns:
        One dict per frame (frame order) with ``multistep_pred_multimasks_high_res`` (list of
        (O, M, S, S) logits), ``multistep_pred_ious`` (list of (O, M)),
        ``multistep_object_score_logits`` (list of (O, 1)), and the final ``pred_masks``
        (O, 1, S/4, S/4), ``pred_masks_high_res`` (O, 1, S, S), ``object_score_logits``.
    """
    T, B = batch.images.shape[:2]
    if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
        drop_inference_caches(model)
    feats, pos, sizes = _backbone(model, batch.images)
    gt = batch.masks
    output_dict: Dict[str, Dict[int, FrameOutput]] = {"cond_frame_outputs": {},
                                                       "non_cond_frame_outputs": {}}
    for t in plan.processing_order:
        ids = t * B + batch.obj_to_clip
        cur_feats = [x[:, ids] for x in feats]
        cur_pos = [x[:, ids] for x in pos]
        is_cond = t in plan.init_cond_frames
        point_inputs = plan.point_inputs.get(t)
        mask_inputs = plan.mask_inputs.get(t)
        out, sam_out, hi_feats, pix_feat = model._track_step(
            t, is_cond, cur_feats, cur_pos, sizes, point_inputs, mask_inputs, output_dict, T,
            False, None)
        low_multi, high_multi, ious, low, high, obj_ptr, score = sam_out
        steps_masks, steps_ious, steps_scores = [high_multi], [ious], [score]
        if t in plan.frames_to_correct:
            for _ in range(cfg.num_correction_clicks):
                from_gt = model.training and rng.random() < cfg.prob_click_from_gt
                pred = None if from_gt else (high > 0)
                coords, labels = sample_error_points(gt[t][:, None], pred)
                point_inputs = concat_points(point_inputs, coords, labels)
                multi = use_multimask(model, is_cond, point_inputs)
                # the previous logits go back in as the mask prompt, as in interactive use
                sam_out = model._forward_sam_heads(
                    backbone_features=pix_feat, point_inputs=point_inputs, mask_inputs=low,
                    high_res_features=hi_feats, multimask_output=multi)
                low_multi, high_multi, ious, low, high, obj_ptr, score = sam_out
                steps_masks.append(high_multi)
                steps_ious.append(ious)
                steps_scores.append(score)
        out["multistep_pred_multimasks_high_res"] = steps_masks
        out["multistep_pred_ious"] = steps_ious
        out["multistep_object_score_logits"] = steps_scores
        out["pred_masks"] = low
        out["pred_masks_high_res"] = high
        out["obj_ptr"] = obj_ptr
        out["object_score_logits"] = score
        out["point_inputs"] = point_inputs
        if model.num_maskmem > 0:
            mem, mem_pos = model._encode_new_memory(cur_feats, sizes, high, score,
                                                    point_inputs is not None)
            out["maskmem_features"] = mem
            out["maskmem_pos_enc"] = mem_pos
        else:
            out["maskmem_features"] = out["maskmem_pos_enc"] = None
        as_cond = is_cond or (cfg.add_corrected_as_cond and t in plan.frames_to_correct)
        output_dict["cond_frame_outputs" if as_cond else "non_cond_frame_outputs"][t] = out
    merged = {**output_dict["cond_frame_outputs"], **output_dict["non_cond_frame_outputs"]}
    return [merged[t] for t in range(T)]


def predict_first_click(model: nn.Module, batch: ClipBatch, coords: torch.Tensor,
                        labels: torch.Tensor, frame: int = 0,
                        return_all: bool = False) -> Any:
    """Segment each object on one frame from clicks alone (no memory): high-res logits.

    Args:
        coords: float (O, P, 2) clicks in input pixels (x, y); labels: int32 (O, P).
        return_all: also return every candidate mask and its predicted IoU.

    Returns:
        float (O, 1, S, S) logits of the mask SAM 2 returns (the best-IoU one for 1 click);
        with ``return_all``, ``(that, (O, M, S, S) candidate logits, (O, M) predicted IoUs)``
        (M = 3 for one click).
    """
    feats, pos, sizes = _backbone(model, batch.images[frame:frame + 1])
    ids = batch.obj_to_clip
    cur_feats = [x[:, ids] for x in feats]
    cur_pos = [x[:, ids] for x in pos]
    point_inputs = {"point_coords": coords, "point_labels": labels}
    output_dict: Dict[str, Dict[int, FrameOutput]] = {"cond_frame_outputs": {},
                                                       "non_cond_frame_outputs": {}}
    _, sam_out, _, _ = model._track_step(0, True, cur_feats, cur_pos, sizes, point_inputs, None,
                                         output_dict, 1, False, None)
    return (sam_out[4], sam_out[1], sam_out[2]) if return_all else sam_out[4]
