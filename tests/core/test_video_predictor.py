"""SAM2VideoPredictor on the nano model: API paths, batching semantics, bounded memory, errors."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch

from sam2_plugins.configs import get_config
from sam2_plugins.modeling.sam2 import SAM2Model
from sam2_plugins.predictors.video import SAM2VideoPredictor
from sam2_plugins.predictors.video.state import VideoState

H, W = 40, 56


def nano(visible: bool = True, seed: int = 0) -> SAM2Model:
    """Random nano model; ``visible`` biases the object score up so tracked objects stay
    present (random weights otherwise mostly predict "no object", hiding mask logic)."""
    torch.manual_seed(seed)
    m = SAM2Model(get_config("sam2.1_hiera_nano")).eval()
    if visible:
        with torch.no_grad():
            m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 8.0
    return m


def video(n: int = 10, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 60, (n, h, w, 3), dtype=np.uint8)
    for i in range(n):  # a bright block drifting right
        v[i, 8:24, 4 + 2 * i:20 + 2 * i] = (230, 200, 40)
    return v


@pytest.fixture(scope="module")
def model() -> SAM2Model:
    return nano()


def run_all(p: SAM2VideoPredictor, s: VideoState, **kw: Any) -> Dict[int, torch.Tensor]:
    return {f: m.clone() for f, _, m in p.propagate_in_video(s, **kw)}


def test_api_shapes_and_order(model: SAM2Model) -> None:
    p = SAM2VideoPredictor(model)
    s = p.init_state(video(6))
    assert s["num_frames"] == 6 and s["video_height"] == H and s["video_width"] == W
    assert len(s["images"]) == 6 and s["images"][2].shape == (3, 256, 256) and "obj_ids" in s
    with pytest.raises(KeyError):
        s["cached_features"]
    f, ids, m = p.add_new_points_or_box(s, 0, 7, points=[[10, 12]], labels=[1])
    assert (f, ids, tuple(m.shape)) == (0, [7], (1, 1, H, W))
    f, ids, m = p.add_new_points_or_box(s, 0, 3, box=[2, 2, 30, 20])
    assert ids == [7, 3] and m.shape == (2, 1, H, W) and m.dtype == torch.float32
    assert s["obj_ids"] == [7, 3] and s["obj_id_to_idx"] == {7: 0, 3: 1}
    out = list(p.propagate_in_video(s))
    assert [o[0] for o in out] == list(range(6))
    assert all(o[1] == [7, 3] and o[2].shape == (2, 1, H, W) for o in out)
    # visible objects give foreground somewhere on tracked frames
    assert any(bool((o[2] > 0).any()) for o in out[1:])
    # the same prompt frame comes back unchanged (stored conditioning output)
    assert torch.equal(out[0][2], m)


def test_batched_objects_equal_single_object_runs(model: SAM2Model) -> None:
    """Objects prompted on different frames, batched together, give exactly what each object
    gives when tracked alone (per-object memory semantics)."""
    v = video(8)
    prompts = {1: (0, dict(points=[[10, 12]], labels=[1])),
               2: (3, dict(box=[20, 6, 40, 26])),
               3: (5, dict(points=[[30, 30], [5, 5]], labels=[1, 0]))}
    p = SAM2VideoPredictor(model)
    s = p.init_state(v)
    for oid, (f, kw) in prompts.items():
        p.add_new_points_or_box(s, f, oid, **kw)
    together = run_all(p, s)
    for row, (oid, (f, kw)) in enumerate(prompts.items()):
        s1 = p.init_state(v)
        p.add_new_points_or_box(s1, f, oid, **kw)
        alone = run_all(p, s1, start_frame_idx=0)
        for t in together:
            assert torch.allclose(together[t][row], alone[t][0], atol=1e-4), (oid, t)


def test_bounded_memory_same_results_and_smaller(model: SAM2Model) -> None:
    v = video(14)
    res, foot = [], []
    for bounded in (True, False):
        p = SAM2VideoPredictor(model, bounded_memory=bounded)
        s = p.init_state(v)
        p.add_new_points_or_box(s, 0, 1, points=[[10, 12]], labels=[1])
        out = run_all(p, s)
        # a correction and a second pass starting next to dropped memories (recomputed)
        p.add_new_points_or_box(s, 12, 1, points=[[40, 30]], labels=[0], clear_old_points=False)
        out.update({100 + f: m for f, m in run_all(p, s, start_frame_idx=12).items()})
        out.update({200 + f: m for f, m in run_all(p, s, start_frame_idx=13, reverse=True).items()})
        res.append(out)
        foot.append(p.memory_footprint(s))
        if bounded:
            evicted = sum(o.evicted for o in s.objects[1].bank.non_cond.values())
            assert evicted > 0
    assert res[0].keys() == res[1].keys()
    for k in res[0]:
        assert torch.allclose(res[0][k], res[1][k], atol=1e-5), k
    assert foot[0] < 0.75 * foot[1]


def test_object_added_after_tracking_and_only_spatial_memory(model: SAM2Model) -> None:
    """An object first prompted on frame 3 is tracked over frames 0-2 from a memory holding
    only its bf16 spatial features (no pointers): upstream crashes there on CPU."""
    p = SAM2VideoPredictor(model)
    s = p.init_state(video(6))
    p.add_new_points_or_box(s, 0, 1, points=[[10, 12]], labels=[1])
    run_all(p, s)
    p.add_new_points_or_box(s, 3, 2, points=[[20, 20]], labels=[1])
    out = run_all(p, s)
    assert sorted(out) == list(range(6)) and all(m.shape[0] == 2 for m in out.values())
    rev = run_all(p, s, start_frame_idx=3, reverse=True)
    assert sorted(rev) == [0, 1, 2, 3]
    assert all(torch.isfinite(m).all() for m in rev.values())


def test_bf16_autocast_runs_and_agrees_with_fp32(model: SAM2Model) -> None:
    runs = {}
    for dtype in ("bf16", None):
        p = SAM2VideoPredictor(model, dtype=dtype)
        s = p.init_state(video(4))
        p.add_new_points_or_box(s, 1, 1, points=[[10, 12]], labels=[1])
        runs[dtype] = run_all(p, s, direction="both")
    out, ref = runs["bf16"], runs[None]
    assert sorted(out) == [0, 1, 2, 3] and all(m.dtype == torch.float32 for m in out.values())
    diff = max(float((out[f] - ref[f]).abs().max()) for f in ref)
    assert 0 < diff < 0.1  # bf16 really ran (not bit-identical to fp32), and stayed close
    for f in ref:  # the masks agree (measured IoU >= 0.998 on this clip)
        a, b = out[f] > 0, ref[f] > 0
        union = int((a | b).sum())
        assert union > 0 and int((a & b).sum()) / union >= 0.99, f


def test_direction_both_is_forward_then_reverse(model: SAM2Model) -> None:
    v = video(7)
    p = SAM2VideoPredictor(model)
    s = p.init_state(v)
    p.add_new_points_or_box(s, 3, 1, points=[[14, 12]], labels=[1])
    both = run_all(p, s, direction="both")
    assert list(both) == [3, 4, 5, 6, 2, 1, 0]
    s2 = p.init_state(v)
    p.add_new_points_or_box(s2, 3, 1, points=[[14, 12]], labels=[1])
    manual = run_all(p, s2)
    manual.update({f: m for f, m in run_all(p, s2, reverse=True).items() if f != 3})
    for f in both:
        assert torch.allclose(both[f], manual[f], atol=1e-5)
    assert [f for f, _, _ in p.propagate_in_video(s, direction="backward", start_frame_idx=2)] == [2, 1, 0]
    with pytest.raises(ValueError, match="direction"):
        next(p.propagate_in_video(s, direction="sideways"))


def test_mask_prompt_and_max_frames(model: SAM2Model) -> None:
    p = SAM2VideoPredictor(model)
    s = p.init_state(video(6))
    mask = np.zeros((H, W), bool)
    mask[5:20, 10:30] = True
    _, _, m = p.add_new_mask(s, 1, 5, mask)
    assert ((m[0, 0] > 0).numpy() == mask).mean() > 0.97  # the mask is taken as the output
    frames = [f for f, _, _ in p.propagate_in_video(s, max_frame_num_to_track=2)]
    assert frames == [1, 2, 3]


def test_correction_clear_remove_reset(model: SAM2Model) -> None:
    p = SAM2VideoPredictor(model)
    s = p.init_state(video(5))
    p.add_new_points_or_box(s, 0, 1, points=[[10, 12]], labels=[1])
    p.add_new_points_or_box(s, 0, 2, points=[[40, 30]], labels=[1])
    before = run_all(p, s)
    f, ids, m = p.add_new_points_or_box(s, 2, 1, points=[[12, 14]], labels=[0], clear_old_points=False)
    assert f == 2 and ids == [1, 2]
    assert not torch.allclose(m[0], before[2][0])      # the correction changed object 1
    assert torch.equal(m[1], before[2][1])             # and left object 2 alone
    out = p.clear_all_prompts_in_frame(s, 2, 1)
    assert out is not None and out[2].shape == (2, 1, H, W)
    ids, updated = p.remove_object(s, 2)
    assert ids == [1] and [t for t, _ in updated] == [0]
    assert all(m.shape[0] == 1 for _, _, m in p.propagate_in_video(s))
    assert p.remove_object(s, 99) == ([1], [])
    with pytest.raises(RuntimeError, match="doesn't exist"):
        p.remove_object(s, 99, strict=True)
    p.reset_state(s)
    assert s["obj_ids"] == []
    with pytest.raises(RuntimeError, match="No input points"):
        next(p.propagate_in_video(s))


def test_non_overlap_masks(model: SAM2Model) -> None:
    p = SAM2VideoPredictor(model, non_overlap_masks=True)
    s = p.init_state(video(3))
    p.add_new_points_or_box(s, 0, 1, box=[2, 2, 40, 30])
    p.add_new_points_or_box(s, 0, 2, box=[4, 4, 44, 34])
    for _, _, m in p.propagate_in_video(s):
        assert int(((m > 0).sum(0) > 1).sum()) == 0


BadCase = Tuple[str, Any, type, str]


def test_bad_inputs(model: SAM2Model, tmp_path: Any) -> None:
    p = SAM2VideoPredictor(model)
    s = p.init_state(video(4))
    with pytest.raises(IndexError, match="out of range"):
        p.add_new_points_or_box(s, 4, 1, points=[[1, 1]], labels=[1])
    with pytest.raises(IndexError, match="out of range"):
        p.add_new_mask(s, -1, 1, np.ones((H, W), bool))
    with pytest.raises(ValueError, match="at least one of points or box"):
        p.add_new_points_or_box(s, 0, 1)
    with pytest.raises(ValueError, match="points is empty"):
        p.add_new_points_or_box(s, 0, 1, points=np.zeros((0, 2)), labels=np.zeros((0,)))
    with pytest.raises(ValueError, match="together"):
        p.add_new_points_or_box(s, 0, 1, points=[[1, 1]])
    with pytest.raises(ValueError, match="labels must be"):
        p.add_new_points_or_box(s, 0, 1, points=[[1, 1], [2, 2]], labels=[1])
    with pytest.raises(ValueError, match="box must be 4"):
        p.add_new_points_or_box(s, 0, 1, box=[1, 2, 3])
    with pytest.raises(ValueError, match="mask must be 2D"):
        p.add_new_mask(s, 0, 1, np.ones((2, H, W)))
    assert s["obj_ids"] == []  # failed prompts add no object
    with pytest.raises(RuntimeError, match="No input points"):
        next(p.propagate_in_video(s))
    with pytest.raises(ValueError, match="unknown object id"):
        p.clear_all_prompts_in_frame(s, 0, 42)
    with pytest.raises(TypeError, match="init_state"):
        p.add_new_points_or_box({}, 0, 1, points=[[1, 1]], labels=[1])
    with pytest.raises(ValueError, match="empty|no frames"):
        p.init_state(np.zeros((0, H, W, 3), np.uint8))
    with pytest.raises(ValueError):
        p.init_state([])
    # frames of different sizes: refused when the video is opened, naming the odd frame
    frames: List[np.ndarray] = [np.zeros((H, W, 3), np.uint8), np.zeros((H + 2, W, 3), np.uint8)]
    with pytest.raises(ValueError, match=f"frame 1 of list of frames has size {H + 2}x{W}"):
        p.init_state(frames)
    # a corrupted mp4
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="corrupt|could not|no video"):
        p.init_state(str(bad))
    with pytest.raises(ValueError):
        p.init_state(b"not a video at all")
