"""Loss parity with upstream ``training/loss_fns.py`` and robustness of the loss."""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

from lightning_module.losses import SAM2Loss, dice_loss, focal_loss

UPSTREAM_KW = dict(
    weight_dict={"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
    supervise_all_iou=True, iou_use_l1_loss=True, pred_obj_scores=True,
    focal_gamma_obj_score=0.0, focal_alpha_obj_score=-1.0,
)


def _import_upstream_loss_fns():
    """Import upstream ``training.loss_fns`` without its trainer.

    ``loss_fns`` takes only ``CORE_LOSS_KEY`` from ``training.trainer``, whose own imports pull
    in tensorboard, fvcore and more; a stand-in module holding that one constant is enough.
    """
    try:
        return importlib.import_module("training.loss_fns")
    except ImportError:
        pass
    pytest.importorskip("training.utils.distributed",
                        reason="upstream sam2==1.1.0 (its `training` package) not installed")
    real = sys.modules.get("training.trainer")
    stand_in = types.ModuleType("training.trainer")
    stand_in.CORE_LOSS_KEY = "core_loss"
    sys.modules["training.trainer"] = stand_in
    try:
        sys.modules.pop("training.loss_fns", None)
        return importlib.import_module("training.loss_fns")
    finally:
        if real is not None:
            sys.modules["training.trainer"] = real
        else:
            sys.modules.pop("training.trainer", None)


def _upstream_loss():
    mod = _import_upstream_loss_fns()
    return mod.MultiStepMultiMasksAndIous(**{**UPSTREAM_KW, "weight_dict": dict(UPSTREAM_KW["weight_dict"])})


def _random_clip(T: int, N: int, steps: list, H: int = 32, W: int = 24, seed: int = 0,
                 empty_objects: tuple = ()):
    """Per frame: a list of steps with M masks each; targets (T, N, H, W) with blobs."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.zeros(T, N, H, W)
    for t in range(T):
        for n in range(N):
            if (t, n) in empty_objects:
                continue
            y0, x0 = int(torch.randint(0, H // 2, (1,), generator=g)), int(torch.randint(0, W // 2, (1,), generator=g))
            targets[t, n, y0:y0 + H // 3, x0:x0 + W // 3] = 1
    outputs = []
    for t in range(T):
        ms = steps[t]
        outputs.append({
            "multistep_pred_multimasks_high_res": [torch.randn(N, m, H, W, generator=g) * 4 for m in ms],
            "multistep_pred_ious": [torch.rand(N, m, generator=g) for m in ms],
            "multistep_object_score_logits": [torch.randn(N, 1, generator=g) * 3 for m in ms],
        })
    return outputs, targets


CASES = {
    "single_mask_one_object_one_step": (1, 1, [[1]]),
    "multimask_three_objects": (1, 3, [[3]]),
    "clip_multistep_mixed": (4, 2, [[3, 1, 1, 1], [3], [1], [3, 1]]),
    "eight_frames_correction_steps": (8, 3, [[3] + [1] * 7] + [[3]] * 6 + [[1] * 8]),
}


@pytest.mark.reference
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_matches_upstream(case):
    T, N, steps = CASES[case]
    empty = ((0, N - 1),) if N > 1 else ()
    outputs, targets = _random_clip(T, N, steps, seed=hash(case) % 1000, empty_objects=empty)
    ours = SAM2Loss()(outputs, targets)
    theirs = _upstream_loss()(outputs, targets)
    for k in ("loss_mask", "loss_dice", "loss_iou", "loss_class", "core_loss"):
        a, b = float(ours[k]), float(theirs[k])
        assert abs(a - b) <= 1e-6 * max(1.0, abs(b)), (case, k, a, b)
    assert float(ours["core_loss"]) > 0


@pytest.mark.reference
def test_loss_gradients_match_upstream():
    outputs, targets = _random_clip(2, 2, [[3, 1], [1]], seed=3)
    leaves = [x.requires_grad_() for o in outputs for v in o.values() for x in v]
    ours = SAM2Loss()(outputs, targets)["core_loss"]
    g_ours = torch.autograd.grad(ours, leaves)
    theirs = _upstream_loss()(outputs, targets)["core_loss"]
    g_theirs = torch.autograd.grad(theirs, leaves)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_focal_and_dice_basic_values():
    # A perfect confident prediction has ~0 loss, a confidently wrong one a large loss.
    t = torch.zeros(1, 1, 4, 4)
    t[..., :2, :] = 1
    good = (t * 2 - 1) * 20
    assert float(focal_loss(good, t).mean()) < 1e-6
    assert float(dice_loss(good, t).mean()) < 1e-6
    assert float(focal_loss(-good, t).mean()) > 1.0
    assert float(dice_loss(-good, t).mean()) > 0.9


def test_objects_without_pixels_give_finite_loss_and_only_class_term():
    outputs, targets = _random_clip(2, 2, [[3], [1, 1]], seed=1)
    targets.zero_()  # no object anywhere
    losses = SAM2Loss()(outputs, targets)
    for v in losses.values():
        assert torch.isfinite(v)
    assert float(losses["loss_mask"]) == 0 and float(losses["loss_dice"]) == 0
    assert float(losses["loss_class"]) > 0


def test_bad_shapes_raise_clear_errors():
    outputs, targets = _random_clip(2, 1, [[1], [1]])
    with pytest.raises(ValueError, match="frames"):
        SAM2Loss()(outputs[:1], targets)
    with pytest.raises(ValueError, match="targets"):
        SAM2Loss()(outputs, targets[0])
    with pytest.raises(ValueError, match="predicted masks"):
        SAM2Loss()(outputs, targets[:, :, :16])
