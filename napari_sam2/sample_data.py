"""Sample data (File > Open Sample > SAM 2): synthetic, generated on the fly, with ground truth.

* a time-lapse of moving textured shapes (the kind of scene the demo model was trained on);
* the same scene as a 3D+t stack (T, Z, Y, X, RGB), where Z is a shifted copy of time;
* a 16-bit fluorescence-like 3D stack of nuclei (ellipsoids, blur, noise), to try Z
  propagation on data that is not 8-bit RGB;
* a large (4096²) image of small stained nuclei (12-20 px), to try tiled mode.

Each returns napari ``LayerDataTuple`` s: the image and its ground-truth Labels.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

__all__ = ["synthetic_timelapse", "synthetic_tzyx", "synthetic_nuclei_3d", "make_nuclei_3d", "make_nuclei_2d",
           "synthetic_nuclei_large"]

LayerDataTuple = Tuple[Any, Dict[str, Any], str]


def synthetic_timelapse(num_frames: int = 12, height: int = 96, width: int = 128,
                        seed: int = 3) -> List[LayerDataTuple]:
    """(T, Y, X, 3) uint8 time-lapse with 2 moving objects and a distractor, plus GT."""
    from sam2_plugins.evaluation.synthetic import make_video

    frames, masks = make_video(num_frames, height, width, num_objects=2, seed=seed)
    return [
        (frames, {"name": "synthetic time-lapse", "rgb": True}, "image"),
        (masks, {"name": "time-lapse ground truth", "opacity": 0.4, "visible": False}, "labels"),
    ]


def synthetic_tzyx(num_t: int = 4, num_z: int = 5, height: int = 64, width: int = 80,
                   seed: int = 3) -> List[LayerDataTuple]:
    """(T, Z, Y, X, 3) uint8 3D+t stack: ``data[t, z] = video[t + z]``, plus GT."""
    from sam2_plugins.evaluation.synthetic import make_video

    frames, masks = make_video(num_t + num_z - 1, height, width, num_objects=2, seed=seed)
    idx = np.arange(num_t)[:, None] + np.arange(num_z)[None, :]
    return [
        (frames[idx], {"name": "synthetic 3D+t", "rgb": True}, "image"),
        (masks[idx], {"name": "3D+t ground truth", "opacity": 0.4, "visible": False}, "labels"),
    ]


def make_nuclei_3d(shape: Tuple[int, int, int] = (16, 96, 96), num: int = 12,
                   seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Fluorescence-like nuclei: (Z, Y, X) uint16 image (~200..3000 counts) and int32 labels.

    Ellipsoids of random size and brightness (non-overlapping by construction of the label
    order: later nuclei do not overwrite earlier ones), blurred along Z more than in XY
    (the usual anisotropic PSF), on a dim background with Poisson-like noise.
    """
    rng = np.random.default_rng(seed)
    z, y, x = shape
    zz, yy, xx = np.mgrid[0:z, 0:y, 0:x].astype(np.float32)
    labels = np.zeros(shape, np.int32)
    img = np.full(shape, 200.0, np.float32)
    placed = 0
    for _ in range(num * 20):
        if placed == num:
            break
        r = rng.uniform(0.08, 0.14) * min(y, x)
        c = (rng.uniform(0.3, 0.7) * z, rng.uniform(r, y - r), rng.uniform(r, x - r))
        rz = rng.uniform(0.2, 0.35) * z
        rx = r * rng.uniform(0.8, 1.2)
        inside = (((zz - c[0]) / rz) ** 2 + ((yy - c[1]) / r) ** 2 + ((xx - c[2]) / rx) ** 2) <= 1
        if (labels[inside] != 0).any():
            continue
        placed += 1
        labels[inside] = placed
        img[inside] += rng.uniform(900, 2500) * (1 + 0.15 * np.sin(xx[inside] / 2.5) * np.cos(yy[inside] / 3.0))
    try:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma=(1.5, 1.0, 1.0))
    except ImportError:  # pragma: no cover - scipy is in the napari extra
        pass
    img = rng.poisson(np.clip(img, 0, None)).astype(np.float32) + rng.normal(0, 20, shape)
    return np.clip(img, 0, 65535).astype(np.uint16), labels


def synthetic_nuclei_3d() -> List[LayerDataTuple]:
    """(Z, Y, X) uint16 nuclei stack plus GT labels."""
    img, labels = make_nuclei_3d()
    return [
        (img, {"name": "synthetic nuclei 3D", "colormap": "gray"}, "image"),
        (labels, {"name": "nuclei ground truth", "opacity": 0.4, "visible": False}, "labels"),
    ]


def make_nuclei_2d(size: int = 4096, num: int = 400, seed: int = 0, diameter: Tuple[float, float] = (12.0, 20.0)
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Small stained nuclei on a large plane: (size, size, 3) uint8 RGB and int32 labels.

    Each nucleus is an ellipse of ``diameter`` px (random axes ratio 0.75-1.25 and angle), at
    least 3 px from any other, filled with one colour plus a diagonal chromatin-like stripe
    pattern, on a smooth coloured background with pixel noise. The labels are exact: a pixel
    belongs to a nucleus where its ellipse covers the pixel centre.

    The look (colour, texture) is the one the shipped demo model was trained on, so the demo
    model can show what tiling changes; real stained or fluorescent nuclei need the official
    weights.
    """
    rng = np.random.default_rng(seed)
    yy = np.arange(size, dtype=np.float32)[:, None]
    xx = np.arange(size, dtype=np.float32)[None, :]
    img = np.empty((size, size, 3), np.float32)
    for c in range(3):
        base = rng.uniform(150, 220)
        waves = sum(rng.uniform(8, 20) * np.sin(rng.uniform(-0.01, 0.01) * yy + rng.uniform(-0.01, 0.01) * xx
                                                 + rng.uniform(0, 2 * np.pi)) for _ in range(2))
        img[:, :, c] = base + waves
    labels = np.zeros((size, size), np.int32)
    placed = 0
    for _ in range(num * 40):
        if placed == num:
            break
        r = rng.uniform(*diameter) / 2
        e = rng.uniform(0.75, 1.25)
        ang = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(r * 1.3 + 1, size - r * 1.3 - 1, size=2)
        y0, y1 = int(cy - r * 1.3) - 1, int(cy + r * 1.3) + 2
        x0, x1 = int(cx - r * 1.3) - 1, int(cx + r * 1.3) + 2
        if labels[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3].any():
            continue
        sy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        sx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        c, s_ = np.cos(ang), np.sin(ang)
        u = ((sx - cx) * c + (sy - cy) * s_) / (r * e)
        v = (-(sx - cx) * s_ + (sy - cy) * c) / r
        inside = u * u + v * v <= 1.0
        placed += 1
        labels[y0:y1, x0:x1][inside] = placed
        colour = rng.uniform([60, 20, 90], [160, 90, 200])  # haematoxylin-like purples
        stripes = 22.0 * np.sign(np.sin((sy + sx) * (2 * np.pi / rng.uniform(4, 8))))
        for ch in range(3):
            img[y0:y1, x0:x1, ch][inside] = (colour[ch] + stripes)[inside]
    img += rng.normal(0, 5, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), labels


def synthetic_nuclei_large() -> List[LayerDataTuple]:
    """A 4096² RGB plane of ~400 small stained nuclei plus GT labels (try tiled mode)."""
    img, labels = make_nuclei_2d()
    return [
        (img, {"name": "synthetic nuclei 4096", "rgb": True}, "image"),
        (labels, {"name": "nuclei 4096 ground truth", "opacity": 0.4, "visible": False}, "labels"),
    ]
