"""J&F (DAVIS rules) for videos and mIoU for images, stored on the dataset.

Stored results for ``eval_key`` (all new fields; existing ones need ``overwrite=True``):

* videos (``method="jf"``): per frame ``frames.<key>_J`` / ``frames.<key>_F`` (mean over the
  objects on scored frames); per sample ``<key>_J``, ``<key>_F``, ``<key>_JF`` (means over the
  sequence's objects of each object's mean, DAVIS ``J-Mean`` / ``F-Mean``).
* images (``method="miou"``): per sample ``<key>_miou`` (mean IoU over its GT objects).
* summary in ``dataset.info["sam2_evals"][key]``: method, fields, dataset-level means (over all
  objects, as DAVIS and the SAM papers report), counts.

DAVIS semi-supervised rules: objects are the GT objects (by ``index``) of the first frame
that has GT; the first and last frames are not scored; a frame without a GT object counts it
as empty (a predicted mask there is penalised); a predicted ``index`` that is not a GT object
of that first frame is left out. Scoring is the core's
:func:`sam2_plugins.evaluation.evaluate_sequence` / ``summarize`` (bit-identical to
davis2017-evaluation), fed lazily one frame at a time.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from ._convert import detection_to_mask
from ._fields import check_output_name, declare_field, field_exists, require_label_field, require_media, split_field
from ._lock import dataset_lock_name, db_lock

EVALS_KEY = "sam2_evals"
METHODS = ("auto", "jf", "miou")


class _LabelMaps:
    """Lazy ``(H, W)`` label maps of one video's frames ``first..last`` (1-based FiftyOne
    frame numbers) from a ``Detections`` frame field; object ids pass through ``ids``
    (``index`` -> 1..N; unmapped objects are left out). Overlaps: the smallest id wins."""

    def __init__(self, frames: dict[int, Any], first: int, last: int, ids: dict[int, int],
                 width: int, height: int) -> None:
        self.frames, self.first, self.n = frames, first, last - first + 1
        self.ids, self.width, self.height = ids, width, height

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, t: int) -> np.ndarray:
        out = np.zeros((self.height, self.width), dtype=np.int32)
        label = self.frames.get(self.first + t)
        objs = _object_masks(label, self.width, self.height)
        for oid in sorted(objs, reverse=True):
            k = self.ids.get(oid)
            if k is not None:
                out[objs[oid]] = k
        return out


def _object_masks(label: Any, width: int, height: int) -> dict[int, np.ndarray]:
    """``Detections`` -> ``{object id: (H, W) bool}``; id = ``index``, or 1 for a lone unindexed
    object. Masks of the same id are merged."""
    out: dict[int, np.ndarray] = {}
    dets = list(label.detections) if label is not None else []
    for d in dets:
        if d.index is None:
            if len(dets) > 1:
                raise ValueError("several objects on one frame without 'index': J&F needs "
                                 "Detection.index to match objects across frames")
            oid = 1
        else:
            oid = int(d.index)
        m = detection_to_mask(d, width, height)
        out[oid] = out[oid] | m if oid in out else m
    return out


def jf_of_video(sample: Any, pred_name: str, gt_name: str) -> tuple[Any, dict[int, tuple[float, float]]]:
    """DAVIS J&F of one video sample (frame fields ``pred_name`` and ``gt_name``) with the
    core's :func:`sam2_plugins.evaluation.evaluate_sequence`.

    The sequence runs from the first frame with GT to the last frame of the video; objects are
    the GT objects (``index``) of that first frame, numbered 1..N in index order.

    Returns:
        (``SequenceScores`` or None when there is no GT, ``{frame_number: (J, F)}`` means over
        the objects of each scored frame).
    """
    from sam2_plugins.evaluation.sequence import evaluate_sequence

    meta = sample.metadata
    width = getattr(meta, "frame_width", None)
    height = getattr(meta, "frame_height", None)
    n = getattr(meta, "total_frame_count", None)
    if not width or not height or not n:
        import fiftyone as fo

        meta = fo.VideoMetadata.build_for(sample.filepath)
        width, height, n = meta.frame_width, meta.frame_height, meta.total_frame_count
    gt_frames = {fn: f[gt_name] for fn, f in sample.frames.items() if f[gt_name] is not None}
    pred_frames = {fn: f[pred_name] for fn, f in sample.frames.items()}
    first = min((fn for fn, lab in gt_frames.items() if lab.detections), default=None)
    if first is None:
        return None, {}
    last = max(int(n or 0), max(sample.frames.keys()))
    ids = {oid: k + 1 for k, oid in enumerate(sorted(_object_masks(gt_frames[first], width, height)))}
    gt = _LabelMaps(gt_frames, first, last, ids, width, height)
    pred = _LabelMaps(pred_frames, first, last, ids, width, height)
    seq = evaluate_sequence(gt, pred, name=str(sample.id),
                            frame_names=[str(fn) for fn in range(first, last + 1)], void_label=None)
    per_frame: dict[int, list[tuple[float, float]]] = {}
    for k in seq.object_ids:
        for t, j, f in zip(seq.frames[k], seq.J[k], seq.F[k]):
            per_frame.setdefault(first + t, []).append((float(j), float(f)))
    frames = {fn: (float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals])))
              for fn, vals in per_frame.items()}
    return seq, frames


def _match_ious(gt: list[Any], pred: list[Any], width: int, height: int) -> list[float]:
    """IoU of each GT object with its prediction: same label id first, then same ``index``,
    then the best remaining by IoU (Hungarian); an unmatched GT object scores 0."""
    from sam2_plugins.evaluation.iou import mask_iou as jaccard

    gm = [detection_to_mask(d, width, height) for d in gt]
    pm = [detection_to_mask(d, width, height) for d in pred]
    ious = [0.0] * len(gt)
    free_g, free_p = set(range(len(gt))), set(range(len(pred)))
    for key in ("id", "index"):
        for gi in sorted(free_g):
            gv = getattr(gt[gi], key, None)
            if gv is None:
                continue
            for pi in sorted(free_p):
                if getattr(pred[pi], key, None) == gv:
                    ious[gi] = jaccard(pm[pi], gm[gi])
                    free_g.discard(gi), free_p.discard(pi)
                    break
    if free_g and free_p:
        from scipy.optimize import linear_sum_assignment

        g_idx, p_idx = sorted(free_g), sorted(free_p)
        mat = np.array([[jaccard(pm[p], gm[g]) for p in p_idx] for g in g_idx])
        rows, cols = linear_sum_assignment(-mat)
        for r, c in zip(rows, cols):
            ious[g_idx[r]] = float(mat[r, c])
    return ious


def evaluate(
    view: Any,
    pred_field: str,
    gt_field: str,
    method: str = "auto",
    eval_key: str = "sam2_eval",
    overwrite: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Score ``pred_field`` against ``gt_field`` on ``view`` and store the results.

    Args:
        view: a video collection (J&F on frame fields) or an image collection (mIoU).
        pred_field, gt_field: ``Detections`` fields (instance masks; a detection without a
            mask counts as its filled box). For videos, frame fields ``"frames.<name>"``.
        method: ``"jf"``, ``"miou"`` or ``"auto"`` (jf for videos, miou for images).
        eval_key: prefix of the result fields and key of the summary.
        overwrite: allow replacing results of an earlier evaluation with this key.

    Returns:
        The summary stored in ``dataset.info["sam2_evals"][eval_key]``.
    """
    import fiftyone as fo

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, received {method!r}")
    is_video = require_media(view, ("video", "image"), "evaluate") == "video"
    method = ("jf" if is_video else "miou") if method == "auto" else method
    if method == "jf" and not is_video:
        raise ValueError("J&F needs a video collection; use method='miou' for images")
    if method == "miou" and is_video:
        raise ValueError("mIoU here is for images; use method='jf' for videos")
    for f in (pred_field, gt_field):
        if split_field(f)[0] != is_video:
            raise ValueError(f"{f!r}: expected a {'frame' if is_video else 'sample'} field")
    require_label_field(view, pred_field, (fo.Detections,), "prediction field")
    require_label_field(view, gt_field, (fo.Detections,), "ground-truth field")
    check_output_name(eval_key)
    dataset = view._dataset
    names = [f"{eval_key}_J", f"{eval_key}_F", f"{eval_key}_JF"] if method == "jf" else [f"{eval_key}_miou"]
    frame_names = [f"frames.{eval_key}_J", f"frames.{eval_key}_F"] if method == "jf" else []
    # Check and declare under the dataset's cross-process lock: another worker may be adding
    # fields or rewriting dataset.info at the same time (see fiftyone_sam2._lock).
    with db_lock(dataset_lock_name(dataset)):
        dataset.reload()
        taken = [n for n in names + frame_names if field_exists(dataset, n)]
        if taken and not overwrite:
            raise ValueError(f"evaluation fields {taken} already exist; choose another eval_key or "
                             "set overwrite=True")
        for n in names + frame_names:
            declare_field(dataset, n, ftype=fo.FloatField)
    pred_name, gt_name = split_field(pred_field)[1], split_field(gt_field)[1]
    from sam2_plugins.evaluation.sequence import summarize

    sequences, all_iou, per_sample = [], [], []
    total = view.count()
    for i, sample in enumerate(view.iter_samples(autosave=False)):
        if method == "jf":
            seq, frames = jf_of_video(sample, pred_name, gt_name)
            for fn, (j, f) in frames.items():
                sample.frames[fn][f"{eval_key}_J"] = j
                sample.frames[fn][f"{eval_key}_F"] = f
            if seq is not None:
                sequences.append(seq)
                per = summarize([seq])
                vals = {f"{eval_key}_J": per["J-Mean"], f"{eval_key}_F": per["F-Mean"],
                        f"{eval_key}_JF": per["J&F-Mean"]}
            else:
                vals = {f"{eval_key}_J": None, f"{eval_key}_F": None, f"{eval_key}_JF": None}
            score = vals[f"{eval_key}_JF"]
        else:
            width, height = _image_size(sample)
            gt = list(sample[gt_field].detections) if sample[gt_field] is not None else []
            pr = list(sample[pred_field].detections) if sample[pred_field] is not None else []
            ious = _match_ious(gt, pr, width, height)
            all_iou += ious
            score = float(np.mean(ious)) if ious else float("nan")
            vals = {f"{eval_key}_miou": score}
        for k, v in vals.items():
            sample[k] = None if v is None or v != v else float(v)  # NaN -> None (no GT object)
        sample.save()
        per_sample.append(score)
        if progress is not None:
            progress((i + 1) / max(1, total), f"{i + 1}/{total} samples")
    summary: dict[str, Any] = {"method": method, "pred_field": pred_field, "gt_field": gt_field,
                               "samples": total,
                                   "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if method == "jf":
        glob = summarize(sequences) if sequences else {}
        summary.update({"objects": glob.get("n_objects", 0), "J": glob.get("J-Mean"),
                        "F": glob.get("F-Mean"), "JF": glob.get("J&F-Mean"),
                        "stats": {k: glob.get(k) for k in ("J-Recall", "J-Decay", "F-Recall", "F-Decay")},
                        "sort_field": f"{eval_key}_JF"})
    else:
        summary.update({"objects": len(all_iou), "mIoU": float(np.mean(all_iou)) if all_iou else None,
                        "sort_field": f"{eval_key}_miou"})
    with db_lock(dataset_lock_name(dataset)):
        dataset.reload()
        info = dict(dataset.info or {})
        evals = dict(info.get(EVALS_KEY, {}))
        evals[eval_key] = summary
        info[EVALS_KEY] = evals
        dataset.info = info
        dataset.save()
    return summary


def worst_samples(view: Any, eval_key: str = "sam2_eval", k: int = 10) -> Any:
    """The ``k`` samples of ``view`` with the lowest score of evaluation ``eval_key``."""
    info = (view._dataset.info or {}).get(EVALS_KEY, {}).get(eval_key)
    if info is None:
        raise ValueError(f"no SAM 2 evaluation {eval_key!r} on this dataset; run evaluate first")
    field = info["sort_field"]
    return view.exists(field).sort_by(field).limit(int(k))


def _image_size(sample: Any) -> tuple[int, int]:
    meta = sample.metadata
    if meta is not None and getattr(meta, "width", None) and getattr(meta, "height", None):
        return int(meta.width), int(meta.height)
    from PIL import Image

    with Image.open(sample.filepath) as im:
        return im.size
