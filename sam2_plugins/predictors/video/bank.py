"""The bounded memory bank: what a later frame can read of an object's past.

Upstream ``SAM2Base`` semantics:

* every conditioning (prompted) frame: its spatial memory and, if not in the future, its pointer;
* the ``num_maskmem - 1`` frames just before it in the tracking direction (spatial memories,
  every ``memory_temporal_stride_for_eval``-th frame plus the last one);
* the ``min(num_frames, max_obj_ptrs_in_encoder) - 1`` frames just before it (pointers only).

:class:`MemoryBank` stores exactly that and can drop the rest after each frame (``trim``), so
the memory of a long video stays bounded.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from .state import FrameOutput

__all__ = ["MemoryBank"]


# ------------------------------------------------------------------------------------------
# Memory bank
# ------------------------------------------------------------------------------------------
def spatial_frame_indices(frame_idx: int, reverse: bool, num_maskmem: int,
                          stride: int) -> List[Tuple[int, int]]:
    """Non-conditioning frames a frame reads as spatial memory, as ``(t_pos, frame)``.

    ``t_pos`` runs 1..num_maskmem-1; the frame right before (after, in reverse) has the
    largest ``t_pos``. With stride r > 1 the frames are every r-th frame plus the last one.
    """
    out = []
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos
        if t_rel == 1:
            prev = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        out.append((t_pos, prev))
    return out


def select_closest_cond_frames(frame_idx: int, cond: Dict[int, FrameOutput],
                               max_cond: int) -> Tuple[Dict[int, FrameOutput], Dict[int, FrameOutput]]:
    """Split conditioning outputs into those attended to and the rest (upstream rule).

    With ``max_cond == -1`` (the default) all are selected. Otherwise the closest one before,
    the closest one at-or-after, then the temporally closest others.
    """
    if max_cond == -1 or len(cond) <= max_cond:
        return cond, {}
    if max_cond < 2:
        raise ValueError(f"max_cond_frames_in_attn must be -1 or >= 2, got {max_cond}")
    selected: Dict[int, FrameOutput] = {}
    before = max((t for t in cond if t < frame_idx), default=None)
    if before is not None:
        selected[before] = cond[before]
    after = min((t for t in cond if t >= frame_idx), default=None)
    if after is not None:
        selected[after] = cond[after]
    remain = sorted((t for t in cond if t not in selected), key=lambda t: abs(t - frame_idx))
    for t in remain[: max_cond - len(selected)]:
        selected[t] = cond[t]
    return selected, {t: v for t, v in cond.items() if t not in selected}


class MemoryBank:
    """One object's stored outputs: conditioning frames and tracked (non-conditioning) frames.

    Dict insertion order is kept as upstream's (it fixes the order of memory tokens).
    """

    def __init__(self) -> None:
        self.cond: Dict[int, FrameOutput] = {}
        self.non_cond: Dict[int, FrameOutput] = {}

    def __len__(self) -> int:
        return len(self.cond) + len(self.non_cond)

    def get(self, frame_idx: int) -> Optional[FrameOutput]:
        """The stored output on a frame (conditioning first), or None."""
        out = self.cond.get(frame_idx)
        return out if out is not None else self.non_cond.get(frame_idx)

    def clear(self) -> None:
        self.cond.clear()
        self.non_cond.clear()

    def nbytes(self) -> int:
        """Bytes held by the stored tensors (masks, spatial memories, pointers)."""
        total = 0
        for out in list(self.cond.values()) + list(self.non_cond.values()):
            for t in (out.pred_masks, out.maskmem_features, out.obj_ptr):
                if t is not None:
                    total += t.numel() * t.element_size()
        return total

    # ---- what a frame reads --------------------------------------------------------------
    def spatial_entries(self, frame_idx: int, reverse: bool, num_maskmem: int, stride: int,
                        max_cond: int) -> List[Tuple[int, FrameOutput]]:
        """``(t_pos, output)`` of every spatial memory the frame attends to, in token order."""
        selected, unselected = select_closest_cond_frames(frame_idx, self.cond, max_cond)
        entries = [(0, out) for out in selected.values()]
        for t_pos, prev in spatial_frame_indices(frame_idx, reverse, num_maskmem, stride):
            out = self.non_cond.get(prev)
            if out is None:
                out = unselected.get(prev)
            if out is not None:
                entries.append((t_pos, out))
        return entries

    def spatial_frame_of(self, frame_idx: int, reverse: bool, num_maskmem: int, stride: int,
                         max_cond: int) -> List[int]:
        """Frame indices of :meth:`spatial_entries` (same order), for recomputing memories."""
        selected, unselected = select_closest_cond_frames(frame_idx, self.cond, max_cond)
        idx = list(selected)
        for _, prev in spatial_frame_indices(frame_idx, reverse, num_maskmem, stride):
            if prev in self.non_cond or prev in unselected:
                idx.append(prev)
        return idx

    def pointer_entries(self, frame_idx: int, reverse: bool, num_frames: Optional[int],
                        max_ptrs: int, only_past: bool, signed: bool,
                        max_cond: int) -> List[Tuple[int, torch.Tensor]]:
        """``(temporal position, obj_ptr)`` of every object pointer the frame attends to.

        ``num_frames`` None (a stream of unknown length) counts as long: the pointer window is
        ``max_ptrs``.
        """
        selected, unselected = select_closest_cond_frames(frame_idx, self.cond, max_cond)
        max_ptr = max_ptrs if num_frames is None else min(num_frames, max_ptrs)
        sign = -1 if reverse else 1
        if only_past:
            ptr_cond = {t: o for t, o in selected.items()
                        if (t >= frame_idx if reverse else t <= frame_idx)}
        else:
            ptr_cond = selected
        entries = [((frame_idx - t) * sign if signed else abs(frame_idx - t), o.obj_ptr)
                   for t, o in ptr_cond.items()]
        for t_diff in range(1, max_ptr):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or (num_frames is not None and t >= num_frames):
                break
            out = self.non_cond.get(t, unselected.get(t))
            if out is not None:
                entries.append((t_diff, out.obj_ptr))
        return entries

    # ---- bounding --------------------------------------------------------------------------
    def trim(self, frame_idx: int, reverse: bool, num_maskmem: int, stride: int,
             max_ptr: int, keep_outputs: bool) -> int:
        """Drop what no frame after ``frame_idx`` (in the tracking direction) can read.

        Spatial memories of tracked frames behind the memory window are dropped (marked
        ``evicted``: they can be recomputed from the kept mask if a later pass needs them).
        With ``keep_outputs=False`` (streaming) whole entries behind both the memory and the
        pointer windows are deleted too. Conditioning frames are always kept.

        Returns:
            The number of spatial memories dropped.
        """
        nxt = frame_idx - 1 if reverse else frame_idx + 1
        spatial = [f for _, f in spatial_frame_indices(nxt, reverse, num_maskmem, stride)]
        if reverse:
            mem_bound = max(spatial, default=nxt)
            ptr_bound = nxt + max_ptr - 1
            behind_mem = lambda t: t > mem_bound  # noqa: E731
            behind_ptr = lambda t: t > ptr_bound  # noqa: E731
        else:
            mem_bound = min(spatial, default=nxt)
            ptr_bound = nxt - (max_ptr - 1)
            behind_mem = lambda t: t < mem_bound  # noqa: E731
            behind_ptr = lambda t: t < ptr_bound  # noqa: E731
        dropped = 0
        for t in list(self.non_cond):
            out = self.non_cond[t]
            if not behind_mem(t):
                continue
            if not keep_outputs and behind_ptr(t):
                del self.non_cond[t]
                dropped += int(out.maskmem_features is not None)
                continue
            if out.maskmem_features is not None:
                out.maskmem_features = None
                out.evicted = True
                dropped += 1
        return dropped
