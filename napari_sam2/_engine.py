"""The computation behind the widget, with no napari or Qt: a model, its predictors and the
embedding cache, driven by :class:`~napari_sam2._prompts.FramePrompt` objects.

* :meth:`SAM2Engine.predict` (one object on one frame: the decoder only once the frame's
  embedding is cached, which is what makes clicks interactive);
* :meth:`SAM2Engine.propagate_sequence` (a generator over one 1D sequence of frames, for
  the thread worker; it yields one :class:`PlaneMasks` per frame);
* :meth:`SAM2Engine.automatic` (segment everything on one frame).

Frames are (H, W, 3) uint8 RGB planes (see :func:`napari_sam2._axes.to_rgb8`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, Iterator, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from ._embedding_cache import EmbeddingCache, install_forward_cache
from ._prompts import FramePrompt
from ._region import RegionMask, upsample_region

__all__ = ["SAM2Engine", "PlaneMasks", "Quality", "DIRECTIONS"]

DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class Quality:
    """Per-frame confidence of one object.

    ``score``: object-score logit (> 0: visible); ``iou``: predicted IoU of the mask;
    ``lost``: the model judges the object absent; ``low``: visible but unsure
    (``iou`` under the low-confidence threshold).
    """

    score: float
    iou: float
    lost: bool
    low: bool

    @property
    def flagged(self) -> bool:
        return self.lost or self.low


@dataclass
class PlaneMasks:
    """One propagated frame: ``index`` in the sequence, a (H, W) bool mask per object id,
    and a :class:`Quality` per object id."""

    index: int
    masks: Dict[int, np.ndarray]
    quality: Dict[int, Quality] = field(default_factory=dict)


def mask_to_logits(mask: np.ndarray, size: int) -> np.ndarray:
    """A binary (H, W) mask as (1, size, size) SAM low-res logits (about +-10)."""
    t = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=True)
    return ((t[0] - 0.5) * 20.0).numpy()


class SAM2Engine:
    """Wraps a SAM 2 model for the plugin.

    Args:
        model: a ``SAM2Model`` (from ``sam2_plugins.build_sam2``).
        model_key: identifies the weights (name + checkpoint) in embedding-cache keys.
        cache: the embedding cache to install on the model (a new memory cache if None).
        low_iou: predicted IoU under which a visible object is flagged "low confidence".
        image_slots: embeddings of this many recently clicked frames kept ready in the
            image predictor (switching back to one costs nothing, not even preprocessing).
    """

    def __init__(self, model: torch.nn.Module, model_key: str = "model",
                 cache: Optional[EmbeddingCache] = None, low_iou: float = 0.5,
                 image_slots: int = 8) -> None:
        from sam2_plugins import SAM2ImagePredictor

        self.model = model
        self.model_key = model_key
        self.cache = cache if cache is not None else EmbeddingCache()
        install_forward_cache(model, self.cache, model_key)
        self.image_predictor = SAM2ImagePredictor(model)
        self.low_iou = float(low_iou)
        self._slots: "OrderedDict[Hashable, Tuple[Any, Any]]" = OrderedDict()
        self._slot_max = int(image_slots)
        self._current: Optional[Hashable] = None
        self._video = None
        self.memory_mode = "sam2"
        """Tracking mode of propagation (:data:`sam2_plugins.predictors.video.modes.MEMORY_MODES`)."""

    def set_memory_mode(self, mode: str) -> None:
        """Choose the tracking mode for the next propagation (bad names raise ValueError
        listing the valid ones)."""
        from sam2_plugins.predictors.video.modes import make_policy

        make_policy(mode)
        if mode != self.memory_mode:
            self.memory_mode = mode
            self._video = None

    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    # -- one frame ----------------------------------------------------------------------
    def set_frame(self, rgb: Union[np.ndarray, Callable[[], np.ndarray]], token: Hashable) -> bool:
        """Make ``rgb`` the image predictor's frame; ``token`` identifies it (layer, frame
        key, channels, contrast). ``rgb`` may be a function returning the frame, called only
        when the frame is not already held. Returns True if the image encoder had to run."""
        p = self.image_predictor
        if token == self._current and p._is_image_set:
            return False
        if token in self._slots:
            p._features, p._orig_hw = self._slots[token]
            p._is_image_set, p._is_batch = True, False
            self._slots.move_to_end(token)
            self._current = token
            return False
        misses = self.cache.misses
        p.set_image(rgb() if callable(rgb) else rgb)
        self._slots[token] = (p._features, p._orig_hw)
        while len(self._slots) > self._slot_max:
            self._slots.popitem(last=False)
        self._current = token
        return self.cache.misses > misses

    def is_ready(self, token: Hashable) -> bool:
        """True when a click on this frame runs the decoder only."""
        return token == self._current or token in self._slots

    def predict(self, prompt: FramePrompt) -> Tuple[np.ndarray, float]:
        """Mask of one object on the current frame (see :meth:`set_frame`) as a full plane.

        Same as :meth:`predict_region` with the mask expanded to (H, W) bool.
        """
        region, iou = self.predict_region(prompt)
        return region.full(), iou

    def predict_region(self, prompt: FramePrompt) -> Tuple[RegionMask, float]:
        """Mask of one object on the current frame (see :meth:`set_frame`).

        One positive click alone asks for three masks and keeps the best scored (the
        ambiguity SAM resolves best that way); more clicks or a box ask for one.
        A mask prompt alone is returned as it is; with clicks it seeds the decoder.

        The decoder runs at low resolution (``image_size / 4``); only the chosen mask is
        upsampled, and only inside its bounding box (:func:`~napari_sam2._region.upsample_region`),
        so the cost does not grow with the image (the result equals the image predictor's
        ``predict`` mask).

        Returns:
            the mask as a :class:`RegionMask` of the (H, W) frame, and its predicted IoU.
        """
        p = self.image_predictor
        if not p._is_image_set:
            raise RuntimeError("no frame set: call set_frame first")
        hw = tuple(int(v) for v in p._orig_hw[-1])
        if prompt.mask is not None and not prompt.has_points_or_box:
            return RegionMask.from_full(np.asarray(prompt.mask, bool)), 1.0
        pts = prompt.points if len(prompt.points) else None
        lbl = prompt.labels if len(prompt.labels) else None
        multi = prompt.box is None and pts is not None and len(pts) == 1 and prompt.mask is None
        low = self.image_size // 4
        mask_in = None if prompt.mask is None else mask_to_logits(prompt.mask, low)
        with torch.inference_mode():
            # prompts are mapped with the frame's true size; the decoder then "upsamples" to
            # the low-res size itself (an exact copy), which leaves the one upsampling that
            # matters (the chosen mask, inside its box) to us
            mask_t, coords, labels, boxes = p._prep_prompts(pts, lbl, prompt.box, mask_in, True)
            orig = p._orig_hw
            p._orig_hw = [(low, low)]
            try:
                logits, ious, _ = p._predict(coords, labels, boxes, mask_t, multi, return_logits=True)
            finally:
                p._orig_hw = orig
            best = int(torch.argmax(ious[0]))
            region = upsample_region(logits[0, best], hw, p.mask_threshold)
            return region, float(ious[0, best])

    # -- sequences ----------------------------------------------------------------------
    def _video_predictor(self):
        if self._video is None:
            from sam2_plugins import SAM2VideoPredictor

            # upstream's video builder default: binarise prompted masks, fill small holes
            self._video = SAM2VideoPredictor(self.model, apply_postprocessing=True, memory_mode=self.memory_mode)
        return self._video

    def propagate_sequence(
        self,
        frames: Any,
        prompts: Mapping[int, Mapping[int, FramePrompt]],
        direction: str = "both",
        start: Optional[int] = None,
    ) -> Iterator[PlaneMasks]:
        """Track every prompted object through one sequence of frames.

        Args:
            frames: (N, H, W, 3) uint8 array (or a sequence of such frames).
            prompts: sequence index -> object id -> prompt (any frames, any objects).
            direction: "forward" (start -> end), "backward" (start -> 0) or "both".
            start: first frame of the pass(es); default: the first prompted frame.
                Only frames from ``start`` on (forward) or up to it (backward) are yielded,
                so a correction click re-propagates from its frame only.

        Yields:
            One :class:`PlaneMasks` per frame, in processing order.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if not prompts:
            raise ValueError("no prompts on this sequence: click on an object first")
        vp = self._video_predictor()
        with torch.inference_mode():
            state = vp.init_state(frames)
            for idx in sorted(prompts):
                for oid, fp in prompts[idx].items():
                    if fp.mask is not None:
                        vp.add_new_mask(state, frame_idx=idx, obj_id=oid, mask=fp.mask)
                    if fp.has_points_or_box:
                        vp.add_new_points_or_box(
                            state, frame_idx=idx, obj_id=oid,
                            points=fp.points if len(fp.points) else None,
                            labels=fp.labels if len(fp.labels) else None,
                            box=fp.box)
            first = min(prompts) if start is None else int(start)
            tracker = vp.quality(state)
            for fidx, obj_ids, logits in vp.propagate_in_video(
                    state, start_frame_idx=first, direction=direction):
                fg = (logits[:, 0] > 0.0).cpu().numpy()  # threshold on the device: 4x less to copy
                masks = {int(o): fg[i] for i, o in enumerate(obj_ids)}
                quality = {int(o): self._quality(tracker.get(o, fidx), masks[int(o)]) for o in obj_ids}
                yield PlaneMasks(int(fidx), masks, quality)

    def _quality(self, q: Any, mask: np.ndarray) -> Quality:
        """Our flags from the core's per-frame record (``sam2_plugins.predictors.video.quality``)."""
        if q is None:  # no record: judge from the mask alone
            return Quality(10.0 if mask.any() else -10.0, float("nan"), not mask.any(), False)
        lost = not q.visible or not mask.any()
        low = (not lost) and (bool(q.low_confidence) or (q.iou == q.iou and q.iou < self.low_iou))
        return Quality(float(q.score), float(q.iou), lost, low)

    # -- automatic ----------------------------------------------------------------------
    def automatic_records(self, rgb: np.ndarray, **params: Any) -> list:
        """The automatic mask generator's records on one (H, W, 3) uint8 frame
        (``segmentation`` bool masks, ``predicted_iou``, ``stability_score``, ...)."""
        from sam2_plugins import SAM2AutomaticMaskGenerator

        # the generator upsamples 3 masks per point to the frame's size in float: bound a
        # batch to ~1 GB (a 4096² frame takes 5 points at a time, a 1024² one the usual 64)
        h, w = rgb.shape[:2]
        params.setdefault("points_per_batch", int(max(1, min(64, 2**30 // (12 * h * w)))))
        gen = SAM2AutomaticMaskGenerator(self.model, **params)
        with torch.inference_mode():
            return gen.generate(rgb)

    def automatic(self, rgb: np.ndarray, **params: Any) -> np.ndarray:
        """Segment everything on one frame; returns (H, W) int32 labels (largest first, so
        small masks stay visible on top)."""
        from sam2_plugins import SAM2AutomaticMaskGenerator

        gen = SAM2AutomaticMaskGenerator(self.model, **params)
        with torch.inference_mode():
            anns = gen.generate(rgb)
        out = np.zeros(rgb.shape[:2], np.int32)
        for i, ann in enumerate(sorted(anns, key=lambda a: -int(a["area"])), start=1):
            out[np.asarray(ann["segmentation"], bool)] = i
        return out
