"""From raw clips to model batches: crop or squash, augment, pick objects, normalise, batch.

Clips of different lengths (videos and 1-frame images) cannot share a batch, so a dataset's
item is already a *batch* from one source: :class:`BatchedClips` (training: random draws,
reproducible from the index) and :class:`EvalClips` (validation: every clip of the held-out
sources cut into fixed tiles, the same on every pass). The DataLoader runs with
``batch_size=None`` and Lightning's distributed sampler shards batch indices across processes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import AugmentConfig, augment_clip
from .geometry import Geometry, View, apply_view, eval_views, squash_clip, train_view
from .sources import RawClip
from .tracking import ClipBatch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PreparedClip", "prepare_clip", "collate_clips",
           "BatchedClips", "EvalClips", "draw_clip"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PreparedClip:
    """images float (T, 3, S, S) normalised; masks bool (T, N, S, S) for N chosen objects."""

    images: torch.Tensor
    masks: torch.Tensor
    name: str = ""

    @property
    def has_absent(self) -> bool:
        """Whether some object is absent from some frame (what trains the object-score head)."""
        return bool((~self.masks.flatten(2).any(-1)).any())


def _check_raw(raw: RawClip) -> Tuple[torch.Tensor, torch.Tensor]:
    frames = torch.from_numpy(np.ascontiguousarray(raw.frames))
    ids = torch.from_numpy(np.ascontiguousarray(raw.masks)).long()
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{raw.name}: frames must be (T, H, W, 3), got {tuple(frames.shape)}")
    if ids.shape != frames.shape[:3]:
        raise ValueError(f"{raw.name}: masks {tuple(ids.shape)} do not match frames "
                         f"{tuple(frames.shape[:3])}")
    return frames, ids


def _pick(present: torch.Tensor, ids: torch.Tensor, max_objects: int, random: bool,
          prefer_absent: bool, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Up to ``max_objects`` of the ``present`` ids: in id order (validation), or at random,
    objects that leave the clip first when ``prefer_absent``."""
    if present.numel() <= max_objects:
        return present
    if not random:
        return present[:max_objects]
    perm = present[torch.randperm(present.numel(), generator=generator)]
    if prefer_absent and ids.shape[0] > 1:
        gone = torch.stack([~(ids[1:] == k).flatten(1).any(-1).all() for k in perm.tolist()])
        perm = torch.cat([perm[gone], perm[~gone]])
    return perm[:max_objects].sort().values


def prepare_clip(raw: RawClip, image_size: int, max_objects: int,
                 augment: Optional[AugmentConfig] = None,
                 generator: Optional[torch.Generator] = None,
                 geometry: Optional[Geometry] = None, view: Optional[View] = None,
                 prefer_absent: bool = False) -> Optional[PreparedClip]:
    """Bring a raw clip to the model input and keep up to ``max_objects`` objects of frame 0.

    Args:
        geometry: crop (default: native scale, a random S×S window) or squash; ignored when
            ``view`` is given.
        view: a fixed window (validation, :func:`~lightning_module.geometry.eval_views`);
            its ``objects`` restrict the objects kept, which are then taken in id order.
        prefer_absent: when there are more objects than ``max_objects``, keep first those
            that are absent from some later frame.

    Returns:
        The clip, or None when no object is visible on frame 0 (the caller skips it). Objects
        are those with pixels on the first frame after augmentation (a clip is prompted there).
    """
    frames, ids = _check_raw(raw)
    geom = geometry or Geometry()
    if view is None and geom.resize == "crop":
        view = train_view(raw.masks[0], image_size, geom, generator)
        fixed = False
    else:
        fixed = view is not None
    if view is None:
        images, ids = squash_clip(frames, ids, image_size)
    else:
        images, ids = apply_view(frames, ids, view, image_size)
    if augment is not None:
        images, ids = augment_clip(images, ids, augment, generator)
    present = torch.unique(ids[0])
    present = present[present > 0]
    if fixed and view is not None and view.objects is not None:
        present = present[torch.tensor([int(k) in view.objects for k in present.tolist()],
                                       dtype=torch.bool)]
    if present.numel() == 0:
        return None
    present = _pick(present, ids, max_objects, not fixed, prefer_absent, generator)
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


