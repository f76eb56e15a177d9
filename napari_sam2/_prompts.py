"""Prompts from napari layer data: clicks (Points), boxes (Shapes rectangles) and masks
(a Labels layer), grouped per frame and per object.

Pure numpy: these functions take the layers' arrays, not the layers, so they are tested
without napari. Coordinates: napari layer data are (..., y, x) in data pixels of the image;
SAM 2 takes (x, y). Boxes are returned as (x0, y0, x1, y1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "FramePrompt",
    "PromptSet",
    "collect_prompts",
    "masks_from_labels",
    "prompt_frames",
    "changed_prompts",
    "same_prompt",
]

Key = Tuple[int, ...]


@dataclass
class FramePrompt:
    """Everything one object has on one frame.

    Attributes:
        points: (N, 2) float32 pixel coordinates as (x, y).
        labels: (N,) int32, 1 positive / 0 negative.
        box: (4,) float32 (x0, y0, x1, y1) or None.
        mask: (H, W) bool or None (a mask prompt, e.g. from a Cellpose Labels layer).
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    box: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None

    @property
    def has_points_or_box(self) -> bool:
        return len(self.points) > 0 or self.box is not None

    @property
    def empty(self) -> bool:
        return not self.has_points_or_box and self.mask is None


PromptSet = Dict[Key, Dict[int, FramePrompt]]
"""frame key -> object id -> prompt."""


def _key_of(coord: np.ndarray, key_len: int, key_shape: Optional[Sequence[int]]) -> Key:
    lead = np.round(np.asarray(coord[:key_len], dtype=float)).astype(int)
    if key_shape is not None:
        lead = np.clip(lead, 0, np.asarray(key_shape) - 1)
    return tuple(int(v) for v in lead)


def collect_prompts(
    key_len: int,
    points: Optional[np.ndarray] = None,
    point_obj: Optional[Sequence[int]] = None,
    point_positive: Optional[Sequence[bool]] = None,
    boxes: Optional[Iterable[np.ndarray]] = None,
    box_obj: Optional[Sequence[int]] = None,
    masks: Optional[Mapping[Tuple[Key, int], np.ndarray]] = None,
    key_shape: Optional[Sequence[int]] = None,
) -> PromptSet:
    """Group layer data into per-frame, per-object prompts.

    Args:
        key_len: number of leading (non Y/X) coordinates of the layers (see
            :meth:`AxisSpec.key_length`).
        points: (N, key_len + 2) Points-layer data, (..., y, x).
        point_obj: (N,) object id per point; points with id <= 0 are ignored.
        point_positive: (N,) polarity per point.
        boxes: Shapes-layer rectangles, each (4, key_len + 2) vertices; the box is their
            bounding box on the frame of the first vertex. The last box of an object on a
            frame wins (SAM 2 takes one box per object and frame).
        box_obj: object id per box.
        masks: mask prompts, {(frame key, obj id): (H, W) bool}.
        key_shape: sizes of the leading axes, to clip rounded coordinates.
    """
    out: PromptSet = {}

    def slot(key: Key, oid: int) -> FramePrompt:
        return out.setdefault(key, {}).setdefault(oid, FramePrompt())

    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != key_len + 2:
            raise ValueError(f"points must be (N, {key_len + 2}), got {pts.shape}")
        objs = np.asarray(point_obj if point_obj is not None else np.ones(len(pts)), int)
        pos = np.asarray(point_positive if point_positive is not None else np.ones(len(pts)), bool)
        if len(objs) != len(pts) or len(pos) != len(pts):
            raise ValueError("point_obj and point_positive must have one entry per point")
        for p, oid, ps in zip(pts, objs, pos):
            if oid <= 0:
                continue
            fp = slot(_key_of(p, key_len, key_shape), int(oid))
            fp.points = np.concatenate([fp.points, np.asarray([[p[-1], p[-2]]], np.float32)])
            fp.labels = np.concatenate([fp.labels, np.asarray([1 if ps else 0], np.int32)])

    if boxes is not None:
        box_list = [np.asarray(b, dtype=np.float64) for b in boxes]
        bobj = list(box_obj) if box_obj is not None else [1] * len(box_list)
        if len(bobj) != len(box_list):
            raise ValueError("box_obj must have one entry per box")
        for verts, oid in zip(box_list, bobj):
            if int(oid) <= 0 or verts.size == 0:
                continue
            if verts.ndim != 2 or verts.shape[1] != key_len + 2:
                raise ValueError(f"box vertices must be (V, {key_len + 2}), got {verts.shape}")
            y0, x0 = verts[:, -2].min(), verts[:, -1].min()
            y1, x1 = verts[:, -2].max(), verts[:, -1].max()
            fp = slot(_key_of(verts[0], key_len, key_shape), int(oid))
            fp.box = np.asarray([x0, y0, x1, y1], np.float32)

    for (key, oid), m in (masks or {}).items():
        m = np.asarray(m, dtype=bool)
        if m.ndim != 2:
            raise ValueError(f"mask prompts must be (H, W), got {m.shape}")
        if m.any():
            slot(tuple(key), int(oid)).mask = m
    return out


def prompt_frames(prompts: PromptSet, fixed: Mapping[int, int], axis: int) -> Dict[int, Dict[int, FramePrompt]]:
    """The prompts of one 1D sequence of frames.

    Args:
        prompts: all prompts.
        fixed: key position -> index for every key position except ``axis``.
        axis: the key position that runs along the sequence (Z or T).

    Returns:
        sequence index -> object id -> prompt, for frames whose other indices match.
    """
    seq: Dict[int, Dict[int, FramePrompt]] = {}
    for key, objs in prompts.items():
        if all(key[i] == v for i, v in fixed.items()):
            nonempty = {o: p for o, p in objs.items() if not p.empty}
            if nonempty:
                seq[key[axis]] = nonempty
    return seq


def masks_from_labels(plane: np.ndarray, ids: Optional[Iterable[int]] = None) -> Dict[int, np.ndarray]:
    """Split a Labels plane into one boolean mask per label value.

    Args:
        plane: (H, W) integer labels (0 = background).
        ids: the values to take; all non-zero values when None.
    """
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise ValueError(f"expected a 2D labels plane, got shape {plane.shape}")
    vals: List[int] = [int(v) for v in (np.unique(plane) if ids is None else ids) if int(v) != 0]
    return {v: plane == v for v in vals if (plane == v).any()}


def changed_prompts(new: PromptSet, old: PromptSet) -> List[Tuple[Key, int]]:
    """(frame key, object id) pairs whose prompts differ between two prompt sets."""
    return sorted({(k, o) for k in set(new) | set(old) for o in set(new.get(k, {})) | set(old.get(k, {}))
                   if not same_prompt(new.get(k, {}).get(o), old.get(k, {}).get(o))})


def same_prompt(a: Optional[FramePrompt], b: Optional[FramePrompt]) -> bool:
    if a is None or b is None:
        return a is b
    return (np.array_equal(a.points, b.points) and np.array_equal(a.labels, b.labels)
            and ((a.box is None and b.box is None) or (a.box is not None and b.box is not None
                                                       and np.array_equal(a.box, b.box)))
            and (a.mask is b.mask or (a.mask is not None and b.mask is not None and np.array_equal(a.mask, b.mask))))
