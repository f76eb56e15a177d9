"""Microscopy data as biologists have it: 2D images with instance masks, and 3D / time-lapse stacks.

Two sources (YAML ``kind``):

``image_folder``  2D images (TIFF, PNG, JPEG, npy; grey, RGB, 8/16-bit, float) with instance
                  label masks (0 background, 1..K objects), paired by name; each image is a
                  1-frame clip.
``stack``         3D (Z) or time-lapse (T) stacks (TIFF or npy, shape (N, H, W) or
                  (N, H, W, C<=4)) with label stacks of the same (N, H, W); a clip is
                  ``num_frames`` consecutive planes, so SAM 2's memory learns to follow
                  objects through Z or T, as the napari plugin uses it.

Pairing is strict: unpaired files are listed and are an error unless ``allow_unpaired``
(then a warning lists them); the same folder for images and masks is refused unless
``mask_suffix`` tells masks apart; a file whose shape is a stack is refused by
``image_folder`` with a message saying how it would be read.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .readers import (
    array_kind,
    describe_unpaired,
    labels_to_ids,
    pair_files,
    peek_shape,
    read_array,
    stack_to_rgb_uint8,
    to_rgb_uint8,
)
from .sources import RawClip

__all__ = ["ImageFolderSource", "StackSource"]

PathLike = Union[str, Path]


def _pairs(images: PathLike, masks: PathLike, mask_suffix: str, allow_unpaired: bool,
           kind: str) -> List[Tuple[Path, Path]]:
    pairs, unpaired = pair_files(images, masks, mask_suffix, allow_unpaired)
    if unpaired["images"] or unpaired["masks"]:
        warnings.warn(f"{kind}: " + describe_unpaired(unpaired, len(pairs), Path(images),
                                                      Path(masks))
                      + " Training on the pairs only (allow_unpaired: true).", stacklevel=3)
    return pairs


class ImageFolderSource:
    """2D images with instance-label masks, paired by name (1-frame clips).

    Layout: ``images/<x>.<ext>`` and ``masks/<x><mask_suffix>.<ext>`` (extensions may differ,
    e.g. ``x.png`` with ``x.tif``). ``images`` and ``masks`` may also be two single files.

    Args:
        images, masks: folders (or files).
        mask_suffix: what mask names add to the image name (``"_masks"`` for cellpose-style
            ``x_masks.tif``); with a suffix, images and masks may share one folder.
        allow_unpaired: train on the pairs and only warn about files without a partner.
        cache_mb: keep decoded images in memory up to this many MB (per process): training
            draws the same few images again and again, and decoding a 16-bit TIFF and its
            percentiles costs more than a crop. 0 turns it off.

    Raises:
        ValueError: unpaired files (listed), the same folder twice, an image that is a stack
            (shape named, with ``kind: stack`` suggested), and (when read) a mask whose size
            differs from its image's.
    """

    def __init__(self, images: PathLike, masks: PathLike, mask_suffix: str = "",
                 allow_unpaired: bool = False, cache_mb: float = 1024.0) -> None:
        self.items = _pairs(images, masks, mask_suffix, allow_unpaired, "image_folder")
        self.cache_bytes = int(cache_mb * 2 ** 20)
        self._cache: Dict[int, RawClip] = {}
        self._cached = 0
        for ip, mp in self.items:
            for path, what in ((ip, "image"), (mp, "mask")):
                shape = peek_shape(path)
                if array_kind(shape, str(path)) == "stack":
                    raise ValueError(
                        f"{what} {path} has shape {shape}: its last axis has more than 4 values, "
                        f"so it is a stack of {shape[0]} planes of {shape[1]}x{shape[2]}, not one "
                        f"2D image with {shape[-1]} channels. Train on it as clips along Z or T "
                        "with {kind: stack, images: ..., masks: ...}, or save its planes as "
                        "separate 2D images.")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> RawClip:
        hit = self._cache.get(i)
        if hit is not None:
            return hit
        ip, mp = self.items[i]
        img = to_rgb_uint8(read_array(ip), str(ip))
        ids = labels_to_ids(read_array(mp), str(mp))
        if ids.shape != img.shape[:2]:
            raise ValueError(f"mask {mp} is {ids.shape[0]}x{ids.shape[1]} but image {ip} is "
                             f"{img.shape[0]}x{img.shape[1]}")
        clip = RawClip(img[None], ids[None], ip.stem)
        size = img.nbytes + ids.nbytes
        if self._cached + size <= self.cache_bytes:  # callers never write into a RawClip
            self._cache[i] = clip
            self._cached += size
        return clip

    def sample(self, i: int, rng: np.random.Generator) -> RawClip:
        """A training draw of item ``i`` (an image has nothing random to draw)."""
        return self[i]


class StackSource:
    """3D or time-lapse stacks with instance-label stacks: clips of consecutive planes.

    Item ``i`` is a fixed window of ``num_frames`` planes (``stride`` apart) of one stack; the
    windows tile each stack from its first plane (the last one aligned to its end), so
    validation covers every plane. :meth:`sample` draws a random window of the same stack
    and, with probability ``reverse_p``, runs it backwards (Z has no arrow of time: objects
    are then followed from the top and from the bottom).

    Args:
        images, masks: folders of stacks paired by name (or two single files).
        num_frames: planes per clip. stride: step between them.
        axis: ``"z"`` (a volume) or ``"t"`` (a time-lapse): only sets the ``reverse_p``
            default (0.5 for z, 0 for t) and messages.
        mask_suffix, allow_unpaired: as :class:`ImageFolderSource`.

    Raises:
        ValueError: unpaired files, a 2D image given as a stack, label stacks whose shape
            differs from the image stack's, and no stack with at least ``num_frames`` planes.
    """

    def __init__(self, images: PathLike, masks: PathLike, num_frames: int = 8, stride: int = 1,
                 axis: str = "z", mask_suffix: str = "", allow_unpaired: bool = False,
                 reverse_p: Optional[float] = None) -> None:
        if axis not in ("z", "t"):
            raise ValueError(f"axis must be 'z' (a volume) or 't' (a time-lapse), got {axis!r}")
        if num_frames < 1 or stride < 1:
            raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
        self.num_frames, self.stride, self.axis = int(num_frames), int(stride), axis
        self.reverse_p = (0.5 if axis == "z" else 0.0) if reverse_p is None else float(reverse_p)
        span = (self.num_frames - 1) * self.stride + 1
        self.stacks: List[Tuple[Path, Path, int]] = []
        self.windows: List[Tuple[int, int]] = []  # (stack index, first plane)
        short = []
        for ip, mp in _pairs(images, masks, mask_suffix, allow_unpaired, "stack"):
            ishape, mshape = peek_shape(ip), peek_shape(mp)
            if array_kind(ishape, str(ip)) != "stack":
                raise ValueError(f"{ip} has shape {ishape}: that is one 2D image, not a stack of "
                                 "planes; use kind: image_folder for 2D images")
            if tuple(mshape) != tuple(ishape[:3]):
                raise ValueError(f"label stack {mp} has shape {mshape} but image stack {ip} has "
                                 f"{ishape} (expected labels of shape {tuple(ishape[:3])})")
            n = int(ishape[0])
            if n < span:
                short.append(f"{ip.name} ({n} planes)")
                continue
            k = len(self.stacks)
            self.stacks.append((ip, mp, n))
            starts = list(range(0, n - span + 1, span))
            if starts[-1] != n - span:
                starts.append(n - span)
            self.windows += [(k, s) for s in starts]
        if short:
            warnings.warn(f"stack: {len(short)} stack(s) shorter than {self.num_frames} planes "
                          f"(stride {self.stride}) skipped: {', '.join(short[:5])}", stacklevel=2)
        if not self.stacks:
            raise ValueError(f"no stack in {images} has {span} planes for clips of "
                             f"{self.num_frames} frames (stride {self.stride})")
        self._cache: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.windows)

    def _arrays(self, k: int) -> Tuple[np.ndarray, np.ndarray]:
        # one stack kept per process: consecutive draws often hit the same stack
        if k not in self._cache:
            ip, mp, _ = self.stacks[k]
            self._cache = {k: (read_array(ip), labels_to_ids(read_array(mp), str(mp)))}
        return self._cache[k]

    def _clip(self, k: int, start: int, reverse: bool) -> RawClip:
        img, ids = self._arrays(k)
        sel = slice(start, start + (self.num_frames - 1) * self.stride + 1, self.stride)
        frames, masks = stack_to_rgb_uint8(img[sel], str(self.stacks[k][0])), ids[sel]
        reverse = reverse and self.num_frames > 1
        if reverse:  # copies: torch cannot take arrays with negative strides
            frames, masks = frames[::-1].copy(), masks[::-1].copy()
        name = f"{self.stacks[k][0].stem}@{self.axis}{start}{'r' if reverse else ''}"
        return RawClip(np.ascontiguousarray(frames), np.ascontiguousarray(masks), name)

    def __getitem__(self, i: int) -> RawClip:
        k, start = self.windows[i]
        return self._clip(k, start, False)

    def sample(self, i: int, rng: np.random.Generator) -> RawClip:
        """A random window of the stack of item ``i``, reversed with probability ``reverse_p``."""
        k, _ = self.windows[i]
        n = self.stacks[k][2]
        start = int(rng.integers(0, n - (self.num_frames - 1) * self.stride))
        return self._clip(k, start, bool(rng.random() < self.reverse_p))
