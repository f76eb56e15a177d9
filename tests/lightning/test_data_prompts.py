"""Prompt simulation, augmentation, data sources, metrics and bad-input handling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_module.augment import AugmentConfig, augment_clip, resize_clip
from lightning_module.data import BatchedClips, EvalClips, collate_clips, prepare_clip
from lightning_module.datamodules import SAM2DataModule, build_source
from lightning_module.geometry import Geometry
from lightning_module.metrics import JandF, MaskIoU, best_candidate
from lightning_module.prompts import (
    PromptConfig,
    masks_to_boxes,
    plan_prompts,
    sample_box_points,
    sample_center_points,
    sample_error_points,
)
from lightning_module.sources import (
    CocoSource,
    ImageFolderSource,
    RawClip,
    SyntheticSource,
    VideoFolderSource,
    decode_coco_rle,
)


def _square_masks(B=3, H=40, W=50):
    m = torch.zeros(B, 1, H, W, dtype=torch.bool)
    for b in range(B):
        m[b, 0, 5 + b:20 + b, 10 + 2 * b:30 + 2 * b] = True
    return m


# ---------------------------------------------------------------- prompts
def test_boxes_and_box_noise_stay_in_image_and_near_the_object():
    m = _square_masks()
    box = masks_to_boxes(m)[:, 0]
    assert box[0].tolist() == [10, 5, 29, 19]
    torch.manual_seed(0)
    for _ in range(20):
        coords, labels = sample_box_points(m, noise=0.1, noise_max=20)
        assert coords.shape == (3, 2, 2) and labels.tolist() == [[2, 3]] * 3
        flat = coords.reshape(3, 4)
        assert (flat >= 0).all() and (flat[:, 0::2] <= 49).all() and (flat[:, 1::2] <= 39).all()
        assert ((flat - box).abs() <= 0.1 * 20 + 1e-4).all()  # 0.1 x (box side <= 20 px)


def test_error_clicks_fall_in_the_error_region_with_the_right_label():
    torch.manual_seed(0)
    gt = _square_masks()
    pred = torch.zeros_like(gt)
    pred[:, 0, 0:10, 0:10] = True  # false positives at the top-left
    for _ in range(30):
        coords, labels = sample_error_points(gt, pred)
        for b in range(3):
            x, y = int(coords[b, 0, 0]), int(coords[b, 0, 1])
            if labels[b, 0] == 1:
                assert gt[b, 0, y, x] and not pred[b, 0, y, x]
            else:
                assert pred[b, 0, y, x] and not gt[b, 0, y, x]
    # perfect prediction: a negative click on the background
    coords, labels = sample_error_points(gt, gt.clone())
    assert (labels == 0).all()
    assert not gt[0, 0, int(coords[0, 0, 1]), int(coords[0, 0, 0])]


def test_center_click_is_inside_and_far_from_the_border():
    gt = _square_masks(1)
    coords, labels = sample_center_points(gt, None)
    x, y = coords[0, 0].tolist()
    assert labels.item() == 1 and gt[0, 0, int(y), int(x)]
    assert 15 <= x <= 24 and 8 <= y <= 16


def test_plan_probabilities_and_frames():
    gt = torch.zeros(8, 2, 32, 32, dtype=torch.bool)
    gt[:, :, 8:20, 8:20] = True
    rng = np.random.default_rng(0)
    cfg = PromptConfig()
    kinds = {"mask": 0, "box": 0, "click": 0}
    for _ in range(400):
        plan = plan_prompts(gt, cfg, rng)
        assert plan.init_cond_frames[0] == 0 and 1 <= len(plan.init_cond_frames) <= 2
        assert sorted(plan.processing_order) == list(range(8))
        if plan.use_points:
            assert 1 <= len(plan.frames_to_correct) <= 2
            assert set(plan.init_cond_frames) <= set(plan.frames_to_correct)
            labels = plan.point_inputs[0]["point_labels"]
            kinds["box" if labels.shape[1] == 2 else "click"] += 1
        else:
            assert plan.frames_to_correct == [] and 0 in plan.mask_inputs
            kinds["mask"] += 1
    # upstream: P(mask) 0.5, P(box) 0.25, P(click) 0.25
    assert abs(kinds["mask"] / 400 - 0.5) < 0.08
    assert abs(kinds["box"] / 400 - 0.25) < 0.08
    evalplan = plan_prompts(gt, cfg, rng, training=False)
    assert evalplan.mask_inputs.keys() == {0} and evalplan.frames_to_correct == []
    image_plan = plan_prompts(gt[:1], PromptConfig(prob_points=0.0), rng)
    assert image_plan.use_points and image_plan.frames_to_correct == [0]


def test_prompt_config_validates():
    with pytest.raises(ValueError, match="probability"):
        PromptConfig(prob_points=1.5)
    with pytest.raises(ValueError, match="max_frames_to_correct"):
        PromptConfig(max_init_cond_frames=3, max_frames_to_correct=2)


# ---------------------------------------------------------------- augmentation
def test_augmentation_is_consistent_across_the_clip():
    frame = torch.zeros(48, 48, 3, dtype=torch.uint8)
    frame[10:20, 5:15] = 255
    ids = torch.zeros(48, 48, dtype=torch.long)
    ids[10:20, 5:15] = 3
    frames, masks = resize_clip(frame[None].repeat(4, 1, 1, 1), ids[None].repeat(4, 1, 1), 64)
    cfg = AugmentConfig(hflip_p=1.0, degrees=20, shear=10, grayscale_p=0.0)
    out_f, out_m = augment_clip(frames, masks, cfg, torch.Generator().manual_seed(1))
    assert out_f.shape == (4, 3, 64, 64) and out_m.dtype == torch.long
    assert set(out_m.unique().tolist()) <= {0, 3}
    for t in range(1, 4):  # same draw on every frame
        assert torch.equal(out_m[t], out_m[0]) and torch.allclose(out_f[t], out_f[0])
    assert not torch.equal(out_m[0], masks[0])
    # horizontally flipped: the object moved to the right half
    assert out_m[0, :, 32:].eq(3).sum() > out_m[0, :, :32].eq(3).sum()


# ---------------------------------------------------------------- sources and batches
def test_synthetic_batches_have_objects_on_frame_zero():
    ds = BatchedClips([SyntheticSource(20, num_frames=3, height=48, width=64)], 3, 2, 64, 3,
                      AugmentConfig())
    b = ds[1]
    assert b.images.shape == (3, 2, 3, 64, 64)
    assert b.masks.shape[0] == 3 and b.masks.shape[1] == b.obj_to_clip.numel()
    assert b.masks[0].flatten(1).any(-1).all()
    assert set(b.obj_to_clip.tolist()) == {0, 1}
    again = ds[1]
    assert torch.equal(again.masks, b.masks)  # deterministic given the index


def test_eval_clips_cover_every_clip_and_every_object_once():
    """Validation: clips 0.. of each source in order, each once; in crop mode every object of
    frame 0 is scored in exactly one tile."""
    a = SyntheticSource(3, num_frames=2, height=32, width=48)
    b = SyntheticSource(2, num_frames=2, height=32, width=48, seed=9)
    names = [a[i].name for i in range(3)] + [b[i].name for i in range(2)]
    assert len(set(names)) == 5
    squash = [Geometry("squash")] * 2
    ds = EvalClips([a, b], 100, 2, 32, geometries=squash)
    assert len(ds) == 3  # a: 2 + 1 clips, b: 2 clips (a batch never mixes sources)
    assert [n for i in range(len(ds)) for n in ds[i].names] == names
    assert len(EvalClips([a, b], 2, 2, 32, geometries=squash)) == 2  # at most num_batches
    with pytest.raises(IndexError):
        EvalClips([a, b], 2, 2, 32, geometries=squash)[2]
    # crop at native scale: each 32x48 frame is two 32x32 tiles (x 0..31 and 16..47)
    tiles = EvalClips([a, b], 100, 1, 32)
    per_clip = {}
    for i in range(len(tiles)):
        batch = tiles[i]
        assert batch.images.shape[-2:] == (32, 32)
        per_clip[batch.names[0]] = per_clip.get(batch.names[0], 0) + batch.num_objects
    want = {c.name: len(np.unique(c.masks[0])) - 1 for c in [a[i] for i in range(3)] + [b[i] for i in range(2)]}
    assert per_clip == want


def test_curriculum_uses_its_own_source_weights_for_the_first_batches():
    clips = SyntheticSource(10, num_frames=3, height=32, width=48)
    images = SyntheticSource(10, num_frames=1, height=32, width=48, seed=7)
    ds = BatchedClips([clips, images], 12, 1, 32, 3, None, weights=[1.0, 0.0], first_batches=6,
                      first_weights=[0.0, 1.0])
    frames = [ds[i].num_frames for i in range(12)]
    assert frames == [1] * 6 + [3] * 6
    with pytest.raises(ValueError, match="first_weights"):
        BatchedClips([clips, images], 2, 1, 32, first_batches=1, first_weights=[1.0])


def test_datamodule_curriculum_reads_batches_in_order():
    from lightning_module.datamodules import SAM2DataModule

    spec = [{"kind": "synthetic", "length": 10, "num_frames": 2, "height": 32, "width": 48,
             "weight": 1.0},
            {"kind": "synthetic", "length": 10, "num_frames": 1, "height": 32, "width": 48,
             "weight": 0.0}]
    dm = SAM2DataModule(train_sources=spec, image_size=32, batch_size=1, train_batches=4,
                        augment=False, curriculum={"batches": 2, "weights": [0, 1]})
    got = [b.num_frames for b in dm.train_dataloader()]
    assert got == [1, 1, 2, 2]
    assert dm.describe()["curriculum"] == {"batches": 2, "weights": [0, 1]}
    with pytest.raises(ValueError, match="curriculum"):
        SAM2DataModule(train_sources=spec, curriculum={"steps": 2})


def _write_video_folder(root, frames=4, size=(20, 30), per_object=False, bad_size=False):
    for v in ("v1",):
        (root / "JPEGImages" / v).mkdir(parents=True)
        (root / "Annotations" / v).mkdir(parents=True)
        for t in range(frames):
            Image.fromarray(np.full((*size, 3), 40 * t, np.uint8)).save(
                root / "JPEGImages" / v / f"{t:05d}.jpg")
            m = np.zeros(size if not bad_size else (size[0] + 1, size[1]), np.uint8)
            m[2:8, 3:9] = 1
            m[10:15, 12:20] = 2
            if per_object:
                for k in (1, 2):
                    d = root / "Annotations" / v / f"{k:03d}"
                    d.mkdir(exist_ok=True)
                    Image.fromarray(((m == k) * 255).astype(np.uint8)).save(d / f"{t:05d}.png")
            else:
                Image.fromarray(m, mode="L").save(root / "Annotations" / v / f"{t:05d}.png")


@pytest.mark.parametrize("per_object", [False, True])
def test_video_folder_source(tmp_path, per_object):
    _write_video_folder(tmp_path, per_object=per_object)
    src = VideoFolderSource(tmp_path, num_frames=3)
    clip = src[0]
    assert clip.frames.shape == (3, 20, 30, 3) and clip.masks.shape == (3, 20, 30)
    assert set(np.unique(clip.masks)) == {0, 1, 2}


def test_short_videos_are_skipped_and_empty_sources_rejected(tmp_path):
    _write_video_folder(tmp_path, frames=2)
    with pytest.warns(UserWarning, match="shorter"):
        with pytest.raises(ValueError, match="no video"):
            VideoFolderSource(tmp_path, num_frames=3)
    with pytest.raises(ValueError, match="empty"):
        BatchedClips([[]], 1, 1, 64)
    with pytest.raises(ValueError, match="no data source"):
        BatchedClips([], 1, 1, 64)


def test_masks_of_the_wrong_size_raise(tmp_path):
    _write_video_folder(tmp_path, bad_size=True)
    with pytest.raises(ValueError, match="mask .* is"):
        VideoFolderSource(tmp_path, num_frames=2)[0]
    raw = RawClip(np.zeros((2, 10, 10, 3), np.uint8), np.zeros((2, 10, 12), np.int64), "x")
    with pytest.raises(ValueError, match="do not match"):
        prepare_clip(raw, 32, 3)


def test_clips_without_objects_are_skipped_then_rejected():
    empty = RawClip(np.zeros((1, 16, 16, 3), np.uint8), np.zeros((1, 16, 16), np.int64), "empty")
    assert prepare_clip(empty, 32, 3) is None
    with pytest.raises(ValueError, match="no clip with an object"):
        BatchedClips([[empty]], 1, 2, 32, max_retries=2)[0]
    with pytest.raises(ValueError, match="same length"):
        full = RawClip(np.zeros((2, 8, 8, 3), np.uint8), np.ones((2, 8, 8), np.int64))
        one = RawClip(np.zeros((1, 8, 8, 3), np.uint8), np.ones((1, 8, 8), np.int64))
        collate_clips([prepare_clip(full, 16, 1), prepare_clip(one, 16, 1)])


def test_image_folder_and_coco_sources(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    img = np.random.default_rng(0).integers(0, 60000, (24, 32), dtype=np.uint16)
    Image.fromarray(img).save(tmp_path / "img" / "a.png")
    lab = np.zeros((24, 32), np.uint8)
    lab[3:9, 4:12] = 1
    lab[12:20, 15:30] = 2
    Image.fromarray(lab).save(tmp_path / "lab" / "a.png")
    clip = ImageFolderSource(tmp_path / "img", tmp_path / "lab")[0]
    assert clip.frames.shape == (1, 24, 32, 3) and clip.frames.dtype == np.uint8
    assert set(np.unique(clip.masks)) == {0, 1, 2}

    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "c.jpg")
    # column-major runs: 3 rows 2..4 of column 1 -> counts [26, 3, ...]
    rle = {"size": [24, 32], "counts": [24 + 2, 3, 24 * 32 - 29]}
    ann = {"images": [{"id": 1, "file_name": "c.jpg", "height": 24, "width": 32}],
           "annotations": [
               {"id": 1, "image_id": 1, "iscrowd": 0, "area": 50,
                "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]]},
               {"id": 2, "image_id": 1, "iscrowd": 0, "area": 3, "segmentation": rle},
               {"id": 3, "image_id": 1, "iscrowd": 1, "area": 9, "segmentation": rle}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    coco = CocoSource(tmp_path / "ann.json", tmp_path)[0]
    assert coco.masks.shape == (1, 24, 32)
    assert coco.masks[0, 5, 5] == 1
    assert (coco.masks[0] == 2).sum() == 3 and coco.masks[0, 2, 1] == 2 and coco.masks[0, 4, 1] == 2


def _coco_rle_string(counts):
    """The compressed COCO RLE string of ``counts`` (pycocotools' rleToString scheme)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


@pytest.mark.parametrize("counts", [[5, 3, 2, 6], [10, 5, 2, 1, 3, 79], [0, 100]])
def test_compressed_rle_decodes_like_the_uncompressed_form(counts):
    # the second case has negative deltas (1 - 5), the third a mask that starts foreground
    h, w = 10, 10
    ref = decode_coco_rle(counts, h, w)
    assert np.array_equal(decode_coco_rle(_coco_rle_string(counts), h, w), ref)
    assert ref.sum() == sum(counts[1::2])
    assert ref.T.reshape(-1)[counts[0]] == (counts[1] > 0)


def test_build_source_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="unknown source kind"):
        build_source({"kind": "nope"})
    with pytest.raises(ValueError, match="'kind'"):
        build_source({"root": "x"})
    with pytest.raises(ValueError, match=r"kind 'synthetic' takes .*num_frames"):
        build_source({"kind": "synthetic", "frames": 3})
    spec = [{"kind": "synthetic", "length": 4, "num_frames": 1, "height": 32, "width": 32}]
    dm = SAM2DataModule(train_sources=spec, train_batches=2, batch_size=1, image_size=32)
    assert len(dm.train_dataloader()) == 2
    with pytest.raises(ValueError, match="image_size is not set and no model"):
        SAM2DataModule(train_sources=spec).train_dataloader()


