"""The hard-case benchmark: seeded synthetic videos where SAM 2 is known to fail, with exact
ground truth.

Six categories (the failure cases the SAM 2 paper names), each a function of ``seed``:

* ``distractor``: the object moves across the frame while two look-alikes (same shape, size,
  stripes, colour within a few levels) cross its path, in front of or behind it;
* ``occlusion``: the object passes behind an opaque wall and is fully hidden for 5-30 frames,
  then reappears on the other side;
* ``fast``: the object moves by more than its own size each frame (1.2-2x its diameter),
  bouncing off the borders, with a slow look-alike in the scene;
* ``cut``: a shot cut to another scene (other background, other shapes, one of them like the
  object) for 8-16 frames, and a cut back; the object is absent from the other scene;
* ``thin``: a thin, elongated bar (4-8 px wide, 10-20x longer) that turns slowly;
* ``crowd``: 12 look-alike shapes moving in all directions; two of them are the objects.

Ground truth: ``masks`` holds the objects (ids 1..K) where they are visible; ``others`` holds
every other shape that looks like an object (look-alikes, the other scene's shapes; ids from
101), which identity-switch scoring needs. Pixels of walls are in neither. ``cuts`` lists the
frames that start a new shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .synthetic import ShapeTrack, _background, _inside, _new_track, _paint

__all__ = ["CATEGORIES", "HardVideo", "make_hard_video", "hard_videos", "identity_switches"]

CATEGORIES = ("distractor", "occlusion", "fast", "cut", "thin", "crowd")

_OTHER = 101  # first id of shapes that are not objects


@dataclass
class HardVideo:
    """One video of the hard benchmark.

    Attributes:
        name: ``"<category>-<seed>"``.
        category: one of :data:`CATEGORIES`.
        frames: ``(T, H, W, 3)`` uint8 RGB.
        masks: ``(T, H, W)`` int32, object ids 1..K where visible, else 0.
        others: ``(T, H, W)`` int32, ids >= 101 of the other object-like shapes where visible.
        cuts: frames that start a new shot (empty outside the ``cut`` category).
        info: category facts (e.g. ``occluded_frames``, ``speed_over_size``).
    """

    name: str
    category: str
    frames: np.ndarray
    masks: np.ndarray
    others: np.ndarray
    cuts: List[int] = field(default_factory=list)
    info: Dict[str, float] = field(default_factory=dict)


@dataclass
class _Layer:
    label: int  # > 0 object, >= 101 other shape, 0 wall (painted, in neither map)
    track: ShapeTrack
    wall: Optional[Tuple[int, int]] = None  # x range of an opaque wall (full height)


def _look_alike(rng: np.random.Generator, like: ShapeTrack, cy: float, cx: float, vy: float, vx: float,
                jitter: float = 8.0) -> ShapeTrack:
    """A shape that looks like ``like`` (same kind, size, stripes; colour within ``jitter``)."""
    colour = np.clip(like.colour + rng.uniform(-jitter, jitter, 3), 0, 255).astype(np.float32)
    return replace(like, cy=cy, cx=cx, vy=vy, vx=vx, colour=colour, angle=like.angle + rng.uniform(-0.3, 0.3),
                   colour_drift=like.colour_drift.copy(), start=0)


def _render(layers: Sequence[_Layer], t: int, bg: np.ndarray, noise: np.ndarray,
            yy: np.ndarray, xx: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = bg.copy()
    lab = np.zeros(bg.shape[:2], np.int32)
    oth = np.zeros(bg.shape[:2], np.int32)
    for layer in layers:  # back to front
        if layer.wall is not None:
            x0, x1 = layer.wall
            inside = (xx >= x0) & (xx < x1)
        else:
            inside = _inside(layer.track, t, yy, xx)
        _paint(img, inside, layer.track, t, yy, xx)
        lab[inside] = 0
        oth[inside] = 0
        if layer.label > 0 and layer.label < _OTHER:
            lab[inside] = layer.label
        elif layer.label >= _OTHER:
            oth[inside] = layer.label
    img += noise
    return np.clip(img, 0, 255).astype(np.uint8), lab, oth


def _track(rng: np.random.Generator, h: int, w: int, kind: Optional[str] = None, r: Tuple[float, float] = (0.09, 0.14),
           still: bool = False) -> ShapeTrack:
    tr = _new_track(rng, h, w, 0)
    m = min(h, w)
    tr.ry, tr.rx = rng.uniform(*r) * m, rng.uniform(*r) * m
    if kind is not None:
        tr.kind = kind
    if still:
        tr.spin, tr.breathe = 0.0, 0.0
    return tr


def _scene_distractor(rng: np.random.Generator, T: int, h: int, w: int) -> Tuple[List[_Layer], Dict[str, float]]:
    obj = _track(rng, h, w)
    obj.cy, obj.cx = rng.uniform(0.35, 0.65) * h, 0.15 * w
    obj.vy, obj.vx = rng.uniform(-0.3, 0.3), 0.7 * w / T
    layers = [_Layer(1, obj)]
    for k, frac in enumerate((rng.uniform(0.25, 0.4), rng.uniform(0.6, 0.75))):
        tc = frac * T  # the look-alike crosses the object's path at frame tc
        ox, oy = obj.cx + obj.vx * tc, obj.cy + obj.vy * tc
        vy = rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 2.5) * h / T
        layers.append(_Layer(_OTHER + k, _look_alike(rng, obj, oy - vy * tc, ox + rng.uniform(-4, 4), vy,
                                                      rng.uniform(-0.3, 0.3))))
    rng.shuffle(layers)  # look-alikes pass in front of or behind the object
    return layers, {}


def _scene_occlusion(rng: np.random.Generator, T: int, h: int, w: int) -> Tuple[List[_Layer], Dict[str, float]]:
    obj = _track(rng, h, w, kind=str(rng.choice(["ellipse", "rect"])), still=True)
    hidden = int(rng.integers(5, 31))  # frames fully behind the wall
    size = 2 * max(obj.rx, obj.ry)
    speed = rng.uniform(1.5, 3.0)
    wall_w = int(round(hidden * speed + size))
    x0 = int(w * 0.5 - wall_w / 2)
    t_in = rng.uniform(0.15, 0.25) * T  # the object's front edge reaches the wall
    obj.cy, obj.vy, obj.vx = rng.uniform(0.35, 0.65) * h, 0.0, speed
    obj.cx = x0 - size / 2 - speed * t_in
    wall = replace(_track(rng, h, w, kind="rect", still=True), colour=rng.uniform(20, 235, 3).astype(np.float32))
    other = _track(rng, h, w)
    return [_Layer(_OTHER, other), _Layer(1, obj), _Layer(0, wall, (max(x0, 0), min(x0 + wall_w, w)))], \
        {"wall_px": float(wall_w)}


def _scene_fast(rng: np.random.Generator, T: int, h: int, w: int) -> Tuple[List[_Layer], Dict[str, float]]:
    obj = _track(rng, h, w, r=(0.05, 0.08), still=True)
    size = 2 * max(obj.rx, obj.ry)
    ratio = rng.uniform(1.2, 2.0)
    theta = rng.uniform(0, 2 * np.pi)
    obj.vy, obj.vx = ratio * size * np.sin(theta), ratio * size * np.cos(theta)
    slow = _look_alike(rng, obj, rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(-1, 1),
                       rng.uniform(-1, 1), jitter=25.0)
    layers = [_Layer(1, obj), _Layer(_OTHER, slow)]
    rng.shuffle(layers)
    return layers, {"speed_over_size": float(ratio)}


def _scene_thin(rng: np.random.Generator, T: int, h: int, w: int) -> Tuple[List[_Layer], Dict[str, float]]:
    bar = _track(rng, h, w, kind="rect")
    width = rng.uniform(4, 8)
    bar.ry = width / 1.4  # rect half-height is 0.7 * ry
    bar.rx = width * rng.uniform(5, 10)  # length 10-20x the width
    bar.spin, bar.breathe = rng.uniform(-0.03, 0.03), 0.0
    return [_Layer(_OTHER, _track(rng, h, w)), _Layer(1, bar)], {"width_px": float(width)}


def _scene_crowd(rng: np.random.Generator, T: int, h: int, w: int) -> Tuple[List[_Layer], Dict[str, float]]:
    base = _track(rng, h, w, r=(0.05, 0.07))
    layers = []
    for k in range(12):
        sp = rng.uniform(0.5, 2.0)
        th = rng.uniform(0, 2 * np.pi)
        tr = _look_alike(rng, base, rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w, sp * np.sin(th),
                         sp * np.cos(th), jitter=15.0)
        layers.append(_Layer(k + 1 if k < 2 else _OTHER + k, tr))
    rng.shuffle(layers)
    return layers, {"shapes": 12.0}


_SCENES: Dict[str, Callable[..., Tuple[List[_Layer], Dict[str, float]]]] = {
    "distractor": _scene_distractor, "occlusion": _scene_occlusion, "fast": _scene_fast,
    "thin": _scene_thin, "crowd": _scene_crowd}


def make_hard_video(category: str, seed: int, num_frames: int = 64, height: int = 192, width: int = 256) -> HardVideo:
    """One seeded video of a category (see the module docstring).

    Raises:
        ValueError: an unknown category (the message lists them) or a size too small.
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; categories: {', '.join(CATEGORIES)}")
    if num_frames < 32 or height < 64 or width < 64:
        raise ValueError(f"hard videos need >= 32 frames and >= 64x64 pixels, got {num_frames} frames "
                         f"of {height}x{width}")
    T, h, w = int(num_frames), int(height), int(width)
    rng = np.random.default_rng([CATEGORIES.index(category), int(seed)])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cuts: List[int] = []
    info: Dict[str, float] = {}
    if category == "cut":
        layers, _ = _scene_distractor(rng, T, h, w)
        layers = [lay for lay in layers if lay.label == 1] + [_Layer(_OTHER, _track(rng, h, w))]
        other_scene = [_Layer(_OTHER + 1, _look_alike(rng, layers[0].track, rng.uniform(0.3, 0.7) * h,
                                                      rng.uniform(0.3, 0.7) * w, 0.5, -0.5, jitter=30.0)),
                       _Layer(_OTHER + 2, _track(rng, h, w))]
        c1 = int(rng.integers(T // 4, T // 4 + 8))
        c2 = c1 + int(rng.integers(8, 17))
        cuts = [c1, c2]
        bg_b = _background(rng, h, w)
    else:
        layers, info = _SCENES[category](rng, T, h, w)
        other_scene, c1, c2, bg_b = [], T, T, None
    bg = _background(rng, h, w)
    frames = np.empty((T, h, w, 3), np.uint8)
    masks = np.empty((T, h, w), np.int32)
    others = np.empty((T, h, w), np.int32)
    for t in range(T):
        noise = np.random.default_rng([seed, t, 7]).normal(0, 6, size=(h, w, 3)).astype(np.float32)
        if c1 <= t < c2:
            assert bg_b is not None  # only the cut category has c1 < c2, and it sets bg_b
            frames[t], _, others[t] = _render(other_scene, t, bg_b, noise, yy, xx)
            masks[t] = 0
        else:
            frames[t], masks[t], others[t] = _render(layers, t, bg, noise, yy, xx)
    if category == "occlusion":
        info["occluded_frames"] = float(sum(1 for t in range(T) if not (masks[t] == 1).any()))
    if not (masks[0] > 0).any():
        raise RuntimeError(f"{category} seed {seed}: no object visible on frame 0 (generator bug)")
    return HardVideo(f"{category}-{seed:03d}", category, frames, masks, others, cuts, info)


def hard_videos(per_category: int = 10, seed: int = 0, categories: Sequence[str] = CATEGORIES,
                num_frames: int = 64, height: int = 192, width: int = 256) -> List[HardVideo]:
    """``per_category`` videos of each category, seeds ``seed .. seed + per_category - 1``
    (the benchmark's default: 10 per category, 60 videos)."""
    if per_category < 1:
        raise ValueError(f"per_category must be >= 1, got {per_category}")
    return [make_hard_video(c, seed + i, num_frames, height, width) for c in categories for i in range(per_category)]


def identity_switches(pred: np.ndarray, obj: np.ndarray, others: np.ndarray) -> bool:
    """Whether a predicted mask covers more of another object-like shape than of its object.

    Args:
        pred: ``(H, W)`` bool predicted mask of the object.
        obj: ``(H, W)`` bool ground truth of the object.
        others: ``(H, W)`` int ids of the other shapes (0 = none); the best-covered one counts.
    """
    on_obj = int(np.count_nonzero(pred & obj))
    ids = others[pred]
    ids = ids[ids > 0]
    if ids.size == 0:
        return False
    return int(np.bincount(ids).max()) > on_obj
