"""Prompt simulation for training, as SAM 2 was trained (upstream ``SAM2Train``).

A clip is prompted on 1-2 *initial conditioning frames* (frame 0 plus, maybe, a random other
one), either with the ground-truth mask or with a point / box prompt. Point-prompted clips then
get *corrective clicks* on 1-2 frames: each click is drawn uniformly from the current error
region (false negatives give a positive click, false positives a negative one) and the
decoder is run again with all clicks so far and its previous low-res logits as mask prompt.

Coordinates are (x, y) in input pixels of the model (0 .. image_size - 1), labels follow SAM:
1 positive click, 0 negative click, 2 / 3 box top-left / bottom-right corner.

Clip-level decisions (prompt type, which frames) come from a ``numpy.random.Generator`` that
has the same seed on every process, so DDP ranks take the same branches (and use the same
parameters) in a step; pixel-level randomness (clicks, box noise) uses torch's RNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from sam2_plugins.modeling.rules import box_to_points

__all__ = [
    "PromptConfig",
    "PromptPlan",
    "plan_prompts",
    "masks_to_boxes",
    "sample_box_points",
    "sample_error_points",
    "sample_center_points",
    "concat_points",
]

# The model's point prompt as tensors: {"point_coords": (B, N, 2) float, "point_labels": (B, N) int32}
# (a plain dict, as the training loop builds and concatenates them; the core's typed equivalent is
# sam2_plugins.predictors.video.entry.PointInputs)
ClickTensors = Dict[str, torch.Tensor]


@dataclass
class PromptConfig:
    """Probabilities and counts of the training prompt simulation (upstream defaults for 2.1).

    Attributes:
        prob_points: probability that a clip is prompted with clicks/boxes rather than masks.
        prob_box: given clicks, probability that an initial prompt is a box instead of a click.
        box_noise: box corner noise as a fraction of the box width / height.
        box_noise_max: cap of the box noise in pixels.
        max_init_cond_frames: initial conditioning frames are 1 .. this (frame 0 always).
        rand_init_cond_frames: draw the count uniformly in 1 .. max (else always max).
        max_frames_to_correct: frames receiving corrective clicks are #cond .. this.
        rand_frames_to_correct: draw that count uniformly (else always max).
        num_correction_clicks: corrective clicks per corrected frame.
        prob_click_from_gt: probability that a corrective click is drawn from the ground
            truth instead of the error region (makes the model less reliant on errors).
        add_corrected_as_cond: a frame that received corrections becomes a conditioning frame.
    """

    prob_points: float = 0.5
    prob_box: float = 0.5
    box_noise: float = 0.1
    box_noise_max: float = 20.0
    max_init_cond_frames: int = 2
    rand_init_cond_frames: bool = True
    max_frames_to_correct: int = 2
    rand_frames_to_correct: bool = True
    num_correction_clicks: int = 7
    prob_click_from_gt: float = 0.1
    add_corrected_as_cond: bool = True

    def __post_init__(self) -> None:
        for name in ("prob_points", "prob_box", "prob_click_from_gt"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
        if self.max_init_cond_frames < 1:
            raise ValueError(f"max_init_cond_frames must be >= 1, got {self.max_init_cond_frames}")
        if self.max_frames_to_correct < self.max_init_cond_frames:
            raise ValueError("max_frames_to_correct must be >= max_init_cond_frames "
                             f"({self.max_frames_to_correct} < {self.max_init_cond_frames})")
        if self.num_correction_clicks < 0:
            raise ValueError(f"num_correction_clicks must be >= 0, got {self.num_correction_clicks}")


@dataclass
class PromptPlan:
    """What one clip gets: prompt type, conditioning frames, corrected frames and the prompts.

    ``point_inputs[t]`` holds ``point_coords`` float (O, P, 2) and ``point_labels`` int32 (O, P);
    ``mask_inputs[t]`` is a float (O, 1, S, S) 0/1 mask at the model's input size.
    """

    use_points: bool
    init_cond_frames: List[int]
    frames_to_correct: List[int]
    num_frames: int
    point_inputs: Dict[int, ClickTensors] = field(default_factory=dict)
    mask_inputs: Dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def processing_order(self) -> List[int]:
        """Conditioning frames first (their memories are needed), then the rest in order."""
        return self.init_cond_frames + [t for t in range(self.num_frames)
                                        if t not in self.init_cond_frames]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive pixel indices) of (B, 1, H, W) masks -> float (B, 1, 4).

    An empty mask gives the box (W, H, 0, 0), i.e. min > max, as upstream does; callers that
    need a valid box for it should not prompt that object with a box.
    """
    B, _, H, W = masks.shape
    m = masks.flatten(0, 1) > 0
    xs = torch.arange(W, device=masks.device).expand(B, H, W)
    ys = torch.arange(H, device=masks.device)[:, None].expand(B, H, W)
    big_x = torch.where(m, xs, torch.full_like(xs, W))
    big_y = torch.where(m, ys, torch.full_like(ys, H))
    small_x = torch.where(m, xs, torch.full_like(xs, -1))
    small_y = torch.where(m, ys, torch.full_like(ys, -1))
    x0 = big_x.flatten(1).min(-1).values
    y0 = big_y.flatten(1).min(-1).values
    x1 = small_x.flatten(1).max(-1).values.clamp(min=0)
    y1 = small_y.flatten(1).max(-1).values.clamp(min=0)
    return torch.stack([x0, y0, x1, y1], -1).float()[:, None]


