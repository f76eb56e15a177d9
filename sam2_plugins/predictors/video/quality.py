"""Per-frame quality signals of tracked objects, and where a correction click would help most.

For every object and frame the tracker records:

* ``score``: the object-score logit (> 0: visible; about +6..+8 on a confidently tracked
  object with trained weights, negative when occluded or lost);
* ``iou``: the decoder's predicted IoU of the chosen mask (1.0 for a mask prompt);
* ``area``: foreground pixels of the low-res mask;
* flags, relative to the previous frame of the same pass:
  ``lost`` (visible -> not visible, or visible before a shot cut and not confidently found
  after it), ``reappeared`` (not visible -> visible after being lost, or re-found after a cut),
  ``low_confidence`` (visible but predicted IoU below ``iou_threshold`` or the score within
  ``score_margin`` of 0);
* with a tracking mode's shot-cut detection (``shot_cuts``, see
  :mod:`sam2_plugins.predictors.video.modes`): ``cut`` (a shot cut was detected on this frame)
  and ``refound`` (the object was confidently found again after a cut; until then its frames
  stay out of its memory).

:func:`suggest_correction_frames` ranks frames by how much a click there is likely to help.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["FrameQuality", "QualityTracker", "suggest_correction_frames"]


@dataclass
class _Prompted:
    """What a deferred record keeps of an output (not its tensors)."""

    mask_from_points: bool


@dataclass
class FrameQuality:
    """Quality of one object on one frame."""

    obj_id: Any
    frame_idx: int
    score: float
    iou: float
    area: int
    visible: bool
    lost: bool = False
    reappeared: bool = False
    low_confidence: bool = False
    prompted: bool = False
    reverse: bool = False
    cut: bool = False
    refound: bool = False

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


class QualityTracker:
    """Collects :class:`FrameQuality` records as frames are tracked.

    Args:
        iou_threshold: predicted IoU under which a visible object is "low confidence".
        score_margin: object-score logits in ``(0, score_margin]`` are "low confidence" too.
        window: if set, only records of the last ``window`` frames are kept (streams).
    """

    def __init__(self, iou_threshold: float = 0.5, score_margin: float = 1.0,
                 window: Optional[int] = None) -> None:
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.iou_threshold = float(iou_threshold)
        self.score_margin = float(score_margin)
        self.window = None if window is None else int(window)
        self._records: Dict[Any, Dict[int, FrameQuality]] = {}
        self._was_lost: Dict[Any, bool] = {}
        # Records whose values are still being copied from the GPU (see record_deferred).
        self._pending: Deque[Tuple[Any, Any, List[Tuple[Any, Any]], int, bool]] = deque()
        self._flushing = False

    @property
    def records(self) -> Dict[Any, Dict[int, FrameQuality]]:
        """obj_id -> frame -> :class:`FrameQuality` (pending GPU records are completed first)."""
        if self._pending and not self._flushing:
            self.flush()
        return self._records

    def flush(self) -> None:
        """Complete the records whose values were copied asynchronously (waits for the GPU)."""
        self._drain(block=True)

    def _drain(self, block: bool) -> None:
        self._flushing = True
        try:
            while self._pending:
                event, host, items, frame_idx, reverse = self._pending[0]
                if not block and event is not None and not event.query():
                    break
                if event is not None:
                    event.synchronize()
                self._pending.popleft()
                for (oid, out), v in zip(items, host.tolist()):
                    self._record(oid, frame_idx, out, reverse, *v)
        finally:
            self._flushing = False

    def record(self, obj_id: Any, frame_idx: int, out: Any, reverse: bool) -> FrameQuality:
        """Record an output (a :class:`~.state.FrameOutput`) of ``obj_id`` on ``frame_idx``."""
        return self.record_many([(obj_id, out)], frame_idx, reverse)[0]

    def record_many(self, items: Sequence[Tuple[Any, Any]], frame_idx: int, reverse: bool
                    ) -> List[FrameQuality]:
        """Record several objects' outputs on one frame with a single device-to-host copy."""

        if not items:
            return []
        self.flush()
        vals = self._values(items).cpu().tolist()
        return [self._record(oid, frame_idx, out, reverse, *v) for (oid, out), v in zip(items, vals)]

    def record_deferred(self, items: Sequence[Tuple[Any, Any]], frame_idx: int, reverse: bool) -> None:
        """:meth:`record_many` without waiting for a GPU: the values are copied to pinned host
        memory asynchronously and the records completed once the copy is done (or when they are
        read), so tracking the next frame is not held up by a host-device synchronisation."""
        import torch

        if not items:
            return
        vals = self._values(items)
        if vals.device.type != "cuda":
            self.record_many(items, frame_idx, reverse)
            return
        host = torch.empty(vals.shape, dtype=vals.dtype, pin_memory=True)
        host.copy_(vals, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        keep = [(oid, _Prompted(bool(out.mask_from_points))) for oid, out in items]
        self._pending.append((event, host, keep, frame_idx, reverse))
        self._drain(block=False)

    @staticmethod
    def _values(items: Sequence[Tuple[Any, Any]]) -> Any:
        """(N, 5) device tensor: object score, predicted IoU, mask area, and the ``cut`` /
        ``refound`` flags of a tracking mode (0 without one) of each output."""
        import torch

        def row(out: Any) -> Any:
            dev = out.object_score_logits.device
            flags = getattr(out, "flags", None) or {}
            vals = [out.object_score_logits.reshape(-1)[0].float(), out.iou.reshape(-1)[0].float().to(dev),
                    (out.pred_masks > 0).sum().float().to(dev)]
            for name in ("cut", "refound"):
                f = flags.get(name)
                vals.append(torch.zeros((), device=dev) if f is None else f.reshape(-1)[0].float().to(dev))
            return torch.stack(vals)

        return torch.stack([row(out) for _, out in items])

    def _record(self, obj_id: Any, frame_idx: int, out: Any, reverse: bool, score: float,
                iou: float, area_f: float, cut: float = 0.0, refound: float = 0.0) -> FrameQuality:
        area = int(area_f)
        visible = score > 0
        per = self.records.setdefault(obj_id, {})
        prev = per.get(frame_idx + 1 if reverse else frame_idx - 1)
        q = FrameQuality(obj_id=obj_id, frame_idx=int(frame_idx), score=score, iou=iou, area=area,
                         visible=visible, prompted=bool(out.mask_from_points), reverse=reverse,
                         cut=cut > 0.5, refound=refound > 0.5)
        if prev is not None:
            q.lost = (prev.visible and not visible) or (q.cut and prev.visible and not q.refound)
            q.reappeared = (((not prev.visible) and visible) or q.refound) and self._was_lost.get(obj_id, False)
        if q.lost:
            self._was_lost[obj_id] = True
        if q.reappeared:
            self._was_lost[obj_id] = False
        q.low_confidence = visible and (iou < self.iou_threshold or score <= self.score_margin)
        per[int(frame_idx)] = q
        if self.window is not None:
            for t in [t for t in per if abs(t - frame_idx) >= self.window]:
                del per[t]
        return q

    def forget(self, obj_id: Any) -> None:
        self.records.pop(obj_id, None)
        self._was_lost.pop(obj_id, None)

    def get(self, obj_id: Any, frame_idx: int) -> Optional[FrameQuality]:
        return self.records.get(obj_id, {}).get(int(frame_idx))

    def frame(self, frame_idx: int) -> Dict[Any, FrameQuality]:
        """All objects' records on one frame."""
        return {k: v[frame_idx] for k, v in self.records.items() if frame_idx in v}

    def all(self) -> List[FrameQuality]:
        return [q for per in self.records.values() for _, q in sorted(per.items())]

    def suggest(self, k: int = 5, min_gap: int = 5, obj_ids: Optional[Sequence[Any]] = None
                ) -> List[Tuple[int, Any, float, str]]:
        """Shortcut for :func:`suggest_correction_frames` over these records."""
        recs = [q for q in self.all() if obj_ids is None or q.obj_id in obj_ids]
        return suggest_correction_frames(recs, k=k, min_gap=min_gap)


def _badness(q: FrameQuality) -> Tuple[float, str]:
    """A score in [0, ~3]: higher means a correction is more useful there, and why."""
    if q.prompted:
        return 0.0, "prompted"
    if q.lost:
        return 3.0, "lost at a shot cut" if q.cut else "lost"
    if q.cut and not q.refound:
        return 2.8, "shot cut"
    if q.reappeared:
        return 2.5, "reappeared"
    if q.visible:
        bad = max(0.0, 1.0 - q.iou) + (1.0 if q.low_confidence else 0.0)
        return bad, "low confidence" if q.low_confidence else "ok"
    # not visible and not just lost: an ambiguous score near 0 is worth a look
    near = max(0.0, 1.0 - abs(q.score) / 2.0)
    return near, "uncertain absence" if near > 0 else "absent"


def suggest_correction_frames(records: Iterable[FrameQuality], k: int = 5, min_gap: int = 5
                              ) -> List[Tuple[int, Any, float, str]]:
    """Frames most worth a correction click.

    Frames are ranked by a badness score: "lost" events first (also an object visible before a
    shot cut and not confidently found after it), then shot cuts, then "reappeared" (also
    "re-found" after a cut), then low-confidence frames (low predicted IoU or a visibility score
    close to 0). Frames within ``min_gap`` frames of an already chosen frame of the same object
    are skipped, so the suggestions spread over the video.

    Args:
        records: :class:`FrameQuality` records (e.g. ``QualityTracker.all()``).
        k: how many suggestions at most.
        min_gap: minimum distance in frames between two suggestions for the same object.

    Returns:
        ``[(frame_idx, obj_id, badness, reason), ...]``, most useful first; only frames with
        a positive badness.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scored = []
    for q in records:
        b, why = _badness(q)
        if b > 0:
            scored.append((b, q.frame_idx, q.obj_id, why))
    scored.sort(key=lambda t: (-t[0], t[1]))
    chosen: List[Tuple[int, Any, float, str]] = []
    for b, f, oid, why in scored:
        if len(chosen) >= k:
            break
        if any(o == oid and abs(f - cf) < min_gap for cf, o, _, _ in chosen):
            continue
        chosen.append((f, oid, round(b, 4), why))
    return chosen
