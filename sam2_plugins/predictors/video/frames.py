"""Lazy frames of a video with a small LRU cache of image features, and frame normalisation.

Frames are decoded on demand by :class:`FrameFeed`, which keeps only the image features of the
last few frames, so a long video never sits in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["FrameFeatures", "FrameFeed", "normalize_frame", "resize_frame", "finish_normalize",
           "IMG_MEAN", "IMG_STD"]

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


def resize_frame(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """The CPU half of :func:`normalize_frame`: a raw frame resized to S x S, not normalised.

    Returns (3, S, S) uint8 for uint8 frames (normalised later by a lookup table, which gives
    the very values upstream's float64 ``/255`` then float32 ``(x - mean) / std`` gives), or
    (3, S, S) float32 in [0, 1] for other dtypes.
    """
    from PIL import Image

    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"a frame must be HxW, HxWx1, HxWx3 or HxWx4; got shape {arr.shape}")
    if arr.dtype == np.uint8:
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        arr = np.ascontiguousarray(arr[..., :3])
        img = np.array(Image.fromarray(arr, mode="RGB").resize((image_size, image_size)))
        return torch.from_numpy(img).permute(2, 0, 1).contiguous()
    rgb = _to_rgb_float(arr)
    # Pillow sets its module-level filter constants through globals() (mypy cannot see them);
    # Image.Resampling would need Pillow >= 9.1
    bicubic = Image.BICUBIC  # type: ignore[attr-defined]
    chans = [np.array(Image.fromarray(np.ascontiguousarray(rgb[..., c], dtype=np.float32),
                                      mode="F").resize((image_size, image_size), bicubic))
             for c in range(3)]
    return torch.from_numpy(np.stack(chans, 0)).float()


_LUT_CACHE: Dict[Tuple[torch.device, bool], torch.Tensor] = {}


def _uint8_lut(device: torch.device) -> torch.Tensor:
    """(3, 256) float32: normalised value of each uint8 level per channel, computed with
    upstream's operations (float64 /255, cast to float32, then float32 - mean, / std)."""
    key = (device, torch.is_inference_mode_enabled())  # an inference tensor cannot enter autograd later
    lut = _LUT_CACHE.get(key)
    if lut is None:
        levels = torch.from_numpy(np.arange(256) / 255.0).float()
        mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None]
        std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None]
        lut = ((levels[None].repeat(3, 1) - mean) / std).to(device)
        _LUT_CACHE[key] = lut
    return lut


def finish_normalize(resized: torch.Tensor, device: Optional[torch.device] = None) -> torch.Tensor:
    """The device half of :func:`normalize_frame`: (3, S, S) resized frame -> normalised float32."""
    dev = torch.device("cpu") if device is None else device
    x = resized.to(dev, non_blocking=True)
    if x.dtype == torch.uint8:
        c, h, w = x.shape
        return _uint8_lut(dev).gather(1, x.reshape(c, -1).long()).reshape(c, h, w)
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32, device=dev)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32, device=dev)[:, None, None]
    return (x - mean) / std


