"""A small line plot of per-frame confidence (QPainter; no plotting library needed).

Draws the predicted IoU (0..1, solid) and the object score squashed by a sigmoid (dashed)
of one object along the propagated axis, shades flagged frames (red: lost, orange: low
confidence), marks the current frame (white line, its number on the axis) and labels the
x axis with frame numbers.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["ConfidencePlot"]


class ConfidencePlot(QWidget):
    """Set data with :meth:`set_series`; the x axis is the frame index."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._iou = np.zeros(0, np.float32)
        self._score = np.zeros(0, np.float32)
        self._flags: Sequence[Tuple[int, str]] = ()
        self._current: Optional[int] = None
        self._title = ""
        self._axis = ""

    def set_series(self, iou: np.ndarray, score: np.ndarray, flags: Sequence[Tuple[int, str]] = (),
                   current: Optional[int] = None, title: str = "", axis: str = "") -> None:
        """``iou``, ``score``: (N,) float, NaN where nothing was propagated; ``flags``:
        (index, "lost" | "low"); ``current``: the viewer's frame on this axis; ``axis``: its
        name (the x-axis label)."""
        self._iou = np.asarray(iou, np.float32)
        self._score = np.asarray(score, np.float32)
        self._flags = list(flags)
        self._current = current
        self._title = title
        self._axis = axis
        self.update()

    @property
    def current(self) -> Optional[int]:
        """The marked frame (tests read this)."""
        return self._current

    def ticks(self) -> list:
        """Frame numbers labelled on the x axis: about 6, at a round step, plus the last."""
        n = len(self._iou)
        if n == 0:
            return []
        raw = max(1.0, n / 6)
        step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 10**9) if s >= raw)
        out = list(range(0, n, step))
        if n - 1 - out[-1] >= step / 2:
            out.append(n - 1)
        return out

    @property
    def n_points(self) -> int:
        """Frames with a value (tests read this)."""
        return int(np.count_nonzero(~np.isnan(self._iou)))

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        p = QPainter(self)
        try:
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        r = QRectF(self.rect()).adjusted(4, 14, -4, -16)  # room for the frame axis below
        p.fillRect(self.rect(), QColor(38, 41, 48))
        p.setPen(QColor(200, 200, 200))
        p.drawText(QPointF(4, 11), self._title or "confidence (IoU solid, object score dashed)")
        n = len(self._iou)
        if n == 0:
            return
        step = r.width() / max(n, 1)

        def x(i: float) -> float:
            return r.left() + (i + 0.5) * step

        def y(v: float) -> float:
            return r.bottom() - float(np.clip(v, 0, 1)) * r.height()

        for i, kind in self._flags:
            col = QColor(200, 40, 40, 110) if kind == "lost" else QColor(230, 150, 30, 110)
            p.fillRect(QRectF(x(i) - step / 2, r.top(), step, r.height()), col)
        p.setPen(QPen(QColor(90, 90, 90), 1, Qt.PenStyle.DotLine))
        p.drawLine(QPointF(r.left(), y(0.5)), QPointF(r.right(), y(0.5)))
        sig = 1.0 / (1.0 + np.exp(-np.clip(self._score, -30, 30)))
        for vals, pen in ((self._iou, QPen(QColor(80, 200, 255), 2)),
                          (sig, QPen(QColor(255, 220, 90), 1, Qt.PenStyle.DashLine))):
            p.setPen(pen)
            prev = None
            for i, v in enumerate(vals):
                if np.isnan(v):
                    prev = None
                    continue
                pt = QPointF(x(i), y(float(v)))
                if prev is not None:
                    p.drawLine(prev, pt)
                else:
                    p.drawEllipse(pt, 1.5, 1.5)
                prev = pt
        p.setPen(QPen(QColor(150, 150, 150), 1))
        p.drawLine(QPointF(r.left(), r.bottom()), QPointF(r.right(), r.bottom()))
        fm = p.fontMetrics()
        for i in self.ticks():
            p.drawLine(QPointF(x(i), r.bottom()), QPointF(x(i), r.bottom() + 3))
            label = str(i)
            p.drawText(QPointF(x(i) - fm.horizontalAdvance(label) / 2, r.bottom() + 13), label)
        if self._axis:
            name = f"frame ({self._axis})"
            p.drawText(QPointF(r.right() - fm.horizontalAdvance(name), 11), name)
        if self._current is not None and 0 <= self._current < n:
            p.setPen(QPen(QColor(255, 255, 255), 2))
            p.drawLine(QPointF(x(self._current), r.top()), QPointF(x(self._current), r.bottom()))
