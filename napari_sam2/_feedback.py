"""What the dock tells the user: notifications (closed again when they no longer apply),
progress in the dock's bar and in napari's activity panel, the confidence plot, and which
controls can act (disabled ones say why in their tooltip).

Qt and napari; driven by the controller's events (see ``controller.ControllerEvents``).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

from qtpy.QtCore import QObject, Signal

__all__ = ["Feedback", "Relay", "refresh_enabled"]


class Relay(QObject):
    """Carries events emitted in a worker thread (download progress) to the UI thread."""

    progress = Signal(object)


def _close_toasts(texts: Sequence[str]) -> None:
    """Close napari's on-screen toasts showing one of ``texts`` (best effort: napari's toast
    class is private; the notification stays in napari's history)."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:  # pragma: no cover
        return
    for toast in list(NapariQtNotification._instances):
        try:
            if toast.message.text() in texts:
                toast.close()
        except RuntimeError:  # already deleted on the C++ side
            continue


class Feedback:
    """Notifications and progress of one dock (see the module docstring)."""

    def __init__(self, ui: Any) -> None:
        self.ui = ui
        self.last_message = ""
        self.by_topic: Dict[str, List[str]] = {}
        self._activity: Dict[str, Any] = {}
        self.activity_seen: List[str] = []  # kinds listed in napari's activity panel so far
        self._queue: List[Any] = []
        self._in_progress = False
        self._shown_at = 0.0
        self.use_activity_for_propagation = lambda: ui.activity_progress.isChecked()

    # -- notifications ------------------------------------------------------------------
    def notify(self, level: str, text: str, topic: str = "",
               actions: Sequence[Tuple[str, Callable[[Any], None]]] = ()) -> None:
        """A napari notification (``level`` "info", "warning" or "error"; no traceback)."""
        from napari.utils.notifications import Notification, NotificationSeverity, notification_manager

        self.last_message = text
        self.ui.status.setText(text.replace("SAM 2: ", "", 1).split("\n")[0])
        if topic:
            self.by_topic.setdefault(topic, []).append(text)
        sev = {"error": NotificationSeverity.ERROR, "warning": NotificationSeverity.WARNING}.get(
            level, NotificationSeverity.INFO)
        notification_manager.dispatch(Notification(text, severity=sev, actions=tuple(actions)))

    def clear(self, topic: str) -> None:
        """The messages of ``topic`` no longer apply: close their toasts, clear the status line."""
        texts = self.by_topic.pop(topic, [])
        if texts:
            _close_toasts(texts)
            if self.ui.status.text() in {t.replace("SAM 2: ", "", 1).split("\n")[0] for t in texts}:
                self.ui.status.setText("")

    # -- progress -----------------------------------------------------------------------
    def progress(self, p: Any) -> None:
        """A controller :class:`~napari_sam2.controller.Progress` (UI thread). napari's progress
        bars process events while they update: reports arriving meanwhile are handled after the
        current one, in order (never nested)."""
        self._queue.append(p)
        if self._in_progress:
            return
        self._in_progress = True
        try:
            while self._queue:
                self._progress(self._queue.pop(0))
        finally:
            self._in_progress = False

    def _progress(self, p: Any) -> None:
        bar = self.ui.progress
        finished = p.text in ("finished", "done", "cancelled", "failed")
        activity = p.kind == "download" or (p.kind == "propagation" and self.use_activity_for_propagation())
        if finished:
            ap = self._activity.pop(p.kind, None)
            if ap is not None:
                ap.close()
        elif activity:
            self._activity_update(p)
        if p.kind == "download":
            if finished:
                bar.setFormat("")
                bar.setRange(0, 1)
                bar.setValue(0)
                return
            mb = p.done / 2**20
            bar.setRange(0, max(p.total or 0, 1) if p.total else 0)
            bar.setValue(min(p.done, p.total) if p.total else 0)
            total_mb = (p.total or 0) / 2**20
            bar.setFormat(f"download {mb:.0f} / {total_mb:.0f} MB" if p.total else f"download {mb:.0f} MB")
            return
        now = time.perf_counter()
        if not finished and p.done not in (1, p.total) and now - self._shown_at < 0.5:
            return  # every repaint of the dock recomposes the window: at most 2 updates a second
        self._shown_at = now
        unit = ({"propagation": "frames", "automatic": "tiles", "encoding": "frames"}.get(p.kind, "")
                if finished or not p.text else p.text)
        total = max(p.total or 0, p.done)
        if finished and p.kind == "automatic":
            bar.setRange(0, 1)
            bar.setValue(1 if p.text == "done" else 0)
            bar.setFormat({"done": "automatic: done", "cancelled": "automatic: cancelled"}.get(
                p.text, "automatic: failed"))
            return
        bar.setRange(0, max(total, 1))
        bar.setValue(p.done)
        if finished and p.text != "done":
            bar.setFormat(f"{p.kind} {p.text} at {p.done} / {total} {unit}")
        else:
            bar.setFormat(f"{p.kind}: {p.done} / {total} {unit}")

    def _activity_update(self, p: Any) -> None:
        from napari.utils import progress

        ap = self._activity.get(p.kind)
        if ap is None:
            desc = {"download": "SAM 2: downloading weights", "propagation": "SAM 2 propagation"}.get(p.kind, p.kind)
            ap = self._activity[p.kind] = progress(total=p.total or 0, desc=desc)
            self.activity_seen.append(p.kind)
        if p.total and ap.total != p.total:
            ap.total = p.total
        ap.update(max(0, p.done - ap.n))

    def close(self) -> None:
        for ap in self._activity.values():
            ap.close()
        self._activity.clear()


