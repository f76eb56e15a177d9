"""The compiled tracking step: static shapes for ``torch.compile`` (and CUDA graphs).

Eager tracking feeds the memory attention exactly the tokens each object reads, so the memory
grows over the first frames and objects with different memories run in separate calls. A
compiled graph wants the same shapes on every frame, so here:

* every object's memory is padded to a fixed capacity (spatial grids for the conditioning
  frames plus the ``num_maskmem - 1`` previous frames, pointer tokens for the pointer window)
  and the padding is masked out of the attention (``memory_mask``: masked keys get weight 0,
  so the result equals the unpadded one up to float rounding). The capacity only grows, when a
  new conditioning frame is added;
* the objects are padded to a bucket of 1, 2, 4, 8, ... rows (padding rows copy the first
  row's memory and are dropped), so a new object recompiles only when it crosses a bucket;
* the memory attention + mask decoder, and the pointer + memory encoder, are two compiled
  functions with no host round-trip between them (the memory policy's candidate choice, when
  a policy overrides it, runs between the two).

The image encoder is compiled too (its input is always ``(1, 3, S, S)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ...modeling.memory_tokens import MemoryTokens
from ...modeling.sam_heads import Candidates, SamOutputs

if TYPE_CHECKING:  # pragma: no cover
    from ...modeling.sam2 import SAM2Model
    from .bank import MemoryBank
    from .frames import FrameFeatures

__all__ = ["CompiledStep", "bucket"]


def bucket(n: int) -> int:
    """Rows are padded to the next power of two (1, 2, 4, 8, ...)."""
    b = 1
    while b < n:
        b *= 2
    return b


class CompiledStep:
    """Compiled pieces of :class:`~.step.TrackingStep` for tracked frames.

    Args:
        model: the ``SAM2Model`` (not modified: the compiled functions wrap its methods).
        backend / mode: ``torch.compile``'s arguments (``mode="reduce-overhead"`` on CUDA
            captures CUDA graphs).
    """

    def __init__(self, model: SAM2Model, backend: str = "inductor", mode: Optional[str] = None) -> None:
        self.model = model
        kw: Dict[str, Any] = {"backend": backend, "dynamic": False}
        if mode is not None and backend == "inductor":
            kw["mode"] = mode
        self._encode_image_c: Callable[..., Any] = torch.compile(self._encode_image, **kw)
        self._condition_decode_c: Callable[..., Any] = torch.compile(self._condition_decode, **kw)
        self._select_encode_c: Callable[..., Any] = torch.compile(self._select_encode, **kw)
        # CUDA graphs (mode "reduce-overhead") reuse their output buffers on the next replay:
        # every call starts a new step and what outlives the frame is cloned.
        self.cudagraphs = mode is not None and "reduce-overhead" in mode
        self.spatial_cap = 0
        self.ptr_cap = 0
        self._masks: Dict[Tuple[Any, ...], torch.Tensor] = {}

    # ---- calls -------------------------------------------------------------------------------
    def _step(self) -> None:
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()

    def _keep(self, x: Any) -> Any:
        if not self.cudagraphs:
            return x
        if isinstance(x, torch.Tensor):
            return x.clone()
        if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
            return type(x)(self._keep(v) for v in x)
        if hasattr(x, "_fields"):  # NamedTuple
            return type(x)(*(self._keep(v) for v in x))
        return x

    def encode_image(self, image: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor],
                                                         List[Tuple[int, int]]]:
        """The compiled image encoder: ``(feats, pos, sizes)`` as ``prepare_backbone_features``."""
        self._step()
        feats, pos, sizes = self._encode_image_c(image)
        return self._keep(feats), self._keep(pos), sizes

    def condition_decode(self, *args: Any) -> Candidates:
        """Memory attention + mask decoder (a new CUDA-graph step begins here)."""
        self._step()
        return self._condition_decode_c(*args)

    def select_encode(self, *args: Any) -> Tuple[SamOutputs, torch.Tensor]:
        """Candidate selection, object pointer and memory encoder (outputs kept)."""
        sam, feat = self._select_encode_c(*args)
        return self._keep(sam), self._keep(feat)

    # ---- the compiled functions ------------------------------------------------------------
    def _encode_image(self, image: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor],
                                                          List[Tuple[int, int]]]:
        m = self.model
        _, feats, pos, sizes = m.prepare_backbone_features(m.forward_image(image))
        return feats, pos, sizes

    def _condition_decode(self, top: torch.Tensor, top_pos: torch.Tensor, hr: Optional[List[torch.Tensor]],
                          memory: torch.Tensor, memory_pos: torch.Tensor, memory_mask: torch.Tensor,
                          num_ptr_tokens: int, size: Tuple[int, int], multimask: bool) -> Candidates:
        m = self.model
        b, c = top.shape[1], m.hidden_dim
        out = m.memory_attention(curr=[top], curr_pos=[top_pos], memory=memory, memory_pos=memory_pos,
                                 num_obj_ptr_tokens=num_ptr_tokens, memory_mask=memory_mask)
        pix = out.permute(1, 2, 0).reshape(b, c, *size)
        return m.decode_masks(pix, None, None, hr, multimask)

    def _select_encode(self, cand: Candidates, choice: Optional[torch.Tensor], curr: List[torch.Tensor],
                       sizes: List[Tuple[int, int]]) -> Tuple[SamOutputs, torch.Tensor]:
        m = self.model
        sam = m.select_masks(cand, choice)
        feat, _ = m.encode_memory(curr, sizes, sam.high_res_masks, sam.object_score_logits, is_mask_from_pts=False)
        return sam, feat

    # ---- padding ---------------------------------------------------------------------------
    def pad_memory(self, mems: Sequence[MemoryTokens], hw: int, k: int, rows: int, num_maskmem: int,
                   max_ptrs: int, n_cond: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Memories of the rows (one per bank, each 1 row) -> padded ``(memory, pos, mask,
        num_ptr_tokens)`` of ``rows`` rows (extra rows repeat row 0).

        Args:
            hw: tokens per spatial grid; k: tokens per pointer.
            n_cond: the most conditioning frames any bank has (sets the capacity).
        """
        self.spatial_cap = max(self.spatial_cap, (n_cond + num_maskmem - 1) * hw)
        self.ptr_cap = max(self.ptr_cap, (n_cond + max_ptrs - 1) * k)
        for mem in mems:
            n_sp = mem.memory.shape[0] - mem.num_ptr_tokens
            self.spatial_cap = max(self.spatial_cap, n_sp)
            self.ptr_cap = max(self.ptr_cap, mem.num_ptr_tokens)
        S, P = self.spatial_cap, self.ptr_cap
        ref = mems[0].memory
        memory = ref.new_zeros(S + P, rows, ref.shape[2])
        pos = ref.new_zeros(S + P, rows, ref.shape[2])
        layout = []
        for r in range(rows):
            mem = mems[r] if r < len(mems) else mems[0]
            n_ptr = mem.num_ptr_tokens
            n_sp = mem.memory.shape[0] - n_ptr
            memory[:n_sp, r:r + 1] = mem.memory[:n_sp]
            pos[:n_sp, r:r + 1] = mem.pos[:n_sp]
            if n_ptr:
                memory[S:S + n_ptr, r:r + 1] = mem.memory[n_sp:]
                pos[S:S + n_ptr, r:r + 1] = mem.pos[n_sp:]
            layout.append((n_sp, n_ptr))
        return memory, pos, self._mask(tuple(layout), S, P, ref.device), P

    def _mask(self, layout: Tuple[Tuple[int, int], ...], S: int, P: int, device: torch.device) -> torch.Tensor:
        """``(rows, S + P)`` bool, True on each row's real tokens (cached: no host-to-device
        copy once the layout is steady)."""
        key = (layout, S, P, device)
        mask = self._masks.get(key)
        if mask is None:
            mask = torch.zeros(len(layout), S + P, dtype=torch.bool)
            for r, (n_sp, n_ptr) in enumerate(layout):
                mask[r, :n_sp] = True
                mask[r, S:S + n_ptr] = True
            mask = self._masks[key] = mask.pin_memory().to(device, non_blocking=True) if device.type == "cuda" \
                else mask.to(device)
            if len(self._masks) > 64:
                self._masks.pop(next(iter(self._masks)))
        return mask


