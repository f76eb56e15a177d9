"""Label <-> array conversions (FiftyOne relative boxes, box-cropped masks, keypoints)."""

from __future__ import annotations

import numpy as np
import pytest

from fiftyone_sam2 import _convert as cv


def _mask(h=40, w=60):
    m = np.zeros((h, w), bool)
    m[5:17, 9:30] = True
    m[10, 40] = True
    return m


def test_mask_detection_roundtrip_is_exact(fo_env):
    import fiftyone as fo

    m = _mask()
    det = cv.mask_to_detection(m, label="a", score=0.5)
    assert det.label == "a" and det["score"] == 0.5
    assert det.mask.shape == (12, 32)
    back = cv.detection_to_mask(det, 60, 40)
    np.testing.assert_array_equal(back, m)
    # FiftyOne's own from_mask agrees on the box
    ref = fo.Detection.from_mask(m)
    np.testing.assert_allclose(det.bounding_box, ref.bounding_box, atol=1e-5)
    np.testing.assert_array_equal(det.mask, ref.mask)


def test_fiftyone_renders_our_masks_back_exactly(fo_env):
    """FiftyOne's own renderer (int truncation of box edges) gives back the same pixels."""
    import fiftyone as fo

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(20, 2000, 2))
        m = np.zeros((h, w), bool)
        y0, x0 = int(rng.integers(0, h - 5)), int(rng.integers(0, w - 5))
        m[y0:int(rng.integers(y0 + 1, h + 1)), x0:int(rng.integers(x0 + 1, w + 1))] = True
        det = cv.mask_to_detection(m, label="a")
        seg = fo.Detections(detections=[det]).to_segmentation(frame_size=(w, h), mask_targets={1: "a"})
        np.testing.assert_array_equal(seg.mask > 0, m)
        np.testing.assert_array_equal(cv.detection_to_mask(det, w, h), m)


def test_template_keeps_id_label_index_and_attributes(fo_env):
    import fiftyone as fo

    tpl = fo.Detection(label="car", bounding_box=[0.1, 0.1, 0.5, 0.5], index=7, confidence=0.9, color="red")
    det = cv.mask_to_detection(_mask(), template=tpl, predicted_iou=0.8)
    assert det.id == tpl.id and det.label == "car" and det.index == 7
    assert det.confidence == 0.9 and det["color"] == "red" and det["predicted_iou"] == 0.8
    assert det.bounding_box != tpl.bounding_box
    # an empty mask keeps the prompt box, with an all-False crop of that box's size
    empty = cv.mask_to_detection(np.zeros((40, 60), bool), template=tpl)
    assert list(empty.bounding_box) == [0.1, 0.1, 0.5, 0.5]
    assert empty.mask.shape == (20, 30) and not empty.mask.any()


def test_boxes_points_and_missing_masks(fo_env):
    import fiftyone as fo

    xyxy = cv.box_to_xyxy([0.25, 0.5, 0.5, 0.25], 100, 40)
    np.testing.assert_allclose(xyxy, [25, 20, 75, 30])
    pts = cv.keypoint_to_points([[0.5, 0.5], [float("nan"), float("nan")], [0.1, 1.0]], 100, 40)
    np.testing.assert_allclose(pts, [[50, 20], [10, 40]])
    with pytest.raises(ValueError, match="bounding box"):
        cv.box_to_xyxy([0.1, 0.2], 10, 10)
    boxed = cv.detection_to_mask(fo.Detection(bounding_box=[0.1, 0.25, 0.2, 0.5]), 50, 20)
    assert boxed.sum() == 10 * 10 and boxed[5:15, 5:15].all()
    # a crop whose size does not match its box is resized (nearest), not rejected
    d = fo.Detection(bounding_box=[0, 0, 0.5, 0.5], mask=np.ones((3, 3), bool))
    assert cv.detection_to_mask(d, 20, 20).sum() == 100


def test_instance_id_map_small_on_top():
    big = np.zeros((10, 10), bool)
    big[:, :] = True
    small = np.zeros((10, 10), bool)
    small[2:4, 2:4] = True
    ids = cv.instance_id_map([small, big], 10, 10)
    assert ids.dtype == np.uint8
    assert (ids[2:4, 2:4] == 1).all() and (ids == 2).sum() == 96


def test_to_uint8_rgb():
    g16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000)
    out = cv.to_uint8_rgb(g16)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    with pytest.raises(ValueError, match="expected an image"):
        cv.to_uint8_rgb(np.zeros(5))
