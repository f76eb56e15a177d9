"""Click-based interactive image segmentation as the field evaluates it (RITM, SAM, SAM 2 §6.2).

Per instance, clicks come from :mod:`.clicks` (first click at the object's centre, then each at
the centre of the largest error, positive on a missed region, negative on a false one).

- **First click**: ``multimask_output=True`` and the mask with the highest predicted IoU is
  kept (SAM's ambiguity rule); with ``oracle=True`` the best of the three masks against the GT
  instead (SAM's "oracle" variant).
- **Later clicks**: ``multimask_output=False``; with ``feed_logits=True`` (default) the
  previous answer's low-resolution logits are given as ``mask_input`` (RITM-style iterative
  refinement, what SAM's interactive demo does). ``feed_logits=False`` sends the clicks only.
- **Ignore regions** (``ImageSample.ignore``, e.g. VOC's 255 border) are excluded from the error
  regions the clicks come from and from the IoU (RITM's ``get_iou`` with its ignore label).
- **Metrics per dataset**: mIoU@k = mean over instances of the IoU after k clicks; NoC@t as
  RITM's ``compute_noc_metric``: the first click whose IoU reaches t, or ``max_clicks`` (20)
  when none does; NoF@t = instances whose NoC@t equals ``max_clicks`` (RITM counts those,
  which includes an instance reaching t exactly at the last click).
- **Several datasets**: the headline numbers are means of the per-dataset values (every dataset
  weighs the same, as SAM's 23-dataset average), not a pool of all instances.

The SAM 2 paper's video interactive protocols are in :mod:`.interactive_video`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .clicks import Clicker, noc
from .image_readers import ImageSample
from .interactive_video import run_interactive_video

__all__ = ["image_predict_fn", "run_interactive_image", "run_interactive_video", "InteractiveImageResult",
           "nof", "masked_iou"]

THRESHOLDS = (0.85, 0.9)


def masked_iou(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> float:
    """IoU outside ``ignore`` (both empty there: 1.0)."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    if ignore is not None:
        keep = ~np.asarray(ignore, bool)
        p, g = p & keep, g & keep
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def nof(nocs: Sequence[int], max_clicks: int) -> int:
    """RITM's NoF: how many NoC values equal the click budget."""
    return int(sum(1 for n in nocs if int(n) >= max_clicks))


