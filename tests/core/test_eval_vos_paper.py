"""Semi-supervised VOS as the SAM 2 paper runs it: a late object is its own video, its prompted
frame not scored (hand-computed J&F); label maps as upstream's vos_inference (top logit)."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import pytest

from sam2_plugins.evaluation.readers import VOSSequence
from sam2_plugins.evaluation.vos_protocol import (
    first_appearances,
    label_map,
    object_groups,
    run_vos,
    synthetic_sequences,
)
from tests.core.eval_oracles import OracleVideoPredictor


def _late_sequence() -> Tuple[VOSSequence, np.ndarray]:
    """6 frames of 20x20: object 1 in every frame, object 2 from frame 2 on."""
    from sam2_plugins.io import ArraySource

    gt = np.zeros((6, 20, 20), np.uint8)
    gt[:, 2:8, 2:8] = 1
    gt[2:, 10:16, 10:16] = 2
    frames = np.zeros((6, 20, 20, 3), np.uint8)
    seq = VOSSequence("late", ArraySource(frames), list(gt), list(range(6)), [f"{t:05d}" for t in range(6)])
    return seq, gt


def _answers(gt: np.ndarray) -> Dict[Tuple[int, int], np.ndarray]:
    empty = np.zeros(gt.shape[1:], bool)
    return {
        (1, 0): empty,  # object 1's prompted frame: wrong, but not scored
        (1, 5): empty,  # the last frame: wrong, not scored
        (2, 2): empty,  # object 2's prompted frame: wrong, not scored in its own video
        (2, 3): gt[3] == 2,  # right
        (2, 4): empty,  # wrong: J = F = 0
        (2, 5): empty,  # the last frame: not scored
    }


def test_late_object_is_its_own_video_without_its_prompted_frame() -> None:
    seq, gt = _late_sequence()
    oracle = OracleVideoPredictor(gt, answers=_answers(gt))
    run = run_vos(oracle, [seq], prompt="mask", lifetime="own_video")
    s = run.summary
    # hand-computed: object 1 is scored on frames 1-4, all right: J = F = 1.
    # object 2's video is frames 2-5; without its first (prompted) and last frames, frames 3
    # (right: J = F = 1) and 4 (empty prediction of a non-empty GT: J = 0, and F = 0 since
    # precision 1, recall 0): J = F = 0.5. Means over objects: J = F = J&F = 0.75.
    assert s["per_object"] == {"late_1": {"J-Mean": 1.0, "F-Mean": 1.0}, "late_2": {"J-Mean": 0.5, "F-Mean": 0.5}}
    assert s["J-Mean"] == s["F-Mean"] == s["J&F-Mean"] == 0.75
    assert run.sequences[0].frames == {1: [1, 2, 3, 4], 2: [3, 4]}
    # object 2 ran as its own video: the predictor was reset, and tracking started on frame 2
    assert oracle.resets == 1 and oracle.starts == [0, 2]


def test_the_other_object_rules_differ_on_the_same_answers() -> None:
    seq, gt = _late_sequence()
    fa = run_vos(OracleVideoPredictor(gt, answers=_answers(gt)), [seq], lifetime="first_appearance").summary
    # vos-benchmark / SA-V rule: object 2 scored from frame 2 (its prompted frame) to 4: J = 1/3
    assert fa["per_object"]["late_2"]["J-Mean"] == pytest.approx(1 / 3)
    davis = run_vos(OracleVideoPredictor(gt, answers=_answers(gt)), [seq], lifetime="davis").summary
    assert set(davis["per_object"]) == {"late_1"}  # DAVIS: objects of the first frame only
    with pytest.raises(ValueError, match="lifetime"):
        run_vos(OracleVideoPredictor(gt), [seq], lifetime="forever")


def test_own_video_equals_davis_when_every_object_is_in_the_first_frame() -> None:
    seqs = synthetic_sequences(2, 6, 40, 48, 2, seed=5)
    for seq in seqs:
        gt = np.stack(seq.masks)
        own = run_vos(OracleVideoPredictor(gt, reach=2), [seq], lifetime="own_video").summary
        davis = run_vos(OracleVideoPredictor(gt, reach=2), [seq], lifetime="davis").summary
        assert own["J&F-Mean"] < 1.0
        for key in ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "J-Decay", "per_object"):
            assert own[key] == davis[key], key


def test_an_object_too_late_to_score_is_reported() -> None:
    seq, gt = _late_sequence()
    gt2 = gt.copy()
    gt2[:5][gt2[:5] == 2] = 0  # object 2 only in the last frame: nothing to score in its video
    seq.masks = list(gt2)
    run = run_vos(OracleVideoPredictor(gt2), [seq], lifetime="own_video")
    assert run.summary["unscored_objects"] == ["late_2"] and set(run.summary["per_object"]) == {"late_1"}


def test_groups_and_first_appearances() -> None:
    seq, _ = _late_sequence()
    fa = first_appearances(seq, "own_video")
    assert {k: t for k, (t, _) in fa.items()} == {1: 0, 2: 2}
    assert object_groups(fa, True) == [(0, [1]), (2, [2])]
    assert object_groups(fa, False) == [(0, [1, 2])]
    assert set(first_appearances(seq, "davis")) == {1}


def test_label_map_gives_a_pixel_to_the_top_logit() -> None:
    logits = np.array([[[1.0, 5.0, -1.0, 2.0]], [[3.0, 2.0, -2.0, 2.0]]], np.float32)  # 2 objects, 1x4
    lab, best = label_map([7, 3], logits)
    # pixel 0: object 3 (3 > 1); pixel 1: object 7 (5 > 2); pixel 2: nobody > 0; pixel 3: tie -> smallest id
    assert lab.tolist() == [[3, 7, 0, 3]]
    assert best.tolist() == [[3.0, 5.0, -1.0, 2.0]]
