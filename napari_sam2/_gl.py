"""Is napari's canvas drawn by a software OpenGL renderer?

With software OpenGL (Mesa's llvmpipe / softpipe, SwiftShader: Xvfb, many remote desktops),
every repaint of any widget recomposes the whole window on the CPU. napari's activity-panel
spinner repaints many times a second while a task is listed, and measured here it made a
propagation of tiny at 1024² 81 % slower (the widget and its worker alone: +3.3 %). The dock
therefore lists propagation in the activity panel by default only with hardware OpenGL.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["SOFTWARE_RENDERERS", "gl_renderer", "software_opengl"]

#: substrings of ``GL_RENDERER`` that name a CPU rasteriser
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swiftshader", "software rasterizer", "swrast")


def gl_renderer(viewer: Any) -> Optional[str]:
    """The ``GL_RENDERER`` string of the viewer's canvas, or None when it cannot be read
    (no window, no context, a napari without the private attributes used here)."""
    try:
        canvas = viewer.window._qt_viewer.canvas._scene_canvas
        canvas.set_current()
        from vispy.gloo import gl

        return str(gl.glGetParameter(gl.GL_RENDERER))
    except Exception:  # noqa: BLE001 - only a hint for a default; never fail the widget
        return None


def software_opengl(viewer: Any) -> bool:
    """True when the canvas is rendered on the CPU (unknown renderers count as hardware)."""
    name = (gl_renderer(viewer) or "").lower()
    return any(s in name for s in SOFTWARE_RENDERERS)
