"""Masks out of the video predictor / session: resizing, binarising, non-overlap, RLE, PNG writers.

Conventions: mask logits are ``(num_objects, 1, H, W)`` float tensors (> 0 is foreground) at
the video's resolution, rows in object order. Writers take such logits or boolean masks.

* DAVIS style: one palette PNG per frame, pixel value = object index (1..N, 0 background),
  the standard DAVIS / PASCAL VOC palette; ``<dir>/<frame_name>.png``.
* SA-V style (upstream ``tools/vos_inference.py --per_obj_png_file``): one PNG per object and
  frame, ``<dir>/<obj_id:03d>/<frame_name>.png``, values 0/1 with the same palette.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "to_video_res",
    "binarize",
    "masks_to_rles",
    "davis_palette",
    "combine_objects",
    "write_davis_png",
    "write_sav_pngs",
]

PathLike = Union[str, Path]


def to_video_res(mask_logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of ``(N, 1, h, w)`` logits to ``(N, 1, height, width)`` (upstream's
    ``align_corners=False``); a no-op when the size already matches."""
    if mask_logits.dim() != 4:
        raise ValueError(f"mask logits must be (N, 1, h, w), got shape {tuple(mask_logits.shape)}")
    if tuple(mask_logits.shape[-2:]) == (height, width):
        return mask_logits
    return F.interpolate(mask_logits.float(), size=(height, width), mode="bilinear", align_corners=False)


def binarize(mask_logits: torch.Tensor, threshold: float = 0.0) -> np.ndarray:
    """``(N, 1, H, W)`` (or ``(N, H, W)``) logits -> ``(N, H, W)`` bool numpy array."""
    m = mask_logits
    if m.dim() == 4:
        m = m[:, 0]
    if m.dim() != 3:
        raise ValueError(f"expected (N, 1, H, W) or (N, H, W) masks, got shape {tuple(mask_logits.shape)}")
    return (m > threshold).cpu().numpy()


def masks_to_rles(masks: Union[torch.Tensor, np.ndarray], compressed: bool = True) -> List[Dict[str, Any]]:
    """One COCO RLE per object (``compressed=True``: string counts as pycocotools writes them;
    else uncompressed counts). Accepts logits ``(N, 1, H, W)`` (> 0) or bool ``(N, H, W)``."""
    from sam2_plugins import rle

    arr = _as_bool(masks)
    if compressed:
        return [rle.encode_coco_rle(m) for m in arr]
    return [rle.mask_to_rle(m) for m in arr]


def _as_bool(masks: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    if isinstance(masks, torch.Tensor):
        if masks.dtype == torch.bool:
            m = masks.cpu().numpy()
        else:
            return binarize(masks if masks.dim() == 4 else masks[:, None])
    else:
        m = np.asarray(masks)
        if m.dtype != np.bool_:
            m = m > 0
    if m.ndim == 4:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"expected (N, H, W) or (N, 1, H, W) masks, got shape {m.shape}")
    return m


def davis_palette() -> bytes:
    """The 256-colour DAVIS / PASCAL VOC palette (index 1 red, 2 green, ...), 768 bytes."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal.tobytes()


def combine_objects(masks: Union[torch.Tensor, np.ndarray], obj_ids: Optional[Sequence[int]] = None
                    ) -> np.ndarray:
    """Per-object masks -> one ``(H, W)`` uint8 index map (0 background).

    Pixel values are the object ids (default 1..N); where objects overlap, the smaller id wins
    (upstream ``put_per_obj_mask`` paints in decreasing id order).
    """
    arr = _as_bool(masks)
    ids = list(range(1, arr.shape[0] + 1)) if obj_ids is None else [int(i) for i in obj_ids]
    if len(ids) != arr.shape[0]:
        raise ValueError(f"{arr.shape[0]} masks but {len(ids)} object ids")
    if any(not 0 < i < 256 for i in ids):
        raise ValueError(f"object ids must be in 1..255 for a palette PNG, got {ids}")
    out = np.zeros(arr.shape[1:], dtype=np.uint8)
    for i in sorted(range(len(ids)), key=lambda k: ids[k], reverse=True):
        out[arr[i]] = ids[i]
    return out


def _save_palette_png(path: Path, index_map: np.ndarray) -> None:
    from PIL import Image

    img = Image.fromarray(index_map.astype(np.uint8), mode="P")
    img.putpalette(davis_palette())
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_davis_png(out_dir: PathLike, frame_name: Union[str, int],
                    masks: Union[torch.Tensor, np.ndarray],
                    obj_ids: Optional[Sequence[int]] = None) -> Path:
    """Write one frame's objects as a DAVIS palette PNG ``<out_dir>/<frame_name>.png``.

    ``frame_name`` ints are zero-padded to 5 digits (``00000.png``) as in DAVIS.
    """
    name = f"{frame_name:05d}" if isinstance(frame_name, (int, np.integer)) else str(frame_name)
    path = Path(out_dir) / f"{name}.png"
    _save_palette_png(path, combine_objects(masks, obj_ids))
    return path


def write_sav_pngs(out_dir: PathLike, frame_name: Union[str, int],
                   masks: Union[torch.Tensor, np.ndarray], obj_ids: Sequence[int]) -> List[Path]:
    """Write SA-V style per-object PNGs ``<out_dir>/<obj_id:03d>/<frame_name>.png`` (0/1)."""
    arr = _as_bool(masks)
    if len(obj_ids) != arr.shape[0]:
        raise ValueError(f"{arr.shape[0]} masks but {len(obj_ids)} object ids")
    name = f"{frame_name:05d}" if isinstance(frame_name, (int, np.integer)) else str(frame_name)
    paths = []
    for m, oid in zip(arr, obj_ids):
        p = Path(out_dir) / f"{int(oid):03d}" / f"{name}.png"
        _save_palette_png(p, m.astype(np.uint8))
        paths.append(p)
    return paths


def read_palette_png(path: PathLike) -> np.ndarray:
    """Read a palette PNG back as its ``(H, W)`` uint8 index map."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im)