def normalize_frame(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """One raw frame -> (3, S, S) float32, ImageNet-normalised model input (on the CPU).

    uint8 frames follow upstream's video loader exactly: PIL resize to S x S (bicubic) of the
    RGB uint8 image, /255, then (x - mean) / std. Grey frames are repeated to RGB and an
    alpha channel is dropped (as PIL's ``convert("RGB")``). Other dtypes are first mapped to
    float RGB in [0, 1] by :func:`sam2_plugins.predictors.image.preprocess.to_rgb_float` (per-frame
    percentile stretch for 16-bit data, see there) and resized per channel with PIL's bicubic
    filter on float32 ("F" mode), so both paths use the same filter.
    """
    return finish_normalize(resize_frame(frame, image_size))


def _to_rgb_float(arr: np.ndarray) -> np.ndarray:
    """Non-uint8 frame -> (H, W, 3) float32 RGB in [0, 1] (the image predictor's rules)."""
    from sam2_plugins.predictors.image.preprocess import to_rgb_float

    return np.asarray(to_rgb_float(arr), dtype=np.float32)


@dataclass
class FrameFeatures:
    """Image features of one frame, flattened as the model's memory path wants them.

    Attributes:
        vision_feats: per level (finest first) (HW, B, C) tensors (B = 1: one frame shared by
            every object); the last is the 64²
            (``feat_size``²) map, the others feed the decoder's high-resolution path.
        vision_pos: position encoding of the last level, (HW, B, C).
        feat_sizes: (H, W) per level.
    """

    vision_feats: List[torch.Tensor]
    vision_pos: torch.Tensor
    feat_sizes: List[Tuple[int, int]]

    @property
    def batch(self) -> int:
        """Rows of the features: 1 for a frame shared by all objects, else one per object."""
        return int(self.vision_feats[-1].shape[1])

    def to(self, device: torch.device) -> "FrameFeatures":
        """The features on ``device`` (self when they are there already)."""
        dev = torch.device(device)
        if self.vision_feats[-1].device == dev:
            return self
        return FrameFeatures([f.to(dev, non_blocking=True) for f in self.vision_feats],
                             self.vision_pos.to(dev, non_blocking=True), list(self.feat_sizes))

    def expand(self, batch: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Features and position for ``batch`` rows: a 1-row frame is broadcast (views, no copy);
        features that already have ``batch`` rows (training: one row per object) are returned."""
        if self.batch == batch:
            return list(self.vision_feats), self.vision_pos
        if self.batch != 1:
            raise ValueError(f"features have {self.batch} rows; cannot expand them to {batch}")
        feats = [f.expand(-1, batch, -1) for f in self.vision_feats]
        return feats, self.vision_pos.expand(-1, batch, -1)


class FrameFeed:
    """Lazy frames of a video with an LRU cache of image features.

    Args:
        get_frame: ``idx -> raw frame`` (HxW or HxWxC numpy array, any dtype).
        num_frames: frame count (None for a stream of unknown length).
        height, width: frame size; frames of another size raise ValueError when read.
        image_size: the model's square input side.
        device: where normalised images and features are computed.
        cache_size: how many frames' features to keep (>= 1).
        image_device: where raw frames are normalised (default ``device``).
        storage_device: where cached features are kept (default ``device``); the CPU with
            ``offload_video_to_cpu``: features are moved to ``device`` when a frame reads them.
    """

    def __init__(self, get_frame: Callable[[int], Any], num_frames: Optional[int], height: int,
                 width: int, image_size: int, device: torch.device, cache_size: int = 2,
                 image_device: Optional[torch.device] = None,
                 storage_device: Optional[torch.device] = None) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._get_frame = get_frame
        self.num_frames = num_frames
        self.height, self.width = int(height), int(width)
        self.image_size = image_size
        self.device = device
        self.image_device = image_device or device
        self.storage_device = torch.device(storage_device or device)
        self.cache_size = cache_size
        self._cache: "OrderedDict[int, FrameFeatures]" = OrderedDict()
        self._pool: Any = None
        self._lock = threading.Lock()
        self._pending: Dict[int, Any] = {}
        self._last: Optional[int] = None
        self.prefetch = True
        """Resize the next frame (in the direction of the last two reads) in a background
        thread while the model works on this one."""
        self.encoded = 0
        """How many times the image encoder ran (cache misses), for tests and benchmarks."""

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError("this frame source has no known length (a stream)")
        return self.num_frames

    def raw(self, idx: int) -> np.ndarray:
        """The raw frame as stored, after a size check."""
        with self._lock:  # sources (a PyAV container, a stream) are not thread-safe
            frame = np.asarray(self._get_frame(idx))
        if frame.ndim < 2 or tuple(frame.shape[:2]) != (self.height, self.width):
            raise ValueError(
                f"frame {idx} has shape {tuple(frame.shape)}, but the video is "
                f"{self.height}x{self.width} (all frames must have the same size)")
        return frame

    def _resized(self, idx: int) -> torch.Tensor:
        return resize_frame(self.raw(idx), self.image_size)

    def image(self, idx: int) -> torch.Tensor:
        """(1, 3, S, S) float32 normalised model input of a frame."""
        fut = self._pending.pop(idx, None)
        resized = fut.result() if fut is not None else self._resized(idx)
        if self.prefetch and self._last is not None and abs(idx - self._last) == 1:
            nxt = idx + (idx - self._last)
            if 0 <= nxt and (self.num_frames is None or nxt < self.num_frames) and nxt not in self._cache:
                self._schedule(nxt)
        self._last = idx
        return finish_normalize(resized, self.device)[None]

    def _schedule(self, idx: int) -> None:
        if idx in self._pending:
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2-frames")
        for k in [k for k in self._pending if abs(k - idx) > 2]:  # direction changed: forget
            self._pending.pop(k).cancel()
        self._pending[idx] = self._pool.submit(self._resized, idx)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """(3, S, S) normalised frame (upstream ``state["images"][idx]``)."""
        return self.image(idx)[0]

    def features(self, idx: int, compute: Callable[[torch.Tensor], FrameFeatures]) -> FrameFeatures:
        """Cached features of a frame; on a miss, ``compute(image)`` fills the cache."""
        hit = self._cache.get(idx)
        if hit is not None:
            self._cache.move_to_end(idx)
            self._last = idx
            return hit.to(self.device)
        feats = compute(self.image(idx))
        self.encoded += 1
        self._cache[idx] = feats.to(self.storage_device)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return feats

    def put(self, idx: int, feats: FrameFeatures) -> None:
        """Insert features computed elsewhere (streaming)."""
        self._cache[idx] = feats.to(self.storage_device)
        self._cache.move_to_end(idx)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def drop(self, idx: Optional[int] = None) -> None:
        """Forget one frame's features (or all)."""
        if idx is None:
            self._cache.clear()
        else:
            self._cache.pop(idx, None)

    def close(self) -> None:
        """Stop the prefetch thread (it also ends with the process)."""
        for f in self._pending.values():
            f.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def cached(self) -> Sequence[int]:
        return tuple(self._cache)

