"""Differentiable clip forward through SAM 2's memory, with simulated prompts and corrections.

This is the training loop of upstream ``SAM2Train.forward``, run on the same tracking engine as
the video predictor (:class:`~sam2_plugins.predictors.video.step.TrackingStep` and its memory
bank): every object is one row of one memory bank, the backbone runs once per image and its
features are gathered per object. Training and inference differ only by arguments:

* in training mode prompts are simulated (clicks from the ground truth, corrections) and
  prompted frames are encoded into memory from the decoder's full-resolution mask, in the
  encoder's dtype, as upstream's training does;
* in eval mode (validation) the clip is tracked exactly as ``SAM2VideoPredictor`` with its
  defaults tracks it: prompted frames are encoded from their hole-filled low-resolution mask
  once prompting is done, masks of point prompts are binarised for the memory, memories are
  stored in bf16 and returned masks have holes up to ``fill_hole_area`` filled. Validation
  scores are therefore what a user gets at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from sam2_plugins.predictors.video.bank import MemoryBank
from sam2_plugins.predictors.video.entry import PointInputs as StepPoints
from sam2_plugins.predictors.video.frames import FrameFeatures
from sam2_plugins.predictors.video.step import MEMORY_DTYPE, TrackingStep

from .prompts import PromptConfig, PromptPlan, concat_points, sample_error_points

__all__ = ["ClipBatch", "forward_clip", "predict_first_click", "drop_inference_caches"]

ClipFrameOutput = Dict[str, Any]
"""One frame's outputs of :func:`forward_clip` (the loss reads them), a dict as upstream's."""


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


def _backbone(model: nn.Module, images: torch.Tensor, one_by_one: bool = False) -> FrameFeatures:
    """Image features of (T, B, 3, S, S) images: one row per image (T * B rows).

    ``one_by_one`` encodes each image alone, as the video predictor does (a batched encoder is
    not bit-identical to single images, and stored bf16 memories would amplify the difference).
    """
    flat = images.flatten(0, 1)
    if one_by_one:
        parts = [model.prepare_backbone_features(model.forward_image(flat[i:i + 1]))[1:] for i in range(len(flat))]
        feats = [torch.cat([p[0][k] for p in parts], 1) for k in range(len(parts[0][0]))]
        pos = [torch.cat([p[1][k] for p in parts], 1) for k in range(len(parts[0][1]))]
        sizes = parts[0][2]
    else:
        _, feats, pos, sizes = model.prepare_backbone_features(model.forward_image(flat))
    return FrameFeatures(vision_feats=list(feats), vision_pos=pos[-1], feat_sizes=list(sizes))


def _rows(feats: FrameFeatures, ids: torch.Tensor, one_image: Optional[int] = None) -> FrameFeatures:
    """The features of the images ``ids`` (one row per object). When every object is on the
    same image (``one_image``), its features are broadcast as the video predictor does, so the
    memory attention shares their first self-attention exactly as it does there."""
    if one_image is not None:
        n, i = len(ids), one_image
        return FrameFeatures(vision_feats=[x[:, i:i + 1].expand(-1, n, -1) for x in feats.vision_feats],
                             vision_pos=feats.vision_pos[:, i:i + 1].expand(-1, n, -1), feat_sizes=feats.feat_sizes)
    return FrameFeatures(vision_feats=[x[:, ids] for x in feats.vision_feats], vision_pos=feats.vision_pos[:, ids],
                         feat_sizes=feats.feat_sizes)


def inference_step(model: nn.Module, fill_hole_area: int = 8, binarize_prompted: bool = True) -> TrackingStep:
    """The step configured as ``SAM2VideoPredictor``'s defaults (upstream's video builder)."""
    return TrackingStep(model, memory_dtype=MEMORY_DTYPE, binarize_prompted=binarize_prompted,
                        fill_hole_area=fill_hole_area)


def forward_clip(model: nn.Module, batch: ClipBatch, plan: PromptPlan, cfg: PromptConfig,
                 rng: np.random.Generator, *, fill_hole_area: int = 8,
                 binarize_prompted: bool = True) -> List[ClipFrameOutput]:
    """Track the objects of ``batch`` through all frames with the prompts of ``plan``.

    Conditioning frames are processed first (mask prompts go straight to memory, clicks / boxes
    through the SAM heads), then the other frames in order, each reading the memory of the
    frames processed before it. On the frames in ``plan.frames_to_correct`` the model gets
    ``cfg.num_correction_clicks`` extra clicks, one at a time, each with its previous low-res
    logits as mask prompt. In eval mode the clip is tracked as the video predictor tracks it
    (see the module docstring; ``fill_hole_area`` and ``binarize_prompted`` as its arguments).

    Returns:
        One dict per frame (frame order) with ``multistep_pred_multimasks_high_res`` (list of
        (O, M, S, S) logits), ``multistep_pred_ious`` (list of (O, M)),
        ``multistep_object_score_logits`` (list of (O, 1)), and the final ``pred_masks``
        (O, 1, S/4, S/4), ``pred_masks_high_res`` (O, 1, S, S), ``object_score_logits``. In eval
        mode ``pred_masks`` is hole-filled and ``pred_masks_high_res`` its bilinear upsampling
        (what the predictor returns at an S x S video size).
    """
    T, B = batch.images.shape[:2]
    inference = not model.training
    if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
        drop_inference_caches(model)
    step = (inference_step(model, fill_hole_area, binarize_prompted) if inference
            else TrackingStep(model, memory_dtype=None))
    feats = _backbone(model, batch.images, one_by_one=inference)
    gt = batch.masks
    bank = MemoryBank(rows=batch.num_objects)
    for t in plan.processing_order:
        cur = _rows(feats, t * B + batch.obj_to_clip, t if B == 1 else None)
        is_cond = t in plan.init_cond_frames
        point_inputs = plan.point_inputs.get(t)
        mask_inputs = plan.mask_inputs.get(t)
        pred = step.predict(t, cur, [bank], num_frames=T, is_init_cond_frame=is_cond,
                            point_inputs=StepPoints.from_dict(point_inputs), mask_inputs=mask_inputs)
        sam = pred.sam
        steps = [sam]
        if t in plan.frames_to_correct:
            for _ in range(cfg.num_correction_clicks):
                from_gt = model.training and rng.random() < cfg.prob_click_from_gt
                coords, labels = sample_error_points(gt[t][:, None], None if from_gt else (sam.high_res_masks > 0))
                point_inputs = concat_points(point_inputs, coords, labels)
                # the previous logits go back in as the mask prompt, as in interactive use
                pred = step.refine(pred, StepPoints.from_dict(point_inputs), sam.low_res_masks, is_cond)
                sam = pred.sam
                steps.append(sam)
        out: ClipFrameOutput = {
            "multistep_pred_multimasks_high_res": [s.high_res_multimasks for s in steps],
            "multistep_pred_ious": [s.ious for s in steps],
            "multistep_object_score_logits": [s.object_score_logits for s in steps],
            "pred_masks": sam.low_res_masks, "pred_masks_high_res": sam.high_res_masks,
            "obj_ptr": sam.obj_ptr, "object_score_logits": sam.object_score_logits,
            "point_inputs": point_inputs, "mask_inputs": mask_inputs}
        prompted = point_inputs is not None or mask_inputs is not None
        if inference:
            low = step.fill_holes(sam.low_res_masks.float())
            out["pred_masks"], out["pred_masks_high_res"] = low, step.upsample(low)
        if model.num_maskmem > 0:
            if inference and prompted:
                mem, pos = step.memorize_prompted(cur, low, sam.object_score_logits)
                out["maskmem_pos_enc"] = [pos]
            elif inference:
                mem, pos = step.memorize(cur, sam.high_res_masks, sam.object_score_logits, from_points=False)
                out["maskmem_pos_enc"] = [pos]
            else:
                mem, pos_list = step.encode_memory(cur, sam.high_res_masks, sam.object_score_logits,
                                                   from_points=point_inputs is not None)
                out["maskmem_pos_enc"] = pos_list
            out["maskmem_features"] = mem
        else:
            out["maskmem_features"] = out["maskmem_pos_enc"] = None
        as_cond = is_cond or (cfg.add_corrected_as_cond and t in plan.frames_to_correct)
        (bank.cond if as_cond else bank.non_cond)[t] = out
    merged = {**bank.cond, **bank.non_cond}
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
    feats = _rows(_backbone(model, batch.images[frame:frame + 1]), batch.obj_to_clip)
    step = TrackingStep(model, memory_dtype=None)
    sam = step.predict(0, feats, [MemoryBank(rows=batch.num_objects)], num_frames=1, is_init_cond_frame=True,
                       point_inputs=StepPoints(coords, labels)).sam
    return (sam.high_res_masks, sam.high_res_multimasks, sam.ious) if return_all else sam.high_res_masks
