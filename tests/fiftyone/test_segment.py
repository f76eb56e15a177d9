"""Prompted segmentation and auto-labeling through the real operator executor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import requires_demo_clicks
from tests.fiftyone import _data
from tests.fiftyone._quality import SEGMENT_MARGIN, demo_floor

SEG = "@sam2-plugins/sam2/sam2_segment"
AUTO = "@sam2-plugins/sam2/sam2_auto_label"


def _run(uri, view, **params):
    import fiftyone.operators as foo

    return foo.execute_operator(uri, ctx={"view": view, "params": params})


def _error(uri, view, **params) -> str:
    """Run an operator that must fail; returns its error text (raised or returned)."""
    from fiftyone.operators.executor import ExecutionError

    try:
        res = _run(uri, view, **params)
    except ExecutionError as exc:
        return str(exc)
    assert res.error, f"expected an error, got {res.result}"
    return (res.error_message or "") + res.error


def _snapshot(ds):
    """Everything stored on the dataset's samples, as JSON (to prove nothing changed)."""
    ds.reload()
    return json.dumps([s.to_dict() for s in ds.iter_samples()], sort_keys=True, default=str), \
        sorted(ds.get_field_schema()), json.dumps(ds.info, sort_keys=True, default=str)


@pytest.fixture
def images(media_dir):
    return _data.image_dataset(media_dir, n=3, objects=3)


def test_plugin_is_discovered_with_all_operators(fo_env):
    import fiftyone.operators as foo

    uris = {o.uri for o in foo.list_operators(builtin=False)}
    assert {SEG, AUTO, "@sam2-plugins/sam2/sam2_track", "@sam2-plugins/sam2/sam2_evaluate"} <= uris


def test_forms_offer_the_datasets_fields(images):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params={"dataset_name": images.name, "params": {}})
    props = foo.get_operator(SEG).resolve_input(ctx).type.properties
    choices = lambda name: [c.value for c in props[name].view.choices]  # noqa: E731
    assert set(choices("prompt_field")) == {"boxes", "ground_truth", "points", "negatives"}
    assert choices("negative_field") == ["negatives", "points"]
    assert "sam2" == props["label_field"].default and "model" in props and "delegate" in props
    ctx = ExecutionContext(request_params={"dataset_name": images.name,
                                           "params": {"label_field": "boxes"}})
    props = foo.get_operator(SEG).resolve_input(ctx).type.properties
    assert "label_field_exists" in props  # the form warns that the name is taken


def test_segment_from_boxes_keeps_objects(images, checkpoint):
    res = _run(SEG, images.view(), prompt_field="boxes", label_field="sam2",
               checkpoint=checkpoint or "none", device="cpu", batch_size=2)
    assert res.error is None, res.error
    assert res.result["processed"] == 3 and res.result["failed"] == 0
    for s in images.iter_samples():
        assert s.sam2_status == "done"
        assert len(s.sam2.detections) == len(s.boxes.detections) == 3
        for d, p in zip(s.sam2.detections, s.boxes.detections):
            assert d.id == p.id and d.label == p.label and d.index == p.index
            assert d.mask is not None and d.mask.dtype == bool
            assert 0.0 <= d["predicted_iou"] <= 1.5
    # the run is recorded, and a second run resumes (skips everything)
    again = _run(SEG, images.view(), prompt_field="boxes", label_field="sam2",
                 checkpoint=checkpoint or "none", device="cpu")
    assert again.result["resumed"] and again.result["skipped"] == 3 and again.result["processed"] == 0


def test_batched_and_single_image_runs_agree(images, checkpoint):
    ck = checkpoint or "none"
    assert _run(SEG, images.view(), prompt_field="boxes", label_field="b1", checkpoint=ck,
                device="cpu", batch_size=1).error is None
    assert _run(SEG, images.view(), prompt_field="boxes", label_field="b3", checkpoint=ck,
                device="cpu", batch_size=3).error is None
    for s in images.iter_samples():
        for a, b in zip(s.b1.detections, s.b3.detections):
            assert a.id == b.id
            inter = np.logical_and(_full(a), _full(b)).sum()
            union = np.logical_or(_full(a), _full(b)).sum()
            assert union == 0 or inter / union > 0.99


def _full(det, w=_data.W, h=_data.H):
    from fiftyone_sam2._convert import detection_to_mask

    return detection_to_mask(det, w, h)


def test_segment_from_points_with_negatives(images, checkpoint):
    res = _run(SEG, images.view(), prompt_field="points", negative_field="negatives",
               label_field="from_points", checkpoint=checkpoint or "none", device="cpu")
    assert res.error is None, res.error
    s = images.first()
    assert [d.index for d in s.from_points.detections] == [k.index for k in s.points.keypoints]
    assert all(d.id == k.id for d, k in zip(s.from_points.detections, s.points.keypoints))


