"""Screenshots for docs/napari_plugin.md, written to tests/napari/artifacts/ (copy them to docs/):

* ``napari_dock_1000px.png``: the dock on a 1,000 px high window, two objects clicked;
* ``napari_propagated_stack.png``: a synthetic time-lapse propagated both ways, with the
  confidence plot;
* ``napari_tiled_large.png``: tiled clicks on the 4096² small-nuclei sample.

The shipped demo model when present (random weights otherwise); each test also checks what the
picture should show."""

from __future__ import annotations

import numpy as np
import pytest

from tests.napari.conftest import ARTIFACTS, demo_weights_available, wait_idle

pytestmark = pytest.mark.gui


def _load_demo(w, qtbot) -> None:
    from napari_sam2._models import DEMO_CHOICE

    w.load_model(DEMO_CHOICE, checkpoint=None if demo_weights_available() else "random")
    wait_idle(qtbot, w)
    assert w.controller.engine is not None, w.last_message


def _shot(viewer, qtbot, name: str):
    qtbot.wait(300)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    img = viewer.screenshot(canvas_only=False)
    from PIL import Image

    # a 256-colour palette keeps the committed copies small (the noisy sample image is 1 MB as RGB)
    Image.fromarray(np.ascontiguousarray(img[..., :3])).quantize(256).save(path, optimize=True)
    assert path.exists() and img[..., :3].std() > 10, "the screenshot is blank"
    return img


def _centre(mask: np.ndarray):
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(d)), d.shape))


def _two_objects(viewer, w, qtbot, frames, gt, mid):
    viewer.add_image(frames, name="synthetic time-lapse", rgb=True)
    viewer.dims.set_current_step(0, mid)
    for oid in (1, 2):
        w.add_click((mid,) + _centre(gt[mid] == oid), positive=True, obj_id=oid)
        wait_idle(qtbot, w)


def test_screenshot_dock_on_a_1000_px_window(sam2_widget, qtbot):
    from sam2_plugins.evaluation.synthetic import make_video

    viewer, w = sam2_widget(threaded=True, show=True)
    viewer.window._qt_window.resize(1400, 1000)
    _load_demo(w, qtbot)
    frames, gt = make_video(8, 96, 128, num_objects=2, seed=11)
    _two_objects(viewer, w, qtbot, frames, gt, 4)
    img = _shot(viewer, qtbot, "napari_dock_1000px.png")
    assert img.shape[0] <= 1000 and w.ui.undo_button.isVisible()
    assert w.session.outputs["instances"][4].max() == 2


def test_screenshot_propagated_stack(sam2_widget, qtbot):
    from sam2_plugins.evaluation.synthetic import make_video

    viewer, w = sam2_widget(threaded=True, show=True)
    viewer.window._qt_window.resize(1500, 1000)
    _load_demo(w, qtbot)
    frames, gt = make_video(12, 96, 128, num_objects=2, seed=11)
    _two_objects(viewer, w, qtbot, frames, gt, 6)
    w.propagate()
    wait_idle(qtbot, w, timeout=240000)
    viewer.dims.set_current_step(0, 9)
    w.ui.scroll.ensureWidgetVisible(w.ui.plot)
    _shot(viewer, qtbot, "napari_propagated_stack.png")
    assert w.ui.plot.n_points == 12 and w.ui.plot.current == 9
    assert w.controller.last_propagation.state == "done"


@pytest.mark.slow
def test_screenshot_tiled_large_image(sam2_widget, qtbot):
    from napari_sam2.sample_data import make_nuclei_2d

    viewer, w = sam2_widget(threaded=True, show=True)
    viewer.window._qt_window.resize(1500, 1000)
    _load_demo(w, qtbot)
    img, gt = make_nuclei_2d(4096, 400, seed=0)
    viewer.add_image(img, name="synthetic nuclei 4096", rgb=True)
    w.ui.tiled.setChecked(True)
    w.ui.tile_size.setValue(128)
    w.ui.tile_overlap.setValue(32)
    # the nuclei of one corner region, one object each
    from benchmarks.napari_large import centre

    ys, xs = np.nonzero(gt)
    lab = gt[ys, xs]
    n = np.maximum(np.bincount(lab), 1)
    cy, cx = np.bincount(lab, ys) / n, np.bincount(lab, xs) / n
    ids = [i for i in range(1, len(n)) if 100 < cy[i] < 700 and 100 < cx[i] < 700]
    for i in ids:
        w.add_click(centre(gt == i), obj_id=w.new_object())
        wait_idle(qtbot, w)
    viewer.camera.center = (400, 400)
    viewer.camera.zoom = 1.3
    _shot(viewer, qtbot, "napari_tiled_large.png")
    out = w.session.outputs["instances"]
    assert len(ids) >= 5 and len(set(np.unique(out)) - {0}) == len(ids)
    assert w.controller.engine.cache.misses <= len(ids), "one tile per click, not the 4096² plane"
