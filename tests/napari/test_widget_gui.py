"""The dock as a user meets it: opened from the Plugins menu / ``add_plugin_dock_widget`` of a
real napari viewer (Xvfb via pytest-xvfb), driven by real Qt mouse and key events on the
canvas, checked on the layers. The same scenarios without Qt are in test_controller.py."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from tests.napari import qt_input as qi
from tests.napari.conftest import StubEngine, ensure_plugin_registered, wait_idle

pytestmark = pytest.mark.gui


def _messages():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def test_opens_from_the_plugins_menu(make_napari_viewer, qtbot):
    """(Every other test opens the dock with ``add_plugin_dock_widget``: the sam2_widget fixture.)"""
    from napari_sam2._widget import SAM2Widget

    ensure_plugin_registered()
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((5, 60, 80), np.uint8), name="stack")
    viewer.camera.zoom = 0.05  # far off: docking zooms to fit
    actions = [a for a in viewer.window.plugins_menu.actions() if a.text().startswith("SAM 2")]
    assert len(actions) == 1, [a.text() for a in viewer.window.plugins_menu.actions()]
    actions[0].trigger()
    qtbot.wait(50)
    docked = list(viewer.window.dock_widgets.values())
    w = next(x for x in docked if isinstance(x, SAM2Widget))
    assert w.viewer is viewer and w.session is not None and w.session.spec.mode == "Z"
    zoom = viewer.camera.zoom
    viewer.reset_view()
    assert zoom == pytest.approx(viewer.camera.zoom) and zoom > 1, "zoomed to fit on docking"
    # the prompt layers exist before any click, the points layer active in add mode
    sl = w.session_layers()
    assert viewer.layers.selection.active.unique_id == sl.points.unique_id and sl.points.mode == "add"
    assert sl.points.name == "SAM2 points [stack]" and sl.boxes.name == "SAM2 boxes [stack]"


def test_real_clicks_ctrl_click_middle_click_box_and_undo_key(sam2_widget, qtbot):
    viewer, w = sam2_widget(show=True)
    viewer.add_image(np.zeros((3, 64, 80), np.uint8), name="cells")
    w.controller.engine = StubEngine()
    viewer.dims.set_current_step(0, 1)
    s, sl = w.session, w.session_layers()
    img = sl.image
    qi.click(qtbot, viewer, img, (1, 30, 40))  # the points layer is active, in add mode
    lab = s.outputs["instances"]
    assert len(s.points) == 1 and s.point_pos.tolist() == [True] and lab[1, 30, 40] == 1
    qi.click(qtbot, viewer, img, (1, 30, 43), mods=qi.CTRL)  # negative
    assert s.point_pos.tolist() == [True, False] and lab[1, 30, 43] == 0 and lab[1, 30, 36] == 1
    assert len(sl.points.data) == 2, "one point per click"
    viewer.layers.selection.active = viewer.layers["cells"]  # middle-click works whatever layer is active
    qi.click(qtbot, viewer, img, (1, 10, 10), button=qi.MIDDLE)
    qi.click(qtbot, viewer, img, (1, 50, 60), button=qi.MIDDLE, mods=qi.CTRL)
    assert s.point_pos.tolist() == [True, False, True, False] and len(sl.points.data) == 4
    viewer.layers.selection.active = viewer.layers[sl.points.name]  # a middle-click in add mode: one point
    qi.click(qtbot, viewer, img, (1, 12, 60), button=qi.MIDDLE)
    assert len(sl.points.data) == 5 and len(s.points) == 5
    # a box for a new object, drawn with napari's rectangle tool
    oid = w.new_object()
    viewer.layers.selection.active = viewer.layers[sl.boxes.name]
    sl.boxes.mode = "add_rectangle"
    qi.drag(qtbot, viewer, img, (1, 40, 5), (1, 60, 30))
    assert s.box_obj == [oid] and lab[1, 50, 20] == oid
    steps = len(s.history.labels()[0])
    qi.key(qtbot, viewer, Qt.Key.Key_U)  # undo the box
    assert len(s.history.labels()[0]) == steps - 1 and not (lab == oid).any() and len(sl.boxes.data) == 0
    qi.key(qtbot, viewer, Qt.Key.Key_U, qi.SHIFT)  # redo
    assert (lab == oid).any() and len(sl.boxes.data) == 1


def test_shift_p_propagates_and_cancel_shows_cancelled(sam2_widget, qtbot):
    viewer, w = sam2_widget(threaded=True, show=True)
    viewer.add_image(np.zeros((12, 32, 32), np.uint8), name="movie")
    w.ui.mode_combo.setCurrentText("T")
    w.ui.activity_progress.setChecked(False)
    w.controller.engine = StubEngine(delay=0.15)
    viewer.dims.set_current_step(0, 2)
    qi.click(qtbot, viewer, w.session_layers().image, (2, 16, 16))
    wait_idle(qtbot, w)
    w.ui.direction_combo.setCurrentText("forward")
    qi.key(qtbot, viewer, Qt.Key.Key_P, qi.SHIFT)
    assert w.controller.busy and w.ui.cancel_button.isEnabled() and not w.ui.propagate_button.isEnabled()
    qtbot.waitUntil(lambda: w.controller.last_propagation.frames >= 2, timeout=20000)
    w.ui.scroll.ensureWidgetVisible(w.ui.cancel_button)
    qtbot.mouseClick(w.ui.cancel_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, w)
    st = w.controller.last_propagation
    out = w.session.outputs["instances"]
    assert st.state == "cancelled" and 2 <= st.frames < 10
    assert [t for t in range(12) if out[t, 16, 16]] == list(range(2, 2 + st.frames))
    assert "cancelled" in w.ui.progress.format() and f"{st.frames} / 10" in w.ui.progress.format()
    assert w.session.history.labels()[0][-1] == "propagate (cancelled)"
    assert not w.ui.cancel_button.isEnabled() and w.ui.propagate_button.isEnabled()


def test_nothing_is_lost(sam2_widget, qtbot):
    """Walk the destructive paths: other image, other axes, other model, Clear, Delete, Commit,
    automatic twice, propagation twice. No result layer or history entry disappears without
    an undo; each result can be brought back."""
    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((6, 24, 24), np.uint8), name="a")
    w.ui.mode_combo.setCurrentText("T")
    w.controller.engine = StubEngine()
    w.add_click((2, 10, 10))
    w.propagate()
    sa = w.session
    lab_a = sa.outputs["instances"]
    snap = lab_a.copy()
    steps = sa.history.labels()[0]
    layer_a = w.session_layers().outputs["instances"]

    def intact():
        assert layer_a in viewer.layers and layer_a.data is lab_a
        assert np.array_equal(lab_a, snap) and sa.history.labels()[0][:len(steps)] == steps
    viewer.add_image(np.zeros((20, 20), np.uint8), name="b")
    w.ui.image_combo.setCurrentText("b")  # another image
    w.add_click((5, 5))
    intact()
    assert w.session is not sa and "SAM2 labels [b]" in viewer.layers
    w.ui.image_combo.setCurrentText("a")  # back: the same session
    assert w.session is sa and w.ui.mode_combo.currentText() == "T"
    w.ui.mode_combo.setCurrentText("Z")  # same labels shape: same session
    assert w.session is sa
    intact()
    w.ui.mode_combo.setCurrentText("2D")
    w.ui.channel_axis.setValue(0)  # another labels shape: another session, this one parked
    assert w.session is not sa and w.session.lshape == (24, 24)
    assert "SAM2 points [a]" in viewer.layers and layer_a in viewer.layers
    intact()
    w.ui.channel_axis.setValue(-1)
    w.ui.mode_combo.setCurrentText("T")
    assert w.session is sa
    w.controller.engine = StubEngine()  # another model
    intact()
    for action, label in ((w.clear_current_object, "clear object"), (w.commit, "commit"),
                          (w.delete_object, "delete object")):
        n = len(sa.history.labels()[0])
        action()
        assert sa.history.labels()[0][-1] == label and len(sa.history.labels()[0]) == n + 1
        w.undo()
        intact()
    w.ui.pred_iou.setValue(0.5)
    w.ui.stability.setValue(0.5)
    w.segment_everything()
    w.segment_everything()
    auto = sa.outputs["automatic"]
    assert auto.any() and sa.history.labels()[0][-2:] == ["segment everything"] * 2
    w.undo()
    w.undo()
    assert not auto.any()
    intact()
    n = len(sa.history.labels()[0])
    w.add_click((3, 20, 20))  # a correction click re-propagates from its frame
    w.propagate()
    w.propagate()  # the same result again: nothing changes, so no further step
    assert sa.history.labels()[0][n:] == ["click", "propagate from here", "propagate"]
    for _ in range(3):
        w.undo()
    intact()
    # closing the dock keeps every layer and its data
    names = {ly.name for ly in viewer.layers}
    w.close()
    assert names <= {ly.name for ly in viewer.layers} and layer_a.data is lab_a


def test_empty_automatic_result_says_why_and_offers_lower_thresholds(sam2_widget):
    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((24, 24), np.uint8), name="im")
    w.controller.engine = StubEngine()
    w.ui.sections["Automatic (segment everything on this slice)"].set_expanded(True)
    w.segment_everything()  # thresholds 0.70 / 0.80: the stub's candidates score 0.65 / 0.75
    text = w.ui.auto_result.text()
    assert "0 masks" in text and "predicted-IoU threshold 0.70 removed all 2 candidates" in text, text
    assert "removed all 2 candidates" in w.last_message
    assert w.ui.auto_retry.isVisibleTo(w) and "Retry with IoU > 0.60" in w.ui.auto_retry.text()
    sl = w.session_layers()
    assert viewer.layers.selection.active.unique_id == sl.points.unique_id, "the next click still adds a point"
    w.ui.auto_retry.click()
    assert w.session.outputs["automatic"].max() == 1 and w.ui.pred_iou.value() == pytest.approx(0.6)
    assert viewer.layers.selection.active.unique_id == sl.points.unique_id and "SAM2 automatic [im]" in viewer.layers


def test_stale_toasts_are_closed_when_the_model_loads(sam2_widget, qtbot):
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    viewer, w = sam2_widget(show=True)
    viewer.add_image(np.zeros((24, 24), np.uint8), name="im")
    w.add_click((5, 5))
    qtbot.wait(50)

    def shown():
        return [t.message.text() for t in NapariQtNotification._instances]
    assert any("load a model" in m for m in shown()), shown()
    w.load_model(checkpoint="random", choice="sam2.1_hiera_nano")
    assert w.controller.engine is not None, w.last_message
    assert not any("load a model" in m for m in shown()), shown()
    assert w.session.outputs["instances"].any(), "the kept click was predicted once a model exists"


def test_confidence_plot_has_a_frame_axis_and_follows_the_current_frame(sam2_widget):
    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((30, 24, 24), np.uint8), name="movie")
    w.ui.mode_combo.setCurrentText("T")
    w.controller.engine = StubEngine()
    viewer.dims.set_current_step(0, 4)
    w.add_click((4, 12, 12))
    w.propagate()
    plot = w.ui.plot
    assert plot.n_points == 30 and plot.ticks() == [0, 5, 10, 15, 20, 25, 29] and plot.current == 4
    viewer.dims.set_current_step(0, 17)
    assert plot.current == 17
    assert w.ui.flagged_label.text().startswith("flagged along T: obj 1 lost 0, 4, 8")
    assert w.next_flagged() == 20 and viewer.dims.current_step[0] == 20


def test_disabled_controls_say_why_and_one_axes_choice(sam2_widget):
    viewer, w = sam2_widget()
    u = w.ui
    viewer.add_image(np.zeros((16, 16), np.uint8), name="flat")
    assert not u.propagate_button.isEnabled() and "load a model first" in u.propagate_button.toolTip()
    assert not u.undo_button.isEnabled() and u.undo_button.toolTip() == "nothing to undo"
    assert not u.cancel_button.isEnabled() and u.cancel_button.toolTip() == "nothing is running"
    w.controller.engine = StubEngine()
    w.add_click((3, 3))
    assert not u.propagate_button.isEnabled() and "the axes are 2D" in u.propagate_button.toolTip()
    assert u.undo_button.isEnabled() and u.undo_button.toolTip() == "undo: click (U)"
    # an RGB video defaults to T; the propagation axis comes from the axes
    viewer.add_image(np.zeros((5, 16, 16, 3), np.uint8), name="video", rgb=True)
    u.image_combo.setCurrentText("video")
    assert u.mode_combo.currentText() == "T" and u.propagate_button.isEnabled()
    assert "along T" in u.propagate_button.toolTip() and not u.along_combo.isVisibleTo(w)
    viewer.add_image(np.zeros((2, 3, 16, 16), np.uint8), name="tz")
    u.image_combo.setCurrentText("tz")
    assert u.mode_combo.currentText() == "TZ" and u.along_combo.isVisibleTo(w)
    u.along_combo.setCurrentIndex(2)
    assert w.controller.tz_along == "T" and "along T" in u.propagate_button.toolTip()


def test_dock_fits_a_1000_px_screen(sam2_widget, qtbot):
    viewer, w = sam2_widget(show=True)
    viewer.add_image(np.zeros((5, 64, 64), np.uint8), name="im")
    win = viewer.window._qt_window
    win.resize(1400, 1000)
    qtbot.wait(100)
    assert w.minimumSizeHint().height() <= 400, w.minimumSizeHint()
    assert win.height() <= 1000
    for b in (w.ui.undo_button, w.ui.redo_button, w.ui.commit_button):
        top_left = b.mapTo(win, b.rect().topLeft())
        assert b.isVisible() and 0 <= top_left.y() and top_left.y() + b.height() <= win.height(), b.text()
    sec = w.ui.sections["Propagation"]
    sec.header.click()
    assert not sec.content.isVisible()
    sec.header.click()
    assert sec.content.isVisible()


def test_offline_default_model_offers_the_demo(sam2_widget, qtbot, tmp_path, monkeypatch):
    from sam2_plugins.default_model import DEMO_LABEL, MIRROR_ENV
    from tests.file_server import closed_port_url

    monkeypatch.setenv("SAM2_PLUGINS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(MIRROR_ENV, closed_port_url())
    viewer, w = sam2_widget(threaded=True)
    u = w.ui
    assert u.model_combo.currentText() == "sam2.1_hiera_tiny", "the default is the official tiny model"
    assert u.model_combo.findText(DEMO_LABEL) >= 0
    qtbot.mouseClick(u.load_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, w)
    assert w.controller.engine is None and "could not download the sam2.1_hiera_tiny weights" in w.last_message
    assert DEMO_LABEL in w.last_message and u.demo_button.isVisibleTo(w)
    assert "could not be downloaded" in u.model_status.text()
    qtbot.mouseClick(u.demo_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, w)
    assert w.controller.engine is not None and u.model_status.text().startswith(DEMO_LABEL)
    assert not u.demo_button.isVisibleTo(w) and u.model_combo.currentText() == DEMO_LABEL


def test_bad_input_gives_notifications_not_tracebacks(sam2_widget, tmp_path, qtbot):
    from napari.utils.notifications import ErrorNotification, notification_manager

    viewer, w = sam2_widget(threaded=True)
    w.propagate()
    assert "load a model first" in w.last_message
    w.controller.engine = StubEngine()
    viewer.add_image(np.zeros((3, 16), np.uint16), name="profile")
    w.ui.channel_axis.setValue(0)
    assert "needs 2 non-channel axes (Y, X); the layer has 1" in w.last_message
    w.ui.channel_axis.setValue(-1)
    w.controller.engine = None
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    w.load_model(checkpoint=str(bad), choice="sam2.1_hiera_nano")
    assert w.controller.busy, "loading runs in a worker: the UI thread is free"
    wait_idle(qtbot, w)
    assert "could not load" in w.last_message and w.controller.engine is None
    assert "no model" in w.ui.model_status.text() and w.ui.load_button.isEnabled()
    w.load_model(checkpoint=str(tmp_path / "missing.pt"))
    assert "not found" in w.last_message
    assert not [n for n in notification_manager.records if isinstance(n, ErrorNotification)], "a traceback"


def test_keyboard_shortcuts_and_closing_unhooks(sam2_widget, qtbot):
    viewer, w = sam2_widget(show=True)
    viewer.add_image(np.zeros((2, 30, 30), np.uint8), name="z")
    w.controller.engine = StubEngine()
    keys = {str(k) for k in viewer.keymap}
    assert {"T", "N", "Shift+P", "Shift+J", "U", "Shift+U", "Shift+C"} <= keys, keys
    negative = w.ui.negative.isChecked()
    qi.key(qtbot, viewer, Qt.Key.Key_T)
    assert w.ui.negative.isChecked() != negative
    qi.key(qtbot, viewer, Qt.Key.Key_N)
    assert w.session.objects.current_id == 2
    n_keys = len(viewer.keymap)
    w.close()
    assert len(viewer.keymap) == n_keys - 7 and w._on_mouse not in viewer.mouse_drag_callbacks
    viewer.add_image(np.zeros((8, 8)), name="after")  # no callback into the closed widget


def test_channel_axis_composite_uses_contrast_limits(sam2_widget):
    viewer, w = sam2_widget()
    data = np.zeros((2, 3, 20, 24), np.uint16)  # C, Z, Y, X
    data[0] = 1000
    data[1, 2] = 3000
    layer = viewer.add_image(data, name="2ch", contrast_limits=(0, 4000))
    w.ui.mode_combo.setCurrentText("Z")
    w.ui.channels_edit.setText("1, 0")
    w.ui.channel_axis.setValue(0)
    w.controller.engine = StubEngine()
    viewer.dims.set_current_step(1, 2)  # world axis 1 is Z (axis 0 is the channel slider)
    assert w.current_key() == (2,)
    w.add_click((2, 10, 12))
    rgb = w.controller.engine.frame
    assert rgb.shape == (20, 24, 3) and tuple(rgb[0, 0]) == (191, 64, 0)
    assert w.session.outputs["instances"].shape == (3, 20, 24) and w.session.outputs["instances"][2, 10, 12] == 1
    token = w.session.frame_token((2,))
    layer.contrast_limits = (0, 2000)  # new contrast: new pixels for SAM 2, new cache key
    assert w.session.frame_token((2,)) != token and tuple(w.session.read_frame((2,))[0, 0]) == (255, 128, 0)


def test_multiscale_layer_uses_level_zero_and_per_object_layers(sam2_widget):
    viewer, w = sam2_widget()
    base = np.zeros((64, 64), np.uint8)
    base[:, 32:] = 200
    viewer.add_image([base, base[::2, ::2]], name="pyramid", multiscale=True, contrast_limits=(0, 200))
    w.controller.engine = StubEngine()
    w.ui.output_combo.setCurrentIndex(1)
    w.add_click((40, 50))
    w.new_object()
    w.add_click((42, 52))
    s = w.session
    assert s.outputs["obj1"].shape == (64, 64) and s.outputs["obj1"][40, 50] == 1 and s.outputs["obj2"][42, 52] == 2
    assert w.controller.engine.frame.shape == (64, 64, 3) and w.controller.engine.frame[40, 0, 0] == 0
    assert {"SAM2 object 1 [pyramid]", "SAM2 object 2 [pyramid]"} <= {ly.name for ly in viewer.layers}


def test_mask_prompt_and_correction_click_repropagates(sam2_widget):
    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((8, 32, 32), np.uint8), name="movie")
    w.ui.mode_combo.setCurrentText("T")
    cellpose = np.zeros((8, 32, 32), np.int32)
    cellpose[2, 5:15, 5:15] = 7
    viewer.add_labels(cellpose, name="cellpose")
    w.ui.image_combo.setCurrentText("movie")
    w.controller.engine = StubEngine()
    viewer.dims.set_current_step(0, 2)
    w.use_mask_prompt("cellpose", label_id=0)
    out = w.session.outputs["instances"]
    assert (out[2] > 0).sum() == 100 and w.session.objects[1].name == "cellpose 7", "the empty object 1 takes it"
    w.add_click((2, 20, 20), obj_id=2)
    w.propagate()
    assert all(out[t, 10, 10] == 1 for t in range(8))
    n = len(w.session.history.labels()[0])
    w.add_click((5, 25, 25), obj_id=2)  # a correction: re-propagates from frame 5 only
    assert w.session.history.labels()[0][-1] == "propagate from here"
    assert len(w.session.history.labels()[0]) == n + 2


def test_click_on_cached_frame_is_decoder_only_with_one_partial_redraw(sam2_widget, monkeypatch, qtbot):
    """A click on a frame the engine holds: no frame read, no encoding, no full refresh of
    the Labels layer (one partial redraw of the changed pixels), the layer's array edited in
    place; and the Labels hold the engine's mask for all the clicks so far."""
    from napari_sam2.controller import FramePrompt
    from sam2_plugins import build_sam2

    viewer, w = sam2_widget(show=True)
    img = np.random.default_rng(3).integers(0, 4000, (300, 410), dtype=np.uint16)
    viewer.add_image(img, name="cells", contrast_limits=(0, 4000))
    w.controller.set_model(build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu"), "nano")
    w.add_click((150, 200))  # the first click encodes the frame
    qtbot.wait(50)
    s = w.session
    layer = w.session_layers().outputs["instances"]
    data = layer.data
    assert data is s.outputs["instances"]
    calls = {"read_frame": 0, "set_image": 0, "refresh": 0, "partial": 0}

    def spy(obj, name, key):
        fn = getattr(obj, name)

        def wrapped(*a, **k):
            calls[key] += 1
            return fn(*a, **k)
        monkeypatch.setattr(obj, name, wrapped)
    spy(s, "read_frame", "read_frame")
    spy(w.controller.engine.image_predictor, "set_image", "set_image")
    spy(layer, "refresh", "refresh")
    spy(layer, "_partial_labels_refresh", "partial")
    clicks = [((100, 120), True), ((220, 330), True), ((160, 210), False)]
    for (y, x), pos in clicks:
        before = layer.data.copy()
        w.add_click((y, x), positive=pos)
        qtbot.wait(20)
        changed = not np.array_equal(before, layer.data)
        assert calls["partial"] == (1 if changed else 0), "one partial redraw per click that changed pixels"
        calls["partial"] = 0
    assert calls["read_frame"] == calls["set_image"] == calls["refresh"] == 0
    assert layer.data is data and w.controller.engine.cache.misses == 1
    pts = np.array([[200, 150]] + [[x, y] for (y, x), _ in clicks], np.float32)
    expect, _ = w.controller.engine.predict(FramePrompt(pts, np.array([1, 1, 1, 0], np.int32)))
    assert np.array_equal(layer.data == 1, expect)


@pytest.mark.parametrize("activity", [True, False])
def test_propagation_progress_in_dock_and_optionally_in_activity_panel(sam2_widget, qtbot, activity):
    viewer, w = sam2_widget(threaded=True)
    viewer.add_image(np.zeros((8, 24, 24), np.uint8), name="movie")
    w.ui.mode_combo.setCurrentText("T")
    w.controller.engine = StubEngine(delay=0.05)
    w.ui.activity_progress.setChecked(activity)
    w.add_click((0, 12, 12))
    wait_idle(qtbot, w)
    w.propagate()
    qtbot.waitUntil(lambda: w.controller.last_propagation.frames >= 1, timeout=10000)
    assert ("propagation" in w.feedback._activity) == activity, "napari's progress only when asked"
    wait_idle(qtbot, w)
    assert not w.feedback._activity and w.controller.last_propagation.frames == 8
    assert (w.ui.progress.value(), w.ui.progress.maximum()) == (8, 8), "the final count is shown"


def test_activity_panel_default_follows_the_opengl_renderer(sam2_widget, monkeypatch):
    """Listed in napari's activity panel by default with hardware OpenGL only: under Xvfb here
    the canvas is drawn by llvmpipe (a software renderer), where the spinner slows propagation."""
    import napari_sam2._gl as gl
    from napari_sam2._widget import SAM2Widget

    viewer, w = sam2_widget(threaded=True)
    name = gl.gl_renderer(viewer)
    assert name, "the canvas's GL_RENDERER could be read"
    assert w.ui.activity_progress.isChecked() == (not gl.software_opengl(viewer)), name
    monkeypatch.setattr(gl, "gl_renderer", lambda v: "llvmpipe (LLVM 15.0.6, 256 bits)")
    assert not SAM2Widget(viewer).ui.activity_progress.isChecked()
    monkeypatch.setattr(gl, "gl_renderer", lambda v: "NVIDIA GeForce RTX 4090/PCIe/SSE2")
    assert SAM2Widget(viewer).ui.activity_progress.isChecked()


@pytest.mark.slow
def test_default_model_downloads_once_with_progress_in_the_activity_panel(sam2_widget, qtbot, tmp_path,
                                                                           monkeypatch):
    """The default (official tiny weights) from a file server on 127.0.0.1: downloaded once with
    progress in the dock and napari's activity panel, then read from the cache."""
    import torch

    from sam2_plugins import build_sam2
    from sam2_plugins.default_model import MIRROR_ENV
    from tests.file_server import FileServer

    served = tmp_path / "served"
    served.mkdir()
    model = build_sam2("sam2.1_hiera_tiny", checkpoint=None, device="cpu")
    torch.save({"model": {k: v.half() for k, v in model.state_dict().items()}}, served / "sam2.1_hiera_tiny.pt")
    del model
    server = FileServer(served)
    try:
        monkeypatch.setenv("SAM2_PLUGINS_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv(MIRROR_ENV, server.url)
        viewer, w = sam2_widget(threaded=True)
        w.load_model()
        wait_idle(qtbot, w, timeout=300000)
        assert w.controller.engine is not None, w.last_message
        assert w.ui.model_status.text().startswith("sam2.1_hiera_tiny") and "download" in w.feedback.activity_seen
        assert not w.feedback._activity, "the activity-panel entry is closed when done"
        assert (tmp_path / "cache" / "sam2.1_hiera_tiny.pt").exists() and server.requests == ["/sam2.1_hiera_tiny.pt"]
        w.load_model()  # again: from the cache
        wait_idle(qtbot, w, timeout=300000)
        assert server.requests == ["/sam2.1_hiera_tiny.pt"]
    finally:
        server.close()
