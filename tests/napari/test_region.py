"""The click fast path: masks as bounding boxes, upsampling inside the box, box-local writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam2._history import write_mask
from napari_sam2._region import RegionMask, upsample_region


def _blobs(s: int, seed: int, shift: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(1, 1, s, s, generator=g) * 3
    return F.avg_pool2d(low, 5, 1, 2)[0, 0] * 4 - shift


@pytest.mark.parametrize("out_hw", [(1024, 1024), (480, 854), (333, 517), (64, 64), (40, 56), (1000, 37)])
@pytest.mark.parametrize("shift", [0.0, 2.0, 6.0])
def test_upsample_region_equals_full_interpolation(out_hw, shift):
    """Up- and down-scaling, odd aspect ratios, small and large objects: the same pixels as
    ``F.interpolate`` (bilinear, align_corners=False) followed by the threshold."""
    for s, seed in ((256, 0), (64, 1)):
        low = _blobs(s, seed, shift)
        ref = (F.interpolate(low[None, None], out_hw, mode="bilinear", align_corners=False)[0, 0] > 0).numpy()
        reg = upsample_region(low, out_hw)
        assert reg.shape == out_hw
        assert np.array_equal(reg.full(), ref), f"{int((reg.full() != ref).sum())} pixels differ"
        if ref.any():  # the box is tight
            assert reg.crop[0].any() and reg.crop[-1].any() and reg.crop[:, 0].any() and reg.crop[:, -1].any()


def test_upsample_region_small_object_stays_small_and_empty_is_empty():
    low = torch.full((256, 256), -5.0)
    low[100:110, 40:44] = 5.0
    reg = upsample_region(low, (2048, 2048))
    y0, y1, x0, x1 = reg.bbox
    assert 80 <= (y1 - y0) <= 90 and 32 <= (x1 - x0) <= 40  # ~8x the low-res box, not the plane
    assert upsample_region(torch.full((256, 256), -1.0), (2048, 2048)).empty
    assert upsample_region(np.full((8, 8), 1.0, np.float32), (3, 5)).full().all()
    with pytest.raises(ValueError, match=r"\(h, w\) logits"):
        upsample_region(torch.zeros(1, 8, 8), (16, 16))


def test_region_mask_round_trip_and_validation():
    m = np.zeros((30, 40), bool)
    m[3:9, 10:31] = True
    m[20, 5] = True
    r = RegionMask.from_full(m)
    assert r.bbox == (3, 21, 5, 31) and np.array_equal(r.full(), m)
    assert RegionMask.from_full(np.zeros((4, 4), bool)).empty
    padded = RegionMask(np.pad(r.crop, 2), (1, 3), (30, 40))
    assert padded.tight().bbox == r.bbox and np.array_equal(padded.full(), m)
    with pytest.raises(ValueError, match="does not fit"):
        RegionMask(np.ones((5, 5), bool), (28, 0), (30, 40))
    with pytest.raises(ValueError, match="does not fit"):
        RegionMask(np.ones((5, 5), np.uint8), (0, 0), (30, 40))


def test_write_mask_region_equals_full_mask():
    """Writing a RegionMask touches the same pixels as writing the full mask (old pixels of the
    object cleared, other objects kept unless overwrite) and records the same edit."""
    rng = np.random.default_rng(0)
    for overwrite in (False, True):
        base = np.zeros((2, 60, 80), np.int32)
        base[1, 10:30, 10:40] = 3  # the object's old pixels
        base[1, 25:35, 35:50] = 5  # another object
        base[1, 50:55, 70:75] = 3
        for _ in range(5):
            m = np.zeros((60, 80), bool)
            y, x = rng.integers(5, 50), rng.integers(5, 70)
            m[y:y + 12, x:x + 15] = True
            a, b = base.copy(), base.copy()
            ea = write_mask(a, (1,), 3, m, overwrite=overwrite, target="t")
            eb = write_mask(b, (1,), 3, RegionMask.from_full(m), overwrite=overwrite, target="t")
            assert np.array_equal(a, b) and ea.bbox == eb.bbox
            assert np.array_equal(ea.before, eb.before) and np.array_equal(ea.after, eb.after)
            assert not (a[1] == 3)[~m].any()
            if not overwrite:
                assert np.array_equal(a[1] == 5, base[1] == 5)
            assert not a[0].any()
    # an empty region clears the object; a region of the wrong plane is refused
    lab = np.zeros((20, 20), np.int32)
    lab[2:5, 2:5] = 1
    e = write_mask(lab, (), 1, RegionMask(np.zeros((0, 0), bool), (0, 0), (20, 20)))
    assert e is not None and not lab.any()
    assert write_mask(lab, (), 1, RegionMask(np.zeros((0, 0), bool), (0, 0), (20, 20))) is None
    with pytest.raises(ValueError, match="does not match the plane"):
        write_mask(lab, (), 1, RegionMask(np.ones((2, 2), bool), (0, 0), (30, 20)))
