"""What the automatic mask generator's filters removed: so that "0 masks" explains itself.

:class:`AMGStats` counts the candidate masks (grid points x masks per point, over all crops) and
how many each stage removed, in pipeline order: predicted IoU, stability score, touching an
inner crop edge, box NMS inside a crop, box NMS across crops. It also keeps the highest
predicted IoU and stability score seen, so an empty result can say which threshold to lower.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

__all__ = ["AMGStats", "FILTERS"]

#: (counter, human label) in pipeline order
FILTERS = (
    ("pred_iou", "fell below pred_iou_thresh"),
    ("stability", "fell below stability_score_thresh"),
    ("crop_edge", "touched an inner crop edge"),
    ("box_nms", "were duplicates removed by box NMS (box_nms_thresh)"),
    ("crop_nms", "were duplicates across crops (crop_nms_thresh)"),
)


@dataclass
class AMGStats:
    """Counts of one :meth:`SAM2AutomaticMaskGenerator.generate` call.

    Attributes:
        candidates: masks proposed (points x masks per point, every crop).
        pred_iou, stability, crop_edge, box_nms, crop_nms: masks each stage removed.
        kept: masks returned.
        max_pred_iou, max_stability: highest values seen before the respective filter
            (``None`` when there was no candidate).
        pred_iou_thresh, stability_score_thresh: the thresholds used.
    """

    candidates: int = 0
    pred_iou: int = 0
    stability: int = 0
    crop_edge: int = 0
    box_nms: int = 0
    crop_nms: int = 0
    kept: int = 0
    max_pred_iou: Any = None
    max_stability: Any = None
    pred_iou_thresh: float = 0.0
    stability_score_thresh: float = 0.0

    def see(self, name: str, value: float) -> None:
        """Remember the largest ``max_<name>`` seen."""
        cur = getattr(self, name)
        setattr(self, name, value if cur is None else max(cur, value))

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def explain(self) -> str:
        """One sentence: what was kept and what each filter removed, with a hint when nothing was kept."""
        if self.candidates == 0:
            return "no candidate masks (the point grid is empty)"
        removed = [(getattr(self, k), label) for k, label in FILTERS if getattr(self, k)]
        if self.kept == 0 and len(removed) == 1 and removed[0][0] == self.candidates:
            text = f"0 masks: all {self.candidates} candidates {removed[0][1]}"
        else:
            parts = ", ".join(f"{n} {label}" for n, label in removed) or "none removed"
            text = f"{self.kept} of {self.candidates} candidate masks kept ({parts})"
        if self.kept == 0:
            text += self._hint()
        return text

    def _hint(self) -> str:
        # the last stage that removed anything removed the last survivors: name its threshold
        last = next((k for k, _ in reversed(FILTERS) if getattr(self, k)), None)
        if last == "pred_iou" and self.max_pred_iou is not None:
            return (f"; the highest predicted IoU was {self.max_pred_iou:.3f} against pred_iou_thresh="
                    f"{self.pred_iou_thresh:g}: lower it (or use a better model) to get masks")
        if last == "stability" and self.max_stability is not None:
            return (f"; of the masks above pred_iou_thresh the highest stability score was {self.max_stability:.3f} "
                    f"against stability_score_thresh={self.stability_score_thresh:g}: lower it (or use a better "
                    "model) to get masks")
        if last == "crop_edge":
            return "; every remaining mask touched an inner crop edge (crop_n_layers > 0)"
        return ""
