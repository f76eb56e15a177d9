"""The streaming VideoSession on the nano model: equivalence, bounded memory, prompts, errors."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest
import torch

from sam2_plugins.configs import get_config
from sam2_plugins.modeling.sam2 import SAM2Model
from sam2_plugins.predictors.video import SAM2VideoPredictor
from sam2_plugins.predictors.video.session import FrameResult, VideoSession

H, W = 40, 56


def nano() -> SAM2Model:
    torch.manual_seed(0)
    m = SAM2Model(get_config("sam2.1_hiera_nano")).eval()
    with torch.no_grad():  # keep objects "visible" with random weights
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 8.0
    return m


def video(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 60, (n, H, W, 3), dtype=np.uint8)
    for i in range(n):
        x = 4 + (2 * i) % 30
        v[i, 8:24, x:x + 16] = (230, 200, 40)
    return v


@pytest.fixture(scope="module")
def model() -> SAM2Model:
    return nano()


def test_session_equals_predictor_forward(model: SAM2Model) -> None:
    """Prompts on frame 0 streamed through the session give the predictor's forward results
    (same memory selection, same pointer scale when the length is known)."""
    v = video(20)  # longer than the memory and pointer windows
    p = SAM2VideoPredictor(model)
    s = p.init_state(v)
    p.add_new_points_or_box(s, 0, 1, points=[[10, 12]], labels=[1])
    p.add_new_points_or_box(s, 0, 2, box=[20, 20, 50, 38])
    ref = {f: m for f, _, m in p.propagate_in_video(s)}
    sess = VideoSession(model, num_frames=len(v))
    prompts = {0: [dict(obj_id=1, points=[[10, 12]], labels=[1]), dict(obj_id=2, box=[20, 20, 50, 38])]}
    got = {r.frame_idx: r for r in sess.run(v, prompts)}
    assert sorted(got) == list(range(20))
    for f in ref:
        assert got[f].obj_ids == [1, 2]
        assert torch.allclose(got[f].mask_logits, ref[f], atol=1e-5), f


def test_memory_bounded_over_long_stream(model: SAM2Model) -> None:
    sess = VideoSession(model)
    sizes, footprints = [], []

    def frames() -> Iterator[np.ndarray]:
        for i in range(45):
            yield video(1, seed=i)[0]

    for r in sess.run(frames(), {0: [dict(obj_id=1, points=[[10, 12]], labels=[1])]}):
        bank = sess.objects[1].bank
        sizes.append((len(bank.cond), len(bank.non_cond),
                      sum(o.maskmem_features is not None for o in bank.non_cond.values())))
        footprints.append(sess.memory_footprint())
        if r.frame_idx >= 20:
            assert len(sess.quality.records[1]) <= sess.quality.window
    assert sizes[-1] == sizes[30]  # stops growing once the windows are full
    n_cond, n_entries, n_mem = sizes[-1]
    assert n_cond == 1 and n_mem == model.num_maskmem - 1
    assert n_entries == model.max_obj_ptrs_in_encoder - 1
    # the bytes held stop growing too: the same from frame 30 to frame 44, and more than early on
    assert footprints[-1] == footprints[30] > footprints[0] > 0


def test_prompts_on_later_frames_corrections_and_removal(model: SAM2Model) -> None:
    v = video(8)
    sess = VideoSession(model)
    r0 = sess.step(v[0], [dict(obj_id="a", points=[[10, 12]], labels=[1])])
    assert r0.obj_ids == ["a"] and r0.mask_logits.shape == (1, 1, H, W)
    sess.step(v[1])
    sess.push(v[2])
    sess.add_box("b", [20, 20, 50, 38])            # a new object mid-stream
    r2 = sess.track()
    assert r2.obj_ids == ["a", "b"]
    assert 2 in sess.objects["b"].bank.cond
    # a correction after tracking replaces the result and the memory of this frame
    before = r2.mask_logits[0].clone()
    after = sess.add_points("a", points=[[12, 14]], labels=[0], clear_old_points=False)
    assert not torch.allclose(after, before)
    assert torch.allclose(sess.result().mask_logits[0], after[0])
    assert 2 in sess.objects["a"].bank.non_cond and 2 not in sess.objects["a"].bank.cond
    mask = np.zeros((H, W), bool)
    mask[2:10, 2:10] = True
    sess.push(v[3])
    m = sess.add_mask("c", mask)
    assert ((m[0, 0] > 0).numpy() == mask).mean() > 0.95
    r3 = sess.track()
    assert r3.obj_ids == ["a", "b", "c"] and set(r3.quality) == {"a", "b", "c"}
    sess.remove_object("b")
    r4 = sess.step(v[4])
    assert r4.obj_ids == ["a", "c"] and r4.masks().shape == (2, H, W)
    assert r4.mask("c").shape == (H, W)
    with pytest.raises(ValueError, match="current frame"):
        sess.add_points("a", points=[[1, 1]], labels=[1], frame_idx=1)
    with pytest.raises(ValueError, match="unknown object id"):
        sess.remove_object("zzz")


def test_failed_frame_keeps_earlier_results(model: SAM2Model) -> None:
    v = video(5)
    sess = VideoSession(model)
    results = [sess.step(v[0], [dict(obj_id=1, points=[[10, 12]], labels=[1])]), sess.step(v[1])]
    with pytest.raises(ValueError, match="same size"):
        sess.push(np.zeros((H + 1, W, 3), np.uint8))
    assert sess.frame_idx == 1 and 1 in sess.objects[1].bank.non_cond
    results.append(sess.step(v[2]))  # the stream goes on
    assert [r.frame_idx for r in results] == [0, 1, 2]

    def bad_stream() -> Iterator[Any]:
        yield v[0]
        yield v[1]
        yield np.zeros((H + 3, W, 3), np.uint8)  # a broken frame
        yield v[3]

    s2 = VideoSession(model)
    got = []
    with pytest.raises(ValueError):
        for r in s2.run(bad_stream(), {0: [dict(obj_id=1, points=[[10, 12]], labels=[1])]}):
            got.append(r.frame_idx)
    assert got == [0, 1]  # what came before the failure was delivered
    s3 = VideoSession(model)
    with pytest.warns(RuntimeWarning, match="skipping"):
        got = [r.frame_idx for r in s3.run(bad_stream(), {0: [dict(obj_id=1, points=[[10, 12]],
                                                                   labels=[1])]}, on_error="skip")]
    assert got == [0, 1, 2]


def test_session_errors(model: SAM2Model) -> None:
    sess = VideoSession(model)
    with pytest.raises(RuntimeError, match="push"):
        sess.add_points(1, points=[[1, 1]], labels=[1])
    with pytest.raises(RuntimeError, match="push"):
        sess.track()
    sess.push(video(1)[0])
    with pytest.raises(ValueError, match="at least one of points or box"):
        sess.add_points(1)
    with pytest.raises(ValueError, match="obj_id"):
        sess.apply_prompt({"points": [[1, 1]]})
    r = sess.track()  # no objects yet: an empty result
    assert isinstance(r, FrameResult) and r.obj_ids == [] and r.masks().shape == (0, H, W)
    with pytest.raises(ValueError, match="num_frames"):
        VideoSession(model, num_frames=0)
    with pytest.raises(ValueError, match="on_error"):
        next(sess.run(video(2), on_error="ignore"))
