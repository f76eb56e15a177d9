"""The SAM 2 / 2.1 model: image encoder, SAM heads, memory attention and memory encoder.

:class:`SAM2Model` mirrors upstream ``SAM2Base``: the same submodule and parameter names (so
official ``{"model": state_dict}`` files load with ``strict=True``), every tracking flag as an
attribute of the same name, and the same methods with the same signatures, return conventions
and numerics, so predictors can be written against either. Unlike upstream it is built from a
typed :class:`~sam2_plugins.configs.SAM2Config`, and ``forward`` trains on single frames.

Conventions used throughout (upstream's):

* ``S = image_size`` (1024 official, 256 nano); features are at stride 16 (``H = W = S/16``).
* "Backbone features" as passed to tracking are *sequence-first*: a list over the last
  ``num_feature_levels`` FPN levels of ``(H_l * W_l, B, C_l)`` tensors; ``feat_sizes`` holds the
  matching ``(H_l, W_l)``.
* Point prompts are ``{"point_coords": (B, P, 2) float xy in model-input pixels (0..S),
  "point_labels": (B, P) int32}`` with labels 1 positive, 0 negative, 2/3 box corners,
  -1 padding. Mask prompts are ``(B, 1, h, w)`` float (logits, or 0/1 masks at ``S x S``).
* Mask outputs are logits: low-res ``(B, M, S/4, S/4)`` and high-res ``(B, M, S, S)`` float32.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from ..configs import SAM2Config
from .common import MLP
from .image_encoder import build_image_encoder
from .mask_decoder import build_sam_heads
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .object_pointers import object_pointer_memory
from .tracking_utils import (NO_OBJ_SCORE, apply_non_overlapping_constraints,
                             prompts_to_point_inputs, select_spatial_memories)

__all__ = ["SAM2Model", "NO_OBJ_SCORE"]

SamOutputs = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
"""``(low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks, obj_ptr,
object_score_logits)`` as returned by ``_forward_sam_heads`` / ``_use_mask_as_output``."""


class SAM2Model(nn.Module):
    """SAM 2 / 2.1 as one ``nn.Module`` (checkpoint-compatible with upstream ``SAM2Base``).

    Args:
        cfg: the model description (see :func:`sam2_plugins.configs.get_config`).

    Everything is differentiable; predictors wrap calls in ``torch.inference_mode()``.
    """

    def __init__(self, cfg: SAM2Config) -> None:
        super().__init__()
        if not isinstance(cfg, SAM2Config):
            raise TypeError(f"SAM2Model expects a SAM2Config, got {type(cfg).__name__}")
        self.config = cfg
        t = cfg.tracking
        for f in fields(t):
            # ``no_obj_embed_spatial`` is, as upstream, the parameter itself (or None) below.
            if f.name != "no_obj_embed_spatial":
                setattr(self, f.name, getattr(t, f.name))
        if t.proj_tpos_enc_in_obj_ptrs and not t.add_tpos_enc_to_obj_ptrs:
            raise ValueError("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")
        if t.fixed_no_obj_ptr and not (t.pred_obj_scores and t.use_obj_ptrs_in_encoder):
            raise ValueError("fixed_no_obj_ptr needs pred_obj_scores and use_obj_ptrs_in_encoder")

        self.image_size = cfg.image_size
        self.backbone_stride = cfg.backbone_stride
        self.hidden_dim = cfg.d_model
        self.mem_dim = cfg.memory.mem_dim
        self.sam_prompt_embed_dim = cfg.d_model
        self.sam_image_embedding_size = cfg.feat_size
        self.num_feature_levels = 3 if t.use_high_res_features_in_sam else 1

        # Part 1: image backbone (Hiera trunk + FPN neck).
        self.image_encoder = build_image_encoder(cfg)
        if t.use_obj_ptrs_in_encoder:
            # Turns a 0/1 mask at S x S into S/4 logits so a mask prompt can yield a pointer.
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        # Part 2 / 3: memory attention and memory encoder.
        self.memory_attention = MemoryAttention.from_config(cfg)
        self.memory_encoder = MemoryEncoder.from_config(cfg)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(t.num_maskmem, 1, 1, self.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc):
            trunc_normal_(p, std=0.02)
        if t.pred_obj_scores and t.use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, self.hidden_dim))
            trunc_normal_(self.no_obj_ptr, std=0.02)
        self.no_obj_embed_spatial: Optional[nn.Parameter] = None
        if t.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, self.mem_dim))
            trunc_normal_(self.no_obj_embed_spatial, std=0.02)

        # Part 4: SAM prompt encoder and mask decoder, then the pointer projections.
        self.sam_prompt_encoder, self.sam_mask_decoder = build_sam_heads(cfg)
        self.obj_ptr_proj: nn.Module = nn.Identity()
        if t.use_obj_ptrs_in_encoder:
            self.obj_ptr_proj = (MLP(self.hidden_dim, self.hidden_dim, self.hidden_dim, 3)
                                 if t.use_mlp_for_obj_ptr_proj
                                 else nn.Linear(self.hidden_dim, self.hidden_dim))
        self.obj_ptr_tpos_proj: nn.Module = (nn.Linear(self.hidden_dim, self.mem_dim)
                                             if t.proj_tpos_enc_in_obj_ptrs else nn.Identity())

    # ------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    def compile_modules(self, mode: Optional[str] = "max-autotune-no-cudagraphs",
                        backend: str = "inductor") -> "SAM2Model":
        """Opt-in ``torch.compile`` of the image encoder, memory attention and mask decoder.

        Compiles the bound ``forward`` functions (not the modules), so state-dict names and
        checkpoint loading are unchanged. Nothing is compiled unless this is called. The first
        calls after it are slow (compilation); shapes are treated as static. ``mode`` only
        applies to the inductor backend. Returns ``self``.
        """
        kwargs: Dict[str, Any] = {"backend": backend, "dynamic": False}
        if backend == "inductor" and mode is not None:
            kwargs["mode"] = mode
        for mod in (self.image_encoder, self.memory_attention, self.sam_mask_decoder):
            mod.forward = torch.compile(mod.forward, **kwargs)  # type: ignore[method-assign]
        return self

    # ------------------------------------------------------------------ image features
    def forward_image(self, img_batch: Tensor) -> Dict[str, Any]:
        """Run the image encoder on ``(B, 3, S, S)`` normalised images.

        Returns upstream's dict: ``vision_features`` ``(B, C, S/16, S/16)``, ``vision_pos_enc``
        and ``backbone_fpn`` (lists from fine to coarse: S/4, S/8, S/16). With high-res features
        the two finer FPN levels are already projected by the decoder's ``conv_s0`` (C/8 ch) and
        ``conv_s1`` (C/4 ch), so repeated prompts do not recompute them.
        """
        out = self.image_encoder(img_batch)
        if self.use_high_res_features_in_sam:
            fpn = list(out["backbone_fpn"])
            fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
            out["backbone_fpn"] = fpn
        return out

    def _prepare_backbone_features(
        self, backbone_out: Dict[str, Any]
    ) -> Tuple[Dict[str, Any], List[Tensor], List[Tensor], List[Tuple[int, int]]]:
        """Flatten the last ``num_feature_levels`` levels to sequence-first ``(HW, B, C)``.

        Returns ``(backbone_out copy, vision_feats, vision_pos_embeds, feat_sizes)``.
        """
        backbone_out = dict(backbone_out)
        fpn, pos = backbone_out["backbone_fpn"], backbone_out["vision_pos_enc"]
        if len(fpn) != len(pos) or len(fpn) < self.num_feature_levels:
            raise ValueError(
                f"backbone output has {len(fpn)} feature and {len(pos)} position levels; "
                f"need {self.num_feature_levels} of each")
        fpn, pos = fpn[-self.num_feature_levels:], pos[-self.num_feature_levels:]
        feat_sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in pos]
        vision_feats = [x.flatten(2).permute(2, 0, 1) for x in fpn]
        vision_pos = [x.flatten(2).permute(2, 0, 1) for x in pos]
        return backbone_out, vision_feats, vision_pos, feat_sizes

    # ------------------------------------------------------------------ SAM heads
    def _forward_sam_heads(
        self,
        backbone_features: Tensor,
        point_inputs: Optional[Dict[str, Tensor]] = None,
        mask_inputs: Optional[Tensor] = None,
        high_res_features: Optional[List[Tensor]] = None,
        multimask_output: bool = False,
    ) -> SamOutputs:
        """Prompt encoder + mask decoder on ``(B, C, H, W)`` (memory-conditioned) features.

        Args:
            backbone_features: ``(B, C, S/16, S/16)``.
            point_inputs: see the module docstring; ``None`` adds one padding point.
            mask_inputs: ``(B, 1, h, w)`` mask prompt (logits); resized to ``S/4`` with
                antialiased bilinear if needed.
            high_res_features: ``[(B, C/8, S/4, S/4), (B, C/4, S/8, S/8)]`` or ``None``.
            multimask_output: ask for 3 masks and keep the best by predicted IoU.

        Returns:
            ``(low_res_multimasks (B,M,S/4,S/4), high_res_multimasks (B,M,S,S), ious (B,M),
            low_res_masks (B,1,S/4,S/4), high_res_masks (B,1,S,S), obj_ptr (B,C),
            object_score_logits (B,1))``. Masks are float32 and, with object-score prediction,
            set to -1024 wherever the object score is <= 0 (a hard "no object").
        """
        b, c, h, w = backbone_features.shape
        device = backbone_features.device
        n = self.sam_image_embedding_size
        if c != self.sam_prompt_embed_dim or h != n or w != n:
            raise ValueError(f"expected backbone features (B, {self.sam_prompt_embed_dim}, {n}, "
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
                raise ValueError(f"mask prompt must be ({b}, 1, h, w), got "
                                 f"{tuple(mask_inputs.shape)}")
            size = tuple(getattr(self.sam_prompt_encoder, "mask_input_size", (4 * n, 4 * n)))
            mask_prompt = mask_inputs
            if tuple(mask_inputs.shape[-2:]) != size:
                mask_prompt = F.interpolate(mask_inputs.float(), size=size, mode="bilinear",
                                            align_corners=False, antialias=True)

        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), boxes=None,
                                                masks=mask_prompt)
        low_res_multimasks, ious, sam_tokens, object_score_logits = self.sam_mask_decoder(
            image_embeddings=backbone_features,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=False,
            high_res_features=high_res_features,
        )
        is_obj = object_score_logits > 0
        if self.pred_obj_scores:
            # Masks (and so the spatial memories) make a hard object / no-object choice.
            low_res_multimasks = torch.where(is_obj[:, None, None], low_res_multimasks,
                                             NO_OBJ_SCORE)
        low_res_multimasks = low_res_multimasks.float()
        high_res_multimasks = F.interpolate(low_res_multimasks, size=(self.image_size,) * 2,
                                            mode="bilinear", align_corners=False)

        token = sam_tokens[:, 0]
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(b, device=device)
            low_res_masks = low_res_multimasks[rows, best].unsqueeze(1)
            high_res_masks = high_res_multimasks[rows, best].unsqueeze(1)
            if sam_tokens.size(1) > 1:
                token = sam_tokens[rows, best]
        else:
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks

        obj_ptr = self.obj_ptr_proj(token)
        if self.pred_obj_scores:
            lam = object_score_logits.sigmoid() if self.soft_no_obj_ptr else is_obj.float()
            if self.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * self.no_obj_ptr
        return (low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks,
                obj_ptr, object_score_logits)

    def _use_mask_as_output(self, backbone_features: Tensor,
                            high_res_features: Optional[List[Tensor]],
                            mask_inputs: Tensor) -> SamOutputs:
        """Take a 0/1 mask prompt ``(B, 1, S, S)`` as the output (logits -10/+10).

        The low-res mask is the antialiased bilinear ``/4`` of the high-res logits; IoU is 1;
        the object score is +10 if the mask has any positive pixel, else -10. The pointer comes
        from the SAM heads prompted only with ``mask_downsample(mask)`` on ``backbone_features``.
        """
        scale, bias = 20.0, -10.0
        m = mask_inputs.float()
        high = m * scale + bias
        low = F.interpolate(high, size=(high.size(-2) // 4, high.size(-1) // 4),
                            mode="bilinear", align_corners=False, antialias=True)
        ious = mask_inputs.new_ones(mask_inputs.size(0), 1).float()
        if not self.use_obj_ptrs_in_encoder:
            obj_ptr = torch.zeros(mask_inputs.size(0), self.hidden_dim, device=mask_inputs.device)
        else:
            obj_ptr = self._forward_sam_heads(
                backbone_features, mask_inputs=self.mask_downsample(m),
                high_res_features=high_res_features)[5]
        # The mask, not the decoder's score, decides whether the object is present here.
        lam = torch.any(m.flatten(1) > 0.0, dim=1)[..., None].float()
        object_score_logits = scale * lam + bias
        if self.pred_obj_scores:
            if self.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * self.no_obj_ptr
        return low, high, ious, low, high, obj_ptr, object_score_logits

    # ------------------------------------------------------------------ memory encoding
    def _encode_new_memory(
        self,
        current_vision_feats: List[Tensor],
        feat_sizes: List[Tuple[int, int]],
        pred_masks_high_res: Tensor,
        object_score_logits: Tensor,
        is_mask_from_pts: bool,
    ) -> Tuple[Tensor, List[Tensor]]:
        """Encode a frame and its predicted masks into a spatial memory.

        Uses the frame's *raw* stride-16 features (``current_vision_feats[-1]``, ``(HW, B, C)``),
        not the memory-conditioned ones. Masks ``(B, 1, S, S)`` logits become
        ``sigmoid(.)`` (or ``> 0`` on point-prompted frames with
        ``binarize_mask_from_pts_for_mem_enc`` in eval), then ``* 20 - 10``. With
        ``no_obj_embed_spatial`` (2.1) that embedding is added where the object score is <= 0.

        Returns:
            ``(maskmem_features (B, mem_dim, H, W), [maskmem_pos_enc (B, mem_dim, H, W)])``.
        """
        b = current_vision_feats[-1].size(1)
        h, w = feat_sizes[-1]
        pix_feat = current_vision_feats[-1].permute(1, 2, 0).reshape(b, self.hidden_dim, h, w)
        masks = pred_masks_high_res
        if self.non_overlap_masks_for_mem_enc and not self.training:
            masks = apply_non_overlapping_constraints(masks)
        if self.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts and not self.training:
            mask_for_mem = (masks > 0).float()
        else:
            mask_for_mem = torch.sigmoid(masks)
        if self.sigmoid_scale_for_mem_enc != 1.0:
            mask_for_mem = mask_for_mem * self.sigmoid_scale_for_mem_enc
        if self.sigmoid_bias_for_mem_enc != 0.0:
            mask_for_mem = mask_for_mem + self.sigmoid_bias_for_mem_enc
        out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        feats, pos = out["vision_features"], out["vision_pos_enc"]
        if self.no_obj_embed_spatial is not None:
            absent = 1 - (object_score_logits > 0).float()
            emb = absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
            # Keep the encoder's dtype (bf16 under autocast), as upstream's in-place add does.
            feats = (feats + emb).to(feats.dtype)
        return feats, pos

    def apply_non_overlapping_constraints(self, pred_masks: Tensor) -> Tensor:
        """Per pixel, keep only the top object's logit of ``(N, 1, H, W)`` logits; clamp the
        others to <= -10."""
        return apply_non_overlapping_constraints(pred_masks)

    _apply_non_overlapping_constraints = apply_non_overlapping_constraints  # upstream's name

    # ------------------------------------------------------------------ memory conditioning
    def _prepare_memory_conditioned_features(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        current_vision_feats: List[Tensor],
        current_vision_pos_embeds: List[Tensor],
        feat_sizes: List[Tuple[int, int]],
        output_dict: Dict[str, Dict[int, Dict[str, Any]]],
        num_frames: Optional[int],
        track_in_reverse: bool = False,
    ) -> Tensor:
        """Fuse the current frame's stride-16 features with the memory bank.

        On an initial conditioning frame there is no memory: ``no_mem_embed`` is added to the
        features. Otherwise the spatial memories (conditioning frames at temporal slot 0, the
        ``num_maskmem - 1`` previous frames after them) and up to
        ``min(num_frames, max_obj_ptrs_in_encoder)`` object pointers (each split into
        ``C / mem_dim`` tokens, with a sine temporal encoding of ``distance / (max_ptrs - 1)``)
        are cross-attended by :class:`MemoryAttention`.

        ``output_dict`` holds ``cond_frame_outputs`` / ``non_cond_frame_outputs`` dicts
        ``{frame: {"maskmem_features" (B, mem_dim, H, W), "maskmem_pos_enc" [(B, mem_dim, H, W)],
        "obj_ptr" (B, C), ...}}``. Stored memories may be in another dtype (upstream's video
        predictor keeps bf16) or on another device; they are brought to the current features'
        device and to the promoted dtype of all memory pieces and the current features (what
        ``torch.cat`` does upstream when pointers are present, so a memory without pointers
        does not hit fp32 weights with bf16 input). ``num_frames=None`` (an open-ended stream)
        allows ``max_obj_ptrs_in_encoder`` pointers.

        Returns:
            ``(B, C, H, W)`` memory-conditioned features.
        """
        x = current_vision_feats[-1]
        b, c = x.size(1), self.hidden_dim
        h, w = feat_sizes[-1]
        device = x.device
        if self.num_maskmem == 0:  # SAM-on-images mode: no memory at all
            return x.permute(1, 2, 0).reshape(b, c, h, w)

        if is_init_cond_frame:
            if self.directly_add_no_mem_embed:
                return (x + self.no_mem_embed).permute(1, 2, 0).reshape(b, c, h, w)
            # A dummy memory token so the memory attention never sees an empty memory.
            mems = [self.no_mem_embed.expand(1, b, self.mem_dim)]
            poss = [self.no_mem_pos_enc.expand(1, b, self.mem_dim)]
            num_ptr_tokens = 0
        else:
            if not output_dict["cond_frame_outputs"]:
                raise RuntimeError(
                    f"frame {frame_idx} is tracked from memory, but no conditioning frame "
                    "(a prompted frame) has been stored in output_dict['cond_frame_outputs']")
            stride = 1 if self.training else self.memory_temporal_stride_for_eval
            memories, selected, unselected = select_spatial_memories(
                frame_idx, output_dict, self.num_maskmem, self.max_cond_frames_in_attn, stride,
                track_in_reverse)
            mems, poss = [], []
            for t_pos, prev in memories:
                if prev.get("maskmem_features") is None:
                    continue  # a frame whose memory was never encoded
                feats = prev["maskmem_features"].to(device, non_blocking=True)
                mems.append(feats.flatten(2).permute(2, 0, 1))
                pos = prev["maskmem_pos_enc"][-1].to(device).flatten(2).permute(2, 0, 1)
                poss.append(pos + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1])

            num_ptr_tokens = 0
            if self.use_obj_ptrs_in_encoder:
                pointer_memory = object_pointer_memory(
                    self, frame_idx, selected, unselected, output_dict["non_cond_frame_outputs"],
                    num_frames, track_in_reverse, b, device)
                if pointer_memory is not None:
                    ptrs, ptr_pos = pointer_memory
                    mems.append(ptrs)
                    poss.append(ptr_pos)
                    num_ptr_tokens = ptrs.shape[0]
            if not mems:
                raise RuntimeError(f"no memory (spatial or pointer) is available for frame "
                                   f"{frame_idx}; were the prompted frames memory-encoded?")

        dtype = x.dtype
        for t in mems + poss:
            dtype = torch.promote_types(dtype, t.dtype)
        memory = torch.cat([t.to(dtype) for t in mems], dim=0)
        memory_pos = torch.cat([t.to(dtype) for t in poss], dim=0)
        out = self.memory_attention(
            curr=current_vision_feats, curr_pos=current_vision_pos_embeds, memory=memory,
            memory_pos=memory_pos, num_obj_ptr_tokens=num_ptr_tokens)
        return out.permute(1, 2, 0).reshape(b, c, h, w)

    # ------------------------------------------------------------------ tracking
    def _use_multimask(self, is_init_cond_frame: bool,
                       point_inputs: Optional[Dict[str, Tensor]]) -> bool:
        """Multimask output for 0..1 clicks on initial frames (and on tracked frames)."""
        num_pts = 0 if point_inputs is None else point_inputs["point_labels"].size(1)
        return bool(self.multimask_output_in_sam
                    and (is_init_cond_frame or self.multimask_output_for_tracking)
                    and self.multimask_min_pt_num <= num_pts <= self.multimask_max_pt_num)

    def _track_step(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        current_vision_feats: List[Tensor],
        current_vision_pos_embeds: List[Tensor],
        feat_sizes: List[Tuple[int, int]],
        point_inputs: Optional[Dict[str, Tensor]],
        mask_inputs: Optional[Tensor],
        output_dict: Dict[str, Dict[int, Dict[str, Any]]],
        num_frames: Optional[int],
        track_in_reverse: bool,
        prev_sam_mask_logits: Optional[Tensor],
    ) -> Tuple[Dict[str, Any], SamOutputs, Optional[List[Tensor]], Tensor]:
        """One frame's SAM outputs; returns ``(current_out, sam_outputs, high_res_features,
        pix_feat)`` where ``current_out`` holds the prompts."""
        current_out: Dict[str, Any] = {"point_inputs": point_inputs, "mask_inputs": mask_inputs}
        high_res_features = None
        if len(current_vision_feats) > 1:
            high_res_features = [
                f.permute(1, 2, 0).reshape(f.size(1), f.size(2), *s)
                for f, s in zip(current_vision_feats[:-1], feat_sizes[:-1])]
        if mask_inputs is not None and self.use_mask_input_as_output_without_sam:
            x = current_vision_feats[-1]
            pix_feat = x.permute(1, 2, 0).reshape(x.size(1), self.hidden_dim, *feat_sizes[-1])
            sam_outputs = self._use_mask_as_output(pix_feat, high_res_features, mask_inputs)
        else:
            pix_feat = self._prepare_memory_conditioned_features(
                frame_idx=frame_idx, is_init_cond_frame=is_init_cond_frame,
                current_vision_feats=current_vision_feats[-1:],
                current_vision_pos_embeds=current_vision_pos_embeds[-1:],
                feat_sizes=feat_sizes[-1:], output_dict=output_dict, num_frames=num_frames,
                track_in_reverse=track_in_reverse)
            if prev_sam_mask_logits is not None:
                # Earlier logits of this frame come back as the mask prompt with new clicks.
                if point_inputs is None or mask_inputs is not None:
                    raise ValueError("prev_sam_mask_logits needs point inputs and no mask input")
                mask_inputs = prev_sam_mask_logits
            sam_outputs = self._forward_sam_heads(
                pix_feat, point_inputs=point_inputs, mask_inputs=mask_inputs,
                high_res_features=high_res_features,
                multimask_output=self._use_multimask(is_init_cond_frame, point_inputs))
        return current_out, sam_outputs, high_res_features, pix_feat

    def _encode_memory_in_output(
        self,
        current_vision_feats: List[Tensor],
        feat_sizes: List[Tuple[int, int]],
        point_inputs: Optional[Dict[str, Tensor]],
        run_mem_encoder: bool,
        high_res_masks: Tensor,
        object_score_logits: Tensor,
        current_out: Dict[str, Any],
    ) -> None:
        """Fill ``maskmem_features`` / ``maskmem_pos_enc`` of ``current_out`` (or ``None``)."""
        if run_mem_encoder and self.num_maskmem > 0:
            feats, pos = self._encode_new_memory(
                current_vision_feats, feat_sizes, high_res_masks, object_score_logits,
                is_mask_from_pts=point_inputs is not None)
            current_out["maskmem_features"], current_out["maskmem_pos_enc"] = feats, pos
        else:
            current_out["maskmem_features"] = current_out["maskmem_pos_enc"] = None

    def track_step(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        current_vision_feats: List[Tensor],
        current_vision_pos_embeds: List[Tensor],
        feat_sizes: List[Tuple[int, int]],
        point_inputs: Optional[Dict[str, Tensor]],
        mask_inputs: Optional[Tensor],
        output_dict: Dict[str, Dict[int, Dict[str, Any]]],
        num_frames: Optional[int],
        track_in_reverse: bool = False,
        run_mem_encoder: bool = True,
        prev_sam_mask_logits: Optional[Tensor] = None,
    ) -> Dict[str, Any]:
        """Segment one frame for a batch of ``B`` objects and (optionally) encode its memory.

        Args:
            frame_idx: index of this frame in the video.
            is_init_cond_frame: the first prompted frame of these objects (no memory read).
            current_vision_feats / current_vision_pos_embeds / feat_sizes: from
                :meth:`_prepare_backbone_features` (features expanded to ``B`` objects).
            point_inputs: clicks/box corners in model-input pixels, or ``None``.
            mask_inputs: ``(B, 1, S, S)`` 0/1 mask prompt, or ``None``.
            output_dict: the memory bank (see :meth:`_prepare_memory_conditioned_features`).
            num_frames: video length (sets the pointer count and temporal scale); ``None`` for
                an open-ended stream.
            track_in_reverse: tracking backwards in time.
            run_mem_encoder: also compute this frame's memory.
            prev_sam_mask_logits: ``(B, 1, S/4, S/4)`` earlier logits used as the mask prompt
                together with new clicks.

        Returns:
            ``{"point_inputs", "mask_inputs", "pred_masks" (B,1,S/4,S/4),
            "pred_masks_high_res" (B,1,S,S), "obj_ptr" (B,C), "object_score_logits" (B,1),
            "maskmem_features" (B,mem_dim,H,W) | None, "maskmem_pos_enc" [..] | None}``.
            Unlike upstream, ``object_score_logits`` is also returned in training mode.
        """
        current_out, sam_outputs, _, _ = self._track_step(
            frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds,
            feat_sizes, point_inputs, mask_inputs, output_dict, num_frames, track_in_reverse,
            prev_sam_mask_logits)
        _, _, _, low_res_masks, high_res_masks, obj_ptr, object_score_logits = sam_outputs
        current_out["pred_masks"] = low_res_masks
        current_out["pred_masks_high_res"] = high_res_masks
        current_out["obj_ptr"] = obj_ptr
        current_out["object_score_logits"] = object_score_logits
        self._encode_memory_in_output(current_vision_feats, feat_sizes, point_inputs,
                                      run_mem_encoder, high_res_masks, object_score_logits,
                                      current_out)
        return current_out

    # ------------------------------------------------------------------ training forward
    def forward(
        self,
        images: Tensor,
        point_coords: Optional[Tensor] = None,
        point_labels: Optional[Tensor] = None,
        boxes: Optional[Tensor] = None,
        mask_inputs: Optional[Tensor] = None,
        multimask_output: bool = False,
    ) -> Dict[str, Tensor]:
        """Differentiable single-frame segmentation (for fine-tuning on images).

        The frame is treated as an initial conditioning frame (features + ``no_mem_embed``, no
        memory), as upstream's ``SAM2Train`` does for image samples; masks are gated to -1024
        where the object score is <= 0, as in tracking.

        Args:
            images: ``(B, 3, S, S)`` float, ImageNet-normalised.
            point_coords: ``(B, N, 2)`` float xy in model-input pixels (0..S), or ``None``.
            point_labels: ``(B, N)`` int (1 positive, 0 negative, -1 padding).
            boxes: ``(B, 4)`` float xyxy in model-input pixels; becomes two corner points with
                labels 2 and 3 placed before the clicks.
            mask_inputs: ``(B, 1, S/4, S/4)`` logits from an earlier step (or any size: resized).
            multimask_output: return 3 candidate masks instead of 1.

        Returns:
            ``{"low_res_masks" (B,M,S/4,S/4), "high_res_masks" (B,M,S,S), "iou_pred" (B,M),
            "object_score_logits" (B,1), "obj_ptr" (B,C)}`` with ``M = 3`` if
            ``multimask_output`` else 1 (all candidates, not only the best).
        """
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (self.image_size,) * 2:
            raise ValueError(f"images must be (B, 3, {self.image_size}, {self.image_size}), got "
                             f"{tuple(images.shape)}")
        b = images.shape[0]
        point_inputs = prompts_to_point_inputs(b, point_coords, point_labels, boxes)
        backbone_out = self.forward_image(images)
        _, feats, pos, sizes = self._prepare_backbone_features(backbone_out)
        high_res = None
        if len(feats) > 1:
            high_res = [f.permute(1, 2, 0).reshape(b, f.size(2), *s)
                        for f, s in zip(feats[:-1], sizes[:-1])]
        pix_feat = self._prepare_memory_conditioned_features(
            0, True, feats[-1:], pos[-1:], sizes[-1:],
            {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}, num_frames=1)
        low, high, ious, _, _, obj_ptr, score = self._forward_sam_heads(
            pix_feat, point_inputs=point_inputs, mask_inputs=mask_inputs,
            high_res_features=high_res, multimask_output=multimask_output)
        return {"low_res_masks": low, "high_res_masks": high, "iou_pred": ious,
                "object_score_logits": score, "obj_ptr": obj_ptr}
