"""Shared fixtures for the napari plugin tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from napari_sam2._embedding_cache import EmbeddingCache
from napari_sam2._engine import PlaneMasks, Quality
from napari_sam2._prompts import FramePrompt

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


class StubEngine:
    """A deterministic stand-in for :class:`SAM2Engine` (tests the plumbing, not SAM 2).

    A positive click paints a disk of radius 5, a negative click erases one, a box fills its
    rectangle, a mask prompt alone is returned as is. Propagation repeats the prompted
    frame's masks on every frame (optionally slowly, to test cancel); every 4th frame is
    reported "lost".
    """

    image_size = 64
    model_key = "stub"

    def __init__(self, delay: float = 0.0) -> None:
        self.cache = EmbeddingCache()
        self.delay = delay
        self.frame = None
        self.predictions = 0

    def is_ready(self, token) -> bool:
        return True

    def set_frame(self, rgb, token) -> bool:
        self.frame = rgb() if callable(rgb) else rgb
        return False

    def predict(self, fp: FramePrompt):
        self.predictions += 1
        h, w = self.frame.shape[:2]
        if fp.mask is not None and not fp.has_points_or_box:
            return fp.mask.copy(), 1.0
        m = np.zeros((h, w), bool) if fp.mask is None else fp.mask.copy()
        if fp.box is not None:
            x0, y0, x1, y1 = np.round(fp.box).astype(int)
            m[y0:y1 + 1, x0:x1 + 1] = True
        yy, xx = np.mgrid[0:h, 0:w]
        for (x, y), lab in zip(fp.points, fp.labels):
            disk = (yy - y) ** 2 + (xx - x) ** 2 <= 25
            m = m | disk if lab == 1 else m & ~disk
        return m, 0.9

    def predict_region(self, fp: FramePrompt):
        from napari_sam2._region import RegionMask

        m, iou = self.predict(fp)
        return RegionMask.from_full(m), iou

    def propagate_sequence(self, frames, prompts, direction="both", start=None) -> Iterator[PlaneMasks]:
        n = len(frames)
        first = min(prompts) if start is None else start
        self.set_frame(np.asarray(frames[first]), None)
        src = prompts[min(prompts, key=lambda i: abs(i - first))]
        base = {oid: self.predict(fp)[0] for oid, fp in src.items()}
        fwd, bwd = list(range(first, n)), list(range(first - 1, -1, -1))
        order = {"forward": fwd, "backward": [first] + bwd, "both": fwd + bwd}[direction]
        for i in order:
            if self.delay:
                time.sleep(self.delay)
            q = {o: Quality(-2.0 if i % 4 == 0 else 3.0, 0.8, i % 4 == 0, False) for o in base}
            yield PlaneMasks(i, {o: m.copy() for o, m in base.items()}, q)

    def automatic_records(self, rgb, **kw) -> list:
        """Two masks; their scores pass thresholds up to 0.6 / 0.7 (above: an empty result)."""
        out = []
        for (y0, y1, x0, x1), iou, st in (((2, 8, 2, 8), 0.65, 0.75), ((10, 14, 10, 20), 0.6, 0.7)):
            m = np.zeros(rgb.shape[:2], bool)
            m[y0:y1, x0:x1] = True
            if iou > kw.get("pred_iou_thresh", 0.0) and st >= kw.get("stability_score_thresh", 0.0):
                out.append({"segmentation": m, "predicted_iou": iou, "stability_score": st, "area": int(m.sum())})
        return out


@pytest.fixture
def stub_engine():
    return StubEngine()


def demo_weights_available() -> bool:
    try:
        from sam2_plugins.checkpoints import demo_checkpoint_path
    except ImportError:
        return False
    return demo_checkpoint_path().exists()


MANIFEST = Path(__file__).resolve().parents[2] / "napari_sam2" / "napari.yaml"


def ensure_plugin_registered() -> None:
    """The npe2 manifest is found through the installed entry point; a tree that is not
    pip-installed registers it by hand (as an installed package would be)."""
    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    if "sam2-plugins" not in pm._manifests:  # noqa: SLF001 - npe2 has no public "is registered"
        pm.register(PluginManifest.from_file(MANIFEST))


def open_widget(viewer):
    """The SAM 2 dock as napari makes it from the manifest (the viewer is injected)."""
    ensure_plugin_registered()
    _dock, widget = viewer.window.add_plugin_dock_widget("sam2-plugins", "SAM 2")
    return widget


@pytest.fixture
def sam2_widget(make_napari_viewer, qtbot):
    """A viewer with the SAM 2 dock opened through the manifest. ``threaded=False`` runs the
    controller's jobs inline (deterministic tests of the plumbing)."""
    from napari_sam2._jobs import SyncRunner

    def factory(threaded: bool = False, show: bool = False):
        viewer = make_napari_viewer(show=show)
        w = open_widget(viewer)
        if not threaded:
            w.controller.runner = SyncRunner()
        return viewer, w
    return factory


def wait_idle(qtbot, w, timeout: int = 60000) -> None:
    """Wait until the controller's job is done."""
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=timeout)