def _set(button: Any, ok: bool, why: str, tip: str = "") -> None:
    button.setEnabled(ok)
    button.setToolTip(tip if ok else why)


def refresh_enabled(ui: Any, ctl: Any, has_labels_layer: bool) -> None:
    """Enable what can act now; a disabled control's tooltip says why."""
    s = ctl.session
    busy = ctl.busy
    model = ctl.engine is not None
    need = ("a job is running: wait for it or press Cancel" if busy else
            "load a model first (Load model)" if not model else
            "open or choose an image first" if s is None else "")
    flat = s is not None and s.spec.mode == "2D"
    prop_why = need or ("the axes are 2D: there is no stack axis to propagate along (choose Z, T or TZ)"
                        if flat else "")
    along = {"Z": "Z", "T": "T", "TZ": ctl.tz_along}.get(s.spec.mode, "") if s is not None else ""
    _set(ui.propagate_button, not prop_why, prop_why, f"propagate every object's prompts along {along} (Shift+P)")
    _set(ui.from_here_button, not prop_why, prop_why, "re-propagate from the current frame only")
    _set(ui.auto_button, not need, need,
         "automatic masks on the current slice" + (" (tiled)" if ctl.tiles.enabled else ""))
    _set(ui.cancel_button, busy, "nothing is running", "stop after the current frame (results so far stay)")
    _set(ui.load_button, not busy, "a job is running: wait for it or press Cancel", "build the chosen model")
    _set(ui.demo_button, not busy, "a job is running", "load the shipped demo model (synthetic shapes only)")
    h = s.history if s is not None else None
    undo_l, redo_l = h.labels() if h is not None else ([], [])
    _set(ui.undo_button, bool(undo_l) and not busy,
         "a job is running" if busy and undo_l else "nothing to undo", f"undo: {undo_l[-1]} (U)" if undo_l else "")
    _set(ui.redo_button, bool(redo_l) and not busy,
         "a job is running" if busy and redo_l else "nothing to redo", f"redo: {redo_l[0]} (Shift+U)" if redo_l else "")
    _set(ui.commit_button, s is not None and not busy,
         "open or choose an image first" if s is None else "a job is running",
         "freeze the current object: forget its prompts so nothing re-predicts it")
    has_seq = s is not None and s.quality.last_seq is not None
    _set(ui.next_flagged, has_seq and not busy, "nothing propagated yet" if not has_seq else "a job is running",
         "jump to the next frame worth a correction click (Shift+J)")
    _set(ui.mask_button, has_labels_layer and s is not None and not busy,
         "no Labels layer to take masks from" if not has_labels_layer else need or "a job is running",
         "take the current plane of the chosen Labels layer as mask prompt(s)")
    ui.along_combo.setVisible(s is not None and s.spec.mode == "TZ")
