"""The per-frame step shared by the video predictor and the streaming session.

Upstream's predictor runs every object through ``track_step`` with batch size 1 (cost
E + M·n). Here the objects tracked on a frame go through the heavy parts together:

* image encoder: once per frame (cached by :class:`~sam2_plugins.predictors.video.frames.FrameFeed`);
* memory attention: objects whose memories have the same token layout (number of spatial
  memories and of pointer tokens) are one batch; the memories themselves, their temporal
  encodings and pointer positions stay per object, so semantics are exactly per object
  (objects prompted on different frames, added later, or removed keep their own memory);
* mask decoder and memory encoder: one batch of all tracked objects.

The model can be our ``SAM2Model`` or upstream's ``SAM2Base`` (same method names). Only the
memory assembly is written here: it casts stored (bf16) memories to the compute dtype at use,
so a memory made only of spatial features (no pointers yet) does not meet fp32 weights in
bf16, the case where upstream crashes on CPU.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .bank import MemoryBank
from .frames import FrameFeatures
from .state import FrameOutput, PointInputs

__all__ = ["Tracker", "get_1d_sine_pe", "MEMORY_DTYPE", "tracking_autocast",
           "AUTO_BF16_MIN_IMAGE_SIZE"]

MEMORY_DTYPE = torch.bfloat16
"""Stored spatial memories are bf16, as upstream stores them (needed for parity)."""


#: ``dtype="auto"`` on a CPU picks bf16 only from this input size up: below it (e.g. the demo
#: model's 256² grid of 16 x 16 tokens) the memory attention is small, autocast's casts cost
#: as much as bf16 saves, and float32 keeps upstream's numerics for free.
AUTO_BF16_MIN_IMAGE_SIZE = 512


def tracking_autocast(device: torch.device, dtype: Any,
                      image_size: Optional[int] = None) -> ContextManager:
    """The autocast context the video predictor and the session run their steps in.

    ``dtype``: None / ``"fp32"`` (off: float32, upstream's numerics), ``"bf16"`` /
    ``torch.bfloat16`` (bf16 autocast), or ``"auto"``: bf16 on CUDA GPUs that support it and on
    CPUs with native bf16 dot products (AVX512-BF16 / AMX, where the memory attention runs
    ~2x faster in bf16, see :mod:`sam2_plugins.modeling.attention_cpu`) for models whose
    ``image_size`` is at least :data:`AUTO_BF16_MIN_IMAGE_SIZE`; float32 elsewhere.
    """
    if dtype is None:
        return contextlib.nullcontext()
    if isinstance(dtype, str) and dtype.lower() == "auto" and torch.device(device).type == "cpu":
        from sam2_plugins.modeling.attention_cpu import cpu_has_fast_bf16

        big = image_size is None or int(image_size) >= AUTO_BF16_MIN_IMAGE_SIZE
        if not (cpu_has_fast_bf16() and big):
            return contextlib.nullcontext()
        dtype = "bf16"
    from sam2_plugins.device import autocast_context

    return autocast_context(device, dtype)


def get_1d_sine_pe(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine/cosine encoding of scalar positions: (N,) -> (N, dim), ``[sin | cos]`` halves."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    x = pos.unsqueeze(-1) / dim_t
    return torch.cat([x.sin(), x.cos()], dim=-1)


class Tracker:
    """Runs prompts, tracking steps and memory encoding for a model with SAM2Base's API.

    Args:
        model: ``SAM2Model`` or upstream ``SAM2Base`` in eval mode.
        fill_hole_area: holes (background components) up to this many pixels in the low-res
            mask are filled, after memory encoding (upstream's ``fill_hole_area``); 0 = off.
    """

    def __init__(self, model: torch.nn.Module, fill_hole_area: int = 0) -> None:
        self.model = model
        self.fill_hole_area = int(fill_hole_area)
        self.stats: Dict[str, float] = {}
        """Optional per-stage timing sink (name -> seconds), filled when ``timed`` is on."""
        self.timed = False

    # ---- small helpers ---------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    def _tick(self, name: str, t0: float) -> float:
        import time
        if self.timed:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            self.stats[name] = self.stats.get(name, 0.0) + (t1 - t0)
            return t1
        return t0

    def _now(self) -> float:
        import time
        if self.timed and torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def encode_image(self, image: torch.Tensor) -> FrameFeatures:
        """(1, 3, S, S) normalised image -> :class:`FrameFeatures` (runs the image encoder)."""
        t0 = self._now()
        m = self.model
        backbone_out = m.forward_image(image)
        _, feats, pos, sizes = m._prepare_backbone_features(backbone_out)
        self._tick("image_encoder", t0)
        return FrameFeatures(vision_feats=list(feats), vision_pos=pos[-1], feat_sizes=list(sizes))

    def _high_res(self, feats: Sequence[torch.Tensor], sizes: Sequence[Tuple[int, int]]
                  ) -> Optional[List[torch.Tensor]]:
        if len(feats) <= 1:
            return None
        return [x.permute(1, 2, 0).reshape(x.size(1), x.size(2), *s)
                for x, s in zip(feats[:-1], sizes[:-1])]

    def _top(self, feat: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        b = feat.size(1)
        return feat.permute(1, 2, 0).reshape(b, self.model.hidden_dim, *size)

    def use_multimask(self, is_init_cond_frame: bool, point_inputs: Optional[PointInputs]) -> bool:
        m = self.model
        n = 0 if point_inputs is None else point_inputs.labels.size(1)
        return bool(m.multimask_output_in_sam and (is_init_cond_frame or m.multimask_output_for_tracking)
                    and m.multimask_min_pt_num <= n <= m.multimask_max_pt_num)

    # ---- memory conditioning ---------------------------------------------------------------
    def _memory_for(self, bank: MemoryBank, frame_idx: int, reverse: bool,
                    num_frames: Optional[int], pos_enc: torch.Tensor, dtype: torch.dtype
                    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[int], Optional[torch.Tensor]]:
        """One object's memory: spatial (tokens, pos) lists, pointer positions and pointers."""
        m = self.model
        stride = 1 if m.training else m.memory_temporal_stride_for_eval
        entries = bank.spatial_entries(frame_idx, reverse, m.num_maskmem, stride,
                                       m.max_cond_frames_in_attn)
        mem, mem_pos = [], []
        pos_tokens = pos_enc.flatten(2).permute(2, 0, 1)  # (hw, 1, mem_dim)
        for t_pos, out in entries:
            if out.maskmem_features is None:
                raise RuntimeError("a spatial memory is missing (evicted and not recomputed)")
            mem.append(out.maskmem_features.to(device=pos_enc.device, dtype=dtype)
                       .flatten(2).permute(2, 0, 1))
            mem_pos.append(pos_tokens.to(dtype) + m.maskmem_tpos_enc[m.num_maskmem - t_pos - 1].to(dtype))
        ptr_pos: List[int] = []
        ptrs = None
        if m.use_obj_ptrs_in_encoder:
            pe = bank.pointer_entries(frame_idx, reverse, num_frames, m.max_obj_ptrs_in_encoder,
                                      (not m.training) and m.only_obj_ptrs_in_the_past_for_eval,
                                      m.use_signed_tpos_enc_to_obj_ptrs, m.max_cond_frames_in_attn)
            if pe:
                ptr_pos = [p for p, _ in pe]
                ptrs = torch.stack([p.to(device=pos_enc.device) for _, p in pe], dim=0)  # (n,1,C)
        return mem, mem_pos, ptr_pos, ptrs

    def _pointer_pos(self, ptr_pos: List[int], num_frames: Optional[int],
                     device: torch.device) -> torch.Tensor:
        """(n, mem_dim) temporal encodings of pointer positions."""
        m = self.model
        C, mem_dim = m.hidden_dim, m.mem_dim
        if not m.add_tpos_enc_to_obj_ptrs:
            return torch.zeros(len(ptr_pos), mem_dim, device=device)
        max_ptr = m.max_obj_ptrs_in_encoder if num_frames is None else min(num_frames, m.max_obj_ptrs_in_encoder)
        t_diff_max = max_ptr - 1
        tpos_dim = C if m.proj_tpos_enc_in_obj_ptrs else mem_dim
        pos = torch.tensor(ptr_pos, device=device)
        pe = get_1d_sine_pe(pos / t_diff_max, dim=tpos_dim)
        return m.obj_ptr_tpos_proj(pe)

    def condition(self, frame_idx: int, feats: FrameFeatures, banks: Sequence[MemoryBank],
                  num_frames: Optional[int], reverse: bool, pos_enc: Optional[torch.Tensor],
                  is_init_cond_frame: bool = False) -> torch.Tensor:
        """Memory-conditioned features for each object: (B, C, H, W), B = len(banks).

        Objects with the same memory layout share one memory-attention call.
        """
        m = self.model
        B = len(banks)
        H, W = feats.feat_sizes[-1]
        C = m.hidden_dim
        curr, curr_pos = feats.expand(B)
        top, top_pos = curr[-1], curr_pos
        if m.num_maskmem == 0:
            return self._top(top, (H, W))
        if is_init_cond_frame:
            if m.directly_add_no_mem_embed:
                return self._top(top + m.no_mem_embed, (H, W))
            memory = m.no_mem_embed.expand(1, B, m.mem_dim)
            memory_pos = m.no_mem_pos_enc.expand(1, B, m.mem_dim)
            out = m.memory_attention(curr=[top], curr_pos=[top_pos], memory=memory,
                                     memory_pos=memory_pos, num_obj_ptr_tokens=0)
            return self._top(out, (H, W))
        if pos_enc is None:
            raise RuntimeError("no memory position encoding yet: a prompt must be encoded first")
        dtype = top.dtype
        per_obj = []
        for bank in banks:
            if not bank.cond:
                raise RuntimeError("an object without any conditioning frame cannot be tracked")
            per_obj.append(self._memory_for(bank, frame_idx, reverse, num_frames, pos_enc, dtype))
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, (mem, _, ptr_pos, _) in enumerate(per_obj):
            groups.setdefault((len(mem), len(ptr_pos)), []).append(i)
        result = top.new_empty(B, C, H, W)
        for (_, n_ptr), idx in groups.items():
            mem_cols, pos_cols = [], []
            for i in idx:
                mem, mem_pos, ptr_pos, ptrs = per_obj[i]
                tok, tpos = list(mem), list(mem_pos)
                if n_ptr:
                    p_pos = self._pointer_pos(ptr_pos, num_frames, top.device).to(dtype)[:, None]
                    p = ptrs.to(dtype)
                    if m.mem_dim < C:
                        k = C // m.mem_dim
                        p = p.reshape(-1, 1, k, m.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
                        p_pos = p_pos.repeat_interleave(k, dim=0)
                    tok.append(p)
                    tpos.append(p_pos)
                mem_cols.append(torch.cat(tok, dim=0))
                pos_cols.append(torch.cat(tpos, dim=0))
            memory = torch.cat(mem_cols, dim=1)
            memory_pos = torch.cat(pos_cols, dim=1)
            n_ptr_tokens = n_ptr * (C // m.mem_dim if m.mem_dim < C else 1)
            sel = torch.tensor(idx, device=top.device)
            g_curr = top if len(idx) == B else top.index_select(1, sel)
            g_pos = top_pos if len(idx) == B else top_pos.index_select(1, sel)
            t0 = self._now()
            out = m.memory_attention(curr=[g_curr], curr_pos=[g_pos], memory=memory,
                                     memory_pos=memory_pos, num_obj_ptr_tokens=n_ptr_tokens)
            self._tick("memory_attention", t0)
            result[idx] = out.permute(1, 2, 0).reshape(len(idx), C, H, W).to(result.dtype)
        return result

    # ---- the SAM heads ---------------------------------------------------------------------
    def _heads(self, pix_feat: torch.Tensor, feats: FrameFeatures, point_inputs: Optional[PointInputs],
               mask_inputs: Optional[torch.Tensor], multimask: bool) -> Tuple[torch.Tensor, ...]:
        B = pix_feat.size(0)
        curr, _ = feats.expand(B)
        hr = self._high_res(curr, feats.feat_sizes)
        t0 = self._now()
        outs = self.model._forward_sam_heads(
            backbone_features=pix_feat,
            point_inputs=None if point_inputs is None else point_inputs.as_dict(),
            mask_inputs=mask_inputs, high_res_features=hr, multimask_output=multimask)
        self._tick("mask_decoder", t0)
        return outs

    @staticmethod
    def _best_iou(ious: torch.Tensor) -> torch.Tensor:
        return ious.float().max(dim=-1).values

    # ---- public steps ----------------------------------------------------------------------
    def prompt(self, frame_idx: int, feats: FrameFeatures, bank: MemoryBank, is_init_cond_frame: bool,
               point_inputs: Optional[PointInputs], mask_inputs: Optional[torch.Tensor],
               prev_mask_logits: Optional[torch.Tensor], num_frames: Optional[int], reverse: bool,
               pos_enc: Optional[torch.Tensor]) -> Tuple[FrameOutput, torch.Tensor]:
        """One object's output for a prompt on a frame (upstream ``track_step`` without memory
        encoding). Returns the output and its (1, 1, S, S) high-resolution mask logits."""
        m = self.model
        if point_inputs is not None and mask_inputs is not None:
            raise ValueError("a frame takes either points/box or a mask for an object, not both")
        if mask_inputs is not None and m.use_mask_input_as_output_without_sam:
            H, W = feats.feat_sizes[-1]
            pix = self._top(feats.vision_feats[-1], (H, W))
            hr = self._high_res(feats.vision_feats, feats.feat_sizes)
            outs = m._use_mask_as_output(pix, hr, mask_inputs)
        else:
            pix = self.condition(frame_idx, feats, [bank], num_frames, reverse, pos_enc,
                                 is_init_cond_frame=is_init_cond_frame)
            if prev_mask_logits is not None:
                mask_inputs = prev_mask_logits
            outs = self._heads(pix, feats, point_inputs, mask_inputs,
                               self.use_multimask(is_init_cond_frame, point_inputs))
        _, _, ious, low, high, obj_ptr, score = outs
        out = FrameOutput(pred_masks=low.float(), obj_ptr=obj_ptr, object_score_logits=score.float(),
                          iou=self._best_iou(ious), mask_from_points=True, reverse=reverse)
        return out, high

    def track(self, frame_idx: int, feats: FrameFeatures, banks: Sequence[MemoryBank],
              num_frames: Optional[int], reverse: bool, pos_enc: torch.Tensor,
              run_mem_encoder: bool = True) -> List[FrameOutput]:
        """Track objects on a frame from their memories (all batched). Memories are encoded
        unless ``run_mem_encoder`` is False."""
        if not banks:
            return []
        pix = self.condition(frame_idx, feats, banks, num_frames, reverse, pos_enc)
        _, _, ious, low, high, obj_ptr, score = self._heads(
            pix, feats, None, None, self.use_multimask(False, None))
        low = low.float()
        score = score.float()
        maskmem = None
        if run_mem_encoder and self.model.num_maskmem > 0:
            maskmem, _ = self.encode_memory(feats, high, score, from_points=False)
        low = self.fill_holes(low)
        iou = self._best_iou(ious)
        outs = []
        for i in range(len(banks)):
            outs.append(FrameOutput(
                pred_masks=low[i:i + 1], obj_ptr=obj_ptr[i:i + 1], object_score_logits=score[i:i + 1],
                iou=iou[i:i + 1], maskmem_features=None if maskmem is None else maskmem[i:i + 1],
                mask_from_points=False, reverse=reverse))
        return outs

    def encode_memory(self, feats: FrameFeatures, high_res_masks: torch.Tensor,
                      object_score_logits: torch.Tensor, from_points: bool
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Spatial memories of B masks on one frame: ((B, mem_dim, h, w) bf16, (1, mem_dim, h, w) pos).

        Each object is encoded on its own where the model would otherwise couple objects
        (``non_overlap_masks_for_mem_enc``): upstream encodes objects one at a time.
        """
        m = self.model
        B = high_res_masks.size(0)
        t0 = self._now()
        if B > 1 and getattr(m, "non_overlap_masks_for_mem_enc", False):
            parts = [self.encode_memory(feats, high_res_masks[i:i + 1], object_score_logits[i:i + 1],
                                        from_points) for i in range(B)]
            return torch.cat([p[0] for p in parts], 0), parts[0][1]
        curr, _ = feats.expand(B)
        feat, pos = m._encode_new_memory(
            current_vision_feats=curr, feat_sizes=feats.feat_sizes, pred_masks_high_res=high_res_masks,
            object_score_logits=object_score_logits, is_mask_from_pts=from_points)
        self._tick("memory_encoder", t0)
        return feat.to(MEMORY_DTYPE), pos[-1][:1].float()

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        """(B, 1, s/4, s/4) -> (B, 1, S, S) bilinear, as upstream re-encodes prompted frames."""
        S = self.image_size
        return F.interpolate(low_res, size=(S, S), mode="bilinear", align_corners=False)

    def fill_holes(self, low: torch.Tensor) -> torch.Tensor:
        """Fill background holes up to ``fill_hole_area`` pixels with logit 0.1 (8-connectivity).

        Upstream does this with a CUDA-only kernel; this uses ``scipy.ndimage`` on any device.
        """
        if self.fill_hole_area <= 0:
            return low
        from scipy import ndimage

        bg = (low <= 0).cpu().numpy()
        fill = torch.zeros(low.shape, dtype=torch.bool)
        structure = [[1, 1, 1], [1, 1, 1], [1, 1, 1]]
        for b in range(bg.shape[0]):
            for c in range(bg.shape[1]):
                lab, n = ndimage.label(bg[b, c], structure=structure)
                if n == 0:
                    continue
                areas = ndimage.sum_labels(bg[b, c], lab, index=range(1, n + 1))
                small = [i + 1 for i, a in enumerate(areas) if a <= self.fill_hole_area]
                if small:
                    fill[b, c] = torch.from_numpy(np.isin(lab, small))
        return torch.where(fill.to(low.device), torch.full_like(low, 0.1), low)

