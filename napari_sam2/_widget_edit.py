"""Undo / redo, objects (new, clear, delete, commit) and the object-list view of the dock
widget. A mixin of :class:`~napari_sam2._widget.SAM2Widget`: it relies on the widget's
layers (``points_layer``, ``shapes_layer``, outputs), ``objects``, ``history``, ``quality``
and ``collect``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QColorDialog, QListWidgetItem

from ._guard import guard
from ._history import Step, apply_step, clear_object

__all__ = ["EditMixin"]


class EditMixin:
    """Editing actions of the SAM 2 dock widget."""

    def _snapshot(self) -> Dict[str, Any]:
        p, s = self.points_layer, self.shapes_layer
        return {"points": (p.data.copy(), p.features.copy()),
                "shapes": ([d.copy() for d in s.data], list(s.shape_type), s.features.copy()),
                "masks": dict(self._mask_prompts), "objects": self.objects.snapshot(),
                "quality": self.quality.snapshot()}

    def _restore(self, snap: Dict[str, Any]) -> None:
        self._muted = True
        try:
            pdata, pfeat = snap["points"]
            self.points_layer.selected_data = set()
            self.shapes_layer.selected_data = set()
            self.points_layer.data = pdata
            self.points_layer.features = pfeat
            sdata, stype, sfeat = snap["shapes"]
            self.shapes_layer.data = []
            if sdata:
                self.shapes_layer.add(sdata, shape_type=stype)
            self.shapes_layer.features = sfeat
            self._mask_prompts = dict(snap["masks"])
            self.objects.restore(snap["objects"])
            self.quality.restore(snap["quality"])
        finally:
            self._muted = False
        self._prompts = self.collect()
        self._state = snap
        self._update_defaults()
        self._update_confidence()

    @guard
    def undo(self) -> None:
        """Revert the last click, propagation, mask prompt, clear or commit."""
        if not self.history.can_undo:
            self._info("SAM 2: nothing to undo")
            return
        step = self.history.undo()
        apply_step(step, self._arrays(), forward=False)
        if step.state_before is not None:
            self._restore(step.state_before)
        self._refresh_outputs()

    @guard
    def redo(self) -> None:
        if not self.history.can_redo:
            self._info("SAM 2: nothing to redo")
            return
        step = self.history.redo()
        apply_step(step, self._arrays(), forward=True)
        if step.state_after is not None:
            self._restore(step.state_after)
        self._refresh_outputs()

    def _drop_prompts(self, obj_id: int) -> None:
        self._muted = True
        try:
            p = self.points_layer
            keep = np.asarray(p.features["obj_id"]) != obj_id
            if not keep.all():
                p.selected_data = set(np.flatnonzero(~keep).tolist())
                p.remove_selected()
            s = self.shapes_layer
            if len(s.data):
                drop = np.flatnonzero(np.asarray(s.features["obj_id"]) == obj_id)
                if len(drop):
                    s.selected_data = set(drop.tolist())
                    s.remove_selected()
            self._mask_prompts = {k: v for k, v in self._mask_prompts.items() if k[1] != obj_id}
        finally:
            self._muted = False
        self._prompts = self.collect()

    @guard
    def new_object(self, name: Optional[str] = None) -> int:
        obj = self.objects.add(name)
        self._update_defaults()
        return obj.obj_id

    @guard
    def clear_current_object(self, remove: bool = False) -> None:
        """Clear the current object's pixels and prompts (undoable); ``remove`` also deletes it."""
        oid = self.objects.current_id
        if not oid:
            raise ValueError("no object selected")
        self._ensure_session()
        step = Step("delete object" if remove else "clear object", state_before=self._state)
        for tid, ly in list(self._outputs.items()):
            step.edits += clear_object(ly.data, oid, target=tid)
        self._drop_prompts(oid)
        self.quality.clear(oid)
        if remove:
            self.objects.remove(oid)
        step.state_after = self._state = self._snapshot()
        self.history.push(step)
        self._refresh_outputs()
        self._update_confidence()

    def delete_object(self) -> None:
        self.clear_current_object(remove=True)

    @guard
    def commit(self) -> None:
        """Freeze the current object: forget its prompts (its pixels stay, protected from
        other objects unless "overwrite" is on) and start a new object."""
        oid = self.objects.current_id
        if not oid:
            raise ValueError("no object selected")
        self._ensure_session()
        step = Step("commit", state_before=self._state)
        self._drop_prompts(oid)
        self.objects.rename(oid, self.objects[oid].name.rstrip(" ✓") + " ✓")
        self.objects.add()
        step.state_after = self._state = self._snapshot()
        self.history.push(step)
        self._update_defaults()

    # ------------------------------------------------------------------ object list view
    def _sync_object_list(self) -> None:
        lw = self.ui.object_list
        lw.blockSignals(True)
        lw.clear()
        for o in self.objects:
            pix = QPixmap(12, 12)
            pix.fill(QColor.fromRgbF(*o.color))
            item = QListWidgetItem(QIcon(pix), o.name)
            item.setData(Qt.ItemDataRole.UserRole, o.obj_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)  # rename in place
            lw.addItem(item)
            if o.obj_id == self.objects.current_id:
                lw.setCurrentItem(item)
        lw.blockSignals(False)
        self._recolor_outputs()
        self._update_defaults()
        self._update_confidence()

    def _on_list_row(self, row: int) -> None:
        item = self.ui.object_list.item(row)
        if item is not None:
            self.objects.select(int(item.data(Qt.ItemDataRole.UserRole)))

    def _on_item_renamed(self, item: QListWidgetItem) -> None:
        oid = int(item.data(Qt.ItemDataRole.UserRole))
        if oid in self.objects and item.text() != self.objects[oid].name:
            self.objects.rename(oid, item.text())

    def _pick_color(self) -> None:
        obj = self.objects.current
        if obj is None:
            return
        c = QColorDialog.getColor(QColor.fromRgbF(*obj.color), self, "object colour")
        if c.isValid():
            self.objects.recolor(obj.obj_id, (c.redF(), c.greenF(), c.blueF(), 1.0))
