"""Parity of our video predictor (on our SAM2Model) with upstream sam2==1.1.0's.

Upstream random-init models are saved as official checkpoints and loaded into ours. Both read
the same JPEG folder with their own loaders and run the same session: a click, a box and a
mask on frame 0, propagation, a second object added on a later frame, a correction click on an
already-tracked frame, and reverse propagation from the last frame. Every returned mask must
agree: logits max |diff| <= 1e-3 and >= 99.9% of binary pixels (the acceptance bound), and, as the
README states, logits within 1e-5 and every binary pixel equal.

The main tests run tiny 2.0 / 2.1 at a 256² input (``++model.image_size=256`` upstream, the
same override in our config): identical code paths and weights, 16x fewer pixels. The 1024²
run is marked slow.

Upstream crashes on CPU when an object's memory holds only bf16 spatial memories and no
pointers (object 4 below on frames 0-1; every object in the reverse pass); as the issue asks,
upstream runs here with its memories cast to fp32 at use, which is what it computes whenever
pointers are present.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest
import torch

from tests.ref_utils import build_reference, require_reference, save_reference_checkpoint

pytestmark = pytest.mark.reference

T = 5


def _write_jpegs(folder: Path, n: int = T) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    # a bright square moving right over a noisy background: something to track
    for i in range(n):
        fr = base.copy()
        fr[12:30, 8 + 3 * i:26 + 3 * i] = (250, 40, 40)
        Image.fromarray(fr).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def _amplify_memory(ref: torch.nn.Module) -> None:
    """Make the memory path matter: with plain random weights the memory's contribution to the
    masks is ~1e-5 of the logits, so a wrong pointer scale or a missing bf16 rounding would
    hide below any sensible tolerance. Scaling the memory-attention outputs and the temporal
    encodings (in upstream's model, before its weights are copied into ours) fixes that."""
    with torch.no_grad():
        for layer in ref.memory_attention.layers:
            layer.cross_attn_image.out_proj.weight.mul_(AMP)
        ref.maskmem_tpos_enc.mul_(AMP)
        if isinstance(ref.obj_ptr_tpos_proj, torch.nn.Linear):
            ref.obj_ptr_tpos_proj.weight.mul_(AMP)


AMP = 10.0
STRICT = 1e-5


def _patch_upstream_bf16(ref: torch.nn.Module) -> None:
    orig = ref.memory_attention.forward

    def forward(curr: Any, memory: torch.Tensor, curr_pos: Any = None, memory_pos: Any = None,
                num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        return orig(curr=curr, memory=memory.float(), curr_pos=curr_pos,
                    memory_pos=None if memory_pos is None else memory_pos.float(),
                    num_obj_ptr_tokens=num_obj_ptr_tokens)

    ref.memory_attention.forward = forward


def scenario(p: Any, video: str, n: int = T) -> List[Tuple[str, torch.Tensor]]:
    """The acceptance session; returns every mask tensor the API hands back, tagged."""
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:50] = True
    res: List[Tuple[str, torch.Tensor]] = []
    s = p.init_state(video)
    res.append(("click f0", p.add_new_points_or_box(s, 0, 1, points=[[17, 20]], labels=[1])[2]))
    res.append(("box f0", p.add_new_points_or_box(s, 0, 2, box=[5, 5, 40, 30])[2]))
    res.append(("mask f0", p.add_new_mask(s, 0, 3, mask)[2]))
    res += [(f"prop1 f{f}", m) for f, _, m in p.propagate_in_video(s)]
    res.append(("new obj f2", p.add_new_points_or_box(s, 2, 4, points=[[30, 30], [10, 40]],
                                                      labels=[1, 0])[2]))
    res += [(f"prop2 f{f}", m) for f, _, m in p.propagate_in_video(s)]
    res.append(("correction f3", p.add_new_points_or_box(s, 3, 1, points=[[40, 10]], labels=[0],
                                                         clear_old_points=False)[2]))
    res += [(f"prop3 f{f}", m) for f, _, m in p.propagate_in_video(s, start_frame_idx=2)]
    res += [(f"reverse f{f}", m) for f, _, m in
            p.propagate_in_video(s, start_frame_idx=n - 1, reverse=True)]
    return res


def _ours(name: str, ckpt: Path, image_size: int) -> Any:
    from sam2_plugins.configs import get_config
    from sam2_plugins.modeling.sam2 import SAM2Model
    from sam2_plugins.predictors.video import SAM2VideoPredictor

    cfg = replace(get_config(name), image_size=image_size)
    model = SAM2Model(cfg)
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(sd, strict=True)
    # upstream's video builder (apply_postprocessing) binarises prompted masks for memory;
    # its hole filling needs CUDA and is skipped on CPU, so it is off here too.
    # dtype=None: float32, upstream's numerics (the default 'auto' may pick bf16 at 1024²)
    return SAM2VideoPredictor(model.eval(), apply_postprocessing=True, fill_hole_area=0,
                              dtype=None)


def _compare(ref_res: List[Tuple[str, torch.Tensor]], our_res: List[Tuple[str, torch.Tensor]]) -> None:
    assert [t for t, _ in ref_res] == [t for t, _ in our_res]
    for (tag, a), (_, b) in zip(ref_res, our_res):
        assert a.shape == b.shape, tag
        a, b = a.float().cpu(), b.float().cpu()
        diff = float((a - b).abs().max())
        agree = float(((a > 0) == (b > 0)).float().mean())
        assert diff <= 1e-3, f"{tag}: max |logit diff| {diff:.2e}"
        assert agree >= 0.999, f"{tag}: binary agreement {agree:.5f}"
        # the README's figure: every binary mask pixel equal (a logit within 1e-5 of 0 could
        # flip one; none does in these runs)
        assert agree == 1.0, f"{tag}: binary agreement {agree:.7f} < 100 %"
        # The acceptance bound above is loose for random weights; the same computation gives
        # ~1e-6 here, while a wrong pointer scale gives ~2e-4 and fp32 instead of bf16
        # memories ~2e-5 (measured with the amplified memory path), so also check tightly.
        assert diff <= STRICT, f"{tag}: max |logit diff| {diff:.2e} > {STRICT:g}"


def _run(name: str, tmp_path: Path, image_size: int, n: int = T,
         run: Callable = scenario) -> None:
    require_reference()
    extra = () if image_size == 1024 else (f"++model.image_size={image_size}",)
    ref = build_reference(name, video=True, extra_overrides=extra)
    _amplify_memory(ref)
    ckpt = save_reference_checkpoint(ref, tmp_path / "ref.pt")
    _patch_upstream_bf16(ref)
    (tmp_path / "frames").mkdir()
    video = str(_write_jpegs(tmp_path / "frames", n))
    with torch.inference_mode():
        ref_res = run(ref, video, n)
    ours = _ours(name, ckpt, image_size)
    our_res = run(ours, video, n)
    _compare(ref_res, our_res)


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def test_parity_tiny_256(name: str, tmp_path: Path) -> None:
    _run(name, tmp_path, image_size=256)


def _long_scenario(p: Any, video: str, n: int) -> List[Tuple[str, torch.Tensor]]:
    """A video longer than the memory window: bounded memory must evict and recompute."""
    s = p.init_state(video)
    res = [("click f0", p.add_new_points_or_box(s, 0, 1, points=[[17, 20]], labels=[1])[2])]
    res += [(f"prop f{f}", m) for f, _, m in p.propagate_in_video(s)]
    # frames 1..7 are behind the window of the last frame: their memories were dropped
    res.append(("correction f8", p.add_new_points_or_box(s, 8, 1, points=[[40, 10]], labels=[0],
                                                         clear_old_points=False)[2]))
    res += [(f"prop from f8 f{f}", m) for f, _, m in p.propagate_in_video(s, start_frame_idx=8)]
    res.append(("new obj f5", p.add_new_points_or_box(s, 5, 2, box=[5, 5, 40, 30])[2]))
    res += [(f"rev f{f}", m) for f, _, m in p.propagate_in_video(s, start_frame_idx=n - 1, reverse=True)]
    return res


def test_parity_bounded_memory_long_video(tmp_path: Path) -> None:
    _run("sam2.1_hiera_tiny", tmp_path, image_size=256, n=11, run=_long_scenario)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def test_parity_tiny_1024(name: str, tmp_path: Path) -> None:
    def short(p: Any, video: str, n: int) -> List[Tuple[str, torch.Tensor]]:
        s = p.init_state(video)
        res = [("click f0", p.add_new_points_or_box(s, 0, 1, points=[[17, 20]], labels=[1])[2]),
               ("box f0", p.add_new_points_or_box(s, 0, 2, box=[5, 5, 40, 30])[2])]
        res += [(f"prop f{f}", m) for f, _, m in p.propagate_in_video(s)]
        return res

    _run(name, tmp_path, image_size=1024, n=3, run=short)


def test_upstream_crashes_where_ours_runs(tmp_path: Path) -> None:
    """An object first prompted on frame 2, tracked forward from frame 0: on frames 0-1 its
    memory is only the bf16 spatial memory of frame 2 (its pointer is in the future, so it is
    not used). Upstream fails on CPU; ours runs, and matches upstream run with its memories
    cast to fp32."""
    require_reference()
    ref = build_reference("sam2.1_hiera_tiny", video=True, extra_overrides=("++model.image_size=256",))
    _amplify_memory(ref)
    ckpt = save_reference_checkpoint(ref, tmp_path / "ref.pt")
    (tmp_path / "frames").mkdir()
    video = str(_write_jpegs(tmp_path / "frames", 3))

    def run(p: Any) -> List[Tuple[str, torch.Tensor]]:
        s = p.init_state(video)
        p.add_new_points_or_box(s, 2, 1, points=[[30, 20]], labels=[1])
        return [(f"f{f}", m) for f, _, m in p.propagate_in_video(s, start_frame_idx=0)]

    with torch.inference_mode(), pytest.raises(RuntimeError, match="dtype|BFloat16|type"):
        run(ref)
    _patch_upstream_bf16(ref)
    with torch.inference_mode():
        ref_res = run(ref)
    _compare(ref_res, run(_ours("sam2.1_hiera_tiny", ckpt, 256)))
