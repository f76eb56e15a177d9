"""The bounded memory bank, and lazy frames with a small LRU cache of image features.

What a later frame can read of an object's past (upstream ``SAM2Base`` semantics):

* every conditioning (prompted) frame: its spatial memory and, if not in the future, its pointer;
* the ``num_maskmem - 1`` frames just before it in the tracking direction (spatial memories,
  every ``memory_temporal_stride_for_eval``-th frame plus the last one);
* the ``min(num_frames, max_obj_ptrs_in_encoder) - 1`` frames just before it (pointers only).

:class:`MemoryBank` stores exactly that and can drop the rest after each frame (``trim``), so
the memory of a long video stays bounded. Frames themselves are decoded on demand by
:class:`FrameFeed`, which keeps only the image features of the last few frames.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from sam2_plugins.predictors.state import FrameOutput

__all__ = ["MemoryBank", "FrameFeatures", "FrameFeed", "normalize_frame", "resize_frame", "finish_normalize",
           "IMG_MEAN", "IMG_STD"]

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------
# Memory bank
# ------------------------------------------------------------------------------------------
def spatial_frame_indices(frame_idx: int, reverse: bool, num_maskmem: int,
                          stride: int) -> List[Tuple[int, int]]:
    """Non-conditioning frames a frame reads as spatial memory, as ``(t_pos, frame)``.

    ``t_pos`` runs 1..num_maskmem-1; the frame right before (after, in reverse) has the
    largest ``t_pos``. With stride r > 1 the frames are every r-th frame plus the last one.
    """
    out = []
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos
        if t_rel == 1:
            prev = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        out.append((t_pos, prev))
    return out


def select_closest_cond_frames(frame_idx: int, cond: Dict[int, FrameOutput],
                               max_cond: int) -> Tuple[Dict[int, FrameOutput], Dict[int, FrameOutput]]:
    """Split conditioning outputs into those attended to and the rest (upstream rule).

    With ``max_cond == -1`` (the default) all are selected. Otherwise the closest one before,
    the closest one at-or-after, then the temporally closest others.
    """
    if max_cond == -1 or len(cond) <= max_cond:
        return cond, {}
    if max_cond < 2:
        raise ValueError(f"max_cond_frames_in_attn must be -1 or >= 2, got {max_cond}")
    selected: Dict[int, FrameOutput] = {}
    before = max((t for t in cond if t < frame_idx), default=None)
    if before is not None:
        selected[before] = cond[before]
    after = min((t for t in cond if t >= frame_idx), default=None)
    if after is not None:
        selected[after] = cond[after]
    remain = sorted((t for t in cond if t not in selected), key=lambda t: abs(t - frame_idx))
    for t in remain[: max_cond - len(selected)]:
        selected[t] = cond[t]
    return selected, {t: v for t, v in cond.items() if t not in selected}


class MemoryBank:
    """One object's stored outputs: conditioning frames and tracked (non-conditioning) frames.

    Dict insertion order is kept as upstream's (it fixes the order of memory tokens).
    """

    def __init__(self) -> None:
        self.cond: Dict[int, FrameOutput] = {}
        self.non_cond: Dict[int, FrameOutput] = {}

    def __len__(self) -> int:
        return len(self.cond) + len(self.non_cond)

    def get(self, frame_idx: int) -> Optional[FrameOutput]:
        """The stored output on a frame (conditioning first), or None."""
        out = self.cond.get(frame_idx)
        return out if out is not None else self.non_cond.get(frame_idx)

    def clear(self) -> None:
        self.cond.clear()
        self.non_cond.clear()

    def nbytes(self) -> int:
        """Bytes held by the stored tensors (masks, spatial memories, pointers)."""
        total = 0
        for out in list(self.cond.values()) + list(self.non_cond.values()):
            for t in (out.pred_masks, out.maskmem_features, out.obj_ptr):
                if t is not None:
                    total += t.numel() * t.element_size()
        return total

    # ---- what a frame reads --------------------------------------------------------------
    def spatial_entries(self, frame_idx: int, reverse: bool, num_maskmem: int, stride: int,
                        max_cond: int) -> List[Tuple[int, FrameOutput]]:
        """``(t_pos, output)`` of every spatial memory the frame attends to, in token order."""
        selected, unselected = select_closest_cond_frames(frame_idx, self.cond, max_cond)
        entries = [(0, out) for out in selected.values()]
        for t_pos, prev in spatial_frame_indices(frame_idx, reverse, num_maskmem, stride):
            out = self.non_cond.get(prev)
            if out is None:
                out = unselected.get(prev)
            if out is not None:
                entries.append((t_pos, out))
        return entries

    def spatial_frame_of(self, frame_idx: int, reverse: bool, num_maskmem: int, stride: int,
                         max_cond: int) -> List[int]:
        """Frame indices of :meth:`spatial_entries` (same order), for recomputing memories."""
        selected, unselected = select_closest_cond_frames(frame_idx, self.cond, max_cond)
        idx = list(selected)
        for _, prev in spatial_frame_indices(frame_idx, reverse, num_maskmem, stride):
            if prev in self.non_cond or prev in unselected:
                idx.append(prev)
        return idx

    def pointer_entries(self, frame_idx: int, reverse: bool, num_frames: Optional[int],
                        max_ptrs: int, only_past: bool, signed: bool,
                        max_cond: int) -> List[Tuple[int, torch.Tensor]]:
        """``(temporal position, obj_ptr)`` of every object pointer the frame attends to.

        ``num_frames`` None (a stream of unknown length) counts as long: the pointer window is
        ``max_ptrs``.
        """
        selected, unselected = select_closest_cond_frames(frame_idx, self.cond, max_cond)
        max_ptr = max_ptrs if num_frames is None else min(num_frames, max_ptrs)
        sign = -1 if reverse else 1
        if only_past:
            ptr_cond = {t: o for t, o in selected.items()
                        if (t >= frame_idx if reverse else t <= frame_idx)}
        else:
            ptr_cond = selected
        entries = [((frame_idx - t) * sign if signed else abs(frame_idx - t), o.obj_ptr)
                   for t, o in ptr_cond.items()]
        for t_diff in range(1, max_ptr):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or (num_frames is not None and t >= num_frames):
                break
            out = self.non_cond.get(t, unselected.get(t))
            if out is not None:
                entries.append((t_diff, out.obj_ptr))
        return entries

    # ---- bounding --------------------------------------------------------------------------
    def trim(self, frame_idx: int, reverse: bool, num_maskmem: int, stride: int,
             max_ptr: int, keep_outputs: bool) -> int:
        """Drop what no frame after ``frame_idx`` (in the tracking direction) can read.

        Spatial memories of tracked frames behind the memory window are dropped (marked
        ``evicted``: they can be recomputed from the kept mask if a later pass needs them).
        With ``keep_outputs=False`` (streaming) whole entries behind both the memory and the
        pointer windows are deleted too. Conditioning frames are always kept.

        Returns:
            The number of spatial memories dropped.
        """
        nxt = frame_idx - 1 if reverse else frame_idx + 1
        spatial = [f for _, f in spatial_frame_indices(nxt, reverse, num_maskmem, stride)]
        if reverse:
            mem_bound = max(spatial, default=nxt)
            ptr_bound = nxt + max_ptr - 1
            behind_mem = lambda t: t > mem_bound  # noqa: E731
            behind_ptr = lambda t: t > ptr_bound  # noqa: E731
        else:
            mem_bound = min(spatial, default=nxt)
            ptr_bound = nxt - (max_ptr - 1)
            behind_mem = lambda t: t < mem_bound  # noqa: E731
            behind_ptr = lambda t: t < ptr_bound  # noqa: E731
        dropped = 0
        for t in list(self.non_cond):
            out = self.non_cond[t]
            if not behind_mem(t):
                continue
            if not keep_outputs and behind_ptr(t):
                del self.non_cond[t]
                dropped += int(out.maskmem_features is not None)
                continue
            if out.maskmem_features is not None:
                out.maskmem_features = None
                out.evicted = True
                dropped += 1
        return dropped


# ------------------------------------------------------------------------------------------
# Frames and features
# ------------------------------------------------------------------------------------------
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
    chans = [np.array(Image.fromarray(np.ascontiguousarray(rgb[..., c], dtype=np.float32),
                                      mode="F").resize((image_size, image_size), Image.BICUBIC))
             for c in range(3)]
    return torch.from_numpy(np.stack(chans, 0)).float()


_LUT_CACHE: Dict[torch.device, torch.Tensor] = {}


def _uint8_lut(device: torch.device) -> torch.Tensor:
    """(3, 256) float32: normalised value of each uint8 level per channel, computed with
    upstream's operations (float64 /255, cast to float32, then float32 - mean, / std)."""
    lut = _LUT_CACHE.get(device)
    if lut is None:
        levels = torch.from_numpy(np.arange(256) / 255.0).float()
        mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None]
        std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None]
        lut = ((levels[None].repeat(3, 1) - mean) / std).to(device)
        _LUT_CACHE[device] = lut
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
    float RGB in [0, 1] by :func:`sam2_plugins.predictors.preprocess.to_rgb_float` (per-frame
    percentile stretch for 16-bit data, see there) and resized per channel with PIL's bicubic
    filter on float32 ("F" mode), so both paths use the same filter.
    """
    return finish_normalize(resize_frame(frame, image_size))


def _to_rgb_float(arr: np.ndarray) -> np.ndarray:
    """Non-uint8 frame -> (H, W, 3) float32 RGB in [0, 1] (the image predictor's rules)."""
    from sam2_plugins.predictors.preprocess import to_rgb_float

    return np.asarray(to_rgb_float(arr), dtype=np.float32)


@dataclass
class FrameFeatures:
    """Image features of one frame, flattened as the model's memory path wants them.

    Attributes:
        vision_feats: per level (finest first) (HW, 1, C) tensors; the last is the 64²
            (``feat_size``²) map, the others feed the decoder's high-resolution path.
        vision_pos: position encoding of the last level, (HW, 1, C).
        feat_sizes: (H, W) per level.
    """

    vision_feats: List[torch.Tensor]
    vision_pos: torch.Tensor
    feat_sizes: List[Tuple[int, int]]

    def expand(self, batch: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Features and position broadcast to ``batch`` objects (views, no copy)."""
        feats = [f.expand(-1, batch, -1) for f in self.vision_feats]
        return feats, self.vision_pos.expand(-1, batch, -1)


class FrameFeed:
    """Lazy frames of a video with an LRU cache of image features.

    Args:
        get_frame: ``idx -> raw frame`` (HxW or HxWxC numpy array, any dtype).
        num_frames: frame count (None for a stream of unknown length).
        height, width: frame size; frames of another size raise ValueError when read.
        image_size: the model's square input side.
        device: where normalised images and features live.
        cache_size: how many frames' features to keep (>= 1).
    """

    def __init__(self, get_frame: Callable[[int], Any], num_frames: Optional[int], height: int,
                 width: int, image_size: int, device: torch.device, cache_size: int = 2,
                 image_device: Optional[torch.device] = None) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._get_frame = get_frame
        self.num_frames = num_frames
        self.height, self.width = int(height), int(width)
        self.image_size = image_size
        self.device = device
        self.image_device = image_device or device
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
            return hit
        feats = compute(self.image(idx))
        self.encoded += 1
        self._cache[idx] = feats
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return feats

    def put(self, idx: int, feats: FrameFeatures) -> None:
        """Insert features computed elsewhere (streaming)."""
        self._cache[idx] = feats
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
