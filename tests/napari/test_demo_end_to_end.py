"""End to end with the shipped demo model: two objects on a synthetic time-lapse,
propagated both ways from the middle frame, scored against the known ground truth; and the
screenshot of the docked widget with a propagated mask (tests/napari/artifacts/)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import requires_demo_quality

from tests.napari.conftest import ARTIFACTS, demo_weights_available, wait_idle

pytestmark = pytest.mark.gui

# Mean J&F of the demo model on this clip (2 objects, clicks on the middle frame) measured
# when the test was written, minus a margin for numeric drift across platforms / torch versions.
DEMO_JF_FLOOR = 0.55


def _interior_point(mask: np.ndarray):
    """The pixel farthest from the background (SAM's "center" click), as (y, x)."""
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(y), int(x)


def _run_two_objects(w, viewer, frames, gt, qtbot):
    viewer.add_image(frames, name="clip", rgb=True)
    assert w.ui.mode_combo.currentText() == "Z"
    w.ui.mode_combo.setCurrentText("T")
    w.ui.axis_combo.setCurrentText("T")
    w.ui.direction_combo.setCurrentText("both")
    mid = len(frames) // 2
    viewer.dims.set_current_step(0, mid)
    for oid in (1, 2):
        y, x = _interior_point(gt[mid] == oid)
        w.add_click((mid, y, x), positive=True, obj_id=oid)
        wait_idle(qtbot, w)  # the first click encodes the frame in a worker
    w.propagate()
    wait_idle(qtbot, w, timeout=240000)
    return mid


@requires_demo_quality
def test_two_objects_both_ways_match_ground_truth(sam2_widget, qtbot):
    from sam2_plugins.evaluation.jf import f_measure, jaccard
    from sam2_plugins.evaluation.synthetic import make_video

    from napari_sam2._models import DEMO_CHOICE

    frames, gt = make_video(10, 64, 96, num_objects=2, seed=11)
    viewer, w = sam2_widget(threaded=True)
    w.ui.model_combo.setCurrentText(DEMO_CHOICE)
    w.load_model()
    wait_idle(qtbot, w)
    assert w.engine is not None, w.last_message
    mid = _run_two_objects(w, viewer, frames, gt, qtbot)
    out = w._outputs["instances"].data
    assert w.last_propagation["frames"] == len(frames) and not w.last_propagation["cancelled"]
    scores = []
    for oid in (1, 2):
        for t in range(len(frames)):
            if t != mid:
                scores.append((jaccard(out[t] == oid, gt[t] == oid) + f_measure(out[t] == oid, gt[t] == oid)) / 2)
    jf = float(np.mean(scores))
    print(f"demo model J&F on the synthetic clip: {jf:.3f}")
    assert jf > DEMO_JF_FLOOR


def test_screenshot_with_propagated_mask(sam2_widget, qtbot):
    """Writes tests/napari/artifacts/napari_widget.png: the viewer with the widget docked,
    a propagated mask on a synthetic time-lapse (demo weights if shipped, else random)."""
    from sam2_plugins.evaluation.synthetic import make_video

    from napari_sam2._models import DEMO_CHOICE

    frames, gt = make_video(8, 96, 128, num_objects=2, seed=11)
    viewer, w = sam2_widget(threaded=True, show=True)
    w.ui.model_combo.setCurrentText(DEMO_CHOICE)
    w.load_model(checkpoint=None if demo_weights_available() else "random")
    wait_idle(qtbot, w)
    assert w.engine is not None, w.last_message
    mid = _run_two_objects(w, viewer, frames, gt, qtbot)
    viewer.dims.set_current_step(0, mid + 2)
    viewer.window._qt_window.resize(1500, 950)
    qtbot.wait(300)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "napari_widget.png"
    img = viewer.screenshot(path=str(path), canvas_only=False)
    assert path.exists() and img.shape[0] > 500 and img.shape[1] > 900
    assert img[..., :3].std() > 10, "the screenshot is blank"
    assert w.ui.plot.n_points == len(frames)
