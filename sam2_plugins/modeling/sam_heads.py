"""SAM heads: prompt encoder + mask decoder on (memory-conditioned) features, and object pointers.

Split in two so a memory policy can choose among the candidate masks:

* :func:`decode` runs the prompt encoder and mask decoder: candidate masks, their predicted
  IoUs, mask tokens and the object score (:class:`Candidates`);
* :func:`select` keeps one candidate per row (by default the best predicted IoU, upstream's
  rule) and turns its mask token into the object pointer (:class:`SamOutputs`).

:func:`mask_as_output` is the shortcut for mask prompts (the mask itself becomes the output).
Conventions (upstream's): ``S = image_size``; features ``(B, C, S/16, S/16)``; point prompts
``{"point_coords": (B, P, 2) float xy in model-input pixels, "point_labels": (B, P) int32}``
(1 positive, 0 negative, 2/3 box corners, -1 padding); masks are float32 logits, low-res
``(B, M, S/4, S/4)`` and high-res ``(B, M, S, S)``.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .rules import NO_OBJ_SCORE

__all__ = ["Candidates", "SamOutputs", "decode", "select", "mask_as_output"]


class Candidates(NamedTuple):
    """The decoder's candidate masks for ``B`` rows (``M`` = 3 with multimask output, else 1).

    ``low_res_multimasks`` (B, M, S/4, S/4) float32 logits, already -1024 where the object score
    is <= 0; ``ious`` (B, M) predicted IoUs; ``sam_tokens`` (B, M' , C) mask tokens (M' = M when
    the multimask tokens feed the pointer, else 1); ``object_score_logits`` (B, 1).
    """

    low_res_multimasks: Tensor
    ious: Tensor
    sam_tokens: Tensor
    object_score_logits: Tensor
    multimask: bool


class SamOutputs(NamedTuple):
    """Upstream's 7-tuple (``_forward_sam_heads``), with names.

    ``low_res_multimasks (B,M,S/4,S/4), high_res_multimasks (B,M,S,S), ious (B,M),
    low_res_masks (B,1,S/4,S/4), high_res_masks (B,1,S,S), obj_ptr (B,C),
    object_score_logits (B,1)``.
    """

    low_res_multimasks: Tensor
    high_res_multimasks: Tensor
    ious: Tensor
    low_res_masks: Tensor
    high_res_masks: Tensor
    obj_ptr: Tensor
    object_score_logits: Tensor


def decode(model: Any, backbone_features: Tensor, point_inputs: Optional[Dict[str, Tensor]] = None,
           mask_inputs: Optional[Tensor] = None, high_res_features: Optional[List[Tensor]] = None,
           multimask_output: bool = False, object_threshold: float = 0.0) -> Candidates:
    """Prompt encoder + mask decoder (see :func:`select` for the rest of the SAM heads).

    Args:
        model: a ``SAM2Model``.
        backbone_features: ``(B, C, S/16, S/16)``.
        point_inputs: point prompts; ``None`` adds one padding point.
        mask_inputs: ``(B, 1, h, w)`` mask prompt (logits); resized to ``S/4`` with
            antialiased bilinear if needed.
        high_res_features: ``[(B, C/8, S/4, S/4), (B, C/4, S/8, S/8)]`` or ``None``.
        multimask_output: ask for 3 candidate masks.
        object_threshold: object-score logit above which the object is present (0 in SAM 2;
            SAMURAI uses -1); masks of absent objects are set to ``NO_OBJ_SCORE``.
    """
    b, c, h, w = backbone_features.shape
    device = backbone_features.device
    n = model.sam_image_embedding_size
    if c != model.sam_prompt_embed_dim or h != n or w != n:
        raise ValueError(f"expected backbone features (B, {model.sam_prompt_embed_dim}, {n}, "
                         f"{n}), got {tuple(backbone_features.shape)}")
    if point_inputs is not None:
        coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
        if coords.size(0) != b or labels.size(0) != b:
            raise ValueError(f"point prompts have batch {coords.size(0)}/{labels.size(0)}, "
                             f"features have {b}")
    else:
        coords = torch.zeros(b, 1, 2, device=device)
        labels = -torch.ones(b, 1, dtype=torch.int32, device=device)

    mask_prompt = None
    if mask_inputs is not None:
        if mask_inputs.dim() != 4 or tuple(mask_inputs.shape[:2]) != (b, 1):
            raise ValueError(f"mask prompt must be ({b}, 1, h, w), got {tuple(mask_inputs.shape)}")
        size = tuple(getattr(model.sam_prompt_encoder, "mask_input_size", (4 * n, 4 * n)))
        mask_prompt = mask_inputs
        if tuple(mask_inputs.shape[-2:]) != size:
            mask_prompt = F.interpolate(mask_inputs.float(), size=size, mode="bilinear",
                                        align_corners=False, antialias=True)

    sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=mask_prompt)
    low_res_multimasks, ious, sam_tokens, object_score_logits = model.sam_mask_decoder(
        image_embeddings=backbone_features,
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
        repeat_image=False,
        high_res_features=high_res_features,
    )
    if model.pred_obj_scores:
        # Masks (and so the spatial memories) make a hard object / no-object choice.
        is_obj = object_score_logits > object_threshold
        low_res_multimasks = torch.where(is_obj[:, None, None], low_res_multimasks, NO_OBJ_SCORE)
    return Candidates(low_res_multimasks.float(), ious, sam_tokens, object_score_logits,
                      bool(multimask_output))


def select(model: Any, cand: Candidates, choice: Optional[Tensor] = None,
           object_threshold: float = 0.0) -> SamOutputs:
    """Keep one candidate per row and compute the object pointer from its mask token.

    Args:
        cand: from :func:`decode`.
        choice: ``(B,)`` long index of the candidate to keep per row; None keeps the best
            predicted IoU (upstream). Ignored with a single candidate.
        object_threshold: as in :func:`decode` (the hard no-object pointer switch).
    """
    low_multi = cand.low_res_multimasks
    b = low_multi.size(0)
    high_multi = F.interpolate(low_multi, size=(model.image_size,) * 2, mode="bilinear",
                               align_corners=False)
    token = cand.sam_tokens[:, 0]
    if cand.multimask:
        best = torch.argmax(cand.ious, dim=-1) if choice is None else choice
        rows = torch.arange(b, device=low_multi.device)
        low = low_multi[rows, best].unsqueeze(1)
        high = high_multi[rows, best].unsqueeze(1)
        if cand.sam_tokens.size(1) > 1:
            token = cand.sam_tokens[rows, best]
    else:
        low, high = low_multi, high_multi

    obj_ptr = model.obj_ptr_proj(token)
    score = cand.object_score_logits
    if model.pred_obj_scores:
        lam = score.sigmoid() if model.soft_no_obj_ptr else (score > object_threshold).float()
        if model.fixed_no_obj_ptr:
            obj_ptr = lam * obj_ptr
        obj_ptr = obj_ptr + (1 - lam) * model.no_obj_ptr
    return SamOutputs(low_multi, high_multi, cand.ious, low, high, obj_ptr, score)


def mask_as_output(model: Any, backbone_features: Tensor, high_res_features: Optional[List[Tensor]],
                   mask_inputs: Tensor) -> SamOutputs:
    """Take a 0/1 mask prompt ``(B, 1, S, S)`` as the output (logits -10/+10).

    The low-res mask is the antialiased bilinear ``/4`` of the high-res logits; IoU is 1; the
    object score is +10 if the mask has any positive pixel, else -10. The pointer comes from the
    SAM heads prompted only with ``mask_downsample(mask)`` on ``backbone_features``.
    """
    scale, bias = 20.0, -10.0
    m = mask_inputs.float()
    high = m * scale + bias
    low = F.interpolate(high, size=(high.size(-2) // 4, high.size(-1) // 4),
                        mode="bilinear", align_corners=False, antialias=True)
    ious = mask_inputs.new_ones(mask_inputs.size(0), 1).float()
    if not model.use_obj_ptrs_in_encoder:
        obj_ptr = torch.zeros(mask_inputs.size(0), model.hidden_dim, device=mask_inputs.device)
    else:
        obj_ptr = select(model, decode(model, backbone_features, mask_inputs=model.mask_downsample(m),
                                       high_res_features=high_res_features)).obj_ptr
    # The mask, not the decoder's score, decides whether the object is present here.
    lam = torch.any(m.flatten(1) > 0.0, dim=1)[..., None].float()
    object_score_logits = scale * lam + bias
    if model.pred_obj_scores:
        if model.fixed_no_obj_ptr:
            obj_ptr = lam * obj_ptr
        obj_ptr = obj_ptr + (1 - lam) * model.no_obj_ptr
    return SamOutputs(low, high, ious, low, high, obj_ptr, object_score_logits)
