"""Training and inference share one tracking path.

The Lightning module's clip forward in eval mode (its validation: no prompt simulation) and
``SAM2VideoPredictor`` with its defaults, on the same clip and the same prompts, return the same
masks: both run :class:`sam2_plugins.predictors.video.step.TrackingStep` with the same settings.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import pytest
import torch

from lightning_module.module import SAM2FineTuner
from lightning_module.prompts import PromptConfig, PromptPlan
from lightning_module.tracking import ClipBatch, forward_clip
from sam2_plugins import SAM2VideoPredictor, build_sam2
from sam2_plugins.predictors.video.frames import normalize_frame

T = 6


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(1, |b|): float32 rounding of logits of magnitude ~30 is ~2e-6 each
    way; batching two objects in one call or one at a time moves them by about one ulp."""
    return float(((a - b).abs() / b.abs().clamp(min=1.0)).max())


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_sam2("sam2.1_hiera_nano", checkpoint="demo", device="cpu").eval()


def _clip(S: int) -> tuple:
    """Two shapes moving over a textured background, at the model's input size."""
    rng = np.random.default_rng(3)
    bg = rng.integers(0, 120, (S, S, 3), dtype=np.uint8)
    frames, masks = [], []
    yy, xx = np.mgrid[:S, :S]
    for t in range(T):
        f = bg.copy()
        a = (xx - 70 - 6 * t) ** 2 + (yy - 90) ** 2 < 30 ** 2
        b = (abs(xx - 170) < 25) & (abs(yy - 150 - 4 * t) < 35)
        f[a] = (230, 60, 40)
        f[b] = (40, 200, 90)
        frames.append(f)
        masks.append(np.stack([a, b]))
    return np.stack(frames), torch.from_numpy(np.stack(masks))


def _batch(frames: np.ndarray, masks: torch.Tensor, S: int) -> ClipBatch:
    images = torch.stack([normalize_frame(f, S) for f in frames])[:, None]  # (T, 1, 3, S, S)
    return ClipBatch(images, masks, torch.zeros(masks.shape[1], dtype=torch.long))


def _predictor_masks(model: torch.nn.Module, frames: np.ndarray, prompts: Dict[int, dict]) -> List[torch.Tensor]:
    p = SAM2VideoPredictor(model, dtype=None)
    s = p.init_state(frames)
    for obj, kw in prompts.items():
        if "mask" in kw:
            p.add_new_mask(s, 0, obj, kw["mask"])
        else:
            p.add_new_points_or_box(s, 0, obj, points=kw["points"], labels=kw["labels"])
    return [m for _, _, m in p.propagate_in_video(s)]


@pytest.mark.parametrize("kind", ["mask", "clicks"])
def test_clip_forward_eval_equals_video_predictor(model: torch.nn.Module, kind: str) -> None:
    S = model.image_size
    frames, masks = _clip(S)
    batch = _batch(frames, masks, S)
    if kind == "mask":
        plan = PromptPlan(use_points=False, init_cond_frames=[0], frames_to_correct=[], num_frames=T,
                          mask_inputs={0: masks[0][:, None].float()})
        prompts = {1: {"mask": masks[0, 0].numpy()}, 2: {"mask": masks[0, 1].numpy()}}
    else:
        coords = torch.tensor([[[70.0, 90.0]], [[170.0, 150.0]]])
        labels = torch.ones(2, 1, dtype=torch.int32)
        plan = PromptPlan(use_points=True, init_cond_frames=[0], frames_to_correct=[], num_frames=T,
                          point_inputs={0: {"point_coords": coords, "point_labels": labels}})
        prompts = {1: {"points": [[70, 90]], "labels": [1]}, 2: {"points": [[170, 150]], "labels": [1]}}
    with torch.no_grad():
        outs = forward_clip(model, batch, plan, PromptConfig(), np.random.default_rng(0))
    ours = [o["pred_masks_high_res"][:, :, :, :] for o in outs]
    ref = _predictor_masks(model, frames, prompts)
    assert len(ref) == T
    for t in range(T):
        diff = _rel_diff(ours[t], ref[t])
        assert diff <= 1e-5, f"frame {t}: max relative logit diff {diff:.2e}"
    # not vacuous: the objects are tracked (masks on every frame, both objects)
    assert all(bool((r > 0).flatten(1).any(1).all()) for r in ref)


def test_lightning_module_validation_forward_uses_the_same_path(model: torch.nn.Module) -> None:
    """The module's own forward in eval mode (what ``validation_step`` scores) equals the predictor."""
    S = model.image_size
    frames, masks = _clip(S)
    module = SAM2FineTuner(model=model).eval()
    with torch.no_grad():
        outs = module(_batch(frames, masks, S))
    ref = _predictor_masks(model, frames, {1: {"mask": masks[0, 0].numpy()}, 2: {"mask": masks[0, 1].numpy()}})
    for t in range(T):
        assert _rel_diff(outs[t]["pred_masks_high_res"], ref[t]) <= 1e-5, t
