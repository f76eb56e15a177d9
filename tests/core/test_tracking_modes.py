"""Tracking modes through the doors users use (``memory_mode=`` on the video predictor and the
streaming session): bad input, both directions, no host sync in the step, the default staying
upstream, SAM2Long pathways, shot cuts in the quality signals."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from sam2_plugins import SAM2VideoPredictor, VideoSession, build_sam2
from sam2_plugins.modeling.sam_heads import Candidates
from sam2_plugins.predictors.video.modes import LongPolicy, make_policy
from sam2_plugins.predictors.video.modes.long import _Paths
from sam2_plugins.predictors.video.policy import MemoryPolicy
from sam2_plugins.predictors.video.quality import QualityTracker, suggest_correction_frames

NEW_MODES = ("samurai", "distractor", "long")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu").eval()


@pytest.fixture(scope="module")
def clip() -> Any:
    from sam2_plugins.evaluation.synthetic import make_video

    return make_video(12, 96, 128, 2, 3)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# ---- bad input ---------------------------------------------------------------------------------
def test_unknown_mode_lists_the_valid_ones(model: torch.nn.Module) -> None:
    for ctor in (SAM2VideoPredictor, VideoSession):
        with pytest.raises(ValueError, match="valid modes: sam2, samurai, distractor, long"):
            ctor(model, memory_mode="samurail")
    with pytest.raises(TypeError, match="memory_mode must be one of"):
        SAM2VideoPredictor(model, memory_mode=3)


@pytest.mark.parametrize("mode, params, match", [
    ("samurai", {"kf_score_weight": 1.5}, r"kf_score_weight must be in \[0.0, 1.0\], got 1.5"),
    ("samurai", {"stable_frames": 0}, "stable_frames must be an int >= 1, got 0"),
    ("samurai", {"kf_weight": 0.2},
     r"unknown parameter\(s\) \['kf_weight'\] for memory_mode 'samurai'; accepted: kf_score_weight"),
    ("distractor", {"drm_area": (1.2, 0.8)}, r"drm_area\[1\] must be in \[1.2, inf\]"),
    ("distractor", {"ram_every": "5"}, "ram_every must be an int >= 1, got '5'"),
    ("long", {"pathways": 1}, "pathways must be an int >= 2, got 1"),
    ("long", {"cut_threshold": 2.0}, r"cut_threshold must be a number in \(-1, 1\), got 2.0"),
    ("sam2", {"cut_threshold": 0.5}, "need shot_cuts=True"),
])
def test_mode_parameters_are_checked_up_front(model: torch.nn.Module, mode: str, params: Dict[str, Any],
                                             match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SAM2VideoPredictor(model, memory_mode=mode, mode_params=params)
    with pytest.raises(ValueError, match=match):
        VideoSession(model, memory_mode=mode, mode_params=params)


def test_policy_and_mode_are_exclusive(model: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="either policy= or memory_mode="):
        SAM2VideoPredictor(model, policy=MemoryPolicy(), memory_mode="samurai")
    p = SAM2VideoPredictor(model, memory_mode=LongPolicy(pathways=2))  # an instance is used as is
    assert p.policy.pathways == 2


# ---- the default stays upstream ------------------------------------------------------------------
def test_sam2_mode_is_the_upstream_policy(model: torch.nn.Module, clip: Any) -> None:
    frames, masks = clip
    assert type(SAM2VideoPredictor(model, memory_mode="sam2").policy) is MemoryPolicy
    assert type(make_policy("SAM2")) is MemoryPolicy
    out = []
    for kw in ({}, {"memory_mode": "sam2"}):
        p = SAM2VideoPredictor(model, dtype=None, **kw)
        s = p.init_state(frames)
        p.add_new_mask(s, 0, 1, masks[0] == 1)
        out.append([m.clone() for _, _, m in p.propagate_in_video(s)])
    assert all(torch.equal(a, b) for a, b in zip(*out))


# ---- every mode, both directions, predictor and session -----------------------------------------
@pytest.mark.parametrize("mode", NEW_MODES)
def test_mode_tracks_both_directions(model: torch.nn.Module, clip: Any, mode: str) -> None:
    frames, masks = clip
    p = SAM2VideoPredictor(model, dtype=None, memory_mode=mode)
    s = p.init_state(frames)
    for k in (1, 2):
        p.add_new_mask(s, 5, k, masks[5] == k)
    seen: Dict[int, float] = {}
    for f, ids, logits in p.propagate_in_video(s, direction="both"):
        seen[f] = np.mean([_iou(logits[i, 0].numpy() > 0, masks[f] == ids[i]) for i in range(len(ids))])
    assert sorted(seen) == list(range(len(frames)))
    assert np.mean(list(seen.values())) > 0.5, seen
    recs = p.quality(s).all()
    assert {q.reverse for q in recs} == {False, True} and len(recs) == 2 * len(frames)
    # per-object state lives in the objects' banks, per direction
    assert all(o.bank.state.get("last") is not None for o in s.objects.values())


@pytest.mark.parametrize("mode", NEW_MODES)
def test_mode_streams_in_a_session(model: torch.nn.Module, clip: Any, mode: str) -> None:
    frames, masks = clip
    sess = VideoSession(model, dtype=None, memory_mode=mode)
    ious = []
    for t, frame in enumerate(frames):
        r = sess.step(frame, [dict(obj_id=k, mask=masks[0] == k) for k in (1, 2)] if t == 0 else [])
        ious += [_iou(r.mask(k), masks[t] == k) for k in (1, 2)]
    assert np.mean(ious) > 0.5


class _NoHostSync(TorchFunctionMode):
    BANNED = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero"}

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Optional[dict] = None) -> Any:
        if getattr(func, "__name__", "") in self.BANNED:
            raise AssertionError(f"host-device synchronisation inside the tracking step: {func.__name__}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", NEW_MODES)
def test_modes_make_no_host_sync_in_the_step(model: torch.nn.Module, clip: Any, mode: str) -> None:
    """Candidate choice, Kalman filtering, pathway branching and the cut gate stay on the device;
    host bookkeeping is settled after the step (one copy per frame)."""
    frames, masks = clip
    p = SAM2VideoPredictor(model, dtype=None, memory_mode=mode)
    orig, calls = p.engine.track, {"n": 0}

    def checked(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        with _NoHostSync():
            return orig(*a, **k)

    p.engine.track = checked  # type: ignore[method-assign]
    s = p.init_state(frames[:6])
    for k in (1, 2):
        p.add_new_mask(s, 0, k, masks[0] == k)
    list(p.propagate_in_video(s))
    assert calls["n"] == 5


# ---- SAM2Long ------------------------------------------------------------------------------------
def test_long_keeps_three_pathways_and_outputs_the_best(model: torch.nn.Module, clip: Any) -> None:
    frames, masks = clip
    p = SAM2VideoPredictor(model, dtype=None, memory_mode="long")
    s = p.init_state(frames)
    p.add_new_mask(s, 0, 1, masks[0] == 1)
    for f, _, _logits in p.propagate_in_video(s):
        if f == 0:
            continue
        bank = s.objects[1].bank
        paths = bank.state["paths"]
        entry = paths.bank.non_cond[f]
        assert entry.obj_ptr.shape[0] == 3 and entry.maskmem_features.shape[0] == 3
        best = int(paths.scores.argmax())
        assert torch.equal(bank.non_cond[f].obj_ptr[0], entry.obj_ptr[best])  # the output is the best pathway's
    assert len(paths.bank.non_cond) <= 17  # pathway memories are trimmed to what later frames read


def test_long_branching_rules() -> None:
    """Fresh pathways branch from the first only; the running score adds log(IoU + 1e-5); when
    every pathway is uncertain each keeps its own best candidate."""
    pol = LongPolicy(shot_cuts=False)
    ious = torch.tensor([[0.2, 0.9, 0.5], [0.1, 0.1, 0.1], [0.3, 0.3, 0.3]])
    sure = Candidates(torch.zeros(3, 3, 4, 4), ious, torch.zeros(3, 3, 8), torch.full((3, 1), 5.0), True)
    fresh = _Paths(bank=None, scores=torch.zeros(3))  # type: ignore[arg-type]
    parents, choice, scores = pol._branch(sure, [fresh], 1)
    assert parents.tolist() == [[0, 0, 0]] and choice.tolist() == [[1, 2, 0]]
    assert torch.allclose(scores, torch.log(torch.tensor([[0.9, 0.5, 0.2]]) + 1e-5))
    grown = _Paths(bank=None, scores=torch.tensor([0.0, -1.0, -2.0]), fresh=False)  # type: ignore[arg-type]
    parents, choice, _ = pol._branch(sure, [grown], 1)
    assert parents.tolist() == [[0, 0, 0]]  # pathway 0's branches beat the others
    unsure = sure._replace(object_score_logits=torch.full((3, 1), 0.5))
    parents, choice, _ = pol._branch(unsure, [grown], 1)
    assert parents.tolist() == [[0, 1, 2]] and choice.tolist() == [[1, 0, 0]]


# ---- shot cuts ------------------------------------------------------------------------------------
def test_shot_cut_is_flagged_and_kept_out_of_memory(model: torch.nn.Module) -> None:
    from sam2_plugins.evaluation.hard import make_hard_video

    v = make_hard_video("cut", 0, num_frames=40)
    p = SAM2VideoPredictor(model, dtype=None, memory_mode="samurai")
    s = p.init_state(v.frames)
    p.add_new_mask(s, 0, 1, v.masks[0] == 1)
    list(p.propagate_in_video(s))
    q = {r.frame_idx: r for r in p.quality(s).all()}
    assert sorted(t for t, r in q.items() if r.cut) == v.cuts
    bank = s.objects[1].bank
    c1 = v.cuts[0]
    # frames from the cut on stay out of the memory until the object is re-found
    refound = [t for t in range(c1, len(v.frames)) if q[t].refound]
    end = refound[0] if refound else len(v.frames)
    assert all(bank.non_cond[t].in_memory is False for t in range(c1, end))
    assert all(bank.non_cond[t].in_memory for t in range(1, c1))
    reasons = {why for _, _, _, why in p.quality(s).suggest(k=10, min_gap=1)}
    assert reasons & {"lost at a shot cut", "shot cut"}


def test_quality_flags_from_cuts() -> None:
    """A cut where the object is not confidently found counts as lost; being re-found counts as
    reappeared; suggestions rank the cut."""

    class Out:
        def __init__(self, score: float, iou: float, cut: bool = False, refound: bool = False) -> None:
            self.object_score_logits = torch.tensor([[score]])
            self.iou = torch.tensor([iou])
            self.pred_masks = torch.ones(1, 1, 4, 4)
            self.mask_from_points = False
            self.flags = {"cut": torch.tensor([cut]), "refound": torch.tensor([refound])}

    qt = QualityTracker()
    qt.record(1, 0, Out(5.0, 0.9), False)
    a = qt.record(1, 1, Out(0.5, 0.4, cut=True), False)   # still "visible" but not re-found
    b = qt.record(1, 2, Out(0.6, 0.5), False)
    c = qt.record(1, 3, Out(5.0, 0.9, refound=True), False)
    assert a.cut and a.lost and not a.refound
    assert not b.lost and not b.reappeared
    assert c.refound and c.reappeared
    top = suggest_correction_frames(qt.all(), k=1)
    assert top[0][0] == 1 and top[0][3] == "lost at a shot cut"
