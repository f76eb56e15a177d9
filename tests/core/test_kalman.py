"""The box Kalman filter of the tracking modes against hand-computed predict / update steps,
and the SAMURAI motion prior choosing the object over a higher-scoring distractor."""

from __future__ import annotations

from typing import List

import pytest
import torch

from sam2_plugins.modeling.sam_heads import Candidates
from sam2_plugins.predictors.video.bank import MemoryBank
from sam2_plugins.predictors.video.modes import SamuraiPolicy
from sam2_plugins.predictors.video.modes.boxes import box_iou, mask_boxes
from sam2_plugins.predictors.video.modes.kalman import BoxKalman, xyah_to_xyxy, xyxy_to_xyah

D = torch.float64


def test_initiate_predict_update_by_hand() -> None:
    """One track at (x, y, a, h) = (10, 20, 0.5, 40). By hand (wp = 1/20, wv = 1/160):
    initiate: std = (2 wp h, 2 wp h, 1e-2, 2 wp h, 10 wv h, ...) = (4, 4, .01, 4, 2.5, 2.5, 1e-5, 2.5);
    predict: Q std = (2, 2, .01, 2, .25, .25, 1e-5, .25); P'xx = 16 + 6.25 + 4 = 26.25,
    P'x,vx = 6.25, P'vx = 6.25 + .0625 = 6.3125;
    update with z = (12, 20, .5, 40): S = 26.25 + (wp h)^2 = 30.25, Kx = 26.25 / 30.25,
    Kvx = 6.25 / 30.25; x = 10 + 2 Kx, vx = 2 Kvx, Pxx = 26.25 - 26.25^2 / 30.25."""
    kf = BoxKalman()
    mean, cov = kf.initiate(torch.tensor([[10.0, 20.0, 0.5, 40.0]], dtype=D))
    assert torch.allclose(mean, torch.tensor([[10.0, 20, 0.5, 40, 0, 0, 0, 0]], dtype=D))
    std = torch.tensor([4.0, 4, 1e-2, 4, 2.5, 2.5, 1e-5, 2.5], dtype=D)
    assert torch.allclose(cov[0], torch.diag(std ** 2))
    mean, cov = kf.predict(mean, cov)
    assert torch.allclose(mean[0, :4], torch.tensor([10.0, 20, 0.5, 40], dtype=D))
    assert cov[0, 0, 0].item() == pytest.approx(26.25)
    assert cov[0, 0, 4].item() == pytest.approx(6.25) and cov[0, 4, 0].item() == pytest.approx(6.25)
    assert cov[0, 4, 4].item() == pytest.approx(6.3125)
    assert cov[0, 2, 2].item() == pytest.approx(1e-4 + 1e-4 + 1e-10)  # a: (1e-2)^2 twice, its velocity
    mean, cov = kf.update(mean, cov, torch.tensor([[12.0, 20.0, 0.5, 40.0]], dtype=D))
    assert mean[0, 0].item() == pytest.approx(10 + 2 * 26.25 / 30.25)
    assert mean[0, 4].item() == pytest.approx(2 * 6.25 / 30.25)
    assert mean[0, 1].item() == pytest.approx(20.0) and mean[0, 5].item() == pytest.approx(0.0)
    assert cov[0, 0, 0].item() == pytest.approx(26.25 - 26.25 ** 2 / 30.25)
    assert cov[0, 4, 4].item() == pytest.approx(6.3125 - 6.25 ** 2 / 30.25)
    # the next prediction moves by the learned velocity
    mean2, _ = kf.predict(mean, cov)
    assert mean2[0, 0].item() == pytest.approx(mean[0, 0].item() + mean[0, 4].item())


def test_batched_rows_are_independent() -> None:
    kf = BoxKalman()
    z = torch.tensor([[10.0, 20, 0.5, 40], [100.0, 50, 2.0, 10]], dtype=D)
    m2, c2 = kf.update(*kf.predict(*kf.initiate(z)), z + 3)
    for i in range(2):
        m1, c1 = kf.update(*kf.predict(*kf.initiate(z[i:i + 1])), z[i:i + 1] + 3)
        assert torch.allclose(m1[0], m2[i]) and torch.allclose(c1[0], c2[i])


