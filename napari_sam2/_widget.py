"""The SAM 2 dock widget: a thin view over :class:`~napari_sam2.controller.SAM2Controller`.

It builds the controls (``_widget_ui.py``), mirrors the controller's sessions in layers
(``_layers.py``), forwards user input (controls, keys, mouse, edits of the prompt layers) to the
controller and shows its events (``_feedback.py``). Every action goes through
:func:`napari_sam2._guard.guard`, so bad input becomes a notification, never a traceback.

napari builds it from the manifest (*Plugins > SAM 2*) and passes the viewer: the annotation
below must stay a real class (no ``from __future__ import annotations`` in this module), or
napari cannot tell which argument is the viewer.
"""

import os
from typing import Any, Dict, Optional, Tuple

import napari
import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QColorDialog, QListWidgetItem, QWidget

from ._automatic import AutoParams
from ._axes import default_mode, level0
from ._feedback import Feedback, Relay, refresh_enabled
from ._guard import guard
from ._jobs import SyncRunner
from ._layers import LayerBridge, SessionLayers
from ._models import DEMO_CHOICE
from ._qt_runner import QtRunner
from ._session import Key, Session
from ._tiles import TileSettings
from ._widget_ui import TZ_ALONG, Controls
from .controller import SAM2Controller

__all__ = ["SAM2Widget"]


def _ctrl(mods: Any) -> bool:
    # vispy reports modifiers as Key objects, which compare equal to their names
    return any(m == "Control" or m == "Meta" for m in (mods or ()))


