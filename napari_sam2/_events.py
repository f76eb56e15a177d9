"""The controller's events and status records (no Qt: psygnal signals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from psygnal import Signal

__all__ = ["Progress", "PropagationStatus", "ControllerEvents"]


@dataclass
class Progress:
    """A progress report: ``kind`` "download", "propagation", "automatic" or "encoding";
    ``total`` None when unknown. Download reports come from the loading thread."""

    kind: str
    done: int
    total: Optional[int]
    text: str = ""


@dataclass
class PropagationStatus:
    """The last propagation: "running", "done", "cancelled" or "failed", frames written,
    frames planned, seconds."""

    state: str = "idle"
    frames: int = 0
    total: int = 0
    seconds: float = 0.0
    axis: str = ""

    @property
    def cancelled(self) -> bool:
        return self.state == "cancelled"


class ControllerEvents:
    """Signals (psygnal) the view listens to; none carries Qt objects."""

    message = Signal(str, str, str)  # level ("info", "warning", "error"), text, topic
    clear_topic = Signal(str)  # messages of this topic no longer apply
    status = Signal(str)  # the model line
    session = Signal(object)  # the active Session changed
    prompts = Signal(object)  # a Session's clicks / boxes changed (undo, clear, API calls)
    objects = Signal(object)  # a Session's objects changed
    outputs = Signal(object, str)  # a new result array (Session, target) exists
    labels = Signal(object, object, bool)  # Session, targets written, full redraw needed
    history = Signal(object)  # a Session's undo stack changed
    busy = Signal(bool)
    progress = Signal(object)  # a Progress
    quality = Signal(object)  # a Session's confidence log changed
    automatic = Signal(object, object)  # Session, AutoResult
    offer_demo = Signal(str)  # the default weights are unavailable (offline): the reason

    def __init__(self) -> None:
        pass