def image_predict_fn(predictor: Any, gt: Optional[np.ndarray] = None, oracle: bool = False,
                     feed_logits: bool = True, ignore: Optional[np.ndarray] = None) -> Any:
    """The predict callback for one instance with an image predictor whose image is set.

    ``predict(points_xy (N, 2), labels (N,), state) -> (mask (H, W) bool, state)``; ``state`` is
    None on the first click, then the previous low-res logits ``(1, 256, 256)``."""

    def predict(points: np.ndarray, labels: np.ndarray,
                state: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        if state is None:
            masks, ious, low = predictor.predict(point_coords=points, point_labels=labels, multimask_output=True)
            if oracle:
                if gt is None:
                    raise ValueError("the oracle variant needs the GT mask")
                best = int(np.argmax([masked_iou(np.asarray(m) > 0, gt, ignore) for m in masks]))
            else:
                best = int(np.argmax(ious))
        else:
            kwargs = {"mask_input": state} if feed_logits else {}
            masks, ious, low = predictor.predict(point_coords=points, point_labels=labels,
                                                 multimask_output=False, **kwargs)
            best = 0
        return np.asarray(masks[best]) > 0, np.asarray(low[best])[None]

    return predict


def _simulate(predict: Any, gt: np.ndarray, ignore: Optional[np.ndarray], max_clicks: int) -> List[float]:
    clicker = Clicker(gt, ignore=ignore)
    pred: Optional[np.ndarray] = None
    state: Any = None
    ious: List[float] = []
    for _ in range(max_clicks):
        clicker.make_next_click(pred)
        pred, state = predict(clicker.points(), clicker.labels(), state)
        ious.append(masked_iou(pred, gt, ignore))
    return ious


def _dataset_summary(curves: np.ndarray, max_clicks: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {"n_instances": int(curves.shape[0]),
                           "mIoU_curve": [float(v) for v in curves.mean(axis=0)]}
    for k in (1, 3, 5):
        if curves.shape[1] >= k:
            out[f"mIoU@{k}"] = float(curves[:, k - 1].mean())
    for t in THRESHOLDS:
        nocs = [noc(c, t, max_clicks) for c in curves]
        tag = f"{int(round(t * 100))}"
        out[f"NoC@{tag}"] = float(np.mean(nocs))
        out[f"NoF@{tag}"] = nof(nocs, max_clicks)
    return out


@dataclass
class InteractiveImageResult:
    """Per-instance IoU curves, grouped by dataset, and their summary."""

    ious: Dict[str, List[float]] = field(default_factory=dict)  # "<dataset>/<image>_<id>" or "<image>_<id>"
    datasets: Dict[str, List[str]] = field(default_factory=dict)  # dataset -> its instance keys
    max_clicks: int = 20

    def summary(self) -> Dict[str, Any]:
        """Per-dataset numbers (``per_dataset``) and their means (top level; NoF: the sum); a
        single dataset's numbers are the top level. ``pooled`` holds the all-instances numbers
        for reference (not the field's headline)."""
        if not self.ious:
            raise ValueError("no instance was evaluated (empty datasets, or a limit of 0 instances)")
        cap = self.max_clicks  # IoUs after the click budget do not count (RITM)
        per = {name: _dataset_summary(np.array([self.ious[k][:cap] for k in keys], np.float64), cap)
               for name, keys in self.datasets.items() if keys}
        first = next(iter(per.values()))
        scalar = [k for k, v in first.items() if k != "n_instances" and not isinstance(v, list)]
        # NoF is a count: summed over datasets; the other numbers are means of per-dataset values
        out: Dict[str, Any] = {k: (int(sum(d[k] for d in per.values())) if k.startswith("NoF")
                                   else float(np.mean([d[k] for d in per.values()]))) for k in scalar}
        out["mIoU_curve"] = [float(v) for v in np.mean([d["mIoU_curve"] for d in per.values()], axis=0)]
        out["n_instances"] = sum(d["n_instances"] for d in per.values())
        out["n_datasets"] = len(per)
        out["per_dataset"] = per
        pooled = np.array([v[:cap] for v in self.ious.values()], np.float64)
        out["pooled"] = {k: v for k, v in _dataset_summary(pooled, cap).items() if k != "mIoU_curve"}
        out["max_clicks"] = self.max_clicks
        return out


Datasets = Union[Sequence[ImageSample], Mapping[str, Sequence[ImageSample]]]


def run_interactive_image(
    predictor: Any,
    samples: Datasets,
    max_clicks: int = 20,
    max_instances: Optional[int] = None,
    progress: Optional[Any] = None,
    *,
    max_instances_per_image: Optional[int] = None,
    oracle: bool = False,
    feed_logits: bool = True,
) -> InteractiveImageResult:
    """Click-simulate the instances of every image (``set_image`` once per image).

    Args:
        predictor: an image predictor with SAM's API (``set_image``, ``predict``).
        samples: one dataset (a sequence of :class:`ImageSample`) or ``{name: samples}``.
        max_clicks: clicks per instance (NoC is capped at it: RITM uses 20).
        max_instances: stop after this many instances per dataset (quick runs).
        max_instances_per_image: evaluate at most this many instances of each image (the
            first ones in the reader's order).
        progress: called with the image name as each image starts.
        oracle: pick the first click's mask by IoU with the GT (SAM's oracle).
        feed_logits: give the previous low-res logits as ``mask_input`` from the 2nd click on.
    """
    if isinstance(max_clicks, bool) or int(max_clicks) < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    for name, v in (("max_instances", max_instances), ("max_instances_per_image", max_instances_per_image)):
        if v is not None and int(v) < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    many = isinstance(samples, Mapping)
    groups: Mapping[str, Sequence[ImageSample]] = (samples if isinstance(samples, Mapping)
                                                   else {"dataset": samples})
    res = InteractiveImageResult(max_clicks=int(max_clicks))
    for ds, items in groups.items():
        keys = res.datasets.setdefault(ds, [])
        for sample in items:
            if max_instances is not None and len(keys) >= max_instances:
                break
            if progress is not None:
                progress(sample.name)
            pairs: List[Tuple[int, np.ndarray]] = list(zip(sample.ids, sample.masks))
            if max_instances_per_image is not None:
                pairs = pairs[:max_instances_per_image]
            if not pairs:
                continue
            ignore = getattr(sample, "ignore", None)
            predictor.set_image(sample.image)
            for obj_id, gt in pairs:
                if max_instances is not None and len(keys) >= max_instances:
                    break
                gt = np.asarray(gt, bool)
                if ignore is not None:
                    gt = gt & ~ignore
                if not gt.any():
                    continue  # an instance entirely inside the ignore region
                fn = image_predict_fn(predictor, gt, oracle, feed_logits, ignore)
                key = f"{ds}/{sample.name}_{obj_id}" if many else f"{sample.name}_{obj_id}"
                res.ious[key] = _simulate(fn, gt, ignore, int(max_clicks))
                keys.append(key)
    return res