def draw_clip(src: Dataset, rng: np.random.Generator) -> RawClip:
    """A random training clip of a source: ``src.sample(k, rng)`` where the source has
    something to draw (a start, a direction), else ``src[k]``."""
    k = int(rng.integers(0, len(src)))  # type: ignore[arg-type]
    sample = getattr(src, "sample", None)
    return sample(k, rng) if sample is not None else src[k]  # type: ignore[index]


class BatchedClips(Dataset):
    """A training dataset whose item ``i`` is a whole :class:`ClipBatch` from one source.

    Sources are picked in proportion to ``weights`` (default: their lengths); the clips of
    batch ``i`` are random draws from that source, from an RNG seeded by ``(seed, i)``, so
    the dataset is deterministic given the index (the sampler shuffles indices).

    Args:
        sources: map-style datasets of :class:`~lightning_module.sources.RawClip`.
        num_batches: length of the dataset (batches per epoch, over all processes).
        batch_size: clips per batch.
        image_size: model input side. max_objects: objects kept per clip.
        augment: augmentation (None: off).
        geometries: one :class:`~lightning_module.geometry.Geometry` per source (default:
            native-scale crops).
        absent_p: probability that a multi-frame clip is redrawn (up to 4 times) until one of
            its objects is absent from some frame, and that such objects are kept first, so the
            object-score head sees objects leave (upstream's video data has them).
        max_retries: clips without any object on frame 0 are redrawn this many times, then
            the batch is built from fewer clips (and an error is raised when none is left).
        first_batches, first_weights: a curriculum: batches ``0 .. first_batches - 1`` pick
            their source with ``first_weights`` instead of ``weights``. Only meaningful when
            the loader reads indices in order (no shuffling; the batches stay random because
            each index seeds its own generator).
    """

    def __init__(self, sources: Sequence[Dataset], num_batches: int, batch_size: int,
                 image_size: int, max_objects: int = 3, augment: Optional[AugmentConfig] = None,
                 weights: Optional[Sequence[float]] = None, seed: int = 0,
                 max_retries: int = 10, first_batches: int = 0,
                 first_weights: Optional[Sequence[float]] = None,
                 geometries: Optional[Sequence[Geometry]] = None, absent_p: float = 0.0) -> None:
        if not sources:
            raise ValueError("no data source given")
        for s in sources:
            if len(s) == 0:  # type: ignore[arg-type]
                raise ValueError(f"data source {type(s).__name__} is empty")
        if batch_size < 1 or num_batches < 1:
            raise ValueError(f"batch_size and num_batches must be >= 1, got {batch_size}, "
                             f"{num_batches}")
        if not 0.0 <= absent_p <= 1.0:
            raise ValueError(f"absent_p must be a probability, got {absent_p}")
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
        self.geometries = list(geometries) if geometries is not None else [Geometry()] * len(sources)
        if len(self.geometries) != len(self.sources):
            raise ValueError("geometries must have one entry per source")
        self.num_batches, self.batch_size = num_batches, batch_size
        self.image_size, self.max_objects = image_size, max_objects
        self.augment, self.seed, self.max_retries = augment, seed, max_retries
        self.absent_p = float(absent_p)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, i: int) -> ClipBatch:
        rng = np.random.default_rng([self.seed, int(i)])
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))
        p = self.first_p if int(i) < self.first_batches else self.p
        j = int(rng.choice(len(self.sources), p=p))
        src, geom = self.sources[j], self.geometries[j]
        clips: List[PreparedClip] = []
        skipped = []
        for _ in range(self.batch_size):
            want_absent = bool(rng.random() < self.absent_p)
            fallback = None
            absent_tries = 4 if want_absent else 0
            for _attempt in range(self.max_retries + 1):
                raw = draw_clip(src, rng)
                c = prepare_clip(raw, self.image_size, self.max_objects, self.augment, gen,
                                 geom, prefer_absent=want_absent)
                if c is None:
                    skipped.append(raw.name)
                    continue
                if c.images.shape[0] > 1 and absent_tries > 0 and not c.has_absent:
                    fallback, absent_tries = c, absent_tries - 1
                    continue
                fallback = c
                break
            if fallback is not None:
                clips.append(fallback)
        if not clips:
            raise ValueError(f"batch {i}: no clip with an object on its first frame after "
                             f"{len(skipped)} tries (e.g. {skipped[:3]})")
        if len(clips) < self.batch_size:
            warnings.warn(f"batch {i} has {len(clips)} clips instead of {self.batch_size}: "
                          "clips without objects on frame 0 skipped", stacklevel=2)
        return collate_clips(clips)


