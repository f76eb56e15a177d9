"""GUI tests of the dock widget in a real napari viewer (Xvfb via pytest-xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.napari.conftest import StubEngine, wait_idle

pytestmark = pytest.mark.gui


def _messages():
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records]


def _time_lapse(viewer, w, frames: int, side: int, engine=None) -> None:
    """A blank (frames, side, side) movie, the widget on it in T mode, a stub engine."""
    viewer.add_image(np.zeros((frames, side, side), np.uint8), name="movie")
    w.ui.mode_combo.setCurrentText("T")
    w.ui.axis_combo.setCurrentText("T")
    w.engine = engine if engine is not None else StubEngine()


def test_click_box_and_undo(sam2_widget, stub_engine):
    viewer, w = sam2_widget()
    img = np.random.default_rng(0).integers(0, 4000, (48, 64), dtype=np.uint16)
    viewer.add_image(img, name="cells")
    w.engine = stub_engine
    w.add_click((20, 30))
    labels = w._outputs["instances"].data
    assert labels.shape == (48, 64) and labels[20, 30] == 1 and labels[20, 36] == 0
    w.add_click((20, 33), positive=False)
    assert labels[20, 33] == 0 and labels[20, 26] == 1
    # box for a second object: never overwrites object 1
    oid = w.new_object()
    w.add_box((15, 20), (30, 40), obj_id=oid)
    assert labels[28, 38] == 2 and labels[20, 26] == 1
    before_box = labels.copy()
    w.undo()
    assert not (labels == 2).any() and len(w.shapes_layer.data) == 0
    w.redo()
    assert (labels == 2).any() and len(w.shapes_layer.data) == 1
    w.undo()
    w.undo()  # the negative click
    assert labels[20, 33] == 1 and len(w.points_layer.data) == 1
    assert before_box[20, 33] == 2  # the box took the pixel the negative click freed
    # removing the last point clears the object's mask on that frame
    w.points_layer.selected_data = {0}
    w.points_layer.remove_selected()
    assert not (labels == 1).any()


def test_mask_prompt_from_labels_layer(sam2_widget, stub_engine):
    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((3, 40, 40), np.uint8), name="stack")
    cellpose = np.zeros((3, 40, 40), np.int32)
    cellpose[1, 5:15, 5:15] = 7
    cellpose[1, 20:30, 22:35] = 9
    viewer.add_labels(cellpose, name="cellpose")
    viewer.dims.set_current_step(0, 1)
    w.engine = stub_engine
    w.use_mask_prompt("cellpose", label_id=0)
    out = w._outputs["instances"].data
    ids = sorted(set(np.unique(out[1])) - {0})
    assert len(ids) == 2 and not out[0].any()
    assert {tuple(np.argwhere(out[1] == i).min(0)) for i in ids} == {(5, 5), (20, 22)}
    assert (out[1] > 0).sum() == 100 + 130
    assert {w.objects[i].name for i in ids} == {"cellpose 7", "cellpose 9"}
    assert w.objects.current_id == min(ids), "the first imported object becomes current"


def test_propagation_both_ways_cancel_and_confidence(sam2_widget, qtbot):
    viewer, w = sam2_widget(threaded=True)
    _time_lapse(viewer, w, 10, 32)
    w.add_click((4, 16, 16))
    w.propagate()
    wait_idle(qtbot, w)
    out = w._outputs["instances"].data
    assert all(out[t, 16, 16] == 1 for t in range(10)), "both directions from frame 4"
    assert w.last_propagation["frames"] == 10 and not w.last_propagation["cancelled"]
    assert w.ui.plot.n_points == 10
    assert w.ui.flagged_label.text() == "flagged along T: obj 1 lost 0, 4, 8"
    viewer.dims.set_current_step(0, 4)
    assert w.next_flagged() == 8 and viewer.dims.current_step[0] == 8
    # undo the propagation, then propagate slowly and cancel after the first frames
    w.undo()
    assert out[:, 16, 16].sum() == 1  # only the clicked frame keeps its mask
    w.engine = StubEngine(delay=0.15)
    w.ui.direction_combo.setCurrentText("forward")
    w.propagate()
    qtbot.waitUntil(lambda: w.last_propagation.get("frames", 0) >= 2, timeout=20000)
    w.cancel()
    wait_idle(qtbot, w)
    done = w.last_propagation["frames"]
    assert w.last_propagation["cancelled"] and 2 <= done < 6
    written = [t for t in range(10) if out[t, 16, 16] == 1]
    assert written == list(range(4, 4 + done)), "earlier frames intact, later ones untouched"
    assert w.history.labels()[0][-1] == "propagate (cancelled)"


def test_bad_input_gives_notifications(sam2_widget, tmp_path, qtbot):
    viewer, w = sam2_widget()
    w.propagate()
    assert "load a model first" in w.last_message
    w.engine = StubEngine()
    w.propagate()
    assert "no image layer" in w.last_message
    viewer.add_image(np.zeros((16, 16)), name="flat")
    w.propagate()
    assert "no axis to propagate" in w.last_message
    w.ui.mode_combo.setCurrentText("TZ")
    w.add_click((3, 3))
    assert "needs 4 non-channel axes" in w.last_message
    w.ui.mode_combo.setCurrentText("2D")
    w.ui.channel_axis.setValue(4)
    w.add_click((3, 3))
    assert "channel axis 4" in w.last_message
    w.ui.channel_axis.setValue(-1)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    w.load_model(checkpoint=str(bad))
    assert "could not load" in w.last_message and "no model" in w.ui.model_status.text()
    w.load_model(checkpoint=str(tmp_path / "missing.pt"))
    assert "not found" in w.last_message
    assert any("SAM 2:" in m for m in _messages())


def test_automatic_mode_and_undo(sam2_widget):
    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((2, 24, 24), np.uint8), name="z")
    w.engine = StubEngine()
    viewer.dims.set_current_step(0, 1)
    w.segment_everything()
    auto = w.auto_layer.data
    assert auto.shape == (2, 24, 24) and set(np.unique(auto[1])) == {0, 1, 2} and not auto[0].any()
    w.undo()
    assert not auto.any()


def test_objects_list_rename_delete_commit(sam2_widget):
    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((24, 24), np.uint8), name="im")
    w.engine = StubEngine()
    w.add_click((10, 10))
    assert w.ui.object_list.count() == 1
    w.ui.object_list.item(0).setText("nucleus")
    assert w.objects[1].name == "nucleus"
    w.commit()
    assert len(w.points_layer.data) == 0 and w.objects.current_id == 2
    assert w._outputs["instances"].data[10, 10] == 1, "commit keeps the pixels"
    w.add_click((10, 12))  # object 2 may not take object 1's pixels
    lab = w._outputs["instances"].data
    assert lab[10, 10] == 1 and lab[10, 16] == 2
    w.objects.select(1)
    w.delete_object()
    assert 1 not in w.objects and not (lab == 1).any()
    w.undo()
    assert 1 in w.objects and lab[10, 10] == 1


def test_real_model_click_and_3d_plus_t(sam2_widget, qtbot):
    """The real engine end to end (nano, random init: checks plumbing and shapes, not quality)."""
    viewer, w = sam2_widget()
    data = np.random.default_rng(1).integers(0, 255, (2, 3, 32, 40, 3), dtype=np.uint8)
    viewer.add_image(data, name="tzyx", rgb=True)
    assert w.ui.mode_combo.currentText() == "TZ"
    w.load_model(checkpoint="random")
    assert w.engine is not None, w.last_message
    w.add_click((1, 1, 16, 20))
    assert len(w.history.labels()[0]) == 1 and w.engine.cache.misses == 1
    w.ui.axis_combo.setCurrentText("ZT")
    w.propagate()
    assert not w.last_message.startswith("SAM 2:"), w.last_message
    # Z on t=1 (3 frames), then T (2 frames) on every slice where stage 1 found the object
    # (random weights: at least the clicked slice)
    done = w.last_propagation["frames"]
    assert done in (5, 7, 9) and len(w.quality) == done
    # with the stub (object found on every slice) the plan is exact
    w.engine = StubEngine()
    w.propagate()
    assert w.last_propagation["frames"] == 9
    out = w._outputs["instances"].data
    assert out.shape == (2, 3, 32, 40) and (out[:, :, 16, 20] == 1).all()


def test_per_object_layers_and_large_image_message(sam2_widget):
    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="small")
    w.engine = StubEngine()
    w.ui.output_combo.setCurrentIndex(1)
    w.add_click((10, 10))
    w.new_object()
    w.add_click((12, 12))
    a, b = w._outputs["obj1"].data, w._outputs["obj2"].data
    assert a[10, 10] == 1 and b[12, 12] == 2 and a[12, 12] == 1, "separate layers do not compete"
    assert {ly.name for ly in w._outputs.values()} == {"SAM2 object 1", "SAM2 object 2"}
    big = np.broadcast_to(np.zeros((1, 1), np.uint8), (4200, 4100))
    viewer.add_image(big, name="huge")
    w.ui.image_combo.setCurrentText("huge")
    w.add_click((5, 5))
    assert "crop it or use a lower-resolution level" in w.last_message


def test_keyboard_shortcuts_and_middle_click(sam2_widget):
    from types import SimpleNamespace

    viewer, w = sam2_widget()
    viewer.add_image(np.zeros((2, 30, 30), np.uint8), name="z")
    w.engine = StubEngine()
    w.ui.mode_combo.setCurrentText("Z")
    viewer.dims.set_current_step(0, 1)
    # middle-click adds a positive click on the current frame; Ctrl+middle a negative one
    w._on_mouse(viewer, SimpleNamespace(button=3, position=(1, 15, 15), modifiers=()))
    w._on_mouse(viewer, SimpleNamespace(button=1, position=(1, 5, 5), modifiers=()))  # ignored
    w._on_mouse(viewer, SimpleNamespace(button=3, position=(1, 15, 18), modifiers=("Control",)))
    assert len(w.points_layer.data) == 2 and list(w.points_layer.features["positive"]) == [True, False]
    assert w._outputs["instances"].data[1, 15, 12] == 1 and w._outputs["instances"].data[1, 15, 18] == 0
    keys = {str(k): f for k, f in viewer.keymap.items()}
    assert {"T", "N", "Shift+P", "Shift+J", "U", "Shift+U", "Shift+C"} <= set(keys), keys
    negative = w.ui.negative.isChecked()
    keys["T"](viewer)
    assert w.ui.negative.isChecked() != negative
    keys["N"](viewer)
    assert w.objects.current_id == 2
    keys["U"](viewer)  # undo the Ctrl+middle click
    assert len(w.points_layer.data) == 1


def test_closing_the_widget_unhooks_it(sam2_widget):
    viewer, w = sam2_widget()
    n_keys = len(viewer.keymap)
    assert n_keys >= 7 and w._on_mouse in viewer.mouse_drag_callbacks
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
    w.ui.channel_axis.setValue(0)
    w.ui.channels_edit.setText("1, 0")
    w.engine = StubEngine()
    viewer.dims.set_current_step(1, 2)  # world axis 1 is Z (axis 0 is the channel slider)
    assert w.current_key() == (2,)
    w.add_click((2, 10, 12))
    rgb = w.engine.frame
    assert rgb.shape == (20, 24, 3) and tuple(rgb[0, 0]) == (191, 64, 0)
    assert w._outputs["instances"].data.shape == (3, 20, 24) and w._outputs["instances"].data[2, 10, 12] == 1
    token = w.frame_token((2,))
    layer.contrast_limits = (0, 2000)  # new contrast: new pixels for SAM 2, new cache key
    assert w.frame_token((2,)) != token and tuple(w.read_frame((2,))[0, 0]) == (255, 128, 0)


def test_multiscale_layer_uses_level_zero(sam2_widget):
    viewer, w = sam2_widget()
    base = np.zeros((64, 64), np.uint8)
    base[:, 32:] = 200
    viewer.add_image([base, base[::2, ::2]], name="pyramid", multiscale=True, contrast_limits=(0, 200))
    w.engine = StubEngine()
    w.add_click((40, 50))
    assert w._outputs["instances"].data.shape == (64, 64) and w._outputs["instances"].data[40, 50] == 1
    assert w.engine.frame.shape == (64, 64, 3) and w.engine.frame[0, 40, 0] == 255


def test_correction_click_repropagates_from_its_frame_only(sam2_widget):
    viewer, w = sam2_widget()
    _time_lapse(viewer, w, 8, 32)
    w.add_click((2, 10, 10))
    w.propagate()
    out = w._outputs["instances"].data
    assert all(out[t, 10, 10] == 1 for t in range(8))
    n_steps = len(w.history.labels()[0])
    # a correction click on frame 5: the stub repeats the nearest prompted frame's masks
    # from frame 5 on, so frames 5..7 get the new disk and 0..4 keep the old one
    w.add_click((5, 25, 25))
    assert w.history.labels()[0][-1] == "propagate from here" and len(w.history.labels()[0]) == n_steps + 2
    assert [out[t, 25, 25] for t in range(8)] == [0, 0, 0, 0, 0, 1, 1, 1]
    assert all(out[t, 10, 10] == 1 for t in range(5))
    w.ui.auto_repropagate.setChecked(False)
    w.add_click((6, 2, 2))
    assert w.history.labels()[0][-1] == "click"


def test_click_on_cached_frame_is_decoder_only_with_one_partial_redraw(sam2_widget, monkeypatch, qtbot):
    """A click on a frame the engine holds: no frame read / windowing, no encoding, no full
    refresh of the Labels layer (one partial redraw of the changed pixels), the layer's array
    edited in place; and the Labels hold the engine's mask for all the clicks so far.

    Shown, with the events processed between clicks as in the app: vispy builds the Labels
    texture on the first draw, and napari refreshes fully while it does not exist yet."""
    from sam2_plugins import build_sam2

    from napari_sam2._engine import SAM2Engine
    from napari_sam2._prompts import FramePrompt

    viewer, w = sam2_widget(show=True)
    img = np.random.default_rng(3).integers(0, 4000, (300, 410), dtype=np.uint16)
    viewer.add_image(img, name="cells", contrast_limits=(0, 4000))
    w.engine = SAM2Engine(build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu"), "nano", w.cache)
    w.add_click((150, 200))  # the first click encodes the frame
    qtbot.wait(50)
    layer = w._outputs["instances"]
    data = layer.data
    calls = {"read_frame": 0, "set_image": 0, "refresh": 0, "partial": 0}

    def spy(obj, name, key):
        fn = getattr(obj, name)

        def wrapped(*a, **k):
            calls[key] += 1
            return fn(*a, **k)
        monkeypatch.setattr(obj, name, wrapped)
    spy(w, "read_frame", "read_frame")
    spy(w.engine.image_predictor, "set_image", "set_image")
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
    assert layer.data is data and w.engine.cache.misses == 1
    pts = np.array([[200, 150]] + [[x, y] for (y, x), _ in clicks], np.float32)
    expect, _ = w.engine.predict(FramePrompt(pts, np.array([1, 1, 1, 0], np.int32)))
    assert np.array_equal(layer.data == 1, expect)


def test_bad_input_threaded_and_one_dimensional(sam2_widget, qtbot, tmp_path):
    """napari refuses 1D images itself; a 2D layer whose channel axis leaves one axis is our
    1D case. And with threads on (the app's mode), a checkpoint that fails to load in the
    worker still ends as a notification with the reason and a usable widget."""
    viewer, w = sam2_widget(threaded=True)
    viewer.add_image(np.zeros((3, 16), np.uint16), name="profile")
    w.engine = StubEngine()
    w.ui.channel_axis.setValue(0)
    for action in (lambda: w.add_click((3,)), lambda: w.propagate(), lambda: w.segment_everything()):
        w.last_message = ""
        action()
        assert "needs 2 non-channel axes (Y, X); the layer has 1" in w.last_message, w.last_message
    w.ui.channel_axis.setValue(-1)
    w.engine = None
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    w.load_model(checkpoint=str(bad))
    assert w.worker is not None  # loading runs in a worker: the UI thread is free
    wait_idle(qtbot, w)
    assert "could not load" in w.last_message and w.engine is None
    assert "no model" in w.ui.model_status.text() and w.ui.load_button.isEnabled()
    assert any("could not load" in m for m in _messages())
    from napari.utils.notifications import ErrorNotification, notification_manager

    tracebacks = [n for n in notification_manager.records if isinstance(n, ErrorNotification)]
    assert not tracebacks, "an error notification with a traceback was shown"


def test_moving_the_slider_after_switching_image_is_quiet(sam2_widget):
    """After a propagation, choosing another image and moving the slider starts a new session
    (which clears the confidence log) and must not fail in the dims callback."""
    viewer, w = sam2_widget()
    _time_lapse(viewer, w, 6, 24)
    w.add_click((2, 10, 10))
    w.propagate()
    assert len(w.quality) == 6
    viewer.add_image(np.zeros((5, 20, 20), np.uint8), name="other")
    w.ui.image_combo.setCurrentText("other")
    w.ui.mode_combo.setCurrentText("T")
    w.last_message = ""
    viewer.dims.set_current_step(0, 3)  # raised TypeError in the callback before the fix
    assert len(w.quality) == 0 and w.ui.flagged_label.text() == "no flagged frames"
    assert w.last_message == "" and w.points_layer.ndim == 3


@pytest.mark.parametrize("activity", [True, False])
def test_propagation_progress_in_dock_and_optionally_in_activity_panel(sam2_widget, qtbot, activity):
    viewer, w = sam2_widget(threaded=True)
    _time_lapse(viewer, w, 8, 24, StubEngine(delay=0.05))
    w.ui.activity_progress.setChecked(activity)
    w.add_click((0, 12, 12))
    w.propagate()
    assert (w._prop_progress is not None) == activity, "napari's progress only when asked"
    wait_idle(qtbot, w)
    assert w._prop_progress is None and w.last_propagation["frames"] == 8
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
    monkeypatch.setattr(gl, "gl_renderer", lambda v: None)  # unreadable: napari's default UI
    assert SAM2Widget(viewer).ui.activity_progress.isChecked()
