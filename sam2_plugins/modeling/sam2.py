"""The SAM 2 / 2.1 model: image encoder, SAM heads, memory attention and memory encoder.

:class:`SAM2Model` mirrors upstream ``SAM2Base``: the same submodule and parameter names (so
official ``{"model": state_dict}`` files load with ``strict=True``), every tracking flag as an
attribute of the same name, and the same methods with the same signatures, return conventions
and numerics. Unlike upstream it is built from a typed :class:`~sam2_plugins.configs.SAM2Config`,
``forward`` trains on single frames, and the tracking step is public:

* :meth:`encode_image` / :meth:`prepare_backbone_features`: image features;
* :meth:`build_memory` + :meth:`condition_on_memory`: memory attention;
* :meth:`decode_masks` + :meth:`select_masks` (= :meth:`sam_heads`), :meth:`mask_as_output`;
* :meth:`encode_memory`: a frame's new spatial memory.

Upstream's underscored names (``_forward_sam_heads``, ``_encode_new_memory``, ...) are kept as
aliases for code written against upstream. Which memories a frame reads, and the per-frame step
that strings these together, live in the tracking engine
(:mod:`sam2_plugins.predictors.video.step`); :meth:`track_step` runs it on upstream's dicts.

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
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from ..configs import SAM2Config
from . import sam_heads as heads  # noqa: I001  (the module; SAM2Model.sam_heads is the method)
from .common import MLP
from .image_encoder import build_image_encoder
from .mask_decoder import build_sam_heads
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .memory_tokens import MemoryTokens, build_memory, condition_on_memory
from .rules import NO_OBJ_SCORE, apply_non_overlapping_constraints, prompts_to_point_inputs, use_multimask
from .sam_heads import Candidates, SamOutputs

__all__ = ["SAM2Model", "NO_OBJ_SCORE", "SamOutputs", "Candidates", "MemoryTokens"]


class SAM2Model(nn.Module):
    """SAM 2 / 2.1 as one ``nn.Module`` (checkpoint-compatible with upstream ``SAM2Base``).

    Args:
        cfg: the model description (see :func:`sam2_plugins.configs.get_config`).

    Everything is differentiable; predictors wrap calls in ``torch.inference_mode()``.
    """

    # The TrackingConfig flags, copied onto the model in __init__ (upstream's attributes).
    num_maskmem: int
    sigmoid_scale_for_mem_enc: float
    sigmoid_bias_for_mem_enc: float
    binarize_mask_from_pts_for_mem_enc: bool
    use_mask_input_as_output_without_sam: bool
    max_cond_frames_in_attn: int
    directly_add_no_mem_embed: bool
    use_high_res_features_in_sam: bool
    multimask_output_in_sam: bool
    multimask_min_pt_num: int
    multimask_max_pt_num: int
    multimask_output_for_tracking: bool
    use_multimask_token_for_obj_ptr: bool
    iou_prediction_use_sigmoid: bool
    memory_temporal_stride_for_eval: int
    non_overlap_masks_for_mem_enc: bool
    use_obj_ptrs_in_encoder: bool
    max_obj_ptrs_in_encoder: int
    add_tpos_enc_to_obj_ptrs: bool
    proj_tpos_enc_in_obj_ptrs: bool
    use_signed_tpos_enc_to_obj_ptrs: bool
    only_obj_ptrs_in_the_past_for_eval: bool
    pred_obj_scores: bool
    pred_obj_scores_mlp: bool
    fixed_no_obj_ptr: bool
    soft_no_obj_ptr: bool
    use_mlp_for_obj_ptr_proj: bool
    fill_hole_area: int

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
        mods: Tuple[nn.Module, ...] = (self.image_encoder, self.memory_attention, self.sam_mask_decoder)
        for mod in mods:
            mod.forward = torch.compile(mod.forward, **kwargs)
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

    def prepare_backbone_features(
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

    _prepare_backbone_features = prepare_backbone_features  # upstream's name

    # ------------------------------------------------------------------ SAM heads
    def decode_masks(self, backbone_features: Tensor, point_inputs: Optional[Dict[str, Tensor]] = None,
                     mask_inputs: Optional[Tensor] = None, high_res_features: Optional[List[Tensor]] = None,
                     multimask_output: bool = False, object_threshold: float = 0.0) -> Candidates:
        """Prompt encoder + mask decoder: the candidate masks (see :func:`.sam_heads.decode`)."""
        return heads.decode(self, backbone_features, point_inputs, mask_inputs, high_res_features,
                                multimask_output, object_threshold)

    def select_masks(self, candidates: Candidates, choice: Optional[Tensor] = None,
                     object_threshold: float = 0.0) -> SamOutputs:
        """Keep one candidate per row (``choice`` (B,) or the best predicted IoU) and compute its
        object pointer (see :func:`.sam_heads.select`)."""
        return heads.select(self, candidates, choice, object_threshold)

    def sam_heads(self, backbone_features: Tensor, point_inputs: Optional[Dict[str, Tensor]] = None,
                  mask_inputs: Optional[Tensor] = None, high_res_features: Optional[List[Tensor]] = None,
                  multimask_output: bool = False) -> SamOutputs:
        """Prompt encoder + mask decoder on ``(B, C, H, W)`` (memory-conditioned) features.

        Args:
            backbone_features: ``(B, C, S/16, S/16)``.
            point_inputs: see the module docstring; ``None`` adds one padding point.
            mask_inputs: ``(B, 1, h, w)`` mask prompt (logits); resized to ``S/4`` with
                antialiased bilinear if needed.
            high_res_features: ``[(B, C/8, S/4, S/4), (B, C/4, S/8, S/8)]`` or ``None``.
            multimask_output: ask for 3 masks and keep the best by predicted IoU.

        Returns:
            :class:`SamOutputs`: ``(low_res_multimasks (B,M,S/4,S/4), high_res_multimasks
            (B,M,S,S), ious (B,M), low_res_masks (B,1,S/4,S/4), high_res_masks (B,1,S,S),
            obj_ptr (B,C), object_score_logits (B,1))``. Masks are float32 and, with object-score
            prediction, set to -1024 wherever the object score is <= 0 (a hard "no object").
        """
        return self.select_masks(self.decode_masks(backbone_features, point_inputs, mask_inputs,
                                                   high_res_features, multimask_output))

    _forward_sam_heads = sam_heads  # upstream's name

    def mask_as_output(self, backbone_features: Tensor, high_res_features: Optional[List[Tensor]],
                       mask_inputs: Tensor) -> SamOutputs:
        """A 0/1 mask prompt ``(B, 1, S, S)`` taken as the output (see :func:`.sam_heads.mask_as_output`)."""
        return heads.mask_as_output(self, backbone_features, high_res_features, mask_inputs)

    _use_mask_as_output = mask_as_output  # upstream's name

    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """Whether the decoder returns 3 candidates here (:func:`.rules.use_multimask`)."""
        return use_multimask(self, is_init_cond_frame, num_points)

    def _use_multimask(self, is_init_cond_frame: bool, point_inputs: Optional[Dict[str, Tensor]]) -> bool:
        """Upstream's signature of :meth:`use_multimask`."""
        n = 0 if point_inputs is None else int(point_inputs["point_labels"].size(1))
        return self.use_multimask(is_init_cond_frame, n)

    # ------------------------------------------------------------------ memory
    def encode_memory(
        self,
        current_vision_feats: List[Tensor],
        feat_sizes: List[Tuple[int, int]],
        pred_masks_high_res: Tensor,
        object_score_logits: Tensor,
        is_mask_from_pts: bool,
        binarize: Optional[bool] = None,
    ) -> Tuple[Tensor, List[Tensor]]:
        """Encode a frame and its predicted masks into a spatial memory.

        Uses the frame's *raw* stride-16 features (``current_vision_feats[-1]``, ``(HW, B, C)``),
        not the memory-conditioned ones. Masks ``(B, 1, S, S)`` logits become ``sigmoid(.)`` (or
        ``> 0`` on point-prompted frames when binarising, in eval), then ``* 20 - 10``. With
        ``no_obj_embed_spatial`` (2.1) that embedding is added where the object score is <= 0.

        Args:
            binarize: binarise masks from prompted frames (``is_mask_from_pts``); None follows
                the model's ``binarize_mask_from_pts_for_mem_enc`` (upstream's video builder
                turns it on; our predictors pass their own setting).

        Returns:
            ``(maskmem_features (B, mem_dim, H, W), [maskmem_pos_enc (B, mem_dim, H, W)])``.
        """
        b = current_vision_feats[-1].size(1)
        h, w = feat_sizes[-1]
        pix_feat = current_vision_feats[-1].permute(1, 2, 0).reshape(b, self.hidden_dim, h, w)
        masks = pred_masks_high_res
        if self.non_overlap_masks_for_mem_enc and not self.training:
            masks = apply_non_overlapping_constraints(masks)
        if binarize is None:
            binarize = self.binarize_mask_from_pts_for_mem_enc
        if binarize and is_mask_from_pts and not self.training:
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

    _encode_new_memory = encode_memory  # upstream's name

    def build_memory(self, spatial: Sequence[Tuple[int, Tensor, Tensor]], ptrs: Optional[Tensor],
                     t_diffs: Sequence[int], num_frames: Optional[int], batch: int,
                     dtype: torch.dtype) -> Optional[MemoryTokens]:
        """Memory tokens from chosen spatial memories and pointers (see :func:`.memory_tokens.build_memory`)."""
        return build_memory(self, spatial, ptrs, t_diffs, num_frames, batch, dtype)

    def condition_on_memory(self, curr: Tensor, curr_pos: Tensor, feat_size: Tuple[int, int],
                            memory: Optional[MemoryTokens], is_init_cond_frame: bool) -> Tensor:
        """Memory attention: ``(HW, B, C)`` features -> ``(B, C, H, W)`` conditioned features
        (see :func:`.memory_tokens.condition_on_memory`)."""
        return condition_on_memory(self, curr, curr_pos, feat_size, memory, is_init_cond_frame)

    def apply_non_overlapping_constraints(self, pred_masks: Tensor) -> Tensor:
        """Per pixel, keep only the top object's logit of ``(N, 1, H, W)`` logits; clamp the
        others to <= -10."""
        return apply_non_overlapping_constraints(pred_masks)

    _apply_non_overlapping_constraints = apply_non_overlapping_constraints  # upstream's name

    # ------------------------------------------------------------------ upstream's tracking API
    # Upstream's dict-based entry points run the same engine as the predictors: the engine's
    # memory bank reads upstream's ``output_dict`` in place.
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
        """Fuse the current frame's stride-16 features with the memory in ``output_dict``
        (``{"cond_frame_outputs": {t: out}, "non_cond_frame_outputs": {t: out}}``, upstream's
        layout). Returns ``(B, C, H, W)`` memory-conditioned features."""
        from ..predictors.video.upstream_api import prepare_memory_conditioned_features

        return prepare_memory_conditioned_features(
            self, frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds,
            feat_sizes, output_dict, num_frames, track_in_reverse)

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
        """Segment one frame for ``B`` objects and (optionally) encode its memory: upstream's
        entry point and semantics, run by the tracking engine (see
        :func:`sam2_plugins.predictors.video.upstream_api.track_step` for the arguments and the
        returned dict). Unlike upstream, ``object_score_logits`` is also returned in training.
        """
        from ..predictors.video.upstream_api import track_step

        return track_step(self, frame_idx, is_init_cond_frame, current_vision_feats,
                          current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs, output_dict,
                          num_frames, track_in_reverse, run_mem_encoder, prev_sam_mask_logits)

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
        _, feats, pos, sizes = self.prepare_backbone_features(self.forward_image(images))
        high_res = None
        if len(feats) > 1:
            high_res = [f.permute(1, 2, 0).reshape(b, f.size(2), *s)
                        for f, s in zip(feats[:-1], sizes[:-1])]
        pix_feat = self.condition_on_memory(feats[-1], pos[-1], sizes[-1], None, is_init_cond_frame=True)
        out = self.sam_heads(pix_feat, point_inputs=point_inputs, mask_inputs=mask_inputs,
                             high_res_features=high_res, multimask_output=multimask_output)
        return {"low_res_masks": out.low_res_multimasks, "high_res_masks": out.high_res_multimasks,
                "iou_pred": out.ious, "object_score_logits": out.object_score_logits,
                "obj_ptr": out.obj_ptr}
