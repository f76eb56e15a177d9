"""The napari side of a session: its prompt and result layers, kept in step with the controller.

Per session (one image, see ``_session.py``) the view owns a ``SAM2 points [image]`` layer
(clicks; features ``obj_id`` and ``positive``), a ``SAM2 boxes [image]`` layer (rectangles;
feature ``obj_id``) and one Labels layer per result array (``SAM2 labels [image]``, or
``SAM2 object <id> [image]`` per object, and ``SAM2 automatic [image]``) whose data *is* the
session's array. Layers of other sessions are never removed; a layer the user deleted is
made again (with the session's data) the next time it is needed.

* controller -> layers: :meth:`LayerBridge.sync_prompts` rewrites the prompt layers (muted);
* layers -> controller: edits of the prompt layers (napari's add / move / delete tools) call
  back with the layers' full contents;
* mask writes on the displayed plane go through ``Labels.data_setitem`` with the changed pixels
  only, so napari redraws just them (:meth:`LayerBridge.write`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ._history import PlaneEdit
from ._session import Key, Session

__all__ = ["LayerBridge", "SessionLayers", "POS_COLOR", "NEG_COLOR"]

POS_COLOR, NEG_COLOR = "#33dd55", "#ff3344"
_SHAPES = ("rectangle", "polygon")


@dataclass
class SessionLayers:
    image: Any
    points: Any = None
    boxes: Any = None
    outputs: Dict[str, Any] = field(default_factory=dict)


def _geometry(image: Any, session: Session) -> Dict[str, Any]:
    scale, translate = list(image.scale), list(image.translate)
    ca = session.spec.channel_axis
    if ca is not None and not session.spec.rgb:
        scale.pop(ca % len(scale))
        translate.pop(ca % len(translate))
    return {"scale": scale, "translate": translate}


class LayerBridge:
    """See the module docstring. ``on_edit(session, layers)`` is called after the user edited
    a session's prompt layers."""

    def __init__(self, viewer: Any, on_edit: Callable[[Session, SessionLayers], None]) -> None:
        self.viewer = viewer
        self.on_edit = on_edit
        self.by_sid: Dict[int, SessionLayers] = {}
        self._muted = False
        self.positive = True  # polarity of the next click added in a points layer
        self.closed = False  # the dock is gone: touch no layer any more

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        old, self._muted = self._muted, True
        try:
            yield
        finally:
            self._muted = old

    def alive(self, layer: Any) -> bool:
        return not self.closed and layer is not None and layer in self.viewer.layers

    def _name(self, s: Session, what: str) -> str:
        return f"SAM2 {what} [{s.source.name}]"

    # -- creation ---------------------------------------------------------------------
    def ensure(self, s: Session, image: Any) -> SessionLayers:
        """The session's prompt layers (made if missing) and its result layers."""
        if self.closed:
            return self.by_sid.get(s.sid) or SessionLayers(image)
        sl = self.by_sid.setdefault(s.sid, SessionLayers(image))
        sl.image = image
        geo = _geometry(image, s)
        nd = s.ndim
        with self.muted():
            for tid in s.outputs:
                self.output_layer(s, tid)
            if not self.alive(sl.boxes):
                sl.boxes = self.viewer.add_shapes(
                    np.zeros((0, 4, nd)), ndim=nd, name=self._name(s, "boxes"), edge_width=2,
                    face_color="transparent", edge_color="yellow", features={"obj_id": np.zeros(0, int)}, **geo)
                sl.boxes.events.data.connect(lambda e, s=s: self._edited(s, e))
            if not self.alive(sl.points):
                sl.points = self.viewer.add_points(
                    np.zeros((0, nd)), ndim=nd, name=self._name(s, "points"), size=int(np.clip(min(s.hw) // 40, 3, 10)),
                    features={"obj_id": np.zeros(0, int), "positive": np.zeros(0, bool)}, **geo)
                sl.points.events.data.connect(lambda e, s=s: self._edited(s, e))
        self.sync_prompts(s)
        self.raise_prompts(s)
        return sl

    def output_layer(self, s: Session, tid: str) -> Optional[Any]:
        """The Labels layer of result array ``tid`` (made, on the session's array, if missing)."""
        sl = self.by_sid.get(s.sid)
        if sl is None or tid not in s.outputs or self.closed:
            return None
        layer = sl.outputs.get(tid)
        if not self.alive(layer):
            what = {"instances": "labels", "automatic": "automatic"}.get(tid, f"object {tid[3:]}")
            layer = self.viewer.add_labels(s.outputs[tid], name=self._name(s, what), **_geometry(sl.image, s))
            sl.outputs[tid] = layer
            self.recolor(s)
            self.raise_prompts(s)
        return layer

    def raise_prompts(self, s: Session) -> None:
        """Prompt layers on top, the points layer active and in add mode (a click adds)."""
        sl = self.by_sid.get(s.sid)
        if sl is None:
            return
        for top in (sl.boxes, sl.points):
            if self.alive(top):
                self.viewer.layers.move(self.viewer.layers.index(top), len(self.viewer.layers))
        if self.alive(sl.points):
            self.viewer.layers.selection.active = sl.points
            if sl.points.mode not in ("add", "select"):
                sl.points.mode = "add"

    def recolor(self, s: Session) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        sl = self.by_sid.get(s.sid)
        if sl is None:
            return
        cmap = DirectLabelColormap(color_dict=s.objects.color_dict())
        for tid, ly in sl.outputs.items():
            if tid != "automatic" and self.alive(ly):
                ly.colormap = cmap

    # -- prompts ----------------------------------------------------------------------
    def set_defaults(self, s: Session, positive: Optional[bool] = None) -> None:
        """What the next click / box gets: the current object and the polarity."""
        if positive is not None:
            self.positive = bool(positive)
        positive = self.positive
        sl = self.by_sid.get(s.sid)
        if sl is None or not self.alive(sl.points):
            return
        oid = s.objects.current_id
        p, b = sl.points, sl.boxes
        # napari copies a selected item's features into the defaults and applies "current"
        # colours to selected items: deselect first, so that existing clicks keep theirs
        p.selected_data = set()
        p.current_face_color = POS_COLOR if positive else NEG_COLOR
        p.feature_defaults = {"obj_id": oid, "positive": bool(positive)}
        if self.alive(b):
            b.selected_data = set()
            b.feature_defaults = {"obj_id": oid}
            obj = s.objects.current
            if obj is not None:
                b.current_edge_color = obj.color

    def sync_prompts(self, s: Session) -> None:
        """Make the prompt layers show the session's prompts (muted: no call back). Layers that
        already agree are left alone; one click more is appended (what a click costs napari),
        anything else is rewritten."""
        sl = self.by_sid.get(s.sid)
        if sl is None:
            return
        with self.muted():
            p = sl.points
            if self.alive(p):
                self._sync_points(s, p)
            b = sl.boxes
            if self.alive(b) and not self._boxes_agree(s, b):
                b.selected_data = set()
                b.data = []
                if s.boxes:
                    b.add([v.copy() for v in s.boxes], shape_type="rectangle",
                          edge_color=[s.objects[o].color if o in s.objects else (1, 1, 0, 1) for o in s.box_obj])
                b.features = {"obj_id": np.asarray(s.box_obj, int)}
        self.set_defaults(s)  # setting features resets napari's defaults

    def _sync_points(self, s: Session, p: Any) -> None:
        n = len(p.data)
        f = p.features
        same = (n <= len(s.points) and np.array_equal(np.asarray(p.data), s.points[:n])
                and np.array_equal(np.asarray(f["obj_id"]), s.point_obj[:n])
                and np.array_equal(np.asarray(f["positive"]), s.point_pos[:n]))
        if same and n == len(s.points):
            return
        if same and n == len(s.points) - 1:
            pos = bool(s.point_pos[-1])
            p.selected_data = set()
            p.feature_defaults = {"obj_id": int(s.point_obj[-1]), "positive": pos}
            p.current_face_color = POS_COLOR if pos else NEG_COLOR
            p.add(s.points[-1:].copy())
            return
        p.selected_data = set()
        p.data = s.points.copy()
        p.features = {"obj_id": s.point_obj.copy(), "positive": s.point_pos.copy()}
        if len(s.points):
            p.face_color = [POS_COLOR if v else NEG_COLOR for v in s.point_pos]

    @staticmethod
    def _boxes_agree(s: Session, b: Any) -> bool:
        if len(b.data) != len(s.boxes):
            return False
        objs = list(b.features["obj_id"]) if "obj_id" in b.features else []
        return objs == list(s.box_obj) and all(np.array_equal(np.asarray(d), v) for d, v in zip(b.data, s.boxes))

    def read_prompts(self, sl: SessionLayers) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[np.ndarray], List[int]]:
        """(points, point_obj, point_pos, boxes, box_obj) as the layers hold them."""
        p, b = sl.points, sl.boxes
        pf = p.features
        boxes, box_obj = [], []
        if self.alive(b) and len(b.data):
            objs = list(b.features["obj_id"]) if "obj_id" in b.features else [0] * len(b.data)
            for d, t, o in zip(b.data, b.shape_type, objs):
                if t in _SHAPES:
                    boxes.append(np.asarray(d, float))
                    box_obj.append(int(o))
        return (np.array(p.data, float), np.array(pf["obj_id"], int), np.array(pf["positive"], bool),
                boxes, box_obj)

    def _edited(self, s: Session, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if self._muted or action.endswith(("adding", "removing", "changing")):
            return
        sl = self.by_sid.get(s.sid)
        if sl is not None:
            self.on_edit(s, sl)

    # -- results ----------------------------------------------------------------------
    def shown_key(self, s: Session) -> Optional[Key]:
        """The frame key on screen when the canvas shows a plain (Y, X) slice, else None."""
        sl = self.by_sid.get(s.sid)
        d = self.viewer.dims
        if sl is None or d.ndisplay != 2 or tuple(d.displayed) != (d.ndim - 2, d.ndim - 1):
            return None
        pos = list(sl.image.world_to_data(d.point))
        ca = s.spec.channel_axis
        if ca is not None and not s.spec.rgb:
            pos.pop(ca % len(pos))
        return s.spec.frame_key(s.source.shape, pos)

    def write(self, s: Session, tid: str, e: PlaneEdit) -> bool:
        """The controller's writer: a write on the displayed plane goes through
        ``Labels.data_setitem`` with the changed pixels (napari redraws only them). Returns
        False for other planes (written directly)."""
        layer = self.output_layer(s, tid)
        if layer is None or tuple(e.key) != self.shown_key(s):
            return False
        y0, _, x0, _ = e.bbox
        changed = e.before != e.after
        yy, xx = np.nonzero(changed)
        index = tuple(np.full(len(yy), k) for k in e.key) + (yy + y0, xx + x0)
        # napari redraws just the changed box (and records the edit in its own undo)
        layer.data_setitem(index, e.after[changed], refresh=True)
        return True

    def redraw(self, s: Session, targets: Any, full: bool) -> None:
        sl = self.by_sid.get(s.sid)
        if sl is None or self.closed:
            return
        plain = self.shown_key(s) is not None
        for tid in targets:
            layer = self.output_layer(s, tid)
            if layer is not None and (full or not plain):  # displayed planes redraw in write()
                layer.refresh()
