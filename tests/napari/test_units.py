"""Unit tests of the plugin's plain-Python parts (no Qt, no viewer)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._axes import AxisSpec, default_mode, to_rgb8
from napari_sam2._confidence import QualityLog, seq_id
from napari_sam2._engine import Quality
from napari_sam2._history import History, Step, apply_step, clear_object, write_mask, write_plane
from napari_sam2._objects import ObjectList
from napari_sam2._prompts import collect_prompts, masks_from_labels, prompt_frames


# ---------------------------------------------------------------- axes
def test_axis_modes_and_keys():
    spec = AxisSpec("TZ")
    shape = (3, 4, 10, 12)
    assert spec.labels_shape(shape) == shape
    assert spec.stack_axes(shape) == {"T": 0, "Z": 1}
    assert spec.frame_key(shape, (2.4, 7, 5, 5)) == (2, 3)  # clipped to Z size
    data = np.arange(np.prod(shape)).reshape(shape)
    assert np.array_equal(spec.plane(data, (1, 2)), data[1, 2])
    # extra leading axis held fixed; Z is key position 1
    assert AxisSpec("Z").stack_axes((2, 5, 8, 8)) == {"Z": 1}


def test_axis_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 2 axes"):
        AxisSpec("2D").labels_shape((7,))
    with pytest.raises(ValueError, match="needs 4 non-channel axes"):
        AxisSpec("TZ").labels_shape((3, 8, 8))
    with pytest.raises(ValueError, match="channel axis 5 does not exist"):
        AxisSpec("2D", channel_axis=5).labels_shape((2, 8, 8))
    with pytest.raises(ValueError, match="mode must be one of"):
        AxisSpec("XYZ")


def test_channels_composite_and_contrast():
    data = np.zeros((3, 2, 4, 5), np.uint16)  # C, Z, Y, X
    data[0] = 100
    data[2] = 1000
    spec = AxisSpec("Z", channel_axis=0, channels=(2, 0))
    assert spec.labels_shape(data.shape) == (2, 4, 5)
    plane = spec.plane(data, (1,))
    assert plane.shape == (4, 5, 2) and plane[0, 0, 0] == 1000 and plane[0, 0, 1] == 100
    rgb = to_rgb8(plane, [(0, 1000), (0, 200)])
    assert rgb.dtype == np.uint8 and tuple(rgb[0, 0]) == (255, 128, 0)
    grey = to_rgb8(np.full((2, 2), 50, np.uint16), (0, 100))
    assert tuple(grey[0, 0]) == (128, 128, 128)
    with pytest.raises(ValueError, match="channel 7 does not exist"):
        AxisSpec("Z", channel_axis=0, channels=(7,)).plane(data, (0,))
    rgb_spec = AxisSpec("T", rgb=True)
    vid = np.random.default_rng(0).integers(0, 255, (4, 6, 7, 3), dtype=np.uint8)
    assert rgb_spec.labels_shape(vid.shape) == (4, 6, 7)
    assert np.array_equal(to_rgb8(rgb_spec.plane(vid, (2,))), vid[2])
    assert default_mode((5, 9, 9)) == "Z" and default_mode((9, 9, 3), rgb=True) == "2D"
    assert default_mode((2, 3, 9, 9)) == "TZ"


# ---------------------------------------------------------------- objects
def test_object_list_edits_and_signals():
    objs = ObjectList()
    seen = []
    objs.selected.connect(seen.append)
    a = objs.add()
    b = objs.add("cell")
    assert (a.obj_id, b.obj_id, objs.current_id) == (1, 2, 2) and seen == [1, 2]
    objs.rename(1, "nucleus")
    objs.recolor(1, (1.0, 0.0, 0.0))
    assert objs[1].name == "nucleus" and objs[1].color == (1.0, 0.0, 0.0, 1.0)
    snap = objs.snapshot()
    objs.remove(2)
    assert objs.ids == [1] and objs.current_id == 1
    objs.restore(snap)
    assert objs.ids == [1, 2] and objs.current_id == 2
    with pytest.raises(ValueError, match="already exists"):
        objs.add(obj_id=2)
    assert objs.color_dict()[2] == objs[2].color


# ---------------------------------------------------------------- prompts
def test_collect_prompts_groups_by_frame_and_object():
    pts = np.array([[0, 5.0, 6.0], [0, 7, 8], [2, 1, 2], [1, 3, 3]])
    box = np.array([[2, 1, 1], [2, 1, 9], [2, 6, 9], [2, 6, 1]], float)
    m = np.zeros((10, 10), bool)
    m[2:4, 2:4] = True
    ps = collect_prompts(1, pts, [1, 1, 2, 0], [True, False, True, True], [box], [1],
                         {((3,), 2): m}, key_shape=(4,))
    assert set(ps) == {(0,), (2,), (3,)}  # the id-0 point is ignored
    fp = ps[(0,)][1]
    assert np.array_equal(fp.points, [[6, 5], [8, 7]]) and list(fp.labels) == [1, 0]
    assert np.array_equal(ps[(2,)][1].box, [1, 1, 9, 6]) and ps[(2,)][2].points.shape == (1, 2)
    assert ps[(3,)][2].mask is m or np.array_equal(ps[(3,)][2].mask, m)
    seq = prompt_frames(ps, {}, 0)
    assert sorted(seq) == [0, 2, 3]
    with pytest.raises(ValueError, match=r"points must be \(N, 3\)"):
        collect_prompts(1, np.zeros((2, 2)))
    lab = np.array([[0, 3], [3, 5]])
    ms = masks_from_labels(lab)
    assert sorted(ms) == [3, 5] and ms[3].sum() == 2


# ---------------------------------------------------------------- history
def test_write_mask_respects_other_objects_and_undo_restores():
    labels = np.zeros((2, 6, 6), np.int32)
    labels[0, :2, :2] = 2  # another object
    h = History()
    m = np.zeros((6, 6), bool)
    m[:3, :3] = True
    step = Step("click")
    step.edits.append(write_mask(labels, (0,), 1, m))
    h.push(step)
    assert (labels[0, :2, :2] == 2).all() and labels[0, 2, 2] == 1 and (labels[0] == 1).sum() == 5
    before = labels.copy()
    step2 = Step("overwrite")
    step2.edits.append(write_mask(labels, (0,), 1, m, overwrite=True))
    h.push(step2)
    assert (labels[0] == 1).sum() == 9
    apply_step(h.undo(), {"": labels}, forward=False)
    assert np.array_equal(labels, before)
    apply_step(h.redo(), {"": labels}, forward=True)
    assert (labels[0] == 1).sum() == 9
    assert write_mask(labels, (0,), 1, m, overwrite=True) is None  # nothing changed
    edits = clear_object(labels, 1)
    assert len(edits) == 1 and not (labels == 1).any()
    assert write_plane(labels, (1,), np.ones((6, 6))).bbox == (0, 6, 0, 6)
    with pytest.raises(RuntimeError):
        History().undo()


def test_history_is_bounded():
    h = History(max_steps=3)
    for i in range(5):
        h.push(Step(str(i)))
    assert h.labels()[0] == ["2", "3", "4"]


# ---------------------------------------------------------------- confidence
def test_quality_log_flags_and_next_frame():
    log = QualityLog()
    good, lost, low = Quality(5, 0.9, False, False), Quality(-3, 0.2, True, False), Quality(2, 0.3, False, True)
    for i, q in enumerate([good, good, lost, lost, good, low, good]):
        log.record("T", {}, i, {1: q})
    sid = seq_id("T", {})
    score, iou = log.series(sid, 1, 8)
    assert np.isnan(iou[7]) and iou[0] == pytest.approx(0.9)
    assert [f[0] for f in log.flagged(sid)] == [2, 3, 5]
    assert log.next_flagged(sid, 0) == 2 and log.next_flagged(sid, 2) == 5 and log.next_flagged(sid, 6) == 2
    log.clear(1)
    assert log.next_flagged(sid, 0) is None


def test_plane_reads_lazy_dask_arrays():
    da = pytest.importorskip("dask.array")
    arr = np.arange(2 * 3 * 5 * 6, dtype=np.uint16).reshape(2, 3, 5, 6)
    lazy = da.from_array(arr, chunks=(1, 1, 5, 6))
    spec = AxisSpec("TZ")
    plane = spec.plane(lazy, (1, 2))
    assert isinstance(plane, np.ndarray) and np.array_equal(plane, arr[1, 2])


def test_flag_summary_text():
    from napari_sam2._ctl_run import _runs
    from napari_sam2._ctl_run import _summary as _summarise

    assert _runs([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    flags = [(0, 1, "lost"), (1, 1, "lost"), (4, 2, "low"), (3, 1, "low")]
    assert _summarise(flags) == "obj 1 lost 0-1; obj 1 low 3; obj 2 low 4"
