"""Errors to notifications: every user action of the widget is wrapped by :func:`guard`, so
bad input shows a napari notification with the reason, never a traceback dialog."""

from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["guard", "notify"]


def notify(msg: str, level: str = "error") -> None:
    """A napari notification (``level``: "error", "warning" or "info")."""
    from napari.utils import notifications

    {"error": notifications.show_error, "warning": notifications.show_warning,
     "info": notifications.show_info}[level](msg)


def guard(fn: Callable) -> Callable:
    """Run a widget method; any exception goes to ``self._error`` (a notification)."""
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a notification
            self._error(exc)
            return None
    return wrapper
