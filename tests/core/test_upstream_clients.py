"""Upstream's own client code, unchanged, on our builders.

``tools/vos_inference.py`` (the script behind upstream's published VOS numbers, kept verbatim in
``../shared/reference/upstream_clients/``) is run twice with ``runpy``: once with upstream's
``build_sam2_video_predictor`` and once with ours put in its place, both wrapped alike:
``device="cpu"`` (the script has no device flag) and, in the fast variant, upstream's
``++model.image_size=256`` override (16x fewer pixels; the 1024² run is marked slow). Both load
the same random-weight checkpoint (saved from upstream's model, loaded strictly by both
builders) and read real DAVIS frames (3 frames of one sequence, two objects); the palette PNGs
they write must agree on >= 99.99% of pixels, in the default mode and with
``--track_object_appearing_later_in_video`` (which runs each object on its own and merges them
with ``predictor._apply_non_overlapping_constraints``). The checkpoint's memory path is
amplified so that a wrong memory read, a missing ``non_overlap_masks`` or a different
postprocessing changes the masks (checked by hand: 4-33% of the pixels change).
"""

from __future__ import annotations

import functools
import runpy
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import pytest
import torch

from tests.ref_utils import build_reference, require_reference, save_reference_checkpoint

pytestmark = [pytest.mark.reference, pytest.mark.data]

NAME = "sam2.1_hiera_tiny"
SEQUENCES = ("car-shadow",)
FRAMES = 3
LATER = 1  # the frame where the second object first appears (later-appearing mode)
AMP = 10.0


@pytest.fixture(scope="module")
def script() -> Path:
    """``../shared/reference/upstream_clients/vos_inference.py`` (skips where absent)."""
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA.parent / "reference" / "upstream_clients" / "vos_inference.py"
    if not path.is_file():
        pytest.skip(f"upstream's vos_inference.py is not present at {path}")
    return path


def _second_object(gt: np.ndarray) -> np.ndarray:
    """A box-shaped object in the background, away from the DAVIS object."""
    h, w = gt.shape
    box = np.zeros_like(gt, dtype=bool)
    box[h // 10: h // 10 + h // 5, w // 20: w // 20 + w // 6] = True
    return box & (gt == 0)


def _make_inputs(davis: Path, root: Path, later: bool) -> Dict[str, Path]:
    """A DAVIS-layout copy: ``FRAMES`` JPEGs per sequence and the input masks (palette PNGs).

    Default mode: object 1 (DAVIS ground truth) and object 2 (a box) on frame 0.
    ``later``: object 1 on frame 0, object 2 first on frame ``LATER`` (frame 0's PNG lacks it).
    """
    from PIL import Image

    frames, masks = root / "JPEGImages", root / "Annotations"
    for seq in SEQUENCES:
        (frames / seq).mkdir(parents=True)
        (masks / seq).mkdir(parents=True)
        for i in range(FRAMES):
            shutil.copy(davis / "JPEGImages" / "480p" / seq / f"{i:05d}.jpg", frames / seq / f"{i:05d}.jpg")
        gt_img = Image.open(davis / "Annotations" / "480p" / seq / "00000.png")
        gt = np.array(gt_img)
        first = gt.astype(np.uint8)
        if not later:
            first[_second_object(gt)] = 2
        out = Image.fromarray(first, mode="P")
        out.putpalette(gt_img.getpalette())
        out.save(masks / seq / "00000.png")
        if later:
            gt_later = np.array(Image.open(davis / "Annotations" / "480p" / seq / f"{LATER:05d}.png"))
            lab = gt_later.astype(np.uint8)
            lab[_second_object(gt_later)] = 2
            out = Image.fromarray(lab, mode="P")
            out.putpalette(gt_img.getpalette())
            out.save(masks / seq / f"{LATER:05d}.png")
    return {"frames": frames, "masks": masks}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Upstream's random-init tiny 2.1 with its memory path amplified (so a wrong memory read
    changes the masks), saved as an official ``{"model": state_dict}`` file."""
    require_reference()
    ref = build_reference(NAME, video=True)
    with torch.no_grad():
        for layer in ref.memory_attention.layers:
            layer.cross_attn_image.out_proj.weight.mul_(AMP)
        ref.maskmem_tpos_enc.mul_(AMP)
        ref.obj_ptr_tpos_proj.weight.mul_(AMP)
    return save_reference_checkpoint(ref, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _on_cpu(builder: Callable, image_size: int) -> Callable:
    """``builder`` with ``device="cpu"`` and, below 1024, upstream's ``image_size`` override
    appended to the script's own overrides (the same wrapper for both builders)."""

    @functools.wraps(builder)
    def build(*args: Any, hydra_overrides_extra: Sequence[str] = (), **kwargs: Any) -> Any:
        extra = list(hydra_overrides_extra)
        if image_size != 1024:
            extra.append(f"++model.image_size={image_size}")
        return builder(*args, device="cpu", hydra_overrides_extra=extra, **kwargs)

    return build


