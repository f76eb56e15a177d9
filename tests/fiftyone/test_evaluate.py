"""J&F / mIoU evaluation: stored values equal the core's evaluate on the same masks."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fiftyone import _data
from tests.fiftyone.test_segment import _error, _run

EVAL = "@sam2-plugins/sam2/sam2_evaluate"


def _shifted_predictions(ds, gts, dx):
    """frames.pred = GT objects shifted right by ``dx[v]`` px (video v); returns the id maps."""
    preds = []
    for v, s in enumerate(ds.iter_samples(autosave=True)):
        shifted = np.roll(gts[v], dx[v], axis=2)
        shifted[:, :, : dx[v]] = 0
        for t, frame in enumerate(s.frames.values()):
            frame["pred"] = _data.detections_from_ids(shifted[t])
        preds.append(shifted)
    return preds


def test_stored_jf_equals_core_evaluate(media_dir):
    from sam2_plugins.evaluation import evaluate_sequence, summarize

    ds, gts = _data.video_dataset(media_dir, num_frames=6, objects=2, videos=2, seed=5)
    preds = _shifted_predictions(ds, gts, dx=[2, 6])
    res = _run(EVAL, ds.view(), pred_field="frames.pred", gt_field="frames.gt", method="jf",
               eval_key="ev", worst=1)
    assert res.error is None, res.error
    seqs = [evaluate_sequence(g, p, name=str(i), void_label=None) for i, (g, p) in enumerate(zip(gts, preds))]
    core = summarize(seqs)
    assert res.result["JF"] == pytest.approx(core["J&F-Mean"], abs=1e-12)
    assert res.result["J"] == pytest.approx(core["J-Mean"], abs=1e-12)
    assert res.result["objects"] == 4
    for s, seq in zip(ds.iter_samples(), seqs):
        one = summarize([seq])
        assert s.ev_JF == pytest.approx(one["J&F-Mean"], abs=1e-12)
        assert s.ev_F == pytest.approx(one["F-Mean"], abs=1e-12)
        # per-frame means over objects; first and last frames are not scored (DAVIS)
        j_frames = [f.ev_J for f in s.frames.values()]
        assert j_frames[0] is None and j_frames[-1] is None
        expect = np.mean([seq.J[k][0] for k in seq.object_ids])
        assert j_frames[1] == pytest.approx(expect, abs=1e-12)
    assert ds.info["sam2_evals"]["ev"]["JF"] == res.result["JF"]
    import fiftyone_sam2 as fs2

    worst = fs2.worst_samples(ds, "ev", k=1)
    assert worst.first().ev_JF == min(ds.values("ev_JF"))
    assert worst.first().filepath.endswith("_1.mp4")  # the larger shift is the worse video
    # the key is taken now
    assert "already exist" in _error(EVAL, ds.view(), pred_field="frames.pred",
                                     gt_field="frames.gt", eval_key="ev")
    res = _run(EVAL, ds.view(), pred_field="frames.gt", gt_field="frames.gt", eval_key="ev",
               overwrite=True)
    assert res.result["JF"] == 1.0 and ds.values("ev_JF") == [1.0, 1.0]


def test_miou_on_images(media_dir):
    from fiftyone_sam2._convert import detection_to_mask

    ds = _data.image_dataset(media_dir, n=2, objects=3)
    res = _run(EVAL, ds.view(), pred_field="boxes", gt_field="ground_truth", eval_key="iou")
    assert res.error is None, res.error
    assert res.result["method"] == "miou" and res.result["objects"] == 6
    all_ious = []
    for s in ds.iter_samples():
        ious = []
        for g, p in zip(s.ground_truth.detections, s.boxes.detections):  # same index order
            gm, pm = detection_to_mask(g, _data.W, _data.H), detection_to_mask(p, _data.W, _data.H)
            ious.append((gm & pm).sum() / (gm | pm).sum())
        assert s.iou_miou == pytest.approx(np.mean(ious))
        all_ious += ious
    assert res.result["mIoU"] == pytest.approx(np.mean(all_ious))


def test_evaluate_bad_input(media_dir):
    ds = _data.image_dataset(media_dir, n=1, objects=2)
    assert "J&F needs a video" in _error(EVAL, ds.view(), pred_field="boxes", gt_field="ground_truth",
                                         method="jf")
    assert "holds Keypoints" in _error(EVAL, ds.view(), pred_field="points", gt_field="ground_truth")
    assert "method must be one of" in _error(EVAL, ds.view(), pred_field="boxes",
                                             gt_field="ground_truth", method="dice")
    assert "iou_miou" not in ds.get_field_schema()


@pytest.mark.parametrize("media,door", [("video", "operator"), ("image", "operator"), ("video", "api")])
def test_views_made_before_the_evaluation_still_load(media_dir, media, door):
    """The App runs sam2_evaluate through the executor, which reloads the dataset first; views
    the user made and used before must still load their samples afterwards, new fields included
    (they raised FieldDoesNotExist('<key>_JF'), even after reload())."""
    import fiftyone_sam2 as fs2

    if media == "video":
        ds, gts = _data.video_dataset(media_dir, num_frames=5, objects=2, videos=2, seed=7)
        _shifted_predictions(ds, gts, dx=[1, 3])
        params = dict(pred_field="frames.pred", gt_field="frames.gt", method="jf")
    else:
        ds = _data.image_dataset(media_dir, n=2, objects=2)
        params = dict(pred_field="boxes", gt_field="ground_truth", method="miou")
    before = [ds.view(), ds.limit(1), ds.exclude_fields([]), ds.select_fields()]
    for v in before:  # used once before, as a user browsing them would
        assert list(v.iter_samples())
    if door == "operator":
        res = _run(EVAL, ds.view(), eval_key="early", worst=1, **params)
        assert res.error is None, res.error
    else:
        fs2.evaluate(ds.view(), eval_key="early", **params)
    key = "early_JF" if media == "video" else "early_miou"
    for v in before[:3]:
        samples = list(v.iter_samples())
        assert len(samples) == v.count() and all(s[key] is not None for s in samples)
        if media == "video":
            assert all(list(s.frames.values())[1]["early_J"] is not None for s in samples)
    assert len(list(before[3].iter_samples())) == 2  # a view without the new fields loads too
    ds.reload()
    assert len(list(before[0].iter_samples())) == 2
