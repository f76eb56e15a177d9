"""SAM 2's small tracking rules, each defined once.

Pure functions with no parameters and no state, used by the model, the tracking engine
(:mod:`sam2_plugins.predictors.video`), the memory policies and the Lightning module alike:

* which conditioning frames a frame reads (:func:`select_closest_cond_frames`),
* which earlier frames fill the spatial memory slots (:func:`memory_slot_frames`,
  :func:`select_spatial_memories`),
* which object pointers a frame reads (:func:`select_object_pointers`,
  :func:`pointer_window`),
* the 1-D sine position code of frame distances (:func:`get_1d_sine_pe`),
* when the decoder returns several masks (:func:`use_multimask`),
* boxes as two corner clicks (:func:`box_to_points`, :func:`prompts_to_point_inputs`),
* the "no object" logit (:data:`NO_OBJ_SCORE`) and non-overlap (:func:`apply_non_overlapping_constraints`).

Entries of the memory (one frame's stored output) may be upstream-style dicts or
:class:`~sam2_plugins.predictors.video.entry.FrameOutput` objects: the selection functions only
move them around, :func:`entry_field` reads them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple, TypeVar

import torch

__all__ = [
    "NO_OBJ_SCORE",
    "entry_field",
    "select_closest_cond_frames",
    "get_1d_sine_pe",
    "memory_slot_frames",
    "pointer_window",
    "apply_non_overlapping_constraints",
    "select_spatial_memories",
    "select_object_pointers",
    "use_multimask",
    "box_to_points",
    "prompts_to_point_inputs",
]

NO_OBJ_SCORE: float = -1024.0
"""Logit written into the masks of an object judged absent (score <= 0); upstream's value."""

V = TypeVar("V")


def select_closest_cond_frames(
    frame_idx: int, cond_frame_outputs: Mapping[int, V], max_cond_frame_num: int
) -> Tuple[Dict[int, V], Dict[int, V]]:
    """Pick the conditioning frames the memory attention may read when tracking ``frame_idx``.

    With ``max_cond_frame_num == -1`` (or enough room) all are kept. Otherwise the nearest one
    before ``frame_idx``, the nearest one at or after it, then the temporally closest others
    until the budget is full.

    Args:
        frame_idx: the frame being tracked.
        cond_frame_outputs: frame index -> that frame's outputs (any value type).
        max_cond_frame_num: the budget (-1: unlimited; otherwise >= 2).

    Returns:
        ``(selected, unselected)``, two dicts that split ``cond_frame_outputs``.
    """
    if max_cond_frame_num == -1 or len(cond_frame_outputs) <= max_cond_frame_num:
        return dict(cond_frame_outputs), {}
    if max_cond_frame_num < 2:
        raise ValueError(f"max_cond_frame_num must be -1 or >= 2, got {max_cond_frame_num}")
    selected: Dict[int, V] = {}
    before = [t for t in cond_frame_outputs if t < frame_idx]
    after = [t for t in cond_frame_outputs if t >= frame_idx]
    if before:
        selected[max(before)] = cond_frame_outputs[max(before)]
    if after:
        selected[min(after)] = cond_frame_outputs[min(after)]
    # Python's sort is stable, so ties keep the dict's insertion order (as upstream).
    rest = sorted((t for t in cond_frame_outputs if t not in selected),
                  key=lambda t: abs(t - frame_idx))
    for t in rest[: max_cond_frame_num - len(selected)]:
        selected[t] = cond_frame_outputs[t]
    unselected = {t: v for t, v in cond_frame_outputs.items() if t not in selected}
    return selected, unselected