@requires_demo_clicks
def test_segment_accuracy_with_demo_model(images, demo_checkpoint):
    from fiftyone_sam2._evaluate import _match_ious

    assert _run(SEG, images.view(), prompt_field="boxes", label_field="demo_masks",
                checkpoint=demo_checkpoint, device="cpu").error is None
    ious = []
    for s in images.iter_samples():
        ious += _match_ious(s.ground_truth.detections, s.demo_masks.detections, _data.W, _data.H)
    floor = demo_floor("mIoU_1click", SEGMENT_MARGIN)
    assert float(np.mean(ious)) > floor, (floor, ious)


@pytest.mark.parametrize("params, message", [
    ({"prompt_field": "nope"}, "does not exist"),
    ({"prompt_field": None}, "Path: prompt_field. Reason: Required property"),
    ({"prompt_field": "boxes", "negative_field": "boxes"}, "holds Detections; expected Keypoints"),
    ({"prompt_field": "boxes", "checkpoint": "path", "checkpoint_path": "/no/such/file.pt"},
     "unknown checkpoint"),
    ({"prompt_field": "boxes", "model": "sam9_giant"}, "sam9_giant"),
    ({"prompt_field": "boxes", "label_field": "ground_truth"}, "already exists"),
    ({"prompt_field": "boxes", "label_field": "metadata"}, "cannot write results"),
])
def test_bad_input_gives_a_clear_error_and_writes_nothing(images, params, message):
    before = _snapshot(images)
    params = {"label_field": "out", "device": "cpu", "checkpoint": "none", **params}
    assert message in _error(SEG, images.view(), **params)
    assert _snapshot(images) == before


def test_prompt_field_of_another_label_type_is_refused(images):
    import fiftyone as fo

    images.set_values("kind", [fo.Classification(label="x") for _ in range(len(images))])
    before = _snapshot(images)
    for uri, extra in ((SEG, {}), ("@sam2-plugins/sam2/sam2_track", {"order_by": "order"})):
        text = _error(uri, images.view(), prompt_field="kind", label_field="out", checkpoint="none",
                      device="cpu", **extra)
        assert "'kind' holds Classification; expected Detections or Keypoints" in text, text
    assert _snapshot(images) == before


def test_unloadable_checkpoint_gives_a_clear_error_and_writes_nothing(images, tmp_path):
    from sam2_plugins.checkpoints import demo_checkpoint_path

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    before = _snapshot(images)
    text = _error(SEG, images.view(), prompt_field="boxes", label_field="out", device="cpu",
                  checkpoint="path", checkpoint_path=str(junk))
    assert "junk.pt" in text and any(w in text for w in ("corrupt", "not a checkpoint", "could not load")), text
    if demo_checkpoint_path().exists():  # real weights, but of another model size
        text = _error(SEG, images.view(), prompt_field="boxes", label_field="out", device="cpu",
                      model="sam2.1_hiera_tiny", checkpoint="path",
                      checkpoint_path=str(demo_checkpoint_path()))
        # the file and the model it does not fit are named
        assert "sam2.1_hiera_nano_demo.pt" in text and "sam2.1_hiera_tiny" in text, text
    assert _snapshot(images) == before


def test_overwrite_requires_explicit_choice(images, checkpoint):
    ck = checkpoint or "none"
    # an existing foreign field of another type is refused even with overwrite
    assert "holds Keypoints" in _error(SEG, images.view(), prompt_field="boxes", label_field="points",
                                       checkpoint=ck, device="cpu", overwrite=True)
    images.clone_sample_field("ground_truth", "old_masks")
    assert images.values("old_masks.detections.id") != images.values("boxes.detections.id")
    assert "already exists" in _error(SEG, images.view(), prompt_field="boxes",
                                      label_field="old_masks", checkpoint=ck, device="cpu")
    res = _run(SEG, images.view(), prompt_field="boxes", label_field="old_masks", checkpoint=ck,
               device="cpu", overwrite=True)
    assert res.error is None and res.result["processed"] == 3
    # replaced by the prompt objects (same ids as the boxes), with masks
    assert images.values("old_masks.detections.id") == images.values("boxes.detections.id")


def test_auto_label_with_semantic_map(images, checkpoint):
    res = _run(AUTO, images.limit(1), label_field="auto", semantic_field="auto_ids",
               checkpoint=checkpoint or "none", device="cpu", points_per_side=4,
               pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert res.error is None, res.error
    s = images.first()
    assert s.auto_status == "done"
    dets = s.auto.detections
    assert len(dets) >= 1
    for d in dets:
        assert d.mask is not None and d.label == "object"
        assert d.confidence == d["predicted_iou"] and "stability_score" in d
    ids = s.auto_ids.mask
    assert ids.shape == (_data.H, _data.W) and ids.max() <= len(dets)
    assert images.skip(1).exists("auto").count() == 0  # only the view was labeled


def test_only_the_selected_samples_are_labeled(images, checkpoint):
    import fiftyone.operators as foo

    chosen = images.skip(1).first().id
    res = foo.execute_operator(SEG, ctx={
        "view": images.view(), "selected": [chosen],
        "params": {"prompt_field": "boxes", "label_field": "sel", "view_target": "SELECTED_SAMPLES",
                   "checkpoint": checkpoint or "none", "device": "cpu"}})
    assert res.error is None, res.error
    assert res.result["processed"] == 1
    assert images.exists("sel").values("id") == [chosen]
