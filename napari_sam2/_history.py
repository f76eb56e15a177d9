"""Undo / redo across prompts and results.

A :class:`Step` holds the pixel edits it made to output Labels arrays (only the changed
bounding box per plane, before and after) and opaque snapshots of the prompt state (points,
boxes, mask prompts, object list) before and after. napari's own Labels undo only knows brush
strokes; this stack also reverts clicks, propagations and commits.

Writing masks goes through :func:`write_mask`, which never overwrites another object's
pixels unless asked and returns the :class:`PlaneEdit` to record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

import numpy as np

from ._region import RegionMask

__all__ = ["PlaneEdit", "Step", "History", "write_mask", "write_plane", "write_region", "clear_object",
           "apply_step"]

Key = Tuple[int, ...]


@dataclass
class PlaneEdit:
    """A change to one (H, W) plane of an output array, cropped to what changed.

    ``target`` names the array (a Labels layer name); ``key`` is the frame key and
    ``bbox`` = (y0, y1, x0, x1) the changed box; ``before``/``after`` its pixels.
    """

    target: str
    key: Key
    bbox: Tuple[int, int, int, int]
    before: np.ndarray
    after: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.before.nbytes + self.after.nbytes)


@dataclass
class Step:
    """One undoable user action (a click, a propagation, a commit, a clear)."""

    label: str
    edits: List[PlaneEdit] = field(default_factory=list)
    state_before: Any = None
    state_after: Any = None

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.edits)


def write_mask(
    labels: np.ndarray,
    key: Key,
    obj_id: int,
    mask: Union[np.ndarray, RegionMask],
    overwrite: bool = False,
    target: str = "",
    apply: bool = True,
) -> Optional[PlaneEdit]:
    """Make ``mask`` the object's region on one plane of an instance Labels array.

    The object's previous pixels on that plane are cleared first. Unless ``overwrite``,
    pixels that belong to another object (non-zero, not ``obj_id``) are left alone.

    Args:
        labels: (..., H, W) integer array, edited in place.
        key: frame key (the leading indices).
        obj_id: the label value (> 0).
        mask: (H, W) bool, or a :class:`~napari_sam2._region.RegionMask` of the plane (then
            only the box around the object's old and new pixels is read and written).
        apply: write the result; False only computes the edit (the caller applies it, e.g.
            through napari's ``Labels.data_setitem`` for a partial redraw).

    Returns:
        The edit (for undo), or None when nothing changed.
    """
    plane = labels[tuple(key)]
    region = mask if isinstance(mask, RegionMask) else None
    if region is None:
        full = np.asarray(mask, dtype=bool)
        if full.shape != plane.shape:
            raise ValueError(f"mask shape {full.shape} does not match the plane {plane.shape}")
        region = RegionMask.from_full(full)
    elif region.shape != plane.shape:
        raise ValueError(f"mask of a {region.shape} plane does not match the plane {plane.shape}")
    # work inside the box around the object's old and new pixels only (objects are usually
    # small: one comparison pass over the plane finds the old box, the rest is local)
    old = plane == obj_id
    rows, cols = np.flatnonzero(old.any(axis=1)), np.flatnonzero(old.any(axis=0))
    boxes = [region.bbox] if region.crop.size else []
    if len(rows):
        boxes.append((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1))
    if not boxes:
        return None
    y0, y1 = min(b[0] for b in boxes), max(b[1] for b in boxes)
    x0, x1 = min(b[2] for b in boxes), max(b[3] for b in boxes)
    sub = plane[y0:y1, x0:x1]
    m = np.zeros(sub.shape, bool)
    if region.crop.size:
        ry0, ry1, rx0, rx1 = region.bbox
        m[ry0 - y0:ry1 - y0, rx0 - x0:rx1 - x0] = region.crop
    mine = sub == obj_id
    allowed = m if overwrite else m & ((sub == 0) | mine)
    new = sub.copy()  # boolean assignment: faster than np.where on ragged masks
    new[mine] = 0
    new[allowed] = obj_id
    e = _commit_plane(sub, new, key, target, apply)
    if e is not None:
        b = e.bbox
        e.bbox = (b[0] + y0, b[1] + y0, b[2] + x0, b[3] + x0)
    return e


def clear_object(labels: np.ndarray, obj_id: int, target: str = "") -> List[PlaneEdit]:
    """Set every pixel of ``obj_id`` to 0 on all planes; returns the edits."""
    edits: List[PlaneEdit] = []
    lead = labels.shape[:-2]
    for key in np.ndindex(*lead) if lead else [()]:
        plane = labels[key]
        if (plane == obj_id).any():
            new = np.where(plane == obj_id, 0, plane).astype(plane.dtype)
            e = _commit_plane(plane, new, tuple(key), target)
            if e is not None:
                edits.append(e)
    return edits


def write_region(labels: np.ndarray, key: Key, region: RegionMask, value: int, target: str = "") -> Optional[PlaneEdit]:
    """Set the pixels of ``region`` to ``value`` on one plane (whatever was there); only the
    region's box is read and recorded, so large planes cost what the object costs."""
    if not region.crop.size:
        return None
    y0, y1, x0, x1 = region.bbox
    plane = labels[tuple(key)]
    sub = plane[y0:y1, x0:x1]
    new = sub.copy()
    new[region.crop] = value
    e = _commit_plane(sub, new, key, target)
    if e is not None:
        b = e.bbox
        e.bbox = (b[0] + y0, b[1] + y0, b[2] + x0, b[3] + x0)
    return e


def write_plane(labels: np.ndarray, key: Key, new: np.ndarray, target: str = "") -> Optional[PlaneEdit]:
    """Replace one plane of ``labels`` by ``new`` (same (H, W)); returns the edit or None."""
    plane = labels[tuple(key)]
    new = np.asarray(new)
    if new.shape != plane.shape:
        raise ValueError(f"new plane {new.shape} does not match the plane {plane.shape}")
    return _commit_plane(plane, new.astype(plane.dtype, copy=False), key, target)


def _commit_plane(plane: np.ndarray, new: np.ndarray, key: Key, target: str,
                  apply: bool = True) -> Optional[PlaneEdit]:
    changed = new != plane
    if not changed.any():
        return None
    rows = np.flatnonzero(changed.any(axis=1))
    cols = np.flatnonzero(changed.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    before = plane[y0:y1, x0:x1].copy()
    after = new[y0:y1, x0:x1].copy()
    if apply:
        plane[y0:y1, x0:x1] = after
    return PlaneEdit(target, tuple(int(k) for k in key), (y0, y1, x0, x1), before, after)


def apply_step(step: Step, arrays: Mapping[str, np.ndarray], forward: bool) -> List[Tuple[str, Key]]:
    """Replay (``forward``) or revert a step's pixel edits; returns the touched planes.

    Edits are reverted in reverse order, so overlapping edits of one step unwind correctly.
    Edits to arrays no longer present (a deleted layer) are skipped.
    """
    touched: List[Tuple[str, Key]] = []
    seq = step.edits if forward else list(reversed(step.edits))
    for e in seq:
        arr = arrays.get(e.target)
        if arr is None:
            continue
        y0, y1, x0, x1 = e.bbox
        arr[e.key][y0:y1, x0:x1] = e.after if forward else e.before
        touched.append((e.target, e.key))
    return touched


class History:
    """A bounded undo / redo stack of :class:`Step` objects.

    Args:
        max_steps: oldest steps are dropped beyond this.
        max_bytes: ... or when their pixel edits exceed this (a long propagation of big
            frames could otherwise hold gigabytes).
    """

    def __init__(self, max_steps: int = 100, max_bytes: int = 512 * 2**20) -> None:
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self._undo: List[Step] = []
        self._redo: List[Step] = []
        self.on_change: List[Callable[[], None]] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def labels(self) -> Tuple[List[str], List[str]]:
        """Labels of the undo stack (oldest first) and of the redo stack (next first)."""
        return [s.label for s in self._undo], [s.label for s in reversed(self._redo)]

    def push(self, step: Step) -> None:
        self._undo.append(step)
        self._redo.clear()
        while len(self._undo) > self.max_steps or (
            len(self._undo) > 1 and sum(s.nbytes for s in self._undo) > self.max_bytes
        ):
            self._undo.pop(0)
        self._changed()

    def undo(self) -> Step:
        if not self._undo:
            raise RuntimeError("nothing to undo")
        step = self._undo.pop()
        self._redo.append(step)
        self._changed()
        return step

    def redo(self) -> Step:
        if not self._redo:
            raise RuntimeError("nothing to redo")
        step = self._redo.pop()
        self._undo.append(step)
        self._changed()
        return step

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._changed()

    def _changed(self) -> None:
        for cb in list(self.on_change):
            cb()