class SAM2Widget(QWidget):
    """Interactive SAM 2 segmentation of images, Z stacks, time-lapses and 3D+t.

    Args:
        viewer: the napari viewer (napari passes it).
        threaded: run jobs in thread workers (the default; ``NAPARI_SAM2_NOTHREADS=1`` or
            False runs them inline, for scripts and some tests).
    """

    def __init__(self, viewer: napari.viewer.Viewer, threaded: bool = True) -> None:
        super().__init__()
        self.viewer = viewer
        self.threaded = threaded and not os.environ.get("NAPARI_SAM2_NOTHREADS")
        self.ui = Controls(self)
        self.controller = SAM2Controller(QtRunner() if self.threaded else SyncRunner())
        self.feedback = Feedback(self.ui)
        self.layers = LayerBridge(viewer, self._on_prompt_edit)
        self.controller.writer = self.layers.write
        self._images: Dict[Any, Any] = {}  # image uid -> layer
        self._press_ctrl = False
        self._zoomed = False
        self._opening = False
        from ._gl import software_opengl  # the activity spinner is costly with software OpenGL

        self.ui.activity_progress.setChecked(not software_opengl(viewer))
        self._relay = Relay()
        self._relay.progress.connect(self.feedback.progress)
        self._connect()
        self._bind()
        self._refresh_layer_combos()
        self._refresh()

    # ================================================================== plumbing
    @property
    def last_message(self) -> str:
        return self.feedback.last_message

    @last_message.setter
    def last_message(self, text: str) -> None:
        self.feedback.last_message = text

    def _error(self, exc: BaseException) -> None:
        self.feedback.notify("error", f"SAM 2: {exc}")

    def _refresh(self, *_: Any) -> None:
        has_labels = self.ui.mask_layer_combo.count() > 0
        refresh_enabled(self.ui, self.controller, has_labels)

    @property
    def session(self) -> Optional[Session]:
        return self.controller.session

    def session_layers(self, s: Optional[Session] = None) -> Optional[SessionLayers]:
        s = s or self.session
        return None if s is None else self.layers.by_sid.get(s.sid)

    def _connect(self) -> None:
        u, c, ev = self.ui, self.controller, self.controller.events
        self.viewer.layers.events.inserted.connect(self._refresh_layer_combos)
        self.viewer.layers.events.removed.connect(self._refresh_layer_combos)
        self.viewer.dims.events.current_step.connect(self._on_dims)
        u.image_combo.currentTextChanged.connect(lambda _t: self.open_image())
        u.mode_combo.currentTextChanged.connect(lambda _t: self.apply_axes())
        u.channel_axis.valueChanged.connect(lambda _v: self.apply_axes())
        u.channels_edit.editingFinished.connect(lambda: self.apply_axes())
        u.along_combo.currentIndexChanged.connect(lambda i: setattr(c, "tz_along", TZ_ALONG[i][1]))
        u.load_button.clicked.connect(lambda: self.load_model())
        u.demo_button.clicked.connect(lambda: self.load_model(DEMO_CHOICE))
        u.disk_cache.toggled.connect(lambda on: c.use_disk_cache(on))
        u.tiled.toggled.connect(lambda _v: self._tiles())
        for w in (u.tile_size, u.tile_overlap):
            w.valueChanged.connect(lambda _v: self._tiles())
        u.add_object.clicked.connect(lambda: self.new_object())
        u.delete_object.clicked.connect(lambda: self.delete_object())
        u.clear_object.clicked.connect(lambda: self.clear_current_object())
        u.color_object.clicked.connect(self._pick_color)
        u.object_list.currentRowChanged.connect(self._on_list_row)
        u.object_list.itemChanged.connect(self._on_item_renamed)
        u.negative.toggled.connect(lambda _v: self._defaults())
        u.output_combo.currentIndexChanged.connect(lambda i: setattr(c, "per_object_outputs", i == 1))
        u.overwrite.toggled.connect(lambda on: setattr(c, "overwrite", on))
        u.mask_button.clicked.connect(lambda: self.use_mask_prompt())
        u.direction_combo.currentTextChanged.connect(lambda t: setattr(c, "direction", t))
        u.memory_combo.currentTextChanged.connect(lambda t: setattr(c, "memory_mode", t))
        u.auto_repropagate.toggled.connect(lambda on: setattr(c, "auto_repropagate", on))
        u.propagate_button.clicked.connect(lambda: self.propagate())
        u.from_here_button.clicked.connect(lambda: self.propagate(from_current=True))
        u.cancel_button.clicked.connect(lambda: c.cancel())
        u.next_flagged.clicked.connect(lambda: self.next_flagged())
        u.auto_button.clicked.connect(lambda: self.segment_everything())
        u.auto_retry.clicked.connect(lambda: self._retry_automatic())
        u.undo_button.clicked.connect(lambda: self.undo())
        u.redo_button.clicked.connect(lambda: self.redo())
        u.commit_button.clicked.connect(lambda: self.commit())
        u.along_combo.currentIndexChanged.connect(self._refresh)
        view = {ev.message: lambda level, text, topic: self.feedback.notify(level, text, topic),
                ev.clear_topic: self.feedback.clear, ev.status: self._on_status, ev.session: self._on_session,
                ev.prompts: self._on_prompts, ev.objects: self._on_objects,
                ev.outputs: lambda s, tid: self.layers.output_layer(s, tid), ev.labels: self.layers.redraw,
                ev.history: self._refresh, ev.busy: self._refresh, ev.quality: lambda _s: self._update_confidence(),
                ev.automatic: self._on_automatic, ev.offer_demo: self._offer_demo}
        for signal, slot in view.items():
            signal.connect(self._while_shown(slot))
        ev.progress.connect(self._relay.progress.emit)  # may come from the loading thread
        self._relay.progress.connect(self._while_shown(self.feedback.progress))
        ctl, bridge = self.controller, self.layers

        def gone(*_: Any) -> None:  # the dock was deleted (napari closed): stop, touch nothing
            bridge.closed = True
            ctl.writer = None
            ctl.cancel()
        self.destroyed.connect(gone)

    def _while_shown(self, slot: Any) -> Any:
        """``slot``, skipped once the dock is closed or deleted (a job may still report)."""
        bridge = self.layers

        def call(*args: Any) -> None:
            if not bridge.closed:
                slot(*args)
        return call

    def _bind(self) -> None:
        binds = {"t": self.toggle_polarity, "n": lambda: self.new_object(), "Shift-P": lambda: self.propagate(),
                 "Shift-J": lambda: self.next_flagged(), "u": lambda: self.undo(), "Shift-U": lambda: self.redo(),
                 "Shift-C": lambda: self.clear_current_object()}
        for key, fn in binds.items():
            self.viewer.bind_key(key, lambda _v, fn=fn: fn(), overwrite=True)
        self._bound = [k for k in self.viewer.keymap if str(k).replace("+", "-").lower() in {b.lower() for b in binds}]
        if self._on_mouse not in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.append(self._on_mouse)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        """Docking the widget zooms the canvas to fit the image (once)."""
        super().showEvent(event)
        if not self._zoomed and len(self.viewer.layers):
            self._zoomed = True
            self.viewer.reset_view()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        """Closing the dock: stop the job, unhook keys / mouse / layer events. The layers and
        their data stay in the viewer."""
        self.controller.cancel()
        self.layers.closed = True
        self.controller.writer = None
        self.feedback.close()
        for key in self._bound:
            self.viewer.keymap.pop(key, None)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        self.viewer.layers.events.inserted.disconnect(self._refresh_layer_combos)
        self.viewer.layers.events.removed.disconnect(self._refresh_layer_combos)
        self.viewer.dims.events.current_step.disconnect(self._on_dims)
        super().closeEvent(event)

    # ================================================================== images and axes
    def _ours(self, layer: Any) -> bool:
        return layer.name.startswith("SAM2 ")

    def _refresh_layer_combos(self, event: Any = None) -> None:
        from napari.layers import Image, Labels

        for combo, kind in ((self.ui.image_combo, Image), (self.ui.mask_layer_combo, Labels)):
            cur = combo.currentText()
            names = [ly.name for ly in self.viewer.layers if isinstance(ly, kind) and not self._ours(ly)]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if cur in names:
                combo.setCurrentText(cur)
            combo.blockSignals(False)
        name = self.ui.image_combo.currentText()
        # the first image opens by itself; later ones when chosen (a removed layer never
        # re-opens anything: napari may be closing, and parked sessions stay as they are)
        added = event is None or getattr(event, "type", "") == "inserted"
        if name and added and self.session is None and not self._opening:
            self.open_image()
        if not self._zoomed and self.isVisible() and name:
            self._zoomed = True
            self.viewer.reset_view()
        self._refresh()

    @property
    def image_layer(self) -> Any:
        name = self.ui.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("no image layer: open or choose an image first")
        return self.viewer.layers[name]

    def _axes_from_ui(self) -> Tuple[str, Optional[int], Tuple[int, ...]]:
        ca = self.ui.channel_axis.value()
        chans = tuple(int(c) for c in self.ui.channels_edit.text().replace(" ", "").split(",") if c)
        return self.ui.mode_combo.currentText(), (None if ca < 0 else ca), chans

    def _set_axes_ui(self, mode: str, channel_axis: Optional[int], channels: Tuple[int, ...]) -> None:
        u = self.ui
        for w in (u.mode_combo, u.channel_axis, u.channels_edit):
            w.blockSignals(True)
        u.mode_combo.setCurrentText(mode)
        u.channel_axis.setValue(-1 if channel_axis is None else channel_axis)
        u.channels_edit.setText(",".join(map(str, channels)))
        for w in (u.mode_combo, u.channel_axis, u.channels_edit):
            w.blockSignals(False)

    @guard
    def open_image(self) -> Optional[Session]:
        """Make the image chosen in the combo the controller's active image (its previous
        session resumes with its axes; a new image gets axes guessed from its shape)."""
        ly = self.image_layer
        uid = ly.unique_id  # (the viewer napari gives plugins hands out a new proxy per access)
        known = [s for (u, _), s in self.controller.sessions.items() if u == uid]
        if known:
            sp = known[-1].spec
            self._set_axes_ui(sp.mode, sp.channel_axis, sp.channels)
        else:
            labels = getattr(ly, "axis_labels", None)
            self._set_axes_ui(default_mode(level0(ly).shape, bool(getattr(ly, "rgb", False)), labels), None, ())
        return self._open(ly)

    def _open(self, ly: Any) -> Session:
        mode, ca, chans = self._axes_from_ui()
        self._images[ly.unique_id] = ly

        def contrast() -> Any:
            if getattr(ly, "rgb", False) and level0(ly).dtype == np.uint8:
                return None
            return tuple(float(v) for v in ly.contrast_limits)
        self._opening = True  # adding the session's layers must not re-open the image
        try:
            return self.controller.open_image(level0(ly), ly.name, uid=ly.unique_id, mode=mode, channel_axis=ca,
                                              channels=chans, rgb=bool(getattr(ly, "rgb", False)), contrast=contrast)
        finally:
            self._opening = False

    @guard
    def apply_axes(self) -> Optional[Session]:
        """The axes controls changed: same labels shape keeps the session (results, history);
        another shape opens another session (this one is kept)."""
        return self._open(self.image_layer)

    def _on_session(self, s: Session) -> None:
        ly = self._images.get(s.source.uid)
        if ly is not None and ly in self.viewer.layers:
            self.layers.ensure(s, ly)
            # a session opened while napari inserts an image: napari then makes the image the
            # active layer; the points layer becomes active again once it has
            QTimer.singleShot(0, self._while_shown(lambda: self.layers.raise_prompts(s)))
        self._on_dims()
        self._on_objects(s)
        self._update_confidence()

    def _on_prompts(self, s: Session) -> None:
        ly = self._images.get(s.source.uid)
        sl = self.layers.by_sid.get(s.sid)
        if s is self.session and ly is not None and ly in self.viewer.layers and (
                sl is None or not self.layers.alive(sl.points) or not self.layers.alive(sl.boxes)):
            self.layers.ensure(s, ly)  # a prompt layer the user deleted comes back with the prompts
        else:
            self.layers.sync_prompts(s)

    def _current_key(self, s: Session) -> Optional[Key]:
        ly = self._images.get(s.source.uid)
        if ly is None or ly not in self.viewer.layers:
            return None
        pos = list(ly.world_to_data(self.viewer.dims.point))
        if s.spec.channel_axis is not None and not s.spec.rgb:
            pos.pop(s.spec.channel_axis % len(pos))
        return s.spec.frame_key(s.source.shape, pos)

    def current_key(self) -> Key:
        s = self.session
        key = None if s is None else self._current_key(s)
        if key is None:
            raise ValueError("no image layer: open or choose an image first")
        return key

    def _on_dims(self, *_: Any) -> None:
        s = self.session
        key = None if s is None else self._current_key(s)
        if key is not None:
            self.controller.current_key = key
            self._update_confidence()

    def _tiles(self) -> None:
        u = self.ui
        self.controller.tiles = TileSettings(u.tiled.isChecked(), u.tile_size.value(), u.tile_overlap.value())
        self._refresh()

    # ================================================================== model
    @guard
    def load_model(self, choice: Optional[str] = None, checkpoint: Optional[str] = None,
                   device: Optional[str] = None) -> None:
        """Build the chosen model in a job (official weights: downloaded once, with progress)."""
        u = self.ui
        if choice is not None and u.model_combo.findText(choice) >= 0:
            u.model_combo.setCurrentText(choice)
        self.controller.load_model(choice if choice is not None else u.model_combo.currentText(),
                                   u.checkpoint_edit.text() if checkpoint is None else checkpoint,
                                   device or u.device_combo.currentText())

    def _offer_demo(self, reason: str) -> None:
        self.ui.demo_button.setVisible(True)

    def _on_status(self, text: str) -> None:
        self.ui.model_status.setText(text)
        if self.controller.engine is not None:
            self.ui.demo_button.setVisible(False)
        self._refresh()

    # ================================================================== objects
    @guard
    def new_object(self, name: Optional[str] = None) -> int:
        return self.controller.new_object(name)

    @guard
    def clear_current_object(self) -> None:
        self.controller.clear_object()

    @guard
    def delete_object(self) -> None:
        self.controller.delete_object()

    @guard
    def commit(self) -> None:
        self.controller.commit()

    def _on_objects(self, s: Session) -> None:
        lw = self.ui.object_list
        lw.blockSignals(True)
        lw.clear()
        for o in s.objects:
            pix = QPixmap(12, 12)
            pix.fill(QColor.fromRgbF(*o.color))
            item = QListWidgetItem(QIcon(pix), o.name)
            item.setData(Qt.ItemDataRole.UserRole, o.obj_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)  # rename in place
            lw.addItem(item)
            if o.obj_id == s.objects.current_id:
                lw.setCurrentItem(item)
        lw.blockSignals(False)
        self.layers.recolor(s)
        self._defaults()
        self._update_confidence()

    def _on_list_row(self, row: int) -> None:
        item = self.ui.object_list.item(row)
        if item is not None and self.session is not None:
            self.controller.select_object(int(item.data(Qt.ItemDataRole.UserRole)))

    def _on_item_renamed(self, item: QListWidgetItem) -> None:
        s = self.session
        oid = int(item.data(Qt.ItemDataRole.UserRole))
        if s is not None and oid in s.objects and item.text() != s.objects[oid].name:
            self.controller.rename_object(oid, item.text())

    def _pick_color(self) -> None:
        s = self.session
        obj = None if s is None else s.objects.current
        if obj is None:
            return
        c = QColorDialog.getColor(QColor.fromRgbF(*obj.color), self, "object colour")
        if c.isValid():
            self.controller.recolor_object(obj.obj_id, (c.redF(), c.greenF(), c.blueF(), 1.0))

    # ================================================================== prompts
    def _defaults(self) -> None:
        if self.session is not None:
            self.layers.set_defaults(self.session, not self.ui.negative.isChecked())

    def toggle_polarity(self) -> None:
        self.ui.negative.setChecked(not self.ui.negative.isChecked())

    @guard
    def add_click(self, position: Any, positive: Optional[bool] = None, obj_id: Optional[int] = None) -> None:
        """A click at ``position`` (data coordinates of the output layers: (..., y, x))."""
        pos = (not self.ui.negative.isChecked()) if positive is None else positive
        self.controller.add_click(position, positive=pos, obj_id=obj_id)

    @guard
    def add_box(self, corner0: Any, corner1: Any, obj_id: Optional[int] = None) -> None:
        self.controller.add_box(corner0, corner1, obj_id=obj_id)

    def _on_mouse(self, viewer: Any, event: Any) -> None:
        """Every press on the canvas: remember Ctrl (a click napari's add mode turns into a
        point is negative with Ctrl); a middle-click adds a click whatever layer is active."""
        self._press_ctrl = _ctrl(getattr(event, "modifiers", ()))
        if getattr(event, "button", None) != 3:
            return
        s, sl = self.session, self.session_layers()
        if s is None or sl is None:
            return
        active = viewer.layers.selection.active
        if active is not None and active.unique_id == sl.points.unique_id and sl.points.mode == "add":
            return  # napari's add mode adds this point itself (any button): no second point
        try:
            pos = list(sl.image.world_to_data(event.position))
            if s.spec.channel_axis is not None and not s.spec.rgb:
                pos.pop(s.spec.channel_axis % len(pos))
        except Exception as exc:  # noqa: BLE001
            self._error(exc)
            return
        self.add_click(pos, positive=(not self.ui.negative.isChecked()) != self._press_ctrl)

    def _on_prompt_edit(self, s: Session, sl: SessionLayers) -> None:
        """The user edited a prompt layer (napari's add / move / delete tools)."""
        pts, obj, pos, boxes, box_obj = self.layers.read_prompts(sl)
        flipped = len(pts) == len(s.points) + 1 and self._press_ctrl
        if flipped:
            pos[-1] = not pos[-1]  # Ctrl+click: the opposite polarity
            self._press_ctrl = False
        if self.controller.session is not s:
            self.controller.activate(s)
        ok = guard(lambda _self: self.controller.set_prompts(pts, obj, pos, boxes, box_obj) or True)(self)
        if flipped or not ok:  # the flipped click's colour; a refused edit is undone in the layer
            self.layers.sync_prompts(s)
        # napari selects an added point after this handler and copies its features (a negative
        # click's polarity) into the defaults: set them again once it has
        QTimer.singleShot(0, self._defaults)

    @guard
    def use_mask_prompt(self, layer_name: Optional[str] = None, label_id: Optional[int] = None) -> None:
        """Take the current plane of a Labels layer as mask prompt(s): one label value for the
        current object, or (``label_id`` 0) every label as its own new object."""
        name = layer_name or self.ui.mask_layer_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("choose a Labels layer to use as mask prompt")
        key = self.current_key()
        data = self.viewer.layers[name].data
        plane = np.asarray(data[key] if data.ndim == len(key) + 2 else data)
        lid = self.ui.mask_id.value() if label_id is None else int(label_id)
        self.controller.add_mask_prompt(plane, lid, key, name=name)

    # ================================================================== history
    @guard
    def undo(self) -> None:
        self.controller.undo()

    @guard
    def redo(self) -> None:
        self.controller.redo()

    # ================================================================== long jobs
    @guard
    def propagate(self, from_current: bool = False) -> None:
        self.controller.propagate(from_key=self.current_key() if from_current else None)

    @guard
    def segment_everything(self, params: Optional[AutoParams] = None) -> None:
        u = self.ui
        self.ui.auto_retry.setVisible(False)
        p = params or AutoParams(u.points_per_side.value(), u.pred_iou.value(), u.stability.value(), u.min_area.value())
        self.controller.segment_everything(self.current_key(), p)

    def _on_automatic(self, s: Session, res: Any) -> None:
        u = self.ui
        u.auto_result.setText(res.message.replace("automatic: ", ""))
        sug = res.suggestion
        u.auto_retry.setVisible(sug is not None)
        if sug is not None:
            u.auto_retry.setText(f"Retry with IoU > {sug.pred_iou_thresh:.2f}, "
                                 f"stability >= {sug.stability_score_thresh:.2f}"
                                 + (f", min. area {sug.min_mask_region_area}" if sug.min_mask_region_area
                                    != u.min_area.value() else ""))
            self._suggestion = sug
        self.layers.raise_prompts(s)  # the next click still adds a point

    def _retry_automatic(self) -> None:
        sug = getattr(self, "_suggestion", None)
        if sug is None:
            return
        u = self.ui
        u.pred_iou.setValue(sug.pred_iou_thresh)
        u.stability.setValue(sug.stability_score_thresh)
        u.min_area.setValue(sug.min_mask_region_area)
        self.segment_everything()

    @guard
    def next_flagged(self) -> Optional[int]:
        """Move the viewer to the next frame worth a correction click; returns its index."""
        s = self.session
        key = self.current_key()
        nxt = self.controller.next_flagged(key)
        if nxt is None:
            self.feedback.notify("info", "SAM 2: no flagged frames on this sequence")
            return None
        pos = [i for i, (a, b) in enumerate(zip(key, nxt)) if a != b]
        if not pos:
            return int(nxt[-1]) if nxt else None
        ly = self._images[s.source.uid]
        ca = s.spec.channel_axis
        data_axis = pos[0] + (1 if ca is not None and not s.spec.rgb and ca % ly.ndim <= pos[0] else 0)
        self.viewer.dims.set_current_step(self.viewer.dims.ndim - ly.ndim + data_axis, nxt[pos[0]])
        return int(nxt[pos[0]])

    def _update_confidence(self) -> None:
        try:
            series = self.controller.confidence()
        except ValueError:
            series = None
        if series is None:
            self.ui.plot.set_series(np.zeros(0), np.zeros(0))
            self.ui.flagged_label.setText("no flagged frames")
        else:
            self.ui.plot.set_series(series.iou, series.score, series.flags, series.index, series.title,
                                    axis=series.axis)
            self.ui.flagged_label.setText(series.summary)
        self._refresh()
