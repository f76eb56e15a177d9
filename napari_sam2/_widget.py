"""The dock widget: image / axes / model choice, prompts from layers, objects, undo.

Propagation, automatic mode, model loading and the confidence view are in
``_widget_run.py``, undo and objects in ``_widget_edit.py``, the output Labels layers and mask
writes in ``_widget_output.py`` (mixins); computation is in plain modules (``_engine``,
``_prompts``, ``_history``, ``_region``, ...). Every user action goes through
:func:`napari_sam2._guard.guard` (workers report through the same path), so bad input
becomes a napari notification, never a traceback dialog.

Layers the widget creates (for the chosen image; same scale / translate):
``SAM2 points`` (clicks: features ``obj_id``, ``positive``), ``SAM2 boxes`` (rectangles:
feature ``obj_id``) and ``SAM2 labels`` (instances; or ``SAM2 object <id>`` per object).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QWidget

from ._axes import MAX_PIXELS, AxisSpec, default_mode, level0, to_rgb8
from ._embedding_cache import EmbeddingCache
from ._guard import guard, notify
from ._history import History, Step
from ._objects import ObjectList
from ._prompts import FramePrompt, PromptSet, collect_prompts, masks_from_labels
from ._region import RegionMask
from ._widget_edit import EditMixin
from ._widget_output import OutputMixin
from ._widget_run import RunMixin
from ._widget_ui import Controls

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["SAM2Widget"]

Key = Tuple[int, ...]
POS_COLOR, NEG_COLOR = "#33dd55", "#ff3344"


def _same(a: Optional[FramePrompt], b: Optional[FramePrompt]) -> bool:
    if a is None or b is None:
        return a is b
    return (np.array_equal(a.points, b.points) and np.array_equal(a.labels, b.labels)
            and ((a.box is None and b.box is None) or (a.box is not None and b.box is not None
                                                       and np.array_equal(a.box, b.box)))
            and (a.mask is b.mask or (a.mask is not None and b.mask is not None
                                      and np.array_equal(a.mask, b.mask))))


class SAM2Widget(OutputMixin, EditMixin, RunMixin, QWidget):
    """Interactive SAM 2 segmentation of images, Z stacks, time-lapses and 3D+t.

    Args:
        viewer: the napari viewer (napari passes it).
        threaded: run encoding / propagation in thread workers (the default; tests may
            turn it off, as does the environment variable ``NAPARI_SAM2_NOTHREADS=1``).
    """

    def __init__(self, viewer: "napari.viewer.Viewer", threaded: bool = True) -> None:
        super().__init__()
        self.viewer = viewer
        self.threaded = threaded and not os.environ.get("NAPARI_SAM2_NOTHREADS")
        self.ui = Controls(self)
        # napari's activity-panel spinner is cheap with hardware OpenGL and costly with a
        # software renderer (see _gl.py): list propagation there by default only in the former
        from ._gl import software_opengl

        self.ui.activity_progress.setChecked(not software_opengl(viewer))
        self.objects = ObjectList()
        self.history = History()
        self.cache = EmbeddingCache()
        self.engine = None
        self.last_message = ""
        self.points_layer = None
        self.shapes_layer = None
        self._outputs: Dict[str, Any] = {}  # target id -> Labels layer
        self._session: Optional[Tuple[int, AxisSpec, Tuple[int, ...]]] = None
        self._prompts: PromptSet = {}
        self._mask_prompts: Dict[Tuple[Key, int], np.ndarray] = {}
        self._state = None  # prompt state after the last recorded step
        self._muted = False
        self._pending = False
        self._init_run()
        self._connect()
        self._refresh_layer_combos()
        self._bind_keys()

    # ------------------------------------------------------------------ plumbing
    def _error(self, exc: BaseException) -> None:
        self.last_message = f"SAM 2: {exc}"
        notify(self.last_message, "error")

    def _info(self, msg: str) -> None:
        self.last_message = msg
        notify(msg, "info")

    def _connect(self) -> None:
        u = self.ui
        self.viewer.layers.events.inserted.connect(self._refresh_layer_combos)
        self.viewer.layers.events.removed.connect(self._refresh_layer_combos)
        u.image_combo.currentTextChanged.connect(self._on_image_choice)
        u.load_button.clicked.connect(lambda: self.load_model())
        u.add_object.clicked.connect(lambda: self.new_object())
        u.delete_object.clicked.connect(lambda: self.delete_object())
        u.clear_object.clicked.connect(lambda: self.clear_current_object())
        u.color_object.clicked.connect(self._pick_color)
        u.object_list.currentRowChanged.connect(self._on_list_row)
        u.object_list.itemChanged.connect(self._on_item_renamed)
        u.negative.toggled.connect(lambda _: self._update_defaults())
        u.mask_button.clicked.connect(lambda: self.use_mask_prompt())
        u.undo_button.clicked.connect(lambda: self.undo())
        u.redo_button.clicked.connect(lambda: self.redo())
        u.commit_button.clicked.connect(lambda: self.commit())
        self.objects.changed.connect(self._sync_object_list)
        self.objects.selected.connect(lambda _: self._sync_object_list())
        self._connect_run()

    def _bind_keys(self) -> None:
        binds = {"t": self.toggle_polarity, "n": lambda: self.new_object(),
                 "Shift-P": lambda: self.propagate(), "Shift-J": lambda: self.next_flagged(),
                 "u": lambda: self.undo(), "Shift-U": lambda: self.redo(),
                 "Shift-C": lambda: self.clear_current_object()}
        for key, fn in binds.items():
            self.viewer.bind_key(key, lambda _v, fn=fn: fn(), overwrite=True)
        self._BOUND_KEYS = [k for k in self.viewer.keymap
                            if str(k).replace("+", "-").lower() in {b.lower() for b in binds}]
        if self._on_mouse not in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.append(self._on_mouse)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        """Closing the dock: stop the worker, and unhook our keys and mouse callback from
        the viewer (they would otherwise outlive the widget)."""
        self.cancel()
        for key in self._BOUND_KEYS:
            self.viewer.keymap.pop(key, None)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        self.viewer.layers.events.inserted.disconnect(self._refresh_layer_combos)
        self.viewer.layers.events.removed.disconnect(self._refresh_layer_combos)
        super().closeEvent(event)

    def _refresh_layer_combos(self, event: Any = None) -> None:
        from napari.layers import Image, Labels

        ours = ("SAM2 labels", "SAM2 object ")  # our outputs are no mask prompts
        for combo, kind, skip in ((self.ui.image_combo, Image, ()),
                                  (self.ui.mask_layer_combo, Labels, ours)):
            cur = combo.currentText()
            names = [ly.name for ly in self.viewer.layers
                     if isinstance(ly, kind) and not (skip and ly.name.startswith(skip))]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if cur in names:
                combo.setCurrentText(cur)
            combo.blockSignals(False)
        if self.ui.image_combo.currentText() and self._session is None:
            self._on_image_choice(self.ui.image_combo.currentText())

    def _on_image_choice(self, name: str) -> None:
        if name in self.viewer.layers:
            ly = self.viewer.layers[name]
            self.ui.mode_combo.setCurrentText(default_mode(level0(ly).shape, bool(getattr(ly, "rgb", False))))

    # ------------------------------------------------------------------ image and axes
    @property
    def image_layer(self):
        name = self.ui.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("no image layer: open or choose an image first")
        return self.viewer.layers[name]

    def axis_spec(self) -> AxisSpec:
        """The axes from the UI, validated against the chosen image (ValueError if wrong)."""
        ly = self.image_layer
        rgb = bool(getattr(ly, "rgb", False))
        ca = self.ui.channel_axis.value()
        chans = tuple(int(c) for c in self.ui.channels_edit.text().replace(" ", "").split(",") if c)
        spec = AxisSpec(self.ui.mode_combo.currentText(), None if ca < 0 or rgb else ca, chans, rgb)
        if spec.channel_axis not in (None, 0):
            raise ValueError(f"channel axis {ca}: only a first channel axis is supported (napari "
                             "aligns the output layers to the trailing axes); move it first, or "
                             "open the file with channel_axis so channels become layers")
        spec.labels_shape(level0(ly).shape)  # validates
        return spec

    def _ensure_session(self) -> Tuple[Any, AxisSpec, Tuple[int, ...]]:
        """Create the prompt and output layers for the current image and axes (once)."""
        ly = self.image_layer
        spec = self.axis_spec()
        lshape = spec.labels_shape(level0(ly).shape)
        if lshape[-2] * lshape[-1] > MAX_PIXELS:
            raise ValueError(f"the image plane is {lshape[-2]}x{lshape[-1]} pixels, more than "
                             f"{MAX_PIXELS // 2**20} MP: crop it or use a lower-resolution level")
        sess = (id(ly), spec, lshape)
        gone = any(x is None or x not in self.viewer.layers for x in (self.points_layer, self.shapes_layer))
        if self._session != sess or gone:  # a new image / axes, or our prompt layers were deleted
            self._start_session(ly, spec, lshape)
        return ly, spec, lshape

    def _layer_geometry(self, ly: Any, spec: AxisSpec) -> Dict[str, Any]:
        scale, translate = list(ly.scale), list(ly.translate)
        if spec.channel_axis is not None:
            scale.pop(spec.channel_axis)
            translate.pop(spec.channel_axis)
        return {"scale": scale, "translate": translate}

    def _start_session(self, ly: Any, spec: AxisSpec, lshape: Tuple[int, ...]) -> None:
        for layer in [self.points_layer, self.shapes_layer, self.auto_layer, *self._outputs.values()]:
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._outputs.clear()
        self.auto_layer = None
        geo = self._layer_geometry(ly, spec)
        ndim = len(lshape)
        self.history.clear()
        self.quality.clear()
        self._mask_prompts.clear()
        self._prompts = {}
        self._session = (id(ly), spec, lshape)
        if not len(self.objects):
            self.objects.add()
        self.shapes_layer = self.viewer.add_shapes(
            np.zeros((0, 4, ndim)), ndim=ndim, name="SAM2 boxes", edge_width=2, face_color="transparent",
            edge_color="yellow", features={"obj_id": np.zeros(0, int)}, **geo)
        self.points_layer = self.viewer.add_points(
            np.zeros((0, ndim)), ndim=ndim, name="SAM2 points", size=max(3, min(lshape[-2:]) // 40),
            features={"obj_id": np.zeros(0, int), "positive": np.zeros(0, bool)}, **geo)
        self.points_layer.mode = "add"
        self.points_layer.events.data.connect(self._on_layer_data)
        self.shapes_layer.events.data.connect(self._on_layer_data)
        self._update_defaults()
        self._state = self._snapshot()
        self._refresh_layer_combos()

    def current_key(self) -> Key:
        """Frame key of the viewer's current position in the chosen image."""
        ly, spec, lshape = self._ensure_session()
        pos = list(ly.world_to_data(self.viewer.dims.point))
        if spec.channel_axis is not None:
            pos.pop(spec.channel_axis)
        return spec.frame_key(level0(ly).shape, pos)

    def read_frame(self, key: Key) -> np.ndarray:
        """(H, W, 3) uint8 of a frame, windowed with the layer's current contrast limits."""
        return self.frame_reader()(key)

    def frame_reader(self) -> Callable[[Key], np.ndarray]:
        """A frame reader bound to the current image, axes and contrast: safe to call from
        a worker thread (it touches no layer state)."""
        ly, spec, _ = self._ensure_session()
        data, contrast = level0(ly), self._contrast(ly)
        return lambda key: to_rgb8(spec.plane(data, key), contrast)

    def _contrast(self, ly: Any) -> Optional[Tuple[float, float]]:
        if getattr(ly, "rgb", False) and level0(ly).dtype == np.uint8:
            return None
        return tuple(float(v) for v in ly.contrast_limits)  # type: ignore[return-value]

    def frame_token(self, key: Key) -> Tuple[Any, ...]:
        ly, spec, _ = self._ensure_session()
        return (id(ly), spec, key, self._contrast(ly))

    # ------------------------------------------------------------------ prompts
    def _update_defaults(self) -> None:
        """What the next click / box gets: current object and polarity (features, colours)."""
        if self.points_layer is None:
            return
        pos = not self.ui.negative.isChecked()
        oid = self.objects.current_id
        obj = self.objects.current
        p, s = self.points_layer, self.shapes_layer
        # napari applies "current" colours to the selected items and copies a selected
        # item's features into the defaults: deselect first, so that toggling polarity
        # never recolours existing clicks and the defaults stick
        p.selected_data, s.selected_data = set(), set()
        p.current_face_color = POS_COLOR if pos else NEG_COLOR
        if obj is not None:
            s.current_edge_color = QColor.fromRgbF(*obj.color[:3]).name()
        p.feature_defaults = {"obj_id": oid, "positive": pos}
        s.feature_defaults = {"obj_id": oid}

    def toggle_polarity(self) -> None:
        self.ui.negative.setChecked(not self.ui.negative.isChecked())

    @guard
    def add_click(self, position: Any, positive: Optional[bool] = None, obj_id: Optional[int] = None) -> None:
        """Add a click at ``position`` (data coordinates of the output layers: (..., y, x))."""
        self._ensure_session()
        if positive is not None and positive == self.ui.negative.isChecked():
            self.toggle_polarity()
        if obj_id is not None:
            self.objects.ensure(obj_id)
            self.objects.select(obj_id)
        if not self.objects.current_id:
            self.objects.add()
        if self.points_layer.feature_defaults["obj_id"][0] != self.objects.current_id:
            self._update_defaults()
        self.points_layer.add(np.asarray(position, dtype=float)[None])

    @guard
    def add_box(self, corner0: Any, corner1: Any, obj_id: Optional[int] = None) -> None:
        """Add a box between two corners (data coordinates, (..., y, x), same frame)."""
        self._ensure_session()
        if obj_id is not None:
            self.objects.ensure(obj_id)
            self.objects.select(obj_id)
        self._update_defaults()
        self.shapes_layer.add_rectangles(np.stack([np.asarray(corner0, float), np.asarray(corner1, float)])[None])

    def _on_mouse(self, viewer: Any, event: Any) -> None:
        if getattr(event, "button", None) != 3:
            return  # middle button only: left clicks stay napari's
        try:
            ly, spec, _ = self._ensure_session()
            pos = list(ly.world_to_data(event.position))
        except Exception as exc:  # noqa: BLE001
            self._error(exc)
            return
        if spec.channel_axis is not None:
            pos.pop(spec.channel_axis)
        self.add_click(pos, positive="Control" not in {str(m) for m in event.modifiers})

    def _on_layer_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if self._muted or action.endswith(("adding", "removing", "changing")):
            return
        self.update_predictions()

    def collect(self) -> PromptSet:
        """All prompts now in the layers (plus mask prompts)."""
        _, _, lshape = self._ensure_session()
        n = len(lshape) - 2
        pf = self.points_layer.features
        sf = self.shapes_layer.features
        boxes = [d for d, t in zip(self.shapes_layer.data, self.shapes_layer.shape_type)
                 if t in ("rectangle", "polygon")]
        box_obj = [o for o, t in zip(sf["obj_id"] if "obj_id" in sf else [], self.shapes_layer.shape_type)
                   if t in ("rectangle", "polygon")]
        return collect_prompts(
            n, points=self.points_layer.data, point_obj=np.asarray(pf["obj_id"], int),
            point_positive=np.asarray(pf["positive"], bool), boxes=boxes,
            box_obj=box_obj if len(box_obj) == len(boxes) else None,
            masks=self._mask_prompts, key_shape=lshape[:-2])

    @guard
    def update_predictions(self, label: str = "click") -> None:
        """Re-predict every (frame, object) whose prompts changed since the last call."""
        if self.engine is None:
            self._info("SAM 2: load a model to turn clicks into masks (the Load model button)")
            return
        new = self.collect()
        changed = sorted({(k, o) for k in set(new) | set(self._prompts)
                          for o in set(new.get(k, {})) | set(self._prompts.get(k, {}))
                          if not _same(new.get(k, {}).get(o), self._prompts.get(k, {}).get(o))})
        if not changed:
            self._state = self._snapshot()
            return
        if self.threaded and self._pending:
            # a worker holds the image predictor (encoding a frame) or earlier clicks wait for
            # one: its end re-runs this diff, which then includes this change too
            return
        keys = sorted({k for k, _ in changed})
        todo = [k for k in keys if not self.engine.is_ready(self.frame_token(k))
                and any(not new.get(k, {}).get(o, FramePrompt()).empty for kk, o in changed if kk == k)]
        if todo and self.threaded:
            if self.worker is not None:  # busy (propagating): apply the clicks afterwards
                self._pending = True
            elif not self._pending:
                self._pending = True
                self._encode_then(todo[0])
            return
        step = Step(label, state_before=self._state)
        shown = self._shown_key()
        hw = self._session[2][-2:]
        predict = getattr(self.engine, "predict_region", None)
        pending = []
        try:
            for key in keys:
                fps = {o: new.get(key, {}).get(o) for kk, o in changed if kk == key}
                if any(fp is not None and not fp.empty for fp in fps.values()):
                    # the frame is read (and windowed) only if the engine does not hold it
                    self.engine.set_frame(functools.partial(self.read_frame, key), self.frame_token(key))
                for oid, fp in fps.items():
                    if fp is None or fp.empty:  # every prompt gone: so is the mask
                        mask: Union[np.ndarray, RegionMask] = RegionMask(np.zeros((0, 0), bool), (0, 0), hw)
                    elif predict is not None:  # the object's box only (the real engine)
                        mask = predict(fp)[0]
                    else:
                        mask = self.engine.predict(fp)[0]
                    self.objects.ensure(oid)
                    pending.append(self._write(key, oid, mask, step, shown, refresh=False))
        finally:
            self._flush(pending)  # one redraw per layer, whatever the number of objects
        self._prompts = new
        step.state_after = self._state = self._snapshot()
        self.history.push(step)
        if label == "click" and len(keys) == 1:
            self._maybe_repropagate(keys[0], new)

    @guard
    def use_mask_prompt(self, layer_name: Optional[str] = None, label_id: Optional[int] = None) -> None:
        """Take the current plane of a Labels layer as mask prompt(s): one label value for the
        current object, or (``label_id`` 0) every label as its own new object."""
        key = self.current_key()
        name = layer_name or self.ui.mask_layer_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("choose a Labels layer to use as mask prompt")
        data = self.viewer.layers[name].data
        lab = np.asarray(data[key] if data.ndim == len(key) + 2 else data)
        if lab.shape != self._session[2][-2:]:
            raise ValueError(f"Labels layer {name!r} has planes of {lab.shape}, the image {self._session[2][-2:]}")
        lid = self.ui.mask_id.value() if label_id is None else int(label_id)
        masks = masks_from_labels(lab, None if lid == 0 else [lid])
        if not masks:
            raise ValueError(f"no label {lid or '(any)'} on this frame of {name!r}")
        new_ids = []
        for value, m in masks.items():
            oid = self.objects.current_id if lid else self.objects.add(f"{name} {value}", select=False).obj_id
            oid = oid or self.objects.add().obj_id
            self._mask_prompts[(key, oid)] = m
            new_ids.append(oid)
        self.objects.select(new_ids[0])  # the first imported object becomes current
        self.update_predictions("mask prompt")
