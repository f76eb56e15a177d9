"""Output Labels layers of the dock widget: creation, colours, and the writes of masks
(box-local, partial redraws). A mixin of :class:`~napari_sam2._widget.SAM2Widget`: it relies
on the widget's ``viewer``, ``ui``, ``objects``, ``_outputs``, ``auto_layer``, layers and
``_ensure_session`` / ``current_key``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ._history import Step, write_mask
from ._region import RegionMask

__all__ = ["OutputMixin"]

Key = Tuple[int, ...]


class OutputMixin:
    """Output layers and mask writes of the SAM 2 dock widget."""

    def output_layer(self, obj_id: int):
        """The Labels layer that receives ``obj_id`` (created on first use)."""
        ly, spec, lshape = self._ensure_session()
        per_obj = self.ui.output_combo.currentIndex() == 1
        tid = f"obj{obj_id}" if per_obj else "instances"
        layer = self._outputs.get(tid)
        if layer is None or layer not in self.viewer.layers:
            name = f"SAM2 object {obj_id}" if per_obj else "SAM2 labels"
            layer = self.viewer.add_labels(np.zeros(lshape, np.int32), name=name,
                                           **self._layer_geometry(ly, spec))
            self._outputs[tid] = layer
            self._recolor_outputs()
            # keep the prompt layers on top, and the points layer active for clicks
            for top in (self.shapes_layer, self.points_layer):
                if top is not None and top in self.viewer.layers:
                    self.viewer.layers.move(self.viewer.layers.index(top), len(self.viewer.layers))
            if self.points_layer is not None:
                self.viewer.layers.selection.active = self.points_layer
        return tid, layer

    def _arrays(self) -> Dict[str, np.ndarray]:
        arrays = {tid: ly.data for tid, ly in self._outputs.items()}
        if self.auto_layer is not None:
            arrays["automatic"] = self.auto_layer.data
        return arrays

    def _recolor_outputs(self) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        cmap = DirectLabelColormap(color_dict=self.objects.color_dict())
        for ly in self._outputs.values():
            ly.colormap = cmap

    def _write(self, key: Key, obj_id: int, mask: Union[np.ndarray, RegionMask], step: Step,
               shown: Optional[Key] = None, refresh: bool = True) -> Optional[Any]:
        """Write one object's mask on one frame and record the edit in ``step``.

        ``mask`` is a full (H, W) bool or a :class:`RegionMask` (then only the box around the
        object's old and new pixels is touched). ``shown`` is the displayed frame key (see
        :meth:`_shown_key`): a write there goes through ``Labels.data_setitem`` with the
        changed pixels only, which redraws only them (a full refresh of a 1024² Labels layer
        costs more than the mask decoder); other frames are written directly and need no
        redraw. ``refresh=False`` defers the redraw (see :meth:`_flush`). Returns the layer
        when a displayed write awaits its redraw, else None.
        """
        tid, layer = self.output_layer(obj_id)
        e = write_mask(layer.data, key, obj_id, mask, overwrite=self.ui.overwrite.isChecked(),
                       target=tid, apply=False)
        if e is None:
            return None
        step.edits.append(e)
        y0, y1, x0, x1 = e.bbox
        if key == shown:
            changed = e.before != e.after
            yy, xx = np.nonzero(changed)
            index = tuple(np.full(len(yy), k) for k in key) + (yy + y0, xx + x0)
            layer.data_setitem(index, e.after[changed], refresh=refresh)
            return None if refresh else layer
        layer.data[tuple(key)][y0:y1, x0:x1] = e.after
        return None

    @staticmethod
    def _flush(layers: Any) -> None:
        """Redraw the pixels of deferred ``_write(..., refresh=False)`` calls, once per layer."""
        for layer in {id(ly): ly for ly in layers if ly is not None}.values():
            # napari >= 0.4.19 redraws just the accumulated box of the data_setitem calls;
            # a full refresh is the fallback
            getattr(layer, "_partial_labels_refresh", layer.refresh)()

    def _shown_key(self) -> Optional[Key]:
        """The frame key on screen when the canvas shows a plain (Y, X) slice, else None."""
        d = self.viewer.dims
        if d.ndisplay != 2 or tuple(d.displayed) != (d.ndim - 2, d.ndim - 1):
            return None
        try:
            return self.current_key()
        except Exception:  # noqa: BLE001
            return None

    def _refresh_outputs(self) -> None:
        for ly in [*self._outputs.values(), self.auto_layer]:
            if ly is not None:
                ly.refresh()
