"""Memory tokens: what a frame cross-attends to, and the memory-conditioning of its features.

A frame's memory is one sequence of ``mem_dim``-channel tokens, sequence-first ``(N, B, mem_dim)``:

* each spatial memory ``(B, mem_dim, h, w)`` gives ``h * w`` tokens; its position code is the
  memory encoder's 2-D sine code plus ``maskmem_tpos_enc[num_maskmem - t_pos - 1]``, the slot's
  temporal embedding (slot 0: conditioning frames);
* each object pointer ``(B, C)`` gives ``C / mem_dim`` tokens (one if ``mem_dim == C``); its
  position code is a 1-D sine code of the signed (2.1) or absolute (2.0) frame distance divided
  by ``max_ptrs - 1``, projected to ``mem_dim`` by ``obj_ptr_tpos_proj`` (2.1; zeros in 2.0).
  Pointer tokens come last and are excluded from RoPE: :class:`MemoryTokens` carries their count.

The functions take the model as an argument (anything with the attributes of
:class:`MemoryModel`), so the model, the tracking engine and training share one definition.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, List, Optional, Protocol, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..device import host_to_device
from .rules import get_1d_sine_pe, pointer_window

__all__ = ["MemoryTokens", "MemoryModel", "spatial_memory_tokens", "pointer_memory_tokens",
           "build_memory", "condition_on_memory"]


@dataclass
class MemoryTokens:
    """One frame's memory for a batch of ``B`` rows.

    Attributes:
        memory: ``(N, B, mem_dim)`` tokens, spatial first, pointers last.
        pos: ``(N, B, mem_dim)`` their position codes.
        num_ptr_tokens: how many of the last tokens are object pointers (no RoPE on those).
    """

    memory: Tensor
    pos: Tensor
    num_ptr_tokens: int = 0

    @staticmethod
    def cat_rows(parts: Sequence["MemoryTokens"]) -> "MemoryTokens":
        """Stack memories of the same layout (token count and pointer count) along the batch."""
        if len(parts) == 1:
            return parts[0]
        n_ptr = parts[0].num_ptr_tokens
        if any(p.num_ptr_tokens != n_ptr or p.memory.shape[0] != parts[0].memory.shape[0] for p in parts):
            raise ValueError("memories of different layouts cannot share a batch")
        return MemoryTokens(torch.cat([p.memory for p in parts], dim=1),
                            torch.cat([p.pos for p in parts], dim=1), n_ptr)


class MemoryModel(Protocol):
    """The model attributes the memory needs (our ``SAM2Model`` and upstream ``SAM2Base``).

    The members are read-only properties here, so that a model whose attributes are subtypes
    (an ``nn.Parameter``, a ``MemoryAttention``) matches too.
    """

    @property
    def hidden_dim(self) -> int: ...

    @property
    def mem_dim(self) -> int: ...

    @property
    def num_maskmem(self) -> int: ...

    @property
    def maskmem_tpos_enc(self) -> Tensor: ...

    @property
    def obj_ptr_tpos_proj(self) -> nn.Module: ...

    @property
    def add_tpos_enc_to_obj_ptrs(self) -> bool: ...

    @property
    def proj_tpos_enc_in_obj_ptrs(self) -> bool: ...

    @property
    def max_obj_ptrs_in_encoder(self) -> int: ...

    @property
    def directly_add_no_mem_embed(self) -> bool: ...

    @property
    def no_mem_embed(self) -> Tensor: ...

    @property
    def no_mem_pos_enc(self) -> Tensor: ...

    @property
    def memory_attention(self) -> nn.Module: ...


def spatial_memory_tokens(model: MemoryModel, feats: Tensor, pos: Tensor, t_pos: int, batch: int,
                          dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """One spatial memory as tokens.

    Args:
        feats: ``(B, mem_dim, h, w)`` stored memory features (any dtype, any device: moved to
            ``pos``'s device).
        pos: ``(B or 1, mem_dim, h, w)`` the memory encoder's position code.
        t_pos: the temporal slot (0 conditioning frames, ``1 .. num_maskmem - 1`` tracked).
        batch: ``B``.

    Returns:
        ``((h*w, B, mem_dim) tokens, (h*w, B, mem_dim) positions)`` in ``dtype``.
    """
    tokens = feats.to(device=pos.device, dtype=dtype, non_blocking=True).flatten(2).permute(2, 0, 1)
    p = pos.flatten(2).permute(2, 0, 1)
    p = p + model.maskmem_tpos_enc[model.num_maskmem - t_pos - 1]
    return tokens, p.to(dtype).expand(-1, batch, -1)


_SINE_CACHE: "OrderedDict[Tuple[Any, ...], Tensor]" = OrderedDict()


def _pointer_sine(t_diffs: Tuple[int, ...], t_diff_max: int, dim: int, device: torch.device) -> Tensor:
    """``(n, dim)`` sine codes of ``t / t_diff_max``, cached: the same distances recur on every
    frame, and building them from Python numbers on a GPU would copy host to device each time."""
    # inference_mode in the key: its tensors cannot enter autograd later (training after validation)
    key = (t_diffs, t_diff_max, dim, device, torch.is_inference_mode_enabled())
    hit = _SINE_CACHE.get(key)
    if hit is None:
        rel = host_to_device(t_diffs, torch.float32, device) / t_diff_max
        hit = get_1d_sine_pe(rel, dim=dim)
        _SINE_CACHE[key] = hit
        while len(_SINE_CACHE) > 256:
            _SINE_CACHE.popitem(last=False)
    else:
        _SINE_CACHE.move_to_end(key)
    return hit


def pointer_memory_tokens(model: MemoryModel, ptrs: Tensor, t_diffs: Sequence[int],
                          num_frames: Optional[int], dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """Object pointers as tokens.

    Args:
        ptrs: ``(n, B, C)`` pointers of ``n`` frames.
        t_diffs: their frame distances (see :func:`~sam2_plugins.modeling.rules.select_object_pointers`).
        num_frames: the video length (``None``: an open-ended stream); sets the scale
            ``max_ptrs - 1`` of the distances.

    Returns:
        ``((n * C/mem_dim, B, mem_dim) tokens, same-shape positions)`` in ``dtype``.
    """
    c, mem_dim = model.hidden_dim, model.mem_dim
    n, b = ptrs.shape[0], ptrs.shape[1]
    if model.add_tpos_enc_to_obj_ptrs:
        # Upstream divides by max_ptrs - 1 (0 for a 1-frame video: NaN there); keep it >= 1.
        t_diff_max = max(pointer_window(num_frames, model.max_obj_ptrs_in_encoder) - 1, 1)
        tpos_dim = c if model.proj_tpos_enc_in_obj_ptrs else mem_dim
        sine = _pointer_sine(tuple(int(t) for t in t_diffs), t_diff_max, tpos_dim, ptrs.device)
        weight = getattr(model.obj_ptr_tpos_proj, "weight", None)
        if weight is not None:  # e.g. a model cast to bf16 as a whole
            sine = sine.to(weight.dtype)
        pos = model.obj_ptr_tpos_proj(sine).unsqueeze(1).expand(-1, b, mem_dim)
    else:
        pos = ptrs.new_zeros(n, b, mem_dim)
    tokens = ptrs.to(dtype)
    pos = pos.to(dtype)
    if mem_dim < c:
        # A C-dim pointer becomes C / mem_dim tokens of mem_dim channels.
        k = c // mem_dim
        tokens = tokens.reshape(n, b, k, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        pos = pos.repeat_interleave(k, dim=0)
    return tokens, pos


def build_memory(model: MemoryModel, spatial: Sequence[Tuple[int, Tensor, Tensor]],
                 ptrs: Optional[Tensor], t_diffs: Sequence[int], num_frames: Optional[int],
                 batch: int, dtype: torch.dtype) -> Optional[MemoryTokens]:
    """All memory tokens of one frame for ``batch`` rows.

    Args:
        spatial: ``[(t_pos, features (B, mem_dim, h, w), position (B or 1, mem_dim, h, w))]``
            in token order (conditioning frames first).
        ptrs: ``(n, B, C)`` object pointers (or None), at frame distances ``t_diffs``.

    Returns:
        The :class:`MemoryTokens`, or None when there is nothing to read.
    """
    toks: List[Tensor] = []
    poss: List[Tensor] = []
    for t_pos, feats, pos in spatial:
        t, p = spatial_memory_tokens(model, feats, pos, t_pos, batch, dtype)
        toks.append(t)
        poss.append(p)
    n_ptr = 0
    if ptrs is not None and ptrs.shape[0] > 0:
        t, p = pointer_memory_tokens(model, ptrs, t_diffs, num_frames, dtype)
        toks.append(t)
        poss.append(p)
        n_ptr = t.shape[0]
    if not toks:
        return None
    return MemoryTokens(torch.cat(toks, dim=0), torch.cat(poss, dim=0), n_ptr)


def condition_on_memory(model: MemoryModel, curr: Tensor, curr_pos: Tensor, feat_size: Tuple[int, int],
                        memory: Optional[MemoryTokens], is_init_cond_frame: bool) -> Tensor:
    """Fuse a frame's stride-16 features with its memory (memory attention).

    Args:
        curr: ``(H*W, B, C)`` the frame's top-level features, sequence-first.
        curr_pos: ``(H*W, B, C)`` their position code.
        feat_size: ``(H, W)``.
        memory: the frame's :class:`MemoryTokens` (ignored on an initial conditioning frame).
        is_init_cond_frame: the objects' first prompted frame: no memory exists yet, so
            ``no_mem_embed`` is added (or attended to, without ``directly_add_no_mem_embed``).

    Returns:
        ``(B, C, H, W)`` memory-conditioned features.
    """
    b, c = curr.size(1), model.hidden_dim
    h, w = feat_size
    if model.num_maskmem == 0:  # SAM-on-images mode: no memory at all
        return curr.permute(1, 2, 0).reshape(b, c, h, w)
    if is_init_cond_frame:
        if model.directly_add_no_mem_embed:
            return (curr + model.no_mem_embed).permute(1, 2, 0).reshape(b, c, h, w)
        # A dummy memory token so the memory attention never sees an empty memory.
        memory = MemoryTokens(model.no_mem_embed.expand(1, b, model.mem_dim),
                              model.no_mem_pos_enc.expand(1, b, model.mem_dim), 0)
    if memory is None:
        raise RuntimeError("no memory (spatial or pointer) is available for a frame tracked from "
                           "memory; were the prompted frames memory-encoded?")
    out = model.memory_attention(curr=[curr], curr_pos=[curr_pos], memory=memory.memory,
                                 memory_pos=memory.pos, num_obj_ptr_tokens=memory.num_ptr_tokens)
    return out.permute(1, 2, 0).reshape(b, c, h, w)
