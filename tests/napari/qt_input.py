"""Real input for GUI tests: Qt mouse and key events sent to napari's vispy canvas widget
(what a user's mouse and keyboard produce), placed at data coordinates of a layer."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication

LEFT, MIDDLE = Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton
NONE, CTRL, SHIFT = (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ControlModifier,
                     Qt.KeyboardModifier.ShiftModifier)


def canvas(viewer):
    """The Qt widget napari draws in (vispy's canvas)."""
    return viewer.window._qt_viewer.canvas.native


def to_canvas(viewer, layer, data_pos: Sequence[float]) -> QPoint:
    """Canvas pixel of a position in ``layer``'s data coordinates (2D display of the last two
    axes, napari's camera: ``zoom`` screen pixels per world unit around ``center``)."""
    world = np.asarray(layer.data_to_world(np.asarray(data_pos, float)), float)
    cam = viewer.camera
    cy, cx = cam.center[-2], cam.center[-1]
    w = canvas(viewer)
    x = w.width() / 2 + (world[-1] - cx) * cam.zoom
    y = w.height() / 2 + (world[-2] - cy) * cam.zoom
    return QPoint(int(round(x)), int(round(y)))


def _send(viewer, kind, pos: QPoint, button, buttons, mods) -> None:
    w = canvas(viewer)
    local = QPointF(pos)
    ev = QMouseEvent(kind, local, QPointF(w.mapToGlobal(pos)), button, buttons, mods)
    QApplication.sendEvent(w, ev)


def click(qtbot, viewer, layer, data_pos, button=LEFT, mods=NONE) -> None:
    """Press and release one mouse button at a data position (no drag)."""
    qtbot.wait(5)  # what the app's event loop would have done since the last action
    p = to_canvas(viewer, layer, data_pos)
    _send(viewer, QMouseEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, mods)
    _send(viewer, QMouseEvent.Type.MouseButtonPress, p, button, button, mods)
    _send(viewer, QMouseEvent.Type.MouseButtonRelease, p, button, Qt.MouseButton.NoButton, mods)
    qtbot.wait(10)


def drag(qtbot, viewer, layer, start, end, steps: int = 6, mods=NONE) -> None:
    """Left-button drag from ``start`` to ``end`` (data positions), through ``steps`` moves."""
    qtbot.wait(5)
    a, b = to_canvas(viewer, layer, start), to_canvas(viewer, layer, end)
    _send(viewer, QMouseEvent.Type.MouseMove, a, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, mods)
    _send(viewer, QMouseEvent.Type.MouseButtonPress, a, LEFT, LEFT, mods)
    for i in range(1, steps + 1):
        f = i / steps
        p = QPoint(int(round(a.x() + f * (b.x() - a.x()))), int(round(a.y() + f * (b.y() - a.y()))))
        _send(viewer, QMouseEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, LEFT, mods)
        qtbot.wait(5)
    _send(viewer, QMouseEvent.Type.MouseButtonRelease, b, LEFT, Qt.MouseButton.NoButton, mods)
    qtbot.wait(10)


def key(qtbot, viewer, k, mods=NONE) -> None:
    """A key press on the canvas (napari's key bindings listen there)."""
    w = canvas(viewer)
    w.setFocus()
    qtbot.keyClick(w, k, mods)
    qtbot.wait(10)