# ---------------------------------------------------------------- metrics
def test_jf_and_miou_metrics():
    gt = torch.zeros(4, 2, 32, 32, dtype=torch.bool)
    gt[:, 0, 4:20, 4:20] = True
    gt[:, 1, 10:30, 12:28] = True
    jf = JandF()
    jf.update(gt.clone(), gt)
    assert {k: float(v) for k, v in jf.compute().items()} == {"J": 1.0, "F": 1.0, "J&F": 1.0}
    jf.reset()
    pred = gt.clone()
    pred[:, 1] = False  # object 2 lost: J = 0, F = 0 for it
    jf.update(pred, gt)
    assert float(jf.compute()["J&F"]) == pytest.approx(0.5)
    miou = MaskIoU()
    half = gt[0].clone()
    half[0, 4:12] = False
    miou.update(half, gt[0])
    assert float(miou.compute()) == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError):
        jf.update(pred[0], gt[0])


@pytest.mark.data
def test_davis_folder_and_stardist_image_sources(shared_data, tmp_path):
    davis = shared_data / "davis2016-val"
    src = VideoFolderSource(davis, num_frames=3, image_dir="JPEGImages/480p",
                            mask_dir="Annotations/480p", file_list=davis / "ImageSets/2016/val.txt")
    assert len(src) == 20
    clip = src[0]
    assert clip.frames.shape == (3, 480, 854, 3) and set(np.unique(clip.masks)) <= {0, 1}
    prepared = prepare_clip(clip, 64, 3)
    assert prepared is not None and prepared.masks.shape == (3, 1, 64, 64)

    tifffile = pytest.importorskip("tifffile")
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    tifffile.imwrite(tmp_path / "img" / "n.tif", tifffile.imread(shared_data / "stardist/img2d.tif"))
    tifffile.imwrite(tmp_path / "lab" / "n.tif", tifffile.imread(shared_data / "stardist/mask2d.tif"))
    cells = ImageFolderSource(tmp_path / "img", tmp_path / "lab")[0]
    assert cells.frames.shape == (1, 512, 512, 3) and len(np.unique(cells.masks)) == 125 + 1


def test_best_candidate_picks_the_highest_true_iou_per_object():
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[0, :4, :4] = True
    gt[1, 4:, 4:] = True
    cand = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    cand[0, 0, :4, :2] = True          # half of object 0
    cand[0, 2, :4, :4] = True          # object 0 exactly
    cand[1, 1, 4:, 4:] = True          # object 1 exactly
    cand[1, 2] = True                  # everything
    best = best_candidate(cand, gt)
    assert torch.equal(best, gt)
    with pytest.raises(ValueError, match=r"expected candidates \(O, M, H, W\)"):
        best_candidate(cand[0], gt)
