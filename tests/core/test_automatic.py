"""Automatic mask generator: helpers (grids, crops, NMS, boxes), the generator, parity with upstream.

Parity note: with random weights SAM's masks are nearly all alike, so upstream's default
filters (pred_iou 0.8, stability 0.95) keep nothing and box NMS (0.7) keeps one mask. The fast
parity test therefore lowers the thresholds to 0 and disables box NMS (threshold 1.0) so that
every grid mask goes through the whole pipeline (decoder, stability, boxes, RLE, records); NMS
itself is compared with an independent greedy implementation below, and the slow test runs
crops + m2m with NMS on. Both run tiny 2.1 at a 512² model input (upstream built with
``++model.image_size=512``, its predictor's hard-coded feature sizes patched) to keep the
encoder cheap; the image predictor's parity tests cover 1024².
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2_plugins.predictors.image.amg_utils import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    batched_nms,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    build_point_grid,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    nms,
    uncrop_masks,
)
from sam2_plugins.rle import decode_coco_rle, rle_to_mask

IMG = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
IMG[10:30, 15:45] = (200, 40, 40)
LOW = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)


# ---------------------------------------------------------------- helpers
def test_point_grids():
    np.testing.assert_allclose(build_point_grid(2), [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    grids = build_all_layer_point_grids(8, 2, 2)
    assert [len(g) for g in grids] == [64, 16, 4]


def test_crop_boxes_match_upstream_layout():
    boxes, layers = generate_crop_boxes((100, 200), 1, 512 / 1500)
    assert boxes == [[0, 0, 200, 100], [0, 0, 117, 67], [0, 33, 117, 100], [83, 0, 200, 67], [83, 33, 200, 100]]
    assert layers == [0, 1, 1, 1, 1]
    boxes2, layers2 = generate_crop_boxes((100, 200), 2, 512 / 1500)
    assert len(boxes2) == 21 and boxes2[5] == [0, 0, 63, 38] and boxes2[-1] == [138, 63, 200, 100]


def _greedy_reference(boxes, scores, cats, thr):
    """Plain-Python greedy NMS: the textbook definition used by torchvision."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            if cats[i] != cats[j]:
                continue
            ax0, ay0, ax1, ay1 = boxes[i]
            bx0, by0, bx1, by1 = boxes[j]
            iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
            inter = iw * ih
            union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_batched_nms_matches_greedy_definition(seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 30 + 1
    boxes = torch.cat([xy, xy + wh], dim=1).round()
    scores = (torch.rand(60, generator=g) * 5).round() / 5  # many ties: order must be stable
    cats = torch.randint(0, 3, (60,), generator=g)
    for thr in (0.3, 0.7):
        ref = _greedy_reference(boxes.tolist(), scores.tolist(), cats.tolist(), thr)
        assert batched_nms(boxes, scores, cats, thr).tolist() == ref
    assert nms(boxes, scores, 0.5).tolist() == _greedy_reference(boxes.tolist(), scores.tolist(), [0] * 60, 0.5)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0


def test_mask_boxes_stability_and_uncrop():
    m = torch.zeros(3, 10, 12, dtype=torch.bool)
    m[0, 2:5, 3:9] = True
    m[1, 9, 11] = True
    boxes = batched_mask_to_box(m)
    assert boxes.tolist() == [[3, 2, 8, 4], [11, 9, 11, 9], [0, 0, 0, 0]]
    assert box_xyxy_to_xywh(boxes[0]).tolist() == [3, 2, 5, 2]
    logits = torch.tensor([[[2.0, 0.5, -0.5, -2.0]]])
    assert calculate_stability_score(logits, 0.0, 1.0).item() == pytest.approx(1 / 3)
    assert uncrop_masks(m, [2, 1, 14, 11], 12, 16).shape == (3, 12, 16)
    near = is_box_near_crop_edge(torch.tensor([[0, 0, 10, 10], [40, 40, 50, 50]]), [0, 0, 100, 100], [0, 0, 200, 200])
    assert near.tolist() == [False, False]
    near = is_box_near_crop_edge(torch.tensor([[80, 10, 100, 20]]), [0, 0, 100, 100], [0, 0, 200, 200])
    assert near.tolist() == [True]


def test_mask_data_and_batches():
    d = MaskData(a=torch.arange(4), b=np.arange(4) * 2, c=["w", "x", "y", "z"])
    d.filter(torch.tensor([True, False, True, True]))
    d.cat(MaskData(a=torch.tensor([9]), b=np.array([9]), c=["q"]))
    assert d["a"].tolist() == [0, 2, 3, 9] and d["b"].tolist() == [0, 4, 6, 9] and d["c"] == ["w", "y", "z", "q"]
    assert [b[0].tolist() for b in batch_iterator(3, np.arange(7))] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(TypeError):
        MaskData(a=3)


# ---------------------------------------------------------------- the generator (nano)
@pytest.fixture(scope="module")
def nano_model():
    build = pytest.importorskip("sam2_plugins.build")
    torch.manual_seed(0)
    return build.build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")


def test_generate_records(nano_model):
    from sam2_plugins.predictors.image.automatic import SAM2AutomaticMaskGenerator

    gen = SAM2AutomaticMaskGenerator(nano_model, points_per_side=4, box_nms_thresh=1.0, **LOW)
    recs = gen.generate(IMG)
    assert len(recs) == 4 * 4 * 3  # nothing filtered: every grid point gives 3 masks
    r = recs[0]
    assert set(r) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
    assert r["segmentation"].shape == (40, 56) and r["segmentation"].dtype == bool
    assert r["area"] == int(r["segmentation"].sum()) and isinstance(r["area"], int)
    assert r["crop_box"] == [0.0, 0.0, 56.0, 40.0]
    assert len(r["point_coords"]) == 1 and len(r["point_coords"][0]) == 2
    for rec in recs:
        if rec["area"]:
            ys, xs = np.nonzero(rec["segmentation"])
            assert rec["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
    grid = {(7.0 + 14 * i, 5.0 + 10 * j) for i in range(4) for j in range(4)}
    assert {tuple(rr["point_coords"][0]) for rr in recs} == grid


def test_output_modes_agree(nano_model):
    from sam2_plugins.predictors.image.automatic import SAM2AutomaticMaskGenerator

    outs = {mode: SAM2AutomaticMaskGenerator(nano_model, points_per_side=2, output_mode=mode, **LOW).generate(IMG)
            for mode in ("binary_mask", "uncompressed_rle", "coco_rle")}
    assert len({len(v) for v in outs.values()}) == 1 and len(outs["binary_mask"]) > 0
    for b, u, c in zip(outs["binary_mask"], outs["uncompressed_rle"], outs["coco_rle"]):
        np.testing.assert_array_equal(rle_to_mask(u["segmentation"]), b["segmentation"])
        assert isinstance(c["segmentation"]["counts"], str)
        np.testing.assert_array_equal(decode_coco_rle(c["segmentation"]), b["segmentation"])
        assert b["area"] == u["area"] == c["area"]


def test_crops_m2m_and_region_cleanup(nano_model):
    from sam2_plugins.predictors.image.automatic import SAM2AutomaticMaskGenerator

    gen = SAM2AutomaticMaskGenerator(nano_model, points_per_side=4, crop_n_layers=1, use_m2m=True,
                                     min_mask_region_area=10, crop_n_points_downscale_factor=2, **LOW)
    recs = gen.generate(np.random.default_rng(1).integers(0, 4096, (40, 56), dtype=np.uint16))
    assert recs, "expected masks from the crops"
    crops = {tuple(r["crop_box"]) for r in recs}
    assert crops <= {(0.0, 0.0, 56.0, 40.0)} | {tuple(box_xyxy_to_xywh(np.array(b, float)).tolist())
                                                  for b in generate_crop_boxes((40, 56), 1, 512 / 1500)[0][1:]}
    assert gen.predictor.max_hole_area == 10 and gen.predictor.max_sprinkle_area == 10


def test_generator_arguments(nano_model):
    from sam2_plugins.predictors.image.automatic import SAM2AutomaticMaskGenerator

    recs = SAM2AutomaticMaskGenerator(nano_model, points_per_side=None, point_grids=[np.array([[0.5, 0.5]])],
                                      multimask_output=False, **LOW).generate(IMG)
    assert len(recs) == 1 and recs[0]["point_coords"] == [[28.0, 20.0]]
    with pytest.raises(ValueError, match="exactly one"):
        SAM2AutomaticMaskGenerator(nano_model, points_per_side=4, point_grids=[np.zeros((1, 2))])
    with pytest.raises(ValueError, match="output_mode"):
        SAM2AutomaticMaskGenerator(nano_model, output_mode="png")
    strict = SAM2AutomaticMaskGenerator(nano_model, points_per_side=2, pred_iou_thresh=1.5)
    assert strict.generate(IMG) == []  # nothing passes: an empty list, not an error


# ---------------------------------------------------------------- parity with upstream (tiny 2.1)
SIZE = 512


def _upstream_generator(cls, model, **kw):
    gen = cls(model, **kw)
    s = SIZE
    gen.predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return gen


def _upstream_and_ours():
    from tests.ref_utils import build_reference, install_torchvision_shim, require_reference

    require_reference()
    install_torchvision_shim()
    import sys

    boxes_mod = sys.modules["torchvision.ops.boxes"]
    shim = boxes_mod.batched_nms
    if not getattr(shim, "_accepts_keyword", False):
        # Upstream calls batched_nms(..., iou_threshold=...); the shim names it differently.
        def batched_nms_kw(boxes, scores, idxs, iou_threshold):
            return shim(boxes, scores, idxs, iou_threshold)

        batched_nms_kw._accepts_keyword = True
        boxes_mod.batched_nms = sys.modules["torchvision.ops"].batched_nms = batched_nms_kw
    import dataclasses

    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as Upstream

    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model
    from sam2_plugins.predictors.image.automatic import SAM2AutomaticMaskGenerator

    ref = build_reference("sam2.1_hiera_tiny", extra_overrides=(f"++model.image_size={SIZE}",))
    ours = SAM2Model(dataclasses.replace(get_config("sam2.1_hiera_tiny"), image_size=SIZE))
    ours.load_state_dict(ref.state_dict(), strict=True)
    return Upstream, ref, SAM2AutomaticMaskGenerator, ours.eval()


def _compare(up_recs, our_recs):
    assert len(our_recs) == len(up_recs) > 0
    for a, b in zip(our_recs, up_recs):
        inter = np.logical_and(a["segmentation"], b["segmentation"]).sum()
        union = np.logical_or(a["segmentation"], b["segmentation"]).sum()
        assert union == 0 or inter / union >= 0.99
        assert a["point_coords"] == b["point_coords"] and a["crop_box"] == b["crop_box"]
        assert abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-4
        assert abs(a["stability_score"] - b["stability_score"]) < 1e-3


@pytest.mark.reference
def test_parity_with_upstream_generator():
    Upstream, ref, Ours, ours = _upstream_and_ours()
    img = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    img[10:40, 20:60] = (220, 30, 30)
    kw = dict(points_per_side=4, box_nms_thresh=1.0, **LOW)
    _compare(_upstream_generator(Upstream, ref, **kw).generate(img), Ours(ours, **kw).generate(img))


@pytest.mark.reference
@pytest.mark.slow
def test_parity_with_upstream_generator_crops_m2m_nms():
    Upstream, ref, Ours, ours = _upstream_and_ours()
    img = np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    kw = dict(points_per_side=4, crop_n_layers=1, crop_n_points_downscale_factor=2, use_m2m=True,
              stability_score_thresh=0.0, pred_iou_thresh=0.0, box_nms_thresh=0.7)
    _compare(_upstream_generator(Upstream, ref, **kw).generate(img), Ours(ours, **kw).generate(img))


@pytest.mark.reference
def test_nms_matches_upstream_shim():
    from tests.ref_utils import install_torchvision_shim, require_reference

    require_reference()
    install_torchvision_shim()
    import sys

    shim = sys.modules["torchvision.ops"].nms
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(80, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + torch.rand(80, 2, generator=g) * 20 + 1], dim=1)
    scores = torch.rand(80, generator=g)
    assert nms(boxes, scores, 0.5).tolist() == shim(boxes, scores, 0.5).tolist()