def track_compiled(step: Any, frame_idx: int, feats: "FrameFeatures", banks: Sequence["MemoryBank"],
                   num_frames: Optional[int], reverse: bool
                   ) -> Tuple[SamOutputs, torch.Tensor, Optional[torch.Tensor]]:
    """Tracked-frame outputs of 1-row banks through the compiled pieces: ``(SamOutputs,
    memory features, the policy's candidate choice or None)`` for ``len(banks)`` rows (bucket
    padding removed)."""
    m = step.model
    comp: CompiledStep = step.compiled
    n = len(banks)
    rows = bucket(n)
    curr, curr_pos = feats.expand(rows)
    top = curr[-1]
    mems = []
    for b in banks:
        mem = step.memory(b, frame_idx, reverse, num_frames, top.dtype, top.device)
        if mem is None:
            raise RuntimeError(f"no memory (spatial or pointer) is available for frame {frame_idx}; "
                               "were the prompted frames memory-encoded?")
        mems.append(mem)
    h, w = feats.feat_sizes[-1]
    k = m.hidden_dim // m.mem_dim if m.mem_dim < m.hidden_dim else 1
    n_cond = max(len(b.cond) for b in banks)
    memory, pos, mask, n_ptr = comp.pad_memory(mems, h * w, k, rows, m.num_maskmem, m.max_obj_ptrs_in_encoder,
                                               n_cond)
    hr = step.high_res(feats, rows)
    cand = comp.condition_decode(top, curr_pos, hr, memory, pos, mask, n_ptr, (h, w), m.use_multimask(False, 0))
    choice = None
    if cand.multimask and type(step.policy).choose is not _default_choose():
        real = Candidates(cand.low_res_multimasks[:n], cand.ious[:n], cand.sam_tokens[:n],
                          cand.object_score_logits[:n], cand.multimask)
        choice = step.policy.choose(banks, frame_idx, real, reverse)
        if choice is not None and rows > n:
            choice = torch.cat([choice, choice[:1].expand(rows - n)])
    sam, maskmem = comp.select_encode(cand, choice, curr, feats.feat_sizes)
    if rows > n:
        sam = SamOutputs(*(t[:n] for t in sam))
        maskmem = maskmem[:n]
        choice = None if choice is None else choice[:n]
    return sam, maskmem, choice


def _default_choose() -> Any:
    from .policy import MemoryPolicy

    return MemoryPolicy.choose
