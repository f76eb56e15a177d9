"""Microscopy data as users have it: strict pairing, stacks as clips, native-scale crops, and
the messages bad data gets (each case of issue 19, through the source a YAML spec builds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_module.data import BatchedClips, prepare_clip
from lightning_module.datamodules import build_source
from lightning_module.geometry import Geometry, eval_views
from lightning_module.sources import RawClip

tifffile = pytest.importorskip("tifffile")


def _nuclei(h: int = 40, w: int = 48, n: int = 4, seed: int = 0):
    """A uint16 image with n bright discs and their instance labels."""
    rng = np.random.default_rng(seed)
    img = rng.integers(100, 300, (h, w)).astype(np.uint16)
    lab = np.zeros((h, w), np.uint16)
    yy, xx = np.mgrid[:h, :w]
    for k in range(1, n + 1):
        cy, cx = rng.integers(6, h - 6), rng.integers(6, w - 6)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 16
        img[disc] = 3000
        lab[disc & (lab == 0)] = k
    return img, lab


def _volume(z: int = 12, h: int = 32, w: int = 32):
    """A (z, h, w) stack with blobs that each span 3-5 planes (so they appear and vanish)."""
    img = np.full((z, h, w), 200, np.uint16)
    lab = np.zeros((z, h, w), np.uint16)
    yy, xx = np.mgrid[:h, :w]
    for k, (z0, cy, cx) in enumerate([(1, 8, 8), (3, 20, 22), (6, 10, 24), (8, 24, 8)], 1):
        for dz in range(4):
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 20 - 3 * abs(dz - 1.5)
            img[z0 + dz][disc] = 4000
            lab[z0 + dz][disc] = k
    return img, lab


def _folder(root, names, masks_for=None, mask_dir="masks"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / mask_dir).mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        img, lab = _nuclei(seed=i)
        tifffile.imwrite(root / "images" / f"{n}.tif", img)
        if masks_for is None or n in masks_for:
            tifffile.imwrite(root / mask_dir / f"{n}.tif", lab)


def test_unpaired_files_are_listed_and_refused_unless_allowed(tmp_path):
    names = [f"cell_{i}" for i in range(7)]
    _folder(tmp_path, names, masks_for=names[:3])
    spec = {"kind": "image_folder", "images": str(tmp_path / "images"),
            "masks": str(tmp_path / "masks")}
    with pytest.raises(ValueError, match=r"3 image/mask pair\(s\) found .* but 4 image\(s\) have "
                                         r"no mask: cell_3.tif, cell_4.tif, cell_5.tif, cell_6.tif"):
        build_source(spec)
    with pytest.warns(UserWarning, match="4 image.* have no mask"):
        src = build_source({**spec, "allow_unpaired": True})
    assert len(src) == 3 and [p.stem for p, _ in src.items] == names[:3]
    # masks without an image are reported too
    tifffile.imwrite(tmp_path / "masks" / "orphan.tif", np.zeros((40, 48), np.uint16))
    with pytest.raises(ValueError, match=r"have no mask: .* and 1 mask\(s\) have no image: "
                                         r"orphan.tif"):
        build_source(spec)


def test_same_folder_for_images_and_masks_is_refused(tmp_path):
    _folder(tmp_path, ["a", "b"])
    folder = str(tmp_path / "images")
    with pytest.raises(ValueError, match="images and masks are the same folder .* paired with itself"):
        build_source({"kind": "image_folder", "images": folder, "masks": folder})
    # one folder is fine when a suffix tells masks apart (cellpose style x.tif + x_masks.tif)
    for n in ("a", "b"):
        tifffile.imwrite(tmp_path / "images" / f"{n}_masks.tif", tifffile.imread(tmp_path / "masks" / f"{n}.tif"))
    src = build_source({"kind": "image_folder", "images": folder, "masks": folder,
                        "mask_suffix": "_masks"})
    assert len(src) == 2 and src[0].masks.max() >= 1


def test_a_3d_stack_is_refused_as_an_image_and_read_as_clips_by_the_stack_source(tmp_path):
    vol = np.random.default_rng(0).integers(0, 500, (31, 61, 57)).astype(np.uint16)
    lab = np.zeros((31, 61, 57), np.uint16)
    lab[5:12, 10:20, 10:20] = 1
    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    tifffile.imwrite(tmp_path / "images" / "vol.tif", vol)
    tifffile.imwrite(tmp_path / "masks" / "vol.tif", lab)
    spec = {"images": str(tmp_path / "images"), "masks": str(tmp_path / "masks")}
    with pytest.raises(ValueError, match=r"vol.tif has shape \(31, 61, 57\): .*stack of 31 planes "
                                         r"of 61x57, not one 2D image with 57 channels.*kind: stack"):
        build_source({"kind": "image_folder", **spec})
    src = build_source({"kind": "stack", "num_frames": 8, **spec})
    assert len(src) == 4  # windows 0, 8, 16 and the last aligned to the end (23)
    assert [src.windows[i][1] for i in range(4)] == [0, 8, 16, 23]
    clip = src[0]
    assert clip.frames.shape == (8, 61, 57, 3) and clip.frames.dtype == np.uint8
    assert np.array_equal(clip.masks, lab[:8].astype(np.int64))
    # training draws: random windows, some reversed along Z
    rng = np.random.default_rng(0)
    names = {src.sample(0, rng).name for _ in range(30)}
    assert any(n.endswith("r") for n in names) and any(not n.endswith("r") for n in names)
    planes = build_source({"kind": "stack", "num_frames": 1, **spec})  # planes as 1-frame clips
    assert len(planes) == 31 and prepare_clip(planes.sample(5, rng), 64, 3) is not None
    # a 2D image is not a stack, and label stacks must match the image stack
    tifffile.imwrite(tmp_path / "masks" / "vol.tif", lab[:30])
    with pytest.raises(ValueError, match=r"label stack .*vol.tif has shape \(30, 61, 57\) but image "
                                         r"stack .*\(31, 61, 57\)"):
        build_source({"kind": "stack", **spec})
    flat = tmp_path / "flat"
    _folder(flat, ["a"])
    with pytest.raises(ValueError, match="one 2D image, not a stack"):
        build_source({"kind": "stack", "images": str(flat / "images"), "masks": str(flat / "masks")})


def test_bad_masks_are_named(tmp_path):
    _folder(tmp_path, ["a"])
    tifffile.imwrite(tmp_path / "masks" / "a.tif", np.zeros((41, 48), np.uint16))
    src = build_source({"kind": "image_folder", "images": str(tmp_path / "images"),
                        "masks": str(tmp_path / "masks")})
    with pytest.raises(ValueError, match=r"mask .*a.tif is 41x48 but image .*a.tif is 40x48"):
        src[0]
    tifffile.imwrite(tmp_path / "masks" / "a.tif", np.random.default_rng(0).random((40, 48)))
    with pytest.raises(ValueError, match="must hold integer instance labels, got float values"):
        build_source({"kind": "image_folder", "images": str(tmp_path / "images"),
                      "masks": str(tmp_path / "masks")})[0]


def test_native_scale_crops_keep_object_size_and_squash_is_an_option():
    img, lab = _nuclei(200, 300, n=12)
    rgb = np.repeat((img // 16).astype(np.uint8)[..., None], 3, -1)
    raw = RawClip(rgb[None], lab[None].astype(np.int64), "big")
    gen = torch.Generator().manual_seed(0)
    crop = prepare_clip(raw, 64, 50, generator=gen)
    areas = crop.masks[0].flatten(1).sum(1)
    whole = areas[~crop.masks[0, :, 0].any(-1) & ~crop.masks[0, :, -1].any(-1)
                  & ~crop.masks[0, :, :, 0].any(-1) & ~crop.masks[0, :, :, -1].any(-1)]
    disc = int((lab == lab.max()).sum())
    assert crop.images.shape == (1, 3, 64, 64) and len(whole) > 0
    assert all(abs(int(a) - disc) <= 4 for a in whole)  # uncut objects keep their pixel count
    squashed = prepare_clip(raw, 64, 50, geometry=Geometry("squash"))
    assert squashed.masks[0].flatten(1).sum(1).float().mean() < disc / 4  # shrunk ~4.7x in area
    zoomed = prepare_clip(raw, 64, 50, generator=gen, geometry=Geometry(scale=2.0))
    assert zoomed.masks[0].flatten(1).sum(1).max() > 2.5 * disc
    # images smaller than the input are padded, not stretched
    simg, slab = _nuclei(40, 50, n=3)
    srgb = np.repeat((simg // 16).astype(np.uint8)[..., None], 3, -1)
    small = prepare_clip(RawClip(srgb[None], slab[None].astype(np.int64)), 64, 50, generator=gen)
    assert small.images.shape == (1, 3, 64, 64)
    assert int(small.masks.sum()) == int((slab > 0).sum())  # every object pixel, unstretched
    with pytest.raises(ValueError, match="resize must be one of"):
        Geometry("stretch")


def test_validation_tiles_score_each_object_once():
    _, lab = _nuclei(100, 150, n=20, seed=3)
    views = eval_views(lab, 64, Geometry())
    assert len(views) == 2 * 3
    owned = [k for v in views for k in v.objects]
    assert sorted(owned) == sorted(set(np.unique(lab)) - {0})


def test_stack_clips_include_absent_frames_so_the_object_score_trains(tmp_path):
    from lightning_module.losses import SAM2Loss
    from lightning_module.module import SAM2FineTuner

    img, lab = _volume()
    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    tifffile.imwrite(tmp_path / "images" / "v.tif", img)
    tifffile.imwrite(tmp_path / "masks" / "v.tif", lab)
    src = build_source({"kind": "stack", "images": str(tmp_path / "images"),
                        "masks": str(tmp_path / "masks"), "num_frames": 6})
    ds = BatchedClips([src], 8, 2, 256, max_objects=2, absent_p=1.0,
                      geometries=[Geometry(scale=4.0)])
    batches = [ds[i] for i in range(8)]
    absent = [bool((~b.masks.flatten(2).any(-1)).any()) for b in batches]
    assert all(absent)
    module = SAM2FineTuner(prompts={"prob_points": 0.0, "max_init_cond_frames": 1,
                                    "max_frames_to_correct": 1})
    module.train()
    losses = SAM2Loss()(module(batches[0]), batches[0].masks)
    assert float(losses["loss_class"]) > 1e-4  # the head is told when an object is gone
    with pytest.raises(ValueError, match=r"batch images are \(64, 64\) but sam2.1_hiera_nano takes "
                                         r"\(256, 256\)"):
        module(BatchedClips([src], 1, 1, 64, geometries=[Geometry(scale=2.0)])[0])


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_shipped_nuclei_recipes_run_through_the_cli_on_stardist(shared_data, tmp_path, dim):
    """The documented configs, as the benchmark runs them, for a few steps (the full recipe
    is ``python -m benchmarks finetune-stardist``, not a test)."""
    from benchmarks.finetune_stardist import CONFIG_2D, CONFIG_3D, prepare_data, train
    from sam2_plugins import build_sam2

    prepare_data(shared_data / "stardist", tmp_path / "data")
    out = tmp_path / f"n{dim}.pt"
    run = train(CONFIG_2D if dim == "2d" else CONFIG_3D, tmp_path / "data" / dim, out, threads=1,
                extra=["--trainer.max_steps=2", "--trainer.val_check_interval=2",
                       "--data.val_batches=1"])
    assert run["steps"] is not None and run["steps"] >= 1
    build_sam2("sam2.1_hiera_nano", checkpoint=out, device="cpu")
