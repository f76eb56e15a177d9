"""The controller without Qt or a viewer: prompts -> masks, propagation with cancel, undo /
redo, switching image / axes / model without loss, automatic mode and its empty-result
diagnosis, confidence. The same scenarios run through the dock in test_widget_gui.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_sam2.controller import AutoParams, SAM2Controller
from tests.napari.conftest import StubEngine


def _movie(frames: int = 10, side: int = 32):
    ctl = SAM2Controller()
    ctl.engine = StubEngine()
    s = ctl.open_image(np.zeros((frames, side, side), np.uint8), "movie", mode="T")
    return ctl, s


def test_controller_imports_no_qt_and_no_napari():
    code = ("import sys, numpy as np; from napari_sam2.controller import SAM2Controller; c = SAM2Controller();"
            "c.open_image(np.zeros((4, 8, 8), np.uint8), 'x');"
            "bad = [m for m in ('qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'napari', 'vispy') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_clicks_boxes_masks_and_undo_redo():
    ctl, s = _movie(4, 40)
    ctl.add_click((1, 20, 20))
    lab = s.outputs["instances"]
    assert lab[1, 20, 20] == 1 and lab[1, 20, 26] == 0 and not lab[0].any()
    ctl.add_click((1, 20, 23), positive=False)
    assert lab[1, 20, 23] == 0 and lab[1, 20, 16] == 1
    oid = ctl.new_object()
    ctl.add_box((1, 30, 5), (1, 38, 15), obj_id=oid)
    assert (lab[1, 30:39, 5:16] == oid).all()
    assert s.history.labels()[0] == ["click", "click", "box"]
    assert ctl.undo() == "box" and not (lab == oid).any() and not s.boxes
    assert ctl.redo() == "box" and (lab == oid).any() and len(s.boxes) == 1
    ctl.undo()
    ctl.undo()
    assert lab[1, 20, 23] == 1 and len(s.points) == 1
    # a bare (y, x) goes on the current frame
    ctl.current_key = (3,)
    ctl.add_click((5, 5), obj_id=1)
    assert lab[3, 5, 5] == 1
    with pytest.raises(ValueError, match="needs 3 coordinates"):
        ctl.add_click((1, 2, 3, 4))


def test_mask_prompt_every_label_becomes_an_object():
    ctl, s = _movie(3, 40)
    plane = np.zeros((40, 40), np.int32)
    plane[5:15, 5:15] = 7
    plane[20:30, 22:35] = 9
    ids = ctl.add_mask_prompt(plane, 0, key=(1,), name="cellpose")
    out = s.outputs["instances"]
    assert len(ids) == 2 and (out[1] > 0).sum() == 100 + 130 and not out[0].any()
    assert {s.objects[i].name for i in ids} == {"cellpose 7", "cellpose 9"}
    with pytest.raises(ValueError, match="no label 4"):
        ctl.add_mask_prompt(plane, 4, key=(1,))


def test_propagation_both_ways_cancel_undo_and_confidence():
    ctl, s = _movie()
    ctl.add_click((4, 16, 16))
    job = ctl.propagate()
    out = s.outputs["instances"]
    assert job.state == "done" and all(out[t, 16, 16] == 1 for t in range(10))
    st = ctl.last_propagation
    assert (st.state, st.frames, st.total, st.axis) == ("done", 10, 10, "T")
    conf = ctl.confidence((4,))
    assert conf.summary == "flagged along T: obj 1 lost 0, 4, 8" and np.isfinite(conf.iou).sum() == 10
    assert conf.index == 4 and ctl.next_flagged((4,)) == (8,)
    ctl.undo()
    assert out[:, 16, 16].sum() == 1
    # cancel after 3 frames (a progress callback, as a script would)
    ctl.direction = "forward"
    seen = []

    def stop(p):
        seen.append((p.kind, p.done, p.text))
        if p.kind == "propagation" and p.done == 3 and not p.text:
            ctl.cancel()
    ctl.events.progress.connect(stop)
    job = ctl.propagate()
    assert job.state == "cancelled" and ctl.last_propagation.cancelled
    assert [t for t in range(10) if out[t, 16, 16]] == [4, 5, 6], "earlier frames intact, later untouched"
    assert s.history.labels()[0][-1] == "propagate (cancelled)"
    assert seen[-1] == ("propagation", 3, "cancelled")
    ctl.undo()
    assert out[:, 16, 16].sum() == 1


def test_two_d_has_nothing_to_propagate_and_tz_follows_the_axes():
    ctl = SAM2Controller()
    ctl.engine = StubEngine()
    ctl.open_image(np.zeros((16, 16), np.uint8), "flat")
    ctl.add_click((3, 3))
    with pytest.raises(ValueError, match="no stack axis to propagate along"):
        ctl.propagate()
    s = ctl.open_image(np.zeros((2, 3, 24, 24), np.uint8), "tz", mode="TZ")
    ctl.add_click((1, 1, 12, 12))
    ctl.propagate()  # default along "ZT": Z on t=1, then T from every slice
    assert ctl.last_propagation.frames == 3 + 6 and (s.outputs["instances"][:, :, 12, 12] == 1).all()
    ctl.tz_along = "Z"
    ctl.propagate()
    assert ctl.last_propagation.axis == "Z" and ctl.last_propagation.frames == 3


def test_switching_image_axes_and_model_loses_nothing():
    ctl, s = _movie(6, 24)
    ctl.add_click((2, 10, 10))
    ctl.propagate()
    lab = s.outputs["instances"]
    before = lab.copy()
    steps = s.history.labels()[0]
    # another image: its own session; the first one is parked untouched
    s2 = ctl.open_image(np.zeros((5, 20, 20), np.uint8), "other", mode="Z")
    ctl.add_click((1, 5, 5))
    assert s2 is not s and s2.outputs["instances"][1, 5, 5] == 1
    assert np.array_equal(lab, before) and s.history.labels()[0] == steps
    # back to the first image: the same session, results and undo stack
    assert ctl.open_image(s.source.data, "movie", mode="T") is s and ctl.session is s
    # axes with the same labels shape: same session
    assert ctl.set_axes("Z") is s and s.spec.mode == "Z" and s.history.labels()[0] == steps
    # axes that change the labels shape: another session, this one kept
    s3 = ctl.set_axes("2D", channel_axis=0)
    assert s3 is not s and s3.lshape == (24, 24) and np.array_equal(s.outputs["instances"], before)
    # another model: nothing cleared
    ctl.engine = StubEngine()
    ctl.activate(s)
    assert np.array_equal(lab, before) and s.history.labels()[0] == steps
    assert ctl.undo() == "propagate" and [t for t in range(6) if lab[t].any()] == [2]


def test_clear_delete_commit_are_undoable():
    ctl, s = _movie(3, 24)
    ctl.add_click((0, 10, 10))
    lab = s.outputs["instances"]
    ctl.commit()
    assert len(s.points) == 0 and s.objects.current_id == 2 and lab[0, 10, 10] == 1
    ctl.add_click((0, 10, 12))
    assert lab[0, 10, 10] == 1 and lab[0, 10, 16] == 2, "committed pixels are protected"
    ctl.clear_object()
    assert not (lab == 2).any() and len(s.points) == 0
    ctl.undo()
    assert (lab == 2).any() and len(s.points) == 1
    ctl.delete_object(1)
    assert 1 not in s.objects and not (lab == 1).any()
    ctl.undo()
    assert 1 in s.objects and lab[0, 10, 10] == 1
    assert s.history.labels()[0] == ["click", "commit", "click"]
    ctl.undo()
    ctl.undo()  # back before the commit: object 1's click is a prompt again
    assert len(s.points) == 1 and s.objects[1].name == "object 1"


def test_automatic_empty_result_says_why_and_suggests_thresholds():
    ctl, s = _movie(2, 24)
    got = []
    ctl.events.automatic.connect(lambda sess, res: got.append(res))
    ctl.segment_everything((1,), AutoParams(pred_iou_thresh=0.7, stability_score_thresh=0.8))
    res = got[-1]
    assert res.n_masks == 0 and res.candidates == 2
    assert "predicted-IoU threshold 0.70 removed all 2 candidates (best predicted IoU 0.65)" in res.reason
    assert res.suggestion is not None and res.suggestion.pred_iou_thresh < 0.65
    assert "automatic" not in s.outputs or not s.outputs["automatic"].any()
    ctl.segment_everything((1,), res.suggestion)  # the suggestion keeps about half the candidates
    auto = s.outputs["automatic"]
    assert got[-1].n_masks == 1 and set(np.unique(auto[1])) == {0, 1} and not auto[0].any()
    ctl.segment_everything((1,), AutoParams(pred_iou_thresh=0.5, stability_score_thresh=0.5))
    assert got[-1].n_masks == 2 and set(np.unique(auto[1])) == {0, 1, 2}
    # the stability threshold alone
    ctl.segment_everything((0,), AutoParams(pred_iou_thresh=0.5, stability_score_thresh=0.9))
    assert "stability threshold 0.90 removed them all (best stability 0.75)" in got[-1].reason
    assert s.history.labels()[0] == ["segment everything"] * 2, "an empty result over an empty plane: no step"
    ctl.undo()
    assert set(np.unique(auto[1])) == {0, 1}
    ctl.undo()
    assert not auto.any()


def test_jobs_refuse_bad_input_with_reasons():
    ctl = SAM2Controller()
    with pytest.raises(ValueError, match="load a model first"):
        ctl.propagate()
    with pytest.raises(ValueError, match="no image"):
        ctl.add_click((1, 1))
    ctl.engine = StubEngine()
    with pytest.raises(ValueError, match="needs 4 non-channel axes"):
        ctl.open_image(np.zeros((3, 8, 8)), "x", mode="TZ")
    with pytest.raises(ValueError, match="only a first channel axis"):
        ctl.open_image(np.zeros((3, 8, 8, 2)), "x", channel_axis=3)
    ctl.open_image(np.zeros((3, 8, 8)), "x", mode="Z")
    with pytest.raises(ValueError, match="no prompts"):
        ctl.propagate()
    msgs = []
    ctl.engine = None
    ctl.events.message.connect(lambda lvl, text, topic: msgs.append((lvl, text, topic)))
    ctl.add_click((1, 3, 3))  # no model: the click is kept, the message says what to do
    assert msgs[-1][2] == "model" and "load a model" in msgs[-1][1] and len(ctl.session.points) == 1


def test_real_model_click_and_tz_propagation():
    """The real engine (nano, random weights): plumbing and shapes, not quality."""
    import torch

    from sam2_plugins import build_sam2

    ctl = SAM2Controller()
    torch.manual_seed(0)
    ctl.set_model(build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu"), "nano|random")
    data = np.random.default_rng(1).integers(0, 255, (2, 3, 32, 40, 3), dtype=np.uint8)
    s = ctl.open_image(data, "tzyx", rgb=True)
    assert s.spec.mode == "TZ"
    ctl.add_click((1, 1, 16, 20))
    assert len(s.history.labels()[0]) == 1 and ctl.engine.cache.misses == 1
    ctl.propagate()
    assert ctl.last_propagation.state == "done" and ctl.last_propagation.frames in (5, 7, 9)
    assert s.outputs["instances"].shape == (2, 3, 32, 40)
