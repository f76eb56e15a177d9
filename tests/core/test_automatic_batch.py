"""``SAM2AutomaticMaskGenerator.generate_batch``: the image encoder on a batch, the same masks."""

from __future__ import annotations

import numpy as np
import pytest

from sam2_plugins.rle import rle_to_mask

LOW = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


@pytest.fixture(scope="module")
def generator():
    from sam2_plugins import SAM2AutomaticMaskGenerator, build_sam2

    model = build_sam2("sam2.1_hiera_nano", checkpoint=None, device="cpu")
    return SAM2AutomaticMaskGenerator(model, points_per_side=3, output_mode="uncompressed_rle", **LOW)


def _images():
    rng = np.random.default_rng(1)
    out = []
    for h, w in ((40, 56), (64, 48), (40, 56)):  # sizes may differ within a batch
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[8:30, 10:40] = (200, 40, 40)
        out.append(img)
    return out


def test_batch_of_one_is_generate_exactly(generator) -> None:
    imgs = _images()
    single = [generator.generate(im) for im in imgs]
    batched = generator.generate_batch(imgs, batch_size=1)
    assert len(single[0]) == 27  # 9 points x 3 masks, no filter: all go through the pipeline
    for a, b in zip(single, batched):
        assert a == b  # same records, floats and RLEs included


def test_batched_encoder_gives_the_same_masks_up_to_rounding(generator) -> None:
    imgs = _images()
    single = [generator.generate(im) for im in imgs]
    batched = generator.generate_batch(imgs)  # one encoder pass for all three
    assert [len(r) for r in batched] == [len(r) for r in single]
    for a_img, b_img, im in zip(single, batched, imgs):
        for a, b in zip(a_img, b_img):
            ma, mb = rle_to_mask(a["segmentation"]), rle_to_mask(b["segmentation"])
            assert ma.shape == im.shape[:2]
            union = np.count_nonzero(ma | mb)
            assert union == 0 or np.count_nonzero(ma & mb) / union > 0.99
            assert abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-3


def test_crop_layers_work_in_a_batch() -> None:
    from sam2_plugins import SAM2AutomaticMaskGenerator, build_sam2
    from sam2_plugins.evaluation.synthetic import make_image

    # the shipped demo weights: their masks of small objects survive inside the smaller crops
    model = build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu")
    gen = SAM2AutomaticMaskGenerator(model, points_per_side=4, crop_n_layers=1, output_mode="uncompressed_rle",
                                     pred_iou_thresh=0.0, stability_score_thresh=0.0)
    img, _ = make_image(96, 128, 5, seed=3)
    out = gen.generate_batch([img])  # the whole-image crop from the batch pass, the 4 others one by one
    assert out == [gen.generate(img)]
    assert any(r["crop_box"] != [0.0, 0.0, 128.0, 96.0] for r in out[0])  # masks from the smaller crops too


def test_bad_batches_are_clear_errors(generator) -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        generator.generate_batch([])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        generator.generate_batch(_images(), batch_size=0)
