"""Deterministic synthetic videos and images with exact instance masks.

Used by tests, by the benchmark demo where no dataset is present, and to train the demo model.
A scene is a textured background (low-frequency colour waves plus pixel noise) with textured
shapes (ellipses, rectangles, triangles) that move, bounce off the borders, breathe in size,
slowly change colour and occlude each other in a fixed depth order. Optional distractors look
like the objects but are not in the ground truth, and objects can enter after frame 0.

Everything is a function of ``seed``: same arguments, same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

__all__ = ["make_video", "make_image", "ShapeTrack"]


@dataclass
class ShapeTrack:
    """One moving shape: its geometry, motion and appearance over time."""

    kind: str  # "ellipse", "rect" or "triangle"
    cy: float
    cx: float
    vy: float
    vx: float
    ry: float
    rx: float
    angle: float
    spin: float
    colour: np.ndarray  # (3,) float in [0, 255]
    colour_drift: np.ndarray  # (3,) per frame
    stripe_period: float
    breathe: float  # relative size amplitude
    start: int  # first frame in which the shape exists

    def state(self, t: int, height: int, width: int) -> Tuple[float, float, float, float, float]:
        """Centre, radii and angle at frame ``t`` (bouncing inside the frame)."""
        cy = _bounce(self.cy + self.vy * t, height)
        cx = _bounce(self.cx + self.vx * t, width)
        s = 1.0 + self.breathe * np.sin(0.35 * t + self.cx)
        return cy, cx, self.ry * s, self.rx * s, self.angle + self.spin * t


def _bounce(pos: float, size: int) -> float:
    # reflect a free trajectory into [0, size - 1]
    period = 2.0 * (size - 1)
    p = pos % period
    return p if p <= size - 1 else period - p


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        base = rng.uniform(60, 190)
        waves = np.zeros((height, width), np.float32)
        for _ in range(3):
            fy, fx = rng.uniform(-0.09, 0.09, size=2)
            waves += rng.uniform(10, 35) * np.sin(fy * yy + fx * xx + rng.uniform(0, 2 * np.pi))
        img[:, :, c] = base + waves
    return img


def _new_track(rng: np.random.Generator, height: int, width: int, start: int,
               colour: Optional[np.ndarray] = None) -> ShapeTrack:
    m = min(height, width)
    kind = ["ellipse", "rect", "triangle"][int(rng.integers(3))]
    speed = rng.uniform(0.01, 0.035) * m
    theta = rng.uniform(0, 2 * np.pi)
    return ShapeTrack(
        kind=kind,
        cy=rng.uniform(0.25, 0.75) * (height - 1),
        cx=rng.uniform(0.25, 0.75) * (width - 1),
        vy=speed * np.sin(theta),
        vx=speed * np.cos(theta),
        ry=rng.uniform(0.09, 0.2) * m,
        rx=rng.uniform(0.09, 0.2) * m,
        angle=rng.uniform(0, np.pi),
        spin=rng.uniform(-0.06, 0.06),
        colour=np.asarray(colour if colour is not None else rng.uniform(20, 235, size=3), np.float32),
        colour_drift=rng.uniform(-1.2, 1.2, size=3).astype(np.float32),
        stripe_period=rng.uniform(4, 10),
        breathe=rng.uniform(0.0, 0.2),
        start=start,
    )


def _inside(track: ShapeTrack, t: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    h, w = yy.shape
    cy, cx, ry, rx, ang = track.state(t, h, w)
    c, s = np.cos(ang), np.sin(ang)
    u = ((xx - cx) * c + (yy - cy) * s) / max(rx, 1.0)
    v = (-(xx - cx) * s + (yy - cy) * c) / max(ry, 1.0)
    if track.kind == "ellipse":
        return u * u + v * v <= 1.0
    if track.kind == "rect":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.7)
    # triangle: three half-planes
    return (v <= 0.6) & (v >= -1.0 + 1.6 * np.abs(u))


def _paint(img: np.ndarray, inside: np.ndarray, track: ShapeTrack, t: int, yy: np.ndarray, xx: np.ndarray) -> None:
    colour = np.clip(track.colour + track.colour_drift * t, 0, 255)
    stripes = 22.0 * np.sign(np.sin((yy + xx + 0.5 * t) * (2 * np.pi / track.stripe_period)))
    for ch in range(3):
        img[:, :, ch][inside] = colour[ch] + stripes[inside]


def _render(
    tracks: List[ShapeTrack],
    distractors: List[ShapeTrack],
    t: int,
    bg: np.ndarray,
    noise: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray]:
    h, w = bg.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = bg.copy()
    mask = np.zeros((h, w), np.int32)
    # depth order: objects and distractors interleaved deterministically (list order = back to front)
    layers = [(i + 1, tr) for i, tr in enumerate(tracks)] + [(0, d) for d in distractors]
    layers.sort(key=lambda item: (item[1].cx * 7.31 + item[1].cy) % 1.0)
    for obj_id, tr in layers:
        if t < tr.start:
            continue
        inside = _inside(tr, t, yy, xx)
        _paint(img, inside, tr, t, yy, xx)
        mask[inside] = obj_id  # a distractor (id 0) on top hides the objects below it
    img += noise
    return np.clip(img, 0, 255).astype(np.uint8), mask


def make_video(
    num_frames: int = 8,
    height: int = 64,
    width: int = 96,
    num_objects: int = 2,
    seed: int = 0,
    *,
    num_distractors: int = 1,
    late_objects: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """A synthetic video with per-object ground truth.

    Args:
        num_frames, height, width: video size.
        num_objects: K objects, ids 1..K. Objects 1..K-late_objects exist from frame 0 (and
            are visible in frame 0: the generator re-draws a scene until each covers at least
            0.5% of frame 0); the last ``late_objects`` enter at random later frames.
        seed: everything is determined by it.
        num_distractors: shapes painted like objects (similar colours) but absent from GT.
        late_objects: how many objects enter after frame 0.

    Returns:
        ``frames``: ``uint8`` array ``(T, H, W, 3)`` (RGB);
        ``masks``: ``int32`` array ``(T, H, W)``, 0 = background, ``k`` = object k (each pixel
        belongs to the front-most shape; distractors hide objects behind them).
    """
    for name, v in (("num_frames", num_frames), ("height", height), ("width", width)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if num_objects < 0 or not 0 <= late_objects <= num_objects:
        raise ValueError(f"need 0 <= late_objects <= num_objects, got {late_objects}, {num_objects}")
    if num_frames < 2 and late_objects:
        raise ValueError("late objects need at least 2 frames")
    rng = np.random.default_rng(seed)
    for _attempt in range(50):
        tracks = []
        for k in range(num_objects):
            start = 0 if k < num_objects - late_objects else int(rng.integers(1, num_frames))
            tracks.append(_new_track(rng, height, width, start))
        distractors = []
        for _ in range(num_distractors):
            like = tracks[int(rng.integers(len(tracks)))].colour if tracks else None
            col = None if like is None else np.clip(like + rng.uniform(-25, 25, size=3), 0, 255)
            distractors.append(_new_track(rng, height, width, 0, colour=col))
        bg = _background(rng, height, width)
        noise = rng.normal(0, 6, size=(height, width, 3)).astype(np.float32)
        frame0, mask0 = _render(tracks, distractors, 0, bg, noise)
        need = max(1, int(0.005 * height * width))
        if all(np.count_nonzero(mask0 == k + 1) >= need for k in range(num_objects) if tracks[k].start == 0):
            break
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    masks = np.empty((num_frames, height, width), np.int32)
    frames[0], masks[0] = frame0, mask0
    for t in range(1, num_frames):
        # fresh but seeded sensor noise per frame
        n = np.random.default_rng([seed, t]).normal(0, 6, size=(height, width, 3)).astype(np.float32)
        frames[t], masks[t] = _render(tracks, distractors, t, bg, n)
    return frames, masks


def make_image(
    height: int = 96,
    width: int = 128,
    num_objects: int = 3,
    seed: int = 0,
    *,
    num_distractors: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """A synthetic image with instance masks (frame 0 of :func:`make_video`).

    Returns:
        ``image``: ``uint8`` ``(H, W, 3)``; ``instances``: ``int32`` ``(H, W)``, ids 1..K
        (every id covers at least 0.5% of the image unless 50 draws all failed).
    """
    frames, masks = make_video(1, height, width, num_objects, seed, num_distractors=num_distractors)
    return frames[0], masks[0]
