"""From raw clips to model batches: resize, augment, pick objects, normalise, batch.

Clips of different lengths (videos and 1-frame images) cannot share a batch, so the training
dataset's item is already a *batch* from one source (:class:`BatchedClips`); the DataLoader
runs with ``batch_size=None`` and Lightning's distributed sampler shards batch indices across
processes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import AugmentConfig, augment_clip, resize_clip
from .sources import RawClip
from .tracking import ClipBatch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PreparedClip", "prepare_clip", "collate_clips",
           "BatchedClips"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PreparedClip:
    """images float (T, 3, S, S) normalised; masks bool (T, N, S, S) for N chosen objects."""

    images: torch.Tensor
    masks: torch.Tensor
    name: str = ""


def prepare_clip(raw: RawClip, image_size: int, max_objects: int,
                 augment: Optional[AugmentConfig] = None,
                 generator: Optional[torch.Generator] = None) -> Optional[PreparedClip]:
    """Resize (and augment) a raw clip and keep up to ``max_objects`` objects of frame 0.

    Objects are those with pixels on the first frame after augmentation (a clip is prompted
    there), chosen at random when there are more. Returns None when no object is visible
    on frame 0 (the caller skips the clip).
    """
    frames = torch.from_numpy(np.ascontiguousarray(raw.frames))
    ids = torch.from_numpy(np.ascontiguousarray(raw.masks)).long()
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{raw.name}: frames must be (T, H, W, 3), got {tuple(frames.shape)}")
    if ids.shape != frames.shape[:3]:
        raise ValueError(f"{raw.name}: masks {tuple(ids.shape)} do not match frames "
                         f"{tuple(frames.shape[:3])}")
    images, ids = resize_clip(frames, ids, image_size)
    if augment is not None:
        images, ids = augment_clip(images, ids, augment, generator)
    present = torch.unique(ids[0])
    present = present[present > 0]
    if present.numel() == 0:
        return None
    if present.numel() > max_objects:
        perm = torch.randperm(present.numel(), generator=generator)[:max_objects]
        present = present[perm.sort().values]
    masks = ids[:, None] == present[None, :, None, None]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return PreparedClip((images - mean) / std, masks, raw.name)


def collate_clips(clips: Sequence[PreparedClip]) -> ClipBatch:
    """Stack clips of equal length; objects of all clips become the batch rows."""
    if not clips:
        raise ValueError("cannot collate an empty list of clips")
    T = clips[0].images.shape[0]
    if any(c.images.shape[0] != T for c in clips):
        raise ValueError(f"clips in a batch must have the same length, got "
                         f"{[c.images.shape[0] for c in clips]}")
    images = torch.stack([c.images for c in clips], 1)
    masks = torch.cat([c.masks for c in clips], 1)
    owner = torch.cat([torch.full((c.masks.shape[1],), i, dtype=torch.long)
                       for i, c in enumerate(clips)])
    return ClipBatch(images, masks, owner, [c.name for c in clips])


class BatchedClips(Dataset):
    """A dataset whose item ``i`` is a whole :class:`ClipBatch` from one source.

    Sources are picked in proportion to ``weights`` (default: their lengths); the clips of
    batch ``i`` are random items of that source, drawn from an RNG seeded by ``(seed, i)`` so
    that the dataset is deterministic given the index (the sampler shuffles indices).

    Args:
        sources: map-style datasets of :class:`~lightning_module.sources.RawClip`.
        num_batches: length of the dataset (batches per epoch, over all processes).
        batch_size: clips per batch.
        image_size: model input side. max_objects: objects kept per clip.
        augment: augmentation (None for validation).
        max_retries: clips without any object on frame 0 are redrawn this many times, then
            the batch is built from fewer clips (and an error is raised when none is left).
        first_batches, first_weights: a curriculum: batches ``0 .. first_batches - 1`` pick
            their source with ``first_weights`` instead of ``weights``. Only meaningful when
            the loader reads indices in order (no shuffling; the batches stay random because
            each index seeds its own generator).
        sequential: evaluation order instead: batch ``i`` holds clips ``i * batch_size`` ..
            of the sources laid end to end, each clip once, no random draw (so a validation
            score covers every held-out clip exactly once and does not depend on ``seed``);
            the length is ``min(num_batches, ceil(clips / batch_size))``. Clips without an
            object on frame 0 are left out of their batch.
    """

    def __init__(self, sources: Sequence[Dataset], num_batches: int, batch_size: int,
                 image_size: int, max_objects: int = 3, augment: Optional[AugmentConfig] = None,
                 weights: Optional[Sequence[float]] = None, seed: int = 0,
                 max_retries: int = 10, first_batches: int = 0,
                 first_weights: Optional[Sequence[float]] = None,
                 sequential: bool = False) -> None:
        if not sources:
            raise ValueError("no data source given")
        for s in sources:
            if len(s) == 0:  # type: ignore[arg-type]
                raise ValueError(f"data source {type(s).__name__} is empty")
        if batch_size < 1 or num_batches < 1:
            raise ValueError(f"batch_size and num_batches must be >= 1, got {batch_size}, "
                             f"{num_batches}")
        self.sources = list(sources)
        w = np.asarray(weights if weights is not None else [len(s) for s in sources], float)  # type: ignore[arg-type]
        if w.shape != (len(self.sources),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be one non-negative number per source, got {weights}")
        self.p = w / w.sum()
        self.first_batches = int(first_batches)
        self.first_p = self.p
        if self.first_batches > 0:
            fw = np.asarray(first_weights if first_weights is not None else w, float)
            if fw.shape != (len(self.sources),) or (fw < 0).any() or fw.sum() <= 0:
                raise ValueError("first_weights must be one non-negative number per source, "
                                 f"got {first_weights}")
            self.first_p = fw / fw.sum()
        self.num_batches, self.batch_size = num_batches, batch_size
        self.image_size, self.max_objects = image_size, max_objects
        self.augment, self.seed, self.max_retries = augment, seed, max_retries
        self.sequential = bool(sequential)
        if self.sequential:
            self.total_clips = int(sum(len(s) for s in self.sources))  # type: ignore[arg-type]
            self.num_batches = min(num_batches, -(-self.total_clips // batch_size))

    def __len__(self) -> int:
        return self.num_batches

    def _sequential_batch(self, i: int) -> ClipBatch:
        if not 0 <= i < self.num_batches:
            raise IndexError(f"batch {i} outside 0..{self.num_batches - 1}")
        gen = torch.Generator().manual_seed(self.seed)  # unused without augmentation
        clips: List[PreparedClip] = []
        skipped = []
        for j in range(i * self.batch_size, min((i + 1) * self.batch_size, self.total_clips)):
            k = j
            for src in self.sources:
                if k < len(src):  # type: ignore[arg-type]
                    break
                k -= len(src)  # type: ignore[arg-type]
            raw = src[k]  # type: ignore[index]
            c = prepare_clip(raw, self.image_size, self.max_objects, self.augment, gen)
            if c is None:
                skipped.append(raw.name)
            else:
                clips.append(c)
        if not clips:
            raise ValueError(f"batch {i}: none of its clips has an object on its first frame "
                             f"({skipped[:3]})")
        return collate_clips(clips)

    def __getitem__(self, i: int) -> ClipBatch:
        if self.sequential:
            return self._sequential_batch(int(i))
        rng = np.random.default_rng([self.seed, int(i)])
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))
        p = self.first_p if int(i) < self.first_batches else self.p
        src = self.sources[int(rng.choice(len(self.sources), p=p))]
        clips: List[PreparedClip] = []
        skipped = []
        for _ in range(self.batch_size):
            for _attempt in range(self.max_retries + 1):
                raw = src[int(rng.integers(0, len(src)))]  # type: ignore[arg-type]
                c = prepare_clip(raw, self.image_size, self.max_objects, self.augment, gen)
                if c is not None:
                    clips.append(c)
                    break
                skipped.append(raw.name)
        if not clips:
            raise ValueError(f"batch {i}: no clip with an object on its first frame after "
                             f"{len(skipped)} tries (e.g. {skipped[:3]})")
        if len(clips) < self.batch_size:
            warnings.warn(f"batch {i} has {len(clips)} clips instead of {self.batch_size}: "
                          "clips without objects on frame 0 skipped", stacklevel=2)
        return collate_clips(clips)
