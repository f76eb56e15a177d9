"""The per-frame tracking step: the one memory path of inference, streaming and training.

One frame, for the rows of one or more memory banks (objects):

1. :meth:`TrackingStep.condition`: each bank's memory (chosen by the
   :class:`~.policy.MemoryPolicy`) is cross-attended by the frame's features;
2. :meth:`TrackingStep.predict`: the SAM heads decode candidate masks (prompts, if any) and the
   policy keeps one per row (default: the best predicted IoU), which gives the object pointer;
3. :meth:`TrackingStep.memorize`: the kept mask becomes the frame's spatial memory.

:meth:`TrackingStep.track` strings them together for tracked frames. The video predictor, the
streaming session, ``SAM2Model.track_step`` (upstream's dict API, :mod:`.upstream_api`) and the
Lightning module's clip forward all run these methods; they differ only by arguments (memory
dtype, when prompted frames are encoded, prompt simulation).

Rows of banks whose memories have the same token layout share one memory-attention call; the
memories themselves, their temporal encodings and pointer positions stay per bank, so the
semantics are exactly per object. The image encoder runs once per frame
(:class:`~.frames.FrameFeed` caches it); decoder and memory encoder run once for all rows.

The step makes no host-device synchronisation (no ``.item()``, ``.tolist()``, ``.cpu()`` or
tensor truth tests): what needs host values (hole filling, quality records) runs after it.
"""

from __future__ import annotations

import contextlib
import time
from typing import (
    TYPE_CHECKING,
    Any,
    ContextManager,
    Dict,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypedDict,
    cast,
)

import torch
import torch.nn.functional as F

from ...device import host_to_device
from ...modeling.memory_tokens import MemoryTokens
from ...modeling.rules import entry_field
from ...modeling.sam_heads import SamOutputs
from ..image.postprocess import fill_holes_in_mask_scores
from .bank import MemoryBank
from .compiled import CompiledStep
from .entry import FrameOutput, PointInputs
from .frames import FrameFeatures
from .policy import MemoryParams, MemoryPolicy

if TYPE_CHECKING:
    from ...modeling.sam2 import SAM2Model

__all__ = ["TrackingStep", "Prediction", "MEMORY_DTYPE", "tracking_autocast", "AUTO_BF16_MIN_IMAGE_SIZE"]

MEMORY_DTYPE = torch.bfloat16
"""Stored spatial memories are bf16 in the predictors, as upstream's predictor stores them."""

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


class Prediction(NamedTuple):
    """The SAM heads' result on a frame, with what a correction needs to decode again.

    ``sam``: the :class:`~sam2_plugins.modeling.sam_heads.SamOutputs` (kept candidate per row);
    ``pix_feat``: ``(B, C, H, W)`` memory-conditioned features; ``high_res``: the decoder's
    high-resolution features (or None); ``choice``: ``(B,)`` the candidate the memory policy
    kept, or None where the best predicted IoU was kept.
    """

    sam: SamOutputs
    pix_feat: torch.Tensor
    high_res: Optional[List[torch.Tensor]]
    choice: Optional[torch.Tensor] = None


class _Presence(TypedDict, total=False):
    """The decoder's optional object-presence argument (see :meth:`TrackingStep._presence`)."""

    object_threshold: float