def sample_box_points(masks: torch.Tensor, noise: float = 0.1,
                      noise_max: float = 20.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """A noisy box around each mask, as two SAM box points.

    Each corner moves uniformly by up to ``noise`` × the box side (at most ``noise_max`` pixels)
    and is clamped into the image.

    Args:
        masks: (B, 1, H, W) bool / 0-1 masks.

    Returns:
        coords float (B, 2, 2) (x, y) and labels int32 (B, 2) = (2, 3).
    """
    B, _, H, W = masks.shape
    box = masks_to_boxes(masks)  # (B, 1, 4)
    if noise > 0:
        w = box[..., 2] - box[..., 0]
        h = box[..., 3] - box[..., 1]
        cap = torch.tensor(float(noise_max), device=masks.device)
        dx = torch.minimum(w * noise, cap)
        dy = torch.minimum(h * noise, cap)
        jitter = torch.rand(B, 1, 4, device=masks.device) * 2 - 1
        box = box + jitter * torch.stack([dx, dy, dx, dy], -1)
        hi = torch.tensor([W - 1, H - 1, W - 1, H - 1], device=masks.device, dtype=box.dtype)
        box = torch.maximum(torch.minimum(box, hi), torch.zeros_like(hi))
    coords, labels = box_to_points(box.reshape(B, 4))
    return coords.to(box.dtype), labels.clone()  # clone: callers write into the labels


def sample_error_points(gt: torch.Tensor, pred: Optional[torch.Tensor]
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One click per object, uniform over its error region.

    A pixel in the false-negative region gives a positive click, one in the false-positive
    region a negative click. Where the prediction is already perfect, a negative click is
    drawn from the background. ``pred=None`` means an empty prediction (first click: uniform
    inside the object).

    Args:
        gt: (B, 1, H, W) bool ground truth.
        pred: (B, 1, H, W) bool prediction, or None.

    Returns:
        coords float (B, 1, 2) (x, y) and labels int32 (B, 1).
    """
    if gt.dtype != torch.bool:
        gt = gt > 0
    if pred is None:
        pred = torch.zeros_like(gt)
    elif pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must have one shape")
    B, _, H, W = gt.shape
    fn = gt & ~pred
    fp = pred & ~gt
    perfect = (gt == pred).flatten(1).all(-1)[:, None, None, None]
    neg_region = fp | (perfect & ~gt)
    # A random score per pixel and channel (negative / positive); the argmax over the allowed
    # pixels is a uniform draw from their union, and its channel gives the label.
    score = torch.rand(B, H, W, 2, device=gt.device)
    score = score * torch.stack([neg_region[:, 0], fn[:, 0]], -1)
    flat = score.flatten(1).argmax(-1)
    labels = (flat % 2).to(torch.int32)[:, None]
    pix = flat // 2
    coords = torch.stack([pix % W, pix // W], -1).float()[:, None]
    return coords, labels


def sample_center_points(gt: torch.Tensor, pred: Optional[torch.Tensor]
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One click per object at the error pixel farthest from the error-region boundary.

    The evaluation click of SAM / RITM ("center" sampling): positive when the largest
    false-negative distance beats the largest false-positive one. Uses scipy's Euclidean
    distance transform with a zero border (the image edge counts as boundary).

    Args / Returns: as :func:`sample_error_points`.
    """
    from scipy.ndimage import distance_transform_edt

    if gt.dtype != torch.bool:
        gt = gt > 0
    if pred is None:
        pred = torch.zeros_like(gt)
    fn = (gt & ~pred)[:, 0].cpu().numpy()
    fp = (pred & ~gt)[:, 0].cpu().numpy()
    B, H, W = fn.shape
    coords = torch.zeros(B, 1, 2)
    labels = torch.ones(B, 1, dtype=torch.int32)
    for b in range(B):
        d_fn = distance_transform_edt(np.pad(fn[b], 1))[1:-1, 1:-1]
        d_fp = distance_transform_edt(np.pad(fp[b], 1))[1:-1, 1:-1]
        i_fn, i_fp = int(d_fn.argmax()), int(d_fp.argmax())
        positive = d_fn.flat[i_fn] > d_fp.flat[i_fp]
        idx = i_fn if positive else i_fp
        coords[b, 0, 0] = idx % W
        coords[b, 0, 1] = idx // W
        labels[b, 0] = int(positive)
    return coords.to(gt.device), labels.to(gt.device)


def concat_points(old: Optional[ClickTensors], coords: torch.Tensor,
                  labels: torch.Tensor) -> ClickTensors:
    """Append clicks (B, k, 2) / (B, k) to point inputs (None = no clicks yet)."""
    if old is None:
        return {"point_coords": coords, "point_labels": labels}
    return {"point_coords": torch.cat([old["point_coords"], coords], 1),
            "point_labels": torch.cat([old["point_labels"], labels], 1)}


def plan_prompts(gt_masks: torch.Tensor, cfg: PromptConfig, rng: np.random.Generator,
                 training: bool = True) -> PromptPlan:
    """Choose the prompts of one batch of clips (all objects share the plan, as upstream).

    Args:
        gt_masks: (T, O, H, W) bool masks of the O objects on the T frames, at input size.
        cfg: probabilities and counts.
        rng: clip-level random generator (same seed on every DDP rank).
        training: False gives the evaluation protocol: mask prompt on frame 0 (a centre click
            on 1-frame clips), no corrections, nothing random.

    Returns:
        A :class:`PromptPlan`. Single images (T = 1) are always point/box prompted and
        corrected, as upstream does for its image data.
    """
    T = gt_masks.shape[0]
    if T < 1:
        raise ValueError("a clip needs at least one frame")
    if training:
        prob_points = cfg.prob_points
        n_cond = cfg.max_init_cond_frames
        n_correct = cfg.max_frames_to_correct
    else:
        prob_points, n_cond, n_correct = 0.0, 1, 1
    if T == 1:
        prob_points, n_cond, n_correct = 1.0, 1, 1
    n_cond = min(n_cond, T)
    n_correct = min(n_correct, T)
    use_points = bool(rng.random() < prob_points)
    if training and cfg.rand_init_cond_frames and n_cond > 1:
        n_cond = int(rng.integers(1, n_cond, endpoint=True))
    if use_points and training and cfg.rand_frames_to_correct and n_correct > n_cond:
        n_correct = int(rng.integers(n_cond, n_correct, endpoint=True))
    n_correct = max(n_correct, n_cond)
    cond = [0]
    if n_cond > 1:
        cond += rng.choice(np.arange(1, T), n_cond - 1, replace=False).tolist()
    cond = [int(t) for t in cond]
    rest = [t for t in range(T) if t not in cond]
    plan = PromptPlan(use_points=use_points, init_cond_frames=cond, frames_to_correct=[],
                      num_frames=T)
    gt = gt_masks > 0
    for t in cond:
        m = gt[t][:, None]
        if not use_points:
            plan.mask_inputs[t] = m.float()
            continue
        if rng.random() < cfg.prob_box and training:
            coords, labels = sample_box_points(m, cfg.box_noise, cfg.box_noise_max)
        elif training:
            coords, labels = sample_error_points(m, None)
        else:
            coords, labels = sample_center_points(m, None)
        plan.point_inputs[t] = {"point_coords": coords, "point_labels": labels}
    if use_points and training:
        # (evaluation: no corrective clicks, which are random draws; the score of a fixed
        # clip must be the same on every pass)
        extra = n_correct - len(cond)
        plan.frames_to_correct = cond + (
            [int(t) for t in rng.choice(rest, extra, replace=False)] if extra > 0 else [])
    return plan