def test_box_conversions_and_iou() -> None:
    xyxy = torch.tensor([[2.0, 4.0, 12.0, 24.0]])
    xyah = xyxy_to_xyah(xyxy)
    assert torch.allclose(xyah, torch.tensor([[7.0, 14.0, 0.5, 20.0]]))
    assert torch.allclose(xyah_to_xyxy(xyah), xyxy)
    assert xyxy_to_xyah(torch.tensor([[5.0, 5.0, 9.0, 5.0]]))[0, 3].item() == 1.0  # zero height counts as 1
    a = torch.tensor([0.0, 0.0, 10.0, 10.0])
    assert box_iou(a, torch.tensor([5.0, 0.0, 15.0, 10.0])).item() == pytest.approx(50 / 150)
    assert box_iou(a, torch.zeros(4)).item() == 0.0  # the empty box
    m = torch.zeros(2, 8, 8)
    m[0, 2:5, 3:7] = 1.0
    assert mask_boxes(m).tolist() == [[3.0, 2.0, 6.0, 4.0], [0.0, 0.0, 0.0, 0.0]]


def _candidates(boxes: List[List[int]], ious: List[float], size: int = 32) -> Candidates:
    """One object's decoder output: a square mask per candidate (low-res logits), its IoU."""
    low = torch.full((1, len(boxes), size, size), -10.0)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        low[0, i, y0:y1, x0:x1] = 10.0
    return Candidates(low, torch.tensor([ious]), torch.zeros(1, len(boxes), 8), torch.ones(1, 1), True)


def _run(policy: SamuraiPolicy, bank: MemoryBank, frames: int) -> None:
    """The object moves right by 1 low-res pixel a frame; it is the only (and best) candidate."""
    for t in range(frames):
        c = _candidates([[2 + t, 10, 8 + t, 16], [0, 0, 1, 1], [0, 0, 1, 1]], [0.9, 0.1, 0.1])
        assert policy.choose([bank], t + 1, c, False).tolist() == [0]


@pytest.mark.parametrize("weight, expected", [(0.25, 0), (0.0, 1)])
def test_motion_prior_picks_the_object_over_a_better_scored_distractor(weight: float, expected: int) -> None:
    """After the warm-up the filter expects the object at x = 2 + t; candidate 0 is there with a
    predicted IoU of 0.80, candidate 1 (a distractor across the frame) scores 0.90. SAMURAI's
    score (0.25 * box IoU + 0.75 * predicted IoU) keeps the object; without the motion term the
    distractor wins, as in SAM 2."""
    policy = SamuraiPolicy(kf_score_weight=weight, shot_cuts=False)
    bank = MemoryBank()
    n = policy.stable_frames + 2
    _run(policy, bank, n)
    t = n
    cand = _candidates([[2 + t, 10, 8 + t, 16], [22, 22, 28, 28], [0, 0, 1, 1]], [0.80, 0.90, 0.1])
    assert policy.choose([bank], t + 1, cand, False).tolist() == [expected]


def test_warm_up_and_reset() -> None:
    """Before ``stable_frames`` good frames the best predicted IoU wins whatever the motion; a
    chosen IoU under ``stable_iou`` restarts the warm-up."""
    policy = SamuraiPolicy(stable_frames=5, shot_cuts=False)
    bank = MemoryBank()
    _run(policy, bank, 3)
    cand = _candidates([[5, 10, 11, 16], [22, 22, 28, 28], [0, 0, 1, 1]], [0.80, 0.90, 0.1])
    assert policy.choose([bank], 4, cand, False).tolist() == [1]  # still warming up
    low = _candidates([[5, 10, 11, 16], [22, 22, 28, 28], [0, 0, 1, 1]], [0.2, 0.25, 0.1])
    policy.choose([bank], 5, low, False)
    assert int(bank.state["kf"][2]) == 0  # restarted


def test_samurai_choice_is_batched_over_objects() -> None:
    """Two objects in one call get the same choices as each alone."""
    p1, p2 = SamuraiPolicy(shot_cuts=False), SamuraiPolicy(shot_cuts=False)
    a, b, both = MemoryBank(), MemoryBank(), [MemoryBank(), MemoryBank()]
    rng = torch.Generator().manual_seed(0)
    for t in range(25):
        ra, rb = torch.rand(3, generator=rng).tolist(), torch.rand(3, generator=rng).tolist()
        ca = _candidates([[2 + t % 20, 4, 8 + t % 20, 9], [1, 20, 9, 30], [12, 1, 20, 6]], ra)
        cb = _candidates([[20, 2 + t % 20, 26, 8 + t % 20], [1, 1, 5, 5], [10, 20, 30, 31]], rb)
        cat = Candidates(torch.cat([ca.low_res_multimasks, cb.low_res_multimasks]), torch.cat([ca.ious, cb.ious]),
                         torch.zeros(2, 3, 8), torch.ones(2, 1), True)
        ga, gb = p1.choose([a], t, ca, False).tolist(), p1.choose([b], t, cb, False).tolist()
        assert p2.choose(both, t, cat, False).tolist() == ga + gb
