"""Embedding cache and engine with the real core (nano config, random init: fast on CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2._axes import AxisSpec
from napari_sam2._embedding_cache import EmbeddingCache, install_forward_cache, uninstall_forward_cache
from napari_sam2._prompts import FramePrompt, collect_prompts


@pytest.fixture(scope="module")
def nano():
    from sam2_plugins import build_sam2

    torch.manual_seed(0)
    return build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")


def test_forward_cache_memory_and_disk(nano, tmp_path):
    x = torch.randn(1, 3, nano.image_size, nano.image_size)
    with torch.inference_mode():
        ref = nano.forward_image(x)
    cache = EmbeddingCache(disk_dir=tmp_path)
    install_forward_cache(nano, cache, "nano|random")
    try:
        with torch.inference_mode():
            a = nano.forward_image(x)
            b = nano.forward_image(x)
        assert (cache.misses, cache.hits) == (1, 1)
        for out in (a, b):
            assert torch.equal(out["vision_features"], ref["vision_features"])
            for u, v in zip(out["backbone_fpn"] + out["vision_pos_enc"],
                            ref["backbone_fpn"] + ref["vision_pos_enc"]):
                assert torch.equal(u, v)
        # another cache on the same folder (a reopened session): read from disk, no encoder
        cache2 = EmbeddingCache(disk_dir=tmp_path)
        install_forward_cache(nano, cache2, "nano|random")
        with torch.inference_mode():
            nano.forward_image(x)  # pos-enc shapes are learnt on the first call
            c = nano.forward_image(x)
        assert cache2.disk_hits + cache2.hits >= 1
        assert torch.equal(c["vision_features"], ref["vision_features"])
        # a different model key never reuses the entry
        assert EmbeddingCache.make_key(x, "a") != EmbeddingCache.make_key(x, "b")
        # training still runs the real encoder (autograd on)
        n = cache2.misses
        nano.forward_image(x)
        assert cache2.misses == n
    finally:
        uninstall_forward_cache(nano)
    assert "forward_image" not in vars(nano)


def test_cache_eviction_is_bounded():
    cache = EmbeddingCache(max_bytes=3 * 400)
    for i in range(5):
        cache.put(str(i), [torch.zeros(100)])
    assert len(cache) == 3 and cache.nbytes <= 1200 and cache.get("0", torch.device("cpu")) is None


def test_engine_click_mask_and_mask_prompt(nano):
    from napari_sam2._engine import SAM2Engine

    eng = SAM2Engine(nano, "nano|random")
    rgb = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    assert eng.set_frame(rgb, "f0") is True
    assert eng.set_frame(rgb, "f0") is False and eng.is_ready("f0")
    mask, iou = eng.predict(FramePrompt(np.array([[20, 10]], np.float32), np.array([1], np.int32)))
    assert mask.shape == (40, 56) and mask.dtype == bool and 0 <= iou <= 1.5
    m = np.zeros((40, 56), bool)
    m[5:15, 5:25] = True
    out, _ = eng.predict(FramePrompt(mask=m))
    assert np.array_equal(out, m)
    box = FramePrompt(box=np.array([5, 5, 25, 15], np.float32), mask=m)
    assert eng.predict(box)[0].shape == (40, 56)


def test_plan_jobs_errors_and_shapes():
    from napari_sam2._propagation import plan_jobs

    spec = AxisSpec("TZ")
    shape = (3, 4, 8, 8)
    pts = np.array([[1, 2, 4, 4]], float)
    ps = collect_prompts(2, pts, [1], [True])
    jobs = plan_jobs(spec, shape, ps, "Z", "both")
    assert len(jobs) == 1 and jobs[0].fixed == {0: 1} and jobs[0].n == 4 and jobs[0].frames_out == 4
    assert jobs[0].key(3) == (1, 3)
    jobs = plan_jobs(spec, shape, ps, "T", "forward", start_key=(1, 2))
    assert jobs[0].start == 1 and jobs[0].frames_out == 2
    with pytest.raises(ValueError, match="axis 'T' does not exist"):
        plan_jobs(AxisSpec("Z"), (4, 8, 8), collect_prompts(1, pts[:, 1:], [1], [True]), "T")
    with pytest.raises(ValueError, match="no prompts"):
        plan_jobs(spec, shape, {}, "Z")


@pytest.mark.parametrize("hw", [(40, 56), (300, 410), (700, 520)])
def test_engine_region_mask_equals_image_predictor(nano, hw):
    """The fast click path (decoder at low resolution, the chosen mask upsampled inside its
    box) gives the image predictor's own best mask and IoU, for 1 click (3 candidate masks),
    several clicks, and a box."""
    from napari_sam2._engine import SAM2Engine

    eng = SAM2Engine(nano, "nano|random")
    rgb = np.random.default_rng(hw[0]).integers(0, 255, (*hw, 3), dtype=np.uint8)
    eng.set_frame(rgb, "f")
    h, w = hw
    prompts = [FramePrompt(np.array([[w * 0.4, h * 0.3]], np.float32), np.array([1], np.int32)),
               FramePrompt(np.array([[w * 0.4, h * 0.3], [w * 0.7, h * 0.6]], np.float32), np.array([1, 0], np.int32)),
               FramePrompt(box=np.array([w * 0.2, h * 0.2, w * 0.6, h * 0.7], np.float32))]
    for fp in prompts:
        region, iou = eng.predict_region(fp)
        with torch.inference_mode():
            masks, ious, _ = eng.image_predictor.predict(
                point_coords=fp.points if len(fp.points) else None,
                point_labels=fp.labels if len(fp.labels) else None, box=fp.box,
                multimask_output=len(fp.points) == 1 and fp.box is None)
        best = int(np.argmax(ious))
        assert np.array_equal(region.full(), masks[best] > 0.5) and iou == pytest.approx(float(ious[best]))
        assert region.shape == hw and eng.image_predictor._orig_hw == [hw]  # restored