class EvalClips(Dataset):
    """Validation batches: every clip of the sources, each cut into its fixed views, once.

    Item ``k`` of each source (a fixed clip: see :mod:`lightning_module.sources`) is cut into
    the views of :func:`~lightning_module.geometry.eval_views`: S×S tiles at the source's
    scale (``crop``) or the whole frame (``squash``). Every object on a view's first frame
    is scored there, up to ``max_objects`` per view (in id order; objects beyond the cap
    are counted and reported once). Nothing is random, so two passes over unchanged weights
    give the same scores. The views are listed when the dataset is built (that reads each
    held-out clip once); views without any object are left out.

    Args:
        sources, geometries: the held-out sources and their geometry.
        num_batches: at most this many batches (the rest of the views are not used).
        batch_size: views per batch (a batch never mixes sources).
    """

    def __init__(self, sources: Sequence[Dataset], num_batches: int, batch_size: int,
                 image_size: int, max_objects: int = 64,
                 geometries: Optional[Sequence[Geometry]] = None) -> None:
        if not sources:
            raise ValueError("no validation source given")
        if batch_size < 1 or num_batches < 1 or max_objects < 1:
            raise ValueError(f"batch_size, num_batches and max_objects must be >= 1, got "
                             f"{batch_size}, {num_batches}, {max_objects}")
        self.sources = list(sources)
        geoms = list(geometries) if geometries is not None else [Geometry()] * len(sources)
        self.image_size, self.max_objects = image_size, max_objects
        self.batches: List[List[Tuple[int, int, View]]] = []
        self.objects = self.capped = 0
        for j, src in enumerate(self.sources):
            if len(src) == 0:  # type: ignore[arg-type]
                raise ValueError(f"validation source {type(src).__name__} is empty")
            views = []
            for k in range(len(src)):  # type: ignore[arg-type]
                raw = src[k]  # type: ignore[index]
                for v in eval_views(np.asarray(raw.masks[0]), image_size, geoms[j]):
                    n = len(v.objects) if v.objects is not None else int(
                        (np.unique(raw.masks[0]) > 0).sum())
                    if n:
                        views.append((j, k, v))
                        self.objects += min(n, max_objects)
                        self.capped += max(n - max_objects, 0)
                if len(self.batches) + -(-len(views) // batch_size) >= num_batches:
                    break
            self.batches += [views[a:a + batch_size] for a in range(0, len(views), batch_size)]
            if len(self.batches) >= num_batches:
                self.batches = self.batches[:num_batches]
                break
        if not self.batches:
            raise ValueError("no validation clip has an object on its first frame")
        if self.capped:
            warnings.warn(f"validation scores at most {max_objects} objects per view "
                          f"(val_max_objects): {self.capped} object(s) beyond that are not "
                          "scored", stacklevel=2)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> ClipBatch:
        if not 0 <= i < len(self.batches):
            raise IndexError(f"batch {i} outside 0..{len(self.batches) - 1}")
        clips = []
        for j, k, view in self.batches[i]:
            raw = self.sources[j][k]  # type: ignore[index]
            c = prepare_clip(raw, self.image_size, self.max_objects, view=view)
            if c is not None:
                clips.append(c)
        if not clips:
            raise ValueError(f"validation batch {i}: its clips lost their objects on re-reading")
        return collate_clips(clips)
