"""RLE: uncompressed (upstream AMG) and COCO compressed (pycocotools string) forms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sam2_plugins.rle import (
    counts_to_string,
    decode_coco_rle,
    encode_coco_rle,
    mask_to_rle,
    masks_to_rle_torch,
    rle_area,
    rle_to_mask,
    string_to_counts,
)

# Produced by pycocotools 2.0.11 ``mask.encode(np.asfortranarray(m))`` for the masks below.
SMALL = np.zeros((7, 9), dtype=bool)
SMALL[1:5, 2:6] = True
SMALL[6, 8] = True
SMALL[0, 0] = True
SMALL_COCO = "01>3E00000c0M"
RING = np.zeros((40, 50), dtype=bool)
RING[3:30, 5:45] = True
RING[10:12, 10:40] = False
RING_COCO = ("[6k0=00000000\\OE;;" + "EE;;" * 29 + "900000000U6")


def _random_masks(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        m = rng.random((h, w)) < rng.random()
        if i % 7 == 0:
            m[:] = bool(i % 2)  # all background / all foreground
        yield m


def test_known_coco_strings_match_pycocotools():
    assert encode_coco_rle(SMALL) == {"size": [7, 9], "counts": SMALL_COCO}
    assert encode_coco_rle(RING)["counts"] == RING_COCO
    np.testing.assert_array_equal(decode_coco_rle({"size": [7, 9], "counts": SMALL_COCO}), SMALL)
    np.testing.assert_array_equal(decode_coco_rle({"size": [40, 50], "counts": RING_COCO.encode()}), RING)


def test_uncompressed_is_column_major_and_starts_with_background():
    m = np.array([[1, 0], [1, 1]], dtype=bool)  # Fortran order: 1, 1, 0, 1
    assert mask_to_rle(m) == {"size": [2, 2], "counts": [0, 2, 1, 1]}
    assert mask_to_rle(np.zeros((2, 3), bool))["counts"] == [6]
    assert mask_to_rle(np.ones((2, 3), bool))["counts"] == [0, 6]
    assert rle_area({"size": [2, 2], "counts": [0, 2, 1, 1]}) == 3


@pytest.mark.parametrize("m", list(_random_masks()))
def test_round_trips(m):
    rle = mask_to_rle(m)
    assert sum(rle["counts"]) == m.size
    np.testing.assert_array_equal(rle_to_mask(rle), m)
    coco = encode_coco_rle(m)
    assert isinstance(coco["counts"], str)
    np.testing.assert_array_equal(decode_coco_rle(coco), m)
    assert encode_coco_rle(rle) == coco  # from the uncompressed form too
    assert rle_area(rle) == rle_area(coco) == int(m.sum())
    np.testing.assert_array_equal(string_to_counts(counts_to_string(rle["counts"])), rle["counts"])


def test_batched_torch_matches_single():
    rng = np.random.default_rng(5)
    batch = torch.from_numpy(rng.random((6, 13, 17)) < 0.4)
    batch[0] = False
    batch[1] = True
    out = masks_to_rle_torch(batch)
    assert out == [mask_to_rle(b.numpy()) for b in batch]
    assert out[0]["counts"] == [13 * 17] and out[1]["counts"] == [0, 13 * 17]
    assert masks_to_rle_torch(batch.to(torch.uint8)) == out  # 0/1 integers work too


def test_large_counts_and_deltas():
    m = np.zeros((1500, 2000), dtype=bool)
    m[5:1400, 7:1990] = True
    m[700, :] = False
    coco = encode_coco_rle(m)
    np.testing.assert_array_equal(decode_coco_rle(coco), m)
    # negative deltas (count shorter than the one two places before) and multi-group numbers
    counts = [5, 100000, 3, 99990, 1, 2, 70000]
    assert string_to_counts(counts_to_string(counts)).tolist() == counts


def test_bad_input_errors():
    with pytest.raises(ValueError, match="HxW"):
        mask_to_rle(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="pixels"):
        rle_to_mask({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError, match="truncated"):
        decode_coco_rle({"size": [7, 9], "counts": "01>3E00000c0m"[:-1] + "n"})
    with pytest.raises(ValueError, match="pixels|corrupt"):
        decode_coco_rle({"size": [7, 10], "counts": SMALL_COCO})
    with pytest.raises(ValueError, match="outside"):
        decode_coco_rle({"size": [1, 1], "counts": "~~"})
    with pytest.raises(TypeError, match="size"):
        rle_to_mask({"counts": [1]})
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        masks_to_rle_torch(torch.zeros(3, 3, dtype=torch.bool))


@pytest.mark.data
def test_sav_annotations_round_trip(shared_data):
    """Every SA-V COCO string decodes to the right size and re-encodes to the very same string."""
    path = shared_data / "sav" / "sav_000001_manual.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    ann = json.loads(path.read_text())
    n = 0
    for frame in ann["masklet"][:40]:
        for rle in frame:
            m = decode_coco_rle(rle)
            assert m.shape == tuple(rle["size"]) == (848, 480)
            assert encode_coco_rle(m)["counts"] == rle["counts"]
            assert rle_area(rle) == int(m.sum())
            n += 1
    assert n >= 100


def test_cross_check_with_pycocotools_when_installed():
    mu = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed (optional cross-check)")
    for m in _random_masks(30, seed=9):
        ref = mu.encode(np.asfortranarray(m.astype(np.uint8)))
        assert encode_coco_rle(m)["counts"] == ref["counts"].decode()


@pytest.mark.reference
def test_matches_upstream_amg_rle():
    from tests.ref_utils import require_reference

    require_reference()
    from sam2.utils import amg

    rng = np.random.default_rng(1)
    batch = torch.from_numpy(rng.random((5, 11, 14)) < 0.5)
    batch[2] = True
    assert masks_to_rle_torch(batch) == amg.mask_to_rle_pytorch(batch)
    for rle in amg.mask_to_rle_pytorch(batch):
        np.testing.assert_array_equal(rle_to_mask(rle), amg.rle_to_mask(rle))
        assert rle_area(rle) == amg.area_from_rle(rle)