def _run_vos_inference(script: Path, builder: Callable, inputs: Dict[str, Path], ckpt: Path, out: Path,
                       later: bool) -> float:
    """Run the unchanged script with ``builder`` as ``sam2.build_sam.build_sam2_video_predictor``."""
    import sam2.build_sam

    argv = ["vos_inference.py", "--sam2_cfg", "configs/sam2.1/sam2.1_hiera_t.yaml",
            "--sam2_checkpoint", str(ckpt), "--base_video_dir", str(inputs["frames"]),
            "--input_mask_dir", str(inputs["masks"]), "--output_mask_dir", str(out)]
    if later:
        argv.append("--track_object_appearing_later_in_video")
    saved_argv, saved_builder = sys.argv, sam2.build_sam.build_sam2_video_predictor
    sys.argv, sam2.build_sam.build_sam2_video_predictor = argv, builder
    t0 = time.perf_counter()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sam2.build_sam.build_sam2_video_predictor = saved_argv, saved_builder
    return time.perf_counter() - t0


def _read_pngs(folder: Path) -> Dict[str, np.ndarray]:
    from PIL import Image

    return {str(p.relative_to(folder)): np.array(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


@pytest.mark.parametrize("image_size", [256, pytest.param(1024, marks=pytest.mark.slow)])
@pytest.mark.parametrize("later", [False, True], ids=["default", "appearing_later"])
def test_vos_inference_script_with_our_builder(later: bool, image_size: int, shared_data: Path, script: Path,
                                               ckpt: Path, tmp_path: Path) -> None:
    from sam2.build_sam import build_sam2_video_predictor as upstream_builder

    from sam2_plugins import build_sam2_video_predictor as our_builder

    inputs = _make_inputs(shared_data / "davis2016-val", tmp_path / "data", later)
    times = {}
    outs = {}
    for tag, builder in (("upstream", upstream_builder), ("ours", our_builder)):
        outs[tag] = tmp_path / f"out_{tag}"
        times[tag] = _run_vos_inference(script, _on_cpu(builder, image_size), inputs, ckpt, outs[tag], later)
    ref, got = _read_pngs(outs["upstream"]), _read_pngs(outs["ours"])
    expected: List[str] = [f"{s}/{i:05d}.png" for s in SEQUENCES for i in range(FRAMES)]
    assert sorted(ref) == expected, f"upstream wrote {sorted(ref)}"
    assert sorted(got) == expected, f"ours wrote {sorted(got)}, expected {expected}"
    total = sum(a.size for a in ref.values())
    same = sum(int((ref[k] == got[k]).sum()) for k in ref)
    print(f"vos_inference ({'later' if later else 'default'}, {image_size}²): upstream {times['upstream']:.1f} s, "
          f"ours {times['ours']:.1f} s; equal pixels {same}/{total}")
    assert same >= 0.9999 * total, f"only {same / total:.6f} of the pixels equal upstream's"
    # the comparison means something: both objects are present on the frames after the prompts
    last = ref[expected[-1]]
    assert {1, 2} <= set(np.unique(last).tolist()), f"labels on the last frame: {np.unique(last)}"
