"""One image being segmented: its pixels and axes, its prompts, objects, results and history.

The controller keeps one :class:`Session` per (image, labels shape): switching to another
image, or to axes that change the labels shape, parks the session with everything in it, and
switching back resumes it. Nothing here touches napari or Qt; the napari view mirrors a
session in layers (``SAM2 points`` / ``SAM2 boxes`` / ``SAM2 labels`` ...), whose arrays are
the session's own :attr:`Session.outputs` (no copy).

Coordinates: prompt arrays hold (..., y, x) positions in the image's data pixels (the frame
key first), as napari layers do; see :mod:`napari_sam2._prompts` for SAM 2's (x, y) order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from ._axes import AxisSpec, Limits, to_rgb8
from ._confidence import QualityLog
from ._history import History
from ._objects import ObjectList
from ._prompts import PromptSet, collect_prompts

__all__ = ["ImageSource", "Session", "Key"]

Key = Tuple[int, ...]


@dataclass
class ImageSource:
    """Where frames come from.

    Attributes:
        data: the full-resolution array (numpy, dask, zarr: anything sliceable; a lazy
            array is read one plane or one tile at a time).
        name: shown in messages and layer names.
        uid: identifies the image across renames (the view uses the layer's id).
        rgb: the last axis holds 3 / 4 colour samples.
        contrast: returns the current contrast limits (``(lo, hi)``, one per channel, or
            None: uint8 as is, other types their plane's range).
    """

    data: Any
    name: str
    uid: Hashable
    rgb: bool = False
    contrast: Callable[[], Limits] = field(default=lambda: None)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)


class Session:
    """Prompts, objects, results, history and confidence of one image (see module docstring)."""

    def __init__(self, source: ImageSource, spec: AxisSpec, sid: int) -> None:
        self.source = source
        self.spec = spec
        self.sid = sid
        self.lshape: Tuple[int, ...] = spec.labels_shape(source.shape)
        nd = len(self.lshape)
        self.points = np.zeros((0, nd), float)
        self.point_obj = np.zeros(0, int)
        self.point_pos = np.zeros(0, bool)
        self.boxes: List[np.ndarray] = []
        self.box_obj: List[int] = []
        self.mask_prompts: Dict[Tuple[Key, int], np.ndarray] = {}
        self.outputs: Dict[str, np.ndarray] = {}
        self.objects = ObjectList()
        self.history = History()
        self.quality = QualityLog()
        self.applied: PromptSet = {}  # the prompts the current masks were predicted from
        self.state: Dict[str, Any] = self.snapshot()

    # -- geometry -------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.lshape)

    @property
    def key_shape(self) -> Tuple[int, ...]:
        return self.lshape[:-2]

    @property
    def hw(self) -> Tuple[int, int]:
        return int(self.lshape[-2]), int(self.lshape[-1])

    def stack_axes(self) -> Dict[str, int]:
        return self.spec.stack_axes(self.source.shape)

    # -- pixels ---------------------------------------------------------------------------
    def read_frame(self, key: Key) -> np.ndarray:
        """(H, W, 3) uint8 of a whole frame, windowed with the current contrast limits."""
        return to_rgb8(self.spec.plane(self.source.data, key), self.source.contrast())

    def read_window(self, key: Key, box: Tuple[int, int, int, int]) -> np.ndarray:
        """(h, w, 3) uint8 of the window ``box`` = (y0, y1, x0, x1) of a frame: only that
        window is read from a lazy array. Without contrast limits the window is scaled by
        the dtype's range (integers) or the window's own range (floats), never by a range
        that depends on which tile is read, so tiles agree with each other."""
        plane = self.spec.plane(self.source.data, key, window=box)
        lim = self.source.contrast()
        if lim is None and plane.dtype != np.uint8 and np.issubdtype(plane.dtype, np.integer):
            info = np.iinfo(plane.dtype)
            lim = (float(max(info.min, 0)), float(info.max))
        return to_rgb8(plane, lim)

    def frame_token(self, key: Key, window: Optional[Tuple[int, int, int, int]] = None) -> Tuple[Any, ...]:
        """Identifies the pixels SAM 2 would see for ``key`` (and ``window``): image, axes,
        channels and contrast limits."""
        lim = self.source.contrast()
        lim_t = None if lim is None else tuple(np.asarray(lim, float).ravel().tolist())
        return (self.source.uid, self.spec, tuple(key), window, lim_t)

    # -- results ---------------------------------------------------------------------------
    def output(self, target: str) -> np.ndarray:
        """The Labels array ``target`` ("instances", "obj<id>", "automatic"), created empty
        on first use (``np.zeros`` reserves memory only where pixels get written)."""
        arr = self.outputs.get(target)
        if arr is None:
            arr = self.outputs[target] = np.zeros(self.lshape, np.int32)
        return arr

    # -- prompts ---------------------------------------------------------------------------
    def collect(self) -> PromptSet:
        """All prompts now held (clicks, boxes, mask prompts), per frame and object."""
        n = self.ndim - 2
        return collect_prompts(n, points=self.points, point_obj=self.point_obj, point_positive=self.point_pos,
                               boxes=self.boxes, box_obj=self.box_obj, masks=self.mask_prompts,
                               key_shape=self.key_shape)

    def set_prompts(self, points: np.ndarray, point_obj: Sequence[int], point_pos: Sequence[bool],
                    boxes: Sequence[np.ndarray], box_obj: Sequence[int]) -> None:
        """Replace clicks and boxes (positions (..., y, x) in data pixels, one row per point;
        boxes as (V, ndim) vertices)."""
        pts = np.asarray(points, float).reshape(-1, self.ndim)
        if len(point_obj) != len(pts) or len(point_pos) != len(pts):
            raise ValueError(f"{len(pts)} points need as many object ids and polarities, got "
                             f"{len(point_obj)} and {len(point_pos)}")
        if len(box_obj) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes need as many object ids, got {len(box_obj)}")
        self.points, self.point_obj = pts, np.asarray(point_obj, int)
        self.point_pos = np.asarray(point_pos, bool)
        self.boxes = [np.asarray(b, float) for b in boxes]
        self.box_obj = [int(o) for o in box_obj]

    def drop_prompts(self, obj_id: int) -> None:
        """Forget every click, box and mask prompt of one object."""
        keep = self.point_obj != obj_id
        self.points, self.point_obj, self.point_pos = self.points[keep], self.point_obj[keep], self.point_pos[keep]
        kept = [(b, o) for b, o in zip(self.boxes, self.box_obj) if o != obj_id]
        self.boxes, self.box_obj = [b for b, _ in kept], [o for _, o in kept]
        self.mask_prompts = {k: v for k, v in self.mask_prompts.items() if k[1] != obj_id}

    # -- snapshots (undo) -------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """The prompt state (prompts, objects, confidence), to restore on undo / redo."""
        return {"points": (self.points.copy(), self.point_obj.copy(), self.point_pos.copy()),
                "boxes": ([b.copy() for b in self.boxes], list(self.box_obj)),
                "masks": dict(self.mask_prompts), "objects": self.objects.snapshot(),
                "quality": self.quality.snapshot()}

    def restore(self, snap: Dict[str, Any]) -> None:
        self.points, self.point_obj, self.point_pos = (a.copy() for a in snap["points"])
        boxes, box_obj = snap["boxes"]
        self.boxes, self.box_obj = [b.copy() for b in boxes], list(box_obj)
        self.mask_prompts = dict(snap["masks"])
        self.objects.restore(snap["objects"])
        self.quality.restore(snap["quality"])
        self.applied = self.collect()
        self.state = snap
