"""Typed state for video tracking (what upstream keeps in an 18-key dict).

Two levels (one object's result on one frame is a :class:`~.entry.FrameOutput`):

* :class:`ObjectState`: one object's prompts, its memory bank and bookkeeping.
* :class:`VideoState`: the whole video (frames, sizes, devices, objects in insertion order).

``VideoState`` also answers the handful of dict keys that code written for upstream reads from
an ``inference_state`` (``state["obj_ids"]``, ``state["num_frames"]``, ...), so such code runs
unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ...modeling.rules import NO_OBJ_SCORE, box_to_points
from .. import prompts
from .bank import MemoryBank
from .entry import FrameOutput, PointInputs
from .frames import FrameFeed

__all__ = ["NO_OBJ_SCORE", "PointInputs", "FrameOutput", "ObjectState", "VideoState", "parse_point_prompt",
           "prepare_mask_prompt"]

@dataclass
class ObjectState:
    """One tracked object.

    ``temp_cond`` / ``temp_non_cond`` hold outputs of prompts not yet folded into the bank
    (upstream's ``temp_output_dict_per_obj``): their memories are encoded when propagation
    starts, after the user has finished clicking.
    """

    obj_id: Any
    bank: MemoryBank
    point_inputs: Dict[int, PointInputs] = field(default_factory=dict)
    mask_inputs: Dict[int, torch.Tensor] = field(default_factory=dict)
    temp_cond: Dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond: Dict[int, FrameOutput] = field(default_factory=dict)
    frames_tracked: Dict[int, bool] = field(default_factory=dict)
    """frame index -> whether it was tracked in reverse (upstream ``frames_tracked_per_obj``)."""

    def temp(self, is_cond: bool) -> Dict[int, FrameOutput]:
        return self.temp_cond if is_cond else self.temp_non_cond

    def lookup(self, frame_idx: int, is_cond: bool) -> Optional[FrameOutput]:
        """Latest output on a frame: temporary (same kind) first, then the bank."""
        out = self.temp(is_cond).get(frame_idx)
        if out is None:
            out = self.bank.get(frame_idx)
        return out


@dataclass
class VideoState:
    """All state of one video session of :class:`~sam2_plugins.predictors.video.predictor.SAM2VideoPredictor`.

    Attributes:
        frames: the lazy frame provider (decodes and normalises on demand, caches features).
        num_frames: number of frames.
        video_height, video_width: original frame size in pixels (outputs come back at it).
        device: where the model computes.
        storage_device: where per-frame outputs are kept (CPU with ``offload_state_to_cpu``).
        objects: object id -> :class:`ObjectState`, in the order objects were first prompted
            (that order is the row order of every returned mask tensor).
        constants: tensors shared by all frames (the memory's spatial position encoding).
    """

    frames: FrameFeed
    num_frames: int
    video_height: int
    video_width: int
    device: torch.device
    storage_device: torch.device
    objects: "OrderedDict[Any, ObjectState]" = field(default_factory=OrderedDict)
    constants: Dict[str, Any] = field(default_factory=dict)
    offload_video_to_cpu: bool = False
    offload_state_to_cpu: bool = False

    # ---- object bookkeeping -------------------------------------------------------------
    @property
    def obj_ids(self) -> List[Any]:
        """Object ids in row order of the returned masks."""
        return list(self.objects)

    def obj_idx(self, obj_id: Any) -> int:
        """Row index of an object id (raises ValueError for unknown ids)."""
        for i, k in enumerate(self.objects):
            if k == obj_id:
                return i
        raise ValueError(f"unknown object id {obj_id!r}; known ids: {self.obj_ids}")

    def get_object(self, obj_id: Any) -> ObjectState:
        if obj_id not in self.objects:
            raise ValueError(f"unknown object id {obj_id!r}; known ids: {self.obj_ids}")
        return self.objects[obj_id]

    def check_frame(self, frame_idx: Any) -> int:
        """Validate a frame index; returns it as int (IndexError when out of range)."""
        if isinstance(frame_idx, (bool, np.bool_)) or not isinstance(frame_idx, (int, np.integer)):
            raise TypeError(f"frame_idx must be an int, got {type(frame_idx).__name__}")
        idx = int(frame_idx)
        if not 0 <= idx < self.num_frames:
            raise IndexError(
                f"frame_idx {idx} is out of range for a video of {self.num_frames} frames "
                f"(valid: 0..{self.num_frames - 1})")
        return idx

    # ---- upstream dict compatibility -----------------------------------------------------
    _DICT_KEYS = ("images", "num_frames", "video_height", "video_width", "device",
                  "storage_device", "obj_ids", "obj_id_to_idx", "obj_idx_to_id",
                  "offload_video_to_cpu", "offload_state_to_cpu", "constants")

    def __getitem__(self, key: str) -> Any:
        """Read-only access with upstream's ``inference_state`` keys."""
        if key == "obj_id_to_idx":
            return OrderedDict((k, i) for i, k in enumerate(self.objects))
        if key == "obj_idx_to_id":
            return OrderedDict((i, k) for i, k in enumerate(self.objects))
        if key == "images":
            return self.frames
        if key in self._DICT_KEYS:
            return getattr(self, key)
        raise KeyError(f"{key!r} (VideoState supports upstream keys {', '.join(self._DICT_KEYS)})")

    def __contains__(self, key: object) -> bool:
        return key in self._DICT_KEYS

    def keys(self) -> List[str]:
        return list(self._DICT_KEYS)


def parse_point_prompt(points: Any, labels: Any, box: Any, clear_old_points: bool, *,
                       frame_size: Optional[Tuple[float, float]] = None, normalized: bool = False
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Validate clicks and box -> ((1, N, 2) float32 coords, (1, N) int32 labels).

    The rules are :mod:`sam2_plugins.predictors.prompts`' (shared with the image predictor):
    integer labels in (-1, 0, 1, 2, 3), finite coordinates, a box with flipped corners reordered
    with a warning. With ``frame_size=(W, H)``, points / boxes outside the frame warn
    (``normalized``: coordinates are in [0, 1]).
    """
    if (points is None) != (labels is None):
        raise ValueError("points and labels must be provided together")
    if points is None and box is None:
        raise ValueError("at least one of points or box must be provided as input")
    if points is None:
        coords, labs = torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.int32)
    else:
        coords = prompts.as_coords(points, "points")
        labs = prompts.as_labels(labels, "labels")
        if coords.dim() == 2:
            coords = coords[None]
        if labs.dim() == 1:
            labs = labs[None]
        if coords.dim() != 3 or coords.shape[0] != 1 or coords.shape[-1] != 2:
            raise ValueError(f"points must be (N, 2) XY coordinates, got shape {tuple(coords.shape)}")
        if labs.dim() != 2 or labs.shape != coords.shape[:2]:
            raise ValueError(f"labels must be (N,) matching points {tuple(coords.shape[1:2])}, "
                             f"got shape {tuple(labs.shape)}")
        if coords.shape[1] == 0 and box is None:
            raise ValueError("points is empty and no box was given: a prompt needs at least one "
                             "point or a box")
        if frame_size is not None:
            prompts.warn_outside(coords, frame_size[0], frame_size[1], normalized, "points", stacklevel=5)
    if box is not None:
        if not clear_old_points:
            raise ValueError("cannot add box without clearing old points, since box prompt must be "
                             "provided before any point prompt (please use clear_old_points=True instead)")
        b = prompts.as_coords(box, "box")
        if b.numel() != 4:
            raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got shape {tuple(b.shape)}")
        b = prompts.check_boxes(b.reshape(1, 4))
        if frame_size is not None:
            prompts.warn_outside(b.reshape(2, 2), frame_size[0], frame_size[1], normalized, "box", stacklevel=5)
        box_coords, box_labels = box_to_points(b.reshape(1, 4))
        coords = torch.cat([box_coords, coords], dim=1)
        labs = torch.cat([box_labels, labs], dim=1)
    return coords, labs


def prepare_mask_prompt(mask: Any, image_size: int, device: torch.device) -> torch.Tensor:
    """An (H, W) mask prompt (bool / 0-1, any size) -> (1, 1, S, S) float 0/1 on ``device``.

    As upstream: a mask of another size is resized with antialiased bilinear interpolation
    and thresholded at 0.5. Checks (:func:`sam2_plugins.predictors.prompts.as_mask_array`):
    numbers only, finite, 2D, non-empty; values other than 0/1 and an all-zero mask warn.
    """
    import torch.nn.functional as F

    m = prompts.as_mask_array(mask, "mask")
    m = m.float()[None, None].to(device)
    if tuple(m.shape[-2:]) != (image_size, image_size):
        m = F.interpolate(m, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=True)
        m = (m >= 0.5).float()
    return m
