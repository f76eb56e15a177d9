"""Per-frame confidence along a propagated axis, and where a correction click pays off.

Pure Python: :class:`QualityLog` stores, per object and per sequence (axis name plus the
fixed indices of the other axes), the object score and predicted IoU of every propagated
frame. The Qt plot (``_confidence_plot.py``) only draws what this returns.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ._engine import Quality

__all__ = ["QualityLog", "SeqId"]

SeqId = Tuple[str, Tuple[Tuple[int, int], ...]]
"""A sequence: (axis name, sorted ((key position, index), ...) of the fixed axes)."""


def seq_id(axis_name: str, fixed: Mapping[int, int]) -> SeqId:
    return axis_name, tuple(sorted((int(k), int(v)) for k, v in fixed.items()))


class QualityLog:
    """Quality of every propagated (sequence, frame, object)."""

    def __init__(self) -> None:
        self._log: Dict[Tuple[SeqId, int], Dict[int, Quality]] = {}
        self.last_seq: Optional[SeqId] = None

    def __len__(self) -> int:
        return len(self._log)

    def record(self, axis_name: str, fixed: Mapping[int, int], index: int, quality: Mapping[int, Quality]) -> None:
        sid = seq_id(axis_name, fixed)
        self._log.setdefault((sid, int(index)), {}).update(quality)
        self.last_seq = sid

    def clear(self, obj_id: Optional[int] = None) -> None:
        if obj_id is None:
            self._log.clear()
            self.last_seq = None
            return
        for q in self._log.values():
            q.pop(obj_id, None)

    def snapshot(self) -> Dict[Tuple[SeqId, int], Dict[int, Quality]]:
        return {k: dict(v) for k, v in self._log.items()}

    def restore(self, snap: Dict[Tuple[SeqId, int], Dict[int, Quality]]) -> None:
        self._log = {k: dict(v) for k, v in snap.items()}

    def has(self, sid: SeqId) -> bool:
        """True when frames of this sequence were propagated."""
        return any(s == sid for s, _ in self._log)

    def series(self, sid: SeqId, obj_id: int, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """(score, iou) arrays of length ``n`` along a sequence; NaN where not propagated."""
        score = np.full(n, np.nan, np.float32)
        iou = np.full(n, np.nan, np.float32)
        for (s, i), q in self._log.items():
            if s == sid and obj_id in q and 0 <= i < n:
                score[i], iou[i] = q[obj_id].score, q[obj_id].iou
        return score, iou

    def flagged(self, sid: SeqId, obj_id: Optional[int] = None) -> List[Tuple[int, int, str]]:
        """Frames flagged on a sequence: sorted (index, obj id, "lost" | "low")."""
        out = []
        for (s, i), q in self._log.items():
            if s != sid:
                continue
            for oid, qq in q.items():
                if (obj_id is None or oid == obj_id) and qq.flagged:
                    out.append((i, oid, "lost" if qq.lost else "low"))
        return sorted(out)

    def next_flagged(self, sid: SeqId, current: int, obj_id: Optional[int] = None) -> Optional[int]:
        """The next flagged frame after ``current`` (wrapping around), or None.

        "Worth a correction click": where the object was lost right after being visible,
        or where confidence dips. Runs of flagged frames are visited at their first frame,
        since one click there usually repairs the whole run on re-propagation.
        """
        idx = sorted({i for i, _, _ in self.flagged(sid, obj_id)})
        if not idx:
            return None
        starts = [i for k, i in enumerate(idx) if k == 0 or idx[k - 1] != i - 1]
        after = [i for i in starts if i > current]
        return after[0] if after else starts[0]