class TrackingStep:
    """The tracking step for a ``SAM2Model`` (see the module docstring).

    Args:
        model: a ``SAM2Model``.
        policy: the memory policy (default: upstream's rules).
        memory_dtype: dtype of stored spatial memories (bf16 as upstream's predictor; None keeps
            the encoder's dtype, as upstream's training and ``track_step`` do).
        binarize_prompted: binarise masks of point-prompted frames before encoding them (upstream's
            video builder does); None follows the model's ``binarize_mask_from_pts_for_mem_enc``.
        fill_hole_area: background holes up to this many pixels of the low-res mask are filled
            in returned masks (upstream's ``fill_hole_area``; after memory encoding); 0: off.
    """

    def __init__(self, model: torch.nn.Module, policy: Optional[MemoryPolicy] = None, *,
                 memory_dtype: Optional[torch.dtype] = MEMORY_DTYPE, binarize_prompted: Optional[bool] = None,
                 fill_hole_area: int = 0) -> None:
        if int(fill_hole_area) < 0:
            raise ValueError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        # a SAM2Model (or a module with its API); mypy types nn.Module's attributes as Tensor | Module
        self.model = cast("SAM2Model", model)
        self.policy = policy if policy is not None else MemoryPolicy()
        self.params = MemoryParams.of(model)
        self.memory_dtype = memory_dtype
        self.binarize_prompted = binarize_prompted
        self.fill_hole_area = int(fill_hole_area)
        self.stats: Dict[str, float] = {}
        """Per-stage seconds (name -> total), filled when ``timed`` is on."""
        self.timed = False
        self._index_cache: Dict[Tuple[Any, ...], torch.Tensor] = {}
        self.compiled: Optional[CompiledStep] = None
        """The compiled pieces (:meth:`enable_compile`), or None (eager)."""

    def enable_compile(self, backend: str = "inductor", mode: Optional[str] = None) -> "TrackingStep":
        """Run the image encoder and tracked frames through ``torch.compile``d graphs of static
        shapes (see :mod:`.compiled`). Prompted frames stay eager (they are one-offs). The first
        frames after this are slow (compilation). Returns ``self``."""
        self.compiled = CompiledStep(self.model, backend=backend, mode=mode)
        return self

    # ---- small helpers ---------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    def _now(self) -> float:
        if self.timed and torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def _tick(self, name: str, t0: float) -> None:
        if self.timed:
            self.stats[name] = self.stats.get(name, 0.0) + (self._now() - t0)

    def _index(self, rows: Sequence[int], device: torch.device) -> torch.Tensor:
        """A cached index tensor: building it from Python numbers would copy host to device on
        every frame."""
        key = (tuple(rows), device, torch.is_inference_mode_enabled())  # see memory_tokens._pointer_sine
        idx = self._index_cache.get(key)
        if idx is None:
            idx = self._index_cache[key] = host_to_device(list(rows), torch.long, device)
        return idx

    def _top(self, feat: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        return feat.permute(1, 2, 0).reshape(feat.size(1), self.model.hidden_dim, *size)

    @staticmethod
    def high_res(feats: FrameFeatures, batch: int) -> Optional[List[torch.Tensor]]:
        """The decoder's high-resolution features ``[(B, C/8, 4h, 4w), (B, C/4, 2h, 2w)]``."""
        curr, _ = feats.expand(batch)
        if len(curr) <= 1:
            return None
        return [x.permute(1, 2, 0).reshape(x.size(1), x.size(2), *s)
                for x, s in zip(curr[:-1], feats.feat_sizes[:-1])]

    # ---- 0. image features -----------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> FrameFeatures:
        """``(B, 3, S, S)`` normalised images -> :class:`FrameFeatures` (the image encoder)."""
        t0 = self._now()
        m = self.model
        if self.compiled is not None:
            feats, pos, sizes = self.compiled.encode_image(image)
        else:
            _, feats, pos, sizes = m.prepare_backbone_features(m.forward_image(image))
        self._tick("image_encoder", t0)
        return FrameFeatures(vision_feats=list(feats), vision_pos=pos[-1], feat_sizes=list(sizes))

    # ---- 1. memory conditioning ------------------------------------------------------------
    def memory(self, bank: MemoryBank, frame_idx: int, reverse: bool, num_frames: Optional[int],
               dtype: torch.dtype, device: torch.device) -> Optional[MemoryTokens]:
        """One bank's memory tokens for a frame (policy's choice of frames), or None."""
        m, training = self.model, bool(self.model.training)
        spatial = []
        for t_pos, entry in self.policy.spatial_memories(bank, frame_idx, reverse, self.params, training):
            feats, pos = bank.spatial(entry)
            if feats is None or pos is None:
                continue  # a frame whose memory was never encoded (upstream skips it too)
            spatial.append((t_pos, feats, pos.to(device)))
        ptr_entries = self.policy.object_pointers(bank, frame_idx, reverse, num_frames, self.params, training)
        ptrs = None
        t_diffs: List[int] = []
        if ptr_entries:
            t_diffs = [d for d, _ in ptr_entries]
            ptrs = torch.stack([entry_field(e, "obj_ptr").to(device, non_blocking=True) for _, e in ptr_entries])
        return m.build_memory(spatial, ptrs, t_diffs, num_frames, bank.rows, dtype)

    def condition(self, frame_idx: int, feats: FrameFeatures, banks: Sequence[MemoryBank],
                  num_frames: Optional[int], reverse: bool, is_init_cond_frame: bool = False) -> torch.Tensor:
        """Memory-conditioned features of the banks' rows: ``(B, C, H, W)``, B = total rows."""
        m = self.model
        rows = [b.rows for b in banks]
        B = sum(rows)
        size = feats.feat_sizes[-1]
        curr, curr_pos = feats.expand(B)
        top = curr[-1]
        if m.num_maskmem == 0 or is_init_cond_frame:
            return m.condition_on_memory(top, curr_pos, size, None, is_init_cond_frame)
        for b in banks:
            if not b.cond:
                raise RuntimeError(f"frame {frame_idx} is tracked from memory, but an object has no "
                                   "conditioning frame (a prompted frame) stored in its memory")
        found = [self.memory(b, frame_idx, reverse, num_frames, top.dtype, top.device) for b in banks]
        mems = [x for x in found if x is not None]
        if len(mems) != len(found):
            raise RuntimeError(f"no memory (spatial or pointer) is available for frame {frame_idx}; "
                               "were the prompted frames memory-encoded?")
        # Banks with the same token layout share one memory-attention call.
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, mem in enumerate(mems):
            groups.setdefault((mem.memory.shape[0], mem.num_ptr_tokens), []).append(i)
        starts = [sum(rows[:i]) for i in range(len(banks))]
        t0 = self._now()
        if len(groups) == 1:
            out = m.condition_on_memory(top, curr_pos, size, MemoryTokens.cat_rows(mems), False)
            self._tick("memory_attention", t0)
            return out
        pieces, order = [], []
        for idx in groups.values():
            r = [k for i in idx for k in range(starts[i], starts[i] + rows[i])]
            sel = self._index(r, top.device)
            pieces.append(m.condition_on_memory(top.index_select(1, sel), curr_pos.index_select(1, sel), size,
                                                MemoryTokens.cat_rows([mems[i] for i in idx]), False))
            order += r
        inverse = [0] * B
        for pos_in_cat, row in enumerate(order):
            inverse[row] = pos_in_cat
        out = torch.cat(pieces, 0).index_select(0, self._index(inverse, top.device))
        self._tick("memory_attention", t0)
        return out

    # ---- 2. SAM heads ------------------------------------------------------------------------
    def predict(self, frame_idx: int, feats: FrameFeatures, banks: Sequence[MemoryBank], *,
                num_frames: Optional[int], reverse: bool = False, is_init_cond_frame: bool = False,
                point_inputs: Optional[PointInputs] = None, mask_inputs: Optional[torch.Tensor] = None,
                prev_mask_logits: Optional[torch.Tensor] = None) -> Prediction:
        """The masks of a frame for the banks' rows (upstream ``_track_step``).

        Args:
            point_inputs: clicks / box corners for all rows, or None (tracking).
            mask_inputs: ``(B, 1, S, S)`` 0/1 mask prompt, or None.
            prev_mask_logits: ``(B, 1, S/4, S/4)`` earlier logits of this frame, the mask prompt
                of a correction (needs ``point_inputs``).
            is_init_cond_frame: the rows' first prompted frame (no memory read).
        """
        m = self.model
        B = sum(b.rows for b in banks)
        if point_inputs is not None and mask_inputs is not None:
            raise ValueError("a frame takes either points/box or a mask for an object, not both")
        hr = self.high_res(feats, B)
        if mask_inputs is not None and m.use_mask_input_as_output_without_sam:
            pix = self._top(feats.expand(B)[0][-1], feats.feat_sizes[-1])
            return Prediction(m.mask_as_output(pix, hr, mask_inputs), pix, hr)
        pix = self.condition(frame_idx, feats, banks, num_frames, reverse, is_init_cond_frame)
        if prev_mask_logits is not None:
            if point_inputs is None:
                raise ValueError("prev_mask_logits needs point inputs and no mask input")
            mask_inputs = prev_mask_logits
        n_pts = 0 if point_inputs is None else point_inputs.num_points
        t0 = self._now()
        kw = self._presence()
        cand = m.decode_masks(pix, None if point_inputs is None else point_inputs.as_dict(), mask_inputs, hr,
                              m.use_multimask(is_init_cond_frame, n_pts), **kw)
        choice = None
        if cand.multimask and point_inputs is None and mask_inputs is None:
            choice = self.policy.choose(banks, frame_idx, cand, reverse)
        sam = m.select_masks(cand, choice, **kw)
        self._tick("mask_decoder", t0)
        return Prediction(sam, pix, hr, choice)

    def _presence(self) -> _Presence:
        """The policy's object-presence threshold as decoder arguments (none for SAM 2's 0)."""
        thr = float(self.policy.object_threshold)
        return {} if thr == 0.0 else {"object_threshold": thr}

    def refine(self, pred: Prediction, point_inputs: PointInputs, mask_inputs: Optional[torch.Tensor],
               is_init_cond_frame: bool) -> Prediction:
        """Decode the same frame again with more clicks (and the previous logits as mask
        prompt): a correction, as in interactive use and in training's simulated corrections."""
        m = self.model
        multi = m.use_multimask(is_init_cond_frame, point_inputs.num_points)
        kw = self._presence()
        sam = m.select_masks(m.decode_masks(pred.pix_feat, point_inputs.as_dict(), mask_inputs, pred.high_res,
                                            multi, **kw), **kw)
        return Prediction(sam, pred.pix_feat, pred.high_res)

    # ---- 3. memory encoding ----------------------------------------------------------------
    def encode_memory(self, feats: FrameFeatures, high_res_masks: torch.Tensor,
                      object_score_logits: torch.Tensor, from_points: bool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """The model's memory encoder on B masks of one frame (raw output: features in the
        encoder's dtype, upstream's ``[pos]`` list)."""
        m = self.model
        B = high_res_masks.size(0)
        t0 = self._now()
        if B > 1 and getattr(m, "non_overlap_masks_for_mem_enc", False) and not m.training:
            # that flag couples objects; upstream's predictor encodes its objects one at a time
            parts = [self.encode_memory(feats, high_res_masks[i:i + 1], object_score_logits[i:i + 1], from_points)
                     for i in range(B)]
            return torch.cat([p[0] for p in parts], 0), [torch.cat([p[1][-1] for p in parts], 0)]
        curr, _ = feats.expand(B)
        out = m.encode_memory(curr, feats.feat_sizes, high_res_masks, object_score_logits,
                              is_mask_from_pts=from_points, binarize=self.binarize_prompted)
        self._tick("memory_encoder", t0)
        return out

    def memorize(self, feats: FrameFeatures, high_res_masks: torch.Tensor, object_score_logits: torch.Tensor,
                 from_points: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """The frame's new spatial memories as the banks store them: ``((B, mem_dim, h, w) in
        ``memory_dtype``, (1, mem_dim, h, w) float32 position code shared by all memories)``."""
        feat, pos = self.encode_memory(feats, high_res_masks, object_score_logits, from_points)
        if self.memory_dtype is not None:
            feat = feat.to(self.memory_dtype)
        return feat, pos[-1][:1].float()

    def memorize_prompted(self, feats: FrameFeatures, low_res_masks: torch.Tensor,
                          object_score_logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Memory of a prompted frame, encoded once the user is done with it: from its (final,
        hole-filled) low-res logits upsampled to ``S x S``, as upstream encodes prompted frames
        when propagation starts."""
        return self.memorize(feats, self.upsample(low_res_masks), object_score_logits, from_points=True)

    # ---- the step for tracked frames ---------------------------------------------------------
    def track(self, frame_idx: int, feats: FrameFeatures, banks: Sequence[MemoryBank], num_frames: Optional[int],
              reverse: bool, run_mem_encoder: bool = True) -> List[FrameOutput]:
        """Track the banks' rows on a frame from their memories: condition -> heads -> memory.

        Returns one :class:`FrameOutput` per bank (``pred_masks`` not yet hole-filled: see
        :meth:`fill_holes`; ``in_memory`` as the policy admits it). Nothing is stored.
        """
        if not banks:
            return []
        self.policy.see_frame(banks, frame_idx, feats, reverse)
        if self.policy.pathways > 1:  # the policy runs several rows per object itself
            return self.policy.track(self, frame_idx, feats, banks, num_frames, reverse, run_mem_encoder)
        m = self.model
        maskmem = None
        if self._use_compiled(banks, run_mem_encoder):
            from .compiled import track_compiled

            t0 = self._now()
            sam, maskmem, choice = track_compiled(self, frame_idx, feats, banks, num_frames, reverse)
            if self.memory_dtype is not None:
                maskmem = maskmem.to(self.memory_dtype)
            self._tick("compiled_step", t0)
        else:
            pred = self.predict(frame_idx, feats, banks, num_frames=num_frames, reverse=reverse)
            sam, choice = pred.sam, pred.choice
            if run_mem_encoder and m.num_maskmem > 0:
                maskmem, _ = self.memorize(feats, sam.high_res_masks, sam.object_score_logits, from_points=False)
        low, score = sam.low_res_masks.float(), sam.object_score_logits.float()
        # the kept mask's predicted IoU (upstream keeps the best, so then it is the best)
        iou = self.best_iou(sam.ious) if choice is None else sam.ious.float().gather(1, choice[:, None])[:, 0]
        outs, r = [], 0
        for bank in banks:
            s = slice(r, r + bank.rows)
            r += bank.rows
            out = FrameOutput(pred_masks=low[s], obj_ptr=sam.obj_ptr[s], object_score_logits=score[s], iou=iou[s],
                              maskmem_features=None if maskmem is None else maskmem[s], mask_from_points=False,
                              reverse=reverse)
            out.in_memory = self.policy.admit(bank, frame_idx, out, reverse)
            outs.append(out)
        return outs

    def _use_compiled(self, banks: Sequence[MemoryBank], run_mem_encoder: bool) -> bool:
        m = self.model
        return (self.compiled is not None and run_mem_encoder and m.num_maskmem > 0 and not m.training
                and self.policy.object_threshold == 0.0 and all(b.rows == 1 and b.cond for b in banks)
                and not getattr(m, "non_overlap_masks_for_mem_enc", False))

    def prompt_output(self, pred: Prediction, reverse: bool) -> FrameOutput:
        """A prompted frame's :class:`FrameOutput` (memory encoded later, see
        :meth:`memorize_prompted`)."""
        sam = pred.sam
        return FrameOutput(pred_masks=sam.low_res_masks.float(), obj_ptr=sam.obj_ptr,
                           object_score_logits=sam.object_score_logits.float(), iou=self.best_iou(sam.ious),
                           mask_from_points=True, reverse=reverse)

    @staticmethod
    def best_iou(ious: torch.Tensor) -> torch.Tensor:
        """(B, M) predicted IoUs -> (B,) of the best candidate."""
        return ious.float().max(dim=-1).values

    # ---- outputs (host work, after the step) -------------------------------------------------
    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        """(B, 1, s/4, s/4) -> (B, 1, S, S) bilinear, as upstream re-encodes prompted frames."""
        S = self.image_size
        return F.interpolate(low_res, size=(S, S), mode="bilinear", align_corners=False)

    def fill_holes(self, low: torch.Tensor) -> torch.Tensor:
        """Fill background holes up to ``fill_hole_area`` pixels with logit 0.1 (8-connectivity)
        in returned masks (upstream does it with a CUDA-only kernel; this runs on any device, see
        :func:`~sam2_plugins.predictors.image.postprocess.fill_holes_in_mask_scores`). A host
        round-trip on the CPU path: it runs after the step, on returned masks only."""
        if self.fill_hole_area <= 0:
            return low
        return fill_holes_in_mask_scores(low, self.fill_hole_area)