def get_1d_sine_pe(pos_inds: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer-style 1D sine encoding of (possibly fractional) positions.

    Args:
        pos_inds: positions, any shape ``S``, float.
        dim: output channels (even); the first half is ``sin``, the second ``cos`` (concatenated,
            not interleaved), with frequency ``temperature ** (2 * (i // 2) / (dim / 2))``.

    Returns:
        ``S + (dim,)`` float32 tensor on ``pos_inds.device``.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=pos_inds.device)
    dim_t = temperature ** (2 * torch.div(exponent, 2, rounding_mode="floor") / half)
    angles = pos_inds.unsqueeze(-1) / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def memory_slot_frames(
    frame_idx: int, num_maskmem: int, stride: int = 1, reverse: bool = False
) -> Dict[int, int]:
    """The frames whose (non-conditioning) memories tracking ``frame_idx`` reads.

    Slot ``t_pos`` in ``1 .. num_maskmem-1`` (the latest frame has the largest ``t_pos``) maps to
    a frame index. The frame right before (after, in reverse) is always read; the older slots
    step by ``stride`` on the grid of multiples of ``stride``. Indices may be out of range
    (negative, or past the video): callers skip frames they do not have.

    Returns:
        ``{t_pos: frame index}`` in increasing ``t_pos``.
    """
    out: Dict[int, int] = {}
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos  # how many frames back
        if t_rel == 1:
            out[t_pos] = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            base = ((frame_idx - 2) // stride) * stride
            out[t_pos] = base - (t_rel - 2) * stride
        else:
            base = -(-(frame_idx + 2) // stride) * stride  # ceil to the stride grid
            out[t_pos] = base + (t_rel - 2) * stride
    return out


def apply_non_overlapping_constraints(pred_masks: torch.Tensor) -> torch.Tensor:
    """Keep, at each pixel, only the highest-scoring object's logit above -10.

    Args:
        pred_masks: ``(num_objects, 1, H, W)`` mask logits of the objects of one frame.

    Returns:
        Same shape; the other objects' logits are clamped to at most -10 (sigmoid ~ 4.5e-5).
    """
    n = pred_masks.size(0)
    if n == 1:
        return pred_masks
    winner = torch.argmax(pred_masks, dim=0, keepdim=True)
    ids = torch.arange(n, device=pred_masks.device)[:, None, None, None]
    return torch.where(winner == ids, pred_masks, pred_masks.clamp(max=-10.0))


def entry_field(entry: Any, name: str) -> Any:
    """A field of a stored frame output: ``entry[name]`` for upstream-style dicts, else the
    attribute (``maskmem_features``, ``obj_ptr``, ...). Missing fields read as None."""
    if isinstance(entry, Mapping):
        return entry.get(name)
    return getattr(entry, name, None)


def select_spatial_memories(
    frame_idx: int,
    cond: Mapping[int, V],
    non_cond: Mapping[int, V],
    num_maskmem: int,
    max_cond_frames_in_attn: int = -1,
    stride: int = 1,
    reverse: bool = False,
) -> Tuple[List[Tuple[int, V]], Dict[int, V], Dict[int, V]]:
    """Which stored frame outputs become spatial memories when tracking ``frame_idx``.

    Args:
        cond / non_cond: conditioning (prompted) and tracked frames' outputs, by frame index.
        num_maskmem: memory slots (7): conditioning frames use slot 0, and the
            ``num_maskmem - 1`` previous frames (see :func:`memory_slot_frames`) slots
            ``1 .. num_maskmem - 1``. A conditioning frame left out by
            ``max_cond_frames_in_attn`` may still fill a previous-frame slot.

    Returns:
        ``(memories, selected_cond, unselected_cond)``: ``memories`` is a list of
        ``(t_pos, entry)`` (conditioning frames first in insertion order, then increasing
        ``t_pos``; frames that are missing are skipped).
    """
    selected, unselected = select_closest_cond_frames(frame_idx, cond, max_cond_frames_in_attn)
    memories: List[Tuple[int, V]] = [(0, out) for out in selected.values()]
    for t_pos, t in memory_slot_frames(frame_idx, num_maskmem, stride, reverse).items():
        out = non_cond.get(t, unselected.get(t))
        if out is not None:
            memories.append((t_pos, out))
    return memories, selected, unselected


def pointer_window(num_frames: Optional[int], max_obj_ptrs_in_encoder: int) -> int:
    """How many frames' object pointers a frame may read: ``min(num_frames, max_obj_ptrs)``;
    an open-ended stream (``num_frames=None``) counts as long."""
    if num_frames is None:
        return int(max_obj_ptrs_in_encoder)
    return min(int(num_frames), int(max_obj_ptrs_in_encoder))


def select_object_pointers(
    frame_idx: int,
    selected_cond: Mapping[int, V],
    unselected_cond: Mapping[int, V],
    non_cond: Mapping[int, V],
    max_obj_ptrs: int,
    num_frames: Optional[int],
    reverse: bool = False,
    only_past: bool = True,
    signed: bool = False,
) -> List[Tuple[int, V]]:
    """The entries whose object pointers the memory attention reads when tracking ``frame_idx``.

    Conditioning-frame pointers come first (with ``only_past``, only those at or before the
    frame in tracking order), at temporal distance ``frame_idx - t`` (negated when tracking in
    reverse) if ``signed``, else ``|frame_idx - t|``. Then the pointers of the
    ``max_obj_ptrs - 1`` previous frames in tracking order (non-conditioning outputs, or
    unselected conditioning ones), at distance 1, 2, ...; the walk stops at the video's ends.

    Args:
        max_obj_ptrs: the window, :func:`pointer_window` of the video length.

    Returns:
        ``[(distance, entry)]`` in that order.
    """
    sign = -1 if reverse else 1
    if only_past:
        cond_items = [(t, o) for t, o in selected_cond.items()
                      if (t >= frame_idx if reverse else t <= frame_idx)]
    else:
        cond_items = list(selected_cond.items())
    out: List[Tuple[int, V]] = [
        ((frame_idx - t) * sign if signed else abs(frame_idx - t), o) for t, o in cond_items]
    for t_diff in range(1, max_obj_ptrs):
        t = frame_idx + t_diff if reverse else frame_idx - t_diff
        if t < 0 or (num_frames is not None and t >= num_frames):
            break
        o = non_cond.get(t, unselected_cond.get(t))
        if o is not None:
            out.append((t_diff, o))
    return out


def use_multimask(flags: Any, is_init_cond_frame: bool, num_points: int) -> bool:
    """SAM 2's rule for asking the decoder for 3 candidate masks instead of 1.

    Args:
        flags: anything with the model's ``multimask_output_in_sam``,
            ``multimask_output_for_tracking``, ``multimask_min_pt_num`` and
            ``multimask_max_pt_num`` (the model itself, or its tracking config).
        is_init_cond_frame: the object's first prompted frame.
        num_points: clicks (including box corners) on this frame; 0 when tracking.

    Returns:
        True on initial frames (and on tracked frames if ``multimask_output_for_tracking``)
        when the number of points is within ``[multimask_min_pt_num, multimask_max_pt_num]``.
    """
    return bool(flags.multimask_output_in_sam
                and (is_init_cond_frame or flags.multimask_output_for_tracking)
                and flags.multimask_min_pt_num <= num_points <= flags.multimask_max_pt_num)


def box_to_points(boxes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Boxes as SAM's two corner clicks.

    Args:
        boxes: ``(B, 4)`` (or ``(4,)``) float ``x0, y0, x1, y1``.

    Returns:
        ``((B, 2, 2) float32 corner coordinates, (B, 2) int32 labels 2 (top-left) and 3
        (bottom-right))``, on ``boxes.device``.
    """
    b = boxes.reshape(-1, 4).float()
    coords = b.reshape(-1, 2, 2)
    labels = torch.tensor([2, 3], dtype=torch.int32, device=boxes.device).expand(b.shape[0], 2)
    return coords, labels


def prompts_to_point_inputs(
    batch: int,
    point_coords: Optional[torch.Tensor] = None,
    point_labels: Optional[torch.Tensor] = None,
    boxes: Optional[torch.Tensor] = None,
) -> Optional[Dict[str, torch.Tensor]]:
    """Clicks and boxes as the model's point prompt (a box is two corner points, first).

    Args:
        batch: the batch size ``B`` the prompts must have.
        point_coords: ``(B, N, 2)`` float xy in model-input pixels, or ``None``.
        point_labels: ``(B, N)`` int (1 positive, 0 negative, -1 padding), with the coords.
        boxes: ``(B, 4)`` xyxy in model-input pixels; corners get labels 2 and 3.

    Returns:
        ``{"point_coords": (B, P, 2) float32, "point_labels": (B, P) int32}``, or ``None``
        without prompts.
    """
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    coords: List[torch.Tensor] = []
    labels: List[torch.Tensor] = []
    if boxes is not None:
        if tuple(boxes.shape) != (batch, 4):
            raise ValueError(f"boxes must be ({batch}, 4) xyxy, got {tuple(boxes.shape)}")
        box_coords, box_labels = box_to_points(boxes)
        coords.append(box_coords)
        labels.append(box_labels)
    if point_coords is not None and point_labels is not None:
        if point_coords.dim() != 3 or point_coords.shape[0] != batch or point_coords.shape[-1] != 2:
            raise ValueError(f"point_coords must be ({batch}, N, 2), got {tuple(point_coords.shape)}")
        if point_labels.shape != point_coords.shape[:2]:
            raise ValueError(f"point_labels must be {tuple(point_coords.shape[:2])}, got "
                             f"{tuple(point_labels.shape)}")
        coords.append(point_coords.float())
        labels.append(point_labels.to(torch.int32))
    if not coords:
        return None
    return {"point_coords": torch.cat(coords, dim=1), "point_labels": torch.cat(labels, dim=1)}
