"""Object pointers as memory tokens: which pointers a frame reads, and their temporal encoding.

Each stored object pointer (``(B, C)``, one per frame and object) becomes ``C / mem_dim`` memory
tokens of ``mem_dim`` channels. Their position encoding is a 1D sine encoding of the signed (2.1)
or absolute (2.0) frame distance divided by ``max_ptrs - 1``, projected to ``C`` in 2.1 (zeros in
2.0). Upstream excludes these tokens from RoPE: the caller passes their count to memory attention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .tracking_utils import get_1d_sine_pe, select_object_pointers

if TYPE_CHECKING:  # pragma: no cover
    from .sam2 import SAM2Model

__all__ = ["object_pointer_memory"]


def object_pointer_memory(
    model: "SAM2Model",
    frame_idx: int,
    selected: Dict[int, Dict[str, Any]],
    unselected: Dict[int, Dict[str, Any]],
    non_cond_outputs: Dict[int, Dict[str, Any]],
    num_frames: Optional[int],
    track_in_reverse: bool,
    batch: int,
    device: torch.device,
) -> Optional[Tuple[Tensor, Tensor]]:
    """The pointer tokens frame ``frame_idx`` attends to, or None when there are none.

    Args:
        model: supplies the flags (``max_obj_ptrs_in_encoder``, ``add_tpos_enc_to_obj_ptrs``,
            ...) and ``obj_ptr_tpos_proj``.
        selected / unselected: conditioning-frame outputs chosen (or not) as spatial memories.
        non_cond_outputs: tracked-frame outputs ``{frame: {"obj_ptr": (B, C), ...}}``.
        num_frames: video length (``None`` for an open-ended stream).

    Returns:
        ``(tokens, pos)``, both ``(N * C / mem_dim, B, mem_dim)``, sequence-first.
    """
    c, mem_dim = model.hidden_dim, model.mem_dim
    max_ptrs = (model.max_obj_ptrs_in_encoder if num_frames is None
                else min(num_frames, model.max_obj_ptrs_in_encoder))
    pos_and_ptrs = select_object_pointers(
        frame_idx, selected, unselected, non_cond_outputs, max_ptrs, num_frames,
        reverse=track_in_reverse,
        only_past=(not model.training and model.only_obj_ptrs_in_the_past_for_eval),
        signed=model.use_signed_tpos_enc_to_obj_ptrs)
    if not pos_and_ptrs:
        return None
    pos_list: List[int] = [p for p, _ in pos_and_ptrs]
    ptrs = torch.stack([q.to(device) for _, q in pos_and_ptrs], dim=0)
    if model.add_tpos_enc_to_obj_ptrs:
        # Upstream divides by max_ptrs - 1 (0 for a 1-frame video: NaN there); keep it >= 1.
        t_diff_max = max(max_ptrs - 1, 1)
        tpos_dim = c if model.proj_tpos_enc_in_obj_ptrs else mem_dim
        rel = torch.tensor(pos_list, device=device) / t_diff_max
        sine = get_1d_sine_pe(rel, dim=tpos_dim)
        weight = getattr(model.obj_ptr_tpos_proj, "weight", None)
        if weight is not None:  # e.g. a model cast to bf16 as a whole
            sine = sine.to(weight.dtype)
        ptr_pos = model.obj_ptr_tpos_proj(sine).unsqueeze(1).expand(-1, batch, mem_dim)
    else:
        ptr_pos = ptrs.new_zeros(len(pos_list), batch, mem_dim)
    if mem_dim < c:
        # A C-dim pointer becomes C / mem_dim tokens of mem_dim channels.
        k = c // mem_dim
        ptrs = ptrs.reshape(-1, batch, k, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        ptr_pos = ptr_pos.repeat_interleave(k, dim=0)
    return ptrs, ptr_pos
